"""The mint_requests queue in PostgreSQL: accepting a request (durably, once per payment and per
Idempotency-Key) and the reads behind the status pages."""

import math
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg

from services.intake.enqueue_batches import Call, Enqueuer
from services.intake.errors import ApiError, PaymentRejected, PaymentReplayed, Unavailable
from services.intake.payments import check_expiry
from services.intake.schemas import QueueItem

# Requests on their way to the chain; NFT requests wait for their render first, and while they do
# they hold their place in the queue and their payer's balance.
ACTIVE = ("pending", "batched", "sent")
ACTIVE_SQL = "('pending', 'batched', 'sent')"
QUEUED = ("rendering", "rendered", *ACTIVE)
QUEUED_SQL = "('rendering', 'rendered', 'pending', 'batched', 'sent')"

ROW_COLUMNS = (
    "id, kind, seq, status, payer_address, payment_type, payment_id, payment_tx_hash, payment_log_index,"
    " idempotency_key, lane, eta_seconds"
)
# The request an Idempotency-Key names, with its current position: the queued requests of its kind and
# lane up to it, and those of higher lanes (queued_position, migration 012).
BY_IDEMPOTENCY_KEY = f"""
SELECT {ROW_COLUMNS},
       CASE WHEN status IN {QUEUED_SQL} THEN queued_position(k.kind, k.lane, k.seq) END AS queue_position
FROM mint_requests k WHERE idempotency_key = $1
"""

ITEM_COLUMNS = f"""
id, payer_address, status, created_at, updated_at, processed_at, mint_tx_hash, error_message,
retry_count, payment_type,
CASE WHEN status IN {QUEUED_SQL} THEN queued_position(m.kind, m.lane, m.seq) END AS queue_position
"""


@dataclass(frozen=True)
class PaymentRef:
    """A payment as far as a request names it: its paymentId, or for a custom payment the transfer
    (the paymentId is None while the log is not known yet)."""

    payment_id: str | None
    tx_hash: str | None = None
    log_index: int | None = None

    def matches(self, row: asyncpg.Record) -> bool:
        if self.tx_hash is not None and row["payment_tx_hash"] == self.tx_hash:
            return self.log_index is None or row["payment_log_index"] in (None, self.log_index)
        return self.payment_id is not None and row["payment_id"] == self.payment_id


@dataclass(frozen=True)
class NewRequest:
    payer: str
    payment_type: str
    payment_id: str
    amount: int
    authorization: dict[str, str] | None
    valid_before: int | None
    payment_tx_hash: str | None
    idempotency_key: str | None
    callback_url: str | None
    kind: str = "token"
    # NFT requests: the validated render settings; the request starts `rendering` with a render job.
    render_settings: dict[str, Any] | None = None
    payment_log_index: int | None = None
    # The block the payment's chain state was read in.
    accepted_block: int | None = None
    # Nonces of the payer's queued authorizations the chain had executed in that block; None while
    # they were not asked about (then every queued authorization reserves its amount).
    debited: frozenset[str] | None = None

    @property
    def payment(self) -> PaymentRef:
        return PaymentRef(self.payment_id, self.payment_tx_hash, self.payment_log_index)


@dataclass(frozen=True)
class Queued:
    id: str
    position: int
    payer: str
    payment_type: str
    # False when an Idempotency-Key found the request an earlier call queued.
    created: bool
    # Its priority lane (payer_priorities) and the wait estimated when it was accepted.
    lane: int = 0
    eta_seconds: int | None = None


class Recheck(Exception):
    """The balance covers the request only if some of the payer's queued authorizations (`nonces`)
    were executed on-chain already: read their state with the balance, and enqueue again."""

    def __init__(self, nonces: list[str]) -> None:
        super().__init__(f"{len(nonces)} queued authorizations to check")
        self.nonces = tuple(nonces)


@dataclass(frozen=True)
class Expiry:
    """How the expiry check estimates a request's batch time: its position at `per_second`, read once
    so the check and its message agree."""

    now: int
    per_second: float
    margin_seconds: int

    def wait_seconds(self, position: int) -> int:
        return math.ceil(max(position, 0) / self.per_second)


async def find_by_idempotency_key(pool: asyncpg.Pool, key: str, payment: PaymentRef) -> Queued | None:
    row = await pool.fetchrow(BY_IDEMPOTENCY_KEY, key)
    return None if row is None else _existing(row, payment)


async def enqueue(
    enqueuer: Enqueuer, request: NewRequest, *, balance: int | None, expiry: Expiry | None
) -> Queued:
    """Insert the request as `pending` (or `rendering`, with its render job) and commit, in one
    statement (intake_enqueue, migrations 011 and 012, shared with concurrent requests:
    enqueue_batches); returns once it is durable. Its lane is the payer's (payer_priorities, else 0),
    and its position counts its lane and the lanes above it.

    `balance` (the payer's on-chain USDC, for authorization payments) must cover this request plus
    their earlier unsettled ones; the payer's advisory lock, held for that statement, makes the check
    and the insert atomic across intake processes. With `request.debited` None (not read) every
    queued authorization counts, and where that is too much Recheck names the ones to read. `expiry`
    refuses an authorization (valid_before) that would expire before its estimated batch time, and its
    rate gives the wait stored with the row (what the batcher's ageing rule measures against).
    """
    rows = await enqueuer.rows(
        Call(
            (
                request.kind,
                request.payer,
                request.payment_type,
                request.payment_id,
                request.amount,
                request.authorization,
                request.valid_before,
                request.payment_tx_hash,
                request.payment_log_index,
                request.accepted_block,
                request.idempotency_key,
                request.callback_url,
                request.render_settings,
                balance,
                None if request.debited is None else sorted(request.debited),
                expiry.now if expiry is not None else None,
                expiry.per_second if expiry is not None else None,
                expiry.margin_seconds if expiry is not None else None,
            )
        )
    )
    if not rows:
        # The insert met a concurrent request with the same payment or key that then rolled back.
        raise Unavailable("conflict_unresolved", "the request conflicted with one that is gone; retry")
    outcome = rows[0]["outcome"]
    if outcome == "created":
        row = rows[0]
        return Queued(
            str(row["id"]),
            row["queue_position"],
            request.payer,
            request.payment_type,
            True,
            row["lane"],
            row["eta_seconds"],
        )
    if outcome == "recheck":
        raise Recheck(rows[0]["nonces"])
    if outcome == "insufficient":
        reserved = int(rows[0]["reserved"])
        raise PaymentRejected(
            "insufficient_balance",
            f"{request.payer} holds {balance} USDC units, {reserved} of them promised to "
            f"queued requests; {request.amount} more are needed",
        )
    if outcome == "too_soon":
        assert expiry is not None and request.valid_before is not None
        position = rows[0]["queue_position"]
        check_expiry(request.valid_before, expiry.now, expiry.wait_seconds(position), expiry.margin_seconds)
        raise AssertionError("intake_enqueue and check_expiry disagree")  # same formula: unreachable
    for row in rows:
        if request.idempotency_key is not None and row["idempotency_key"] == request.idempotency_key:
            return _existing(row, request.payment)
    raise PaymentReplayed()


def _existing(row: asyncpg.Record, payment: PaymentRef) -> Queued:
    """The request an Idempotency-Key already names, if it is for the same payment."""
    if not payment.matches(row):
        raise ApiError(
            "idempotency_key_reused", "this Idempotency-Key was already used with a different payment", 422
        )
    position = row["queue_position"] if row["status"] in QUEUED else 0
    return Queued(
        str(row["id"]),
        position,
        row["payer_address"],
        row["payment_type"],
        False,
        row["lane"],
        row["eta_seconds"],
    )


async def item(pool: asyncpg.Pool, request_id: uuid.UUID) -> QueueItem | None:
    row = await pool.fetchrow(f"SELECT {ITEM_COLUMNS} FROM mint_requests m WHERE id = $1", request_id)
    return None if row is None else item_from_row(row)


async def payer_items(pool: asyncpg.Pool, payer: str, limit: int) -> tuple[list[QueueItem], dict[str, int]]:
    """The payer's latest requests, newest first, and their count per status."""
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            f"SELECT {ITEM_COLUMNS} FROM mint_requests m WHERE payer_address = $1 ORDER BY seq DESC LIMIT $2",
            payer,
            limit,
        )
        counts = await conn.fetch(
            "SELECT status, count(*) AS n FROM mint_requests WHERE payer_address = $1 GROUP BY status", payer
        )
    return [item_from_row(row) for row in rows], {row["status"]: row["n"] for row in counts}


def item_from_row(row: asyncpg.Record) -> QueueItem:
    return QueueItem(
        id=row["id"],
        payer_address=row["payer_address"],
        status=row["status"],
        queue_position=row["queue_position"],
        created_at=iso(row["created_at"]),
        updated_at=iso(row["updated_at"]),
        processed_at=iso(row["processed_at"]),
        mint_tx_hash=row["mint_tx_hash"],
        error_message=row["error_message"],
        retry_count=row["retry_count"],
        payment_type=row["payment_type"],
    )


def iso(value: Any) -> str | None:
    """A timestamp as PostgreSQL gave it, in ISO 8601 (None stays None)."""
    return None if value is None else value.isoformat()
