"""What the console holds open: its PostgreSQL pool, Redis, and an HTTP session for the gateway."""

from collections.abc import AsyncIterator

import aiohttp
import asyncpg
from aiohttp import web
from redis.asyncio import Redis

from admin.common import Admin
from admin.console.auth import Operator
from admin.console.middleware import OPERATOR, SETTINGS
from shared import db

POOL = web.AppKey("pool", asyncpg.Pool)
REDIS = web.AppKey("redis", Redis)
GATEWAY = web.AppKey("gateway", aiohttp.ClientSession)


async def open_resources(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    app[POOL] = await db.create_pool(
        settings.database_url,
        min_size=1,
        max_size=8,
        transaction_pooling=settings.transaction_pooling,
        wait_seconds=60,
    )
    app[REDIS] = Redis.from_url(settings.redis_url, socket_connect_timeout=5)
    app[GATEWAY] = aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=settings.gateway_timeout_seconds)
    )
    try:
        yield
    finally:
        await app[GATEWAY].close()
        await app[REDIS].aclose()
        await app[POOL].close()


def admin_for(request: web.Request) -> Admin:
    """The admin functions' handle, acting as this request's operator (what the audit records)."""
    app = request.app
    operator: Operator = request[OPERATOR]
    return Admin(
        app[SETTINGS], app[POOL], app[REDIS], actor=operator.name, source="console", client=request.remote
    )
