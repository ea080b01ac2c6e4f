/* job.c — the job record in one allocation, and its JSON form for GET /v1/jobs/{id},
 * callbacks and Redis events. Output bytes are made valid UTF-8 here because jansson
 * refuses anything else. */
#include "job.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rediskeys.h"

/* add_part reserves a part of n bytes plus its NUL; returns 0, or -1 if the total overflows. */
static int add_part(size_t *total, size_t n)
{
    if (n == FL_JOB_ABSENT)
        return 0;
    if (n >= SIZE_MAX - *total - 1)
        return -1;
    *total += n + 1;
    return 0;
}

/* take_part points *where at the next part of the allocation, or leaves it NULL if absent. */
static void *take_part(char **cursor, size_t n)
{
    char *p;

    if (n == FL_JOB_ABSENT)
        return NULL;
    p = *cursor;
    *cursor += n + 1;
    return p;
}

/* job_total is the size of one allocation for a job with sizes: 0, or -1 if it overflows. */
static int job_total(const fl_job_sizes *sizes, size_t *total)
{
    *total = sizeof(fl_job);
    return add_part(total, sizes->type) || add_part(total, sizes->callback) ||
           add_part(total, sizes->idem_key) || add_part(total, sizes->error) ||
           add_part(total, sizes->output) || add_part(total, sizes->payload) ||
           add_part(total, sizes->previous_error) || add_part(total, sizes->content_type) ||
           add_part(total, sizes->traceparent) || add_part(total, sizes->tracestate) ? -1 : 0;
}

fl_job *fl_job_new(const fl_job_sizes *sizes)
{
    size_t total;
    fl_job *job;
    char *cursor;

    if (job_total(sizes, &total) < 0)
        return NULL;
    job = calloc(1, total);
    if (!job)
        return NULL;
    cursor = (char *)(job + 1);
    job->type = take_part(&cursor, sizes->type);
    job->callback = take_part(&cursor, sizes->callback);
    job->idem_key = take_part(&cursor, sizes->idem_key);
    job->error = take_part(&cursor, sizes->error);
    job->output = take_part(&cursor, sizes->output);
    job->output_len = job->output ? sizes->output : 0;
    job->payload = take_part(&cursor, sizes->payload);
    job->payload_len = job->payload ? sizes->payload : 0;
    job->previous_error = take_part(&cursor, sizes->previous_error);
    job->content_type = take_part(&cursor, sizes->content_type);
    job->traceparent = take_part(&cursor, sizes->traceparent);
    job->tracestate = take_part(&cursor, sizes->tracestate);
    return job;
}

/* str_size is a string part's size for fl_job_sizes: its length, or absent for NULL. */
static size_t str_size(const char *s)
{
    return s ? strlen(s) : FL_JOB_ABSENT;
}

/* copy_part copies n bytes of src into dst, the part fl_job_new made for it (NULL if absent). */
static char *copy_part(char *dst, const char *src, size_t n)
{
    if (dst)
        memcpy(dst, src, n);
    return dst;
}

fl_job *fl_job_copy(const fl_job *job, size_t *bytes)
{
    fl_job_sizes sz = {
        .type = str_size(job->type), .callback = str_size(job->callback),
        .idem_key = str_size(job->idem_key), .error = str_size(job->error),
        .output = job->output ? job->output_len : FL_JOB_ABSENT, .payload = FL_JOB_ABSENT,
        .previous_error = str_size(job->previous_error), .content_type = str_size(job->content_type),
        .traceparent = str_size(job->traceparent), .tracestate = str_size(job->tracestate),
    };
    fl_job *c = job_total(&sz, bytes) < 0 ? NULL : fl_job_new(&sz);
    if (!c)
        return NULL;
    fl_job room = *c;   /* where fl_job_new put the copy's parts; the scalars come from job */
    *c = *job;
    c->type = copy_part(room.type, job->type, sz.type);
    c->callback = copy_part(room.callback, job->callback, sz.callback);
    c->idem_key = copy_part(room.idem_key, job->idem_key, sz.idem_key);
    c->error = copy_part(room.error, job->error, sz.error);
    c->output = copy_part(room.output, job->output, sz.output);
    c->previous_error = copy_part(room.previous_error, job->previous_error, sz.previous_error);
    c->content_type = copy_part(room.content_type, job->content_type, sz.content_type);
    c->traceparent = copy_part(room.traceparent, job->traceparent, sz.traceparent);
    c->tracestate = copy_part(room.tracestate, job->tracestate, sz.tracestate);
    c->payload = NULL;
    c->payload_len = 0;
    return c;
}

void fl_job_free(fl_job *job)
{
    free(job);
}

int64_t fl_job_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

size_t fl_job_time_format(int64_t ms, char out[FL_JOB_TIME_MAX])
{
    struct tm tm;
    int64_t frac = ms % 1000;
    if (frac < 0)
        frac += 1000;
    time_t sec = (time_t)((ms - frac) / 1000);
    size_t n;
    out[0] = '\0';
    if (ms == 0 || !gmtime_r(&sec, &tm) ||
        (n = strftime(out, FL_JOB_TIME_MAX, "%Y-%m-%dT%H:%M:%S", &tm)) == 0)
        return 0;
    int m = snprintf(out + n, FL_JOB_TIME_MAX - n, ".%03dZ", (int)frac);
    return n + (size_t)m;
}

/* time_json is fl_job_time_format as JSON; 0 means null. */
static json_t *time_json(int64_t ms)
{
    char buf[FL_JOB_TIME_MAX];
    if (ms == 0)
        return json_null();
    return fl_job_time_format(ms, buf) ? json_string(buf) : NULL;
}

/* utf8_seq_len returns the length of the well-formed UTF-8 sequence at s (n bytes left), or
 * 0 if it is ill-formed; *bad is then how many bytes form its maximal subpart (Unicode's
 * "substitution of maximal subparts": each one becomes a single U+FFFD). */
static size_t utf8_seq_len(const unsigned char *s, size_t n, size_t *bad)
{
    unsigned char lo = 0x80, hi = 0xBF;
    size_t need, i;

    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xC2 && s[0] <= 0xDF)
        need = 1;
    else if (s[0] >= 0xE0 && s[0] <= 0xEF)
        need = 2;
    else if (s[0] >= 0xF0 && s[0] <= 0xF4)
        need = 3;
    else {
        *bad = 1;
        return 0;
    }
    /* The second byte's range excludes overlong forms, surrogates and code points > U+10FFFF. */
    if (s[0] == 0xE0)
        lo = 0xA0;
    else if (s[0] == 0xED)
        hi = 0x9F;
    else if (s[0] == 0xF0)
        lo = 0x90;
    else if (s[0] == 0xF4)
        hi = 0x8F;
    for (i = 1; i <= need; i++) {
        if (i >= n || s[i] < lo || s[i] > hi) {
            *bad = i;
            return 0;
        }
        lo = 0x80;
        hi = 0xBF;
    }
    return need + 1;
}

/* text_json returns bytes as a JSON string, ill-formed UTF-8 replaced by U+FFFD. */
static json_t *text_json(const char *bytes, size_t len)
{
    static const char replacement[] = "\xEF\xBF\xBD";
    const unsigned char *s = (const unsigned char *)bytes;
    size_t i = 0, o = 0, seq, bad;
    json_t *str;
    char *buf;

    /* Each ill-formed byte becomes at most 3: the worst case triples the size. */
    if (len > (SIZE_MAX - 1) / 3)
        return NULL;
    buf = malloc(len * 3 + 1);
    if (!buf)
        return NULL;
    while (i < len) {
        seq = utf8_seq_len(s + i, len - i, &bad);
        if (seq) {
            memcpy(buf + o, s + i, seq);
            o += seq;
            i += seq;
        } else {
            memcpy(buf + o, replacement, 3);
            o += 3;
            i += bad;
        }
    }
    str = json_stringn(buf, o);
    free(buf);
    return str;
}

/* opt_string returns s as text (see text_json; an error message may quote raw bytes), or
 * null when absent. */
static json_t *opt_string(const char *s)
{
    return s ? text_json(s, strlen(s)) : json_null();
}

json_t *fl_job_to_json(const fl_job *job)
{
    char id[FL_ID_MAX];
    json_t *o = json_object();
    int rc = 0;

    if (!o)
        return NULL;
    snprintf(id, sizeof(id), "%lld", (long long)job->id);
    /* json_object_set_new takes the value even on failure and refuses NULL, so one error
     * flag covers every allocation below. */
    rc |= json_object_set_new(o, "id", json_string(id));
    rc |= json_object_set_new(o, "type", opt_string(job->type));
    rc |= json_object_set_new(o, "state", json_string(fl_proto_state_name(job->state)));
    rc |= json_object_set_new(o, "status", json_integer(job->status));
    rc |= json_object_set_new(o, "attempts", json_integer(job->attempts));
    rc |= json_object_set_new(o, "max_attempts", json_integer(job->max_attempts));
    rc |= json_object_set_new(o, "priority", json_integer(job->priority));
    rc |= json_object_set_new(o, "timeout", json_real(job->timeout));
    rc |= json_object_set_new(o, "created_at", time_json(job->created_at));
    rc |= json_object_set_new(o, "run_at", time_json(job->run_at));
    rc |= json_object_set_new(o, "started_at", time_json(job->started_at));
    rc |= json_object_set_new(o, "finished_at", time_json(job->finished_at));
    rc |= json_object_set_new(o, "updated_at", time_json(job->updated_at));
    rc |= json_object_set_new(o, "exit_code",
                              job->has_exit_code ? json_integer(job->exit_code) : json_null());
    rc |= json_object_set_new(o, "error", opt_string(job->error));
    rc |= json_object_set_new(o, "output",
                              job->output ? text_json(job->output, job->output_len) : json_null());
    rc |= json_object_set_new(o, "callback", opt_string(job->callback));
    rc |= json_object_set_new(o, "retried", json_integer(job->retried));
    rc |= json_object_set_new(o, "previous_attempts", json_integer(job->previous_attempts));
    rc |= json_object_set_new(o, "previous_error", opt_string(job->previous_error));
    rc |= json_object_set_new(o, "content_type", opt_string(job->content_type));
    rc |= json_object_set_new(o, "traceparent", opt_string(job->traceparent));
    rc |= json_object_set_new(o, "tracestate", opt_string(job->tracestate));
    if (rc) {
        json_decref(o);
        return NULL;
    }
    return o;
}

json_t *fl_job_event_json(const fl_job *job, const char *event)
{
    json_t *o = fl_job_to_json(job);
    if (o && json_object_set_new(o, FL_PROTO_EVENT_KEY, json_string(event)) < 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}
