"""The msgpack event codec: what one service writes, another reads; anything else is a DecodeError."""

from datetime import UTC, datetime

import msgpack
import pytest

from shared.events import (
    DecodeError,
    MintCompleted,
    MintFailed,
    MintReorged,
    MintRequested,
    RenderRequested,
    TxSent,
    TxStuck,
    decode,
    encode,
)

TX_HASH = "0x" + "ab" * 32

EVERY_EVENT = [
    MintRequested(request_id="r1", kind="nft", valid_before=1_900_000_000),
    MintRequested(request_id="r2"),
    MintRequested(request_id="r2b", lane=7, accepted_ms=1_900_000_000_123, eta_seconds=12),
    RenderRequested(request_id="r3"),
    TxSent(batch_id=4, nonce=17, tx_hash=TX_HASH),
    TxStuck(batch_id=4, nonce=17, tx_hash=TX_HASH),
    MintCompleted(request_id="r5", tx_hash=TX_HASH),
    MintFailed(request_id="r6", reason="underpaid"),
    MintReorged(request_id="r7", tx_hash=TX_HASH, block_number=12),
]


def _pack(payload: object) -> bytes:
    return msgpack.packb(payload, use_bin_type=True)


@pytest.mark.parametrize("event", EVERY_EVENT, ids=lambda e: e.type)
def test_every_event_survives_a_round_trip(event) -> None:
    decoded = decode(encode(event))

    assert type(decoded) is type(event)
    assert decoded == event


def test_round_trip_keeps_the_generated_ids() -> None:
    first, second = MintRequested(request_id="r"), MintRequested(request_id="r")

    assert first.event_id != second.event_id
    assert decode(encode(first)).event_id == first.event_id


@pytest.mark.parametrize(
    "data",
    [
        b"\xc1",  # a byte msgpack never uses
        b"\x92\x01",  # an array cut short
        b"not msgpack at all",  # a valid first object followed by trailing bytes
        _pack(42),
        _pack(["mint.requested", "r1"]),
        b"",
    ],
    ids=["reserved-byte", "truncated", "trailing-bytes", "integer", "list", "empty"],
)
def test_garbage_raises_decode_error(data: bytes) -> None:
    with pytest.raises(DecodeError):
        decode(data)


def test_unknown_type_raises_decode_error() -> None:
    with pytest.raises(DecodeError):
        decode(_pack({"type": "mint.exploded", "request_id": "r1"}))


def test_missing_type_raises_decode_error() -> None:
    with pytest.raises(DecodeError):
        decode(_pack({"request_id": "r1"}))


def test_missing_required_field_raises_decode_error() -> None:
    payload = TxSent(batch_id=1, nonce=2, tx_hash=TX_HASH).model_dump(mode="json")
    del payload["tx_hash"]

    with pytest.raises(DecodeError, match="tx_hash"):
        decode(_pack(payload))


def test_wrongly_typed_field_raises_decode_error() -> None:
    payload = TxSent(batch_id=1, nonce=2, tx_hash=TX_HASH).model_dump(mode="json")
    payload["nonce"] = "seventeen"

    with pytest.raises(DecodeError):
        decode(_pack(payload))


def test_fields_from_a_newer_writer_are_ignored() -> None:
    event = MintRequested(request_id="r1", valid_before=1_900_000_000)
    payload = {**event.model_dump(mode="json"), "schema_version": 2, "priority": "high"}

    decoded = decode(_pack(payload))

    assert decoded.request_id == "r1"
    assert decoded.valid_before == 1_900_000_000
    assert decoded.schema_version == 2
    assert not hasattr(decoded, "priority")


def test_a_request_from_a_writer_without_lanes_is_lane_0_accepted_when_announced() -> None:
    payload = MintRequested(request_id="r1", valid_before=1_900_000_000).model_dump(mode="json")
    for field in ("lane", "accepted_ms", "eta_seconds"):
        del payload[field]

    decoded = decode(_pack(payload))

    assert isinstance(decoded, MintRequested)
    assert (decoded.lane, decoded.eta_seconds) == (0, None)
    assert decoded.accepted == decoded.created_ms / 1000


def test_a_request_row_gives_its_lane_and_when_it_was_accepted() -> None:
    created = datetime(2030, 3, 17, 12, 0, 1, 500_000, tzinfo=UTC)
    row = {
        "id": "r1",
        "kind": "nft",
        "valid_before": None,
        "lane": 4,
        "created_at": created,
        "eta_seconds": 9,
    }

    event = MintRequested.of_row(row)

    assert (event.lane, event.eta_seconds, event.accepted) == (4, 9, created.timestamp())


def test_a_negative_lane_is_no_event() -> None:
    payload = {**MintRequested(request_id="r1").model_dump(mode="json"), "lane": -1}

    with pytest.raises(DecodeError):
        decode(_pack(payload))
