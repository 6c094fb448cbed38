"""One signer per wallet: a PostgreSQL advisory lock held on a dedicated connection.

A second batcher for the same wallet waits as a standby; when the active one dies its connection
closes, PostgreSQL releases the lock, and the standby takes over.

Only the batcher's own loop asks the connection whether the lock is still held, one question at a
time and with a timeout (a dead peer must not hang the check); TCP keepalives let PostgreSQL notice a
vanished batcher and free the lock. /health reads the last answer (`held`), never the connection:
two queries at once on one asyncpg connection fail, and a failed check means the lock is lost.

Fencing: every store of a signed batch asks, inside its own transaction, whether the lock's backend
still holds the lock (`fence`), so a batcher that lost the lock between two checks cannot commit.
"""

import asyncio
import logging

import asyncpg

from shared.loops import pause

log = logging.getLogger(__name__)


def lock_key(wallet_sql: str) -> str:
    """The advisory lock key of the wallet that `wallet_sql` (lower-cased) names."""
    return f"hashtextextended('batcher:' || {wallet_sql}, 0)"


def held_sql(wallet_sql: str, pid_sql: str | None = None) -> str:
    """SQL that is true while a session of this database (the one whose backend is `pid_sql`, if
    given) holds the lock of the wallet `wallet_sql` names. pg_locks shows a bigint advisory key as its
    high half (classid) and low half (objid), objsubid 1."""
    key = lock_key(wallet_sql)
    holder = f" AND pid = {pid_sql}" if pid_sql else ""
    return f"""EXISTS (
    SELECT 1 FROM pg_locks
    WHERE locktype = 'advisory' AND granted{holder} AND objsubid = 1
      AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND classid = (({key} >> 32) & 4294967295)::oid
      AND objid = ({key} & 4294967295)::oid
)"""


LOCK_KEY = lock_key("$1")
FENCE = f"SELECT {held_sql('$1', '$2')}"


class LockLost(RuntimeError):
    """The wallet lock is gone: another batcher may be active now, so this one must stop."""


CHECK_TIMEOUT_SECONDS = 5.0
# Server-side keepalives on the lock's connection: a batcher that vanished without closing it (a
# cut network, a frozen host) loses the lock in about 20 s instead of hours.
KEEPALIVES = {"tcp_keepalives_idle": "10", "tcp_keepalives_interval": "5", "tcp_keepalives_count": "2"}


class WalletLock:
    def __init__(self, dsn: str, wallet: str) -> None:
        self.dsn = dsn
        self.wallet = wallet.lower()
        self._conn: asyncpg.Connection | None = None
        self._asking = asyncio.Lock()
        # The last answer of acquire() / still_held(): what /health reports.
        self.held = False
        # The backend process of the lock's connection, which pg_locks names as the holder.
        self.backend_pid: int | None = None

    async def acquire(self, stop: asyncio.Event, poll_seconds: float = 1.0) -> bool:
        """Wait until this process holds the wallet's lock (True) or `stop` is set (False)."""
        announced = False
        while not stop.is_set():
            try:
                if self._conn is None or self._conn.is_closed():
                    self._conn = await asyncpg.connect(
                        self.dsn, timeout=CHECK_TIMEOUT_SECONDS, server_settings=KEEPALIVES
                    )
                got = await self._conn.fetchval(
                    f"SELECT pg_try_advisory_lock({LOCK_KEY})", self.wallet, timeout=CHECK_TIMEOUT_SECONDS
                )
                if got:
                    self.backend_pid = self._conn.get_server_pid()
                    self.held = True
                    log.info("wallet lock held for %s: this batcher is active", self.wallet)
                    return True
                if not announced:
                    log.info("another batcher holds %s: waiting as standby", self.wallet)
                    announced = True
            except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
                log.warning("wallet lock check failed: %s", exc)
            await pause(stop, poll_seconds)
        return False

    async def still_held(self) -> bool:
        """Whether the lock's connection is alive (a session lock lasts as long as it does)."""
        try:
            # The whole check is bounded, waiting for an earlier one included.
            async with asyncio.timeout(2 * CHECK_TIMEOUT_SECONDS), self._asking:
                conn = self._conn
                held = (
                    conn is not None and await conn.fetchval("SELECT 1", timeout=CHECK_TIMEOUT_SECONDS) == 1
                )
        except (
            OSError,
            asyncpg.PostgresError,
            asyncpg.InterfaceError,
            # A check cut off mid-query (PostgreSQL going away) leaves the connection busy.
            asyncpg.InternalClientError,
            TimeoutError,
        ):
            held = False
        self.held = held
        return held

    async def fence(self, conn: asyncpg.Connection) -> None:
        """Raise LockLost unless the lock's backend still holds the lock; call it on `conn` inside the
        transaction that commits work only the lock holder may do."""
        if self.backend_pid is None or not await conn.fetchval(FENCE, self.wallet, self.backend_pid):
            self.held = False
            raise LockLost(f"the wallet lock for {self.wallet} is no longer held; not committing")

    async def release(self) -> None:
        self.held = False
        if self._conn is not None and not self._conn.is_closed():
            # At once: a graceful close waits on a connection that may be busy or half gone, and the
            # server drops a session lock with its connection either way.
            self._conn.terminate()
        self._conn = None
