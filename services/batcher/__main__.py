import asyncio
import logging

from eth_account import Account

from services.batcher.settings import BatcherSettings
from services.batcher.worker import Batcher
from shared import logs, metrics, service

log = logging.getLogger("services.batcher")


async def main(stop: asyncio.Event) -> None:
    settings = BatcherSettings()
    wallet = Account.from_key(settings.private_key.get_secret_value()).address
    async with service.resources(settings, minter=wallet) as res:
        batcher = Batcher(settings, res.pool, res.redis, res.rpc)

        async def health() -> dict:
            # A standby without the lock is healthy; an active batcher that lost it is not. The last
            # check's answer: a probe never touches the lock's connection.
            lock_ok = not batcher.active or batcher.lock.held
            return {"postgres": await service.database_reachable(res.pool), "wallet_lock": lock_ok}

        runner = await metrics.serve(settings.metrics_host, settings.metrics_port, health)
        try:
            await batcher.run(stop)
        finally:
            await runner.cleanup()


if __name__ == "__main__":
    logs.configure("batcher")
    service.run(main)
