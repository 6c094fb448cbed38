"""Custom payments: which transfer log of a receipt a request claims, and the transfers that can never
be claimed (an EIP-3009 settlement, anything inside a mintline transaction)."""

from typing import Any

import pytest

from services.intake.errors import ApiError
from services.intake.payments import PaymentTerms
from services.intake.transfers import (
    AUTHORIZATION_USED_TOPIC,
    TRANSFER_TOPIC,
    Claim,
    payment_transfer,
    transfer_payment_id,
)

USDC = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
TREASURY = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"
TOKEN = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"
PAYER = "0x90F79bf6EB2c4f870365E785982E1f101E93b906"
OTHER = "0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65"
PRICE = 1_000_000
TERMS = PaymentTerms(
    chain_id=31337,
    usdc=USDC,
    treasury=TREASURY,
    price=PRICE,
    domain_name="USD Coin",
    domain_version="2",
    mint_contracts=frozenset({TOKEN.lower()}),
)
TX = "0x" + "ab" * 32


def topic(address: str) -> str:
    return "0x" + address[2:].lower().rjust(64, "0")


def transfer(frm: str, to: str, value: int, token: str = USDC) -> dict[str, Any]:
    return {"address": token.lower(), "topics": [TRANSFER_TOPIC, topic(frm), topic(to)], "data": hex(value)}


def authorization_used(payer: str) -> dict[str, Any]:
    return {"address": USDC.lower(), "topics": [AUTHORIZATION_USED_TOPIC, topic(payer), "0x" + "11" * 32]}


def receipt(*logs: dict[str, Any], status: str = "0x1", block: int = 10, to: str = USDC) -> dict[str, Any]:
    indexed = [{**log, "logIndex": hex(i)} for i, log in enumerate(logs)]
    return {"status": status, "blockNumber": hex(block), "to": to.lower(), "logs": indexed}


def claimed(tx_receipt: dict[str, Any] | None, claim: Claim | None = None, latest: int = 10) -> Any:
    return payment_transfer(tx_receipt, TERMS, latest, 1, claim or Claim(TX))


def refused(
    code: str, tx_receipt: dict[str, Any] | None, claim: Claim | None = None, latest: int = 20
) -> int:
    with pytest.raises(ApiError) as info:
        payment_transfer(tx_receipt, TERMS, latest, 3, claim or Claim(TX))
    assert info.value.code == code, info.value.message
    return info.value.status


def test_the_one_transfer_to_the_treasury_is_claimed_with_its_log_index() -> None:
    paid = receipt(
        transfer(PAYER, TREASURY, PRICE * 9, token="0x0000000000000000000000000000000000000009"),
        transfer(PAYER, OTHER, PRICE * 5),
        transfer(PAYER, TREASURY, PRICE * 3),
    )
    found = claimed(paid)
    # Any amount of at least the price pays for one mint.
    assert (found.payer, found.amount, found.log_index) == (PAYER, PRICE * 3, 2)


def test_several_transfers_need_a_log_index_or_a_payer() -> None:
    paid = receipt(transfer(PAYER, TREASURY, PRICE), transfer(OTHER, TREASURY, PRICE * 2))
    assert refused("log_index_required", paid) == 400
    assert claimed(paid, Claim(TX, log_index=1)).payer == OTHER
    assert claimed(paid, Claim(TX, payer=PAYER)).log_index == 0
    assert refused("payer_mismatch", paid, Claim(TX, log_index=1, payer=PAYER)) == 400
    assert refused("payment_transfer_missing", paid, Claim(TX, log_index=5)) == 402
    assert refused("log_index_required", paid, Claim(TX, payer=TOKEN)) == 400
    # One transfer, from someone else than the payer named.
    assert refused("payer_mismatch", receipt(transfer(OTHER, TREASURY, PRICE)), Claim(TX, payer=PAYER)) == 400


def test_a_transfer_that_settled_an_authorization_is_not_a_custom_payment() -> None:
    # The payer submitted their own EIP-3009 authorization: its request is what this transfer pays.
    settled = receipt(authorization_used(PAYER), transfer(PAYER, TREASURY, PRICE))
    assert refused("payment_is_authorization_settlement", settled) == 402
    assert refused("payment_is_authorization_settlement", settled, Claim(TX, log_index=1)) == 402
    # Another payer's plain transfer in the same transaction is still theirs to claim.
    mixed = receipt(
        authorization_used(PAYER), transfer(PAYER, TREASURY, PRICE), transfer(OTHER, TREASURY, PRICE)
    )
    assert claimed(mixed).payer == OTHER


def test_nothing_in_a_mintline_transaction_is_a_custom_payment() -> None:
    batch = receipt(transfer(PAYER, TREASURY, PRICE * 2), to=TOKEN)
    assert refused("payment_is_mint_transaction", batch) == 402
    # Called through another contract: the mint contract's own logs give it away.
    relayed = receipt(
        transfer(PAYER, TREASURY, PRICE * 2),
        {"address": TOKEN.lower(), "topics": ["0x" + "22" * 32]},
        to=OTHER,
    )
    assert refused("payment_is_mint_transaction", relayed) == 402


@pytest.mark.parametrize(
    ("tx_receipt", "latest", "code"),
    [
        (None, 10, "payment_not_found"),
        (receipt(transfer(PAYER, TREASURY, PRICE), status="0x0"), 10, "payment_failed"),
        (receipt(transfer(PAYER, TREASURY, PRICE), block=10), 11, "payment_unconfirmed"),
        (receipt(transfer(PAYER, OTHER, PRICE)), 20, "payment_transfer_missing"),
        (receipt(), 20, "payment_transfer_missing"),
        (receipt(transfer(PAYER, TREASURY, PRICE - 1)), 20, "underpaid"),
        # USDC issued to the treasury, and the treasury paying itself, pay for nobody.
        (receipt(transfer("0x" + "00" * 20, TREASURY, PRICE)), 20, "payment_transfer_missing"),
        (receipt(transfer(TREASURY, TREASURY, PRICE)), 20, "payment_transfer_missing"),
    ],
)
def test_custom_transfer_problems(tx_receipt: dict[str, Any] | None, latest: int, code: str) -> None:
    assert refused(code, tx_receipt, latest=latest) == 402


def test_each_transfer_log_has_its_own_payment_id() -> None:
    ids = {transfer_payment_id(TX, i) for i in range(3)} | {transfer_payment_id("0x" + "cd" * 32, 0)}
    assert len(ids) == 4 and all(len(i) == 66 for i in ids)
    assert transfer_payment_id(TX.upper().replace("0X", "0x"), 1) == transfer_payment_id(TX, 1)
