"""Redis memory for bench/growth.py: used_memory, and a stream written far past its MAXLEN."""

import uuid

from redis.asyncio import Redis

from shared import keys
from shared.events import MintRequested
from shared.keys import Keys
from shared.settings import Settings
from shared.streams import publish_many


async def used_memory(redis: Redis) -> int:
    return int((await redis.info("memory"))["used_memory"])


async def trimming(redis: Redis, namespace: str, maxlen: int, rounds: int, per_round: int) -> None:
    """XADD through shared.streams (the one path every stream write takes) far past MAXLEN: the stream
    and Redis memory stop growing at the cap."""
    stream = Keys(f"{namespace}-trim").stream(keys.MINT_REQUESTED)
    print(f"\nstream trimming: {rounds} x {per_round} entries into {stream} with MAXLEN ~{maxlen}")
    for number in range(1, rounds + 1):
        events = [MintRequested(request_id=str(uuid.uuid4()), valid_before=2**31) for _ in range(per_round)]
        await publish_many(redis, stream, events, maxlen=maxlen)
        length, memory = await redis.xlen(stream), await used_memory(redis)
        print(f"  after {number * per_round:>6} entries: XLEN {length:>6}, used_memory {memory:>10,}")
    per_entry = await redis.memory_usage(stream) / await redis.xlen(stream)
    default = Settings.model_fields["stream_maxlen"].default
    print(
        f"  {per_entry:.0f} bytes per entry: at the default STREAM_MAXLEN ({default:,}) a stream stays under"
        f" ~{per_entry * default / 2**20:.0f} MiB; dead-letter streams are capped at 100,000 entries"
    )
    await redis.delete(stream)
