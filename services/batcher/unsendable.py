"""What becomes of a batch the chain will not take as signed (send_errors.Refusal), so that no
refusal wedges the nonce sequence:

- fees that no longer fit the chain: the same call re-signed at the same nonce with fees read now
  (both fields also 10% above the last attempt's), once the chain's fee history asks more;
- more gas or bytes than the chain takes, or a refusal that keeps coming: the nonce is filled with a
  no-op self-transfer (21,000 gas), the batch's requests go back to the queue (to be sent in smaller
  batches), and batches behind the nonce go on;
- a wallet that cannot pay: batches wait for funds (an alert says so); nothing is signed meanwhile;
- a transaction signed for another chain: a configuration error, the batcher stops.

Each outcome counts in mintline_batcher_unsendable_total{reason}.
"""

import logging
from typing import TYPE_CHECKING

from services.batcher import metrics
from services.batcher.send_errors import Classified, Refusal
from services.batcher.store import NO_OP_GAS, offered, sign_again, sign_no_op, store_attempt
from shared.chain_checks import ChainMismatch
from shared.events import REQUESTED_COLUMNS, MintRequested
from shared.streams import publish_many

if TYPE_CHECKING:
    from services.batcher.worker import Batcher

log = logging.getLogger(__name__)

# Refusals of one batch for reasons nobody knows before its nonce is filled.
REFUSALS_BEFORE_FILL = 3
OPEN_BATCH = """
SELECT id, kind, nonce, tx_hash, raw_tx, call_data, gas_limit, max_fee_per_gas, max_priority_fee_per_gas,
       fill_reason
FROM batches WHERE id = $1 AND wallet = $2 AND status IN ('signed', 'sent')
"""
# Through confirmation_failed, as the confirmer retries, so the reason stays in the status history;
# not counted as a retry: the request did nothing wrong.
REQUEUE = """
UPDATE mint_requests SET status = 'confirmation_failed', error_message = $2, updated_at = now()
WHERE batch_id = $1 AND status IN ('batched', 'sent')
RETURNING id
"""
BACK_TO_PENDING = f"""
UPDATE mint_requests SET status = 'pending', batch_id = NULL, published_at = now(), updated_at = now()
WHERE id = ANY($1::uuid[]) AND status = 'confirmation_failed'
RETURNING {REQUESTED_COLUMNS}
"""


class Misconfigured(ChainMismatch):
    """The node refuses the transaction's chain: the deployment and the RPC disagree."""

    outcome = "stopping"


class Unsendable:
    """Resolves refusals for the active batcher, whose wallet, fees and lock it uses."""

    def __init__(self, batcher: "Batcher") -> None:
        self.batcher = batcher
        self.refusals: dict[int, int] = {}  # batch id -> permanent refusals seen

    async def resolve(self, batch_id: int, verdict: Classified) -> None:
        refusal = verdict.refusal
        if refusal is Refusal.WRONG_CHAIN:
            metrics.UNSENDABLE.labels(refusal.value, self.batcher.wallet).inc()
            raise Misconfigured(f"the node refuses the chain of batch {batch_id}: {verdict.message}")
        if refusal is Refusal.FUNDS:
            metrics.UNSENDABLE.labels(refusal.value, self.batcher.wallet).inc()
            self.batcher.spending.wait_for_funds(verdict.message)
            return
        if refusal is Refusal.FEES:
            # Never filled: a no-op would need the same fees. Re-signed once the chain asks more.
            await self._resign(batch_id)
            return
        seen = self.refusals[batch_id] = self.refusals.get(batch_id, 0) + 1
        if refusal is Refusal.REJECTED and seen < REFUSALS_BEFORE_FILL:
            return  # the same bytes go again with the next rebroadcast
        metrics.UNSENDABLE.labels(refusal.value, self.batcher.wallet).inc()
        reason = f"batch unsendable ({refusal.value}): {verdict.message[:200]}"
        filled = await self.fill(batch_id, reason)
        if refusal in (Refusal.TOO_LARGE, Refusal.REJECTED) and filled is not None and filled[1]:
            kind, moved = filled
            self.batcher.cap_entries(kind, max(1, moved // 2))

    def forget(self, batch_id: int) -> None:
        self.refusals.pop(batch_id, None)

    async def _resign(self, batch_id: int) -> None:
        """The same call at the same nonce, with fees that fit the chain now: only for an attempt the
        node does not hold (one it holds, waiting for a lower base fee, is the stuck path's to bump),
        and only when the chain's own quote asks more than the attempt offers (a node that refuses
        what the chain's fee history says is enough is a block ahead of it: the bytes go again)."""
        batcher = self.batcher
        batch = await batcher.pool.fetchrow(OPEN_BATCH, batch_id, batcher.wallet)
        if batch is None or await batcher.chain.knows(batch["tx_hash"]):
            return
        old = offered(batch)
        if (await batcher.spending.fees(batcher.tuning)).fees.max_fee_per_gas <= old.max_fee_per_gas:
            return
        metrics.UNSENDABLE.labels(Refusal.FEES.value, batcher.wallet).inc()
        if (fees := await batcher.spending.offer(batcher.tuning, batch["gas_limit"], old)) is None:
            return
        signed = sign_again(batcher, batch, fees)
        if signed.tx_hash == batch["tx_hash"]:
            return  # the same fees as before: nothing new to offer yet
        async with batcher.pool.acquire() as conn, conn.transaction():
            await store_attempt(conn, batch_id, signed, fees)
            await batcher.lock.fence(conn)
        log.warning(
            "batch %d (nonce %d) re-signed with fees from the chain: max fee %d -> %d, tx %s",
            batch_id,
            batch["nonce"],
            int(batch["max_fee_per_gas"]),
            fees.max_fee_per_gas,
            signed.tx_hash,
        )
        await batcher.dispatch(batch_id, batch["nonce"], signed.tx_hash, signed.raw)

    async def fill(self, batch_id: int, reason: str, mind_balance: bool = True) -> tuple[str, int] | None:
        """A no-op self-transfer at the batch's nonce; its requests go back to the queue. Returns the
        batch's kind and how many requests went back, or None when nothing was done (settled or
        filled already, or no fees fit now). Without `mind_balance` the no-op is signed at the fees
        the chain asks whatever the wallet holds: it goes once the wallet is funded (dry.py)."""
        batcher = self.batcher
        batch = await batcher.pool.fetchrow(OPEN_BATCH, batch_id, batcher.wallet)
        if batch is None or batch["fill_reason"] is not None:
            return None  # settled meanwhile, or filled already (the filler is rebroadcast as any batch)
        fees = await batcher.spending.offer(batcher.tuning, NO_OP_GAS, offered(batch), mind_balance)
        if fees is None:
            return None
        signed = sign_no_op(batcher, batch["nonce"], fees)
        async with batcher.pool.acquire() as conn, conn.transaction():
            await store_attempt(conn, batch_id, signed, fees)
            await conn.execute(
                "UPDATE batches SET fill_reason = $2, call_data = ''::bytea, gas_limit = $3 WHERE id = $1",
                batch_id,
                reason,
                NO_OP_GAS,
            )
            moved = [r["id"] for r in await conn.fetch(REQUEUE, batch_id, reason)]
            requeued = await conn.fetch(BACK_TO_PENDING, moved)
            await batcher.lock.fence(conn)
        metrics.NONCE_FILLS.labels(batcher.wallet).inc()
        log.error(
            "batch %d (nonce %d) %s; nonce filled with a no-op (tx %s), %d requests back in the queue",
            batch_id,
            batch["nonce"],
            reason,
            signed.tx_hash,
            len(requeued),
            extra={"batch_id": batch_id, "nonce": batch["nonce"], "tx_hash": signed.tx_hash},
        )
        await publish_many(
            batcher.redis,
            batcher.requested_stream,
            [MintRequested.of_row(r) for r in requeued],
            batcher.settings.stream_maxlen,
        )
        self.forget(batch_id)
        await batcher.dispatch(batch_id, batch["nonce"], signed.tx_hash, signed.raw)
        return batch["kind"], len(moved)
