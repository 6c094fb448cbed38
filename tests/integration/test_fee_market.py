"""Fees from the chain on real anvil: they follow the base fee, hold the ceiling, replacements are
accepted by the node, and a transaction the node refused is never fee-bumped."""

import asyncio
import math
import time
from collections.abc import Iterator

import pytest
from web3 import HTTPProvider, Web3

from devstack.anvil import MINTER_ADDRESSES, MINTER_KEYS, Anvil
from tests.integration.test_batcher_confirmer import enqueue, minted_once, wait_for
from tests.integration.test_chain_events import mining, sent_batch
from tests.support.batcher import in_process_batcher, metric

GWEI = 10**9


@pytest.fixture(scope="module")
def anvil() -> Iterator[Anvil]:
    """A chain of this module's own: these tests steer the base fee and the minter's balance."""
    with Anvil(block_time=None) as node:
        yield node


def set_base_fee(w3: Web3, wei: int) -> None:
    """Mine a block with this base fee; the block after it (empty) asks 12.5% less."""
    w3.provider.make_request("anvil_setNextBlockBaseFeePerGas", [hex(wei)])
    w3.provider.make_request("evm_mine", [])


async def attempts_of(pool, batch_id: int) -> list:
    return await pool.fetch(
        "SELECT tx_hash, max_fee_per_gas, max_priority_fee_per_gas FROM batch_transactions"
        " WHERE batch_id = $1 ORDER BY created_at",
        batch_id,
    )


async def test_fees_follow_the_base_fee_of_the_chain(
    settings_env, services, pg_pool, redis_client, deployment, fund_payers, anvil
):
    w3 = Web3(HTTPProvider(anvil.rpc_url))
    payers = fund_payers(3)
    set_base_fee(w3, 40 * GWEI)
    ids = await enqueue(pg_pool, redis_client, settings_env["MINTLINE_NAMESPACE"], deployment, payers)
    services("batcher", BATCHER_BATCH_WINDOW_SECONDS="0.2")
    services("confirmer")
    rows = await wait_for(pg_pool, ids, timeout=30)
    assert {r["status"] for r in rows} == {"completed"}
    batch = await pg_pool.fetchrow("SELECT max_fee_per_gas, max_priority_fee_per_gas FROM batches")
    receipt = w3.eth.get_transaction_receipt(rows[0]["mint_tx_hash"])
    base_fee = w3.eth.get_block(receipt["blockNumber"])["baseFeePerGas"]
    assert 30 * GWEI < base_fee < 40 * GWEI
    # Signed for the block it went into: twice its base fee plus the tip (the 1 gwei floor here).
    assert batch["max_priority_fee_per_gas"] == GWEI
    assert batch["max_fee_per_gas"] == 2 * base_fee + GWEI
    await minted_once(w3, deployment, payers)


async def test_no_transaction_is_signed_above_the_ceiling_requests_wait_for_the_base_fee_to_fall(
    settings_env, services, pg_pool, redis_client, deployment, fund_payers, anvil
):
    w3 = Web3(HTTPProvider(anvil.rpc_url))
    payers = fund_payers(3)
    set_base_fee(w3, 100 * GWEI)
    ids = await enqueue(pg_pool, redis_client, settings_env["MINTLINE_NAMESPACE"], deployment, payers)
    services("batcher", BATCHER_BATCH_WINDOW_SECONDS="0.2", BATCHER_MAX_FEE_GWEI="50")
    services("confirmer")
    await asyncio.sleep(4)
    assert await pg_pool.fetchval("SELECT count(*) FROM batches") == 0
    statuses = await wait_for(pg_pool, ids, timeout=0)
    assert {r["status"] for r in statuses} == {"pending"}
    # 30 gwei: twice that plus the tip passes the ceiling, so the offer is clamped to 50 gwei.
    set_base_fee(w3, 30 * GWEI)
    rows = await wait_for(pg_pool, ids, timeout=30)
    assert {r["status"] for r in rows} == {"completed"}
    offered = await pg_pool.fetch("SELECT max_fee_per_gas, max_priority_fee_per_gas FROM batch_transactions")
    assert offered and all(r["max_fee_per_gas"] == 50 * GWEI for r in offered)
    assert all(r["max_priority_fee_per_gas"] <= r["max_fee_per_gas"] for r in offered)
    await minted_once(w3, deployment, payers)


async def test_a_replacement_raises_both_fee_fields_by_ten_percent_and_is_accepted_by_the_node(
    settings_env, services, pg_pool, redis_client, deployment, fund_payers, anvil
):
    w3 = Web3(HTTPProvider(anvil.rpc_url))
    payers = fund_payers(3)
    set_base_fee(w3, GWEI)
    w3.provider.make_request("evm_setAutomine", [False])
    try:
        ids = await enqueue(pg_pool, redis_client, settings_env["MINTLINE_NAMESPACE"], deployment, payers)
        batcher = services(
            "batcher",
            BATCHER_BATCH_WINDOW_SECONDS="0.2",
            BATCHER_FEE_BUMP_PERCENT="10",
            BATCHER_FEE_BUMP_SPACING_SECONDS="0.5",
        )
        services("confirmer", CONFIRMER_STUCK_AFTER_BLOCKS="2")
        first = await sent_batch(pg_pool)
        # The base fee jumps above what the transaction offers: no block includes it until replaced.
        w3.provider.make_request("anvil_setNextBlockBaseFeePerGas", [hex(20 * GWEI)])
        async with mining(w3):
            rows = await wait_for(pg_pool, ids, timeout=60)
    finally:
        w3.provider.make_request("evm_setAutomine", [True])
    assert {r["status"] for r in rows} == {"completed"}
    attempts = await attempts_of(pg_pool, first["id"])
    assert len(attempts) >= 2
    for old, new in zip(attempts, attempts[1:], strict=False):
        for field in ("max_fee_per_gas", "max_priority_fee_per_gas"):
            assert new[field] >= math.ceil(old[field] * 110 / 100), (field, old[field], new[field])
    # The node took the replacement: it is the transaction that minted.
    assert {r["mint_tx_hash"] for r in rows} == {attempts[-1]["tx_hash"]}, batcher.log_tail(60)
    assert w3.eth.get_transaction(attempts[-1]["tx_hash"])["nonce"] == first["nonce"]
    await minted_once(w3, deployment, payers)


async def test_each_signer_wallet_replaces_its_own_late_transaction(
    settings_env, services, pg_pool, redis_client, deployment, fund_payers, anvil
):
    """Two wallets in one process, a batch each, both priced out: every stuck report reaches the
    wallet whose batch it is (a consumer group per wallet), and each replaces its own at its nonce."""
    w3 = Web3(HTTPProvider(anvil.rpc_url))
    payers = fund_payers(10)
    set_base_fee(w3, GWEI)
    w3.provider.make_request("evm_setAutomine", [False])
    try:
        ids = await enqueue(pg_pool, redis_client, settings_env["MINTLINE_NAMESPACE"], deployment, payers)
        batcher = services(
            "batcher",
            BATCHER_PRIVATE_KEYS=",".join(MINTER_KEYS),
            BATCHER_BATCH_SIZE="5",
            # One batch in flight per wallet: the second batch is the other wallet's.
            BATCHER_MAX_IN_FLIGHT="1",
            BATCHER_BATCH_WINDOW_SECONDS="0.2",
            BATCHER_FEE_BUMP_PERCENT="10",
            BATCHER_FEE_BUMP_SPACING_SECONDS="0.5",
        )
        services("confirmer", CONFIRMER_STUCK_AFTER_BLOCKS="2")
        deadline = time.monotonic() + 20
        while await pg_pool.fetchval("SELECT count(DISTINCT wallet) FROM batches WHERE status = 'sent'") < 2:
            assert time.monotonic() < deadline, batcher.log_tail()
            await asyncio.sleep(0.05)
        w3.provider.make_request("anvil_setNextBlockBaseFeePerGas", [hex(20 * GWEI)])
        async with mining(w3):
            rows = await wait_for(pg_pool, ids, timeout=60)
    finally:
        w3.provider.make_request("evm_setAutomine", [True])
    assert {r["status"] for r in rows} == {"completed"}, batcher.log_tail(60)
    minted_by = {r["mint_tx_hash"] for r in rows}
    for wallet in MINTER_ADDRESSES:
        first = await pg_pool.fetchrow(
            "SELECT id, nonce FROM batches WHERE wallet = $1 ORDER BY nonce LIMIT 1", wallet
        )
        attempts = await attempts_of(pg_pool, first["id"])
        assert len(attempts) >= 2, wallet
        last = w3.eth.get_transaction(attempts[-1]["tx_hash"])
        assert (last["from"], last["nonce"]) == (wallet, first["nonce"])
        assert attempts[-1]["tx_hash"] in minted_by
    await minted_once(w3, deployment, payers)


async def test_a_wallet_that_cannot_pay_signs_nothing_until_it_is_funded(
    settings_env, services, pg_pool, redis_client, deployment, fund_payers, anvil
):
    """Fees with the balance in mind: no transaction the node would refuse for funds is signed."""
    w3 = Web3(HTTPProvider(anvil.rpc_url))
    payers = fund_payers(3)
    minter = deployment.minter
    balance = w3.eth.get_balance(minter)
    w3.provider.make_request("anvil_setBalance", [minter, hex(10**9)])
    try:
        ids = await enqueue(pg_pool, redis_client, settings_env["MINTLINE_NAMESPACE"], deployment, payers)
        batcher = services("batcher", BATCHER_BATCH_WINDOW_SECONDS="0.2")
        services("confirmer")
        deadline = time.monotonic() + 20
        while await metric(batcher, "mintline_batcher_waiting_for_funds") != 1:
            assert time.monotonic() < deadline, batcher.log_tail()
            await asyncio.sleep(0.2)
        assert await pg_pool.fetchval("SELECT count(*) FROM batches") == 0
    finally:
        w3.provider.make_request("anvil_setBalance", [minter, hex(balance)])
    rows = await wait_for(pg_pool, ids, timeout=30)
    assert {r["status"] for r in rows} == {"completed"}
    assert await metric(batcher, "mintline_batcher_waiting_for_funds") == 0
    await minted_once(w3, deployment, payers)


async def test_a_broadcast_refused_for_insufficient_funds_is_not_fee_bumped(
    env, services, pg_pool, redis_client, deployment, fund_payers, anvil
):
    """A batch signed while the wallet could pay, refused at broadcast because it no longer can: it
    waits for funds with its one attempt (no fee spiral), and goes once the wallet is funded."""
    from services.batcher.batching import Waiting

    w3 = Web3(HTTPProvider(anvil.rpc_url))
    payers = fund_payers(3)
    ids = await enqueue(pg_pool, redis_client, env["MINTLINE_NAMESPACE"], deployment, payers, publish=False)
    async with in_process_batcher(pg_pool, redis_client) as signer:
        stored = await signer.store.store([Waiting(i, "token", 2**62, 0.0) for i in ids])
    assert stored is not None
    batch_id = stored[0]
    minter = deployment.minter
    balance = w3.eth.get_balance(minter)
    w3.provider.make_request("anvil_setBalance", [minter, hex(10**9)])
    try:
        batcher = services(
            "batcher",
            BATCHER_BATCH_WINDOW_SECONDS="0.2",
            BATCHER_REBROADCAST_AFTER_SECONDS="0.5",
            BATCHER_FEE_BUMP_SPACING_SECONDS="0",
        )
        services("confirmer", CONFIRMER_STUCK_AFTER_BLOCKS="1")
        deadline = time.monotonic() + 20
        while await metric(batcher, 'mintline_batcher_unsendable_total{reason="funds"}') < 1:
            assert time.monotonic() < deadline, batcher.log_tail()
            await asyncio.sleep(0.2)
        # Blocks keep coming: the confirmer reports the batch stuck again and again.
        async with mining(w3, every=0.3):
            await asyncio.sleep(4)
        assert await pg_pool.fetchval("SELECT status FROM batches WHERE id = $1", batch_id) == "signed"
        assert await metric(batcher, "mintline_batcher_waiting_for_funds") == 1
        assert len(await attempts_of(pg_pool, batch_id)) == 1
    finally:
        w3.provider.make_request("anvil_setBalance", [minter, hex(balance)])
    rows = await wait_for(pg_pool, ids, timeout=30)
    assert {r["status"] for r in rows} == {"completed"}
    assert len(await attempts_of(pg_pool, batch_id)) == 1
    await minted_once(w3, deployment, payers)


async def test_a_batch_whose_fees_fell_below_the_base_fee_is_re_signed_with_fees_from_the_chain(
    env, services, pg_pool, redis_client, deployment, fund_payers, anvil
):
    """Signed, then the base fee jumps past its max fee before it is broadcast: the node refuses it
    ("max fee per gas less than block base fee"), and the same call goes at the same nonce with fees
    read from the chain now, instead of the same bytes again and again."""
    from services.batcher.batching import Waiting

    w3 = Web3(HTTPProvider(anvil.rpc_url))
    payers = fund_payers(3)
    ids = await enqueue(pg_pool, redis_client, env["MINTLINE_NAMESPACE"], deployment, payers, publish=False)
    async with in_process_batcher(pg_pool, redis_client) as signer:
        stored = await signer.store.store([Waiting(i, "token", 2**62, 0.0) for i in ids])
    assert stored is not None
    batch_id, nonce = stored[0], stored[1]
    set_base_fee(w3, 100 * GWEI)
    batcher = services("batcher", BATCHER_BATCH_WINDOW_SECONDS="0.2")
    services("confirmer")
    rows = await wait_for(pg_pool, ids, timeout=30)
    assert {r["status"] for r in rows} == {"completed"}, batcher.log_tail()
    first, *later = await attempts_of(pg_pool, batch_id)
    assert len(later) == 1
    assert later[0]["max_fee_per_gas"] > 2 * 80 * GWEI > first["max_fee_per_gas"]
    assert {r["mint_tx_hash"] for r in rows} == {later[0]["tx_hash"]}
    assert w3.eth.get_transaction(later[0]["tx_hash"])["nonce"] == nonce
    assert await metric(batcher, 'mintline_batcher_unsendable_total{reason="fees"}') == 1
    await minted_once(w3, deployment, payers)
