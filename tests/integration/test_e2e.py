"""The whole pipeline as processes (intake, batcher, confirmer) on real Redis, PostgreSQL and anvil."""

import asyncio
import json

import aiohttp
from web3 import HTTPProvider, Web3

from shared.deploy import Deployment, load_artifact
from tests.support.payments import gasless_body, pay_by_transfer, x402_header
from tests.support.requests import wait_final


async def post_mint(
    session: aiohttp.ClientSession, url: str, kind: str, payer, deployment: Deployment, w3: Web3
) -> dict:
    if kind == "x402":
        request = {"json": {}, "headers": {"PAYMENT-SIGNATURE": x402_header(payer, deployment)}}
    elif kind == "gasless":
        request = {"json": gasless_body(payer, deployment)}
    else:
        request = {"json": {"paymentType": "custom", "paymentTxHash": pay_by_transfer(w3, payer, deployment)}}
    async with session.post(f"{url}/mint", **request) as response:
        body = await response.json()
        assert response.status == 202, body
        return body


async def test_concurrent_paid_mints_of_all_three_types_each_mint_exactly_once(
    intake_url, services, pg_pool, deployment, fund_payers, anvil, settings_env
):
    url = await intake_url()
    services("batcher", BATCHER_BATCH_SIZE="50", LOG_LEVEL="DEBUG")
    services("confirmer", LOG_LEVEL="DEBUG")
    w3 = Web3(HTTPProvider(anvil.rpc_url))
    payers = fund_payers(50)
    kinds = ("x402", "gasless", "custom", "x402")
    async with aiohttp.ClientSession() as session:
        # Custom payments are transfers made up front; the posts themselves all go at once.
        plans = [(kinds[i % 4], payers[i % 50]) for i in range(200)]
        bodies = await asyncio.gather(
            *(post_mint(session, url, kind, payer, deployment, w3) for kind, payer in plans)
        )
    ids = [b["queueId"] for b in bodies]
    assert len(set(ids)) == 200
    assert {b["paymentType"] for b in bodies} == {"x402", "gasless", "custom"}

    rows = await wait_final(pg_pool, ids)
    assert [r["status"] for r in rows] == ["completed"] * 200, [r["error_message"] for r in rows][:5]

    token = w3.eth.contract(address=deployment.token, abi=load_artifact("MintToken")["abi"])
    expected: dict[str, int] = {}
    for row in rows:
        expected[row["payer_address"]] = expected.get(row["payer_address"], 0) + deployment.mint_amount
        assert token.functions.processed(bytes.fromhex(row["payment_id"][2:])).call()
    for payer, balance in expected.items():
        assert token.functions.balanceOf(payer).call() == balance
    assert token.functions.totalSupply().call() == 200 * deployment.mint_amount

    nonces = [r["nonce"] for r in await pg_pool.fetch("SELECT nonce FROM batches ORDER BY nonce")]
    assert nonces == list(range(nonces[0], nonces[0] + len(nonces)))
    assert w3.eth.get_transaction_count(deployment.minter) == nonces[-1] + 1

    # No secret in any log, even at debug level.
    secrets = (settings_env["BATCHER_PRIVATE_KEY"].removeprefix("0x"), settings_env["WEBHOOK_SECRET"])
    for process in services.started:
        text = process.log_path.read_text()
        assert text and not any(secret in text for secret in secrets), process.name
    # Structured logs: every line one JSON object naming its service, with the ids of its event.
    lines = {
        process.name: [json.loads(line) for line in process.log_path.read_text().splitlines()]
        for process in services.started
    }
    for name, entries in lines.items():
        assert {entry["service"] for entry in entries} == {name}
    signed = [e for e in lines["batcher"] if e["message"].startswith("batch ") and "signed" in e["message"]]
    assert signed and all({"batch_id", "nonce", "tx_hash"} <= entry.keys() for entry in signed)
    confirmed = [e for e in lines["confirmer"] if "confirmed in block" in e["message"]]
    assert confirmed and all({"batch_id", "nonce", "tx_hash"} <= entry.keys() for entry in confirmed)
    accepted = [e for e in lines["intake"] if e["message"].startswith("accepted token request")]
    assert len(accepted) == 200
    assert {entry["queue_id"] for entry in accepted} == set(ids)
    assert all(entry["request_id"] for entry in accepted)


async def test_redis_flushed_while_requests_are_in_flight_loses_nothing(
    intake_url, services, pg_pool, redis_client, deployment, fund_payers, anvil
):
    url = await intake_url()
    services("batcher", BATCHER_BATCH_SIZE="10")
    services("confirmer")
    w3 = Web3(HTTPProvider(anvil.rpc_url))
    payers = fund_payers(60)
    ids = []
    async with aiohttp.ClientSession() as session:
        for i, payer in enumerate(payers):
            ids.append((await post_mint(session, url, "gasless", payer, deployment, w3))["queueId"])
            if i == 30:
                await redis_client.flushdb()
    rows = await wait_final(pg_pool, ids)
    assert [r["status"] for r in rows] == ["completed"] * 60
    token = w3.eth.contract(address=deployment.token, abi=load_artifact("MintToken")["abi"])
    assert [token.functions.balanceOf(p.address).call() for p in payers] == [deployment.mint_amount] * 60
