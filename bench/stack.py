"""The system a benchmark run measures, started here on free loopback ports: one Redis and one
PostgreSQL for the whole run, and per configuration a fresh anvil with fresh contracts, a database and
a stream namespace of its own, and the services as their own processes (`python -m services.<name>`),
as `make run` starts them. Local chains only: it signs with anvil's public dev keys."""

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import HTTPProvider, Web3

from devstack.anvil import DEV_KEYS, Anvil
from devstack.deploy import FUND_CHUNK, deploy_dev
from devstack.ports import free_port
from devstack.postgres_server import PostgresServer
from devstack.process import log_tail, stop_process
from devstack.redis_server import RedisServer
from shared import db
from shared.deploy import Deployment, load_artifact

REPO = Path(__file__).resolve().parents[1]
# Local dev value only.
WEBHOOK_SECRET = "bench-webhook-secret-local"


@dataclass
class Servers:
    """What every configuration of a run shares: Redis, PostgreSQL and a directory for logs."""

    redis: RedisServer
    postgres: PostgresServer
    work_dir: Path


@contextlib.contextmanager
def servers(log_dir: Path | None = None) -> Iterator[Servers]:
    """Redis and PostgreSQL; the services' logs go to `log_dir` (kept) or a temp dir (removed)."""
    with tempfile.TemporaryDirectory(prefix="mintline-bench-") as tmp:
        work_dir = Path(tmp)
        if log_dir is not None:
            work_dir = log_dir.resolve()
            work_dir.mkdir(parents=True, exist_ok=True)
        with RedisServer() as redis, PostgresServer() as postgres:
            yield Servers(redis, postgres, work_dir)


class ServiceProcess:
    """One service as its own process, its output in a log file."""

    def __init__(self, name: str, env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        with log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", f"services.{name}"],
                cwd=REPO,
                env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def stop(self) -> None:
        stop_process(self.proc, signal.SIGTERM, timeout=15)

    def listening(self) -> int:
        """How many of its processes said they listen (intake: one line per worker)."""
        return self.log_path.read_text(errors="replace").count("listening on http")

    def log_tail(self, lines: int = 30) -> str:
        return log_tail(self.log_path, lines)


async def healthy(process: ServiceProcess, url: str, ready: Callable[[], bool] = lambda: True) -> None:
    """Once `url` answers 200 and `ready()` holds; raises with the log's tail if the process ends or
    a minute passes first."""
    deadline = time.monotonic() + 60
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline and process.proc.poll() is None:
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(url) as response:
                    if response.status == 200 and ready():
                        return
            await asyncio.sleep(0.2)
    raise RuntimeError(f"{process.name} did not become healthy:\n{process.log_tail()}")


@dataclass
class Deployed:
    """One configuration's chain, contracts, database and services."""

    name: str
    anvil: Anvil
    deployment: Deployment
    database_url: str
    env: dict[str, str]
    log_dir: Path
    processes: list[ServiceProcess] = field(default_factory=list)

    @property
    def w3(self) -> Web3:
        return Web3(HTTPProvider(self.anvil.rpc_url, request_kwargs={"timeout": 60}))

    def start(self, service: str, **extra: str) -> ServiceProcess:
        env = {**self.env, **extra}
        process = ServiceProcess(service, env, self.log_dir / f"{self.name}-{service}.log")
        self.processes.append(process)
        return process

    async def start_intake(self, **extra: str) -> str:
        """Intake as a process; its URL once /health answers and every worker listens. Clients keep
        their connections alive, and a connection stays with the worker that accepted it: posting as
        soon as the first worker answered put every connection on that worker for the whole run."""
        process = self.start("intake", **extra)
        url = f"http://127.0.0.1:{self.env['INTAKE_PORT']}"
        workers = int({**os.environ, **self.env, **extra}.get("INTAKE_WORKERS", os.cpu_count() or 1))
        await healthy(process, f"{url}/health", lambda: process.listening() >= workers)
        return url

    async def start_ready(self, service: str) -> ServiceProcess:
        """The batcher or confirmer as a process, once its /health answers 200: posting while it still
        imports and connects would measure its start-up on the cores intake needs, not the run."""
        process = self.start(service)
        await healthy(process, f"http://127.0.0.1:{self.env[f'{service.upper()}_METRICS_PORT']}/health")
        return process

    def stop(self) -> None:
        for process in self.processes:
            process.stop()
        self.processes.clear()

    def fund(self, addresses: list[str], amount: int) -> None:
        """Mock USDC for `addresses`, FUND_CHUNK per transaction (within the per-transaction cap)."""
        w3 = self.w3
        usdc = w3.eth.contract(address=self.deployment.usdc, abi=load_artifact("MockUSDC")["abi"])
        funder = Account.from_key(DEV_KEYS[0])  # anvil's public dev key 0 (local chain only)
        nonce = w3.eth.get_transaction_count(funder.address, "pending")
        hashes = []
        for start in range(0, len(addresses), FUND_CHUNK):
            tx = usdc.functions.mintMany(addresses[start : start + FUND_CHUNK], amount).build_transaction(
                {"from": funder.address, "nonce": nonce, "chainId": self.deployment.chain_id}
            )
            hashes.append(w3.eth.send_raw_transaction(funder.sign_transaction(tx).raw_transaction))
            nonce += 1
        for tx_hash in hashes:
            w3.eth.wait_for_transaction_receipt(tx_hash, timeout=180)


@contextlib.asynccontextmanager
async def deployed(shared: Servers, name: str, anvil: Anvil, env: dict[str, str]) -> AsyncIterator[Deployed]:
    """A fresh `anvil` with the contracts deployed (dev accounts: 0 deploys, 1 is the minter, 2 the
    treasury), a migrated database of its own and the environment its services read, `env` on top."""
    with anvil:
        deployment = await asyncio.to_thread(deploy_dev, anvil.rpc_url, False)
        database = f"bench_{name.replace('-', '_')}_{uuid.uuid4().hex[:8]}"
        database_url = shared.postgres.create_database(database)
        await db.migrate(database_url)
        deployment_file = shared.work_dir / f"{name}-deployment.json"
        deployment.save(deployment_file)
        service_env = {
            "REDIS_URL": shared.redis.url,
            "DATABASE_URL": database_url,
            "RPC_URL": anvil.rpc_url,
            "DEPLOYMENT_FILE": str(deployment_file),
            "MINTLINE_NAMESPACE": f"bench{uuid.uuid4().hex[:8]}",
            "WEBHOOK_SECRET": WEBHOOK_SECRET,
            "BATCHER_PRIVATE_KEY": DEV_KEYS[1],  # anvil's public dev key 1, the local minter
            "INTAKE_PORT": str(free_port()),
            "BATCHER_METRICS_PORT": str(free_port()),
            "CONFIRMER_METRICS_PORT": str(free_port()),
            "LOG_LEVEL": "INFO",
            **env,
        }
        system = Deployed(name, anvil, deployment, database_url, service_env, shared.work_dir)
        try:
            yield system
        finally:
            system.stop()


def fresh_payers(count: int) -> list[LocalAccount]:
    return [Account.create() for _ in range(count)]
