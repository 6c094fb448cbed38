"""`mintline retry-failed`: failed requests get another attempt.

A token request (or an NFT request whose metadata is pinned) goes back to `pending`; an NFT request
that failed before its tokenURI existed goes back to `rendering`, its render job to `waiting`. The
retry count goes up by one; the failure stays in mint_request_history. Events go out after the
commit. A request whose payment can no longer settle is skipped and reported: its authorization
expires within the margin (and was not settled already), or it has no authorization to settle.
"""

import argparse
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg

from admin.audit import audited
from admin.common import Admin, Progress, UsageError, listing, note
from services.confirmer.settings import TUNABLE, ConfirmerSettings
from shared import keys
from shared.events import REQUESTED_COLUMNS, MintRequested, RenderRequested
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
RETRY = f"""
UPDATE mint_requests SET status = $2, batch_id = NULL, retry_count = retry_count + 1, processed_at = NULL,
    published_at = now(), updated_at = now()
WHERE id = ANY($1::uuid[]) AND status = 'failed' AND retry_count < $3
  AND (valid_before IS NULL OR payment_settled OR valid_before >= $4)
RETURNING {REQUESTED_COLUMNS}
"""
RESET_JOBS = """
UPDATE render_jobs SET status = 'waiting', attempts = 0, error = NULL, leased_by = NULL, lease_until = NULL,
    finished_at = NULL, updated_at = now()
WHERE request_id = ANY($1::uuid[])
"""


@dataclass
class Retried:
    """What retry-failed did (or, in a dry run, would do)."""

    max_retries: int
    origin: str
    earliest_expiry: int
    dry_run: bool
    to_pending: list[uuid.UUID] = field(default_factory=list)
    to_rendering: list[uuid.UUID] = field(default_factory=list)
    skipped: list[tuple[uuid.UUID, str]] = field(default_factory=list)  # (request, why)
    changed_meanwhile: int = 0

    def summary(self) -> dict[str, Any]:
        return {
            "maxRetries": self.max_retries,
            "earliestExpiry": self.earliest_expiry,
            "dryRun": self.dry_run,
            "retried": len(self.to_pending) + len(self.to_rendering),
            "toPending": [str(i) for i in self.to_pending],
            "toRendering": [str(i) for i in self.to_rendering],
            "skipped": [{"id": str(i), "reason": why} for i, why in self.skipped],
            "changedMeanwhile": self.changed_meanwhile,
        }


async def run(admin: Admin, args: argparse.Namespace) -> int:
    done = await retry_failed(
        admin,
        max_retries=args.max_retries,
        since=args.since,
        expiry_margin=args.expiry_margin,
        dry_run=args.dry_run,
        progress=True,
    )
    verb = "would retry" if done.dry_run else "retried"
    print(
        f"retry-failed: retry_count < {done.max_retries} ({done.origin}); authorizations must stay valid "
        f"past {datetime.fromtimestamp(done.earliest_expiry, UTC):%Y-%m-%d %H:%M:%S} UTC"
    )
    if done.changed_meanwhile:
        note("some requests changed while retrying them and were left alone")
    print(f"{verb} {len(done.to_pending) + len(done.to_rendering)} failed request(s)")
    print(f"  back to pending: {len(done.to_pending)}")
    if done.to_pending:
        print(listing(done.to_pending))
    print(f"  back to rendering (render job reset to waiting): {len(done.to_rendering)}")
    if done.to_rendering:
        print(listing(done.to_rendering))
    print(f"  skipped (cannot be retried): {len(done.skipped)}")
    if done.skipped:
        print(listing([f"{i}  {why}" for i, why in done.skipped]))
    return 0


async def retry_failed(
    admin: Admin,
    *,
    max_retries: int | None = None,
    since: datetime | None = None,
    expiry_margin: int = 60,
    dry_run: bool = False,
    progress: bool = False,
) -> Retried:
    """Failed requests with retry_count < max_retries (default: the confirmer's effective
    max_retries) that failed since `since` get another attempt; audited unless a dry run."""
    if max_retries is None:
        tuned = await with_overrides(admin.pool, ConfirmerSettings(), TUNABLE)
        max_retries, origin = tuned.max_retries, "the confirmer's max_retries"
    else:
        origin = "--max-retries"
    if max_retries < 1:
        raise UsageError(f"retry_count < {max_retries} matches nothing ({origin}); pass --max-retries N")
    if expiry_margin < 0:
        raise UsageError("the expiry margin must be 0 or more seconds")
    done = Retried(max_retries, origin, int(time.time()) + expiry_margin, dry_run)
    if dry_run:
        await _retry_all(admin, done, since, progress)
        return done
    params = {"maxRetries": max_retries, "since": since, "expiryMargin": expiry_margin}
    async with audited(admin, "retry-failed", params) as entry:
        await _retry_all(admin, done, since, progress)
        entry.result = done.summary()
    return done


async def _retry_all(admin: Admin, done: Retried, since: datetime | None, progress: bool) -> None:
    shown = Progress("retry-failed", await _count(admin, done.max_retries, since)) if progress else None
    after_seq = 0
    while True:
        rows = await admin.pool.fetch(CANDIDATES, done.max_retries, after_seq, since, CHUNK)
        if not rows:
            break
        after_seq = rows[-1]["seq"]
        pending_ids, rendering_ids = [], []
        for row in rows:
            reason = _unpayable(row, done.earliest_expiry)
            if (
                reason is None
                and row["kind"] == "nft"
                and row["token_uri"] is None
                and row["job_status"] is None
            ):
                reason = "NFT request without a tokenURI or a render job"
            if reason is not None:
                done.skipped.append((row["id"], reason))
            elif row["kind"] == "nft" and row["token_uri"] is None:
                rendering_ids.append(row["id"])
            else:
                pending_ids.append(row["id"])
        if done.dry_run:
            done.to_pending += pending_ids
            done.to_rendering += rendering_ids
        else:
            pending, rendering = await _retry(
                admin, pending_ids, rendering_ids, done.max_retries, done.earliest_expiry
            )
            done.to_pending += pending
            done.to_rendering += rendering
            done.changed_meanwhile += len(pending_ids) + len(rendering_ids) - len(pending) - len(rendering)
        if shown:
            shown.advance(len(rows))
    if shown:
        shown.finish()


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
    return [r["id"] for r in pending], [r["id"] for r in rendering]
