"""The batcher loop of one signer wallet: read mint.requested, close batches, store signed
transactions, broadcast. Several wallets run one Batcher each (in one process or in several), all
reading the one consumer group, each with its own lock, nonce sequence, fees and balance (taking.py
says how a backlog spreads over them).

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
import time

import asyncpg
from eth_account import Account
from redis.asyncio import Redis

from services.batcher import handover, maintenance, metrics, nonces, recovery, taking
from services.batcher.batching import (
    BatchTooLarge,
    EntryGas,
    LaneRules,
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
from shared.events import MintRequested
from shared.jsonrpc import JsonRpc
from shared.streams import Consumer, Message

log = logging.getLogger(__name__)

# What a store or a chain read may raise when PostgreSQL or the node is briefly away.
UNAVAILABLE = recovery.UNAVAILABLE
# Whether priority lanes are in use: a payer has a lane, or a request of a higher lane is queued (both
# read through a small table or index).
LANES_IN_USE = """
SELECT EXISTS (SELECT FROM payer_priorities)
    OR EXISTS (SELECT FROM mint_requests
               WHERE lane > 0 AND status IN ('rendering', 'rendered', 'pending', 'batched', 'sent'))
"""

# The gas the wallet's newest confirmed batches used, and their entries (no-op fills are not batches of
# entries); newest first, among the last thousand batches of any wallet (through the primary key, so a
# wallet with none reads no more than those).
MINED_GAS = """
SELECT id, kind, gas_used, cardinality(request_ids) AS entries FROM batches
WHERE id > greatest($2, (SELECT max(id) FROM batches) - 1000)
  AND wallet = $1 AND status = 'confirmed' AND gas_used IS NOT NULL AND fill_reason IS NULL
ORDER BY id DESC LIMIT 16
"""


class Batcher:
    def __init__(
        self,
        settings: BatcherSettings,
        pool: asyncpg.Pool,
        redis: Redis,
        rpc: JsonRpc,
        key: str | None = None,
    ) -> None:
        """The batcher of the wallet of `key` (by default the first of the settings' signer keys)."""
        self.settings = settings
        self.tuning = settings
        self.pool = pool
        self.redis = redis
        self.account = Account.from_key(key or settings.signing_keys[0])
        self.wallet = self.account.address
        metrics.export_wallet(self.wallet)
        self.chain = WalletChain(rpc, self.wallet)
        self.deployment = settings.deployment
        # Each kind of request is minted by its own contract, on the one nonce sequence of the wallet.
        self.contracts = {"token": self.deployment.token, "nft": self.deployment.nft}
        names = settings.keys
        # Named for the wallet, so the wallet's next active batcher knows whose entries it inherits.
        consumer = f"batcher-{socket.gethostname()}-{os.getpid()}-{self.wallet}"
        self.requested_stream = names.stream(keys.MINT_REQUESTED)
        # Every wallet reads the one group: the backlog goes to whichever wallet takes it.
        self.requests = Consumer(
            redis,
            self.requested_stream,
            keys.BATCHER,
            consumer,
            dead_stream=names.dead(keys.MINT_REQUESTED),
            claim_idle_ms=int(settings.claim_idle_seconds * 1000),
            max_deliveries=20,
        )
        # A group per wallet: every wallet sees every report, and acts on those about its batches. Only
        # reports made after the group exists matter (the confirmer repeats them while a batch waits).
        self.stuck = Consumer(
            redis,
            names.stream(keys.TX_STUCK),
            f"{keys.BATCHER}.{self.wallet.lower()}",
            consumer,
            dead_stream=names.dead(keys.TX_STUCK),
            first_id="$",
        )
        self.failed_stream = names.stream(keys.MINT_FAILED)
        self.buffer = PendingBuffer()
        self.lock = WalletLock(settings.lock_dsn, self.wallet)
        self.active = False
        self.next_nonce = 0
        self.in_flight = 0
        # How long the wallet's nonce on chain has stood still with transactions to mine, from the
        # maintenance loop's reads (taking.py: wedged).
        self.stalls = taking.StallWatch()
        self.stalled_seconds = 0.0
        # Why the wallet takes no new batches now (None: it takes them), as last logged.
        self.not_taking: str | None = None
        # The chain's limits, read at recovery and with the run-time settings: the block gas limit, and
        # what one batch's gas limit aims for (batching.batch_gas_target).
        self.block_gas_limit = settings.max_tx_gas
        self.gas_target = settings.max_tx_gas
        # Whether priority lanes are in use (read with the run-time settings): only then does the wallet
        # read ahead of its next batch (taking.py).
        self.lanes_in_use = False
        # Entries per batch of a kind, learnt when a batch needed more gas than a transaction may use.
        self.entry_caps: dict[str, int] = {}
        # Gas per entry of a kind, learnt from the estimates of the batches signed so far and the gas of
        # those mined.
        self.entry_gas = EntryGas()
        # The newest confirmed batch learnt from (learn_mined_gas).
        self._mined_seen = 0
        self.spending = Spending(self.chain)
        self.broadcaster = Broadcaster(
            self.chain, pool, redis, names.stream(keys.TX_SENT), settings.stream_maxlen
        )
        self.store = BatchStore(self)
        self.replacer = Replacer(self)
        self.unsendable = Unsendable(self)
        self.holes = HoleWatch(self)

    async def run(self, stop: asyncio.Event) -> None:
        """Wait for the wallet lock (standby), recover, then batch until `stop`. A lost lock sends the
        wallet back to standby (another batcher may be active for it now); the other wallets of the
        process go on."""
        while not stop.is_set():
            self._set_active(False)
            if not await self.lock.acquire(stop):
                return
            self._set_active(True)
            try:
                if not await recovery.recover_when_reachable(self, stop):
                    return
                async with asyncio.TaskGroup() as tasks:
                    tasks.create_task(self._batch_loop(stop))
                    tasks.create_task(self.stuck.consume(self.replacer.on_stuck, stop))
                    tasks.create_task(maintenance.run(self, stop))
            except* LockLost as lost:
                log.error("%s: back to standby", lost.exceptions[0])
            finally:
                self._set_active(False)
                # Its entries stay pending in the group, for the wallet's next active batcher.
                self.buffer = PendingBuffer()
                await self.lock.release()

    def _set_active(self, active: bool) -> None:
        self.active = active
        metrics.ACTIVE.labels(self.wallet).set(int(active))
        metrics.TAKING.labels(self.wallet).set(int(active))
        self.not_taking = None

    async def resync_nonce(self) -> None:
        self.next_nonce = await nonces.next_nonce(self.chain, self.pool, self.wallet)
        metrics.NEXT_NONCE.labels(self.wallet).set(self.next_nonce)

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
        state = self.state()
        why = taking.why_not_taking(state, tuning.wedged_after_seconds)
        if why != self.not_taking:
            self.not_taking = why
            metrics.TAKING.labels(self.wallet).set(int(why is None))
            if why is None:
                log.warning("wallet %s takes batches again", self.wallet)
            else:
                log.warning("wallet %s takes no batches (%s)", self.wallet, why)
        if why is not None:
            await handover.release_buffer(self)
            await asyncio.sleep(0.2)
            return
        window = tuning.batch_window_seconds
        lookahead = tuning.lane_lookahead if self.lanes_in_use else 0
        if self.buffer.is_due(loop.time(), sizes, window):
            if self.in_flight < tuning.max_in_flight:
                more = taking.top_up_count(
                    sizes,
                    buffered=len(self.buffer),
                    full=self.buffer.has_full_batch(sizes),
                    buffer_limit=tuning.buffer_limit,
                    lookahead=lookahead,
                )
                await self._top_up(more)
                rules = LaneRules.of(tuning.expiry_margin_seconds, window, tuning.ageing_multiple)
                await self._send_batch(self.buffer.take(sizes, time.time(), rules))
                return
            await asyncio.sleep(0.1)  # wait for confirmations to free a slot
            await self.count_in_flight()
            state = self.state()
        count = taking.read_count(
            state,
            max_in_flight=tuning.max_in_flight,
            sizes=sizes,
            buffered=len(self.buffer),
            buffer_limit=tuning.buffer_limit,
            lookahead=lookahead,
        )
        if count <= 0:
            await asyncio.sleep(0.05)
            return
        oldest = self.buffer.oldest_arrival()
        wait = window if oldest is None else max(0.005, oldest + window - loop.time())
        messages = await self.requests.read(min(count, 1000), block_ms=max(1, int(min(wait, 1.0) * 1000)))
        await self.buffer_messages(messages)

    def state(self) -> taking.WalletState:
        return taking.WalletState(self.in_flight, self.spending.waiting_for_funds, self.stalled_seconds)

    async def _top_up(self, count: int) -> None:
        """Before a due batch: up to `count` more of what the stream already holds (taking.top_up_count:
        a batch's worth for a batch due by its window but not full, so other wallets' share stays in
        the stream; the lookahead while lanes are in use). The remainder of a backlog read a chunk at a
        time has waited a window by the time the full batches before it are sent; alone, it would be a
        batch that fills no block."""
        if count > 0:
            await self.buffer_messages(await self.requests.read(min(count, 1000), block_ms=1))

    async def read_lanes_in_use(self) -> None:
        self.lanes_in_use = bool(await self.pool.fetchval(LANES_IN_USE))

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

    async def buffer_messages(self, messages: list[Message]) -> None:
        now = asyncio.get_running_loop().time()
        for message in messages:
            event = message.event
            if isinstance(event, MintRequested):
                self.buffer.add(
                    event.request_id,
                    event.kind,
                    event.valid_before,
                    message.id,
                    now,
                    lane=event.lane,
                    accepted=event.accepted,
                    eta_seconds=event.eta_seconds,
                )
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
        self.buffer.put_back(chosen, asyncio.get_running_loop().time())

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

    async def learn_mined_gas(self) -> None:
        """What the wallet's batches confirmed since the last look used, per entry (EntryGas); at start
        the latest of them, so a restarted batcher sizes and checks its first batch without an estimate."""
        rows = await self.pool.fetch(MINED_GAS, self.wallet, self._mined_seen)
        for row in reversed(rows):
            self.entry_gas.observe_mined(row["kind"], row["gas_used"], row["entries"])
        if rows:
            self._mined_seen = rows[0]["id"]

    async def count_in_flight(self) -> None:
        self.in_flight = await self.pool.fetchval(
            "SELECT count(*) FROM batches WHERE wallet = $1 AND status IN ('signed', 'sent')", self.wallet
        )
        metrics.IN_FLIGHT.labels(self.wallet).set(self.in_flight)
