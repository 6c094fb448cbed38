"""Which requests go into the next batch, and when. Pure logic: no I/O."""

from collections.abc import Mapping
from dataclasses import dataclass, field

NO_EXPIRY = 2**63


@dataclass
class Waiting:
    request_id: str
    kind: str
    valid_before: int
    arrived: float
    entry_ids: list[str] = field(default_factory=list)


class PendingBuffer:
    """Requests read from the stream and not batched yet, deduplicated by request id."""

    def __init__(self) -> None:
        self._waiting: dict[str, Waiting] = {}

    def __len__(self) -> int:
        return len(self._waiting)

    def add(self, request_id: str, kind: str, valid_before: int | None, entry_id: str, now: float) -> None:
        known = self._waiting.get(request_id)
        if known is None:
            known = self._waiting[request_id] = Waiting(
                request_id, kind, NO_EXPIRY if valid_before is None else valid_before, now
            )
        known.entry_ids.append(entry_id)

    def oldest_arrival(self) -> float | None:
        return min((w.arrived for w in self._waiting.values()), default=None)

    def is_due(self, now: float, sizes: Mapping[str, int], window: float) -> bool:
        """A kind has a full batch waiting, or the oldest waiting request has waited a whole window."""
        if not self._waiting:
            return False
        if self._full_kind(sizes) is not None:
            return True
        oldest = self.oldest_arrival()
        return oldest is not None and now - oldest >= window

    def take(self, sizes: Mapping[str, int]) -> list[Waiting]:
        """The next batch: one kind (a full one first, else the kind of the soonest-expiring request),
        soonest-expiring authorizations first, then arrival order. Kinds go to different contracts."""
        ordered = sorted(self._waiting.values(), key=lambda w: (w.valid_before, w.arrived))
        kind = self._full_kind(sizes) or ordered[0].kind
        chosen = [w for w in ordered if w.kind == kind][: sizes[kind]]
        for waiting in chosen:
            del self._waiting[waiting.request_id]
        return chosen

    def _full_kind(self, sizes: Mapping[str, int]) -> str | None:
        counts: dict[str, int] = {}
        for waiting in self._waiting.values():
            counts[waiting.kind] = counts.get(waiting.kind, 0) + 1
        return next((kind for kind, count in counts.items() if count >= sizes[kind]), None)


def entries_per_batch(batch_size: int, gas_budget: int, gas_per_entry: int) -> int:
    """How many entries fit: the count limit or the gas budget, whichever is tighter."""
    return max(1, min(batch_size, gas_budget // gas_per_entry))
