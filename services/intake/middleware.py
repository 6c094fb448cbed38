"""Middlewares: every error becomes JSON {"success": false, "error", "message"}; every request is counted;
every client is held to its rate limit."""

import asyncio
import logging
import random
import re
import time
from collections.abc import Mapping
from typing import Any

import asyncpg
from aiohttp import web
from aiohttp.typedefs import Handler
from x402.http.constants import PAYMENT_REQUIRED_HEADER

from services.intake import metrics
from services.intake.errors import ApiError, RateLimited
from services.intake.limits import limited_client
from services.intake.paywall import request_url
from services.intake.ratelimit import UNLIMITED_PATHS, retry_after
from services.intake.resources import CLIENT_LIMITS, NFT_PAYWALL, PAYWALL
from services.intake.schemas import ApiErrorBody, PaymentRequiredBody
from shared import logs

log = logging.getLogger(__name__)

HTTP_ERROR_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}
REQUEST_ID_HEADER = "X-Request-Id"
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def error_response(
    request: web.Request,
    status: int,
    code: str,
    message: str,
    headers: Mapping[str, str] | None = None,
    details: Mapping[str, Any] | None = None,
) -> web.Response:
    headers = dict(headers or {})
    fields = {"error": code, "message": message, **(details or {})}
    body: ApiErrorBody | PaymentRequiredBody
    if status == 402:
        # x402: every 402 carries the offer of what was asked for, so a client can (re)pay; the body
        # holds it too.
        paywall = request.app[NFT_PAYWALL if request.path.startswith("/nft/") else PAYWALL]
        header, offer = paywall.offer(request_url(request), code)
        headers.setdefault(PAYMENT_REQUIRED_HEADER, header)
        body = PaymentRequiredBody.model_validate({**offer, **fields})
    else:
        body = ApiErrorBody.model_validate(fields)
    return web.json_response(
        body.model_dump(mode="json", by_alias=True, exclude_none=True), status=status, headers=headers
    )


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(request, exc.status, exc.code, exc.message, exc.headers, exc.details)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = HTTP_ERROR_CODES.get(exc.status, f"http_{exc.status}")
        if exc.status == 404:
            message = f"no such resource: {request.path[:200]}"
        elif exc.status == 405:
            message = f"{request.method[:20]} is not allowed here"
        else:
            message = exc.text or exc.reason
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return error_response(request, exc.status, code, message, headers)
    except (
        OSError,
        asyncpg.PostgresConnectionError,
        asyncpg.CannotConnectNowError,
        asyncpg.AdminShutdownError,
        asyncpg.CrashShutdownError,
        asyncpg.InterfaceError,
        # A server's "terminating connection" message arriving between two operations of a pooled
        # connection leaves asyncpg mid-read when the next one starts (its pool reset, say).
        asyncpg.exceptions.InternalClientError,
    ) as exc:
        # PostgreSQL is the durable record: without it nothing can be accepted, but the client may retry.
        log.warning("database unavailable answering %s %s: %s", request.method, request.path[:200], exc)
        return error_response(
            request,
            503,
            "database_unavailable",
            "the queue database is unreachable; retry shortly",
            {"Retry-After": "5"},
        )
    except Exception:
        log.exception("unexpected error answering %s %s", request.method, request.path[:200])
        return error_response(request, 500, "internal_error", "an unexpected error occurred; it was logged")


@web.middleware
async def request_ids(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every log line written while answering carries the request id (the caller's X-Request-Id if
    it is a sane one), and the response names it, so a client's report can be found in the logs."""
    given = request.headers.get(REQUEST_ID_HEADER, "")
    # 128 random bits as 32 hex digits, as uuid4().hex gave, without a getrandom() call per request:
    # an id to find log lines by, not a secret.
    request_id = given if _REQUEST_ID.fullmatch(given) else f"{random.getrandbits(128):032x}"
    with logs.bind(request_id=request_id):
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            exc.headers[REQUEST_ID_HEADER] = request_id
            raise
    if not response.prepared:
        response.headers[REQUEST_ID_HEADER] = request_id
    return response


@web.middleware
async def count_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    except asyncio.CancelledError:
        # The client left before the answer (a closed event stream, say): not a server error. 499 as
        # nginx counts it.
        status = 499
        raise
    finally:
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        method = request.method if request.method in METHODS else "other"
        metrics.HTTP_REQUESTS.labels(route, method, str(status)).inc()
        metrics.HTTP_DURATION.labels(route).observe(time.perf_counter() - started)


@web.middleware
async def limit_clients(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A token bucket per client address on every route but /health and /metrics, taken before the
    handler reads anything (the database, the chain)."""
    if request.path not in UNLIMITED_PATHS:
        client = limited_client(request)
        if client is not None:
            wait = request.app[CLIENT_LIMITS].take(client)
            if wait > 0:
                seconds = retry_after(wait)
                raise RateLimited(
                    "rate_limited", f"too many requests from {client}; retry in {seconds} s", seconds
                )
    return await handler(request)
