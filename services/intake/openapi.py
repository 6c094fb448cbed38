"""GET /openapi.json: every intake route described as OpenAPI 3.1.

Request and answer schemas are generated from the pydantic models that validate the requests and build
the answers (orders.py, nft.py, shared/render_settings.py, schemas.py), in one pass, so a model used in
several places is one component. The document is built once, when the app is created, and served as
prebuilt bytes.
"""

import functools
import json
from dataclasses import dataclass, field
from importlib import metadata
from typing import Annotated, Any

from aiohttp import web
from pydantic import BaseModel, Field, TypeAdapter
from pydantic.json_schema import JsonSchemaMode
from x402.http.constants import PAYMENT_REQUIRED_HEADER, PAYMENT_SIGNATURE_HEADER, X_PAYMENT_HEADER

from services.intake.nft import CustomRender, GaslessRender, X402Render
from services.intake.orders import IDEMPOTENCY_HEADER, IDEMPOTENCY_KEY_RE, CustomBody, GaslessBody, X402Body
from services.intake.paywall import MAX_HEADER_CHARS
from services.intake.ratelimit import UNLIMITED_PATHS
from services.intake.schemas import (
    ADDRESS_PATTERN,
    UUID_PATTERN,
    ApiErrorBody,
    Health,
    Info,
    LiveItem,
    LiveQueue,
    MintAccepted,
    PayerQueue,
    PaymentRequiredBody,
    QueueItemAnswer,
    QueueStatus,
    RenderAccepted,
    RenderJob,
    Unhealthy,
)

SPEC = web.AppKey("openapi", bytes)
REF = "#/components/schemas/{model}"
JSON = "application/json"

# The request bodies, by component name: one model per payment type, told apart by paymentType.
BODIES: dict[str, TypeAdapter[Any]] = {
    "MintOrder": TypeAdapter(
        Annotated[X402Body | GaslessBody | CustomBody, Field(discriminator="paymentType")]
    ),
    "RenderOrder": TypeAdapter(
        Annotated[X402Render | GaslessRender | CustomRender, Field(discriminator="paymentType")]
    ),
}


@dataclass(frozen=True)
class Reply:
    description: str
    model: type[BaseModel] | None = None  # a JSON body of this model; else `media_type` as text
    media_type: str = JSON
    headers: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Also possible: a plain-text body from aiohttp's parser, which answers before the app does.
    or_plain_text: bool = False
    # A Server-Sent Events stream: the model of each event's JSON data (OpenAPI 3.1 has no field for
    # it, hence the `x-event-data` extension beside the media type).
    event: type[BaseModel] | None = None


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    operation_id: str
    tag: str
    summary: str
    replies: dict[int, Reply]
    parameters: tuple[dict[str, Any], ...] = ()
    body: str | None = None  # a BODIES name
    body_required: bool = True


ERRORS = {
    400: "bad input: `error` names the problem (invalid_body, invalid_authorization, ...)",
    402: "no payment, or one that does not pay for this; the offer is in the body and PAYMENT-REQUIRED",
    404: "no such thing",
    409: "payment_replayed: this payment was already used",
    413: "payload_too_large: the body is over the size limit",
    415: "unsupported_media_type: the body must be application/json",
    422: "idempotency_key_reused with another payment, or invalid_render_settings with every field",
    429: "rate_limited (this client or payer), or too_many_streams open by this client; see Retry-After",
    503: "a dependency (PostgreSQL, the RPC node) did not answer, or too many streams; retry shortly",
}


def errors(*statuses: int) -> dict[int, Reply]:
    replies = {status: Reply(ERRORS[status], ApiErrorBody) for status in statuses}
    if 402 in replies:
        header = {
            "description": "the same offer, base64 JSON",
            "required": True,
            "schema": {"type": "string"},
        }
        replies[402] = Reply(ERRORS[402], PaymentRequiredBody, headers={PAYMENT_REQUIRED_HEADER: header})
    if 429 in replies:
        retry = {"description": "whole seconds to wait", "required": True, "schema": {"type": "string"}}
        replies[429] = Reply(ERRORS[429], ApiErrorBody, headers={"Retry-After": retry})
    return replies


def payment_errors() -> dict[int, Reply]:
    replies = errors(400, 402, 409, 413, 415, 422, 503)
    description = (
        f"{ERRORS[400]}; callback_url_not_allowed: the callbackUrl host is or resolves to a non-public "
        f"address; a header over {MAX_HEADER_CHARS} bytes gets aiohttp's plain-text 400"
    )
    replies[400] = Reply(description, ApiErrorBody, or_plain_text=True)
    return replies


def path_parameter(name: str, description: str, pattern: str, **schema: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string", "pattern": pattern, **schema},
    }


def header(name: str, description: str, **schema: Any) -> dict[str, Any]:
    return {"name": name, "in": "header", "description": description, "schema": {"type": "string", **schema}}


PAYMENT_HEADERS = (
    header(PAYMENT_SIGNATURE_HEADER, "an x402 v2 PaymentPayload, base64 JSON", maxLength=MAX_HEADER_CHARS),
    header(X_PAYMENT_HEADER, "an x402 v1 payment, base64 JSON", maxLength=MAX_HEADER_CHARS),
    header(
        IDEMPOTENCY_HEADER,
        "a retry with the same key and payment answers 200 with the same request; an x402 payment may "
        "carry the key as its payment-identifier extension's id instead (if both, the same key)",
        pattern=f"^{IDEMPOTENCY_KEY_RE.pattern}$",
    ),
)
QUEUE_ID = path_parameter("queueId", "the request's queue id", UUID_PATTERN, format="uuid")
REPLAYED = {
    "Idempotent-Replayed": {"description": "always `true`", "required": True, "schema": {"const": "true"}}
}
STREAM = "text/event-stream"

OPERATIONS = (
    Operation(
        "post",
        "/mint",
        "postMint",
        "mint",
        "Pay for a token mint and queue it",
        {
            202: Reply("queued: committed in PostgreSQL", MintAccepted),
            200: Reply("an Idempotency-Key found the request queued earlier", MintAccepted, headers=REPLAYED),
            **payment_errors(),
        },
        parameters=PAYMENT_HEADERS,
        body="MintOrder",
        body_required=False,
    ),
    Operation(
        "post",
        "/nft/render",
        "postRender",
        "nft",
        "Pay for an NFT render and mint, and queue it; unpaid, the 402 offer whatever the body",
        {
            202: Reply("queued: committed in PostgreSQL with its render job", RenderAccepted),
            200: Reply("an Idempotency-Key found the job queued earlier", RenderAccepted, headers=REPLAYED),
            **payment_errors(),
        },
        parameters=PAYMENT_HEADERS,
        body="RenderOrder",
    ),
    Operation(
        "get",
        "/nft/job/{jobId}",
        "getRenderJob",
        "nft",
        "A render job's progress and mint",
        {200: Reply("the job", RenderJob), **errors(400, 404, 503)},
        parameters=(path_parameter("jobId", "what POST /nft/render answered", UUID_PATTERN, format="uuid"),),
    ),
    Operation(
        "get",
        "/queue/status",
        "getQueueStatus",
        "queue",
        "Requests per status, recent throughput and the wait for a new request",
        {200: Reply("the queue", QueueStatus), **errors(503)},
    ),
    Operation(
        "get",
        "/queue/payer/{address}",
        "getPayerQueue",
        "queue",
        "A payer's latest 100 requests",
        {200: Reply("the payer's requests, newest first", PayerQueue), **errors(400, 503)},
        parameters=(path_parameter("address", "the payer (EIP-55 if mixed-case)", ADDRESS_PATTERN),),
    ),
    Operation(
        "get",
        "/queue/item/{queueId}",
        "getQueueItem",
        "queue",
        "One request",
        {200: Reply("the request", QueueItemAnswer), **errors(400, 404, 503)},
        parameters=(QUEUE_ID,),
    ),
    Operation(
        "get",
        "/info",
        "getInfo",
        "operations",
        "The deployment, the prices and their x402 offers",
        {200: Reply("the deployment", Info)},
    ),
    Operation(
        "get",
        "/health",
        "getHealth",
        "operations",
        "Whether PostgreSQL, Redis and the RPC node answer",
        {200: Reply("all answer", Health), 503: Reply("one does not: `unhealthy`", Unhealthy)},
    ),
    Operation(
        "get",
        "/metrics",
        "getMetrics",
        "operations",
        "Prometheus metrics",
        {200: Reply("the Prometheus text exposition format", media_type="text/plain")},
    ),
    Operation(
        "get",
        "/openapi.json",
        "getOpenApi",
        "operations",
        "This description (OpenAPI 3.1)",
        {200: Reply("the OpenAPI document")},
    ),
    Operation(
        "get",
        "/",
        "getStatusPage",
        "live",
        "The live status page",
        {200: Reply("the page; it follows the /events streams", media_type="text/html")},
    ),
    Operation(
        "get",
        "/static/{filename}",
        "getStatic",
        "live",
        "The status page's scripts and styles",
        {200: Reply("the file", media_type="*/*"), **errors(404)},
        parameters=(path_parameter("filename", "a file name", r"^[A-Za-z0-9][A-Za-z0-9._-]*$"),),
    ),
    Operation(
        "get",
        "/events/item/{queueId}",
        "streamQueueItem",
        "live",
        "A request's state as it changes (Server-Sent Events)",
        {
            200: Reply(
                "event `item` (JSON data) at once and on every change; ends once completed or failed",
                media_type=STREAM,
                event=LiveItem,
            ),
            **errors(400, 404, 503),
        },
        parameters=(QUEUE_ID,),
    ),
    Operation(
        "get",
        "/events/queue",
        "streamQueue",
        "live",
        "The queue's counts, throughput and recent batches as they change (Server-Sent Events)",
        {
            200: Reply(
                "event `queue` (JSON data) at once and on every change", media_type=STREAM, event=LiveQueue
            ),
            **errors(503),
        },
    ),
)


def build() -> dict[str, Any]:
    """The OpenAPI document, its schemas generated from the models in one pass."""
    replies = [reply for operation in OPERATIONS for reply in operation.replies.values()]
    answers = {model for reply in replies for model in (reply.model, reply.event) if model}
    serialization: JsonSchemaMode = "serialization"
    validation: JsonSchemaMode = "validation"
    inputs = [(model.__name__, serialization, TypeAdapter(model)) for model in answers]
    inputs += [(name, validation, adapter) for name, adapter in BODIES.items()]
    schemas, definitions = TypeAdapter.json_schemas(inputs, ref_template=REF)
    # An answer's schema is a $ref to its model's component; a body's is a union, named here.
    components = {**definitions.get("$defs", {}), **{name: schemas[(name, validation)] for name in BODIES}}

    paths: dict[str, dict[str, Any]] = {}
    for operation in OPERATIONS:
        # Every route but the monitoring ones is rate limited per client.
        limited = {} if operation.path in UNLIMITED_PATHS else errors(429)
        description: dict[str, Any] = {
            "operationId": operation.operation_id,
            "tags": [operation.tag],
            "summary": operation.summary,
            "responses": {
                str(status): _reply(
                    reply,
                    schemas[(reply.model.__name__, serialization)] if reply.model else None,
                    schemas[(reply.event.__name__, serialization)] if reply.event else None,
                )
                for status, reply in sorted({**operation.replies, **limited}.items())
            },
        }
        if operation.parameters:
            description["parameters"] = list(operation.parameters)
        if operation.body is not None:
            description["requestBody"] = {
                "required": operation.body_required,
                "content": {JSON: {"schema": {"$ref": REF.format(model=operation.body)}}},
            }
        paths.setdefault(operation.path, {})[operation.method] = description
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "mintline intake",
            "version": _version(),
            "description": "Paid, queued, batched on-chain minting. Every error is JSON "
            '{"success": false, "error", "message"}; a 402 also carries the x402 PaymentRequired offer.',
        },
        "paths": paths,
        "components": {"schemas": dict(sorted(components.items()))},
    }


def _reply(reply: Reply, schema: dict[str, Any] | None, event: dict[str, Any] | None) -> dict[str, Any]:
    if schema is None:
        schema = {"type": "object" if reply.media_type == JSON else "string"}
    content: dict[str, dict[str, Any]] = {reply.media_type: {"schema": schema}}
    if event is not None:
        content[reply.media_type]["x-event-data"] = event
    if reply.or_plain_text:
        content["text/plain"] = {"schema": {"type": "string"}}
    answer: dict[str, Any] = {"description": reply.description, "content": content}
    if reply.headers:
        answer["headers"] = reply.headers
    return answer


def _version() -> str:
    try:
        return metadata.version("mintline")
    except metadata.PackageNotFoundError:
        return "0"


@functools.cache
def document() -> bytes:
    """The document as served: static, so built once per process."""
    return json.dumps(build(), separators=(",", ":")).encode()


async def serve(request: web.Request) -> web.Response:
    return web.Response(body=request.app[SPEC], content_type=JSON)
