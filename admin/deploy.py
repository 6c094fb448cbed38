"""`mintline deploy`: the mint contracts on any chain, against the USDC already there, and the
deployment file the services read.

The deployer's key comes from DEPLOYER_PRIVATE_KEY only (a flag would land in shell history and process
listings) and is never printed. Everything is checked before a transaction is sent: the chain id (if
--chain-id names one), code at the USDC address, its EIP-712 domain, the deployer's balance; a refusal
exits with code 2 and says why.
"""

import argparse
import os
from pathlib import Path
from urllib.parse import urlsplit

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import is_address, to_checksum_address
from web3 import HTTPProvider, Web3
from web3.exceptions import TimeExhausted, Web3Exception

from admin.common import OperationFailed, UsageError, note
from admin.contracts import DeploymentFailed, MintTerms, Sender, deploy_mint_contracts
from admin.usdc_domain import DomainUnreadable, read_usdc_domain
from shared.deploy import Deployment

KEY_VARIABLE = "DEPLOYER_PRIVATE_KEY"
# A public chain may take a while to include a transaction; anvil answers at once.
RECEIPT_TIMEOUT = 300.0
RPC_TIMEOUT = 30.0


def address(text: str) -> str:
    """An argparse type: a 0x address, any case."""
    if not is_address(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not an address")
    return to_checksum_address(text)


def add_parser(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    defaults = MintTerms()
    deploy = commands.add_parser(
        "deploy",
        help="deploy the mint contracts against an existing USDC and write the deployment file",
        description=f"Deploys MintToken and Gen1NFT to the chain at --rpc-url, paid in the USDC at --usdc "
        f"to --treasury, grants each --minter (a batcher wallet) MINTER_ROLE on both, and writes the "
        f"deployment file the services read (DEPLOYMENT_FILE). The deployer's private key is read from "
        f"{KEY_VARIABLE}; the deployer stays the contracts' admin. The USDC's EIP-712 domain is read "
        f"from the chain. Needs no database or Redis.",
    )
    deploy.add_argument("--rpc-url", default=os.environ.get("RPC_URL"), help="default: $RPC_URL")
    deploy.add_argument("--usdc", type=address, required=True, help="the USDC (EIP-3009) contract")
    deploy.add_argument("--treasury", type=address, required=True, help="where payments go")
    deploy.add_argument(
        "--minter",
        type=address,
        action="append",
        required=True,
        help="a batcher wallet's address (once per wallet, for BATCHER_PRIVATE_KEYS)",
    )
    deploy.add_argument("--chain-id", type=int, help="refuse unless the RPC serves this chain")
    deploy.add_argument("--out", type=Path, required=True, help="where to write the deployment JSON")
    deploy.add_argument("--overwrite", action="store_true", help="replace an existing deployment file")
    deploy.add_argument(
        "--price", type=int, default=defaults.price, help=f"USDC base units per token mint ({defaults.price})"
    )
    deploy.add_argument(
        "--mint-amount",
        type=int,
        default=defaults.mint_amount,
        help=f"token base units minted per paid mint ({defaults.mint_amount})",
    )
    deploy.add_argument(
        "--nft-price",
        type=int,
        default=defaults.nft_price,
        help=f"USDC base units per NFT ({defaults.nft_price})",
    )
    deploy.set_defaults(handler="admin.deploy:run", needs_connections=False)


def run(args: argparse.Namespace) -> int:
    deployer = _deployer()
    if not args.rpc_url:
        raise UsageError("no RPC URL: pass --rpc-url or set RPC_URL")
    if args.out.exists() and not args.overwrite:
        raise UsageError(f"{args.out} exists (services may be using it): pass --overwrite to replace it")
    if min(args.price, args.mint_amount, args.nft_price) <= 0:
        raise UsageError("--price, --mint-amount and --nft-price must be positive")
    endpoint = _public(args.rpc_url)
    w3 = Web3(HTTPProvider(args.rpc_url, request_kwargs={"timeout": RPC_TIMEOUT}))
    try:
        deployment = _deploy(w3, deployer, args)
    except (OSError, Web3Exception, TimeExhausted, DeploymentFailed) as exc:
        # Connection errors quote the URL's path, where hosted providers put the API key.
        text = _redact(str(exc), args.rpc_url)
        raise OperationFailed(f"deployment via {endpoint} failed: {type(exc).__name__}: {text}") from None
    deployment.save(args.out)
    print(
        f"MintToken {deployment.token}\nGen1NFT {deployment.nft}\nchain {deployment.chain_id}, block "
        f"{deployment.deployment_block}; USDC {deployment.usdc} (EIP-712 {deployment.usdc_name!r} version "
        f"{deployment.usdc_version!r}); treasury {deployment.treasury}; "
        f"minter {', '.join(deployment.minters)}; "
        f"admin {deployer.address}\nwrote {args.out}"
    )
    return 0


def _deployer() -> LocalAccount:
    key = os.environ.get(KEY_VARIABLE, "").strip()
    if not key:
        raise UsageError(f"set {KEY_VARIABLE} to the deployer's private key (it is never taken as a flag)")
    try:
        account: LocalAccount = Account.from_key(key)
    except (ValueError, TypeError):
        raise UsageError(f"{KEY_VARIABLE} is not a private key (32 bytes of hex)") from None
    return account


def _deploy(w3: Web3, deployer: LocalAccount, args: argparse.Namespace) -> Deployment:
    chain_id = w3.eth.chain_id
    if args.chain_id is not None and chain_id != args.chain_id:
        raise UsageError(f"the RPC serves chain {chain_id}, not --chain-id {args.chain_id}")
    if not w3.eth.get_code(args.usdc):
        raise UsageError(f"no contract at the USDC address {args.usdc} on chain {chain_id}")
    try:
        domain = read_usdc_domain(w3, args.usdc)
    except DomainUnreadable as exc:
        raise UsageError(str(exc)) from None
    if w3.eth.get_balance(deployer.address) == 0:
        raise UsageError(f"the deployer {deployer.address} holds no ETH on chain {chain_id}: fund it first")
    note(
        f"deploying to chain {chain_id} from {deployer.address}: USDC {args.usdc} "
        f"(EIP-712 {domain.name!r} version {domain.version!r}), treasury {args.treasury}, "
        f"minter {', '.join(args.minter)}"
    )
    return deploy_mint_contracts(
        Sender(w3, deployer, receipt_timeout=RECEIPT_TIMEOUT),
        rpc_url=args.rpc_url,
        usdc=args.usdc,
        usdc_domain=domain,
        treasury=args.treasury,
        minters=args.minter,
        terms=MintTerms(price=args.price, mint_amount=args.mint_amount, nft_price=args.nft_price),
    )


def _public(url: str) -> str:
    """scheme://host[:port] of the RPC URL: what may be shown (the path and userinfo may hold a key)."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{parts.scheme}://{host}" + (f":{port}" if port else "")


def _redact(text: str, url: str) -> str:
    parts = urlsplit(url)
    text = text.replace(url, _public(url))
    for secret in (parts.path + ("?" + parts.query if parts.query else ""), parts.path, parts.password):
        if secret and secret != "/":
            text = text.replace(secret, "/***")
    return text
