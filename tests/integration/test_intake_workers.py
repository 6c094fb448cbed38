"""Intake as several worker processes on one SO_REUSEPORT port: one service for metrics and health, a
dead worker started again, SIGTERM stopping them all, and requests racing across the processes still
giving one row and one mint per payment, and no more mints than the payer paid for."""

import asyncio
import collections
import contextlib
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from eth_account.signers.local import LocalAccount
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families
from web3 import HTTPProvider, Web3

from devstack.anvil import Anvil
from devstack.ports import free_port
from shared.deploy import Deployment, load_artifact
from tests.integration.conftest import ServiceProcess
from tests.support.intake import wait_healthy
from tests.support.payments import gasless_body, usdc_contract
from tests.support.requests import wait_final

Fund = Callable[..., list[LocalAccount]]


def running(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def children(pid: int) -> set[int]:
    return {int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}


async def wait_workers(
    parent: int, count: int, other_than: set[int] = frozenset(), timeout: float = 30
) -> set[int]:
    """The parent's `count` worker pids, once none of them is in `other_than`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = children(parent)
        if len(found) == count and not found & other_than:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"intake has workers {children(parent)}, not {count} new ones")


async def start_workers(
    services: Callable[..., ServiceProcess], metrics_dir: Path, **extra: str
) -> tuple[ServiceProcess, str]:
    port = free_port()
    process = services(
        "intake",
        INTAKE_PORT=str(port),
        INTAKE_WORKERS="2",
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
        **extra,
    )
    url = f"http://127.0.0.1:{port}"
    assert process.proc is not None
    assert await wait_healthy(url, process.proc), process.log_tail()
    # /health answers once one worker listens; the test needs both.
    deadline = time.monotonic() + 30
    while process.log_path.read_text().count("listening on http") < 2:
        assert time.monotonic() < deadline, process.log_tail()
        await asyncio.sleep(0.1)
    return process, url


def fresh_connections() -> aiohttp.ClientSession:
    """A session opening a new connection for every request: the kernel picks a worker for each."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))


def per_worker(metrics_dir: Path, name: str, **labels: str) -> dict[int, float]:
    """A counter's value in each worker's own metrics file, by pid."""
    counts: dict[int, float] = collections.defaultdict(float)
    for path in metrics_dir.glob("counter_*.db"):
        pid = int(path.stem.split("_")[1])
        for metric in MultiProcessCollector.merge([str(path)], accumulate=False):
            for sample in metric.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    counts[pid] += sample.value
    return dict(counts)


async def scrape(session: aiohttp.ClientSession, url: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    async with session.get(f"{url}/metrics") as response:
        assert response.status == 200
        text = await response.text()
    samples: dict[str, list[tuple[dict[str, str], float]]] = collections.defaultdict(list)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[sample.name].append((sample.labels, sample.value))
    return samples


def value(samples: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> list[float]:
    """Every sample of `name` with `labels` (more than one would be a figure exported twice)."""
    return [v for got, v in samples.get(name, []) if all(got.get(k) == w for k, w in labels.items())]


async def post(
    session: aiohttp.ClientSession, url: str, body: dict[str, Any], **headers: str
) -> tuple[int, dict[str, Any], str | None]:
    async with session.post(f"{url}/mint", json=body, headers=headers) as response:
        return response.status, await response.json(), response.headers.get("Idempotent-Replayed")


async def test_two_workers_are_one_service_for_metrics_and_health_and_stop_together(
    services: Callable[..., ServiceProcess], tmp_path: Path, fund_payers: Fund, deployment: Deployment
) -> None:
    metrics_dir = tmp_path / "metrics"
    intake, url = await start_workers(
        services, metrics_dir, INTAKE_STREAM_METRICS_SECONDS="0.2", INTAKE_THROUGHPUT_REFRESH_SECONDS="0.2"
    )
    assert intake.proc is not None
    workers = await wait_workers(intake.proc.pid, 2)

    payers = fund_payers(16)
    async with fresh_connections() as session:
        results = await asyncio.gather(*(post(session, url, gasless_body(p, deployment)) for p in payers))
        assert [status for status, _, _ in results] == [202] * 16, results
        # Both workers took requests: the kernel spread the connections over the two sockets.
        served = per_worker(metrics_dir, "mintline_intake_http_requests_total", route="/mint", status="202")
        assert set(served) == workers and sum(served.values()) == 16, served

        # Whichever worker answers the scrape shows the service's totals, each figure once.
        await asyncio.sleep(1)  # a stream-gauge and throughput read in every worker
        for _ in range(8):
            samples = await scrape(session, url)
            assert value(samples, "mintline_mints_accepted_total", payment_type="gasless") == [16]
            assert value(
                samples, "mintline_intake_http_requests_total", route="/mint", method="POST", status="202"
            ) == [16]
            assert value(samples, "mintline_intake_http_request_duration_seconds_count", route="/mint") == [
                16
            ]
            assert value(samples, "mintline_queue_depth_requests") == [16]
            assert value(samples, "mintline_stream_length_entries", stream="mint.requested") == [16]

        # A worker that dies is started again; meanwhile and after, the service answers, and the
        # dead worker's counts stay in the totals.
        victim = sorted(workers)[1]
        os.kill(victim, signal.SIGKILL)
        for _ in range(10):
            async with session.get(f"{url}/health") as response:
                assert response.status == 200
        workers = await wait_workers(intake.proc.pid, 2, other_than={victim})
        for _ in range(8):
            async with session.get(f"{url}/health") as response:
                assert response.status == 200, await response.text()
            samples = await scrape(session, url)
            assert value(samples, "mintline_mints_accepted_total", payment_type="gasless") == [16]

    # SIGTERM to the parent stops every worker, and the metrics files go with them.
    intake.proc.send_signal(signal.SIGTERM)
    assert intake.proc.wait(timeout=30) == 0
    assert not any(running(pid) for pid in workers)
    assert list(metrics_dir.glob("*.db")) == []
    output = intake.log_path.read_text()
    assert "intake stopped" in output and "Traceback" not in output, output[-3000:]
    assert output.count(" started (pid ") == 3  # two workers, and the one started again


async def test_racing_across_workers_one_row_and_one_mint_per_payment(
    services: Callable[..., ServiceProcess],
    tmp_path: Path,
    fund_payers: Fund,
    deployment: Deployment,
    pg_pool: asyncpg.Pool,
    anvil: Anvil,
) -> None:
    metrics_dir = tmp_path / "metrics"
    _, url = await start_workers(services, metrics_dir)
    services("batcher")
    services("confirmer")
    # Enough for three mints.
    [payer] = fund_payers(1, deployment.price * 3)
    keyed, unkeyed = gasless_body(payer, deployment), gasless_body(payer, deployment)

    async with fresh_connections() as session:
        # The same payment with the same Idempotency-Key, and another payment without a key, each
        # posted 16 times at once over connections spread across both workers.
        results = await asyncio.gather(
            *(post(session, url, keyed, **{"Idempotency-Key": "race-across-workers"}) for _ in range(16)),
            *(post(session, url, unkeyed) for _ in range(16)),
        )
        keyed_results, unkeyed_results = results[:16], results[16:]
        assert sorted(status for status, _, _ in keyed_results) == [200] * 15 + [202]
        assert len({body["queueId"] for _, body, _ in keyed_results}) == 1
        assert [replayed for status, _, replayed in keyed_results if status == 200] == ["true"] * 15
        assert sorted(status for status, _, _ in unkeyed_results) == [202] + [409] * 15
        assert {body["error"] for status, body, _ in unkeyed_results if status == 409} == {"payment_replayed"}

        # Six more payments, racing: the balance covers one of them.
        more = await asyncio.gather(*(post(session, url, gasless_body(payer, deployment)) for _ in range(6)))
        assert sorted(status for status, _, _ in more) == [202] + [402] * 5, more
        assert {body["error"] for status, body, _ in more if status == 402} == {"insufficient_balance"}
    served = per_worker(metrics_dir, "mintline_intake_http_requests_total", route="/mint")
    assert len(served) == 2 and sum(served.values()) == 38, served

    rows = await pg_pool.fetch(
        "SELECT id, payment_id FROM mint_requests WHERE payer_address = $1", payer.address
    )
    assert len(rows) == 3 and len({row["payment_id"] for row in rows}) == 3
    final = await wait_final(pg_pool, [str(row["id"]) for row in rows])
    assert [row["status"] for row in final] == ["completed"] * 3, [row["error_message"] for row in final]

    # On the chain: three mints, each paid once, and nothing left to pay a fourth.
    w3 = Web3(HTTPProvider(anvil.rpc_url))
    token = w3.eth.contract(address=deployment.token, abi=load_artifact("MintToken")["abi"])
    assert token.functions.balanceOf(payer.address).call() == 3 * deployment.mint_amount
    assert usdc_contract(w3, deployment).functions.balanceOf(payer.address).call() == 0
    for row in rows:
        assert token.functions.processed(bytes.fromhex(row["payment_id"][2:])).call()


async def test_the_live_stream_cap_counts_every_workers_streams(
    services: Callable[..., ServiceProcess], tmp_path: Path
) -> None:
    # A stream the client closed holds its place until its worker's next poll notices: polled every
    # 0.1 s and probed every 0.3 s below, a probe's own stream is gone before the next probe (with the
    # default 1 s, each probe's stream kept the place the next one asked for, and it never got two).
    intake, url = await start_workers(
        services, tmp_path / "metrics", INTAKE_LIVE_MAX_STREAMS="2", INTAKE_LIVE_POLL_SECONDS="0.1"
    )
    assert intake.proc is not None
    workers = await wait_workers(intake.proc.pid, 2)
    async with fresh_connections() as session:
        streams = [await session.get(f"{url}/events/queue") for _ in range(2)]
        assert [stream.status for stream in streams] == [200, 200]
        # Whichever worker a new connection reaches, the service's two places are taken.
        for _ in range(6):
            async with session.get(f"{url}/events/queue") as refused:
                assert (refused.status, (await refused.json())["error"]) == (503, "too_many_streams")

        # A worker killed with its streams open: the one started in its place does not count them.
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        await wait_workers(intake.proc.pid, 2, other_than=workers)
        for stream in streams:
            stream.close()
        deadline = time.monotonic() + 30
        while True:
            again = []
            with contextlib.suppress(aiohttp.ClientConnectionError):  # not listening again yet
                for _ in range(2):
                    again.append(await session.get(f"{url}/events/queue"))
            if [response.status for response in again] == [200, 200]:
                break
            for response in again:
                response.close()
            assert time.monotonic() < deadline, "the dead workers' streams still hold their places"
            await asyncio.sleep(0.3)
        for response in again:
            response.close()
