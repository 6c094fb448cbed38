"""Every JSON answer of intake, one pydantic model each. Handlers build their bodies through these models
(`Model(...).model_dump(mode="json", by_alias=True)`) and GET /openapi.json describes the same models,
so an answer cannot drift from its description. JSON names are camelCase, except a queue item's, which
keep their column names. Answers holding x402 models, and errors, are dumped with `exclude_none=True`:
absent optional fields are left out, as the x402 SDK sends them.
"""

from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel
from x402.schemas import PaymentRequired, ResourceInfo

ADDRESS_PATTERN = r"^0x[0-9a-fA-F]{40}$"
TX_HASH_PATTERN = r"^0x[0-9a-fA-F]{64}$"
UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"

Address = Annotated[str, Field(pattern=ADDRESS_PATTERN, description="a checksummed 0x address")]
TxHash = Annotated[str, Field(pattern=TX_HASH_PATTERN)]
Units = Annotated[str, Field(pattern=r"^[0-9]+$", description="USDC (or token) base units, in decimal")]
# Kept as the strings PostgreSQL's timestamps print as (isoformat), not re-rendered by pydantic.
Timestamp = Annotated[str, Field(json_schema_extra={"format": "date-time"})]
Count = Annotated[int, Field(ge=0)]
PaymentType = Literal["x402", "gasless", "custom"]
RequestStatus = Literal[
    "rendering", "rendered", "pending", "batched", "sent", "completed", "failed", "confirmation_failed"
]
JobStatus = Literal["waiting", "active", "completed", "failed"]
CheckState = Literal["ok", "failing"]


class CamelModel(BaseModel):
    # Defaults are always sent, so the description marks them required.
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        serialize_by_alias=True,
        frozen=True,
        json_schema_serialization_defaults_required=True,
    )


class Answer(CamelModel):
    success: Literal[True] = True


class MintAccepted(Answer):
    """POST /mint: 202 once the request is committed; 200 when an Idempotency-Key found it."""

    queue_id: UUID
    queue_position: Count = Field(description="0 once the request left the queue")
    payer: Address
    estimated_wait_seconds: Count
    payment_type: PaymentType


class RenderAccepted(Answer):
    """POST /nft/render: the job id is the request's queue id."""

    job_id: UUID
    queue_position: Count
    estimated_wait_seconds: Count
    payer: Address
    payment_type: PaymentType


class RenderJob(Answer):
    """GET /nft/job/{jobId}: progress is 0, 33 (rendered), 66 (image pinned), 100 (metadata pinned)."""

    job_id: UUID
    status: JobStatus
    progress: int = Field(ge=0, le=100)
    attempts: Count
    image_url: str | None
    image_cid: str | None
    metadata_url: str | None
    metadata_cid: str | None
    mint_status: RequestStatus
    token_id: Count | None
    mint_tx_hash: TxHash | None
    error: str | None


class QueueItem(BaseModel):
    """One mint request as the status pages show it (names as its columns)."""

    model_config = ConfigDict(frozen=True, json_schema_serialization_defaults_required=True)

    id: UUID
    # Rows imported from an earlier system may hold any payer text and transaction hash.
    payer_address: str = Field(description="the payer; a checksummed address for requests intake took")
    status: RequestStatus
    queue_position: Count | None = Field(description="null once the request left the queue")
    created_at: Timestamp
    updated_at: Timestamp
    processed_at: Timestamp | None
    mint_tx_hash: str | None
    error_message: str | None
    retry_count: Count
    payment_type: PaymentType


StatusCounts = dict[RequestStatus, Count]


class QueueItemAnswer(Answer):
    item: QueueItem


class PayerQueue(Answer):
    """A payer's latest requests, newest first, and their count per status."""

    payer: Address
    counts: StatusCounts
    items: list[QueueItem]


class RecentThroughput(CamelModel):
    completed_last_minute: Count
    mints_per_second: float = Field(ge=0)


class QueueStatus(Answer):
    counts: StatusCounts
    queue_depth: Count = Field(description="requests pending, batched or sent")
    throughput: RecentThroughput
    estimated_wait_seconds: Count = Field(description="for a request queued now")


class NftTerms(CamelModel):
    contract: Address
    price: Units
    x402: PaymentRequired


class Info(Answer):
    """The deployment and what a mint costs, with the x402 offers (as a 402 carries them)."""

    chain_id: int
    network: str = Field(description="the CAIP-2 chain id x402 uses")
    token: Address
    usdc: Address
    treasury: Address
    price: Units
    mint_amount: Units
    nft: NftTerms
    payment_types: list[PaymentType]
    custom_payment_confirmations: Count
    x402: PaymentRequired


class HealthChecks(BaseModel):
    model_config = ConfigDict(frozen=True)

    postgres: CheckState
    redis: CheckState
    rpc: CheckState


class Health(Answer):
    status: Literal["ok"] = "ok"
    checks: HealthChecks


class FieldProblem(BaseModel):
    model_config = ConfigDict(frozen=True)

    field: str
    message: str


class ApiErrorBody(BaseModel):
    """Every error: a machine-readable `error` code and a human `message`."""

    # Unknown details are a bug to see in the tests, not a field to drop silently.
    model_config = ConfigDict(frozen=True, extra="forbid")

    success: Literal[False] = False
    error: str
    message: str
    errors: list[FieldProblem] | None = Field(
        default=None, description="invalid_render_settings: every invalid field and why"
    )


class Unhealthy(ApiErrorBody):
    """GET /health when a dependency does not answer: 503 `unhealthy`."""

    checks: HealthChecks


class PaymentRequiredBody(PaymentRequired):
    """A 402: the x402 PaymentRequired offer (also in the PAYMENT-REQUIRED header) and the error."""

    # Optional in the SDK's model, required by the v2 spec (§5.1): the url is the request's.
    resource: ResourceInfo
    success: Literal[False] = False
    error: str
    message: str


class RenderProgress(CamelModel):
    status: JobStatus
    progress: Literal[0, 33, 66, 100]


class HistoryEntry(BaseModel):
    model_config = ConfigDict(frozen=True)

    status: RequestStatus
    at: Timestamp
    reason: str | None = None


class LiveItem(CamelModel):
    """The data of an `item` event on GET /events/item/{queueId}."""

    id: UUID
    kind: Literal["token", "nft"]
    status: RequestStatus
    queue_position: Count | None = Field(description="null once the request left the queue")
    estimated_wait_seconds: Count | None
    mint_tx_hash: str | None
    token_id: str | None = Field(description="an NFT's token id, once minted")
    error: str | None
    updated_at: Timestamp | None
    render: RenderProgress | None = Field(description="an NFT request's render job")
    history: list[HistoryEntry]


class LiveBatch(CamelModel):
    id: int
    nonce: int
    kind: Literal["token", "nft"]
    status: Literal["signed", "sent", "confirmed", "reverted"]
    entries: Count
    tx_hash: str
    block_number: int | None
    created_at: Timestamp | None
    confirmed_at: Timestamp | None


class LiveQueue(CamelModel):
    """The data of a `queue` event on GET /events/queue."""

    counts: StatusCounts
    queue_depth: Count = Field(description="requests pending, batched or sent")
    throughput: RecentThroughput
    estimated_wait_seconds: Count = Field(description="for a request queued now")
    batches: list[LiveBatch] = Field(description="the most recent batches, newest first")
