"""Becoming a wallet's active batcher: pick up where the last one stopped (its nonce, its stored
transactions, the stream entries it held), retrying while the chain or a store is unreachable."""

import asyncio
import logging
from typing import TYPE_CHECKING

import asyncpg

from shared.backoff import exponential_backoff
from shared.jsonrpc import RpcError
from shared.loops import pause

if TYPE_CHECKING:
    from services.batcher.worker import Batcher

log = logging.getLogger(__name__)

# What a store or a chain read may raise when PostgreSQL or the node is briefly away.
UNAVAILABLE = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, RpcError, TimeoutError)
OPEN_BATCHES = """
SELECT id, nonce, tx_hash, raw_tx FROM batches
WHERE wallet = $1 AND status IN ('signed', 'sent') ORDER BY nonce
"""


async def recover_when_reachable(batcher: "Batcher", stop: asyncio.Event) -> bool:
    """Recover, retrying while the chain or a store is unreachable; False if stopped first."""
    attempt = 0
    while not stop.is_set():
        try:
            await recover(batcher)
            return True
        except UNAVAILABLE as exc:
            attempt += 1
            delay = exponential_backoff(attempt, 0.5, 10)
            log.warning("batcher recovery failed (%s); retrying in %.1f s", exc, delay)
            await pause(stop, delay)
    return False


async def recover(batcher: "Batcher") -> None:
    """Pick up where the wallet's last active batcher stopped: nonce, stored transactions, unacked
    entries."""
    await batcher.requests.start()
    await batcher.stuck.start()
    await batcher.read_chain_limits()
    await batcher.read_lanes_in_use()
    await batcher.resync_nonce()
    open_batches = await batcher.pool.fetch(OPEN_BATCHES, batcher.wallet)
    for batch in open_batches:
        await batcher.dispatch(batch["id"], batch["nonce"], batch["tx_hash"], bytes(batch["raw_tx"]))
    # This batcher is the wallet's only active one now: whatever the group delivered to the wallet's
    # earlier batchers and nobody acked (a dead batcher's buffer) is ours. Other wallets' entries are
    # taken only once idle (handover.py).
    suffix = f"-{batcher.wallet}"
    messages = await batcher.requests.claim_from(lambda name: name.endswith(suffix))
    await batcher.buffer_messages(messages)
    log.info(
        "batcher active for %s: next nonce %d, rebroadcast %d, reclaimed %d entries",
        batcher.wallet,
        batcher.next_nonce,
        len(open_batches),
        len(messages),
    )
