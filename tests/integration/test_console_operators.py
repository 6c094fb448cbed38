"""Per-operator console credentials, end to end: tokens minted with `mintline console-token`, the
console started as a process with the operators file, each operator's actions audited in
admin_audit under the name its token proves, and a bad operators file stopping start-up (exit 2)
without quoting a token."""

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from devstack.ports import free_port
from tests.support.console import CREDENTIAL_VARIABLES, REPO, ConsoleProcess, basic, console_process, started


def console_token(name: str) -> tuple[str, str]:
    """`mintline console-token NAME` as an operator runs it: (the token, the entry for the file)."""
    done = subprocess.run(
        [sys.executable, "-m", "admin", "console-token", name],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    (entry,) = done.stdout.splitlines()
    return done.stderr.splitlines()[1], entry


async def call(
    session: aiohttp.ClientSession,
    console: ConsoleProcess,
    method: str,
    path: str,
    headers: dict[str, str],
    body: Any = None,
) -> tuple[int, Any]:
    async with session.request(method, f"{console.url}{path}", headers=headers, json=body) as response:
        return response.status, await response.json()


async def test_each_operator_is_audited_under_the_name_its_token_proves(
    settings_env: dict[str, str], pg_pool: asyncpg.Pool, tmp_path: Path
) -> None:
    alice, alice_entry = console_token("alice")
    bob, bob_entry = console_token("bob")
    operators = tmp_path / "operators"
    operators.write_text(f"# console operators\n{alice_entry}\n{bob_entry}\n")
    with console_process(
        settings_env, tmp_path, shared_token=False, CONSOLE_OPERATORS_FILE=str(operators)
    ) as process:
        console = await started(process)
        async with aiohttp.ClientSession() as session:
            # Each one's own token under someone else's name, or a name nobody has: nothing is done.
            for wrong in (
                basic("alice", bob),
                basic("bob", alice),
                basic("root", alice),
                basic("Alice", alice),
            ):
                status, answer = await call(
                    session, console, "PUT", "/api/settings/batch_size", wrong, {"value": 7}
                )
                assert (status, answer["error"]) == (401, "unauthorized"), wrong
            assert await pg_pool.fetchval("SELECT count(*) FROM admin_audit") == 0

            status, _ = await call(
                session, console, "PUT", "/api/settings/batch_size", basic("alice", alice), {"value": 25}
            )
            assert status == 200
            status, _ = await call(
                session,
                console,
                "PUT",
                "/api/settings/batch_size",
                {"Authorization": f"Bearer {bob}"},
                {"value": None},
            )
            assert status == 200
            status, _ = await call(
                session, console, "POST", "/api/actions/replay-streams", basic("bob", bob), {}
            )
            assert status == 200
            status, audit = await call(
                session, console, "GET", "/api/audit", {"Authorization": f"Bearer {alice}"}
            )
            assert status == 200
        log = process.log_path.read_text()

    rows = await pg_pool.fetch("SELECT actor, source, action, outcome FROM admin_audit ORDER BY id")
    assert [tuple(row) for row in rows] == [
        ("alice", "console", "settings-set", "done"),
        ("bob", "console", "settings-unset", "done"),
        ("bob", "console", "replay-streams", "done"),
    ]
    assert [(item["actor"], item["action"]) for item in reversed(audit["items"])] == [
        ("alice", "settings-set"),
        ("bob", "settings-unset"),
        ("bob", "replay-streams"),
    ]
    assert "credentials: 2 operator(s): alice, bob" in log
    assert alice not in log and bob not in log


def refusal(extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in CREDENTIAL_VARIABLES}
    env = {
        **base,
        # Never reached: credentials are checked before anything connects.
        "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        "DATABASE_URL": f"postgresql://nobody@127.0.0.1:{free_port()}/none",
        "CONSOLE_PORT": str(free_port()),
        **extra,
    }
    return subprocess.run(
        [sys.executable, "-m", "admin.console"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )


def test_bad_operator_credentials_stop_start_up_without_quoting_a_token(tmp_path: Path) -> None:
    alice, alice_entry = console_token("alice")
    path = tmp_path / "operators"
    prefix = "console: refusing to start: "
    for text, extra, reason in [
        (f"alice:{alice}\n", {}, f"CONSOLE_OPERATORS_FILE {path} line 1: not name:sha256:<64 hex digits>"),
        (f"{alice_entry}\n{alice_entry.replace('alice', 'bob', 1)}\n", {}, "bob has the same token as alice"),
        (f"{alice_entry}\n", {"CONSOLE_OPERATORS": alice_entry}, "operator alice is listed twice"),
        (f"{alice_entry}\n", {"CONSOLE_TOKEN": alice}, "are both set: set one"),
        ("# nobody\n", {}, "per-operator credentials are set but list no operator"),
    ]:
        path.write_text(text)
        done = refusal({"CONSOLE_OPERATORS_FILE": str(path), **extra})
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith(prefix) and reason in done.stderr, done.stderr
        assert alice not in done.stderr + done.stdout
    missing = refusal({"CONSOLE_OPERATORS_FILE": str(tmp_path / "missing")})
    assert missing.returncode == 2 and f"cannot read {tmp_path / 'missing'}" in missing.stderr
