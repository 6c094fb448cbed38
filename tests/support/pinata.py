"""A Pinata-like server for tests: its two pin endpoints, refusals queued up front, arrivals recorded,
and a gate that holds the next file pin open (a renderer can be killed while it waits)."""

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from services.renderer.cid import cid_v1
from services.renderer.pinning import canonical_json


@dataclass
class FakePinata:
    """Pinata's two pin endpoints, with refusals queued up front and every arrival recorded."""

    token: str
    refusals: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)
    pinned: list[dict[str, Any]] = field(default_factory=list)
    # When set, the next file pin is held open, unpinned, until `release` (then refused with 503);
    # `holding` is set once it arrives.
    hold_next_file: bool = False
    holding: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/pinning/pinFileToIPFS", self.pin_file),
            web.post("/pinning/pinJSONToIPFS", self.pin_json),
        ]

    async def pin_file(self, request: web.Request) -> web.Response:
        if (refusal := self._refusal(request)) is not None:
            return refusal
        if self.hold_next_file:
            self.hold_next_file = False
            self.holding.set()
            await self.release.wait()
            return web.json_response({"error": "held, never pinned"}, status=503)
        form = await request.post()
        upload = form["file"]
        assert isinstance(upload, web.FileField)
        content = upload.file.read()
        self.pinned.append(
            {
                "content": content,
                "filename": upload.filename,
                "content_type": upload.content_type,
                "metadata": json.loads(str(form["pinataMetadata"])),
                "options": json.loads(str(form["pinataOptions"])),
            }
        )
        return self._answer(content)

    async def pin_json(self, request: web.Request) -> web.Response:
        if (refusal := self._refusal(request)) is not None:
            return refusal
        body = await request.json()
        self.pinned.append(body)
        return self._answer(canonical_json(body["pinataContent"]))

    def _refusal(self, request: web.Request) -> web.Response | None:
        self.arrivals.append(time.monotonic())
        received = request.headers.get("Authorization", "")
        if received != f"Bearer {self.token}":
            # Echoes the credential back, as careless servers do; the client must not repeat it.
            error = {"reason": "INVALID_CREDENTIALS", "details": f"Invalid authentication: {received}"}
            return web.json_response({"error": error}, status=401)
        if self.refusals:
            status, headers = self.refusals.pop(0)
            return web.json_response({"error": f"refused with {status}"}, status=status, headers=headers)
        return None

    @staticmethod
    def _answer(content: bytes) -> web.Response:
        answer = {
            "IpfsHash": cid_v1(content),
            "PinSize": len(content),
            "Timestamp": "2025-01-01T00:00:00.000Z",
        }
        return web.json_response(answer)
