"""GET /openapi.json: every console route as OpenAPI 3.1, its schemas generated in one pass from the
pydantic models the handlers validate bodies with and build answers through (schemas.py), as intake
does (services/intake/openapi.py). Like every route but /health it needs credentials: it tells
nothing secret, but an unauthenticated caller learns nothing about the console at all."""

import functools
import json
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import JsonSchemaMode

from admin.console import schemas as s
from admin.console.search import BATCH_STATUSES, MAX_LIMIT, RENDER_STATUSES, REQUEST_STATUSES

SPEC = web.AppKey("openapi", bytes)
REF = "#/components/schemas/{model}"
JSON = "application/json"


@dataclass(frozen=True)
class Reply:
    description: str
    model: type[BaseModel] | None = None
    media_type: str = JSON
    event: type[BaseModel] | None = None  # an SSE stream: each event's data (`x-event-data`)


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    operation_id: str
    tag: str
    summary: str
    replies: dict[int, Reply]
    parameters: tuple[dict[str, Any], ...] = ()
    body: type[BaseModel] | None = None
    public: bool = False


def query(name: str, description: str, **schema: Any) -> dict[str, Any]:
    return {"name": name, "in": "query", "description": description, "schema": {"type": "string", **schema}}


def path(name: str, description: str, **schema: Any) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string", **schema},
    }


ERRORS = {
    400: "bad input: `error` names it (invalid_query, invalid_body with `fields`, invalid_input)",
    401: "no or wrong credentials (WWW-Authenticate: Basic); nothing else is said",
    403: "an action from another site or origin (forbidden)",
    404: "no such thing",
    413: "payload_too_large",
    415: "an action's body must be application/json",
    502: "the gateway did not give the image",
    503: "PostgreSQL or Redis did not answer, or too many live streams; retry shortly",
}


def errors(*statuses: int) -> dict[int, Reply]:
    return {status: Reply(ERRORS[status], s.ApiErrorBody) for status in statuses}


LIMIT = query("limit", f"at most this many (default 50, at most {MAX_LIMIT})", pattern=r"^\d+$")
ACTION_ERRORS = errors(400, 401, 403, 413, 415, 503)
READ_ERRORS = errors(400, 401, 503)

OPERATIONS = (
    Operation(
        "get",
        "/health",
        "getHealth",
        "operations",
        "Whether the console runs (no data)",
        {200: Reply("running", s.Health)},
        public=True,
    ),
    Operation(
        "get",
        "/openapi.json",
        "getOpenApi",
        "operations",
        "This description (OpenAPI 3.1)",
        {200: Reply("the OpenAPI document"), **errors(401)},
    ),
    Operation(
        "get",
        "/",
        "getConsole",
        "page",
        "The console page",
        {200: Reply("the page; it follows /events/overview", media_type="text/html"), **errors(401)},
    ),
    Operation(
        "get",
        "/static/{filename}",
        "getStatic",
        "page",
        "The page's scripts and styles",
        {200: Reply("the file", media_type="*/*"), **errors(401, 404)},
        parameters=(path("filename", "a file name", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$"),),
    ),
    Operation(
        "get",
        "/events/overview",
        "streamOverview",
        "live",
        "The overview as it changes (Server-Sent Events)",
        {
            200: Reply(
                "event `overview` (JSON data) at once and on every change",
                media_type="text/event-stream",
                event=s.Overview,
            ),
            **errors(401, 503),
        },
    ),
    Operation(
        "get",
        "/api/overview",
        "getOverview",
        "views",
        "Queue depth per stage and stream, the last hour, the wallets, transactions in flight",
        {200: Reply("the overview", s.Overview), **errors(401, 503)},
    ),
    Operation(
        "get",
        "/api/requests",
        "listRequests",
        "views",
        "Requests, newest first",
        {200: Reply("the requests", s.RequestList), **READ_ERRORS},
        parameters=(
            query("q", "a queue id, payer address or transaction hash"),
            query("status", "a status", enum=list(REQUEST_STATUSES)),
            query("payer", "a payer address"),
            query("id", "a queue id", format="uuid"),
            query("tx", "a transaction hash: a mint attempt or a custom payment"),
            query("before", "nextBefore of the previous page", pattern=r"^\d+$"),
            LIMIT,
        ),
    ),
    Operation(
        "get",
        "/api/requests/{id}",
        "getRequest",
        "views",
        "A request with its full status history, render job and batches",
        {200: Reply("the request", s.RequestDetail), **errors(400, 401, 404, 503)},
        parameters=(path("id", "the queue id", format="uuid"),),
    ),
    Operation(
        "get",
        "/api/batches",
        "listBatches",
        "views",
        "Batches, newest first",
        {200: Reply("the batches", s.BatchList), **READ_ERRORS},
        parameters=(
            query("q", "a batch id, wallet address or transaction hash"),
            query("status", "a status", enum=list(BATCH_STATUSES)),
            query("wallet", "a signer wallet"),
            query("tx", "a transaction hash of any attempt"),
            query("id", "a batch id", pattern=r"^\d+$"),
            query("before", "nextBefore of the previous page", pattern=r"^\d+$"),
            LIMIT,
        ),
    ),
    Operation(
        "get",
        "/api/batches/{id}",
        "getBatch",
        "views",
        "A batch with its attempts (hashes, fees) and each entry's outcome",
        {200: Reply("the batch", s.BatchDetail), **errors(400, 401, 404, 503)},
        parameters=(path("id", "the batch id", pattern=r"^\d+$"),),
    ),
    Operation(
        "get",
        "/api/renders",
        "listRenderJobs",
        "views",
        "Render jobs, newest first",
        {200: Reply("the render jobs", s.RenderJobList), **READ_ERRORS},
        parameters=(
            query("status", "a status", enum=list(RENDER_STATUSES)),
            query("before", "nextBefore of the previous page", format="date-time"),
            LIMIT,
        ),
    ),
    Operation(
        "get",
        "/api/renders/{id}/image",
        "getRenderImage",
        "views",
        "A render job's image, from its IPFS gateway",
        {200: Reply("the image", media_type="image/gif"), **errors(400, 401, 404, 502, 503)},
        parameters=(path("id", "the job id (the queue id)", format="uuid"),),
    ),
    Operation(
        "get",
        "/api/settings",
        "listSettings",
        "views",
        "Every tunable setting: override, configured and effective value, bounds",
        {200: Reply("the settings", s.SettingList), **errors(401, 503)},
    ),
    Operation(
        "get",
        "/api/priorities",
        "listPriorities",
        "views",
        "Every payer's priority lane, and the requests queued per lane",
        {200: Reply("the lanes", s.PriorityList), **errors(401, 503)},
    ),
    Operation(
        "get",
        "/api/audit",
        "listAudit",
        "views",
        "The audit trail, newest first",
        {200: Reply("audit rows", s.AuditList), **READ_ERRORS},
        parameters=(LIMIT,),
    ),
    Operation(
        "post",
        "/api/actions/retry-failed",
        "retryFailed",
        "actions",
        "Failed requests get another attempt (mintline retry-failed)",
        {200: Reply("what was (dryRun: would be) retried", s.RetryResult), **ACTION_ERRORS},
        body=s.RetryFailedBody,
    ),
    Operation(
        "post",
        "/api/actions/reset-stuck",
        "resetStuck",
        "actions",
        "Repair requests and render jobs nothing will move again (mintline reset-stuck)",
        {200: Reply("what was (dryRun: would be) repaired", s.ResetResult), **ACTION_ERRORS},
        body=s.ResetStuckBody,
    ),
    Operation(
        "post",
        "/api/actions/replay-streams",
        "replayStreams",
        "actions",
        "Rebuild the streams from PostgreSQL (mintline replay-streams)",
        {200: Reply("what was republished", s.ReplayResult), **ACTION_ERRORS},
        body=s.ReplayBody,
    ),
    Operation(
        "post",
        "/api/actions/requeue-dead",
        "requeueDead",
        "actions",
        "Dead letters back on their streams (mintline requeue-dead)",
        {200: Reply("what was (dryRun: would be) requeued", s.RequeueResult), **ACTION_ERRORS},
        body=s.RequeueDeadBody,
    ),
    Operation(
        "put",
        "/api/settings/{key}",
        "putSetting",
        "actions",
        "Set a run-time override, or remove it with null (mintline settings set / unset)",
        {200: Reply("the override set or removed", s.SettingChanged), **ACTION_ERRORS},
        parameters=(path("key", "a tunable key (GET /api/settings)", pattern=r"^[a-z_]{1,64}$"),),
        body=s.SettingBody,
    ),
    Operation(
        "put",
        "/api/priorities/{payer}",
        "putPriority",
        "actions",
        "Give a payer a priority lane, or clear it with null (mintline priority set / clear)",
        {200: Reply("the payer's lane now and before", s.PriorityChanged), **ACTION_ERRORS},
        parameters=(path("payer", "the payer's address", pattern=r"^0x[0-9a-fA-F]{40}$"),),
        body=s.PriorityBody,
    ),
)


def build() -> dict[str, Any]:
    replies = [reply for operation in OPERATIONS for reply in operation.replies.values()]
    answers = {model for reply in replies for model in (reply.model, reply.event) if model}
    bodies = {operation.body for operation in OPERATIONS if operation.body}
    serialization: JsonSchemaMode = "serialization"
    validation: JsonSchemaMode = "validation"
    inputs = [(model, serialization, TypeAdapter(model)) for model in answers]
    inputs += [(model, validation, TypeAdapter(model)) for model in bodies]
    schemas, definitions = TypeAdapter.json_schemas(inputs, ref_template=REF, by_alias=True)
    paths: dict[str, dict[str, Any]] = {}
    for operation in OPERATIONS:
        description: dict[str, Any] = {
            "operationId": operation.operation_id,
            "tags": [operation.tag],
            "summary": operation.summary,
            "responses": {
                str(status): _reply(reply, schemas, serialization)
                for status, reply in sorted(operation.replies.items())
            },
        }
        if operation.public:
            description["security"] = []
        if operation.parameters:
            description["parameters"] = list(operation.parameters)
        if operation.body is not None:
            description["requestBody"] = {
                "required": True,
                "content": {JSON: {"schema": schemas[(operation.body, validation)]}},
            }
        paths.setdefault(operation.path, {})[operation.method] = description
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "mintline operator console",
            "version": "1",
            "description": "Every route but /health needs an operator's credentials: HTTP basic (user: "
            "the operator's name; password: that operator's token) or the token as a bearer token, which "
            "names its operator. The audit (admin_audit) records that name. With the shared CONSOLE_TOKEN "
            "instead, the basic user name is recorded as given and a bearer token as `bearer`. Every "
            "action is audited and must carry a JSON body. Every error is JSON "
            '{"success": false, "error", "message"}.',
        },
        "paths": paths,
        "components": {
            "schemas": dict(sorted(definitions.get("$defs", {}).items())),
            "securitySchemes": {
                "basic": {
                    "type": "http",
                    "scheme": "basic",
                    "description": "user: the operator's name; password: that operator's token",
                },
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "an operator's token, which names the operator",
                },
            },
        },
        "security": [{"basic": []}, {"bearer": []}],
    }


def _reply(reply: Reply, schemas: dict[Any, Any], mode: JsonSchemaMode) -> dict[str, Any]:
    if reply.model is not None:
        schema = schemas[(reply.model, mode)]
    else:
        schema = {"type": "object" if reply.media_type == JSON else "string"}
    content: dict[str, Any] = {reply.media_type: {"schema": schema}}
    if reply.event is not None:
        content[reply.media_type]["x-event-data"] = schemas[(reply.event, mode)]
    return {"description": reply.description, "content": content}


@functools.cache
def document() -> bytes:
    return json.dumps(build(), separators=(",", ":")).encode()


async def serve(request: web.Request) -> web.Response:
    return web.Response(body=request.app[SPEC], content_type=JSON)
