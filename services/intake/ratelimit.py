"""Token buckets per key (a client address, a payer) and who the client of a request is. Pure logic: the
clock is injected, nothing here sleeps or touches the network.

A bucket holds up to `burst` tokens and gains `rate` per second; a request takes one or is refused
with the seconds until one is back. Memory stays bounded however many keys an attacker rotates
through: a bucket idle for a whole refill (`burst / rate` seconds) is full again, so dropping it
changes nothing and the least recently used ones go first; past `max_keys` the least recently used
bucket is dropped even if not full (that key starts over with a full bucket: a limit an address
rotation can loosen for the rotated keys only, never tighten for anyone).
"""

import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# An IPv6 client usually holds a whole /64: counting each of its addresses apart would let it rotate
# through 2**64 buckets.
IPV6_CLIENT_PREFIX = 64
# Routes no per-client limit applies to: monitoring must see an overloaded intake too.
UNLIMITED_PATHS = frozenset({"/health", "/metrics"})


class TokenBuckets:
    def __init__(
        self,
        rate: float,
        burst: int,
        max_keys: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0 or burst < 1 or max_keys < 1:
            raise ValueError("rate must be positive, burst and max_keys at least 1")
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self.clock = clock
        # key -> (tokens left, when they were counted); least recently used first.
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    @property
    def refill_seconds(self) -> float:
        """How long an emptied bucket takes to fill up again."""
        return self.burst / self.rate

    def take(self, key: str) -> float:
        """Takes a token from `key`'s bucket: 0 when there was one, else the seconds until there is."""
        now = self.clock()
        self._drop_idle(now)
        state = self._buckets.pop(key, None)
        if state is None:
            tokens = float(self.burst)
        else:
            tokens, counted_at = state
            tokens = min(float(self.burst), tokens + (now - counted_at) * self.rate)
        if tokens >= 1:
            tokens -= 1
            wait = 0.0
        else:
            wait = (1 - tokens) / self.rate
        self._buckets[key] = (tokens, now)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return wait

    def _drop_idle(self, now: float) -> None:
        # Least recently used first: the first bucket not idle for a full refill ends the sweep.
        refill = self.refill_seconds
        while self._buckets:
            _, counted_at = next(iter(self._buckets.values()))
            if now - counted_at < refill:
                break
            self._buckets.popitem(last=False)


def retry_after(wait: float) -> int:
    """A wait as the whole seconds of a Retry-After header (at least 1)."""
    return max(1, math.ceil(wait))


def parse_ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(value.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def client_address(
    peer: str | None, forwarded_for: Sequence[str], trusted_proxies: Iterable[Network]
) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The client's address: the connection's peer, or, when the peer is a trusted proxy, the nearest
    address in X-Forwarded-For that is not one (each proxy appends whom it heard from, so hops right of
    the first untrusted one are trusted and the ones left of it are whatever the client claimed)."""
    address = parse_ip(peer) if peer else None
    proxies = tuple(trusted_proxies)

    def trusted(candidate: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return any(candidate in network for network in proxies)

    hops = [hop for value in forwarded_for for hop in value.split(",")]
    while address is not None and hops and trusted(address):
        address = parse_ip(hops.pop())
    return address


def client_key(address: ipaddress.IPv4Address | ipaddress.IPv6Address | None) -> str:
    """The bucket an address counts in: itself for IPv4, its /64 for IPv6."""
    if address is None:
        return "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network(f"{address}/{IPV6_CLIENT_PREFIX}", strict=False))
    return str(address)


def exempt(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address | None, networks: Iterable[Network]
) -> bool:
    return address is not None and any(address in network for network in networks)
