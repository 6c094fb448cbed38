"""What every throwaway local chain (anvil, Hardhat's node) shares: a node process on a free loopback
port that is ready once it answers eth_chainId with its chain id, and stops with its log removed."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import tempfile
import urllib.request
from pathlib import Path
from typing import Any, Self

from devstack.ports import free_port
from devstack.process import Server, launch, stop_process, wait_until_ready

log = logging.getLogger(__name__)

HOST = "127.0.0.1"


class LocalChain(Server):
    """A JSON-RPC node on 127.0.0.1; `start()` (or `with Node() as node:`) returns once it answers RPC.

    Subclasses say how to run it (`command`), and may prepare files it needs first (`prepare`, undone
    by `cleanup`)."""

    name = "chain"
    # Seconds a stop waits for the node to exit before killing it.
    stop_timeout = 5.0

    def __init__(self, port: int | None, chain_id: int, start_timeout: float) -> None:
        self.port = port or free_port()
        self.chain_id = chain_id
        self.start_timeout = start_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_path: Path | None = None

    @property
    def rpc_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def command(self) -> list[str]:
        raise NotImplementedError

    def prepare(self) -> None:
        """Anything the node needs on disk before `command` runs."""

    def cleanup(self) -> None:
        """Undo `prepare`; called by every stop, so it must be safe to call twice."""

    def popen_args(self) -> dict[str, Any]:
        return {}

    def start(self) -> Self:
        if self._proc is not None:
            raise RuntimeError(f"{type(self).__name__} already started")
        fd, log_name = tempfile.mkstemp(prefix=f"{self.name}-", suffix=".log")
        os.close(fd)
        self._log_path = Path(log_name)
        try:
            self.prepare()
            self._proc = launch(self.command(), self._log_path, **self.popen_args())
            wait_until_ready(
                self._proc,
                lambda: self._answered_chain_id() == self.chain_id,
                port=self.port,
                log_path=self._log_path,
                timeout=self.start_timeout,
                waiting_for="answer eth_chainId",
            )
        except BaseException:
            self.stop()
            raise
        log.info("%s pid %d at %s (chain id %d)", self.name, self._proc.pid, self.rpc_url, self.chain_id)
        return self

    def rpc(self, method: str, *params: Any) -> Any:
        """One JSON-RPC call's result, or None when the node does not answer it (yet)."""
        request = urllib.request.Request(
            self.rpc_url,
            data=json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}).encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=1) as response:
                return json.load(response).get("result")
        except (OSError, ValueError, AttributeError):
            # Not listening yet (URLError is an OSError) or not a JSON-RPC answer yet.
            return None

    def _answered_chain_id(self) -> int | None:
        answer = self.rpc("eth_chainId")
        try:
            return int(answer, 16)
        except (TypeError, ValueError):
            return None

    def stop(self) -> None:
        """Terminates the node (kills it if it does not exit in time); calling it again is a no-op."""
        proc, self._proc = self._proc, None
        stop_process(proc, signal.SIGTERM, timeout=self.stop_timeout)
        self.cleanup()
        if self._log_path is not None:
            self._log_path.unlink(missing_ok=True)
            self._log_path = None
