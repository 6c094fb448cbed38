"""Paying like real clients do: signed EIP-3009 authorizations, x402 headers, plain USDC transfers."""

import base64
import json
import os
import time

from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount
from web3 import Web3

from shared.deploy import Deployment, load_artifact

TRANSFER_WITH_AUTHORIZATION = [
    {"name": "from", "type": "address"},
    {"name": "to", "type": "address"},
    {"name": "value", "type": "uint256"},
    {"name": "validAfter", "type": "uint256"},
    {"name": "validBefore", "type": "uint256"},
    {"name": "nonce", "type": "bytes32"},
]


def sign_authorization(
    payer: LocalAccount,
    deployment: Deployment,
    *,
    value: int | None = None,
    to: str | None = None,
    valid_after: int = 0,
    valid_before: int | None = None,
    nonce: bytes | None = None,
    chain_id: int | None = None,
) -> tuple[dict, str]:
    """(authorization, signature) as the gasless body and x402 payloads carry them."""
    message = {
        "from": payer.address,
        "to": to or deployment.treasury,
        "value": deployment.price if value is None else value,
        "validAfter": valid_after,
        "validBefore": valid_before or int(time.time()) + 3600,
        "nonce": nonce or os.urandom(32),
    }
    signed = payer.sign_message(
        encode_typed_data(
            domain_data={
                "name": deployment.usdc_name,
                "version": deployment.usdc_version,
                "chainId": chain_id or deployment.chain_id,
                "verifyingContract": deployment.usdc,
            },
            message_types={"TransferWithAuthorization": TRANSFER_WITH_AUTHORIZATION},
            message_data=message,
        )
    )
    authorization = {
        key: ("0x" + value.hex() if isinstance(value, bytes) else str(value))
        for key, value in message.items()
    }
    return authorization, "0x" + bytes(signed.signature).hex()


def gasless_body(payer: LocalAccount, deployment: Deployment, **kwargs: object) -> dict:
    authorization, signature = sign_authorization(payer, deployment, **kwargs)  # type: ignore[arg-type]
    return {"paymentType": "gasless", "authorization": authorization, "signature": signature}


def x402_header(
    payer: LocalAccount, deployment: Deployment, network: str | None = None, **kwargs: object
) -> str:
    """A v2 PAYMENT-SIGNATURE header value, as the x402 client builds it."""
    authorization, signature = sign_authorization(payer, deployment, **kwargs)  # type: ignore[arg-type]
    payload = {
        "x402Version": 2,
        "payload": {"authorization": authorization, "signature": signature},
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


def pay_by_transfer(w3: Web3, payer: LocalAccount, deployment: Deployment, amount: int | None = None) -> str:
    """Send USDC to the treasury from `payer` (given gas money first); returns the transaction hash."""
    w3.provider.make_request("anvil_setBalance", [payer.address, hex(10**18)])
    usdc = w3.eth.contract(address=deployment.usdc, abi=load_artifact("MockUSDC")["abi"])
    tx = usdc.functions.transfer(deployment.treasury, amount or deployment.price).build_transaction(
        {
            "from": payer.address,
            "nonce": w3.eth.get_transaction_count(payer.address),
            "chainId": deployment.chain_id,
        }
    )
    tx_hash = w3.eth.send_raw_transaction(payer.sign_transaction(tx).raw_transaction)
    w3.eth.wait_for_transaction_receipt(tx_hash)
    return "0x" + bytes(tx_hash).hex()
