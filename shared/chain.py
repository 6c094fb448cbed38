"""Chain helpers shared by the services: one async web3 per process, the contracts, fee reading."""

from typing import Any

from web3 import AsyncHTTPProvider, AsyncWeb3

from shared.deploy import Deployment, load_artifact


def connect(rpc_url: str) -> AsyncWeb3:
    # A generous pool: intake checks many payments at once against one node.
    return AsyncWeb3(AsyncHTTPProvider(rpc_url, request_kwargs={"timeout": 30}))


def token_contract(w3: AsyncWeb3, deployment: Deployment) -> Any:
    return w3.eth.contract(address=deployment.token, abi=load_artifact("MintToken")["abi"])


def usdc_contract(w3: AsyncWeb3, deployment: Deployment) -> Any:
    return w3.eth.contract(address=deployment.usdc, abi=load_artifact("MockUSDC")["abi"])


def split_signature(signature: str) -> tuple[int, bytes, bytes]:
    """A 65-byte r||s||v signature as the (v, r, s) a contract call takes."""
    raw = bytes.fromhex(signature.removeprefix("0x"))
    if len(raw) != 65:
        raise ValueError(f"signature must be 65 bytes, got {len(raw)}")
    v = raw[64]
    return (v + 27 if v < 27 else v), raw[:32], raw[32:64]
