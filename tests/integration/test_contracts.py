"""MockUSDC's EIP-3009 and MintToken.batchMint on a real anvil, with authorizations signed as payers do."""

import os
from dataclasses import dataclass
from typing import Any

import pytest
from eth_account import Account
from eth_utils import function_signature_to_4byte_selector
from web3 import HTTPProvider, Web3
from web3.exceptions import ContractCustomError, ContractLogicError
from web3.logs import DISCARD
from web3.types import TxReceipt

from devstack.anvil import DEV_ADDRESSES, DEV_KEYS, Anvil
from shared.deploy import Deployment, load_artifact
from tests.support.payments import SignedAuthorization, authorize

# Roles of the public anvil dev accounts, as set up by the `deployment` fixture.
ADMIN, MINTER, TREASURY = DEV_ADDRESSES[0], DEV_ADDRESSES[1], DEV_ADDRESSES[2]
PAYER_KEYS = DEV_KEYS[3:]
ZERO_ADDRESS = "0x" + "00" * 20
ZERO_WORD = b"\x00" * 32
# "Paid off-contract": nothing for batchMint to settle.
NO_AUTH = {
    "from": ZERO_ADDRESS, "value": 0, "validAfter": 0, "validBefore": 0,
    "nonce": ZERO_WORD, "v": 0, "r": ZERO_WORD, "s": ZERO_WORD,
}  # fmt: skip


@dataclass
class Chain:
    w3: Web3
    deployment: Deployment
    token: Any
    usdc: Any

    def now(self) -> int:
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def sign(
        self, key: str, *, valid_before: int | None = None, signer_key: str | None = None, **terms: Any
    ) -> tuple[dict[str, Any], SignedAuthorization]:
        """An EIP-3009 authorization from `key`'s account (signed by `signer_key` if given) as a batchMint
        Authorization, plus the signed original. By default it pays the price to the treasury within an
        hour of chain time; other terms as `tests.support.payments.authorize`."""
        signed = authorize(
            Account.from_key(key),
            self.deployment,
            valid_before=self.now() + 3600 if valid_before is None else valid_before,
            signer=Account.from_key(signer_key) if signer_key else None,
            **terms,
        )
        # batchMint's Authorization has no `to`: the contract pays the treasury.
        fields = ("from", "value", "validAfter", "validBefore", "nonce")
        auth = {name: signed.message[name] for name in fields} | dict(zip("vrs", signed.vrs, strict=True))
        return auth, signed

    def entry(
        self, to: str, auth: dict[str, Any] = NO_AUTH, payment_id: bytes | None = None
    ) -> dict[str, Any]:
        return {"to": to, "paymentId": payment_id or os.urandom(32), "auth": auth}

    def batch_mint(self, entries: list[dict[str, Any]]) -> TxReceipt:
        tx_hash = self.token.functions.batchMint(entries).transact({"from": MINTER})
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash)
        assert receipt["status"] == 1
        return receipt

    def minted(self, receipt: TxReceipt) -> list[tuple[bytes, str, int]]:
        events = self.token.events.Minted().process_receipt(receipt, errors=DISCARD)
        return [(e.args.paymentId, e.args.to, e.args.amount) for e in events]

    def skipped(self, receipt: TxReceipt) -> list[tuple[bytes, str, str]]:
        events = self.token.events.MintSkipped().process_receipt(receipt, errors=DISCARD)
        return [(e.args.paymentId, e.args.to, e.args.reason) for e in events]

    def usdc_balance(self, address: str) -> int:
        return int(self.usdc.functions.balanceOf(address).call())

    def token_balance(self, address: str) -> int:
        return int(self.token.functions.balanceOf(address).call())


@pytest.fixture
def chain(anvil: Anvil, deployment: Deployment) -> Chain:
    w3 = Web3(HTTPProvider(anvil.rpc_url))
    return Chain(
        w3=w3,
        deployment=deployment,
        token=w3.eth.contract(address=deployment.token, abi=load_artifact("MintToken")["abi"]),
        usdc=w3.eth.contract(address=deployment.usdc, abi=load_artifact("MockUSDC")["abi"]),
    )


def test_batch_mints_to_each_payer_and_pays_the_treasury(chain: Chain) -> None:
    payers = [Account.from_key(key).address for key in PAYER_KEYS[:4]]
    before = {payer: chain.usdc_balance(payer) for payer in payers}
    auths = [chain.sign(key)[0] for key in PAYER_KEYS[:4]]
    entries = [chain.entry(payer, auth) for payer, auth in zip(payers, auths, strict=True)]

    receipt = chain.batch_mint(entries)

    amount = chain.deployment.mint_amount
    assert chain.minted(receipt) == [(e["paymentId"], e["to"], amount) for e in entries]
    assert chain.skipped(receipt) == []
    assert chain.usdc_balance(TREASURY) == 4 * chain.deployment.price
    for payer, auth, entry in zip(payers, auths, entries, strict=True):
        assert chain.token_balance(payer) == amount
        assert chain.usdc_balance(payer) == before[payer] - chain.deployment.price
        assert chain.token.functions.processed(entry["paymentId"]).call()
        assert chain.usdc.functions.authorizationState(payer, auth["nonce"]).call()


def test_bad_entries_are_skipped_with_reasons_and_never_revert_the_batch(chain: Chain) -> None:
    price, now = chain.deployment.price, chain.now()
    p3, p4, p5, p6, p7, p8, p9 = (Account.from_key(key).address for key in PAYER_KEYS)
    broke_key = Account.create().key.to_0x_hex()  # no USDC at all

    # Settled directly on USDC before the batch, as a front-runner could do.
    used, _ = chain.sign(PAYER_KEYS[2])
    chain.usdc.functions.transferWithAuthorization(
        used["from"], TREASURY, used["value"], used["validAfter"], used["validBefore"],
        used["nonce"], used["v"], used["r"], used["s"],
    ).transact({"from": ADMIN})  # fmt: skip
    treasury_before = chain.usdc_balance(TREASURY)
    payer_usdc_before = {p: chain.usdc_balance(p) for p in (p3, p4, p5, p6, p7, p8, p9)}

    good = chain.entry(p3, chain.sign(PAYER_KEYS[0])[0])
    duplicate_auth, _ = chain.sign(PAYER_KEYS[1])
    cases = [
        (good, None),
        (chain.entry(p4, chain.sign(PAYER_KEYS[1], valid_before=now - 1)[0]),
         "authorization failed: FiatTokenV2: authorization is expired"),
        (chain.entry(p9, chain.sign(PAYER_KEYS[6], valid_after=now + 3600)[0]),
         "authorization failed: FiatTokenV2: authorization is not yet valid"),
        (chain.entry(p5, used), "authorization failed: FiatTokenV2: authorization is used or canceled"),
        (chain.entry(p6, chain.sign(PAYER_KEYS[3], value=price - 1)[0]), "underpaid"),
        (chain.entry(p8, chain.sign(PAYER_KEYS[4])[0]), "payer mismatch"),
        (chain.entry(p8, chain.sign(PAYER_KEYS[5], signer_key=PAYER_KEYS[6])[0]),
         "authorization failed: FiatTokenV2: invalid signature"),
        # ERC20InsufficientBalance is a custom error: no reason string to pass on.
        (chain.entry(Account.from_key(broke_key).address, chain.sign(broke_key)[0]), "authorization failed"),
        (chain.entry(ZERO_ADDRESS), "invalid recipient"),
        # Same payment id as `good`, with a valid authorization that must not be settled.
        (chain.entry(p4, duplicate_auth, payment_id=good["paymentId"]), "already processed"),
    ]  # fmt: skip

    receipt = chain.batch_mint([entry for entry, _ in cases])

    assert chain.minted(receipt) == [(good["paymentId"], p3, chain.deployment.mint_amount)]
    assert chain.skipped(receipt) == [(e["paymentId"], e["to"], reason) for e, reason in cases if reason]
    assert chain.usdc_balance(TREASURY) == treasury_before + price
    assert chain.usdc_balance(p3) == payer_usdc_before[p3] - price
    for payer in (p4, p5, p6, p7, p8, p9):
        assert chain.usdc_balance(payer) == payer_usdc_before[payer]
        assert chain.token_balance(payer) == 0
    assert not chain.usdc.functions.authorizationState(p4, duplicate_auth["nonce"]).call()
    # Skipped entries stay unprocessed so they can be retried once the payment is fixed.
    assert not any(chain.token.functions.processed(e["paymentId"]).call() for e, reason in cases[1:-1])


def test_resending_a_batch_mints_nothing_twice(chain: Chain) -> None:
    entries = [chain.entry(Account.from_key(key).address, chain.sign(key)[0]) for key in PAYER_KEYS[:2]]
    chain.batch_mint(entries)
    treasury_before = chain.usdc_balance(TREASURY)

    receipt = chain.batch_mint(entries)

    assert chain.minted(receipt) == []
    assert chain.skipped(receipt) == [(e["paymentId"], e["to"], "already processed") for e in entries]
    assert chain.usdc_balance(TREASURY) == treasury_before
    for e in entries:
        assert chain.token_balance(e["to"]) == chain.deployment.mint_amount


def test_entry_without_authorization_mints_without_moving_usdc(chain: Chain) -> None:
    recipient = Account.create().address
    entry = chain.entry(recipient)

    receipt = chain.batch_mint([entry])

    assert chain.minted(receipt) == [(entry["paymentId"], recipient, chain.deployment.mint_amount)]
    assert chain.usdc_balance(TREASURY) == 0


def test_only_minters_may_batch_mint(chain: Chain) -> None:
    entry = chain.entry(Account.create().address)
    selector = function_signature_to_4byte_selector("AccessControlUnauthorizedAccount(address,bytes32)")
    for outsider in (ADMIN, DEV_ADDRESSES[3]):  # the admin may grant the role, but does not hold it
        with pytest.raises(ContractCustomError) as raised:
            chain.token.functions.batchMint([entry]).call({"from": outsider})
        assert str(raised.value.data).startswith("0x" + selector.hex())
    assert not chain.token.functions.processed(entry["paymentId"]).call()


def test_transfer_with_authorization_accepts_a_bytes_signature(chain: Chain) -> None:
    payer_key = PAYER_KEYS[0]
    payer = Account.from_key(payer_key).address
    auth, authorization = chain.sign(payer_key, value=2_500_000)
    transfer = chain.usdc.get_function_by_signature(
        "transferWithAuthorization(address,address,uint256,uint256,uint256,bytes32,bytes)"
    )
    args = (
        payer,
        TREASURY,
        auth["value"],
        auth["validAfter"],
        auth["validBefore"],
        auth["nonce"],
        authorization.signed.signature,
    )
    payer_before = chain.usdc_balance(payer)

    receipt = chain.w3.eth.wait_for_transaction_receipt(transfer(*args).transact({"from": ADMIN}))

    assert receipt["status"] == 1
    used = chain.usdc.events.AuthorizationUsed().process_receipt(receipt, errors=DISCARD)
    assert [(e.args.authorizer, e.args.nonce) for e in used] == [(payer, auth["nonce"])]
    assert chain.usdc_balance(TREASURY) == 2_500_000
    assert chain.usdc_balance(payer) == payer_before - 2_500_000
    assert chain.usdc.functions.authorizationState(payer, auth["nonce"]).call()
    with pytest.raises(ContractLogicError, match="FiatTokenV2: authorization is used or canceled"):
        transfer(*args).call({"from": ADMIN})


def test_gas_per_entry_of_a_100_entry_batch(chain: Chain) -> None:
    """Worst realistic case: every entry is a first-time holder paying with a fresh authorization."""
    keys = [Account.create().key.to_0x_hex() for _ in range(101)]
    payers = [Account.from_key(key).address for key in keys]
    chain.w3.eth.wait_for_transaction_receipt(
        chain.usdc.functions.mintMany(payers, chain.deployment.price).transact({"from": ADMIN})
    )
    entries = [chain.entry(payer, chain.sign(key)[0]) for payer, key in zip(payers, keys, strict=True)]

    batch = chain.batch_mint(entries[:100])
    single = chain.batch_mint(entries[100:])  # after the batch, so both see a non-empty treasury

    assert len(chain.minted(batch)) == 100 and len(chain.minted(single)) == 1
    total = batch["gasUsed"]
    marginal = (total - single["gasUsed"]) / 99
    print(
        f"\nbatchMint of 100 authorized entries: {total} gas, {total / 100:.0f} gas/entry "
        f"({marginal:.0f} marginal, a 1-entry batch costs {single['gasUsed']})"
    )
