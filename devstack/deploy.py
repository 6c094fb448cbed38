"""A local chain's deployment: MockUSDC, then the mint contracts as `mintline deploy` deploys them, and
mock USDC for the dev payers; written as the deployment file the services read.

python -m devstack.deploy --rpc-url http://127.0.0.1:8545 --out .run/deployment.json [--fund-dev-accounts]

Local chains only: it signs with anvil's public dev keys (devstack/anvil.py), and MockUSDC lets anyone
mint.
"""

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import to_checksum_address
from web3 import HTTPProvider, Web3

from admin.contracts import MintTerms, Sender, deploy_mint_contracts
from admin.usdc_domain import read_usdc_domain
from devstack.anvil import DEV_ADDRESSES, DEV_KEYS, MINTER_ADDRESSES, PAYER_ADDRESSES
from shared.deploy import Deployment, load_artifact

log = logging.getLogger(__name__)

# mintMany writes one fresh balance per address (~25k gas); 500 keeps a transaction near 13M gas,
# inside EIP-7825's 16.7M per-transaction cap.
FUND_CHUNK = 500
# What each signer wallet holds at least after a local deployment: plenty for local gas.
MINTER_ETH = 1_000 * 10**18


def deploy_local(
    rpc_url: str,
    *,
    deployer_key: str,
    minters: Sequence[str],
    treasury: str,
    price: int = 1_000_000,
    mint_amount: int = 100 * 10**18,
    nft_price: int = 5_000_000,
    fund: Sequence[str] = (),
    fund_amount: int = 1_000 * 10**6,
    usdc_name: str = "USD Coin",
    usdc_version: str = "2",
) -> Deployment:
    """Deploys MockUSDC (EIP-712 domain `usdc_name`/`usdc_version`), MintToken and Gen1NFT (admin: the
    deployer), makes every signer wallet in `minters` a minter of both mint contracts (and sends ETH
    from the deployer to one holding less than MINTER_ETH), and gives every address in `fund`
    `fund_amount` mock USDC (6 decimals)."""
    w3 = Web3(HTTPProvider(rpc_url))
    deployer: LocalAccount = Account.from_key(deployer_key)
    sender = Sender(w3, deployer)
    usdc_artifact = load_artifact("MockUSDC")
    usdc_factory = w3.eth.contract(abi=usdc_artifact["abi"], bytecode=usdc_artifact["bytecode"])
    (usdc_receipt,) = sender.send_all(
        [usdc_factory.constructor(usdc_name, usdc_version).build_transaction(sender.params())]
    )
    usdc_address = usdc_receipt["contractAddress"]
    assert usdc_address is not None
    # The payers' mock USDC goes into the same block as the mint contracts.
    usdc = w3.eth.contract(address=usdc_address, abi=usdc_artifact["abi"])
    fund_addresses = [to_checksum_address(a) for a in fund]
    # Fees as web3 fills them for the contract calls beside it (a higher tip would raise what the fee
    # history says a batch must offer).
    tip = w3.eth.max_priority_fee
    base_fee = w3.eth.get_block("latest").get("baseFeePerGas", 0)
    funding = sender.send(
        [
            usdc.functions.mintMany(
                fund_addresses[start : start + FUND_CHUNK], fund_amount
            ).build_transaction(sender.params())
            for start in range(0, len(fund_addresses), FUND_CHUNK)
        ]
        + [
            {
                **sender.params(),
                "to": to_checksum_address(minter),
                "value": MINTER_ETH,
                "gas": 21_000,
                "maxFeePerGas": 2 * base_fee + tip,
                "maxPriorityFeePerGas": tip,
            }
            for minter in minters
            if w3.eth.get_balance(to_checksum_address(minter)) < MINTER_ETH
        ]
    )
    deployment = deploy_mint_contracts(
        sender,
        rpc_url=rpc_url,
        usdc=usdc_address,
        # Read back as `mintline deploy` reads a real USDC's, so every local run takes that path too.
        usdc_domain=read_usdc_domain(w3, usdc_address),
        treasury=treasury,
        minters=minters,
        terms=MintTerms(price=price, mint_amount=mint_amount, nft_price=nft_price),
    )
    sender.wait(funding)
    log.info("deployed MockUSDC at %s; funded %d addresses", usdc_address, len(fund_addresses))
    return deployment


def deploy_dev(rpc_url: str, fund_dev_accounts: bool = True) -> Deployment:
    """deploy_local with anvil's public dev accounts: 0 deploys and administers, 1 and 9 are the
    batcher's signer wallets (devstack/anvil.py), 2 receives payments, 3..8 are payers (funded if
    `fund_dev_accounts`)."""
    return deploy_local(
        rpc_url,
        deployer_key=DEV_KEYS[0],
        minters=MINTER_ADDRESSES,
        treasury=DEV_ADDRESSES[2],
        fund=PAYER_ADDRESSES if fund_dev_accounts else (),
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Deploy mintline's contracts to a local chain (anvil).")
    parser.add_argument("--rpc-url", required=True)
    parser.add_argument("--out", type=Path, required=True, help="where to write the deployment JSON")
    parser.add_argument(
        "--fund-dev-accounts", action="store_true", help="give anvil dev accounts 3..8 mock USDC to pay with"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    deploy_dev(args.rpc_url, fund_dev_accounts=args.fund_dev_accounts).save(args.out)
    log.info("wrote %s", args.out)


if __name__ == "__main__":
    main()
