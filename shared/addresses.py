"""0x addresses as mintline stores them: EIP-55 checksummed. A mixed-case address must carry a valid
checksum (a typo in one is caught); an all-lower or all-upper one carries none."""

import re
from functools import lru_cache

from eth_utils import to_checksum_address

ADDRESS_RE = re.compile(r"0x[0-9a-fA-F]{40}")


class AddressError(ValueError):
    """Why a text is not an address; reads after the field's name ("payer must be ...")."""


@lru_cache(maxsize=16_384)
def checksummed(address: str) -> str:
    """EIP-55 form of a 0x address, remembered: every request names the treasury and its payer, whose
    checksum (a keccak and eth_utils' validation) cost more than the rest of their parsing."""
    return to_checksum_address(address)


def parse_address(value: object) -> str:
    """`value` as its checksummed form; AddressError if it is not a 0x address or is mixed-case with a
    wrong checksum."""
    if not isinstance(value, str) or not ADDRESS_RE.fullmatch(value):
        raise AddressError("must be a 0x-prefixed 20-byte hex address")
    checksummed_value = checksummed(value)
    body = value[2:]
    if body != body.lower() and body != body.upper() and value != checksummed_value:
        raise AddressError("has an invalid EIP-55 checksum")
    return checksummed_value
