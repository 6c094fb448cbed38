"""python -m services.intake: start-up only (logging, settings, serve, stop on SIGINT / SIGTERM)."""

import asyncio
import logging
import signal
import sys

from aiohttp import web
from pydantic import ValidationError

from services.intake.app import create_app
from services.intake.settings import IntakeSettings
from shared import logs
from shared.chain_checks import ChainMismatch

log = logging.getLogger("services.intake")


async def serve(settings: IntakeSettings) -> None:
    runner = web.AppRunner(
        create_app(settings),
        handle_signals=False,
        access_log=logging.getLogger("aiohttp.access") if settings.access_log else None,
        shutdown_timeout=settings.shutdown_grace_seconds,
    )
    await runner.setup()
    try:
        await web.TCPSite(runner, settings.host, settings.port).start()
        log.info("intake listening on http://%s:%d", settings.host, settings.port)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("intake stopping")
    finally:
        await runner.cleanup()
    log.info("intake stopped")


def main() -> None:
    try:
        settings = IntakeSettings()  # type: ignore[call-arg]  # read from the environment
    except ValidationError as exc:
        names = ", ".join(str(error["loc"][0]) for error in exc.errors())
        print(f"intake: invalid or missing settings: {names}\n{exc}", file=sys.stderr)
        raise SystemExit(2) from None
    logs.configure("intake", settings.log_level)
    try:
        asyncio.run(serve(settings))
    except ChainMismatch as exc:
        log.error("refusing to start: %s", exc)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
