"""Growth does not slow intake down: POST /mint and every status route against an empty database and
against one holding 1,000,000 historical requests, side by side; the plan of every query those routes
run; and Redis memory, which the streams' trimming keeps bounded.

    .venv/bin/python bench/growth.py [--history 1000000] [--requests 400] [--concurrency 16]

Starts its own Redis, anvil (fresh contracts) and two intakes (`python -m services.intake`, logs in a
temp dir), one per database: `growth_empty` and `growth_filled` on a devstack PostgreSQL on a free
port, or, with DATABASE_URL set, that database (it gets the history: use one you can spare) and an
empty sibling `<name>_empty` on the same server. Rounds alternate between the two intakes, so a busy
machine slows both alike. A round posts `--requests` gasless mints from fresh payers at
`--concurrency` and `--whale` mints one at a time from one payer (who holds every 50th historical
request), times each status route `--samples` times in a row with those requests queued, then marks
them completed, so every round starts from the same queue.
"""

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from eth_account import Account
from eth_utils import to_checksum_address
from redis.asyncio import Redis
from web3 import HTTPProvider, Web3

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import history  # noqa: E402
from bench.explain import backlog_plans, explain_routes  # noqa: E402
from bench.routes import Round, measure, percentile, post  # noqa: E402
from bench.stream_memory import trimming, used_memory  # noqa: E402
from devstack.anvil import DEV_KEYS, Anvil  # noqa: E402
from devstack.deploy import FUND_CHUNK, deploy_dev  # noqa: E402
from devstack.ports import free_port  # noqa: E402
from devstack.postgres_server import PostgresServer  # noqa: E402
from devstack.redis_server import RedisServer  # noqa: E402
from shared import db, keys  # noqa: E402
from shared.deploy import Deployment, load_artifact  # noqa: E402
from shared.keys import Keys  # noqa: E402
from tests.support.payments import authorize  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
WHALE_EVERY = 50
RENDER = {"name": "Growth", "palette": "ocean", "shape": "star", "seed": 3, "frameCount": 2, "size": 32}


@dataclass
class Side:
    """One database and the intake in front of it."""

    name: str
    dsn: str
    url: str
    names: Keys
    pool: asyncpg.Pool | None = None
    targets: dict[str, str] = field(default_factory=dict)
    figures: dict[str, list[float]] = field(default_factory=dict)


def gasless(payer: Any, deployment: Deployment, **terms: Any) -> dict[str, Any]:
    return {"paymentType": "gasless", **authorize(payer, deployment, **terms).payload}


def fund(w3: Web3, deployment: Deployment, count: int, amount: int) -> list:
    payers = [Account.create() for _ in range(count)]
    usdc = w3.eth.contract(address=deployment.usdc, abi=load_artifact("MockUSDC")["abi"])
    funder = Account.from_key(DEV_KEYS[0])  # anvil's public dev key 0 (local chain only)
    for start in range(0, count, FUND_CHUNK):
        chunk = [p.address for p in payers[start : start + FUND_CHUNK]]
        tx_hash = usdc.functions.mintMany(chunk, amount).transact({"from": funder.address})
        w3.eth.wait_for_transaction_receipt(tx_hash, timeout=120)
    return payers


@contextlib.contextmanager
def intake_process(env: dict[str, str], log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "services.intake"],
            cwd=REPO,
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=15)


async def wait_healthy(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline and proc.poll() is None:
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(f"{url}/health") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.2)
    raise SystemExit(f"intake at {url} did not become healthy (see its log)")


async def sibling_database(dsn: str) -> str:
    """An empty database `<name>_empty` beside DATABASE_URL's, on the same server."""
    base, _, name = dsn.rpartition("/")
    name, query = name.partition("?")[0], name.partition("?")[2]
    sibling = f"{name}_empty"
    conn = await asyncpg.connect(dsn)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", sibling):
            await conn.execute(f'CREATE DATABASE "{sibling}"')
    finally:
        await conn.close()
    return f"{base}/{sibling}" + (f"?{query}" if query else "")


async def complete(pool: asyncpg.Pool, ids: list[str]) -> None:
    await pool.execute(
        "UPDATE mint_requests SET status = 'completed', processed_at = now(), updated_at = now()"
        " WHERE id = ANY($1::uuid[])",
        ids,
    )


def report(empty: Side, filled: Side) -> None:
    print(f"\n{'route':<44} {'empty p50/p99 ms':>18} {'filled p50/p99 ms':>19} {'p50 ratio':>9}")
    for label, now in filled.figures.items():
        then = empty.figures.get(label)
        ms = lambda values, share: 1000 * percentile(values, share)  # noqa: E731
        left = f"{ms(then, 0.5):.1f} / {ms(then, 0.99):.1f}" if then else "-"
        ratio = f"{percentile(now, 0.5) / percentile(then, 0.5):.2f}" if then else "-"
        print(f"{label:<44} {left:>18} {f'{ms(now, 0.5):.1f} / {ms(now, 0.99):.1f}':>19} {ratio:>9}")


async def main(args: argparse.Namespace) -> None:
    with contextlib.ExitStack() as stack:
        if given := os.environ.get("DATABASE_URL"):
            dsns = {"empty": await sibling_database(given), "filled": given}
        else:
            postgres = stack.enter_context(PostgresServer())
            dsns = {side: postgres.create_database(f"growth_{side}") for side in ("empty", "filled")}
        redis_url = stack.enter_context(RedisServer()).url
        anvil = stack.enter_context(Anvil(block_time=None))
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mintline-growth-")))
        deployment = deploy_dev(anvil.rpc_url, fund_dev_accounts=False)
        deployment.save(tmp / "deployment.json")
        sides = []
        for name, dsn in dsns.items():
            await db.migrate(dsn)
            port = free_port()
            side = Side(name, dsn, f"http://127.0.0.1:{port}", Keys(f"growth{uuid.uuid4().hex[:8]}"))
            env = {
                "REDIS_URL": redis_url,
                "DATABASE_URL": dsn,
                "RPC_URL": anvil.rpc_url,
                "DEPLOYMENT_FILE": str(tmp / "deployment.json"),
                "MINTLINE_NAMESPACE": side.names.namespace,
                "WEBHOOK_SECRET": "bench-only-webhook-secret",  # not a secret: nothing is delivered
                "INTAKE_PORT": str(port),
                "INTAKE_RATE_PAYER_PER_SECOND": "10000",
                "INTAKE_RATE_PAYER_BURST": "10000",
            }
            proc = stack.enter_context(intake_process(env, tmp / f"intake-{name}.log"))
            await wait_healthy(side.url, proc)
            sides.append(side)
        await run(args, sides, redis_url, anvil, deployment)


async def run(
    args: argparse.Namespace, sides: list[Side], redis_url: str, anvil: Anvil, deployment: Deployment
) -> None:
    empty, filled = sides
    w3 = Web3(HTTPProvider(anvil.rpc_url))
    warmup = 2 * args.concurrency
    count = 2 * (warmup + args.rounds * args.requests)
    print(f"funding {count + 2} payers and signing their authorizations ...")
    fresh = iter(fund(w3, deployment, count, deployment.price))
    # Each intake checks the whale's balance against its own queue only; the chain balance is shared.
    [whale] = fund(w3, deployment, 1, deployment.price * 2 * args.whale)
    [artist] = fund(w3, deployment, 1, deployment.nft_price * 2)
    plans = []
    for number in range(1 + args.rounds):
        for side in sides:
            size = warmup if number == 0 else args.requests
            bodies = [gasless(next(fresh), deployment) for _ in range(size)]
            whale_bodies = [gasless(whale, deployment) for _ in range(args.whale)]
            plans.append((number, side, bodies, whale_bodies))

    print(f"filling {filled.name} with {args.history:,} historical requests ...")
    payers = [to_checksum_address(os.urandom(20).hex()) for _ in range(100_000)]
    conn = await asyncpg.connect(filled.dsn)
    try:
        seconds = await history.fill(
            conn, args.history, payers, whale.address, WHALE_EVERY, deployment.treasury
        )
        # A historical NFT request: its item and its render job.
        old = str(await conn.fetchval("SELECT request_id FROM render_jobs WHERE status = 'completed'"))
    finally:
        await conn.close()
    print("  " + ", ".join(f"{table} {took:.1f} s" for table, took in seconds.items()))
    filled.targets = {
        "GET /queue/item, historical": f"/queue/item/{old}",
        "GET /nft/job, historical": f"/nft/job/{old}",
    }

    redis = Redis.from_url(redis_url)
    memory: dict[str, int] = {}
    plans_text = ""
    try:
        connector = aiohttp.TCPConnector(limit=args.concurrency)
        async with aiohttp.ClientSession(connector=connector) as session:
            for side in sides:
                side.pool = await asyncpg.create_pool(side.dsn, min_size=1, max_size=2)
                render = {**gasless(artist, deployment, value=deployment.nft_price), "render": RENDER}
                _, job_id = await post(session, f"{side.url}/nft/render", render)
                side.targets["GET /nft/job"] = f"/nft/job/{job_id}"
            memory["start"] = await used_memory(redis)
            for number, side, bodies, whale_bodies in plans:
                assert side.pool is not None
                samples = 20 if number == 0 else args.samples
                figures, ids = await measure(
                    session, Round(side.url, args.concurrency, samples, bodies, whale_bodies, side.targets)
                )
                if number == args.rounds and side is filled:
                    # While this round's requests are queued, as they are during every request.
                    plans_text = await explain_routes(side.pool, whale.address, old, ids[len(ids) // 2])
                await complete(side.pool, ids)
                if number == 0:
                    continue
                for label, values in figures.items():
                    side.figures.setdefault(label, []).extend(values)
                load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
                print(f"round {number}, {side.name}: done (load average {load})")
            memory["after the rounds"] = await used_memory(redis)

        # Intake's replay after a Redis loss reads PostgreSQL: the history must not come back.
        await redis.delete(filled.names.alive(keys.INTAKE))
        while not await redis.exists(filled.names.alive(keys.INTAKE)):
            await asyncio.sleep(0.2)
        memory["after a replay from the filled database"] = await used_memory(redis)

        report(empty, filled)
        for side in sides:
            assert side.pool is not None
            sizes = await side.pool.fetchrow(
                "SELECT pg_size_pretty(pg_database_size(current_database())) AS db,"
                " (SELECT count(*) FROM mint_requests) AS requests,"
                " (SELECT count(*) FROM mint_request_history) AS history"
            )
            rows = f"{sizes['requests']:,} requests, {sizes['history']:,} history rows"
            print(f"{side.name} database {sizes['db']}: {rows}")
        print(plans_text)
        assert filled.pool is not None
        print(await backlog_plans(filled.pool, whale.address, args.backlog))

        stages = ", ".join(f"{stage} {value:,}" for stage, value in memory.items())
        print(f"\nRedis used_memory: {stages}")
        for side in sides:
            lengths = {name: await redis.xlen(side.names.stream(name)) for name in keys.STREAMS}
            listed = ", ".join(f"{name} {length}" for name, length in lengths.items())
            print(f"{side.name} streams: {listed}")
        await trimming(redis, filled.names.namespace, maxlen=2000, rounds=8, per_round=5000)
    finally:
        await redis.aclose()
        for side in sides:
            if side.pool is not None:
                await side.pool.close()


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--history", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--whale", type=int, default=50)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backlog", type=int, default=20_000)
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(arguments()))
