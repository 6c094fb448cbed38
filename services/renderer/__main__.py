import asyncio
import logging

from redis.asyncio import Redis

from services.renderer.pinstore import LocalPinStore, gateway_routes
from services.renderer.sandbox import Sandbox
from services.renderer.settings import RendererSettings
from services.renderer.worker import RenderWorker
from shared import db, logs, metrics, service

log = logging.getLogger("services.renderer")


async def main(stop: asyncio.Event) -> None:
    settings = RendererSettings()
    pinner = settings.pinner()
    pool = await db.create_pool(
        settings.database_url,
        max_size=settings.concurrency + 4,
        transaction_pooling=settings.transaction_pooling,
        wait_seconds=service.START_WAIT_SECONDS,
    )
    redis = Redis.from_url(settings.redis_url)
    sandbox = Sandbox(settings.concurrency, settings.max_job_memory_mb * 2**20)
    try:
        worker = RenderWorker(settings, pool, redis, pinner, sandbox)

        async def health() -> dict:
            try:
                redis_ok = bool(await redis.ping())
            except (OSError, ConnectionError):
                redis_ok = False
            return {"postgres": await service.database_reachable(pool), "redis": redis_ok}

        # The local pin store is served as an IPFS gateway on the same port as /metrics.
        routes = gateway_routes(pinner) if isinstance(pinner, LocalPinStore) else []
        runner = await metrics.serve(settings.metrics_host, settings.metrics_port, health, routes)
        try:
            await worker.run(stop)
        finally:
            await runner.cleanup()
    finally:
        sandbox.close()
        await pinner.close()
        await redis.aclose()
        await pool.close()


if __name__ == "__main__":
    logs.configure("renderer")
    service.run(main)
