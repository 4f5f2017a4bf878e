-- SQLite's version 4 and PostgreSQL's version 3: webhooks. Events are
-- written by the transaction that makes the change they report, with one
-- delivery per endpoint that wants them; delivery workers lease deliveries
-- like the janitor leases its work. Times in milliseconds.
CREATE TABLE webhook_endpoints (
    endpoint_id TEXT PRIMARY KEY,
    org_id      TEXT NOT NULL REFERENCES orgs (org_id),
    url         TEXT NOT NULL,
    secret      TEXT NOT NULL,
    -- Comma-separated event types; empty for every type.
    event_types TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    removed_at  BIGINT
);
CREATE INDEX webhook_endpoints_by_org ON webhook_endpoints (org_id) WHERE removed_at IS NULL;

CREATE TABLE events (
    event_id   TEXT PRIMARY KEY,
    org_id     TEXT NOT NULL,
    event_type TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    -- What the event is about as it was then (the store's own JSON).
    subject    TEXT NOT NULL
);

CREATE TABLE deliveries (
    event_id        TEXT NOT NULL REFERENCES events (event_id),
    endpoint_id     TEXT NOT NULL REFERENCES webhook_endpoints (endpoint_id),
    state           TEXT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    leased_until    BIGINT NOT NULL DEFAULT 0,
    last_status     TEXT,
    finished_at     BIGINT,
    PRIMARY KEY (event_id, endpoint_id)
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX deliveries_finished ON deliveries (finished_at) WHERE state <> 'pending';
