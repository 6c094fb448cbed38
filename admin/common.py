"""What every admin command shares: its connections, its errors (and exit codes), progress lines on
stderr and plain-text tables on stdout."""

import argparse
import contextlib
import getpass
import re
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from redis.asyncio import Redis

from shared import db
from shared.settings import Settings

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad arguments, configuration or input: exit code 2."""


class OperationFailed(Exception):
    """The command could not do its job (a server unreachable, a write refused): exit code 1."""


def cli_actor() -> str:
    """Who runs the CLI, as the audit records it: the login name (the console records its operator)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container's arbitrary user)
        return "unknown"


@dataclass(frozen=True)
class Admin:
    settings: Settings
    pool: asyncpg.Pool
    redis: Redis
    # Who acts, from where (admin_audit): the CLI's login name, or the console's operator and client.
    actor: str = "unknown"
    source: str = "cli"
    client: str | None = None


@contextlib.asynccontextmanager
async def connect(settings: Settings) -> AsyncIterator[Admin]:
    try:
        pool = await db.create_pool(
            settings.database_url, min_size=1, max_size=4, transaction_pooling=settings.transaction_pooling
        )
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise OperationFailed(
            f"cannot connect to PostgreSQL at {mask_url(settings.database_url)}: {_first_line(exc)}"
        ) from None
    redis = Redis.from_url(settings.redis_url, socket_connect_timeout=5)
    try:
        yield Admin(settings, pool, redis, actor=cli_actor())
    finally:
        await redis.aclose()
        await pool.close()


def mask_url(url: str) -> str:
    """The URL with its password (if any) replaced by ***: what may be echoed to a terminal or a log."""
    return re.sub(r"^([a-zA-Z][\w+.-]*://[^:/@]*):[^@/]*@", r"\1:***@", url)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def note(message: str) -> None:
    """A progress or warning line: stderr, so stdout stays the command's report."""
    print(message, file=sys.stderr, flush=True)


class Progress:
    """`label: done/total (pct%)` on stderr, at most every `interval` seconds, and once at the end."""

    def __init__(self, label: str, total: int | None, interval: float = 1.0) -> None:
        self.label, self.total, self.interval = label, total, interval
        self.done = 0
        self._last = 0.0
        self._shown = -1

    def advance(self, count: int) -> None:
        self.done += count
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            self._show()

    def finish(self) -> None:
        if self._shown != self.done:
            self._show()

    def _show(self) -> None:
        self._shown = self.done
        if self.total:
            note(f"{self.label}: {self.done}/{self.total} ({100 * self.done // self.total}%)")
        else:
            note(f"{self.label}: {self.done}")


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], indent: str = "  ") -> str:
    """Left-aligned columns, numbers right-aligned; None shows as '-'."""
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [
        max(len(h), *(len(row[i]) for row in cells)) if cells else len(h) for i, h in enumerate(headers)
    ]
    numeric = [
        any(isinstance(row[i], int | float) for row in rows)
        and all(isinstance(row[i], int | float | None) for row in rows)
        for i in range(len(headers))
    ]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True)]
        return (indent + "  ".join(parts)).rstrip()

    return "\n".join([line(headers), *(line(row) for row in cells)])


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def duration(seconds: float | None) -> str:
    """A compact age: 45s, 12m05s, 3h02m, 2d04h."""
    if seconds is None:
        return "-"
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"


def listing(ids: Sequence[Any], limit: int = 20) -> str:
    """Up to `limit` ids, one per line, then how many more."""
    shown = [f"    {i}" for i in ids[:limit]]
    if len(ids) > limit:
        shown.append(f"    ... and {len(ids) - limit} more")
    return "\n".join(shown)


_DURATION = re.compile(r"(\d+)\s*([smhd])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text: str) -> datetime:
    """`30m`, `2h`, `1d`, `45s` (that long ago) or an ISO 8601 time (UTC unless it says otherwise)."""
    if match := _DURATION.fullmatch(text.strip()):
        return datetime.now(UTC) - timedelta(seconds=int(match[1]) * _UNITS[match[2]])
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither a duration (30m, 2h, 1d) nor an ISO time"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
