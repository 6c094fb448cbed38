"""The active batcher's upkeep, once a second: the wallet lock (lost: stop), run-time settings and the
chain's gas limits, the in-flight count, batches stored but not yet taken by a node (broadcast again
and resolved by what it says), the wallet gauges (balance, nonce lag, oldest open batch), nonce holes
(holes.py), the requests of a wallet that cannot pay (dry.py); and, every few seconds, what is shared
with the other wallets: their orphaned batches (orphans.py) and idle entries (handover.py)."""

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from services.batcher import dry, handover, orphans, taking, wallet_health
from services.batcher.lock import LockLost
from services.batcher.settings import TUNABLE
from services.batcher.unsendable import Misconfigured
from shared.loops import pause
from shared.overrides import with_overrides

if TYPE_CHECKING:
    from services.batcher.worker import Batcher

log = logging.getLogger(__name__)

SLOW_ROUND_SECONDS = 10.0
# A round cut off after this long: the RPC client's own deadline (30 s) plus room for the stores.
ROUND_TIMEOUT_SECONDS = 45.0
UNSENT = """
SELECT id, nonce, tx_hash, raw_tx FROM batches WHERE wallet = $1 AND status = 'signed'
AND created_at < now() - make_interval(secs => $2) ORDER BY nonce
"""


async def run(batcher: "Batcher", stop: asyncio.Event) -> None:
    """Until `stop`; raises LockLost once the lock is gone."""
    due = Due()
    while not stop.is_set():
        started = time.monotonic()
        if not await batcher.lock.still_held():
            raise LockLost(f"lost the wallet lock for {batcher.wallet}")
        try:
            # No step may hold the round (and so the lock check) for long: one that does is cut off,
            # with where it waited in the log (a chaos run saw a round wait four minutes after a
            # PostgreSQL restart, the in-flight count going stale and no batch signed meanwhile).
            async with asyncio.timeout(ROUND_TIMEOUT_SECONDS):
                await _round(batcher, due, started)
        except (LockLost, Misconfigured):
            raise
        except TimeoutError:
            log.exception(
                "maintenance round of %s cut off after %.0f s", batcher.wallet, ROUND_TIMEOUT_SECONDS
            )
        except Exception:
            log.exception("batcher maintenance failed; going on")
        if (took := time.monotonic() - started) > SLOW_ROUND_SECONDS:
            # The lock is asked between rounds: a slow round delays noticing a lost one (the fence
            # still stops any commit).
            log.warning("maintenance round of %s took %.1f s", batcher.wallet, took)
        await pause(stop, 1.0)


@dataclass
class Due:
    """When the slower steps of a round are due next (monotonic seconds)."""

    refresh: float = 0.0
    share: float = 0.0


async def _round(batcher: "Batcher", due: Due, now: float) -> None:
    if now >= due.refresh:
        batcher.tuning = await with_overrides(batcher.pool, batcher.settings, TUNABLE)
        await batcher.read_chain_limits()
        await batcher.read_lanes_in_use()
        due.refresh = now + batcher.settings.settings_refresh_seconds
    await batcher.count_in_flight()
    await batcher.learn_mined_gas()
    unsent = await batcher.pool.fetch(UNSENT, batcher.wallet, batcher.settings.rebroadcast_after_seconds)
    for batch in unsent:
        await batcher.dispatch(batch["id"], batch["nonce"], batch["tx_hash"], bytes(batch["raw_tx"]))
    seen = await wallet_health.observe(batcher.chain, batcher.pool, lambda: batcher.next_nonce)
    if seen is not None:
        batcher.stalled_seconds = batcher.stalls.seen(seen.mined, batcher.next_nonce, now)
        if not unsent:
            batcher.spending.observed_balance(seen.balance)
        await batcher.holes.check(seen.mined)
        await dry.release_unsent(batcher, seen.mined)
    if now >= due.share:
        # Well within the group's claim time, so entries this wallet holds never look idle.
        due.share = now + batcher.requests.claim_idle_ms / 3000
        taking_now = taking.why_not_taking(batcher.state(), batcher.tuning.wedged_after_seconds) is None
        await handover.keep_and_reclaim(batcher, taking_now)
        await orphans.rebroadcast(batcher)
