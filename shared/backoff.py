import random


def exponential_backoff(attempt: int, base: float, maximum: float, jitter: bool = True) -> float:
    """Seconds to wait before retry number `attempt` (1-based): base * 2^(attempt-1), capped."""
    # Past 64 doublings any sane cap is reached; computing 2**1025 as a float would overflow.
    delay = maximum if attempt > 64 else min(maximum, base * 2 ** max(0, attempt - 1))
    if jitter:
        delay *= random.uniform(0.5, 1.0)
    return delay
