"""Chain reads coalesced across concurrent callers (shared/rpc_coalescer.py), against anvil behind the
project's JSON-RPC proxy, which counts the HTTP requests and calls that reach the node: concurrent
reads go out as one batch, a call the node refuses fails only its own caller, and intake's paid
requests share their reads."""

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator

import aiohttp
import pytest
from eth_account.signers.local import LocalAccount
from web3 import HTTPProvider, Web3

from devstack.anvil import DEV_ADDRESSES, Anvil
from devstack.ports import free_port
from devstack.rpc_proxy import RpcProxy
from shared.jsonrpc import JsonRpc, NodeError, RpcError
from shared.rpc_coalescer import Coalescer
from tests.support.intake import running_intake


@pytest.fixture
def proxy(anvil: Anvil) -> Iterator[RpcProxy]:
    with RpcProxy(anvil.rpc_url) as running:
        yield running


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def test_concurrent_reads_go_out_as_one_batch(
    proxy: RpcProxy, session: aiohttp.ClientSession, anvil: Anvil
) -> None:
    reads = Coalescer(JsonRpc(proxy.url, session), window_seconds=0.05)
    balances = await asyncio.gather(
        *(reads.call("eth_getBalance", [address, "latest"]) for address in DEV_ADDRESSES),
        reads.batch([("eth_blockNumber", []), ("eth_chainId", [])]),
    )
    await reads.close()

    w3 = Web3(HTTPProvider(anvil.rpc_url))
    assert [int(b, 16) for b in balances[:-1]] == [w3.eth.get_balance(a) for a in DEV_ADDRESSES]
    head, chain_id = balances[-1]
    assert int(chain_id, 16) == anvil.chain_id and int(head, 16) <= w3.eth.block_number
    # One HTTP request carried every caller's calls.
    assert proxy.requests == 1 and reads.batches_sent == 1
    assert proxy.calls["eth_getBalance"] == len(DEV_ADDRESSES) and reads.calls_sent == len(DEV_ADDRESSES) + 2


async def test_reads_behind_a_batch_in_flight_go_together_when_it_is_answered(
    proxy: RpcProxy, session: aiohttp.ClientSession
) -> None:
    # A window far longer than the test: what waits goes when the batch before it is answered.
    reads = Coalescer(JsonRpc(proxy.url, session), window_seconds=30)
    first = asyncio.ensure_future(reads.call("eth_blockNumber", []))
    await asyncio.sleep(0)  # the first read is on its way alone
    started = time.monotonic()
    later = await asyncio.gather(*(reads.call("eth_chainId", []) for _ in range(10)))
    assert time.monotonic() - started < 5
    assert len(set(later)) == 1 and int(await first, 16) >= 0
    assert reads.batches_sent == proxy.requests == 2 and reads.calls_sent == 11


async def test_a_full_batch_goes_at_once_and_the_rest_waits_for_the_next(
    proxy: RpcProxy, session: aiohttp.ClientSession
) -> None:
    reads = Coalescer(JsonRpc(proxy.url, session), window_seconds=0.05, max_calls=8)
    numbers = await asyncio.gather(*(reads.call("eth_blockNumber", []) for _ in range(20)))
    assert len(set(numbers)) == 1
    # 8 + 8 sent when full, the last 4 when the window closed.
    assert reads.batches_sent == proxy.requests == 3


async def test_one_refused_call_fails_only_its_caller(
    proxy: RpcProxy, session: aiohttp.ClientSession, anvil: Anvil
) -> None:
    reads = Coalescer(JsonRpc(proxy.url, session), window_seconds=0.05)
    results = await asyncio.gather(
        *(reads.call("eth_getBalance", [address, "latest"]) for address in DEV_ADDRESSES[:4]),
        # A method the node does not have: anvil answers an error object for this call alone.
        reads.call("eth_noSuchMethod", []),
        # A caller of two calls, one of them refused: it gets its error, the others their results.
        reads.batch([("eth_blockNumber", []), ("eth_getBalance", ["not an address", "latest"])]),
        return_exceptions=True,
    )
    assert proxy.requests == 1
    w3 = Web3(HTTPProvider(anvil.rpc_url))
    assert [int(r, 16) for r in results[:4]] == [w3.eth.get_balance(a) for a in DEV_ADDRESSES[:4]]
    assert isinstance(results[4], NodeError) and "eth_noSuchMethod" in str(results[4])
    assert isinstance(results[5], NodeError) and "eth_getBalance" in str(results[5])
    # batch_settled hands a caller every result of its own, the failed ones as their errors.
    settled = await asyncio.gather(
        reads.batch_settled([("eth_blockNumber", []), ("eth_noSuchMethod", [])]),
        reads.call("eth_chainId", []),
    )
    assert isinstance(settled[0][0], str) and isinstance(settled[0][1], NodeError)
    assert int(settled[1], 16) == anvil.chain_id
    await reads.close()


async def test_a_node_that_answers_nothing_fails_every_caller_with_an_error_of_its_own(
    session: aiohttp.ClientSession,
) -> None:
    reads = Coalescer(JsonRpc(f"http://127.0.0.1:{free_port()}", session), window_seconds=0.01)
    results = await asyncio.gather(
        *(reads.call("eth_blockNumber", []) for _ in range(5)), return_exceptions=True
    )
    assert all(isinstance(result, RpcError) for result in results)
    assert len({id(result) for result in results}) == 5
    assert reads.batches_sent == 1


async def test_a_caller_that_gives_up_leaves_the_others_their_answers(
    proxy: RpcProxy, session: aiohttp.ClientSession
) -> None:
    reads = Coalescer(JsonRpc(proxy.url, session), window_seconds=0.05)
    leaving = asyncio.ensure_future(reads.call("eth_blockNumber", []))
    staying = asyncio.ensure_future(reads.call("eth_chainId", []))
    await asyncio.sleep(0)  # both are waiting for their batch, which no node has answered yet
    leaving.cancel()
    assert int(await staying, 16) > 0
    assert leaving.cancelled() and proxy.requests == 1
    await reads.close()


async def test_intakes_concurrent_payments_share_their_chain_reads(
    settings_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    proxy: RpcProxy,
    fund_payers: Callable[..., list[LocalAccount]],
) -> None:
    payers = fund_payers(24)
    async with running_intake(
        {**settings_env, "RPC_URL": proxy.url}, monkeypatch, intake_rpc_coalesce_seconds=0.02
    ) as intake:
        requests_before = proxy.requests
        results = await asyncio.gather(*(intake.gasless(intake.payment(payer)) for payer in payers))
        assert [status for status, _ in results] == [202] * 24, results
        # Each payment was read once (one eth_call of PayerState), in far fewer HTTP requests.
        assert proxy.calls["eth_call"] == 24
        assert proxy.requests - requests_before <= 6, proxy.requests - requests_before
