"""Rebuild mint.requested and render.requested from PostgreSQL (invariant 1: Redis may lose everything).

`replay_pending` republishes every pending request (and every NFT request still rendering);
`shared.replay.watch` runs it at start-up and whenever intake's marker key is gone from Redis.
`republish_stale` is the slower sweep for a single lost XADD (Redis fine, one publish failed): rows
published too long ago go out again.
The batcher and the renderer are idempotent, so publishing a request twice is harmless.
"""

import asyncio
import logging

import asyncpg
from redis.asyncio import Redis

from services.intake import metrics
from services.intake.settings import IntakeSettings
from shared import keys
from shared.events import REQUESTED_COLUMNS, MintRequested, RenderRequested
from shared.loops import every, pause
from shared.streams import publish_many

log = logging.getLogger(__name__)

PENDING = f"""
SELECT {REQUESTED_COLUMNS}, seq, status FROM mint_requests
WHERE status IN ('pending', 'rendering') AND seq > $1 AND published_at <= now() - make_interval(secs => $3)
ORDER BY seq LIMIT $2
"""
MARK_PUBLISHED = (
    "UPDATE mint_requests SET published_at = now()"
    " WHERE id = ANY($1::uuid[]) AND status IN ('pending', 'rendering')"
)


async def replay_pending(
    pool: asyncpg.Pool, redis: Redis, settings: IntakeSettings, older_than_seconds: float = 0.0
) -> int:
    """Publish MintRequested for every pending row and RenderRequested for every rendering one
    (published more than `older_than_seconds` ago), in chunks: publish, then record published_at.
    Returns how many were published."""
    mint_stream = settings.keys.stream(keys.MINT_REQUESTED)
    render_stream = settings.keys.stream(keys.RENDER_REQUESTED)
    after_seq, total = 0, 0
    while True:
        rows = await pool.fetch(PENDING, after_seq, settings.replay_chunk, older_than_seconds)
        if not rows:
            break
        mints = [MintRequested.of_row(row) for row in rows if row["status"] == "pending"]
        renders = [RenderRequested(request_id=str(row["id"])) for row in rows if row["status"] == "rendering"]
        await publish_many(redis, mint_stream, mints, maxlen=settings.stream_maxlen)
        await publish_many(redis, render_stream, renders, maxlen=settings.stream_maxlen)
        await pool.execute(MARK_PUBLISHED, [row["id"] for row in rows])
        total += len(rows)
        after_seq = rows[-1]["seq"]
        if len(rows) < settings.replay_chunk:
            break
    metrics.REPUBLISHED.inc(total)
    return total


async def republish_stale(
    pool: asyncpg.Pool, redis: Redis, settings: IntakeSettings, stop: asyncio.Event
) -> None:
    """The sweep loop: every republish_interval_seconds, republish pending rows not published for
    republish_after_seconds."""

    async def sweep() -> None:
        count = await replay_pending(pool, redis, settings, settings.republish_after_seconds)
        if count:
            log.warning(
                "republished %d pending requests not published for %.0f s",
                count,
                settings.republish_after_seconds,
            )

    # The first sweep waits a whole interval: start-up already replayed everything pending.
    if not await pause(stop, settings.republish_interval_seconds):
        await every(settings.republish_interval_seconds, stop, sweep, "republishing stale pending requests")
