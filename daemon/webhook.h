/* webhook.h — outgoing HTTP POSTs on the libev loop through libcurl's multi-socket API, for the
 * `http` job handler and for completion/abort callbacks; plus the HMAC-SHA256 that signs them.
 * Nothing here blocks the loop: sockets and curl's timer are libev watchers, and names resolve
 * on curl's resolver thread (Debian 12's libcurl is built with the threaded resolver).
 *
 * DESIGN. One fl_webhook per loop owns the curl multi handle, its timer and one io watcher per
 * socket curl asks us to watch. A transfer (fl_webhook_req) owns its easy handle, a copy of
 * the body and headers, and the first FL_WEBHOOK_BODY_MAX bytes of the reply. Completion
 * callbacks run from the loop, after curl_multi_socket_action has returned, so a callback may
 * post, cancel or even free the fl_webhook: frees asked for inside a callback are deferred
 * until the callback returns (hiredis REDIS_IN_CALLBACK). Loop thread only. */
#ifndef FL_WEBHOOK_H
#define FL_WEBHOOK_H

#include <stddef.h>

struct ev_loop;

#define FL_WEBHOOK_BODY_MAX (16 * 1024)  /* reply bytes kept: enough for a log line or an output tail */
#define FL_WEBHOOK_USER_AGENT "flingd/0.1"

typedef struct fl_webhook fl_webhook;          /* one per loop: the curl multi handle + its watchers */
typedef struct fl_webhook_req fl_webhook_req;  /* one transfer in flight; owned by its fl_webhook */

typedef struct fl_webhook_result {
    int ok;                 /* 1 when curl_code is CURLE_OK and status is 2xx */
    int curl_code;          /* CURLE_OK or the transport error (a CURLcode) */
    const char *error;      /* "" when ok; else curl's message or "HTTP 500"; never NULL */
    long status;            /* HTTP status of the reply, 0 if none came */
    const char *body;       /* the first FL_WEBHOOK_BODY_MAX bytes of the reply, NUL-terminated */
    size_t body_len;        /* bytes in body (a reply may be longer) */
    double seconds;         /* total time of the transfer */
} fl_webhook_result;        /* everything in it is valid only during the callback */

/* Runs exactly once per successful fl_webhook_post, on the loop thread, unless cancelled. */
typedef void (*fl_webhook_cb)(void *udata, const fl_webhook_result *r);

/* fl_webhook_new creates the POST machinery for loop (borrowed; it must outlive the fl_webhook);
 * 0 and *out (caller frees with fl_webhook_free), or -ENOMEM / -EIO. It calls curl_global_init,
 * which is thread-safe in libcurl >= 7.84 built "threadsafe" (Debian 12's 7.88 is); with an
 * older libcurl call it from main before other threads start. */
int fl_webhook_new(fl_webhook **out, struct ev_loop *loop);

/* fl_webhook_post starts POSTing len bytes of body to url (http or https only; redirects are not
 * followed) with extra headers ("Name: value", NULL-terminated, may be NULL; a Content-Type
 * among them replaces the default application/json), giving up on connecting after
 * connect_timeout and on the whole transfer after total_timeout seconds (both > 0). url, body
 * and headers are copied. cb(udata, result) runs exactly once later on the loop thread, never
 * from inside this call. Returns 0 and, if req is not NULL, *req (valid until cb returns or
 * fl_webhook_cancel); or -EINVAL (bad argument, a header with CR or LF), -ENOMEM, -EIO, -ESHUTDOWN
 * (w is being freed), and then cb never runs. */
int fl_webhook_post(fl_webhook *w, const char *url, const void *body, size_t len,
                    const char *const *headers, double connect_timeout, double total_timeout,
                    fl_webhook_cb cb, void *udata, fl_webhook_req **req);

/* fl_webhook_cancel stops req's transfer and frees it; its cb never runs. Called from inside
 * req's own cb it does nothing (req is freed when cb returns). NULL is a no-op. */
void fl_webhook_cancel(fl_webhook_req *req);

/* fl_webhook_active returns how many transfers are in flight (posted, cb not yet run). */
size_t fl_webhook_active(const fl_webhook *w);

/* fl_webhook_free cancels every transfer still in flight (their cbs never run) and frees w;
 * inside a cb the final free waits until that cb returns. NULL is a no-op. */
void fl_webhook_free(fl_webhook *w);

/* fl_webhook_sign writes the HMAC-SHA256 of body under secret (a NUL-terminated key) to out_hex
 * as 64 lowercase hex digits and a NUL, for "Fling-Signature: sha256=<hex>"; 0, -EINVAL, -EIO. */
int fl_webhook_sign(const char *secret, const void *body, size_t len, char out_hex[65]);

#endif
