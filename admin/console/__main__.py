"""python -m admin.console: start-up only (logging, settings, serve, stop on SIGINT / SIGTERM).

Without credentials (CONSOLE_OPERATORS_FILE / CONSOLE_OPERATORS, or CONSOLE_TOKEN), or with bad ones,
it does not start (exit 2): there is no open console."""

import asyncio
import logging
import signal
import sys
from typing import NoReturn

from aiohttp import web
from pydantic import ValidationError

from admin.console.app import create_app
from admin.console.credentials import CredentialsError
from admin.console.middleware import CREDENTIALS
from admin.console.settings import TOKEN_MIN_LENGTH, ConsoleSettings
from shared import logs

log = logging.getLogger("admin.console")


def load() -> ConsoleSettings:
    try:
        settings = ConsoleSettings()  # type: ignore[call-arg]  # read from the environment
        settings.credentials()  # checked now, so a bad operators file stops start-up with its reason
        return settings
    except ValidationError as exc:
        # Names and reasons only: pydantic's own text would quote the values, the token among them.
        problems = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else "?"
            name = (
                field.upper()
                if field.upper().startswith(("REDIS_", "DATABASE_", "RPC_"))
                else f"CONSOLE_{field.upper()}"
            )
            reason = f"must be at least {TOKEN_MIN_LENGTH} characters" if field == "token" else error["msg"]
            problems.append(f"{name}: {reason}")
        refuse("; ".join(problems))
    except CredentialsError as exc:
        refuse(str(exc))


def refuse(reason: str) -> NoReturn:
    print(f"console: refusing to start: {reason}", file=sys.stderr)
    raise SystemExit(2) from None


async def serve(settings: ConsoleSettings) -> None:
    runner = web.AppRunner(
        create_app(settings),
        handle_signals=False,
        access_log=logging.getLogger("aiohttp.access") if settings.access_log else None,
        shutdown_timeout=settings.shutdown_grace_seconds,
    )
    await runner.setup()
    try:
        await web.TCPSite(runner, settings.host, settings.port).start()
        log.info(
            "console listening on http://%s:%d; credentials: %s",
            settings.host,
            settings.port,
            runner.app[CREDENTIALS].describe(),
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("console stopping")
    finally:
        await runner.cleanup()
    log.info("console stopped")


def main() -> None:
    settings = load()
    logs.configure("console", settings.log_level)
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
