// The official TypeScript x402 client (@x402/fetch + @x402/evm, viem account) paying a running intake,
// unmodified: tests/integration/test_x402_clients.py runs it with node and checks the outcome.
//
// Environment: INTAKE_URL (no trailing slash), PAYER_KEY (a local dev key), PAYMENT_ID (a base for the
// payment-identifier ids, 16+ of [A-Za-z0-9_-]) and RENDER (the render settings JSON for POST /nft/render).
// Prints one JSON object: per step its status, body and the headers that matter, and the payments the
// client sent (the decoded PAYMENT-SIGNATURE values).

import { wrapFetchWithPayment, x402Client } from "@x402/fetch";
import { ExactEvmScheme } from "@x402/evm/exact/client";
import {
  PAYMENT_IDENTIFIER,
  appendPaymentIdentifierToExtensions,
} from "@x402/extensions/payment-identifier";
import { privateKeyToAccount } from "viem/accounts";

const { INTAKE_URL, PAYER_KEY, PAYMENT_ID, RENDER } = process.env;
const account = privateKeyToAccount(PAYER_KEY);

// The id the next payment carries, set per step.
let paymentId = null;
const client = new x402Client().register("eip155:*", new ExactEvmScheme(account));
// The client pays only assets it knows by default; the local mock USDC must be allowed explicitly.
client.setSpendControls({ allowedAssets: true });
client.registerExtension({
  key: PAYMENT_IDENTIFIER,
  async enrichPaymentPayload(payload) {
    const extensions = appendPaymentIdentifierToExtensions({ ...payload.extensions }, paymentId);
    return { ...payload, extensions };
  },
});

// Every request the wrapper sends goes through here, so a paid one can be sent again as it was.
const sent = [];
async function recordingFetch(request) {
  sent.push({ url: request.url, headers: new Headers(request.headers), body: await request.clone().text() });
  return fetch(request);
}
const fetchWithPayment = wrapFetchWithPayment(recordingFetch, client);

async function outcome(response) {
  const text = await response.text();
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    body = text;
  }
  return {
    status: response.status,
    body,
    replayed: response.headers.get("Idempotent-Replayed"),
  };
}

function postJson(path, body) {
  return fetchWithPayment(`${INTAKE_URL}${path}`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
}

const lastPaid = () => sent.findLast((request) => request.headers.has("PAYMENT-SIGNATURE"));
const results = {};

paymentId = `${PAYMENT_ID}-mint`;
results.mint = await outcome(await postJson("/mint", {}));
// The same paid request again, as a client retries one whose answer it lost.
const paid = lastPaid();
results.retry = await outcome(
  await fetch(paid.url, { method: "POST", headers: paid.headers, body: paid.body }),
);
// A second payment (a fresh authorization) under the same payment-identifier.
results.reused = await outcome(await postJson("/mint", {}));

paymentId = `${PAYMENT_ID}-nft`;
results.render = await outcome(await postJson("/nft/render", { render: JSON.parse(RENDER) }));

results.payments = sent
  .filter((request) => request.headers.has("PAYMENT-SIGNATURE"))
  .map((request) => ({
    url: request.url,
    payment: JSON.parse(Buffer.from(request.headers.get("PAYMENT-SIGNATURE"), "base64").toString()),
  }));
results.payer = account.address;
console.log(JSON.stringify(results));
