/* worker.h — runs one attempt on the libev loop from a run spec (a job by its type's handler,
 * or an `exec:` callback hook): `exec` (a child process in its own process group, input on
 * stdin, output tail kept), `http` (POST the input through webhook.c), `sleep` and `noop`
 * (built in). Enforces the attempt's time limit (SIGTERM to the group, SIGKILL after a grace
 * period) and stops on request (cancel, shutdown). Never blocks the loop: children are watched
 * with ev_child, pipes with ev_io. The caller decides what an outcome means (sched.c: retry,
 * fail, succeed; callback.c: delivered or not). */
#ifndef FL_WORKER_H
#define FL_WORKER_H

#include <ev.h>
#include <stddef.h>
#include <stdint.h>
#include "config.h"
#include "job.h"

struct fl_webhook;

#define FL_WORKER_OUTPUT_MAX 4096   /* the tail of stdout+stderr kept as the job's output */

typedef enum fl_stop_reason {
    FL_STOP_CANCEL = 1,   /* DELETE /v1/jobs/{id}: the job ends cancelled */
    FL_STOP_SHUTDOWN      /* graceful stop ran out of time: the job goes back to the queue */
} fl_stop_reason;

/* How an attempt ended. Valid only during the done callback. */
typedef struct fl_outcome {
    int ok;                        /* the handler succeeded (exit 0, 2xx, slept, noop) */
    int timed_out;                 /* the time limit passed: the TIMEOUT status bit */
    fl_stop_reason stopped;        /* 0, or why fl_worker_stop ended it */
    int has_exit_code; int exit_code;  /* exec: the exit status when it exited normally */
    const char *error;             /* "" when ok; else why, e.g. "exit code 3", "killed by signal 9",
                                      "timed out after 30 s", "HTTP 500", "exec /x: No such file" */
    const char *output;            /* the tail of the output (exec) or reply body (http); may be binary */
    size_t output_len;
    double seconds;                /* wall time of the attempt */
} fl_outcome;

typedef struct fl_worker fl_worker;
typedef void (*fl_worker_done)(fl_worker *w, const fl_outcome *o, void *udata);

typedef struct fl_worker_env {
    struct ev_loop *loop;          /* must be the default loop (ev_child only works there) */
    struct fl_webhook *webhook;    /* for the http handler; may be NULL if no http type exists */
    double kill_grace;             /* seconds between SIGTERM and SIGKILL */
} fl_worker_env;

/* What one attempt runs: a job's handler (sched.c) or an exec: callback hook (callback.c). The
 * struct is copied; every pointer in it is borrowed until done runs. */
typedef struct fl_worker_spec {
    fl_handler handler;
    char *const *argv;             /* exec: the command, NULL-terminated, argv[0] a path */
    const char *url;               /* http: the target */
    const void *input;             /* exec: stdin; http: the body; sleep: its seconds */
    size_t input_len;
    const fl_type *settings;       /* exec: env, env_pass, user and group from this type; NULL = none */
    int64_t job_id;                /* FLING_JOB_ID (exec), Fling-Job-Id (http) */
    const char *job_type;          /* FLING_JOB_TYPE, Fling-Job-Type */
    int attempt;                   /* FLING_ATTEMPT */
    const char *traceparent;       /* W3C trace context: TRACEPARENT / TRACESTATE (exec), */
    const char *tracestate;        /* traceparent / tracestate headers (http); NULL = none */
    double timeout;                /* the time limit in seconds, 0 = none */
} fl_worker_spec;

/* The longest trace context header line: "tracestate: " and FL_TRACESTATE_MAX bytes. */
#define FL_TRACE_HEADER_MAX (FL_TRACESTATE_MAX + 32)

/* fl_worker_trace_headers writes the traceparent and tracestate header lines of an outgoing
 * POST into tp and ts, and points out[0] (and out[1]) at those present; nothing without a
 * traceparent. Shared by the http handler and the HTTP callbacks. */
void fl_worker_trace_headers(const char *traceparent, const char *tracestate, char tp[FL_TRACE_HEADER_MAX],
                             char ts[FL_TRACE_HEADER_MAX], const char **out);

/* fl_worker_start begins running spec (see fl_worker_spec for what it borrows). done runs
 * exactly once, on the loop, never from inside this call; the worker is freed right after done
 * returns. Returns 0 (and *out if out is not NULL), or a negative errno if nothing was started
 * (done never runs). */
int fl_worker_start(const fl_worker_env *env, const fl_worker_spec *spec, fl_worker_done done, void *udata,
                    fl_worker **out);

/* fl_worker_stop ends the attempt early (SIGTERM to the process group, SIGKILL after the grace
 * period; an http transfer is cancelled); done then runs with o->stopped = reason. */
void fl_worker_stop(fl_worker *w, fl_stop_reason reason);

/* fl_worker_abandon ends the attempt at once without calling done, for a daemon that is
 * going away after its loop ended: SIGKILL to the process group (the child is reaped by init
 * once the daemon exits), an http transfer cancelled, watchers stopped, w freed. */
void fl_worker_abandon(fl_worker *w);

/* fl_worker_job_id returns the id of the job w runs. */
int64_t fl_worker_job_id(const fl_worker *w);

#endif
