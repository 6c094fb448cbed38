"""The chaos run at scale (issue 9): CHAOS_MINTS (10,000) pre-signed gasless and x402 mints from many
concurrent clients while every service is SIGKILLed, Redis is flushed, PostgreSQL restarts, the RPC
is stopped for 30 s and two depth-3 reorgs take completed batches away. It ends with every accepted
request completed exactly once on the chain, nothing stuck, the money rule kept and no transaction of
the wallet left pending.

Select it alone with `pytest -m chaos`; `CHAOS_MINTS=1000` runs a smaller one.
"""

import asyncio
import collections
import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from redis.asyncio import Redis

from devstack.anvil import Anvil
from devstack.ports import free_port
from devstack.postgres_server import PostgresServer
from devstack.redis_server import RedisServer
from shared.deploy import Deployment
from tests.support.audit import NonceHole, audit, describe, nonce_holes, wait_settled
from tests.support.chaos import FaultLog, RpcProxyProcess, Supervisor, anvil_web3, reorg_completed, until
from tests.support.intake import wait_healthy
from tests.support.load import Clients, sign_mints

pytestmark = pytest.mark.chaos

MINTS = int(os.environ.get("CHAOS_MINTS", "10000"))
PER_PAYER = 4
RPC_DOWN_SECONDS = 30
REORG_DEPTH = 3
# Settled at two blocks deep, so a reorg of three takes away batches already completed.
CONFIRMATIONS = "2"
PAYMENT_VALID_FOR = 900  # the offer's maxTimeoutSeconds, as a wallet signs it


@pytest.fixture(scope="module")
def anvil() -> Iterator[Anvil]:
    """A chain of this run's own, mining a block a second, whose history the run rewrites."""
    with Anvil(block_time=1) as node:
        yield node


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    """A Redis of this run's own: it is flushed (FLUSHALL) mid-run."""
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="module")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL of this run's own with its data in a directory that outlives a restart."""
    with tempfile.TemporaryDirectory(prefix="mintline-chaos-pg-") as tmp:
        os.chmod(tmp, 0o755)  # the postgres system user must enter it
        with PostgresServer(data_dir=Path(tmp) / "data") as server:
            yield server


def level_of(line: str) -> str:
    try:
        return str(json.loads(line)["level"])
    except (ValueError, KeyError, TypeError):
        return "not json"


async def restart_postgres(server: PostgresServer, faults: FaultLog, down_for: float = 3) -> None:
    server.stop()
    faults.record(f"PostgreSQL stopped (port {server.port})")
    await asyncio.sleep(down_for)
    await asyncio.to_thread(server.start)
    faults.record("PostgreSQL started again")


@pytest.mark.timeout(1800)
async def test_chaos_every_accepted_request_completes_exactly_once(
    settings_env: dict[str, str],
    services,
    pg_pool: asyncpg.Pool,
    redis_client: Redis,
    postgres_server: PostgresServer,
    deployment: Deployment,
    fund_payers,
    anvil: Anvil,
    capsys: pytest.CaptureFixture[str],
) -> None:
    report: list[str] = []
    say = report.append
    w3 = anvil_web3(anvil.rpc_url)
    payers = fund_payers(MINTS // PER_PAYER, PER_PAYER * deployment.price)
    mints = sign_mints(payers, deployment, PER_PAYER, PAYMENT_VALID_FOR)
    start_block = w3.eth.block_number
    proxy = RpcProxyProcess(anvil.rpc_url, deployment.chain_id).start()
    faults = FaultLog()
    try:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        common = {"RPC_URL": proxy.rpc_url, "LOG_LEVEL": os.environ.get("CHAOS_LOG_LEVEL", "INFO")}
        intake = services("intake", INTAKE_PORT=str(port), **common)
        assert await wait_healthy(url, intake.proc), intake.log_tail()
        batcher = services("batcher", BATCHER_BATCH_WINDOW_SECONDS="0.5", **common)
        confirmer = services(
            "confirmer",
            CONFIRMER_CONFIRMATIONS=CONFIRMATIONS,
            CONFIRMER_FINALITY_CHECK_SECONDS="0.5",
            **common,
        )
        clients = Clients(url, concurrency=64)
        reorged: list[int] = []

        async def progress(share: float) -> None:
            await until(lambda: clients.done >= share * len(mints), timeout=600)

        async with Supervisor([intake, batcher, confirmer], faults) as supervisor:

            async def chaos() -> None:
                await progress(0.05)
                supervisor.kill_and_restart(intake)
                await progress(0.12)
                supervisor.kill_and_restart(batcher)
                await progress(0.20)
                await redis_client.flushall()
                faults.record("Redis FLUSHALL")
                await progress(0.28)
                supervisor.kill_and_restart(confirmer)
                await progress(0.36)
                reorged.extend(await reorg_completed(w3, pg_pool, REORG_DEPTH, faults))
                await progress(0.45)
                await restart_postgres(postgres_server, faults)
                await progress(0.55)
                proxy.stop()
                faults.record(f"RPC stopped for {RPC_DOWN_SECONDS} s")
                await asyncio.sleep(RPC_DOWN_SECONDS)
                await asyncio.to_thread(proxy.start)
                faults.record("RPC back")
                await progress(0.75)
                reorged.extend(await reorg_completed(w3, pg_pool, REORG_DEPTH, faults))

            load, _ = await asyncio.gather(clients.post_all(mints), chaos())
            faults.record(f"all {len(mints)} requests answered")
            ids = [answer.queue_id for answer in load.accepted]
            done = await wait_settled(pg_pool, w3, deployment.minter, stalled_after=120, timeout=900)
            finished = time.monotonic()
            faults.record("every request final" if done else "gave up waiting for every request to end")

        duration = finished - load.started
        say(f"  refused (final answer): {dict(load.refused()) or 'none'}; retried: {dict(load.retried)}")
        say(
            f"  accepted {len(ids)} ({load.replayed()} of them on a retry answered 200);"
            f" {duration:.1f} s from first request to the last one final,"
            f" {len(ids) / duration * 60:.0f} mints/min"
        )
        if not done:
            report.extend(await describe(pg_pool, w3, deployment.minter))
            if holes := await nonce_holes(pg_pool, w3, deployment.minter):
                say(f"  NONCE HOLE: {', '.join(holes)} given up as dropped, never mined; later batches wait")
                raise NonceHole(f"{', '.join(holes)} given up as dropped: nonce hole, later batches wait")
        say(f"  service exits nobody caused: {len(supervisor.unexpected_exits)}")
        report.extend(supervisor.unexpected_exits)
        # Every fault is an outage a client can wait out: answers say so (503, Retry-After), never 500.
        assert not [k for k in [*load.retried, *load.refused()] if k.startswith("500")], load.retried
        await audit(pg_pool, w3, deployment, payers, PER_PAYER, load, ids, start_block, reorged, say)
    finally:
        proxy.stop()
        for process in services.started:
            levels = collections.Counter(level_of(line) for line in process.log_path.read_text().splitlines())
            say(f"  {process.name} log ({process.log_path}): lines by level {dict(levels)}")
        # The figures belong in every run's output, `make test` included, not only when it fails.
        with capsys.disabled():
            print(f"\nchaos run: {len(mints)} mints from {len(payers)} payers\n{faults.report()}")
            print("\n".join(report))
