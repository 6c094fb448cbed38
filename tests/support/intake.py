"""A running intake for the integration tests: the app on a real loopback port, or its process."""

import asyncio
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from eth_account.signers.local import LocalAccount
from redis.asyncio import Redis
from x402.http.utils import encode_payment_signature_header
from x402.schemas import PaymentPayload

from services.intake.app import create_app
from services.intake.resources import PAYWALL, POOL, REDIS
from services.intake.settings import IntakeSettings
from shared import keys
from shared.deploy import Deployment
from shared.events import decode
from tests.support.payments import authorize


@dataclass
class Intake:
    app: web.Application
    client: TestClient
    settings: IntakeSettings
    deployment: Deployment

    @property
    def url(self) -> str:
        return str(self.client.make_url("/"))

    @property
    def pool(self) -> asyncpg.Pool:
        return self.app[POOL]

    @property
    def redis(self) -> Redis:
        return self.app[REDIS]

    def payment(self, payer: LocalAccount, **terms: Any) -> dict[str, Any]:
        """{"authorization", "signature"} from `payer`, signed as a wallet answering this intake's offer
        does (valid for its maxTimeoutSeconds); terms as `tests.support.payments.authorize`."""
        terms.setdefault("valid_for", self.settings.max_timeout_seconds)
        return authorize(payer, self.deployment, **terms).payload

    def payment_header(self, payment: dict[str, Any], **accepted: Any) -> str:
        """A PAYMENT-SIGNATURE value for `payment`, accepting this intake's offer (fields overridable)."""
        requirements = self.app[PAYWALL].requirements.model_copy(update=accepted)
        return encode_payment_signature_header(PaymentPayload(payload=payment, accepted=requirements))

    async def post(self, path: str = "/mint", **kwargs: Any) -> tuple[int, dict[str, Any]]:
        async with self.client.post(path, **kwargs) as response:
            return response.status, await response.json()

    async def get(self, path: str) -> tuple[int, dict[str, Any]]:
        async with self.client.get(path) as response:
            return response.status, await response.json()

    async def gasless(self, payment: dict[str, Any], **extra: Any) -> tuple[int, dict[str, Any]]:
        headers = extra.pop("headers", None)
        return await self.post(json={"paymentType": "gasless", **payment, **extra}, headers=headers)

    async def x402(self, payment: dict[str, Any], **accepted: Any) -> tuple[int, dict[str, Any]]:
        return await self.post(headers={"PAYMENT-SIGNATURE": self.payment_header(payment, **accepted)})

    async def requested_ids(self) -> list[str]:
        """The request ids on this test's mint.requested stream, in order."""
        entries = await self.redis.xrange(self.settings.keys.stream(keys.MINT_REQUESTED))
        return [decode(fields[b"event"]).request_id for _, fields in entries]  # type: ignore[union-attr]


@asynccontextmanager
async def running_intake(
    settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, **overrides: Any
) -> AsyncIterator[Intake]:
    """Intake on a free loopback port, configured from the environment like `python -m services.intake`.

    The tests send from loopback, which is exempt from the per-client limits by default; the per-payer
    limit is raised out of the way here, and a test of the limits sets its own."""
    limits = {"INTAKE_RATE_PAYER_PER_SECOND": "10000", "INTAKE_RATE_PAYER_BURST": "10000"}
    overridden = {k.upper(): str(v) for k, v in overrides.items()}
    for name, value in {**limits, **settings_env, **overridden}.items():
        monkeypatch.setenv(name, value)
    settings = IntakeSettings()  # type: ignore[call-arg]
    client = TestClient(TestServer(create_app(settings)))
    await client.start_server()
    try:
        # The start-up replay republishes every pending row; a test posting while it runs would see
        # its requests twice on the stream (harmless, but not what the stream assertions expect).
        marker = settings.keys.alive(keys.INTAKE)
        deadline = time.monotonic() + 10
        while not await client.app[REDIS].exists(marker) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        yield Intake(client.app, client, settings, settings.deployment)  # type: ignore[arg-type]
    finally:
        await client.close()


async def wait_healthy(url: str, process: subprocess.Popen[bytes], timeout: float = 30) -> bool:
    """Whether intake's process at `url` answers /health with 200 before it exits or `timeout` passes."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline and process.poll() is None:
            try:
                async with session.get(f"{url}/health") as response:
                    if response.status == 200:
                        return True
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    return False
