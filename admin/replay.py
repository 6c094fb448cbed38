"""`mintline replay-streams`: rebuild the streams from PostgreSQL with the services' own replay
functions (the ones they run when Redis loses their marker). Consumers are idempotent, so an entry
published twice changes nothing."""

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from admin.audit import audited
from admin.common import Admin, note
from admin.stuck import intake_settings
from services.confirmer.replay import replay as replay_outcomes
from services.confirmer.settings import ConfirmerSettings
from services.intake.replay import replay_pending


@dataclass(frozen=True)
class Replayed:
    requests: int  # mint.requested / render.requested
    outcomes: int  # mint.completed / mint.failed

    def summary(self) -> dict[str, Any]:
        return {"requests": self.requests, "outcomes": self.outcomes}


async def run(admin: Admin, args: argparse.Namespace) -> int:
    done = await replay_streams(admin, progress=note)
    print(
        f"replay-streams: {done.requests} requests republished (mint.requested / render.requested), "
        f"{done.outcomes} outcomes republished (mint.completed / mint.failed)"
    )
    return 0


async def replay_streams(admin: Admin, progress: Callable[[str], None] = lambda _: None) -> Replayed:
    async with audited(admin, "replay-streams", {}) as entry:
        counts = await admin.pool.fetch(
            "SELECT status, count(*) AS count FROM mint_requests"
            " WHERE status IN ('pending', 'rendering') GROUP BY status"
        )
        queued = {row["status"]: row["count"] for row in counts}
        progress(
            f"[1/2] mint.requested / render.requested: {queued.get('pending', 0)} pending and "
            f"{queued.get('rendering', 0)} rendering requests ..."
        )
        requests = await replay_pending(admin.pool, admin.redis, intake_settings(admin))
        progress(f"[1/2] published {requests}")
        progress("[2/2] mint.completed / mint.failed: outcomes whose webhook was never queued ...")
        confirmer = ConfirmerSettings.model_construct(**admin.settings.model_dump())
        outcomes = await replay_outcomes(admin.pool, admin.redis, confirmer)
        progress(f"[2/2] published {outcomes}")
        done = Replayed(requests, outcomes)
        entry.result = done.summary()
    return done
