"""Run-time overrides from `system_settings`: applied when valid, logged and ignored otherwise."""

import logging

import asyncpg
import pytest

from services.batcher.settings import TUNABLE, BatcherSettings
from shared.overrides import with_overrides


async def _set(pool: asyncpg.Pool, **values: str) -> None:
    await pool.executemany(
        "INSERT INTO system_settings (key, value) VALUES ($1, $2)"
        " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
        list(values.items()),
    )


@pytest.fixture
def settings(env: dict[str, str]) -> BatcherSettings:
    return BatcherSettings()


async def test_without_rows_the_settings_are_unchanged(pg_pool, settings) -> None:
    assert await with_overrides(pg_pool, settings, TUNABLE) == settings


async def test_valid_overrides_replace_values_on_a_copy(pg_pool, settings) -> None:
    before = (settings.batch_size, settings.batch_window_seconds)
    assert before != (50, 2.5)
    await _set(pg_pool, batch_size="50", batch_window_seconds="2.5")

    tuned = await with_overrides(pg_pool, settings, TUNABLE)

    assert (tuned.batch_size, tuned.batch_window_seconds) == (50, 2.5)
    assert (settings.batch_size, settings.batch_window_seconds) == before
    assert tuned.gas_budget == settings.gas_budget


@pytest.mark.parametrize("bad", ["abc", "0", "2001", "1.5"])
async def test_an_invalid_value_is_logged_and_ignored(pg_pool, settings, caplog, bad: str) -> None:
    await _set(pg_pool, batch_size=bad, max_in_flight="4")

    with caplog.at_level(logging.ERROR, logger="shared.overrides"):
        tuned = await with_overrides(pg_pool, settings, TUNABLE)

    assert tuned.batch_size == settings.batch_size
    assert tuned.max_in_flight == 4  # one bad row does not stop the others
    (record,) = caplog.records
    assert "batch_size" in record.getMessage() and repr(bad) in record.getMessage()


async def test_keys_outside_the_allowed_tuple_are_ignored(pg_pool, settings) -> None:
    await _set(pg_pool, expiry_margin_seconds="999", metrics_port="1", batch_size="7")

    tuned = await with_overrides(pg_pool, settings, ("batch_size",))

    assert tuned.batch_size == 7
    assert tuned.expiry_margin_seconds == settings.expiry_margin_seconds
    assert tuned.metrics_port == settings.metrics_port


async def test_an_infinite_priority_fee_is_ignored(pg_pool, settings) -> None:
    await _set(pg_pool, priority_fee_gwei="inf")

    tuned = await with_overrides(pg_pool, settings, TUNABLE)

    assert tuned.priority_fee_gwei == settings.priority_fee_gwei
