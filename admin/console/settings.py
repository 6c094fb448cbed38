"""The console's settings: CONSOLE_ prefix, the connection URLs of every service (shared/settings.py)."""

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from shared.settings import Settings

TOKEN_MIN_LENGTH = 16


class ConsoleSettings(Settings):
    model_config = SettingsConfigDict(env_prefix="CONSOLE_", extra="ignore")

    # Required: without a token there is no console (never an open one). Operators give it as the
    # password of HTTP basic credentials (their name as the user: the audit's `actor`) or as a bearer
    # token. Never logged.
    token: SecretStr = Field(min_length=TOKEN_MIN_LENGTH)
    host: str = "127.0.0.1"
    port: int = Field(default=4030, ge=1, le=65535)
    access_log: bool = False
    shutdown_grace_seconds: float = Field(default=3.0, gt=0)
    # How often the live view (SSE) reads the queue, the streams and the wallets.
    live_seconds: float = Field(default=2.0, gt=0)
    # Idle live streams get a comment this often, so proxies keep them open.
    keepalive_seconds: float = Field(default=15.0, gt=0)
    max_live_streams: int = Field(default=32, ge=1)
    # Render previews are fetched from the gateway the renderer recorded (render_jobs.image_url).
    gateway_timeout_seconds: float = Field(default=10.0, gt=0)
    preview_max_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)
