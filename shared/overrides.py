"""Run-time overrides of settings from the `system_settings` table, applied each cycle."""

import logging
from typing import TypeVar

import asyncpg
from pydantic import BaseModel, ValidationError

log = logging.getLogger(__name__)

S = TypeVar("S", bound=BaseModel)


async def with_overrides(pool: asyncpg.Pool, settings: S, keys: tuple[str, ...]) -> S:
    """A copy of `settings` with the allowed keys replaced by their `system_settings` values.

    A value that does not validate is logged and ignored, so a typo in the table never stops a service.
    """
    rows = await pool.fetch("SELECT key, value FROM system_settings WHERE key = ANY($1::text[])", list(keys))
    if not rows:
        return settings
    updated = settings.model_copy()
    for row in rows:
        try:
            updated.__pydantic_validator__.validate_assignment(updated, row["key"], row["value"])
        except ValidationError as exc:
            log.error("ignoring system_settings %s=%r: %s", row["key"], row["value"], exc.errors()[0]["msg"])
    return updated
