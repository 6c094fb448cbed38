"""Chain helpers shared by the services: the async web3 client and signature splitting."""

import aiohttp
from web3 import AsyncHTTPProvider, AsyncWeb3


async def connect(rpc_url: str, connections: int = 32) -> AsyncWeb3:
    """An AsyncWeb3 on a pooled keep-alive session; `await w3.provider.disconnect()` closes it.

    web3's default session closes the connection after every call: reusing connections saves a TCP
    handshake per call and thousands of TIME_WAIT sockets under load.
    """
    w3 = AsyncWeb3(AsyncHTTPProvider(rpc_url, request_kwargs={"timeout": 30}))
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=connections), timeout=aiohttp.ClientTimeout(total=30)
    )
    await w3.provider.cache_async_session(session)  # type: ignore[attr-defined]
    return w3


def split_signature(signature: str) -> tuple[int, bytes, bytes]:
    """A 65-byte r||s||v signature as the (v, r, s) a contract call takes."""
    raw = bytes.fromhex(signature.removeprefix("0x"))
    if len(raw) != 65:
        raise ValueError(f"signature must be 65 bytes, got {len(raw)}")
    v = raw[64]
    return (v + 27 if v < 27 else v), raw[:32], raw[32:64]
