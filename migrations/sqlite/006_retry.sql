-- 006_retry.sql — a failed or cancelled job run again (POST /v1/jobs/{id}/retry) keeps its
-- history: how often it was retried, the attempts of its earlier runs, and the last error
-- recorded before the latest retry. Its attempts count starts from 0 again.
ALTER TABLE jobs ADD COLUMN retried INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN previous_attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN previous_error TEXT;
