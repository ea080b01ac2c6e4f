/* store_pg.c — the PostgreSQL backend of the store (libpq): schema migrations at open (the set
 * in migrations/postgres/, applied once under an advisory lock however many nodes start at
 * once), the SQL of each operation, and recovery of this node's orphans. Like store_sqlite.c
 * it decides nothing: groups, validation, deliveries and events are the engine's (store.c).
 *
 * DESIGN. One connection, the writer's: the engine runs every op on its thread, so libpq is
 * never used from two threads at once. Readers ([store] connections) are pg_stores of their
 * own, each with its connection and its thread, for the reads that need only what is
 * committed (reader_run, outside any transaction); they hold no lock and write nothing. Statements are prepared once per connection and return
 * binary rows (integers by their width, text and bytea as bytes), so no row is parsed from
 * text and no payload is unescaped. Claims and delivery takes use FOR UPDATE SKIP LOCKED: two
 * nodes on one database never take the same row, and neither waits for the other. A submit
 * with an Idempotency-Key inserts ON CONFLICT DO NOTHING, so a duplicate costs no failed
 * statement (a failed statement aborts the whole transaction in PostgreSQL). A group's run of
 * submits is one statement whose parameters are arrays, a row per job (submit_many): the
 * server's work per statement (bind, executor start and end, a round trip) is paid once for
 * the run, not once per job. A lost connection fails the group with -ENOTCONN (503 to
 * submitters); the next group reconnects first.
 *
 * Several nodes on one database: a submit notifies the others (pg_notify in its transaction,
 * once per type and statement, and only while another node is live),
 * whose listener (a second connection, the loop thread's) wakes their schedulers. The
 * writer's session holds the node's advisory lock, so the server itself says which nodes are
 * gone: a SWEEP (about once a second) and a claim re-queue their running jobs (sweep), and a
 * FINISH writes only where the job is still running under this node's name (fence). No lease
 * and no timer decide it.
 *
 * Longer than ~900 lines for the reason store_sqlite.c gives: each statement sits beside the
 * code that binds and reads it. */
#include "store_backend.h"

#include <errno.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "pglisten.h"

/* Generated from migrations/postgres/NNN_*.sql (cmake/embed_migrations.cmake). */
extern const char *const fl_pg_migrations[];
extern const int fl_pg_migrations_count;

/* The advisory lock key that serialises migrations: any constant no other program of the
 * database uses; these are the bytes of "fling" followed by "mig". */
#define FL_PG_MIGRATE_LOCK "7380398446266822503"
/* The channel a commit that made jobs due (a submit, a retry, a job handed back) notifies,
 * with the payload "TYPE NODE": every other node's listener hears it and claims (PostgreSQL
 * folds equal notifications of one transaction into one, so a group of submits of one type
 * wakes each node once). Submits notify only while another node is live (FL_PG_OTHERS_MS). */
#define FL_PG_CHANNEL "fling_due"
/* A CANCEL that finds a job running on another node tells that node, "ID OWNER": the owner's
 * listener stops it as its own DELETE would, and the job ends cancelled there. */
#define FL_PG_CANCEL_CHANNEL "fling_cancel"
/* Every group that changed jobs tells the other nodes which, just before its COMMIT (so they
 * hear it after the commit, in commit order): "NODE ID:EV ID:EV ..." with EV an
 * fl_store_event. They read the rows and report them to their attached clients, event streams
 * and mirror. A big group sends several, each below PostgreSQL's 8000-byte payload limit. */
#define FL_PG_CHANGED_CHANNEL "fling_changed"
/* A pause or resume tells the other nodes, "TYPE 1 NODE" or "TYPE 0 NODE": their schedulers
 * apply it as their own (GET /v1/types, and a resume claims at once). A claim reads the
 * paused_types table itself, so one that runs before a node hears of the pause still claims
 * nothing of the type; a node whose listener was away reads the table again when it is back. */
#define FL_PG_PAUSE_CHANNEL "fling_pause"
#define FL_PG_CHANGES_MAX 7900
/* Only a node that follows other nodes' changes reads them: one with a Redis mirror, an event
 * stream open, or a client attached to a job (see server.c). It says so on this channel,
 * "NODE 1 A", when it starts following and every FL_PG_FOLLOW_EVERY_MS while it follows; a
 * group notifies its changes only if some node said so in the last FL_PG_FOLLOW_TTL_MS. A
 * node whose listener is (back) listening asks with A = 1 ("NODE 0 1" if it follows nothing
 * itself): every node that follows says so again at once, so a node that starts after a
 * follower does not wait for its next turn. Nodes that follow nothing cost no notification at
 * each commit (PostgreSQL wakes every listening backend of the database for each notifying
 * commit, the sender's own included). */
#define FL_PG_FOLLOW_CHANNEL "fling_follow"
#define FL_PG_FOLLOW_EVERY_MS 2000
#define FL_PG_FOLLOW_TTL_MS (3 * FL_PG_FOLLOW_EVERY_MS)
/* No node hears them while it is alone: a group notifies its changes only while another
 * node's lock is held, which the writer looks up at most this often (ms). A node that takes
 * its lock says so at once ("NODE" alone on FL_PG_CHANGED_CHANNEL), and every node that
 * hears it notifies from its next group on, so a job submitted to the new node after that
 * is followed there wherever it runs. */
#define FL_PG_OTHERS_MS 1000
/* Each node holds a session advisory lock (this class, the hash of its name) on its writer's
 * connection for as long as that session lives: a running job whose owner's lock is free
 * belongs to a node that is gone (killed, or cut off and its session ended by the server),
 * and any live node re-queues it. No lease, no timer: the server knows when a session ends. */
#define FL_PG_NODE_LOCK "1718382183"
/* A held lock as pg_locks shows it, for the owner named by OWNER (an SQL expression). */
#define NODE_ALIVE(owner)                                                                    \
    "EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted"           \
    " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"     \
    " AND l.classid = " FL_PG_NODE_LOCK " AND l.objsubid = 2"                                 \
    " AND l.objid = (hashtext(" owner ")::bigint & 4294967295)::oid)"
/* How often at most a claim also looks for the orphans of nodes that are gone (the loop's
 * SWEEP, once a second, looks regardless): ms. */
#define FL_PG_SWEEP_MS 1000
/* How long a starting node waits for its name's lock, held by its own previous session until
 * the server notices that session's end. */
#define FL_PG_LOCK_WAIT_MS 10000
/* ... asking again this often (ms). */
#define FL_PG_LOCK_RETRY_MS 200

/* TCP keepalives: a server that vanished without a word (a partition) is found out after
 * idle + interval * count seconds, instead of the kernel's two hours; the statement waiting
 * on it then fails, and the group with it. */
#define FL_PG_KEEPALIVE_IDLE "10"
#define FL_PG_KEEPALIVE_INTERVAL "5"
#define FL_PG_KEEPALIVE_COUNT "3"
/* Keepalives probe only an idle connection: a statement sent just before the partition sits
 * unacknowledged, retransmitted for the kernel's ~15 minutes. This bounds that too (ms). */
#define FL_PG_TCP_USER_TIMEOUT "25000"
/* [store] statement_timeout unless set (ms): the server's own limit on a statement, and, this
 * much later, the loop's on a wait for an answer (see "a server that stops answering"). */
#define FL_PG_STATEMENT_MS 30000
#define FL_PG_GUARD_SLACK_MS 2000
/* Seconds a connection attempt may take unless the url says otherwise: the writer waits for
 * it, and submits get 503s meanwhile rather than hang. */
#define FL_PG_CONNECT_TIMEOUT "5"

/* The columns of a job row in read_job's order; CLAIM and GET with payload add C_PAYLOAD. */
#define JOB_COLS "jobs.id, type, state, status, attempts, max_attempts, priority, timeout_ms, " \
                 "created_at, run_at, started_at, finished_at, exit_code, idem_key, callback, "  \
                 "error, output, updated_at, retried, previous_attempts, previous_error, "      \
                 "content_type, traceparent, tracestate"
#define JOB_PAYLOAD "(SELECT data FROM job_payloads WHERE job_payloads.id = jobs.id)"
enum {
    C_ID, C_TYPE, C_STATE, C_STATUS, C_ATTEMPTS, C_MAX_ATTEMPTS, C_PRIORITY, C_TIMEOUT_MS,
    C_CREATED_AT, C_RUN_AT, C_STARTED_AT, C_FINISHED_AT, C_EXIT_CODE, C_IDEM_KEY,
    C_CALLBACK, C_ERROR, C_OUTPUT, C_UPDATED_AT, C_RETRIED, C_PREVIOUS_ATTEMPTS, C_PREVIOUS_ERROR,
    C_CONTENT_TYPE, C_TRACEPARENT, C_TRACESTATE, C_PAYLOAD
};

#define DELIVERY_COLS "deliveries.id, job_id, event, target, state, attempts, created_at, " \
                      "next_at, last_at, last_status, last_error"
enum {
    D_ID, D_JOB_ID, D_EVENT, D_TARGET, D_STATE, D_ATTEMPTS, D_CREATED_AT, D_NEXT_AT, D_LAST_AT,
    D_LAST_STATUS, D_LAST_ERROR
};

#define TERMINAL "('succeeded', 'failed', 'cancelled')"

/* The four LIST variants are consecutive: ST_LIST + (has_state ? 1 : 0) + (type ? 2 : 0). A
 * prepared statement must use each of its parameters, so each variant numbers its own. */
enum stmt_id {
    ST_INSERT, ST_INSERT_MANY, ST_INSERT_FRESH, ST_IDEM_FIND, ST_GET, ST_GET_PAYLOAD, ST_LOCK,
    ST_GET_MANY,
    ST_LIST, ST_LIST_STATE, ST_LIST_TYPE, ST_LIST_STATE_TYPE,
    ST_CANCEL, ST_SET_STATUS, ST_CLAIM, ST_NEXT_SCHEDULED, ST_FINISH, ST_FINISH_MANY, ST_CHANGED,
    ST_COUNT_WAITING, ST_COUNT_ALL,
    ST_DELIVERY_ADD, ST_DELIVERY_TAKE, ST_DELIVERY_NEXT, ST_DELIVERY_DONE, ST_DELIVERY_OF_JOB,
    ST_PAUSE_ADD, ST_PAUSE_DEL, ST_PAUSE_READ, ST_RETRY, ST_PRUNE, ST_LAST_KEY,
    ST_RECOVER, ST_DELIVERY_RECOVER, ST_ORPHANS, ST_DELIVERY_ORPHANS, ST_CANCEL_STOP, ST_CHANGES, ST_OTHERS,
    ST_CANCEL_ORPHAN,
    ST_N
};

/* The run of submits of ST_INSERT_MANY and ST_INSERT_FRESH: one row per element of the arrays
 * (see batch_col), each given its id from the sequence first, in op order. */
#define INSERT_SRC                                                                                      \
    "WITH src AS (SELECT nextval('jobs_id_seq') AS id, u.* FROM unnest($1::text[], $2::text[],"         \
    " $3::int8[], $4::int8[], $5::int8[], $6::int8[], $7::int8[], $8::int8[], $9::text[],"              \
    " $10::text[], $11::text[], $12::text[], $13::text[], $14::bytea[]) WITH ORDINALITY"                \
    " AS u(type, state, status, max_attempts, priority, timeout_ms, created_at, run_at, idem_key,"      \
    " callback, content_type, traceparent, tracestate, data, ord))"
#define INSERT_COLS                                                                                     \
    "(id, type, state, status, max_attempts, priority, timeout_ms, created_at, run_at, idem_key,"       \
    " callback, updated_at, content_type, traceparent, tracestate)"                                     \
    " SELECT id, type, state, status, max_attempts, priority, timeout_ms, created_at, run_at,"          \
    " idem_key, callback, $15, content_type, traceparent, tracestate"

static const char *const stmt_sql[ST_N] = {
    /* One round trip per submit: the job and its payload (no payload is an empty one). */
    [ST_INSERT] = "WITH j AS (INSERT INTO jobs (type, state, status, max_attempts, priority, timeout_ms,"
                  " created_at, run_at, idem_key, callback, updated_at, content_type, traceparent,"
                  " tracestate) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
                  " ON CONFLICT (type, idem_key) WHERE idem_key IS NOT NULL DO NOTHING RETURNING id)"
                  " INSERT INTO job_payloads (id, data) SELECT id, coalesce($15::bytea, '') FROM j"
                  " RETURNING id, CASE WHEN $16::text IS NOT NULL THEN"
                  " pg_notify('" FL_PG_CHANNEL "', $1 || ' ' || $16::text) END",
    /* One round trip for a run of submits, some with an Idempotency-Key: the rows of INSERT_SRC,
     * inserted in op order, so that the answer (id, inserted) comes back in op order,
     * duplicates included (a key taken earlier in the same statement is a conflict as a
     * committed one is). One wake-up per type, not one per job. */
    [ST_INSERT_MANY] = INSERT_SRC ","
                       " j AS (INSERT INTO jobs " INSERT_COLS " FROM src ORDER BY ord"
                       " ON CONFLICT (type, idem_key) WHERE idem_key IS NOT NULL DO NOTHING RETURNING id, type),"
                       " p AS (INSERT INTO job_payloads (id, data) SELECT j.id, src.data FROM j JOIN src USING (id)),"
                       " w AS (SELECT count(pg_notify('" FL_PG_CHANNEL "', t.type || ' ' || $16::text))"
                       " FROM (SELECT DISTINCT type FROM j) t WHERE $16::text IS NOT NULL)"
                       " SELECT src.id, j.id IS NOT NULL FROM src LEFT JOIN j USING (id) CROSS JOIN w ORDER BY src.ord",
    /* ST_INSERT_MANY for a run in which no job has an Idempotency-Key, so every row goes in:
     * no ON CONFLICT (a speculative insertion per row), no join, no sort (each row comes back
     * with its op number), one wake-up per type all the same (PostgreSQL folds equal
     * notifications of a transaction into one). Measured with 8 rows a statement: a fifth
     * less of PostgreSQL's CPU than ST_INSERT_MANY, most of it its executor's start. */
    [ST_INSERT_FRESH] = INSERT_SRC ", j AS (INSERT INTO jobs " INSERT_COLS " FROM src),"
                        " p AS (INSERT INTO job_payloads (id, data) SELECT id, data FROM src)"
                        " SELECT id, ord, CASE WHEN $16::text IS NOT NULL THEN"
                        " pg_notify('" FL_PG_CHANNEL "', type || ' ' || $16::text) END FROM src",
    [ST_IDEM_FIND] = "SELECT id, state, created_at, run_at FROM jobs WHERE type = $1 AND idem_key = $2",
    [ST_GET] = "SELECT " JOB_COLS " FROM jobs WHERE id = $1",
    [ST_GET_PAYLOAD] = "SELECT " JOB_COLS ", " JOB_PAYLOAD " FROM jobs WHERE id = $1",
    /* $1 = '{ID,ID,...}': a batch of other nodes' changed jobs, read in one round trip, by one
     * primary-key lookup per id. Not "id = ANY($1)": its generic plan, made while the table was
     * small, scans the whole table (measured: 6,375 scans reading 36.7 million rows in a 5 s
     * run); OFFSET 0 keeps the lookup a subquery, so that no plan can turn it into a scan. */
    [ST_GET_MANY] = "SELECT j.* FROM unnest($1::bigint[]) AS u(id),"
                    " LATERAL (SELECT " JOB_COLS " FROM jobs WHERE jobs.id = u.id OFFSET 0) j ORDER BY j.id",
    /* CANCEL and SET_STATUS read the row they may change under its lock, so a claim on another
     * node cannot slip in between the read and the write. */
    [ST_LOCK] = "SELECT " JOB_COLS " FROM jobs WHERE id = $1 FOR UPDATE",
    [ST_LIST] = "SELECT " JOB_COLS " FROM jobs WHERE id < $1 ORDER BY id DESC LIMIT $2",
    [ST_LIST_STATE] = "SELECT " JOB_COLS " FROM jobs WHERE state = $3 AND id < $1 ORDER BY id DESC LIMIT $2",
    [ST_LIST_TYPE] = "SELECT " JOB_COLS " FROM jobs WHERE type = $3 AND id < $1 ORDER BY id DESC LIMIT $2",
    [ST_LIST_STATE_TYPE] = "SELECT " JOB_COLS " FROM jobs WHERE state = $3 AND type = $4 AND id < $1"
                           " ORDER BY id DESC LIMIT $2",
    [ST_CANCEL] = "UPDATE jobs SET state = 'cancelled', finished_at = $2, updated_at = $3 WHERE id = $1",
    [ST_SET_STATUS] = "UPDATE jobs SET status = status | $2, updated_at = $3 WHERE id = $1",
    /* $2 = now: queued jobs, and scheduled ones due by now, highest priority first, then
     * oldest; rows another node is claiming are skipped, not waited for. The queued ones are
     * the first $3 of their index (jobs_queued), in its order: one query over both states
     * ("state = 'queued' OR ...") sorted every queued job of the type in each claim (measured:
     * 1.5 ms a claim in a two-node end-to-end run of 17,000 jobs, 0.6 s with 855,000 queued).
     * The two sets are locked apart, up to $3 rows each; a row locked but not taken is left as
     * it was, for the next claim once this group commits. */
    [ST_CLAIM] = "WITH q AS (SELECT id, priority FROM jobs WHERE type = $1 AND state = 'queued'"
                 " ORDER BY priority DESC, id LIMIT $3 FOR UPDATE SKIP LOCKED),"
                 " s AS (SELECT id, priority FROM jobs WHERE type = $1 AND state = 'scheduled' AND run_at <= $2"
                 " ORDER BY priority DESC, id LIMIT $3 FOR UPDATE SKIP LOCKED),"
                 " c AS (SELECT id FROM (SELECT * FROM q UNION ALL SELECT * FROM s) k"
                 " WHERE NOT EXISTS (SELECT 1 FROM paused_types WHERE paused_types.type = $1)"
                 " ORDER BY priority DESC, id LIMIT $3)"
                 " UPDATE jobs SET state = 'running', attempts = attempts + 1, started_at = $2,"
                 " updated_at = $4, owner = $5 FROM c WHERE jobs.id = c.id"
                 " RETURNING " JOB_COLS ", " JOB_PAYLOAD,
    /* None while the type is paused: its claims would take nothing at that time either. */
    [ST_NEXT_SCHEDULED] = "SELECT run_at FROM jobs WHERE type = $1 AND state = 'scheduled'"
                          " AND NOT EXISTS (SELECT 1 FROM paused_types WHERE paused_types.type = $1)"
                          " ORDER BY run_at LIMIT 1",
    [ST_FINISH] = "UPDATE jobs SET state = $2, status = status | $3, exit_code = $4, error = $5,"
                  " output = $6, run_at = coalesce($7::bigint, run_at),"
                  " finished_at = coalesce($8::bigint, finished_at), updated_at = $9 WHERE id = $1"
                  " AND state = 'running' AND owner = $10 AND attempts = $11 RETURNING " JOB_COLS ", CASE WHEN $2 = 'queued' THEN"
                  " pg_notify('" FL_PG_CHANNEL "', type || ' ' || $10::text) END",
    /* A run of FINISHes as ST_FINISH does each (see finish_col), the row of each op that
     * wrote followed by its op's number; an op with no row was fenced. */
    [ST_FINISH_MANY] = "WITH u AS (SELECT * FROM unnest($1::int8[], $2::text[], $3::int8[], $4::int8[], $5::bytea[],"
                       " $6::bytea[], $7::int8[], $8::int8[], $9::int8[]) WITH ORDINALITY AS u(f_id, f_state, f_bits,"
                       " f_exit, f_error, f_output, f_run_at, f_finished_at, f_attempt, f_ord))"
                       " UPDATE jobs SET state = f_state, status = status | f_bits, exit_code = f_exit, error = f_error,"
                       " output = f_output, run_at = coalesce(f_run_at, run_at),"
                       " finished_at = coalesce(f_finished_at, finished_at), updated_at = $10 FROM u"
                       " WHERE jobs.id = f_id AND state = 'running' AND owner = $11 AND attempts = f_attempt"
                       " RETURNING " JOB_COLS ","
                       " CASE WHEN f_state = 'queued' THEN pg_notify('" FL_PG_CHANNEL "', type || ' ' || $11::text) END,"
                       " f_ord",
    [ST_CHANGED] = "SELECT " JOB_COLS " FROM jobs WHERE id > $1 AND (updated_at >= $2"
                   " OR state IN ('queued', 'scheduled', 'running')) ORDER BY id LIMIT $3",
    [ST_COUNT_WAITING] = "SELECT type, state, count(*) FROM jobs"
                         " WHERE state IN ('queued', 'scheduled', 'running') GROUP BY type, state",
    [ST_COUNT_ALL] = "SELECT type, state, count(*) FROM jobs GROUP BY type, state",
    [ST_DELIVERY_ADD] = "INSERT INTO deliveries (job_id, event, target, created_at, next_at)"
                        " VALUES ($1, $2, $3, $4, $4)",
    [ST_DELIVERY_TAKE] = "WITH d AS (SELECT id FROM deliveries WHERE state = 'pending' AND NOT inflight"
                         " AND next_at <= $1 ORDER BY next_at, id LIMIT $2 FOR UPDATE SKIP LOCKED)"
                         " UPDATE deliveries SET inflight = true, owner = $3, attempts = attempts + 1,"
                         " last_at = $4 FROM d WHERE deliveries.id = d.id RETURNING " DELIVERY_COLS,
    [ST_DELIVERY_NEXT] = "SELECT next_at FROM deliveries WHERE state = 'pending' AND NOT inflight"
                         " ORDER BY next_at LIMIT 1",
    [ST_DELIVERY_DONE] = "UPDATE deliveries SET state = $2, inflight = false, next_at = $3,"
                         " last_status = $4, last_error = $5 WHERE id = $1",
    [ST_DELIVERY_OF_JOB] = "SELECT " DELIVERY_COLS " FROM deliveries WHERE job_id = $1 ORDER BY id",
    /* $3 (or $2) is the pause's notification, NULL while no other node may hear it; a pause
     * that changes nothing notifies nothing. */
    [ST_PAUSE_ADD] = "INSERT INTO paused_types (type, paused_at) VALUES ($1, $2) ON CONFLICT DO NOTHING"
                     " RETURNING CASE WHEN $3::text IS NOT NULL THEN pg_notify('" FL_PG_PAUSE_CHANNEL "', $3) END",
    [ST_PAUSE_DEL] = "DELETE FROM paused_types WHERE type = $1"
                     " RETURNING CASE WHEN $2::text IS NOT NULL THEN pg_notify('" FL_PG_PAUSE_CHANNEL "', $2) END",
    [ST_PAUSE_READ] = "SELECT type FROM paused_types ORDER BY type",
    [ST_RETRY] = "UPDATE jobs SET state = 'queued', retried = retried + 1,"
                 " previous_attempts = previous_attempts + attempts,"
                 " previous_error = coalesce(error, previous_error), attempts = 0, error = NULL,"
                 " exit_code = NULL, output = NULL, started_at = 0, finished_at = 0,"
                 " status = status & $3, run_at = $2, updated_at = $2"
                 " WHERE id = $1 AND state IN ('failed', 'cancelled')"
                 " RETURNING pg_notify('" FL_PG_CHANNEL "', type || ' ' || $4::text)",
    /* One batch, its deliveries and payloads with it; rows another node prunes are skipped. */
    [ST_PRUNE] = "WITH b AS (SELECT id FROM jobs WHERE state IN " TERMINAL " AND finished_at < $1"
                 " ORDER BY finished_at, id LIMIT $2 FOR UPDATE SKIP LOCKED),"
                 " d AS (DELETE FROM deliveries WHERE job_id IN (SELECT id FROM b)),"
                 " p AS (DELETE FROM job_payloads WHERE id IN (SELECT id FROM b))"
                 " DELETE FROM jobs WHERE id IN (SELECT id FROM b)",
    /* $2 <= key < $3, $3 being the prefix with its last byte one higher (the column is C). */
    [ST_LAST_KEY] = "SELECT idem_key FROM jobs WHERE type = $1 AND idem_key >= $2 AND idem_key < $3"
                    " ORDER BY idem_key DESC LIMIT 1",
    [ST_RECOVER] = "UPDATE jobs SET state = 'queued', updated_at = $1 WHERE state = 'running' AND owner = $2",
    [ST_DELIVERY_RECOVER] = "UPDATE deliveries SET inflight = false WHERE inflight AND owner = $1",
    /* $1 = now, $2 = this node: what nodes that are gone left running goes back to the queue
     * (the interrupted attempt counts), and every node hears of it. */
    /* g holds the attempts that were orphans when the statement began; each is locked and
     * re-queued only if its row still holds that owner and attempt. Had g's test been the
     * locking query's own, a row changed after the statement's snapshot would be re-checked
     * by PostgreSQL against its quals but not against the anti-join with pg_locks: a job
     * re-queued and claimed meanwhile by a live node was re-queued under it (measured: a
     * 400,000-row sweep, a live node's claim committed mid-scan, re-queued). */
    [ST_ORPHANS] = "WITH g AS MATERIALIZED (SELECT id, owner, attempts FROM jobs WHERE state = 'running'"
                   " AND owner <> $2 AND NOT " NODE_ALIVE("jobs.owner") "),"
                   " o AS (SELECT jobs.id FROM jobs JOIN g USING (id) WHERE jobs.state = 'running'"
                   " AND jobs.owner = g.owner AND jobs.attempts = g.attempts FOR UPDATE OF jobs SKIP LOCKED)"
                   " UPDATE jobs SET state = 'queued', updated_at = $1 FROM o WHERE jobs.id = o.id"
                   " RETURNING jobs.id, pg_notify('" FL_PG_CHANNEL "', type || ' ')",
    /* As ST_ORPHANS, for the deliveries taken by nodes that are gone. */
    [ST_DELIVERY_ORPHANS] = "WITH g AS MATERIALIZED (SELECT id, owner, attempts FROM deliveries WHERE inflight"
                            " AND owner <> $1 AND NOT " NODE_ALIVE("deliveries.owner") "),"
                            " o AS (SELECT deliveries.id FROM deliveries JOIN g USING (id) WHERE inflight"
                            " AND deliveries.owner = g.owner AND deliveries.attempts = g.attempts"
                            " FOR UPDATE OF deliveries SKIP LOCKED)"
                            " UPDATE deliveries SET inflight = false FROM o WHERE deliveries.id = o.id",
    /* The job is locked by ST_LOCK; a live owner other than this node is told to stop it. */
    [ST_CANCEL_STOP] = "SELECT pg_notify('" FL_PG_CANCEL_CHANNEL "', id || ' ' || owner) FROM jobs"
                       " WHERE id = $1 AND state = 'running' AND owner <> $2 AND " NODE_ALIVE("jobs.owner"),
    /* The job is locked by ST_LOCK; running under a node that is gone, it runs nowhere (its
     * attempt is over, as for an orphan): cancelled at once, not after the sweep re-queued it.
     * $2 = now (finished_at), $3 = the group's time, $4 = this node. */
    [ST_CANCEL_ORPHAN] = "UPDATE jobs SET state = 'cancelled', finished_at = $2, updated_at = $3 WHERE id = $1"
                         " AND state = 'running' AND owner <> $4 AND NOT " NODE_ALIVE("jobs.owner"),
    [ST_CHANGES] = "SELECT pg_notify('" FL_PG_CHANGED_CHANNEL "', $1)",
    [ST_OTHERS] = "SELECT count(*) FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted"
                  " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                  " AND l.classid = " FL_PG_NODE_LOCK " AND l.objsubid = 2"
                  " AND l.objid <> (hashtext($1)::bigint & 4294967295)::oid",
};

/* A one-dimensional array parameter in PostgreSQL's binary form (array_recv: dimensions,
 * null flag, element type, then each element as its length and bytes, -1 for NULL), built
 * in place: no element is escaped or quoted. The buffer is kept from one group to the next. */
typedef struct pg_array {
    unsigned char *p;
    size_t len, cap;
    int n, nulls, failed;          /* failed: out of memory while building */
} pg_array;

/* The columns of ST_INSERT_MANY, in its parameter order; the element type of each. */
enum batch_col {
    B_TYPE, B_STATE, B_STATUS, B_MAX_ATTEMPTS, B_PRIORITY, B_TIMEOUT_MS, B_CREATED_AT, B_RUN_AT,
    B_IDEM_KEY, B_CALLBACK, B_CONTENT_TYPE, B_TRACEPARENT, B_TRACESTATE, B_PAYLOAD, B_N
};
/* The columns of ST_FINISH_MANY; they fit in the arrays of ST_INSERT_MANY's. */
enum finish_col {
    F_ID, F_STATE, F_BITS, F_EXIT_CODE, F_ERROR, F_OUTPUT, F_RUN_AT, F_FINISHED_AT, F_ATTEMPT, F_N
};
/* ST_FINISH_MANY's op number, after JOB_COLS and the notification. */
#define C_FINISH_ORD (C_PAYLOAD + 1)
#define OID_BYTEA 17
#define OID_INT8 20
#define OID_TEXT 25
/* A run is cut into statements of at most this many bytes of payloads (outputs, errors): an array
 * parameter must stay well below PostgreSQL's 1 GB field limit (and libpq's int lengths). */
#define FL_PG_BATCH_BYTES (16u << 20)
#define FL_PG_BATCH_KEEP (1u << 20)

/* A list of paused types (type_wakes): types[n], or NULL if n is 0. */
typedef struct pg_paused {
    char (*types)[FL_TYPE_NAME_MAX + 1];
    size_t n;
} pg_paused;

typedef struct pg_store {
    PGconn *conn;                  /* used by one thread at a time: open/recover, then the writer */
    char *url;                     /* [store] url, as given */
    const char *node;              /* the owner claims record; the engine's, borrowed */
    int durability_full;
    int ready;                     /* conn is set up: settings made, statements prepared */
    const char *begin_due;         /* the transaction's BEGIN, sent with its first statement; NULL: none */
    int down;                      /* the connection was lost and is not back yet (logged once) */
    char last_state[6];            /* SQLSTATE of the last error logged, to log an outage once */
    int64_t now;                   /* the clock of the group being run */
    int64_t swept_at;              /* writer: when orphans were last looked for (ms) */
    /* Written by the writer, read by the loop (/metrics). */
    atomic_uint_least64_t claimed;       /* jobs claimed */
    atomic_uint_least64_t fenced;        /* outcomes dropped, their job no longer ours */
    atomic_uint_least64_t orphans;       /* jobs of gone nodes re-queued */
    atomic_uint_least64_t round_trips;   /* statements sent */
    atomic_uint_least64_t round_trip_ns; /* their total wait for the server */
    const char *conn_vals[8];      /* libpq's values for conn_keys: the url's last */
    const char *listen_vals[8];    /* the same for the listener, under an application_name of its own */
    pg_array batch[B_N];           /* writer: the columns of a run of ops (ST_*_MANY) */
    char changes[FL_PG_CHANGES_MAX + 32];   /* writer: this group's changes, to notify */
    size_t changes_len;            /* 0: none yet in this group */
    int others;                    /* writer: another node's lock was held at others_at */
    pg_paused paused;              /* writer: the paused types as the last committed PAUSE read them
                                    * (written under paused_mu: a second writer reads it) */
    pthread_mutex_t paused_mu;
    pg_paused group_paused;        /* writer: as this group's PAUSE read them, until it commits */
    int group_paused_read;         /* this group ran a PAUSE: group_paused holds its list */
    int64_t others_at;             /* writer: when others was looked up (mono_ms; 0 = never) */
    atomic_int hello;              /* set by the loop: another node spoke; others = 1 now */
    atomic_int unlocked;           /* set by the writer: the node's lock may not be held (its
                                    * session was lost): a second writer acks nothing either */
    atomic_int_least64_t followed_until;   /* set by the loop: until when (mono_ms) a node follows */
    /* Loop thread only (open, watch, wake, close), never the writer's. */
    fl_pglisten *listen;           /* LISTEN fling_due on a connection of its own */
    int64_t listened_at;           /* ms: the last wake that found the listener listening (or the open) */
    uint64_t notifications;        /* notifications heard */
    int following;                 /* this node follows the others' changes (pg_follow) */
    int64_t follow_said_at;        /* mono_ms: when it last said so (0: say it at the next chance) */
    int follow_ask;                /* the listener is back: ask the followers to speak up */
    /* A reader (pg_reader_open) or a second writer (pg_writer_open) is a pg_store of its own
     * connection, with no listener and no lock, that counts its round trips in the writer's:
     * parent, whose paused types and followers it goes by. NULL for the writer's. */
    struct pg_store *parent;
    struct pg_store *readers;      /* the writer's: its readers and second writer, linked by next
                                    * (loop thread) */
    struct pg_store *next;
    const char *role;              /* what the log calls this connection: "store", "store reader" */
    int writes;                    /* a second writer's connection (not a reader's) */
    int statement_ms;              /* [store] statement_timeout */
    /* The wait for the server that this connection's thread is in, if any (see guard_begin). */
    pthread_mutex_t guard_mu;
    int guard_fd;                  /* under guard_mu: the socket waited on, -1 when none */
    uint64_t guard_since;          /* under guard_mu: since when (mono_ns) */
} pg_store;

/* ---- parameters ------------------------------------------------------------------------ */

#define PG_ARGS_MAX 16

/* The parameters of one statement: integers and text as text, bytea in binary. */
typedef struct pg_args {
    int n;
    const char *v[PG_ARGS_MAX];
    int len[PG_ARGS_MAX], fmt[PG_ARGS_MAX];
    char num[PG_ARGS_MAX][24];
} pg_args;

static void arg_int(pg_args *a, int64_t v)
{
    snprintf(a->num[a->n], sizeof a->num[a->n], "%lld", (long long)v);
    a->v[a->n] = a->num[a->n];
    a->len[a->n] = 0;
    a->fmt[a->n++] = 0;
}

/* arg_opt_int passes v, or SQL NULL when it is absent. */
static void arg_opt_int(pg_args *a, int present, int64_t v)
{
    if (present) {
        arg_int(a, v);
        return;
    }
    a->v[a->n] = NULL;
    a->len[a->n] = 0;
    a->fmt[a->n++] = 0;
}

/* arg_text passes s (borrowed until the statement ran), or SQL NULL for NULL. */
static void arg_text(pg_args *a, const char *s)
{
    a->v[a->n] = s;
    a->len[a->n] = 0;
    a->fmt[a->n++] = 0;
}

/* arg_bytes passes n bytes at p as bytea (binary: no escaping), or SQL NULL for NULL. */
static void arg_bytes(pg_args *a, const void *p, size_t n)
{
    a->v[a->n] = p;
    a->len[a->n] = p ? (int)n : 0;
    a->fmt[a->n++] = 1;
}

static void arr_put_raw(pg_array *a, const void *p, size_t n)
{
    if (a->failed)
        return;
    if (a->len + n > a->cap) {
        size_t cap = a->cap ? a->cap : 256;
        unsigned char *q;
        while (cap < a->len + n)
            cap *= 2;
        if (!(q = realloc(a->p, cap))) {
            a->failed = 1;
            return;
        }
        a->p = q;
        a->cap = cap;
    }
    memcpy(a->p + a->len, p, n);
    a->len += n;
}

static void arr_put_u32(pg_array *a, uint32_t v)
{
    unsigned char b[4] = { (unsigned char)(v >> 24), (unsigned char)(v >> 16), (unsigned char)(v >> 8),
                           (unsigned char)v };
    arr_put_raw(a, b, sizeof b);
}

/* arr_start empties a for elements of type oid: the header, its counts filled by arr_end. */
static void arr_start(pg_array *a, uint32_t oid)
{
    a->len = 0;
    a->n = a->nulls = a->failed = 0;
    arr_put_u32(a, 1);     /* dimensions */
    arr_put_u32(a, 0);     /* has nulls: set by arr_end */
    arr_put_u32(a, oid);
    arr_put_u32(a, 0);     /* elements: set by arr_end */
    arr_put_u32(a, 1);     /* lower bound */
}

/* arr_elem appends n bytes at p, or NULL for p NULL. */
static void arr_elem(pg_array *a, const void *p, size_t n)
{
    a->n++;
    if (!p) {
        a->nulls = 1;
        arr_put_u32(a, UINT32_MAX);   /* -1 */
        return;
    }
    arr_put_u32(a, (uint32_t)n);
    arr_put_raw(a, p, n);
}

static void arr_text(pg_array *a, const char *s)
{
    arr_elem(a, s, s ? strlen(s) : 0);
}

static void arr_int(pg_array *a, int64_t v)
{
    unsigned char b[8];

    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)((uint64_t)v >> (56 - 8 * i));
    arr_elem(a, b, sizeof b);
}

/* arr_opt_int appends v, or NULL when it is absent. */
static void arr_opt_int(pg_array *a, int present, int64_t v)
{
    if (present)
        arr_int(a, v);
    else
        arr_elem(a, NULL, 0);
}

/* arr_end fills in the counts; 0, or -ENOMEM if building failed. */
static int arr_end(pg_array *a)
{
    if (a->failed)
        return -ENOMEM;
    for (int i = 0; i < 4; i++) {
        a->p[4 + i] = (unsigned char)(a->nulls >> (24 - 8 * i));
        a->p[12 + i] = (unsigned char)((uint32_t)a->n >> (24 - 8 * i));
    }
    return 0;
}

/* ---- errors ---------------------------------------------------------------------------- */

/* state_errno maps an SQLSTATE to the negative errno the rest of flingd speaks: the classes of
 * one op's own data (a constraint, a value too long or out of range, bad bytes) to the codes
 * that fail that op alone, the rest to errors of the store. */
static int state_errno(const char *st)
{
    static const struct { const char *code; int err; } map[] = {
        { "22001", -E2BIG }, { "54000", -E2BIG }, { "22003", -ERANGE }, { "22021", -EINVAL },
        { "22P05", -EINVAL }, { "53100", -ENOSPC }, { "53200", -ENOMEM }, { "53300", -EBUSY },
        { "40001", -EBUSY }, { "40P01", -EBUSY }, { "55P03", -EBUSY }, { "25006", -EROFS },
        { "42501", -EACCES }, { "57P01", -ENOTCONN }, { "57P02", -ENOTCONN }, { "57P03", -ENOTCONN },
    };
    if (!st)
        return -ENOTCONN;
    for (size_t i = 0; i < sizeof map / sizeof *map; i++)
        if (strcmp(st, map[i].code) == 0)
            return map[i].err;
    if (strncmp(st, "23", 2) == 0)
        return -EEXIST;
    if (strncmp(st, "08", 2) == 0)
        return -ENOTCONN;
    if (strncmp(st, "28", 2) == 0)
        return -EACCES;
    return -EIO;
}

static int op_error(int err)
{
    return err == -EINVAL || err == -E2BIG || err == -EEXIST || err == -ERANGE;
}

/* result_errno turns a failed result (or none) into an errno, and logs the server's words
 * once per kind of failure: an outage is one line, not one per group. */
static int result_errno(pg_store *s, const PGresult *r, const char *what)
{
    const char *st = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    int err = PQstatus(s->conn) != CONNECTION_OK ? -ENOTCONN : state_errno(st);
    const char *msg = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;

    if (err == -ENOTCONN) {
        if (!s->down)
            fl_log(LOG_ERR, "store: lost the PostgreSQL connection (%s): %s", what,
                   msg ? msg : PQerrorMessage(s->conn));
        s->down = 1;
        if (!s->parent)
            atomic_store(&s->unlocked, 1);   /* the node's lock went with the session */
        return err;
    }
    if (op_error(err) || strcmp(s->last_state, st ? st : "") != 0)
        fl_log(op_error(err) ? LOG_WARNING : LOG_ERR, "store: PostgreSQL %s failed: %s (SQLSTATE %s)",
               what, msg ? msg : "no message", st ? st : "none");
    if (!op_error(err))
        snprintf(s->last_state, sizeof s->last_state, "%s", st ? st : "");
    return err;
}

/* ---- running statements ---------------------------------------------------------------- */

static uint64_t mono_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* mono_ms: the time for intervals measured on this node alone, which a change of the wall clock
 * must not stretch or cut (fl_job_now_ms is for times compared with other nodes' rows). */
static int64_t mono_ms(void)
{
    return (int64_t)(mono_ns() / 1000000u);
}

/* timed counts one round trip that started at t0 (mono_ns). */
static void timed(pg_store *s, uint64_t t0)
{
    if (s->parent)
        s = s->parent;
    atomic_fetch_add_explicit(&s->round_trips, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->round_trip_ns, mono_ns() - t0, memory_order_relaxed);
}

/* ---- a server that stops answering -----------------------------------------------------
 * A PostgreSQL that is frozen (SIGSTOP, a VM paused, a hung disk under the kernel's TCP stack)
 * keeps its connections: the kernel acknowledges each statement and answers the keepalives,
 * so neither keepalives nor tcp_user_timeout notice, and the writer would wait for its result
 * for ever with every submit behind it. So each thread marks its waits for the server
 * (guard_begin/guard_end), and the loop, at each wake of the listener (about once a second),
 * shuts the socket of a wait older than statement_timeout plus FL_PG_GUARD_SLACK_MS: the call
 * then fails as on a lost connection (a group's submits answer 503) and the connection is
 * made again. The server's own statement_timeout, the same value, ends a statement that is
 * only slow (a lock held by another session) with an error first; the socket is shut only
 * when the server does not answer at all. */

static void guard_begin(pg_store *s)
{
    pthread_mutex_lock(&s->guard_mu);
    s->guard_fd = PQsocket(s->conn);
    s->guard_since = mono_ns();
    pthread_mutex_unlock(&s->guard_mu);
}

static void guard_end(pg_store *s)
{
    pthread_mutex_lock(&s->guard_mu);
    s->guard_fd = -1;
    pthread_mutex_unlock(&s->guard_mu);
}

/* guard_check (loop thread) shuts the socket s has waited on for longer than limit_ns. The
 * socket cannot be closed meanwhile: s's thread ends its wait under guard_mu first. The clock
 * is read under it too, never before a wait that began since. */
static void guard_check(pg_store *s, uint64_t limit_ns)
{
    pthread_mutex_lock(&s->guard_mu);
    uint64_t now = mono_ns();
    if (s->guard_fd >= 0 && now - s->guard_since > limit_ns) {
        fl_log(LOG_ERR, "%s: PostgreSQL has not answered for %.1f s; closing the connection",
               s->role, (double)(now - s->guard_since) / 1e9);
        shutdown(s->guard_fd, SHUT_RDWR);
        s->guard_fd = -1;
    }
    pthread_mutex_unlock(&s->guard_mu);
}

/* guard_all checks the writer's wait and each reader's. */
static void guard_all(pg_store *w)
{
    uint64_t limit = (uint64_t)(w->statement_ms + FL_PG_GUARD_SLACK_MS) * 1000000u;

    guard_check(w, limit);
    for (pg_store *r = w->readers; r; r = r->next)
        guard_check(r, limit);
}

static int result_ok(const PGresult *r)
{
    ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;

    return st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
}

/* piped sends statement name between the SQL texts before and after (either NULL: none; the
 * group's BEGIN, its COMMIT) in one round trip (pipeline mode, one sync): the first failed
 * result (a failure skips the rest: a COMMIT after a failed statement never runs), else the
 * statement's, or NULL if the connection failed. A group of submits is then two round trips,
 * its statement and its COMMIT, not three (one with both: pg_submit_commit); the changes a
 * group notifies go with its COMMIT. */
static PGresult *piped(pg_store *s, const char *before, const char *name, const pg_args *a, const char *after)
{
    PGresult *r, *got = NULL;
    int queries = 1 + !!before + !!after, sent;

    if (!PQenterPipelineMode(s->conn))
        return NULL;
    sent = (!before || PQsendQueryParams(s->conn, before, 0, NULL, NULL, NULL, NULL, 0)) &&
           PQsendQueryPrepared(s->conn, name, a ? a->n : 0, a ? a->v : NULL, a ? a->len : NULL,
                               a ? a->fmt : NULL, 1) &&
           (!after || PQsendQueryParams(s->conn, after, 0, NULL, NULL, NULL, NULL, 0)) &&
           PQpipelineSync(s->conn);
    for (int q = 0; sent && q < queries; q++) {
        while ((r = PQgetResult(s->conn))) {   /* each query's results end with a NULL */
            if (!got && (!result_ok(r) || q == !!before))
                got = r;
            else if (got && result_ok(got) && !result_ok(r)) {
                PQclear(got);   /* the COMMIT failed: so did the statement's transaction */
                got = r;
            } else
                PQclear(r);
        }
    }
    if (sent && (r = PQgetResult(s->conn)))
        PQclear(r);   /* the sync's */
    if (!PQexitPipelineMode(s->conn)) {
        s->ready = 0;   /* results left unread: the next group starts on a new connection */
        PQclear(got);
        return NULL;
    }
    return got;
}

/* run_then executes statement id with a's parameters, binary rows, and COMMITs the group's
 * transaction in the same round trip if commit: 0 and *out (the caller clears it; NULL =
 * cleared here) or a negative errno. */
static int run_then(pg_store *s, enum stmt_id id, const pg_args *a, int commit, PGresult **out)
{
    char name[8];
    const char *before = s->begin_due, *after = commit ? "COMMIT" : NULL;
    PGresult *r;
    uint64_t t0 = mono_ns();

    snprintf(name, sizeof name, "s%d", (int)id);
    s->begin_due = NULL;
    guard_begin(s);
    if (before || after)
        r = piped(s, before, name, a, after);
    else
        r = PQexecPrepared(s->conn, name, a ? a->n : 0, a ? a->v : NULL, a ? a->len : NULL,
                           a ? a->fmt : NULL, 1);
    guard_end(s);
    timed(s, t0);
    if (!result_ok(r)) {
        int err = result_errno(s, r, after ? "a statement or its COMMIT" : "a statement");
        PQclear(r);
        return err;
    }
    if (out)
        *out = r;
    else
        PQclear(r);
    return 0;
}

/* run executes statement id inside the group's transaction (see run_then). */
static int run(pg_store *s, enum stmt_id id, const pg_args *a, PGresult **out)
{
    return run_then(s, id, a, 0, out);
}

/* exec_text runs SQL text without parameters (set-up and transaction control). */
static int exec_text(pg_store *s, const char *sql, const char *what)
{
    uint64_t t0 = mono_ns();
    PGresult *r;
    ExecStatusType st;
    int rc = 0;

    guard_begin(s);
    r = PQexec(s->conn, sql);
    guard_end(s);
    st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    timed(s, t0);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        rc = result_errno(s, r, what);
    PQclear(r);
    return rc;
}

/* changes returns how many rows the command of r touched. */
static long changes(const PGresult *r)
{
    return strtol(PQcmdTuples((PGresult *)r), NULL, 10);
}

/* ---- reading binary rows --------------------------------------------------------------- */

/* col_int reads an integer column of any width (int2, int4, int8, bool) in network order; 0
 * for NULL. */
static int64_t col_int(const PGresult *r, int row, int col)
{
    const unsigned char *p = (const unsigned char *)PQgetvalue(r, row, col);
    int n = PQgetlength(r, row, col);
    uint64_t v = 0;

    if (PQgetisnull(r, row, col) || n > 8)
        return 0;
    for (int i = 0; i < n; i++)
        v = (v << 8) | p[i];
    if (n > 0 && n < 8 && (p[0] & 0x80))
        v |= ~(uint64_t)0 << (8 * n);   /* sign-extend */
    return (int64_t)v;
}

/* col_size is the byte size of a text/bytea column, or FL_JOB_ABSENT for NULL. */
static size_t col_size(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? FL_JOB_ABSENT : (size_t)PQgetlength(r, row, col);
}

static void copy_col(void *dst, const PGresult *r, int row, int col)
{
    int n = PQgetlength(r, row, col);

    if (dst && !PQgetisnull(r, row, col) && n > 0)
        memcpy(dst, PQgetvalue(r, row, col), (size_t)n);
}

static int col_is(const PGresult *r, int row, int col, const char *want)
{
    return !PQgetisnull(r, row, col) && strcmp(PQgetvalue(r, row, col), want) == 0;
}

/* read_job builds a job from row (JOB_COLS, then the payload if with_payload): 0 and *out
 * (caller frees), -ENOMEM, or -EIO for a state this flingd does not know. */
static int read_job(const PGresult *r, int row, int with_payload, fl_job **out)
{
    fl_job_sizes sz;
    fl_state state;
    fl_job *job;

    if (fl_proto_state_parse(PQgetvalue(r, row, C_STATE), (size_t)PQgetlength(r, row, C_STATE), &state))
        return -EIO;
    sz.type = col_size(r, row, C_TYPE);
    sz.callback = col_size(r, row, C_CALLBACK);
    sz.idem_key = col_size(r, row, C_IDEM_KEY);
    sz.error = col_size(r, row, C_ERROR);
    sz.output = col_size(r, row, C_OUTPUT);
    sz.previous_error = col_size(r, row, C_PREVIOUS_ERROR);
    sz.content_type = col_size(r, row, C_CONTENT_TYPE);
    sz.traceparent = col_size(r, row, C_TRACEPARENT);
    sz.tracestate = col_size(r, row, C_TRACESTATE);
    sz.payload = FL_JOB_ABSENT;
    if (with_payload) {
        sz.payload = col_size(r, row, C_PAYLOAD);
        if (sz.payload == FL_JOB_ABSENT)
            sz.payload = 0;   /* a claimed job always has a payload, maybe empty */
    }
    job = fl_job_new(&sz);
    if (!job)
        return -ENOMEM;
    copy_col(job->type, r, row, C_TYPE);
    copy_col(job->callback, r, row, C_CALLBACK);
    copy_col(job->idem_key, r, row, C_IDEM_KEY);
    copy_col(job->error, r, row, C_ERROR);
    copy_col(job->output, r, row, C_OUTPUT);
    copy_col(job->previous_error, r, row, C_PREVIOUS_ERROR);
    copy_col(job->content_type, r, row, C_CONTENT_TYPE);
    copy_col(job->traceparent, r, row, C_TRACEPARENT);
    copy_col(job->tracestate, r, row, C_TRACESTATE);
    if (with_payload)
        copy_col(job->payload, r, row, C_PAYLOAD);
    job->id = col_int(r, row, C_ID);
    job->state = state;
    job->status = (int)col_int(r, row, C_STATUS);
    job->attempts = (int)col_int(r, row, C_ATTEMPTS);
    job->max_attempts = (int)col_int(r, row, C_MAX_ATTEMPTS);
    job->priority = (int32_t)col_int(r, row, C_PRIORITY);
    job->timeout = (double)col_int(r, row, C_TIMEOUT_MS) / 1000.0;
    job->created_at = col_int(r, row, C_CREATED_AT);
    job->run_at = col_int(r, row, C_RUN_AT);
    job->started_at = col_int(r, row, C_STARTED_AT);
    job->finished_at = col_int(r, row, C_FINISHED_AT);
    job->updated_at = col_int(r, row, C_UPDATED_AT);
    job->has_exit_code = !PQgetisnull(r, row, C_EXIT_CODE);
    job->exit_code = (int)col_int(r, row, C_EXIT_CODE);
    job->retried = (int)col_int(r, row, C_RETRIED);
    job->previous_attempts = (int)col_int(r, row, C_PREVIOUS_ATTEMPTS);
    *out = job;
    return 0;
}

/* read_jobs reads every row of r into a new array *jobs (n rows): 0 or -ENOMEM / -EIO. */
static int read_jobs(const PGresult *r, int with_payload, fl_job ***jobs, size_t *n)
{
    int rows = PQntuples(r), rc = 0;

    *jobs = NULL;
    *n = 0;
    if (rows == 0)
        return 0;
    if (!(*jobs = calloc((size_t)rows, sizeof **jobs)))
        return -ENOMEM;
    for (int i = 0; i < rows && !rc; i++)
        if (!(rc = read_job(r, i, with_payload, &(*jobs)[*n])))
            (*n)++;
    return rc;
}

/* load_one runs a one-id statement and reads its row: 1 and *out, 0 if none, or a negative errno. */
static int load_one(pg_store *s, enum stmt_id id, int64_t job_id, int with_payload, fl_job **out)
{
    pg_args a = { 0 };
    PGresult *r;
    int rc;

    *out = NULL;
    arg_int(&a, job_id);
    if ((rc = run(s, id, &a, &r)))
        return rc;
    rc = PQntuples(r) ? read_job(r, 0, with_payload, out) : 0;
    if (!rc && *out)
        rc = 1;
    PQclear(r);
    return rc;
}

/* ---- operations ------------------------------------------------------------------------
 * Each returns 0 or the negative errno that fails the whole group; what the op found goes to
 * op->answer (the engine validated the op already). */

/* find_duplicate copies the identity of the job with job's type and idem_key into job. */
static int find_duplicate(pg_store *s, fl_job *job)
{
    pg_args a = { 0 };
    PGresult *r;
    fl_state state;
    int rc;

    arg_text(&a, job->type);
    arg_text(&a, job->idem_key);
    if ((rc = run(s, ST_IDEM_FIND, &a, &r)))
        return rc;
    if (PQntuples(r) == 0 ||
        fl_proto_state_parse(PQgetvalue(r, 0, 1), (size_t)PQgetlength(r, 0, 1), &state)) {
        PQclear(r);
        return -EIO;   /* the conflict that stopped the insert is committed, so it is there */
    }
    job->id = col_int(r, 0, 0);
    job->state = state;
    job->created_at = col_int(r, 0, 2);
    job->run_at = col_int(r, 0, 3);
    PQclear(r);
    return 0;
}

/* others_live sets *out to whether another node may hear this group (see FL_PG_OTHERS_MS). */
static int others_live(pg_store *s, int *out)
{
    pg_args a = { 0 };
    PGresult *r;
    int rc;

    int64_t now = mono_ms();

    if (atomic_exchange(&s->hello, 0)) {
        s->others = 1;
        s->others_at = now;
    } else if (!s->others_at || now - s->others_at >= FL_PG_OTHERS_MS) {
        arg_text(&a, s->node);
        if ((rc = run(s, ST_OTHERS, &a, &r)))
            return rc;
        s->others = col_int(r, 0, 0) > 0;
        s->others_at = now;
        PQclear(r);
    }
    *out = s->others;
    return 0;
}

/* paused_in: whether type is in the paused list p. */
static int paused_in(const pg_paused *p, const char *type)
{
    for (size_t i = 0; i < p->n; i++)
        if (strcmp(p->types[i], type) == 0)
            return 1;
    return 0;
}

/* type_wakes: a submit of type wakes the other nodes unless type is paused (as this node
 * last read it: a resume committed elsewhere since is read again once its notification is
 * heard, and the other nodes claim on that resume and on their safety net). */
static int type_wakes(pg_store *s, const char *type)
{
    pg_store *w = s->parent;
    int paused;

    if (!w)
        return !paused_in(s->group_paused_read ? &s->group_paused : &s->paused, type);
    pthread_mutex_lock(&w->paused_mu);   /* a second writer's submit: the writer's list */
    paused = paused_in(&w->paused, type);
    pthread_mutex_unlock(&w->paused_mu);
    return !paused;
}

/* arg_waker passes the node name that signs a submit's wake-ups (FL_PG_CHANNEL), or NULL if
 * the submits wake no one (wakes = 0: every one of their types is paused) or while no other
 * node may hear them (see FL_PG_OTHERS_MS): this node's own listener would only drop them,
 * after the server signalled it and sent them over. */
static int arg_waker(pg_store *s, pg_args *a, int wakes)
{
    int rc, others = 0;

    if (wakes && (rc = others_live(s, &others)))
        return rc;
    arg_text(a, others ? s->node : NULL);
    return 0;
}

/* followed sets *out to whether another node follows this one's changes now: live, and it
 * said so lately (nobody else would read them). */
static int followed(pg_store *s, int *out)
{
    int rc = others_live(s, out);

    if (!rc && *out && mono_ms() >= atomic_load(&(s->parent ? s->parent : s)->followed_until))
        *out = 0;
    return rc;
}

/* flush_changes notifies the changes noted so far in this group (see FL_PG_CHANGED_CHANNEL),
 * if another node may hear them, and then COMMITs if commit (in the same round trip when it
 * notifies): 0 or a negative errno. */
static int flush_changes(pg_store *s, int commit)
{
    pg_args a = { 0 };
    int rc, others = 0;

    if (s->changes_len && (rc = followed(s, &others)))
        return rc;
    if (!others) {
        s->changes_len = 0;
        return commit ? exec_text(s, "COMMIT", "COMMIT") : 0;
    }
    arg_text(&a, s->changes);
    s->changes_len = 0;
    return run_then(s, ST_CHANGES, &a, commit, NULL);
}

/* note_change adds job id's change ev to what this group notifies. */
static int note_change(pg_store *s, int64_t id, fl_store_event ev)
{
    int rc, n;

    if (s->changes_len > FL_PG_CHANGES_MAX && (rc = flush_changes(s, 0)))
        return rc;
    if (!s->changes_len)
        s->changes_len = (size_t)snprintf(s->changes, sizeof s->changes, "%s", s->node);
    n = snprintf(s->changes + s->changes_len, sizeof s->changes - s->changes_len, " %lld:%d", (long long)id, (int)ev);
    if (n > 0)
        s->changes_len += (size_t)n;
    return 0;
}

/* The change a FINISH into state made. */
static fl_store_event finish_event(fl_state state)
{
    switch (state) {
    case FL_STATE_SCHEDULED: return FL_STORE_EV_RETRYING;
    case FL_STATE_QUEUED: return FL_STORE_EV_REQUEUED;
    case FL_STATE_SUCCEEDED: return FL_STORE_EV_SUCCEEDED;
    case FL_STATE_CANCELLED: return FL_STORE_EV_CANCELLED;
    default: return FL_STORE_EV_FAILED;
    }
}

static int64_t timeout_ms(const fl_job *job)
{
    return (int64_t)(job->timeout * 1000.0 + 0.5);
}

/* submitted gives job, which the submit just inserted, its id and notes the change. */
static int submitted(pg_store *s, fl_job *job, int64_t id)
{
    job->id = id;
    job->updated_at = s->now;
    return note_change(s, id, FL_STORE_EV_SUBMITTED);
}

static int pg_submit(void *b, fl_store_op *op)
{
    pg_store *s = b;
    fl_job *job = op->u.submit.job;
    pg_args a = { 0 };
    PGresult *r;
    int rc;

    arg_text(&a, job->type);
    arg_text(&a, fl_proto_state_name(job->state));
    arg_int(&a, job->status);
    arg_int(&a, job->max_attempts);
    arg_int(&a, job->priority);
    arg_int(&a, timeout_ms(job));
    arg_int(&a, job->created_at);
    arg_int(&a, job->run_at);
    arg_text(&a, job->idem_key);
    arg_text(&a, job->callback);
    arg_int(&a, s->now);
    arg_text(&a, job->content_type);
    arg_text(&a, job->traceparent);
    arg_text(&a, job->tracestate);
    arg_bytes(&a, job->payload, job->payload_len);
    if ((rc = arg_waker(s, &a, type_wakes(s, job->type))) || (rc = run(s, ST_INSERT, &a, &r)))
        return rc;
    if (PQntuples(r) == 0) {   /* ON CONFLICT: a job of that type has the key */
        PQclear(r);
        op->answer = FL_STORE_DUPLICATE;
        return find_duplicate(s, job);
    }
    int64_t id = col_int(r, 0, 0);
    PQclear(r);
    return submitted(s, job, id);
}

/* batch_args fills the columns of ops into s->batch and a, the parameters of ST_INSERT_MANY and
 * ST_INSERT_FRESH. */
static int batch_args(pg_store *s, fl_store_op **ops, size_t n, pg_args *a)
{
    pg_array *c = s->batch;
    int rc = 0, wakes = 0;

    for (int i = 0; i < B_N; i++)
        arr_start(&c[i], i == B_PAYLOAD ? OID_BYTEA : i >= B_STATUS && i <= B_RUN_AT ? OID_INT8 : OID_TEXT);
    for (size_t i = 0; i < n; i++) {
        const fl_job *job = ops[i]->u.submit.job;
        wakes = wakes || type_wakes(s, job->type);
        arr_text(&c[B_TYPE], job->type);
        arr_text(&c[B_STATE], fl_proto_state_name(job->state));
        arr_int(&c[B_STATUS], job->status);
        arr_int(&c[B_MAX_ATTEMPTS], job->max_attempts);
        arr_int(&c[B_PRIORITY], job->priority);
        arr_int(&c[B_TIMEOUT_MS], timeout_ms(job));
        arr_int(&c[B_CREATED_AT], job->created_at);
        arr_int(&c[B_RUN_AT], job->run_at);
        arr_text(&c[B_IDEM_KEY], job->idem_key);
        arr_text(&c[B_CALLBACK], job->callback);
        arr_text(&c[B_CONTENT_TYPE], job->content_type);
        arr_text(&c[B_TRACEPARENT], job->traceparent);
        arr_text(&c[B_TRACESTATE], job->tracestate);
        arr_elem(&c[B_PAYLOAD], job->payload ? (const void *)job->payload : "", job->payload_len);
    }
    for (int i = 0; i < B_N && !rc; i++)
        if (!(rc = arr_end(&c[i])))
            arg_bytes(a, c[i].p, c[i].len);
    arg_int(a, s->now);
    return rc ? rc : arg_waker(s, a, wakes);
}

/* fresh_answers gives each of ops its id from the rows of ST_INSERT_FRESH r: "id, op number". */
static int fresh_answers(pg_store *s, fl_store_op **ops, size_t n, const PGresult *r)
{
    int rc = 0;

    for (int row = 0; row < (int)n && !rc; row++) {
        int64_t ord = col_int(r, row, 1);
        rc = ord >= 1 && ord <= (int64_t)n ? submitted(s, ops[ord - 1]->u.submit.job, col_int(r, row, 0)) : -EIO;
    }
    return rc;
}

/* keyed_answers gives each of ops its answer from the rows of ST_INSERT_MANY r, in op order:
 * "id, inserted". */
static int keyed_answers(pg_store *s, fl_store_op **ops, size_t n, const PGresult *r)
{
    int rc = 0;

    for (size_t i = 0; i < n && !rc; i++) {
        fl_job *job = ops[i]->u.submit.job;
        if (col_int(r, (int)i, 1)) {
            rc = submitted(s, job, col_int(r, (int)i, 0));
        } else {   /* a job of that type has the key: committed, or inserted by ops[< i] */
            ops[i]->answer = FL_STORE_DUPLICATE;
            rc = find_duplicate(s, job);
        }
    }
    return rc;
}

/* has_key: whether a job of ops has an Idempotency-Key (ST_INSERT_MANY), or none does
 * (ST_INSERT_FRESH). */
static int has_key(fl_store_op **ops, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (ops[i]->u.submit.job->idem_key)
            return 1;
    return 0;
}

/* submit_then inserts ops in one statement, COMMITs in its round trip if commit, and gives
 * each op its answer. */
static int submit_then(pg_store *s, fl_store_op **ops, size_t n, int commit)
{
    pg_args a = { 0 };
    PGresult *r;
    int rc, keyed = has_key(ops, n);

    if ((rc = batch_args(s, ops, n, &a)) ||
        (rc = run_then(s, keyed ? ST_INSERT_MANY : ST_INSERT_FRESH, &a, commit, &r)))
        return rc;
    if (PQntuples(r) != (int)n)
        rc = -EIO;
    else
        rc = keyed ? keyed_answers(s, ops, n, r) : fresh_answers(s, ops, n, r);
    PQclear(r);
    if (rc && commit)   /* not an ack without its id: a client that sends again gets a copy */
        fl_log(LOG_ERR, "store: %zu job(s) committed, but the server's answer could not be read (%s):"
               " they are stored and will run; their submits fail", n, strerror(-rc));
    return rc;
}

static int submit_chunk(pg_store *s, fl_store_op **ops, size_t n)
{
    return submit_then(s, ops, n, 0);
}


/* read_delivery reads row of r (DELIVERY_COLS) into one allocation. */
static int read_delivery(const PGresult *r, int row, fl_delivery **out)
{
    size_t tlen = col_size(r, row, D_TARGET), elen = col_size(r, row, D_LAST_ERROR);
    fl_delivery *d;

    if (tlen == FL_JOB_ABSENT)
        return -EIO;   /* NOT NULL in the schema */
    d = calloc(1, sizeof *d + tlen + 1 + (elen == FL_JOB_ABSENT ? 0 : elen + 1));
    if (!d)
        return -ENOMEM;
    d->target = (char *)(d + 1);
    copy_col(d->target, r, row, D_TARGET);
    if (elen != FL_JOB_ABSENT) {
        d->last_error = d->target + tlen + 1;
        copy_col(d->last_error, r, row, D_LAST_ERROR);
    }
    d->id = col_int(r, row, D_ID);
    d->job_id = col_int(r, row, D_JOB_ID);
    d->abort = col_is(r, row, D_EVENT, "abort");
    d->state = col_is(r, row, D_STATE, "delivered") ? FL_DELIVERY_DELIVERED
             : col_is(r, row, D_STATE, "failed")    ? FL_DELIVERY_FAILED
                                                    : FL_DELIVERY_PENDING;
    d->attempts = (int)col_int(r, row, D_ATTEMPTS);
    d->created_at = col_int(r, row, D_CREATED_AT);
    d->next_at = col_int(r, row, D_NEXT_AT);
    d->last_at = col_int(r, row, D_LAST_AT);
    d->has_last_status = !PQgetisnull(r, row, D_LAST_STATUS);
    d->last_status = (int)col_int(r, row, D_LAST_STATUS);
    *out = d;
    return 0;
}

/* read_deliveries reads every row of r into a new array *items (n rows). */
static int read_deliveries(const PGresult *r, fl_delivery ***items, size_t *n)
{
    int rows = PQntuples(r), rc = 0;

    *items = NULL;
    *n = 0;
    if (rows == 0)
        return 0;
    if (!(*items = calloc((size_t)rows, sizeof **items)))
        return -ENOMEM;
    for (int i = 0; i < rows && !rc; i++)
        if (!(rc = read_delivery(r, i, &(*items)[*n])))
            (*n)++;
    return rc;
}

/* get_many reads the jobs of get.ids (a reader's GET: see fl_store_get_many). */
static int get_many(pg_store *s, fl_store_op *op)
{
    size_t n = op->u.get.n_ids, len = 0;
    char *list = malloc(n * 21 + 3);
    pg_args a = { 0 };
    PGresult *r;
    int rc;

    if (!list)
        return -ENOMEM;
    list[len++] = '{';
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(list + len, 22, "%s%lld", i ? "," : "", (long long)op->u.get.ids[i]);
    list[len++] = '}';
    list[len] = '\0';
    arg_text(&a, list);
    rc = run(s, ST_GET_MANY, &a, &r);
    free(list);
    if (rc)
        return rc;
    rc = read_jobs(r, 0, &op->u.get.jobs, &op->u.get.n_jobs);
    PQclear(r);
    return rc;
}

static int pg_get(void *b, fl_store_op *op)
{
    pg_store *s = b;
    int with_payload = op->u.get.with_payload;
    int rc = op->u.get.ids ? 0 : load_one(s, with_payload ? ST_GET_PAYLOAD : ST_GET, op->u.get.id, with_payload,
                                          &op->u.get.job);
    pg_args a = { 0 };
    PGresult *r;

    if (op->u.get.ids)
        return get_many(s, op);
    if (rc <= 0) {
        if (rc == 0)
            op->answer = FL_STORE_NOT_FOUND;
        return rc;
    }
    if (with_payload)
        return 0;
    arg_int(&a, op->u.get.id);
    if ((rc = run_then(s, ST_DELIVERY_OF_JOB, &a, s->parent != NULL, &r)))
        return rc;
    rc = read_deliveries(r, &op->u.get.deliveries, &op->u.get.n_deliveries);
    PQclear(r);
    return rc;
}

static int pg_list(void *b, fl_store_op *op)
{
    pg_store *s = b;
    const fl_store_query *q = &op->u.list.q;
    pg_args a = { 0 };
    PGresult *r;
    int rc;

    /* One row more than the page tells whether another page follows. */
    arg_int(&a, q->after ? q->after : INT64_MAX);
    arg_int(&a, q->limit + 1);
    if (q->has_state)
        arg_text(&a, fl_proto_state_name(q->state));
    if (q->type)
        arg_text(&a, q->type);
    if ((rc = run(s, ST_LIST + (q->has_state ? 1 : 0) + (q->type ? 2 : 0), &a, &r)))
        return rc;
    rc = read_jobs(r, 0, &op->u.list.jobs, &op->u.list.n);
    PQclear(r);
    if (rc)
        return rc;
    if (op->u.list.n > (size_t)q->limit) {
        fl_job_free(op->u.list.jobs[--op->u.list.n]);
        op->u.list.next = op->u.list.jobs[op->u.list.n - 1]->id;
    }
    return 0;
}

/* stop_elsewhere tells the live node that runs the job a CANCEL found running, if not this
 * one, to stop it (op->u.cancel.elsewhere = 1). */
static int stop_elsewhere(pg_store *s, fl_store_op *op)
{
    pg_args a = { 0 };
    PGresult *r;
    int rc;

    arg_int(&a, op->u.cancel.id);
    arg_text(&a, s->node);
    if ((rc = run(s, ST_CANCEL_STOP, &a, &r)))
        return rc;
    op->u.cancel.elsewhere = PQntuples(r) > 0;
    PQclear(r);
    return 0;
}

/* cancel_orphan cancels the job if it runs under a node that is gone: 1 if it did, else 0
 * (it runs here, or under a live node), or a negative errno. */
static int cancel_orphan(pg_store *s, fl_store_op *op)
{
    pg_args a = { 0 };
    PGresult *r;
    int rc;

    arg_int(&a, op->u.cancel.id);
    arg_int(&a, op->u.cancel.now);
    arg_int(&a, s->now);
    arg_text(&a, s->node);
    if ((rc = run(s, ST_CANCEL_ORPHAN, &a, &r)))
        return rc;
    rc = changes(r) > 0;
    PQclear(r);
    return rc;
}

/* cancelled records in op's job what ST_CANCEL or ST_CANCEL_ORPHAN wrote, and the change. */
static int cancelled(pg_store *s, fl_store_op *op)
{
    op->answer = FL_STORE_OK;
    op->u.cancel.job->state = FL_STATE_CANCELLED;
    op->u.cancel.job->finished_at = op->u.cancel.now;
    op->u.cancel.job->updated_at = s->now;
    return note_change(s, op->u.cancel.id, FL_STORE_EV_CANCELLED);
}

static int pg_cancel(void *b, fl_store_op *op)
{
    pg_store *s = b;
    pg_args a = { 0 };
    int rc = load_one(s, ST_LOCK, op->u.cancel.id, 0, &op->u.cancel.job);

    if (rc <= 0) {
        if (rc == 0)
            op->answer = FL_STORE_NOT_FOUND;
        return rc;
    }
    if ((op->answer = fl_store_cancel_answer(op->u.cancel.job->state)) == FL_STORE_RUNNING) {
        if ((rc = stop_elsewhere(s, op)) || op->u.cancel.elsewhere || (rc = cancel_orphan(s, op)) <= 0)
            return rc;
        return cancelled(s, op);
    }
    if (op->answer != FL_STORE_OK)
        return 0;
    arg_int(&a, op->u.cancel.id);
    arg_int(&a, op->u.cancel.now);
    arg_int(&a, s->now);
    if ((rc = run(s, ST_CANCEL, &a, NULL)))
        return rc;
    return cancelled(s, op);
}

static int pg_set_status(void *b, fl_store_op *op)
{
    pg_store *s = b;
    pg_args a = { 0 };
    fl_job *job;
    int rc = load_one(s, ST_LOCK, op->u.set_status.id, 0, &job);

    if (rc <= 0) {
        if (rc == 0)
            op->answer = FL_STORE_NOT_FOUND;
        return rc;
    }
    op->u.set_status.job = job;
    if ((job->status & op->u.set_status.bits) == op->u.set_status.bits)
        return 0;   /* nothing new: no write, no change to report */
    arg_int(&a, op->u.set_status.id);
    arg_int(&a, op->u.set_status.bits);
    arg_int(&a, s->now);
    if ((rc = run(s, ST_SET_STATUS, &a, NULL)))
        return rc;
    job->status |= op->u.set_status.bits;
    job->updated_at = s->now;
    op->u.set_status.changed = 1;
    return note_change(s, job->id, FL_STORE_EV_STATUS);
}

/* Claim order: higher priority first, then lower id (RETURNING keeps no order). */
static int claim_order(const void *pa, const void *pb)
{
    const fl_job *a = *(fl_job *const *)pa, *b = *(fl_job *const *)pb;

    if (a->priority != b->priority)
        return a->priority > b->priority ? -1 : 1;
    return a->id < b->id ? -1 : a->id > b->id;
}

/* next_scheduled sets *out to the earliest run_at of type's scheduled jobs, 0 if none. */
static int next_scheduled(pg_store *s, const char *type, int64_t *out)
{
    pg_args a = { 0 };
    PGresult *r;
    int rc;

    *out = 0;
    arg_text(&a, type);
    if ((rc = run(s, ST_NEXT_SCHEDULED, &a, &r)))
        return rc;
    if (PQntuples(r))
        *out = col_int(r, 0, 0);
    PQclear(r);
    return 0;
}

/* sweep re-queues the jobs, and frees the deliveries, that nodes which are gone left in
 * flight (how many into *jobs, *deliveries; the jobs' ids into *ids, malloc'd, if ids is not
 * NULL): for a claim, which may take them at once, at most once per FL_PG_SWEEP_MS; always
 * for a SWEEP, which the loop pushes about that often. */
static int sweep(pg_store *s, int claim, int64_t **ids, size_t *jobs, size_t *deliveries)
{
    pg_args a = { 0 }, d = { 0 };
    PGresult *r;
    long n;
    int rc;

    *jobs = *deliveries = 0;
    if (claim && s->now - s->swept_at < FL_PG_SWEEP_MS)
        return 0;
    s->swept_at = s->now;
    arg_int(&a, s->now);
    arg_text(&a, s->node);
    if ((rc = run(s, ST_ORPHANS, &a, &r)))
        return rc;
    *jobs = (size_t)(n = PQntuples(r));
    if (n) {
        fl_log(LOG_WARNING, "store: %ld job(s) left running by nodes that are gone re-queued", n);
        atomic_fetch_add_explicit(&s->orphans, (uint64_t)n, memory_order_relaxed);
    }
    if (ids && n && !(*ids = malloc(sizeof **ids * (size_t)n)))
        rc = -ENOMEM;
    for (long i = 0; i < n && !rc; i++) {
        rc = note_change(s, col_int(r, (int)i, 0), FL_STORE_EV_REQUEUED);
        if (ids)
            (*ids)[i] = col_int(r, (int)i, 0);
    }
    PQclear(r);
    if (rc)
        return rc;
    arg_text(&d, s->node);
    if ((rc = run(s, ST_DELIVERY_ORPHANS, &d, &r)))
        return rc;
    *deliveries = (size_t)(n = changes(r));
    if (n)
        fl_log(LOG_WARNING, "store: %ld callback delivery(ies) in flight on nodes that are gone due again", n);
    PQclear(r);
    return 0;
}

static int pg_sweep(void *b, fl_store_op *op)
{
    return sweep(b, 0, &op->u.sweep.ids, &op->u.sweep.jobs, &op->u.sweep.deliveries);
}

static int pg_claim(void *b, fl_store_op *op)
{
    pg_store *s = b;
    pg_args a = { 0 };
    PGresult *r;
    size_t jobs, deliveries;   /* any node's free slot may take them: the notification says so */
    int rc;

    if ((rc = sweep(s, 1, NULL, &jobs, &deliveries)))
        return rc;

    arg_text(&a, op->u.claim.type);
    arg_int(&a, op->u.claim.now);
    arg_int(&a, op->u.claim.limit > FL_STORE_CLAIM_MAX ? FL_STORE_CLAIM_MAX : op->u.claim.limit);
    arg_int(&a, s->now);
    arg_text(&a, s->node);
    if ((rc = run(s, ST_CLAIM, &a, &r)))
        return rc;
    rc = read_jobs(r, 1, &op->u.claim.jobs, &op->u.claim.n);
    PQclear(r);
    if (rc)
        return rc;
    if (op->u.claim.n > 1)
        qsort(op->u.claim.jobs, op->u.claim.n, sizeof *op->u.claim.jobs, claim_order);
    atomic_fetch_add_explicit(&s->claimed, op->u.claim.n, memory_order_relaxed);
    for (size_t i = 0; i < op->u.claim.n; i++)
        if ((rc = note_change(s, op->u.claim.jobs[i]->id, FL_STORE_EV_STARTED)))
            return rc;
    return next_scheduled(s, op->u.claim.type, &op->u.claim.next_run_at);
}

/* fence explains a FINISH that found no running job of this node's: if the job is there, it
 * was re-queued while this node's session was gone (and maybe claimed by another node), and
 * this late outcome must not overwrite the newer attempt: it is dropped, logged, counted. */
static int fence(pg_store *s, fl_store_op *op)
{
    fl_job *job;
    int rc = load_one(s, ST_GET, op->u.finish.id, 0, &job);

    if (rc <= 0)
        return rc;
    uint64_t n = atomic_fetch_add_explicit(&s->fenced, 1, memory_order_relaxed) + 1;
    fl_log(LOG_WARNING, "job %lld: outcome %s of attempt %d on node %s dropped: the job is %s (attempt %d),"
           " no longer this node's attempt (%llu fenced so far)", (long long)job->id,
           fl_proto_state_name(op->u.finish.o.state), op->u.finish.o.attempt, s->node,
           fl_proto_state_name(job->state), job->attempts, (unsigned long long)n);
    fl_job_free(job);
    return 0;
}

static int pg_finish(void *b, fl_store_op *op)
{
    pg_store *s = b;
    const fl_store_outcome *o = &op->u.finish.o;
    int terminal = fl_proto_state_terminal(o->state);
    pg_args a = { 0 };
    PGresult *r;
    int rc;

    arg_int(&a, op->u.finish.id);
    arg_text(&a, fl_proto_state_name(o->state));
    arg_int(&a, o->status_bits);
    arg_opt_int(&a, o->has_exit_code, o->exit_code);
    arg_bytes(&a, o->error, o->error ? strlen(o->error) : 0);
    arg_bytes(&a, o->output, o->output_len);
    arg_opt_int(&a, o->state == FL_STATE_SCHEDULED, o->run_at);
    arg_opt_int(&a, terminal, o->finished_at);
    arg_int(&a, s->now);
    arg_text(&a, s->node);
    arg_int(&a, o->attempt);
    if ((rc = run(s, ST_FINISH, &a, &r)))
        return rc;
    if (PQntuples(r) == 0) {
        PQclear(r);
        op->answer = FL_STORE_NOT_FOUND;
        return fence(s, op);
    }
    rc = read_job(r, 0, 0, &op->u.finish.job);
    PQclear(r);
    return rc ? rc : note_change(s, op->u.finish.id, finish_event(o->state));
}

/* finish_args fills the columns of ops into s->batch and a, ST_FINISH_MANY's parameters. */
static int finish_args(pg_store *s, fl_store_op **ops, size_t n, pg_args *a)
{
    static const uint32_t oid[F_N] = { OID_INT8, OID_TEXT, OID_INT8, OID_INT8, OID_BYTEA, OID_BYTEA, OID_INT8, OID_INT8,
                                       OID_INT8 };
    pg_array *c = s->batch;
    int rc = 0;

    for (int i = 0; i < F_N; i++)
        arr_start(&c[i], oid[i]);
    for (size_t i = 0; i < n; i++) {
        const fl_store_outcome *o = &ops[i]->u.finish.o;
        arr_int(&c[F_ID], ops[i]->u.finish.id);
        arr_text(&c[F_STATE], fl_proto_state_name(o->state));
        arr_int(&c[F_BITS], o->status_bits);
        arr_opt_int(&c[F_EXIT_CODE], o->has_exit_code, o->exit_code);
        arr_text(&c[F_ERROR], o->error);
        arr_elem(&c[F_OUTPUT], o->output, o->output_len);
        arr_opt_int(&c[F_RUN_AT], o->state == FL_STATE_SCHEDULED, o->run_at);
        arr_opt_int(&c[F_FINISHED_AT], fl_proto_state_terminal(o->state), o->finished_at);
        arr_int(&c[F_ATTEMPT], o->attempt);
    }
    for (int i = 0; i < F_N && !rc; i++)
        if (!(rc = arr_end(&c[i])))
            arg_bytes(a, c[i].p, c[i].len);
    arg_int(a, s->now);
    arg_text(a, s->node);
    return rc;
}

/* finish_chunk finishes ops (no job twice) in one statement; each op gets its answer, in op
 * order: the job it wrote, or, fenced, FL_STORE_NOT_FOUND. */
static int finish_chunk(pg_store *s, fl_store_op **ops, size_t n)
{
    pg_args a = { 0 };
    PGresult *r;
    int rc, rows;

    if ((rc = finish_args(s, ops, n, &a)) || (rc = run(s, ST_FINISH_MANY, &a, &r)))
        return rc;
    rows = PQntuples(r);
    for (int i = 0; i < rows && !rc; i++) {
        int64_t ord = col_int(r, i, C_FINISH_ORD);
        if (ord < 1 || ord > (int64_t)n || ops[ord - 1]->u.finish.job)
            rc = -EIO;
        else
            rc = read_job(r, i, 0, &ops[ord - 1]->u.finish.job);
    }
    PQclear(r);
    for (size_t i = 0; i < n && !rc; i++) {
        fl_store_op *op = ops[i];
        if (op->u.finish.job) {
            rc = note_change(s, op->u.finish.id, finish_event(op->u.finish.o.state));
        } else {
            op->answer = FL_STORE_NOT_FOUND;
            rc = fence(s, op);
        }
    }
    return rc;
}

/* op_bytes is what of op counts toward FL_PG_BATCH_BYTES. */
static size_t op_bytes(const fl_store_op *op)
{
    if (op->kind == FL_STORE_SUBMIT)
        return op->u.submit.job->payload_len;
    return op->u.finish.o.output_len + (op->u.finish.o.error ? strlen(op->u.finish.o.error) : 0);
}

/* chunk_end is where the statement that starts at ops[i] ends: before FL_PG_BATCH_BYTES, and,
 * for a FINISH, before a job the chunk has already (an UPDATE writes a row once, however
 * many of its source rows join it). */
static size_t chunk_end(fl_store_op **ops, size_t i, size_t n)
{
    size_t j, sum = 0;

    for (j = i; j < n && (j == i || sum + op_bytes(ops[j]) <= FL_PG_BATCH_BYTES); j++) {
        for (size_t k = i; k < j && ops[j]->kind == FL_STORE_FINISH; k++)
            if (ops[k]->u.finish.id == ops[j]->u.finish.id)
                return j;
        sum += op_bytes(ops[j]);
    }
    return j;
}

/* run_chunks runs ops (one kind) in as few statements of chunk as chunk_end allows. The
 * arrays are kept for the next run unless large payloads grew them past FL_PG_BATCH_KEEP. */
static int run_chunks(pg_store *s, fl_store_op **ops, size_t n, int (*chunk)(pg_store *, fl_store_op **, size_t))
{
    int rc = 0;

    for (size_t i = 0, j; i < n && !rc; i = j) {
        j = chunk_end(ops, i, n);
        rc = chunk(s, ops + i, j - i);
    }
    for (int i = 0; i < B_N; i++)
        if (s->batch[i].cap > FL_PG_BATCH_KEEP) {
            free(s->batch[i].p);
            s->batch[i].p = NULL;
            s->batch[i].cap = 0;
        }
    return rc;
}

static int pg_submit_many(void *b, fl_store_op **ops, size_t n)
{
    return run_chunks(b, ops, n, submit_chunk);
}

/* pg_submit_commit: a group of submits without a key that fit in one statement, whose changes
 * no node follows (nothing to notify before the COMMIT), COMMITs in the statement's round
 * trip: one round trip for the group instead of two. */
static int pg_submit_commit(void *b, fl_store_op **ops, size_t n)
{
    pg_store *s = b;
    int rc, others = 0;

    if (has_key(ops, n) || chunk_end(ops, 0, n) != n)
        return pg_submit_many(b, ops, n);
    if ((rc = followed(s, &others)))
        return rc;
    if (others)
        return pg_submit_many(b, ops, n);
    rc = submit_then(s, ops, n, 1);
    s->changes_len = 0;   /* noted by the answers; nobody follows them */
    if (rc)
        return rc;
    s->last_state[0] = '\0';   /* as pg_commit (no PAUSE ran: the group is these submits) */
    return 1;
}

static int pg_finish_many(void *b, fl_store_op **ops, size_t n)
{
    return run_chunks(b, ops, n, finish_chunk);
}

static int pg_count(void *b, fl_store_op *op)
{
    pg_store *s = b;
    PGresult *r;
    int rc = run(s, op->u.count.all_states ? ST_COUNT_ALL : ST_COUNT_WAITING, NULL, &r);
    int rows;

    if (rc)
        return rc;
    rows = PQntuples(r);
    if (rows && !(op->u.count.rows = calloc((size_t)rows, sizeof *op->u.count.rows))) {
        PQclear(r);
        return -ENOMEM;
    }
    for (int i = 0; i < rows; i++) {
        fl_store_count *c = &op->u.count.rows[op->u.count.n];
        if (fl_proto_state_parse(PQgetvalue(r, i, 1), (size_t)PQgetlength(r, i, 1), &c->state))
            continue;
        snprintf(c->type, sizeof c->type, "%s", PQgetvalue(r, i, 0));
        c->n = col_int(r, i, 2);
        op->u.count.n++;
    }
    PQclear(r);
    return 0;
}

static int pg_changed(void *b, fl_store_op *op)
{
    pg_store *s = b;
    pg_args a = { 0 };
    PGresult *r;
    int rc;

    arg_int(&a, op->u.changed.after);
    arg_int(&a, op->u.changed.since);
    arg_int(&a, op->u.changed.limit);
    if ((rc = run(s, ST_CHANGED, &a, &r)))
        return rc;
    rc = read_jobs(r, 0, &op->u.changed.jobs, &op->u.changed.n);
    PQclear(r);
    if (rc)
        return rc;
    /* A full page may have a next one; an empty next page ends the walk. */
    if (op->u.changed.n == (size_t)op->u.changed.limit)
        op->u.changed.next = op->u.changed.jobs[op->u.changed.n - 1]->id;
    return 0;
}

static int pg_add_delivery(void *b, int64_t job_id, int abort, const char *target)
{
    pg_store *s = b;
    pg_args a = { 0 };

    arg_int(&a, job_id);
    arg_text(&a, abort ? "abort" : "complete");
    arg_text(&a, target);
    arg_int(&a, s->now);
    return run(s, ST_DELIVERY_ADD, &a, NULL);
}

/* Oldest next_at first (RETURNING keeps no order). */
static int take_order(const void *pa, const void *pb)
{
    const fl_delivery *a = *(fl_delivery *const *)pa, *b = *(fl_delivery *const *)pb;

    if (a->next_at != b->next_at)
        return a->next_at < b->next_at ? -1 : 1;
    return a->id < b->id ? -1 : a->id > b->id;
}

static int pg_delivery_take(void *b, fl_store_op *op)
{
    pg_store *s = b;
    pg_args a = { 0 };
    PGresult *r;
    int rc;

    arg_int(&a, op->u.take.now);
    arg_int(&a, op->u.take.limit);
    arg_text(&a, s->node);
    arg_int(&a, s->now);
    if ((rc = run(s, ST_DELIVERY_TAKE, &a, &r)))
        return rc;
    rc = read_deliveries(r, &op->u.take.items, &op->u.take.n);
    PQclear(r);
    if (rc)
        return rc;
    if (op->u.take.n > 1)
        qsort(op->u.take.items, op->u.take.n, sizeof *op->u.take.items, take_order);
    for (size_t i = 0; i < op->u.take.n; i++) {
        fl_delivery *d = op->u.take.items[i];
        /* with its payload (see callback_payload); a job pruned under it leaves d->job NULL */
        if ((rc = load_one(s, ST_GET_PAYLOAD, d->job_id, 1, &d->job)) < 0)
            return rc;
    }
    if ((rc = run(s, ST_DELIVERY_NEXT, NULL, &r)))
        return rc;
    op->u.take.next_at = PQntuples(r) ? col_int(r, 0, 0) : 0;
    PQclear(r);
    return 0;
}

static int pg_delivery_done(void *b, fl_store_op *op)
{
    pg_store *s = b;
    fl_delivery_state state = op->u.done.state;
    pg_args a = { 0 };
    PGresult *r;
    int rc;

    arg_int(&a, op->u.done.id);
    arg_text(&a, fl_store_delivery_state_name(state));
    arg_int(&a, state == FL_DELIVERY_PENDING ? op->u.done.next_at : 0);
    arg_opt_int(&a, op->u.done.has_status, op->u.done.status);
    arg_bytes(&a, op->u.done.error, op->u.done.error ? strlen(op->u.done.error) : 0);
    if ((rc = run(s, ST_DELIVERY_DONE, &a, &r)))
        return rc;
    if (changes(r) == 0)
        op->answer = FL_STORE_NOT_FOUND;
    PQclear(r);
    return 0;
}

/* remember_paused keeps a copy of the n paused types a PAUSE read for type_wakes, for the
 * rest of the group, and after it only if it commits: 0 or -ENOMEM. */
static int remember_paused(pg_store *s, const char (*types)[FL_TYPE_NAME_MAX + 1], size_t n)
{
    char (*copy)[FL_TYPE_NAME_MAX + 1] = NULL;

    if (n && !(copy = malloc(n * sizeof *copy)))
        return -ENOMEM;
    if (n)
        memcpy(copy, types, n * sizeof *copy);
    free(s->group_paused.types);
    s->group_paused = (pg_paused){ copy, n };
    s->group_paused_read = 1;
    return 0;
}

/* paused_end ends the group's own list of paused types: kept if it committed, else dropped. */
static void paused_end(pg_store *s, int committed)
{
    if (committed && s->group_paused_read) {
        pthread_mutex_lock(&s->paused_mu);
        free(s->paused.types);
        s->paused = s->group_paused;
        pthread_mutex_unlock(&s->paused_mu);
    } else {
        free(s->group_paused.types);
    }
    s->group_paused = (pg_paused){ NULL, 0 };
    s->group_paused_read = 0;
}

static int pg_pause(void *b, fl_store_op *op)
{
    pg_store *s = b;
    const char *type = op->u.pause.type;
    PGresult *r;
    int rc, rows;

    if (type) {
        pg_args a = { 0 };
        char note[FL_TYPE_NAME_MAX + 300];
        int others;
        if ((rc = others_live(s, &others)))
            return rc;
        snprintf(note, sizeof note, "%s %d %s", type, op->u.pause.paused ? 1 : 0, s->node);
        arg_text(&a, type);
        if (op->u.pause.paused)
            arg_int(&a, s->now);
        arg_text(&a, others ? note : NULL);
        if ((rc = run(s, op->u.pause.paused ? ST_PAUSE_ADD : ST_PAUSE_DEL, &a, &r)))
            return rc;
        PQclear(r);
    }
    if ((rc = run(s, ST_PAUSE_READ, NULL, &r)))
        return rc;
    rows = PQntuples(r);
    if (rows && !(op->u.pause.types = calloc((size_t)rows, sizeof *op->u.pause.types))) {
        PQclear(r);
        return -ENOMEM;
    }
    for (int i = 0; i < rows; i++)
        snprintf(op->u.pause.types[op->u.pause.n++], sizeof *op->u.pause.types, "%s", PQgetvalue(r, i, 0));
    PQclear(r);
    return remember_paused(s, (const char (*)[FL_TYPE_NAME_MAX + 1])op->u.pause.types, op->u.pause.n);
}

static int pg_retry(void *b, fl_store_op *op)
{
    pg_store *s = b;
    pg_args a = { 0 };
    PGresult *r;
    long changed;
    int rc;

    arg_int(&a, op->u.retry.id);
    arg_int(&a, op->u.retry.now);
    arg_int(&a, FL_STATUS_ABORTED);
    arg_text(&a, s->node);
    if ((rc = run(s, ST_RETRY, &a, &r)))
        return rc;
    changed = changes(r);
    PQclear(r);
    if ((rc = load_one(s, ST_GET, op->u.retry.id, 0, &op->u.retry.job)) < 0)
        return rc;
    if (!op->u.retry.job)
        op->answer = FL_STORE_NOT_FOUND;
    else if (!changed)
        op->answer = FL_STORE_WRONG_STATE;
    else
        return note_change(s, op->u.retry.id, FL_STORE_EV_RETRIED);
    return 0;
}

static int pg_prune(void *b, fl_store_op *op)
{
    pg_store *s = b;
    pg_args a = { 0 };
    PGresult *r;
    int rc;

    arg_int(&a, op->u.prune.before);
    arg_int(&a, op->u.prune.limit);
    if ((rc = run(s, ST_PRUNE, &a, &r)))
        return rc;
    op->u.prune.n = (size_t)changes(r);
    PQclear(r);
    return 0;
}

static int pg_last_key(void *b, fl_store_op *op)
{
    pg_store *s = b;
    const char *prefix = op->u.last_key.prefix;
    size_t n = strlen(prefix);
    char *above = strdup(prefix);
    pg_args a = { 0 };
    PGresult *r;
    int rc;

    if (!above)
        return -ENOMEM;
    above[n - 1] = (char)(above[n - 1] + 1);   /* idem keys are visible ASCII: no overflow */
    arg_text(&a, op->u.last_key.type);
    arg_text(&a, prefix);
    arg_text(&a, above);
    rc = run(s, ST_LAST_KEY, &a, &r);
    free(above);
    if (rc)
        return rc;
    if (PQntuples(r) && !(op->u.last_key.key = strdup(PQgetvalue(r, 0, 0))))
        rc = -ENOMEM;
    PQclear(r);
    return rc;
}

/* ---- connection, migrations ------------------------------------------------------------ */

/* connect_db opens s->url (any libpq connection string or URI; the password may come from
 * PGPASSWORD or ~/.pgpass, as libpq allows), with a connect timeout and TCP keepalives
 * unless the url sets its own: the url comes after them, so its values win. */
static const char *const conn_keys[] = { "connect_timeout", "keepalives_idle", "keepalives_interval",
                                          "keepalives_count", "tcp_user_timeout", "fallback_application_name",
                                          "dbname", NULL };
enum { CV_APP = 5, CV_URL = 6 };   /* where conn_vals holds the application name and the url */

static int connect_db(pg_store *s, char *err, size_t errlen)
{
    PQfinish(s->conn);
    s->ready = 0;
    s->conn = PQconnectdbParams(conn_keys, s->conn_vals, 1);
    if (!s->conn) {
        fl_store_errf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    if (PQstatus(s->conn) != CONNECTION_OK) {
        char *nl, *msg = PQerrorMessage(s->conn);
        fl_store_errf(err, errlen, "cannot connect to PostgreSQL: %s", msg);
        if (err && (nl = strchr(err, '\n')))
            *nl = '\0';
        return -ENOTCONN;
    }
    return 0;
}

/* set_up makes the session's settings and prepares every statement on a new connection. A
 * 202 means committed: synchronous_commit on waits for the commit's WAL flush (and for the
 * synchronous standbys the server has); durability = normal turns it off, so a crash of the
 * server (not of flingd) may lose the last commits. */
static int set_up(pg_store *s, char *err, size_t errlen)
{
    char sql[96];
    int rc;

    snprintf(sql, sizeof sql, "SET synchronous_commit = %s; SET statement_timeout = %d",
             s->durability_full ? "on" : "off", s->statement_ms);
    rc = exec_text(s, sql, "setting synchronous_commit and statement_timeout");
    for (int i = 0; i < ST_N && !rc; i++) {
        char name[8];
        PGresult *r;
        snprintf(name, sizeof name, "s%d", i);
        guard_begin(s);
        r = PQprepare(s->conn, name, stmt_sql[i], 0, NULL);
        guard_end(s);
        if (!r || PQresultStatus(r) != PGRES_COMMAND_OK) {
            fl_store_errf(err, errlen, "cannot prepare a statement: %s",
                          r ? PQresultErrorMessage(r) : PQerrorMessage(s->conn));
            rc = r ? -EIO : -ENOTCONN;
        }
        PQclear(r);
    }
    if (rc)
        return rc;
    s->ready = 1;
    return 0;
}

/* say_hello tells the live nodes that this one is (back) and follows their changes. */
static int say_hello(pg_store *s)
{
    pg_args a = { 0 };
    PGresult *r;
    int rc;

    s->others_at = 0;   /* and look again who is live: they may have changed while it was away */
    arg_text(&a, s->node);
    if ((rc = run(s, ST_CHANGES, &a, &r)))
        return rc;
    PQclear(r);
    return 0;
}

/* lock_node takes this node's session lock: 0, -EBUSY while another session holds it (a
 * node of the same name, or this node's previous session that the server has not yet seen
 * end), or another negative errno. */
static int lock_node(pg_store *s)
{
    const char *v[1] = { s->node };
    PGresult *r;
    int rc;

    guard_begin(s);
    r = PQexecParams(s->conn, "SELECT pg_try_advisory_lock(" FL_PG_NODE_LOCK ", hashtext($1))", 1, NULL, v, NULL,
                     NULL, 0);
    guard_end(s);

    if (r && PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
        rc = strcmp(PQgetvalue(r, 0, 0), "t") == 0 ? 0 : -EBUSY;
    else
        rc = result_errno(s, r, "taking the node lock");
    PQclear(r);
    return rc ? rc : say_hello(s);
}

/* lock_node_waiting tries lock_node for up to FL_PG_LOCK_WAIT_MS: a restarted node's previous
 * session may take the server a moment to end. At start only, before the loop runs. */
static int lock_node_waiting(pg_store *s)
{
    int rc;

    for (int waited = 0; (rc = lock_node(s)) == -EBUSY && waited < FL_PG_LOCK_WAIT_MS;
         waited += FL_PG_LOCK_RETRY_MS)
        usleep(FL_PG_LOCK_RETRY_MS * 1000);
    return rc;
}

/* schema_version reads the number of migrations applied (0 on a new database). */
static int schema_version(pg_store *s, int *out)
{
    PGresult *r = PQexec(s->conn, "SELECT coalesce(max(version), 0) FROM fling_schema");
    int rc = r && PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 ? 0 : result_errno(s, r, "reading the schema version");

    if (!rc)
        *out = atoi(PQgetvalue(r, 0, 0));
    PQclear(r);
    return rc;
}

/* migrate applies the migrations the database lacks in one transaction, under an advisory
 * lock: nodes starting together take turns, and each one after the first finds nothing to do.
 * DDL is transactional in PostgreSQL, so a failed migration leaves nothing behind. */
static int migrate(pg_store *s, char *err, size_t errlen)
{
    char what[64], sql[96];
    int rc, v = 0;

    rc = exec_text(s, "BEGIN", "starting the migrations");
    if (!rc)
        rc = exec_text(s, "SELECT pg_advisory_xact_lock(" FL_PG_MIGRATE_LOCK ")", "locking the migrations");
    if (!rc)
        rc = exec_text(s, "CREATE TABLE IF NOT EXISTS fling_schema (version integer PRIMARY KEY,"
                          " applied_at timestamptz NOT NULL DEFAULT now())", "creating fling_schema");
    if (!rc)
        rc = schema_version(s, &v);
    if (!rc && v > fl_pg_migrations_count) {
        fl_store_errf(err, errlen, "the database's schema version %d is newer than this flingd knows (%d);"
                      " run a newer flingd", v, fl_pg_migrations_count);
        rc = -ENOTSUP;
    }
    for (; !rc && v < fl_pg_migrations_count; v++) {
        snprintf(what, sizeof what, "migration %03d", v + 1);
        rc = exec_text(s, fl_pg_migrations[v], what);
        snprintf(sql, sizeof sql, "INSERT INTO fling_schema (version) VALUES (%d)", v + 1);
        if (!rc)
            rc = exec_text(s, sql, what);
        if (!rc)
            fl_log(LOG_INFO, "store: applied PostgreSQL %s", what);
        else
            fl_store_errf(err, errlen, "%s failed: %s", what, PQerrorMessage(s->conn));
    }
    if (!rc)
        rc = exec_text(s, "COMMIT", "committing the migrations");
    if (rc) {
        if (err && !err[0])
            fl_store_errf(err, errlen, "cannot migrate the database: %s", PQerrorMessage(s->conn));
        exec_text(s, "ROLLBACK", "rolling the migrations back");
    }
    return rc;
}

/* ---- the listener (loop thread: pglisten.h) -------------------------------------------- */

static int pg_watch(void *b, int *fd, int *events)
{
    pg_store *s = b;

    return fl_pglisten_watch(s->listen, fd, events);
}

/* What one wake reports to (heard's arg). */
typedef struct pg_hearing {
    pg_store *s;
    const fl_store_remote *r;
} pg_hearing;

/* payload_type copies the type that starts payload ("TYPE ...") into type: the rest after
 * the space, or NULL if there is no space or the type is too long. */
static const char *payload_type(const char *payload, char type[FL_TYPE_NAME_MAX + 1])
{
    const char *sp = strchr(payload, ' ');

    if (!sp || (size_t)(sp - payload) > FL_TYPE_NAME_MAX)
        return NULL;
    memcpy(type, payload, (size_t)(sp - payload));
    type[sp - payload] = '\0';
    return sp + 1;
}

/* heard_due: "TYPE NODE" (NODE empty for a sweep's re-queue), unless this node sent it. */
static void heard_due(const pg_hearing *h, const char *payload)
{
    char type[FL_TYPE_NAME_MAX + 1];
    const char *node = payload_type(payload, type);

    if (h->r->due && node && strcmp(node, h->s->node) != 0)
        h->r->due(type, h->r->arg);
}

/* heard_pause: "TYPE P NODE", unless this node sent it (its scheduler applied it already). */
static void heard_pause(const pg_hearing *h, const char *payload)
{
    char type[FL_TYPE_NAME_MAX + 1];
    const char *p = payload_type(payload, type);

    if (h->r->paused && p && (p[0] == '0' || p[0] == '1') && p[1] == ' ' && strcmp(p + 2, h->s->node) != 0)
        h->r->paused(type, p[0] == '1', h->r->arg);
}

/* notify_changes_awhile makes this node's groups notify their changes for FL_PG_FOLLOW_TTL_MS
 * from now: another node said it follows them, or this node cannot tell yet whether any does
 * (its listener is not listening, or listens again since less than that: the followers'
 * answers to its ask are on their way). */
static void notify_changes_awhile(pg_store *s)
{
    atomic_store(&s->followed_until, mono_ms() + FL_PG_FOLLOW_TTL_MS);
}

/* heard_other: another node is live; the writers notify it from their next group on. */
static void heard_other(pg_store *s)
{
    atomic_store(&s->hello, 1);
    for (pg_store *c = s->readers; c; c = c->next)
        atomic_store(&c->hello, 1);   /* a second writer's; a reader never looks */
}

/* heard_follow: "NODE F A" from another node: it follows this one's changes (F = 1), and it
 * asks the followers to say so (A = 1). */
static void heard_follow(const pg_hearing *h, const char *payload)
{
    size_t len = strlen(payload), node = strlen(h->s->node);

    if (len < 5 || payload[len - 4] != ' ' || payload[len - 2] != ' ' ||
        (len - 4 == node && memcmp(payload, h->s->node, node) == 0))
        return;
    if (payload[len - 3] == '1')
        notify_changes_awhile(h->s);
    if (payload[len - 1] == '1')
        h->s->follow_said_at = 0;
    heard_other(h->s);
}

/* heard_cancel: "ID OWNER", for this node only. */
static void heard_cancel(const pg_hearing *h, const char *payload)
{
    char *end;
    long long id = strtoll(payload, &end, 10);

    if (h->r->stop && end != payload && *end == ' ' && strcmp(end + 1, h->s->node) == 0)
        h->r->stop(id, h->r->arg);
}

/* heard_changed: "NODE ID:EV ...", unless this node sent it (its own changes were reported
 * by the engine already). */
static void heard_changed(const pg_hearing *h, const char *payload)
{
    size_t len = strlen(h->s->node);
    const char *p = strchr(payload, ' ');

    if ((p ? (size_t)(p - payload) : strlen(payload)) == len && memcmp(payload, h->s->node, len) == 0)
        return;
    heard_other(h->s);   /* another node is live: notify it from the next group on */
    if (!h->r->changed || !p)
        return;
    while (*p == ' ') {
        char *end;
        long long id = strtoll(p + 1, &end, 10);
        long ev;

        if (end == p + 1 || *end != ':')
            break;
        ev = strtol(end + 1, &end, 10);
        if (ev < 0 || ev >= FL_STORE_EV_COUNT)
            break;
        h->r->changed(id, (fl_store_event)ev, h->r->arg);
        p = end;
    }
    if (*p)
        fl_log(LOG_WARNING, "store: a change notification that is not \"NODE ID:EV ...\" ignored from: %.40s", p);
}

static void heard(const char *channel, const char *payload, void *arg)
{
    const pg_hearing *h = arg;

    if (channel)
        h->s->notifications++;
    if (!channel) {
        h->s->follow_said_at = 0;   /* say it again: it went unheard while the listener was away */
        h->s->follow_ask = 1;
        notify_changes_awhile(h->s);
        if (h->r->due)
            h->r->due(NULL, h->r->arg);
        if (h->r->back)
            h->r->back(h->s->listened_at, h->r->arg);
    } else if (strcmp(channel, FL_PG_CHANNEL) == 0) {
        heard_due(h, payload);
    } else if (strcmp(channel, FL_PG_CANCEL_CHANNEL) == 0) {
        heard_cancel(h, payload);
    } else if (strcmp(channel, FL_PG_PAUSE_CHANNEL) == 0) {
        heard_pause(h, payload);
    } else if (strcmp(channel, FL_PG_CHANGED_CHANNEL) == 0) {
        heard_changed(h, payload);
    } else if (strcmp(channel, FL_PG_FOLLOW_CHANNEL) == 0) {
        heard_follow(h, payload);
    }
}

/* say_follow tells the other nodes that this one follows their changes, if it does and has
 * not said so for FL_PG_FOLLOW_EVERY_MS, and asks theirs if its listener is back; a listener
 * not ready to send is asked again at the next wake. */
static void say_follow(pg_store *s)
{
    int64_t now = mono_ms();
    char note[160];

    if (!s->follow_ask && !(s->following && (!s->follow_said_at || now - s->follow_said_at >= FL_PG_FOLLOW_EVERY_MS)))
        return;
    snprintf(note, sizeof note, "%s %d %d", s->node, s->following, s->follow_ask);
    if (fl_pglisten_notify(s->listen, FL_PG_FOLLOW_CHANNEL, note) == 0) {
        s->follow_said_at = now;
        s->follow_ask = 0;
    }
}

static void pg_follow(void *b, int on)
{
    pg_store *s = b;

    if (on && !s->following)
        s->follow_said_at = 0;
    s->following = on;
    say_follow(s);
}

static void pg_wake(void *b, const fl_store_remote *r)
{
    pg_store *s = b;
    pg_hearing h = { s, r };

    guard_all(s);
    if (fl_pglisten_listening(s->listen))
        s->listened_at = fl_job_now_ms();   /* what was committed before it has been heard */
    fl_pglisten_wake(s->listen, heard, &h);
    if (!fl_pglisten_listening(s->listen))
        notify_changes_awhile(s);
    say_follow(s);
}

static int pg_shared_stats(void *b, fl_store_stats *out)
{
    pg_store *s = b;

    out->claimed = atomic_load_explicit(&s->claimed, memory_order_relaxed);
    out->fenced = atomic_load_explicit(&s->fenced, memory_order_relaxed);
    out->orphans = atomic_load_explicit(&s->orphans, memory_order_relaxed);
    out->round_trips = atomic_load_explicit(&s->round_trips, memory_order_relaxed);
    out->round_trip_seconds = (double)atomic_load_explicit(&s->round_trip_ns, memory_order_relaxed) / 1e9;
    out->notifications = s->notifications;
    out->following = s->following;
    out->followed = mono_ms() < atomic_load(&s->followed_until);
    return fl_pglisten_up(s->listen);
}

/* pg_new allocates a store of url with no connection yet, or NULL (out of memory). */
static pg_store *pg_new(const char *url)
{
    pg_store *s = calloc(1, sizeof *s);

    if (!s || !(s->url = strdup(url)) || pthread_mutex_init(&s->guard_mu, NULL)) {
        if (s)
            free(s->url);
        free(s);
        return NULL;
    }
    if (pthread_mutex_init(&s->paused_mu, NULL)) {
        pthread_mutex_destroy(&s->guard_mu);
        free(s->url);
        free(s);
        return NULL;
    }
    s->role = "store";
    s->guard_fd = -1;
    s->listened_at = fl_job_now_ms();
    return s;
}

static void destroy(pg_store *s)
{
    pthread_mutex_destroy(&s->guard_mu);
    pthread_mutex_destroy(&s->paused_mu);
    fl_pglisten_free(s->listen);
    for (int i = 0; i < B_N; i++)
        free(s->batch[i].p);
    paused_end(s, 0);
    free(s->paused.types);
    PQfinish(s->conn);
    free(s->url);
    free(s);
}

static int pg_open(void **out, const fl_store_options *opt, const char *node, char *err, size_t errlen)
{
    static const char *const channels[] = { FL_PG_CHANNEL, FL_PG_CANCEL_CHANNEL, FL_PG_CHANGED_CHANNEL,
                                            FL_PG_PAUSE_CHANNEL, FL_PG_FOLLOW_CHANNEL, NULL };
    pg_store *s;
    int rc;

    *out = NULL;
    if (!opt->url || !*opt->url) {
        fl_store_errf(err, errlen, "[store] backend = postgres needs [store] url");
        return -EINVAL;
    }
    if (!(s = pg_new(opt->url))) {
        fl_store_errf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    s->node = node;
    s->durability_full = opt->durability_full;
    s->statement_ms = opt->statement_ms > 0 ? opt->statement_ms : FL_PG_STATEMENT_MS;
    s->conn_vals[0] = FL_PG_CONNECT_TIMEOUT;
    s->conn_vals[1] = FL_PG_KEEPALIVE_IDLE;
    s->conn_vals[2] = FL_PG_KEEPALIVE_INTERVAL;
    s->conn_vals[3] = FL_PG_KEEPALIVE_COUNT;
    s->conn_vals[4] = FL_PG_TCP_USER_TIMEOUT;
    s->conn_vals[CV_APP] = "flingd";
    s->conn_vals[CV_URL] = s->url;
    if (err && errlen)
        err[0] = '\0';
    rc = connect_db(s, err, errlen);
    if (!rc)
        rc = migrate(s, err, errlen);
    if (!rc)
        rc = set_up(s, err, errlen);
    if (!rc)
        rc = lock_node_waiting(s);
    if (rc == -EBUSY)
        fl_store_errf(err, errlen, "node %s: another live session holds this node's lock; is a node of this"
                      " name running? ([store] node must differ per node)", node);
    if (rc) {
        destroy(s);
        return rc;
    }
    notify_changes_awhile(s);
    memcpy(s->listen_vals, s->conn_vals, sizeof s->listen_vals);
    s->listen_vals[CV_APP] = "flingd listener";
    if (fl_pglisten_new(&s->listen, conn_keys, s->listen_vals, channels) < 0) {
        destroy(s);
        fl_store_errf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    fl_log(LOG_INFO, "store: PostgreSQL %s on %s:%s, database %s, as node %s", PQparameterStatus(s->conn, "server_version"),
           PQhost(s->conn), PQport(s->conn), PQdb(s->conn), node);
    *out = s;
    return 0;
}

static void pg_close(void *b)
{
    destroy(b);
}

/* At start a node re-queues only what it owned itself: the running jobs and the deliveries in
 * flight recorded under its node name, which no other live node can have. */
static int pg_recover(void *b, const char *node, int64_t now)
{
    pg_store *s = b;
    pg_args a = { 0 }, d = { 0 };
    PGresult *r;
    int rc;

    arg_text(&d, node);
    if ((rc = run(s, ST_DELIVERY_RECOVER, &d, NULL)))
        return rc;
    arg_int(&a, now);
    arg_text(&a, node);
    if ((rc = run(s, ST_RECOVER, &a, &r)))
        return rc;
    rc = (int)changes(r);
    PQclear(r);
    return rc;
}

/* connect_again opens s's connection again if it was lost (who names it in the one log line
 * of an outage): 0 if it was up, 1 if it is up again, -ENOTCONN while the server is away. */
static int connect_again(pg_store *s, const char *who)
{
    char why[256] = "";

    if (s->ready && PQstatus(s->conn) == CONNECTION_OK)
        return 0;
    if (connect_db(s, why, sizeof why) || set_up(s, why, sizeof why)) {
        if (!s->down)
            fl_log(LOG_ERR, "%s: %s", who, why);
        s->down = 1;
        return -ENOTCONN;
    }
    return 1;
}

/* reconnect brings a lost connection back before a group: -ENOTCONN while the server is away. */
static int reconnect(pg_store *s)
{
    int rc;

    if (!s->ready || PQstatus(s->conn) != CONNECTION_OK)
        atomic_store(&s->unlocked, 1);   /* the session went, and the lock with it */
    if ((rc = connect_again(s, "store")) <= 0)
        return rc;
    /* Claim nothing, ack nothing, until this node holds its lock again: meanwhile its running
     * jobs are other nodes' to re-queue, and its late outcomes will be fenced. */
    if (lock_node(s) < 0) {
        if (!s->down)
            fl_log(LOG_ERR, "store: node %s: its lock is still held by another session", s->node);
        s->down = 1;
        s->ready = 0;
        return -ENOTCONN;
    }
    if (s->down)
        fl_log(LOG_NOTICE, "store: connected to PostgreSQL again");
    atomic_store(&s->unlocked, 0);
    s->down = 0;
    s->last_state[0] = '\0';
    return 0;
}

static int side_connect(pg_store *s);

static int pg_begin(void *b, int64_t now)
{
    pg_store *s = b;
    int rc = s->parent ? side_connect(s) : reconnect(s);

    s->now = now;
    s->changes_len = 0;
    s->begin_due = rc ? NULL : "BEGIN";
    return rc;
}

static int pg_check_alive(void *b)
{
    pg_store *s = b;

    if (PQstatus(s->conn) == CONNECTION_OK)
        return 0;
    if (!s->parent)
        atomic_store(&s->unlocked, 1);
    return -ENOTCONN;
}

static int pg_commit(void *b)
{
    pg_store *s = b;
    int rc = 0;

    if (s->begin_due)
        s->begin_due = NULL;   /* no statement ran: no transaction to commit, no change to notify */
    else
        rc = flush_changes(s, 1);
    if (!rc)
        s->last_state[0] = '\0';
    paused_end(s, !rc);
    return rc;
}

/* A failed statement leaves the transaction aborted; a lost connection leaves none. */
static void pg_rollback(void *b)
{
    pg_store *s = b;

    s->begin_due = NULL;
    paused_end(s, 0);
    if (PQstatus(s->conn) == CONNECTION_OK && PQtransactionStatus(s->conn) != PQTRANS_IDLE)
        exec_text(s, "ROLLBACK", "ROLLBACK");
}

static int pg_check_url(const char *url, char *why, size_t len)
{
    char *msg = NULL;
    PQconninfoOption *opts = PQconninfoParse(url, &msg);

    if (!opts) {
        char *nl;
        snprintf(why, len, "not a libpq connection string or URI: %s", msg ? msg : "out of memory");
        if ((nl = strchr(why, '\n')))
            *nl = '\0';
        PQfreemem(msg);
        return -EINVAL;
    }
    PQconninfoFree(opts);
    return 0;
}

/* ---- readers (store.c's reader threads: one thread per reader) ---------------------------- */

/* open_side opens a connection beside the writer's b, for a reader or a second writer: the
 * role names it in the log, app in pg_stat_activity. */
static int open_side(void *b, void **out, const char *role, const char *app, char *err, size_t errlen)
{
    pg_store *w = b, *s = pg_new(w->url);
    int rc;

    *out = NULL;
    if (!s) {
        fl_store_errf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    s->parent = w;
    s->node = w->node;
    s->durability_full = w->durability_full;
    s->statement_ms = w->statement_ms;
    memcpy(s->conn_vals, w->conn_vals, sizeof s->conn_vals);
    s->role = role;
    s->conn_vals[CV_APP] = app;   /* pg_stat_activity tells the readers from the writers */
    s->conn_vals[CV_URL] = s->url;
    rc = connect_db(s, err, errlen);
    if (!rc)
        rc = set_up(s, err, errlen);
    if (rc) {
        destroy(s);
        return rc;
    }
    s->next = w->readers;
    w->readers = s;
    *out = s;
    return 0;
}

static int pg_reader_open(void *b, void **out, char *err, size_t errlen)
{
    return open_side(b, out, "store reader", "flingd reader", err, errlen);
}

/* A second writer runs only submits (store.c), which need no lock to be durable; it still
 * commits none while the node's lock is not held (side_connect), so that a node whose session
 * is gone answers every submit 503 (docs/scaling.md). */
static int pg_writer_open(void *b, void **out, char *err, size_t errlen)
{
    int rc = open_side(b, out, "store writer", "flingd writer", err, errlen);

    if (!rc)
        ((pg_store *)*out)->writes = 1;
    return rc;
}

/* side_connect brings a reader's or a second writer's lost connection back before a read or a
 * group: -ENOTCONN while the server is away (the read or the group fails; the next one tries
 * again). Neither holds a lock: a reader only reads what is committed; a writer waits, failing
 * its groups, while the first writer has not got the node's lock back. */
static int side_connect(pg_store *s)
{
    int rc;

    if (s->writes && atomic_load(&s->parent->unlocked))
        return -ENOTCONN;
    rc = connect_again(s, s->role);

    if (rc <= 0)
        return rc;
    if (s->down)
        fl_log(LOG_NOTICE, "%s: connected to PostgreSQL again", s->role);
    s->down = 0;
    s->last_state[0] = '\0';
    return 0;
}

/* reader_get reads a job and its deliveries in one snapshot: a read-only transaction whose
 * BEGIN goes with the job's statement and COMMIT with the deliveries' (two round trips, as
 * two statements alone). A job not found, or a failure, ends it with a ROLLBACK. */
static int reader_get(pg_store *s, fl_store_op *op)
{
    int rc;

    if (op->u.get.ids || op->u.get.with_payload)
        return pg_get(s, op);   /* one statement */
    s->begin_due = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";
    rc = pg_get(s, op);
    pg_rollback(s);   /* only if still open */
    return rc;
}

/* pg_reader_run: each read is one statement in its own snapshot of what is committed, but a
 * GET with its deliveries (reader_get). */
static int pg_reader_run(void *reader, fl_store_op *op)
{
    pg_store *s = reader;
    int rc = side_connect(s);

    if (rc)
        return rc;
    switch (op->kind) {
    case FL_STORE_GET: return reader_get(s, op);
    case FL_STORE_LIST: return pg_list(s, op);
    case FL_STORE_COUNT: return pg_count(s, op);
    case FL_STORE_CHANGED: return pg_changed(s, op);
    default: return -EINVAL;
    }
}

/* pg_side_close frees a reader or a second writer. */
static void pg_side_close(void *reader)
{
    pg_store *s = reader, **p = &s->parent->readers;

    while (*p && *p != s)
        p = &(*p)->next;
    if (*p)
        *p = s->next;
    destroy(s);
}

const fl_store_backend fl_store_pg = {
    .name = "postgres",
    .check_url = pg_check_url,
    .watch = pg_watch,
    .wake = pg_wake,
    .follow = pg_follow,
    .shared_stats = pg_shared_stats,
    .open = pg_open,
    .close = pg_close,
    .recover = pg_recover,
    .begin = pg_begin,
    .check_alive = pg_check_alive,
    .commit = pg_commit,
    .rollback = pg_rollback,
    .submit = pg_submit,
    .submit_many = pg_submit_many,
    .submit_commit = pg_submit_commit,
    .get = pg_get,
    .list = pg_list,
    .cancel = pg_cancel,
    .set_status = pg_set_status,
    .claim = pg_claim,
    .finish = pg_finish,
    .finish_many = pg_finish_many,
    .count = pg_count,
    .changed = pg_changed,
    .delivery_take = pg_delivery_take,
    .delivery_done = pg_delivery_done,
    .pause = pg_pause,
    .retry = pg_retry,
    .prune = pg_prune,
    .sweep = pg_sweep,
    .last_key = pg_last_key,
    .add_delivery = pg_add_delivery,
    .reader_open = pg_reader_open,
    .reader_run = pg_reader_run,
    .reader_close = pg_side_close,
    .writer_open = pg_writer_open,
    .writer_close = pg_side_close,
};
