import os
from ipaddress import ip_network
from typing import Annotated, Any

from pydantic import AliasChoices, Field, IPvAnyNetwork, SecretStr, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from services.intake.callback_hosts import CallbackHosts
from shared.settings import Settings


def _cores() -> int:
    """The cores this process may run on (its CPU affinity, where the platform tells), else all."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class IntakeSettings(Settings):
    """Intake's knobs carry the INTAKE_ prefix (INTAKE_PORT, ...); WEBHOOK_SECRET is unprefixed."""

    model_config = SettingsConfigDict(env_prefix="INTAKE_", extra="ignore")

    # Signs every webhook body (HMAC-SHA256); never logged.
    webhook_secret: SecretStr = Field(validation_alias="WEBHOOK_SECRET", min_length=16)

    host: str = "127.0.0.1"
    port: int = Field(default=4021, ge=1, le=65535)
    # Processes serving the port together (SO_REUSEPORT) as one service: services/intake/workers.py;
    # by default one per core this process may run on. The database pool, the rate limits and the
    # live-stream caps below are each worker's own.
    workers: int = Field(default_factory=lambda: _cores(), ge=1, le=256)
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    access_log: bool = False
    shutdown_grace_seconds: float = Field(default=5.0, gt=0)

    db_pool_min: int = Field(default=2, ge=1)
    db_pool_max: int = Field(default=20, ge=1)

    # Kept-alive connections to the RPC node, and how long one JSON-RPC request may take.
    rpc_connections: int = Field(default=64, ge=1)
    rpc_timeout_seconds: float = Field(default=10.0, gt=0)
    # Chain reads of concurrent requests go out together as one JSON-RPC batch: at once when none is in
    # flight, else when it is answered, but never more than this after the first of them.
    rpc_coalesce_seconds: float = Field(default=0.005, ge=0)
    # The same for accepting requests: their intake_enqueue calls run in one statement, at most this
    # many together (services/intake/enqueue_batches.py).
    enqueue_coalesce_seconds: float = Field(default=0.002, ge=0)
    enqueue_batch_max: int = Field(default=32, ge=1, le=1000)

    # x402 `maxTimeoutSeconds`: clients sign authorizations valid this long.
    max_timeout_seconds: int = Field(default=900, ge=60)
    # An authorization must stay valid this long past its estimated batch time.
    expiry_margin_seconds: int = Field(default=60, ge=0)
    custom_payment_confirmations: int = Field(default=1, ge=1, le=100)

    # What the batcher and the chain carry, in mints per second: estimated waits (the ETA, the expiry
    # check) never assume less, so an outage's near-zero recent rate refuses no valid payment; the last
    # minute's completion rate is used where it is higher. Set it for the chain: mints per batch x
    # batches per block / block seconds (two 15M-gas batches of ~156 mints fill a 30M block: ~26/s at
    # Ethereum's 12 s blocks, ~156/s at 2 s; the README's anvil benchmark ran at ~246/s).
    capacity_mints_per_second: float = Field(
        default=50.0,
        gt=0,
        # The setting's former name, when waits used it only without recent history.
        validation_alias=AliasChoices("INTAKE_CAPACITY_MINTS_PER_SECOND", "INTAKE_FALLBACK_MINTS_PER_SECOND"),
    )
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
    # Webhooks go only to public addresses (services/intake/callback_hosts.py); these comma-separated
    # host names (`*.name` for subdomains) and CIDR networks are allowed anyway, for local development
    # ("localhost,127.0.0.0/8"). Empty (the default) allows nothing more.
    callback_allow: str = ""

    @field_validator("callback_allow")
    @classmethod
    def _callback_allow(cls, value: str) -> str:
        CallbackHosts.parse(value)  # a bad entry stops start-up with its name
        return value

    def callback_hosts(self) -> CallbackHosts:
        return CallbackHosts.parse(self.callback_allow)

    # The status page's live streams (GET /events/...): one watcher reads the watched requests every
    # poll interval and the queue's counts and batches every queue interval, for all streams at once.
    live_poll_seconds: float = Field(default=1.0, gt=0)
    live_queue_seconds: float = Field(default=2.0, gt=0)
    # A `: ping` comment on a stream idle this long, so proxies keep it open.
    live_keepalive_seconds: float = Field(default=15.0, gt=0)
    # Open streams at most (a status page holds two); more get 503 too_many_streams.
    live_max_streams: int = Field(default=2000, ge=1)
    # Open streams per client address (see the rate limits below for who the client is); more get 429.
    live_max_streams_per_client: int = Field(default=20, ge=1)

    # Rate limits (token buckets: `burst` requests at once, refilled at `per_second`), answered 429 with
    # Retry-After. Per client address on every route but /health and /metrics; per payer (the signer of
    # an authorization, or the `payer` a custom payment claims) on every paid request, before any chain
    # read. An IPv6 client counts per /64.
    rate_client_per_second: float = Field(default=20.0, gt=0)
    rate_client_burst: int = Field(default=100, ge=1)
    rate_payer_per_second: float = Field(default=2.0, gt=0)
    rate_payer_burst: int = Field(default=20, ge=1)
    # Clients in these networks skip the per-client limits (not the per-payer one): by default this
    # machine, where the benchmark, health checks and a local reverse proxy connect from. Behind a
    # proxy on this machine, list it in trusted_proxies so its clients count by their own address.
    # Comma-separated; empty exempts nobody.
    rate_exempt_networks: Annotated[list[IPvAnyNetwork], NoDecode] = Field(
        default_factory=lambda: [ip_network("127.0.0.0/8"), ip_network("::1/128")]
    )
    # Peers whose X-Forwarded-For is believed: the client is the nearest forwarded address that is not
    # one of them. Empty (the default): the client is the connection's peer.
    trusted_proxies: Annotated[list[IPvAnyNetwork], NoDecode] = Field(default_factory=list)
    # Buckets kept per limit; idle ones (full again) are dropped first, past this the least recent.
    rate_max_tracked: int = Field(default=100_000, ge=100)
    # GET /queue/status and the live queue stream read the counts at most this often.
    queue_counts_seconds: float = Field(default=1.0, gt=0)

    @field_validator("rate_exempt_networks", "trusted_proxies", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value
