"""The chain reads intake makes per request, as raw JSON-RPC (shared.jsonrpc).

Raw calls with precomputed encodings instead of web3's contract layer (1.4 ms against 8 ms per
request on anvil). A paid authorization needs the payer's balance and the state of its nonce and of
the payer's other unsettled nonces, all from one block: they go out as one deployless `eth_call` of
contracts/PayerState.sol. The reads of concurrent requests go out together (shared.rpc_coalescer).
"""

from dataclasses import dataclass
from typing import Any

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode

from services.intake.errors import Unavailable
from shared.deploy import load_artifact
from shared.jsonrpc import RpcError
from shared.rpc_coalescer import Coalescer

PAYER_STATE_CODE = load_artifact("PayerState")["bytecode"]


@dataclass(frozen=True)
class PayerState:
    """What the chain says about a payer in one block."""

    block: int
    balance: int
    # Whether each nonce asked about is used (or cancelled), in the order asked.
    used: tuple[bool, ...]


class ChainReader:
    def __init__(self, rpc: Coalescer, usdc: str) -> None:
        self.rpc = rpc
        self.usdc = usdc

    async def _batch(self, calls: list[tuple[str, list[Any]]]) -> list[Any]:
        try:
            return await self.rpc.batch(calls)
        except RpcError as exc:
            raise Unavailable("chain_unavailable", str(exc)) from exc

    async def payer_state(self, payer: str, nonces: list[str]) -> PayerState:
        """The payer's USDC balance and whether each of `nonces` is used, read in one block."""
        arguments = abi_encode(
            ["address", "address", "bytes32[]"], [self.usdc, payer, [bytes.fromhex(n[2:]) for n in nonces]]
        )
        (result,) = await self._batch(
            [("eth_call", [{"data": PAYER_STATE_CODE + arguments.hex()}, "latest"])]
        )
        try:
            block, balance, used = abi_decode(["uint256", "uint256", "bool[]"], bytes.fromhex(result[2:]))
        except Exception as exc:
            raise Unavailable(
                "chain_unavailable", f"the node answered an unreadable payer state: {exc}"
            ) from exc
        if len(used) != len(nonces):
            raise Unavailable("chain_unavailable", "the node answered a payer state of the wrong length")
        return PayerState(block, balance, tuple(used))

    async def receipt_and_head(self, tx_hash: str) -> tuple[dict[str, Any] | None, int]:
        """The raw receipt (hex fields; None while the transaction is unknown or not mined) and the head."""
        receipt, number = await self._batch(
            [("eth_getTransactionReceipt", [tx_hash]), ("eth_blockNumber", [])]
        )
        return receipt, int(number, 16)

    async def block_number(self) -> int:
        (number,) = await self._batch([("eth_blockNumber", [])])
        return int(number, 16)
