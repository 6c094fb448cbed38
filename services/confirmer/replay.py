"""Outcomes whose webhook was never queued (the event was lost with Redis or a crash), published again
from PostgreSQL."""

import asyncpg
from redis.asyncio import Redis

from services.confirmer.settings import ConfirmerSettings
from shared import keys
from shared.events import MintCompleted, MintFailed
from shared.streams import publish_many


async def replay(pool: asyncpg.Pool, redis: Redis, settings: ConfirmerSettings) -> int:
    """Republish outcomes whose webhook was never queued (the event was lost with Redis or a crash)."""
    rows = await pool.fetch(
        "SELECT r.id, r.status, r.mint_tx_hash, r.error_message FROM mint_requests r"
        " WHERE r.status IN ('completed', 'failed') AND r.callback_url IS NOT NULL"
        " AND NOT EXISTS (SELECT 1 FROM webhook_deliveries w WHERE w.request_id = r.id)"
    )
    completed = [
        MintCompleted(request_id=str(r["id"]), tx_hash=r["mint_tx_hash"])
        for r in rows
        if r["status"] == "completed"
    ]
    failed = [
        MintFailed(request_id=str(r["id"]), reason=r["error_message"] or "failed")
        for r in rows
        if r["status"] == "failed"
    ]
    names = settings.keys
    await publish_many(redis, names.stream(keys.MINT_COMPLETED), completed, settings.stream_maxlen)
    await publish_many(redis, names.stream(keys.MINT_FAILED), failed, settings.stream_maxlen)
    return len(rows)
