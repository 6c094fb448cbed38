"""Batcher and confirmer as processes on real Redis, PostgreSQL and anvil."""

import asyncio
import time
import uuid

import asyncpg
from redis.asyncio import Redis
from web3 import HTTPProvider, Web3

from shared import keys
from shared.deploy import Deployment, load_artifact
from shared.events import MintRequested
from shared.keys import Keys
from shared.streams import publish_many
from tests.support.payments import sign_authorization


async def enqueue(pool: asyncpg.Pool, redis: Redis, namespace: str, deployment: Deployment, payers: list,
                  publish: bool = True) -> list[str]:
    """Insert pending requests the way intake does (row committed, then the event published)."""
    ids = []
    events = []
    for payer in payers:
        authorization, signature = sign_authorization(payer, deployment)
        request_id = str(uuid.uuid4())
        payment_id = "0x" + Web3.solidity_keccak(["address", "bytes32"], [payer.address, authorization["nonce"]]).hex().removeprefix("0x")
        await pool.execute(
            "INSERT INTO mint_requests (id, payer_address, payment_type, payment_id, amount, authorization_data,"
            " valid_before, status) VALUES ($1, $2, 'gasless', $3, $4, $5, $6, 'pending')",
            uuid.UUID(request_id), payer.address, payment_id, deployment.price,
            {**authorization, "signature": signature}, int(authorization["validBefore"]),
        )
        ids.append(request_id)
        events.append(MintRequested(request_id=request_id, valid_before=int(authorization["validBefore"])))
    if publish:
        await publish_many(redis, Keys(namespace).stream(keys.MINT_REQUESTED), events)
    return ids


async def wait_for(pool: asyncpg.Pool, ids: list[str], timeout: float = 60) -> list:
    deadline = time.monotonic() + timeout
    while True:
        rows = await pool.fetch("SELECT id, status, error_message, mint_tx_hash FROM mint_requests WHERE id = ANY($1::uuid[])",
                                [uuid.UUID(i) for i in ids])
        if all(r["status"] in ("completed", "failed") for r in rows) or time.monotonic() > deadline:
            return rows
        await asyncio.sleep(0.2)


async def test_batches_mint_every_request_once(settings_env, services, pg_pool, redis_client, deployment, fund_payers, anvil):
    payers = fund_payers(30)
    ids = await enqueue(pg_pool, redis_client, settings_env["MINTLINE_NAMESPACE"], deployment, payers)
    batcher = services("batcher", BATCHER_BATCH_SIZE="10")
    confirmer = services("confirmer")
    rows = await wait_for(pg_pool, ids)
    assert [r["status"] for r in rows] == ["completed"] * 30, batcher.log_tail() + confirmer.log_tail()
    w3 = Web3(HTTPProvider(anvil.rpc_url))
    token = w3.eth.contract(address=deployment.token, abi=load_artifact("MintToken")["abi"])
    for payer in payers:
        assert token.functions.balanceOf(payer.address).call() == deployment.mint_amount
    nonces = [r["nonce"] for r in await pg_pool.fetch("SELECT nonce FROM batches ORDER BY nonce")]
    assert nonces == list(range(len(nonces))) and len(nonces) >= 3
