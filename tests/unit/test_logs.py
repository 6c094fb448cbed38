"""Structured logs: one JSON object per line, with the service and the ids bound or passed."""

import asyncio
import io
import json
import logging
from collections.abc import Callable, Iterator

import pytest

from shared import logs


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], list[dict]]]:
    monkeypatch.delenv("LOG_FORMAT", raising=False)
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    stream = io.StringIO()
    logs.configure("batcher", "DEBUG", stream)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


def test_a_line_is_one_json_object_with_service_level_and_message(captured: Callable[[], list[dict]]) -> None:
    logging.getLogger("services.batcher.worker").info("batch %d signed: nonce %d", 7, 12)

    [line] = captured()
    assert line["service"] == "batcher"
    assert line["level"] == "info"
    assert line["logger"] == "services.batcher.worker"
    assert line["message"] == "batch 7 signed: nonce 12"
    assert line["ts"].endswith("Z")


def test_bound_and_extra_ids_become_fields_and_other_extras_do_not(
    captured: Callable[[], list[dict]],
) -> None:
    log = logging.getLogger("t")
    with logs.bind(request_id="r-1", queue_id="q-1"):
        log.info("accepted", extra={"batch_id": 3, "nonce": 4, "tx_hash": "0xab", "password": "hunter2"})
    log.info("after")

    first, after = captured()
    assert {k: first[k] for k in ("request_id", "queue_id", "batch_id", "nonce", "tx_hash")} == {
        "request_id": "r-1",
        "queue_id": "q-1",
        "batch_id": 3,
        "nonce": 4,
        "tx_hash": "0xab",
    }
    assert "password" not in first and "hunter2" not in json.dumps(first)
    assert "request_id" not in after


async def test_bound_ids_follow_each_task_separately(captured: Callable[[], list[dict]]) -> None:
    log = logging.getLogger("t")

    async def handle(request_id: str) -> None:
        with logs.bind(request_id=request_id):
            await asyncio.sleep(0.01)
            log.info("handled %s", request_id)

    await asyncio.gather(handle("a"), handle("b"))

    assert sorted((line["message"], line["request_id"]) for line in captured() if line["logger"] == "t") == [
        ("handled a", "a"),
        ("handled b", "b"),
    ]


def test_an_exception_is_kept_in_the_same_line(captured: Callable[[], list[dict]]) -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("t").exception("failed")

    [line] = captured()
    assert line["level"] == "error"
    assert "ValueError: boom" in line["exception"]
