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
