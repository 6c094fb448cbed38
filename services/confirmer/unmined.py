"""What a watched batch with no receipt for any of its attempts is doing, from the wallet's mined
nonce. Pure logic: the worker acts on the verdict.

- Its nonce is not reached yet: it waits its turn behind the wallet's earlier transactions.
- It is next in line and not mined: late. Every `stuck_after_blocks` blocks it is reported stuck, so
  the batcher rebroadcasts or replaces it.
- Its nonce is mined, yet by none of its attempts: a transaction mintline did not sign used it. That
  is concluded only once it has looked so for `taken_after_blocks` blocks (a replica a block behind
  serves the nonce before the receipt, and a replacement may not be watched yet), and only from
  rounds where every attempt's receipt call was answered (the worker skips the others).
"""

from enum import Enum

from services.confirmer.watching import Watched


class Verdict(Enum):
    WAITING = "waiting"
    STUCK = "stuck"
    TAKEN = "taken"


def judge(
    batch: Watched, head: int, mined_nonce: int, *, stuck_after_blocks: int, taken_after_blocks: int
) -> Verdict:
    """The verdict on `batch` at block `head`, where `mined_nonce` is its wallet's transaction count
    (the next nonce to be mined). Keeps on `batch` the blocks it has been seen waiting since."""
    if mined_nonce < batch.nonce:
        # Queued behind the wallet's earlier transactions: waiting its turn, not stuck.
        batch.next_in_line_since = None
        batch.nonce_used_since = None
        return Verdict.WAITING
    if mined_nonce > batch.nonce:
        if batch.nonce_used_since is None:
            batch.nonce_used_since = head
        if head - batch.nonce_used_since >= taken_after_blocks:
            return Verdict.TAKEN
        return Verdict.WAITING
    batch.nonce_used_since = None
    if batch.next_in_line_since is None:
        batch.next_in_line_since = head
    waited = head - batch.next_in_line_since
    every = stuck_after_blocks
    if waited >= every and (batch.last_stuck_head is None or head - batch.last_stuck_head >= every):
        batch.last_stuck_head = head
        return Verdict.STUCK
    return Verdict.WAITING


def receipt_seen(batch: Watched) -> None:
    """One of the batch's attempts has a receipt: rounds that said otherwise (a node serves a block's
    nonce before its receipts) no longer count toward "taken"."""
    batch.nonce_used_since = None


def waited_blocks(batch: Watched, head: int) -> int:
    """Blocks the batch has been next in line without a receipt."""
    return 0 if batch.next_in_line_since is None else head - batch.next_in_line_since
