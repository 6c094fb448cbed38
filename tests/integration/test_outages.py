"""A real server going away for a while: clear answers meanwhile, and nothing lost once it is back."""

import asyncio
import collections

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


async def test_intake_answers_503_never_500_while_postgres_stops_under_load(
    settings_env, services, deployment, fund_payers, shared_tmp
):
    """PostgreSQL's fast shutdown ends every connection of intake's pool while requests use them;
    asyncpg then fails in several ways (a closed connection, an error message it is still reading
    when the next query starts). Each is the database being unavailable: 503 with Retry-After, which
    clients retry, never a 500."""
    postgres = PostgresServer(data_dir=shared_tmp / "pg").start()
    await db.migrate(postgres.dsn)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    intake = services("intake", DATABASE_URL=postgres.dsn, INTAKE_PORT=str(port))
    assert await wait_healthy(url, intake.proc), intake.log_tail()
    payers = fund_payers(50, 100 * deployment.price)
    unsent = asyncio.Queue()
    for i in range(3000):
        unsent.put_nowait(gasless_body(payers[i % 50], deployment))
    answers: collections.Counter[str] = collections.Counter()
    running = True

    async def client(session: aiohttp.ClientSession) -> None:
        while running and not unsent.empty():
            body = unsent.get_nowait()
            async with session.post(f"{url}/mint", json=body) as response:
                answers[f"{response.status} {(await response.json()).get('error')}"] += 1
                if response.status != 202:
                    unsent.put_nowait(body)  # not accepted: the same payment goes again

    try:
        async with aiohttp.ClientSession() as session:
            clients = [asyncio.create_task(client(session)) for _ in range(32)]
            for _ in range(3):
                await asyncio.sleep(1.5)
                postgres.stop()
                await asyncio.sleep(1)
                postgres = PostgresServer(data_dir=shared_tmp / "pg", port=postgres.port).start()
            await asyncio.sleep(1.5)
            running = False
            await asyncio.gather(*clients)
    finally:
        postgres.stop()
    assert answers["503 database_unavailable"] and answers["202 None"] > 100, answers
    # A request committed just before its connection died may be answered 503; its retry (no
    # Idempotency-Key here) then finds the payment taken: 409, never a second mint, never a 500.
    assert set(answers) <= {"202 None", "503 database_unavailable", "409 payment_replayed"}, answers


async def test_a_worker_started_while_postgres_is_down_waits_for_it(
    settings_env, services, pg_pool, redis_client, deployment, fund_payers, anvil, shared_tmp
):
    """A service (re)started during a database restart waits it out instead of exiting."""
    postgres = PostgresServer(data_dir=shared_tmp / "pg-late").start()
    await db.migrate(postgres.dsn)
    postgres.stop()
    batcher = services("batcher", DATABASE_URL=postgres.dsn, BATCHER_BATCH_WINDOW_SECONDS="0.2")
    try:
        await logged(batcher, "PostgreSQL not reachable")
        await asyncio.to_thread(postgres.start)
        await logged(batcher, "this batcher is active")
        assert batcher.proc is not None and batcher.proc.poll() is None, batcher.log_tail()
    finally:
        batcher.kill()
        postgres.stop()
