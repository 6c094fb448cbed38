"""Background loops: run until `stop`, log a failure and go on, wake early when `stop` is set."""

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


async def pause(event: asyncio.Event, seconds: float) -> bool:
    """Wait up to `seconds` for `event`; True if it was set."""
    try:
        await asyncio.wait_for(event.wait(), timeout=seconds)
    except TimeoutError:
        return False
    return True


async def every(
    seconds: float, stop: asyncio.Event, work: Callable[[], Awaitable[object]], what: str
) -> None:
    """Run `work` every `seconds` until `stop`; an exception is logged and the loop goes on."""
    while not stop.is_set():
        try:
            await work()
        except Exception:
            log.exception("%s failed; going on", what)
        await pause(stop, seconds)


async def together(stop: asyncio.Event, *loops: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run `loops` in one task group, each until one event of theirs: set by `stop`, and as soon as
    any of them returns or raises. A task group cancels the others when one raises, but a loop whose
    cancellation is swallowed would run on and hold the group open for ever (redis-py 8.1 answers a
    cancelled XREADGROUP ... BLOCK with an empty read now and then; a CI run saw a batcher that lost
    its wallet lock never go back to standby); each loop still ends at its next check of the event."""
    ending = asyncio.Event()

    async def until_ending(loop: Callable[[asyncio.Event], Awaitable[None]]) -> None:
        try:
            await loop(ending)
        finally:
            ending.set()

    async def mirror() -> None:
        await stop.wait()
        ending.set()

    stopping = asyncio.create_task(mirror())
    try:
        async with asyncio.TaskGroup() as tasks:
            for loop in loops:
                tasks.create_task(until_ending(loop))
    finally:
        stopping.cancel()
