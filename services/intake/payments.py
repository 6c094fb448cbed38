"""EIP-3009 authorizations: parsing, the EIP-712 digest, signature recovery and the checks a payment
must pass before it is queued. Pure logic: no network, no clock of its own (callers pass `now`).

The digest is built from a precomputed domain separator and a hand-encoded struct hash rather than
eth_account's generic `encode_typed_data`: measured 0.15 ms against 0.49 ms per request, and the unit
tests check both agree.
"""

import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from coincurve import PublicKey
from eth_utils import keccak, to_checksum_address

from services.intake.errors import BadRequest, PaymentRejected
from shared import addresses
from shared.addresses import ADDRESS_RE, checksummed
from shared.deploy import Deployment

DOMAIN_TYPEHASH = keccak(
    b"EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)
TRANSFER_WITH_AUTHORIZATION_TYPEHASH = keccak(
    b"TransferWithAuthorization(address from,address to,uint256 value,uint256 validAfter,uint256 validBefore,"
    b"bytes32 nonce)"
)
# secp256k1 group order. USDC (and OpenZeppelin's ECDSA) reject s in the upper half (EIP-2), so a
# signature that only recovers with a high s would be accepted here and fail on-chain.
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
UINT256_MAX = 2**256 - 1

BYTES32_RE = re.compile(r"0x[0-9a-fA-F]{64}")
SIGNATURE_RE = re.compile(r"0x[0-9a-fA-F]{130}")
UINT_RE = re.compile(r"[0-9]{1,78}")
AUTHORIZATION_FIELDS = ("from", "to", "value", "validAfter", "validBefore", "nonce")


def _matching(regex: re.Pattern[str]) -> dict[str, str]:
    return {"type": "string", "pattern": f"^{regex.pattern}$"}


_UINT_SCHEMA = {"anyOf": [_matching(UINT_RE), {"type": "integer", "minimum": 0}]}
# What parse_authorization accepts, as JSON Schema for the API description.
AUTHORIZATION_SCHEMA = {
    "description": "an EIP-3009 TransferWithAuthorization to the treasury, in USDC base units",
    "type": "object",
    "required": list(AUTHORIZATION_FIELDS),
    "properties": {
        "from": _matching(ADDRESS_RE),
        "to": _matching(ADDRESS_RE),
        "value": _UINT_SCHEMA,
        "validAfter": _UINT_SCHEMA,
        "validBefore": _UINT_SCHEMA,
        "nonce": _matching(BYTES32_RE),
    },
}
SIGNATURE_SCHEMA = _matching(SIGNATURE_RE)


@dataclass(frozen=True)
class PaymentTerms:
    """What one mint costs on this deployment, and the EIP-712 domain payers sign for."""

    chain_id: int
    usdc: str
    treasury: str
    price: int
    domain_name: str
    domain_version: str
    # mintline's mint contracts (lower-case): their transactions settle authorizations, so no transfer
    # in one of them is ever a custom payment.
    mint_contracts: frozenset[str] = frozenset()

    @classmethod
    def for_deployment(cls, deployment: Deployment, kind: str = "token") -> "PaymentTerms":
        """The terms of a token mint, or of an NFT render and mint (`kind="nft"`)."""
        return cls(
            chain_id=deployment.chain_id,
            usdc=to_checksum_address(deployment.usdc),
            treasury=to_checksum_address(deployment.treasury),
            price=deployment.nft_price if kind == "nft" else deployment.price,
            domain_name=deployment.usdc_name,
            domain_version=deployment.usdc_version,
            mint_contracts=frozenset({deployment.token.lower(), deployment.nft.lower()}),
        )

    @property
    def network(self) -> str:
        """The CAIP-2 id x402 uses for this chain."""
        return f"eip155:{self.chain_id}"

    @cached_property
    def domain_separator(self) -> bytes:
        """USDC's EIP-712 domain separator, computed once."""
        return keccak(
            DOMAIN_TYPEHASH
            + keccak(self.domain_name.encode())
            + keccak(self.domain_version.encode())
            + self.chain_id.to_bytes(32, "big")
            + _word(self.usdc)
        )


@dataclass(frozen=True)
class Authorization:
    """A TransferWithAuthorization and its signature; addresses checksummed, hex lower-case."""

    payer: str
    to: str
    value: int
    valid_after: int
    valid_before: int
    nonce: str
    signature: str

    @property
    def payment_id(self) -> str:
        return payment_id(self.payer, self.nonce)

    def as_json(self) -> dict[str, str]:
        """The `authorization_data` row value the batcher settles with."""
        return {
            "from": self.payer,
            "to": self.to,
            "value": str(self.value),
            "validAfter": str(self.valid_after),
            "validBefore": str(self.valid_before),
            "nonce": self.nonce,
            "signature": self.signature,
        }


def payment_id(payer: str, nonce: str) -> str:
    """keccak256(abi.encode(address from, bytes32 nonce)): the paymentId of an EIP-3009 payment."""
    return "0x" + keccak(_word(payer) + bytes.fromhex(nonce[2:])).hex()


def parse_address(value: Any, field: str, code: str = "invalid_address") -> str:
    """A 0x address as its checksummed form (shared.addresses), or a 400 with `code` naming `field`."""
    try:
        return addresses.parse_address(value)
    except addresses.AddressError as exc:
        raise BadRequest(code, f"{field} {exc}") from None


def parse_bytes32(value: Any, field: str, code: str = "invalid_authorization") -> str:
    if not isinstance(value, str) or not BYTES32_RE.fullmatch(value):
        raise BadRequest(code, f"{field} must be 0x-prefixed 32-byte hex")
    return value.lower()


def _parse_uint(value: Any, field: str) -> int:
    # JSON numbers or decimal strings (x402 clients send strings); never bools or floats.
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and UINT_RE.fullmatch(value):
        number = int(value)
    else:
        raise BadRequest("invalid_authorization", f"authorization.{field} must be a non-negative integer")
    if not 0 <= number <= UINT256_MAX:
        raise BadRequest("invalid_authorization", f"authorization.{field} is out of the uint256 range")
    return number


def parse_authorization(raw: Any, signature: Any) -> Authorization:
    """The authorization object and signature as sent (x402 payload or gasless body), validated."""
    if not isinstance(raw, dict):
        raise BadRequest("invalid_authorization", "authorization must be an object")
    missing = [name for name in AUTHORIZATION_FIELDS if name not in raw]
    if missing:
        raise BadRequest("invalid_authorization", f"authorization is missing {', '.join(missing)}")
    if not isinstance(signature, str) or not SIGNATURE_RE.fullmatch(signature):
        raise BadRequest("invalid_signature", "signature must be a 0x-prefixed 65-byte hex string")
    return Authorization(
        payer=parse_address(raw["from"], "authorization.from"),
        to=parse_address(raw["to"], "authorization.to"),
        value=_parse_uint(raw["value"], "value"),
        valid_after=_parse_uint(raw["validAfter"], "validAfter"),
        valid_before=_parse_uint(raw["validBefore"], "validBefore"),
        nonce=parse_bytes32(raw["nonce"], "authorization.nonce"),
        signature=signature.lower(),
    )


def authorization_digest(auth: Authorization, terms: PaymentTerms) -> bytes:
    """The EIP-712 hash USDC checks the signature against."""
    struct_hash = keccak(
        TRANSFER_WITH_AUTHORIZATION_TYPEHASH
        + _word(auth.payer)
        + _word(auth.to)
        + auth.value.to_bytes(32, "big")
        + auth.valid_after.to_bytes(32, "big")
        + auth.valid_before.to_bytes(32, "big")
        + bytes.fromhex(auth.nonce[2:])
    )
    return keccak(b"\x19\x01" + terms.domain_separator + struct_hash)


def recover_signer(digest: bytes, signature: str) -> str | None:
    """The address that signed `digest`, or None for a signature USDC would not accept."""
    raw = bytes.fromhex(signature[2:])
    r, s, v = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:64], "big"), raw[64]
    if v >= 27:
        v -= 27
    if v not in (0, 1) or not 0 < r < SECP256K1_N or not 0 < s <= SECP256K1_N // 2:
        return None
    try:
        public_key = PublicKey.from_signature_and_message(raw[:64] + bytes([v]), digest, hasher=None)
    except ValueError:
        return None
    return checksummed("0x" + keccak(public_key.format(compressed=False)[1:])[-20:].hex())


def check_authorization(auth: Authorization, terms: PaymentTerms, now: int) -> None:
    """Everything about an authorization that needs no chain state; raises the first problem found."""
    if auth.to != terms.treasury:
        raise PaymentRejected("wrong_recipient", f"the authorization must pay {terms.treasury}")
    if auth.value < terms.price:
        raise PaymentRejected(
            "underpaid", f"a mint costs {terms.price} USDC units; the authorization is for {auth.value}"
        )
    if auth.valid_after > now:
        raise PaymentRejected(
            "authorization_not_yet_valid", f"the authorization is valid only after {auth.valid_after}"
        )
    if auth.valid_before <= now:
        raise PaymentRejected("authorization_expired", f"the authorization expired at {auth.valid_before}")
    if recover_signer(authorization_digest(auth, terms), auth.signature) != auth.payer:
        raise PaymentRejected(
            "invalid_signature",
            f"the signature is not a TransferWithAuthorization by {auth.payer} for USDC {terms.usdc} "
            f"on chain {terms.chain_id}",
        )


def check_expiry(valid_before: int, now: int, wait_seconds: float, margin_seconds: int) -> None:
    """Reject an authorization that would expire before its batch is likely sent."""
    needed = now + wait_seconds + margin_seconds
    if valid_before < needed:
        raise PaymentRejected(
            "authorization_expires_too_soon",
            f"the authorization expires at {valid_before}, but the estimated batch time is "
            f"{int(now + wait_seconds)} and it must stay valid {margin_seconds} s past that; "
            f"sign one valid until at least {int(needed) + 1}",
        )


def _word(address: str) -> bytes:
    return bytes(12) + bytes.fromhex(address[2:])
