"""Intake's payment checks without any network: authorizations signed with eth_account are verified by
intake's own EIP-712 code, x402 headers made by the SDK are decoded, and each problem gets its code."""

import base64
import hashlib
import hmac
import json
from typing import Any

import pytest
from eth_abi import encode as abi_encode
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import keccak
from x402.http.utils import decode_payment_required_header, encode_payment_signature_header
from x402.schemas import PaymentPayload, PaymentRequired, PaymentRequirements
from x402.schemas.v1 import PaymentPayloadV1

from services.intake.callbacks import encode_body, sign
from services.intake.errors import ApiError, BadRequest, PaymentRejected
from services.intake.orders import validate_body
from services.intake.payments import (
    SECP256K1_N,
    PaymentTerms,
    authorization_digest,
    check_authorization,
    check_expiry,
    parse_address,
    parse_authorization,
    payment_id,
    recover_signer,
)
from services.intake.paywall import Paywall
from services.intake.throughput import Throughput
from shared.deploy import Deployment
from tests.support.payments import AUTHORIZATION_TYPES, authorize

USDC = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
TREASURY = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"
PRICE = 1_000_000
NOW = 1_750_000_000
TERMS = PaymentTerms(
    chain_id=31337, usdc=USDC, treasury=TREASURY, price=PRICE, domain_name="USD Coin", domain_version="2"
)
# TERMS as the deployment tests.support.payments signs for (token and minter play no part here).
DEPLOYMENT = Deployment(
    chain_id=31337,
    rpc_url="http://127.0.0.1:8545",
    token="0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512",
    nft="0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0",
    usdc=USDC,
    treasury=TREASURY,
    minter="0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
    price=PRICE,
    mint_amount=10**18,
    nft_price=5 * PRICE,
)
PAYER = Account.create()


def signed(
    account: Any = PAYER,
    *,
    valid_before: int = NOW + 900,
    contract: str = USDC,
    name: str = "USD Coin",
    **terms: Any,
) -> tuple[dict[str, Any], str]:
    """(authorization as an x402 client sends it, signature), signed with eth_account's generic code;
    by default for TERMS, else for another USDC `contract` or domain `name`, other terms as `authorize`."""
    deployment = DEPLOYMENT.model_copy(update={"usdc": contract, "usdc_name": name})
    authorization = authorize(account, deployment, valid_before=valid_before, **terms)
    return authorization.wire, authorization.signature


def rejected(code: str, call: Any, *args: Any) -> ApiError:
    with pytest.raises(ApiError) as info:
        call(*args)
    assert info.value.code == code, info.value.message
    return info.value


# --- signatures -----------------------------------------------------------------------------------


def test_digest_matches_eth_account_typed_data_hash() -> None:
    wire, _ = signed()
    auth = parse_authorization(wire, "0x" + "11" * 65)
    message = {
        "from": auth.payer,
        "to": auth.to,
        "value": auth.value,
        "validAfter": auth.valid_after,
        "validBefore": auth.valid_before,
        "nonce": bytes.fromhex(auth.nonce[2:]),
    }
    domain = {"name": "USD Coin", "version": "2", "chainId": 31337, "verifyingContract": USDC}
    typed = encode_typed_data(domain, AUTHORIZATION_TYPES, message)
    assert authorization_digest(auth, TERMS) == keccak(b"\x19" + typed.version + typed.header + typed.body)


def test_a_real_authorization_passes_and_recovers_to_the_payer() -> None:
    wire, signature = signed()
    auth = parse_authorization(wire, signature)
    check_authorization(auth, TERMS, NOW)
    assert recover_signer(authorization_digest(auth, TERMS), signature) == PAYER.address


def test_payment_id_is_keccak_of_abi_encoded_from_and_nonce() -> None:
    wire, signature = signed()
    auth = parse_authorization(wire, signature)
    expected = keccak(abi_encode(["address", "bytes32"], [auth.payer, bytes.fromhex(auth.nonce[2:])]))
    assert auth.payment_id == payment_id(PAYER.address, auth.nonce) == "0x" + expected.hex()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"signer": Account.create()},  # someone else signed
        {"chain_id": 1},  # another chain
        {"contract": "0x0000000000000000000000000000000000000001"},  # another token
        {"name": "USDC"},  # another domain name
    ],
    ids=["other-signer", "other-chain", "other-contract", "other-domain"],
)
def test_signature_for_anything_else_is_invalid(kwargs: dict[str, Any]) -> None:
    wire, signature = signed(**kwargs)
    rejected("invalid_signature", check_authorization, parse_authorization(wire, signature), TERMS, NOW)


def test_high_s_and_bad_v_signatures_are_refused_like_usdc_does() -> None:
    wire, signature = signed()
    raw = bytes.fromhex(signature[2:])
    r, s, v = raw[:32], int.from_bytes(raw[32:64], "big"), raw[64]
    # (r, n - s) with the flipped v recovers the same key, but USDC rejects s in the upper half.
    malleable = "0x" + (r + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - v])).hex()
    digest = authorization_digest(parse_authorization(wire, signature), TERMS)
    assert recover_signer(digest, malleable) is None
    assert recover_signer(digest, "0x" + (raw[:64] + bytes([29])).hex()) is None
    assert recover_signer(digest, "0x" + (bytes(32) + raw[32:]).hex()) is None
    # v as 0/1 is the same signature as 27/28.
    assert recover_signer(digest, "0x" + (raw[:64] + bytes([v - 27])).hex()) == PAYER.address


# --- field checks ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"to": "0x0000000000000000000000000000000000000002"}, "wrong_recipient"),
        ({"value": PRICE - 1}, "underpaid"),
        ({"valid_after": NOW + 10}, "authorization_not_yet_valid"),
        ({"valid_before": NOW}, "authorization_expired"),
        ({"valid_before": NOW - 100}, "authorization_expired"),
    ],
)
def test_field_checks(kwargs: dict[str, Any], code: str) -> None:
    wire, signature = signed(**kwargs)
    error = rejected(code, check_authorization, parse_authorization(wire, signature), TERMS, NOW)
    assert error.status == 402


def test_overpaying_is_fine() -> None:
    wire, signature = signed(value=PRICE * 3)
    check_authorization(parse_authorization(wire, signature), TERMS, NOW)


def test_expiry_against_the_estimated_batch_time() -> None:
    check_expiry(NOW + 100, NOW, wait_seconds=30, margin_seconds=60)
    error = rejected("authorization_expires_too_soon", check_expiry, NOW + 100, NOW, 50, 60)
    assert error.status == 402 and "estimated batch time" in error.message


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"from": "0x1234"}, "invalid_address"),
        ({"to": "not an address"}, "invalid_address"),
        ({"value": -1}, "invalid_authorization"),
        ({"value": "1e6"}, "invalid_authorization"),
        ({"value": True}, "invalid_authorization"),
        ({"value": 1.5}, "invalid_authorization"),
        ({"value": str(2**256)}, "invalid_authorization"),
        ({"validBefore": None}, "invalid_authorization"),
        ({"nonce": "0x1234"}, "invalid_authorization"),
        ({"nonce": 7}, "invalid_authorization"),
    ],
)
def test_malformed_authorizations_are_bad_requests(change: dict[str, Any], code: str) -> None:
    wire, signature = signed()
    error = rejected(code, parse_authorization, wire | change, signature)
    assert error.status == 400


def test_missing_fields_and_bad_signature_formats() -> None:
    wire, signature = signed()
    error = rejected("invalid_authorization", parse_authorization, {"from": wire["from"]}, signature)
    assert "validBefore" in error.message
    rejected("invalid_authorization", parse_authorization, "not an object", signature)
    for bad in (None, "0x1234", signature[2:], signature + "00", 12):
        assert rejected("invalid_signature", parse_authorization, wire, bad).status == 400


def test_numbers_may_be_json_numbers_or_decimal_strings_and_addresses_any_case() -> None:
    wire, signature = signed()
    as_numbers = wire | {
        "value": PRICE,
        "validAfter": 0,
        "validBefore": NOW + 900,
        "from": wire["from"].lower(),
    }
    auth = parse_authorization(as_numbers, signature.upper().replace("0X", "0x"))
    assert auth.payer == PAYER.address and auth.value == PRICE and auth.signature == signature.lower()
    check_authorization(auth, TERMS, NOW)


def test_mixed_case_address_needs_a_valid_checksum() -> None:
    good = PAYER.address
    assert parse_address(good.lower(), "a") == good
    assert parse_address("0x" + good[2:].upper(), "a") == good
    broken = good[:2] + good[2:].swapcase()
    if broken != good and broken[2:] not in (good[2:].lower(), good[2:].upper()):
        rejected("invalid_address", parse_address, broken, "a")


def test_authorization_data_is_what_the_batcher_settles_with() -> None:
    wire, signature = signed()
    stored = parse_authorization(wire | {"from": wire["from"].lower()}, signature).as_json()
    assert stored == {
        "from": PAYER.address,
        "to": TREASURY,
        "value": str(PRICE),
        "validAfter": "0",
        "validBefore": str(NOW + 900),
        "nonce": wire["nonce"],
        "signature": signature,
    }


# --- x402 headers ---------------------------------------------------------------------------------

PAYWALL = Paywall(TERMS, max_timeout_seconds=900, description="a mint")
URL = "https://mint.example/mint"


class Headers(dict):
    def get(self, key: str, default: Any = None) -> Any:
        return {k.upper(): v for k, v in self.items()}.get(key.upper(), default)


def v2_header(wire: dict[str, Any], signature: str, **accepted: Any) -> str:
    requirements = PAYWALL.requirements.model_copy(update=accepted)
    payload = PaymentPayload(payload={"authorization": wire, "signature": signature}, accepted=requirements)
    return encode_payment_signature_header(payload)


def test_offer_is_an_sdk_readable_payment_required() -> None:
    header, body = PAYWALL.offer(URL)
    required = decode_payment_required_header(header)
    assert isinstance(required, PaymentRequired)
    assert required.x402_version == 2
    [offer] = required.accepts
    assert offer == PaymentRequirements(
        scheme="exact",
        network="eip155:31337",
        asset=USDC,
        amount=str(PRICE),
        pay_to=TREASURY,
        max_timeout_seconds=900,
        extra={"name": "USD Coin", "version": "2"},
    )
    assert body == json.loads(base64.b64decode(header))
    assert decode_payment_required_header(PAYWALL.offer(URL, "underpaid")[0]).error == "underpaid"


def test_v2_payment_signature_header_decodes() -> None:
    wire, signature = signed()
    payment = PAYWALL.decode(Headers({"PAYMENT-SIGNATURE": v2_header(wire, signature)}))
    assert payment is not None and payment.version == 2
    assert payment.authorization == parse_authorization(wire, signature)


def test_v1_x_payment_header_decodes() -> None:
    wire, signature = signed()
    v1 = PaymentPayloadV1(
        scheme="exact", network="eip155:31337", payload={"authorization": wire, "signature": signature}
    )
    payment = PAYWALL.decode(Headers({"X-PAYMENT": encode_payment_signature_header(v1)}))
    assert payment is not None and payment.version == 1
    assert payment.authorization.payer == PAYER.address


def test_no_payment_header_is_none() -> None:
    assert PAYWALL.decode(Headers({"Content-Type": "application/json"})) is None


@pytest.mark.parametrize(
    ("accepted", "code"),
    [
        ({"network": "eip155:8453"}, "wrong_network"),
        ({"network": "base"}, "wrong_network"),
        ({"scheme": "upto"}, "unsupported_scheme"),
        ({"asset": "0x036CbD53842c5426634e7929541eC2318f3dCF7e"}, "wrong_asset"),
    ],
)
def test_v2_envelope_checks(accepted: dict[str, Any], code: str) -> None:
    wire, signature = signed()
    header = v2_header(wire, signature, **accepted)
    assert rejected(code, PAYWALL.decode, Headers({"PAYMENT-SIGNATURE": header})).status == 402


def test_v1_on_another_network_is_wrong_network() -> None:
    wire, signature = signed()
    v1 = PaymentPayloadV1(
        scheme="exact", network="base-sepolia", payload={"authorization": wire, "signature": signature}
    )
    rejected("wrong_network", PAYWALL.decode, Headers({"X-PAYMENT": encode_payment_signature_header(v1)}))


@pytest.mark.parametrize(
    "value",
    [
        "%%% not base64 %%%",
        base64.b64encode(b"not json").decode(),
        base64.b64encode(b"[1, 2]").decode(),
        base64.b64encode(json.dumps({"x402Version": 3}).encode()).decode(),
        base64.b64encode(json.dumps({"x402Version": 2, "accepted": "x"}).encode()).decode(),
        base64.b64encode(
            json.dumps({"x402Version": 1, "scheme": "exact", "network": "eip155:31337"}).encode()
        ).decode(),
        "A" * 10_000,
    ],
)
def test_garbage_headers_are_bad_requests(value: str) -> None:
    assert (
        rejected("invalid_payment_header", PAYWALL.decode, Headers({"PAYMENT-SIGNATURE": value})).status
        == 400
    )


# --- bodies and webhooks --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"paymentType": "bitcoin"},
        {"paymentType": 7},
        {"paymentType": "gasless", "authorization": {}},
        {"paymentType": "custom", "paymentTxHash": "0x1234"},
        {"paymentType": "custom", "paymentTxHash": "0x" + "ab" * 32, "extra": 1},
        {"paymentType": "custom", "paymentTxHash": "0x" + "ab" * 32, "logIndex": -1},
        {"paymentType": "custom", "paymentTxHash": "0x" + "ab" * 32, "logIndex": "1"},
        {"payer": "0x" + "ab" * 20, "buyer": "me"},
        {"callbackUrl": "ftp://example.com/hook"},
        {"callbackUrl": "/relative"},
        {"callbackUrl": "http://" + "a" * 2050 + ".com"},
        {"callbackURL": "https://example.com/hook"},
    ],
)
def test_bad_bodies(body: dict[str, Any]) -> None:
    with pytest.raises(BadRequest) as info:
        validate_body(body)
    assert info.value.code == "invalid_body"


def test_good_bodies() -> None:
    assert validate_body(None).paymentType == "x402"
    assert (
        validate_body({"callbackUrl": "https://example.com/hook?x=1"}).callbackUrl
        == "https://example.com/hook?x=1"
    )
    custom = validate_body({"paymentType": "custom", "paymentTxHash": "0x" + "AB" * 32, "logIndex": 3})
    assert custom.paymentType == "custom"
    # The original queue server's front ends send the payer with every body.
    assert validate_body({"payer": "0x" + "ab" * 20}).payer == "0x" + "ab" * 20


def test_webhook_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    body = encode_body({"queueId": "q", "event": "mint.completed"})
    assert body == '{"event":"mint.completed","queueId":"q"}'
    expected = hmac.new(b"secret", b"1700000000." + body.encode(), hashlib.sha256).hexdigest()
    assert sign(b"secret", 1_700_000_000, body) == f"sha256={expected}"


def test_rejections_carry_their_status() -> None:
    assert PaymentRejected("underpaid", "x").status == 402
    assert BadRequest("invalid_json", "x").body() == {
        "success": False,
        "error": "invalid_json",
        "message": "x",
    }


# --- estimated waits ------------------------------------------------------------------------------


def test_rate_uses_the_span_of_recent_completions_above_the_capacity() -> None:
    throughput = Throughput(capacity_per_second=50, min_sample=100)
    assert throughput.per_second == 50 and throughput.wait_seconds(120) == 3
    throughput.completed_last_minute, throughput.span_seconds = 99, 1
    assert throughput.per_second == 50  # too few to tell capacity from demand
    throughput.completed_last_minute, throughput.span_seconds = 1000, 10
    assert throughput.per_second == 100 and throughput.wait_seconds(201) == 3
    throughput.span_seconds = 0  # one block's worth, all at once
    assert throughput.per_second == 200
    assert throughput.wait_seconds(0) == 0


def test_a_slow_recent_minute_never_slows_the_estimate_below_the_capacity() -> None:
    # Right after an RPC outage: 150 completions over the last minute (2.5/s) while 1,500 wait. At that
    # rate the next payer would wait 600 s and a 900 s authorization would be refused (600 + 60 margin
    # + the seconds it took to sign and send); the batcher drains them at its capacity once the chain
    # answers, which the estimate follows.
    throughput = Throughput(capacity_per_second=50, min_sample=100)
    throughput.completed_last_minute, throughput.span_seconds = 150, 60
    assert throughput.measured_per_second == 2.5
    assert throughput.per_second == 50 and throughput.wait_seconds(1500) == 30
    check_expiry(NOW + 900 - 250, NOW, throughput.wait_seconds(1500), margin_seconds=60)
    with pytest.raises(PaymentRejected):  # a payment that cannot outlast the margin is still refused
        check_expiry(NOW + 80, NOW, throughput.wait_seconds(1500), margin_seconds=60)
