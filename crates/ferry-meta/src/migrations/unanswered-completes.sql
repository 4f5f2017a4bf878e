-- SQLite's version 5 and PostgreSQL's version 4: whether a completed
-- upload's complete is still to be answered. With an S3-compatible store a
-- request other than a complete can find the store's upload assembled and
-- commit the file (a complete crashed before its commit, or is about to
-- make it on another node); no client has been told then, so the next
-- complete of that upload answers 200, once. Completed uploads from before
-- this version were answered.
ALTER TABLE uploads ADD COLUMN complete_unanswered BOOLEAN NOT NULL DEFAULT FALSE;
