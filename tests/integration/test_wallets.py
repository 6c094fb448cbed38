"""Several signer wallets on real Redis, PostgreSQL and anvil: a backlog shared by two wallets (in one
process, or one process each), a wallet killed mid-backlog, a wallet that runs dry, a wallet whose
lock is taken, and a wallet whose batcher is gone with a batch stored and never broadcast.

Anvil's public dev key 1 and the second local minter (devstack/anvil.py) are the two wallets; the
deployment fixture makes both minters."""

import asyncio
import collections
import time
import uuid

import aiohttp
import asyncpg
from web3 import HTTPProvider, Web3

from devstack.anvil import MINTER_ADDRESSES, MINTER_KEYS
from devstack.rpc_proxy import RpcProxy
from services.batcher.batching import Waiting
from services.batcher.lock import LOCK_KEY, WalletLock
from shared.deploy import Deployment
from tests.integration.test_batcher_confirmer import consecutive, enqueue, logged, minted_once, wait_for
from tests.integration.test_chain_events import mining
from tests.support.audit import minted_payment_ids
from tests.support.batcher import in_process_batcher, metric

A, B = MINTER_ADDRESSES
KEY_A, KEY_B = MINTER_KEYS
BOTH = ",".join(MINTER_KEYS)
# Small batches that close at once, so a backlog makes many batches on each wallet.
FAST = {"BATCHER_BATCH_SIZE": "5", "BATCHER_BATCH_WINDOW_SECONDS": "0.05"}


async def batches_by_wallet(pool: asyncpg.Pool) -> dict[str, list[asyncpg.Record]]:
    found: dict[str, list[asyncpg.Record]] = collections.defaultdict(list)
    for row in await pool.fetch(
        "SELECT id, wallet, nonce, status, tx_hash, fill_reason, request_ids FROM batches ORDER BY nonce"
    ):
        found[row["wallet"]].append(row)
    return found


async def assert_gap_free(pool: asyncpg.Pool, w3: Web3) -> dict[str, list[asyncpg.Record]]:
    """Each wallet's batches hold consecutive nonces up to the chain's count, all settled, nothing of
    the wallet left pending in the node."""
    by_wallet = await batches_by_wallet(pool)
    for wallet, rows in by_wallet.items():
        nonces = [r["nonce"] for r in rows]
        assert consecutive(nonces), (wallet, nonces)
        assert w3.eth.get_transaction_count(wallet, "latest") == nonces[-1] + 1, wallet
        assert w3.eth.get_transaction_count(wallet, "pending") == nonces[-1] + 1, wallet
        assert {r["status"] for r in rows} == {"confirmed"}, (wallet, [r["status"] for r in rows])
    return by_wallet


async def minted_exactly_once(pool: asyncpg.Pool, w3: Web3, deployment: Deployment, payers: list) -> None:
    """One Minted event per request on the chain, and each payer holds one mint."""
    payment_ids = [r["payment_id"] for r in await pool.fetch("SELECT payment_id FROM mint_requests")]
    minted = collections.Counter(minted_payment_ids(w3, deployment, deployment.deployment_block))
    assert sorted(minted) == sorted(payment_ids) and set(minted.values()) == {1}
    await minted_once(w3, deployment, payers)


def senders(w3: Web3, rows: list) -> set[str]:
    return {w3.eth.get_transaction(r["mint_tx_hash"])["from"] for r in rows}


async def until(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.2)


async def test_two_wallets_in_one_process_share_a_backlog_each_on_its_own_nonces(
    settings_env, services, pg_pool, redis_client, deployment, fund_payers, anvil
):
    w3 = Web3(HTTPProvider(anvil.rpc_url))
    payers = fund_payers(80)
    ids = await enqueue(pg_pool, redis_client, settings_env["MINTLINE_NAMESPACE"], deployment, payers)
    batcher = services("batcher", BATCHER_PRIVATE_KEYS=BOTH, **FAST)
    services("confirmer")
    rows = await wait_for(pg_pool, ids, timeout=90)
    assert {r["status"] for r in rows} == {"completed"}, batcher.log_tail()
    await minted_exactly_once(pg_pool, w3, deployment, payers)
    by_wallet = await assert_gap_free(pg_pool, w3)
    # Both wallets minted: the batches went to both, and every mint came from one of them.
    assert set(by_wallet) == {A, B} and all(len(rows) >= 2 for rows in by_wallet.values())
    assert senders(w3, rows) == {A, B}
    for wallet in (A, B):
        assert await metric(batcher, f'mintline_batcher_active{{wallet="{wallet}"}}') == 1
        assert await metric(batcher, f'mintline_batches_sent_total{{wallet="{wallet}"}}') == len(
            by_wallet[wallet]
        )
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{batcher.env['BATCHER_METRICS_PORT']}/health") as response:
            checks = (await response.json())["checks"]
    assert response.status == 200 and checks[f"wallet_lock {A}"] and checks[f"wallet_lock {B}"]


async def test_a_wallet_killed_mid_backlog_its_batches_still_complete_and_the_other_takes_the_rest(
    settings_env, services, pg_pool, redis_client, deployment, fund_payers, anvil
):
    """One process per wallet; the first is SIGKILLed once it has batches, and never restarted:
    what it had sent is confirmed, what it had stored is broadcast by the other wallet's batcher, what
    it had read is taken over once idle, and the rest of the backlog goes through the other wallet."""
    w3 = Web3(HTTPProvider(anvil.rpc_url))
    payers = fund_payers(120)
    ids = await enqueue(pg_pool, redis_client, settings_env["MINTLINE_NAMESPACE"], deployment, payers)
    handover = {"BATCHER_CLAIM_IDLE_SECONDS": "3", "BATCHER_REBROADCAST_AFTER_SECONDS": "1"}
    killed = services("batcher", BATCHER_PRIVATE_KEY=KEY_A, **FAST, **handover)
    services("confirmer")
    await until(
        lambda: pg_pool.fetchval("SELECT count(*) >= 2 FROM batches WHERE wallet = $1", A),
        30,
        killed.log_tail(),
    )
    other = services("batcher", BATCHER_PRIVATE_KEY=KEY_B, **FAST, **handover)
    killed.kill()
    rows = await wait_for(pg_pool, ids, timeout=120)
    assert {r["status"] for r in rows} == {"completed"}, other.log_tail(60)
    await minted_exactly_once(pg_pool, w3, deployment, payers)
    by_wallet = await assert_gap_free(pg_pool, w3)
    assert len(by_wallet[A]) >= 2 and len(by_wallet[B]) >= 1
    # The killed wallet's requests ended completed, on its own transactions.
    of_a = [i for r in by_wallet[A] for i in r["request_ids"]]
    done = {r["id"]: r for r in rows}
    assert {done[i]["mint_tx_hash"] for i in of_a} <= {r["tx_hash"] for r in by_wallet[A]}


async def test_a_stored_batch_of_a_wallet_whose_batcher_is_gone_is_broadcast_by_another_wallet(
    env, services, pg_pool, redis_client, deployment, fund_payers, anvil, database
):
    """The window a SIGKILL can hit: the batch stored and its entries acked, the broadcast not made.
    While something holds that wallet's lock the batch is its own; once nothing does (no batcher of
    that wallet comes back), the other wallet's batcher sends the stored bytes."""
    w3 = Web3(HTTPProvider(anvil.rpc_url))
    payers = fund_payers(3)
    ids = await enqueue(pg_pool, redis_client, env["MINTLINE_NAMESPACE"], deployment, payers, publish=False)
    async with in_process_batcher(pg_pool, redis_client, KEY_A) as crashed:
        stored = await crashed.store.store([Waiting(i, "token", 2**62, 0.0) for i in ids])
    assert stored is not None
    batch_id, _, tx_hash, _ = stored
    holder = WalletLock(database, A)  # a batcher of the wallet, alive but slow
    assert await holder.acquire(asyncio.Event())
    try:
        other = services(
            "batcher",
            BATCHER_PRIVATE_KEY=KEY_B,
            BATCHER_REBROADCAST_AFTER_SECONDS="0.5",
            BATCHER_CLAIM_IDLE_SECONDS="3",  # a sweep every second
        )
        services("confirmer")
        await logged(other, "this batcher is active")
        await asyncio.sleep(3)
        assert await pg_pool.fetchval("SELECT status FROM batches WHERE id = $1", batch_id) == "signed"
    finally:
        await holder.release()
    rows = await wait_for(pg_pool, ids, timeout=30)
    assert {r["status"] for r in rows} == {"completed"}, other.log_tail()
    assert {r["mint_tx_hash"] for r in rows} == {tx_hash}
    assert await pg_pool.fetchval("SELECT status FROM batches WHERE id = $1", batch_id) == "confirmed"
    assert await pg_pool.fetchval("SELECT count(*) FROM batches WHERE wallet = $1", B) == 0
    await minted_exactly_once(pg_pool, w3, deployment, payers)


async def test_a_wallet_that_runs_dry_takes_no_batches_and_the_other_wallet_mints_its_share(
    settings_env, services, pg_pool, redis_client, deployment, fund_payers, anvil
):
    w3 = Web3(HTTPProvider(anvil.rpc_url))
    payers = fund_payers(30)
    balance = w3.eth.get_balance(A)
    w3.provider.make_request("anvil_setBalance", [A, hex(10**9)])  # far less than any batch's gas
    try:
        ids = await enqueue(pg_pool, redis_client, settings_env["MINTLINE_NAMESPACE"], deployment, payers)
        batcher = services("batcher", BATCHER_PRIVATE_KEYS=BOTH, **FAST)
        services("confirmer")
        rows = await wait_for(pg_pool, ids, timeout=60)
        assert {r["status"] for r in rows} == {"completed"}, batcher.log_tail()
        assert senders(w3, rows) == {B}
        assert await pg_pool.fetchval("SELECT count(*) FROM batches WHERE wallet = $1", A) == 0
        assert await metric(batcher, f'mintline_batcher_waiting_for_funds{{wallet="{A}"}}') == 1
        assert await metric(batcher, f'mintline_batcher_taking_batches{{wallet="{A}"}}') == 0
        assert await metric(batcher, f'mintline_batcher_taking_batches{{wallet="{B}"}}') == 1
        assert await metric(batcher, f'mintline_batcher_waiting_for_funds{{wallet="{B}"}}') == 0
    finally:
        w3.provider.make_request("anvil_setBalance", [A, hex(balance)])
    # Funded again, the wallet takes batches again.
    await until(
        lambda: metric(batcher, f'mintline_batcher_taking_batches{{wallet="{A}"}}'), 20, batcher.log_tail()
    )
    await minted_exactly_once(pg_pool, w3, deployment, payers)
    await assert_gap_free(pg_pool, w3)


async def test_a_dry_wallets_unsent_batch_goes_to_the_other_wallet_and_its_nonce_is_filled_once_funded(
    env, services, pg_pool, redis_client, deployment, fund_payers, anvil
):
    """Signed while the wallet could pay, refused at broadcast because it no longer can: after
    BATCHER_RELEASE_AFTER_SECONDS its requests go back to the queue and the other wallet mints them;
    the nonce holds a no-op that is mined once the wallet is funded, so no nonce is left a hole."""
    w3 = Web3(HTTPProvider(anvil.rpc_url))
    payers = fund_payers(4)
    ids = await enqueue(pg_pool, redis_client, env["MINTLINE_NAMESPACE"], deployment, payers, publish=False)
    async with in_process_batcher(pg_pool, redis_client, KEY_A) as signer:
        stored = await signer.store.store([Waiting(i, "token", 2**62, 0.0) for i in ids])
    assert stored is not None
    batch_id, nonce, original, _ = stored
    balance = w3.eth.get_balance(A)
    w3.provider.make_request("anvil_setBalance", [A, hex(10**9)])
    try:
        batcher = services(
            "batcher",
            BATCHER_PRIVATE_KEYS=BOTH,
            BATCHER_RELEASE_AFTER_SECONDS="1",
            BATCHER_REBROADCAST_AFTER_SECONDS="0.5",
            BATCHER_BATCH_WINDOW_SECONDS="0.2",
        )
        services("confirmer")
        rows = await wait_for(pg_pool, ids, timeout=60)
        assert {r["status"] for r in rows} == {"completed"}, batcher.log_tail()
        assert senders(w3, rows) == {B}
        filled = await pg_pool.fetchrow(
            "SELECT status, fill_reason, tx_hash FROM batches WHERE id = $1", batch_id
        )
        assert filled["fill_reason"] and "could not pay" in filled["fill_reason"]
        assert filled["status"] in ("signed", "sent") and filled["tx_hash"] != original
        assert w3.eth.get_transaction_count(A, "latest") == nonce
        assert await metric(batcher, f'mintline_batcher_released_requests_total{{wallet="{A}"}}') == 4
        history = await pg_pool.fetch(
            "SELECT status FROM mint_request_history WHERE request_id = $1 ORDER BY id", uuid.UUID(ids[0])
        )
        assert [h["status"] for h in history][-4:] == ["pending", "batched", "sent", "completed"]
    finally:
        w3.provider.make_request("anvil_setBalance", [A, hex(balance)])
    await until(
        lambda: pg_pool.fetchval("SELECT status = 'confirmed' FROM batches WHERE id = $1", batch_id),
        30,
        batcher.log_tail(),
    )
    mined = w3.eth.get_transaction_by_block(
        w3.eth.get_transaction_receipt(filled["tx_hash"])["blockNumber"], 0
    )
    assert (mined["from"], mined["to"], mined["nonce"]) == (A, A, nonce)
    await minted_exactly_once(pg_pool, w3, deployment, payers)
    await assert_gap_free(pg_pool, w3)


async def test_a_wallet_whose_lock_is_taken_stands_by_and_the_process_goes_on_with_the_other(
    settings_env, services, pg_pool, redis_client, deployment, fund_payers, anvil, database
):
    w3 = Web3(HTTPProvider(anvil.rpc_url))
    namespace = settings_env["MINTLINE_NAMESPACE"]
    holder = WalletLock(database, A)
    stop = asyncio.Event()
    assert await holder.acquire(stop)
    try:
        batcher = services("batcher", BATCHER_PRIVATE_KEYS=BOTH, **FAST)
        services("confirmer")
        await logged(batcher, f"another batcher holds {A.lower()}")
        first = fund_payers(10)
        rows = await wait_for(pg_pool, await enqueue(pg_pool, redis_client, namespace, deployment, first))
        assert {r["status"] for r in rows} == {"completed"} and senders(w3, rows) == {B}
        assert await metric(batcher, f'mintline_batcher_active{{wallet="{A}"}}') == 0
    finally:
        await holder.release()
    await until(lambda: metric(batcher, f'mintline_batcher_active{{wallet="{A}"}}'), 20, batcher.log_tail())

    # Its lock's session ends (a failover, a cut connection) and another holder takes the lock first:
    # that wallet goes back to standby, the process and the other wallet go on.
    pid = await pg_pool.fetchval(
        f"SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1"
        f" AND objid = ({LOCK_KEY} & 4294967295)::oid"
        f" AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        A.lower(),
    )
    assert await pg_pool.fetchval("SELECT pg_terminate_backend($1)", pid)
    assert await holder.acquire(stop)
    try:
        # Noticed at the next maintenance round (a round held up by a slow node call logs so).
        await logged(batcher, "back to standby", timeout=60)
        later = fund_payers(10)
        rows = await wait_for(pg_pool, await enqueue(pg_pool, redis_client, namespace, deployment, later))
        assert {r["status"] for r in rows} == {"completed"} and senders(w3, rows) == {B}
        assert batcher.proc is not None and batcher.proc.poll() is None
        assert await metric(batcher, f'mintline_batcher_active{{wallet="{A}"}}') == 0
    finally:
        await holder.release()
    await minted_exactly_once(pg_pool, w3, deployment, first + later)
    await assert_gap_free(pg_pool, w3)


async def test_a_wedged_wallet_takes_no_new_batches_and_its_own_go_once_it_is_unwedged(
    settings_env, services, pg_pool, redis_client, deployment, fund_payers, anvil
):
    """The first wallet's endpoint answers its transactions and never forwards them, so its nonce on
    chain stands still: after BATCHER_WEDGED_AFTER_SECONDS it takes no new batches (long before its
    in-flight cap) and the other wallet takes the backlog as it arrives. Once its transactions get
    through, its own batches are mined and confirmed, and its nonces have no gap."""
    w3 = Web3(HTTPProvider(anvil.rpc_url))
    namespace = settings_env["MINTLINE_NAMESPACE"]
    payers = fund_payers(60)
    with RpcProxy(anvil.rpc_url) as proxy:
        proxy.drop_transactions = True
        wedged = services(
            "batcher", RPC_URL=proxy.url, BATCHER_PRIVATE_KEY=KEY_A, BATCHER_WEDGED_AFTER_SECONDS="2", **FAST
        )
        services("batcher", BATCHER_PRIVATE_KEY=KEY_B, **FAST)
        services("confirmer")
        await logged(wedged, "this batcher is active")
        ids = []
        for wave in range(10):  # a backlog that keeps arriving
            ids += await enqueue(
                pg_pool, redis_client, namespace, deployment, payers[wave * 6 : wave * 6 + 6]
            )
            await asyncio.sleep(0.5)
        await logged(wedged, "takes no batches (wedged)")
        assert await metric(wedged, f'mintline_batcher_taking_batches{{wallet="{A}"}}') == 0
        stuck = await pg_pool.fetchval("SELECT count(*) FROM batches WHERE wallet = $1", A)
        assert 1 <= stuck < 16, stuck  # stopped by the wedge, not by the in-flight cap
        proxy.drop_transactions = False
        async with mining(w3, every=0.3):  # blocks, so the confirmer reports its batches stuck
            rows = await wait_for(pg_pool, ids, timeout=90)
    assert {r["status"] for r in rows} == {"completed"}, wedged.log_tail()
    await minted_exactly_once(pg_pool, w3, deployment, payers)
    by_wallet = await assert_gap_free(pg_pool, w3)
    assert len(by_wallet[B]) > len(by_wallet[A])
