"""Callbacks and replay on real Redis and PostgreSQL: outcomes on mint.completed / mint.failed become
signed webhooks (retried, every attempt recorded), and mint.requested is rebuilt from PostgreSQL."""

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from eth_account.signers.local import LocalAccount

from services.intake.replay import replay_pending
from shared import keys
from shared.events import MintCompleted, MintFailed, MintReorged
from shared.streams import publish, publish_many
from tests.support.intake import Intake, running_intake

Fund = Callable[[int], list[LocalAccount]]
TX_HASH = "0x" + "ef" * 32


@dataclass
class Receiver:
    """A webhook endpoint that answers the scripted statuses in turn (then 200)."""

    statuses: list[int] = field(default_factory=list)
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append((dict(request.headers), await request.read()))
        return web.Response(status=self.statuses.pop(0) if self.statuses else 200)

    async def wait_for(self, count: int, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            assert time.monotonic() < deadline, f"got {len(self.received)} webhooks, wanted {count}"
            await asyncio.sleep(0.05)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    hook = Receiver()
    app = web.Application()
    app.router.add_post("/hook", hook.handle)
    server = TestServer(app)
    await server.start_server()
    hook.url = str(server.make_url("/hook"))
    yield hook
    await server.close()


@pytest.fixture
async def intake(settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Intake]:
    fast = {
        "intake_webhook_backoff_base_seconds": 0.05,
        "intake_webhook_backoff_max_seconds": 0.2,
        "intake_webhook_poll_seconds": 0.05,
        "intake_webhook_max_attempts": 3,
        # The receivers listen on loopback, which webhooks may not reach unless allowed.
        "intake_callback_allow": "127.0.0.1",
    }
    async with running_intake(settings_env, monkeypatch, **fast) as running:
        yield running


async def accepted(intake: Intake, payer: LocalAccount, callback_url: str | None) -> str:
    extra = {"callbackUrl": callback_url} if callback_url else {}
    status, body = await intake.gasless(intake.payment(payer), **extra)
    assert status == 202, body
    return body["queueId"]


async def complete(intake: Intake, queue_id: str) -> None:
    """What the confirmer does: commit the outcome, then publish it."""
    await intake.pool.execute(
        "UPDATE mint_requests SET status = 'completed', mint_tx_hash = $2, processed_at = now(),"
        " updated_at = now() WHERE id = $1::uuid",
        queue_id,
        TX_HASH,
    )
    stream = intake.settings.keys.stream(keys.MINT_COMPLETED)
    await publish(intake.redis, stream, MintCompleted(request_id=queue_id, tx_hash=TX_HASH))


async def deliveries(intake: Intake, queue_id: str, settled: bool = True, timeout: float = 15) -> list[Any]:
    deadline = time.monotonic() + timeout
    while True:
        rows = await intake.pool.fetch(
            "SELECT * FROM webhook_deliveries WHERE request_id = $1::uuid", queue_id
        )
        if rows and (not settled or all(r["status"] != "pending" for r in rows)):
            return rows
        assert time.monotonic() < deadline, f"deliveries of {queue_id} did not settle: {rows}"
        await asyncio.sleep(0.05)


async def attempts(intake: Intake, delivery_id: int) -> list[tuple[int, int | None, str | None]]:
    rows = await intake.pool.fetch(
        "SELECT attempt, status_code, error FROM webhook_attempts WHERE delivery_id = $1 ORDER BY id",
        delivery_id,
    )
    return [(r["attempt"], r["status_code"], r["error"]) for r in rows]


def verify_signature(headers: dict[str, str], body: bytes, secret: str) -> None:
    timestamp = headers["X-Mintline-Timestamp"]
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["X-Mintline-Signature"], f"sha256={expected}")
    assert abs(int(timestamp) - time.time()) < 60


async def test_completed_mint_is_posted_with_a_valid_hmac(
    intake: Intake, receiver: Receiver, fund_payers: Fund, settings_env: dict[str, str]
) -> None:
    payer = fund_payers(1)[0]
    queue_id = await accepted(intake, payer, receiver.url)
    await complete(intake, queue_id)

    await receiver.wait_for(1)
    headers, raw = receiver.received[0]
    verify_signature(headers, raw, settings_env["WEBHOOK_SECRET"])
    body = json.loads(raw)
    assert body.pop("timestamp")
    assert body == {
        "event": "mint.completed",
        "queueId": queue_id,
        "status": "completed",
        "payer": payer.address,
        "mintTxHash": TX_HASH,
        "error": None,
    }
    [delivery] = await deliveries(intake, queue_id)
    assert (delivery["status"], delivery["attempts"], delivery["event"]) == ("delivered", 1, "mint.completed")
    assert delivery["url"] == receiver.url and delivery["delivered_at"] is not None
    assert await attempts(intake, delivery["id"]) == [(1, 200, None)]


async def test_a_mint_reorged_out_after_completed_is_reported(
    intake: Intake, receiver: Receiver, fund_payers: Fund
) -> None:
    """The confirmer reopens a completed request whose batch left the chain: its webhook says so."""
    queue_id = await accepted(intake, fund_payers(1)[0], receiver.url)
    await complete(intake, queue_id)
    await receiver.wait_for(1)
    stream = intake.settings.keys.stream(keys.MINT_COMPLETED)
    await publish(intake.redis, stream, MintReorged(request_id=queue_id, tx_hash=TX_HASH, block_number=7))
    await receiver.wait_for(2)
    body = json.loads(receiver.received[1][1])
    assert (body["event"], body["status"], body["mintTxHash"]) == ("mint.reorged", "sent", TX_HASH)
    assert "reorg" in body["error"]
    events = {d["event"]: d["status"] for d in await deliveries(intake, queue_id)}
    assert events == {"mint.completed": "delivered", "mint.reorged": "delivered"}


async def test_failing_receiver_is_retried_until_it_answers(
    intake: Intake, receiver: Receiver, fund_payers: Fund, settings_env: dict[str, str]
) -> None:
    receiver.statuses = [500, 503]
    queue_id = await accepted(intake, fund_payers(1)[0], receiver.url)
    await complete(intake, queue_id)

    [delivery] = await deliveries(intake, queue_id)
    assert (delivery["status"], delivery["attempts"]) == ("delivered", 3)
    assert await attempts(intake, delivery["id"]) == [
        (1, 500, "HTTP 500"),
        (2, 503, "HTTP 503"),
        (3, 200, None),
    ]
    # Every attempt is signed afresh, over the same body.
    assert len({raw for _, raw in receiver.received}) == 1
    for headers, raw in receiver.received:
        verify_signature(headers, raw, settings_env["WEBHOOK_SECRET"])


async def test_delivery_gives_up_after_max_attempts(
    intake: Intake, receiver: Receiver, fund_payers: Fund
) -> None:
    receiver.statuses = [500] * 10
    queue_id = await accepted(intake, fund_payers(1)[0], receiver.url)
    await complete(intake, queue_id)

    [delivery] = await deliveries(intake, queue_id)
    assert (delivery["status"], delivery["attempts"]) == ("failed", 3)
    assert [a[:2] for a in await attempts(intake, delivery["id"])] == [(1, 500), (2, 500), (3, 500)]


async def test_unreachable_receiver_records_the_error(intake: Intake, fund_payers: Fund) -> None:
    queue_id = await accepted(intake, fund_payers(1)[0], "http://127.0.0.1:9/hook")
    await complete(intake, queue_id)

    [delivery] = await deliveries(intake, queue_id)
    assert delivery["status"] == "failed"
    recorded = await attempts(intake, delivery["id"])
    assert [(a[0], a[1]) for a in recorded] == [(1, None), (2, None), (3, None)]
    assert all(a[2] and "Connect" in a[2] for a in recorded)


async def test_failed_mint_webhook_and_duplicate_events(
    intake: Intake, receiver: Receiver, fund_payers: Fund
) -> None:
    queue_id = await accepted(intake, fund_payers(1)[0], receiver.url)
    await intake.pool.execute(
        "UPDATE mint_requests SET status = 'failed', error_message = 'authorization expired'"
        " WHERE id = $1::uuid",
        queue_id,
    )
    stream = intake.settings.keys.stream(keys.MINT_FAILED)
    for _ in range(3):  # at-least-once: the same outcome may arrive again
        await publish(intake.redis, stream, MintFailed(request_id=queue_id, reason="authorization expired"))

    await receiver.wait_for(1)
    [delivery] = await deliveries(intake, queue_id)
    body = json.loads(receiver.received[0][1])
    assert (body["event"], body["status"], body["error"], body["mintTxHash"]) == (
        "mint.failed", "failed", "authorization expired", None,
    )  # fmt: skip
    await asyncio.sleep(0.3)
    assert len(receiver.received) == 1 and delivery["attempts"] == 1


async def test_outcomes_read_together_each_get_their_own_delivery(
    intake: Intake, receiver: Receiver, fund_payers: Fund
) -> None:
    """Completions, a failure, a request without a callback and an event naming no request, published
    in one pipeline and recorded in one statement: each wanted delivery once, with its own outcome."""
    payers = fund_payers(4)
    done = [await accepted(intake, payer, receiver.url) for payer in payers[:2]]
    failed = await accepted(intake, payers[2], receiver.url)
    silent = await accepted(intake, payers[3], None)
    await intake.pool.execute(
        "UPDATE mint_requests SET status = 'completed', mint_tx_hash = $2 WHERE id = ANY($1::uuid[])",
        [*done, silent],
        TX_HASH,
    )
    await intake.pool.execute(
        "UPDATE mint_requests SET status = 'failed', error_message = 'reverted' WHERE id = $1::uuid", failed
    )
    completed_stream = intake.settings.keys.stream(keys.MINT_COMPLETED)
    outcomes = [MintCompleted(request_id=i, tx_hash=TX_HASH) for i in [*done, silent]]
    await publish_many(
        intake.redis, completed_stream, [MintCompleted(request_id="not-a-uuid", tx_hash=TX_HASH), *outcomes]
    )
    await publish(
        intake.redis,
        intake.settings.keys.stream(keys.MINT_FAILED),
        MintFailed(request_id=failed, reason="reverted"),
    )

    await receiver.wait_for(3)
    bodies = {body["queueId"]: body for body in (json.loads(raw) for _, raw in receiver.received)}
    assert {i: (b["event"], b["mintTxHash"]) for i, b in bodies.items()} == {
        done[0]: ("mint.completed", TX_HASH),
        done[1]: ("mint.completed", TX_HASH),
        failed: ("mint.failed", None),
    }
    assert await intake.pool.fetchval("SELECT count(*) FROM webhook_deliveries") == 3
    [info] = [
        g for g in await intake.redis.xinfo_groups(completed_stream) if g["name"].decode() == keys.INTAKE
    ]
    assert info["pending"] == 0


async def test_no_callback_url_no_delivery(intake: Intake, fund_payers: Fund) -> None:
    queue_id = await accepted(intake, fund_payers(1)[0], None)
    await complete(intake, queue_id)
    # Wait until the consumer has acked the event, then nothing may have been queued.
    group = keys.INTAKE
    stream = intake.settings.keys.stream(keys.MINT_COMPLETED)
    deadline = time.monotonic() + 10
    while True:
        [info] = [g for g in await intake.redis.xinfo_groups(stream) if g["name"].decode() == group]
        if info["pending"] == 0 and info["last-delivered-id"] != b"0-0":
            break
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    assert await intake.pool.fetchval("SELECT count(*) FROM webhook_deliveries") == 0


# --- replay ---------------------------------------------------------------------------------------


async def test_lost_redis_state_is_replayed_from_postgresql(intake: Intake, fund_payers: Fund) -> None:
    ids = [await accepted(intake, payer, None) for payer in fund_payers(3)]
    await intake.pool.execute("UPDATE mint_requests SET status = 'batched' WHERE id = $1::uuid", ids[0])
    names = intake.settings.keys
    await intake.redis.delete(names.stream(keys.MINT_REQUESTED), names.alive(keys.INTAKE))

    deadline = time.monotonic() + 10
    while not await intake.redis.exists(names.alive(keys.INTAKE)):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    # Pending rows only: the batched one is already the batcher's.
    assert sorted(await intake.requested_ids()) == sorted(ids[1:])


async def test_stale_pending_requests_are_republished(
    settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, fund_payers: Fund
) -> None:
    sweep = {"intake_republish_interval_seconds": 0.1, "intake_republish_after_seconds": 60}
    async with running_intake(settings_env, monkeypatch, **sweep) as intake:
        fresh, stale = [await accepted(intake, payer, None) for payer in fund_payers(2)]
        await intake.pool.execute(
            "UPDATE mint_requests SET published_at = now() - interval '10 minutes' WHERE id = $1::uuid", stale
        )
        age_sql = "SELECT extract(epoch FROM now() - published_at) FROM mint_requests WHERE id = $1::uuid"
        deadline = time.monotonic() + 10
        while await intake.pool.fetchval(age_sql, stale) > 10:  # published again, then marked
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        assert (await intake.requested_ids()).count(stale) == 2
        assert (await intake.requested_ids()).count(fresh) == 1


async def test_replay_publishes_every_pending_row_in_chunks(
    settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, fund_payers: Fund
) -> None:
    async with running_intake(settings_env, monkeypatch, intake_replay_chunk=2) as intake:
        ids = [await accepted(intake, payer, None) for payer in fund_payers(5)]
        await intake.redis.delete(intake.settings.keys.stream(keys.MINT_REQUESTED))
        assert await replay_pending(intake.pool, intake.redis, intake.settings) == 5
        assert await intake.requested_ids() == ids
