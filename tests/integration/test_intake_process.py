"""`python -m services.intake` as a process: it serves, stops cleanly on SIGTERM, and refuses to start
without its required settings (naming them, never printing secrets)."""

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from eth_account.signers.local import LocalAccount

from devstack.ports import free_port
from devstack.process import log_tail
from shared.deploy import Deployment
from tests.support.intake import wait_healthy
from tests.support.payments import gasless_body

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def intake_process(
    settings_env: dict[str, str], tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[bytes], str, Path]]:
    """`python -m services.intake` on a free port: (process, url, log path); killed if still running."""
    port = free_port()
    log_path = tmp_path / "intake.log"
    env = {**os.environ, **settings_env, "INTAKE_PORT": str(port), "PYTHONUNBUFFERED": "1"}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "services.intake"], cwd=REPO, env=env, stdout=log, stderr=log
        )
    yield process, f"http://127.0.0.1:{port}", log_path
    if process.poll() is None:
        process.kill()
        process.wait()


async def test_serves_then_stops_cleanly_on_sigterm(
    intake_process: tuple[subprocess.Popen[bytes], str, Path],
    settings_env: dict[str, str],
    fund_payers: Callable[[int], list[LocalAccount]],
    deployment: Deployment,
    pg_pool: asyncpg.Pool,
) -> None:
    process, url, log_path = intake_process
    assert await wait_healthy(url, process), f"intake did not become healthy:\n{log_tail(log_path)}"
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{url}/mint", json=gasless_body(fund_payers(1)[0], deployment)) as response:
            body = await response.json()
            assert response.status == 202, body
    status = await pg_pool.fetchval("SELECT status FROM mint_requests WHERE id = $1::uuid", body["queueId"])
    assert status == "pending"

    process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 20
    while process.poll() is None:
        assert time.monotonic() < deadline, "intake did not stop within 20 s of SIGTERM"
        await asyncio.sleep(0.1)
    assert process.returncode == 0
    output = log_path.read_text()
    assert "intake stopped" in output and "Traceback" not in output, output
    assert settings_env["WEBHOOK_SECRET"] not in output


def test_missing_webhook_secret_stops_start_up_with_its_name(settings_env: dict[str, str]) -> None:
    env = {k: v for k, v in {**os.environ, **settings_env}.items() if k != "WEBHOOK_SECRET"}
    result = subprocess.run(
        [sys.executable, "-m", "services.intake"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "WEBHOOK_SECRET" in result.stderr
