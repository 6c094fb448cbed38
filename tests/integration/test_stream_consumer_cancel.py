"""A consumer's read ends when its task is cancelled, against a real Redis: redis-py 8.1 now and then
answers an XREADGROUP cancelled mid-BLOCK with an empty reply instead of raising, and a loop reading
on would hold its task group open for ever (a batcher that lost its wallet lock never stood by)."""

import asyncio
import random
import uuid

from redis.asyncio import Redis

from shared.streams import Consumer


async def test_a_read_loop_cancelled_mid_block_ends_every_time(redis_client: Redis) -> None:
    stream = f"cancel-{uuid.uuid4().hex[:8]}"
    consumer = Consumer(redis_client, stream, "group", "reader", dead_stream=f"{stream}:dead")
    await consumer.start()
    rng = random.Random(7)

    swallowed = asyncio.Event()  # set only on failure, so a loop that read on still ends

    async def read_on() -> None:
        while not swallowed.is_set():
            await consumer.read(10, block_ms=rng.choice([1, 50]))

    for attempt in range(200):
        task = asyncio.create_task(read_on())
        await asyncio.sleep(rng.random() * 0.03)
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=5)
        if not done:
            swallowed.set()
        assert task in done and task.cancelled(), f"cancellation {attempt} was swallowed"
