from prometheus_client import Counter, Gauge, Histogram

MINTS_COMPLETED = Counter("mintline_mints_completed_total", "Requests minted and confirmed")
MINTS_FAILED = Counter("mintline_mints_failed_total", "Requests that ended failed", ["reason"])
RETRIES = Counter("mintline_mint_retries_total", "Requests sent back to the queue after a failed batch")
REORGS = Counter("mintline_reorgs_total", "Receipts whose block left the canonical chain")
REORGED_AFTER_CONFIRMED = Counter(
    "mintline_batches_reorged_after_confirmed_total",
    "Confirmed batches whose block left the canonical chain: reopened and settled again",
)
STUCK = Counter("mintline_tx_stuck_total", "Fee bumps asked for late transactions")
REQUEST_DURATION = Histogram(
    "mintline_request_duration_seconds",
    "Time from request accepted to completed",
    buckets=(1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377, 600),
)
GAS_PER_MINT = Histogram(
    "mintline_gas_per_mint",
    "Gas used per minted entry",
    buckets=(30e3, 50e3, 70e3, 90e3, 120e3, 200e3, 500e3),
)
WATCHED = Gauge("mintline_batches_watched", "Batches the confirmer is waiting on")
HEAD = Gauge("mintline_chain_head_block", "Latest block number seen")
NONCES_TAKEN = Counter(
    "mintline_nonces_taken_total",
    "Batches whose nonce a transaction mintline did not sign used: their requests were retried",
)
