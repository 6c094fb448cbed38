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

EXISTING = """
SELECT id, kind, seq, status, payer_address, payment_type, payment_id, idempotency_key
FROM mint_requests WHERE payment_id = $1 OR idempotency_key = $2
"""
BY_IDEMPOTENCY_KEY = """
SELECT id, kind, seq, status, payer_address, payment_type, payment_id, idempotency_key
FROM mint_requests WHERE idempotency_key = $1
"""
# What this payer's earlier, not yet settled authorizations will take from their balance.
RESERVED = f"""
SELECT coalesce(sum(amount), 0) FROM mint_requests
WHERE payer_address = $1 AND status IN {QUEUED_SQL} AND authorization_data IS NOT NULL
"""
# The count runs on the statement's snapshot, which does not hold the new row: hence the + 1.
INSERT = f"""
WITH inserted AS (
    INSERT INTO mint_requests (id, kind, payer_address, payment_type, payment_id, amount,
                               authorization_data, valid_before, payment_tx_hash, idempotency_key,
                               callback_url, status)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
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


@dataclass(frozen=True)
class Queued:
    id: str
    position: int
    payer: str
    payment_type: str
    # False when an Idempotency-Key found the request an earlier call queued.
    created: bool


async def find_by_idempotency_key(pool: asyncpg.Pool, key: str, payment_id: str) -> Queued | None:
    async with pool.acquire() as conn:
        row = await conn.fetchrow(BY_IDEMPOTENCY_KEY, key)
        return None if row is None else await _existing(conn, row, payment_id)


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
                reserved = int(await conn.fetchval(RESERVED, request.payer))
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
    rows = await conn.fetch(EXISTING, request.payment_id, request.idempotency_key)
    for row in rows:
        if request.idempotency_key is not None and row["idempotency_key"] == request.idempotency_key:
            return await _existing(conn, row, request.payment_id)
    if rows:
        raise PaymentReplayed()
    return None


async def _existing(conn: asyncpg.Connection, row: asyncpg.Record, payment_id: str) -> Queued:
    """The request an Idempotency-Key already names, if it is for the same payment."""
    if row["payment_id"] != payment_id:
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


async def status_counts(pool: asyncpg.Pool) -> dict[str, int]:
    rows = await pool.fetch("SELECT status, count(*) AS n FROM mint_requests GROUP BY status")
    return {row["status"]: row["n"] for row in rows}


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
