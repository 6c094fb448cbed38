-- An authorization settled by someone else before its batch (anyone may submit a signed EIP-3009
-- transfer): the treasury is paid, so the request is minted without settling it again.
ALTER TABLE mint_requests ADD COLUMN payment_settled boolean NOT NULL DEFAULT false;
