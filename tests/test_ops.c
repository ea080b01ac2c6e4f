/* test_ops.c — the operator's routes of a real flingd: pausing and resuming a type (its jobs
 * are stored but none starts, and the flag survives a restart), GET /v1/types, and running a
 * failed or cancelled job again (POST /v1/jobs/{id}/retry), and reading a job's payload back
 * with its Content-Type (GET /v1/jobs/{id}/payload) and in callbacks (callback_payload), and
 * retention ([store] retention, POST /v1/prune) on jobs back-dated in the database, and health
 * for the surroundings (open_health, open_metrics, 503 while the store fails), and the W3C trace
 * context reaching exec jobs, http handlers and callbacks, and periodic types (once per slot,
 * across a restart, the last missed slot once). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "receiver.h"

#include <sqlite3.h>

#include <sys/stat.h>
#include <fcntl.h>

#define END_WAIT_MS 10000
#define PAUSED_WATCH_S 1.0   /* how long a paused job must stay queued */

static const char *conf = "[type.p]\nhandler = noop\nconcurrency = 2\n[type.q]\nhandler = noop\n";

/* Sends method path, expects status, and copies the string field of the reply into out. */
static const char *call_field(const flh_daemon *d, const char *method, const char *path, int status,
                              const char *field, char *out, size_t outsz)
{
    json_t *body = NULL;
    assert_int_equal(flh_http(d, method, path, &body), status);
    snprintf(out, outsz, "%s", json_string_value(json_object_get(body, field)));
    json_decref(body);
    return out;
}

/* Submits one job of type and returns its id in id. */
static void submit(const flh_daemon *d, const char *type, char *id, size_t idsz)
{
    char path[64];
    snprintf(path, sizeof path, "/v1/jobs/%s", type);
    call_field(d, "POST", path, 202, "id", id, idsz);
}

/* The state of job id. */
static const char *state_of(const flh_daemon *d, const char *id, char *buf, size_t bufsz)
{
    char path[64];
    snprintf(path, sizeof path, "/v1/jobs/%s", id);
    return call_field(d, "GET", path, 200, "state", buf, bufsz);
}

/* The entry of type in GET /v1/types (caller decrefs the whole reply in *all). */
static json_t *type_entry(const flh_daemon *d, const char *type, json_t **all)
{
    assert_int_equal(flh_http(d, "GET", "/v1/types", all), 200);
    size_t i;
    json_t *t;
    json_array_foreach(json_object_get(*all, "types"), i, t)
        if (strcmp(json_string_value(json_object_get(t, "name")), type) == 0)
            return t;
    fail_msg("type %s not in /v1/types", type);
    return NULL;
}

/* The job stays queued for a while: the paused type starts nothing. */
static void stays_queued(const flh_daemon *d, const char *id)
{
    char st[32];
    double end = flh_now() + PAUSED_WATCH_S;
    while (flh_now() < end) {
        assert_string_equal(state_of(d, id, st, sizeof st), "queued");
        usleep(50000);
    }
}

static void pause_survives_restart(void **state)
{
    (void)state;
    flh_daemon d;
    json_t *body = NULL, *all = NULL;
    char id[32], other[32];
    assert_int_equal(flh_start(&d, conf), 0);

    assert_int_equal(flh_http(&d, "POST", "/v1/types/p/pause", &body), 200);
    assert_string_equal(json_string_value(json_object_get(body, "name")), "p");
    assert_true(json_is_true(json_object_get(body, "paused")));
    json_decref(body);

    submit(&d, "p", id, sizeof id);
    submit(&d, "q", other, sizeof other);   /* another type is not held back */
    json_decref(flh_wait_terminal(&d, other, END_WAIT_MS));
    stays_queued(&d, id);

    json_t *t = type_entry(&d, "p", &all);
    assert_true(json_is_true(json_object_get(t, "paused")));
    assert_string_equal(json_string_value(json_object_get(t, "handler")), "noop");
    assert_int_equal(json_integer_value(json_object_get(t, "concurrency")), 2);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(t, "counts"), "queued")), 1);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(t, "counts"), "running")), 0);
    json_decref(all);
    t = type_entry(&d, "q", &all);
    assert_false(json_is_true(json_object_get(t, "paused")));
    assert_int_equal(json_integer_value(json_object_get(json_object_get(t, "counts"), "succeeded")), 1);
    json_decref(all);

    /* the flag is the store's: after a restart the job still waits */
    assert_int_equal(flh_kill(&d, SIGTERM), 0);
    assert_int_equal(flh_restart(&d), 0);
    stays_queued(&d, id);
    t = type_entry(&d, "p", &all);
    assert_true(json_is_true(json_object_get(t, "paused")));
    json_decref(all);

    assert_int_equal(flh_http(&d, "POST", "/v1/types/p/resume", &body), 200);
    assert_false(json_is_true(json_object_get(body, "paused")));
    json_decref(body);
    json_t *job = flh_wait_terminal(&d, id, END_WAIT_MS);
    assert_string_equal(json_string_value(json_object_get(job, "state")), "succeeded");
    json_decref(job);
    /* resuming twice is no error */
    assert_int_equal(flh_http(&d, "POST", "/v1/types/p/resume", NULL), 200);
    assert_int_equal(flh_stop(&d), 0);
}

static void pause_errors(void **state)
{
    (void)state;
    flh_daemon d;
    json_t *body = NULL;
    assert_int_equal(flh_start(&d, conf), 0);
    assert_int_equal(flh_http(&d, "POST", "/v1/types/nope/pause", &body), 404);
    assert_string_equal(json_string_value(json_object_get(body, "error")), "unknown_type");
    json_decref(body);
    assert_int_equal(flh_http(&d, "GET", "/v1/types/p/pause", NULL), 405);
    assert_int_equal(flh_http(&d, "POST", "/v1/types/p/stop", NULL), 404);
    assert_int_equal(flh_http(&d, "POST", "/v1/types", NULL), 405);
    assert_int_equal(flh_stop(&d), 0);
}

/* Sends len bytes of req on a new connection: the reply's status, the reply in buf. */
static int raw(const flh_daemon *d, const char *req, size_t len, char *buf, size_t bufsz)
{
    int fd = flh_connect_tcp(d->port);
    assert_true(fd >= 0);
    assert_int_equal(flh_send_all(fd, req, len), 0);
    memset(buf, 0, bufsz);
    int status = flh_read_reply(fd, buf, bufsz, 5000);
    close(fd);
    return status;
}

/* Submits len bytes of payload to type with extra headers; want is the expected status, and
 * the new job's id lands in id (for a 202). */
static void submit_bytes(const flh_daemon *d, const char *type, const char *payload, size_t plen,
                         const char *headers, int want, char *id, size_t idsz)
{
    size_t len;
    char *req = flh_submit_req(type, payload, plen, headers, &len), buf[2048];
    assert_non_null(req);
    assert_int_equal(raw(d, req, len, buf, sizeof buf), want);
    free(req);
    if (want != 202)
        return;
    const char *at = strstr(buf, "Location: /v1/jobs/");
    assert_non_null(at);
    at += strlen("Location: /v1/jobs/");
    snprintf(id, idsz, "%.*s", (int)strspn(at, "0123456789"), at);
}

static void submit_raw(const flh_daemon *d, const char *type, const char *payload, const char *headers, char *id,
                       size_t idsz)
{
    submit_bytes(d, type, payload, strlen(payload), headers, 202, id, idsz);
}

/* The job JSON after POST /v1/jobs/{id}/retry answered want (caller decrefs). */
static json_t *retry(const flh_daemon *d, const char *id, int want)
{
    char path[64];
    json_t *body = NULL;
    snprintf(path, sizeof path, "/v1/jobs/%s/retry", id);
    assert_int_equal(flh_http(d, "POST", path, &body), want);
    return body;
}

static int64_t int_field(const json_t *o, const char *key) { return json_integer_value(json_object_get(o, key)); }

/* A failed job runs again with its payload and a new attempt budget, its history kept; a
 * cancelled one too; one that has not ended is refused. */
static void retry_failed_and_cancelled(void **state)
{
    (void)state;
    flh_daemon d;
    char conf_text[512], dir[] = "/tmp/fl-retry-XXXXXX", marker[64], id[32], sleeper[32];
    assert_non_null(mkdtemp(dir));
    snprintf(marker, sizeof marker, "%s/ok", dir);
    /* fails until the marker exists, and only ever succeeds with its own payload */
    snprintf(conf_text, sizeof conf_text,
             "[type.f]\nhandler = exec\ncommand = /bin/sh -c 'read x; [ \"$x\" = hello ] && test -e \"$0\" || "
             "{ echo \"no marker\" >&2; exit 3; }' %s\nmax_attempts = 3\nbackoff = 0.05\n", marker);
    assert_int_equal(flh_start(&d, conf_text), 0);

    submit_raw(&d, "f", "hello\n", "Fling-Max-Attempts: 2\r\n", id, sizeof id);
    json_t *job = flh_wait_terminal(&d, id, END_WAIT_MS);
    assert_string_equal(json_string_value(json_object_get(job, "state")), "failed");
    assert_int_equal(int_field(job, "attempts"), 2);
    char first_error[256];
    snprintf(first_error, sizeof first_error, "%s", json_string_value(json_object_get(job, "error")));
    assert_true(first_error[0] != '\0');
    json_decref(job);

    int fd = open(marker, O_CREAT | O_WRONLY, 0600);
    assert_true(fd >= 0);
    close(fd);
    job = retry(&d, id, 200);
    assert_string_equal(json_string_value(json_object_get(job, "state")), "queued");
    assert_int_equal(int_field(job, "attempts"), 0);
    assert_int_equal(int_field(job, "max_attempts"), 2);
    assert_int_equal(int_field(job, "retried"), 1);
    assert_int_equal(int_field(job, "previous_attempts"), 2);
    assert_string_equal(json_string_value(json_object_get(job, "previous_error")), first_error);
    assert_true(json_is_null(json_object_get(job, "error")));
    assert_true(json_is_null(json_object_get(job, "finished_at")));
    json_decref(job);
    job = flh_wait_terminal(&d, id, END_WAIT_MS);
    assert_string_equal(json_string_value(json_object_get(job, "state")), "succeeded");
    assert_int_equal(int_field(job, "attempts"), 1);
    assert_int_equal(int_field(job, "retried"), 1);
    json_decref(job);
    json_decref(retry(&d, id, 409));   /* succeeded: not retryable */

    /* running: 409 not_retryable; cancelled: queued again */
    submit_raw(&d, "t", "30", "", sleeper, sizeof sleeper);
    char st[32], path[64];
    double end = flh_now() + END_WAIT_MS / 1000.0;
    while (strcmp(state_of(&d, sleeper, st, sizeof st), "running") != 0 && flh_now() < end)
        usleep(20000);
    assert_string_equal(st, "running");
    job = retry(&d, sleeper, 409);
    assert_string_equal(json_string_value(json_object_get(job, "error")), "not_retryable");
    json_decref(job);
    snprintf(path, sizeof path, "/v1/jobs/%s", sleeper);
    assert_int_equal(flh_http(&d, "DELETE", path, NULL), 202);
    json_decref(flh_wait_terminal(&d, sleeper, END_WAIT_MS));
    job = retry(&d, sleeper, 200);
    assert_int_equal(int_field(job, "retried"), 1);
    assert_int_equal(int_field(job, "previous_attempts"), 1);
    json_decref(job);
    job = flh_wait_terminal(&d, sleeper, 300);   /* it runs again: not over within 0.3 s */
    assert_string_not_equal(json_string_value(json_object_get(job, "state")), "cancelled");
    json_decref(job);

    json_decref(retry(&d, "999999", 404));
    snprintf(path, sizeof path, "/v1/jobs/%s/retry", id);
    assert_int_equal(flh_http(&d, "GET", path, NULL), 405);
    assert_int_equal(flh_stop(&d), 0);
    unlink(marker);
    rmdir(dir);
}

/* GET path over a raw connection: the status; the reply in buf, *body its body of *len bytes. */
static int raw_get(const flh_daemon *d, const char *path, char *buf, size_t bufsz, const char **body, size_t *len)
{
    char req[128];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path);
    int status = raw(d, req, (size_t)n, buf, bufsz);
    const char *end = strstr(buf, "\r\n\r\n"), *cl = strstr(buf, "Content-Length: ");
    assert_non_null(end);
    assert_non_null(cl);
    *body = end + 4;
    *len = (size_t)atol(cl + strlen("Content-Length: "));
    return status;
}

static void payload_with_its_type(void **state)
{
    (void)state;
    flh_daemon d;
    static const char json[] = "{\"to\":\"a@b\"}";
    static const char bin[] = { 'a', 0, '\xff', '\n' };
    char id[32], path[64], reply[4096];
    const char *body;
    size_t len;
    assert_int_equal(flh_start(&d, conf), 0);
    assert_int_equal(flh_http(&d, "POST", "/v1/types/p/pause", NULL), 200);   /* keep them stored */

    submit_raw(&d, "p", json, "Content-Type: application/json; charset=utf-8\r\n", id, sizeof id);
    snprintf(path, sizeof path, "/v1/jobs/%s/payload", id);
    assert_int_equal(raw_get(&d, path, reply, sizeof reply, &body, &len), 200);
    assert_non_null(strstr(reply, "\r\nContent-Type: application/json; charset=utf-8\r\n"));
    assert_non_null(strstr(reply, "\r\nX-Content-Type-Options: nosniff\r\n"));
    assert_int_equal(len, strlen(json));
    assert_memory_equal(body, json, len);
    json_t *job = NULL;
    snprintf(path, sizeof path, "/v1/jobs/%s", id);
    assert_int_equal(flh_http(&d, "GET", path, &job), 200);
    assert_string_equal(json_string_value(json_object_get(job, "content_type")), "application/json; charset=utf-8");
    json_decref(job);

    /* no Content-Type: octet-stream, and the bytes as they were, NUL included */
    submit_bytes(&d, "p", bin, sizeof bin, "", 202, id, sizeof id);
    snprintf(path, sizeof path, "/v1/jobs/%s/payload", id);
    assert_int_equal(raw_get(&d, path, reply, sizeof reply, &body, &len), 200);
    assert_non_null(strstr(reply, "\r\nContent-Type: application/octet-stream\r\n"));
    assert_int_equal(len, sizeof bin);
    assert_memory_equal(body, bin, sizeof bin);

    assert_int_equal(flh_http(&d, "GET", "/v1/jobs/999999/payload", NULL), 404);
    assert_int_equal(flh_http(&d, "POST", path, NULL), 405);
    /* a Content-Type that could not be sent back is refused, nothing stored */
    char longtype[400] = "Content-Type: ";
    memset(longtype + strlen(longtype), 'x', 300);
    strcat(longtype, "\r\n");
    submit_bytes(&d, "p", "x", 1, longtype, 400, NULL, 0);
    assert_int_equal(flh_count_jobs(&d, "p", NULL), 2);
    assert_int_equal(flh_stop(&d), 0);
}

/* Reads the JSON file path once it exists (bounded wait); caller decrefs. */
static json_t *wait_json_file(const char *path)
{
    double end = flh_now() + END_WAIT_MS / 1000.0;
    while (access(path, F_OK) != 0 && flh_now() < end)
        usleep(20000);
    json_t *o = json_load_file(path, 0, NULL);
    if (!o)
        fail_msg("no JSON in %s after %d ms", path, END_WAIT_MS);
    return o;
}

/* A type with callback_payload = true sends the payload base64 in its callbacks; others not. */
static void callback_carries_payload(void **state)
{
    (void)state;
    flh_daemon d;
    char dir[] = "/tmp/fl-cbp-XXXXXX", conf_text[1024], id[32], plain[32], path[128];
    assert_non_null(mkdtemp(dir));
    static const char hook[] = "on_complete = exec:/bin/sh -c 'cat > \"$0/$FLING_JOB_ID.tmp\"; "
                               "mv \"$0/$FLING_JOB_ID.tmp\" \"$0/$FLING_JOB_ID.json\"' %s\n";
    int n = snprintf(conf_text, sizeof conf_text, "[type.cp]\nhandler = noop\ncallback_payload = true\n");
    n += snprintf(conf_text + n, sizeof conf_text - (size_t)n, hook, dir);
    n += snprintf(conf_text + n, sizeof conf_text - (size_t)n, "[type.plain]\nhandler = noop\n");
    snprintf(conf_text + n, sizeof conf_text - (size_t)n, hook, dir);
    assert_int_equal(flh_start(&d, conf_text), 0);

    submit_bytes(&d, "cp", "hello\0world", 11, "", 202, id, sizeof id);
    submit_bytes(&d, "plain", "hello", 5, "", 202, plain, sizeof plain);
    snprintf(path, sizeof path, "%s/%s.json", dir, id);
    json_t *body = wait_json_file(path);
    assert_string_equal(json_string_value(json_object_get(body, "payload")), "aGVsbG8Ad29ybGQ=");
    assert_string_equal(json_string_value(json_object_get(body, "event")), "complete");
    json_decref(body);
    unlink(path);
    snprintf(path, sizeof path, "%s/%s.json", dir, plain);
    body = wait_json_file(path);
    assert_null(json_object_get(body, "payload"));
    json_decref(body);
    unlink(path);
    assert_int_equal(flh_stop(&d), 0);
    assert_int_equal(flh_remove_dir(dir), 0);
}

/* Runs one statement on the database of a stopped daemon. */
static void sql(const flh_daemon *d, const char *stmt)
{
    sqlite3 *db;
    char *err = NULL;
    assert_int_equal(sqlite3_open(d->db, &db), SQLITE_OK);
    if (sqlite3_exec(db, stmt, NULL, NULL, &err) != SQLITE_OK)
        fail_msg("%s: %s", stmt, err);
    sqlite3_close(db);
}

/* Runs n noop jobs of type p to their end. */
static void run_jobs(const flh_daemon *d, int n)
{
    char id[32];
    for (int i = 0; i < n; i++) {
        submit(d, "q", id, sizeof id);
        json_decref(flh_wait_terminal(d, id, END_WAIT_MS));
    }
}

/* Jobs that finished longer ago than [store] retention go, with their payloads and
 * deliveries; the others stay, and ids are not handed out again. */
static void retention_deletes_old_jobs(void **state)
{
    (void)state;
    flh_daemon d;
    assert_int_equal(flh_start(&d, "[store]\nretention = 1h\n[type.q]\nhandler = noop\n"), 0);
    run_jobs(&d, 3);
    assert_int_equal(flh_kill(&d, SIGTERM), 0);
    sql(&d, "UPDATE jobs SET finished_at = finished_at - 7200000 WHERE id <= 2");
    assert_int_equal(flh_restart(&d), 0);
    assert_int_equal(flh_wait_metric(&d, "fling_jobs_pruned_total", 2, 10.0), 2);
    assert_int_equal(flh_http(&d, "GET", "/v1/jobs/1", NULL), 404);
    assert_int_equal(flh_http(&d, "GET", "/v1/jobs/2/payload", NULL), 404);
    assert_int_equal(flh_http(&d, "GET", "/v1/jobs/3", NULL), 200);
    char id[32];
    submit(&d, "q", id, sizeof id);
    assert_string_equal(id, "4");
    assert_int_equal(flh_stop(&d), 0);
}

/* retention = 0 keeps everything; POST /v1/prune deletes on demand, in batches. */
static void prune_on_demand(void **state)
{
    (void)state;
    flh_daemon d;
    json_t *body = NULL;
    assert_int_equal(flh_start(&d, "[store]\nretention = 0\n[type.q]\nhandler = noop\n"), 0);
    run_jobs(&d, 2);
    assert_int_equal(flh_kill(&d, SIGTERM), 0);
    /* more than one batch of old finished jobs, and one waiting job (of a type this config
     * does not run) that is never pruned */
    sql(&d, "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1200)"
            " INSERT INTO jobs (type, state, max_attempts, timeout_ms, created_at, run_at, finished_at, updated_at)"
            " SELECT 'q', 'failed', 1, 1000, 1000, 1000, 2000, 2000 FROM n;"
            "INSERT INTO jobs (type, state, max_attempts, timeout_ms, created_at, run_at, updated_at)"
            " VALUES ('p', 'queued', 1, 1000, 1000, 1000, 1000);"
            "UPDATE jobs SET finished_at = 3000 WHERE id <= 2");
    assert_int_equal(flh_restart(&d), 0);
    usleep(1500000);   /* past the first batch a retention would run */
    assert_int_equal(flh_metric(&d, "fling_jobs_pruned_total"), 0);
    assert_int_equal(flh_http(&d, "POST", "/v1/prune?older_than=1d", &body), 200);
    assert_int_equal(json_integer_value(json_object_get(body, "pruned")), 1202);
    json_decref(body);
    assert_int_equal(flh_metric(&d, "fling_jobs_pruned_total"), 1202);
    assert_int_equal(flh_count_jobs(&d, NULL, NULL), 1);
    assert_int_equal(flh_http(&d, "POST", "/v1/prune?older_than=1d", &body), 200);
    assert_int_equal(json_integer_value(json_object_get(body, "pruned")), 0);
    json_decref(body);
    assert_int_equal(flh_http(&d, "POST", "/v1/prune", NULL), 400);
    assert_int_equal(flh_http(&d, "POST", "/v1/prune?older_than=1w", NULL), 400);
    assert_int_equal(flh_http(&d, "GET", "/v1/prune?older_than=1", NULL), 405);
    assert_int_equal(flh_stop(&d), 0);
}

/* With a token, open_health and open_metrics leave those GETs open, and only those. */
static void open_health_and_metrics(void **state)
{
    (void)state;
    flh_daemon d;
    json_t *body = NULL;
    assert_int_equal(flh_start(&d, "[server]\ntoken = s3cret\nopen_health = true\n"), 0);
    assert_int_equal(flh_http(&d, "GET", "/healthz", &body), 200);
    assert_string_equal(json_string_value(json_object_get(body, "store")), "ok");
    assert_string_equal(json_string_value(json_object_get(body, "redis")), "off");
    json_decref(body);
    assert_int_equal(flh_http(&d, "GET", "/metrics", NULL), 401);
    assert_int_equal(flh_http(&d, "GET", "/v1/jobs", NULL), 401);
    assert_int_equal(flh_stop(&d), 0);
    assert_int_equal(flh_start(&d, "[server]\ntoken = s3cret\nopen_metrics = true\n"), 0);
    assert_true(flh_metric(&d, "fling_jobs_pruned_total") >= 0);
    assert_int_equal(flh_http(&d, "GET", "/healthz", NULL), 401);
    assert_int_equal(flh_stop(&d), 0);
}

/* Once the database file is gone every write fails: /healthz says so with a 503. */
static void health_503_while_store_fails(void **state)
{
    (void)state;
    flh_daemon d;
    json_t *body = NULL;
    assert_int_equal(flh_start(&d, NULL), 0);
    assert_int_equal(flh_http(&d, "GET", "/healthz", NULL), 200);
    assert_int_equal(unlink(d.db), 0);
    assert_int_equal(flh_http(&d, "POST", "/v1/jobs/t", NULL), 503);
    assert_int_equal(flh_http(&d, "GET", "/healthz", &body), 503);
    assert_string_equal(json_string_value(json_object_get(body, "status")), "store_failing");
    assert_string_equal(json_string_value(json_object_get(body, "store")), strerror(ESTALE));
    json_decref(body);
    assert_int_equal(flh_stop(&d), 0);
}

#define TRACEPARENT "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
#define TRACESTATE "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"

/* The receiver's request to path, waiting for up to n requests in all. */
static const flr_request *request_to(flr_receiver *rx, const char *path, size_t n)
{
    flr_wait(rx, n, END_WAIT_MS);
    for (size_t i = 0; i < flr_count(rx); i++)
        if (strcmp(flr_get(rx, i)->path, path) == 0)
            return flr_get(rx, i);
    fail_msg("no request to %s", path);
    return NULL;
}

/* traceparent/tracestate of a submit: in the job JSON, in an exec job's environment, on the
 * POST of an http handler and on the job's HTTP callbacks; an invalid traceparent is dropped. */
static void trace_context_is_passed_on(void **state)
{
    (void)state;
    flh_daemon d;
    flr_receiver *rx = flr_start();
    assert_non_null(rx);
    char conf_text[1024], id[32], hid[32];
    char *done = flr_url(rx, "/done"), *handler = flr_url(rx, "/handler");
    snprintf(conf_text, sizeof conf_text,
             "[type.tx]\nhandler = exec\ncommand = /bin/sh -c 'printf \"%%s|%%s\" \"$TRACEPARENT\" \"$TRACESTATE\"'\n"
             "on_complete = %s\n[type.th]\nhandler = http\nurl = %s\n", done, handler);
    free(done);
    free(handler);
    assert_int_equal(flh_start(&d, conf_text), 0);
    const char *headers = "traceparent: " TRACEPARENT "\r\ntracestate: " TRACESTATE "\r\n";
    submit_raw(&d, "tx", "", headers, id, sizeof id);
    submit_raw(&d, "th", "x", headers, hid, sizeof hid);
    json_t *job = flh_wait_terminal(&d, id, END_WAIT_MS);
    assert_string_equal(json_string_value(json_object_get(job, "state")), "succeeded");
    assert_string_equal(json_string_value(json_object_get(job, "traceparent")), TRACEPARENT);
    assert_string_equal(json_string_value(json_object_get(job, "tracestate")), TRACESTATE);
    assert_string_equal(json_string_value(json_object_get(job, "output")), TRACEPARENT "|" TRACESTATE);
    json_decref(job);
    const flr_request *cb = request_to(rx, "/done", 2);
    assert_string_equal(flr_header(cb, "traceparent"), TRACEPARENT);
    assert_string_equal(flr_header(cb, "tracestate"), TRACESTATE);
    const flr_request *h = request_to(rx, "/handler", 2);
    assert_string_equal(flr_header(h, "traceparent"), TRACEPARENT);
    assert_string_equal(flr_header(h, "tracestate"), TRACESTATE);

    /* invalid: ignored, with its tracestate; the job is still taken */
    submit_raw(&d, "tx", "", "traceparent: 00-zz-00f067aa0ba902b7-01\r\ntracestate: a=1\r\n", id, sizeof id);
    job = flh_wait_terminal(&d, id, END_WAIT_MS);
    assert_true(json_is_null(json_object_get(job, "traceparent")));
    assert_true(json_is_null(json_object_get(job, "tracestate")));
    assert_string_equal(json_string_value(json_object_get(job, "output")), "|");
    json_decref(job);
    assert_int_equal(flh_stop(&d), 0);
    flr_stop(rx);
}

/* The slots of the periodic jobs of type in d's (stopped) database, ascending, from their
 * Idempotency-Keys "cron:<12 digits>"; how many in *n. */
static void read_slots(const flh_daemon *d, const char *type, long *v, size_t cap, size_t *n)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_open(d->db, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT idem_key FROM jobs WHERE type = ?1 ORDER BY idem_key", -1, &st, NULL),
                     SQLITE_OK);
    sqlite3_bind_text(st, 1, type, -1, SQLITE_STATIC);
    *n = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *key = (const char *)sqlite3_column_text(st, 0);
        assert_non_null(key);
        assert_int_equal(strlen(key), 17);
        assert_int_equal(strncmp(key, "cron:", 5), 0);
        assert_true(*n < cap);
        v[(*n)++] = atol(key + 5);
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
}

/* A once-a-second schedule: one job per slot while flingd runs, no slot twice; after a stop of
 * a few seconds only the last missed slot is enqueued, once, and the schedule goes on. */
static void periodic_once_per_slot_across_restart(void **state)
{
    (void)state;
    flh_daemon d;
    const char *body;
    char reply[1024];
    size_t len, n;
    long v[256];
    assert_int_equal(flh_start(&d, "[type.tick]\nhandler = noop\nschedule = * * * * * *\nperiodic_payload = hi\n"), 0);
    assert_true(flh_wait_count(&d, "tick", 3, 10000, NULL) >= 3);
    assert_int_equal(raw_get(&d, "/v1/jobs/1/payload", reply, sizeof reply, &body, &len), 200);
    assert_int_equal(len, 2);
    assert_memory_equal(body, "hi", 2);
    assert_int_equal(flh_kill(&d, SIGTERM), 0);
    read_slots(&d, "tick", v, 256, &n);
    long last_before = v[n - 1];
    time_t down_at = time(NULL);
    sleep(3);   /* at least two slots pass while it is down */
    assert_int_equal(flh_restart(&d), 0);
    time_t up_at = time(NULL);
    long before = flh_count_jobs(&d, "tick", NULL);
    assert_true(flh_wait_count(&d, "tick", before + 3, 10000, NULL) >= before + 3);
    assert_int_equal(flh_kill(&d, SIGTERM), 0);

    read_slots(&d, "tick", v, 256, &n);
    size_t i = 0, gaps = 0;
    for (i = 1; i < n; i++) {
        assert_true(v[i] > v[i - 1]);   /* no slot twice */
        if (v[i] - v[i - 1] > 1)
            gaps++;
    }
    assert_int_equal(gaps, 1);          /* one stretch skipped: the downtime */
    for (i = 0; i < n && v[i] <= last_before; i++)
        ;
    assert_true(i < n);
    /* the first slot after the restart is the last one missed, enqueued at start, not the
     * next one to come */
    assert_true(v[i] >= (long)down_at + 1 && v[i] <= (long)up_at);
    assert_true(v[i] - last_before >= 2);
    assert_int_equal(flh_log_count(&d, "slots passed while flingd was down"), 1);
    assert_int_equal(flh_restart(&d), 0);
    assert_int_equal(flh_stop(&d), 0);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(pause_survives_restart),
        cmocka_unit_test(pause_errors),
        cmocka_unit_test(retry_failed_and_cancelled),
        cmocka_unit_test(payload_with_its_type),
        cmocka_unit_test(callback_carries_payload),
        cmocka_unit_test(retention_deletes_old_jobs),
        cmocka_unit_test(prune_on_demand),
        cmocka_unit_test(open_health_and_metrics),
        cmocka_unit_test(health_503_while_store_fails),
        cmocka_unit_test(trace_context_is_passed_on),
        cmocka_unit_test(periodic_once_per_slot_across_restart),
    };
    return cmocka_run_group_tests_name("ops", tests, NULL, NULL);
}
