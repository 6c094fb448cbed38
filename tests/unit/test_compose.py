"""compose.yaml as docker-compose resolves it agrees with the code and with deploy/: each service runs
its package on the port its settings default to, Prometheus scrapes exactly those ports, every
long-running container has a health check, and Grafana finds its provisioned dashboards."""

import importlib.util
import os
import re
import shutil
import subprocess
import tomllib
from configparser import ConfigParser
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from pydantic_settings import BaseSettings

from admin.console.credentials import Credentials, CredentialsError, mint
from admin.console.settings import ConsoleSettings
from devstack.anvil import MINTER_KEYS
from services.batcher.settings import BatcherSettings
from services.confirmer.settings import ConfirmerSettings
from services.intake.settings import IntakeSettings
from services.renderer.settings import RendererSettings

REPO = Path(__file__).resolve().parents[2]
# service -> (its settings, the port field, the host field)
SERVICES: dict[str, tuple[type[BaseSettings], str, str]] = {
    "intake": (IntakeSettings, "port", "host"),
    "renderer": (RendererSettings, "metrics_port", "metrics_host"),
    "batcher": (BatcherSettings, "metrics_port", "metrics_host"),
    "confirmer": (ConfirmerSettings, "metrics_port", "metrics_host"),
}
ONE_SHOT = {"deployer"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    result = resolve({"CONSOLE_TOKEN": CONSOLE_TOKEN})
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)["services"]


# A stand-in for the operator's own token, which the console requires (or per-operator entries).
CONSOLE_TOKEN = "test-console-token-0123456789"
CONSOLE_CREDENTIALS = ("CONSOLE_TOKEN", "CONSOLE_OPERATORS", "CONSOLE_OPERATORS_FILE")


def resolve(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("docker-compose")
    assert binary, "docker-compose not found: run `make install` (devstack/install.sh installs it)"
    # Without the secret variables, so the resolved file shows the local defaults, not a secret.
    clean = {k: v for k, v in os.environ.items() if k not in ("GRAFANA_ADMIN_PASSWORD", *CONSOLE_CREDENTIALS)}
    return subprocess.run(
        [binary, "-f", "compose.yaml", "config"],
        cwd=REPO,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def default_port(name: str) -> int:
    settings, port_field, _ = SERVICES[name]
    return settings.model_fields[port_field].default


def env_name(name: str, field: str) -> str:
    settings, _, _ = SERVICES[name]
    return f"{settings.model_config.get('env_prefix', '')}{field}".upper()


@pytest.mark.parametrize("name", SERVICES)
def test_each_service_runs_its_package_on_its_default_port(compose: dict[str, Any], name: str) -> None:
    service = compose[name]
    _, port_field, host_field = SERVICES[name]
    port = default_port(name)

    assert service["command"] == ["python", "-m", f"services.{name}"]
    assert importlib.util.find_spec(f"services.{name}.__main__") is not None
    environment = service.get("environment", {})
    # Any port setting in compose is the default; Prometheus and the health check rely on it.
    assert int(environment.get(env_name(name, port_field), port)) == port
    # Listening on loopback only, Prometheus in its own container could not scrape it.
    assert environment.get(env_name(name, host_field)) == "0.0.0.0"
    for published in service.get("ports", []):
        assert published["target"] == port


@pytest.mark.parametrize("name", SERVICES)
def test_each_service_waits_for_what_it_needs(compose: dict[str, Any], name: str) -> None:
    depends_on = compose[name]["depends_on"]
    assert depends_on["deployer"]["condition"] == "service_completed_successfully"
    for server in ("redis", "postgres", "anvil"):
        assert depends_on[server]["condition"] == "service_healthy"


def test_every_long_running_service_has_a_health_check(compose: dict[str, Any]) -> None:
    assert {"prometheus", "grafana"} <= set(compose)
    for name, service in compose.items():
        if name in ONE_SHOT:
            continue
        assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"
    for name in SERVICES:
        check = " ".join(compose[name]["healthcheck"]["test"])
        assert f"http://127.0.0.1:{default_port(name)}/health" in check, name


def test_the_batcher_signs_with_the_local_minters_and_only_it_holds_keys(compose: dict[str, Any]) -> None:
    """Two signer wallets, both made minters by the deployer (devstack/deploy.py): public dev keys."""
    assert compose["batcher"]["environment"]["BATCHER_PRIVATE_KEYS"] == ",".join(MINTER_KEYS)
    assert "devstack.deploy" in " ".join(compose["deployer"]["command"])
    for name, service in compose.items():
        environment = service.get("environment") or {}
        if name != "batcher":
            assert not {"BATCHER_PRIVATE_KEY", "BATCHER_PRIVATE_KEYS"} & set(environment), name
            assert not any(key.removeprefix("0x") in str(environment) for key in MINTER_KEYS), name


def test_prometheus_scrapes_every_service_on_its_port_and_loads_the_alerts(compose: dict[str, Any]) -> None:
    config = yaml.safe_load((REPO / "deploy/prometheus/prometheus.yml").read_text())
    # Through DNS: every replica of a scaled service (compose answers each one for its name).
    scraped = {
        job["job_name"]: f"{name}:{found['port']}"
        for job in config["scrape_configs"]
        for found in job["dns_sd_configs"]
        for name in found["names"]
    }
    assert scraped == {name: f"{name}:{default_port(name)}" for name in SERVICES}
    assert config["rule_files"] == ["alerts.yml"]
    # The config's directory is /etc/prometheus in the container, so alerts.yml resolves beside it.
    assert mounts(compose["prometheus"])["/etc/prometheus"] == REPO / "deploy/prometheus"
    assert (REPO / "deploy/prometheus/alerts.yml").is_file()


def test_grafana_is_provisioned_with_prometheus_and_the_dashboards(compose: dict[str, Any]) -> None:
    grafana = mounts(compose["grafana"])
    assert grafana["/etc/grafana/provisioning"] == REPO / "deploy/grafana/provisioning"
    provisioning = REPO / "deploy/grafana/provisioning"
    datasources = yaml.safe_load((provisioning / "datasources/prometheus.yml").read_text())["datasources"]
    assert [(d["type"], d["uid"], d["url"]) for d in datasources] == [
        ("prometheus", "prometheus", "http://prometheus:9090")
    ]
    providers = yaml.safe_load((provisioning / "dashboards/mintline.yml").read_text())["providers"]
    dashboards_path = providers[0]["options"]["path"]
    assert grafana[dashboards_path] == REPO / "deploy/grafana/dashboards"
    home = compose["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (REPO / "deploy/grafana/dashboards" / Path(home).relative_to(dashboards_path)).is_file()
    assert "prometheus" in compose["grafana"]["depends_on"]


def mounts(service: dict[str, Any]) -> dict[str, Path]:
    """Container path -> host path of a service's bind mounts."""
    found = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("/"):
            found[target] = Path(source)
    return found


def test_the_deployer_runs_modules_that_exist(compose: dict[str, Any]) -> None:
    command = " ".join(compose["deployer"]["command"])
    modules = re.findall(r"python -m ([\w.]+)", command)
    assert modules == ["shared.db", "devstack.deploy"]
    for module in modules:
        assert importlib.util.find_spec(module) is not None, module


def test_the_image_holds_every_package_the_project_installs() -> None:
    include = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    packages = {pattern.removesuffix("*") for pattern in include["include"]}
    assert {"shared", "services", "admin"} <= packages
    copied = {
        line.split()[1]
        for line in (REPO / "deploy/Dockerfile").read_text().splitlines()
        if line.startswith("COPY ")
    }
    assert packages <= copied


def test_the_services_reach_postgresql_through_pgbouncer_and_the_wallet_lock_directly(
    compose: dict[str, Any],
) -> None:
    bouncer = ConfigParser()
    bouncer.read_string((REPO / "deploy/pgbouncer/pgbouncer.ini").read_text())
    assert bouncer["pgbouncer"]["pool_mode"] == "transaction"
    assert Path(compose["pgbouncer"]["build"]["context"]) == REPO / "deploy/pgbouncer"
    upstream = dict(part.split("=") for part in bouncer["databases"]["mintline"].split())
    for name in SERVICES:
        environment = compose[name]["environment"]
        pooled = urlsplit(environment["DATABASE_URL"])
        assert (pooled.hostname, pooled.port, pooled.path) == (
            "pgbouncer",
            int(bouncer["pgbouncer"]["listen_port"]),
            "/mintline",
        )
        assert environment["DATABASE_POOLER"] == "pgbouncer"
        assert compose[name]["depends_on"]["pgbouncer"]["condition"] == "service_healthy"
    lock = urlsplit(compose["batcher"]["environment"]["BATCHER_LOCK_DATABASE_URL"])
    assert (lock.hostname, str(lock.port)) == (upstream["host"], upstream["port"])
    # The deployer migrates on a direct connection too (migrations would work through PgBouncer).
    assert urlsplit(compose["deployer"]["environment"]["DATABASE_URL"]).hostname == "postgres"


def test_the_console_runs_its_package_with_credentials_from_the_environment(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    console = compose["console"]
    port = ConsoleSettings.model_fields["port"].default
    assert console["command"] == ["python", "-m", "admin.console"]
    assert importlib.util.find_spec("admin.console.__main__") is not None
    environment = console["environment"]
    assert (environment["CONSOLE_HOST"], int(environment["CONSOLE_PORT"])) == ("0.0.0.0", port)
    # From the environment, nothing in the file.
    assert (environment["CONSOLE_TOKEN"], environment["CONSOLE_OPERATORS"]) == (CONSOLE_TOKEN, "")
    # Published on the host's loopback only (docker-compose 1.x keeps that form as text).
    (published,) = console["ports"]
    assert str(published).removesuffix("/tcp") == f"127.0.0.1:{port}:{port}"
    assert f"http://127.0.0.1:{port}/health" in " ".join(console["healthcheck"]["test"])
    assert console["depends_on"]["deployer"]["condition"] == "service_completed_successfully"

    def credentials(env: dict[str, str]) -> Credentials:
        """The credentials the console would start with in the environment compose resolves."""
        result = resolve(env)
        assert result.returncode == 0, result.stderr
        resolved = yaml.safe_load(result.stdout)["services"]["console"]["environment"]
        for name, value in resolved.items():
            monkeypatch.setenv(name, str(value))
        return ConsoleSettings().credentials()  # type: ignore[call-arg]

    # Per-operator entries, one a line as `$(cat operators)` gives them, reach the console.
    alice, alice_entry = mint("alice")
    bob, bob_entry = mint("bob")
    operators = credentials({"CONSOLE_OPERATORS": f"# operators\n{alice_entry}\n{bob_entry}\n"})
    assert (operators.bearer(alice), operators.bearer(bob), operators.shared) == ("alice", "bob", None)
    assert credentials({"CONSOLE_TOKEN": CONSOLE_TOKEN}).shared is not None
    # Without either, the resolved environment is no console's: it refuses to start.
    with pytest.raises(CredentialsError, match="no credentials"):
        credentials({})
