-- Version 1, as the SQLite schema: orgs, keys, uploads, parts, checkpoints,
-- files, deletion queue. Times are Unix seconds. Ids are TypeID text.

CREATE TABLE orgs (
    org_id           TEXT PRIMARY KEY,
    name             TEXT NOT NULL UNIQUE,
    -- Bumped inside the registering transaction: the row lock serializes
    -- registrations per org across servers.
    next_file_index  BIGINT NOT NULL DEFAULT 0,
    files_changed_at BIGINT NOT NULL DEFAULT 0,
    created_at       BIGINT NOT NULL
);

CREATE TABLE api_keys (
    key_id      TEXT PRIMARY KEY,
    org_id      TEXT NOT NULL REFERENCES orgs (org_id),
    secret_hash BYTEA NOT NULL,
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);
CREATE INDEX api_keys_by_org ON api_keys (org_id);

CREATE TABLE uploads (
    upload_id        TEXT PRIMARY KEY,
    org_id           TEXT NOT NULL REFERENCES orgs (org_id),
    file_uid         TEXT NOT NULL UNIQUE,
    file_name        TEXT NOT NULL,
    file_type        TEXT NOT NULL,
    num_bytes        BIGINT NOT NULL,
    part_size        BIGINT NOT NULL,
    state            TEXT NOT NULL CHECK (state IN ('active', 'completed', 'aborted')),
    created_at       BIGINT NOT NULL,
    last_activity_at BIGINT NOT NULL,
    -- The blob store\'s own id of the upload (an S3 multipart upload id).
    store_upload_id  TEXT
);
CREATE INDEX uploads_active_by_name ON uploads (org_id, file_name, created_at) WHERE state = 'active';
CREATE INDEX uploads_active_by_activity ON uploads (last_activity_at) WHERE state = 'active';

CREATE TABLE upload_parts (
    upload_id   TEXT NOT NULL REFERENCES uploads (upload_id),
    part_number INTEGER NOT NULL,
    part_token  TEXT NOT NULL,
    crc32c      BIGINT,
    num_bytes   BIGINT NOT NULL,
    PRIMARY KEY (upload_id, part_number)
);

CREATE TABLE checkpoints (
    upload_id   TEXT NOT NULL REFERENCES uploads (upload_id),
    part_number INTEGER NOT NULL,
    part_token  TEXT NOT NULL,
    PRIMARY KEY (upload_id, part_number)
);

CREATE TABLE files (
    file_uid             TEXT PRIMARY KEY,
    org_id               TEXT NOT NULL REFERENCES orgs (org_id),
    file_name            TEXT NOT NULL,
    file_type            TEXT NOT NULL,
    num_bytes            BIGINT NOT NULL,
    status               TEXT NOT NULL,
    -- Unknown (NULL) until computed, when the parts went straight to S3.
    checksum_crc32c      BIGINT,
    file_index           BIGINT NOT NULL,
    holds_name           BOOLEAN NOT NULL,
    created_at           BIGINT NOT NULL,
    deleted_at           BIGINT,
    metadata_status      TEXT NOT NULL DEFAULT 'not_extracted',
    attributes           TEXT,
    ingest_claimed_until BIGINT
);
CREATE UNIQUE INDEX files_by_name ON files (org_id, file_name) WHERE holds_name;
CREATE INDEX files_by_index ON files (org_id, file_index) WHERE holds_name;
CREATE INDEX files_to_ingest ON files (status) WHERE status IN ('registered', 'ingesting');

CREATE TABLE blob_deletions (
    id            BIGSERIAL PRIMARY KEY,
    blob_key      TEXT NOT NULL,
    not_before    BIGINT NOT NULL,
    claimed_until BIGINT
);
CREATE INDEX blob_deletions_due ON blob_deletions (not_before);
