"""Rows written straight into PostgreSQL, for tests about what operators see and repair (the admin CLI,
the console): requests, batches and render jobs in any state, without running the pipeline."""

import secrets
import time
import uuid
from typing import Any

import asyncpg

WALLET = "0x" + "ab" * 20
PAYER = "0x" + "cd" * 20


async def insert_request(pool: asyncpg.Pool, status: str, **columns: Any) -> str:
    request_id = uuid.uuid4()
    nonce = "0x" + secrets.token_hex(32)
    values: dict[str, Any] = {
        "id": request_id,
        "kind": "token",
        "payer_address": PAYER,
        "payment_type": "gasless",
        "payment_id": "0x" + secrets.token_hex(32),
        "amount": 10_000,
        "authorization_data": {"from": PAYER, "nonce": nonce},
        "valid_before": int(time.time()) + 3600,
        "status": status,
        **columns,
    }
    names = ", ".join(values)
    params = ", ".join(f"${i}" for i in range(1, len(values) + 1))
    await pool.execute(f"INSERT INTO mint_requests ({names}) VALUES ({params})", *values.values())
    return str(request_id)


async def insert_batch(pool: asyncpg.Pool, nonce: int, status: str, request_ids: list[str]) -> int:
    batch_id = await pool.fetchval(
        "INSERT INTO batches (wallet, nonce, status, request_ids, tx_hash, raw_tx, call_data, gas_limit,"
        " max_fee_per_gas, max_priority_fee_per_gas, created_at)"
        " VALUES ($1, $2, $3, $4::uuid[], $5, '\\x00', '\\x00', 100000, 1, 1, now() - interval '90 seconds')"
        " RETURNING id",
        WALLET,
        nonce,
        status,
        request_ids,
        "0x" + secrets.token_hex(32),
    )
    await pool.execute(
        "UPDATE mint_requests SET batch_id = $1 WHERE id = ANY($2::uuid[])", batch_id, request_ids
    )
    return batch_id


async def insert_job(pool: asyncpg.Pool, request_id: str, status: str, **columns: Any) -> None:
    values = {"request_id": uuid.UUID(request_id), "settings": {"seed": 1}, "status": status, **columns}
    params = ", ".join(f"${i}" for i in range(1, len(values) + 1))
    await pool.execute(f"INSERT INTO render_jobs ({', '.join(values)}) VALUES ({params})", *values.values())
