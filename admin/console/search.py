"""The lists' query parameters, checked (pure: unit-tested). One search box may hold a queue id, a
payer or wallet address, a transaction hash or a batch id; what it is decides what it searches."""

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from admin.console.middleware import ApiError
from shared.addresses import ADDRESS_RE, checksummed

TX_HASH = re.compile(r"0x[0-9a-fA-F]{64}")
REQUEST_STATUSES = (
    "rendering",
    "rendered",
    "pending",
    "batched",
    "sent",
    "completed",
    "failed",
    "confirmation_failed",
)
BATCH_STATUSES = ("signed", "sent", "confirmed", "reverted")
RENDER_STATUSES = ("waiting", "active", "completed", "failed")
DEFAULT_LIMIT, MAX_LIMIT = 50, 200


@dataclass(frozen=True)
class RequestSearch:
    status: str | None = None
    payer: str | None = None
    request_id: uuid.UUID | None = None
    tx_hash: str | None = None
    before: int | None = None
    limit: int = DEFAULT_LIMIT


@dataclass(frozen=True)
class BatchSearch:
    status: str | None = None
    wallet: str | None = None
    tx_hash: str | None = None
    batch_id: int | None = None
    before: int | None = None
    limit: int = DEFAULT_LIMIT


@dataclass(frozen=True)
class RenderSearch:
    status: str | None = None
    before: datetime | None = None
    limit: int = DEFAULT_LIMIT


def bad(name: str, message: str) -> ApiError:
    return ApiError("invalid_query", f"{name}: {message}", 400)


def choice(query: Mapping[str, str], name: str, allowed: tuple[str, ...]) -> str | None:
    value = query.get(name) or None
    if value is not None and value not in allowed:
        raise bad(name, f"must be one of {', '.join(allowed)}")
    return value


def address(value: str, name: str) -> str:
    if not ADDRESS_RE.fullmatch(value):
        raise bad(name, "must be a 0x-prefixed 20-byte hex address")
    return checksummed(value)


def tx_hash(value: str, name: str) -> str:
    if not TX_HASH.fullmatch(value):
        raise bad(name, "must be a 0x-prefixed 32-byte hex transaction hash")
    return value.lower()


def queue_id(value: str, name: str = "id") -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise bad(name, "must be a UUID") from None


def integer(query: Mapping[str, str], name: str, low: int, high: int) -> int | None:
    text = query.get(name)
    if not text:
        return None
    if not text.isdigit() or not low <= int(text) <= high:
        raise bad(name, f"must be a whole number from {low} to {high}")
    return int(text)


def limit(query: Mapping[str, str]) -> int:
    return integer(query, "limit", 1, MAX_LIMIT) or DEFAULT_LIMIT


def request_search(query: Mapping[str, str]) -> RequestSearch:
    payer = address(query["payer"], "payer") if query.get("payer") else None
    found_id = queue_id(query["id"]) if query.get("id") else None
    found_tx = tx_hash(query["tx"], "tx") if query.get("tx") else None
    text = (query.get("q") or "").strip()
    if text:
        if TX_HASH.fullmatch(text):
            found_tx = text.lower()
        elif ADDRESS_RE.fullmatch(text):
            payer = checksummed(text)
        else:
            found_id = queue_id(text, "q (a queue id, payer address or transaction hash)")
    return RequestSearch(
        status=choice(query, "status", REQUEST_STATUSES),
        payer=payer,
        request_id=found_id,
        tx_hash=found_tx,
        before=integer(query, "before", 1, 2**63 - 1),
        limit=limit(query),
    )


def batch_search(query: Mapping[str, str]) -> BatchSearch:
    wallet = address(query["wallet"], "wallet") if query.get("wallet") else None
    found_tx = tx_hash(query["tx"], "tx") if query.get("tx") else None
    found_id = integer(query, "id", 1, 2**63 - 1)
    text = (query.get("q") or "").strip()
    if text:
        if TX_HASH.fullmatch(text):
            found_tx = text.lower()
        elif ADDRESS_RE.fullmatch(text):
            wallet = checksummed(text)
        elif text.isdigit() and 0 < int(text) < 2**63:
            found_id = int(text)
        else:
            raise bad("q", "a batch id, wallet address or transaction hash")
    return BatchSearch(
        status=choice(query, "status", BATCH_STATUSES),
        wallet=wallet,
        tx_hash=found_tx,
        batch_id=found_id,
        before=integer(query, "before", 1, 2**63 - 1),
        limit=limit(query),
    )


def render_search(query: Mapping[str, str]) -> RenderSearch:
    before = None
    if query.get("before"):
        try:
            before = datetime.fromisoformat(query["before"].replace("Z", "+00:00"))
        except ValueError:
            raise bad("before", "must be an ISO 8601 time") from None
        if before.tzinfo is None:
            raise bad("before", "must carry its UTC offset")
    return RenderSearch(status=choice(query, "status", RENDER_STATUSES), before=before, limit=limit(query))
