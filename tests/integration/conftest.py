"""Real parts for the integration tests: Redis, PostgreSQL and anvil on free ports, started here.

Each test gets its own database, stream namespace and fresh contracts, so no test sees another's rows,
entries, balances or processed payments.
"""

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import asyncpg
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from redis.asyncio import Redis
from web3 import HTTPProvider, Web3
from web3.exceptions import Web3RPCError

from devstack.anvil import DEV_KEYS, Anvil
from devstack.deploy import FUND_CHUNK, deploy_dev
from devstack.ports import free_port
from devstack.postgres_server import PostgresServer
from devstack.process import log_tail, stop_process
from devstack.redis_server import RedisServer
from shared import db
from shared.deploy import Deployment, load_artifact
from tests.support.browser import ARTIFACTS, CHROMIUM
from tests.support.intake import Intake, running_intake, wait_healthy

REPO = Path(__file__).resolve().parents[2]
# Local-chain dev values only.
WEBHOOK_SECRET = "test-webhook-secret"


@pytest.fixture(scope="session")
def anvil() -> Iterator[Anvil]:
    # Automine (a block per transaction, at once) keeps the tests fast; a test about block timing
    # starts its own Anvil(block_time=...).
    with Anvil(block_time=None) as node:
        yield node


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    with PostgresServer() as server:
        yield server


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A temp dir the postgres system user can enter: pytest's tmp_path sits under a root-only 0700 dir."""
    with tempfile.TemporaryDirectory(prefix="mintline-devstack-test-") as tmp:
        os.chmod(tmp, 0o755)
        yield Path(tmp)


@pytest.fixture
def deployment(anvil: Anvil) -> Deployment:
    """Fresh contracts for every test.

    Public anvil dev accounts: 0 deploys (and is admin), 1 is the minter, 2 the treasury, and 3..8
    hold mock USDC to pay with.
    """
    return deploy_dev(anvil.rpc_url)


@pytest.fixture
async def database(postgres_server: PostgresServer) -> str:
    dsn = postgres_server.create_database(f"t_{uuid.uuid4().hex[:16]}")
    await db.migrate(dsn)
    return dsn


@pytest.fixture
def settings_env(
    tmp_path: Path, deployment: Deployment, database: str, redis_server: RedisServer, anvil: Anvil
) -> dict[str, str]:
    deployment_file = tmp_path / "deployment.json"
    deployment.save(deployment_file)
    return {
        "REDIS_URL": redis_server.url,
        "DATABASE_URL": database,
        "RPC_URL": anvil.rpc_url,
        "DEPLOYMENT_FILE": str(deployment_file),
        "MINTLINE_NAMESPACE": f"t{uuid.uuid4().hex[:12]}",
        "WEBHOOK_SECRET": WEBHOOK_SECRET,
        "BATCHER_PRIVATE_KEY": DEV_KEYS[1],  # anvil's public dev key 1, the local minter
        # An automining chain makes a block only per transaction: settle on the block itself.
        "CONFIRMER_CONFIRMATIONS": "1",
    }


@pytest.fixture
def env(settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """settings_env applied to this process, for services built in-process."""
    for key, value in settings_env.items():
        monkeypatch.setenv(key, value)
    return settings_env


@pytest.fixture
async def pg_pool(database: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await db.create_pool(database)
    yield pool
    await pool.close()


@pytest.fixture
async def redis_client(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


def send_until_mined(w3: Web3, raws: list[bytes], timeout: float) -> None:
    """Send signed transactions and wait for every receipt, sending one again whenever the node no
    longer holds it: anvil drops a transaction now and then (seen with several funding transactions
    of 13M gas each pending at once, under load), as a real node may."""
    pending = {Web3.to_hex(Web3.keccak(raw)): raw for raw in raws}
    deadline = time.monotonic() + timeout
    for raw in raws:
        w3.eth.send_raw_transaction(raw)
    while pending:
        assert time.monotonic() < deadline, f"{len(pending)} funding transactions unmined after {timeout} s"
        time.sleep(0.5)
        for tx_hash, raw in list(pending.items()):
            if _answer(w3, "eth_getTransactionReceipt", tx_hash) is not None:
                del pending[tx_hash]
            elif _answer(w3, "eth_getTransactionByHash", tx_hash) is None:
                with contextlib.suppress(Web3RPCError):  # mined meanwhile, or known again
                    w3.eth.send_raw_transaction(raw)


def _answer(w3: Web3, method: str, tx_hash: str) -> object:
    return w3.provider.make_request(method, [tx_hash])["result"]  # type: ignore[arg-type]


@pytest.fixture
def fund_payers(anvil: Anvil, deployment: Deployment) -> Callable[[int], list[LocalAccount]]:
    """Fresh payers holding mock USDC (ten mints' worth each), funded in one transaction per
    FUND_CHUNK payers (a transaction for more would pass the per-transaction gas cap)."""
    w3 = Web3(HTTPProvider(anvil.rpc_url))
    usdc = w3.eth.contract(address=deployment.usdc, abi=load_artifact("MockUSDC")["abi"])
    funder = Account.from_key(DEV_KEYS[0])  # anvil's public dev key 0

    def fund(count: int, amount: int | None = None) -> list[LocalAccount]:
        payers = [Account.create() for _ in range(count)]
        nonce = w3.eth.get_transaction_count(funder.address, "pending")
        raws = []
        for i, start in enumerate(range(0, count, FUND_CHUNK)):
            call = usdc.functions.mintMany(
                [p.address for p in payers[start : start + FUND_CHUNK]], amount or deployment.price * 10
            )
            tx = call.build_transaction({"from": funder.address, "nonce": nonce + i})
            raws.append(funder.sign_transaction(tx).raw_transaction)
        send_until_mined(w3, raws, timeout=180)
        return payers

    return fund


class ServiceProcess:
    """One service as its own process (`python -m services.<name>`), as `make run` starts it."""

    def __init__(self, name: str, env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.env = env
        self.log_path = log_dir / f"{name}-{uuid.uuid4().hex[:6]}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> "ServiceProcess":
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", f"services.{self.name}"],
            cwd=REPO,
            env={**os.environ, **self.env, "PYTHONUNBUFFERED": "1"},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        return self

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a crash."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        stop_process(self.proc, signal.SIGTERM, timeout=15)

    def log_tail(self, lines: int = 40) -> str:
        return log_tail(self.log_path, lines)


@pytest.fixture
def services(settings_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., ServiceProcess]]:
    """Start services as processes; every one is stopped at the end of the test."""
    started: list[ServiceProcess] = []

    def start(name: str, **extra: str) -> ServiceProcess:
        env = {**settings_env, **extra}
        env.setdefault("INTAKE_PORT", str(free_port()))
        env.setdefault("BATCHER_METRICS_PORT", str(free_port()))
        env.setdefault("CONFIRMER_METRICS_PORT", str(free_port()))
        env.setdefault("RENDERER_METRICS_PORT", str(free_port()))
        # As running_intake: tests paying many times from one payer are not about its rate limit.
        env.setdefault("INTAKE_RATE_PAYER_PER_SECOND", "10000")
        env.setdefault("INTAKE_RATE_PAYER_BURST", "10000")
        # The renderer's local pin store, served as a gateway on its HTTP port.
        env.setdefault("RENDERER_PIN_DIR", str(tmp_path / "ipfs"))
        env.setdefault("RENDERER_GATEWAY_URL", f"http://127.0.0.1:{env['RENDERER_METRICS_PORT']}")
        process = ServiceProcess(name, env, tmp_path).start()
        started.append(process)
        return process

    start.started = started  # type: ignore[attr-defined]
    yield start
    for process in started:
        process.stop()


@pytest.fixture
def intake_url(services: Callable[..., ServiceProcess]) -> Callable[[], Awaitable[str]]:
    """Start intake as a process and return its URL once /health answers."""

    async def start() -> str:
        port = free_port()
        process = services("intake", INTAKE_PORT=str(port))
        url = f"http://127.0.0.1:{port}"
        assert process.proc is not None
        if not await wait_healthy(url, process.proc):
            raise RuntimeError(f"intake did not become healthy:\n{process.log_tail()}")
        return url

    return start


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's Chromium, for Playwright to launch (it downloads no browser of its own)."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make install` (devstack/install.sh installs chromium)")
    ARTIFACTS.mkdir(exist_ok=True)
    return CHROMIUM


@pytest.fixture
async def intake(settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Intake]:
    """Intake in this process on a real loopback port (tests/support/intake.py)."""
    async with running_intake(settings_env, monkeypatch) as running:
        yield running


@pytest.fixture
def payer(fund_payers: Callable[..., list[LocalAccount]]) -> LocalAccount:
    """One fresh payer holding mock USDC."""
    return fund_payers(1)[0]
