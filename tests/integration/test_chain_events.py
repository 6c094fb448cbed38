"""What the chain can do to a sent batch: leave it unmined (fees too low) or reorg it away."""

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from web3 import HTTPProvider, Web3

from devstack.anvil import Anvil
from tests.integration.test_batcher_confirmer import enqueue, minted_once, wait_for


@pytest.fixture(scope="module")
def anvil() -> Iterator[Anvil]:
    """A chain of this module's own: these tests stop automine and steer the base fee."""
    with Anvil(block_time=None) as node:
        yield node


@contextlib.asynccontextmanager
async def mining(w3: Web3, every: float = 0.2) -> AsyncIterator[None]:
    """Mine a block every `every` seconds, as a chain with a block time would."""

    async def mine() -> None:
        while True:
            w3.provider.make_request("evm_mine", [])
            await asyncio.sleep(every)

    task = asyncio.create_task(mine())
    try:
        yield
    finally:
        task.cancel()


async def sent_batch(pool, timeout: float = 20) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = await pool.fetchrow(
            "SELECT id, tx_hash, nonce FROM batches WHERE status = 'sent' ORDER BY id LIMIT 1"
        )
        if row:
            return dict(row)
        await asyncio.sleep(0.05)
    raise AssertionError("no batch was sent")


async def test_a_transaction_priced_out_is_replaced_with_higher_fees_and_the_same_nonce(
    settings_env, services, pg_pool, redis_client, deployment, fund_payers, anvil
):
    w3 = Web3(HTTPProvider(anvil.rpc_url))
    payers = fund_payers(5)
    w3.provider.make_request("evm_setAutomine", [False])
    try:
        ids = await enqueue(pg_pool, redis_client, settings_env["MINTLINE_NAMESPACE"], deployment, payers)
        services("batcher", BATCHER_BATCH_WINDOW_SECONDS="0.2")
        services("confirmer", CONFIRMER_STUCK_AFTER_BLOCKS="3")
        first = await sent_batch(pg_pool)
        # The base fee jumps far above what the transaction offers, so no block will include it.
        w3.provider.make_request("anvil_setNextBlockBaseFeePerGas", [hex(500 * 10**9)])
        async with mining(w3):
            rows = await wait_for(pg_pool, ids, timeout=60)
    finally:
        w3.provider.make_request("evm_setAutomine", [True])
    assert {r["status"] for r in rows} == {"completed"}
    attempts = await pg_pool.fetch(
        "SELECT tx_hash, max_fee_per_gas FROM batch_transactions WHERE batch_id = $1 ORDER BY created_at",
        first["id"],
    )
    assert len(attempts) >= 2 and attempts[-1]["max_fee_per_gas"] > attempts[0]["max_fee_per_gas"]
    assert {r["mint_tx_hash"] for r in rows} == {attempts[-1]["tx_hash"]} != {first["tx_hash"]}
    assert await pg_pool.fetchval("SELECT nonce FROM batches WHERE id = $1", first["id"]) == first["nonce"]
    await minted_once(w3, deployment, payers)


async def test_a_batch_reorged_away_before_its_confirmations_is_sent_again_and_minted_once(
    settings_env, services, pg_pool, redis_client, deployment, fund_payers, anvil
):
    w3 = Web3(HTTPProvider(anvil.rpc_url))
    payers = fund_payers(5)
    ids = await enqueue(pg_pool, redis_client, settings_env["MINTLINE_NAMESPACE"], deployment, payers)
    services("batcher", BATCHER_BATCH_WINDOW_SECONDS="0.2")
    services("confirmer", CONFIRMER_CONFIRMATIONS="3", CONFIRMER_STUCK_AFTER_BLOCKS="2")
    first = await sent_batch(pg_pool)
    receipt = w3.eth.wait_for_transaction_receipt(first["tx_hash"], timeout=10)
    await asyncio.sleep(1)  # the confirmer has seen the receipt, one confirmation short of three
    statuses = await pg_pool.fetch(
        "SELECT status FROM mint_requests WHERE id = ANY($1::uuid[])", [uuid.UUID(i) for i in ids]
    )
    assert {r["status"] for r in statuses} == {"sent"}
    # Replace the block holding the batch with an empty one: the transaction is gone from the chain.
    w3.provider.make_request("anvil_reorg", [w3.eth.block_number - receipt["blockNumber"] + 1, []])
    assert w3.eth.get_transaction_count(deployment.minter) == first["nonce"]
    async with mining(w3):
        rows = await wait_for(pg_pool, ids, timeout=60)
    assert {r["status"] for r in rows} == {"completed"}
    await minted_once(w3, deployment, payers)


async def test_batches_queued_behind_earlier_nonces_are_not_fee_bumped(
    settings_env, services, pg_pool, redis_client, deployment, fund_payers, anvil
):
    w3 = Web3(HTTPProvider(anvil.rpc_url))
    payers = fund_payers(6)
    limit = w3.eth.get_block("latest")["gasLimit"]
    w3.provider.make_request("evm_setAutomine", [False])
    try:
        ids = await enqueue(pg_pool, redis_client, settings_env["MINTLINE_NAMESPACE"], deployment, payers)
        services("batcher", BATCHER_BATCH_SIZE="2", BATCHER_BATCH_WINDOW_SECONDS="0.1")
        services("confirmer", CONFIRMER_STUCK_AFTER_BLOCKS="1")
        deadline = time.monotonic() + 20
        while await pg_pool.fetchval("SELECT count(*) FROM batches WHERE status = 'sent'") < 3:
            assert time.monotonic() < deadline, "three batches were not sent"
            await asyncio.sleep(0.05)
        # Blocks that hold one batch each: the second and third wait their turn, fees untouched.
        largest = await pg_pool.fetchval("SELECT max(gas_limit) FROM batches")
        w3.provider.make_request("evm_setBlockGasLimit", [hex(largest + 10_000)])
        async with mining(w3, every=0.5):
            rows = await wait_for(pg_pool, ids, timeout=60)
    finally:
        w3.provider.make_request("evm_setBlockGasLimit", [hex(limit)])
        w3.provider.make_request("evm_setAutomine", [True])
    assert {r["status"] for r in rows} == {"completed"}
    blocks = {w3.eth.get_transaction_receipt(r["mint_tx_hash"])["blockNumber"] for r in rows}
    assert len(blocks) == 3, "each batch should have had a block of its own"
    attempts = await pg_pool.fetch("SELECT batch_id, count(*) AS n FROM batch_transactions GROUP BY batch_id")
    assert [a["n"] for a in attempts] == [1, 1, 1]
