"""Wallet health for the dashboards and alerts, read by the batcher's maintenance loop: the balance
that pays for gas, the chain's nonce against the batcher's, and the age of the oldest open batch."""

import asyncio
import logging
from collections.abc import Callable

import aiohttp
import asyncpg
from eth_typing import ChecksumAddress
from web3 import AsyncWeb3
from web3.exceptions import Web3Exception

from services.batcher import metrics

log = logging.getLogger(__name__)

OLDEST_OPEN = """
SELECT coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8
FROM batches WHERE wallet = $1 AND status IN ('signed', 'sent')
"""


async def observe(
    w3: AsyncWeb3, pool: asyncpg.Pool, wallet: ChecksumAddress, next_nonce: Callable[[], int]
) -> None:
    """Update the wallet gauges; a failed read is logged and leaves the last values."""
    try:
        balance, mined = await asyncio.gather(
            w3.eth.get_balance(wallet, "latest"), w3.eth.get_transaction_count(wallet, "latest")
        )
        oldest = await pool.fetchval(OLDEST_OPEN, wallet)
    except (OSError, TimeoutError, aiohttp.ClientError, Web3Exception, asyncpg.PostgresError) as exc:
        log.warning("reading wallet %s balance and nonce failed: %s", wallet, exc)
        return
    metrics.WALLET_BALANCE.labels(wallet).set(balance)
    metrics.CHAIN_NONCE.labels(wallet).set(mined)
    # Read after the chain: the batcher's nonce only grows, so a batch sent meanwhile never makes the
    # lag negative. (Negative means something else used the wallet's nonces.)
    metrics.NONCE_LAG.labels(wallet).set(next_nonce() - mined)
    metrics.OLDEST_IN_FLIGHT.labels(wallet).set(oldest)
