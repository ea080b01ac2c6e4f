/* test_callbacks.c — completion/abort callbacks and attached mode, end to end: a real flingd, a
 * real HTTP receiver in this process (receiver.h), exec: hooks writing files, raw sockets for
 * clients that leave. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>
#include <jansson.h>
#include <openssl/hmac.h>

#include "fling.h"
#include "harness.h"
#include "receiver.h"

#define SECRET "t0p-secret"
#define WAIT_MS 10000

static flh_daemon D;
static flr_receiver *R;
static char work[64] = "/tmp/flingcb.XXXXXX";   /* files the exec: hooks write */
static char conf[4096];

static const char *str(json_t *o, const char *k) { return json_string_value(json_object_get(o, k)); }
static long num(json_t *o, const char *k) { return (long)json_integer_value(json_object_get(o, k)); }

/* Submits with extra headers over libfling's raw request; returns the status, id in id. */
static int submit(const char *type, const char *payload, const char *callback, char id[24])
{
    fling_client *c = fling_client_new(D.url, NULL);
    fling_job_opts o = { .callback = callback };
    fling_response r = { 0 };
    assert_int_equal(fling_submit(c, type, payload, strlen(payload), &o, &r), 0);
    int status = r.status;
    snprintf(id, 24, "%s", r.id);
    fling_response_clear(&r);
    fling_client_free(c);
    return status;
}

/* The request that reached the receiver for job id on path; NULL if none came in time. */
static const flr_request *request_for(const char *path, const char *id, int timeout_ms)
{
    for (double end = flh_now() + timeout_ms / 1000.0; flh_now() < end;) {
        for (size_t i = 0; i < flr_count(R); i++) {
            const flr_request *q = flr_get(R, i);
            const char *jid = flr_header(q, "Fling-Job-Id");
            if (strcmp(q->path, path) == 0 && jid && strcmp(jid, id) == 0)
                return q;
        }
        flr_wait(R, flr_count(R) + 1, 50);
    }
    return NULL;
}

static json_t *body_of(const flr_request *q)
{
    json_t *o = json_loadb(q->body, q->body_len, 0, NULL);
    assert_non_null(o);
    return o;
}

/* Checks Fling-Signature against an HMAC-SHA256 computed here with OpenSSL. */
static void assert_signed(const flr_request *q)
{
    unsigned char mac[32];
    unsigned int len = sizeof mac;
    assert_non_null(HMAC(EVP_sha256(), SECRET, (int)strlen(SECRET), (const unsigned char *)q->body, q->body_len,
                         mac, &len));
    char want[7 + 65] = "sha256=";
    for (unsigned i = 0; i < len; i++)
        snprintf(want + 7 + 2 * i, 3, "%02x", mac[i]);
    const char *got = flr_header(q, "Fling-Signature");
    assert_non_null(got);
    assert_string_equal(got, want);
}

static json_t *get_job(const char *id)
{
    char path[64];
    json_t *job = NULL;
    snprintf(path, sizeof path, "/v1/jobs/%s", id);
    assert_int_equal(flh_http(&D, "GET", path, &job), 200);
    return job;
}

/* Polls until job id shows a delivery in state want; returns that delivery's JSON (borrowed
 * from *job, which the caller decrefs). */
static json_t *wait_delivery(const char *id, const char *want, json_t **job)
{
    for (double end = flh_now() + WAIT_MS / 1000.0; flh_now() < end; usleep(30000)) {
        *job = get_job(id);
        json_t *d = json_array_get(json_object_get(*job, "callbacks"), 0);
        if (d && !strcmp(str(d, "state"), want))
            return d;
        json_decref(*job);
    }
    *job = NULL;
    fail_msg("job %s: no delivery became %s", id, want);
    return NULL;
}

static char *file_text(const char *path, int timeout_ms)
{
    for (double end = flh_now() + timeout_ms / 1000.0; flh_now() < end; usleep(20000)) {
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        static char buf[8192];
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = '\0';
        if (n && buf[n - 1] == '\n')   /* the hook finished writing */
            return buf;
    }
    return NULL;
}

/* ---------------------------------------------------------------- events and targets */

static void complete_is_signed_with_the_job_json(void **state)
{
    (void)state;
    char *url = flr_url(R, "done"), id[24];
    assert_int_equal(submit("quick", "", url, id), 202);
    const flr_request *q = request_for("/done", id, WAIT_MS);
    assert_non_null(q);
    assert_string_equal(q->method, "POST");
    assert_string_equal(flr_header(q, "Content-Type"), "application/json");
    assert_string_equal(flr_header(q, "Fling-Event"), "complete");
    assert_signed(q);
    json_t *o = body_of(q);
    assert_string_equal(str(o, "event"), "complete");
    assert_string_equal(str(o, "id"), id);
    assert_string_equal(str(o, "state"), "succeeded");
    assert_string_equal(str(o, "callback"), url);
    assert_int_equal(num(o, "status"), 0);   /* this client read its 202 */
    json_decref(o);
    free(url);
}

static void abort_after_failure_and_timeout(void **state)
{
    (void)state;
    char *url = flr_url(R, "abort"), failed[24], slow[24];
    assert_int_equal(submit("bad", "", url, failed), 202);
    assert_int_equal(submit("slowpoke", "5", url, slow), 202);
    const flr_request *q = request_for("/abort", failed, WAIT_MS);
    assert_non_null(q);
    json_t *o = body_of(q);
    assert_string_equal(str(o, "event"), "abort");
    assert_string_equal(str(o, "state"), "failed");
    assert_string_equal(str(o, "error"), "exit code 1");
    json_decref(o);
    q = request_for("/abort", slow, WAIT_MS);
    assert_non_null(q);
    o = body_of(q);
    assert_string_equal(str(o, "event"), "abort");
    assert_string_equal(str(o, "state"), "failed");
    assert_int_equal(num(o, "status"), 2);   /* timed out */
    json_decref(o);
    free(url);
}

/* A fire-and-forget client whose job times out: the receiver reads status 3. */
static void fire_and_forget_timeout_reports_status_3(void **state)
{
    (void)state;
    char *url = flr_url(R, "ff"), hdr[256];
    snprintf(hdr, sizeof hdr, "Fling-Callback: %s\r\n", url);
    size_t len;
    char *req = flh_submit_req("slowpoke", "5", 1, hdr, &len);
    int fd = flh_connect_tcp(D.port);
    assert_true(fd >= 0);
    assert_int_equal(flh_send_all(fd, req, len), 0);
    close(fd);   /* without reading the 202 */
    free(req);
    const flr_request *q = NULL;
    for (double end = flh_now() + WAIT_MS / 1000.0; !q && flh_now() < end; flr_wait(R, flr_count(R) + 1, 50))
        for (size_t i = 0; i < flr_count(R) && !q; i++)
            if (!strcmp(flr_get(R, i)->path, "/ff"))
                q = flr_get(R, i);
    assert_non_null(q);
    json_t *o = body_of(q);
    assert_string_equal(str(o, "event"), "abort");
    assert_int_equal(num(o, "status"), 3);
    json_decref(o);
    free(url);
}

/* The first request on path after index from; NULL if none came in time. */
static const flr_request *first_on(const char *path, size_t from, int timeout_ms)
{
    for (double end = flh_now() + timeout_ms / 1000.0; flh_now() < end; flr_wait(R, flr_count(R) + 1, 50))
        for (size_t i = from; i < flr_count(R); i++)
            if (!strcmp(flr_get(R, i)->path, path))
                return flr_get(R, i);
    return NULL;
}

/* A client that leaves without reading its 202, at different moments: the callback waits for
 * the verdict on that 202 (docs/protocol.md "The delivery verdict of a 202") and carries the job's final status. Closing before
 * the 202 arrives is status 1; once the client's TCP acknowledged it, it counts as delivered. */
static void gone_client_is_in_the_callback_status(void **state)
{
    (void)state;
    char *url = flr_url(R, "gone"), hdr[256];
    snprintf(hdr, sizeof hdr, "Fling-Callback: %s\r\n", url);
    for (int round = 0; round < 3; round++) {
        size_t from = flr_count(R), len;
        char *req = flh_submit_req("quick", "", 0, hdr, &len);
        int fd = flh_connect_tcp(D.port);
        assert_true(fd >= 0);
        /* Round 0 closes before the 202 can arrive, whatever the scheduler does to this
         * process: the daemon is stopped while the request is sent and the socket closed. */
        assert_true(D.pid > 0);
        if (round == 0)
            kill(D.pid, SIGSTOP);
        assert_int_equal(flh_send_all(fd, req, len), 0);
        free(req);
        usleep(20000 * (useconds_t)round);   /* the 202 arrives, unread; the job ends meanwhile */
        close(fd);
        if (round == 0)
            kill(D.pid, SIGCONT);
        const flr_request *q = first_on("/gone", from, WAIT_MS);
        assert_non_null(q);
        json_t *o = body_of(q);
        usleep(1200000);   /* past any verdict's bound: the job's status is final */
        json_t *job = get_job(str(o, "id"));
        if (num(o, "status") != num(job, "status") || (round == 0 && num(job, "status") != 1))
            fail_msg("round %d: job %s: callback status %ld, job status %ld", round, str(o, "id"),
                     num(o, "status"), num(job, "status"));
        json_decref(job);
        json_decref(o);
    }
    free(url);
}

/* A keep-alive client that read its 202: its callback is not held back. */
static void keep_alive_client_callback_is_prompt(void **state)
{
    (void)state;
    char *url = flr_url(R, "prompt"), hdr[256], buf[4096];
    snprintf(hdr, sizeof hdr, "Fling-Callback: %s\r\n", url);
    size_t from = flr_count(R), len;
    char *req = flh_submit_req("quick", "", 0, hdr, &len);
    int fd = flh_connect_tcp(D.port);
    assert_true(fd >= 0);
    double t0 = flh_now();
    assert_int_equal(flh_send_all(fd, req, len), 0);
    free(req);
    assert_int_equal(flh_read_reply(fd, buf, sizeof buf, WAIT_MS), 202);
    const flr_request *q = first_on("/prompt", from, WAIT_MS);
    assert_non_null(q);
    assert_true(flh_now() - t0 < 1.0);   /* not the 3 s bound of a verdict that never comes */
    json_t *o = body_of(q);
    assert_int_equal(num(o, "status"), 0);
    json_decref(o);
    close(fd);   /* open until the callback came */
    free(url);
}

static void refused_callback_url_enqueues_nothing(void **state)
{
    (void)state;
    long before = flh_count_jobs(&D, NULL, NULL);
    fling_client *c = fling_client_new(D.url, NULL);
    fling_job_opts o = { .callback = "http://example.com/steal" };
    fling_response r = { 0 };
    assert_int_equal(fling_submit(c, "quick", "", 0, &o, &r), FLING_EHTTP);
    assert_int_equal(r.status, 400);
    assert_non_null(strstr(r.body, "callback_not_allowed"));
    fling_response_clear(&r);
    fling_client_free(c);
    assert_int_equal(flh_count_jobs(&D, NULL, NULL), before);
}

static void receiver_failing_twice_then_accepting(void **state)
{
    (void)state;
    char *url = flr_url(R, "flaky"), id[24];
    long retried = flh_metric(&D, "fling_callbacks_total{outcome=\"retried\"}");
    flr_set_statuses(R, (const int[]){ 500, 503 }, 2, 200);
    size_t first = flr_count(R);
    assert_int_equal(submit("quick", "", url, id), 202);
    json_t *job;
    json_t *d = wait_delivery(id, "delivered", &job);
    assert_int_equal(num(d, "attempts"), 3);
    assert_int_equal(num(d, "last_status"), 200);
    assert_true(json_is_null(json_object_get(d, "last_error")));
    assert_string_equal(str(d, "event"), "complete");
    json_decref(job);
    /* Three attempts reached the receiver, the same delivery each time, and no more after. */
    usleep(300000);
    size_t n = 0;
    const char *delivery = NULL;
    for (size_t i = first; i < flr_count(R); i++) {
        const flr_request *q = flr_get(R, i);
        if (strcmp(q->path, "/flaky") != 0)
            continue;
        n++;
        if (!delivery)
            delivery = flr_header(q, "Fling-Delivery");
        assert_string_equal(flr_header(q, "Fling-Delivery"), delivery);
    }
    assert_int_equal(n, 3);
    assert_int_equal(flh_metric(&D, "fling_callbacks_total{outcome=\"retried\"}"), retried + 2);
    flr_set_statuses(R, NULL, 0, 200);
    free(url);
}

static void exec_hooks_get_the_json_on_stdin(void **state)
{
    (void)state;
    char ok[24], bad[24], path[128];
    assert_int_equal(submit("hooked", "ok", NULL, ok), 202);
    assert_int_equal(submit("hooked", "fail", NULL, bad), 202);
    snprintf(path, sizeof path, "%s/complete-%s.json", work, ok);
    char *text = file_text(path, WAIT_MS);
    assert_non_null(text);
    json_t *o = json_loads(text, 0, NULL);
    assert_non_null(o);
    assert_string_equal(str(o, "event"), "complete");
    assert_string_equal(str(o, "id"), ok);
    json_decref(o);
    snprintf(path, sizeof path, "%s/abort-%s.json", work, bad);
    text = file_text(path, WAIT_MS);
    assert_non_null(text);
    o = json_loads(text, 0, NULL);
    assert_non_null(o);
    assert_string_equal(str(o, "event"), "abort");
    assert_string_equal(str(o, "state"), "failed");
    json_decref(o);
}

/* kill -9 while a callback is on the wire: after the restart it arrives again, same delivery. */
static void kill9_before_delivery_then_restart_delivers(void **state)
{
    (void)state;
    char *url = flr_url(R, "crash"), id[24];
    flr_set_delay(R, 30);   /* the first attempt hangs */
    assert_int_equal(submit("quick", "", url, id), 202);
    const flr_request *q = request_for("/crash", id, WAIT_MS);
    assert_non_null(q);
    char delivery[32];
    snprintf(delivery, sizeof delivery, "%s", flr_header(q, "Fling-Delivery"));
    flh_kill(&D, SIGKILL);
    flr_set_delay(R, 0);
    size_t seen = flr_count(R);
    assert_int_equal(flh_restart(&D), 0);
    const flr_request *again = NULL;
    for (double end = flh_now() + WAIT_MS / 1000.0; !again && flh_now() < end; flr_wait(R, flr_count(R) + 1, 50))
        for (size_t i = seen; i < flr_count(R) && !again; i++)
            if (!strcmp(flr_get(R, i)->path, "/crash"))
                again = flr_get(R, i);
    assert_non_null(again);
    assert_string_equal(flr_header(again, "Fling-Delivery"), delivery);
    assert_string_equal(flr_header(again, "Fling-Attempt"), "2");
    json_t *job;
    wait_delivery(id, "delivered", &job);
    json_decref(job);
    free(url);
}

/* ---------------------------------------------------------------- attached mode */

/* Sends a submit with extra headers on a fresh connection; returns the fd. */
static int send_submit(const char *type, const char *payload, const char *headers)
{
    size_t len;
    char *req = flh_submit_req(type, payload, strlen(payload), headers, &len);
    int fd = flh_connect_tcp(D.port);
    assert_true(fd >= 0);
    assert_int_equal(flh_send_all(fd, req, len), 0);
    free(req);
    return fd;
}

static json_t *reply_body(const char *reply)
{
    const char *b = strstr(reply, "\r\n\r\n");
    assert_non_null(b);
    json_t *o = json_loads(b + 4, 0, NULL);
    assert_non_null(o);
    return o;
}

static void attached_success_answers_200_with_the_job(void **state)
{
    (void)state;
    char buf[8192];
    int fd = send_submit("t", "0.2", "Prefer: wait=10\r\n");
    double t0 = flh_now();
    assert_int_equal(flh_read_reply(fd, buf, sizeof buf, WAIT_MS), 200);
    assert_true(flh_now() - t0 >= 0.15);   /* it waited for the job */
    assert_non_null(strstr(buf, "Preference-Applied: wait=10"));
    json_t *o = reply_body(buf);
    assert_string_equal(str(o, "state"), "succeeded");
    assert_int_equal(num(o, "status"), 0);
    json_decref(o);
    close(fd);
}

static void attached_wait_times_out_with_202(void **state)
{
    (void)state;
    char buf[8192];
    int fd = send_submit("t", "3", "Prefer: respond-async, wait=1\r\n");
    double t0 = flh_now();
    assert_int_equal(flh_read_reply(fd, buf, sizeof buf, WAIT_MS), 202);
    double took = flh_now() - t0;
    assert_true(took >= 0.9 && took < 2.5);
    json_t *o = reply_body(buf);
    assert_string_equal(str(o, "state"), "running");
    char id[24];
    snprintf(id, sizeof id, "%s", str(o, "id"));
    json_decref(o);
    close(fd);
    json_t *job = flh_wait_terminal(&D, id, WAIT_MS);
    assert_string_equal(str(job, "state"), "succeeded");
    assert_int_equal(num(job, "status"), 0);   /* it read the 202 */
    json_decref(job);
}

/* Waits until a job of type is running (the waiting client has no id yet) and returns its id. */
static void running_id(const char *type, char id[24])
{
    char path[96];
    snprintf(path, sizeof path, "/v1/jobs?type=%s&state=running&limit=1", type);
    for (double end = flh_now() + 5; flh_now() < end; usleep(20000)) {
        json_t *list = NULL;
        assert_int_equal(flh_http(&D, "GET", path, &list), 200);
        const char *s = str(json_array_get(json_object_get(list, "jobs"), 0), "id");
        snprintf(id, 24, "%s", s ? s : "");
        json_decref(list);
        if (*id)
            return;
    }
    fail_msg("no %s job started", type);
}

static void attached_client_leaves(const char *policy, const char *want_state, const char *more)
{
    char hdr[160], id[24];
    snprintf(hdr, sizeof hdr, "Prefer: wait=30\r\nFling-On-Disconnect: %s\r\n%s", policy, more);
    int fd = send_submit("leave", "1", hdr);
    running_id("leave", id);   /* leave once the job runs, before it ends */
    close(fd);
    json_t *job = flh_wait_terminal(&D, id, WAIT_MS);
    assert_non_null(job);
    assert_string_equal(str(job, "state"), want_state);
    assert_int_equal(num(job, "status") & 1, 1);   /* the client was gone */
    json_decref(job);
}

static void attached_client_leaves_job_continues(void **state)
{
    (void)state;
    attached_client_leaves("continue", "succeeded", "");
}

static void attached_client_leaves_job_cancelled(void **state)
{
    (void)state;
    attached_client_leaves("cancel", "cancelled", "");
}

/* A client that half-closes right after its attached submit, before the commit: it has left
 * already when the job commits, so it gets the 202 at once (and the job status bit 1), not a
 * wait for the job's end. */
static void attached_client_half_closed_before_commit(void **state)
{
    (void)state;
    char buf[8192];
    int fd = send_submit("leave", "2", "Prefer: wait=30\r\n");
    shutdown(fd, SHUT_WR);
    double t0 = flh_now();
    assert_int_equal(flh_read_reply(fd, buf, sizeof buf, WAIT_MS), 202);
    assert_true(flh_now() - t0 < 1.5);   /* the job sleeps 2 s: it did not wait for it */
    close(fd);
    json_t *o = reply_body(buf);
    char id[24];
    snprintf(id, sizeof id, "%s", str(o, "id"));
    json_decref(o);
    json_t *job = flh_wait_terminal(&D, id, WAIT_MS);
    assert_non_null(job);
    assert_string_equal(str(job, "state"), "succeeded");
    assert_int_equal(num(job, "status") & 1, 1);
    json_decref(job);
}

/* PHP's stream wrapper sends Connection: close: its leaving must be seen all the same. */
static void attached_connection_close_client_leaves(void **state)
{
    (void)state;
    attached_client_leaves("cancel", "cancelled", "Connection: close\r\n");
}

static void attached_bad_headers_are_400(void **state)
{
    (void)state;
    char buf[4096];
    int fd = send_submit("quick", "", "Prefer: wait=soon\r\n");
    assert_int_equal(flh_read_reply(fd, buf, sizeof buf, WAIT_MS), 400);
    close(fd);
    fd = send_submit("quick", "", "Prefer: wait=1\r\nFling-On-Disconnect: maybe\r\n");
    assert_int_equal(flh_read_reply(fd, buf, sizeof buf, WAIT_MS), 400);
    assert_non_null(strstr(buf, "bad_header"));
    close(fd);
}

/* ---------------------------------------------------------------- the allow list */

/* Submits a quick job with Fling-Callback: url over a raw request (libfling would check the
 * URL itself); returns the status, the reply in buf. */
static int submit_raw_callback(const char *url, char *buf, size_t bufsz)
{
    char hdr[512];
    snprintf(hdr, sizeof hdr, "Fling-Callback: %s\r\n", url);
    int fd = send_submit("quick", "", hdr);
    int status = flh_read_reply(fd, buf, bufsz, WAIT_MS);
    close(fd);
    return status;
}

/* The allow list is "http://127.0.0.1:PORT, http://localhost:PORT/hooks". Each of these was a
 * string prefix of an entry and got through (the first one to another host); now libcurl's
 * parser reads them and each is refused before anything is stored. */
static void callback_allow_list_is_not_a_prefix(void **state)
{
    (void)state;
    int port = flr_port(R);
    static const struct {
        const char *before, *after;   /* around the receiver's port */
    } forms[] = {
        {"http://127.0.0.1:", "@evil.invalid:80/x"},   /* user 127.0.0.1, password PORT */
        {"http://127.0.0.1:", "@evil.invalid/"},
        {"http://127.0.0.1:", ".evil.invalid/"},
        {"http://127.0.0.1:", "x"},
        {"http://127.0.0.1:", "1/"},                  /* another port */
        {"http://localhost:", "/hooksevil"},          /* outside the path */
        {"http://localhost:", "/other/hooks"},
        {"http://localhost:", "/hooks/../admin"},
        {"http://user:pw@127.0.0.1:", "/"},           /* user info, even for the right host */
        {"http://user@localhost:", "/hooks"},
    };
    long before = flh_count_jobs(&D, NULL, NULL);
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
        char url[256], buf[4096];
        snprintf(url, sizeof url, "%s%d%s", forms[i].before, port, forms[i].after);
        int status = submit_raw_callback(url, buf, sizeof buf);
        if (status != 400 || !strstr(buf, "\"callback_not_allowed\""))
            fail_msg("%s: status %d, reply %s", url, status, buf);
    }
    char url[128], buf[4096];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", port + 1);
    assert_int_equal(submit_raw_callback(url, buf, sizeof buf), 400);
    assert_non_null(strstr(buf, "\"callback_not_allowed\""));
    assert_int_equal(flh_count_jobs(&D, NULL, NULL), before);
}

/* What the allow list allows still reaches the receiver, on the path asked for. */
static void allowed_callback_forms_are_delivered(void **state)
{
    (void)state;
    static const struct {
        const char *before, *after, *path;
    } cases[] = {
        {"http://127.0.0.1:", "/any/path?q=1", "/any/path?q=1"},
        {"http://localhost:", "/hooks", "/hooks"},
        {"http://LocalHost:", "/hooks/x", "/hooks/x"},
        {"http://localhost:", "/hooks/./y", "/hooks/y"},   /* sent as libcurl normalised it */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char url[256], buf[4096], id[24];
        snprintf(url, sizeof url, "%s%d%s", cases[i].before, flr_port(R), cases[i].after);
        assert_int_equal(submit_raw_callback(url, buf, sizeof buf), 202);
        json_t *o = reply_body(buf);
        snprintf(id, sizeof id, "%s", str(o, "id"));
        json_decref(o);
        if (!request_for(cases[i].path, id, WAIT_MS))
            fail_msg("%s: nothing reached %s", url, cases[i].path);
    }
}

/* ---------------------------------------------------------------- setup */

static int start(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    R = flr_start();
    if (!R || !mkdtemp(work))
        return -1;
    snprintf(conf, sizeof conf,
             "[callbacks]\nallow = http://127.0.0.1:%d, http://localhost:%d/hooks\nsecret = " SECRET "\nbackoff = 0.1\nbackoff_max = 0.2\n"
             "timeout = 60\n"
             "[type.quick]\nhandler = noop\n"
             "[type.bad]\nhandler = exec\ncommand = /bin/false\nmax_attempts = 1\n"
             "[type.slowpoke]\nhandler = sleep\ntimeout = 0.2\nmax_attempts = 1\n"
             "[type.leave]\nhandler = sleep\n"
             "[type.hooked]\nhandler = exec\ncommand = /bin/sh -c 'read x; [ \"$x\" = ok ]'\nmax_attempts = 1\n"
             "on_complete = exec:/bin/sh -c 'cat > \"$0/complete-$FLING_JOB_ID.json.tmp\"; echo >> \"$0/complete-$FLING_JOB_ID.json.tmp\"; "
             "mv \"$0/complete-$FLING_JOB_ID.json.tmp\" \"$0/complete-$FLING_JOB_ID.json\"' %s\n"
             "on_abort = exec:/bin/sh -c 'cat > \"$0/abort-$FLING_JOB_ID.json.tmp\"; echo >> \"$0/abort-$FLING_JOB_ID.json.tmp\"; "
             "mv \"$0/abort-$FLING_JOB_ID.json.tmp\" \"$0/abort-$FLING_JOB_ID.json\"' %s\n",
             flr_port(R), flr_port(R), work, work);
    return flh_start(&D, conf);
}

static int stop(void **state)
{
    (void)state;
    int rc = flh_stop(&D);
    flr_stop(R);
    if (flh_remove_dir(work) != 0)
        rc = -1;
    return rc;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(complete_is_signed_with_the_job_json),
        cmocka_unit_test(abort_after_failure_and_timeout),
        cmocka_unit_test(fire_and_forget_timeout_reports_status_3),
        cmocka_unit_test(gone_client_is_in_the_callback_status),
        cmocka_unit_test(keep_alive_client_callback_is_prompt),
        cmocka_unit_test(refused_callback_url_enqueues_nothing),
        cmocka_unit_test(callback_allow_list_is_not_a_prefix),
        cmocka_unit_test(allowed_callback_forms_are_delivered),
        cmocka_unit_test(receiver_failing_twice_then_accepting),
        cmocka_unit_test(exec_hooks_get_the_json_on_stdin),
        cmocka_unit_test(kill9_before_delivery_then_restart_delivers),
        cmocka_unit_test(attached_success_answers_200_with_the_job),
        cmocka_unit_test(attached_wait_times_out_with_202),
        cmocka_unit_test(attached_client_leaves_job_continues),
        cmocka_unit_test(attached_client_leaves_job_cancelled),
        cmocka_unit_test(attached_connection_close_client_leaves),
        cmocka_unit_test(attached_client_half_closed_before_commit),
        cmocka_unit_test(attached_bad_headers_are_400),
    };
    return cmocka_run_group_tests(tests, start, stop);
}
