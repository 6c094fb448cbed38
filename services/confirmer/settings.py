from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import Settings

TUNABLE = ("confirmations", "stuck_after_blocks", "max_retries")


class ConfirmerSettings(Settings):
    model_config = SettingsConfigDict(env_prefix="CONFIRMER_", extra="ignore")

    metrics_port: int = 9102
    metrics_host: str = "127.0.0.1"
    # A batch is settled once its block is this deep (the local chain may use fewer)...
    confirmations: int = Field(3, ge=1, le=100)
    # ...and watched until its block is final: the chain's `finalized` block, or this deep where the
    # chain names none. A batch reorged out before that is reopened (see finality.py).
    finality_depth: int = Field(64, ge=1)
    finality_check_seconds: float = Field(2.0, gt=0)
    poll_interval_seconds: float = Field(0.25, gt=0)
    # A transaction with no receipt this many blocks after it was first watched gets a fee bump.
    stuck_after_blocks: int = Field(5, ge=1)
    # A batch whose nonce is used by some other transaction is given up this many blocks later.
    dropped_after_blocks: int = Field(10, ge=1)
    max_retries: int = Field(3, ge=0, le=20)
    reload_seconds: float = Field(2.0, gt=0)
    settings_refresh_seconds: float = Field(5.0, gt=0)
