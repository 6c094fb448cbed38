"""DATABASE_POOLER and the batcher's direct session for its wallet lock."""

import pytest
from pydantic import ValidationError

from services.batcher.settings import BatcherSettings
from shared.settings import Settings

KEY = "0x" + "22" * 32  # not a key anyone uses: the settings only need its shape
BASE = {"REDIS_URL": "redis://127.0.0.1:1/0", "DATABASE_URL": "postgresql://u@pooler:6432/mintline"}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name, value in {**BASE, "BATCHER_PRIVATE_KEY": KEY}.items():
        monkeypatch.setenv(name, value)
    return monkeypatch


def test_without_a_pooler_the_lock_uses_database_url(env):
    settings = BatcherSettings()
    assert not settings.transaction_pooling
    assert settings.lock_dsn == BASE["DATABASE_URL"]


def test_behind_pgbouncer_the_lock_takes_its_own_direct_url(env):
    env.setenv("DATABASE_POOLER", "pgbouncer")
    env.setenv("BATCHER_LOCK_DATABASE_URL", "postgresql://u@postgres:5432/mintline")
    settings = BatcherSettings()
    assert settings.transaction_pooling
    assert settings.lock_dsn == "postgresql://u@postgres:5432/mintline"


def test_behind_pgbouncer_a_batcher_without_a_direct_url_refuses_to_start(env):
    env.setenv("DATABASE_POOLER", "pgbouncer")
    with pytest.raises(ValidationError) as refused:
        BatcherSettings()
    message = str(refused.value)
    assert "BATCHER_LOCK_DATABASE_URL is required with DATABASE_POOLER" in message
    assert KEY.removeprefix("0x") not in message


def test_other_services_need_no_direct_url(env):
    env.setenv("DATABASE_POOLER", "pgbouncer")
    assert Settings().transaction_pooling


def test_an_unknown_pooler_is_refused(env):
    env.setenv("DATABASE_POOLER", "pgpool")
    with pytest.raises(ValidationError, match="DATABASE_POOLER"):
        Settings()
