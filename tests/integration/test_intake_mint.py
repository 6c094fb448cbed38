"""POST /mint against real PostgreSQL, Redis and anvil: each payment type is accepted only once it is
committed, the official x402 client pays unmodified, and every bad input gets its 4xx code."""

import asyncio
import base64
import os
import time
from collections.abc import Callable
from typing import Any

import asyncpg
import httpx
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from web3 import HTTPProvider, Web3
from x402 import x402Client
from x402.http.clients.httpx import x402_httpx_transport
from x402.http.utils import decode_payment_required_header
from x402.mechanisms.evm.exact import register_exact_evm_client
from x402.mechanisms.evm.signers import EthAccountSigner
from x402.schemas import PaymentRequired
from x402.schemas.v1 import PaymentPayloadV1

from devstack.anvil import DEV_KEYS, Anvil
from devstack.ports import free_port
from services.intake import mint
from services.intake.replay import replay_pending
from services.intake.resources import THROUGHPUT
from services.intake.transfers import transfer_payment_id
from tests.support.intake import Intake, running_intake
from tests.support.payments import settle_directly, transfer_usdc

Fund = Callable[[int], list[LocalAccount]]


async def row(pool: asyncpg.Pool, queue_id: str) -> asyncpg.Record:
    return await pool.fetchrow("SELECT * FROM mint_requests WHERE id = $1::uuid", queue_id)


# --- accepted payments ----------------------------------------------------------------------------


async def test_gasless_mint_is_committed_then_published(intake: Intake, payer: LocalAccount) -> None:
    payment = intake.payment(payer)
    status, body = await intake.gasless(payment, callbackUrl="https://example.com/hook")

    assert status == 202, body
    assert body["success"] is True
    assert body["payer"] == payer.address and body["paymentType"] == "gasless"
    assert body["queuePosition"] == 1 and body["estimatedWaitSeconds"] >= 1
    stored = await row(intake.pool, body["queueId"])
    auth = payment["authorization"]
    nonce = bytes.fromhex(auth["nonce"][2:])
    assert stored["status"] == "pending" and stored["kind"] == "token"
    assert stored["payer_address"] == payer.address
    assert stored["payment_id"] == "0x" + keccak(bytes(12) + bytes.fromhex(payer.address[2:]) + nonce).hex()
    assert stored["amount"] == intake.deployment.price
    assert stored["valid_before"] == int(auth["validBefore"])
    assert stored["callback_url"] == "https://example.com/hook"
    assert stored["authorization_data"] == auth | {
        "to": intake.deployment.treasury,
        "signature": payment["signature"],
    }
    assert await intake.requested_ids() == [body["queueId"]]


async def test_without_payment_answers_402_with_the_x402_offer(intake: Intake) -> None:
    async with intake.client.post("/mint") as response:
        assert response.status == 402
        required = decode_payment_required_header(response.headers["PAYMENT-REQUIRED"])
        body = await response.json()
    assert isinstance(required, PaymentRequired)
    [offer] = required.accepts
    deployment = intake.deployment
    assert (offer.scheme, offer.network, offer.asset) == (
        "exact",
        f"eip155:{deployment.chain_id}",
        deployment.usdc,
    )
    assert (offer.amount, offer.pay_to) == (str(deployment.price), deployment.treasury)
    assert offer.extra == {"name": "USD Coin", "version": "2"} and offer.max_timeout_seconds == 900
    assert body["success"] is False and body["error"] == "payment_required" and body["message"]
    assert body["x402Version"] == 2 and body["accepts"] == [offer.model_dump(mode="json", by_alias=True)]


async def test_official_x402_client_pays_unmodified(intake: Intake, payer: LocalAccount) -> None:
    client = x402Client()
    register_exact_evm_client(client, EthAccountSigner(payer))
    # The SDK pays only assets it knows by default; the local mock USDC must be allowed explicitly.
    client.set_spend_controls({"allowed_assets": True})
    async with httpx.AsyncClient(transport=x402_httpx_transport(client)) as http:
        response = await http.post(intake.url + "mint", json={"callbackUrl": "https://93.184.215.14/hook"})

    assert response.status_code == 202, response.text
    body = response.json()
    assert body["paymentType"] == "x402" and body["payer"] == payer.address
    stored = await row(intake.pool, body["queueId"])
    assert stored["payment_type"] == "x402" and stored["status"] == "pending"
    assert stored["authorization_data"]["from"] == payer.address
    assert stored["callback_url"] == "https://93.184.215.14/hook"


async def test_the_original_front_ends_payer_field_is_accepted(intake: Intake, payer: LocalAccount) -> None:
    """The original queue server's front ends send `{"payer": "0x..."}` with every request: without a
    payment it gets the 402 offer, with one it must name the payment's payer."""
    async with intake.client.post("/mint", json={"payer": payer.address}) as response:
        assert response.status == 402 and "PAYMENT-REQUIRED" in response.headers
        assert (await response.json())["error"] == "payment_required"
    other = Account.create().address
    status, body = await intake.gasless(intake.payment(payer), payer=other)
    assert (status, body["error"]) == (400, "payer_mismatch")
    status, body = await intake.post(
        json={"payer": other}, headers={"PAYMENT-SIGNATURE": intake.payment_header(intake.payment(payer))}
    )
    assert (status, body["error"]) == (400, "payer_mismatch")
    for bad in ("me", payer.address[:-1], payer.address.lower()[:-1] + "G"):
        status, body = await intake.gasless(intake.payment(payer), payer=bad)
        assert (status, body["error"]) == (400, "invalid_payer"), bad
    # Other unknown fields are still refused.
    status, body = await intake.gasless(intake.payment(payer), payer=payer.address, buyer=payer.address)
    assert (status, body["error"]) == (400, "invalid_body")
    assert await intake.pool.fetchval("SELECT count(*) FROM mint_requests") == 0

    status, body = await intake.gasless(intake.payment(payer), payer=payer.address.lower())
    assert status == 202 and body["payer"] == payer.address, body
    status, body = await intake.post(
        json={"payer": payer.address},
        headers={"PAYMENT-SIGNATURE": intake.payment_header(intake.payment(payer))},
    )
    assert status == 202 and body["payer"] == payer.address, body


async def test_x402_v1_x_payment_header_is_accepted(intake: Intake, payer: LocalAccount) -> None:
    payment = intake.payment(payer)
    v1 = PaymentPayloadV1(scheme="exact", network=f"eip155:{intake.deployment.chain_id}", payload=payment)
    header = base64.b64encode(v1.model_dump_json(by_alias=True).encode()).decode()
    status, body = await intake.post(headers={"X-PAYMENT": header})
    assert status == 202 and body["paymentType"] == "x402"


async def test_custom_payment_by_transaction_hash_once_ever(intake: Intake, anvil: Anvil) -> None:
    deployment = intake.deployment
    payer = Account.from_key(DEV_KEYS[4])
    tx_hash = transfer_usdc(Web3(HTTPProvider(anvil.rpc_url)), payer, deployment, deployment.price * 2)

    status, body = await intake.post(json={"paymentType": "custom", "paymentTxHash": tx_hash})
    assert status == 202, body
    assert body["payer"] == payer.address and body["paymentType"] == "custom"
    stored = await row(intake.pool, body["queueId"])
    assert stored["payment_tx_hash"] == tx_hash and stored["payment_log_index"] == 0
    assert stored["payment_id"] == transfer_payment_id(tx_hash, 0)
    assert stored["amount"] == deployment.price * 2 and stored["authorization_data"] is None

    for claimed in ({}, {"payer": payer.address}):
        status, body = await intake.post(
            json={"paymentType": "custom", "paymentTxHash": tx_hash.upper().replace("0X", "0x"), **claimed}
        )
        assert (status, body["error"]) == (409, "payment_replayed")


async def test_custom_payment_problems(
    settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, anvil: Anvil
) -> None:
    async with running_intake(settings_env, monkeypatch, intake_custom_payment_confirmations=3) as intake:
        deployment = intake.deployment
        w3 = Web3(HTTPProvider(anvil.rpc_url))
        payer = Account.from_key(DEV_KEYS[5])

        async def custom(tx_hash: str, **extra: Any) -> tuple[int, str]:
            status, body = await intake.post(
                json={"paymentType": "custom", "paymentTxHash": tx_hash, **extra}
            )
            return status, body.get("error") or body["paymentType"]

        assert await custom("0x" + "ab" * 32) == (402, "payment_not_found")
        short = transfer_usdc(w3, payer, deployment, deployment.price - 1)
        elsewhere = transfer_usdc(w3, payer, deployment, to=Account.create().address)
        reverted = transfer_usdc(w3, payer, deployment, 10**30, gas=100_000)
        good = transfer_usdc(w3, payer, deployment)
        assert await custom(good) == (402, "payment_unconfirmed")
        w3.provider.make_request("anvil_mine", [2])  # type: ignore[arg-type]
        assert await custom(short) == (402, "underpaid")
        assert await custom(elsewhere) == (402, "payment_transfer_missing")
        assert await custom(reverted) == (402, "payment_failed")
        assert await custom(good, payer=Account.create().address) == (400, "payer_mismatch")
        assert await custom(good, payer=payer.address) == (202, "custom")


# --- refused payments -----------------------------------------------------------------------------


async def test_each_bad_authorization_gets_its_code(intake: Intake, payer: LocalAccount) -> None:
    deployment = intake.deployment
    now = int(time.time())
    cases: list[tuple[dict[str, Any], dict[str, Any], int, str]] = [
        ({"value": deployment.price - 1}, {}, 402, "underpaid"),
        ({"to": Account.create().address}, {}, 402, "wrong_recipient"),
        ({"valid_before": now - 1}, {}, 402, "authorization_expired"),
        ({"valid_after": now + 600}, {}, 402, "authorization_not_yet_valid"),
        ({"valid_before": now + 30}, {}, 402, "authorization_expires_too_soon"),
        ({"signer": Account.create()}, {}, 402, "invalid_signature"),
        ({"chain_id": 1}, {}, 402, "invalid_signature"),
        ({"value": 10**12}, {}, 402, "insufficient_balance"),
        ({}, {"network": "eip155:1"}, 402, "wrong_network"),
        ({}, {"asset": Account.create().address}, 402, "wrong_asset"),
        ({}, {"scheme": "upto"}, 402, "unsupported_scheme"),
    ]
    for sign_args, accepted, status, code in cases:
        payment = intake.payment(payer, **sign_args)
        for got_status, body in (await intake.x402(payment, **accepted), await intake.gasless(payment)):
            if accepted and body.get("paymentType") == "gasless":
                continue  # envelope fields exist only in x402; the gasless twin is fine
            assert (got_status, body["error"]) == (status, code), (sign_args, accepted, body)
            assert body["success"] is False and body["message"]
    assert await intake.pool.fetchval("SELECT count(*) FROM mint_requests WHERE status = 'pending'") == 3


async def test_402_refusals_carry_the_offer(intake: Intake, payer: LocalAccount) -> None:
    payment = intake.payment(payer, value=1)
    async with intake.client.post(
        "/mint", headers={"PAYMENT-SIGNATURE": intake.payment_header(payment)}
    ) as response:
        assert response.status == 402
        required = decode_payment_required_header(response.headers["PAYMENT-REQUIRED"])
        assert required.error == "underpaid" and (await response.json())["error"] == "underpaid"


async def test_a_payment_mints_once(intake: Intake, payer: LocalAccount) -> None:
    payment = intake.payment(payer)
    assert (await intake.gasless(payment))[0] == 202
    for status, body in (await intake.gasless(payment), await intake.x402(payment)):
        assert (status, body["error"]) == (409, "payment_replayed")
    assert await intake.pool.fetchval("SELECT count(*) FROM mint_requests") == 1


async def test_authorization_already_used_on_chain_is_a_replay(
    intake: Intake, payer: LocalAccount, anvil: Anvil
) -> None:
    deployment = intake.deployment
    payment = intake.payment(payer)
    w3 = Web3(HTTPProvider(anvil.rpc_url))
    relayer = Account.from_key(DEV_KEYS[6])
    settled = settle_directly(w3, deployment, payment["authorization"], payment["signature"], relayer)
    assert settled["status"] == 1

    status, body = await intake.gasless(payment)
    assert (status, body["error"]) == (409, "payment_replayed")


async def test_balance_covers_queued_authorizations_even_when_racing(
    intake: Intake, fund_payers: Fund
) -> None:
    deployment = intake.deployment
    [payer] = fund_payers(1)
    balance = deployment.price * 10  # what fund_payers gives
    # Two authorizations of 60 % of the balance each: whichever commits first, the other cannot fit.
    value = balance * 6 // 10
    payments = [intake.payment(payer, value=value) for _ in range(2)]
    results = await asyncio.gather(*(intake.gasless(payment) for payment in payments))
    assert sorted(status for status, _ in results) == [202, 402]
    assert [body["error"] for status, body in results if status == 402] == ["insufficient_balance"]
    assert await intake.pool.fetchval("SELECT count(*) FROM mint_requests") == 1


async def test_many_payers_at_once_all_get_distinct_positions(intake: Intake, fund_payers: Fund) -> None:
    payers = fund_payers(20)
    results = await asyncio.gather(*(intake.gasless(intake.payment(p)) for p in payers))
    assert [status for status, _ in results] == [202] * 20
    # Counted inside each insert's transaction, so concurrent ones may not see each other yet...
    assert all(1 <= body["queuePosition"] <= 20 for _, body in results)
    # ...but once all are committed, every item has its own place in the queue.
    positions = [
        (await intake.get(f"/queue/item/{body['queueId']}"))[1]["item"]["queue_position"]
        for _, body in results
    ]
    assert sorted(positions) == list(range(1, 21))
    assert sorted(await intake.requested_ids()) == sorted(body["queueId"] for _, body in results)


# --- idempotency ----------------------------------------------------------------------------------


async def test_idempotency_key_returns_the_same_item(intake: Intake, payer: LocalAccount) -> None:
    payment = intake.payment(payer)
    headers = {"Idempotency-Key": "order-42"}
    first_status, first = await intake.gasless(payment, headers=headers)
    again_status, again = await intake.gasless(payment, headers=headers)
    assert (first_status, again_status) == (202, 200)
    assert again == first
    other = intake.payment(payer)
    status, body = await intake.gasless(other, headers=headers)
    assert (status, body["error"]) == (422, "idempotency_key_reused")
    assert await intake.pool.fetchval("SELECT count(*) FROM mint_requests") == 1
    assert len(await intake.requested_ids()) == 1


async def test_racing_posts_with_one_idempotency_key_make_one_mint(
    intake: Intake, payer: LocalAccount
) -> None:
    payment = intake.payment(payer)
    headers = {"Idempotency-Key": "race-1"}
    results = await asyncio.gather(*(intake.gasless(payment, headers=headers) for _ in range(6)))
    assert sorted(status for status, _ in results) == [200] * 5 + [202]
    assert len({body["queueId"] for _, body in results}) == 1
    assert await intake.pool.fetchval("SELECT count(*) FROM mint_requests") == 1
    assert len(await intake.requested_ids()) == 1


# --- malformed input ------------------------------------------------------------------------------


async def test_malformed_input_is_a_4xx_json_never_a_500(intake: Intake, payer: LocalAccount) -> None:
    good = intake.payment(payer)
    bad_address = {**good, "authorization": {**good["authorization"], "from": "0x123"}}
    json_type = {"Content-Type": "application/json"}
    requests: list[tuple[str, str, dict[str, Any], int, str]] = [
        ("POST", "/mint", {"data": "{not json", "headers": json_type}, 400, "invalid_json"),
        ("POST", "/mint", {"data": b"\xff\xfe", "headers": json_type}, 400, "invalid_json"),
        (
            "POST",
            "/mint",
            {"data": "paymentType=gasless", "headers": {"Content-Type": "text/plain"}},
            415,
            "unsupported_media_type",
        ),
        ("POST", "/mint", {"json": [1, 2]}, 400, "invalid_body"),
        ("POST", "/mint", {"json": {"paymentType": "iou"}}, 400, "invalid_body"),
        ("POST", "/mint", {"json": {"paymentType": "gasless"}}, 400, "invalid_body"),
        ("POST", "/mint", {"json": {"paymentType": "gasless", **bad_address}}, 400, "invalid_address"),
        (
            "POST",
            "/mint",
            {"json": {"paymentType": "gasless", **good, "signature": "0x12"}},
            400,
            "invalid_signature",
        ),
        (
            "POST",
            "/mint",
            {"json": {"paymentType": "gasless", **good, "callbackUrl": "javascript:alert(1)"}},
            400,
            "invalid_body",
        ),
        ("POST", "/mint", {"json": {"paymentType": "custom", "paymentTxHash": "0xabc"}}, 400, "invalid_body"),
        (
            "POST",
            "/mint",
            {"json": {"paymentType": "custom", "paymentTxHash": "0x" + "ab" * 32, "payer": "me"}},
            400,
            "invalid_payer",
        ),
        (
            "POST",
            "/mint",
            {"json": {"paymentType": "gasless", **good}, "headers": {"Idempotency-Key": "has space"}},
            400,
            "invalid_idempotency_key",
        ),
        ("POST", "/mint", {"headers": {"PAYMENT-SIGNATURE": "!!!"}}, 400, "invalid_payment_header"),
        (
            "POST",
            "/mint",
            {"headers": {"X-PAYMENT": base64.b64encode(b'{"x402Version": 9}').decode()}},
            400,
            "invalid_payment_header",
        ),
        (
            "POST",
            "/mint",
            {
                "json": {"paymentType": "gasless", **good},
                "headers": {"PAYMENT-SIGNATURE": intake.payment_header(good)},
            },
            400,
            "conflicting_payment",
        ),
        ("POST", "/mint", {"data": "x" * (65 * 1024), "headers": json_type}, 413, "payload_too_large"),
        ("GET", "/mint", {}, 405, "method_not_allowed"),
        ("DELETE", "/queue/status", {}, 405, "method_not_allowed"),
        ("GET", "/nowhere", {}, 404, "not_found"),
        ("GET", "/queue/payer/0xnot-an-address", {}, 400, "invalid_address"),
        ("GET", "/queue/item/42", {}, 400, "invalid_queue_id"),
        ("GET", "/queue/item/00000000-0000-4000-8000-000000000000", {}, 404, "not_found"),
    ]
    for method, path, kwargs, status, code in requests:
        async with intake.client.request(method, path, **kwargs) as response:
            assert response.content_type == "application/json", (path, kwargs)
            body = await response.json()
            assert (response.status, body.get("error")) == (status, code), (method, path, kwargs, body)
            assert body["success"] is False and isinstance(body["message"], str) and body["message"]
    assert await intake.pool.fetchval("SELECT count(*) FROM mint_requests") == 0
    async with intake.client.get("/metrics") as response:
        assert 'status="500"' not in await response.text()


# --- after the commit -----------------------------------------------------------------------------


async def test_publish_failure_after_commit_still_accepts(
    intake: Intake, payer: LocalAccount, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def redis_is_down(*args: Any, **kwargs: Any) -> str:
        raise ConnectionError("redis is down")

    monkeypatch.setattr(mint, "publish", redis_is_down)
    status, body = await intake.gasless(intake.payment(payer))

    assert status == 202, body
    assert (await row(intake.pool, body["queueId"]))["status"] == "pending"
    assert body["queueId"] not in await intake.requested_ids()
    # The replay (here run by hand, as the stale sweep would) publishes it from PostgreSQL.
    assert await replay_pending(intake.pool, intake.redis, intake.settings) == 1
    assert await intake.requested_ids() == [body["queueId"]]


# --- status pages ---------------------------------------------------------------------------------


async def test_status_pages(intake: Intake, fund_payers: Fund) -> None:
    payers = fund_payers(2)
    ids = []
    for payer in (payers[0], payers[0], payers[1]):
        status, body = await intake.gasless(intake.payment(payer))
        assert status == 202
        ids.append(body["queueId"])
    await intake.pool.execute(
        "UPDATE mint_requests SET status = 'completed', mint_tx_hash = $2, processed_at = now()"
        " WHERE id = $1::uuid",
        ids[0],
        "0x" + "cd" * 32,
    )

    status, body = await intake.get("/queue/status")
    assert status == 200
    assert body["counts"] == {"pending": 2, "completed": 1} and body["queueDepth"] == 2

    status, body = await intake.get(f"/queue/payer/{payers[0].address.lower()}")
    assert status == 200 and body["payer"] == payers[0].address
    assert [item["id"] for item in body["items"]] == [ids[1], ids[0]]
    assert body["counts"] == {"pending": 1, "completed": 1}

    status, body = await intake.get(f"/queue/item/{ids[0]}")
    item = body["item"]
    assert set(item) == {
        "id", "payer_address", "status", "queue_position", "created_at", "updated_at", "processed_at",
        "mint_tx_hash", "error_message", "retry_count", "payment_type",
    }  # fmt: skip
    assert (item["status"], item["queue_position"], item["mint_tx_hash"]) == (
        "completed",
        None,
        "0x" + "cd" * 32,
    )
    assert item["processed_at"] and item["retry_count"] == 0 and item["payment_type"] == "gasless"
    status, body = await intake.get(f"/queue/item/{ids[2]}")
    assert body["item"]["queue_position"] == 2

    status, body = await intake.get("/info")
    deployment = intake.deployment
    assert (body["chainId"], body["token"], body["usdc"]) == (
        deployment.chain_id,
        deployment.token,
        deployment.usdc,
    )
    assert body["treasury"] == deployment.treasury and body["price"] == str(deployment.price)
    assert (
        body["paymentTypes"] == ["x402", "gasless", "custom"]
        and body["x402"]["accepts"][0]["scheme"] == "exact"
    )
    assert body["nft"]["contract"] == deployment.nft
    assert body["nft"]["price"] == body["nft"]["x402"]["accepts"][0]["amount"] == str(deployment.nft_price)

    async with intake.client.get("/metrics") as response:
        text = await response.text()
    assert 'mintline_mints_accepted_total{payment_type="gasless"}' in text
    assert 'mintline_intake_http_requests_total{method="POST",route="/mint",status="202"}' in text


async def test_health_reports_each_dependency(intake: Intake, monkeypatch: pytest.MonkeyPatch) -> None:
    status, body = await intake.get("/health")
    assert (status, body["checks"]) == (200, {"postgres": "ok", "redis": "ok", "rpc": "ok"})

    async def redis_is_down() -> bool:
        raise ConnectionError("redis is down")

    monkeypatch.setattr(intake.redis, "ping", redis_is_down)
    status, body = await intake.get("/health")
    assert status == 503 and body["error"] == "unhealthy"
    assert body["checks"] == {"postgres": "ok", "redis": "failing", "rpc": "ok"}


async def test_a_slow_minute_after_an_outage_still_accepts_a_900_s_payment(
    settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, fund_payers: Fund
) -> None:
    # Right after an RPC outage: two completions 40 s apart (0.05 mints/s, a measure with min_sample 2)
    # and 1,000 requests waiting. At that rate the next payer would wait 20,000 s and every x402
    # payment signed for the offer's 900 s would be refused; the batcher drains the queue at its
    # capacity (INTAKE_CAPACITY_MINTS_PER_SECOND, 50/s by default) once the chain answers: 20 s.
    async with running_intake(settings_env, monkeypatch, intake_throughput_min_sample=2) as intake:
        for age in (0, 40):
            await intake.pool.execute(
                "INSERT INTO mint_requests"
                " (id, payer_address, payment_type, payment_id, amount, status, processed_at)"
                " VALUES (gen_random_uuid(), $1, 'custom', $2, 1, 'completed',"
                "         now() - make_interval(secs => $3))",
                Account.create().address,
                "0x" + os.urandom(32).hex(),
                age,
            )
        waiting = 1000
        await intake.pool.execute(
            "INSERT INTO mint_requests (id, payer_address, payment_type, payment_id, amount, status)"
            " SELECT gen_random_uuid(), $1, 'custom', payment_id, 1, 'pending' FROM unnest($2::text[])"
            " AS payment_id",
            Account.create().address,
            ["0x" + os.urandom(32).hex() for _ in range(waiting)],
        )
        await intake.app[THROUGHPUT].refresh(intake.pool)
        status, body = await intake.get("/queue/status")
        assert body["throughput"]["completedLastMinute"] == 2
        assert body["throughput"]["mintsPerSecond"] == intake.settings.capacity_mints_per_second == 50
        assert body["queueDepth"] == waiting and body["estimatedWaitSeconds"] == 21

        payer = fund_payers(1)[0]
        status, body = await intake.x402(intake.payment(payer))  # valid for the offer's 900 s
        assert status == 202, body
        assert body["queuePosition"] == waiting + 1 and body["estimatedWaitSeconds"] == 21
        # One that cannot outlast the wait and the 60 s margin is still refused.
        status, body = await intake.x402(intake.payment(payer, valid_before=int(time.time()) + 70))
        assert (status, body["error"]) == (402, "authorization_expires_too_soon")


async def test_rpc_outage_is_a_503_json_not_a_500(
    settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, fund_payers: Fund
) -> None:
    payer = fund_payers(1)[0]
    dead_rpc = {"RPC_URL": f"http://127.0.0.1:{free_port()}"}
    async with running_intake({**settings_env, **dead_rpc}, monkeypatch) as intake:
        status, body = await intake.gasless(intake.payment(payer))
        assert (status, body["error"]) == (503, "chain_unavailable")
        status, body = await intake.get("/health")
        assert status == 503 and body["checks"] == {"postgres": "ok", "redis": "ok", "rpc": "failing"}
        assert await intake.pool.fetchval("SELECT count(*) FROM mint_requests") == 0
