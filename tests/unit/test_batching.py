"""Which waiting requests make the next batch, and when a batch is due."""

import pytest

from services.batcher.batching import (
    NO_EXPIRY,
    REESTIMATE_EVERY,
    SIZING_HEADROOM,
    BatchTooLarge,
    EntryGas,
    LaneRules,
    PendingBuffer,
    batch_gas_target,
    entries_per_batch,
    gas_limit_for,
)


def _buffer(*requests: tuple[str, str, int | None, float]) -> PendingBuffer:
    """(request_id, kind, valid_before, arrived) each, with entry id '<request_id>-entry'."""
    buffer = PendingBuffer()
    for request_id, kind, valid_before, arrived in requests:
        buffer.add(request_id, kind, valid_before, f"{request_id}-entry", now=arrived)
    return buffer


def test_a_redelivered_request_is_buffered_once_with_every_entry_id() -> None:
    buffer = PendingBuffer()
    buffer.add("r1", "token", 500, "1-0", now=10.0)
    buffer.add("r1", "token", 500, "2-0", now=11.0)
    buffer.add("r2", "token", 500, "3-0", now=12.0)

    assert len(buffer) == 2
    first, second = buffer.take({"token": 10})
    assert first.entry_ids == ["1-0", "2-0"]
    assert first.arrived == 10.0
    assert second.entry_ids == ["3-0"]


def test_a_request_without_expiry_sorts_after_every_authorization() -> None:
    buffer = _buffer(("custom", "token", None, 1.0), ("gasless", "token", 2_000_000_000, 2.0))

    taken = buffer.take({"token": 10})

    assert [w.request_id for w in taken] == ["gasless", "custom"]
    assert taken[1].valid_before == NO_EXPIRY


def test_an_empty_buffer_is_never_due() -> None:
    assert not PendingBuffer().is_due(now=1_000.0, sizes={"token": 1}, window=0.0)


def test_a_full_buffer_is_due_before_the_window_ends() -> None:
    buffer = _buffer(("r1", "token", None, 100.0), ("r2", "token", None, 100.0))

    assert buffer.is_due(now=100.0, sizes={"token": 2}, window=5.0)
    assert not buffer.is_due(now=100.0, sizes={"token": 3}, window=5.0)


def test_a_partial_buffer_is_due_once_its_oldest_request_waited_a_window() -> None:
    buffer = _buffer(("old", "token", None, 100.0), ("new", "token", None, 104.0))

    assert not buffer.is_due(now=104.9, sizes={"token": 10}, window=5.0)
    assert buffer.is_due(now=105.0, sizes={"token": 10}, window=5.0)


def test_take_orders_soonest_expiring_first_then_by_arrival() -> None:
    buffer = _buffer(
        ("late-expiry", "token", 900, 1.0),
        ("soon-second", "token", 300, 3.0),
        ("soon-first", "token", 300, 2.0),
        ("soonest", "token", 100, 4.0),
    )

    assert [w.request_id for w in buffer.take({"token": 10})] == [
        "soonest",
        "soon-first",
        "soon-second",
        "late-expiry",
    ]


def test_take_keeps_one_kind_per_batch_and_leaves_the_rest_waiting() -> None:
    buffer = _buffer(
        ("token-a", "token", 500, 1.0),
        ("nft-a", "nft", 100, 2.0),
        ("token-b", "token", 200, 3.0),
        ("nft-b", "nft", 300, 4.0),
    )

    first = buffer.take({"token": 10, "nft": 10})
    second = buffer.take({"token": 10, "nft": 10})

    assert [w.request_id for w in first] == ["nft-a", "nft-b"]
    assert [w.request_id for w in second] == ["token-b", "token-a"]
    assert len(buffer) == 0


def test_a_full_kind_goes_first_with_its_own_size() -> None:
    # NFT entries cost more gas, so fewer fit: two NFTs fill a batch before five tokens do.
    sizes = {"token": 5, "nft": 2}
    buffer = _buffer(
        ("token-a", "token", 100, 1.0),
        ("nft-a", "nft", 900, 2.0),
        ("nft-b", "nft", 900, 3.0),
        ("nft-c", "nft", 900, 4.0),
    )

    assert buffer.is_due(now=4.0, sizes=sizes, window=60.0)
    assert [w.request_id for w in buffer.take(sizes)] == ["nft-a", "nft-b"]
    assert not buffer.is_due(now=4.0, sizes=sizes, window=60.0)
    assert [w.request_id for w in buffer.take(sizes)] == ["token-a"]


def test_a_full_batch_is_one_kind_with_its_size_waiting() -> None:
    buffer = _buffer(("token-a", "token", None, 1.0), ("nft-a", "nft", None, 2.0))

    assert not buffer.has_full_batch({"token": 2, "nft": 2})
    assert buffer.has_full_batch({"token": 2, "nft": 1})


def test_take_stops_at_size_and_keeps_the_remainder() -> None:
    buffer = _buffer(*[(f"r{i}", "token", None, float(i)) for i in range(5)])

    taken = buffer.take({"token": 3})

    assert [w.request_id for w in taken] == ["r0", "r1", "r2"]
    assert [w.request_id for w in buffer.take({"token": 3})] == ["r3", "r4"]


@pytest.mark.parametrize(
    ("batch_size", "gas_budget", "gas_per_entry", "expected"),
    [
        (200, 14_000_000, 75_000, 186),  # the gas budget is tighter
        (50, 14_000_000, 75_000, 50),  # the count limit is tighter
        (200, 150_000, 75_000, 2),  # exactly two entries' gas
        (200, 149_999, 75_000, 1),  # just short of two
        (200, 50_000, 75_000, 1),  # never zero: one entry always goes
    ],
)
def test_entries_per_batch_respects_count_and_gas_budget(
    batch_size: int, gas_budget: int, gas_per_entry: int, expected: int
) -> None:
    assert entries_per_batch(batch_size, gas_budget, gas_per_entry) == expected


def test_batches_aim_to_fill_a_block_within_the_per_transaction_cap() -> None:
    cap = 2**24
    # Ethereum: 30M blocks, the EIP-7825 cap. One 16.7M batch leaves room no second one fits in;
    # two 15M batches fill the block.
    assert batch_gas_target(30_000_000, cap) == 15_000_000
    assert batch_gas_target(36_000_000, cap) == 12_000_000
    assert batch_gas_target(60_000_000, cap) == 15_000_000
    # No cap that binds (an L2, or anvil without --enable-tx-gas-limit): one batch per block.
    assert batch_gas_target(30_000_000, 300_000_000) == 30_000_000
    assert batch_gas_target(10_000_000, cap) == 10_000_000


def test_a_batch_gas_limit_is_its_estimate_plus_a_tenth_within_the_cap() -> None:
    cap, target = 2**24, 15_000_000
    assert gas_limit_for(10_000_000, target, cap) == 11_000_000
    assert gas_limit_for(14_000_000, target, cap) == target  # the margin gives way to the target
    assert gas_limit_for(16_000_000, target, cap) == cap
    with pytest.raises(BatchTooLarge) as too_large:
        gas_limit_for(cap + 1, target, cap)
    assert too_large.value.needed == cap + 1


def test_entries_are_sized_by_the_configured_gas_until_a_batch_was_estimated() -> None:
    entry_gas = EntryGas()
    assert entry_gas.per_entry("token", 95_000) == 95_000

    entry_gas.observe("token", estimate=13_600_000, entries=160)  # 85k an entry

    assert entry_gas.per_entry("token", 95_000) == round(85_000 * (1 + SIZING_HEADROOM))
    assert entry_gas.per_entry("nft", 222_000) == 222_000  # another kind learns on its own


def test_a_batch_sized_from_the_estimates_meets_its_gas_target() -> None:
    """Entries cheaper than the budget (their payers already hold tokens): sized by the budget, the two
    batches a 30M block takes use 84% of it; sized by the estimate, each is signed at the target and
    the two use 95%."""
    block, cap, per_entry = 30_000_000, 2**24, 80_000
    target = batch_gas_target(block, cap)
    budget_sized = entries_per_batch(300, target, 95_000)
    assert 2 * budget_sized * per_entry < 0.85 * block

    entry_gas = EntryGas()
    entry_gas.observe("token", budget_sized * per_entry, budget_sized)
    sized = entries_per_batch(300, target, entry_gas.per_entry("token", 95_000))

    assert sized * per_entry <= target / (1 + SIZING_HEADROOM)
    assert gas_limit_for(sized * per_entry, target, cap) == target
    assert 2 * sized * per_entry >= 0.94 * block


def test_a_new_estimate_moves_the_learnt_gas_half_way() -> None:
    entry_gas = EntryGas()
    entry_gas.observe("token", 8_000_000, 100)
    entry_gas.observe("token", 9_000_000, 100)

    assert entry_gas.per_entry("token", 95_000) == round(85_000 * (1 + SIZING_HEADROOM))


def test_a_batch_of_entries_already_minted_does_not_make_the_next_one_huge() -> None:
    entry_gas = EntryGas()
    entry_gas.observe("token", 3_000_000, 300)  # 10k an entry: all skipped, nothing to mint
    entry_gas.observe("token", 100_000, 0)  # nothing to learn from

    assert entry_gas.per_entry("token", 95_000) == 47_500


def test_between_estimates_a_batch_is_checked_at_the_learnt_gas_plus_a_tenth() -> None:
    entry_gas = EntryGas()
    assert entry_gas.limit_to_check("token", 100, 15_000_000) is None  # nothing learnt: estimate

    entry_gas.observe("token", 9_000_000, 100)

    assert entry_gas.limit_to_check("token", 100, 15_000_000) == 9_900_000
    assert entry_gas.limit_to_check("token", 200, 15_000_000) == 15_000_000  # never past the target
    assert entry_gas.limit_to_check("nft", 100, 15_000_000) is None


def test_every_few_batches_the_node_estimates_again() -> None:
    entry_gas = EntryGas()
    entry_gas.observe("token", 9_000_000, 100)

    checked = [entry_gas.limit_to_check("token", 100, 15_000_000) for _ in range(REESTIMATE_EVERY + 1)]

    assert None not in checked[:REESTIMATE_EVERY] and checked[REESTIMATE_EVERY] is None
    entry_gas.observe("token", 9_000_000, 100)
    assert entry_gas.limit_to_check("token", 100, 15_000_000) is not None


def test_a_mined_batch_teaches_as_an_estimate_does_and_puts_off_the_next_estimate() -> None:
    entry_gas = EntryGas()
    entry_gas.observe("token", 9_000_000, 100)
    for _ in range(REESTIMATE_EVERY):
        assert entry_gas.limit_to_check("token", 100, 15_000_000) is not None

    entry_gas.observe_mined("token", gas_used=8_000_000, entries=100)  # a mined batch: 80k an entry

    assert entry_gas.limit_to_check("token", 100, 15_000_000) == 9_350_000  # (90k + 80k) / 2, a tenth up
    assert entry_gas.limit_to_check("nft", 100, 15_000_000) is None  # another kind learns on its own


# --- priority lanes ---------------------------------------------------------------------------------

NOW = 1_900_000_000.0
# The batcher's defaults: a 10 s expiry margin and 1 s windows make 13 s urgent; ageing at 3x the ETA.
RULES = LaneRules.of(expiry_margin_seconds=10, batch_window_seconds=1.0, ageing_multiple=3.0)
LATER = int(NOW) + 3600  # an authorization valid for another hour


def _lanes(*requests: tuple[str, int, int | None, float, float]) -> PendingBuffer:
    """(request_id, lane, valid_before, accepted (seconds before NOW), eta_seconds) each, read in that
    order."""
    buffer = PendingBuffer()
    for position, (request_id, lane, valid_before, waited, eta) in enumerate(requests):
        buffer.add(
            request_id,
            "token",
            valid_before,
            f"{request_id}-entry",
            now=float(position),
            lane=lane,
            accepted=NOW - waited,
            eta_seconds=eta,
        )
    return buffer


def _taken(buffer: PendingBuffer, size: int = 10, now: float = NOW) -> list[str]:
    return [w.request_id for w in buffer.take({"token": size}, now, RULES)]


def test_urgent_expiry_takes_thirteen_seconds_by_default() -> None:
    assert RULES.urgent_seconds == 13


def test_a_batch_is_filled_from_the_highest_lane_first() -> None:
    buffer = _lanes(
        ("normal-1", 0, LATER, 5, 60),
        ("normal-2", 0, LATER - 100, 4, 60),
        ("vip-low", 2, LATER, 3, 60),
        ("vip-high", 7, None, 2, 60),
        ("vip-high-2", 7, LATER, 1, 60),
    )

    # Within a lane as before: the soonest-expiring authorization first (none: last), then arrival.
    assert _taken(buffer, size=3) == ["vip-high-2", "vip-high", "vip-low"]
    assert _taken(buffer, size=3) == ["normal-2", "normal-1"]


def test_an_authorization_about_to_expire_goes_first_whatever_its_lane() -> None:
    buffer = _lanes(
        ("vip", 9, LATER, 1, 60),
        ("expires-in-20s", 0, int(NOW) + 20, 1, 60),  # a later batch can still carry it
        ("expires-in-12s", 0, int(NOW) + 12, 1, 60),  # within the margin and three windows
        ("expires-in-5s", 0, int(NOW) + 5, 1, 60),
    )

    assert _taken(buffer, size=3) == ["expires-in-5s", "expires-in-12s", "vip"]
    assert _taken(buffer) == ["expires-in-20s"]


def test_a_low_lane_request_that_waited_its_ageing_bound_goes_before_every_lane() -> None:
    buffer = _lanes(
        ("vip-1", 5, LATER, 50, 60),  # waited 50 s of its 180 s bound
        ("normal-due", 0, LATER, 31, 10),  # 31 s of 30 s: overdue
        ("normal-waiting", 0, LATER, 29, 10),  # 29 s of 30 s: not yet
        ("normal-older-due", 0, LATER, 40, 10),
        ("vip-2", 5, LATER, 1, 60),
    )

    assert _taken(buffer, size=3) == ["normal-older-due", "normal-due", "vip-1"]
    # A second later the next one is overdue too.
    assert _taken(buffer, size=1, now=NOW + 1.5) == ["normal-waiting"]
    assert _taken(buffer) == ["vip-2"]


def test_an_urgent_expiry_goes_even_before_an_overdue_request() -> None:
    buffer = _lanes(
        ("vip", 3, LATER, 1, 60), ("overdue", 0, LATER, 100, 1), ("expiring", 0, int(NOW) + 11, 1, 60)
    )

    assert _taken(buffer) == ["expiring", "overdue", "vip"]


def test_the_ageing_multiple_is_what_the_bound_is_measured_in() -> None:
    def order(multiple: float) -> list[str]:
        buffer = _lanes(("vip", 1, LATER, 1, 60), ("normal", 0, LATER, 25, 10))
        rules = LaneRules(urgent_seconds=13, ageing_multiple=multiple)
        return [w.request_id for w in buffer.take({"token": 10}, NOW, rules)]

    assert order(2.0) == ["normal", "vip"]  # 25 s waited, 20 s allowed
    assert order(3.0) == ["vip", "normal"]  # 30 s allowed


def test_a_request_without_an_eta_ages_as_if_promised_a_second() -> None:
    buffer = _lanes(
        ("vip", 1, LATER, 1, 60), ("unknown-eta", 0, LATER, 3.5, None), ("fresh", 0, LATER, 2, None)
    )

    assert _taken(buffer) == ["unknown-eta", "vip", "fresh"]


def test_without_lanes_the_order_is_as_before_however_long_requests_waited() -> None:
    """Every request in lane 0 (no payer has a priority): soonest expiry, then arrival, overdue or not,
    as the batcher took them before lanes."""
    buffer = _lanes(
        ("late-expiry-overdue", 0, LATER, 500, 1),
        ("soon", 0, LATER - 600, 1, 60),
        ("custom", 0, None, 900, 1),
        ("urgent", 0, int(NOW) + 8, 1, 60),
    )

    assert _taken(buffer) == ["urgent", "soon", "late-expiry-overdue", "custom"]


def test_ageing_compares_lanes_within_a_kind() -> None:
    """An NFT VIP does not promote an overdue token request ahead of other tokens: kinds are batched
    apart."""
    buffer = PendingBuffer()
    buffer.add("nft-vip", "nft", LATER, "e1", now=0.0, lane=9, accepted=NOW, eta_seconds=60)
    buffer.add(
        "token-overdue-expiring-late", "token", LATER, "e2", now=1.0, accepted=NOW - 100, eta_seconds=1
    )
    buffer.add("token-soon", "token", LATER - 600, "e3", now=2.0, accepted=NOW, eta_seconds=60)

    assert [w.request_id for w in buffer.take({"token": 10, "nft": 10}, NOW, RULES)] == ["nft-vip"]
    assert [w.request_id for w in buffer.take({"token": 10, "nft": 10}, NOW, RULES)] == [
        "token-soon",
        "token-overdue-expiring-late",
    ]


def test_a_request_put_back_keeps_its_lane_and_age() -> None:
    buffer = _lanes(("vip", 4, LATER, 1, 60), ("normal", 0, LATER, 1, 60))
    taken = buffer.take({"token": 1}, NOW, RULES)
    buffer.add("vip", "token", LATER, "redelivered", now=9.0, lane=4, accepted=NOW - 1, eta_seconds=60)

    buffer.put_back(taken, now=10.0)

    (vip,) = buffer.take({"token": 1}, NOW, RULES)
    assert (vip.request_id, vip.lane, vip.accepted, vip.entry_ids) == (
        "vip",
        4,
        NOW - 1,
        ["redelivered", "vip-entry"],
    )
