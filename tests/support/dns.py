"""A DNS that answers what a test says (a name rebound to loopback since acceptance, say): for
aiohttp's resolver interface, which intake's webhook resolver wraps."""

import socket

from aiohttp.abc import AbstractResolver, ResolveResult


class StaticDns(AbstractResolver):
    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host not in self.answers:
            raise OSError(f"{host} does not resolve")
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=0,
            )
            for address in self.answers[host]
        ]

    async def close(self) -> None:
        pass
