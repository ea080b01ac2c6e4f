/* job.h — the job record shared by the store, the HTTP layer and the scheduler, and its JSON
 * form (the body of GET /v1/jobs/{id}, of callbacks and of Redis events).
 * A job and all its strings and payload share one allocation (beanstalkd's allocate_job):
 * fl_job_new sizes it once, fl_job_free releases it whole. */
#ifndef FL_JOB_H
#define FL_JOB_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include "proto.h"

typedef struct fl_job {
    int64_t id;                /* 0 until the store assigned one */
    fl_state state;
    int status;                /* FL_STATUS_* bits */
    int attempts;              /* attempts started so far */
    int max_attempts;
    int32_t priority;
    double timeout;            /* seconds an attempt may run */
    int64_t created_at;        /* ms since the epoch; 0 = not yet */
    int64_t run_at;
    int64_t started_at;
    int64_t finished_at;
    int64_t updated_at;        /* the store's clock at the job's last change */
    int has_exit_code;
    int exit_code;
    int retried;               /* times POST /v1/jobs/{id}/retry ran it again */
    int previous_attempts;     /* attempts of the runs before the latest retry */
    /* Strings point into this allocation; NULL when absent. Sizes fixed by fl_job_new. */
    char *type;
    char *callback;            /* Fling-Callback URL */
    char *idem_key;            /* Idempotency-Key */
    char *error;               /* last error, human-readable */
    char *output;              /* tail of the last attempt's output (bytes, maybe not UTF-8) */
    char *previous_error;      /* the last error recorded before the latest retry */
    char *content_type;        /* the submit's Content-Type; NULL if it had none */
    char *traceparent;         /* W3C trace context of the submit; NULL if none */
    char *tracestate;
    size_t output_len;
    unsigned char *payload;    /* NULL when not loaded (lists); payload_len bytes */
    size_t payload_len;
} fl_job;

/* The callback a committed change of a job is told through: job is borrowed for the call (its
 * payload may be absent); event names the change ("submitted", "started", "cancelled", ...). */
typedef void (*fl_job_changed_fn)(void *udata, const fl_job *job, const char *event);

/* Byte sizes of the variable parts, for fl_job_new; a field of size (size_t)-1 is absent (NULL),
 * any other size gets that many bytes plus a NUL, zeroed. */
typedef struct fl_job_sizes {
    size_t type, callback, idem_key, error, output, payload, previous_error, content_type;
    size_t traceparent, tracestate;
} fl_job_sizes;

#define FL_JOB_ABSENT ((size_t)-1)

/* fl_job_new returns a zeroed job with room for the parts in sizes (strings NUL-terminated,
 * callers fill them), or NULL on ENOMEM. Caller frees with fl_job_free. */
fl_job *fl_job_new(const fl_job_sizes *sizes);

/* fl_job_copy returns a copy of job without its payload (payload NULL), in one allocation whose
 * size goes to *bytes; NULL on ENOMEM. Caller frees with fl_job_free. */
fl_job *fl_job_copy(const fl_job *job, size_t *bytes);

/* fl_job_free releases job and everything in it; NULL is a no-op. */
void fl_job_free(fl_job *job);

/* fl_job_to_json returns a new JSON object with the fields of docs/protocol.md "The job"
 * (id as a string, times as RFC 3339 UTC with milliseconds or null, output as text with
 * invalid UTF-8 replaced); NULL on ENOMEM. Caller releases with json_decref. */
json_t *fl_job_to_json(const fl_job *job);

/* fl_job_event_json returns fl_job_to_json(job) plus "event": a job change as the Redis channel
 * and GET /v1/events carry it; NULL on ENOMEM. */
json_t *fl_job_event_json(const fl_job *job, const char *event);

/* fl_job_time_format writes ms since the epoch as RFC 3339 UTC with milliseconds
 * ("2026-12-01T21:00:00.123Z") and returns its length; 0 (and "") for ms == 0. */
#define FL_JOB_TIME_MAX 48
size_t fl_job_time_format(int64_t ms, char out[FL_JOB_TIME_MAX]);

/* fl_job_now_ms returns the wall-clock time in ms since the epoch. */
int64_t fl_job_now_ms(void);

#endif
