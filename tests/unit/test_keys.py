"""Every Redis key of a namespace hashes to one Redis Cluster slot (the `{namespace}` hash tag)."""

import uuid

import pytest
from pydantic import ValidationError
from redis.crc import key_slot

from shared import keys
from shared.keys import Keys
from shared.settings import Settings


def crc16_xmodem(data: bytes) -> int:
    """CRC16 as the Redis Cluster specification defines it (XMODEM: polynomial 0x1021, initial 0)."""
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021 if crc & 0x8000 else crc << 1) & 0xFFFF
    return crc


def cluster_slot(key: str) -> int:
    """The spec's HASH_SLOT: only the part between the first `{` and the next `}` counts, if not empty."""
    start = key.find("{")
    if start != -1:
        end = key.find("}", start + 1)
        if end > start + 1:
            key = key[start + 1 : end]
    return crc16_xmodem(key.encode()) % 16384


def every_key(names: Keys) -> list[str]:
    """Every name Keys builds: each method of Keys with each argument the code passes it."""
    job_id = str(uuid.uuid4())
    return [
        *(names.stream(stream) for stream in keys.STREAMS),
        *(names.dead(stream) for stream in keys.STREAMS),
        names.render_job(job_id),
        *(names.render_finished(status) for status in ("completed", "failed")),
        *(names.alive(service) for service in (keys.INTAKE, keys.BATCHER, keys.CONFIRMER, keys.RENDERER)),
    ]


def test_the_crc16_here_is_the_specs():
    # The specification's own check value: CRC16("123456789") is 0x31C3.
    assert crc16_xmodem(b"123456789") == 0x31C3


def test_every_key_of_keys_is_covered_here():
    built = {name for name in vars(Keys) if not name.startswith("_") and callable(getattr(Keys, name))}
    assert built == {"stream", "dead", "render_job", "render_finished", "alive"}


@pytest.mark.parametrize("namespace", ["mintline", "t0123456789ab", "prod-eu.1"])
def test_every_key_of_a_namespace_is_in_one_cluster_slot(namespace):
    names = Keys(namespace)
    built = every_key(names)
    assert all(key.startswith(f"{{{namespace}}}:") for key in built)
    slots = {cluster_slot(key) for key in built}
    assert slots == {cluster_slot(namespace)}
    # redis-py's own key_slot, which its cluster client routes by, agrees.
    assert {key_slot(key.encode()) for key in built} == slots


def test_stream_names_read_as_before_inside_the_tag():
    assert Keys("mintline").stream(keys.MINT_REQUESTED) == "{mintline}:mint.requested"
    assert Keys("mintline").dead(keys.TX_SENT) == "{mintline}:tx.sent.dead"
    assert Keys("mintline").pattern == "{mintline}:*"


@pytest.mark.parametrize("namespace", ["", "a}b", "{a}", "a*", "a:b", "x" * 65])
def test_a_namespace_that_would_break_the_tag_is_refused(namespace, monkeypatch):
    with pytest.raises(ValueError, match="namespace"):
        Keys(namespace)
    monkeypatch.setenv("MINTLINE_NAMESPACE", namespace)
    with pytest.raises(ValidationError, match="MINTLINE_NAMESPACE"):
        Settings(redis_url="redis://x", database_url="postgresql://x")
