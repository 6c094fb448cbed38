"""Rebuild stream state from PostgreSQL.

Redis may lose everything (invariant 1). Each service that writes a stream owns a `replay` function
that republishes, from PostgreSQL, every event a consumer may still need. It runs at start-up (which
also covers a crash between a commit and its XADD) and whenever the service's marker key is gone from
Redis, which is how a flush or a restart without persistence shows itself. Consumers are idempotent,
so replaying too much is harmless.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis

from shared.loops import every

log = logging.getLogger(__name__)


async def watch(
    redis: Redis,
    marker: str,
    replay: Callable[[], Awaitable[int]],
    stop: asyncio.Event,
    interval: float = 1.0,
) -> None:
    async def check() -> None:
        if not await redis.exists(marker):
            count = await replay()
            await redis.set(marker, "1")
            log.info("replayed %d events from PostgreSQL (marker %s was missing)", count, marker)

    await every(interval, stop, check, f"stream replay ({marker})")
