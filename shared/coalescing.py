"""Work of concurrent callers, coalesced into one batch every few milliseconds: the mechanics behind
intake's chain reads (shared/rpc_coalescer.py) and stream publishes (shared/streams.py `Publisher`).

Each caller submits its items and awaits its own results; `send` does a whole batch at once and
answers one result (or exception) per item, in order, or raises when it could do none of them. A
caller's items stay together in one batch.

When a batch goes: with none in flight, at once (with everything submitted in the same turn of the
event loop), so a lone caller waits for nothing; with one in flight, when that one is answered, so
under load each batch carries what arrived during the one before; but never more than
`window_seconds` after its first item (a slow server holds nobody up longer), and at once when
`max_items` are waiting.
"""

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

Item = TypeVar("Item")


def _future() -> asyncio.Future[list[Any]]:
    return asyncio.get_running_loop().create_future()


@dataclass
class _Waiting(Generic[Item]):
    items: list[Item]
    answer: asyncio.Future[list[Any]] = field(default_factory=_future)


class Coalescing(Generic[Item]):
    def __init__(
        self,
        send: Callable[[list[Item]], Awaitable[Sequence[Any]]],
        wrap_error: Callable[[Exception], Exception],
        window_seconds: float,
        max_items: int,
        name: str,
    ) -> None:
        """`wrap_error` makes each caller its own exception from one that failed a whole batch (one
        exception object raised in many tasks would collect all their tracebacks)."""
        self.send = send
        self.wrap_error = wrap_error
        self.window_seconds = window_seconds
        self.max_items = max_items
        self.name = name
        # How many batches went out, and how many items they carried (for tests and the benchmark).
        self.batches_sent = 0
        self.items_sent = 0
        self._waiting: list[_Waiting[Item]] = []
        self._waiting_items = 0
        self._timer: asyncio.TimerHandle | asyncio.Handle | None = None
        self._sending: set[asyncio.Task[None]] = set()

    async def submit(self, items: Sequence[Item]) -> list[Any]:
        """Each item's result or exception, in order; raises what failed the whole batch."""
        if not items:
            return []
        waiting: _Waiting[Item] = _Waiting(list(items))
        if self._waiting_items + len(items) > self.max_items:
            self._flush()
        self._waiting.append(waiting)
        self._waiting_items += len(items)
        if self._waiting_items >= self.max_items:
            self._flush()
        elif self._timer is None:
            loop = asyncio.get_running_loop()
            if self._sending:
                self._timer = loop.call_later(self.window_seconds, self._flush)
            else:
                self._timer = loop.call_soon(self._flush)
        return await waiting.answer

    async def close(self) -> None:
        """Send what is waiting and wait for every batch in flight; safe to call twice."""
        self._flush()
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        waiting, self._waiting, self._waiting_items = self._waiting, [], 0
        if waiting:
            task = asyncio.create_task(self._send(waiting), name=self.name)
            self._sending.add(task)
            task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[None]) -> None:
        """A batch was answered: what waited behind it goes now."""
        self._sending.discard(task)
        if self._waiting and not self._sending:
            self._flush()

    async def _send(self, waiting: list[_Waiting[Item]]) -> None:
        items = [item for one in waiting for item in one.items]
        self.batches_sent += 1
        self.items_sent += len(items)
        try:
            results = await self.send(items)
        except Exception as exc:
            for one in waiting:
                if not one.answer.done():
                    error = self.wrap_error(exc)
                    error.__cause__ = exc
                    one.answer.set_exception(error)
            return
        start = 0
        for one in waiting:
            end = start + len(one.items)
            if not one.answer.done():  # a caller that gave up (cancelled) is skipped
                one.answer.set_result(list(results[start:end]))
            start = end
