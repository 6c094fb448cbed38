"""The loops intake runs beside its HTTP handlers (aiohttp's background-task cleanup_ctx pattern):
callback consumers, webhook delivery, stream replay, the stale-publish sweep, the throughput reader and
the queue-depth gauges.

With several workers (services/intake/workers.py) every worker runs the loops that are safe to share
or serve the worker itself: the callback consumers (consumers of one group, each entry goes to one of
them), webhook delivery (due rows are leased with SKIP LOCKED), the throughput reader (this worker's
wait estimates), the live watcher (this worker's open streams) and the stream gauges (each worker
exports its own reading). The stream replay and the stale-publish sweep would publish the same rows
once per worker, so only the worker given `singletons` runs them.
"""

import asyncio
import logging
import os
import socket
from collections.abc import AsyncIterator, Coroutine

from aiohttp import web

from services.intake.replay import replay_pending, republish_stale
from services.intake.resources import CALLBACKS, POOL, REDIS, SETTINGS, SINGLETONS, THROUGHPUT, WATCHER
from shared import keys, stream_metrics
from shared.replay import watch
from shared.streams import Consumer

log = logging.getLogger(__name__)


async def run_background(app: web.Application) -> AsyncIterator[None]:
    settings, pool, redis, callbacks = app[SETTINGS], app[POOL], app[REDIS], app[CALLBACKS]
    stop = asyncio.Event()
    consumer_name = f"{socket.gethostname()}-{os.getpid()}"

    def consumer(stream: str) -> Consumer:
        return Consumer(
            redis,
            settings.keys.stream(stream),
            keys.INTAKE,
            consumer_name,
            dead_stream=settings.keys.dead(stream),
        )

    async def replay() -> int:
        return await replay_pending(pool, redis, settings)

    loops: dict[str, Coroutine] = {
        "completed-consumer": consumer(keys.MINT_COMPLETED).consume_batches(callbacks.on_outcomes, stop),
        "failed-consumer": consumer(keys.MINT_FAILED).consume_batches(callbacks.on_outcomes, stop),
        "webhook-delivery": callbacks.deliver_due(stop),
        "throughput": app[THROUGHPUT].run(pool, stop, settings.throughput_refresh_seconds),
        "live-watcher": app[WATCHER].run(pool, stop),
        # Queue depth of every stream, read by intake only (see shared/stream_metrics.py).
        "stream-metrics": stream_metrics.run(redis, settings.keys, stop, settings.stream_metrics_seconds),
    }
    if app[SINGLETONS]:
        loops["replay"] = watch(redis, settings.keys.alive(keys.INTAKE), replay, stop)
        loops["republish-sweep"] = republish_stale(pool, redis, settings, stop)
    tasks = {asyncio.create_task(coro, name=f"intake-{name}") for name, coro in loops.items()}
    try:
        yield
    finally:
        stop.set()
        _, unfinished = await asyncio.wait(tasks, timeout=settings.shutdown_grace_seconds)
        for task in unfinished:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        log.info("intake background loops stopped (%d cancelled after the grace period)", len(unfinished))
