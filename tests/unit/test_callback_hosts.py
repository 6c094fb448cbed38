"""Where webhooks may go (services/intake/callback_hosts.py): every spelling of a loopback, private,
link-local, CGNAT, multicast, reserved or unspecified address refused, public ones allowed, and the
INTAKE_CALLBACK_ALLOW list letting named hosts and networks through."""

import asyncio
import socket
from ipaddress import IPv4Address, ip_address
from typing import Any

import pytest
from yarl import URL

from services.intake import callback_hosts
from services.intake.callback_hosts import (
    CallbackHosts,
    CallbackRefused,
    CallbackResolver,
    address_refusal,
    check_callback_url,
    parse_ipv4,
)
from services.intake.errors import BadRequest
from tests.support.dns import StaticDns

NOTHING_ALLOWED = CallbackHosts()

# Hosts as they appear in a URL (IPv6 in brackets), each naming this machine.
LOOPBACK_SPELLINGS = [
    "127.0.0.1",
    "127.0.0.1.",
    "127.9.8.7",
    "localhost",
    "LOCALHOST.",
    "hooks.localhost",
    "localhost.localdomain",
    "[::1]",
    "[0:0:0:0:0:0:0:1]",
    "0.0.0.0",
    "0",
    "[::]",
    "0x7f000001",
    "0X7F.0.0.1",
    "2130706433",
    "017700000001",
    "127.1",
    "127.0.1",
    "0177.0.0.1",
    "0x7f.1",
    "[::ffff:127.0.0.1]",
    "[::ffff:7f00:1]",
    "[::127.0.0.1]",
    "[::ffff:0:127.0.0.1]",
    "[2002:7f00:1::]",
    "[64:ff9b::127.0.0.1]",
]

OTHER_REFUSED = {
    "10.0.0.1": "private",
    "172.16.5.4": "private",
    "192.168.1.1": "private",
    "0xc0a80101": "private",
    "169.254.169.254": "link-local",
    "[fe80::1]": "link-local",
    "[fe80::1%25eth0]": "link-local",
    "100.64.0.1": "CGNAT",
    "100.127.255.254": "CGNAT",
    "224.0.0.1": "multicast",
    "239.255.255.250": "multicast",
    "[ff02::1]": "multicast",
    "240.0.0.1": "reserved",
    "255.255.255.255": "",
    "192.0.2.1": "",  # documentation
    "198.18.0.1": "",  # benchmarking
    "[fc00::1]": "private",
    "[fd12:3456::1]": "private",
    "[fec0::1]": "site-local",
    "[2001:db8::1]": "",
    "[::ffff:10.0.0.1]": "private",
    "[::ffff:169.254.169.254]": "link-local",
    "[2002:a00:1::1]": "private",  # 6to4 of 10.0.0.1
    "[64:ff9b::a00:1]": "private",  # NAT64 of 10.0.0.1
    "[64:ff9b:1::1]": "NAT64",
    "[2001::1]": "",  # Teredo
}

PUBLIC = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.215.14",
    "134744072",  # 8.8.8.8 as one number
    "0x08080808",
    "[2606:4700:4700::1111]",
    "[::ffff:8.8.8.8]",
    "[2002:808:808::1]",
    "[64:ff9b::808:808]",
    "example.com",
    "hooks.example.com",
    "127.0.0.1.example.com",
]


@pytest.mark.parametrize("host", LOOPBACK_SPELLINGS)
def test_every_spelling_of_this_machine_is_refused(host: str) -> None:
    reason = NOTHING_ALLOWED.host_refusal(host)
    assert reason is not None and ("loopback" in reason or "unspecified" in reason or "machine" in reason)


@pytest.mark.parametrize(("host", "kind"), OTHER_REFUSED.items())
def test_non_public_addresses_are_refused(host: str, kind: str) -> None:
    reason = NOTHING_ALLOWED.host_refusal(host)
    assert reason is not None and kind in reason


@pytest.mark.parametrize("host", PUBLIC)
def test_public_hosts_pass(host: str) -> None:
    assert NOTHING_ALLOWED.host_refusal(host) is None


@pytest.mark.parametrize(
    ("spelling", "address"),
    [
        ("2130706433", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("127.0.1", "127.0.0.1"),
        ("10.1.65535", "10.1.255.255"),
        ("0x0a.0x01.0.010", "10.1.0.8"),
        ("0", "0.0.0.0"),
        ("1.2.3.4", "1.2.3.4"),
    ],
)
def test_ipv4_spellings_parse_as_inet_aton_does(spelling: str, address: str) -> None:
    assert parse_ipv4(spelling) == IPv4Address(address)
    assert parse_ipv4(spelling) == IPv4Address(socket.inet_aton(spelling))


@pytest.mark.parametrize(
    "name", ["example.com", "1.2.3.4.5", "256.0.0.1", "1.256.0.0", "127.0.65536", "08.0.0.1", "1..2", ""]
)
def test_names_and_impossible_numbers_are_not_ipv4(name: str) -> None:
    assert parse_ipv4(name) is None


def test_address_refusal_names_the_kind() -> None:
    assert address_refusal(ip_address("127.0.0.1")) == "a loopback address"
    assert address_refusal(ip_address("0.0.0.0")) == "an unspecified address"
    assert address_refusal(ip_address("100.64.0.1")) == "a shared (CGNAT) address"
    assert address_refusal(ip_address("::1")) == "a loopback address"
    assert address_refusal(ip_address("::ffff:127.0.0.1")) == (
        "a loopback address (127.0.0.1 inside an IPv6 address)"
    )
    assert address_refusal(ip_address("::ffff:10.0.0.1")) == (
        "a private address (10.0.0.1 inside an IPv6 address)"
    )
    assert address_refusal(ip_address("8.8.8.8")) is None


def test_allow_list_lets_named_hosts_and_networks_through() -> None:
    hosts = CallbackHosts.parse(" localhost , *.dev.test, 10.0.0.0/8,127.0.0.1, ::1 ,")
    for allowed in ["localhost", "LocalHost.", "hooks.dev.test", "a.b.dev.test", "10.2.3.4", "0x0a000001"]:
        assert hosts.host_refusal(allowed) is None, allowed
    for allowed in ["127.0.0.1", "[::1]", "[::ffff:127.0.0.1]", "[::ffff:10.9.9.9]", "2130706433"]:
        assert hosts.host_refusal(allowed) is None, allowed
    # Only what is listed: another loopback address, another name, the bare suffix stay refused.
    for refused in ["127.0.0.2", "127.1.0.1", "hooks.localhost", "192.168.1.1", "[::2]", "[fe80::1]"]:
        assert hosts.host_refusal(refused) is not None, refused
    assert not hosts.name_allowed("dev.test") and not hosts.name_allowed("evildev.test")
    assert hosts.resolved_refusal("hooks.dev.test", ["127.0.0.1"]) is None
    assert hosts.resolved_refusal("other.test", ["10.1.1.1", "8.8.8.8"]) is None
    assert hosts.resolved_refusal("other.test", ["8.8.8.8", "192.168.0.1"]) is not None


def test_empty_allow_list_allows_nothing_more() -> None:
    assert CallbackHosts.parse("") == CallbackHosts() == CallbackHosts.parse(" , ")


@pytest.mark.parametrize("entry", ["10.0.0.0/33", "not a host", "http://localhost", "a/b"])
def test_bad_allow_entries_are_refused_by_name(entry: str) -> None:
    with pytest.raises(ValueError, match="neither a host name nor a CIDR network"):
        CallbackHosts.parse(f"localhost,{entry}")


def test_settings_refuse_a_bad_allow_list(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    from services.intake.settings import IntakeSettings

    for name, value in {
        "WEBHOOK_SECRET": "x" * 16,
        "REDIS_URL": "redis://127.0.0.1:1",
        "DATABASE_URL": "postgresql://127.0.0.1:1/none",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("INTAKE_CALLBACK_ALLOW", "localhost,10.0.0.0/33")
    with pytest.raises(ValidationError, match="callback_allow"):
        IntakeSettings()  # type: ignore[call-arg]
    monkeypatch.setenv("INTAKE_CALLBACK_ALLOW", "localhost,10.0.0.0/8")
    assert IntakeSettings().callback_hosts().host_refusal("10.1.1.1") is None  # type: ignore[call-arg]
    monkeypatch.delenv("INTAKE_CALLBACK_ALLOW")
    assert IntakeSettings().callback_hosts() == CallbackHosts()  # type: ignore[call-arg]


# --- at acceptance: the URL, then what its name resolves to ----------------------------------------


def fake_getaddrinfo(answers: dict[str, list[str]], delay: float = 0.0) -> Any:
    """The event loop's getaddrinfo for a few names (the DNS, not the code under test)."""

    async def getaddrinfo(host: str, port: int | None, **_: Any) -> list[Any]:
        await asyncio.sleep(delay)
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in answers[host]
        ]

    return getaddrinfo


async def refusal(url: str, hosts: CallbackHosts = NOTHING_ALLOWED) -> str | None:
    try:
        await check_callback_url(hosts, url)
    except BadRequest as exc:
        assert exc.code == "callback_url_not_allowed" and exc.status == 400
        return exc.message
    return None


async def test_acceptance_refuses_names_resolving_to_refused_addresses(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    answers = {
        "rebind.test": ["127.0.0.1"],
        "mixed.test": ["93.184.215.14", "10.0.0.7"],
        "metadata.test": ["169.254.169.254"],
        "v6.test": ["::1"],
        "public.test": ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"],
    }
    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", fake_getaddrinfo(answers))
    assert "resolves to 127.0.0.1, a loopback address" in (await refusal("http://rebind.test/hook") or "")
    assert "10.0.0.7, a private address" in (await refusal("https://mixed.test:8443/hook") or "")
    assert "link-local" in (await refusal("http://metadata.test/latest") or "")
    assert "loopback" in (await refusal("http://v6.test/") or "")
    assert await refusal("https://public.test/hook") is None
    # Not resolvable (now): accepted, delivery checks again.
    assert await refusal("https://nowhere.test/hook") is None
    # An allowed name is not resolved at all.
    assert await refusal("http://rebind.test/hook", CallbackHosts.parse("rebind.test")) is None


async def test_acceptance_refuses_literals_without_resolving(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", fake_getaddrinfo({}))
    for host in LOOPBACK_SPELLINGS + list(OTHER_REFUSED):
        message = await refusal(f"http://{host}:8080/hook")
        assert message is not None and "webhooks go only to public addresses" in message, host
    assert await refusal("http://[2606:4700:4700::1111]/hook") is None


async def test_slow_resolution_is_accepted_after_the_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(callback_hosts, "RESOLVE_TIMEOUT_SECONDS", 0.05)
    slow = fake_getaddrinfo({"slow.test": ["127.0.0.1"]}, delay=5)
    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", slow)
    started = asyncio.get_running_loop().time()
    assert await refusal("http://slow.test/hook") is None
    assert asyncio.get_running_loop().time() - started < 1


# --- at delivery: the resolver drops refused addresses ---------------------------------------------


async def test_delivery_resolver_keeps_only_allowed_addresses() -> None:
    dns = StaticDns(
        {
            "rebind.test": ["127.0.0.1", "::1"],
            "mixed.test": ["10.0.0.1", "8.8.8.8"],
            "dev.test": ["127.0.0.1"],
        }
    )
    resolver = CallbackResolver(CallbackHosts.parse("dev.test"), dns)
    with pytest.raises(CallbackRefused, match=r"rebind.test resolves to 127.0.0.1, a loopback address"):
        await resolver.resolve("rebind.test", 80)
    assert [a["host"] for a in await resolver.resolve("mixed.test", 80)] == ["8.8.8.8"]
    assert [a["host"] for a in await resolver.resolve("dev.test", 80)] == ["127.0.0.1"]


def test_url_hosts_as_yarl_gives_them() -> None:
    # Delivery reads raw_host: brackets gone, IPv6 compressed, zone escaped, IDNA encoded.
    for url in ["http://[::ffff:127.0.0.1]/", "http://[fe80::1%25eth0]/", "http://LOCALHOST./"]:
        assert NOTHING_ALLOWED.host_refusal(URL(url).raw_host or "") is not None, url
    assert NOTHING_ALLOWED.host_refusal(URL("http://bücher.example/").raw_host or "") is None
