"""Fees from the chain: tips from eth_feeHistory, the ceiling, legacy gas prices and replacements."""

import math

import pytest
import rlp
from eth_account import Account
from hexbytes import HexBytes

from services.batcher.fees import (
    GWEI,
    FeePolicy,
    Fees,
    Quote,
    Replacement,
    WaitingForFunds,
    plan_replacement,
    quote_from_gas_price,
    quote_from_history,
    read_quote,
    tip_from_rewards,
    within_balance,
)
from services.batcher.transactions import is_legacy, sign
from shared.jsonrpc import NodeError

POLICY = FeePolicy(min_tip=1 * GWEI, ceiling=100 * GWEI, tip_percentile=50, history_blocks=10)
TOKEN = "0x5FbDB2315678afecb367f032d93F642f64180aa3"


def history(base_fees: list[int], tips: list[int]) -> dict:
    """An eth_feeHistory answer as a node sends it: hex quantities, one base fee more than blocks."""
    return {
        "oldestBlock": "0x10",
        "baseFeePerGas": [hex(b) for b in base_fees],
        "reward": [[hex(t)] for t in tips],
        "gasUsedRatio": [0.5] * len(tips),
    }


def test_the_tip_is_the_median_of_recent_blocks_tips_and_the_max_fee_twice_the_next_base_fee() -> None:
    quote = quote_from_history(history([9 * GWEI, 10 * GWEI, 12 * GWEI], [2 * GWEI, 3 * GWEI]), POLICY)

    assert quote is not None
    assert quote.fees == Fees(2 * 12 * GWEI + int(2.5 * GWEI), int(2.5 * GWEI))
    assert quote.affordable and not quote.clamped


def test_fees_follow_the_base_fee_of_the_next_block() -> None:
    low = quote_from_history(history([1 * GWEI, 1 * GWEI], [2 * GWEI]), POLICY)
    high = quote_from_history(history([1 * GWEI, 30 * GWEI], [2 * GWEI]), POLICY)

    assert low is not None and high is not None
    assert (low.fees.max_fee_per_gas, high.fees.max_fee_per_gas) == (4 * GWEI, 62 * GWEI)


@pytest.mark.parametrize("tips", [[], [0, 0, 0], [10, 20]])
def test_the_tip_never_falls_below_the_floor(tips: list[int]) -> None:
    assert tip_from_rewards([[t] for t in tips], floor=GWEI) == GWEI


def test_empty_blocks_do_not_pull_the_tip_down() -> None:
    assert tip_from_rewards([[0], [0], [0], [5 * GWEI], [7 * GWEI]], floor=GWEI) == 6 * GWEI


def test_fees_above_the_ceiling_are_clamped_and_still_sent_while_the_ceiling_covers_the_base_fee() -> None:
    quote = quote_from_history(history([60 * GWEI, 60 * GWEI], [2 * GWEI]), POLICY)

    assert quote is not None
    assert quote.fees == Fees(100 * GWEI, 2 * GWEI)
    assert quote.clamped and quote.affordable


def test_a_base_fee_above_the_ceiling_makes_batches_wait() -> None:
    quote = quote_from_history(history([60 * GWEI, 150 * GWEI], [2 * GWEI]), POLICY)

    assert quote is not None
    assert quote.fees.max_fee_per_gas == 100 * GWEI
    assert not quote.affordable


@pytest.mark.parametrize("answer", [{}, {"baseFeePerGas": []}, {"baseFeePerGas": [None]}])
def test_a_fee_history_without_base_fees_means_a_legacy_chain(answer: dict) -> None:
    assert quote_from_history(answer, POLICY) is None


def test_legacy_fees_are_the_node_gas_price_within_the_ceiling() -> None:
    assert quote_from_gas_price(3 * GWEI, POLICY).fees == Fees(3 * GWEI, 3 * GWEI, legacy=True)
    priced_out = quote_from_gas_price(300 * GWEI, POLICY)
    assert priced_out.fees == Fees(100 * GWEI, 100 * GWEI, legacy=True)
    assert priced_out.clamped and not priced_out.affordable


class FakeChain:
    """The two reads read_quote makes of a batcher WalletChain, answered from fixed values."""

    def __init__(self, answer: dict | Exception, gas_price: int = 7 * GWEI) -> None:
        self.answer = answer
        self._gas_price = gas_price
        self.asked: list[tuple] = []

    async def fee_history(self, blocks: int, percentile: float) -> dict:
        self.asked.append((blocks, percentile))
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer

    async def gas_price(self) -> int:
        return self._gas_price


async def test_read_quote_asks_for_the_tip_percentile_over_recent_blocks() -> None:
    chain = FakeChain(history([GWEI, 2 * GWEI], [3 * GWEI]))

    quote = await read_quote(chain, POLICY)

    assert chain.asked == [(10, 50)]
    assert quote.fees == Fees(7 * GWEI, 3 * GWEI)


@pytest.mark.parametrize(
    "answer",
    [
        NodeError("eth_feeHistory", {"code": -32601, "message": "the method eth_feeHistory does not exist"}),
        {"baseFeePerGas": []},
    ],
)
async def test_read_quote_falls_back_to_the_gas_price(answer: dict | Exception) -> None:
    quote = await read_quote(FakeChain(answer), POLICY)

    assert quote.fees == Fees(7 * GWEI, 7 * GWEI, legacy=True)


def test_a_legacy_transaction_is_signed_as_type_0_with_the_chain_id() -> None:
    minter = Account.create()

    signed = sign(
        minter, chain_id=31337, nonce=3, to=TOKEN, data=b"\x01", gas=50_000, fees=Fees.for_gas_price(5 * GWEI)
    )

    assert is_legacy(signed.raw)
    assert Account.recover_transaction(signed.raw) == minter.address
    fields = rlp.decode(signed.raw)
    assert int.from_bytes(fields[1], "big") == 5 * GWEI  # gasPrice
    assert HexBytes(fields[3]) == HexBytes(TOKEN)
    assert int.from_bytes(fields[6], "big") in (31337 * 2 + 35, 31337 * 2 + 36)  # EIP-155 v


def test_an_eip1559_transaction_is_not_legacy() -> None:
    signed = sign(
        Account.create(), chain_id=1, nonce=0, to=TOKEN, data=b"", gas=21_000, fees=Fees(2 * GWEI, GWEI)
    )
    assert not is_legacy(signed.raw)


@pytest.mark.parametrize("percent", [0, 5, 10, 25])
@pytest.mark.parametrize("old", [Fees(62 * GWEI, 2 * GWEI), Fees(7, 1), Fees(10**9 + 1, 3)])
def test_a_replacement_raises_both_fields_by_at_least_the_nodes_ten_percent_rounded_up(
    old: Fees, percent: int
) -> None:
    new = old.bumped(percent, floor=Fees(0, 0))

    for before, after in [
        (old.max_fee_per_gas, new.max_fee_per_gas),
        (old.max_priority_fee_per_gas, new.max_priority_fee_per_gas),
    ]:
        assert after >= math.ceil(before * (100 + max(percent, 10)) / 100)
        assert after > before
    assert new.replaces(old)


def test_a_legacy_replacement_stays_legacy() -> None:
    new = Fees.for_gas_price(10 * GWEI).bumped(10, floor=Fees(0, 0))
    assert new == Fees.for_gas_price(11 * GWEI)


NO_FLOOR = Fees(0, 0)


def plan(
    old: Fees, current: Fees = NO_FLOOR, bumps_done: int = 0, seconds_since_last: float = 1000.0
) -> Replacement:
    return plan_replacement(
        old,
        Quote(current, required=0, clamped=False),
        percent=25,
        ceiling=100 * GWEI,
        bumps_done=bumps_done,
        max_bumps=5,
        seconds_since_last=seconds_since_last,
        spacing_seconds=2.0,
    )


def test_a_replacement_follows_the_current_fees_when_they_rose_further() -> None:
    assert plan(Fees(10 * GWEI, GWEI), current=Fees(50 * GWEI, 2 * GWEI)).fees == Fees(50 * GWEI, 2 * GWEI)


@pytest.mark.parametrize(("bumps_done", "wait"), [(0, 2.0), (1, 4.0), (2, 8.0), (3, 16.0)])
def test_replacements_are_spaced_out_exponentially(bumps_done: int, wait: float) -> None:
    old = Fees(10 * GWEI, GWEI)

    assert plan(old, bumps_done=bumps_done, seconds_since_last=wait - 0.1).refused == "spacing"
    assert plan(old, bumps_done=bumps_done, seconds_since_last=wait).fees is not None


def test_no_replacement_past_the_most_bumps() -> None:
    assert plan(Fees(10 * GWEI, GWEI), bumps_done=5).refused == "max_bumps"


def test_a_replacement_is_capped_at_the_ceiling_and_refused_when_the_cap_is_no_valid_bump() -> None:
    capped = plan(Fees(85 * GWEI, GWEI))
    assert capped.fees == Fees(100 * GWEI, int(1.25 * GWEI))
    assert plan(Fees(95 * GWEI, GWEI)).refused == "ceiling"
    assert plan(Fees(100 * GWEI, GWEI)).refused == "ceiling"


def test_fees_within_the_balance_are_kept() -> None:
    fees = Fees(10 * GWEI, GWEI)
    assert within_balance(fees, 100_000, 100_000 * 10 * GWEI, 2 * GWEI) == fees


def test_fees_beyond_the_balance_are_lowered_to_what_it_pays_for() -> None:
    lowered = within_balance(Fees(10 * GWEI, 3 * GWEI), 100_000, 100_000 * 4 * GWEI, 2 * GWEI)
    assert lowered == Fees(4 * GWEI, 3 * GWEI)
    legacy = within_balance(Fees(10 * GWEI, 10 * GWEI, legacy=True), 100_000, 100_000 * 4 * GWEI, 2 * GWEI)
    assert legacy == Fees(4 * GWEI, 4 * GWEI, legacy=True)


def test_a_balance_below_what_the_next_block_needs_waits_for_funds() -> None:
    with pytest.raises(WaitingForFunds):
        within_balance(Fees(10 * GWEI, GWEI), 100_000, 100_000 * 2 * GWEI - 1, 2 * GWEI)
