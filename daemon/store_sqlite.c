/* store_sqlite.c — the SQLite backend of the store: schema migrations at open (the set in
 * migrations/sqlite/), the SQL of each operation, crash recovery, and the check that the
 * database files are still the ones opened. The only file that speaks SQL. It does not decide
 * anything: which ops form a group, their validation, which deliveries a terminal state creates
 * and what is reported are the engine's (store.c); this file keeps rows.
 *
 * Longer than ~900 lines on purpose: the statements, the indexes they rely on (named in the
 * migrations) and the code that binds and reads them belong side by side, and cutting the
 * file would put a statement and its binding in two rooms.
 *
 * SQLite writes on through a deleted or replaced file without a word (the unlinked inode
 * stays valid), so before each COMMIT check_alive compares the inodes at the database's and
 * the WAL's paths with those it opened; a mismatch fails that group and every later one. */
#include "store_backend.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "log.h"

/* Generated from migrations/sqlite/NNN_*.sql (cmake/embed_migrations.cmake). */
extern const char *const fl_migrations[];
extern const int fl_migrations_count;

/* How long to wait for a write lock held by another process (a backup, the sqlite3 shell)
 * before a group fails with -EBUSY: long enough for a short outside transaction, short enough
 * that submitters get a 503 rather than hang. */
#define FL_STORE_BUSY_MS 5000
/* After a checkpoint the WAL file is truncated to this size instead of staying as large as
 * its biggest burst. */
#define FL_STORE_WAL_LIMIT (64 * 1024 * 1024)
/* Page cache per connection, in KiB (negative = KiB for PRAGMA cache_size): the hot index
 * pages of a large backlog stay in memory. */
#define FL_STORE_CACHE_KIB 32768
/* Each time a commit leaves this many more pages in the WAL it wakes the checkpointer (see
 * "checkpoints, mostly off the writer"); SQLite's own automatic checkpoint has this threshold. */
#define FL_STORE_CHECKPOINT_PAGES 1000
/* At this many pages in the WAL the writer checkpoints itself (see "checkpoints, mostly off
 * the writer"), which lets SQLite start the WAL over: its file stays below some 16 MB. */
#define FL_STORE_WAL_MAX_PAGES 4000
/* The checkpointer's page cache (KiB): a checkpoint copies frames, it caches nothing. */
#define FL_STORE_CHECKPOINT_CACHE_KIB 256
/* The VFS that gives a commit's WAL frames one write (see "one write per commit"). */
#define FL_WAL_VFS "fl-wal"

/* The columns of a job row in read_job's order; CLAIM and a GET of the payload add the
 * payload (C_PAYLOAD, JOB_PAYLOAD: the row's own, else its job_payloads row). */
#define JOB_COLS "id, type, state, status, attempts, max_attempts, priority, timeout_ms, " \
                 "created_at, run_at, started_at, finished_at, exit_code, idem_key, "      \
                 "callback, error, output, updated_at, retried, previous_attempts, previous_error, content_type, traceparent, tracestate"
#define JOB_PAYLOAD "coalesce(jobs.payload, (SELECT data FROM job_payloads WHERE job_payloads.id = jobs.id))"
enum {
    C_ID, C_TYPE, C_STATE, C_STATUS, C_ATTEMPTS, C_MAX_ATTEMPTS, C_PRIORITY, C_TIMEOUT_MS,
    C_CREATED_AT, C_RUN_AT, C_STARTED_AT, C_FINISHED_AT, C_EXIT_CODE, C_IDEM_KEY,
    C_CALLBACK, C_ERROR, C_OUTPUT, C_UPDATED_AT, C_RETRIED, C_PREVIOUS_ATTEMPTS, C_PREVIOUS_ERROR,
    C_CONTENT_TYPE, C_TRACEPARENT, C_TRACESTATE, C_PAYLOAD
};

/* The columns of a deliveries row in read_delivery's order. */
#define DELIVERY_COLS "id, job_id, event, target, state, attempts, created_at, next_at, last_at, " \
                      "last_status, last_error"
enum {
    D_ID, D_JOB_ID, D_EVENT, D_TARGET, D_STATE, D_ATTEMPTS, D_CREATED_AT, D_NEXT_AT, D_LAST_AT,
    D_LAST_STATUS, D_LAST_ERROR
};

/* The four LIST variants are consecutive: ST_LIST + (has_state ? 1 : 0) + (type ? 2 : 0), and
 * the queued state has its own two, ST_LIST_QUEUED + (type ? 1 : 0) (see ST_LIST_QUEUED).
 * Separate statements rather than "(?3 IS NULL OR state = ?3)", which no index can serve. */
enum stmt_id {
    ST_BEGIN, ST_BEGIN_READ, ST_COMMIT, ST_ROLLBACK,
    ST_IDEM_FIND, ST_INSERT, ST_INSERT_PAYLOAD, ST_GET,
    ST_LIST, ST_LIST_STATE, ST_LIST_TYPE, ST_LIST_STATE_TYPE, ST_LIST_QUEUED, ST_LIST_QUEUED_TYPE,
    ST_CANCEL, ST_SET_STATUS,
    ST_GET_WITH_PAYLOAD, ST_CLAIM_QUEUED, ST_CLAIM_DUE, ST_CLAIM_TAKE, ST_NEXT_SCHEDULED,
    ST_FINISH, ST_RECOVER, ST_CHANGED,
    ST_DELIVERY_ADD, ST_DELIVERY_DUE, ST_DELIVERY_TAKE, ST_DELIVERY_READ, ST_DELIVERY_NEXT,
    ST_DELIVERY_DONE, ST_DELIVERY_OF_JOB, ST_DELIVERY_RECOVER,
    ST_PAUSE_ADD, ST_PAUSE_DEL, ST_PAUSE_READ, ST_PAUSED_ONE, ST_RETRY,
    ST_PRUNE_DELIVERIES, ST_PRUNE_PAYLOADS, ST_PRUNE_JOBS, ST_LAST_KEY,
    ST_COUNT
};

/* The WHERE of the partial index jobs_state (011): every state but queued. */
#define STATE_INDEXED "(state = 'scheduled' OR state = 'running' OR state = 'succeeded'" \
                      " OR state = 'failed' OR state = 'cancelled')"
/* The queued ones newest first come from jobs_queued, whose entries the subquery reads alone
 * (one per queued job, with the type's when there is one) and sorts, keeping the page. */
#define LIST_QUEUED(type) "SELECT " JOB_COLS " FROM jobs WHERE id IN (SELECT id FROM jobs" \
                          " INDEXED BY jobs_queued WHERE " type "state = 'queued' AND id < ?1" \
                          " ORDER BY id DESC LIMIT ?2) ORDER BY id DESC"

/* A PRUNE batch: ?1 = finished before (ms), ?2 = at most this many. The state test repeats
 * the WHERE of the partial index jobs_finished (008), so that the index can serve it, and
 * INDEXED BY makes it the one that does: without statistics the planner preferred jobs_state
 * for the states and sorted, reading every finished row (5,000,000 of them: seconds with the
 * writer held, at each batch, even with nothing old enough to delete). */
#define PRUNE_BATCH "SELECT id FROM jobs INDEXED BY jobs_finished WHERE (state = 'succeeded'" \
                    " OR state = 'failed'" \
                    " OR state = 'cancelled') AND finished_at < ?1 ORDER BY finished_at, id LIMIT ?2"

/* A SUBMIT's two rows; submit_many puts up to 2^MANY_SIZES of them in one statement each.
 * OR FAIL: a statement of many rows that may ABORT on a constraint keeps a statement journal,
 * a copy of every page it touches (two 1 KiB allocations per row here), to undo its own rows
 * alone. The writer never needs that: a failed op rolls its whole group back (store.c). */
#define INSERT_JOBS "INSERT OR FAIL INTO jobs (type, state, status, max_attempts, priority, timeout_ms," \
                    " created_at, run_at, idem_key, callback, updated_at, content_type, traceparent," \
                    " tracestate, payload) VALUES "
#define INSERT_JOB_ROW "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
#define INSERT_JOB_PARAMS 15
#define INSERT_PAYLOADS "INSERT OR FAIL INTO job_payloads (id, data) VALUES "
#define INSERT_PAYLOAD_ROW "(?, ?)"
#define INSERT_PAYLOAD_PARAMS 2
/* A payload of at most this many bytes is kept in its job's row, a larger one in job_payloads
 * (see migrations/sqlite/010_inline_payload.sql). */
#define INLINE_PAYLOAD_MAX 256
/* Statements of 2, 4, ... 2^MANY_SIZES rows: a run of SUBMITs costs one statement per size in
 * its length's binary digits instead of two per job. */
#define MANY_SIZES 5

/* Partial indexes are used only when the query repeats their WHERE literally, so the states
 * in claim queries are literals, not parameters. In every LIST variant ?1 = ids below,
 * ?2 = row limit, ?3 = state, ?4 = type. */
static const char *const stmt_sql[ST_COUNT] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_BEGIN_READ] = "BEGIN",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_IDEM_FIND] = "SELECT id, state, created_at, run_at FROM jobs"
                     " WHERE type = ?1 AND idem_key = ?2",
    [ST_INSERT] = INSERT_JOBS INSERT_JOB_ROW,
    [ST_INSERT_PAYLOAD] = INSERT_PAYLOADS INSERT_PAYLOAD_ROW,
    [ST_GET] = "SELECT " JOB_COLS " FROM jobs WHERE id = ?1",
    [ST_LIST] = "SELECT " JOB_COLS " FROM jobs WHERE id < ?1 ORDER BY id DESC LIMIT ?2",
    [ST_LIST_STATE] = "SELECT " JOB_COLS " FROM jobs INDEXED BY jobs_state WHERE state = ?3"
                      " AND " STATE_INDEXED " AND id < ?1 ORDER BY id DESC LIMIT ?2",
    [ST_LIST_TYPE] = "SELECT " JOB_COLS " FROM jobs WHERE type = ?4 AND id < ?1"
                     " ORDER BY id DESC LIMIT ?2",
    [ST_LIST_STATE_TYPE] = "SELECT " JOB_COLS " FROM jobs INDEXED BY jobs_state WHERE state = ?3"
                           " AND " STATE_INDEXED " AND type = ?4 AND id < ?1"
                           " ORDER BY id DESC LIMIT ?2",
    [ST_LIST_QUEUED] = LIST_QUEUED(""),
    [ST_LIST_QUEUED_TYPE] = LIST_QUEUED("type = ?4 AND "),
    [ST_CANCEL] = "UPDATE jobs SET state = 'cancelled', finished_at = ?2, updated_at = ?3 WHERE id = ?1",
    [ST_SET_STATUS] = "UPDATE jobs SET status = status | ?2, updated_at = ?3 WHERE id = ?1",
    [ST_GET_WITH_PAYLOAD] = "SELECT " JOB_COLS ", " JOB_PAYLOAD " FROM jobs WHERE id = ?1",
    /* The candidates come with their whole row: the one seek that finds a job also reads
     * it, and a claim writes each job it takes with one UPDATE and reads it no more. */
    [ST_CLAIM_QUEUED] = "SELECT " JOB_COLS ", " JOB_PAYLOAD " FROM jobs"
                        " WHERE type = ?1 AND state = 'queued'"
                        " ORDER BY priority DESC, id LIMIT ?2",
    [ST_CLAIM_DUE] = "SELECT " JOB_COLS ", " JOB_PAYLOAD " FROM jobs"
                     " WHERE type = ?1 AND state = 'scheduled' AND run_at <= ?2"
                     " ORDER BY priority DESC, id LIMIT ?3",
    /* Not UPDATE ... RETURNING: SQLite stages returned rows in a temporary table, which
     * made a claim some 20% slower than the plain UPDATE and SELECT. */
    [ST_CLAIM_TAKE] = "UPDATE jobs SET state = 'running', attempts = attempts + 1,"
                      " started_at = ?2, updated_at = ?3, owner = ?4 WHERE id = ?1",
    [ST_NEXT_SCHEDULED] = "SELECT run_at FROM jobs WHERE type = ?1 AND state = 'scheduled'"
                          " ORDER BY run_at LIMIT 1",
    [ST_FINISH] = "UPDATE jobs SET state = ?2, status = status | ?3, exit_code = ?4,"
                  " error = ?5, output = ?6, run_at = coalesce(?7, run_at),"
                  " finished_at = coalesce(?8, finished_at), updated_at = ?9 WHERE id = ?1",
    [ST_RECOVER] = "UPDATE jobs SET state = 'queued', updated_at = ?1"
                   " WHERE state = 'running' AND owner = ?2",
    /* A full scan from ?1 on: only the mirror's catch-up reads this, rarely (see 002). */
    [ST_CHANGED] = "SELECT " JOB_COLS " FROM jobs WHERE id > ?1 AND (updated_at >= ?2"
                   " OR state = 'queued' OR state = 'scheduled' OR state = 'running')"
                   " ORDER BY id LIMIT ?3",
    [ST_DELIVERY_ADD] = "INSERT INTO deliveries (job_id, event, target, created_at, next_at)"
                        " VALUES (?1, ?2, ?3, ?4, ?4)",
    /* The state and inflight literals match the partial index deliveries_due. */
    [ST_DELIVERY_DUE] = "SELECT id FROM deliveries WHERE state = 'pending' AND inflight = 0"
                        " AND next_at <= ?1 ORDER BY next_at LIMIT ?2",
    [ST_DELIVERY_TAKE] = "UPDATE deliveries SET inflight = 1, attempts = attempts + 1, last_at = ?2"
                         " WHERE id = ?1",
    [ST_DELIVERY_READ] = "SELECT " DELIVERY_COLS " FROM deliveries WHERE id = ?1",
    [ST_DELIVERY_NEXT] = "SELECT next_at FROM deliveries WHERE state = 'pending' AND inflight = 0"
                         " ORDER BY next_at LIMIT 1",
    [ST_DELIVERY_DONE] = "UPDATE deliveries SET state = ?2, inflight = 0, next_at = ?3, last_status = ?4,"
                         " last_error = ?5 WHERE id = ?1",
    [ST_DELIVERY_OF_JOB] = "SELECT " DELIVERY_COLS " FROM deliveries WHERE job_id = ?1 ORDER BY id",
    [ST_DELIVERY_RECOVER] = "UPDATE deliveries SET inflight = 0 WHERE inflight = 1",
    [ST_PAUSE_ADD] = "INSERT OR IGNORE INTO paused_types (type, paused_at) VALUES (?1, ?2)",
    [ST_PAUSE_DEL] = "DELETE FROM paused_types WHERE type = ?1",
    [ST_PAUSE_READ] = "SELECT type FROM paused_types ORDER BY type",
    [ST_PAUSED_ONE] = "SELECT 1 FROM paused_types WHERE type = ?1",
    [ST_RETRY] = "UPDATE jobs SET state = 'queued', retried = retried + 1,"
                 " previous_attempts = previous_attempts + attempts,"
                 " previous_error = coalesce(error, previous_error), attempts = 0, error = NULL,"
                 " exit_code = NULL, output = NULL, started_at = 0, finished_at = 0,"
                 " status = status & ?3, run_at = ?2, updated_at = ?2"
                 " WHERE id = ?1 AND (state = 'failed' OR state = 'cancelled')",
    /* The same batch three times, jobs last: within the transaction the subquery picks the
     * same rows each time (jobs_finished, ties by id). */
    [ST_PRUNE_DELIVERIES] = "DELETE FROM deliveries WHERE job_id IN (" PRUNE_BATCH ")",
    [ST_PRUNE_PAYLOADS] = "DELETE FROM job_payloads WHERE id IN (" PRUNE_BATCH ")",
    [ST_PRUNE_JOBS] = "DELETE FROM jobs WHERE id IN (" PRUNE_BATCH ")",
    /* ?2 <= key < ?3, ?3 being the prefix with its last byte one higher: a range of jobs_idem. */
    [ST_LAST_KEY] = "SELECT idem_key FROM jobs WHERE type = ?1 AND idem_key >= ?2 AND idem_key < ?3"
                    " ORDER BY idem_key DESC LIMIT 1",
};

/* Which file a path names: a deleted file has none (ino 0), a replaced one another. */

typedef struct file_id { dev_t dev; ino_t ino; } file_id;

/* A file the database lives in (the database itself, its WAL), checked before each commit. */
typedef struct watched_file { char *path; file_id id; } watched_file;
enum { W_DB, W_WAL, W_COUNT };

/* A job this connection has running (see "the jobs running here"); id 0 = an empty slot. */
typedef struct running_slot { int64_t id; fl_job *job; } running_slot;

typedef struct checkpointer checkpointer;

typedef struct sql_store {
    sqlite3 *db;                   /* used by one thread at a time: open/recover, then the writer */
    watched_file files[W_COUNT];   /* as opened; an id of 0 was not there then, not checked */
    int lost;                      /* a file was deleted or replaced; every group fails */
    sqlite3_stmt *st[ST_COUNT];    /* prepared once at open */
    /* many_jobs[m], many_payloads[m]: the INSERTs of 2 << m rows, prepared once at open */
    sqlite3_stmt *many_jobs[MANY_SIZES], *many_payloads[MANY_SIZES];
    int64_t now;                   /* the clock of the group being run (updated_at) */
    const char *node;              /* the owner claims record; the engine's, borrowed */
    int full;                      /* durability = full: the connection is on FL_WAL_VFS */
    running_slot *running;         /* RUNNING_SLOTS of them, n_running used; each job owned */
    size_t n_running;
    checkpointer *ckpt;            /* the writer's: its thread and connection; owned */
} sql_store;


/* ---- errors ---------------------------------------------------------------------------- */

/* rc_errno maps an SQLite result code to the negative errno the rest of flingd speaks. */
static int rc_errno(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_FULL:
        return -ENOSPC;
    case SQLITE_READONLY:
        return -EROFS;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return -EBUSY;
    case SQLITE_NOMEM:
        return -ENOMEM;
    case SQLITE_PERM:
    case SQLITE_AUTH:
        return -EACCES;
    case SQLITE_TOOBIG:
        return -E2BIG;
    case SQLITE_CONSTRAINT:
        return -EEXIST;
    case SQLITE_MISMATCH:
    case SQLITE_RANGE:
        return -ERANGE;
    default: /* SQLITE_IOERR*, SQLITE_CORRUPT, SQLITE_NOTADB and anything unexpected */
        return -EIO;
    }
}

/* db_errno maps the connection's last error (bind calls record theirs there too). */
static int db_errno(sql_store *s)
{
    return rc_errno(sqlite3_extended_errcode(s->db));
}

/* ---- statements and rows --------------------------------------------------------------- */

/* step_done runs a statement that returns no rows and resets it: 0 or a negative errno. */
static int step_done(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);

    sqlite3_reset(st);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : rc_errno(rc);
}

/* The bind_opt_* helpers bind a value, or NULL when it is absent. Borrowed buffers are bound
 * SQLITE_STATIC: they outlive the step, and copying every payload once more would cost
 * throughput for nothing. */
static int bind_opt_text(sqlite3_stmt *st, int i, const char *s)
{
    return s ? sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC) : sqlite3_bind_null(st, i);
}

static int bind_opt_blob(sqlite3_stmt *st, int i, const void *p, size_t n)
{
    return p ? sqlite3_bind_blob64(st, i, p, n, SQLITE_STATIC) : sqlite3_bind_null(st, i);
}

static int bind_opt_int64(sqlite3_stmt *st, int i, int present, int64_t v)
{
    return present ? sqlite3_bind_int64(st, i, v) : sqlite3_bind_null(st, i);
}

/* col_part points *p at the bytes of a text/blob column (valid until the next step or reset)
 * and sets *n to their size, or to FL_JOB_ABSENT for NULL. -ENOMEM if SQLite could not
 * produce a non-empty value. */
static int col_part(sqlite3_stmt *st, int col, const void **p, size_t *n)
{
    *p = NULL;
    *n = FL_JOB_ABSENT;
    if (sqlite3_column_type(st, col) == SQLITE_NULL)
        return 0;
    *p = sqlite3_column_blob(st, col);
    *n = (size_t)sqlite3_column_bytes(st, col);
    return !*p && *n > 0 ? -ENOMEM : 0;
}

static void copy_part(void *dst, const void *src, size_t n)
{
    if (dst && src && n != FL_JOB_ABSENT && n > 0)
        memcpy(dst, src, n);
}

/* column_state parses the state column; -EIO if the file holds a name we do not know. */
static int column_state(sqlite3_stmt *st, int col, fl_state *out)
{
    const unsigned char *name = sqlite3_column_text(st, col);

    if (!name)
        return -EIO;
    return fl_proto_state_parse((const char *)name, (size_t)sqlite3_column_bytes(st, col), out)
               ? -EIO : 0;
}

/* read_job builds a job from the current row (JOB_COLS, then payload if with_payload).
 * Returns 0 and *out (caller frees), -ENOMEM, or -EIO for a row we cannot read. */
static int read_job(sqlite3_stmt *st, int with_payload, fl_job **out)
{
    const void *type, *callback, *idem_key, *error, *output, *prev_error, *ctype, *tparent, *tstate;
    const void *payload = NULL;
    fl_job_sizes sz;
    fl_state state;
    fl_job *job;

    if (column_state(st, C_STATE, &state))
        return -EIO;
    sz.payload = FL_JOB_ABSENT;
    if (col_part(st, C_TYPE, &type, &sz.type) ||
        col_part(st, C_CALLBACK, &callback, &sz.callback) ||
        col_part(st, C_IDEM_KEY, &idem_key, &sz.idem_key) ||
        col_part(st, C_ERROR, &error, &sz.error) ||
        col_part(st, C_OUTPUT, &output, &sz.output) ||
        col_part(st, C_PREVIOUS_ERROR, &prev_error, &sz.previous_error) ||
        col_part(st, C_CONTENT_TYPE, &ctype, &sz.content_type) ||
        col_part(st, C_TRACEPARENT, &tparent, &sz.traceparent) ||
        col_part(st, C_TRACESTATE, &tstate, &sz.tracestate) ||
        (with_payload && col_part(st, C_PAYLOAD, &payload, &sz.payload)))
        return -ENOMEM;
    if (with_payload && sz.payload == FL_JOB_ABSENT)
        sz.payload = 0; /* a claimed job always has a payload, maybe empty */
    job = fl_job_new(&sz);
    if (!job)
        return -ENOMEM;
    copy_part(job->type, type, sz.type);
    copy_part(job->callback, callback, sz.callback);
    copy_part(job->idem_key, idem_key, sz.idem_key);
    copy_part(job->error, error, sz.error);
    copy_part(job->output, output, sz.output);
    copy_part(job->payload, payload, sz.payload);
    copy_part(job->previous_error, prev_error, sz.previous_error);
    copy_part(job->content_type, ctype, sz.content_type);
    copy_part(job->traceparent, tparent, sz.traceparent);
    copy_part(job->tracestate, tstate, sz.tracestate);
    job->id = sqlite3_column_int64(st, C_ID);
    job->state = state;
    job->status = sqlite3_column_int(st, C_STATUS);
    job->attempts = sqlite3_column_int(st, C_ATTEMPTS);
    job->max_attempts = sqlite3_column_int(st, C_MAX_ATTEMPTS);
    job->priority = sqlite3_column_int(st, C_PRIORITY);
    job->timeout = (double)sqlite3_column_int64(st, C_TIMEOUT_MS) / 1000.0;
    job->created_at = sqlite3_column_int64(st, C_CREATED_AT);
    job->run_at = sqlite3_column_int64(st, C_RUN_AT);
    job->started_at = sqlite3_column_int64(st, C_STARTED_AT);
    job->finished_at = sqlite3_column_int64(st, C_FINISHED_AT);
    job->updated_at = sqlite3_column_int64(st, C_UPDATED_AT);
    job->has_exit_code = sqlite3_column_type(st, C_EXIT_CODE) != SQLITE_NULL;
    job->exit_code = sqlite3_column_int(st, C_EXIT_CODE);
    job->retried = sqlite3_column_int(st, C_RETRIED);
    job->previous_attempts = sqlite3_column_int(st, C_PREVIOUS_ATTEMPTS);
    *out = job;
    return 0;
}

/* load_row reads job id into *out, with its payload if with_payload: 1 if found, 0 if not, or
 * a negative errno. */
static int load_row(sql_store *s, int64_t id, int with_payload, fl_job **out)
{
    sqlite3_stmt *st = s->st[with_payload ? ST_GET_WITH_PAYLOAD : ST_GET];
    int rc, found = 0;

    *out = NULL;
    if (sqlite3_bind_int64(st, 1, id))
        return db_errno(s);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        found = read_job(st, with_payload, out);
        if (found == 0)
            found = 1;
    } else if (rc != SQLITE_DONE) {
        found = rc_errno(rc);
    }
    sqlite3_reset(st);
    return found;
}

/* load_job reads job id without its payload into *out: as load_row. */
static int load_job(sql_store *s, int64_t id, fl_job **out)
{
    return load_row(s, id, 0, out);
}


static int load_deliveries(sql_store *s, fl_store_op *op);

/* ---- the jobs running here ------------------------------------------------------------
 * A FINISH answers with its job's row as its UPDATE left it. Every write to a running row is
 * this connection's: the CLAIM that made it running, SET_STATUS, and the FINISH that ends the
 * attempt (CANCEL, RETRY and PRUNE leave running rows alone, recovery runs before the first
 * claim, and the file is this daemon's alone). So the row each claimed job had stays known
 * until its FINISH, and is kept here by id, without the payload, error and output (which every
 * FINISH replaces). A FINISH whose outcome has no error and no output (a success, mostly)
 * patches that row and returns it instead of reading it again; any other reads it as before,
 * as does a job not kept: the table was full (open addressing, at most half used), or a
 * rollback forgot them all (what the group changed is undone, and with it what it kept). */

#define RUNNING_SLOTS 4096   /* a power of two */

static size_t running_home(int64_t id)
{
    return (size_t)(((uint64_t)id * 0x9E3779B97F4A7C15u) >> 52) & (RUNNING_SLOTS - 1);
}

/* running_find returns the slot of id, or the empty one where it would go. */
static size_t running_find(const sql_store *s, int64_t id)
{
    size_t i = running_home(id);

    while (s->running[i].id && s->running[i].id != id)
        i = (i + 1) & (RUNNING_SLOTS - 1);
    return i;
}

/* running_take removes job id and returns it (the caller's), or NULL if it is not kept.
 * Entries after it that probed past its slot move back into the gap. */
static fl_job *running_take(sql_store *s, int64_t id)
{
    size_t i = running_find(s, id), j = i, home;
    fl_job *job = s->running[i].job;

    if (!s->running[i].id)
        return NULL;
    s->running[i] = (running_slot){ 0, NULL };
    s->n_running--;
    for (;;) {
        j = (j + 1) & (RUNNING_SLOTS - 1);
        if (!s->running[j].id)
            break;
        home = running_home(s->running[j].id);
        if (((j - home) & (RUNNING_SLOTS - 1)) >= ((j - i) & (RUNNING_SLOTS - 1))) {
            s->running[i] = s->running[j];
            s->running[j] = (running_slot){ 0, NULL };
            i = j;
        }
    }
    return job;
}

/* running_keep keeps a copy of job, which a claim just made running. Out of room or of memory
 * it keeps nothing: its FINISH reads the row. */
static void running_keep(sql_store *s, const fl_job *job)
{
    size_t bytes, i;
    fl_job *copy;

    fl_job_free(running_take(s, job->id));
    if (s->n_running >= RUNNING_SLOTS / 2 || !(copy = fl_job_copy(job, &bytes)))
        return;
    copy->error = NULL;
    copy->output = NULL;
    copy->output_len = 0;
    i = running_find(s, job->id);
    s->running[i] = (running_slot){ job->id, copy };
    s->n_running++;
}

static void running_forget(sql_store *s)
{
    for (size_t i = 0; s->n_running && i < RUNNING_SLOTS; i++) {
        if (!s->running[i].id)
            continue;
        fl_job_free(s->running[i].job);
        s->running[i] = (running_slot){ 0, NULL };
        s->n_running--;
    }
}

/* ---- operations -------------------------------------------------------------------------
 * Each run_* returns 0 or the negative errno that fails the whole group; what the op found
 * goes to op->answer (the engine validated the op already). */

/* find_duplicate looks up (type, idem_key) and, if found, copies the existing job's identity
 * into job: 1 if found, 0 if not, or a negative errno. */
static int find_duplicate(sql_store *s, fl_job *job)
{
    sqlite3_stmt *st = s->st[ST_IDEM_FIND];
    int rc, found = 0;
    fl_state state;

    if (sqlite3_bind_text(st, 1, job->type, -1, SQLITE_STATIC) ||
        sqlite3_bind_text(st, 2, job->idem_key, -1, SQLITE_STATIC))
        return db_errno(s);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        found = column_state(st, 1, &state);
        if (found == 0) {
            job->id = sqlite3_column_int64(st, 0);
            job->state = state;
            job->created_at = sqlite3_column_int64(st, 2);
            job->run_at = sqlite3_column_int64(st, 3);
            found = 1;
        }
    } else if (rc != SQLITE_DONE) {
        found = rc_errno(rc);
    }
    sqlite3_reset(st);
    return found;
}

static int payload_inline(const fl_job *job)
{
    return job->payload_len <= INLINE_PAYLOAD_MAX;
}

/* bind_blob binds job's payload, an empty one if it has none (NULL would read as "elsewhere"). */
static int bind_blob(sqlite3_stmt *st, int i, const fl_job *job)
{
    return job->payload ? sqlite3_bind_blob64(st, i, job->payload, job->payload_len, SQLITE_STATIC)
                        : sqlite3_bind_zeroblob(st, i, 0);
}

/* bind_job binds job's columns to the INSERT_JOB_ROW after parameter `at`: a small payload
 * with them, a large one's place NULL (its job_payloads row is inserted after). */
static int bind_job(sqlite3_stmt *st, int at, const fl_job *job, int64_t now)
{
    return sqlite3_bind_text(st, at + 1, job->type, -1, SQLITE_STATIC) ||
           sqlite3_bind_text(st, at + 2, fl_proto_state_name(job->state), -1, SQLITE_STATIC) ||
           sqlite3_bind_int(st, at + 3, job->status) ||
           sqlite3_bind_int(st, at + 4, job->max_attempts) ||
           sqlite3_bind_int(st, at + 5, job->priority) ||
           sqlite3_bind_int64(st, at + 6, (sqlite3_int64)(job->timeout * 1000.0 + 0.5)) ||
           sqlite3_bind_int64(st, at + 7, job->created_at) ||
           sqlite3_bind_int64(st, at + 8, job->run_at) ||
           bind_opt_text(st, at + 9, job->idem_key) ||
           bind_opt_text(st, at + 10, job->callback) ||
           sqlite3_bind_int64(st, at + 11, now) ||
           bind_opt_text(st, at + 12, job->content_type) ||
           bind_opt_text(st, at + 13, job->traceparent) ||
           bind_opt_text(st, at + 14, job->tracestate) ||
           (payload_inline(job) ? bind_blob(st, at + 15, job) : sqlite3_bind_null(st, at + 15));
}

/* bind_payload binds job's id and payload to the INSERT_PAYLOAD_ROW after parameter `at`. */
static int bind_payload(sqlite3_stmt *st, int at, const fl_job *job)
{
    return sqlite3_bind_int64(st, at + 1, job->id) || bind_blob(st, at + 2, job);
}

/* many_size: the largest m (< MANY_SIZES) whose statement of 2 << m rows fits in run >= 2. */
static int many_size(size_t run)
{
    int m;

    for (m = MANY_SIZES - 1; ((size_t)2 << m) > run; m--)
        ;
    return m;
}

/* insert_payloads inserts the job_payloads rows of jobs[0 .. n), whose ids are known: as many
 * at once as the largest statement that fits, a lone one by itself. */
static int insert_payloads(sql_store *s, fl_job **jobs, size_t n)
{
    size_t i = 0, rows, k;
    int rc = 0;

    while (i < n && !rc) {
        int m = n - i >= 2 ? many_size(n - i) : -1;
        sqlite3_stmt *st = m < 0 ? s->st[ST_INSERT_PAYLOAD] : s->many_payloads[m];
        rows = m < 0 ? 1 : (size_t)2 << m;
        for (k = 0; k < rows; k++)
            if (bind_payload(st, (int)k * INSERT_PAYLOAD_PARAMS, jobs[i + k]))
                return db_errno(s);
        rc = step_done(st);
        i += rows;
    }
    return rc;
}

static int sq_submit(void *b, fl_store_op *op)
{
    sql_store *s = b;
    sqlite3_stmt *st = s->st[ST_INSERT];
    fl_job *job = op->u.submit.job;
    int rc;

    if (job->idem_key) {
        rc = find_duplicate(s, job);
        if (rc < 0)
            return rc;
        if (rc == 1) {
            op->answer = FL_STORE_DUPLICATE;
            return 0;
        }
    }
    if (bind_job(st, 0, job, s->now))
        return db_errno(s);
    rc = step_done(st);
    if (rc)
        return rc;
    job->id = sqlite3_last_insert_rowid(s->db);
    job->updated_at = s->now;
    return payload_inline(job) ? 0 : insert_payloads(s, &job, 1);
}

/* insert_rows inserts the jobs of ops[0 .. 2 << m), none with an Idempotency-Key, with one
 * statement, then the job_payloads rows of the large payloads among them. An INSERT gives the
 * rows of its VALUES consecutive ids in their order (each the largest yet plus one,
 * AUTOINCREMENT), the last one being last_insert_rowid. */
static int insert_rows(sql_store *s, fl_store_op **ops, int m)
{
    sqlite3_stmt *st = s->many_jobs[m];
    size_t rows = (size_t)2 << m, i, n_large = 0;
    fl_job *large[(size_t)2 << (MANY_SIZES - 1)];
    int64_t last;
    int rc;

    for (i = 0; i < rows; i++)
        if (bind_job(st, (int)i * INSERT_JOB_PARAMS, ops[i]->u.submit.job, s->now))
            return db_errno(s);
    if ((rc = step_done(st)))
        return rc;
    last = sqlite3_last_insert_rowid(s->db);
    for (i = 0; i < rows; i++) {
        fl_job *job = ops[i]->u.submit.job;
        job->id = last - (int64_t)(rows - 1 - i);
        job->updated_at = s->now;
        if (!payload_inline(job))
            large[n_large++] = job;
    }
    return insert_payloads(s, large, n_large);
}

/* A run of SUBMITs: the jobs without an Idempotency-Key that follow one another go in by
 * insert_rows, as many rows at once as the largest statement that fits; a keyed job (which
 * looks for its duplicate first, among those just inserted too) and a lone one by sq_submit.
 * So ids grow in op order, as submit gives them one by one. */
static int sq_submit_many(void *b, fl_store_op **ops, size_t n)
{
    sql_store *s = b;
    size_t i = 0, run;
    int m, rc = 0;

    while (i < n && !rc) {
        for (run = 0; i + run < n && run < ((size_t)2 << (MANY_SIZES - 1)) &&
                      !ops[i + run]->u.submit.job->idem_key; run++)
            ;
        if (run < 2) {
            rc = sq_submit(s, ops[i++]);
            continue;
        }
        m = many_size(run);
        rc = insert_rows(s, ops + i, m);
        i += (size_t)2 << m;
    }
    return rc;
}

static int cmp_id(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

    return (x > y) - (x < y);
}

/* get_many reads the jobs of get.ids (see fl_store_get_many), by id, one lookup each. */
static int get_many(sql_store *s, fl_store_op *op)
{
    size_t n = op->u.get.n_ids;
    int64_t *ids = malloc(n * sizeof *ids);
    fl_job **jobs = calloc(n, sizeof *jobs);
    int rc = ids && jobs ? 0 : -ENOMEM;

    if (!rc) {
        memcpy(ids, op->u.get.ids, n * sizeof *ids);
        qsort(ids, n, sizeof *ids, cmp_id);
    }
    for (size_t i = 0; i < n && rc >= 0; i++)
        if ((i == 0 || ids[i] != ids[i - 1]) && (rc = load_job(s, ids[i], &jobs[op->u.get.n_jobs])) > 0)
            op->u.get.n_jobs++;
    free(ids);
    if (rc < 0 || !op->u.get.n_jobs) {
        fl_store_list_free(jobs, op->u.get.n_jobs);
        op->u.get.n_jobs = 0;
        jobs = NULL;
    }
    op->u.get.jobs = jobs;
    return rc < 0 ? rc : 0;
}

static int sq_get(void *b, fl_store_op *op)
{
    sql_store *s = b;

    if (op->u.get.ids)
        return get_many(s, op);
    int rc = load_row(s, op->u.get.id, op->u.get.with_payload, &op->u.get.job);

    if (rc < 0)
        return rc;
    if (!rc) {
        op->answer = FL_STORE_NOT_FOUND;
        return 0;
    }
    return op->u.get.with_payload ? 0 : load_deliveries(s, op);
}

static int sq_list(void *b, fl_store_op *op)
{
    sql_store *s = b;
    sqlite3_stmt *st;
    int limit = op->u.list.q.limit;
    fl_state state = op->u.list.q.state;
    int queued = op->u.list.q.has_state && state == FL_STATE_QUEUED, typed = op->u.list.q.type != NULL;
    int by_state = op->u.list.q.has_state && !queued;   /* ?3: the queued statements name theirs */
    int rc = 0, step_rc, more = 0;

    st = s->st[queued ? ST_LIST_QUEUED + typed : ST_LIST + by_state + (typed ? 2 : 0)];
    op->u.list.jobs = calloc((size_t)limit, sizeof(*op->u.list.jobs));
    if (!op->u.list.jobs)
        return -ENOMEM;
    /* One row more than the page tells whether another page follows. */
    if (sqlite3_bind_int64(st, 1, op->u.list.q.after ? op->u.list.q.after : INT64_MAX) ||
        sqlite3_bind_int(st, 2, limit + 1) ||
        (by_state && sqlite3_bind_text(st, 3, fl_proto_state_name(state), -1, SQLITE_STATIC)) ||
        (typed && sqlite3_bind_text(st, 4, op->u.list.q.type, -1, SQLITE_STATIC)))
        return db_errno(s);
    while ((step_rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (op->u.list.n == (size_t)limit) {
            more = 1;
            break;
        }
        rc = read_job(st, 0, &op->u.list.jobs[op->u.list.n]);
        if (rc)
            break;
        op->u.list.n++;
    }
    if (!rc && step_rc != SQLITE_ROW && step_rc != SQLITE_DONE)
        rc = rc_errno(step_rc);
    sqlite3_reset(st);
    if (rc)
        return rc;
    op->u.list.next = more ? op->u.list.jobs[op->u.list.n - 1]->id : 0;
    if (op->u.list.n == 0) {
        free(op->u.list.jobs);
        op->u.list.jobs = NULL;
    }
    return 0;
}

static int sq_cancel(void *b, fl_store_op *op)
{
    sql_store *s = b;
    sqlite3_stmt *st = s->st[ST_CANCEL];
    int rc = load_job(s, op->u.cancel.id, &op->u.cancel.job);

    if (rc <= 0) {
        if (rc == 0)
            op->answer = FL_STORE_NOT_FOUND;
        return rc;
    }
    if (op->u.cancel.job->state == FL_STATE_RUNNING) {
        op->answer = FL_STORE_RUNNING;
        return 0;
    }
    if (fl_proto_state_terminal(op->u.cancel.job->state)) {
        op->answer = FL_STORE_ENDED;
        return 0;
    }
    if (sqlite3_bind_int64(st, 1, op->u.cancel.id) || sqlite3_bind_int64(st, 2, op->u.cancel.now) ||
        sqlite3_bind_int64(st, 3, s->now))
        return db_errno(s);
    rc = step_done(st);
    if (rc)
        return rc;
    op->u.cancel.job->state = FL_STATE_CANCELLED;
    op->u.cancel.job->finished_at = op->u.cancel.now;
    op->u.cancel.job->updated_at = s->now;
    return 0;
}

static int sq_set_status(void *b, fl_store_op *op)
{
    sql_store *s = b;
    sqlite3_stmt *st = s->st[ST_SET_STATUS];
    fl_job *job;
    size_t i;
    int rc = load_job(s, op->u.set_status.id, &job);

    if (rc <= 0) {
        if (rc == 0)
            op->answer = FL_STORE_NOT_FOUND;
        return rc;
    }
    op->u.set_status.job = job;
    if ((job->status & op->u.set_status.bits) == op->u.set_status.bits)
        return 0;   /* nothing new: no write, no change to report */
    if (sqlite3_bind_int64(st, 1, op->u.set_status.id) ||
        sqlite3_bind_int(st, 2, op->u.set_status.bits) ||
        sqlite3_bind_int64(st, 3, s->now))
        return db_errno(s);
    rc = step_done(st);
    if (rc)
        return rc;
    job->status |= op->u.set_status.bits;
    job->updated_at = s->now;
    op->u.set_status.changed = 1;
    i = running_find(s, job->id);
    if (s->running[i].id) {
        s->running[i].job->status = job->status;
        s->running[i].job->updated_at = job->updated_at;
    }
    return 0;
}

/* A job that CLAIM may pick, in claim order: higher priority first, then lower id; job is its
 * row with its payload (owned; NULL for the queued one fetched past the limit, which only
 * tells whether more wait and when). */
typedef struct claim_cand { int64_t id, priority, run_at; fl_job *job; } claim_cand;

static int cand_before(const claim_cand *a, const claim_cand *b)
{
    return a->priority != b->priority ? a->priority > b->priority : a->id < b->id;
}

static void cands_free(claim_cand *c, size_t n)
{
    for (size_t i = 0; i < n; i++)
        fl_job_free(c[i].job);
}

/* fetch_cands reads the rows of a bound claim query into c[0..*n), the first `rows` of them
 * as jobs (the rest: id, priority and run_at only). */
static int fetch_cands(sqlite3_stmt *st, size_t rows, claim_cand *c, size_t *n)
{
    int rc, step_rc;

    *n = 0;
    rc = 0;
    while ((step_rc = sqlite3_step(st)) == SQLITE_ROW) {
        c[*n].id = sqlite3_column_int64(st, C_ID);
        c[*n].priority = sqlite3_column_int64(st, C_PRIORITY);
        c[*n].run_at = sqlite3_column_int64(st, C_RUN_AT);
        c[*n].job = NULL;
        if (*n < rows && (rc = read_job(st, 1, &c[*n].job)))
            break;
        (*n)++;
    }
    sqlite3_reset(st);
    if (rc)
        return rc;
    return step_rc == SQLITE_DONE ? 0 : rc_errno(step_rc);
}

/* take_job marks c's job running and moves it to the end of the claim's jobs, as the UPDATE
 * left its row. */
static int take_job(sql_store *s, fl_store_op *op, claim_cand *c)
{
    sqlite3_stmt *st = s->st[ST_CLAIM_TAKE];
    fl_job *job = c->job;
    int rc;

    if (sqlite3_bind_int64(st, 1, c->id) || sqlite3_bind_int64(st, 2, op->u.claim.now) ||
        sqlite3_bind_int64(st, 3, s->now) || sqlite3_bind_text(st, 4, s->node, -1, SQLITE_STATIC))
        return db_errno(s);
    rc = step_done(st);
    if (rc)
        return rc;
    job->state = FL_STATE_RUNNING;
    job->attempts++;
    job->started_at = op->u.claim.now;
    job->updated_at = s->now;
    op->u.claim.jobs[op->u.claim.n++] = job;
    c->job = NULL;
    running_keep(s, job);
    return 0;
}

/* type_value runs statement id on type and returns the first column of its first row (0 if
 * none) in *out. */
static int type_value(sql_store *s, int id, const char *type, int64_t *out)
{
    sqlite3_stmt *st = s->st[id];
    int rc;

    *out = 0;
    if (sqlite3_bind_text(st, 1, type, -1, SQLITE_STATIC))
        return db_errno(s);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *out = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : rc_errno(rc);
}

/* next_scheduled returns the earliest run_at of type's scheduled jobs (0 if none) in *out. */
static int next_scheduled(sql_store *s, const char *type, int64_t *out)
{
    return type_value(s, ST_NEXT_SCHEDULED, type, out);
}

/* claim_pick merges the queued and the due candidates (each in claim order) into the first
 * `limit` (picked, pointers into q and d); *left_run_at is the smallest run_at of the queued
 * ones left behind, or 0. */
static size_t claim_pick(claim_cand *q, size_t nq, claim_cand *d, size_t nd, size_t limit,
                         claim_cand **picked, int64_t *left_run_at)
{
    size_t qi = 0, di = 0, n = 0;

    while (n < limit && (qi < nq || di < nd)) {
        if (di == nd || (qi < nq && cand_before(&q[qi], &d[di])))
            picked[n++] = &q[qi++];
        else
            picked[n++] = &d[di++];
    }
    *left_run_at = 0;
    for (; qi < nq; qi++)
        if (*left_run_at == 0 || q[qi].run_at < *left_run_at)
            *left_run_at = q[qi].run_at;
    return n;
}

/* A queued job may run whatever its run_at, a scheduled one once run_at <= now. Queued and
 * due-scheduled candidates come from two partial indexes, each already in claim order, and
 * are merged here, so a claim reads O(limit) index entries however large the backlog. The
 * due ones are sorted by SQLite (a temporary b-tree, whose set-up costs more than the rest of
 * a small claim), but only those due, which is few unless workers fall behind; and only when
 * the earliest scheduled job says one is due.
 * next_run_at: a queued job left behind is due at once, so the fetched ones (one more than
 * the limit) stand for all queued; the scheduled index gives the earliest of the others, and
 * that is the one read before the claim unless the claim took scheduled jobs. */
static int sq_claim(void *b, fl_store_op *op)
{
    sql_store *s = b;
    sqlite3_stmt *stq = s->st[ST_CLAIM_QUEUED], *std = s->st[ST_CLAIM_DUE];
    size_t limit, nq = 0, nd = 0, n, i, took_due = 0;
    int64_t left_run_at = 0, sched_run_at = 0, paused;
    claim_cand *cand, **picked;
    int rc, due;

    /* A claim after a pause committed takes nothing of the type (and waits for no run_at). */
    if ((rc = type_value(s, ST_PAUSED_ONE, op->u.claim.type, &paused)) || paused)
        return rc;

    limit = op->u.claim.limit > FL_STORE_CLAIM_MAX ? FL_STORE_CLAIM_MAX
                                                   : (size_t)op->u.claim.limit;
    cand = malloc((2 * limit + 1) * sizeof(*cand));
    picked = malloc(limit * sizeof(*picked));
    op->u.claim.jobs = calloc(limit, sizeof(*op->u.claim.jobs));
    rc = cand && picked && op->u.claim.jobs ? 0 : -ENOMEM;
    if (!rc)
        rc = next_scheduled(s, op->u.claim.type, &sched_run_at);
    due = sched_run_at && sched_run_at <= op->u.claim.now;
    if (!rc && (sqlite3_bind_text(stq, 1, op->u.claim.type, -1, SQLITE_STATIC) ||
                sqlite3_bind_int64(stq, 2, (sqlite3_int64)limit + 1) ||
                (due && (sqlite3_bind_text(std, 1, op->u.claim.type, -1, SQLITE_STATIC) ||
                         sqlite3_bind_int64(std, 2, op->u.claim.now) ||
                         sqlite3_bind_int64(std, 3, (sqlite3_int64)limit)))))
        rc = db_errno(s);
    if (!rc)
        rc = fetch_cands(stq, limit, cand, &nq);
    if (!rc && due)
        rc = fetch_cands(std, limit, cand + limit + 1, &nd);
    if (!rc) {
        n = claim_pick(cand, nq, cand + limit + 1, nd, limit, picked, &left_run_at);
        for (i = 0; i < n && !rc; i++) {
            took_due += picked[i] >= cand + limit + 1;
            rc = take_job(s, op, picked[i]);
        }
    }
    if (!rc && took_due)
        rc = next_scheduled(s, op->u.claim.type, &sched_run_at);
    if (cand) {
        cands_free(cand, nq);
        cands_free(cand + limit + 1, nd);
    }
    free(cand);
    free(picked);
    if (rc)
        return rc;
    op->u.claim.next_run_at = left_run_at;
    if (sched_run_at && (!left_run_at || sched_run_at < left_run_at))
        op->u.claim.next_run_at = sched_run_at;
    if (op->u.claim.n == 0) {
        free(op->u.claim.jobs);
        op->u.claim.jobs = NULL;
    }
    return 0;
}

/* finished_row turns job, the row a claim left (without error and output), into the row
 * ST_FINISH makes of it with outcome o (no error, no output) at now. */
static void finished_row(fl_job *job, const fl_store_outcome *o, int64_t now)
{
    job->state = o->state;
    job->status |= o->status_bits;
    job->has_exit_code = o->has_exit_code;
    job->exit_code = o->has_exit_code ? o->exit_code : 0;
    if (o->state == FL_STATE_SCHEDULED)
        job->run_at = o->run_at;
    if (fl_proto_state_terminal(o->state))
        job->finished_at = o->finished_at;
    job->updated_at = now;
}

static int sq_finish(void *b, fl_store_op *op)
{
    sql_store *s = b;
    sqlite3_stmt *st = s->st[ST_FINISH];
    fl_state state = op->u.finish.o.state;
    fl_job *ran;
    int rc, terminal;

    terminal = fl_proto_state_terminal(state);
    if (sqlite3_bind_int64(st, 1, op->u.finish.id) ||
        sqlite3_bind_text(st, 2, fl_proto_state_name(state), -1, SQLITE_STATIC) ||
        sqlite3_bind_int(st, 3, op->u.finish.o.status_bits) ||
        bind_opt_int64(st, 4, op->u.finish.o.has_exit_code, op->u.finish.o.exit_code) ||
        bind_opt_text(st, 5, op->u.finish.o.error) ||
        bind_opt_blob(st, 6, op->u.finish.o.output, op->u.finish.o.output_len) ||
        bind_opt_int64(st, 7, state == FL_STATE_SCHEDULED, op->u.finish.o.run_at) ||
        bind_opt_int64(st, 8, terminal, op->u.finish.o.finished_at) ||
        sqlite3_bind_int64(st, 9, s->now))
        return db_errno(s);
    rc = step_done(st);
    if (rc)
        return rc;
    ran = running_take(s, op->u.finish.id);
    if (sqlite3_changes(s->db) == 0) {
        fl_job_free(ran);
        op->answer = FL_STORE_NOT_FOUND;
        return 0;
    }
    if (ran && !op->u.finish.o.error && !op->u.finish.o.output) {
        finished_row(ran, &op->u.finish.o, s->now);
        op->u.finish.job = ran;
        return 0;
    }
    fl_job_free(ran);
    rc = load_job(s, op->u.finish.id, &op->u.finish.job);
    return rc < 0 ? rc : 0;
}

static int sq_count(void *b, fl_store_op *op)
{
    sql_store *s = b;
    sqlite3_stmt *st;
    size_t cap = 0;
    /* The waiting and running ones by the index that holds each state (see 011): the queued
     * from jobs_queued's entries alone. */
    const char *sql = op->u.count.all_states
        ? "SELECT type, state, count(*) FROM jobs GROUP BY type, state"
        : "SELECT type, 'queued', count(*) FROM jobs INDEXED BY jobs_queued WHERE state = 'queued'"
          " GROUP BY type"
          " UNION ALL SELECT type, 'scheduled', count(*) FROM jobs INDEXED BY jobs_scheduled"
          " WHERE state = 'scheduled' GROUP BY type"
          " UNION ALL SELECT type, 'running', count(*) FROM jobs INDEXED BY jobs_state"
          " WHERE state = 'running' GROUP BY type";
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
        return db_errno(s);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (op->u.count.n == cap) {
            cap = cap ? cap * 2 : 16;
            fl_store_count *rows = realloc(op->u.count.rows, cap * sizeof *rows);
            if (!rows) {
                sqlite3_finalize(st);
                return -ENOMEM;
            }
            op->u.count.rows = rows;
        }
        fl_store_count *r = &op->u.count.rows[op->u.count.n];
        const char *type = (const char *)sqlite3_column_text(st, 0), *state = (const char *)sqlite3_column_text(st, 1);
        snprintf(r->type, sizeof r->type, "%s", type ? type : "");
        if (!state || fl_proto_state_parse(state, strlen(state), &r->state) < 0)
            continue;
        r->n = sqlite3_column_int64(st, 2);
        op->u.count.n++;
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : db_errno(s);
}

/* read_paused fills op's list of paused types from the table. */
static int read_paused(sql_store *s, fl_store_op *op)
{
    sqlite3_stmt *st = s->st[ST_PAUSE_READ];
    size_t cap = 0;
    int rc = 0, step_rc;

    while ((step_rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *type = (const char *)sqlite3_column_text(st, 0);
        if (op->u.pause.n == cap) {
            cap = cap ? cap * 2 : 8;
            void *grown = realloc(op->u.pause.types, cap * sizeof *op->u.pause.types);
            if (!grown) {
                rc = -ENOMEM;
                break;
            }
            op->u.pause.types = grown;
        }
        snprintf(op->u.pause.types[op->u.pause.n++], sizeof *op->u.pause.types, "%s", type ? type : "");
    }
    if (!rc && step_rc != SQLITE_ROW && step_rc != SQLITE_DONE)
        rc = rc_errno(step_rc);
    sqlite3_reset(st);
    return rc;
}

static int sq_pause(void *b, fl_store_op *op)
{
    sql_store *s = b;
    const char *type = op->u.pause.type;
    sqlite3_stmt *st = s->st[op->u.pause.paused ? ST_PAUSE_ADD : ST_PAUSE_DEL];
    int rc;

    if (type) {
        if (sqlite3_bind_text(st, 1, type, -1, SQLITE_STATIC) ||
            (op->u.pause.paused && sqlite3_bind_int64(st, 2, s->now)))
            return db_errno(s);
        if ((rc = step_done(st)))
            return rc;
    }
    return read_paused(s, op);
}

static int sq_retry(void *b, fl_store_op *op)
{
    sql_store *s = b;
    sqlite3_stmt *st = s->st[ST_RETRY];
    int rc;

    if (sqlite3_bind_int64(st, 1, op->u.retry.id) || sqlite3_bind_int64(st, 2, op->u.retry.now) ||
        sqlite3_bind_int(st, 3, FL_STATUS_ABORTED))
        return db_errno(s);
    if ((rc = step_done(st)))
        return rc;
    int changed = sqlite3_changes(s->db) > 0;
    rc = load_job(s, op->u.retry.id, &op->u.retry.job);
    if (rc < 0)
        return rc;
    if (!op->u.retry.job)
        op->answer = FL_STORE_NOT_FOUND;
    else if (!changed)
        op->answer = FL_STORE_WRONG_STATE;
    return 0;
}

static int sq_prune(void *b, fl_store_op *op)
{
    sql_store *s = b;
    static const enum stmt_id order[] = { ST_PRUNE_DELIVERIES, ST_PRUNE_PAYLOADS, ST_PRUNE_JOBS };
    int rc;

    for (size_t i = 0; i < sizeof order / sizeof *order; i++) {
        sqlite3_stmt *st = s->st[order[i]];
        if (sqlite3_bind_int64(st, 1, op->u.prune.before) || sqlite3_bind_int(st, 2, op->u.prune.limit))
            return db_errno(s);
        if ((rc = step_done(st)))
            return rc;
    }
    op->u.prune.n = (size_t)sqlite3_changes(s->db);   /* of the last one: the jobs */
    return 0;
}

static int sq_last_key(void *b, fl_store_op *op)
{
    sql_store *s = b;
    sqlite3_stmt *st = s->st[ST_LAST_KEY];
    const char *prefix = op->u.last_key.prefix;
    size_t n = strlen(prefix);
    char *above = strdup(prefix);
    int rc = 0, step_rc;

    if (!above)
        return -ENOMEM;
    above[n - 1] = (char)(above[n - 1] + 1);   /* idem keys are visible ASCII: no overflow */
    if (sqlite3_bind_text(st, 1, op->u.last_key.type, -1, SQLITE_STATIC) ||
        sqlite3_bind_text(st, 2, prefix, -1, SQLITE_STATIC) || sqlite3_bind_text(st, 3, above, -1, SQLITE_STATIC)) {
        free(above);
        return db_errno(s);
    }
    step_rc = sqlite3_step(st);
    if (step_rc == SQLITE_ROW) {
        const char *key = (const char *)sqlite3_column_text(st, 0);
        if (key && !(op->u.last_key.key = strdup(key)))
            rc = -ENOMEM;
    } else if (step_rc != SQLITE_DONE) {
        rc = rc_errno(step_rc);
    }
    sqlite3_reset(st);
    free(above);
    return rc;
}

static int sq_changed(void *b, fl_store_op *op)
{
    sql_store *s = b;
    sqlite3_stmt *st = s->st[ST_CHANGED];
    int limit = op->u.changed.limit, rc = 0, step_rc;

    op->u.changed.jobs = calloc((size_t)limit, sizeof(*op->u.changed.jobs));
    if (!op->u.changed.jobs)
        return -ENOMEM;
    if (sqlite3_bind_int64(st, 1, op->u.changed.after) || sqlite3_bind_int64(st, 2, op->u.changed.since) ||
        sqlite3_bind_int(st, 3, limit))
        return db_errno(s);
    while (op->u.changed.n < (size_t)limit && (step_rc = sqlite3_step(st)) == SQLITE_ROW) {
        rc = read_job(st, 0, &op->u.changed.jobs[op->u.changed.n]);
        if (rc)
            break;
        op->u.changed.n++;
    }
    if (!rc && op->u.changed.n < (size_t)limit && step_rc != SQLITE_DONE)
        rc = rc_errno(step_rc);
    sqlite3_reset(st);
    if (rc)
        return rc;
    /* A full page may have a next one; an empty next page ends the walk. */
    op->u.changed.next = op->u.changed.n == (size_t)limit ? op->u.changed.jobs[limit - 1]->id : 0;
    if (op->u.changed.n == 0) {
        free(op->u.changed.jobs);
        op->u.changed.jobs = NULL;
    }
    return 0;
}


/* ---- callback deliveries --------------------------------------------------------------- */

static int column_is(sqlite3_stmt *st, int col, const char *want)
{
    const unsigned char *v = sqlite3_column_text(st, col);
    return v && strcmp((const char *)v, want) == 0;
}

/* read_delivery reads the current row of st (DELIVERY_COLS) into one allocation. */
static int read_delivery(sqlite3_stmt *st, fl_delivery **out)
{
    const void *target, *error;
    size_t tlen, elen;
    if (col_part(st, D_TARGET, &target, &tlen) || col_part(st, D_LAST_ERROR, &error, &elen))
        return -ENOMEM;
    if (tlen == FL_JOB_ABSENT)
        return -EIO;   /* NOT NULL in the schema */
    fl_delivery *d = calloc(1, sizeof *d + tlen + 1 + (elen == FL_JOB_ABSENT ? 0 : elen + 1));
    if (!d)
        return -ENOMEM;
    d->target = (char *)(d + 1);
    memcpy(d->target, target, tlen);
    if (elen != FL_JOB_ABSENT) {
        d->last_error = d->target + tlen + 1;
        memcpy(d->last_error, error, elen);
    }
    d->id = sqlite3_column_int64(st, D_ID);
    d->job_id = sqlite3_column_int64(st, D_JOB_ID);
    d->abort = column_is(st, D_EVENT, "abort");
    d->state = column_is(st, D_STATE, "delivered") ? FL_DELIVERY_DELIVERED
             : column_is(st, D_STATE, "failed")    ? FL_DELIVERY_FAILED
                                                   : FL_DELIVERY_PENDING;
    d->attempts = sqlite3_column_int(st, D_ATTEMPTS);
    d->created_at = sqlite3_column_int64(st, D_CREATED_AT);
    d->next_at = sqlite3_column_int64(st, D_NEXT_AT);
    d->last_at = sqlite3_column_int64(st, D_LAST_AT);
    d->has_last_status = sqlite3_column_type(st, D_LAST_STATUS) != SQLITE_NULL;
    d->last_status = sqlite3_column_int(st, D_LAST_STATUS);
    *out = d;
    return 0;
}

static int sq_add_delivery(void *b, int64_t job_id, int abort, const char *target)
{
    sql_store *s = b;
    sqlite3_stmt *st = s->st[ST_DELIVERY_ADD];
    if (sqlite3_bind_int64(st, 1, job_id) ||
        sqlite3_bind_text(st, 2, abort ? "abort" : "complete", -1, SQLITE_STATIC) ||
        sqlite3_bind_text(st, 3, target, -1, SQLITE_STATIC) ||
        sqlite3_bind_int64(st, 4, s->now))
        return db_errno(s);
    return step_done(st);
}

/* take_delivery marks delivery id in flight and reads it and its job into the next slot. */
static int take_delivery(sql_store *s, fl_store_op *op, int64_t id)
{
    sqlite3_stmt *st = s->st[ST_DELIVERY_TAKE];
    fl_delivery *d = NULL;
    int rc;

    if (sqlite3_bind_int64(st, 1, id) || sqlite3_bind_int64(st, 2, s->now))
        return db_errno(s);
    if ((rc = step_done(st)))
        return rc;
    st = s->st[ST_DELIVERY_READ];
    if (sqlite3_bind_int64(st, 1, id))
        return db_errno(s);
    rc = sqlite3_step(st);
    rc = rc == SQLITE_ROW ? read_delivery(st, &d) : rc == SQLITE_DONE ? -EIO : rc_errno(rc);
    sqlite3_reset(st);
    if (rc)
        return rc;
    op->u.take.items[op->u.take.n++] = d;
    rc = load_row(s, d->job_id, 1, &d->job);   /* with its payload: see callback_payload */
    return rc < 0 ? rc : 0;   /* a job pruned under its delivery leaves d->job NULL */
}

static int sq_delivery_take(void *b, fl_store_op *op)
{
    sql_store *s = b;
    sqlite3_stmt *st = s->st[ST_DELIVERY_DUE];
    int limit = op->u.take.limit, rc = 0, step_rc;
    int64_t *ids;
    size_t n = 0;

    ids = malloc((size_t)limit * sizeof *ids);
    op->u.take.items = calloc((size_t)limit, sizeof *op->u.take.items);
    if (!ids || !op->u.take.items) {
        free(ids);
        return -ENOMEM;
    }
    if (sqlite3_bind_int64(st, 1, op->u.take.now) || sqlite3_bind_int(st, 2, limit)) {
        free(ids);
        return db_errno(s);
    }
    while ((step_rc = sqlite3_step(st)) == SQLITE_ROW)
        ids[n++] = sqlite3_column_int64(st, 0);
    if (step_rc != SQLITE_DONE)
        rc = rc_errno(step_rc);
    sqlite3_reset(st);
    for (size_t i = 0; i < n && !rc; i++)
        rc = take_delivery(s, op, ids[i]);
    free(ids);
    if (rc)
        return rc;
    st = s->st[ST_DELIVERY_NEXT];
    step_rc = sqlite3_step(st);
    op->u.take.next_at = step_rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    sqlite3_reset(st);
    if (step_rc != SQLITE_ROW && step_rc != SQLITE_DONE)
        return rc_errno(step_rc);
    if (op->u.take.n == 0) {
        free(op->u.take.items);
        op->u.take.items = NULL;
    }
    return 0;
}

static int sq_delivery_done(void *b, fl_store_op *op)
{
    sql_store *s = b;
    sqlite3_stmt *st = s->st[ST_DELIVERY_DONE];
    fl_delivery_state state = op->u.done.state;
    if (sqlite3_bind_int64(st, 1, op->u.done.id) ||
        sqlite3_bind_text(st, 2, fl_store_delivery_state_name(state), -1, SQLITE_STATIC) ||
        sqlite3_bind_int64(st, 3, state == FL_DELIVERY_PENDING ? op->u.done.next_at : 0) ||
        bind_opt_int64(st, 4, op->u.done.has_status, op->u.done.status) ||
        bind_opt_text(st, 5, op->u.done.error))
        return db_errno(s);
    int rc = step_done(st);
    if (!rc && sqlite3_changes(s->db) == 0)
        op->answer = FL_STORE_NOT_FOUND;
    return rc;
}

/* load_deliveries reads every delivery of job id into the GET op. */
static int load_deliveries(sql_store *s, fl_store_op *op)
{
    sqlite3_stmt *st = s->st[ST_DELIVERY_OF_JOB];
    size_t cap = 0;
    int rc = 0, step_rc;
    if (sqlite3_bind_int64(st, 1, op->u.get.id))
        return db_errno(s);
    while ((step_rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (op->u.get.n_deliveries == cap) {
            cap = cap ? cap * 2 : 4;
            fl_delivery **a = realloc(op->u.get.deliveries, cap * sizeof *a);
            if (!a) {
                rc = -ENOMEM;
                break;
            }
            op->u.get.deliveries = a;
        }
        rc = read_delivery(st, &op->u.get.deliveries[op->u.get.n_deliveries]);
        if (rc)
            break;
        op->u.get.n_deliveries++;
    }
    if (!rc && step_rc != SQLITE_DONE)
        rc = rc_errno(step_rc);
    sqlite3_reset(st);
    return rc;
}


/* ---- the files under the database ------------------------------------------------------ */

/* path_id reads the device and inode at path into *id: 0, 0 with a zero id if nothing is
 * there, or a negative errno. It asks statx for the inode alone: a stat that reads the
 * timestamps makes Linux (6.13 on, "multigrain" timestamps) give the file's next write a fresh
 * fine-grained ctime, and on ext4 that turns the commit's fdatasync into two synchronous
 * writes (the inode after the data). Measured on ext4, 20 KB commits: with a stat between
 * them 4.8k/s, 80 us CPU and 3 context switches per commit; with this statx or none 7.1k/s,
 * 53 us and 2. */
static int path_id(const char *path, file_id *id)
{
    struct statx stx;

    id->dev = 0;
    id->ino = 0;
    if (statx(AT_FDCWD, path, 0, STATX_INO, &stx) == 0) {
        id->dev = makedev(stx.stx_dev_major, stx.stx_dev_minor);
        id->ino = stx.stx_ino;
        return 0;
    }
    return errno == ENOENT || errno == ENOTDIR ? 0 : -errno;
}

/* check_files: 0 while each watched path still names the file opened; -ESTALE from the first
 * time one does not (logged then, once): every ack after that would go to a file nobody will
 * read again. A stat that fails otherwise fails this group only. */
static int check_files(sql_store *s)
{
    char now_s[24];
    file_id now;
    int i, rc;

    if (s->lost)
        return -ESTALE;
    for (i = 0; i < W_COUNT; i++) {
        const watched_file *w = &s->files[i];
        if (!w->path || w->id.ino == 0)
            continue;
        if ((rc = path_id(w->path, &now)))
            return rc;
        if (now.dev == w->id.dev && now.ino == w->id.ino)
            continue;
        s->lost = 1;
        snprintf(now_s, sizeof now_s, now.ino ? "%llu" : "none", (unsigned long long)now.ino);
        fl_log(LOG_ERR, "store: %s was deleted or replaced (inode %llu -> %s); refusing new work"
               " until flingd restarts", w->path, (unsigned long long)w->id.ino, now_s);
        return -ESTALE;
    }
    return 0;
}

/* watch_files records which files the open connection uses, once migrations created them. */
static int watch_files(sql_store *s, char *err, size_t errlen)
{
    sqlite3_filename db = sqlite3_db_filename(s->db, "main");
    const char *paths[W_COUNT] = { [W_DB] = db, [W_WAL] = db ? sqlite3_filename_wal(db) : NULL };
    int i, rc;

    for (i = 0; i < W_COUNT; i++) {
        if (!paths[i] || !*paths[i])
            continue;
        s->files[i].path = strdup(paths[i]);
        if (!s->files[i].path) {
            fl_store_errf(err, errlen, "out of memory");
            return -ENOMEM;
        }
        if ((rc = path_id(s->files[i].path, &s->files[i].id))) {
            fl_store_errf(err, errlen, "cannot stat %s: %s", s->files[i].path, strerror(-rc));
            return rc;
        }
    }
    return 0;
}

/* ---- one write per commit for the WAL -------------------------------------------------
 * SQLite writes a commit's WAL frames as two pwrite()s each (24-byte header, then the page):
 * a lone job's commit is 10 system calls, a group of 64 some 20, before its one fdatasync.
 * Under durability = full the "fl-wal" VFS (the default one with the WAL's writes held back)
 * gathers the contiguous writes of a WAL file in a buffer and hands them to the file in one
 * write when anything else happens to it: a sync, a read, a size query or change, a write
 * elsewhere, a lock, a file control, the close, or a full buffer. Nothing in the file changes
 * meaning: every byte is in it before the fsync that makes it durable, and before SQLite can
 * read it back. Only under full: there each commit syncs the WAL before it publishes the
 * frames to other connections (the wal-index), so no reader ever looks for a frame still in
 * the buffer; under normal nothing syncs at commit, and the buffer would hide frames the
 * wal-index already names. Other files (the database, its -shm) get the default VFS's own
 * methods untouched. */

/* Below 128 KiB: the default VFS hands a write to pwrite() at most 128 KiB - 1 at a time and
 * takes a 0-byte result (what it makes of an exact multiple of 128 KiB) for a full disk. */
#define WAL_BUF_BYTES (120 * 1024)

typedef struct wal_file {
    sqlite3_file base;             /* pMethods = wal_methods */
    sqlite3_file *real;            /* the default VFS's file, in the same allocation, after us */
    unsigned char *buf;            /* WAL_BUF_BYTES, sqlite3_malloc'd; owned */
    sqlite3_int64 buf_off;         /* file offset of buf[0] */
    int buf_len;                   /* bytes held */
    int lost_write;                /* SQLITE_OK, or a failed write the next sync reports */
} wal_file;

static sqlite3_vfs wal_vfs;        /* set up once by wal_vfs_register; its pAppData: the default */
static int wal_vfs_ready;          /* wal_vfs is registered */
static sqlite3_io_methods wal_methods;

static sqlite3_vfs *base_vfs(void)
{
    return wal_vfs.pAppData;
}

/* wal_flush writes what is held: SQLITE_OK or the default VFS's error for that write. The
 * bytes go either way: they belong to the transaction being written, which that error fails
 * (its next transaction writes the same offsets again), and a full disk must not fail the
 * reads of what is already there. */
static int wal_flush(wal_file *f)
{
    int rc;

    if (f->buf_len == 0)
        return SQLITE_OK;
    rc = f->real->pMethods->xWrite(f->real, f->buf, f->buf_len, f->buf_off);
    f->buf_len = 0;
    return rc;
}

/* wal_flush_noted flushes for a call whose result SQLite may not look at (a size hint, a
 * size query before a truncation it only logs): a failure is also kept for the next sync, so
 * no sync succeeds over frames that never reached the file. */
static int wal_flush_noted(wal_file *f)
{
    int rc = wal_flush(f);

    if (rc != SQLITE_OK)
        f->lost_write = rc;
    return rc;
}

static int wal_write(sqlite3_file *pf, const void *p, int n, sqlite3_int64 off)
{
    wal_file *f = (wal_file *)pf;
    int rc;

    if (f->buf_len > 0 && (off != f->buf_off + f->buf_len || f->buf_len + n > WAL_BUF_BYTES) &&
        (rc = wal_flush(f)) != SQLITE_OK)
        return rc;
    if (n > WAL_BUF_BYTES)
        return f->real->pMethods->xWrite(f->real, p, n, off);
    if (f->buf_len == 0)
        f->buf_off = off;
    memcpy(f->buf + f->buf_len, p, (size_t)n);
    f->buf_len += n;
    return SQLITE_OK;
}

static int wal_close(sqlite3_file *pf)
{
    wal_file *f = (wal_file *)pf;
    int rc = wal_flush(f), crc = f->real->pMethods->xClose(f->real);

    sqlite3_free(f->buf);
    f->buf = NULL;
    return rc != SQLITE_OK ? rc : crc;
}

/* The methods below flush, then do what the default VFS does. */
#define WAL_FLUSH_OR_RETURN(pf)                                       \
    do {                                                              \
        int flush_rc_ = wal_flush_noted((wal_file *)(pf));            \
        if (flush_rc_ != SQLITE_OK)                                   \
            return flush_rc_;                                         \
    } while (0)
#define REAL(pf) (((wal_file *)(pf))->real)

static int wal_read(sqlite3_file *pf, void *p, int n, sqlite3_int64 off)
{
    int rc = wal_flush((wal_file *)pf);   /* SQLite fails the transaction on a read's error */

    return rc != SQLITE_OK ? rc : REAL(pf)->pMethods->xRead(REAL(pf), p, n, off);
}

static int wal_truncate(sqlite3_file *pf, sqlite3_int64 size)
{
    WAL_FLUSH_OR_RETURN(pf);
    return REAL(pf)->pMethods->xTruncate(REAL(pf), size);
}

static int wal_sync(sqlite3_file *pf, int flags)
{
    wal_file *f = (wal_file *)pf;
    int rc = wal_flush(f);

    if (rc == SQLITE_OK)
        rc = f->lost_write;
    f->lost_write = SQLITE_OK;
    return rc != SQLITE_OK ? rc : f->real->pMethods->xSync(f->real, flags);
}

static int wal_file_size(sqlite3_file *pf, sqlite3_int64 *size)
{
    WAL_FLUSH_OR_RETURN(pf);
    return REAL(pf)->pMethods->xFileSize(REAL(pf), size);
}

static int wal_lock(sqlite3_file *pf, int lock)
{
    WAL_FLUSH_OR_RETURN(pf);
    return REAL(pf)->pMethods->xLock(REAL(pf), lock);
}

static int wal_unlock(sqlite3_file *pf, int lock)
{
    WAL_FLUSH_OR_RETURN(pf);
    return REAL(pf)->pMethods->xUnlock(REAL(pf), lock);
}

static int wal_check_reserved(sqlite3_file *pf, int *out)
{
    WAL_FLUSH_OR_RETURN(pf);
    return REAL(pf)->pMethods->xCheckReservedLock(REAL(pf), out);
}

static int wal_file_control(sqlite3_file *pf, int op, void *arg)
{
    WAL_FLUSH_OR_RETURN(pf);
    return REAL(pf)->pMethods->xFileControl(REAL(pf), op, arg);
}

static int wal_sector_size(sqlite3_file *pf)
{
    return REAL(pf)->pMethods->xSectorSize(REAL(pf));
}

static int wal_device_characteristics(sqlite3_file *pf)
{
    return REAL(pf)->pMethods->xDeviceCharacteristics(REAL(pf));
}

/* A WAL file has no shared memory nor memory map of its own: these only keep the method
 * table of the default VFS's version. */
static int wal_shm_map(sqlite3_file *pf, int pg, int pgsz, int extend, void volatile **pp)
{
    WAL_FLUSH_OR_RETURN(pf);
    return REAL(pf)->pMethods->xShmMap(REAL(pf), pg, pgsz, extend, pp);
}

static int wal_shm_lock(sqlite3_file *pf, int off, int n, int flags)
{
    WAL_FLUSH_OR_RETURN(pf);
    return REAL(pf)->pMethods->xShmLock(REAL(pf), off, n, flags);
}

static void wal_shm_barrier(sqlite3_file *pf)
{
    wal_flush_noted((wal_file *)pf);
    REAL(pf)->pMethods->xShmBarrier(REAL(pf));
}

static int wal_shm_unmap(sqlite3_file *pf, int del)
{
    WAL_FLUSH_OR_RETURN(pf);
    return REAL(pf)->pMethods->xShmUnmap(REAL(pf), del);
}

static int wal_fetch(sqlite3_file *pf, sqlite3_int64 off, int n, void **pp)
{
    WAL_FLUSH_OR_RETURN(pf);
    return REAL(pf)->pMethods->xFetch(REAL(pf), off, n, pp);
}

static int wal_unfetch(sqlite3_file *pf, sqlite3_int64 off, void *p)
{
    return REAL(pf)->pMethods->xUnfetch(REAL(pf), off, p);
}

/* wal_open opens every file with the default VFS; a WAL file gets the buffer in front. A
 * file that is not a WAL is the default VFS's file itself, at the start of the space SQLite
 * gave us, so its methods are called directly. */
static int wal_open(sqlite3_vfs *vfs, sqlite3_filename name, sqlite3_file *pf, int flags,
                    int *out_flags)
{
    sqlite3_vfs *base = base_vfs();
    wal_file *f = (wal_file *)pf;
    int rc;

    (void)vfs;
    if (!(flags & SQLITE_OPEN_WAL))
        return base->xOpen(base, name, pf, flags, out_flags);
    memset(f, 0, sizeof *f);
    f->real = (sqlite3_file *)(f + 1);
    f->buf = sqlite3_malloc(WAL_BUF_BYTES);
    if (!f->buf)
        return SQLITE_NOMEM;
    rc = base->xOpen(base, name, f->real, flags, out_flags);
    if (rc != SQLITE_OK) {
        if (f->real->pMethods)
            f->real->pMethods->xClose(f->real);
        sqlite3_free(f->buf);
        f->buf = NULL;
        return rc;
    }
    wal_methods.iVersion = f->real->pMethods->iVersion < 3 ? f->real->pMethods->iVersion : 3;
    f->base.pMethods = &wal_methods;
    return SQLITE_OK;
}

/* The rest of the VFS is the default one's. */
static int wal_delete(sqlite3_vfs *v, const char *p, int sync_dir)
{
    (void)v;
    return base_vfs()->xDelete(base_vfs(), p, sync_dir);
}

static int wal_access(sqlite3_vfs *v, const char *p, int flags, int *out)
{
    (void)v;
    return base_vfs()->xAccess(base_vfs(), p, flags, out);
}

static int wal_full_pathname(sqlite3_vfs *v, const char *p, int n, char *out)
{
    (void)v;
    return base_vfs()->xFullPathname(base_vfs(), p, n, out);
}

static int wal_randomness(sqlite3_vfs *v, int n, char *out)
{
    (void)v;
    return base_vfs()->xRandomness(base_vfs(), n, out);
}

static int wal_sleep(sqlite3_vfs *v, int us)
{
    (void)v;
    return base_vfs()->xSleep(base_vfs(), us);
}

static int wal_current_time(sqlite3_vfs *v, double *out)
{
    (void)v;
    return base_vfs()->xCurrentTime(base_vfs(), out);
}

static int wal_get_last_error(sqlite3_vfs *v, int n, char *out)
{
    (void)v;
    return base_vfs()->xGetLastError(base_vfs(), n, out);
}

static int wal_current_time_int64(sqlite3_vfs *v, sqlite3_int64 *out)
{
    (void)v;
    return base_vfs()->xCurrentTimeInt64(base_vfs(), out);
}

static void *wal_dl_open(sqlite3_vfs *v, const char *p)
{
    (void)v;
    return base_vfs()->xDlOpen(base_vfs(), p);
}

static void wal_dl_error(sqlite3_vfs *v, int n, char *out)
{
    (void)v;
    base_vfs()->xDlError(base_vfs(), n, out);
}

static void (*wal_dl_sym(sqlite3_vfs *v, void *h, const char *sym))(void)
{
    (void)v;
    return base_vfs()->xDlSym(base_vfs(), h, sym);
}

static void wal_dl_close(sqlite3_vfs *v, void *h)
{
    (void)v;
    base_vfs()->xDlClose(base_vfs(), h);
}

/* wal_vfs_register registers "fl-wal" (not as the default): 0 or -ENOTSUP. */
static int wal_vfs_register(void)
{
    sqlite3_vfs *base = sqlite3_vfs_find(NULL);
    static const sqlite3_io_methods methods = {
        .iVersion = 3,
        .xClose = wal_close, .xRead = wal_read, .xWrite = wal_write,
        .xTruncate = wal_truncate, .xSync = wal_sync, .xFileSize = wal_file_size,
        .xLock = wal_lock, .xUnlock = wal_unlock, .xCheckReservedLock = wal_check_reserved,
        .xFileControl = wal_file_control, .xSectorSize = wal_sector_size,
        .xDeviceCharacteristics = wal_device_characteristics,
        .xShmMap = wal_shm_map, .xShmLock = wal_shm_lock, .xShmBarrier = wal_shm_barrier,
        .xShmUnmap = wal_shm_unmap, .xFetch = wal_fetch, .xUnfetch = wal_unfetch,
    };

    if (!base || base->iVersion < 2)
        return -ENOTSUP;
    wal_methods = methods;
    wal_vfs = (sqlite3_vfs){
        .iVersion = 2,
        .szOsFile = (int)sizeof(wal_file) + base->szOsFile,
        .mxPathname = base->mxPathname,
        .zName = FL_WAL_VFS,
        .pAppData = base,
        .xOpen = wal_open, .xDelete = wal_delete, .xAccess = wal_access,
        .xFullPathname = wal_full_pathname,
        .xDlOpen = wal_dl_open, .xDlError = wal_dl_error, .xDlSym = wal_dl_sym,
        .xDlClose = wal_dl_close,
        .xRandomness = wal_randomness, .xSleep = wal_sleep, .xCurrentTime = wal_current_time,
        .xGetLastError = wal_get_last_error, .xCurrentTimeInt64 = wal_current_time_int64,
    };
    return sqlite3_vfs_register(&wal_vfs, 0) == SQLITE_OK ? 0 : -ENOTSUP;
}


/* ---- open, migrations, close ----------------------------------------------------------- */

/* make_parent_dir creates the directories above path (mkdir -p of its dirname). */
static int make_parent_dir(const char *path, char *err, size_t errlen)
{
    char *dir = strdup(path), *slash, *p, c;
    int rc = 0;

    if (!dir) {
        fl_store_errf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = '\0';
        /* Each '/' after the first character ends one ancestor, and so does the end. */
        for (p = dir + 1; !rc; p++) {
            if (*p != '/' && *p != '\0')
                continue;
            c = *p;
            *p = '\0';
            if (mkdir(dir, 0755) && errno != EEXIST) {
                rc = -errno;
                fl_store_errf(err, errlen, "cannot create directory %s: %s", dir, strerror(-rc));
            }
            *p = c;
            if (c == '\0')
                break;
        }
    }
    free(dir);
    return rc;
}

/* exec_sql runs SQL text once (set-up only; group ops use prepared statements). */
static int exec_sql(sql_store *s, const char *sql, const char *what, char *err, size_t errlen)
{
    char *msg = NULL;
    int rc = sqlite3_exec(s->db, sql, NULL, NULL, &msg);

    if (rc == SQLITE_OK)
        return 0;
    fl_store_errf(err, errlen, "%s: %s", what, msg ? msg : sqlite3_errstr(rc));
    sqlite3_free(msg);
    return rc_errno(rc);
}

/* query_text runs a one-row statement and copies its first column into buf. */
static int query_text(sql_store *s, const char *sql, char *buf, size_t len)
{
    sqlite3_stmt *st;
    const unsigned char *v;
    int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);

    if (rc != SQLITE_OK)
        return rc_errno(rc);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        v = sqlite3_column_text(st, 0);
        snprintf(buf, len, "%s", v ? (const char *)v : "");
        rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    return rc == SQLITE_OK ? 0 : rc_errno(rc);
}

static int configure(sql_store *s, int durability_full, char *err, size_t errlen)
{
    char mode[16], sql[160];
    int rc;

    sqlite3_busy_timeout(s->db, FL_STORE_BUSY_MS);
    rc = query_text(s, "PRAGMA journal_mode = WAL", mode, sizeof(mode));
    if (rc) {
        fl_store_errf(err, errlen, "cannot set WAL mode: %s", sqlite3_errmsg(s->db));
        return rc;
    }
    if (strcmp(mode, "wal") != 0) {
        fl_store_errf(err, errlen, "the database refuses WAL mode (journal_mode is %s)", mode);
        return -ENOTSUP;
    }
    /* In WAL mode FULL syncs the log at every commit (the ack means durable); NORMAL only at
     * checkpoints (a power cut may lose the last commits, a crash of flingd does not). */
    snprintf(sql, sizeof(sql),
             "PRAGMA synchronous = %s; PRAGMA journal_size_limit = %d;"
             " PRAGMA cache_size = -%d; PRAGMA temp_store = MEMORY",
             durability_full ? "FULL" : "NORMAL", FL_STORE_WAL_LIMIT, FL_STORE_CACHE_KIB);
    return exec_sql(s, sql, "cannot configure the database", err, errlen);
}

/* user_version reads PRAGMA user_version, the number of migrations applied. */
static int user_version(sql_store *s, int *out)
{
    char buf[24];
    int rc = query_text(s, "PRAGMA user_version", buf, sizeof(buf));

    *out = atoi(buf);
    return rc;
}

/* migrate applies the migrations the file lacks, each with its version bump in its own
 * transaction; the version is read under the write lock, so two daemons starting on the
 * same file cannot both apply one. */
static int migrate(sql_store *s, const char *path, char *err, size_t errlen)
{
    char what[64], sql[48];
    int rc, v;

    for (;;) {
        rc = exec_sql(s, "BEGIN IMMEDIATE", "cannot lock the database", err, errlen);
        if (rc)
            return rc;
        rc = user_version(s, &v);
        if (rc) {
            fl_store_errf(err, errlen, "cannot read the schema version: %s", sqlite3_errmsg(s->db));
            break;
        }
        if (v > fl_migrations_count) {
            fl_store_errf(err, errlen, "%s: schema version %d is newer than this flingd knows (%d);"
                 " run a newer flingd", path, v, fl_migrations_count);
            rc = -ENOTSUP;
            break;
        }
        if (v == fl_migrations_count)
            return exec_sql(s, "COMMIT", "cannot commit", err, errlen);
        snprintf(what, sizeof(what), "migration %03d", v + 1);
        rc = exec_sql(s, fl_migrations[v], what, err, errlen);
        if (rc)
            break;
        snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", v + 1);
        rc = exec_sql(s, sql, what, err, errlen);
        if (!rc)
            rc = exec_sql(s, "COMMIT", what, err, errlen);
        if (rc)
            break;
    }
    if (!sqlite3_get_autocommit(s->db))
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

static int prepare(sql_store *s, const char *sql, sqlite3_stmt **out, char *err, size_t errlen)
{
    int rc = sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, out, NULL);

    if (rc == SQLITE_OK)
        return 0;
    fl_store_errf(err, errlen, "cannot prepare a statement: %s", sqlite3_errmsg(s->db));
    return rc_errno(rc);
}

/* prepare_rows prepares head followed by `rows` copies of row, comma-separated. */
static int prepare_rows(sql_store *s, const char *head, const char *row, size_t rows,
                        sqlite3_stmt **out, char *err, size_t errlen)
{
    size_t hl = strlen(head), rl = strlen(row), i;
    char *sql = malloc(hl + rows * (rl + 1) + 1), *p;
    int rc;

    if (!sql) {
        fl_store_errf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    memcpy(sql, head, hl);
    p = sql + hl;
    for (i = 0; i < rows; i++) {
        if (i)
            *p++ = ',';
        memcpy(p, row, rl);
        p += rl;
    }
    *p = '\0';
    rc = prepare(s, sql, out, err, errlen);
    free(sql);
    return rc;
}

static int prepare_all(sql_store *s, char *err, size_t errlen)
{
    int i, rc = 0;

    for (i = 0; i < ST_COUNT && !rc; i++)
        rc = prepare(s, stmt_sql[i], &s->st[i], err, errlen);
    for (i = 0; i < MANY_SIZES && !rc; i++) {
        rc = prepare_rows(s, INSERT_JOBS, INSERT_JOB_ROW, (size_t)2 << i, &s->many_jobs[i], err, errlen);
        if (!rc)
            rc = prepare_rows(s, INSERT_PAYLOADS, INSERT_PAYLOAD_ROW, (size_t)2 << i,
                              &s->many_payloads[i], err, errlen);
    }
    return rc;
}

static void checkpointer_stop(sql_store *s);

static void destroy(sql_store *s)
{
    int i;

    checkpointer_stop(s);   /* before the writer's close, which checkpoints the last of the WAL */
    for (i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(s->st[i]);
    for (i = 0; i < MANY_SIZES; i++) {
        sqlite3_finalize(s->many_jobs[i]);
        sqlite3_finalize(s->many_payloads[i]);
    }
    sqlite3_close(s->db);
    for (i = 0; i < W_COUNT; i++)
        free(s->files[i].path);
    if (s->running)
        running_forget(s);
    free(s->running);
    free(s);
}

/* create_private creates the database file 0600 if it does not exist, whatever the umask:
 * SQLite gives the -wal and -shm it creates the mode of the database file, and a payload is
 * nobody else's business. An existing file keeps the mode its owner gave it. */
static int create_private(const char *path, char *err, size_t errlen)
{
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    int rc = 0;

    if (fd < 0) {
        if (errno == EEXIST)
            return 0;
        rc = -errno;
        fl_store_errf(err, errlen, "cannot create %s: %s", path, strerror(-rc));
        return rc;
    }
    if (fchmod(fd, 0600) < 0) {   /* open() applied the umask; a umask of 0277 would leave 0400 */
        rc = -errno;
        fl_store_errf(err, errlen, "cannot make %s private: %s", path, strerror(-rc));
    }
    close(fd);
    if (rc)
        unlink(path);
    else
        fl_log(LOG_INFO, "store: created a new database %s (job ids start at 1)", path);
    return rc;
}

/* open_db opens the file; the connection is used by one thread at a time (open and recover,
 * then only the writer), so SQLite's own per-call mutex is not needed. */
static int open_db(sql_store *s, const char *path, int durability_full, char *err, size_t errlen)
{
    int rc, sys;

    if (!sqlite3_threadsafe()) {
        fl_store_errf(err, errlen, "this SQLite library was built without thread support");
        return -ENOTSUP;
    }
    if ((rc = create_private(path, err, errlen)))
        return rc;
    rc = sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                         SQLITE_OPEN_NOMUTEX, durability_full && wal_vfs_ready ? FL_WAL_VFS : NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_extended_result_codes(s->db, 1);
    if (rc == SQLITE_OK)
        return 0;
    sys = s->db ? sqlite3_system_errno(s->db) : 0;
    fl_store_errf(err, errlen, "cannot open %s: %s", path, s->db ? sqlite3_errmsg(s->db) : "out of memory");
    return sys ? -sys : rc_errno(rc);
}

/* ---- checkpoints, mostly off the writer -----------------------------------------------
 * SQLite's automatic checkpoint runs inside the commit that takes the WAL past 1,000 pages:
 * that group's writer copies the pages into the database file and syncs it, and every submit
 * waiting for the group waits with it (measured at 19k acked jobs/s: 7 checkpoints a second,
 * the database file's sync alone 0.8-2.4 ms each; they made the ack p99 at 16 connections).
 * Here the writer's commit hook wakes a thread of this backend's at each 1,000 new pages,
 * which checkpoints on a connection of its own (PASSIVE: it never waits for the writer or a
 * reader). Under a steady load such a
 * checkpoint never gets through the whole WAL (the writer adds frames meanwhile) and SQLite
 * starts the WAL over only after one did, so at FL_STORE_WAL_MAX_PAGES the writer runs one
 * itself between two groups, as SQLite would: one stall where there were four. Each checkpoint
 * syncs as before (the WAL, then the database file, before the WAL is reused): durability is
 * unchanged, only the thread that waits differs. */

struct checkpointer {
    sqlite3 *db;                   /* its own connection; only its thread uses it after open */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;             /* due or stop, under mu */
    int due, stop;
    int next_at;                   /* writer only: the WAL's pages at which to wake it again */
    int failing;                   /* under mu: a checkpoint failed (logged once until one works) */
};

/* checkpoint_run runs one PASSIVE checkpoint on db; a failure (a full disk, an I/O error) is
 * logged once: the WAL then grows, and a later commit tries again. */
static void checkpoint_run(checkpointer *c, sqlite3 *db)
{
    int frames = 0, copied = 0;
    int rc = sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE, &frames, &copied);
    int ok = rc == SQLITE_OK || rc == SQLITE_BUSY;   /* busy: another checkpoint runs */

    pthread_mutex_lock(&c->mu);
    if (ok && c->failing)
        fl_log(LOG_NOTICE, "store: checkpoints work again (%d of %d WAL frames copied)", copied, frames);
    else if (!ok && !c->failing)
        fl_log(LOG_ERR, "store: a checkpoint failed: %s; the WAL grows until one works", sqlite3_errmsg(db));
    c->failing = !ok;
    pthread_mutex_unlock(&c->mu);
}

/* wal_committed is SQLite's WAL hook on the writer: after each commit, with the WAL's pages. */
static int wal_committed(void *arg, sqlite3 *db, const char *name, int pages)
{
    checkpointer *c = arg;

    (void)name;
    if (pages < FL_STORE_CHECKPOINT_PAGES) {   /* a new WAL */
        c->next_at = FL_STORE_CHECKPOINT_PAGES;
    } else if (pages >= FL_STORE_WAL_MAX_PAGES) {
        checkpoint_run(c, db);
    } else if (pages >= c->next_at) {
        c->next_at = pages + FL_STORE_CHECKPOINT_PAGES;
        pthread_mutex_lock(&c->mu);
        c->due = 1;
        pthread_cond_signal(&c->cv);
        pthread_mutex_unlock(&c->mu);
    }
    return SQLITE_OK;
}

static void *checkpoint_main(void *arg)
{
    checkpointer *c = arg;

    pthread_setname_np(pthread_self(), "fl-ckpt");
    pthread_mutex_lock(&c->mu);
    for (;;) {
        while (!c->due && !c->stop)
            pthread_cond_wait(&c->cv, &c->mu);
        if (c->stop)
            break;
        c->due = 0;
        pthread_mutex_unlock(&c->mu);
        checkpoint_run(c, c->db);
        pthread_mutex_lock(&c->mu);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

/* checkpointer_start opens the checkpointer's connection and thread for writer s and hooks it
 * to s's commits (which turns SQLite's automatic checkpoint off). */
static int checkpointer_start(sql_store *s, char *err, size_t errlen)
{
    checkpointer *c = calloc(1, sizeof *c);
    sql_store tmp = { 0 };
    char sql[64];
    int rc;

    if (!c) {
        fl_store_errf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    if (pthread_mutex_init(&c->mu, NULL) || pthread_cond_init(&c->cv, NULL)) {
        free(c);   /* glibc's init of a default mutex or condvar does not fail or allocate */
        fl_store_errf(err, errlen, "cannot set up the checkpointer");
        return -ENOMEM;
    }
    s->ckpt = c;
    snprintf(sql, sizeof sql, "PRAGMA cache_size = -%d", FL_STORE_CHECKPOINT_CACHE_KIB);
    rc = open_db(&tmp, s->files[W_DB].path, s->full, err, errlen);
    c->db = tmp.db;
    if (!rc)
        rc = exec_sql(&tmp, sql, "cannot configure the checkpointer", err, errlen);
    if (!rc && (rc = fl_store_spawn(&c->thread, checkpoint_main, c)))
        fl_store_errf(err, errlen, "cannot start the checkpointer thread: %s", strerror(-rc));
    if (rc) {
        sqlite3_close(c->db);
        c->db = NULL;
        return rc;
    }
    c->next_at = FL_STORE_CHECKPOINT_PAGES;
    sqlite3_wal_hook(s->db, wal_committed, c);
    return 0;
}

/* checkpointer_stop ends s's checkpointer, if it has one (its thread, if it was started). */
static void checkpointer_stop(sql_store *s)
{
    checkpointer *c = s->ckpt;

    if (!c)
        return;
    if (c->db) {
        sqlite3_wal_hook(s->db, NULL, NULL);
        pthread_mutex_lock(&c->mu);
        c->stop = 1;
        pthread_cond_signal(&c->cv);
        pthread_mutex_unlock(&c->mu);
        pthread_join(c->thread, NULL);
        sqlite3_close(c->db);
    }
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    free(c);
    s->ckpt = NULL;
}

/* SQLite's memory statistics take a process-wide mutex on every allocation, a few per row;
 * flingd never reads them. Only possible before SQLite initialises, hence first thing. A
 * VFS that cannot be registered leaves the default one: the same files, a write per frame. */
static void sqlite_global_config(void)
{
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    wal_vfs_ready = wal_vfs_register() == 0;
    if (!wal_vfs_ready)
        fl_log(LOG_WARNING, "store: SQLite's default VFS is too old to wrap; the WAL is written"
               " a frame at a time");
}

/* ready_or_destroy ends an open that got to rc: with its statements prepared into *out, or
 * with s freed. */
static int ready_or_destroy(sql_store *s, int rc, void **out, char *err, size_t errlen)
{
    if (!rc)
        rc = prepare_all(s, err, errlen);
    if (rc) {
        destroy(s);
        return rc;
    }
    *out = s;
    return 0;
}

static int sq_open(void **out, const fl_store_options *opt, const char *node, char *err, size_t errlen)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    sql_store *s;
    int rc;

    *out = NULL;
    pthread_once(&once, sqlite_global_config);
    s = calloc(1, sizeof(*s));
    if (!s) {
        fl_store_errf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    s->node = node;
    s->full = opt->durability_full;
    s->running = calloc(RUNNING_SLOTS, sizeof(*s->running));
    if (!s->running) {
        free(s);
        fl_store_errf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    rc = make_parent_dir(opt->path, err, errlen);
    if (!rc)
        rc = open_db(s, opt->path, opt->durability_full, err, errlen);
    if (!rc)
        rc = configure(s, opt->durability_full, err, errlen);
    if (!rc)
        rc = migrate(s, opt->path, err, errlen);
    if (!rc)
        rc = watch_files(s, err, errlen);
    if (!rc && s->files[W_DB].path)
        rc = checkpointer_start(s, err, errlen);
    return ready_or_destroy(s, rc, out, err, errlen);
}

static void sq_close(void *b)
{
    destroy(b);
}

/* A single node owns every job of its file: what it left running, it re-queues. */
static int sq_recover(void *b, const char *node, int64_t now)
{
    sql_store *s = b;
    sqlite3_stmt *st = s->st[ST_RECOVER];
    int rc;

    /* Deliveries a dead daemon had in flight are due again (at-least-once). */
    if ((rc = step_done(s->st[ST_DELIVERY_RECOVER])))
        return rc;
    if (sqlite3_bind_int64(st, 1, now) || sqlite3_bind_text(st, 2, node, -1, SQLITE_STATIC))
        return db_errno(s);
    rc = step_done(st);
    return rc ? rc : sqlite3_changes(s->db);
}

static int sq_begin(void *b, int64_t now)
{
    sql_store *s = b;

    s->now = now;
    return s->lost ? -ESTALE : step_done(s->st[ST_BEGIN]);
}

static int sq_check_alive(void *b)
{
    return check_files(b);
}

static int sq_commit(void *b)
{
    sql_store *s = b;

    return step_done(s->st[ST_COMMIT]);
}

/* A failed COMMIT may or may not have ended the transaction already. What the group kept of
 * its claims, or took for its finishes, may be wrong now: forget every running job. */
static void sq_rollback(void *b)
{
    sql_store *s = b;

    if (!sqlite3_get_autocommit(s->db))
        step_done(s->st[ST_ROLLBACK]);
    running_forget(s);
}

/* ---- readers (store.c's reader threads: one thread per reader) ----------------------------
 * A reader is a connection of its own on the same file, which WAL lets read what is committed
 * while the writer writes: a count of millions of rows (/v1/types) or a page of GET /v1/jobs
 * no longer holds the writer's group commits. query_only, and a page cache of its own, smaller
 * than the writer's: it reads, it keeps no hot index pages for claims. Its temporary files
 * (the sort of a count's GROUP BY: a row per job) stay files, so that memory stays bounded. */
#define FL_STORE_READER_CACHE_KIB 4096

static int sq_reader_open(void *b, void **out, char *err, size_t errlen)
{
    sql_store *w = b, *s = calloc(1, sizeof *s);
    char sql[128];
    int rc;

    *out = NULL;
    if (!s) {
        fl_store_errf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    if (!w->files[W_DB].path) {
        free(s);
        fl_store_errf(err, errlen, "a reader needs the database's path");
        return -EINVAL;
    }
    s->node = w->node;
    s->full = w->full;
    snprintf(sql, sizeof sql, "PRAGMA query_only = 1; PRAGMA cache_size = -%d; PRAGMA temp_store = FILE",
             FL_STORE_READER_CACHE_KIB);
    rc = open_db(s, w->files[W_DB].path, s->full, err, errlen);
    if (!rc) {
        sqlite3_busy_timeout(s->db, FL_STORE_BUSY_MS);
        rc = exec_sql(s, sql, "cannot configure a reader", err, errlen);
    }
    return ready_or_destroy(s, rc, out, err, errlen);
}

/* sq_reader_run runs a read in one read transaction: a GET and its deliveries are one snapshot. */
static int sq_reader_run(void *reader, fl_store_op *op)
{
    sql_store *s = reader;
    int rc = step_done(s->st[ST_BEGIN_READ]);

    if (rc)
        return rc;
    switch (op->kind) {
    case FL_STORE_GET: rc = sq_get(s, op); break;
    case FL_STORE_LIST: rc = sq_list(s, op); break;
    case FL_STORE_COUNT: rc = sq_count(s, op); break;
    case FL_STORE_CHANGED: rc = sq_changed(s, op); break;
    default: rc = -EINVAL;
    }
    step_done(s->st[ST_ROLLBACK]);   /* it wrote nothing: ending it releases the snapshot */
    return rc;
}

static void sq_reader_close(void *reader)
{
    destroy(reader);
}

const fl_store_backend fl_store_sqlite = {
    .name = "sqlite",
    .open = sq_open,
    .close = sq_close,
    .recover = sq_recover,
    .begin = sq_begin,
    .check_alive = sq_check_alive,
    .commit = sq_commit,
    .rollback = sq_rollback,
    .submit = sq_submit,
    .submit_many = sq_submit_many,
    .get = sq_get,
    .list = sq_list,
    .cancel = sq_cancel,
    .set_status = sq_set_status,
    .claim = sq_claim,
    .finish = sq_finish,
    .count = sq_count,
    .changed = sq_changed,
    .delivery_take = sq_delivery_take,
    .delivery_done = sq_delivery_done,
    .pause = sq_pause,
    .retry = sq_retry,
    .prune = sq_prune,
    .last_key = sq_last_key,
    .add_delivery = sq_add_delivery,
    .reader_open = sq_reader_open,
    .reader_run = sq_reader_run,
    .reader_close = sq_reader_close,
};
