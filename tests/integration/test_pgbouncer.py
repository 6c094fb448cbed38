"""PostgreSQL through a real PgBouncer in transaction pooling mode with a small pool: asyncpg's
statement cache off (DATABASE_POOLER), migrations that leave no lock behind, and the pipeline end to
end with every service's pool behind PgBouncer and the batcher's wallet lock on a direct session."""

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
import asyncpg
import pytest
from eth_account.signers.local import LocalAccount
from web3 import HTTPProvider, Web3

from devstack.anvil import Anvil
from devstack.pgbouncer_server import PgBouncer
from devstack.ports import free_port
from devstack.postgres_server import PostgresServer
from shared import db
from shared.deploy import Deployment, load_artifact
from tests.integration.test_renderer import nft_contract, render_body
from tests.support.intake import wait_healthy
from tests.support.payments import gasless_body
from tests.support.requests import wait_final

POOL_SIZE = 3


@pytest.fixture(scope="module")
def pgbouncer(postgres_server: PostgresServer) -> Iterator[PgBouncer]:
    with PgBouncer(postgres_server.port, pool_size=POOL_SIZE) as bouncer:
        yield bouncer


def database_name(dsn: str) -> str:
    return dsn.rpartition("/")[2]


def transactions_of(bouncer: PgBouncer, database: str) -> int:
    """Transactions PgBouncer carried for the database (SHOW STATS: database, total_xact_count, ...)."""
    for row in bouncer.admin("SHOW STATS"):
        if row[0] == database:
            return int(row[1])
    return 0


def server_pids(bouncer: PgBouncer, database: str) -> set[int]:
    """The PostgreSQL backends of PgBouncer's server connections to the database (SHOW SERVERS)."""
    rows = bouncer.admin("SHOW SERVERS")
    # Columns: type, user, database, state, addr, port, local_addr, local_port, connect_time,
    # request_time, wait, wait_us, close_needed, ptr, link, remote_pid, ...
    return {int(row[15]) for row in rows if row[2] == database}


async def test_the_statement_cache_breaks_behind_transaction_pooling_and_the_pooler_setting_turns_it_off(
    pgbouncer: PgBouncer, database: str
) -> None:
    through = pgbouncer.dsn_for(database_name(database))

    async def queries(pool: asyncpg.Pool) -> list[BaseException | None]:
        async def one(i: int) -> None:
            assert await pool.fetchval(f"SELECT $1::int + {i % 5}", i) == i + i % 5
            await pool.fetchval("SELECT count(*) FROM mint_requests WHERE payer_address = $1", str(i))

        return await asyncio.gather(*(one(i) for i in range(200)), return_exceptions=True)

    cached = await db.create_pool(through, max_size=10)
    try:
        failures = [r for r in await queries(cached) if r is not None]
    finally:
        await cached.close()
    # Named statements prepared on one server connection, executed on another (or prepared again on
    # one where another client's statement of the same name is).
    misrouted = (asyncpg.InvalidSQLStatementNameError, asyncpg.DuplicatePreparedStatementError)
    assert failures and all(isinstance(f, misrouted) for f in failures), failures[:3]

    pooled = await db.create_pool(through, max_size=10, transaction_pooling=True)
    try:
        assert await queries(pooled) == [None] * 200
    finally:
        await pooled.close()


async def test_migrations_through_pgbouncer_apply_once_and_leave_no_lock_behind(
    pgbouncer: PgBouncer, postgres_server: PostgresServer
) -> None:
    name = "t_bouncer_migrate"
    direct = postgres_server.create_database(name)
    applied = await asyncio.gather(*(db.migrate(pgbouncer.dsn_for(name)) for _ in range(3)))
    # One run applied everything; the others waited for it and found nothing left to do.
    assert sorted(len(run) for run in applied) == [0, 0, len(list(db.MIGRATIONS.glob("*.sql")))]
    conn = await asyncpg.connect(direct)
    try:
        # A session lock taken through PgBouncer would stay on its server connection for ever.
        assert await conn.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == 0
    finally:
        await conn.close()
    assert await asyncio.wait_for(db.migrate(pgbouncer.dsn_for(name)), 10) == []


async def post(session: aiohttp.ClientSession, url: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    async with session.post(f"{url}{path}", json=body) as response:
        answer = await response.json()
        assert response.status == 202, answer
        return answer


async def test_paid_mints_go_end_to_end_with_every_service_behind_pgbouncer(
    pgbouncer: PgBouncer,
    services: Callable[..., Any],
    pg_pool: asyncpg.Pool,
    database: str,
    deployment: Deployment,
    fund_payers: Callable[..., list[LocalAccount]],
    anvil: Anvil,
) -> None:
    name = database_name(database)
    pooled = {"DATABASE_URL": pgbouncer.dsn_for(name), "DATABASE_POOLER": "pgbouncer"}
    port = free_port()
    intake = services("intake", INTAKE_PORT=str(port), **pooled)
    url = f"http://127.0.0.1:{port}"
    assert await wait_healthy(url, intake.proc), intake.log_tail()
    services("renderer", **pooled)
    # The batcher's queries go through PgBouncer too; its wallet lock, a session lock, does not.
    batcher = services("batcher", BATCHER_BATCH_SIZE="20", BATCHER_LOCK_DATABASE_URL=database, **pooled)
    services("confirmer", **pooled)

    payers = fund_payers(40)
    [artist] = fund_payers(1, deployment.nft_price * 4)
    # 80 mints and 3 renders at once; 64 connections at most from this client.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as session:
        mints = [post(session, url, "/mint", gasless_body(payers[i % 40], deployment)) for i in range(80)]
        renders = [post(session, url, "/nft/render", render_body(artist, deployment)) for _ in range(3)]
        answers = await asyncio.gather(*mints, *renders)
    ids = [a.get("queueId") or a["jobId"] for a in answers]

    rows = await wait_final(pg_pool, ids, timeout=180)
    assert [r["status"] for r in rows] == ["completed"] * 83, [r["error_message"] for r in rows][:5]

    w3 = Web3(HTTPProvider(anvil.rpc_url))
    token = w3.eth.contract(address=deployment.token, abi=load_artifact("MintToken")["abi"])
    assert token.functions.totalSupply().call() == 80 * deployment.mint_amount
    assert [token.functions.balanceOf(p.address).call() for p in payers] == [2 * deployment.mint_amount] * 40
    nft = nft_contract(anvil, deployment)
    token_ids = [r["token_id"] for r in rows if r["kind"] == "nft"]
    assert len(token_ids) == 3
    assert all(nft.functions.ownerOf(int(t)).call() == artist.address for t in token_ids)
    nonces = [r["nonce"] for r in await pg_pool.fetch("SELECT nonce FROM batches ORDER BY nonce")]
    assert nonces == list(range(nonces[0], nonces[0] + len(nonces)))

    # It all went through PgBouncer, on at most POOL_SIZE server connections ...
    assert transactions_of(pgbouncer, name) > 83
    assert len(server_pids(pgbouncer, name)) <= POOL_SIZE
    # ... but the wallet lock, held by a backend that is none of PgBouncer's.
    holders = await pg_pool.fetch(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    )
    assert batcher.proc.poll() is None
    assert len(holders) == 1
    assert holders[0]["pid"] not in server_pids(pgbouncer, name)
