"""NFT renders end to end, every service as its own process on real Redis, PostgreSQL and anvil: a
paid render becomes an NFT whose tokenURI resolves through the local gateway; a renderer killed
mid-job is recovered with one pin set and one mint; a job that always fails ends `failed`."""

import asyncio
import io
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from eth_account.signers.local import LocalAccount
from PIL import Image
from redis.asyncio import Redis
from web3 import HTTPProvider, Web3

from devstack.anvil import Anvil
from devstack.ports import free_port
from services.renderer.cid import cid_v1
from shared import keys
from shared.deploy import Deployment, load_artifact
from shared.keys import Keys
from tests.support.payments import authorize, usdc_contract
from tests.support.pinata import FakePinata

PINATA_TEST_JWT = "test-only-pinata-jwt"  # not a credential: the fake Pinata below accepts it
SMALL = {"name": "Test render", "palette": "ocean", "shape": "star", "seed": 7, "frameCount": 8, "size": 64}


def render_body(payer: LocalAccount, deployment: Deployment, **render: Any) -> dict[str, Any]:
    payment = authorize(payer, deployment, value=deployment.nft_price).payload
    return {"paymentType": "gasless", **payment, "render": {**SMALL, **render}}


async def post_render(url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as session, session.post(f"{url}/nft/render", json=body) as response:
        return response.status, await response.json()


async def wait_job(
    url: str, job_id: str, done: Callable[[dict[str, Any]], bool], timeout: float = 60
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while True:
            async with session.get(f"{url}/nft/job/{job_id}") as response:
                assert response.status == 200
                job = await response.json()
            if done(job):
                return job
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} did not get there: {job}")
            await asyncio.sleep(0.1)


def nft_contract(anvil: Anvil, deployment: Deployment) -> Any:
    w3 = Web3(HTTPProvider(anvil.rpc_url))
    return w3.eth.contract(address=deployment.nft, abi=load_artifact("Gen1NFT")["abi"])


def pins(pin_dir: Path) -> list[dict[str, Any]]:
    path = pin_dir / "pins.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
async def pinata() -> AsyncIterator[tuple[FakePinata, str]]:
    fake = FakePinata(token=PINATA_TEST_JWT)
    app = web.Application()
    app.add_routes(fake.routes())
    async with TestServer(app) as server:
        yield fake, str(server.make_url("")).rstrip("/")
        fake.release.set()


async def test_a_paid_render_ends_as_an_nft_owned_by_the_payer(
    intake_url: Callable[[], Awaitable[str]],
    services: Callable[..., Any],
    settings_env: dict[str, str],
    pg_pool: asyncpg.Pool,
    deployment: Deployment,
    fund_payers: Callable[..., list[LocalAccount]],
    anvil: Anvil,
    tmp_path: Path,
) -> None:
    url = await intake_url()
    gateway_port = free_port()
    services("renderer", RENDERER_METRICS_PORT=str(gateway_port))
    services("batcher")
    services("confirmer")
    [payer] = fund_payers(1, deployment.nft_price * 2)

    status, accepted = await post_render(url, render_body(payer, deployment))

    assert status == 202, accepted
    assert accepted["queuePosition"] == 1
    assert accepted["estimatedWaitSeconds"] >= 0
    job = await wait_job(url, accepted["jobId"], lambda j: j["mintTxHash"] is not None)
    assert job["status"] == "completed"
    assert job["progress"] == 100
    assert job["attempts"] == 1
    assert job["error"] is None

    # On-chain: the payer owns the token, whose URI is the pinned metadata; the NFT price was paid.
    nft = nft_contract(anvil, deployment)
    token_id = job["tokenId"]
    assert nft.functions.ownerOf(token_id).call() == payer.address
    assert nft.functions.tokenURI(token_id).call() == f"ipfs://{job['metadataCid']}"
    assert nft.functions.totalSupply().call() == 1
    usdc = usdc_contract(Web3(HTTPProvider(anvil.rpc_url)), deployment)
    assert usdc.functions.balanceOf(deployment.treasury).call() == deployment.nft_price

    # The tokenURI resolves through the gateway to metadata whose image is the animated GIF.
    gateway = f"http://127.0.0.1:{gateway_port}/ipfs"
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{gateway}/{job['metadataCid']}") as response:
            assert response.status == 200
            metadata = json.loads(await response.read())
        image_cid = metadata["image"].removeprefix("ipfs://")
        async with session.get(f"{gateway}/{image_cid}") as response:
            assert response.status == 200
            assert response.content_type == "image/gif"
            gif = await response.read()
    assert image_cid == job["imageCid"] == cid_v1(gif)
    assert job["imageUrl"] == f"{gateway}/{image_cid}"
    assert metadata["name"] == SMALL["name"]
    assert {"trait_type": "Shape", "value": "star"} in metadata["attributes"]
    with Image.open(io.BytesIO(gif)) as image:
        assert image.format == "GIF"
        assert image.is_animated
        assert image.n_frames == SMALL["frameCount"]
        assert image.size == (SMALL["size"], SMALL["size"])

    # One pin set: the image, then the metadata.
    assert [pin["cid"] for pin in pins(tmp_path / "ipfs")] == [image_cid, job["metadataCid"]]
    history = await pg_pool.fetch(
        "SELECT status FROM mint_request_history WHERE request_id = $1 ORDER BY id", accepted["jobId"]
    )
    assert [row["status"] for row in history] == [
        "rendering",
        "rendered",
        "pending",
        "batched",
        "sent",
        "completed",
    ]


async def test_a_renderer_killed_mid_job_is_recovered_with_one_pin_set_and_one_mint(
    intake_url: Callable[[], Awaitable[str]],
    services: Callable[..., Any],
    pinata: tuple[FakePinata, str],
    redis_client: Redis,
    settings_env: dict[str, str],
    deployment: Deployment,
    fund_payers: Callable[..., list[LocalAccount]],
    anvil: Anvil,
) -> None:
    fake, pinata_url = pinata
    renderer_env = {
        "RENDERER_PIN_BACKEND": "pinata",
        "RENDERER_PINATA_JWT": PINATA_TEST_JWT,
        "RENDERER_PINATA_API_URL": pinata_url,
        "RENDERER_PINATA_GATEWAY_URL": pinata_url,
        # A killed renderer's job is taken over once its lease lapses.
        "RENDERER_LEASE_SECONDS": "2",
    }
    url = await intake_url()
    services("batcher")
    services("confirmer")
    first = services("renderer", **renderer_env)
    [payer] = fund_payers(1, deployment.nft_price * 2)
    # The first renderer renders, then hangs pinning the image: it is killed right there.
    fake.hold_next_file = True

    status, accepted = await post_render(url, render_body(payer, deployment, frameCount=64, size=256))
    assert status == 202, accepted
    await asyncio.wait_for(fake.holding.wait(), 30)
    first.kill()
    killed = await wait_job(url, accepted["jobId"], lambda j: True)
    assert (killed["status"], killed["progress"], killed["imageCid"]) == ("active", 33, None)

    services("renderer", **renderer_env)
    job = await wait_job(url, accepted["jobId"], lambda j: j["mintTxHash"] is not None)

    assert job["status"] == "completed"
    assert job["attempts"] == 2
    # One pin set: the held request never pinned; the second renderer pinned the image and metadata once.
    assert [("pinataContent" in pin) for pin in fake.pinned] == [False, True]
    assert cid_v1(fake.pinned[0]["content"]) == job["imageCid"]
    nft = nft_contract(anvil, deployment)
    assert nft.functions.totalSupply().call() == 1
    assert nft.functions.balanceOf(payer.address).call() == 1
    names = Keys(settings_env["MINTLINE_NAMESPACE"])
    assert await redis_client.xlen(names.dead(keys.RENDER_REQUESTED)) == 0
    # The Pinata JWT is in no service's log, the killed renderer's included.
    assert all(PINATA_TEST_JWT not in process.log_path.read_text() for process in services.started)


async def test_a_job_that_always_fails_ends_failed_after_three_attempts(
    intake_url: Callable[[], Awaitable[str]],
    services: Callable[..., Any],
    pg_pool: asyncpg.Pool,
    redis_client: Redis,
    settings_env: dict[str, str],
    deployment: Deployment,
    fund_payers: Callable[..., list[LocalAccount]],
    anvil: Anvil,
) -> None:
    url = await intake_url()
    # Pinning always fails: the pinning service is down (nothing listens on its port).
    services(
        "renderer",
        RENDERER_PIN_BACKEND="pinata",
        RENDERER_PINATA_JWT=PINATA_TEST_JWT,
        RENDERER_PINATA_API_URL=f"http://127.0.0.1:{free_port()}",
        RENDERER_PINATA_MAX_ATTEMPTS="1",
        RENDERER_RETRY_BASE_SECONDS="0.5",
    )
    [payer] = fund_payers(1, deployment.nft_price * 2)
    usdc = usdc_contract(Web3(HTTPProvider(anvil.rpc_url)), deployment)
    balance_before = usdc.functions.balanceOf(payer.address).call()

    status, accepted = await post_render(url, render_body(payer, deployment))
    assert status == 202, accepted
    job = await wait_job(url, accepted["jobId"], lambda j: j["status"] == "failed")

    assert job["attempts"] == 3
    assert job["progress"] == 33  # rendered every time, never pinned
    assert "pinata" in job["error"].lower() or "connect" in job["error"].lower(), job["error"]
    row = await pg_pool.fetchrow(
        "SELECT started_at, finished_at FROM render_jobs WHERE request_id = $1", accepted["jobId"]
    )
    # Backoff between attempts: 0.5 s, then 1 s.
    assert (row["finished_at"] - row["started_at"]).total_seconds() >= 1.5
    request = await pg_pool.fetchrow(
        "SELECT status, error_message FROM mint_requests WHERE id = $1", accepted["jobId"]
    )
    assert request["status"] == "failed"
    assert request["error_message"].startswith("render failed: ")
    names = Keys(settings_env["MINTLINE_NAMESPACE"])
    dead = await redis_client.xrange(names.dead(keys.RENDER_REQUESTED))
    assert len(dead) == 1
    assert dead[0][1][b"reason"].decode().startswith("render failed after 3 attempts")
    # Never minted, never charged.
    assert nft_contract(anvil, deployment).functions.totalSupply().call() == 0
    assert usdc.functions.balanceOf(payer.address).call() == balance_before
    assert all(PINATA_TEST_JWT not in process.log_path.read_text() for process in services.started)
