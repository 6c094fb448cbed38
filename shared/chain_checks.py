"""Start-up checks that the RPC's chain is the deployment's: chain id, contract code, the minter role
of every batcher wallet.

A service pointed at the wrong chain or at stale addresses would accept payments it can never settle,
or sign batches every node rejects; it refuses to start instead, naming what differs. A node that does
not answer is no reason to refuse: the services already wait out an outage (the batcher's recovery,
intake's 503), so only a definite mismatch stops start-up.
"""

import asyncio
import logging
from collections.abc import Sequence

from eth_utils import keccak, to_checksum_address

from shared.deploy import Deployment
from shared.jsonrpc import JsonRpc, RpcError

log = logging.getLogger(__name__)

# OpenZeppelin AccessControl, as MintToken and Gen1NFT use it.
MINTER_ROLE = keccak(text="MINTER_ROLE")
HAS_ROLE_SELECTOR = keccak(text="hasRole(bytes32,address)")[:4]
# A node that hangs is treated like one that is down; the check must not hold start-up.
CHECK_TIMEOUT_SECONDS = 5.0


class ChainMismatch(Exception):
    """The chain the RPC serves is not the one the deployment describes."""

    # What the service does about it, for its last log line.
    outcome = "refusing to start"


def has_role_call(contract: str, role: bytes, account: str) -> tuple[str, list[object]]:
    data = HAS_ROLE_SELECTOR + role + bytes(12) + bytes.fromhex(account.removeprefix("0x"))
    return "eth_call", [{"to": contract, "data": "0x" + data.hex()}, "latest"]


async def find_mismatch(rpc: JsonRpc, deployment: Deployment, minters: Sequence[str] = ()) -> str | None:
    """What differs between the chain and the deployment (None if nothing does); RpcError if the node
    does not answer. Every address in `minters` must hold MINTER_ROLE on both mint contracts."""
    found_chain_id = int(await rpc.call("eth_chainId", []), 16)
    if found_chain_id != deployment.chain_id:
        return f"the RPC's chain id is {found_chain_id}, the deployment's is {deployment.chain_id}"
    contracts = {"usdc": deployment.usdc, "token": deployment.token, "nft": deployment.nft}
    codes = await rpc.batch([("eth_getCode", [address, "latest"]) for address in contracts.values()])
    for (name, address), code in zip(contracts.items(), codes, strict=True):
        if code in (None, "", "0x"):
            return f"the deployment's {name} contract {address} has no code on chain {found_chain_id}"
    if not minters:
        return None
    mint_contracts = {"token": deployment.token, "nft": deployment.nft}
    asked = [(minter, name, address) for minter in minters for name, address in mint_contracts.items()]
    answers = await rpc.batch([has_role_call(address, MINTER_ROLE, minter) for minter, _, address in asked])
    for (minter, name, address), answer in zip(asked, answers, strict=True):
        if int(str(answer or "0x").removeprefix("0x") or "0", 16) == 0:
            listed = deployment.minters
            known = f"minter is {listed[0]}" if len(listed) == 1 else f"minters are {', '.join(listed)}"
            return (
                f"the batcher wallet {to_checksum_address(minter)} does not hold MINTER_ROLE on the "
                f"{name} contract {address} (the deployment's {known})"
            )
    return None


async def check_chain(rpc: JsonRpc, deployment: Deployment, minters: Sequence[str] = ()) -> None:
    """Raise ChainMismatch naming what differs; log and go on if the node cannot be asked now."""
    try:
        mismatch = await asyncio.wait_for(find_mismatch(rpc, deployment, minters), CHECK_TIMEOUT_SECONDS)
    except (RpcError, TimeoutError, ValueError) as exc:
        log.warning("could not check the chain against the deployment at start-up (%s); going on", exc)
        return
    if mismatch is not None:
        raise ChainMismatch(mismatch)
    log.info("chain %d matches the deployment", deployment.chain_id)
