"""What one configuration of bench/compare.py achieved, and the side-by-side table of them all."""

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from bench.blocks import Fill


def percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


@dataclass
class Result:
    title: str
    posted: int
    accepted: int
    refused: dict[str, int] = field(default_factory=dict)
    # Intake: accepted requests per second while posting, and each request's latency (seconds).
    accepted_per_second: float | None = None
    intake_latencies: list[float] = field(default_factory=list)
    completed: int = 0
    # First request to last completion, and the chain's part: from the block before the first that
    # minted to the last that did.
    span_seconds: float = float("nan")
    chain_seconds: float = float("nan")
    waits: list[float] = field(default_factory=list)  # request -> completed, seconds
    transactions: int = 0
    gas_used: int = 0
    backlog_fill: Fill | None = None
    span_fill: Fill | None = None
    note: str = ""

    @property
    def mints_per_minute(self) -> float:
        return self.completed / self.span_seconds * 60 if self.completed else 0.0

    @property
    def chain_mints_per_minute(self) -> float:
        return self.completed / self.chain_seconds * 60 if self.completed else 0.0


def _ms(value: float) -> str:
    return f"{value * 1000:.0f} ms"


def _fill(fill: Fill | None) -> str:
    if fill is None:
        return "no such block"
    return f"{fill.min_share:.0%}/{fill.median_share:.0%}/{fill.overall:.0%} ({fill.blocks})"


def _ratio(value: float, base: Result | None) -> str:
    if base is None or not base.mints_per_minute:
        return "-"
    return f"{value / base.mints_per_minute:.1f}x"


def table(results: Sequence[Result], naive: Result | None, original: Result | None) -> str:
    rows: list[tuple[str, list[str]]] = [
        ("requests posted / accepted", [f"{r.posted} / {r.accepted}" for r in results]),
        (
            "accepted requests/s",
            [f"{r.accepted_per_second:.0f}" if r.accepted_per_second else "-" for r in results],
        ),
        (
            "intake p50 / p99",
            [
                f"{_ms(statistics.median(r.intake_latencies))} / {_ms(percentile(r.intake_latencies, 0.99))}"
                if r.intake_latencies
                else "-"
                for r in results
            ],
        ),
        ("completed", [str(r.completed) for r in results]),
        ("mints/min end to end", [f"{r.mints_per_minute:,.0f}" for r in results]),
        ("mints/min, chain's part", [f"{r.chain_mints_per_minute:,.0f}" for r in results]),
        (
            "request->completed p50/p99",
            [
                f"{statistics.median(r.waits):.1f} / {percentile(r.waits, 0.99):.1f} s" if r.waits else "-"
                for r in results
            ],
        ),
        (
            "mints per transaction",
            [f"{r.completed / r.transactions:.1f}" if r.transactions else "-" for r in results],
        ),
        ("gas per mint", [f"{r.gas_used / r.completed:,.0f}" if r.completed else "-" for r in results]),
        ("block gas, backlog min/med/all", [_fill(r.backlog_fill) for r in results]),
        ("block gas, minting min/med/all", [_fill(r.span_fill) for r in results]),
        ("x naive sender", [_ratio(r.mints_per_minute, naive) for r in results]),
        ("x original configuration", [_ratio(r.mints_per_minute, original) for r in results]),
    ]
    cells = [cell for _, row in rows for cell in row] + [r.title for r in results]
    width = max(16, *(len(cell) + 2 for cell in cells))
    label_width = max(len(label) for label, _ in rows) + 2
    lines = ["".ljust(label_width) + "".join(r.title.rjust(width) for r in results)]
    lines += [label.ljust(label_width) + "".join(c.rjust(width) for c in cells) for label, cells in rows]
    refused = [f"  {r.title}: refused {r.refused}" for r in results if r.refused]
    notes = [f"  {r.title}: {r.note}" for r in results if r.note]
    return "\n".join(lines + refused + notes)
