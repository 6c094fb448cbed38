"""The fault-injecting RPC proxy in front of a real anvil, and the JSON-RPC client surviving its faults."""

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
from eth_account import Account
from web3 import HTTPProvider, Web3

from devstack.anvil import DEV_ADDRESSES, DEV_KEYS, Anvil
from devstack.rpc_proxy import RpcProxy
from shared.jsonrpc import JsonRpc, RpcError
from tests.integration.test_batcher_confirmer import enqueue, wait_for


@pytest.fixture
def proxy(anvil: Anvil) -> Iterator[RpcProxy]:
    with RpcProxy(anvil.rpc_url) as running:
        yield running


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as client:
        yield client


async def raw(session: aiohttp.ClientSession, url: str, payload: object) -> tuple[int, str, str]:
    async with session.post(url, json=payload) as response:
        return response.status, response.content_type, await response.text()


def call(method: str, params: list, call_id: int = 1) -> dict:
    return {"jsonrpc": "2.0", "id": call_id, "method": method, "params": params}


def mine(anvil: Anvil, blocks: int) -> None:
    Web3(HTTPProvider(anvil.rpc_url)).provider.make_request("anvil_mine", [hex(blocks)])  # type: ignore[arg-type]


# The proxy's faults, seen on the wire.


async def test_proxy_forwards_and_counts_calls_per_method(proxy, session, anvil):
    w3 = Web3(HTTPProvider(proxy.url))
    assert w3.eth.chain_id == 31337
    assert w3.eth.block_number == Web3(HTTPProvider(anvil.rpc_url)).eth.block_number
    assert proxy.calls["eth_chainId"] == 1 and proxy.calls["eth_blockNumber"] == 1


async def test_log_range_cap_refuses_a_wide_query_and_answers_a_narrow_one(proxy, session, anvil):
    mine(anvil, 30)
    proxy.max_log_range = 10
    wide = call("eth_getLogs", [{"fromBlock": "0x0", "toBlock": "latest"}], 1)
    narrow = call("eth_getLogs", [{"fromBlock": "0x1", "toBlock": "0xa"}], 2)
    status, _, body = await raw(session, proxy.url, [wide, narrow])
    assert status == 200
    answers = {a["id"]: a for a in json.loads(body)}
    assert answers[1]["error"]["message"] == "query exceeds max block range 10"
    assert isinstance(answers[2]["result"], list)


async def test_batch_cap_answers_an_error_object_or_413(proxy, session):
    proxy.max_batch = 3
    batch = [call("eth_chainId", [], i) for i in range(4)]
    status, _, body = await raw(session, proxy.url, batch)
    assert status == 200 and '"error"' in body and body.lstrip().startswith("{")
    proxy.batch_refusal = "413"
    status, _, _ = await raw(session, proxy.url, batch)
    assert status == 413
    status, _, body = await raw(session, proxy.url, batch[:3])
    assert status == 200 and body.count('"result"') == 3


async def test_rate_limit_and_html_503(proxy, session):
    proxy.rate_limit_every = 2
    statuses = [(await raw(session, proxy.url, call("eth_chainId", [])))[0] for _ in range(4)]
    assert statuses == [200, 429, 200, 429]
    proxy.heal()
    proxy.unavailable_for(0.5)
    status, content_type, body = await raw(session, proxy.url, call("eth_chainId", []))
    assert (status, content_type) == (503, "text/html") and "<html>" in body
    await asyncio.sleep(0.5)
    assert (await raw(session, proxy.url, call("eth_chainId", [])))[0] == 200


async def test_lagging_replica_answers_a_block_behind(proxy, anvil):
    direct = Web3(HTTPProvider(anvil.rpc_url))
    lagging = Web3(HTTPProvider(proxy.url))
    sender = Account.from_key(DEV_KEYS[8])  # anvil's public dev key 8
    tx_hash = direct.eth.send_transaction({"from": sender.address, "to": DEV_ADDRESSES[8], "value": 1})
    direct.eth.wait_for_transaction_receipt(tx_hash)
    head = direct.eth.block_number
    proxy.lagging = True
    assert lagging.eth.block_number == head - 1
    assert lagging.eth.get_block("latest")["number"] == head - 1
    answer = lagging.provider.make_request("eth_getTransactionReceipt", [tx_hash.to_0x_hex()])  # type: ignore[arg-type]
    assert answer["result"] is None
    mine(anvil, 1)
    assert lagging.eth.get_transaction_receipt(tx_hash)["blockNumber"] == head


async def test_dropped_transaction_is_answered_with_its_hash_but_never_mined(proxy, anvil):
    direct = Web3(HTTPProvider(anvil.rpc_url))
    sender = Account.from_key(DEV_KEYS[8])  # anvil's public dev key 8
    signed_nonce = direct.eth.get_transaction_count(sender.address, "pending")
    signed = sender.sign_transaction(
        {
            "to": DEV_ADDRESSES[8],
            "value": 1,
            "gas": 21000,
            "maxFeePerGas": 10**10,
            "maxPriorityFeePerGas": 10**9,
            "nonce": signed_nonce,
            "chainId": 31337,
        }
    )
    proxy.drop_transactions = True
    answered = Web3(HTTPProvider(proxy.url)).eth.send_raw_transaction(signed.raw_transaction)
    assert answered == signed.hash
    assert proxy.dropped == [signed.hash.to_0x_hex()]
    mine(anvil, 1)
    assert direct.eth.get_transaction_count(sender.address) == signed_nonce


# JsonRpc through the proxy.


async def test_a_batch_larger_than_the_providers_cap_is_sent_in_chunks(proxy, session):
    proxy.max_batch = 5
    rpc = JsonRpc(proxy.url, session, max_batch=5)
    results = await rpc.batch([("eth_getBalance", [address, "latest"]) for address in DEV_ADDRESSES] * 2)
    assert len(results) == 20 and all(int(r, 16) > 0 for r in results)
    assert proxy.refused["batch"] == 0


async def test_a_batch_refused_whole_falls_back_to_smaller_chunks(proxy, session):
    proxy.max_batch = 3
    for refusal in ("error", "413"):
        proxy.batch_refusal = refusal
        rpc = JsonRpc(proxy.url, session)  # its default chunk of 100 is over this provider's cap
        results = await rpc.batch([("eth_chainId", [])] * 10)
        assert results == ["0x7a69"] * 10
    assert proxy.refused["batch"] > 0


async def test_429s_and_html_503s_are_retried(proxy, session):
    rpc = JsonRpc(proxy.url, session)
    proxy.rate_limit_every, proxy.retry_after = 2, "0.05"
    for _ in range(4):
        assert await rpc.call("eth_chainId", []) == "0x7a69"
    proxy.heal()
    proxy.html_503_every = 2
    for _ in range(4):
        assert await rpc.call("eth_chainId", []) == "0x7a69"
    assert proxy.refused["429"] >= 2 and proxy.refused["503"] >= 2


async def test_retry_after_is_honoured_and_the_attempts_are_bounded(proxy, session):
    rpc = JsonRpc(proxy.url, session, attempts=3, max_retry_after=0.3)
    proxy.retry_after = "0.3"
    proxy.rate_limit_for(0.25)
    started = time.monotonic()
    assert await rpc.call("eth_chainId", []) == "0x7a69"
    assert time.monotonic() - started >= 0.25
    proxy.unavailable_for(60)
    with pytest.raises(RpcError, match="HTTP 503, 3 times"):
        await rpc.call("eth_chainId", [])
    assert proxy.refused["503"] == 3


async def test_every_kth_call_of_the_failing_method_fails_within_one_batch_too(proxy, session):
    """Counted call by call: of four in one JSON-RPC batch, the second and the fourth fail (counted by
    request, all four would share one count and fail or pass together)."""
    proxy.failing_method, proxy.fail_every = "eth_chainId", 2
    rpc = JsonRpc(proxy.url, session)
    answers = await rpc.batch_settled([("eth_chainId", [])] * 4)
    assert [isinstance(a, RpcError) for a in answers] == [False, True, False, True]
    assert proxy.refused["failing_method"] == 2


async def test_one_failed_call_leaves_the_others_results(proxy, session, anvil):
    mine(anvil, 30)
    proxy.max_log_range = 10
    rpc = JsonRpc(proxy.url, session)
    calls = [
        ("eth_chainId", []),
        ("eth_getLogs", [{"fromBlock": "0x0", "toBlock": "latest"}]),
        ("eth_getBalance", [DEV_ADDRESSES[0], "latest"]),
    ]
    chain_id, failed, balance = await rpc.batch_settled(calls)
    assert chain_id == "0x7a69" and int(balance, 16) > 0
    assert isinstance(failed, RpcError) and "max block range 10" in str(failed)
    with pytest.raises(RpcError, match="max block range"):
        await rpc.batch(calls)


# The confirmer behind a strict provider.


async def test_confirmer_confirms_behind_a_batch_cap_429s_and_failing_receipt_calls(
    settings_env, services, pg_pool, redis_client, deployment, fund_payers, anvil
):
    payers = fund_payers(30)
    ids = await enqueue(pg_pool, redis_client, settings_env["MINTLINE_NAMESPACE"], deployment, payers)
    with RpcProxy(anvil.rpc_url) as proxy:
        proxy.max_batch, proxy.rate_limit_every, proxy.retry_after = 5, 3, "0.1"
        proxy.failing_method, proxy.fail_every = "eth_getTransactionReceipt", 2
        batcher = services("batcher", BATCHER_BATCH_SIZE="5")
        confirmer = services("confirmer", RPC_URL=proxy.url, RPC_MAX_BATCH="5")
        rows = await wait_for(pg_pool, ids)
        assert [r["status"] for r in rows] == ["completed"] * 30, batcher.log_tail() + confirmer.log_tail()
        assert proxy.refused["429"] > 0 and proxy.refused["failing_method"] > 0
        assert proxy.refused["batch"] == 0
