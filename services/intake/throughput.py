"""Recent throughput, for estimated waits, read from PostgreSQL every few seconds by a background loop
so no request pays for the count.

The measured rate is the last minute's completions over the time they span (not over a full minute,
which would undercount for the first minute of a burst). Waits never assume less than the configured
capacity, the rate the batcher and the chain carry once the chain answers: after an RPC outage the
measured rate is near zero for a minute, and a wait estimated from it would refuse honest payments
(authorization_expires_too_soon) that the drained queue would mint in seconds. Too few completions to
measure (an idle or fresh system, where completions show demand rather than capacity) leave the
capacity alone. An estimate too short costs little: an authorization that expires before its batch is
skipped by the contract, never charged, and its request fails with its reason.
"""

import asyncio
import logging
import math

import asyncpg

from services.intake import metrics
from services.intake.queue import ACTIVE_SQL
from shared.loops import every

log = logging.getLogger(__name__)

# Each count reads only its partial index (recent completions, active requests): however many requests
# have completed over time, this stays a small read.
RECENT = f"""
WITH recent AS (
    SELECT count(*) AS completed, min(processed_at) AS first FROM mint_requests
    WHERE status = 'completed' AND processed_at > now() - interval '1 minute'
)
SELECT completed, coalesce(extract(epoch FROM now() - first), 0)::float8 AS span,
       (SELECT count(*) FROM mint_requests WHERE status IN {ACTIVE_SQL}) AS active
FROM recent
"""
# Completions landing in the same block share a timestamp; never divide by less than this.
MIN_SPAN_SECONDS = 5.0


class Throughput:
    def __init__(self, capacity_per_second: float, min_sample: int) -> None:
        self.capacity_per_second = capacity_per_second
        self.min_sample = min_sample
        self.completed_last_minute = 0
        self.span_seconds = 60.0
        self.queue_depth = 0

    @property
    def measured_per_second(self) -> float:
        """Mints completed per second recently; 0 with too few completions to tell."""
        if self.completed_last_minute < self.min_sample:
            return 0.0
        return self.completed_last_minute / min(max(self.span_seconds, MIN_SPAN_SECONDS), 60.0)

    @property
    def per_second(self) -> float:
        """The rate waits are estimated at: the recent rate where it beats the capacity, else the capacity."""
        return max(self.measured_per_second, self.capacity_per_second)

    def wait_seconds(self, position: int) -> int:
        return math.ceil(max(position, 0) / self.per_second)

    async def refresh(self, pool: asyncpg.Pool) -> None:
        row = await pool.fetchrow(RECENT)
        self.completed_last_minute = row["completed"]
        self.span_seconds = row["span"]
        self.queue_depth = row["active"]
        metrics.QUEUE_DEPTH.set(self.queue_depth)

    async def run(self, pool: asyncpg.Pool, stop: asyncio.Event, interval: float) -> None:
        await every(interval, stop, lambda: self.refresh(pool), "reading recent throughput")
