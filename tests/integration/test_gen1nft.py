"""Gen1NFT.batchMint on a real anvil: one token per paid entry with its tokenURI, the same per-entry
isolation and paymentId deduplication as MintToken."""

import os
from typing import Any

import pytest
from eth_account import Account
from eth_utils import function_signature_to_4byte_selector
from web3 import HTTPProvider, Web3
from web3.exceptions import ContractCustomError
from web3.logs import DISCARD
from web3.types import TxReceipt

from devstack.anvil import Anvil
from shared.deploy import Deployment, load_artifact
from tests.integration.test_contracts import ADMIN, MINTER, NO_AUTH, PAYER_KEYS, TREASURY, ZERO_ADDRESS, Chain

URI = "ipfs://bafybeibntspiwjkva6lmgq3dxkcyc5yycdutxa63slk56disvgiiw57zcy"


class NftChain(Chain):
    nft: Any

    def nft_entry(
        self, to: str, auth: dict[str, Any] = NO_AUTH, uri: str = URI, payment_id: bytes | None = None
    ) -> dict[str, Any]:
        return {"to": to, "paymentId": payment_id or os.urandom(32), "tokenURI": uri, "auth": auth}

    def nft_mint(self, entries: list[dict[str, Any]]) -> TxReceipt:
        receipt = self.w3.eth.wait_for_transaction_receipt(
            self.nft.functions.batchMint(entries).transact({"from": MINTER})
        )
        assert receipt["status"] == 1
        return receipt

    def nft_minted(self, receipt: TxReceipt) -> list[tuple[bytes, str, int]]:
        events = self.nft.events.Minted().process_receipt(receipt, errors=DISCARD)
        return [(e.args.paymentId, e.args.to, e.args.tokenId) for e in events]

    def nft_skipped(self, receipt: TxReceipt) -> list[tuple[bytes, str, str]]:
        events = self.nft.events.MintSkipped().process_receipt(receipt, errors=DISCARD)
        return [(e.args.paymentId, e.args.to, e.args.reason) for e in events]


@pytest.fixture
def chain(anvil: Anvil, deployment: Deployment) -> NftChain:
    w3 = Web3(HTTPProvider(anvil.rpc_url))
    chain = NftChain(
        w3=w3,
        deployment=deployment,
        token=w3.eth.contract(address=deployment.token, abi=load_artifact("MintToken")["abi"]),
        usdc=w3.eth.contract(address=deployment.usdc, abi=load_artifact("MockUSDC")["abi"]),
    )
    chain.nft = w3.eth.contract(address=deployment.nft, abi=load_artifact("Gen1NFT")["abi"])
    return chain


def test_batch_mints_one_token_per_payer_with_its_uri_and_settles_the_nft_price(chain: NftChain) -> None:
    price = chain.deployment.nft_price
    payers = [Account.from_key(key).address for key in PAYER_KEYS[:3]]
    entries = [
        chain.nft_entry(payer, chain.sign(key, value=price)[0], uri=f"{URI}{i}")
        for i, (payer, key) in enumerate(zip(payers, PAYER_KEYS, strict=False))
    ]

    receipt = chain.nft_mint(entries)

    assert chain.nft_minted(receipt) == [(e["paymentId"], e["to"], i + 1) for i, e in enumerate(entries)]
    assert chain.usdc_balance(TREASURY) == 3 * price
    for token_id, entry in enumerate(entries, start=1):
        assert chain.nft.functions.ownerOf(token_id).call() == entry["to"]
        assert chain.nft.functions.tokenURI(token_id).call() == entry["tokenURI"]
        assert chain.nft.functions.processed(entry["paymentId"]).call()
    assert chain.nft.functions.totalSupply().call() == 3


def test_bad_nft_entries_are_skipped_with_reasons_and_a_resend_mints_nothing_twice(chain: NftChain) -> None:
    price = chain.deployment.nft_price
    p3, p4, p5 = (Account.from_key(key).address for key in PAYER_KEYS[:3])
    good = chain.nft_entry(p3, chain.sign(PAYER_KEYS[0], value=price)[0])
    cases = [
        (good, None),
        # The token's price is not enough for an NFT.
        (chain.nft_entry(p4, chain.sign(PAYER_KEYS[1], value=chain.deployment.price)[0]), "underpaid"),
        (chain.nft_entry(p5, chain.sign(PAYER_KEYS[2], value=price)[0], uri=""), "empty tokenURI"),
        (chain.nft_entry(ZERO_ADDRESS), "invalid recipient"),
        (chain.nft_entry(p4, payment_id=good["paymentId"]), "already processed"),
    ]

    receipt = chain.nft_mint([entry for entry, _ in cases])

    assert chain.nft_minted(receipt) == [(good["paymentId"], p3, 1)]
    assert chain.nft_skipped(receipt) == [(e["paymentId"], e["to"], reason) for e, reason in cases if reason]
    assert chain.usdc_balance(TREASURY) == price
    assert chain.nft.functions.balanceOf(p4).call() == 0

    again = chain.nft_mint([good])
    assert chain.nft_skipped(again) == [(good["paymentId"], p3, "already processed")]
    assert chain.nft.functions.totalSupply().call() == 1
    assert chain.usdc_balance(TREASURY) == price


def test_only_minters_may_batch_mint_nfts(chain: NftChain) -> None:
    entry = chain.nft_entry(Account.create().address)
    selector = function_signature_to_4byte_selector("AccessControlUnauthorizedAccount(address,bytes32)")
    with pytest.raises(ContractCustomError) as raised:
        chain.nft.functions.batchMint([entry]).call({"from": ADMIN})
    assert str(raised.value.data).startswith("0x" + selector.hex())


def test_the_nft_reports_erc721_and_access_control_interfaces(chain: NftChain) -> None:
    erc721, access_control, erc4906 = "0x80ac58cd", "0x7965db0b", "0x49064906"
    for interface in (erc721, access_control, erc4906):
        assert chain.nft.functions.supportsInterface(interface).call()
