"""The Pinata pinning backend: its HTTP API, rate-limited on our side, retried on 429 and 5xx."""

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

import aiohttp
from pydantic import SecretStr

from services.renderer.cid import canonical_cid
from services.renderer.pinning import JSON_CONTENT_TYPE, Pinned, canonical_json
from services.renderer.ratelimit import TokenBucket
from shared.backoff import exponential_backoff, retry_after_seconds

log = logging.getLogger(__name__)

PINATA_API_URL = "https://api.pinata.cloud"
PINATA_GATEWAY_URL = "https://gateway.pinata.cloud"


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
                retry_after_seconds(response.headers.get("Retry-After")) if response.status == 429 else None
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
