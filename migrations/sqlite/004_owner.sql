-- 004_owner.sql — which node claimed a job: a claim records its node's name, and a node's
-- recovery re-queues only the running jobs it owned. A single daemon is the node 'local', so
-- rows that were running before this migration are its own. No index: recovery alone reads
-- it, once per start, among the running jobs (jobs_state).
ALTER TABLE jobs ADD COLUMN owner TEXT NOT NULL DEFAULT 'local';
