// The console's shared pieces: formatting, table cells, the JSON API, the confirmation dialog. The
// page's scripts are plain files loaded in order (common, views, actions, console): no build step.
"use strict";

const STATUSES = {
  request: ["rendering", "rendered", "pending", "batched", "sent", "completed", "failed", "confirmation_failed"],
  batch: ["signed", "sent", "confirmed", "reverted"],
  render: ["waiting", "active", "completed", "failed"],
};
const byId = (id) => document.getElementById(id);
// What the Requests and Batches views have open (re-read with their list on every live event).
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
