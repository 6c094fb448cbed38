"""Deploys MockUSDC, MintToken and Gen1NFT to a local chain and describes the result as a `Deployment` file.

python -m shared.deploy --rpc-url http://127.0.0.1:8545 --out .run/deployment.json [--fund-dev-accounts]
"""

import argparse
import functools
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, cast

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_typing import ChecksumAddress
from eth_utils import to_checksum_address
from pydantic import AfterValidator, BaseModel
from web3 import HTTPProvider, Web3
from web3.types import Nonce, TxParams, TxReceipt
from web3.utils import get_create_address

from devstack.anvil import DEV_ADDRESSES, DEV_KEYS

log = logging.getLogger(__name__)

ARTIFACTS_DIR = Path(__file__).resolve().parents[1] / "contracts" / "artifacts"
# mintMany writes one fresh balance per address (~25k gas); 500 keeps a transaction near 13M gas,
# well inside anvil's 30M block gas limit.
FUND_CHUNK = 500
RECEIPT_TIMEOUT = 60.0

Address = Annotated[ChecksumAddress, AfterValidator(to_checksum_address)]


class Deployment(BaseModel):
    """Where the contracts live and how they were configured; what every service reads at startup."""

    chain_id: int
    rpc_url: str
    token: Address
    nft: Address
    usdc: Address
    treasury: Address
    minter: Address
    price: int
    mint_amount: int
    nft_price: int
    # The EIP-712 domain payers sign USDC authorizations for.
    usdc_name: str = "USD Coin"
    usdc_version: str = "2"

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.model_dump_json(indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "Deployment":
        return cls.model_validate_json(Path(path).read_text())


@functools.cache
def load_artifact(name: str) -> dict[str, Any]:
    """contracts/artifacts/<name>.json ({"contractName", "abi", "bytecode"}); shared, so do not mutate it."""
    with (ARTIFACTS_DIR / f"{name}.json").open() as f:
        artifact: dict[str, Any] = json.load(f)
    return artifact


class _Sender:
    """Signs and sends the deployer's transactions with locally counted nonces, so several can go
    into the same block instead of waiting a block each."""

    def __init__(self, w3: Web3, account: LocalAccount) -> None:
        self.w3 = w3
        self.account = account
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

    def send_all(self, txs: list[TxParams]) -> list[TxReceipt]:
        hashes = [
            self.w3.eth.send_raw_transaction(
                self.account.sign_transaction(cast(dict[str, Any], tx)).raw_transaction
            )
            for tx in txs
        ]
        receipts = [self.w3.eth.wait_for_transaction_receipt(h, timeout=RECEIPT_TIMEOUT) for h in hashes]
        for receipt in receipts:
            if receipt["status"] != 1:
                raise RuntimeError(
                    f"deployment transaction {receipt['transactionHash'].to_0x_hex()} reverted"
                )
        return receipts


def deploy_local(
    rpc_url: str,
    *,
    deployer_key: str,
    minter_address: str,
    treasury: str,
    price: int = 1_000_000,
    mint_amount: int = 100 * 10**18,
    nft_price: int = 5_000_000,
    fund: Sequence[str] = (),
    fund_amount: int = 1_000 * 10**6,
) -> Deployment:
    """Deploys MockUSDC, MintToken and Gen1NFT (admin: the deployer), makes `minter_address` a minter
    of both mint contracts and gives every address in `fund` `fund_amount` mock USDC (6 decimals)."""
    w3 = Web3(HTTPProvider(rpc_url))
    deployer: LocalAccount = Account.from_key(deployer_key)
    sender = _Sender(w3, deployer)
    usdc_artifact, token_artifact = load_artifact("MockUSDC"), load_artifact("MintToken")
    nft_artifact = load_artifact("Gen1NFT")

    # The mint contracts' constructors need the USDC address; it is known from the deployer's nonce, so
    # all three contracts can be deployed in one block.
    usdc_address = get_create_address(deployer.address, Nonce(sender.nonce))
    usdc_factory = w3.eth.contract(abi=usdc_artifact["abi"], bytecode=usdc_artifact["bytecode"])
    token_factory = w3.eth.contract(abi=token_artifact["abi"], bytecode=token_artifact["bytecode"])
    usdc_tx = usdc_factory.constructor().build_transaction(sender.params())
    token_tx = token_factory.constructor(
        "Mintline Token",
        "MINT",
        usdc_address,
        to_checksum_address(treasury),
        price,
        mint_amount,
        deployer.address,
    ).build_transaction(sender.params())
    nft_factory = w3.eth.contract(abi=nft_artifact["abi"], bytecode=nft_artifact["bytecode"])
    nft_tx = nft_factory.constructor(
        "Mintline Gen1", "GEN1", usdc_address, to_checksum_address(treasury), nft_price, deployer.address
    ).build_transaction(sender.params())
    usdc_receipt, token_receipt, nft_receipt = sender.send_all([usdc_tx, token_tx, nft_tx])
    if usdc_receipt["contractAddress"] != usdc_address:
        raise RuntimeError(f"MockUSDC landed at {usdc_receipt['contractAddress']}, expected {usdc_address}")
    token_address, nft_address = token_receipt["contractAddress"], nft_receipt["contractAddress"]
    assert token_address is not None and nft_address is not None

    # Gas for these is estimated against the deployed code, hence the second round.
    token = w3.eth.contract(address=token_address, abi=token_artifact["abi"])
    usdc = w3.eth.contract(address=usdc_address, abi=usdc_artifact["abi"])
    nft = w3.eth.contract(address=nft_address, abi=nft_artifact["abi"])
    minter_role = token.functions.MINTER_ROLE().call()
    minter = to_checksum_address(minter_address)
    setup = [
        token.functions.grantRole(minter_role, minter).build_transaction(sender.params()),
        nft.functions.grantRole(minter_role, minter).build_transaction(sender.params()),
    ]
    fund_addresses = [to_checksum_address(a) for a in fund]
    for start in range(0, len(fund_addresses), FUND_CHUNK):
        chunk = fund_addresses[start : start + FUND_CHUNK]
        setup.append(usdc.functions.mintMany(chunk, fund_amount).build_transaction(sender.params()))
    sender.send_all(setup)

    deployment = Deployment(
        chain_id=sender.chain_id,
        rpc_url=rpc_url,
        token=token_address,
        nft=nft_address,
        usdc=usdc_address,
        treasury=to_checksum_address(treasury),
        minter=to_checksum_address(minter_address),
        price=price,
        mint_amount=mint_amount,
        nft_price=nft_price,
    )
    log.info(
        "deployed MintToken at %s, Gen1NFT at %s and MockUSDC at %s on chain %d; funded %d addresses",
        deployment.token,
        deployment.nft,
        deployment.usdc,
        deployment.chain_id,
        len(fund_addresses),
    )
    return deployment


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Deploy mintline's contracts to a local chain (anvil).")
    parser.add_argument("--rpc-url", required=True)
    parser.add_argument("--out", type=Path, required=True, help="where to write the deployment JSON")
    parser.add_argument(
        "--fund-dev-accounts", action="store_true", help="give anvil dev accounts 3..9 mock USDC to pay with"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    # Anvil's public dev accounts (local chains only): 0 deploys and administers, 1 is the batcher's
    # minter, 2 receives payments, 3..9 are payers.
    deployment = deploy_local(
        args.rpc_url,
        deployer_key=DEV_KEYS[0],
        minter_address=DEV_ADDRESSES[1],
        treasury=DEV_ADDRESSES[2],
        fund=DEV_ADDRESSES[3:] if args.fund_dev_accounts else (),
    )
    deployment.save(args.out)
    log.info("wrote %s", args.out)


if __name__ == "__main__":
    main()
