"""The live status page (GET /) and its Server-Sent Event streams.

The pipeline tests run every service as a process: a mint waits `pending` while no batcher runs, then
the page (headless Chromium) and the streams (aiohttp) follow it to `completed` without a reload. The
connection limit, keepalives and clients that leave are tested against the intake process too (as it
runs in production, where a client leaving does not cancel its handler). Intake in-process covers bad
ids, one change reaching many streams, and shutdown with streams open.
"""

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from eth_account.signers.local import LocalAccount
from jsonschema import Draft202012Validator
from playwright.async_api import async_playwright

from devstack.ports import free_port
from services.intake.resources import WATCHER
from shared.deploy import Deployment
from tests.support.browser import ARTIFACTS, CHROMIUM_ARGS
from tests.support.intake import Intake, running_intake, wait_healthy
from tests.support.payments import gasless_body

FINAL = ("completed", "failed")

Event = tuple[str, dict[str, Any]]


async def sse_events(response: aiohttp.ClientResponse) -> AsyncIterator[Event]:
    """(event name, JSON data) for each event of a text/event-stream response, until it ends."""
    name, data = "message", []
    async for raw in response.content:
        line = raw.decode().rstrip("\r\n")
        if not line:
            if data:
                yield name, json.loads("\n".join(data))
            name, data = "message", []
        elif line.startswith(":"):
            continue  # a comment (keepalive)
        else:
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)


async def next_event(events: AsyncIterator[Event], timeout: float = 5) -> Event:
    async with asyncio.timeout(timeout):
        return await anext(events)


async def submit_mint(url: str, payer: LocalAccount, deployment: Deployment) -> str:
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{url}/mint", json=gasless_body(payer, deployment)) as response:
            body = await response.json()
            assert response.status == 202, body
            return body["queueId"]


async def mint_row(pool: asyncpg.Pool, queue_id: str) -> asyncpg.Record:
    return await pool.fetchrow(
        "SELECT status, mint_tx_hash, batch_id FROM mint_requests WHERE id = $1::uuid", queue_id
    )


# --- the page in a browser, the whole pipeline as processes -------------------------------------------


async def test_page_follows_a_mint_to_completed_without_reloading(
    chromium: Path, intake_url, services, pg_pool, deployment, fund_payers
) -> None:
    url = await intake_url()
    (payer,) = fund_payers(1)
    queue_id = await submit_mint(url, payer, deployment)

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1100, "height": 900})
            page_errors: list[str] = []
            page.on("pageerror", lambda error: page_errors.append(str(error)))
            page.on("console", lambda msg: page_errors.append(msg.text) if msg.type == "error" else None)
            navigations: list[str] = []
            page.on(
                "framenavigated",
                lambda frame: navigations.append(frame.url) if frame == page.main_frame else None,
            )

            await page.goto(f"{url}/?id={queue_id}")
            # No batcher yet: the mint waits first in line.
            await page.wait_for_function("document.getElementById('status').textContent === 'pending'")
            assert await page.text_content("#position") == "1"
            assert (await page.text_content("#wait")).startswith("about ")
            assert await page.text_content("#tx") == "—"
            await page.wait_for_function("document.getElementById('queue-depth').textContent === '1'")
            assert await page.input_value("#queue-id") == queue_id
            await page.evaluate("window.__marker = 'no reload'")
            await page.screenshot(path=ARTIFACTS / "status-page-pending.png", full_page=True)

            services("batcher")
            services("confirmer")
            await page.wait_for_function(
                "document.getElementById('status').textContent === 'completed'", timeout=60_000
            )
            row = await mint_row(pg_pool, queue_id)
            assert row["status"] == "completed"
            assert await page.text_content("#tx") == row["mint_tx_hash"]
            assert await page.text_content("#position") == "—"
            history = await page.locator("#history li").all_text_contents()
            assert [entry.split()[-1] for entry in history][0] == "pending"
            assert [entry.split()[-1] for entry in history][-1] == "completed"

            # The queue stream shows the batch that minted it (it refreshes every couple of seconds).
            await page.wait_for_function(
                "document.getElementById('queue-depth').textContent === '0'"
                " && document.querySelector('#batches tbody td[data-status=\"confirmed\"]') !== null",
                timeout=15_000,
            )
            batch_row = page.locator(f"#batches tbody tr[data-batch-id='{row['batch_id']}']")
            cells = await batch_row.locator("td").all_text_contents()
            batch = await pg_pool.fetchrow("SELECT * FROM batches WHERE id = $1", row["batch_id"])
            assert cells == [
                str(batch["id"]),
                str(batch["nonce"]),
                "token",
                "1",
                "confirmed",
                batch["tx_hash"],
                str(batch["block_number"]),
            ]

            # The same document all along: no navigation after the first, the marker survives.
            assert await page.evaluate("window.__marker") == "no reload"
            assert len(navigations) == 1
            await page.screenshot(path=ARTIFACTS / "status-page.png", full_page=True)
        finally:
            await browser.close()

    assert page_errors == []
    intake = services.started[0]
    assert "Traceback" not in intake.log_path.read_text(), intake.log_tail()


# --- the streams over HTTP, the whole pipeline as processes ------------------------------------------


def event_validator(spec: dict[str, Any], schema: dict[str, Any]) -> Draft202012Validator:
    """A JSON Schema validator for `schema`, its `#/components/...` $refs resolved in the spec."""
    return Draft202012Validator({**schema, "components": spec["components"]})


async def test_item_stream_starts_at_once_and_ends_after_completed(
    intake_url, services, pg_pool, deployment, fund_payers
) -> None:
    url = await intake_url()
    (payer,) = fund_payers(1)
    queue_id = await submit_mint(url, payer, deployment)

    async with aiohttp.ClientSession() as session:
        queue_response = await session.get(f"{url}/events/queue")
        queue_events = sse_events(queue_response)
        name, first_queue = await next_event(queue_events, timeout=2)
        assert name == "queue"
        assert first_queue["counts"] == {"pending": 1}
        assert first_queue["queueDepth"] == 1
        assert first_queue["batches"] == []
        assert first_queue["estimatedWaitSeconds"] >= 1
        assert set(first_queue["throughput"]) == {"completedLastMinute", "mintsPerSecond"}

        started = time.monotonic()
        async with session.get(f"{url}/events/item/{queue_id}") as response:
            assert response.status == 200
            assert response.headers["Content-Type"] == "text/event-stream"
            assert response.headers["Cache-Control"] == "no-cache"
            events = sse_events(response)
            name, first = await next_event(events, timeout=2)
            assert time.monotonic() - started < 2
            assert name == "item"
            assert first["id"] == queue_id
            assert first["status"] == "pending"
            assert first["queuePosition"] == 1
            assert first["estimatedWaitSeconds"] >= 1
            assert first["mintTxHash"] is None and first["error"] is None
            assert first["updatedAt"] is not None
            assert [change["status"] for change in first["history"]] == ["pending"]

            services("batcher")
            services("confirmer")
            seen = [first]
            async with asyncio.timeout(60):
                async for name, state in events:  # ends when the server closes the stream
                    assert name == "item"
                    seen.append(state)
            statuses = [state["status"] for state in seen]

        row = await mint_row(pg_pool, queue_id)
        assert statuses[-1] == "completed"
        assert all(status not in FINAL for status in statuses[:-1])
        order = ["pending", "batched", "sent", "completed"]
        assert statuses == sorted(statuses, key=order.index)
        last = seen[-1]
        assert last["mintTxHash"] == row["mint_tx_hash"] is not None
        assert last["queuePosition"] is None and last["estimatedWaitSeconds"] is None
        history = await pg_pool.fetch(
            "SELECT status FROM mint_request_history WHERE request_id = $1::uuid ORDER BY id", queue_id
        )
        assert [change["status"] for change in last["history"]] == [h["status"] for h in history]

        # The queue stream shows the change too, with the batch that minted it.
        async with asyncio.timeout(15):
            async for _, state in queue_events:
                if state["counts"].get("completed") == 1 and state["batches"][0]["status"] == "confirmed":
                    break
        assert state["queueDepth"] == 0
        assert state["batches"][0]["txHash"] == row["mint_tx_hash"]
        assert state["batches"][0]["entries"] == 1
        assert state["batches"][0]["blockNumber"] is not None
        queue_response.close()

        # A finished request's stream sends its final state and ends at once.
        async with session.get(f"{url}/events/item/{queue_id}") as response:
            async with asyncio.timeout(5):
                replay = [event async for event in sse_events(response)]
        assert [state["status"] for _, state in replay] == ["completed"]

        # Every event's data is what GET /openapi.json describes for the stream (x-event-data).
        async with session.get(f"{url}/openapi.json") as response:
            spec = await response.json()
        for operation, states in (("/events/item/{queueId}", seen), ("/events/queue", [first_queue, state])):
            described = spec["paths"][operation]["get"]["responses"]["200"]["content"]["text/event-stream"]
            validator = event_validator(spec, described["x-event-data"])
            for each in states:
                validator.validate(each)


async def test_streams_are_capped_kept_alive_and_freed_quietly_when_clients_leave(
    services, deployment, fund_payers
) -> None:
    port = free_port()
    process = services(
        "intake",
        INTAKE_PORT=str(port),
        INTAKE_LIVE_MAX_STREAMS="2",
        INTAKE_LIVE_KEEPALIVE_SECONDS="0.5",
    )
    url = f"http://127.0.0.1:{port}"
    assert await wait_healthy(url, process.proc), process.log_tail()
    (payer,) = fund_payers(1)
    queue_id = await submit_mint(url, payer, deployment)

    async with aiohttp.ClientSession() as session:
        queue = await session.get(f"{url}/events/queue")
        item = await session.get(f"{url}/events/item/{queue_id}")
        await next_event(sse_events(item))
        # Nothing changes while no batcher runs: the queue stream gets its event, then only pings.
        lines: list[bytes] = []
        async with asyncio.timeout(5):
            while lines.count(b": ping\n") < 2:
                lines.append(await queue.content.readline())
        assert lines.count(b"event: queue\n") == 1

        async with session.get(f"{url}/events/queue") as refused:
            body = await refused.json()
            assert (refused.status, body["error"]) == (503, "too_many_streams")
            assert refused.headers["Retry-After"] == "10"

        # Both clients leave; their places free up within a poll interval or two.
        queue.close()
        item.close()
        deadline = time.monotonic() + 5
        while True:
            again = [await session.get(f"{url}/events/queue") for _ in range(2)]
            if all(response.status == 200 for response in again):
                break
            for response in again:
                response.close()
            assert time.monotonic() < deadline, "the closed streams still hold their places"
            await asyncio.sleep(0.2)
        for response in again:
            await next_event(sse_events(response))
            response.close()
        await asyncio.sleep(2.5)  # the server notices these clients left too

        async with session.get(f"{url}/metrics") as response:
            metrics = await response.text()
    assert 'route="/events/queue",status="200"' in metrics
    assert 'status="500"' not in metrics
    log = process.log_path.read_text()
    assert "Traceback" not in log and '"level": "error"' not in log, process.log_tail()


# --- the streams' edges, intake in-process -------------------------------------------------------------


async def test_page_and_its_assets_are_served(intake: Intake) -> None:
    async with intake.client.get("/?id=whatever") as response:
        assert response.status == 200
        assert response.content_type == "text/html"
        page = await response.text()
    assert 'id="status"' in page and 'id="tx"' in page and 'id="queue-depth"' in page
    for asset, content_types in (
        ("status.js", {"text/javascript", "application/javascript"}),
        ("status.css", {"text/css"}),
    ):
        async with intake.client.get(f"/static/{asset}") as response:
            assert response.status == 200
            assert response.content_type in content_types
    # No external resources: the network may be closed.
    assert "http://" not in page and "https://" not in page


async def test_bad_and_unknown_queue_ids_get_json_errors(intake: Intake) -> None:
    status, body = await intake.get("/events/item/not-a-uuid")
    assert (status, body["error"]) == (400, "invalid_queue_id")
    unknown = uuid.uuid4()
    status, body = await intake.get(f"/events/item/{unknown}")
    assert (status, body["error"]) == (404, "not_found")
    assert str(unknown) in body["message"]
    assert intake.app[WATCHER].streams == 0


async def test_one_change_reaches_every_stream_watching_it(
    intake: Intake, fund_payers, monkeypatch: pytest.MonkeyPatch
) -> None:
    (payer,) = fund_payers(1)
    _, body = await intake.gasless(intake.payment(payer))
    queue_id = body["queueId"]
    reads = 0
    read_items = intake.app[WATCHER]._read_items

    async def counted(pool: asyncpg.Pool, ids: list[uuid.UUID]) -> dict:
        nonlocal reads
        reads += 1
        return await read_items(pool, ids)

    async with aiohttp.ClientSession() as session:
        responses = [await session.get(f"{intake.url}events/item/{queue_id}") for _ in range(40)]
        streams = [sse_events(response) for response in responses]
        firsts = await asyncio.gather(*(next_event(stream) for stream in streams))
        assert {state["status"] for _, state in firsts} == {"pending"}

        monkeypatch.setattr(intake.app[WATCHER], "_read_items", counted)
        started = time.monotonic()
        await intake.pool.execute("UPDATE mint_requests SET status = 'batched' WHERE id = $1::uuid", queue_id)
        batched = await asyncio.gather(*(next_event(stream) for stream in streams))
        assert {state["status"] for _, state in batched} == {"batched"}
        # Forty streams, one watcher: one read per poll interval (1 s) for all of them.
        assert reads <= (time.monotonic() - started) / intake.settings.live_poll_seconds + 2 < len(streams)

        await intake.pool.execute(
            "UPDATE mint_requests SET status = 'failed', error_message = 'test: refused' WHERE id = $1::uuid",
            queue_id,
        )
        for stream in streams:
            async with asyncio.timeout(5):
                rest = [state async for _, state in stream]
            assert [(state["status"], state["error"]) for state in rest] == [("failed", "test: refused")]
        for response in responses:
            response.close()
    await wait_until(lambda: intake.app[WATCHER].streams == 0)


async def test_shutdown_ends_open_streams_at_once(
    settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, fund_payers
) -> None:
    (payer,) = fund_payers(1)
    async with running_intake(settings_env, monkeypatch) as intake:
        _, body = await intake.gasless(intake.payment(payer))
        async with aiohttp.ClientSession() as session:
            item = await session.get(f"{intake.url}events/item/{body['queueId']}")
            queue = await session.get(f"{intake.url}events/queue")
            item_events, queue_events = sse_events(item), sse_events(queue)
            await next_event(item_events)
            await next_event(queue_events)

            # aiohttp waits up to its shutdown timeout (60 s here) for handlers still running.
            started = time.monotonic()
            await intake.client.close()
            assert time.monotonic() - started < 5
            for events in (item_events, queue_events):
                async with asyncio.timeout(2):
                    assert [event async for event in events] == []


async def wait_until(condition: Callable[[], bool], timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)
