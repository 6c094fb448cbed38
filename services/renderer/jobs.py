"""Render job state: PostgreSQL is the record (render_jobs, one row per NFT request), Redis keeps the
latest status of recent jobs for fast reads (the last `keep_completed` completed and `keep_failed`
failed ones).

A job is leased to one renderer at a time (`leased_by` / `lease_until`, renewed while it runs), so a
duplicate stream entry never runs a job twice at once, and a job whose renderer died is taken over
once its lease runs out.
"""

import json
import time
from dataclasses import dataclass
from typing import Any

import asyncpg
from redis.asyncio import Redis

from shared.keys import Keys

JOB_COLUMNS = """
j.request_id, j.settings, j.status, j.progress, j.attempts, j.image_cid, j.image_url, j.metadata_cid,
j.metadata_url, j.error, m.payer_address, m.valid_before, m.status AS mint_status, m.token_id, m.mint_tx_hash,
m.error_message AS mint_error
"""
CLAIM = f"""
WITH claimed AS (
    UPDATE render_jobs SET status = 'active', attempts = attempts + 1, leased_by = $2,
        lease_until = now() + make_interval(secs => $3), started_at = coalesce(started_at, now()),
        updated_at = now()
    WHERE request_id = $1 AND status IN ('waiting', 'active')
      AND (lease_until IS NULL OR lease_until < now() OR leased_by = $2)
    RETURNING *
)
SELECT {JOB_COLUMNS} FROM claimed j JOIN mint_requests m ON m.id = j.request_id
"""
STATE = "SELECT status, leased_by FROM render_jobs WHERE request_id = $1"
RENEW = """
UPDATE render_jobs SET lease_until = now() + make_interval(secs => $3)
WHERE request_id = ANY($1::uuid[]) AND leased_by = $2 AND status = 'active'
"""

# Served by the partial index on open jobs, so it stays cheap however many jobs finished.
OPEN_COUNTS = "SELECT status, count(*) FROM render_jobs WHERE status IN ('waiting', 'active') GROUP BY status"


@dataclass(frozen=True)
class Claim:
    """What a renderer needs to know about a job it was given (or why it was not)."""

    job: dict[str, Any] | None
    # Why there is no job: "finished" (completed or failed: ack the entry), "leased" (another
    # renderer holds it: leave the entry for later) or "missing" (no such job: dead-letter).
    reason: str = ""


async def claim(pool: asyncpg.Pool, job_id: str, renderer: str, lease_seconds: float) -> Claim:
    """Start an attempt: the job becomes `active`, leased to `renderer`, with one more attempt."""
    async with pool.acquire() as conn:
        row = await conn.fetchrow(CLAIM, job_id, renderer, lease_seconds)
        if row is not None:
            return Claim(dict(row))
        state = await conn.fetchrow(STATE, job_id)
    if state is None:
        return Claim(None, "missing")
    return Claim(None, "finished" if state["status"] in ("completed", "failed") else "leased")


async def open_counts(pool: asyncpg.Pool) -> dict[str, int]:
    """How many jobs wait and how many run, over every renderer."""
    return {row["status"]: row["count"] for row in await pool.fetch(OPEN_COUNTS)}


async def renew(pool: asyncpg.Pool, job_ids: list[str], renderer: str, lease_seconds: float) -> None:
    if job_ids:
        await pool.execute(RENEW, job_ids, renderer, lease_seconds)


async def progress(pool: asyncpg.Pool, job_id: str, percent: int, **recorded: Any) -> None:
    """Record a step: 33 once rendered, 66 once the image is pinned (with its CID and URL)."""
    columns = ", ".join(f"{name} = ${i}" for i, name in enumerate(recorded, start=3))
    await pool.execute(
        f"UPDATE render_jobs SET progress = greatest(progress, $2), updated_at = now()"
        f"{', ' + columns if columns else ''} WHERE request_id = $1",
        job_id,
        percent,
        *recorded.values(),
    )


async def complete(pool: asyncpg.Pool, job_id: str, token_uri: str) -> bool:
    """Metadata pinned: the job is done and its request moves rendering → rendered → pending (both
    recorded in the history) with its tokenURI, in one transaction. False if it was done already."""
    async with pool.acquire() as conn, conn.transaction():
        done = await conn.fetchval(
            "UPDATE render_jobs SET status = 'completed', progress = 100, error = NULL,"
            " lease_until = NULL, finished_at = now(), updated_at = now()"
            " WHERE request_id = $1 AND status = 'active' RETURNING true",
            job_id,
        )
        if not done:
            return False
        await conn.execute(
            "UPDATE mint_requests SET status = 'rendered', token_uri = $2, updated_at = now()"
            " WHERE id = $1 AND status = 'rendering'",
            job_id,
            token_uri,
        )
        await conn.execute(
            "UPDATE mint_requests SET status = 'pending', published_at = now(), updated_at = now()"
            " WHERE id = $1 AND status = 'rendered'",
            job_id,
        )
    return True


async def record_error(pool: asyncpg.Pool, job_id: str, error: str) -> None:
    """An attempt failed and another will follow: keep the error for the status API."""
    await pool.execute(
        "UPDATE render_jobs SET error = $2, updated_at = now() WHERE request_id = $1 AND status = 'active'",
        job_id,
        error,
    )


async def fail(pool: asyncpg.Pool, job_id: str, error: str) -> bool:
    """The last attempt failed: the job and its request end `failed` with the error."""
    async with pool.acquire() as conn, conn.transaction():
        done = await conn.fetchval(
            "UPDATE render_jobs SET status = 'failed', error = $2, lease_until = NULL,"
            " finished_at = now(), updated_at = now()"
            " WHERE request_id = $1 AND status IN ('waiting', 'active') RETURNING true",
            job_id,
            error,
        )
        if done:
            await conn.execute(
                "UPDATE mint_requests SET status = 'failed', error_message = $2, processed_at = now(),"
                " updated_at = now() WHERE id = $1 AND status = 'rendering'",
                job_id,
                f"render failed: {error}",
            )
    return bool(done)


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
