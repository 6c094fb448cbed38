"""The console's credentials (admin/console/credentials.py, settings.py) and `mintline console-token`:
entries parsed or refused with their line and never their text, one kind of credentials at a time,
a minted token that lets in its operator alone."""

import hashlib
import re
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from admin.cli import main
from admin.console.auth import Operator, authenticate
from admin.console.credentials import Credentials, CredentialsError, digest, load, mint, parse
from admin.console.settings import ConsoleSettings

ALICE, BOB = "alice-token-" + "a" * 31, "bob-token-" + "b" * 33


def entry(name: str, token: str) -> str:
    return f"{name}:sha256:{hashlib.sha256(token.encode()).hexdigest()}"


def from_text(text: str) -> Credentials:
    return load(None, text, None)


def refusal(text: str) -> str:
    with pytest.raises(CredentialsError) as refused:
        from_text(text)
    return str(refused.value)


def test_entries_one_a_line_with_comments_or_comma_separated() -> None:
    bob = f"BOB:sha256:{digest(BOB).hex().upper()}"
    text = f"# the console's operators\n\n{entry('alice', ALICE)}  # ops lead\n{bob}\n"
    expected = {"alice": digest(ALICE), "BOB": digest(BOB)}  # hex in any case; the name as written
    assert from_text(text).operators == expected
    assert from_text(f" {entry('alice', ALICE)} , {entry('bob', BOB)},").operators == {
        "alice": digest(ALICE),
        "bob": digest(BOB),
    }


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (f"alice:{ALICE}", "not name:sha256:<64 hex digits>"),  # a plain token
        (f"alice:{ALICE}:more", "the hash must be sha256"),
        (f"{ALICE}", "not name:sha256:<64 hex digits>"),
        ("alice:sha256:", "not name:sha256:<64 hex digits>"),
        ("alice:", "not name:sha256:<64 hex digits>"),
        (f"alice:md5:{hashlib.md5(ALICE.encode()).hexdigest()}", "the hash must be sha256"),
        (f"alice:sha256:{hashlib.sha256(ALICE.encode()).hexdigest()[:-1]}", "not 64 hex digits"),
        (f"alice:sha256:{'z' * 64}", "not 64 hex digits"),
        (entry("bad name", ALICE), "the name is not 1-64 letters"),
        (entry("", ALICE), "the name is not 1-64 letters"),
        (entry("x" * 65, ALICE), "the name is not 1-64 letters"),
        (entry("alice", ""), "alice's token is empty"),
    ],
)
def test_a_bad_entry_is_refused_by_its_line_and_never_quoted(text: str, problem: str) -> None:
    message = refusal(f"# first line\n{text}")
    assert message.startswith("CONSOLE_OPERATORS line 2: ") and problem in message, message
    assert ALICE not in message
    assert not [part for part in text.split(":")[1:] if len(part) > 6 and part in message], message


def test_names_and_tokens_are_each_one_operator_s() -> None:
    assert refusal(f"{entry('alice', ALICE)}\n{entry('Alice', BOB)}") == (
        "CONSOLE_OPERATORS line 2: operator Alice is listed twice"
    )
    assert refusal(f"{entry('alice', ALICE)}\n{entry('bob', ALICE)}") == (
        "CONSOLE_OPERATORS line 2: bob has the same token as alice: each needs its own"
    )
    # Every problem at once, each by its line.
    message = refusal(f"alice:{ALICE}\n{entry('bob', BOB)}\nbob:x:y")
    assert message.count("CONSOLE_OPERATORS line") == 2 and "line 1" in message and "line 3" in message


def test_the_operators_file(tmp_path: Path) -> None:
    path = tmp_path / "operators"
    path.write_text(f"{entry('alice', ALICE)}\n")
    assert load(None, None, path).operators == {"alice": digest(ALICE)}
    # The file and the inline entries together, one name each.
    assert set(load(None, entry("bob", BOB), path).operators) == {"alice", "bob"}
    with pytest.raises(CredentialsError, match="alice is listed twice"):
        load(None, entry("alice", BOB), path)
    path.write_text(f"# nobody yet\n\nbob:{BOB}\n")
    with pytest.raises(CredentialsError) as bad:
        load(None, None, path)
    assert str(bad.value).startswith(f"CONSOLE_OPERATORS_FILE {path} line 3: not name:sha256")
    assert BOB not in str(bad.value)
    path.write_text("# nobody yet\n")
    with pytest.raises(CredentialsError, match="list no operator"):
        load(None, None, path)
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(CredentialsError, match="is not UTF-8 text"):
        load(None, None, path)
    with pytest.raises(
        CredentialsError, match=re.escape(f"cannot read {tmp_path / 'missing'}: No such file")
    ):
        load(None, None, tmp_path / "missing")


def test_one_kind_of_credentials_and_at_least_one() -> None:
    with pytest.raises(CredentialsError, match="no credentials: set CONSOLE_OPERATORS_FILE"):
        load(None, None, None)
    with pytest.raises(CredentialsError, match="are both set: set one"):
        load(ALICE, entry("bob", BOB), None)
    shared = load(ALICE, None, None)
    assert (shared.shared, shared.operators) == (digest(ALICE), {})
    assert "alice" not in shared.describe() and "shared CONSOLE_TOKEN" in shared.describe()
    assert from_text(f"{entry('bob', BOB)},{entry('alice', ALICE)}").describe() == "2 operator(s): alice, bob"


def test_a_minted_token_lets_in_its_operator_only() -> None:
    token, line = mint("alice")
    assert len(token) >= 43 and token not in line  # 256 random bits; the line holds only its hash
    credentials = Credentials(operators=parse([("here", line), ("there", entry("bob", BOB))]))
    assert authenticate(f"Bearer {token}", credentials) == Operator("alice", "bearer")
    assert credentials.basic("alice", token) == "alice" and credentials.basic("bob", token) is None
    other, _ = mint("alice")
    assert other != token and credentials.bearer(other) is None
    with pytest.raises(CredentialsError, match="an operator's name is 1-64"):
        mint("bad name")


def test_mintline_console_token_prints_the_entry_on_stdout_and_the_token_on_stderr(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["console-token", "alice"]) == 0
    out, err = capsys.readouterr()
    (line,) = out.splitlines()
    token = err.splitlines()[1]
    assert token not in out and from_text(line).bearer(token) == "alice"
    assert "shown this once" in err and "CONSOLE_OPERATORS_FILE" in err
    assert main(["console-token", "no such name"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "mintline: error: an operator's name is 1-64" in err


CONNECTIONS = {"REDIS_URL": "redis://r", "DATABASE_URL": "postgresql://d"}


def test_settings_read_either_kind_and_never_show_a_token(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name, value in CONNECTIONS.items():
        monkeypatch.setenv(name, value)
    for name in ("CONSOLE_TOKEN", "CONSOLE_OPERATORS", "CONSOLE_OPERATORS_FILE"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(CredentialsError, match="no credentials"):
        ConsoleSettings().credentials()  # type: ignore[call-arg]
    # compose passes an unset variable on empty: empty is unset, not a (too short) token.
    monkeypatch.setenv("CONSOLE_TOKEN", "")
    monkeypatch.setenv("CONSOLE_OPERATORS", " ")
    with pytest.raises(CredentialsError, match="no credentials"):
        ConsoleSettings().credentials()  # type: ignore[call-arg]
    monkeypatch.setenv("CONSOLE_TOKEN", "too-short")
    with pytest.raises(ValidationError) as short:
        ConsoleSettings()  # type: ignore[call-arg]
    assert short.value.errors()[0]["loc"] == ("token",)
    monkeypatch.setenv("CONSOLE_TOKEN", ALICE)
    settings = ConsoleSettings()  # type: ignore[call-arg]
    assert settings.token == SecretStr(ALICE) and settings.credentials().shared == digest(ALICE)
    assert (settings.host, settings.port) == ("127.0.0.1", 4030)
    assert ALICE not in repr(settings) and ALICE not in str(settings.model_dump())

    monkeypatch.delenv("CONSOLE_TOKEN")
    path = tmp_path / "operators"
    path.write_text(entry("alice", ALICE) + "\n")
    monkeypatch.setenv("CONSOLE_OPERATORS_FILE", str(path))
    monkeypatch.setenv("CONSOLE_OPERATORS", entry("bob", BOB))
    settings = ConsoleSettings()  # type: ignore[call-arg]
    assert settings.credentials().operators == {"alice": digest(ALICE), "bob": digest(BOB)}
    assert digest(BOB).hex() not in repr(settings)
    monkeypatch.setenv("CONSOLE_TOKEN", BOB)
    with pytest.raises(CredentialsError, match="both set"):
        ConsoleSettings().credentials()  # type: ignore[call-arg]
