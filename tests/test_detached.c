/* test_detached.c — scenarios T1–T10 of the rules in docs/protocol.md "Detached clients",
 * against a real flingd over real sockets:
 * what fire-and-forget clients do to the server, and that every complete request is enqueued. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <openssl/sha.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fling.h"
#include "harness.h"

static flh_daemon D;

static int teardown(void **state)
{
    (void)state;
    return flh_stop(&D);
}

/* Each scenario uses its own job type so counts don't mix; all sleep for an hour, so the
 * jobs stay put whether or not a worker pool runs them. */
static const char *type_conf =
    "[server]\nread_timeout = 1\n"
    "[type.fin]\nhandler = sleep\n[type.rst]\nhandler = sleep\n[type.stop]\nhandler = sleep\n"
    "[type.half]\nhandler = sleep\n[type.trunc]\nhandler = sleep\n[type.pipe]\nhandler = sleep\n"
    "[type.big]\nhandler = sleep\n[type.burst]\nhandler = sleep\n[type.huge]\nhandler = sleep\n"
    "[type.unix]\nhandler = sleep\n";

static int setup_types(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    return flh_start(&D, type_conf);
}

static void fire(int port, const char *type, int rst)
{
    size_t len;
    char *req = flh_submit_req(type, "3600", 4, NULL, &len);
    assert_non_null(req);
    int fd = flh_connect_tcp(port);
    assert_true(fd >= 0);
    assert_int_equal(flh_send_all(fd, req, len), 0);
    if (rst)
        flh_close_rst(fd);
    else
        close(fd);
    free(req);
}

/* T1: 1,000 × connect/send/close() → exactly 1,000 jobs, >= 99% with status bit 1. */
static void t1_fin(void **state)
{
    (void)state;
    for (int i = 0; i < 1000; i++)
        fire(D.port, "fin", 0);
    long aborted = 0;
    long n = flh_wait_count(&D, "fin", 1000, 10000, &aborted);
    assert_int_equal(n, 1000);
    /* The verdict comes on a short timer after the 202: give it time to land. */
    for (double end = flh_now() + 3; aborted < 990 && flh_now() < end; usleep(100000))
        flh_count_jobs(&D, "fin", &aborted);
    printf("T1: %ld of 1000 with ABORTED\n", aborted);
    assert_true(aborted >= 990);
    assert_int_equal(flh_http(&D, "GET", "/healthz", NULL), 200);
}

/* T2: the same with an RST right after the send → 1,000 jobs. */
static void t2_rst(void **state)
{
    (void)state;
    for (int i = 0; i < 1000; i++)
        fire(D.port, "rst", 1);
    assert_int_equal(flh_wait_count(&D, "rst", 1000, 10000, NULL), 1000);
}

/* T3: SIGSTOP flingd, fire 100 with FIN and 100 with RST, SIGCONT → 200 jobs. */
static void t3_stopped(void **state)
{
    (void)state;
    assert_true(D.pid > 0);   /* kill(0, …) would stop the whole test group */
    kill(D.pid, SIGSTOP);
    for (int i = 0; i < 200; i++)
        fire(D.port, "stop", i % 2);
    kill(D.pid, SIGCONT);
    assert_int_equal(flh_wait_count(&D, "stop", 200, 10000, NULL), 200);
}

/* T4: shutdown(WR) then read → 202 and no ABORTED bit; keep-alive submits are fast (no Nagle). */
static void t4_half_close(void **state)
{
    (void)state;
    size_t len;
    char *req = flh_submit_req("half", "3600", 4, NULL, &len);
    int fd = flh_connect_tcp(D.port);
    assert_int_equal(flh_send_all(fd, req, len), 0);
    shutdown(fd, SHUT_WR);
    char buf[2048];
    assert_int_equal(flh_read_reply(fd, buf, sizeof buf, 5000), 202);
    close(fd);
    free(req);
    const char *id = strstr(buf, "\"id\":\"");
    assert_non_null(id);
    char path[64];
    snprintf(path, sizeof path, "/v1/jobs/%ld", strtol(id + 6, NULL, 10));
    usleep(300000);   /* past the verdict timer's first looks */
    json_t *job = NULL;
    assert_int_equal(flh_http(&D, "GET", path, &job), 200);
    assert_int_equal(json_integer_value(json_object_get(job, "status")), 0);
    json_decref(job);

    fling_client *c = fling_client_new(D.url, NULL);
    assert_non_null(c);
    double lat[50];
    for (int i = 0; i < 50; i++) {
        fling_response r = { 0 };
        double t0 = flh_now();
        assert_int_equal(fling_submit(c, "half", "3600", 4, NULL, &r), 0);
        lat[i] = flh_now() - t0;
        fling_response_clear(&r);
    }
    for (int i = 0; i < 50; i++)   /* median by selection: 50 values, sort is fine */
        for (int j = i + 1; j < 50; j++)
            if (lat[j] < lat[i]) {
                double t = lat[i];
                lat[i] = lat[j];
                lat[j] = t;
            }
    printf("T4: keep-alive submit median %.3f ms\n", lat[25] * 1000);
    assert_true(lat[25] < 0.040);   /* a Nagle stall is 40 ms per request; fsync'd commits are far below */
    fling_client_free(c);
    long ab = -1;
    assert_int_equal(flh_count_jobs(&D, "half", &ab), 51);
    assert_int_equal(ab, 0);
}

/* T5: a body cut short by close, by RST, or by a stall past read_timeout → 0 jobs, counter +3. */
static void t5_truncated(void **state)
{
    (void)state;
    long before = flh_metric(&D, "fling_requests_truncated_total");
    static const char part[] = "POST /v1/jobs/trunc HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly-part";
    for (int mode = 0; mode < 3; mode++) {
        int fd = flh_connect_tcp(D.port);
        assert_int_equal(flh_send_all(fd, part, sizeof part - 1), 0);
        if (mode == 0)
            close(fd);
        else if (mode == 1)
            flh_close_rst(fd);
        else {
            char buf[256];
            flh_read_reply(fd, buf, sizeof buf, 3000);   /* the server gives up after 1 s */
            close(fd);
        }
    }
    long after = before;
    for (double end = flh_now() + 5; after < before + 3 && flh_now() < end; usleep(50000))
        after = flh_metric(&D, "fling_requests_truncated_total");
    assert_int_equal(after - before, 3);
    assert_int_equal(flh_count_jobs(&D, "trunc", NULL), 0);
    assert_int_equal(flh_http(&D, "GET", "/healthz", NULL), 200);
}

/* T6: two pipelined POSTs in one write, then close without reading → 2 jobs. */
static void t6_pipelined(void **state)
{
    (void)state;
    size_t len;
    char *req = flh_submit_req("pipe", "3600", 4, NULL, &len);
    char *two = malloc(2 * len);
    memcpy(two, req, len);
    memcpy(two + len, req, len);
    int fd = flh_connect_tcp(D.port);
    assert_int_equal(flh_send_all(fd, two, 2 * len), 0);
    close(fd);
    free(req);
    free(two);
    assert_int_equal(flh_wait_count(&D, "pipe", 2, 5000, NULL), 2);
}

/* T7: a 1 MiB payload from a process that exits right after its send → one job, same bytes. */
static void t7_big_payload(void **state)
{
    (void)state;
    size_t n = 1024 * 1024;
    unsigned char *payload = malloc(n);
    for (size_t i = 0; i < n; i++)
        payload[i] = (unsigned char)(i * 2654435761u >> 13);
    unsigned char want[SHA256_DIGEST_LENGTH], got[SHA256_DIGEST_LENGTH];
    SHA256(payload, n, want);
    pid_t pid = fork();
    if (pid == 0) {
        fling_client *c = fling_client_new(D.url, NULL);
        int rc = c ? fling_fire(c, "big", payload, n, NULL) : -100;
        if (rc != 0)
            fprintf(stderr, "T7: fling_fire: %s\n", fling_strerror(rc));
        _exit(rc == 0 ? 0 : 1);
    }
    int st;
    waitpid(pid, &st, 0);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    assert_int_equal(flh_wait_count(&D, "big", 1, 10000, NULL), 1);
    sqlite3 *db;
    assert_int_equal(sqlite3_open_v2(D.db, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *st2;
    int prc = sqlite3_prepare_v2(db, "SELECT p.data FROM job_payloads p JOIN jobs j USING (id) WHERE j.type = 'big'", -1, &st2, NULL);
    if (prc != SQLITE_OK)
        fprintf(stderr, "T7: %s: %s\n", D.db, sqlite3_errmsg(db));
    assert_int_equal(prc, SQLITE_OK);
    assert_int_equal(sqlite3_step(st2), SQLITE_ROW);
    assert_int_equal(sqlite3_column_bytes(st2, 0), (int)n);
    SHA256(sqlite3_column_blob(st2, 0), n, got);
    assert_memory_equal(want, got, sizeof want);
    sqlite3_finalize(st2);
    sqlite3_close(db);
    free(payload);
}

/* T8: a burst of 20,000 fires from 32 senders → 20,000 jobs. */
#define T8_SENDERS 32
#define T8_EACH 625
static void *t8_sender(void *arg)
{
    (void)arg;
    size_t len;
    char *req = flh_submit_req("burst", "3600", 4, NULL, &len);
    long failed = 0;
    for (int i = 0; i < T8_EACH; i++) {
        int fd = flh_connect_tcp(D.port);
        if (fd < 0 || flh_send_all(fd, req, len) < 0)
            failed++;
        if (fd >= 0)
            close(fd);
    }
    free(req);
    return (void *)failed;
}

static void t8_burst(void **state)
{
    (void)state;
    pthread_t th[T8_SENDERS];
    double t0 = flh_now();
    for (int i = 0; i < T8_SENDERS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, t8_sender, NULL), 0);
    long failed = 0;
    for (int i = 0; i < T8_SENDERS; i++) {
        void *r;
        pthread_join(th[i], &r);
        failed += (long)r;
    }
    assert_int_equal(failed, 0);
    long n = flh_wait_count(&D, "burst", T8_SENDERS * T8_EACH, 60000, NULL);
    printf("T8: %ld jobs in %.1f s\n", n, flh_now() - t0);
    assert_int_equal(n, T8_SENDERS * T8_EACH);
}

/* T9: a Content-Length over max_payload while the client keeps sending → it reads 413; 0 jobs. */
static void t9_too_large(void **state)
{
    (void)state;
    static const char head[] = "POST /v1/jobs/huge HTTP/1.1\r\nHost: x\r\nContent-Length: 50000000\r\n\r\n";
    int fd = flh_connect_tcp(D.port);
    assert_int_equal(flh_send_all(fd, head, sizeof head - 1), 0);
    char chunk[65536];
    memset(chunk, 'x', sizeof chunk);
    for (int i = 0; i < 64; i++)   /* 4 MiB; the server drains it or resets after its reply */
        if (flh_send_all(fd, chunk, sizeof chunk) < 0)
            break;
    char buf[2048];
    assert_int_equal(flh_read_reply(fd, buf, sizeof buf, 5000), 413);
    assert_non_null(strstr(buf, "payload_too_large"));
    close(fd);
    assert_int_equal(flh_count_jobs(&D, "huge", NULL), 0);
}

/* T10: a fire over the Unix socket → ABORTED at once; fling_submit over it → status 0. */
static void t10_unix(void **state)
{
    (void)state;
    size_t len;
    char *req = flh_submit_req("unix", "3600", 4, NULL, &len);
    int fd = flh_connect_unix(D.sock);
    assert_true(fd >= 0);
    assert_int_equal(flh_send_all(fd, req, len), 0);
    close(fd);
    free(req);
    long ab = 0;
    assert_int_equal(flh_wait_count(&D, "unix", 1, 5000, &ab), 1);
    for (double end = flh_now() + 2; ab < 1 && flh_now() < end; usleep(50000))
        flh_count_jobs(&D, "unix", &ab);
    assert_int_equal(ab, 1);

    fling_client *c = fling_client_new(D.unix_url, NULL);
    fling_response r = { 0 };
    assert_int_equal(fling_submit(c, "unix", "3600", 4, NULL, &r), 0);
    char path[64];
    snprintf(path, sizeof path, "/v1/jobs/%s", r.id);
    fling_response_clear(&r);
    fling_client_free(c);
    usleep(200000);
    json_t *job = NULL;
    assert_int_equal(flh_http(&D, "GET", path, &job), 200);
    assert_int_equal(json_integer_value(json_object_get(job, "status")), 0);
    json_decref(job);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t1_fin),        cmocka_unit_test(t2_rst),      cmocka_unit_test(t3_stopped),
        cmocka_unit_test(t4_half_close), cmocka_unit_test(t5_truncated), cmocka_unit_test(t6_pipelined),
        cmocka_unit_test(t7_big_payload), cmocka_unit_test(t8_burst),   cmocka_unit_test(t9_too_large),
        cmocka_unit_test(t10_unix),
    };
    return cmocka_run_group_tests(tests, setup_types, teardown);
}
