"""The mint_requests queue in PostgreSQL: accepting a request (durably, once per payment and per
Idempotency-Key) and the reads behind the status pages."""

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import asyncpg

from services.intake.errors import ApiError, PaymentRejected, PaymentReplayed, Unavailable
from services.intake.schemas import QueueItem

# Requests on their way to the chain; NFT requests wait for their render first, and while they do
# they hold their place in the queue and their payer's balance.
ACTIVE = ("pending", "batched", "sent")
ACTIVE_SQL = "('pending', 'batched', 'sent')"
QUEUED = ("rendering", "rendered", *ACTIVE)
QUEUED_SQL = "('rendering', 'rendered', 'pending', 'batched', 'sent')"

# The rows a new request conflicts with: the same payment (paymentId; for a custom payment also its
# transfer log, or a row that claimed its whole transaction) or the same Idempotency-Key.
ROW_COLUMNS = (
    "id, kind, seq, status, payer_address, payment_type, payment_id, payment_tx_hash, payment_log_index,"
    " idempotency_key"
)
EXISTING = f"""
SELECT {ROW_COLUMNS} FROM mint_requests
WHERE payment_id = $1 OR idempotency_key = $2
   OR (payment_tx_hash = $3 AND (payment_log_index IS NULL OR payment_log_index = $4))
"""
BY_IDEMPOTENCY_KEY = f"SELECT {ROW_COLUMNS} FROM mint_requests WHERE idempotency_key = $1"
# The payer's queued authorizations that the chain may have executed already: those in a transaction
# first (a batch mined but not yet confirmed), then those still waiting (someone else may submit a
# signed authorization). Their state is read in the same block as the balance.
MAX_CHECKED_NONCES = 64
QUEUED_NONCES = f"""
SELECT authorization_data->>'nonce' AS nonce FROM mint_requests
WHERE payer_address = $1 AND status IN {QUEUED_SQL} AND authorization_data IS NOT NULL
  AND NOT payment_settled
ORDER BY status IN ('batched', 'sent') DESC, seq
LIMIT {MAX_CHECKED_NONCES}
"""
# What this payer's earlier authorizations will still take from their balance: those neither settled
# elsewhere nor seen executed on-chain ($2) when the balance was read.
RESERVED = f"""
SELECT coalesce(sum(amount), 0) FROM mint_requests
WHERE payer_address = $1 AND status IN {QUEUED_SQL} AND authorization_data IS NOT NULL
  AND NOT payment_settled AND NOT (authorization_data->>'nonce' = ANY($2::text[]))
"""
# The count runs on the statement's snapshot, which does not hold the new row: hence the + 1.
INSERT = f"""
WITH inserted AS (
    INSERT INTO mint_requests (id, kind, payer_address, payment_type, payment_id, amount,
                               authorization_data, valid_before, payment_tx_hash, payment_log_index,
                               accepted_block, idempotency_key, callback_url, status)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
    ON CONFLICT DO NOTHING
    RETURNING seq
)
SELECT seq, 1 + (SELECT count(*) FROM mint_requests
                 WHERE kind = $2 AND status IN {QUEUED_SQL} AND seq < inserted.seq) AS position
FROM inserted
"""
POSITION = f"SELECT count(*) FROM mint_requests WHERE kind = $1 AND status IN {QUEUED_SQL} AND seq <= $2"

ITEM_COLUMNS = f"""
id, payer_address, status, created_at, updated_at, processed_at, mint_tx_hash, error_message,
retry_count, payment_type,
CASE WHEN status IN {QUEUED_SQL} THEN
    (SELECT count(*) FROM mint_requests a
     WHERE a.kind = m.kind AND a.status IN {QUEUED_SQL} AND a.seq <= m.seq)
END AS queue_position
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
    # Nonces of the payer's queued authorizations the chain had executed in that block.
    debited: frozenset[str] = frozenset()

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


async def find_by_idempotency_key(pool: asyncpg.Pool, key: str, payment: PaymentRef) -> Queued | None:
    async with pool.acquire() as conn:
        row = await conn.fetchrow(BY_IDEMPOTENCY_KEY, key)
        return None if row is None else await _existing(conn, row, payment)


async def queued_nonces(pool: asyncpg.Pool, payer: str) -> tuple[str, ...]:
    """Nonces of the payer's queued, unsettled authorizations whose chain state the balance check needs."""
    rows = await pool.fetch(QUEUED_NONCES, payer)
    return tuple(row["nonce"] for row in rows)


async def enqueue(
    pool: asyncpg.Pool,
    request: NewRequest,
    *,
    balance: int | None,
    accept: Callable[[int], None],
) -> Queued:
    """Insert the request as `pending` (or `rendering`, with its render job) and commit; returns once
    it is durable.

    `balance` (the payer's on-chain USDC, for authorization payments) must cover this request plus
    their earlier unsettled ones; a per-payer advisory lock makes that check and the insert atomic.
    `accept(position)` runs before the commit and may raise to refuse the request.
    """
    async with pool.acquire() as conn:
        async with conn.transaction():
            if balance is not None:
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", request.payer)
            # Under the lock, a retry of the same payment finds the first one before the balance
            # check, which would otherwise count it twice.
            found = await _conflicting(conn, request)
            if found is not None:
                return found
            if balance is not None:
                reserved = int(await conn.fetchval(RESERVED, request.payer, list(request.debited)))
                if balance - reserved < request.amount:
                    raise PaymentRejected(
                        "insufficient_balance",
                        f"{request.payer} holds {balance} USDC units, {reserved} of them promised to "
                        f"queued requests; {request.amount} more are needed",
                    )
            request_id = uuid.uuid4()
            row = await conn.fetchrow(
                INSERT,
                request_id,
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
                "pending" if request.render_settings is None else "rendering",
            )
            if row is not None and request.render_settings is not None:
                await conn.execute(
                    "INSERT INTO render_jobs (request_id, settings) VALUES ($1, $2)",
                    request_id,
                    request.render_settings,
                )
            if row is not None:
                accept(row["position"])
                return Queued(str(request_id), row["position"], request.payer, request.payment_type, True)
        # ON CONFLICT skipped the insert: a concurrent request with the same payment or key committed
        # first (the unique index waited for it), so its row is visible now.
        found = await _conflicting(conn, request)
        if found is None:
            raise Unavailable("conflict_unresolved", "the request conflicted with one that is gone; retry")
        return found


async def _conflicting(conn: asyncpg.Connection, request: NewRequest) -> Queued | None:
    rows = await conn.fetch(
        EXISTING,
        request.payment_id,
        request.idempotency_key,
        request.payment_tx_hash,
        request.payment_log_index,
    )
    for row in rows:
        if request.idempotency_key is not None and row["idempotency_key"] == request.idempotency_key:
            return await _existing(conn, row, request.payment)
    if rows:
        raise PaymentReplayed()
    return None


async def _existing(conn: asyncpg.Connection, row: asyncpg.Record, payment: PaymentRef) -> Queued:
    """The request an Idempotency-Key already names, if it is for the same payment."""
    if not payment.matches(row):
        raise ApiError(
            "idempotency_key_reused", "this Idempotency-Key was already used with a different payment", 422
        )
    position = await conn.fetchval(POSITION, row["kind"], row["seq"]) if row["status"] in QUEUED else 0
    return Queued(str(row["id"]), position, row["payer_address"], row["payment_type"], False)


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
