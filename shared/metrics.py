"""A small HTTP server for the keyless-port services: /metrics for Prometheus and /health."""

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

HEALTH_TIMEOUT = 2.0


def metrics_response() -> web.Response:
    body = generate_latest(REGISTRY)
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
