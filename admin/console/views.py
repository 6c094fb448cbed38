"""The read-only routes: the overview, the lists and their details, the settings, the payers' priority
lanes, the audit trail, and a render job's image from its gateway."""

from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import web
from pydantic import BaseModel

from admin import audit, priorities, status, tunables
from admin.common import Admin
from admin.console import queries, search
from admin.console.middleware import SETTINGS, ApiError
from admin.console.resources import GATEWAY, POOL, admin_for
from admin.console.schemas import (
    AuditList,
    BatchDetail,
    BatchList,
    Health,
    Overview,
    PriorityList,
    RenderJobList,
    RequestDetail,
    RequestList,
    SettingList,
)

PREVIEW = "/api/renders/{id}/image"


def answer(model: type[BaseModel], data: dict[str, Any], status_code: int = 200) -> web.Response:
    """The answer built through its model, so it is what /openapi.json describes."""
    body = model.model_validate(data).model_dump(mode="json", by_alias=True)
    return web.json_response(body, status=status_code, headers={"Cache-Control": "no-store"})


async def collect_overview(admin: Admin) -> dict[str, Any]:
    return {
        "at": datetime.now(UTC),
        "namespace": admin.settings.namespace,
        "queue": await queries.counts(admin.pool),
        "last_hour": await queries.last_hour(admin.pool),
        "streams": await status.streams(admin),
        "wallets": await status.nonces(admin),
        "in_flight": [dict(row) for row in await admin.pool.fetch(status.IN_FLIGHT)],
        "render_jobs": {row["status"]: dict(row) for row in await admin.pool.fetch(status.RENDER_JOBS)},
    }


def overview_json(data: dict[str, Any]) -> dict[str, Any]:
    return Overview.model_validate(data).model_dump(mode="json", by_alias=True)


async def overview(request: web.Request) -> web.Response:
    return answer(Overview, await collect_overview(admin_for(request)))


async def requests(request: web.Request) -> web.Response:
    terms = search.request_search(request.query)
    items = await queries.requests(
        request.app[POOL],
        terms.status,
        terms.payer,
        terms.request_id,
        terms.tx_hash,
        terms.before,
        terms.limit,
    )
    after = items[-1]["seq"] if len(items) == terms.limit else None
    return answer(RequestList, {"items": items, "next_before": after})


async def request_detail(request: web.Request) -> web.Response:
    request_id = search.queue_id(request.match_info["id"])
    detail = await queries.request_detail(request.app[POOL], request_id)
    if detail is None:
        raise ApiError("not_found", f"no request {request_id}", 404)
    if detail["render_job"]:
        detail["render_job"]["preview"] = _preview(detail["render_job"])
    return answer(RequestDetail, detail)


async def batches(request: web.Request) -> web.Response:
    terms = search.batch_search(request.query)
    items = await queries.batches(
        request.app[POOL],
        terms.status,
        terms.wallet,
        terms.tx_hash,
        terms.batch_id,
        terms.before,
        terms.limit,
    )
    after = items[-1]["id"] if len(items) == terms.limit else None
    return answer(BatchList, {"items": items, "next_before": after})


async def batch_detail(request: web.Request) -> web.Response:
    text = request.match_info["id"]
    if not text.isdigit() or not 0 < int(text) < 2**63:
        raise ApiError("invalid_batch_id", "a batch id is a positive whole number", 400)
    detail = await queries.batch_detail(request.app[POOL], int(text))
    if detail is None:
        raise ApiError("not_found", f"no batch {text}", 404)
    return answer(BatchDetail, detail)


async def render_jobs(request: web.Request) -> web.Response:
    terms = search.render_search(request.query)
    items = await queries.render_jobs(request.app[POOL], terms.status, terms.before, terms.limit)
    for item in items:
        item["preview"] = _preview(item)
    after = items[-1]["created_at"] if len(items) == terms.limit else None
    return answer(RenderJobList, {"items": items, "next_before": after})


def _preview(job: dict[str, Any]) -> str | None:
    return PREVIEW.format(id=job["request_id"]) if job["image_url"] else None


async def render_image(request: web.Request) -> web.Response:
    """The job's GIF, fetched from the gateway the renderer recorded: the page loads only its own origin,
    and the operator's browser need not reach the gateway."""
    job = await queries.render_job(request.app[POOL], search.queue_id(request.match_info["id"]))
    if job is None or not job["image_url"]:
        raise ApiError("not_found", "no pinned image for this job yet", 404)
    limit = request.app[SETTINGS].preview_max_bytes
    try:
        async with request.app[GATEWAY].get(job["image_url"]) as response:
            content_type = response.content_type
            if response.status != 200 or not content_type.startswith("image/"):
                raise ApiError("gateway_error", f"the gateway answered {response.status} {content_type}", 502)
            body = await response.content.read(limit + 1)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise ApiError(
            "gateway_unavailable", f"the gateway did not answer: {type(exc).__name__}", 502
        ) from None
    if len(body) > limit:
        raise ApiError("preview_too_large", f"the image is over {limit} bytes", 502)
    return web.Response(
        body=body, content_type=content_type, headers={"Cache-Control": "private, max-age=3600"}
    )


async def settings_list(request: web.Request) -> web.Response:
    return answer(SettingList, {"settings": await tunables.describe(admin_for(request))})


async def priorities_list(request: web.Request) -> web.Response:
    return answer(PriorityList, await priorities.list_priorities(admin_for(request)))


async def audit_list(request: web.Request) -> web.Response:
    limit = search.limit(request.query)
    return answer(AuditList, {"items": await audit.recent(request.app[POOL], limit)})


async def health(_: web.Request) -> web.Response:
    return web.json_response(Health().model_dump(mode="json", by_alias=True))
