"""The x402 side of intake: the PAYMENT-REQUIRED offer and decoding a PAYMENT-SIGNATURE (v2) or
X-PAYMENT (v1) header into the EIP-3009 authorization it carries, and the id of the x402
payment-identifier extension (an Idempotency-Key in the payment). Pure logic.

Headers are decoded with plain base64 + json and checked field by field (not through the SDK's
pydantic models): it is the hot path, and field checks give each problem its own error code.
"""

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from x402.extensions.payment_identifier import (
    PAYMENT_ID_MAX_LENGTH,
    PAYMENT_ID_MIN_LENGTH,
    PAYMENT_ID_PATTERN,
    PAYMENT_IDENTIFIER,
    declare_payment_identifier_extension,
)
from x402.http.constants import PAYMENT_SIGNATURE_HEADER, X_PAYMENT_HEADER
from x402.mechanisms.evm.v1.constants import V1_NETWORK_CHAIN_IDS
from x402.schemas import PaymentRequired, PaymentRequirements, ResourceInfo

from services.intake import safejson
from services.intake.errors import BadRequest, PaymentRejected
from services.intake.payments import Authorization, PaymentTerms, parse_authorization

SCHEME = "exact"
# What a paid request answers with (the ResourceInfo's mimeType).
RESOURCE_MIME_TYPE = "application/json"
# aiohttp's parser refuses a longer header value itself (its max_field_size), with a plain-text 400.
MAX_HEADER_CHARS = 8190


@dataclass(frozen=True)
class X402Payment:
    version: int
    authorization: Authorization
    # The x402 payment-identifier extension's id: an Idempotency-Key carried in the payment.
    payment_identifier: str | None = None


class Paywall:
    """The one payment option intake offers over x402 for one resource (`description`)."""

    def __init__(self, terms: PaymentTerms, max_timeout_seconds: int, description: str) -> None:
        self.terms = terms
        self.description = description
        self.requirements = PaymentRequirements(
            scheme=SCHEME,
            network=terms.network,
            asset=terms.usdc,
            amount=str(terms.price),
            pay_to=terms.treasury,
            max_timeout_seconds=max_timeout_seconds,
            # The EIP-712 domain the client signs the authorization for.
            extra={"name": terms.domain_name, "version": terms.domain_version},
        )

        self._offers: dict[str | None, dict[str, Any]] = {}

    def offer(self, url: str, error: str | None = None) -> tuple[str, dict[str, Any]]:
        """(PAYMENT-REQUIRED header value, the same PaymentRequired as JSON) for a 402 with `error`
        answering a request for `url` (the ResourceInfo's url, so it is per request)."""
        if error not in self._offers:
            required = PaymentRequired(
                accepts=[self.requirements],
                error=error,
                resource=ResourceInfo(url=url, description=self.description, mime_type=RESOURCE_MIME_TYPE),
                # Its id is honoured as an Idempotency-Key (orders.idempotency_key_of).
                extensions={PAYMENT_IDENTIFIER: declare_payment_identifier_extension()},
            )
            self._offers[error] = required.model_dump(mode="json", by_alias=True, exclude_none=True)
        cached = self._offers[error]
        # Only the url differs between requests: the rest is dumped once per error, and the dict
        # keeps the SDK's key order.
        as_json = {**cached, "resource": {**cached["resource"], "url": url}}
        header = base64.b64encode(json.dumps(as_json, separators=(",", ":")).encode()).decode()
        return header, as_json

    def payment_required(self) -> PaymentRejected:
        """The 402 for a request carrying no payment at all."""
        return PaymentRejected(
            "payment_required",
            f"this costs {self.terms.price} USDC units: pay with x402 (PAYMENT-SIGNATURE header), a gasless "
            "EIP-3009 authorization or a custom transfer",
        )

    def decode(self, headers: Any) -> X402Payment | None:
        """The payment in the request headers, or None when there is none. Raises on a bad one."""
        value = payment_header(headers)
        if not value:
            return None
        data = decode_header(value)
        version = data.get("x402Version")
        if version == 2:
            accepted = data.get("accepted")
            if not isinstance(accepted, dict):
                raise BadRequest("invalid_payment_header", "an x402 v2 payment needs an `accepted` object")
            self._check_offer(accepted.get("scheme"), accepted.get("network"), accepted.get("asset"))
        elif version == 1:
            self._check_offer(data.get("scheme"), data.get("network"), None)
        else:
            raise BadRequest("invalid_payment_header", "x402Version must be 1 or 2")
        payload = data.get("payload")
        if not isinstance(payload, dict):
            raise BadRequest("invalid_payment_header", "the payment has no `payload` object")
        return X402Payment(
            version,
            parse_authorization(payload.get("authorization"), payload.get("signature")),
            payment_identifier(data.get("extensions")) if version == 2 else None,
        )

    def _check_offer(self, scheme: Any, network: Any, asset: Any) -> None:
        if scheme != SCHEME:
            raise PaymentRejected(
                "unsupported_scheme", f"only the {SCHEME!r} scheme is accepted, got {scheme!r}"
            )
        if network != self.terms.network and V1_NETWORK_CHAIN_IDS.get(str(network)) != self.terms.chain_id:
            raise PaymentRejected(
                "wrong_network", f"payments must be on {self.terms.network}, got {network!r}"
            )
        if asset is not None and (not isinstance(asset, str) or asset.lower() != self.terms.usdc.lower()):
            raise PaymentRejected(
                "wrong_asset", f"payments must be in USDC at {self.terms.usdc}, got {asset!r}"
            )


def payment_header(headers: Any) -> str | None:
    """The x402 payment header's value (v2 PAYMENT-SIGNATURE, else v1 X-PAYMENT), if one is sent."""
    return headers.get(PAYMENT_SIGNATURE_HEADER) or headers.get(X_PAYMENT_HEADER) or None


def request_url(request: web.BaseRequest, path: str | None = None) -> str:
    """The absolute URL of the request (or of `path` on the same origin), without its query."""
    try:
        return str(request.url.with_path(path or request.path).with_query(None))
    except ValueError:
        # A Host header yarl refuses (a port out of range): the path is all that is known.
        return path or request.path


def payment_identifier(extensions: Any) -> str | None:
    """The id of the payment-identifier extension in a v2 payment's `extensions`, if it has one. An
    x402 client echoes the declaration of the 402 it answers; without an `id` that is no key."""
    if extensions is None:
        return None
    if not isinstance(extensions, dict):
        raise BadRequest("invalid_payment_header", "the payment's `extensions` must be an object")
    extension = extensions.get(PAYMENT_IDENTIFIER)
    if extension is None:
        return None
    info = extension.get("info") if isinstance(extension, dict) else None
    if not isinstance(info, dict):
        raise BadRequest(
            "invalid_payment_identifier", f"extensions.{PAYMENT_IDENTIFIER} must be an object with `info`"
        )
    identifier = info.get("id")
    if identifier is None:
        return None
    # fullmatch: the SDK's is_valid_payment_id lets a trailing newline through (`$`).
    if (
        not isinstance(identifier, str)
        or not PAYMENT_ID_MIN_LENGTH <= len(identifier) <= PAYMENT_ID_MAX_LENGTH
        or not PAYMENT_ID_PATTERN.fullmatch(identifier)
    ):
        raise BadRequest(
            "invalid_payment_identifier",
            f"extensions.{PAYMENT_IDENTIFIER}.info.id must be {PAYMENT_ID_MIN_LENGTH} to "
            f"{PAYMENT_ID_MAX_LENGTH} letters, digits, `-` or `_`",
        )
    return identifier


def decode_header(value: str) -> dict[str, Any]:
    """A base64 JSON object, as x402 sends its payment headers."""
    if len(value) > MAX_HEADER_CHARS:
        raise BadRequest("invalid_payment_header", "the payment header is too long")
    try:
        data = safejson.loads(base64.b64decode(value, validate=True))
    except (binascii.Error, ValueError) as exc:
        raise BadRequest("invalid_payment_header", f"the payment header is not base64 JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest("invalid_payment_header", "the payment header must hold a JSON object")
    return data
