/* test_https.c — libfling and the fling CLI over https://: flingd behind a real nginx that
 * terminates TLS on a free 127.0.0.1 port, with a self-signed certificate made at start by the
 * openssl command (for 127.0.0.1 and localhost) and a second, unrelated one as a wrong CA.
 * Every CLI command that talks to the daemon runs over https with --cacert or FLING_CACERT;
 * the API's submit, request, kept-alive reuse, fire, threads and stream; a wrong CA and a missing CA
 * file are refused with FLING_ETLS and the CLI's one-line message; --insecure is accepted. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fling.h"
#include "harness.h"

#define OPENSSL "/usr/bin/openssl"
#define CLI_WAIT_MS 15000    /* bound on one run of the CLI */
#define FIRES 100            /* fling_fire calls over https */
#define KEPT_SUBMITS 20      /* submits on one kept-alive https connection */
#define THREADS 4            /* threads sharing one https client */
#define PER_THREAD 25        /* submits and fires of each */

/* The proxy settings of the README's "Behind nginx", plus those an event stream needs. */
static const char *location =
    "            proxy_http_version 1.1;\n"
    "            proxy_set_header Connection \"\";\n"
    "            proxy_request_buffering on;\n"
    "            proxy_ignore_client_abort on;\n"
    "            proxy_buffering off;\n"
    "            proxy_read_timeout 60s;\n";

static flh_daemon D;
static flh_nginx N;
static char certdir[64];
static char ca[128], wrong_ca[128], url[64];
static int plain_port;       /* the same nginx server without TLS, for a comparison */

/* Makes a self-signed certificate and key named base.pem / base.key in certdir. */
static int make_cert(const char *base, const char *cn)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             OPENSSL " req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 "
             "-subj /CN=%s -addext subjectAltName=IP:127.0.0.1,DNS:localhost "
             "-keyout %s/%s.key -out %s/%s.pem 2>%s/openssl.err",
             cn, certdir, base, certdir, base, certdir);
    return system(cmd) == 0 ? 0 : -1;
}

static int setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    snprintf(certdir, sizeof certdir, "/tmp/flingtls.XXXXXX");
    if (!mkdtemp(certdir) || make_cert("server", "fling-test") < 0 || make_cert("other", "someone-else") < 0)
        return -1;
    snprintf(ca, sizeof ca, "%s/server.pem", certdir);
    snprintf(wrong_ca, sizeof wrong_ca, "%s/other.pem", certdir);
    if (flh_start(&D, "[type.job]\nhandler = noop\n"
                      "[type.fired]\nhandler = noop\n"
                      "[type.bad]\nhandler = exec\ncommand = /bin/false\nmax_attempts = 1\n") < 0)
        return -1;
    char server[512];
    if ((plain_port = flh_free_port()) < 0)
        return -1;
    snprintf(server, sizeof server, "        listen 127.0.0.1:%d;\n"
                                    "        ssl_certificate %s/server.pem;\n"
                                    "        ssl_certificate_key %s/server.key;\n", plain_port, certdir, certdir);
    if (flh_nginx_start(&N, D.port, "ssl", server, location) < 0)
        return -1;
    snprintf(url, sizeof url, "https://127.0.0.1:%d", N.port);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    flh_nginx_stop(&N);
    flh_rmdir(certdir);
    return D.pid > 0 ? flh_stop(&D) : 0;
}

static fling_client *tls_client(const char *ca_file)
{
    fling_client *c = fling_client_new(url, NULL);
    assert_non_null(c);
    assert_int_equal(fling_client_set_tls(c, ca_file, 0), 0);
    return c;
}

/* ---- libfling --------------------------------------------------------------------------- */

static void api_submit_and_request(void **state)
{
    (void)state;
    fling_client *c = tls_client(ca);
    fling_response res;
    char first[24] = "";
    /* One kept-alive TLS connection carries them all (nginx logs them; the ids rise). */
    for (int i = 0; i < KEPT_SUBMITS; i++) {
        int rc = fling_submit(c, "job", "over tls", 8, NULL, &res);
        if (rc != 0)
            fail_msg("submit %d over https: %s (%s)", i, fling_strerror(rc), fling_tls_error());
        assert_int_equal(res.status, 202);
        if (i == 0)
            snprintf(first, sizeof first, "%s", res.id);
        fling_response_clear(&res);
    }
    char path[64];
    snprintf(path, sizeof path, "/v1/jobs/%s/payload", first);
    assert_int_equal(fling_request(c, "GET", path, NULL, 0, &res), 0);
    assert_int_equal(res.status, 200);
    assert_int_equal(res.body_len, 8);
    assert_memory_equal(res.body, "over tls", 8);
    fling_response_clear(&res);
    assert_int_equal(fling_request(c, "GET", "/v1/jobs/999999", NULL, 0, &res), FLING_EHTTP);
    assert_int_equal(res.status, 404);
    fling_response_clear(&res);
    fling_client_free(c);
}

/* How many lines of nginx's error log report a reset by its client: a TLS close that left
 * unread bytes would be one. Printed as a fact: Linux still delivers what was queued. */
static long resets_logged(void)
{
    char path[128], line[1024];
    snprintf(path, sizeof path, "%s/error.log", N.dir);
    FILE *f = fopen(path, "r");
    long n = 0;
    while (f && fgets(line, sizeof line, f))
        n += strstr(line, "reset by peer") != NULL;
    if (f)
        fclose(f);
    return n;
}

/* Fires FIRES jobs of type fired through c: how many calls succeeded; *ms their time. */
static long fire_many(fling_client *c, double *ms)
{
    long sent = 0;
    double t0 = flh_now();
    for (int i = 0; i < FIRES; i++)
        sent += fling_fire(c, "fired", "f", 1, NULL) == 0;
    *ms = (flh_now() - t0) * 1000;
    return sent;
}

/* Every fire over https is enqueued. The time of the same fires over plain HTTP to the same
 * nginx is printed beside it as a fact (what the handshake costs), never asserted. */
static void api_fire_enqueues_every_job(void **state)
{
    (void)state;
    long before = flh_count_jobs(&D, "fired", NULL);
    fling_client *c = tls_client(ca);
    double tls_ms, plain_ms;
    long sent = fire_many(c, &tls_ms);
    fling_client_free(c);
    long jobs = flh_wait_count(&D, "fired", before + FIRES, 30000, NULL) - before;
    char plain[64];
    snprintf(plain, sizeof plain, "http://127.0.0.1:%d", plain_port);
    c = fling_client_new(plain, NULL);
    assert_non_null(c);
    long plain_sent = fire_many(c, &plain_ms);
    fling_client_free(c);
    printf("fire through nginx: https %ld of %d sent in %.0f ms, %ld jobs in flingd; "
           "plain http %ld sent in %.0f ms; resets in nginx's log: %ld\n", sent, FIRES, tls_ms, jobs,
           plain_sent, plain_ms, resets_logged());
    assert_int_equal(sent, FIRES);
    assert_int_equal(jobs, FIRES);
    assert_int_equal(plain_sent, FIRES);
    assert_int_equal(flh_wait_count(&D, "fired", before + 2 * FIRES, 30000, NULL), before + 2 * FIRES);
}

/* One https client shared by threads: submits on its kept connection (under its lock) and
 * fires on connections of their own, each with a libcurl handle. */
static void *submit_and_fire(void *arg)
{
    fling_client *c = arg;
    long ok = 0;
    for (int i = 0; i < PER_THREAD; i++) {
        ok += fling_submit(c, "job", "s", 1, NULL, NULL) == 0;
        ok += fling_fire(c, "fired", "f", 1, NULL) == 0;
    }
    return (void *)ok;
}

static void api_shared_by_threads(void **state)
{
    (void)state;
    long before = flh_count_jobs(&D, "fired", NULL);
    fling_client *c = tls_client(ca);
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, submit_and_fire, c), 0);
    long ok = 0;
    for (int i = 0; i < THREADS; i++) {
        void *r;
        assert_int_equal(pthread_join(t[i], &r), 0);
        ok += (long)r;
    }
    fling_client_free(c);
    assert_int_equal(ok, 2 * THREADS * PER_THREAD);
    long want = before + THREADS * PER_THREAD;
    assert_int_equal(flh_wait_count(&D, "fired", want, 30000, NULL), want);
}

static void api_stream(void **state)
{
    (void)state;
    fling_client *c = tls_client(ca);
    fling_stream *s;
    assert_int_equal(fling_stream_open(c, "/v1/events?type=job", &s), 0);
    fling_response res;
    assert_int_equal(fling_submit(c, "job", "e", 1, NULL, &res), 0);
    char want[48];
    snprintf(want, sizeof want, "\"id\":\"%s\"", res.id);
    fling_response_clear(&res);
    char buf[8192];
    size_t len = 0;
    double end = flh_now() + 10;
    /* The stream's first bytes are the reply head; read until the job's event is in. */
    while (flh_now() < end && len < sizeof buf - 1 && !memmem(buf, len, want, strlen(want))) {
        ssize_t n = fling_stream_read(s, buf + len, sizeof buf - 1 - len, NULL);
        assert_true(n > 0);
        len += (size_t)n;
    }
    buf[len] = '\0';
    assert_non_null(strstr(buf, "HTTP/1.1 200"));
    assert_non_null(strstr(buf, want));
    fling_stream_close(s);
    fling_client_free(c);
}

static void api_wrong_ca_refused(void **state)
{
    (void)state;
    fling_client *c = tls_client(wrong_ca);
    fling_response res;
    assert_int_equal(fling_submit(c, "job", "x", 1, NULL, &res), FLING_ETLS);
    assert_int_equal(res.status, 0);
    printf("wrong CA: %s\n", fling_tls_error());
    assert_non_null(strstr(fling_tls_error(), "certificate"));
    assert_int_equal(fling_fire(c, "job", "x", 1, NULL), FLING_ETLS);
    fling_stream *s;
    assert_int_equal(fling_stream_open(c, "/v1/events", &s), FLING_ETLS);
    assert_null(s);
    /* The system's bundle does not know this self-signed certificate either. */
    assert_int_equal(fling_client_set_tls(c, NULL, 0), 0);
    assert_int_equal(fling_submit(c, "job", "x", 1, NULL, NULL), FLING_ETLS);
    /* A CA file that is not there is named in the message. */
    assert_int_equal(fling_client_set_tls(c, "/nonexistent/ca.pem", 0), 0);
    assert_int_equal(fling_submit(c, "job", "x", 1, NULL, NULL), FLING_ETLS);
    assert_non_null(strstr(fling_tls_error(), "/nonexistent/ca.pem"));
    /* Insecure: no check at all, so the job goes in. */
    assert_int_equal(fling_client_set_tls(c, wrong_ca, FLING_TLS_INSECURE), 0);
    assert_int_equal(fling_submit(c, "job", "x", 1, NULL, NULL), 0);
    assert_int_equal(fling_client_set_tls(c, NULL, 2), FLING_EINVAL);
    fling_client_free(c);
}

/* Plain HTTP spoken to the TLS port is not a reply libfling takes for one. */
static void api_http_to_tls_port(void **state)
{
    (void)state;
    char plain[64];
    snprintf(plain, sizeof plain, "http://127.0.0.1:%d", N.port);
    fling_client *c = fling_client_new(plain, NULL);
    assert_non_null(c);
    fling_response res;
    int rc = fling_submit(c, "job", "x", 1, NULL, &res);
    assert_int_equal(rc, FLING_EHTTP);   /* nginx: 400 "plain HTTP request was sent to HTTPS port" */
    assert_int_equal(res.status, 400);
    fling_response_clear(&res);
    fling_client_free(c);
}

/* ---- the CLI ---------------------------------------------------------------------------- */

/* Runs `fling --url URL [--cacert ca] args...` (ca NULL: none given) with env FLING_CACERT set
 * to env_ca if not NULL. */
static void cli(flh_cli *r, const char *ca_file, const char *env_ca, const char *const *args)
{
    char *argv[24];
    int n = 0;
    argv[n++] = (char *)FLING_CLI_PATH;
    argv[n++] = (char *)"--url";
    argv[n++] = url;
    if (ca_file) {
        argv[n++] = (char *)"--cacert";
        argv[n++] = (char *)ca_file;
    }
    for (; *args && n < 23; args++)
        argv[n++] = (char *)*args;
    argv[n] = NULL;
    char envbuf[200];
    char *env[] = { envbuf, (char *)"PATH=/usr/bin:/bin", NULL };
    snprintf(envbuf, sizeof envbuf, "FLING_CACERT=%s", env_ca ? env_ca : "");
    if (flh_cli_run(r, argv, env, CLI_WAIT_MS) < 0)
        fail_msg("the CLI did not exit within %d ms; stdout \"%s\", stderr \"%s\"", CLI_WAIT_MS, r->out, r->err);
}

static void expect_ok(const flh_cli *r)
{
    if (r->status != 0)
        fail_msg("exit %d, stdout \"%s\", stderr \"%s\"", r->status, r->out, r->err);
}

/* submit prints an id; returns it. */
static long cli_submit(const char *const *args)
{
    flh_cli r;
    cli(&r, ca, NULL, args);
    expect_ok(&r);
    long id = strtol(r.out, NULL, 10);
    assert_true(id > 0);
    return id;
}

static void cli_commands(void **state)
{
    (void)state;
    flh_cli r;
    char id[24];
    long job = cli_submit((const char *const[]){ "submit", "job", "hello", NULL });
    snprintf(id, sizeof id, "%ld", job);

    /* FLING_CACERT instead of --cacert */
    cli(&r, NULL, ca, (const char *const[]){ "status", id, NULL });
    expect_ok(&r);
    assert_non_null(strstr(r.out, "\"type\": \"job\""));
    cli(&r, ca, NULL, (const char *const[]){ "status", id, "--payload", NULL });
    expect_ok(&r);
    assert_string_equal(r.out, "hello");
    cli(&r, ca, NULL, (const char *const[]){ "list", "--type", "job", NULL });
    expect_ok(&r);
    assert_non_null(strstr(r.out, id));

    long later = cli_submit((const char *const[]){ "submit", "job", "x", "--delay", "3600", NULL });
    snprintf(id, sizeof id, "%ld", later);
    cli(&r, ca, NULL, (const char *const[]){ "cancel", id, NULL });
    expect_ok(&r);
    json_t *j = flh_wait_terminal(&D, id, 10000);
    assert_string_equal(json_string_value(json_object_get(j, "state")), "cancelled");
    json_decref(j);

    long bad = cli_submit((const char *const[]){ "submit", "bad", "x", NULL });
    snprintf(id, sizeof id, "%ld", bad);
    j = flh_wait_terminal(&D, id, 10000);
    assert_string_equal(json_string_value(json_object_get(j, "state")), "failed");
    json_decref(j);
    cli(&r, ca, NULL, (const char *const[]){ "retry", id, NULL });
    expect_ok(&r);

    cli(&r, ca, NULL, (const char *const[]){ "submit", "job", "waited", "--wait", "10", NULL });
    expect_ok(&r);
    assert_non_null(strstr(r.out, "succeeded"));
    cli(&r, ca, NULL, (const char *const[]){ "types", NULL });
    expect_ok(&r);
    cli(&r, ca, NULL, (const char *const[]){ "pause", "job", NULL });
    expect_ok(&r);
    cli(&r, ca, NULL, (const char *const[]){ "resume", "job", NULL });
    expect_ok(&r);
}

static void cli_detach(void **state)
{
    (void)state;
    long before = flh_count_jobs(&D, "fired", NULL);
    flh_cli r;
    cli(&r, ca, NULL, (const char *const[]){ "submit", "fired", "d", "--detach", NULL });
    expect_ok(&r);
    assert_string_equal(r.out, "");
    assert_int_equal(flh_wait_count(&D, "fired", before + 1, 10000, NULL), before + 1);
}

static void cli_watch(void **state)
{
    (void)state;
    char *argv[] = { (char *)FLING_CLI_PATH, (char *)"--url", url, (char *)"--cacert", ca,
                     (char *)"watch", (char *)"--type", (char *)"job", (char *)"--count", (char *)"1",
                     (char *)"--json", NULL };
    char *env[] = { (char *)"PATH=/usr/bin:/bin", NULL };
    flh_child ch;
    assert_int_equal(flh_cli_spawn(&ch, argv, env), 0);
    /* Submit until the watcher has seen one (it may subscribe after the first submit). */
    fling_client *c = tls_client(ca);
    flh_cli r;
    int finished = -1;
    for (int i = 0; i < 50 && finished < 0; i++) {
        assert_int_equal(fling_submit(c, "job", "w", 1, NULL, NULL), 0);
        usleep(100000);
        if (waitpid(ch.pid, NULL, WNOHANG | WNOWAIT) == ch.pid)
            finished = 1;
    }
    fling_client_free(c);
    assert_int_equal(flh_cli_finish(&ch, &r, CLI_WAIT_MS), 0);
    expect_ok(&r);
    assert_non_null(strstr(r.out, "\"type\":"));
}

static void cli_wrong_ca(void **state)
{
    (void)state;
    flh_cli r;
    static const char *const cmds[][4] = {
        { "submit", "job", "x", NULL }, { "submit", "job", "x", "--detach" }, { "status", "1", NULL },
        { "list", NULL }, { "watch", NULL },
    };
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        const char *args[5] = { cmds[i][0], cmds[i][1], cmds[i][2], cmds[i][3], NULL };
        cli(&r, wrong_ca, NULL, args);
        char want[160];
        snprintf(want, sizeof want, "fling: %s: TLS with %s failed: SSL certificate problem", cmds[i][0], url);
        if (!flh_cli_failed_as(&r, 3, want))
            fail_msg("%s: exit %d, stdout \"%s\", stderr \"%s\"", cmds[i][0], r.status, r.out, r.err);
    }
    printf("wrong CA, CLI: %s", r.err);
    const char *insecure[] = { "--insecure", "status", "1", NULL };
    cli(&r, wrong_ca, NULL, insecure);
    expect_ok(&r);
}

int main(void)
{
    if (access(FLH_NGINX, X_OK) != 0 || access(OPENSSL, X_OK) != 0) {
        printf("test_https: skipped: %s or %s is missing (scripts/install-deps --test installs "
               "nginx-light and openssl)\n", FLH_NGINX, OPENSSL);
        return 0;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(api_submit_and_request),
        cmocka_unit_test(api_fire_enqueues_every_job),
        cmocka_unit_test(api_shared_by_threads),
        cmocka_unit_test(api_stream),
        cmocka_unit_test(api_wrong_ca_refused),
        cmocka_unit_test(api_http_to_tls_port),
        cmocka_unit_test(cli_commands),
        cmocka_unit_test(cli_detach),
        cmocka_unit_test(cli_watch),
        cmocka_unit_test(cli_wrong_ca),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
