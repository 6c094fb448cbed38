"""PostgreSQL access: the pool and the migrations. PostgreSQL is the durable record."""

import json
import logging
from pathlib import Path

import asyncpg

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")
# Any constant works; it only has to be the same for every process migrating this database.
_MIGRATION_LOCK = 0x6D696E74


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _keep_session(conn: asyncpg.Connection) -> None:
    """A release that sends nothing: asyncpg still rolls back an open transaction first."""


async def create_pool(
    dsn: str, min_size: int = 1, max_size: int = 10, *, reset_sessions: bool = True
) -> asyncpg.Pool:
    """`reset_sessions` False skips the reset query asyncpg sends on every release (RESET ALL, CLOSE
    ALL, UNLISTEN *, pg_advisory_unlock_all()): a round trip per query, for a pool whose users never
    change session state (no SET, LISTEN, cursor or session advisory lock)."""
    return await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        reset=None if reset_sessions else _keep_session,
    )


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
