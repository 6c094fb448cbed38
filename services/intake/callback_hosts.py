"""Where webhooks may go: only to public addresses, so a callbackUrl cannot reach into the operator's
own network (server-side request forgery).

An address is refused when it is unspecified, loopback, link-local, site-local, multicast, CGNAT
(100.64.0.0/10), private, reserved or otherwise not globally routable; an IPv6 address that embeds an
IPv4 one (IPv4-mapped, IPv4-compatible, IPv4-translated, 6to4, NAT64) is judged by the IPv4 address
it carries. A host is refused when it is `localhost` / `*.localhost`, an IP literal in any spelling
`inet_aton` accepts (`2130706433`, `0x7f000001`, `0177.0.0.1`, `127.1`) that is refused, or a name
that resolves to a refused address. INTAKE_CALLBACK_ALLOW names hosts and networks allowed anyway,
for local development.

The check runs twice. At acceptance (`check_callback_url`) the name is resolved with a short timeout;
a name that does not resolve at all (or not in time) is accepted, because DNS may be down or the
receiver's record not yet published, and delivery checks it again. At delivery the same rules apply
to the URL's host, and `CallbackResolver` drops every refused address from the resolver's answer, so
the connection goes only to an address that passed (a name rebound to 127.0.0.1 after acceptance
finds no address to connect to). aiohttp skips the resolver for IP literals, which is why delivery
checks the URL itself first too.
"""

import asyncio
import logging
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import (
    IPv4Address,
    IPv4Network,
    IPv6Address,
    IPv6Network,
    ip_address,
    ip_network,
)

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from yarl import URL

from services.intake.errors import BadRequest

log = logging.getLogger(__name__)

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network

# Resolving a callback host at acceptance may delay the answer this long, no longer.
RESOLVE_TIMEOUT_SECONDS = 2.0

CGNAT = IPv4Network("100.64.0.0/10")
IPV4_COMPATIBLE = IPv6Network("::/96")
IPV4_TRANSLATED = IPv6Network("::ffff:0:0:0/96")
NAT64 = IPv6Network("64:ff9b::/96")
# RFC 8215 local-use NAT64: where its IPv4 address sits depends on the operator's prefix length.
NAT64_LOCAL = IPv6Network("64:ff9b:1::/48")

_IPV4_PART = re.compile(r"0[xX][0-9a-fA-F]*|0[0-7]*|[1-9][0-9]*")
_HOST_NAME = re.compile(r"(\*\.)?[a-z0-9_-]+(\.[a-z0-9_-]+)*")


class CallbackRefused(OSError):
    """Delivery found no allowed address for the callback's host (an OSError, so aiohttp passes it on
    as the cause of its ClientConnectorError)."""


def parse_ipv4(host: str) -> IPv4Address | None:
    """The IPv4 address `host` spells in any form inet_aton accepts (1 to 4 parts, each decimal, octal
    with a leading 0 or hex with 0x; the last part fills the remaining bytes), or None."""
    parts = host.split(".")
    if not 1 <= len(parts) <= 4 or not all(_IPV4_PART.fullmatch(part) for part in parts):
        return None
    values = [_ipv4_part(part) for part in parts]
    *leading, last = values
    if any(value > 0xFF for value in leading) or last >= 1 << (8 * (5 - len(values))):
        return None
    number = last
    for index, value in enumerate(leading):
        number |= value << (8 * (3 - index))
    return IPv4Address(number)


def _ipv4_part(part: str) -> int:
    if part[:2].lower() == "0x":
        return int(part[2:] or "0", 16)
    return int(part, 8 if part.startswith("0") else 10)


def parse_ip(host: str) -> IPAddress | None:
    """The address an IP-literal host spells (brackets optional), or None for a name."""
    host = host.removeprefix("[").removesuffix("]")
    if ":" in host:
        try:
            return ip_address(host.replace("%25", "%"))
        except ValueError:
            return None
    return parse_ipv4(host)


def embedded_ipv4(address: IPv6Address) -> IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, compatible, translated, 6to4, NAT64), if any."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in IPV4_COMPATIBLE or address in IPV4_TRANSLATED or address in NAT64:
        return IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def address_refusal(address: IPAddress) -> str | None:
    """Why a webhook may not go to `address` ("a loopback address", ...), or None if it may."""
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_loopback:
        return "a loopback address"
    if isinstance(address, IPv6Address):
        carried = embedded_ipv4(address)
        if carried is not None:
            reason = address_refusal(carried)
            return None if reason is None else f"{reason} ({carried} inside an IPv6 address)"
        if address in NAT64_LOCAL:
            return "a local-use NAT64 address"
        if address.is_site_local:
            return "a site-local address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if address in CGNAT:
        return "a shared (CGNAT) address"
    if address.is_reserved:
        return "a reserved address"
    if address.is_private:
        return "a private address"
    if not address.is_global:
        return "not a globally routable address"
    return None


def normalize_host(host: str) -> str:
    return host.lower().rstrip(".")


def is_local_name(host: str) -> bool:
    """`localhost` and its subdomains always mean this machine (RFC 6761)."""
    return host in ("localhost", "localhost.localdomain") or host.endswith(".localhost")


@dataclass(frozen=True)
class CallbackHosts:
    """The policy: the rules above, less what INTAKE_CALLBACK_ALLOW allows."""

    allowed_names: frozenset[str] = frozenset()
    allowed_networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, allow: str) -> "CallbackHosts":
        """From a comma-separated list of host names (`*.name` for every subdomain) and CIDR networks
        (a bare address is a one-address network). ValueError names a bad entry."""
        names: set[str] = set()
        networks: list[IPNetwork] = []
        for entry in (part.strip() for part in allow.split(",")):
            if not entry:
                continue
            try:
                networks.append(ip_network(entry, strict=False))
                continue
            except ValueError:
                pass
            name = normalize_host(entry)
            if "/" in entry or not _HOST_NAME.fullmatch(name):
                raise ValueError(f"{entry!r} is neither a host name nor a CIDR network")
            names.add(name)
        return cls(frozenset(names), tuple(networks))

    def name_allowed(self, host: str) -> bool:
        host = normalize_host(host)
        return host in self.allowed_names or any(
            name.startswith("*.") and host.endswith(name[1:]) for name in self.allowed_names
        )

    def refusal(self, address: IPAddress) -> str | None:
        """Why a webhook may not go to `address`, unless an allowed network holds it."""
        candidates: list[IPAddress] = [address]
        if isinstance(address, IPv6Address) and (carried := embedded_ipv4(address)) is not None:
            candidates.append(carried)
        if any(candidate in network for candidate in candidates for network in self.allowed_networks):
            return None
        return address_refusal(address)

    def host_refusal(self, host: str) -> str | None:
        """Why a webhook may not go to `host` judged by its spelling alone (no resolving): a refused
        IP literal in any spelling, or a local name."""
        if self.name_allowed(host):
            return None
        host = normalize_host(host)
        address = parse_ip(host)
        if address is not None:
            reason = self.refusal(address)
            return None if reason is None else f"is {reason}"
        if is_local_name(host):
            return "names this machine"
        return None

    def resolved_refusal(self, host: str, addresses: Iterable[str]) -> str | None:
        """Why a webhook may not go to `host`, given what it resolved to: the first refused address."""
        if self.name_allowed(host):
            return None
        for text in addresses:
            address = parse_ip(text)
            reason = "not an IP address" if address is None else self.refusal(address)
            if reason is not None:
                return f"resolves to {text}, {reason}"
        return None

    async def acceptance_refusal(self, url: URL) -> str | None:
        """Why a callback URL is refused when a request is accepted: its spelling, then, for a name,
        every address it resolves to. A name that does not resolve in time passes (delivery checks)."""
        host = url.raw_host or ""
        reason = self.host_refusal(host)
        if reason is not None or self.name_allowed(host) or _is_canonical_ip(host):
            return reason
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(RESOLVE_TIMEOUT_SECONDS):
                infos = await loop.getaddrinfo(host, url.port, type=socket.SOCK_STREAM)
        except (OSError, TimeoutError, UnicodeError) as exc:
            log.info("callback host %s did not resolve at acceptance (%s); delivery checks it", host, exc)
            return None
        return self.resolved_refusal(host, (str(info[4][0]) for info in infos))


def _is_canonical_ip(host: str) -> bool:
    try:
        ip_address(host.removeprefix("[").removesuffix("]"))
    except ValueError:
        return False
    return True


async def check_callback_url(hosts: CallbackHosts, callback_url: str) -> None:
    """Raise 400 callback_url_not_allowed unless webhooks may go to `callback_url`."""
    url = URL(callback_url)
    reason = await hosts.acceptance_refusal(url)
    if reason is not None:
        raise BadRequest(
            "callback_url_not_allowed",
            f"callbackUrl host {url.raw_host} {reason}; webhooks go only to public addresses",
        )


class CallbackResolver(AbstractResolver):
    """The webhook session's resolver: what `dns` answers, less every address the policy refuses;
    CallbackRefused when nothing is left. Every connection aiohttp makes to a name uses these."""

    def __init__(self, hosts: CallbackHosts, dns: AbstractResolver | None = None) -> None:
        self.hosts = hosts
        self.dns = dns if dns is not None else DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        answers = await self.dns.resolve(host, port, family)
        if self.hosts.name_allowed(host):
            return answers
        kept = [answer for answer in answers if self.hosts.resolved_refusal(host, [answer["host"]]) is None]
        if not kept:
            reason = self.hosts.resolved_refusal(host, [answer["host"] for answer in answers])
            raise CallbackRefused(f"callback host {host} {reason or 'resolves to nothing'}")
        if len(kept) < len(answers):
            log.warning("callback host %s: %d refused addresses dropped", host, len(answers) - len(kept))
        return kept

    async def close(self) -> None:
        await self.dns.close()
