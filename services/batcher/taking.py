"""Whether a wallet takes new batches, and how many requests it reads for them. Pure logic: no I/O.

The batchers of every wallet read from the one `mint.requested` consumer group, so a backlog spreads
over the wallets by what each can take: a wallet reads one batch's worth at a time, and only while its
in-flight cap has a free slot (a node keeps only so many pending transactions per sender: geth
guarantees 16). While priority lanes are in use, each wallet reads `lane_lookahead` entries more, so
that the requests of a high lane queued behind a backlog are among what it chooses the next batch
from. A wallet that cannot pay, or is wedged (it has transactions to mine and its nonce on chain has
not moved for BATCHER_WEDGED_AFTER_SECONDS), reads nothing and gives back what it had buffered, so
the healthy wallets take it. (Not the age of its oldest open batch: a batch stays open
for its confirmations, which on a slow chain take longer than any wedge threshold.)
"""

from collections.abc import Mapping
from dataclasses import dataclass

CANNOT_PAY = "cannot pay"
WEDGED = "wedged"


@dataclass(frozen=True)
class WalletState:
    in_flight: int
    waiting_for_funds: bool
    # How long the wallet's nonce on chain has stood still while it had transactions to mine.
    stalled_seconds: float


def why_not_taking(state: WalletState, wedged_after_seconds: float) -> str | None:
    """Why the wallet takes no new batches now, or None when it takes them."""
    if state.waiting_for_funds:
        return CANNOT_PAY
    if state.stalled_seconds >= wedged_after_seconds:
        return WEDGED
    return None


def read_count(
    state: WalletState,
    *,
    max_in_flight: int,
    sizes: Mapping[str, int],
    buffered: int,
    buffer_limit: int,
    lookahead: int = 0,
) -> int:
    """How many entries to read now: at most one batch (the largest of `sizes`, entries per batch by
    kind), and no more than the free slots of the in-flight cap can send with what is buffered, plus
    `lookahead` (entries read ahead so the next batch is filled from the highest priority lanes of
    what is queued; 0 while no lane is in use)."""
    batch = max(sizes.values())
    free_slots = max(0, max_in_flight - state.in_flight)
    room = min(buffer_limit, free_slots * batch + lookahead) - buffered
    return max(0, min(room, batch))


def top_up_count(
    sizes: Mapping[str, int], *, buffered: int, full: bool, buffer_limit: int, lookahead: int = 0
) -> int:
    """How many more entries to read from what the stream holds before a due batch is taken. Without
    lookahead: a batch's worth, if no kind has a full batch yet (the rest of a backlog read a chunk at a
    time). With it: up to a batch and `lookahead` more, so the batch is chosen from that many."""
    batch = max(sizes.values())
    if lookahead <= 0:
        return 0 if full else max(0, batch - buffered)
    return max(0, min(buffer_limit, batch + lookahead) - buffered)


class StallWatch:
    """How long a wallet's nonce on chain has stood still while it had transactions to mine."""

    def __init__(self) -> None:
        self._mined: int | None = None
        self._since = 0.0

    def seen(self, mined: int, next_nonce: int, now: float) -> float:
        """`mined`: the wallet's transaction count at the latest block; `next_nonce`: the next one
        its batcher assigns; `now`: a monotonic time. Returns the seconds stalled (0 while nothing
        waits to be mined, or since the count last moved)."""
        if mined != self._mined or next_nonce <= mined:
            self._mined, self._since = mined, now
        return now - self._since
