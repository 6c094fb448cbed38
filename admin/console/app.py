"""The console's aiohttp application."""

from aiohttp import web

from admin.console import live, openapi
from admin.console.middleware import CREDENTIALS, SETTINGS, json_errors, require_operator, security_headers
from admin.console.resources import open_resources
from admin.console.routes import setup_routes
from admin.console.settings import ConsoleSettings


def create_app(settings: ConsoleSettings) -> web.Application:
    # Read once: a changed operators file takes effect on restart. Without any: CredentialsError.
    credentials = settings.credentials()
    # Credentials are checked before anything else runs, routing's 404 included.
    app = web.Application(
        middlewares=[security_headers, json_errors, require_operator], client_max_size=64 * 1024
    )
    app[SETTINGS] = settings
    app[CREDENTIALS] = credentials
    setup_routes(app)
    app[openapi.SPEC] = openapi.document()
    live.setup(app)
    app.cleanup_ctx.append(open_resources)
    return app
