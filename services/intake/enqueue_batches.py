"""Requests accepted together: the intake_enqueue calls of concurrent requests, coalesced into one
statement, so one transaction and one commit, every few milliseconds (when: shared/coalescing.py).

Each request is still its own intake_enqueue call (migrations 011 and 012), run one after the other
inside that statement, so each sees what the calls before it inserted: a payer's reservations, a
payment or Idempotency-Key used twice, the queue depth. The payers' advisory locks are taken in the
order of their keys (hashtext), so two batches never wait for each other's payers in a cycle. Should
the statement fail anyway (two batches each waiting for the other's insert of one payment: PostgreSQL
ends one as a deadlock; or one request's call failing), nothing of it is committed and each of its
requests runs alone, as it would without coalescing. Either way a request is answered only once its own
row is committed.

One statement instead of one per request halves what a request costs PostgreSQL and intake
(bench/intake.py; the README has the figures).
"""

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from services.intake import metrics
from shared.coalescing import Coalescing

log = logging.getLogger(__name__)

# intake_enqueue's parameters, in order, with their PostgreSQL types (as arrays, one element per request).
PARAMETERS = (
    ("kind", "text"),
    ("payer", "text"),
    ("payment_type", "text"),
    ("payment_id", "text"),
    ("amount", "numeric"),
    ("authorization_data", "jsonb"),
    ("valid_before", "bigint"),
    ("payment_tx_hash", "text"),
    ("payment_log_index", "integer"),
    ("accepted_block", "bigint"),
    ("idempotency_key", "text"),
    ("callback_url", "text"),
    ("render_settings", "jsonb"),
    ("balance", "numeric"),
    # A text[] per request; arrays of arrays must be rectangular, so each goes joined by commas (the
    # nonces are 0x-hex).
    ("debited", "text"),
    ("now", "bigint"),
    ("per_second", "float8"),
    ("margin_seconds", "bigint"),
)
ONE = f"SELECT * FROM intake_enqueue({', '.join(f'${n}' for n in range(1, len(PARAMETERS) + 1))})"
_ARGUMENTS = [
    "string_to_array(u.debited, ',')" if name == "debited" else f"u.{name}" for name, _ in PARAMETERS
]
# The subquery's ORDER BY keeps it from being merged into the join: the calls run in that order.
MANY = f"""
SELECT u.i, r.* FROM (
    SELECT * FROM unnest({", ".join(f"${n}::{kind}[]" for n, (_, kind) in enumerate(PARAMETERS, 1))})
        WITH ORDINALITY AS u({", ".join(name for name, _ in PARAMETERS)}, i)
    ORDER BY hashtext(u.payer), u.i
) u CROSS JOIN LATERAL intake_enqueue({", ".join(_ARGUMENTS)}) r
"""


_DEBITED = [name for name, _ in PARAMETERS].index("debited")


@dataclass(frozen=True)
class Call:
    """One request's intake_enqueue arguments, in PARAMETERS' order (`debited` a list or None)."""

    arguments: tuple[Any, ...]

    def __post_init__(self) -> None:
        assert len(self.arguments) == len(PARAMETERS)


class Enqueuer:
    """intake_enqueue for concurrent requests, each answered with its own rows."""

    def __init__(self, pool: asyncpg.Pool, window_seconds: float = 0.002, max_requests: int = 32) -> None:
        self.pool = pool
        self._batches: Coalescing[Call] = Coalescing(
            self._send, _never_raised, window_seconds, max_requests, "enqueue-batch"
        )

    @property
    def batches_sent(self) -> int:
        return self._batches.batches_sent

    @property
    def requests_sent(self) -> int:
        return self._batches.items_sent

    async def rows(self, call: Call) -> list[asyncpg.Record]:
        """intake_enqueue's rows for this request, committed; raises what its own call raised."""
        (result,) = await self._batches.submit([call])
        if isinstance(result, BaseException):
            raise result
        return result

    async def close(self) -> None:
        await self._batches.close()

    async def _send(self, calls: list[Call]) -> list[list[asyncpg.Record] | BaseException]:
        if len(calls) > 1:
            try:
                rows = await self.pool.fetch(MANY, *_columns(calls))
            except Exception as exc:
                metrics.ENQUEUE_BATCHES_SPLIT.inc()
                log.info("a batch of %d requests failed (%s); each runs alone", len(calls), exc)
            else:
                metrics.ENQUEUE_BATCH_SIZE.observe(len(calls))
                grouped: list[list[asyncpg.Record]] = [[] for _ in calls]
                for row in rows:
                    grouped[row["i"] - 1].append(row)
                return [*grouped]
        return await asyncio.gather(*(self._alone(call) for call in calls), return_exceptions=True)

    async def _alone(self, call: Call) -> list[asyncpg.Record]:
        return await self.pool.fetch(ONE, *call.arguments)


def _columns(calls: Sequence[Call]) -> list[list[Any]]:
    columns = [list(column) for column in zip(*(call.arguments for call in calls), strict=True)]
    columns[_DEBITED] = [None if nonces is None else ",".join(nonces) for nonces in columns[_DEBITED]]
    return columns


def _never_raised(exc: Exception) -> Exception:
    """_send answers every request itself (its own rows or error); only a bug gets here."""
    return RuntimeError(f"enqueue batch failed: {exc}")
