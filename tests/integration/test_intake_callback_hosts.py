"""Webhooks go only where they should, against real PostgreSQL and real loopback listeners that count
what reaches them: every spelling of this machine refused at acceptance (400, nothing stored), the
check repeated at delivery against the address connected to (DNS rebinding, IP literals), redirects
not followed and a receiver's body read only up to the cap."""

import asyncio
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver
from aiohttp.test_utils import TestServer
from eth_account.signers.local import LocalAccount

from services.intake.callback_hosts import CallbackHosts
from services.intake.callbacks import MAX_RESPONSE_BYTES, Callbacks, webhook_session
from services.intake.settings import IntakeSettings
from tests.integration.test_intake_nft import RENDER
from tests.support.dns import StaticDns
from tests.support.intake import running_intake

Fund = Callable[[int], list[LocalAccount]]
NOTHING_ALLOWED = CallbackHosts()

# Each names this machine; {port} is the counting listener's.
LOOPBACK_HOSTS = [
    "127.0.0.1",
    "127.0.0.1.",
    "localhost",
    "LocalHost.",
    "hooks.localhost",
    "[::1]",
    "0x7f000001",
    "0.0.0.0",
    "[::]",
    "[::ffff:127.0.0.1]",
    "[::127.0.0.1]",
    "[2002:7f00:1::]",
    "[64:ff9b::7f00:1]",
    "2130706433",
    "017700000001",
    "127.1",
    "0177.0.0.1",
    "0x7f.0.0.1",
    # Not loopback, but not public either.
    "10.0.0.1",
    "192.168.1.1",
    "169.254.169.254",
    "100.64.0.1",
    "224.0.0.1",
    "[fe80::1]",
    "[::ffff:169.254.169.254]",
]


@dataclass
class Listener:
    """A webhook receiver on loopback that counts every request reaching it."""

    url: str
    port: int
    hits: list[str]


@asynccontextmanager
async def listener(handler: Callable[..., Any] | None = None) -> AsyncIterator[Listener]:
    hits: list[str] = []

    async def count(request: web.Request) -> web.StreamResponse:
        hits.append(request.path)
        await request.read()
        return await handler(request) if handler else web.Response(status=200)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", count)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield Listener(str(server.make_url("/hook")), server.port or 0, hits)
    finally:
        await server.close()


# --- at acceptance -----------------------------------------------------------------------------------


async def test_every_loopback_spelling_is_refused_at_acceptance(
    settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, fund_payers: Fund
) -> None:
    monkeypatch.delenv("INTAKE_CALLBACK_ALLOW", raising=False)
    payer = fund_payers(1)[0]
    async with listener() as receiver, running_intake(settings_env, monkeypatch) as intake:
        for host in LOOPBACK_HOSTS:
            url = f"http://{host}:{receiver.port}/hook"
            status, body = await intake.gasless(intake.payment(payer), callbackUrl=url)
            assert (status, body["error"]) == (400, "callback_url_not_allowed"), (host, body)
            assert "webhooks go only to public addresses" in body["message"]

            header = intake.payment_header(intake.payment(payer))
            status, body = await intake.post(json={"callbackUrl": url}, headers={"PAYMENT-SIGNATURE": header})
            assert (status, body["error"]) == (400, "callback_url_not_allowed"), (host, body)

        render = intake.payment(payer, value=intake.deployment.nft_price)
        for host in ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]", "0x7f000001"]:
            status, body = await intake.post(
                "/nft/render",
                json={
                    "paymentType": "gasless",
                    **render,
                    "render": RENDER,
                    "callbackUrl": f"http://{host}:{receiver.port}/hook",
                },
            )
            assert (status, body["error"]) == (400, "callback_url_not_allowed"), (host, body)

        assert await intake.pool.fetchval("SELECT count(*) FROM mint_requests") == 0
        assert await intake.pool.fetchval("SELECT count(*) FROM render_jobs") == 0
        # The same payment with a public callback is accepted: only the callback was refused.
        status, body = await intake.gasless(intake.payment(payer), callbackUrl="https://93.184.215.14/hook")
        assert status == 202, body
    assert receiver.hits == []


async def test_allowed_receiver_is_accepted_only_when_listed(
    settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, fund_payers: Fund
) -> None:
    payer = fund_payers(1)[0]
    async with running_intake(settings_env, monkeypatch, intake_callback_allow="localhost") as intake:
        status, body = await intake.gasless(intake.payment(payer), callbackUrl="http://localhost:9/hook")
        assert status == 202, body
        # Listing a name allows that name, not the address under another spelling.
        status, body = await intake.gasless(intake.payment(payer), callbackUrl="http://127.0.0.1:9/hook")
        assert (status, body["error"]) == (400, "callback_url_not_allowed")


# --- at delivery -------------------------------------------------------------------------------------


@pytest.fixture
def settings(settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> IntakeSettings:
    fast = {
        "INTAKE_WEBHOOK_POLL_SECONDS": "0.05",
        "INTAKE_WEBHOOK_BACKOFF_BASE_SECONDS": "0.05",
        "INTAKE_WEBHOOK_BACKOFF_MAX_SECONDS": "0.1",
        "INTAKE_WEBHOOK_MAX_ATTEMPTS": "3",
        "INTAKE_WEBHOOK_TIMEOUT_SECONDS": "5",
    }
    for name, value in {**settings_env, **fast}.items():
        monkeypatch.setenv(name, value)
    return IntakeSettings()  # type: ignore[call-arg]


async def queue_delivery(pool: asyncpg.Pool, url: str) -> int:
    """A completed request with a webhook due to `url`, as if accepted before the host went bad."""
    request_id = uuid.uuid4()
    payer = "0x" + "11" * 20
    await pool.execute(
        "INSERT INTO mint_requests (id, kind, payer_address, payment_type, payment_id, amount,"
        " authorization_data, valid_before, status, callback_url)"
        " VALUES ($1, 'token', $2, 'gasless', $3, 10000, $4, $5, 'completed', $6)",
        request_id,
        payer,
        "0x" + secrets.token_hex(32),
        {"from": payer, "nonce": "0x" + secrets.token_hex(32)},
        int(time.time()) + 3600,
        url,
    )
    return await pool.fetchval(
        "INSERT INTO webhook_deliveries (request_id, event, url, body)"
        " VALUES ($1, 'mint.completed', $2, $3) RETURNING id",
        request_id,
        url,
        {"event": "mint.completed", "queueId": str(request_id)},
    )


async def deliver(
    pool: asyncpg.Pool,
    settings: IntakeSettings,
    delivery_ids: list[int],
    hosts: CallbackHosts = NOTHING_ALLOWED,
    dns: AbstractResolver | None = None,
    timeout: float = 15,
) -> dict[int, tuple[str, list[tuple[int, int | None, str | None]]]]:
    """Run intake's delivery loop until those deliveries settle: {id: (status, attempts)}."""
    stop = asyncio.Event()
    async with webhook_session(settings, hosts, dns) as session:
        callbacks = Callbacks(pool, session, settings, hosts)
        loop = asyncio.create_task(callbacks.deliver_due(stop))
        try:
            deadline = time.monotonic() + timeout
            while await pool.fetchval(
                "SELECT count(*) FROM webhook_deliveries WHERE status = 'pending' AND id = ANY($1)",
                delivery_ids,
            ):
                assert time.monotonic() < deadline, "deliveries did not settle"
                await asyncio.sleep(0.05)
        finally:
            stop.set()
            await loop
    outcome = {}
    for delivery_id in delivery_ids:
        status = await pool.fetchval("SELECT status FROM webhook_deliveries WHERE id = $1", delivery_id)
        rows = await pool.fetch(
            "SELECT attempt, status_code, error FROM webhook_attempts WHERE delivery_id = $1 ORDER BY id",
            delivery_id,
        )
        outcome[delivery_id] = (status, [(r["attempt"], r["status_code"], r["error"]) for r in rows])
    return outcome


async def test_a_name_rebound_to_loopback_is_not_delivered(
    pg_pool: asyncpg.Pool, settings: IntakeSettings
) -> None:
    async with listener() as receiver:
        # Public when the request was accepted; loopback (only) now.
        rebound = await queue_delivery(pg_pool, f"http://rebind.test:{receiver.port}/hook")
        # The same answer for a listed name is delivered: the listener does count.
        listed = await queue_delivery(pg_pool, f"http://hooks.dev.test:{receiver.port}/hook")
        dns = StaticDns({"rebind.test": ["127.0.0.1"], "hooks.dev.test": ["127.0.0.1"]})
        outcome = await deliver(
            pg_pool, settings, [rebound, listed], CallbackHosts.parse("hooks.dev.test"), dns
        )

    status, attempts = outcome[rebound]
    # Refused for good on the first attempt, with the reason: not retried.
    assert status == "failed" and len(attempts) == 1
    [(attempt, code, error)] = attempts
    assert (attempt, code) == (1, None)
    assert error is not None and error.startswith("callback_url_not_allowed: ")
    assert "rebind.test resolves to 127.0.0.1, a loopback address" in error
    assert outcome[listed] == ("delivered", [(1, 200, None)])
    assert receiver.hits == ["/hook"]


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "0x7f000001", "[::ffff:127.0.0.1]", "[::1]", "localhost", "2130706433", "0.0.0.0"]
)
async def test_ip_literals_and_local_names_are_refused_at_delivery(
    pg_pool: asyncpg.Pool, settings: IntakeSettings, host: str
) -> None:
    async with listener() as receiver:
        delivery = await queue_delivery(pg_pool, f"http://{host}:{receiver.port}/hook")
        # The system's own resolver: aiohttp does not consult it for IP literals at all.
        outcome = await deliver(pg_pool, settings, [delivery])
    status, [(attempt, code, error)] = outcome[delivery]
    assert (status, attempt, code) == ("failed", 1, None)
    assert error is not None and error.startswith("callback_url_not_allowed: "), error
    assert receiver.hits == []


async def test_a_redirect_to_a_forbidden_host_is_not_followed(
    pg_pool: asyncpg.Pool, settings: IntakeSettings
) -> None:
    async with listener() as forbidden:

        async def redirect(request: web.Request) -> web.Response:
            raise web.HTTPTemporaryRedirect(forbidden.url)

        async with listener(redirect) as allowed:
            delivery = await queue_delivery(pg_pool, f"http://hooks.dev.test:{allowed.port}/hook")
            dns = StaticDns({"hooks.dev.test": ["127.0.0.1"]})
            outcome = await deliver(pg_pool, settings, [delivery], CallbackHosts.parse("hooks.dev.test"), dns)

    # A redirect is an answer that is not 2xx: retried, to the same URL, then given up.
    status, attempts = outcome[delivery]
    assert status == "failed"
    assert attempts == [(1, 307, "HTTP 307"), (2, 307, "HTTP 307"), (3, 307, "HTTP 307")]
    assert allowed.hits == ["/hook"] * 3
    assert forbidden.hits == []


async def test_a_huge_response_body_is_not_read_past_the_cap(
    pg_pool: asyncpg.Pool, settings: IntakeSettings
) -> None:
    sent = 0
    cut_off = asyncio.Event()

    async def endless(request: web.Request) -> web.StreamResponse:
        # 200 at once, then a body that would take a minute to finish: only the cap ends it early.
        nonlocal sent
        response = web.StreamResponse(status=200)
        response.content_length = 64 * 1024 * 1024
        await response.prepare(request)
        try:
            for _ in range(6000):
                await response.write(b"x" * 8192)
                sent += 8192
                await asyncio.sleep(0.01)
        except ConnectionError:
            pass
        finally:
            # Ended by the client going away (the handler is cancelled or its write fails).
            cut_off.set()
        return response

    async with listener(endless) as receiver:
        delivery = await queue_delivery(pg_pool, f"http://hooks.dev.test:{receiver.port}/hook")
        dns = StaticDns({"hooks.dev.test": ["127.0.0.1"]})
        started = time.monotonic()
        outcome = await deliver(pg_pool, settings, [delivery], CallbackHosts.parse("hooks.dev.test"), dns)
        elapsed = time.monotonic() - started
        await asyncio.wait_for(cut_off.wait(), timeout=5)

    # Delivered on the status alone, well before the 5 s timeout a full read would have run into.
    assert outcome[delivery] == ("delivered", [(1, 200, None)])
    assert elapsed < settings.webhook_timeout_seconds / 2
    assert MAX_RESPONSE_BYTES <= 8192 and sent < 64 * 1024 * 1024 // 10
