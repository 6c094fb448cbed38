"""The console's JSON: every action body is validated with these models and every answer is built
through them (camelCase on the wire), and /openapi.json is generated from them, so the description
cannot drift from what the routes take and give."""

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr
from pydantic.alias_generators import to_camel

# shared/keys.py's STREAMS, spelled out for the type (a unit test keeps them the same).
StreamName = Literal[
    "render.requested", "mint.requested", "tx.sent", "tx.stuck", "mint.completed", "mint.failed"
]


class Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class Body(Model):
    """An action's body: unknown fields are refused, so a typo is not silently ignored."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class ApiErrorBody(Model):
    success: Literal[False] = False
    error: str = Field(description="machine-readable code")
    message: str
    fields: list[dict[str, Any]] | None = Field(None, description="invalid_body: each field's problem")


# --- the overview (GET /api/overview, the live stream) ---------------------------------------------


class QueueCounts(Model):
    by_status: dict[str, dict[str, int]] = Field(
        description="queued statuses per kind (token, nft); finished ones as `all`"
    )
    totals: dict[str, int]
    queue_depth: int
    oldest_pending_seconds: float | None


class Latency(Model):
    p50: float | None
    p95: float | None
    max: float | None


class LastHour(Model):
    completed: int
    mints_per_minute: float
    latency_seconds: Latency = Field(description="request created -> completed, of the last hour's mints")
    per_minute: list[int] = Field(description="completions per minute, oldest first, the current minute last")


class StreamGroup(Model):
    group: str
    consumers: int
    pending: int = Field(description="delivered, not acked yet")
    lag: int | None = Field(description="entries not delivered to the group yet")


class StreamState(Model):
    stream: str
    length: int
    dead: int = Field(description="entries in the dead-letter stream")
    groups: list[StreamGroup]


class Streams(Model):
    streams: list[StreamState]
    error: str | None


class Wallet(Model):
    wallet: str
    highest_nonce: int | None = Field(description="the highest nonce stored in PostgreSQL")
    open: int = Field(description="batches signed or sent")
    chain_latest: int | None = None
    chain_pending: int | None = None
    lag: int | None = Field(None, description="stored transactions not mined yet")
    not_in_node: int | None = Field(None, description="stored transactions the node does not hold")
    balance_wei: str | None = None


class ChainHead(Model):
    rpc_url: str
    head: int


class Wallets(Model):
    wallets: list[Wallet]
    chain: ChainHead | None
    chain_error: str | None


class InFlight(Model):
    id: int
    wallet: str
    nonce: int
    kind: str
    status: str
    entries: int
    attempts: int
    tx_hash: str
    age_seconds: float
    max_fee_per_gas: str
    max_priority_fee_per_gas: str


class RenderJobCount(Model):
    status: str
    count: int
    lease_expired: int
    oldest_seconds: float | None


class Overview(Model):
    at: datetime
    namespace: str
    queue: QueueCounts
    last_hour: LastHour
    streams: Streams
    wallets: Wallets
    in_flight: list[InFlight]
    render_jobs: dict[str, RenderJobCount]


# --- requests, batches, render jobs -----------------------------------------------------------------


class RequestSummary(Model):
    id: uuid.UUID
    seq: int
    kind: str
    status: str
    payer_address: str
    payment_type: str
    lane: int = Field(description="its priority lane (0 normal; higher goes first)")
    batch_id: int | None
    mint_tx_hash: str | None
    payment_tx_hash: str | None
    error_message: str | None
    retry_count: int
    token_uri: str | None
    token_id: str | None
    created_at: datetime
    updated_at: datetime
    processed_at: datetime | None


class RequestList(Model):
    items: list[RequestSummary]
    next_before: int | None = Field(description="pass as `before` for the next page; null: no more")


class Change(Model):
    status: str
    reason: str | None
    at: datetime


class RenderJobView(Model):
    request_id: uuid.UUID
    status: str
    progress: int
    attempts: int
    image_cid: str | None
    image_url: str | None
    metadata_cid: str | None
    metadata_url: str | None
    error: str | None
    leased_by: str | None
    lease_until: datetime | None
    render_seconds: float | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime
    settings: dict[str, Any]
    request_status: str | None = None
    preview: str | None = Field(None, description="the console's route to the image, once pinned")


class BatchSummary(Model):
    id: int
    wallet: str
    nonce: int
    kind: str
    status: str
    entries: int
    tx_hash: str = Field(description="the latest attempt")
    mined_tx_hash: str | None
    attempts: int
    gas_limit: int
    gas_used: int | None
    max_fee_per_gas: str
    max_priority_fee_per_gas: str
    block_number: int | None
    block_hash: str | None
    fill_reason: str | None = Field(description="why its nonce carries a no-op instead")
    created_at: datetime
    sent_at: datetime | None
    confirmed_at: datetime | None
    finalized_at: datetime | None
    age_seconds: float


class RequestDetail(RequestSummary):
    history: list[Change]
    render_job: RenderJobView | None
    batches: list[BatchSummary]


class BatchList(Model):
    items: list[BatchSummary]
    next_before: int | None


class Attempt(Model):
    tx_hash: str
    max_fee_per_gas: str
    max_priority_fee_per_gas: str
    created_at: datetime


class EntryOutcome(Model):
    position: int
    id: uuid.UUID
    status: str | None
    batch_id: int | None
    mint_tx_hash: str | None
    error_message: str | None
    token_id: str | None
    payer_address: str | None
    in_this_batch: bool = Field(description="false: the request went on to another batch")


class BatchDetail(BatchSummary):
    transactions: list[Attempt] = Field(description="every signed attempt (fee bumps share the nonce)")
    entry_outcomes: list[EntryOutcome]


class RenderJobList(Model):
    items: list[RenderJobView]
    next_before: datetime | None


class SettingView(Model):
    key: str
    service: str | None
    override: str | None
    configured: Any
    effective: Any
    bounds: str | None
    notes: str


class SettingList(Model):
    settings: list[SettingView]


class PriorityView(Model):
    payer_address: str
    lane: int
    note: str | None
    set_by: str = Field(description="the operator who set it")
    source: str = Field(description="console or cli")
    set_at: datetime


class LaneDepth(Model):
    lane: int
    queued: int


class PriorityList(Model):
    payers: list[PriorityView] = Field(description="every payer with a lane, highest lane first")
    lanes: list[LaneDepth] = Field(description="requests queued per lane (lanes without any left out)")


class AuditRow(Model):
    id: int
    at: datetime
    finished_at: datetime | None
    actor: str
    source: str
    client: str | None
    action: str
    params: dict[str, Any]
    outcome: str
    result: dict[str, Any] | None


class AuditList(Model):
    items: list[AuditRow]


class Health(Model):
    status: Literal["ok"] = "ok"


# --- actions ----------------------------------------------------------------------------------------


class RetryFailedBody(Body):
    max_retries: int | None = Field(
        None, ge=1, le=1000, description="retry requests with retryCount < this (default: max_retries)"
    )
    since: str | None = Field(
        None, max_length=40, description="only requests that failed since: 30m, 2h, 1d or an ISO 8601 time"
    )
    expiry_margin_seconds: int = Field(60, ge=0, le=86400)
    dry_run: bool = False


class ResetStuckBody(Body):
    older_than_seconds: float = Field(600.0, ge=0, le=30 * 86400)
    dry_run: bool = False


class ReplayBody(Body):
    pass


class RequeueDeadBody(Body):
    stream: StreamName | None = None
    dry_run: bool = False


class SettingBody(Body):
    value: Annotated[StrictStr, Field(max_length=200)] | StrictInt | StrictFloat | None = Field(
        description="validated as the service validates it; null removes the override"
    )


class PriorityBody(Body):
    lane: Annotated[StrictInt, Field(ge=1, le=9)] | None = Field(
        description="1-9 (higher goes first); null clears the payer's lane (back to 0)"
    )
    note: Annotated[StrictStr, Field(max_length=200)] | None = None


class Skipped(Model):
    id: uuid.UUID
    reason: str


class RetryResult(Model):
    max_retries: int
    earliest_expiry: int
    dry_run: bool
    retried: int
    to_pending: list[uuid.UUID]
    to_rendering: list[uuid.UUID]
    skipped: list[Skipped]
    changed_meanwhile: int


class LeftAlone(Model):
    id: uuid.UUID
    request_status: str


class ResetResult(Model):
    older_than_seconds: float
    dry_run: bool
    requeued: list[Skipped]
    render_jobs: dict[str, list[uuid.UUID]]
    left_alone: list[LeftAlone]
    republished: int


class ReplayResult(Model):
    requests: int
    outcomes: int


class RequeueResult(Model):
    dry_run: bool
    requeued: dict[str, int]
    total: int
    undecodable: list[str]


class PriorityChanged(Model):
    payer: str = Field(description="checksummed, as requests store it")
    lane: int | None = Field(description="the payer's lane now; null: none (lane 0)")
    previous: int | None = Field(description="the lane before; null: none")


class SettingChanged(Model):
    key: str
    value: str | None = Field(description="the override now; null: removed")
    previous: str | None = Field(description="the override before; null: there was none")
    service: str | None = Field(description="the service that reads it (null: no service does)")
