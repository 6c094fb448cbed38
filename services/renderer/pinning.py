"""Where rendered files and their metadata are pinned: one Pinner interface, two backends.

`pinstore.LocalPinStore` keeps content on disk under its real CID and serves it through a gateway route,
for dev and tests; `pinata.PinataPinner` pins through Pinata's HTTP API, rate-limited on our side and
retried. `RendererSettings.pinner()` picks one.
"""

import json
from dataclasses import dataclass
from typing import Any, Protocol

JSON_CONTENT_TYPE = "application/json"


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
