"""A throwaway local chain: foundry's anvil on a free loopback port, for tests and `make run`."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from devstack.local_chain import HOST, LocalChain

REPO_ROOT = Path(__file__).resolve().parents[1]
NODE_MODULES_ANVIL = REPO_ROOT / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"

# Public local-chain dev keys, never use on a real network: anvil derives them from the well-known
# "test test ... junk" mnemonic and funds each with 10000 ETH on every fresh chain.
DEV_KEYS: list[str] = [
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
    "0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba",
    "0x92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e",
    "0x4bbbf85ce3377467afe5d46f804f221813b2bb87f24d81f60f1fcdbf7cbf4356",
    "0xdbda1821b80551c9d65939329250298aa3472ba22feea921c0cf5d620ea67b97",
    "0x2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6",
]
# The addresses of DEV_KEYS, in the same order (also public local-chain dev accounts).
DEV_ADDRESSES: list[str] = [
    "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
    "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
    "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
    "0x90F79bf6EB2c4f870365E785982E1f101E93b906",
    "0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65",
    "0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc",
    "0x976EA74026E726554dB657fA54763abd0C3a0aa9",
    "0x14dC79964da2C08b23698B3D3cc7Ca32193d9955",
    "0x23618e81E3f5cdF7f54C3d65f7FBc0aBf5B21E8f",
    "0xa0Ee7A142d267C1f36714E4a8F75612F20a79720",
]

# The local chain's signer wallets (BATCHER_PRIVATE_KEYS): public dev accounts 1 and 9. Account 9 is
# no payer (3..8 are), so nobody's transfer ever takes a nonce the batcher counts on. Local chains only.
MINTER_KEYS = [DEV_KEYS[1], DEV_KEYS[9]]
MINTER_ADDRESSES = [DEV_ADDRESSES[1], DEV_ADDRESSES[9]]
# The public dev accounts funded with mock USDC to pay with.
PAYER_ADDRESSES = DEV_ADDRESSES[3:9]


def anvil_binary() -> str:
    """The anvil to run: $ANVIL_BIN, else the one npm installed for this repo, else anvil on PATH."""
    if env := os.environ.get("ANVIL_BIN"):
        return env
    if NODE_MODULES_ANVIL.is_file():
        return str(NODE_MODULES_ANVIL)
    if found := shutil.which("anvil"):
        return found
    raise FileNotFoundError(
        f"anvil not found: set ANVIL_BIN, run `npm ci` (expects {NODE_MODULES_ANVIL}) or put anvil on PATH"
    )


class Anvil(LocalChain):
    """An anvil process on 127.0.0.1; `start()` (or `with Anvil() as anvil:`) returns once it answers RPC.

    block_time: seconds between blocks. Fractions work (anvil 1.7.1 takes e.g. 0.25 and mines about
    four blocks a second), but block timestamps stay whole seconds, so blocks less than a second apart
    share a timestamp. None means automine: one block per transaction, right away, which keeps
    contract tests fast but hides batching behaviour.

    tx_gas_limit: enforce EIP-7825's per-transaction gas cap of 2^24, as Ethereum does since Osaka
    (on by default: anvil is friendlier than a real chain without it).

    gas_limit: the block gas limit (None: anvil's own, 30M).
    """

    name = "anvil"

    def __init__(
        self,
        port: int | None = None,
        block_time: float | None = 1,
        chain_id: int = 31337,
        start_timeout: float = 15.0,
        tx_gas_limit: bool = True,
        gas_limit: int | None = None,
    ) -> None:
        super().__init__(port, chain_id, start_timeout)
        self.block_time = block_time
        self.tx_gas_limit = tx_gas_limit
        self.gas_limit = gas_limit

    def command(self) -> list[str]:
        cmd = [
            anvil_binary(),
            "--host", HOST,
            "--port", str(self.port),
            "--chain-id", str(self.chain_id),
            "--silent",
        ]  # fmt: skip
        if self.block_time is not None:
            cmd += ["--block-time", str(self.block_time)]
        if self.tx_gas_limit:
            cmd.append("--enable-tx-gas-limit")
        if self.gas_limit is not None:
            cmd += ["--gas-limit", str(self.gas_limit)]
        return cmd
