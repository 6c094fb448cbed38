// The status page: two EventSource streams (one request, the whole queue) update the page in place.
"use strict";

const FINAL = new Set(["completed", "failed"]);
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
// A stream the server refused (503: too many open streams, intake restarting) is tried again after this.
const RETRY_MS = 5000;

const byId = (id) => document.getElementById(id);

function setText(id, value) {
  byId(id).textContent = value === null || value === undefined || value === "" ? "—" : String(value);
}

function duration(seconds) {
  if (seconds < 60) return `about ${seconds} s`;
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `about ${minutes} min`;
  return `about ${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

function time(iso) {
  return iso ? new Date(iso).toLocaleTimeString() : null;
}

function showMessage(text) {
  const message = byId("message");
  message.textContent = text;
  message.hidden = !text;
}

function connection(text) {
  byId("connection").textContent = text;
}

// --- one request -----------------------------------------------------------------------------------

function showItem(item) {
  byId("item").hidden = false;
  const status = byId("status");
  status.textContent = item.status;
  status.dataset.status = item.status;
  setText("position", item.queuePosition);
  setText("wait", item.estimatedWaitSeconds === null ? null : duration(item.estimatedWaitSeconds));
  setText("tx", item.mintTxHash);
  setText("token", item.tokenId);
  byId("token-row").hidden = item.tokenId === null;
  setText("error", item.error);
  byId("error-row").hidden = !item.error;
  setText("updated", time(item.updatedAt));

  byId("render-row").hidden = !item.render;
  if (item.render) {
    byId("render-progress").value = item.render.progress;
    setText("render", `${item.render.status}, ${item.render.progress} %`);
  }

  const history = byId("history");
  history.replaceChildren(
    ...item.history.map((change) => {
      const entry = document.createElement("li");
      const when = document.createElement("time");
      when.dateTime = change.at;
      when.textContent = time(change.at);
      entry.append(when, ` ${change.status}`, change.reason ? ` (${change.reason})` : "");
      return entry;
    }),
  );
}

function watchItem(queueId) {
  const path = encodeURIComponent(queueId);
  const source = new EventSource(`/events/item/${path}`);
  source.addEventListener("item", (event) => {
    const item = JSON.parse(event.data);
    showItem(item);
    // The server ends the stream after a final state; closing first keeps the browser from reconnecting.
    if (FINAL.has(item.status)) source.close();
  });
  source.addEventListener("error", async () => {
    if (source.readyState !== EventSource.CLOSED) return; // the browser reconnects by itself
    // The server refused the stream: the JSON endpoint says why (400 invalid id, 404 unknown id).
    try {
      const response = await fetch(`/queue/item/${path}`, { headers: { Accept: "application/json" } });
      if (response.ok) {
        setTimeout(() => watchItem(queueId), RETRY_MS);
        return;
      }
      const body = await response.json();
      showMessage(body.message || `The request could not be found (HTTP ${response.status}).`);
    } catch {
      setTimeout(() => watchItem(queueId), RETRY_MS);
    }
  });
}

// --- the queue -------------------------------------------------------------------------------------

function cell(row, value, className) {
  const td = document.createElement("td");
  if (className) td.className = className;
  td.textContent = value === null || value === undefined ? "—" : String(value);
  row.append(td);
  return td;
}

function showQueue(queue) {
  setText("queue-depth", queue.queueDepth);
  setText("queue-wait", duration(queue.estimatedWaitSeconds));
  setText("throughput", queue.throughput.mintsPerSecond);
  setText("queue-done", `${queue.counts.completed || 0} / ${queue.counts.failed || 0}`);

  const rows = queue.batches.map((batch) => {
    const row = document.createElement("tr");
    row.dataset.batchId = batch.id;
    cell(row, batch.id);
    cell(row, batch.nonce);
    cell(row, batch.kind);
    cell(row, batch.entries, "number");
    cell(row, batch.status).dataset.status = batch.status;
    const tx = document.createElement("code");
    tx.textContent = batch.txHash;
    tx.title = batch.txHash;
    cell(row, "").replaceChildren(tx);
    cell(row, batch.blockNumber, "number");
    return row;
  });
  const body = byId("batches").tBodies[0];
  if (rows.length) {
    body.replaceChildren(...rows);
  }
}

function watchQueue() {
  const source = new EventSource("/events/queue");
  source.addEventListener("open", () => connection("on"));
  source.addEventListener("queue", (event) => showQueue(JSON.parse(event.data)));
  source.addEventListener("error", () => {
    if (source.readyState === EventSource.CLOSED) {
      connection("off, retrying…");
      setTimeout(watchQueue, RETRY_MS);
    } else {
      connection("reconnecting…");
    }
  });
}

// --- start -----------------------------------------------------------------------------------------

function start() {
  const queueId = (new URLSearchParams(window.location.search).get("id") || "").trim();
  byId("queue-id").value = queueId;
  if (queueId && !UUID.test(queueId)) {
    showMessage("That is not a queue id: it looks like 3f2c9a1e-8b7d-4c6f-9e2a-1b0c5d4e3f21.");
  } else if (queueId) {
    watchItem(queueId);
  }
  watchQueue();
}

start();
