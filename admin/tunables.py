"""`mintline settings get|set|unset`: the run-time overrides in `system_settings`.

Only the keys the services re-read each cycle may be set (each service's TUNABLE), and a value must
pass that service's own validation (type and bounds), so a typo is refused here instead of being
logged and ignored by the service. Changes take effect on the services' next settings refresh.
"""

import argparse
import os
from typing import Any

from pydantic import ValidationError
from pydantic_settings import BaseSettings

from admin.audit import audited
from admin.common import Admin, UsageError, table
from services.batcher import settings as batcher
from services.confirmer import settings as confirmer

SERVICES: dict[str, tuple[type[BaseSettings], tuple[str, ...]]] = {
    "batcher": (batcher.BatcherSettings, batcher.TUNABLE),
    "confirmer": (confirmer.ConfirmerSettings, confirmer.TUNABLE),
}
TUNABLE: dict[str, tuple[str, type[BaseSettings]]] = {
    key: (service, cls) for service, (cls, keys) in SERVICES.items() for key in keys
}


def _settings_class(key: str) -> type[BaseSettings]:
    if key not in TUNABLE:
        raise UsageError(f"unknown setting {key!r}; tunable keys: {', '.join(sorted(TUNABLE))}")
    return TUNABLE[key][1]


def validate(key: str, value: str) -> Any:
    """The value as the service will read it, or a UsageError naming the key and the problem."""
    cls = _settings_class(key)
    instance = cls.model_construct()
    try:
        cls.__pydantic_validator__.validate_assignment(instance, key, value)
    except ValidationError as exc:
        raise UsageError(f"invalid value {value!r} for {key}: {exc.errors()[0]['msg']}") from None
    return getattr(instance, key)


def bounds(key: str) -> str:
    cls = _settings_class(key)
    field = cls.model_fields[key]
    limits = [
        f"{symbol} {getattr(rule, attr)}"
        for rule in field.metadata
        for attr, symbol in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"))
        if hasattr(rule, attr)
    ]
    kind = getattr(field.annotation, "__name__", str(field.annotation))
    return kind + (f" {', '.join(limits)}" if limits else "")


def configured(key: str) -> tuple[Any, str]:
    """The value a service starts with (its environment variable, else the default) and where it is from."""
    cls = _settings_class(key)
    env_name = f"{cls.model_config.get('env_prefix', '')}{key}".upper()
    raw = os.environ.get(env_name)
    if raw is not None:
        try:
            return validate(key, raw), f"env {env_name}"
        except UsageError:
            return raw, f"env {env_name} (invalid)"
    return cls.model_fields[key].default, "default"


async def describe(admin: Admin, key: str | None = None) -> list[dict[str, Any]]:
    """Every tunable key (and any other row of the table), or one: its service, override, configured
    and effective values, and notes (where the value is from, its bounds)."""
    rows = await admin.pool.fetch("SELECT key, value, updated_at FROM system_settings ORDER BY key")
    overrides = {row["key"]: row for row in rows}
    keys = [key] if key else sorted(set(TUNABLE) | set(overrides))
    if key and key not in overrides:
        _settings_class(key)  # an unknown key that is not in the table either
    described = []
    for name in keys:
        row = overrides.get(name)
        if name not in TUNABLE:
            assert row is not None  # listed because it is in the table
            described.append(
                {
                    "key": name,
                    "service": None,
                    "override": row["value"],
                    "configured": None,
                    "effective": None,
                    "bounds": None,
                    "notes": "not a tunable key: no service reads it",
                }
            )
            continue
        base, origin = configured(name)
        effective, note = base, origin
        if row is not None:
            try:
                effective, note = (
                    validate(name, row["value"]),
                    f"override since {row['updated_at']:%Y-%m-%d %H:%M:%S}",
                )
            except UsageError as exc:
                note = f"override ignored by the service: {exc}"
        described.append(
            {
                "key": name,
                "service": TUNABLE[name][0],
                "override": row["value"] if row else None,
                "configured": base,
                "effective": effective,
                "bounds": bounds(name),
                "notes": note,
            }
        )
    return described


async def get(admin: Admin, args: argparse.Namespace) -> int:
    lines = [
        [
            d["key"],
            d["service"],
            d["override"],
            d["configured"],
            d["effective"],
            f"{d['notes']}; {d['bounds']}" if d["bounds"] else d["notes"],
        ]
        for d in await describe(admin, args.key)
    ]
    print(table(["key", "service", "override", "configured", "effective", "notes"], lines, indent=""))
    return 0


async def set_override(admin: Admin, key: str, raw: str) -> Any:
    """Validate and store an override; the value as the service will read it. Audited."""
    value = validate(key, raw)
    async with audited(admin, "settings-set", {"key": key, "value": raw}) as entry:
        previous = await admin.pool.fetchval("SELECT value FROM system_settings WHERE key = $1", key)
        await admin.pool.execute(
            "INSERT INTO system_settings (key, value) VALUES ($1, $2)"
            " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()",
            key,
            str(value),
        )
        entry.result = {"key": key, "value": str(value), "previous": previous, "service": TUNABLE[key][0]}
    return value


async def unset_override(admin: Admin, key: str) -> str | None:
    """Remove an override; the value it had (None: there was none). Audited when it removes one."""
    if key not in TUNABLE:
        exists = await admin.pool.fetchval("SELECT 1 FROM system_settings WHERE key = $1", key)
        if not exists:
            _settings_class(key)  # raises: unknown and not in the table
    async with audited(admin, "settings-unset", {"key": key}) as entry:
        removed: str | None = await admin.pool.fetchval(
            "DELETE FROM system_settings WHERE key = $1 RETURNING value", key
        )
        entry.result = {"key": key, "removed": removed}
    return removed


async def set_(admin: Admin, args: argparse.Namespace) -> int:
    value = await set_override(admin, args.key, args.value)
    print(f"{args.key} = {value} ({TUNABLE[args.key][0]} picks it up on its next settings refresh)")
    return 0


async def unset(admin: Admin, args: argparse.Namespace) -> int:
    removed = await unset_override(admin, args.key)
    if removed is None:
        print(f"{args.key} had no override")
        return 0
    if args.key in TUNABLE:
        base, origin = configured(args.key)
        print(f"{args.key}: override {removed!r} removed; back to {base} ({origin}) on the next refresh")
    else:
        print(f"{args.key}: row {removed!r} removed (it was not a tunable key)")
    return 0
