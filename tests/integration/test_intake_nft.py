"""POST /nft/render and GET /nft/job against real PostgreSQL, Redis and anvil: a paid render is queued
`rendering` with its render job and announced on render.requested (not mint.requested), it costs the
NFT's price whichever way it is paid, and bad render settings are refused before anything is stored."""

import base64
import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from web3 import HTTPProvider, Web3
from x402.http.utils import encode_payment_signature_header
from x402.schemas import PaymentPayload

from devstack.anvil import Anvil
from services.intake.resources import NFT_PAYWALL
from shared import keys, render_jobs
from shared.events import decode
from shared.render_settings import MAX_PIXELS
from tests.support.intake import Intake
from tests.support.payments import pay_by_transfer

Fund = Callable[..., list[LocalAccount]]

RENDER = {
    "name": "Sunset Star",
    "palette": "sunset",
    "shape": "star",
    "seed": 7,
    "frameCount": 8,
    "size": 64,
    "frameDurationMs": 80,
}


def nft_payment(intake: Intake, payer: LocalAccount) -> dict[str, Any]:
    return intake.payment(payer, value=intake.deployment.nft_price)


async def render_gasless(
    intake: Intake, payment: dict[str, Any], render: Any = RENDER, **kwargs: Any
) -> tuple[int, dict[str, Any]]:
    return await intake.post(
        "/nft/render", json={"render": render, "paymentType": "gasless", **payment}, **kwargs
    )


async def stream_ids(intake: Intake, stream: str) -> list[str]:
    """The request ids on this test's `stream`, in order."""
    entries: list[tuple[bytes, dict[bytes, bytes]]] = await intake.redis.xrange(  # type: ignore[assignment]
        intake.settings.keys.stream(stream)
    )
    return [decode(fields[b"event"]).request_id for _, fields in entries]  # type: ignore[union-attr]


def offered_amount(header: str) -> str:
    """The amount a PAYMENT-REQUIRED header asks for (base64 JSON, as x402 clients read it)."""
    return json.loads(base64.b64decode(header))["accepts"][0]["amount"]


# --- accepted renders -----------------------------------------------------------------------------


async def test_gasless_render_is_queued_rendering_with_its_job(intake: Intake, payer: LocalAccount) -> None:
    status, body = await render_gasless(intake, nft_payment(intake, payer))

    assert status == 202, body
    assert body["success"] is True and body["payer"] == payer.address and body["paymentType"] == "gasless"
    assert body["queuePosition"] == 1 and body["estimatedWaitSeconds"] >= 0
    job_id = body["jobId"]
    request = await intake.pool.fetchrow("SELECT * FROM mint_requests WHERE id = $1::uuid", job_id)
    assert (request["status"], request["kind"]) == ("rendering", "nft")
    assert request["amount"] == intake.deployment.nft_price
    job = await intake.pool.fetchrow("SELECT * FROM render_jobs WHERE request_id = $1::uuid", job_id)
    assert job["settings"] == RENDER
    assert (job["status"], job["progress"], job["attempts"]) == ("waiting", 0, 0)
    assert await stream_ids(intake, keys.RENDER_REQUESTED) == [job_id]
    assert await stream_ids(intake, keys.MINT_REQUESTED) == []

    status, body = await intake.get(f"/nft/job/{job_id}")
    assert status == 200
    assert body == {
        "success": True,
        "jobId": job_id,
        "status": "waiting",
        "progress": 0,
        "attempts": 0,
        "imageUrl": None,
        "imageCid": None,
        "metadataUrl": None,
        "metadataCid": None,
        "mintStatus": "rendering",
        "tokenId": None,
        "mintTxHash": None,
        "error": None,
    }


async def test_x402_render_pays_the_nft_price(intake: Intake, payer: LocalAccount) -> None:
    requirements = intake.app[NFT_PAYWALL].requirements
    assert requirements.amount == str(intake.deployment.nft_price)
    header = encode_payment_signature_header(
        PaymentPayload(payload=nft_payment(intake, payer), accepted=requirements)
    )
    status, body = await intake.post(
        "/nft/render", json={"render": RENDER}, headers={"PAYMENT-SIGNATURE": header}
    )

    assert status == 202, body
    assert body["paymentType"] == "x402" and body["payer"] == payer.address
    request = await intake.pool.fetchrow("SELECT * FROM mint_requests WHERE id = $1::uuid", body["jobId"])
    assert (request["status"], request["payment_type"]) == ("rendering", "x402")
    assert request["amount"] == intake.deployment.nft_price
    assert await stream_ids(intake, keys.RENDER_REQUESTED) == [body["jobId"]]


async def test_custom_transfer_of_the_nft_price_is_accepted(
    intake: Intake, payer: LocalAccount, anvil: Anvil
) -> None:
    deployment = intake.deployment
    tx_hash = pay_by_transfer(Web3(HTTPProvider(anvil.rpc_url)), payer, deployment, deployment.nft_price)
    status, body = await intake.post(
        "/nft/render", json={"render": RENDER, "paymentType": "custom", "paymentTxHash": tx_hash}
    )

    assert status == 202, body
    assert body["paymentType"] == "custom" and body["payer"] == payer.address
    request = await intake.pool.fetchrow("SELECT * FROM mint_requests WHERE id = $1::uuid", body["jobId"])
    assert (request["status"], request["kind"]) == ("rendering", "nft")
    assert request["payment_tx_hash"] == tx_hash and request["amount"] == deployment.nft_price
    assert await stream_ids(intake, keys.RENDER_REQUESTED) == [body["jobId"]]


# --- the price ------------------------------------------------------------------------------------


async def test_token_price_does_not_buy_an_nft(intake: Intake, payer: LocalAccount) -> None:
    deployment = intake.deployment
    assert deployment.nft_price != deployment.price
    token_paid = intake.payment(payer, value=deployment.price)
    async with intake.client.post(
        "/nft/render", json={"render": RENDER, "paymentType": "gasless", **token_paid}
    ) as response:
        assert response.status == 402
        header = response.headers["PAYMENT-REQUIRED"]
        body = await response.json()
    assert body["error"] == "underpaid"
    assert offered_amount(header) == str(deployment.nft_price)
    assert body["accepts"][0]["amount"] == str(deployment.nft_price)

    async with intake.client.post("/nft/render", json={"render": RENDER}) as response:
        assert response.status == 402 and (await response.json())["error"] == "payment_required"
        assert offered_amount(response.headers["PAYMENT-REQUIRED"]) == str(deployment.nft_price)
    # The token mint's offer is unchanged.
    async with intake.client.post("/mint") as response:
        assert response.status == 402
        assert offered_amount(response.headers["PAYMENT-REQUIRED"]) == str(deployment.price)
        assert (await response.json())["accepts"][0]["amount"] == str(deployment.price)
    assert await intake.pool.fetchval("SELECT count(*) FROM mint_requests") == 0


async def test_queued_renders_reserve_the_payers_balance(intake: Intake, fund_payers: Fund) -> None:
    [payer] = fund_payers(1, intake.deployment.nft_price)
    first_status, first = await render_gasless(intake, nft_payment(intake, payer))
    second_status, second = await render_gasless(intake, nft_payment(intake, payer))

    assert first_status == 202, first
    assert (second_status, second["error"]) == (402, "insufficient_balance")
    assert await intake.pool.fetchval("SELECT count(*) FROM mint_requests") == 1
    assert await stream_ids(intake, keys.RENDER_REQUESTED) == [first["jobId"]]


# --- refused render settings ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body_render", "status", "code", "field", "reason"),
    [
        pytest.param({**RENDER, "frameCount": 128, "size": 1024}, 422, "invalid_render_settings", "render",
                     str(MAX_PIXELS), id="too-many-pixels"),
        pytest.param({**RENDER, "palette": "rainbow"}, 422, "invalid_render_settings", "render.palette",
                     "'sunset', 'ocean', 'forest', 'mono', 'neon' or 'candy'", id="unknown-palette"),
        pytest.param({**RENDER, "shape": "hexagon"}, 422, "invalid_render_settings", "render.shape",
                     "'circle'", id="unknown-shape"),
        pytest.param({**RENDER, "name": "bell\x07"}, 422, "invalid_render_settings", "render.name",
                     "U+0007", id="control-character-in-name"),
        pytest.param({**RENDER, "colour": "red"}, 422, "invalid_render_settings", "render.colour",
                     "Extra inputs are not permitted", id="unknown-field"),
        pytest.param({**RENDER, "frameCount": "8"}, 422, "invalid_render_settings", "render.frameCount",
                     "valid integer", id="frame-count-as-string"),
        pytest.param(..., 400, "invalid_body", None, "render", id="render-missing"),
        pytest.param(["sunset", "star"], 400, "invalid_body", None, "render", id="render-not-an-object"),
    ],
)  # fmt: skip
async def test_bad_render_settings_are_refused_before_anything_is_stored(
    intake: Intake,
    payer: LocalAccount,
    body_render: Any,
    status: int,
    code: str,
    field: str | None,
    reason: str,
) -> None:
    payment = {"paymentType": "gasless", **nft_payment(intake, payer)}
    body = payment if body_render is ... else {"render": body_render, **payment}
    got_status, got = await intake.post("/nft/render", json=body)

    assert (got_status, got["error"]) == (status, code), got
    assert got["success"] is False and reason in got["message"]
    if field is not None:
        assert got["message"].startswith(f"{field}: ")
        assert got["errors"][0]["field"] == field and reason in got["errors"][0]["message"]
    assert await intake.pool.fetchval("SELECT count(*) FROM mint_requests") == 0
    assert await intake.pool.fetchval("SELECT count(*) FROM render_jobs") == 0
    assert await stream_ids(intake, keys.RENDER_REQUESTED) == []
    assert await stream_ids(intake, keys.MINT_REQUESTED) == []


# --- job status -----------------------------------------------------------------------------------


async def test_job_ids_that_are_not_jobs(intake: Intake) -> None:
    status, body = await intake.get("/nft/job/not-a-uuid")
    assert (status, body["error"]) == (400, "invalid_job_id") and body["message"]
    status, body = await intake.get(f"/nft/job/{uuid.uuid4()}")
    assert (status, body["error"]) == (404, "not_found") and body["message"]


async def test_job_status_follows_the_renderers_cache(intake: Intake, payer: LocalAccount) -> None:
    status, body = await render_gasless(intake, nft_payment(intake, payer))
    assert status == 202, body
    job_id = body["jobId"]
    row = await render_jobs.load(intake.pool, job_id)
    assert row is not None
    cache = render_jobs.JobCache(intake.redis, intake.settings.keys, {"completed": 3})
    await cache.put({**row, "status": "active", "progress": 33, "attempts": 1, "image_cid": "bafyimage"})

    status, body = await intake.get(f"/nft/job/{job_id}")
    assert status == 200
    assert (body["status"], body["progress"], body["attempts"], body["imageCid"]) == (
        "active",
        33,
        1,
        "bafyimage",
    )


# --- idempotency ----------------------------------------------------------------------------------


async def test_idempotency_key_replays_the_same_job(intake: Intake, payer: LocalAccount) -> None:
    payment = nft_payment(intake, payer)
    headers = {"Idempotency-Key": "nft-order-7"}
    first_status, first = await render_gasless(intake, payment, headers=headers)
    async with intake.client.post(
        "/nft/render", json={"render": RENDER, "paymentType": "gasless", **payment}, headers=headers
    ) as response:
        again_status, again = response.status, await response.json()
        replayed = response.headers.get("Idempotent-Replayed")

    assert (first_status, again_status) == (202, 200)
    assert again["jobId"] == first["jobId"] and replayed == "true"
    assert await intake.pool.fetchval("SELECT count(*) FROM render_jobs") == 1
    assert await stream_ids(intake, keys.RENDER_REQUESTED) == [first["jobId"]]
