"""Completed is not final: a confirmed batch stays watched until its block is finalized (the chain's
`finalized` block, or `finality_depth` blocks deep where the chain has none). A batch whose block left
the canonical chain after its requests completed is reopened: the batch goes back to `signed`, so the
batcher broadcasts its stored transaction again, and its requests go back to `sent` with the reason,
so the confirmer settles them anew from whichever receipt the chain ends up with. Nothing stays
`completed` on a transaction that no longer exists, and its nonce is filled again.

Three signs of a reorg are looked at, each enough: the block at the batch's height has another hash,
or the wallet's transaction count says the batch's nonce was never used (a confirmed batch at or
above the chain's next nonce is not on the chain, whatever a block read said), confirmed by its
receipt being gone. The second catches a confirmation read from a block the chain later dropped
when the block reads do not show it (a node answering from before the reorg, a replica behind). The
third: a block the node answers as not there is looked at again, never taken for a reorg, until it is
below the final block; then the mined transaction's receipt decides."""

import logging
from dataclasses import dataclass

import asyncpg
from redis.asyncio import Redis

from services.confirmer import metrics
from shared.events import MintReorged
from shared.jsonrpc import JsonRpc, RpcError
from shared.streams import publish_many

log = logging.getLogger(__name__)

UNFINALIZED = """
SELECT id, wallet, nonce, block_number, block_hash, mined_tx_hash FROM batches
WHERE status = 'confirmed' AND finalized_at IS NULL AND block_hash IS NOT NULL
ORDER BY block_number LIMIT $1
"""
REOPEN_BATCH = """
UPDATE batches SET status = 'signed', block_number = NULL, block_hash = NULL, mined_tx_hash = NULL,
                   gas_used = NULL, confirmed_at = NULL
WHERE id = $1 AND status = 'confirmed' AND block_hash = $2
"""
REOPEN_REQUESTS = """
UPDATE mint_requests SET status = 'sent', error_message = $2, mint_tx_hash = NULL, token_id = NULL,
                         processed_at = NULL, updated_at = now()
WHERE batch_id = $1 AND status IN ('completed', 'failed')
RETURNING id
"""
REORGED = "reorged out after it was confirmed: its batch is broadcast and settled again"


@dataclass(frozen=True)
class Settled:
    id: int
    wallet: str
    nonce: int
    block_number: int
    block_hash: str
    tx_hash: str


class Finality:
    def __init__(
        self, pool: asyncpg.Pool, redis: Redis, rpc: JsonRpc, completed_stream: str, depth: int
    ) -> None:
        self.pool = pool
        self.redis = redis
        self.rpc = rpc
        self.completed_stream = completed_stream
        self.depth = depth

    async def check(self, limit: int = 500) -> int:
        """Look at every confirmed, unfinalized batch once; returns how many were reopened."""
        rows = [Settled(*row) for row in await self.pool.fetch(UNFINALIZED, limit)]
        if not rows:
            return 0
        numbers = sorted({row.block_number for row in rows})
        wallets = sorted({row.wallet for row in rows})
        # Settled: a chain without a `finalized` tag, or a block a replica does not serve this round,
        # spoils nothing else; a block with no answer is looked at again, never taken for a reorg.
        head, finalized, *answers = await self.rpc.batch_settled(
            [("eth_blockNumber", []), ("eth_getBlockByNumber", ["finalized", False])]
            + [("eth_getTransactionCount", [wallet, "latest"]) for wallet in wallets]
            + [("eth_getBlockByNumber", [hex(n), False]) for n in numbers]
        )
        if isinstance(head, RpcError):
            raise head
        counts, blocks = answers[: len(wallets)], answers[len(wallets) :]
        final = self._final_block(int(head, 16), finalized)
        canonical = {
            n: block["hash"] for n, block in zip(numbers, blocks, strict=True) if isinstance(block, dict)
        }
        absent = {n for n, block in zip(numbers, blocks, strict=True) if block is None}
        mined = {w: int(c, 16) for w, c in zip(wallets, counts, strict=True) if isinstance(c, str)}
        reopened = 0
        done = []
        unused = []
        vanished = []
        for row in rows:
            if row.block_number not in canonical:
                if row.block_number in absent and row.block_number <= final:
                    vanished.append(row)
                continue
            if canonical[row.block_number] != row.block_hash:
                reopened += await self._reopen(row, "its block has another hash now")
            elif row.wallet in mined and row.nonce >= mined[row.wallet]:
                unused.append(row)
            elif row.block_number <= final:
                done.append(row.id)
        # Unused: its nonce is not on the chain, whatever the block read said. Vanished: the node has
        # no block at a final height (a node serves every block below its head; anvil was seen to lose
        # one for good after anvil_reorg, and with it the only sign of that reorg). A vanished batch
        # whose receipt is in the stored block is final; an unused one stays watched.
        doubtful = [
            (row, f"the chain has not used its nonce (the wallet's next nonce is {mined[row.wallet]})")
            for row in unused
        ] + [(row, f"the node has no block {row.block_number} below its final block") for row in vanished]
        receipt_reopened, intact = await self._judge_by_receipt(doubtful)
        reopened += receipt_reopened
        done += [row.id for row in intact if row in vanished]
        if done:
            await self.pool.execute(
                "UPDATE batches SET finalized_at = now() WHERE id = ANY($1::bigint[])", done
            )
        return reopened

    async def _judge_by_receipt(self, doubtful: list[tuple[Settled, str]]) -> tuple[int, list[Settled]]:
        """Batches a block read could not clear, each with why it is in doubt, judged by the mined
        transaction's receipt (one batch of reads): reopened, with the reason, where the node has no
        receipt for it in the stored block; a node that does not answer decides nothing. Returns how
        many were reopened and the batches whose receipt is in the stored block."""
        if not doubtful:
            return 0, []
        receipts = await self.rpc.batch_settled(
            [("eth_getTransactionReceipt", [row.tx_hash]) for row, _ in doubtful]
        )
        reopened, intact = 0, []
        for (row, doubt), receipt in zip(doubtful, receipts, strict=True):
            if isinstance(receipt, RpcError):
                continue
            if isinstance(receipt, dict) and receipt.get("blockHash") == row.block_hash:
                intact.append(row)
                continue
            where = (
                "its transaction is not mined"
                if not isinstance(receipt, dict)
                else f"its transaction is in block {int(str(receipt.get('blockNumber')), 16)} now"
            )
            reopened += await self._reopen(row, f"{doubt}, and {where}")
        return reopened, intact

    def _final_block(self, head: int, finalized: object) -> int:
        """The chain's finalized block where it names one, else `depth` blocks below the head."""
        if isinstance(finalized, dict) and finalized.get("number"):
            return int(str(finalized["number"]), 16)
        return head - self.depth

    async def _reopen(self, batch: Settled, why: str) -> int:
        async with self.pool.acquire() as conn, conn.transaction():
            if await conn.execute(REOPEN_BATCH, batch.id, batch.block_hash) == "UPDATE 0":
                return 0
            rows = await conn.fetch(REOPEN_REQUESTS, batch.id, REORGED)
        metrics.REORGED_AFTER_CONFIRMED.inc()
        log.warning(
            "batch %d (nonce %d, tx %s) left the canonical chain after it was confirmed in block %d (%s): "
            "reopened with %d requests",
            batch.id,
            batch.nonce,
            batch.tx_hash,
            batch.block_number,
            why,
            len(rows),
            extra={"batch_id": batch.id, "nonce": batch.nonce, "tx_hash": batch.tx_hash},
        )
        events = [
            MintReorged(request_id=str(r["id"]), tx_hash=batch.tx_hash, block_number=batch.block_number)
            for r in rows
        ]
        await publish_many(self.redis, self.completed_stream, events)
        return 1
