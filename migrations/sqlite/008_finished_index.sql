-- 008_finished_index.sql — retention ([store] retention, POST /v1/prune) deletes the finished
-- jobs that ended longest ago, a small batch at a time: this index finds them without a scan.
-- Partial, so only finished rows are in it; the prune query repeats its WHERE literally.
CREATE INDEX jobs_finished ON jobs (finished_at)
    WHERE state = 'succeeded' OR state = 'failed' OR state = 'cancelled';
