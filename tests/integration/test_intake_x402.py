"""x402 v2 as the spec and the official clients see it, against real PostgreSQL, Redis and anvil: every
402 names the resource asked for, an unpaid render gets the offer whatever its body, the
payment-identifier extension is an Idempotency-Key, and both official clients (the Python SDK and the
TypeScript @x402/fetch + @x402/evm, run by node) pay unmodified."""

import asyncio
import base64
import json
import os
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from eth_account.signers.local import LocalAccount
from web3 import HTTPProvider, Web3
from x402 import x402Client
from x402.extensions.payment_identifier import (
    PAYMENT_IDENTIFIER,
    append_payment_identifier_to_extensions,
    declare_payment_identifier_extension,
)
from x402.http.clients.httpx import x402_httpx_transport
from x402.http.utils import decode_payment_required_header, encode_payment_signature_header
from x402.mechanisms.evm.exact import register_exact_evm_client
from x402.mechanisms.evm.signers import EthAccountSigner
from x402.schemas import PaymentPayload, PaymentRequired, ResourceInfo

from devstack.anvil import Anvil
from services.intake.resources import NFT_PAYWALL, PAYWALL
from shared.deploy import Deployment, load_artifact
from tests.support.intake import Intake
from tests.support.payments import usdc_contract
from tests.support.requests import wait_final

REPO = Path(__file__).resolve().parents[2]
CLIENT_SCRIPT = REPO / "tests" / "support" / "x402_client.mjs"
RENDER = {
    "name": "Paid Twice",
    "palette": "ocean",
    "shape": "circle",
    "seed": 3,
    "frameCount": 4,
    "size": 32,
    "frameDurationMs": 80,
}
DESCRIPTIONS = {
    "/mint": "a mint of the token, queued for a batch",
    "/nft/render": "an NFT: its animated GIF rendered and pinned to IPFS, then minted",
}


def paid_header(intake: Intake, payment: dict[str, Any], path: str = "/mint", key: str | None = None) -> str:
    """A PAYMENT-SIGNATURE for `payment` answering the offer of `path`, with a payment-identifier
    `key` if given."""
    paywall = intake.app[NFT_PAYWALL if path.startswith("/nft/") else PAYWALL]
    extensions = {PAYMENT_IDENTIFIER: declare_payment_identifier_extension()}
    if key is not None:
        # As the SDK's append_payment_identifier_to_extensions adds it (which refuses a bad id).
        extensions[PAYMENT_IDENTIFIER]["info"]["id"] = key
    return encode_payment_signature_header(
        PaymentPayload(payload=payment, accepted=paywall.requirements, extensions=extensions)
    )


async def offer(intake: Intake, path: str, **kwargs: Any) -> tuple[int, PaymentRequired, dict[str, Any]]:
    async with intake.client.post(path, **kwargs) as response:
        required = decode_payment_required_header(response.headers["PAYMENT-REQUIRED"])
        assert isinstance(required, PaymentRequired)
        return response.status, required, await response.json()


# --- the 402 ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/mint", "/nft/render"])
async def test_every_402_names_the_resource_requested(intake: Intake, payer: LocalAccount, path: str) -> None:
    price = intake.deployment.nft_price if path == "/nft/render" else intake.deployment.price
    underpaid = intake.payment(payer, value=price - 1)
    body = {"render": RENDER} if path == "/nft/render" else {}
    requests = [
        ({}, "payment_required"),
        ({"headers": {"PAYMENT-SIGNATURE": paid_header(intake, underpaid, path)}, "json": body}, "underpaid"),
    ]
    for kwargs, code in requests:
        status, required, body = await offer(intake, path + "?ref=newsletter", **kwargs)
        assert (status, required.error, body["error"]) == (402, code, code)
        expected = {"url": intake.url.rstrip("/") + path, "description": DESCRIPTIONS[path]}
        assert required.resource == ResourceInfo(**expected, mime_type="application/json")
        assert body["resource"] == {**expected, "mimeType": "application/json"}
        assert body["extensions"] == {PAYMENT_IDENTIFIER: declare_payment_identifier_extension()}
        assert required.accepts[0].amount == str(price)

    # The url is the one the client asked for: its Host, not where intake thinks it runs.
    _, required, _ = await offer(intake, path, headers={"Host": "shop.example:8443"})
    assert required.resource is not None and required.resource.url == f"http://shop.example:8443{path}"


async def test_info_offers_name_their_resources(intake: Intake) -> None:
    status, info = await intake.get("/info")
    assert status == 200
    base = intake.url.rstrip("/")
    assert info["x402"]["resource"]["url"] == f"{base}/mint"
    assert info["nft"]["x402"]["resource"]["url"] == f"{base}/nft/render"


@pytest.mark.parametrize(
    "request_kwargs",
    [
        pytest.param({}, id="no-body"),
        pytest.param({"json": {}}, id="empty-object"),
        pytest.param({"json": {"paymentType": "x402"}}, id="x402-body-without-header"),
        pytest.param({"json": {"render": {**RENDER, "palette": "rainbow"}}}, id="invalid-render"),
        pytest.param({"json": {"render": "star"}}, id="render-not-an-object"),
        pytest.param({"json": {"render": RENDER, "colour": "red"}}, id="unknown-field"),
        pytest.param({"json": ["render"]}, id="not-an-object"),
        pytest.param(
            {"data": b"{not json", "headers": {"Content-Type": "application/json"}}, id="invalid-json"
        ),
        pytest.param({"data": b"render=star", "headers": {"Content-Type": "text/plain"}}, id="not-json"),
        pytest.param({"json": {"paymentType": "bitcoin", "render": RENDER}}, id="unknown-payment-type"),
    ],
)
async def test_unpaid_render_gets_the_nft_offer_whatever_its_body(
    intake: Intake, request_kwargs: dict[str, Any]
) -> None:
    status, required, body = await offer(intake, "/nft/render", **request_kwargs)

    assert (status, body["error"], required.error) == (402, "payment_required", "payment_required")
    assert required.accepts[0].amount == str(intake.deployment.nft_price)
    assert body["accepts"][0]["amount"] == str(intake.deployment.nft_price)
    assert required.resource is not None and required.resource.url.endswith("/nft/render")
    assert await intake.pool.fetchval("SELECT count(*) FROM mint_requests") == 0


async def test_paid_render_body_is_still_validated(intake: Intake, payer: LocalAccount) -> None:
    payment = intake.payment(payer, value=intake.deployment.nft_price)
    header = {"PAYMENT-SIGNATURE": paid_header(intake, payment, "/nft/render")}
    status, body = await intake.post("/nft/render", headers=header)
    assert (status, body["error"]) == (400, "invalid_body")
    status, body = await intake.post(
        "/nft/render", headers=header, json={"render": {**RENDER, "shape": "cube"}}
    )
    assert (status, body["error"]) == (422, "invalid_render_settings")
    status, body = await intake.post("/nft/render", json={"paymentType": "gasless", **payment})
    assert (status, body["error"]) == (400, "invalid_body")
    async with intake.client.post("/nft/render", headers=header, data=b"{oops") as response:
        assert response.status == 415
    assert await intake.pool.fetchval("SELECT count(*) FROM mint_requests") == 0


async def test_mint_still_validates_its_body_before_the_402(intake: Intake) -> None:
    status, body = await intake.post(json={"paymentType": "x402", "colour": "red"})
    assert (status, body["error"]) == (400, "invalid_body")


# --- payment-identifier ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/mint", "/nft/render"])
async def test_payment_identifier_is_an_idempotency_key(
    intake: Intake, payer: LocalAccount, path: str
) -> None:
    price = intake.deployment.nft_price if path == "/nft/render" else intake.deployment.price
    payment = intake.payment(payer, value=price)
    key = f"pay_{os.urandom(8).hex()}"
    body = {"render": RENDER} if path == "/nft/render" else None
    id_field = "jobId" if path == "/nft/render" else "queueId"

    async def post(header: str, **extra: Any) -> tuple[int, dict[str, Any], str | None]:
        async with intake.client.post(
            path, json=body, headers={"PAYMENT-SIGNATURE": header, **extra}
        ) as response:
            return response.status, await response.json(), response.headers.get("Idempotent-Replayed")

    status, first, _ = await post(paid_header(intake, payment, path, key))
    assert status == 202, first
    stored = await intake.pool.fetchrow(
        "SELECT payer_address, idempotency_key FROM mint_requests WHERE id = $1::uuid", first[id_field]
    )
    assert (stored["payer_address"], stored["idempotency_key"]) == (payer.address, key)

    # The same payment again, by the extension or by the header with the same key: the same request.
    for header, extra in (
        (paid_header(intake, payment, path, key), {}),
        (paid_header(intake, payment, path), {"Idempotency-Key": key}),
        (paid_header(intake, payment, path, key), {"Idempotency-Key": key}),
    ):
        status, again, replayed = await post(header, **extra)
        assert (status, replayed, again[id_field]) == (200, "true", first[id_field]), again

    # The same id with another payment is refused, as a reused Idempotency-Key is.
    other = intake.payment(payer, value=price)
    status, refused, _ = await post(paid_header(intake, other, path, key))
    assert (status, refused["error"]) == (422, "idempotency_key_reused"), refused
    # Two different keys in one request is a client bug: said so, nothing queued.
    status, conflict, _ = await post(paid_header(intake, other, path, key + "x"), **{"Idempotency-Key": key})
    assert (status, conflict["error"]) == (400, "conflicting_idempotency_key")
    assert "payment-identifier" in conflict["message"]
    status, bad, _ = await post(paid_header(intake, other, path, "short"))
    assert (status, bad["error"]) == (400, "invalid_payment_identifier")
    assert await intake.pool.fetchval("SELECT count(*) FROM mint_requests") == 1


# --- the official clients -------------------------------------------------------------------------


class PaymentIdentifier:
    """A client extension of the Python SDK: every payment carries `id` (payment-identifier)."""

    key = PAYMENT_IDENTIFIER

    def __init__(self, id: str) -> None:
        self.id = id

    def enrich_payment_payload(self, payload: PaymentPayload, required: PaymentRequired) -> PaymentPayload:
        extensions = append_payment_identifier_to_extensions(dict(payload.extensions or {}), self.id)
        return payload.model_copy(update={"extensions": extensions})


class Recording(httpx.AsyncHTTPTransport):
    """The transport under the SDK's: it sees the paid requests the SDK sends itself."""

    def __init__(self) -> None:
        super().__init__()
        self.paid: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if "PAYMENT-SIGNATURE" in request.headers:
            self.paid.append(request)
        return await super().handle_async_request(request)


async def test_python_sdk_pays_both_resources_with_a_payment_identifier(
    intake: Intake, fund_payers: Callable[..., list[LocalAccount]]
) -> None:
    [payer] = fund_payers(1, intake.deployment.price * 2 + intake.deployment.nft_price)
    identifier = PaymentIdentifier(f"pay_{os.urandom(8).hex()}")
    client = x402Client()
    register_exact_evm_client(client, EthAccountSigner(payer))
    # The SDK pays only assets it knows by default; the local mock USDC must be allowed explicitly.
    client.set_spend_controls({"allowed_assets": True})
    client.register_extension(identifier)
    recording = Recording()
    paid = recording.paid

    async with httpx.AsyncClient(transport=x402_httpx_transport(client, recording)) as http:
        minted = await http.post(intake.url + "mint", json={})
        identifier.id += "-nft"
        rendered = await http.post(intake.url + "nft/render", json={"render": RENDER})
    assert minted.status_code == 202, minted.text
    assert rendered.status_code == 202, rendered.text

    payments = [json.loads(base64.b64decode(request.headers["PAYMENT-SIGNATURE"])) for request in paid]
    assert [p["resource"]["url"] for p in payments] == [intake.url + "mint", intake.url + "nft/render"]
    rows = await intake.pool.fetch(
        "SELECT id::text, kind, payer_address, payment_type, idempotency_key FROM mint_requests ORDER BY seq"
    )
    assert [tuple(r) for r in rows] == [
        (minted.json()["queueId"], "token", payer.address, "x402", identifier.id.removesuffix("-nft")),
        (rendered.json()["jobId"], "nft", payer.address, "x402", identifier.id),
    ]
    # The paid request sent again (a retry after a lost answer) is the same request.
    async with httpx.AsyncClient() as http:
        retry = await http.post(str(paid[0].url), headers=paid[0].headers, content=paid[0].content)
    assert (retry.status_code, retry.headers.get("Idempotent-Replayed")) == (200, "true")
    assert retry.json()["queueId"] == minted.json()["queueId"]


async def test_typescript_client_pays_unmodified(
    intake_url: Callable[[], Awaitable[str]],
    services: Callable[..., Any],
    pg_pool: asyncpg.Pool,
    deployment: Deployment,
    fund_payers: Callable[..., list[LocalAccount]],
    anvil: Anvil,
) -> None:
    node = shutil.which("node")
    if node is None or not (REPO / "node_modules" / "@x402" / "fetch").is_dir():
        pytest.fail("node or node_modules/@x402 is missing: run `make install`")
    url = await intake_url()
    services("renderer")
    services("batcher")
    services("confirmer")
    [payer] = fund_payers(1, deployment.price * 2 + deployment.nft_price)
    key = f"ts_{os.urandom(8).hex()}"

    process = await asyncio.create_subprocess_exec(
        node,
        str(CLIENT_SCRIPT),
        cwd=REPO,
        env={
            "PATH": os.environ["PATH"],
            "INTAKE_URL": url,
            "PAYER_KEY": "0x" + bytes(payer.key).hex(),
            "PAYMENT_ID": key,
            "RENDER": json.dumps(RENDER),
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, stderr.decode()
    results = json.loads(stdout)

    assert results["payer"] == payer.address
    mint, render = results["mint"], results["render"]
    assert mint["status"] == 202, mint
    assert (mint["body"]["payer"], mint["body"]["paymentType"]) == (payer.address, "x402")
    assert render["status"] == 202, render
    # A retry of the paid request is the same request; a second payment under its id is refused.
    assert (results["retry"]["status"], results["retry"]["replayed"]) == (200, "true")
    assert results["retry"]["body"]["queueId"] == mint["body"]["queueId"]
    assert (results["reused"]["status"], results["reused"]["body"]["error"]) == (
        422,
        "idempotency_key_reused",
    )
    # The client echoed the resource and sent the payment-identifier.
    payments = [p["payment"] for p in results["payments"]]
    sent = [(p["resource"]["url"], p["extensions"][PAYMENT_IDENTIFIER]["info"]["id"]) for p in payments]
    assert sent == [
        (f"{url}/mint", f"{key}-mint"),
        (f"{url}/mint", f"{key}-mint"),
        (f"{url}/nft/render", f"{key}-nft"),
    ]

    ids = [mint["body"]["queueId"], render["body"]["jobId"]]
    stored = await pg_pool.fetch(
        "SELECT payer_address, payment_type, idempotency_key FROM mint_requests ORDER BY seq"
    )
    assert [tuple(r) for r in stored] == [
        (payer.address, "x402", f"{key}-mint"),
        (payer.address, "x402", f"{key}-nft"),
    ]
    rows = await wait_final(pg_pool, ids)
    assert [(r["kind"], r["status"]) for r in rows] == [("token", "completed"), ("nft", "completed")], [
        r["error_message"] for r in rows
    ]

    # On-chain: the payer holds the token and the NFT, and the treasury got both prices, once.
    w3 = Web3(HTTPProvider(anvil.rpc_url))
    token = w3.eth.contract(address=deployment.token, abi=load_artifact("MintToken")["abi"])
    nft = w3.eth.contract(address=deployment.nft, abi=load_artifact("Gen1NFT")["abi"])
    assert token.functions.balanceOf(payer.address).call() == deployment.mint_amount
    assert nft.functions.balanceOf(payer.address).call() == 1
    usdc = usdc_contract(w3, deployment)
    assert usdc.functions.balanceOf(deployment.treasury).call() == deployment.price + deployment.nft_price
    assert usdc.functions.balanceOf(payer.address).call() == deployment.price
