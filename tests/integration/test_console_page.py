"""The operator console in headless Chromium against the running system: intake, batcher, confirmer
and the console itself as processes, as `make run` starts them. A failed request appears on the page
live, is retried from it and completes on chain; a setting changed on the page reaches a running
batcher; a payer is given a priority lane and cleared again; without credentials the browser gets a
401 and nothing else; every action leaves its audit row. A screenshot of each view goes to test-artifacts/."""

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from eth_utils import to_checksum_address
from playwright.async_api import Browser, Page, async_playwright
from web3 import HTTPProvider, Web3

from services.renderer.gif import render_gif
from shared.deploy import load_artifact
from shared.render_settings import RenderSettings
from tests.integration.test_batcher_confirmer import enqueue, logged
from tests.integration.test_status_page import submit_mint
from tests.support.browser import ARTIFACTS, CHROMIUM_ARGS
from tests.support.console import OPERATOR, ConsoleProcess, console_process, started
from tests.support.rows import insert_job, insert_request

VIEWPORT = {"width": 1280, "height": 1000}


@pytest.fixture
async def browser(chromium: Path) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


async def operator_page(browser: Browser, console: ConsoleProcess, errors: list[str]) -> Page:
    """A page logged in as OPERATOR (HTTP basic: the browser answers the console's challenge)."""
    context = await browser.new_context(
        viewport=VIEWPORT, http_credentials={"username": OPERATOR, "password": console.token}
    )
    page = await context.new_page()
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    return page


async def view(page: Page, name: str) -> None:
    await page.click(f"nav a[data-view='{name}']")
    await page.wait_for_selector(f"#view-{name}:not([hidden])")


async def confirm(page: Page, expected: str) -> str:
    """Confirm the open dialog once it shows `expected`; what it said."""
    dialog = page.locator("#confirm")
    await dialog.wait_for(state="visible")
    await page.wait_for_function(
        "(expected) => document.getElementById('confirm').textContent.includes(expected)", arg=expected
    )
    said = await dialog.text_content() or ""
    await page.click("#confirm-ok")
    await dialog.wait_for(state="hidden")
    return said


async def wait_status(pool: Any, queue_id: str, status: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while await pool.fetchval("SELECT status FROM mint_requests WHERE id = $1::uuid", queue_id) != status:
        assert time.monotonic() < deadline, f"{queue_id} never became {status}"
        await asyncio.sleep(0.2)


@pytest.fixture
async def gateway() -> AsyncIterator[Any]:
    """An IPFS gateway serving one GIF (the renderer's own GIF code drew it)."""
    drawn = RenderSettings(name="Console", palette="neon", shape="star", seed=3, frames=4, size=64)
    image = render_gif(drawn)

    async def serve(_: web.Request) -> web.Response:
        return web.Response(body=image, content_type="image/gif")

    app = web.Application()
    app.router.add_get("/ipfs/{cid}", serve)
    server = TestServer(app)
    await server.start_server()
    server.image_url = str(server.make_url("/ipfs/bafyconsole"))  # type: ignore[attr-defined]
    try:
        yield server
    finally:
        await server.close()


async def test_a_failed_request_appears_is_retried_from_the_page_and_completes_on_chain(
    browser: Browser,
    intake_url,
    services,
    settings_env,
    pg_pool,
    deployment,
    fund_payers,
    anvil,
    tmp_path,
    gateway,
) -> None:
    url = await intake_url()
    (payer,) = fund_payers(1)
    queue_id = await submit_mint(url, payer, deployment)
    errors: list[str] = []

    with console_process(settings_env, tmp_path) as process:
        console = await started(process)
        page = await operator_page(browser, console, errors)
        await page.goto(f"{console.url}/#overview")
        await page.wait_for_function("() => document.getElementById('connection').textContent === 'on'")
        await page.wait_for_function("() => document.getElementById('queue-depth').textContent === '1'")

        await view(page, "requests")
        await page.select_option("#request-status", "failed")
        await page.click("#request-search button[type=submit]")
        await page.wait_for_selector("#requests td.empty")
        # No batcher ran: the request fails as the confirmer fails one whose retries ran out.
        await pg_pool.execute(
            "UPDATE mint_requests SET status = 'failed', error_message = 'test: no receipt after 3 attempts',"
            " processed_at = now() WHERE id = $1::uuid",
            queue_id,
        )
        row = page.locator(f"#requests tr[data-id='{queue_id}']")
        await row.wait_for(timeout=15_000)  # live: the overview stream's change re-reads the list
        assert "test: no receipt after 3 attempts" in (await row.text_content() or "")
        await row.click()
        await page.wait_for_selector("#request-history li[data-change='failed']")
        await page.screenshot(path=ARTIFACTS / "console-requests.png", full_page=True)

        await view(page, "overview")
        await page.wait_for_function("() => document.getElementById('failed-total').textContent === '1'")
        await page.screenshot(path=ARTIFACTS / "console-overview.png", full_page=True)
        await page.click("#action-retry")
        said = await confirm(page, "Would change: 1 request(s)")
        assert queue_id in said  # the dry run's report lists it
        notice = "() => document.getElementById('notice').textContent"
        await page.wait_for_function(f"{notice}.includes('Retry failed requests: 1 request(s)')")
        assert (
            await pg_pool.fetchval("SELECT status FROM mint_requests WHERE id = $1::uuid", queue_id)
            == "pending"
        )

        services("batcher")
        services("confirmer")
        await wait_status(pg_pool, queue_id, "completed")
        await view(page, "requests")
        await page.select_option("#request-status", "")
        await page.fill("#request-q", queue_id)
        await page.click("#request-search button[type=submit]")
        await row.locator("[data-status='completed']").wait_for(timeout=15_000)
        await row.click()
        await page.wait_for_selector("#request-history li[data-change='completed']")
        statuses = await page.locator("#request-history li").evaluate_all(
            "items => items.map(i => i.dataset.change)"
        )
        assert statuses[:3] == ["pending", "failed", "pending"] and statuses[-1] == "completed"

        batch_id = await pg_pool.fetchval("SELECT batch_id FROM mint_requests WHERE id = $1::uuid", queue_id)
        await view(page, "batches")
        batch_row = page.locator(f"#batches tr[data-batch-id='{batch_id}']")
        await batch_row.wait_for()
        await batch_row.click()
        await page.wait_for_selector("#batch-detail:not([hidden])")
        assert queue_id in (await page.text_content("#batch-detail") or "")
        await page.screenshot(path=ARTIFACTS / "console-batches.png", full_page=True)

        # A render job pinned to a gateway: the page shows its image, which the console fetched from it.
        nft = await insert_request(pg_pool, "rendering", kind="nft")
        await insert_job(pg_pool, nft, "active", progress=66, attempts=1, image_url=gateway.image_url)
        await view(page, "renders")
        image = page.locator(f"#renders tr[data-job-id='{nft}'] img.preview")
        await image.wait_for()
        await page.wait_for_function(
            "(img) => img.complete && img.naturalWidth > 0", arg=await image.element_handle()
        )
        assert await page.locator(f"#renders tr[data-job-id='{nft}'] progress").get_attribute("value") == "66"
        await page.screenshot(path=ARTIFACTS / "console-renders.png", full_page=True)

        await view(page, "audit")
        await page.wait_for_selector("#audit tr[data-action='retry-failed']")
        await page.screenshot(path=ARTIFACTS / "console-audit.png", full_page=True)

    # On chain: the payer holds the mint the retry made.
    w3 = Web3(HTTPProvider(anvil.rpc_url))
    token = w3.eth.contract(address=deployment.token, abi=load_artifact("MintToken")["abi"])
    assert token.functions.balanceOf(payer.address).call() == deployment.mint_amount
    audit = await pg_pool.fetch("SELECT * FROM admin_audit")
    assert [(r["actor"], r["source"], r["action"], r["outcome"]) for r in audit] == [
        (OPERATOR, "console", "retry-failed", "done")
    ]
    assert audit[0]["result"]["toPending"] == [queue_id]
    assert errors == []
    assert "Traceback" not in process.log_path.read_text(), process.log_tail()


async def test_a_setting_changed_on_the_page_reaches_the_running_batcher(
    browser: Browser, services, settings_env, pg_pool, redis_client, deployment, fund_payers, tmp_path
) -> None:
    tuning = {"BATCHER_BATCH_SIZE": "100", "BATCHER_BATCH_WINDOW_SECONDS": "1"}
    batcher = services("batcher", BATCHER_SETTINGS_REFRESH_SECONDS="0.2", **tuning)
    services("confirmer")
    await logged(batcher, "this batcher is active")
    errors: list[str] = []

    # The console shares the services' environment, as under `make run`: it shows their configured values.
    with console_process({**settings_env, **tuning}, tmp_path) as process:
        console = await started(process)
        page = await operator_page(browser, console, errors)
        await page.goto(f"{console.url}/#settings")
        setting = page.locator("#settings tr[data-key='batch_size']")
        await setting.wait_for()
        await setting.locator("input").fill("2")
        await setting.locator("button", has_text="Set").click()
        said = await confirm(page, "Set batch_size from 100 to 2?")
        assert "applies it on its next cycle" in said
        await page.wait_for_function(
            "() => document.getElementById('notice').textContent === 'batch_size = 2.'"
        )
        await page.wait_for_function(
            "() => document.querySelector(\"#settings tr[data-key='batch_size']\").textContent.includes('2')"
        )
        await page.screenshot(path=ARTIFACTS / "console-settings.png", full_page=True)

        await asyncio.sleep(1)  # a few refresh cycles of the batcher
        payers = fund_payers(6)
        ids = await enqueue(pg_pool, redis_client, settings_env["MINTLINE_NAMESPACE"], deployment, payers)
        deadline = time.monotonic() + 60
        while await pg_pool.fetchval(
            "SELECT count(*) FROM mint_requests WHERE id = ANY($1::uuid[]) AND status = 'completed'", ids
        ) < len(ids):
            assert time.monotonic() < deadline, batcher.log_tail()
            await asyncio.sleep(0.2)

    sizes = [r["n"] for r in await pg_pool.fetch("SELECT cardinality(request_ids) AS n FROM batches")]
    assert sizes == [2, 2, 2]
    (audit,) = await pg_pool.fetch("SELECT * FROM admin_audit")
    assert (audit["actor"], audit["action"], audit["params"]) == (
        OPERATOR,
        "settings-set",
        {"key": "batch_size", "value": "2"},
    )
    assert audit["result"]["previous"] is None and audit["outcome"] == "done"
    assert errors == []


async def test_without_credentials_the_browser_gets_401_and_nothing_else(
    browser: Browser, settings_env, tmp_path
) -> None:
    with console_process(settings_env, tmp_path) as process:
        console = await started(process)
        # A browser without credentials, and one with wrong ones (Chromium would cancel its own
        # prompt on navigation, so the page's request context asks).
        anonymous = await browser.new_context(viewport=VIEWPORT)
        wrong = await browser.new_context(
            http_credentials={"username": OPERATOR, "password": "wrong-" + "x" * 20}
        )
        for context in (anonymous, wrong):
            for path in ("/", "/events/overview", "/api/requests?status=failed"):
                response = await context.request.get(f"{console.url}{path}")
                assert response.status == 401, path
                assert response.headers["www-authenticate"].startswith("Basic")
                assert (await response.json())["error"] == "unauthorized"
        async with aiohttp.ClientSession() as session:
            for path in ("/", "/events/overview", "/openapi.json", "/api/overview", "/static/console.js"):
                async with session.get(f"{console.url}{path}") as answer:
                    assert answer.status == 401, path
                    assert (await answer.json())["error"] == "unauthorized"
        log = process.log_path.read_text()
    assert console.token not in log


async def test_a_payer_given_a_lane_on_the_page_and_cleared_again(
    browser: Browser, settings_env, pg_pool, tmp_path
) -> None:
    payer = "0x" + "ef" * 20
    checksummed = to_checksum_address(payer)
    await insert_request(pg_pool, "pending")
    errors: list[str] = []
    with console_process(settings_env, tmp_path) as process:
        console = await started(process)
        page = await operator_page(browser, console, errors)
        await page.goto(f"{console.url}/#priorities")
        await page.wait_for_selector("#lanes tr[data-lane='0']")
        await page.fill("#priority-payer", payer)
        await page.select_option("#priority-lane", "6")
        await page.fill("#priority-note", "launch partner")
        await page.click("#priority-set")
        said = await confirm(page, f"Put {payer} in lane 6?")
        assert "go before those of lower lanes" in said
        row = page.locator(f"#priorities tr[data-payer='{checksummed}']")
        await row.wait_for()
        assert "launch partner" in (await row.text_content() or "")
        await page.wait_for_function("() => document.getElementById('notice').textContent.includes('lane 6')")
        await page.screenshot(path=ARTIFACTS / "console-priorities.png", full_page=True)
        assert await pg_pool.fetchval("SELECT lane FROM payer_priorities") == 6

        await row.locator("button", has_text="Clear").click()
        await confirm(page, f"Clear the lane of {checksummed} (lane 6)?")
        await row.wait_for(state="detached")
        await page.wait_for_selector("#priorities td.empty")
    assert await pg_pool.fetchval("SELECT count(*) FROM payer_priorities") == 0
    audit = await pg_pool.fetch("SELECT actor, source, action, outcome FROM admin_audit ORDER BY id")
    assert [tuple(r) for r in audit] == [
        (OPERATOR, "console", "priority-set", "done"),
        (OPERATOR, "console", "priority-clear", "done"),
    ]
    assert errors == []
