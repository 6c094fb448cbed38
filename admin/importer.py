"""`mintline import-sqlite`: the original server's `processed_payments` table, as `completed` requests.

The original single-wallet server kept one row per processed payment. Each becomes a `completed`
token request (the trigger records its history), so the payment counts as used here too: intake
refuses it again and the status API finds it. Rows whose payment_id is already present are skipped
(ON CONFLICT DO NOTHING), so importing twice imports nothing new.

Columns are matched by name, case-insensitively, from the aliases below; payment_id and payer are
required. A `nonce` column holding an EIP-3009 nonce (bytes32) becomes keccak(payer, nonce), the
paymentId intake computes for that authorization.
"""

import argparse
import sqlite3
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from eth_utils import is_address, to_checksum_address

from admin.common import Admin, Progress, UsageError, note
from services.intake.payments import payment_id as authorization_payment_id

CHUNK = 500
ALIASES = {
    "payment_id": (
        "payment_id",
        "paymentid",
        "payment_hash",
        "tx_hash",
        "txhash",
        "transaction_hash",
        "nonce",
    ),
    "payer": ("payer", "payer_address", "from_address", "sender", "from", "buyer"),
    "amount": ("amount", "value", "amount_paid", "price"),
    "mint_tx_hash": ("mint_tx_hash", "mint_tx", "minttxhash", "mint_hash", "mint_transaction_hash"),
    "payment_type": ("payment_type", "paymenttype", "type", "method"),
    "processed_at": ("processed_at", "processedat", "created_at", "timestamp", "time"),
    "tx_hash": ("tx_hash", "txhash", "transaction_hash", "payment_tx_hash"),
}
PAYMENT_TYPES = {
    "eip3009": "gasless",
    "eip-3009": "gasless",
    "authorization": "gasless",
    "transfer": "custom",
}
# Imported rows get stable ids, so the same payment always maps to the same request id.
NAMESPACE = uuid.UUID("5b0f3c8e-6c1e-4a53-9a55-6d696e746c69")
INSERT = """
INSERT INTO mint_requests (id, kind, payer_address, payment_type, payment_id, amount, payment_tx_hash,
                           mint_tx_hash, status, created_at, updated_at, processed_at)
SELECT r.id, 'token', r.payer, r.payment_type, r.payment_id, r.amount, r.payment_tx_hash, r.mint_tx_hash,
       'completed', coalesce(r.at, now()), now(), r.at
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::numeric[], $6::text[], $7::text[],
            $8::timestamptz[])
     AS r(id, payer, payment_type, payment_id, amount, payment_tx_hash, mint_tx_hash, at)
ON CONFLICT DO NOTHING
RETURNING id
"""


@dataclass
class Columns:
    """Which source column feeds each field (None: absent)."""

    found: dict[str, str | None]

    @classmethod
    def match(cls, names: list[str], table: str) -> "Columns":
        lower = {name.lower(): name for name in names}
        found = {
            field: next((lower[a] for a in aliases if a in lower), None) for field, aliases in ALIASES.items()
        }
        missing = [field for field in ("payment_id", "payer") if found[field] is None]
        if missing:
            raise UsageError(
                f"table {table} has no column for {' and '.join(missing)} (looked for "
                + "; ".join(f"{field}: {', '.join(ALIASES[field])}" for field in missing)
                + f"); its columns: {', '.join(names)}"
            )
        if found["tx_hash"] == found["payment_id"]:
            found["tx_hash"] = None
        return cls(found)


def convert(row: sqlite3.Row, columns: Columns) -> tuple[Any, ...]:
    """One source row as insert values; ValueError says what is wrong with it."""

    def value(field: str) -> Any:
        name = columns.found[field]
        raw = None if name is None else row[name]
        return raw.strip() if isinstance(raw, str) else raw

    payer = value("payer")
    if not payer:
        raise ValueError("empty payer")
    payer = to_checksum_address(payer) if is_address(payer) else str(payer)
    payment_id = _hex(value("payment_id"))
    if not payment_id:
        raise ValueError("empty payment_id")
    if (
        (columns.found["payment_id"] or "").lower() == "nonce"
        and payer.startswith("0x")
        and _is_bytes32(payment_id)
    ):
        payment_id = authorization_payment_id(payer, payment_id)
    kind = str(value("payment_type") or "x402").lower()
    payment_type = kind if kind in ("x402", "gasless", "custom") else PAYMENT_TYPES.get(kind, "x402")
    tx_hash = _hex(value("tx_hash")) if payment_type == "custom" else None
    return (
        uuid.uuid5(NAMESPACE, payment_id),
        payer,
        payment_type,
        payment_id,
        _amount(value("amount")),
        tx_hash or None,
        _hex(value("mint_tx_hash")) or None,
        _moment(value("processed_at")),
    )


def _hex(raw: Any) -> str:
    text = "" if raw is None else str(raw)
    return text.lower() if text[:2].lower() == "0x" else text


def _is_bytes32(text: str) -> bool:
    return len(text) == 66 and all(c in "0123456789abcdef" for c in text[2:])


def _amount(raw: Any) -> Decimal:
    if raw is None or raw == "":
        return Decimal(0)
    try:
        amount = (
            Decimal(int(raw, 16)) if isinstance(raw, str) and raw.lower().startswith("0x") else Decimal(raw)
        )
    except (InvalidOperation, ValueError, TypeError):
        raise ValueError(f"amount {raw!r} is not a number") from None
    if amount < 0 or amount != amount.to_integral_value():
        raise ValueError(f"amount {raw!r} is not a whole number of USDC units")
    return amount


def _moment(raw: Any) -> datetime | None:
    """Unix seconds (or milliseconds), as a number or text, or ISO 8601 text; None when absent."""
    if raw is None or raw == "":
        return None
    try:
        seconds = float(raw)
    except (TypeError, ValueError):
        try:
            moment = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"processed_at {raw!r} is neither unix seconds nor ISO 8601") from None
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return datetime.fromtimestamp(seconds / 1000 if seconds > 1e11 else seconds, UTC)


def _open(path_text: str) -> tuple[Path, sqlite3.Connection]:
    path = Path(path_text)
    if not path.is_file():
        raise UsageError(f"no such file: {path}")
    return path, sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)


async def run(admin: Admin, args: argparse.Namespace) -> int:
    path, source = _open(args.path)
    try:
        return await _import(admin, source, args.table, path)
    except sqlite3.DatabaseError as exc:
        raise UsageError(f"cannot read {path} as SQLite: {exc}") from None
    finally:
        source.close()


async def _import(admin: Admin, source: sqlite3.Connection, table: str, path: Path) -> int:
    source.row_factory = sqlite3.Row
    names = [row["name"] for row in source.execute("SELECT name FROM pragma_table_info(?)", (table,))]
    if not names:
        raise UsageError(f"{path} has no table {table!r}")
    columns = Columns.match(names, table)
    mapped = ", ".join(f"{field} <- {name}" for field, name in columns.found.items() if name)
    note(f"importing {path} table {table}: {mapped}")
    quoted = '"' + table.replace('"', '""') + '"'
    total = source.execute(f"SELECT count(*) FROM {quoted}").fetchone()[0]
    progress = Progress("import-sqlite", total)
    cursor = source.execute(f"SELECT * FROM {quoted}")
    imported = invalid = 0
    while rows := cursor.fetchmany(CHUNK):
        batch: dict[str, tuple[Any, ...]] = {}
        for row in rows:
            try:
                values = convert(row, columns)
            except ValueError as exc:
                invalid += 1
                if invalid <= 10:
                    note(f"skipping row {dict(row)}: {exc}")
                continue
            batch.setdefault(values[3], values)  # a payment listed twice in the file: keep the first
        if batch:
            inserted = await admin.pool.fetch(
                INSERT, *(list(column) for column in zip(*batch.values(), strict=True))
            )
            imported += len(inserted)
        progress.advance(len(rows))
    progress.finish()
    print(
        f"import-sqlite {path}: {total} rows read, {imported} imported as completed, "
        f"{total - imported - invalid} already present (or repeated), {invalid} invalid"
    )
    return 1 if invalid else 0
