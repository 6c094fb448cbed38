"""Nonce holes: the chain's next nonce for the wallet has no open batch, yet later batches wait
behind it. It happens when the transaction that held it is gone (reorged out after its batch was
settled as dropped, lost by every node) or when a row was lost with a PostgreSQL restore. Nothing
would ever send that nonce again, so every later batch would wait forever: after
BATCHER_NONCE_HOLE_SECONDS the nonce is filled with a no-op self-transfer, recorded as a batch.

A settled batch at that nonce is taken over only if it is `reverted` (its requests were retried or
failed already). A `confirmed` one is never overwritten: its mined transaction is sent again instead.
On a chain that holds it, that is refused as a used nonce and changes nothing; on a chain that lost it
(a reorg the finality watch has not seen, or will not: anvil, racing its own miner, was seen to
answer a reorged-out block's receipts with the wallet's nonce below them), it is mined again, with the
same effects, and the nonces behind it go on.
"""

import logging
import time
from typing import TYPE_CHECKING

import asyncpg

from services.batcher import metrics
from services.batcher.store import INSERT_ATTEMPT, NO_OP_GAS, sign_no_op

if TYPE_CHECKING:
    from services.batcher.worker import Batcher

log = logging.getLogger(__name__)

WAITING_BEHIND = """
SELECT bool_or(nonce = $2) AS held, count(*) FILTER (WHERE nonce > $2) AS behind
FROM batches WHERE wallet = $1 AND status IN ('signed', 'sent') AND nonce >= $2
"""
FILL = """
INSERT INTO batches (wallet, nonce, kind, status, request_ids, tx_hash, raw_tx, call_data, gas_limit,
                     max_fee_per_gas, max_priority_fee_per_gas, fill_reason)
VALUES ($1, $2, 'token', 'signed', '{}', $3, $4, ''::bytea, $5, $6, $7, $8)
ON CONFLICT (wallet, nonce) DO UPDATE SET
    status = 'signed', tx_hash = EXCLUDED.tx_hash, raw_tx = EXCLUDED.raw_tx, call_data = EXCLUDED.call_data,
    gas_limit = EXCLUDED.gas_limit, max_fee_per_gas = EXCLUDED.max_fee_per_gas,
    max_priority_fee_per_gas = EXCLUDED.max_priority_fee_per_gas, fill_reason = EXCLUDED.fill_reason,
    attempts = batches.attempts + 1, block_number = NULL, gas_used = NULL, confirmed_at = NULL,
    mined_tx_hash = NULL, block_hash = NULL, finalized_at = NULL
WHERE batches.status = 'reverted'
RETURNING id
"""
CONFIRMED_AT = """
SELECT b.id, t.tx_hash, t.raw_tx FROM batches b JOIN batch_transactions t ON t.tx_hash = b.mined_tx_hash
WHERE b.wallet = $1 AND b.nonce = $2 AND b.status = 'confirmed'
"""


class HoleWatch:
    def __init__(self, batcher: "Batcher") -> None:
        self.batcher = batcher
        self._since: tuple[int, float] | None = None  # (the hole's nonce, when it was first seen)

    async def check(self, mined: int) -> None:
        """`mined`: the wallet's transaction count at the latest block, the next nonce to be mined."""
        batcher = self.batcher
        row = await batcher.pool.fetchrow(WAITING_BEHIND, batcher.wallet, mined)
        if row["held"] or not row["behind"]:
            self._since = None
            return
        now = time.monotonic()
        if self._since is None or self._since[0] != mined:
            self._since = (mined, now)
            return
        if now - self._since[1] < batcher.settings.nonce_hole_seconds:
            return
        confirmed = await batcher.pool.fetchrow(CONFIRMED_AT, batcher.wallet, mined)
        if confirmed is not None:
            await self._send_confirmed_again(mined, confirmed)
        else:
            await self._fill(mined, row["behind"])

    async def _fill(self, nonce: int, behind: int) -> None:
        batcher = self.batcher
        if (fees := await batcher.spending.offer(batcher.tuning, NO_OP_GAS)) is None:
            return  # the chain asks more than the ceiling, or the wallet waits for funds
        signed = sign_no_op(batcher, nonce, fees)
        reason = f"nonce hole: nothing held nonce {nonce} while {behind} later batches waited"
        async with batcher.pool.acquire() as conn, conn.transaction():
            batch_id = await conn.fetchval(
                FILL, batcher.wallet, nonce, signed.tx_hash, signed.raw, NO_OP_GAS, *fees.fields, reason
            )
            if batch_id is None:
                return  # confirmed since it was looked at: sent again at the next look
            await conn.execute(INSERT_ATTEMPT, signed.tx_hash, batch_id, signed.raw, *fees.fields)
            await batcher.lock.fence(conn)
        self._since = None
        metrics.NONCE_FILLS.labels(batcher.wallet).inc()
        metrics.UNSENDABLE.labels("nonce_hole", batcher.wallet).inc()
        log.error("%s: filled with a no-op (batch %d, tx %s)", reason, batch_id, signed.tx_hash)
        await batcher.dispatch(batch_id, nonce, signed.tx_hash, signed.raw)

    async def _send_confirmed_again(self, nonce: int, confirmed: asyncpg.Record) -> None:
        batcher = self.batcher
        self._since = None  # looked at again after another BATCHER_NONCE_HOLE_SECONDS
        metrics.UNSENDABLE.labels("nonce_hole", batcher.wallet).inc()
        log.error(
            "nonce %d is a hole, yet batch %d is confirmed at it: its mined transaction %s is sent again",
            nonce,
            confirmed["id"],
            confirmed["tx_hash"],
        )
        await batcher.dispatch(confirmed["id"], nonce, confirmed["tx_hash"], bytes(confirmed["raw_tx"]))
