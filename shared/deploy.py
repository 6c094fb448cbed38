"""The deployment file: where the contracts live and how they were configured, what every service reads
at start-up; and the compiled contract artifacts (contracts/artifacts) to talk to them.

Written by `mintline deploy` (admin/deploy.py) for a real chain, or by devstack/deploy.py for a local
one; nothing here deploys, and nothing here knows a key.
"""

import functools
import json
from pathlib import Path
from typing import Annotated, Any

from eth_typing import ChecksumAddress
from eth_utils import to_checksum_address
from pydantic import AfterValidator, BaseModel, Field, model_validator

ARTIFACTS_DIR = Path(__file__).resolve().parents[1] / "contracts" / "artifacts"

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
    # Every signer wallet granted MINTER_ROLE at deployment, `minter` first (a file written before
    # there could be several lists `minter` only).
    minters: list[Address] = Field(default_factory=list)
    price: int
    mint_amount: int
    nft_price: int
    # The EIP-712 domain payers sign USDC authorizations for, as read from the USDC contract.
    usdc_name: str = "USD Coin"
    usdc_version: str = "2"
    # The block the mint contracts were deployed in: nothing of theirs is older, so log searches over
    # them need not start before it (0 in files written before it was recorded).
    deployment_block: int = 0

    @model_validator(mode="after")
    def _minter_listed(self) -> "Deployment":
        if not self.minters:
            self.minters = [self.minter]
        elif self.minter not in self.minters:
            raise ValueError(f"the minter {self.minter} is not among the minters {self.minters}")
        return self

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
