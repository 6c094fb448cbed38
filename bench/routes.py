"""One round of bench/growth.py against one intake: POST /mint from fresh payers at a concurrency and
from the whale one at a time, then every status route in a row, with the round's requests queued."""

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import aiohttp


@dataclass
class Round:
    url: str
    concurrency: int
    samples: int
    bodies: list[dict[str, Any]]
    whale_bodies: list[dict[str, Any]]
    # Routes to time beside the standard ones: label -> path.
    targets: dict[str, str]


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


async def post(session: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> tuple[float, str]:
    started = time.perf_counter()
    async with session.post(url, json=body) as response:
        answer = await response.json()
    elapsed = time.perf_counter() - started
    if response.status != 202:
        raise SystemExit(f"POST {url} answered {response.status}: {answer}")
    return elapsed, answer.get("queueId") or answer["jobId"]


async def get(session: aiohttp.ClientSession, url: str) -> float:
    started = time.perf_counter()
    async with session.get(url) as response:
        await response.read()
    if response.status != 200:
        raise SystemExit(f"GET {url} answered {response.status}")
    return time.perf_counter() - started


async def first_event(session: aiohttp.ClientSession, url: str) -> float:
    """Seconds until a live stream's first event has arrived; the stream is closed then."""
    started = time.perf_counter()
    async with session.get(url) as response:
        async for line in response.content:
            if line.startswith(b"data:"):
                break
    return time.perf_counter() - started


async def measure(session: aiohttp.ClientSession, plan: Round) -> tuple[dict[str, list[float]], list[str]]:
    """Seconds per call of each route, and the ids of the requests the round queued."""
    figures: dict[str, list[float]] = {}
    semaphore = asyncio.Semaphore(plan.concurrency)

    async def limited(body: dict[str, Any]) -> tuple[float, str]:
        async with semaphore:
            return await post(session, f"{plan.url}/mint", body)

    posted = await asyncio.gather(*(limited(body) for body in plan.bodies))
    figures[f"POST /mint, fresh payers, {plan.concurrency} at once"] = [elapsed for elapsed, _ in posted]
    whale_posted = [await post(session, f"{plan.url}/mint", body) for body in plan.whale_bodies]
    figures["POST /mint, the whale, one at a time"] = [elapsed for elapsed, _ in whale_posted]
    ids = [queue_id for _, queue_id in posted + whale_posted]
    middle = ids[len(ids) // 2]
    paths = {
        "GET /queue/status": "/queue/status",
        "GET /queue/item, queued": f"/queue/item/{middle}",
        "GET /queue/payer, fresh payer": f"/queue/payer/{plan.bodies[0]['authorization']['from']}",
        "GET /queue/payer, the whale": f"/queue/payer/{plan.whale_bodies[0]['authorization']['from']}",
        **plan.targets,
    }
    for label, path in paths.items():
        figures[label] = [await get(session, f"{plan.url}{path}") for _ in range(plan.samples)]
    streams = {
        "GET /events/item, first event": f"/events/item/{middle}",
        "GET /events/queue, first event": "/events/queue",
    }
    for label, path in streams.items():
        figures[label] = [await first_event(session, f"{plan.url}{path}") for _ in range(plan.samples // 4)]
    return figures, ids
