"""The read-only endpoints: queue status, a payer's requests, one item, deployment info, health, metrics."""

import asyncio
import uuid

from aiohttp import web

from services.intake import queue
from services.intake.errors import ApiError, BadRequest
from services.intake.payments import parse_address
from services.intake.paywall import request_url
from services.intake.resources import (
    CHAIN,
    NFT_PAYWALL,
    PAYWALL,
    POOL,
    REDIS,
    SETTINGS,
    STATUS_COUNTS,
    TERMS,
    THROUGHPUT,
)
from services.intake.schemas import (
    Health,
    HealthChecks,
    Info,
    NftTerms,
    PayerQueue,
    QueueItemAnswer,
    QueueStatus,
    RecentThroughput,
    Unhealthy,
)
from shared.metrics import metrics_response

PAYER_ITEMS_LIMIT = 100
HEALTH_TIMEOUT = 2.0
PAYMENT_TYPES = ["x402", "gasless", "custom"]


async def queue_status(request: web.Request) -> web.Response:
    counts = await request.app[STATUS_COUNTS].get(request.app[POOL])
    throughput = request.app[THROUGHPUT]
    depth = sum(counts.get(status, 0) for status in queue.ACTIVE)
    body = QueueStatus(
        counts=counts,
        queue_depth=depth,
        throughput=RecentThroughput(
            completed_last_minute=throughput.completed_last_minute,
            mints_per_second=round(throughput.per_second, 3),
        ),
        estimated_wait_seconds=throughput.wait_seconds(depth + 1),
    )
    return web.json_response(body.model_dump(mode="json", by_alias=True))


async def payer_queue(request: web.Request) -> web.Response:
    payer = parse_address(request.match_info["address"], "address")
    items, counts = await queue.payer_items(request.app[POOL], payer, PAYER_ITEMS_LIMIT)
    body = PayerQueue(payer=payer, counts=counts, items=items)
    return web.json_response(body.model_dump(mode="json", by_alias=True))


def queue_id(request: web.Request) -> uuid.UUID:
    """The `{queueId}` of the path: 400 invalid_queue_id unless it is a UUID."""
    try:
        return uuid.UUID(request.match_info["queueId"])
    except ValueError:
        raise BadRequest("invalid_queue_id", "queueId must be a UUID") from None


async def queue_item(request: web.Request) -> web.Response:
    request_id = queue_id(request)
    item = await queue.item(request.app[POOL], request_id)
    if item is None:
        raise ApiError("not_found", f"no queue item {request_id}", 404)
    return web.json_response(QueueItemAnswer(item=item).model_dump(mode="json", by_alias=True))


async def info(request: web.Request) -> web.Response:
    terms = request.app[TERMS]
    deployment = request.app[SETTINGS].deployment
    body = Info(
        chain_id=terms.chain_id,
        network=terms.network,
        token=deployment.token,
        usdc=terms.usdc,
        treasury=terms.treasury,
        price=str(terms.price),
        mint_amount=str(deployment.mint_amount),
        nft=NftTerms(
            contract=deployment.nft,
            price=str(deployment.nft_price),
            x402=request.app[NFT_PAYWALL].offer(request_url(request, "/nft/render"))[1],
        ),
        payment_types=PAYMENT_TYPES,
        custom_payment_confirmations=request.app[SETTINGS].custom_payment_confirmations,
        x402=request.app[PAYWALL].offer(request_url(request, "/mint"))[1],
    )
    return web.json_response(body.model_dump(mode="json", by_alias=True, exclude_none=True))


async def health(request: web.Request) -> web.Response:
    app = request.app
    checks = {
        "postgres": app[POOL].fetchval("SELECT 1"),
        "redis": app[REDIS].ping(),
        "rpc": app[CHAIN].block_number(),
    }
    results = await asyncio.gather(
        *(asyncio.wait_for(check, HEALTH_TIMEOUT) for check in checks.values()), return_exceptions=True
    )
    status = {
        name: "ok" if not isinstance(result, BaseException) else "failing"
        for name, result in zip(checks, results, strict=True)
    }
    failing = [name for name, state in status.items() if state != "ok"]
    states = HealthChecks.model_validate(status)
    if failing:
        body = Unhealthy(error="unhealthy", message=f"failing: {', '.join(failing)}", checks=states)
        return web.json_response(body.model_dump(mode="json", by_alias=True, exclude_none=True), status=503)
    return web.json_response(Health(checks=states).model_dump(mode="json", by_alias=True))


async def metrics(_: web.Request) -> web.Response:
    return metrics_response()
