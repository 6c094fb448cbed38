"""POST /mint: read the order, verify its payment, queue it durably, then announce it on the stream.

202 means the row is committed in PostgreSQL. A repeated Idempotency-Key for the same payment answers
200 with the same queue item (current position and wait), header `Idempotent-Replayed: true`; the
same key with a different payment is 422 `idempotency_key_reused`.
"""

import asyncio
import logging
import time

from aiohttp import web

from services.intake import metrics, queue
from services.intake.errors import ApiError, PaymentRejected
from services.intake.orders import idempotency_key, parse_order, read_body
from services.intake.payments import check_expiry
from services.intake.queue import NewRequest, Queued
from services.intake.resources import CHAIN, PAYWALL, POOL, REDIS, SETTINGS, TERMS, THROUGHPUT
from services.intake.verify import verify
from shared import keys
from shared.events import MintRequested
from shared.streams import publish

log = logging.getLogger(__name__)

PUBLISH_TIMEOUT = 2.0


async def post_mint(request: web.Request) -> web.Response:
    try:
        return await _mint(request)
    except ApiError as exc:
        metrics.PAYMENTS_REJECTED.labels(exc.code).inc()
        raise


async def _mint(request: web.Request) -> web.Response:
    app = request.app
    settings, terms, pool = app[SETTINGS], app[TERMS], app[POOL]
    data = await read_body(request)
    key = idempotency_key(request)
    order = parse_order(request, data, app[PAYWALL])
    if order is None:
        raise PaymentRejected(
            "payment_required",
            f"a mint costs {terms.price} USDC units: pay with x402 (PAYMENT-SIGNATURE header), a gasless "
            "EIP-3009 authorization or a custom transfer",
        )
    if key is not None:
        earlier = await queue.find_by_idempotency_key(pool, key, order.payment_id)
        if earlier is not None:
            return _answer(app, earlier)

    now = int(time.time())
    verified = await verify(order, terms, app[CHAIN], now, settings.custom_payment_confirmations)
    auth = order.authorization
    valid_before = auth.valid_before if auth is not None else None

    def accept(position: int) -> None:
        if valid_before is not None:
            wait = app[THROUGHPUT].wait_seconds(position)
            check_expiry(valid_before, now, wait, settings.expiry_margin_seconds)

    queued = await queue.enqueue(
        pool,
        NewRequest(
            payer=verified.payer,
            payment_type=order.payment_type,
            payment_id=order.payment_id,
            amount=verified.amount,
            authorization=auth.as_json() if auth is not None else None,
            valid_before=valid_before,
            payment_tx_hash=order.tx_hash,
            idempotency_key=key,
            callback_url=order.callback_url,
        ),
        balance=verified.balance,
        accept=accept,
    )
    if queued.created:
        metrics.MINTS_ACCEPTED.labels(queued.payment_type).inc()
        log.info(
            "accepted mint %s: %s payment %s by %s, queue position %d",
            queued.id,
            queued.payment_type,
            order.payment_id,
            queued.payer,
            queued.position,
        )
        await _announce(app, queued, valid_before)
    return _answer(app, queued)


async def _announce(app: web.Application, queued: Queued, valid_before: int | None) -> None:
    settings = app[SETTINGS]
    event = MintRequested(request_id=queued.id, kind="token", valid_before=valid_before)
    try:
        await asyncio.wait_for(
            publish(
                app[REDIS], settings.keys.stream(keys.MINT_REQUESTED), event, maxlen=settings.stream_maxlen
            ),
            timeout=PUBLISH_TIMEOUT,
        )
    except Exception as exc:
        # Committed is what counts: the replay loop or the stale sweep publishes it later.
        metrics.PUBLISH_FAILURES.inc()
        log.warning("publishing mint.requested for %s failed (%s); it will be replayed", queued.id, exc)


def _answer(app: web.Application, queued: Queued) -> web.Response:
    body = {
        "success": True,
        "queueId": queued.id,
        "queuePosition": queued.position,
        "payer": queued.payer,
        "estimatedWaitSeconds": app[THROUGHPUT].wait_seconds(queued.position),
        "paymentType": queued.payment_type,
    }
    if queued.created:
        return web.json_response(body, status=202)
    return web.json_response(body, status=200, headers={"Idempotent-Replayed": "true"})
