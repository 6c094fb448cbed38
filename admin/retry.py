"""`mintline retry-failed`: failed requests get another attempt.

A token request (or an NFT request whose metadata is pinned) goes back to `pending`; an NFT request
that failed before its tokenURI existed goes back to `rendering`, its render job to `waiting`. The
retry count goes up by one; the failure stays in mint_request_history. Events go out after the
commit. A request whose payment can no longer settle is skipped and reported: its authorization
expires within the margin (and was not settled already), or it has no authorization to settle.
"""

import argparse
import time
from datetime import UTC, datetime

import asyncpg

from admin.common import Admin, Progress, UsageError, listing, note
from services.confirmer.settings import TUNABLE, ConfirmerSettings
from shared import keys
from shared.events import MintRequested, RenderRequested
from shared.overrides import with_overrides
from shared.streams import publish_many

CHUNK = 1000
CANDIDATES = """
SELECT m.id, m.seq, m.kind, m.payment_type, m.valid_before, m.payment_settled, m.token_uri,
       m.authorization_data IS NOT NULL AS has_authorization, j.status AS job_status
FROM mint_requests m LEFT JOIN render_jobs j ON j.request_id = m.id
WHERE m.status = 'failed' AND m.retry_count < $1 AND m.seq > $2
  AND ($3::timestamptz IS NULL OR coalesce(m.processed_at, m.updated_at) >= $3)
ORDER BY m.seq LIMIT $4
"""
# Conditions repeated in the UPDATEs so a row that changed since it was read is left alone.
RETRY = """
UPDATE mint_requests SET status = $2, batch_id = NULL, retry_count = retry_count + 1, processed_at = NULL,
    published_at = now(), updated_at = now()
WHERE id = ANY($1::uuid[]) AND status = 'failed' AND retry_count < $3
  AND (valid_before IS NULL OR payment_settled OR valid_before >= $4)
RETURNING id, kind, valid_before
"""
RESET_JOBS = """
UPDATE render_jobs SET status = 'waiting', attempts = 0, error = NULL, leased_by = NULL, lease_until = NULL,
    finished_at = NULL, updated_at = now()
WHERE request_id = ANY($1::uuid[])
"""


async def run(admin: Admin, args: argparse.Namespace) -> int:
    max_retries = args.max_retries
    if max_retries is None:
        tuned = await with_overrides(admin.pool, ConfirmerSettings(), TUNABLE)
        max_retries = tuned.max_retries
        origin = "the confirmer's max_retries"
    else:
        origin = "--max-retries"
    if max_retries < 1:
        raise UsageError(f"retry_count < {max_retries} matches nothing ({origin}); pass --max-retries N")
    earliest_expiry = int(time.time()) + args.expiry_margin
    verb = "would retry" if args.dry_run else "retried"
    print(
        f"retry-failed: retry_count < {max_retries} ({origin}); authorizations must stay valid past "
        f"{datetime.fromtimestamp(earliest_expiry, UTC):%Y-%m-%d %H:%M:%S} UTC"
    )

    to_pending, to_rendering, skipped = [], [], []
    progress = Progress("retry-failed", await _count(admin, max_retries, args.since))
    after_seq = 0
    while True:
        rows = await admin.pool.fetch(CANDIDATES, max_retries, after_seq, args.since, CHUNK)
        if not rows:
            break
        after_seq = rows[-1]["seq"]
        pending_ids, rendering_ids = [], []
        for row in rows:
            reason = _unpayable(row, earliest_expiry)
            if (
                reason is None
                and row["kind"] == "nft"
                and row["token_uri"] is None
                and row["job_status"] is None
            ):
                reason = "NFT request without a tokenURI or a render job"
            if reason is not None:
                skipped.append(f"{row['id']}  {reason}")
            elif row["kind"] == "nft" and row["token_uri"] is None:
                rendering_ids.append(row["id"])
            else:
                pending_ids.append(row["id"])
        if args.dry_run:
            to_pending += pending_ids
            to_rendering += rendering_ids
        else:
            moved = await _retry(admin, pending_ids, rendering_ids, max_retries, earliest_expiry)
            to_pending += moved[0]
            to_rendering += moved[1]
        progress.advance(len(rows))
    progress.finish()

    print(f"{verb} {len(to_pending) + len(to_rendering)} failed request(s)")
    print(f"  back to pending: {len(to_pending)}")
    if to_pending:
        print(listing(to_pending))
    print(f"  back to rendering (render job reset to waiting): {len(to_rendering)}")
    if to_rendering:
        print(listing(to_rendering))
    print(f"  skipped (cannot be retried): {len(skipped)}")
    if skipped:
        print(listing(skipped))
    return 0


def _unpayable(row: asyncpg.Record, earliest_expiry: int) -> str | None:
    if row["payment_settled"]:
        return None
    if row["valid_before"] is not None and row["valid_before"] < earliest_expiry:
        expired_at = datetime.fromtimestamp(row["valid_before"], UTC)
        return f"authorization expires {expired_at:%Y-%m-%d %H:%M:%S} UTC (validBefore {row['valid_before']})"
    if row["payment_type"] != "custom" and not row["has_authorization"]:
        return "no authorization to settle"
    return None


async def _count(admin: Admin, max_retries: int, since: datetime | None) -> int:
    return await admin.pool.fetchval(
        "SELECT count(*) FROM mint_requests WHERE status = 'failed' AND retry_count < $1"
        " AND ($2::timestamptz IS NULL OR coalesce(processed_at, updated_at) >= $2)",
        max_retries,
        since,
    )


async def _retry(
    admin: Admin, pending_ids: list, rendering_ids: list, max_retries: int, earliest_expiry: int
) -> tuple[list, list]:
    """Move one chunk in one transaction, then publish what moved."""
    async with admin.pool.acquire() as conn, conn.transaction():
        pending = await conn.fetch(RETRY, pending_ids, "pending", max_retries, earliest_expiry)
        rendering = await conn.fetch(RETRY, rendering_ids, "rendering", max_retries, earliest_expiry)
        await conn.execute(RESET_JOBS, [row["id"] for row in rendering])
    settings, names = admin.settings, admin.settings.keys
    await publish_many(
        admin.redis,
        names.stream(keys.MINT_REQUESTED),
        [MintRequested.of_row(r) for r in pending],
        settings.stream_maxlen,
    )
    await publish_many(
        admin.redis,
        names.stream(keys.RENDER_REQUESTED),
        [RenderRequested(request_id=str(r["id"])) for r in rendering],
        settings.stream_maxlen,
    )
    if rendering:
        # Intake answers GET /nft/job from this cache first: drop the cached `failed`.
        job_ids = [str(r["id"]) for r in rendering]
        await admin.redis.delete(*(names.render_job(i) for i in job_ids))
        for status in ("failed", "completed"):
            await admin.redis.zrem(names.render_finished(status), *job_ids)
    if len(pending) + len(rendering) < len(pending_ids) + len(rendering_ids):
        note("some requests changed while retrying them and were left alone")
    return [r["id"] for r in pending], [r["id"] for r in rendering]
