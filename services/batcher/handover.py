"""What one wallet's batcher gives to the others and takes from them, through the shared
`mint.requested` group: its buffer back to the queue when it stops taking batches (taking.py), the
idle entries of batchers that vanished, and a touch on its own entries so they never look idle."""

import logging
from typing import TYPE_CHECKING

from services.batcher import metrics
from services.batcher.batching import NO_EXPIRY
from shared.events import MintRequested
from shared.streams import publish_many

if TYPE_CHECKING:
    from services.batcher.worker import Batcher

log = logging.getLogger(__name__)


async def release_buffer(batcher: "Batcher") -> None:
    """The buffered requests back to the queue for the other wallets: published again, then their
    entries acked (a crash between leaves both entries, which the batchers take as one request)."""
    waiting = batcher.buffer.take_all()
    if not waiting:
        return
    events = [
        MintRequested(
            request_id=w.request_id,
            kind=w.kind,  # type: ignore[arg-type]
            valid_before=None if w.valid_before == NO_EXPIRY else w.valid_before,
            lane=w.lane,
            accepted_ms=None if w.accepted is None else round(w.accepted * 1000),
            eta_seconds=None if w.eta_seconds is None else round(w.eta_seconds),
        )
        for w in waiting
    ]
    await publish_many(batcher.redis, batcher.requested_stream, events, batcher.settings.stream_maxlen)
    await batcher.requests.ack([entry for w in waiting for entry in w.entry_ids])
    metrics.RELEASED.labels(batcher.wallet).inc(len(waiting))
    log.warning("wallet %s released %d buffered requests to the other wallets", batcher.wallet, len(waiting))


async def keep_and_reclaim(batcher: "Batcher", taking: bool) -> None:
    """Touch the buffered entries (so no other wallet reclaims them while this one holds them), then,
    if the wallet takes batches, take over entries idle longer than the group's claim time: those of
    a batcher that died or lost its lock, of whatever wallet."""
    await batcher.requests.touch(batcher.buffer.entry_ids())
    if taking:
        await batcher.buffer_messages(await batcher.requests.claim_stale(count=500))
