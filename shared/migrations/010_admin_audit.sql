-- What operators did, through the console or the admin CLI: who, when, what, with what result. A row
-- is written when an action starts (`started`) and completed when it ends (`done` or `failed`), so an
-- action cut short by a crash still shows.
CREATE TABLE admin_audit (
    id           bigserial PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    actor        text NOT NULL,
    source       text NOT NULL CHECK (source IN ('console', 'cli')),
    client       text,
    action       text NOT NULL,
    params       jsonb NOT NULL DEFAULT '{}',
    outcome      text NOT NULL DEFAULT 'started' CHECK (outcome IN ('started', 'done', 'failed')),
    result       jsonb
);
CREATE INDEX admin_audit_at ON admin_audit (at);
