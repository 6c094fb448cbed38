"""The console's settings: CONSOLE_ prefix, the connection URLs of every service (shared/settings.py)."""

from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from admin.console.credentials import Credentials, load
from shared.settings import Settings

TOKEN_MIN_LENGTH = 16


class ConsoleSettings(Settings):
    model_config = SettingsConfigDict(env_prefix="CONSOLE_", extra="ignore")

    # Credentials (credentials.py), one kind or the other, required: there is no open console.
    # Per operator: entries `name:sha256:<hash of the token>`, from a file (one a line) or inline
    # (one a line or comma-separated), as `mintline console-token NAME` prints them.
    operators_file: Path | None = None
    operators: str | None = Field(default=None, repr=False)
    # Or one token shared by everyone (the HTTP basic user name is what the client says). Never logged.
    token: SecretStr | None = Field(default=None, min_length=TOKEN_MIN_LENGTH)
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

    @field_validator("operators_file", "operators", "token", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # compose passes an unset variable on as an empty one (`${CONSOLE_TOKEN:-}`).
        return None if isinstance(value, str) and not value.strip() else value

    def credentials(self) -> Credentials:
        """The configured credentials (the operators file read now); CredentialsError if none or bad."""
        token = self.token.get_secret_value() if self.token is not None else None
        return load(token, self.operators, self.operators_file)
