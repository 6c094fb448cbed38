// The views: the overview (from the live stream), the searchable requests and batches with their
// details, the render jobs.
"use strict";

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
      ["Payment", item.paymentType], ["Lane", item.lane], ["Retries", item.retryCount], ["Mint transaction", code(item.mintTxHash)],
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
