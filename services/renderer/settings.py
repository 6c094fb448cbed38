from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import SettingsConfigDict

from services.renderer.pinata import PINATA_API_URL, PINATA_GATEWAY_URL, PinataPinner
from services.renderer.pinning import Pinner
from services.renderer.pinstore import LocalPinStore
from shared.settings import Settings


class RendererSettings(Settings):
    model_config = SettingsConfigDict(env_prefix="RENDERER_", extra="ignore")

    # /metrics, /health and, with the local pin store, the IPFS gateway (GET /ipfs/{cid}).
    metrics_port: int = 9103
    metrics_host: str = "127.0.0.1"

    concurrency: int = Field(2, ge=1, le=32)
    # Upper bound of one job's memory (the render process's address space beyond its start);
    # a job's own budget comes from its settings and is capped by this.
    max_job_memory_mb: int = Field(1024, ge=16)
    max_attempts: int = Field(3, ge=1, le=20)
    retry_base_seconds: float = Field(2.0, ge=0)
    retry_max_seconds: float = Field(60.0, gt=0)
    # A job whose renderer stops renewing its lease (killed mid-job) is taken over after this long.
    lease_seconds: float = Field(30.0, ge=1)
    shutdown_grace_seconds: float = Field(10.0, ge=0)
    # Jobs kept in Redis for fast status reads; PostgreSQL keeps every job.
    keep_completed: int = Field(100, ge=0)
    keep_failed: int = Field(500, ge=0)

    pin_backend: Literal["local", "pinata"] = "local"
    pin_dir: Path = Path(".run/ipfs")
    # How clients reach the local gateway (this service's HTTP port).
    gateway_url: str = "http://127.0.0.1:9103"
    pinata_jwt: SecretStr | None = Field(None, validation_alias=AliasChoices("RENDERER_PINATA_JWT"))
    pinata_api_url: str = PINATA_API_URL
    pinata_gateway_url: str = PINATA_GATEWAY_URL
    pinata_requests_per_second: float = Field(2.0, gt=0)
    pinata_burst: int = Field(4, ge=1)
    pinata_max_attempts: int = Field(5, ge=1)

    def pinner(self) -> Pinner:
        """The pinning backend these settings choose."""
        if self.pin_backend == "local":
            return LocalPinStore(self.pin_dir, self.gateway_url)
        if self.pinata_jwt is None or not self.pinata_jwt.get_secret_value():
            raise ValueError("the pinata pinning backend needs a JWT: set RENDERER_PINATA_JWT")
        return PinataPinner(
            self.pinata_jwt,
            api_url=self.pinata_api_url,
            gateway_base_url=self.pinata_gateway_url,
            requests_per_second=self.pinata_requests_per_second,
            burst=self.pinata_burst,
            max_attempts=self.pinata_max_attempts,
        )
