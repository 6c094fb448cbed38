"""The renderer loop: read render.requested, render each job's GIF in a sandboxed process, pin the GIF
and then its metadata, and queue the NFT mint.

Each step of an attempt is recorded in render_jobs before the next one starts, so a retried or
reclaimed job resumes instead of repeating: render (33 %) → pin the image (66 %, its CID kept) → pin
the metadata (its CID kept) → in one transaction, complete the job (100 %) and move the request to
`pending` with its tokenURI → publish mint.requested → ack. One pin set and one mint per job, even
when a renderer is killed mid-job.
"""

import asyncio
import logging
import os
import socket
from typing import Any

import asyncpg
from pydantic import ValidationError
from redis.asyncio import Redis

from services.renderer import jobs, metrics
from services.renderer.metadata import nft_metadata
from services.renderer.pinning import Pinner
from services.renderer.sandbox import Sandbox
from services.renderer.settings import RendererSettings
from shared import keys, logs, render_jobs
from shared.backoff import exponential_backoff
from shared.events import MintFailed, MintRequested, RenderRequested
from shared.loops import every, pause
from shared.render_jobs import JobCache
from shared.render_settings import RenderSettings
from shared.streams import Consumer, Message, publish

log = logging.getLogger(__name__)

# Entries are dead-lettered by the job's attempt count in PostgreSQL, not by how often the stream
# delivered them (a duplicate entry waits, redelivered, while another renderer holds the job).
MAX_DELIVERIES = 1000
# How often the open-jobs gauge is read from PostgreSQL.
OPEN_JOBS_REFRESH_SECONDS = 5.0


class RenderWorker:
    def __init__(
        self, settings: RendererSettings, pool: asyncpg.Pool, redis: Redis, pinner: Pinner, sandbox: Sandbox
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.redis = redis
        self.pinner = pinner
        self.sandbox = sandbox
        self.name = f"renderer-{socket.gethostname()}-{os.getpid()}"
        names = settings.keys
        self.requests = Consumer(
            redis,
            names.stream(keys.RENDER_REQUESTED),
            keys.RENDERER,
            self.name,
            dead_stream=names.dead(keys.RENDER_REQUESTED),
            claim_idle_ms=int(settings.lease_seconds * 1000),
            max_deliveries=MAX_DELIVERIES,
        )
        self.mint_stream = names.stream(keys.MINT_REQUESTED)
        self.failed_stream = names.stream(keys.MINT_FAILED)
        self.cache = JobCache(
            redis, names, {"completed": settings.keep_completed, "failed": settings.keep_failed}
        )
        self.slots = asyncio.Semaphore(settings.concurrency)
        self.working: dict[str, Message] = {}  # job id -> its stream entry, while this renderer has it
        self.tasks: set[asyncio.Task] = set()

    async def run(self, stop: asyncio.Event) -> None:
        await self.requests.start()
        heartbeat = asyncio.create_task(self._heartbeat_loop(stop))
        counts = asyncio.create_task(
            every(OPEN_JOBS_REFRESH_SECONDS, stop, self._count_open_jobs, "counting render jobs")
        )
        try:
            await self._read_loop(stop)
        finally:
            if self.tasks:
                _, unfinished = await asyncio.wait(self.tasks, timeout=self.settings.shutdown_grace_seconds)
                for task in unfinished:
                    task.cancel()
                await asyncio.gather(*self.tasks, return_exceptions=True)
            heartbeat.cancel()
            counts.cancel()
            await asyncio.gather(heartbeat, counts, return_exceptions=True)

    async def _read_loop(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        backlog = await self.requests.read(100, own_pending=True)
        next_claim = 0.0
        while not stop.is_set():
            try:
                if loop.time() >= next_claim:
                    backlog += await self.requests.claim_stale(20)
                    next_claim = loop.time() + self.settings.lease_seconds / 2
                # Take a little more than can run at once, so a slot never waits on Redis.
                room = 2 * self.settings.concurrency - len(self.tasks)
                if room <= 0:
                    await asyncio.wait(self.tasks, timeout=0.5, return_when=asyncio.FIRST_COMPLETED)
                    continue
                messages, backlog = backlog[:room], backlog[room:]
                if not messages:
                    messages = await self.requests.read(room)
                for message in messages:
                    task = asyncio.create_task(self._handle(message, stop))
                    self.tasks.add(task)
                    task.add_done_callback(self.tasks.discard)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("renderer read loop failed; going on")
                await pause(stop, 1.0)

    async def _heartbeat_loop(self, stop: asyncio.Event) -> None:
        """Renew the leases (and the stream entries' idle time) of every job this renderer holds."""
        while not await pause(stop, self.settings.lease_seconds / 3):
            try:
                await jobs.renew(self.pool, list(self.working), self.name, self.settings.lease_seconds)
                await self.requests.touch([message.id for message in self.working.values()])
            except Exception:
                log.exception("renewing render leases failed; going on")

    async def _count_open_jobs(self) -> None:
        counts = await jobs.open_counts(self.pool)
        for state in metrics.OPEN_STATES:
            metrics.JOBS_OPEN.labels(state).set(counts.get(state, 0))

    async def _handle(self, message: Message, stop: asyncio.Event) -> None:
        event = message.event
        if not isinstance(event, RenderRequested):
            await self.requests.reject(message, f"unexpected {event.type} on render.requested")
            return
        job_id = event.request_id
        if job_id in self.working:
            await self.requests.ack([message.id])  # a duplicate of a job already running here
            return
        self.working[job_id] = message
        try:
            with logs.bind(job_id=job_id, queue_id=job_id):
                await self._run_job(job_id, message, stop)
        except Exception:
            # Left pending: the entry is reclaimed once the lease lapses.
            log.exception("render job %s: unexpected failure; it will be taken up again", job_id)
        finally:
            self.working.pop(job_id, None)

    async def _run_job(self, job_id: str, message: Message, stop: asyncio.Event) -> None:
        """Attempts until the job completes, or fails for good after max_attempts."""
        settings = self.settings
        while True:
            async with self.slots:
                claim = await jobs.claim(self.pool, job_id, self.name, settings.lease_seconds)
                job = claim.job
                if job is None:
                    if claim.reason == "finished":
                        await self.requests.ack([message.id])
                    elif claim.reason == "missing":
                        await self.requests.reject(message, f"no render job {job_id}")
                    return  # "leased": another renderer holds it; the entry waits
                if job["attempts"] > settings.max_attempts:
                    # Earlier renderers died during every attempt (the job may be what kills them).
                    error = job["error"] or "the renderer stopped during every attempt"
                    await self._fail(job_id, message, error, job["attempts"] - 1)
                    return
                await self.cache.put(job)
                metrics.JOBS_ACTIVE.inc()
                try:
                    await self._attempt(job)
                    await asyncio.shield(self.requests.ack([message.id]))
                    return
                except Exception as exc:
                    error = _describe(exc)
                finally:
                    metrics.JOBS_ACTIVE.dec()
            metrics.ATTEMPTS_FAILED.inc()
            attempts = job["attempts"]
            log.warning(
                "render job %s attempt %d/%d failed: %s", job_id, attempts, settings.max_attempts, error
            )
            if attempts >= settings.max_attempts:
                await self._fail(job_id, message, error, attempts)
                return
            await jobs.record_error(self.pool, job_id, error)
            await self._cache(job_id)
            delay = exponential_backoff(
                attempts, settings.retry_base_seconds, settings.retry_max_seconds, jitter=False
            )
            if await pause(stop, delay):
                return  # shutting down: the lease lapses and another renderer resumes the job

    async def _attempt(self, job: dict[str, Any]) -> None:
        job_id = str(job["request_id"])
        render = RenderSettings.model_validate(job["settings"])
        if job["image_cid"] is None:
            result = await self.sandbox.render(render)
            metrics.RENDER_DURATION.observe(result.seconds)
            metrics.RENDER_PEAK_MEMORY.observe(result.peak_rss_bytes)
            await jobs.progress(
                self.pool,
                job_id,
                33,
                render_seconds=result.seconds,
                peak_rss_bytes=result.peak_rss_bytes,
            )
            await self._cache(job_id)
            image = await self.pinner.pin_file(result.gif, f"{job_id}.gif", "image/gif")
            metrics.PINS.labels("image").inc()
            await jobs.progress(self.pool, job_id, 66, image_cid=image.cid, image_url=image.url)
            await self._cache(job_id)
            job["image_cid"] = image.cid
            log.info(
                "render job %s: %d frames in %.2f s (peak %.0f MiB), image %s",
                job_id,
                render.frames,
                result.seconds,
                result.peak_rss_bytes / 2**20,
                image.cid,
            )
        if job["metadata_cid"] is None:
            document = nft_metadata(render, job["image_cid"])
            pinned = await self.pinner.pin_json(document, f"{job_id}.json")
            metrics.PINS.labels("metadata").inc()
            await jobs.progress(self.pool, job_id, 66, metadata_cid=pinned.cid, metadata_url=pinned.url)
            job["metadata_cid"] = pinned.cid
        token_uri = f"ipfs://{job['metadata_cid']}"
        if await jobs.complete(self.pool, job_id, token_uri):
            metrics.JOBS_FINISHED.labels("completed").inc()
            log.info("render job %s completed: tokenURI %s, mint queued", job_id, token_uri)
            await self._cache(job_id)
            event = MintRequested.of_row(job)
            try:
                await publish(self.redis, self.mint_stream, event, self.settings.stream_maxlen)
            except Exception as exc:
                # Committed is what counts: intake's sweep republishes pending requests.
                log.warning("publishing mint.requested for %s failed (%s); it will be replayed", job_id, exc)

    async def _fail(self, job_id: str, message: Message, error: str, attempts: int) -> None:
        if await jobs.fail(self.pool, job_id, error):
            metrics.JOBS_FINISHED.labels("failed").inc()
            log.error("render job %s failed after %d attempts: %s", job_id, attempts, error)
            await self._cache(job_id)
            await publish(
                self.redis,
                self.failed_stream,
                MintFailed(request_id=job_id, reason=f"render failed: {error}"),
                self.settings.stream_maxlen,
            )
        await self.requests.reject(message, f"render failed after {attempts} attempts: {error}")

    async def _cache(self, job_id: str) -> None:
        job = await render_jobs.load(self.pool, job_id)
        if job is not None:
            await self.cache.put(job)


def _describe(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return f"invalid render settings: {exc.errors(include_url=False)[0]['msg']}"
    text = str(exc) or type(exc).__name__
    return text[:500]
