"""What a mined batch did to each entry, read from its receipt's logs. Pure logic."""

from dataclasses import dataclass

from eth_abi import decode as abi_decode
from eth_utils import keccak

MINTED_TOPIC = "0x" + keccak(text="Minted(bytes32,address,uint256)").hex()
SKIPPED_TOPIC = "0x" + keccak(text="MintSkipped(bytes32,address,string)").hex()
AUTHORIZATION_USED_TOPIC = "0x" + keccak(text="AuthorizationUsed(address,bytes32)").hex()
TRANSFER_TOPIC = "0x" + keccak(text="Transfer(address,address,uint256)").hex()
ALREADY_PROCESSED = "already processed"
# USDC's revert reason when the authorization's nonce is spent (or cancelled) already.
AUTHORIZATION_SPENT = "authorization is used or canceled"


@dataclass(frozen=True)
class Outcome:
    minted: bool
    reason: str | None = None
    # Minted's third field: the amount for MintToken, the token id for Gen1NFT.
    value: int | None = None


def _hex(value: bytes | str) -> str:
    return value if isinstance(value, str) else "0x" + bytes(value).hex()


def outcomes(logs: list, contract: str) -> dict[str, Outcome]:
    """paymentId (0x-hex) -> Outcome for every Minted / MintSkipped log the mint contract emitted.
    MintToken and Gen1NFT emit the same two events."""
    found: dict[str, Outcome] = {}
    for entry in logs:
        if entry["address"].lower() != contract.lower() or len(entry["topics"]) < 2:
            continue
        topic = _hex(entry["topics"][0]).lower()
        payment_id = _hex(entry["topics"][1]).lower()
        data = bytes.fromhex(_hex(entry["data"]).removeprefix("0x"))
        if topic == MINTED_TOPIC:
            (value,) = abi_decode(["uint256"], data)
            found[payment_id] = Outcome(minted=True, value=value)
        elif topic == SKIPPED_TOPIC:
            (reason,) = abi_decode(["string"], data)
            found[payment_id] = Outcome(minted=False, reason=reason)
    return found


def address_topic(address: str) -> str:
    return "0x" + address.lower().removeprefix("0x").rjust(64, "0")


def authorization_executed(logs: list, used: dict, authorization: dict, usdc: str, treasury: str) -> bool:
    """Whether `used`, the AuthorizationUsed log of the transaction that spent an authorization's nonce,
    is this exact authorization being executed: USDC emits it, then the authorization's own
    Transfer(from = payer, to = treasury, value). A different authorization signed on the same nonce
    (to the payer themselves, or for less) fails this, and so pays for nothing."""
    usdc = usdc.lower()
    payer = address_topic(authorization["from"])
    if used["address"].lower() != usdc or [_hex(t).lower() for t in used["topics"]] != [
        AUTHORIZATION_USED_TOPIC,
        payer,
        authorization["nonce"].lower(),
    ]:
        return False
    transfer_index = int(used["logIndex"], 16) + 1
    expected = [TRANSFER_TOPIC, payer, address_topic(treasury)]
    for entry in logs:
        if (
            int(entry["logIndex"], 16) == transfer_index
            and entry["address"].lower() == usdc
            and [_hex(t).lower() for t in entry["topics"]] == expected
        ):
            return int(_hex(entry["data"]), 16) == int(authorization["value"])
    return False
