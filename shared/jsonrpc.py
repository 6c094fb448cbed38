"""A minimal JSON-RPC client for hot paths on a keep-alive aiohttp session.

web3's provider takes a thread-pool hop per request (its session cache lock is acquired through
run_in_executor); intake makes two reads per paid request, so it talks JSON-RPC directly and sends
both in one batch.
"""

import asyncio
import itertools
import json
import logging
from typing import Any

import aiohttp

from shared.backoff import exponential_backoff, retry_after_seconds

log = logging.getLogger(__name__)

# Answers a provider gives when it is busy or briefly down: worth another try after a pause.
TRANSIENT_STATUSES = {429, 500, 502, 503, 504}


class RpcError(Exception):
    """The node could not be reached, or answered with an error."""


class BatchRefused(RpcError):
    """The node refused a JSON-RPC batch as a whole (too large, or answered with one error object)."""


class JsonRpc:
    """JSON-RPC over one keep-alive session.

    max_batch: the most calls one HTTP request carries (providers cap batches); longer batches go in
    chunks. A 429, a 5xx or a body that is not JSON (an HTML error page) is retried up to `attempts`
    times with backoff, honouring Retry-After up to `max_retry_after` seconds.
    """

    def __init__(
        self,
        url: str,
        session: aiohttp.ClientSession,
        max_batch: int = 100,
        attempts: int = 5,
        backoff_base: float = 0.1,
        backoff_max: float = 2.0,
        max_retry_after: float = 5.0,
    ) -> None:
        self.url = url
        self.session = session
        self.max_batch = max_batch
        self.attempts = attempts
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.max_retry_after = max_retry_after
        self._ids = itertools.count(1)

    async def call(self, method: str, params: list[Any]) -> Any:
        (result,) = await self.batch([(method, params)])
        return result

    async def batch(self, calls: list[tuple[str, list[Any]]]) -> list[Any]:
        """The results of `calls`, in order; the first failed call raises its RpcError."""
        results = await self.batch_settled(calls)
        for result in results:
            if isinstance(result, RpcError):
                raise result
        return results

    async def batch_settled(self, calls: list[tuple[str, list[Any]]]) -> list[Any]:
        """Each call's result, or the RpcError it got, in order: one failed call spoils no other.

        Raises RpcError only when the node answered none of them.
        """
        results: list[Any] = []
        for start in range(0, len(calls), self.max_batch):
            results += await self._chunk(calls[start : start + self.max_batch])
        return results

    async def _chunk(self, calls: list[tuple[str, list[Any]]]) -> list[Any]:
        ids = [next(self._ids) for _ in calls]
        payload = [
            {"jsonrpc": "2.0", "id": i, "method": method, "params": params}
            for i, (method, params) in zip(ids, calls, strict=True)
        ]
        try:
            answers = await self._post(payload, calls[0][0])
        except BatchRefused as refused:
            if len(calls) == 1:
                return [refused]
            # Some providers cap batches below our chunk size: halve until they take it.
            half = len(calls) // 2
            log.info("%s: batch of %d refused (%s); sending halves", calls[0][0], len(calls), refused)
            return await self._chunk(calls[:half]) + await self._chunk(calls[half:])
        by_id = {answer.get("id"): answer for answer in answers if isinstance(answer, dict)}
        results: list[Any] = []
        for i, (method, _) in zip(ids, calls, strict=True):
            answer = by_id.get(i, {"error": "no answer"})
            if "error" in answer:
                results.append(RpcError(f"{method}: the node refused it: {answer['error']}"))
            else:
                results.append(answer.get("result"))
        return results

    async def _post(self, payload: list[dict[str, Any]], first_method: str) -> list[Any]:
        """The node's list of answers to `payload`, retrying what a busy provider answers."""
        for attempt in range(1, self.attempts + 1):
            retry_after: float | None = None
            problem = ""
            try:
                async with self.session.post(self.url, json=payload) as response:
                    if response.status == 413:
                        raise BatchRefused(f"{first_method}: HTTP 413 for a batch of {len(payload)}")
                    if response.status in TRANSIENT_STATUSES:
                        retry_after = self._retry_after(response.headers.get("Retry-After"))
                        problem = f"HTTP {response.status}"
                    else:
                        response.raise_for_status()
                        body = await response.read()
                        try:
                            answers = json.loads(body)
                        except ValueError:
                            problem = f"a body that is not JSON ({body[:60]!r})"
                        else:
                            if isinstance(answers, list):
                                return answers
                            raise BatchRefused(f"{first_method}: the node answered {str(answers)[:200]}")
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                raise RpcError(f"{first_method}: the node did not answer ({type(exc).__name__})") from exc
            if attempt == self.attempts:
                break
            delay = exponential_backoff(attempt, self.backoff_base, self.backoff_max)
            if retry_after is not None:
                delay = max(delay, retry_after)
            log.info("%s: %s; retry %d in %.2fs", first_method, problem, attempt, delay)
            await asyncio.sleep(delay)
        raise RpcError(f"{first_method}: the node answered {problem}, {self.attempts} times")

    def _retry_after(self, header: str | None) -> float | None:
        """Retry-After in seconds, capped at max_retry_after."""
        seconds = retry_after_seconds(header)
        return None if seconds is None else min(seconds, self.max_retry_after)
