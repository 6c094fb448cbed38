"""The confirmer reads receipts when a block comes, not every poll: a watched batch on a chain that
makes no blocks costs one eth_blockNumber per poll and no receipt calls; and a receipt once read is
kept while its block keeps its hash."""

import asyncio

import aiohttp
from web3 import HTTPProvider, Web3

from devstack.rpc_proxy import RpcProxy
from services.batcher.batching import Waiting
from services.confirmer import watching
from shared.jsonrpc import JsonRpc
from tests.integration.test_batcher_confirmer import enqueue, logged, wait_for
from tests.support.batcher import in_process_batcher
from tests.support.chaos import until


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


async def test_a_round_is_read_at_the_head_read_before_it_and_asks_for_no_head_of_its_own(
    env, pg_pool, redis_client, deployment, fund_payers, anvil
):
    """The poll's own eth_blockNumber is the round's head: the round asks the nonces and receipts only."""
    ids = await enqueue(
        pg_pool, redis_client, env["MINTLINE_NAMESPACE"], deployment, fund_payers(2), publish=False
    )
    async with in_process_batcher(pg_pool, redis_client) as batcher:
        assert await batcher.store.store([Waiting(i, "token", 2**62, 0.0) for i in ids]) is not None
    watched = list((await watching.open_batches(pg_pool, {})).values())
    head = Web3(HTTPProvider(anvil.rpc_url)).eth.block_number
    with RpcProxy(anvil.rpc_url) as proxy:
        async with aiohttp.ClientSession() as session:
            seen = await watching.read_round(JsonRpc(proxy.url, session), watched, 1, head)
    assert (seen.head, seen.receipts, seen.unanswered) == (head, {}, set())
    assert proxy.calls["eth_blockNumber"] == 0
    assert proxy.calls["eth_getTransactionReceipt"] == 1 and proxy.calls["eth_getTransactionCount"] == 1


async def test_a_receipt_is_read_once_and_its_block_watched_until_deep_even_through_a_reorg(
    env, services, pg_pool, redis_client, deployment, fund_payers, anvil
):
    """A mined batch's receipt (megabytes for a full batch) is read once; until it is deep enough each
    new block costs only its block's header. When that block is replaced (a reorg re-mines the same
    transaction in another block), the kept receipt is dropped and read again: the batch completes on
    the block the chain has now."""
    w3 = Web3(HTTPProvider(anvil.rpc_url))
    payers = fund_payers(2)
    ids = await enqueue(pg_pool, redis_client, env["MINTLINE_NAMESPACE"], deployment, payers)
    with RpcProxy(anvil.rpc_url) as proxy:
        confirmer = services(
            "confirmer", RPC_URL=proxy.url, CONFIRMER_CONFIRMATIONS="4", CONFIRMER_POLL_INTERVAL_SECONDS="0.1"
        )
        services("batcher")  # this chain mines each transaction at once
        assert await until(lambda: proxy.calls["eth_getTransactionReceipt"] > 0, timeout=30)
        batch = await pg_pool.fetchrow("SELECT tx_hash, raw_tx FROM batches")
        mined_in = w3.eth.get_transaction_receipt(batch["tx_hash"])["blockNumber"]
        await asyncio.sleep(0.5)
        read = proxy.calls["eth_getTransactionReceipt"]
        headers = proxy.calls["eth_getBlockByNumber"]
        for _ in range(2):
            w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
            await asyncio.sleep(0.5)
        assert proxy.calls["eth_getTransactionReceipt"] == read
        assert proxy.calls["eth_getBlockByNumber"] >= headers + 2

        # The batch's block and the two after it replaced; the same transaction in the first new one.
        old_hash = w3.eth.get_block(mined_in)["hash"]
        raw = "0x" + bytes(batch["raw_tx"]).hex()
        w3.provider.make_request("anvil_reorg", [3, [[raw, 0]]])  # type: ignore[arg-type]
        assert w3.eth.get_block(mined_in)["hash"] != old_hash
        w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]  # the next block: a round
        await logged(confirmer, "reorged away; reading its attempts again")
        w3.provider.make_request("anvil_mine", [4])  # type: ignore[arg-type]
        rows = await wait_for(pg_pool, ids, timeout=30)
    assert {r["status"] for r in rows} == {"completed"}
    stored = await pg_pool.fetchrow("SELECT block_number, block_hash FROM batches")
    receipt = w3.eth.get_transaction_receipt(batch["tx_hash"])
    assert (stored["block_number"], stored["block_hash"]) == (
        receipt["blockNumber"],
        receipt["blockHash"].to_0x_hex(),
    )
    assert proxy.calls["eth_getTransactionReceipt"] <= read + 3  # read again after the reorg only
