"""What a transaction offers to pay, and what its replacement offers.

EIP-1559 fees follow the chain: the tip is a percentile of the tips paid in recent blocks
(`eth_feeHistory`), never below a floor, and the max fee leaves room for the base fee to grow. A chain
without a base fee gets a legacy gas price (`eth_gasPrice`). Every offer stays within a ceiling; a
batch that cannot be included at the ceiling waits instead of overpaying.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import median
from typing import Any

from shared.backoff import exponential_backoff
from shared.jsonrpc import NodeError

GWEI = 10**9
# Nodes (geth, reth, anvil) accept a replacement only when both fee fields rise by at least 10%.
NODE_MIN_BUMP_PERCENT = 10
# Twice the base fee survives six full blocks of base-fee growth (+12.5% each).
BASE_FEE_HEADROOM = 2
# The longest wait between two replacements of one transaction.
MAX_BUMP_SPACING_SECONDS = 120.0


class FeesAboveCeiling(RuntimeError):
    """The network asks more than the fee ceiling allows: the batch waits."""


@dataclass(frozen=True)
class Fees:
    max_fee_per_gas: int
    max_priority_fee_per_gas: int
    # A legacy (type 0) transaction pays one gas price, kept in both fields.
    legacy: bool = False

    @classmethod
    def for_base_fee(cls, base_fee: int, priority_fee: int, headroom: int = BASE_FEE_HEADROOM) -> "Fees":
        return cls(headroom * base_fee + priority_fee, priority_fee)

    @classmethod
    def for_gas_price(cls, gas_price: int) -> "Fees":
        return cls(gas_price, gas_price, legacy=True)

    def bumped(self, percent: int, floor: "Fees") -> "Fees":
        """Fees for a replacement: both fields at least `percent` above these (never less than the
        node's 10%, rounded up), and never below `floor` (what a new transaction would offer now)."""
        percent = max(percent, NODE_MIN_BUMP_PERCENT)
        max_fee = max(raised(self.max_fee_per_gas, percent), floor.max_fee_per_gas)
        if self.legacy:
            return Fees.for_gas_price(max_fee)
        tip = max(raised(self.max_priority_fee_per_gas, percent), floor.max_priority_fee_per_gas)
        return Fees(max_fee, min(tip, max_fee))

    @property
    def fields(self) -> tuple[int, int]:
        """(max fee per gas, max priority fee per gas), as stored."""
        return self.max_fee_per_gas, self.max_priority_fee_per_gas

    def capped(self, ceiling: int) -> "Fees":
        """These fees, with no field above `ceiling`."""
        max_fee = min(self.max_fee_per_gas, ceiling)
        return Fees(max_fee, min(self.max_priority_fee_per_gas, max_fee), self.legacy)

    def replaces(self, old: "Fees") -> bool:
        """True when a node takes these fees as a replacement of `old` (both fields +10%)."""
        return self.max_fee_per_gas >= raised(
            old.max_fee_per_gas, NODE_MIN_BUMP_PERCENT
        ) and self.max_priority_fee_per_gas >= raised(old.max_priority_fee_per_gas, NODE_MIN_BUMP_PERCENT)


class WaitingForFunds(RuntimeError):
    """The wallet cannot pay for a transaction the chain would include: the batch waits for funds."""


def within_balance(fees: Fees, gas: int, balance: int, required: int) -> Fees:
    """`fees` for a transaction of `gas`, lowered so that gas × max fee stays within the wallet's
    balance (what a node checks before it takes a transaction); WaitingForFunds when even the fee the
    next block needs (`required`) is more than the balance pays for."""
    if gas * fees.max_fee_per_gas <= balance:
        return fees
    affordable = balance // gas
    if affordable < required:
        raise WaitingForFunds(f"{gas} gas at {required} wei costs more than the balance of {balance} wei")
    return Fees(affordable, min(fees.max_priority_fee_per_gas, affordable), fees.legacy)


def raised(value: int, percent: int) -> int:
    """`value` raised by `percent`, rounded up, and by at least 1 wei."""
    return max(-(-value * (100 + percent) // 100), value + 1)


@dataclass(frozen=True)
class FeePolicy:
    min_tip: int
    ceiling: int
    tip_percentile: float = 50.0
    history_blocks: int = 10

    @classmethod
    def from_settings(cls, settings: Any) -> "FeePolicy":
        return cls(
            min_tip=int(settings.priority_fee_gwei * GWEI),
            ceiling=int(settings.max_fee_gwei * GWEI),
            tip_percentile=settings.tip_percentile,
            history_blocks=settings.fee_history_blocks,
        )


@dataclass(frozen=True)
class Quote:
    """What a new transaction offers now (within the ceiling), and whether that gets it included."""

    fees: Fees
    # The least max fee (legacy: gas price) with which the next block includes the transaction.
    required: int
    # True when the fees the network asks were cut down to the ceiling.
    clamped: bool

    @property
    def affordable(self) -> bool:
        return self.fees.max_fee_per_gas >= self.required


def tip_from_rewards(rewards: Sequence[Sequence[int]], floor: int) -> int:
    """The median over recent blocks of each block's tip at the asked percentile, never below floor.
    Empty blocks report a zero tip and say nothing about the market, so they are left out."""
    tips = [int(block[0]) for block in rewards if block and int(block[0]) > 0]
    return max(floor, int(median(tips))) if tips else floor


def quote_from_history(history: Mapping[str, Any], policy: FeePolicy) -> Quote | None:
    """EIP-1559 fees from an `eth_feeHistory` answer; None when the chain has no base fee (legacy)."""
    base_fees = history.get("baseFeePerGas") or []
    if not base_fees or base_fees[-1] is None:
        return None
    # The last entry is the base fee of the next block, the one the transaction aims for.
    next_base_fee = _int(base_fees[-1])
    rewards = [[_int(value) for value in block] for block in history.get("reward") or []]
    tip = tip_from_rewards(rewards, policy.min_tip)
    wanted = Fees.for_base_fee(next_base_fee, tip)
    return Quote(
        wanted.capped(policy.ceiling), next_base_fee + policy.min_tip, wanted.max_fee_per_gas > policy.ceiling
    )


async def read_quote(chain: Any, policy: FeePolicy) -> Quote:
    """The quote for the chain behind `chain` (a batcher WalletChain): EIP-1559 from eth_feeHistory,
    or the legacy gas price where blocks have no base fee or the node has no eth_feeHistory."""
    try:
        history = await chain.fee_history(policy.history_blocks, policy.tip_percentile)
        quote = quote_from_history(history or {}, policy)
    except (NodeError, ValueError, TypeError):
        quote = None
    return quote or quote_from_gas_price(await chain.gas_price(), policy)


def quote_from_gas_price(gas_price: int, policy: FeePolicy) -> Quote:
    """Legacy fees: the node's gas price plus nothing; includable only if the ceiling covers it."""
    wanted = Fees.for_gas_price(gas_price)
    return Quote(wanted.capped(policy.ceiling), gas_price, gas_price > policy.ceiling)


@dataclass(frozen=True)
class Replacement:
    fees: Fees | None
    # Why there is no replacement: "spacing", "max_bumps" or "ceiling".
    refused: str | None = None


def plan_replacement(
    old: Fees,
    current: Quote,
    *,
    percent: int,
    ceiling: int,
    bumps_done: int,
    max_bumps: int,
    seconds_since_last: float,
    spacing_seconds: float,
) -> Replacement:
    """The fees of the next replacement of a transaction the node accepted, or why there is none yet.

    Replacements are spaced out (the n-th waits spacing * 2^(n-1) after the last attempt), capped in
    number, and never pass the ceiling: one that would have to is not sent.
    """
    if bumps_done >= max_bumps:
        return Replacement(None, "max_bumps")
    wait = exponential_backoff(bumps_done + 1, spacing_seconds, MAX_BUMP_SPACING_SECONDS, jitter=False)
    if seconds_since_last < wait:
        return Replacement(None, "spacing")
    fees = old.bumped(percent, current.fees).capped(ceiling)
    if not fees.replaces(old):
        return Replacement(None, "ceiling")
    return Replacement(fees)


def _int(value: Any) -> int:
    return int(value, 16) if isinstance(value, str) else int(value)
