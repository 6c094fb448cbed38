"""How a backlog spreads over signer wallets: which wallet takes batches, and how much each reads
(services/batcher/taking.py), with a run of two wallets pulling from one queue."""

from dataclasses import dataclass, field

import pytest

from services.batcher.taking import (
    CANNOT_PAY,
    WEDGED,
    StallWatch,
    WalletState,
    read_count,
    top_up_count,
    why_not_taking,
)

SIZES = {"token": 300, "nft": 75}


def state(in_flight: int = 0, dry: bool = False, stalled: float = 0.0) -> WalletState:
    return WalletState(in_flight=in_flight, waiting_for_funds=dry, stalled_seconds=stalled)


def test_a_wallet_that_cannot_pay_or_is_wedged_takes_no_batches() -> None:
    assert why_not_taking(state(), wedged_after_seconds=120) is None
    assert why_not_taking(state(in_flight=16, stalled=119.9), wedged_after_seconds=120) is None
    assert why_not_taking(state(stalled=120), wedged_after_seconds=120) == WEDGED
    assert why_not_taking(state(dry=True), wedged_after_seconds=120) == CANNOT_PAY
    assert why_not_taking(state(dry=True, stalled=500), wedged_after_seconds=120) == CANNOT_PAY


def test_a_wallet_is_stalled_while_its_nonce_stands_still_with_transactions_to_mine() -> None:
    watch = StallWatch()
    assert watch.seen(mined=5, next_nonce=8, now=100.0) == 0
    assert watch.seen(mined=5, next_nonce=8, now=130.0) == 30  # three waiting, none mined
    assert watch.seen(mined=6, next_nonce=9, now=140.0) == 0  # one mined: moving again
    assert watch.seen(mined=6, next_nonce=9, now=150.0) == 10
    # Nothing to mine (a wallet idle for hours, or one waiting for confirmations): never stalled.
    assert watch.seen(mined=9, next_nonce=9, now=160.0) == 0
    assert watch.seen(mined=9, next_nonce=9, now=10_000.0) == 0
    assert watch.seen(mined=9, next_nonce=10, now=10_001.0) == 1  # a new one waits: counted from then


@pytest.mark.parametrize(
    ("in_flight", "buffered", "buffer_limit", "expected"),
    [
        (0, 0, 5000, 300),  # one batch at a time, the largest kind's
        (15, 0, 5000, 300),  # one slot left: one batch
        (15, 200, 5000, 100),  # ...of which 200 are buffered already
        (15, 300, 5000, 0),  # a batch waits for the slot: nothing more
        (16, 0, 5000, 0),  # at the cap: nothing
        (20, 0, 5000, 0),  # past it (another batcher's batches counted): nothing, never negative
        (0, 900, 1000, 100),  # the buffer limit holds
        (0, 4900, 5000, 0),  # what 16 free slots can send is buffered already
    ],
)
def test_a_wallet_reads_a_batch_at_most_and_only_what_its_free_slots_can_send(
    in_flight: int, buffered: int, buffer_limit: int, expected: int
) -> None:
    count = read_count(
        state(in_flight), max_in_flight=16, sizes=SIZES, buffered=buffered, buffer_limit=buffer_limit
    )
    assert count == expected


@dataclass
class Wallet:
    dry: bool = False
    buffered: int = 0
    in_flight: list[int] = field(default_factory=list)  # the round each open batch was sent in
    sent: int = 0


def run(wallets: list[Wallet], backlog: int, rounds: int, confirm_after: int, cap: int = 4) -> int:
    """Each round every wallet in turn reads what read_count allows from the one queue and sends a
    full batch if it has one; a batch confirms `confirm_after` rounds after it was sent. Returns what
    is left in the queue."""
    sizes = {"token": 10}
    for now in range(rounds):
        for wallet in wallets:
            wallet.in_flight = [sent for sent in wallet.in_flight if now - sent < confirm_after]
            seen = state(len(wallet.in_flight), wallet.dry)
            if why_not_taking(seen, wedged_after_seconds=60) is not None:
                backlog, wallet.buffered = backlog + wallet.buffered, 0  # given back
                continue
            count = read_count(
                seen, max_in_flight=cap, sizes=sizes, buffered=wallet.buffered, buffer_limit=1000
            )
            taken = min(count, backlog)
            backlog, wallet.buffered = backlog - taken, wallet.buffered + taken
            assert len(wallet.in_flight) <= cap
            if wallet.buffered >= sizes["token"] and len(wallet.in_flight) < cap:
                wallet.buffered -= sizes["token"]
                wallet.in_flight.append(now)
                wallet.sent += 1
    return backlog


def test_a_backlog_spreads_over_two_healthy_wallets_within_each_ones_cap() -> None:
    wallets = [Wallet(), Wallet()]
    left = run(wallets, backlog=400, rounds=100, confirm_after=3)
    assert left == 0 and sum(w.buffered for w in wallets) == 0
    assert [w.sent for w in wallets] == [20, 20]


def test_a_wallet_that_runs_dry_leaves_the_backlog_to_the_other() -> None:
    healthy, dry = Wallet(), Wallet(dry=True, buffered=7)
    left = run([dry, healthy], backlog=200, rounds=100, confirm_after=3)
    assert left == 0 and (dry.sent, dry.buffered) == (0, 0)
    assert healthy.sent * 10 == 207 - healthy.buffered


def test_one_wallet_at_its_cap_sends_no_more_however_long_the_backlog() -> None:
    (wallet,) = wallets = [Wallet()]
    left = run(wallets, backlog=10_000, rounds=30, confirm_after=10, cap=4)
    # 4 batches per 10 rounds: 12 in 30 rounds, and nothing hoarded while it waits at the cap (the
    # queue keeps the rest for any other wallet).
    assert wallet.sent == 12 and wallet.buffered == 0 and left == 10_000 - 120


@pytest.mark.parametrize(
    ("in_flight", "buffered", "expected"),
    [
        (0, 0, 300),  # still a batch per read
        (16, 0, 300),  # at the cap it reads ahead...
        (16, 1900, 100),  # ...up to the lookahead
        (16, 2000, 0),
        (15, 2200, 100),  # a free slot's batch on top
        (0, 4900, 100),  # and never past the buffer limit
    ],
)
def test_while_lanes_are_in_use_a_wallet_reads_ahead_of_its_next_batch(
    in_flight: int, buffered: int, expected: int
) -> None:
    count = read_count(
        state(in_flight), max_in_flight=16, sizes=SIZES, buffered=buffered, buffer_limit=5000, lookahead=2000
    )
    assert count == expected


def test_a_due_batch_is_topped_up_to_a_batch_or_with_lookahead_to_a_batch_and_the_lookahead() -> None:
    # Without lookahead (no lanes in use), as before: only a batch that is not full yet.
    assert top_up_count(SIZES, buffered=120, full=False, buffer_limit=5000) == 180
    assert top_up_count(SIZES, buffered=80, full=True, buffer_limit=5000) == 0  # 75 NFTs fill one
    assert top_up_count(SIZES, buffered=400, full=True, buffer_limit=5000) == 0
    # With it: what the stream holds, up to a batch and the lookahead, within the buffer limit.
    assert top_up_count(SIZES, buffered=300, full=True, buffer_limit=5000, lookahead=2000) == 2000
    assert top_up_count(SIZES, buffered=2300, full=True, buffer_limit=5000, lookahead=2000) == 0
    assert top_up_count(SIZES, buffered=100, full=False, buffer_limit=1000, lookahead=2000) == 900
