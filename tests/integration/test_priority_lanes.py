"""Priority lanes on real Redis, PostgreSQL and anvil: payers given a lane (payer_priorities) have their
requests counted and minted ahead of lower lanes. With a backlog, VIP requests sent last are minted
first; the lowest lane still completes within its ageing bound while higher lanes keep it waiting; a
queue position counts its own lane and the lanes above it, never the ones below."""

import math
import uuid
from typing import Any

import asyncpg
from eth_account.signers.local import LocalAccount
from redis.asyncio import Redis
from web3 import HTTPProvider, Web3

from admin.common import Admin
from admin.priorities import clear_priority, set_priority
from services.intake.payments import payment_id as authorization_payment_id
from services.intake.queue import QUEUED_SQL
from services.intake.resources import THROUGHPUT
from shared import keys
from shared.deploy import Deployment
from shared.events import FIELD, MintRequested, decode, encode
from shared.keys import Keys
from tests.integration.test_batcher_confirmer import logged
from tests.integration.test_status_page import next_event, sse_events
from tests.support.audit import minted_payment_ids
from tests.support.batcher import in_process_batcher
from tests.support.intake import Intake
from tests.support.payments import sign_authorization
from tests.support.requests import wait_final


def operator(intake: Intake) -> Admin:
    """The admin functions' handle on the test's database, as an operator named `ops`."""
    return Admin(intake.settings, intake.pool, intake.redis, actor="ops")


async def queued_rows(pool: asyncpg.Pool, count: int, lane: int, status: str = "pending") -> list[str]:
    """Requests queued from elsewhere (another intake, an import), straight into PostgreSQL."""
    ids = [str(uuid.uuid4()) for _ in range(count)]
    await pool.execute(
        "INSERT INTO mint_requests (id, payer_address, payment_type, payment_id, amount, status, lane)"
        " SELECT i::uuid, $2, 'custom', md5(i), 1, $3, $4 FROM unnest($1::text[]) AS i",
        ids,
        "0x" + "12" * 20,
        status,
        lane,
    )
    return ids


async def depths_per_lane(
    pool: asyncpg.Pool,
) -> tuple[dict[tuple[str, int], int], dict[tuple[str, int], int]]:
    """(kept by the counters, counted over the rows) queued requests per kind and lane."""
    kept = await pool.fetch(
        "SELECT kind, lane, sum(n)::bigint AS n FROM mint_queue_depth GROUP BY kind, lane"
    )
    counted = await pool.fetch(
        f"SELECT kind, lane, count(*) AS n FROM mint_requests WHERE status IN {QUEUED_SQL}"
        " GROUP BY kind, lane"
    )
    return (
        {(r["kind"], r["lane"]): r["n"] for r in kept if r["n"]},
        {(r["kind"], r["lane"]): r["n"] for r in counted},
    )


async def position_of(intake: Intake, queue_id: str) -> int:
    status, body = await intake.get(f"/queue/item/{queue_id}")
    assert status == 200, body
    return body["item"]["queue_position"]


async def test_a_position_counts_its_lane_and_the_lanes_above_it(intake: Intake, fund_payers: Any) -> None:
    pool = intake.pool
    normal, silver, gold = fund_payers(3)
    await set_priority(operator(intake), silver.address.lower(), 3)  # any spelling: stored checksummed
    await set_priority(operator(intake), gold.address, 7)
    # Queued before: 4 in lane 0, 2 in lane 3, 1 in lane 7; and lane 7's finished ones count for nothing.
    await queued_rows(pool, 4, lane=0)
    await queued_rows(pool, 2, lane=3)
    await queued_rows(pool, 1, lane=7)
    await queued_rows(pool, 2, lane=7, status="completed")
    rate = intake.app[THROUGHPUT].per_second

    answers = {}
    for name, payer, position in (("gold", gold, 2), ("silver", silver, 2 + 2 + 1), ("normal", normal, 10)):
        status, body = await intake.gasless(intake.payment(payer), headers={"Idempotency-Key": name})
        assert status == 202, body
        assert (body["queuePosition"], body["estimatedWaitSeconds"]) == (position, math.ceil(position / rate))
        answers[name] = body
    ids = {name: body["queueId"] for name, body in answers.items()}
    lanes = await pool.fetch(
        "SELECT id::text, lane, eta_seconds FROM mint_requests WHERE id = ANY($1::uuid[])", list(ids.values())
    )
    by_id = {r["id"]: r for r in lanes}
    assert [by_id[ids[n]]["lane"] for n in ("gold", "silver", "normal")] == [7, 3, 0]
    # The wait each was answered is stored with it: what the batcher's ageing rule measures against.
    assert all(by_id[ids[n]]["eta_seconds"] == answers[n]["estimatedWaitSeconds"] for n in ids)
    # The stream entries carry the lane to the batcher.
    entries = await intake.redis.xrange(intake.settings.keys.stream(keys.MINT_REQUESTED))
    carried = {e.request_id: e.lane for e in (decode(fields[FIELD]) for _, fields in entries)}  # type: ignore[union-attr]
    assert carried == {ids["gold"]: 7, ids["silver"]: 3, ids["normal"]: 0}

    # The count-based reads agree, and a request of a higher lane accepted later moves the lower ones
    # back: it will be minted before them.
    assert [await position_of(intake, ids[n]) for n in ("gold", "silver", "normal")] == [2, 5, 10]
    status, later = await intake.gasless(intake.payment(gold))
    assert (status, later["queuePosition"]) == (202, 3)
    assert [await position_of(intake, ids[n]) for n in ("gold", "silver", "normal")] == [2, 6, 11]
    # The live item stream too (one query for every watched request).
    async with intake.client.get(f"/events/item/{ids['normal']}") as response:
        name, state = await next_event(sse_events(response))
        assert (name, state["queuePosition"]) == ("item", 11)
    async with intake.client.get(f"/events/item/{ids['silver']}") as response:
        assert (await next_event(sse_events(response)))[1]["queuePosition"] == 6

    # Lane 7's queued rows leave the queue: the lanes below move up; the counters follow per lane.
    await pool.execute(
        "UPDATE mint_requests SET status = 'completed' WHERE lane = 7 AND payment_type = 'custom'"
    )
    assert [await position_of(intake, ids[n]) for n in ("gold", "silver", "normal")] == [1, 5, 10]
    kept, counted = await depths_per_lane(pool)
    assert kept == counted == {("token", 0): 5, ("token", 3): 3, ("token", 7): 2}

    # Cleared: the payer's next request is in lane 0, behind everyone.
    await clear_priority(operator(intake), gold.address)
    status, cleared = await intake.gasless(intake.payment(gold))
    assert (status, cleared["queuePosition"]) == (202, 11)


async def test_an_idempotent_replay_is_answered_its_position_in_its_lane(
    intake: Intake, payer: LocalAccount
) -> None:
    await set_priority(operator(intake), payer.address, 5)
    await queued_rows(intake.pool, 3, lane=0)
    await queued_rows(intake.pool, 1, lane=5)
    payment, key = intake.payment(payer), {"Idempotency-Key": "vip-again"}
    status, first = await intake.gasless(payment, headers=key)
    assert (status, first["queuePosition"]) == (202, 2)
    await queued_rows(intake.pool, 1, lane=9)  # goes before it
    await queued_rows(intake.pool, 5, lane=0)  # does not
    status, again = await intake.gasless(payment, headers=key)
    assert (status, again["queueId"], again["queuePosition"]) == (200, first["queueId"], 3)


async def test_with_a_backlog_vip_requests_sent_last_are_minted_first(
    intake: Intake, fund_payers: Any, services: Any, anvil: Any, deployment: Deployment
) -> None:
    """20 requests of lane 0 queued, then 5 of VIPs (lanes 5 and 8), then the batcher starts: the first
    batch on the chain carries the VIPs, lane 8 first, and the backlog follows in the order it came."""
    normal, vips = fund_payers(20), fund_payers(5)
    for vip in vips[:3]:
        await set_priority(operator(intake), vip.address, 5)
    for vip in vips[3:]:
        await set_priority(operator(intake), vip.address, 8)
    backlog = []
    for position, payer in enumerate(normal, 1):
        status, body = await intake.gasless(intake.payment(payer))
        assert (status, body["queuePosition"]) == (202, position), body
        backlog.append(body["queueId"])
    first = []
    for payer, position in zip(vips, (1, 2, 3, 1, 2), strict=True):
        status, body = await intake.gasless(intake.payment(payer))
        assert (status, body["queuePosition"]) == (202, position), body  # the backlog is behind them
        first.append(body["queueId"])

    # Ageing far away: this test is about the lanes alone (the next one is about ageing).
    batcher = services(
        "batcher", BATCHER_BATCH_SIZE="5", BATCHER_BATCH_WINDOW_SECONDS="0.05", BATCHER_AGEING_MULTIPLE="500"
    )
    services("confirmer")
    rows = await wait_final(intake.pool, backlog + first, timeout=90)
    assert {r["status"] for r in rows} == {"completed"}, batcher.log_tail()

    by_id = {str(r["id"]): r for r in rows}
    batches = await intake.pool.fetch("SELECT request_ids FROM batches ORDER BY nonce")
    assert [str(i) for i in batches[0]["request_ids"]] == first[3:] + first[:3]
    assert [str(i) for b in batches[1:] for i in b["request_ids"]] == backlog
    # On the chain: the VIPs' Minted events come first, lane 8's before lane 5's, then the backlog.
    minted = minted_payment_ids(Web3(HTTPProvider(anvil.rpc_url)), deployment, deployment.deployment_block)
    expected = [by_id[i]["payment_id"] for i in first[3:] + first[:3] + backlog]
    assert minted == expected


INSERT_REQUEST = """
INSERT INTO mint_requests (id, payer_address, payment_type, payment_id, amount, authorization_data,
                           valid_before, status, lane, eta_seconds)
VALUES ($1, $2, 'gasless', $3, $4, $5, $6, 'pending', $7, $8)
"""


async def in_lane(
    pool: asyncpg.Pool,
    deployment: Deployment,
    signed: list[tuple[dict[str, str], str]],
    lane: int,
    eta_seconds: int,
) -> tuple[list[str], list[MintRequested]]:
    """Requests queued as intake queues them (rows committed with their lane and ETA, all accepted at
    one moment), and the events that announce them, for the caller to publish."""
    rows = [
        (
            uuid.uuid4(),
            authorization["from"],
            authorization_payment_id(authorization["from"], authorization["nonce"]),
            deployment.price,
            {**authorization, "signature": signature},
            int(authorization["validBefore"]),
            lane,
            eta_seconds,
        )
        for authorization, signature in signed
    ]
    async with pool.acquire() as conn, conn.transaction():
        accepted = await conn.fetchval("SELECT now()")  # every row's created_at
        await conn.executemany(INSERT_REQUEST, rows)
    events = [
        MintRequested(
            request_id=str(row[0]),
            valid_before=row[5],
            lane=lane,
            accepted_ms=int(accepted.timestamp() * 1000),
            eta_seconds=eta_seconds,
        )
        for row in rows
    ]
    return [str(row[0]) for row in rows], events


async def test_the_lowest_lane_completes_within_its_ageing_bound_while_vips_keep_coming_first(
    settings_env: dict[str, str],
    services: Any,
    pg_pool: asyncpg.Pool,
    redis_client: Redis,
    deployment: Deployment,
    fund_payers: Any,
    anvil: Any,
) -> None:
    """10 requests of lane 0 (each promised a 1 s wait) queued just before 400 of lane 5, one batch in
    flight at a time, the ageing multiple at 3: lane 5 goes first until lane 0 has waited 3 s, then lane
    0 goes before the VIPs still queued, and completes within its bound (plus a batch's time), not after
    the VIPs."""
    vips, normal = fund_payers(40), fund_payers(10)
    # The VIPs' lane, as an operator set it: the batcher reads ahead while any payer has one.
    await pg_pool.executemany(
        "INSERT INTO payer_priorities (payer_address, lane, set_by, source) VALUES ($1, 5, 'ops', 'cli')",
        [(vip.address,) for vip in vips],
    )
    batcher = services(
        "batcher",
        BATCHER_BATCH_SIZE="10",
        BATCHER_BATCH_WINDOW_SECONDS="0.05",
        BATCHER_MAX_IN_FLIGHT="1",
        BATCHER_AGEING_MULTIPLE="3",
    )
    services("confirmer")
    await logged(batcher, "this batcher is active")

    low_signed = [sign_authorization(payer, deployment) for payer in normal]
    high_signed = [sign_authorization(vip, deployment) for vip in vips for _ in range(10)]
    bound = 3 * 1
    low, low_events = await in_lane(pg_pool, deployment, low_signed, lane=0, eta_seconds=1)
    high, high_events = await in_lane(pg_pool, deployment, high_signed, lane=5, eta_seconds=60)
    stream = Keys(settings_env["MINTLINE_NAMESPACE"]).stream(keys.MINT_REQUESTED)
    # In one transaction: the batcher sees the lane 0 requests first and the VIPs with them.
    async with redis_client.pipeline(transaction=True) as pipe:
        for event in low_events + high_events:
            pipe.xadd(stream, {FIELD: encode(event)})
        await pipe.execute()

    rows = await wait_final(pg_pool, low + high, timeout=150)
    assert {r["status"] for r in rows} == {"completed"}, batcher.log_tail()
    batches = await pg_pool.fetch("SELECT id, request_ids, created_at FROM batches ORDER BY nonce")
    lane_of = {str(r["id"]): r["lane"] for r in rows}
    lanes = [{lane_of[str(i)] for i in b["request_ids"]} for b in batches]
    (low_batch,) = [n for n, carried in enumerate(lanes) if 0 in carried]
    assert lanes[low_batch] == {0}, lanes
    # Lane 5 went first while lane 0 was within its bound...
    assert low_batch > 0 and all(carried == {5} for carried in lanes[:low_batch]), lanes
    # ...and lane 0 went once past it, ahead of the VIPs still queued (at least a few batches of them).
    assert len(lanes) - low_batch - 1 >= 10, lanes
    accepted = min(r["created_at"] for r in rows if r["lane"] == 0)
    signed_after = (batches[low_batch]["created_at"] - accepted).total_seconds()
    assert bound <= signed_after + 0.5 and signed_after <= bound + 4, signed_after
    completed_after = max(
        (r["processed_at"] - r["created_at"]).total_seconds() for r in rows if r["lane"] == 0
    )
    assert completed_after <= bound + 8, completed_after
    # On the chain too: lane 0's mints come before the last VIPs'.
    minted = minted_payment_ids(Web3(HTTPProvider(anvil.rpc_url)), deployment, deployment.deployment_block)
    payment_lane = {r["payment_id"]: r["lane"] for r in rows}
    chain_lanes = [payment_lane[p] for p in minted]
    assert chain_lanes.index(0) > 0 and 5 in chain_lanes[chain_lanes.index(0) + 10 :], chain_lanes


async def test_lanes_are_in_use_while_a_payer_has_one_or_a_higher_lane_is_queued(
    env: dict[str, str], pg_pool: asyncpg.Pool, redis_client: Redis
) -> None:
    """Only then does a batcher read ahead of its next batch (taking.py): without lanes it reads a batch
    at a time as before, and its backlog stays in the stream for the other wallets."""
    async with in_process_batcher(pg_pool, redis_client) as batcher:
        await batcher.read_lanes_in_use()
        assert batcher.lanes_in_use is False
        await pg_pool.execute(
            "INSERT INTO payer_priorities (payer_address, lane, set_by, source) VALUES ($1, 2, 'ops', 'cli')",
            "0x" + "ab" * 20,
        )
        await batcher.read_lanes_in_use()
        assert batcher.lanes_in_use is True
        await pg_pool.execute("DELETE FROM payer_priorities")
        await queued_rows(pg_pool, 1, lane=4)
        await batcher.read_lanes_in_use()
        assert batcher.lanes_in_use is True  # a request of a higher lane is still queued
        await pg_pool.execute("UPDATE mint_requests SET status = 'completed'")
        await batcher.read_lanes_in_use()
        assert batcher.lanes_in_use is False
