"""Queue depth from Redis: every stream's length and each consumer group's pending count and lag.

One collector reads them all (intake runs it, beside its other background loops): the values are
facts about Redis, not about the process that reads them, so collecting in every service would only
export the same numbers several times. Should intake run as several replicas, each exports the same
values; the dashboards and alerts take `max by (stream, group)`, so that changes nothing.

Labels carry the stream's name without the namespace (`mint.requested`, `mint.requested.dead`), so
dashboards and alerts read the same under any MINTLINE_NAMESPACE.
"""

import asyncio
from typing import Any

from prometheus_client import Counter, Gauge
from redis.asyncio import Redis

from shared import keys
from shared.keys import Keys
from shared.loops import every

STREAM_LENGTH = Gauge(
    "mintline_stream_length_entries", "Entries in a stream (dead-letter streams included)", ["stream"]
)
STREAM_PENDING = Gauge(
    "mintline_stream_pending_entries",
    "Entries delivered to a consumer group and not acked yet",
    ["stream", "group"],
)
STREAM_LAG = Gauge(
    "mintline_stream_lag_entries",
    "Entries not delivered to a consumer group yet (absent while Redis cannot tell)",
    ["stream", "group"],
)
# Incremented by shared.streams in the process that dead-letters; labelled by the source stream.
DEAD_LETTERED = Counter(
    "mintline_dead_lettered_total", "Entries moved to a dead-letter stream, by source stream", ["stream"]
)


def stream_label(stream_key: str) -> str:
    """`mint.requested` for `<namespace>:mint.requested`."""
    return stream_key.rpartition(":")[2]


async def collect(redis: Redis, names: Keys) -> None:
    """Read every stream's XLEN and XINFO GROUPS in one round trip, then replace the gauges' values."""
    async with redis.pipeline(transaction=False) as pipe:
        for name in keys.STREAMS:
            pipe.xlen(names.stream(name))
            pipe.xlen(names.dead(name))
            pipe.xinfo_groups(names.stream(name))
        replies: list[Any] = await pipe.execute(raise_on_error=False)
    for reply in replies:
        # A missing stream answers XINFO with "no such key" (it has no groups yet); anything else is
        # a real failure for the loop to log.
        if isinstance(reply, Exception) and "no such key" not in str(reply):
            raise reply
    # Set synchronously after the one await: a scrape never sees the gauges half replaced.
    STREAM_PENDING.clear()
    STREAM_LAG.clear()
    for index, name in enumerate(keys.STREAMS):
        length, dead_length, groups = replies[3 * index : 3 * index + 3]
        STREAM_LENGTH.labels(name).set(length)
        STREAM_LENGTH.labels(f"{name}.dead").set(dead_length)
        for group in groups if isinstance(groups, list) else []:
            group_name = _text(group["name"])
            STREAM_PENDING.labels(name, group_name).set(group["pending"])
            # Redis 7 reports lag; it is None when it cannot tell (entries deleted past the group).
            if group.get("lag") is not None:
                STREAM_LAG.labels(name, group_name).set(group["lag"])


async def run(redis: Redis, names: Keys, stop: asyncio.Event, interval: float) -> None:
    await every(interval, stop, lambda: collect(redis, names), "reading stream lengths")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
