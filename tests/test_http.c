/* test_http.c — daemon/http.c fed parsed heads, without sockets: routes, auth, validation and
 * the replies they produce (reply.c), the store op behind each route on a real store in a
 * mkdtemp directory, attached waits and a departing client (wait.c, cancel.c), and the 202
 * verdict ledger (ack.c). The request's ready callback stands in for the connection. */
#include <setjmp.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <ev.h>
#include <llhttp.h>

#include "ack.h"
#include "cancel.h"
#include "config.h"
#include "http.h"
#include "sched.h"
#include "stats.h"
#include "store.h"
#include "wait.h"

/* How long a store op may take to come back (a commit on a loaded machine). */
#define T_STORE_WAIT_MS 10000

typedef struct t_world {
    char dir[64];
    struct ev_loop *loop;
    fl_config cfg;
    fl_metrics metrics;
    fl_store *store;
    fl_sched *sched;
    fl_ack *ack;
    fl_wait *wait;
    fl_http *http;
    fl_cancel cancel;
    fl_stats stats;
    int changes;                 /* job changes told */
    char last_event[32];
} t_world;

/* A request as the test holds it: what the connection would. */
typedef struct t_req {
    fl_req req;
    int ready;                   /* ready() calls */
} t_req;

static void on_ready(fl_req *req)
{
    ((t_req *)req)->ready++;
}

/* The store's events, wired as server.c wires them to the waiters. */
static void changed(const fl_job *job, fl_store_event ev, void *udata)
{
    t_world *w = udata;
    w->changes++;
    snprintf(w->last_event, sizeof w->last_event, "%s", fl_store_event_name(ev));
    fl_wait_job_changed(w->wait, job);
}

static void notify(void *arg)
{
    (void)arg;   /* the test reaps by polling */
}

static int setup(void **state)
{
    t_world *w = calloc(1, sizeof *w);
    assert_non_null(w);
    snprintf(w->dir, sizeof w->dir, "/tmp/fl-http-XXXXXX");
    assert_non_null(mkdtemp(w->dir));
    assert_int_equal(fl_config_init(&w->cfg), 0);
    free(w->cfg.db_path);
    assert_true(asprintf(&w->cfg.db_path, "%s/fling.db", w->dir) > 0);
    w->cfg.token = strdup("s3cret");
    w->cfg.max_payload = 1024;
    w->loop = ev_loop_new(EVFLAG_AUTO);
    assert_non_null(w->loop);
    char err[256] = "";
    const fl_store_options so = { .path = w->cfg.db_path };
    const fl_store_hooks hooks = { .notify = notify, .on_change = changed, .udata = w };
    assert_int_equal(fl_store_open(&w->store, &so, &hooks, err, sizeof err), 0);
    /* The loop never runs, and a stopped scheduler claims nothing (not even the claim a submit
     * pushes behind itself): jobs stay queued. */
    assert_int_equal(fl_sched_new(&w->sched, w->loop, &w->cfg, w->store, NULL, notify, w), 0);
    fl_sched_stop(w->sched);
    assert_int_equal(fl_ack_new(&w->ack, w->store, &w->metrics), 0);
    w->cancel = (fl_cancel){ .sched = w->sched };
    assert_int_equal(fl_wait_new(&w->wait, w->loop, w->ack, w->store, &w->cancel), 0);
    w->stats = (fl_stats){ .cfg = &w->cfg, .metrics = &w->metrics, .store = w->store, .sched = w->sched };
    fl_http_env env = { .cfg = &w->cfg, .store = w->store, .sched = w->sched, .metrics = &w->metrics,
                        .wait = w->wait, .cancel = &w->cancel, .stats = &w->stats };
    assert_int_equal(fl_http_new(&w->http, &env), 0);
    /* What the scheduler pushed at its start (its read of the paused types) runs before any
     * test: a fault a test injects is then its own group's, not that read's. */
    for (int ms = 0; fl_store_pending(w->store) && ms < T_STORE_WAIT_MS; ms++) {
        fl_store_reap(w->store);
        usleep(1000);
    }
    assert_int_equal(fl_store_pending(w->store), 0);
    *state = w;
    return 0;
}

static int teardown(void **state)
{
    t_world *w = *state;
    fl_sched_free(w->sched);
    fl_store_close(w->store);
    fl_http_free(w->http);
    fl_wait_free(w->wait);
    fl_ack_free(w->ack);
    ev_loop_destroy(w->loop);
    char path[128];
    static const char *const files[] = { "fling.db", "fling.db-wal", "fling.db-shm" };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", w->dir, files[i]);
        unlink(path);
    }
    rmdir(w->dir);
    fl_config_free(&w->cfg);
    free(w);
    return 0;
}

/* Reaps the store until r has been handed back n times (bounded). */
static void wait_ready(t_world *w, t_req *r, int n)
{
    for (int ms = 0; r->ready < n && ms < T_STORE_WAIT_MS; ms++) {
        fl_store_reap(w->store);
        if (r->ready < n)
            usleep(1000);
    }
    assert_int_equal(r->ready, n);
}

/* Runs one request the way the connection does: head, body, complete; the headers are
 * "Name: value" strings, NULL-terminated. Returns what fl_http_start decided. */
static fl_body_action run(t_world *w, t_req *r, int method, const char *url, const char *body, ...)
{
    fl_http_header hdrs[FL_HTTP_MAX_HEADERS];
    size_t n = 0;
    int chunked = 0;
    va_list ap;
    va_start(ap, body);
    for (const char *h; (h = va_arg(ap, const char *)) != NULL;) {
        const char *colon = strchr(h, ':');
        hdrs[n++] = (fl_http_header){ h, (size_t)(colon - h), colon + 2, strlen(colon + 2) };
        chunked |= strncmp(h, "Transfer-Encoding", 17) == 0;
    }
    va_end(ap);
    fl_req_init(&r->req, on_ready);
    r->ready = 0;
    r->req.keep_alive = 1;
    fl_http_head head = { .method = method, .url = url, .url_len = strlen(url), .headers = hdrs, .n_headers = n,
                          .has_content_length = body != NULL, .content_length = body ? strlen(body) : 0,
                          .chunked = chunked };
    fl_body_action a = fl_http_start(w->http, &r->req, &head);
    if (a == FL_BODY_REFUSE)
        return a;
    if (a == FL_BODY_READ && body)
        fl_http_body(&r->req, body, strlen(body));
    fl_http_complete(&r->req);
    wait_ready(w, r, 1);
    return a;
}

#define AUTH "Authorization: Bearer s3cret"

static int status_of(const t_req *r)
{
    int st = 0;
    if (r->req.resp && r->req.resp_len > 12)
        sscanf(r->req.resp, "HTTP/1.1 %d", &st);
    return st;
}

/* The reply, NUL-terminated, for strstr. */
static const char *text_of(t_req *r)
{
    static char buf[65536];
    size_t n = r->req.resp_len < sizeof buf - 1 ? r->req.resp_len : sizeof buf - 1;
    memcpy(buf, r->req.resp, n);
    buf[n] = '\0';
    return buf;
}

static int64_t submit(t_world *w, t_req *r, const char *extra_header)
{
    assert_int_equal(run(w, r, HTTP_POST, "/v1/jobs/noop", "{}", AUTH, extra_header, NULL), FL_BODY_READ);
    assert_int_equal(status_of(r), 202);
    return r->req.ack_id;
}

static void test_auth(void **state)
{
    t_world *w = *state;
    t_req r;
    assert_int_equal(run(w, &r, HTTP_GET, "/healthz", NULL, NULL), FL_BODY_DISCARD);
    assert_int_equal(status_of(&r), 401);
    assert_non_null(strstr(text_of(&r), "\"error\":\"unauthorized\""));
    assert_string_equal(r.req.err_code, "unauthorized");
    fl_req_release(&r.req);
    run(w, &r, HTTP_GET, "/healthz", NULL, "Authorization: Bearer s3cre", NULL);
    assert_int_equal(status_of(&r), 401);
    fl_req_release(&r.req);
    run(w, &r, HTTP_GET, "/healthz", NULL, AUTH, NULL);
    assert_int_equal(status_of(&r), 200);
    assert_non_null(strstr(text_of(&r), "\"status\":\"ok\""));
    fl_req_release(&r.req);
}

/* Runs method url without a token and checks the status. */
static void expect_untokened(t_world *w, int method, const char *url, int want)
{
    t_req r;
    run(w, &r, method, url, NULL, NULL);
    assert_int_equal(status_of(&r), want);
    fl_req_release(&r.req);
}

/* open_health and open_metrics leave those two GETs open; every other route keeps the token. */
static void test_open_health_and_metrics(void **state)
{
    t_world *w = *state;
    w->cfg.open_health = 1;
    expect_untokened(w, HTTP_GET, "/healthz?x=1", 200);
    expect_untokened(w, HTTP_GET, "/metrics", 401);
    expect_untokened(w, HTTP_POST, "/healthz", 401);
    w->cfg.open_metrics = 1;
    expect_untokened(w, HTTP_GET, "/metrics", 200);
    expect_untokened(w, HTTP_GET, "/v1/jobs", 401);
    expect_untokened(w, HTTP_GET, "/v1/types", 401);
}

/* /healthz answers 503 with the store's error while its writes fail, 200 once one commits. */
static void test_health_follows_store(void **state)
{
    t_world *w = *state;
    t_req r;
    fl_store_inject_fault(w->store, -ENOSPC, 1);
    run(w, &r, HTTP_POST, "/v1/jobs/noop", "{}", AUTH, NULL);
    assert_int_equal(status_of(&r), 503);
    fl_req_release(&r.req);
    run(w, &r, HTTP_GET, "/healthz", NULL, AUTH, NULL);
    assert_int_equal(status_of(&r), 503);
    assert_non_null(strstr(text_of(&r), "\"status\":\"store_failing\""));
    assert_non_null(strstr(text_of(&r), strerror(ENOSPC)));
    fl_req_release(&r.req);
    submit(w, &r, NULL);
    fl_req_release(&r.req);
    run(w, &r, HTTP_GET, "/healthz", NULL, AUTH, NULL);
    assert_int_equal(status_of(&r), 200);
    assert_non_null(strstr(text_of(&r), "\"store\":\"ok\""));
    assert_non_null(strstr(text_of(&r), "\"redis\":\"off\""));
    fl_req_release(&r.req);
}

static void test_routes(void **state)
{
    t_world *w = *state;
    t_req r;
    run(w, &r, HTTP_GET, "/v2/nothing", NULL, AUTH, NULL);
    assert_int_equal(status_of(&r), 404);
    assert_string_equal(r.req.err_code, "not_found");
    fl_req_release(&r.req);
    run(w, &r, HTTP_PUT, "/v1/jobs/1", NULL, AUTH, NULL);
    assert_int_equal(status_of(&r), 405);
    assert_non_null(strstr(text_of(&r), "Allow: GET, DELETE\r\n"));
    fl_req_release(&r.req);
    run(w, &r, HTTP_POST, "/v1/jobs", NULL, AUTH, NULL);
    assert_int_equal(status_of(&r), 405);
    assert_non_null(strstr(text_of(&r), "Allow: GET\r\n"));
    fl_req_release(&r.req);
    run(w, &r, HTTP_GET, "/v1/jobs/abc", NULL, AUTH, NULL);
    assert_int_equal(status_of(&r), 404);
    fl_req_release(&r.req);
    run(w, &r, HTTP_GET, "/v1/jobs/987654", NULL, AUTH, NULL);
    assert_int_equal(status_of(&r), 404);
    assert_non_null(strstr(text_of(&r), "no job 987654"));
    fl_req_release(&r.req);
}

static void test_validation(void **state)
{
    t_world *w = *state;
    t_req r;
    /* No Content-Length: 411, the (empty) body is skipped and the connection kept. */
    assert_int_equal(run(w, &r, HTTP_POST, "/v1/jobs/noop", NULL, AUTH, NULL), FL_BODY_DISCARD);
    assert_int_equal(status_of(&r), 411);
    assert_int_equal(r.req.close_after, 0);
    fl_req_release(&r.req);
    /* Chunked and oversized bodies are refused unread, and the connection closes after. */
    assert_int_equal(run(w, &r, HTTP_POST, "/v1/jobs/noop", NULL, AUTH, "Transfer-Encoding: chunked", NULL),
                     FL_BODY_REFUSE);
    assert_int_equal(status_of(&r), 411);
    assert_int_equal(r.req.close_after, 1);
    assert_non_null(strstr(text_of(&r), "Connection: close\r\n"));
    fl_req_release(&r.req);
    char big[2048];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    assert_int_equal(run(w, &r, HTTP_POST, "/v1/jobs/noop", big, AUTH, NULL), FL_BODY_REFUSE);
    assert_int_equal(status_of(&r), 413);
    fl_req_release(&r.req);
    run(w, &r, HTTP_POST, "/v1/jobs/nosuchtype", "{}", AUTH, NULL);
    assert_int_equal(status_of(&r), 404);
    assert_string_equal(r.req.err_code, "unknown_type");
    fl_req_release(&r.req);
    run(w, &r, HTTP_POST, "/v1/jobs/noop", "{}", AUTH, "Fling-Priority: high", NULL);
    assert_int_equal(status_of(&r), 400);
    assert_string_equal(r.req.err_code, "bad_header");
    fl_req_release(&r.req);
    run(w, &r, HTTP_POST, "/v1/jobs/noop", "{}", AUTH, "Prefer: wait=soon", NULL);
    assert_int_equal(status_of(&r), 400);
    fl_req_release(&r.req);
    run(w, &r, HTTP_POST, "/v1/jobs/noop", "{}", AUTH, "Fling-On-Disconnect: maybe", NULL);
    assert_int_equal(status_of(&r), 400);
    fl_req_release(&r.req);
    run(w, &r, HTTP_GET, "/v1/jobs?limit=0", NULL, AUTH, NULL);
    assert_int_equal(status_of(&r), 400);
    fl_req_release(&r.req);
    run(w, &r, HTTP_GET, "/v1/jobs?state=bogus", NULL, AUTH, NULL);
    assert_int_equal(status_of(&r), 400);
    fl_req_release(&r.req);
    assert_int_equal(w->changes, 0);   /* nothing reached the store */
}

static void test_submit_get_cancel(void **state)
{
    t_world *w = *state;
    t_req r;
    int64_t id = submit(w, &r, "Fling-Priority: 3");
    assert_true(id > 0);
    char want[128];
    snprintf(want, sizeof want, "Location: /v1/jobs/%lld\r\n", (long long)id);
    assert_non_null(strstr(text_of(&r), want));
    snprintf(want, sizeof want, "{\"id\":\"%lld\",\"state\":\"queued\"}", (long long)id);
    assert_non_null(strstr(text_of(&r), want));
    assert_string_equal(w->last_event, "submitted");
    assert_int_equal(w->metrics.jobs_submitted, 1);
    fl_req_release(&r.req);

    char url[64];
    snprintf(url, sizeof url, "/v1/jobs/%lld", (long long)id);
    run(w, &r, HTTP_GET, url, NULL, AUTH, NULL);
    assert_int_equal(status_of(&r), 200);
    assert_non_null(strstr(text_of(&r), "\"priority\":3"));
    assert_non_null(strstr(text_of(&r), "\"callbacks\":[]"));
    fl_req_release(&r.req);

    run(w, &r, HTTP_DELETE, url, NULL, AUTH, NULL);
    assert_int_equal(status_of(&r), 200);
    assert_non_null(strstr(text_of(&r), "\"state\":\"cancelled\""));
    assert_string_equal(w->last_event, "cancelled");
    fl_req_release(&r.req);

    run(w, &r, HTTP_DELETE, url, NULL, AUTH, NULL);
    assert_int_equal(status_of(&r), 409);
    assert_string_equal(r.req.err_code, "not_cancellable");
    fl_req_release(&r.req);

    run(w, &r, HTTP_GET, "/v1/jobs?state=cancelled&limit=5", NULL, AUTH, NULL);
    assert_int_equal(status_of(&r), 200);
    assert_non_null(strstr(text_of(&r), "\"next\":null"));
    fl_req_release(&r.req);
}

static void test_duplicate_and_metrics(void **state)
{
    t_world *w = *state;
    t_req r;
    int64_t id = submit(w, &r, "Idempotency-Key: k-1");
    fl_req_release(&r.req);
    run(w, &r, HTTP_POST, "/v1/jobs/noop", "{}", AUTH, "Idempotency-Key: k-1", NULL);
    assert_int_equal(status_of(&r), 200);
    char want[128];
    snprintf(want, sizeof want, "{\"id\":\"%lld\",\"state\":\"queued\",\"duplicate\":true}", (long long)id);
    assert_non_null(strstr(text_of(&r), want));
    assert_int_equal(r.req.ack_id, 0);   /* only a 202 has a delivery verdict */
    fl_req_release(&r.req);

    run(w, &r, HTTP_GET, "/metrics", NULL, AUTH, NULL);
    assert_int_equal(status_of(&r), 200);
    assert_non_null(strstr(text_of(&r), "fling_jobs_duplicate_total 1"));
    assert_non_null(strstr(text_of(&r), "fling_jobs_submitted_total 1"));
    assert_non_null(strstr(text_of(&r), "type=\"noop\""));
    fl_req_release(&r.req);
}

/* A waiting submit: ready once with no reply while it waits, then the 200 of its ended job. */
static void test_wait_answered(void **state)
{
    t_world *w = *state;
    t_req r;
    run(w, &r, HTTP_POST, "/v1/jobs/noop", "{}", AUTH, "Prefer: wait=30", NULL);
    assert_null(r.req.resp);
    assert_int_equal(r.req.waiting, 1);
    int64_t id = r.req.id;
    char url[64];
    snprintf(url, sizeof url, "/v1/jobs/%lld", (long long)id);
    t_req del;
    run(w, &del, HTTP_DELETE, url, NULL, AUTH, NULL);   /* its end, told to the waiter */
    assert_int_equal(status_of(&del), 200);
    fl_req_release(&del.req);
    assert_int_equal(r.ready, 2);
    assert_int_equal(r.req.waiting, 0);
    assert_int_equal(status_of(&r), 200);
    assert_non_null(strstr(text_of(&r), "Preference-Applied: wait=30\r\n"));
    assert_non_null(strstr(text_of(&r), "\"state\":\"cancelled\""));
    fl_req_release(&r.req);
}

/* A waiting client leaves with Fling-On-Disconnect: cancel: status bit 1 first, then the shared
 * cancel policy; the 202 it gets is not judged again. */
static void test_wait_client_gone_cancels(void **state)
{
    t_world *w = *state;
    t_req r;
    run(w, &r, HTTP_POST, "/v1/jobs/noop", "{}", AUTH, "Prefer: wait=30", "Fling-On-Disconnect: cancel", NULL);
    assert_int_equal(r.req.waiting, 1);
    int64_t id = r.req.id;
    r.req.gone = 1;
    fl_http_client_gone(&r.req);
    assert_int_equal(r.ready, 2);
    assert_int_equal(status_of(&r), 202);
    assert_int_equal(r.req.close_after, 1);
    assert_int_equal(r.req.ack_id, 0);
    assert_int_equal(w->metrics.acks_aborted, 1);
    assert_true(fl_ack_pending(w->ack, id));   /* the ABORTED bit is on its way */
    fl_req_release(&r.req);
    for (int ms = 0; fl_ack_pending(w->ack, id) && ms < T_STORE_WAIT_MS; ms++) {
        fl_store_reap(w->store);
        usleep(1000);
    }
    assert_false(fl_ack_pending(w->ack, id));
    char url[64];
    snprintf(url, sizeof url, "/v1/jobs/%lld", (long long)id);
    run(w, &r, HTTP_GET, url, NULL, AUTH, NULL);
    assert_non_null(strstr(text_of(&r), "\"state\":\"cancelled\""));
    assert_non_null(strstr(text_of(&r), "\"status\":1"));
    fl_req_release(&r.req);
}

/* ---------------------------------------------------------------- ack.c */

typedef struct t_final { fl_ack_wait w; int fired; } t_final;

static void final_cb(fl_ack_wait *w) { ((t_final *)w)->fired++; }

static int probes;
static void probe(void *ctx, int64_t id)
{
    probes++;
    fl_ack_settle(ctx, id, FL_ACK_DELIVERED);   /* the socket already knows: delivered */
}

static void test_ack_verdicts(void **state)
{
    t_world *w = *state;
    t_final f = { 0 };
    assert_false(fl_ack_pending(w->ack, 41));
    assert_int_equal(fl_ack_when_final(w->ack, &f.w, 41, final_cb, &f), 0);   /* final already */
    assert_int_equal(fl_ack_expect(w->ack, 41, NULL, NULL), 0);
    assert_true(fl_ack_pending(w->ack, 41));
    assert_int_equal(fl_ack_when_final(w->ack, &f.w, 41, final_cb, &f), 1);
    fl_ack_settle(w->ack, 41, FL_ACK_DELIVERED);
    assert_int_equal(f.fired, 1);
    assert_false(fl_ack_pending(w->ack, 41));
    assert_int_equal(w->metrics.acks_delivered, 1);

    /* A holder that can judge at once is asked when someone starts waiting. */
    assert_int_equal(fl_ack_expect(w->ack, 42, probe, w->ack), 0);
    assert_int_equal(fl_ack_when_final(w->ack, &f.w, 42, final_cb, &f), 0);
    assert_int_equal(probes, 1);
    assert_int_equal(w->metrics.acks_delivered, 2);

    /* Unknown settles without a bit; a cancelled wait is never called. */
    assert_int_equal(fl_ack_expect(w->ack, 43, NULL, NULL), 0);
    assert_int_equal(fl_ack_when_final(w->ack, &f.w, 43, final_cb, &f), 1);
    fl_ack_cancel(&f.w);
    fl_ack_settle(w->ack, 43, FL_ACK_UNKNOWN);
    assert_int_equal(f.fired, 1);
    assert_int_equal(w->metrics.acks_unknown, 1);

    /* Many ids at once (the table grows), each still found. */
    for (int64_t id = 1000; id < 1300; id++)
        assert_int_equal(fl_ack_expect(w->ack, id, NULL, NULL), 0);
    for (int64_t id = 1000; id < 1300; id++) {
        assert_true(fl_ack_pending(w->ack, id));
        fl_ack_settle(w->ack, id, FL_ACK_DELIVERED);
        assert_false(fl_ack_pending(w->ack, id));
    }
}

/* An aborted 202 stays pending until its bit is committed; its waiters run after the "status"
 * change was told, so a callback body built then carries the bit. */
static void test_ack_aborted_until_commit(void **state)
{
    t_world *w = *state;
    t_req r;
    int64_t id = submit(w, &r, "Fling-Priority: 1");
    fl_req_release(&r.req);
    assert_int_equal(fl_ack_expect(w->ack, id, NULL, NULL), 0);
    t_final f = { 0 };
    assert_int_equal(fl_ack_when_final(w->ack, &f.w, id, final_cb, &f), 1);
    fl_ack_settle(w->ack, id, FL_ACK_ABORTED);
    assert_true(fl_ack_pending(w->ack, id));
    assert_int_equal(f.fired, 0);
    for (int ms = 0; !f.fired && ms < T_STORE_WAIT_MS; ms++) {
        fl_store_reap(w->store);
        usleep(1000);
    }
    assert_int_equal(f.fired, 1);
    assert_string_equal(w->last_event, "status");
    assert_false(fl_ack_pending(w->ack, id));
    assert_int_equal(w->metrics.acks_aborted, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_auth, setup, teardown),
        cmocka_unit_test_setup_teardown(test_routes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_health_and_metrics, setup, teardown),
        cmocka_unit_test_setup_teardown(test_health_follows_store, setup, teardown),
        cmocka_unit_test_setup_teardown(test_validation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_submit_get_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_and_metrics, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wait_answered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wait_client_gone_cancels, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ack_verdicts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ack_aborted_until_commit, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
