"""The queue's count of requests per status, for GET /queue/status and the live queue stream, without
scanning mint_requests.

Queued statuses are counted through the partial index of queued requests (as many rows as the queue
is deep); finished ones (completed, failed, confirmation_failed) are kept in `mint_request_counts` by
statement-level triggers (migration 006), sharded so concurrent updates rarely wait on one row. The
counts are read at most once per `max_age` seconds however many clients ask; the first caller after
that reads them, and the callers arriving meanwhile wait for the same read.
"""

import asyncio
import time
from collections.abc import Callable

import asyncpg

from services.intake.queue import QUEUED_SQL

STATUS_COUNTS = f"""
SELECT status, count(*) AS n FROM mint_requests WHERE status IN {QUEUED_SQL} GROUP BY status
UNION ALL
SELECT status, sum(n)::bigint AS n FROM mint_request_counts GROUP BY status HAVING sum(n) <> 0
"""


async def read_status_counts(pool: asyncpg.Pool) -> dict[str, int]:
    return {row["status"]: row["n"] for row in await pool.fetch(STATUS_COUNTS)}


class StatusCounts:
    def __init__(self, max_age: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_age = max_age
        self.clock = clock
        self._counts: dict[str, int] | None = None
        self._read_at = 0.0
        self._lock = asyncio.Lock()

    def _fresh(self) -> dict[str, int] | None:
        if self._counts is not None and self.clock() - self._read_at < self.max_age:
            return self._counts
        return None

    async def get(self, pool: asyncpg.Pool) -> dict[str, int]:
        counts = self._fresh()
        if counts is not None:
            return counts
        async with self._lock:
            counts = self._fresh()
            if counts is None:
                started = self.clock()
                counts = await read_status_counts(pool)
                self._counts, self._read_at = counts, started
            return counts
