"""INTAKE_WORKERS processes serving one port as one service.

With INTAKE_WORKERS above 1, `python -m services.intake` is a parent that starts that many workers
(`python -m services.intake` again, told its index in MINTLINE_INTAKE_WORKER) and serves nothing
itself. Each worker binds the port with SO_REUSEPORT, so the kernel spreads connections over them.

- Metrics: the parent empties PROMETHEUS_MULTIPROC_DIR (a directory of its own unless that is set)
  before the workers start and removes their files when it stops; every worker writes its figures
  there and any worker's /metrics answers the totals (shared/metrics.py). A dead worker's counters
  stay in the totals (they never go back); its gauges leave them.
- Health: every worker answers /health for the service (its dependencies), and the parent keeps the
  workers running.
- A worker that dies is started again (after a backoff that grows while it keeps dying young); the
  others keep serving meanwhile. A worker that refuses to start (exit 2: a bad setting, the wrong
  chain) stops the service with exit 2, since a new one would only refuse again.
- SIGTERM or SIGINT to the parent stops every worker gracefully (SIGTERM; SIGKILL after the grace
  period) and it exits 0. A worker dies with its parent (PR_SET_PDEATHSIG), so a killed parent never
  leaves workers holding the port.
- The loops that must run once per service (stream replay, the stale-publish sweep) run in worker 0
  only (services/intake/background.py); a restarted worker 0 takes them up again.
- INTAKE_LIVE_MAX_STREAMS caps the live streams of all workers together (a file of counts they share,
  services/intake/open_streams.py); the per-client caps and the rate limits are each worker's.
"""

import contextlib
import ctypes
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from prometheus_client.multiprocess import mark_process_dead

from services.intake.open_streams import STREAMS_ENV, create_shared_file
from shared.backoff import exponential_backoff
from shared.metrics import MULTIPROC_DIR

log = logging.getLogger(__name__)

WORKER_ENV = "MINTLINE_INTAKE_WORKER"
PARENT_ENV = "MINTLINE_INTAKE_PARENT"
# Exit status of a process that refused to start (services/intake/__main__.py).
REFUSED = 2
# A worker that ran this long before dying starts again at once; one dying younger waits longer
# each time, up to RESTART_MAX_SECONDS.
HEALTHY_RUN_SECONDS = 30.0
RESTART_BASE_SECONDS = 0.5
RESTART_MAX_SECONDS = 10.0
POLL_SECONDS = 0.2
# Linux prctl(2).
PR_SET_PDEATHSIG = 1


def worker_index() -> int | None:
    """This process's index among the workers, or None when it is not a worker."""
    value = os.environ.get(WORKER_ENV)
    return None if value is None else int(value)


def follow_parent() -> None:
    """A worker ends when its parent does: the kernel sends it SIGTERM (Linux), and a parent gone
    before that was arranged means exiting now."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if str(os.getppid()) != os.environ.get(PARENT_ENV):
        raise SystemExit(0)


class Worker:
    def __init__(self, index: int, env: dict[str, str]) -> None:
        self.index = index
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.failures = 0
        self.restart_at: float | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "services.intake"],
            env={**self.env, WORKER_ENV: str(self.index)},
            stdin=subprocess.DEVNULL,
        )
        self.started_at = time.monotonic()
        self.restart_at = None
        log.info("intake worker %d started (pid %d)", self.index, self.proc.pid)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class Supervisor:
    def __init__(self, count: int, grace_seconds: float) -> None:
        self.count = count
        # A worker's own shutdown waits up to its grace period twice (open requests, then the
        # background loops); past that and a margin it is killed.
        self.stop_timeout = 2 * grace_seconds + 5
        self.stopping = threading.Event()
        self.exit_code = 0

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stopping.set())
        given = os.environ.get(MULTIPROC_DIR)
        metrics_dir = Path(given) if given else Path(tempfile.mkdtemp(prefix="mintline-intake-metrics-"))
        _empty(metrics_dir)
        streams_file = tempfile.NamedTemporaryFile(prefix="mintline-intake-streams-", delete=False)
        streams_file.close()
        create_shared_file(streams_file.name, self.count)
        env = {
            **os.environ,
            MULTIPROC_DIR: str(metrics_dir),
            PARENT_ENV: str(os.getpid()),
            STREAMS_ENV: streams_file.name,
        }
        workers = [Worker(index, env) for index in range(self.count)]
        log.info("intake starting %d workers (metrics in %s)", self.count, metrics_dir)
        try:
            for worker in workers:
                worker.start()
            while not self.stopping.wait(POLL_SECONDS):
                for worker in workers:
                    self._tend(worker, metrics_dir)
        finally:
            self._stop_all(workers)
            Path(streams_file.name).unlink(missing_ok=True)
            if given:
                _empty(metrics_dir)
            else:
                shutil.rmtree(metrics_dir, ignore_errors=True)
        log.info("intake stopped")
        return self.exit_code

    def _tend(self, worker: Worker, metrics_dir: Path) -> None:
        """Notice a worker that exited and start it again when its backoff is over."""
        now = time.monotonic()
        if worker.restart_at is not None:
            if now >= worker.restart_at:
                worker.start()
            return
        if worker.proc is None or worker.alive():
            return
        code, pid = worker.proc.returncode, worker.proc.pid
        mark_process_dead(pid, str(metrics_dir))
        if code == REFUSED:
            log.error("intake worker %d refused to start (exit %d); stopping intake", worker.index, code)
            self.exit_code = REFUSED
            self.stopping.set()
            return
        worker.failures = 0 if now - worker.started_at >= HEALTHY_RUN_SECONDS else worker.failures + 1
        delay = exponential_backoff(worker.failures, RESTART_BASE_SECONDS, RESTART_MAX_SECONDS)
        delay = delay if worker.failures else 0.0
        log.warning(
            "intake worker %d (pid %d) exited with %s; starting it again in %.1f s",
            worker.index,
            pid,
            _describe(code),
            delay,
        )
        worker.restart_at = now + delay

    def _stop_all(self, workers: list[Worker]) -> None:
        running = [worker for worker in workers if worker.alive()]
        for worker in running:
            assert worker.proc is not None
            with contextlib.suppress(ProcessLookupError):
                worker.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        for worker in running:
            assert worker.proc is not None
            try:
                worker.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("intake worker %d did not stop in time; killing it", worker.index)
                worker.proc.kill()
                worker.proc.wait()


def supervise(count: int, grace_seconds: float) -> int:
    """Run `count` workers until SIGTERM / SIGINT; the exit status for the parent."""
    return Supervisor(count, grace_seconds).run()


def _empty(directory: Path) -> None:
    """Remove the metrics files a previous run left (they would count again)."""
    directory.mkdir(parents=True, exist_ok=True)
    for path in directory.glob("*.db"):
        path.unlink(missing_ok=True)


def _describe(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(-code).name}"
    return f"status {code}"
