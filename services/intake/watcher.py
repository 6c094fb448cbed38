"""The live status behind the status page's event streams: one watcher polls PostgreSQL for every open
stream and hands each stream the states it watches.

Every poll interval the watcher reads all watched requests in one query (`id = ANY($1)`), and, while
anyone watches the queue, the queue's counts and recent batches (every `queue_seconds`, also one read
for all). A thousand open pages cost one query per interval, not a thousand. A state that did not
change since the last poll wakes nobody.

A stream sees the latest state only (a `Subscription` keeps one value, not a backlog): a slow client
skips states it was too slow for, but always gets the last one.
"""

import asyncio
import logging
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import asyncpg

from services.intake import queue
from services.intake.counts import StatusCounts
from services.intake.errors import RateLimited, Unavailable
from services.intake.open_streams import OpenStreams
from services.intake.schemas import LiveBatch, LiveItem, LiveQueue, RecentThroughput, RenderProgress
from services.intake.throughput import Throughput
from shared.loops import every, pause

log = logging.getLogger(__name__)

FINAL = ("completed", "failed")
RECENT_BATCHES = 10

# The position among queued requests of the same kind, as `queue.item` counts it (queued_position,
# migration 012), for every watched request at once: one pass over the queued rows up to the last
# watched one (none when no watched request is queued) ranks each in its lane, and the queued requests
# of higher lanes come from their own small index.
ITEMS = f"""
WITH watched AS (
    SELECT m.id, m.kind, m.lane, m.seq, m.status, m.mint_tx_hash, m.error_message, m.updated_at, m.token_id,
           j.status AS render_status, j.progress AS render_progress
    FROM mint_requests m LEFT JOIN render_jobs j ON j.request_id = m.id
    WHERE m.id = ANY($1::uuid[])
), ranked AS (
    SELECT id, row_number() OVER (PARTITION BY kind, lane ORDER BY seq) AS position
    FROM mint_requests
    WHERE status IN {queue.QUEUED_SQL}
      AND seq <= (SELECT max(seq) FROM watched WHERE status IN {queue.QUEUED_SQL})
)
SELECT w.*,
       CASE WHEN r.position IS NOT NULL THEN
           r.position + (SELECT count(*) FROM mint_requests h
                         WHERE h.kind = w.kind AND h.lane > 0 AND h.lane > w.lane
                           AND h.status IN {queue.QUEUED_SQL})
       END AS position,
       (SELECT jsonb_agg(jsonb_build_object('status', h.status, 'at', h.at, 'reason', h.reason)
                         ORDER BY h.id)
        FROM mint_request_history h WHERE h.request_id = w.id) AS history
FROM watched w LEFT JOIN ranked r USING (id)
"""
BATCHES = """
SELECT id, nonce, kind, status, cardinality(request_ids) AS entries, tx_hash, block_number,
       created_at, confirmed_at
FROM batches ORDER BY id DESC LIMIT $1
"""


class Subscription:
    """One stream's mailbox: the latest state and a flag that it changed."""

    def __init__(self) -> None:
        self.state: dict[str, Any] | None = None
        self.changed = asyncio.Event()

    def put(self, state: dict[str, Any] | None) -> None:
        self.state = state
        self.changed.set()

    async def next(self, timeout: float) -> dict[str, Any] | None:
        """The latest state once it changes, or None after `timeout` (or when the watcher closes)."""
        if not await pause(self.changed, timeout):
            return None
        self.changed.clear()
        return self.state


class Watcher:
    def __init__(
        self,
        throughput: Throughput,
        counts: StatusCounts,
        *,
        poll_seconds: float,
        queue_seconds: float,
        max_streams: int,
        max_streams_per_client: int,
        open_streams: OpenStreams | None = None,
    ) -> None:
        self.throughput = throughput
        self.counts = counts
        self.poll_seconds = poll_seconds
        self.queue_seconds = queue_seconds
        self.max_streams = max_streams
        self.max_streams_per_client = max_streams_per_client
        # Every worker's open streams count toward max_streams (services/intake/open_streams.py).
        self.open_streams = open_streams or OpenStreams()
        # Open streams per limited client (no entry at 0, so departed clients cost no memory).
        self.client_streams: dict[str, int] = {}
        # Set at shutdown: every stream ends, so the server does not wait for them.
        self.closing = asyncio.Event()
        self._items: dict[uuid.UUID, set[Subscription]] = {}
        self._last_items: dict[uuid.UUID, dict[str, Any]] = {}
        self._queue_subscriptions: set[Subscription] = set()
        self._queue: dict[str, Any] | None = None
        self._queue_read_at = 0.0
        # What the queue streams were last given (a stream's first read may refresh `_queue` between polls).
        self._queue_pushed: dict[str, Any] | None = None
        self._queue_lock = asyncio.Lock()

    @property
    def streams(self) -> int:
        """The streams this process holds open."""
        return self.open_streams.own

    @contextmanager
    def admit(self, client: str | None = None) -> Iterator[None]:
        """Holds one of `max_streams` places, or refuses with 503 when none is free; and one of the
        `max_streams_per_client` of `client` (None: a client without a cap), else 429."""
        if self.closing.is_set():
            raise Unavailable(
                "shutting_down", "intake is stopping; reconnect shortly", headers={"Retry-After": "5"}
            )
        if self.open_streams.total() >= self.max_streams:
            raise Unavailable(
                "too_many_streams",
                f"{self.max_streams} live streams are open; retry shortly",
                headers={"Retry-After": "10"},
            )
        if client is not None and self.client_streams.get(client, 0) >= self.max_streams_per_client:
            raise RateLimited(
                "too_many_streams",
                f"{client} has {self.max_streams_per_client} live streams open; close one or retry later",
                10,
            )
        self.open_streams.add(1)
        if client is not None:
            self.client_streams[client] = self.client_streams.get(client, 0) + 1
        try:
            yield
        finally:
            self.open_streams.add(-1)
            if client is not None:
                left = self.client_streams.pop(client) - 1
                if left:
                    self.client_streams[client] = left

    @contextmanager
    def watch_item(self, request_id: uuid.UUID) -> Iterator[Subscription]:
        subscription = Subscription()
        self._items.setdefault(request_id, set()).add(subscription)
        try:
            yield subscription
        finally:
            watchers = self._items.get(request_id)
            if watchers is not None:
                watchers.discard(subscription)
                if not watchers:
                    del self._items[request_id]
                    self._last_items.pop(request_id, None)

    @contextmanager
    def watch_queue(self) -> Iterator[Subscription]:
        subscription = Subscription()
        self._queue_subscriptions.add(subscription)
        try:
            yield subscription
        finally:
            self._queue_subscriptions.discard(subscription)

    def close(self) -> None:
        self.closing.set()
        for subscriptions in (*self._items.values(), self._queue_subscriptions):
            for subscription in subscriptions:
                subscription.changed.set()

    async def item_state(self, pool: asyncpg.Pool, request_id: uuid.UUID) -> dict[str, Any] | None:
        """One request's state now (a stream's first event), or None if there is no such request."""
        states = await self._read_items(pool, [request_id])
        return states.get(request_id)

    async def queue_state(self, pool: asyncpg.Pool) -> dict[str, Any]:
        """The queue's state, read at most once per `queue_seconds` however many streams ask."""
        async with self._queue_lock:
            # Half a poll of slack: the poll loop's ticks do not fall exactly on `queue_seconds`.
            age = time.monotonic() - self._queue_read_at
            if self._queue is None or age + self.poll_seconds / 2 >= self.queue_seconds:
                await self._refresh_queue(pool)
            assert self._queue is not None
            return self._queue

    async def run(self, pool: asyncpg.Pool, stop: asyncio.Event) -> None:
        await every(self.poll_seconds, stop, lambda: self.poll(pool), "polling live status")

    async def poll(self, pool: asyncpg.Pool) -> None:
        if self._items:
            states = await self._read_items(pool, list(self._items))
            for request_id, state in states.items():
                if self._last_items.get(request_id) == state:
                    continue
                self._last_items[request_id] = state
                for subscription in tuple(self._items.get(request_id, ())):
                    subscription.put(state)
        if self._queue_subscriptions:
            state = await self.queue_state(pool)
            if state != self._queue_pushed:
                self._queue_pushed = state
                for subscription in tuple(self._queue_subscriptions):
                    subscription.put(state)

    async def _read_items(
        self, pool: asyncpg.Pool, request_ids: list[uuid.UUID]
    ) -> dict[uuid.UUID, dict[str, Any]]:
        rows = await pool.fetch(ITEMS, request_ids)
        return {row["id"]: self._item_json(row) for row in rows}

    async def _refresh_queue(self, pool: asyncpg.Pool) -> None:
        started = time.monotonic()
        counts = await self.counts.get(pool)
        batches = await pool.fetch(BATCHES, RECENT_BATCHES)
        depth = sum(counts.get(status, 0) for status in queue.ACTIVE)
        self._queue = LiveQueue(
            counts=counts,
            queue_depth=depth,
            throughput=RecentThroughput(
                completed_last_minute=self.throughput.completed_last_minute,
                mints_per_second=round(self.throughput.per_second, 3),
            ),
            estimated_wait_seconds=self.throughput.wait_seconds(depth + 1),
            batches=[_batch(row) for row in batches],
        ).model_dump(mode="json")
        self._queue_read_at = started

    def _item_json(self, row: asyncpg.Record) -> dict[str, Any]:
        position = row["position"]
        render = None
        if row["render_status"] is not None:
            render = RenderProgress(status=row["render_status"], progress=row["render_progress"])
        return LiveItem(
            id=row["id"],
            kind=row["kind"],
            status=row["status"],
            queue_position=position,
            estimated_wait_seconds=None if position is None else self.throughput.wait_seconds(position),
            mint_tx_hash=row["mint_tx_hash"],
            token_id=None if row["token_id"] is None else str(row["token_id"]),
            error=row["error_message"],
            updated_at=queue.iso(row["updated_at"]),
            render=render,
            history=row["history"] or [],
        ).model_dump(mode="json")


def _batch(row: asyncpg.Record) -> LiveBatch:
    return LiveBatch(
        id=row["id"],
        nonce=row["nonce"],
        kind=row["kind"],
        status=row["status"],
        entries=row["entries"],
        tx_hash=row["tx_hash"],
        block_number=row["block_number"],
        created_at=queue.iso(row["created_at"]),
        confirmed_at=queue.iso(row["confirmed_at"]),
    )
