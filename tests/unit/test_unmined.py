"""What the confirmer concludes about a batch none of whose attempts has a receipt, block by block."""

from services.confirmer.unmined import Verdict, judge, receipt_seen
from services.confirmer.watching import Watched

NONCE = 7


def batch() -> Watched:
    return Watched(1, "token", "0xwallet", NONCE, "0xb", ["0xa", "0xb"])


def verdicts(
    watched: Watched, mined_nonces: dict[int, int], stuck: int = 3, taken: int = 10
) -> list[Verdict]:
    """The verdict at each head, given the wallet's mined nonce there."""
    return [
        judge(watched, head, mined, stuck_after_blocks=stuck, taken_after_blocks=taken)
        for head, mined in sorted(mined_nonces.items())
    ]


def test_a_batch_queued_behind_earlier_nonces_only_waits() -> None:
    assert set(verdicts(batch(), {head: NONCE - 2 for head in range(100, 140)})) == {Verdict.WAITING}


def test_a_batch_next_in_line_is_reported_stuck_every_few_blocks() -> None:
    found = verdicts(batch(), {head: NONCE for head in range(100, 110)}, stuck=3)
    stuck_at = [100 + i for i, verdict in enumerate(found) if verdict is Verdict.STUCK]
    assert stuck_at == [103, 106, 109]


def test_a_nonce_used_by_none_of_the_attempts_is_taken_only_after_the_wait() -> None:
    watched = batch()
    found = verdicts(watched, {head: NONCE + 1 for head in range(100, 111)}, taken=10)
    assert found[:-1] == [Verdict.WAITING] * 10 and found[-1] is Verdict.TAKEN


def test_a_nonce_unmined_again_by_a_reorg_starts_the_wait_over() -> None:
    watched = batch()
    used = {head: NONCE + 1 for head in range(100, 108)}
    reorged = {108: NONCE}
    used_again = {head: NONCE + 1 for head in range(109, 119)}
    found = verdicts(watched, used | reorged | used_again, taken=10)
    assert Verdict.TAKEN not in found
    assert judge(watched, 119, NONCE + 1, stuck_after_blocks=3, taken_after_blocks=10) is Verdict.TAKEN


def test_a_round_that_saw_the_nonce_before_its_receipt_does_not_count_once_the_receipt_came() -> None:
    """The chaos run's wedge: a node answered the wallet's nonce for a new block before that block's
    receipts; the batch was mined by its own transaction, yet a later round without the receipt (a
    reorg, an outage) found the old mark and took the batch for dropped at once."""
    watched = batch()
    assert judge(watched, 100, NONCE + 1, stuck_after_blocks=3, taken_after_blocks=10) is Verdict.WAITING
    receipt_seen(watched)  # the next round had the receipt
    found = verdicts(watched, {head: NONCE + 1 for head in range(120, 130)}, taken=10)
    assert Verdict.TAKEN not in found
