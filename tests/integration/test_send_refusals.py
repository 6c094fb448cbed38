"""Refusals and failures around one batch never wedge the wallet's nonce sequence: a batch the node
will never take has its nonce filled and its requests sent again; a second endpoint carries reads and
broadcasts when the first is away; a batcher that lost its lock cannot commit; a failed store leaves
no stale nonce behind."""

import asyncio
import uuid
from collections.abc import Iterator

import pytest
from eth_account import Account
from web3 import HTTPProvider, Web3

from devstack.anvil import Anvil
from devstack.ports import free_port
from devstack.rpc_proxy import RpcProxy
from tests.integration.test_batcher_confirmer import consecutive, enqueue, logged, minted_once, wait_for
from tests.support.batcher import in_process_batcher, metric


@pytest.fixture(scope="module")
def anvil() -> Iterator[Anvil]:
    """A chain of this module's own: its tests leave nonce holes on purpose (and fill them)."""
    with Anvil() as node:
        yield node


def settled_wallet(w3: Web3, wallet: str) -> None:
    """No transaction of the wallet is left waiting: its pending nonce is its mined nonce."""
    assert w3.eth.get_transaction_count(wallet, "pending") == w3.eth.get_transaction_count(wallet, "latest")


async def test_a_batch_the_node_refuses_as_too_large_has_its_nonce_filled_and_its_requests_resent(
    settings_env, services, pg_pool, redis_client, deployment, fund_payers, anvil
):
    """The node is stricter than the settings (geth refuses transactions over 128 KiB; this one over
    6,000 bytes, about 17 entries): the refused nonce carries a no-op, batches behind it go on, and
    every request is minted once in smaller batches."""
    w3 = Web3(HTTPProvider(anvil.rpc_url))
    payers = fund_payers(40)
    with RpcProxy(anvil.rpc_url) as proxy:
        proxy.max_transaction_bytes = 6_000
        ids = await enqueue(pg_pool, redis_client, settings_env["MINTLINE_NAMESPACE"], deployment, payers)
        batcher = services(
            "batcher", RPC_URL=proxy.url, BATCHER_BATCH_SIZE="40", BATCHER_BATCH_WINDOW_SECONDS="0.3"
        )
        services("confirmer")
        rows = await wait_for(pg_pool, ids, timeout=60)
        assert {r["status"] for r in rows} == {"completed"}, batcher.log_tail()
        assert proxy.refused["oversized"] >= 1
        assert await metric(batcher, "mintline_batcher_nonce_fills_total") >= 1
        assert await metric(batcher, 'mintline_batcher_unsendable_total{reason="too_large"}') >= 1
    filled = await pg_pool.fetch(
        "SELECT nonce, fill_reason, status FROM batches WHERE fill_reason IS NOT NULL"
    )
    assert filled and all("too_large" in f["fill_reason"] for f in filled)
    assert all(f["status"] == "confirmed" for f in filled)
    # Each filled nonce was mined as a no-op self-transfer of the wallet.
    nonces = [r["nonce"] for r in await pg_pool.fetch("SELECT nonce FROM batches ORDER BY nonce")]
    assert consecutive(nonces)
    history = await pg_pool.fetchval(
        "SELECT count(*) FROM mint_request_history WHERE reason LIKE 'batch unsendable (too_large)%'"
    )
    assert history >= 1
    await minted_once(w3, deployment, payers)
    settled_wallet(w3, deployment.minter)


async def test_reads_fail_over_and_broadcasts_reach_every_endpoint(
    settings_env, services, pg_pool, redis_client, deployment, fund_payers, anvil
):
    """RPC_URLS with the first endpoint down and the second one dropping every raw transaction it is
    given: reads go to the second and third, and each transaction reaches the chain through the third."""
    w3 = Web3(HTTPProvider(anvil.rpc_url))
    payers = fund_payers(12)
    down = f"http://127.0.0.1:{free_port()}"
    with RpcProxy(anvil.rpc_url) as dropping, RpcProxy(anvil.rpc_url) as forwarding:
        dropping.drop_transactions = True
        urls = ",".join([down, dropping.url, forwarding.url])
        ids = await enqueue(pg_pool, redis_client, settings_env["MINTLINE_NAMESPACE"], deployment, payers)
        batcher = services(
            "batcher", RPC_URLS=urls, BATCHER_BATCH_SIZE="4", BATCHER_BATCH_WINDOW_SECONDS="0.2"
        )
        services("confirmer", RPC_URLS=urls)
        rows = await wait_for(pg_pool, ids, timeout=60)
        assert {r["status"] for r in rows} == {"completed"}, batcher.log_tail()
        sent = await pg_pool.fetchval("SELECT count(*) FROM batch_transactions")
        assert len(dropping.dropped) >= sent >= 3
        assert forwarding.calls["eth_sendRawTransaction"] >= sent
        # Reads failed over from the endpoint that is down to the next one, which kept them.
        assert dropping.calls["eth_getTransactionCount"] > 0
    await minted_once(w3, deployment, payers)
    settled_wallet(w3, deployment.minter)


async def test_a_batcher_that_lost_its_lock_cannot_commit_a_batch(
    env, pg_pool, redis_client, deployment, fund_payers
):
    from services.batcher.batching import Waiting
    from services.batcher.lock import LockLost

    payers = fund_payers(3)
    ids = await enqueue(pg_pool, redis_client, env["MINTLINE_NAMESPACE"], deployment, payers, publish=False)
    async with in_process_batcher(pg_pool, redis_client) as batcher:
        # The lock's session ends (a network cut, a PostgreSQL failover) before the batcher notices.
        assert await pg_pool.fetchval("SELECT pg_terminate_backend($1)", batcher.lock.backend_pid)
        with pytest.raises(LockLost):
            await batcher.store.store([Waiting(i, "token", 2**62, 0.0) for i in ids])
    assert await pg_pool.fetchval("SELECT count(*) FROM batches") == 0
    statuses = await pg_pool.fetch("SELECT status FROM mint_requests WHERE id = ANY($1::uuid[])", ids)
    assert {r["status"] for r in statuses} == {"pending"}


async def test_a_failed_store_reads_the_nonce_again_instead_of_retrying_it_forever(
    env, pg_pool, redis_client, deployment, fund_payers, anvil
):
    """The nonce in memory is taken in PostgreSQL (a batch stored by a batcher whose commit this one
    never saw): the store fails on it once, the nonce is read again, and the next store goes on."""
    from services.batcher.batching import Waiting

    w3 = Web3(HTTPProvider(anvil.rpc_url))
    payers = fund_payers(2)
    ids = await enqueue(pg_pool, redis_client, env["MINTLINE_NAMESPACE"], deployment, payers, publish=False)
    # Stream entry ids as the batcher would have read them (acked once the batch is stored).
    chosen = [Waiting(i, "token", 2**62, 0.0, [f"1-{n}"]) for n, i in enumerate(ids)]
    async with in_process_batcher(pg_pool, redis_client) as batcher:
        taken = batcher.next_nonce
        await pg_pool.execute(
            "INSERT INTO batches (wallet, nonce, status, request_ids, tx_hash, raw_tx, call_data, gas_limit,"
            " max_fee_per_gas, max_priority_fee_per_gas)"
            " VALUES ($1, $2, 'reverted', '{}', $3, '', '', 21000, 0, 0)",
            batcher.wallet,
            taken,
            "0x" + uuid.uuid4().hex * 2,
        )
        await batcher._send_batch(chosen)
        assert batcher.next_nonce == taken + 1
        assert await pg_pool.fetchval("SELECT count(*) FROM batches") == 1
        await batcher._send_batch(batcher.buffer.take({"token": 10, "nft": 10}))
        assert await pg_pool.fetchval("SELECT nonce FROM batches WHERE status <> 'reverted'") == taken + 1
    # Fill the hole the made-up batch left at `taken`, so the stored batch is mined.
    minter = Account.from_key(env["BATCHER_PRIVATE_KEY"])  # anvil's public dev key 1
    signed = minter.sign_transaction(
        {"chainId": w3.eth.chain_id, "nonce": taken, "to": minter.address, "value": 0, "gas": 21_000,
         "gasPrice": w3.eth.gas_price * 2}
    )  # fmt: skip
    w3.eth.send_raw_transaction(signed.raw_transaction)
    for _ in range(50):
        if w3.eth.get_transaction_count(minter.address, "latest") >= taken + 2:
            break
        await asyncio.sleep(0.1)
    await minted_once(w3, deployment, payers)
    settled_wallet(w3, minter.address)


async def test_a_node_that_refuses_the_chain_id_stops_the_batcher_and_loses_nothing(
    settings_env, services, pg_pool, redis_client, deployment, fund_payers, anvil
):
    """The endpoint starts serving another chain after start-up (a provider's URL pointed at the wrong
    network): the node refuses the signed batch for its chain id, the batcher stops with exit code 2
    instead of signing on, and once the endpoint is right again the stored batch goes as it was."""
    w3 = Web3(HTTPProvider(anvil.rpc_url))
    payers = fund_payers(3)
    with Anvil(chain_id=31338) as other, RpcProxy(anvil.rpc_url) as proxy:
        batcher = services("batcher", RPC_URL=proxy.url, BATCHER_BATCH_WINDOW_SECONDS="0.2")
        await logged(batcher, "this batcher is active")
        proxy.upstream = other.rpc_url
        ids = await enqueue(pg_pool, redis_client, settings_env["MINTLINE_NAMESPACE"], deployment, payers)
        assert batcher.proc is not None
        assert await asyncio.to_thread(batcher.proc.wait, 60) == 2, batcher.log_tail()
        assert "stopping: the node refuses the chain of batch" in batcher.log_path.read_text()
        assert await pg_pool.fetchval("SELECT count(*) FROM batches") == 1
        proxy.upstream = anvil.rpc_url
        services("batcher", RPC_URL=proxy.url)
        services("confirmer")
        rows = await wait_for(pg_pool, ids)
    assert {r["status"] for r in rows} == {"completed"}
    await minted_once(w3, deployment, payers)
    settled_wallet(w3, deployment.minter)


async def test_a_nonce_nothing_holds_is_filled_so_the_batches_behind_it_go(
    env, services, pg_pool, redis_client, deployment, fund_payers, anvil
):
    """The batch at the chain's next nonce was settled as dropped, yet nothing holds that nonce on
    chain (its transaction was ours after all, and a reorg took it away): later batches would wait
    forever. The batcher fills the hole with a no-op and they go."""
    w3 = Web3(HTTPProvider(anvil.rpc_url))
    minter = deployment.minter
    hole = w3.eth.get_transaction_count(minter, "pending")
    await pg_pool.execute(
        "INSERT INTO batches (wallet, nonce, status, request_ids, tx_hash, raw_tx, call_data, gas_limit,"
        " max_fee_per_gas, max_priority_fee_per_gas)"
        " VALUES ($1, $2, 'reverted', '{}', $3, '', '', 21000, 0, 0)",
        minter,
        hole,
        "0x" + uuid.uuid4().hex * 2,
    )
    payers = fund_payers(4)
    ids = await enqueue(pg_pool, redis_client, env["MINTLINE_NAMESPACE"], deployment, payers)
    batcher = services("batcher", BATCHER_BATCH_WINDOW_SECONDS="0.2", BATCHER_NONCE_HOLE_SECONDS="2")
    services("confirmer")
    rows = await wait_for(pg_pool, ids, timeout=60)
    assert {r["status"] for r in rows} == {"completed"}, batcher.log_tail()
    filled = await pg_pool.fetchrow("SELECT status, fill_reason FROM batches WHERE nonce = $1", hole)
    assert filled["status"] == "confirmed" and filled["fill_reason"].startswith("nonce hole")
    assert await metric(batcher, 'mintline_batcher_unsendable_total{reason="nonce_hole"}') == 1
    await minted_once(w3, deployment, payers)
    settled_wallet(w3, minter)


async def test_a_hole_at_a_confirmed_batch_gets_its_mined_transaction_sent_again(
    env, services, pg_pool, redis_client, deployment, fund_payers, anvil
):
    """A confirmed batch's transaction left the chain and nobody reopened it (the confirmer is down
    here; in the chaos run, anvil answered the reorged-out block as canonical): its nonce is a hole
    and later batches wait. The batcher sends the confirmed batch's mined transaction again; it is
    mined anew, with the same mints, and the batches behind it go."""
    w3 = Web3(HTTPProvider(anvil.rpc_url))
    namespace = env["MINTLINE_NAMESPACE"]
    first_payers, later_payers = fund_payers(3), fund_payers(3)
    snapshot = w3.provider.make_request("evm_snapshot", [])["result"]  # type: ignore[arg-type]
    first = await enqueue(pg_pool, redis_client, namespace, deployment, first_payers)
    batcher = services("batcher", BATCHER_BATCH_WINDOW_SECONDS="0.2", BATCHER_NONCE_HOLE_SECONDS="2")
    confirmer = services("confirmer")
    assert {r["status"] for r in await wait_for(pg_pool, first)} == {"completed"}
    confirmer.kill()
    confirmed = await pg_pool.fetchrow(
        "SELECT id, nonce, mined_tx_hash FROM batches WHERE status = 'confirmed'"
    )
    assert w3.provider.make_request("evm_revert", [snapshot])["result"]  # type: ignore[arg-type]
    assert w3.eth.get_transaction_count(deployment.minter, "latest") == confirmed["nonce"]

    later = await enqueue(pg_pool, redis_client, namespace, deployment, later_payers)
    await logged(batcher, f"yet batch {confirmed['id']} is confirmed at it: its mined transaction")
    services("confirmer")
    rows = await wait_for(pg_pool, first + later, timeout=60)
    assert {r["status"] for r in rows} == {"completed"}, batcher.log_tail()
    assert w3.eth.get_transaction_receipt(confirmed["mined_tx_hash"])["status"] == 1
    await minted_once(w3, deployment, first_payers + later_payers)
    settled_wallet(w3, deployment.minter)


async def test_a_node_that_lost_its_pool_gets_every_lost_transaction_back_at_once(
    env, services, pg_pool, redis_client, deployment, fund_payers, anvil
):
    """Four batches sent, none mined, then the node loses its whole pool (a restart, a provider's
    flush). Only the next in line is ever reported stuck; the batcher then finds the three behind it
    lost as well and sends them all again, so they are mined together rather than one every
    `stuck_after_blocks` blocks."""
    w3 = Web3(HTTPProvider(anvil.rpc_url))
    payers = fund_payers(20)
    # This module's chain mines a block a second; with no interval (and no automine) nothing is mined
    # until the test says so, so no batch can be mined before the pool is lost.
    w3.provider.make_request("evm_setIntervalMining", [0])  # type: ignore[arg-type]
    mined_before = w3.eth.get_transaction_count(deployment.minter, "latest")
    try:
        ids = await enqueue(pg_pool, redis_client, env["MINTLINE_NAMESPACE"], deployment, payers)
        batcher = services("batcher", BATCHER_BATCH_SIZE="5", BATCHER_BATCH_WINDOW_SECONDS="0.2")
        deadline = asyncio.get_running_loop().time() + 30
        while await pg_pool.fetchval("SELECT count(*) FROM batches WHERE status = 'sent'") < 4:
            assert asyncio.get_running_loop().time() < deadline, batcher.log_tail()
            await asyncio.sleep(0.2)
        assert w3.provider.make_request("anvil_dropAllTransactions", [])  # type: ignore[arg-type]
        assert w3.eth.get_transaction_count(deployment.minter, "latest") == mined_before
        assert w3.eth.get_transaction_count(deployment.minter, "pending") == mined_before
        services("confirmer", CONFIRMER_STUCK_AFTER_BLOCKS="2")
        w3.provider.make_request("evm_setIntervalMining", [1])  # type: ignore[arg-type]
        rows = await wait_for(pg_pool, ids, timeout=60)
    finally:
        w3.provider.make_request("evm_setIntervalMining", [1])  # type: ignore[arg-type]
    assert {r["status"] for r in rows} == {"completed"}, batcher.log_tail()
    blocks = [r["block_number"] for r in await pg_pool.fetch("SELECT block_number FROM batches")]
    # One at a time, the last would be mined at least 3 x (2 + 1) blocks after the first.
    assert len(blocks) == 4 and max(blocks) - min(blocks) <= 1, blocks
    await logged(batcher, "the node lost 3 more transaction(s) behind nonce")
    await minted_once(w3, deployment, payers)
    settled_wallet(w3, deployment.minter)
