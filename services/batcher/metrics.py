"""The batcher's metrics. Everything about one signer wallet carries its `wallet` label (the
checksummed address), so one process with several wallets, or several processes, export one series
per wallet; `export_wallet` creates a wallet's series at start-up."""

from prometheus_client import Counter, Gauge, Histogram

from services.batcher.send_errors import Refusal

BATCHES_SENT = Counter(
    "mintline_batches_sent_total", "batchMint transactions signed and broadcast", ["wallet"]
)
BATCH_SIZE = Histogram(
    "mintline_batch_size_entries",
    "Entries per batch",
    ["wallet"],
    buckets=(1, 5, 10, 25, 50, 100, 200, 300, 500, 1000),
)
FEE_BUMPS = Counter("mintline_fee_bumps_total", "Replacement transactions with higher fees", ["wallet"])
FEE_BUMPS_REFUSED = Counter(
    "mintline_fee_bumps_refused_total",
    "Stuck reports answered without a replacement (the stored bytes are sent again): not_accepted,"
    " spacing, max_bumps, ceiling",
    ["reason", "wallet"],
)
FEES_CLAMPED = Counter(
    "mintline_fees_clamped_total", "Fee quotes cut down to BATCHER_MAX_FEE_GWEI", ["wallet"]
)
FEE_CEILING_WAITING = Gauge(
    "mintline_batcher_fee_ceiling_waiting",
    "1 while batches wait because the chain asks more than BATCHER_MAX_FEE_GWEI",
    ["wallet"],
)
MAX_FEE = Gauge(
    "mintline_batcher_max_fee_per_gas_wei", "Max fee per gas (legacy: gas price) offered now", ["wallet"]
)
BROADCAST_ERRORS = Counter(
    "mintline_broadcast_errors_total",
    "Broadcasts no endpoint took, by what the node said (services/batcher/send_errors.py)",
    ["reason", "wallet"],
)
UNSENDABLE = Counter(
    "mintline_batcher_unsendable_total",
    "Batches the chain would not take as signed, by reason (fees: re-signed; too_large, rejected: nonce"
    " filled with a no-op and requests requeued; funds: waiting for funds; nonce_hole: a nonce nothing"
    " held, filled with a no-op)",
    ["reason", "wallet"],
)
NONCE_FILLS = Counter(
    "mintline_batcher_nonce_fills_total",
    "No-op self-transfers sent in place of an unsendable batch",
    ["wallet"],
)
WAITING_FOR_FUNDS = Gauge(
    "mintline_batcher_waiting_for_funds",
    "1 while the wallet cannot pay for the next transaction: it takes no batches until it is funded",
    ["wallet"],
)
RELEASED = Counter(
    "mintline_batcher_released_requests_total",
    "Requests a wallet gave back to the queue for other wallets: buffered ones when it stopped taking"
    " batches, and those of its unsent batches after it could not pay for BATCHER_RELEASE_AFTER_SECONDS",
    ["wallet"],
)
TAKING = Gauge(
    "mintline_batcher_taking_batches",
    "1 while the wallet takes new batches; 0 on standby, or while it cannot pay or is wedged",
    ["wallet"],
)
EXPIRED_BEFORE_BATCH = Counter(
    "mintline_authorizations_expired_total", "Requests failed because their authorization expired in queue"
)
NEXT_NONCE = Gauge("mintline_batcher_next_nonce", "Next nonce the batcher will assign", ["wallet"])
IN_FLIGHT = Gauge("mintline_batches_in_flight", "Batches signed or sent, not yet confirmed", ["wallet"])
ACTIVE = Gauge(
    "mintline_batcher_active", "1 when this batcher holds the wallet lock, 0 on standby", ["wallet"]
)
# Wallet health, exported only by the active batcher of the wallet (a standby has no values).
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


def export_wallet(wallet: str) -> None:
    """A wallet's series from the start, at 0: a sum or an increase over none would be no value."""
    for counter in (BATCHES_SENT, FEE_BUMPS, FEES_CLAMPED, NONCE_FILLS, RELEASED):
        counter.labels(wallet)
    BATCH_SIZE.labels(wallet)
    for gauge in (FEE_CEILING_WAITING, WAITING_FOR_FUNDS, TAKING, NEXT_NONCE, IN_FLIGHT, ACTIVE):
        gauge.labels(wallet)
    for refusal in Refusal:
        if refusal not in (Refusal.KNOWN, Refusal.NONCE_USED):
            BROADCAST_ERRORS.labels(refusal.value, wallet)
        if refusal not in (Refusal.KNOWN, Refusal.NONCE_USED, Refusal.TRANSIENT):
            UNSENDABLE.labels(refusal.value, wallet)
    UNSENDABLE.labels("nonce_hole", wallet)
