"""Each service, started as a process, refuses to start when the RPC's chain is not the deployment's:
another chain id, a contract address with no code, or (the batcher) a wallet that is not the minter.
A node that does not answer is no refusal (tests/integration/test_intake_mint.py, the outage tests)."""

from collections.abc import Callable
from pathlib import Path

import pytest
from eth_account import Account

from devstack.anvil import DEV_ADDRESSES, DEV_KEYS
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
    # Anvil's public dev key 5 is a payer, not the minter (dev key 1).
    line = refusal(services("batcher", BATCHER_PRIVATE_KEY=DEV_KEYS[5]))
    assert f"batcher wallet {DEV_ADDRESSES[5]} does not hold MINTER_ROLE on the token contract" in line
    assert f"the deployment's minter is {deployment.minter}" in line
