"""The real Prometheus scraping the whole system: intake, renderer, batcher and confirmer as processes
on real Redis, PostgreSQL and anvil, after token mints, a failed mint, a rejected payment and an NFT
render went through. Checks every series the dashboards and alerts rely on for sensible values, that
the alert rules load and stay quiet on a healthy system, and that every Grafana panel's query parses
and returns data.

Grafana variables: panels use `$__rate_interval` (Grafana sizes it from the scrape interval); the
test puts a 5 minute window in its place (tests/support/prometheus.py), longer than the module runs,
so every rate covers all the work done while Prometheus watched.
"""

import asyncio
import math
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis
import yaml
from aiohttp import web
from eth_account import Account
from web3 import HTTPProvider, Web3

from devstack.anvil import DEV_ADDRESSES, DEV_KEYS, Anvil
from devstack.deploy import deploy_local
from devstack.ports import free_port
from devstack.postgres_server import PostgresServer
from devstack.process import launch, log_tail, stop_process
from devstack.prometheus_server import PrometheusServer
from devstack.redis_server import RedisServer
from services.batcher.lock import WalletLock
from shared import db, keys
from shared.deploy import Deployment
from shared.keys import Keys
from tests.support.payments import authorize, gasless_body, transfer_usdc, usdc_contract
from tests.support.prometheus import (
    Check,
    at_least,
    await_series,
    dashboard_queries,
    equals,
    sample_values,
    settle,
)
from tests.support.requests import wait_final

REPO = Path(__file__).resolve().parents[2]
ALERTS = REPO / "deploy" / "prometheus" / "alerts.yml"
SERVICES = ("intake", "renderer", "batcher", "confirmer")
TOKEN_MINTS = 4
RENDER = {"name": "Metrics", "palette": "neon", "shape": "ring", "seed": 3, "frameCount": 4, "size": 32}
# The minted ones: the token mints and the NFT. One more token mint fails on-chain.
COMPLETED = TOKEN_MINTS + 1


@dataclass
class System:
    prometheus: PrometheusServer
    deployment: Deployment
    rpc_url: str
    redis_url: str
    names: Keys
    webhooks: list[dict[str, Any]]
    logs: dict[str, Path]

    def logs_tail(self) -> str:
        return "\n".join(f"--- {name}\n{log_tail(path, 15)}" for name, path in self.logs.items())


class Webhooks:
    """A callback receiver that answers 200 and keeps every body."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"

    async def _hook(self, request: web.Request) -> web.Response:
        self.received.append(await request.json())
        return web.Response(status=200)

    async def start(self) -> web.AppRunner:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        return runner


async def wait_healthy(url: str, proc: subprocess.Popen[bytes], log_path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                async with session.get(f"{url}/health") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError(f"{url} did not become healthy:\n{log_tail(log_path)}")


async def post(session: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    async with session.post(url, json=body) as response:
        return response.status, await response.json()


def service_env(
    tmp: Path, ports: dict[str, int], database: str, redis_url: str, rpc_url: str
) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "REDIS_URL": redis_url,
        "DATABASE_URL": database,
        "RPC_URL": rpc_url,
        "DEPLOYMENT_FILE": str(tmp / "deployment.json"),
        "MINTLINE_NAMESPACE": f"t{uuid.uuid4().hex[:12]}",
        "WEBHOOK_SECRET": "test-webhook-secret",
        "BATCHER_PRIVATE_KEY": DEV_KEYS[1],  # anvil's public dev key 1, the local minter
        "INTAKE_PORT": str(ports["intake"]),
        "INTAKE_STREAM_METRICS_SECONDS": "1",
        "INTAKE_CALLBACK_ALLOW": "127.0.0.1",  # the webhook receiver
        "RENDERER_METRICS_PORT": str(ports["renderer"]),
        "RENDERER_PIN_DIR": str(tmp / "ipfs"),
        "RENDERER_GATEWAY_URL": f"http://127.0.0.1:{ports['renderer']}",
        "BATCHER_METRICS_PORT": str(ports["batcher"]),
        "CONFIRMER_METRICS_PORT": str(ports["confirmer"]),
        # The session chain automines (a block per transaction): settle on the block itself.
        "CONFIRMER_CONFIRMATIONS": "1",
    }


async def push_work(
    intake: str, prometheus: PrometheusServer, deployment: Deployment, payers: list, webhook_url: str
) -> tuple[list[str], str]:
    """Token mints (with a callback), one more from a payer who spends its USDC before the batch, a
    forged payment, and an NFT render. Returns (request ids, the id that will fail)."""
    buyers, spender, forger = payers[:2], payers[2], payers[3]
    bodies = [gasless_body(buyers[i % 2], deployment) for i in range(TOKEN_MINTS)]
    bodies.append(gasless_body(spender, deployment))
    ids = []
    async with aiohttp.ClientSession() as session:
        for body in bodies:
            status, answer = await post(session, f"{intake}/mint", {**body, "callbackUrl": webhook_url})
            assert status == 202, answer
            ids.append(answer["queueId"])
            if len(ids) == 1:
                # Let Prometheus see the labelled series once, so its rates count the rest.
                await asyncio.to_thread(
                    await_series, prometheus, 'mintline_intake_http_requests_total{route="/mint"}'
                )
        status, answer = await post(
            session, f"{intake}/mint", gasless_body(forger, deployment, signer=buyers[0])
        )
        assert status >= 400, answer
        render = authorize(buyers[0], deployment, value=deployment.nft_price).payload
        status, answer = await post(
            session, f"{intake}/nft/render", {"paymentType": "gasless", **render, "render": RENDER}
        )
        assert status == 202, answer
        ids.append(answer["jobId"])
    return ids, ids[TOKEN_MINTS]


@pytest.fixture(scope="module")
async def system(
    anvil: Anvil,
    redis_server: RedisServer,
    postgres_server: PostgresServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[System]:
    tmp = tmp_path_factory.mktemp("prometheus-system")
    database = postgres_server.create_database(f"t_{uuid.uuid4().hex[:16]}")
    await db.migrate(database)
    payers = [Account.from_key(key) for key in DEV_KEYS[3:7]]
    deployment = deploy_local(
        anvil.rpc_url,
        deployer_key=DEV_KEYS[0],
        minters=[DEV_ADDRESSES[1]],
        treasury=DEV_ADDRESSES[2],
        fund=[payer.address for payer in payers],
    )
    deployment.save(tmp / "deployment.json")
    ports = {name: free_port() for name in SERVICES}
    env = service_env(tmp, ports, database, redis_server.url, anvil.rpc_url)
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    logs = {name: tmp / f"{name}.log" for name in SERVICES}
    procs: dict[str, subprocess.Popen[bytes]] = {}
    webhooks = Webhooks()
    receiver = await webhooks.start()
    prometheus = PrometheusServer(
        {name: f"127.0.0.1:{port}" for name, port in ports.items()}, rule_files=[ALERTS]
    )
    # Holding the wallet lock keeps the batcher on standby (serving /metrics, batching nothing)
    # until the work is queued and one payer has spent the USDC it authorized: that mint fails.
    wallet_lock = WalletLock(database, deployment.minter)
    stop = asyncio.Event()
    try:
        assert await wallet_lock.acquire(stop)
        for name in SERVICES:
            procs[name] = launch([sys.executable, "-m", f"services.{name}"], logs[name], cwd=REPO, env=env)
        for name in SERVICES:
            await wait_healthy(urls[name], procs[name], logs[name])
        prometheus.start()
        # Scraped once before the work, so every rate sees it.
        await asyncio.to_thread(prometheus.wait_targets_up)
        ids, failing = await push_work(urls["intake"], prometheus, deployment, payers, webhooks.url)
        w3 = Web3(HTTPProvider(anvil.rpc_url))
        spender = payers[2]
        spent = usdc_contract(w3, deployment).functions.balanceOf(spender.address).call()
        transfer_usdc(w3, spender, deployment, amount=spent, to=DEV_ADDRESSES[0])
        await wallet_lock.release()

        pool = await db.create_pool(database)
        try:
            statuses = {str(r["id"]): r["status"] for r in await wait_final(pool, ids, timeout=90)}
        finally:
            await pool.close()
        expected = {i: "failed" if i == failing else "completed" for i in ids}
        assert statuses == expected, "\n".join(f"--- {n}\n{log_tail(p)}" for n, p in logs.items())
        deadline = time.monotonic() + 30
        while len(webhooks.received) < TOKEN_MINTS + 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        # Scraped again since the work ended, so the last counts are in (twice, for rate()).
        await asyncio.to_thread(prometheus.wait_scrapes)
        names = Keys(env["MINTLINE_NAMESPACE"])
        yield System(prometheus, deployment, anvil.rpc_url, redis_server.url, names, webhooks.received, logs)
    finally:
        await wallet_lock.release()
        prometheus.stop()
        for proc in procs.values():
            stop_process(proc, signal.SIGTERM, timeout=15)
        await receiver.cleanup()


def test_prometheus_scrapes_all_four_services(system: System) -> None:
    system.prometheus.wait_targets_up()
    assert system.prometheus.target_health() == dict.fromkeys(SERVICES, "up")
    settle(system.prometheus, [(f'up{{job="{name}"}}', equals(1)) for name in SERVICES], system.logs_tail)


def test_the_pipeline_metrics_tell_what_happened(system: System) -> None:
    """Counted once each: the token mints and the NFT completed, the spent authorization failed, the
    forged one was refused; every entry went into a batch; nothing is left in flight."""
    settle(
        system.prometheus,
        [
            ("sum(mintline_mints_completed_total)", equals(COMPLETED)),
            ('sum(mintline_mints_failed_total{reason="authorization failed"})', equals(1)),
            # Accepted: the token mints, the one that fails later, and the NFT.
            ('sum(mintline_mints_accepted_total{payment_type="gasless"})', equals(TOKEN_MINTS + 2)),
            ("sum(mintline_payments_rejected_total)", equals(1)),
            (
                'sum(mintline_intake_http_requests_total{route="/mint", status="202"})',
                equals(TOKEN_MINTS + 1),
            ),
            # Every accepted request was batched once: the token mints, the failing one, the NFT.
            ("sum(mintline_batch_size_entries_sum)", equals(TOKEN_MINTS + 2)),
            ("sum(mintline_batch_size_entries_count)", at_least(2)),  # token and NFT batches apart
            ("sum(mintline_batches_sent_total)", at_least(2)),
            ("sum(mintline_request_duration_seconds_count)", equals(COMPLETED)),
            ("sum(mintline_request_duration_seconds_sum)", at_least(0.001)),
            ("sum(mintline_gas_per_mint_count)", at_least(2)),
            (
                "sum(mintline_gas_per_mint_sum) / sum(mintline_gas_per_mint_count)",
                lambda values: 50_000 <= values[0] <= 300_000,
            ),
            ('sum(mintline_webhook_deliveries_total{outcome="delivered"})', equals(TOKEN_MINTS + 1)),
            ("max(mintline_queue_depth_requests)", equals(0)),
            ("max(mintline_batches_in_flight)", equals(0)),
            ("max(mintline_batches_watched)", equals(0)),
            ("sum(mintline_fee_bumps_total)", equals(0)),
            ("sum(mintline_tx_stuck_total)", equals(0)),
            ("sum(mintline_reorgs_total)", equals(0)),
            ("sum(mintline_nonces_taken_total)", equals(0)),
            ("sum(mintline_broadcast_errors_total)", equals(0)),
        ],
        system.logs_tail,
    )
    assert len(system.webhooks) == TOKEN_MINTS + 1


def test_the_wallet_gauges_match_the_chain_once_idle(system: System) -> None:
    w3 = Web3(HTTPProvider(system.rpc_url))
    minter = system.deployment.minter
    balance = w3.eth.get_balance(minter)
    mined = w3.eth.get_transaction_count(minter, "latest")
    wallet = f'{{wallet="{minter}"}}'
    assert balance > 0
    settle(
        system.prometheus,
        [
            (f"mintline_nonce_lag_transactions{wallet}", equals(0)),
            (f"mintline_wallet_chain_nonce{wallet}", equals(mined)),
            ("max(mintline_batcher_next_nonce)", equals(mined)),
            # Prometheus keeps float64: 10^22 wei is exact only to about 16 digits.
            (f"mintline_wallet_balance_wei{wallet}", lambda v: math.isclose(v[0], balance, rel_tol=1e-12)),
            (f"mintline_oldest_in_flight_batch_age_seconds{wallet}", equals(0)),
            ("sum(mintline_batcher_active)", equals(1)),
            ("max(mintline_chain_head_block)", lambda v: 0 < v[0] <= w3.eth.block_number),
        ],
        system.logs_tail,
    )


def test_the_renderer_metrics_count_the_one_render(system: System) -> None:
    settle(
        system.prometheus,
        [
            ("sum(mintline_render_duration_seconds_count)", equals(1)),
            ("sum(mintline_render_peak_memory_bytes_count)", equals(1)),
            ('sum(mintline_render_jobs_total{state="completed"})', equals(1)),
            ("sum(mintline_render_attempts_failed_total)", equals(0)),
            ("sum(mintline_pins_total)", equals(2)),  # the GIF and its metadata
            ('max(mintline_render_queue_jobs{state="waiting"})', equals(0)),
            ('max(mintline_render_queue_jobs{state="active"})', equals(0)),
            ("sum(mintline_render_jobs_active)", equals(0)),
        ],
        system.logs_tail,
    )


def test_the_stream_gauges_match_redis(system: System) -> None:
    client = redis.Redis.from_url(system.redis_url)
    try:
        lengths = {name: client.xlen(system.names.stream(name)) for name in keys.STREAMS}
        dead = {name: client.xlen(system.names.dead(name)) for name in keys.STREAMS}
    finally:
        client.close()
    assert lengths[keys.MINT_REQUESTED] >= TOKEN_MINTS + 2
    assert lengths[keys.MINT_COMPLETED] == COMPLETED
    readers = {
        (keys.RENDER_REQUESTED, keys.RENDERER),
        (keys.MINT_REQUESTED, keys.BATCHER),
        (keys.TX_SENT, keys.CONFIRMER),
        # Each signer wallet reads the stuck reports in a group of its own.
        (keys.TX_STUCK, f"{keys.BATCHER}.{system.deployment.minter.lower()}"),
        (keys.MINT_COMPLETED, keys.INTAKE),
        (keys.MINT_FAILED, keys.INTAKE),
    }
    checks: list[Check] = []
    for name in keys.STREAMS:
        checks.append((f'max(mintline_stream_length_entries{{stream="{name}"}})', equals(lengths[name])))
        checks.append((f'max(mintline_stream_length_entries{{stream="{name}.dead"}})', equals(dead[name])))
        checks.append((f'sum(mintline_dead_lettered_total{{stream="{name}"}})', equals(0)))
    for stream, group in readers:
        labels = f'{{stream="{stream}", group="{group}"}}'
        checks.append((f"max(mintline_stream_pending_entries{labels})", equals(0)))
        checks.append((f"max(mintline_stream_lag_entries{labels})", equals(0)))
    settle(system.prometheus, checks, system.logs_tail)
    assert dead == dict.fromkeys(keys.STREAMS, 0)


def test_the_alert_rules_load_and_stay_quiet_on_a_healthy_system(system: System) -> None:
    # Until every rule was evaluated and none is pending (the nonce lag is briefly above 0 while
    # the last batches are mined).
    deadline = time.monotonic() + 30
    while True:
        groups = system.prometheus.api("rules")["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        active = system.prometheus.api("alerts")["alerts"]
        evaluated = rules and all(rule["health"] == "ok" for rule in rules)
        if evaluated and not active or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    alerts = {rule["name"] for rule in rules if rule["type"] == "alerting"}
    rule_file = yaml.safe_load((Path(__file__).parents[2] / "deploy/prometheus/alerts.yml").read_text())
    assert alerts == {rule["alert"] for group in rule_file["groups"] for rule in group["rules"]}
    assert len(alerts) >= 11
    assert [(r["name"], r["health"], r.get("lastError")) for r in rules if r["health"] != "ok"] == []
    assert active == []


def test_every_dashboard_panel_query_parses_and_returns_data(system: System) -> None:
    queries = list(dashboard_queries())
    assert len({name for name, _, _ in queries}) >= 3
    # Wait for the slowest series the panels read: the renderer's open-jobs gauge (every 5 s).
    settle(
        system.prometheus, [('max(mintline_render_queue_jobs{state="waiting"})', equals(0))], system.logs_tail
    )
    empty = []
    for name, title, expr in queries:
        assert "$" not in expr, f"{name} / {title}: unknown variable in {expr}"
        values = sample_values(system.prometheus, expr)  # raises on a query that does not parse
        if not any(math.isfinite(value) for value in values):
            empty.append(f"{name} / {title}: {expr} -> {values}")
    assert empty == [], "\n".join(empty)
