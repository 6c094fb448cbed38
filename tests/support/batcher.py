"""A batcher in the test process, and the metrics of a batcher process."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp


async def metric(process: Any, name: str) -> float:
    """The sum of the batcher's samples of `name` (-1 while its metrics server is not up yet)."""
    url = f"http://127.0.0.1:{process.env['BATCHER_METRICS_PORT']}/metrics"
    try:
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            text = await response.text()
    except aiohttp.ClientConnectorError:
        return -1
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name))


@contextlib.asynccontextmanager
async def in_process_batcher(pg_pool: Any, redis_client: Any) -> AsyncIterator[Any]:
    """A Batcher built in this process (settings from the environment), active for its wallet, with
    its nonce read: for steps a test drives one at a time (store without broadcasting, say)."""
    from services.batcher.settings import BatcherSettings
    from services.batcher.worker import Batcher
    from shared.jsonrpc import JsonRpc

    settings = BatcherSettings()
    async with aiohttp.ClientSession() as session:
        batcher = Batcher(settings, pg_pool, redis_client, JsonRpc(settings.chain_rpc_urls, session))
        assert await batcher.lock.acquire(asyncio.Event())
        try:
            await batcher.resync_nonce()
            yield batcher
        finally:
            await batcher.lock.release()
