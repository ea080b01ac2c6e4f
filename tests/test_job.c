/* test_job.c — daemon/job.c: the one-allocation layout of fl_job_new (absent parts, sizes,
 * overflow), the wall clock, and the JSON form: every contract field, nulls, RFC 3339 times,
 * and ill-formed UTF-8 in output replaced by U+FFFD. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "job.h"

/* 2026-11-23T10:00:00.123Z */
#define T_MS INT64_C(1795428000123)

static fl_job_sizes all_absent(void)
{
    fl_job_sizes sz = { FL_JOB_ABSENT, FL_JOB_ABSENT, FL_JOB_ABSENT,
                        FL_JOB_ABSENT, FL_JOB_ABSENT, FL_JOB_ABSENT, FL_JOB_ABSENT, FL_JOB_ABSENT,
                        FL_JOB_ABSENT, FL_JOB_ABSENT };
    return sz;
}

static void test_new_layout(void **state)
{
    fl_job_sizes sz = all_absent();
    fl_job *job;

    (void)state;
    sz.type = 4;
    sz.idem_key = 0;
    sz.output = 3;
    sz.payload = 5;
    job = fl_job_new(&sz);
    assert_non_null(job);
    assert_int_equal(job->id, 0);
    assert_int_equal(job->status, 0);
    assert_int_equal(job->created_at, 0);
    assert_null(job->callback);
    assert_null(job->error);
    assert_non_null(job->type);
    assert_non_null(job->idem_key);
    assert_string_equal(job->idem_key, "");
    assert_non_null(job->output);
    assert_int_equal(job->output_len, 3);
    assert_non_null(job->payload);
    assert_int_equal(job->payload_len, 5);
    /* Every part is zeroed, NUL included, and writable to its full size. */
    assert_memory_equal(job->payload, "\0\0\0\0\0", 6);
    memcpy(job->type, "echo", 4);
    memcpy(job->output, "abc", 3);
    memcpy(job->payload, "12345", 5);
    assert_string_equal(job->type, "echo");
    assert_string_equal(job->output, "abc");
    assert_string_equal((char *)job->payload, "12345");
    fl_job_free(job);
    fl_job_free(NULL);
}

static void test_new_absent(void **state)
{
    fl_job_sizes sz = all_absent();
    fl_job *job = fl_job_new(&sz);

    (void)state;
    assert_non_null(job);
    assert_null(job->type);
    assert_null(job->output);
    assert_int_equal(job->output_len, 0);
    assert_null(job->payload);
    assert_int_equal(job->payload_len, 0);
    fl_job_free(job);
}

static void test_new_overflow(void **state)
{
    fl_job_sizes sz = all_absent();

    (void)state;
    sz.payload = SIZE_MAX - 1;
    assert_null(fl_job_new(&sz));
    sz.payload = SIZE_MAX / 2;
    sz.output = SIZE_MAX / 2;
    assert_null(fl_job_new(&sz));
}

static void test_now_ms(void **state)
{
    int64_t before = (int64_t)time(NULL) * 1000, now = fl_job_now_ms();

    (void)state;
    assert_true(now >= before);
    assert_true(now < before + 2000);
}

/* new_job returns a job whose strings are copies of the arguments (NULL = absent). */
static fl_job *new_job(const char *type, const char *callback, const char *error,
                       const char *output, size_t output_len)
{
    fl_job_sizes sz = all_absent();
    fl_job *job;

    if (type)
        sz.type = strlen(type);
    if (callback)
        sz.callback = strlen(callback);
    if (error)
        sz.error = strlen(error);
    if (output)
        sz.output = output_len;
    job = fl_job_new(&sz);
    assert_non_null(job);
    if (type)
        memcpy(job->type, type, sz.type);
    if (callback)
        memcpy(job->callback, callback, sz.callback);
    if (error)
        memcpy(job->error, error, sz.error);
    if (output)
        memcpy(job->output, output, output_len);
    return job;
}

static const char *str_field(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);

    assert_true(json_is_string(v));
    return json_string_value(v);
}

static void assert_null_field(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);

    assert_non_null(v);
    assert_true(json_is_null(v));
}

static void test_json_full(void **state)
{
    fl_job *job = new_job("echo", "http://127.0.0.1:9000/cb", "exit status 3", "hi\n", 3);
    json_t *o, *v;

    (void)state;
    job->id = INT64_C(9007199254740993); /* above 2^53: why the id is a string */
    job->state = FL_STATE_FAILED;
    job->status = FL_STATUS_ABORTED | FL_STATUS_TIMEOUT;
    job->attempts = 3;
    job->max_attempts = 3;
    job->priority = -7;
    job->timeout = 2.5;
    job->created_at = T_MS;
    job->run_at = T_MS + 1000;
    job->started_at = T_MS + 1;
    job->finished_at = 1000; /* the epoch plus one second: a time, not "absent" */
    job->updated_at = T_MS + 2;
    job->has_exit_code = 1;
    job->exit_code = 3;
    o = fl_job_to_json(job);
    assert_non_null(o);
    assert_int_equal(json_object_size(o), 23);
    assert_string_equal(str_field(o, "id"), "9007199254740993");
    assert_string_equal(str_field(o, "type"), "echo");
    assert_string_equal(str_field(o, "state"), "failed");
    assert_int_equal(json_integer_value(json_object_get(o, "status")), 3);
    assert_int_equal(json_integer_value(json_object_get(o, "attempts")), 3);
    assert_int_equal(json_integer_value(json_object_get(o, "max_attempts")), 3);
    assert_int_equal(json_integer_value(json_object_get(o, "priority")), -7);
    v = json_object_get(o, "timeout");
    assert_true(json_is_real(v));
    assert_true(json_real_value(v) == 2.5);
    assert_string_equal(str_field(o, "created_at"), "2026-11-23T10:00:00.123Z");
    assert_string_equal(str_field(o, "run_at"), "2026-11-23T10:00:01.123Z");
    assert_string_equal(str_field(o, "started_at"), "2026-11-23T10:00:00.124Z");
    assert_string_equal(str_field(o, "finished_at"), "1970-01-01T00:00:01.000Z");
    assert_string_equal(str_field(o, "updated_at"), "2026-11-23T10:00:00.125Z");
    v = json_object_get(o, "exit_code");
    assert_true(json_is_integer(v));
    assert_int_equal(json_integer_value(v), 3);
    assert_string_equal(str_field(o, "error"), "exit status 3");
    assert_string_equal(str_field(o, "output"), "hi\n");
    assert_string_equal(str_field(o, "callback"), "http://127.0.0.1:9000/cb");
    assert_null(json_object_get(o, "payload"));
    json_decref(o);
    fl_job_free(job);
}

/* A copy is the same job in its own allocation, without the payload: its JSON equals the
 * original's, and freeing the original leaves the copy whole (ASan would see a shared part). */
static void test_copy(void **state)
{
    (void)state;
    static const char out[] = "a\0b";   /* output is bytes: a NUL inside must survive */
    fl_job_sizes sz = all_absent();
    sz.type = 4;
    sz.error = 4;
    sz.output = sizeof out - 1;
    sz.payload = 5;
    sz.traceparent = 3;
    fl_job *job = fl_job_new(&sz);
    assert_non_null(job);
    memcpy(job->type, "mail", 4);
    memcpy(job->error, "boom", 4);
    memcpy(job->output, out, sizeof out - 1);
    memcpy(job->payload, "hello", 5);
    memcpy(job->traceparent, "00-", 3);
    job->id = 42;
    job->state = FL_STATE_RUNNING;
    job->attempts = 2;
    job->created_at = T_MS;

    size_t bytes = 0;
    fl_job *c = fl_job_copy(job, &bytes);
    assert_non_null(c);
    assert_true(bytes >= sizeof *c + 4 + 4 + 3 + 3);
    assert_null(c->payload);
    assert_int_equal(c->payload_len, 0);
    assert_null(c->callback);
    assert_ptr_not_equal(c->type, job->type);
    json_t *a = fl_job_to_json(job), *b = fl_job_to_json(c);
    fl_job_free(job);
    assert_true(json_equal(a, b));
    assert_int_equal(c->output_len, 3);
    assert_memory_equal(c->output, out, 3);
    assert_string_equal(c->traceparent, "00-");
    json_decref(a);
    json_decref(b);
    fl_job_free(c);
}

static void test_json_nulls(void **state)
{
    fl_job *job = new_job("noop", NULL, NULL, NULL, 0);
    json_t *o;

    (void)state;
    job->id = 1;
    job->max_attempts = 1;
    o = fl_job_to_json(job);
    assert_non_null(o);
    assert_int_equal(json_object_size(o), 23);
    assert_int_equal(json_integer_value(json_object_get(o, "retried")), 0);
    assert_null_field(o, "previous_error");
    assert_string_equal(str_field(o, "id"), "1");
    assert_string_equal(str_field(o, "state"), "queued");
    assert_null_field(o, "created_at");
    assert_null_field(o, "run_at");
    assert_null_field(o, "started_at");
    assert_null_field(o, "finished_at");
    assert_null_field(o, "updated_at");
    assert_null_field(o, "exit_code");
    assert_null_field(o, "error");
    assert_null_field(o, "output");
    assert_null_field(o, "callback");
    assert_int_equal(json_integer_value(json_object_get(o, "status")), 0);
    json_decref(o);
    fl_job_free(job);
}

/* Each maximal ill-formed subpart becomes one U+FFFD; well-formed text and NUL survive. */
static void test_json_bad_utf8(void **state)
{
    static const char out[] =
        "ok\xff"                 /* a byte that never starts a sequence */
        "\xc3("                  /* a lead byte without its continuation */
        "\xed\xa0\x80"           /* an encoded surrogate: three subparts */
        "\xc0\xaf"               /* an overlong '/': two */
        "\xf0\x9f\x98\x80"       /* U+1F600, well-formed */
        "\xc3\xa9"               /* U+00E9, well-formed */
        "\0z"                    /* NUL is valid UTF-8 */
        "\xe2\x82";              /* a sequence cut short at the end: one */
    static const char want[] =
        "ok\xef\xbf\xbd"
        "\xef\xbf\xbd("
        "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
        "\xef\xbf\xbd\xef\xbf\xbd"
        "\xf0\x9f\x98\x80"
        "\xc3\xa9"
        "\0z"
        "\xef\xbf\xbd";
    fl_job *job = new_job("echo", NULL, "bad \xfe byte", out, sizeof(out) - 1);
    json_t *o, *v;
    char *text;

    (void)state;
    o = fl_job_to_json(job);
    assert_non_null(o);
    v = json_object_get(o, "output");
    assert_true(json_is_string(v));
    assert_int_equal(json_string_length(v), sizeof(want) - 1);
    assert_memory_equal(json_string_value(v), want, sizeof(want) - 1);
    assert_string_equal(str_field(o, "error"), "bad \xef\xbf\xbd byte");
    text = json_dumps(o, JSON_COMPACT);
    assert_non_null(text);
    assert_non_null(strstr(text, "\\u0000z"));
    free(text);
    json_decref(o);
    fl_job_free(job);
}

static void test_json_empty_output(void **state)
{
    fl_job *job = new_job("echo", NULL, NULL, "", 0);
    json_t *o;

    (void)state;
    o = fl_job_to_json(job);
    assert_non_null(o);
    assert_string_equal(str_field(o, "output"), "");
    json_decref(o);
    fl_job_free(job);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_layout),
        cmocka_unit_test(test_new_absent),
        cmocka_unit_test(test_new_overflow),
        cmocka_unit_test(test_now_ms),
        cmocka_unit_test(test_json_full),
        cmocka_unit_test(test_copy),
        cmocka_unit_test(test_json_nulls),
        cmocka_unit_test(test_json_bad_utf8),
        cmocka_unit_test(test_json_empty_output),
    };
    return cmocka_run_group_tests_name("job", tests, NULL, NULL);
}
