"""The local pinning backend: content on disk under its real CID, and a gateway serving it."""

import asyncio
import contextlib
import json
import logging
import os
import tempfile
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from services.renderer.cid import InvalidCid, canonical_cid, cid_v1
from services.renderer.pinning import JSON_CONTENT_TYPE, Pinned, canonical_json

log = logging.getLogger(__name__)

# Content under a CID never changes, so gateways let everyone cache it for good (a year, as ipfs.io says).
IMMUTABLE_CACHE_CONTROL = "public, max-age=29030400, immutable"


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
