-- Intake's throughput estimate reads recent completions every few seconds.
CREATE INDEX mint_requests_completed_at ON mint_requests (processed_at) WHERE status = 'completed';
