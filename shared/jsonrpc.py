"""A minimal JSON-RPC client for hot paths on a keep-alive aiohttp session, over one or more endpoints.

web3's provider takes a thread-pool hop per request (its session cache lock is acquired through
run_in_executor); intake makes two reads per paid request, so it talks JSON-RPC directly and sends
both in one batch. With several endpoints (RPC_URLS), reads go to one and fail over to the next when it
is unreachable or busy; a raw transaction goes to all of them (`send_raw_transaction`).
"""

import asyncio
import itertools
import json
import logging
from collections.abc import Sequence
from typing import Any

import aiohttp

from shared.backoff import exponential_backoff, retry_after_seconds

log = logging.getLogger(__name__)

# Answers a provider gives when it is busy or briefly down: worth another try after a pause.
TRANSIENT_STATUSES = {429, 500, 502, 503, 504}


class RpcError(Exception):
    """The node could not be reached, or answered with an error."""


class NodeError(RpcError):
    """The node answered a call with a JSON-RPC error object: it was reached, and said no."""

    def __init__(self, method: str, error: Any) -> None:
        self.code = error.get("code") if isinstance(error, dict) else None
        self.message = str(error.get("message", error) if isinstance(error, dict) else error)
        super().__init__(f"{method}: the node refused it: {error}")


class BatchRefused(RpcError):
    """The node refused a JSON-RPC batch as a whole (too large, or answered with one error object)."""


class _Busy(Exception):
    """One endpoint answered a status or a body worth another try later."""

    def __init__(self, problem: str, retry_after: float | None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.retry_after = retry_after


class JsonRpc:
    """JSON-RPC over one keep-alive session, to one endpoint or several.

    max_batch: the most calls one HTTP request carries (providers cap batches); longer batches go in
    chunks. A 429, a 5xx or a body that is not JSON (an HTML error page) is retried up to `attempts`
    rounds with backoff, honouring Retry-After up to `max_retry_after` seconds; with several endpoints
    each round tries the next one first, and the one that answers is used from then on.
    """

    def __init__(
        self,
        urls: str | Sequence[str],
        session: aiohttp.ClientSession,
        max_batch: int = 100,
        attempts: int = 5,
        backoff_base: float = 0.1,
        backoff_max: float = 2.0,
        max_retry_after: float = 5.0,
    ) -> None:
        self.urls = [urls] if isinstance(urls, str) else list(urls)
        if not self.urls:
            raise ValueError("JsonRpc needs at least one endpoint")
        self.session = session
        self.max_batch = max_batch
        self.attempts = attempts
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.max_retry_after = max_retry_after
        self._preferred = 0
        self._ids = itertools.count(1)

    @property
    def url(self) -> str:
        """The endpoint reads go to now."""
        return self.urls[self._preferred]

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

    async def send_raw_transaction(self, raw: bytes) -> list[Any]:
        """Broadcast a signed transaction to every endpoint at once: each one's answer (the hash) or
        the RpcError it gave, in the order of `urls`. Any endpoint that takes it spreads it."""
        params = ["0x" + raw.hex()]
        return list(
            await asyncio.gather(
                *(self._single(url, "eth_sendRawTransaction", params) for url in self.urls),
                return_exceptions=False,
            )
        )

    async def _single(self, url: str, method: str, params: list[Any]) -> Any:
        payload = [{"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params}]
        try:
            (answer,) = await self._post(payload, method, [url]) or [{}]
        except RpcError as exc:
            return exc
        if not isinstance(answer, dict):
            return RpcError(f"{method}: the node answered {str(answer)[:200]}")
        if "error" in answer:
            return NodeError(method, answer["error"])
        return answer.get("result")

    async def _chunk(self, calls: list[tuple[str, list[Any]]]) -> list[Any]:
        ids = [next(self._ids) for _ in calls]
        payload = [
            {"jsonrpc": "2.0", "id": i, "method": method, "params": params}
            for i, (method, params) in zip(ids, calls, strict=True)
        ]
        try:
            answers = await self._post(payload, calls[0][0], self._in_order())
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
            answer = by_id.get(i)
            if answer is None:
                results.append(RpcError(f"{method}: the node gave no answer for this call"))
            elif "error" in answer:
                results.append(NodeError(method, answer["error"]))
            else:
                results.append(answer.get("result"))
        return results

    def _in_order(self) -> list[str]:
        """Every endpoint, the preferred one first."""
        return self.urls[self._preferred :] + self.urls[: self._preferred]

    async def _post(self, payload: list[dict[str, Any]], first_method: str, urls: list[str]) -> list[Any]:
        """The first answer to `payload` from `urls`, in rounds: each round tries every endpoint once;
        a round where one answered busy is retried after a backoff, one where none could be reached
        raises at once."""
        problem = ""
        for attempt in range(1, self.attempts + 1):
            retry_after: float | None = None
            busy = False
            for url in urls:
                try:
                    answers = await self._post_once(url, payload, first_method)
                except _Busy as exc:
                    busy, problem = True, exc.problem
                    if exc.retry_after is not None:
                        retry_after = max(retry_after or 0.0, exc.retry_after)
                    continue
                except BatchRefused:
                    raise
                except RpcError as exc:
                    problem = str(exc)
                    if len(urls) > 1:
                        log.warning("%s; trying the next endpoint", exc)
                    continue
                self._prefer(url)
                return answers
            if not busy:
                raise RpcError(problem)
            if attempt == self.attempts:
                break
            delay = exponential_backoff(attempt, self.backoff_base, self.backoff_max)
            if retry_after is not None:
                delay = max(delay, retry_after)
            log.info("%s: %s; retry %d in %.2fs", first_method, problem, attempt, delay)
            await asyncio.sleep(delay)
        raise RpcError(f"{first_method}: the node answered {problem}, {self.attempts} times")

    async def _post_once(self, url: str, payload: list[dict[str, Any]], first_method: str) -> list[Any]:
        try:
            async with self.session.post(url, json=payload) as response:
                if response.status == 413:
                    raise BatchRefused(f"{first_method}: HTTP 413 for a batch of {len(payload)}")
                if response.status in TRANSIENT_STATUSES:
                    raise _Busy(
                        f"HTTP {response.status}", self._retry_after(response.headers.get("Retry-After"))
                    )
                if response.status >= 400:
                    raise RpcError(f"{first_method}: the node answered HTTP {response.status}")
                body = await response.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise RpcError(f"{first_method}: the node did not answer ({type(exc).__name__})") from exc
        try:
            answers = json.loads(body)
        except ValueError:
            raise _Busy(f"a body that is not JSON ({body[:60]!r})", None) from None
        if isinstance(answers, list):
            return answers
        raise BatchRefused(f"{first_method}: the node answered {str(answers)[:200]}")

    def _prefer(self, url: str) -> None:
        index = self.urls.index(url)
        if index != self._preferred:
            log.warning("JSON-RPC now goes to endpoint %d of %d", index + 1, len(self.urls))
            self._preferred = index

    def _retry_after(self, header: str | None) -> float | None:
        """Retry-After in seconds, capped at max_retry_after."""
        seconds = retry_after_seconds(header)
        return None if seconds is None else min(seconds, self.max_retry_after)
