"""What a mined batch did to each of its requests, from the receipt of whichever attempt was mined:
completed (with the mint's transaction and token id), failed for good (with the reason), or retried as
a new attempt (with the reason). A batch whose nonce another transaction took retries all of them."""

from dataclasses import dataclass, field

import asyncpg

from services.confirmer.lookups import Lookups
from services.confirmer.receipts import ALREADY_PROCESSED, AUTHORIZATION_SPENT, outcomes

NOT_PAID = (
    "not paid: the authorization's nonce was cancelled or spent by a different authorization, "
    "so no payment reached the treasury"
)
REVERTED = "batch transaction reverted"
TAKEN = "batch transaction dropped: its nonce was used by another transaction"
OPEN_REQUESTS = (
    "SELECT id, payment_id, authorization_data, accepted_block FROM mint_requests"
    " WHERE batch_id = $1 AND status IN ('batched', 'sent')"
)


@dataclass
class Settlement:
    completed: dict[str, str] = field(default_factory=dict)  # request id -> mint tx hash
    token_ids: dict[str, int] = field(default_factory=dict)  # request id -> NFT token id
    failed: dict[str, str] = field(default_factory=dict)  # request id -> reason
    retry: dict[str, str] = field(default_factory=dict)  # request id -> reason
    paid_elsewhere: set[str] = field(default_factory=set)  # retried without their authorization


async def settle_receipt(
    pool: asyncpg.Pool, lookups: Lookups, batch_id: int, kind: str, contract: str, receipt: dict
) -> Settlement:
    """Each open request of the batch, judged by the receipt (a raw JSON-RPC receipt: hex fields)."""
    rows = await pool.fetch(OPEN_REQUESTS, batch_id)
    settlement = Settlement()
    if int(receipt["status"], 16) != 1:
        settlement.retry = {str(r["id"]): REVERTED for r in rows}
        return settlement
    block = int(receipt["blockNumber"], 16)
    found = outcomes(receipt["logs"], contract)
    for row in rows:
        request_id, outcome = str(row["id"]), found.get(row["payment_id"].lower())
        if outcome is None:
            settlement.retry[request_id] = "no outcome for this entry in the receipt"
        elif outcome.minted:
            settlement.completed[request_id] = receipt["transactionHash"]
            if kind == "nft" and outcome.value is not None:
                settlement.token_ids[request_id] = outcome.value
        elif outcome.reason == ALREADY_PROCESSED:
            # Minted by an earlier transaction (a resend after a crash): find which one.
            earlier = await lookups.minted_in(contract, row, block)
            if earlier:
                settlement.completed[request_id] = earlier["transactionHash"]
                if kind == "nft":
                    settlement.token_ids[request_id] = int(earlier["data"], 16)
            else:
                settlement.failed[request_id] = ALREADY_PROCESSED
        elif AUTHORIZATION_SPENT in (outcome.reason or ""):
            if await lookups.authorization_paid(row, block):
                # Someone submitted the payer's own signed transfer before our batch: the
                # treasury is paid all the same, so mint without settling it again.
                settlement.retry[request_id] = "authorization settled outside the batch"
                settlement.paid_elsewhere.add(request_id)
            else:
                settlement.failed[request_id] = NOT_PAID
        else:
            settlement.failed[request_id] = outcome.reason or "skipped"
    return settlement


async def settle_taken(pool: asyncpg.Pool, batch_id: int) -> Settlement:
    """Nothing of the batch was mined, and its nonce is gone: every open request is retried."""
    rows = await pool.fetch(OPEN_REQUESTS, batch_id)
    return Settlement(retry={str(r["id"]): TAKEN for r in rows})
