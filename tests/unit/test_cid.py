"""CIDs computed without an IPFS node, checked against Debian's ipfs_cid (kubo's `ipfs add` defaults)."""

import json
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from services.renderer.cid import CHUNK_SIZE, MAX_LINKS, InvalidCid, canonical_cid, cid_v0, cid_v1

HELLO = b"hello world\n"
# What `ipfs add` has always named these; a regression check that needs no tool.
HELLO_V0 = "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"
HELLO_V1 = "bafybeicg2rebjoofv4kbyovkw7af3rpiitvnl6i7ckcywaq6xjcxnc2mby"
EMPTY_V0 = "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"
EMPTY_V1 = "bafybeif7ztnhq65lumvvtr4ekcwd2ifwgm3awq4zfr3srh462rwyinlb4y"
# The empty block as a raw-codec CID: valid, though not one this store ever makes.
EMPTY_RAW_V1 = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"


def _ipfs_cid(content: bytes, directory: Path) -> dict[str, str]:
    tool = shutil.which("ipfs_cid")
    if tool is None:
        pytest.fail("ipfs_cid (Debian package ipfs-cid) is missing: run `make install`")
    path = directory / "content"
    path.write_bytes(content)
    done = subprocess.run([tool, str(path)], capture_output=True, check=True, timeout=120)
    return json.loads(done.stdout)


@pytest.mark.parametrize(
    "size",
    [
        pytest.param(0, id="empty"),
        pytest.param(7, id="tiny"),
        pytest.param(CHUNK_SIZE, id="one-full-chunk"),
        pytest.param(CHUNK_SIZE + 1, id="two-chunks"),
        pytest.param(1_000_000, id="about-1MB"),
        # One chunk more than a node can link to: the DAG grows a second level.
        pytest.param(MAX_LINKS * CHUNK_SIZE + 1, id="two-levels"),
    ],
)
def test_cids_match_ipfs_add(size: int, tmp_path: Path) -> None:
    content = random.Random(size).randbytes(size)

    reference = _ipfs_cid(content, tmp_path)

    assert cid_v1(content) == reference["CIDv1"]
    assert cid_v0(content) == reference["CIDv0"]


def test_known_cids_of_hello_world_and_the_empty_file(tmp_path: Path) -> None:
    assert _ipfs_cid(HELLO, tmp_path) == {"CIDv0": HELLO_V0, "CIDv1": HELLO_V1}
    assert (cid_v0(HELLO), cid_v1(HELLO)) == (HELLO_V0, HELLO_V1)
    assert (cid_v0(b""), cid_v1(b"")) == (EMPTY_V0, EMPTY_V1)


def test_cid_v1_names_the_same_dag_as_cid_v0() -> None:
    assert cid_v1(HELLO).startswith("bafybei")
    assert canonical_cid(HELLO_V0) == HELLO_V1
    assert canonical_cid(HELLO_V1) == HELLO_V1
    assert canonical_cid(EMPTY_RAW_V1) == EMPTY_RAW_V1


@pytest.mark.parametrize(
    "text",
    [
        "",
        "..",
        "../pins.jsonl",
        "..%2Fpins.jsonl",
        "..\\pins.jsonl",
        "blocks/" + HELLO_V1,
        ".incoming-abc123",
        HELLO_V1.upper(),
        HELLO_V1 + "a",
        HELLO_V1[:-1],
        HELLO_V1[:-1] + "z",  # stray bits in the last base32 digit
        HELLO_V1[:-8],
        "b",
        "bafybei" + "1" * 52,
        HELLO_V0[:-1],
        HELLO_V0 + "1",
        HELLO_V0[:-1] + "0",  # "0" is not base58
        "Qm" + "z" * 44,  # decodes to more than 34 bytes
        "b" + "a" * 300,
        "bafybeicg2rebjoofv4kbyovkw7af3rpiitvnl6i7ckcywaq6xjcxnc2mbé",
    ],
)
def test_anything_but_a_cid_is_rejected(text: str) -> None:
    with pytest.raises(InvalidCid):
        canonical_cid(text)
