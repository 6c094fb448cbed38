"""Which requests go into the next batch, and when. Pure logic: no I/O."""

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

NO_EXPIRY = 2**63
# How many batches' time, past the expiry margin, an authorization must still be valid for to wait for
# a later batch: one expiring sooner is urgent (LaneRules).
URGENT_BATCHES = 3
# The wait a request whose ETA is unknown (a row from before intake stored one) is taken to have been
# promised, for the ageing rule: intake's shortest answer, and never less than it.
MIN_ETA_SECONDS = 1.0


@dataclass
class Waiting:
    request_id: str
    kind: str
    valid_before: int
    arrived: float
    entry_ids: list[str] = field(default_factory=list)
    # Its priority lane (0 normal, higher first); when intake accepted it (unix seconds; None: unknown)
    # and the wait intake estimated for it then.
    lane: int = 0
    accepted: float | None = None
    eta_seconds: float | None = None

    def overdue_at(self, ageing_multiple: float) -> float:
        """When it has waited `ageing_multiple` times its ETA (unix seconds): from then on no lane goes
        before it."""
        if self.accepted is None:
            return math.inf
        eta = max(self.eta_seconds or 0.0, MIN_ETA_SECONDS)
        return self.accepted + ageing_multiple * eta


@dataclass(frozen=True)
class LaneRules:
    """What may go before the lanes when a batch is filled (PendingBuffer.take).

    `urgent_seconds`: an authorization valid for less than this from now goes first whatever its lane,
    soonest-expiring first: the next batch is its last chance (the batcher's expiry margin, plus
    URGENT_BATCHES batch windows, for the batches that may come first). `ageing_multiple`: a request of
    a lower lane than the highest one waiting, once it has waited this many times its ETA at arrival,
    is taken as top lane, and first within it (longest overdue first), so the lowest lane cannot
    starve however many requests of higher lanes keep arriving."""

    urgent_seconds: float
    ageing_multiple: float

    @classmethod
    def of(
        cls, expiry_margin_seconds: float, batch_window_seconds: float, ageing_multiple: float
    ) -> "LaneRules":
        return cls(expiry_margin_seconds + URGENT_BATCHES * batch_window_seconds, ageing_multiple)


def take_order(waiting: Waiting, top_lane: int, now: float | None, rules: LaneRules | None) -> tuple:
    """Where `waiting` goes among its kind's requests (smallest first), with `top_lane` the highest lane
    among them: urgent expiries, then requests overdue by the ageing rule, then the lanes, highest first,
    each soonest-expiring first, then by arrival. Without `rules`: the lanes only."""
    if rules is not None and now is not None:
        if waiting.valid_before != NO_EXPIRY and waiting.valid_before <= now + rules.urgent_seconds:
            return (0, waiting.valid_before, 0, waiting.arrived)
        overdue_at = waiting.overdue_at(rules.ageing_multiple)
        if waiting.lane < top_lane and overdue_at <= now:
            return (1, overdue_at, 0, waiting.arrived)
    return (2, -waiting.lane, waiting.valid_before, waiting.arrived)


class PendingBuffer:
    """Requests read from the stream and not batched yet, deduplicated by request id."""

    def __init__(self) -> None:
        self._waiting: dict[str, Waiting] = {}

    def __len__(self) -> int:
        return len(self._waiting)

    def add(
        self,
        request_id: str,
        kind: str,
        valid_before: int | None,
        entry_id: str,
        now: float,
        *,
        lane: int = 0,
        accepted: float | None = None,
        eta_seconds: float | None = None,
    ) -> None:
        known = self._waiting.get(request_id)
        if known is None:
            expiry = NO_EXPIRY if valid_before is None else valid_before
            known = self._waiting[request_id] = Waiting(
                request_id, kind, expiry, now, lane=lane, accepted=accepted, eta_seconds=eta_seconds
            )
        known.entry_ids.append(entry_id)

    def put_back(self, taken: list[Waiting], now: float) -> None:
        """Requests taken for a batch that was not stored, waiting again (arrived `now`)."""
        for waiting in taken:
            known = self._waiting.get(waiting.request_id)
            if known is None:
                self._waiting[waiting.request_id] = replace(
                    waiting, arrived=now, entry_ids=list(waiting.entry_ids)
                )
            else:  # delivered again meanwhile
                known.entry_ids.extend(waiting.entry_ids)

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

    def has_full_batch(self, sizes: Mapping[str, int]) -> bool:
        return self._full_kind(sizes) is not None

    def take(
        self, sizes: Mapping[str, int], now: float | None = None, rules: LaneRules | None = None
    ) -> list[Waiting]:
        """The next batch: one kind (a full one first, else the kind of the request that goes first), in
        take_order: urgent expiries, overdue requests, then the highest lane first, soonest-expiring
        authorizations first, then arrival order. `now` is unix seconds. Kinds go to different
        contracts."""
        tops: dict[str, int] = {}
        for waiting in self._waiting.values():
            tops[waiting.kind] = max(tops.get(waiting.kind, 0), waiting.lane)
        ordered = sorted(self._waiting.values(), key=lambda w: take_order(w, tops[w.kind], now, rules))
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


class EntryGas:
    """The gas an entry of each kind takes, learnt from the node's estimates of the batches signed so
    far, for sizing the next batch of that kind.

    Entries cost less than the configured per-entry budget when their payer already holds tokens, or
    paid beforehand (no authorization to settle): batches sized by the budget alone then leave part of
    every block unused. Sized by what the estimates say, a batch's estimate lands SIZING_HEADROOM under
    its gas target, so its gas limit meets the target (gas_limit_for) and the batches a block was
    sized for fill it. Until a kind has an estimate, the configured budget sizes its batches; a learnt
    value never goes below half of it (a batch whose entries were already minted costs next to
    nothing, and says nothing about the next one).

    Between estimates (limit_to_check), a batch's gas limit comes from the learnt gas too, confirmed
    by one call at that limit instead of the node's estimate, a binary search that runs the batch
    some twenty times: with 1 s blocks, estimates were most of the time a batch took to sign, and a
    node busy with one answered nothing else (intake's reads waited). What mined batches used
    (observe_mined, from the confirmer's records) teaches as much as an estimate, so while batches are
    being mined no estimate is due; one is due only after REESTIMATE_EVERY batches signed with nothing
    learnt in between."""

    def __init__(self) -> None:
        self._learnt: dict[str, float] = {}
        self._since_estimate: dict[str, int] = {}

    def observe(self, kind: str, estimate: int, entries: int) -> None:
        if entries <= 0:
            return
        per_entry = estimate / entries
        known = self._learnt.get(kind)
        # Half the weight to the newest batch: one odd batch moves the size half way.
        self._learnt[kind] = per_entry if known is None else (known + per_entry) / 2
        self._since_estimate[kind] = 0

    def observe_mined(self, kind: str, gas_used: int, entries: int) -> None:
        """A batch of `entries` was mined using `gas_used`: learnt as an estimate is. Its limit was the
        check's or the estimate's, so the next limit checked (a tenth above) is tried by one call,
        and an estimate follows where that falls short."""
        self.observe(kind, gas_used, entries)

    def limit_to_check(self, kind: str, entries: int, target: int) -> int | None:
        """A gas limit for a batch of `entries` that one call at it can confirm, in place of the node's
        estimate (a binary search that runs the batch some twenty times): the learnt gas plus a tenth,
        within the target. None when the kind has no estimate yet, or one is due (every
        REESTIMATE_EVERY batches with nothing learnt, so the learnt gas follows what entries cost)."""
        learnt = self._learnt.get(kind)
        since = self._since_estimate.get(kind, 0)
        if learnt is None or since >= REESTIMATE_EVERY:
            return None
        self._since_estimate[kind] = since + 1
        return min(target, math.ceil(entries * learnt * 1.1))

    def per_entry(self, kind: str, configured: int) -> int:
        learnt = self._learnt.get(kind)
        if learnt is None:
            return configured
        return max(configured // 2, math.ceil(learnt * (1 + SIZING_HEADROOM)))


# How far under its gas target a batch sized from the estimates aims: room for entries that cost a
# little more than the ones before them, without passing the target (a batch over the target takes
# the room a block keeps for its other batches).
SIZING_HEADROOM = 0.05
# Batches signed between two estimates of a kind with no mined batch learnt from in between; the ones
# between are checked with one call each.
REESTIMATE_EVERY = 8


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
