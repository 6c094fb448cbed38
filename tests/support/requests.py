"""Waiting on mint requests in PostgreSQL, as the tests judge them: until each ends."""

import asyncio
import time
from collections.abc import Sequence

import asyncpg

FINAL = ("completed", "failed")


async def wait_final(pool: asyncpg.Pool, ids: Sequence[str], timeout: float = 120) -> list[asyncpg.Record]:
    """The rows of `ids`, in queue order, once every one is completed or failed (or as they are when
    `timeout` runs out, for the test's assertion to show)."""
    deadline = time.monotonic() + timeout
    while True:
        rows = await pool.fetch(
            "SELECT * FROM mint_requests WHERE id = ANY($1::uuid[]) ORDER BY seq", list(ids)
        )
        if all(r["status"] in FINAL for r in rows) or time.monotonic() > deadline:
            return rows
        await asyncio.sleep(0.25)
