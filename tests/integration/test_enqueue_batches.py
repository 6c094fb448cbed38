"""Concurrent requests accepted in one intake_enqueue statement (services/intake/enqueue_batches.py)
get the answers they would get one by one: each its own position, a payer's balance reserved across
the requests of one batch, a payment or Idempotency-Key used twice in one batch queued once, and a
request whose call fails failing alone. Against a real PostgreSQL, through queue.enqueue as intake
calls it."""

import asyncio
import secrets
import time

import asyncpg
import pytest
from prometheus_client import REGISTRY

from services.intake import queue
from services.intake.enqueue_batches import Enqueuer
from services.intake.errors import PaymentRejected, PaymentReplayed
from services.intake.queue import Expiry, NewRequest, Queued

AMOUNT = 1_000_000


def request(
    payer: str, *, payment_id: str | None = None, key: str | None = None, **extra: object
) -> NewRequest:
    payment_id = payment_id or "0x" + secrets.token_hex(32)
    fields: dict = {
        "payer": payer,
        "payment_type": "gasless",
        "payment_id": payment_id,
        "amount": AMOUNT,
        "authorization": {"from": payer, "nonce": payment_id, "value": str(AMOUNT)},
        "valid_before": int(time.time()) + 3600,
        "payment_tx_hash": None,
        "idempotency_key": key,
        "callback_url": None,
        # The chain was asked: none of the payer's queued authorizations was executed yet.
        "debited": frozenset(),
        **extra,
    }
    return NewRequest(**fields)


def splits() -> float:
    """mintline_intake_enqueue_batches_split_total in this process."""
    return REGISTRY.get_sample_value("mintline_intake_enqueue_batches_split_total") or 0.0


def payer() -> str:
    return "0x" + secrets.token_hex(20)


@pytest.fixture
async def enqueuer(pg_pool: asyncpg.Pool):
    enqueuer = Enqueuer(pg_pool, window_seconds=0.05, max_requests=64)
    yield enqueuer
    await enqueuer.close()


async def together(enqueuer: Enqueuer, requests: list[NewRequest], balance: int | None = 10 * AMOUNT) -> list:
    """Each request's Queued or the error it raised, all submitted in the same turn of the loop."""
    expiry = Expiry(int(time.time()), 50.0, 30)
    calls = (queue.enqueue(enqueuer, r, balance=balance, expiry=expiry) for r in requests)
    return await asyncio.gather(*calls, return_exceptions=True)


async def test_concurrent_requests_share_one_statement_and_each_gets_its_own_position(enqueuer, pg_pool):
    split = splits()
    answers = await together(enqueuer, [request(payer()) for _ in range(20)])
    assert all(isinstance(a, Queued) and a.created for a in answers), answers
    assert sorted(a.position for a in answers) == list(range(1, 21))
    assert enqueuer.requests_sent == 20 and enqueuer.batches_sent == 1
    assert splits() == split  # one statement, not twenty
    assert await pg_pool.fetchval("SELECT count(*) FROM mint_requests WHERE status = 'pending'") == 20
    # A later one alone still counts them.
    (alone,) = await together(enqueuer, [request(payer())])
    assert alone.position == 21 and enqueuer.batches_sent == 2


async def test_one_payers_requests_in_one_batch_reserve_against_each_other(enqueuer, pg_pool):
    """The balance covers three: of five sent together, three are queued and two refused."""
    who = payer()
    answers = await together(enqueuer, [request(who) for _ in range(5)], balance=3 * AMOUNT)
    assert enqueuer.batches_sent == 1
    created = [a for a in answers if isinstance(a, Queued)]
    refused = [a for a in answers if isinstance(a, PaymentRejected)]
    assert len(created) == 3 and len(refused) == 2, answers
    assert {r.code for r in refused} == {"insufficient_balance"}
    # Each refused one saw the three queued before it in the same statement.
    assert all(f"{3 * AMOUNT} of them promised" in r.message for r in refused), refused
    assert await pg_pool.fetchval("SELECT count(*) FROM mint_requests WHERE payer_address = $1", who) == 3


async def test_a_payment_or_key_used_twice_in_one_batch_is_queued_once(enqueuer, pg_pool):
    who, paid_twice = payer(), "0x" + secrets.token_hex(32)
    replayed = request(payer(), key="retry-1")
    answers = await together(
        enqueuer,
        [request(who, payment_id=paid_twice), request(who, payment_id=paid_twice), replayed, replayed],
    )
    assert enqueuer.batches_sent == 1
    first, second, original, retry = answers
    assert isinstance(first, Queued) and first.created
    assert isinstance(second, PaymentReplayed)
    assert isinstance(original, Queued) and original.created
    # The same key for the same payment: the first answer again, not a second row.
    assert isinstance(retry, Queued) and not retry.created and retry.id == original.id
    assert retry.position == original.position
    assert await pg_pool.fetchval("SELECT count(*) FROM mint_requests") == 2


async def test_a_request_whose_call_fails_fails_alone(enqueuer, pg_pool):
    """A call PostgreSQL refuses undoes the batch's statement; each request then runs alone, and only
    the bad one fails."""
    split = splits()
    good = [request(payer()) for _ in range(4)]
    bad = request(payer(), payment_type="not-a-payment-type")
    answers = await together(enqueuer, [*good[:2], bad, *good[2:]])
    assert isinstance(answers[2], asyncpg.CheckViolationError)
    assert all(isinstance(a, Queued) and a.created for i, a in enumerate(answers) if i != 2), answers
    assert splits() == split + 1
    ids = {str(i) for i in await pg_pool.fetchval("SELECT array_agg(id) FROM mint_requests")}
    assert ids == {a.id for i, a in enumerate(answers) if i != 2}
    # The depth counters were undone with the statement: positions go on from the four.
    (later,) = await together(enqueuer, [request(payer())])
    assert later.position == 5
