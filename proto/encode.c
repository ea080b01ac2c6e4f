/* encode.c — builds request bytes in one buffer. A request is described as a list of
 * headers, measured in a first pass and written in a second, so the one allocation is exact.
 * Option values are formatted here and then parsed back with fl_proto_opts_set: what the
 * encoder emits is, by construction, what the daemon accepts. */
#include "encode.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <strings.h>

/* Host, Content-Length, Authorization, six options and the extra ones */
#define MAX_HEADERS (3 + 6 + FL_ENCODE_EXTRA_MAX)
#define METHOD_MAX 16        /* longer than any registered HTTP method */
#define SECONDS_TEXT 32      /* "31622400.123456789" and room */

typedef struct header {
    const char *name;
    const char *value;
    size_t len;
} header;

/* Counts bytes when p is NULL (first pass), copies them otherwise (second pass). */
typedef struct writer {
    char *p;
    size_t len;
} writer;

static void put(writer *w, const char *s, size_t n)
{
    if (w->p)
        memcpy(w->p + w->len, s, n);
    w->len += n;
}

static void put_str(writer *w, const char *s)
{
    put(w, s, strlen(s));
}

static void write_head(writer *w, const char *method, const char *path,
                       const header *h, size_t n)
{
    put_str(w, method);
    put_str(w, " ");
    put_str(w, path);
    put_str(w, " HTTP/1.1\r\n");
    for (size_t i = 0; i < n; i++) {
        put_str(w, h[i].name);
        put_str(w, ": ");
        put(w, h[i].value, h[i].len);
        put_str(w, "\r\n");
    }
    put_str(w, "\r\n");
}

/* Allocates head + body exactly and fills it. */
static int build(const char *method, const char *path, const header *h, size_t n,
                 const void *body, size_t len, char **out, size_t *out_len)
{
    writer w = { NULL, 0 };
    write_head(&w, method, path, h, n);
    size_t head = w.len;
    if (head > FL_ENCODE_HEAD_MAX || len > SIZE_MAX - head)
        return -EINVAL;
    char *buf = malloc(head + len);
    if (!buf)
        return -ENOMEM;
    w.p = buf;
    w.len = 0;
    write_head(&w, method, path, h, n);
    if (len)
        memcpy(buf + head, body, len);
    *out = buf;
    *out_len = head + len;
    return 0;
}

/* Visible ASCII (RFC 9110 VCHAR) only, 1..max bytes: no space, no CR/LF to smuggle headers. */
static int vchar_string(const char *s, size_t max)
{
    size_t i = 0;
    for (; s[i]; i++)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f || i >= max)
            return 0;
    return i > 0;
}

static int valid_method(const char *m)
{
    size_t i = 0;
    for (; m[i]; i++)
        if (m[i] < 'A' || m[i] > 'Z' || i >= METHOD_MAX)
            return 0;
    return i > 0;
}

/* Checks host and token, then adds Host, Content-Length (if with_length) and Authorization. */
static int common_headers(const char *host, const char *token, int with_length,
                          const char *length_text, char *auth, size_t auth_size,
                          header *h, size_t *n)
{
    if (!host || !vchar_string(host, FL_ENCODE_HOST_MAX))
        return -EINVAL;
    h[(*n)++] = (header){ "Host", host, strlen(host) };
    if (with_length)
        h[(*n)++] = (header){ "Content-Length", length_text, strlen(length_text) };
    if (token && token[0]) {
        if (!vchar_string(token, FL_ENCODE_TOKEN_MAX))
            return -EINVAL;
        int k = snprintf(auth, auth_size, "Bearer %s", token);
        if (k < 0 || (size_t)k >= auth_size)
            return -EINVAL;
        h[(*n)++] = (header){ FL_HDR_AUTH, auth, (size_t)k };
    }
    return 0;
}

/* Formats seconds as a plain decimal (no exponent, locale-free), rounded to nanoseconds: the
 * finest step proto.c's parser keeps, so what it reads back is what was meant. */
static int format_seconds(double v, double max, char *buf, size_t size)
{
    if (!(v >= 0) || v > max)
        return -EINVAL;
    uint64_t ns = (uint64_t)(v * 1e9 + 0.5);
    uint64_t frac = ns % 1000000000u;
    int k;
    if (frac == 0) {
        k = snprintf(buf, size, "%" PRIu64, ns / 1000000000u);
    } else {
        k = snprintf(buf, size, "%" PRIu64 ".%09" PRIu64, ns / 1000000000u, frac);
        while (k > 0 && buf[k - 1] == '0')
            buf[--k] = '\0';
    }
    return k > 0 && (size_t)k < size ? 0 : -EINVAL;
}

/* Text of the option headers; lives as long as the headers that point into it. */
typedef struct opt_text {
    char timeout[SECONDS_TEXT];
    char delay[SECONDS_TEXT];
    char attempts[16];
    char priority[16];
} opt_text;

/* Adds one option header after checking its value with the daemon's parser. */
static int add_opt(fl_proto_opts *check, header *h, size_t *n, const char *name,
                   const char *value, size_t len)
{
    if (fl_proto_opts_set(check, name, strlen(name), value, len) != 0)
        return -EINVAL;
    h[(*n)++] = (header){ name, value, len };
    return 0;
}

static int option_headers(const fl_proto_opts *o, opt_text *t, header *h, size_t *n)
{
    fl_proto_opts check = { 0 };
    int rc = 0;
    if (o->has_timeout && rc == 0) {
        rc = format_seconds(o->timeout, FL_TIMEOUT_MAX, t->timeout, sizeof t->timeout);
        if (rc == 0)
            rc = add_opt(&check, h, n, FL_HDR_TIMEOUT, t->timeout, strlen(t->timeout));
    }
    if (o->has_max_attempts && rc == 0) {
        snprintf(t->attempts, sizeof t->attempts, "%d", o->max_attempts);
        rc = add_opt(&check, h, n, FL_HDR_MAX_ATTEMPTS, t->attempts, strlen(t->attempts));
    }
    if (o->has_delay && rc == 0) {
        rc = format_seconds(o->delay, FL_DELAY_MAX, t->delay, sizeof t->delay);
        if (rc == 0)
            rc = add_opt(&check, h, n, FL_HDR_DELAY, t->delay, strlen(t->delay));
    }
    if (o->has_priority && rc == 0) {
        snprintf(t->priority, sizeof t->priority, "%" PRId32, o->priority);
        rc = add_opt(&check, h, n, FL_HDR_PRIORITY, t->priority, strlen(t->priority));
    }
    if (o->callback && rc == 0)
        rc = add_opt(&check, h, n, FL_HDR_CALLBACK, o->callback, o->callback_len);
    if (o->idem_key && rc == 0)
        rc = add_opt(&check, h, n, FL_HDR_IDEM_KEY, o->idem_key, o->idem_key_len);
    return rc;
}

/* RFC 9110 tchar: the characters of a header name. */
static int tchar(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           (ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

/* An extra header must be well-formed and must not repeat a header the encoder writes, which
 * the daemon would read twice or not at all. */
static int valid_extra(const fl_proto_header *x)
{
    if (!x->name || !x->value || !x->name[0] || !x->value[0])
        return 0;
    for (const char *p = x->name; *p; p++)
        if (!tchar((unsigned char)*p))
            return 0;
    for (const char *p = x->value; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
            return 0;
    size_t n = strlen(x->name);
    return strcasecmp(x->name, "Host") != 0 && strcasecmp(x->name, "Content-Length") != 0 &&
           strcasecmp(x->name, FL_HDR_AUTH) != 0 && !fl_proto_opt_header(x->name, n);
}

static int extra_headers(const fl_proto_header *extra, size_t nextra, header *h, size_t *n)
{
    if (nextra > FL_ENCODE_EXTRA_MAX || (nextra && !extra))
        return -EINVAL;
    for (size_t i = 0; i < nextra; i++) {
        if (!valid_extra(&extra[i]))
            return -EINVAL;
        h[(*n)++] = (header){ extra[i].name, extra[i].value, strlen(extra[i].value) };
    }
    return 0;
}

int fl_proto_encode_submit(const char *host, const char *token, const char *type,
                           const void *payload, size_t len, const fl_proto_opts *opts,
                           char **out, size_t *out_len)
{
    return fl_proto_encode_submit_extra(host, token, type, payload, len, opts, NULL, 0,
                                        out, out_len);
}

int fl_proto_encode_submit_extra(const char *host, const char *token, const char *type,
                                 const void *payload, size_t len, const fl_proto_opts *opts,
                                 const fl_proto_header *extra, size_t nextra,
                                 char **out, size_t *out_len)
{
    char path[sizeof FL_PROTO_JOBS_PATH + 1 + FL_TYPE_NAME_MAX];
    char length[24];
    char auth[sizeof "Bearer " + FL_ENCODE_TOKEN_MAX];
    opt_text text;
    header h[MAX_HEADERS];
    size_t n = 0;
    int rc;

    if (!type || !out || !out_len || (!payload && len) ||
        !fl_proto_valid_type(type, strlen(type)))
        return -EINVAL;
    snprintf(path, sizeof path, "%s/%s", FL_PROTO_JOBS_PATH, type);
    snprintf(length, sizeof length, "%zu", len);
    rc = common_headers(host, token, 1, length, auth, sizeof auth, h, &n);
    if (rc == 0 && opts)
        rc = option_headers(opts, &text, h, &n);
    if (rc == 0)
        rc = extra_headers(extra, nextra, h, &n);
    if (rc < 0)
        return rc;
    return build("POST", path, h, n, payload, len, out, out_len);
}

int fl_proto_encode_request(const char *host, const char *token, const char *method,
                            const char *path, const void *body, size_t len,
                            char **out, size_t *out_len)
{
    char length[24];
    char auth[sizeof "Bearer " + FL_ENCODE_TOKEN_MAX];
    header h[MAX_HEADERS];
    size_t n = 0;

    if (!method || !path || !out || !out_len || (!body && len) || !valid_method(method) ||
        path[0] != '/' || !vchar_string(path, FL_ENCODE_PATH_MAX))
        return -EINVAL;
    int bodiless = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0 ||
                   strcmp(method, "DELETE") == 0;
    snprintf(length, sizeof length, "%zu", len);
    int rc = common_headers(host, token, body || len || !bodiless, length, auth, sizeof auth, h, &n);
    if (rc < 0)
        return rc;
    return build(method, path, h, n, body, len, out, out_len);
}
