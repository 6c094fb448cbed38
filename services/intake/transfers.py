"""Custom payments: the payer sent USDC to the treasury themselves; find the one transfer log a request
claims in the transaction's receipt. Pure logic over the raw JSON-RPC receipt.

A claim is refused when the transfer could pay for something else too: a transfer that settled an
EIP-3009 authorization (the authorization's own request pays with it), and any transfer in a
transaction sent to a mintline contract (a batch settles authorizations; its transfers are theirs).
"""

from dataclasses import dataclass
from typing import Any

from eth_abi import encode as abi_encode
from eth_utils import keccak, to_checksum_address

from services.intake.errors import BadRequest, PaymentRejected
from services.intake.payments import PaymentTerms

TRANSFER_TOPIC = "0x" + keccak(b"Transfer(address,address,uint256)").hex()
AUTHORIZATION_USED_TOPIC = "0x" + keccak(b"AuthorizationUsed(address,bytes32)").hex()
ZERO_TOPIC = "0x" + "00" * 32


@dataclass(frozen=True)
class Transfer:
    payer: str
    amount: int
    log_index: int


@dataclass(frozen=True)
class Claim:
    """What the request says it pays with: a transaction, and which of its logs when it has several."""

    tx_hash: str
    log_index: int | None = None
    payer: str | None = None


def transfer_payment_id(tx_hash: str, log_index: int) -> str:
    """keccak256(abi.encode(bytes32 txHash, uint256 logIndex)): the paymentId of one transfer log."""
    return "0x" + keccak(abi_encode(["bytes32", "uint256"], [bytes.fromhex(tx_hash[2:]), log_index])).hex()


def payment_transfer(
    receipt: dict[str, Any] | None,
    terms: PaymentTerms,
    latest_block: int,
    min_confirmations: int,
    claim: Claim,
) -> Transfer:
    """The USDC transfer to the treasury that `claim` names; raises why it cannot pay for a mint."""
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
    logs = receipt.get("logs") or []
    mint_contracts = terms.mint_contracts
    if str(receipt.get("to") or "").lower() in mint_contracts or any(
        str(log.get("address", "")).lower() in mint_contracts for log in logs
    ):
        raise PaymentRejected(
            "payment_is_mint_transaction",
            "this is a mintline mint transaction: its transfers settle the authorizations in it",
        )
    usdc = terms.usdc.lower()
    treasury_topic = _topic(terms.treasury)
    # Payers whose EIP-3009 authorization this transaction executed: their transfers here are that
    # authorization's payment, which its own request (or nobody) claims.
    authorizers = {
        _topics(log)[1]
        for log in logs
        if str(log.get("address", "")).lower() == usdc
        and len(_topics(log)) == 3
        and _topics(log)[0] == AUTHORIZATION_USED_TOPIC
    }
    transfers = {
        _hex_int(log.get("logIndex")): log
        for log in logs
        if str(log.get("address", "")).lower() == usdc
        and len(_topics(log)) == 3
        and _topics(log)[0] == TRANSFER_TOPIC
        and _topics(log)[2] == treasury_topic
        # Newly issued USDC (from the zero address) and the treasury paying itself are nobody's payment.
        and _topics(log)[1] not in (ZERO_TOPIC, treasury_topic)
    }
    if not transfers:
        raise PaymentRejected(
            "payment_transfer_missing",
            f"the transaction has no USDC ({terms.usdc}) transfer to {terms.treasury}",
        )
    if claim.log_index is not None:
        if claim.log_index not in transfers:
            raise PaymentRejected(
                "payment_transfer_missing",
                f"log {claim.log_index} of the transaction is not a USDC transfer to {terms.treasury}",
            )
        index = claim.log_index
    else:
        # A settlement's transfer is never claimable; prefer the others, and the payer's own.
        candidates = [i for i in transfers if _topics(transfers[i])[1] not in authorizers] or list(transfers)
        if len(candidates) > 1 and claim.payer is not None:
            candidates = [
                i for i in candidates if _topics(transfers[i])[1] == _topic(claim.payer)
            ] or candidates
        if len(candidates) > 1:
            raise BadRequest(
                "log_index_required",
                f"the transaction has {len(candidates)} USDC transfers to the treasury (logs "
                f"{', '.join(map(str, sorted(candidates)))}); name the one this request claims in `logIndex`",
            )
        index = candidates[0]
    log = transfers[index]
    transfer = Transfer(to_checksum_address("0x" + _topics(log)[1][-40:]), _hex_int(log.get("data")), index)
    if _topics(log)[1] in authorizers:
        raise PaymentRejected(
            "payment_is_authorization_settlement",
            f"the transfer by {transfer.payer} settled their EIP-3009 authorization in the same transaction; "
            "that authorization's request is what it pays for",
        )
    if claim.payer is not None and claim.payer != transfer.payer:
        raise BadRequest("payer_mismatch", f"the transfer was sent by {transfer.payer}, not {claim.payer}")
    if transfer.amount < terms.price:
        raise PaymentRejected(
            "underpaid", f"a mint costs {terms.price} USDC units; the transfer was {transfer.amount}"
        )
    return transfer


def _topics(log: dict[str, Any]) -> list[str]:
    return [str(t).lower() for t in log.get("topics") or []]


def _topic(address: str) -> str:
    return "0x" + address[2:].lower().rjust(64, "0")


def _hex_int(value: Any) -> int:
    return int(value, 16) if isinstance(value, str) and value not in ("", "0x") else 0
