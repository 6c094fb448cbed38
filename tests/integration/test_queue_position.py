"""The queue position and wait a request is answered with keep their meaning now that they come from
the depth counters (migration 011) instead of a count: the number of requests of its kind queued ahead
of it plus one, whoever changed the queue (intake, the batcher and confirmer, a reorg, an operator's
SQL), and a wait of ceil(position / rate) seconds."""

import math
import uuid
from collections.abc import Callable

import asyncpg
from eth_account import Account
from eth_account.signers.local import LocalAccount

from services.intake.queue import QUEUED_SQL
from services.intake.resources import THROUGHPUT
from tests.support.intake import Intake

Fund = Callable[..., list[LocalAccount]]
# Requests deleted with their history (a foreign key keeps history from outliving its request).
DELETE = """
WITH history AS (DELETE FROM mint_request_history WHERE request_id = ANY($1::uuid[]))
DELETE FROM mint_requests WHERE id = ANY($1::uuid[])
"""


async def counted_positions(pool: asyncpg.Pool) -> dict[str, int]:
    """Each kind's queue depth as a count over its rows: what the counters must agree with."""
    rows = await pool.fetch(
        f"SELECT kind, count(*) AS n FROM mint_requests WHERE status IN {QUEUED_SQL} GROUP BY kind"
    )
    return {row["kind"]: row["n"] for row in rows}


async def kept_depths(pool: asyncpg.Pool) -> dict[str, int]:
    rows = await pool.fetch("SELECT kind, sum(n)::bigint AS n FROM mint_queue_depth GROUP BY kind")
    return {row["kind"]: row["n"] for row in rows if row["n"]}


async def insert_rows(
    pool: asyncpg.Pool, count: int, kind: str = "token", status: str = "pending"
) -> list[str]:
    ids = [str(uuid.uuid4()) for _ in range(count)]
    await pool.execute(
        "INSERT INTO mint_requests (id, kind, payer_address, payment_type, payment_id, amount, status)"
        " SELECT i::uuid, $2, $3, 'custom', md5(i), 1, $4 FROM unnest($1::text[]) AS i",
        ids,
        kind,
        Account.create().address,
        status,
    )
    return ids


async def test_the_answered_position_is_the_queue_ahead_of_it_plus_one(
    intake: Intake, fund_payers: Fund
) -> None:
    pool = intake.pool
    payers = fund_payers(3)
    # Rows from elsewhere (an operator's import, another intake): 5 queued tokens, 3 NFTs waiting
    # for their render, 4 finished.
    await insert_rows(pool, 5)
    await insert_rows(pool, 3, kind="nft", status="rendering")
    await insert_rows(pool, 4, status="completed")
    status, first = await intake.gasless(intake.payment(payers[0]))
    assert status == 202 and first["queuePosition"] == 6

    # Two of those leave the queue (minted, failed); a request the batcher holds stays in it.
    await pool.execute(
        "UPDATE mint_requests SET status = CASE WHEN seq % 2 = 0 THEN 'completed' ELSE 'failed' END"
        " WHERE id IN (SELECT id FROM mint_requests WHERE kind = 'token' AND status = 'pending'"
        "              AND payment_type = 'custom' ORDER BY seq LIMIT 2)"
    )
    await pool.execute(
        "UPDATE mint_requests SET status = 'batched' WHERE id IN"
        " (SELECT id FROM mint_requests WHERE status = 'pending' ORDER BY seq LIMIT 1)"
    )
    status, second = await intake.gasless(intake.payment(payers[1]))
    assert status == 202 and second["queuePosition"] == 5

    # A completed request reorged out goes back into the queue, and one retried after a failed
    # confirmation too; an operator deletes one that never left.
    await pool.execute(
        "UPDATE mint_requests SET status = 'sent' WHERE id IN"
        " (SELECT id FROM mint_requests WHERE status = 'completed' ORDER BY seq LIMIT 2)"
    )
    [deleted] = await pool.fetchval(
        "SELECT array_agg(id::text) FROM (SELECT id FROM mint_requests"
        " WHERE status = 'pending' AND payment_type = 'custom' ORDER BY seq LIMIT 1) one"
    )
    await pool.execute(DELETE, [deleted])
    status, third = await intake.gasless(intake.payment(payers[2]))
    assert status == 202 and third["queuePosition"] == 7
    assert await kept_depths(pool) == await counted_positions(pool) == {"token": 7, "nft": 3}

    # The same position as the count-based read of the item, and the wait at the current rate.
    rate = intake.app[THROUGHPUT].per_second
    for body in (first, second, third):
        assert body["estimatedWaitSeconds"] == math.ceil(body["queuePosition"] / rate)
    item = (await intake.get(f"/queue/item/{third['queueId']}"))[1]["item"]
    assert item["queue_position"] == third["queuePosition"]


async def test_a_replayed_request_is_answered_its_current_position(
    intake: Intake, payer: LocalAccount
) -> None:
    await insert_rows(intake.pool, 3)
    payment, key = intake.payment(payer), {"Idempotency-Key": "where-am-i"}
    status, body = await intake.gasless(payment, headers=key)
    assert (status, body["queuePosition"]) == (202, 4)
    await intake.pool.execute(
        "UPDATE mint_requests SET status = 'completed' WHERE payment_type = 'custom'"
        " AND id IN (SELECT id FROM mint_requests ORDER BY seq LIMIT 2)"
    )
    status, again = await intake.gasless(payment, headers=key)
    assert (status, again["queueId"], again["queuePosition"]) == (200, body["queueId"], 2)
    assert again["estimatedWaitSeconds"] == math.ceil(2 / intake.app[THROUGHPUT].per_second)
    await intake.pool.execute("UPDATE mint_requests SET status = 'completed'")
    status, done = await intake.gasless(payment, headers=key)
    assert (status, done["queuePosition"], done["estimatedWaitSeconds"]) == (200, 0, 0)


async def test_the_counters_follow_every_kind_of_change(pg_pool: asyncpg.Pool) -> None:
    """Many statements, each changing many rows at once, then TRUNCATE: the kept depths stay the count."""
    tokens = await insert_rows(pg_pool, 40)
    nfts = await insert_rows(pg_pool, 12, kind="nft", status="rendering")
    changes = [
        ("UPDATE mint_requests SET status = 'rendered' WHERE id = ANY($1::uuid[])", nfts[:6]),
        ("UPDATE mint_requests SET status = 'pending' WHERE id = ANY($1::uuid[])", nfts[:6]),
        ("UPDATE mint_requests SET status = 'batched' WHERE id = ANY($1::uuid[])", tokens[:20]),
        ("UPDATE mint_requests SET status = 'sent' WHERE id = ANY($1::uuid[])", tokens[:20]),
        ("UPDATE mint_requests SET status = 'completed' WHERE id = ANY($1::uuid[])", tokens[:15] + nfts[:2]),
        ("UPDATE mint_requests SET status = 'confirmation_failed' WHERE id = ANY($1::uuid[])", tokens[15:20]),
        ("UPDATE mint_requests SET status = 'pending' WHERE id = ANY($1::uuid[])", tokens[15:18]),
        ("UPDATE mint_requests SET status = 'failed' WHERE id = ANY($1::uuid[])", tokens[30:] + nfts[10:]),
        ("UPDATE mint_requests SET status = 'sent' WHERE id = ANY($1::uuid[])", tokens[:5]),
        (DELETE, tokens[5:10] + tokens[25:28]),
    ]
    for statement, ids in changes:
        await pg_pool.execute(statement, ids)
        assert await kept_depths(pg_pool) == await counted_positions(pg_pool), statement
    # A transaction that rolls back leaves the counters as they were.
    async with pg_pool.acquire() as conn:
        transaction = conn.transaction()
        await transaction.start()
        await conn.execute("UPDATE mint_requests SET status = 'completed'")
        await transaction.rollback()
    assert await kept_depths(pg_pool) == await counted_positions(pg_pool)
    await pg_pool.execute(
        "TRUNCATE mint_request_history, render_jobs, webhook_attempts, webhook_deliveries, mint_requests"
    )
    assert await kept_depths(pg_pool) == {} == await counted_positions(pg_pool)
    await insert_rows(pg_pool, 2)
    assert await kept_depths(pg_pool) == {"token": 2}
