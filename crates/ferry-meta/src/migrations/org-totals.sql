-- SQLite's version 3 and PostgreSQL's version 2, one text for both (BIGINT
-- is an integer column to SQLite): an org's totals kept as counters by the
-- transactions that register, delete and ingest files (GET /files/info and
-- the quota read them instead of scanning the org's files), and an index for
-- listing pages of one file type.
ALTER TABLE orgs ADD COLUMN num_files BIGINT NOT NULL DEFAULT 0;
ALTER TABLE orgs ADD COLUMN num_bytes BIGINT NOT NULL DEFAULT 0;
ALTER TABLE orgs ADD COLUMN num_ingested BIGINT NOT NULL DEFAULT 0;
UPDATE orgs SET
    num_files = (SELECT COUNT(*) FROM files f WHERE f.org_id = orgs.org_id AND f.holds_name = TRUE),
    num_bytes = (SELECT COALESCE(SUM(num_bytes), 0) FROM files f WHERE f.org_id = orgs.org_id AND f.holds_name = TRUE),
    num_ingested = (SELECT COUNT(*) FROM files f
                    WHERE f.org_id = orgs.org_id AND f.holds_name = TRUE AND f.status = 'ingested');
CREATE INDEX files_by_type ON files (org_id, file_type, file_index) WHERE holds_name = TRUE;
