"""A throwaway Prometheus on a free loopback port, scraping the given targets, for tests."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from devstack.ports import free_port
from devstack.process import Server, launch, stop_process, wait_until_ready

log = logging.getLogger(__name__)

HOST = "127.0.0.1"


def _binary() -> str:
    path = os.environ.get("PROMETHEUS_BIN") or shutil.which("prometheus")
    if not path:
        raise FileNotFoundError(
            "prometheus not found: run `make install` (devstack/install.sh) or set PROMETHEUS_BIN"
        )
    return path


class PrometheusServer(Server):
    """Prometheus scraping `targets` (job name -> "host:port", /metrics) every `scrape_interval`,
    loading `rule_files` (alert and recording rules, evaluated as often as it scrapes)."""

    def __init__(
        self,
        targets: Mapping[str, str],
        *,
        rule_files: Sequence[Path] = (),
        scrape_interval: str = "1s",
        port: int | None = None,
        start_timeout: float = 30.0,
    ) -> None:
        self.targets = dict(targets)
        self.rule_files = [Path(path).resolve() for path in rule_files]
        self.scrape_interval = scrape_interval
        self.port = port or free_port()
        self.start_timeout = start_timeout
        self.data_dir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def log_path(self) -> Path:
        if self.data_dir is None:
            raise RuntimeError("PrometheusServer not started")
        return self.data_dir / "prometheus.log"

    def config(self) -> dict[str, Any]:
        return {
            "global": {"scrape_interval": self.scrape_interval, "evaluation_interval": self.scrape_interval},
            "rule_files": [str(path) for path in self.rule_files],
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": [target]}]}
                for job, target in self.targets.items()
            ],
        }

    def start(self) -> PrometheusServer:
        if self._proc is not None:
            raise RuntimeError("PrometheusServer already started")
        self.data_dir = Path(tempfile.mkdtemp(prefix="mintline-prometheus-"))
        config_file = self.data_dir / "prometheus.yml"
        # JSON is YAML: no YAML writer needed.
        config_file.write_text(json.dumps(self.config(), indent=2))
        cmd = [
            _binary(),
            f"--config.file={config_file}",
            f"--storage.tsdb.path={self.data_dir / 'data'}",
            f"--web.listen-address={HOST}:{self.port}",
        ]
        self._proc = launch(cmd, self.log_path)
        try:
            wait_until_ready(
                self._proc,
                self._ready,
                port=self.port,
                log_path=self.log_path,
                timeout=self.start_timeout,
                waiting_for="answer /-/ready",
            )
        except BaseException:
            self.stop()
            raise
        log.info("prometheus pid %d listening on %s", self._proc.pid, self.url)
        return self

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def api(self, path: str, **params: str) -> dict[str, Any]:
        """GET /api/v1/<path>; returns the answer's `data`, raising on an error status (a bad query)."""
        query = urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=10) as response:
                body = json.load(response)
        except urllib.error.HTTPError as exc:
            body = json.load(exc)
        if body.get("status") != "success":
            raise ValueError(
                f"prometheus /api/v1/{path} {params}: {body.get('errorType')}: {body.get('error')}"
            )
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result: [{"metric": {labels}, "value": [time, "text"]}, ...]."""
        data = self.api("query", query=expr)
        if data["resultType"] != "vector":
            raise ValueError(f"{expr!r} is a {data['resultType']}, not an instant vector")
        return data["result"]

    def target_health(self) -> dict[str, str]:
        """job -> "up" / "down" / "unknown" for every active target."""
        return {t["labels"]["job"]: t["health"] for t in self.api("targets", state="active")["activeTargets"]}

    def wait_targets_up(self, timeout: float = 30.0) -> None:
        """Until every target was scraped successfully (the first scrapes start a few seconds after
        Prometheus does)."""
        deadline = time.monotonic() + timeout
        while (health := self.target_health()) != dict.fromkeys(self.targets, "up"):
            if time.monotonic() > deadline:
                raise TimeoutError(f"prometheus targets not all up within {timeout}s: {health}")
            time.sleep(0.2)

    def wait_scrapes(self, count: int = 3, timeout: float = 60.0) -> None:
        """Until every target has been scraped `count` more times: what the targets exported before
        this call is then in the TSDB, as a second sample too (rate() needs two)."""
        seen: dict[str, set[str]] = {job: set() for job in self.targets}
        first = self._last_scrapes()
        deadline = time.monotonic() + timeout
        while any(len(scrapes) < count for scrapes in seen.values()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"prometheus did not scrape every target {count} times in {timeout}s")
            time.sleep(0.2)
            for job, last in self._last_scrapes().items():
                if last != first.get(job):
                    seen[job].add(last)

    def _last_scrapes(self) -> dict[str, str]:
        targets = self.api("targets", state="active")["activeTargets"]
        return {t["labels"]["job"]: t["lastScrape"] for t in targets}

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        stop_process(proc, signal.SIGTERM, timeout=10)
        if self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self.data_dir = None
