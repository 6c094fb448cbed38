"""POST /nft/render: a paid NFT render (then mint), and GET /nft/job/{jobId}: its progress.

The body is `{"render": {...render settings...}, ...the payment fields of POST /mint...}`; the job id
is the request's queue id. A request without a payment gets the 402 offer whatever its body (missing,
not JSON, no or invalid `render`): an x402 client asks first and pays after, and only a paid request's
body is validated. A render job's status comes from Redis while the renderer keeps it there (recent
jobs), else from PostgreSQL; the mint's outcome always from PostgreSQL once it is known.
"""

import uuid
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from services.intake import metrics
from services.intake.errors import ApiError, BadRequest
from services.intake.mint import accept_paid
from services.intake.orders import CustomBody, GaslessBody, X402Body, read_body
from services.intake.paywall import payment_header
from services.intake.resources import NFT_PAYWALL, POOL, REDIS, SETTINGS, THROUGHPUT
from services.intake.schemas import RenderAccepted, RenderJob
from shared import render_jobs
from shared.render_settings import RenderSettings


class X402Render(X402Body):
    """The x402 payment travels in the PAYMENT-SIGNATURE / X-PAYMENT header."""

    render: RenderSettings


class GaslessRender(GaslessBody):
    render: RenderSettings


class CustomRender(CustomBody):
    render: RenderSettings


# What the API description shows a body as; the handler validates `render` and the payment apart so
# each gets its own error (422 invalid_render_settings with every field, 400 invalid_body).
RENDER_BODIES = (X402Render, GaslessRender, CustomRender)
# The paymentTypes whose body carries the payment itself.
PAID_BODIES = ("gasless", "custom")


async def post_render(request: web.Request) -> web.Response:
    try:
        data = await _paid_body(request)
        render = _render_settings(data)
        queued = await accept_paid(
            request,
            data,
            request.app[NFT_PAYWALL],
            kind="nft",
            render_settings=render.model_dump(mode="json", by_alias=True),
        )
    except ApiError as exc:
        metrics.PAYMENTS_REJECTED.labels(exc.code).inc()
        raise
    body = RenderAccepted(
        job_id=queued.id,
        queue_position=queued.position,
        estimated_wait_seconds=request.app[THROUGHPUT].wait_seconds(queued.position),
        payer=queued.payer,
        payment_type=queued.payment_type,
    ).model_dump(mode="json", by_alias=True)
    if queued.created:
        return web.json_response(body, status=202)
    return web.json_response(body, status=200, headers={"Idempotent-Replayed": "true"})


async def _paid_body(request: web.Request) -> dict[str, Any] | None:
    """The body of a request that carries a payment (an x402 header, or a gasless or custom body);
    402 with the offer for one that does not, before anything in the body is checked."""
    paid_by_header = payment_header(request.headers) is not None
    try:
        data = await read_body(request)
    except ApiError:
        if paid_by_header:
            raise
        data = None
    if not paid_by_header and (data is None or data.get("paymentType") not in PAID_BODIES):
        raise request.app[NFT_PAYWALL].payment_required()
    return data


def _render_settings(data: dict[str, Any] | None) -> RenderSettings:
    """Takes the `render` object out of the body (the rest is the payment) and validates it."""
    if data is None or "render" not in data:
        raise BadRequest("invalid_body", "the body needs a `render` object with the render settings")
    raw = data.pop("render")
    if not isinstance(raw, dict):
        raise BadRequest("invalid_body", "`render` must be a JSON object")
    try:
        return RenderSettings.model_validate(raw)
    except ValidationError as exc:
        # A limit on the settings as a whole (total pixels) has no field of its own: it is `render`.
        problems = [
            {"field": ".".join(["render", *map(str, error["loc"])]), "message": error["msg"]}
            for error in exc.errors(include_url=False, include_input=False)
        ]
        first = problems[0]
        raise ApiError(
            "invalid_render_settings", f"{first['field']}: {first['message']}", 422, errors=problems
        ) from None


async def get_job(request: web.Request) -> web.Response:
    raw_id = request.match_info["jobId"]
    try:
        job_id = str(uuid.UUID(raw_id))
    except ValueError:
        raise BadRequest("invalid_job_id", "jobId must be a UUID") from None
    app = request.app
    cache = render_jobs.JobCache(app[REDIS], app[SETTINGS].keys, {})
    job = await cache.get(job_id)
    # A completed render is still waiting for its mint: that part is in PostgreSQL.
    if job is None or (job["status"] == "completed" and job["mintTxHash"] is None):
        row = await render_jobs.load(app[POOL], job_id)
        if row is None:
            raise ApiError("not_found", f"no render job {job_id}", 404)
        job = render_jobs.job_json(row)
    return web.json_response(RenderJob.model_validate(job).model_dump(mode="json", by_alias=True))
