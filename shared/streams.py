"""The only module that talks XREADGROUP / XACK / XAUTOCLAIM.

Entries are at-least-once: a handler's work must commit to PostgreSQL before the entry is acked, and
handlers are idempotent, so a redelivered entry changes nothing.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from shared import events
from shared.coalescing import Coalescing
from shared.events import FIELD, DecodeError, Event
from shared.stream_metrics import DEAD_LETTERED, stream_label

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Message:
    id: str
    event: Event


async def ensure_group(redis: Redis, stream: str, group: str, first_id: str = "0") -> None:
    """The group, created if missing: reading from the stream's start (`first_id` "0"), or only entries
    added after it was created ("$")."""
    try:
        await redis.xgroup_create(stream, group, id=first_id, mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


async def publish(redis: Redis, stream: str, event: events.BaseEvent, maxlen: int = 500_000) -> str:
    entry_id = await redis.xadd(stream, {FIELD: events.encode(event)}, maxlen=maxlen, approximate=True)
    return entry_id.decode() if isinstance(entry_id, bytes) else entry_id


class PublishFailed(Exception):
    """Redis took none of the entries of a coalesced pipeline."""


class Publisher:
    """XADDs of concurrent callers sent together as one pipeline (shared/coalescing.py): at once when
    none is in flight, else when the one in flight is answered. Each caller gets its own entry id, or
    the error Redis gave its entry."""

    def __init__(
        self, redis: Redis, maxlen: int = 500_000, window_seconds: float = 0.005, max_entries: int = 500
    ) -> None:
        self.redis = redis
        self.maxlen = maxlen
        self._batches: Coalescing[tuple[str, bytes]] = Coalescing(
            self._add_all,
            lambda exc: PublishFailed(f"publishing failed: {exc}"),
            window_seconds,
            max_entries,
            "stream-publish",
        )

    @property
    def pipelines_sent(self) -> int:
        return self._batches.batches_sent

    async def publish(self, stream: str, event: events.BaseEvent) -> str:
        (entry_id,) = await self._batches.submit([(stream, events.encode(event))])
        if isinstance(entry_id, Exception):
            raise entry_id
        return entry_id.decode() if isinstance(entry_id, bytes) else entry_id

    async def close(self) -> None:
        """Send what is waiting and wait for the pipeline in flight; safe to call twice."""
        await self._batches.close()

    async def _add_all(self, entries: list[tuple[str, bytes]]) -> list[Any]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for stream, payload in entries:
                pipe.xadd(stream, {FIELD: payload}, maxlen=self.maxlen, approximate=True)
            return await pipe.execute(raise_on_error=False)


async def publish_many(
    redis: Redis, stream: str, batch: Sequence[events.BaseEvent], maxlen: int = 500_000
) -> None:
    if not batch:
        return
    async with redis.pipeline(transaction=False) as pipe:
        for event in batch:
            pipe.xadd(stream, {FIELD: events.encode(event)}, maxlen=maxlen, approximate=True)
        await pipe.execute()


class Consumer:
    """One consumer of one group: read, reclaim stale entries, dead-letter poison, ack."""

    def __init__(
        self,
        redis: Redis,
        stream: str,
        group: str,
        name: str,
        *,
        dead_stream: str,
        block_ms: int = 1000,
        claim_idle_ms: int = 30_000,
        max_deliveries: int = 5,
        first_id: str = "0",
    ) -> None:
        self.redis = redis
        self.stream = stream
        self.group = group
        self.name = name
        self.dead_stream = dead_stream
        self.block_ms = block_ms
        self.claim_idle_ms = claim_idle_ms
        self.max_deliveries = max_deliveries
        self.first_id = first_id
        self.dead_lettered = 0
        # Exported from 0, so an alert on its increase sees the first dead letter.
        self._dead_counter = DEAD_LETTERED.labels(stream_label(stream))

    async def start(self) -> None:
        await ensure_group(self.redis, self.stream, self.group, self.first_id)

    async def read(self, count: int, block_ms: int | None = None, own_pending: bool = False) -> list[Message]:
        """New entries (or, with own_pending, the ones delivered to this consumer and not acked)."""
        try:
            reply: Any = await self.redis.xreadgroup(
                self.group,
                self.name,
                {self.stream: "0" if own_pending else ">"},
                count=count,
                block=None if own_pending else (self.block_ms if block_ms is None else block_ms),
            )
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            # Redis lost the stream (flush, restart without persistence): recreate and go on; the
            # services replay what is missing from PostgreSQL.
            log.warning("consumer group %s on %s is gone; recreating it", self.group, self.stream)
            await self.start()
            return []
        if (task := asyncio.current_task()) is not None and task.cancelling():
            # redis-py 8.1 now and then answers a read cancelled mid-BLOCK with an empty reply instead
            # of raising: the task group or timeout that cancelled this task must still end it (a CI
            # run saw a batcher that lost its wallet lock read on for ever, never back to standby).
            # Whatever the read delivered stays pending for this group, reclaimed as any other.
            raise asyncio.CancelledError
        entries = reply[0][1] if reply else []
        return await self._decode(entries)

    async def claim_stale(self, count: int = 100, min_idle_ms: int | None = None) -> list[Message]:
        """Entries another consumer took and never acked (it died): take them over."""
        idle = self.claim_idle_ms if min_idle_ms is None else min_idle_ms
        claimed: list[Message] = []
        cursor = "0-0"
        while True:
            try:
                reply: Any = await self.redis.xautoclaim(
                    self.stream, self.group, self.name, min_idle_time=idle, start_id=cursor, count=count
                )
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                await self.start()
                return claimed
            claimed += await self._take_over([entry for entry in reply[1] if entry[1]])
            cursor = _text(reply[0])
            if cursor == "0-0":
                return claimed

    async def claim_from(self, owners: Callable[[str], bool], page: int = 500) -> list[Message]:
        """Every entry pending for a consumer whose name `owners` accepts (this one included), now this
        consumer's; the others are removed from the group once they hold nothing. For a successor that
        knows those consumers are gone (the next active batcher of a wallet), whatever their idle time."""
        try:
            consumers: Any = await self.redis.xinfo_consumers(self.stream, self.group)
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            await self.start()
            return []
        claimed: list[Message] = []
        for consumer in consumers:
            name = _text(consumer["name"])
            if not owners(name):
                continue
            after = "-"
            while True:
                rows: Any = await self.redis.xpending_range(
                    self.stream, self.group, min=after, max="+", count=page, consumername=name
                )
                if not rows:
                    break
                ids = [row["message_id"] for row in rows]
                entries: Any = await self.redis.xclaim(self.stream, self.group, self.name, 0, ids)
                claimed += await self._take_over([entry for entry in entries if entry[1]])
                after = "(" + _text(ids[-1])
            if name != self.name:
                await self.redis.xgroup_delconsumer(self.stream, self.group, name)
        return claimed

    async def _take_over(self, entries: list) -> list[Message]:
        if not entries:
            return []
        ids = [entry[0] for entry in entries]
        deliveries = await self._delivery_counts(ids)
        poison = {i for i in ids if deliveries.get(i, 0) > self.max_deliveries}
        for entry_id, fields in entries:
            if entry_id in poison:
                await self._dead_letter(entry_id, fields, "too many deliveries")
        return await self._decode([entry for entry in entries if entry[0] not in poison])

    async def touch(self, ids: list[str]) -> None:
        """Reset the idle time of entries this consumer is still working on, so no other consumer
        reclaims them as stale while a long job runs. JUSTID: the delivery count stays as it is."""
        for start in range(0, len(ids), 1000):
            chunk = list[Any](ids[start : start + 1000])
            await self.redis.xclaim(self.stream, self.group, self.name, 0, chunk, justid=True)

    async def ack(self, ids: list[str]) -> None:
        if ids:
            await self.redis.xack(self.stream, self.group, *ids)

    async def _delivery_counts(self, ids: list[bytes]) -> dict[bytes, int]:
        # XAUTOCLAIM returns entries in id order; min()/max() would compare the ids as text.
        rows: Any = await self.redis.xpending_range(
            self.stream, self.group, min=ids[0], max=ids[-1], count=len(ids), consumername=self.name
        )
        return {row["message_id"]: row["times_delivered"] for row in rows}

    async def _decode(self, entries: list) -> list[Message]:
        messages = []
        for entry_id, fields in entries:
            try:
                event = events.decode(fields[FIELD])
            except (DecodeError, KeyError) as exc:
                await self._dead_letter(entry_id, fields, f"undecodable: {exc}")
                continue
            messages.append(Message(_text(entry_id), event))
        return messages

    async def reject(self, message: Message, reason: str) -> None:
        """A decoded entry this consumer cannot use (an event of another type): dead-letter it."""
        await self._dead_letter(message.id.encode(), {FIELD: events.encode(message.event)}, reason)

    async def _dead_letter(self, entry_id: bytes, fields: dict, reason: str) -> None:
        log.error("dead-lettering %s entry %s: %s", self.stream, _text(entry_id), reason)
        payload = {**fields, b"reason": reason.encode(), b"source_id": entry_id}
        await self.redis.xadd(self.dead_stream, payload, maxlen=100_000, approximate=True)
        await self.redis.xack(self.stream, self.group, entry_id)
        self.dead_lettered += 1
        self._dead_counter.inc()

    async def consume(
        self,
        handle: Callable[[Event], Awaitable[None]],
        stop: asyncio.Event,
        count: int = 50,
    ) -> None:
        """Run `handle` on every entry until `stop`; ack each after its handler returned."""

        async def each(messages: list[Message]) -> None:
            for message in messages:
                if await self._handled(handle, message):
                    await asyncio.shield(self.ack([message.id]))

        await self._run(each, stop, count)

    async def consume_batches(
        self,
        handle_all: Callable[[list[Event]], Awaitable[None]],
        stop: asyncio.Event,
        count: int = 200,
    ) -> None:
        """Run `handle_all` on the entries of each read together until `stop`, and ack them with one
        XACK: one round trip each for what would take one per entry. Should the batch's handler fail,
        each entry is handled alone, so only the entries that fail alone stay pending."""

        async def together(messages: list[Message]) -> None:
            try:
                await handle_all([message.event for message in messages])
            except Exception:
                log.exception(
                    "handler failed on %d %s entries; handling them one by one", len(messages), self.stream
                )
                done = [m.id for m in messages if await self._handled(lambda e: handle_all([e]), m)]
            else:
                done = [message.id for message in messages]
            if done:
                await asyncio.shield(self.ack(done))

        await self._run(together, stop, count)

    async def _handled(self, handle: Callable[[Event], Awaitable[None]], message: Message) -> bool:
        try:
            await handle(message.event)
        except Exception:
            # Left pending: reclaimed after claim_idle_ms, dead-lettered after max_deliveries.
            log.exception("handler failed on %s entry %s", self.stream, message.id)
            return False
        return True

    async def _run(
        self, handle: Callable[[list[Message]], Awaitable[None]], stop: asyncio.Event, count: int
    ) -> None:
        """Read (this consumer's pending entries first, stale ones of others now and then) and hand
        each read to `handle` until `stop`."""
        await self.start()
        pending = await self.read(count, own_pending=True)
        next_claim = 0.0
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            try:
                if loop.time() >= next_claim:
                    pending += await self.claim_stale(count)
                    next_claim = loop.time() + self.claim_idle_ms / 2000
                messages = pending or await self.read(count)
                pending = []
                if messages:
                    await handle(messages)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("consumer loop on %s failed; going on", self.stream)
                await asyncio.sleep(1)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
