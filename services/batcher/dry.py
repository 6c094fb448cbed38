"""A wallet that cannot pay gives its requests to the other wallets.

It takes no new batches from the moment it cannot pay (taking.py). Once that has lasted
BATCHER_RELEASE_AFTER_SECONDS, every open batch of it that no node holds (its nonce not mined, its
transaction unknown to the node) has its nonce filled with a no-op, signed at the fees the chain asks
whatever the wallet holds, and its requests go back to the queue for whichever wallet takes them. The
no-ops go out once the wallet is funded, so its nonce sequence keeps no gap. A batch a node holds is
left to be mined.
"""

import logging
from typing import TYPE_CHECKING

from services.batcher import metrics

if TYPE_CHECKING:
    from services.batcher.worker import Batcher

log = logging.getLogger(__name__)

UNMINED = """
SELECT id, tx_hash FROM batches
WHERE wallet = $1 AND status IN ('signed', 'sent') AND fill_reason IS NULL AND nonce >= $2
  AND cardinality(request_ids) > 0
ORDER BY nonce
"""
REASON = "the wallet could not pay for its transactions: its requests went back to the queue"


async def release_unsent(batcher: "Batcher", mined: int) -> int:
    """Give back the requests of the wallet's batches no node holds, once it has been short of funds
    for long enough; `mined` is its transaction count at the latest block. Returns how many."""
    if batcher.spending.short_for() < batcher.settings.release_after_seconds:
        return 0
    released = 0
    for batch in await batcher.pool.fetch(UNMINED, batcher.wallet, mined):
        if await batcher.chain.knows(batch["tx_hash"]):
            continue
        filled = await batcher.unsendable.fill(batch["id"], REASON, mind_balance=False)
        if filled is not None:
            released += filled[1]
    if released:
        metrics.RELEASED.labels(batcher.wallet).inc(released)
        log.warning(
            "wallet %s cannot pay: %d requests of its unsent batches released", batcher.wallet, released
        )
    return released
