"""Intake under load: N pre-signed paid mints posted by C concurrent clients, with INTAKE_WORKERS=1 and
INTAKE_WORKERS=2 side by side, and what each accepted per second and how long the answers took.

Starts Redis, PostgreSQL (durable commits, as `make run` runs it) and anvil (1 s blocks, the 2^24
per-transaction cap) on free ports, deploys the contracts and funds the payers; each run gets a fresh
database and stream namespace, its own payers and its own intake (`python -m services.intake` with
the run's INTAKE_WORKERS), warmed up with a few hundred requests first. The mints are signed before the
clock starts (tests/support/load.py: alternately gasless bodies and x402 v2 headers, `--per-payer`
from each payer, shuffled), and every client keeps its connection alive, as a browser or SDK does.
Only intake and what it needs run: the batcher and confirmer would take the same cores (`--pipeline`
starts them too). With `--intake URL` it posts to a running intake instead (`make run`, whose
`.run/env` and `.run/deployment.json` it reads): one run, as that intake is configured. With
`--checkout DIR` the intake (and the migrations) come from another checkout, for a before/after.

    .venv/bin/python bench/intake.py [--count 5000] [--concurrency 64] [--workers 1,2] [--per-payer 10]
"""

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount
from prometheus_client.multiprocess import MultiProcessCollector
from web3 import HTTPProvider, Web3

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.posting import Posted, post_all  # noqa: E402
from devstack.anvil import DEV_KEYS, Anvil  # noqa: E402
from devstack.deploy import FUND_CHUNK, deploy_dev  # noqa: E402
from devstack.ports import free_port  # noqa: E402
from devstack.postgres_server import PostgresServer  # noqa: E402
from devstack.redis_server import RedisServer  # noqa: E402
from shared import db  # noqa: E402
from shared.deploy import Deployment  # noqa: E402
from tests.support.load import SignedMint, sign_mints  # noqa: E402
from tests.support.payments import usdc_contract  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RUN_DIR = REPO / ".run"
VALID_FOR = 900  # the offer's maxTimeoutSeconds, as a wallet signs it
WARM_UP = 256


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


@dataclass
class Run:
    label: str
    posted: Posted = field(default_factory=Posted)
    # POST /mint answers by worker, from the workers' metrics files (several workers only).
    per_worker: list[int] = field(default_factory=list)

    def lines(self) -> list[str]:
        posted = self.posted
        accepted = len(posted.ids)
        ms = [latency * 1000 for latency in posted.latencies]
        return [
            f"{accepted / posted.seconds:.0f}",
            f"{percentile(ms, 0.5):.1f} ms",
            f"{percentile(ms, 0.99):.1f} ms",
            f"{max(ms):.1f} ms",
            f"{accepted} of {len(posted.latencies)}",
            ", ".join(f"{k}: {v}" for k, v in sorted(posted.refused.items())) or "none",
            " / ".join(str(n) for n in self.per_worker) or "-",
        ]


def fund(w3: Web3, deployment: Deployment, count: int, amount: int) -> list[LocalAccount]:
    payers = [Account.create() for _ in range(count)]
    usdc = usdc_contract(w3, deployment)
    funder = Account.from_key(DEV_KEYS[0])  # anvil's public dev key 0 (local chain only)
    nonce = w3.eth.get_transaction_count(funder.address, "pending")
    hashes = []
    for start in range(0, count, FUND_CHUNK):
        chunk = [p.address for p in payers[start : start + FUND_CHUNK]]
        tx = usdc.functions.mintMany(chunk, amount).build_transaction(
            {"from": funder.address, "nonce": nonce, "chainId": deployment.chain_id}
        )
        hashes.append(w3.eth.send_raw_transaction(funder.sign_transaction(tx).raw_transaction))
        nonce += 1
    for tx_hash in hashes:
        w3.eth.wait_for_transaction_receipt(tx_hash, timeout=180)
    return payers


def signed_mints(w3: Web3, deployment: Deployment, count: int, per_payer: int) -> list[SignedMint]:
    payers = fund(w3, deployment, -(-count // per_payer), per_payer * deployment.price)
    return sign_mints(payers, deployment, per_payer, VALID_FOR)[:count]


def mint_answers_by_worker(metrics_dir: Path) -> dict[str, int]:
    """POST /mint answers counted in each worker's own metrics file, by pid."""
    counts = {}
    for path in metrics_dir.glob("counter_*.db"):
        samples = [
            sample.value
            for metric in MultiProcessCollector.merge([str(path)], accumulate=False)
            for sample in metric.samples
            if sample.name == "mintline_intake_http_requests_total" and sample.labels.get("route") == "/mint"
        ]
        counts[path.stem.split("_")[1]] = int(sum(samples))
    return counts


def migrate_from(checkout: Path, dsn: str) -> None:
    """The migrations of another checkout (what its intake expects)."""
    migrate = [sys.executable, "-m", "shared.db"]
    subprocess.run(migrate, cwd=checkout, env={**os.environ, "DATABASE_URL": dsn}, check=True)


@contextlib.contextmanager
def intake_process(env: dict[str, str], workers: int, log_path: Path, checkout: Path = REPO):
    port = free_port()
    env = {**os.environ, **env, "INTAKE_PORT": str(port), "INTAKE_WORKERS": str(workers)}
    if workers > 1:
        env["PROMETHEUS_MULTIPROC_DIR"] = str(log_path.with_suffix(".metrics"))
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "services.intake"], cwd=checkout, env=env, stdout=log, stderr=log
        )
    try:
        deadline = time.monotonic() + 60
        while log_path.read_text().count("listening on http") < workers:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"intake did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def pipeline(env: dict[str, str], log_dir: Path, wanted: bool):
    procs = []
    if wanted:
        for name in ("batcher", "confirmer"):
            log = (log_dir / f"{name}.log").open("wb")
            service_env = {
                **os.environ,
                **env,
                "BATCHER_PRIVATE_KEY": DEV_KEYS[1],  # anvil's public dev key 1, the local minter
                "BATCHER_METRICS_PORT": str(free_port()),
                "CONFIRMER_METRICS_PORT": str(free_port()),
            }
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", f"services.{name}"],
                    cwd=REPO,
                    env=service_env,
                    stdout=log,
                    stderr=log,
                )
            )
    try:
        yield
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=30)


async def own_system(args: argparse.Namespace) -> list[Run]:
    runs = []
    with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory(prefix="mintline-bench-") as tmp:
        redis = stack.enter_context(RedisServer())
        postgres = stack.enter_context(PostgresServer(fast=False))
        anvil = stack.enter_context(Anvil(block_time=1))
        deployment = deploy_dev(anvil.rpc_url)
        deployment_file = Path(tmp) / "deployment.json"
        deployment.save(deployment_file)
        w3 = Web3(HTTPProvider(anvil.rpc_url))
        for workers in args.workers:
            print(
                f"INTAKE_WORKERS={workers}: funding payers and signing {args.count} mints ...",
                file=sys.stderr,
            )
            warm_up = signed_mints(w3, deployment, WARM_UP, args.per_payer)
            mints = signed_mints(w3, deployment, args.count, args.per_payer)
            dsn = postgres.create_database(f"bench_{uuid.uuid4().hex[:12]}")
            if args.checkout == REPO:
                await db.migrate(dsn)
            else:
                migrate_from(args.checkout, dsn)
            env = {
                "REDIS_URL": redis.url,
                "DATABASE_URL": dsn,
                "RPC_URL": anvil.rpc_url,
                "DEPLOYMENT_FILE": str(deployment_file),
                "MINTLINE_NAMESPACE": f"bench{uuid.uuid4().hex[:8]}",
                "WEBHOOK_SECRET": "bench-webhook-secret",  # a local value only
            }
            log_path = Path(tmp) / f"intake-{workers}.log"
            intake = intake_process(env, workers, log_path, args.checkout)
            with pipeline(env, Path(tmp), args.pipeline), intake as url:
                await post_all(url, warm_up, args.concurrency)
                print(f"INTAKE_WORKERS={workers}: posting ...", file=sys.stderr)
                run = Run(f"INTAKE_WORKERS={workers}")
                before = mint_answers_by_worker(log_path.with_suffix(".metrics"))
                run.posted = await post_all(url, mints, args.concurrency)
                after = mint_answers_by_worker(log_path.with_suffix(".metrics"))
                answered = [n - before.get(pid, 0) for pid, n in after.items()]
                run.per_worker = sorted(answered, reverse=True) if workers > 1 else []
            runs.append(run)
    return runs


async def running_system(args: argparse.Namespace) -> list[Run]:
    env = dict(line.split("=", 1) for line in (RUN_DIR / "env").read_text().splitlines() if "=" in line)
    deployment = Deployment.load(RUN_DIR / "deployment.json")
    w3 = Web3(HTTPProvider(env["RPC_URL"]))
    print(f"funding payers and signing {args.count} mints ...", file=sys.stderr)
    mints = signed_mints(w3, deployment, args.count, args.per_payer)
    run = Run(f"running intake {args.intake}")
    run.posted = await post_all(args.intake, mints, args.concurrency)
    return [run]


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--per-payer", type=int, default=10, help="mints signed by each payer (at most 20)")
    parser.add_argument("--workers", type=lambda s: [int(n) for n in s.split(",")], default=[1, 2])
    parser.add_argument("--pipeline", action="store_true", help="run the batcher and confirmer too")
    parser.add_argument("--intake", help="post to this running intake (make run) instead")
    parser.add_argument("--checkout", type=Path, default=REPO, help="run the intake of this checkout")
    args = parser.parse_args()

    runs = await (running_system(args) if args.intake else own_system(args))
    headings = [
        "accepted req/s",
        "latency p50",
        "latency p99",
        "latency max",
        "accepted",
        "refused",
        "requests per worker",
    ]
    print(f"{args.count} paid mints, {args.concurrency} concurrent clients, on {os.cpu_count()} cores")
    print(f"{'':26}" + "".join(f"{run.label:>24}" for run in runs))
    for index, heading in enumerate(headings):
        print(f"{heading:26}" + "".join(f"{run.lines()[index]:>24}" for run in runs))


if __name__ == "__main__":
    asyncio.run(main())
