"""Deploying the mint contracts (MintToken and Gen1NFT) against a USDC that is already on the chain, and
making every batcher wallet their minter: what `mintline deploy` does on any chain, and what the local
dev stack (devstack/deploy.py) does after deploying its mock USDC."""

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from eth_account.signers.local import LocalAccount
from eth_utils import to_checksum_address
from hexbytes import HexBytes
from web3 import Web3
from web3.types import Nonce, TxParams, TxReceipt

from admin.usdc_domain import UsdcDomain
from shared.deploy import Deployment, load_artifact

log = logging.getLogger(__name__)

RECEIPT_TIMEOUT = 60.0


class DeploymentFailed(Exception):
    """A deployment transaction reverted or did not land in time."""


class Sender:
    """Signs and sends the deployer's transactions with locally counted nonces, so several can go
    into the same block instead of waiting a block each."""

    def __init__(self, w3: Web3, account: LocalAccount, receipt_timeout: float = RECEIPT_TIMEOUT) -> None:
        self.w3 = w3
        self.account = account
        self.receipt_timeout = receipt_timeout
        self.nonce: int = w3.eth.get_transaction_count(account.address, "pending")
        self.chain_id = w3.eth.chain_id

    def params(self) -> TxParams:
        params: TxParams = {
            "from": self.account.address,
            "nonce": Nonce(self.nonce),
            "chainId": self.chain_id,
        }
        self.nonce += 1
        return params

    def send(self, txs: list[TxParams]) -> list[HexBytes]:
        """Sign and send, without waiting: the transactions' hashes."""
        return [
            self.w3.eth.send_raw_transaction(
                self.account.sign_transaction(cast(dict[str, Any], tx)).raw_transaction
            )
            for tx in txs
        ]

    def send_all(self, txs: list[TxParams]) -> list[TxReceipt]:
        return self.wait(self.send(txs))

    def wait(self, hashes: list[HexBytes]) -> list[TxReceipt]:
        """The receipts of `hashes`; DeploymentFailed if one reverted."""
        receipts = [self.w3.eth.wait_for_transaction_receipt(h, timeout=self.receipt_timeout) for h in hashes]
        for receipt in receipts:
            if receipt["status"] != 1:
                raise DeploymentFailed(
                    f"deployment transaction {receipt['transactionHash'].to_0x_hex()} reverted"
                )
        return receipts


@dataclass(frozen=True)
class MintTerms:
    """What the mint contracts are constructed with. Prices are in USDC base units (6 decimals)."""

    price: int = 1_000_000
    mint_amount: int = 100 * 10**18
    nft_price: int = 5_000_000
    token_name: str = "Mintline Token"
    token_symbol: str = "MINT"
    nft_name: str = "Mintline Gen1"
    nft_symbol: str = "GEN1"


def deploy_mint_contracts(
    sender: Sender,
    *,
    rpc_url: str,
    usdc: str,
    usdc_domain: UsdcDomain,
    treasury: str,
    minters: Sequence[str],
    terms: MintTerms | None = None,
) -> Deployment:
    """Deploys MintToken and Gen1NFT (admin: the deployer) paid in `usdc` to `treasury`, and grants
    every signer wallet in `minters` MINTER_ROLE on both; returns the deployment the services read."""
    w3, deployer = sender.w3, sender.account
    terms = terms or MintTerms()
    usdc, treasury = to_checksum_address(usdc), to_checksum_address(treasury)
    minters = list(dict.fromkeys(to_checksum_address(m) for m in minters))
    if not minters:
        raise ValueError("at least one minter (a batcher wallet) is needed")
    token_artifact, nft_artifact = load_artifact("MintToken"), load_artifact("Gen1NFT")
    token_factory = w3.eth.contract(abi=token_artifact["abi"], bytecode=token_artifact["bytecode"])
    nft_factory = w3.eth.contract(abi=nft_artifact["abi"], bytecode=nft_artifact["bytecode"])
    token_tx = token_factory.constructor(
        terms.token_name, terms.token_symbol, usdc, treasury, terms.price, terms.mint_amount, deployer.address
    ).build_transaction(sender.params())
    nft_tx = nft_factory.constructor(
        terms.nft_name, terms.nft_symbol, usdc, treasury, terms.nft_price, deployer.address
    ).build_transaction(sender.params())
    token_receipt, nft_receipt = sender.send_all([token_tx, nft_tx])
    token_address, nft_address = token_receipt["contractAddress"], nft_receipt["contractAddress"]
    if token_address is None or nft_address is None:
        raise DeploymentFailed("a contract creation receipt names no contract address")

    # Gas for these is estimated against the deployed code, hence the second round.
    token = w3.eth.contract(address=token_address, abi=token_artifact["abi"])
    nft = w3.eth.contract(address=nft_address, abi=nft_artifact["abi"])
    minter_role = token.functions.MINTER_ROLE().call()
    sender.send_all(
        [
            contract.functions.grantRole(minter_role, minter).build_transaction(sender.params())
            for minter in minters
            for contract in (token, nft)
        ]
    )
    deployment = Deployment(
        chain_id=sender.chain_id,
        rpc_url=rpc_url,
        token=token_address,
        nft=nft_address,
        usdc=usdc,
        treasury=treasury,
        minter=minters[0],
        minters=minters,
        price=terms.price,
        mint_amount=terms.mint_amount,
        nft_price=terms.nft_price,
        usdc_name=usdc_domain.name,
        usdc_version=usdc_domain.version,
        deployment_block=min(token_receipt["blockNumber"], nft_receipt["blockNumber"]),
    )
    log.info(
        "deployed MintToken at %s and Gen1NFT at %s on chain %d (block %d) against USDC %s; minters %s",
        deployment.token,
        deployment.nft,
        deployment.chain_id,
        deployment.deployment_block,
        deployment.usdc,
        ", ".join(deployment.minters),
    )
    return deployment
