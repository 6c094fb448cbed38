"""The console's /openapi.json against the running console (real PostgreSQL, Redis and anvil):
schemathesis sends generated requests, valid and invalid, with the operator's credentials, to every
operation; no answer may be a 5xx, and every answer must have a documented status, content type,
headers and body schema (the checks and helpers of test_intake_openapi.py)."""

import asyncio

import pytest
import requests
import schemathesis

from tests.integration.test_intake_openapi import check, fuzz
from tests.support.console import Console, running_console
from tests.support.rows import insert_batch, insert_job, insert_request


def rows_first(rows: dict[str, list[str]]) -> dict[str, str]:
    return {name: values[0] for name, values in rows.items() if name != "id"}


@pytest.fixture
async def console(settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch):
    async with running_console(settings_env, monkeypatch) as running:
        yield running


async def test_every_console_operation_answers_as_described(console: Console) -> None:
    failed = await insert_request(console.pool, "failed", error_message="x")
    nft = await insert_request(console.pool, "rendering", kind="nft")
    await insert_job(console.pool, nft, "active", progress=33)
    batch = await insert_batch(console.pool, 0, "sent", [failed])
    status, spec = await console.get("/openapi.json")
    assert status == 200
    schema = schemathesis.openapi.from_dict(spec)
    schema.config.update(base_url=str(console.client.make_url("")).rstrip("/"))
    found: dict[tuple[str, str], str] = {}
    rows = {
        "id": [failed, nft, str(batch)],
        "key": ["batch_size", "max_retries"],
        "filename": ["console.js"],
        "payer": ["0x" + "ab" * 20],
    }

    with requests.Session() as session:
        session.headers.update(console.auth)
        # Same origin, as the page sends them (an Origin of another site is refused, as documented).
        await asyncio.to_thread(fuzz, schema, session, found, rows)
        # And one request with no credentials per operation: a documented 401.
        anonymous = requests.Session()
        for result in schema.get_all_operations():
            operation = result.ok()
            if operation.path == "/health":
                continue
            names = {parameter.name for parameter in operation.path_parameters}
            values = {"id": str(batch) if "batches" in operation.path else failed, **rows_first(rows)}
            arguments = {"path_parameters": {name: values[name] for name in names}}
            if operation.method.upper() in ("POST", "PUT"):
                arguments.update(body={}, media_type="application/json")
            await asyncio.to_thread(check, operation.Case(**arguments), anonymous, found)

    assert not found, "\n\n".join(found.values())
    # The generated actions ran (and were audited), so the fuzzing reached the handlers.
    assert await console.pool.fetchval("SELECT count(DISTINCT action) FROM admin_audit") >= 4
