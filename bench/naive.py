"""The baseline, not part of mintline: a naive sender that mints one request per transaction from one
wallet, sending each only once the one before it is mined, as the original single-threaded server
did (a batchMint of one entry, settling its authorization, at the chain's fees)."""

import asyncio
import base64
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eth_account.signers.local import LocalAccount

from services.batcher.transactions import encode_batch_mint, mint_entry
from services.intake.payments import payment_id
from shared.deploy import Deployment
from shared.jsonrpc import JsonRpc
from tests.support.load import SignedMint

TIP = 10**9  # 1 gwei


@dataclass(frozen=True)
class Sent:
    """One mint the naive sender completed: when its receipt came (wall-clock seconds), in which
    block, with how much gas."""

    completed_at: float
    block: int
    gas_used: int


def authorization_of(mint: SignedMint) -> dict[str, Any]:
    """The {"authorization", "signature"} payload of a pre-signed gasless body or x402 header."""
    if mint.kind == "x402":
        header = json.loads(base64.b64decode(mint.request["headers"]["PAYMENT-SIGNATURE"]))
        return header["payload"]
    return mint.request["json"]


def batch_mint_of_one(mint: SignedMint) -> bytes:
    payload = authorization_of(mint)
    auth = payload["authorization"]
    row = {
        "kind": "token",
        "payer_address": auth["from"],
        "payment_id": payment_id(auth["from"], auth["nonce"]),
        "authorization_data": {**auth, "signature": payload["signature"]},
        "payment_settled": False,
    }
    return encode_batch_mint("token", [mint_entry(row)])


async def send_one_by_one(
    rpc: JsonRpc, wallet: LocalAccount, deployment: Deployment, mints: Sequence[SignedMint]
) -> list[Sent]:
    nonce = int(await rpc.call("eth_getTransactionCount", [wallet.address, "pending"]), 16)
    done = []
    for mint in mints:
        data = batch_mint_of_one(mint)
        call = {"from": wallet.address, "to": deployment.token, "data": "0x" + data.hex()}
        estimate = int(await rpc.call("eth_estimateGas", [call]), 16)
        base_fee = int((await rpc.call("eth_getBlockByNumber", ["latest", False]))["baseFeePerGas"], 16)
        transaction = {
            "chainId": deployment.chain_id,
            "nonce": nonce,
            "to": deployment.token,
            "value": 0,
            "data": data,
            "gas": estimate * 12 // 10,
            "type": 2,
            "maxFeePerGas": 2 * base_fee + TIP,
            "maxPriorityFeePerGas": TIP,
        }
        raw = bytes(wallet.sign_transaction(transaction).raw_transaction)
        tx_hash = await rpc.call("eth_sendRawTransaction", ["0x" + raw.hex()])
        nonce += 1
        while (receipt := await rpc.call("eth_getTransactionReceipt", [tx_hash])) is None:
            await asyncio.sleep(0.02)
        done.append(Sent(time.time(), int(receipt["blockNumber"], 16), int(receipt["gasUsed"], 16)))
    return done
