"""PostgreSQL access: the pool and the migrations. PostgreSQL is the durable record."""

import asyncio
import json
import logging
import time
from pathlib import Path

import asyncpg

from shared.backoff import exponential_backoff

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")
# Any constant works; it only has to be the same for every process migrating this database.
_MIGRATION_LOCK = 0x6D696E74


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


# A PostgreSQL starting up or restarting: worth waiting for at start-up.
NOT_YET_REACHABLE = (OSError, TimeoutError, asyncpg.CannotConnectNowError)


async def _keep_session(conn: asyncpg.Connection) -> None:
    """A released connection's reset, behind a transaction pooler or for a pool whose users change no
    session state: none (asyncpg still rolls back an open transaction first). Its default
    (pg_advisory_unlock_all, CLOSE ALL, UNLISTEN *, RESET ALL) is an extra round trip per query, and
    behind a pooler would run on whichever server connection it picks, resetting nothing of this
    client's."""


async def create_pool(
    dsn: str,
    min_size: int = 1,
    max_size: int = 10,
    *,
    transaction_pooling: bool = False,
    wait_seconds: float = 0.0,
    reset_sessions: bool = True,
) -> asyncpg.Pool:
    """A pool of connections to `dsn`; a PostgreSQL not reachable yet is tried again for up to
    `wait_seconds` (a service started during a database restart waits it out instead of exiting).

    With `transaction_pooling` (DATABASE_POOLER: PgBouncer in transaction mode), statements are never
    named: asyncpg's statement cache names and prepares each statement once per connection, but the
    pooler may run the next transaction on a server connection that never saw it ("prepared statement
    ... does not exist"). Without the cache asyncpg uses the unnamed statement and sends it again with
    its Bind, all before the one Sync at which the pooler may hand the server connection on. The
    price: each query is described first, a second round trip (PgBouncer 1.21's
    max_prepared_statements would lift it; Debian 12 ships 1.18).

    `reset_sessions` False skips the reset on release for a pool whose users never change session
    state (no SET, LISTEN, cursor or session advisory lock): intake's."""
    options: dict = {"statement_cache_size": 0} if transaction_pooling else {}
    if transaction_pooling or not reset_sessions:
        options["reset"] = _keep_session
    deadline = time.monotonic() + wait_seconds
    attempt = 0
    while True:
        try:
            return await asyncpg.create_pool(
                dsn, min_size=min_size, max_size=max_size, init=_init_connection, **options
            )
        except NOT_YET_REACHABLE as exc:
            attempt += 1
            delay = exponential_backoff(attempt, 0.5, 5.0)
            if time.monotonic() + delay > deadline:
                raise
            log.warning("PostgreSQL not reachable (%s); trying again in %.1f s", exc, delay)
            await asyncio.sleep(delay)


async def migrate(dsn: str) -> list[str]:
    """Apply every migration not applied yet, in file-name order, all in one transaction; safe to run
    from several processes, and through a transaction pooler: the lock is the transaction's, so it
    ends with it (a session lock taken through PgBouncer would stay on its server connection)."""
    conn = await asyncpg.connect(dsn, statement_cache_size=0)
    applied_now = []
    try:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            applied = {row["version"] for row in await conn.fetch("SELECT version FROM schema_migrations")}
            for path in sorted(MIGRATIONS.glob("*.sql")):
                if path.stem in applied:
                    continue
                await conn.execute(path.read_text())
                await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", path.stem)
                applied_now.append(path.stem)
    finally:
        await conn.close()
    for version in applied_now:
        log.info("applied migration %s", version)
    return applied_now


if __name__ == "__main__":
    import asyncio
    import os

    logging.basicConfig(level=logging.INFO)
    print("applied:", asyncio.run(migrate(os.environ["DATABASE_URL"])) or "nothing new")
