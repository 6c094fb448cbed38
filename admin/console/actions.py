"""The actions: each runs the admin CLI's own function (admin/retry.py, stuck.py, replay.py, dead.py,
tunables.py, priorities.py) as the request's operator, which audits it in admin_audit. A dry run
(`dryRun`) reports what would change and changes nothing; the page shows it before asking to confirm."""

import json
import logging
from typing import TypeVar

from aiohttp import web
from pydantic import ValidationError

from admin import dead, priorities, replay, retry, stuck, tunables
from admin.common import parse_since
from admin.console.middleware import ApiError
from admin.console.resources import admin_for
from admin.console.schemas import (
    Body,
    PriorityBody,
    PriorityChanged,
    ReplayBody,
    ReplayResult,
    RequeueDeadBody,
    RequeueResult,
    ResetResult,
    ResetStuckBody,
    RetryFailedBody,
    RetryResult,
    SettingBody,
    SettingChanged,
)
from admin.console.views import answer

log = logging.getLogger(__name__)

B = TypeVar("B", bound=Body)
MAX_BODY = 16 * 1024


async def body(request: web.Request, model: type[B]) -> B:
    """The JSON body validated with its model: 400 invalid_body with every field's problem."""
    raw = await request.read()
    if len(raw) > MAX_BODY:
        raise ApiError("payload_too_large", f"the body is over {MAX_BODY} bytes", 413)
    try:
        data = json.loads(raw) if raw.strip() else {}
    except (ValueError, UnicodeDecodeError):
        raise ApiError("invalid_body", "the body is not JSON", 400) from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        fields = [
            {"field": ".".join(str(part) for part in error["loc"]) or "(body)", "problem": error["msg"]}
            for error in exc.errors()
        ]
        message = "; ".join(f"{f['field']}: {f['problem']}" for f in fields)
        raise ApiError("invalid_body", message, 400, fields=fields) from None


def _done(request: web.Request, action: str, dry_run: bool = False) -> None:
    if not dry_run:
        log.info("%s by %s from %s", action, admin_for(request).actor, request.remote)


async def retry_failed(request: web.Request) -> web.Response:
    given = await body(request, RetryFailedBody)
    since = None
    if given.since:
        try:
            since = parse_since(given.since)
        except Exception as exc:  # argparse.ArgumentTypeError, with the reason
            raise ApiError("invalid_body", f"since: {exc}", 400) from None
    done = await retry.retry_failed(
        admin_for(request),
        max_retries=given.max_retries,
        since=since,
        expiry_margin=given.expiry_margin_seconds,
        dry_run=given.dry_run,
    )
    _done(request, "retry-failed", given.dry_run)
    return answer(RetryResult, done.summary())


async def reset_stuck(request: web.Request) -> web.Response:
    given = await body(request, ResetStuckBody)
    done = await stuck.reset_stuck(
        admin_for(request), older_than=given.older_than_seconds, dry_run=given.dry_run
    )
    _done(request, "reset-stuck", given.dry_run)
    return answer(ResetResult, done.summary())


async def replay_streams(request: web.Request) -> web.Response:
    await body(request, ReplayBody)
    done = await replay.replay_streams(admin_for(request))
    _done(request, "replay-streams")
    return answer(ReplayResult, done.summary())


async def requeue_dead(request: web.Request) -> web.Response:
    given = await body(request, RequeueDeadBody)
    done = await dead.requeue_dead(admin_for(request), stream=given.stream, dry_run=given.dry_run)
    _done(request, "requeue-dead", given.dry_run)
    return answer(RequeueResult, done.summary())


async def put_setting(request: web.Request) -> web.Response:
    """Set an override (validated as its service validates it) or, with `"value": null`, remove it."""
    key = request.match_info["key"]
    given = await body(request, SettingBody)
    admin = admin_for(request)
    service = tunables.TUNABLE[key][0] if key in tunables.TUNABLE else None
    if given.value is None:
        removed = await tunables.unset_override(admin, key)
        _done(request, f"settings-unset {key}")
        return answer(SettingChanged, {"key": key, "value": None, "previous": removed, "service": service})
    previous = await admin.pool.fetchval("SELECT value FROM system_settings WHERE key = $1", key)
    value = await tunables.set_override(admin, key, str(given.value))
    _done(request, f"settings-set {key}")
    return answer(SettingChanged, {"key": key, "value": str(value), "previous": previous, "service": service})


async def put_priority(request: web.Request) -> web.Response:
    """Give a payer a priority lane or, with `"lane": null`, clear it (back to lane 0)."""
    payer = priorities.payer_address(request.match_info["payer"])
    given = await body(request, PriorityBody)
    admin = admin_for(request)
    if given.lane is None:
        done = await priorities.clear_priority(admin, payer)
        _done(request, f"priority-clear {done['payer']}")
    else:
        done = await priorities.set_priority(admin, payer, given.lane, given.note)
        _done(request, f"priority-set {done['payer']} lane {done['lane']}")
    return answer(PriorityChanged, done)
