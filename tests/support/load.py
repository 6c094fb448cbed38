"""Many paid mints at once, as a crowd of real clients sends them: payments signed before the clock
starts, posted by concurrent clients that retry what a real client retries (a connection refused or
cut, a 5xx, a 429) with the same payment and Idempotency-Key, honouring Retry-After."""

import asyncio
import collections
import random
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from eth_account.signers.local import LocalAccount

from shared.deploy import Deployment
from tests.support.payments import authorize, x402_header

RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class SignedMint:
    """One pre-signed request: what a client posts to /mint, and the key it retries under."""

    payer: str
    kind: str
    request: dict[str, Any]
    idempotency_key: str = field(default_factory=lambda: str(uuid.uuid4()))


def sign_mints(
    payers: Sequence[LocalAccount], deployment: Deployment, per_payer: int, valid_for: int
) -> list[SignedMint]:
    """`per_payer` authorizations from each payer, alternately gasless and x402, shuffled so a payer's
    requests are spread over the run; valid for `valid_for` seconds (the offer's maxTimeoutSeconds)."""
    mints = []
    for payer in payers:
        for i in range(per_payer):
            if i % 2:
                header = x402_header(payer, deployment, valid_for=valid_for)
                request: dict[str, Any] = {"json": {}, "headers": {"PAYMENT-SIGNATURE": header}}
                mints.append(SignedMint(payer.address, "x402", request))
            else:
                payload = authorize(payer, deployment, valid_for=valid_for).payload
                request = {"json": {"paymentType": "gasless", **payload}}
                mints.append(SignedMint(payer.address, "gasless", request))
    random.Random(9).shuffle(mints)
    return mints


@dataclass
class Answer:
    """How a client's request ended: its queue id if intake accepted it (202, or 200 for a retry
    that found the request an earlier attempt had queued), else the last refusal."""

    mint: SignedMint
    queue_id: str | None = None
    status: int | None = None
    error: str | None = None
    attempts: int = 0

    @property
    def accepted(self) -> bool:
        return self.queue_id is not None


@dataclass
class Load:
    answers: list[Answer]
    started: float
    finished: float
    # Every attempt that was retried, by what it met ("503 database_unavailable", "connection").
    retried: collections.Counter[str]

    @property
    def accepted(self) -> list[Answer]:
        return [a for a in self.answers if a.accepted]

    def refused(self) -> collections.Counter[str]:
        return collections.Counter(f"{a.status} {a.error}" for a in self.answers if not a.accepted)

    def replayed(self) -> int:
        """Accepted on a retry that found the queued request (the first attempt's 202 was lost)."""
        return sum(1 for a in self.answers if a.accepted and a.status == 200)


class Clients:
    """`concurrency` clients posting `mints` to intake at `url`; `done` counts the answers so far."""

    def __init__(
        self, url: str, concurrency: int = 64, give_up_after: float = 300, max_wait: float = 2
    ) -> None:
        self.url = url
        self.concurrency = concurrency
        self.give_up_after = give_up_after
        self.max_wait = max_wait
        self.accepted = 0
        self.done = 0
        self.retried: collections.Counter[str] = collections.Counter()

    async def post_all(self, mints: Sequence[SignedMint]) -> Load:
        answers = [Answer(mint) for mint in mints]
        todo: asyncio.Queue[Answer] = asyncio.Queue()
        for answer in answers:
            todo.put_nowait(answer)
        started = time.monotonic()
        timeout = aiohttp.ClientTimeout(total=30)
        connector = aiohttp.TCPConnector(limit=self.concurrency)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:

            async def client() -> None:
                while not todo.empty():
                    await self._post(session, todo.get_nowait())

            await asyncio.gather(*(client() for _ in range(self.concurrency)))
        return Load(answers, started, time.monotonic(), self.retried)

    async def _post(self, session: aiohttp.ClientSession, answer: Answer) -> None:
        mint = answer.mint
        deadline = time.monotonic() + self.give_up_after
        headers = {"Idempotency-Key": mint.idempotency_key, **mint.request.get("headers", {})}
        while True:
            answer.attempts += 1
            wait = min(self.max_wait, 0.1 * 2 ** min(answer.attempts, 6)) * random.uniform(0.5, 1)
            try:
                post = session.post(f"{self.url}/mint", json=mint.request["json"], headers=headers)
                async with post as response:
                    body = await response.json(content_type=None)
                    answer.status, answer.error = response.status, body.get("error")
                    retry_after = response.headers.get("Retry-After")
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                answer.status, answer.error, retry_after = None, f"connection ({type(exc).__name__})", None
            if answer.status in (200, 202):
                answer.queue_id = body["queueId"]
                self.accepted += 1
                break
            if answer.status is not None and answer.status not in RETRIED_STATUSES:
                break  # refused for good: a client would show the error
            if time.monotonic() + wait > deadline:
                break
            self.retried[f"{answer.status} {answer.error}" if answer.status else "connection"] += 1
            if retry_after is not None and retry_after.isdigit():
                wait = min(self.max_wait, float(retry_after))
            await asyncio.sleep(wait)
        self.done += 1
