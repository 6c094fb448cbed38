"""Drive N paid mints through the running system (`make run`) and print what it achieved.

Each mint comes from a fresh payer with an x402 v2 payment (an EIP-3009 authorization in the
PAYMENT-SIGNATURE header). Payers are funded and authorizations signed before the clock starts.
Figures: accepted requests/s and intake latency, mints/min end to end, time from request to
completed, mints per transaction, gas per mint and the share of block gas used.

    .venv/bin/python bench/pipeline.py [--count 5000] [--concurrency 64] [--intake URL]
"""

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import aiohttp
import asyncpg
from eth_account import Account
from web3 import HTTPProvider, Web3

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devstack.anvil import DEV_KEYS  # noqa: E402
from shared.deploy import Deployment, load_artifact  # noqa: E402
from tests.support.payments import x402_header  # noqa: E402

RUN_DIR = Path(".run")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


def fund(w3: Web3, deployment: Deployment, count: int) -> list:
    payers = [Account.create() for _ in range(count)]
    usdc = w3.eth.contract(address=deployment.usdc, abi=load_artifact("MockUSDC")["abi"])
    funder = Account.from_key(DEV_KEYS[0])  # anvil's public dev key 0 (local chain only)
    nonce = w3.eth.get_transaction_count(funder.address, "pending")
    hashes = []
    for start in range(0, count, 500):
        chunk = [p.address for p in payers[start : start + 500]]
        tx = usdc.functions.mintMany(chunk, deployment.price).build_transaction(
            {"from": funder.address, "nonce": nonce, "chainId": deployment.chain_id}
        )
        hashes.append(w3.eth.send_raw_transaction(funder.sign_transaction(tx).raw_transaction))
        nonce += 1
    for tx_hash in hashes:
        w3.eth.wait_for_transaction_receipt(tx_hash, timeout=120)
    return payers


def headers_for(payers: list, deployment: Deployment) -> list[str]:
    return [x402_header(payer, deployment) for payer in payers]


async def post_all(intake: str, headers: list[str], concurrency: int) -> tuple[list[str], list[float], dict]:
    queue_ids: list[str] = []
    latencies: list[float] = []
    errors: dict[str, int] = {}
    semaphore = asyncio.Semaphore(concurrency)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(header: str) -> None:
            async with semaphore:
                started = time.perf_counter()
                async with session.post(
                    f"{intake}/mint", json={}, headers={"PAYMENT-SIGNATURE": header}
                ) as resp:
                    body = await resp.json()
                latencies.append(time.perf_counter() - started)
                if resp.status == 202:
                    queue_ids.append(body["queueId"])
                else:
                    key = f"{resp.status} {body.get('error')}"
                    errors[key] = errors.get(key, 0) + 1

        await asyncio.gather(*(one(h) for h in headers))
    return queue_ids, latencies, errors


async def wait_done(pool: asyncpg.Pool, ids: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        open_count = await pool.fetchval(
            "SELECT count(*) FROM mint_requests"
            " WHERE id = ANY($1::uuid[]) AND status NOT IN ('completed', 'failed')",
            ids,
        )
        print(f"\r  waiting: {open_count} not yet completed   ", end="", file=sys.stderr, flush=True)
        if open_count == 0:
            break
        await asyncio.sleep(1)
    print(file=sys.stderr)


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--intake", default="http://127.0.0.1:4021")
    parser.add_argument("--timeout", type=float, default=900)
    args = parser.parse_args()

    env = dict(line.split("=", 1) for line in (RUN_DIR / "env").read_text().splitlines() if "=" in line)
    deployment = Deployment.load(RUN_DIR / "deployment.json")
    w3 = Web3(HTTPProvider(env["RPC_URL"]))

    print(f"funding {args.count} fresh payers and signing their x402 payments ...", file=sys.stderr)
    payers = fund(w3, deployment, args.count)
    headers = headers_for(payers, deployment)
    start_block = w3.eth.block_number

    print("posting ...", file=sys.stderr)
    started = time.perf_counter()
    ids, latencies, errors = await post_all(args.intake, headers, args.concurrency)
    post_seconds = time.perf_counter() - started

    pool = await asyncpg.create_pool(env["DATABASE_URL"], min_size=1, max_size=2)
    await wait_done(pool, ids, args.timeout)
    rows = await pool.fetch(
        "SELECT status, created_at, processed_at, batch_id FROM mint_requests WHERE id = ANY($1::uuid[])", ids
    )
    completed = [r for r in rows if r["status"] == "completed"]
    batch_ids = list({r["batch_id"] for r in completed})
    batches = await pool.fetch(
        "SELECT b.id, b.gas_used, b.block_number, count(r.id) AS minted FROM batches b"
        " JOIN mint_requests r ON r.batch_id = b.id AND r.status = 'completed'"
        " WHERE b.id = ANY($1::bigint[]) GROUP BY b.id",
        batch_ids,
    )
    await pool.close()

    end_block = max((b["block_number"] for b in batches), default=start_block)
    blocks = [w3.eth.get_block(n) for n in range(start_block + 1, end_block + 1)]
    first = min(r["created_at"] for r in completed) if completed else None
    last = max(r["processed_at"] for r in completed) if completed else None
    span = (last - first).total_seconds() if completed else float("nan")
    waits = [(r["processed_at"] - r["created_at"]).total_seconds() for r in completed]
    minted = sum(b["minted"] for b in batches)
    block_gas_share = sum(b["gasUsed"] for b in blocks) / max(1, sum(b["gasLimit"] for b in blocks))
    gas = sum(b["gas_used"] for b in batches)

    print(f"requests posted            {args.count} (concurrency {args.concurrency})")
    print(f"accepted (202)             {len(ids)}; refused: {errors or 'none'}")
    print(f"accepted requests/s        {len(ids) / post_seconds:.1f}")
    print(
        f"intake latency p50 / p99   {percentile(latencies, 0.5) * 1000:.1f} ms / "
        f"{percentile(latencies, 0.99) * 1000:.1f} ms"
    )
    print(f"completed                  {len(completed)} ({len(rows) - len(completed)} not completed)")
    print(
        f"mints/min end to end       {len(completed) / span * 60:.0f}"
        f"  ({span:.1f} s first request to last mint)"
    )
    print(f"request->completed p50/p99 {statistics.median(waits):.1f} s / {percentile(waits, 0.99):.1f} s")
    print(f"mints per transaction      {minted / max(1, len(batches)):.1f} over {len(batches)} transactions")
    print(f"gas per mint               {gas / max(1, minted):,.0f}")
    print(f"block gas used             {block_gas_share:.1%} of {len(blocks)} blocks")


if __name__ == "__main__":
    asyncio.run(main())
