"""Paying like real clients do: signed EIP-3009 authorizations, x402 headers, plain USDC transfers."""

import base64
import json
import os
import time
from dataclasses import dataclass
from typing import Any

from eth_account.datastructures import SignedMessage
from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.contract.contract import Contract, ContractFunction
from web3.types import TxReceipt

from shared.deploy import Deployment, load_artifact

TRANSFER_WITH_AUTHORIZATION = [
    {"name": "from", "type": "address"},
    {"name": "to", "type": "address"},
    {"name": "value", "type": "uint256"},
    {"name": "validAfter", "type": "uint256"},
    {"name": "validBefore", "type": "uint256"},
    {"name": "nonce", "type": "bytes32"},
]
AUTHORIZATION_TYPES = {"TransferWithAuthorization": TRANSFER_WITH_AUTHORIZATION}


@dataclass(frozen=True)
class SignedAuthorization:
    """An EIP-3009 TransferWithAuthorization as signed: the typed-data message (nonce as bytes) and its
    signature."""

    message: dict[str, Any]
    signed: SignedMessage

    @property
    def wire(self) -> dict[str, str]:
        """The authorization as gasless bodies and x402 payloads carry it: decimal strings, hex nonce."""
        return {
            key: ("0x" + value.hex() if isinstance(value, bytes) else str(value))
            for key, value in self.message.items()
        }

    @property
    def signature(self) -> str:
        return "0x" + bytes(self.signed.signature).hex()

    @property
    def vrs(self) -> tuple[int, bytes, bytes]:
        """The signature as the (v, r, s) that USDC's transferWithAuthorization takes."""
        return self.signed.v, self.signed.r.to_bytes(32, "big"), self.signed.s.to_bytes(32, "big")

    @property
    def payload(self) -> dict[str, Any]:
        """{"authorization", "signature"}: an x402 payment payload, and a gasless body but its paymentType."""
        return {"authorization": self.wire, "signature": self.signature}


def authorize(
    payer: LocalAccount,
    deployment: Deployment,
    *,
    value: int | None = None,
    to: str | None = None,
    valid_after: int = 0,
    valid_before: int | None = None,
    valid_for: int = 3600,
    nonce: bytes | None = None,
    chain_id: int | None = None,
    signer: LocalAccount | None = None,
) -> SignedAuthorization:
    """`payer`'s authorization to pay the price to the treasury, valid from now for `valid_for` seconds;
    every term can be changed, and `signer` signs in the payer's place (a forgery) if given."""
    message = {
        "from": payer.address,
        "to": to or deployment.treasury,
        "value": deployment.price if value is None else value,
        "validAfter": valid_after,
        "validBefore": int(time.time()) + valid_for if valid_before is None else valid_before,
        "nonce": nonce or os.urandom(32),
    }
    domain = {
        "name": deployment.usdc_name,
        "version": deployment.usdc_version,
        "chainId": chain_id or deployment.chain_id,
        "verifyingContract": deployment.usdc,
    }
    return SignedAuthorization(
        message, (signer or payer).sign_typed_data(domain, AUTHORIZATION_TYPES, message)
    )


def sign_authorization(
    payer: LocalAccount, deployment: Deployment, **terms: Any
) -> tuple[dict[str, str], str]:
    """(authorization, signature) as the gasless body and x402 payloads carry them; terms as `authorize`."""
    authorization = authorize(payer, deployment, **terms)
    return authorization.wire, authorization.signature


def gasless_body(payer: LocalAccount, deployment: Deployment, **terms: Any) -> dict[str, Any]:
    return {"paymentType": "gasless", **authorize(payer, deployment, **terms).payload}


def x402_header(payer: LocalAccount, deployment: Deployment, network: str | None = None, **terms: Any) -> str:
    """A v2 PAYMENT-SIGNATURE header value, as the x402 client builds it."""
    payload = {
        "x402Version": 2,
        "payload": authorize(payer, deployment, **terms).payload,
        "accepted": {
            "scheme": "exact",
            "network": network or f"eip155:{deployment.chain_id}",
            "asset": deployment.usdc,
            "amount": str(deployment.price),
            "payTo": deployment.treasury,
            "maxTimeoutSeconds": 3600,
            "extra": {"name": deployment.usdc_name, "version": deployment.usdc_version},
        },
    }
    return base64.b64encode(json.dumps(payload).encode()).decode()


def usdc_contract(w3: Web3, deployment: Deployment) -> Contract:
    return w3.eth.contract(address=deployment.usdc, abi=load_artifact("MockUSDC")["abi"])


def send_signed(w3: Web3, sender: LocalAccount, call: ContractFunction, **params: Any) -> TxReceipt:
    """Sign `call` as `sender`, send it and wait for its receipt, a reverted one included."""
    tx = call.build_transaction(
        {"from": sender.address, "nonce": w3.eth.get_transaction_count(sender.address), **params}
    )
    return w3.eth.wait_for_transaction_receipt(
        w3.eth.send_raw_transaction(sender.sign_transaction(tx).raw_transaction)
    )


def transfer_usdc(
    w3: Web3,
    sender: LocalAccount,
    deployment: Deployment,
    amount: int | None = None,
    to: str | None = None,
    gas: int | None = None,
) -> str:
    """Send USDC (the price, to the treasury, unless told otherwise) from `sender`, who pays the gas;
    returns the transaction hash, also of a transfer that reverted."""
    call = usdc_contract(w3, deployment).functions.transfer(
        to or deployment.treasury, amount or deployment.price
    )
    params = {"chainId": deployment.chain_id} | ({} if gas is None else {"gas": gas})
    return "0x" + bytes(send_signed(w3, sender, call, **params)["transactionHash"]).hex()


def pay_by_transfer(w3: Web3, payer: LocalAccount, deployment: Deployment, amount: int | None = None) -> str:
    """Send USDC to the treasury from `payer` (given gas money first); returns the transaction hash."""
    # hardhat_setBalance: Hardhat's node has no anvil_ methods, anvil answers the hardhat_ ones too.
    w3.provider.make_request("hardhat_setBalance", [payer.address, hex(10**18)])
    return transfer_usdc(w3, payer, deployment, amount)


def settle_directly(
    w3: Web3, deployment: Deployment, authorization: dict[str, str], signature: str, sender: LocalAccount
) -> TxReceipt:
    """Submit a payer's signed authorization to USDC from `sender`, as a relayer or front-runner can."""
    settle = usdc_contract(w3, deployment).get_function_by_signature(
        "transferWithAuthorization(address,address,uint256,uint256,uint256,bytes32,bytes)"
    )
    call = settle(
        authorization["from"],
        authorization["to"],
        int(authorization["value"]),
        int(authorization["validAfter"]),
        int(authorization["validBefore"]),
        bytes.fromhex(authorization["nonce"].removeprefix("0x")),
        bytes.fromhex(signature.removeprefix("0x")),
    )
    return send_signed(w3, sender, call)
