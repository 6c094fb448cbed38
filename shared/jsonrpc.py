"""A minimal JSON-RPC client for hot paths on a keep-alive aiohttp session.

web3's provider takes a thread-pool hop per request (its session cache lock is acquired through
run_in_executor); intake makes two reads per paid request, so it talks JSON-RPC directly and sends
both in one batch.
"""

import itertools
from typing import Any

import aiohttp


class RpcError(Exception):
    """The node could not be reached, or answered with an error."""


class JsonRpc:
    def __init__(self, url: str, session: aiohttp.ClientSession) -> None:
        self.url = url
        self.session = session
        self._ids = itertools.count(1)

    async def call(self, method: str, params: list[Any]) -> Any:
        (result,) = await self.batch([(method, params)])
        return result

    async def batch(self, calls: list[tuple[str, list[Any]]]) -> list[Any]:
        """The results of `calls`, in order, from one HTTP request."""
        ids = [next(self._ids) for _ in calls]
        payload = [
            {"jsonrpc": "2.0", "id": i, "method": method, "params": params}
            for i, (method, params) in zip(ids, calls, strict=True)
        ]
        try:
            async with self.session.post(self.url, json=payload) as response:
                response.raise_for_status()
                answers = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
            raise RpcError(f"{calls[0][0]}: the node did not answer ({type(exc).__name__})") from exc
        if not isinstance(answers, list):
            raise RpcError(f"{calls[0][0]}: the node answered {str(answers)[:200]}")
        by_id = {answer.get("id"): answer for answer in answers}
        results = []
        for i, (method, _) in zip(ids, calls, strict=True):
            answer = by_id.get(i, {"error": "no answer"})
            if "error" in answer:
                raise RpcError(f"{method}: the node refused it: {answer['error']}")
            results.append(answer["result"])
        return results
