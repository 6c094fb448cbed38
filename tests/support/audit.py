"""The end of a run judged as a user would: PostgreSQL's records against the chain as it now is."""

import asyncio
import collections
import time
from collections.abc import Callable, Sequence

import asyncpg
from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.exceptions import BlockNotFound, TransactionNotFound

from shared.deploy import Deployment, load_artifact
from tests.support.load import Load
from tests.support.payments import usdc_contract

FINAL = ("completed", "failed")
LOG_RANGE = 2000
STATE_BATCH = 500


async def settled(pool: asyncpg.Pool, w3: Web3, minter: str) -> bool:
    """Whether the run is over: every request final, every batch confirmed or reverted and in the
    block the chain has at its height, and no transaction of the wallet pending."""
    if await pool.fetchval("SELECT count(*) FROM mint_requests WHERE status <> ALL($1::text[])", list(FINAL)):
        return False
    if await pool.fetchval("SELECT count(*) FROM batches WHERE status IN ('signed', 'sent')"):
        return False
    if w3.eth.get_transaction_count(minter, "pending") != w3.eth.get_transaction_count(minter, "latest"):
        return False
    batches = await pool.fetch(
        "SELECT block_number, block_hash, mined_tx_hash FROM batches"
        " WHERE status = 'confirmed' AND finalized_at IS NULL"
    )
    return all(
        canonical_block_hash(w3, b["block_number"], b["mined_tx_hash"]) == b["block_hash"] for b in batches
    )


def canonical_block_hash(w3: Web3, number: int, tx_hash: str | None) -> str | None:
    """The hash of the chain's block at `number`. anvil, after anvil_reorg, was seen to answer a block
    far below its head as not found for good (CI, chaos run): then the block the mined transaction's
    receipt names, if that block is at `number` (None: not known; the on-chain audit judges the mints)."""
    try:
        return w3.eth.get_block(number)["hash"].to_0x_hex()
    except BlockNotFound:
        if tx_hash is None:
            return None
        try:
            receipt = w3.eth.get_transaction_receipt(tx_hash)
        except TransactionNotFound:
            return None
        return receipt["blockHash"].to_0x_hex() if receipt["blockNumber"] == number else None


async def wait_settled(
    pool: asyncpg.Pool, w3: Web3, minter: str, stalled_after: float, timeout: float
) -> bool:
    """Whether the run became `settled` before `timeout`; gives up sooner once nothing changed in
    PostgreSQL for `stalled_after` seconds (a wedged run does not sit out the whole timeout)."""
    deadline = time.monotonic() + timeout
    mark, changed = None, time.monotonic()
    while time.monotonic() < deadline:
        try:
            if await settled(pool, w3, minter):
                return True
            now_mark = await progress_mark(pool)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            now_mark = mark
        if now_mark != mark:
            mark, changed = now_mark, time.monotonic()
        elif time.monotonic() - changed > stalled_after:
            return False
        await asyncio.sleep(1)
    return False


class NonceHole(AssertionError):
    """A batch given up as dropped holds a nonce the chain never mined: every later batch waits."""


async def nonce_holes(pool: asyncpg.Pool, w3: Web3, minter: str) -> list[str]:
    """Batches the confirmer gave up as dropped (reverted, never mined) at or above the wallet's
    next nonce on the chain: nothing will send a transaction with that nonce any more."""
    mined = w3.eth.get_transaction_count(minter, "latest")
    rows = await pool.fetch(
        "SELECT id, nonce FROM batches WHERE status = 'reverted' AND block_number IS NULL AND nonce >= $1"
        " ORDER BY nonce",
        mined,
    )
    return [f"batch {r['id']} (nonce {r['nonce']})" for r in rows]


async def progress_mark(pool: asyncpg.Pool) -> tuple[object, ...]:
    """What changes while the system still works: request and batch counts per status."""
    requests = await pool.fetch("SELECT status, count(*) AS n FROM mint_requests GROUP BY status ORDER BY 1")
    batches = await pool.fetch("SELECT status, count(*) AS n FROM batches GROUP BY status ORDER BY 1")
    return tuple((r["status"], r["n"]) for r in [*requests, *batches])


async def describe(pool: asyncpg.Pool, w3: Web3, minter: str) -> list[str]:
    """The state of the run, to read when it did not end: requests and batches per status, the open
    batches and the wallet's nonces on the chain."""
    lines = [
        f"  wallet nonce latest {w3.eth.get_transaction_count(minter, 'latest')},"
        f" pending {w3.eth.get_transaction_count(minter, 'pending')}; head {w3.eth.block_number}"
    ]
    for row in await pool.fetch("SELECT status, count(*) AS n FROM mint_requests GROUP BY status"):
        lines.append(f"  requests {row['status']}: {row['n']}")
    batches = await pool.fetch(
        "SELECT id, nonce, status, block_number, attempts, cardinality(request_ids) AS size,"
        " (SELECT count(*) FROM mint_requests r WHERE r.batch_id = b.id"
        "  AND r.status NOT IN ('completed', 'failed')) AS open"
        " FROM batches b ORDER BY id"
    )
    for b in batches:
        if b["status"] != "confirmed" or b["open"]:
            lines.append(
                f"  batch {b['id']} nonce {b['nonce']} {b['status']} block {b['block_number']}"
                f" attempts {b['attempts']}: {b['size']} entries, {b['open']} of its requests not final"
            )
    return lines


def minted_payment_ids(w3: Web3, deployment: Deployment, from_block: int) -> list[str]:
    """The paymentId of every Minted event of the token on the chain, in bounded log queries. Not for
    a chain anvil_reorg rewrote: anvil then returned a reorged-out block's logs beside those of the
    block that replaced it, even under the canonical block's hash (`processed_payments` reads state)."""
    token = w3.eth.contract(address=deployment.token, abi=load_artifact("MintToken")["abi"])
    head = w3.eth.block_number
    found = []
    for start in range(from_block, head + 1, LOG_RANGE):
        logs = token.events.Minted().get_logs(from_block=start, to_block=min(head, start + LOG_RANGE - 1))
        found += ["0x" + bytes(entry["args"]["paymentId"]).hex() for entry in logs]
    return found


def processed_payments(w3: Web3, deployment: Deployment, payment_ids: Sequence[str]) -> set[str]:
    """The payments among `payment_ids` the token's contract holds as processed (set once, by the
    mint itself), read from its state in JSON-RPC batches."""
    token = w3.eth.contract(address=deployment.token, abi=load_artifact("MintToken")["abi"])
    found = set()
    for start in range(0, len(payment_ids), STATE_BATCH):
        chunk = payment_ids[start : start + STATE_BATCH]
        with w3.batch_requests() as batch:
            for payment_id in chunk:
                batch.add(token.functions.processed(bytes.fromhex(payment_id.removeprefix("0x"))))
            found |= {p for p, flag in zip(chunk, batch.execute(), strict=True) if flag}
    return found


async def audit(
    pool: asyncpg.Pool,
    w3: Web3,
    deployment: Deployment,
    payers: Sequence[LocalAccount],
    per_payer: int,
    load: Load,
    accepted_ids: Sequence[str],
    start_block: int,
    reorged_batches: Sequence[int],
    say: Callable[[str], None] = print,
) -> None:
    rows = await pool.fetch("SELECT id, status, payer_address, payment_id, error_message FROM mint_requests")
    by_id = {str(r["id"]): r for r in rows}
    statuses = collections.Counter(r["status"] for r in rows)
    unaccepted = len(rows) - len(set(accepted_ids))
    say(f"  PostgreSQL: {dict(statuses)}; {unaccepted} rows the client never heard accepted")
    failures = collections.Counter(r["error_message"] for r in rows if r["status"] == "failed")
    if failures:
        say(f"  failed: {dict(failures.most_common(5))}")

    # Nothing stuck, and every accepted request completed.
    assert set(statuses) <= set(FINAL), statuses
    not_completed = [i for i in accepted_ids if by_id[i]["status"] != "completed"]
    assert not not_completed, [(i, by_id[i]["status"], by_id[i]["error_message"]) for i in not_completed[:10]]
    assert len(set(accepted_ids)) == len(accepted_ids) == len(load.accepted)

    # Exactly once on the chain, judged by the contract's state, not its logs (see
    # minted_payment_ids): every completed payment is processed, so minted at least once, and the
    # supply is one mint per completed request, so none was minted twice and nothing else was minted.
    completed = [r for r in rows if r["status"] == "completed"]
    completed_ids = [r["payment_id"] for r in completed]
    assert len(set(completed_ids)) == len(completed_ids), "two completed requests share a payment"
    unprocessed = set(completed_ids) - processed_payments(w3, deployment, completed_ids)
    assert not unprocessed, f"{len(unprocessed)} completed but never minted, e.g. {sorted(unprocessed)[:3]}"
    token = w3.eth.contract(address=deployment.token, abi=load_artifact("MintToken")["abi"])
    supply = token.functions.totalSupply().call() // deployment.mint_amount
    assert supply == len(completed), f"the token's supply is {supply} mints for {len(completed)} completed"

    # Per payer: tokens held are what PostgreSQL says completed, and the money rule holds exactly
    # (every mint paid once, every payment minted once).
    usdc = usdc_contract(w3, deployment)
    completed_by_payer = collections.Counter(r["payer_address"] for r in completed)
    funded = per_payer * deployment.price
    for payer in payers:
        mints = token.functions.balanceOf(payer.address).call() // deployment.mint_amount
        paid = funded - usdc.functions.balanceOf(payer.address).call()
        assert mints == completed_by_payer[payer.address], payer.address
        assert mints <= paid // deployment.price, (payer.address, mints, paid)
        assert paid == mints * deployment.price, (payer.address, mints, paid)

    # The reorgs took completed batches away, and their requests were settled again.
    assert reorged_batches, "no reorg took a completed batch away; the run did not test that"
    reopened = await pool.fetch(
        "SELECT DISTINCT request_id FROM mint_request_history"
        " WHERE status = 'sent' AND reason LIKE 'reorged out%'"
    )
    in_reorged = await pool.fetchval(
        "SELECT count(DISTINCT r.id) FROM mint_requests r JOIN batches b ON b.id = ANY($1::bigint[])"
        " AND r.id = ANY(b.request_ids)",
        list(reorged_batches),
    )
    say(f"  reorged-out completed batches {list(reorged_batches)}: {len(reopened)} requests settled again")
    assert len(reopened) >= in_reorged > 0
    assert all(by_id[str(r["request_id"])]["status"] == "completed" for r in reopened)
