"""python -m admin.console: start-up only (logging, settings, serve, stop on SIGINT / SIGTERM).

Without CONSOLE_TOKEN it does not start: there is no open console."""

import asyncio
import logging
import signal
import sys

from aiohttp import web
from pydantic import ValidationError

from admin.console.app import create_app
from admin.console.settings import TOKEN_MIN_LENGTH, ConsoleSettings
from shared import logs

log = logging.getLogger("admin.console")


def load() -> ConsoleSettings:
    try:
        return ConsoleSettings()  # type: ignore[call-arg]  # read from the environment
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
            if field == "token":
                reason = (
                    "missing: the console does not run without a token"
                    if error["type"] == "missing"
                    else f"must be at least {TOKEN_MIN_LENGTH} characters"
                )
            else:
                reason = error["msg"]
            problems.append(f"{name}: {reason}")
        print("console: refusing to start: " + "; ".join(problems), file=sys.stderr)
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
        log.info("console listening on http://%s:%d", settings.host, settings.port)
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
