from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from shared.settings import Settings


class IntakeSettings(Settings):
    """Intake's knobs carry the INTAKE_ prefix (INTAKE_PORT, ...); WEBHOOK_SECRET is unprefixed."""

    model_config = SettingsConfigDict(env_prefix="INTAKE_", extra="ignore")

    # Signs every webhook body (HMAC-SHA256); never logged.
    webhook_secret: SecretStr = Field(validation_alias="WEBHOOK_SECRET", min_length=16)

    host: str = "127.0.0.1"
    port: int = Field(default=4021, ge=1, le=65535)
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    access_log: bool = False
    shutdown_grace_seconds: float = Field(default=5.0, gt=0)

    db_pool_min: int = Field(default=2, ge=1)
    db_pool_max: int = Field(default=20, ge=1)

    # Kept-alive connections to the RPC node, and how long one JSON-RPC request may take.
    rpc_connections: int = Field(default=64, ge=1)
    rpc_timeout_seconds: float = Field(default=10.0, gt=0)

    # x402 `maxTimeoutSeconds`: clients sign authorizations valid this long.
    max_timeout_seconds: int = Field(default=900, ge=60)
    # An authorization must stay valid this long past its estimated batch time.
    expiry_margin_seconds: int = Field(default=60, ge=0)
    custom_payment_confirmations: int = Field(default=1, ge=1, le=100)

    # Estimated waits use the last minute's completion rate, or this rate without enough history.
    fallback_mints_per_second: float = Field(default=50.0, gt=0)
    # Fewer completions than this in the last minute count as no history (they show demand, not capacity).
    throughput_min_sample: int = Field(default=100, ge=1)
    throughput_refresh_seconds: float = Field(default=2.0, gt=0)
    # How often the queue-depth gauges (every stream's length, pending and lag) are read from Redis.
    stream_metrics_seconds: float = Field(default=5.0, gt=0)

    # Pending rows published longer ago than this are published again (a lost XADD never strands one).
    republish_after_seconds: float = Field(default=120.0, gt=0)
    republish_interval_seconds: float = Field(default=30.0, gt=0)
    replay_chunk: int = Field(default=1000, ge=1)

    webhook_max_attempts: int = Field(default=8, ge=1, le=50)
    webhook_timeout_seconds: float = Field(default=10.0, gt=0)
    webhook_backoff_base_seconds: float = Field(default=1.0, gt=0)
    webhook_backoff_max_seconds: float = Field(default=600.0, gt=0)
    webhook_concurrency: int = Field(default=16, ge=1)
    webhook_poll_seconds: float = Field(default=1.0, gt=0)

    # The status page's live streams (GET /events/...): one watcher reads the watched requests every
    # poll interval and the queue's counts and batches every queue interval, for all streams at once.
    live_poll_seconds: float = Field(default=1.0, gt=0)
    live_queue_seconds: float = Field(default=2.0, gt=0)
    # A `: ping` comment on a stream idle this long, so proxies keep it open.
    live_keepalive_seconds: float = Field(default=15.0, gt=0)
    # Open streams at most (a status page holds two); more get 503 too_many_streams.
    live_max_streams: int = Field(default=2000, ge=1)
