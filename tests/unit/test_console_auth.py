"""Who may use the operator console (admin/console/auth.py), and which actions are refused as forged."""

import base64

import pytest
from pydantic import SecretStr, ValidationError

from admin.console.auth import BEARER_ACTOR, REALM, Operator, authenticate, cross_site
from admin.console.settings import ConsoleSettings

TOKEN = "a-console-token-of-32-characters"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_basic_credentials_name_the_operator_and_need_the_token() -> None:
    assert authenticate(basic("alice", TOKEN), TOKEN) == Operator("alice", "basic")
    assert authenticate(basic("ops.bob@example", TOKEN), TOKEN) == Operator("ops.bob@example", "basic")
    # A colon in the password is the password's.
    assert authenticate(basic("alice", "a:b-" + "x" * 20), "a:b-" + "x" * 20) == Operator("alice", "basic")
    assert authenticate("basic " + basic("alice", TOKEN).split()[1], TOKEN) is not None  # scheme case


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        basic("alice", TOKEN[:-1]),
        basic("alice", TOKEN + "x"),
        basic("alice", ""),
        basic("", TOKEN),  # no name to audit
        basic("bad name", TOKEN),
        basic("x" * 65, TOKEN),
        basic("-leading", TOKEN),
        "Basic " + base64.b64encode(TOKEN.encode()).decode(),  # no colon
        "Basic not-base64!",
        "Basic " + base64.b64encode(b"alice:\xff\xfe").decode(),  # not UTF-8
        f"Bearer {TOKEN[:-1]}",
        f"Bearer {TOKEN} extra",
        f"Token {TOKEN}",
        TOKEN,
    ],
)
def test_anything_else_is_refused(header: str | None) -> None:
    assert authenticate(header, TOKEN) is None


def test_a_bearer_token_is_audited_as_bearer() -> None:
    assert authenticate(f"Bearer {TOKEN}", TOKEN) == Operator(BEARER_ACTOR, "bearer")
    assert authenticate(f"bearer   {TOKEN}  ", TOKEN) == Operator(BEARER_ACTOR, "bearer")


def test_no_token_configured_lets_nobody_in() -> None:
    assert authenticate(basic("alice", ""), "") is None
    assert authenticate("Bearer ", "") is None


def test_the_challenge_asks_for_basic_credentials() -> None:
    assert REALM.startswith('Basic realm="mintline console"')


HOST = "127.0.0.1:4030"


@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS"])
def test_reads_are_never_refused_as_forged(method: str) -> None:
    assert cross_site(method, {"Sec-Fetch-Site": "cross-site"}, "http", HOST) is None


def test_an_action_must_be_json_from_this_origin() -> None:
    json_body = {"Content-Type": "application/json; charset=utf-8"}
    assert cross_site("POST", json_body, "http", HOST) is None
    assert (
        cross_site(
            "PUT", {**json_body, "Origin": f"http://{HOST}", "Sec-Fetch-Site": "same-origin"}, "http", HOST
        )
        is None
    )
    assert cross_site("POST", {**json_body, "Sec-Fetch-Site": "none"}, "http", HOST) is None  # typed by hand
    for headers in (
        {},
        {"Content-Type": "text/plain"},
        {"Content-Type": "application/x-www-form-urlencoded"},
    ):
        assert cross_site("POST", headers, "http", HOST) == (415, "an action's body must be application/json")
    for site in ("cross-site", "same-site"):
        assert cross_site("POST", {**json_body, "Sec-Fetch-Site": site}, "http", HOST) == (
            403,
            "an action may not come from another site",
        )
    for origin in ("http://evil.test", f"https://{HOST}", "null", "http://127.0.0.1:4031"):
        assert cross_site("DELETE", {**json_body, "Origin": origin}, "http", HOST) == (
            403,
            "an action may not come from another origin",
        )


def test_the_token_is_required_long_enough_and_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"REDIS_URL": "redis://r", "DATABASE_URL": "postgresql://d"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("CONSOLE_TOKEN", raising=False)
    with pytest.raises(ValidationError) as missing:
        ConsoleSettings()  # type: ignore[call-arg]
    assert missing.value.errors()[0]["loc"] == ("token",)
    monkeypatch.setenv("CONSOLE_TOKEN", "too-short")
    with pytest.raises(ValidationError):
        ConsoleSettings()  # type: ignore[call-arg]
    monkeypatch.setenv("CONSOLE_TOKEN", TOKEN)
    settings = ConsoleSettings()  # type: ignore[call-arg]
    assert settings.token == SecretStr(TOKEN)
    assert (settings.host, settings.port) == ("127.0.0.1", 4030)
    assert TOKEN not in repr(settings) and TOKEN not in str(settings.model_dump())
