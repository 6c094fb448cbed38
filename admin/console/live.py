"""GET /events/overview: the overview as Server-Sent Events, event `overview` at once and whenever it
changes (read every CONSOLE_LIVE_SECONDS), with a `: ping` comment while nothing does, and event
`unavailable` while PostgreSQL does not answer. The page
re-reads the list it shows on each event, so a request that fails appears without a reload."""

import asyncio
import json
import logging
from typing import Any

import asyncpg
from aiohttp import web

from admin.console.middleware import SETTINGS, ApiError
from admin.console.resources import admin_for
from admin.console.views import collect_overview, overview_json

log = logging.getLogger(__name__)


class OpenStreams:
    count = 0


OPEN_STREAMS = web.AppKey("open_streams", OpenStreams)
CLOSING = web.AppKey("closing", asyncio.Event)
RETRY_MILLISECONDS = 3000
SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def setup(app: web.Application) -> None:
    app[OPEN_STREAMS] = OpenStreams()
    app[CLOSING] = asyncio.Event()

    async def close_streams(app: web.Application) -> None:
        app[CLOSING].set()

    # Before aiohttp waits for open handlers: the streams end instead of holding shutdown up.
    app.on_shutdown.append(close_streams)


def _event(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _unchanged(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return {k: v for k, v in a.items() if k != "at"} == {k: v for k, v in b.items() if k != "at"}


async def overview_events(request: web.Request) -> web.StreamResponse:
    app, settings = request.app, request.app[SETTINGS]
    streams = app[OPEN_STREAMS]
    if streams.count >= settings.max_live_streams:
        raise ApiError("too_many_streams", "too many live streams open; retry shortly", 503)
    admin = admin_for(request)
    first = overview_json(await collect_overview(admin))
    response = web.StreamResponse(headers=SSE_HEADERS)
    streams.count += 1
    try:
        await response.prepare(request)
        await response.write(f"retry: {RETRY_MILLISECONDS}\n\n".encode() + _event("overview", first))
        sent, quiet = first, 0.0
        while not app[CLOSING].is_set():
            try:
                await asyncio.wait_for(app[CLOSING].wait(), settings.live_seconds)
                break
            except TimeoutError:
                pass
            transport = request.transport
            if transport is None or transport.is_closing():
                break
            try:
                state = overview_json(await collect_overview(admin))
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                # PostgreSQL away (a restart): say so and keep the stream; the next read may work.
                log.warning("overview read failed: %s", type(exc).__name__)
                await response.write(_event("unavailable", {"message": f"PostgreSQL: {type(exc).__name__}"}))
                sent, quiet = {}, 0.0
                continue
            if not _unchanged(state, sent):
                await response.write(_event("overview", state))
                sent, quiet = state, 0.0
            else:
                quiet += settings.live_seconds
                if quiet >= settings.keepalive_seconds:
                    await response.write(b": ping\n\n")
                    quiet = 0.0
    except ConnectionResetError:
        log.debug("client left the overview stream")
    finally:
        streams.count -= 1
    return response
