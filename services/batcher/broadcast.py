"""Broadcasting a stored transaction: send its raw bytes to every RPC endpoint, remember that a node
took it, mark its batch and requests sent and announce it on tx.sent. A refusal changes nothing stored
and is returned classified (send_errors): the caller decides what the batch needs next.
"""

import logging

import asyncpg
from redis.asyncio import Redis

from services.batcher import metrics
from services.batcher.chain import WalletChain
from services.batcher.send_errors import Classified, Refusal, classify, decide
from shared import logs
from shared.events import TxSent
from shared.jsonrpc import NodeError, RpcError
from shared.streams import publish

log = logging.getLogger(__name__)

# Refusals that still leave the transaction (or its nonce) with the chain: the batch counts as sent.
OUT_ANYWAY = (Refusal.KNOWN, Refusal.NONCE_USED)


class Broadcaster:
    def __init__(
        self, chain: WalletChain, pool: asyncpg.Pool, redis: Redis, tx_sent_stream: str, stream_maxlen: int
    ) -> None:
        self.chain = chain
        self.pool = pool
        self.redis = redis
        self.tx_sent_stream = tx_sent_stream
        self.stream_maxlen = stream_maxlen

    async def send(self, batch_id: int, nonce: int, tx_hash: str, raw: bytes) -> Classified | None:
        """Broadcast one attempt to every endpoint: None once a node has it, else why not."""
        with logs.bind(batch_id=batch_id, nonce=nonce, tx_hash=tx_hash):
            answers = await self.chain.rpc.send_raw_transaction(raw)
            verdict = decide([_classified(answer) for answer in answers])
            if verdict is not None and verdict.refusal not in OUT_ANYWAY:
                metrics.BROADCAST_ERRORS.labels(verdict.refusal.value, self.chain.wallet).inc()
                log.warning(
                    "broadcast of batch %d (nonce %d, tx %s) refused (%s): %s",
                    batch_id,
                    nonce,
                    tx_hash,
                    verdict.refusal.value,
                    verdict.message,
                )
                return verdict
            async with self.pool.acquire() as conn, conn.transaction():
                first = await conn.execute(
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
            if first == "UPDATE 1":
                metrics.BATCHES_SENT.labels(self.chain.wallet).inc()
            log.info("batch %d broadcast: nonce %d, tx %s", batch_id, nonce, tx_hash)
            return verdict


def _classified(answer: object) -> Classified | None:
    """One endpoint's answer to eth_sendRawTransaction: None for a hash, else the refusal."""
    if isinstance(answer, NodeError):
        return classify(answer.message, reached=True)
    if isinstance(answer, RpcError):
        return classify(str(answer), reached=False)
    return None
