"""What the wallet may offer now: the fee quote read from the chain (at most every half second),
whether the chain asks more than the ceiling, the balance (at most every second), and whether the
wallet waits for funds (and since when). The wallet's active batcher asks before each batch; nothing here
decides a batch."""

import logging
import time

from services.batcher import fees as fee_logic
from services.batcher import metrics
from services.batcher.chain import WalletChain
from services.batcher.fees import Fees, Quote, WaitingForFunds
from services.batcher.settings import BatcherSettings

log = logging.getLogger(__name__)


class Spending:
    def __init__(self, chain: WalletChain) -> None:
        self.chain = chain
        self._fees: tuple[float, Quote] | None = None
        self._balance: tuple[float, int] | None = None
        self.waiting_for_fees = False
        self.waiting_for_funds = False
        self._balance_when_short = 0
        self._short_since = 0.0

    async def fees(self, tuning: BatcherSettings) -> Quote:
        """What a new transaction offers now: EIP-1559 fees from eth_feeHistory, or the legacy gas
        price where the chain has no base fee or no eth_feeHistory."""
        now = time.monotonic()
        if self._fees is None or now - self._fees[0] > 0.5:
            quote = await fee_logic.read_quote(self.chain, fee_logic.FeePolicy.from_settings(tuning))
            if quote.clamped:
                metrics.FEES_CLAMPED.labels(self.chain.wallet).inc()
            metrics.MAX_FEE.labels(self.chain.wallet).set(quote.fees.max_fee_per_gas)
            self._fees = (now, quote)
        return self._fees[1]

    async def fees_affordable(self, tuning: BatcherSettings) -> bool:
        """False while the next block needs more than the fee ceiling: batches wait."""
        quote = await self.fees(tuning)
        waiting = not quote.affordable
        if waiting != self.waiting_for_fees:
            self.waiting_for_fees = waiting
            log.warning(
                "fee ceiling %s: the next block needs %d wei per gas, the most offered is %d",
                "reached, batches wait" if waiting else "clear again, batches go",
                quote.required,
                quote.fees.max_fee_per_gas,
            )
        metrics.FEE_CEILING_WAITING.labels(self.chain.wallet).set(int(waiting))
        return not waiting

    async def offer(
        self, tuning: BatcherSettings, gas: int, after: Fees | None = None, mind_balance: bool = True
    ) -> Fees | None:
        """Fees for a transaction of `gas` signed now: what the chain asks (both fields at least the
        nodes' 10% above `after`, the last attempt at the same nonce, which a node may still hold),
        lowered to what the balance pays for; None while that passes the ceiling, or while the wallet
        cannot pay (it then waits for funds). Without `mind_balance`, whatever the wallet holds: for a
        transaction that is to go once it is funded (dry.py)."""
        quote = await self.fees(tuning)
        fees = quote.fees if after is None else after.bumped(fee_logic.NODE_MIN_BUMP_PERCENT, quote.fees)
        if not quote.affordable or fees.max_fee_per_gas > int(tuning.max_fee_gwei * fee_logic.GWEI):
            return None
        if not mind_balance:
            return fees
        try:
            return fee_logic.within_balance(fees, gas, await self.balance(), quote.required)
        except WaitingForFunds as exc:
            self.wait_for_funds(str(exc))
            return None

    async def balance(self) -> int:
        now = time.monotonic()
        if self._balance is None or now - self._balance[0] > 1.0:
            self._balance = (now, await self.chain.balance())
        return self._balance[1]

    def wait_for_funds(self, why: str) -> None:
        self._balance_when_short = self._balance[1] if self._balance else 0
        if not self.waiting_for_funds:
            log.error(
                "wallet %s cannot pay for its transactions (%s): it takes no batches", self.chain.wallet, why
            )
            self._short_since = time.monotonic()
        self.waiting_for_funds = True
        metrics.WAITING_FOR_FUNDS.labels(self.chain.wallet).set(1)

    def short_for(self) -> float:
        """Seconds the wallet has not been able to pay (0 while it can)."""
        return time.monotonic() - self._short_since if self.waiting_for_funds else 0.0

    def funds_back(self) -> None:
        if self.waiting_for_funds:
            log.warning("wallet %s pays for its transactions again: it takes batches", self.chain.wallet)
        self.waiting_for_funds = False
        metrics.WAITING_FOR_FUNDS.labels(self.chain.wallet).set(0)

    def observed_balance(self, balance: int) -> None:
        """A balance read elsewhere (the wallet gauges): a wallet funded since it ran short may try
        again (the next batch finds out whether it is enough)."""
        self._balance = (time.monotonic(), balance)
        if self.waiting_for_funds and balance > self._balance_when_short:
            self.funds_back()
