-- 011_state_indexes.sql — a submit writes one index entry, not two. jobs_state leaves the
-- queued jobs out (a claim then writes one entry in it instead of two), and jobs_queued, which
-- holds every queued job, serves their listing and counts instead: with state among its
-- columns it answers them from the index alone (SQLite does not count a partial index's WHERE
-- as covering), ordered as before for a claim (type, then the constant state, then priority).
-- Queries repeat jobs_state's WHERE literally, as SQLite needs to use a partial index. The
-- new indexes are built from the table once, at the upgrade.
DROP INDEX jobs_state;
CREATE INDEX jobs_state ON jobs (state)
    WHERE state = 'scheduled' OR state = 'running' OR state = 'succeeded' OR state = 'failed'
       OR state = 'cancelled';
DROP INDEX jobs_queued;
CREATE INDEX jobs_queued ON jobs (type, state, priority DESC) WHERE state = 'queued';
