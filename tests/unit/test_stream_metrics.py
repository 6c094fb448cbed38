"""The queue-depth gauges and the dead-letter counter, on fakeredis."""

from collections.abc import AsyncIterator

import fakeredis
import pytest
from prometheus_client import REGISTRY

from shared import keys, stream_metrics
from shared.events import FIELD, MintRequested, TxSent
from shared.keys import Keys
from shared.streams import Consumer, ensure_group, publish

NAMES = Keys("metricstest")


@pytest.fixture
async def redis() -> AsyncIterator[fakeredis.FakeAsyncRedis]:
    client = fakeredis.FakeAsyncRedis()
    yield client
    await client.aclose()


def sample(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


async def test_lengths_pending_and_lag_per_stream_and_group(redis) -> None:
    requested = NAMES.stream(keys.MINT_REQUESTED)
    await ensure_group(redis, requested, keys.BATCHER)
    for i in range(5):
        await publish(redis, requested, MintRequested(request_id=f"r{i}"))
    await redis.xreadgroup(keys.BATCHER, "b1", {requested: ">"}, count=2)
    await redis.xadd(NAMES.dead(keys.TX_SENT), {FIELD: b"junk"})

    await stream_metrics.collect(redis, NAMES)

    assert sample("mintline_stream_length_entries", stream="mint.requested") == 5
    assert sample("mintline_stream_pending_entries", stream="mint.requested", group="batcher") == 2
    assert sample("mintline_stream_lag_entries", stream="mint.requested", group="batcher") == 3
    assert sample("mintline_stream_length_entries", stream="tx.sent.dead") == 1
    # A stream nobody wrote yet reads as empty, with no groups.
    assert sample("mintline_stream_length_entries", stream="tx.stuck") == 0
    assert sample("mintline_stream_pending_entries", stream="tx.stuck", group="batcher") is None


async def test_a_group_that_is_gone_stops_being_exported(redis) -> None:
    sent = NAMES.stream(keys.TX_SENT)
    await ensure_group(redis, sent, keys.CONFIRMER)
    await stream_metrics.collect(redis, NAMES)
    assert sample("mintline_stream_pending_entries", stream="tx.sent", group="confirmer") == 0

    await redis.flushall()
    await stream_metrics.collect(redis, NAMES)

    assert sample("mintline_stream_pending_entries", stream="tx.sent", group="confirmer") is None
    assert sample("mintline_stream_length_entries", stream="tx.sent") == 0


async def test_dead_lettering_counts_by_source_stream_from_zero(redis) -> None:
    stream = NAMES.stream(keys.TX_STUCK)
    consumer = Consumer(redis, stream, keys.BATCHER, "b1", dead_stream=NAMES.dead(keys.TX_STUCK))
    await consumer.start()
    before = sample("mintline_dead_lettered_total", stream="tx.stuck")
    assert before is not None  # exported as soon as a consumer of the stream exists

    await redis.xadd(stream, {FIELD: b"not msgpack"})
    await publish(redis, stream, TxSent(batch_id=1, nonce=0, tx_hash="0x" + "ab" * 32))
    messages = await consumer.read(10)

    assert len(messages) == 1
    assert sample("mintline_dead_lettered_total", stream="tx.stuck") == before + 1
    assert await redis.xlen(NAMES.dead(keys.TX_STUCK)) == 1
