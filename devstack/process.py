"""What every devstack server does with its process: wait until it answers, stop it, quote its log."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

log = logging.getLogger(__name__)


def program(proc: subprocess.Popen[bytes]) -> str:
    """The name of the program `proc` runs (`postgres`, not its full path), for messages."""
    args = proc.args
    first = args if isinstance(args, str | bytes | os.PathLike) else args[0]
    return Path(os.fsdecode(first)).name


def launch(cmd: list[str], log_path: Path, **popen_args: Any) -> subprocess.Popen[bytes]:
    """Start `cmd` with its output appended to `log_path`: a file, not a pipe, because nobody drains a
    server's output while it runs and a full pipe would block it.

    The server gets a session of its own, so a Ctrl-C at the terminal reaches only its owner, which
    stops it after the services that use it (they would otherwise lose it mid-shutdown).
    """
    with log_path.open("ab") as log_file:
        return subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **popen_args,
        )


def log_tail(path: Path, lines: int = 20) -> str:
    """The last `lines` lines of a server's log, to quote when it fails to start."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return "<no log>"
    return "\n".join(text.splitlines()[-lines:]) or "<log is empty>"


def wait_until_ready(
    proc: subprocess.Popen[bytes],
    ready: Callable[[], bool],
    *,
    port: int,
    log_path: Path,
    timeout: float,
    waiting_for: str,
) -> None:
    """Poll `ready` until it is true; if `proc` exits first or `timeout` passes, raise with its log's tail.

    waiting_for completes "<program> did not ... on port <port>", e.g. "answer PING".
    """
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(
                f"{program(proc)} exited with code {proc.returncode} on port {port}; "
                f"log tail:\n{log_tail(log_path)}"
            )
        if ready():
            return
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"{program(proc)} did not {waiting_for} on port {port} within {timeout}s; "
                f"log tail:\n{log_tail(log_path)}"
            )
        time.sleep(0.05)


def stop_process(proc: subprocess.Popen[bytes] | None, sig: signal.Signals, timeout: float) -> None:
    """Send `sig` and reap the process, killing it if it has not exited within `timeout` seconds.

    A process that has already exited (or None) is left alone, so stopping twice is safe.
    """
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        log.warning("%s pid %d ignored %s, killing it", program(proc), proc.pid, sig.name)
        proc.kill()
        proc.wait()


class Server:
    """A server process that `start()` launches and `stop()` ends; `with Server() as server:` does both."""

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
