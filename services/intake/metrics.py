"""Intake's Prometheus metrics (the process-wide registry, served at GET /metrics; with several
workers, their totals: shared/metrics.py)."""

from prometheus_client import Counter, Gauge, Histogram

HTTP_REQUESTS = Counter(
    "mintline_intake_http_requests_total", "HTTP requests answered by intake", ["route", "method", "status"]
)
HTTP_DURATION = Histogram(
    "mintline_intake_http_request_duration_seconds",
    "Time to answer an HTTP request",
    ["route"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
MINTS_ACCEPTED = Counter(
    "mintline_mints_accepted_total", "Mint requests accepted and committed to PostgreSQL", ["payment_type"]
)
PAYMENTS_REJECTED = Counter(
    "mintline_payments_rejected_total", "Mint requests refused, by error code", ["reason"]
)
PUBLISH_FAILURES = Counter(
    "mintline_intake_publish_failures_total",
    "mint.requested XADDs that failed after the commit (replayed later)",
)
ENQUEUE_BATCH_SIZE = Histogram(
    "mintline_intake_enqueue_batch_requests",
    "Requests accepted together in one intake_enqueue statement (services/intake/enqueue_batches.py)",
    buckets=(2, 4, 8, 16, 32, 64),
)
ENQUEUE_BATCHES_SPLIT = Counter(
    "mintline_intake_enqueue_batches_split_total",
    "intake_enqueue statements of several requests that failed, whose requests then ran one by one",
)
REPUBLISHED = Counter(
    "mintline_intake_republished_total", "mint.requested events published again from PostgreSQL"
)
# Every worker sets it from the same read of PostgreSQL: the latest one is the figure.
QUEUE_DEPTH = Gauge(
    "mintline_queue_depth_requests", "Requests pending, batched or sent", multiprocess_mode="livemostrecent"
)
WEBHOOK_ATTEMPTS = Counter("mintline_webhook_attempts_total", "Webhook POSTs, by outcome", ["outcome"])
WEBHOOK_DELIVERIES = Counter(
    "mintline_webhook_deliveries_total", "Webhook deliveries finished, delivered or failed", ["outcome"]
)
