"""Storing a batch: claim the requests' rows, sign the batchMint transaction at the next nonce and
store it, in one PostgreSQL transaction that commits only while this batcher holds the wallet lock
(invariant 3: stored before broadcast; the lock's fence: no commit after the lock is lost).

The gas limit follows the node's estimate within the chain's caps (batching.gas_limit_for); between
estimates, the gas per entry learnt from them, confirmed by one call at that limit (batching.EntryGas:
an estimate runs the batch some twenty times). The fees follow the chain (fees.read_quote) within the
ceiling and the wallet's balance (fees.within_balance).
"""

import logging
import time
from typing import TYPE_CHECKING, Any

import asyncpg

from services.batcher import fees as fee_logic
from services.batcher import metrics
from services.batcher.batching import BatchTooLarge, Waiting, gas_limit_for
from services.batcher.chain import GasEstimateFailed
from services.batcher.fees import Fees, FeesAboveCeiling
from services.batcher.transactions import SignedTx, encode_batch_mint, is_legacy, mint_entry, sign
from shared.events import MintFailed
from shared.streams import publish_many

if TYPE_CHECKING:
    from services.batcher.worker import Batcher

log = logging.getLogger(__name__)

CLAIM = """
UPDATE mint_requests SET status = 'batched', batch_id = $1, updated_at = now()
WHERE id = ANY($2::uuid[]) AND status = 'pending'
RETURNING id, kind, payer_address, payment_id, authorization_data, payment_settled, valid_before, token_uri
"""
FAIL_EXPIRED = """
UPDATE mint_requests
SET status = 'failed', batch_id = NULL, error_message = $2, processed_at = now(), updated_at = now()
WHERE id = ANY($1::uuid[])
"""
INSERT_BATCH = """
INSERT INTO batches (id, wallet, nonce, kind, status, request_ids, tx_hash, raw_tx, call_data, gas_limit,
                     max_fee_per_gas, max_priority_fee_per_gas)
VALUES ($1, $2, $3, $4, 'signed', $5, $6, $7, $8, $9, $10, $11)
"""
INSERT_ATTEMPT = """
INSERT INTO batch_transactions (tx_hash, batch_id, raw_tx, max_fee_per_gas, max_priority_fee_per_gas)
VALUES ($1, $2, $3, $4, $5)
"""
EXPIRED = "authorization expired before it could be sent"

Stored = tuple[int, int, str, bytes]  # batch id, nonce, transaction hash, raw transaction


class BatchStore:
    def __init__(self, batcher: "Batcher") -> None:
        self.batcher = batcher

    async def store(self, chosen: list[Waiting]) -> Stored | None:
        """Claim the rows and store the signed transaction; None when every request had expired."""
        batcher = self.batcher
        order = {waiting.request_id: position for position, waiting in enumerate(chosen)}
        cutoff = int(time.time()) + batcher.tuning.expiry_margin_seconds
        signed_batch = None
        async with batcher.pool.acquire() as conn, conn.transaction():
            batch_id = await conn.fetchval("SELECT nextval('batches_id_seq')")
            rows = await conn.fetch(CLAIM, batch_id, list(order))
            expired = [
                r["id"]
                for r in rows
                if r["valid_before"] is not None and r["valid_before"] <= cutoff and not r["payment_settled"]
            ]
            if expired:
                await conn.execute(FAIL_EXPIRED, expired, EXPIRED)
            live = sorted((r for r in rows if r["id"] not in expired), key=lambda r: order[str(r["id"])])
            if live:
                signed_batch = await self._sign(conn, batch_id, live)
            await batcher.lock.fence(conn)
        if expired:
            metrics.EXPIRED_BEFORE_BATCH.inc(len(expired))
            await publish_many(
                batcher.redis,
                batcher.failed_stream,
                [MintFailed(request_id=str(i), reason=EXPIRED) for i in expired],
                batcher.settings.stream_maxlen,
            )
        if signed_batch is None:
            return None
        batcher.next_nonce += 1
        batcher.in_flight += 1
        metrics.NEXT_NONCE.labels(batcher.wallet).set(batcher.next_nonce)
        metrics.BATCH_SIZE.labels(batcher.wallet).observe(len(live))
        return signed_batch

    async def _sign(self, conn: asyncpg.Connection, batch_id: int, rows: list) -> Stored:
        batcher = self.batcher
        kind = rows[0]["kind"]
        data = encode_batch_mint(kind, [mint_entry(r) for r in rows])
        gas = await self._gas_limit(kind, data, len(rows))
        quote = await batcher.spending.fees(batcher.tuning)
        if not quote.affordable:
            raise FeesAboveCeiling(f"the chain asks {quote.required} wei per gas")
        fees = fee_logic.within_balance(quote.fees, gas, await batcher.spending.balance(), quote.required)
        nonce = batcher.next_nonce
        signed = sign(
            batcher.account,
            chain_id=batcher.deployment.chain_id,
            nonce=nonce,
            to=batcher.contracts[kind],
            data=data,
            gas=gas,
            fees=fees,
        )
        if len(signed.raw) > batcher.tuning.max_tx_bytes:
            raise BatchTooLarge(len(signed.raw), batcher.tuning.max_tx_bytes, "bytes")
        await conn.execute(
            INSERT_BATCH,
            batch_id,
            batcher.wallet,
            nonce,
            kind,
            [r["id"] for r in rows],
            signed.tx_hash,
            signed.raw,
            data,
            gas,
            fees.max_fee_per_gas,
            fees.max_priority_fee_per_gas,
        )
        await conn.execute(INSERT_ATTEMPT, signed.tx_hash, batch_id, signed.raw, *fees.fields)
        log.info(
            "batch %d signed: nonce %d, %d %s entries, gas %d, tx %s",
            batch_id,
            nonce,
            len(rows),
            kind,
            gas,
            signed.tx_hash,
            extra={"batch_id": batch_id, "nonce": nonce, "tx_hash": signed.tx_hash},
        )
        return batch_id, nonce, signed.tx_hash, signed.raw

    async def _gas_limit(self, kind: str, data: bytes, entries: int) -> int:
        batcher = self.batcher
        checked = batcher.entry_gas.limit_to_check(kind, entries, batcher.gas_target)
        if checked is not None and await batcher.chain.runs_within(batcher.contracts[kind], data, checked):
            return checked
        try:
            estimate = await batcher.chain.estimate_gas(batcher.contracts[kind], data)
        except GasEstimateFailed as exc:
            # Sent anyway with a formula limit: if it reverts, the confirmer retries its requests.
            log.warning("gas estimate failed for %d entries (%s); using the per-entry budget", entries, exc)
            return min(batcher.gas_target, 100_000 + 2 * entries * batcher.gas_per_entry(kind))
        batcher.entry_gas.observe(kind, estimate, entries)
        return gas_limit_for(estimate, batcher.gas_target, batcher.tx_gas_cap)


async def store_attempt(conn: asyncpg.Connection, batch_id: int, signed: SignedTx, fees: Fees) -> None:
    """A new transaction for a batch's nonce (a fee bump, a re-sign, a no-op fill): recorded as an
    attempt, and the batch's current transaction from now on."""
    await conn.execute(INSERT_ATTEMPT, signed.tx_hash, batch_id, signed.raw, *fees.fields)
    await conn.execute(
        "UPDATE batches SET tx_hash = $2, raw_tx = $3, max_fee_per_gas = $4, max_priority_fee_per_gas = $5,"
        " attempts = attempts + 1 WHERE id = $1",
        batch_id,
        signed.tx_hash,
        signed.raw,
        fees.max_fee_per_gas,
        fees.max_priority_fee_per_gas,
    )


def sign_again(batcher: "Batcher", batch: Any, fees: Fees) -> SignedTx:
    """A stored batch's transaction at its nonce with other fees: its call, or for a nonce filled with
    a no-op (unsendable.py) the no-op again, to the wallet itself."""
    return sign(
        batcher.account,
        chain_id=batcher.deployment.chain_id,
        nonce=batch["nonce"],
        to=batcher.wallet if batch["fill_reason"] else batcher.contracts[batch["kind"]],
        data=bytes(batch["call_data"]),
        gas=batch["gas_limit"],
        fees=fees,
    )


def offered(batch: Any) -> Fees:
    """The fees a stored batch's current attempt offers."""
    raw = bytes(batch["raw_tx"])
    return Fees(int(batch["max_fee_per_gas"]), int(batch["max_priority_fee_per_gas"]), is_legacy(raw))


NO_OP_GAS = 21_000


def sign_no_op(batcher: "Batcher", nonce: int, fees: Fees) -> SignedTx:
    """A self-transfer of nothing at `nonce`: what fills a nonce no batch can or will use."""
    return sign(
        batcher.account,
        chain_id=batcher.deployment.chain_id,
        nonce=nonce,
        to=batcher.wallet,
        data=b"",
        gas=NO_OP_GAS,
        fees=fees,
    )
