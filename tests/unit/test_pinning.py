"""Pinning: the local content-addressed store and its gateway over real HTTP, and the Pinata client
against a small Pinata-like server on a free port (retries, rate limit, refusals, a JWT kept secret)."""

import asyncio
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr, ValidationError
from yarl import URL

from devstack.ports import free_port
from services.renderer.cid import InvalidCid, cid_v0, cid_v1
from services.renderer.pinata import PinataError, PinataPinner
from services.renderer.pinning import canonical_json
from services.renderer.pinstore import IMMUTABLE_CACHE_CONTROL, LocalPinStore, gateway_routes
from services.renderer.ratelimit import TokenBucket
from services.renderer.settings import RendererSettings
from tests.support.pinata import FakePinata

# The head of a 1x1 GIF: enough to be told apart from JSON.
GIF = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x00\x00\x00\x00\x00"
METADATA = {
    "name": "Mintline #7",
    "image": "ipfs://bafy-example",
    "attributes": [{"trait_type": "hue", "value": 3}],
}
JWT = "eyJhbGciOiJIUzI1NiJ9.test-secret-jwt-value.c2lnbmF0dXJl"


@pytest.fixture
def store(tmp_path: Path) -> LocalPinStore:
    return LocalPinStore(tmp_path / "ipfs", "http://127.0.0.1:9103/")


@pytest.fixture
async def gateway(store: LocalPinStore) -> AsyncIterator[TestClient]:
    app = web.Application()
    app.add_routes(gateway_routes(store))
    async with TestClient(TestServer(app)) as client:
        yield client


async def test_the_same_bytes_are_stored_once_and_pinned_twice(store: LocalPinStore, tmp_path: Path) -> None:
    first = await store.pin_file(GIF, "7.gif", "image/gif")
    again = await store.pin_file(GIF, "7-again.gif", "image/gif")

    assert first.cid == again.cid == cid_v1(GIF)
    assert first.size == len(GIF)
    assert first.url == f"http://127.0.0.1:9103/ipfs/{first.cid}"
    assert first.ipfs_uri == f"ipfs://{first.cid}"
    assert os.listdir(tmp_path / "ipfs" / "blocks") == [first.cid]
    pins = await store.pins()
    assert [(pin.cid, pin.name, pin.size, pin.content_type) for pin in pins] == [
        (first.cid, "7.gif", len(GIF), "image/gif"),
        (first.cid, "7-again.gif", len(GIF), "image/gif"),
    ]
    assert pins[0].pinned_at.endswith("Z")


async def test_pinned_content_reads_back_under_either_cid_version(store: LocalPinStore) -> None:
    pinned = await store.pin_file(GIF, "7.gif", "image/gif")

    assert await store.read(pinned.cid) == (GIF, "image/gif")
    assert await store.read(cid_v0(GIF)) == (GIF, "image/gif")
    assert await store.read(cid_v1(b"never pinned")) is None
    with pytest.raises(InvalidCid):
        await store.read("../pins.jsonl")


async def test_a_second_store_on_the_same_directory_sees_pins_made_after_it_started(tmp_path: Path) -> None:
    reader = LocalPinStore(tmp_path / "ipfs", "http://gateway")
    writer = LocalPinStore(tmp_path / "ipfs", "http://gateway")
    await writer.pin_file(b"first", "a.txt", "text/plain")
    assert await reader.read(cid_v1(b"first")) == (b"first", "text/plain")

    await writer.pin_json(METADATA, "7.json")

    assert await reader.read(cid_v1(canonical_json(METADATA))) == (
        canonical_json(METADATA),
        "application/json",
    )


async def test_the_same_document_always_gets_the_same_cid(store: LocalPinStore) -> None:
    reordered = dict(reversed(list(METADATA.items())))

    first = await store.pin_json(METADATA, "7.json")
    second = await store.pin_json(reordered, "7.json")

    assert first.cid == second.cid
    stored, content_type = await store.read(first.cid) or (b"", "")
    assert content_type == "application/json"
    assert stored == json.dumps(METADATA, sort_keys=True, separators=(",", ":")).encode()
    assert json.loads(stored) == METADATA


async def test_a_failed_write_leaves_neither_a_block_nor_a_pin(
    store: LocalPinStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(source: str, destination: str) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk gone"):
        await store.pin_file(GIF, "7.gif", "image/gif")
    monkeypatch.undo()

    assert os.listdir(tmp_path / "ipfs" / "blocks") == []
    assert await store.pins() == []


async def test_gateway_serves_a_gif_like_an_ipfs_gateway(store: LocalPinStore, gateway: TestClient) -> None:
    pinned = await store.pin_file(GIF, "7.gif", "image/gif")

    response = await gateway.get(f"/ipfs/{pinned.cid}")

    assert response.status == 200
    assert response.headers["Content-Type"] == "image/gif"
    assert response.headers["Cache-Control"] == IMMUTABLE_CACHE_CONTROL
    assert response.headers["Etag"] == f'"{pinned.cid}"'
    assert await response.read() == GIF


async def test_gateway_serves_metadata_as_json_and_answers_head_and_revalidation(
    store: LocalPinStore, gateway: TestClient
) -> None:
    pinned = await store.pin_json(METADATA, "7.json")

    response = await gateway.get(f"/ipfs/{pinned.cid}")
    assert response.headers["Content-Type"] == "application/json"
    assert await response.json() == METADATA

    head = await gateway.head(f"/ipfs/{pinned.cid}")
    assert head.status == 200
    assert head.headers["Content-Length"] == str(len(canonical_json(METADATA)))
    assert await head.read() == b""

    revalidated = await gateway.get(f"/ipfs/{pinned.cid}", headers={"If-None-Match": f'"{pinned.cid}"'})
    assert revalidated.status == 304


async def test_gateway_serves_a_cid_v0_too(store: LocalPinStore, gateway: TestClient) -> None:
    await store.pin_file(GIF, "7.gif", "image/gif")

    response = await gateway.get(f"/ipfs/{cid_v0(GIF)}")

    assert response.status == 200
    assert await response.read() == GIF


async def test_gateway_answers_404_for_content_it_does_not_have(gateway: TestClient) -> None:
    response = await gateway.get(f"/ipfs/{cid_v1(b'never pinned')}")

    assert response.status == 404
    assert (await response.json())["error"] == "not_found"


@pytest.mark.parametrize("cid", ["not-a-cid", "Qm123", "bafyBEIG", "pins.jsonl", ".incoming-x1"])
async def test_gateway_answers_400_for_what_is_not_a_cid(gateway: TestClient, cid: str) -> None:
    response = await gateway.get(f"/ipfs/{cid}")

    assert response.status == 400
    body = await response.json()
    assert body["error"] == "invalid_cid"
    assert body["message"]


@pytest.mark.parametrize(
    "raw_path",
    [
        "/ipfs/..%2Fpins.jsonl",
        "/ipfs/..%2F..%2Fsecret.txt",
        "/ipfs/%2E%2E%2F%2E%2E%2Fsecret.txt",
        "/ipfs/..%5C..%5Csecret.txt",
        "/ipfs/%2e%2e",
        "/ipfs/blocks%2F..%2F..%2Fsecret.txt",
        "/ipfs/../../secret.txt",
    ],
)
async def test_gateway_never_reads_outside_the_store(
    store: LocalPinStore, gateway: TestClient, tmp_path: Path, raw_path: str
) -> None:
    (tmp_path / "secret.txt").write_text("private key material")
    await store.pin_file(GIF, "7.gif", "image/gif")

    response = await gateway.get(URL(raw_path, encoded=True))

    assert response.status in (400, 404)
    body = await response.read()
    assert b"private key" not in body and b"7.gif" not in body
    if response.status == 400:
        assert json.loads(body)["error"] == "invalid_cid"


@pytest.fixture
async def pinata() -> AsyncIterator[tuple[FakePinata, str]]:
    fake = FakePinata(token=JWT)
    app = web.Application()
    app.add_routes(fake.routes())
    async with TestServer(app) as server:
        yield fake, str(server.make_url("/"))


@pytest.fixture
async def make_pinata_pinner(pinata: tuple[FakePinata, str]) -> AsyncIterator[Callable[..., PinataPinner]]:
    made: list[PinataPinner] = []

    def make(jwt: str = JWT, **options: Any) -> PinataPinner:
        fast = {"requests_per_second": 1000.0, "burst": 100, "backoff_base": 0.01, "backoff_max": 0.05}
        options = {"api_url": pinata[1], **fast, **options}
        pinner = PinataPinner(SecretStr(jwt), **options)
        made.append(pinner)
        return pinner

    yield make
    for pinner in made:
        await pinner.close()


async def test_pinata_pins_a_file_as_multipart_with_its_name(
    pinata: tuple[FakePinata, str], make_pinata_pinner: Callable[..., PinataPinner]
) -> None:
    fake, _ = pinata

    pinned = await make_pinata_pinner().pin_file(GIF, "jobs/7.gif", "image/gif")

    assert pinned.cid == cid_v1(GIF)
    assert pinned.url == f"https://gateway.pinata.cloud/ipfs/{pinned.cid}"
    (upload,) = fake.pinned
    assert upload["content"] == GIF
    assert upload["content_type"] == "image/gif"
    assert upload["filename"] == "jobs_7.gif"
    assert upload["metadata"] == {"name": "jobs/7.gif"}
    assert upload["options"] == {"cidVersion": 1}


async def test_pinata_pins_json_with_its_name(
    pinata: tuple[FakePinata, str], make_pinata_pinner: Callable[..., PinataPinner]
) -> None:
    fake, _ = pinata

    pinned = await make_pinata_pinner().pin_json(METADATA, "7.json")

    assert pinned.cid == cid_v1(canonical_json(METADATA))
    assert fake.pinned == [
        {"pinataContent": METADATA, "pinataMetadata": {"name": "7.json"}, "pinataOptions": {"cidVersion": 1}}
    ]


async def test_pinata_retries_429_and_5xx_until_pinned(
    pinata: tuple[FakePinata, str], make_pinata_pinner: Callable[..., PinataPinner]
) -> None:
    fake, _ = pinata
    fake.refusals = [(503, {}), (502, {}), (429, {}), (500, {})]

    pinned = await make_pinata_pinner().pin_file(GIF, "7.gif", "image/gif")

    assert pinned.cid == cid_v1(GIF)
    assert len(fake.arrivals) == 5


async def test_pinata_waits_as_long_as_retry_after_says(
    pinata: tuple[FakePinata, str], make_pinata_pinner: Callable[..., PinataPinner]
) -> None:
    fake, _ = pinata
    fake.refusals = [(429, {"Retry-After": "1"})]

    await make_pinata_pinner().pin_json(METADATA, "7.json")

    first, second = fake.arrivals
    assert second - first >= 0.95


async def test_pinata_gives_up_after_max_attempts(
    pinata: tuple[FakePinata, str], make_pinata_pinner: Callable[..., PinataPinner]
) -> None:
    fake, _ = pinata
    fake.refusals = [(503, {})] * 10

    with pytest.raises(PinataError) as raised:
        await make_pinata_pinner(max_attempts=3).pin_file(GIF, "7.gif", "image/gif")

    assert raised.value.status == 503
    assert "after 3 attempts" in str(raised.value)
    assert len(fake.arrivals) == 3


async def test_pinata_retries_when_it_cannot_connect(make_pinata_pinner: Callable[..., PinataPinner]) -> None:
    pinner = make_pinata_pinner(api_url=f"http://127.0.0.1:{free_port()}", max_attempts=2)

    with pytest.raises(PinataError) as raised:
        await pinner.pin_json(METADATA, "7.json")

    assert raised.value.status is None
    assert "after 2 attempts" in str(raised.value)


async def test_a_rejected_jwt_fails_at_once_and_is_never_repeated(
    pinata: tuple[FakePinata, str],
    make_pinata_pinner: Callable[..., PinataPinner],
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake, _ = pinata
    caplog.set_level(logging.DEBUG)
    wrong_jwt = "eyJhbGciOiJIUzI1NiJ9.revoked-jwt-value.c2lnbmF0dXJl"
    fake.refusals = [(503, {}), (429, {"Retry-After": "0"})]
    await make_pinata_pinner().pin_file(GIF, "7.gif", "image/gif")  # retried, so there are log lines

    with pytest.raises(PinataError) as raised:
        await make_pinata_pinner(jwt=wrong_jwt).pin_file(GIF, "7.gif", "image/gif")

    assert raised.value.status == 401
    assert "INVALID_CREDENTIALS" in str(raised.value)
    assert len(fake.arrivals) == 4  # three to pin, one refused and not retried
    texts = [str(raised.value), repr(raised.value), raised.value.detail, caplog.text]
    texts += [record.getMessage() for record in caplog.records]
    assert any("retrying" in text for text in texts)
    for secret in (JWT, wrong_jwt, "revoked-jwt-value", "test-secret-jwt-value"):
        assert not any(secret in text for text in texts)


async def test_pinata_calls_are_spaced_by_the_rate_limit(
    pinata: tuple[FakePinata, str], make_pinata_pinner: Callable[..., PinataPinner]
) -> None:
    fake, _ = pinata
    pinner = make_pinata_pinner(requests_per_second=10.0, burst=1)

    await asyncio.gather(*(pinner.pin_json({"n": n}, f"{n}.json") for n in range(5)))

    assert len(fake.arrivals) == 5
    assert fake.arrivals[-1] - fake.arrivals[0] >= 0.35


async def test_a_token_bucket_lets_a_burst_through_then_paces() -> None:
    bucket = TokenBucket(rate_per_second=20.0, burst=3)
    started = time.monotonic()

    for _ in range(3):
        await bucket.acquire()
    burst_done = time.monotonic()
    await bucket.acquire()

    assert burst_done - started < 0.03
    assert time.monotonic() - burst_done >= 0.04


def renderer_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **env: str) -> RendererSettings:
    """The renderer's settings from the environment, as `python -m services.renderer` reads them."""
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1")
    monkeypatch.setenv("DATABASE_URL", "postgresql://127.0.0.1:1/none")
    monkeypatch.setenv("RENDERER_PIN_DIR", str(tmp_path))
    monkeypatch.delenv("RENDERER_PINATA_JWT", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return RendererSettings()  # type: ignore[call-arg]


def test_the_settings_pick_the_pinning_backend(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    local = renderer_settings(monkeypatch, tmp_path).pinner()
    remote = renderer_settings(
        monkeypatch, tmp_path, RENDERER_PIN_BACKEND="pinata", RENDERER_PINATA_JWT=JWT
    ).pinner()

    assert isinstance(local, LocalPinStore)
    assert isinstance(remote, PinataPinner)
    assert JWT not in repr(vars(remote))


@pytest.mark.parametrize("jwt", [None, ""])
def test_pinata_without_a_jwt_names_the_setting(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, jwt: str | None
) -> None:
    env = {"RENDERER_PIN_BACKEND": "pinata"} | ({} if jwt is None else {"RENDERER_PINATA_JWT": jwt})
    settings = renderer_settings(monkeypatch, tmp_path, **env)
    with pytest.raises(ValueError, match="RENDERER_PINATA_JWT"):
        settings.pinner()


def test_an_unknown_backend_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="'ipfs-node'"):
        renderer_settings(monkeypatch, tmp_path, RENDERER_PIN_BACKEND="ipfs-node")
