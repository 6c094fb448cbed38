"""A private PostgreSQL cluster on a free loopback port, for tests and `make run`."""

from __future__ import annotations

import glob
import logging
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from devstack.ports import free_port
from devstack.process import Server, launch, stop_process, wait_until_ready

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
SUPERUSER = "postgres"
# Only plain identifiers, so names can go into SQL without quoting games.
_DB_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def _bin_dir() -> Path:
    env = os.environ.get("PG_BIN_DIR")
    if env:
        return Path(env)
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        bindir = Path(out.stdout.strip())
        # Debian's pg_config comes from libpq-dev and can name a version whose server isn't installed.
        if out.returncode == 0 and (bindir / "postgres").exists():
            return bindir
    candidates = [p for p in glob.glob("/usr/lib/postgresql/*/bin") if Path(p).parent.name.isdigit()]
    if not candidates:
        raise FileNotFoundError(
            "PostgreSQL binaries not found: install them (devstack/install.sh) or set PG_BIN_DIR"
        )
    return Path(max(candidates, key=lambda p: int(Path(p).parent.name)))


def _server_user() -> dict[str, Any]:
    """Popen arguments that drop root to the postgres account; initdb and postgres refuse to run as root."""
    if os.geteuid() != 0:
        return {}
    try:
        pw = pwd.getpwnam("postgres")
    except KeyError:
        raise RuntimeError(
            "running as root but there is no 'postgres' system user to run the server as"
        ) from None
    return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}


def _chown_to_server_user(path: Path) -> None:
    user = _server_user()
    if user:
        os.chown(path, user["user"], user["group"])


def _client_env() -> dict[str, str]:
    # Stray PGHOST/PGDATABASE/PGOPTIONS etc. from the caller's shell must not redirect our tools.
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


class PostgresServer(Server):
    def __init__(
        self,
        data_dir: Path | None = None,
        port: int | None = None,
        fast: bool = True,
        database: str = "mintline",
        start_timeout: float = 30.0,
    ) -> None:
        self.port = port or free_port()
        self.fast = fast
        self.database = database
        self.start_timeout = start_timeout
        self._given_data_dir = data_dir
        self.data_dir: Path | None = None
        self.run_dir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._bin = _bin_dir()

    @property
    def dsn(self) -> str:
        return self.dsn_for(self.database)

    def dsn_for(self, name: str) -> str:
        return f"postgresql://{SUPERUSER}@{HOST}:{self.port}/{name}"

    @property
    def socket_dir(self) -> Path:
        if self.run_dir is None:
            raise RuntimeError("PostgresServer not started")
        return self.run_dir

    @property
    def log_path(self) -> Path:
        return self.socket_dir / "postgres.log"

    def start(self) -> PostgresServer:
        if self._proc is not None:
            raise RuntimeError("PostgresServer already started")
        # The private run dir holds the unix socket, the log and (without data_dir) the cluster itself.
        self.run_dir = Path(tempfile.mkdtemp(prefix="mintline-pg-"))
        try:
            _chown_to_server_user(self.run_dir)
            self.data_dir = self._given_data_dir or self.run_dir / "data"
            self._ensure_cluster()
            self._proc = self._launch()
            self._wait_ready()
            self.create_database(self.database)
        except BaseException:
            self.stop()
            raise
        log.info(
            "postgres pid %d listening on %s:%d (data %s)", self._proc.pid, HOST, self.port, self.data_dir
        )
        return self

    def _ensure_cluster(self) -> None:
        assert self.data_dir is not None
        if (self.data_dir / "PG_VERSION").exists():
            log.info("reusing PostgreSQL cluster in %s", self.data_dir)
            return
        if self.data_dir.exists() and any(self.data_dir.iterdir()):
            raise RuntimeError(
                f"{self.data_dir} is neither empty nor a PostgreSQL data directory; refusing to initdb"
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)
        _chown_to_server_user(self.data_dir)
        cmd = [
            str(self._bin / "initdb"),
            "-D", str(self.data_dir),
            "-U", SUPERUSER,
            "-A", "trust",
            "-E", "UTF8",
            "--locale=C.UTF-8",
        ]  # fmt: skip
        if self.fast:
            # Skip the final fsync of the fresh cluster: a crash only loses a throwaway test cluster.
            cmd.append("--no-sync")
        out = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            check=False,
            cwd=self.run_dir,
            env=_client_env(),
            **_server_user(),
        )
        if out.returncode != 0:
            hint = (
                " (as root, the postgres user must be able to enter every parent directory)"
                if _server_user()
                else ""
            )
            raise RuntimeError(f"initdb failed with code {out.returncode}{hint}:\n{out.stdout}{out.stderr}")

    def _launch(self) -> subprocess.Popen[bytes]:
        assert self.data_dir is not None
        cmd = [
            str(self._bin / "postgres"),
            "-D", str(self.data_dir),
            "-p", str(self.port),
            "-k", str(self.socket_dir),
            "-c", f"listen_addresses={HOST}",
            "-c", "max_connections=200",
        ]  # fmt: skip
        if self.fast:
            cmd += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        return launch(cmd, self.log_path, cwd=self.run_dir, env=_client_env(), **_server_user())

    def _wait_ready(self) -> None:
        assert self._proc is not None
        # Probe through the socket in our private dir: a TCP probe could be answered by another server that
        # already owns the port, and postgres creates its unix socket only after binding TCP.
        cmd = [
            str(self._bin / "pg_isready"),
            "-q", "-h", str(self.socket_dir), "-p", str(self.port), "-U", SUPERUSER, "-t", "1",
        ]  # fmt: skip
        # pg_isready, unlike a bare TCP connect, also waits out "the database system is starting up".
        wait_until_ready(
            self._proc,
            lambda: subprocess.run(cmd, env=_client_env(), check=False).returncode == 0,
            port=self.port,
            log_path=self.log_path,
            timeout=self.start_timeout,
            waiting_for="accept connections",
        )

    def _psql(self, sql: str) -> str:
        cmd = [
            str(self._bin / "psql"),
            "-X", "-q", "-tA",
            "-v", "ON_ERROR_STOP=1",
            "-h", str(self.socket_dir), "-p", str(self.port), "-U", SUPERUSER, "-d", "postgres",
            "-c", sql,
        ]  # fmt: skip
        out = subprocess.run(cmd, capture_output=True, text=True, env=_client_env(), check=False)
        if out.returncode != 0:
            raise RuntimeError(f"psql failed on {sql!r}: {out.stderr.strip()}")
        return out.stdout.strip()

    def create_database(self, name: str) -> str:
        """Create database `name` unless it exists (a reused cluster keeps it) and return its DSN."""
        if self._proc is None:
            raise RuntimeError("PostgresServer not started")
        if not _DB_NAME.fullmatch(name):
            raise ValueError(f"database name {name!r} must match {_DB_NAME.pattern}")
        if not self._psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'"):
            self._psql(f"CREATE DATABASE {name}")
        return self.dsn_for(name)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        # SIGINT is what `pg_ctl stop -m fast` sends; we own the process, so signal and reap it directly.
        stop_process(proc, signal.SIGINT, timeout=30)
        if self.run_dir is not None:
            shutil.rmtree(self.run_dir, ignore_errors=True)
            self.run_dir = None
