"""Replacing a late transaction: the same nonce, both fee fields raised by at least the node's rule
(fees.plan_replacement), and only for a transaction the node has; one it does not (refused, lost by a
restarted node, answered but never forwarded by a provider) is rebroadcast from its stored bytes, so a
refusal never turns into a fee spiral. Where no bump is allowed yet (spacing, the cap on bumps, the
ceiling), the current attempt is broadcast again to every endpoint."""

import logging
from typing import TYPE_CHECKING

from services.batcher import fees as fee_logic
from services.batcher import metrics
from services.batcher.store import offered, sign_again, store_attempt
from shared.events import Event, TxStuck

if TYPE_CHECKING:
    from services.batcher.worker import Batcher

log = logging.getLogger(__name__)

# The wallet's other transactions in flight behind a nonce, in the order they must be mined.
LATER_IN_FLIGHT = """
SELECT id, nonce, tx_hash, raw_tx FROM batches
WHERE wallet = $1 AND nonce > $2 AND status IN ('signed', 'sent')
ORDER BY nonce
"""


class Replacer:
    """Handles tx.stuck for the active batcher, whose wallet, fees and run-time settings it uses."""

    def __init__(self, batcher: "Batcher") -> None:
        self.batcher = batcher

    async def on_stuck(self, event: Event) -> None:
        """Replace a late transaction with the same nonce and higher fees, if the node accepted it;
        one it never took (refused for funds, lost by a restarted node) is rebroadcast as is."""
        batcher = self.batcher
        if not isinstance(event, TxStuck):
            return
        batch = await batcher.pool.fetchrow(
            "SELECT id, kind, nonce, status, tx_hash, raw_tx, call_data, gas_limit, max_fee_per_gas,"
            " max_priority_fee_per_gas, attempts, fill_reason,"
            " (SELECT extract(epoch FROM now() - max(t.created_at)) FROM batch_transactions t"
            " WHERE t.batch_id = b.id)::float8 AS since_last"
            " FROM batches b WHERE id = $1 AND wallet = $2",
            event.batch_id,
            batcher.wallet,
        )
        if batch is None or batch["status"] not in ("signed", "sent") or batch["tx_hash"] != event.tx_hash:
            return  # confirmed, or already bumped since this report
        if await batcher.chain.nonce("latest") > batch["nonce"]:
            return  # the nonce is mined: the confirmer will find which attempt
        raw = bytes(batch["raw_tx"])
        # Asked of the node every time: a provider may have answered a hash it never forwarded, and a
        # node may lose a transaction it took.
        if not await batcher.chain.knows(batch["tx_hash"]):
            metrics.FEE_BUMPS_REFUSED.labels("not_accepted", batcher.wallet).inc()
            await batcher.dispatch(batch["id"], batch["nonce"], batch["tx_hash"], raw)
            await self._resend_lost_behind(batch["nonce"])
            return
        old = offered(batch)
        plan = fee_logic.plan_replacement(
            old,
            await batcher.spending.fees(batcher.tuning),
            percent=batcher.tuning.fee_bump_percent,
            ceiling=int(batcher.tuning.max_fee_gwei * fee_logic.GWEI),
            bumps_done=batch["attempts"] - 1,
            max_bumps=batcher.tuning.max_fee_bumps,
            seconds_since_last=batch["since_last"] or 0.0,
            spacing_seconds=batcher.settings.fee_bump_spacing_seconds,
        )
        if plan.fees is None:
            metrics.FEE_BUMPS_REFUSED.labels(plan.refused, batcher.wallet).inc()
            log.info("batch %d (nonce %d) stuck, no fee bump: %s", batch["id"], batch["nonce"], plan.refused)
            # Sent again as it is, to every endpoint: one that lost it gets it back.
            await batcher.dispatch(batch["id"], batch["nonce"], batch["tx_hash"], raw)
            return
        fees = plan.fees
        signed = sign_again(batcher, batch, fees)
        async with batcher.pool.acquire() as conn, conn.transaction():
            await store_attempt(conn, batch["id"], signed, fees)
            await batcher.lock.fence(conn)
        metrics.FEE_BUMPS.labels(batcher.wallet).inc()
        log.info(
            "batch %d fee bump: nonce %d, max fee %d -> %d, tx %s",
            batch["id"],
            batch["nonce"],
            old.max_fee_per_gas,
            fees.max_fee_per_gas,
            signed.tx_hash,
            extra={"batch_id": batch["id"], "nonce": batch["nonce"], "tx_hash": signed.tx_hash},
        )
        await batcher.dispatch(batch["id"], batch["nonce"], signed.tx_hash, signed.raw)

    async def _resend_lost_behind(self, nonce: int) -> None:
        """The node lost the late transaction: it has likely lost the ones behind it too (a restarted
        node, a provider's pool flushed). Those it lacks are sent again now, in nonce order, rather
        than one each time the next in line is reported stuck (`stuck_after_blocks` apart)."""
        batcher = self.batcher
        behind = await batcher.pool.fetch(LATER_IN_FLIGHT, batcher.wallet, nonce)
        if not behind:
            return
        lost = await batcher.chain.unknown([row["tx_hash"] for row in behind])
        resent = [row for row in behind if row["tx_hash"] in lost]
        if resent:
            log.info(
                "the node lost %d more transaction(s) behind nonce %d; sending them again: nonces %s",
                len(resent),
                nonce,
                ", ".join(str(row["nonce"]) for row in resent),
            )
        for row in resent:
            metrics.FEE_BUMPS_REFUSED.labels("not_accepted", batcher.wallet).inc()
            await batcher.dispatch(row["id"], row["nonce"], row["tx_hash"], bytes(row["raw_tx"]))
