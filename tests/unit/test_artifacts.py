"""The committed contract artifacts are exactly what contracts/build.js produces from the sources."""

import shutil
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS_DIR = REPO_ROOT / "contracts" / "artifacts"


def test_committed_artifacts_match_a_fresh_build(tmp_path: Path) -> None:
    if shutil.which("node") is None:
        pytest.skip("node is not on PATH, so the contracts cannot be rebuilt to compare")
    subprocess.run(
        ["node", str(REPO_ROOT / "contracts" / "build.js"), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
        timeout=120,
    )

    committed = sorted(p.name for p in ARTIFACTS_DIR.glob("*.json"))
    assert committed == ["Gen1NFT.json", "MintToken.json", "MockUSDC.json", "PayerState.json"]
    assert sorted(p.name for p in tmp_path.glob("*.json")) == committed
    for name in committed:
        assert (tmp_path / name).read_bytes() == (ARTIFACTS_DIR / name).read_bytes(), (
            f"contracts/artifacts/{name} is stale: run `node contracts/build.js`"
        )
