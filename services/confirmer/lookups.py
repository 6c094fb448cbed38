"""What happened to a payment outside the batch that carried it, found on-chain: the transaction that
spent its authorization's nonce, and the earlier transaction that minted it. Every search runs from the
block intake accepted the request in (its nonce was unused and its payment unminted then) to the
batch's block, in bounded eth_getLogs chunks."""

from typing import Any

import asyncpg

from services.confirmer.receipts import (
    AUTHORIZATION_USED_TOPIC,
    MINTED_TOPIC,
    address_topic,
    authorization_executed,
)
from shared.deploy import Deployment
from shared.jsonrpc import JsonRpc
from shared.logsearch import find_logs


class Lookups:
    def __init__(self, rpc: JsonRpc, deployment: Deployment, max_log_range: int) -> None:
        self.rpc = rpc
        self.deployment = deployment
        self.max_log_range = max_log_range

    async def authorization_paid(self, row: asyncpg.Record, until_block: int) -> bool:
        """Whether the row's EIP-3009 authorization itself was executed (someone submitted the payer's
        signed transfer before the batch did): the treasury is paid, so the request may mint. A nonce
        spent by a cancellation or by another authorization signed on it pays for nothing."""
        auth = row["authorization_data"]
        if not auth:
            return False
        query = {
            "address": self.deployment.usdc,
            "topics": [AUTHORIZATION_USED_TOPIC, address_topic(auth["from"]), auth["nonce"].lower()],
        }
        found = await self._find(query, row, until_block)
        if not found:
            return False
        used = found[0]
        receipt = await self.rpc.call("eth_getTransactionReceipt", [used["transactionHash"]])
        if receipt is None:
            return False
        return authorization_executed(
            receipt["logs"], used, auth, self.deployment.usdc, self.deployment.treasury
        )

    async def minted_in(self, contract: str, row: asyncpg.Record, until_block: int) -> dict | None:
        """The Minted log of an earlier transaction for the row's payment, if any."""
        found = await self._find(
            {"address": contract, "topics": [MINTED_TOPIC, row["payment_id"]]}, row, until_block
        )
        return found[0] if found else None

    async def _find(self, query: dict[str, Any], row: asyncpg.Record, until_block: int) -> list[dict]:
        return await find_logs(
            self.rpc, query, row["accepted_block"] or 0, until_block, self.max_log_range, first_only=True
        )
