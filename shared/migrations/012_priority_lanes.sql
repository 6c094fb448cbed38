-- Priority lanes (issue 11). An operator gives a payer a lane (`mintline priority set`, the console):
-- 0 is everyone's default, 1-9 more urgent, the highest first. Intake decides a request's lane when it
-- accepts it (intake_enqueue below, in the same statement), stores it on the row and carries it on the
-- stream to the batcher, which fills each batch from the highest lane first (within an authorization's
-- expiry and an ageing bound: services/batcher/batching.py). A request keeps the lane it was accepted
-- with; changing a payer's lane changes only their later requests.
--
-- Lanes are checked here, not on mint_requests: a CHECK added to that table would read every row.
ALTER TABLE mint_requests ADD COLUMN lane smallint NOT NULL DEFAULT 0;
-- The wait intake estimated when it accepted the request (its answer's estimatedWaitSeconds): the
-- batcher's ageing rule measures how long a request has waited against it. NULL for older rows.
ALTER TABLE mint_requests ADD COLUMN eta_seconds integer;
-- Queued requests of the higher lanes, for a position: lane 0 (everyone, without priorities) has no
-- entry here, so lane 0's writes cost nothing more.
CREATE INDEX mint_requests_queued_lanes ON mint_requests (kind, lane)
    WHERE lane > 0 AND status IN ('rendering', 'rendered', 'pending', 'batched', 'sent');

CREATE TABLE payer_priorities (
    -- Checksummed (EIP-55), as intake stores mint_requests.payer_address.
    payer_address  text PRIMARY KEY CHECK (payer_address ~ '^0x[0-9a-fA-F]{40}$'),
    lane           smallint NOT NULL CHECK (lane BETWEEN 1 AND 9),
    note           text,
    set_by         text NOT NULL,
    source         text NOT NULL CHECK (source IN ('console', 'cli')),
    set_at         timestamptz NOT NULL DEFAULT now()
);

-- The depth counters of migration 011, per lane: a request's position counts the queued requests of
-- its lane and the lanes above it, still summed from a few shard rows, never counted over the queue.
-- Every row there is lane 0 (no request had another lane before this migration).
ALTER TABLE mint_queue_depth ADD COLUMN lane smallint NOT NULL DEFAULT 0;
ALTER TABLE mint_queue_depth DROP CONSTRAINT mint_queue_depth_pkey;
ALTER TABLE mint_queue_depth ADD PRIMARY KEY (kind, lane, shard);

CREATE OR REPLACE FUNCTION count_queued_requests() RETURNS trigger AS $$
DECLARE
    picked smallint := (pg_backend_pid() % 64)::smallint;
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO mint_queue_depth (kind, lane, shard, n)
        SELECT kind, lane, picked, count(*) FROM new_rows
        WHERE status IN ('rendering', 'rendered', 'pending', 'batched', 'sent') GROUP BY kind, lane
        ON CONFLICT (kind, lane, shard) DO UPDATE SET n = mint_queue_depth.n + excluded.n;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO mint_queue_depth (kind, lane, shard, n)
        SELECT kind, lane, picked, sum(change) FROM (
            SELECT kind, lane, 1 AS change FROM new_rows
            WHERE status IN ('rendering', 'rendered', 'pending', 'batched', 'sent')
            UNION ALL
            SELECT kind, lane, -1 FROM old_rows
            WHERE status IN ('rendering', 'rendered', 'pending', 'batched', 'sent')
        ) changes
        GROUP BY kind, lane HAVING sum(change) <> 0
        ON CONFLICT (kind, lane, shard) DO UPDATE SET n = mint_queue_depth.n + excluded.n;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO mint_queue_depth (kind, lane, shard, n)
        SELECT kind, lane, picked, -count(*) FROM old_rows
        WHERE status IN ('rendering', 'rendered', 'pending', 'batched', 'sent') GROUP BY kind, lane
        ON CONFLICT (kind, lane, shard) DO UPDATE SET n = mint_queue_depth.n + excluded.n;
    ELSE
        DELETE FROM mint_queue_depth;
    END IF;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

-- A queued request's position, as the status reads count it: the queued requests of its kind and lane
-- up to it, plus every queued one of a higher lane (they go first). With every request in lane 0 it is
-- the count of migration 011's reads. The second count reads mint_requests_queued_lanes only (its
-- `lane > 0` lets the planner take that index).
CREATE FUNCTION queued_position(p_kind text, p_lane integer, p_seq bigint) RETURNS bigint AS $$
    SELECT (SELECT count(*) FROM mint_requests a
            WHERE a.kind = p_kind AND a.lane = p_lane AND a.seq <= p_seq
              AND a.status IN ('rendering', 'rendered', 'pending', 'batched', 'sent'))
         + (SELECT count(*) FROM mint_requests h
            WHERE h.kind = p_kind AND h.lane > 0 AND h.lane > p_lane
              AND h.status IN ('rendering', 'rendered', 'pending', 'batched', 'sent'))
$$ LANGUAGE sql STABLE;

-- intake_enqueue of migration 011 with lanes: the payer's lane is read with the rest (the same one
-- read, no round trip more), the position is 1 + the depth of that lane and the ones above it, and the
-- row keeps its lane and the wait estimated from that position (ceil(position / p_per_second), as
-- intake answers it; NULL without p_per_second). Two columns more in the answer (lane, eta_seconds), so
-- the function is made anew. Everything else is as in 011, whose comments hold.
DROP FUNCTION intake_enqueue(text, text, text, text, numeric, jsonb, bigint, text, integer, bigint, text,
                             text, jsonb, numeric, text[], bigint, float8, bigint);
CREATE FUNCTION intake_enqueue(
    p_kind text, p_payer text, p_payment_type text, p_payment_id text, p_amount numeric,
    p_authorization jsonb, p_valid_before bigint, p_payment_tx_hash text, p_payment_log_index integer,
    p_accepted_block bigint, p_idempotency_key text, p_callback_url text, p_render_settings jsonb,
    p_balance numeric, p_debited text[], p_now bigint, p_per_second float8, p_margin_seconds bigint
) RETURNS TABLE (
    outcome text, id uuid, kind text, seq bigint, status text, payer_address text, payment_type text,
    payment_id text, payment_tx_hash text, payment_log_index integer, idempotency_key text,
    queue_position bigint, reserved numeric, nonces text[], lane integer, eta_seconds integer
) AS $$
DECLARE
    v_conflict boolean;
    v_seq bigint;
    v_lane integer;
    v_id uuid := gen_random_uuid();
BEGIN
    IF p_balance IS NOT NULL THEN
        PERFORM pg_advisory_xact_lock(hashtext(p_payer));
    END IF;
    kind := p_kind;
    payer_address := p_payer;
    payment_type := p_payment_type;
    payment_id := p_payment_id;
    FOR attempt IN 1..2 LOOP
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
               chosen.lane,
               (SELECT greatest(1, 1 + coalesce(sum(d.n), 0)) FROM mint_queue_depth d
                WHERE d.kind = p_kind AND d.lane >= chosen.lane)
        INTO v_conflict, reserved, v_lane, queue_position
        FROM (SELECT coalesce((SELECT p.lane FROM payer_priorities p WHERE p.payer_address = p_payer), 0)
                     AS lane) chosen;
        lane := v_lane;
        IF v_conflict OR attempt = 2 THEN
            RETURN QUERY
                SELECT 'found', m.id, m.kind, m.seq, m.status, m.payer_address, m.payment_type,
                       m.payment_id, m.payment_tx_hash, m.payment_log_index, m.idempotency_key,
                       CASE WHEN m.idempotency_key = p_idempotency_key
                                 AND m.status IN ('rendering', 'rendered', 'pending', 'batched', 'sent')
                            THEN queued_position(m.kind, m.lane, m.seq)
                       END,
                       NULL::numeric, NULL::text[], m.lane::integer, m.eta_seconds
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

        eta_seconds := CASE WHEN p_per_second > 0 THEN ceil(queue_position / p_per_second)::integer END;
        INSERT INTO mint_requests AS m (id, kind, payer_address, payment_type, payment_id, amount,
                                        authorization_data, valid_before, payment_tx_hash,
                                        payment_log_index, accepted_block, idempotency_key, callback_url,
                                        status, lane, eta_seconds)
        VALUES (v_id, p_kind, p_payer, p_payment_type, p_payment_id, p_amount, p_authorization,
                p_valid_before, p_payment_tx_hash, p_payment_log_index, p_accepted_block,
                p_idempotency_key, p_callback_url,
                CASE WHEN p_render_settings IS NULL THEN 'pending' ELSE 'rendering' END,
                v_lane, eta_seconds)
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
