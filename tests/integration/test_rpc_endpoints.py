"""Several JSON-RPC endpoints (RPC_URLS) behind real fault proxies in front of anvil: reads fail over
to the next endpoint and stay there, raw transactions go to every endpoint, and an error comes back
only when none of them answers."""

from collections.abc import AsyncIterator

import aiohttp
import pytest
from eth_account import Account
from web3 import HTTPProvider, Web3

from devstack.anvil import DEV_ADDRESSES, Anvil
from devstack.ports import free_port
from devstack.rpc_proxy import RpcProxy
from shared.jsonrpc import JsonRpc, NodeError, RpcError


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as client:
        yield client


async def test_reads_fail_over_to_the_next_endpoint_and_stay_there(anvil: Anvil, session) -> None:
    with RpcProxy(anvil.rpc_url) as first, RpcProxy(anvil.rpc_url) as second:
        first.unavailable_for(60)  # HTML 503 pages
        rpc = JsonRpc([first.url, second.url], session, backoff_base=0.01)
        assert int(await rpc.call("eth_chainId", []), 16) == anvil.chain_id
        assert rpc.url == second.url
        refused = first.refused["503"]
        assert refused >= 1
        await rpc.call("eth_blockNumber", [])
        assert first.refused["503"] == refused  # not asked again while the second one answers
        assert second.calls["eth_blockNumber"] == 1


async def test_an_endpoint_that_cannot_be_reached_is_skipped_at_once(anvil: Anvil, session) -> None:
    with RpcProxy(anvil.rpc_url) as up:
        rpc = JsonRpc([f"http://127.0.0.1:{free_port()}", up.url], session)
        blocks = await rpc.batch([("eth_blockNumber", []), ("eth_chainId", [])])
        assert int(blocks[1], 16) == anvil.chain_id
        assert up.calls["eth_chainId"] == 1


async def test_a_rate_limited_endpoint_hands_over_to_the_next_without_waiting_out_retry_after(
    anvil: Anvil, session
) -> None:
    with RpcProxy(anvil.rpc_url) as limited, RpcProxy(anvil.rpc_url) as free:
        limited.rate_limit_for(60)
        limited.retry_after = "30"
        rpc = JsonRpc([limited.url, free.url], session)
        assert int(await rpc.call("eth_chainId", []), 16) == anvil.chain_id
        assert limited.refused["429"] == 1


async def test_no_endpoint_answering_is_an_error(session) -> None:
    rpc = JsonRpc([f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"], session)
    with pytest.raises(RpcError, match="did not answer"):
        await rpc.call("eth_chainId", [])


async def test_a_raw_transaction_goes_to_every_endpoint(anvil: Anvil, session) -> None:
    sender = Account.create()
    w3 = Web3(HTTPProvider(anvil.rpc_url))
    w3.provider.make_request("anvil_setBalance", [sender.address, hex(10**18)])  # type: ignore[arg-type]
    signed = sender.sign_transaction(
        {"chainId": anvil.chain_id, "nonce": w3.eth.get_transaction_count(sender.address, "pending"),
         "to": DEV_ADDRESSES[8], "value": 1, "gas": 21_000, "gasPrice": 2 * w3.eth.gas_price}
    )  # fmt: skip
    with RpcProxy(anvil.rpc_url) as dropping, RpcProxy(anvil.rpc_url) as forwarding:
        dropping.drop_transactions = True
        down = f"http://127.0.0.1:{free_port()}"
        rpc = JsonRpc([dropping.url, down, forwarding.url], session)
        answers = await rpc.send_raw_transaction(bytes(signed.raw_transaction))
        tx_hash = "0x" + bytes(signed.hash).hex()
        assert answers[0] == tx_hash and isinstance(answers[1], RpcError) and answers[2] == tx_hash
        assert dropping.dropped == [tx_hash]
        assert forwarding.calls["eth_sendRawTransaction"] == 1
    assert w3.eth.wait_for_transaction_receipt(tx_hash, timeout=10)["status"] == 1
    # A node's own refusal comes back as what it said, from every endpoint that was asked.
    again = await JsonRpc(anvil.rpc_url, session).send_raw_transaction(bytes(signed.raw_transaction))
    assert isinstance(again[0], NodeError) and "nonce too low" in again[0].message
