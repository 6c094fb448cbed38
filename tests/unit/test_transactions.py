"""Request rows into MintEntry tuples, fee arithmetic, and the signed batchMint transaction."""

import os

import pytest
from eth_account import Account
from eth_account.typed_transactions import TypedTransaction
from eth_utils import keccak
from hexbytes import HexBytes

from services.batcher.transactions import NO_AUTHORIZATION, Fees, mint_entry, sign

PAYER = Account.create()
RECIPIENT = "0x" + "22" * 20
TOKEN = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
PAYMENT_ID = "0x" + "ab" * 32
NONCE = "0x" + "cd" * 32
GWEI = 10**9


def _signature(v: int | None = None) -> str:
    raw = bytes(PAYER.unsafe_sign_hash(os.urandom(32)).signature)
    if v is not None:
        raw = raw[:64] + bytes([v])
    return "0x" + raw.hex()


def _row(signature: str | None = None, authorization: bool = True, **fields: str) -> dict:
    return {
        "id": "a6f1c9e0-0000-4000-8000-000000000001",
        "kind": "token",
        "token_uri": None,
        "payer_address": RECIPIENT,
        "payment_id": PAYMENT_ID,
        "authorization_data": {
            "from": PAYER.address,
            "to": "0x" + "33" * 20,
            "value": "1000000",
            "validAfter": "0",
            "validBefore": "1900000000",
            "nonce": NONCE,
            "signature": signature or _signature(),
        }
        if authorization
        else None,
    } | fields


def test_mint_entry_for_an_authorization_row_carries_the_split_signature() -> None:
    signature = _signature()
    raw = bytes.fromhex(signature[2:])

    to, payment_id, authorization = mint_entry(_row(signature))

    assert to == RECIPIENT
    assert payment_id == bytes.fromhex(PAYMENT_ID[2:])
    assert authorization == (
        PAYER.address,
        1_000_000,
        0,
        1_900_000_000,
        bytes.fromhex(NONCE[2:]),
        raw[64],
        raw[:32],
        raw[32:64],
    )
    assert raw[64] in (27, 28)


@pytest.mark.parametrize(("v_byte", "v"), [(0, 27), (1, 28), (27, 27), (28, 28)])
def test_mint_entry_normalises_v_to_27_or_28(v_byte: int, v: int) -> None:
    assert mint_entry(_row(_signature(v=v_byte)))[2][5] == v


def test_mint_entry_for_a_custom_payment_carries_a_zero_authorization() -> None:
    to, payment_id, authorization = mint_entry(_row(authorization=False))

    assert (to, payment_id) == (RECIPIENT, bytes.fromhex(PAYMENT_ID[2:]))
    assert authorization == NO_AUTHORIZATION
    assert authorization[1:4] == (0, 0, 0)
    assert int(authorization[0], 16) == 0


@pytest.mark.parametrize("signature", ["0x" + "11" * 64, "0x" + "11" * 66, "0x"])
def test_mint_entry_rejects_a_signature_that_is_not_65_bytes(signature: str) -> None:
    with pytest.raises(ValueError, match="65 bytes"):
        mint_entry(_row(signature))


def test_mint_entry_rejects_a_payment_id_that_is_not_32_bytes() -> None:
    row = {**_row(), "payment_id": "0x" + "ab" * 31}

    with pytest.raises(ValueError, match="32 bytes"):
        mint_entry(row)


def test_fees_for_base_fee_leave_room_for_base_fee_growth() -> None:
    fees = Fees.for_base_fee(base_fee=30 * GWEI, priority_fee=2 * GWEI)

    assert fees == Fees(max_fee_per_gas=62 * GWEI, max_priority_fee_per_gas=2 * GWEI)


@pytest.mark.parametrize("percent", [10, 12, 25, 100])
@pytest.mark.parametrize("old", [Fees(62 * GWEI, 2 * GWEI), Fees(7, 1), Fees(0, 0)])
def test_bumped_fees_rise_by_at_least_the_percentage(old: Fees, percent: int) -> None:
    new = old.bumped(percent, floor=Fees(0, 0))

    assert new.max_fee_per_gas * 100 >= old.max_fee_per_gas * (100 + percent)
    assert new.max_priority_fee_per_gas * 100 >= old.max_priority_fee_per_gas * (100 + percent)
    assert new.max_fee_per_gas > old.max_fee_per_gas
    assert new.max_priority_fee_per_gas > old.max_priority_fee_per_gas


def test_bumped_fees_never_fall_below_the_current_network_floor() -> None:
    floor = Fees.for_base_fee(base_fee=100 * GWEI, priority_fee=3 * GWEI)

    new = Fees(62 * GWEI, 2 * GWEI).bumped(10, floor)

    assert new == floor


def test_sign_produces_a_transaction_the_network_can_decode() -> None:
    minter = Account.create()
    data = bytes.fromhex("deadbeef") + bytes(64)
    fees = Fees(62 * GWEI, 2 * GWEI)

    signed = sign(minter, chain_id=31337, nonce=42, to=TOKEN, data=data, gas=1_500_000, fees=fees)

    decoded = TypedTransaction.from_bytes(HexBytes(signed.raw)).as_dict()
    assert decoded["type"] == 2
    assert decoded["chainId"] == 31337
    assert decoded["nonce"] == 42
    assert decoded["to"] == HexBytes(TOKEN)
    assert decoded["data"] == data
    assert decoded["value"] == 0
    assert decoded["gas"] == 1_500_000
    assert decoded["maxFeePerGas"] == 62 * GWEI
    assert decoded["maxPriorityFeePerGas"] == 2 * GWEI
    assert Account.recover_transaction(signed.raw) == minter.address
    assert signed.tx_hash == "0x" + keccak(signed.raw).hex()


def test_batch_mint_calldata_matches_the_contract_abi_encoding() -> None:
    from web3 import Web3

    from services.batcher.transactions import encode_batch_mint
    from shared.deploy import load_artifact

    token = Web3().eth.contract(address="0x" + "44" * 20, abi=load_artifact("MintToken")["abi"])
    entries = [mint_entry(_row()), mint_entry(_row(authorization=False))]
    expected = token.encode_abi("batchMint", args=[entries])
    assert "0x" + encode_batch_mint("token", entries).hex() == expected


def test_nft_batch_mint_calldata_matches_the_contract_abi_encoding() -> None:
    from web3 import Web3

    from services.batcher.transactions import encode_batch_mint
    from shared.deploy import load_artifact

    nft = Web3().eth.contract(address="0x" + "55" * 20, abi=load_artifact("Gen1NFT")["abi"])
    uri = "ipfs://bafybeibntspiwjkva6lmgq3dxkcyc5yycdutxa63slk56disvgiiw57zcy"
    entries = [
        mint_entry(_row(kind="nft", token_uri=uri)),
        mint_entry(_row(authorization=False, kind="nft", token_uri=uri + "x")),
    ]
    assert entries[0][2] == uri
    expected = nft.encode_abi("batchMint", args=[entries])
    assert "0x" + encode_batch_mint("nft", entries).hex() == expected


def test_an_nft_entry_without_a_token_uri_is_refused() -> None:
    with pytest.raises(ValueError, match="no tokenURI"):
        mint_entry(_row(kind="nft", token_uri=None))
