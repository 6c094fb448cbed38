"""The operator console's JSON routes (admin/console/), in-process against real PostgreSQL, Redis and
anvil: credentials on every route, the views, the actions (the CLI's own functions, audited), bad
input, forged actions, the render preview from a gateway. The page in a browser is in
test_console_page.py."""

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from eth_utils import to_checksum_address
from jsonschema import Draft202012Validator
from redis.asyncio import Redis

from devstack.ports import free_port
from shared import keys
from shared.events import FIELD, TxSent, decode, encode
from shared.keys import Keys
from shared.streams import ensure_group
from tests.integration.test_status_page import next_event, sse_events
from tests.support.console import OPERATOR, REPO, Console, basic, running_console
from tests.support.proxy import TcpProxy
from tests.support.rows import WALLET, insert_batch, insert_job, insert_request


@pytest.fixture
async def console(settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch):
    async with running_console(settings_env, monkeypatch) as running:
        yield running


UNAUTHORIZED = "credentials required: HTTP basic (your operator name and token) or a bearer token"


def concrete(path: str) -> str:
    """A route's path with its parameters filled in."""
    return (
        path.replace("{id}", str(uuid.uuid4()) if "requests" in path or "renders" in path else "1")
        .replace("{key}", "batch_size")
        .replace("{payer}", "0x" + "ab" * 20)
        .replace("{filename}", "console.js")
    )


# --- credentials --------------------------------------------------------------------------------------


async def test_every_route_but_health_refuses_a_request_without_credentials(console: Console) -> None:
    routes = {(route.method, route.resource.canonical) for route in console.app.router.routes()}  # type: ignore[union-attr]
    assert ("GET", "/events/overview") in routes and ("GET", "/openapi.json") in routes
    wrong = [
        {},
        basic(OPERATOR, console.token[:-1] + "x"),
        basic("", console.token),
        basic("bad name", console.token),
        {"Authorization": f"Bearer {console.token}x"},
        {"Authorization": f"Token {console.token}"},
        {"Authorization": "Basic !!!"},
    ]
    for method, path in sorted(routes):
        if method == "HEAD":
            continue
        for headers in wrong:
            body = {} if method in ("POST", "PUT") else None
            async with console.client.request(method, concrete(path), headers=headers, json=body) as response:
                text = await response.text()
                if path == "/health":
                    assert (response.status, json.loads(text)) == (200, {"status": "ok"})
                    continue
                assert response.status == 401, (method, path, headers, text)
                assert response.headers["WWW-Authenticate"].startswith('Basic realm="mintline console"')
                assert json.loads(text) == {
                    "success": False,
                    "error": "unauthorized",
                    "message": UNAUTHORIZED,
                }
                assert console.token not in text
    # An unknown path says nothing either.
    async with console.client.get("/api/nothing-here") as response:
        assert response.status == 401
    # Nothing was done.
    assert await console.pool.fetchval("SELECT count(*) FROM admin_audit") == 0


async def test_basic_and_bearer_credentials_both_work(console: Console) -> None:
    status, body = await console.get("/api/overview")
    assert status == 200 and body["queue"]["queueDepth"] == 0
    status, body = await console.get("/api/overview", headers={"Authorization": f"Bearer {console.token}"})
    assert status == 200
    async with console.client.get("/", headers=console.auth) as response:
        assert response.status == 200 and response.content_type == "text/html"
        page = await response.text()
        assert "Content-Security-Policy" in response.headers
    assert "http://" not in page and "https://" not in page
    for asset in ("common.js", "views.js", "actions.js", "console.js", "console.css", "status.css"):
        async with console.client.get(f"/static/{asset}", headers=console.auth) as response:
            assert response.status == 200, asset
    status, body = await console.get("/static/../settings.py")
    assert status == 404


def test_the_console_does_not_start_without_credentials(settings_env: dict[str, str]) -> None:
    base = {k: v for k, v in os.environ.items() if not k.startswith("CONSOLE_")}
    env = {**base, **settings_env, "CONSOLE_PORT": str(free_port())}
    # compose passes unset variables on empty: still no credentials.
    for unset in ({}, {"CONSOLE_TOKEN": "", "CONSOLE_OPERATORS": "", "CONSOLE_OPERATORS_FILE": ""}):
        missing = subprocess.run(
            [sys.executable, "-m", "admin.console"],
            cwd=REPO,
            env={**env, **unset},
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert missing.returncode == 2
        assert (
            "console: refusing to start: no credentials: set CONSOLE_OPERATORS_FILE (entries from "
            "`mintline console-token NAME`), or CONSOLE_TOKEN; the console never runs open" in missing.stderr
        )
    short = subprocess.run(
        [sys.executable, "-m", "admin.console"],
        cwd=REPO,
        env={**env, "CONSOLE_TOKEN": "short-s3cret"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert short.returncode == 2
    assert "CONSOLE_TOKEN: must be at least 16 characters" in short.stderr
    assert "short-s3cret" not in short.stderr + short.stdout


def ago(seconds: float) -> datetime:
    return datetime.now(UTC) - timedelta(seconds=seconds)


async def status_of(pool: Any, request_id: str) -> str:
    return await pool.fetchval("SELECT status FROM mint_requests WHERE id = $1::uuid", request_id)


# --- answers as described -----------------------------------------------------------------------------


async def described(console: Console, operation_id: str, status: int, body: Any) -> None:
    """`body` is what /openapi.json describes for the operation's answer with `status`."""
    _, spec = await console.get("/openapi.json")
    for methods in spec["paths"].values():
        for operation in methods.values():
            if operation["operationId"] == operation_id:
                content = operation["responses"][str(status)]["content"]["application/json"]
                Draft202012Validator({**content["schema"], "components": spec["components"]}).validate(body)
                return
    raise AssertionError(f"no operation {operation_id}")


# --- actions ------------------------------------------------------------------------------------------


async def test_actions_do_what_the_cli_does_and_are_audited_as_the_operator(
    console: Console, redis_client: Redis, settings_env: dict[str, str]
) -> None:
    pool, names = console.pool, Keys(settings_env["MINTLINE_NAMESPACE"])
    failed = await insert_request(pool, "failed", error_message="no receipt")
    expired = await insert_request(pool, "failed", valid_before=int(time.time()) + 5, error_message="x")

    status, preview = await console.act("/api/actions/retry-failed", {"dryRun": True})
    assert status == 200, preview
    assert (preview["dryRun"], preview["retried"], preview["toPending"]) == (True, 1, [failed])
    assert [skip["id"] for skip in preview["skipped"]] == [expired]
    assert await status_of(pool, failed) == "failed"
    assert await pool.fetchval("SELECT count(*) FROM admin_audit") == 0

    status, done = await console.act("/api/actions/retry-failed", {})
    assert status == 200 and done["retried"] == 1
    await described(console, "retryFailed", 200, done)
    assert await status_of(pool, failed) == "pending"
    entries = await redis_client.xrange(names.stream(keys.MINT_REQUESTED))
    assert [decode(fields[FIELD]).request_id for _, fields in entries] == [failed]  # type: ignore[union-attr]

    stuck = await insert_request(pool, "batched", updated_at=ago(3600), published_at=ago(3600))
    batch = await insert_batch(pool, 1, "reverted", [stuck])
    await pool.execute(
        "UPDATE mint_requests SET updated_at = now() - interval '1 hour' WHERE id = $1::uuid", stuck
    )
    status, done = await console.act("/api/actions/reset-stuck", {"olderThanSeconds": 600})
    assert status == 200 and done["requeued"] == [{"id": stuck, "reason": f"batch {batch} reverted"}]
    await described(console, "resetStuck", 200, done)
    assert await status_of(pool, stuck) == "pending"

    status, done = await console.act("/api/actions/replay-streams")
    assert status == 200 and done == {"requests": 2, "outcomes": 0}

    dead = names.dead(keys.TX_SENT)
    await redis_client.xadd(
        dead, {FIELD: encode(TxSent(batch_id=1, nonce=0, tx_hash="0x1")), b"reason": b"x"}
    )
    status, done = await console.act("/api/actions/requeue-dead", {"stream": keys.TX_SENT})
    assert status == 200 and done["requeued"] == {keys.TX_SENT: 1}
    await described(console, "requeueDead", 200, done)
    assert (await redis_client.xlen(dead), await redis_client.xlen(names.stream(keys.TX_SENT))) == (0, 1)

    status, done = await console.act("/api/settings/batch_size", {"value": 25}, method="PUT")
    assert status == 200 and done == {
        "key": "batch_size",
        "value": "25",
        "previous": None,
        "service": "batcher",
    }
    assert await pool.fetchval("SELECT value FROM system_settings WHERE key = 'batch_size'") == "25"
    status, listed = await console.get("/api/settings")
    (row,) = [entry for entry in listed["settings"] if entry["key"] == "batch_size"]
    assert (row["override"], row["effective"], row["configured"]) == ("25", 25, 300)
    status, done = await console.act("/api/settings/batch_size", {"value": None}, method="PUT")
    assert status == 200 and done["previous"] == "25" and done["value"] is None
    assert await pool.fetchval("SELECT count(*) FROM system_settings") == 0

    status, audit = await console.get("/api/audit")
    assert status == 200
    await described(console, "listAudit", 200, audit)
    rows = list(reversed(audit["items"]))
    assert [row["action"] for row in rows] == [
        "retry-failed",
        "reset-stuck",
        "replay-streams",
        "requeue-dead",
        "settings-set",
        "settings-unset",
    ]
    assert {(row["actor"], row["source"], row["client"], row["outcome"]) for row in rows} == {
        (OPERATOR, "console", "127.0.0.1", "done")
    }
    assert rows[0]["result"]["toPending"] == [failed]
    # The shared token as a bearer token names no operator: the audit says so.
    bearer = {"Authorization": f"Bearer {console.token}"}
    status, _ = await console.act("/api/actions/replay-streams", headers=bearer)
    assert status == 200
    assert await pool.fetchval("SELECT actor FROM admin_audit ORDER BY id DESC LIMIT 1") == "bearer"


async def test_a_failing_action_is_audited_as_failed(
    settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    unreachable = f"redis://127.0.0.1:{free_port()}/0"
    async with running_console(settings_env, monkeypatch, REDIS_URL=unreachable) as console:
        await insert_request(console.pool, "failed")
        status, body = await console.act("/api/actions/retry-failed")
        assert status == 503 and body["error"] == "unavailable"
        row = await console.pool.fetchrow("SELECT actor, outcome, result FROM admin_audit")
    assert (row["actor"], row["outcome"]) == (OPERATOR, "failed")
    assert "ConnectionError" in row["result"]["error"]


async def test_bad_input_gets_a_clear_4xx_and_changes_nothing(console: Console) -> None:
    await insert_request(console.pool, "failed")
    for path, body, code, words in [
        ("/api/actions/retry-failed", {"maxRetries": 0}, "invalid_body", "maxRetries"),
        ("/api/actions/retry-failed", {"since": "yesterday"}, "invalid_body", "neither a duration"),
        ("/api/actions/retry-failed", {"dryrun": True}, "invalid_body", "dryrun: Extra inputs"),
        ("/api/actions/reset-stuck", {"olderThanSeconds": -1}, "invalid_body", "olderThanSeconds"),
        ("/api/actions/requeue-dead", {"stream": "nope"}, "invalid_body", "stream"),
        ("/api/actions/replay-streams", [], "invalid_body", "(body)"),
    ]:
        status, answer = await console.act(path, body)
        assert (status, answer["error"]) == (400, code), (path, answer)
        assert words in answer["message"], answer
        await described(console, "retryFailed", 400, answer)
    for key, value, words in [
        ("batch_size", "0", "invalid value '0' for batch_size"),
        ("batch_size", "abc", "invalid value 'abc' for batch_size"),
        ("nope", "1", "unknown setting 'nope'"),
    ]:
        status, answer = await console.act(f"/api/settings/{key}", {"value": value}, method="PUT")
        assert (status, answer["error"]) == (400, "invalid_input") and words in answer["message"], answer
    status, answer = await console.act("/api/settings/batch_size", {"value": True}, method="PUT")
    assert status == 400 and answer["error"] == "invalid_body"

    auth = console.auth
    async with console.client.post(
        "/api/actions/replay-streams", data="{", headers={**auth, "Content-Type": "application/json"}
    ) as response:
        assert (response.status, (await response.json())["error"]) == (400, "invalid_body")
    # Forged from another site: a form post, another origin, a cross-site fetch.
    async with console.client.post("/api/actions/replay-streams", data={"a": "1"}, headers=auth) as response:
        assert (response.status, (await response.json())["error"]) == (415, "unsupported_media_type")
    for forged in ({"Origin": "http://evil.test"}, {"Sec-Fetch-Site": "cross-site"}):
        status, answer = await console.act("/api/actions/replay-streams", headers=forged)
        assert (status, answer["error"]) == (403, "forbidden"), forged
    for query in ("status=nope", "payer=0x12", "limit=0", "limit=201", "q=hello", "tx=0xzz", "before=-1"):
        status, answer = await console.get(f"/api/requests?{query}")
        assert (status, answer["error"]) == (400, "invalid_query"), query
    for path in (
        "/api/batches?q=hello",
        "/api/renders?before=yesterday",
        "/api/requests/not-a-uuid",
        "/api/batches/x",
    ):
        status, answer = await console.get(path)
        assert status == 400, (path, answer)
    for path in (f"/api/requests/{uuid.uuid4()}", "/api/batches/999", f"/api/renders/{uuid.uuid4()}/image"):
        status, answer = await console.get(path)
        assert (status, answer["error"]) == (404, "not_found"), path

    assert await console.pool.fetchval("SELECT count(*) FROM admin_audit") == 0
    assert await console.pool.fetchval("SELECT count(*) FROM system_settings") == 0
    assert await console.pool.fetchval("SELECT status FROM mint_requests") == "failed"


# --- views --------------------------------------------------------------------------------------------


async def test_requests_and_batches_are_found_by_what_an_operator_knows(console: Console) -> None:
    pool = console.pool
    other_payer = "0x" + "ef" * 20
    mine = [await insert_request(pool, "completed") for _ in range(3)]
    theirs = await insert_request(pool, "failed", payer_address=other_payer, error_message="not paid: x")
    moved = await insert_request(pool, "pending")
    batch = await insert_batch(pool, 4, "confirmed", [*mine, moved])
    first, bumped = "0x" + "11" * 32, "0x" + "22" * 32
    for tx_hash, fee in ((first, 10**9), (bumped, 2 * 10**9)):
        await pool.execute(
            "INSERT INTO batch_transactions"
            " (tx_hash, batch_id, raw_tx, max_fee_per_gas, max_priority_fee_per_gas)"
            " VALUES ($1, $2, '\\x00', $3, 1)",
            tx_hash,
            batch,
            fee,
        )
    await pool.execute(
        "UPDATE batches SET mined_tx_hash = $2, tx_hash = $2, attempts = 2, block_number = 7 WHERE id = $1",
        batch,
        bumped,
    )
    await pool.execute(
        "UPDATE mint_requests SET mint_tx_hash = $2 WHERE id = ANY($1::uuid[])",
        [uuid.UUID(i) for i in mine],
        bumped,
    )
    await pool.execute("UPDATE mint_requests SET batch_id = NULL WHERE id = $1::uuid", moved)

    status, listed = await console.get("/api/requests?status=failed")
    assert status == 200 and [item["id"] for item in listed["items"]] == [theirs]
    await described(console, "listRequests", 200, listed)
    _, listed = await console.get(f"/api/requests?q={other_payer.upper().replace('0X', '0x')}")
    assert [item["id"] for item in listed["items"]] == [theirs]
    _, listed = await console.get(f"/api/requests?q={first}")  # the first attempt's hash finds its entries
    assert sorted(item["id"] for item in listed["items"]) == sorted([*mine, moved])
    _, listed = await console.get(f"/api/requests?q={mine[1]}")
    assert [item["id"] for item in listed["items"]] == [mine[1]]
    _, page = await console.get("/api/requests?limit=2")
    assert len(page["items"]) == 2 and page["nextBefore"] is not None
    _, rest = await console.get(f"/api/requests?limit=2&before={page['nextBefore']}")
    assert {i["id"] for i in page["items"]} | {i["id"] for i in rest["items"]} <= {*mine, theirs, moved}
    assert len(rest["items"]) == 2 and not {i["id"] for i in page["items"]} & {i["id"] for i in rest["items"]}

    status, detail = await console.get(f"/api/requests/{mine[0]}")
    assert status == 200
    await described(console, "getRequest", 200, detail)
    assert [change["status"] for change in detail["history"]] == ["completed"]
    assert [b["id"] for b in detail["batches"]] == [batch]

    status, batches = await console.get(f"/api/batches?q={first}")
    assert status == 200 and [b["id"] for b in batches["items"]] == [batch]
    await described(console, "listBatches", 200, batches)
    _, by_wallet = await console.get(f"/api/batches?q={WALLET}&status=confirmed")
    assert [b["id"] for b in by_wallet["items"]] == [batch]
    status, detail = await console.get(f"/api/batches/{batch}")
    assert status == 200
    await described(console, "getBatch", 200, detail)
    assert [(tx["txHash"], tx["maxFeePerGas"]) for tx in detail["transactions"]] == [
        (first, str(10**9)),
        (bumped, str(2 * 10**9)),
    ]
    outcomes = {entry["id"]: entry for entry in detail["entryOutcomes"]}
    assert [entry["position"] for entry in detail["entryOutcomes"]] == [1, 2, 3, 4]
    assert {outcomes[i]["status"] for i in mine} == {"completed"}
    assert all(outcomes[i]["inThisBatch"] for i in mine)
    assert (outcomes[moved]["status"], outcomes[moved]["inThisBatch"]) == ("pending", False)


async def test_the_overview_counts_each_stage_and_stream_and_the_last_hour(
    console: Console, redis_client: Redis, settings_env: dict[str, str]
) -> None:
    pool, names = console.pool, Keys(settings_env["MINTLINE_NAMESPACE"])
    for _ in range(2):
        await insert_request(pool, "pending")
    await insert_request(pool, "rendering", kind="nft")
    done = [await insert_request(pool, "completed") for _ in range(3)]
    await pool.execute(
        "UPDATE mint_requests SET created_at = now() - interval '30 seconds', processed_at = now()"
        " WHERE id = ANY($1::uuid[])",
        [uuid.UUID(i) for i in done],
    )
    await insert_request(pool, "failed")
    sent = await insert_request(pool, "sent")
    await insert_batch(pool, 0, "sent", [sent])
    stream = names.stream(keys.MINT_REQUESTED)
    await ensure_group(redis_client, stream, keys.BATCHER)
    for _ in range(3):
        await redis_client.xadd(stream, {FIELD: b"x"})
    await redis_client.xadd(names.dead(keys.MINT_REQUESTED), {FIELD: b"x"})

    status, overview = await console.get("/api/overview")

    assert status == 200
    await described(console, "getOverview", 200, overview)
    queue = overview["queue"]
    assert queue["byStatus"]["pending"] == {"token": 2} and queue["byStatus"]["rendering"] == {"nft": 1}
    assert (queue["totals"]["completed"], queue["totals"]["failed"], queue["queueDepth"]) == (3, 1, 4)
    hour = overview["lastHour"]
    assert hour["completed"] == 3 and hour["perMinute"][-1] == 3 and len(hour["perMinute"]) == 60
    assert 29 <= hour["latencySeconds"]["p50"] <= 40
    by_stream = {s["stream"]: s for s in overview["streams"]["streams"]}
    assert (by_stream[keys.MINT_REQUESTED]["length"], by_stream[keys.MINT_REQUESTED]["dead"]) == (3, 1)
    assert by_stream[keys.MINT_REQUESTED]["groups"][0]["lag"] == 3
    ((flight),) = overview["inFlight"]
    assert (flight["wallet"], flight["status"], flight["maxFeePerGas"]) == (WALLET, "sent", "1")
    wallets = {w["wallet"]: w for w in overview["wallets"]["wallets"]}
    assert wallets[WALLET]["balanceWei"] == "0" and wallets[WALLET]["lag"] == 1
    minter = settings_env["BATCHER_PRIVATE_KEY"]
    assert len(wallets) >= 2 and minter not in json.dumps(overview)


async def test_the_live_stream_sends_the_overview_and_each_change(console: Console) -> None:
    async with console.client.get("/events/overview", headers=console.auth) as response:
        assert response.status == 200 and response.headers["Content-Type"] == "text/event-stream"
        events = sse_events(response)
        name, first = await next_event(events, timeout=5)
        assert name == "overview" and first["queue"]["totals"].get("failed", 0) == 0
        await insert_request(console.pool, "failed")
        name, second = await next_event(events, timeout=10)
        assert second["queue"]["totals"]["failed"] == 1
    _, spec = await console.get("/openapi.json")
    data = spec["paths"]["/events/overview"]["get"]["responses"]["200"]["content"]["text/event-stream"]
    for state in (first, second):
        Draft202012Validator({**data["x-event-data"], "components": spec["components"]}).validate(state)


# --- render previews ----------------------------------------------------------------------------------

# A 1x1 GIF.
GIF = bytes.fromhex(
    "4749463839610100010080000000000000ffffff21f90401000000002c00000000010001000002024401003b"
)


async def test_a_render_preview_comes_from_the_gateway(console: Console) -> None:
    gateway = web.Application()

    async def image(request: web.Request) -> web.Response:
        if request.match_info["cid"] == "missing":
            raise web.HTTPNotFound()
        return web.Response(body=GIF, content_type="image/gif")

    gateway.router.add_get("/ipfs/{cid}", image)
    server = TestServer(gateway)
    await server.start_server()
    try:
        pinned = await insert_request(console.pool, "pending", kind="nft", token_uri="ipfs://m")
        await insert_job(
            console.pool,
            pinned,
            "completed",
            progress=100,
            attempts=1,
            image_cid="bafy1",
            image_url=str(server.make_url("/ipfs/bafy1")),
        )
        lost = await insert_request(console.pool, "rendering", kind="nft")
        await insert_job(
            console.pool, lost, "active", progress=66, image_url=str(server.make_url("/ipfs/missing"))
        )
        waiting = await insert_request(console.pool, "rendering", kind="nft")
        await insert_job(console.pool, waiting, "waiting")

        status, jobs = await console.get("/api/renders")
        assert status == 200
        await described(console, "listRenderJobs", 200, jobs)
        previews = {job["requestId"]: job["preview"] for job in jobs["items"]}
        assert previews == {
            pinned: f"/api/renders/{pinned}/image",
            lost: f"/api/renders/{lost}/image",
            waiting: None,
        }
        async with console.client.get(previews[pinned], headers=console.auth) as response:
            assert (response.status, response.content_type, await response.read()) == (200, "image/gif", GIF)
        status, answer = await console.get(f"/api/renders/{lost}/image")
        assert (status, answer["error"]) == (502, "gateway_error")
        status, answer = await console.get(f"/api/renders/{waiting}/image")
        assert status == 404
        _, active = await console.get("/api/renders?status=active")
        assert [(j["requestId"], j["progress"]) for j in active["items"]] == [(lost, 66)]
    finally:
        await server.close()
    status, answer = await console.get(f"/api/renders/{pinned}/image")
    assert (status, answer["error"]) == (502, "gateway_unavailable")


async def test_postgresql_going_away_is_said_and_survived(
    settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    database = urlsplit(settings_env["DATABASE_URL"])
    proxy = TcpProxy(database.port or 5432)
    await proxy.restore()
    netloc = database.netloc.replace(f":{database.port}", f":{proxy.port}")
    through_proxy = urlunsplit(database._replace(netloc=netloc))
    try:
        async with running_console(settings_env, monkeypatch, DATABASE_URL=through_proxy) as console:
            async with console.client.get("/events/overview", headers=console.auth) as response:
                events = sse_events(response)
                assert (await next_event(events))[0] == "overview"
                await proxy.cut()
                name, data = await next_event(events, timeout=15)
                assert name == "unavailable" and data["message"].startswith("PostgreSQL")
                status, answer = await console.get("/api/overview")
                assert (status, answer["error"]) == (503, "unavailable")
                status, answer = await console.act("/api/actions/replay-streams")
                assert (status, answer["error"]) == (503, "unavailable")
                await proxy.restore()
                async with asyncio.timeout(20):
                    while (await anext(events))[0] != "overview":
                        pass
            status, _ = await console.get("/api/overview")
            assert status == 200
    finally:
        await proxy.cut()


# --- priority lanes -----------------------------------------------------------------------------------


async def test_payer_priorities_are_set_and_cleared_as_the_operator_and_audited(console: Console) -> None:
    pool = console.pool
    spelled = "0x" + "cd" * 20
    payer = to_checksum_address(spelled)
    for headers in ({}, basic(OPERATOR, "wrong-" + "x" * 20)):
        async with console.client.put(
            f"/api/priorities/{payer}", json={"lane": 3}, headers=headers
        ) as response:
            assert response.status == 401
        async with console.client.get("/api/priorities", headers=headers) as response:
            assert response.status == 401 and payer not in await response.text()
    assert await pool.fetchval("SELECT count(*) FROM payer_priorities") == 0

    status, done = await console.act(
        f"/api/priorities/{spelled}", {"lane": 4, "note": "partner"}, method="PUT"
    )
    assert status == 200 and done == {"payer": payer, "lane": 4, "previous": None}, done
    await described(console, "putPriority", 200, done)
    queued = await insert_request(pool, "pending", payer_address=payer, lane=4)
    await insert_request(pool, "pending")
    status, listed = await console.get("/api/priorities")
    assert status == 200
    await described(console, "listPriorities", 200, listed)
    (entry,) = listed["payers"]
    assert (entry["payerAddress"], entry["lane"], entry["note"], entry["setBy"], entry["source"]) == (
        payer,
        4,
        "partner",
        OPERATOR,
        "console",
    )
    assert listed["lanes"] == [{"lane": 4, "queued": 1}, {"lane": 0, "queued": 1}]
    status, detail = await console.get(f"/api/requests/{queued}")
    assert status == 200 and detail["lane"] == 4

    for spelling, body, code, words in [
        (payer, {"lane": 0}, "invalid_body", "lane"),
        (payer, {"lane": 10}, "invalid_body", "lane"),
        (payer, {"lane": "3"}, "invalid_body", "lane"),
        (payer, {"lane": 3, "note": "x" * 201}, "invalid_body", "note"),
        (payer, {"lane": 3, "why": "x"}, "invalid_body", "why: Extra inputs"),
        (payer, {"lane": 3, "note": "a\u0000b"}, "invalid_input", "note must be printable text"),
        (payer, {}, "invalid_body", "lane: Field required"),
        ("0x12", {"lane": 3}, "invalid_input", "payer must be a 0x-prefixed 20-byte hex address"),
        ("0x" + "cD" * 20, {"lane": 3}, "invalid_input", "invalid EIP-55 checksum"),
    ]:
        status, answer = await console.act(f"/api/priorities/{spelling}", body, method="PUT")
        assert (status, answer["error"]) == (400, code) and words in answer["message"], (body, answer)
        await described(console, "putPriority", 400, answer)
    assert await pool.fetchval("SELECT lane FROM payer_priorities") == 4

    status, done = await console.act(f"/api/priorities/{payer}", {"lane": None}, method="PUT")
    assert status == 200 and done == {"payer": payer, "lane": None, "previous": 4}
    assert await pool.fetchval("SELECT count(*) FROM payer_priorities") == 0

    rows = await pool.fetch(
        "SELECT actor, source, client, action, params, outcome FROM admin_audit ORDER BY id"
    )
    assert [(r["action"], r["actor"], r["source"], r["client"], r["outcome"]) for r in rows] == [
        ("priority-set", OPERATOR, "console", "127.0.0.1", "done"),
        ("priority-clear", OPERATOR, "console", "127.0.0.1", "done"),
    ]
    assert rows[0]["params"] == {"payer": payer, "lane": 4, "note": "partner"}
