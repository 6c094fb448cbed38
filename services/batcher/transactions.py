"""Turning claimed request rows into a signed batchMint transaction, and fee bumps."""

from dataclasses import dataclass
from typing import Any

from eth_abi import encode as abi_encode
from eth_account.signers.local import LocalAccount
from eth_utils import keccak

from shared.chain import split_signature

# MintToken.batchMint(MintEntry[]): MintEntry is (to, paymentId, Authorization).
BATCH_MINT_ENTRIES = "(address,bytes32,(address,uint256,uint256,uint256,bytes32,uint8,bytes32,bytes32))[]"
BATCH_MINT_SELECTOR = keccak(text=f"batchMint({BATCH_MINT_ENTRIES})")[:4]
ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
ZERO32 = bytes(32)
# An entry paid beforehand (custom payment) carries an empty authorization: nothing to settle.
NO_AUTHORIZATION = (ZERO_ADDRESS, 0, 0, 0, ZERO32, 0, ZERO32, ZERO32)


def _bytes32(value: str) -> bytes:
    raw = bytes.fromhex(value.removeprefix("0x"))
    if len(raw) != 32:
        raise ValueError(f"expected 32 bytes, got {len(raw)}")
    return raw


def mint_entry(row: Any) -> tuple:
    """The MintEntry tuple (to, paymentId, Authorization) for one request row."""
    auth = row["authorization_data"]
    payment_id = _bytes32(row["payment_id"])
    if auth is None or row.get("payment_settled"):
        return (row["payer_address"], payment_id, NO_AUTHORIZATION)
    v, r, s = split_signature(auth["signature"])
    authorization = (
        auth["from"],
        int(auth["value"]),
        int(auth["validAfter"]),
        int(auth["validBefore"]),
        _bytes32(auth["nonce"]),
        v,
        r,
        s,
    )
    return (row["payer_address"], payment_id, authorization)


def encode_batch_mint(entries: list[tuple]) -> bytes:
    """batchMint calldata. eth_abi directly: web3's contract encoder re-validates and checksums every
    address of every entry, which was a third of the batcher's CPU."""
    return BATCH_MINT_SELECTOR + abi_encode([BATCH_MINT_ENTRIES], [entries])


@dataclass(frozen=True)
class Fees:
    max_fee_per_gas: int
    max_priority_fee_per_gas: int

    @classmethod
    def for_base_fee(cls, base_fee: int, priority_fee: int) -> "Fees":
        # Twice the base fee survives several full blocks of base-fee growth.
        return cls(2 * base_fee + priority_fee, priority_fee)

    def bumped(self, percent: int, floor: "Fees") -> "Fees":
        """Fees for a replacement: at least `percent` above these (nodes require +10%), never below floor."""
        return Fees(
            max(self.max_fee_per_gas * (100 + percent) // 100 + 1, floor.max_fee_per_gas),
            max(self.max_priority_fee_per_gas * (100 + percent) // 100 + 1, floor.max_priority_fee_per_gas),
        )


@dataclass(frozen=True)
class SignedTx:
    raw: bytes
    tx_hash: str


def sign(
    account: LocalAccount, *, chain_id: int, nonce: int, to: str, data: bytes, gas: int, fees: Fees
) -> SignedTx:
    transaction: dict[str, Any] = {
        "type": 2,
        "chainId": chain_id,
        "nonce": nonce,
        "to": to,
        "value": 0,
        "data": data,
        "gas": gas,
        "maxFeePerGas": fees.max_fee_per_gas,
        "maxPriorityFeePerGas": fees.max_priority_fee_per_gas,
    }
    signed = account.sign_transaction(transaction)
    return SignedTx(bytes(signed.raw_transaction), "0x" + bytes(signed.hash).hex())
