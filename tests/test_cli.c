/* test_cli.c — the fling binary against a real redis-server: status --redis reads the mirror's
 * job hash (TCP and Unix socket, AUTH with a password or a user, SELECT, missing and malformed
 * jobs, Redis down), and watch follows the events channel (--json, the human line, --type,
 * malformed messages, --count, SIGTERM/SIGINT, a lost connection). The test writes the mirror's
 * keys itself, as flingd would. Two redis-servers (one open, one with passwords) run for the
 * whole group, each on a free port in its own temp dir, stopped by PID. */
#include <errno.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "harness.h"

#define CLI_WAIT_MS 5000     /* bound on one run of the CLI */
#define SUBSCRIBE_MS 5000    /* bound on the watcher's SUBSCRIBE reaching Redis */
#define PASSWORD "s3cret"

/* ---- redis-server ---------------------------------------------------------------------- */

/* A port nothing listens on: bound to 127.0.0.1:0 and kept open in *fd_out, not listening, so
 * connections to it are refused. */
static int refusing_port(int *fd_out)
{
    struct sockaddr_in in = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof in;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&in, sizeof in), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&in, &len), 0);
    *fd_out = fd;
    return ntohs(in.sin_port);
}

/* Runs a command that must succeed on c; returns the reply (the caller frees it). */
__attribute__((format(printf, 2, 3)))
static redisReply *must(redisContext *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    if (!r || r->type == REDIS_REPLY_ERROR)
        fail_msg("redis %s: %s", fmt, r ? r->str : c->errstr);
    return r;
}

/* The test's own connection, logged in. */
static redisContext *admin(const flh_redis *r)
{
    redisContext *c = flh_redis_connect(r, 0);
    assert_non_null(c);
    return c;
}

typedef struct servers {
    flh_redis open;          /* no password */
    flh_redis locked;        /* requirepass, and a user alice */
} servers;

/* File-scope so that the teardown finds whatever the setup started, even if it failed. */
static servers group_servers;

static int group_setup(void **state)
{
    *state = &group_servers;
    if (flh_redis_start(&group_servers.open, NULL) < 0 || flh_redis_start(&group_servers.locked, PASSWORD) < 0)
        return -1;
    redisContext *c = admin(&group_servers.locked);
    freeReplyObject(must(c, "ACL SETUSER alice on >alicepw ~* &* +@all"));
    redisFree(c);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    flh_redis_stop(&group_servers.open);
    flh_redis_stop(&group_servers.locked);
    return 0;
}

/* ---- the CLI as a child process --------------------------------------------------------- */

static void run_cli(flh_cli *r, char *const argv[], char *const env[])
{
    if (flh_cli_run(r, argv, env, CLI_WAIT_MS) < 0)
        fail_msg("the CLI did not exit within %d ms; stdout \"%s\", stderr \"%s\"", CLI_WAIT_MS, r->out, r->err);
}

static void spawn_cli(flh_child *ch, char *const argv[], char *const env[])
{
    assert_int_equal(flh_cli_spawn(ch, argv, env), 0);
}

static void finish_cli(flh_child *ch, flh_cli *r)
{
    if (flh_cli_finish(ch, r, CLI_WAIT_MS) < 0)
        fail_msg("the CLI did not exit within %d ms; stdout \"%s\", stderr \"%s\"", CLI_WAIT_MS, r->out, r->err);
}

/* Expects exit code, nothing on stdout, and one line on stderr starting with prefix. */
static void expect_failure(const flh_cli *r, int code, const char *prefix)
{
    if (!flh_cli_failed_as(r, code, prefix))
        fail_msg("exit %d, stdout \"%s\", stderr \"%s\"; want exit %d, one line starting \"%s\"", r->status,
                 r->out, r->err, code, prefix);
}

/* ---- status --redis --------------------------------------------------------------------- */

/* Writes a job hash as flingd's mirror does. */
static void put_job(redisContext *c, const char *key, const char *state, const char *attempts)
{
    freeReplyObject(must(c, "HSET %s id 42 type echo state %s status 2 attempts %s "
                         "max_attempts 3 created_at 2026-12-01T21:00:00.123Z started_at %s "
                         "finished_at %s updated_at 2026-12-01T21:00:01.500Z exit_code %s error %s",
                         key, state, attempts, "2026-12-01T21:00:00.200Z", "", "", ""));
}

static void test_status_from_mirror(void **state)
{
    servers *s = *state;
    redisContext *c = admin(&s->open);
    put_job(c, "fling:job:42", "running", "1");
    freeReplyObject(must(c, "HSET fling:job:44 id 44 type echo state failed attempts many"));
    freeReplyObject(must(c, "SET fling:job:45 not-a-hash"));
    freeReplyObject(must(c, "SELECT 2"));
    put_job(c, "app:job:7", "failed", "3");
    freeReplyObject(must(c, "HSET app:job:7 exit_code 3 error %s", "exit code 3"));

    /* a bad FLING_URL does not matter: --redis does not talk to the daemon */
    char *env[] = { "FLING_URL=ftp://nowhere", NULL };
    flh_cli r;
    char *get[] = { "fling", "status", "42", "--redis", s->open.url, NULL };
    run_cli(&r, get, env);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.err, "");
    json_t *j = json_loads(r.out, 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "id")), "42");
    assert_string_equal(json_string_value(json_object_get(j, "type")), "echo");
    assert_string_equal(json_string_value(json_object_get(j, "state")), "running");
    assert_int_equal(json_integer_value(json_object_get(j, "status")), 2);
    assert_int_equal(json_integer_value(json_object_get(j, "attempts")), 1);
    assert_int_equal(json_integer_value(json_object_get(j, "max_attempts")), 3);
    assert_string_equal(json_string_value(json_object_get(j, "created_at")), "2026-12-01T21:00:00.123Z");
    assert_string_equal(json_string_value(json_object_get(j, "started_at")), "2026-12-01T21:00:00.200Z");
    assert_string_equal(json_string_value(json_object_get(j, "updated_at")), "2026-12-01T21:00:01.500Z");
    assert_true(json_is_null(json_object_get(j, "finished_at")));
    assert_true(json_is_null(json_object_get(j, "exit_code")));
    assert_true(json_is_null(json_object_get(j, "error")));
    assert_int_equal(json_object_size(j), 12);
    json_decref(j);

    /* the Unix socket, a database and a prefix */
    char url[300];
    snprintf(url, sizeof url, "unix:%s?db=2", s->open.sock);
    char *other[] = { "fling", "status", "7", "--redis", url, "--prefix", "app:", NULL };
    run_cli(&r, other, env);
    assert_int_equal(r.status, 0);
    j = json_loads(r.out, 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "id")), "7");
    assert_string_equal(json_string_value(json_object_get(j, "state")), "failed");
    assert_int_equal(json_integer_value(json_object_get(j, "exit_code")), 3);
    assert_string_equal(json_string_value(json_object_get(j, "error")), "exit code 3");
    json_decref(j);

    char *missing[] = { "fling", "status", "43", "--redis", s->open.url, NULL };
    run_cli(&r, missing, env);
    expect_failure(&r, 1, "fling: status: job 43 is not in the Redis mirror (unknown, or "
                          "expired after retention)\n");
    char *wrong_db[] = { "fling", "status", "7", "--redis", s->open.url, "--prefix", "app:", NULL };
    run_cli(&r, wrong_db, env);
    expect_failure(&r, 1, "fling: status: job 7 is not in the Redis mirror");
    char *malformed[] = { "fling", "status", "44", "--redis", s->open.url, NULL };
    run_cli(&r, malformed, env);
    expect_failure(&r, 3, "fling: status: job 44 in the Redis mirror has a malformed field \"attempts\"\n");
    char *not_hash[] = { "fling", "status", "45", "--redis", s->open.url, NULL };
    run_cli(&r, not_hash, env);
    expect_failure(&r, 3, "fling: status: Redis answered: WRONGTYPE");
    char *bad_id[] = { "fling", "status", "x1", "--redis", s->open.url, NULL };
    run_cli(&r, bad_id, env);
    expect_failure(&r, 2, "fling: status: bad job id 'x1'");

    freeReplyObject(must(c, "FLUSHALL"));
    redisFree(c);
}

/* AUTH with the password alone or with a user; a wrong or missing password is exit 3, and the
 * password never shows in the message. */
static void test_status_auth(void **state)
{
    servers *s = *state;
    redisContext *c = admin(&s->locked);
    put_job(c, "fling:job:42", "succeeded", "1");
    freeReplyObject(must(c, "SELECT 1"));
    put_job(c, "fling:job:42", "queued", "0");
    char *env[] = { NULL };
    char url[300];
    flh_cli r;

    char *pw[] = { "fling", "status", "42", "--redis", s->locked.url, NULL };
    run_cli(&r, pw, env);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "\"succeeded\""));

    snprintf(url, sizeof url, "redis://alice:alicepw@127.0.0.1:%d/1", s->locked.port);
    char *user[] = { "fling", "status", "42", "--redis", url, NULL };
    run_cli(&r, user, env);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "\"queued\""));

    snprintf(url, sizeof url, "unix:%s?password=%s&db=1", s->locked.sock, PASSWORD);
    char *unix_pw[] = { "fling", "status", "42", "--redis", url, NULL };
    run_cli(&r, unix_pw, env);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "\"queued\""));

    snprintf(url, sizeof url, "redis://:wr0ng@127.0.0.1:%d", s->locked.port);
    char *wrong[] = { "fling", "status", "42", "--redis", url, NULL };
    run_cli(&r, wrong, env);
    char want[128];
    snprintf(want, sizeof want, "fling: status: Redis at 127.0.0.1:%d refused AUTH: ", s->locked.port);
    expect_failure(&r, 3, want);
    assert_null(strstr(r.err, "wr0ng"));

    snprintf(url, sizeof url, "redis://alice:nope@127.0.0.1:%d", s->locked.port);
    char *wrong_user[] = { "fling", "status", "42", "--redis", url, NULL };
    run_cli(&r, wrong_user, env);
    expect_failure(&r, 3, want);

    snprintf(url, sizeof url, "redis://127.0.0.1:%d", s->locked.port);
    char *none[] = { "fling", "status", "42", "--redis", url, NULL };
    run_cli(&r, none, env);
    expect_failure(&r, 3, "fling: status: Redis answered: NOAUTH");

    freeReplyObject(must(c, "FLUSHALL"));
    redisFree(c);
}

/* Nothing listening (a bound, not listening port; a missing socket): exit 3 at once. */
static void test_status_unreachable(void **state)
{
    (void)state;
    int fd;
    int port = refusing_port(&fd);
    char url[64], want[96];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/0", port);
    snprintf(want, sizeof want, "fling: status: cannot connect to Redis at 127.0.0.1:%d: ", port);
    char *env[] = { NULL };
    flh_cli r;
    char *tcp[] = { "fling", "status", "1", "--redis", url, NULL };
    double t0 = flh_now();
    run_cli(&r, tcp, env);
    expect_failure(&r, 3, want);
    assert_true(flh_now() - t0 < 2.0);
    close(fd);
    char *sock[] = { "fling", "status", "1", "--redis", "unix:/nonexistent/redis.sock", NULL };
    run_cli(&r, sock, env);
    expect_failure(&r, 3, "fling: status: cannot connect to Redis at unix:/nonexistent/redis.sock: ");
    char *tls[] = { "fling", "status", "1", "--redis", "rediss://h", NULL };
    run_cli(&r, tls, env);
    expect_failure(&r, 2, "fling: status: rediss:// (TLS) is not supported");
}

/* ---- watch ------------------------------------------------------------------------------ */

/* Waits (bounded) until channel has one subscriber: the watcher is listening. */
static void wait_subscribed(redisContext *c, const char *channel)
{
    double end = flh_now() + SUBSCRIBE_MS / 1000.0;
    long long n = 0;
    while (n < 1 && flh_now() < end) {
        redisReply *r = must(c, "PUBSUB NUMSUB %s", channel);
        n = r->type == REDIS_REPLY_ARRAY && r->elements == 2 ? r->element[1]->integer : 0;
        freeReplyObject(r);
        if (n < 1)
            usleep(10000);
    }
    if (n < 1)
        fail_msg("no subscriber on %s after %d ms", channel, SUBSCRIBE_MS);
}

static void publish(redisContext *c, const char *channel, const char *msg)
{
    freeReplyObject(must(c, "PUBLISH %s %s", channel, msg));
}

#define EVENT_1 "{\"id\":\"42\",\"type\":\"echo\",\"state\":\"queued\",\"status\":0,\"attempts\":0," \
                "\"max_attempts\":3,\"created_at\":\"2026-12-01T21:00:00.123Z\",\"started_at\":null," \
                "\"exit_code\":null,\"error\":null,\"event\":\"submitted\"}"
#define EVENT_2 "{\"id\":\"42\",\"type\":\"echo\",\"state\":\"succeeded\",\"status\":0,\"attempts\":1," \
                "\"max_attempts\":3,\"exit_code\":0,\"error\":null,\"event\":\"succeeded\"}"

/* --json prints each message as it came, one per line; --count 2 ends it after two. The URL
 * comes from FLING_REDIS. */
static void test_watch_json(void **state)
{
    servers *s = *state;
    redisContext *c = admin(&s->open);
    char env_url[300];
    snprintf(env_url, sizeof env_url, "FLING_REDIS=%s", s->open.url);
    char *env[] = { env_url, NULL };
    char *argv[] = { "fling", "watch", "--count", "2", "--json", NULL };
    flh_child ch;
    flh_cli r;
    spawn_cli(&ch, argv, env);
    wait_subscribed(c, "fling:events");
    publish(c, "fling:events", EVENT_1);
    publish(c, "fling:events", EVENT_2);
    finish_cli(&ch, &r);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.out, EVENT_1 "\n" EVENT_2 "\n");
    assert_string_equal(r.err, "");
    redisFree(c);
}

/* The human line; --type and --prefix choose the events; a malformed message is one line on
 * stderr and does not count. */
static void test_watch_lines(void **state)
{
    servers *s = *state;
    redisContext *c = admin(&s->locked);
    char url[300];
    snprintf(url, sizeof url, "unix:%s?password=%s", s->locked.sock, PASSWORD);
    char *env[] = { NULL };
    char *argv[] = { "fling", "watch", "--redis", url, "--prefix", "app:", "--type", "echo",
                     "--count", "2", NULL };
    flh_child ch;
    flh_cli r;
    spawn_cli(&ch, argv, env);
    wait_subscribed(c, "app:events");
    publish(c, "fling:events", EVENT_2);            /* another prefix */
    publish(c, "app:events", "{\"id\":\"9\",\"type\":\"mail\",\"state\":\"running\",\"event\":\"started\"}");
    publish(c, "app:events", "not json");
    publish(c, "app:events", "{\"id\":\"42\",\"type\":\"echo\",\"event\":\"retrying\"," 
                             "\"state\":\"scheduled\",\"status\":2,\"attempts\":1,\"max_attempts\":3,"
                             "\"updated_at\":\"2026-12-01T21:00:00.123Z\",\"error\":\"timed \\\"out\\\"\"}");
    publish(c, "app:events", "{\"id\":\"43\",\"type\":\"echo\",\"event\":\"succeeded\","
                             "\"state\":\"succeeded\",\"status\":0,\"attempts\":1,\"max_attempts\":3,"
                             "\"error\":null}");
    finish_cli(&ch, &r);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.err, "fling: watch: skipped a message that is not a job event: not json\n");
    static const char first[] =
        "2026-12-01T21:00:00.123Z 42 echo retrying state=scheduled status=2 attempts=1/3 "
        "error=\"timed \\\"out\\\"\"\n";
    assert_int_equal(strncmp(r.out, first, sizeof first - 1), 0);
    /* without updated_at, the receipt time: YYYY-MM-DDTHH:MM:SS.mmmZ */
    const char *second = r.out + sizeof first - 1;
    assert_int_equal(strlen(second), 24 + strlen(" 43 echo succeeded status=0 attempts=1/3\n"));
    assert_int_equal(second[4], '-');
    assert_int_equal(second[10], 'T');
    assert_int_equal(second[19], '.');
    assert_int_equal(second[23], 'Z');
    assert_string_equal(second + 24, " 43 echo succeeded status=0 attempts=1/3\n");
    redisFree(c);
}

/* SIGTERM and SIGINT end a watch with success; a dropped connection is exit 3. */
static void test_watch_stop_and_loss(void **state)
{
    servers *s = *state;
    redisContext *c = admin(&s->open);
    char *env[] = { NULL };
    char *argv[] = { "fling", "watch", "--redis", s->open.url, NULL };
    static const int sigs[] = { SIGTERM, SIGINT };
    flh_child ch;
    flh_cli r;
    for (size_t i = 0; i < 2; i++) {
        spawn_cli(&ch, argv, env);
        wait_subscribed(c, "fling:events");
        kill(ch.pid, sigs[i]);
        finish_cli(&ch, &r);
        assert_int_equal(r.status, 0);
        assert_string_equal(r.out, "");
        assert_string_equal(r.err, "");
        /* let Redis notice the subscriber left before the next one counts */
        for (int t = 0; t < 100; t++) {
            redisReply *n = must(c, "PUBSUB NUMSUB fling:events");
            long long subs = n->element[1]->integer;
            freeReplyObject(n);
            if (subs == 0)
                break;
            usleep(10000);
        }
    }
    spawn_cli(&ch, argv, env);
    wait_subscribed(c, "fling:events");
    freeReplyObject(must(c, "CLIENT KILL TYPE pubsub"));
    finish_cli(&ch, &r);
    expect_failure(&r, 3, "fling: watch: lost the connection to Redis");

    char url[300];
    snprintf(url, sizeof url, "redis://:nope@127.0.0.1:%d", s->locked.port);
    char *denied[] = { "fling", "watch", "--redis", url, NULL };
    run_cli(&r, denied, env);
    expect_failure(&r, 3, "fling: watch: Redis at 127.0.0.1:");
    redisFree(c);
}

/* ---- the job commands against a real flingd ------------------------------------------- */

#define RUNNING_WAIT_MS 10000

/* Runs the CLI with --url d's URL and the words in argv; expects exit 0. */
static void run_ok(const flh_daemon *d, flh_cli *r, const char *const *words)
{
    char *argv[16] = { "fling", "--url", (char *)d->url };
    size_t n = 3;
    for (; words[n - 3] && n < 15; n++)
        argv[n] = (char *)words[n - 3];
    argv[n] = NULL;
    run_cli(r, argv, NULL);
    if (r->status != 0)
        fail_msg("%s: exit %d, stdout \"%s\", stderr \"%s\"", words[0], r->status, r->out, r->err);
}

/* Polls job id until it is in state want. */
static void wait_state(const flh_daemon *d, const char *id, const char *want)
{
    char path[64];
    snprintf(path, sizeof path, "/v1/jobs/%s", id);
    double end = flh_now() + RUNNING_WAIT_MS / 1000.0;
    for (;;) {
        json_t *job = NULL;
        assert_int_equal(flh_http(d, "GET", path, &job), 200);
        int there = strcmp(json_string_value(json_object_get(job, "state")), want) == 0;
        json_decref(job);
        if (there)
            return;
        if (flh_now() > end)
            fail_msg("job %s not %s after %d ms", id, want, RUNNING_WAIT_MS);
        usleep(20000);
    }
}

/* --wait N as two words, per-command --help, list's header and run_at, what cancel did. */
static void test_job_commands(void **state)
{
    (void)state;
    flh_daemon d;
    flh_cli r;
    char id[32];
    assert_int_equal(flh_start(&d, "[type.noop]\nhandler = noop\n"), 0);

    /* "--wait 10" is the wait, not the type or the payload */
    run_ok(&d, &r, (const char *[]){ "submit", "--wait", "10", "noop", "x", NULL });
    json_t *job = json_loads(r.out, 0, NULL);
    assert_non_null(job);
    assert_string_equal(json_string_value(json_object_get(job, "state")), "succeeded");
    assert_string_equal(json_string_value(json_object_get(job, "type")), "noop");
    json_decref(job);

    run_ok(&d, &r, (const char *[]){ "cancel", "--help", NULL });
    assert_non_null(strstr(r.out, "  cancel ID "));
    assert_null(strstr(r.out, "submit TYPE"));
    assert_non_null(strstr(r.out, "--url URL"));
    run_ok(&d, &r, (const char *[]){ "--help", NULL });
    assert_non_null(strstr(r.out, "submit TYPE"));
    assert_non_null(strstr(r.out, "watch [--type T]"));

    run_ok(&d, &r, (const char *[]){ "submit", "t", "30", "--delay", "600", NULL });
    snprintf(id, sizeof id, "%.*s", (int)strcspn(r.out, "\n"), r.out);
    run_ok(&d, &r, (const char *[]){ "list", NULL });
    static const char header[] = "ID\tTYPE\tSTATE\tSTATUS\tATTEMPTS\tCREATED_AT\tRUN_AT\n";
    assert_int_equal(strncmp(r.out, header, sizeof header - 1), 0);
    char *scheduled = strstr(r.out, "\tt\tscheduled\t"), *done = strstr(r.out, "\tnoop\tsucceeded\t");
    assert_non_null(scheduled);
    assert_non_null(done);
    /* the scheduled job shows when it is due; the finished one does not */
    char *eol = strchr(scheduled, '\n');
    assert_true(eol - scheduled > 4 && strncmp(eol - 2, "\t-", 2) != 0 && eol[-1] == 'Z');
    eol = strchr(done, '\n');
    assert_int_equal(strncmp(eol - 2, "\t-", 2), 0);
    run_ok(&d, &r, (const char *[]){ "list", "--json", NULL });
    json_t *list = json_loads(r.out, 0, NULL);
    assert_int_equal(json_array_size(json_object_get(list, "jobs")), 2);
    json_decref(list);

    char want[96];
    run_ok(&d, &r, (const char *[]){ "cancel", id, NULL });
    snprintf(want, sizeof want, "job %s cancelled\n", id);
    assert_string_equal(r.out, want);

    run_ok(&d, &r, (const char *[]){ "submit", "t", "30", NULL });
    snprintf(id, sizeof id, "%.*s", (int)strcspn(r.out, "\n"), r.out);
    wait_state(&d, id, "running");
    run_ok(&d, &r, (const char *[]){ "cancel", id, NULL });
    snprintf(want, sizeof want, "job %s is running: stopping it; it ends cancelled\n", id);
    assert_string_equal(r.out, want);
    wait_state(&d, id, "cancelled");
    assert_int_equal(flh_stop(&d), 0);
}

/* pause, resume and types: what each says, and the paused flag and counts in the table. */
static void test_type_commands(void **state)
{
    (void)state;
    flh_daemon d;
    flh_cli r;
    char id[32];
    assert_int_equal(flh_start(&d, "[type.noop]\nhandler = noop\nconcurrency = 3\n"), 0);
    run_ok(&d, &r, (const char *[]){ "pause", "noop", NULL });
    assert_string_equal(r.out, "type noop paused\n");
    run_ok(&d, &r, (const char *[]){ "submit", "noop", "x", NULL });
    snprintf(id, sizeof id, "%.*s", (int)strcspn(r.out, "\n"), r.out);
    run_ok(&d, &r, (const char *[]){ "types", NULL });
    static const char header[] = "NAME\tHANDLER\tCONCURRENCY\tPAUSED\tQUEUED\tSCHEDULED\tRUNNING\tSUCCEEDED\tFAILED\tCANCELLED\n";
    assert_int_equal(strncmp(r.out, header, sizeof header - 1), 0);
    assert_non_null(strstr(r.out, "\nnoop\tnoop\t3\ttrue\t1\t0\t0\t0\t0\t0\n"));
    assert_non_null(strstr(r.out, "\nt\tsleep\t0\tfalse\t"));
    run_ok(&d, &r, (const char *[]){ "types", "--json", NULL });
    json_t *all = json_loads(r.out, 0, NULL);
    assert_true(json_is_array(json_object_get(all, "types")));
    json_decref(all);
    run_ok(&d, &r, (const char *[]){ "resume", "noop", NULL });
    assert_string_equal(r.out, "type noop resumed\n");
    wait_state(&d, id, "succeeded");

    char *argv[] = { "fling", "--url", d.url, "pause", "nope", NULL };
    run_cli(&r, argv, NULL);
    expect_failure(&r, 1, "fling: pause: ");
    assert_int_equal(flh_stop(&d), 0);
}

/* retry ID says what it did; retry --state failed --type T --limit N retries at most N. */
static void test_retry_commands(void **state)
{
    (void)state;
    flh_daemon d;
    flh_cli r;
    char id[32], line[64];
    assert_int_equal(flh_start(&d, "[type.bad]\nhandler = exec\ncommand = /bin/false\nmax_attempts = 1\n"), 0);
    for (int i = 0; i < 3; i++) {
        run_ok(&d, &r, (const char *[]){ "submit", "bad", "x", NULL });
        snprintf(id, sizeof id, "%.*s", (int)strcspn(r.out, "\n"), r.out);
        wait_state(&d, id, "failed");
    }
    /* the newest first: ids 3 and 2 */
    run_ok(&d, &r, (const char *[]){ "retry", "--state", "failed", "--type", "bad", "--limit", "2", NULL });
    assert_string_equal(r.out, "job 3 retried\njob 2 retried\n");
    assert_string_equal(r.err, "fling: retry: 2 job(s) retried\n");
    wait_state(&d, "3", "failed");
    wait_state(&d, "2", "failed");
    run_ok(&d, &r, (const char *[]){ "retry", "1", NULL });
    assert_string_equal(r.out, "job 1 retried\n");
    wait_state(&d, "1", "failed");
    snprintf(line, sizeof line, "/v1/jobs/1");
    json_t *job = NULL;
    assert_int_equal(flh_http(&d, "GET", line, &job), 200);
    assert_int_equal(json_integer_value(json_object_get(job, "retried")), 1);
    json_decref(job);

    run_ok(&d, &r, (const char *[]){ "submit", "t", "30", NULL });
    snprintf(id, sizeof id, "%.*s", (int)strcspn(r.out, "\n"), r.out);
    char *argv[] = { "fling", "--url", d.url, "retry", id, NULL };
    run_cli(&r, argv, NULL);
    expect_failure(&r, 1, "fling: retry: 409 not_retryable: ");
    char *both[] = { "fling", "--url", d.url, "retry", id, "--state", "failed", NULL };
    run_cli(&r, both, NULL);
    expect_failure(&r, 2, "fling: retry: ");
    char *none[] = { "fling", "--url", d.url, "retry", NULL };
    run_cli(&r, none, NULL);
    expect_failure(&r, 2, "fling: retry: ");
    assert_int_equal(flh_stop(&d), 0);
}

/* status ID --payload prints the stored bytes as they are, without a newline added. */
static void test_status_payload(void **state)
{
    (void)state;
    flh_daemon d;
    flh_cli r;
    char id[32];
    assert_int_equal(flh_start(&d, NULL), 0);
    run_ok(&d, &r, (const char *[]){ "submit", "t", "  3600 \n\tx", "--delay", "600", NULL });
    snprintf(id, sizeof id, "%.*s", (int)strcspn(r.out, "\n"), r.out);
    run_ok(&d, &r, (const char *[]){ "status", id, "--payload", NULL });
    assert_string_equal(r.out, "  3600 \n\tx");
    char *argv[] = { "fling", "--url", d.url, "status", "424242", "--payload", NULL };
    run_cli(&r, argv, NULL);
    expect_failure(&r, 1, "fling: status: 404 not_found: ");
    assert_int_equal(flh_stop(&d), 0);
}

/* prune --older-than D deletes the finished jobs and says how many; D is checked first. */
static void test_prune_command(void **state)
{
    (void)state;
    flh_daemon d;
    flh_cli r;
    char id[32];
    assert_int_equal(flh_start(&d, "[type.noop]\nhandler = noop\n"), 0);
    run_ok(&d, &r, (const char *[]){ "submit", "noop", "x", NULL });
    snprintf(id, sizeof id, "%.*s", (int)strcspn(r.out, "\n"), r.out);
    wait_state(&d, id, "succeeded");
    run_ok(&d, &r, (const char *[]){ "prune", "--older-than", "1h", NULL });
    assert_string_equal(r.out, "pruned 0 job(s)\n");
    run_ok(&d, &r, (const char *[]){ "prune", "--older-than", "0", NULL });
    assert_string_equal(r.out, "pruned 1 job(s)\n");
    assert_int_equal(flh_http(&d, "GET", "/v1/jobs/1", NULL), 404);
    char *bad[] = { "fling", "--url", d.url, "prune", "--older-than", "soon", NULL };
    run_cli(&r, bad, NULL);
    expect_failure(&r, 2, "fling: prune: bad --older-than 'soon'");
    char *none[] = { "fling", "--url", d.url, "prune", NULL };
    run_cli(&r, none, NULL);
    expect_failure(&r, 2, "fling: prune: --older-than D is required");
    assert_int_equal(flh_stop(&d), 0);
}

/* ---- one version ------------------------------------------------------------------------ */

/* Both binaries print the project version of CMakeLists.txt, each after its own name. */
static void test_version_once(void **state)
{
    (void)state;
    flh_cli r;
    char *argv[] = { "fling", "--version", NULL };
    run_cli(&r, argv, NULL);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.out, "fling " FL_VERSION "\n");
    char line[128] = "";
    FILE *p = popen(FLINGD_PATH " --version", "r");
    assert_non_null(p);
    assert_non_null(fgets(line, sizeof line, p));
    assert_int_equal(pclose(p), 0);
    assert_string_equal(line, "flingd " FL_VERSION "\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_from_mirror),
        cmocka_unit_test(test_status_auth),
        cmocka_unit_test(test_status_unreachable),
        cmocka_unit_test(test_watch_json),
        cmocka_unit_test(test_watch_lines),
        cmocka_unit_test(test_watch_stop_and_loss),
        cmocka_unit_test(test_version_once),
        cmocka_unit_test(test_job_commands),
        cmocka_unit_test(test_type_commands),
        cmocka_unit_test(test_retry_commands),
        cmocka_unit_test(test_status_payload),
        cmocka_unit_test(test_prune_command),
    };
    return cmocka_run_group_tests_name("cli", tests, group_setup, group_teardown);
}
