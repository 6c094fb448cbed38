"""Every Redis stream, consumer group and key name in one place (as arq keeps its constants).

Every key of a namespace starts with the namespace as a Redis Cluster hash tag (`{mintline}:...`):
a cluster hashes only the part inside the braces, so all of a deployment's keys live in one slot and
multi-key commands and pipelines over them (a DEL of many render jobs, the stream gauges' one
pipeline) work on a Redis Cluster as they do on one server.
"""

import re
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

# A namespace goes inside a hash tag: braces would end the tag early, and glob characters would make
# `pattern` match other namespaces' keys.
NAMESPACE = re.compile(r"[A-Za-z0-9_.-]{1,64}")


@dataclass(frozen=True)
class Keys:
    """Names under one namespace, so tests (and several deployments) never share a stream."""

    namespace: str = "mintline"

    def __post_init__(self) -> None:
        if not NAMESPACE.fullmatch(self.namespace):
            raise ValueError(f"namespace {self.namespace!r} must match {NAMESPACE.pattern}")

    @property
    def prefix(self) -> str:
        """`{namespace}`: the hash tag every key of the namespace starts with."""
        return f"{{{self.namespace}}}"

    @property
    def pattern(self) -> str:
        """A SCAN MATCH pattern for every key of the namespace."""
        return f"{self.prefix}:*"

    def stream(self, name: str) -> str:
        return f"{self.prefix}:{name}"

    def dead(self, name: str) -> str:
        return f"{self.prefix}:{name}.dead"

    def render_job(self, job_id: str) -> str:
        """A render job's latest status (JSON): the fast path of GET /nft/job; PostgreSQL keeps all."""
        return f"{self.prefix}:render:job:{job_id}"

    def render_finished(self, status: str) -> str:
        """Sorted set (by finish time) of the jobs kept in Redis with this final status."""
        return f"{self.prefix}:render:{status}"

    def alive(self, service: str) -> str:
        """A marker a service sets after replaying its streams: its absence means Redis lost data."""
        return f"{self.prefix}:alive:{service}"
