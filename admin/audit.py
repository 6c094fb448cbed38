"""The audit trail of operator actions (`admin_audit`): who did what, when, and with what result.

Every action that changes something (retry-failed, reset-stuck, replay-streams, requeue-dead, a setting
set or unset, a payer's priority lane set or cleared) runs inside `audited`, whichever way it was
started (the CLI or the console), so no path forgets it. The row is written before the action starts
and completed after it ends, so an action cut short (a crash, a lost connection) still shows as
`started`. Dry runs change nothing and are not recorded.
"""

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from admin.common import Admin

log = logging.getLogger(__name__)

START = """
INSERT INTO admin_audit (actor, source, client, action, params) VALUES ($1, $2, $3, $4, $5)
RETURNING id
"""
FINISH = "UPDATE admin_audit SET outcome = $2, result = $3, finished_at = now() WHERE id = $1"
RECENT = """
SELECT id, at, finished_at, actor, source, client, action, params, outcome, result
FROM admin_audit ORDER BY id DESC LIMIT $1
"""


@dataclass
class Entry:
    """The running action's audit row; set `result` to what the action did."""

    id: int
    result: dict[str, Any] = field(default_factory=dict)


@asynccontextmanager
async def audited(admin: Admin, action: str, params: dict[str, Any]) -> AsyncIterator[Entry]:
    entry = Entry(
        await admin.pool.fetchval(START, admin.actor, admin.source, admin.client, action, plain(params))
    )
    try:
        yield entry
    except BaseException as exc:
        await _finish(admin.pool, entry.id, "failed", {"error": f"{type(exc).__name__}: {exc}"[:2000]})
        raise
    await _finish(admin.pool, entry.id, "done", entry.result)


async def _finish(pool: asyncpg.Pool, entry_id: int, outcome: str, result: dict[str, Any]) -> None:
    try:
        await pool.execute(FINISH, entry_id, outcome, plain(result))
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
        # The action itself already happened (or failed): its row stays `started`, which says so.
        log.exception("could not complete audit row %d (%s)", entry_id, outcome)


def plain(value: dict[str, Any]) -> dict[str, Any]:
    """JSON types only (times, ids and amounts as text), as the pool's jsonb codec writes them."""
    result: dict[str, Any] = json.loads(json.dumps(value, default=str))
    return result


async def recent(pool: asyncpg.Pool, limit: int = 100) -> list[dict[str, Any]]:
    return [dict(row) for row in await pool.fetch(RECENT, limit)]
