"""The benchmarks' lean HTTP client (bench/posting.py) against a real aiohttp server on loopback: what it
sends is what intake reads, and every answer is counted as what it was."""

import json

import pytest
from aiohttp import web

from bench.posting import post_all
from tests.support.load import SignedMint


def mint(n: int, body: dict | None = None, headers: dict | None = None) -> SignedMint:
    request = {"json": body if body is not None else {"n": n}, "headers": headers or {}}
    return SignedMint(f"0x{n:040x}", "gasless", request, idempotency_key=f"key-{n}")


@pytest.fixture
async def server(unused_tcp_port: int):
    seen: list[tuple[dict, str | None, str | None]] = []

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        seen.append((body, request.headers.get("Idempotency-Key"), request.headers.get("PAYMENT-SIGNATURE")))
        n = body.get("n", 0)
        if n % 5 == 1:
            return web.json_response({"error": "invalid_payment", "message": "no"}, status=402)
        if n % 5 == 2:
            # The server ends the connection after this answer: the client must reconnect.
            return web.json_response({"queueId": f"q{n}"}, status=202, headers={"Connection": "close"})
        return web.json_response({"queueId": f"q{n}"}, status=200 if n % 5 == 3 else 202)

    app = web.Application()
    app.router.add_post("/mint", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", unused_tcp_port).start()
    try:
        yield f"http://127.0.0.1:{unused_tcp_port}", seen
    finally:
        await runner.cleanup()


async def test_every_mint_is_posted_once_with_its_body_and_headers_and_every_answer_counted(server):
    url, seen = server
    mints = [mint(n, headers={"PAYMENT-SIGNATURE": f"sig-{n}"} if n % 2 else None) for n in range(40)]

    posted = await post_all(url, mints, concurrency=4)

    assert sorted(json.dumps(body) for body, _, _ in seen) == sorted(json.dumps({"n": n}) for n in range(40))
    assert {key for _, key, _ in seen} == {f"key-{n}" for n in range(40)}
    assert {sig for _, _, sig in seen} - {None} == {f"sig-{n}" for n in range(40) if n % 2}
    assert sorted(posted.ids) == sorted(f"q{n}" for n in range(40) if n % 5 != 1)
    assert posted.statuses == {"202": 24, "200": 8, "402 invalid_payment": 8}
    assert posted.refused == {"402 invalid_payment": 8}
    assert len(posted.latencies) == 40 and posted.seconds > 0


async def test_a_server_that_is_gone_is_counted_as_refused_connections_not_raised(unused_tcp_port: int):
    posted = await post_all(f"http://127.0.0.1:{unused_tcp_port}", [mint(n) for n in range(3)], 2)

    assert posted.ids == []
    assert posted.statuses == {"connection (ConnectionRefusedError)": 3}
