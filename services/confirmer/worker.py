"""The confirmer loop: watch every open batch until its receipt is deep enough, then settle its entries.

PostgreSQL is what the confirmer watches (every batch in `signed` / `sent`); a `tx.sent` event only
makes it look sooner. So a lost event, a restart or a flushed Redis never leaves a batch unwatched.
"""

import asyncio
import logging
import os
import socket
import time
from dataclasses import dataclass, field

import asyncpg
from redis.asyncio import Redis

from services.confirmer import metrics
from services.confirmer.finality import Finality
from services.confirmer.lookups import Lookups
from services.confirmer.receipts import ALREADY_PROCESSED, AUTHORIZATION_SPENT, outcomes
from services.confirmer.settings import TUNABLE, ConfirmerSettings
from shared import keys, logs
from shared.events import Event, MintCompleted, MintFailed, MintRequested, TxStuck
from shared.jsonrpc import JsonRpc, RpcError
from shared.loops import pause
from shared.overrides import with_overrides
from shared.streams import Consumer, publish, publish_many

log = logging.getLogger(__name__)

NOT_PAID = (
    "not paid: the authorization's nonce was cancelled or spent by a different authorization, "
    "so no payment reached the treasury"
)

OPEN_BATCHES = """
SELECT b.id, b.kind, b.wallet, b.nonce, b.tx_hash, array_agg(t.tx_hash ORDER BY t.created_at) AS tx_hashes
FROM batches b JOIN batch_transactions t ON t.batch_id = b.id
WHERE b.status IN ('signed', 'sent')
GROUP BY b.id
"""


@dataclass
class Watched:
    id: int
    kind: str
    wallet: str
    nonce: int
    latest_hash: str
    tx_hashes: list[str]
    next_in_line_since: int | None = None
    last_stuck_head: int | None = None
    nonce_used_since: int | None = None


@dataclass
class Settlement:
    completed: dict[str, str] = field(default_factory=dict)  # request id -> mint tx hash
    token_ids: dict[str, int] = field(default_factory=dict)  # request id -> NFT token id
    failed: dict[str, str] = field(default_factory=dict)  # request id -> reason
    retry: dict[str, str] = field(default_factory=dict)  # request id -> reason
    paid_elsewhere: set[str] = field(default_factory=set)  # retried without their authorization


class Confirmer:
    def __init__(self, settings: ConfirmerSettings, pool: asyncpg.Pool, redis: Redis, rpc: JsonRpc) -> None:
        self.settings = settings
        self.tuning = settings
        self.pool = pool
        self.redis = redis
        self.rpc = rpc
        self.contracts = {"token": settings.deployment.token, "nft": settings.deployment.nft}
        self.lookups = Lookups(rpc, settings.deployment, settings.rpc_max_log_range)
        names = settings.keys
        self.sent = Consumer(
            redis,
            names.stream(keys.TX_SENT),
            keys.CONFIRMER,
            f"confirmer-{socket.gethostname()}-{os.getpid()}",
            dead_stream=names.dead(keys.TX_SENT),
        )
        self.streams = {
            "completed": names.stream(keys.MINT_COMPLETED),
            "failed": names.stream(keys.MINT_FAILED),
            "requested": names.stream(keys.MINT_REQUESTED),
            "stuck": names.stream(keys.TX_STUCK),
        }
        self.watched: dict[int, Watched] = {}
        self.finality = Finality(pool, redis, rpc, self.streams["completed"], settings.finality_depth)
        self._reload_now = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self.sent.consume(self._on_sent, stop))
            tasks.create_task(self._poll_loop(stop))

    async def _on_sent(self, _: Event) -> None:
        self._reload_now.set()

    async def _poll_loop(self, stop: asyncio.Event) -> None:
        next_reload = next_refresh = next_finality = 0.0
        while not stop.is_set():
            try:
                now = time.monotonic()
                if now >= next_refresh:
                    self.tuning = await with_overrides(self.pool, self.settings, TUNABLE)
                    next_refresh = now + self.settings.settings_refresh_seconds
                if self._reload_now.is_set() or now >= next_reload:
                    self._reload_now.clear()
                    await self._reload()
                    next_reload = now + self.settings.reload_seconds
                if self.watched:
                    await self.check_all()
                if now >= next_finality:
                    next_finality = now + self.settings.finality_check_seconds
                    if await self.finality.check():
                        self._reload_now.set()
            except Exception:
                log.exception("confirmer poll failed; going on")
            await pause(self._reload_now, self.settings.poll_interval_seconds)

    async def _reload(self) -> None:
        rows = await self.pool.fetch(OPEN_BATCHES)
        current = {}
        for row in rows:
            known = self.watched.get(row["id"])
            if known is None:
                known = Watched(
                    row["id"],
                    row["kind"],
                    row["wallet"],
                    row["nonce"],
                    row["tx_hash"],
                    list(row["tx_hashes"]),
                )
            known.latest_hash, known.tx_hashes = row["tx_hash"], list(row["tx_hashes"])
            current[row["id"]] = known
        self.watched = current
        metrics.WATCHED.set(len(current))

    async def check_all(self) -> None:
        """One JSON-RPC batch for the head and every watched transaction's receipt, then act on each."""
        batches = list(self.watched.values())
        # Latest attempt first: after a fee bump, that is the one most likely mined.
        asked = [(batch, tx_hash) for batch in batches for tx_hash in reversed(batch.tx_hashes)]
        wallets = sorted({batch.wallet for batch in batches})
        # Settled: one failed receipt call must not cost every other batch its round.
        head_hex, *answers = await self.rpc.batch_settled(
            [("eth_blockNumber", [])]
            + [("eth_getTransactionCount", [wallet, "latest"]) for wallet in wallets]
            + [("eth_getTransactionReceipt", [tx_hash]) for _, tx_hash in asked]
        )
        counts, answers = answers[: len(wallets)], answers[len(wallets) :]
        if failed := next((a for a in [head_hex, *counts] if isinstance(a, RpcError)), None):
            raise failed
        head = int(head_hex, 16)
        mined_nonces = {wallet: int(count, 16) for wallet, count in zip(wallets, counts, strict=True)}
        metrics.HEAD.set(head)
        receipts: dict[int, dict] = {}
        unanswered: set[int] = set()
        for (batch, _), receipt in zip(asked, answers, strict=True):
            if isinstance(receipt, RpcError):
                unanswered.add(batch.id)
            elif receipt is not None:
                receipts.setdefault(batch.id, receipt)
        deep = {
            batch_id: receipt
            for batch_id, receipt in receipts.items()
            if head - int(receipt["blockNumber"], 16) + 1 >= self.tuning.confirmations
        }
        canonical = await self._block_hashes({int(r["blockNumber"], 16) for r in deep.values()})
        for batch in batches:
            if batch.id in unanswered and batch.id not in receipts:
                # Not known yet: without its receipt, a used nonce would look taken by a stranger.
                continue
            with logs.bind(batch_id=batch.id, nonce=batch.nonce, tx_hash=batch.latest_hash):
                await self._check(batch, head, mined_nonces, receipts, deep, canonical)

    async def _check(
        self,
        batch: Watched,
        head: int,
        mined_nonces: dict[str, int],
        receipts: dict[int, dict],
        deep: dict[int, dict],
        canonical: dict[int, str | None],
    ) -> None:
        try:
            if batch.id not in receipts:
                await self._not_mined(batch, head, mined_nonces[batch.wallet])
            elif batch.id in deep:
                receipt = deep[batch.id]
                if canonical.get(int(receipt["blockNumber"], 16)) != receipt["blockHash"]:
                    # The receipt's block left the canonical chain: wait for the transaction again.
                    metrics.REORGS.inc()
                    log.warning(
                        "batch %d: block %s reorged away; waiting again", batch.id, receipt["blockNumber"]
                    )
                    return
                await self._settle_mined(batch, receipt)
        except Exception:
            log.exception("checking batch %d failed; will look again", batch.id)

    async def _block_hashes(self, numbers: set[int]) -> dict[int, str | None]:
        if not numbers:
            return {}
        ordered = sorted(numbers)
        blocks = await self.rpc.batch([("eth_getBlockByNumber", [hex(n), False]) for n in ordered])
        return {n: (block or {}).get("hash") for n, block in zip(ordered, blocks, strict=True)}

    async def _not_mined(self, batch: Watched, head: int, mined_nonce: int) -> None:
        """`mined_nonce` is the wallet's transaction count at the head: the next nonce to be mined."""
        if mined_nonce < batch.nonce:
            # Queued behind the wallet's earlier transactions: waiting its turn, not stuck.
            batch.next_in_line_since = None
            return
        if mined_nonce > batch.nonce:
            # The nonce is used, yet by none of our attempts: another transaction took it.
            batch.nonce_used_since = batch.nonce_used_since or head
            if head - batch.nonce_used_since >= self.settings.dropped_after_blocks:
                await self._settle_dropped(batch)
            return
        if batch.next_in_line_since is None:
            batch.next_in_line_since = head
        waited = head - batch.next_in_line_since
        every = self.tuning.stuck_after_blocks
        if waited >= every and (batch.last_stuck_head is None or head - batch.last_stuck_head >= every):
            batch.last_stuck_head = head
            metrics.STUCK.inc()
            log.info(
                "batch %d (nonce %d) next in line but not mined for %d blocks: asking for a fee bump",
                batch.id,
                batch.nonce,
                waited,
            )
            await publish(
                self.redis,
                self.streams["stuck"],
                TxStuck(batch_id=batch.id, nonce=batch.nonce, tx_hash=batch.latest_hash),
            )

    async def _settle_mined(self, batch: Watched, receipt: dict) -> None:
        """Settle every entry of a batch from its receipt (a raw JSON-RPC receipt: hex fields)."""
        tx_hash = receipt["transactionHash"]
        succeeded = int(receipt["status"], 16) == 1
        block, gas_used = int(receipt["blockNumber"], 16), int(receipt["gasUsed"], 16)
        rows = await self.pool.fetch(
            "SELECT id, payment_id, authorization_data, accepted_block FROM mint_requests"
            " WHERE batch_id = $1 AND status IN ('batched', 'sent')",
            batch.id,
        )
        settlement = Settlement()
        if not succeeded:
            settlement.retry = {str(r["id"]): "batch transaction reverted" for r in rows}
        else:
            contract = self.contracts[batch.kind]
            found = outcomes(receipt["logs"], contract)
            for row in rows:
                request_id, outcome = str(row["id"]), found.get(row["payment_id"].lower())
                if outcome is None:
                    settlement.retry[request_id] = "no outcome for this entry in the receipt"
                elif outcome.minted:
                    settlement.completed[request_id] = tx_hash
                    if batch.kind == "nft" and outcome.value is not None:
                        settlement.token_ids[request_id] = outcome.value
                elif outcome.reason == ALREADY_PROCESSED:
                    # Minted by an earlier transaction (a resend after a crash): find which one.
                    earlier = await self.lookups.minted_in(contract, row, block)
                    if earlier:
                        settlement.completed[request_id] = earlier["transactionHash"]
                        if batch.kind == "nft":
                            settlement.token_ids[request_id] = int(earlier["data"], 16)
                    else:
                        settlement.failed[request_id] = ALREADY_PROCESSED
                elif AUTHORIZATION_SPENT in (outcome.reason or ""):
                    if await self.lookups.authorization_paid(row, block):
                        # Someone submitted the payer's own signed transfer before our batch: the
                        # treasury is paid all the same, so mint without settling it again.
                        settlement.retry[request_id] = "authorization settled outside the batch"
                        settlement.paid_elsewhere.add(request_id)
                    else:
                        settlement.failed[request_id] = NOT_PAID
                else:
                    settlement.failed[request_id] = outcome.reason or "skipped"
        minted = len(settlement.completed)
        if minted:
            metrics.GAS_PER_MINT.observe(gas_used / minted)
        await self._commit(
            batch, settlement, "confirmed" if succeeded else "reverted", block, gas_used, receipt
        )
        log.info(
            "batch %d confirmed in block %d (tx %s): %d completed, %d failed, %d retried",
            batch.id,
            block,
            tx_hash,
            minted,
            len(settlement.failed),
            len(settlement.retry),
        )

    async def _settle_dropped(self, batch: Watched) -> None:
        rows = await self.pool.fetch(
            "SELECT id FROM mint_requests WHERE batch_id = $1 AND status IN ('batched', 'sent')", batch.id
        )
        reason = "batch transaction dropped: its nonce was used by another transaction"
        await self._commit(
            batch, Settlement(retry={str(r["id"]): reason for r in rows}), "reverted", None, None
        )
        log.warning("batch %d (nonce %d) dropped; %d requests retried", batch.id, batch.nonce, len(rows))

    async def _commit(
        self,
        batch: Watched,
        settlement: Settlement,
        status: str,
        block: int | None,
        gas_used: int | None,
        receipt: dict | None = None,
    ) -> None:
        """Record the batch's outcome; a mined batch keeps its transaction and block hash, which the
        finality watch compares with the canonical chain until the block is final."""
        events: dict[str, list] = {"completed": [], "failed": [], "requested": []}
        async with self.pool.acquire() as conn, conn.transaction():
            if settlement.completed:
                done = await conn.fetch(
                    "UPDATE mint_requests AS r SET status = 'completed', mint_tx_hash = c.tx_hash,"
                    " token_id = c.token_id, processed_at = now(), updated_at = now()"
                    " FROM unnest($1::uuid[], $2::text[], $3::numeric[]) AS c(id, tx_hash, token_id)"
                    " WHERE r.id = c.id AND r.status IN ('batched', 'sent')"
                    " RETURNING r.id, c.tx_hash, extract(epoch FROM now() - r.created_at)::float8 AS waited",
                    list(settlement.completed),
                    list(settlement.completed.values()),
                    [settlement.token_ids.get(i) for i in settlement.completed],
                )
                for row in done:
                    metrics.REQUEST_DURATION.observe(row["waited"])
                    events["completed"].append(
                        MintCompleted(request_id=str(row["id"]), tx_hash=row["tx_hash"])
                    )
                metrics.MINTS_COMPLETED.inc(len(done))
            failed = dict(settlement.failed)
            if settlement.paid_elsewhere:
                await conn.execute(
                    "UPDATE mint_requests SET payment_settled = true WHERE id = ANY($1::uuid[])",
                    list(settlement.paid_elsewhere),
                )
            if settlement.retry:
                # Recorded as confirmation_failed, then back to pending as a new attempt, or failed
                # for good once the retries are used up.
                await conn.execute(
                    "UPDATE mint_requests AS r SET status = 'confirmation_failed', error_message = c.reason,"
                    " updated_at = now() FROM unnest($1::uuid[], $2::text[]) AS c(id, reason)"
                    " WHERE r.id = c.id AND r.status IN ('batched', 'sent')",
                    list(settlement.retry),
                    list(settlement.retry.values()),
                )
                retried = await conn.fetch(
                    "UPDATE mint_requests SET status = 'pending', batch_id = NULL,"
                    " retry_count = retry_count + 1,"
                    " published_at = now(), updated_at = now()"
                    " WHERE id = ANY($1::uuid[]) AND status = 'confirmation_failed' AND retry_count < $2"
                    " RETURNING id, kind, valid_before",
                    list(settlement.retry),
                    self.tuning.max_retries,
                )
                again = {str(r["id"]) for r in retried}
                metrics.RETRIES.inc(len(again))
                events["requested"] = [MintRequested.of_row(r) for r in retried]
                failed.update(
                    {
                        i: f"{reason} (retries exhausted)"
                        for i, reason in settlement.retry.items()
                        if i not in again
                    }
                )
            if failed:
                gone = await conn.fetch(
                    "UPDATE mint_requests AS r SET status = 'failed', error_message = c.reason,"
                    " processed_at = now(), updated_at = now()"
                    " FROM unnest($1::uuid[], $2::text[]) AS c(id, reason)"
                    " WHERE r.id = c.id AND r.status IN ('batched', 'sent', 'confirmation_failed')"
                    " RETURNING r.id, c.reason",
                    list(failed),
                    list(failed.values()),
                )
                for row in gone:
                    metrics.MINTS_FAILED.labels(reason=row["reason"].split(":")[0][:40]).inc()
                    events["failed"].append(MintFailed(request_id=str(row["id"]), reason=row["reason"]))
            await conn.execute(
                "UPDATE batches SET status = $2, block_number = $3, gas_used = $4, confirmed_at = now(),"
                " mined_tx_hash = $5, block_hash = $6 WHERE id = $1 AND status IN ('signed', 'sent')",
                batch.id,
                status,
                block,
                gas_used,
                receipt and receipt["transactionHash"],
                receipt and receipt["blockHash"],
            )
        self.watched.pop(batch.id, None)
        for name, batch_events in events.items():
            await publish_many(self.redis, self.streams[name], batch_events, self.settings.stream_maxlen)


async def replay(pool: asyncpg.Pool, redis: Redis, settings: ConfirmerSettings) -> int:
    """Republish outcomes whose webhook was never queued (the event was lost with Redis or a crash)."""
    rows = await pool.fetch(
        "SELECT r.id, r.status, r.mint_tx_hash, r.error_message FROM mint_requests r"
        " WHERE r.status IN ('completed', 'failed') AND r.callback_url IS NOT NULL"
        " AND NOT EXISTS (SELECT 1 FROM webhook_deliveries w WHERE w.request_id = r.id)"
    )
    completed = [
        MintCompleted(request_id=str(r["id"]), tx_hash=r["mint_tx_hash"])
        for r in rows
        if r["status"] == "completed"
    ]
    failed = [
        MintFailed(request_id=str(r["id"]), reason=r["error_message"] or "failed")
        for r in rows
        if r["status"] == "failed"
    ]
    names = settings.keys
    await publish_many(redis, names.stream(keys.MINT_COMPLETED), completed, settings.stream_maxlen)
    await publish_many(redis, names.stream(keys.MINT_FAILED), failed, settings.stream_maxlen)
    return len(rows)
