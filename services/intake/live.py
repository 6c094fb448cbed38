"""The live status page (GET /) and its Server-Sent Event streams.

GET /events/item/{queueId} sends event `item` with the request's state at once, then on every change,
and ends after a final state (completed, failed). GET /events/queue sends event `queue` (counts,
depth, throughput, recent batches) at once and on every change. The data comes from the shared
`Watcher`; a stream itself never queries PostgreSQL after its first event. Idle streams get a
`: ping` comment so proxies keep them open; at shutdown every stream ends (on_shutdown), so stopping
the server never waits for open pages.
"""

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from services.intake.errors import ApiError
from services.intake.limits import limited_client
from services.intake.resources import POOL, SETTINGS, WATCHER
from services.intake.views import queue_id
from services.intake.watcher import FINAL, Subscription

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).with_name("static")
# How long a browser waits before reconnecting a dropped stream.
RETRY_MILLISECONDS = 3000
SSE_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    # nginx and similar proxies would otherwise buffer the stream.
    "X-Accel-Buffering": "no",
}


async def status_page(_: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


# The page's own files, listed once. (aiohttp's add_static answers a missing file with an empty
# application/octet-stream 404 decided after the middlewares ran, not with a JSON error.)
STATIC_FILES = frozenset(path.name for path in STATIC_DIR.iterdir() if path.is_file())


async def static_file(request: web.Request) -> web.FileResponse:
    name = request.match_info["filename"]
    if name not in STATIC_FILES:
        raise ApiError("not_found", f"no static file {name[:100]!r}", 404)
    return web.FileResponse(STATIC_DIR / name)


async def item_events(request: web.Request) -> web.StreamResponse:
    request_id = queue_id(request)
    watcher = request.app[WATCHER]
    with watcher.admit(limited_client(request)), watcher.watch_item(request_id) as subscription:
        # Watched before the first read: a change after it reaches the subscription.
        first = await watcher.item_state(request.app[POOL], request_id)
        if first is None:
            raise ApiError("not_found", f"no queue item {request_id}", 404)
        return await _stream(request, "item", first, subscription, lambda state: state["status"] in FINAL)


async def queue_events(request: web.Request) -> web.StreamResponse:
    watcher = request.app[WATCHER]
    with watcher.admit(limited_client(request)), watcher.watch_queue() as subscription:
        first = await watcher.queue_state(request.app[POOL])
        return await _stream(request, "queue", first, subscription, lambda _: False)


async def _stream(
    request: web.Request,
    event: str,
    first: dict[str, Any],
    subscription: Subscription,
    final: Callable[[dict[str, Any]], bool],
) -> web.StreamResponse:
    """Sends `first`, then every new state, until a final one, the client leaves or the app stops."""
    watcher = request.app[WATCHER]
    settings = request.app[SETTINGS]
    response = web.StreamResponse(headers=SSE_HEADERS)
    sent = first
    try:
        await response.prepare(request)
        await response.write(f"retry: {RETRY_MILLISECONDS}\n\n".encode() + _event(event, first))
        written_at = time.monotonic()
        while not final(sent) and not watcher.closing.is_set():
            # Wakes at least once per poll interval to notice a client that left.
            state = await subscription.next(settings.live_poll_seconds)
            transport = request.transport
            if transport is None or transport.is_closing():
                break
            if state is not None and state != sent:
                await response.write(_event(event, state))
                sent = state
                written_at = time.monotonic()
            elif time.monotonic() - written_at >= settings.live_keepalive_seconds:
                await response.write(b": ping\n\n")
                written_at = time.monotonic()
    except ConnectionResetError:
        # The client left mid-write: the usual way a stream ends, not an error.
        log.debug("client left the %s stream %s", event, request.path)
    return response


def _event(name: str, data: dict[str, Any]) -> bytes:
    # json.dumps writes one line, so one `data:` field holds it.
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


async def close_streams(app: web.Application) -> None:
    """on_shutdown: ends every open stream before aiohttp waits for its handlers."""
    app[WATCHER].close()
