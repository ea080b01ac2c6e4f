/* mirrorview.c — reads flingd's Redis mirror for the CLI: connect + AUTH + SELECT, a job's hash
 * as JSON, and the events subscription.
 *
 * DESIGN: the subscription is read with hiredis's own parts (redisBufferRead feeds its reader,
 * redisGetReplyFromReader takes whole replies) under our own ppoll(), rather than with the
 * blocking redisGetReply: that one retries a read interrupted by a signal, so a watcher could
 * not be stopped between two events; with ppoll and the caller's signal mask, a signal ends
 * the wait at once and without a race. */
#include "mirrorview.h"

#include "proto.h"
#include "rediskeys.h"
#include "redisurl.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define WHERE_MAX 300            /* "[host]:port" or "unix:/path", for messages */
#define URL_ERR_MAX 200          /* fl_redis_url_parse's reason */

__attribute__((format(printf, 4, 5)))
static int fail(int code, char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (err && errlen)
        vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return code;
}

/* ---- connecting ----------------------------------------------------------------------- */

/* Sends AUTH (when the URL has a password) and SELECT (when its db is not 0). */
static int log_in(redisContext *rc, const fl_redis_url *u, const char *where, char *err,
                  size_t errlen)
{
    for (int step = 0; step < 2; step++) {
        redisReply *r;
        if (step == 0 && u->password[0])
            r = u->user[0] ? redisCommand(rc, "AUTH %s %s", u->user, u->password)
                           : redisCommand(rc, "AUTH %s", u->password);
        else if (step == 1 && u->db != 0)
            r = redisCommand(rc, "SELECT %d", u->db);
        else
            continue;
        if (!r)
            return fail(-ECONNREFUSED, err, errlen, "lost the connection to Redis at %s: %s",
                        where, rc->errstr);
        int code = 0;
        if (r->type == REDIS_REPLY_ERROR)
            code = fail(-EACCES, err, errlen, "Redis at %s refused %s: %s", where,
                        step == 0 ? "AUTH" : "SELECT", r->str);
        freeReplyObject(r);
        if (code)
            return code;
    }
    return 0;
}

int fl_mview_connect(const char *url, int timeout_ms, redisContext **out, char *err, size_t errlen)
{
    fl_redis_url u;
    char why[URL_ERR_MAX], where[WHERE_MAX];
    *out = NULL;
    if (fl_redis_url_parse(url, &u, why, sizeof why) < 0)
        return fail(-EINVAL, err, errlen, "%s", why);
    fl_redis_url_where(&u, where, sizeof where);
    struct timeval tv = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };
    redisContext *rc = u.is_unix ? redisConnectUnixWithTimeout(u.path, tv)
                                 : redisConnectWithTimeout(u.host, u.port, tv);
    if (!rc)
        return fail(-ENOMEM, err, errlen, "out of memory connecting to Redis");
    int code = 0;
    if (rc->err)
        code = fail(-ECONNREFUSED, err, errlen, "cannot connect to Redis at %s: %s", where,
                    rc->errstr);
    else if (redisSetTimeout(rc, tv) != REDIS_OK)
        code = fail(-ECONNREFUSED, err, errlen, "cannot set a timeout on the connection to "
                    "Redis at %s: %s", where, rc->errstr);
    else
        code = log_in(rc, &u, where, err, errlen);
    if (code < 0) {
        redisFree(rc);
        return code;
    }
    *out = rc;
    return 0;
}

/* ---- a job's hash ------------------------------------------------------------------------ */

/* The value of field name in an HGETALL reply, or NULL if the hash lacks it. */
static const redisReply *hash_value(const redisReply *r, const char *name)
{
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        const redisReply *k = r->element[i];
        if (k->type == REDIS_REPLY_STRING && k->len == strlen(name) &&
            memcmp(k->str, name, k->len) == 0)
            return r->element[i + 1];
    }
    return NULL;
}

/* Parses a whole decimal integer of len bytes; 0 or -1. */
static int parse_integer(const char *s, size_t len, long long *out)
{
    char buf[24];
    char *end;
    if (len == 0 || len >= sizeof buf)
        return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    errno = 0;
    *out = strtoll(buf, &end, 10);
    return *end || errno ? -1 : 0;
}

/* The JSON of one field's value: new reference, or NULL if it is malformed. A field the hash
 * lacks (a mirror written by another version) is null: unknown. */
static json_t *field_json(const fl_proto_redis_field_def *f, const redisReply *v)
{
    long long n;
    if (!v)
        return json_null();
    if (v->type != REDIS_REPLY_STRING)
        return NULL;
    if (v->len == 0 && (f->kind == FL_PROTO_REDIS_OPTIONAL_TEXT || f->kind == FL_PROTO_REDIS_OPTIONAL_INTEGER))
        return json_null();
    if (f->kind == FL_PROTO_REDIS_TEXT || f->kind == FL_PROTO_REDIS_OPTIONAL_TEXT)
        return json_stringn(v->str, v->len);     /* NULL unless valid UTF-8 */
    return parse_integer(v->str, v->len, &n) == 0 ? json_integer(n) : NULL;
}

/* Builds the job object from an HGETALL reply; *bad names a malformed field on -EBADMSG. */
static int job_json(const redisReply *r, int64_t id, json_t **out, const char **bad)
{
    char idtext[FL_ID_MAX];
    json_t *o = json_object();
    if (!o)
        return -ENOMEM;
    snprintf(idtext, sizeof idtext, "%" PRId64, id);
    /* The id is the key's: the daemon's JSON has it as a string. */
    if (json_object_set_new(o, FL_PROTO_RF_ID, json_string(idtext)) < 0)
        goto nomem;
    for (int i = FL_PROTO_REDIS_F_ID + 1; i < FL_PROTO_REDIS_FIELDS; i++) {
        const fl_proto_redis_field_def *f = &fl_proto_redis_fields[i];
        json_t *v = field_json(f, hash_value(r, f->name));
        if (!v) {
            *bad = f->name;
            json_decref(o);
            return -EBADMSG;
        }
        if (json_object_set_new(o, f->name, v) < 0)
            goto nomem;
    }
    *out = o;
    return 0;
nomem:
    json_decref(o);
    return -ENOMEM;
}

int fl_mview_job(redisContext *rc, const char *prefix, int64_t id, json_t **out,
                 char *err, size_t errlen)
{
    char idtext[FL_ID_MAX], key[FL_PROTO_REDIS_KEY_MAX];
    const char *bad = NULL;
    *out = NULL;
    snprintf(idtext, sizeof idtext, "%" PRId64, id);
    if (fl_proto_redis_job_key(key, sizeof key, prefix, id) < 0)
        return fail(-EINVAL, err, errlen, "the Redis prefix is longer than %d bytes", FL_PROTO_REDIS_PREFIX_MAX);
    redisReply *r = redisCommand(rc, "HGETALL %s", key);
    if (!r)
        return fail(-EIO, err, errlen, "lost the connection to Redis: %s", rc->errstr);
    int code;
    if (r->type == REDIS_REPLY_ERROR)
        code = fail(-EIO, err, errlen, "Redis answered: %s", r->str);
    else if (r->type != REDIS_REPLY_ARRAY)
        code = fail(-EIO, err, errlen, "Redis answered HGETALL with something else than a hash");
    else if (r->elements == 0)       /* Redis has no empty hashes: there is no such key */
        code = fail(-ENOENT, err, errlen, "job %s is not in the Redis mirror (unknown, or "
                    "expired after retention)", idtext);
    else
        code = job_json(r, id, out, &bad);
    if (code == -EBADMSG)
        code = fail(code, err, errlen, "job %s in the Redis mirror has a malformed field \"%s\"", idtext, bad);
    else if (code == -ENOMEM)
        code = fail(code, err, errlen, "out of memory");
    freeReplyObject(r);
    return code;
}

/* ---- the events channel ----------------------------------------------------------------- */

int fl_mview_subscribe(redisContext *rc, const char *prefix, char *err, size_t errlen)
{
    char key[FL_PROTO_REDIS_KEY_MAX];
    if (fl_proto_redis_key(key, sizeof key, prefix, FL_PROTO_REDIS_EVENTS) < 0)
        return fail(-EINVAL, err, errlen, "the Redis prefix is longer than %d bytes", FL_PROTO_REDIS_PREFIX_MAX);
    redisReply *r = redisCommand(rc, "SUBSCRIBE %s", key);
    if (!r)
        return fail(-EIO, err, errlen, "lost the connection to Redis: %s", rc->errstr);
    int code = 0;
    if (r->type == REDIS_REPLY_ERROR)
        code = fail(-EIO, err, errlen, "Redis refused SUBSCRIBE: %s", r->str);
    freeReplyObject(r);
    return code;
}

/* Takes the payload of a pub/sub "message" reply: 0, 1 for any other reply (confirmations of
 * SUBSCRIBE), -ENOMEM. */
static int take_message(const redisReply *r, char **msg, size_t *len)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
        r->element[0]->type != REDIS_REPLY_STRING || strcmp(r->element[0]->str, "message") != 0 ||
        r->element[2]->type != REDIS_REPLY_STRING)
        return 1;
    const redisReply *p = r->element[2];
    if (!(*msg = malloc(p->len + 1)))
        return -ENOMEM;
    memcpy(*msg, p->str, p->len);
    (*msg)[p->len] = '\0';
    *len = p->len;
    return 0;
}

int fl_mview_next_message(redisContext *rc, const sigset_t *wait_mask, char **msg, size_t *len,
                          char *err, size_t errlen)
{
    for (;;) {
        void *reply = NULL;
        if (redisGetReplyFromReader(rc, &reply) != REDIS_OK)
            return fail(-EIO, err, errlen, "Redis broke the protocol: %s", rc->errstr);
        if (reply) {
            int code = take_message(reply, msg, len);
            freeReplyObject(reply);
            if (code <= 0)
                return code;
            continue;
        }
        struct pollfd p = { .fd = rc->fd, .events = POLLIN };
        if (ppoll(&p, 1, NULL, wait_mask) < 0) {
            if (errno == EINTR)
                return -EINTR;
            return fail(-EIO, err, errlen, "waiting for Redis: %s", strerror(errno));
        }
        if (redisBufferRead(rc) != REDIS_OK)
            return fail(-EIO, err, errlen, "lost the connection to Redis: %s", rc->errstr);
    }
}

/* Writes s with control bytes as '?': a field of a published message cannot break the line. */
static void put_word(FILE *f, const char *s)
{
    for (; *s; s++)
        fputc((unsigned char)*s < 0x20 || *s == 0x7f ? '?' : *s, f);
}

/* Writes an integer field, or "-" when the event lacks it. */
static void put_integer(FILE *f, const json_t *v)
{
    if (json_is_integer(v))
        fprintf(f, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    else
        fputc('-', f);
}

/* Writes the current time as RFC 3339 UTC with milliseconds, as the daemon writes times. */
static void put_now(FILE *f)
{
    struct timespec ts;
    struct tm tm;
    char text[32];
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%S", &tm);
    fprintf(f, "%s.%03ldZ", text, ts.tv_nsec / 1000000);
}

static void put_human(FILE *f, const json_t *j)
{
    const char *updated = json_string_value(json_object_get(j, "updated_at"));
    const char *event = json_string_value(json_object_get(j, FL_PROTO_EVENT_KEY));
    const char *state = json_string_value(json_object_get(j, "state"));
    const char *error = json_string_value(json_object_get(j, "error"));
    if (updated)
        put_word(f, updated);
    else
        put_now(f);
    const char *words[] = { json_string_value(json_object_get(j, "id")),
                            json_string_value(json_object_get(j, "type")), event };
    for (size_t i = 0; i < 3; i++) {
        fputc(' ', f);
        put_word(f, words[i]);
    }
    if (state && strcmp(state, event) != 0) {    /* "retrying" alone does not say "scheduled" */
        fputs(" state=", f);
        put_word(f, state);
    }
    fputs(" status=", f);
    put_integer(f, json_object_get(j, "status"));
    fputs(" attempts=", f);
    put_integer(f, json_object_get(j, "attempts"));
    fputc('/', f);
    put_integer(f, json_object_get(j, "max_attempts"));
    if (error && error[0]) {
        /* JSON string syntax: quoted, with quotes, backslashes and control bytes escaped */
        fputs(" error=", f);
        json_dumpf(json_object_get(j, "error"), f, JSON_ENCODE_ANY);
    }
    fputc('\n', f);
}

/* Writes msg on one line: a raw line break in JSON can only be whitespace between tokens
 * (inside strings it must be escaped), so a space stands in for it. */
static void put_verbatim(FILE *f, const char *msg, size_t len)
{
    for (size_t i = 0; i < len; i++)
        fputc(msg[i] == '\n' || msg[i] == '\r' ? ' ' : msg[i], f);
    fputc('\n', f);
}

int fl_mview_event_line(const char *msg, size_t len, const char *type, int as_json, char **line)
{
    *line = NULL;
    json_t *j = json_loadb(msg, len, 0, NULL);
    if (!json_is_object(j) || !json_is_string(json_object_get(j, "id")) ||
        !json_is_string(json_object_get(j, "type")) || !json_is_string(json_object_get(j, "event"))) {
        json_decref(j);
        return -EBADMSG;
    }
    if (type && strcmp(type, json_string_value(json_object_get(j, "type"))) != 0) {
        json_decref(j);
        return 1;
    }
    size_t size;
    FILE *f = open_memstream(line, &size);
    if (!f) {
        json_decref(j);
        return -ENOMEM;
    }
    if (as_json)
        put_verbatim(f, msg, len);
    else
        put_human(f, j);
    int bad = ferror(f);
    json_decref(j);
    if (fclose(f) != 0 || bad) {
        free(*line);
        *line = NULL;
        return -ENOMEM;
    }
    return 0;
}
