/* receiver.c — the HTTP/1.1 receiver the integration tests point flingd at (see receiver.h).
 *
 * DESIGN: one thread polls the listening socket, a self-pipe and every open connection, so a
 * second connection is served while the first idles between keep-alive requests. Each
 * connection is a small state machine: READ a head, then its Content-Length body; record the
 * request and pick its status under the mutex; DELAY until its answer is due (a poll time-out,
 * so other connections go on); WRITE the answer; then READ again, or close. Recorded requests
 * are immutable, so flr_get() hands out pointers that stay valid until flr_stop(). Expect:
 * 100-continue is not answered: flingd turns it off, and curl sends the body after a second
 * anyway. */
#include "receiver.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define FLR_HEAD_MAX (64 * 1024)     /* request line, headers, blank line: libcurl's are under 1 KiB */
#define FLR_BODY_MAX (1024 * 1024)   /* a callback body; a larger one is answered 413 */
#define FLR_IN_MIN 4096              /* first size of a connection's input buffer */
#define FLR_IN_MAX (FLR_HEAD_MAX + FLR_BODY_MAX)   /* one whole request: in[] never holds more */
#define FLR_CONN_MAX 32              /* open connections; more wait in the backlog */
#define FLR_BACKLOG 64
#define FLR_OUT_MAX 256              /* an answer: status line, three headers, the body */
#define FLR_POLL_MAX_MS 60000        /* a far-off delay is waited for in slices this long */
#define FLR_REQS_MIN 16              /* first size of the recorded-request array */
#define FLR_REPLY_BODY "received"    /* the body of every answer that has one */

typedef enum {
    FLR_CONN_READ,                   /* reading a head, then its body */
    FLR_CONN_DELAY,                  /* recorded; the answer waits until answer_at */
    FLR_CONN_WRITE,                  /* sending out[]; then READ again, or closed */
} flr_conn_state;

typedef struct flr_conn {
    int fd;                          /* -1: the slot is free */
    flr_conn_state state;
    char *in;                        /* received bytes not consumed yet */
    size_t in_len, in_cap;
    flr_request *pending;            /* parsed head whose body is still arriving; owned */
    size_t body_len;                 /* the pending request's Content-Length */
    int status;                      /* the answer of the request in DELAY */
    int head_only;                   /* a HEAD request: the answer has no body */
    int close_after;                 /* close once out[] is sent */
    double answer_at;                /* when the DELAY ends */
    char out[FLR_OUT_MAX];
    size_t out_len, out_sent;
} flr_conn;

struct flr_receiver {
    int listen_fd;
    int wake[2];                     /* self-pipe: a byte on wake[1] ends the thread */
    int port;
    pthread_t thread;
    flr_conn conns[FLR_CONN_MAX];    /* touched by the thread only */
    pthread_mutex_t mu;              /* guards everything below */
    pthread_cond_t arrived;          /* broadcast whenever a request is recorded */
    flr_request **reqs;              /* in arrival order; each owned */
    size_t n_reqs, cap_reqs;
    int *statuses;                   /* the program: statuses[i] answers request status_base + i */
    size_t n_statuses, status_base;
    int then;                        /* the answer after the program */
    double delay;                    /* seconds between a request and its answer */
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- requests ---- */

static void request_free(flr_request *q)
{
    if (!q)
        return;
    free(q->body);
    free(q);
}

const char *flr_header(const flr_request *req, const char *name)
{
    for (size_t i = 0; req && i < req->n_headers; i++)
        if (strcasecmp(req->headers[i].name, name) == 0)
            return req->headers[i].value;
    return NULL;
}

/* has_token: does the comma-separated list (NULL: empty) hold token, in any case? */
static int has_token(const char *list, const char *token)
{
    size_t n = strlen(token);
    while (list && *list) {
        list += strspn(list, " \t,");
        size_t len = strcspn(list, " \t,");
        if (len == n && strncasecmp(list, token, n) == 0)
            return 1;
        list += len;
    }
    return 0;
}

/* wants_close: HTTP/1.1 keeps the connection unless asked to close; HTTP/1.0 closes it unless
 * asked to keep it. */
static int wants_close(const flr_request *q)
{
    const char *conn = flr_header(q, "Connection");
    if (strcmp(q->version, "HTTP/1.0") == 0)
        return !has_token(conn, "keep-alive");
    return has_token(conn, "close");
}

/* parse_request_line splits "METHOD SP TARGET SP VERSION" in place; 0 or -1. */
static int parse_request_line(flr_request *q, char *line)
{
    char *sp1 = strchr(line, ' ');
    char *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
    if (!sp2 || sp1 == line || sp2 == sp1 + 1)
        return -1;
    *sp1 = *sp2 = '\0';
    q->method = line;
    q->path = sp1 + 1;
    q->version = sp2 + 1;
    return strcmp(q->version, "HTTP/1.1") == 0 || strcmp(q->version, "HTTP/1.0") == 0 ? 0 : -1;
}

/* parse_header splits "Name: value" in place, trimming the value; 0 or -1 (no name, blanks in
 * it, or a folded line). */
static int parse_header(flr_header_field *h, char *line)
{
    char *colon = strchr(line, ':');
    if (!colon || colon == line || strcspn(line, " \t") < (size_t)(colon - line))
        return -1;
    *colon = '\0';
    char *v = colon + 1 + strspn(colon + 1, " \t");
    size_t len = strlen(v);
    while (len > 0 && (v[len - 1] == ' ' || v[len - 1] == '\t'))
        v[--len] = '\0';
    h->name = line;
    h->value = v;
    return 0;
}

/* content_length reads the body size from every Content-Length header (they must agree);
 * 0, or the status to refuse the request with. */
static int content_length(const flr_request *q, size_t *out)
{
    int seen = 0;
    *out = 0;
    if (flr_header(q, "Transfer-Encoding"))
        return 501;
    for (size_t i = 0; i < q->n_headers; i++) {
        const char *v = q->headers[i].value;
        if (strcasecmp(q->headers[i].name, "Content-Length") != 0)
            continue;
        if (!*v || v[strspn(v, "0123456789")] != '\0')
            return 400;
        size_t n = 0;
        for (; *v && n <= FLR_BODY_MAX; v++)
            n = n * 10 + (size_t)(*v - '0');
        if (n > FLR_BODY_MAX)
            return 413;
        if (seen && n != *out)
            return 400;
        *out = n;
        seen = 1;
    }
    return 0;
}

/* count_lines counts the CRLFs in len bytes. */
static size_t count_lines(const char *p, size_t len)
{
    size_t n = 0;
    for (const char *end = p + len; (p = memmem(p, (size_t)(end - p), "\r\n", 2)); p += 2)
        n++;
    return n;
}

/* request_parse parses a head (len bytes ending in the blank line) into a new request whose
 * strings live in the same allocation, and its Content-Length into *body_len. NULL with the
 * status to refuse it with in *err. */
static flr_request *request_parse(const char *head, size_t len, size_t *body_len, int *err)
{
    *err = 400;
    if (memchr(head, '\0', len))
        return NULL;
    size_t lines = count_lines(head, len);
    flr_request *q = calloc(1, sizeof *q + lines * sizeof(flr_header_field) + len + 1);
    if (!q) {
        *err = 500;
        return NULL;
    }
    q->headers = (flr_header_field *)(q + 1);
    char *text = (char *)(q->headers + lines);
    memcpy(text, head, len);
    char *eol = strstr(text, "\r\n");
    *eol = '\0';
    int bad = parse_request_line(q, text);
    for (char *line = eol + 2; !bad && (eol = strstr(line, "\r\n")) != line; line = eol + 2) {
        *eol = '\0';
        bad = parse_header(&q->headers[q->n_headers++], line);
    }
    if (!bad)
        *err = content_length(q, body_len);
    if (bad || *err) {
        request_free(q);
        return NULL;
    }
    return q;
}

/* record stores q (taking it) with its status from the program; *delay gets the delay of its
 * answer. 0, or -1 when out of memory (q is still the caller's). */
static int record(flr_receiver *r, flr_request *q, double *delay)
{
    pthread_mutex_lock(&r->mu);
    if (r->n_reqs == r->cap_reqs) {
        size_t cap = r->cap_reqs ? 2 * r->cap_reqs : FLR_REQS_MIN;
        flr_request **p = realloc(r->reqs, cap * sizeof *p);
        if (!p) {
            pthread_mutex_unlock(&r->mu);
            return -1;
        }
        r->reqs = p;
        r->cap_reqs = cap;
    }
    size_t k = r->n_reqs - r->status_base;
    q->status = k < r->n_statuses ? r->statuses[k] : r->then;
    r->reqs[r->n_reqs++] = q;
    *delay = r->delay;
    pthread_cond_broadcast(&r->arrived);
    pthread_mutex_unlock(&r->mu);
    return 0;
}

/* ---- connections ---- */

static void conn_close(flr_conn *c)
{
    close(c->fd);
    free(c->in);
    request_free(c->pending);
    memset(c, 0, sizeof *c);
    c->fd = -1;
}

static const char *reason(int status)
{
    if (status < 300)
        return "OK";
    if (status < 400)
        return "Redirect";
    return status < 500 ? "Client Error" : "Server Error";
}

/* conn_answer formats the answer with status into out[] and moves to WRITE. 204 and 304 carry
 * no body and no length; a HEAD answer has the length but not the body. */
static void conn_answer(flr_conn *c, int status)
{
    int has_body = status != 204 && status != 304;
    int n = snprintf(c->out, sizeof c->out, "HTTP/1.1 %d %s\r\n", status, reason(status));
    if (has_body)
        n += snprintf(c->out + n, sizeof c->out - (size_t)n, "Content-Type: text/plain\r\nContent-Length: %zu\r\n",
                      sizeof FLR_REPLY_BODY - 1);
    n += snprintf(c->out + n, sizeof c->out - (size_t)n, "%s\r\n%s", c->close_after ? "Connection: close\r\n" : "",
                  has_body && !c->head_only ? FLR_REPLY_BODY : "");
    c->out_len = (size_t)n;
    c->out_sent = 0;
    c->state = FLR_CONN_WRITE;
}

/* conn_fail answers status (a request refused, not recorded) and closes after it. */
static void conn_fail(flr_conn *c, int status)
{
    c->close_after = 1;
    c->head_only = 0;
    conn_answer(c, status);
}

static void conn_consume(flr_conn *c, size_t n)
{
    memmove(c->in, c->in + n, c->in_len - n);
    c->in_len -= n;
}

/* conn_take_head parses a complete head out of in[] into pending; 0 while it is incomplete, 1
 * once parsed or refused (the connection is then in WRITE). */
static int conn_take_head(flr_conn *c)
{
    char *end = c->in_len ? memmem(c->in, c->in_len, "\r\n\r\n", 4) : NULL;   /* in is NULL until a read */
    if (!end) {
        if (c->in_len < FLR_HEAD_MAX)
            return 0;
        conn_fail(c, 431);
        return 1;
    }
    size_t head_len = (size_t)(end - c->in) + 4;
    int err = 431;
    if (head_len <= FLR_HEAD_MAX)
        c->pending = request_parse(c->in, head_len, &c->body_len, &err);
    if (!c->pending) {
        conn_fail(c, err);
        return 1;
    }
    conn_consume(c, head_len);
    return 1;
}

/* conn_take_body completes pending with its body (all in in[]), records it and moves to DELAY. */
static void conn_take_body(flr_receiver *r, flr_conn *c)
{
    flr_request *q = c->pending;
    double delay;
    c->pending = NULL;
    q->body = malloc(c->body_len + 1);
    if (q->body) {
        memcpy(q->body, c->in, c->body_len);
        q->body[c->body_len] = '\0';
        q->body_len = c->body_len;
        q->at = now_s();
        conn_consume(c, c->body_len);
        c->close_after = wants_close(q);
        c->head_only = strcmp(q->method, "HEAD") == 0;
    }
    if (!q->body || record(r, q, &delay) < 0) {
        request_free(q);
        conn_fail(c, 500);
        return;
    }
    c->status = q->status;
    c->answer_at = q->at + delay;
    c->state = FLR_CONN_DELAY;
}

/* conn_take moves the next request out of in[]; 0 while more bytes are needed. */
static int conn_take(flr_receiver *r, flr_conn *c)
{
    if (!c->pending && !conn_take_head(c))
        return 0;
    if (c->state != FLR_CONN_READ)   /* the head was refused */
        return 1;
    if (c->in_len < c->body_len)
        return 0;
    conn_take_body(r, c);
    return 1;
}

/* conn_flush sends what is left of out[]; 1 once it is all out and the connection reads again,
 * 0 while the socket is full or once the connection is closed. */
static int conn_flush(flr_conn *c)
{
    while (c->out_sent < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_sent, c->out_len - c->out_sent, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return 0;
        if (n <= 0) {
            conn_close(c);
            return 0;
        }
        c->out_sent += (size_t)n;
    }
    if (c->close_after) {
        conn_close(c);
        return 0;
    }
    c->state = FLR_CONN_READ;
    return 1;
}

/* conn_progress runs c's state machine until it must wait for bytes, the clock or the socket;
 * requests pipelined behind one another are taken in turn. */
static void conn_progress(flr_receiver *r, flr_conn *c)
{
    for (int more = 1; more && c->fd >= 0;) {
        switch (c->state) {
        case FLR_CONN_READ:
            more = conn_take(r, c);
            break;
        case FLR_CONN_DELAY:
            more = now_s() >= c->answer_at;
            if (more)
                conn_answer(c, c->status);
            break;
        case FLR_CONN_WRITE:
            more = conn_flush(c);
            break;
        }
    }
}

/* conn_read appends what the socket holds to in[]; closes on EOF or error. */
static void conn_read(flr_conn *c)
{
    if (c->in_len == c->in_cap) {
        size_t cap = c->in_cap ? 2 * c->in_cap : FLR_IN_MIN;
        cap = cap < FLR_IN_MAX ? cap : FLR_IN_MAX;
        char *p = realloc(c->in, cap);
        if (!p) {
            conn_fail(c, 500);
            return;
        }
        c->in = p;
        c->in_cap = cap;
    }
    ssize_t n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
    if (n > 0)
        c->in_len += (size_t)n;
    else if (n == 0 || (errno != EAGAIN && errno != EINTR))
        conn_close(c);
}

/* conn_event handles poll's report on c: bytes to read, or (while an answer is delayed, when
 * nothing is asked for) a hang-up or error. WRITE is flushed by conn_progress. */
static void conn_event(flr_conn *c)
{
    if (c->state == FLR_CONN_READ)
        conn_read(c);
    else if (c->state == FLR_CONN_DELAY)
        conn_close(c);
}

static void conn_accept(flr_receiver *r)
{
    for (size_t i = 0; i < FLR_CONN_MAX; i++) {
        if (r->conns[i].fd >= 0)
            continue;
        int fd = accept4(r->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0)
            r->conns[i].fd = fd;
        return;
    }
}

/* ---- the thread ---- */

/* watch fills pfd: the self-pipe, the listener (while a slot is free), then every open
 * connection, whose slot goes to of[]; returns the count. */
static nfds_t watch(flr_receiver *r, struct pollfd *pfd, flr_conn **of)
{
    static const short events[] = { [FLR_CONN_READ] = POLLIN, [FLR_CONN_DELAY] = 0, [FLR_CONN_WRITE] = POLLOUT };
    nfds_t n = 2;
    for (size_t i = 0; i < FLR_CONN_MAX; i++) {
        flr_conn *c = &r->conns[i];
        if (c->fd < 0)
            continue;
        pfd[n] = (struct pollfd){ .fd = c->fd, .events = events[c->state] };
        of[n++] = c;
    }
    pfd[0] = (struct pollfd){ .fd = r->wake[0], .events = POLLIN };
    pfd[1] = (struct pollfd){ .fd = r->listen_fd, .events = n - 2 < FLR_CONN_MAX ? POLLIN : 0 };
    return n;
}

/* poll_timeout: milliseconds until the first delayed answer is due, -1 if none is. */
static int poll_timeout(const flr_receiver *r)
{
    double first = -1;
    for (size_t i = 0; i < FLR_CONN_MAX; i++) {
        const flr_conn *c = &r->conns[i];
        if (c->fd >= 0 && c->state == FLR_CONN_DELAY && (first < 0 || c->answer_at < first))
            first = c->answer_at;
    }
    if (first < 0)
        return -1;
    double ms = (first - now_s()) * 1000;
    if (ms <= 0)
        return 0;
    return ms < FLR_POLL_MAX_MS ? (int)ms + 1 : FLR_POLL_MAX_MS;
}

static void *serve(void *arg)
{
    flr_receiver *r = arg;
    struct pollfd pfd[2 + FLR_CONN_MAX];
    flr_conn *of[2 + FLR_CONN_MAX];
    for (;;) {
        nfds_t n = watch(r, pfd, of);
        if (poll(pfd, n, poll_timeout(r)) < 0) {
            if (errno == EINTR)
                continue;
            perror("flr: poll");
            return NULL;
        }
        if (pfd[0].revents)
            return NULL;
        for (nfds_t i = 2; i < n; i++)
            if (pfd[i].revents)
                conn_event(of[i]);
        if (pfd[1].revents & POLLIN)
            conn_accept(r);
        for (size_t i = 0; i < FLR_CONN_MAX; i++)
            conn_progress(r, &r->conns[i]);
    }
}

/* ---- the receiver ---- */

static int listen_local(flr_receiver *r)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof a;
    r->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (r->listen_fd < 0 || bind(r->listen_fd, (struct sockaddr *)&a, sizeof a) < 0 ||
        listen(r->listen_fd, FLR_BACKLOG) < 0 || getsockname(r->listen_fd, (struct sockaddr *)&a, &len) < 0)
        return -1;
    r->port = ntohs(a.sin_port);
    return 0;
}

/* sync_init makes the mutex and the condition variable, whose waits run on CLOCK_MONOTONIC. */
static int sync_init(flr_receiver *r)
{
    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca) != 0)
        return -1;
    int rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    if (rc == 0)
        rc = pthread_cond_init(&r->arrived, &ca);
    pthread_condattr_destroy(&ca);
    if (rc != 0)
        return -1;
    if (pthread_mutex_init(&r->mu, NULL) != 0) {
        pthread_cond_destroy(&r->arrived);
        return -1;
    }
    return 0;
}

/* release frees everything r holds once no thread runs; sockets not opened are -1. */
static void release(flr_receiver *r)
{
    for (size_t i = 0; i < FLR_CONN_MAX; i++)
        if (r->conns[i].fd >= 0)
            conn_close(&r->conns[i]);
    int fds[] = { r->listen_fd, r->wake[0], r->wake[1] };
    for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    for (size_t i = 0; i < r->n_reqs; i++)
        request_free(r->reqs[i]);
    free(r->reqs);
    free(r->statuses);
    pthread_cond_destroy(&r->arrived);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

flr_receiver *flr_start(void)
{
    flr_receiver *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    if (sync_init(r) < 0) {
        free(r);
        return NULL;
    }
    r->listen_fd = r->wake[0] = r->wake[1] = -1;
    r->then = 200;
    for (size_t i = 0; i < FLR_CONN_MAX; i++)
        r->conns[i].fd = -1;
    if (listen_local(r) < 0 || pipe2(r->wake, O_CLOEXEC) < 0 || pthread_create(&r->thread, NULL, serve, r) != 0)
        goto fail;
    return r;
fail:
    release(r);
    return NULL;
}

void flr_stop(flr_receiver *r)
{
    if (!r)
        return;
    ssize_t n;
    do
        n = write(r->wake[1], "x", 1);
    while (n < 0 && errno == EINTR);
    pthread_join(r->thread, NULL);
    release(r);
}

int flr_port(const flr_receiver *r)
{
    return r->port;
}

char *flr_url(const flr_receiver *r, const char *path)
{
    char *url;
    if (asprintf(&url, "http://127.0.0.1:%d%s%s", r->port, path[0] == '/' ? "" : "/", path) < 0)
        return NULL;
    return url;
}

int flr_set_statuses(flr_receiver *r, const int *statuses, size_t n, int then)
{
    int *copy = malloc(n ? n * sizeof *copy : 1);
    if (!copy)
        return -ENOMEM;
    if (n)
        memcpy(copy, statuses, n * sizeof *copy);
    pthread_mutex_lock(&r->mu);
    free(r->statuses);
    r->statuses = copy;
    r->n_statuses = n;
    r->status_base = r->n_reqs;
    r->then = then;
    pthread_mutex_unlock(&r->mu);
    return 0;
}

void flr_set_delay(flr_receiver *r, double seconds)
{
    pthread_mutex_lock(&r->mu);
    r->delay = seconds > 0 ? seconds : 0;
    pthread_mutex_unlock(&r->mu);
}

size_t flr_count(flr_receiver *r)
{
    pthread_mutex_lock(&r->mu);
    size_t n = r->n_reqs;
    pthread_mutex_unlock(&r->mu);
    return n;
}

int flr_wait(flr_receiver *r, size_t n, int timeout_ms)
{
    struct timespec end;
    clock_gettime(CLOCK_MONOTONIC, &end);
    end.tv_sec += timeout_ms / 1000;
    end.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (end.tv_nsec >= 1000000000L) {
        end.tv_sec++;
        end.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&r->mu);
    int rc = 0;
    while (r->n_reqs < n && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&r->arrived, &r->mu, &end);
    int ok = r->n_reqs >= n;
    pthread_mutex_unlock(&r->mu);
    return ok ? 0 : -1;
}

const flr_request *flr_get(flr_receiver *r, size_t i)
{
    pthread_mutex_lock(&r->mu);
    const flr_request *q = i < r->n_reqs ? r->reqs[i] : NULL;
    pthread_mutex_unlock(&r->mu);
    return q;
}
