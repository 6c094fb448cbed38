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

    def take_all(self) -> list[Waiting]:
        """Every waiting request, in arrival order; the buffer is empty after."""
        waiting = sorted(self._waiting.values(), key=lambda w: w.arrived)
        self._waiting.clear()
        return waiting

    def entry_ids(self) -> list[str]:
        """The stream entries of every waiting request."""
        return [entry for waiting in self._waiting.values() for entry in waiting.entry_ids]

    def _full_kind(self, sizes: Mapping[str, int]) -> str | None:
        counts: dict[str, int] = {}
        for waiting in self._waiting.values():
            counts[waiting.kind] = counts.get(waiting.kind, 0) + 1
        return next((kind for kind, count in counts.items() if count >= sizes[kind]), None)


def entries_per_batch(batch_size: int, gas_budget: int, gas_per_entry: int) -> int:
    """How many entries fit: the count limit or the gas budget, whichever is tighter."""
    return max(1, min(batch_size, gas_budget // gas_per_entry))


def batch_gas_target(block_gas_limit: int, max_tx_gas: int) -> int:
    """The gas limit a batch aims for: as many equal batches as a block needs to be full, each within
    the chain's per-transaction cap (EIP-7825: 2^24). A block takes a transaction only if its gas limit
    fits what is left, so with 30M blocks and the cap, two 15M batches fill a block where one 16.7M
    batch leaves 13.3M that no second one fits in."""
    cap = min(max_tx_gas, block_gas_limit)
    per_block = -(-block_gas_limit // cap)
    return block_gas_limit // per_block


def gas_limit_for(estimate: int, target: int, cap: int) -> int:
    """The gas limit to sign a batch with: its estimate plus 10%, within the target where the estimate
    allows, never past the chain's per-transaction cap. Raises BatchTooLarge past the cap."""
    if estimate > cap:
        raise BatchTooLarge(estimate, cap)
    padded = estimate * 11 // 10
    return min(padded, target if estimate <= target else cap)


class BatchTooLarge(Exception):
    """The batch needs more gas (or bytes) than one transaction may use: it must be split."""

    def __init__(self, needed: int, cap: int, unit: str = "gas") -> None:
        super().__init__(f"needs {needed} {unit}; one transaction may use {cap}")
        self.needed = needed
        self.cap = cap
