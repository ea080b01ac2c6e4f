/* mirror.c — the Redis status mirror of mirror.h: one hiredis async connection on the libev
 * loop (connect with a timeout, handshake, back-off), the Lua script that applies one change,
 * and the catch-up from the store after every (re)connect.
 *
 * Ownership of the hiredis context: m->ac is set to NULL *before* we ask hiredis to free it, and
 * hiredis's callbacks compare against m->ac, so a callback fired by our own free (pending
 * replies come back NULL, the disconnect callback runs) does nothing but release its command.
 * The context is never freed from hiredis's connect or disconnect callbacks (hiredis 0.14 frees
 * it itself right after them); from reply callbacks redisAsyncFree is deferred by hiredis until
 * the callback has returned (REDIS_IN_CALLBACK). */
#include "mirror.h"

#include <errno.h>
#include <ev.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <hiredis/adapters/libev.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backoff.h"
#include "list.h"
#include "log.h"
#include "rediskeys.h"
#include "redisurl.h"

/* Connect plus handshake (AUTH, SELECT, SCRIPT LOAD, the watermark) must finish within this:
 * a Redis that accepts but does not answer (stopped, overloaded) counts as down. */
#define FL_MIRROR_CONNECT_TIMEOUT 2.0
/* A connection whose oldest write has waited this long for its reply is declared dead (a
 * stopped Redis or a partition sends no RST): writes would only pile up in hiredis's buffer. */
#define FL_MIRROR_REPLY_TIMEOUT 5.0
/* Reconnect back-off: the first retry comes soon (a restart is quick), then doubles up to a
 * cap that keeps a long outage cheap and still notices the recovery within seconds. */
#define FL_MIRROR_BACKOFF_MIN 0.1
#define FL_MIRROR_BACKOFF_MAX 5.0
/* updated_at comes from the store's writer-thread clock: a catch-up starts this much before
 * the watermark so that a small clock step back cannot hide a change. */
#define FL_MIRROR_CLOCK_SLACK_MS 5000
/* Jobs per catch-up page. One page's commands are in flight at a time, which bounds hiredis's
 * output buffer (under 1 KiB per job) however long the outage was. */
#define FL_MIRROR_PAGE 500
#define FL_MIRROR_KEY_MAX FL_PROTO_REDIS_KEY_MAX
/* EVALSHA sha numkeys, 3 keys, 6 plain ARGV, then the field/value pairs of the job's hash. */
#define FL_MIRROR_ARGC_HEAD 12
#define FL_MIRROR_ARGC (FL_MIRROR_ARGC_HEAD + 2 * FL_PROTO_REDIS_FIELDS)

/* KEYS: the job's hash, {prefix}counts, {prefix}mirror. ARGV: the new state, the TTL in seconds
 * (0 = not terminal: PERSIST), the channel, the event JSON, updated_at in ms, "1" for a
 * catch-up's write ("" for a change), then the hash's field/value pairs. Counts move only when
 * the hash's old state differs from the new one, so applying the same change twice leaves them
 * right; synced_at only ever rises. A catch-up's write that finds every field of the hash as
 * it would write it changes nothing and publishes nothing (0): the catch-up tells of the jobs
 * the mirror had missed, not of every job it read. */
static const char mirror_script[] =
    "if ARGV[6] ~= '' then\n"
    "  local names = {}\n"
    "  for i = 7, #ARGV, 2 do names[#names + 1] = ARGV[i] end\n"
    "  local cur = redis.call('HMGET', KEYS[1], unpack(names))\n"
    "  local same = true\n"
    "  for i = 1, #names do if cur[i] ~= ARGV[6 + 2 * i] then same = false break end end\n"
    "  if same then return 0 end\n"
    "end\n"
    "local old = redis.call('HGET', KEYS[1], '" FL_PROTO_RF_STATE "')\n"
    "if old ~= ARGV[1] then\n"
    "  if old then redis.call('HINCRBY', KEYS[2], old, -1) end\n"
    "  redis.call('HINCRBY', KEYS[2], ARGV[1], 1)\n"
    "end\n"
    "redis.call('HSET', KEYS[1], unpack(ARGV, 7))\n"
    "if ARGV[2] == '0' then redis.call('PERSIST', KEYS[1])\n"
    "else redis.call('EXPIRE', KEYS[1], ARGV[2]) end\n"
    "redis.call('PUBLISH', ARGV[3], ARGV[4])\n"
    "local w = tonumber(redis.call('HGET', KEYS[3], '" FL_PROTO_REDIS_SYNCED_AT "') or '0')\n"
    "if tonumber(ARGV[5]) > w then redis.call('HSET', KEYS[3], '" FL_PROTO_REDIS_SYNCED_AT "', ARGV[5]) end\n"
    "return 1\n";

typedef enum fl_mirror_state {
    FL_MIRROR_DOWN,         /* no connection; retry_timer runs unless stopping */
    FL_MIRROR_CONNECTING,   /* connect or handshake under way; connect_timer runs */
    FL_MIRROR_UP            /* handshake done: changes are sent */
} fl_mirror_state;

/* The handshake's commands, pipelined behind the connect. */
typedef enum fl_mirror_step { FL_STEP_AUTH, FL_STEP_SELECT, FL_STEP_SCRIPT, FL_STEP_WATERMARK } fl_mirror_step;
static const char *const step_names[] = { "AUTH", "SELECT", "SCRIPT LOAD", "HGET synced_at" };
/* Reply privdata must be a pointer: one per step. */
static const fl_mirror_step steps[] = { FL_STEP_AUTH, FL_STEP_SELECT, FL_STEP_SCRIPT, FL_STEP_WATERMARK };

/* One write whose reply we wait for: a change, or the EXEC that ends a catch-up. Kept in send
 * order, which is Redis's reply order, so the head is the oldest (the lag). */
typedef struct fl_mirror_cmd {
    fl_mirror *m;
    fl_list node;           /* in m->inflight */
    unsigned session;       /* m->session when sent: a reply for an older one only counts */
    double sent_at;         /* ev_now when sent */
    int64_t updated_at;     /* the change's updated_at (ms) */
    int is_change;          /* 0 for the count reset's EXEC */
    int last_of_page;       /* the last change of a catch-up page: its reply fetches the next page */
    int is_sync;            /* a catch-up's write: its reply says whether the hash was behind */
} fl_mirror_cmd;

struct fl_mirror {
    struct ev_loop *loop;           /* borrowed */
    fl_store *store;                /* borrowed */
    fl_redis_url url;
    char where[300];                /* "host:port" or "unix:path", for log lines (no password) */
    char *prefix;                   /* owned */
    long retention;                 /* seconds a terminal job's hash lives */
    void (*on_idle)(void *arg);
    void *idle_arg;

    redisAsyncContext *ac;          /* NULL while down; see the note at the top */
    fl_mirror_state state;
    unsigned session;               /* bumped per connection: older replies are stale */
    char sha[41];                   /* the script's SHA1, from SCRIPT LOAD */
    ev_timer connect_timer;         /* bounds connect + handshake */
    ev_timer reply_timer;           /* while up: checks the oldest write's age every second */
    ev_timer retry_timer;           /* the back-off before the next connect */
    int retries;                    /* connects failed in a row: the back-off's attempt */
    int outage_logged;              /* a failure was logged: quiet until the mirror is in sync again */
    int ever_connected;
    int hold;                       /* fl_mirror_hold_catch_up: a connection's catch-up waits (as a
                                     * loss from its watermark on) for fl_mirror_release_catch_up */
    int stopping;

    fl_list inflight;               /* fl_mirror_cmd, oldest first */
    int has_lost;                   /* a change missed Redis since the last catch-up began */
    int catching_up;                /* from catchup_begin to catchup_done on this connection */
    int64_t lost_since;             /* the oldest such change's updated_at */

    /* Catch-up: one store op at a time (CHANGED pages, then COUNT). */
    fl_store_op op;
    int op_busy;                    /* op is in the store */
    unsigned op_session;            /* the session op was pushed for */
    int catchup_waiting;            /* this session's catch-up waits for a stale op to come back */
    int64_t sync_since, sync_after;
    size_t sync_jobs, sync_applied;   /* jobs a catch-up read, and wrote because Redis was behind */
    double sync_started;

    uint64_t errors, dropped, writes;
};

static void connect_start(fl_mirror *m);

/* ---- outages ---------------------------------------------------------------------------- */

/* outage counts one failure and logs it, only the first of an outage: a Redis that stays away
 * (or a wrong password) costs one line, not one per retry or per job. */
static void outage(fl_mirror *m, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void outage(fl_mirror *m, int level, const char *fmt, ...)
{
    m->errors++;
    if (m->outage_logged)
        return;
    m->outage_logged = 1;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fl_log(level, "redis: %s (mirror writes are dropped until it is back; retrying)", msg);
}

/* lost_from remembers that the changes from updated_at on may be missing from Redis, for the
 * next catch-up's start. */
static void lost_from(fl_mirror *m, int64_t updated_at)
{
    if (!m->has_lost || updated_at < m->lost_since)
        m->lost_since = updated_at;
    m->has_lost = 1;
}

/* note_lost counts a change that did not reach Redis and remembers it. */
static void note_lost(fl_mirror *m, int64_t updated_at)
{
    m->dropped++;
    lost_from(m, updated_at);
}

static void retry_later(fl_mirror *m)
{
    m->state = FL_MIRROR_DOWN;
    m->catching_up = 0;
    ev_timer_stop(m->loop, &m->connect_timer);
    ev_timer_stop(m->loop, &m->reply_timer);
    if (m->stopping)
        return;
    /* No jitter: one daemon reconnects to one Redis, there is no herd to spread. */
    double delay = fl_backoff_delay(FL_MIRROR_BACKOFF_MIN, FL_MIRROR_BACKOFF_MAX, ++m->retries, 0, NULL);
    ev_timer_set(&m->retry_timer, delay, 0.);
    ev_timer_start(m->loop, &m->retry_timer);
}

/* drop_connection closes the connection (the caller has logged why) and retries later. Replies
 * still pending come back NULL, from here or, inside a reply callback, once it has returned. */
static void drop_connection(fl_mirror *m)
{
    redisAsyncContext *ac = m->ac;
    m->ac = NULL;
    retry_later(m);
    if (ac)
        redisAsyncFree(ac);
}

/* ---- writes in flight -------------------------------------------------------------------- */

static fl_mirror_cmd *cmd_new(fl_mirror *m, int64_t updated_at, int is_change, int last_of_page)
{
    fl_mirror_cmd *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->m = m;
    c->session = m->session;
    c->sent_at = ev_now(m->loop);
    c->updated_at = updated_at;
    c->is_change = is_change;
    c->last_of_page = last_of_page;
    return c;
}

static void cmd_link(fl_mirror_cmd *c) { fl_list_push_tail(&c->m->inflight, &c->node); }

/* oldest returns the write that has waited longest for its reply, or NULL. */
static const fl_mirror_cmd *oldest(const fl_mirror *m)
{
    const fl_list *n = fl_list_first(&m->inflight);
    return n ? fl_list_entry(n, fl_mirror_cmd, node) : NULL;
}

static void catchup_next(fl_mirror *m);
static void catchup_done(fl_mirror *m);

/* write_cb is the reply to a change or to the count reset. An error reply means this
 * connection cannot be trusted to mirror (NOSCRIPT after a SCRIPT FLUSH, a read-only replica,
 * out of memory): reconnecting reloads the script and the catch-up repairs what was missed. */
static void write_cb(redisAsyncContext *ac, void *r, void *privdata)
{
    fl_mirror_cmd *c = privdata;
    fl_mirror *m = c->m;
    redisReply *reply = r;
    int current = c->session == m->session && m->ac == ac && m->state == FL_MIRROR_UP;
    fl_list_remove(&c->node);
    if (!reply || reply->type == REDIS_REPLY_ERROR) {
        if (c->is_change)
            note_lost(m, c->updated_at);
        if (reply && current) {
            if (strncmp(reply->str, "NOSCRIPT", 8) == 0)
                outage(m, LOG_WARNING, "the mirror script is gone from %s (SCRIPT FLUSH?); reloading it", m->where);
            else
                outage(m, LOG_ERR, "write to %s failed: %s", m->where, reply->str);
            drop_connection(m);
        }
    } else {
        m->writes++;
        if (c->is_sync && reply->type == REDIS_REPLY_INTEGER && reply->integer == 1)
            m->sync_applied++;
        if (current && c->last_of_page)
            catchup_next(m);
        else if (current && !c->is_change)
            catchup_done(m);
    }
    free(c);
    if (m->stopping && fl_list_empty(&m->inflight) && m->on_idle)
        m->on_idle(m->idle_arg);
}

/* str_field returns the JSON string member k of o, or "" when it is null or absent. */
static const char *str_field(json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

/* event_json returns the job's event JSON as a compact string (caller frees), and in *obj the
 * object it came from (caller decrefs); NULL on ENOMEM. */
static char *event_json(const fl_job *job, const char *event, json_t **obj)
{
    json_t *o = fl_job_event_json(job, event);
    *obj = o;
    return o ? json_dumps(o, JSON_COMPACT) : NULL;
}

/* send_change queues the script for one job's state: 0, or -ENOMEM (nothing sent). */
static int send_change(fl_mirror *m, const fl_job *job, const char *event, int last_of_page)
{
    json_t *o = NULL;
    char *json = event_json(job, event, &o);
    fl_mirror_cmd *c = json ? cmd_new(m, job->updated_at, 1, last_of_page) : NULL;
    if (!c) {
        free(json);
        json_decref(o);
        return -ENOMEM;
    }
    const char *state = fl_proto_state_name(job->state);
    char key[FL_MIRROR_KEY_MAX], counts[FL_MIRROR_KEY_MAX], mirror[FL_MIRROR_KEY_MAX], channel[FL_MIRROR_KEY_MAX];
    char ttl[24], updated_ms[24], status[16], attempts[16], max_attempts[16], exit_code[16] = "";
    /* The prefix's length is bounded at fl_mirror_new: every key fits. */
    fl_proto_redis_job_key(key, sizeof key, m->prefix, job->id);
    fl_proto_redis_key(counts, sizeof counts, m->prefix, FL_PROTO_REDIS_COUNTS);
    fl_proto_redis_key(mirror, sizeof mirror, m->prefix, FL_PROTO_REDIS_MIRROR);
    fl_proto_redis_key(channel, sizeof channel, m->prefix, FL_PROTO_REDIS_EVENTS);
    snprintf(ttl, sizeof ttl, "%ld", fl_proto_state_terminal(job->state) ? m->retention : 0L);
    snprintf(updated_ms, sizeof updated_ms, "%lld", (long long)job->updated_at);
    snprintf(status, sizeof status, "%d", job->status);
    snprintf(attempts, sizeof attempts, "%d", job->attempts);
    snprintf(max_attempts, sizeof max_attempts, "%d", job->max_attempts);
    if (job->has_exit_code)
        snprintf(exit_code, sizeof exit_code, "%d", job->exit_code);
    /* Times and strings come from the JSON, so the hash and the event always agree. */
    const char *value[FL_PROTO_REDIS_FIELDS] = {
        [FL_PROTO_REDIS_F_ID] = str_field(o, FL_PROTO_RF_ID),
        [FL_PROTO_REDIS_F_TYPE] = str_field(o, FL_PROTO_RF_TYPE),
        [FL_PROTO_REDIS_F_STATE] = state,
        [FL_PROTO_REDIS_F_STATUS] = status,
        [FL_PROTO_REDIS_F_ATTEMPTS] = attempts,
        [FL_PROTO_REDIS_F_MAX_ATTEMPTS] = max_attempts,
        [FL_PROTO_REDIS_F_CREATED_AT] = str_field(o, FL_PROTO_RF_CREATED_AT),
        [FL_PROTO_REDIS_F_STARTED_AT] = str_field(o, FL_PROTO_RF_STARTED_AT),
        [FL_PROTO_REDIS_F_FINISHED_AT] = str_field(o, FL_PROTO_RF_FINISHED_AT),
        [FL_PROTO_REDIS_F_UPDATED_AT] = str_field(o, FL_PROTO_RF_UPDATED_AT),
        [FL_PROTO_REDIS_F_EXIT_CODE] = exit_code,
        [FL_PROTO_REDIS_F_ERROR] = str_field(o, FL_PROTO_RF_ERROR),
    };
    c->is_sync = strcmp(event, FL_PROTO_EVENT_SYNC) == 0;
    const char *argv[FL_MIRROR_ARGC] = {
        "EVALSHA", m->sha, "3", key, counts, mirror, state, ttl, channel, json, updated_ms,
        c->is_sync ? "1" : "",
    };
    for (int f = 0; f < FL_PROTO_REDIS_FIELDS; f++) {
        argv[FL_MIRROR_ARGC_HEAD + 2 * f] = fl_proto_redis_fields[f].name;
        argv[FL_MIRROR_ARGC_HEAD + 2 * f + 1] = value[f];
    }
    int rc = redisAsyncCommandArgv(m->ac, write_cb, c, FL_MIRROR_ARGC, argv, NULL);
    free(json);
    json_decref(o);
    if (rc != REDIS_OK) {
        free(c);
        return -ENOMEM;
    }
    cmd_link(c);
    return 0;
}

void fl_mirror_job_changed(fl_mirror *m, const fl_job *job, const char *event)
{
    if (m->state != FL_MIRROR_UP) {
        note_lost(m, job->updated_at);
        return;
    }
    if (send_change(m, job, event, 0) < 0) {
        note_lost(m, job->updated_at);
        outage(m, LOG_ERR, "cannot queue a write to %s: out of memory", m->where);
        drop_connection(m);
    }
}

/* ---- catch-up ---------------------------------------------------------------------------- */

static void op_cb(fl_store_op *op);

static void push_op(fl_mirror *m, fl_store_kind kind)
{
    m->op_busy = 1;
    m->op_session = m->session;
    if (kind == FL_STORE_CHANGED)
        fl_store_changed(m->store, &m->op, m->sync_since, m->sync_after, FL_MIRROR_PAGE, op_cb, m);
    else
        fl_store_count_jobs(m->store, &m->op, 1, op_cb, m);
}

/* catchup_begin starts bringing the mirror up to date after a handshake: from the watermark
 * (0 = Redis has none: everything a reader could still see, i.e. the retention) or from the
 * oldest change this daemon knows it lost, whichever is earlier, minus the clock slack. */
static int64_t watermark_since(const fl_mirror *m, int64_t watermark)
{
    return watermark > 0 ? watermark : fl_job_now_ms() - (int64_t)m->retention * 1000;
}

static void catchup_begin(fl_mirror *m, int64_t watermark)
{
    int64_t since = watermark_since(m, watermark);
    if (m->has_lost && m->lost_since < since)
        since = m->lost_since;
    m->has_lost = 0;
    m->catching_up = 1;
    m->sync_since = since - FL_MIRROR_CLOCK_SLACK_MS;
    m->sync_after = 0;
    m->sync_jobs = m->sync_applied = 0;
    m->sync_started = ev_now(m->loop);
    /* The store cannot take an op back: a catch-up of a lost connection may still be in it. */
    m->catchup_waiting = m->op_busy;
    if (!m->op_busy)
        push_op(m, FL_STORE_CHANGED);
}

static void catchup_next(fl_mirror *m)
{
    push_op(m, m->sync_after ? FL_STORE_CHANGED : FL_STORE_COUNT);
}

/* catchup_done: the mirror is whole again. Only now does an outage end (log line, back-off
 * reset): a Redis that accepts connections but fails writes (out of memory, read-only) must
 * keep backing off quietly instead of reconnecting and logging ten times a second. */
static void catchup_done(fl_mirror *m)
{
    m->catching_up = 0;
    if (m->has_lost && !m->stopping) {   /* fl_mirror_catch_up asked for more meanwhile */
        catchup_begin(m, m->lost_since);
        return;
    }
    ev_now_update(m->loop);
    double took = ev_now(m->loop) - m->sync_started;
    if (m->outage_logged)
        fl_log(LOG_INFO, "redis: %s is back; mirror in sync (%zu job(s) read, %zu re-applied, in %.3f s)",
               m->where, m->sync_jobs, m->sync_applied, took);
    else
        fl_log(LOG_INFO, "redis: mirror in sync with the store (%zu job(s) read, %zu re-applied, in %.3f s)",
               m->sync_jobs, m->sync_applied, took);
    m->outage_logged = 0;
    m->retries = 0;
}

/* apply_page re-applies one page of changed jobs with event "sync"; the last one's reply asks
 * for the next page, which paces the catch-up to Redis's speed. */
static int apply_page(fl_mirror *m, fl_job **jobs, size_t n, int64_t next)
{
    m->sync_after = next;
    for (size_t i = 0; i < n; i++)
        if (send_change(m, jobs[i], FL_PROTO_EVENT_SYNC, i + 1 == n) < 0)
            return -ENOMEM;
    m->sync_jobs += n;
    if (n == 0)
        catchup_next(m);
    return 0;
}

/* reset_counts replaces {prefix}counts with the store's absolute numbers in one MULTI: live
 * changes reaped before the COUNT are in those numbers, later ones are applied on top. */
static int reset_counts(fl_mirror *m, const fl_store_count *rows, size_t n)
{
    int64_t per[FL_STATE_COUNT] = { 0 };
    for (size_t i = 0; i < n; i++)
        if ((unsigned)rows[i].state < FL_STATE_COUNT)
            per[rows[i].state] += rows[i].n;
    char key[FL_MIRROR_KEY_MAX], num[FL_STATE_COUNT][24];
    const char *argv[2 + 2 * FL_STATE_COUNT] = { "HSET", key };
    fl_proto_redis_key(key, sizeof key, m->prefix, FL_PROTO_REDIS_COUNTS);
    for (int s = 0; s < FL_STATE_COUNT; s++) {
        snprintf(num[s], sizeof num[s], "%lld", (long long)per[s]);
        argv[2 + 2 * s] = fl_proto_state_name((fl_state)s);
        argv[3 + 2 * s] = num[s];
    }
    fl_mirror_cmd *c = cmd_new(m, 0, 0, 0);
    if (!c)
        return -ENOMEM;
    /* MULTI, DEL and HSET answer +OK / QUEUED; a failure among them makes EXEC fail. */
    int rc = redisAsyncCommand(m->ac, NULL, NULL, "MULTI");
    if (rc == REDIS_OK)
        rc = redisAsyncCommand(m->ac, NULL, NULL, "DEL %s", key);
    if (rc == REDIS_OK)
        rc = redisAsyncCommandArgv(m->ac, NULL, NULL, 2 + 2 * FL_STATE_COUNT, argv, NULL);
    if (rc == REDIS_OK)
        rc = redisAsyncCommand(m->ac, write_cb, c, "EXEC");
    if (rc != REDIS_OK) {
        free(c);
        return -ENOMEM;
    }
    cmd_link(c);
    return 0;
}

static void op_cb(fl_store_op *op)
{
    fl_mirror *m = op->udata;
    int current = m->op_session == m->session && m->state == FL_MIRROR_UP && !m->stopping;
    int rc = op->result;
    m->op_busy = 0;
    /* Take the results out first: apply_page may push op again at once. */
    if (op->kind == FL_STORE_CHANGED) {
        fl_job **jobs = op->u.changed.jobs;
        size_t n = op->u.changed.n;
        if (current && rc == 0)
            rc = apply_page(m, jobs, n, op->u.changed.next);
        fl_store_list_free(jobs, n);
    } else {
        fl_store_count *rows = op->u.count.rows;
        if (current && rc == 0)
            rc = reset_counts(m, rows, op->u.count.n);
        free(rows);
    }
    if (current && rc < 0) {
        outage(m, LOG_ERR, "catching up %s failed: %s", m->where, strerror(-rc));
        drop_connection(m);
    } else if (!current && m->catchup_waiting && m->state == FL_MIRROR_UP && !m->stopping) {
        m->catchup_waiting = 0;
        push_op(m, FL_STORE_CHANGED);
    }
}

/* ---- connection and handshake ------------------------------------------------------------ */

static void handshake_done(fl_mirror *m, int64_t watermark)
{
    ev_timer_stop(m->loop, &m->connect_timer);
    ev_timer_again(m->loop, &m->reply_timer);
    m->state = FL_MIRROR_UP;
    if (!m->ever_connected)
        fl_log(LOG_INFO, "redis: mirroring to %s", m->where);
    m->ever_connected = 1;
    if (m->stopping)
        return;
    if (m->hold) {   /* the earliest of every held connection's, until the release */
        lost_from(m, watermark_since(m, watermark));
        return;
    }
    catchup_begin(m, watermark);
}

/* handshake_cb is the reply to one handshake step; the watermark's reply completes it. */
static void handshake_cb(redisAsyncContext *ac, void *r, void *privdata)
{
    fl_mirror *m = ac->data;
    redisReply *reply = r;
    fl_mirror_step step = *(const fl_mirror_step *)privdata;
    if (!reply || m->ac != ac)
        return;   /* the connection is going away; whoever dropped it has logged why */
    if (reply->type == REDIS_REPLY_ERROR) {
        if (step == FL_STEP_AUTH || strncmp(reply->str, "NOAUTH", 6) == 0)
            outage(m, LOG_ERR, "authentication failed: %s", reply->str);
        else
            outage(m, LOG_ERR, "%s on %s failed: %s", step_names[step], m->where, reply->str);
        drop_connection(m);
        return;
    }
    if (step == FL_STEP_SCRIPT) {
        if (reply->type != REDIS_REPLY_STRING || reply->len != sizeof m->sha - 1) {
            outage(m, LOG_ERR, "SCRIPT LOAD on %s gave no SHA1", m->where);
            drop_connection(m);
            return;
        }
        memcpy(m->sha, reply->str, sizeof m->sha - 1);
        m->sha[sizeof m->sha - 1] = '\0';
    } else if (step == FL_STEP_WATERMARK) {
        handshake_done(m, reply->type == REDIS_REPLY_STRING ? strtoll(reply->str, NULL, 10) : 0);
    }
}

/* send_handshake pipelines AUTH, SELECT, SCRIPT LOAD and the watermark's HGET behind the connect:
 * hiredis writes them once the socket is connected. */
static int send_handshake(fl_mirror *m)
{
    redisAsyncContext *ac = m->ac;
    const fl_redis_url *u = &m->url;
    int rc = REDIS_OK;
    if (u->password[0] && u->user[0])
        rc = redisAsyncCommand(ac, handshake_cb, (void *)&steps[FL_STEP_AUTH], "AUTH %s %s", u->user, u->password);
    else if (u->password[0])
        rc = redisAsyncCommand(ac, handshake_cb, (void *)&steps[FL_STEP_AUTH], "AUTH %s", u->password);
    if (rc == REDIS_OK && u->db)
        rc = redisAsyncCommand(ac, handshake_cb, (void *)&steps[FL_STEP_SELECT], "SELECT %d", u->db);
    if (rc == REDIS_OK)
        rc = redisAsyncCommand(ac, handshake_cb, (void *)&steps[FL_STEP_SCRIPT], "SCRIPT LOAD %s", mirror_script);
    if (rc == REDIS_OK)
        rc = redisAsyncCommand(ac, handshake_cb, (void *)&steps[FL_STEP_WATERMARK], "HGET %s" FL_PROTO_REDIS_MIRROR
                               " " FL_PROTO_REDIS_SYNCED_AT, m->prefix);
    return rc == REDIS_OK ? 0 : -ENOMEM;
}

static void connect_cb(const redisAsyncContext *ac, int status)
{
    fl_mirror *m = ac->data;
    if (m->ac != ac || status == REDIS_OK)
        return;   /* connected: the handshake's replies take it from here */
    m->ac = NULL;  /* hiredis frees it when we return */
    outage(m, LOG_WARNING, "cannot connect to %s: %s", m->where, ac->errstr);
    retry_later(m);
}

static void disconnect_cb(const redisAsyncContext *ac, int status)
{
    fl_mirror *m = ac->data;
    if (m->ac != ac)
        return;   /* we dropped it ourselves */
    m->ac = NULL;  /* hiredis frees it when we return */
    outage(m, LOG_WARNING, "lost the connection to %s: %s", m->where,
           status == REDIS_OK ? "closed" : ac->errstr);
    retry_later(m);
}

static void connect_timeout_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    fl_mirror *m = t->data;
    outage(m, LOG_WARNING, "no answer from %s within %.0f s", m->where, FL_MIRROR_CONNECT_TIMEOUT);
    drop_connection(m);
}

static void reply_timeout_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)revents;
    fl_mirror *m = t->data;
    const fl_mirror_cmd *c = oldest(m);
    if (c && ev_now(loop) - c->sent_at > FL_MIRROR_REPLY_TIMEOUT) {
        outage(m, LOG_WARNING, "no reply from %s for %.0f s", m->where, FL_MIRROR_REPLY_TIMEOUT);
        drop_connection(m);
    }
}

static void retry_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    connect_start(t->data);
}

/* open_context starts a non-blocking connect: 0 and m->ac, or a negative errno with m->ac NULL
 * (logged). A numeric address or a Unix socket never blocks; a host name is resolved by
 * hiredis with getaddrinfo, on the loop. */
static int open_context(fl_mirror *m)
{
    redisAsyncContext *ac = m->url.is_unix ? redisAsyncConnectUnix(m->url.path)
                                           : redisAsyncConnect(m->url.host, m->url.port);
    if (!ac) {
        outage(m, LOG_ERR, "cannot connect to %s: out of memory", m->where);
        return -ENOMEM;
    }
    if (ac->err) {
        outage(m, LOG_WARNING, "cannot connect to %s: %s", m->where, ac->errstr);
        redisAsyncFree(ac);
        return -ECONNREFUSED;
    }
    ac->data = m;
    if (redisLibevAttach(m->loop, ac) != REDIS_OK || redisAsyncSetConnectCallback(ac, connect_cb) != REDIS_OK ||
        redisAsyncSetDisconnectCallback(ac, disconnect_cb) != REDIS_OK) {
        outage(m, LOG_ERR, "cannot attach the connection to %s to the loop", m->where);
        redisAsyncFree(ac);
        return -EIO;
    }
    m->ac = ac;
    return 0;
}

static void connect_start(fl_mirror *m)
{
    if (m->stopping)
        return;
    m->session++;
    if (open_context(m) < 0) {
        retry_later(m);
        return;
    }
    m->state = FL_MIRROR_CONNECTING;
    ev_timer_set(&m->connect_timer, FL_MIRROR_CONNECT_TIMEOUT, 0.);
    ev_timer_start(m->loop, &m->connect_timer);
    if (send_handshake(m) < 0) {
        outage(m, LOG_ERR, "cannot queue the handshake for %s: out of memory", m->where);
        drop_connection(m);
    }
}

/* ---- the handle -------------------------------------------------------------------------- */

int fl_mirror_new(fl_mirror **out, struct ev_loop *loop, fl_store *store, const char *url,
                  const char *prefix, long retention, void (*on_idle)(void *arg), void *arg,
                  char *err, size_t errlen)
{
    *out = NULL;
    if (strlen(prefix) > FL_PROTO_REDIS_PREFIX_MAX) {
        snprintf(err, errlen, "[redis] prefix is longer than %d bytes", FL_PROTO_REDIS_PREFIX_MAX);
        return -EINVAL;
    }
    fl_mirror *m = calloc(1, sizeof *m);
    if (!m || !(m->prefix = strdup(prefix))) {
        free(m);
        snprintf(err, errlen, "redis mirror: out of memory");
        return -ENOMEM;
    }
    int rc = fl_redis_url_parse(url, &m->url, err, errlen);
    if (rc < 0) {
        free(m->prefix);
        free(m);
        return rc;
    }
    fl_redis_url_where(&m->url, m->where, sizeof m->where);
    m->loop = loop;
    m->store = store;
    fl_list_init(&m->inflight);
    m->retention = retention;
    m->on_idle = on_idle;
    m->idle_arg = arg;
    ev_init(&m->connect_timer, connect_timeout_cb);
    ev_init(&m->retry_timer, retry_cb);
    ev_init(&m->reply_timer, reply_timeout_cb);
    m->reply_timer.repeat = 1.0;
    m->connect_timer.data = m->retry_timer.data = m->reply_timer.data = m;
    connect_start(m);
    *out = m;
    return 0;
}

int fl_mirror_idle(const fl_mirror *m)
{
    return fl_list_empty(&m->inflight);
}

void fl_mirror_hold_catch_up(fl_mirror *m)
{
    m->hold = 1;
}

/* catch_up_lost starts a catch-up of what may be missing (lost_from) now, unless it is held,
 * one runs already (catchup_done takes the loss next) or the mirror is down (the next
 * connection's catch-up takes it in). */
static void catch_up_lost(fl_mirror *m)
{
    if (m->has_lost && !m->hold && m->state == FL_MIRROR_UP && !m->catching_up && !m->stopping)
        catchup_begin(m, m->lost_since);
}

void fl_mirror_release_catch_up(fl_mirror *m)
{
    m->hold = 0;
    catch_up_lost(m);
}

void fl_mirror_catch_up(fl_mirror *m, int64_t since)
{
    lost_from(m, since);
    catch_up_lost(m);
}

void fl_mirror_stop(fl_mirror *m)
{
    if (m->stopping)
        return;
    m->stopping = 1;
    ev_timer_stop(m->loop, &m->retry_timer);
    if (m->state == FL_MIRROR_CONNECTING)
        drop_connection(m);   /* nothing of ours is in flight on it yet */
}

void fl_mirror_stats_get(const fl_mirror *m, fl_mirror_stats *out)
{
    out->connected = m->state == FL_MIRROR_UP;
    const fl_mirror_cmd *c = oldest(m);
    out->lag_seconds = c ? ev_now(m->loop) - c->sent_at : 0;
    out->errors = m->errors;
    out->dropped = m->dropped;
    out->writes = m->writes;
}

void fl_mirror_free(fl_mirror *m)
{
    if (!m)
        return;
    fl_mirror_stop(m);
    m->on_idle = NULL;   /* the daemon is past waiting for us */
    drop_connection(m);
    ev_timer_stop(m->loop, &m->connect_timer);
    free(m->prefix);
    free(m);
}
