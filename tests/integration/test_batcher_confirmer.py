"""Batcher and confirmer as processes on real Redis, PostgreSQL and anvil."""

import asyncio
import time
import uuid

import aiohttp
import asyncpg
from redis.asyncio import Redis
from web3 import HTTPProvider, Web3

from services.intake.payments import payment_id as intake_payment_id
from shared import keys
from shared.deploy import Deployment, load_artifact
from shared.events import MintRequested
from shared.keys import Keys
from shared.streams import publish_many
from tests.support.batcher import in_process_batcher, metric
from tests.support.payments import send_signed, settle_directly, sign_authorization, usdc_contract


async def enqueue(
    pool: asyncpg.Pool,
    redis: Redis,
    namespace: str,
    deployment: Deployment,
    payers: list,
    publish: bool = True,
) -> list[str]:
    """Insert pending requests the way intake does (row committed, then the event published)."""
    ids = []
    events = []
    for payer in payers:
        authorization, signature = sign_authorization(payer, deployment)
        request_id = str(uuid.uuid4())
        payment_id = intake_payment_id(payer.address, authorization["nonce"])
        await pool.execute(
            "INSERT INTO mint_requests (id, payer_address, payment_type, payment_id, amount,"
            " authorization_data,"
            " valid_before, status) VALUES ($1, $2, 'gasless', $3, $4, $5, $6, 'pending')",
            uuid.UUID(request_id),
            payer.address,
            payment_id,
            deployment.price,
            {**authorization, "signature": signature},
            int(authorization["validBefore"]),
        )
        ids.append(request_id)
        events.append(MintRequested(request_id=request_id, valid_before=int(authorization["validBefore"])))
    if publish:
        await publish_many(redis, Keys(namespace).stream(keys.MINT_REQUESTED), events)
    return ids


async def wait_for(pool: asyncpg.Pool, ids: list[str], timeout: float = 60) -> list:
    deadline = time.monotonic() + timeout
    while True:
        rows = await pool.fetch(
            "SELECT id, status, error_message, mint_tx_hash FROM mint_requests WHERE id = ANY($1::uuid[])",
            [uuid.UUID(i) for i in ids],
        )
        if all(r["status"] in ("completed", "failed") for r in rows) or time.monotonic() > deadline:
            return rows
        await asyncio.sleep(0.2)


async def test_batches_mint_every_request_once(
    settings_env, services, pg_pool, redis_client, deployment, fund_payers, anvil
):
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
    assert consecutive(nonces) and len(nonces) >= 3


async def logged(process, text: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while text not in process.log_path.read_text(errors="replace"):
        assert time.monotonic() < deadline, f"{process.name} never logged {text!r}:\n{process.log_tail()}"
        await asyncio.sleep(0.1)


def consecutive(nonces: list[int]) -> bool:
    return nonces == list(range(nonces[0], nonces[0] + len(nonces)))


async def minted_once(w3: Web3, deployment: Deployment, payers: list) -> None:
    """Every payer holds exactly one mint, and the contract marked every payment processed."""
    token = w3.eth.contract(address=deployment.token, abi=load_artifact("MintToken")["abi"])
    balances = [token.functions.balanceOf(p.address).call() for p in payers]
    assert balances == [deployment.mint_amount] * len(payers)


async def test_batcher_killed_mid_batch_loses_nothing_and_mints_nothing_twice(
    settings_env, services, pg_pool, redis_client, deployment, fund_payers, anvil
):
    payers = fund_payers(80)
    ids = await enqueue(pg_pool, redis_client, settings_env["MINTLINE_NAMESPACE"], deployment, payers)
    first = services("batcher", BATCHER_BATCH_SIZE="5", BATCHER_BATCH_WINDOW_SECONDS="0.05")
    services("confirmer")
    deadline = time.monotonic() + 30
    while not await pg_pool.fetchval("SELECT count(*) FROM batches") and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    first.kill()
    killed_after = await pg_pool.fetchval("SELECT count(*) FROM batches")
    assert 0 < killed_after, first.log_tail()
    services("batcher", BATCHER_BATCH_SIZE="5")
    rows = await wait_for(pg_pool, ids)
    assert {r["status"] for r in rows} == {"completed"}
    await minted_once(Web3(HTTPProvider(anvil.rpc_url)), deployment, payers)
    nonces = [r["nonce"] for r in await pg_pool.fetch("SELECT nonce FROM batches ORDER BY nonce")]
    assert consecutive(nonces)


async def test_signed_but_never_broadcast_batch_is_rebroadcast_by_the_next_batcher(
    env, services, pg_pool, redis_client, deployment, fund_payers, anvil
):
    from services.batcher.batching import Waiting

    payers = fund_payers(4)
    ids = await enqueue(pg_pool, redis_client, env["MINTLINE_NAMESPACE"], deployment, payers, publish=False)
    async with in_process_batcher(pg_pool, redis_client) as crashed:
        # Store the signed transaction, then "crash" before broadcasting it.
        stored = await crashed.store.store([Waiting(i, "token", 2**62, 0.0) for i in ids])
    assert stored is not None
    batch_id, nonce, tx_hash, _ = stored
    assert await pg_pool.fetchval("SELECT status FROM batches WHERE id = $1", batch_id) == "signed"
    services("batcher")
    services("confirmer")
    rows = await wait_for(pg_pool, ids)
    assert {r["status"] for r in rows} == {"completed"}
    assert {r["mint_tx_hash"] for r in rows} == {tx_hash}
    await minted_once(Web3(HTTPProvider(anvil.rpc_url)), deployment, payers)


async def test_standby_batcher_takes_over_when_the_active_one_dies(
    settings_env, services, pg_pool, redis_client, deployment, fund_payers, anvil
):
    active = services("batcher")
    await logged(active, "this batcher is active")
    standby = services("batcher")
    await logged(standby, "waiting as standby")
    async with aiohttp.ClientSession() as session:
        for process, role in ((active, 1), (standby, 0)):
            base = f"http://127.0.0.1:{process.env['BATCHER_METRICS_PORT']}"
            async with session.get(f"{base}/health") as response:
                assert response.status == 200, await response.text()
            assert await metric(process, f'mintline_batcher_active{{wallet="{deployment.minter}"}}') == role
    active.kill()
    services("confirmer")
    payers = fund_payers(10)
    ids = await enqueue(pg_pool, redis_client, settings_env["MINTLINE_NAMESPACE"], deployment, payers)
    rows = await wait_for(pg_pool, ids)
    assert {r["status"] for r in rows} == {"completed"}, standby.log_tail()
    await logged(standby, "this batcher is active")


async def test_a_batcher_that_loses_its_lock_goes_back_to_standby_and_takes_it_again(
    settings_env, services, pg_pool, redis_client, deployment, fund_payers, anvil
):
    """The lock's connection is cut by the server (as a PostgreSQL restart cuts it): the batcher
    stops batching, waits as standby and, the lock being free, is active again; it never exits."""
    batcher = services("batcher", BATCHER_BATCH_WINDOW_SECONDS="0.2")
    await logged(batcher, "this batcher is active")
    services("confirmer")
    # This test's database only: pg_locks spans the server, which other tests' databases share.
    terminated = await pg_pool.fetchval(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_locks"
        " WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid()"
        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    )
    assert terminated == 1
    # The lock is asked between maintenance rounds, and a round may take up to its cut-off (45 s) plus
    # the check's own bound: in one CI run the batcher had not noticed after 30 s.
    await logged(batcher, "back to standby", timeout=60)
    payers = fund_payers(6)
    ids = await enqueue(pg_pool, redis_client, settings_env["MINTLINE_NAMESPACE"], deployment, payers)
    rows = await wait_for(pg_pool, ids)
    assert {r["status"] for r in rows} == {"completed"}, batcher.log_tail()
    assert batcher.log_path.read_text().count("this batcher is active") == 2
    assert batcher.proc is not None and batcher.proc.poll() is None, batcher.log_tail()
    await minted_once(Web3(HTTPProvider(anvil.rpc_url)), deployment, payers)


async def test_health_probes_never_cost_the_active_batcher_its_lock(
    settings_env, services, pg_pool, redis_client, deployment, fund_payers, anvil
):
    """Probes of /health while the batcher checks its wallet lock: the probe must not use the lock's
    connection, or the check fails ("another operation is in progress") and the batcher stops."""
    batcher = services("batcher", BATCHER_BATCH_WINDOW_SECONDS="0.2")
    await logged(batcher, "this batcher is active")
    services("confirmer")
    health = f"http://127.0.0.1:{batcher.env['BATCHER_METRICS_PORT']}/health"

    async def probe(session: aiohttp.ClientSession) -> list[int]:
        statuses = []
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            async with session.get(health) as response:
                statuses.append(response.status)
        return statuses

    async with aiohttp.ClientSession() as session:
        probes = await asyncio.gather(*(probe(session) for _ in range(8)))
    assert {status for statuses in probes for status in statuses} == {200}
    assert "lost the wallet lock" not in batcher.log_path.read_text()
    payers = fund_payers(5)
    ids = await enqueue(pg_pool, redis_client, settings_env["MINTLINE_NAMESPACE"], deployment, payers)
    rows = await wait_for(pg_pool, ids)
    assert {r["status"] for r in rows} == {"completed"}, batcher.log_tail()


async def test_bad_entry_fails_alone_and_the_rest_of_its_batch_completes(
    settings_env, services, pg_pool, redis_client, deployment, fund_payers, anvil
):
    payers = fund_payers(6)
    broke = fund_payers(1, amount=1)  # holds far less than the price
    ids = await enqueue(pg_pool, redis_client, settings_env["MINTLINE_NAMESPACE"], deployment, payers + broke)
    services("batcher", BATCHER_BATCH_WINDOW_SECONDS="0.5")
    services("confirmer")
    rows = {str(r["id"]): r for r in await wait_for(pg_pool, ids)}
    assert [rows[i]["status"] for i in ids[:-1]] == ["completed"] * 6
    assert rows[ids[-1]]["status"] == "failed"
    assert "authorization failed" in rows[ids[-1]]["error_message"]
    history = await pg_pool.fetch(
        "SELECT status FROM mint_request_history WHERE request_id = $1 ORDER BY id", uuid.UUID(ids[-1])
    )
    assert [h["status"] for h in history] == ["pending", "batched", "sent", "failed"]


async def test_authorization_settled_by_someone_else_first_is_still_minted_once(
    settings_env, services, pg_pool, redis_client, deployment, fund_payers, anvil
):
    from devstack.anvil import DEV_KEYS

    payer = fund_payers(1)[0]
    ids = await enqueue(
        pg_pool, redis_client, settings_env["MINTLINE_NAMESPACE"], deployment, [payer], publish=False
    )
    auth = await pg_pool.fetchval(
        "SELECT authorization_data FROM mint_requests WHERE id = $1", uuid.UUID(ids[0])
    )
    w3 = Web3(HTTPProvider(anvil.rpc_url))
    usdc = usdc_contract(w3, deployment)
    treasury_before = usdc.functions.balanceOf(deployment.treasury).call()
    # A front-runner (anvil's public dev account 5) submits the payer's signed transfer itself.
    front_runner = w3.eth.account.from_key(DEV_KEYS[5])
    assert settle_directly(w3, deployment, auth, auth["signature"], front_runner)["status"] == 1
    await publish_many(
        redis_client,
        Keys(settings_env["MINTLINE_NAMESPACE"]).stream(keys.MINT_REQUESTED),
        [MintRequested(request_id=ids[0])],
    )

    services("batcher", BATCHER_BATCH_WINDOW_SECONDS="0.2")
    services("confirmer")
    rows = await wait_for(pg_pool, ids)
    assert rows[0]["status"] == "completed", rows[0]["error_message"]
    await minted_once(w3, deployment, [payer])
    assert usdc.functions.balanceOf(deployment.treasury).call() == treasury_before + deployment.price
    history = await pg_pool.fetch(
        "SELECT status FROM mint_request_history WHERE request_id = $1 ORDER BY id", uuid.UUID(ids[0])
    )
    assert [h["status"] for h in history] == [
        "pending",
        "batched",
        "sent",
        "confirmation_failed",
        "pending",
        "batched",
        "sent",
        "completed",
    ]


async def test_a_batch_that_keeps_reverting_ends_failed_with_its_reason_after_the_retries(
    settings_env, services, pg_pool, redis_client, deployment, fund_payers, anvil
):
    from devstack.anvil import DEV_KEYS

    w3 = Web3(HTTPProvider(anvil.rpc_url))
    token = w3.eth.contract(address=deployment.token, abi=load_artifact("MintToken")["abi"])
    admin = w3.eth.account.from_key(DEV_KEYS[0])  # anvil's public dev key 0, the deployer and admin
    # A batcher without the minter role refuses to start (tests/integration/test_startup_checks.py):
    # the role is revoked once it runs, and from then on every batchMint reverts as a whole.
    batcher = services("batcher", BATCHER_BATCH_WINDOW_SECONDS="0.2")
    deadline = time.monotonic() + 30
    while "matches the deployment" not in batcher.log_path.read_text():
        assert time.monotonic() < deadline, batcher.log_tail()
        await asyncio.sleep(0.1)
    send_signed(
        w3, admin, token.functions.revokeRole(token.functions.MINTER_ROLE().call(), deployment.minter)
    )
    payers = fund_payers(3)
    ids = await enqueue(pg_pool, redis_client, settings_env["MINTLINE_NAMESPACE"], deployment, payers)
    services("confirmer", CONFIRMER_MAX_RETRIES="2")
    rows = await wait_for(pg_pool, ids)
    assert {r["status"] for r in rows} == {"failed"}
    assert {r["error_message"] for r in rows} == {"batch transaction reverted (retries exhausted)"}
    retries = await pg_pool.fetch(
        "SELECT retry_count FROM mint_requests WHERE id = ANY($1::uuid[])", [uuid.UUID(i) for i in ids]
    )
    assert {r["retry_count"] for r in retries} == {2}
    assert await pg_pool.fetchval("SELECT count(*) FROM batches WHERE status = 'reverted'") == 3
    assert [token.functions.balanceOf(p.address).call() for p in payers] == [0, 0, 0]


async def test_batch_size_changed_in_system_settings_takes_effect_in_the_running_batcher(
    settings_env, services, pg_pool, redis_client, deployment, fund_payers, anvil
):
    batcher = services(
        "batcher",
        BATCHER_BATCH_SIZE="100",
        BATCHER_BATCH_WINDOW_SECONDS="1",
        BATCHER_SETTINGS_REFRESH_SECONDS="0.2",
    )
    services("confirmer")
    await logged(batcher, "this batcher is active")
    await pg_pool.execute("INSERT INTO system_settings (key, value) VALUES ('batch_size', '2')")
    await asyncio.sleep(1)  # a few refresh cycles
    payers = fund_payers(6)
    ids = await enqueue(pg_pool, redis_client, settings_env["MINTLINE_NAMESPACE"], deployment, payers)
    rows = await wait_for(pg_pool, ids)
    assert {r["status"] for r in rows} == {"completed"}
    sizes = [r["n"] for r in await pg_pool.fetch("SELECT cardinality(request_ids) AS n FROM batches")]
    assert sizes == [2, 2, 2]
