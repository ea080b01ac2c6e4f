/* proto.h — what flingd and libfling share: paths, header names, job states, status bits,
 * the job options carried in request headers (parsed and validated here, encoded here).
 * Bytes in, values out: no sockets, no libev, no allocation except where stated.
 * The request encoder and the response parser live in encode.h and resp.h. */
#ifndef FL_PROTO_H
#define FL_PROTO_H

#include <stddef.h>
#include <stdint.h>

#define FL_PROTO_JOBS_PATH   "/v1/jobs"      /* POST /v1/jobs/{type}, GET|DELETE /v1/jobs/{id}, GET /v1/jobs */
#define FL_PROTO_TYPES_PATH  "/v1/types"     /* GET /v1/types, POST /v1/types/{type}/pause|resume */
#define FL_PROTO_PRUNE_PATH  "/v1/prune"     /* POST /v1/prune?older_than=DURATION */
#define FL_PROTO_HEALTH_PATH "/healthz"
#define FL_PROTO_METRICS_PATH "/metrics"
#define FL_PROTO_EVENTS_PATH "/v1/events"   /* GET: Server-Sent Events of job changes */

#define FL_HDR_TIMEOUT      "Fling-Timeout"
#define FL_HDR_MAX_ATTEMPTS "Fling-Max-Attempts"
#define FL_HDR_DELAY        "Fling-Delay"
#define FL_HDR_PRIORITY     "Fling-Priority"
#define FL_HDR_CALLBACK     "Fling-Callback"
#define FL_HDR_IDEM_KEY     "Idempotency-Key"
#define FL_HDR_AUTH         "Authorization"
/* Attached mode: "Prefer: wait=N" (RFC 7240) holds the reply until the job ends or N seconds
 * pass; Fling-On-Disconnect says what a client that leaves meanwhile wants done. */
#define FL_HDR_PREFER           "Prefer"
#define FL_HDR_PREF_APPLIED     "Preference-Applied"
#define FL_HDR_ON_DISCONNECT    "Fling-On-Disconnect"
/* W3C Trace Context: kept with the job, passed on to its handler and callbacks. */
#define FL_HDR_TRACEPARENT      "traceparent"
#define FL_HDR_TRACESTATE       "tracestate"
#define FL_TRACESTATE_MAX       512   /* W3C: at most 32 members, 512 bytes is what to keep */
#define FL_TRACEPARENT_MAX      256   /* 55 for version 00; room for a later version's fields */

/* Bounds on option values; each comment says why the number. */
#define FL_TYPE_NAME_MAX    64       /* a config section name, not data */
#define FL_IDEM_KEY_MAX     255      /* enough for a UUID or a hash plus a prefix */
#define FL_CALLBACK_MAX     2048     /* the de-facto URL length limit of browsers and proxies */
#define FL_TIMEOUT_MAX      (7 * 86400.0)   /* a job running for more than a week is a bug */
#define FL_DELAY_MAX        (366 * 86400.0) /* schedule up to a year ahead */
#define FL_ATTEMPTS_MAX     1000
#define FL_ID_MAX           24       /* decimal int64 plus NUL, with room */
#define FL_WAIT_MAX         3600     /* Prefer: wait; longer is cut to this (polling status is the better tool) */

typedef enum fl_state {
    FL_STATE_QUEUED = 0,
    FL_STATE_SCHEDULED,
    FL_STATE_RUNNING,
    FL_STATE_SUCCEEDED,
    FL_STATE_FAILED,
    FL_STATE_CANCELLED,
    FL_STATE_COUNT
} fl_state;

/* status bits, as PHP's connection_status() */
#define FL_STATUS_NORMAL  0
#define FL_STATUS_ABORTED 1   /* the submitting client was gone before its ack was delivered */
#define FL_STATUS_TIMEOUT 2   /* an attempt ran past its time limit */

/* fl_proto_state_name returns the contract name of a state ("queued", ...), or "unknown". */
const char *fl_proto_state_name(fl_state s);
/* fl_proto_state_parse sets *out from a name of len bytes; 0, or -EINVAL if no state has it. */
int fl_proto_state_parse(const char *name, size_t len, fl_state *out);
/* fl_proto_state_terminal returns 1 for succeeded, failed and cancelled, else 0. */
int fl_proto_state_terminal(fl_state s);

/* fl_proto_valid_type returns 1 if name (len bytes) is a legal job type: 1..64 of [A-Za-z0-9_.-]. */
int fl_proto_valid_type(const char *name, size_t len);

/* Job options carried as request headers. has_* says whether the header was present;
 * strings are borrowed from the caller (not owned, not NUL-terminated: pointer + length). */
typedef struct fl_proto_opts {
    int has_timeout;      double timeout;      /* seconds, > 0 */
    int has_max_attempts; int max_attempts;    /* 1..FL_ATTEMPTS_MAX */
    int has_delay;        double delay;        /* seconds, >= 0 */
    int has_priority;     int32_t priority;    /* higher runs first */
    const char *callback; size_t callback_len; /* NULL if absent */
    const char *idem_key; size_t idem_key_len; /* NULL if absent */
} fl_proto_opts;

/* fl_proto_opt_header tells whether a header name (case-insensitive) is one of the options. */
int fl_proto_opt_header(const char *name, size_t len);

/* fl_proto_opts_set parses one header into opts: 0 if set, 1 if the header is not an option,
 * -EINVAL if the value is malformed or out of range (the caller answers 400 bad_header).
 * value is borrowed: callback/idem_key point into it and must outlive opts. */
int fl_proto_opts_set(fl_proto_opts *opts, const char *name, size_t name_len,
                      const char *value, size_t value_len);

/* fl_proto_prefer_wait looks for the wait preference in one Prefer header value (len bytes;
 * comma-separated preferences, each `token[=value][;params]`, tokens case-insensitive, the
 * value maybe quoted). Returns 1 and *secs (0..FL_WAIT_MAX, larger values cut) if present,
 * 0 if absent, -EINVAL if its value is not a number of seconds. */
int fl_proto_prefer_wait(const char *v, size_t len, int *secs);

/* fl_proto_parse_id parses a job id (decimal, 1..INT64_MAX) of len bytes; 0 or -EINVAL. */
int fl_proto_parse_id(const char *s, size_t len, int64_t *out);

/* fl_proto_traceparent_valid tells whether v (len bytes) is a W3C traceparent this version
 * understands: "00-<32 hex trace-id>-<16 hex parent-id>-<2 hex flags>", lower-case hex, ids
 * not all zero (or a later version with those fields first); 1 or 0. */
int fl_proto_traceparent_valid(const char *v, size_t len);

/* fl_proto_tracestate_valid tells whether v (len bytes) can be kept and sent on as a
 * tracestate: 1..FL_TRACESTATE_MAX bytes of visible ASCII, spaces and tabs; 1 or 0. */
int fl_proto_tracestate_valid(const char *v, size_t len);

/* The longest duration fl_proto_parse_duration takes: 100 years of 365 days, in seconds. */
#define FL_DURATION_MAX 3153600000LL

/* fl_proto_parse_duration parses a duration of len bytes: whole seconds, or a whole number with
 * one unit s, m, h or d ("90", "30m", "12h", "7d"); 0 and *secs (0..FL_DURATION_MAX), or
 * -EINVAL. */
int fl_proto_parse_duration(const char *s, size_t len, int64_t *secs);

#endif
