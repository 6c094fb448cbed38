-- A payer's requests as their history grows (bench/growth.py, 1,000,000 requests of which 20,000 are
-- one payer's). GET /queue/payer counts the payer's requests per status: with the status in the payer
-- index that is an index-only scan, not a heap read per request the payer ever made. POST /mint reads
-- the payer's queued authorizations (QUEUED_NONCES, RESERVED): a partial index of queued requests by
-- payer reads only those, where the planner otherwise chose between every request of the payer and
-- every queued request of everyone.
DROP INDEX mint_requests_payer;
CREATE INDEX mint_requests_payer ON mint_requests (payer_address, seq) INCLUDE (status);
CREATE INDEX mint_requests_payer_queued ON mint_requests (payer_address, seq)
    WHERE status IN ('rendering', 'rendered', 'pending', 'batched', 'sent');
