"""The devstack servers start on free ports, do a real round trip, and clean up after themselves."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
import redis
import redis.asyncio as aioredis
from web3 import HTTPProvider, Web3

from devstack.anvil import DEV_ADDRESSES, Anvil
from devstack.hardhat import HardhatNode
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


@pytest.mark.parametrize("node_class", [Anvil, HardhatNode])
def test_local_chains_mine_on_their_interval_fund_the_dev_accounts_and_clean_up(
    node_class: type[Anvil] | type[HardhatNode],
) -> None:
    node = node_class(block_time=0.5, chain_id=31338).start()
    try:
        assert node.rpc("eth_chainId") == hex(31338)
        # Interval mining: blocks come without transactions.
        first = int(node.rpc("eth_blockNumber"), 16)
        time.sleep(1.6)
        assert int(node.rpc("eth_blockNumber"), 16) >= first + 2
        for address in DEV_ADDRESSES:
            assert int(node.rpc("eth_getBalance", address, "latest"), 16) == 10_000 * 10**18
        log_path = node._log_path
        assert log_path is not None and log_path.exists()
    finally:
        node.stop()
    assert _port_is_free(node.port)
    assert not log_path.exists()
    node.stop()


def test_anvil_with_the_chains_limits_lifted_takes_a_transaction_over_the_cap() -> None:
    """gas_limit sets the block gas limit; without tx_gas_limit a transaction may use more than 2^24."""
    with Anvil(block_time=None, gas_limit=300_000_000, tx_gas_limit=False) as node:
        w3 = Web3(HTTPProvider(node.rpc_url, request_kwargs={"timeout": 30}))
        assert w3.eth.get_block("latest")["gasLimit"] == 300_000_000
        # Anvil's dev account 0 (public dev key, unlocked on the node).
        over_the_cap = {"from": DEV_ADDRESSES[0], "to": DEV_ADDRESSES[1], "gas": 2**24 + 1}
        tx_hash = w3.eth.send_transaction(over_the_cap)
        assert w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30)["status"] == 1


def test_hardhat_node_writes_its_config_in_a_temp_dir_it_removes() -> None:
    with HardhatNode(block_time=None) as node:
        config_dir = node._config_dir
        assert config_dir is not None and (config_dir / "hardhat.config.js").exists()
        # Automine: a block per transaction, none without.
        assert node.rpc("eth_blockNumber") == "0x0"
        time.sleep(0.5)
        assert node.rpc("eth_blockNumber") == "0x0"
    assert not config_dir.exists()


def test_hardhat_start_failure_reports_log_tail(busy_port: int) -> None:
    node = HardhatNode(port=busy_port)
    with pytest.raises(RuntimeError, match="(?s)exited with code.*log tail"):
        node.start()
    assert node._config_dir is None
