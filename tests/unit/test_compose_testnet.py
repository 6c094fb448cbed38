"""deploy/compose.testnet.yaml (the README's Base Sepolia runbook) agrees with the code: no local chain
or dev-stack code in it, every secret required and handed only to the service that needs it, every
variable it sets one the service reads, and every default it fills in the code's own default (or a
deliberate choice for a public chain, listed here)."""

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from services.batcher.settings import BatcherSettings
from services.confirmer.settings import ConfirmerSettings
from services.intake.settings import IntakeSettings
from services.renderer.settings import RendererSettings
from shared.settings import Settings

REPO = Path(__file__).resolve().parents[2]
FILE = REPO / "deploy" / "compose.testnet.yaml"
SERVICES: dict[str, type[Settings]] = {
    "intake": IntakeSettings,
    "renderer": RendererSettings,
    "batcher": BatcherSettings,
    "confirmer": ConfirmerSettings,
}
SECRETS = {
    "POSTGRES_PASSWORD": "pg-password",
    "RPC_URL": "https://rpc.example/v2/provider-key",
    "WEBHOOK_SECRET": "webhook-secret-0123456789",
    "BATCHER_PRIVATE_KEY": "0x" + "22" * 32,
    "GRAFANA_ADMIN_PASSWORD": "grafana-password",
}
# Defaults chosen for a public chain rather than the code's: a custom payment's transfer is trusted
# after 3 blocks, not 1; the gateway URL is what a browser on the host reaches; no Pinata JWT is set.
DELIBERATE = {"INTAKE_CUSTOM_PAYMENT_CONFIRMATIONS", "RENDERER_GATEWAY_URL", "RENDERER_PINATA_JWT"}


def resolve(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("docker-compose")
    assert binary, "docker-compose not found: run `make install` (devstack/install.sh installs it)"
    clean = {k: v for k, v in os.environ.items() if k not in SECRETS}
    return subprocess.run(
        [binary, "-f", str(FILE), "config"],
        cwd=REPO,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    result = resolve(SECRETS)
    assert result.returncode == 0, result.stderr
    services: dict[str, Any] = yaml.safe_load(result.stdout)["services"]
    return services


def env_names(settings: type[BaseSettings]) -> set[str]:
    """Every environment variable `settings` reads."""
    prefix = settings.model_config.get("env_prefix", "")
    names = set()
    for name, field in settings.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names.update(str(choice) for choice in alias.choices)
        elif isinstance(alias, str):
            names.add(alias)
        else:
            names.add(f"{prefix}{name}".upper())
    return names


def test_no_local_chain_and_every_service_runs_its_package(compose: dict[str, Any]) -> None:
    assert set(compose) == {"redis", "postgres", "migrate", *SERVICES, "prometheus", "grafana"}
    assert compose["migrate"]["command"] == ["python", "-m", "shared.db"]
    for name in SERVICES:
        service = compose[name]
        assert service["command"] == ["python", "-m", f"services.{name}"]
        assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        environment = service["environment"]
        assert environment["RPC_URL"] == SECRETS["RPC_URL"]
        mount = f"{REPO}/.run/base-sepolia/deployment.json:{environment['DEPLOYMENT_FILE']}:ro"
        assert mount in service["volumes"]
    assert "devstack" not in FILE.read_text() and "anvil" not in FILE.read_text()


def test_secrets_are_required_and_go_only_where_they_are_used(compose: dict[str, Any]) -> None:
    assert compose["batcher"]["environment"]["BATCHER_PRIVATE_KEY"] == SECRETS["BATCHER_PRIVATE_KEY"]
    assert compose["intake"]["environment"]["WEBHOOK_SECRET"] == SECRETS["WEBHOOK_SECRET"]
    for name, service in compose.items():
        values = set((service.get("environment") or {}).values())
        if name != "batcher":
            assert SECRETS["BATCHER_PRIVATE_KEY"] not in values, name
        if name != "intake":
            assert SECRETS["WEBHOOK_SECRET"] not in values, name
    for missing in SECRETS:
        result = resolve({k: v for k, v in SECRETS.items() if k != missing})
        assert result.returncode != 0 and f"set {missing}" in result.stderr, missing


@pytest.mark.parametrize("name", SERVICES)
def test_every_variable_set_is_one_the_service_reads(compose: dict[str, Any], name: str) -> None:
    unread = set(compose[name]["environment"]) - env_names(SERVICES[name])
    assert unread == set()


def test_filled_in_defaults_are_the_codes(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = dict(re.findall(r"^\s+(\w+): \$\{\1:-([^}]*)\}$", FILE.read_text(), re.MULTILINE))
    assert {"RPC_MAX_LOG_RANGE", "BATCHER_MAX_TX_GAS", "CONFIRMER_CONFIRMATIONS"} <= set(defaults)
    for key in list(os.environ):
        if key.startswith(("INTAKE_", "BATCHER_", "CONFIRMER_", "RENDERER_", "RPC_")):
            monkeypatch.delenv(key)
    for key, value in {"REDIS_URL": "redis://r", "DATABASE_URL": "postgresql://d", **SECRETS}.items():
        monkeypatch.setenv(key, value)
    for variable, default in defaults.items():
        if variable in DELIBERATE:
            continue
        [settings] = [s for s in (*SERVICES.values(), Settings) if variable in env_names(s)][:1]
        unset = settings().model_dump()
        monkeypatch.setenv(variable, default)
        assert settings().model_dump() == unset, f"{variable}: {default!r} is not the code's default"
        monkeypatch.delenv(variable)
