"""A PgBouncer in transaction pooling mode on a free loopback port, in front of a PostgreSQL, for tests.

Every database name is passed through to the PostgreSQL behind it (`* =`), so a test's own database
is reached as `dsn_for(name)`. The admin console (`SHOW POOLS`, `SHOW STATS`) answers on the
database `pgbouncer`.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from devstack.ports import free_port
from devstack.postgres_server import (
    HOST,
    SUPERUSER,
    _bin_dir,
    _chown_to_server_user,
    _client_env,
    _server_user,
)
from devstack.process import Server, launch, stop_process, wait_until_ready

log = logging.getLogger(__name__)


def _binary() -> str:
    path = os.environ.get("PGBOUNCER_BIN") or shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    if not Path(path).exists():
        raise FileNotFoundError("pgbouncer not found: install it (devstack/install.sh) or set PGBOUNCER_BIN")
    return path


class PgBouncer(Server):
    def __init__(
        self,
        upstream_port: int,
        pool_size: int = 4,
        port: int | None = None,
        max_client_conn: int = 500,
        start_timeout: float = 10.0,
    ) -> None:
        self.upstream_port = upstream_port
        self.pool_size = pool_size
        self.port = port or free_port()
        self.max_client_conn = max_client_conn
        self.start_timeout = start_timeout
        self.run_dir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    def dsn_for(self, database: str) -> str:
        return f"postgresql://{SUPERUSER}@{HOST}:{self.port}/{database}"

    @property
    def log_path(self) -> Path:
        if self.run_dir is None:
            raise RuntimeError("PgBouncer not started")
        return self.run_dir / "pgbouncer.log"

    def _config(self) -> str:
        assert self.run_dir is not None
        return "\n".join(
            [
                "[databases]",
                f"* = host={HOST} port={self.upstream_port}",
                "[pgbouncer]",
                f"listen_addr = {HOST}",
                f"listen_port = {self.port}",
                # TCP only: no socket file in a shared directory.
                "unix_socket_dir =",
                "auth_type = trust",
                f"auth_file = {self.run_dir / 'userlist.txt'}",
                f"admin_users = {SUPERUSER}",
                "pool_mode = transaction",
                # Server connections per (database, user): a small pool, so clients really share them.
                f"default_pool_size = {self.pool_size}",
                "min_pool_size = 0",
                "reserve_pool_size = 0",
                f"max_client_conn = {self.max_client_conn}",
                "server_reset_query =",
                "",
            ]
        )

    def start(self) -> PgBouncer:
        if self._proc is not None:
            raise RuntimeError("PgBouncer already started")
        # pgbouncer refuses to run as root: as with PostgreSQL, it runs as the postgres account.
        self.run_dir = Path(tempfile.mkdtemp(prefix="mintline-pgbouncer-"))
        try:
            _chown_to_server_user(self.run_dir)
            (self.run_dir / "userlist.txt").write_text(f'"{SUPERUSER}" ""\n')
            config = self.run_dir / "pgbouncer.ini"
            config.write_text(self._config())
            self._proc = launch([_binary(), str(config)], self.log_path, env=_client_env(), **_server_user())
            wait_until_ready(
                self._proc,
                self._answers,
                port=self.port,
                log_path=self.log_path,
                timeout=self.start_timeout,
                waiting_for="answer SHOW VERSION",
            )
        except BaseException:
            self.stop()
            raise
        log.info("pgbouncer pid %d listening on %s:%d", self._proc.pid, HOST, self.port)
        return self

    def admin(self, command: str) -> list[list[str]]:
        """The rows (fields split on `|`) the admin console answers to `command`, e.g. SHOW POOLS."""
        out = subprocess.run(
            self._psql(command), capture_output=True, text=True, env=_client_env(), check=False, timeout=5
        )
        if out.returncode != 0:
            raise RuntimeError(f"pgbouncer admin {command!r} failed: {out.stderr.strip()}")
        return [line.split("|") for line in out.stdout.splitlines() if line]

    def _psql(self, command: str) -> list[str]:
        return [
            str(_bin_dir() / "psql"),
            "-X", "-q", "-tA",
            "-h", HOST, "-p", str(self.port), "-U", SUPERUSER, "-d", "pgbouncer",
            "-c", command,
        ]  # fmt: skip

    def _answers(self) -> bool:
        answer = subprocess.run(
            self._psql("SHOW VERSION"), capture_output=True, env=_client_env(), check=False, timeout=5
        )
        return answer.returncode == 0

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        # SIGTERM: PgBouncer 1.18's immediate shutdown (SIGINT would wait for clients' queries).
        stop_process(proc, signal.SIGTERM, timeout=10)
        if self.run_dir is not None:
            shutil.rmtree(self.run_dir, ignore_errors=True)
            self.run_dir = None
