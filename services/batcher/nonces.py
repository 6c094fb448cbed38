"""The next nonce to assign: past everything the chain's pending state and PostgreSQL know of.

Read at recovery and again after anything that may leave the in-memory nonce stale (a store that
failed after signing, a node answering "nonce too low"): so no error makes the batcher try one nonce
forever, and no nonce is handed out twice.
"""

import asyncpg

from services.batcher.chain import WalletChain


async def next_nonce(chain: WalletChain, pool: asyncpg.Pool | asyncpg.Connection, wallet: str) -> int:
    pending = await chain.nonce("pending")
    stored = await pool.fetchval("SELECT max(nonce) FROM batches WHERE wallet = $1", wallet)
    return max(pending, -1 if stored is None else stored + 1)
