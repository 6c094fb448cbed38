"""The batcher and confirmer behind a strict provider (devstack/rpc_proxy.py), on a chain as Ethereum
has it: anvil with the per-transaction gas cap (`--enable-tx-gas-limit`), blocks a quarter second
apart and thousands of blocks of history (2,500 before any deployment, more than one log query of a
provider capped at 2,000 may span; anvil_mine slows down as the chain grows, so 5,000 would take most
of a minute). Every run ends with each accepted request completed exactly once (one Minted event per
payment, in the transaction the request names) and no transaction of the wallet left pending."""

import asyncio
import collections
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
import asyncpg
import pytest
from eth_account import Account
from redis.asyncio import Redis
from web3 import HTTPProvider, Web3

from devstack.anvil import DEV_KEYS, Anvil
from devstack.rpc_proxy import RpcProxy
from services.batcher.transactions import mint_entry
from shared import keys
from shared.deploy import Deployment, load_artifact
from shared.events import MintRequested
from shared.keys import Keys
from shared.streams import publish_many
from tests.integration.test_batcher_confirmer import enqueue, logged
from tests.integration.test_chain_events import sent_batch
from tests.integration.test_finality import history, until
from tests.support.batcher import in_process_batcher
from tests.support.payments import send_signed, settle_directly
from tests.support.requests import wait_final

HISTORY_BLOCKS = 2500
FAST = {
    "BATCHER_BATCH_SIZE": "5",
    "BATCHER_BATCH_WINDOW_SECONDS": "0.2",
    "CONFIRMER_CONFIRMATIONS": "2",
}
# Anvil's public dev key 1: the local minter, the batcher's wallet.
MINTER_KEY = DEV_KEYS[1]


@pytest.fixture(scope="module")
def anvil() -> Iterator[Anvil]:
    """A chain of this module's own, with the gas cap on and HISTORY_BLOCKS before any deployment."""
    with Anvil(block_time=0.25, tx_gas_limit=True) as node:
        mine(Web3(HTTPProvider(node.rpc_url)), HISTORY_BLOCKS)
        yield node


@pytest.fixture
def proxy(anvil: Anvil) -> Iterator[RpcProxy]:
    with RpcProxy(anvil.rpc_url) as running:
        yield running


def mine(w3: Web3, blocks: int) -> None:
    for start in range(0, blocks, 500):  # in steps, each well within the HTTP timeout
        w3.provider.make_request("anvil_mine", [hex(min(500, blocks - start))])  # type: ignore[arg-type]


async def nothing_pending(w3: Web3, wallet: str) -> bool:
    """The node holds no transaction of `wallet` that is not mined."""
    pending = w3.eth.get_transaction_count(wallet, "pending")  # type: ignore[arg-type]
    return pending == w3.eth.get_transaction_count(wallet, "latest")  # type: ignore[arg-type]


async def block_reached(w3: Web3, number: int) -> bool:
    return w3.eth.block_number >= number


async def completed_exactly_once(
    pool: asyncpg.Pool, w3: Web3, deployment: Deployment, ids: list[str], context: Callable[[], str]
) -> list[asyncpg.Record]:
    """Every request completed, its payment minted by exactly one Minted event on-chain, in the
    transaction its row names, to its payer; nothing else minted; the wallet has nothing pending."""
    rows = await wait_final(pool, ids, timeout=60)
    assert [r["status"] for r in rows] == ["completed"] * len(ids), (
        [(r["status"], r["error_message"]) for r in rows if r["status"] != "completed"],
        context(),
    )
    token = w3.eth.contract(address=deployment.token, abi=load_artifact("MintToken")["abi"])
    minted = token.events.Minted().get_logs(from_block=0, to_block="latest")
    per_payment = collections.Counter("0x" + bytes(e["args"]["paymentId"]).hex() for e in minted)
    assert per_payment == collections.Counter(r["payment_id"].lower() for r in rows)
    by_payment = {"0x" + bytes(e["args"]["paymentId"]).hex(): e for e in minted}
    for row in rows:
        event = by_payment[row["payment_id"].lower()]
        assert event["transactionHash"].to_0x_hex() == row["mint_tx_hash"]
        assert event["args"]["to"] == row["payer_address"]
    assert token.functions.totalSupply().call() == len(ids) * deployment.mint_amount
    await until(lambda: nothing_pending(w3, deployment.minter), timeout=10)
    return rows


async def confirmer_metric(process: Any, name: str) -> float:
    url = f"http://127.0.0.1:{process.env['CONFIRMER_METRICS_PORT']}/metrics"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        text = await response.text()
    values = [float(line.split()[-1]) for line in text.splitlines() if line.startswith(f"{name} ")]
    assert values, f"{name} not exported"
    return values[0]


async def publish_requested(redis: Redis, namespace: str, ids: list[str]) -> None:
    stream = Keys(namespace).stream(keys.MINT_REQUESTED)
    await publish_many(redis, stream, [MintRequested(request_id=i) for i in ids])


async def attempts(pool: asyncpg.Pool, batch_id: int) -> list[asyncpg.Record]:
    return await pool.fetch(
        "SELECT tx_hash, raw_tx FROM batch_transactions WHERE batch_id = $1 ORDER BY created_at", batch_id
    )


async def test_log_range_cap_thousands_of_blocks_and_restarts_complete_everything_once(
    settings_env: dict[str, str],
    services: Callable[..., Any],
    pg_pool: asyncpg.Pool,
    redis_client: Redis,
    deployment: Deployment,
    fund_payers: Any,
    anvil: Anvil,
    proxy: RpcProxy,
) -> None:
    """Behind a provider capping eth_getLogs at 2,000 blocks, on 2,500 blocks of history, the batcher
    and confirmer SIGKILLed mid-run and 500 blocks mined before they come back. Two requests need a
    log search over the whole history (no accepted block, so from block 0): one whose authorization a
    front-runner settled, one minted by a transaction of the wallet that PostgreSQL has no record of
    (as after a restore from an older backup)."""
    w3 = Web3(HTTPProvider(anvil.rpc_url))
    proxy.max_log_range = 2000
    namespace = settings_env["MINTLINE_NAMESPACE"]
    payers = fund_payers(30)
    ids = await enqueue(pg_pool, redis_client, namespace, deployment, payers, publish=False)
    front_run, minted_before = ids[-2], ids[-1]
    auth = await pg_pool.fetchval(
        "SELECT authorization_data FROM mint_requests WHERE id = $1", uuid.UUID(front_run)
    )
    # Anvil's public dev account 5 submits the payer's signed transfer itself.
    assert settle_directly(w3, deployment, auth, auth["signature"], Account.from_key(DEV_KEYS[5]))["status"]
    row = await pg_pool.fetchrow("SELECT * FROM mint_requests WHERE id = $1", uuid.UUID(minted_before))
    token = w3.eth.contract(address=deployment.token, abi=load_artifact("MintToken")["abi"])
    outside = send_signed(w3, Account.from_key(MINTER_KEY), token.functions.batchMint([mint_entry(row)]))
    assert outside["status"] == 1
    await publish_requested(redis_client, namespace, ids)

    env = {**FAST, "RPC_URL": proxy.url, "RPC_MAX_LOG_RANGE": "2000"}
    batcher = services("batcher", **env)
    confirmer = services("confirmer", **env)
    await until(lambda: pg_pool.fetchval("SELECT count(*) >= 2 FROM batches"), timeout=30)
    batcher.kill()
    confirmer.kill()
    mine(w3, 500)
    batcher = services("batcher", **env)
    confirmer = services("confirmer", **env)

    rows = await completed_exactly_once(
        pg_pool, w3, deployment, ids, lambda: batcher.log_tail() + confirmer.log_tail()
    )
    by_id = {str(r["id"]): r for r in rows}
    assert by_id[minted_before]["mint_tx_hash"] == outside["transactionHash"].to_0x_hex()
    assert by_id[front_run]["payment_settled"]
    assert "confirmation_failed" in await history(pg_pool, front_run)
    # Both searches walked the history from block 0 in chunks the provider takes (the logs they
    # look for are past block 2,500: two chunks each), none refused.
    assert proxy.calls["eth_getLogs"] >= 4
    assert proxy.refused["log_range"] == 0


async def test_a_lagging_replica_never_makes_a_mined_batch_look_taken(
    settings_env: dict[str, str],
    services: Callable[..., Any],
    pg_pool: asyncpg.Pool,
    redis_client: Redis,
    deployment: Deployment,
    fund_payers: Any,
    anvil: Anvil,
    proxy: RpcProxy,
) -> None:
    """A replica a block behind (head and the head block's receipts) answers the wallet's nonce as
    mined before it shows the receipt: with the nonce-taken wait cut to two blocks, every batch is
    still settled from its own receipt, none retried, nothing minted twice."""
    w3 = Web3(HTTPProvider(anvil.rpc_url))
    proxy.lagging = True
    payers = fund_payers(30)
    ids = await enqueue(pg_pool, redis_client, settings_env["MINTLINE_NAMESPACE"], deployment, payers)
    env = {**FAST, "RPC_URL": proxy.url}
    batcher = services("batcher", **env)
    confirmer = services("confirmer", CONFIRMER_DROPPED_AFTER_BLOCKS="2", **env)
    rows = await completed_exactly_once(
        pg_pool, w3, deployment, ids, lambda: batcher.log_tail() + confirmer.log_tail()
    )
    assert {r["retry_count"] for r in rows} == {0}
    statuses = await pg_pool.fetch("SELECT status FROM batches")
    assert len(statuses) >= 6 and {b["status"] for b in statuses} == {"confirmed"}
    assert await confirmer_metric(confirmer, "mintline_nonces_taken_total") == 0
    assert proxy.calls["eth_getTransactionReceipt"] > 0


async def test_raw_transactions_dropped_for_a_while_are_sent_again_and_complete(
    settings_env: dict[str, str],
    services: Callable[..., Any],
    pg_pool: asyncpg.Pool,
    redis_client: Redis,
    deployment: Deployment,
    fund_payers: Any,
    anvil: Anvil,
    proxy: RpcProxy,
) -> None:
    """The provider answers every raw transaction with its hash and forwards none for 5 s: the batches
    are sent again (replaced) once it forwards them, and everything completes."""
    w3 = Web3(HTTPProvider(anvil.rpc_url))
    proxy.drop_transactions = True
    payers = fund_payers(10)
    ids = await enqueue(pg_pool, redis_client, settings_env["MINTLINE_NAMESPACE"], deployment, payers)
    batcher = services("batcher", RPC_URL=proxy.url, BATCHER_FEE_BUMP_SPACING_SECONDS="0.5", **FAST)
    confirmer = services("confirmer", CONFIRMER_STUCK_AFTER_BLOCKS="2", **FAST)
    await sent_batch(pg_pool)
    await asyncio.sleep(5)
    assert await pg_pool.fetchval("SELECT count(*) FROM mint_requests WHERE status = 'completed'") == 0
    proxy.drop_transactions = False
    await completed_exactly_once(
        pg_pool, w3, deployment, ids, lambda: batcher.log_tail() + confirmer.log_tail()
    )
    assert proxy.dropped


async def test_a_dropped_transaction_with_no_fee_bump_left_is_rebroadcast_from_its_stored_bytes(
    settings_env: dict[str, str],
    services: Callable[..., Any],
    pg_pool: asyncpg.Pool,
    redis_client: Redis,
    deployment: Deployment,
    fund_payers: Any,
    anvil: Anvil,
    proxy: RpcProxy,
) -> None:
    w3 = Web3(HTTPProvider(anvil.rpc_url))
    proxy.drop_transactions = True
    payers = fund_payers(5)
    ids = await enqueue(pg_pool, redis_client, settings_env["MINTLINE_NAMESPACE"], deployment, payers)
    batcher = services("batcher", RPC_URL=proxy.url, BATCHER_MAX_FEE_BUMPS="0", **FAST)
    confirmer = services("confirmer", CONFIRMER_STUCK_AFTER_BLOCKS="2", **FAST)
    batch = await sent_batch(pg_pool)
    await asyncio.sleep(3)
    proxy.drop_transactions = False
    rows = await wait_final(pg_pool, ids, timeout=10)
    assert [r["status"] for r in rows] == ["completed"] * 5, batcher.log_tail() + confirmer.log_tail()
    # The very bytes that were dropped, sent again.
    assert {r["mint_tx_hash"] for r in rows} == {batch["tx_hash"]} and batch["tx_hash"] in proxy.dropped
    await completed_exactly_once(pg_pool, w3, deployment, ids, batcher.log_tail)


async def test_a_batcher_restarted_after_the_drops_rebroadcasts_the_stored_bytes(
    settings_env: dict[str, str],
    services: Callable[..., Any],
    pg_pool: asyncpg.Pool,
    redis_client: Redis,
    deployment: Deployment,
    fund_payers: Any,
    anvil: Anvil,
    proxy: RpcProxy,
) -> None:
    """Transactions dropped by the provider, no fee bump allowed, the batcher SIGKILLed: the next one
    rebroadcasts the very raw bytes it stored, and they are what the chain mines."""
    w3 = Web3(HTTPProvider(anvil.rpc_url))
    proxy.drop_transactions = True
    payers = fund_payers(10)
    ids = await enqueue(pg_pool, redis_client, settings_env["MINTLINE_NAMESPACE"], deployment, payers)
    env = {**FAST, "RPC_URL": proxy.url, "BATCHER_MAX_FEE_BUMPS": "0"}
    batcher = services("batcher", **env)
    confirmer = services("confirmer", **FAST)
    await until(lambda: pg_pool.fetchval("SELECT count(*) = 2 FROM batches WHERE status = 'sent'"))
    batcher.kill()
    proxy.drop_transactions = False
    batcher = services("batcher", **env)
    rows = await completed_exactly_once(
        pg_pool, w3, deployment, ids, lambda: batcher.log_tail() + confirmer.log_tail()
    )
    stored = {r["tx_hash"] for r in await pg_pool.fetch("SELECT tx_hash FROM batches")}
    assert {r["mint_tx_hash"] for r in rows} == stored and stored <= set(proxy.dropped)


async def test_an_original_mined_instead_of_its_replacement_settles_the_batch(
    env: dict[str, str],
    services: Callable[..., Any],
    pg_pool: asyncpg.Pool,
    redis_client: Redis,
    deployment: Deployment,
    fund_payers: Any,
    anvil: Anvil,
) -> None:
    """A batch has a replacement with higher fees stored as its latest attempt, yet the chain mines
    the original (a builder that saw it first): the batch is settled from the original's receipt."""
    from services.batcher.batching import Waiting
    from services.batcher.fees import Fees
    from services.batcher.store import store_attempt
    from services.batcher.transactions import sign

    w3 = Web3(HTTPProvider(anvil.rpc_url))
    payers = fund_payers(5)
    ids = await enqueue(pg_pool, redis_client, env["MINTLINE_NAMESPACE"], deployment, payers, publish=False)
    async with in_process_batcher(pg_pool, redis_client) as batcher:
        stored = await batcher.store.store([Waiting(i, "token", 2**62, 0.0) for i in ids])
        assert stored is not None
        batch_id, nonce, original_hash, original_raw = stored
        batch = await pg_pool.fetchrow("SELECT * FROM batches WHERE id = $1", batch_id)
        bumped = Fees(int(batch["max_fee_per_gas"]) * 2, int(batch["max_priority_fee_per_gas"]) * 2)
        replacement = sign(
            batcher.account,
            chain_id=deployment.chain_id,
            nonce=nonce,
            to=deployment.token,
            data=bytes(batch["call_data"]),
            gas=batch["gas_limit"],
            fees=bumped,
        )
        async with pg_pool.acquire() as conn, conn.transaction():
            await store_attempt(conn, batch_id, replacement, bumped)
            await batcher.lock.fence(conn)
    w3.eth.send_raw_transaction(original_raw)
    confirmer = services("confirmer", **FAST)
    rows = await completed_exactly_once(pg_pool, w3, deployment, ids, confirmer.log_tail)
    assert {r["mint_tx_hash"] for r in rows} == {original_hash}
    settled = await pg_pool.fetchrow(
        "SELECT status, tx_hash, mined_tx_hash FROM batches WHERE id = $1", batch_id
    )
    assert settled["status"] == "confirmed" and settled["mined_tx_hash"] == original_hash
    assert settled["tx_hash"] == replacement.tx_hash  # the latest attempt is the replacement
    assert await confirmer_metric(confirmer, "mintline_nonces_taken_total") == 0


async def test_a_nonce_taken_by_an_outside_transaction_is_counted_and_its_requests_complete(
    settings_env: dict[str, str],
    services: Callable[..., Any],
    pg_pool: asyncpg.Pool,
    redis_client: Redis,
    deployment: Deployment,
    fund_payers: Any,
    anvil: Anvil,
    proxy: RpcProxy,
) -> None:
    """While the provider drops the batch's transaction, a self-transfer signed with the wallet's key
    outside mintline uses the batch's nonce: the confirmer counts and logs the taken nonce, retries
    the requests, and they complete once with a later nonce."""
    w3 = Web3(HTTPProvider(anvil.rpc_url))
    proxy.drop_transactions = True
    payers = fund_payers(5)
    ids = await enqueue(pg_pool, redis_client, settings_env["MINTLINE_NAMESPACE"], deployment, payers)
    batcher = services("batcher", RPC_URL=proxy.url, **FAST)
    confirmer = services("confirmer", **FAST)
    batch = await sent_batch(pg_pool)
    wallet = Account.from_key(MINTER_KEY)
    base_fee = w3.eth.get_block("latest")["baseFeePerGas"]
    outside = wallet.sign_transaction(
        {
            "to": wallet.address,
            "value": 0,
            "gas": 21_000,
            "nonce": batch["nonce"],
            "chainId": deployment.chain_id,
            "maxFeePerGas": 2 * base_fee + 10**9,
            "maxPriorityFeePerGas": 10**9,
        }
    )
    w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(outside.raw_transaction))
    proxy.drop_transactions = False

    rows = await completed_exactly_once(
        pg_pool, w3, deployment, ids, lambda: batcher.log_tail() + confirmer.log_tail()
    )
    assert await confirmer_metric(confirmer, "mintline_nonces_taken_total") == 1
    await logged(confirmer, f"nonce {batch['nonce']} of wallet {wallet.address} was used by a transaction")
    taken = await pg_pool.fetchrow("SELECT status, mined_tx_hash FROM batches WHERE id = $1", batch["id"])
    assert taken["status"] == "reverted" and taken["mined_tx_hash"] is None
    later = await pg_pool.fetch("SELECT nonce FROM batches WHERE id <> $1", batch["id"])
    assert [b["nonce"] for b in later] == [batch["nonce"] + 1]
    assert {r["retry_count"] for r in rows} == {1}
    for request_id in ids:
        steps = await history(pg_pool, request_id)
        assert steps == [
            "pending",
            "batched",
            "sent",
            "confirmation_failed",
            "pending",
            "batched",
            "sent",
            "completed",
        ]


async def test_receipt_calls_failing_never_make_a_mined_batch_look_taken(
    settings_env: dict[str, str],
    services: Callable[..., Any],
    pg_pool: asyncpg.Pool,
    redis_client: Redis,
    deployment: Deployment,
    fund_payers: Any,
    anvil: Anvil,
    proxy: RpcProxy,
) -> None:
    """The batch is mined while every receipt call the confirmer makes fails, for many more blocks than
    the nonce-taken wait: the used nonce is never blamed on a stranger; once receipts answer again the
    batch is settled from its own transaction."""
    w3 = Web3(HTTPProvider(anvil.rpc_url))
    proxy.failing_method = "eth_getTransactionReceipt"
    payers = fund_payers(5)
    ids = await enqueue(pg_pool, redis_client, settings_env["MINTLINE_NAMESPACE"], deployment, payers)
    services("batcher", **FAST)
    confirmer = services("confirmer", RPC_URL=proxy.url, CONFIRMER_DROPPED_AFTER_BLOCKS="2", **FAST)
    batch = await sent_batch(pg_pool)
    w3.eth.wait_for_transaction_receipt(batch["tx_hash"])
    mined_at = w3.eth.block_number
    await until(lambda: block_reached(w3, mined_at + 12), timeout=20)
    assert proxy.refused["failing_method"] > 10
    open_rows = await pg_pool.fetchval(
        "SELECT count(*) FROM mint_requests WHERE status = 'sent' AND retry_count = 0"
    )
    assert open_rows == 5, confirmer.log_tail()
    proxy.failing_method = None
    rows = await completed_exactly_once(pg_pool, w3, deployment, ids, confirmer.log_tail)
    assert {r["mint_tx_hash"] for r in rows} == {batch["tx_hash"]}
    assert await confirmer_metric(confirmer, "mintline_nonces_taken_total") == 0
    for request_id in ids:
        assert await history(pg_pool, request_id) == ["pending", "batched", "sent", "completed"]
