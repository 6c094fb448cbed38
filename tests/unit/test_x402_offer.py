"""The x402 v2 offer (its ResourceInfo per request, the payment-identifier declaration) and reading the
payment-identifier id back from a payment, as the official SDK writes one."""

import base64
import json
import os
from typing import Any

import pytest
from aiohttp.test_utils import make_mocked_request
from x402.extensions.payment_identifier import (
    PAYMENT_IDENTIFIER,
    append_payment_identifier_to_extensions,
    declare_payment_identifier_extension,
)
from x402.http.utils import decode_payment_required_header, encode_payment_signature_header
from x402.schemas import PaymentPayload, PaymentRequired, ResourceInfo

from services.intake.errors import ApiError
from services.intake.orders import Order, idempotency_key_of
from services.intake.payments import PaymentTerms
from services.intake.paywall import Paywall, payment_identifier, request_url

TERMS = PaymentTerms(
    chain_id=31337,
    usdc="0x5FbDB2315678afecb367f032d93F642f64180aa3",
    treasury="0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
    price=1_000_000,
    domain_name="USD Coin",
    domain_version="2",
)
PAYWALL = Paywall(TERMS, 900, "a mint of the token")
PAYER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"


def payment(extensions: dict[str, Any] | None) -> str:
    """A PAYMENT-SIGNATURE for PAYWALL's offer (the signature is only parsed here, not checked)."""
    wire = {
        "from": PAYER,
        "to": TERMS.treasury,
        "value": str(TERMS.price),
        "validAfter": "0",
        "validBefore": "9999999999",
        "nonce": "0x" + os.urandom(32).hex(),
    }
    payload = {"authorization": wire, "signature": "0x" + "11" * 65}
    return encode_payment_signature_header(
        PaymentPayload(payload=payload, accepted=PAYWALL.requirements, extensions=extensions)
    )


def rejected(code: str, call: Any, *args: Any) -> ApiError:
    with pytest.raises(ApiError) as info:
        call(*args)
    assert info.value.code == code, info.value.message
    return info.value


def test_offer_names_the_requested_resource_in_header_and_body() -> None:
    for url in ("http://127.0.0.1:8000/mint", "https://mint.example/mint"):
        header, body = PAYWALL.offer(url, "payment_required")
        required = decode_payment_required_header(header)
        assert isinstance(required, PaymentRequired)
        assert required.resource == ResourceInfo(
            url=url, description="a mint of the token", mime_type="application/json"
        )
        assert required.error == "payment_required"
        assert body == json.loads(base64.b64decode(header))
        assert body["resource"] == {
            "url": url,
            "description": "a mint of the token",
            "mimeType": "application/json",
        }
        # The SDK's own encoding of the same object: same keys, same order.
        assert list(body) == list(required.model_dump(mode="json", by_alias=True, exclude_none=True))


def test_offer_declares_the_payment_identifier_extension() -> None:
    _, body = PAYWALL.offer("https://mint.example/mint")
    assert body["extensions"] == {PAYMENT_IDENTIFIER: declare_payment_identifier_extension()}
    assert body["extensions"][PAYMENT_IDENTIFIER]["info"] == {"required": False}


def test_request_url_is_absolute_without_the_query() -> None:
    request = make_mocked_request("POST", "/mint?utm=x", headers={"Host": "mint.example:8443"})
    assert request_url(request) == "http://mint.example:8443/mint"
    assert request_url(request, "/nft/render") == "http://mint.example:8443/nft/render"
    # A Host yarl refuses does not turn the 402 into a 500.
    broken = make_mocked_request("POST", "/mint", headers={"Host": "mint.example:99999"})
    assert request_url(broken) == "/mint"


def test_sdk_client_payment_identifier_is_read() -> None:
    _, offer = PAYWALL.offer("https://mint.example/mint")
    extensions = append_payment_identifier_to_extensions(dict(offer["extensions"]), "pay_0123456789abcdef")
    decoded = PAYWALL.decode({"PAYMENT-SIGNATURE": payment(extensions)})
    assert decoded is not None and decoded.payment_identifier == "pay_0123456789abcdef"


@pytest.mark.parametrize(
    "extensions",
    [None, {}, {PAYMENT_IDENTIFIER: declare_payment_identifier_extension()}, {"bazaar": {"info": {}}}],
)
def test_no_identifier_without_an_id(extensions: dict[str, Any] | None) -> None:
    # An x402 client echoes the declaration it answers; that alone is no key.
    decoded = PAYWALL.decode({"PAYMENT-SIGNATURE": payment(extensions)})
    assert decoded is not None and decoded.payment_identifier is None


@pytest.mark.parametrize(
    "identifier", ["short", "x" * 129, "has space 0123456789", "pay_0123456789abcdef\n", 1234567890123456789]
)
def test_invalid_identifier_is_a_bad_request(identifier: Any) -> None:
    extensions = {PAYMENT_IDENTIFIER: {"info": {"required": False, "id": identifier}}}
    error = rejected("invalid_payment_identifier", payment_identifier, extensions)
    assert error.status == 400 and "16 to 128" in error.message


def test_malformed_extensions_are_bad_requests() -> None:
    rejected("invalid_payment_header", payment_identifier, ["not", "an", "object"])
    rejected("invalid_payment_identifier", payment_identifier, {PAYMENT_IDENTIFIER: "pay_0123456789abcdef"})
    rejected("invalid_payment_identifier", payment_identifier, {PAYMENT_IDENTIFIER: {"info": None}})


def test_idempotency_key_from_the_header_or_the_payment_identifier() -> None:
    with_id = Order("x402", None, payment_identifier="pay_0123456789abcdef")
    without = Order("x402", None)
    assert idempotency_key_of(None, without) is None
    assert idempotency_key_of("key-1", without) == "key-1"
    assert idempotency_key_of(None, with_id) == "pay_0123456789abcdef"
    assert idempotency_key_of("pay_0123456789abcdef", with_id) == "pay_0123456789abcdef"
    error = rejected("conflicting_idempotency_key", idempotency_key_of, "key-1", with_id)
    assert (
        error.status == 400 and "Idempotency-Key" in error.message and "payment-identifier" in error.message
    )
