"""Helpers for the intake integration tests (no tests here): a running intake app on a real port and
payers' authorizations signed with eth_account, as a wallet would."""

import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

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

AUTHORIZATION_TYPES = {
    "TransferWithAuthorization": [
        {"name": "from", "type": "address"},
        {"name": "to", "type": "address"},
        {"name": "value", "type": "uint256"},
        {"name": "validAfter", "type": "uint256"},
        {"name": "validBefore", "type": "uint256"},
        {"name": "nonce", "type": "bytes32"},
    ]
}


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
        return await self.post(headers={"PAYMENT-SIGNATURE": x402_header(self, payment, **accepted)})

    async def requested_ids(self) -> list[str]:
        """The request ids on this test's mint.requested stream, in order."""
        entries = await self.redis.xrange(self.settings.keys.stream(keys.MINT_REQUESTED))
        return [decode(fields[b"event"]).request_id for _, fields in entries]  # type: ignore[union-attr]


@asynccontextmanager
async def running_intake(
    settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, **overrides: Any
) -> AsyncIterator[Intake]:
    """Intake on a free loopback port, configured from the environment like `python -m services.intake`."""
    for name, value in {**settings_env, **{k.upper(): str(v) for k, v in overrides.items()}}.items():
        monkeypatch.setenv(name, value)
    settings = IntakeSettings()  # type: ignore[call-arg]
    client = TestClient(TestServer(create_app(settings)))
    await client.start_server()
    try:
        yield Intake(client.app, client, settings, settings.deployment)  # type: ignore[arg-type]
    finally:
        await client.close()


def sign_authorization(
    payer: LocalAccount,
    deployment: Deployment,
    *,
    value: int | None = None,
    to: str | None = None,
    valid_after: int = 0,
    valid_before: int | None = None,
    signer: LocalAccount | None = None,
    chain_id: int | None = None,
) -> dict[str, Any]:
    """{"authorization", "signature"} as a gasless body or an x402 payload carries them."""
    message = {
        "from": payer.address,
        "to": to or deployment.treasury,
        "value": deployment.price if value is None else value,
        "validAfter": valid_after,
        "validBefore": int(time.time()) + 900 if valid_before is None else valid_before,
        "nonce": os.urandom(32),
    }
    domain = {
        "name": deployment.usdc_name,
        "version": deployment.usdc_version,
        "chainId": chain_id or deployment.chain_id,
        "verifyingContract": deployment.usdc,
    }
    signature = (signer or payer).sign_typed_data(domain, AUTHORIZATION_TYPES, message).signature
    authorization = {k: str(v) for k, v in message.items() if k != "nonce"} | {
        "nonce": "0x" + message["nonce"].hex()
    }
    return {"authorization": authorization, "signature": "0x" + signature.hex()}


def x402_header(intake: Intake, payment: dict[str, Any], **accepted: Any) -> str:
    """A PAYMENT-SIGNATURE value for `payment`, accepting intake's offer (fields overridable)."""
    requirements = intake.app[PAYWALL].requirements.model_copy(update=accepted)
    return encode_payment_signature_header(PaymentPayload(payload=payment, accepted=requirements))
