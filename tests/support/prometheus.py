"""Asking a test Prometheus (devstack.prometheus_server) about the system: checks that settle, and the
queries of the provisioned Grafana dashboards."""

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from devstack.prometheus_server import PrometheusServer

DASHBOARDS = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "dashboards"
# What the dashboards' Grafana variables become in a plain query: windows longer than a test runs,
# so every rate covers all the work done while Prometheus watched.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "15s", "$__range": "5m"}

# A PromQL expression and what its instant values must satisfy.
Check = tuple[str, Callable[[list[float]], bool]]


def sample_values(prometheus: PrometheusServer, expr: str) -> list[float]:
    return [float(sample["value"][1]) for sample in prometheus.query(expr)]


def settle(
    prometheus: PrometheusServer,
    checks: list[Check],
    context: Callable[[], str] = str,
    timeout: float = 30,
) -> None:
    """Query until every check holds (scrapes and the services' gauge loops run every second or so),
    then assert, naming each check that never held, what it last saw, and `context()` (log tails)."""
    deadline = time.monotonic() + timeout
    while True:
        seen = {expr: sample_values(prometheus, expr) for expr, _ in checks}
        wrong = {expr: seen[expr] for expr, holds in checks if not (seen[expr] and holds(seen[expr]))}
        if not wrong or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert not wrong, f"{json.dumps(wrong, indent=2)}\n{context()}"


def await_series(prometheus: PrometheusServer, expr: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not prometheus.query(expr):
        assert time.monotonic() < deadline, f"prometheus never saw {expr}"
        time.sleep(0.2)


def equals(expected: float) -> Callable[[list[float]], bool]:
    return lambda values: values == [expected]


def at_least(low: float) -> Callable[[list[float]], bool]:
    return lambda values: all(value >= low for value in values)


def dashboard_queries() -> Iterator[tuple[str, str, str]]:
    """(dashboard file, panel title, expr) for every target of every panel, rows' panels included,
    with the Grafana variables replaced."""
    for path in sorted(DASHBOARDS.glob("*.json")):
        panels = list(json.loads(path.read_text())["panels"])
        while panels:
            panel = panels.pop(0)
            panels.extend(panel.get("panels", []))
            for target in panel.get("targets", []):
                expr = target["expr"]
                for variable, value in GRAFANA_VARIABLES.items():
                    expr = expr.replace(variable, value)
                yield path.name, panel["title"], expr
