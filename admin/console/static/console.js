// The operator console: one EventSource (the overview) keeps the page live; the lists are read from
// the JSON routes again on every overview event. Loaded last: it starts the page.
"use strict";

const RETRY_MS = 5000;
let view = "overview";

// --- views and the live stream ---------------------------------------------------------------------

const LOADERS = {
  requests: loadRequests, batches: loadBatches, renders: loadRenders, settings: loadSettings,
  priorities: loadPriorities, audit: loadAudit,
};

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
  options("priority-lane", ["1", "2", "3", "4", "5", "6", "7", "8", "9"]);
  byId("priority-form").addEventListener("submit", (event) => {
    event.preventDefault();
    changePriority(byId("priority-payer").value.trim(), Number(byId("priority-lane").value),
      byId("priority-note").value.trim());
  });
  for (const button of document.querySelectorAll("[data-action]")) {
    button.addEventListener("click", () => runAction(button.dataset.action, button));
  }
  window.addEventListener("hashchange", showView);
  showView();
  watch();
}

start();
