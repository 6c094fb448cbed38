"""Every Redis stream, consumer group and key name in one place (as arq keeps its constants)."""

from dataclasses import dataclass

MINT_REQUESTED = "mint.requested"
RENDER_REQUESTED = "render.requested"
TX_SENT = "tx.sent"
TX_STUCK = "tx.stuck"
MINT_COMPLETED = "mint.completed"
MINT_FAILED = "mint.failed"
# Every stream above, for whatever looks at all of them (the queue-depth gauges).
STREAMS = (RENDER_REQUESTED, MINT_REQUESTED, TX_SENT, TX_STUCK, MINT_COMPLETED, MINT_FAILED)

# Consumer groups are named after the service that reads.
INTAKE = "intake"
BATCHER = "batcher"
CONFIRMER = "confirmer"
RENDERER = "renderer"


@dataclass(frozen=True)
class Keys:
    """Names under one namespace, so tests (and several deployments) never share a stream."""

    namespace: str = "mintline"

    def stream(self, name: str) -> str:
        return f"{self.namespace}:{name}"

    def dead(self, name: str) -> str:
        return f"{self.namespace}:{name}.dead"

    def render_job(self, job_id: str) -> str:
        """A render job's latest status (JSON): the fast path of GET /nft/job; PostgreSQL keeps all."""
        return f"{self.namespace}:render:job:{job_id}"

    def render_finished(self, status: str) -> str:
        """Sorted set (by finish time) of the jobs kept in Redis with this final status."""
        return f"{self.namespace}:render:{status}"

    def alive(self, service: str) -> str:
        """A marker a service sets after replaying its streams: its absence means Redis lost data."""
        return f"{self.namespace}:alive:{service}"
