"""The chain's gas limits, as Ethereum has them: anvil with EIP-7825's per-transaction cap of 2^24
(`--enable-tx-gas-limit`), 30M blocks a second apart. Every batch must fit one transaction, and
batches are sized so that several fill a block."""

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import asyncpg
import pytest
from redis.asyncio import Redis
from web3 import HTTPProvider, Web3

from devstack.anvil import Anvil
from devstack.rpc_proxy import RpcProxy
from services.batcher.batching import REESTIMATE_EVERY
from shared.deploy import Deployment, load_artifact
from tests.integration.test_batcher_confirmer import enqueue
from tests.support.requests import wait_final

TX_GAS_CAP = 2**24


async def wait_for_sent(pool: asyncpg.Pool, count: int, timeout: float) -> int:
    """How many batches are sent (broadcast, none mined) once `count` are, or at `timeout`."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        sent = await pool.fetchval("SELECT count(*) FROM batches WHERE status = 'sent'")
        if sent >= count or asyncio.get_running_loop().time() > deadline:
            return int(sent)
        await asyncio.sleep(0.2)


@pytest.fixture(scope="module")
def anvil() -> Iterator[Anvil]:
    with Anvil(block_time=1, tx_gas_limit=True) as node:
        yield node


def test_the_chain_refuses_a_transaction_over_the_cap(anvil: Anvil) -> None:
    """What the batcher must never sign: the node refuses a gas limit over 2^24 outright."""
    w3 = Web3(HTTPProvider(anvil.rpc_url))
    sender = w3.eth.account.create()
    w3.provider.make_request("anvil_setBalance", [sender.address, hex(10**18)])  # type: ignore[arg-type]
    tx = {"to": sender.address, "value": 0, "nonce": 0, "chainId": 31337, "gas": TX_GAS_CAP + 1}
    tx |= {"maxFeePerGas": 10**10, "maxPriorityFeePerGas": 10**9}
    with pytest.raises(Exception, match="(?i)gas"):
        w3.eth.send_raw_transaction(sender.sign_transaction(tx).raw_transaction)


async def test_default_batches_fit_the_cap_and_fill_blocks_two_at_a_time(
    settings_env: dict[str, str],
    services: Callable[..., Any],
    pg_pool: asyncpg.Pool,
    redis_client: Redis,
    deployment: Deployment,
    fund_payers: Any,
    anvil: Anvil,
) -> None:
    """With the default batch size (300) and gas budget (28M), a backlog of 600 mints: every batch
    is within 2^24 and half a block, all complete, and blocks carry two batches each.

    Mining waits until two batches are sent, none of them confirmed: the batcher must send the next
    batch before the one before it is mined. On a busy machine a batcher that did could still miss
    the block its first batch went into, so the test holds the block rather than race it."""
    payers = fund_payers(600)
    ids = await enqueue(pg_pool, redis_client, settings_env["MINTLINE_NAMESPACE"], deployment, payers)
    w3 = Web3(HTTPProvider(anvil.rpc_url))
    w3.provider.make_request("evm_setIntervalMining", [0])  # type: ignore[arg-type]
    try:
        batcher = services("batcher")
        confirmer = services("confirmer")
        sent = await wait_for_sent(pg_pool, 2, timeout=60)
        assert sent >= 2, batcher.log_tail()
    finally:
        w3.provider.make_request("evm_setIntervalMining", [1])  # type: ignore[arg-type]
    rows = await wait_final(pg_pool, ids, timeout=90)
    assert [r["status"] for r in rows] == ["completed"] * 600, batcher.log_tail() + confirmer.log_tail()

    token = w3.eth.contract(address=deployment.token, abi=load_artifact("MintToken")["abi"])
    assert token.functions.totalSupply().call() == 600 * deployment.mint_amount
    batches = await pg_pool.fetch("SELECT gas_limit, block_number, tx_hash FROM batches ORDER BY nonce")
    block_gas = w3.eth.get_block("latest")["gasLimit"]
    assert all(b["gas_limit"] <= block_gas // 2 <= TX_GAS_CAP for b in batches), [
        b["gas_limit"] for b in batches
    ]
    per_block: dict[int, int] = {}
    for batch in batches:
        per_block[batch["block_number"]] = per_block.get(batch["block_number"], 0) + 1
    assert max(per_block.values()) == 2, per_block


async def test_a_batch_over_the_cap_is_split_not_sent(
    settings_env: dict[str, str],
    services: Callable[..., Any],
    pg_pool: asyncpg.Pool,
    redis_client: Redis,
    deployment: Deployment,
    fund_payers: Any,
) -> None:
    """A per-entry gas budget set far too low (20k against ~87k used) sizes a 300-entry batch that no
    transaction may carry: it is never signed; smaller batches carry every request."""
    payers = fund_payers(300)
    ids = await enqueue(pg_pool, redis_client, settings_env["MINTLINE_NAMESPACE"], deployment, payers)
    batcher = services("batcher", BATCHER_GAS_PER_ENTRY="20000")
    services("confirmer")
    rows = await wait_final(pg_pool, ids, timeout=90)
    assert [r["status"] for r in rows] == ["completed"] * 300, batcher.log_tail()
    limits = [r["gas_limit"] for r in await pg_pool.fetch("SELECT gas_limit FROM batches")]
    assert len(limits) >= 2 and max(limits) <= TX_GAS_CAP, limits
    reverted = await pg_pool.fetchval("SELECT count(*) FROM batches WHERE status = 'reverted'")
    assert reverted == 0


async def test_a_per_entry_budget_above_what_entries_cost_still_fills_blocks(
    settings_env: dict[str, str],
    services: Callable[..., Any],
    pg_pool: asyncpg.Pool,
    redis_client: Redis,
    deployment: Deployment,
    fund_payers: Any,
    anvil: Anvil,
) -> None:
    """A per-entry gas budget set well above what entries cost (120k against ~92k): sized by it, two
    batches would use under 80% of a block. Batches after the first are sized from the estimates
    before them instead, and two of them use over 92% of a block."""
    payers = fund_payers(600)
    ids = await enqueue(pg_pool, redis_client, settings_env["MINTLINE_NAMESPACE"], deployment, payers)
    batcher = services("batcher", BATCHER_GAS_PER_ENTRY="120000")
    services("confirmer")
    rows = await wait_final(pg_pool, ids, timeout=90)
    assert [r["status"] for r in rows] == ["completed"] * 600, batcher.log_tail()
    batches = await pg_pool.fetch("SELECT gas_used, gas_limit FROM batches ORDER BY nonce")
    block_gas = Web3(HTTPProvider(anvil.rpc_url)).eth.get_block("latest")["gasLimit"]
    # The first batch is sized by the budget, the last is what remains.
    sized = batches[1:-1]
    assert sized and all(b["gas_used"] >= 0.46 * block_gas for b in sized), [dict(b) for b in batches]
    assert all(b["gas_limit"] <= block_gas // 2 for b in batches), [dict(b) for b in batches]


async def test_a_backlog_read_a_chunk_at_a_time_leaves_no_partial_batch_behind(
    settings_env: dict[str, str],
    services: Callable[..., Any],
    pg_pool: asyncpg.Pool,
    redis_client: Redis,
    deployment: Deployment,
    fund_payers: Any,
) -> None:
    """1,100 queued mints in batches of 150: the batcher reads the stream 1,000 entries at a time, and
    the 100 left of the first chunk have waited their window by the time six full batches are sent.
    They are topped up from the stream before they go, so only the very last batch is short."""
    payers = fund_payers(1100)
    ids = await enqueue(pg_pool, redis_client, settings_env["MINTLINE_NAMESPACE"], deployment, payers)
    batcher = services("batcher", BATCHER_BATCH_SIZE="150", BATCHER_BATCH_WINDOW_SECONDS="0.2")
    services("confirmer")
    rows = await wait_final(pg_pool, ids, timeout=120)
    assert [r["status"] for r in rows] == ["completed"] * 1100, batcher.log_tail()
    sizes = [
        r["entries"]
        for r in await pg_pool.fetch("SELECT cardinality(request_ids) AS entries FROM batches ORDER BY nonce")
    ]
    assert sizes == [150] * 7 + [50], sizes


async def test_entries_dearer_than_the_learnt_gas_are_estimated_not_sent_short(
    settings_env: dict[str, str],
    services: Callable[..., Any],
    pg_pool: asyncpg.Pool,
    redis_client: Redis,
    deployment: Deployment,
    fund_payers: Any,
) -> None:
    """Between estimates a batch is signed at the learnt gas per entry once one call at that limit
    succeeds. A batcher's first batch, of payers who already hold tokens, teaches ~75k an entry; the
    next, of new payers (~92k), fails that call and is estimated instead: nothing reverts, every
    request mints."""
    namespace = settings_env["MINTLINE_NAMESPACE"]
    holders = fund_payers(100)
    first = await enqueue(pg_pool, redis_client, namespace, deployment, holders)
    batcher = services("batcher", BATCHER_BATCH_SIZE="100")
    services("confirmer")
    assert [r["status"] for r in await wait_final(pg_pool, first, timeout=60)] == ["completed"] * 100
    batcher.stop()  # the next batcher learns from its own first batch
    newcomers = fund_payers(100)
    ids = await enqueue(pg_pool, redis_client, namespace, deployment, holders)
    ids += await enqueue(pg_pool, redis_client, namespace, deployment, newcomers)
    batcher = services("batcher", BATCHER_BATCH_SIZE="100")
    rows = await wait_final(pg_pool, ids, timeout=90)
    assert [r["status"] for r in rows] == ["completed"] * 200, batcher.log_tail()
    batches = await pg_pool.fetch("SELECT status, gas_used, gas_limit FROM batches ORDER BY nonce")
    assert [b["status"] for b in batches] == ["confirmed"] * 3, [dict(b) for b in batches]
    # The newcomers' batch needed more than its holders' batch taught, and was signed with enough.
    cheap, dear = batches[1], batches[2]
    assert dear["gas_used"] > cheap["gas_used"] * 1.1 and dear["gas_limit"] > dear["gas_used"]


async def test_batches_after_the_first_learn_from_mined_gas_not_from_new_estimates(
    settings_env: dict[str, str],
    services: Callable[..., Any],
    pg_pool: asyncpg.Pool,
    redis_client: Redis,
    deployment: Deployment,
    fund_payers: Any,
    anvil: Anvil,
) -> None:
    """The node's estimate runs a batch some twenty times, and a node busy with one answers nothing
    else. A batcher estimates its first batch; after that the gas its mined batches used sizes and
    checks the next ones, so however many follow, none is estimated while batches are being mined.
    A batcher started later learns from those batches at once and estimates nothing."""
    namespace = settings_env["MINTLINE_NAMESPACE"]
    payers = fund_payers(700)
    batching = {
        "BATCHER_BATCH_SIZE": "50",
        "BATCHER_BATCH_WINDOW_SECONDS": "0.2",
        "BATCHER_MAX_IN_FLIGHT": "2",
    }
    with RpcProxy(anvil.rpc_url) as proxy:
        ids = await enqueue(pg_pool, redis_client, namespace, deployment, payers[:600])
        batcher = services("batcher", RPC_URL=proxy.url, **batching)
        services("confirmer")
        rows = await wait_final(pg_pool, ids, timeout=120)
        assert [r["status"] for r in rows] == ["completed"] * 600, batcher.log_tail()
        signed = await pg_pool.fetchval("SELECT count(*) FROM batches")
        assert signed >= REESTIMATE_EVERY + 3, signed
        assert proxy.calls["eth_estimateGas"] == 1, proxy.calls
        batcher.stop()

        ids = await enqueue(pg_pool, redis_client, namespace, deployment, payers[600:])
        batcher = services("batcher", RPC_URL=proxy.url, **batching)
        rows = await wait_final(pg_pool, ids, timeout=60)
        assert [r["status"] for r in rows] == ["completed"] * 100, batcher.log_tail()
        assert proxy.calls["eth_estimateGas"] == 1, proxy.calls
    statuses = {r["status"] for r in await pg_pool.fetch("SELECT status FROM batches")}
    assert statuses == {"confirmed"}  # checked limits: none ran short
