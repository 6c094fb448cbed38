-- GET /queue/status counts finished requests (completed, failed, confirmation_failed) from here instead
-- of scanning every request ever made; queued ones it counts through the partial index
-- mint_requests_active. Statement-level triggers add each statement's net change per status, into one
-- of 16 shards picked at random, so concurrent transactions rarely wait on the same row. Intake's
-- inserts (pending or rendering) change no count and write nothing here.
CREATE TABLE mint_request_counts (
    status  text NOT NULL,
    shard   smallint NOT NULL,
    n       bigint NOT NULL,
    PRIMARY KEY (status, shard)
);

CREATE FUNCTION count_finished_requests() RETURNS trigger AS $$
DECLARE
    picked smallint := floor(random() * 16)::smallint;
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO mint_request_counts (status, shard, n)
        SELECT status, picked, count(*) FROM new_rows
        WHERE status IN ('completed', 'failed', 'confirmation_failed') GROUP BY status
        ON CONFLICT (status, shard) DO UPDATE SET n = mint_request_counts.n + excluded.n;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO mint_request_counts (status, shard, n)
        SELECT status, picked, sum(change) FROM (
            SELECT status, 1 AS change FROM new_rows
            WHERE status IN ('completed', 'failed', 'confirmation_failed')
            UNION ALL
            SELECT status, -1 FROM old_rows
            WHERE status IN ('completed', 'failed', 'confirmation_failed')
        ) changes
        GROUP BY status HAVING sum(change) <> 0
        ON CONFLICT (status, shard) DO UPDATE SET n = mint_request_counts.n + excluded.n;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO mint_request_counts (status, shard, n)
        SELECT status, picked, -count(*) FROM old_rows
        WHERE status IN ('completed', 'failed', 'confirmation_failed') GROUP BY status
        ON CONFLICT (status, shard) DO UPDATE SET n = mint_request_counts.n + excluded.n;
    ELSE
        DELETE FROM mint_request_counts;
    END IF;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

-- A trigger with transition tables takes one event, hence one trigger per event.
CREATE TRIGGER mint_requests_count_insert AFTER INSERT ON mint_requests
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION count_finished_requests();
CREATE TRIGGER mint_requests_count_update AFTER UPDATE ON mint_requests
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION count_finished_requests();
CREATE TRIGGER mint_requests_count_delete AFTER DELETE ON mint_requests
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION count_finished_requests();
CREATE TRIGGER mint_requests_count_truncate AFTER TRUNCATE ON mint_requests
    FOR EACH STATEMENT EXECUTE FUNCTION count_finished_requests();

-- The rows already there; the triggers above hold off writers until this transaction commits.
INSERT INTO mint_request_counts (status, shard, n)
SELECT status, 0, count(*) FROM mint_requests
WHERE status IN ('completed', 'failed', 'confirmation_failed') GROUP BY status;
