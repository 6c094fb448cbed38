"""Stored batches of a wallet no batcher runs for, broadcast by the active batcher of another wallet.

A batcher killed between storing a batch and broadcasting it leaves a signed transaction that only a
batcher of the same wallet would send. While no session holds that wallet's lock (lock.py) and the
batch has waited BATCHER_REBROADCAST_AFTER_SECONDS, the active batchers of the other wallets broadcast
its stored bytes (sending needs no key), so its requests are mined and confirmed even if the wallet's
batcher never comes back. A refusal is only logged and counted: what to do about it needs the key.
"""

import logging
from typing import TYPE_CHECKING

from services.batcher.broadcast import Broadcaster
from services.batcher.chain import WalletChain
from services.batcher.lock import held_sql

if TYPE_CHECKING:
    from services.batcher.worker import Batcher

log = logging.getLogger(__name__)

ORPHANED = f"""
SELECT id, wallet, nonce, tx_hash, raw_tx FROM batches b
WHERE status = 'signed' AND wallet <> $1 AND created_at < now() - make_interval(secs => $2)
  AND NOT {held_sql("lower(b.wallet)")}
ORDER BY wallet, nonce
LIMIT 100
"""


async def rebroadcast(batcher: "Batcher") -> int:
    """Broadcast the stored batches of wallets nobody holds the lock of; returns how many a node took."""
    rows = await batcher.pool.fetch(ORPHANED, batcher.wallet, batcher.settings.rebroadcast_after_seconds)
    taken = 0
    for row in rows:
        broadcaster = Broadcaster(
            WalletChain(batcher.chain.rpc, row["wallet"]),
            batcher.pool,
            batcher.redis,
            batcher.broadcaster.tx_sent_stream,
            batcher.settings.stream_maxlen,
        )
        verdict = await broadcaster.send(row["id"], row["nonce"], row["tx_hash"], bytes(row["raw_tx"]))
        if verdict is None:
            taken += 1
            log.warning(
                "batch %d of wallet %s (nonce %d), whose batcher is gone, broadcast by %s",
                row["id"],
                row["wallet"],
                row["nonce"],
                batcher.wallet,
            )
    return taken
