"""The active batcher's upkeep, once a second: the wallet lock (lost: stop), run-time settings and the
chain's gas limits, the in-flight count, batches stored but not yet taken by a node (broadcast again
and resolved by what it says), the wallet gauges (balance, nonce lag) and nonce holes (holes.py)."""

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from services.batcher import wallet_health
from services.batcher.lock import LockLost
from services.batcher.settings import TUNABLE
from services.batcher.unsendable import Misconfigured
from shared.loops import pause
from shared.overrides import with_overrides

if TYPE_CHECKING:
    from services.batcher.worker import Batcher

log = logging.getLogger(__name__)

UNSENT = """
SELECT id, nonce, tx_hash, raw_tx FROM batches WHERE wallet = $1 AND status = 'signed'
AND created_at < now() - make_interval(secs => $2) ORDER BY nonce
"""


async def run(batcher: "Batcher", stop: asyncio.Event) -> None:
    """Until `stop`; raises LockLost once the lock is gone."""
    next_refresh = 0.0
    while not stop.is_set():
        if not await batcher.lock.still_held():
            raise LockLost(f"lost the wallet lock for {batcher.wallet}")
        try:
            now = time.monotonic()
            if now >= next_refresh:
                batcher.tuning = await with_overrides(batcher.pool, batcher.settings, TUNABLE)
                await batcher.read_chain_limits()
                next_refresh = now + batcher.settings.settings_refresh_seconds
            await batcher.count_in_flight()
            unsent = await batcher.pool.fetch(
                UNSENT, batcher.wallet, batcher.settings.rebroadcast_after_seconds
            )
            for batch in unsent:
                await batcher.dispatch(batch["id"], batch["nonce"], batch["tx_hash"], bytes(batch["raw_tx"]))
            seen = await wallet_health.observe(batcher.chain, batcher.pool, lambda: batcher.next_nonce)
            if seen is not None:
                balance, mined = seen
                if not unsent:
                    batcher.spending.observed_balance(balance)
                await batcher.holes.check(mined)
        except (LockLost, Misconfigured):
            raise
        except Exception:
            log.exception("batcher maintenance failed; going on")
        await pause(stop, 1.0)
