"""Where rendered files and their metadata are pinned: one Pinner interface, two backends.

LocalPinStore keeps content on disk under its real CID and serves it through a gateway route, for dev and
tests; PinataPinner pins through Pinata's HTTP API, rate-limited on our side and retried.
"""

import asyncio
import contextlib
import email.utils
import json
import logging
import math
import os
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import aiohttp
from aiohttp import web
from pydantic import SecretStr

from services.renderer.cid import InvalidCid, canonical_cid, cid_v1
from services.renderer.ratelimit import TokenBucket
from shared.backoff import exponential_backoff

log = logging.getLogger(__name__)

JSON_CONTENT_TYPE = "application/json"
PINATA_API_URL = "https://api.pinata.cloud"
PINATA_GATEWAY_URL = "https://gateway.pinata.cloud"
PINATA_JWT_ENV = "RENDERER_PINATA_JWT"
# Content under a CID never changes, so gateways let everyone cache it for good (a year, as ipfs.io says).
IMMUTABLE_CACHE_CONTROL = "public, max-age=29030400, immutable"


@dataclass(frozen=True)
class Pinned:
    """A pinned piece of content and a gateway URL that serves it. `size` is as the backend counts it:
    the content's bytes locally, Pinata's PinSize (the whole DAG) there."""

    cid: str
    size: int
    url: str

    @property
    def ipfs_uri(self) -> str:
        return f"ipfs://{self.cid}"


class Pinner(Protocol):
    async def pin_file(self, data: bytes, name: str, content_type: str) -> Pinned: ...

    async def pin_json(self, document: dict[str, Any], name: str) -> Pinned: ...

    def gateway_url(self, cid: str) -> str: ...

    async def close(self) -> None: ...


def canonical_json(document: Any) -> bytes:
    """One byte string per document, so the same metadata always gets the same CID."""
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.encode("utf-8")


def make_pinner(
    backend: str,
    local_directory: Path,
    local_gateway_base_url: str,
    pinata_jwt: SecretStr | None,
    pinata_requests_per_second: float,
    pinata_burst: int,
    pinata_api_url: str = PINATA_API_URL,
    pinata_gateway_base_url: str = PINATA_GATEWAY_URL,
    pinata_max_attempts: int = 5,
) -> Pinner:
    if backend == "local":
        return LocalPinStore(local_directory, local_gateway_base_url)
    if backend == "pinata":
        if pinata_jwt is None or not pinata_jwt.get_secret_value():
            raise ValueError(f"the pinata pinning backend needs a JWT: set {PINATA_JWT_ENV}")
        return PinataPinner(
            pinata_jwt,
            api_url=pinata_api_url,
            gateway_base_url=pinata_gateway_base_url,
            requests_per_second=pinata_requests_per_second,
            burst=pinata_burst,
            max_attempts=pinata_max_attempts,
        )
    raise ValueError(f"unknown pinning backend {backend!r}: expected 'local' or 'pinata'")


@dataclass(frozen=True)
class PinRecord:
    """One line of the local pin list, like an entry of Pinata's pinList."""

    cid: str
    name: str
    size: int
    content_type: str
    pinned_at: str


class LocalPinStore:
    """Content on disk under its CID (`blocks/<cid>`), plus an append-only pin list (`pins.jsonl`)."""

    def __init__(self, directory: Path, gateway_base_url: str) -> None:
        self._blocks = directory / "blocks"
        self._pin_list = directory / "pins.jsonl"
        self._gateway_base_url = gateway_base_url.rstrip("/")
        self._blocks.mkdir(parents=True, exist_ok=True)
        # Content types come from the pin list, which another process may be appending to; we read on
        # from where we stopped rather than re-reading it all on every request.
        self._content_types: dict[str, str] = {}
        self._indexed_bytes = 0
        self._index_lock = threading.Lock()

    async def pin_file(self, data: bytes, name: str, content_type: str) -> Pinned:
        record = await asyncio.to_thread(self._pin, data, name, content_type)
        log.info("pinned %s locally: cid=%s size=%d type=%s", name, record.cid, record.size, content_type)
        return Pinned(record.cid, record.size, self.gateway_url(record.cid))

    async def pin_json(self, document: dict[str, Any], name: str) -> Pinned:
        return await self.pin_file(canonical_json(document), name, JSON_CONTENT_TYPE)

    def gateway_url(self, cid: str) -> str:
        return f"{self._gateway_base_url}/ipfs/{cid}"

    async def close(self) -> None:
        pass

    async def read(self, cid: str) -> tuple[bytes, str] | None:
        """The content and its content type, or None when nothing is stored under `cid`.

        Raises InvalidCid when `cid` is not a CID string; a CIDv0 finds the same content as its CIDv1.
        """
        return await asyncio.to_thread(self._read, canonical_cid(cid))

    async def pins(self) -> list[PinRecord]:
        return await asyncio.to_thread(self._read_pins)

    def _pin(self, data: bytes, name: str, content_type: str) -> PinRecord:
        cid = cid_v1(data)
        block = self._blocks / cid
        if not block.exists():
            self._write_atomically(block, data)
        pinned_at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        record = PinRecord(cid, name, len(data), content_type, pinned_at)
        line = {
            "cid": cid,
            "name": name,
            "size": len(data),
            "contentType": content_type,
            "pinnedAt": pinned_at,
        }
        # The block is in place before its pin line, so every line names content that exists.
        with self._pin_list.open("a", encoding="utf-8") as pin_list:
            pin_list.write(json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n")
        return record

    def _write_atomically(self, block: Path, data: bytes) -> None:
        # Temporary names start with "." and are no CID, so the gateway can never serve a half-written file.
        handle, temporary = tempfile.mkstemp(dir=self._blocks, prefix=".incoming-")
        try:
            with os.fdopen(handle, "wb") as out:
                os.fchmod(out.fileno(), 0o644)
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, block)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise

    def _read(self, cid: str) -> tuple[bytes, str] | None:
        try:
            data = (self._blocks / cid).read_bytes()
        except FileNotFoundError:
            return None
        with self._index_lock:
            self._catch_up_on_pin_list()
            return data, self._content_types.get(cid, "application/octet-stream")

    def _catch_up_on_pin_list(self) -> None:
        try:
            with self._pin_list.open("rb") as pin_list:
                if os.fstat(pin_list.fileno()).st_size < self._indexed_bytes:
                    self._content_types.clear()
                    self._indexed_bytes = 0
                pin_list.seek(self._indexed_bytes)
                unread = pin_list.read()
        except FileNotFoundError:
            return
        # A line without its newline is still being written; it is read next time.
        complete = unread[: unread.rfind(b"\n") + 1]
        self._indexed_bytes += len(complete)
        for record in _parse_pin_lines(complete):
            self._content_types[record.cid] = record.content_type

    def _read_pins(self) -> list[PinRecord]:
        try:
            raw = self._pin_list.read_bytes()
        except FileNotFoundError:
            return []
        return _parse_pin_lines(raw[: raw.rfind(b"\n") + 1])


def _parse_pin_lines(raw: bytes) -> list[PinRecord]:
    records = []
    for line in raw.splitlines():
        try:
            entry = json.loads(line)
            records.append(
                PinRecord(entry["cid"], entry["name"], entry["size"], entry["contentType"], entry["pinnedAt"])
            )
        except (ValueError, KeyError, TypeError):
            log.warning("skipping an unreadable line of the pin list: %.200r", line)
    return records


def gateway_routes(store: LocalPinStore) -> list[web.RouteDef]:
    """`GET` and `HEAD /ipfs/{cid}` over `store`, answered the way a public IPFS gateway answers."""

    async def serve(request: web.Request) -> web.Response:
        requested = request.match_info["cid"]
        try:
            found = await store.read(requested)
        except InvalidCid:
            message = "expected a CIDv1 in base32 ('bafy...') or a CIDv0 ('Qm...')"
            return web.json_response({"error": "invalid_cid", "message": message}, status=400)
        if found is None:
            message = f"nothing is pinned under {requested}"
            return web.json_response({"error": "not_found", "message": message}, status=404)
        data, content_type = found
        headers = {
            "Cache-Control": IMMUTABLE_CACHE_CONTROL,
            "Etag": f'"{requested}"',
            "X-Ipfs-Path": f"/ipfs/{requested}",
        }
        if any(tag.value in (requested, "*") for tag in request.if_none_match or ()):
            return web.Response(status=304, headers=headers)
        return web.Response(body=data, headers={**headers, "Content-Type": content_type})

    return [web.get("/ipfs/{cid}", serve)]


class PinataError(Exception):
    """Pinata refused a pin or could not be reached (`status` None). Never carries the JWT."""

    def __init__(self, message: str, status: int | None = None, detail: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail


class PinataPinner:
    """Pins through Pinata's pinning API, as CIDv1; 429s, 5xx and broken connections are retried."""

    def __init__(
        self,
        jwt: SecretStr,
        *,
        api_url: str = PINATA_API_URL,
        gateway_base_url: str = PINATA_GATEWAY_URL,
        requests_per_second: float = 3.0,
        burst: int = 5,
        max_attempts: int = 5,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        longest_retry_after: float = 120.0,
        request_timeout: float = 120.0,
    ) -> None:
        self._jwt = jwt
        self._api_url = api_url.rstrip("/")
        self._gateway_base_url = gateway_base_url.rstrip("/")
        self._limiter = TokenBucket(requests_per_second, burst)
        self._max_attempts = max_attempts
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._longest_retry_after = longest_retry_after
        self._timeout = aiohttp.ClientTimeout(total=request_timeout)
        self._session: aiohttp.ClientSession | None = None

    async def pin_file(self, data: bytes, name: str, content_type: str) -> Pinned:
        # A "/" in the file name would make Pinata pin a directory around the file.
        filename = name.replace("/", "_") or "file"

        def form() -> aiohttp.FormData:
            # Built afresh for every attempt: aiohttp consumes a FormData once it is sent.
            body = aiohttp.FormData()
            body.add_field("file", data, filename=filename, content_type=content_type)
            body.add_field("pinataMetadata", json.dumps({"name": name}))
            body.add_field("pinataOptions", json.dumps({"cidVersion": 1}))
            return body

        return await self._pin("/pinning/pinFileToIPFS", form, name)

    async def pin_json(self, document: dict[str, Any], name: str) -> Pinned:
        body = canonical_json(
            {"pinataContent": document, "pinataMetadata": {"name": name}, "pinataOptions": {"cidVersion": 1}}
        )
        return await self._pin("/pinning/pinJSONToIPFS", lambda: body, name)

    def gateway_url(self, cid: str) -> str:
        return f"{self._gateway_base_url}/ipfs/{cid}"

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _pin(self, path: str, make_body: Callable[[], aiohttp.FormData | bytes], name: str) -> Pinned:
        attempt = 0
        while True:
            attempt += 1
            await self._limiter.acquire()
            status: int | None
            try:
                status, text, retry_after = await self._post(path, make_body())
            except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError) as exc:
                status, text, retry_after = None, f"{type(exc).__name__}: {exc}", None
            if status == 200:
                pinned = self._pinned(text, path)
                log.info(
                    "pinned %s on pinata: cid=%s size=%d attempts=%d", name, pinned.cid, pinned.size, attempt
                )
                return pinned
            detail = self._redact(text if status is None else _pinata_error_text(text))
            problem = (
                f"Pinata {path} for {name} " + (f"answered {status}" if status else "failed") + f": {detail}"
            )
            if status is not None and status != 429 and status < 500:
                raise PinataError(problem, status, detail)
            if attempt >= self._max_attempts:
                raise PinataError(f"{problem} (gave up after {attempt} attempts)", status, detail)
            delay = exponential_backoff(attempt, self._backoff_base, self._backoff_max)
            if retry_after is not None:
                delay = min(retry_after, self._longest_retry_after)
            log.warning("%s; attempt %d/%d, retrying in %.2fs", problem, attempt, self._max_attempts, delay)
            await asyncio.sleep(delay)

    async def _post(self, path: str, body: aiohttp.FormData | bytes) -> tuple[int, str, float | None]:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        headers = {"Authorization": f"Bearer {self._jwt.get_secret_value()}"}
        if isinstance(body, bytes):
            headers["Content-Type"] = JSON_CONTENT_TYPE
        async with self._session.post(self._api_url + path, data=body, headers=headers) as response:
            text = (await response.read()).decode("utf-8", errors="replace")
            retry_after = (
                _seconds_to_wait(response.headers.get("Retry-After")) if response.status == 429 else None
            )
            return response.status, text, retry_after

    def _pinned(self, text: str, path: str) -> Pinned:
        try:
            answer = json.loads(text)
            cid = answer["IpfsHash"]
            canonical_cid(cid)
            size = int(answer["PinSize"])
        except (ValueError, KeyError, TypeError) as exc:
            raise PinataError(f"Pinata {path} answered 200 without a usable IpfsHash/PinSize", 200) from exc
        return Pinned(cid, size, self.gateway_url(cid))

    def _redact(self, text: str) -> str:
        secret = self._jwt.get_secret_value()
        return text.replace(secret, "[redacted]") if secret else text


def _pinata_error_text(body: str) -> str:
    """Pinata's own words from an error body: `{"error": {"reason", "details"}}` or `{"error": "..."}`."""
    try:
        answer = json.loads(body)
    except ValueError:
        return body.strip()[:500] or "(empty body)"
    error = answer.get("error", answer) if isinstance(answer, dict) else answer
    if isinstance(error, dict):
        parts = [str(error[key]) for key in ("reason", "details", "message") if error.get(key)]
        if parts:
            return ": ".join(parts)[:500]
    return (error if isinstance(error, str) else json.dumps(error))[:500]


def _seconds_to_wait(retry_after: str | None) -> float | None:
    """A Retry-After header in either form it may take: delay seconds or an HTTP date."""
    if not retry_after:
        return None
    try:
        seconds = float(retry_after)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(retry_after)
        except (TypeError, ValueError):
            return None
        # HTTP dates are GMT; a date without a zone is read as UTC rather than failing the comparison.
        seconds = (when.replace(tzinfo=when.tzinfo or UTC) - datetime.now(UTC)).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None
