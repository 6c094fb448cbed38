"""Paying as an attacker would, judged by balances on-chain (the money rule): for every account, mints
received ≤ USDC it paid to the treasury ÷ price, and an honest payer who paid once gets one mint.

The chain here mines a block every 2 s, so an attacker can see the batch transaction waiting in the
mempool and race it with a higher tip: each race is checked to have landed (the attacker's transaction
mined before the batch), so a test cannot pass on a race the batch won.
"""

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import asyncpg
import pytest
from eth_account.signers.local import LocalAccount
from web3 import HTTPProvider, Web3

from devstack.anvil import Anvil
from shared.deploy import Deployment, load_artifact
from tests.support.intake import Intake
from tests.support.payments import authorize, send_signed, usdc_contract

GWEI = 10**9
# The batcher tips 1 gwei; the attacker outbids it by far.
ATTACK_TIP = 50 * GWEI
CANCEL_AUTHORIZATION = {
    "CancelAuthorization": [{"name": "authorizer", "type": "address"}, {"name": "nonce", "type": "bytes32"}]
}


@pytest.fixture(scope="module")
def anvil() -> Iterator[Anvil]:
    """This module's own chain, with blocks 2 s apart: room for a transaction to wait in the mempool."""
    with Anvil(block_time=2) as node:
        yield node


@pytest.fixture
def w3(anvil: Anvil) -> Web3:
    return Web3(HTTPProvider(anvil.rpc_url))


@pytest.fixture
def pipeline(services: Callable[..., Any]) -> None:
    services("batcher", BATCHER_BATCH_WINDOW_SECONDS="0.2")
    services("confirmer")


def with_gas_money(w3: Web3, account: LocalAccount) -> LocalAccount:
    w3.provider.make_request("anvil_setBalance", [account.address, hex(10**18)])  # type: ignore[arg-type]
    return account


def send_fast(w3: Web3, sender: LocalAccount, call: Any) -> str:
    """Send `call` from `sender` with a tip far above the batcher's; returns its hash without waiting."""
    tx = call.build_transaction(
        {
            "from": sender.address,
            "nonce": w3.eth.get_transaction_count(sender.address, "pending"),
            "maxPriorityFeePerGas": ATTACK_TIP,
            "maxFeePerGas": 4 * ATTACK_TIP,
            "gas": 200_000,
        }
    )
    return "0x" + w3.eth.send_raw_transaction(sender.sign_transaction(tx).raw_transaction).hex()


def execute_authorization(w3: Web3, deployment: Deployment, signed: Any) -> Any:
    """USDC's transferWithAuthorization of `signed` (a tests.support.payments.SignedAuthorization)."""
    auth = signed.message
    settle = usdc_contract(w3, deployment).get_function_by_signature(
        "transferWithAuthorization(address,address,uint256,uint256,uint256,bytes32,bytes)"
    )
    return settle(
        auth["from"], auth["to"], auth["value"], auth["validAfter"], auth["validBefore"], auth["nonce"],
        bytes(signed.signed.signature),
    )  # fmt: skip


def cancel_authorization(w3: Web3, deployment: Deployment, payer: LocalAccount, nonce: bytes) -> Any:
    domain = {
        "name": deployment.usdc_name,
        "version": deployment.usdc_version,
        "chainId": deployment.chain_id,
        "verifyingContract": deployment.usdc,
    }
    message = {"authorizer": payer.address, "nonce": nonce}
    signature = payer.sign_typed_data(domain, CANCEL_AUTHORIZATION, message).signature
    cancel = usdc_contract(w3, deployment).get_function_by_signature(
        "cancelAuthorization(address,bytes32,bytes)"
    )
    return cancel(payer.address, nonce, bytes(signature))


async def wait_status(
    pool: asyncpg.Pool, request_id: str, statuses: tuple[str, ...], timeout: float = 60
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = await pool.fetchrow(
            "SELECT r.status, r.error_message, b.tx_hash FROM mint_requests r"
            " LEFT JOIN batches b ON b.id = r.batch_id WHERE r.id = $1",
            uuid.UUID(request_id),
        )
        if row["status"] in statuses:
            return row
        await asyncio.sleep(0.02)
    raise AssertionError(f"request {request_id} never reached {statuses}; it is {row['status']}")


def mined_before(w3: Web3, first: str, second: str) -> bool:
    a, b = w3.eth.wait_for_transaction_receipt(first), w3.eth.wait_for_transaction_receipt(second)  # type: ignore[arg-type]
    return (a["blockNumber"], a["transactionIndex"]) < (b["blockNumber"], b["transactionIndex"])


def paid_to_treasury(w3: Web3, deployment: Deployment, payer: str) -> int:
    """Every USDC unit `payer` ever sent the treasury, from the chain's Transfer logs."""
    transfers = (
        usdc_contract(w3, deployment)
        .events.Transfer()
        .get_logs(from_block=0, argument_filters={"from": payer, "to": deployment.treasury})
    )
    return sum(log["args"]["value"] for log in transfers)


def mints(w3: Web3, deployment: Deployment, payer: str) -> int:
    token = w3.eth.contract(address=deployment.token, abi=load_artifact("MintToken")["abi"])
    return token.functions.balanceOf(payer).call() // deployment.mint_amount


def assert_money_rule(w3: Web3, deployment: Deployment, payers: list[str]) -> None:
    for payer in payers:
        paid = paid_to_treasury(w3, deployment, payer)
        assert mints(w3, deployment, payer) <= paid // deployment.price, (payer, paid)


async def gasless(intake: Intake, signed: Any, **extra: Any) -> tuple[int, dict[str, Any]]:
    return await intake.post(json={"paymentType": "gasless", **signed.payload, **extra})


# --- 1. a burnt authorization nonce is not a payment --------------------------------------------


async def test_a_nonce_burnt_before_the_batch_lands_gets_no_mint(
    intake: Intake, pipeline: None, w3: Web3, deployment: Deployment, fund_payers: Any, pg_pool: asyncpg.Pool
) -> None:
    """Each payer's authorization is accepted; once its batch waits in the mempool, the payer spends the
    authorization's nonce first, on a different authorization (to themselves for 0, to the treasury
    for 1 unit) or a cancellation. The batch entry is skipped, and nothing is minted for it."""
    payers = [with_gas_money(w3, p) for p in fund_payers(6)]
    accepted = []
    for payer in payers:
        signed = authorize(payer, deployment, valid_for=3600)
        status, body = await gasless(intake, signed)
        assert status == 202, body
        accepted.append((payer, signed, body["queueId"]))

    async def burn(index: int, payer: LocalAccount, signed: Any, request_id: str) -> tuple[str, str]:
        row = await wait_status(pg_pool, request_id, ("sent",))
        nonce = signed.message["nonce"]
        if index % 3 == 0:
            other = authorize(payer, deployment, value=0, to=payer.address, nonce=nonce)
            call = execute_authorization(w3, deployment, other)
        elif index % 3 == 1:
            call = execute_authorization(w3, deployment, authorize(payer, deployment, value=1, nonce=nonce))
        else:
            call = cancel_authorization(w3, deployment, payer, nonce)
        return send_fast(w3, payer, call), row["tx_hash"]

    races = await asyncio.gather(*(burn(i, *a) for i, a in enumerate(accepted)))
    for attack, batch in races:
        assert mined_before(w3, attack, batch), "the race was lost: the batch was mined first"

    for payer, _, request_id in accepted:
        row = await wait_status(pg_pool, request_id, ("completed", "failed"))
        assert row["status"] == "failed" and row["error_message"].startswith("not paid"), dict(row)
        assert mints(w3, deployment, payer.address) == 0
    assert_money_rule(w3, deployment, [p.address for p in payers])


async def test_an_authorization_front_run_by_anyone_still_mints_once(
    intake: Intake, pipeline: None, w3: Web3, deployment: Deployment, fund_payers: Any, pg_pool: asyncpg.Pool
) -> None:
    """Someone else submits the payer's own authorization ahead of the batch: the payer paid once and
    gets exactly one mint."""
    payers = fund_payers(3)
    front_runner = with_gas_money(w3, fund_payers(1)[0])
    treasury_before = usdc_contract(w3, deployment).functions.balanceOf(deployment.treasury).call()
    accepted = []
    for payer in payers:
        signed = authorize(payer, deployment)
        status, body = await gasless(intake, signed)
        assert status == 202, body
        accepted.append((signed, body["queueId"]))

    async def front_run(signed: Any, request_id: str) -> tuple[str, str]:
        row = await wait_status(pg_pool, request_id, ("sent",))
        return send_fast(w3, front_runner, execute_authorization(w3, deployment, signed)), row["tx_hash"]

    for attack, batch in await asyncio.gather(*(front_run(*a) for a in accepted)):
        assert mined_before(w3, attack, batch), "the race was lost: the batch was mined first"
    for (_, request_id), payer in zip(accepted, payers, strict=True):
        row = await wait_status(pg_pool, request_id, ("completed", "failed"))
        assert row["status"] == "completed", dict(row)
        assert mints(w3, deployment, payer.address) == 1
    treasury = usdc_contract(w3, deployment).functions.balanceOf(deployment.treasury).call()
    assert treasury == treasury_before + 3 * deployment.price
    assert_money_rule(w3, deployment, [p.address for p in payers])


# --- 2. and 3. one transfer pays for one mint -----------------------------------------------------


async def test_a_settled_authorization_is_not_also_a_custom_payment(
    intake: Intake, pipeline: None, w3: Web3, deployment: Deployment, fund_payers: Any, pg_pool: asyncpg.Pool
) -> None:
    """The payer's authorization is accepted as gasless; the payer submits it to USDC themselves
    (transaction T, ahead of the batch) and posts T as a custom payment: one payment, one mint."""
    payers = [with_gas_money(w3, p) for p in fund_payers(4)]
    for payer in payers:
        signed = authorize(payer, deployment)
        status, body = await gasless(intake, signed)
        assert status == 202, body
        row = await wait_status(pg_pool, body["queueId"], ("sent",))
        settled = send_fast(w3, payer, execute_authorization(w3, deployment, signed))
        assert mined_before(w3, settled, row["tx_hash"])
        for claim in ({}, {"logIndex": 1}, {"payer": payer.address}):
            status, refused = await intake.post(
                json={"paymentType": "custom", "paymentTxHash": settled, **claim}
            )
            assert (status, refused["error"]) == (402, "payment_is_authorization_settlement"), refused
        row = await wait_status(pg_pool, body["queueId"], ("completed", "failed"))
        assert row["status"] == "completed", dict(row)
    for payer in payers:
        assert mints(w3, deployment, payer.address) == 1
    assert_money_rule(w3, deployment, [p.address for p in payers])
    claims = await pg_pool.fetchval("SELECT count(*) FROM mint_requests WHERE payment_type = 'custom'")
    assert claims == 0


async def test_a_batch_transaction_is_not_a_custom_payment(
    intake: Intake, pipeline: None, w3: Web3, deployment: Deployment, fund_payers: Any, pg_pool: asyncpg.Pool
) -> None:
    """A payer who paid more than the price in a batch posts the batch's hash as a custom payment."""
    payer = fund_payers(1)[0]
    status, body = await gasless(intake, authorize(payer, deployment, value=deployment.price + 1))
    assert status == 202, body
    row = await wait_status(pg_pool, body["queueId"], ("completed",))
    batch = row["tx_hash"]
    for claim in ({}, {"logIndex": 0}, {"logIndex": 1}, {"payer": payer.address}):
        status, refused = await intake.post(json={"paymentType": "custom", "paymentTxHash": batch, **claim})
        assert (status, refused["error"]) == (402, "payment_is_mint_transaction"), refused
    assert mints(w3, deployment, payer.address) == 1
    assert_money_rule(w3, deployment, [payer.address])


async def test_a_transfer_log_is_claimed_once_by_the_account_it_is_from(
    intake: Intake, pipeline: None, w3: Web3, deployment: Deployment, fund_payers: Any, pg_pool: asyncpg.Pool
) -> None:
    """A transfer sent from an allowance: the payer is the account the USDC came from, not the sender of
    the transaction, and the log pays for one mint however it is named."""
    owner, spender = (with_gas_money(w3, p) for p in fund_payers(2))
    usdc = usdc_contract(w3, deployment)
    send_signed(w3, owner, usdc.functions.approve(spender.address, deployment.price))
    receipt = send_signed(
        w3, spender, usdc.functions.transferFrom(owner.address, deployment.treasury, deployment.price)
    )
    tx_hash = "0x" + bytes(receipt["transactionHash"]).hex()

    status, refused = await intake.post(
        json={"paymentType": "custom", "paymentTxHash": tx_hash, "payer": spender.address}
    )
    assert (status, refused["error"]) == (400, "payer_mismatch"), refused
    status, body = await intake.post(json={"paymentType": "custom", "paymentTxHash": tx_hash})
    assert status == 202 and body["payer"] == owner.address, body
    log_index = await pg_pool.fetchval(
        "SELECT payment_log_index FROM mint_requests WHERE id = $1", uuid.UUID(body["queueId"])
    )
    for claim in ({}, {"logIndex": log_index}, {"payer": owner.address}):
        status, again = await intake.post(json={"paymentType": "custom", "paymentTxHash": tx_hash, **claim})
        assert (status, again["error"]) == (409, "payment_replayed"), again
    row = await wait_status(pg_pool, body["queueId"], ("completed", "failed"))
    assert row["status"] == "completed", dict(row)
    assert mints(w3, deployment, owner.address) == 1 and mints(w3, deployment, spender.address) == 0
    assert_money_rule(w3, deployment, [owner.address, spender.address])


# --- 5. reservations are exact --------------------------------------------------------------------


async def test_a_payer_funded_for_n_mints_gets_n_accepted_while_earlier_ones_settle(
    intake: Intake,
    services: Callable[..., Any],
    w3: Web3,
    deployment: Deployment,
    fund_payers: Any,
    pg_pool: asyncpg.Pool,
) -> None:
    """Funded for exactly 6 mints: 3 requests are minted on-chain (their USDC debited) but not yet
    confirmed in PostgreSQL (no confirmer runs); 3 more are accepted all the same, the 7th is refused,
    and all 6 complete once the confirmer runs."""
    payer = fund_payers(1, 6 * deployment.price)[0]
    usdc = usdc_contract(w3, deployment)
    batcher = services("batcher", BATCHER_BATCH_WINDOW_SECONDS="0.2")
    first = []
    for _ in range(3):
        status, body = await gasless(intake, authorize(payer, deployment))
        assert status == 202, body
        first.append(body["queueId"])
    deadline = time.monotonic() + 60
    while usdc.functions.balanceOf(payer.address).call() != 3 * deployment.price:
        assert time.monotonic() < deadline, batcher.log_tail()
        await asyncio.sleep(0.2)
    statuses = await pg_pool.fetch("SELECT status FROM mint_requests WHERE id = ANY($1::uuid[])", first)
    assert {r["status"] for r in statuses} == {"sent"}

    later = await asyncio.gather(*(gasless(intake, authorize(payer, deployment)) for _ in range(3)))
    assert [status for status, _ in later] == [202] * 3, later
    status, refused = await gasless(intake, authorize(payer, deployment))
    assert (status, refused["error"]) == (402, "insufficient_balance"), refused

    services("confirmer")
    for request_id in first + [body["queueId"] for _, body in later]:
        row = await wait_status(pg_pool, request_id, ("completed", "failed"))
        assert row["status"] == "completed", dict(row)
    assert mints(w3, deployment, payer.address) == 6
    assert usdc.functions.balanceOf(payer.address).call() == 0
    assert_money_rule(w3, deployment, [payer.address])


async def test_exact_balance_payers_at_full_pace_are_all_accepted(
    intake: Intake, pipeline: None, w3: Web3, deployment: Deployment, fund_payers: Any, pg_pool: asyncpg.Pool
) -> None:
    """Payers funded for exactly 4 mints send their 4 requests at once, then a 5th: 4 accepted, 1
    refused each, and every accepted one minted."""
    payers = fund_payers(8, 4 * deployment.price)
    answers = await asyncio.gather(
        *(gasless(intake, authorize(payer, deployment)) for payer in payers for _ in range(4))
    )
    assert [status for status, _ in answers] == [202] * 32, [a for a in answers if a[0] != 202][:3]
    extra = await asyncio.gather(*(gasless(intake, authorize(payer, deployment)) for payer in payers))
    assert [(s, b["error"]) for s, b in extra] == [(402, "insufficient_balance")] * 8
    for _, body in answers:
        row = await wait_status(pg_pool, body["queueId"], ("completed", "failed"))
        assert row["status"] == "completed", dict(row)
    for payer in payers:
        assert mints(w3, deployment, payer.address) == 4
    assert_money_rule(w3, deployment, [p.address for p in payers])
