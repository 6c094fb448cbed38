"""Structured logs: one JSON object per line, with the service and the ids that apply to the event.

Ids come from two places: `bind(...)`, a context (contextvars) that covers everything logged inside
it, in the same task and the tasks it starts (a request's id for all of intake's handling of it), and
`extra={"batch_id": ...}` on a single call. Only the names in IDS become fields, so a stray `extra`
can never smuggle a secret in; messages keep their %-style text for people reading the log.
"""

import contextlib
import contextvars
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from typing import Any, TextIO

IDS = ("request_id", "queue_id", "job_id", "batch_id", "nonce", "tx_hash", "wallet", "stream", "entry_id")
# Immutable default (a fresh dict is set on every bind, never mutated in place).
_context: contextvars.ContextVar[tuple[tuple[str, Any], ...]] = contextvars.ContextVar(
    "log_context", default=()
)


@contextlib.contextmanager
def bind(**ids: Any) -> Iterator[None]:
    """Add ids to every log line written inside the block."""
    merged = {**dict(_context.get()), **{k: v for k, v in ids.items() if v is not None}}
    token = _context.set(tuple(merged.items()))
    try:
        yield
    finally:
        _context.reset(token)


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(dict(_context.get()))
        for name in IDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure(service: str, level: str | None = None, stream: TextIO | None = None) -> None:
    """Log to stderr as JSON lines (LOG_FORMAT=text for plain lines while developing)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    if os.environ.get("LOG_FORMAT", "json").lower() == "text":
        handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s {service} %(name)s: %(message)s"))
    else:
        handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel((level or os.environ.get("LOG_LEVEL", "INFO")).upper())
