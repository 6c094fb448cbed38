"""EXPLAIN (ANALYZE, BUFFERS) of every query intake's routes (and its background reads) run, with the
queries taken from the modules that run them, for bench/growth.py.

POST /mint runs one statement, intake_enqueue (migration 011), whose plans EXPLAIN does not show: its
reads are explained as copies below (with enable_seqscan off, as the function runs them), and the
call itself for its time.

A query whose plan reads a whole table (a Seq Scan on anything but a handful of rows) is flagged.
"""

import json
import os
import re
import uuid

import asyncpg

from services.intake import counts, enqueue_batches, queue, replay, throughput, watcher
from shared import render_jobs

INDEX = re.compile(r"(?:Index Scan|Index Only Scan|Bitmap Index Scan)(?: Backward)? (?:using|on) (\w+)")
SEQ = re.compile(r"Seq Scan on (\w+)")
# Tables too small for an index to matter (a row per status or queue shard, a few settings or lanes).
SMALL_TABLES = {"mint_request_counts", "mint_queue_depth", "payer_priorities", "system_settings"}
QUEUED = "('rendering', 'rendered', 'pending', 'batched', 'sent')"
# intake_enqueue's reads, as it runs them: a conflict, the payer's reservations and the queue depth in
# one statement; the payer's queued nonces where the balance is short on that count (a recheck).
ENQUEUE_READ = f"""
SELECT EXISTS (SELECT FROM mint_requests m
               WHERE m.payment_id = $1 OR m.idempotency_key = $2
                  OR (m.payment_tx_hash = $3 AND (m.payment_log_index IS NULL OR m.payment_log_index = $4))),
       (SELECT coalesce(sum(r.amount), 0) FROM mint_requests r
        WHERE r.payer_address = $5 AND r.status IN {QUEUED}
          AND r.authorization_data IS NOT NULL AND NOT r.payment_settled
          AND NOT (r.authorization_data->>'nonce' = ANY(coalesce($6::text[], '{{}}')))),
       (SELECT greatest(1, 1 + coalesce(sum(d.n), 0)) FROM mint_queue_depth d
        WHERE d.kind = $7 AND d.lane >= (SELECT coalesce((SELECT p.lane FROM payer_priorities p
                                                         WHERE p.payer_address = $5), 0)))
"""
RECHECK_NONCES = f"""
SELECT ARRAY(SELECT n.authorization_data->>'nonce' FROM mint_requests n
             WHERE n.payer_address = $1 AND n.status IN {QUEUED}
               AND n.authorization_data IS NOT NULL AND NOT n.payment_settled
             ORDER BY n.status IN ('batched', 'sent') DESC, n.seq LIMIT 64)
"""
# Run as intake_enqueue runs its reads.
NO_SEQSCAN = "SET LOCAL enable_seqscan = off"


def queries(whale: str, historical_id: str, queued_id: str) -> list[tuple[str, str, tuple]]:
    payment_id = "0x" + os.urandom(32).hex()
    authorization = json.dumps({"from": whale, "nonce": "0x" + os.urandom(32).hex()})
    enqueue_args = (
        "token", whale, "gasless", payment_id, 1_000_000, authorization, 2**31, None, None, None,
        None, None, None, 10**12, None, 0, 50.0, 60,
    )  # fmt: skip
    item = f"SELECT {queue.ITEM_COLUMNS} FROM mint_requests m WHERE id = $1"
    payer_items = (
        f"SELECT {queue.ITEM_COLUMNS} FROM mint_requests m"
        " WHERE payer_address = $1 ORDER BY seq DESC LIMIT $2"
    )
    watched = [uuid.UUID(historical_id), uuid.UUID(queued_id)]
    return [
        ("POST /mint: the request an Idempotency-Key names", queue.BY_IDEMPOTENCY_KEY, ("k",)),
        (
            "POST /mint: intake_enqueue's read: conflict, reservation (whale), depth",
            ENQUEUE_READ,
            (payment_id, "k", None, None, whale, None, "token"),
        ),
        ("POST /mint: intake_enqueue's queued nonces for a recheck (whale)", RECHECK_NONCES, (whale,)),
        ("POST /mint: intake_enqueue, the one statement (rolled back)", enqueue_batches.ONE, enqueue_args),
        ("GET /queue/status, /events/queue: counts", counts.STATUS_COUNTS, ()),
        ("GET /queue/item: historical", item, (uuid.UUID(historical_id),)),
        ("GET /queue/item: queued", item, (uuid.UUID(queued_id),)),
        (
            "GET /queue/payer: latest requests (whale)",
            payer_items,
            (whale, 100),
        ),
        (
            "GET /queue/payer: counts (whale)",
            "SELECT status, count(*) AS n FROM mint_requests WHERE payer_address = $1 GROUP BY status",
            (whale,),
        ),
        (
            "GET /nft/job: historical",
            f"SELECT {render_jobs.JOB_COLUMNS} FROM render_jobs j JOIN mint_requests m ON m.id = j.request_id"
            " WHERE j.request_id = $1",
            (uuid.UUID(historical_id),),
        ),
        ("GET /events/item: watched items", watcher.ITEMS, (watched,)),
        ("GET /events/queue: recent batches", watcher.BATCHES, (watcher.RECENT_BATCHES,)),
        ("intake background: recent throughput", throughput.RECENT, ()),
        ("intake background: replay of pending rows", replay.PENDING, (0, 1000, 0.0)),
    ]


async def explain_routes(pool: asyncpg.Pool, whale: str, historical_id: str, queued_id: str) -> str:
    """Every query's plan, as text to print; run it while requests are queued, for their positions."""
    out, flagged = [], []
    async with pool.acquire() as conn:
        for label, sql, args in queries(whale, historical_id, queued_id):
            transaction = conn.transaction()
            await transaction.start()
            try:
                if sql in (ENQUEUE_READ, RECHECK_NONCES):
                    await conn.execute(NO_SEQSCAN)
                plan = [row[0] for row in await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", *args)]
            finally:
                await transaction.rollback()
            text = "\n".join(plan)
            indexes = ", ".join(sorted(set(INDEX.findall(text)))) or "none"
            scans = sorted(set(SEQ.findall(text)) - SMALL_TABLES)
            took = re.search(r"Execution Time: ([\d.]+) ms", text)
            out.append(f"\n-- {label}: {took.group(1) if took else '?'} ms, indexes {indexes}")
            if scans:
                out.append(f"   READS WHOLE TABLE: {', '.join(scans)}")
                flagged.append(label)
            out.extend(f"   {line}" for line in plan)
    out.append(f"\nqueries reading a whole table: {', '.join(flagged) or 'none'}")
    return "\n".join(out)


BACKLOG = """
INSERT INTO mint_requests (id, payer_address, payment_type, payment_id, amount, authorization_data, status)
SELECT gen_random_uuid(), 'backlog payer ' || (i % 5000), 'gasless', 'backlog ' || $2::text || i, 1000000,
       jsonb_build_object('nonce', 'backlog ' || i), 'pending'
FROM generate_series(1, $1) i
"""


async def backlog_plans(pool: asyncpg.Pool, whale: str, count: int) -> str:
    """The payer's queued lookups of POST /mint while `count` other requests wait: they read the
    payer's queued requests only, not the whole queue (the rows are rolled back afterwards)."""
    out = [f"\n-- with a backlog of {count:,} other queued requests:"]
    async with pool.acquire() as conn:
        transaction = conn.transaction()
        await transaction.start()
        try:
            await conn.execute(BACKLOG, count, uuid.uuid4().hex)
            await conn.execute("ANALYZE mint_requests")
            await conn.execute(NO_SEQSCAN)
            for label, sql, args in queries(whale, str(uuid.uuid4()), str(uuid.uuid4()))[1:3]:
                plan = [row[0] for row in await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", *args)]
                text = "\n".join(plan)
                took = re.search(r"Execution Time: ([\d.]+) ms", text)
                indexes = ", ".join(sorted(set(INDEX.findall(text)))) or "none"
                out.append(f"   {label}: {took.group(1) if took else '?'} ms, indexes {indexes}")
        finally:
            await transaction.rollback()
    return "\n".join(out)
