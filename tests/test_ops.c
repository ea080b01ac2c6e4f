/* test_ops.c — the operator's routes of a real flingd: pausing and resuming a type (its jobs
 * are stored but none starts, and the flag survives a restart), and GET /v1/types. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

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

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(pause_survives_restart),
        cmocka_unit_test(pause_errors),
    };
    return cmocka_run_group_tests_name("ops", tests, NULL, NULL);
}
