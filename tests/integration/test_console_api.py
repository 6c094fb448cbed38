"""The operator console's JSON routes (admin/console/), in-process against real PostgreSQL, Redis and
anvil: credentials on every route, the views, the actions (the CLI's own functions, audited), bad
input, forged actions, the render preview from a gateway. The page in a browser is in
test_console_page.py."""

import json
import os
import subprocess
import sys
import uuid

import pytest

from devstack.ports import free_port
from tests.support.console import OPERATOR, REPO, Console, basic, running_console


@pytest.fixture
async def console(settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch):
    async with running_console(settings_env, monkeypatch) as running:
        yield running


def concrete(path: str) -> str:
    """A route's path with its parameters filled in."""
    return (
        path.replace("{id}", str(uuid.uuid4()) if "requests" in path or "renders" in path else "1")
        .replace("{key}", "batch_size")
        .replace("{filename}", "console.js")
    )


# --- credentials --------------------------------------------------------------------------------------


async def test_every_route_but_health_refuses_a_request_without_credentials(console: Console) -> None:
    routes = {(route.method, route.resource.canonical) for route in console.app.router.routes()}  # type: ignore[union-attr]
    assert ("GET", "/events/overview") in routes and ("GET", "/openapi.json") in routes
    wrong = [
        {},
        basic(OPERATOR, console.token[:-1] + "x"),
        basic("", console.token),
        basic("bad name", console.token),
        {"Authorization": f"Bearer {console.token}x"},
        {"Authorization": f"Token {console.token}"},
        {"Authorization": "Basic !!!"},
    ]
    for method, path in sorted(routes):
        if method == "HEAD":
            continue
        for headers in wrong:
            body = {} if method in ("POST", "PUT") else None
            async with console.client.request(method, concrete(path), headers=headers, json=body) as response:
                text = await response.text()
                if path == "/health":
                    assert (response.status, json.loads(text)) == (200, {"status": "ok"})
                    continue
                assert response.status == 401, (method, path, headers, text)
                assert response.headers["WWW-Authenticate"].startswith('Basic realm="mintline console"')
                assert json.loads(text) == {
                    "success": False,
                    "error": "unauthorized",
                    "message": "credentials required: HTTP basic (your name, the console token) or a bearer token",
                }
                assert console.token not in text
    # An unknown path says nothing either.
    async with console.client.get("/api/nothing-here") as response:
        assert response.status == 401
    # Nothing was done.
    assert await console.pool.fetchval("SELECT count(*) FROM admin_audit") == 0


async def test_basic_and_bearer_credentials_both_work(console: Console) -> None:
    status, body = await console.get("/api/overview")
    assert status == 200 and body["queue"]["queueDepth"] == 0
    status, body = await console.get("/api/overview", headers={"Authorization": f"Bearer {console.token}"})
    assert status == 200
    async with console.client.get("/", headers=console.auth) as response:
        assert response.status == 200 and response.content_type == "text/html"
        page = await response.text()
        assert "Content-Security-Policy" in response.headers
    assert "http://" not in page and "https://" not in page
    for asset in ("console.js", "console.css", "status.css"):
        async with console.client.get(f"/static/{asset}", headers=console.auth) as response:
            assert response.status == 200, asset
    status, body = await console.get("/static/../settings.py")
    assert status == 404


def test_the_console_does_not_start_without_a_token(settings_env: dict[str, str]) -> None:
    base = {k: v for k, v in os.environ.items() if not k.startswith("CONSOLE_")}
    env = {**base, **settings_env, "CONSOLE_PORT": str(free_port())}
    missing = subprocess.run(
        [sys.executable, "-m", "admin.console"], cwd=REPO, env=env, capture_output=True, text=True, timeout=30
    )
    assert missing.returncode == 2
    assert "CONSOLE_TOKEN: missing: the console does not run without a token" in missing.stderr
    short = subprocess.run(
        [sys.executable, "-m", "admin.console"],
        cwd=REPO,
        env={**env, "CONSOLE_TOKEN": "short-s3cret"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert short.returncode == 2
    assert "CONSOLE_TOKEN: must be at least 16 characters" in short.stderr
    assert "short-s3cret" not in short.stderr + short.stdout
