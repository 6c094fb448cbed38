"""The whole pipeline against a second node implementation, Hardhat's node (interval mining), so the
system is not tuned to anvil alone: intake, batcher and confirmer as processes, as test_e2e runs them."""

import asyncio
from collections.abc import Iterator

import aiohttp
import asyncpg
import pytest
from web3 import HTTPProvider, Web3

from devstack.hardhat import HardhatNode
from shared.deploy import Deployment, load_artifact
from tests.integration.test_e2e import post_mint
from tests.support.payments import usdc_contract
from tests.support.requests import wait_final

KINDS = ("x402", "gasless", "custom")
MINTS = 36


@pytest.fixture(scope="module")
def anvil() -> Iterator[HardhatNode]:
    """The chain every fixture of this module deploys to and pays on: Hardhat's node, mining a block
    a second whether or not a transaction came, as a real chain does."""
    with HardhatNode(block_time=1) as node:
        yield node


def test_the_node_is_hardhat(anvil: HardhatNode) -> None:
    version = Web3(HTTPProvider(anvil.rpc_url)).client_version
    assert version.startswith("HardhatNetwork/"), version


async def test_paid_mints_of_every_kind_complete_exactly_once_on_hardhat(
    intake_url,
    services,
    pg_pool: asyncpg.Pool,
    deployment: Deployment,
    fund_payers,
    anvil: HardhatNode,
) -> None:
    url = await intake_url()
    # A realistic depth on a chain that mines on its own clock.
    services("batcher", BATCHER_BATCH_SIZE="10")
    confirmer = services("confirmer", CONFIRMER_CONFIRMATIONS="3")
    w3 = Web3(HTTPProvider(anvil.rpc_url))
    payers = fund_payers(12)
    treasury_before = usdc_contract(w3, deployment).functions.balanceOf(deployment.treasury).call()
    plans = [(KINDS[i % 3], payers[i % 12]) for i in range(MINTS)]
    async with aiohttp.ClientSession() as session:
        bodies = await asyncio.gather(
            *(post_mint(session, url, kind, payer, deployment, w3) for kind, payer in plans)
        )
    ids = [b["queueId"] for b in bodies]
    assert len(set(ids)) == MINTS and {b["paymentType"] for b in bodies} == set(KINDS)

    rows = await wait_final(pg_pool, ids, timeout=180)
    assert [r["status"] for r in rows] == ["completed"] * MINTS, (
        [r["error_message"] for r in rows if r["status"] != "completed"][:5],
        confirmer.log_tail(),
    )
    # Completed exactly once: one history step into completed per request, every payment processed.
    completions = await pg_pool.fetch(
        "SELECT request_id, count(*) AS n FROM mint_request_history WHERE status = 'completed'"
        " GROUP BY request_id"
    )
    assert sorted(r["n"] for r in completions) == [1] * MINTS

    token = w3.eth.contract(address=deployment.token, abi=load_artifact("MintToken")["abi"])
    assert all(token.functions.processed(bytes.fromhex(r["payment_id"][2:])).call() for r in rows)
    for payer in payers:
        assert token.functions.balanceOf(payer.address).call() == 3 * deployment.mint_amount
    assert token.functions.totalSupply().call() == MINTS * deployment.mint_amount
    treasury = usdc_contract(w3, deployment).functions.balanceOf(deployment.treasury).call()
    assert treasury == treasury_before + MINTS * deployment.price
    # Several blocks of batches, each on the chain as the confirmer recorded it.
    batches = await pg_pool.fetch("SELECT status, block_number, block_hash FROM batches ORDER BY nonce")
    assert len(batches) >= 2 and {b["status"] for b in batches} == {"confirmed"}
    for batch in batches:
        assert w3.eth.get_block(batch["block_number"])["hash"].to_0x_hex() == batch["block_hash"]
    assert w3.eth.get_transaction_count(deployment.minter, "pending") == w3.eth.get_transaction_count(
        deployment.minter, "latest"
    )
