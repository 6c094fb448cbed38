"""The console's middlewares: credentials on every route but /health, forged actions refused, errors
as JSON (`error`, `message`), and headers that keep the page to its own origin."""

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from aiohttp import web
from redis.exceptions import RedisError

from admin.common import OperationFailed, UsageError
from admin.console.auth import REALM, Operator, authenticate, cross_site
from admin.console.credentials import Credentials
from admin.console.settings import ConsoleSettings

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SETTINGS = web.AppKey("settings", ConsoleSettings)
CREDENTIALS = web.AppKey("credentials", Credentials)
OPERATOR = web.RequestKey("operator", Operator)
PUBLIC = frozenset({"/health"})
# The page loads only its own files and talks only to its own origin.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self';"
    " img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


class ApiError(Exception):
    def __init__(self, code: str, message: str, status: int = 400, **details: Any) -> None:
        super().__init__(message)
        self.code, self.message, self.status, self.details = code, message, status, details
        self.headers: dict[str, str] = {}

    def response(self) -> web.Response:
        body = {"success": False, "error": self.code, "message": self.message, **self.details}
        return web.json_response(body, status=self.status, headers=self.headers)


def unauthorized() -> ApiError:
    error = ApiError(
        "unauthorized",
        "credentials required: HTTP basic (your operator name and token) or a bearer token",
        401,
    )
    error.headers["WWW-Authenticate"] = REALM
    return error


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        exc.headers.update(SECURITY_HEADERS)
        raise
    if not response.prepared:  # a live stream set its headers before it started
        response.headers.update(SECURITY_HEADERS)
        response.headers.setdefault("Cache-Control", "no-store")
    return response


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return exc.response()
    except UsageError as exc:
        return ApiError("invalid_input", str(exc), 400).response()
    except OperationFailed as exc:
        return ApiError("operation_failed", str(exc), 503).response()
    except (OSError, RedisError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        log.warning("%s %s: a dependency failed: %s", request.method, request.path, type(exc).__name__)
        return ApiError(
            "unavailable", f"a dependency did not answer ({type(exc).__name__}); retry", 503
        ).response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}.get(
            exc.status, "http_error"
        )
        return ApiError(code, exc.reason, exc.status).response()
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return ApiError("internal_error", "the console failed on this request; see its log", 500).response()


@web.middleware
async def require_operator(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path in PUBLIC:
        return await handler(request)
    operator: Operator | None = authenticate(request.headers.get("Authorization"), request.app[CREDENTIALS])
    if operator is None:
        raise unauthorized()
    forged = cross_site(request.method, request.headers, request.scheme, request.host)
    if forged is not None:
        status, reason = forged
        raise ApiError("forbidden" if status == 403 else "unsupported_media_type", reason, status)
    request[OPERATOR] = operator
    return await handler(request)
