-- A batch the chain would never take as signed (over a gas cap, refused again and again): its nonce
-- carries a no-op self-transfer instead, so later nonces go on, and its requests went back to the
-- queue. The reason stays on the batch for operators.
ALTER TABLE batches ADD COLUMN fill_reason text;
