-- Mint requests: one row per paid request. `seq` gives queue order; `payment_id` is the bytes32 the
-- contract records, unique here too (one mint per payment).
CREATE TABLE mint_requests (
    id              uuid PRIMARY KEY,
    seq             bigserial UNIQUE,
    kind            text NOT NULL DEFAULT 'token' CHECK (kind IN ('token', 'nft')),
    payer_address   text NOT NULL,
    payment_type    text NOT NULL CHECK (payment_type IN ('x402', 'gasless', 'custom')),
    payment_id      text NOT NULL UNIQUE,
    amount          numeric(78, 0) NOT NULL,
    authorization_data jsonb,
    valid_before    bigint,
    payment_tx_hash text UNIQUE,
    idempotency_key text UNIQUE,
    callback_url    text,
    token_uri       text,
    status          text NOT NULL CHECK (status IN
                        ('rendering', 'rendered', 'pending', 'batched', 'sent', 'completed', 'failed',
                         'confirmation_failed')),
    batch_id        bigint,
    mint_tx_hash    text,
    error_message   text,
    retry_count     integer NOT NULL DEFAULT 0,
    published_at    timestamptz NOT NULL DEFAULT now(),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    processed_at    timestamptz
);
CREATE INDEX mint_requests_active ON mint_requests (seq) WHERE status IN ('pending', 'batched', 'sent');
CREATE INDEX mint_requests_payer ON mint_requests (payer_address, seq);
CREATE INDEX mint_requests_batch ON mint_requests (batch_id);

-- Every status change, with its time and reason (invariant 5), written by a trigger so no code path
-- can forget it.
CREATE TABLE mint_request_history (
    id          bigserial PRIMARY KEY,
    request_id  uuid NOT NULL REFERENCES mint_requests (id),
    status      text NOT NULL,
    reason      text,
    at          timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX mint_request_history_request ON mint_request_history (request_id, id);

CREATE FUNCTION record_mint_request_status() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'INSERT' OR NEW.status IS DISTINCT FROM OLD.status THEN
        INSERT INTO mint_request_history (request_id, status, reason)
        VALUES (NEW.id, NEW.status, CASE WHEN NEW.status IN ('failed', 'confirmation_failed')
                                         THEN NEW.error_message END);
    END IF;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER mint_requests_status_history
    AFTER INSERT OR UPDATE OF status ON mint_requests
    FOR EACH ROW EXECUTE FUNCTION record_mint_request_status();

-- One row per batch: a nonce of the wallet. The signed raw transaction is stored before broadcast
-- (invariant 3); fee bumps add attempts with the same nonce.
CREATE TABLE batches (
    id            bigserial PRIMARY KEY,
    wallet        text NOT NULL,
    nonce         bigint NOT NULL,
    kind          text NOT NULL DEFAULT 'token',
    status        text NOT NULL CHECK (status IN ('signed', 'sent', 'confirmed', 'reverted')),
    request_ids   uuid[] NOT NULL,
    tx_hash       text NOT NULL,
    raw_tx        bytea NOT NULL,
    call_data     bytea NOT NULL,
    gas_limit     bigint NOT NULL,
    max_fee_per_gas          numeric(78, 0) NOT NULL,
    max_priority_fee_per_gas numeric(78, 0) NOT NULL,
    attempts      integer NOT NULL DEFAULT 1,
    block_number  bigint,
    gas_used      bigint,
    created_at    timestamptz NOT NULL DEFAULT now(),
    sent_at       timestamptz,
    confirmed_at  timestamptz,
    UNIQUE (wallet, nonce)
);
CREATE INDEX batches_open ON batches (id) WHERE status IN ('signed', 'sent');

CREATE TABLE batch_transactions (
    tx_hash       text PRIMARY KEY,
    batch_id      bigint NOT NULL REFERENCES batches (id),
    raw_tx        bytea NOT NULL,
    max_fee_per_gas          numeric(78, 0) NOT NULL,
    max_priority_fee_per_gas numeric(78, 0) NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX batch_transactions_batch ON batch_transactions (batch_id);

-- Run-time overrides of settings (batch size, window, confirmations, retries), read each cycle.
CREATE TABLE system_settings (
    key         text PRIMARY KEY,
    value       text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Webhooks: one delivery per (request, outcome), every attempt recorded.
CREATE TABLE webhook_deliveries (
    id              bigserial PRIMARY KEY,
    request_id      uuid NOT NULL REFERENCES mint_requests (id),
    event           text NOT NULL,
    url             text NOT NULL,
    body            jsonb NOT NULL,
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    created_at      timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    UNIQUE (request_id, event)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';

CREATE TABLE webhook_attempts (
    id           bigserial PRIMARY KEY,
    delivery_id  bigint NOT NULL REFERENCES webhook_deliveries (id),
    attempt      integer NOT NULL,
    status_code  integer,
    error        text,
    at           timestamptz NOT NULL DEFAULT now()
);
