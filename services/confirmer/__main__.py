import asyncio

from services.confirmer.replay import replay
from services.confirmer.settings import ConfirmerSettings
from services.confirmer.worker import Confirmer
from shared import keys, logs, metrics, service
from shared import replay as stream_replay


async def main(stop: asyncio.Event) -> None:
    settings = ConfirmerSettings()
    async with service.resources(settings) as res:
        confirmer = Confirmer(settings, res.pool, res.redis, res.rpc)

        async def health() -> dict:
            return {"postgres": await service.database_reachable(res.pool)}

        runner = await metrics.serve(settings.metrics_host, settings.metrics_port, health)
        marker = settings.keys.alive(keys.CONFIRMER)
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(
                    stream_replay.watch(
                        res.redis, marker, lambda: replay(res.pool, res.redis, settings), stop
                    )
                )
                tasks.create_task(confirmer.run(stop))
        finally:
            await runner.cleanup()


if __name__ == "__main__":
    logs.configure("confirmer")
    service.run(main)
