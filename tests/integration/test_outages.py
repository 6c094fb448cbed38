"""A real server going away for a while: clear answers meanwhile, and nothing lost once it is back."""

import asyncio

import aiohttp
from web3 import HTTPProvider, Web3

from devstack.ports import free_port
from devstack.postgres_server import PostgresServer
from shared import db
from tests.integration.test_batcher_confirmer import enqueue, logged, minted_once, wait_for
from tests.support.intake import wait_healthy
from tests.support.payments import gasless_body
from tests.support.proxy import TcpProxy


async def test_batcher_waits_out_an_unreachable_chain_and_loses_nothing(
    settings_env, services, pg_pool, redis_client, deployment, fund_payers, anvil
):
    proxy = TcpProxy(int(anvil.rpc_url.rsplit(":", 1)[1]))
    namespace = settings_env["MINTLINE_NAMESPACE"]
    # Down from the start: the batcher cannot even read its nonce.
    batcher = services("batcher", RPC_URL=proxy.url, BATCHER_BATCH_WINDOW_SECONDS="0.2")
    services("confirmer")
    first = fund_payers(4)
    first_ids = await enqueue(pg_pool, redis_client, namespace, deployment, first)
    await logged(batcher, "batcher recovery failed")
    await proxy.restore()
    assert {r["status"] for r in await wait_for(pg_pool, first_ids)} == {"completed"}

    # Down mid-run: batches cannot be estimated or signed until it is back.
    await proxy.cut()
    second = fund_payers(4)
    second_ids = await enqueue(pg_pool, redis_client, namespace, deployment, second)
    await logged(batcher, "could not store a batch")
    pending = await pg_pool.fetchval("SELECT count(*) FROM mint_requests WHERE status = 'pending'")
    assert pending == 4
    await proxy.restore()
    assert {r["status"] for r in await wait_for(pg_pool, second_ids)} == {"completed"}
    await proxy.cut()
    await minted_once(Web3(HTTPProvider(anvil.rpc_url)), deployment, first + second)


async def test_intake_answers_503_while_postgres_is_down_and_accepts_again_after(
    settings_env, services, deployment, fund_payers, shared_tmp
):
    postgres = PostgresServer(data_dir=shared_tmp / "pg").start()
    await db.migrate(postgres.dsn)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    intake = services("intake", DATABASE_URL=postgres.dsn, INTAKE_PORT=str(port))
    assert await wait_healthy(url, intake.proc), intake.log_tail()
    payers = fund_payers(3)
    try:
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{url}/mint", json=gasless_body(payers[0], deployment)) as response:
                assert response.status == 202

            postgres.stop()
            async with session.post(f"{url}/mint", json=gasless_body(payers[1], deployment)) as response:
                body = await response.json()
                assert (response.status, body["error"]) == (503, "database_unavailable"), body
                assert response.headers["Retry-After"]
            async with session.get(f"{url}/health") as response:
                assert response.status == 503

            postgres = PostgresServer(data_dir=shared_tmp / "pg", port=postgres.port).start()
            for _ in range(50):  # the pool reconnects on its next use
                async with session.post(f"{url}/mint", json=gasless_body(payers[2], deployment)) as response:
                    if response.status == 202:
                        break
                await asyncio.sleep(0.2)
            assert response.status == 202, await response.text()
    finally:
        intake.stop()
        postgres.stop()
