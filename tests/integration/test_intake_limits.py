"""Intake under abuse, against real PostgreSQL, Redis and anvil: per-client and per-payer rate limits
(429 with Retry-After, before any chain read), invalid signatures cost no chain read, /queue/status
answers from counters, open streams are capped per client, and deep JSON is a 400."""

import asyncio
import base64
import json
import re
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from eth_account import Account
from eth_account.signers.local import LocalAccount

from devstack.anvil import Anvil
from devstack.ports import free_port
from services.intake.counts import STATUS_COUNTS
from services.intake.resources import STATUS_COUNTS as COUNTS_KEY
from tests.support.intake import running_intake

Fund = Callable[[int], list[LocalAccount]]
# The tests send from loopback, which the default exempts from the per-client limits.
NOBODY_EXEMPT = {"intake_rate_exempt_networks": ""}


def assert_rate_limited(status: int, headers: Any, body: dict[str, Any], code: str = "rate_limited") -> None:
    assert (status, body["error"]) == (429, code), body
    assert body["message"]
    assert re.fullmatch(r"[1-9][0-9]*", headers["Retry-After"])


async def test_a_client_over_its_rate_gets_429_but_health_and_metrics_answer(
    settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_intake(
        settings_env,
        monkeypatch,
        **NOBODY_EXEMPT,
        intake_rate_client_burst=5,
        intake_rate_client_per_second=0.01,
    ) as intake:
        for _ in range(5):
            async with intake.client.get("/info") as response:
                assert response.status == 200
        for path in ("/info", "/queue/status", "/mint"):
            async with intake.client.request("POST" if path == "/mint" else "GET", path) as response:
                assert_rate_limited(response.status, response.headers, await response.json())
        assert int(response.headers["Retry-After"]) >= 90  # a token per 100 s
        for _ in range(20):
            for path in ("/health", "/metrics"):
                async with intake.client.get(path) as response:
                    assert response.status == 200, path


async def test_a_payer_over_its_rate_gets_429_and_nothing_is_stored(
    settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, fund_payers: Fund
) -> None:
    busy, other = fund_payers(2)
    async with running_intake(
        settings_env, monkeypatch, intake_rate_payer_burst=2, intake_rate_payer_per_second=0.01
    ) as intake:
        for _ in range(2):
            status, body = await intake.gasless(intake.payment(busy))
            assert status == 202, body
        async with intake.client.post(
            "/mint", json={"paymentType": "gasless", **intake.payment(busy)}
        ) as response:
            assert_rate_limited(response.status, response.headers, await response.json())
        # x402 counts for the same payer.
        async with intake.client.post(
            "/mint", headers={"PAYMENT-SIGNATURE": intake.payment_header(intake.payment(busy))}
        ) as response:
            assert_rate_limited(response.status, response.headers, await response.json())
        stored = await intake.pool.fetchval(
            "SELECT count(*) FROM mint_requests WHERE payer_address = $1", busy.address
        )
        assert stored == 2
        # Forgeries in the busy payer's name cannot spend the other payer's bucket, nor their own.
        status, body = await intake.gasless(intake.payment(other, signer=busy))
        assert (status, body["error"]) == (402, "invalid_signature")
        status, body = await intake.gasless(intake.payment(other))
        assert status == 202, body


class CountingRpc:
    """A JSON-RPC proxy in front of anvil that counts the calls by method."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.calls: Counter[str] = Counter()
        self.port = free_port()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        payload = json.loads(raw)
        for call in payload if isinstance(payload, list) else [payload]:
            self.calls[call["method"]] += 1
        async with self.session.post(
            self.target, data=raw, headers={"Content-Type": "application/json"}
        ) as upstream:
            return web.Response(body=await upstream.read(), content_type="application/json")

    @asynccontextmanager
    async def running(self) -> AsyncIterator["CountingRpc"]:
        app = web.Application()
        app.router.add_post("/", self.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        async with aiohttp.ClientSession() as self.session:
            try:
                yield self
            finally:
                await runner.cleanup()


async def test_an_invalid_signature_costs_no_chain_read(
    settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, fund_payers: Fund, anvil: Anvil
) -> None:
    payer, forger = fund_payers(2)
    async with CountingRpc(anvil.rpc_url).running() as rpc:
        async with running_intake({**settings_env, "RPC_URL": rpc.url}, monkeypatch) as intake:
            before = sum(rpc.calls.values())
            for _ in range(10):
                status, body = await intake.gasless(intake.payment(payer, signer=forger))
                assert (status, body["error"]) == (402, "invalid_signature")
                status, body = await intake.x402(intake.payment(payer, signer=forger))
                assert (status, body["error"]) == (402, "invalid_signature")
            assert sum(rpc.calls.values()) == before
            # The proxy is on the path: a valid payment reads the chain through it.
            status, body = await intake.gasless(intake.payment(payer))
            assert status == 202, body
            assert rpc.calls["eth_call"] > 0


async def test_queue_status_counts_come_from_counters_not_a_scan(
    settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_intake(settings_env, monkeypatch, intake_queue_counts_seconds=0.05) as intake:
        pool = intake.pool

        async def add(count: int, status: str) -> None:
            await pool.execute(
                "INSERT INTO mint_requests (id, payer_address, payment_type, payment_id, amount, status)"
                " SELECT gen_random_uuid(), $1, 'custom', '0x' || md5(random()::text) || i, 1, $2"
                " FROM generate_series(1, $3) i",
                Account.create().address,
                status,
                count,
            )

        async def compare() -> dict[str, int]:
            rows = await pool.fetch("SELECT status, count(*) AS n FROM mint_requests GROUP BY status")
            expected = {row["status"]: row["n"] for row in rows}
            await asyncio.sleep(0.1)
            status, body = await intake.get("/queue/status")
            assert status == 200
            assert body["counts"] == expected
            assert body["queueDepth"] == sum(expected.get(s, 0) for s in ("pending", "batched", "sent"))
            return expected

        await add(30, "pending")
        await add(5, "sent")
        await add(7, "completed")
        await add(2, "failed")
        await compare()
        # Updates in both directions, several rows per statement, and a delete.
        await pool.execute(
            "UPDATE mint_requests SET status = 'completed' WHERE id IN"
            " (SELECT id FROM mint_requests WHERE status = 'pending' LIMIT 10)"
        )
        await pool.execute(
            "UPDATE mint_requests SET status = 'confirmation_failed' WHERE id IN"
            " (SELECT id FROM mint_requests WHERE status = 'completed' LIMIT 3)"
        )
        await pool.execute("UPDATE mint_requests SET status = 'pending' WHERE status = 'confirmation_failed'")
        await pool.execute("UPDATE mint_requests SET published_at = now()")  # no status change
        gone = await pool.fetchval("SELECT id FROM mint_requests WHERE status = 'failed' LIMIT 1")
        await pool.execute("DELETE FROM mint_request_history WHERE request_id = $1", gone)
        await pool.execute("DELETE FROM mint_requests WHERE id = $1", gone)
        assert await compare() == {"pending": 23, "sent": 5, "completed": 14, "failed": 1}

        # However many finished requests there are, the counts read no row of them.
        await add(20_000, "completed")
        await pool.execute("ANALYZE mint_requests")
        plan = "\n".join(row[0] for row in await pool.fetch(f"EXPLAIN {STATUS_COUNTS}"))
        assert not re.search(r"Seq Scan on mint_requests\b", plan), plan
        await compare()

        # Requests never read the table themselves: with it locked, 50 GETs still answer at once.
        intake.app[COUNTS_KEY].max_age = 3600
        await intake.get("/queue/status")
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("LOCK TABLE mint_requests, mint_request_counts IN ACCESS EXCLUSIVE MODE")
            for _ in range(50):
                status, body = await asyncio.wait_for(intake.get("/queue/status"), timeout=2)
                assert status == 200 and body["counts"]["completed"] == 20_014


async def test_open_streams_are_capped_per_client(
    settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_intake(
        settings_env,
        monkeypatch,
        **NOBODY_EXEMPT,
        intake_live_max_streams_per_client=2,
        intake_live_poll_seconds=0.1,
    ) as intake:
        first = await intake.client.get("/events/queue")
        second = await intake.client.get("/events/queue")
        assert (first.status, second.status) == (200, 200)
        async with intake.client.get("/events/queue") as response:
            assert_rate_limited(response.status, response.headers, await response.json(), "too_many_streams")
        first.close()
        # Once the server sees the client left, its place is free again.
        for _ in range(50):
            third = await intake.client.get("/events/queue")
            if third.status == 200:
                break
            third.close()
            await asyncio.sleep(0.1)
        assert third.status == 200
        for response in (second, third):
            response.close()


async def test_deeply_nested_json_is_a_400(
    settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    depth = 100_000
    nested = "[" * depth + "]" * depth
    async with running_intake(settings_env, monkeypatch, intake_max_body_bytes=4 * depth) as intake:
        for path, body in (
            ("/mint", nested),
            ("/mint", '{"paymentType": "gasless", "authorization": ' + nested + "}"),
        ):
            status, answer = await intake.post(path, data=body, headers={"Content-Type": "application/json"})
            assert (status, answer["error"]) == (400, "invalid_json"), (path, answer)
        # Unpaid, a render is answered with its offer whatever the body; paid, the body is read.
        headers = {"Content-Type": "application/json", "PAYMENT-SIGNATURE": "e30="}
        status, answer = await intake.post("/nft/render", data='{"render": ' + nested + "}", headers=headers)
        assert status in (400, 402) and answer["error"] in ("invalid_json", "invalid_payment_header")
        header_depth = 3000
        payment = '{"x402Version": 2, "payload": ' + "[" * header_depth + "]" * header_depth + "}"
        value = base64.b64encode(payment.encode()).decode()
        assert len(value) < 8190
        status, answer = await intake.post(headers={"PAYMENT-SIGNATURE": value})
        assert (status, answer["error"]) == (400, "invalid_payment_header"), answer
        # Still serving.
        status, _ = await intake.get("/queue/status")
        assert status == 200
