"""Reading each entry's outcome from a mined batch's receipt logs."""

from eth_abi import encode as abi_encode
from eth_utils import keccak
from hexbytes import HexBytes

from services.confirmer.receipts import (
    ALREADY_PROCESSED,
    AUTHORIZATION_USED_TOPIC,
    TRANSFER_TOPIC,
    Outcome,
    address_topic,
    authorization_executed,
    outcomes,
)

TOKEN = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
USDC = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"
PAYER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
RECIPIENT = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"


def _topic(signature: str) -> HexBytes:
    return HexBytes(keccak(text=signature))


def _address_topic(address: str) -> HexBytes:
    return HexBytes(abi_encode(["address"], [address]))


def _log(address: str, topics: list[HexBytes], data: bytes, index: int) -> dict:
    """A log as web3 returns it in a receipt."""
    return {
        "address": address,
        "topics": topics,
        "data": HexBytes(data),
        "logIndex": index,
        "blockNumber": 12,
        "transactionHash": HexBytes(b"\x01" * 32),
        "removed": False,
    }


def _minted(payment_id: bytes, index: int, address: str = TOKEN, value: int = 10**18) -> dict:
    topics = [_topic("Minted(bytes32,address,uint256)"), HexBytes(payment_id), _address_topic(RECIPIENT)]
    return _log(address, topics, abi_encode(["uint256"], [value]), index)


def _skipped(payment_id: bytes, reason: str, index: int) -> dict:
    topics = [_topic("MintSkipped(bytes32,address,string)"), HexBytes(payment_id), _address_topic(RECIPIENT)]
    return _log(TOKEN, topics, abi_encode(["string"], [reason]), index)


def _usdc_transfer(index: int) -> dict:
    topics = [_topic("Transfer(address,address,uint256)"), _address_topic(PAYER), _address_topic(RECIPIENT)]
    return _log(USDC, topics, abi_encode(["uint256"], [1_000_000]), index)


def test_outcomes_decode_minted_and_skipped_entries() -> None:
    minted_id, underpaid_id, repeated_id = b"\xaa" * 32, b"\xbb" * 32, b"\xcc" * 32
    logs = [
        _usdc_transfer(0),
        _minted(minted_id, 1),
        _skipped(underpaid_id, "underpaid", 2),
        _skipped(repeated_id, ALREADY_PROCESSED, 3),
    ]

    assert outcomes(logs, TOKEN) == {
        "0x" + minted_id.hex(): Outcome(minted=True, value=10**18),
        "0x" + underpaid_id.hex(): Outcome(minted=False, reason="underpaid"),
        "0x" + repeated_id.hex(): Outcome(minted=False, reason=ALREADY_PROCESSED),
    }


def test_a_long_reason_string_is_decoded_whole() -> None:
    reason = "authorization failed: " + "FiatTokenV2: invalid signature " * 3
    payment_id = b"\x0d" * 32

    assert outcomes([_skipped(payment_id, reason, 0)], TOKEN)["0x" + payment_id.hex()].reason == reason


def test_logs_of_other_contracts_are_ignored_even_with_the_same_event() -> None:
    impostor = "0x" + "99" * 20
    logs = [_usdc_transfer(0), _minted(b"\xaa" * 32, 1, address=impostor)]

    assert outcomes(logs, TOKEN) == {}


def test_the_token_address_matches_whatever_its_case() -> None:
    payment_id = b"\xaa" * 32

    assert outcomes([_minted(payment_id, 0)], TOKEN.lower()) == {
        "0x" + payment_id.hex(): Outcome(True, value=10**18)
    }


def test_token_events_without_a_payment_id_are_ignored() -> None:
    paused = _log(TOKEN, [_topic("Paused(address)")], abi_encode(["address"], [PAYER]), 0)

    assert outcomes([paused], TOKEN) == {}


def test_logs_as_raw_json_rpc_hex_strings_are_read_like_bytes() -> None:
    minted_id, skipped_id = b"\xaa" * 32, b"\xbb" * 32
    logs = [_minted(minted_id, 0), _skipped(skipped_id, "payer mismatch", 1)]
    for log in logs:
        log["topics"] = ["0x" + bytes(topic).hex() for topic in log["topics"]]
        log["data"] = "0x" + bytes(log["data"]).hex()

    assert outcomes(logs, TOKEN) == {
        "0x" + minted_id.hex(): Outcome(minted=True, value=10**18),
        "0x" + skipped_id.hex(): Outcome(minted=False, reason="payer mismatch"),
    }


def test_an_nft_minted_log_carries_its_token_id() -> None:
    nft = "0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0"
    payment_id = b"\xee" * 32

    found = outcomes([_minted(b"\xaa" * 32, 0), _minted(payment_id, 1, address=nft, value=7)], nft)

    assert found == {"0x" + payment_id.hex(): Outcome(minted=True, value=7)}


# --- an authorization settled outside its batch -----------------------------------------------------

NONCE = "0x" + "42" * 32
AUTH = {"from": PAYER, "to": RECIPIENT, "value": "1000000", "nonce": NONCE}


def _raw(address: str, topics: list[str], data: int, index: int) -> dict:
    """A log as raw JSON-RPC answers it (hex strings)."""
    return {"address": address.lower(), "topics": topics, "data": hex(data), "logIndex": hex(index)}


def _used(index: int, payer: str = PAYER, nonce: str = NONCE) -> dict:
    return _raw(USDC, [AUTHORIZATION_USED_TOPIC, address_topic(payer), nonce], 0, index)


def _transfer(index: int, to: str = RECIPIENT, value: int = 1_000_000, frm: str = PAYER) -> dict:
    return _raw(USDC, [TRANSFER_TOPIC, address_topic(frm), address_topic(to)], value, index)


def test_the_exact_authorization_executed_counts_as_paid() -> None:
    logs = [_transfer(0, value=5), _used(1), _transfer(2)]
    assert authorization_executed(logs, logs[1], AUTH, USDC, RECIPIENT)


def test_another_authorization_on_the_same_nonce_pays_nothing() -> None:
    # The payer burnt the nonce: to themselves for 0, or to the treasury for 1 unit.
    for burn in (_transfer(1, to=PAYER, value=0), _transfer(1, value=1)):
        logs = [_used(0), burn]
        assert not authorization_executed(logs, logs[0], AUTH, USDC, RECIPIENT)
    # A matching transfer elsewhere in the transaction is not the one the authorization made.
    logs = [_used(0), _transfer(1, to=PAYER, value=0), _transfer(2)]
    assert not authorization_executed(logs, logs[0], AUTH, USDC, RECIPIENT)
    # A cancellation (or any log) passed off as the AuthorizationUsed of this nonce.
    logs = [_used(0, nonce="0x" + "43" * 32), _transfer(1)]
    assert not authorization_executed(logs, logs[0], AUTH, USDC, RECIPIENT)
    logs = [_raw(TOKEN, _used(0)["topics"], 0, 0), _transfer(1)]
    assert not authorization_executed(logs, logs[0], AUTH, USDC, RECIPIENT)
