"""Posting pre-signed mints to intake from concurrent clients, and waiting for them to end."""

import asyncio
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp
import asyncpg

from tests.support.load import SignedMint


@dataclass
class Posted:
    ids: list[str]
    latencies: list[float]
    refused: dict[str, int]
    seconds: float


async def post_all(url: str, mints: Sequence[SignedMint], concurrency: int) -> Posted:
    """Every mint posted once by `concurrency` clients; a refusal is counted, not retried."""
    todo = list(reversed(mints))
    posted = Posted([], [], {}, 0)
    timeout = aiohttp.ClientTimeout(total=60)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:

        async def client() -> None:
            while todo:
                mint = todo.pop()
                headers = {"Idempotency-Key": mint.idempotency_key, **mint.request.get("headers", {})}
                started = time.perf_counter()
                try:
                    post = session.post(f"{url}/mint", json=mint.request["json"], headers=headers)
                    async with post as response:
                        body = await response.json(content_type=None)
                        status, error = response.status, body.get("error")
                except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                    status, error, body = None, type(exc).__name__, {}
                posted.latencies.append(time.perf_counter() - started)
                if status in (200, 202):
                    posted.ids.append(body["queueId"])
                else:
                    key = f"{status} {error}"
                    posted.refused[key] = posted.refused.get(key, 0) + 1

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        posted.seconds = time.perf_counter() - started
    return posted


async def wait_final(pool: asyncpg.Pool, ids: list[str], stalled_after: float = 120) -> None:
    """Until every request is completed or failed, or none has ended for `stalled_after` seconds."""
    last_open, last_change = None, time.monotonic()
    while True:
        open_count = await pool.fetchval(
            "SELECT count(*) FROM mint_requests WHERE id = ANY($1::uuid[])"
            " AND status NOT IN ('completed', 'failed')",
            ids,
        )
        if open_count != last_open:
            last_open, last_change = open_count, time.monotonic()
        print(f"\r  {open_count} not yet completed   ", end="", file=sys.stderr, flush=True)
        if open_count == 0 or time.monotonic() - last_change > stalled_after:
            print(file=sys.stderr)
            return
        await asyncio.sleep(0.5)
