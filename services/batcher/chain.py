"""The batcher's reads of the chain, over shared.jsonrpc (retries, Retry-After, failover across
RPC_URLS) instead of web3: a handful of calls, each parsed here."""

from typing import Any

from shared.jsonrpc import JsonRpc, NodeError


class GasEstimateFailed(Exception):
    """The node refused to estimate (the call would revert, or the node cannot tell)."""


class WalletChain:
    def __init__(self, rpc: JsonRpc, wallet: str) -> None:
        self.rpc = rpc
        self.wallet = wallet

    async def nonce(self, block: str = "pending") -> int:
        return int(await self.rpc.call("eth_getTransactionCount", [self.wallet, block]), 16)

    async def balance(self) -> int:
        return int(await self.rpc.call("eth_getBalance", [self.wallet, "latest"]), 16)

    async def balance_and_mined_nonce(self) -> tuple[int, int]:
        balance, mined = await self.rpc.batch(
            [
                ("eth_getBalance", [self.wallet, "latest"]),
                ("eth_getTransactionCount", [self.wallet, "latest"]),
            ]
        )
        return int(balance, 16), int(mined, 16)

    async def block_gas_limit(self) -> int:
        block = await self.rpc.call("eth_getBlockByNumber", ["latest", False])
        return int(block["gasLimit"], 16)

    async def estimate_gas(self, to: str, data: bytes) -> int:
        try:
            answer = await self.rpc.call(
                "eth_estimateGas", [{"from": self.wallet, "to": to, "data": "0x" + data.hex()}]
            )
        except NodeError as exc:
            raise GasEstimateFailed(exc.message) from exc
        return int(answer, 16)

    async def runs_within(self, to: str, data: bytes, gas: int) -> bool:
        """Whether the call succeeds with `gas` at the latest block (a revert or running out of gas
        is False)."""
        call = {"from": self.wallet, "to": to, "data": "0x" + data.hex(), "gas": hex(gas)}
        try:
            await self.rpc.call("eth_call", [call, "latest"])
        except NodeError:
            return False
        return True

    async def fee_history(self, blocks: int, percentile: float) -> dict[str, Any]:
        return await self.rpc.call("eth_feeHistory", [hex(blocks), "latest", [percentile]])

    async def gas_price(self) -> int:
        return int(await self.rpc.call("eth_gasPrice", []), 16)

    async def knows(self, tx_hash: str) -> bool:
        """Whether the node has this transaction (pending or mined)."""
        return await self.rpc.call("eth_getTransactionByHash", [tx_hash]) is not None

    async def unknown(self, tx_hashes: list[str]) -> set[str]:
        """Which of these transactions the node has not (neither pending nor mined), asked in one
        JSON-RPC batch (chunked as the provider allows). A hash whose call failed counts as known:
        it is not sent again on a guess."""
        calls = [("eth_getTransactionByHash", [tx_hash]) for tx_hash in tx_hashes]
        answers = await self.rpc.batch_settled(calls)
        return {tx_hash for tx_hash, answer in zip(tx_hashes, answers, strict=True) if answer is None}
