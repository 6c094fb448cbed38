"""The batcher loop: read mint.requested, close batches, store signed transactions, broadcast.

Order of effects for one batch (invariant 3): claim the rows and store the signed raw transaction
with its nonce in one PostgreSQL transaction (store.py), then ack the stream entries, then broadcast
(broadcast.py). A crash anywhere leaves either nothing (the entries are redelivered) or a stored
transaction that the next active batcher rebroadcasts with the same nonce. A refused broadcast is
resolved by what the node said (send_errors.py, unsendable.py), never retried blindly forever.
"""

import asyncio
import logging
import os
import socket

import asyncpg
from eth_account import Account
from redis.asyncio import Redis

from services.batcher import maintenance, metrics, nonces
from services.batcher.batching import (
    BatchTooLarge,
    EntryGas,
    PendingBuffer,
    Waiting,
    batch_gas_target,
    entries_per_batch,
)
from services.batcher.broadcast import Broadcaster
from services.batcher.chain import WalletChain
from services.batcher.fees import FeesAboveCeiling, WaitingForFunds
from services.batcher.holes import HoleWatch
from services.batcher.lock import LockLost, WalletLock
from services.batcher.replacement import Replacer
from services.batcher.send_errors import Refusal
from services.batcher.settings import BatcherSettings
from services.batcher.spending import Spending
from services.batcher.store import BatchStore
from services.batcher.unsendable import Misconfigured, Unsendable
from shared import keys
from shared.backoff import exponential_backoff
from shared.events import MintRequested
from shared.jsonrpc import JsonRpc, RpcError
from shared.loops import pause
from shared.streams import Consumer, Message

log = logging.getLogger(__name__)

# What a store or a chain read may raise when PostgreSQL or the node is briefly away.
UNAVAILABLE = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, RpcError, TimeoutError)


class Batcher:
    def __init__(self, settings: BatcherSettings, pool: asyncpg.Pool, redis: Redis, rpc: JsonRpc) -> None:
        self.settings = settings
        self.tuning = settings
        self.pool = pool
        self.redis = redis
        self.account = Account.from_key(settings.private_key.get_secret_value())
        self.wallet = self.account.address
        self.chain = WalletChain(rpc, self.wallet)
        self.deployment = settings.deployment
        # Each kind of request is minted by its own contract, on the one nonce sequence of the wallet.
        self.contracts = {"token": self.deployment.token, "nft": self.deployment.nft}
        names = settings.keys
        consumer = f"batcher-{socket.gethostname()}-{os.getpid()}"
        self.requested_stream = names.stream(keys.MINT_REQUESTED)
        self.requests = Consumer(
            redis,
            self.requested_stream,
            keys.BATCHER,
            consumer,
            dead_stream=names.dead(keys.MINT_REQUESTED),
            max_deliveries=20,
        )
        self.stuck = Consumer(
            redis, names.stream(keys.TX_STUCK), keys.BATCHER, consumer, dead_stream=names.dead(keys.TX_STUCK)
        )
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
        # Gas per entry of a kind, learnt from the estimates of the batches signed so far.
        self.entry_gas = EntryGas()
        self.spending = Spending(self.chain)
        self.broadcaster = Broadcaster(
            self.chain, pool, redis, names.stream(keys.TX_SENT), settings.stream_maxlen
        )
        self.store = BatchStore(self)
        self.replacer = Replacer(self)
        self.unsendable = Unsendable(self)
        self.holes = HoleWatch(self)

    async def run(self, stop: asyncio.Event) -> None:
        """Wait for the wallet lock (standby), recover, then batch until `stop`. A lost lock (its
        connection gone with a PostgreSQL restart, say) sends the batcher back to standby: another
        batcher may be active now, and whoever takes the lock next picks up what this one held."""
        while not stop.is_set():
            try:
                await self._active_while_locked(stop)
            except* LockLost as lost:
                log.error("%s: back to standby", lost.exceptions[0])
                self.buffer = PendingBuffer()  # unacked entries: the next active batcher claims them

    async def _active_while_locked(self, stop: asyncio.Event) -> None:
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
                tasks.create_task(maintenance.run(self, stop))
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
            except UNAVAILABLE as exc:
                attempt += 1
                delay = exponential_backoff(attempt, 0.5, 10)
                log.warning("batcher recovery failed (%s); retrying in %.1f s", exc, delay)
                await pause(stop, delay)
        return False

    async def recover(self) -> None:
        """Pick up where the last active batcher stopped: nonce, stored transactions, unacked entries."""
        await self.requests.start()
        await self.stuck.start()
        await self.read_chain_limits()
        await self.resync_nonce()
        open_batches = await self.pool.fetch(
            "SELECT id, nonce, tx_hash, raw_tx FROM batches"
            " WHERE wallet = $1 AND status IN ('signed', 'sent') ORDER BY nonce",
            self.wallet,
        )
        for batch in open_batches:
            await self.dispatch(batch["id"], batch["nonce"], batch["tx_hash"], bytes(batch["raw_tx"]))
        # This batcher is the only active consumer now: whatever the group delivered and nobody
        # acked (a dead batcher's buffer) is ours.
        messages = await self.requests.claim_stale(count=500, min_idle_ms=0)
        await self._buffer_messages(messages)
        log.info(
            "batcher active for %s: next nonce %d, rebroadcast %d, reclaimed %d entries",
            self.wallet,
            self.next_nonce,
            len(open_batches),
            len(messages),
        )

    async def resync_nonce(self) -> None:
        self.next_nonce = await nonces.next_nonce(self.chain, self.pool, self.wallet)
        metrics.NEXT_NONCE.set(self.next_nonce)

    async def _batch_loop(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            try:
                await self._batch_step(loop)
            except (LockLost, Misconfigured, asyncio.CancelledError):
                raise
            except Exception:
                log.exception("batch loop step failed; going on")
                await asyncio.sleep(1)

    async def _batch_step(self, loop: asyncio.AbstractEventLoop) -> None:
        tuning = self.tuning
        budget = min(tuning.gas_budget, self.gas_target)
        sizes = {
            kind: min(
                entries_per_batch(tuning.batch_size, budget, self.gas_per_entry(kind)),
                self.entry_caps.get(kind, tuning.batch_size),
            )
            for kind in self.contracts
        }
        window = tuning.batch_window_seconds
        if self.buffer.is_due(loop.time(), sizes, window):
            if self.in_flight < tuning.max_in_flight and not self.spending.waiting_for_funds:
                if not self.buffer.has_full_batch(sizes):
                    await self._top_up(tuning.buffer_limit)
                await self._send_batch(self.buffer.take(sizes))
                return
            await asyncio.sleep(0.1)  # wait for confirmations (or funds) to free a slot
            await self.count_in_flight()
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

    async def _top_up(self, buffer_limit: int) -> None:
        """Before a batch that is due by its window but not full: what the stream already holds. A
        backlog is read a chunk at a time, and the remainder of a chunk has waited a window by the
        time the full batches before it are sent; alone, it would be a batch that fills no block."""
        room = buffer_limit - len(self.buffer)
        if room > 0:
            await self._buffer_messages(await self.requests.read(min(room, 1000), block_ms=1))

    async def read_chain_limits(self) -> None:
        self.block_gas_limit = await self.chain.block_gas_limit()
        self.gas_target = batch_gas_target(self.block_gas_limit, self.settings.max_tx_gas)

    @property
    def tx_gas_cap(self) -> int:
        return min(self.settings.max_tx_gas, self.block_gas_limit)

    def gas_per_entry(self, kind: str) -> int:
        configured = self.tuning.nft_gas_per_entry if kind == "nft" else self.tuning.gas_per_entry
        return self.entry_gas.per_entry(kind, configured)

    def cap_entries(self, kind: str, entries: int) -> None:
        """Later batches of `kind` carry at most `entries` (learnt from a batch the chain refused)."""
        self.entry_caps[kind] = min(entries, self.entry_caps.get(kind, entries))
        log.warning("batches of %s carry at most %d entries from now on", kind, self.entry_caps[kind])

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
            if not await self.spending.fees_affordable(self.tuning):
                # The chain asks more than the fee ceiling: keep the requests and wait.
                self._keep(chosen)
                await asyncio.sleep(1)
                return
            batch = await self.store.store(chosen)
        except BatchTooLarge as exc:
            # Nothing was committed; later batches of this kind carry fewer entries, in proportion.
            self.cap_entries(chosen[0].kind, max(1, len(chosen) * exc.cap // exc.needed * 9 // 10))
            self._keep(chosen)
            return
        except FeesAboveCeiling:
            self._keep(chosen)
            return
        except WaitingForFunds as exc:
            self.spending.wait_for_funds(str(exc))
            self._keep(chosen)
            return
        except UNAVAILABLE:
            # Nothing was committed: keep the requests, and read the nonce again (the failure may
            # have come after signing, or from a nonce another batch already holds).
            log.exception("could not store a batch of %d; retrying", len(chosen))
            self._keep(chosen)
            await asyncio.sleep(1)
            await self._resync_quietly()
            return
        await self.requests.ack([entry for waiting in chosen for entry in waiting.entry_ids])
        if batch is not None:
            await self.dispatch(*batch)

    def _keep(self, chosen: list[Waiting]) -> None:
        """Put requests taken for a batch that was not stored back into the buffer."""
        now = asyncio.get_running_loop().time()
        for waiting in chosen:
            for entry_id in waiting.entry_ids:
                self.buffer.add(waiting.request_id, waiting.kind, waiting.valid_before, entry_id, now)

    async def dispatch(self, batch_id: int, nonce: int, tx_hash: str, raw: bytes) -> None:
        """Broadcast a stored transaction and act on what the node said."""
        verdict = await self.broadcaster.send(batch_id, nonce, tx_hash, raw)
        if verdict is None or verdict.refusal is Refusal.KNOWN:
            self.unsendable.forget(batch_id)
            self.spending.funds_back()
        elif verdict.refusal is Refusal.NONCE_USED:
            # Mined already (the confirmer finds by which transaction); our next nonce may be stale.
            await self._resync_quietly()
        elif verdict.refusal is not Refusal.TRANSIENT:
            await self.unsendable.resolve(batch_id, verdict)

    async def _resync_quietly(self) -> None:
        try:
            await self.resync_nonce()
        except UNAVAILABLE as exc:
            log.warning("could not read the nonce again (%s); the next store tries once more", exc)

    async def count_in_flight(self) -> None:
        self.in_flight = await self.pool.fetchval(
            "SELECT count(*) FROM batches WHERE wallet = $1 AND status IN ('signed', 'sent')", self.wallet
        )
        metrics.IN_FLIGHT.set(self.in_flight)
