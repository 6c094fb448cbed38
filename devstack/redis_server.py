"""A throwaway redis-server on a free loopback port, for tests and `make run`."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from devstack.ports import free_port
from devstack.process import Server, launch, stop_process, wait_until_ready

log = logging.getLogger(__name__)

HOST = "127.0.0.1"


def _binary() -> str:
    path = os.environ.get("REDIS_SERVER_BIN") or shutil.which("redis-server")
    if not path:
        raise FileNotFoundError(
            "redis-server not found: install it (devstack/install.sh) or set REDIS_SERVER_BIN"
        )
    return path


class RedisServer(Server):
    def __init__(
        self,
        port: int | None = None,
        data_dir: Path | None = None,
        persist: bool = False,
        start_timeout: float = 10.0,
    ) -> None:
        if persist and data_dir is None:
            # An AOF in a temp dir that stop() deletes would persist nothing.
            raise ValueError("persist=True needs a data_dir")
        self.port = port or free_port()
        self.persist = persist
        self.start_timeout = start_timeout
        self._given_data_dir = data_dir
        self.data_dir: Path | None = None
        self._tmp_dir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    @property
    def log_path(self) -> Path:
        if self.data_dir is None:
            raise RuntimeError("RedisServer not started")
        return self.data_dir / "redis.log"

    def start(self) -> RedisServer:
        if self._proc is not None:
            raise RuntimeError("RedisServer already started")
        if self._given_data_dir is None:
            self._tmp_dir = Path(tempfile.mkdtemp(prefix="mintline-redis-"))
            self.data_dir = self._tmp_dir
        else:
            self.data_dir = self._given_data_dir
            self.data_dir.mkdir(parents=True, exist_ok=True)
        persistence = (
            ["--appendonly", "yes", "--appendfsync", "everysec"] if self.persist else ["--appendonly", "no"]
        )
        cmd = [
            _binary(),
            "--bind", HOST,
            "--port", str(self.port),
            "--dir", str(self.data_dir),
            "--daemonize", "no",
            "--save", "",
            *persistence,
        ]  # fmt: skip
        self._proc = launch(cmd, self.log_path)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        log.info("redis-server pid %d listening on %s", self._proc.pid, self.url)
        return self

    def _wait_ready(self) -> None:
        assert self._proc is not None
        # No retries: redis-py's default backoff would stretch one probe past the whole deadline.
        client = redis.Redis(
            host=HOST, port=self.port, socket_timeout=1, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0)
        )
        try:
            wait_until_ready(
                self._proc,
                lambda: self._answers(client),
                port=self.port,
                log_path=self.log_path,
                timeout=self.start_timeout,
                waiting_for="answer PING",
            )
        finally:
            client.close()

    def _answers(self, client: redis.Redis) -> bool:
        assert self._proc is not None
        try:
            # ping() fails with BusyLoadingError while an AOF is replayed; the pid check makes sure
            # the PONG came from our process, not from another redis that already owns the port.
            return bool(client.ping()) and client.info("server")["process_id"] == self._proc.pid
        except redis.RedisError:
            return False

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        # SIGTERM makes redis flush the AOF (when persisting) and exit cleanly.
        stop_process(proc, signal.SIGTERM, timeout=10)
        if self._tmp_dir is not None:
            shutil.rmtree(self._tmp_dir, ignore_errors=True)
            self._tmp_dir = None
