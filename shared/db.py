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


async def create_pool(
    dsn: str, min_size: int = 1, max_size: int = 10, wait_seconds: float = 0.0
) -> asyncpg.Pool:
    """A connection pool; a PostgreSQL not reachable yet is tried again for up to `wait_seconds`
    (a service started during a database restart waits it out instead of exiting)."""
    deadline = time.monotonic() + wait_seconds
    attempt = 0
    while True:
        try:
            return await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, init=_init_connection)
        except NOT_YET_REACHABLE as exc:
            attempt += 1
            delay = exponential_backoff(attempt, 0.5, 5.0)
            if time.monotonic() + delay > deadline:
                raise
            log.warning("PostgreSQL not reachable (%s); trying again in %.1f s", exc, delay)
            await asyncio.sleep(delay)


async def migrate(dsn: str) -> list[str]:
    """Apply every migration not applied yet, in file-name order; safe to run from several processes."""
    conn = await asyncpg.connect(dsn)
    applied_now = []
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        applied = {row["version"] for row in await conn.fetch("SELECT version FROM schema_migrations")}
        for path in sorted(MIGRATIONS.glob("*.sql")):
            if path.stem in applied:
                continue
            async with conn.transaction():
                await conn.execute(path.read_text())
                await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", path.stem)
            log.info("applied migration %s", path.stem)
            applied_now.append(path.stem)
    finally:
        await conn.close()
    return applied_now


if __name__ == "__main__":
    import asyncio
    import os

    logging.basicConfig(level=logging.INFO)
    print("applied:", asyncio.run(migrate(os.environ["DATABASE_URL"])) or "nothing new")
