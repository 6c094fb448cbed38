import asyncio
import logging

from eth_account import Account

from services.batcher.settings import BatcherSettings
from services.batcher.worker import Batcher
from shared import logs, metrics, service

log = logging.getLogger("services.batcher")


async def main(stop: asyncio.Event) -> None:
    settings = BatcherSettings()
    keys = settings.signing_keys
    wallets = [Account.from_key(key).address for key in keys]
    # Every wallet must be a minter, or the process refuses to start naming it. Pool connections:
    # each wallet's loops use a few at once (its lock has a connection of its own).
    async with service.resources(settings, pool_size=max(10, 4 * len(keys)), minters=wallets) as res:
        batchers = [Batcher(settings, res.pool, res.redis, res.rpc, key) for key in keys]

        async def health() -> dict:
            # A standby without the lock is healthy; an active batcher that lost it is not. The last
            # check's answer: a probe never touches the lock's connection.
            locks = {f"wallet_lock {b.wallet}": not b.active or b.lock.held for b in batchers}
            return {"postgres": await service.database_reachable(res.pool), **locks}

        runner = await metrics.serve(settings.metrics_host, settings.metrics_port, health)
        log.info("signer wallets: %s", ", ".join(wallets))
        try:
            # One batcher per wallet, each on standby until it holds its wallet's lock.
            async with asyncio.TaskGroup() as tasks:
                for batcher in batchers:
                    tasks.create_task(batcher.run(stop))
        finally:
            await runner.cleanup()


if __name__ == "__main__":
    logs.configure("batcher")
    service.run(main)
