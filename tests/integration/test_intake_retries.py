"""A retry under the same Idempotency-Key gets the first answer whatever the payment looks like by
then: intake reads the chain before it looks the key up (one PostgreSQL round trip for a new request),
so a retry whose payment the chain now shows as used (its own batch settled it) or cannot show at all
(the node is down) must still find its request, and one with another payment is still refused."""

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from web3 import HTTPProvider, Web3

from devstack.anvil import Anvil
from shared.deploy import load_artifact
from tests.support.intake import running_intake
from tests.support.proxy import TcpProxy
from tests.support.requests import wait_final


async def test_a_retry_after_its_payment_was_settled_gets_the_first_answer(
    settings_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    services: Callable[..., Any],
    payer: LocalAccount,
    anvil: Anvil,
) -> None:
    services("batcher", BATCHER_BATCH_WINDOW_SECONDS="0.2")
    services("confirmer")
    async with running_intake(settings_env, monkeypatch) as intake:
        payment, key = intake.payment(payer), {"Idempotency-Key": "settled-then-retried"}
        status, first = await intake.gasless(payment, headers=key)
        assert status == 202, first
        [row] = await wait_final(intake.pool, [first["queueId"]])
        assert row["status"] == "completed"
        token = Web3(HTTPProvider(anvil.rpc_url)).eth.contract(
            address=intake.deployment.token, abi=load_artifact("MintToken")["abi"]
        )
        assert token.functions.processed(bytes.fromhex(row["payment_id"][2:])).call()

        async with intake.client.post("/mint", json={"paymentType": "gasless", **payment}, headers=key) as r:
            again = await r.json()
            assert (r.status, r.headers.get("Idempotent-Replayed")) == (200, "true")
        assert again == {**first, "queuePosition": 0, "estimatedWaitSeconds": 0}
        # Without the key the same payment is a replay, and the key with another payment is refused.
        status, body = await intake.gasless(payment)
        assert (status, body["error"]) == (409, "payment_replayed")
        status, body = await intake.gasless(intake.payment(payer), headers=key)
        assert (status, body["error"]) == (422, "idempotency_key_reused")
        assert await intake.pool.fetchval("SELECT count(*) FROM mint_requests") == 1


async def test_a_retry_while_the_node_is_down_gets_the_first_answer(
    settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, payer: LocalAccount, anvil: Anvil
) -> None:
    node = TcpProxy(int(anvil.rpc_url.rsplit(":", 1)[1]))
    await node.restore()
    try:
        async with running_intake({**settings_env, "RPC_URL": node.url}, monkeypatch) as intake:
            payment, key = intake.payment(payer), {"Idempotency-Key": "retried-in-an-outage"}
            status, first = await intake.gasless(payment, headers=key)
            assert status == 202, first
            await node.cut()
            retries = await asyncio.gather(*(intake.gasless(payment, headers=key) for _ in range(3)))
            assert retries == [(200, first)] * 3
            # A new payment needs the chain: 503, and nothing is stored for it.
            status, body = await intake.gasless(intake.payment(payer), headers={"Idempotency-Key": "new"})
            assert (status, body["error"]) == (503, "chain_unavailable")
            assert await intake.pool.fetchval("SELECT count(*) FROM mint_requests") == 1
    finally:
        await node.cut()
