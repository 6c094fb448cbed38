"""Custom payments: the payer sent USDC to the treasury themselves; find that transfer in the
transaction's receipt. Pure logic over the raw JSON-RPC receipt."""

from dataclasses import dataclass
from typing import Any

from eth_utils import keccak, to_checksum_address

from services.intake.errors import PaymentRejected
from services.intake.payments import PaymentTerms

TRANSFER_TOPIC = "0x" + keccak(b"Transfer(address,address,uint256)").hex()


@dataclass(frozen=True)
class Transfer:
    payer: str
    amount: int


def payment_transfer(
    receipt: dict[str, Any] | None, terms: PaymentTerms, latest_block: int, min_confirmations: int
) -> Transfer:
    """The USDC transfer to the treasury that pays for one mint; raises why there is none."""
    if receipt is None:
        raise PaymentRejected("payment_not_found", "no mined transaction with this hash (yet)")
    if _hex_int(receipt.get("status")) != 1:
        raise PaymentRejected("payment_failed", "the payment transaction reverted")
    confirmations = latest_block - _hex_int(receipt.get("blockNumber")) + 1
    if confirmations < min_confirmations:
        raise PaymentRejected(
            "payment_unconfirmed",
            f"the payment has {max(confirmations, 0)} of {min_confirmations} confirmations; try again later",
        )
    treasury_topic = "0x" + terms.treasury[2:].lower().rjust(64, "0")
    best: Transfer | None = None
    for log in receipt.get("logs") or []:
        topics = [t.lower() for t in log.get("topics") or []]
        if (
            log.get("address", "").lower() != terms.usdc.lower()
            or len(topics) != 3
            or topics[0] != TRANSFER_TOPIC
            or topics[2] != treasury_topic
        ):
            continue
        transfer = Transfer(to_checksum_address("0x" + topics[1][-40:]), _hex_int(log.get("data")))
        if best is None or transfer.amount > best.amount:
            best = transfer
    if best is None:
        raise PaymentRejected(
            "payment_transfer_missing",
            f"the transaction has no USDC ({terms.usdc}) transfer to {terms.treasury}",
        )
    if best.amount < terms.price:
        raise PaymentRejected(
            "underpaid", f"a mint costs {terms.price} USDC units; the transfer was {best.amount}"
        )
    return best


def _hex_int(value: Any) -> int:
    return int(value, 16) if isinstance(value, str) and value not in ("", "0x") else 0
