"""`mintline priority set|clear|list`: payers' priority lanes (`payer_priorities`, migration 012).

A payer's lane (1-9; without one, 0) is read by intake when it accepts their request and stays with
that request: its queue position counts only its lane and the lanes above it, and the batcher fills
each batch from the highest lane first (within authorizations' expiry and the ageing rule,
`ageing_multiple`). A change applies to the payer's next requests. Setting and clearing are audited.
"""

import argparse
import unicodedata
from typing import Any

from admin.audit import audited
from admin.common import Admin, UsageError, table
from shared import addresses

MIN_LANE, MAX_LANE = 1, 9
MAX_NOTE = 200
LIST = """
SELECT payer_address, lane, note, set_by, source, set_at FROM payer_priorities
ORDER BY lane DESC, payer_address
"""
# Queued requests per lane, from the depth counters (migration 012): no count over the queue.
QUEUED_PER_LANE = """
SELECT lane, sum(n)::bigint AS queued FROM mint_queue_depth
GROUP BY lane HAVING sum(n) <> 0 ORDER BY lane DESC
"""
# The lane before (the statement's snapshot: NULL for a payer without one) and after, in one statement.
UPSERT = """
WITH before AS (SELECT lane FROM payer_priorities WHERE payer_address = $1)
INSERT INTO payer_priorities (payer_address, lane, note, set_by, source) VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (payer_address) DO UPDATE
SET lane = excluded.lane, note = excluded.note, set_by = excluded.set_by, source = excluded.source,
    set_at = now()
RETURNING (SELECT lane FROM before) AS previous
"""


def add_parser(commands: Any) -> None:
    priority = commands.add_parser(
        "priority",
        help="payers' priority lanes (payer_priorities)",
        description=__doc__.split("\n\n")[1],
    )
    actions = priority.add_subparsers(dest="action", required=True, metavar="action")
    put = actions.add_parser("set", help="give a payer a lane (1-9, higher goes first)")
    put.add_argument("payer", help="the payer's address")
    put.add_argument("lane", help=f"{MIN_LANE}-{MAX_LANE}")
    put.add_argument("--note", help="why (shown with the lane)")
    put.set_defaults(handler="admin.priorities:set_")
    clear = actions.add_parser("clear", help="back to lane 0")
    clear.add_argument("payer")
    clear.set_defaults(handler="admin.priorities:clear")
    listed = actions.add_parser("list", help="every payer's lane, and the requests queued per lane")
    listed.set_defaults(handler="admin.priorities:list_")


def payer_address(text: str) -> str:
    """The address as intake stores payers (shared.addresses: EIP-55 checksummed)."""
    try:
        return addresses.parse_address(text.strip())
    except addresses.AddressError as exc:
        raise UsageError(f"payer {exc}, not {text.strip()[:60]!r}") from None


def lane_number(value: Any) -> int:
    """A lane to set: a whole number from 1 to 9 (0 is everyone's default: clear the payer's lane)."""
    text = str(value).strip()
    if isinstance(value, bool) or not text.isdigit() or not MIN_LANE <= int(text) <= MAX_LANE:
        raise UsageError(
            f"lane must be a whole number from {MIN_LANE} to {MAX_LANE}, not {text[:20]!r}"
            " (0 is the default: clear the payer's lane instead)"
        )
    return int(text)


def note_text(note: str | None) -> str | None:
    """An operator's note: printable text (no control characters), at most MAX_NOTE characters."""
    if note is None or not note.strip():
        return None
    note = note.strip()
    if len(note) > MAX_NOTE:
        raise UsageError(f"note must be at most {MAX_NOTE} characters")
    if any(unicodedata.category(character) in ("Cc", "Cs") for character in note):
        raise UsageError("note must be printable text (no control characters)")
    return note


async def list_priorities(admin: Admin) -> dict[str, Any]:
    """Every payer with a lane, highest first, and the requests queued per lane."""
    async with admin.pool.acquire() as conn:
        payers = [dict(row) for row in await conn.fetch(LIST)]
        lanes = [dict(row) for row in await conn.fetch(QUEUED_PER_LANE)]
    return {"payers": payers, "lanes": lanes}


async def set_priority(admin: Admin, payer: str, lane: Any, note: str | None = None) -> dict[str, Any]:
    """Give `payer` a lane (validated); what changed. Audited."""
    address, chosen, note = payer_address(payer), lane_number(lane), note_text(note)
    params = {"payer": address, "lane": chosen, "note": note}
    async with audited(admin, "priority-set", params) as entry:
        previous = await admin.pool.fetchval(UPSERT, address, chosen, note, admin.actor, admin.source)
        entry.result = {"payer": address, "lane": chosen, "previous": previous}
    return entry.result


async def clear_priority(admin: Admin, payer: str) -> dict[str, Any]:
    """Back to lane 0; the lane it had (None: it had none). Audited."""
    address = payer_address(payer)
    async with audited(admin, "priority-clear", {"payer": address}) as entry:
        removed = await admin.pool.fetchval(
            "DELETE FROM payer_priorities WHERE payer_address = $1 RETURNING lane", address
        )
        entry.result = {"payer": address, "lane": None, "previous": removed}
    return entry.result


async def set_(admin: Admin, args: argparse.Namespace) -> int:
    done = await set_priority(admin, args.payer, args.lane, args.note)
    was = "lane 0" if done["previous"] is None else f"lane {done['previous']}"
    print(f"{done['payer']}: lane {done['lane']} (was {was}); applies to the payer's next requests")
    return 0


async def clear(admin: Admin, args: argparse.Namespace) -> int:
    done = await clear_priority(admin, args.payer)
    if done["previous"] is None:
        print(f"{done['payer']} had no lane (lane 0)")
    else:
        print(f"{done['payer']}: lane {done['previous']} cleared; back to lane 0 for their next requests")
    return 0


async def list_(admin: Admin, args: argparse.Namespace) -> int:
    listed = await list_priorities(admin)
    rows = [
        [
            p["payer_address"],
            p["lane"],
            p["set_by"],
            p["source"],
            f"{p['set_at']:%Y-%m-%d %H:%M:%S}",
            p["note"],
        ]
        for p in listed["payers"]
    ]
    print(table(["payer", "lane", "set by", "from", "set at", "note"], rows, indent=""))
    queued = ", ".join(f"lane {row['lane']}: {row['queued']}" for row in listed["lanes"]) or "none"
    print(f"\nqueued per lane: {queued}")
    return 0
