"""Wallet health for the dashboards and alerts, read by the batcher's maintenance loop: the balance
that pays for gas, the chain's nonce against the batcher's, and the age of the oldest open batch."""

import logging
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg

from services.batcher import metrics
from services.batcher.chain import WalletChain
from shared.jsonrpc import RpcError

log = logging.getLogger(__name__)

OLDEST_OPEN = """
SELECT coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8
FROM batches WHERE wallet = $1 AND status IN ('signed', 'sent')
"""


@dataclass(frozen=True)
class Seen:
    balance: int
    # The wallet's transaction count at the latest block: the next nonce to be mined.
    mined: int


async def observe(chain: WalletChain, pool: asyncpg.Pool, next_nonce: Callable[[], int]) -> Seen | None:
    """Update the wallet gauges and return what was read; a failed read is logged, leaves the last
    values and returns None."""
    wallet = chain.wallet
    try:
        balance, mined = await chain.balance_and_mined_nonce()
        oldest = await pool.fetchval(OLDEST_OPEN, wallet)
    except (OSError, TimeoutError, RpcError, asyncpg.PostgresError) as exc:
        log.warning("reading wallet %s balance and nonce failed: %s", wallet, exc)
        return None
    metrics.WALLET_BALANCE.labels(wallet).set(balance)
    metrics.CHAIN_NONCE.labels(wallet).set(mined)
    # Read after the chain: the batcher's nonce only grows, so a batch sent meanwhile never makes the
    # lag negative. (Negative means something else used the wallet's nonces.)
    metrics.NONCE_LAG.labels(wallet).set(next_nonce() - mined)
    metrics.OLDEST_IN_FLIGHT.labels(wallet).set(oldest)
    return Seen(balance, mined)
