-- Version 2: the flows are written once for both engines and say
-- `holds_name = TRUE`; SQLite uses a partial index only for a query that
-- repeats its condition, so the indexes say it the same way.
DROP INDEX files_by_name;
DROP INDEX files_by_index;
CREATE UNIQUE INDEX files_by_name ON files (org_id, file_name) WHERE holds_name = TRUE;
CREATE INDEX files_by_index ON files (org_id, file_index) WHERE holds_name = TRUE;
