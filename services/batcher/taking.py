"""Whether a wallet takes new batches, and how many requests it reads for them. Pure logic: no I/O.

The batchers of every wallet read from the one `mint.requested` consumer group, so a backlog spreads
over the wallets by what each can take: a wallet reads one batch's worth at a time, and only while its
in-flight cap has a free slot (a node keeps only so many pending transactions per sender: geth
guarantees 16). A wallet that cannot pay, or is wedged (its oldest open batch has waited
BATCHER_WEDGED_AFTER_SECONDS), reads nothing and gives back what it had buffered, so the healthy
wallets take it.
"""

from collections.abc import Mapping
from dataclasses import dataclass

CANNOT_PAY = "cannot pay"
WEDGED = "wedged"


@dataclass(frozen=True)
class WalletState:
    in_flight: int
    waiting_for_funds: bool
    # How long the wallet's oldest signed or sent batch has waited (0 with none).
    oldest_open_seconds: float


def why_not_taking(state: WalletState, wedged_after_seconds: float) -> str | None:
    """Why the wallet takes no new batches now, or None when it takes them."""
    if state.waiting_for_funds:
        return CANNOT_PAY
    if state.oldest_open_seconds >= wedged_after_seconds:
        return WEDGED
    return None


def read_count(
    state: WalletState, *, max_in_flight: int, sizes: Mapping[str, int], buffered: int, buffer_limit: int
) -> int:
    """How many entries to read now: at most one batch (the largest of `sizes`, entries per batch by
    kind), and no more than the free slots of the in-flight cap can send with what is buffered."""
    batch = max(sizes.values())
    free_slots = max(0, max_in_flight - state.in_flight)
    room = min(buffer_limit, free_slots * batch) - buffered
    return max(0, min(room, batch))
