"""Which batches are watched, and what one JSON-RPC round says about them.

PostgreSQL says what is watched (every batch in `signed` / `sent`, with all of its attempts); one
settled JSON-RPC batch per round asks each wallet's mined nonce and every attempt's receipt, so one
failed call costs only the batch it was about. The round's head is the one read before it: a round split
for the provider's batch cap, or a part retried after a 429, is answered in parts, and its receipts may
be newer than any head read within it, but never older than the head read before.

A receipt, once read, is kept with its batch: while the block at its height keeps its hash, the
receipt is the same, so later rounds ask for that block's header instead (a full batch's receipt is
megabytes, read again on every block until it is deep enough). A block with another hash, or none,
drops the kept receipt: the batch is read afresh in the next round.
"""

from dataclasses import dataclass, field

import asyncpg

from shared.jsonrpc import JsonRpc, RpcError

OPEN_BATCHES = """
SELECT b.id, b.kind, b.wallet, b.nonce, b.tx_hash, array_agg(t.tx_hash ORDER BY t.created_at) AS tx_hashes
FROM batches b JOIN batch_transactions t ON t.batch_id = b.id
WHERE b.status IN ('signed', 'sent')
GROUP BY b.id
"""
ATTEMPTS = "SELECT tx_hash FROM batch_transactions WHERE batch_id = $1 ORDER BY created_at"


@dataclass
class Watched:
    id: int
    kind: str
    wallet: str
    nonce: int
    latest_hash: str
    # Every attempt (the original, then each replacement): any of them may be the one mined.
    tx_hashes: list[str]
    # Blocks seen while this batch waits (see unmined.py).
    next_in_line_since: int | None = None
    last_stuck_head: int | None = None
    nonce_used_since: int | None = None
    # The receipt of the attempt mined, as last read; trusted while its block keeps its hash.
    receipt: dict | None = None


@dataclass
class Round:
    head: int
    # wallet -> its transaction count at the head: the next nonce to be mined.
    mined_nonces: dict[str, int]
    # batch id -> the receipt of one of its attempts (the latest attempt's, if several have one).
    receipts: dict[int, dict]
    # Batches with no receipt in this round and at least one receipt call that failed: nothing can
    # be concluded about them until the node answers for every attempt.
    unanswered: set[int]
    # Of `receipts`, those `confirmations` deep or more...
    deep: dict[int, dict] = field(default_factory=dict)
    # ...and the canonical hash of each of their blocks (None where the node has no such block).
    canonical: dict[int, str | None] = field(default_factory=dict)
    # Batches whose kept receipt's block has another hash now (or is gone): batch id -> its height.
    reorged: dict[int, int] = field(default_factory=dict)


async def open_batches(pool: asyncpg.Pool, known: dict[int, Watched]) -> dict[int, Watched]:
    """Every open batch, keeping what was already seen of those watched before."""
    current = {}
    for row in await pool.fetch(OPEN_BATCHES):
        batch = known.get(row["id"])
        if batch is None:
            batch = Watched(row["id"], row["kind"], row["wallet"], row["nonce"], row["tx_hash"], [])
        if batch.tx_hashes != list(row["tx_hashes"]):
            # A new attempt (a rebroadcast after a reorg, a replacement): its wait starts over, and
            # which attempt is mined is asked again.
            batch.nonce_used_since = None
            batch.receipt = None
        batch.latest_hash, batch.tx_hashes = row["tx_hash"], list(row["tx_hashes"])
        current[row["id"]] = batch
    return current


async def read_round(rpc: JsonRpc, batches: list[Watched], confirmations: int, head: int) -> Round:
    """One JSON-RPC batch for each wallet's mined nonce, every attempt's receipt and, for a batch whose
    receipt is kept, its block's header instead; `head` was read before it."""
    kept = [(batch, batch.receipt) for batch in batches if batch.receipt is not None]
    # Latest attempt first: after a fee bump, that is the one most likely mined.
    asked = [
        (batch, tx_hash)
        for batch in batches
        if batch.receipt is None
        for tx_hash in reversed(batch.tx_hashes)
    ]
    wallets = sorted({batch.wallet for batch in batches})
    kept_blocks = sorted({_block_number(receipt) for _, receipt in kept})
    answers = await rpc.batch_settled(
        [("eth_getTransactionCount", [wallet, "latest"]) for wallet in wallets]
        + [("eth_getBlockByNumber", [hex(n), False]) for n in kept_blocks]
        + [("eth_getTransactionReceipt", [tx_hash]) for _, tx_hash in asked]
    )
    counts, answers = answers[: len(wallets)], answers[len(wallets) :]
    blocks, answers = answers[: len(kept_blocks)], answers[len(kept_blocks) :]
    if failed := next((a for a in counts if isinstance(a, RpcError)), None):
        raise failed
    found = Round(
        head,
        {wallet: int(count, 16) for wallet, count in zip(wallets, counts, strict=True)},
        {},
        set(),
    )
    failed_calls: set[int] = set()
    hashes = {n: block for n, block in zip(kept_blocks, blocks, strict=True)}
    for batch, receipt in kept:
        number = _block_number(receipt)
        block = hashes[number]
        if isinstance(block, RpcError):
            failed_calls.add(batch.id)
        elif isinstance(block, dict) and block.get("hash") == receipt["blockHash"]:
            found.receipts[batch.id] = receipt
            found.canonical[number] = block["hash"]
        else:
            found.reorged[batch.id] = number
            batch.receipt = None
            failed_calls.add(batch.id)  # nothing to conclude until its attempts are read again
    for (batch, _), receipt in zip(asked, answers, strict=True):
        if isinstance(receipt, RpcError):
            failed_calls.add(batch.id)
        elif receipt is not None and batch.id not in found.receipts:
            found.receipts[batch.id] = batch.receipt = receipt
    found.unanswered = failed_calls - set(found.receipts)
    found.deep = {
        batch_id: receipt
        for batch_id, receipt in found.receipts.items()
        if head - _block_number(receipt) + 1 >= confirmations
    }
    unknown = {_block_number(r) for r in found.deep.values()} - set(found.canonical)
    found.canonical.update(await block_hashes(rpc, unknown))
    return found


def _block_number(receipt: dict) -> int:
    return int(receipt["blockNumber"], 16)


async def block_hashes(rpc: JsonRpc, numbers: set[int]) -> dict[int, str | None]:
    if not numbers:
        return {}
    ordered = sorted(numbers)
    blocks = await rpc.batch([("eth_getBlockByNumber", [hex(n), False]) for n in ordered])
    return {n: (block or {}).get("hash") for n, block in zip(ordered, blocks, strict=True)}


async def mined_attempt(pool: asyncpg.Pool, rpc: JsonRpc, batch_id: int) -> dict | None:
    """The receipt of any attempt of the batch, every attempt read afresh from PostgreSQL (a
    replacement stored since the last reload counts too). Raises RpcError when the node does not
    answer for every one of them: an unanswered attempt may be the one mined."""
    hashes = [row["tx_hash"] for row in await pool.fetch(ATTEMPTS, batch_id)]
    if not hashes:
        return None
    receipts = await rpc.batch([("eth_getTransactionReceipt", [tx_hash]) for tx_hash in hashes])
    return next((receipt for receipt in receipts if receipt is not None), None)
