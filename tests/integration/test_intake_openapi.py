"""GET /openapi.json against a running intake (real PostgreSQL, Redis and anvil): schemathesis sends
generated requests, valid and invalid, to every operation it describes; no answer may be a 5xx, and
every answer must have a documented status, content type, headers and body schema.

The requests go out from a worker thread (schemathesis is synchronous) while the test's event loop
serves them. Failures are collected rather than raised, so one run reports every distinct problem.
"""

import asyncio
from collections.abc import Callable
from typing import Any

import requests
import schemathesis
from eth_account.signers.local import LocalAccount
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import BaseSchema, Case, GenerationMode, Response
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from services.intake import metrics
from services.intake.openapi import build
from tests.support.intake import Intake

# Per operation and generation mode; deterministic (derandomized), so a failure repeats.
EXAMPLES = 30
# With path parameters naming rows that exist (the answers a random id never reaches).
EXAMPLES_WITH_ROWS = 8
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
STREAM = "text/event-stream"
TIMEOUT = 10.0
RENDER = {"name": "Openapi", "palette": "ocean", "shape": "ring", "seed": 1, "frameCount": 2, "size": 32}

Fund = Callable[..., list[LocalAccount]]


async def test_openapi_json_is_the_prebuilt_document(intake: Intake) -> None:
    async with intake.client.get("/openapi.json") as response:
        assert response.status == 200 and response.content_type == "application/json"
        assert await response.json() == build()


async def test_every_operation_answers_as_described(intake: Intake, fund_payers: Fund) -> None:
    payer = fund_payers(1)[0]
    async with intake.client.get("/openapi.json") as response:
        schema = schemathesis.openapi.from_dict(await response.json())
    base_url = intake.url.rstrip("/")
    schema.config.update(base_url=base_url)
    found: dict[tuple[str, str], str] = {}
    errors_before = server_errors()

    with requests.Session() as session:
        answers = await asyncio.to_thread(send_paid, schema, session, found, paid_requests(intake, payer))
        mint_id, _, _, x402_id, _, job_id, _ = (
            answer.get("queueId") or answer.get("jobId") for answer in answers
        )
        await intake.pool.execute(
            "UPDATE mint_requests SET status = 'completed', mint_tx_hash = $2, processed_at = now()"
            " WHERE id = $1::uuid",
            x402_id,
            "0x" + "cd" * 32,
        )
        # As admin/importer.py brings in an earlier system's mints: any payer text and hash.
        imported = await intake.pool.fetchval(
            "INSERT INTO mint_requests (id, kind, payer_address, payment_type, payment_id, amount,"
            " mint_tx_hash, status, processed_at) VALUES (gen_random_uuid(), 'token', 'legacy:alice',"
            " 'x402', 'legacy-1', 1, 'abc', 'completed', now()) RETURNING id::text"
        )
        rows = {
            "queueId": [mint_id, x402_id, job_id, imported],
            "jobId": [job_id],
            "address": [payer.address, payer.address.lower()],
            "filename": ["index.html", "status.js"],
        }
        await asyncio.to_thread(fuzz, schema, session, found, rows)

    assert not found, "\n\n".join(found.values())
    # As the server counted them too: a 5xx on a stream the client had left is seen only there.
    assert server_errors() == errors_before


def server_errors() -> float:
    return sum(
        sample.value
        for metric in metrics.HTTP_REQUESTS.collect()
        for sample in metric.samples
        if sample.name.endswith("_total") and sample.labels["status"].startswith("5")
    )


def paid_requests(intake: Intake, payer: LocalAccount) -> list[tuple[str, dict[str, Any], int]]:
    """Paid mints and renders (gasless and x402), retried with their Idempotency-Key, a payment used
    twice and an underpaid one: the answers generated input never reaches, and the rows the path
    parameters then find. (path, Case arguments, the status expected)"""
    mint = {"paymentType": "gasless", **intake.payment(payer)}
    nft_payment = intake.payment(payer, value=intake.deployment.nft_price)
    render = {"paymentType": "gasless", "render": RENDER, **nft_payment}
    once = {"Idempotency-Key": "openapi-1"}
    return [
        ("/mint", {"body": mint, "headers": once}, 202),
        ("/mint", {"body": mint, "headers": once}, 200),
        ("/mint", {"body": mint}, 409),
        ("/mint", {"headers": {"PAYMENT-SIGNATURE": intake.payment_header(intake.payment(payer))}}, 202),
        ("/mint", {"body": {"paymentType": "gasless", **intake.payment(payer, value=1)}}, 402),
        ("/nft/render", {"body": render, "headers": {"Idempotency-Key": "openapi-2"}}, 202),
        ("/nft/render", {"body": render, "headers": {"Idempotency-Key": "openapi-2"}}, 200),
    ]


def send_paid(
    schema: BaseSchema,
    session: requests.Session,
    found: dict[tuple[str, str], str],
    paid: list[tuple[str, dict[str, Any], int]],
) -> list[dict[str, Any]]:
    answers = []
    for path, arguments, status in paid:
        media_type = "application/json" if "body" in arguments else None
        case = schema[path]["POST"].Case(media_type=media_type, **arguments)
        response = check(case, session, found)
        assert response is not None and response.status_code == status, (path, arguments, response)
        answers.append(response.json())
    return answers


def fuzz(
    schema: BaseSchema,
    session: requests.Session,
    found: dict[tuple[str, str], str],
    rows: dict[str, list[str]],
) -> None:
    """Generated requests for every operation: valid and invalid ones, then valid ones whose path
    parameters name `rows`."""
    for result in schema.get_all_operations():
        operation = result.ok()
        names = [parameter.name for parameter in operation.path_parameters]
        runs: list[tuple[GenerationMode, dict[str, str] | None, int]] = [
            (GenerationMode.POSITIVE, None, EXAMPLES),
            (GenerationMode.NEGATIVE, None, EXAMPLES),
        ]
        runs += [
            (GenerationMode.POSITIVE, {name: value}, EXAMPLES_WITH_ROWS)
            for name in names
            for value in rows.get(name, [])
        ]
        for mode, path_parameters, examples in runs:
            strategy = operation.as_strategy(generation_mode=mode, path_parameters=path_parameters)
            try:
                run_examples(strategy, examples, lambda case: check(case, session, found))
            except Unsatisfiable:
                # Nothing to make invalid: an operation without parameters or body.
                assert mode is GenerationMode.NEGATIVE, operation.label


def run_examples(strategy: Any, examples: int, test: Callable[[Case], None]) -> None:
    @given(case=strategy)
    @settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def examples_of(case: Case) -> None:
        test(case)

    examples_of()


def check(
    case: Case, session: requests.Session, found: dict[tuple[str, str], str]
) -> Response | requests.Response | None:
    """Sends `case` and records each distinct failure (per operation and kind); the answer, but None
    for an event stream (checked apart)."""
    label = case.operation.label
    response = None
    try:
        if STREAM in _media_types(case):
            response = _stream(case, session)
        else:
            response = case.call(session=session, timeout=TIMEOUT)
        if response is not None:
            case.validate_response(response, checks=CHECKS)
    except FailureGroup as group:
        for failure in group.exceptions:
            found.setdefault((label, failure.title), _shortened(f"{label}: {failure.title}\n{group.args[0]}"))
    except (requests.RequestException, AssertionError) as exc:
        found.setdefault(
            (label, type(exc).__name__), _shortened(f"{label}: {exc!r}\n{case.as_curl_command()}")
        )
    return response


def _shortened(report: str, limit: int = 3000) -> str:
    return report if len(report) <= limit else report[:limit] + " [...]"


def _media_types(case: Case) -> set[str]:
    responses = case.operation.definition.raw["responses"].values()
    return {media_type for response in responses for media_type in response.get("content", {})}


def _stream(case: Case, session: requests.Session) -> requests.Response | None:
    """The answer of an event-stream operation, read whole; None for a 200 event stream, which does not
    end on its own: checked here for its first event, then closed."""
    kwargs = case.as_transport_kwargs(base_url=case.operation.schema.get_base_url())
    with session.request(**kwargs, stream=True, timeout=TIMEOUT) as response:
        if not response.headers.get("Content-Type", "").startswith(STREAM):
            response.content  # noqa: B018 - a finite (error) body: read it before the stream closes
            return response
        assert response.status_code == 200, case.as_curl_command()
        for line in response.iter_lines():
            if line.startswith(b"data:"):
                assert line.startswith(b"data: {"), line
                return None
        raise AssertionError(f"the event stream ended without an event: {case.as_curl_command()}")
