"""`eth_getLogs` over a bounded range: hosted providers refuse a query spanning more than a few thousand
blocks, so a search walks its range in chunks, from the earliest block the logs can be in."""

from typing import Any

from shared.jsonrpc import JsonRpc


async def find_logs(
    rpc: JsonRpc,
    query: dict[str, Any],
    from_block: int,
    to_block: int,
    max_range: int,
    *,
    first_only: bool = False,
) -> list[dict[str, Any]]:
    """The logs matching `query` (address, topics) in [from_block, to_block], oldest first, asked for
    `max_range` blocks at a time; with `first_only`, the search stops at the first chunk that has any."""
    found: list[dict[str, Any]] = []
    start = max(from_block, 0)
    while start <= to_block:
        end = min(start + max_range - 1, to_block)
        chunk = await rpc.call("eth_getLogs", [{**query, "fromBlock": hex(start), "toBlock": hex(end)}])
        found.extend(chunk or [])
        if found and first_only:
            break
        start = end + 1
    return found
