"""What the console reads from PostgreSQL: the queue's counts, the last hour, and the searchable lists
of requests, batches and render jobs with their details. Each search is served by an index (payer:
mint_requests_payer; a transaction hash: batch_transactions' key and the payment index; a status:
the queue's partial index or the seq order), so the console stays cheap on a large table."""

import uuid
from typing import Any

import asyncpg

QUEUED = ("rendering", "rendered", "pending", "batched", "sent")
# Queued requests per status and kind through the partial index of queued requests; finished ones from
# the counts the triggers of migration 006 keep (no scan of every request ever made).
COUNTS = """
SELECT status, kind, count(*) AS n FROM mint_requests
WHERE status IN ('rendering', 'rendered', 'pending', 'batched', 'sent') GROUP BY status, kind
UNION ALL
SELECT status, NULL, sum(n)::bigint FROM mint_request_counts GROUP BY status HAVING sum(n) <> 0
"""
OLDEST_PENDING = """
SELECT extract(epoch FROM now() - min(created_at))::float8 FROM mint_requests WHERE status = 'pending'
"""
LAST_HOUR = """
SELECT count(*) AS completed,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM processed_at - created_at)) AS p50,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM processed_at - created_at)) AS p95,
       max(extract(epoch FROM processed_at - created_at))::float8 AS max
FROM mint_requests WHERE status = 'completed' AND processed_at >= now() - interval '1 hour'
"""
PER_MINUTE = """
SELECT floor(extract(epoch FROM now() - processed_at) / 60)::int AS minutes_ago, count(*) AS n
FROM mint_requests WHERE status = 'completed' AND processed_at >= now() - interval '1 hour'
GROUP BY 1
"""

REQUEST_COLUMNS = """
m.id, m.seq, m.kind, m.status, m.payer_address, m.payment_type, m.lane, m.batch_id, m.mint_tx_hash,
m.payment_tx_hash, m.error_message, m.retry_count, m.token_uri, m.token_id::text AS token_id,
m.created_at, m.updated_at, m.processed_at
"""
# A hash names a request through any attempt of a batch it was in, or its custom payment.
REQUESTS = f"""
SELECT {REQUEST_COLUMNS} FROM mint_requests m
WHERE ($1::text IS NULL OR m.status = $1)
  AND ($2::text[] IS NULL OR m.payer_address = ANY($2::text[]))
  AND ($3::uuid IS NULL OR m.id = $3)
  AND ($4::text IS NULL
       OR m.payment_tx_hash = $4
       OR m.id = ANY(ARRAY(SELECT unnest(b.request_ids) FROM batches b
                           WHERE b.id IN (SELECT t.batch_id FROM batch_transactions t WHERE t.tx_hash = $4)
                              OR b.tx_hash = $4 OR b.mined_tx_hash = $4)))
  AND ($5::bigint IS NULL OR m.seq < $5)
ORDER BY m.seq DESC LIMIT $6
"""
HISTORY = """
SELECT status, reason, at FROM mint_request_history WHERE request_id = $1 ORDER BY id
"""
RENDER_JOB_COLUMNS = """
j.request_id, j.status, j.progress, j.attempts, j.image_cid, j.image_url, j.metadata_cid, j.metadata_url,
j.error, j.leased_by, j.lease_until, j.render_seconds, j.created_at, j.started_at, j.finished_at,
j.updated_at, j.settings
"""
RENDER_JOB = f"SELECT {RENDER_JOB_COLUMNS} FROM render_jobs j WHERE j.request_id = $1"
RENDER_JOBS = f"""
SELECT {RENDER_JOB_COLUMNS}, m.status AS request_status FROM render_jobs j
JOIN mint_requests m ON m.id = j.request_id
WHERE ($1::text IS NULL OR j.status = $1) AND ($2::timestamptz IS NULL OR j.created_at < $2)
ORDER BY j.created_at DESC LIMIT $3
"""

BATCH_COLUMNS = """
b.id, b.wallet, b.nonce, b.kind, b.status, cardinality(b.request_ids) AS entries, b.tx_hash,
b.mined_tx_hash, b.attempts, b.gas_limit, b.gas_used, b.max_fee_per_gas::text AS max_fee_per_gas,
b.max_priority_fee_per_gas::text AS max_priority_fee_per_gas, b.block_number, b.block_hash, b.fill_reason,
b.created_at, b.sent_at, b.confirmed_at, b.finalized_at,
extract(epoch FROM now() - b.created_at)::float8 AS age_seconds
"""
BATCHES = f"""
SELECT {BATCH_COLUMNS} FROM batches b
WHERE ($1::text IS NULL OR b.status = $1)
  AND ($2::text[] IS NULL OR b.wallet = ANY($2::text[]))
  AND ($3::text IS NULL OR b.id IN (SELECT t.batch_id FROM batch_transactions t WHERE t.tx_hash = $3)
       OR b.tx_hash = $3 OR b.mined_tx_hash = $3)
  AND ($4::bigint IS NULL OR b.id = $4)
  AND ($5::bigint IS NULL OR b.id < $5)
ORDER BY b.id DESC LIMIT $6
"""
BATCH = f"SELECT {BATCH_COLUMNS}, b.request_ids FROM batches b WHERE b.id = $1"
ATTEMPTS = """
SELECT tx_hash, max_fee_per_gas::text AS max_fee_per_gas,
       max_priority_fee_per_gas::text AS max_priority_fee_per_gas, created_at
FROM batch_transactions WHERE batch_id = $1 ORDER BY created_at, tx_hash
"""
# Each entry's outcome: what became of the request, and whether it is still this batch's.
ENTRIES = """
SELECT e.position::int AS position, e.id, m.status, m.batch_id, m.mint_tx_hash, m.error_message,
       m.token_id::text AS token_id, m.payer_address
FROM unnest($1::uuid[]) WITH ORDINALITY AS e(id, position)
LEFT JOIN mint_requests m ON m.id = e.id
ORDER BY e.position
"""
# The batches a request is known to have been in: its current one and the one whose attempt minted it.
REQUEST_BATCHES = f"""
SELECT {BATCH_COLUMNS} FROM batches b
WHERE b.id = $1 OR b.id IN (SELECT t.batch_id FROM batch_transactions t WHERE t.tx_hash = $2)
   OR b.mined_tx_hash = $2
ORDER BY b.id
"""


async def counts(pool: asyncpg.Pool) -> dict[str, Any]:
    by_status: dict[str, dict[str, int]] = {}
    for row in await pool.fetch(COUNTS):
        by_status.setdefault(row["status"], {})[row["kind"] or "all"] = row["n"]
    totals = {status: sum(kinds.values()) for status, kinds in by_status.items()}
    return {
        "by_status": by_status,
        "totals": totals,
        "queue_depth": sum(totals.get(status, 0) for status in QUEUED),
        "oldest_pending_seconds": await pool.fetchval(OLDEST_PENDING),
    }


async def last_hour(pool: asyncpg.Pool) -> dict[str, Any]:
    summary = await pool.fetchrow(LAST_HOUR)
    per_minute = [0] * 60
    for row in await pool.fetch(PER_MINUTE):
        if 0 <= row["minutes_ago"] < 60:
            per_minute[row["minutes_ago"]] = row["n"]
    return {
        "completed": summary["completed"],
        "mints_per_minute": round(summary["completed"] / 60, 2),
        "latency_seconds": {"p50": summary["p50"], "p95": summary["p95"], "max": summary["max"]},
        # Oldest minute first, the current (partial) minute last.
        "per_minute": per_minute[::-1],
    }


async def requests(
    pool: asyncpg.Pool,
    status: str | None,
    payer: str | None,
    request_id: uuid.UUID | None,
    tx_hash: str | None,
    before: int | None,
    limit: int,
) -> list[dict[str, Any]]:
    # Stored as intake checksums it; imported or older rows may be lower-case.
    payers = [payer, payer.lower()] if payer else None
    rows = await pool.fetch(REQUESTS, status, payers, request_id, tx_hash, before, limit)
    return [dict(row) for row in rows]


async def request_detail(pool: asyncpg.Pool, request_id: uuid.UUID) -> dict[str, Any] | None:
    row = await pool.fetchrow(f"SELECT {REQUEST_COLUMNS} FROM mint_requests m WHERE m.id = $1", request_id)
    if row is None:
        return None
    job = await pool.fetchrow(RENDER_JOB, request_id)
    batches = await pool.fetch(REQUEST_BATCHES, row["batch_id"], row["mint_tx_hash"])
    return {
        **dict(row),
        "history": [dict(change) for change in await pool.fetch(HISTORY, request_id)],
        "render_job": dict(job) if job else None,
        "batches": [dict(batch) for batch in batches],
    }


async def batches(
    pool: asyncpg.Pool,
    status: str | None,
    wallet: str | None,
    tx_hash: str | None,
    batch_id: int | None,
    before: int | None,
    limit: int,
) -> list[dict[str, Any]]:
    wallets = [wallet, wallet.lower()] if wallet else None
    return [dict(row) for row in await pool.fetch(BATCHES, status, wallets, tx_hash, batch_id, before, limit)]


async def batch_detail(pool: asyncpg.Pool, batch_id: int) -> dict[str, Any] | None:
    row = await pool.fetchrow(BATCH, batch_id)
    if row is None:
        return None
    batch = dict(row)
    request_ids = batch.pop("request_ids")
    entries = []
    for entry in await pool.fetch(ENTRIES, request_ids):
        outcome = dict(entry)
        outcome["in_this_batch"] = entry["batch_id"] == batch_id or (
            entry["mint_tx_hash"] is not None
            and entry["mint_tx_hash"] in {batch["tx_hash"], batch["mined_tx_hash"]}
        )
        entries.append(outcome)
    attempts = [dict(a) for a in await pool.fetch(ATTEMPTS, batch_id)]
    return {**batch, "transactions": attempts, "entry_outcomes": entries}


async def render_jobs(
    pool: asyncpg.Pool, status: str | None, before: Any, limit: int
) -> list[dict[str, Any]]:
    return [dict(row) for row in await pool.fetch(RENDER_JOBS, status, before, limit)]


async def render_job(pool: asyncpg.Pool, request_id: uuid.UUID) -> dict[str, Any] | None:
    row = await pool.fetchrow(RENDER_JOB, request_id)
    return dict(row) if row else None
