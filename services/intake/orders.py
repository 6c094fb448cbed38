"""What a POST /mint asks for: the JSON body (validated with pydantic), the payment it carries (x402
header, gasless authorization or custom transaction hash), the callback URL and the Idempotency-Key."""

import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError
from yarl import URL

from services.intake import safejson
from services.intake.errors import ApiError, BadRequest
from services.intake.payments import (
    ADDRESS_RE,
    AUTHORIZATION_SCHEMA,
    SIGNATURE_SCHEMA,
    Authorization,
    parse_address,
    parse_authorization,
)
from services.intake.paywall import Paywall
from services.intake.queue import PaymentRef
from services.intake.transfers import Claim, transfer_payment_id

IDEMPOTENCY_HEADER = "Idempotency-Key"
IDEMPOTENCY_KEY_RE = re.compile(r"[\x21-\x7e]{1,255}")
_TX_HASH = r"^0x[0-9a-fA-F]{64}$"
MAX_URL_CHARS = 2048


def _callback_url(value: str) -> str:
    if len(value) > MAX_URL_CHARS:
        raise ValueError(f"must be at most {MAX_URL_CHARS} characters")
    try:
        url = URL(value)
    except ValueError as exc:
        raise ValueError(f"is not a URL ({exc})") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError("must be an absolute http or https URL")
    return value


CallbackUrl = Annotated[
    str,
    AfterValidator(_callback_url),
    Field(
        description="an absolute http(s) URL POSTed the outcome (signed webhook)",
        json_schema_extra={"format": "uri", "maxLength": MAX_URL_CHARS},
    ),
]


# The original queue server's front ends send the payer's address with every request; checked by
# payments.parse_address (for its own error code) and against the payment's payer.
Payer = Annotated[
    str,
    Field(
        description="the payer's address; when given it must be the payment's payer",
        json_schema_extra={"pattern": f"^{ADDRESS_RE.pattern}$"},
    ),
]


class _Body(BaseModel):
    # Unknown fields are errors: a misspelt `callbackUrl` must not silently drop the callback.
    model_config = ConfigDict(extra="forbid", frozen=True)

    callbackUrl: CallbackUrl | None = None
    payer: Payer | None = None


class X402Body(_Body):
    """The payment travels in the PAYMENT-SIGNATURE / X-PAYMENT header; the body is optional."""

    paymentType: Literal["x402"] = "x402"


class GaslessBody(_Body):
    paymentType: Literal["gasless"]
    # Checked field by field by payments.parse_authorization, which x402 payloads go through too.
    authorization: Annotated[dict[str, Any], Field(json_schema_extra=AUTHORIZATION_SCHEMA)]
    signature: Annotated[str, Field(json_schema_extra=SIGNATURE_SCHEMA)]


class CustomBody(_Body):
    paymentType: Literal["custom"]
    paymentTxHash: str = Field(pattern=_TX_HASH)
    # Which USDC transfer of the transaction this request claims, where it has several to the treasury.
    logIndex: int | None = Field(default=None, ge=0, le=2**31 - 1, strict=True)


BODIES: dict[str, type[_Body]] = {"x402": X402Body, "gasless": GaslessBody, "custom": CustomBody}


@dataclass(frozen=True)
class Order:
    payment_type: str
    callback_url: str | None
    authorization: Authorization | None = None
    # A custom payment: the transfer it claims (the payer, if the body named one, in any case).
    claim: Claim | None = None
    # x402: the payment-identifier extension's id, which counts as an Idempotency-Key.
    payment_identifier: str | None = None

    @property
    def payer(self) -> str | None:
        """Who pays, as far as is known before any chain read."""
        if self.authorization is not None:
            return self.authorization.payer
        return self.claim.payer if self.claim is not None else None

    @property
    def payment_id(self) -> str | None:
        """The paymentId, where it is known before the chain is read (not for a custom payment that
        names no log: which transfer it claims comes from the receipt)."""
        if self.authorization is not None:
            return self.authorization.payment_id
        assert self.claim is not None
        if self.claim.log_index is None:
            return None
        return transfer_payment_id(self.claim.tx_hash, self.claim.log_index)

    @property
    def payment(self) -> PaymentRef:
        """The payment as an Idempotency-Key lookup compares it with the request the key names."""
        if self.claim is None:
            return PaymentRef(self.payment_id)
        return PaymentRef(self.payment_id, self.claim.tx_hash, self.claim.log_index)


async def read_body(request: web.Request) -> dict[str, Any] | None:
    """The JSON object in the body, or None for an empty body (a bare x402 request)."""
    if not request.body_exists:
        return None
    raw = await request.read()  # aiohttp answers 413 past client_max_size
    if not raw.strip():
        return None
    if request.content_type != "application/json":
        raise ApiError(
            "unsupported_media_type", f"the body must be application/json, not {request.content_type!r}", 415
        )
    try:
        data = safejson.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest("invalid_json", f"the body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest("invalid_body", "the body must be a JSON object")
    return data


def validate_body(data: dict[str, Any] | None) -> _Body:
    data = data or {}
    payment_type = data.get("paymentType", "x402")
    model = BODIES.get(payment_type) if isinstance(payment_type, str) else None
    if model is None:
        raise BadRequest(
            "invalid_body", f"paymentType must be one of {', '.join(BODIES)}, got {payment_type!r}"
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        error = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(part) for part in error["loc"]) or "body"
        raise BadRequest("invalid_body", f"{where}: {error['msg']}") from None


def idempotency_key(request: web.Request) -> str | None:
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is None:
        return None
    if not IDEMPOTENCY_KEY_RE.fullmatch(key):
        raise BadRequest(
            "invalid_idempotency_key",
            "Idempotency-Key must be 1 to 255 visible ASCII characters without spaces",
        )
    return key


def idempotency_key_of(header_key: str | None, order: Order) -> str | None:
    """The request's idempotency key: the Idempotency-Key header or the x402 payment-identifier,
    which x402 clients send in the payment instead. Sent in both, it must be the same key."""
    identifier = order.payment_identifier
    if header_key is not None and identifier is not None and header_key != identifier:
        raise BadRequest(
            "conflicting_idempotency_key",
            "the Idempotency-Key header and the x402 payment-identifier id differ: send one key, or "
            "the same in both",
        )
    return header_key if header_key is not None else identifier


def parse_order(request: web.Request, data: dict[str, Any] | None, paywall: Paywall) -> Order | None:
    """The order in this request, or None when it carries no payment at all (answered with 402)."""
    body = validate_body(data)
    claimed = parse_address(body.payer, "payer", "invalid_payer") if body.payer is not None else None
    x402 = paywall.decode(request.headers)
    if x402 is not None:
        if not isinstance(body, X402Body):
            raise BadRequest(
                "conflicting_payment", "send either an x402 payment header or a paymentType body"
            )
        order = Order(
            "x402",
            body.callbackUrl,
            authorization=x402.authorization,
            payment_identifier=x402.payment_identifier,
        )
        return _checked(order, claimed)
    if isinstance(body, GaslessBody):
        authorization = parse_authorization(body.authorization, body.signature)
        return _checked(Order("gasless", body.callbackUrl, authorization=authorization), claimed)
    if isinstance(body, CustomBody):
        claim = Claim(body.paymentTxHash.lower(), body.logIndex, claimed)
        return Order("custom", body.callbackUrl, claim=claim)
    return None


def _checked(order: Order, claimed_payer: str | None) -> Order:
    """An authorization order whose body also names a payer: it must be the authorization's signer."""
    if claimed_payer is not None and claimed_payer != order.payer:
        raise BadRequest("payer_mismatch", f"the payment is from {order.payer}, not {claimed_payer}")
    return order
