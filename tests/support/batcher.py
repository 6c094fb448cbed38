"""A batcher in the test process, and the metrics of a batcher process."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families


async def metric(process: Any, name: str) -> float:
    """The sum of the batcher's samples of `name`, which may name labels the samples must carry
    (`mintline_batcher_unsendable_total{reason="funds"}`; -1 while its metrics server is not up yet)."""
    url = f"http://127.0.0.1:{process.env['BATCHER_METRICS_PORT']}/metrics"
    try:
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            text = await response.text()
    except aiohttp.ClientConnectorError:
        return -1
    wanted, _, labels = name.partition("{")
    required = set(labels.rstrip("}").split(",")) - {""}
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            carried = {f'{key}="{value}"' for key, value in sample.labels.items()}
            if sample.name == wanted and required <= carried:
                total += sample.value
    return total


@contextlib.asynccontextmanager
async def in_process_batcher(pg_pool: Any, redis_client: Any, key: str | None = None) -> AsyncIterator[Any]:
    """A Batcher built in this process (settings from the environment; the wallet of `key`, else the
    first signer key), active for its wallet, with its nonce read: for steps a test drives one at a
    time (store without broadcasting, say)."""
    from services.batcher.settings import BatcherSettings
    from services.batcher.worker import Batcher
    from shared.jsonrpc import JsonRpc

    settings = BatcherSettings()
    async with aiohttp.ClientSession() as session:
        batcher = Batcher(settings, pg_pool, redis_client, JsonRpc(settings.chain_rpc_urls, session), key)
        assert await batcher.lock.acquire(asyncio.Event())
        try:
            await batcher.resync_nonce()
            yield batcher
        finally:
            await batcher.lock.release()
