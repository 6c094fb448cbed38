"""The renderer's worker in-process on real Redis and PostgreSQL: a job resumes from its last recorded
step, so an image pinned before a crash is never rendered or pinned again."""

import asyncio
import json
import uuid
from pathlib import Path

import asyncpg
import pytest
from redis.asyncio import Redis

from services.renderer.cid import cid_v1
from services.renderer.pinstore import LocalPinStore
from services.renderer.sandbox import Sandbox
from services.renderer.settings import RendererSettings
from services.renderer.worker import RenderWorker
from shared import keys
from shared.events import MintRequested, RenderRequested, decode
from shared.render_settings import RenderSettings
from shared.streams import publish

RENDER = {"name": "Resumed", "palette": "neon", "shape": "ring", "seed": 3, "frameCount": 4, "size": 32}


async def insert_job(pool: asyncpg.Pool, **job: object) -> str:
    request_id = uuid.uuid4()
    await pool.execute(
        "INSERT INTO mint_requests (id, kind, payer_address, payment_type, payment_id, amount, status)"
        " VALUES ($1, 'nft', $2, 'custom', $3, 5000000, 'rendering')",
        request_id,
        "0x" + "11" * 20,
        "0x" + uuid.uuid4().hex * 2,
    )
    columns = ["request_id", "settings", *job]
    await pool.execute(
        f"INSERT INTO render_jobs ({', '.join(columns)})"
        f" VALUES ({', '.join(f'${i}' for i in range(1, len(columns) + 1))})",
        request_id,
        RENDER,
        *job.values(),
    )
    return str(request_id)


async def run_until(worker: RenderWorker, done: asyncio.Future | asyncio.Task, timeout: float = 30) -> None:
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    try:
        await asyncio.wait_for(done, timeout)
    finally:
        stop.set()
        await asyncio.wait_for(running, 15)


async def wait_status(pool: asyncpg.Pool, job_id: str, status: str) -> None:
    while await pool.fetchval("SELECT status FROM render_jobs WHERE request_id = $1", job_id) != status:
        await asyncio.sleep(0.05)


async def test_a_job_whose_image_was_pinned_before_a_crash_only_pins_its_metadata(
    env: dict[str, str], pg_pool: asyncpg.Pool, redis_client: Redis, tmp_path: Path
) -> None:
    settings = RendererSettings()  # type: ignore[call-arg]
    store = LocalPinStore(tmp_path / "ipfs", "http://127.0.0.1:9103")
    earlier = await store.pin_file(b"GIF89a earlier render", "earlier.gif", "image/gif")
    # A renderer died after pinning the image: the job is active, leased to it, at 66 %.
    job_id = await insert_job(
        pg_pool,
        status="active",
        progress=66,
        attempts=1,
        image_cid=earlier.cid,
        image_url=earlier.url,
        leased_by="renderer-dead",
        lease_until=None,
    )
    await publish(
        redis_client, settings.keys.stream(keys.RENDER_REQUESTED), RenderRequested(request_id=job_id)
    )
    sandbox = Sandbox(1, 64 * 2**20)
    worker = RenderWorker(settings, pg_pool, redis_client, store, sandbox)
    try:
        await run_until(worker, asyncio.ensure_future(wait_status(pg_pool, job_id, "completed")))
    finally:
        sandbox.close()

    job = await pg_pool.fetchrow("SELECT * FROM render_jobs WHERE request_id = $1", job_id)
    assert (job["progress"], job["attempts"], job["image_cid"]) == (100, 2, earlier.cid)
    assert job["render_seconds"] is None  # never rendered again
    pins = await store.pins()
    assert [pin.cid for pin in pins] == [earlier.cid, job["metadata_cid"]]
    metadata, content_type = await store.read(job["metadata_cid"]) or (b"", "")
    assert content_type == "application/json"
    document = json.loads(metadata)
    assert document["image"] == f"ipfs://{earlier.cid}"
    assert document["name"] == RenderSettings.model_validate(RENDER).name
    request = await pg_pool.fetchrow(
        "SELECT status, token_uri, created_at FROM mint_requests WHERE id = $1", job_id
    )
    assert (request["status"], request["token_uri"]) == ("pending", f"ipfs://{job['metadata_cid']}")
    entries = await redis_client.xrange(settings.keys.stream(keys.MINT_REQUESTED))
    events = [decode(fields[b"event"]) for _, fields in entries]
    # Accepted when the request was (the batcher's ageing rule measures its wait from then).
    accepted_ms = int(request["created_at"].timestamp() * 1000)
    assert events == [
        MintRequested(
            event_id=events[0].event_id,
            created_ms=events[0].created_ms,
            request_id=job_id,
            kind="nft",
            accepted_ms=accepted_ms,
        )
    ]
    assert cid_v1(metadata) == job["metadata_cid"]


@pytest.mark.parametrize("status", ["completed", "failed"])
async def test_an_entry_for_a_finished_job_is_acked_and_changes_nothing(
    status: str, env: dict[str, str], pg_pool: asyncpg.Pool, redis_client: Redis, tmp_path: Path
) -> None:
    settings = RendererSettings()  # type: ignore[call-arg]
    store = LocalPinStore(tmp_path / "ipfs", "http://127.0.0.1:9103")
    job_id = await insert_job(
        pg_pool, status=status, progress=100 if status == "completed" else 33, attempts=1
    )
    stream = settings.keys.stream(keys.RENDER_REQUESTED)
    await publish(redis_client, stream, RenderRequested(request_id=job_id))
    sandbox = Sandbox(1, 64 * 2**20)
    worker = RenderWorker(settings, pg_pool, redis_client, store, sandbox)

    async def acked() -> None:
        while True:
            groups = await redis_client.xinfo_groups(stream)
            if groups and groups[0]["entries-read"] == 1 and groups[0]["pending"] == 0:
                return
            await asyncio.sleep(0.05)

    try:
        await run_until(worker, asyncio.ensure_future(acked()))
    finally:
        sandbox.close()
    job = await pg_pool.fetchrow("SELECT status, attempts FROM render_jobs WHERE request_id = $1", job_id)
    assert (job["status"], job["attempts"]) == (status, 1)
    assert await store.pins() == []
