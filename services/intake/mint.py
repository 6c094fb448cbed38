"""POST /mint: read the order, verify its payment, queue it durably, then announce it on the stream.

202 means the row is committed in PostgreSQL. A repeated Idempotency-Key for the same payment answers
200 with the same queue item (current position and wait), header `Idempotent-Replayed: true`; the
same key with a different payment is 422 `idempotency_key_reused`.
"""

import asyncio
import logging
import time
from typing import Any

from aiohttp import web

from services.intake import metrics, queue
from services.intake.callback_hosts import check_callback_url
from services.intake.errors import ApiError
from services.intake.limits import limit_payer
from services.intake.orders import Order, idempotency_key, idempotency_key_of, parse_order, read_body
from services.intake.paywall import Paywall
from services.intake.queue import Expiry, NewRequest, Queued, Recheck
from services.intake.resources import (
    CALLBACKS,
    CHAIN,
    ENQUEUER,
    PAYWALL,
    POOL,
    PUBLISHER,
    SETTINGS,
    THROUGHPUT,
)
from services.intake.schemas import MintAccepted
from services.intake.verify import Verified, verify
from shared import keys
from shared.events import BaseEvent, MintRequested, RenderRequested
from shared.streams import Publisher

log = logging.getLogger(__name__)

PUBLISH_TIMEOUT = 2.0
# Module-level, so a test can play a Redis that fails after the commit.
publish = Publisher.publish


async def post_mint(request: web.Request) -> web.Response:
    try:
        return await _mint(request)
    except ApiError as exc:
        metrics.PAYMENTS_REJECTED.labels(exc.code).inc()
        raise


async def _mint(request: web.Request) -> web.Response:
    data = await read_body(request)
    queued = await accept_paid(request, data, request.app[PAYWALL], kind="token")
    return _answer(request.app, queued)


async def accept_paid(
    request: web.Request,
    data: dict[str, Any] | None,
    paywall: Paywall,
    *,
    kind: str,
    render_settings: dict[str, Any] | None = None,
) -> Queued:
    """Read the payment of a request, verify it, queue the request durably and announce it: shared by
    POST /mint and POST /nft/render (which carries `render_settings` and pays the NFT's price)."""
    app = request.app
    settings, pool, terms = app[SETTINGS], app[POOL], paywall.terms
    key = idempotency_key(request)
    order = parse_order(request, data, paywall)
    if order is None:
        raise paywall.payment_required()
    key = idempotency_key_of(key, order)
    # Before any read for it: a payer over their rate costs neither the database nor the chain.
    now = int(time.time())
    limit_payer(app, terms, order.authorization, order.payer, now)
    try:
        if order.callback_url is not None:
            await check_callback_url(app[CALLBACKS].hosts, order.callback_url)
        verified = await verify(
            order, terms, app[CHAIN], now, settings.custom_payment_confirmations, checked=True
        )
    except ApiError:
        # A retry of a request its Idempotency-Key already queued gets the first answer, whatever its
        # payment looks like now (settled on-chain by its own batch, say).
        earlier = await queue.find_by_idempotency_key(pool, key, order.payment) if key else None
        if earlier is None:
            raise
        return earlier
    valid_before = order.authorization.valid_before if order.authorization is not None else None
    # The expiry check applies to authorizations only; its rate also gives the wait stored with the row.
    expiry = Expiry(now, app[THROUGHPUT].per_second, settings.expiry_margin_seconds)
    new = _new_request(order, verified, key, kind, render_settings)
    # The chain was asked about this payment only, so the payer's other queued authorizations all count
    # against their balance; only a payer short on that count pays for a closer look.
    try:
        queued = await queue.enqueue(app[ENQUEUER], new, balance=verified.balance, expiry=expiry)
    except Recheck as recheck:
        verified = await verify(
            order,
            terms,
            app[CHAIN],
            now,
            settings.custom_payment_confirmations,
            queued_nonces=recheck.nonces,
            checked=True,
        )
        new = _new_request(order, verified, key, kind, render_settings, debited=verified.debited)
        queued = await queue.enqueue(app[ENQUEUER], new, balance=verified.balance, expiry=expiry)
    if queued.created:
        metrics.MINTS_ACCEPTED.labels(queued.payment_type).inc()
        log.info(
            "accepted %s request %s: %s payment %s by %s, lane %d, queue position %d",
            kind,
            queued.id,
            queued.payment_type,
            verified.payment_id,
            queued.payer,
            queued.lane,
            queued.position,
            extra={"queue_id": queued.id},
        )
        if render_settings is None:
            event: BaseEvent = MintRequested(
                request_id=queued.id,
                kind=kind,
                valid_before=valid_before,
                lane=queued.lane,
                eta_seconds=queued.eta_seconds,
            )
            stream = keys.MINT_REQUESTED
        else:
            event, stream = RenderRequested(request_id=queued.id), keys.RENDER_REQUESTED
        await _announce(app, stream, event, queued.id)
    return queued


def _new_request(
    order: Order,
    verified: Verified,
    key: str | None,
    kind: str,
    render_settings: dict[str, Any] | None,
    debited: frozenset[str] | None = None,
) -> NewRequest:
    auth = order.authorization
    return NewRequest(
        payer=verified.payer,
        payment_type=order.payment_type,
        payment_id=verified.payment_id,
        amount=verified.amount,
        authorization=auth.as_json() if auth is not None else None,
        valid_before=auth.valid_before if auth is not None else None,
        payment_tx_hash=order.claim.tx_hash if order.claim is not None else None,
        payment_log_index=verified.log_index,
        accepted_block=verified.block,
        debited=debited,
        idempotency_key=key,
        callback_url=order.callback_url,
        kind=kind,
        render_settings=render_settings,
    )


async def _announce(app: web.Application, stream: str, event: BaseEvent, request_id: str) -> None:
    settings = app[SETTINGS]
    try:
        # A timeout scope, not wait_for: that would start a task of its own for every request.
        async with asyncio.timeout(PUBLISH_TIMEOUT):
            await publish(app[PUBLISHER], settings.keys.stream(stream), event)
    except Exception as exc:
        # Committed is what counts: the replay loop or the stale sweep publishes it later.
        metrics.PUBLISH_FAILURES.inc()
        log.warning("publishing %s for %s failed (%s); it will be replayed", stream, request_id, exc)


def _answer(app: web.Application, queued: Queued) -> web.Response:
    """202 for a new request; 200 with `Idempotent-Replayed` for one an Idempotency-Key found."""
    body = MintAccepted(
        queue_id=queued.id,
        queue_position=queued.position,
        payer=queued.payer,
        estimated_wait_seconds=app[THROUGHPUT].wait_seconds(queued.position),
        payment_type=queued.payment_type,
    ).model_dump(mode="json", by_alias=True)
    if queued.created:
        return web.json_response(body, status=202)
    return web.json_response(body, status=200, headers={"Idempotent-Replayed": "true"})
