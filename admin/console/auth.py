"""Who may use the console, decided from the request alone (pure functions: unit-tested).

Credentials are the console token (CONSOLE_TOKEN), given either as HTTP basic credentials (the
password; the user name is the operator's name, which the audit records) or as a bearer token (the
audit records `bearer`). The token is compared in constant time and never logged or echoed.

An action changes something, and a browser sends basic credentials by itself: a page on another site
must not be able to make an operator's browser act (CSRF). So an action must be JSON (a form cannot
send that across sites without a preflight, which the console never grants) and must not come from
another origin (Origin, Sec-Fetch-Site).
"""

import base64
import binascii
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass

OPERATOR_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@+-]{0,63}")
BEARER_ACTOR = "bearer"
REALM = 'Basic realm="mintline console", charset="UTF-8"'
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Operator:
    name: str
    scheme: str  # "basic" or "bearer"


def authenticate(authorization: str | None, token: str) -> Operator | None:
    """The operator the Authorization header proves, or None (missing, malformed or wrong)."""
    if not authorization or not token:
        return None
    scheme, _, credentials = authorization.strip().partition(" ")
    credentials = credentials.strip()
    expected = token.encode()
    if scheme.lower() == "bearer":
        return Operator(BEARER_ACTOR, "bearer") if _same(credentials.encode(), expected) else None
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(credentials, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    name, colon, password = decoded.partition(":")
    # The password is checked whatever the name, so a bad name takes as long as a bad password.
    if not _same(password.encode(), expected) or not colon or not OPERATOR_NAME.fullmatch(name):
        return None
    return Operator(name, "basic")


def _same(given: bytes, expected: bytes) -> bool:
    return hmac.compare_digest(given, expected)


def cross_site(method: str, headers: Mapping[str, str], scheme: str, host: str) -> tuple[int, str] | None:
    """The status (415, 403) and reason to refuse a request that changes something as possibly
    forged, or None."""
    if method.upper() in SAFE_METHODS:
        return None
    content_type = headers.get("Content-Type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        return 415, "an action's body must be application/json"
    if headers.get("Sec-Fetch-Site", "same-origin").lower() not in ("same-origin", "none"):
        return 403, "an action may not come from another site"
    origin = headers.get("Origin")
    if origin is not None and origin.lower() != f"{scheme}://{host}".lower():
        return 403, "an action may not come from another origin"
    return None
