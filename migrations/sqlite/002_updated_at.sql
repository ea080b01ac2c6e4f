-- 002_updated_at.sql — when each job last changed (ms since the epoch), set by the store on
-- every write from the writer thread's clock, so the Redis mirror can catch up on exactly the
-- jobs that changed while it was away. No index: only that catch-up reads it, rarely, and an
-- index here would be rewritten by every state change.
ALTER TABLE jobs ADD COLUMN updated_at INTEGER NOT NULL DEFAULT 0;
UPDATE jobs SET updated_at = max(created_at, started_at, finished_at);
