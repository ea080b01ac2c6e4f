/* test_api.c — the HTTP API v1 of a real flingd: every route, every error code with its JSON
 * body and nothing enqueued, auth, keep-alive, pipelining, idempotency, pagination, cancel,
 * the connection cap and the descriptor limit (slow connections reclaimed, nothing refused), and a real disk-full store (a tiny
 * tmpfs, when run as root). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fling.h"
#include "harness.h"

static flh_daemon D;

static const char *conf =
    "[server]\nmax_payload = 1000\nmax_header = 2048\n"
    "[callbacks]\nallow = http://127.0.0.1:9/\n"
    "[type.a]\nhandler = sleep\n[type.b]\nhandler = sleep\n[type.err]\nhandler = sleep\n"
    "[type.ka]\nhandler = sleep\n[type.page]\nhandler = sleep\n";

static int setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    return flh_start(&D, conf);
}

static int teardown(void **state)
{
    (void)state;
    return flh_stop(&D);
}

/* Sends raw bytes on a new connection and returns the reply's status; buf gets the reply. */
static int raw(const flh_daemon *d, const char *req, char *buf, size_t bufsz)
{
    int fd = flh_connect_tcp(d->port);
    assert_true(fd >= 0);
    assert_int_equal(flh_send_all(fd, req, strlen(req)), 0);
    int status = flh_read_reply(fd, buf, bufsz, 5000);
    close(fd);
    return status;
}

static void submit_get_list_cancel(void **state)
{
    (void)state;
    char buf[4096];
    assert_int_equal(raw(&D, "POST /v1/jobs/a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\n3600", buf, sizeof buf), 202);
    const char *loc = strstr(buf, "Location: /v1/jobs/");
    assert_non_null(loc);
    long id = strtol(loc + 19, NULL, 10);
    char want[64];
    snprintf(want, sizeof want, "{\"id\":\"%ld\",\"state\":\"queued\"}", id);
    assert_non_null(strstr(buf, want));

    char path[64];
    snprintf(path, sizeof path, "/v1/jobs/%ld", id);
    json_t *job = NULL;
    assert_int_equal(flh_http(&D, "GET", path, &job), 200);
    static const char *fields[] = { "id", "type", "state", "status", "attempts", "max_attempts", "priority",
                                    "created_at", "run_at", "started_at", "finished_at", "exit_code", "error",
                                    "output" };
    for (size_t i = 0; i < sizeof fields / sizeof *fields; i++)
        assert_non_null(json_object_get(job, fields[i]));
    assert_string_equal(json_string_value(json_object_get(job, "type")), "a");
    json_decref(job);

    /* A delayed job stays scheduled, so it is still cancellable whatever the workers do. */
    assert_int_equal(raw(&D, "POST /v1/jobs/a HTTP/1.1\r\nHost: x\r\nFling-Delay: 3600\r\nContent-Length: 1\r\n\r\n1",
                         buf, sizeof buf), 202);
    assert_non_null(strstr(buf, "\"state\":\"scheduled\""));
    loc = strstr(buf, "Location: /v1/jobs/");
    snprintf(path, sizeof path, "/v1/jobs/%ld", strtol(loc + 19, NULL, 10));
    assert_int_equal(flh_http(&D, "DELETE", path, &job), 200);
    assert_string_equal(json_string_value(json_object_get(job, "state")), "cancelled");
    json_decref(job);
    assert_int_equal(flh_http(&D, "DELETE", path, &job), 409);
    assert_string_equal(json_string_value(json_object_get(job, "error")), "not_cancellable");
    json_decref(job);
    assert_int_equal(flh_http(&D, "GET", "/v1/jobs/999999", &job), 404);
    assert_string_equal(json_string_value(json_object_get(job, "error")), "not_found");
    json_decref(job);
    assert_int_equal(flh_http(&D, "DELETE", "/v1/jobs/999999", NULL), 404);
}

static void pagination_and_filters(void **state)
{
    (void)state;
    fling_client *c = fling_client_new(D.url, NULL);
    fling_job_opts later = { .delay = 3600 };   /* scheduled: the state filter sees all 25 */
    for (int i = 0; i < 25; i++)
        assert_int_equal(fling_submit(c, "page", "3600", 4, &later, NULL), 0);
    fling_client_free(c);
    long seen = 0, last = 0;
    char path[128], after[32] = "";
    for (int page = 0; page < 10; page++) {
        snprintf(path, sizeof path, "/v1/jobs?type=page&state=scheduled&limit=10%s%s", after[0] ? "&after=" : "", after);
        json_t *body = NULL;
        assert_int_equal(flh_http(&D, "GET", path, &body), 200);
        size_t i;
        json_t *j;
        json_array_foreach(json_object_get(body, "jobs"), i, j) {
            long id = strtol(json_string_value(json_object_get(j, "id")), NULL, 10);
            assert_true(last == 0 || id < last);   /* newest first */
            last = id;
            seen++;
        }
        json_t *next = json_object_get(body, "next");
        int more = json_is_string(next);
        if (more)
            snprintf(after, sizeof after, "%s", json_string_value(next));
        json_decref(body);
        if (!more)
            break;
    }
    assert_int_equal(seen, 25);
    json_t *body = NULL;
    assert_int_equal(flh_http(&D, "GET", "/v1/jobs?state=succeeded&type=page", &body), 200);
    assert_int_equal(json_array_size(json_object_get(body, "jobs")), 0);
    assert_true(json_is_null(json_object_get(body, "next")));
    json_decref(body);
    assert_int_equal(flh_http(&D, "GET", "/v1/jobs?limit=0", NULL), 400);
    assert_int_equal(flh_http(&D, "GET", "/v1/jobs?limit=abc", NULL), 400);
    assert_int_equal(flh_http(&D, "GET", "/v1/jobs?state=bogus", NULL), 400);
    assert_int_equal(flh_http(&D, "GET", "/v1/jobs?after=-1", NULL), 400);
}

static void idempotency(void **state)
{
    (void)state;
    fling_client *c = fling_client_new(D.url, NULL);
    fling_job_opts o = { .idempotency_key = "order-42" };
    fling_response r1 = { 0 }, r2 = { 0 }, r3 = { 0 };
    assert_int_equal(fling_submit(c, "a", "3600", 4, &o, &r1), 0);
    assert_int_equal(r1.status, 202);
    assert_int_equal(fling_submit(c, "a", "3600", 4, &o, &r2), 0);
    assert_int_equal(r2.status, 200);
    assert_int_equal(r2.duplicate, 1);
    assert_string_equal(r1.id, r2.id);
    assert_non_null(strstr(r2.body, "\"duplicate\":true"));
    assert_int_equal(fling_submit(c, "b", "3600", 4, &o, &r3), 0);   /* same key, other type: new */
    assert_int_equal(r3.status, 202);
    assert_string_not_equal(r1.id, r3.id);
    fling_response_clear(&r1);
    fling_response_clear(&r2);
    fling_response_clear(&r3);
    fling_client_free(c);
}

/* Every error: its status, its code in the JSON body, and no job of type err enqueued. */
static void error_codes(void **state)
{
    (void)state;
    static const struct { const char *req; int status; const char *code; } cases[] = {
        { "POST /v1/jobs/err HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nFling-Timeout: abc\r\n\r\nx", 400, "bad_header" },
        { "POST /v1/jobs/err HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nFling-Max-Attempts: 0\r\n\r\nx", 400, "bad_header" },
        { "POST /v1/jobs/err HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nFling-Delay: -1\r\n\r\nx", 400, "bad_header" },
        { "POST /v1/jobs/err HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nFling-Priority: 1.5\r\n\r\nx", 400, "bad_header" },
        { "POST /v1/jobs/err HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nFling-Callback: http://evil.example/\r\n\r\nx",
          400, "callback_not_allowed" },
        { "POST /v1/jobs/err HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nx", 400, "bad_request" },
        { "GARBAGE\r\n\r\n", 400, "bad_request" },
        { "POST /v1/jobs/nosuch HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx", 404, "unknown_type" },
        { "GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n", 404, "not_found" },
        { "PUT /v1/jobs/err HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx", 405, "method_not_allowed" },
        { "POST /v1/jobs/err HTTP/1.1\r\nHost: x\r\n\r\n", 411, "length_required" },
        { "POST /v1/jobs/err HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n", 411,
          "length_required" },
        { "POST /v1/jobs/err HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\n\r\n", 413, "payload_too_large" },
    };
    char buf[4096];
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int st = raw(&D, cases[i].req, buf, sizeof buf);
        if (st != cases[i].status || !strstr(buf, cases[i].code))
            fail_msg("case %zu: want %d %s, got:\n%s", i, cases[i].status, cases[i].code, buf);
        assert_non_null(strstr(buf, "\"message\":"));
    }
    /* 431: a head over max_header (2048 bytes). */
    char big[4096];
    int n = snprintf(big, sizeof big, "POST /v1/jobs/err HTTP/1.1\r\nHost: x\r\nX-Filler: ");
    memset(big + n, 'f', 3000);
    snprintf(big + n + 3000, sizeof big - (size_t)n - 3000, "\r\nContent-Length: 1\r\n\r\nx");
    assert_int_equal(raw(&D, big, buf, sizeof buf), 431);
    assert_non_null(strstr(buf, "headers_too_large"));
    assert_int_equal(flh_count_jobs(&D, "err", NULL), 0);
}

static void keep_alive_and_pipelining(void **state)
{
    (void)state;
    int fd = flh_connect_tcp(D.port);
    char buf[4096];
    static const char req[] = "POST /v1/jobs/ka HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\n3600";
    for (int i = 0; i < 3; i++) {
        assert_int_equal(flh_send_all(fd, req, sizeof req - 1), 0);
        assert_int_equal(flh_read_reply(fd, buf, sizeof buf, 5000), 202);
    }
    /* Three requests in one write, answered in order on the same connection. */
    static const char three[] = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                                "POST /v1/jobs/ka HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\n3600"
                                "GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_int_equal(flh_send_all(fd, three, sizeof three - 1), 0);
    size_t len = 0;
    for (double end = flh_now() + 5; flh_now() < end && !strstr(buf, "not_found");) {
        ssize_t r = recv(fd, buf + len, sizeof buf - 1 - len, 0);
        if (r <= 0)
            break;
        len += (size_t)r;
        buf[len] = '\0';
    }
    char *a = strstr(buf, "200 OK"), *b = strstr(buf, "202 Accepted"), *c = strstr(buf, "404 Not Found");
    assert_true(a && b && c && a < b && b < c);
    close(fd);
    assert_int_equal(flh_count_jobs(&D, "ka", NULL), 4);
}

static void bearer_token(void **state)
{
    (void)state;
    flh_daemon t;
    assert_int_equal(flh_start(&t, "[server]\ntoken = s3cret\n"), 0);
    char buf[2048];
    assert_int_equal(raw(&t, "POST /v1/jobs/t HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n1", buf, sizeof buf), 401);
    assert_non_null(strstr(buf, "unauthorized"));
    assert_int_equal(raw(&t, "POST /v1/jobs/t HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer wrong\r\nContent-Length: 1\r\n\r\n1",
                         buf, sizeof buf), 401);
    assert_int_equal(raw(&t, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", buf, sizeof buf), 401);
    assert_int_equal(raw(&t, "POST /v1/jobs/t HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret\r\nContent-Length: 1\r\n\r\n1",
                         buf, sizeof buf), 202);
    fling_client *c = fling_client_new(t.url, "s3cret");
    fling_response r = { 0 };
    assert_int_equal(fling_request(c, "GET", "/v1/jobs", NULL, 0, &r), 0);
    assert_non_null(strstr(r.body, "\"jobs\":[{"));
    fling_response_clear(&r);
    fling_client_free(c);
    assert_int_equal(flh_stop(&t), 0);
}

static const char submit_t[] = "POST /v1/jobs/t HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n1";

/* Opens n connections that each send half a request head, then nothing. */
static void open_slow(const flh_daemon *d, int *fds, int n)
{
    static const char half[] = "POST /v1/jobs/t HTTP/1.1\r\nHost: x\r\n";
    for (int i = 0; i < n; i++) {
        fds[i] = flh_connect_tcp(d->port);
        assert_true(fds[i] >= 0);
        assert_int_equal(flh_send_all(fds[i], half, sizeof half - 1), 0);
    }
}

/* A new client's submit is served (202) within 3 s: the slow connections holding every slot
 * are closed to make room once their requests have been arriving for over a second. */
static void served_despite_them(const flh_daemon *d)
{
    char buf[2048];
    double t0 = flh_now();
    assert_int_equal(raw(d, submit_t, buf, sizeof buf), 202);
    assert_true(flh_now() - t0 < 3.0);
}

/* max_connections: slow clients holding every slot do not keep a new client waiting (they are
 * reclaimed), and the slow ones see their connection closed; idle_timeout: an idle keep-alive
 * connection is closed by the server. */
static void connection_cap_and_idle_timeout(void **state)
{
    (void)state;
    flh_daemon t;
    assert_int_equal(flh_start(&t, "[server]\nmax_connections = 20\nidle_timeout = 1\nread_timeout = 60\n"), 0);
    enum { SLOW = 40 };
    int slow[SLOW];
    open_slow(&t, slow, SLOW);
    usleep(1200 * 1000);   /* the first 20 are now slow by the daemon's measure */
    served_despite_them(&t);
    assert_true(flh_metric(&t, "fling_connections_reclaimed_total") >= 20);
    for (int i = 0; i < SLOW; i++)
        close(slow[i]);

    /* A connection that never sends a byte: after idle_timeout (1 s) the server closes it. */
    char buf[256];
    int c = flh_connect_tcp(t.port);
    double t0 = flh_now();
    assert_int_equal(flh_read_reply(c, buf, sizeof buf, 4000), 0);
    assert_true(flh_now() - t0 < 3.5);
    close(c);
    assert_int_equal(flh_stop(&t), 0);
}

/* Fire-and-forget clients past max_connections, each with a complete request: none is refused
 * (a client that never reads would lose its job to a 503); they wait in the backlog until a
 * connection closes, and every job is enqueued. */
static void burst_past_the_cap_loses_nothing(void **state)
{
    (void)state;
    flh_daemon t;
    assert_int_equal(flh_start(&t, "[server]\nmax_connections = 8\n"), 0);
    enum { N = 300 };
    for (int i = 0; i < N; i++) {
        int fd = flh_connect_tcp(t.port);
        assert_true(fd >= 0);
        assert_int_equal(flh_send_all(fd, submit_t, sizeof submit_t - 1), 0);
        close(fd);
    }
    assert_int_equal(flh_wait_count(&t, "t", N, 20000, NULL), N);
    assert_int_equal(flh_metric(&t, "fling_connections_refused_total"), 0);
    assert_int_equal(flh_stop(&t), 0);
}

/* How many descriptors below limit process pid has open, or -1. */
static int fds_below(pid_t pid, int limit)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    if (!d)
        return -1;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += e->d_name[0] != '.' && atoi(e->d_name) < limit;
    closedir(d);
    return n;
}

/* Out of descriptors (EMFILE): a slow connection is closed to make room, so the listener
 * neither spins nor leaves a new client waiting behind stalled ones. Lowering another
 * process's limit needs root. */
static void descriptor_limit_reclaims_slow_ones(void **state)
{
    (void)state;
    if (geteuid() != 0)
        skip();
    flh_daemon t;
    assert_int_equal(flh_start(&t, NULL), 0);
    /* The lowest limit that leaves ROOM free descriptors (inherited ones may sit far above). */
    enum { ROOM = 4 };
    int limit = 1;
    while (limit < 1024 && limit - fds_below(t.pid, limit) < ROOM)
        limit++;
    assert_int_equal(limit - fds_below(t.pid, limit), ROOM);
    struct rlimit rl = { (rlim_t)limit, (rlim_t)limit };
    assert_int_equal(prlimit(t.pid, RLIMIT_NOFILE, &rl, NULL), 0);
    int held[ROOM];
    open_slow(&t, held, ROOM);
    usleep(1200 * 1000);
    served_despite_them(&t);
    for (int i = 0; i < ROOM; i++)
        close(held[i]);
    assert_int_equal(flh_stop(&t), 0);
}

/* A real ENOSPC: the database on a 1 MiB tmpfs. Every 202 before the disk filled stays
 * readable, the failures are 503 store_unavailable, and the daemon keeps answering: /healthz
 * with 503 store_failing, as long as the writes fail. */
static void disk_full(void **state)
{
    (void)state;
    if (geteuid() != 0 || flh_backend_pg())   /* a full disk under SQLite's file */
        skip();
    flh_daemon t;
    char dir[] = "/tmp/flingfull.XXXXXX";
    assert_non_null(mkdtemp(dir));
    if (mount("tmpfs", dir, "tmpfs", 0, "size=1m") != 0) {
        rmdir(dir);
        skip();
    }
    char extra[256];
    snprintf(extra, sizeof extra, "[server]\nmax_payload = 65536\n[type.fill]\nhandler = sleep\n");
    assert_int_equal(flh_start(&t, extra), 0);
    /* Point the store at the tmpfs: restart with --db via a rewritten config. */
    flh_kill(&t, SIGTERM);
    snprintf(t.db, sizeof t.db, "%s/fling.db", dir);
    FILE *f = fopen(t.conf, "a");
    fprintf(f, "[store]\npath = %s\n", t.db);
    fclose(f);
    assert_int_equal(flh_restart(&t), 0);

    fling_client *c = fling_client_new(t.url, NULL);
    char *payload = malloc(60000);
    memset(payload, 'p', 60000);
    char ids[64][24];
    int acked = 0, failed = 0;
    for (int i = 0; i < 200 && failed < 3; i++) {
        fling_response r = { 0 };
        int rc = fling_submit(c, "fill", payload, 60000, NULL, &r);
        if (rc == 0 && acked < 64)
            snprintf(ids[acked++], sizeof ids[0], "%s", r.id);
        else if (rc == FLING_EHTTP) {
            assert_int_equal(r.status, 503);
            assert_non_null(strstr(r.body, "store_unavailable"));
            failed++;
        }
        fling_response_clear(&r);
    }
    assert_true(acked > 0);
    assert_true(failed > 0);
    fling_response r = { 0 };
    assert_int_equal(fling_request(c, "GET", "/healthz", NULL, 0, &r), FLING_EHTTP);
    assert_int_equal(r.status, 503);
    assert_non_null(strstr(r.body, "\"status\":\"store_failing\""));
    fling_response_clear(&r);
    for (int i = 0; i < acked; i++) {
        char path[64];
        snprintf(path, sizeof path, "/v1/jobs/%.24s", ids[i]);
        assert_int_equal(fling_request(c, "GET", path, NULL, 0, &r), 0);
        fling_response_clear(&r);
    }
    free(payload);
    fling_client_free(c);
    assert_int_equal(flh_stop(&t), 0);
    umount(dir);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(submit_get_list_cancel), cmocka_unit_test(pagination_and_filters),
        cmocka_unit_test(idempotency),            cmocka_unit_test(error_codes),
        cmocka_unit_test(keep_alive_and_pipelining), cmocka_unit_test(bearer_token),
        cmocka_unit_test(connection_cap_and_idle_timeout),
        cmocka_unit_test(descriptor_limit_reclaims_slow_ones),
        cmocka_unit_test(burst_past_the_cap_loses_nothing),
        cmocka_unit_test(disk_full),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
