-- 001_init.sql — the jobs table and the few indexes its queries need.
-- Times are ms since the epoch, 0 = not yet. state holds the contract names of proto.h.
-- Columns read often come first and payload comes last, so that reading a row without its
-- payload never walks the payload's overflow pages.
-- AUTOINCREMENT: an id is never handed out twice, even after old jobs are pruned.
CREATE TABLE jobs (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    type         TEXT    NOT NULL,
    state        TEXT    NOT NULL CHECK (state IN ('queued', 'scheduled', 'running',
                                                   'succeeded', 'failed', 'cancelled')),
    status       INTEGER NOT NULL DEFAULT 0,
    attempts     INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    priority     INTEGER NOT NULL DEFAULT 0,
    timeout_ms   INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    run_at       INTEGER NOT NULL,
    started_at   INTEGER NOT NULL DEFAULT 0,
    finished_at  INTEGER NOT NULL DEFAULT 0,
    exit_code    INTEGER,
    idem_key     TEXT,
    callback     TEXT,
    error        TEXT,
    output       BLOB,
    payload      BLOB    NOT NULL
);

-- Every index slows every insert, so there are as few as the queries allow. The two claim
-- indexes are partial on disjoint states: a row sits in at most one of them, and a new job
-- costs the table plus two index entries (three with an Idempotency-Key).

-- Idempotency-Key lookups at submit; only keyed jobs pay for it.
CREATE UNIQUE INDEX jobs_idem ON jobs (type, idem_key) WHERE idem_key IS NOT NULL;

-- List by state, newest first, and crash recovery (state = 'running'); the rowid is the
-- implicit last column, so (state) is (state, id).
CREATE INDEX jobs_state ON jobs (state);

-- CLAIM of queued jobs: highest priority first, then oldest id (implicit last column),
-- read in index order so a claim never sorts the backlog.
CREATE INDEX jobs_queued ON jobs (type, priority DESC) WHERE state = 'queued';

-- CLAIM of scheduled jobs that are due, and the next wake-up time: by run_at.
CREATE INDEX jobs_scheduled ON jobs (type, run_at) WHERE state = 'scheduled';
