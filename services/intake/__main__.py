"""python -m services.intake: start-up only (logging, settings, serve, stop on SIGINT / SIGTERM).

With INTAKE_WORKERS above 1 (the default is one per core) this process supervises that many workers
sharing the port (services/intake/workers.py); each worker, or a lone process, serves the app.
"""

import asyncio
import gc
import logging
import signal
import sys

import aiohttp
from aiohttp import web
from pydantic import ValidationError

from services.intake import workers
from services.intake.settings import IntakeSettings
from shared import logs
from shared.chain_checks import ChainMismatch, check_chain
from shared.jsonrpc import JsonRpc

log = logging.getLogger("services.intake")


async def serve(settings: IntakeSettings, worker: int | None) -> None:
    """Serve until SIGINT / SIGTERM: alone (`worker` None), or as worker `worker` of several, whose
    sockets share the port and of which worker 0 runs the once-per-service loops."""
    # Imported here, not by a parent of workers: the app's metrics belong in the workers' files.
    from services.intake.app import create_app

    runner = web.AppRunner(
        create_app(settings, worker=worker),
        handle_signals=False,
        access_log=logging.getLogger("aiohttp.access") if settings.access_log else None,
        shutdown_timeout=settings.shutdown_grace_seconds,
    )
    name = "intake" if worker is None else f"intake worker {worker}"
    await runner.setup()
    try:
        await web.TCPSite(runner, settings.host, settings.port, reuse_port=worker is not None).start()
        log.info("%s listening on http://%s:%d", name, settings.host, settings.port)
        tune_collector()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("%s stopping", name)
    finally:
        await runner.cleanup()
    log.info("%s stopped", name)


def tune_collector() -> None:
    """What start-up made (modules, the app) lives as long as the process: frozen, the cyclic garbage
    collector no longer walks it, and young objects are collected less often. Under load this took
    ~5% off a request's CPU and shortened the tail (bench/intake.py)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 50)


async def check_chain_once(settings: IntakeSettings) -> None:
    """A parent of workers checks the chain itself before it starts them: one refusal, not one each."""
    timeout = aiohttp.ClientTimeout(total=settings.rpc_timeout_seconds)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        rpc = JsonRpc(settings.chain_rpc_urls, session, settings.rpc_max_batch)
        await check_chain(rpc, settings.deployment)


def main() -> None:
    try:
        settings = IntakeSettings()  # type: ignore[call-arg]  # read from the environment
    except ValidationError as exc:
        names = ", ".join(str(error["loc"][0]) for error in exc.errors())
        print(f"intake: invalid or missing settings: {names}\n{exc}", file=sys.stderr)
        raise SystemExit(workers.REFUSED) from None
    logs.configure("intake", settings.log_level)
    worker = workers.worker_index()
    supervising = worker is None and settings.workers > 1
    if worker is not None:
        workers.follow_parent()
    try:
        if supervising:
            asyncio.run(check_chain_once(settings))
        else:
            asyncio.run(serve(settings, worker))
    except ChainMismatch as exc:
        log.error("refusing to start: %s", exc)
        raise SystemExit(workers.REFUSED) from None
    if supervising:
        raise SystemExit(workers.supervise(settings.workers, settings.shutdown_grace_seconds))


if __name__ == "__main__":
    main()
