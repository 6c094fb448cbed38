// The operator console: one EventSource (the overview) keeps the page live; the lists are read from the
// JSON routes, again on every overview event. Every action is confirmed in a dialog first (with a dry
// run's report where the action has one), then sent as JSON; the server audits it.
"use strict";

const RETRY_MS = 5000;
const STATUSES = {
  request: ["rendering", "rendered", "pending", "batched", "sent", "completed", "failed", "confirmation_failed"],
  batch: ["signed", "sent", "confirmed", "reverted"],
  render: ["waiting", "active", "completed", "failed"],
};
const ACTIONS = {
  "retry-failed": {
    title: "Retry failed requests",
    text: "Failed requests whose payment can still settle go back to the queue (retry count + 1).",
    dryRun: true,
    report: (r) => `${r.retried} request(s)` + (r.skipped.length ? `; ${r.skipped.length} skipped` : ""),
  },
  "reset-stuck": {
    title: "Reset stuck requests and render jobs",
    text: "Requests of closed or missing batches go back to pending; lapsed render jobs are repaired; " +
      "requests not published for 10 minutes are published again.",
    dryRun: true,
    body: { olderThanSeconds: 600 },
    report: (r) => `${r.requeued.length} request(s) requeued, ${r.republished} republished`,
  },
  "replay-streams": {
    title: "Replay the streams",
    text: "Every pending and rendering request, and every outcome whose webhook was never queued, is " +
      "published again from PostgreSQL. Consumers are idempotent: nothing happens twice.",
    dryRun: false,
    report: (r) => `${r.requests} request(s) and ${r.outcomes} outcome(s) republished`,
  },
  "requeue-dead": {
    title: "Requeue dead letters",
    text: "Dead-lettered entries go back to the stream they came from (undecodable ones stay).",
    dryRun: true,
    report: (r) => `${r.total} entr(ies)` + (r.undecodable.length ? `; ${r.undecodable.length} undecodable left` : ""),
  },
};

const byId = (id) => document.getElementById(id);
let view = "overview";
let selected = { request: null, batch: null };

// --- helpers ---------------------------------------------------------------------------------------

function text(value) {
  return value === null || value === undefined || value === "" ? "—" : String(value);
}

function age(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  const whole = Math.floor(seconds);
  if (whole < 60) return `${whole} s`;
  if (whole < 3600) return `${Math.floor(whole / 60)} min ${whole % 60} s`;
  return `${Math.floor(whole / 3600)} h ${Math.floor((whole % 3600) / 60)} min`;
}

// A request keeps its last error after a retry succeeds; it is its reason only while it failed.
function reason(status, message) {
  return status === "failed" || status === "confirmation_failed" ? message : null;
}

function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "—";
}

function gwei(wei) {
  return wei === null || wei === undefined ? "—" : (Number(BigInt(wei)) / 1e9).toFixed(2);
}

function ether(wei) {
  if (wei === null || wei === undefined) return "—";
  const value = BigInt(wei);
  const whole = value / 10n ** 18n;
  const fraction = ((value % 10n ** 18n) * 10000n) / 10n ** 18n;
  return `${whole}.${String(fraction).padStart(4, "0")}`;
}

function cell(row, value, className) {
  const td = document.createElement("td");
  if (className) td.className = className;
  if (value instanceof Node) td.append(value);
  else td.textContent = text(value);
  row.append(td);
  return td;
}

function code(value) {
  const element = document.createElement("code");
  element.textContent = text(value);
  if (value) element.title = value;
  return element;
}

function badge(status) {
  const element = document.createElement("span");
  element.className = "badge";
  element.textContent = text(status);
  element.dataset.status = status || "";
  return element;
}

function fill(tableId, rows, empty, columns) {
  const body = byId(tableId).tBodies[0];
  if (!rows.length) {
    const row = document.createElement("tr");
    const td = cell(row, empty, "empty");
    td.colSpan = columns;
    body.replaceChildren(row);
  } else {
    body.replaceChildren(...rows);
  }
}

function showMessage(message) {
  byId("message").textContent = message || "";
  byId("message").hidden = !message;
}

function showNotice(message) {
  byId("notice").textContent = message || "";
  byId("notice").hidden = !message;
}

async function api(path, options = {}) {
  const response = await fetch(path, {
    ...options,
    headers: { Accept: "application/json", ...(options.body ? { "Content-Type": "application/json" } : {}) },
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.message || `HTTP ${response.status}`);
  return body;
}

function confirmDialog(title, message, preview) {
  const dialog = byId("confirm");
  byId("confirm-title").textContent = title;
  byId("confirm-text").textContent = message;
  byId("confirm-preview").textContent = preview || "";
  byId("confirm-preview").hidden = !preview;
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "confirm"), { once: true });
  });
}

// --- overview --------------------------------------------------------------------------------------

function showOverview(data) {
  const queue = data.queue;
  byId("queue-depth").textContent = text(queue.queueDepth);
  byId("oldest-pending").textContent = age(queue.oldestPendingSeconds);
  byId("hour-completed").textContent = text(data.lastHour.completed);
  byId("hour-rate").textContent = text(data.lastHour.mintsPerMinute);
  const latency = data.lastHour.latencySeconds;
  byId("hour-latency").textContent = latency.p50 === null ? "—" : `${age(latency.p50)} / ${age(latency.p95)}`;
  byId("failed-total").textContent = text(queue.totals.failed || 0);
  byId("updated-at").textContent = `· ${new Date(data.at).toLocaleTimeString()}`;

  const highest = Math.max(1, ...data.lastHour.perMinute);
  byId("per-minute").replaceChildren(
    ...data.lastHour.perMinute.map((count, index) => {
      const bar = document.createElement("span");
      bar.style.height = `${(100 * count) / highest}%`;
      bar.title = `${59 - index} min ago: ${count}`;
      return bar;
    }),
  );

  fill("stages", STATUSES.request.map((status) => {
    const kinds = queue.byStatus[status] || {};
    const row = document.createElement("tr");
    row.dataset.stage = status;
    cell(row, badge(status));
    cell(row, kinds.token ?? (kinds.all === undefined ? 0 : "—"), "number");
    cell(row, kinds.nft ?? (kinds.all === undefined ? 0 : "—"), "number");
    cell(row, queue.totals[status] || 0, "number");
    return row;
  }), "", 4);

  const streamRows = [];
  for (const stream of data.streams.streams) {
    const groups = stream.groups.length ? stream.groups : [null];
    groups.forEach((group, index) => {
      const row = document.createElement("tr");
      row.dataset.stream = stream.stream;
      cell(row, index ? "" : stream.stream);
      cell(row, index ? "" : stream.length, "number");
      cell(row, index ? "" : stream.dead, "number").dataset.dead = String(stream.dead);
      cell(row, group && group.group);
      cell(row, group && group.pending, "number");
      cell(row, group && group.lag, "number");
      cell(row, group && group.consumers, "number");
      streamRows.push(row);
    });
  }
  fill("streams", streamRows, data.streams.error || "No streams yet.", 7);

  const chain = data.wallets.chain;
  byId("chain-head").textContent = chain ? `(chain head ${chain.head})` : `(${data.wallets.chainError || "no chain"})`;
  fill("wallets", data.wallets.wallets.map((wallet) => {
    const row = document.createElement("tr");
    row.dataset.wallet = wallet.wallet;
    cell(row, code(wallet.wallet));
    cell(row, ether(wallet.balanceWei), "number");
    cell(row, wallet.highestNonce, "number");
    cell(row, wallet.chainLatest, "number");
    cell(row, wallet.chainPending, "number");
    cell(row, wallet.lag, "number");
    cell(row, wallet.notInNode, "number");
    cell(row, wallet.open, "number");
    return row;
  }), "No wallet has signed yet.", 8);

  fill("in-flight", data.inFlight.map((batch) => {
    const row = document.createElement("tr");
    cell(row, batch.id);
    cell(row, code(batch.wallet));
    cell(row, batch.nonce, "number");
    cell(row, badge(batch.status));
    cell(row, batch.entries, "number");
    cell(row, batch.attempts, "number");
    cell(row, age(batch.ageSeconds), "number");
    cell(row, gwei(batch.maxFeePerGas), "number");
    cell(row, gwei(batch.maxPriorityFeePerGas), "number");
    cell(row, code(batch.txHash));
    return row;
  }), "Nothing in flight.", 10);

  fill("render-counts", STATUSES.render.map((status) => {
    const jobs = data.renderJobs[status] || { count: 0, leaseExpired: 0, oldestSeconds: null };
    const row = document.createElement("tr");
    cell(row, badge(status));
    cell(row, jobs.count, "number");
    cell(row, jobs.leaseExpired, "number");
    cell(row, age(jobs.oldestSeconds), "number");
    return row;
  }), "", 4);
}

// --- requests --------------------------------------------------------------------------------------

async function loadRequests() {
  const params = new URLSearchParams();
  const q = byId("request-q").value.trim();
  if (q) params.set("q", q);
  if (byId("request-status").value) params.set("status", byId("request-status").value);
  const list = await api(`/api/requests?${params}`);
  fill("requests", list.items.map((item) => {
    const row = document.createElement("tr");
    row.className = "link";
    row.dataset.id = item.id;
    row.tabIndex = 0;
    row.setAttribute("aria-selected", String(item.id === selected.request));
    cell(row, code(item.id));
    cell(row, badge(item.status));
    cell(row, item.kind);
    cell(row, code(item.payerAddress));
    cell(row, item.retryCount, "number");
    cell(row, item.batchId);
    cell(row, when(item.updatedAt));
    cell(row, reason(item.status, item.errorMessage), "wrap");
    row.addEventListener("click", () => openRequest(item.id));
    row.addEventListener("keydown", (event) => event.key === "Enter" && openRequest(item.id));
    return row;
  }), "No request matches.", 8);
  if (selected.request) await openRequest(selected.request, false);
}

function facts(pairs) {
  const list = document.createElement("dl");
  list.className = "facts";
  for (const [label, value] of pairs) {
    const item = document.createElement("div");
    const dt = document.createElement("dt");
    const dd = document.createElement("dd");
    dt.textContent = label;
    if (value instanceof Node) dd.append(value);
    else dd.textContent = text(value);
    item.append(dt, dd);
    list.append(item);
  }
  return list;
}

function heading(level, content) {
  const element = document.createElement(`h${level}`);
  element.textContent = content;
  return element;
}

function table(headers, rows) {
  const element = document.createElement("table");
  const head = element.createTHead().insertRow();
  for (const header of headers) {
    const th = document.createElement("th");
    th.scope = "col";
    th.textContent = header;
    head.append(th);
  }
  const body = element.createTBody();
  body.append(...rows);
  const wrapper = document.createElement("div");
  wrapper.className = "scroll";
  wrapper.append(element);
  return wrapper;
}

async function openRequest(id, scroll = true) {
  selected.request = id;
  const item = await api(`/api/requests/${encodeURIComponent(id)}`);
  const detail = byId("request-detail");
  const history = document.createElement("ol");
  history.className = "history";
  history.id = "request-history";
  history.append(...item.history.map((change) => {
    const entry = document.createElement("li");
    entry.dataset.change = change.status;
    entry.textContent = `${when(change.at)} ${change.status}${change.reason ? ` (${change.reason})` : ""}`;
    return entry;
  }));
  const parts = [
    heading(3, `Request ${item.id}`),
    facts([["Status", badge(item.status)], ["Kind", item.kind], ["Payer", code(item.payerAddress)],
      ["Payment", item.paymentType], ["Retries", item.retryCount], ["Mint transaction", code(item.mintTxHash)],
      ["Token id", item.tokenId], ["Reason", reason(item.status, item.errorMessage)],
      ["Created", when(item.createdAt)]]),
    heading(3, "History"),
    history,
  ];
  if (item.batches.length) {
    parts.push(heading(3, "Batches"), table(["Batch", "Status", "Nonce", "Transaction", "Block"],
      item.batches.map((batch) => {
        const row = document.createElement("tr");
        cell(row, batch.id);
        cell(row, badge(batch.status));
        cell(row, batch.nonce, "number");
        cell(row, code(batch.minedTxHash || batch.txHash));
        cell(row, batch.blockNumber, "number");
        return row;
      })));
  }
  if (item.renderJob) parts.push(heading(3, "Render job"), renderFacts(item.renderJob));
  detail.replaceChildren(...parts);
  detail.hidden = false;
  if (scroll) detail.scrollIntoView({ block: "nearest" });
}

function renderFacts(job) {
  const progress = document.createElement("progress");
  progress.max = 100;
  progress.value = job.progress;
  return facts([["Status", badge(job.status)], ["Progress", progress], ["Attempts", job.attempts],
    ["Reason", job.error], ["Image", job.preview ? preview(job) : "not pinned yet"]]);
}

function preview(job) {
  const image = document.createElement("img");
  image.className = "preview";
  image.src = job.preview;
  image.alt = `render of ${job.requestId}`;
  image.loading = "lazy";
  return image;
}

// --- batches ---------------------------------------------------------------------------------------

async function loadBatches() {
  const params = new URLSearchParams();
  const q = byId("batch-q").value.trim();
  if (q) params.set("q", q);
  if (byId("batch-status").value) params.set("status", byId("batch-status").value);
  const list = await api(`/api/batches?${params}`);
  fill("batches", list.items.map((batch) => {
    const row = document.createElement("tr");
    row.className = "link";
    row.tabIndex = 0;
    row.dataset.batchId = batch.id;
    cell(row, batch.id);
    cell(row, code(batch.wallet));
    cell(row, batch.nonce, "number");
    cell(row, batch.kind);
    cell(row, batch.entries, "number");
    cell(row, badge(batch.status));
    cell(row, batch.attempts, "number");
    cell(row, code(batch.minedTxHash || batch.txHash));
    cell(row, batch.blockNumber, "number");
    row.addEventListener("click", () => openBatch(batch.id));
    row.addEventListener("keydown", (event) => event.key === "Enter" && openBatch(batch.id));
    return row;
  }), "No batch matches.", 9);
  if (selected.batch) await openBatch(selected.batch, false);
}

async function openBatch(id, scroll = true) {
  selected.batch = id;
  const batch = await api(`/api/batches/${encodeURIComponent(id)}`);
  const detail = byId("batch-detail");
  detail.replaceChildren(
    heading(3, `Batch ${batch.id}`),
    facts([["Status", badge(batch.status)], ["Wallet", code(batch.wallet)], ["Nonce", batch.nonce],
      ["Mined transaction", code(batch.minedTxHash)], ["Block", batch.blockNumber],
      ["Gas used / limit", `${text(batch.gasUsed)} / ${batch.gasLimit}`], ["No-op fill", batch.fillReason],
      ["Age", age(batch.ageSeconds)]]),
    heading(3, "Attempts"),
    table(["Transaction", "Max fee (gwei)", "Tip (gwei)", "Signed", "Mined"], batch.transactions.map((tx) => {
      const row = document.createElement("tr");
      cell(row, code(tx.txHash));
      cell(row, gwei(tx.maxFeePerGas), "number");
      cell(row, gwei(tx.maxPriorityFeePerGas), "number");
      cell(row, when(tx.createdAt));
      cell(row, tx.txHash === batch.minedTxHash ? "yes" : "");
      return row;
    })),
    heading(3, "Entries"),
    table(["#", "Request", "Outcome", "Token id", "Reason", "Still this batch's"], batch.entryOutcomes.map((entry) => {
      const row = document.createElement("tr");
      cell(row, entry.position, "number");
      cell(row, code(entry.id));
      cell(row, badge(entry.status));
      cell(row, entry.tokenId);
      cell(row, reason(entry.status, entry.errorMessage), "wrap");
      cell(row, entry.inThisBatch ? "yes" : `no (now batch ${text(entry.batchId)})`);
      return row;
    })),
  );
  detail.hidden = false;
  if (scroll) detail.scrollIntoView({ block: "nearest" });
}

// --- render jobs -----------------------------------------------------------------------------------

async function loadRenders() {
  const status = byId("render-status").value;
  const list = await api(`/api/renders${status ? `?status=${status}` : ""}`);
  fill("renders", list.items.map((job) => {
    const row = document.createElement("tr");
    row.dataset.jobId = job.requestId;
    const progress = document.createElement("progress");
    progress.max = 100;
    progress.value = job.progress;
    progress.title = `${job.progress} %`;
    cell(row, code(job.requestId));
    cell(row, badge(job.status));
    cell(row, progress);
    cell(row, job.attempts, "number");
    cell(row, badge(job.requestStatus));
    cell(row, job.error, "wrap");
    cell(row, job.preview ? preview(job) : "—");
    return row;
  }), "No render jobs.", 7);
}

// --- settings --------------------------------------------------------------------------------------

async function loadSettings() {
  const list = await api("/api/settings");
  fill("settings", list.settings.map((setting) => {
    const row = document.createElement("tr");
    row.dataset.key = setting.key;
    cell(row, code(setting.key));
    cell(row, setting.service);
    cell(row, setting.override);
    cell(row, setting.configured);
    cell(row, setting.effective);
    cell(row, setting.bounds);
    const controls = document.createElement("div");
    controls.className = "row";
    const input = document.createElement("input");
    input.name = setting.key;
    input.setAttribute("aria-label", `new value for ${setting.key}`);
    input.placeholder = text(setting.effective);
    const set = document.createElement("button");
    set.type = "button";
    set.className = "small";
    set.textContent = "Set…";
    set.addEventListener("click", () => changeSetting(setting, input.value.trim()));
    controls.append(input, set);
    if (setting.override !== null) {
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "small secondary";
      remove.textContent = "Remove…";
      remove.addEventListener("click", () => changeSetting(setting, null));
      controls.append(remove);
    }
    cell(row, controls);
    return row;
  }), "No settings.", 7);
}

async function changeSetting(setting, value) {
  if (value === "") return showMessage(`Type a value for ${setting.key} first.`);
  const question = value === null
    ? `Remove the override of ${setting.key} (${setting.override})? The ${setting.service} goes back to ${text(setting.configured)}.`
    : `Set ${setting.key} from ${text(setting.effective)} to ${value}? The ${setting.service} applies it on its next cycle.`;
  if (!(await confirmDialog("Change a setting", question))) return;
  try {
    const done = await api(`/api/settings/${encodeURIComponent(setting.key)}`, {
      method: "PUT",
      body: JSON.stringify({ value }),
    });
    showMessage("");
    showNotice(done.value === null ? `${done.key}: override removed.` : `${done.key} = ${done.value}.`);
  } catch (error) {
    showMessage(error.message);
  }
  await loadSettings();
}

// --- audit -----------------------------------------------------------------------------------------

async function loadAudit() {
  const list = await api("/api/audit");
  fill("audit", list.items.map((entry) => {
    const row = document.createElement("tr");
    row.dataset.action = entry.action;
    cell(row, when(entry.at));
    cell(row, entry.actor);
    cell(row, `${entry.source}${entry.client ? ` (${entry.client})` : ""}`);
    cell(row, entry.action);
    cell(row, code(JSON.stringify(entry.params)));
    cell(row, badge(entry.outcome === "done" ? "completed" : entry.outcome)).firstChild.textContent = entry.outcome;
    cell(row, code(entry.result ? JSON.stringify(entry.result) : null));
    return row;
  }), "Nothing done yet.", 7);
}

// --- actions ---------------------------------------------------------------------------------------

async function runAction(name, button) {
  const action = ACTIONS[name];
  const path = `/api/actions/${name}`;
  const body = action.body || {};
  button.disabled = true;
  try {
    let preview = "";
    if (action.dryRun) {
      const report = await api(path, { method: "POST", body: JSON.stringify({ ...body, dryRun: true }) });
      preview = `Would change: ${action.report(report)}\n\n${JSON.stringify(report, null, 2)}`;
    }
    if (!(await confirmDialog(action.title, action.text, preview))) return;
    const done = await api(path, { method: "POST", body: JSON.stringify(body) });
    showMessage("");
    showNotice(`${action.title}: ${action.report(done)}.`);
    await refresh();
  } catch (error) {
    showMessage(`${action.title}: ${error.message}`);
  } finally {
    button.disabled = false;
  }
}

// --- views and the live stream ---------------------------------------------------------------------

const LOADERS = { requests: loadRequests, batches: loadBatches, renders: loadRenders, settings: loadSettings, audit: loadAudit };

async function refresh(live = false) {
  const load = LOADERS[view];
  // A settings row being edited is not replaced under the operator's cursor.
  if (!load || (live && view === "settings")) return;
  try {
    await load();
  } catch (error) {
    showMessage(error.message);
  }
}

function showView() {
  const wanted = (window.location.hash || "#overview").slice(1);
  view = wanted in LOADERS || wanted === "overview" ? wanted : "overview";
  for (const section of document.querySelectorAll("main > section")) section.hidden = section.dataset.view !== view;
  for (const link of document.querySelectorAll("nav a")) {
    if (link.dataset.view === view) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  showNotice("");
  refresh();
}

function watch() {
  const source = new EventSource("/events/overview");
  source.addEventListener("open", () => { byId("connection").textContent = "on"; });
  source.addEventListener("overview", (event) => {
    byId("connection").textContent = "on";
    showOverview(JSON.parse(event.data));
    refresh(true);
  });
  source.addEventListener("unavailable", (event) => {
    byId("connection").textContent = `on, but ${JSON.parse(event.data).message} did not answer`;
  });
  source.addEventListener("error", () => {
    if (source.readyState === EventSource.CLOSED) {
      byId("connection").textContent = "off, retrying…";
      setTimeout(watch, RETRY_MS);
    } else {
      byId("connection").textContent = "reconnecting…";
    }
  });
}

function options(selectId, values) {
  byId(selectId).append(...values.map((value) => new Option(value, value)));
}

function start() {
  options("request-status", STATUSES.request);
  options("batch-status", STATUSES.batch);
  options("render-status", STATUSES.render);
  for (const [formId, load] of [["request-search", loadRequests], ["batch-search", loadBatches], ["render-search", loadRenders]]) {
    byId(formId).addEventListener("submit", (event) => {
      event.preventDefault();
      selected = { request: null, batch: null };
      byId("request-detail").hidden = byId("batch-detail").hidden = true;
      load().then(() => showMessage(""), (error) => showMessage(error.message));
    });
  }
  for (const button of document.querySelectorAll("[data-action]")) {
    button.addEventListener("click", () => runAction(button.dataset.action, button));
  }
  window.addEventListener("hashchange", showView);
  showView();
  watch();
}

start();
