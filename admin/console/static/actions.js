// The actions: settings changed, payers' priority lanes, the audit trail, and the CLI's actions, each confirmed in a dialog
// first (with a dry run's report where the action has one), then sent as JSON; the server audits it.
"use strict";

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

// --- priority lanes --------------------------------------------------------------------------------

async function loadPriorities() {
  const list = await api("/api/priorities");
  fill("priorities", list.payers.map((entry) => {
    const row = document.createElement("tr");
    row.dataset.payer = entry.payerAddress;
    cell(row, code(entry.payerAddress));
    cell(row, entry.lane, "number");
    cell(row, entry.note, "wrap");
    cell(row, entry.setBy);
    cell(row, entry.source);
    cell(row, when(entry.setAt));
    const clear = document.createElement("button");
    clear.type = "button";
    clear.className = "small secondary";
    clear.textContent = "Clear…";
    clear.addEventListener("click", () => changePriority(entry.payerAddress, null, null, entry.lane));
    cell(row, clear);
    return row;
  }), "No payer has a lane: every request is in lane 0.", 7);
  fill("lanes", list.lanes.map((lane) => {
    const row = document.createElement("tr");
    row.dataset.lane = String(lane.lane);
    cell(row, lane.lane, "number");
    cell(row, lane.queued, "number");
    return row;
  }), "Nothing queued.", 2);
}

async function changePriority(payer, lane, note, previous) {
  if (!payer) return showMessage("Type the payer's address first.");
  const question = lane === null
    ? `Clear the lane of ${payer} (lane ${previous})? Their next requests go in lane 0.`
    : `Put ${payer} in lane ${lane}? Their requests accepted from now on go before those of lower lanes.`;
  if (!(await confirmDialog(lane === null ? "Clear a priority" : "Set a priority", question))) return;
  try {
    const done = await api(`/api/priorities/${encodeURIComponent(payer)}`, {
      method: "PUT",
      body: JSON.stringify(lane === null ? { lane: null } : { lane, note: note || null }),
    });
    showMessage("");
    showNotice(done.lane === null ? `${done.payer}: back to lane 0.` : `${done.payer}: lane ${done.lane}.`);
  } catch (error) {
    showMessage(error.message);
  }
  await loadPriorities();
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
