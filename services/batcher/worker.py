"""The batcher loop: read mint.requested, close batches, store signed transactions, broadcast.

Order of effects for one batch (invariant 3): claim the rows and store the signed raw transaction
with its nonce in one PostgreSQL transaction, then ack the stream entries, then broadcast. A crash
anywhere leaves either nothing (the entries are redelivered) or a stored transaction that the next
active batcher rebroadcasts with the same nonce.
"""

import asyncio
import logging
import os
import socket
import time

import aiohttp
import asyncpg
from eth_account import Account
from redis.asyncio import Redis
from web3 import AsyncWeb3
from web3.exceptions import Web3Exception

from services.batcher import fees as fee_logic
from services.batcher import metrics, wallet_health
from services.batcher.batching import (
    BatchTooLarge,
    PendingBuffer,
    Waiting,
    batch_gas_target,
    entries_per_batch,
    gas_limit_for,
)
from services.batcher.broadcast import Broadcaster
from services.batcher.fees import FeesAboveCeiling, Quote
from services.batcher.lock import WalletLock
from services.batcher.replacement import Replacer
from services.batcher.settings import TUNABLE, BatcherSettings
from services.batcher.transactions import encode_batch_mint, mint_entry, sign
from shared import keys
from shared.backoff import exponential_backoff
from shared.events import MintFailed, MintRequested
from shared.loops import pause
from shared.overrides import with_overrides
from shared.streams import Consumer, Message, publish_many

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


class LockLost(RuntimeError):
    """The wallet lock's connection died: another batcher may be active now, so this one must stop."""


class Batcher:
    def __init__(self, settings: BatcherSettings, pool: asyncpg.Pool, redis: Redis, w3: AsyncWeb3) -> None:
        self.settings = settings
        self.tuning = settings
        self.pool = pool
        self.redis = redis
        self.w3 = w3
        self.account = Account.from_key(settings.private_key.get_secret_value())
        self.wallet = self.account.address
        self.deployment = settings.deployment
        # Each kind of request is minted by its own contract, on the one nonce sequence of the wallet.
        self.contracts = {"token": self.deployment.token, "nft": self.deployment.nft}
        names = settings.keys
        consumer = f"batcher-{socket.gethostname()}-{os.getpid()}"
        self.requests = Consumer(
            redis,
            names.stream(keys.MINT_REQUESTED),
            keys.BATCHER,
            consumer,
            dead_stream=names.dead(keys.MINT_REQUESTED),
            max_deliveries=20,
        )
        self.stuck = Consumer(
            redis, names.stream(keys.TX_STUCK), keys.BATCHER, consumer, dead_stream=names.dead(keys.TX_STUCK)
        )
        self.tx_sent_stream = names.stream(keys.TX_SENT)
        self.failed_stream = names.stream(keys.MINT_FAILED)
        self.buffer = PendingBuffer()
        self.lock = WalletLock(settings.database_url, self.wallet)
        self.active = False
        self.next_nonce = 0
        self.in_flight = 0
        # The chain's limits, read at recovery and with the run-time settings: the block gas limit, and
        # what one batch's gas limit aims for (batching.batch_gas_target).
        self.block_gas_limit = settings.max_tx_gas
        self.gas_target = settings.max_tx_gas
        # Entries per batch of a kind, learnt when a batch needed more gas than a transaction may use.
        self.entry_caps: dict[str, int] = {}
        self._fees: tuple[float, Quote] | None = None
        self.waiting_for_fees = False
        self.broadcaster = Broadcaster(w3, pool, redis, self.tx_sent_stream, settings.stream_maxlen)
        self.replacer = Replacer(self)

    async def run(self, stop: asyncio.Event) -> None:
        """Wait for the wallet lock (standby), recover, then batch until `stop`."""
        metrics.ACTIVE.set(0)
        if not await self.lock.acquire(stop):
            return
        self.active = True
        metrics.ACTIVE.set(1)
        try:
            if not await self._recover_when_reachable(stop):
                return
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._batch_loop(stop))
                tasks.create_task(self.stuck.consume(self.replacer.on_stuck, stop))
                tasks.create_task(self._maintenance_loop(stop))
        finally:
            self.active = False
            metrics.ACTIVE.set(0)
            await self.lock.release()

    async def _recover_when_reachable(self, stop: asyncio.Event) -> bool:
        """Recover, retrying while the chain or a store is unreachable; False if stopped first."""
        attempt = 0
        while not stop.is_set():
            try:
                await self.recover()
                return True
            except (OSError, asyncpg.PostgresError, Web3Exception, aiohttp.ClientError, TimeoutError) as exc:
                attempt += 1
                delay = exponential_backoff(attempt, 0.5, 10)
                log.warning("batcher recovery failed (%s); retrying in %.1f s", exc, delay)
                await pause(stop, delay)
        return False

    async def recover(self) -> None:
        """Pick up where the last active batcher stopped: nonce, stored transactions, unacked entries."""
        await self.requests.start()
        await self.stuck.start()
        await self._read_chain_limits()
        chain_nonce = await self.w3.eth.get_transaction_count(self.wallet, "pending")
        stored = await self.pool.fetchval("SELECT max(nonce) FROM batches WHERE wallet = $1", self.wallet)
        self.next_nonce = max(chain_nonce, -1 if stored is None else stored + 1)
        metrics.NEXT_NONCE.set(self.next_nonce)
        open_batches = await self.pool.fetch(
            "SELECT id, nonce, tx_hash, raw_tx FROM batches"
            " WHERE wallet = $1 AND status IN ('signed', 'sent') ORDER BY nonce",
            self.wallet,
        )
        for batch in open_batches:
            await self.broadcaster.send(batch["id"], batch["nonce"], batch["tx_hash"], batch["raw_tx"])
        # This batcher is the only active consumer now: whatever the group delivered and nobody
        # acked (a dead batcher's buffer) is ours.
        messages = await self.requests.claim_stale(count=500, min_idle_ms=0)
        await self._buffer_messages(messages)
        log.info(
            "batcher active for %s: next nonce %d (chain %d), rebroadcast %d, reclaimed %d entries",
            self.wallet,
            self.next_nonce,
            chain_nonce,
            len(open_batches),
            len(messages),
        )

    async def _batch_loop(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            try:
                await self._batch_step(loop)
            except (LockLost, asyncio.CancelledError):
                raise
            except Exception:
                log.exception("batch loop step failed; going on")
                await asyncio.sleep(1)

    async def _batch_step(self, loop: asyncio.AbstractEventLoop) -> None:
        tuning = self.tuning
        budget = min(tuning.gas_budget, self.gas_target)
        sizes = {
            kind: min(
                entries_per_batch(tuning.batch_size, budget, self._gas_per_entry(kind)),
                self.entry_caps.get(kind, tuning.batch_size),
            )
            for kind in self.contracts
        }
        window = tuning.batch_window_seconds
        if self.buffer.is_due(loop.time(), sizes, window):
            if self.in_flight < tuning.max_in_flight:
                await self._send_batch(self.buffer.take(sizes))
                return
            await asyncio.sleep(0.1)  # wait for confirmations to free a slot
            await self._count_in_flight()
            if len(self.buffer) >= tuning.buffer_limit:
                return
        room = tuning.buffer_limit - len(self.buffer)
        if room <= 0:
            await asyncio.sleep(0.05)
            return
        oldest = self.buffer.oldest_arrival()
        wait = window if oldest is None else max(0.005, oldest + window - loop.time())
        messages = await self.requests.read(min(room, 1000), block_ms=max(1, int(min(wait, 1.0) * 1000)))
        await self._buffer_messages(messages)

    async def _read_chain_limits(self) -> None:
        block = await self.w3.eth.get_block("latest")
        self.block_gas_limit = int(block["gasLimit"])
        self.gas_target = batch_gas_target(self.block_gas_limit, self.settings.max_tx_gas)

    @property
    def tx_gas_cap(self) -> int:
        return min(self.settings.max_tx_gas, self.block_gas_limit)

    def _gas_per_entry(self, kind: str) -> int:
        return self.tuning.nft_gas_per_entry if kind == "nft" else self.tuning.gas_per_entry

    async def _buffer_messages(self, messages: list[Message]) -> None:
        now = asyncio.get_running_loop().time()
        for message in messages:
            event = message.event
            if isinstance(event, MintRequested):
                self.buffer.add(event.request_id, event.kind, event.valid_before, message.id, now)
            else:
                await self.requests.reject(message, f"unexpected {event.type} on mint.requested")

    async def _send_batch(self, chosen: list[Waiting]) -> None:
        try:
            if not await self._fees_affordable():
                # The chain asks more than the fee ceiling: keep the requests and wait.
                self._keep(chosen)
                await asyncio.sleep(1)
                return
            batch = await self._store_batch(chosen)
        except BatchTooLarge as exc:
            # Nothing was committed; later batches of this kind carry fewer entries, in proportion.
            kind = chosen[0].kind
            self.entry_caps[kind] = max(1, len(chosen) * self.gas_target // exc.needed * 9 // 10)
            log.warning(
                "a batch of %d %s entries %s: batches of %d from now on",
                len(chosen),
                kind,
                exc,
                self.entry_caps[kind],
            )
            self._keep(chosen)
            return
        except FeesAboveCeiling:
            self._keep(chosen)
            return
        except (OSError, asyncpg.PostgresError, Web3Exception, aiohttp.ClientError, TimeoutError):
            # Nothing was committed: keep the requests for the next attempt.
            log.exception("could not store a batch of %d; retrying", len(chosen))
            self._keep(chosen)
            await asyncio.sleep(1)
            return
        await self.requests.ack([entry for waiting in chosen for entry in waiting.entry_ids])
        if batch is not None:
            await self.broadcaster.send(*batch)

    def _keep(self, chosen: list[Waiting]) -> None:
        """Put requests taken for a batch that was not stored back into the buffer."""
        now = asyncio.get_running_loop().time()
        for waiting in chosen:
            for entry_id in waiting.entry_ids:
                self.buffer.add(waiting.request_id, waiting.kind, waiting.valid_before, entry_id, now)

    async def _store_batch(self, chosen: list[Waiting]) -> tuple[int, int, str, bytes] | None:
        """Claim the rows and store the signed transaction; returns (batch id, nonce, hash, raw)."""
        order = {waiting.request_id: position for position, waiting in enumerate(chosen)}
        cutoff = int(time.time()) + self.tuning.expiry_margin_seconds
        async with self.pool.acquire() as conn, conn.transaction():
            batch_id = await conn.fetchval("SELECT nextval('batches_id_seq')")
            rows = await conn.fetch(CLAIM, batch_id, list(order))
            expired = [
                r["id"]
                for r in rows
                if r["valid_before"] is not None and r["valid_before"] <= cutoff and not r["payment_settled"]
            ]
            if expired:
                await conn.execute(FAIL_EXPIRED, expired, "authorization expired before it could be sent")
            live = sorted((r for r in rows if r["id"] not in expired), key=lambda r: order[str(r["id"])])
            if live:
                signed_batch = await self._sign_batch(conn, batch_id, live)
        if expired:
            metrics.EXPIRED_BEFORE_BATCH.inc(len(expired))
            await publish_many(
                self.redis,
                self.failed_stream,
                [
                    MintFailed(request_id=str(i), reason="authorization expired before it could be sent")
                    for i in expired
                ],
                self.settings.stream_maxlen,
            )
        if not live:
            return None
        self.next_nonce += 1
        self.in_flight += 1
        metrics.NEXT_NONCE.set(self.next_nonce)
        metrics.BATCH_SIZE.observe(len(live))
        return signed_batch

    async def _sign_batch(
        self, conn: asyncpg.Connection, batch_id: int, rows: list
    ) -> tuple[int, int, str, bytes]:
        kind = rows[0]["kind"]
        data = encode_batch_mint(kind, [mint_entry(r) for r in rows])
        gas = await self._gas_limit(kind, data, len(rows))
        quote = await self.current_fees()
        if not quote.affordable:
            raise FeesAboveCeiling(f"the chain asks {quote.required} wei per gas")
        fees = quote.fees
        nonce = self.next_nonce
        signed = sign(
            self.account,
            chain_id=self.deployment.chain_id,
            nonce=nonce,
            to=self.contracts[kind],
            data=data,
            gas=gas,
            fees=fees,
        )
        await conn.execute(
            "INSERT INTO batches (id, wallet, nonce, kind, status, request_ids, tx_hash, raw_tx, call_data,"
            " gas_limit, max_fee_per_gas, max_priority_fee_per_gas)"
            " VALUES ($1, $2, $3, $4, 'signed', $5, $6, $7, $8, $9, $10, $11)",
            batch_id,
            self.wallet,
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
        await conn.execute(
            "INSERT INTO batch_transactions (tx_hash, batch_id, raw_tx, max_fee_per_gas,"
            " max_priority_fee_per_gas) VALUES ($1, $2, $3, $4, $5)",
            signed.tx_hash,
            batch_id,
            signed.raw,
            fees.max_fee_per_gas,
            fees.max_priority_fee_per_gas,
        )
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
        try:
            estimate = await self.w3.eth.estimate_gas(
                {"from": self.wallet, "to": self.contracts[kind], "data": data}
            )
        except (Web3Exception, ValueError) as exc:
            # Sent anyway with a formula limit: if it reverts, the confirmer retries its requests.
            log.warning("gas estimate failed for %d entries (%s); using the per-entry budget", entries, exc)
            return min(self.gas_target, 100_000 + 2 * entries * self._gas_per_entry(kind))
        return gas_limit_for(estimate, self.gas_target, self.tx_gas_cap)

    async def current_fees(self) -> Quote:
        """What a new transaction offers now: EIP-1559 fees from eth_feeHistory, or the legacy gas
        price where the chain has no base fee or no eth_feeHistory."""
        now = time.monotonic()
        if self._fees is None or now - self._fees[0] > 0.5:
            quote = await fee_logic.read_quote(self.w3.eth, fee_logic.FeePolicy.from_settings(self.tuning))
            if quote.clamped:
                metrics.FEES_CLAMPED.inc()
            metrics.MAX_FEE.set(quote.fees.max_fee_per_gas)
            self._fees = (now, quote)
        return self._fees[1]

    async def _fees_affordable(self) -> bool:
        quote = await self.current_fees()
        waiting = not quote.affordable
        if waiting != self.waiting_for_fees:
            self.waiting_for_fees = waiting
            log.warning(
                "fee ceiling %s: the next block needs %d wei per gas, the most offered is %d",
                "reached, batches wait" if waiting else "clear again, batches go",
                quote.required,
                quote.fees.max_fee_per_gas,
            )
        metrics.FEE_CEILING_WAITING.set(int(waiting))
        return not waiting

    async def _count_in_flight(self) -> None:
        self.in_flight = await self.pool.fetchval(
            "SELECT count(*) FROM batches WHERE wallet = $1 AND status IN ('signed', 'sent')", self.wallet
        )
        metrics.IN_FLIGHT.set(self.in_flight)

    async def _maintenance_loop(self, stop: asyncio.Event) -> None:
        """Lock health, run-time settings, in-flight count, rebroadcast of unsent transactions, and
        the wallet gauges (balance, nonce lag)."""
        next_refresh = 0.0
        while not stop.is_set():
            if not await self.lock.still_held():
                raise LockLost(f"lost the wallet lock for {self.wallet}")
            try:
                now = time.monotonic()
                if now >= next_refresh:
                    self.tuning = await with_overrides(self.pool, self.settings, TUNABLE)
                    await self._read_chain_limits()
                    next_refresh = now + self.settings.settings_refresh_seconds
                await self._count_in_flight()
                unsent = await self.pool.fetch(
                    "SELECT id, nonce, tx_hash, raw_tx FROM batches WHERE wallet = $1 AND status = 'signed'"
                    " AND created_at < now() - make_interval(secs => $2) ORDER BY nonce",
                    self.wallet,
                    self.settings.rebroadcast_after_seconds,
                )
                for batch in unsent:
                    await self.broadcaster.send(
                        batch["id"], batch["nonce"], batch["tx_hash"], batch["raw_tx"]
                    )
                await wallet_health.observe(self.w3, self.pool, self.wallet, lambda: self.next_nonce)
            except Exception:
                log.exception("batcher maintenance failed; going on")
            await pause(stop, 1.0)
