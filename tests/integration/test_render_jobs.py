"""Render job state against real Redis and PostgreSQL: the Redis cache keeps only the latest finished
jobs, and a job is leased to one renderer at a time until it is completed or failed."""

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from eth_account import Account
from redis.asyncio import Redis

from services.renderer import jobs
from shared import render_jobs
from shared.keys import Keys

SETTINGS = {"name": "Ring", "palette": "ocean", "shape": "ring", "seed": 1, "frameCount": 2, "size": 32}


@pytest.fixture
async def names(redis_client: Redis) -> AsyncIterator[Keys]:
    """A namespace of this test's own, emptied afterwards (the Redis server is shared by the session)."""
    names = Keys(f"t{uuid.uuid4().hex[:12]}")
    yield names
    stale = [key async for key in redis_client.scan_iter(match=names.pattern)]
    if stale:
        await redis_client.delete(*stale)


def job(status: str) -> dict[str, Any]:
    """A job as `render_jobs.load` returns it, with a fresh id."""
    return {
        "request_id": uuid.uuid4(),
        "status": status,
        "progress": 100 if status == "completed" else 33,
        "attempts": 1,
        "image_url": None,
        "image_cid": None,
        "metadata_url": None,
        "metadata_cid": None,
        "error": "boom" if status == "failed" else None,
        "mint_status": "pending",
        "token_id": None,
        "mint_tx_hash": None,
        "mint_error": None,
    }


async def members(redis: Redis, key: str) -> list[str]:
    """A sorted set's members, oldest first."""
    found: list[bytes] = await redis.zrange(key, 0, -1)  # type: ignore[assignment]
    return [member.decode() for member in found]


async def test_cache_keeps_the_latest_finished_jobs_per_state(redis_client: Redis, names: Keys) -> None:
    cache = render_jobs.JobCache(redis_client, names, {"completed": 3, "failed": 1}, ttl_seconds=600)
    completed = [job("completed") for _ in range(5)]
    failed = [job("failed") for _ in range(2)]
    for finished in (*completed, *failed):
        await cache.put(finished)
    ids = [str(j["request_id"]) for j in completed]
    failed_ids = [str(j["request_id"]) for j in failed]

    assert await members(redis_client, names.render_finished("completed")) == ids[2:]
    for dropped in ids[:2]:
        assert await redis_client.exists(names.render_job(dropped)) == 0
        assert await cache.get(dropped) is None
    for newest in ids[2:]:
        cached = await cache.get(newest)
        assert cached is not None and (cached["jobId"], cached["status"]) == (newest, "completed")
        assert await redis_client.ttl(names.render_job(newest)) == -1  # finished ones stay until trimmed
    # The failed jobs are kept (and trimmed) on their own.
    assert await members(redis_client, names.render_finished("failed")) == failed_ids[1:]
    assert await cache.get(failed_ids[0]) is None
    assert (await cache.get(failed_ids[1]) or {}).get("error") == "boom"

    running = job("active")
    await cache.put(running)
    running_key = names.render_job(str(running["request_id"]))
    assert 0 < await redis_client.ttl(running_key) <= 600
    assert (await cache.get(str(running["request_id"])) or {}).get("status") == "active"
    assert await redis_client.zcard(names.render_finished("completed")) == 3


async def insert_request(pool: asyncpg.Pool) -> str:
    """An NFT request waiting for its render, as intake stores it: `rendering` with a `waiting` job."""
    request_id = uuid.uuid4()
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO mint_requests (id, kind, payer_address, payment_type, payment_id, amount, status)"
            " VALUES ($1, 'nft', $2, 'custom', $3, 5000000, 'rendering')",
            request_id,
            Account.create().address,
            "0x" + os.urandom(32).hex(),
        )
        await conn.execute(
            "INSERT INTO render_jobs (request_id, settings) VALUES ($1, $2)", request_id, SETTINGS
        )
    return str(request_id)


async def history(pool: asyncpg.Pool, request_id: str) -> list[tuple[str, str | None]]:
    rows = await pool.fetch(
        "SELECT status, reason FROM mint_request_history WHERE request_id = $1::uuid ORDER BY id", request_id
    )
    return [(row["status"], row["reason"]) for row in rows]


async def test_a_job_is_leased_to_one_renderer_until_it_completes(pg_pool: asyncpg.Pool) -> None:
    job_id = await insert_request(pg_pool)

    first = await jobs.claim(pg_pool, job_id, "renderer-a", lease_seconds=0.5)
    assert first.job is not None and first.reason == ""
    assert (first.job["status"], first.job["attempts"], first.job["settings"]) == ("active", 1, SETTINGS)
    assert first.job["mint_status"] == "rendering"
    assert await jobs.claim(pg_pool, job_id, "renderer-b", lease_seconds=30) == jobs.Claim(None, "leased")

    await asyncio.sleep(0.6)  # renderer A's lease lapses
    taken_over = await jobs.claim(pg_pool, job_id, "renderer-b", lease_seconds=30)
    assert taken_over.job is not None and taken_over.job["attempts"] == 2
    assert await jobs.claim(pg_pool, job_id, "renderer-a", lease_seconds=30) == jobs.Claim(None, "leased")

    assert await jobs.complete(pg_pool, job_id, "ipfs://bafymetadata") is True
    assert await history(pg_pool, job_id) == [("rendering", None), ("rendered", None), ("pending", None)]
    request = await pg_pool.fetchrow("SELECT * FROM mint_requests WHERE id = $1::uuid", job_id)
    assert (request["status"], request["token_uri"]) == ("pending", "ipfs://bafymetadata")
    done = await render_jobs.load(pg_pool, job_id)
    assert done is not None and (done["status"], done["progress"]) == ("completed", 100)
    assert await jobs.claim(pg_pool, job_id, "renderer-a", lease_seconds=30) == jobs.Claim(None, "finished")
    assert await jobs.complete(pg_pool, job_id, "ipfs://other") is False


async def test_a_failed_job_fails_its_request(pg_pool: asyncpg.Pool) -> None:
    job_id = await insert_request(pg_pool)
    assert (await jobs.claim(pg_pool, job_id, "renderer-a", lease_seconds=30)).job is not None

    assert await jobs.fail(pg_pool, job_id, "out of memory") is True
    request = await pg_pool.fetchrow("SELECT * FROM mint_requests WHERE id = $1::uuid", job_id)
    assert (request["status"], request["error_message"]) == ("failed", "render failed: out of memory")
    assert request["processed_at"] is not None
    assert await history(pg_pool, job_id) == [("rendering", None), ("failed", "render failed: out of memory")]
    failed = await render_jobs.load(pg_pool, job_id)
    assert failed is not None and render_jobs.job_json(failed)["status"] == "failed"
    assert render_jobs.job_json(failed)["error"] == "out of memory"
    assert await jobs.claim(pg_pool, job_id, "renderer-b", lease_seconds=30) == jobs.Claim(None, "finished")
    assert await jobs.fail(pg_pool, job_id, "again") is False


async def test_claiming_an_unknown_job_says_missing(pg_pool: asyncpg.Pool) -> None:
    assert await jobs.claim(pg_pool, str(uuid.uuid4()), "renderer-a", lease_seconds=30) == jobs.Claim(
        None, "missing"
    )
