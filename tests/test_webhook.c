/* test_webhook.c — daemon/webhook.c against real sockets on 127.0.0.1: a small HTTP server on a
 * thread answers a scripted status and records what it got; a listener that never accepts
 * stalls transfers; a bound socket that does not listen refuses them. Every test drives its
 * own libev loop, bounded by an ev_timer. Also the HMAC-SHA256 signature (RFC 4231). */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <ev.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "webhook.h"

#define REQ_MAX (2 * 1024 * 1024)  /* the largest request the test server records */
#define BIG_BODY (1024 * 1024 + 100) /* past curl 7.88's 1 MiB Expect: 100-continue threshold */
#define SRV_LIFETIME 30.0          /* seconds the server thread runs at most */
#define SRV_CONN_MAX 1000          /* connections it serves at most */
#define SRV_POLL_MS 50
#define IO_TIMEOUT_S 2             /* a test connection that sends nothing is dropped */
#define WAIT_S 10.0                /* bound on waiting for callbacks */
#define HITS_MAX 64
#define URL_LEN 128
#define LOOP_TURNS_MAX 1000000     /* ev_run(ONCE) rounds per wait, besides the timer */
#define CONNECT_S 2.0
#define TOTAL_S 5.0

/* ---- the scripted HTTP server ---- */

typedef struct server {
    int fd;                        /* listening socket */
    int stop[2];                   /* a pipe: a byte on it ends the thread */
    pthread_t thread;
    unsigned short port;
    int status;                    /* status of every reply */
    const char *extra;             /* more reply header lines, each ending in \r\n */
    const char *reply;             /* reply body */
    size_t reply_len;
    pthread_mutex_t mu;            /* guards the fields below; read them after server_stop */
    int n_requests;
    char *first;                   /* the first request, raw, NUL-terminated (first_buf) */
    size_t first_len;
    size_t first_head_len;         /* bytes up to and including the blank line */
} server;

/* One server runs at a time: its buffers are static, too large for the stack. */
static char first_buf[REQ_MAX + 1];
static char req_buf[REQ_MAX + 1];

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* listen_local binds a TCP socket to 127.0.0.1 on a free port; listens if backlog > 0. */
static int listen_local(int backlog, unsigned short *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    if (backlog > 0)
        assert_int_equal(listen(fd, backlog), 0);
    socklen_t alen = sizeof a;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

/* content_length finds the Content-Length of a NUL-terminated request head; 0 if absent. */
static size_t content_length(const char *head)
{
    const char *p = strcasestr(head, "\r\nContent-Length:");
    return p ? (size_t)strtoul(p + 17, NULL, 10) : 0;
}

/* read_request reads one request (head and Content-Length body) into buf; its length, 0 if
 * the peer went away first. */
static size_t read_request(int c, char *buf, size_t *head_len)
{
    size_t len = 0, want = 0;
    *head_len = 0;
    while (len < REQ_MAX && (*head_len == 0 || len < want)) {
        ssize_t n = recv(c, buf + len, REQ_MAX - len, 0);
        if (n <= 0)
            return 0;
        len += (size_t)n;
        buf[len] = '\0';
        char *end = *head_len ? NULL : strstr(buf, "\r\n\r\n");
        if (end) {
            *head_len = (size_t)(end - buf) + 4;
            want = *head_len + content_length(buf);
        }
    }
    return len;
}

static void send_all(int c, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = send(c, p, len, MSG_NOSIGNAL);
        if (n <= 0)
            return;
        p += n;
        len -= (size_t)n;
    }
}

static void serve_one(server *s, int c)
{
    char *buf = req_buf;
    struct timeval tv = {.tv_sec = IO_TIMEOUT_S};
    setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    size_t head_len;
    size_t len = read_request(c, buf, &head_len);
    if (len == 0)
        return;
    pthread_mutex_lock(&s->mu);
    if (s->n_requests++ == 0) {
        memcpy(s->first, buf, len + 1);
        s->first_len = len;
        s->first_head_len = head_len;
    }
    pthread_mutex_unlock(&s->mu);
    char head[512];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d Scripted\r\nContent-Length: %zu\r\nConnection: close\r\n%s\r\n",
                     s->status, s->reply_len, s->extra ? s->extra : "");
    send_all(c, head, (size_t)n);
    send_all(c, s->reply, s->reply_len);
}

/* server_main serves connections one at a time until told to stop (curl's extra connections
 * wait in the backlog), bounded in time and count. */
static void *server_main(void *arg)
{
    server *s = arg;
    double end = now_s() + SRV_LIFETIME;
    for (int served = 0; served < SRV_CONN_MAX && now_s() < end;) {
        struct pollfd p[2] = {{.fd = s->fd, .events = POLLIN}, {.fd = s->stop[0], .events = POLLIN}};
        if (poll(p, 2, SRV_POLL_MS) < 0 || (p[1].revents & POLLIN))
            break;
        if (!(p[0].revents & POLLIN))
            continue;
        int c = accept4(s->fd, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0)
            continue;
        serve_one(s, c);
        close(c);
        served++;
    }
    return NULL;
}

static void server_start(server *s, int status, const char *reply, const char *extra)
{
    memset(s, 0, sizeof *s);
    s->first = first_buf;
    s->status = status;
    s->reply = reply;
    s->reply_len = strlen(reply);
    s->extra = extra;
    pthread_mutex_init(&s->mu, NULL);
    assert_int_equal(pipe(s->stop), 0);
    s->fd = listen_local(128, &s->port);
    assert_int_equal(pthread_create(&s->thread, NULL, server_main, s), 0);
}

static void server_stop(server *s)
{
    assert_int_equal(write(s->stop[1], "x", 1), 1);
    pthread_join(s->thread, NULL);
    close(s->fd);
    close(s->stop[0]);
    close(s->stop[1]);
    pthread_mutex_destroy(&s->mu);
}

static void make_url(char url[URL_LEN], unsigned short port, const char *path)
{
    snprintf(url, URL_LEN, "http://127.0.0.1:%u%s", port, path);
}

/* ---- the loop and what callbacks saw ---- */

typedef struct hit {
    int calls;
    int ok, curl_code;
    long status;
    char error[CURL_ERROR_SIZE];
    char body[FL_WEBHOOK_BODY_MAX + 1];
    size_t body_len;
    double at;                     /* now_s() when cb ran */
} hit;

static hit hits[HITS_MAX];
static int total_calls;

static void record_cb(void *udata, const fl_webhook_result *r)
{
    hit *h = udata;
    h->calls++;
    total_calls++;
    h->ok = r->ok;
    h->curl_code = r->curl_code;
    h->status = r->status;
    assert_non_null(r->error);
    assert_non_null(r->body);
    snprintf(h->error, sizeof h->error, "%s", r->error);
    assert_true(r->body_len <= FL_WEBHOOK_BODY_MAX);
    memcpy(h->body, r->body, r->body_len);
    h->body[r->body_len] = '\0';
    h->body_len = r->body_len;
    assert_true(r->seconds >= 0);
    h->at = now_s();
}

typedef struct fixture {
    struct ev_loop *loop;
    fl_webhook *w;
    int guard_fired;
    ev_timer guard;
} fixture;

static void guard_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)revents;
    fixture *f = t->data;
    f->guard_fired = 1;
    ev_break(loop, EVBREAK_ONE);
}

/* wait_calls runs the loop until total_calls reaches want or limit seconds pass. */
static void wait_calls(fixture *f, int want, double limit)
{
    f->guard_fired = 0;
    ev_timer_set(&f->guard, limit, 0.);
    ev_timer_start(f->loop, &f->guard);
    for (int i = 0; i < LOOP_TURNS_MAX && total_calls < want && !f->guard_fired; i++)
        ev_run(f->loop, EVRUN_ONCE);
    ev_timer_stop(f->loop, &f->guard);
}

/* run_for runs the loop for seconds, whatever happens. */
static void run_for(fixture *f, double seconds)
{
    wait_calls(f, INT32_MAX, seconds);
    assert_true(f->guard_fired);
}

static int setup(void **state)
{
    static fixture f;
    memset(&f, 0, sizeof f);
    memset(hits, 0, sizeof hits);
    total_calls = 0;
    f.loop = ev_loop_new(EVFLAG_AUTO);
    if (!f.loop || fl_webhook_new(&f.w, f.loop) != 0)
        return -1;
    ev_timer_init(&f.guard, guard_cb, 0., 0.);
    f.guard.data = &f;
    *state = &f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    fl_webhook_free(f->w);
    ev_loop_destroy(f->loop);
    return 0;
}

static int post(fixture *f, const char *url, const char *body, size_t len,
                const char *const *headers, double total, hit *h, fl_webhook_req **req)
{
    return fl_webhook_post(f->w, url, body, len, headers, CONNECT_S, total, record_cb, h, req);
}

/* ---- tests ---- */

static void test_2xx_exact_bytes_and_headers(void **state)
{
    fixture *f = *state;
    server s;
    server_start(&s, 200, "{\"thanks\":true}", NULL);
    char url[URL_LEN];
    make_url(url, s.port, "/hook?x=1");
    /* binary bytes, NULs among them, and more than curl's Expect: 100-continue threshold */
    static char body[BIG_BODY];
    for (size_t i = 0; i < sizeof body; i++)
        body[i] = (char)(i * 7 % 256);
    const char *const headers[] = {"X-Test: yes", "Fling-Signature: sha256=abc", NULL};
    fl_webhook_req *req = NULL;
    assert_int_equal(post(f, url, body, sizeof body, headers, TOTAL_S, &hits[0], &req), 0);
    assert_non_null(req);
    assert_int_equal(fl_webhook_active(f->w), 1);
    assert_int_equal(hits[0].calls, 0);   /* never from inside fl_webhook_post */
    wait_calls(f, 1, WAIT_S);
    server_stop(&s);

    assert_int_equal(hits[0].calls, 1);
    assert_int_equal(hits[0].ok, 1);
    assert_int_equal(hits[0].curl_code, CURLE_OK);
    assert_int_equal(hits[0].status, 200);
    assert_string_equal(hits[0].error, "");
    assert_string_equal(hits[0].body, "{\"thanks\":true}");
    assert_int_equal(fl_webhook_active(f->w), 0);

    assert_int_equal(s.n_requests, 1);
    assert_true(strncmp(s.first, "POST /hook?x=1 HTTP/1.1\r\n", 25) == 0);
    s.first[s.first_head_len] = '\0';   /* search the head only */
    assert_non_null(strstr(s.first, "\r\nX-Test: yes\r\n"));
    assert_non_null(strstr(s.first, "\r\nFling-Signature: sha256=abc\r\n"));
    assert_non_null(strstr(s.first, "\r\nContent-Type: application/json\r\n"));
    assert_non_null(strstr(s.first, "\r\nUser-Agent: flingd/0.1\r\n"));
    char clen[64];
    snprintf(clen, sizeof clen, "\r\nContent-Length: %d\r\n", BIG_BODY);
    assert_non_null(strstr(s.first, clen));
    assert_null(strcasestr(s.first, "\r\nExpect:"));
    assert_int_equal(s.first_len - s.first_head_len, sizeof body);
    assert_memory_equal(s.first + s.first_head_len, body, sizeof body);
}

static void test_content_type_override_and_empty_body(void **state)
{
    fixture *f = *state;
    server s;
    server_start(&s, 204, "", NULL);
    char url[URL_LEN];
    make_url(url, s.port, "/");
    const char *const headers[] = {"content-type: text/plain", NULL};
    assert_int_equal(post(f, url, NULL, 0, headers, TOTAL_S, &hits[0], NULL), 0);
    wait_calls(f, 1, WAIT_S);
    server_stop(&s);
    assert_int_equal(hits[0].calls, 1);
    assert_int_equal(hits[0].ok, 1);
    assert_int_equal(hits[0].status, 204);
    assert_int_equal(hits[0].body_len, 0);
    assert_string_equal(hits[0].body, "");
    assert_int_equal(s.n_requests, 1);
    assert_non_null(strstr(s.first, "\r\ncontent-type: text/plain\r\n"));
    assert_null(strstr(s.first, "application/json"));
    assert_non_null(strstr(s.first, "\r\nContent-Length: 0\r\n"));
    assert_int_equal(s.first_len, s.first_head_len);
}

static void test_500(void **state)
{
    fixture *f = *state;
    server s;
    server_start(&s, 500, "boom", NULL);
    char url[URL_LEN];
    make_url(url, s.port, "/");
    assert_int_equal(post(f, url, "{}", 2, NULL, TOTAL_S, &hits[0], NULL), 0);
    wait_calls(f, 1, WAIT_S);
    server_stop(&s);
    assert_int_equal(hits[0].calls, 1);
    assert_int_equal(hits[0].ok, 0);
    assert_int_equal(hits[0].curl_code, CURLE_OK);
    assert_int_equal(hits[0].status, 500);
    assert_string_equal(hits[0].error, "HTTP 500");
    assert_string_equal(hits[0].body, "boom");
}

static void test_redirect_not_followed(void **state)
{
    fixture *f = *state;
    server s;
    char extra[URL_LEN + 16] = "";   /* filled in once the port is known, before any request */
    server_start(&s, 302, "", extra);
    snprintf(extra, sizeof extra, "Location: http://127.0.0.1:%u/elsewhere\r\n", s.port);
    char url[URL_LEN];
    make_url(url, s.port, "/");
    assert_int_equal(post(f, url, "{}", 2, NULL, TOTAL_S, &hits[0], NULL), 0);
    wait_calls(f, 1, WAIT_S);
    run_for(f, 0.2);   /* time for a redirect to be followed, were it followed */
    server_stop(&s);
    assert_int_equal(hits[0].calls, 1);
    assert_int_equal(hits[0].ok, 0);
    assert_int_equal(hits[0].status, 302);
    assert_string_equal(hits[0].error, "HTTP 302");
    assert_int_equal(s.n_requests, 1);
}

static void test_reply_body_capped(void **state)
{
    fixture *f = *state;
    static char big[2 * FL_WEBHOOK_BODY_MAX + 8];
    for (size_t i = 0; i + 1 < sizeof big; i++)
        big[i] = (char)('a' + i % 26);
    server s;
    server_start(&s, 200, big, NULL);
    char url[URL_LEN];
    make_url(url, s.port, "/");
    assert_int_equal(post(f, url, "{}", 2, NULL, TOTAL_S, &hits[0], NULL), 0);
    wait_calls(f, 1, WAIT_S);
    server_stop(&s);
    assert_int_equal(hits[0].calls, 1);
    assert_int_equal(hits[0].ok, 1);   /* the rest is read and dropped, not an error */
    assert_int_equal(hits[0].body_len, FL_WEBHOOK_BODY_MAX);
    assert_memory_equal(hits[0].body, big, FL_WEBHOOK_BODY_MAX);
}

static void test_connection_refused(void **state)
{
    fixture *f = *state;
    unsigned short port;
    int fd = listen_local(0, &port);   /* bound, not listening: the kernel answers RST */
    char url[URL_LEN];
    make_url(url, port, "/");
    assert_int_equal(post(f, url, "{}", 2, NULL, TOTAL_S, &hits[0], NULL), 0);
    wait_calls(f, 1, WAIT_S);
    close(fd);
    assert_int_equal(hits[0].calls, 1);
    assert_int_equal(hits[0].ok, 0);
    assert_int_equal(hits[0].curl_code, CURLE_COULDNT_CONNECT);
    assert_int_equal(hits[0].status, 0);
    assert_non_null(strstr(hits[0].error, "onnect"));
}

static void test_other_protocols_refused(void **state)
{
    fixture *f = *state;
    assert_int_equal(post(f, "file:///etc/hostname", "{}", 2, NULL, TOTAL_S, &hits[0], NULL), 0);
    assert_int_equal(post(f, "ftp://127.0.0.1:9/x", "{}", 2, NULL, TOTAL_S, &hits[1], NULL), 0);
    wait_calls(f, 2, WAIT_S);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(hits[i].calls, 1);
        assert_int_equal(hits[i].curl_code, CURLE_UNSUPPORTED_PROTOCOL);
        assert_true(hits[i].error[0] != '\0');
    }
}

static void test_total_timeout(void **state)
{
    fixture *f = *state;
    unsigned short port;
    int fd = listen_local(16, &port);   /* connects complete in the backlog; nobody answers */
    char url[URL_LEN];
    make_url(url, port, "/");
    double start = now_s();
    assert_int_equal(post(f, url, "{}", 2, NULL, 0.5, &hits[0], NULL), 0);
    wait_calls(f, 1, WAIT_S);
    close(fd);
    assert_int_equal(hits[0].calls, 1);
    assert_int_equal(hits[0].curl_code, CURLE_OPERATION_TIMEDOUT);
    assert_non_null(strstr(hits[0].error, "timed out"));
    double took = hits[0].at - start;
    assert_true(took >= 0.45);
    assert_true(took < 2.0);
}

#define N_CONCURRENT 50

static void test_concurrent(void **state)
{
    fixture *f = *state;
    server s;
    server_start(&s, 200, "ok", NULL);
    char url[URL_LEN];
    make_url(url, s.port, "/many");
    for (int i = 0; i < N_CONCURRENT; i++) {
        char body[32];
        int n = snprintf(body, sizeof body, "{\"n\":%d}", i);
        assert_int_equal(post(f, url, body, (size_t)n, NULL, TOTAL_S, &hits[i], NULL), 0);
    }
    assert_int_equal(fl_webhook_active(f->w), N_CONCURRENT);
    wait_calls(f, N_CONCURRENT, WAIT_S);
    server_stop(&s);
    assert_int_equal(total_calls, N_CONCURRENT);
    for (int i = 0; i < N_CONCURRENT; i++) {
        assert_int_equal(hits[i].calls, 1);
        assert_int_equal(hits[i].status, 200);
        assert_string_equal(hits[i].body, "ok");
    }
    assert_int_equal(s.n_requests, N_CONCURRENT);
    assert_int_equal(fl_webhook_active(f->w), 0);
}

static void test_cancel(void **state)
{
    fixture *f = *state;
    unsigned short port;
    int fd = listen_local(16, &port);
    char url[URL_LEN];
    make_url(url, port, "/");
    fl_webhook_req *early, *late;
    assert_int_equal(post(f, url, "{}", 2, NULL, 0.5, &hits[0], &early), 0);
    assert_int_equal(post(f, url, "{}", 2, NULL, 0.5, &hits[1], &late), 0);
    fl_webhook_cancel(early);                  /* before the loop ever ran */
    assert_int_equal(fl_webhook_active(f->w), 1);
    run_for(f, 0.2);                           /* late is connected and waiting */
    fl_webhook_cancel(late);
    assert_int_equal(fl_webhook_active(f->w), 0);
    run_for(f, 0.6);                           /* past both timeouts */
    fl_webhook_cancel(NULL);
    close(fd);
    assert_int_equal(total_calls, 0);
}

static void test_free_in_flight(void **state)
{
    fixture *f = *state;
    server s;
    server_start(&s, 200, "ok", NULL);
    unsigned short stall_port;
    int fd = listen_local(16, &stall_port);
    char url[URL_LEN], stall[URL_LEN];
    make_url(url, s.port, "/");
    make_url(stall, stall_port, "/");
    for (int i = 0; i < 5; i++) {
        assert_int_equal(post(f, stall, "{}", 2, NULL, TOTAL_S, &hits[i], NULL), 0);
        assert_int_equal(post(f, url, "{}", 2, NULL, TOTAL_S, &hits[5 + i], NULL), 0);
    }
    run_for(f, 0.05);
    fl_webhook_free(f->w);
    f->w = NULL;
    fl_webhook_free(NULL);
    int seen = total_calls;                    /* some to the live server may have finished */
    run_for(f, 0.3);
    server_stop(&s);
    close(fd);
    assert_int_equal(total_calls, seen);
    for (int i = 0; i < 5; i++)
        assert_int_equal(hits[i].calls, 0);
}

/* ---- callbacks that call back in ---- */

typedef struct chain {
    fixture *f;
    char url[URL_LEN];
    int left;                                  /* posts still to make */
    int calls;
    long last_status;
} chain;

static void chain_cb(void *udata, const fl_webhook_result *r)
{
    chain *c = udata;
    c->calls++;
    total_calls++;
    c->last_status = r->status;
    if (c->left-- > 0)
        assert_int_equal(fl_webhook_post(c->f->w, c->url, "{}", 2, NULL, CONNECT_S, TOTAL_S,
                                         chain_cb, c, NULL), 0);
}

static void test_cb_posts_again(void **state)
{
    fixture *f = *state;
    server s;
    server_start(&s, 200, "ok", NULL);
    chain c = {.f = f, .left = 2};
    make_url(c.url, s.port, "/again");
    assert_int_equal(fl_webhook_post(f->w, c.url, "{}", 2, NULL, CONNECT_S, TOTAL_S, chain_cb,
                                     &c, NULL), 0);
    wait_calls(f, 3, WAIT_S);
    run_for(f, 0.1);
    server_stop(&s);
    assert_int_equal(c.calls, 3);
    assert_int_equal(c.last_status, 200);
    assert_int_equal(s.n_requests, 3);
    assert_int_equal(fl_webhook_active(f->w), 0);
}

typedef struct reenter {
    fixture *f;
    fl_webhook_req *self;                      /* the transfer whose cb this is */
    fl_webhook_req *other;                     /* one to cancel from inside the cb */
    int free_w;                                /* free the whole fl_webhook from inside */
    int post_rc;                               /* what a post after that free returned */
    int calls;
} reenter;

static void reenter_cb(void *udata, const fl_webhook_result *r)
{
    (void)r;
    reenter *re = udata;
    re->calls++;
    total_calls++;
    fl_webhook_cancel(re->self);               /* its own: a no-op inside its cb */
    fl_webhook_cancel(re->other);
    if (re->free_w) {
        fl_webhook_free(re->f->w);
        re->post_rc = fl_webhook_post(re->f->w, "http://127.0.0.1:9/", "{}", 2, NULL, CONNECT_S,
                                      TOTAL_S, record_cb, &hits[9], NULL);
        re->f->w = NULL;
    }
}

static void test_cb_cancels_other(void **state)
{
    fixture *f = *state;
    server s;
    server_start(&s, 200, "ok", NULL);
    unsigned short stall_port;
    int fd = listen_local(16, &stall_port);
    char url[URL_LEN], stall[URL_LEN];
    make_url(url, s.port, "/");
    make_url(stall, stall_port, "/");
    reenter re = {.f = f};
    assert_int_equal(post(f, stall, "{}", 2, NULL, 0.5, &hits[0], &re.other), 0);
    assert_int_equal(fl_webhook_post(f->w, url, "{}", 2, NULL, CONNECT_S, TOTAL_S, reenter_cb, &re,
                                     &re.self), 0);
    wait_calls(f, 1, WAIT_S);
    assert_int_equal(re.calls, 1);
    assert_int_equal(fl_webhook_active(f->w), 0);
    run_for(f, 0.7);                           /* past the stalled one's timeout */
    server_stop(&s);
    close(fd);
    assert_int_equal(hits[0].calls, 0);
    assert_int_equal(re.calls, 1);
}

static void test_cb_frees_webhook(void **state)
{
    fixture *f = *state;
    server s;
    server_start(&s, 200, "ok", NULL);
    unsigned short stall_port;
    int fd = listen_local(16, &stall_port);
    char url[URL_LEN], stall[URL_LEN];
    make_url(url, s.port, "/");
    make_url(stall, stall_port, "/");
    reenter re[2] = {{.f = f, .free_w = 1}, {.f = f, .free_w = 1}};
    for (int i = 0; i < 2; i++)
        assert_int_equal(fl_webhook_post(f->w, url, "{}", 2, NULL, CONNECT_S, TOTAL_S, reenter_cb,
                                         &re[i], &re[i].self), 0);
    assert_int_equal(post(f, stall, "{}", 2, NULL, 0.5, &hits[0], NULL), 0);
    wait_calls(f, 1, WAIT_S);
    run_for(f, 0.7);
    server_stop(&s);
    close(fd);
    assert_null(f->w);
    assert_int_equal(total_calls, 1);          /* the first cb freed everything else */
    assert_int_equal(re[0].calls + re[1].calls, 1);
    assert_int_equal(re[0].calls ? re[0].post_rc : re[1].post_rc, -ESHUTDOWN);
    assert_int_equal(hits[0].calls, 0);
    assert_int_equal(hits[9].calls, 0);
}

static void test_bad_arguments(void **state)
{
    fixture *f = *state;
    const char *url = "http://127.0.0.1:9/";
    const char *const crlf[] = {"X-A: 1\r\nX-Injected: 1", NULL};
    const char *const no_colon[] = {"X-A", NULL};
    const char *many[40];
    for (int i = 0; i < 39; i++)
        many[i] = "X-A: 1";
    many[39] = NULL;
    fl_webhook_req *req = (fl_webhook_req *)&req;
    assert_int_equal(fl_webhook_post(NULL, url, "", 0, NULL, 1, 1, record_cb, hits, &req), -EINVAL);
    assert_null(req);
    assert_int_equal(fl_webhook_post(f->w, NULL, "", 0, NULL, 1, 1, record_cb, hits, NULL), -EINVAL);
    assert_int_equal(fl_webhook_post(f->w, url, NULL, 1, NULL, 1, 1, record_cb, hits, NULL), -EINVAL);
    assert_int_equal(fl_webhook_post(f->w, url, "", 0, NULL, 1, 1, NULL, hits, NULL), -EINVAL);
    assert_int_equal(fl_webhook_post(f->w, url, "", 0, NULL, 0, 1, record_cb, hits, NULL), -EINVAL);
    assert_int_equal(fl_webhook_post(f->w, url, "", 0, NULL, 1, -1, record_cb, hits, NULL), -EINVAL);
    assert_int_equal(fl_webhook_post(f->w, url, "", 0, NULL, 1, 1e300, record_cb, hits, NULL), -EINVAL);
    assert_int_equal(fl_webhook_post(f->w, url, "", 0, crlf, 1, 1, record_cb, hits, NULL), -EINVAL);
    assert_int_equal(fl_webhook_post(f->w, url, "", 0, no_colon, 1, 1, record_cb, hits, NULL), -EINVAL);
    assert_int_equal(fl_webhook_post(f->w, url, "", 0, many, 1, 1, record_cb, hits, NULL), -EINVAL);
    assert_int_equal(fl_webhook_active(f->w), 0);
    assert_int_equal(fl_webhook_active(NULL), 0);
    run_for(f, 0.1);
    assert_int_equal(total_calls, 0);
}

/* ---- signing ---- */

static void test_sign(void **state)
{
    (void)state;
    static const struct {
        const char *key, *data, *hex;
    } cases[] = {
        /* RFC 4231 test case 2 */
        {"Jefe", "what do ya want for nothing?",
         "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
        {"key", "The quick brown fox jumps over the lazy dog",
         "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"},
        {"", "", "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad"},
    };
    char out[65];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memset(out, 'X', sizeof out);
        assert_int_equal(fl_webhook_sign(cases[i].key, cases[i].data, strlen(cases[i].data), out), 0);
        assert_string_equal(out, cases[i].hex);
    }
    assert_int_equal(fl_webhook_sign("", NULL, 0, out), 0);
    assert_string_equal(out, cases[2].hex);
    assert_int_equal(fl_webhook_sign(NULL, "x", 1, out), -EINVAL);
    assert_int_equal(fl_webhook_sign("k", NULL, 1, out), -EINVAL);
}

int main(void)
{
    /* a proxy from the environment would take 127.0.0.1 traffic elsewhere */
    unsetenv("http_proxy");
    unsetenv("HTTP_PROXY");
    unsetenv("https_proxy");
    unsetenv("HTTPS_PROXY");
    unsetenv("ALL_PROXY");
    unsetenv("all_proxy");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_2xx_exact_bytes_and_headers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_content_type_override_and_empty_body, setup, teardown),
        cmocka_unit_test_setup_teardown(test_500, setup, teardown),
        cmocka_unit_test_setup_teardown(test_redirect_not_followed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reply_body_capped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connection_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_protocols_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_total_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_in_flight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cb_posts_again, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cb_cancels_other, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cb_frees_webhook, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_arguments, setup, teardown),
        cmocka_unit_test(test_sign),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
