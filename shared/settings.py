"""Settings from the environment: one base object, subclassed per service with its own prefix.

Connection URLs keep their conventional unprefixed names (REDIS_URL, DATABASE_URL, RPC_URL) so one
environment serves every service; tuning knobs carry the service's prefix (BATCHER_BATCH_SIZE, ...).
"""

from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.deploy import Deployment
from shared.keys import NAMESPACE, Keys


def _env(name: str, default: Any = ..., **kwargs: Any) -> Any:
    return Field(default, validation_alias=AliasChoices(name), **kwargs)  # type: ignore[call-overload]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", frozen=False)

    redis_url: str = _env("REDIS_URL")
    database_url: str = _env("DATABASE_URL")
    # "pgbouncer": DATABASE_URL goes through PgBouncer (or another pooler) in transaction pooling mode,
    # where each transaction may run on another server connection: nothing may outlive a transaction
    # (shared/db.py: no prepared statement cache, no session reset; no session locks, LISTEN or SET).
    database_pooler: Literal["none", "pgbouncer"] = _env("DATABASE_POOLER", "none")
    rpc_url: str | None = _env("RPC_URL", None)
    # Several endpoints, comma-separated (reads fail over in order; raw transactions go to all of
    # them). Takes precedence over RPC_URL.
    rpc_urls: str = _env("RPC_URLS", "")
    deployment_file: Path = _env("DEPLOYMENT_FILE", Path(".run/deployment.json"))
    # The Redis hash tag of every key (shared/keys.py): letters, digits, `_`, `.`, `-`.
    namespace: str = _env("MINTLINE_NAMESPACE", "mintline", pattern=f"^{NAMESPACE.pattern}$")
    log_level: str = _env("LOG_LEVEL", "INFO")
    stream_maxlen: int = _env("STREAM_MAXLEN", 500_000, gt=1000)
    # The most blocks one eth_getLogs query spans (hosted providers cap it, often at 2,000).
    rpc_max_log_range: int = _env("RPC_MAX_LOG_RANGE", 2000, ge=1)
    # The most calls one JSON-RPC batch carries (hosted providers cap it, or refuse large batches).
    rpc_max_batch: int = _env("RPC_MAX_BATCH", 100, ge=1)

    @property
    def transaction_pooling(self) -> bool:
        return self.database_pooler != "none"

    @cached_property
    def deployment(self) -> Deployment:
        return Deployment.load(self.deployment_file)

    @property
    def chain_rpc_url(self) -> str:
        return self.chain_rpc_urls[0]

    @property
    def chain_rpc_urls(self) -> list[str]:
        """RPC_URLS, else RPC_URL, else the deployment file's endpoint."""
        listed = [url.strip() for url in self.rpc_urls.split(",") if url.strip()]
        return listed or [self.rpc_url or self.deployment.rpc_url]

    @cached_property
    def keys(self) -> Keys:
        return Keys(self.namespace)
