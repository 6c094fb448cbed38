"""The operator console for the integration tests: the app on a real loopback port, or its process."""

import base64
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from admin.console.app import create_app
from admin.console.resources import POOL
from admin.console.settings import ConsoleSettings
from devstack.ports import free_port
from devstack.process import log_tail, stop_process
from tests.support.intake import wait_healthy

REPO = Path(__file__).resolve().parents[2]
OPERATOR = "alice"
CREDENTIAL_VARIABLES = ("CONSOLE_TOKEN", "CONSOLE_OPERATORS", "CONSOLE_OPERATORS_FILE")


def new_token() -> str:
    return secrets.token_urlsafe(24)


def basic(name: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()}


@dataclass
class Console:
    app: web.Application
    client: TestClient
    token: str

    @property
    def pool(self) -> asyncpg.Pool:
        return self.app[POOL]

    @property
    def auth(self) -> dict[str, str]:
        return basic(OPERATOR, self.token)

    async def get(self, path: str, **kwargs: Any) -> tuple[int, Any]:
        async with self.client.get(path, headers=kwargs.pop("headers", self.auth), **kwargs) as response:
            return response.status, await response.json()

    async def act(self, path: str, body: Any = None, method: str = "POST", **kwargs: Any) -> tuple[int, Any]:
        headers = {**self.auth, **kwargs.pop("headers", {})}
        async with self.client.request(
            method, path, json={} if body is None else body, headers=headers, **kwargs
        ) as response:
            return response.status, await response.json()


@asynccontextmanager
async def running_console(
    settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, **overrides: str
) -> AsyncIterator[Console]:
    """The console in this process on a free loopback port, configured from the environment."""
    token = new_token()
    for name, value in {**settings_env, "CONSOLE_TOKEN": token, **overrides}.items():
        monkeypatch.setenv(name, value)
    client = TestClient(TestServer(create_app(ConsoleSettings())))  # type: ignore[call-arg]
    await client.start_server()
    try:
        yield Console(client.app, client, token)  # type: ignore[arg-type]
    finally:
        await client.close()


@dataclass
class ConsoleProcess:
    url: str
    token: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self) -> str:
        return log_tail(self.log_path, 40)


@contextmanager
def console_process(
    env: dict[str, str], log_dir: Path, *, shared_token: bool = True, **extra: str
) -> Iterator[ConsoleProcess]:
    """`python -m admin.console` as `make run` starts it; stopped (SIGTERM) at the end. With a new
    shared CONSOLE_TOKEN, or (`shared_token=False`) only the credentials `extra` gives it."""
    token = new_token() if shared_token else ""
    port = free_port()
    log_path = log_dir / f"console-{port}.log"
    outer = {k: v for k, v in os.environ.items() if k not in CREDENTIAL_VARIABLES}
    full = {**outer, **env, "CONSOLE_PORT": str(port), "PYTHONUNBUFFERED": "1"}
    if shared_token:
        full["CONSOLE_TOKEN"] = token
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "admin.console"],
            cwd=REPO,
            env={**full, **extra},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield ConsoleProcess(f"http://127.0.0.1:{port}", token, proc, log_path)
    finally:
        stop_process(proc, signal.SIGTERM, timeout=15)


async def started(console: ConsoleProcess) -> ConsoleProcess:
    if not await wait_healthy(console.url, console.proc):
        raise RuntimeError(f"the console did not start:\n{console.log_tail()}")
    return console
