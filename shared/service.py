"""Start-up shared by the worker services: logging, signals, and the connections every worker uses."""

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import asyncpg
from redis.asyncio import Redis

from shared import db
from shared.chain_checks import ChainMismatch, check_chain
from shared.jsonrpc import JsonRpc
from shared.settings import Settings

log = logging.getLogger(__name__)


# How long a worker starting while PostgreSQL is away (a restart) waits for it before exiting.
START_WAIT_SECONDS = 60.0


@dataclass
class Resources:
    pool: asyncpg.Pool
    redis: Redis
    # JSON-RPC to the chain's endpoints (RPC_URLS): retries, Retry-After, failover.
    rpc: JsonRpc


async def database_reachable(pool: asyncpg.Pool) -> bool:
    try:
        return await pool.fetchval("SELECT 1") == 1
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return False


@contextlib.asynccontextmanager
async def resources(
    settings: Settings, pool_size: int = 10, minters: Sequence[str] = ()
) -> AsyncIterator[Resources]:
    """The connections a worker uses, once the chain is checked against the deployment
    (shared/chain_checks.py; every wallet in `minters` must hold the mint contracts' MINTER_ROLE)."""
    pool = await db.create_pool(
        settings.database_url,
        max_size=pool_size,
        transaction_pooling=settings.transaction_pooling,
        wait_seconds=START_WAIT_SECONDS,
    )
    redis = Redis.from_url(settings.redis_url)
    rpc_session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
    try:
        rpc = JsonRpc(settings.chain_rpc_urls, rpc_session, settings.rpc_max_batch)
        await check_chain(rpc, settings.deployment, minters)
        yield Resources(pool, redis, rpc)
    finally:
        await rpc_session.close()
        await redis.aclose()
        await pool.close()


def run(main: Callable[[asyncio.Event], Coroutine[Any, Any, None]], grace_seconds: float = 10.0) -> None:
    """Run `main(stop)` until SIGINT/SIGTERM; signals only set the stop event."""

    async def _runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        task = asyncio.create_task(main(stop))
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            try:
                await asyncio.wait_for(task, timeout=grace_seconds)
            except TimeoutError:
                log.warning("did not stop within %.0f s; cancelled", grace_seconds)
        stopper.cancel()
        task.result()

    try:
        asyncio.run(_runner())
    except* ChainMismatch as mismatches:
        # At start-up, or later (a node refusing the deployment's chain id): raised from a task group too.
        mismatch: BaseException = mismatches
        while isinstance(mismatch, BaseExceptionGroup):  # task groups inside task groups nest them
            mismatch = mismatch.exceptions[0]
        log.error("%s: %s", getattr(mismatch, "outcome", "stopping"), mismatch)
        raise SystemExit(2) from None
