"""`mintline deploy` on anvil against a USDC deployed apart, whose EIP-712 name is "USDC" (as on Base
Sepolia), not the mock's usual "USD Coin": the deployment file carries the token's real domain, and
intake, batcher and confirmer run on it to a completed gasless mint, so nothing assumes the mock.

Run as an operator runs it: `python -m admin deploy ...` as a process, the key in DEPLOYER_PRIVATE_KEY.
"""

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import HTTPProvider, Web3
from x402.http.utils import decode_payment_required_header

from devstack.anvil import DEV_ADDRESSES, Anvil
from devstack.ports import free_port
from shared.deploy import Deployment, load_artifact
from tests.support.intake import wait_healthy
from tests.support.payments import gasless_body
from tests.support.requests import wait_final

REPO = Path(__file__).resolve().parents[2]
LEGACY_USDC = "tests/contracts/LegacyDomainUSDC.sol"

Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def legacy_usdc(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The artifact of MockUSDC without ERC-5267 (FiatTokenV2_2's surface), built with the repo's solc-js."""
    out = tmp_path_factory.mktemp("artifacts")
    subprocess.run(
        ["node", "contracts/build.js", "--out", str(out), "--with", LEGACY_USDC],
        cwd=REPO,
        check=True,
        capture_output=True,
        timeout=120,
    )
    artifact: dict[str, Any] = json.loads((out / "LegacyDomainUSDC.json").read_text())
    return artifact


def deploy_usdc(w3: Web3, artifact: dict[str, Any], name: str, version: str = "2") -> str:
    """A USDC of its own, deployed from anvil's unlocked dev account 0 (public local-chain account)."""
    factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    tx_hash = factory.constructor(name, version).transact({"from": DEV_ADDRESSES[0]})
    address = w3.eth.wait_for_transaction_receipt(tx_hash)["contractAddress"]
    assert address is not None
    return address


def funded_account(w3: Web3) -> LocalAccount:
    """A fresh account (not one of anvil's) with 10 ETH for gas."""
    account: LocalAccount = Account.create()
    w3.provider.make_request("anvil_setBalance", [account.address, hex(10 * 10**18)])  # type: ignore[arg-type]
    return account


@pytest.fixture
def w3(anvil: Anvil) -> Web3:
    return Web3(HTTPProvider(anvil.rpc_url))


@pytest.fixture
def mintline_deploy(anvil: Anvil, tmp_path: Path) -> Run:
    """`python -m admin deploy --rpc-url <anvil> ARGS` as a process; DEPLOYER_PRIVATE_KEY from `key`."""

    def run(*args: str, key: str | None) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k not in ("DEPLOYER_PRIVATE_KEY", "RPC_URL")}
        if key is not None:
            env["DEPLOYER_PRIVATE_KEY"] = key
        return subprocess.run(
            [sys.executable, "-m", "admin", "deploy", "--rpc-url", anvil.rpc_url, *args],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    return run


async def test_a_gasless_mint_completes_against_a_usdc_named_usdc(
    w3: Web3, legacy_usdc, mintline_deploy: Run, services, pg_pool, tmp_path: Path
) -> None:
    usdc_address = deploy_usdc(w3, legacy_usdc, "USDC")
    usdc = w3.eth.contract(address=usdc_address, abi=legacy_usdc["abi"])
    deployer, batcher, second = funded_account(w3), funded_account(w3), funded_account(w3)
    treasury = Account.create().address
    out = tmp_path / "mintline-deploy.json"
    key = key_of(deployer)

    result = mintline_deploy(
        "--usdc", usdc_address.lower(), "--treasury", treasury, "--minter", batcher.address,
        "--minter", second.address, "--chain-id", str(w3.eth.chain_id), "--out", str(out), key=key,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert key.removeprefix("0x") not in result.stdout + result.stderr
    deployment = Deployment.load(out)
    assert (deployment.usdc, deployment.treasury, deployment.minter) == (
        usdc_address,
        treasury,
        batcher.address,
    )
    assert (deployment.usdc_name, deployment.usdc_version, deployment.chain_id) == ("USDC", "2", 31337)
    token = w3.eth.contract(address=deployment.token, abi=load_artifact("MintToken")["abi"])
    nft = w3.eth.contract(address=deployment.nft, abi=load_artifact("Gen1NFT")["abi"])
    creation = w3.eth.get_transaction_receipt(
        w3.eth.get_block(deployment.deployment_block)["transactions"][0]
    )
    assert creation["contractAddress"] in (deployment.token, deployment.nft)
    role = token.functions.MINTER_ROLE().call()
    assert deployment.minters == [batcher.address, second.address]
    for minter in deployment.minters:
        assert token.functions.hasRole(role, minter).call() and nft.functions.hasRole(role, minter).call()
    assert token.functions.hasRole(token.functions.DEFAULT_ADMIN_ROLE().call(), deployer.address).call()
    assert token.functions.usdc().call() == usdc_address and nft.functions.treasury().call() == treasury

    # Both signer wallets: the start-up check finds each a minter.
    keys = f"{key_of(batcher)},{key_of(second)}"
    on_deployment = {"DEPLOYMENT_FILE": str(out)}
    port = free_port()
    intake = services("intake", INTAKE_PORT=str(port), **on_deployment)
    services("batcher", BATCHER_PRIVATE_KEYS=keys, **on_deployment)
    services("confirmer", **on_deployment)
    url = f"http://127.0.0.1:{port}"
    assert intake.proc is not None and await wait_healthy(url, intake.proc), intake.log_tail()
    payer: LocalAccount = Account.create()
    funding = usdc.functions.mint(payer.address, 10 * deployment.price).transact({"from": DEV_ADDRESSES[0]})
    assert w3.eth.wait_for_transaction_receipt(funding)["status"] == 1

    async with aiohttp.ClientSession() as session:
        async with session.post(f"{url}/mint") as response:
            assert response.status == 402
            [offer] = decode_payment_required_header(response.headers["PAYMENT-REQUIRED"]).accepts
        # Signed for the mock's usual domain, the authorization is refused before anything is queued.
        wrong_domain = deployment.model_copy(update={"usdc_name": "USD Coin"})
        async with session.post(f"{url}/mint", json=gasless_body(payer, wrong_domain)) as response:
            refused = await response.json()
            assert response.status == 402 and refused["error"] == "invalid_signature", refused
        async with session.post(f"{url}/mint", json=gasless_body(payer, deployment)) as response:
            accepted = await response.json()
            assert response.status == 202, accepted

    assert offer.extra == {"name": "USDC", "version": "2"}
    assert (offer.asset, offer.pay_to, offer.network) == (usdc_address, treasury, "eip155:31337")
    [row] = await wait_final(pg_pool, [accepted["queueId"]])
    assert row["status"] == "completed", row["error_message"]
    assert token.functions.balanceOf(payer.address).call() == deployment.mint_amount
    assert usdc.functions.balanceOf(treasury).call() == deployment.price
    assert usdc.functions.balanceOf(payer.address).call() == 9 * deployment.price
    assert token.functions.processed(bytes.fromhex(row["payment_id"][2:])).call()


def key_of(account: LocalAccount) -> str:
    return "0x" + account.key.hex().removeprefix("0x")


def test_the_domain_is_read_from_erc5267_where_the_token_has_it(
    w3: Web3, mintline_deploy: Run, tmp_path: Path
) -> None:
    usdc_address = deploy_usdc(w3, load_artifact("MockUSDC"), "USDC", "7")
    deployer = funded_account(w3)
    out = tmp_path / "mintline-deploy.json"

    result = mintline_deploy(
        "--usdc", usdc_address, "--treasury", DEV_ADDRESSES[2], "--minter", DEV_ADDRESSES[1],
        "--out", str(out), "--price", "2500000", key=key_of(deployer),
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    deployment = Deployment.load(out)
    assert (deployment.usdc_name, deployment.usdc_version, deployment.price) == ("USDC", "7", 2_500_000)
    assert f"MintToken {deployment.token}" in result.stdout
    # A second run would replace the file the services read: only when asked to.
    again = mintline_deploy(
        "--usdc", usdc_address, "--treasury", DEV_ADDRESSES[2], "--minter", DEV_ADDRESSES[1],
        "--out", str(out), key=key_of(deployer),
    )  # fmt: skip
    assert again.returncode == 2 and "--overwrite" in again.stderr
    assert Deployment.load(out) == deployment


@pytest.mark.parametrize(
    "case",
    ["usdc without code", "other chain id", "not a USDC", "deployer without ETH", "no key", "bad key"],
)
def test_refusals_exit_2_before_any_transaction(
    case: str, w3: Web3, mintline_deploy: Run, deployment: Deployment, tmp_path: Path
) -> None:
    deployer = funded_account(w3)
    usdc, chain_id, key = deployment.usdc, "31337", key_of(deployer)
    expected = {
        "usdc without code": "no contract at the USDC address",
        "other chain id": "the RPC serves chain 31337, not --chain-id 84532",
        "not a USDC": "answers neither eip712Domain() (ERC-5267) nor name(), version()",
        "deployer without ETH": "holds no ETH on chain 31337: fund it first",
        "no key": "set DEPLOYER_PRIVATE_KEY",
        "bad key": "DEPLOYER_PRIVATE_KEY is not a private key",
    }[case]
    if case == "usdc without code":
        usdc = Account.create().address
    elif case == "other chain id":
        chain_id = "84532"
    elif case == "not a USDC":
        usdc = deployment.token  # has code, but no EIP-712 domain to read
    elif case == "deployer without ETH":
        deployer = Account.create()
        key = key_of(deployer)
    elif case == "bad key":
        key = "0x1234-not-a-key"
    out = tmp_path / "mintline-deploy.json"

    result = mintline_deploy(
        "--usdc", usdc, "--treasury", DEV_ADDRESSES[2], "--minter", DEV_ADDRESSES[1],
        "--chain-id", chain_id, "--out", str(out), key=None if case == "no key" else key,
    )  # fmt: skip

    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("mintline: error: ") and expected in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and not out.exists()
    assert w3.eth.get_transaction_count(deployer.address) == 0
    if case == "bad key":
        assert "not-a-key" not in result.stderr


def test_an_unreachable_rpc_fails_with_exit_1_and_no_provider_key(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "admin",
            "deploy",
            "--rpc-url",
            f"http://127.0.0.1:{port}/v2/PROVIDERKEY",
            "--usdc",
            DEV_ADDRESSES[4],
            "--treasury",
            DEV_ADDRESSES[2],
            "--minter",
            DEV_ADDRESSES[1],
            "--out",
            str(tmp_path / "mintline-deploy.json"),
        ],  # fmt: skip
        cwd=REPO,
        env={**os.environ, "DEPLOYER_PRIVATE_KEY": "0x" + "11" * 32},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith(f"mintline: failed: deployment via http://127.0.0.1:{port} failed: ")
    assert "PROVIDERKEY" not in result.stderr and "11" * 32 not in result.stderr
