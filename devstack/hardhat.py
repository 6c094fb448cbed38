"""A second node implementation for tests: Hardhat's node (npm `hardhat@2`) on a free loopback port, so
the system is not tuned to anvil alone. Same interface as `devstack.anvil.Anvil`."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from devstack.anvil import DEV_KEYS, REPO_ROOT
from devstack.local_chain import HOST, LocalChain

HARDHAT_CLI = REPO_ROOT / "node_modules" / "hardhat" / "internal" / "cli" / "bootstrap.js"
# What anvil gives each dev account, so the devstack's accounts hold the same on either node.
DEV_BALANCE_WEI = 10_000 * 10**18


def node_binary() -> str:
    if found := shutil.which("node"):
        return found
    raise FileNotFoundError("node not found: install Node.js 20 (devstack/install.sh)")


class HardhatNode(LocalChain):
    """`hardhat node` on 127.0.0.1 with a config of its own, written to a temp dir at start.

    block_time: seconds between blocks (interval mining; automine is off, as on a real chain), or None
    for automine (one block per transaction). The accounts are the devstack's public dev keys
    (devstack.anvil.DEV_KEYS), each holding 10000 ETH. Hardhat 2.29's default hardfork, Osaka,
    enforces EIP-7825's per-transaction gas cap of 2^24, as Ethereum does.
    """

    name = "hardhat"
    stop_timeout = 10.0

    def __init__(
        self,
        port: int | None = None,
        block_time: float | None = 1,
        chain_id: int = 31337,
        start_timeout: float = 60.0,
    ) -> None:
        super().__init__(port, chain_id, start_timeout)
        self.block_time = block_time
        self._config_dir: Path | None = None

    def config(self) -> dict[str, Any]:
        """The `networks.hardhat` section of the generated hardhat.config.js."""
        mining: dict[str, Any] = (
            {"auto": True, "interval": 0}
            if self.block_time is None
            else {"auto": False, "interval": round(self.block_time * 1000)}
        )
        return {
            "chainId": self.chain_id,
            "mining": mining,
            # Public local-chain dev keys only (devstack.anvil.DEV_KEYS).
            "accounts": [{"privateKey": key, "balance": str(DEV_BALANCE_WEI)} for key in DEV_KEYS],
            # One log line per RPC call otherwise; the tests read the chain, not the node's log.
            "loggingEnabled": False,
        }

    def prepare(self) -> None:
        if not HARDHAT_CLI.is_file():
            raise FileNotFoundError(f"hardhat not found at {HARDHAT_CLI}: run `npm ci` (make install)")
        self._config_dir = Path(tempfile.mkdtemp(prefix="mintline-hardhat-"))
        network = json.dumps({"networks": {"hardhat": self.config()}}, indent=2)
        (self._config_dir / "hardhat.config.js").write_text(f"module.exports = {network};\n")

    def command(self) -> list[str]:
        assert self._config_dir is not None
        return [
            node_binary(),
            str(HARDHAT_CLI),
            "--config", str(self._config_dir / "hardhat.config.js"),
            "node",
            "--hostname", HOST,
            "--port", str(self.port),
        ]  # fmt: skip

    def popen_args(self) -> dict[str, Any]:
        # Hardhat insists on being installed in the project it runs from: the repo's node_modules.
        env = {"HARDHAT_DISABLE_TELEMETRY_PROMPT": "true", "HARDHAT_HIDE_SOLIDITY_SURVEY_MESSAGE": "true"}
        return {"cwd": REPO_ROOT, "env": {**os.environ, **env}}

    def cleanup(self) -> None:
        if self._config_dir is not None:
            shutil.rmtree(self._config_dir, ignore_errors=True)
            self._config_dir = None
