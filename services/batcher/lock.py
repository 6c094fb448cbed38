"""One signer per wallet: a PostgreSQL advisory lock held on a dedicated connection.

A second batcher for the same wallet waits as a standby; when the active one dies its connection
closes, PostgreSQL releases the lock, and the standby takes over.
"""

import asyncio
import logging

import asyncpg

from shared.loops import pause

log = logging.getLogger(__name__)


class WalletLock:
    def __init__(self, dsn: str, wallet: str) -> None:
        self.dsn = dsn
        self.wallet = wallet.lower()
        self._conn: asyncpg.Connection | None = None

    async def acquire(self, stop: asyncio.Event, poll_seconds: float = 1.0) -> bool:
        """Wait until this process holds the wallet's lock (True) or `stop` is set (False)."""
        announced = False
        while not stop.is_set():
            try:
                if self._conn is None or self._conn.is_closed():
                    self._conn = await asyncpg.connect(self.dsn)
                got = await self._conn.fetchval(
                    "SELECT pg_try_advisory_lock(hashtextextended('batcher:' || $1, 0))", self.wallet
                )
                if got:
                    log.info("wallet lock held for %s: this batcher is active", self.wallet)
                    return True
                if not announced:
                    log.info("another batcher holds %s: waiting as standby", self.wallet)
                    announced = True
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("wallet lock check failed: %s", exc)
            await pause(stop, poll_seconds)
        return False

    async def still_held(self) -> bool:
        try:
            return self._conn is not None and await self._conn.fetchval("SELECT 1") == 1
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return False

    async def release(self) -> None:
        if self._conn is not None and not self._conn.is_closed():
            await self._conn.close()
        self._conn = None
