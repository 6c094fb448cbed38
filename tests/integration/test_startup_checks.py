"""Each service, started as a process, refuses to start when the RPC's chain is not the deployment's:
another chain id, a contract address with no code, or (the batcher) a signer wallet that is not a minter.
A node that does not answer is no refusal (tests/integration/test_intake_mint.py, the outage tests)."""

from collections.abc import Callable
from pathlib import Path

import pytest
from eth_account import Account

from devstack.anvil import DEV_ADDRESSES, DEV_KEYS, MINTER_ADDRESSES, MINTER_KEYS
from shared.deploy import Deployment
from tests.integration.conftest import ServiceProcess

CHAIN_SERVICES = ("intake", "batcher", "confirmer")
# Refused for configuration, as a missing setting is (services/intake/__main__.py).
REFUSED = 2


def refusal(process: ServiceProcess) -> str:
    """The refusal line of a process that must exit at start-up."""
    assert process.proc is not None
    code = process.proc.wait(timeout=60)
    output = process.log_path.read_text()
    assert code == REFUSED, output
    lines = [line for line in output.splitlines() if "refusing to start" in line]
    assert len(lines) == 1 and "Traceback" not in output, output
    return lines[0]


def write_deployment(deployment: Deployment, path: Path, **changes: object) -> str:
    deployment.model_copy(update=changes).save(path)
    return str(path)


@pytest.mark.parametrize("name", CHAIN_SERVICES)
def test_a_wrong_chain_id_stops_start_up(
    name: str, services: Callable[..., ServiceProcess], deployment: Deployment, tmp_path: Path
) -> None:
    wrong = write_deployment(deployment, tmp_path / "other-chain.json", chain_id=deployment.chain_id + 1)
    line = refusal(services(name, DEPLOYMENT_FILE=wrong))
    assert f"chain id is {deployment.chain_id}, the deployment's is {deployment.chain_id + 1}" in line


@pytest.mark.parametrize("name", CHAIN_SERVICES)
def test_a_contract_with_no_code_stops_start_up(
    name: str, services: Callable[..., ServiceProcess], deployment: Deployment, tmp_path: Path
) -> None:
    nowhere = Account.create().address
    wrong = write_deployment(deployment, tmp_path / "no-code.json", nft=nowhere)
    line = refusal(services(name, DEPLOYMENT_FILE=wrong))
    assert f"nft contract {nowhere} has no code on chain {deployment.chain_id}" in line


def test_a_batcher_wallet_that_is_not_the_minter_stops_start_up(
    services: Callable[..., ServiceProcess], deployment: Deployment
) -> None:
    # Anvil's public dev key 5 is a payer, not a minter (dev key 1 and the second local minter are).
    line = refusal(services("batcher", BATCHER_PRIVATE_KEY=DEV_KEYS[5]))
    assert f"batcher wallet {DEV_ADDRESSES[5]} does not hold MINTER_ROLE on the token contract" in line
    assert f"the deployment's minters are {', '.join(MINTER_ADDRESSES)}" in line


def test_one_signer_wallet_of_several_that_is_not_a_minter_stops_start_up(
    services: Callable[..., ServiceProcess], deployment: Deployment, tmp_path: Path
) -> None:
    """Every wallet of BATCHER_PRIVATE_KEYS is checked, not only the first; a deployment file that
    lists one minter says so."""
    single = write_deployment(deployment, tmp_path / "one-minter.json", minters=[deployment.minter])
    keys = f"{MINTER_KEYS[0]},{DEV_KEYS[5]}"
    line = refusal(services("batcher", BATCHER_PRIVATE_KEYS=keys, DEPLOYMENT_FILE=single))
    assert f"batcher wallet {DEV_ADDRESSES[5]} does not hold MINTER_ROLE on the token contract" in line
    assert f"the deployment's minter is {deployment.minter}" in line


@pytest.mark.parametrize(
    ("keys", "said"),
    [
        ("", "set BATCHER_PRIVATE_KEY (or BATCHER_PRIVATE_KEYS, comma-separated)"),
        (f"{MINTER_KEYS[0]},0x1234", "signer key 2 is not a private key"),
        (f"{MINTER_KEYS[0]},{MINTER_KEYS[0]}", "the same signer key is listed twice"),
    ],
)
def test_signer_keys_that_do_not_make_wallets_stop_start_up_naming_why(
    services: Callable[..., ServiceProcess], keys: str, said: str
) -> None:
    process = services("batcher", BATCHER_PRIVATE_KEY="", BATCHER_PRIVATE_KEYS=keys)
    assert process.proc is not None
    assert process.proc.wait(timeout=60) != 0
    output = process.log_path.read_text()
    assert said in output
    for key in filter(None, keys.split(",")):
        assert key.removeprefix("0x") not in output, "a key was printed"
