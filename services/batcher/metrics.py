from prometheus_client import Counter, Gauge, Histogram

BATCHES_SENT = Counter("mintline_batches_sent_total", "batchMint transactions signed and broadcast")
BATCH_SIZE = Histogram(
    "mintline_batch_size_entries", "Entries per batch", buckets=(1, 5, 10, 25, 50, 100, 200, 300, 500, 1000)
)
FEE_BUMPS = Counter("mintline_fee_bumps_total", "Replacement transactions with higher fees")
BROADCAST_ERRORS = Counter("mintline_broadcast_errors_total", "Failed broadcasts (retried)")
EXPIRED_BEFORE_BATCH = Counter(
    "mintline_authorizations_expired_total", "Requests failed because their authorization expired in queue"
)
NEXT_NONCE = Gauge("mintline_batcher_next_nonce", "Next nonce the batcher will assign")
IN_FLIGHT = Gauge("mintline_batches_in_flight", "Batches signed or sent, not yet confirmed")
ACTIVE = Gauge("mintline_batcher_active", "1 when this batcher holds the wallet lock, 0 on standby")
