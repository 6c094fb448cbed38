from eth_account import Account
from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import SettingsConfigDict

from shared.settings import Settings

# Knobs that `system_settings` may override at run time.
TUNABLE = (
    "batch_size",
    "batch_window_seconds",
    "gas_budget",
    "gas_per_entry",
    "nft_gas_per_entry",
    "max_in_flight",
    "fee_bump_percent",
    "priority_fee_gwei",
    "tip_percentile",
    "max_fee_gwei",
    "max_fee_bumps",
    "ageing_multiple",
    "lane_lookahead",
)


class BatcherSettings(Settings):
    # Errors never quote what was given: a signer key is a secret.
    model_config = SettingsConfigDict(env_prefix="BATCHER_", extra="ignore", hide_input_in_errors=True)

    # The signer wallets: BATCHER_PRIVATE_KEYS (comma-separated; one batcher per wallet in this process)
    # takes precedence over BATCHER_PRIVATE_KEY (one wallet), as RPC_URLS does over RPC_URL.
    private_key: SecretStr | None = Field(None, validation_alias="BATCHER_PRIVATE_KEY")
    private_keys: SecretStr | None = Field(
        None, validation_alias="BATCHER_PRIVATE_KEYS", validate_default=True
    )
    metrics_port: int = 9101
    metrics_host: str = "127.0.0.1"

    batch_size: int = Field(300, ge=1, le=2000)
    batch_window_seconds: float = Field(1.0, gt=0, le=60)
    # A batch also closes when its gas limit would pass the budget. A block only takes transactions
    # whose limits fit what is left of it, so one batch sized to most of a 30M block carries the most.
    gas_budget: int = Field(28_000_000, ge=200_000)
    # The most gas one transaction may use: 2^24 on Ethereum since EIP-7825. Batches also stay within
    # the block gas limit read from the chain (see batching.batch_gas_target).
    max_tx_gas: int = Field(16_777_216, ge=200_000)
    # Geth (and most nodes) refuse a transaction over 128 KiB ("oversized data"); batches stay below.
    max_tx_bytes: int = Field(120_000, ge=1_000)
    # Gas limit per entry: 86.7k measured for an entry that settles an authorization, plus the margin
    # added to the estimate. It sizes a kind's batches until the node has estimated one; then what
    # the estimates say does (batching.EntryGas).
    gas_per_entry: int = Field(95_000, ge=20_000)
    # An NFT entry also stores its owner, balance and tokenURI: 202k measured for a 66-character
    # ipfs:// URI and a settled authorization, plus the same margin.
    nft_gas_per_entry: int = Field(222_000, ge=20_000)
    max_in_flight: int = Field(16, ge=1, le=256)
    fee_bump_percent: int = Field(25, ge=10, le=500)
    # Fees (fees.py): the tip is this percentile of the tips paid in the last fee_history_blocks
    # blocks, never below priority_fee_gwei; the max fee is twice the base fee plus the tip, never
    # above max_fee_gwei (a batch the chain would not include at the ceiling waits).
    priority_fee_gwei: float = Field(1.0, ge=0, le=1000, allow_inf_nan=False)
    tip_percentile: float = Field(50.0, ge=0, le=100, allow_inf_nan=False)
    fee_history_blocks: int = Field(10, ge=1, le=1024)
    max_fee_gwei: float = Field(1000.0, gt=0, allow_inf_nan=False)
    # Replacements of one transaction: at most this many, the n-th at least
    # fee_bump_spacing_seconds * 2^(n-1) after the attempt before it.
    max_fee_bumps: int = Field(10, ge=0)
    fee_bump_spacing_seconds: float = Field(2.0, ge=0)
    # Seconds before validBefore below which an authorization is not worth sending.
    expiry_margin_seconds: int = Field(10, ge=0)
    buffer_limit: int = Field(5000, ge=1)
    # Priority lanes (batching.LaneRules): a request below the highest lane waiting, once it has waited
    # this many times the ETA intake gave it, goes before every lane. While any payer has a priority (or
    # a request of a higher lane is queued), a batcher reads this many entries ahead of its next batch
    # to choose it from (taking.py); at 0 only what it has read anyway is reordered.
    ageing_multiple: float = Field(3.0, ge=1, le=1000, allow_inf_nan=False)
    lane_lookahead: int = Field(2000, ge=0, le=20_000)
    rebroadcast_after_seconds: float = Field(5.0, gt=0)
    # How long the chain's next nonce may have no open batch while later batches wait behind it before
    # it is filled with a no-op (holes.py).
    nonce_hole_seconds: float = Field(30.0, gt=0)
    settings_refresh_seconds: float = Field(5.0, gt=0)
    # A direct connection to the same PostgreSQL for the wallet lock (lock.py), a session advisory
    # lock: a transaction pooler would leave it on a server connection other clients then use, and
    # PostgreSQL would never see this batcher go. Default: DATABASE_URL; required with DATABASE_POOLER.
    lock_database_url: str | None = Field(
        None, validation_alias="BATCHER_LOCK_DATABASE_URL", validate_default=True
    )

    @field_validator("lock_database_url")
    @classmethod
    def _lock_needs_its_own_session(cls, value: str | None, info: ValidationInfo) -> str | None:
        # A field validator, not a model one: its error shows only this field's value, never the key.
        if value is None and info.data.get("database_pooler", "none") != "none":
            raise ValueError(
                "BATCHER_LOCK_DATABASE_URL is required with DATABASE_POOLER: the wallet lock needs a"
                " session of its own, which transaction pooling cannot give"
            )
        return value

    @property
    def lock_dsn(self) -> str:
        return self.lock_database_url or self.database_url

    # A wallet with transactions to mine whose nonce on chain has not moved for this long takes no new
    # batches (taking.py): the backlog goes to the other wallets while fee bumps, hole fills or
    # refusals resolve its own.
    wedged_after_seconds: float = Field(120.0, gt=0)
    # A wallet that has not been able to pay for this long gives the requests of its batches no node
    # holds back to the queue (their nonces filled with no-ops, sent once it is funded): dry.py.
    release_after_seconds: float = Field(30.0, gt=0)
    # mint.requested entries idle this long in a batcher that died or lost its lock are taken over by
    # the batchers of the other wallets (handover.py); the wallet's own successor takes them at once.
    claim_idle_seconds: float = Field(30.0, ge=1)

    @field_validator("private_keys")
    @classmethod
    def _wallets(cls, listed: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        """At least one signer key, each a private key, none twice. A field validator (run for the
        default too, and after BATCHER_PRIVATE_KEY), so assigning a tunable never re-checks keys."""
        keys = _split(listed) or _split(info.data.get("private_key"))[:1]
        if not keys:
            raise ValueError("set BATCHER_PRIVATE_KEY (or BATCHER_PRIVATE_KEYS, comma-separated)")
        wallets = []
        for position, key in enumerate(keys, 1):
            try:
                wallets.append(Account.from_key(key).address)
            except (ValueError, TypeError):
                # Never the value itself: it is a secret.
                raise ValueError(f"signer key {position} is not a private key (32 bytes of hex)") from None
        if len(set(wallets)) != len(wallets):
            raise ValueError("the same signer key is listed twice: one batcher per wallet")
        return listed

    @property
    def signing_keys(self) -> list[str]:
        """The private key of every signer wallet, in the order given."""
        return _split(self.private_keys) or _split(self.private_key)[:1]


def _split(keys: SecretStr | None) -> list[str]:
    text = keys.get_secret_value() if keys is not None else ""
    return [key.strip() for key in text.split(",") if key.strip()]
