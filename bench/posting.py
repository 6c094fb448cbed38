"""Posting pre-signed mints to intake from concurrent clients, and waiting for them to end."""

import asyncio
import collections
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import asyncpg

from tests.support.load import SignedMint

TIMEOUT = 60  # seconds a client waits for one answer


@dataclass
class Posted:
    ids: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    # Answers by status ("202", "200", or "<status> <error>" / "connection (<exception>)" if refused).
    statuses: collections.Counter[str] = field(default_factory=collections.Counter)
    seconds: float = 0.0

    @property
    def refused(self) -> dict[str, int]:
        return {k: v for k, v in self.statuses.items() if k not in ("200", "202")}


class Client:
    """One HTTP/1.1 client on one kept-alive connection, as lean as a load generator should be: the
    requests are serialised before the clock starts and only the status line, Content-Length and body
    of an answer are read (aiohttp's client took a quarter of a core at 1,000 requests/s, on the cores
    the measured intake runs on). Reconnects when the server closes the connection."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def post(self, request: bytes) -> tuple[int, bytes]:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        assert self._reader is not None
        try:
            self._writer.write(request)
            head = (await self._reader.readuntil(b"\r\n\r\n")).lower()
            status = int(head[9:12])
            at = head.find(b"\r\ncontent-length:")
            if at < 0:
                raise ValueError("an answer without Content-Length")
            length = int(head[at + 18 : head.index(b"\r\n", at + 2)])
            body = await self._reader.readexactly(length)
        except BaseException:
            self.close()
            raise
        if b"\r\nconnection: close" in head:
            self.close()
        return status, body

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._reader = self._writer = None


def serialised(netloc: str, mint: SignedMint) -> bytes:
    """POST /mint with the mint's body, payment headers and Idempotency-Key, as bytes on the wire."""
    body = json.dumps(mint.request["json"]).encode()
    headers = {
        "Host": netloc,
        "Content-Type": "application/json",
        "Content-Length": str(len(body)),
        "Idempotency-Key": mint.idempotency_key,
        **mint.request.get("headers", {}),
    }
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return f"POST /mint HTTP/1.1\r\n{head}\r\n".encode() + body


async def post_all(url: str, mints: Sequence[SignedMint], concurrency: int) -> Posted:
    """Every mint posted once by `concurrency` clients, each on its own kept-alive connection; a
    refusal is counted, not retried."""
    parts = urlsplit(url)
    host, port = parts.hostname, parts.port
    assert host is not None and port is not None
    todo = [serialised(parts.netloc, mint) for mint in reversed(mints)]
    posted = Posted()

    async def client() -> None:
        connection = Client(host, port)
        try:
            while todo:
                request = todo.pop()
                started = time.perf_counter()
                try:
                    status, body = await asyncio.wait_for(connection.post(request), TIMEOUT)
                except (OSError, asyncio.IncompleteReadError, ValueError, TimeoutError) as exc:
                    posted.latencies.append(time.perf_counter() - started)
                    posted.statuses[f"connection ({type(exc).__name__})"] += 1
                    continue
                posted.latencies.append(time.perf_counter() - started)
                answer = json.loads(body) if body else {}
                if status in (200, 202):
                    posted.ids.append(answer["queueId"])
                    posted.statuses[str(status)] += 1
                else:
                    posted.statuses[f"{status} {answer.get('error')}"] += 1
        finally:
            connection.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    posted.seconds = time.perf_counter() - started
    return posted


async def wait_final(pool: asyncpg.Pool, ids: list[str], stalled_after: float = 120) -> None:
    """Until every request is completed or failed, or none has ended for `stalled_after` seconds."""
    last_open, last_change = None, time.monotonic()
    while True:
        open_count = await pool.fetchval(
            "SELECT count(*) FROM mint_requests WHERE id = ANY($1::uuid[])"
            " AND status NOT IN ('completed', 'failed')",
            ids,
        )
        if open_count != last_open:
            last_open, last_change = open_count, time.monotonic()
        print(f"\r  {open_count} not yet completed   ", end="", file=sys.stderr, flush=True)
        if open_count == 0 or time.monotonic() - last_change > stalled_after:
            print(file=sys.stderr)
            return
        await asyncio.sleep(0.5)
