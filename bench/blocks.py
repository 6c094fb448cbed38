"""The blocks a run's chain made, each with when it was first seen, and how much of their gas was used
while a backlog waited for them."""

import asyncio
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass

from shared.jsonrpc import JsonRpc


@dataclass(frozen=True)
class Block:
    number: int
    seen_at: float  # wall-clock seconds when the watcher first saw it
    gas_used: int
    gas_limit: int
    transactions: int

    @property
    def share(self) -> float:
        return self.gas_used / self.gas_limit


class BlockWatch:
    """Every block from the head at start on, polled every `interval` seconds."""

    def __init__(self, rpc: JsonRpc, interval: float = 0.05) -> None:
        self.rpc = rpc
        self.interval = interval
        self.blocks: list[Block] = []

    async def run(self, stop: asyncio.Event) -> None:
        next_number = int(await self.rpc.call("eth_blockNumber", []), 16) + 1
        while not stop.is_set():
            head = int(await self.rpc.call("eth_blockNumber", []), 16)
            while next_number <= head:
                seen = time.time()
                block = await self.rpc.call("eth_getBlockByNumber", [hex(next_number), False])
                self.blocks.append(
                    Block(
                        next_number,
                        seen,
                        int(block["gasUsed"], 16),
                        int(block["gasLimit"], 16),
                        len(block["transactions"]),
                    )
                )
                next_number += 1
            await asyncio.sleep(self.interval)


@dataclass(frozen=True)
class Mined:
    """One request: when it was accepted (wall-clock seconds) and the block that minted it (None if
    none did)."""

    accepted_at: float
    block: int | None


def under_backlog(blocks: Sequence[Block], requests: Sequence[Mined], gas_per_mint: float) -> list[Block]:
    """The blocks a backlog waited for: those for which the requests accepted before the previous block
    was seen and not minted by it carried at least a whole block's gas. Each of them had a whole block
    interval to be batched and sent, so a block that is not full left waiting work behind."""
    chosen = []
    for previous, block in zip(blocks, blocks[1:], strict=False):
        waiting = sum(
            1
            for r in requests
            if r.accepted_at < previous.seen_at and (r.block is None or r.block >= block.number)
        )
        if waiting * gas_per_mint >= block.gas_limit:
            chosen.append(block)
    return chosen


@dataclass(frozen=True)
class Fill:
    """Block gas used over some blocks: per block (min, median) and overall."""

    blocks: int
    min_share: float
    median_share: float
    overall: float

    @classmethod
    def of(cls, blocks: Sequence[Block]) -> "Fill | None":
        if not blocks:
            return None
        shares = [b.share for b in blocks]
        overall = sum(b.gas_used for b in blocks) / sum(b.gas_limit for b in blocks)
        return cls(len(blocks), min(shares), statistics.median(shares), overall)


def minting_span(blocks: Sequence[Block], minted_in: set[int]) -> list[Block]:
    """The blocks from the first that minted a request of the run to the last."""
    numbers = [b.number for b in blocks if b.number in minted_in]
    if not numbers:
        return []
    return [b for b in blocks if numbers[0] <= b.number <= numbers[-1]]
