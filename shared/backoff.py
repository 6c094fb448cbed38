import email.utils
import math
import random
from datetime import UTC, datetime


def exponential_backoff(attempt: int, base: float, maximum: float, jitter: bool = True) -> float:
    """Seconds to wait before retry number `attempt` (1-based): base * 2^(attempt-1), capped."""
    # Past 64 doublings any sane cap is reached; computing 2**1025 as a float would overflow.
    delay = maximum if attempt > 64 else min(maximum, base * 2 ** max(0, attempt - 1))
    if jitter:
        delay *= random.uniform(0.5, 1.0)
    return delay


def retry_after_seconds(header: str | None) -> float | None:
    """A Retry-After header in either form it may take, delay seconds or an HTTP date, as seconds
    from now (never negative); None when it is absent or unreadable."""
    if not header:
        return None
    try:
        seconds = float(header)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(header)
        except (TypeError, ValueError):
            return None
        # HTTP dates are GMT; a date without a zone is read as UTC rather than failing the comparison.
        seconds = (when.replace(tzinfo=when.tzinfo or UTC) - datetime.now(UTC)).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None
