"""The intake aiohttp application."""

from aiohttp import web

from services.intake import live, openapi
from services.intake.background import run_background
from services.intake.counts import StatusCounts
from services.intake.middleware import count_requests, json_errors, limit_clients, request_ids
from services.intake.open_streams import open_streams
from services.intake.payments import PaymentTerms
from services.intake.paywall import Paywall
from services.intake.ratelimit import TokenBuckets
from services.intake.resources import (
    CLIENT_LIMITS,
    NFT_PAYWALL,
    PAYER_LIMITS,
    PAYWALL,
    SETTINGS,
    SINGLETONS,
    STATUS_COUNTS,
    TERMS,
    THROUGHPUT,
    WATCHER,
    open_resources,
)
from services.intake.routes import setup_routes
from services.intake.settings import IntakeSettings
from services.intake.throughput import Throughput
from services.intake.watcher import Watcher


def create_app(settings: IntakeSettings, *, worker: int | None = None) -> web.Application:
    """The app of a lone intake process, or of worker `worker` of several (services/intake/workers.py):
    worker 0 runs the loops that run once per service (services/intake/background.py), and the
    workers' open live streams count together toward the cap."""
    app = web.Application(
        middlewares=[request_ids, count_requests, json_errors, limit_clients],
        client_max_size=settings.max_body_bytes,
    )
    terms = PaymentTerms.for_deployment(settings.deployment)
    app[SETTINGS] = settings
    app[SINGLETONS] = not worker
    app[TERMS] = terms
    app[PAYWALL] = Paywall(terms, settings.max_timeout_seconds, "a mint of the token, queued for a batch")
    app[NFT_PAYWALL] = Paywall(
        PaymentTerms.for_deployment(settings.deployment, "nft"),
        settings.max_timeout_seconds,
        "an NFT: its animated GIF rendered and pinned to IPFS, then minted",
    )
    app[THROUGHPUT] = Throughput(settings.capacity_mints_per_second, settings.throughput_min_sample)
    app[CLIENT_LIMITS] = TokenBuckets(
        settings.rate_client_per_second, settings.rate_client_burst, settings.rate_max_tracked
    )
    app[PAYER_LIMITS] = TokenBuckets(
        settings.rate_payer_per_second, settings.rate_payer_burst, settings.rate_max_tracked
    )
    app[STATUS_COUNTS] = StatusCounts(settings.queue_counts_seconds)
    app[WATCHER] = Watcher(
        app[THROUGHPUT],
        app[STATUS_COUNTS],
        poll_seconds=settings.live_poll_seconds,
        queue_seconds=settings.live_queue_seconds,
        max_streams=settings.live_max_streams,
        max_streams_per_client=settings.live_max_streams_per_client,
        open_streams=open_streams(worker, settings.workers),
    )
    setup_routes(app)
    app[openapi.SPEC] = openapi.document()
    # Before aiohttp waits for open handlers: the live streams end instead of holding shutdown up.
    app.on_shutdown.append(live.close_streams)
    # Opened in this order, closed in reverse: the loops stop before the pools they use close.
    app.cleanup_ctx.append(open_resources)
    app.cleanup_ctx.append(run_background)
    return app
