-- Version 1: orgs, keys, uploads, parts, checkpoints, files, deletion queue.
-- Times are Unix seconds. Ids are TypeID text.

CREATE TABLE orgs (
    org_id          TEXT PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE,
    -- The next file_index to hand out; bumping it inside the registering
    -- transaction serializes registrations per org.
    next_file_index INTEGER NOT NULL DEFAULT 0,
    -- When a file of the org was last registered, ingested or deleted.
    files_changed_at INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL
);

CREATE TABLE api_keys (
    key_id      TEXT PRIMARY KEY,
    org_id      TEXT NOT NULL REFERENCES orgs (org_id),
    secret_hash BLOB NOT NULL,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);
CREATE INDEX api_keys_by_org ON api_keys (org_id);

CREATE TABLE uploads (
    upload_id        TEXT PRIMARY KEY,
    org_id           TEXT NOT NULL REFERENCES orgs (org_id),
    file_uid         TEXT NOT NULL UNIQUE,
    file_name        TEXT NOT NULL,
    file_type        TEXT NOT NULL,
    num_bytes        INTEGER NOT NULL,
    part_size        INTEGER NOT NULL,
    state            TEXT NOT NULL CHECK (state IN ('active', 'completed', 'aborted')),
    created_at       INTEGER NOT NULL,
    last_activity_at INTEGER NOT NULL,
    -- The blob store\'s own id of the upload (an S3 multipart upload id).
    store_upload_id  TEXT
);
CREATE INDEX uploads_active_by_name ON uploads (org_id, file_name, created_at) WHERE state = 'active';
CREATE INDEX uploads_active_by_activity ON uploads (last_activity_at) WHERE state = 'active';

-- Parts whose bytes are durable in the blob store, with what they hash to.
CREATE TABLE upload_parts (
    upload_id   TEXT NOT NULL REFERENCES uploads (upload_id),
    part_number INTEGER NOT NULL,
    part_token  TEXT NOT NULL,
    crc32c      INTEGER,
    num_bytes   INTEGER NOT NULL,
    PRIMARY KEY (upload_id, part_number)
) WITHOUT ROWID;

-- Tokens clients checkpointed; valid while equal to the part's token.
CREATE TABLE checkpoints (
    upload_id   TEXT NOT NULL REFERENCES uploads (upload_id),
    part_number INTEGER NOT NULL,
    part_token  TEXT NOT NULL,
    PRIMARY KEY (upload_id, part_number)
) WITHOUT ROWID;

CREATE TABLE files (
    file_uid        TEXT PRIMARY KEY,
    org_id          TEXT NOT NULL REFERENCES orgs (org_id),
    file_name       TEXT NOT NULL,
    file_type       TEXT NOT NULL,
    num_bytes       INTEGER NOT NULL,
    status          TEXT NOT NULL,
    -- Unknown (NULL) until computed, when the parts went straight to S3.
    checksum_crc32c INTEGER,
    file_index      INTEGER NOT NULL,
    -- 1 while this file holds its name; at most one per name.
    holds_name      INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    deleted_at      INTEGER,
    -- Attribute extraction: not_extracted, extracted or failed, the
    -- attributes as JSON, and the lease of the worker extracting them.
    metadata_status TEXT NOT NULL DEFAULT 'not_extracted',
    attributes      TEXT,
    ingest_claimed_until INTEGER
);
CREATE UNIQUE INDEX files_by_name ON files (org_id, file_name) WHERE holds_name = 1;
CREATE INDEX files_by_index ON files (org_id, file_index) WHERE holds_name = 1;
CREATE INDEX files_to_ingest ON files (status) WHERE status IN ('registered', 'ingesting');

-- The outbox of blobs to delete, drained by the janitor once due. An entry
-- is also written before bytes are stored without a row that owns them yet
-- (a simple upload), and removed when they are registered: a crash between
-- leaves an entry that deletes the orphan.
CREATE TABLE blob_deletions (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    blob_key   TEXT NOT NULL,
    not_before INTEGER NOT NULL,
    -- A janitor's lease on the entry, so two janitors never work one entry
    -- at once and a dead janitor's entries come back when its lease ends.
    claimed_until INTEGER
);
CREATE INDEX blob_deletions_due ON blob_deletions (not_before);
