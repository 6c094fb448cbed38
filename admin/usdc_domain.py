"""The EIP-712 domain a USDC contract verifies EIP-3009 authorizations with, read from the chain.

Payers sign for the domain the x402 offer names, and intake checks signatures against it; a wrong name
or version makes every authorization fail on-chain after intake accepted it. It differs between chains
("USD Coin" on Ethereum, "USDC" on Base Sepolia), so it is read, never assumed: ERC-5267's
eip712Domain() where the token has it, else name() and version() (Circle's FiatToken predates
ERC-5267), accepted only if they reproduce the token's own DOMAIN_SEPARATOR().
"""

from dataclasses import dataclass
from typing import Any

from eth_abi import encode
from eth_typing import ChecksumAddress
from eth_utils import keccak, to_checksum_address
from web3 import Web3
from web3.exceptions import BadFunctionCallOutput, ContractLogicError, Web3ValueError

DOMAIN_TYPEHASH = keccak(
    text="EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)
# ERC-5267 `fields` bits: name, version, chainId, verifyingContract (salt and extensions unused).
NAME, VERSION, CHAIN_ID, VERIFYING_CONTRACT, SALT = 0x01, 0x02, 0x04, 0x08, 0x10
EXPECTED_FIELDS = NAME | VERSION | CHAIN_ID | VERIFYING_CONTRACT

ABI: list[dict[str, Any]] = [
    {
        "name": "eip712Domain",
        "type": "function",
        "stateMutability": "view",
        "inputs": [],
        "outputs": [
            {"name": "fields", "type": "bytes1"},
            {"name": "name", "type": "string"},
            {"name": "version", "type": "string"},
            {"name": "chainId", "type": "uint256"},
            {"name": "verifyingContract", "type": "address"},
            {"name": "salt", "type": "bytes32"},
            {"name": "extensions", "type": "uint256[]"},
        ],
    },
    *(
        {"name": name, "type": "function", "stateMutability": "view", "inputs": [], "outputs": [output]}
        for name, output in (
            ("name", {"name": "", "type": "string"}),
            ("version", {"name": "", "type": "string"}),
            ("DOMAIN_SEPARATOR", {"name": "", "type": "bytes32"}),
        )
    ),
]
# What a call of a function the contract lacks (or cannot answer) raises.
NO_ANSWER = (ContractLogicError, BadFunctionCallOutput, Web3ValueError, OverflowError)


@dataclass(frozen=True)
class UsdcDomain:
    """The EIP-712 domain (name, version) the USDC contract verifies EIP-3009 authorizations with."""

    name: str
    version: str


class DomainUnreadable(Exception):
    """The contract does not tell its EIP-712 domain in a way that can be trusted."""


def domain_separator(name: str, version: str, chain_id: int, verifying_contract: str) -> bytes:
    """EIP-712's hashStruct of the domain (name, version, chainId, verifyingContract)."""
    return keccak(
        encode(
            ["bytes32", "bytes32", "bytes32", "uint256", "address"],
            [DOMAIN_TYPEHASH, keccak(text=name), keccak(text=version), chain_id, verifying_contract],
        )
    )


def read_usdc_domain(w3: Web3, token_address: str) -> UsdcDomain:
    """The domain of the token at `token_address`; DomainUnreadable saying why if it cannot be trusted."""
    address = to_checksum_address(token_address)
    chain_id = w3.eth.chain_id
    token = w3.eth.contract(address=address, abi=ABI)
    try:
        fields, name, version, domain_chain_id, verifying_contract, _salt, extensions = (
            token.functions.eip712Domain().call()
        )
    except NO_ANSWER:
        return _from_domain_separator(w3, address, chain_id)
    if fields[0] != EXPECTED_FIELDS or extensions:
        raise DomainUnreadable(
            f"the token at {address} has an EIP-712 domain with fields 0x{fields.hex()} and extensions "
            f"{extensions}: EIP-3009 authorizations need exactly name, version, chainId and "
            "verifyingContract (0x0f)"
        )
    if domain_chain_id != chain_id or to_checksum_address(verifying_contract) != address:
        raise DomainUnreadable(
            f"the token at {address} names chain {domain_chain_id} and contract {verifying_contract} in its "
            f"EIP-712 domain, not chain {chain_id} and itself"
        )
    return UsdcDomain(name, version)


def _from_domain_separator(w3: Web3, address: ChecksumAddress, chain_id: int) -> UsdcDomain:
    token = w3.eth.contract(address=address, abi=ABI)
    try:
        name: str = token.functions.name().call()
        version: str = token.functions.version().call()
        separator: bytes = token.functions.DOMAIN_SEPARATOR().call()
    except NO_ANSWER:
        raise DomainUnreadable(
            f"the token at {address} answers neither eip712Domain() (ERC-5267) nor name(), version() "
            "and DOMAIN_SEPARATOR(): is it a USDC (EIP-3009) contract?"
        ) from None
    if separator != domain_separator(name, version, chain_id, address):
        raise DomainUnreadable(
            f"the token at {address} calls itself {name!r} version {version!r}, but its DOMAIN_SEPARATOR() "
            "is not that domain's: its EIP-712 name or version is something else"
        )
    return UsdcDomain(name, version)
