"""A client-side token bucket, so we stay under a remote API's request rate instead of collecting 429s."""

import asyncio
import time


class TokenBucket:
    """`rate_per_second` tokens a second, up to `burst` saved; each request takes one."""

    def __init__(self, rate_per_second: float, burst: int) -> None:
        if rate_per_second <= 0 or burst < 1:
            raise ValueError("a token bucket needs a positive rate and a burst of at least 1")
        self._rate = rate_per_second
        self._capacity = float(burst)
        self._tokens = float(burst)
        self._refilled_at = time.monotonic()
        # One waiter at a time, so callers are served in arrival order rather than racing for each token.
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                now = time.monotonic()
                self._tokens = min(self._capacity, self._tokens + (now - self._refilled_at) * self._rate)
                self._refilled_at = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    return
                await asyncio.sleep((1 - self._tokens) / self._rate)
