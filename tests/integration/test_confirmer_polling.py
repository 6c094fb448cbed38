"""The confirmer reads receipts when a block comes, not every poll: a watched batch on a chain that
makes no blocks costs one eth_blockNumber per poll and no receipt calls."""

import asyncio

from web3 import HTTPProvider, Web3

from devstack.rpc_proxy import RpcProxy
from services.batcher.batching import Waiting
from tests.integration.test_batcher_confirmer import enqueue
from tests.support.batcher import in_process_batcher


async def test_receipts_are_read_once_per_block_not_once_per_poll(
    env, services, pg_pool, redis_client, deployment, fund_payers, anvil
):
    payers = fund_payers(2)
    ids = await enqueue(pg_pool, redis_client, env["MINTLINE_NAMESPACE"], deployment, payers, publish=False)
    # A batch stored and never broadcast: watched, and not mined (this chain mines on demand only).
    async with in_process_batcher(pg_pool, redis_client) as batcher:
        assert await batcher.store.store([Waiting(i, "token", 2**62, 0.0) for i in ids]) is not None
    with RpcProxy(anvil.rpc_url) as proxy:
        services("confirmer", RPC_URL=proxy.url, CONFIRMER_POLL_INTERVAL_SECONDS="0.1")
        while proxy.calls["eth_getTransactionReceipt"] == 0:
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)
        before = proxy.calls["eth_getTransactionReceipt"], proxy.calls["eth_blockNumber"]
        await asyncio.sleep(3)  # about 30 polls, no block
        assert proxy.calls["eth_getTransactionReceipt"] == before[0]
        assert proxy.calls["eth_blockNumber"] >= before[1] + 10
        Web3(HTTPProvider(anvil.rpc_url)).provider.make_request("evm_mine", [])  # type: ignore[arg-type]
        for _ in range(50):
            if proxy.calls["eth_getTransactionReceipt"] > before[0]:
                break
            await asyncio.sleep(0.1)
        assert proxy.calls["eth_getTransactionReceipt"] == before[0] + 1
