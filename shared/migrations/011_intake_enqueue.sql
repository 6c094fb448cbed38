-- Intake accepts a request in one statement (intake_enqueue below): the conflict checks, the payer's
-- reservation, the queue position, the expiry check and the insert, under the payer's advisory lock
-- for that statement's transaction only.
--
-- The queue position is the queue's depth (per kind) plus one, kept here by statement-level triggers
-- instead of counted over the queued rows on every request. Every insert, status change and delete
-- adds its net change of queued requests to one shard row, chosen by the backend (a connection keeps
-- writing its own row, so concurrent writers rarely wait on each other); the depth is the sum of a
-- kind's shards. A plain sequence cannot do this: a rolled-back or conflicting insert spends a value
-- for good, and the positions would drift further off with every refused request.
CREATE TABLE mint_queue_depth (
    kind   text NOT NULL,
    shard  smallint NOT NULL,
    n      bigint NOT NULL,
    PRIMARY KEY (kind, shard)
);

CREATE FUNCTION count_queued_requests() RETURNS trigger AS $$
DECLARE
    picked smallint := (pg_backend_pid() % 64)::smallint;
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO mint_queue_depth (kind, shard, n)
        SELECT kind, picked, count(*) FROM new_rows
        WHERE status IN ('rendering', 'rendered', 'pending', 'batched', 'sent') GROUP BY kind
        ON CONFLICT (kind, shard) DO UPDATE SET n = mint_queue_depth.n + excluded.n;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO mint_queue_depth (kind, shard, n)
        SELECT kind, picked, sum(change) FROM (
            SELECT kind, 1 AS change FROM new_rows
            WHERE status IN ('rendering', 'rendered', 'pending', 'batched', 'sent')
            UNION ALL
            SELECT kind, -1 FROM old_rows
            WHERE status IN ('rendering', 'rendered', 'pending', 'batched', 'sent')
        ) changes
        GROUP BY kind HAVING sum(change) <> 0
        ON CONFLICT (kind, shard) DO UPDATE SET n = mint_queue_depth.n + excluded.n;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO mint_queue_depth (kind, shard, n)
        SELECT kind, picked, -count(*) FROM old_rows
        WHERE status IN ('rendering', 'rendered', 'pending', 'batched', 'sent') GROUP BY kind
        ON CONFLICT (kind, shard) DO UPDATE SET n = mint_queue_depth.n + excluded.n;
    ELSE
        DELETE FROM mint_queue_depth;
    END IF;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER mint_requests_depth_insert AFTER INSERT ON mint_requests
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION count_queued_requests();
CREATE TRIGGER mint_requests_depth_update AFTER UPDATE ON mint_requests
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION count_queued_requests();
CREATE TRIGGER mint_requests_depth_delete AFTER DELETE ON mint_requests
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION count_queued_requests();
CREATE TRIGGER mint_requests_depth_truncate AFTER TRUNCATE ON mint_requests
    FOR EACH STATEMENT EXECUTE FUNCTION count_queued_requests();

-- The rows already there; the triggers above hold off writers until this transaction commits.
INSERT INTO mint_queue_depth (kind, shard, n)
SELECT kind, 0, count(*) FROM mint_requests
WHERE status IN ('rendering', 'rendered', 'pending', 'batched', 'sent') GROUP BY kind;

-- One accepted request, in one round trip. Returns one row with `outcome`:
--   created       the row is inserted (with its render job for an NFT): id and queue_position;
--   found         rows that conflict with it (the same payment, or the same Idempotency-Key), one
--                 per row, the key's row with its current queue_position; the caller tells a replay
--                 (the same key and payment: the earlier answer) from a payment used twice;
--   insufficient  the balance does not cover it and the payer's other queued authorizations
--                 (`reserved`);
--   recheck       the same, but `p_debited` was not read (NULL): some of the payer's queued
--                 authorizations (`nonces`, the ones to ask the chain about, those in a transaction
--                 first) may have been executed on-chain already and no longer reserve anything; the
--                 caller reads their state in the balance's block and calls again with `p_debited`;
--   too_soon      the authorization expires before its estimated batch time (queue_position).
-- `p_balance` NULL (a custom payment, paid already) skips the reservation and the payer's lock;
-- `p_debited` are the payer's queued nonces the chain had executed when the balance was read (NULL:
-- not read, so every queued authorization reserves its amount, which can only refuse more);
-- `p_valid_before` NULL skips the expiry check, which waits ceil(position / p_per_second) seconds
-- from `p_now` and `p_margin_seconds` more, as intake's payments.check_expiry does.
--
-- enable_seqscan is off inside: a plan cached while the table was small (a fresh database) would
-- otherwise scan the whole table on every call until the statistics catch up, where every query
-- here has an index to take.
CREATE FUNCTION intake_enqueue(
    p_kind text, p_payer text, p_payment_type text, p_payment_id text, p_amount numeric,
    p_authorization jsonb, p_valid_before bigint, p_payment_tx_hash text, p_payment_log_index integer,
    p_accepted_block bigint, p_idempotency_key text, p_callback_url text, p_render_settings jsonb,
    p_balance numeric, p_debited text[], p_now bigint, p_per_second float8, p_margin_seconds bigint
) RETURNS TABLE (
    outcome text, id uuid, kind text, seq bigint, status text, payer_address text, payment_type text,
    payment_id text, payment_tx_hash text, payment_log_index integer, idempotency_key text,
    queue_position bigint, reserved numeric, nonces text[]
) AS $$
DECLARE
    v_conflict boolean;
    v_seq bigint;
    v_id uuid := gen_random_uuid();
BEGIN
    IF p_balance IS NOT NULL THEN
        -- Each statement below reads a snapshot taken after the lock: it sees what the payer's
        -- previous request committed.
        PERFORM pg_advisory_xact_lock(hashtext(p_payer));
    END IF;
    -- The single-row answers below fill the output columns and RETURN NEXT them.
    kind := p_kind;
    payer_address := p_payer;
    payment_type := p_payment_type;
    payment_id := p_payment_id;
    FOR attempt IN 1..2 LOOP
        -- One read for what a new request needs: a conflict, the payer's reservations, the depth.
        SELECT EXISTS (SELECT FROM mint_requests m
                       WHERE m.payment_id = p_payment_id OR m.idempotency_key = p_idempotency_key
                          OR (m.payment_tx_hash = p_payment_tx_hash
                              AND (m.payment_log_index IS NULL
                                   OR m.payment_log_index = p_payment_log_index))),
               CASE WHEN p_balance IS NOT NULL THEN
                   (SELECT coalesce(sum(r.amount), 0) FROM mint_requests r
                    WHERE r.payer_address = p_payer
                      AND r.status IN ('rendering', 'rendered', 'pending', 'batched', 'sent')
                      AND r.authorization_data IS NOT NULL AND NOT r.payment_settled
                      AND NOT (r.authorization_data->>'nonce' = ANY(coalesce(p_debited, '{}'))))
               END,
               -- Never below 1, should the counts ever be off: the answer stays a valid position.
               (SELECT greatest(1, 1 + coalesce(sum(d.n), 0)) FROM mint_queue_depth d WHERE d.kind = p_kind)
        INTO v_conflict, reserved, queue_position;
        IF v_conflict OR attempt = 2 THEN
            -- The second pass: the insert below met a concurrent request with the same payment or key,
            -- which the unique index waited for; committed, it is visible to this new snapshot (none
            -- found: it rolled back, and the caller may retry).
            RETURN QUERY
                SELECT 'found', m.id, m.kind, m.seq, m.status, m.payer_address, m.payment_type,
                       m.payment_id, m.payment_tx_hash, m.payment_log_index, m.idempotency_key,
                       CASE WHEN m.idempotency_key = p_idempotency_key
                                 AND m.status IN ('rendering', 'rendered', 'pending', 'batched', 'sent')
                            THEN (SELECT count(*) FROM mint_requests a
                                  WHERE a.kind = m.kind AND a.seq <= m.seq
                                    AND a.status IN ('rendering', 'rendered', 'pending', 'batched', 'sent'))
                       END,
                       NULL::numeric, NULL::text[]
                FROM mint_requests m
                WHERE m.payment_id = p_payment_id OR m.idempotency_key = p_idempotency_key
                   OR (m.payment_tx_hash = p_payment_tx_hash
                       AND (m.payment_log_index IS NULL OR m.payment_log_index = p_payment_log_index));
            RETURN;
        END IF;

        IF p_balance IS NOT NULL AND p_balance - reserved < p_amount THEN
            IF p_debited IS NULL THEN
                nonces := ARRAY(
                    SELECT n.authorization_data->>'nonce' FROM mint_requests n
                    WHERE n.payer_address = p_payer
                      AND n.status IN ('rendering', 'rendered', 'pending', 'batched', 'sent')
                      AND n.authorization_data IS NOT NULL AND NOT n.payment_settled
                    ORDER BY n.status IN ('batched', 'sent') DESC, n.seq
                    LIMIT 64);
            END IF;
            outcome := CASE WHEN cardinality(nonces) > 0 THEN 'recheck' ELSE 'insufficient' END;
            queue_position := NULL;
            RETURN NEXT;
            RETURN;
        END IF;

        IF p_valid_before IS NOT NULL
           AND p_valid_before < p_now + ceil(queue_position / p_per_second)::bigint + p_margin_seconds THEN
            outcome := 'too_soon';
            RETURN NEXT;
            RETURN;
        END IF;

        INSERT INTO mint_requests AS m (id, kind, payer_address, payment_type, payment_id, amount,
                                        authorization_data, valid_before, payment_tx_hash,
                                        payment_log_index, accepted_block, idempotency_key, callback_url,
                                        status)
        VALUES (v_id, p_kind, p_payer, p_payment_type, p_payment_id, p_amount, p_authorization,
                p_valid_before, p_payment_tx_hash, p_payment_log_index, p_accepted_block,
                p_idempotency_key, p_callback_url,
                CASE WHEN p_render_settings IS NULL THEN 'pending' ELSE 'rendering' END)
        ON CONFLICT DO NOTHING
        RETURNING m.seq INTO v_seq;
        IF v_seq IS NOT NULL THEN
            IF p_render_settings IS NOT NULL THEN
                INSERT INTO render_jobs (request_id, settings) VALUES (v_id, p_render_settings);
            END IF;
            outcome := 'created';
            id := v_id;
            seq := v_seq;
            reserved := NULL;
            RETURN NEXT;
            RETURN;
        END IF;
    END LOOP;
END
$$ LANGUAGE plpgsql SET enable_seqscan = off;
