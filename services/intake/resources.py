"""What the intake app holds (typed AppKeys) and the cleanup_ctx that opens and closes it: one asyncpg
pool, one redis client, one AsyncWeb3, one HTTP client session for webhooks."""

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import aiohttp
import asyncpg
from aiohttp import web
from redis.asyncio import Redis

from services.intake.callbacks import Callbacks, webhook_session
from services.intake.counts import StatusCounts
from services.intake.enqueue_batches import Enqueuer
from services.intake.onchain import ChainReader
from services.intake.payments import PaymentTerms
from services.intake.paywall import Paywall
from services.intake.ratelimit import TokenBuckets
from services.intake.settings import IntakeSettings
from services.intake.throughput import Throughput
from services.intake.watcher import Watcher
from shared.chain_checks import check_chain
from shared.db import create_pool
from shared.jsonrpc import JsonRpc
from shared.rpc_coalescer import Coalescer
from shared.streams import Publisher

SETTINGS = web.AppKey("settings", IntakeSettings)
# Whether this process runs the loops that must run once per service (services/intake/background.py).
SINGLETONS = web.AppKey("singletons", bool)
TERMS = web.AppKey("terms", PaymentTerms)
PAYWALL = web.AppKey("paywall", Paywall)
# The offer for POST /nft/render: same asset and treasury, the NFT's price.
NFT_PAYWALL = web.AppKey("nft_paywall", Paywall)
THROUGHPUT = web.AppKey("throughput", Throughput)
POOL = web.AppKey("pool", asyncpg.Pool)
# intake_enqueue calls of concurrent requests, run in one statement.
ENQUEUER = web.AppKey("enqueuer", Enqueuer)
REDIS = web.AppKey("redis", Redis)
# mint.requested and render.requested entries of concurrent requests, added in one pipeline.
PUBLISHER = web.AppKey("publisher", Publisher)
CHAIN = web.AppKey("chain", ChainReader)
CALLBACKS = web.AppKey("callbacks", Callbacks)
# The live status streams' one PostgreSQL poller.
WATCHER = web.AppKey("watcher", Watcher)
# The queue's counts per status, read at most once per INTAKE_QUEUE_COUNTS_SECONDS.
STATUS_COUNTS = web.AppKey("status_counts", StatusCounts)
# Token buckets per client address and per payer (services/intake/ratelimit.py).
CLIENT_LIMITS = web.AppKey("client_limits", TokenBuckets)
PAYER_LIMITS = web.AppKey("payer_limits", TokenBuckets)


async def open_resources(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    async with AsyncExitStack() as stack:
        # Intake's queries change no session state (its advisory locks are transaction locks), so a
        # released connection needs no reset query: a round trip saved on every query.
        pool = await create_pool(
            settings.database_url,
            min_size=settings.db_pool_min,
            max_size=settings.db_pool_max,
            transaction_pooling=settings.transaction_pooling,
            reset_sessions=False,
        )
        stack.push_async_callback(pool.close)
        # decode_responses=False: shared.streams works with bytes.
        redis = Redis.from_url(
            settings.redis_url, decode_responses=False, socket_timeout=5, socket_connect_timeout=3
        )
        stack.push_async_callback(redis.aclose)
        publisher = Publisher(redis, settings.stream_maxlen)
        stack.push_async_callback(publisher.close)
        rpc_session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=settings.rpc_connections),
            timeout=aiohttp.ClientTimeout(total=settings.rpc_timeout_seconds),
        )
        stack.push_async_callback(rpc_session.close)
        hosts = settings.callback_hosts()
        session = webhook_session(settings, hosts)
        stack.push_async_callback(session.close)

        app[POOL] = pool
        app[ENQUEUER] = Enqueuer(pool, settings.enqueue_coalesce_seconds, settings.enqueue_batch_max)
        # Closed before the pool it runs on.
        stack.push_async_callback(app[ENQUEUER].close)
        app[REDIS] = redis
        app[PUBLISHER] = publisher
        rpc = JsonRpc(settings.chain_rpc_urls, rpc_session, settings.rpc_max_batch)
        # A definite mismatch stops start-up (ChainMismatch); a node that is down only means 503s.
        await check_chain(rpc, settings.deployment)
        reads = Coalescer(rpc, settings.rpc_coalesce_seconds)
        # Closed before the session it sends through (the stack closes in reverse).
        stack.push_async_callback(reads.close)
        app[CHAIN] = ChainReader(reads, app[TERMS].usdc)
        app[CALLBACKS] = Callbacks(pool, session, settings, hosts)
        yield
