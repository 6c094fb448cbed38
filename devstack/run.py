"""`make run`: the whole system on this machine.

Starts Redis, PostgreSQL and anvil (1 s blocks) on loopback unless REDIS_URL / DATABASE_URL / RPC_URL
point at servers already running, deploys the contracts (or reuses a deployment still on the chain),
funds anvil's dev payers with mock USDC, applies the migrations, then runs intake, renderer, batcher
(with two signer wallets), confirmer and the operator console as their own processes, restarting one
that dies. The console takes the caller's per-operator credentials (CONSOLE_OPERATORS_FILE or
CONSOLE_OPERATORS) if set, else the shared CONSOLE_TOKEN, else one generated here and printed once.
Ctrl-C stops everything it started.
"""

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
from pydantic import ValidationError
from redis import Redis
from web3 import HTTPProvider, Web3

from devstack.anvil import MINTER_ADDRESSES, MINTER_KEYS, Anvil
from devstack.deploy import deploy_dev
from devstack.ports import free_port
from devstack.postgres_server import PostgresServer
from devstack.prometheus_server import PrometheusServer
from devstack.redis_server import RedisServer
from services.batcher.settings import BatcherSettings
from services.confirmer.settings import ConfirmerSettings
from services.intake.settings import IntakeSettings
from services.renderer.settings import RendererSettings
from shared import db
from shared.deploy import Deployment

log = logging.getLogger("mintline.run")

RUN_DIR = Path(".run")
ALERT_RULES = Path(__file__).resolve().parents[1] / "deploy" / "prometheus" / "alerts.yml"
SERVICES = ("intake", "renderer", "batcher", "confirmer")
# Every process `make run` supervises, by its module: the four services and the operator console.
MODULES = {**{name: f"services.{name}" for name in SERVICES}, "console": "admin.console"}
SECRETS = ("BATCHER_PRIVATE_KEY", "BATCHER_PRIVATE_KEYS", "WEBHOOK_SECRET", "CONSOLE_TOKEN")


def _deployment_on_chain(path: Path, rpc_url: str) -> Deployment | None:
    """The saved deployment if its contracts are still on this chain (anvil may have been restarted)."""
    if not path.exists():
        return None
    try:
        deployment = Deployment.load(path)
    except ValidationError:
        return None  # written by an older version: deploy afresh
    if not set(MINTER_ADDRESSES) <= set(deployment.minters):
        return None  # written before both local signer wallets were minters
    w3 = Web3(HTTPProvider(rpc_url))
    if w3.eth.chain_id != deployment.chain_id or not all(
        w3.eth.get_code(address) for address in (deployment.token, deployment.nft)
    ):
        return None
    return deployment


def _signer_keys() -> dict[str, str]:
    """The batcher's signer wallets: the caller's BATCHER_PRIVATE_KEY(S), else the local chain's two
    minters (anvil's public dev key 1 and the second minter of devstack/anvil.py: local dev values)."""
    own = {
        name: os.environ[name]
        for name in ("BATCHER_PRIVATE_KEYS", "BATCHER_PRIVATE_KEY")
        if name in os.environ
    }
    return own or {"BATCHER_PRIVATE_KEYS": ",".join(MINTER_KEYS)}


async def _reset_database(dsn: str) -> None:
    """A new chain makes the old rows meaningless (their nonces and hashes are of another chain)."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
    finally:
        await conn.close()


def _scrape_targets(env: dict[str, str]) -> dict[str, str]:
    """Where each service serves /metrics, as its settings will read it (environment, else default)."""
    ports = {
        "intake": ("INTAKE_PORT", IntakeSettings.model_fields["port"].default),
        "renderer": ("RENDERER_METRICS_PORT", RendererSettings.model_fields["metrics_port"].default),
        "batcher": ("BATCHER_METRICS_PORT", BatcherSettings.model_fields["metrics_port"].default),
        "confirmer": ("CONFIRMER_METRICS_PORT", ConfirmerSettings.model_fields["metrics_port"].default),
    }
    return {
        name: f"127.0.0.1:{env.get(var) or os.environ.get(var) or port}"
        for name, (var, port) in ports.items()
    }


def _start_prometheus(stack: contextlib.ExitStack, env: dict[str, str]) -> str | None:
    """Prometheus scraping every service with the alert rules of deploy/; the system runs without it."""
    wanted = int(os.environ.get("PROMETHEUS_PORT", "9090"))
    with socket.socket() as probe:
        taken = probe.connect_ex(("127.0.0.1", wanted)) == 0
    try:
        prometheus = stack.enter_context(
            PrometheusServer(
                _scrape_targets(env),
                rule_files=[ALERT_RULES],
                scrape_interval="5s",
                port=free_port() if taken else wanted,
            )
        )
    except (OSError, RuntimeError) as exc:
        log.warning("prometheus not started (%s); the system runs without it", exc)
        return None
    return prometheus.url


def _per_operator() -> bool:
    """The caller configured each operator's own console token (the console refuses both kinds)."""
    return any(os.environ.get(name, "").strip() for name in ("CONSOLE_OPERATORS_FILE", "CONSOLE_OPERATORS"))


def _console_sign_in(env: dict[str, str]) -> str:
    if _per_operator():
        return "user: an operator's name, password: that operator's token"
    shown = "$CONSOLE_TOKEN" if os.environ.get("CONSOLE_TOKEN") else env["CONSOLE_TOKEN"]
    return f"user: your name, password: {shown}"


def _service_env(env: dict[str, str]) -> dict[str, str]:
    return {**os.environ, **env, "PYTHONUNBUFFERED": "1"}


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    RUN_DIR.mkdir(exist_ok=True)
    stack = contextlib.ExitStack()
    with stack:
        redis_url = os.environ.get("REDIS_URL")
        own_redis = not redis_url
        if own_redis:
            redis = stack.enter_context(RedisServer(data_dir=(RUN_DIR / "redis").resolve(), persist=True))
            redis_url = redis.url
        database_url = os.environ.get("DATABASE_URL")
        if not database_url:
            postgres = stack.enter_context(
                PostgresServer(data_dir=(RUN_DIR / "postgres").resolve(), fast=False)
            )
            database_url = postgres.dsn
        rpc_url = os.environ.get("RPC_URL")
        if not rpc_url:
            port = int(os.environ["ANVIL_PORT"]) if os.environ.get("ANVIL_PORT") else None
            anvil = stack.enter_context(Anvil(block_time=1, port=port))
            rpc_url = anvil.rpc_url

        deployment_file = RUN_DIR / "deployment.json"
        deployment = _deployment_on_chain(deployment_file, rpc_url)
        if deployment is None:
            log.info("deploying contracts to %s", rpc_url)
            # Local chain only: anvil's public dev accounts (0 deploys, 1 and 9
            # sign batches, 2 is the treasury, 3..8 pay).
            deployment = deploy_dev(rpc_url)
            deployment.save(deployment_file)
            asyncio.run(_reset_database(database_url))
            if own_redis:
                # Streams of the previous chain would only replay events about rows now gone.
                Redis.from_url(redis_url).flushdb()
        asyncio.run(db.migrate(database_url))

        env = {
            "REDIS_URL": redis_url,
            "DATABASE_URL": database_url,
            "RPC_URL": rpc_url,
            "DEPLOYMENT_FILE": str(deployment_file.resolve()),
            # Local dev values only; a real deployment sets its own.
            **_signer_keys(),
            "WEBHOOK_SECRET": os.environ.get("WEBHOOK_SECRET", "local-dev-webhook-secret"),
            # NFT images and metadata: the local IPFS store, served by the renderer on :9103/ipfs/.
            "RENDERER_PIN_DIR": str((RUN_DIR / "ipfs").resolve()),
        }
        if not _per_operator():
            # The operator console's shared token: the caller's, else a new one for this run (printed once).
            env["CONSOLE_TOKEN"] = os.environ.get("CONSOLE_TOKEN") or secrets.token_urlsafe(24)
        (RUN_DIR / "env").write_text("".join(f"{k}={v}\n" for k, v in env.items() if k not in SECRETS))
        prometheus_url = _start_prometheus(stack, env)
        supervise(env, deployment, prometheus_url)


def supervise(env: dict[str, str], deployment: Deployment, prometheus_url: str | None) -> None:
    stopping = False

    def request_stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    restarts: dict[str, float] = {}
    port = os.environ.get("INTAKE_PORT", "4021")
    console_port = os.environ.get("CONSOLE_PORT", "4030")
    for name, module in MODULES.items():
        procs[name] = subprocess.Popen([sys.executable, "-m", module], env=_service_env(env))
    print(
        f"\nmintline is running: intake at http://127.0.0.1:{port}  (chain {deployment.chain_id}, "
        f"token {deployment.token}, USDC {deployment.usdc}, price {deployment.price / 1e6:g} USDC; "
        f"NFT {deployment.nft}, price {deployment.nft_price / 1e6:g} USDC)\n"
        f"status page: http://127.0.0.1:{port}/?id=<queueId>; NFT images: "
        f"http://{_scrape_targets(env)['renderer']}/ipfs/<cid>; "
        f"Prometheus: {prometheus_url or 'not running'}\n"
        f"operator console: http://127.0.0.1:{console_port}/ ({_console_sign_in(env)})\n"
        f"deployment: {RUN_DIR / 'deployment.json'}; connection URLs: {RUN_DIR / 'env'}; Ctrl-C stops.\n",
        flush=True,
    )
    try:
        while not stopping:
            time.sleep(0.5)
            for name, proc in procs.items():
                if proc.poll() is not None and not stopping:
                    # Restart, but not in a tight loop if it keeps dying.
                    if time.monotonic() - restarts.get(name, 0) < 5:
                        continue
                    log.warning("%s exited with %s; restarting", name, proc.returncode)
                    restarts[name] = time.monotonic()
                    procs[name] = subprocess.Popen(
                        [sys.executable, "-m", MODULES[name]], env=_service_env(env)
                    )
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc in procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
        log.info("stopped")


if __name__ == "__main__":
    main()
