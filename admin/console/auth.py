"""Who may use the console, decided from the request alone (pure functions: unit-tested).

Credentials (credentials.py) are an operator's token, or the one shared CONSOLE_TOKEN, given either
as HTTP basic credentials (user: the operator's name, which the audit records; password: the token)
or as a bearer token. Tokens are compared as hashes in constant time and never logged or echoed.

An action changes something, and a browser sends basic credentials by itself: a page on another site
must not be able to make an operator's browser act (CSRF). So an action must be JSON (a form cannot
send that across sites without a preflight, which the console never grants) and must not come from
another origin (Origin, Sec-Fetch-Site).
"""

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass

from admin.console.credentials import Credentials

REALM = 'Basic realm="mintline console", charset="UTF-8"'
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Operator:
    name: str
    scheme: str  # "basic" or "bearer"


def authenticate(authorization: str | None, credentials: Credentials) -> Operator | None:
    """The operator the Authorization header proves, or None (missing, malformed or wrong)."""
    if not authorization:
        return None
    scheme, _, given = authorization.strip().partition(" ")
    given = given.strip()
    if scheme.lower() == "bearer":
        name = credentials.bearer(given)
        return Operator(name, "bearer") if name is not None else None
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(given, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, colon, password = decoded.partition(":")
    name = credentials.basic(user, password) if colon else None
    return Operator(name, "basic") if name is not None else None


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
