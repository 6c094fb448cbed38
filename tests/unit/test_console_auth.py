"""Who may use the operator console (admin/console/auth.py): each operator's own token or the shared
one, and which actions are refused as forged. Parsing the credentials: test_console_credentials.py."""

import base64

import pytest

from admin.console.auth import REALM, Operator, authenticate, cross_site
from admin.console.credentials import BEARER_ACTOR, Credentials, digest

TOKEN = "a-console-token-of-32-characters"
SHARED = Credentials(shared=digest(TOKEN))
ALICE, BOB = "alice-token-" + "a" * 31, "bob-token-" + "b" * 33
OPERATORS = Credentials(operators={"alice": digest(ALICE), "bob": digest(BOB)})


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# --- per operator -------------------------------------------------------------------------------------


def test_an_operator_is_named_by_the_token_not_by_the_client() -> None:
    assert authenticate(basic("alice", ALICE), OPERATORS) == Operator("alice", "basic")
    assert authenticate(basic("bob", BOB), OPERATORS) == Operator("bob", "basic")
    assert authenticate(f"Bearer {ALICE}", OPERATORS) == Operator("alice", "bearer")
    assert authenticate(f"bearer   {BOB}  ", OPERATORS) == Operator("bob", "bearer")


@pytest.mark.parametrize(
    "header",
    [
        basic("alice", BOB),  # another operator's token
        basic("bob", ALICE),
        basic("carol", ALICE),  # nobody's name
        basic("Alice", ALICE),  # names are exact
        basic("alice ", ALICE),
        basic("", ALICE),
        basic("alice", ""),
        basic("alice", ALICE + "x"),
        basic("alice", TOKEN),
        "Basic " + base64.b64encode(ALICE.encode()).decode(),  # no name at all
        f"Bearer {ALICE[:-1]}",
        f"Bearer {ALICE} {BOB}",
        "Bearer ",
        f"Bearer {digest(ALICE).hex()}",  # the hash is not the token
        ALICE,
    ],
)
def test_a_token_opens_nothing_under_another_name(header: str) -> None:
    assert authenticate(header, OPERATORS) is None


# --- the shared token ---------------------------------------------------------------------------------


def test_basic_credentials_with_the_shared_token_name_the_operator_as_given() -> None:
    assert authenticate(basic("alice", TOKEN), SHARED) == Operator("alice", "basic")
    assert authenticate(basic("ops.bob@example", TOKEN), SHARED) == Operator("ops.bob@example", "basic")
    # A colon in the password is the password's.
    colon = "a:b-" + "x" * 20
    assert authenticate(basic("alice", colon), Credentials(shared=digest(colon))) == Operator(
        "alice", "basic"
    )
    assert authenticate("basic " + basic("alice", TOKEN).split()[1], SHARED) is not None  # scheme case


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
    assert authenticate(header, SHARED) is None


def test_a_bearer_shared_token_is_audited_as_bearer() -> None:
    assert authenticate(f"Bearer {TOKEN}", SHARED) == Operator(BEARER_ACTOR, "bearer")
    assert authenticate(f"bearer   {TOKEN}  ", SHARED) == Operator(BEARER_ACTOR, "bearer")


def test_no_credentials_configured_let_nobody_in() -> None:
    nobody = Credentials()
    for header in (basic("alice", ""), "Bearer ", basic("alice", TOKEN), f"Bearer {TOKEN}"):
        assert authenticate(header, nobody) is None


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
