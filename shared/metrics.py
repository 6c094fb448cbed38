"""Metrics as Prometheus reads them, and a small HTTP server for the keyless-port services: /metrics
and /health.

A service run as several processes (intake's workers) is one set of figures: with
PROMETHEUS_MULTIPROC_DIR set, prometheus_client keeps every process's counters, histograms and gauges
in files there, and a scrape of any process adds them up (MultiProcessCollector). Collectors
registered with `register_local` hold values about shared state (Redis streams) that each process
reads for itself; they are exported from the process that answers, once, never from the files.
"""

import asyncio
import os
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

HEALTH_TIMEOUT = 2.0
MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"

_local: list[Collector] = []
_combined: CollectorRegistry | None = None


def register_local(collector: Collector) -> None:
    """Export `collector` from this process (its own reading), in either mode."""
    REGISTRY.register(collector)
    _local.append(collector)


def registry() -> CollectorRegistry:
    """What a scrape exports: this process's registry, or with PROMETHEUS_MULTIPROC_DIR every
    process's files plus this process's local collectors."""
    global _combined
    path = os.environ.get(MULTIPROC_DIR)
    if not path:
        return REGISTRY
    if _combined is None:
        combined = CollectorRegistry()
        MultiProcessCollector(combined, path)
        for collector in _local:
            combined.register(collector)
        _combined = combined
    return _combined


def metrics_response() -> web.Response:
    body = generate_latest(registry())
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def serve(
    host: str,
    port: int,
    health: Callable[[], Awaitable[dict]],
    routes: Sequence[web.RouteDef] = (),
) -> web.AppRunner:
    """Start serving; `health` returns {check: ok?}; `routes` are served beside them (the renderer's
    IPFS gateway). Close with `await runner.cleanup()`."""

    async def metrics(_: web.Request) -> web.Response:
        return metrics_response()

    async def healthz(_: web.Request) -> web.Response:
        try:
            checks = await asyncio.wait_for(health(), HEALTH_TIMEOUT)
        except Exception:
            checks = {"responding": False}
        ok = all(checks.values())
        return web.json_response({"ok": ok, "checks": checks}, status=200 if ok else 503)

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/health", healthz)
    app.router.add_routes(routes)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
