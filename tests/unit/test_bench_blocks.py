"""Which blocks of a benchmark run a backlog waited for, and how full they were (bench/blocks.py)."""

from bench.blocks import Block, Fill, Mined, minting_span, under_backlog

GAS_LIMIT = 30_000_000
PER_MINT = 100_000  # 300 mints fill a block


def _blocks(*used: int) -> list[Block]:
    """Blocks 1, 2, ... seen at 10.0, 11.0, ..., with `used` gas each."""
    return [Block(n, 9.0 + n, gas, GAS_LIMIT, 1 if gas else 0) for n, gas in enumerate(used, start=1)]


def test_a_block_is_under_backlog_when_what_waited_a_whole_block_for_it_would_fill_it() -> None:
    blocks = _blocks(0, 27_000_000, 27_000_000, 6_000_000)
    # 600 accepted before block 1 was seen: 270 mined in block 2, 270 in 3, 60 in 4.
    requests = [Mined(9.5, 2)] * 270 + [Mined(9.5, 3)] * 270 + [Mined(9.5, 4)] * 60

    chosen = under_backlog(blocks, requests, PER_MINT)

    # Block 2: 600 waited; block 3: 330 (still more than a block's worth); block 4: only 60.
    assert [b.number for b in chosen] == [2, 3]


def test_requests_accepted_after_the_previous_block_do_not_count_for_the_next() -> None:
    blocks = _blocks(0, 0, 30_000_000)
    # 300 accepted between block 1 (10.0) and block 2 (11.0): they could not be in block 2, and count
    # only for block 3.
    requests = [Mined(10.5, 3)] * 300

    assert [b.number for b in under_backlog(blocks, requests, PER_MINT)] == [3]


def test_requests_never_minted_still_wait() -> None:
    blocks = _blocks(0, 0)
    assert [b.number for b in under_backlog(blocks, [Mined(9.0, None)] * 300, PER_MINT)] == [2]


def test_fill_reports_the_emptiest_block_the_median_and_the_whole() -> None:
    fill = Fill.of(_blocks(30_000_000, 15_000_000, 27_000_000))

    assert fill is not None
    assert (fill.blocks, fill.min_share, fill.median_share) == (3, 0.5, 0.9)
    assert fill.overall == 72_000_000 / 90_000_000
    assert Fill.of([]) is None


def test_the_minting_span_runs_from_the_first_block_that_minted_to_the_last() -> None:
    blocks = _blocks(0, 1, 0, 1, 0)
    assert [b.number for b in minting_span(blocks, {2, 4})] == [2, 3, 4]
    assert minting_span(blocks, set()) == []
