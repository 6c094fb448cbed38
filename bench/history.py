"""Historical requests for bench/growth.py: finished mint requests with their batches, status history
and render jobs, as a system that has run for a month leaves them, written by a few INSERT ... SELECT
over generate_series (minutes, not hours, for a million).

Every 20th request is an NFT (with its render job), every 33rd failed, every `whale_every`-th paid by
one payer (the whale, whose history grows with the system), the rest spread over `payers`. Batches
hold 150 entries of one kind; their raw transactions are short stand-ins, not signed transactions.
"""

import time

import asyncpg

# A wallet no test or service signs with: historical batches never share a nonce with real ones.
HISTORY_WALLET = "0x00000000000000000000000000000000000dEaD1"
ENTRIES_PER_BATCH = 150

REQUESTS = """
WITH payers AS (
    -- Joined, not subscripted: an element of a text[] is found by walking the array up to it.
    SELECT n - 1 AS n, address FROM unnest($2::text[]) WITH ORDINALITY AS listed (address, n)
), g AS (
    SELECT i,
           now() - interval '30 days' + i * (interval '30 days' / $1) AS at,
           i % cardinality($2::text[]) AS payer_n,
           CASE WHEN i % 20 = 0 THEN 'nft' ELSE 'token' END AS kind,
           CASE WHEN i % 33 = 0 THEN 'failed' ELSE 'completed' END AS status,
           -- Batches of one kind: tokens and NFTs of the same stretch go in two.
           $7::bigint + 1 + (i / 150) * 2 + (i % 20 = 0)::int AS batch
    FROM generate_series(1, $1) i
), r AS (
    SELECT g.*, CASE WHEN i % $4 = 0 THEN $3::text ELSE payers.address END AS payer
    FROM g JOIN payers ON payers.n = g.payer_n
)
INSERT INTO mint_requests (id, kind, payer_address, payment_type, payment_id, amount, authorization_data,
                           valid_before, status, batch_id, mint_tx_hash, error_message, token_id, token_uri,
                           accepted_block, created_at, updated_at, processed_at, published_at)
SELECT gen_random_uuid(), kind, payer, 'gasless',
       '0x' || encode(sha256(('payment ' || $6::text || i)::bytea), 'hex'),
       1000000,
       jsonb_build_object('from', payer, 'to', $5::text, 'value', '1000000', 'validAfter', '0',
                          'validBefore', (extract(epoch FROM at)::bigint + 3600)::text,
                          'nonce', '0x' || encode(sha256(('nonce ' || $6::text || i)::bytea), 'hex'),
                          'signature', '0x' || repeat('ab', 65)),
       extract(epoch FROM at)::bigint + 3600,
       status,
       CASE WHEN status = 'completed' THEN batch END,
       CASE WHEN status = 'completed' THEN '0x' || encode(sha256(('tx ' || batch)::bytea), 'hex') END,
       CASE WHEN status = 'failed' THEN 'not paid: authorization expired' END,
       CASE WHEN status = 'completed' AND kind = 'nft' THEN i END,
       CASE WHEN kind = 'nft' THEN 'ipfs://bafkreih' || md5(i::text) END,
       i / 2, at, at + interval '5 seconds', at + interval '5 seconds', at
FROM r ORDER BY i
"""

# The states before the last one (the trigger recorded the last at the insert).
HISTORY = """
INSERT INTO mint_request_history (request_id, status, at)
SELECT m.id, v.status, m.created_at + v.offset_seconds * interval '1 second'
FROM mint_requests m
CROSS JOIN (VALUES ('pending', 0), ('batched', 1), ('sent', 2)) AS v (status, offset_seconds)
WHERE m.seq > $1 AND m.status = 'completed'
"""

BATCHES = """
INSERT INTO batches (id, wallet, nonce, kind, status, request_ids, tx_hash, raw_tx, call_data, gas_limit,
                     max_fee_per_gas, max_priority_fee_per_gas, block_number, gas_used, created_at,
                     sent_at, confirmed_at, mined_tx_hash, block_hash, finalized_at)
SELECT batch_id, $2, batch_id, min(kind), 'confirmed', array_agg(id ORDER BY seq), min(mint_tx_hash),
       decode(repeat('02', 200), 'hex'), decode(repeat('00', 100), 'hex'), 15000000, 2000000000,
       1000000000, batch_id, 13000000, min(created_at), min(created_at), max(processed_at),
       min(mint_tx_hash), '0x' || encode(sha256(('block ' || batch_id)::bytea), 'hex'), max(processed_at)
FROM mint_requests WHERE seq > $1 AND batch_id IS NOT NULL
GROUP BY batch_id
"""

RENDER_JOBS = """
INSERT INTO render_jobs (request_id, settings, status, progress, attempts, image_cid, image_url,
                         metadata_cid, metadata_url, error, render_seconds, peak_rss_bytes, created_at,
                         started_at, finished_at, updated_at)
SELECT id,
       '{"name": "Historical", "palette": "ocean", "shape": "star", "seed": 1, "frameCount": 64,
         "size": 512, "frameDurationMs": 80}'::jsonb,
       CASE WHEN status = 'completed' THEN 'completed' ELSE 'failed' END,
       CASE WHEN status = 'completed' THEN 100 ELSE 0 END, 1,
       'bafybeig' || md5(id::text), 'http://127.0.0.1:9103/ipfs/bafybeig' || md5(id::text),
       'bafkreih' || md5(id::text), 'http://127.0.0.1:9103/ipfs/bafkreih' || md5(id::text),
       CASE WHEN status = 'failed' THEN 'render failed: out of memory' END,
       0.15, 47000000, created_at, created_at, created_at + interval '1 second', created_at
FROM mint_requests WHERE seq > $1 AND kind = 'nft'
"""


async def fill(
    conn: asyncpg.Connection, count: int, payers: list[str], whale: str, whale_every: int, treasury: str
) -> dict[str, float]:
    """Insert `count` finished requests and what goes with them; returns seconds per step."""
    seconds: dict[str, float] = {}
    seq_before = await conn.fetchval("SELECT coalesce(max(seq), 0) FROM mint_requests")
    batch_base = await conn.fetchval("SELECT coalesce(max(id), 0) FROM batches")
    # Distinct payment ids and nonces on every run over the same database.
    run = f"{seq_before}:"
    steps = [
        ("mint_requests", REQUESTS, (count, payers, whale, whale_every, treasury, run, batch_base)),
        ("mint_request_history", HISTORY, (seq_before,)),
        ("batches", BATCHES, (seq_before, HISTORY_WALLET)),
        ("render_jobs", RENDER_JOBS, (seq_before,)),
    ]
    for table, sql, args in steps:
        started = time.perf_counter()
        async with conn.transaction():
            await conn.execute(sql, *args)
        seconds[table] = time.perf_counter() - started
    await conn.execute("SELECT setval(pg_get_serial_sequence('batches', 'id'), max(id)) FROM batches")
    started = time.perf_counter()
    # What autovacuum would do by itself in time: statistics, and the visibility map index-only
    # scans need.
    await conn.execute("VACUUM (ANALYZE) mint_requests, mint_request_history, batches, render_jobs")
    seconds["vacuum analyze"] = time.perf_counter() - started
    return seconds
