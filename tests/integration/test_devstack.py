"""The devstack servers start on free ports, do a real round trip, and clean up after themselves."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
import redis
import redis.asyncio as aioredis

from devstack.postgres_server import PostgresServer
from devstack.redis_server import RedisServer


def _port_is_free(port: int) -> bool:
    # SO_REUSEADDR so leftover TIME_WAIT client sockets don't count; only a live listener does.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


async def test_redis_round_trip_and_stop() -> None:
    server = RedisServer().start()
    try:
        assert server.url == f"redis://127.0.0.1:{server.port}/0"
        client = aioredis.Redis.from_url(server.url)
        try:
            await client.set("greeting", "gm")
            assert await client.get("greeting") == b"gm"
            assert await client.config_get("appendonly") == {"appendonly": "no"}
            assert await client.config_get("save") == {"save": ""}
        finally:
            await client.aclose()
        tmp_dir = server.data_dir
        assert tmp_dir is not None and tmp_dir.exists()
    finally:
        server.stop()
    assert _port_is_free(server.port)
    assert not tmp_dir.exists()
    server.stop()


def test_redis_persist_keeps_data_across_restarts(shared_tmp: Path) -> None:
    for expected in (None, b"1"):
        with RedisServer(data_dir=shared_tmp, persist=True) as server:
            client = redis.Redis.from_url(server.url)
            try:
                assert client.get("minted") == expected
                client.set("minted", "1")
            finally:
                client.close()
    assert shared_tmp.exists()


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port someone else already listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        yield busy.getsockname()[1]


def test_redis_start_failure_reports_log_tail(busy_port: int) -> None:
    server = RedisServer(port=busy_port)
    with pytest.raises(RuntimeError, match="(?s)log tail.*Address already in use"):
        server.start()
    server.stop()


async def test_postgres_round_trip_databases_and_stop() -> None:
    server = PostgresServer().start()
    try:
        assert server.dsn == f"postgresql://postgres@127.0.0.1:{server.port}/mintline"
        conn = await asyncpg.connect(server.dsn)
        try:
            assert await conn.fetchval("select 1") == 1
            assert await conn.fetchval("show max_connections") == "200"
            assert await conn.fetchval("show fsync") == "off"
            await conn.execute("create table mints (id int)")
        finally:
            await conn.close()

        other = server.create_database("mintline_test_other")
        assert other == f"postgresql://postgres@127.0.0.1:{server.port}/mintline_test_other"
        conn = await asyncpg.connect(other)
        try:
            assert await conn.fetchval("select current_database()") == "mintline_test_other"
            # A separate database, not the same one under another name.
            assert await conn.fetchval("select to_regclass('mints')") is None
        finally:
            await conn.close()
        assert server.create_database("mintline_test_other") == other
        with pytest.raises(ValueError):
            server.create_database('bad"; drop database mintline; --')
        run_dir = server.run_dir
        assert run_dir is not None and run_dir.exists()
    finally:
        server.stop()
    assert _port_is_free(server.port)
    assert not run_dir.exists()
    server.stop()


async def test_postgres_reuses_existing_data_dir(shared_tmp: Path) -> None:
    data_dir = shared_tmp / "pg"
    with PostgresServer(data_dir=data_dir, fast=False) as first:
        conn = await asyncpg.connect(first.dsn)
        try:
            await conn.execute("create table mints (id int); insert into mints values (7)")
        finally:
            await conn.close()
    with PostgresServer(data_dir=data_dir, fast=False) as second:
        conn = await asyncpg.connect(second.dsn)
        try:
            assert await conn.fetchval("select id from mints") == 7
            assert await conn.fetchval("show fsync") == "on"
        finally:
            await conn.close()
    assert (data_dir / "PG_VERSION").exists()


def test_postgres_refuses_foreign_non_empty_dir(shared_tmp: Path) -> None:
    (shared_tmp / "notes.txt").write_text("not a cluster")
    server = PostgresServer(data_dir=shared_tmp)
    with pytest.raises(RuntimeError, match="refusing to initdb"):
        server.start()
    assert (shared_tmp / "notes.txt").exists()


def test_postgres_start_failure_reports_log_tail(busy_port: int) -> None:
    server = PostgresServer(port=busy_port)
    with pytest.raises(RuntimeError, match="(?s)log tail.*Address already in use"):
        server.start()
    assert server.run_dir is None
    server.stop()
