-- 003_deliveries.sql — callback deliveries: one row per target of a job's terminal state,
-- inserted in the same transaction as that state, retried until a 2xx (or exit 0) or until
-- its attempts run out. A row is the whole truth of a delivery: a restart picks up every
-- pending one, so no callback is lost and none exists for a state that was never committed.
CREATE TABLE deliveries (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id       INTEGER NOT NULL,
    event        TEXT    NOT NULL CHECK (event = 'complete' OR event = 'abort'),
    target       TEXT    NOT NULL,             -- an http(s) URL or exec:COMMAND
    state        TEXT    NOT NULL DEFAULT 'pending'
                         CHECK (state = 'pending' OR state = 'delivered' OR state = 'failed'),
    inflight     INTEGER NOT NULL DEFAULT 0,   -- taken by a running daemon; reset at start-up
    attempts     INTEGER NOT NULL DEFAULT 0,
    created_at   INTEGER NOT NULL,
    next_at      INTEGER NOT NULL,             -- when the next attempt is due (ms)
    last_at      INTEGER NOT NULL DEFAULT 0,
    last_status  INTEGER,                      -- HTTP status or exit code of the last attempt
    last_error   TEXT                          -- why the last attempt failed; NULL once delivered
);

-- GET /v1/jobs/{id} shows a job's deliveries.
CREATE INDEX deliveries_job ON deliveries (job_id);
-- The delivery loop takes due rows in next_at order; delivered and failed rows leave the index.
CREATE INDEX deliveries_due ON deliveries (next_at) WHERE state = 'pending' AND inflight = 0;
-- Start-up recovery finds the rows a dead daemon had in flight without scanning them all.
CREATE INDEX deliveries_inflight ON deliveries (id) WHERE inflight = 1;
