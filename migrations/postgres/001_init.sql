-- 001_init.sql — the PostgreSQL schema of the store: the same rows as the SQLite set
-- (migrations/sqlite/001..009) in one step, since this backend starts where that one is now.
-- Times are ms since the epoch (bigint), 0 = not yet; state holds the contract names of proto.h.
-- Ids are bigserial: a sequence never hands a value out twice, whatever is pruned, and a
-- rolled-back insert only leaves a gap.
-- Names, keys and types are COLLATE "C": ordering is by bytes, as in SQLite, so the greatest
-- Idempotency-Key of a prefix (LAST_KEY) and the list of paused types do not depend on the
-- database's locale.
-- error, previous_error, output and last_error are bytea: they hold what a job printed or a
-- peer answered, which need not be valid UTF-8 (a text column would refuse it).
CREATE TABLE jobs (
    id                bigserial PRIMARY KEY,
    type              text COLLATE "C" NOT NULL,
    state             text   NOT NULL CHECK (state IN ('queued', 'scheduled', 'running',
                                                       'succeeded', 'failed', 'cancelled')),
    status            integer NOT NULL DEFAULT 0,
    attempts          integer NOT NULL DEFAULT 0,
    max_attempts      integer NOT NULL,
    priority          integer NOT NULL DEFAULT 0,
    timeout_ms        bigint  NOT NULL,
    created_at        bigint  NOT NULL,
    run_at            bigint  NOT NULL,
    started_at        bigint  NOT NULL DEFAULT 0,
    finished_at       bigint  NOT NULL DEFAULT 0,
    updated_at        bigint  NOT NULL DEFAULT 0,
    exit_code         integer,
    idem_key          text COLLATE "C",
    callback          text,
    error             bytea,
    output            bytea,
    owner             text    NOT NULL DEFAULT '',   -- the node whose claim runs it
    retried           integer NOT NULL DEFAULT 0,
    previous_attempts integer NOT NULL DEFAULT 0,
    previous_error    bytea,
    content_type      text,
    traceparent       text,
    tracestate        text
);

-- The payload in its own table, as in SQLite: written once, read once per claim, and not
-- copied again by every state change of the job row (PostgreSQL writes a new row version per
-- UPDATE; a large payload would be TOASTed, but the row copy still costs).
CREATE TABLE job_payloads (
    id   bigint PRIMARY KEY,   -- jobs.id
    data bytea  NOT NULL
);

CREATE UNIQUE INDEX jobs_idem ON jobs (type, idem_key) WHERE idem_key IS NOT NULL;
CREATE INDEX jobs_state ON jobs (state, id);
-- CLAIM: queued jobs by priority then age; scheduled ones by run_at.
CREATE INDEX jobs_queued ON jobs (type, priority DESC, id) WHERE state = 'queued';
CREATE INDEX jobs_scheduled ON jobs (type, run_at) WHERE state = 'scheduled';
-- Recovery of one owner's running jobs.
CREATE INDEX jobs_running ON jobs (owner) WHERE state = 'running';
-- PRUNE: the finished jobs that ended longest ago.
CREATE INDEX jobs_finished ON jobs (finished_at, id)
    WHERE state IN ('succeeded', 'failed', 'cancelled');

CREATE TABLE deliveries (
    id           bigserial PRIMARY KEY,
    job_id       bigint  NOT NULL,
    event        text    NOT NULL CHECK (event IN ('complete', 'abort')),
    target       text    NOT NULL,
    state        text    NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
    inflight     boolean NOT NULL DEFAULT false,
    owner        text    NOT NULL DEFAULT '',   -- the node that has it in flight
    attempts     integer NOT NULL DEFAULT 0,
    created_at   bigint  NOT NULL,
    next_at      bigint  NOT NULL,
    last_at      bigint  NOT NULL DEFAULT 0,
    last_status  integer,
    last_error   bytea
);

CREATE INDEX deliveries_job ON deliveries (job_id);
CREATE INDEX deliveries_due ON deliveries (next_at) WHERE state = 'pending' AND NOT inflight;
CREATE INDEX deliveries_inflight ON deliveries (owner) WHERE inflight;

CREATE TABLE paused_types (
    type      text COLLATE "C" PRIMARY KEY,
    paused_at bigint NOT NULL
);
