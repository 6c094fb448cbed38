"""The batcher's signer wallets from the environment: BATCHER_PRIVATE_KEYS (comma-separated) takes
precedence over BATCHER_PRIVATE_KEY; none, a malformed key or the same key twice stops start-up with
a reason that never repeats the key."""

import pytest
from pydantic import ValidationError

from devstack.anvil import MINTER_KEYS
from services.batcher.settings import BatcherSettings


@pytest.fixture(autouse=True)
def connections(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("BATCHER_PRIVATE_KEY", "BATCHER_PRIVATE_KEYS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REDIS_URL", "redis://r")
    monkeypatch.setenv("DATABASE_URL", "postgresql://d")


def test_one_key_makes_one_wallet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATCHER_PRIVATE_KEY", MINTER_KEYS[0])
    assert BatcherSettings().signing_keys == [MINTER_KEYS[0]]


def test_several_keys_take_precedence_in_their_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATCHER_PRIVATE_KEY", MINTER_KEYS[0])
    monkeypatch.setenv("BATCHER_PRIVATE_KEYS", f" {MINTER_KEYS[1]} , {MINTER_KEYS[0]},")
    assert BatcherSettings().signing_keys == [MINTER_KEYS[1], MINTER_KEYS[0]]


@pytest.mark.parametrize(
    ("keys", "reason"),
    [
        ("", "set BATCHER_PRIVATE_KEY (or BATCHER_PRIVATE_KEYS, comma-separated)"),
        (f"{MINTER_KEYS[0]},0xdeadbeef", "signer key 2 is not a private key"),
        (f"{MINTER_KEYS[0]},{MINTER_KEYS[0].removeprefix('0x')}", "the same signer key is listed twice"),
    ],
)
def test_keys_that_make_no_wallets_are_refused_without_repeating_them(
    monkeypatch: pytest.MonkeyPatch, keys: str, reason: str
) -> None:
    monkeypatch.setenv("BATCHER_PRIVATE_KEYS", keys)
    with pytest.raises(ValidationError) as refused:
        BatcherSettings()
    assert reason in str(refused.value)
    for key in keys.split(","):
        # Not even a part of one (pydantic would quote the input, shortened in the middle).
        assert not key or key.removeprefix("0x")[-6:] not in str(refused.value)
