"""A reorg after `completed`: the batch's block leaves the chain after its requests completed. The
confirmer notices, reopens the batch (the batcher broadcasts it again) and settles its requests anew,
so every accepted request ends completed exactly once on the chain as it now is."""

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import asyncpg
import pytest
from redis.asyncio import Redis
from web3 import HTTPProvider, Web3

from devstack.anvil import Anvil
from devstack.rpc_proxy import RpcProxy
from shared.deploy import Deployment, load_artifact
from tests.integration.test_batcher_confirmer import enqueue, logged
from tests.support.payments import usdc_contract
from tests.support.requests import wait_final

FAST = {"CONFIRMER_FINALITY_CHECK_SECONDS": "0.2", "BATCHER_BATCH_WINDOW_SECONDS": "0.2"}


@pytest.fixture(scope="module")
def anvil() -> Iterator[Anvil]:
    """This module rewrites its chain's history: a chain of its own."""
    with Anvil(block_time=None) as node:
        yield node


async def history(pool: asyncpg.Pool, request_id: str) -> list[str]:
    rows = await pool.fetch(
        "SELECT status FROM mint_request_history WHERE request_id = $1 ORDER BY id", uuid.UUID(request_id)
    )
    return [r["status"] for r in rows]


async def until(condition: Callable[[], Any], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.2)


@pytest.mark.parametrize("how", ["evm_revert", "anvil_reorg"])
async def test_a_batch_reorged_out_after_completed_is_settled_again(
    how: str,
    settings_env: dict[str, str],
    services: Callable[..., Any],
    pg_pool: asyncpg.Pool,
    redis_client: Redis,
    deployment: Deployment,
    fund_payers: Any,
    anvil: Anvil,
) -> None:
    w3 = Web3(HTTPProvider(anvil.rpc_url))
    payers = fund_payers(5)
    treasury_before = usdc_contract(w3, deployment).functions.balanceOf(deployment.treasury).call()
    snapshot = w3.provider.make_request("evm_snapshot", [])["result"]  # type: ignore[arg-type]
    ids = await enqueue(pg_pool, redis_client, settings_env["MINTLINE_NAMESPACE"], deployment, payers)
    batcher = services("batcher", **FAST)
    confirmer = services("confirmer", **FAST)
    rows = await wait_final(pg_pool, ids, timeout=60)
    assert [r["status"] for r in rows] == ["completed"] * 5, batcher.log_tail() + confirmer.log_tail()
    first = await pg_pool.fetchrow("SELECT id, block_number, block_hash, mined_tx_hash FROM batches")
    assert first["block_hash"] == w3.eth.get_block(first["block_number"])["hash"].to_0x_hex()

    # The batch's block leaves the chain: reverted to before it (its transaction gone with it), or
    # replaced by a reorg of the blocks since.
    if how == "evm_revert":
        assert w3.provider.make_request("evm_revert", [snapshot])["result"]  # type: ignore[arg-type]
        w3.provider.make_request("anvil_mine", [2])  # type: ignore[arg-type]
    else:
        depth = w3.eth.block_number - first["block_number"] + 1
        w3.provider.make_request("anvil_reorg", [depth, []])  # type: ignore[arg-type]
    assert w3.eth.get_block(first["block_number"])["hash"].to_0x_hex() != first["block_hash"]

    async def reopened_and_settled_again() -> bool:
        statuses = [await history(pg_pool, i) for i in ids]
        return all(h[-1] == "completed" and "sent" in h[h.index("completed") :] for h in statuses)

    await until(reopened_and_settled_again)
    for request_id in ids:
        steps = await history(pg_pool, request_id)
        assert steps[:4] == ["pending", "batched", "sent", "completed"] and steps[-2:] == [
            "sent",
            "completed",
        ]
    reasons = await pg_pool.fetch(
        "SELECT reason FROM mint_request_history WHERE status = 'sent' AND reason IS NOT NULL"
    )
    assert len(reasons) == 5 and all(r["reason"].startswith("reorged out") for r in reasons)
    # On the chain as it now is: one mint per payer, each paid once.
    token = w3.eth.contract(address=deployment.token, abi=load_artifact("MintToken")["abi"])
    assert [token.functions.balanceOf(p.address).call() for p in payers] == [deployment.mint_amount] * 5
    treasury = usdc_contract(w3, deployment).functions.balanceOf(deployment.treasury).call()
    assert treasury == treasury_before + 5 * deployment.price
    batch = await pg_pool.fetchrow(
        "SELECT status, block_number, block_hash FROM batches WHERE id = $1", first["id"]
    )
    assert batch["status"] == "confirmed"
    assert batch["block_hash"] == w3.eth.get_block(batch["block_number"])["hash"].to_0x_hex()
    assert w3.eth.get_transaction_count(deployment.minter, "pending") == w3.eth.get_transaction_count(
        deployment.minter, "latest"
    )

    # Once its block is final (anvil: 64 blocks deep), the batch is no longer watched.
    w3.provider.make_request("anvil_mine", [70])  # type: ignore[arg-type]

    async def finalized() -> bool:
        return bool(
            await pg_pool.fetchval("SELECT finalized_at IS NOT NULL FROM batches WHERE id = $1", first["id"])
        )

    await until(finalized, timeout=20)


async def test_unanswered_block_reads_are_never_taken_for_a_reorg(
    settings_env: dict[str, str],
    services: Callable[..., Any],
    pg_pool: asyncpg.Pool,
    redis_client: Redis,
    deployment: Deployment,
    fund_payers: Any,
    anvil: Anvil,
) -> None:
    """Behind a provider whose block reads fail for a while after the requests completed, the
    finality watch reopens nothing; once the reads answer again the batch is finalized."""
    payers = fund_payers(3)
    ids = await enqueue(pg_pool, redis_client, settings_env["MINTLINE_NAMESPACE"], deployment, payers)
    with RpcProxy(anvil.rpc_url) as proxy:
        services("batcher", **FAST)
        confirmer = services("confirmer", RPC_URL=proxy.url, **FAST)
        rows = await wait_final(pg_pool, ids, timeout=60)
        assert [r["status"] for r in rows] == ["completed"] * 3, confirmer.log_tail()
        # The reads fail before the block is final: a round already under way cannot finalize it.
        proxy.failing_method = "eth_getBlockByNumber"
        Web3(HTTPProvider(anvil.rpc_url)).provider.make_request("anvil_mine", [70])  # type: ignore[arg-type]
        await asyncio.sleep(3)  # many finality rounds, every block read failing
        assert proxy.refused["failing_method"] >= 5
        assert not await pg_pool.fetchval("SELECT bool_or(finalized_at IS NOT NULL) FROM batches")
        proxy.failing_method = None
        await until(
            lambda: pg_pool.fetchval("SELECT bool_and(finalized_at IS NOT NULL) FROM batches"), timeout=30
        )
    for request_id in ids:
        assert await history(pg_pool, request_id) == ["pending", "batched", "sent", "completed"]


async def test_a_reorg_a_block_cache_hides_is_caught_by_the_wallets_nonce(
    settings_env: dict[str, str],
    services: Callable[..., Any],
    pg_pool: asyncpg.Pool,
    redis_client: Redis,
    deployment: Deployment,
    fund_payers: Any,
    anvil: Anvil,
) -> None:
    """Behind a provider that caches numbered blocks forever, the block at a reorged batch's height
    still shows the old hash; the wallet's transaction count (the batch's nonce unused) and the
    missing receipt give the reorg away, and the batch is reopened and settled again."""
    w3 = Web3(HTTPProvider(anvil.rpc_url))
    payers = fund_payers(4)
    snapshot = w3.provider.make_request("evm_snapshot", [])["result"]  # type: ignore[arg-type]
    ids = await enqueue(pg_pool, redis_client, settings_env["MINTLINE_NAMESPACE"], deployment, payers)
    with RpcProxy(anvil.rpc_url) as proxy:
        proxy.cache_blocks = True
        services("batcher", **FAST)
        confirmer = services("confirmer", RPC_URL=proxy.url, **FAST)
        rows = await wait_final(pg_pool, ids, timeout=60)
        assert [r["status"] for r in rows] == ["completed"] * 4, confirmer.log_tail()
        first = await pg_pool.fetchrow("SELECT id, block_number, block_hash FROM batches")
        assert (hex(first["block_number"]), False) in proxy.block_cache
        assert w3.provider.make_request("evm_revert", [snapshot])["result"]  # type: ignore[arg-type]
        w3.provider.make_request("anvil_mine", [5])  # type: ignore[arg-type]
        assert w3.eth.get_block(first["block_number"])["hash"].to_0x_hex() != first["block_hash"]

        async def settled_again() -> bool:
            statuses = [await history(pg_pool, i) for i in ids]
            return all(h[-1] == "completed" and "sent" in h[h.index("completed") :] for h in statuses)

        await until(settled_again)
    assert "the chain has not used its nonce" in confirmer.log_path.read_text()
    token = w3.eth.contract(address=deployment.token, abi=load_artifact("MintToken")["abi"])
    assert [token.functions.balanceOf(p.address).call() for p in payers] == [deployment.mint_amount] * 4


async def test_a_reorg_whose_block_the_node_no_longer_serves_is_caught_by_the_receipt(
    settings_env: dict[str, str],
    services: Callable[..., Any],
    pg_pool: asyncpg.Pool,
    redis_client: Redis,
    deployment: Deployment,
    fund_payers: Any,
    anvil: Anvil,
) -> None:
    """A confirmed batch's block left the chain and its transaction was mined again in another block
    (the batcher sent it at the nonce hole), but the node answers the old height as no block at all,
    as anvil was seen to after anvil_reorg: neither the block's hash nor the wallet's nonce shows the
    reorg. Once the height is final, the receipt does: the batch is reopened and settled again in the
    block its transaction is in now."""
    w3 = Web3(HTTPProvider(anvil.rpc_url))
    namespace = settings_env["MINTLINE_NAMESPACE"]
    payers, later_payers = fund_payers(4), fund_payers(2)
    snapshot = w3.provider.make_request("evm_snapshot", [])["result"]  # type: ignore[arg-type]
    ids = await enqueue(pg_pool, redis_client, namespace, deployment, payers)
    batcher = services("batcher", BATCHER_NONCE_HOLE_SECONDS="1", **FAST)
    confirmer = services("confirmer", **FAST)
    rows = await wait_final(pg_pool, ids, timeout=60)
    assert [r["status"] for r in rows] == ["completed"] * 4, confirmer.log_tail()
    confirmer.kill()
    first = await pg_pool.fetchrow("SELECT id, block_number, block_hash, mined_tx_hash FROM batches")
    assert w3.provider.make_request("evm_revert", [snapshot])["result"]  # type: ignore[arg-type]
    w3.provider.make_request("anvil_mine", [3])  # type: ignore[arg-type]
    # A later batch waits behind the nonce the revert freed: a hole, which the batcher fills with the
    # confirmed batch's mined transaction.
    later = await enqueue(pg_pool, redis_client, namespace, deployment, later_payers)
    await logged(batcher, f"yet batch {first['id']} is confirmed at it: its mined transaction")

    async def mined_again() -> bool:
        return bool(
            w3.provider.make_request("eth_getTransactionReceipt", [first["mined_tx_hash"]]).get("result")
        )  # type: ignore[arg-type]

    await until(mined_again)
    moved_to = w3.eth.get_transaction_receipt(first["mined_tx_hash"])["blockNumber"]
    assert moved_to != first["block_number"]
    # Past the chain's finalized block (anvil's is 64 below its head).
    w3.provider.make_request("anvil_mine", [70])  # type: ignore[arg-type]
    with RpcProxy(anvil.rpc_url) as proxy:
        proxy.missing_blocks = {first["block_number"]}
        confirmer = services("confirmer", RPC_URL=proxy.url, **FAST)

        async def settled_again() -> bool:
            statuses = [await history(pg_pool, i) for i in ids]
            return all(h[-1] == "completed" and "sent" in h[h.index("completed") :] for h in statuses)

        await until(settled_again)
        assert proxy.refused["missing_block"] >= 1
    assert (
        f"the node has no block {first['block_number']} below its final block"
        in confirmer.log_path.read_text()
    )
    again = await pg_pool.fetchrow(
        "SELECT block_number, mined_tx_hash FROM batches WHERE id = $1", first["id"]
    )
    assert (again["block_number"], again["mined_tx_hash"]) == (moved_to, first["mined_tx_hash"])
    assert {r["status"] for r in await wait_final(pg_pool, later, timeout=60)} == {"completed"}
    token = w3.eth.contract(address=deployment.token, abi=load_artifact("MintToken")["abi"])
    minted = [token.functions.balanceOf(p.address).call() for p in payers + later_payers]
    assert minted == [deployment.mint_amount] * 6
