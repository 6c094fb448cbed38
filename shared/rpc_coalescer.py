"""Chain reads of concurrent callers, coalesced into one JSON-RPC batch every few milliseconds.

Intake makes one or two chain reads per paid request. Sent alone, each costs an HTTP request on both
ends. A `Coalescer` sends what its callers wait for as one batch through `JsonRpc.batch_settled`
(when: shared/coalescing.py) and hands each caller its own results: a call the node refused fails only
its caller. A caller's calls stay together in one batch (read from one node at one moment, as they
would be alone); only a batch the node cannot be asked at all fails every caller in it.
"""

from typing import Any

from shared.coalescing import Coalescing
from shared.jsonrpc import JsonRpc, RpcError

Call = tuple[str, list[Any]]


class Coalescer:
    """`batch_settled`, `batch` and `call` as `JsonRpc` has them, coalesced across concurrent callers."""

    def __init__(self, rpc: JsonRpc, window_seconds: float = 0.005, max_calls: int | None = None) -> None:
        self.rpc = rpc
        self._batches = Coalescing(
            rpc.batch_settled,
            lambda exc: RpcError(str(exc)),
            window_seconds,
            max_calls or rpc.max_batch,
            "rpc-coalesced-batch",
        )

    @property
    def batches_sent(self) -> int:
        return self._batches.batches_sent

    @property
    def calls_sent(self) -> int:
        return self._batches.items_sent

    async def batch_settled(self, calls: list[Call]) -> list[Any]:
        """Each call's result or the RpcError it got, in order; RpcError when the node answered none."""
        return await self._batches.submit(calls)

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
        await self._batches.close()
