"""Whose credentials the console accepts, and whom each one names (pure: unit-tested).

Per operator (CONSOLE_OPERATORS_FILE, or the same entries in CONSOLE_OPERATORS): one entry per
operator, `name:sha256:<64 hex digits>`, the SHA-256 of that operator's token, as
`mintline console-token NAME` prints it. Only the hash is kept, so neither the file nor the
environment holds a token. A minted token is 256 random bits, so a fast hash is enough (no slow
password hash): finding a token from its hash is as hopeless as guessing it. The name comes from
the credential: HTTP basic must give an operator's name and that operator's token; a bearer token
names the operator it belongs to.

Shared (CONSOLE_TOKEN, the console's first kind, kept for set-ups that use it): one token for
everyone; the HTTP basic user name is whatever the client says (the audit records it, unproven) and
a bearer token is audited as `bearer`. Both kinds at once are refused: the shared token would let
anyone use an operator's name.

Every comparison is of SHA-256 digests, in constant time, each one made whatever the outcome of the
others. No error quotes an entry: a token pasted in place of its hash must not reach a log.
"""

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

OPERATOR_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@+-]{0,63}")
BEARER_ACTOR = "bearer"
SCHEME = "sha256"
ENTRY_FORM = "name:sha256:<64 hex digits> (`mintline console-token NAME` prints it)"
TOKEN_BYTES = 32
# Compared against when a basic name is nobody's, so an unknown name takes as long as a wrong token.
NOBODY = bytes(32)
EMPTY = hashlib.sha256(b"").digest()


class CredentialsError(ValueError):
    """The console's credentials are missing or misconfigured; the message never quotes a token."""


def digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


@dataclass(frozen=True)
class Credentials:
    operators: Mapping[str, bytes] = field(default_factory=dict)  # name -> SHA-256 of its token
    shared: bytes | None = None  # SHA-256 of CONSOLE_TOKEN

    def basic(self, name: str, password: str) -> str | None:
        """The operator a name and password prove, or None."""
        given = digest(password)
        if self.shared is not None:
            # The password is checked whatever the name, so a bad name takes as long as a bad password.
            matches = hmac.compare_digest(given, self.shared)
            return name if matches and password and OPERATOR_NAME.fullmatch(name) else None
        matches = hmac.compare_digest(given, self.operators.get(name, NOBODY))
        return name if matches and password and name in self.operators else None

    def bearer(self, token: str) -> str | None:
        """The operator a bearer token names (BEARER_ACTOR for the shared token), or None."""
        given = digest(token)
        if self.shared is not None:
            return BEARER_ACTOR if hmac.compare_digest(given, self.shared) and token else None
        found: str | None = None
        for name, expected in self.operators.items():  # every one compared: no early exit
            if hmac.compare_digest(given, expected):
                found = name
        return found if token else None

    def describe(self) -> str:
        """What the start-up log says (names only)."""
        if self.shared is not None:
            return "the shared CONSOLE_TOKEN (operator names as given)"
        return f"{len(self.operators)} operator(s): {', '.join(sorted(self.operators))}"


def mint(name: str) -> tuple[str, str]:
    """A new token for an operator, and its entry for the operators file."""
    if not OPERATOR_NAME.fullmatch(name):
        raise CredentialsError(
            "an operator's name is 1-64 letters, digits or _ . @ + -, starting with a letter or digit"
        )
    token = secrets.token_urlsafe(TOKEN_BYTES)
    return token, f"{name}:{SCHEME}:{digest(token).hex()}"


def load(token: str | None, operators: str | None, operators_file: Path | None) -> Credentials:
    """The credentials the settings configure: CredentialsError says what is wrong with them."""
    if token and (operators or operators_file):
        raise CredentialsError(
            "CONSOLE_TOKEN and per-operator credentials (CONSOLE_OPERATORS_FILE / CONSOLE_OPERATORS)"
            " are both set: set one (with the shared token anyone could sign in as an operator)"
        )
    if token:
        return Credentials(shared=digest(token))
    entries: list[tuple[str, str]] = []
    if operators_file is not None:
        entries += _file_entries(operators_file)
    if operators:
        entries += _entries("CONSOLE_OPERATORS", operators)
    if operators_file is None and not operators:
        raise CredentialsError(
            "no credentials: set CONSOLE_OPERATORS_FILE (entries from `mintline console-token NAME`),"
            " or CONSOLE_TOKEN; the console never runs open"
        )
    if not entries:
        raise CredentialsError("per-operator credentials are set but list no operator")
    return Credentials(operators=parse(entries))


def _file_entries(path: Path) -> list[tuple[str, str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CredentialsError(f"CONSOLE_OPERATORS_FILE: cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise CredentialsError(f"CONSOLE_OPERATORS_FILE: {path} is not UTF-8 text") from None
    return _entries(f"CONSOLE_OPERATORS_FILE {path}", text)


def _entries(source: str, text: str) -> list[tuple[str, str]]:
    """(where, entry) for each entry: one a line, or several separated by commas; `#` starts a comment."""
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        for part in line.split("#", 1)[0].split(","):
            if part.strip():
                found.append((f"{source} line {number}", part.strip()))
    return found


def parse(entries: Iterable[tuple[str, str]]) -> dict[str, bytes]:
    """Each operator's name and token hash; every problem, by where it is, in one CredentialsError."""
    operators: dict[str, bytes] = {}
    owners: dict[bytes, str] = {}
    seen: set[str] = set()
    problems = []
    for where, entry in entries:
        name, _, rest = entry.partition(":")
        scheme, _, hashed = rest.partition(":")
        problem = _problem(name, scheme, hashed)
        if problem is None:
            token_hash = bytes.fromhex(hashed)
            if name.lower() in seen:
                problem = f"operator {name} is listed twice"
            elif token_hash in owners:
                problem = f"{name} has the same token as {owners[token_hash]}: each needs its own"
            else:
                seen.add(name.lower())
                owners[token_hash] = name
                operators[name] = token_hash
        if problem is not None:
            problems.append(f"{where}: {problem}")
    if problems:
        raise CredentialsError("; ".join(problems))
    return operators


def _problem(name: str, scheme: str, hashed: str) -> str | None:
    if not scheme or not hashed:
        return f"not {ENTRY_FORM}; a plain token is never accepted"
    if not OPERATOR_NAME.fullmatch(name):
        return "the name is not 1-64 letters, digits or _ . @ + -"
    if scheme != SCHEME:
        return f"the hash must be {SCHEME}: {ENTRY_FORM}"
    if not re.fullmatch(r"[0-9a-fA-F]{64}", hashed):
        return f"the hash is not 64 hex digits: {ENTRY_FORM}"
    if bytes.fromhex(hashed) == EMPTY:
        return f"{name}'s token is empty"
    return None
