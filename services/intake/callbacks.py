"""Callbacks: turn mint.completed / mint.failed events into webhook deliveries (rows in PostgreSQL),
and deliver those: signed POSTs, every attempt recorded, retried with backoff until max attempts.

Signature: hex HMAC-SHA256 with WEBHOOK_SECRET over f"{timestamp}.{body}", sent as
`X-Mintline-Signature: sha256=<hex>` with `X-Mintline-Timestamp: <unix seconds>`; `body` is the exact
request body. Receivers should also reject stale timestamps.

Deliveries go only where callback_hosts allows: the URL's host is checked before each attempt and the
session's resolver drops refused addresses (DNS rebinding), redirects are not followed and at most
MAX_RESPONSE_BYTES of a response are read. A refused delivery fails at once, with the reason.
"""

import asyncio
import hashlib
import hmac
import json
import logging
import time
import uuid
from datetime import UTC, datetime

import aiohttp
import asyncpg
from aiohttp.abc import AbstractResolver
from yarl import URL

from services.intake import metrics
from services.intake.callback_hosts import CallbackHosts, CallbackRefused, CallbackResolver
from services.intake.settings import IntakeSettings
from shared import logs
from shared.backoff import exponential_backoff
from shared.events import Event, MintCompleted, MintFailed, MintReorged

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Mintline-Signature"
TIMESTAMP_HEADER = "X-Mintline-Timestamp"
# Only the status matters; a receiver streaming a huge (or endless) body is not read further.
MAX_RESPONSE_BYTES = 4096
REFUSED = "callback_url_not_allowed"
REORGED = "the mint transaction left the canonical chain (a reorg); it is being settled again"

# One delivery per (request, outcome); a redelivered event inserts nothing.
ADD_DELIVERIES = """
INSERT INTO webhook_deliveries (request_id, event, url, body)
SELECT m.id, o.event, m.callback_url, jsonb_build_object(
    'event', o.event, 'queueId', m.id::text, 'status', o.status, 'payer', m.payer_address,
    'mintTxHash', coalesce(o.tx_hash, m.mint_tx_hash), 'error', o.error, 'timestamp', o.at)
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[])
         AS o (request_id, event, status, tx_hash, error, at)
JOIN mint_requests m ON m.id = o.request_id
WHERE m.callback_url IS NOT NULL
ON CONFLICT (request_id, event) DO NOTHING
RETURNING id, request_id, event
"""
# Claimed rows are leased (next_attempt_at moved past the POST's timeout) so no other intake
# process picks them up while this one is posting.
CLAIM_DUE = """
UPDATE webhook_deliveries d SET next_attempt_at = now() + make_interval(secs => $2)
WHERE d.id IN (SELECT id FROM webhook_deliveries
               WHERE status = 'pending' AND next_attempt_at <= now()
               ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED)
RETURNING d.id, d.request_id, d.event, d.url, d.body, d.attempts
"""
RECORD_ATTEMPT = (
    "INSERT INTO webhook_attempts (delivery_id, attempt, status_code, error) VALUES ($1, $2, $3, $4)"
)
DELIVERED = (
    "UPDATE webhook_deliveries SET status = 'delivered', attempts = $2, delivered_at = now() WHERE id = $1"
)
GAVE_UP = "UPDATE webhook_deliveries SET status = 'failed', attempts = $2 WHERE id = $1"
RETRY = """
UPDATE webhook_deliveries SET attempts = $2, next_attempt_at = now() + make_interval(secs => $3) WHERE id = $1
"""


def webhook_session(
    settings: IntakeSettings, hosts: CallbackHosts, dns: AbstractResolver | None = None
) -> aiohttp.ClientSession:
    """The session webhooks are posted with: every name resolved through CallbackResolver (`dns`, or
    the system's resolver, less refused addresses), no proxy from the environment."""
    connector = aiohttp.TCPConnector(
        resolver=CallbackResolver(hosts, dns), limit=settings.webhook_concurrency
    )
    return aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=settings.webhook_timeout_seconds)
    )


def sign(secret: bytes, timestamp: int, body: str) -> str:
    return "sha256=" + hmac.new(secret, f"{timestamp}.{body}".encode(), hashlib.sha256).hexdigest()


def encode_body(body: dict) -> str:
    return json.dumps(body, separators=(",", ":"), sort_keys=True)


class Callbacks:
    def __init__(
        self,
        pool: asyncpg.Pool,
        session: aiohttp.ClientSession,
        settings: IntakeSettings,
        hosts: CallbackHosts,
    ) -> None:
        """`session` must resolve through callback_hosts.CallbackResolver (see webhook_session)."""
        self.pool = pool
        self.session = session
        self.settings = settings
        self.hosts = hosts
        self._secret = settings.webhook_secret.get_secret_value().encode()
        self._wake = asyncio.Event()

    async def on_outcomes(self, events: list[Event]) -> None:
        """Consumer handler for mint.completed (and mint.reorged on it) and mint.failed, a read's
        events at once: record the deliveries wanted, in one statement."""
        outcomes = [outcome for event in events if (outcome := self._outcome(event)) is not None]
        if not outcomes:
            return
        columns = [list(column) for column in zip(*outcomes, strict=True)]
        for row in await self.pool.fetch(ADD_DELIVERIES, *columns):
            log.info(
                "webhook %d queued: %s for request %s",
                row["id"],
                row["event"],
                row["request_id"],
                extra={"queue_id": str(row["request_id"])},
            )
            self._wake.set()

    @staticmethod
    def _outcome(event: Event) -> tuple[uuid.UUID, str, str, str | None, str | None, str] | None:
        """The delivery an event asks for: request id, event name, status, transaction, error, time."""
        if isinstance(event, MintCompleted):
            name, status, tx_hash, error = "mint.completed", "completed", event.tx_hash, None
        elif isinstance(event, MintFailed):
            name, status, tx_hash, error = "mint.failed", "failed", None, event.reason
        elif isinstance(event, MintReorged):
            # The mint transaction reported in mint.completed left the chain; it is settled anew.
            name, status, tx_hash, error = "mint.reorged", "sent", event.tx_hash, REORGED
        else:
            return None
        try:
            request_id = uuid.UUID(event.request_id)
        except ValueError:
            log.warning(
                "%s event %s names no valid request id %r; ignored", name, event.event_id, event.request_id
            )
            return None
        at = datetime.fromtimestamp(event.created_ms / 1000, UTC).isoformat()
        return request_id, name, status, tx_hash, error, at

    async def deliver_due(self, stop: asyncio.Event) -> None:
        """Deliver due webhooks until `stop`, at most webhook_concurrency at once."""
        limit = self.settings.webhook_concurrency
        in_flight: set[asyncio.Task] = set()
        lease = self.settings.webhook_timeout_seconds + 30
        while not stop.is_set():
            # Cleared before the claim, so a delivery queued meanwhile still wakes the next round.
            self._wake.clear()
            try:
                free = limit - len(in_flight)
                rows = await self.pool.fetch(CLAIM_DUE, free, lease) if free > 0 else []
                for row in rows:
                    task = asyncio.create_task(self._deliver(row))
                    in_flight.add(task)
                    task.add_done_callback(in_flight.discard)
                if rows and len(rows) == free:
                    # Full: wait for a slot rather than for the poll interval.
                    await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                    continue
            except Exception:
                log.exception("webhook delivery loop failed; going on")
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.settings.webhook_poll_seconds)
            except TimeoutError:
                pass
        if in_flight:
            # Unfinished ones keep their lease and are retried when it runs out.
            await asyncio.wait(in_flight, timeout=self.settings.shutdown_grace_seconds)
            for task in in_flight:
                task.cancel()
            await asyncio.gather(*in_flight, return_exceptions=True)

    async def _deliver(self, row: asyncpg.Record) -> None:
        try:
            await self._attempt(row)
        except Exception:
            # The lease runs out and the delivery is tried again.
            log.exception("webhook %d: recording the attempt failed", row["id"])

    async def _attempt(self, row: asyncpg.Record) -> None:
        attempt = row["attempts"] + 1
        body = encode_body(row["body"])
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(self._secret, timestamp, body),
            "X-Mintline-Event": row["event"],
            "X-Mintline-Delivery": str(row["id"]),
        }
        status_code: int | None = None
        error: str | None = None
        url = URL(row["url"])
        # aiohttp does not ask the resolver about IP literals: the URL's spelling is checked here.
        refused = self.hosts.host_refusal(url.raw_host or "")
        if refused is not None:
            error = f"{REFUSED}: callback host {url.raw_host} {refused}"
        else:
            try:
                async with self.session.post(
                    url, data=body, headers=headers, allow_redirects=False
                ) as response:
                    status_code = response.status
                    await _read_capped(response, MAX_RESPONSE_BYTES)
            except aiohttp.ClientConnectorError as exc:
                if isinstance(exc.os_error, CallbackRefused):
                    refused, error = str(exc.os_error), f"{REFUSED}: {exc.os_error}"
                else:
                    error = f"{type(exc).__name__}: {exc}"[:500]
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                error = f"{type(exc).__name__}: {exc}"[:500]
        ok = status_code is not None and 200 <= status_code < 300
        if not ok and error is None:
            error = f"HTTP {status_code}"
        await self._record(row, attempt, ok, status_code, error, final=refused is not None)

    async def _record(
        self,
        row: asyncpg.Record,
        attempt: int,
        ok: bool,
        status_code: int | None,
        error: str | None,
        final: bool = False,
    ) -> None:
        """`final`: a failure not worth retrying (a refused host stays refused)."""
        delivery_id = row["id"]
        give_up = not ok and (final or attempt >= self.settings.webhook_max_attempts)
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(RECORD_ATTEMPT, delivery_id, attempt, status_code, None if ok else error)
            if ok:
                await conn.execute(DELIVERED, delivery_id, attempt)
            elif give_up:
                await conn.execute(GAVE_UP, delivery_id, attempt)
            else:
                delay = exponential_backoff(
                    attempt,
                    self.settings.webhook_backoff_base_seconds,
                    self.settings.webhook_backoff_max_seconds,
                )
                await conn.execute(RETRY, delivery_id, attempt, delay)
        with logs.bind(queue_id=str(row["request_id"])):
            if ok:
                outcome = "delivered"
                log.info(
                    "webhook %d (%s, request %s) delivered on attempt %d",
                    delivery_id,
                    row["event"],
                    row["request_id"],
                    attempt,
                )
            elif give_up:
                outcome = "failed"
                log.warning(
                    "webhook %d (%s, request %s) failed for good after %d attempts: %s",
                    delivery_id,
                    row["event"],
                    row["request_id"],
                    attempt,
                    error,
                )
            else:
                outcome = "retry"
                log.info(
                    "webhook %d (%s, request %s) attempt %d failed (%s); retrying",
                    delivery_id,
                    row["event"],
                    row["request_id"],
                    attempt,
                    error,
                )
        metrics.WEBHOOK_ATTEMPTS.labels(outcome).inc()
        if outcome != "retry":
            metrics.WEBHOOK_DELIVERIES.labels(outcome).inc()


async def _read_capped(response: aiohttp.ClientResponse, limit: int) -> None:
    """Read at most `limit` bytes of the body; past that the connection is closed, not drained."""
    remaining = limit
    while remaining > 0:
        chunk = await response.content.read(remaining)
        if not chunk:
            return
        remaining -= len(chunk)
    if not response.content.at_eof():
        response.close()
