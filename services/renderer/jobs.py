"""Render job state changes: PostgreSQL is the record (render_jobs, one row per NFT request); reading a
job, its status JSON and the Redis cache of recent jobs live in shared/render_jobs.py, which intake
reads too.

A job is leased to one renderer at a time (`leased_by` / `lease_until`, renewed while it runs), so a
duplicate stream entry never runs a job twice at once, and a job whose renderer died is taken over
once its lease runs out.
"""

from dataclasses import dataclass
from typing import Any

import asyncpg

from shared.render_jobs import JOB_COLUMNS

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
