"""shared/loops.together: loops that end together, even one that swallows its cancellation (as a
redis-py 8.1 XREADGROUP ... BLOCK now and then does)."""

import asyncio

import pytest

from shared.loops import together


class Lost(Exception):
    pass


async def stubborn(until: asyncio.Event) -> None:
    """A loop whose blocking read answers a cancellation with an empty result, and goes on."""
    while not until.is_set():
        try:
            await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            asyncio.current_task().uncancel()  # type: ignore[union-attr]


async def fails_soon(_: asyncio.Event) -> None:
    await asyncio.sleep(0.05)
    raise Lost("lock lost")


async def test_one_loop_raising_ends_the_others_even_one_that_swallows_its_cancellation() -> None:
    with pytest.raises(ExceptionGroup) as raised:
        await asyncio.wait_for(together(asyncio.Event(), stubborn, fails_soon), timeout=5)
    assert [type(e) for e in raised.value.exceptions] == [Lost]


async def test_a_plain_task_group_waits_for_the_stubborn_loop_for_ever() -> None:
    """Why `together` exists: the same two loops in a bare TaskGroup do not end with the failure."""
    never_set = asyncio.Event()

    async def group() -> None:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(stubborn(never_set))
            tasks.create_task(fails_soon(never_set))

    running = asyncio.create_task(group())
    await asyncio.sleep(0.5)
    assert not running.done()
    never_set.set()  # lets the stubborn loop end, so the test leaves nothing running
    with pytest.raises(ExceptionGroup):
        await asyncio.wait_for(running, timeout=5)


async def test_stop_ends_every_loop_and_none_is_left_running() -> None:
    stop = asyncio.Event()
    ended: list[str] = []

    async def loop(until: asyncio.Event) -> None:
        await until.wait()
        ended.append("loop")

    running = asyncio.create_task(together(stop, loop, stubborn))
    await asyncio.sleep(0.05)
    assert not running.done()
    stop.set()
    await asyncio.wait_for(running, timeout=5)
    assert ended == ["loop"]


async def test_a_loop_that_returns_ends_the_others() -> None:
    async def returns(_: asyncio.Event) -> None:
        await asyncio.sleep(0.02)

    await asyncio.wait_for(together(asyncio.Event(), returns, stubborn), timeout=5)
