"""`mintline reset-stuck`: put requests and render jobs that nothing will move again back on track.

- `batched` / `sent` requests whose batch is gone, reverted, or confirmed without settling them go
  back to `pending` (through `confirmation_failed`, so the history says why) and are republished.
  Re-sending is safe: the contract skips a paymentId it has seen and the confirmer then finds the
  earlier mint. Requests of batches still `signed` / `sent` are never touched: the confirmer watches
  those and settles them from their receipts.
- `active` render jobs whose lease ran out long ago are made to match their request: `waiting` (and
  republished) while the request is still rendering, `failed` or `completed` when it moved on.
- `pending` / `rendering` requests not published for longer than the threshold are published again.
"""

import argparse
import uuid
from dataclasses import dataclass, field
from typing import Any

from admin.audit import audited
from admin.common import Admin, UsageError, listing, note
from services.intake.replay import replay_pending
from services.intake.settings import IntakeSettings
from shared import keys
from shared.events import REQUESTED_COLUMNS, MintRequested, RenderRequested
from shared.streams import publish_many

ORPHANED = """
SELECT m.id, m.batch_id, coalesce('batch ' || b.id || ' ' || b.status, 'batch ' || m.batch_id || ' missing',
                                  'no batch') AS why
FROM mint_requests m LEFT JOIN batches b ON b.id = m.batch_id
WHERE m.status IN ('batched', 'sent') AND (b.id IS NULL OR b.status IN ('reverted', 'confirmed'))
  AND m.updated_at < now() - make_interval(secs => $1)
ORDER BY m.seq
"""
TO_CONFIRMATION_FAILED = """
UPDATE mint_requests AS m SET status = 'confirmation_failed', error_message = 'reset-stuck: ' || c.why,
    updated_at = now()
FROM unnest($1::uuid[], $2::text[]) AS c(id, why)
WHERE m.id = c.id AND m.status IN ('batched', 'sent')
  AND NOT EXISTS (SELECT 1 FROM batches b WHERE b.id = m.batch_id AND b.status IN ('signed', 'sent'))
RETURNING m.id
"""
BACK_TO_PENDING = f"""
UPDATE mint_requests SET status = 'pending', batch_id = NULL, published_at = now(), updated_at = now()
WHERE id = ANY($1::uuid[]) AND status = 'confirmation_failed'
RETURNING {REQUESTED_COLUMNS}
"""
LAPSED_JOBS = """
SELECT j.request_id, m.status AS request_status, m.token_uri IS NOT NULL AS has_token_uri,
       CASE WHEN m.status = 'rendering' THEN 'waiting'
            WHEN m.status = 'failed' THEN 'failed'
            WHEN m.token_uri IS NOT NULL THEN 'completed' END AS repair
FROM render_jobs j JOIN mint_requests m ON m.id = j.request_id
WHERE j.status = 'active' AND coalesce(j.lease_until, j.updated_at) < now() - make_interval(secs => $1)
ORDER BY j.created_at
"""
REPAIR_JOBS = """
UPDATE render_jobs AS j SET status = c.repair, leased_by = NULL, lease_until = NULL, updated_at = now(),
    progress = CASE WHEN c.repair = 'completed' THEN 100 ELSE j.progress END,
    error = CASE WHEN c.repair = 'failed' THEN coalesce(m.error_message, j.error) ELSE j.error END,
    finished_at = CASE WHEN c.repair = 'waiting' THEN NULL ELSE now() END
FROM unnest($1::uuid[], $2::text[]) AS c(id, repair), mint_requests m
WHERE j.request_id = c.id AND m.id = c.id AND j.status = 'active'
  AND coalesce(j.lease_until, j.updated_at) < now() - make_interval(secs => $3)
RETURNING j.request_id, c.repair
"""
REPAIRS = ("waiting", "failed", "completed")
STALE_PUBLISHED = """
SELECT count(*) FROM mint_requests
WHERE status IN ('pending', 'rendering') AND published_at <= now() - make_interval(secs => $1)
"""


@dataclass
class Repaired:
    """What reset-stuck did (or, in a dry run, would do)."""

    older_than: float
    dry_run: bool
    requeued: list[tuple[uuid.UUID, str]] = field(default_factory=list)  # (request, why)
    jobs: dict[str, list[uuid.UUID]] = field(default_factory=dict)  # repair -> render jobs
    left_alone: list[tuple[uuid.UUID, str]] = field(default_factory=list)  # (job, request status)
    republished: int = 0

    def summary(self) -> dict[str, Any]:
        return {
            "olderThanSeconds": self.older_than,
            "dryRun": self.dry_run,
            "requeued": [{"id": str(i), "reason": why} for i, why in self.requeued],
            "renderJobs": {repair: [str(i) for i in ids] for repair, ids in self.jobs.items()},
            "leftAlone": [{"id": str(i), "requestStatus": status} for i, status in self.left_alone],
            "republished": self.republished,
        }


async def run(admin: Admin, args: argparse.Namespace) -> int:
    dry = args.dry_run
    older_than = float(args.older_than)
    print(f"reset-stuck: older than {older_than:.0f} s{' (dry run: nothing changes)' if dry else ''}")
    done = await reset_stuck(admin, older_than=older_than, dry_run=dry, progress=True)
    print(f"  batched/sent requests whose batch is closed or missing -> pending: {len(done.requeued)}")
    if done.requeued:
        print(listing([f"{i}  ({why})" for i, why in done.requeued]))
    for repair in REPAIRS:
        ids = done.jobs[repair]
        print(f"  active render jobs with a lapsed lease -> {repair}: {len(ids)}")
        if ids:
            print(listing(ids))
    if done.left_alone:
        print(f"  left alone (request moved on without a tokenURI): {len(done.left_alone)}")
        print(listing([f"{i}  (request {status})" for i, status in done.left_alone]))
    print(f"  pending/rendering requests unpublished for longer -> republished: {done.republished}")
    return 0


async def reset_stuck(
    admin: Admin, *, older_than: float = 600.0, dry_run: bool = False, progress: bool = False
) -> Repaired:
    """Repair what nothing else will move again (see the module's description); audited unless a dry
    run."""
    if older_than < 0:
        raise UsageError("older than must be 0 or more seconds")
    done = Repaired(older_than, dry_run)
    if dry_run:
        await _reset(admin, done, progress)
        return done
    async with audited(admin, "reset-stuck", {"olderThanSeconds": older_than}) as entry:
        await _reset(admin, done, progress)
        entry.result = done.summary()
    return done


async def _reset(admin: Admin, done: Repaired, progress: bool) -> None:
    older_than, dry = done.older_than, done.dry_run
    orphaned = await admin.pool.fetch(ORPHANED, older_than)
    if not dry and orphaned:
        orphaned = await _requeue(admin, orphaned)
    done.requeued = [(row["id"], row["why"]) for row in orphaned]

    lapsed = await admin.pool.fetch(LAPSED_JOBS, older_than)
    done.left_alone = [(row["request_id"], row["request_status"]) for row in lapsed if row["repair"] is None]
    repairs = [row for row in lapsed if row["repair"] is not None]
    if not dry and repairs:
        repairs = await _repair_jobs(admin, repairs, older_than)
    done.jobs = {
        repair: [row["request_id"] for row in repairs if row["repair"] == repair] for repair in REPAIRS
    }

    if dry:
        done.republished = await admin.pool.fetchval(STALE_PUBLISHED, older_than)
    else:
        if progress:
            note("republishing pending/rendering requests not published recently ...")
        done.republished = await replay_pending(admin.pool, admin.redis, intake_settings(admin), older_than)


def intake_settings(admin: Admin) -> IntakeSettings:
    """Intake's settings for its replay function, without the webhook secret it never reads there."""
    return IntakeSettings.model_construct(**admin.settings.model_dump())


async def _requeue(admin: Admin, rows: list) -> list:
    async with admin.pool.acquire() as conn, conn.transaction():
        marked = await conn.fetch(TO_CONFIRMATION_FAILED, [r["id"] for r in rows], [r["why"] for r in rows])
        requeued = await conn.fetch(BACK_TO_PENDING, [r["id"] for r in marked])
    await publish_many(
        admin.redis,
        admin.settings.keys.stream(keys.MINT_REQUESTED),
        [MintRequested.of_row(r) for r in requeued],
        admin.settings.stream_maxlen,
    )
    moved = {r["id"] for r in requeued}
    return [row for row in rows if row["id"] in moved]


async def _repair_jobs(admin: Admin, rows: list, older_than: float) -> list:
    async with admin.pool.acquire() as conn, conn.transaction():
        repaired = await conn.fetch(
            REPAIR_JOBS, [r["request_id"] for r in rows], [r["repair"] for r in rows], older_than
        )
        waiting = [r["request_id"] for r in repaired if r["repair"] == "waiting"]
        await conn.execute(
            "UPDATE mint_requests SET published_at = now() WHERE id = ANY($1::uuid[])", waiting
        )
    names = admin.settings.keys
    await publish_many(
        admin.redis,
        names.stream(keys.RENDER_REQUESTED),
        [RenderRequested(request_id=str(i)) for i in waiting],
        admin.settings.stream_maxlen,
    )
    if repaired:
        # The cached job status in Redis is stale now; intake falls back to PostgreSQL without it.
        await admin.redis.delete(*(names.render_job(str(r["request_id"])) for r in repaired))
    return list(repaired)
