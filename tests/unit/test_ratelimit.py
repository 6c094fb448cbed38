"""Token buckets and client addresses (services/intake/ratelimit.py) on a hand-driven clock, the cached
queue counts, and bounded JSON nesting."""

import ipaddress

import pytest

from services.intake import safejson
from services.intake.counts import StatusCounts
from services.intake.ratelimit import TokenBuckets, client_address, client_key, exempt, retry_after


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def buckets(rate: float = 2.0, burst: int = 5, max_keys: int = 1000) -> tuple[TokenBuckets, Clock]:
    clock = Clock()
    return TokenBuckets(rate, burst, max_keys, clock=clock), clock


def test_a_burst_passes_then_the_next_waits_for_one_token() -> None:
    limits, _ = buckets(rate=2.0, burst=5)
    assert [limits.take("a") for _ in range(5)] == [0.0] * 5
    assert limits.take("a") == pytest.approx(0.5)
    # Another key has its own bucket.
    assert limits.take("b") == 0.0


def test_tokens_refill_at_the_rate_up_to_the_burst() -> None:
    limits, clock = buckets(rate=2.0, burst=5)
    for _ in range(5):
        limits.take("a")
    clock.now += 1.0  # two tokens back
    assert [limits.take("a") for _ in range(2)] == [0.0, 0.0]
    assert limits.take("a") > 0
    clock.now += 3600  # full again, never more than the burst
    assert [limits.take("a") for _ in range(5)] == [0.0] * 5
    assert limits.take("a") == pytest.approx(0.5)


def test_refused_requests_do_not_dig_the_bucket_deeper() -> None:
    limits, clock = buckets(rate=1.0, burst=1)
    assert limits.take("a") == 0.0
    for _ in range(100):
        assert limits.take("a") == pytest.approx(1.0)
    clock.now += 1.0
    assert limits.take("a") == 0.0


def test_retry_after_is_whole_seconds_at_least_one() -> None:
    assert [retry_after(w) for w in (0.01, 0.5, 1.0, 1.2, 30.0)] == [1, 1, 1, 2, 30]


def test_idle_buckets_are_dropped_once_full_again() -> None:
    limits, clock = buckets(rate=2.0, burst=4)  # refilled in 2 s
    for key in ("a", "b", "c"):
        limits.take(key)
    clock.now += 1.0
    limits.take("d")
    assert len(limits) == 4
    clock.now += 1.5  # a, b, c idle 2.5 s: full, dropped; d idle 1.5 s: kept
    limits.take("e")
    assert len(limits) == 2
    # A dropped bucket starts full, as it would have been.
    assert [limits.take("a") for _ in range(4)] == [0.0] * 4


def test_rotating_keys_never_grow_past_max_keys() -> None:
    limits, _ = buckets(rate=0.001, burst=1, max_keys=100)
    for n in range(10_000):
        limits.take(f"10.0.{n // 256}.{n % 256}")
    assert len(limits) == 100
    # The most recent keys are kept and still limited.
    assert limits.take(f"10.0.{9999 // 256}.{9999 % 256}") > 0


def test_client_is_the_peer_unless_it_is_a_trusted_proxy() -> None:
    proxies = [ipaddress.ip_network("10.0.0.0/8")]
    assert str(client_address("203.0.113.5", ["198.51.100.1"], [])) == "203.0.113.5"
    assert str(client_address("203.0.113.5", ["198.51.100.1"], proxies)) == "203.0.113.5"
    # Through two trusted proxies: the nearest untrusted hop; what the client wrote further left is
    # not believed.
    forwarded = ["1.2.3.4, 198.51.100.7", "10.0.0.9"]
    assert str(client_address("10.0.0.1", forwarded, proxies)) == "198.51.100.7"
    assert str(client_address("::ffff:203.0.113.5", [], [])) == "203.0.113.5"
    assert client_address(None, [], []) is None


def test_ipv6_clients_count_per_64_and_loopback_is_exempt() -> None:
    one = client_key(ipaddress.ip_address("2001:db8:1:2::1"))
    assert one == client_key(ipaddress.ip_address("2001:db8:1:2:ffff::9")) == "2001:db8:1:2::/64"
    assert one != client_key(ipaddress.ip_address("2001:db8:1:3::1"))
    assert client_key(ipaddress.ip_address("203.0.113.5")) == "203.0.113.5"
    loopback = [ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")]
    assert exempt(ipaddress.ip_address("127.0.0.1"), loopback)
    assert exempt(ipaddress.ip_address("::1"), loopback)
    assert not exempt(ipaddress.ip_address("203.0.113.5"), loopback)
    assert not exempt(None, loopback)


class CountingPool:
    def __init__(self) -> None:
        self.reads = 0

    async def fetch(self, query: str) -> list[dict[str, object]]:
        self.reads += 1
        return [{"status": "pending", "n": self.reads}]


async def test_status_counts_are_read_at_most_once_per_max_age() -> None:
    clock = Clock()
    counts = StatusCounts(1.0, clock=clock)
    pool = CountingPool()
    assert [await counts.get(pool) for _ in range(50)] == [{"pending": 1}] * 50  # type: ignore[arg-type]
    clock.now += 1.0
    assert await counts.get(pool) == {"pending": 2}  # type: ignore[arg-type]
    assert pool.reads == 2


def test_json_nesting_is_bounded_before_parsing() -> None:
    # Brackets inside strings (escaped quotes too) do not count.
    raw = b'{"a": [[{"b": "\\"' + b"[" * 42 + b'"}]]}'
    assert safejson.loads(raw) == {"a": [[{"b": '"' + "[" * 42}]]}
    assert safejson.loads(b"[" * 32 + b"]" * 32) is not None
    for raw in (b"[" * 33 + b"]" * 33, b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 40 + b"1" + b"}" * 40):
        with pytest.raises(safejson.TooDeep):
            safejson.loads(raw)
