/* test_mirror.c — the Redis status mirror with a real flingd and a real redis-server: the hash,
 * counts and events follow a job; Redis stopped while jobs run, then back on the same port, and
 * the mirror catches up from the store; a wrong password is one clear log line and the daemon
 * keeps working; a database number, a password, an ACL user and a Unix socket URL are honoured; a server
 * that never answers is given up on after the connect timeout, one that stops answering after the
 * reply timeout; a SCRIPT FLUSH is repaired; refused writes back off quietly. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fling.h"
#include "harness.h"

/* Every wait is bounded by this; the back-off never exceeds 5 s, so 10 s covers a reconnect. */
#define WAIT_MS 10000

static flh_redis R;
static flh_daemon D;

static int setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    int rc = D.pid > 0 ? flh_stop(&D) : 0;
    flh_redis_stop(&R);
    memset(&D, 0, sizeof D);
    return rc;
}

/* start_daemon starts flingd mirroring to url with prefix, plus a noop type "quick". */
static void start_daemon(const char *url, const char *prefix)
{
    char conf[1024];
    snprintf(conf, sizeof conf, "[redis]\nurl = %s\nprefix = %s\nretention = 600\n[type.quick]\nhandler = noop\n",
             url, prefix);
    assert_int_equal(flh_start(&D, conf), 0);
}

static void submit(const char *type, const char *payload, char id[24])
{
    fling_client *c = fling_client_new(D.url, NULL);
    assert_non_null(c);
    fling_response r = { 0 };
    assert_int_equal(fling_submit(c, type, payload, strlen(payload), NULL, &r), 0);
    snprintf(id, 24, "%s", r.id);
    fling_response_clear(&r);
    fling_client_free(c);
}

/* start_mirrored starts a redis-server without a password and a flingd mirroring into it, and
 * waits until the mirror is connected. */
static void start_mirrored(void)
{
    assert_int_equal(flh_redis_start(&R, NULL), 0);
    start_daemon(R.url, "fling:");
    assert_int_equal(flh_wait_metric(&D, "fling_redis_connected", 1, WAIT_MS / 1000.0), 1);
}

/* redis_do runs one command on a fresh connection to R (database 0) and drops its reply. */
static void redis_do(const char *command)
{
    redisContext *c = flh_redis_connect(&R, 0);
    assert_non_null(c);
    redisReply *rep = redisCommand(c, command);
    assert_non_null(rep);
    freeReplyObject(rep);
    redisFree(c);
}

/* count_state counts the store's jobs in state through GET /v1/jobs (one page is enough here). */
static long count_state(const char *st)
{
    char path[96];
    snprintf(path, sizeof path, "/v1/jobs?state=%s&limit=1000", st);
    json_t *body = NULL;
    long n = flh_http(&D, "GET", path, &body) == 200 ? (long)json_array_size(json_object_get(body, "jobs")) : -1;
    json_decref(body);
    return n;
}

static long wait_state_count(const char *st, long want)
{
    long n = -1;
    for (double end = flh_now() + WAIT_MS / 1000.0; flh_now() < end; usleep(20000))
        if ((n = count_state(st)) == want)
            break;
    return n;
}

/* hget copies field of hash key into buf ("" when absent); 1 if the field exists. */
static int hget(redisContext *c, const char *key, const char *field, char *buf, size_t len)
{
    redisReply *rep = redisCommand(c, "HGET %s %s", key, field);
    assert_non_null(rep);
    int found = rep->type == REDIS_REPLY_STRING;
    snprintf(buf, len, "%s", found ? rep->str : "");
    freeReplyObject(rep);
    return found;
}

static long long command_int(redisContext *c, const char *fmt, const char *arg)
{
    redisReply *rep = redisCommand(c, fmt, arg);
    assert_non_null(rep);
    assert_int_equal(rep->type, REDIS_REPLY_INTEGER);
    long long v = rep->integer;
    freeReplyObject(rep);
    return v;
}

static long count_field(redisContext *c, const char *key, const char *field)
{
    char buf[32];
    return hget(c, key, field, buf, sizeof buf) ? atol(buf) : -1;
}

static int wait_log(const char *s)
{
    int n = 0;
    for (double end = flh_now() + WAIT_MS / 1000.0; flh_now() < end && (n = flh_log_count(&D, s)) < 1; usleep(20000))
        ;
    return n;
}

/* is_rfc3339_ms tells whether s looks like "2026-12-01T21:00:00.123Z". */
static int is_rfc3339_ms(const char *s)
{
    return strlen(s) == 24 && s[4] == '-' && s[10] == 'T' && s[19] == '.' && s[23] == 'Z';
}

/* next_event reads the next message on a subscribed connection; returns its JSON (caller decrefs). */
static json_t *next_event(redisContext *sub)
{
    void *r = NULL;
    assert_int_equal(redisGetReply(sub, &r), REDIS_OK);
    redisReply *rep = r;
    assert_int_equal(rep->type, REDIS_REPLY_ARRAY);
    assert_int_equal(rep->elements, 3);
    assert_string_equal(rep->element[0]->str, "message");
    assert_string_equal(rep->element[1]->str, "fling:events");
    json_t *ev = json_loads(rep->element[2]->str, 0, NULL);
    assert_non_null(ev);
    freeReplyObject(rep);
    return ev;
}

static const char *jstr(json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

/* start_watched starts a mirrored daemon, a connection subscribed to fling:events (*sub) and
 * a plain one (*c) to R. */
static void start_watched(redisContext **sub, redisContext **c)
{
    start_mirrored();
    *sub = flh_redis_connect(&R, 0);
    *c = flh_redis_connect(&R, 0);
    assert_non_null(*sub);
    assert_non_null(*c);
    redisReply *rep = redisCommand(*sub, "SUBSCRIBE fling:events");
    assert_non_null(rep);
    freeReplyObject(rep);
}

static void hash_counts_and_events_follow_a_job(void **state)
{
    (void)state;
    redisContext *sub, *c;
    start_watched(&sub, &c);

    char id[24], key[64], v[64];
    submit("t", "1", id);   /* the built-in sleep: a second in state running */
    snprintf(key, sizeof key, "fling:job:%s", id);

    json_t *ev = next_event(sub);
    assert_string_equal(jstr(ev, "id"), id);
    assert_string_equal(jstr(ev, "event"), "submitted");
    assert_string_equal(jstr(ev, "state"), "queued");
    json_decref(ev);
    ev = next_event(sub);
    assert_string_equal(jstr(ev, "event"), "started");
    assert_string_equal(jstr(ev, "state"), "running");
    json_decref(ev);
    /* The script published after it wrote: the hash says running, and lives on while not terminal. */
    hget(c, key, "state", v, sizeof v);
    assert_string_equal(v, "running");
    assert_int_equal(command_int(c, "TTL %s", key), -1);
    assert_int_equal(count_field(c, "fling:counts", "running"), 1);
    assert_int_equal(count_field(c, "fling:counts", "queued"), 0);

    ev = next_event(sub);
    assert_string_equal(jstr(ev, "event"), "succeeded");
    assert_string_equal(jstr(ev, "state"), "succeeded");
    assert_true(is_rfc3339_ms(jstr(ev, "updated_at")));
    json_decref(ev);

    static const struct { const char *field, *want; } fields[] = {
        { "id", NULL }, { "type", "t" }, { "state", "succeeded" }, { "status", "0" }, { "attempts", "1" },
        { "max_attempts", "3" }, { "exit_code", "" }, { "error", "" },
    };
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        assert_true(hget(c, key, fields[i].field, v, sizeof v));
        assert_string_equal(v, fields[i].want ? fields[i].want : id);
    }
    const char *times[] = { "created_at", "started_at", "finished_at", "updated_at" };
    for (size_t i = 0; i < 4; i++) {
        hget(c, key, times[i], v, sizeof v);
        assert_true(is_rfc3339_ms(v));
    }
    long long ttl = command_int(c, "TTL %s", key);
    assert_true(ttl > 590 && ttl <= 600);
    assert_int_equal(count_field(c, "fling:counts", "succeeded"), 1);
    assert_int_equal(count_field(c, "fling:counts", "running"), 0);
    assert_int_equal(count_field(c, "fling:counts", "queued"), 0);
    assert_true(count_field(c, "fling:mirror", "synced_at") > 0);
    assert_true(flh_metric(&D, "fling_redis_writes_total") >= 3);
    assert_int_equal(flh_metric(&D, "fling_redis_dropped_total"), 0);
    redisFree(sub);
    redisFree(c);
}

/* mirror_has checks that n jobs 1..n have hashes in state st and counts say n in st. */
static int mirror_has(redisContext *c, int n, const char *st)
{
    if (count_field(c, "fling:counts", st) != n)
        return 0;
    for (int i = 1; i <= n; i++) {
        char key[64], v[32];
        snprintf(key, sizeof key, "fling:job:%d", i);
        if (!hget(c, key, "state", v, sizeof v) || strcmp(v, st) != 0)
            return 0;
    }
    return 1;
}

static void catches_up_after_redis_restart(void **state)
{
    (void)state;
    enum { N = 50 };
    start_mirrored();

    flh_redis_kill(&R);
    for (int i = 0; i < N; i++) {
        char id[24];
        submit("quick", "", id);
    }
    assert_int_equal(wait_state_count("succeeded", N), N);
    assert_int_equal(flh_metric(&D, "fling_redis_connected"), 0);
    assert_true(flh_metric(&D, "fling_redis_dropped_total") >= 3 * N);   /* submitted, started, succeeded */
    /* One line for the outage, however many retries and jobs. */
    assert_int_equal(flh_log_count(&D, "redis: lost the connection"), 1);
    assert_int_equal(flh_log_count(&D, "redis: cannot connect"), 0);

    assert_int_equal(flh_redis_restart(&R), 0);   /* same port, empty: no persistence */
    double t0 = flh_now();
    redisContext *c = flh_redis_connect(&R, 0);
    assert_non_null(c);
    int ok = 0;
    while (!(ok = mirror_has(c, N, "succeeded")) && flh_now() - t0 < WAIT_MS / 1000.0)
        usleep(20000);
    assert_true(ok);
    print_message("mirror caught up %d jobs %.2f s after Redis came back\n", N, flh_now() - t0);
    /* The hashes can be whole before the catch-up's last step (the counts, replaced in one
     * MULTI) is acknowledged; its log line comes after that reply. */
    assert_int_equal(wait_log(" is back; mirror in sync"), 1);
    const char *others[] = { "queued", "scheduled", "running", "failed", "cancelled" };
    for (size_t i = 0; i < 5; i++)
        assert_int_equal(count_field(c, "fling:counts", others[i]), 0);
    assert_int_equal(flh_metric(&D, "fling_redis_connected"), 1);
    redisFree(c);
}

static void wrong_password_is_one_log_line(void **state)
{
    (void)state;
    assert_int_equal(flh_redis_start(&R, "s3cret"), 0);
    char url[128];
    snprintf(url, sizeof url, "redis://:wrong@127.0.0.1:%d/0", R.port);
    start_daemon(url, "fling:");
    assert_int_equal(wait_log("redis: authentication failed: "), 1);

    for (int i = 0; i < 3; i++) {
        char id[24];
        submit("quick", "", id);
    }
    assert_int_equal(wait_state_count("succeeded", 3), 3);
    /* Retries go on (back-off from 0.1 s), silently. */
    for (double end = flh_now() + WAIT_MS / 1000.0; flh_now() < end; usleep(50000))
        if (flh_metric(&D, "fling_redis_errors_total") >= 3)
            break;
    assert_true(flh_metric(&D, "fling_redis_errors_total") >= 3);
    assert_int_equal(flh_log_count(&D, "redis: authentication failed: "), 1);
    assert_int_equal(flh_metric(&D, "fling_redis_connected"), 0);
    assert_true(flh_metric(&D, "fling_redis_dropped_total") >= 9);
    redisContext *c = flh_redis_connect(&R, 0);
    assert_non_null(c);
    redisReply *rep = redisCommand(c, "DBSIZE");
    assert_int_equal(rep->integer, 0);
    freeReplyObject(rep);
    redisFree(c);
}

/* one_job_mirrored runs a noop job and checks its hash lands in db under prefix (and not in db 0). */
static void one_job_mirrored(int db, const char *prefix)
{
    char id[24], key[96], v[32];
    submit("quick", "", id);
    snprintf(key, sizeof key, "%sjob:%s", prefix, id);
    redisContext *c = flh_redis_connect(&R, db), *c0 = flh_redis_connect(&R, 0);
    assert_non_null(c);
    assert_non_null(c0);
    int ok = 0;
    for (double end = flh_now() + WAIT_MS / 1000.0; flh_now() < end; usleep(20000))
        if ((ok = hget(c, key, "state", v, sizeof v) && strcmp(v, "succeeded") == 0))
            break;
    assert_true(ok);
    if (db != 0)
        assert_int_equal(command_int(c0, "EXISTS %s", key), 0);
    redisFree(c);
    redisFree(c0);
}

static void db_number_password_user_and_unix_socket(void **state)
{
    (void)state;
    assert_int_equal(flh_redis_start(&R, "pw"), 0);
    char url[256];
    snprintf(url, sizeof url, "redis://:pw@127.0.0.1:%d/3", R.port);
    start_daemon(url, "fling:");
    assert_int_equal(flh_wait_metric(&D, "fling_redis_connected", 1, WAIT_MS / 1000.0), 1);
    one_job_mirrored(3, "fling:");
    assert_int_equal(flh_stop(&D), 0);

    snprintf(url, sizeof url, "unix:%s?db=5&password=pw", R.sock);
    start_daemon(url, "other:");
    assert_int_equal(flh_wait_metric(&D, "fling_redis_connected", 1, WAIT_MS / 1000.0), 1);
    one_job_mirrored(5, "other:");
    assert_int_equal(flh_log_count(&D, "redis: mirroring to unix:"), 1);
    assert_int_equal(flh_stop(&D), 0);

    /* An ACL user: AUTH with user and password. */
    redisContext *c = flh_redis_connect(&R, 0);
    assert_non_null(c);
    redisReply *rep = redisCommand(c, "ACL SETUSER bob on >bobpw ~* &* +@all");
    assert_non_null(rep);
    assert_int_equal(rep->type, REDIS_REPLY_STATUS);
    freeReplyObject(rep);
    redisFree(c);
    snprintf(url, sizeof url, "redis://bob:bobpw@127.0.0.1:%d/2", R.port);
    start_daemon(url, "fling:");
    assert_int_equal(flh_wait_metric(&D, "fling_redis_connected", 1, WAIT_MS / 1000.0), 1);
    one_job_mirrored(2, "fling:");
}

/* A server that completes TCP handshakes (the kernel does, from the backlog) but never answers:
 * the connect timeout must give up on it, and jobs must not notice. */
static void silent_server_times_out(void **state)
{
    (void)state;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof a;
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 64), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    char url[64], id[24];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", ntohs(a.sin_port));
    double t0 = flh_now();
    start_daemon(url, "fling:");
    submit("quick", "", id);
    assert_int_equal(wait_state_count("succeeded", 1), 1);
    assert_int_equal(wait_log("redis: no answer from 127.0.0.1:"), 1);
    double waited = flh_now() - t0;
    assert_true(waited > 1.5 && waited < 4.0);   /* the 2 s bound, not the kernel's minutes */
    assert_int_equal(flh_metric(&D, "fling_redis_connected"), 0);
    close(fd);
}

/* SCRIPT FLUSH behind the daemon's back: the next write gets NOSCRIPT, and the mirror reloads
 * the script and repairs what it missed. */
static void script_flush_is_repaired(void **state)
{
    (void)state;
    start_mirrored();
    redis_do("SCRIPT FLUSH");
    one_job_mirrored(0, "fling:");
    assert_int_equal(flh_log_count(&D, "redis: the mirror script is gone"), 1);
    assert_int_equal(flh_wait_metric(&D, "fling_redis_connected", 1, WAIT_MS / 1000.0), 1);
}

/* wait_lines waits (bounded) until D's log holds n lines with s; returns how many it holds. */
static int wait_lines(const char *s, int n)
{
    int got = 0;
    for (double end = flh_now() + WAIT_MS / 1000.0; flh_now() < end && (got = flh_log_count(&D, s)) < n; usleep(20000))
        ;
    return got;
}

/* A catch-up writes back only the hashes that differ from the store, with a "sync" event each:
 * after a reconnection that missed nothing it writes nothing and publishes nothing; a hash
 * changed behind its back (same state, another status) is written back. */
static void catch_up_writes_only_what_differs(void **state)
{
    (void)state;
    redisContext *sub, *c;
    redisReply *rep;
    start_watched(&sub, &c);
    char id[24], key[64], v[32];
    assert_int_equal(wait_lines(", 0 re-applied", 1), 1);   /* the first connection's, of no job */
    submit("t", "6", id);   /* running for the whole test: every catch-up reads it */
    snprintf(key, sizeof key, "fling:job:%s", id);
    json_t *ev = next_event(sub);
    assert_string_equal(jstr(ev, "event"), "submitted");
    json_decref(ev);
    ev = next_event(sub);
    assert_string_equal(jstr(ev, "event"), "started");
    json_decref(ev);

    rep = redisCommand(c, "CLIENT KILL TYPE normal SKIPME yes");   /* the mirror's connection */
    freeReplyObject(rep);
    assert_int_equal(wait_lines(", 0 re-applied", 2), 2);
    assert_int_equal(flh_log_count(&D, "(1 job(s) read, 0 re-applied"), 1);

    rep = redisCommand(c, "HSET %s status 99", key);
    freeReplyObject(rep);
    rep = redisCommand(c, "CLIENT KILL TYPE normal SKIPME yes");
    freeReplyObject(rep);
    assert_int_equal(wait_lines("(1 job(s) read, 1 re-applied", 1), 1);
    assert_true(hget(c, key, "status", v, sizeof v));
    assert_string_equal(v, "0");
    ev = next_event(sub);   /* the first since "started": the catch-up before published nothing */
    assert_string_equal(jstr(ev, "id"), id);
    assert_string_equal(jstr(ev, "event"), "sync");
    assert_string_equal(jstr(ev, "state"), "running");
    json_decref(ev);
    redisFree(sub);
    redisFree(c);
}

/* A Redis that stops answering while connected (SIGSTOP: no RST, as in a partition) is declared
 * dead after the reply timeout; once it answers again the mirror catches up. */
static void frozen_redis_is_dropped_then_repaired(void **state)
{
    (void)state;
    start_mirrored();
    kill(R.pid, SIGSTOP);
    char id[24];
    submit("quick", "", id);
    assert_int_equal(wait_state_count("succeeded", 1), 1);
    long lag = 0;   /* whole seconds: flh_metric reads an integer */
    for (double end = flh_now() + WAIT_MS / 1000.0; flh_now() < end && lag < 1; usleep(50000))
        lag = flh_metric(&D, "fling_redis_lag_seconds");
    assert_true(lag >= 1);
    assert_int_equal(wait_log("redis: no reply from"), 1);
    assert_int_equal(flh_metric(&D, "fling_redis_connected"), 0);
    kill(R.pid, SIGCONT);
    one_job_mirrored(0, "fling:");
    char key[64], v[32];
    snprintf(key, sizeof key, "fling:job:%s", id);
    redisContext *c = flh_redis_connect(&R, 0);
    assert_non_null(c);
    assert_true(hget(c, key, "state", v, sizeof v));
    assert_string_equal(v, "succeeded");
    assert_int_equal(count_field(c, "fling:counts", "succeeded"), 2);
    redisFree(c);
}

/* A Redis that takes connections but refuses writes (maxmemory reached): one log line, quiet
 * back-off instead of a reconnect loop, and a catch-up once it accepts writes again. */
static void failing_writes_back_off_quietly(void **state)
{
    (void)state;
    start_mirrored();
    /* the first catch-up's writes are done: a MULTI in flight would fail as EXECABORT */
    assert_int_equal(wait_log("mirror in sync"), 1);
    redis_do("CONFIG SET maxmemory 1");
    char id[24];
    submit("quick", "", id);
    assert_int_equal(wait_log("failed: OOM"), 1);
    usleep(1500000);   /* several reconnects, each failing again in its catch-up */
    assert_true(flh_metric(&D, "fling_redis_errors_total") >= 3);
    assert_int_equal(flh_log_count(&D, "failed: OOM"), 1);
    assert_int_equal(flh_log_count(&D, "mirror in sync"), 1);   /* the first connect's only */
    redis_do("CONFIG SET maxmemory 0");
    assert_int_equal(wait_log(" is back; mirror in sync"), 1);
    redisContext *c = flh_redis_connect(&R, 0);
    assert_non_null(c);
    char key[64], v[32];
    snprintf(key, sizeof key, "fling:job:%s", id);
    assert_true(hget(c, key, "state", v, sizeof v));
    assert_string_equal(v, "succeeded");
    redisFree(c);
}

/* `fling watch` prints a job's events as flingd mirrors them; `fling status --redis` reads it. */
static void fling_watch_and_status_read_the_mirror(void **state)
{
    (void)state;
    start_mirrored();
    char *watch[] = { "fling", "watch", "--json", "--type", "quick", "--count", "3", "--redis", R.url, NULL };
    flh_child ch;
    assert_int_equal(flh_cli_spawn(&ch, watch, NULL), 0);
    redisContext *c = flh_redis_connect(&R, 0);
    assert_non_null(c);
    long subs = 0;
    for (double end = flh_now() + WAIT_MS / 1000.0; subs < 1 && flh_now() < end; usleep(20000)) {
        redisReply *rep = redisCommand(c, "PUBSUB NUMSUB fling:events");
        assert_non_null(rep);
        subs = rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 ? (long)rep->element[1]->integer : 0;
        freeReplyObject(rep);
    }
    assert_int_equal(subs, 1);
    redisFree(c);

    char other[24], id[24];
    submit("t", "0", other);   /* another type: filtered out */
    submit("quick", "", id);
    flh_cli r;
    assert_int_equal(flh_cli_finish(&ch, &r, WAIT_MS), 0);
    assert_int_equal(r.status, 0);
    const char *want[] = { "submitted", "started", "succeeded" };
    char *line = r.out;
    for (int i = 0; i < 3; i++) {
        char *nl = strchr(line, '\n');
        assert_non_null(nl);
        *nl = '\0';
        json_t *ev = json_loads(line, 0, NULL);
        assert_non_null(ev);
        assert_string_equal(jstr(ev, "id"), id);
        assert_string_equal(jstr(ev, "event"), want[i]);
        json_decref(ev);
        line = nl + 1;
    }

    char *status[] = { "fling", "status", id, "--redis", R.url, NULL };
    assert_int_equal(flh_cli_run(&r, status, NULL, WAIT_MS), 0);
    assert_int_equal(r.status, 0);
    json_t *job = json_loads(r.out, 0, NULL);
    assert_non_null(job);
    assert_string_equal(jstr(job, "state"), "succeeded");
    assert_string_equal(jstr(job, "id"), id);
    json_decref(job);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(hash_counts_and_events_follow_a_job, teardown),
        cmocka_unit_test_teardown(fling_watch_and_status_read_the_mirror, teardown),
        cmocka_unit_test_teardown(catches_up_after_redis_restart, teardown),
        cmocka_unit_test_teardown(wrong_password_is_one_log_line, teardown),
        cmocka_unit_test_teardown(db_number_password_user_and_unix_socket, teardown),
        cmocka_unit_test_teardown(silent_server_times_out, teardown),
        cmocka_unit_test_teardown(script_flush_is_repaired, teardown),
        cmocka_unit_test_teardown(catch_up_writes_only_what_differs, teardown),
        cmocka_unit_test_teardown(frozen_redis_is_dropped_then_repaired, teardown),
        cmocka_unit_test_teardown(failing_writes_back_off_quietly, teardown),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
