/* proto.c — job states, type names, ids and the job options carried in request headers:
 * the strict value grammar that flingd enforces and libfling checks before it sends.
 *
 * Value grammar (after optional surrounding spaces/tabs, which are ignored):
 *   decimal  = 1*DIGIT [ "." 1*DIGIT ]       Fling-Timeout, Fling-Delay (seconds)
 *   count    = 1*DIGIT                        Fling-Max-Attempts
 *   int32    = [ "-" ] 1*DIGIT                Fling-Priority
 *   id       = %x31-39 *DIGIT                 job ids: no sign, no leading zero, one spelling
 * No '+' sign, no exponent, no hex, no inf/nan, no trailing bytes. Leading zeros are accepted
 * in option values ("007" is 7) but not in ids. A header given twice is refused. */
#include "proto.h"

#include <errno.h>
#include <strings.h>
#include <string.h>

#define DECIMAL_FRAC_DIGITS 9    /* nanoseconds: finer digits are checked, then ignored */
#define ID_DIGITS_MAX 19         /* INT64_MAX has 19 digits */

static const char *const state_names[FL_STATE_COUNT] = {
    [FL_STATE_QUEUED] = "queued",
    [FL_STATE_SCHEDULED] = "scheduled",
    [FL_STATE_RUNNING] = "running",
    [FL_STATE_SUCCEEDED] = "succeeded",
    [FL_STATE_FAILED] = "failed",
    [FL_STATE_CANCELLED] = "cancelled",
};

const char *fl_proto_state_name(fl_state s)
{
    if ((int)s < 0 || s >= FL_STATE_COUNT)
        return "unknown";
    return state_names[s];
}

int fl_proto_state_parse(const char *name, size_t len, fl_state *out)
{
    if (!name)
        return -EINVAL;
    for (int i = 0; i < FL_STATE_COUNT; i++) {
        if (strlen(state_names[i]) == len && memcmp(state_names[i], name, len) == 0) {
            *out = (fl_state)i;
            return 0;
        }
    }
    return -EINVAL;
}

int fl_proto_state_terminal(fl_state s)
{
    return s == FL_STATE_SUCCEEDED || s == FL_STATE_FAILED || s == FL_STATE_CANCELLED;
}

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

int fl_proto_valid_type(const char *name, size_t len)
{
    if (!name || len == 0 || len > FL_TYPE_NAME_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        if (!(is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              c == '_' || c == '.' || c == '-'))
            return 0;
    }
    return 1;
}

static int name_is(const char *name, size_t len, const char *want)
{
    return strlen(want) == len && strncasecmp(name, want, len) == 0;
}

int fl_proto_opt_header(const char *name, size_t len)
{
    if (!name)
        return 0;
    return name_is(name, len, FL_HDR_TIMEOUT) || name_is(name, len, FL_HDR_MAX_ATTEMPTS) ||
           name_is(name, len, FL_HDR_DELAY) || name_is(name, len, FL_HDR_PRIORITY) ||
           name_is(name, len, FL_HDR_CALLBACK) || name_is(name, len, FL_HDR_IDEM_KEY);
}

/* Narrows [*v, *v + *len) to drop the spaces and tabs (HTTP's OWS) around a value. */
static void trim_ows(const char **v, size_t *len)
{
    while (*len > 0 && (**v == ' ' || **v == '\t')) {
        (*v)++;
        (*len)--;
    }
    while (*len > 0 && ((*v)[*len - 1] == ' ' || (*v)[*len - 1] == '\t'))
        (*len)--;
}

/* Parses a decimal of the grammar above, up to max; by hand, because strtod accepts
 * hex, exponents, inf and nan and reads the decimal point from the locale. */
static int parse_decimal(const char *s, size_t len, double max, double *out)
{
    size_t i = 0;
    double whole = 0;
    while (i < len && is_digit(s[i])) {
        whole = whole * 10 + (s[i] - '0');
        if (whole > max)
            return -EINVAL;
        i++;
    }
    if (i == 0)
        return -EINVAL;
    double frac = 0, scale = 1;
    if (i < len && s[i] == '.') {
        size_t start = ++i;
        while (i < len && is_digit(s[i])) {
            if (i - start < DECIMAL_FRAC_DIGITS) {
                frac = frac * 10 + (s[i] - '0');
                scale *= 10;
            }
            i++;
        }
        if (i == start)
            return -EINVAL;
    }
    if (i != len)
        return -EINVAL;
    double v = whole + frac / scale;
    if (v > max)
        return -EINVAL;
    *out = v;
    return 0;
}

/* Parses an optional '-' then digits into [min, max]; min and max are int32-sized, so the
 * running value (capped at 2^31) never overflows a long long. */
static int parse_int(const char *s, size_t len, long long min, long long max, long long *out)
{
    int neg = len > 0 && s[0] == '-';
    size_t i = neg ? 1 : 0;
    long long cap = neg ? -min : max;
    long long v = 0;
    if (i == len)
        return -EINVAL;
    for (; i < len; i++) {
        if (!is_digit(s[i]))
            return -EINVAL;
        v = v * 10 + (s[i] - '0');
        if (v > cap)
            return -EINVAL;
    }
    v = neg ? -v : v;
    if (v < min || v > max)
        return -EINVAL;
    *out = v;
    return 0;
}

/* A callback URL: http:// or https:// followed by at least one byte, no spaces, no control
 * or non-ASCII bytes (the daemon then checks it against [callbacks] allow). */
static int valid_callback(const char *s, size_t len)
{
    static const char http[] = "http://", https[] = "https://";
    size_t skip;
    if (len > FL_CALLBACK_MAX)
        return 0;
    if (len >= sizeof http - 1 && memcmp(s, http, sizeof http - 1) == 0)
        skip = sizeof http - 1;
    else if (len >= sizeof https - 1 && memcmp(s, https, sizeof https - 1) == 0)
        skip = sizeof https - 1;
    else
        return 0;
    if (len == skip)
        return 0;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
            return 0;
    return 1;
}

/* An idempotency key: 1..FL_IDEM_KEY_MAX visible ASCII bytes (RFC 9110 VCHAR, no spaces, so
 * that trimming by any proxy on the way can never change the key). */
static int valid_idem_key(const char *s, size_t len)
{
    if (len == 0 || len > FL_IDEM_KEY_MAX)
        return 0;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
            return 0;
    return 1;
}

static int set_timeout(fl_proto_opts *o, const char *v, size_t len)
{
    double d;
    if (o->has_timeout || parse_decimal(v, len, FL_TIMEOUT_MAX, &d) < 0 || !(d > 0))
        return -EINVAL;
    o->timeout = d;
    o->has_timeout = 1;
    return 0;
}

static int set_delay(fl_proto_opts *o, const char *v, size_t len)
{
    double d;
    if (o->has_delay || parse_decimal(v, len, FL_DELAY_MAX, &d) < 0)
        return -EINVAL;
    o->delay = d;
    o->has_delay = 1;
    return 0;
}

static int set_max_attempts(fl_proto_opts *o, const char *v, size_t len)
{
    long long n;
    if (o->has_max_attempts || parse_int(v, len, 1, FL_ATTEMPTS_MAX, &n) < 0)
        return -EINVAL;
    o->max_attempts = (int)n;
    o->has_max_attempts = 1;
    return 0;
}

static int set_priority(fl_proto_opts *o, const char *v, size_t len)
{
    long long n;
    if (o->has_priority || parse_int(v, len, INT32_MIN, INT32_MAX, &n) < 0)
        return -EINVAL;
    o->priority = (int32_t)n;
    o->has_priority = 1;
    return 0;
}

int fl_proto_opts_set(fl_proto_opts *opts, const char *name, size_t name_len,
                      const char *value, size_t value_len)
{
    if (!opts || !name || (!value && value_len))
        return -EINVAL;
    if (!fl_proto_opt_header(name, name_len))
        return 1;
    if (!value)
        return -EINVAL;
    trim_ows(&value, &value_len);
    if (name_is(name, name_len, FL_HDR_TIMEOUT))
        return set_timeout(opts, value, value_len);
    if (name_is(name, name_len, FL_HDR_DELAY))
        return set_delay(opts, value, value_len);
    if (name_is(name, name_len, FL_HDR_MAX_ATTEMPTS))
        return set_max_attempts(opts, value, value_len);
    if (name_is(name, name_len, FL_HDR_PRIORITY))
        return set_priority(opts, value, value_len);
    if (name_is(name, name_len, FL_HDR_CALLBACK)) {
        if (opts->callback || !valid_callback(value, value_len))
            return -EINVAL;
        opts->callback = value;
        opts->callback_len = value_len;
        return 0;
    }
    if (opts->idem_key || !valid_idem_key(value, value_len))
        return -EINVAL;
    opts->idem_key = value;
    opts->idem_key_len = value_len;
    return 0;
}

int fl_proto_parse_id(const char *s, size_t len, int64_t *out)
{
    if (!s || len == 0 || len > ID_DIGITS_MAX || s[0] == '0')
        return -EINVAL;
    int64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (!is_digit(s[i]))
            return -EINVAL;
        int d = s[i] - '0';
        if (v > (INT64_MAX - d) / 10)
            return -EINVAL;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

/* lower_hex tells whether v[0..n) is lower-case hex and, if nonzero is set, not all '0'. */
static int lower_hex(const char *v, size_t n, int nonzero)
{
    int any = 0;
    for (size_t i = 0; i < n; i++) {
        if (!is_digit(v[i]) && (v[i] < 'a' || v[i] > 'f'))
            return 0;
        any |= v[i] != '0';
    }
    return any || !nonzero;
}

int fl_proto_traceparent_valid(const char *v, size_t len)
{
    /* version "-" trace-id "-" parent-id "-" flags: 2 + 1 + 32 + 1 + 16 + 1 + 2 */
    if (!v || len < 55 || len > FL_TRACEPARENT_MAX || v[2] != '-' || v[35] != '-' || v[52] != '-')
        return 0;
    if (!lower_hex(v, 2, 0) || (v[0] == 'f' && v[1] == 'f') || !lower_hex(v + 3, 32, 1) ||
        !lower_hex(v + 36, 16, 1) || !lower_hex(v + 53, 2, 0))
        return 0;
    /* version 00 is exactly 55 bytes; a later one may add fields after a '-' */
    return len == 55 ? 1 : !(v[0] == '0' && v[1] == '0') && v[55] == '-';
}

int fl_proto_tracestate_valid(const char *v, size_t len)
{
    if (!v || len == 0 || len > FL_TRACESTATE_MAX)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (((unsigned char)v[i] < 0x20 && v[i] != '\t') || (unsigned char)v[i] > 0x7e)
            return 0;
    return 1;
}

int fl_proto_parse_duration(const char *s, size_t len, int64_t *secs)
{
    static const struct { char unit; int64_t secs; } units[] = { {'s', 1}, {'m', 60}, {'h', 3600}, {'d', 86400} };
    int64_t scale = 1, v = 0;
    if (!s || len == 0)
        return -EINVAL;
    if (!is_digit(s[len - 1])) {
        size_t u = 0;
        while (u < sizeof units / sizeof *units && units[u].unit != s[len - 1])
            u++;
        if (u == sizeof units / sizeof *units)
            return -EINVAL;
        scale = units[u].secs;
        len--;
    }
    if (len == 0 || len > 12)   /* 12 digits already pass FL_DURATION_MAX */
        return -EINVAL;
    for (size_t i = 0; i < len; i++) {
        if (!is_digit(s[i]))
            return -EINVAL;
        v = v * 10 + (s[i] - '0');
    }
    if (v > FL_DURATION_MAX / scale)
        return -EINVAL;
    *secs = v * scale;
    return 0;
}

/* Skips spaces and tabs (HTTP's OWS) from *i up to len. */
static void skip_ows(const char *v, size_t len, size_t *i)
{
    while (*i < len && (v[*i] == ' ' || v[*i] == '\t'))
        (*i)++;
}

int fl_proto_prefer_wait(const char *v, size_t len, int *secs)
{
    size_t i = 0;
    while (i < len) {
        skip_ows(v, len, &i);
        size_t name = i;
        while (i < len && v[i] != '=' && v[i] != ',' && v[i] != ';' && v[i] != ' ' && v[i] != '\t')
            i++;
        int is_wait = i - name == 4 && strncasecmp(v + name, "wait", 4) == 0;
        skip_ows(v, len, &i);
        size_t val = i, val_len = 0;
        if (i < len && v[i] == '=') {
            i++;
            skip_ows(v, len, &i);
            int quoted = i < len && v[i] == '"';
            val = i + (size_t)quoted;
            i = val;
            while (i < len && (quoted ? v[i] != '"' : (v[i] != ',' && v[i] != ';' && v[i] != ' ' && v[i] != '\t')))
                i++;
            val_len = i - val;
            if (quoted && i < len)
                i++;
        }
        if (is_wait) {
            long n = 0;
            if (val_len == 0)
                return -EINVAL;
            for (size_t k = 0; k < val_len; k++) {
                if (v[val + k] < '0' || v[val + k] > '9')
                    return -EINVAL;
                if (n <= FL_WAIT_MAX)
                    n = n * 10 + (v[val + k] - '0');
            }
            *secs = n > FL_WAIT_MAX ? FL_WAIT_MAX : (int)n;
            return 1;
        }
        while (i < len && v[i] != ',')   /* parameters of another preference */
            i++;
        if (i < len)
            i++;
    }
    return 0;
}
