from prometheus_client import Counter, Gauge, Histogram

from services.batcher.send_errors import Refusal

BATCHES_SENT = Counter("mintline_batches_sent_total", "batchMint transactions signed and broadcast")
BATCH_SIZE = Histogram(
    "mintline_batch_size_entries", "Entries per batch", buckets=(1, 5, 10, 25, 50, 100, 200, 300, 500, 1000)
)
FEE_BUMPS = Counter("mintline_fee_bumps_total", "Replacement transactions with higher fees")
FEE_BUMPS_REFUSED = Counter(
    "mintline_fee_bumps_refused_total",
    "Stuck reports answered without a replacement: not_accepted (rebroadcast as is), spacing, max_bumps,"
    " ceiling",
    ["reason"],
)
FEES_CLAMPED = Counter("mintline_fees_clamped_total", "Fee quotes cut down to BATCHER_MAX_FEE_GWEI")
FEE_CEILING_WAITING = Gauge(
    "mintline_batcher_fee_ceiling_waiting",
    "1 while batches wait because the chain asks more than BATCHER_MAX_FEE_GWEI",
)
MAX_FEE = Gauge("mintline_batcher_max_fee_per_gas_wei", "Max fee per gas (legacy: gas price) offered now")
BROADCAST_ERRORS = Counter(
    "mintline_broadcast_errors_total",
    "Broadcasts no endpoint took, by what the node said (services/batcher/send_errors.py)",
    ["reason"],
)
UNSENDABLE = Counter(
    "mintline_batcher_unsendable_total",
    "Batches the chain would not take as signed, by reason (fees: re-signed; too_large, rejected: nonce"
    " filled with a no-op and requests requeued; funds: waiting for funds)",
    ["reason"],
)
NONCE_FILLS = Counter(
    "mintline_batcher_nonce_fills_total", "No-op self-transfers sent in place of an unsendable batch"
)
WAITING_FOR_FUNDS = Gauge(
    "mintline_batcher_waiting_for_funds",
    "1 while the wallet cannot pay for the next transaction: batches wait until it is funded",
)
EXPIRED_BEFORE_BATCH = Counter(
    "mintline_authorizations_expired_total", "Requests failed because their authorization expired in queue"
)
NEXT_NONCE = Gauge("mintline_batcher_next_nonce", "Next nonce the batcher will assign")
IN_FLIGHT = Gauge("mintline_batches_in_flight", "Batches signed or sent, not yet confirmed")
ACTIVE = Gauge("mintline_batcher_active", "1 when this batcher holds the wallet lock, 0 on standby")
# Wallet health, labelled by wallet and exported only by the active batcher (a standby has no values).
WALLET_BALANCE = Gauge("mintline_wallet_balance_wei", "The wallet's balance at the latest block", ["wallet"])
CHAIN_NONCE = Gauge(
    "mintline_wallet_chain_nonce", "The wallet's transaction count at the latest block", ["wallet"]
)
NONCE_LAG = Gauge(
    "mintline_nonce_lag_transactions",
    "Nonces the batcher assigned that the chain has not mined yet (next nonce minus chain nonce)",
    ["wallet"],
)
OLDEST_IN_FLIGHT = Gauge(
    "mintline_oldest_in_flight_batch_age_seconds",
    "How long the oldest batch signed or sent and not yet confirmed has waited (0 with none)",
    ["wallet"],
)

# Every reason exported from the start, at 0: a sum over none of them would be no value at all.
for _refusal in Refusal:
    if _refusal not in (Refusal.KNOWN, Refusal.NONCE_USED):
        BROADCAST_ERRORS.labels(_refusal.value)
    if _refusal not in (Refusal.KNOWN, Refusal.NONCE_USED, Refusal.TRANSIENT):
        UNSENDABLE.labels(_refusal.value)
