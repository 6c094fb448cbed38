-- NFT mints: the token id the contract assigned, and one render job per NFT request (job id = request
-- id). The job row is the durable record of rendering and pinning; Redis only caches recent jobs.
ALTER TABLE mint_requests ADD COLUMN token_id numeric(78, 0);

CREATE TABLE render_jobs (
    request_id      uuid PRIMARY KEY REFERENCES mint_requests (id),
    settings        jsonb NOT NULL,
    status          text NOT NULL DEFAULT 'waiting'
                        CHECK (status IN ('waiting', 'active', 'completed', 'failed')),
    progress        smallint NOT NULL DEFAULT 0 CHECK (progress IN (0, 33, 66, 100)),
    attempts        integer NOT NULL DEFAULT 0,
    -- Recorded as soon as each pin succeeds, so a retried or reclaimed job never pins twice.
    image_cid       text,
    image_url       text,
    metadata_cid    text,
    metadata_url    text,
    error           text,
    -- The renderer working on it, until when (renewed while it runs; a dead renderer's lease lapses).
    leased_by       text,
    lease_until     timestamptz,
    render_seconds  double precision,
    peak_rss_bytes  bigint,
    created_at      timestamptz NOT NULL DEFAULT now(),
    started_at      timestamptz,
    finished_at     timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX render_jobs_open ON render_jobs (created_at) WHERE status IN ('waiting', 'active');

-- Requests waiting for their render count in the queue and reserve the payer's balance too.
DROP INDEX mint_requests_active;
CREATE INDEX mint_requests_active ON mint_requests (seq)
    WHERE status IN ('rendering', 'rendered', 'pending', 'batched', 'sent');
