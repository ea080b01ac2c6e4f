/* fling.h — libfling, the C client of flingd. libc and libcurl (for https://) only: no libev,
 * no JSON library.
 *
 * fling_fire(): connect (with a timeout), write the whole request in one go, close with a
 * normal FIN, never read — the fire-and-forget trigger. Over https the connect includes the
 * TLS handshake (a round trip to the server or proxy before the request can leave), and the
 * close sends TLS close_notify before the FIN; the reply is still never read. fling_submit(): the same request, but
 * it waits for the reply on a kept-alive connection and returns the job id.
 * A fling_client may be shared by threads: its kept-alive connection is guarded by a mutex.
 * No call raises SIGPIPE. URLs: "http://host[:port]", "https://host[:port]" (TLS by libcurl,
 * for a flingd behind a TLS-terminating proxy; see fling_client_set_tls) or
 * "unix:/path/to.sock". Ports default to 80 and 443. */
#ifndef FLING_H
#define FLING_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

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
#define FLING_ETLS      (-9)   /* https: the TLS handshake failed (certificate not trusted or
                                  for another name, CA file unreadable, no common protocol);
                                  fling_tls_error() says why */
#define FLING_EINTR     (-10)  /* fling_stream_read: a signal ended the wait */

typedef struct fling_client fling_client;
typedef struct fling_stream fling_stream;

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
 * costs 1 s, two cost 3 s; for https it includes the TLS handshake) and the
 * send/receive timeout (default 10000 ms). */
void fling_client_set_timeouts(fling_client *c, int connect_ms, int io_ms);

/* Flags of fling_client_set_tls. */
#define FLING_TLS_INSECURE 1     /* accept any certificate for any name: anyone on the path can
                                    read and change the traffic, token included. For a test with
                                    a self-signed certificate only; give its CA file instead */

/* fling_client_set_tls sets how an https client checks the server: ca_file (PEM, copied) is
 * the CA bundle to trust instead of libcurl's default (the system's), NULL for the default;
 * flags 0 or FLING_TLS_INSECURE. Call it before the client is shared by threads; it applies to
 * the connections opened afterwards, and is kept but unused for http:// and unix: clients.
 * 0, FLING_EINVAL (unknown flag, empty ca_file) or FLING_ENOMEM. A CA file that cannot be
 * read is reported by the first connect (FLING_ETLS). */
int fling_client_set_tls(fling_client *c, const char *ca_file, int flags);

/* fling_tls_error describes the last FLING_ETLS returned in this thread (libcurl's message,
 * such as "SSL certificate problem: self-signed certificate"); "" if there was none. Valid
 * until the thread's next libfling call. */
const char *fling_tls_error(void);

/* fling_fire sends one job and hangs up without reading: 0 once the kernel has taken every
 * byte of the request, else FLING_ERESOLVE / FLING_ECONNECT / FLING_ETLS / FLING_ESEND /
 * FLING_EINVAL (also for opts->wait or opts->on_disconnect, which need a reader) /
 * FLING_ENOMEM. Over https, 0 means the TLS layer took every byte: as with plain HTTP, it
 * does not say that the daemon (or the proxy) read them. */
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

/* fling_stream_open opens a new connection to c's address (not the kept-alive one), sends
 * "GET path" on it with c's Host and token, and returns it unread in *out: for replies that
 * are streams (GET /v1/events), which libfling does not parse. 0, FLING_EINVAL (path or token
 * cannot go in a request), FLING_ERESOLVE / FLING_ECONNECT / FLING_ETLS / FLING_ESEND /
 * FLING_ENOMEM (*out NULL). Close it with fling_stream_close. */
int fling_stream_open(fling_client *c, const char *path, fling_stream **out);

/* fling_stream_read waits until the reply has bytes and reads up to len of them (TLS
 * decrypted): how many (> 0), 0 at the end of the stream, FLING_ERECV on a reset or a TLS
 * failure, FLING_EINTR if a signal ended the wait. The wait runs with wait_mask as the signal
 * mask (as ppoll does; NULL: the current one), so a caller can block its stop signals and let
 * them in only here. */
ssize_t fling_stream_read(fling_stream *s, void *buf, size_t len, const sigset_t *wait_mask);

/* fling_stream_close closes the connection (TLS: with close_notify) and frees s; NULL is a no-op. */
void fling_stream_close(fling_stream *s);

/* fling_response_clear frees res->body and zeroes res. */
void fling_response_clear(fling_response *res);

/* fling_strerror describes a FLING_E* code. Static string. */
const char *fling_strerror(int err);

#ifdef __cplusplus
}
#endif
#endif
