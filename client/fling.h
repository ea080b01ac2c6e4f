/* fling.h — libfling, the C client of flingd. libc only (no libev, no JSON library).
 *
 * fling_fire(): connect (with a timeout), write the whole request in one go, close with a
 * normal FIN, never read — the fire-and-forget trigger. fling_submit(): the same request, but
 * it waits for the reply on a kept-alive connection and returns the job id.
 * A fling_client may be shared by threads: its kept-alive connection is guarded by a mutex.
 * No call raises SIGPIPE. URLs: "http://host:port" or "unix:/path/to.sock". */
#ifndef FLING_H
#define FLING_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Errors: every call returns 0 or one of these (negative). */
#define FLING_EINVAL    (-1)   /* bad argument (URL, type name, option value) */
#define FLING_ENOMEM    (-2)
#define FLING_ECONNECT  (-3)   /* could not connect (refused, unreachable, connect timeout);
                                  errno holds the last connect error on return */
#define FLING_ESEND     (-4)   /* connected, but could not send the whole request */
#define FLING_ERECV     (-5)   /* sent, but the reply did not come (closed, reset, timeout) */
#define FLING_EPROTO    (-6)   /* the reply was not HTTP we understand */
#define FLING_EHTTP     (-7)   /* the daemon answered with an error status (see fling_response) */
#define FLING_ERESOLVE  (-8)   /* the URL's host name did not resolve (getaddrinfo failed) */

typedef struct fling_client fling_client;

/* Per-job options; zero-initialise and set what you need. */
typedef struct fling_job_opts {
    double timeout;              /* Fling-Timeout seconds; 0 = the type's */
    int max_attempts;            /* Fling-Max-Attempts; 0 = the type's */
    double delay;                /* Fling-Delay seconds; 0 = run now */
    int has_priority; int priority;  /* Fling-Priority */
    const char *callback;        /* Fling-Callback URL, or NULL */
    const char *idempotency_key; /* Idempotency-Key, or NULL */
    int wait;                    /* Prefer: wait=N (1..3600): fling_submit's reply waits up to
                                    N s for the job to end, and its deadline grows to N + 10 s;
                                    0 = the ack at once. Not for fling_fire */
    const char *on_disconnect;   /* Fling-On-Disconnect "cancel" or "continue" (with wait), or NULL */
} fling_job_opts;

/* A reply. Owned by the caller; fling_response_clear frees its body. */
typedef struct fling_response {
    int status;                  /* HTTP status, 0 if none was read */
    char id[24];                 /* the job id (from Location) on 202/200 submits, else "" */
    int duplicate;               /* 1 if an Idempotency-Key matched an existing job (200);
                                    0 with opts->wait, where a 200 carries the job's JSON */
    char *body;                  /* the reply body, NUL-terminated (may be NULL) */
    size_t body_len;
} fling_response;

/* fling_client_new parses url and returns a client, or NULL (errno EINVAL or ENOMEM).
 * token may be NULL (no Authorization header); it is copied. Free with fling_client_free. */
fling_client *fling_client_new(const char *url, const char *token);

/* fling_client_free closes the kept-alive connection and frees c; NULL is a no-op. */
void fling_client_free(fling_client *c);

/* fling_client_set_timeouts sets the connect timeout (default 3000 ms: one dropped SYN
 * costs 1 s, two cost 3 s) and the
 * send/receive timeout (default 10000 ms). */
void fling_client_set_timeouts(fling_client *c, int connect_ms, int io_ms);

/* fling_fire sends one job and hangs up without reading: 0 once the kernel has taken every
 * byte of the request, else FLING_ERESOLVE / FLING_ECONNECT / FLING_ESEND / FLING_EINVAL (also for opts->wait or
 * opts->on_disconnect, which need a reader) / FLING_ENOMEM. */
int fling_fire(fling_client *c, const char *type, const void *payload, size_t len,
               const fling_job_opts *opts);

/* fling_submit sends one job and waits for the ack: 0 with res->id set (status 202, or 200 with
 * duplicate = 1), FLING_EHTTP with res->status and res->body on an error reply, or another
 * FLING_E*. res may be NULL; if not, clear it with fling_response_clear.
 * With opts->wait (attached mode, RFC 7240) the daemon answers 200 with the job's JSON in
 * res->body once the job ended within the wait, else 202 as usual. */
int fling_submit(fling_client *c, const char *type, const void *payload, size_t len,
                 const fling_job_opts *opts, fling_response *res);

/* fling_request sends any request (method "GET", "DELETE", ...; path like "/v1/jobs/7") with an
 * optional body, on the kept-alive connection, and reads the reply into res. 0 for a 2xx,
 * FLING_EHTTP for another status (res filled), or another FLING_E*. */
int fling_request(fling_client *c, const char *method, const char *path,
                  const void *body, size_t len, fling_response *res);

/* fling_client_connect opens a new connection to c's address (not the kept-alive one) within
 * the connect timeout: a connected non-blocking socket that the caller owns and closes, or
 * FLING_ERESOLVE / FLING_ECONNECT. For replies that are streams (GET /v1/events), which libfling does not read. */
int fling_client_connect(const fling_client *c);

/* fling_response_clear frees res->body and zeroes res. */
void fling_response_clear(fling_response *res);

/* fling_strerror describes a FLING_E* code. Static string. */
const char *fling_strerror(int err);

#ifdef __cplusplus
}
#endif
#endif
