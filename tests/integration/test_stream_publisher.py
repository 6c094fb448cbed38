"""Stream entries of concurrent callers added in one pipeline (shared/streams.py `Publisher`), on a
real Redis: every caller's entry lands once with its own id, an entry Redis refuses fails only its
caller, and a Redis that is gone fails each caller with an error of its own."""

import asyncio
import uuid

from redis.asyncio import Redis

from devstack.ports import free_port
from shared.events import MintRequested, decode
from shared.streams import Publisher, PublishFailed

# This run's keys only (the Redis server is the session's).
PREFIX = f"publisher-{uuid.uuid4().hex[:8]}"


async def test_concurrent_publishes_go_out_together_and_each_lands_once(redis_client: Redis) -> None:
    publisher = Publisher(redis_client)
    ids = await asyncio.gather(
        *(publisher.publish(f"{PREFIX}:mint.requested", MintRequested(request_id=f"r{i}")) for i in range(20))
    )
    await publisher.close()
    entries = await redis_client.xrange(f"{PREFIX}:mint.requested")
    assert [entry_id.decode() for entry_id, _ in entries] == ids
    assert [decode(fields[b"event"]).request_id for _, fields in entries] == [f"r{i}" for i in range(20)]
    assert publisher.pipelines_sent == 1


async def test_an_entry_redis_refuses_fails_only_its_caller(redis_client: Redis) -> None:
    await redis_client.set(f"{PREFIX}:not-a-stream", "a plain string")
    publisher = Publisher(redis_client)
    results = await asyncio.gather(
        publisher.publish(f"{PREFIX}:ok", MintRequested(request_id="a")),
        publisher.publish(f"{PREFIX}:not-a-stream", MintRequested(request_id="b")),
        publisher.publish(f"{PREFIX}:ok", MintRequested(request_id="c")),
        return_exceptions=True,
    )
    assert isinstance(results[1], Exception) and "WRONGTYPE" in str(results[1])
    assert all(isinstance(result, str) for result in (results[0], results[2]))
    assert await redis_client.xlen(f"{PREFIX}:ok") == 2
    assert publisher.pipelines_sent == 1


async def test_a_redis_that_is_gone_fails_every_caller_with_an_error_of_its_own() -> None:
    redis = Redis.from_url(f"redis://127.0.0.1:{free_port()}", socket_connect_timeout=1)
    publisher = Publisher(redis)
    results = await asyncio.gather(
        *(publisher.publish("s", MintRequested(request_id=str(i))) for i in range(4)), return_exceptions=True
    )
    assert all(isinstance(result, PublishFailed) for result in results)
    assert len({id(result) for result in results}) == 4
    await redis.aclose()
