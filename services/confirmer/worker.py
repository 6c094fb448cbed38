"""The confirmer loop: watch every open batch until its receipt is deep enough, then settle its entries.

PostgreSQL is what the confirmer watches (every batch in `signed` / `sent`); a `tx.sent` event only
makes it look sooner. So a lost event, a restart or a flushed Redis never leaves a batch unwatched.
What a round reads is in watching.py, what an unmined batch is doing in unmined.py, what a receipt
means for each request in settling.py, and how the outcome is written in recording.py.
"""

import asyncio
import logging
import os
import socket
import time

import asyncpg
from redis.asyncio import Redis

from services.confirmer import metrics, settling, unmined, watching
from services.confirmer.finality import Finality
from services.confirmer.lookups import Lookups
from services.confirmer.recording import Streams, record
from services.confirmer.settings import TUNABLE, ConfirmerSettings
from services.confirmer.settling import Settlement
from services.confirmer.unmined import Verdict
from services.confirmer.watching import Round, Watched
from shared import keys, logs
from shared.events import Event, TxStuck
from shared.jsonrpc import JsonRpc, RpcError
from shared.loops import pause
from shared.overrides import with_overrides
from shared.streams import Consumer, publish

log = logging.getLogger(__name__)


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
        self.streams = Streams(
            completed=names.stream(keys.MINT_COMPLETED),
            failed=names.stream(keys.MINT_FAILED),
            requested=names.stream(keys.MINT_REQUESTED),
        )
        self.stuck_stream = names.stream(keys.TX_STUCK)
        self.watched: dict[int, Watched] = {}
        self.finality = Finality(pool, redis, rpc, self.streams.completed, settings.finality_depth)
        self._reload_now = asyncio.Event()
        # The head the watched batches were last checked at: a round of receipts is read only when a
        # new block came, the watched set changed, or the last round left a batch unanswered.
        self._checked_at: int | None = None

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
                    before = {b.id: tuple(b.tx_hashes) for b in self.watched.values()}
                    self.watched = await watching.open_batches(self.pool, self.watched)
                    if {b.id: tuple(b.tx_hashes) for b in self.watched.values()} != before:
                        self._checked_at = None
                    metrics.WATCHED.set(len(self.watched))
                    next_reload = now + self.settings.reload_seconds
                if self.watched and (head := await self._new_block()) is not None:
                    await self.check_all(head)
                if now >= next_finality:
                    next_finality = now + self.settings.finality_check_seconds
                    if await self.finality.check():
                        self._reload_now.set()
            except Exception:
                log.exception("confirmer poll failed; going on")
                self._checked_at = None
            await pause(self._reload_now, self.settings.poll_interval_seconds)

    async def _new_block(self) -> int | None:
        """The head, when there is anything new to look at (a block since the last round, or a
        change); None when there is not."""
        head = int(await self.rpc.call("eth_blockNumber", []), 16)
        return head if self._checked_at is None or head != self._checked_at else None

    async def check_all(self, head: int) -> None:
        """One JSON-RPC round for every watched batch at `head` (read just before), then act on each.
        A block mined during the round is newer than `head`, so the next poll looks again."""
        batches = list(self.watched.values())
        seen = await watching.read_round(self.rpc, batches, self.tuning.confirmations, head)
        metrics.HEAD.set(head)
        self._checked_at = None if seen.unanswered else head
        for batch_id, number in seen.reorged.items():
            metrics.REORGS.inc()
            log.warning("batch %d: block %d reorged away; reading its attempts again", batch_id, number)
        for batch in batches:
            if batch.id in seen.unanswered:
                # Not known yet: without its receipt, a used nonce would look taken by a stranger.
                continue
            with logs.bind(batch_id=batch.id, nonce=batch.nonce, tx_hash=batch.latest_hash):
                try:
                    await self._check(batch, seen)
                except Exception:
                    log.exception("checking batch %d failed; will look again", batch.id)
                    self._checked_at = None

    async def _check(self, batch: Watched, seen: Round) -> None:
        if batch.id not in seen.receipts:
            await self._not_mined(batch, seen.head, seen.mined_nonces[batch.wallet])
            return
        unmined.receipt_seen(batch)
        receipt = seen.deep.get(batch.id)
        if receipt is None:
            return  # mined, not deep enough yet
        if seen.canonical.get(int(receipt["blockNumber"], 16)) != receipt["blockHash"]:
            # The receipt's block left the canonical chain: wait for the transaction again.
            metrics.REORGS.inc()
            log.warning("batch %d: block %s reorged away; waiting again", batch.id, receipt["blockNumber"])
            return
        await self._settle_mined(batch, receipt)

    async def _not_mined(self, batch: Watched, head: int, mined_nonce: int) -> None:
        verdict = unmined.judge(
            batch,
            head,
            mined_nonce,
            stuck_after_blocks=self.tuning.stuck_after_blocks,
            taken_after_blocks=self.settings.dropped_after_blocks,
        )
        if verdict is Verdict.STUCK:
            metrics.STUCK.inc()
            log.info(
                "batch %d (nonce %d) next in line but not mined for %d blocks: asking for a fee bump",
                batch.id,
                batch.nonce,
                unmined.waited_blocks(batch, head),
            )
            await publish(
                self.redis,
                self.stuck_stream,
                TxStuck(batch_id=batch.id, nonce=batch.nonce, tx_hash=batch.latest_hash),
            )
        elif verdict is Verdict.TAKEN:
            await self._nonce_taken(batch)

    async def _nonce_taken(self, batch: Watched) -> None:
        """The wallet's nonce passed the batch's, with no receipt for any attempt for a while: before
        concluding that a transaction mintline did not sign used it, every attempt stored for the batch
        is asked once more (the original may have won over its replacements)."""
        try:
            receipt = await watching.mined_attempt(self.pool, self.rpc, batch.id)
        except RpcError as exc:
            log.warning(
                "batch %d: not every attempt's receipt could be read (%s); looking again", batch.id, exc
            )
            return
        if receipt is not None:
            log.info("batch %d: attempt %s was mined after all", batch.id, receipt["transactionHash"])
            batch.nonce_used_since = None
            self._reload_now.set()
            return
        settlement = await settling.settle_taken(self.pool, batch.id)
        if not await self._record(batch, settlement, "reverted", None):
            return
        metrics.NONCES_TAKEN.inc()
        log.warning(
            "batch %d: nonce %d of wallet %s was used by a transaction mintline did not sign (none of "
            "its %d attempts was mined): %d requests retried with a new nonce",
            batch.id,
            batch.nonce,
            batch.wallet,
            len(batch.tx_hashes),
            len(settlement.retry),
            extra={"wallet": batch.wallet},
        )

    async def _settle_mined(self, batch: Watched, receipt: dict) -> None:
        contract = self.contracts[batch.kind]
        settlement = await settling.settle_receipt(
            self.pool, self.lookups, batch.id, batch.kind, contract, receipt
        )
        succeeded = int(receipt["status"], 16) == 1
        minted = len(settlement.completed)
        if minted:
            metrics.GAS_PER_MINT.observe(int(receipt["gasUsed"], 16) / minted)
        await self._record(batch, settlement, "confirmed" if succeeded else "reverted", receipt)
        log.info(
            "batch %d confirmed in block %d (tx %s): %d completed, %d failed, %d retried",
            batch.id,
            int(receipt["blockNumber"], 16),
            receipt["transactionHash"],
            minted,
            len(settlement.failed),
            len(settlement.retry),
        )

    async def _record(
        self, batch: Watched, settlement: Settlement, status: str, receipt: dict | None
    ) -> bool:
        closed = await record(
            self.pool,
            self.redis,
            self.streams,
            self.settings.stream_maxlen,
            batch.id,
            settlement,
            status,
            receipt,
            self.tuning.max_retries,
        )
        self.watched.pop(batch.id, None)
        return closed
