"""Broadcasting a stored transaction: send its raw bytes, remember that the node took it, mark its
batch and requests sent and announce it on tx.sent. A refused broadcast changes nothing stored: the
batch stays `signed` and is sent again (by the maintenance loop, or as a stuck transaction)."""

import logging

import aiohttp
import asyncpg
from redis.asyncio import Redis
from web3 import AsyncWeb3
from web3.exceptions import TransactionNotFound, Web3Exception

from services.batcher import metrics
from shared import logs
from shared.events import TxSent
from shared.streams import publish

log = logging.getLogger(__name__)

# Node answers meaning "this transaction (or its nonce) is already there": nothing to resend.
ALREADY_THERE = ("already known", "already imported", "known transaction", "nonce too low")
# Accepted hashes remembered; past this the set starts again (the node still answers for the rest).
MAX_REMEMBERED = 100_000


class Broadcaster:
    def __init__(
        self, w3: AsyncWeb3, pool: asyncpg.Pool, redis: Redis, tx_sent_stream: str, stream_maxlen: int
    ) -> None:
        self.w3 = w3
        self.pool = pool
        self.redis = redis
        self.tx_sent_stream = tx_sent_stream
        self.stream_maxlen = stream_maxlen
        # Hashes the node took (eth_sendRawTransaction succeeded): only these may be fee-bumped.
        self.taken: set[str] = set()

    async def send(self, batch_id: int, nonce: int, tx_hash: str, raw: bytes) -> bool:
        """Broadcast one attempt; True once the node has it."""
        with logs.bind(batch_id=batch_id, nonce=nonce, tx_hash=tx_hash):
            try:
                await self.w3.eth.send_raw_transaction(raw)
            except (Web3Exception, ValueError) as exc:
                if not any(text in str(exc).lower() for text in ALREADY_THERE):
                    metrics.BROADCAST_ERRORS.inc()
                    log.warning(
                        "broadcast of batch %d (nonce %d, tx %s) failed: %s", batch_id, nonce, tx_hash, exc
                    )
                    return False
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                metrics.BROADCAST_ERRORS.inc()
                log.warning("broadcast of batch %d (nonce %d) failed: %s", batch_id, nonce, exc)
                return False
            self._remember(tx_hash)
            async with self.pool.acquire() as conn, conn.transaction():
                await conn.execute(
                    "UPDATE batches SET status = 'sent', sent_at = coalesce(sent_at, now())"
                    " WHERE id = $1 AND status = 'signed'",
                    batch_id,
                )
                await conn.execute(
                    "UPDATE mint_requests SET status = 'sent', updated_at = now()"
                    " WHERE batch_id = $1 AND status = 'batched'",
                    batch_id,
                )
            await publish(
                self.redis,
                self.tx_sent_stream,
                TxSent(batch_id=batch_id, nonce=nonce, tx_hash=tx_hash),
                self.stream_maxlen,
            )
            metrics.BATCHES_SENT.inc()
            log.info("batch %d broadcast: nonce %d, tx %s", batch_id, nonce, tx_hash)
            return True

    async def accepted(self, tx_hash: str) -> bool:
        """True when the node took this transaction: it was broadcast without error, or the node
        knows its hash (a batcher restarted since)."""
        if tx_hash in self.taken:
            return True
        try:
            await self.w3.eth.get_transaction(tx_hash)  # type: ignore[arg-type]
        except TransactionNotFound:
            return False
        self._remember(tx_hash)
        return True

    def _remember(self, tx_hash: str) -> None:
        if len(self.taken) > MAX_REMEMBERED:
            self.taken.clear()
        self.taken.add(tx_hash)
