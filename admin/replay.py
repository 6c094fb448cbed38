"""`mintline replay-streams`: rebuild the streams from PostgreSQL with the services' own replay
functions (the ones they run when Redis loses their marker). Consumers are idempotent, so an entry
published twice changes nothing."""

import argparse

from admin.common import Admin, note
from admin.stuck import intake_settings
from services.confirmer.settings import ConfirmerSettings
from services.confirmer.worker import replay as replay_outcomes
from services.intake.replay import replay_pending


async def run(admin: Admin, args: argparse.Namespace) -> int:
    counts = await admin.pool.fetch(
        "SELECT status, count(*) AS count FROM mint_requests"
        " WHERE status IN ('pending', 'rendering') GROUP BY status"
    )
    queued = {row["status"]: row["count"] for row in counts}
    note(
        f"[1/2] mint.requested / render.requested: {queued.get('pending', 0)} pending and "
        f"{queued.get('rendering', 0)} rendering requests ..."
    )
    requests = await replay_pending(admin.pool, admin.redis, intake_settings(admin))
    note(f"[1/2] published {requests}")
    note("[2/2] mint.completed / mint.failed: outcomes whose webhook was never queued ...")
    confirmer = ConfirmerSettings.model_construct(**admin.settings.model_dump())
    outcomes = await replay_outcomes(admin.pool, admin.redis, confirmer)
    note(f"[2/2] published {outcomes}")
    print(
        f"replay-streams: {requests} requests republished (mint.requested / render.requested), "
        f"{outcomes} outcomes republished (mint.completed / mint.failed)"
    )
    return 0
