"""A fault-injecting JSON-RPC proxy in front of any RPC URL: the rules hosted providers enforce, on demand.

Every fault is an attribute the owner switches at run time (all off by default): a log-range cap, a
batch-size cap, 429s, HTML 503 pages, a replica a block behind, numbered blocks served from a cache
that outlives a reorg, and raw transactions answered but dropped. `calls` counts the calls per method
that reached the proxy, for assertions.

In tests: `with RpcProxy(anvil.rpc_url) as proxy:` serves on a free loopback port from a thread of its
own, so synchronous web3 calls in the test and service processes both reach it. Standalone:
`python -m devstack.rpc_proxy --upstream URL --port N --max-log-range 2000 --max-batch 100 ...`.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import logging
import threading
import time
from typing import Any

import aiohttp
from aiohttp import web
from eth_utils import keccak

from devstack.ports import free_port
from devstack.process import Server

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
HTML_503 = (
    "<html><head><title>503 Service Temporarily Unavailable</title></head><body>"
    "<center><h1>503 Service Temporarily Unavailable</h1></center></body></html>"
)


class RpcProxy(Server):
    def __init__(self, upstream: str, port: int | None = None) -> None:
        self.upstream = upstream
        self.port = port or free_port()
        # eth_getLogs spanning more blocks than this is refused, as hosted providers do.
        self.max_log_range: int | None = None
        # A JSON-RPC batch of more calls than this is refused: with a JSON-RPC error object
        # (batch_refusal "error") or HTTP 413 ("413").
        self.max_batch: int | None = None
        self.batch_refusal = "error"
        # Every Kth HTTP request answers 429, and every request until rate_limited_until (monotonic).
        self.rate_limit_every: int | None = None
        self.rate_limited_until = 0.0
        self.retry_after = "1"
        # Every Kth HTTP request answers an HTML 503 page, and every request until unavailable_until.
        self.html_503_every: int | None = None
        self.unavailable_until = 0.0
        # Every Kth call of `failing_method` answers a JSON-RPC internal error (a flaky backend).
        self.failing_method: str | None = None
        self.fail_every = 1
        # Calls of failing_method seen, one by one (`calls` counts a whole request's calls at once).
        self._failing_calls = 0
        # A replica one block behind: the head, the latest block and the latest block's receipts.
        self.lagging = False
        # eth_getBlockByNumber of a numbered block is answered from a cache kept forever, as a
        # provider that caches "immutable" blocks at its edge does: after a reorg it serves the old
        # block. `block_cache` holds the first answer for each (number, full transactions) asked.
        self.cache_blocks = False
        self.block_cache: dict[tuple[str, bool], dict[str, Any]] = {}
        # eth_getBlockByNumber of these block numbers answers null, as anvil was seen to answer a block
        # far below its head after anvil_reorg.
        self.missing_blocks: set[int] = set()
        # eth_sendRawTransaction answers the transaction's hash without forwarding it.
        self.drop_transactions = False
        # A raw transaction longer than this many bytes is refused as geth refuses one over 128 KiB.
        self.max_transaction_bytes: int | None = None
        self.calls: collections.Counter[str] = collections.Counter()
        self.requests = 0
        self.refused: collections.Counter[str] = collections.Counter()
        self.dropped: list[str] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    rpc_url = url

    def rate_limit_for(self, seconds: float) -> None:
        self.rate_limited_until = time.monotonic() + seconds

    def unavailable_for(self, seconds: float) -> None:
        self.unavailable_until = time.monotonic() + seconds

    def heal(self) -> None:
        """Every fault off; the counts stay."""
        fresh = RpcProxy(self.upstream, self.port)
        for name in (
            "max_log_range", "max_batch", "batch_refusal", "rate_limit_every", "rate_limited_until",
            "html_503_every", "unavailable_until", "failing_method", "fail_every", "lagging",
            "drop_transactions", "max_transaction_bytes", "cache_blocks", "missing_blocks",
        ):  # fmt: skip
            setattr(self, name, getattr(fresh, name))

    # The server, on an event loop in a thread of its own.

    def start(self) -> RpcProxy:
        if self._thread is not None:
            raise RuntimeError("RpcProxy already started")
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name=f"rpc-proxy-{self.port}", daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.serve(), loop).result(timeout=10)
        log.info("rpc proxy at %s in front of %s", self.url, self.upstream)
        return self

    def stop(self) -> None:
        """Stops serving and ends the thread; calling it again is a no-op."""
        loop, thread, self._loop, self._thread = self._loop, self._thread, None, None
        if loop is None or thread is None:
            return
        asyncio.run_coroutine_threadsafe(self.close(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()

    async def serve(self) -> None:
        """Serve on the current event loop (the standalone entry point uses this directly)."""
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        app = web.Application(client_max_size=64 * 1024**2)
        app.router.add_post("/", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, HOST, self.port, reuse_address=True).start()

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    # Requests.

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        body = await request.read()
        try:
            payload = json.loads(body)
        except ValueError:
            return web.json_response(_error(None, -32700, "parse error"))
        calls = payload if isinstance(payload, list) else [payload]
        for call in calls:
            self.calls[call.get("method", "?") if isinstance(call, dict) else "?"] += 1
        if refusal := self._refusal(len(calls) if isinstance(payload, list) else None):
            return refusal
        answers = await self._answer_all([c for c in calls if isinstance(c, dict)])
        return web.json_response(answers if isinstance(payload, list) else answers[0])

    def _refusal(self, batch_size: int | None) -> web.StreamResponse | None:
        now = time.monotonic()
        if now < self.rate_limited_until or _every(self.rate_limit_every, self.requests):
            self.refused["429"] += 1
            return web.json_response(
                {"jsonrpc": "2.0", "id": None, "error": {"code": 429, "message": "Too Many Requests"}},
                status=429,
                headers={"Retry-After": self.retry_after},
            )
        if now < self.unavailable_until or _every(self.html_503_every, self.requests):
            self.refused["503"] += 1
            return web.Response(status=503, text=HTML_503, content_type="text/html")
        if batch_size is not None and self.max_batch is not None and batch_size > self.max_batch:
            self.refused["batch"] += 1
            message = f"batch size {batch_size} exceeds the limit of {self.max_batch}"
            if self.batch_refusal == "413":
                return web.Response(status=413, text=message)
            return web.json_response(_error(None, -32600, message))
        return None

    async def _answer_all(self, calls: list[dict[str, Any]]) -> list[Any]:
        answers: list[Any] = [None] * len(calls)
        forward: list[int] = []
        for index, call in enumerate(calls):
            local = await self._local_answer(call)
            if local is None:
                forward.append(index)
            else:
                answers[index] = local
        if forward:
            upstream = await self._upstream([calls[i] for i in forward])
            by_id = {answer.get("id"): answer for answer in upstream if isinstance(answer, dict)}
            for index in forward:
                call = calls[index]
                answer = by_id.get(call.get("id"), _error(call.get("id"), -32603, "no upstream answer"))
                answers[index] = await self._lag(call, answer)
                self._remember_block(call, answers[index])
        return answers

    def _cached_block_key(self, call: dict[str, Any]) -> tuple[str, bool] | None:
        params = call.get("params") or []
        if not self.cache_blocks or call.get("method") != "eth_getBlockByNumber" or not params:
            return None
        number = str(params[0])
        return (number, bool(params[1]) if len(params) > 1 else False) if number.startswith("0x") else None

    def _remember_block(self, call: dict[str, Any], answer: dict[str, Any]) -> None:
        key = self._cached_block_key(call)
        if key is not None and isinstance(answer.get("result"), dict):
            self.block_cache.setdefault(key, answer["result"])

    async def _local_answer(self, call: dict[str, Any]) -> dict[str, Any] | None:
        """An answer the proxy makes up for `call`, or None to forward it."""
        method, params, call_id = call.get("method"), call.get("params") or [], call.get("id")
        if method == self.failing_method:
            self._failing_calls += 1
            if _every(self.fail_every, self._failing_calls):
                self.refused["failing_method"] += 1
                return _error(call_id, -32603, "internal error")
        if method == "eth_getLogs" and self.max_log_range is not None and params:
            span = await self._log_span(params[0])
            if span is not None and span > self.max_log_range:
                self.refused["log_range"] += 1
                return _error(call_id, -32600, f"query exceeds max block range {self.max_log_range}")
        if method == "eth_sendRawTransaction" and self.max_transaction_bytes is not None and params:
            size = (len(str(params[0])) - 2) // 2
            if size > self.max_transaction_bytes:
                self.refused["oversized"] += 1
                return _error(call_id, -32000, "oversized data")
        if method == "eth_sendRawTransaction" and self.drop_transactions and params:
            tx_hash = "0x" + keccak(hexstr=params[0]).hex()
            self.dropped.append(tx_hash)
            return {"jsonrpc": "2.0", "id": call_id, "result": tx_hash}
        if (
            method == "eth_getBlockByNumber"
            and self.missing_blocks
            and params
            and _number(params[0]) in self.missing_blocks
        ):
            self.refused["missing_block"] += 1
            return {"jsonrpc": "2.0", "id": call_id, "result": None}
        if (key := self._cached_block_key(call)) is not None and key in self.block_cache:
            return {"jsonrpc": "2.0", "id": call_id, "result": self.block_cache[key]}
        if self.lagging and method == "eth_getBlockByNumber" and params and params[0] == "latest":
            head = await self._head()
            forwarded = {**call, "params": [hex(max(0, head - 1)), *params[1:]]}
            return (await self._upstream([forwarded]))[0]
        return None

    async def _lag(self, call: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
        if not self.lagging or "result" not in answer:
            return answer
        method, result = call.get("method"), answer["result"]
        if method == "eth_blockNumber":
            return {**answer, "result": hex(max(0, int(result, 16) - 1))}
        if method == "eth_getTransactionReceipt" and result is not None:
            if int(result["blockNumber"], 16) >= await self._head():
                return {**answer, "result": None}
        return answer

    async def _log_span(self, log_filter: dict[str, Any]) -> int | None:
        if "blockHash" in log_filter:
            return None
        numbers = []
        for key in ("fromBlock", "toBlock"):
            tag = log_filter.get(key, "latest")
            if tag == "earliest":
                numbers.append(0)
            elif isinstance(tag, str) and tag.startswith("0x"):
                numbers.append(int(tag, 16))
            else:  # latest, pending, safe, finalized: near enough the head for a range check
                numbers.append(await self._head())
        return numbers[1] - numbers[0] + 1

    async def _head(self) -> int:
        (answer,) = await self._upstream([{"jsonrpc": "2.0", "id": 0, "method": "eth_blockNumber"}])
        return int(answer["result"], 16)

    async def _upstream(self, calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
        assert self._session is not None
        try:
            async with self._session.post(self.upstream, json=calls) as response:
                answers = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
            return [_error(c.get("id"), -32603, f"upstream: {type(exc).__name__}") for c in calls]
        return answers if isinstance(answers, list) else [answers] * len(calls)


def _number(tag: object) -> int | None:
    """A block parameter's number (None for a tag such as "latest")."""
    return int(tag, 16) if isinstance(tag, str) and tag.startswith("0x") else None


def _every(k: int | None, count: int) -> bool:
    return k is not None and k > 0 and count % k == 0


def _error(call_id: Any, code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": call_id, "error": {"code": code, "message": message}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", required=True, help="the RPC URL to stand in front of")
    parser.add_argument("--port", type=int, default=8546)
    parser.add_argument("--max-log-range", type=int, help="refuse eth_getLogs spanning more blocks")
    parser.add_argument("--max-batch", type=int, help="refuse JSON-RPC batches of more calls")
    parser.add_argument("--batch-refusal", choices=["error", "413"], default="error")
    parser.add_argument("--rate-limit-every", type=int, help="answer 429 to every Kth request")
    parser.add_argument("--html-503-every", type=int, help="answer an HTML 503 to every Kth request")
    parser.add_argument("--lagging", action="store_true", help="answer as a replica one block behind")
    parser.add_argument("--drop-transactions", action="store_true", help="answer raw transactions, drop them")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    proxy = RpcProxy(args.upstream, args.port)
    proxy.max_log_range, proxy.max_batch, proxy.batch_refusal = (
        args.max_log_range,
        args.max_batch,
        args.batch_refusal,
    )
    proxy.rate_limit_every, proxy.html_503_every = args.rate_limit_every, args.html_503_every
    proxy.lagging, proxy.drop_transactions = args.lagging, args.drop_transactions

    async def serve_forever() -> None:
        await proxy.serve()
        log.info("rpc proxy at %s in front of %s", proxy.url, proxy.upstream)
        try:
            await asyncio.Event().wait()
        finally:
            await proxy.close()

    try:
        asyncio.run(serve_forever())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
