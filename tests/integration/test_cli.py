"""The admin CLI (`mintline`, admin/cli.py) against real PostgreSQL and Redis.

Most tests call `main([...])` in-process (in a worker thread: it runs its own event loop) and read
what it printed; one runs `python -m admin status` as a process, as an operator would.
"""

import asyncio
import getpass
import json
import os
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from eth_utils import to_checksum_address
from redis.asyncio import Redis

from admin.cli import main
from devstack.anvil import Anvil
from devstack.ports import free_port
from devstack.redis_server import RedisServer
from services.confirmer.settings import TUNABLE, ConfirmerSettings
from services.intake.payments import payment_id as authorization_payment_id
from shared import keys
from shared.events import FIELD, MintRequested, decode, encode
from shared.keys import Keys
from shared.overrides import with_overrides
from shared.streams import ensure_group
from tests.support.rows import PAYER, WALLET, insert_batch, insert_job, insert_request

REPO = Path(__file__).resolve().parents[2]

Cli = Callable[..., Awaitable[tuple[int, str, str]]]


@pytest.fixture
def cli_env(
    database: str, redis_server: RedisServer, anvil: Anvil, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """Connection settings only (no contracts deployed: the CLI does not need them)."""
    values = {
        "DATABASE_URL": database,
        "REDIS_URL": redis_server.url,
        "RPC_URL": anvil.rpc_url,
        "DEPLOYMENT_FILE": str(tmp_path / "no-deployment.json"),
        "MINTLINE_NAMESPACE": f"t{uuid.uuid4().hex[:12]}",
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    for key in list(os.environ):
        if key.startswith(("BATCHER_", "CONFIRMER_")):
            monkeypatch.delenv(key)
    return values


@pytest.fixture
def names(cli_env: dict[str, str]) -> Keys:
    return Keys(cli_env["MINTLINE_NAMESPACE"])


@pytest.fixture
def cli(cli_env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> Cli:
    async def run(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = await asyncio.to_thread(main, list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return run


def ago(seconds: float) -> datetime:
    return datetime.now(UTC) - timedelta(seconds=seconds)


async def stream_ids(redis: Redis, names: Keys, stream: str) -> list[str]:
    entries = await redis.xrange(names.stream(stream))
    return [decode(fields[FIELD]).request_id for _, fields in entries]  # type: ignore[union-attr]


async def history(pool: asyncpg.Pool, request_id: str) -> list[tuple[str, str | None]]:
    rows = await pool.fetch(
        "SELECT status, reason FROM mint_request_history WHERE request_id = $1 ORDER BY id",
        uuid.UUID(request_id),
    )
    return [(row["status"], row["reason"]) for row in rows]


async def status_of(pool: asyncpg.Pool, request_id: str) -> str:
    return await pool.fetchval("SELECT status FROM mint_requests WHERE id = $1", uuid.UUID(request_id))


# --- status -----------------------------------------------------------------------------------------


async def test_status_reports_what_the_database_and_redis_hold(
    cli: Cli, pg_pool, redis_client, names
) -> None:
    for _ in range(3):
        await insert_request(pg_pool, "pending")
    await pg_pool.execute("UPDATE mint_requests SET created_at = now() - interval '5 minutes'")
    nft = await insert_request(pg_pool, "rendering", kind="nft")
    await insert_job(pg_pool, nft, "active", lease_until=ago(60))
    for _ in range(2):
        await insert_request(pg_pool, "failed", error_message="boom")
    await insert_request(pg_pool, "completed")
    signed = [await insert_request(pg_pool, "batched") for _ in range(2)]
    sent = [await insert_request(pg_pool, "sent")]
    await insert_batch(pg_pool, 7, "signed", signed)
    await insert_batch(pg_pool, 8, "sent", sent)
    await insert_batch(pg_pool, 6, "confirmed", [])
    stream = names.stream(keys.MINT_REQUESTED)
    await ensure_group(redis_client, stream, keys.BATCHER)
    for _ in range(4):
        await redis_client.xadd(stream, {FIELD: b"x"})
    await redis_client.xreadgroup(keys.BATCHER, "b1", {stream: ">"}, count=1)

    code, out, _ = await cli("status", "--json")

    assert code == 0
    report = json.loads(out)
    queue = report["queue"]
    assert queue["counts"] == {
        "pending": {"token": 3},
        "rendering": {"nft": 1},
        "failed": {"token": 2},
        "completed": {"token": 1},
        "batched": {"token": 2},
        "sent": {"token": 1},
    }
    assert queue["total"] == 10
    assert 290 <= queue["oldest_pending_seconds"] <= 400
    assert [(b["nonce"], b["status"], b["entries"]) for b in report["in_flight"]] == [
        (7, "signed", 2),
        (8, "sent", 1),
    ]
    assert all(b["age_seconds"] >= 90 for b in report["in_flight"])
    (wallet,) = report["nonces"]["wallets"]
    assert (wallet["wallet"], wallet["highest_nonce"], wallet["open"]) == (WALLET, 8, 2)
    # A wallet the chain has never seen: none of the 9 stored nonces is mined.
    assert (wallet["chain_latest"], wallet["chain_pending"], wallet["lag"]) == (0, 0, 9)
    by_name = {s["stream"]: s for s in report["streams"]["streams"]}
    assert by_name[keys.MINT_REQUESTED]["length"] == 4
    assert by_name[keys.MINT_REQUESTED]["groups"] == [
        {"group": "batcher", "consumers": 1, "pending": 1, "lag": 3}
    ]
    assert by_name[keys.TX_SENT]["length"] == 0
    assert report["render_jobs"]["active"]["count"] == 1
    assert report["render_jobs"]["active"]["lease_expired"] == 1

    code, text, _ = await cli("status")
    assert code == 0
    assert "Transactions in flight (2)" in text
    assert "Requests (10; oldest pending 5m" in text
    assert "1 active job(s) with an expired lease" in text


def test_status_as_a_process_tolerates_an_unreachable_chain(cli_env: dict[str, str]) -> None:
    env = {**os.environ, **cli_env, "RPC_URL": f"http://127.0.0.1:{free_port()}"}
    done = subprocess.run(
        [sys.executable, "-m", "admin", "status"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "Requests (0; oldest pending -)" in done.stdout
    assert "Streams" in done.stdout and "mint.requested" in done.stdout


async def test_status_says_when_the_chain_or_redis_is_unreachable(cli: Cli, pg_pool, monkeypatch) -> None:
    await insert_batch(pg_pool, 0, "sent", [])
    monkeypatch.setenv("RPC_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("REDIS_URL", f"redis://:s3cret-pw@127.0.0.1:{free_port()}/0")

    code, out, _ = await cli("status")

    assert code == 0
    assert "chain: chain unreachable at http://127.0.0.1:" in out
    assert WALLET in out
    assert "Redis unreachable at redis://:***@127.0.0.1:" in out and "s3cret-pw" not in out


async def test_missing_settings_and_unreachable_servers_exit_with_their_codes(cli: Cli, monkeypatch) -> None:
    monkeypatch.delenv("REDIS_URL")
    code, _, err = await cli("status")
    assert code == 2 and "missing setting: REDIS_URL" in err

    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1")
    monkeypatch.setenv("DATABASE_URL", f"postgresql://admin:s3cret-pw@127.0.0.1:{free_port()}/x")
    code, out, err = await cli("status")
    assert code == 1
    assert "postgresql://admin:***@127.0.0.1" in err and "s3cret-pw" not in err + out

    code, _, err = await cli("no-such-command")
    assert code == 2 and "invalid choice" in err


# --- retry-failed -------------------------------------------------------------------------------------


async def test_retry_failed_requeues_what_can_still_be_paid(cli: Cli, pg_pool, redis_client, names) -> None:
    token = await insert_request(pg_pool, "failed", error_message="no outcome")
    custom = await insert_request(
        pg_pool,
        "failed",
        payment_type="custom",
        authorization_data=None,
        valid_before=None,
        error_message="x",
    )
    settled = await insert_request(pg_pool, "failed", valid_before=int(time.time()) - 5, payment_settled=True)
    expired = await insert_request(pg_pool, "failed", valid_before=int(time.time()) + 30, error_message="x")
    exhausted = await insert_request(pg_pool, "failed", retry_count=3, error_message="x")
    minted_nft = await insert_request(
        pg_pool, "failed", kind="nft", token_uri="ipfs://meta", error_message="x"
    )
    render_failed = await insert_request(pg_pool, "failed", kind="nft", error_message="render failed: oom")
    await insert_job(pg_pool, render_failed, "failed", attempts=3, error="oom", progress=33)
    await redis_client.set(names.render_job(render_failed), "{}")
    untouched = await insert_request(pg_pool, "completed")

    code, out, _ = await cli("retry-failed", "--dry-run")
    assert code == 0 and "would retry 5 failed request(s)" in out
    assert await status_of(pg_pool, token) == "failed"
    assert await stream_ids(redis_client, names, keys.MINT_REQUESTED) == []

    code, out, err = await cli("retry-failed")

    assert code == 0, err
    assert "retried 5 failed request(s)" in out
    assert f"{expired}  authorization expires" in out
    assert "skipped (cannot be retried): 1" in out
    for request_id in (token, custom, settled, minted_nft):
        assert await status_of(pg_pool, request_id) == "pending"
    assert await status_of(pg_pool, render_failed) == "rendering"
    for request_id in (expired, exhausted):
        assert await status_of(pg_pool, request_id) == "failed"
    assert await status_of(pg_pool, untouched) == "completed"
    assert sorted(await stream_ids(redis_client, names, keys.MINT_REQUESTED)) == sorted(
        [token, custom, settled, minted_nft]
    )
    assert await stream_ids(redis_client, names, keys.RENDER_REQUESTED) == [render_failed]
    job = await pg_pool.fetchrow("SELECT * FROM render_jobs WHERE request_id = $1", uuid.UUID(render_failed))
    assert (job["status"], job["attempts"], job["error"], job["progress"]) == ("waiting", 0, None, 33)
    assert await redis_client.get(names.render_job(render_failed)) is None
    assert (
        await pg_pool.fetchval("SELECT retry_count FROM mint_requests WHERE id = $1", uuid.UUID(token)) == 1
    )
    assert await history(pg_pool, token) == [("failed", "no outcome"), ("pending", None)]

    code, out, _ = await cli("retry-failed")
    assert code == 0 and "retried 0 failed request(s)" in out
    assert len(await stream_ids(redis_client, names, keys.MINT_REQUESTED)) == 4

    code, out, _ = await cli("retry-failed", "--max-retries", "5", "--dry-run")
    assert "would retry 1 failed request(s)" in out and exhausted in out


async def test_retry_failed_since_only_takes_recent_failures(cli: Cli, pg_pool) -> None:
    old = await insert_request(pg_pool, "failed", processed_at=ago(7200))
    recent = await insert_request(pg_pool, "failed", processed_at=ago(60))

    code, out, _ = await cli("retry-failed", "--since", "1h")

    assert code == 0 and "retried 1 failed request(s)" in out
    assert (await status_of(pg_pool, old), await status_of(pg_pool, recent)) == ("failed", "pending")
    code, _, err = await cli("retry-failed", "--since", "yesterday")
    assert code == 2 and "neither a duration" in err


# --- reset-stuck --------------------------------------------------------------------------------------


async def test_reset_stuck_repairs_only_what_nothing_else_will(
    cli: Cli, pg_pool, redis_client, names
) -> None:
    old = {"updated_at": ago(3600), "published_at": ago(3600)}
    reverted = await insert_request(pg_pool, "batched", **old)
    reverted_batch = await insert_batch(pg_pool, 1, "reverted", [reverted])
    missing = await insert_request(pg_pool, "sent", batch_id=999, **old)
    in_flight = await insert_request(pg_pool, "sent", **old)
    await insert_batch(pg_pool, 2, "sent", [in_flight])
    recent = await insert_request(pg_pool, "batched")
    await insert_batch(pg_pool, 3, "reverted", [recent])
    await pg_pool.execute(
        "UPDATE mint_requests SET updated_at = now() - interval '1 hour' WHERE id = ANY($1::uuid[])",
        [uuid.UUID(i) for i in (reverted, in_flight)],
    )
    unpublished = await insert_request(pg_pool, "pending", **old)
    published = await insert_request(pg_pool, "pending")
    lapsed = await insert_request(pg_pool, "rendering", kind="nft", **old)
    await insert_job(pg_pool, lapsed, "active", leased_by="dead", lease_until=ago(3000))
    leased = await insert_request(pg_pool, "rendering", kind="nft")
    await insert_job(pg_pool, leased, "active", leased_by="alive", lease_until=ago(10))
    done = await insert_request(pg_pool, "failed", kind="nft", error_message="render failed: x")
    await insert_job(pg_pool, done, "active", leased_by="dead", lease_until=ago(3000))

    code, out, _ = await cli("reset-stuck", "--dry-run")
    assert code == 0 and "-> pending: 2" in out and "-> republished: 2" in out
    assert await status_of(pg_pool, reverted) == "batched"
    assert await stream_ids(redis_client, names, keys.MINT_REQUESTED) == []

    code, out, err = await cli("reset-stuck", "--older-than", "600")

    assert code == 0, err
    assert f"{reverted}  (batch {reverted_batch} reverted)" in out
    assert f"{missing}  (batch 999 missing)" in out
    for request_id in (reverted, missing, unpublished):
        assert await status_of(pg_pool, request_id) == "pending"
    assert await status_of(pg_pool, in_flight) == "sent"
    assert await status_of(pg_pool, recent) == "batched"
    assert await status_of(pg_pool, published) == "pending"
    assert sorted(await stream_ids(redis_client, names, keys.MINT_REQUESTED)) == sorted(
        [reverted, missing, unpublished]
    )
    assert await stream_ids(redis_client, names, keys.RENDER_REQUESTED) == [lapsed]
    jobs = dict(await pg_pool.fetch("SELECT request_id::text, status FROM render_jobs"))
    assert jobs == {lapsed: "waiting", leased: "active", done: "failed"}
    assert (await history(pg_pool, reverted))[-2:] == [
        ("confirmation_failed", f"reset-stuck: batch {reverted_batch} reverted"),
        ("pending", None),
    ]
    assert (
        await pg_pool.fetchval("SELECT batch_id FROM mint_requests WHERE id = $1", uuid.UUID(reverted))
        is None
    )

    code, out, _ = await cli("reset-stuck")
    assert code == 0 and "-> pending: 0" in out and "-> waiting: 0" in out and "-> republished: 0" in out


# --- settings -----------------------------------------------------------------------------------------


async def test_settings_round_trip_and_validation(cli: Cli, pg_pool, cli_env) -> None:
    code, out, _ = await cli("settings", "set", "batch_size", "50")
    assert code == 0 and "batch_size = 50" in out
    code, out, _ = await cli("settings", "set", "max_retries", "5")
    assert code == 0
    tuned = await with_overrides(pg_pool, ConfirmerSettings(), TUNABLE)
    assert tuned.max_retries == 5

    code, out, _ = await cli("settings", "get", "batch_size")
    assert code == 0
    (line,) = [row for row in out.splitlines() if row.startswith("batch_size")]
    assert line.split()[:5] == ["batch_size", "batcher", "50", "300", "50"]
    code, out, _ = await cli("settings", "get")
    assert {"batch_size", "max_retries", "confirmations", "gas_budget"} <= {
        r.split()[0] for r in out.splitlines()
    }

    for key, value, message in [
        ("batch_size", "0", "invalid value '0' for batch_size"),
        ("batch_size", "abc", "invalid value 'abc' for batch_size"),
        ("priority_fee_gwei", "inf", "invalid value 'inf' for priority_fee_gwei"),
        ("expiry_margin_seconds", "5", "unknown setting 'expiry_margin_seconds'"),
    ]:
        code, _, err = await cli("settings", "set", key, value)
        assert code == 2 and message in err, err
    assert await pg_pool.fetchval("SELECT value FROM system_settings WHERE key = 'batch_size'") == "50"
    code, _, err = await cli("settings", "get", "nope")
    assert code == 2 and "unknown setting 'nope'" in err

    code, out, _ = await cli("settings", "unset", "batch_size")
    assert code == 0 and "back to 300 (default)" in out
    code, out, _ = await cli("settings", "unset", "batch_size")
    assert code == 0 and "had no override" in out
    assert await pg_pool.fetchval("SELECT count(*) FROM system_settings") == 1


# --- import-sqlite ------------------------------------------------------------------------------------


def build_sqlite(path: Path, rows: list[tuple[Any, ...]], columns: str) -> None:
    connection = sqlite3.connect(path)
    with connection:
        connection.execute(f"CREATE TABLE processed_payments ({columns})")
        marks = ", ".join("?" * len(rows[0]))
        connection.executemany(f"INSERT INTO processed_payments VALUES ({marks})", rows)
    connection.close()


async def test_import_sqlite_is_idempotent(cli: Cli, pg_pool, tmp_path: Path) -> None:
    rows = []
    for i in range(300):
        processed_at: Any = 1_700_000_000 + i if i % 2 else f"2024-01-02T03:04:{i % 60:02d}Z"
        rows.append((f"0x{i:064x}", PAYER, str(10_000 + i), f"0x{i + 1:064X}", "gasless", processed_at))
    rows += rows[:20]  # listed twice
    path = tmp_path / "old.sqlite"
    build_sqlite(
        path,
        rows,
        "payment_id TEXT, payer TEXT, amount TEXT, mint_tx_hash TEXT, payment_type TEXT, processed_at",
    )
    await insert_request(pg_pool, "pending", payment_id=f"0x{5:064x}")  # already known here

    code, out, err = await cli("import-sqlite", str(path))

    assert code == 0, err
    assert "320 rows read, 299 imported as completed, 21 already present" in out
    assert "import-sqlite: 320/320 (100%)" in err
    imported = await pg_pool.fetch(
        "SELECT * FROM mint_requests WHERE status = 'completed' ORDER BY payment_id"
    )
    assert len(imported) == 299
    first = imported[0]
    assert (first["payment_id"], first["amount"], first["kind"], first["payment_type"]) == (
        f"0x{0:064x}",
        10_000,
        "token",
        "gasless",
    )
    assert first["mint_tx_hash"] == f"0x{1:064x}"
    assert first["processed_at"].isoformat() == "2024-01-02T03:04:00+00:00"
    assert imported[1]["processed_at"].timestamp() == 1_700_000_001
    assert (
        await pg_pool.fetchval(
            "SELECT count(*) FROM mint_request_history h JOIN mint_requests m ON m.id = h.request_id"
            " WHERE m.status = 'completed' AND h.status = 'completed'"
        )
        == 299
    )

    code, out, _ = await cli("import-sqlite", str(path))
    assert code == 0 and "0 imported as completed" in out
    assert await pg_pool.fetchval("SELECT count(*) FROM mint_requests") == 300


async def test_import_sqlite_maps_other_column_names_and_refuses_missing_ones(
    cli: Cli, pg_pool, tmp_path
) -> None:
    nonce = "0x" + "11" * 32
    path = tmp_path / "nonce.sqlite"
    build_sqlite(
        path,
        [(nonce, PAYER.upper().replace("0X", "0x"), 5, 1_700_000_000_000, "eip3009")],
        "nonce TEXT PRIMARY KEY, payer_address TEXT, value INTEGER, created_at INTEGER, type TEXT",
    )

    code, out, err = await cli("import-sqlite", str(path))

    assert code == 0, err
    row = await pg_pool.fetchrow("SELECT * FROM mint_requests")
    assert row["payment_id"] == authorization_payment_id(row["payer_address"], nonce)
    assert (row["payment_type"], row["amount"], row["processed_at"].timestamp()) == (
        "gasless",
        5,
        1_700_000_000,
    )

    bad = tmp_path / "bad.sqlite"
    build_sqlite(bad, [("0x01", "5")], "payment_id TEXT, amount TEXT")
    code, _, err = await cli("import-sqlite", str(bad))
    assert code == 2 and "processed_payments has no column for payer" in err
    code, _, err = await cli("import-sqlite", str(tmp_path / "absent.sqlite"))
    assert code == 2 and "no such file" in err


# --- replay-streams -----------------------------------------------------------------------------------


async def test_replay_streams_republishes_from_postgres(cli: Cli, pg_pool, redis_client, names) -> None:
    pending = [await insert_request(pg_pool, "pending") for _ in range(5)]
    rendering = await insert_request(pg_pool, "rendering", kind="nft")
    completed = await insert_request(
        pg_pool, "completed", callback_url="http://example.test/hook", mint_tx_hash="0x1"
    )
    await insert_request(pg_pool, "completed")  # no callback: nothing to deliver

    code, out, err = await cli("replay-streams")

    assert code == 0, err
    assert "6 requests republished" in out and "1 outcomes republished" in out
    assert "[1/2] mint.requested / render.requested: 5 pending and 1 rendering" in err
    assert sorted(await stream_ids(redis_client, names, keys.MINT_REQUESTED)) == sorted(pending)
    assert await stream_ids(redis_client, names, keys.RENDER_REQUESTED) == [rendering]
    assert await stream_ids(redis_client, names, keys.MINT_COMPLETED) == [completed]


# --- requeue-dead -------------------------------------------------------------------------------------


async def test_requeue_dead_puts_dead_letters_back_and_leaves_undecodable_ones(
    cli: Cli, redis_client, names
) -> None:
    request_id = str(uuid.uuid4())
    dead = names.dead(keys.MINT_REQUESTED)
    event = encode(MintRequested(request_id=request_id))
    await redis_client.xadd(dead, {FIELD: event, b"reason": b"too many deliveries", b"source_id": b"1-0"})
    await redis_client.xadd(dead, {FIELD: b"\xc1 not msgpack", b"reason": b"undecodable"})
    await redis_client.xadd(names.dead(keys.TX_SENT), {b"reason": b"no event field"})

    code, out, _ = await cli("requeue-dead", "--dry-run")
    assert code == 0 and "would requeue 1 dead-lettered entr(ies)" in out
    assert await redis_client.xlen(dead) == 2

    code, out, err = await cli("requeue-dead")

    assert code == 0, err
    assert "requeued 1 dead-lettered entr(ies)" in out and "left dead (undecodable): 2" in out
    assert await stream_ids(redis_client, names, keys.MINT_REQUESTED) == [request_id]
    ((_, fields),) = await redis_client.xrange(names.stream(keys.MINT_REQUESTED))
    assert fields == {FIELD: event}  # the event as it was, without the dead-letter fields
    assert await redis_client.xlen(dead) == 1  # the undecodable one
    code, out, _ = await cli("requeue-dead", "--stream", keys.MINT_REQUESTED)
    assert code == 0 and "requeued 0" in out
    code, _, err = await cli("requeue-dead", "--stream", "nope")
    assert code == 2 and "invalid choice" in err


# --- the audit ----------------------------------------------------------------------------------------


async def test_every_change_the_cli_makes_is_audited_and_dry_runs_are_not(cli: Cli, pg_pool) -> None:
    failed = await insert_request(pg_pool, "failed", error_message="boom")
    assert (await cli("retry-failed", "--dry-run"))[0] == 0
    assert (await cli("reset-stuck", "--dry-run"))[0] == 0
    assert await pg_pool.fetchval("SELECT count(*) FROM admin_audit") == 0

    for argv in (
        ["retry-failed"],
        ["reset-stuck"],
        ["replay-streams"],
        ["requeue-dead"],
        ["settings", "set", "batch_size", "40"],
        ["settings", "unset", "batch_size"],
    ):
        code, _, err = await cli(*argv)
        assert code == 0, (argv, err)
    assert (await cli("settings", "set", "batch_size", "0"))[0] == 2  # refused before anything runs

    rows = await pg_pool.fetch("SELECT * FROM admin_audit ORDER BY id")
    assert [row["action"] for row in rows] == [
        "retry-failed",
        "reset-stuck",
        "replay-streams",
        "requeue-dead",
        "settings-set",
        "settings-unset",
    ]
    assert {(row["source"], row["outcome"]) for row in rows} == {("cli", "done")}
    assert {row["actor"] for row in rows} == {getpass.getuser()}
    assert all(row["finished_at"] >= row["at"] for row in rows)
    assert rows[0]["result"]["toPending"] == [failed]
    assert rows[4]["params"] == {"key": "batch_size", "value": "40"}
    assert rows[5]["result"] == {"key": "batch_size", "removed": "40"}


# --- priority lanes -----------------------------------------------------------------------------------


async def test_priorities_are_set_listed_cleared_and_audited(cli: Cli, pg_pool) -> None:
    spelled = "0x" + "ab" * 20  # lowercase: stored checksummed, as intake stores payers
    payer = to_checksum_address(spelled)
    code, out, err = await cli("priority", "set", spelled, "5", "--note", "launch partner")
    assert code == 0, err
    assert f"{payer}: lane 5 (was lane 0)" in out
    row = await pg_pool.fetchrow("SELECT * FROM payer_priorities")
    assert (row["payer_address"], row["lane"], row["note"], row["set_by"], row["source"]) == (
        payer,
        5,
        "launch partner",
        getpass.getuser(),
        "cli",
    )
    code, out, _ = await cli("priority", "set", payer, "7")
    assert code == 0 and f"{payer}: lane 7 (was lane 5)" in out

    await insert_request(pg_pool, "pending", payer_address=payer, lane=7)
    for _ in range(2):
        await insert_request(pg_pool, "pending")
    code, out, _ = await cli("priority", "list")
    assert code == 0
    (line,) = [row for row in out.splitlines() if row.startswith(payer)]
    assert line.split()[1:4] == ["7", getpass.getuser(), "cli"]
    assert "queued per lane: lane 7: 1, lane 0: 2" in out

    for argv, message in [
        (["set", "0x12", "3"], "payer must be a 0x-prefixed 20-byte hex address"),
        (["set", "0x" + "aB" * 20, "3"], "has an invalid EIP-55 checksum"),
        (["set", payer, "0"], "lane must be a whole number from 1 to 9, not '0' (0 is the default"),
        (["set", payer, "10"], "lane must be a whole number from 1 to 9"),
        (["set", payer, "high"], "lane must be a whole number from 1 to 9"),
        (["set", payer, "3", "--note", "x" * 201], "note must be at most 200 characters"),
        (["clear", "nope"], "payer must be a 0x-prefixed"),
    ]:
        code, _, err = await cli("priority", *argv)
        assert code == 2 and message in err, (argv, err)
    assert await pg_pool.fetchval("SELECT lane FROM payer_priorities") == 7

    code, out, _ = await cli("priority", "clear", payer.lower())
    assert code == 0 and f"{payer}: lane 7 cleared" in out
    code, out, _ = await cli("priority", "clear", payer)
    assert code == 0 and "had no lane" in out
    code, out, _ = await cli("priority", "list")
    assert code == 0 and payer not in out

    rows = await pg_pool.fetch("SELECT action, params, result, outcome, source FROM admin_audit ORDER BY id")
    assert [(r["action"], r["outcome"], r["source"]) for r in rows] == [
        ("priority-set", "done", "cli"),
        ("priority-set", "done", "cli"),
        ("priority-clear", "done", "cli"),
        ("priority-clear", "done", "cli"),
    ]
    assert rows[0]["params"] == {"payer": payer, "lane": 5, "note": "launch partner"}
    assert [r["result"]["previous"] for r in rows] == [None, 5, 7, None]


async def test_the_ageing_multiple_is_a_validated_run_time_setting(cli: Cli, pg_pool) -> None:
    for value, message in [
        ("0.5", "invalid value '0.5' for ageing_multiple"),
        ("nan", "for ageing_multiple"),
    ]:
        code, _, err = await cli("settings", "set", "ageing_multiple", value)
        assert code == 2 and message in err, err
    code, out, _ = await cli("settings", "set", "ageing_multiple", "6")
    assert code == 0 and "ageing_multiple = 6.0 (batcher picks it up" in out
    code, out, _ = await cli("settings", "get", "ageing_multiple")
    (line,) = [row for row in out.splitlines() if row.startswith("ageing_multiple")]
    assert line.split()[:5] == ["ageing_multiple", "batcher", "6.0", "3.0", "6.0"]
