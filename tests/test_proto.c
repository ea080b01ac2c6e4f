/* test_proto.c — proto/: states, type names, ids, option headers (table-driven), the request
 * encoder (byte-exact), the response parser (byte by byte, whole, pipelined, too big,
 * garbage) and the Redis URL parser. Pure functions, literal bytes. */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <jansson.h>

#include "encode.h"
#include "job.h"
#include "headcheck.h"
#include "proto.h"
#include "rediskeys.h"
#include "redisurl.h"
#include "resp.h"

#define S(lit) lit, sizeof(lit) - 1

/* ---- states, types, ids --------------------------------------------------------------- */

static void test_state_names_round_trip(void **state)
{
    (void)state;
    static const char *const names[] = { "queued", "scheduled", "running",
                                         "succeeded", "failed", "cancelled" };
    for (int i = 0; i < FL_STATE_COUNT; i++) {
        fl_state s = FL_STATE_COUNT;
        assert_string_equal(fl_proto_state_name((fl_state)i), names[i]);
        assert_int_equal(fl_proto_state_parse(names[i], strlen(names[i]), &s), 0);
        assert_int_equal(s, i);
    }
    fl_state s;
    assert_string_equal(fl_proto_state_name(FL_STATE_COUNT), "unknown");
    assert_string_equal(fl_proto_state_name((fl_state)-1), "unknown");
    assert_int_equal(fl_proto_state_parse(S("Queued"), &s), -EINVAL);
    assert_int_equal(fl_proto_state_parse(S("queue"), &s), -EINVAL);
    assert_int_equal(fl_proto_state_parse(S("queuedx"), &s), -EINVAL);
    assert_int_equal(fl_proto_state_parse(S(""), &s), -EINVAL);
    /* length decides, not a NUL: "queued" followed by more bytes is not "queued" */
    assert_int_equal(fl_proto_state_parse("queued!", 6, &s), 0);
    assert_int_equal(s, FL_STATE_QUEUED);
}

static void test_state_terminal(void **state)
{
    (void)state;
    assert_false(fl_proto_state_terminal(FL_STATE_QUEUED));
    assert_false(fl_proto_state_terminal(FL_STATE_SCHEDULED));
    assert_false(fl_proto_state_terminal(FL_STATE_RUNNING));
    assert_true(fl_proto_state_terminal(FL_STATE_SUCCEEDED));
    assert_true(fl_proto_state_terminal(FL_STATE_FAILED));
    assert_true(fl_proto_state_terminal(FL_STATE_CANCELLED));
}

static void test_valid_type(void **state)
{
    (void)state;
    char longest[FL_TYPE_NAME_MAX + 1];
    memset(longest, 'a', sizeof longest);
    assert_true(fl_proto_valid_type(S("echo")));
    assert_true(fl_proto_valid_type(S("Send.Mail_v2-x")));
    assert_true(fl_proto_valid_type(longest, FL_TYPE_NAME_MAX));
    assert_false(fl_proto_valid_type(longest, FL_TYPE_NAME_MAX + 1));
    assert_false(fl_proto_valid_type(S("")));
    assert_false(fl_proto_valid_type(S("a b")));
    assert_false(fl_proto_valid_type(S("a/b")));
    assert_false(fl_proto_valid_type(S("a?b")));
    assert_false(fl_proto_valid_type(S("caf\xc3\xa9")));
    assert_false(fl_proto_valid_type("a\0b", 3));
    assert_false(fl_proto_valid_type(NULL, 3));
}

static void test_parse_duration(void **state)
{
    (void)state;
    static const struct { const char *s; int rc; int64_t v; } cases[] = {
        { "0", 0, 0 },
        { "90", 0, 90 },
        { "45s", 0, 45 },
        { "30m", 0, 1800 },
        { "12h", 0, 43200 },
        { "7d", 0, 604800 },
        { "0d", 0, 0 },
        { "007", 0, 7 },
        { "36500d", 0, FL_DURATION_MAX },
        { "36501d", -EINVAL, 0 },
        { "3153600001", -EINVAL, 0 },
        { "9999999999999d", -EINVAL, 0 },
        { "", -EINVAL, 0 },
        { "d", -EINVAL, 0 },
        { "1w", -EINVAL, 0 },
        { "1.5h", -EINVAL, 0 },
        { "-1", -EINVAL, 0 },
        { "1 d", -EINVAL, 0 },
        { "1dd", -EINVAL, 0 },
        { "1D", -EINVAL, 0 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t v = -1;
        int rc = fl_proto_parse_duration(cases[i].s, strlen(cases[i].s), &v);
        if (rc != cases[i].rc || (rc == 0 && v != cases[i].v))
            fail_msg("\"%s\": rc %d v %lld, want rc %d v %lld", cases[i].s, rc, (long long)v, cases[i].rc,
                     (long long)cases[i].v);
    }
    int64_t v;
    assert_int_equal(fl_proto_parse_duration(NULL, 0, &v), -EINVAL);
    assert_int_equal(fl_proto_parse_duration("12h", 2, &v), 0);   /* len bounds it: "12" */
    assert_int_equal(v, 12);
}

static void test_trace_context(void **state)
{
    (void)state;
    static const struct { const char *v; int ok; } parents[] = {
        { "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", 1 },
        { "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", 1 },
        { "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-later", 1 },   /* a later version */
        { "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x", 0 },       /* 00 is exact */
        { "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", 0 },         /* forbidden version */
        { "00-00000000000000000000000000000000-00f067aa0ba902b7-01", 0 },         /* zero trace id */
        { "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", 0 },         /* zero parent id */
        { "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", 0 },         /* upper case */
        { "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01", 0 },          /* short */
        { "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", 0 },
        { "", 0 },
    };
    for (size_t i = 0; i < sizeof parents / sizeof parents[0]; i++)
        if (fl_proto_traceparent_valid(parents[i].v, strlen(parents[i].v)) != parents[i].ok)
            fail_msg("traceparent \"%s\": want %d", parents[i].v, parents[i].ok);
    assert_int_equal(fl_proto_tracestate_valid("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE", 39), 1);
    assert_int_equal(fl_proto_tracestate_valid("a=1\r\nX: y", 10), 0);
    assert_int_equal(fl_proto_tracestate_valid("", 0), 0);
    char big[FL_TRACESTATE_MAX + 2];
    memset(big, 'a', sizeof big);
    assert_int_equal(fl_proto_tracestate_valid(big, FL_TRACESTATE_MAX), 1);
    assert_int_equal(fl_proto_tracestate_valid(big, FL_TRACESTATE_MAX + 1), 0);
}

static void test_parse_id(void **state)
{
    (void)state;
    static const struct { const char *s; int rc; int64_t v; } cases[] = {
        { "1", 0, 1 },
        { "42", 0, 42 },
        { "9223372036854775807", 0, INT64_MAX },
        { "9223372036854775808", -EINVAL, 0 },   /* INT64_MAX + 1 */
        { "99999999999999999999", -EINVAL, 0 },  /* 20 digits */
        { "0", -EINVAL, 0 },
        { "007", -EINVAL, 0 },                   /* one spelling per id */
        { "", -EINVAL, 0 },
        { "-1", -EINVAL, 0 },
        { "+1", -EINVAL, 0 },
        { " 1", -EINVAL, 0 },
        { "1 ", -EINVAL, 0 },
        { "1a", -EINVAL, 0 },
        { "0x10", -EINVAL, 0 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t v = -1;
        int rc = fl_proto_parse_id(cases[i].s, strlen(cases[i].s), &v);
        if (rc != cases[i].rc)
            fail_msg("parse_id(\"%s\") = %d, want %d", cases[i].s, rc, cases[i].rc);
        if (rc == 0)
            assert_int_equal(v, cases[i].v);
    }
    int64_t v;
    assert_int_equal(fl_proto_parse_id("12", 1, &v), 0);   /* length-bounded */
    assert_int_equal(v, 1);
    assert_int_equal(fl_proto_parse_id(NULL, 1, &v), -EINVAL);
}

/* ---- option headers ------------------------------------------------------------------- */

enum { T_TIMEOUT, T_ATTEMPTS, T_DELAY, T_PRIORITY, T_CALLBACK, T_KEY, T_NONE };

typedef struct opt_case {
    const char *name;
    const char *value;
    int rc;
    int what;          /* which field to check when rc == 0 */
    double num;        /* expected number (timeout, delay, attempts, priority) */
    const char *text;  /* expected string (callback, key) after trimming */
} opt_case;

static const opt_case opt_cases[] = {
    /* Fling-Timeout: decimal seconds, > 0, <= a week */
    { "Fling-Timeout", "30", 0, T_TIMEOUT, 30, NULL },
    { "fling-timeout", "0.5", 0, T_TIMEOUT, 0.5, NULL },
    { "FLING-TIMEOUT", " \t2.25 \t", 0, T_TIMEOUT, 2.25, NULL },
    { "Fling-Timeout", "007", 0, T_TIMEOUT, 7, NULL },
    { "Fling-Timeout", "604800", 0, T_TIMEOUT, 604800, NULL },
    { "Fling-Timeout", "604800.0000", 0, T_TIMEOUT, 604800, NULL },
    { "Fling-Timeout", "0.000000001", 0, T_TIMEOUT, 1e-9, NULL },
    { "Fling-Timeout", "604800.001", -EINVAL, 0, 0, NULL },
    { "Fling-Timeout", "0", -EINVAL, 0, 0, NULL },
    { "Fling-Timeout", "0.0", -EINVAL, 0, 0, NULL },
    { "Fling-Timeout", "-1", -EINVAL, 0, 0, NULL },
    { "Fling-Timeout", "+1", -EINVAL, 0, 0, NULL },
    { "Fling-Timeout", "1e3", -EINVAL, 0, 0, NULL },
    { "Fling-Timeout", "0x10", -EINVAL, 0, 0, NULL },
    { "Fling-Timeout", "inf", -EINVAL, 0, 0, NULL },
    { "Fling-Timeout", "nan", -EINVAL, 0, 0, NULL },
    { "Fling-Timeout", "1.", -EINVAL, 0, 0, NULL },
    { "Fling-Timeout", ".5", -EINVAL, 0, 0, NULL },
    { "Fling-Timeout", "1.2.3", -EINVAL, 0, 0, NULL },
    { "Fling-Timeout", "1,5", -EINVAL, 0, 0, NULL },
    { "Fling-Timeout", "5s", -EINVAL, 0, 0, NULL },
    { "Fling-Timeout", "5 5", -EINVAL, 0, 0, NULL },
    { "Fling-Timeout", "", -EINVAL, 0, 0, NULL },
    { "Fling-Timeout", "   ", -EINVAL, 0, 0, NULL },
    { "Fling-Timeout", "99999999999999999999999999999", -EINVAL, 0, 0, NULL },
    /* Fling-Max-Attempts: integer 1..1000 */
    { "Fling-Max-Attempts", "1", 0, T_ATTEMPTS, 1, NULL },
    { "fling-max-attempts", "1000", 0, T_ATTEMPTS, 1000, NULL },
    { "Fling-Max-Attempts", "0003", 0, T_ATTEMPTS, 3, NULL },
    { "Fling-Max-Attempts", "1001", -EINVAL, 0, 0, NULL },
    { "Fling-Max-Attempts", "0", -EINVAL, 0, 0, NULL },
    { "Fling-Max-Attempts", "-0", -EINVAL, 0, 0, NULL },
    { "Fling-Max-Attempts", "-1", -EINVAL, 0, 0, NULL },
    { "Fling-Max-Attempts", "+3", -EINVAL, 0, 0, NULL },
    { "Fling-Max-Attempts", "3.0", -EINVAL, 0, 0, NULL },
    { "Fling-Max-Attempts", "-", -EINVAL, 0, 0, NULL },
    { "Fling-Max-Attempts", "99999999999999999999", -EINVAL, 0, 0, NULL },
    /* Fling-Delay: decimal seconds, >= 0, <= 366 days */
    { "Fling-Delay", "0", 0, T_DELAY, 0, NULL },
    { "Fling-Delay", "1.5", 0, T_DELAY, 1.5, NULL },
    { "Fling-Delay", "31622400", 0, T_DELAY, 31622400, NULL },
    { "Fling-Delay", "31622400.5", -EINVAL, 0, 0, NULL },
    { "Fling-Delay", "-0.5", -EINVAL, 0, 0, NULL },
    { "Fling-Delay", "1E2", -EINVAL, 0, 0, NULL },
    /* Fling-Priority: int32, signed */
    { "Fling-Priority", "0", 0, T_PRIORITY, 0, NULL },
    { "Fling-Priority", "-5", 0, T_PRIORITY, -5, NULL },
    { "Fling-Priority", "-0", 0, T_PRIORITY, 0, NULL },
    { "Fling-Priority", "2147483647", 0, T_PRIORITY, 2147483647.0, NULL },
    { "Fling-Priority", "-2147483648", 0, T_PRIORITY, -2147483648.0, NULL },
    { "Fling-Priority", "2147483648", -EINVAL, 0, 0, NULL },
    { "Fling-Priority", "-2147483649", -EINVAL, 0, 0, NULL },
    { "Fling-Priority", "+5", -EINVAL, 0, 0, NULL },
    { "Fling-Priority", "--5", -EINVAL, 0, 0, NULL },
    { "Fling-Priority", "5-", -EINVAL, 0, 0, NULL },
    { "Fling-Priority", "1.5", -EINVAL, 0, 0, NULL },
    /* Fling-Callback: http:// or https://, no spaces or control bytes */
    { "Fling-Callback", "http://127.0.0.1:9000/done", 0, T_CALLBACK, 0, "http://127.0.0.1:9000/done" },
    { "fling-callback", " https://h.example.com/x?a=b ", 0, T_CALLBACK, 0, "https://h.example.com/x?a=b" },
    { "Fling-Callback", "http://", -EINVAL, 0, 0, NULL },
    { "Fling-Callback", "ftp://x/", -EINVAL, 0, 0, NULL },
    { "Fling-Callback", "HTTP://x/", -EINVAL, 0, 0, NULL },
    { "Fling-Callback", "http://a b/", -EINVAL, 0, 0, NULL },
    { "Fling-Callback", "http://a\x01/", -EINVAL, 0, 0, NULL },
    { "Fling-Callback", "http://caf\xc3\xa9/", -EINVAL, 0, 0, NULL },
    { "Fling-Callback", "", -EINVAL, 0, 0, NULL },
    /* Idempotency-Key: 1..255 visible ASCII */
    { "Idempotency-Key", "order-42", 0, T_KEY, 0, "order-42" },
    { "idempotency-key", "\t~!@#$%^&*()\t", 0, T_KEY, 0, "~!@#$%^&*()" },
    { "Idempotency-Key", "a b", -EINVAL, 0, 0, NULL },
    { "Idempotency-Key", "", -EINVAL, 0, 0, NULL },
    { "Idempotency-Key", "k\x7f", -EINVAL, 0, 0, NULL },
    /* other headers are not options */
    { "Content-Type", "text/plain", 1, T_NONE, 0, NULL },
    { "Fling-Timeouts", "5", 1, T_NONE, 0, NULL },
    { "Fling-Timeou", "5", 1, T_NONE, 0, NULL },
};

static void check_opt_case(const opt_case *c)
{
    fl_proto_opts o = { 0 };
    int rc = fl_proto_opts_set(&o, c->name, strlen(c->name), c->value, strlen(c->value));
    if (rc != c->rc)
        fail_msg("%s: \"%s\" gave %d, want %d", c->name, c->value, rc, c->rc);
    if (rc != 0) {
        assert_false(o.has_timeout || o.has_max_attempts || o.has_delay || o.has_priority);
        assert_null(o.callback);
        assert_null(o.idem_key);
        return;
    }
    switch (c->what) {
    case T_TIMEOUT: assert_true(o.has_timeout); assert_true(fabs(o.timeout - c->num) < 1e-12); break;
    case T_DELAY: assert_true(o.has_delay); assert_true(fabs(o.delay - c->num) < 1e-12); break;
    case T_ATTEMPTS: assert_true(o.has_max_attempts); assert_int_equal(o.max_attempts, (int)c->num); break;
    case T_PRIORITY: assert_true(o.has_priority); assert_int_equal(o.priority, (int32_t)c->num); break;
    case T_CALLBACK:
        assert_int_equal(o.callback_len, strlen(c->text));
        assert_memory_equal(o.callback, c->text, o.callback_len);
        break;
    case T_KEY:
        assert_int_equal(o.idem_key_len, strlen(c->text));
        assert_memory_equal(o.idem_key, c->text, o.idem_key_len);
        break;
    default: break;
    }
}

static void test_opts_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof opt_cases / sizeof opt_cases[0]; i++)
        check_opt_case(&opt_cases[i]);
}

static void test_opts_bounds_and_repeats(void **state)
{
    (void)state;
    char buf[FL_CALLBACK_MAX + 2];
    fl_proto_opts o = { 0 };

    memset(buf, 'k', sizeof buf);
    assert_int_equal(fl_proto_opts_set(&o, S("Idempotency-Key"), buf, FL_IDEM_KEY_MAX), 0);
    memset(&o, 0, sizeof o);
    assert_int_equal(fl_proto_opts_set(&o, S("Idempotency-Key"), buf, FL_IDEM_KEY_MAX + 1), -EINVAL);

    memcpy(buf, "http://", 7);
    assert_int_equal(fl_proto_opts_set(&o, S("Fling-Callback"), buf, FL_CALLBACK_MAX), 0);
    memset(&o, 0, sizeof o);
    assert_int_equal(fl_proto_opts_set(&o, S("Fling-Callback"), buf, FL_CALLBACK_MAX + 1), -EINVAL);

    /* a repeated option is ambiguous: refused, and the first value stays */
    memset(&o, 0, sizeof o);
    assert_int_equal(fl_proto_opts_set(&o, S("Fling-Priority"), S("3")), 0);
    assert_int_equal(fl_proto_opts_set(&o, S("fling-priority"), S("4")), -EINVAL);
    assert_int_equal(o.priority, 3);
    assert_int_equal(fl_proto_opts_set(&o, S("Idempotency-Key"), S("a")), 0);
    assert_int_equal(fl_proto_opts_set(&o, S("Idempotency-Key"), S("b")), -EINVAL);

    /* values are length-bounded, not NUL-terminated */
    memset(&o, 0, sizeof o);
    assert_int_equal(fl_proto_opts_set(&o, S("Fling-Max-Attempts"), "12x", 2), 0);
    assert_int_equal(o.max_attempts, 12);
    assert_int_equal(fl_proto_opts_set(&o, "Fling-Delayed", 11, "1", 1), 0);
    assert_true(o.has_delay);

    assert_true(fl_proto_opt_header(S("IDEMPOTENCY-KEY")));
    assert_false(fl_proto_opt_header(S("Authorization")));
    assert_int_equal(fl_proto_opts_set(&o, S("Fling-Timeout"), NULL, 0), -EINVAL);
}

/* ---- encoder -------------------------------------------------------------------------- */

static void assert_bytes(const char *got, size_t got_len, const char *want, size_t want_len)
{
    if (got_len != want_len || memcmp(got, want, want_len) != 0)
        fail_msg("encoded %zu bytes:\n%.*s\nwant %zu bytes:\n%.*s", got_len, (int)got_len, got,
                 want_len, (int)want_len, want);
}

static void test_encode_submit_exact(void **state)
{
    (void)state;
    static const char want[] =
        "POST /v1/jobs/send.mail HTTP/1.1\r\n"
        "Host: 127.0.0.1:7878\r\n"
        "Content-Length: 5\r\n"
        "Authorization: Bearer s3cr3t\r\n"
        "Fling-Timeout: 1.5\r\n"
        "Fling-Max-Attempts: 7\r\n"
        "Fling-Delay: 0.1\r\n"
        "Fling-Priority: -3\r\n"
        "Fling-Callback: http://127.0.0.1:9000/done\r\n"
        "Idempotency-Key: order-42\r\n"
        "\r\n"
        "a\0b\r\n";
    fl_proto_opts o = {
        .has_timeout = 1, .timeout = 1.5, .has_max_attempts = 1, .max_attempts = 7,
        .has_delay = 1, .delay = 0.1, .has_priority = 1, .priority = -3,
        .callback = "http://127.0.0.1:9000/done", .callback_len = 26,
        .idem_key = "order-42", .idem_key_len = 8,
    };
    char *out = NULL;
    size_t len = 0;
    assert_int_equal(fl_proto_encode_submit("127.0.0.1:7878", "s3cr3t", "send.mail", "a\0b\r\n", 5,
                                            &o, &out, &len), 0);
    assert_bytes(out, len, want, sizeof want - 1);
    free(out);
}

static void test_encode_submit_minimal(void **state)
{
    (void)state;
    static const char want[] =
        "POST /v1/jobs/echo HTTP/1.1\r\n"
        "Host: localhost\r\n"
        "Content-Length: 0\r\n"
        "\r\n";
    fl_proto_opts none = { 0 };
    char *out = NULL;
    size_t len = 0;
    assert_int_equal(fl_proto_encode_submit("localhost", NULL, "echo", NULL, 0, NULL, &out, &len), 0);
    assert_bytes(out, len, want, sizeof want - 1);
    free(out);
    assert_int_equal(fl_proto_encode_submit("localhost", "", "echo", "", 0, &none, &out, &len), 0);
    assert_bytes(out, len, want, sizeof want - 1);
    free(out);
}

static void test_encode_seconds(void **state)
{
    (void)state;
    static const struct { double v; const char *text; } cases[] = {
        { 30, "30" }, { 0.5, "0.5" }, { 0.1, "0.1" }, { 2.000001, "2.000001" },
        { 1.0000000004, "1" }, { 604800, "604800" }, { 0.0000001, "0.0000001" },
        { 6e-10, "0.000000001" }, { 86399.999999999, "86399.999999999" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fl_proto_opts o = { .has_timeout = 1, .timeout = cases[i].v };
        char *out = NULL, want[64];
        size_t len = 0;
        assert_int_equal(fl_proto_encode_submit("h", NULL, "t", NULL, 0, &o, &out, &len), 0);
        snprintf(want, sizeof want, "\r\nFling-Timeout: %s\r\n\r\n", cases[i].text);
        assert_true(len > strlen(want));
        assert_bytes(out + len - strlen(want), strlen(want), want, strlen(want));
        free(out);
    }
}

static void test_encode_refuses_bad_input(void **state)
{
    (void)state;
    char *out = (char *)"untouched";
    size_t len = 0;
    static const fl_proto_opts bad[] = {
        { .has_timeout = 1, .timeout = 0 },
        { .has_timeout = 1, .timeout = -1 },
        { .has_timeout = 1, .timeout = 4e-10 },  /* rounds to 0 */
        { .has_timeout = 1, .timeout = FL_TIMEOUT_MAX + 1 },
        { .has_delay = 1, .delay = -0.5 },
        { .has_delay = 1, .delay = FL_DELAY_MAX * 2 },
        { .has_max_attempts = 1, .max_attempts = 0 },
        { .has_max_attempts = 1, .max_attempts = FL_ATTEMPTS_MAX + 1 },
        { .callback = "ftp://x/", .callback_len = 8 },
        { .callback = "http://a\r\nX: y", .callback_len = 14 },
        { .idem_key = "a b", .idem_key_len = 3 },
        { .idem_key = "", .idem_key_len = 0 },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (fl_proto_encode_submit("h", NULL, "t", "x", 1, &bad[i], &out, &len) != -EINVAL)
            fail_msg("bad option case %zu was encoded", i);
    }
    fl_proto_opts nan_timeout = { .has_timeout = 1, .timeout = NAN };
    fl_proto_opts inf_delay = { .has_delay = 1, .delay = INFINITY };
    assert_int_equal(fl_proto_encode_submit("h", NULL, "t", "x", 1, &nan_timeout, &out, &len), -EINVAL);
    assert_int_equal(fl_proto_encode_submit("h", NULL, "t", "x", 1, &inf_delay, &out, &len), -EINVAL);
    assert_int_equal(fl_proto_encode_submit("h", NULL, "no/type", "x", 1, NULL, &out, &len), -EINVAL);
    assert_int_equal(fl_proto_encode_submit("h", NULL, "", "x", 1, NULL, &out, &len), -EINVAL);
    assert_int_equal(fl_proto_encode_submit("h", NULL, NULL, "x", 1, NULL, &out, &len), -EINVAL);
    assert_int_equal(fl_proto_encode_submit("h\r\nX: y", NULL, "t", "x", 1, NULL, &out, &len), -EINVAL);
    assert_int_equal(fl_proto_encode_submit("", NULL, "t", "x", 1, NULL, &out, &len), -EINVAL);
    assert_int_equal(fl_proto_encode_submit("h", "to ken", "t", "x", 1, NULL, &out, &len), -EINVAL);
    assert_int_equal(fl_proto_encode_submit("h", "tok\n", "t", "x", 1, NULL, &out, &len), -EINVAL);
    assert_int_equal(fl_proto_encode_submit("h", NULL, "t", NULL, 1, NULL, &out, &len), -EINVAL);
    assert_string_equal(out, "untouched");
}

/* Extra headers (attached mode) come after the options; what could smuggle or repeat a header
 * is refused. */
static void test_encode_submit_extra(void **state)
{
    (void)state;
    static const char want[] =
        "POST /v1/jobs/echo HTTP/1.1\r\n"
        "Host: h\r\n"
        "Content-Length: 1\r\n"
        "Fling-Delay: 2\r\n"
        "Prefer: wait=60\r\n"
        "Fling-On-Disconnect: cancel\r\n"
        "\r\n"
        "x";
    fl_proto_opts o = { .has_delay = 1, .delay = 2 };
    const fl_proto_header extra[] = { { FL_HDR_PREFER, "wait=60" },
                                      { FL_HDR_ON_DISCONNECT, "cancel" } };
    char *out = NULL;
    size_t len = 0;
    assert_int_equal(fl_proto_encode_submit_extra("h", NULL, "echo", "x", 1, &o, extra, 2,
                                                  &out, &len), 0);
    assert_bytes(out, len, want, sizeof want - 1);
    free(out);

    static const fl_proto_header bad[] = {
        { "Prefer", "wait=1\r\nX-Evil: 1" }, { "Pre fer", "wait=1" }, { "Prefer:", "wait=1" },
        { "", "v" }, { "Prefer", "" }, { NULL, "v" }, { "Prefer", NULL }, { "host", "h2" },
        { "Content-Length", "9" }, { "authorization", "Bearer x" }, { "fling-delay", "3" },
        { "Idempotency-Key", "k" },
    };
    out = (char *)"untouched";
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (fl_proto_encode_submit_extra("h", NULL, "t", NULL, 0, NULL, &bad[i], 1, &out, &len) != -EINVAL)
            fail_msg("bad extra header %zu was encoded", i);
    const fl_proto_header many[FL_ENCODE_EXTRA_MAX + 1] = {
        { "A", "1" }, { "B", "2" }, { "C", "3" }, { "D", "4" }, { "E", "5" } };
    assert_int_equal(fl_proto_encode_submit_extra("h", NULL, "t", NULL, 0, NULL, many,
                                                  FL_ENCODE_EXTRA_MAX + 1, &out, &len), -EINVAL);
    assert_int_equal(fl_proto_encode_submit_extra("h", NULL, "t", NULL, 0, NULL, NULL, 1, &out, &len),
                     -EINVAL);
    assert_string_equal(out, "untouched");
    assert_int_equal(fl_proto_encode_submit_extra("h", NULL, "t", NULL, 0, NULL, many,
                                                  FL_ENCODE_EXTRA_MAX, &out, &len), 0);
    free(out);
}

static void test_encode_request(void **state)
{
    (void)state;
    static const char get[] =
        "GET /v1/jobs?state=queued HTTP/1.1\r\n"
        "Host: [::1]:7878\r\n"
        "Authorization: Bearer t\r\n"
        "\r\n";
    static const char del[] =
        "DELETE /v1/jobs/7 HTTP/1.1\r\n"
        "Host: h\r\n"
        "\r\n";
    static const char post[] =
        "POST /x HTTP/1.1\r\n"
        "Host: h\r\n"
        "Content-Length: 0\r\n"
        "\r\n";
    static const char put[] =
        "PUT /x HTTP/1.1\r\n"
        "Host: h\r\n"
        "Content-Length: 3\r\n"
        "\r\n"
        "abc";
    char *out = NULL;
    size_t len = 0;
    assert_int_equal(fl_proto_encode_request("[::1]:7878", "t", "GET", "/v1/jobs?state=queued", NULL, 0, &out, &len), 0);
    assert_bytes(out, len, get, sizeof get - 1);
    free(out);
    assert_int_equal(fl_proto_encode_request("h", NULL, "DELETE", "/v1/jobs/7", NULL, 0, &out, &len), 0);
    assert_bytes(out, len, del, sizeof del - 1);
    free(out);
    assert_int_equal(fl_proto_encode_request("h", NULL, "POST", "/x", NULL, 0, &out, &len), 0);
    assert_bytes(out, len, post, sizeof post - 1);
    free(out);
    assert_int_equal(fl_proto_encode_request("h", NULL, "PUT", "/x", "abc", 3, &out, &len), 0);
    assert_bytes(out, len, put, sizeof put - 1);
    free(out);

    assert_int_equal(fl_proto_encode_request("h", NULL, "get", "/x", NULL, 0, &out, &len), -EINVAL);
    assert_int_equal(fl_proto_encode_request("h", NULL, "", "/x", NULL, 0, &out, &len), -EINVAL);
    assert_int_equal(fl_proto_encode_request("h", NULL, "GET", "x", NULL, 0, &out, &len), -EINVAL);
    assert_int_equal(fl_proto_encode_request("h", NULL, "GET", "/a b", NULL, 0, &out, &len), -EINVAL);
    assert_int_equal(fl_proto_encode_request("h", NULL, "GET", "/a\r\n", NULL, 0, &out, &len), -EINVAL);
    assert_int_equal(fl_proto_encode_request(NULL, NULL, "GET", "/", NULL, 0, &out, &len), -EINVAL);
}

static void test_encode_length_bounds(void **state)
{
    (void)state;
    char path[FL_ENCODE_PATH_MAX + 2], token[FL_ENCODE_TOKEN_MAX + 2];
    char *out = NULL;
    size_t len = 0;
    memset(path, 'p', sizeof path);
    path[0] = '/';
    memset(token, 't', sizeof token);

    path[FL_ENCODE_PATH_MAX] = '\0';
    token[FL_ENCODE_TOKEN_MAX] = '\0';
    assert_int_equal(fl_proto_encode_request("h", token, "GET", path, NULL, 0, &out, &len), 0);
    assert_true(len > FL_ENCODE_PATH_MAX + FL_ENCODE_TOKEN_MAX);
    free(out);

    path[FL_ENCODE_PATH_MAX] = 'p';
    path[FL_ENCODE_PATH_MAX + 1] = '\0';
    assert_int_equal(fl_proto_encode_request("h", NULL, "GET", path, NULL, 0, &out, &len), -EINVAL);
    token[FL_ENCODE_TOKEN_MAX] = 't';
    token[FL_ENCODE_TOKEN_MAX + 1] = '\0';
    assert_int_equal(fl_proto_encode_request("h", token, "GET", "/", NULL, 0, &out, &len), -EINVAL);
    assert_int_equal(fl_proto_encode_submit("h", token, "t", NULL, 0, NULL, &out, &len), -EINVAL);
}

/* ---- response parser ------------------------------------------------------------------ */

#define FIRST_RESPONSE \
    "HTTP/1.1 202 Accepted\r\n" \
    "Content-Type: application/json\r\n" \
    "Location: /v1/jobs/17\r\n" \
    "Content-Length: 30\r\n" \
    "\r\n" \
    "{\"id\":\"17\",\"state\":\"queued\"}\n\n"
#define SECOND_RESPONSE \
    "HTTP/1.1 404 Not Found\r\n" \
    "Content-Length: 2\r\n" \
    "Connection: close\r\n" \
    "\r\n" \
    "{}"
static const char two_responses[] = FIRST_RESPONSE SECOND_RESPONSE;
#define FIRST_LEN (sizeof FIRST_RESPONSE - 1)

static void check_first(const fl_proto_resp *r)
{
    assert_int_equal(r->status, 202);
    assert_true(r->keep_alive);
    assert_string_equal(r->location, "/v1/jobs/17");
    assert_int_equal(r->location_len, 11);
    assert_int_equal(r->body_len, 30);
    assert_memory_equal(r->body, "{\"id\":\"17\",\"state\":\"queued\"}\n\n", 30);
    assert_int_equal(r->body[30], '\0');
}

static void check_second(const fl_proto_resp *r)
{
    assert_int_equal(r->status, 404);
    assert_false(r->keep_alive);
    assert_null(r->location);
    assert_string_equal(r->body, "{}");
}

static void test_resp_one_chunk_pipelined(void **state)
{
    (void)state;
    fl_proto_resp r;
    size_t used = 0, total = sizeof two_responses - 1;
    fl_proto_resp_init(&r);
    assert_int_equal(fl_proto_resp_feed(&r, two_responses, total, &used), 1);
    assert_int_equal(used, FIRST_LEN);
    check_first(&r);
    assert_int_equal(fl_proto_resp_feed(&r, "x", 1, &used), -EINVAL);   /* reset first */
    fl_proto_resp_reset(&r);
    size_t rest = total - FIRST_LEN;
    assert_int_equal(fl_proto_resp_feed(&r, two_responses + FIRST_LEN, rest, &used), 1);
    assert_int_equal(used, rest);
    check_second(&r);
    fl_proto_resp_clear(&r);
}

static void test_resp_byte_by_byte(void **state)
{
    (void)state;
    fl_proto_resp r;
    size_t total = sizeof two_responses - 1, done = 0;
    int seen = 0;
    fl_proto_resp_init(&r);
    for (size_t i = 0; i < total; i++) {
        size_t used = 9;
        int rc = fl_proto_resp_feed(&r, two_responses + i, 1, &used);
        assert_true(rc == 0 || rc == 1);
        assert_int_equal(used, 1);
        done += used;
        if (rc == 1) {
            if (seen++ == 0) {
                assert_int_equal(done, FIRST_LEN);
                check_first(&r);
            } else {
                check_second(&r);
            }
            fl_proto_resp_reset(&r);
        }
    }
    assert_int_equal(seen, 2);
    assert_int_equal(fl_proto_resp_eof(&r), 0);   /* nothing begun after them */
    fl_proto_resp_clear(&r);
}

static void test_resp_take_body(void **state)
{
    (void)state;
    fl_proto_resp r;
    size_t used, len = 0;
    fl_proto_resp_init(&r);
    assert_int_equal(fl_proto_resp_feed(&r, two_responses, sizeof two_responses - 1, &used), 1);
    char *body = fl_proto_resp_take_body(&r, &len);
    assert_int_equal(len, 30);
    assert_null(r.body);
    fl_proto_resp_clear(&r);
    assert_memory_equal(body, "{\"id\"", 5);
    free(body);
}

static void test_resp_eof_delimited_and_cut(void **state)
{
    (void)state;
    static const char until_close[] = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it";
    static const char cut_body[] = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc";
    static const char cut_head[] = "HTTP/1.1 200 OK\r\nContent-Le";
    fl_proto_resp r;
    size_t used;

    fl_proto_resp_init(&r);
    assert_int_equal(fl_proto_resp_feed(&r, S(until_close), &used), 0);
    assert_int_equal(fl_proto_resp_eof(&r), 1);
    assert_int_equal(r.status, 200);
    assert_false(r.keep_alive);
    assert_string_equal(r.body, "all of it");
    fl_proto_resp_reset(&r);

    assert_int_equal(fl_proto_resp_feed(&r, S(cut_body), &used), 0);
    assert_int_equal(fl_proto_resp_eof(&r), -EPROTO);
    fl_proto_resp_reset(&r);

    assert_int_equal(fl_proto_resp_feed(&r, S(cut_head), &used), 0);
    assert_int_equal(fl_proto_resp_eof(&r), -EPROTO);
    fl_proto_resp_clear(&r);
}

static void test_resp_variants(void **state)
{
    (void)state;
    static const char interim[] =
        "HTTP/1.1 100 Continue\r\n\r\n"
        "HTTP/1.1 201 Created\r\nLocation: /a\r\nlocation: /v1/jobs/9\r\nContent-Length: 0\r\n\r\n";
    static const char chunked[] =
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
    static const char http10[] = "HTTP/1.0 204 No Content\r\n\r\n";
    fl_proto_resp r;
    size_t used;

    fl_proto_resp_init(&r);
    assert_int_equal(fl_proto_resp_feed(&r, S(interim), &used), 1);
    assert_int_equal(used, sizeof interim - 1);
    assert_int_equal(r.status, 201);
    assert_string_equal(r.location, "/v1/jobs/9");   /* a repeated Location: the last one */
    assert_null(r.body);
    fl_proto_resp_reset(&r);

    assert_int_equal(fl_proto_resp_feed(&r, S(chunked), &used), 1);
    assert_string_equal(r.body, "abcde");
    assert_true(r.keep_alive);
    fl_proto_resp_reset(&r);

    assert_int_equal(fl_proto_resp_feed(&r, S(http10), &used), 1);
    assert_int_equal(r.status, 204);
    assert_false(r.keep_alive);
    fl_proto_resp_clear(&r);
}

static void test_resp_garbage(void **state)
{
    (void)state;
    static const char *const garbage[] = {
        "garbage\r\n\r\n",
        "GET / HTTP/1.1\r\n\r\n",                           /* a request, not a response */
        "HTTP/1.1 2000 OK\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        "HTTP/1.1 200 OK\r\nBad Header\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof garbage / sizeof garbage[0]; i++) {
        fl_proto_resp r;
        size_t used;
        fl_proto_resp_init(&r);
        int rc = fl_proto_resp_feed(&r, garbage[i], strlen(garbage[i]), &used);
        if (rc != -EPROTO)
            fail_msg("garbage %zu gave %d", i, rc);
        /* errors are sticky */
        assert_int_equal(fl_proto_resp_feed(&r, S("HTTP/1.1 200 OK\r\n\r\n"), &used), -EPROTO);
        assert_int_equal(fl_proto_resp_eof(&r), -EPROTO);
        fl_proto_resp_clear(&r);
    }
}

static void test_resp_oversized(void **state)
{
    (void)state;
    fl_proto_resp r;
    size_t used;
    size_t big = FL_RESP_HEAD_MAX + 100;
    char *head = malloc(big);
    assert_non_null(head);
    static const char start[] = "HTTP/1.1 200 OK\r\nX-Pad: ";
    memcpy(head, start, sizeof start - 1);
    memset(head + sizeof start - 1, 'a', big - (sizeof start - 1));

    /* in one chunk */
    fl_proto_resp_init(&r);
    assert_int_equal(fl_proto_resp_feed(&r, head, big, &used), -EMSGSIZE);
    assert_true(used <= FL_RESP_HEAD_MAX);
    fl_proto_resp_clear(&r);

    /* in small pieces */
    fl_proto_resp_init(&r);
    int rc = 0;
    size_t off = 0;
    while (rc == 0 && off < big) {
        size_t n = big - off < 1000 ? big - off : 1000;
        rc = fl_proto_resp_feed(&r, head + off, n, &used);
        off += used;
    }
    assert_int_equal(rc, -EMSGSIZE);
    assert_true(off <= FL_RESP_HEAD_MAX);
    fl_proto_resp_clear(&r);
    free(head);

    /* a head of exactly the limit is fine */
    char *exact = malloc(FL_RESP_HEAD_MAX);
    assert_non_null(exact);
    memcpy(exact, start, sizeof start - 1);
    memset(exact + sizeof start - 1, 'b', FL_RESP_HEAD_MAX - (sizeof start - 1));
    memcpy(exact + FL_RESP_HEAD_MAX - 4, "\r\n\r\n", 4);
    fl_proto_resp_init(&r);
    assert_int_equal(fl_proto_resp_feed(&r, exact, FL_RESP_HEAD_MAX, &used), 0);
    assert_int_equal(fl_proto_resp_eof(&r), 1);   /* no length: the body ran to EOF, empty */
    fl_proto_resp_clear(&r);
    free(exact);

    /* a body announced past the limit is refused before any of it arrives */
    fl_proto_resp_init(&r);
    assert_int_equal(fl_proto_resp_feed(&r, S("HTTP/1.1 200 OK\r\nContent-Length: 16777217\r\n\r\n"), &used),
                     -EMSGSIZE);
    fl_proto_resp_clear(&r);

    /* a chunked body growing past the limit */
    fl_proto_resp_init(&r);
    assert_int_equal(fl_proto_resp_feed(&r, S("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"), &used), 0);
    size_t chunk = 1 << 20;
    char *data = malloc(chunk + 16);
    assert_non_null(data);
    int n = snprintf(data, 16, "%zx\r\n", chunk);
    memset(data + n, 'c', chunk);
    rc = 0;
    for (int i = 0; i < 20 && rc == 0; i++) {
        rc = fl_proto_resp_feed(&r, data, (size_t)n + chunk, &used);
        if (rc == 0)
            rc = fl_proto_resp_feed(&r, S("\r\n"), &used);
    }
    assert_int_equal(rc, -EMSGSIZE);
    assert_true(r.body_len <= FL_RESP_BODY_MAX);
    fl_proto_resp_clear(&r);
    free(data);
}

/* ---- Redis URLs ----------------------------------------------------------------------- */

static void test_redis_url_good(void **state)
{
    (void)state;
    fl_redis_url u;
    char err[200] = "";
    assert_int_equal(fl_redis_url_parse("redis://h", &u, err, sizeof err), 0);
    assert_int_equal(u.is_unix, 0);
    assert_string_equal(u.host, "h");
    assert_int_equal(u.port, 6379);
    assert_int_equal(u.db, 0);
    assert_string_equal(u.user, "");
    assert_string_equal(u.password, "");

    assert_int_equal(fl_redis_url_parse("redis://:p%40ss@h:7000/3", &u, err, sizeof err), 0);
    assert_string_equal(u.host, "h");
    assert_int_equal(u.port, 7000);
    assert_int_equal(u.db, 3);
    assert_string_equal(u.user, "");
    assert_string_equal(u.password, "p@ss");

    assert_int_equal(fl_redis_url_parse("redis://alice:s%3Ac@10.0.0.1/", &u, err, sizeof err), 0);
    assert_string_equal(u.user, "alice");
    assert_string_equal(u.password, "s:c");
    assert_string_equal(u.host, "10.0.0.1");
    assert_int_equal(u.db, 0);
    char seen[160];
    fl_redis_url_where(&u, seen, sizeof seen);
    assert_string_equal(seen, "10.0.0.1:6379");   /* no user, no password */

    assert_int_equal(fl_redis_url_parse("redis://[::1]", &u, err, sizeof err), 0);
    assert_string_equal(u.host, "::1");
    assert_int_equal(u.port, 6379);
    assert_int_equal(fl_redis_url_parse("redis://[::1]:6380/2", &u, err, sizeof err), 0);
    assert_string_equal(u.host, "::1");
    assert_int_equal(u.port, 6380);
    assert_int_equal(u.db, 2);
    char where[160];
    fl_redis_url_where(&u, where, sizeof where);
    assert_string_equal(where, "[::1]:6380");

    assert_int_equal(fl_redis_url_parse("unix:/path", &u, err, sizeof err), 0);
    assert_int_equal(u.is_unix, 1);
    assert_string_equal(u.path, "/path");
    assert_int_equal(u.db, 0);
    assert_string_equal(u.password, "");

    assert_int_equal(fl_redis_url_parse("unix:///path?db=2&password=x", &u, err, sizeof err), 0);
    assert_int_equal(u.is_unix, 1);
    assert_string_equal(u.path, "/path");
    assert_int_equal(u.db, 2);
    assert_string_equal(u.password, "x");
    assert_string_equal(u.user, "");
    assert_string_equal(err, "");
    fl_redis_url_where(&u, where, sizeof where);
    assert_string_equal(where, "unix:/path");
}

static void test_redis_url_bad(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "redis://h:0", "redis://h:65536", "redis://h:abc", "redis://h:", "redis://",
        "redis://:pw@", "redis://:pw@:6379", "redis://h/x", "redis://h/-1", "redis://h/100001",
        "redis://[::1", "redis://[::1]x", "redis://:%zz@h", "http://x", "rediss://h",
        "unix:", "unix:relative", "unix:/p?db=x", "unix:/p?foo=1", "unix:/p?db", "h:6379",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        fl_redis_url u;
        char err[200] = "";
        if (fl_redis_url_parse(bad[i], &u, err, sizeof err) != -EINVAL)
            fail_msg("%s was accepted", bad[i]);
        if (!err[0] || strchr(err, '\n'))
            fail_msg("%s: the reason is not one line: \"%s\"", bad[i], err);
    }
    fl_redis_url u;
    char err[200];
    assert_int_equal(fl_redis_url_parse("rediss://h", &u, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "TLS"));
    assert_int_equal(fl_redis_url_parse("redis://h:99999", &u, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "port"));
    assert_int_equal(fl_redis_url_parse("redis://h/db", &u, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "database"));
}

/* ---- headcheck: the strict request-head grammar ---- */

/* Feeds s to a fresh checker in pieces of step bytes; returns the head's length, or -1. */
static long head_len(const char *s, size_t len, size_t step)
{
    fl_headcheck h;
    fl_headcheck_init(&h);
    for (size_t off = 0; off < len;) {
        size_t n = len - off < step ? len - off : step;
        int done;
        long k = fl_headcheck_feed(&h, s + off, n, &done);
        if (k < 0)
            return -1;
        off += (size_t)k;
        if (done)
            return (long)off;
    }
    return 0;   /* not finished */
}

static void test_headcheck(void **state)
{
    (void)state;
    static const struct { const char *s; long want; } cases[] = {
        { "GET / HTTP/1.1\r\n\r\n", 18 },
        { "GET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n", 18 },   /* stops at the first head's end */
        { "\r\n\r\nPOST /a?b=c HTTP/1.0\r\nA: b\r\nC:\r\nD:\t e \xff\r\n\r\nbody", 47 },
        { "GET / HTTP/1.1\r\nA: b", 0 },
        { "GET / HTTP/1.1\nA: b\r\n\r\n", -1 },
        { "GET / HTTP/1.1\r\nA: b\n\r\n", -1 },
        { "GET / HTTP/1.1\r\nA: b\r\n\n", -1 },
        { "GET / HTTP/1.1\r\nA: b\rC: d\r\n\r\n", -1 },
        { "GET / HTTP/1.1\r\nA: b\r\n\rx", -1 },
        { "GET / HTTP/2.0\r\n\r\n", -1 },
        { "GET / HTTP/1.1 \r\n\r\n", -1 },
        { "GET / http/1.1\r\n\r\n", -1 },
        { "GET  / HTTP/1.1\r\n\r\n", -1 },
        { "GET /\x80 HTTP/1.1\r\n\r\n", -1 },
        { "G(T / HTTP/1.1\r\n\r\n", -1 },
        { "GET / HTTP/1.1\r\nA B: c\r\n\r\n", -1 },
        { "GET / HTTP/1.1\r\nA : c\r\n\r\n", -1 },
        { "GET / HTTP/1.1\r\n: c\r\n\r\n", -1 },
        { "GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n", -1 },
        { "GET / HTTP/1.1\r\nA: \x01\r\n\r\n", -1 },
        { "GET / HTTP/1.1\r\nA: \x7f\r\n\r\n", -1 },
        { "\n", -1 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        size_t len = strlen(cases[i].s);
        /* Whole, then split at every size: the verdict must not depend on how bytes arrive. */
        for (size_t step = len; step >= 1; step--) {
            long got = head_len(cases[i].s, len, step);
            if (got != cases[i].want)
                fail_msg("case %zu (step %zu): got %ld, want %ld", i, step, got, cases[i].want);
        }
    }
    /* NUL is a control byte like any other. */
    static const char nul[] = "GET / HTTP/1.1\r\nA: a\0b\r\n\r\n";
    assert_int_equal(head_len(nul, sizeof nul - 1, 64), -1);
    fl_headcheck h;
    fl_headcheck_init(&h);
    int done;
    assert_int_equal(fl_headcheck_feed(&h, "GET / HTTP/1.1\n", 15, &done), -1);
    assert_non_null(strstr(h.why, "bare LF"));
    assert_int_equal(fl_headcheck_feed(&h, "\r\n", 2, &done), -1);   /* stays refused */
}

/* The mirror's layout: the keys daemon/mirror.c writes and client/mirrorview.c reads. */
static void test_redis_keys(void **state)
{
    (void)state;
    char k[FL_PROTO_REDIS_KEY_MAX];
    assert_int_equal(fl_proto_redis_job_key(k, sizeof k, "fling:", 42), 12);
    assert_string_equal(k, "fling:job:42");
    assert_int_equal(fl_proto_redis_job_key(k, sizeof k, "", INT64_MAX), 23);
    assert_string_equal(k, "job:9223372036854775807");
    fl_proto_redis_key(k, sizeof k, "p:", FL_PROTO_REDIS_COUNTS);
    assert_string_equal(k, "p:counts");
    fl_proto_redis_key(k, sizeof k, "p:", FL_PROTO_REDIS_EVENTS);
    assert_string_equal(k, "p:events");
    fl_proto_redis_key(k, sizeof k, "p:", FL_PROTO_REDIS_MIRROR);
    assert_string_equal(k, "p:mirror");
    /* The longest prefix the daemon accepts fits with any id; one more byte than a buffer does not. */
    char prefix[FL_PROTO_REDIS_PREFIX_MAX + 1];
    memset(prefix, 'x', FL_PROTO_REDIS_PREFIX_MAX);
    prefix[FL_PROTO_REDIS_PREFIX_MAX] = '\0';
    assert_true(fl_proto_redis_job_key(k, sizeof k, prefix, INT64_MIN) > 0);
    assert_int_equal(fl_proto_redis_key(k, 9, "p:", "counts"), 8);
    assert_int_equal(fl_proto_redis_key(k, 8, "p:", "counts"), -ENAMETOOLONG);
    assert_int_equal(fl_proto_redis_job_key(k, 5, "p:", 100), -ENAMETOOLONG);
}

/* Every field of a job's hash is named once, and the state field holds state names. */
static void test_redis_fields(void **state)
{
    (void)state;
    assert_int_equal(FL_PROTO_REDIS_FIELDS, 12);
    for (int i = 0; i < FL_PROTO_REDIS_FIELDS; i++) {
        assert_non_null(fl_proto_redis_fields[i].name);
        for (int j = 0; j < i; j++)
            assert_string_not_equal(fl_proto_redis_fields[i].name, fl_proto_redis_fields[j].name);
    }
    assert_string_equal(fl_proto_redis_fields[FL_PROTO_REDIS_F_ID].name, "id");
    assert_string_equal(fl_proto_redis_fields[FL_PROTO_REDIS_F_STATE].name, FL_PROTO_RF_STATE);
    assert_int_equal(fl_proto_redis_fields[FL_PROTO_REDIS_F_STATUS].kind, FL_PROTO_REDIS_INTEGER);
    assert_int_equal(fl_proto_redis_fields[FL_PROTO_REDIS_F_EXIT_CODE].kind, FL_PROTO_REDIS_OPTIONAL_INTEGER);
}

/* The mirror copies the hash's text fields out of the job's JSON by the same name, and the CLI
 * gives the hash back as that JSON: each field must be a key of fl_job_to_json's object (a
 * renamed key would leave the field "" and the CLI's JSON unlike the daemon's). */
static void test_redis_fields_are_the_job_json(void **state)
{
    (void)state;
    fl_job_sizes sz = { .type = 5, .callback = FL_JOB_ABSENT, .idem_key = FL_JOB_ABSENT,
                        .error = 4, .output = FL_JOB_ABSENT, .payload = 0,
                        .previous_error = FL_JOB_ABSENT, .content_type = FL_JOB_ABSENT,
                        .traceparent = FL_JOB_ABSENT, .tracestate = FL_JOB_ABSENT };
    fl_job *job = fl_job_new(&sz);
    assert_non_null(job);
    memcpy(job->type, "email", 5);
    memcpy(job->error, "boom", 4);
    job->id = 7;
    job->state = FL_STATE_FAILED;
    job->has_exit_code = 1;
    job->exit_code = 3;
    job->created_at = job->started_at = job->finished_at = job->updated_at = 1700000000000;
    json_t *o = fl_job_to_json(job);
    assert_non_null(o);
    for (int i = 0; i < FL_PROTO_REDIS_FIELDS; i++) {
        json_t *v = json_object_get(o, fl_proto_redis_fields[i].name);
        assert_non_null(v);
        int integer = fl_proto_redis_fields[i].kind == FL_PROTO_REDIS_INTEGER ||
                      fl_proto_redis_fields[i].kind == FL_PROTO_REDIS_OPTIONAL_INTEGER;
        assert_true(integer ? json_is_integer(v) : json_is_string(v));
    }
    assert_null(json_object_get(o, FL_PROTO_EVENT_KEY));
    json_decref(o);
    fl_job_free(job);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_state_names_round_trip),
        cmocka_unit_test(test_headcheck),
        cmocka_unit_test(test_state_terminal),
        cmocka_unit_test(test_valid_type),
        cmocka_unit_test(test_parse_id),
        cmocka_unit_test(test_parse_duration),
        cmocka_unit_test(test_trace_context),
        cmocka_unit_test(test_opts_table),
        cmocka_unit_test(test_opts_bounds_and_repeats),
        cmocka_unit_test(test_encode_submit_exact),
        cmocka_unit_test(test_encode_submit_minimal),
        cmocka_unit_test(test_encode_seconds),
        cmocka_unit_test(test_encode_refuses_bad_input),
        cmocka_unit_test(test_encode_submit_extra),
        cmocka_unit_test(test_encode_request),
        cmocka_unit_test(test_encode_length_bounds),
        cmocka_unit_test(test_resp_one_chunk_pipelined),
        cmocka_unit_test(test_resp_byte_by_byte),
        cmocka_unit_test(test_resp_take_body),
        cmocka_unit_test(test_resp_eof_delimited_and_cut),
        cmocka_unit_test(test_resp_variants),
        cmocka_unit_test(test_resp_garbage),
        cmocka_unit_test(test_resp_oversized),
        cmocka_unit_test(test_redis_url_good),
        cmocka_unit_test(test_redis_url_bad),
        cmocka_unit_test(test_redis_keys),
        cmocka_unit_test(test_redis_fields),
        cmocka_unit_test(test_redis_fields_are_the_job_json),
    };
    return cmocka_run_group_tests_name("proto", tests, NULL, NULL);
}
