"""`mintline status`: the queue, the transactions in flight, each wallet's nonces (stored and on
chain), the streams and the render jobs, as a table or as JSON."""

import argparse
import json
from typing import Any

import aiohttp
from redis.exceptions import RedisError, ResponseError

from admin.common import Admin, mask_url
from admin.status_view import render
from shared import keys
from shared.jsonrpc import JsonRpc, RpcError

STREAMS = (
    keys.RENDER_REQUESTED,
    keys.MINT_REQUESTED,
    keys.TX_SENT,
    keys.TX_STUCK,
    keys.MINT_COMPLETED,
    keys.MINT_FAILED,
)
IN_FLIGHT = """
SELECT id, wallet, nonce, kind, status, cardinality(request_ids) AS entries, attempts, tx_hash,
       extract(epoch FROM now() - created_at)::float8 AS age_seconds,
       max_fee_per_gas::text AS max_fee_per_gas, max_priority_fee_per_gas::text AS max_priority_fee_per_gas
FROM batches WHERE status IN ('signed', 'sent') ORDER BY wallet, nonce
"""
STORED_NONCES = """
SELECT wallet, max(nonce) AS highest_nonce, count(*) FILTER (WHERE status IN ('signed', 'sent')) AS open
FROM batches GROUP BY wallet ORDER BY wallet
"""
RENDER_JOBS = """
SELECT status, count(*) AS count,
       count(*) FILTER (WHERE status = 'active' AND lease_until < now()) AS lease_expired,
       extract(epoch FROM now() - min(created_at))::float8 AS oldest_seconds
FROM render_jobs GROUP BY status
"""
RPC_TIMEOUT_SECONDS = 5.0


async def run(admin: Admin, args: argparse.Namespace) -> int:
    report = await collect(admin)
    print(json.dumps(report, indent=2) if args.json else render(report))
    return 0


async def collect(admin: Admin) -> dict[str, Any]:
    return {
        "database": mask_url(admin.settings.database_url),
        "redis": mask_url(admin.settings.redis_url),
        "namespace": admin.settings.namespace,
        "queue": await _queue(admin),
        "in_flight": [dict(row) for row in await admin.pool.fetch(IN_FLIGHT)],
        "nonces": await nonces(admin),
        "streams": await streams(admin),
        "render_jobs": {row["status"]: dict(row) for row in await admin.pool.fetch(RENDER_JOBS)},
    }


async def _queue(admin: Admin) -> dict[str, Any]:
    rows = await admin.pool.fetch("SELECT status, kind, count(*) AS count FROM mint_requests GROUP BY 1, 2")
    counts: dict[str, dict[str, int]] = {}
    for row in rows:
        counts.setdefault(row["status"], {})[row["kind"]] = row["count"]
    oldest = await admin.pool.fetchval(
        "SELECT extract(epoch FROM now() - min(created_at))::float8 FROM mint_requests"
        " WHERE status = 'pending'"
    )
    return {
        "counts": counts,
        "total": sum(row["count"] for row in rows),
        "oldest_pending_seconds": oldest,
    }


async def nonces(admin: Admin) -> dict[str, Any]:
    """Stored nonces per wallet, and the chain's view of each when a node answers."""
    wallets = {row["wallet"]: dict(row) for row in await admin.pool.fetch(STORED_NONCES)}
    settings = admin.settings
    try:
        for minter in settings.deployment.minters:
            wallets.setdefault(minter, {"wallet": minter, "highest_nonce": None, "open": 0})
    except (OSError, ValueError):
        pass  # no deployment file: the stored wallets are all there is to show
    result: dict[str, Any] = {"wallets": list(wallets.values()), "chain": None, "chain_error": None}
    try:
        rpc_url = settings.chain_rpc_url
    except (OSError, ValueError):
        result["chain_error"] = "no RPC_URL and no readable deployment file"
        return result
    if not wallets:
        return result
    names = list(wallets)
    calls = [("eth_blockNumber", [])] + [
        ("eth_getTransactionCount", [wallet, tag]) for wallet in names for tag in ("latest", "pending")
    ]
    calls += [("eth_getBalance", [wallet, "latest"]) for wallet in names]
    timeout = aiohttp.ClientTimeout(total=RPC_TIMEOUT_SECONDS)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            head, *counts = await JsonRpc(rpc_url, session).batch(calls)
    except RpcError as exc:
        result["chain_error"] = f"chain unreachable at {mask_url(rpc_url)}: {exc}"
        return result
    result["chain"] = {"rpc_url": mask_url(rpc_url), "head": int(head, 16)}
    balances = counts[2 * len(names) :]
    for index, wallet in enumerate(names):
        entry = wallets[wallet]
        latest, pending = int(counts[2 * index], 16), int(counts[2 * index + 1], 16)
        # Text: wei overflow a JavaScript number.
        entry["balance_wei"] = str(int(balances[index], 16))
        next_stored = 0 if entry["highest_nonce"] is None else entry["highest_nonce"] + 1
        # Stored transactions not mined yet, and those the node does not even hold in its pool.
        entry.update(chain_latest=latest, chain_pending=pending, lag=max(0, next_stored - latest))
        entry["not_in_node"] = max(0, next_stored - pending)
    return result


async def streams(admin: Admin) -> dict[str, Any]:
    names = admin.settings.keys
    streams = []
    try:
        for name in STREAMS:
            stream = names.stream(name)
            groups = []
            try:
                for group in await admin.redis.xinfo_groups(stream):
                    groups.append(
                        {
                            "group": _text(group["name"]),
                            "consumers": group["consumers"],
                            "pending": group["pending"],
                            "lag": group.get("lag"),
                        }
                    )
            except ResponseError:
                pass  # no such stream yet
            streams.append(
                {
                    "stream": name,
                    "length": await admin.redis.xlen(stream),
                    "dead": await admin.redis.xlen(names.dead(name)),
                    "groups": groups,
                }
            )
    except (RedisError, OSError) as exc:
        return {
            "streams": streams,
            "error": f"Redis unreachable at {mask_url(admin.settings.redis_url)}: {exc}",
        }
    return {"streams": streams, "error": None}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
