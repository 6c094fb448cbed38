-- A custom payment claims one USDC Transfer log (transaction hash and log index), once. Rows from
-- before log indexes were kept (and the original server's imported payments) have no index: they
-- claim their whole transaction, which intake checks when a new claim names it.
ALTER TABLE mint_requests ADD COLUMN payment_log_index integer;
ALTER TABLE mint_requests DROP CONSTRAINT mint_requests_payment_tx_hash_key;
CREATE UNIQUE INDEX mint_requests_payment_log ON mint_requests (payment_tx_hash, payment_log_index)
    WHERE payment_tx_hash IS NOT NULL AND payment_log_index IS NOT NULL;
CREATE INDEX mint_requests_payment_tx ON mint_requests (payment_tx_hash) WHERE payment_tx_hash IS NOT NULL;

-- The block intake read the payment's chain state in: an authorization unused then can only have been
-- used after it, so searches for its use start there instead of at block 0.
ALTER TABLE mint_requests ADD COLUMN accepted_block bigint;
