"""Chain reads of concurrent callers, coalesced into one JSON-RPC batch every few milliseconds.

Intake makes one or two chain reads per paid request. Sent alone, each costs an HTTP request on both
ends; under load most of a request's time went there. A `Coalescer` holds each caller's calls for up
to `window_seconds` (or until `max_calls` are waiting), sends everything waiting as one batch through
`JsonRpc.batch_settled`, and hands each caller its own results: a call the node refused fails only its
caller. A caller's calls stay together in one batch (read from one node at one moment, as they would
be alone); only a batch the node cannot be asked at all fails every caller in it.
"""

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from shared.jsonrpc import JsonRpc, RpcError

log = logging.getLogger(__name__)

Call = tuple[str, list[Any]]


def _future() -> asyncio.Future[list[Any]]:
    return asyncio.get_running_loop().create_future()


@dataclass
class _Waiting:
    calls: list[Call]
    answer: asyncio.Future[list[Any]] = field(default_factory=_future)


class Coalescer:
    """`batch_settled` and `batch` as `JsonRpc` has them, coalesced across concurrent callers."""

    def __init__(self, rpc: JsonRpc, window_seconds: float = 0.002, max_calls: int | None = None) -> None:
        self.rpc = rpc
        self.window_seconds = window_seconds
        self.max_calls = max_calls or rpc.max_batch
        # How many batches went out, and how many calls they carried (for tests and the benchmark).
        self.batches_sent = 0
        self.calls_sent = 0
        self._waiting: list[_Waiting] = []
        self._waiting_calls = 0
        self._timer: asyncio.TimerHandle | None = None
        self._sending: set[asyncio.Task[None]] = set()

    async def batch_settled(self, calls: list[Call]) -> list[Any]:
        """Each call's result or the RpcError it got, in order; RpcError when the node answered none."""
        if not calls:
            return []
        waiting = _Waiting(list(calls))
        if self._waiting_calls + len(calls) > self.max_calls:
            self._flush()
        self._waiting.append(waiting)
        self._waiting_calls += len(calls)
        if self._waiting_calls >= self.max_calls:
            self._flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.window_seconds, self._flush)
        return await waiting.answer

    async def batch(self, calls: list[Call]) -> list[Any]:
        """The results of `calls`, in order; the first of them that failed raises its RpcError."""
        results = await self.batch_settled(calls)
        for result in results:
            if isinstance(result, RpcError):
                raise result
        return results

    async def call(self, method: str, params: list[Any]) -> Any:
        (result,) = await self.batch([(method, params)])
        return result

    async def close(self) -> None:
        """Send what is waiting and wait for every batch in flight; safe to call twice."""
        self._flush()
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        waiting, self._waiting, self._waiting_calls = self._waiting, [], 0
        if waiting:
            task = asyncio.create_task(self._send(waiting), name="rpc-coalesced-batch")
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _send(self, waiting: list[_Waiting]) -> None:
        calls = [call for one in waiting for call in one.calls]
        self.batches_sent += 1
        self.calls_sent += len(calls)
        try:
            results = await self.rpc.batch_settled(calls)
        except Exception as exc:
            # The node answered none of them: each caller gets an error of its own (one exception
            # object raised in many tasks would collect all their tracebacks).
            for one in waiting:
                if not one.answer.done():
                    error = RpcError(str(exc))
                    error.__cause__ = exc
                    one.answer.set_exception(error)
            return
        start = 0
        for one in waiting:
            end = start + len(one.calls)
            if not one.answer.done():  # a caller that gave up (cancelled) is skipped
                one.answer.set_result(results[start:end])
            start = end
