/* webhook.c — outgoing HTTP POSTs driven by libcurl's multi-socket API on a libev loop.
 * curl tells us which sockets to watch (sock_cb) and when to wake it (multi_timer_cb); libev
 * tells curl what happened (curl_multi_socket_action); finished transfers are read with
 * curl_multi_info_read and their callbacks run from there, never from inside curl. */
#include "webhook.h"

#include <curl/curl.h>
#include <errno.h>
#include <ev.h>
#include <limits.h>
#include <math.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "list.h"
#include "log.h"

/* More extra headers than a job type or a callback adds (signature, job id, attempt). */
#define FL_WEBHOOK_HEADERS_MAX 32
#define FL_WEBHOOK_PROTOCOLS "http,https"
#define FL_WEBHOOK_SHA256_LEN 32

/* One socket curl asked us to watch; attached to it with curl_multi_assign. */
typedef struct fl_webhook_sock {
    ev_io io;                     /* first member: io_cb gets back here from the watcher */
    fl_webhook *w;
} fl_webhook_sock;

struct fl_webhook_req {
    fl_webhook *w;
    fl_list node;                 /* in w->reqs while in flight */
    CURL *easy;
    struct curl_slist *headers;
    fl_webhook_cb cb;
    void *udata;
    int in_cb;                    /* cb is running: a cancel now must not free req */
    char *reply;                  /* FL_WEBHOOK_BODY_MAX + 1 bytes, allocated on the first reply byte */
    size_t reply_len;
    char errbuf[CURL_ERROR_SIZE]; /* curl's message, or ours ("HTTP 500") */
    char body[];                  /* the POST body, copied; curl sends it from here */
};

struct fl_webhook {
    struct ev_loop *loop;         /* borrowed */
    CURLM *multi;
    ev_timer timer;               /* curl's single timeout */
    fl_list reqs;                 /* transfers in flight, newest first */
    size_t n_active;
    int in_cb;                    /* a transfer's cb is running */
    int free_pending;             /* fl_webhook_free was called from inside a cb */
};

/* ---- transfers ---- */

static void req_link(fl_webhook_req *req)
{
    fl_list_push_head(&req->w->reqs, &req->node);
    req->w->n_active++;
}

static void req_unlink(fl_webhook_req *req)
{
    fl_list_remove(&req->node);
    req->w->n_active--;
}

/* req_destroy frees a transfer that is no longer in the multi handle. */
static void req_destroy(fl_webhook_req *req)
{
    curl_easy_cleanup(req->easy);
    curl_slist_free_all(req->headers);
    free(req->reply);
    free(req);
}

/* on_reply keeps the first FL_WEBHOOK_BODY_MAX bytes of the reply and drops the rest: the
 * transfer still succeeds, and the total timeout bounds an endless reply. */
static size_t on_reply(char *data, size_t size, size_t nmemb, void *udata)
{
    fl_webhook_req *req = udata;
    size_t n = size * nmemb;
    size_t room = FL_WEBHOOK_BODY_MAX - req->reply_len;
    size_t take = n < room ? n : room;
    if (take == 0)
        return n;
    if (!req->reply) {
        req->reply = malloc(FL_WEBHOOK_BODY_MAX + 1);
        if (!req->reply)
            return 0;   /* curl fails the transfer with CURLE_WRITE_ERROR */
    }
    memcpy(req->reply + req->reply_len, data, take);
    req->reply_len += take;
    req->reply[req->reply_len] = '\0';
    return n;
}

static int curl_errno(CURLcode code)
{
    switch (code) {
    case CURLE_OK: return 0;
    case CURLE_OUT_OF_MEMORY: return -ENOMEM;
    case CURLE_BAD_FUNCTION_ARGUMENT: return -EINVAL;
    default: return -EIO;
    }
}

static int has_header(const char *const *headers, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; headers && headers[i]; i++)
        if (strncasecmp(headers[i], name, n) == 0 && headers[i][n] == ':')
            return 1;
    return 0;
}

/* headers_valid refuses CR and LF, which would let a value smuggle in more headers. */
static int headers_valid(const char *const *headers)
{
    for (size_t i = 0; headers && headers[i]; i++)
        if (i >= FL_WEBHOOK_HEADERS_MAX || strpbrk(headers[i], "\r\n") || !strchr(headers[i], ':'))
            return 0;
    return 1;
}

static int append_header(fl_webhook_req *req, const char *h)
{
    struct curl_slist *l = curl_slist_append(req->headers, h);
    if (!l)
        return -ENOMEM;
    req->headers = l;
    return 0;
}

/* build_headers copies the caller's headers and adds the defaults they did not set. An empty
 * "Expect:" stops curl from waiting for 100-continue before sending a larger body. */
static int build_headers(fl_webhook_req *req, const char *const *headers)
{
    int rc = 0;
    for (size_t i = 0; headers && headers[i] && rc == 0; i++)
        rc = append_header(req, headers[i]);
    if (rc == 0 && !has_header(headers, "Content-Type"))
        rc = append_header(req, "Content-Type: application/json");
    if (rc == 0 && !has_header(headers, "Expect"))
        rc = append_header(req, "Expect:");
    return rc;
}

/* timeout_ms turns seconds into curl's milliseconds, at least 1 (0 would mean "no limit");
 * -1 for a value that is not positive or does not fit. */
static long timeout_ms(double seconds)
{
    if (!(seconds > 0) || seconds * 1000.0 >= (double)LONG_MAX)
        return -1;
    return (long)ceil(seconds * 1000.0);
}

/* setup_easy sets every option of one transfer; the first failure's CURLcode wins. */
static CURLcode setup_easy(fl_webhook_req *req, const char *url, size_t len, long connect_ms,
                           long total_ms)
{
    CURL *e = req->easy;
    CURLcode c = CURLE_OK;
#define SET(opt, val) do { if (c == CURLE_OK) c = curl_easy_setopt(e, opt, val); } while (0)
    SET(CURLOPT_URL, url);
    SET(CURLOPT_PROTOCOLS_STR, FL_WEBHOOK_PROTOCOLS);
    SET(CURLOPT_FOLLOWLOCATION, 0L);
    SET(CURLOPT_NOSIGNAL, 1L);
    /* On cancel or timeout during a DNS lookup, detach curl's resolver thread instead of
     * joining it: a join would block the loop until getaddrinfo returns. */
    SET(CURLOPT_QUICK_EXIT, 1L);
    SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    SET(CURLOPT_POSTFIELDS, &req->body[0]);
    SET(CURLOPT_HTTPHEADER, req->headers);
    SET(CURLOPT_USERAGENT, FL_WEBHOOK_USER_AGENT);
    SET(CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
    SET(CURLOPT_TIMEOUT_MS, total_ms);
    SET(CURLOPT_WRITEFUNCTION, on_reply);
    SET(CURLOPT_WRITEDATA, req);
    SET(CURLOPT_ERRORBUFFER, req->errbuf);
    SET(CURLOPT_PRIVATE, req);
#undef SET
    return c;
}

int fl_webhook_post(fl_webhook *w, const char *url, const void *body, size_t len,
                    const char *const *headers, double connect_timeout, double total_timeout,
                    fl_webhook_cb cb, void *udata, fl_webhook_req **out)
{
    if (out)
        *out = NULL;
    long connect_ms = timeout_ms(connect_timeout), total_ms = timeout_ms(total_timeout);
    if (!w || !url || !cb || (!body && len) || connect_ms < 0 || total_ms < 0 ||
        !headers_valid(headers) || len > SIZE_MAX - sizeof(fl_webhook_req) - 1)
        return -EINVAL;
    if (w->free_pending)
        return -ESHUTDOWN;

    fl_webhook_req *req = calloc(1, sizeof *req + len + 1);
    if (!req)
        return -ENOMEM;
    req->w = w;
    req->cb = cb;
    req->udata = udata;
    fl_list_init(&req->node);
    if (len)
        memcpy(req->body, body, len);
    int rc = build_headers(req, headers);
    if (rc < 0)
        goto fail;
    req->easy = curl_easy_init();
    if (!req->easy) {
        rc = -ENOMEM;
        goto fail;
    }
    rc = curl_errno(setup_easy(req, url, len, connect_ms, total_ms));
    if (rc < 0)
        goto fail;
    CURLMcode mc = curl_multi_add_handle(w->multi, req->easy);
    if (mc != CURLM_OK) {
        rc = mc == CURLM_OUT_OF_MEMORY ? -ENOMEM : -EIO;
        goto fail;
    }
    req_link(req);
    if (out)
        *out = req;
    return 0;
fail:
    req_destroy(req);
    return rc;
}

void fl_webhook_cancel(fl_webhook_req *req)
{
    if (!req || req->in_cb)
        return;
    req_unlink(req);
    curl_multi_remove_handle(req->w->multi, req->easy);
    req_destroy(req);
}

size_t fl_webhook_active(const fl_webhook *w)
{
    return w ? w->n_active : 0;
}

/* ---- completion ---- */

static void fill_result(fl_webhook_req *req, CURLcode code, fl_webhook_result *r)
{
    long status = 0;
    double seconds = 0;
    curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(req->easy, CURLINFO_TOTAL_TIME, &seconds);
    r->curl_code = (int)code;
    r->status = status;
    r->seconds = seconds;
    r->ok = code == CURLE_OK && status >= 200 && status <= 299;
    if (r->ok)
        req->errbuf[0] = '\0';
    else if (code == CURLE_OK)
        snprintf(req->errbuf, sizeof req->errbuf, "HTTP %ld", status);
    else if (req->errbuf[0] == '\0')
        snprintf(req->errbuf, sizeof req->errbuf, "%s", curl_easy_strerror(code));
    r->error = req->errbuf;
    r->body = req->reply ? req->reply : "";
    r->body_len = req->reply_len;
}

/* deliver takes a finished transfer out of the multi handle and runs its cb once. The cb may
 * post, cancel others or free w; req itself is freed here, after the cb returns. */
static void deliver(fl_webhook_req *req, CURLcode code)
{
    fl_webhook *w = req->w;
    fl_webhook_result r;
    fill_result(req, code, &r);
    req_unlink(req);
    curl_multi_remove_handle(w->multi, req->easy);
    req->in_cb = 1;
    w->in_cb++;
    req->cb(req->udata, &r);
    w->in_cb--;
    req_destroy(req);
}

/* drain_done delivers every finished transfer. A cancel (fl_webhook_free cancels them all)
 * removes the transfer's message from curl's queue too, so a cancelled cb never runs. */
static void drain_done(fl_webhook *w)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(w->multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        char *priv = NULL;
        CURLcode code = msg->data.result;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
        deliver((fl_webhook_req *)(void *)priv, code);
    }
}

static void webhook_destroy(fl_webhook *w)
{
    curl_multi_cleanup(w->multi);
    ev_timer_stop(w->loop, &w->timer);   /* after the cleanup, which may still set curl's timer */
    free(w);
    curl_global_cleanup();
}

/* run_action lets curl act on fd (or on its timeout), then delivers what finished. It is the
 * last thing every watcher callback does: w may be gone when it returns. */
static void run_action(fl_webhook *w, curl_socket_t fd, int action)
{
    int running = 0;
    CURLMcode mc = curl_multi_socket_action(w->multi, fd, action, &running);
    if (mc != CURLM_OK && mc != CURLM_BAD_SOCKET)
        fl_log(LOG_ERR, "webhook: curl_multi_socket_action: %s", curl_multi_strerror(mc));
    drain_done(w);
    if (w->free_pending)
        webhook_destroy(w);
}

/* ---- libev <-> curl glue ---- */

static void io_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)loop;
    fl_webhook_sock *sock = (fl_webhook_sock *)io;
    int action = ((revents & EV_READ) ? CURL_CSELECT_IN : 0) |
                 ((revents & EV_WRITE) ? CURL_CSELECT_OUT : 0) |
                 ((revents & EV_ERROR) ? CURL_CSELECT_ERR : 0);
    /* sock may be freed inside curl (CURL_POLL_REMOVE): take what we need first. */
    run_action(sock->w, io->fd, action);
}

static void timer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    run_action(t->data, CURL_SOCKET_TIMEOUT, 0);
}

/* multi_timer_cb is CURLMOPT_TIMERFUNCTION: one timer, replaced on every call; -1 removes it.
 * curl is not called from here (its docs forbid it): a 0 ms timer fires on the next loop turn. */
static int multi_timer_cb(CURLM *multi, long ms, void *udata)
{
    (void)multi;
    fl_webhook *w = udata;
    ev_timer_stop(w->loop, &w->timer);
    if (ms >= 0) {
        ev_timer_set(&w->timer, (double)ms / 1000.0, 0.);
        ev_timer_start(w->loop, &w->timer);
    }
    return 0;
}

/* sock_cb is CURLMOPT_SOCKETFUNCTION: start, change or stop the io watcher of socket s.
 * curl reports CURL_POLL_REMOVE before it closes a socket, so a watcher never outlives its fd. */
static int sock_cb(CURL *easy, curl_socket_t s, int what, void *udata, void *socketp)
{
    (void)easy;
    fl_webhook *w = udata;
    fl_webhook_sock *sock = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (sock) {
            ev_io_stop(w->loop, &sock->io);
            free(sock);
        }
        return 0;
    }
    int events = ((what & CURL_POLL_IN) ? EV_READ : 0) | ((what & CURL_POLL_OUT) ? EV_WRITE : 0);
    if (!sock) {
        sock = calloc(1, sizeof *sock);
        if (!sock)
            return -1;   /* curl fails the transfers on this socket */
        sock->w = w;
        ev_init(&sock->io, io_cb);
        if (curl_multi_assign(w->multi, s, sock) != CURLM_OK) {
            free(sock);
            return -1;
        }
    }
    ev_io_stop(w->loop, &sock->io);
    ev_io_set(&sock->io, s, events);
    ev_io_start(w->loop, &sock->io);
    return 0;
}

/* ---- the handle ---- */

int fl_webhook_new(fl_webhook **out, struct ev_loop *loop)
{
    *out = NULL;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return -EIO;
    fl_webhook *w = calloc(1, sizeof *w);
    if (!w)
        goto fail;
    w->loop = loop;
    fl_list_init(&w->reqs);
    ev_timer_init(&w->timer, timer_cb, 0., 0.);
    w->timer.data = w;
    w->multi = curl_multi_init();
    if (!w->multi)
        goto fail;
    CURLMcode mc = curl_multi_setopt(w->multi, CURLMOPT_SOCKETFUNCTION, sock_cb);
    if (mc == CURLM_OK)
        mc = curl_multi_setopt(w->multi, CURLMOPT_SOCKETDATA, w);
    if (mc == CURLM_OK)
        mc = curl_multi_setopt(w->multi, CURLMOPT_TIMERFUNCTION, multi_timer_cb);
    if (mc == CURLM_OK)
        mc = curl_multi_setopt(w->multi, CURLMOPT_TIMERDATA, w);
    if (mc != CURLM_OK) {
        curl_multi_cleanup(w->multi);
        goto fail;
    }
    *out = w;
    return 0;
fail:
    free(w);
    curl_global_cleanup();
    return -ENOMEM;
}

void fl_webhook_free(fl_webhook *w)
{
    if (!w)
        return;
    fl_list *n;
    while ((n = fl_list_first(&w->reqs)))
        fl_webhook_cancel(fl_list_entry(n, fl_webhook_req, node));
    if (w->in_cb)
        w->free_pending = 1;   /* run_action frees w once the cb has returned */
    else
        webhook_destroy(w);
}

/* ---- signing ---- */

int fl_webhook_sign(const char *secret, const void *body, size_t len, char out_hex[65])
{
    static const unsigned char empty[1];
    static const char hex[] = "0123456789abcdef";
    if (!secret || !out_hex || (!body && len))
        return -EINVAL;
    size_t klen = strlen(secret);
    if (klen > INT_MAX)
        return -EINVAL;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    if (!HMAC(EVP_sha256(), secret, (int)klen, body ? body : empty, len, md, &md_len) ||
        md_len != FL_WEBHOOK_SHA256_LEN)
        return -EIO;
    for (unsigned i = 0; i < md_len; i++) {
        out_hex[2 * i] = hex[md[i] >> 4];
        out_hex[2 * i + 1] = hex[md[i] & 0x0f];
    }
    out_hex[2 * md_len] = '\0';
    return 0;
}
