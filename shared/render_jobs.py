"""A render job as intake and the renderer both read it: its PostgreSQL row (with its request's mint
outcome), its status JSON (GET /nft/job) and the Redis cache of recent jobs' latest status.

The renderer owns the job's changes (services/renderer/jobs.py: leases, progress, outcome); intake
only reads, so this is what the two share.
"""

import json
import time
from typing import Any

import asyncpg
from redis.asyncio import Redis

from shared.keys import Keys

JOB_COLUMNS = """
j.request_id, j.settings, j.status, j.progress, j.attempts, j.image_cid, j.image_url, j.metadata_cid,
j.metadata_url, j.error, m.payer_address, m.valid_before, m.status AS mint_status, m.token_id, m.mint_tx_hash,
m.error_message AS mint_error, m.id, m.kind, m.lane, m.created_at, m.eta_seconds
"""


async def load(pool: asyncpg.Pool, job_id: str) -> dict[str, Any] | None:
    row = await pool.fetchrow(
        f"SELECT {JOB_COLUMNS} FROM render_jobs j JOIN mint_requests m ON m.id = j.request_id"
        " WHERE j.request_id = $1",
        job_id,
    )
    return None if row is None else dict(row)


def job_json(job: dict[str, Any]) -> dict[str, Any]:
    """The job as GET /nft/job shows it. A render that completed but whose mint failed is failed."""
    status, error = job["status"], job["error"]
    if status == "completed" and job["mint_status"] == "failed":
        status, error = "failed", job["mint_error"]
    return {
        "jobId": str(job["request_id"]),
        "status": status,
        "progress": job["progress"],
        "attempts": job["attempts"],
        "imageUrl": job["image_url"],
        "imageCid": job["image_cid"],
        "metadataUrl": job["metadata_url"],
        "metadataCid": job["metadata_cid"],
        "mintStatus": job["mint_status"],
        "tokenId": None if job["token_id"] is None else int(job["token_id"]),
        "mintTxHash": job["mint_tx_hash"],
        "error": error,
    }


class JobCache:
    """The latest status of recent jobs in Redis; finished jobs beyond the keep limits are dropped."""

    def __init__(self, redis: Redis, names: Keys, keep: dict[str, int], ttl_seconds: int = 86_400) -> None:
        self.redis = redis
        self.names = names
        self.keep = keep  # final status -> how many to keep
        self.ttl_seconds = ttl_seconds

    async def put(self, job: dict[str, Any]) -> None:
        body = job_json(job)
        key = self.names.render_job(body["jobId"])
        final = job["status"] if job["status"] in self.keep else None
        async with self.redis.pipeline(transaction=True) as pipe:
            # Jobs still running expire on their own should their renderer vanish.
            pipe.set(key, json.dumps(body), ex=None if final else self.ttl_seconds)
            if final:
                pipe.zadd(self.names.render_finished(final), {body["jobId"]: time.time()})
            await pipe.execute()
        if final:
            await self._trim(final)

    async def get(self, job_id: str) -> dict[str, Any] | None:
        raw = await self.redis.get(self.names.render_job(job_id))
        return None if raw is None else json.loads(raw)

    async def _trim(self, status: str) -> None:
        finished = self.names.render_finished(status)
        dropped: list[bytes] = await self.redis.zrange(finished, 0, -(self.keep[status] + 1))  # type: ignore[assignment]
        if dropped:
            ids = [i.decode() for i in dropped]
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.delete(*(self.names.render_job(i) for i in ids))
                pipe.zrem(finished, *ids)
                await pipe.execute()
