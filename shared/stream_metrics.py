"""Queue depth from Redis: every stream's length and each consumer group's pending count and lag.

One collector reads them all (intake runs it, beside its other background loops): the values are
facts about Redis, not about the process that reads them, so collecting in every service would only
export the same numbers several times. Should intake run as several replicas, each exports the same
values; the dashboards and alerts take `max by (stream, group)`, so that changes nothing.

The gauges are the last values this process read, exported by a collector of its own rather than
prometheus_client's Gauge: intake's workers (services/intake/workers.py) share one set of metrics
files, where every worker's copy of the same fact would be exported again, and a stream or group that
is gone could not be removed from them. Each worker reads Redis itself, and whichever answers a
scrape exports its own reading once (shared/metrics.py).

Labels carry the stream's name without the namespace (`mint.requested`, `mint.requested.dead`), so
dashboards and alerts read the same under any MINTLINE_NAMESPACE.
"""

import asyncio
from collections.abc import Iterator
from typing import Any

from prometheus_client import Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from redis.asyncio import Redis

from shared import keys
from shared.keys import Keys
from shared.loops import every
from shared.metrics import register_local


class StreamGauges(Collector):
    """The last reading of every stream's length and every group's pending count and lag."""

    def __init__(self) -> None:
        self.length: dict[str, int] = {}
        self.pending: dict[tuple[str, str], int] = {}
        # Redis 7 reports lag; absent while it cannot tell (entries deleted past the group).
        self.lag: dict[tuple[str, str], int] = {}

    def collect(self) -> Iterator[GaugeMetricFamily]:
        length = GaugeMetricFamily(
            "mintline_stream_length_entries",
            "Entries in a stream (dead-letter streams included)",
            labels=["stream"],
        )
        for stream, value in self.length.items():
            length.add_metric([stream], value)
        pending = GaugeMetricFamily(
            "mintline_stream_pending_entries",
            "Entries delivered to a consumer group and not acked yet",
            labels=["stream", "group"],
        )
        for labels, value in self.pending.items():
            pending.add_metric(list(labels), value)
        lag = GaugeMetricFamily(
            "mintline_stream_lag_entries",
            "Entries not delivered to a consumer group yet (absent while Redis cannot tell)",
            labels=["stream", "group"],
        )
        for labels, value in self.lag.items():
            lag.add_metric(list(labels), value)
        yield from (length, pending, lag)


STREAM_GAUGES = StreamGauges()
register_local(STREAM_GAUGES)
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
    length: dict[str, int] = {}
    pending: dict[tuple[str, str], int] = {}
    lag: dict[tuple[str, str], int] = {}
    for index, name in enumerate(keys.STREAMS):
        stream_length, dead_length, groups = replies[3 * index : 3 * index + 3]
        length[name] = stream_length
        length[f"{name}.dead"] = dead_length
        for group in groups if isinstance(groups, list) else []:
            group_name = _text(group["name"])
            pending[(name, group_name)] = group["pending"]
            if group.get("lag") is not None:
                lag[(name, group_name)] = group["lag"]
    # Replaced whole after the one await: a scrape never sees the gauges half replaced.
    STREAM_GAUGES.length, STREAM_GAUGES.pending, STREAM_GAUGES.lag = length, pending, lag


async def run(redis: Redis, names: Keys, stop: asyncio.Event, interval: float) -> None:
    await every(interval, stop, lambda: collect(redis, names), "reading stream lengths")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
