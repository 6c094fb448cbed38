"""Retry delays: doubling from `base`, capped at `maximum`, jittered down to half."""

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from shared.backoff import exponential_backoff, retry_after_seconds


@pytest.mark.parametrize(("attempt", "expected"), [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 8.0)])
def test_delay_doubles_with_each_attempt(attempt: int, expected: float) -> None:
    assert exponential_backoff(attempt, base=0.5, maximum=60.0, jitter=False) == expected


@pytest.mark.parametrize("attempt", [0, -3])
def test_attempts_below_one_wait_the_base_delay(attempt: int) -> None:
    assert exponential_backoff(attempt, base=0.5, maximum=60.0, jitter=False) == 0.5


@pytest.mark.parametrize("attempt", [7, 8, 50])
def test_delay_is_capped_at_maximum(attempt: int) -> None:
    assert exponential_backoff(attempt, base=1.0, maximum=60.0, jitter=False) == 60.0


def test_jitter_stays_between_half_and_the_full_delay() -> None:
    for attempt, full in [(1, 1.0), (4, 8.0), (30, 30.0)]:
        delays = [exponential_backoff(attempt, base=1.0, maximum=30.0) for _ in range(500)]

        assert all(full / 2 <= delay <= full for delay in delays)
        # Spread over the range (500 draws miss a 10% band with odds 0.9**500), so retries do not line up.
        assert min(delays) < full * 0.6 and max(delays) > full * 0.9


def test_a_very_late_attempt_still_waits_the_maximum() -> None:
    assert exponential_backoff(1100, base=0.5, maximum=60.0, jitter=False) == 60.0


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds("-3") == 0.0
    soon = datetime.now(UTC) + timedelta(seconds=30)
    assert 25 < (retry_after_seconds(format_datetime(soon, usegmt=True)) or 0) <= 30
    # A date without a zone is read as UTC.
    assert 25 < (retry_after_seconds(soon.strftime("%a, %d %b %Y %H:%M:%S")) or 0) <= 30
    for unreadable in (None, "", "soon", "nan", "inf"):
        assert retry_after_seconds(unreadable) is None
