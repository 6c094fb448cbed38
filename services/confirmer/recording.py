"""Recording a settled batch: its requests' new statuses and the batch's outcome in one PostgreSQL
transaction, then the events (mint.completed, mint.failed, mint.requested for the retried ones).

A retried request is recorded `confirmation_failed` with its reason, then goes back to `pending` as a
new attempt, or ends `failed` once its retries are used up.
"""

from dataclasses import dataclass

import asyncpg
from redis.asyncio import Redis

from services.confirmer import metrics
from services.confirmer.settling import Settlement
from shared.events import REQUESTED_COLUMNS, MintCompleted, MintFailed, MintRequested
from shared.streams import publish_many

COMPLETE = """
UPDATE mint_requests AS r SET status = 'completed', mint_tx_hash = c.tx_hash, token_id = c.token_id,
                              processed_at = now(), updated_at = now()
FROM unnest($1::uuid[], $2::text[], $3::numeric[]) AS c(id, tx_hash, token_id)
WHERE r.id = c.id AND r.status IN ('batched', 'sent')
RETURNING r.id, c.tx_hash, extract(epoch FROM now() - r.created_at)::float8 AS waited
"""
PAID_ELSEWHERE = "UPDATE mint_requests SET payment_settled = true WHERE id = ANY($1::uuid[])"
CONFIRMATION_FAILED = """
UPDATE mint_requests AS r SET status = 'confirmation_failed', error_message = c.reason, updated_at = now()
FROM unnest($1::uuid[], $2::text[]) AS c(id, reason)
WHERE r.id = c.id AND r.status IN ('batched', 'sent')
"""
RETRY = f"""
UPDATE mint_requests SET status = 'pending', batch_id = NULL, retry_count = retry_count + 1,
                         published_at = now(), updated_at = now()
WHERE id = ANY($1::uuid[]) AND status = 'confirmation_failed' AND retry_count < $2
RETURNING {REQUESTED_COLUMNS}
"""
FAIL = """
UPDATE mint_requests AS r SET status = 'failed', error_message = c.reason, processed_at = now(),
                              updated_at = now()
FROM unnest($1::uuid[], $2::text[]) AS c(id, reason)
WHERE r.id = c.id AND r.status IN ('batched', 'sent', 'confirmation_failed')
RETURNING r.id, c.reason
"""
# A mined batch keeps its transaction and block hash, which the finality watch compares with the
# canonical chain until the block is final.
CLOSE_BATCH = """
UPDATE batches SET status = $2, block_number = $3, gas_used = $4, confirmed_at = now(),
                   mined_tx_hash = $5, block_hash = $6
WHERE id = $1 AND status IN ('signed', 'sent')
"""


@dataclass(frozen=True)
class Streams:
    completed: str
    failed: str
    requested: str


async def record(
    pool: asyncpg.Pool,
    redis: Redis,
    streams: Streams,
    stream_maxlen: int,
    batch_id: int,
    settlement: Settlement,
    status: str,
    receipt: dict | None,
    max_retries: int,
) -> bool:
    """Record the batch's outcome (`status`: confirmed or reverted; `receipt`: the mined attempt's, if
    any) and publish what changed. False when the batch was settled already (nothing is changed)."""
    completed: list[MintCompleted] = []
    failed_events: list[MintFailed] = []
    requested: list[MintRequested] = []
    block = int(receipt["blockNumber"], 16) if receipt else None
    gas_used = int(receipt["gasUsed"], 16) if receipt else None
    tx_hash, block_hash = (receipt["transactionHash"], receipt["blockHash"]) if receipt else (None, None)
    async with pool.acquire() as conn, conn.transaction():
        if settlement.completed:
            done = await conn.fetch(
                COMPLETE,
                list(settlement.completed),
                list(settlement.completed.values()),
                [settlement.token_ids.get(i) for i in settlement.completed],
            )
            for row in done:
                metrics.REQUEST_DURATION.observe(row["waited"])
                completed.append(MintCompleted(request_id=str(row["id"]), tx_hash=row["tx_hash"]))
            metrics.MINTS_COMPLETED.inc(len(done))
        failed = dict(settlement.failed)
        if settlement.paid_elsewhere:
            await conn.execute(PAID_ELSEWHERE, list(settlement.paid_elsewhere))
        if settlement.retry:
            await conn.execute(CONFIRMATION_FAILED, list(settlement.retry), list(settlement.retry.values()))
            retried = await conn.fetch(RETRY, list(settlement.retry), max_retries)
            again = {str(r["id"]) for r in retried}
            metrics.RETRIES.inc(len(again))
            requested = [MintRequested.of_row(r) for r in retried]
            failed.update(
                {
                    i: f"{reason} (retries exhausted)"
                    for i, reason in settlement.retry.items()
                    if i not in again
                }
            )
        if failed:
            for row in await conn.fetch(FAIL, list(failed), list(failed.values())):
                metrics.MINTS_FAILED.labels(reason=row["reason"].split(":")[0][:40]).inc()
                failed_events.append(MintFailed(request_id=str(row["id"]), reason=row["reason"]))
        closed = await conn.execute(CLOSE_BATCH, batch_id, status, block, gas_used, tx_hash, block_hash)
    for stream, events in (
        (streams.completed, completed),
        (streams.failed, failed_events),
        (streams.requested, requested),
    ):
        await publish_many(redis, stream, events, stream_maxlen)
    return closed != "UPDATE 0"
