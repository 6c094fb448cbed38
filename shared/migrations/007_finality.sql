-- A confirmed batch is watched until its block is final: the transaction that was mined and the hash
-- of its block tell a reorg (the block at that height changed) from a chain that only grew.
ALTER TABLE batches ADD COLUMN mined_tx_hash text;
ALTER TABLE batches ADD COLUMN block_hash text;
ALTER TABLE batches ADD COLUMN finalized_at timestamptz;
CREATE INDEX batches_unfinalized ON batches (block_number)
    WHERE status = 'confirmed' AND finalized_at IS NULL;

-- A request reopened after `completed` (its batch reorged out) keeps the reason in its history too.
CREATE OR REPLACE FUNCTION record_mint_request_status() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'INSERT' OR NEW.status IS DISTINCT FROM OLD.status THEN
        INSERT INTO mint_request_history (request_id, status, reason)
        VALUES (NEW.id, NEW.status,
                CASE WHEN NEW.status IN ('failed', 'confirmation_failed')
                          OR (TG_OP = 'UPDATE' AND OLD.status IN ('completed', 'failed') AND NEW.status = 'sent')
                     THEN NEW.error_message END);
    END IF;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;
