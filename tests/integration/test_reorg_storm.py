"""Reorgs one after another, each right after batches were confirmed: the chaos run's reorg without
the rest of its faults, repeated until a race between a confirmation, the finality watch and the
batcher's broadcasts has had many chances to strike. Every request still ends completed once on the
chain as it now is, and the wallet's nonce sequence has no hole."""

from collections.abc import Iterator

import asyncpg
import pytest
from redis.asyncio import Redis
from web3 import Web3

from devstack.anvil import Anvil
from shared.deploy import Deployment
from tests.integration.test_batcher_confirmer import enqueue, minted_once
from tests.support.audit import describe, wait_settled
from tests.support.chaos import FaultLog, anvil_web3, reorg_completed

REORGS = 8
PER_WAVE = 24


@pytest.fixture(scope="module")
def anvil() -> Iterator[Anvil]:
    """A chain of this module's own, mining a block a second, whose history the test rewrites."""
    with Anvil(block_time=1) as node:
        yield node


@pytest.mark.timeout(600)
async def test_every_request_completes_once_through_reorgs_right_after_confirmations(
    settings_env: dict[str, str],
    services,
    pg_pool: asyncpg.Pool,
    redis_client: Redis,
    deployment: Deployment,
    fund_payers,
    anvil: Anvil,
) -> None:
    w3: Web3 = anvil_web3(anvil.rpc_url)
    payers = fund_payers(REORGS * PER_WAVE)
    batcher = services("batcher", BATCHER_BATCH_WINDOW_SECONDS="0.3", BATCHER_BATCH_SIZE="8")
    confirmer = services("confirmer", CONFIRMER_CONFIRMATIONS="2", CONFIRMER_FINALITY_CHECK_SECONDS="0.5")
    faults = FaultLog()
    namespace = settings_env["MINTLINE_NAMESPACE"]
    reorged: list[int] = []
    for wave in range(REORGS):
        await enqueue(
            pg_pool, redis_client, namespace, deployment, payers[wave * PER_WAVE : (wave + 1) * PER_WAVE]
        )
        reorged += await reorg_completed(w3, pg_pool, 3, faults)
    assert len(reorged) >= REORGS, faults.report()
    done = await wait_settled(pg_pool, w3, deployment.minter, stalled_after=60, timeout=300)
    report = "\n".join([faults.report(), *await describe(pg_pool, w3, deployment.minter)])
    assert done, report + batcher.log_tail() + confirmer.log_tail()
    statuses = await pg_pool.fetch("SELECT status, count(*) FROM mint_requests GROUP BY status")
    assert {r["status"]: r["count"] for r in statuses} == {"completed": len(payers)}, report
    await minted_once(w3, deployment, payers)
