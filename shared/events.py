"""Versioned events carried on the streams, and their msgpack codec (one field per entry)."""

import time
import uuid
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import msgpack
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

FIELD = b"event"
# The mint_requests columns MintRequested.of_row reads (RETURNING or SELECT them, unqualified).
REQUESTED_COLUMNS = "id, kind, valid_before, lane, created_at, eta_seconds"


class DecodeError(ValueError):
    """An entry that is not a valid event: it goes to the dead-letter stream."""


class BaseEvent(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    event_id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    schema_version: int = 1
    created_ms: int = Field(default_factory=lambda: int(time.time() * 1000))


class MintRequested(BaseEvent):
    """A request row is `pending` in PostgreSQL and may be batched."""

    type: Literal["mint.requested"] = "mint.requested"
    request_id: str
    kind: Literal["token", "nft"] = "token"
    # The authorization's validBefore (unix seconds), so the batcher can take the soonest-expiring first.
    valid_before: int | None = None
    # Its priority lane (0 normal, higher first), decided by intake (migration 012), and what the
    # batcher's ageing rule reads: when intake accepted it (unix ms; None: when this event was made)
    # and the wait intake estimated then.
    lane: int = Field(0, ge=0)
    accepted_ms: int | None = None
    eta_seconds: int | None = Field(None, ge=0)

    @classmethod
    def of_row(cls, row: Mapping[str, Any]) -> "MintRequested":
        """The event for a mint_requests row read with REQUESTED_COLUMNS."""
        return cls(
            request_id=str(row["id"]),
            kind=row["kind"],
            valid_before=row["valid_before"],
            lane=row["lane"],
            accepted_ms=int(row["created_at"].timestamp() * 1000),
            eta_seconds=row["eta_seconds"],
        )

    @property
    def accepted(self) -> float:
        """When intake accepted the request, in unix seconds."""
        return (self.created_ms if self.accepted_ms is None else self.accepted_ms) / 1000


class RenderRequested(BaseEvent):
    type: Literal["render.requested"] = "render.requested"
    request_id: str


class TxSent(BaseEvent):
    type: Literal["tx.sent"] = "tx.sent"
    batch_id: int
    nonce: int
    tx_hash: str


class TxStuck(BaseEvent):
    type: Literal["tx.stuck"] = "tx.stuck"
    batch_id: int
    nonce: int
    tx_hash: str


class MintCompleted(BaseEvent):
    type: Literal["mint.completed"] = "mint.completed"
    request_id: str
    tx_hash: str


class MintFailed(BaseEvent):
    type: Literal["mint.failed"] = "mint.failed"
    request_id: str
    reason: str


class MintReorged(BaseEvent):
    """A completed request whose mint transaction left the canonical chain: it is being settled anew
    (on the mint.completed stream, which it amends)."""

    type: Literal["mint.reorged"] = "mint.reorged"
    request_id: str
    tx_hash: str
    block_number: int


Event = Annotated[
    MintRequested | RenderRequested | TxSent | TxStuck | MintCompleted | MintFailed | MintReorged,
    Field(discriminator="type"),
]
_adapter: TypeAdapter[Event] = TypeAdapter(Event)


def encode(event: BaseEvent) -> bytes:
    return msgpack.packb(event.model_dump(mode="json"), use_bin_type=True)


def decode(data: bytes) -> Event:
    try:
        return _adapter.validate_python(msgpack.unpackb(data, raw=False))
    except (ValueError, TypeError, ValidationError, msgpack.UnpackException) as exc:
        raise DecodeError(str(exc)) from exc
