"""Renders in separate processes: the same bytes as in-process, a measured peak, and a failed job (over its
budget, or its process killed) that leaves the renderer working for the next one."""

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.renderer.gif import render_gif
from services.renderer.sandbox import RenderFailed, Sandbox
from shared.render_settings import RenderSettings

SMALL = RenderSettings(name="small", palette="mono", shape="square", seed=1, frames=2, size=32)
TYPICAL = RenderSettings(name="typical", palette="neon", shape="star", seed=9, frames=64, size=512)
LARGEST = RenderSettings(name="largest", palette="candy", shape="ring", seed=3, frames=128, size=512)


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    sandbox = Sandbox(concurrency=2)
    yield sandbox
    await sandbox.aclose()


async def test_a_sandboxed_render_gives_the_in_process_bytes_and_its_peak_memory(sandbox: Sandbox) -> None:
    result = await sandbox.render(TYPICAL)

    assert result.gif == render_gif(TYPICAL)
    assert result.frames == 64
    assert result.seconds > 0
    # The whole process is counted (interpreter included), so even a small job is several MiB.
    assert 8 << 20 < result.peak_rss_bytes < result.budget_bytes + (200 << 20)


async def test_concurrent_renders_each_get_their_own_result(sandbox: Sandbox) -> None:
    jobs = [TYPICAL.model_copy(update={"seed": seed}) for seed in range(4)]

    results = await asyncio.gather(*(sandbox.render(job) for job in jobs))

    assert [result.gif for result in results] == [render_gif(job) for job in jobs]


async def test_a_job_over_its_memory_budget_fails_and_the_next_job_succeeds() -> None:
    sandbox = Sandbox(concurrency=1, max_budget_bytes=8 << 20)
    try:
        assert sandbox.budget_bytes(TYPICAL) == 8 << 20

        with pytest.raises(RenderFailed) as failed:
            await sandbox.render(TYPICAL)
        assert not failed.value.retryable
        assert "memory budget" in failed.value.reason

        result = await sandbox.render(SMALL)
        assert result.gif == render_gif(SMALL)
    finally:
        await sandbox.aclose()


async def test_a_killed_render_process_fails_its_job_and_the_next_job_succeeds(sandbox: Sandbox) -> None:
    job = asyncio.ensure_future(sandbox.render(LARGEST))
    for pid in await started_render_processes():
        os.kill(pid, signal.SIGKILL)

    with pytest.raises(RenderFailed) as failed:
        await job
    assert failed.value.retryable

    result = await sandbox.render(SMALL)
    assert result.gif == render_gif(SMALL)


def test_the_budget_follows_the_job_and_is_capped() -> None:
    sandbox = Sandbox(concurrency=1, max_budget_bytes=100 << 20, safety_factor=2, allowance_bytes=1 << 20)
    try:
        assert sandbox.budget_bytes(SMALL) == SMALL.estimated_memory_bytes() * 2 + (1 << 20)
        assert sandbox.budget_bytes(LARGEST) == 100 << 20
    finally:
        sandbox.close()
        sandbox.close()


async def started_render_processes(timeout: float = 10) -> list[int]:
    """The processes this test process's forkserver has started, once there is one."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        forkservers = [pid for pid in children_of(os.getpid()) if b"forkserver" in cmdline(pid)]
        workers = [worker for server in forkservers for worker in children_of(server)]
        if workers:
            return workers
        await asyncio.sleep(0.01)
    raise AssertionError("no render process started")


def children_of(parent: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # it exited meanwhile
            continue
        # The command name in parentheses may hold spaces; the parent pid is the second field after it.
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
            children.append(int(entry.name))
    return children


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


SERVICE_SCRIPT = """
import asyncio, sys
from services.renderer.sandbox import Sandbox
from shared.render_settings import RenderSettings

async def main():
    sandbox = Sandbox(2)
    await sandbox.render(RenderSettings.model_validate(
        {"name": "x", "palette": "ocean", "shape": "star", "seed": 1, "frameCount": 4, "size": 32}))
    await asyncio.sleep(0.5)  # the pool has replaced the process that rendered
    print("ready", flush=True)
    await asyncio.sleep(600)

if __name__ == "__main__":
    asyncio.run(main())
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _descendants(root: int) -> list[int]:
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                # The parent pid is the 4th field, after the parenthesised command name.
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = [], [root]
    while frontier:
        children = [pid for pid, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def test_render_processes_exit_when_their_service_is_killed(tmp_path: Path) -> None:
    script = tmp_path / "service.py"
    script.write_text(SERVICE_SCRIPT)
    service = subprocess.Popen(
        [sys.executable, str(script)],
        cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert service.stdout is not None
    assert service.stdout.readline().strip() == "ready"
    # The forkserver, the idle render process waiting for work, the resource tracker.
    workers = _descendants(service.pid)
    assert workers

    service.send_signal(signal.SIGKILL)  # no shutdown code runs
    service.wait()
    service.stdout.close()

    deadline = time.monotonic() + 15
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in workers)
