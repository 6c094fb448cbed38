"""`mintline status` as text: one small table per section."""

from typing import Any

from admin.common import duration, table

STATUSES = (
    "rendering",
    "rendered",
    "pending",
    "batched",
    "sent",
    "completed",
    "failed",
    "confirmation_failed",
)


def render(report: dict[str, Any]) -> str:
    out = [f"database {report['database']}  redis {report['redis']}  namespace {report['namespace']}", ""]
    queue = report["queue"]
    out.append(f"Requests ({queue['total']}; oldest pending {duration(queue['oldest_pending_seconds'])})")
    rows = []
    for status in STATUSES:
        by_kind = queue["counts"].get(status, {})
        rows.append([status, by_kind.get("token", 0), by_kind.get("nft", 0), sum(by_kind.values())])
    out += [table(["status", "token", "nft", "total"], rows), ""]

    in_flight = report["in_flight"]
    out.append(f"Transactions in flight ({len(in_flight)})")
    if in_flight:
        rows = [
            [
                b["id"],
                b["nonce"],
                b["kind"],
                b["status"],
                b["entries"],
                b["attempts"],
                duration(b["age_seconds"]),
                b["tx_hash"],
            ]
            for b in in_flight
        ]
        out.append(table(["batch", "nonce", "kind", "status", "entries", "attempts", "age", "tx hash"], rows))
    out.append("")

    nonces = report["nonces"]
    chain = nonces["chain"]
    out.append("Nonces" + (f" (chain head {chain['head']} via {chain['rpc_url']})" if chain else ""))
    if nonces["chain_error"]:
        out.append(f"  chain: {nonces['chain_error']}")
    if nonces["wallets"]:
        rows = [
            [
                w["wallet"],
                w["highest_nonce"],
                w["open"],
                w.get("chain_latest"),
                w.get("chain_pending"),
                w.get("lag"),
            ]
            for w in nonces["wallets"]
        ]
        out.append(table(["wallet", "highest stored", "open", "chain latest", "chain pending", "lag"], rows))
    out.append("")

    streams = report["streams"]
    out.append("Streams")
    if streams["error"]:
        out.append(f"  {streams['error']}")
    rows = []
    for s in streams["streams"]:
        groups = ", ".join(f"{g['group']}: {g['pending']} pending, lag {g['lag']}" for g in s["groups"])
        rows.append([s["stream"], s["length"], s["dead"], groups or "-"])
    if rows:
        out.append(table(["stream", "length", "dead", "groups"], rows))
    out.append("")

    jobs = report["render_jobs"]
    out.append("Render jobs")
    rows = [
        [status, jobs.get(status, {}).get("count", 0), duration(jobs.get(status, {}).get("oldest_seconds"))]
        for status in ("waiting", "active", "completed", "failed")
    ]
    out.append(table(["status", "count", "oldest"], rows))
    expired = jobs.get("active", {}).get("lease_expired", 0)
    if expired:
        out.append(f"  {expired} active job(s) with an expired lease (see reset-stuck)")
    return "\n".join(out)
