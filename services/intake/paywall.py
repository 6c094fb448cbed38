"""The x402 side of intake: the PAYMENT-REQUIRED offer and decoding a PAYMENT-SIGNATURE (v2) or
X-PAYMENT (v1) header into the EIP-3009 authorization it carries. Pure logic.

Headers are decoded with plain base64 + json and checked field by field (not through the SDK's
pydantic models): it is the hot path, and field checks give each problem its own error code.
"""

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from x402.http.constants import PAYMENT_REQUIRED_HEADER, PAYMENT_SIGNATURE_HEADER, X_PAYMENT_HEADER
from x402.http.utils import encode_payment_required_header
from x402.mechanisms.evm.v1.constants import V1_NETWORK_CHAIN_IDS
from x402.schemas import PaymentRequired, PaymentRequirements

from services.intake.errors import BadRequest, PaymentRejected
from services.intake.payments import Authorization, PaymentTerms, parse_authorization

SCHEME = "exact"
# aiohttp's parser refuses a longer header value itself (its max_field_size), with a plain-text 400.
MAX_HEADER_CHARS = 8190


@dataclass(frozen=True)
class X402Payment:
    version: int
    authorization: Authorization


class Paywall:
    """The one payment option intake offers over x402, encoded once."""

    def __init__(self, terms: PaymentTerms, max_timeout_seconds: int) -> None:
        self.terms = terms
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

        self._offers: dict[str | None, tuple[str, dict[str, Any]]] = {}

    def offer(self, error: str | None = None) -> tuple[str, dict[str, Any]]:
        """(PAYMENT-REQUIRED header value, the same PaymentRequired as JSON) for a 402 with `error`."""
        if error not in self._offers:
            required = PaymentRequired(accepts=[self.requirements], error=error)
            as_json = required.model_dump(mode="json", by_alias=True, exclude_none=True)
            self._offers[error] = (encode_payment_required_header(required), as_json)
        return self._offers[error]

    def headers(self, error: str | None = None) -> dict[str, str]:
        return {PAYMENT_REQUIRED_HEADER: self.offer(error)[0]}

    def decode(self, headers: Any) -> X402Payment | None:
        """The payment in the request headers, or None when there is none. Raises on a bad one."""
        value = headers.get(PAYMENT_SIGNATURE_HEADER) or headers.get(X_PAYMENT_HEADER)
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
            version, parse_authorization(payload.get("authorization"), payload.get("signature"))
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


def decode_header(value: str) -> dict[str, Any]:
    """A base64 JSON object, as x402 sends its payment headers."""
    if len(value) > MAX_HEADER_CHARS:
        raise BadRequest("invalid_payment_header", "the payment header is too long")
    try:
        data = json.loads(base64.b64decode(value, validate=True))
    except (binascii.Error, ValueError) as exc:
        raise BadRequest("invalid_payment_header", f"the payment header is not base64 JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest("invalid_payment_header", "the payment header must hold a JSON object")
    return data
