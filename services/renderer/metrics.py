from prometheus_client import Counter, Gauge, Histogram

RENDER_DURATION = Histogram(
    "mintline_render_duration_seconds",
    "Time to draw and encode one GIF",
    buckets=(0.25, 0.5, 1, 2, 4, 8, 16, 32, 64),
)
RENDER_PEAK_MEMORY = Histogram(
    "mintline_render_peak_memory_bytes",
    "Peak resident memory of one render process",
    buckets=tuple(mb * 2**20 for mb in (32, 64, 128, 256, 512, 1024, 2048)),
)
JOBS_FINISHED = Counter("mintline_render_jobs_total", "Render jobs finished, by final state", ["state"])
JOBS_ACTIVE = Gauge("mintline_render_jobs_active", "Render jobs this renderer is working on")
ATTEMPTS_FAILED = Counter("mintline_render_attempts_failed_total", "Render attempts that failed")
PINS = Counter("mintline_pins_total", "Objects pinned to IPFS, by kind", ["kind"])
# From PostgreSQL, so every renderer exports the same values: dashboards take `max by (state)`.
JOBS_OPEN = Gauge("mintline_render_queue_jobs", "Render jobs waiting or active (all renderers)", ["state"])
OPEN_STATES = ("waiting", "active")
