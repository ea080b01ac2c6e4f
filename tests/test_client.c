/* test_client.c — libfling and the fling CLI against a small scripted HTTP server running in
 * a thread of this process, over real sockets (127.0.0.1 and a Unix socket in a temp dir).
 * The server reads requests, answers each with the reply its script gives, and can close,
 * reset, shut down its write side or sit without reading. SIGPIPE keeps its default
 * disposition throughout: a send without MSG_NOSIGNAL anywhere would kill the test. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>
#include <jansson.h>

#include "encode.h"
#include "fling.h"
#include "harness.h"

#define SERVER_LIFETIME_MS 20000  /* no server thread outlives a test by more than this */
#define POLL_TICK_MS 10           /* how often the server looks at its stop flag */
#define WAIT_MS 5000              /* bound on any wait for the server to reach a state */
#define CLI_WAIT_MS 10000         /* bound on one run of the CLI binary */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

/* ---- the scripted server -------------------------------------------------------------- */

enum then { THEN_KEEP, THEN_CLOSE, THEN_RESET, THEN_SHUT_DRAIN };

/* What the server does for the n-th request head it sees. */
typedef struct step {
    const char *reply;   /* bytes to send, or NULL */
    enum then then;      /* afterwards */
    int early;           /* act as soon as the head is in, without reading the body */
} step;

typedef struct server {
    int lfd;
    int port;            /* TCP port, or 0 for the Unix socket */
    char dir[64];        /* temp dir holding the Unix socket */
    char path[108];
    const step *steps;
    int nsteps;
    pthread_t thread;
    atomic_int stop;
    atomic_int hold;     /* while set, accepted connections are not read */
    atomic_int delay_ms; /* each step waits this long first, as a daemon holding a reply does */
    atomic_int accepts;
    atomic_int closes;   /* connections the server closed itself */
    atomic_int requests; /* complete requests read */
    atomic_int eofs;     /* connections that ended with a FIN from the client */
    /* read after the thread is joined */
    int heads, errors;
    char *log;           /* every byte received, all connections in order */
    size_t log_len, log_cap;
} server;

/* The unparsed bytes of the current connection. */
typedef struct conn {
    char *p;
    size_t len, cap;
    int early_done;      /* the current request's early step already ran */
    int draining;        /* after THEN_SHUT_DRAIN: discard until EOF */
} conn;

static void grow_append(char **p, size_t *len, size_t *cap, const char *data, size_t n)
{
    if (*len + n > *cap) {
        size_t want = *cap ? *cap : 65536;
        while (want < *len + n)
            want *= 2;
        *p = realloc(*p, want);
        assert_non_null(*p);
        *cap = want;
    }
    memcpy(*p + *len, data, n);
    *len += n;
}

static size_t content_length(const char *head, size_t len)
{
    char *copy = strndup(head, len);
    assert_non_null(copy);
    char *cl = strcasestr(copy, "\r\nContent-Length:");
    size_t n = cl ? strtoul(cl + 17, NULL, 10) : 0;
    free(copy);
    return n;
}

static void send_reply(int fd, const char *reply)
{
    size_t off = 0, len = strlen(reply);
    int64_t end = now_ms() + WAIT_MS;
    while (off < len && now_ms() < end) {
        ssize_t n = send(fd, reply + off, len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0)
            off += (size_t)n;
        else if (n < 0 && errno != EAGAIN && errno != EINTR)
            return;
        else
            sleep_ms(1);
    }
}

/* Carries out one step: returns the fd, or -1 if the step closed it. */
static int act(server *s, int fd, const step *st, conn *c)
{
    sleep_ms(atomic_load(&s->delay_ms));
    if (st->reply)
        send_reply(fd, st->reply);
    switch (st->then) {
    case THEN_KEEP:
        return fd;
    case THEN_SHUT_DRAIN:
        shutdown(fd, SHUT_WR);
        c->draining = 1;
        return fd;
    case THEN_RESET: {
        struct linger lg = { 1, 0 };
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        break;
    }
    case THEN_CLOSE:
        break;
    }
    close(fd);
    atomic_fetch_add(&s->closes, 1);
    return -1;
}

static int serve_requests(server *s, int fd, conn *c)
{
    for (;;) {
        char *end = memmem(c->p, c->len, "\r\n\r\n", 4);
        if (!end)
            return fd;
        size_t head = (size_t)(end + 4 - c->p);
        size_t body = content_length(c->p, head);
        const step *st = s->heads < s->nsteps ? &s->steps[s->heads] : NULL;
        if (st && st->early && !c->early_done) {
            c->early_done = 1;
            fd = act(s, fd, st, c);
            if (fd < 0 || c->draining)
                return fd;
        }
        if (c->len < head + body)
            return fd;
        s->heads++;
        s->requests++;
        memmove(c->p, c->p + head + body, c->len - head - body);
        c->len -= head + body;
        if (st && !st->early) {
            fd = act(s, fd, st, c);
            if (fd < 0 || c->draining)
                return fd;
        }
        c->early_done = 0;
    }
}

static int poll_one(int fd, int ms)
{
    struct pollfd p = { .fd = fd, .events = POLLIN };
    return poll(&p, 1, ms) > 0;
}

/* Reads what the current connection has; returns the fd, or -1 once it is closed. */
static int server_read(server *s, int fd, conn *c)
{
    char buf[65536];
    ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return fd;
    if (n <= 0) {
        if (n == 0)
            s->eofs++;
        else
            s->errors++;
        close(fd);
        return -1;
    }
    grow_append(&s->log, &s->log_len, &s->log_cap, buf, (size_t)n);
    if (c->draining)
        return fd;
    grow_append(&c->p, &c->len, &c->cap, buf, (size_t)n);
    return serve_requests(s, fd, c);
}

static void *server_main(void *arg)
{
    server *s = arg;
    conn c = { 0 };
    int fd = -1;
    int64_t end = now_ms() + SERVER_LIFETIME_MS;
    while (!atomic_load(&s->stop) && now_ms() < end) {
        if (fd < 0) {
            if (poll_one(s->lfd, POLL_TICK_MS) && (fd = accept(s->lfd, NULL, NULL)) >= 0) {
                atomic_fetch_add(&s->accepts, 1);
                c.len = 0;
                c.early_done = c.draining = 0;
            }
        } else if (atomic_load(&s->hold)) {
            sleep_ms(POLL_TICK_MS);
        } else if (poll_one(fd, POLL_TICK_MS)) {
            fd = server_read(s, fd, &c);
        }
    }
    if (fd >= 0)
        close(fd);
    free(c.p);
    return NULL;
}

static void server_start(server *s, int unix_socket, const step *steps, int nsteps)
{
    memset(s, 0, sizeof *s);
    s->steps = steps;
    s->nsteps = nsteps;
    if (unix_socket) {
        struct sockaddr_un un = { .sun_family = AF_UNIX };
        strcpy(s->dir, "/tmp/fling-test-XXXXXX");
        assert_non_null(mkdtemp(s->dir));
        snprintf(s->path, sizeof s->path, "%s/s.sock", s->dir);
        strcpy(un.sun_path, s->path);
        s->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(s->lfd >= 0);
        assert_int_equal(bind(s->lfd, (struct sockaddr *)&un, sizeof un), 0);
    } else {
        struct sockaddr_in in = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof in;
        s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(s->lfd >= 0);
        assert_int_equal(bind(s->lfd, (struct sockaddr *)&in, sizeof in), 0);
        assert_int_equal(getsockname(s->lfd, (struct sockaddr *)&in, &len), 0);
        s->port = ntohs(in.sin_port);
    }
    assert_int_equal(listen(s->lfd, 16), 0);
    assert_int_equal(pthread_create(&s->thread, NULL, server_main, s), 0);
}

/* Lets the server finish reading (bounded), stops it and joins it. */
static void server_stop(server *s, int linger_ms)
{
    sleep_ms(linger_ms);
    atomic_store(&s->stop, 1);
    assert_int_equal(pthread_join(s->thread, NULL), 0);
    close(s->lfd);
    if (s->path[0]) {
        unlink(s->path);
        rmdir(s->dir);
    }
}

static void server_free(server *s)
{
    free(s->log);
    s->log = NULL;
}

/* log_has tells whether the server received the bytes of a string literal. */
#define log_has(s, lit) (memmem((s)->log, (s)->log_len, lit, sizeof(lit) - 1) != NULL)

static void server_url(const server *s, char *url, size_t size)
{
    if (s->port)
        snprintf(url, size, "http://127.0.0.1:%d", s->port);
    else
        snprintf(url, size, "unix:%s", s->path);
}

static fling_client *client_for(const server *s, const char *token)
{
    char url[160];
    server_url(s, url, sizeof url);
    fling_client *c = fling_client_new(url, token);
    assert_non_null(c);
    return c;
}

/* Waits (bounded) until *counter reaches want. */
static void wait_count(atomic_int *counter, int want)
{
    int64_t end = now_ms() + WAIT_MS;
    while (atomic_load(counter) < want && now_ms() < end)
        sleep_ms(1);
    assert_true(atomic_load(counter) >= want);
}

#define ACCEPTED_42 \
    "HTTP/1.1 202 Accepted\r\nLocation: /v1/jobs/42\r\nContent-Type: application/json\r\n" \
    "Content-Length: 28\r\n\r\n{\"id\":\"42\",\"state\":\"queued\"}"
#define ACCEPTED_43 \
    "HTTP/1.1 202 Accepted\r\nLocation: /v1/jobs/43\r\nContent-Length: 0\r\n\r\n"
#define DUPLICATE_42 \
    "HTTP/1.1 200 OK\r\nLocation: /v1/jobs/42\r\nContent-Length: 0\r\n\r\n"
#define NOT_FOUND \
    "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 59\r\n\r\n" \
    "{\"error\":\"unknown_type\",\"message\":\"no job type \\\"x\\\"\"}\n\n\n\n\n"
#define TOO_LARGE \
    "HTTP/1.1 413 Payload Too Large\r\nConnection: close\r\nContent-Length: 31\r\n\r\n" \
    "{\"error\":\"payload_too_large\"}\n\n"

/* ---- fling_fire ----------------------------------------------------------------------- */

static void test_fire_sends_exact_bytes_then_fin(void **state)
{
    (void)state;
    server s;
    server_start(&s, 0, NULL, 0);
    fling_client *c = client_for(&s, "tok");
    fling_job_opts o = { .timeout = 2.5, .max_attempts = 4, .has_priority = 1, .priority = -1,
                         .idempotency_key = "k-1", .callback = "http://127.0.0.1:1/cb" };
    assert_int_equal(fling_fire(c, "echo", "pay\0load", 8, &o), 0);

    char host[32], *want = NULL;
    size_t want_len = 0;
    fl_proto_opts p = { .has_timeout = 1, .timeout = 2.5, .has_max_attempts = 1, .max_attempts = 4,
                        .has_priority = 1, .priority = -1, .idem_key = "k-1", .idem_key_len = 3,
                        .callback = "http://127.0.0.1:1/cb", .callback_len = 21 };
    snprintf(host, sizeof host, "127.0.0.1:%d", s.port);
    assert_int_equal(fl_proto_encode_submit(host, "tok", "echo", "pay\0load", 8, &p, &want, &want_len), 0);
    int64_t end = now_ms() + WAIT_MS;
    while (atomic_load(&s.accepts) < 1 && now_ms() < end)
        sleep_ms(1);
    server_stop(&s, 200);
    assert_int_equal(s.accepts, 1);
    assert_int_equal(s.log_len, want_len);
    assert_memory_equal(s.log, want, want_len);
    assert_int_equal(s.eofs, 1);     /* recv returned 0: a FIN, not a reset */
    assert_int_equal(s.errors, 0);
    assert_int_equal(s.requests, 1);
    free(want);
    server_free(&s);
    fling_client_free(c);
}

static void test_fire_refuses_bad_input_without_connecting(void **state)
{
    (void)state;
    server s;
    server_start(&s, 0, NULL, 0);
    fling_client *c = client_for(&s, NULL);
    fling_job_opts bad_timeout = { .timeout = -1 };
    fling_job_opts bad_key = { .idempotency_key = "a b" };
    fling_job_opts bad_cb = { .callback = "ftp://x" };
    assert_int_equal(fling_fire(c, "bad type", "x", 1, NULL), FLING_EINVAL);
    assert_int_equal(fling_fire(c, "t", "x", 1, &bad_timeout), FLING_EINVAL);
    assert_int_equal(fling_submit(c, "t", "x", 1, &bad_key, NULL), FLING_EINVAL);
    assert_int_equal(fling_submit(c, "t", "x", 1, &bad_cb, NULL), FLING_EINVAL);
    assert_int_equal(fling_request(c, "get", "/", NULL, 0, NULL), FLING_EINVAL);
    server_stop(&s, 50);
    assert_int_equal(s.accepts, 0);
    server_free(&s);
    fling_client_free(c);
}

/* The most a TCP socket's send buffer grows to here (tcp_wmem's third field), or 4 MiB. */
static size_t tcp_wmem_max(void)
{
    FILE *f = fopen("/proc/sys/net/ipv4/tcp_wmem", "r");
    long lo, def, max = 4L << 20;
    if (f && fscanf(f, "%ld %ld %ld", &lo, &def, &max) != 3)
        max = 4L << 20;
    if (f)
        fclose(f);
    return (size_t)max;
}

/* A server that does not read: a 1 MiB request fits in the kernel's buffers on loopback
 * (0, and all of it arrives once the server reads, though the client closed long before),
 * one of twice the client's largest send buffer cannot (FLING_ESEND when the io timeout
 * passes): for it the server's receive buffer is set small, which also stops the kernel
 * growing it. Either way fling_fire returns within its bound. (A fixed 64 MiB did not fit
 * either, but its page faults alone took 0.7 s here, and 2.2 s to over 3 under TSan.) */
static void test_fire_to_server_that_does_not_read(void **state)
{
    (void)state;
    const size_t sizes[] = { 1u << 20, 2 * tcp_wmem_max() + (1u << 20) };
    const int small_rcvbuf = 64 << 10;
    for (int i = 0; i < 2; i++) {
        server s;
        server_start(&s, 0, NULL, 0);
        if (i == 1)
            assert_int_equal(setsockopt(s.lfd, SOL_SOCKET, SO_RCVBUF, &small_rcvbuf, sizeof small_rcvbuf), 0);
        atomic_store(&s.hold, 1);
        fling_client *c = client_for(&s, NULL);
        fling_client_set_timeouts(c, 1000, 500);
        char *payload = malloc(sizes[i]);
        assert_non_null(payload);
        memset(payload, 'p', sizes[i]);
        int64_t t0 = now_ms();
        int rc = fling_fire(c, "big", payload, sizes[i], NULL);
        int64_t took = now_ms() - t0;
        assert_true(took < 3000);
        if (i == 0 && rc == 0) {
            atomic_store(&s.hold, 0);
            wait_count(&s.eofs, 1);
            assert_int_equal(atomic_load(&s.requests), 1);
        } else if (i == 0) {
            print_message("note: the kernel did not take 1 MiB within 500 ms (%d)\n", rc);
            assert_int_equal(rc, FLING_ESEND);
        } else {
            assert_int_equal(rc, FLING_ESEND);
            assert_true(took >= 450);
        }
        server_stop(&s, 0);
        free(payload);
        server_free(&s);
        fling_client_free(c);
    }
}

/* ---- fling_submit --------------------------------------------------------------------- */

static void test_submit_202_and_keep_alive(void **state)
{
    (void)state;
    static const step steps[] = { { ACCEPTED_42, THEN_KEEP, 0 }, { DUPLICATE_42, THEN_KEEP, 0 },
                                  { ACCEPTED_43, THEN_KEEP, 0 } };
    server s;
    server_start(&s, 0, steps, 3);
    fling_client *c = client_for(&s, NULL);
    fling_response res;
    fling_job_opts key = { .idempotency_key = "same" };

    assert_int_equal(fling_submit(c, "echo", "a", 1, &key, &res), 0);
    assert_int_equal(res.status, 202);
    assert_string_equal(res.id, "42");
    assert_int_equal(res.duplicate, 0);
    assert_int_equal(res.body_len, 28);
    assert_string_equal(res.body, "{\"id\":\"42\",\"state\":\"queued\"}");
    fling_response_clear(&res);
    assert_null(res.body);

    assert_int_equal(fling_submit(c, "echo", "a", 1, &key, &res), 0);
    assert_int_equal(res.status, 200);
    assert_string_equal(res.id, "42");
    assert_int_equal(res.duplicate, 1);
    fling_response_clear(&res);

    assert_int_equal(fling_submit(c, "echo", NULL, 0, NULL, NULL), 0);   /* res may be NULL */
    fling_client_free(c);
    server_stop(&s, 100);
    assert_int_equal(s.accepts, 1);   /* three requests, one connection */
    assert_int_equal(s.requests, 3);
    assert_int_equal(s.eofs, 1);
    server_free(&s);
}

static void test_submit_error_reply(void **state)
{
    (void)state;
    static const step steps[] = { { NOT_FOUND, THEN_KEEP, 0 } };
    server s;
    server_start(&s, 0, steps, 1);
    fling_client *c = client_for(&s, NULL);
    fling_response res;
    assert_int_equal(fling_submit(c, "x", "a", 1, NULL, &res), FLING_EHTTP);
    assert_int_equal(res.status, 404);
    assert_string_equal(res.id, "");
    assert_non_null(res.body);
    assert_non_null(strstr(res.body, "\"unknown_type\""));
    fling_response_clear(&res);
    fling_client_free(c);
    server_stop(&s, 50);
    server_free(&s);
}

static void test_submit_bad_replies(void **state)
{
    (void)state;
    static const step steps[] = {
        { "HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n", THEN_KEEP, 0 },       /* no Location */
        { "HTTP/1.1 202 Accepted\r\nLocation: /v1/jobs/0\r\nContent-Length: 0\r\n\r\n", THEN_KEEP, 0 },
        { "SMTP ready\r\n\r\n", THEN_KEEP, 0 },
    };
    server s;
    server_start(&s, 0, steps, 3);
    fling_client *c = client_for(&s, NULL);
    assert_int_equal(fling_submit(c, "t", "a", 1, NULL, NULL), FLING_EPROTO);
    assert_int_equal(fling_submit(c, "t", "a", 1, NULL, NULL), FLING_EPROTO);
    assert_int_equal(fling_submit(c, "t", "a", 1, NULL, NULL), FLING_EPROTO);
    fling_client_free(c);
    server_stop(&s, 50);
    assert_int_equal(s.requests, 3);
    server_free(&s);
}

static void test_request_get_and_delete(void **state)
{
    (void)state;
    static const step steps[] = {
        { "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{\"id\":\"7\"}", THEN_KEEP, 0 },
        { "HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\n{}", THEN_KEEP, 0 },
    };
    server s;
    server_start(&s, 1, steps, 2);
    fling_client *c = client_for(&s, "t0k");
    fling_response res;
    assert_int_equal(fling_request(c, "GET", "/v1/jobs/7", NULL, 0, &res), 0);
    assert_int_equal(res.status, 200);
    assert_string_equal(res.body, "{\"id\":\"7\"}");
    fling_response_clear(&res);
    assert_int_equal(fling_request(c, "DELETE", "/v1/jobs/8", NULL, 0, &res), FLING_EHTTP);
    assert_int_equal(res.status, 404);
    fling_response_clear(&res);
    fling_client_free(c);
    server_stop(&s, 100);
    static const char want[] =
        "GET /v1/jobs/7 HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer t0k\r\n\r\n"
        "DELETE /v1/jobs/8 HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer t0k\r\n\r\n";
    assert_int_equal(s.log_len, sizeof want - 1);
    assert_memory_equal(s.log, want, sizeof want - 1);
    assert_int_equal(s.accepts, 1);
    server_free(&s);
}

/* The server closes the kept connection while it is idle: the next submit reconnects. */
static void test_submit_reconnects_after_idle_close(void **state)
{
    (void)state;
    static const step steps[] = { { ACCEPTED_42, THEN_CLOSE, 0 }, { ACCEPTED_43, THEN_KEEP, 0 } };
    server s;
    server_start(&s, 0, steps, 2);
    fling_client *c = client_for(&s, NULL);
    fling_response res;
    assert_int_equal(fling_submit(c, "t", "a", 1, NULL, &res), 0);
    assert_string_equal(res.id, "42");
    fling_response_clear(&res);
    wait_count(&s.closes, 1);
    sleep_ms(20);   /* let the FIN land */
    assert_int_equal(fling_submit(c, "t", "b", 1, NULL, &res), 0);
    assert_string_equal(res.id, "43");
    fling_response_clear(&res);
    fling_client_free(c);
    server_stop(&s, 100);
    assert_int_equal(s.accepts, 2);
    assert_int_equal(s.requests, 2);   /* nothing sent twice */
    server_free(&s);
}

/* Same with a reset instead of a FIN. */
static void test_submit_reconnects_after_idle_reset(void **state)
{
    (void)state;
    static const step steps[] = { { ACCEPTED_42, THEN_RESET, 0 }, { ACCEPTED_43, THEN_KEEP, 0 } };
    server s;
    server_start(&s, 0, steps, 2);
    fling_client *c = client_for(&s, NULL);
    assert_int_equal(fling_submit(c, "t", "a", 1, NULL, NULL), 0);
    wait_count(&s.closes, 1);
    sleep_ms(20);
    fling_response res;
    assert_int_equal(fling_submit(c, "t", "b", 1, NULL, &res), 0);
    assert_string_equal(res.id, "43");
    fling_response_clear(&res);
    fling_client_free(c);
    server_stop(&s, 100);
    assert_int_equal(s.accepts, 2);
    assert_int_equal(s.requests, 2);
    server_free(&s);
}

/* The server takes the request and closes without a reply: the daemon may have enqueued it,
 * so the client must report FLING_ERECV and never send it again. */
static void test_submit_never_resends(void **state)
{
    (void)state;
    static const step steps[] = { { NULL, THEN_CLOSE, 0 }, { ACCEPTED_43, THEN_KEEP, 0 } };
    server s;
    server_start(&s, 0, steps, 2);
    fling_client *c = client_for(&s, NULL);
    fling_response res;
    assert_int_equal(fling_submit(c, "t", "a", 1, NULL, &res), FLING_ERECV);
    assert_int_equal(res.status, 0);
    fling_response_clear(&res);
    sleep_ms(100);
    assert_int_equal(atomic_load(&s.accepts), 1);
    /* the client is still usable afterwards */
    assert_int_equal(fling_submit(c, "t", "b", 1, NULL, &res), 0);
    assert_string_equal(res.id, "43");
    fling_response_clear(&res);
    fling_client_free(c);
    server_stop(&s, 100);
    assert_int_equal(s.accepts, 2);
    assert_int_equal(s.requests, 2);
    server_free(&s);
}

/* A server that stays silent: FLING_ERECV after the io timeout, not a hang. */
static void test_submit_reply_timeout(void **state)
{
    (void)state;
    static const step steps[] = { { NULL, THEN_KEEP, 0 } };
    server s;
    server_start(&s, 0, steps, 1);
    fling_client *c = client_for(&s, NULL);
    fling_client_set_timeouts(c, 1000, 300);
    int64_t t0 = now_ms();
    assert_int_equal(fling_submit(c, "t", "a", 1, NULL, NULL), FLING_ERECV);
    int64_t took = now_ms() - t0;
    assert_true(took >= 250 && took < 2000);
    fling_client_free(c);
    server_stop(&s, 50);
    server_free(&s);
}

/* Early error replies (docs/protocol.md) from the client's side: the server answers 413 as soon as it sees the head,
 * shuts its write side and drains; the client finishes sending and reads the 413. */
static void test_submit_reads_early_413_after_drain(void **state)
{
    (void)state;
    static const step steps[] = { { TOO_LARGE, THEN_SHUT_DRAIN, 1 } };
    server s;
    server_start(&s, 0, steps, 1);
    fling_client *c = client_for(&s, NULL);
    size_t size = 8u << 20;
    char *payload = calloc(1, size);
    assert_non_null(payload);
    fling_response res;
    assert_int_equal(fling_submit(c, "t", payload, size, NULL, &res), FLING_EHTTP);
    assert_int_equal(res.status, 413);
    assert_non_null(strstr(res.body, "payload_too_large"));
    fling_response_clear(&res);
    free(payload);
    fling_client_free(c);
    server_stop(&s, 50);
    server_free(&s);
}

/* C5: the server answers 413 and closes with the body unread, so its kernel resets the
 * connection and the client's send fails; the 413 that arrived first is still reported. */
static void test_submit_reads_413_after_failed_send(void **state)
{
    (void)state;
    static const step steps[] = { { TOO_LARGE, THEN_CLOSE, 1 } };
    server s;
    server_start(&s, 0, steps, 1);
    fling_client *c = client_for(&s, NULL);
    size_t size = 32u << 20;
    char *payload = calloc(1, size);
    assert_non_null(payload);
    fling_response res;
    int rc = fling_submit(c, "t", payload, size, NULL, &res);
    assert_int_equal(rc, FLING_EHTTP);
    assert_int_equal(res.status, 413);
    fling_response_clear(&res);
    free(payload);
    fling_client_free(c);
    server_stop(&s, 50);
    server_free(&s);
}

/* ---- connecting ----------------------------------------------------------------------- */

static void test_connection_refused_is_quick(void **state)
{
    (void)state;
    /* a bound socket that does not listen: its port answers SYNs with a reset */
    struct sockaddr_in in = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof in;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&in, sizeof in), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&in, &len), 0);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", ntohs(in.sin_port));
    fling_client *c = fling_client_new(url, NULL);
    assert_non_null(c);
    int64_t t0 = now_ms();
    errno = 0;
    assert_int_equal(fling_fire(c, "t", "x", 1, NULL), FLING_ECONNECT);
    assert_int_equal(errno, ECONNREFUSED);
    fling_response res;
    errno = 0;
    assert_int_equal(fling_submit(c, "t", "x", 1, NULL, &res), FLING_ECONNECT);
    assert_int_equal(errno, ECONNREFUSED);
    assert_int_equal(res.status, 0);
    assert_null(res.body);
    assert_true(now_ms() - t0 < 1000);
    fling_client_free(c);
    /* https: libcurl connects, and its refusal is reported the same way */
    snprintf(url, sizeof url, "https://127.0.0.1:%d", ntohs(in.sin_port));
    c = fling_client_new(url, NULL);
    assert_non_null(c);
    errno = 0;
    assert_int_equal(fling_fire(c, "t", "x", 1, NULL), FLING_ECONNECT);
    assert_int_equal(errno, ECONNREFUSED);
    errno = 0;
    assert_int_equal(fling_submit(c, "t", "x", 1, NULL, &res), FLING_ECONNECT);
    assert_int_equal(errno, ECONNREFUSED);
    assert_int_equal(res.status, 0);
    fling_client_free(c);
    close(fd);

    c = fling_client_new("unix:/nonexistent/fling.sock", NULL);
    assert_non_null(c);
    assert_int_equal(fling_fire(c, "t", "x", 1, NULL), FLING_ECONNECT);
    fling_client_free(c);
}

/* A name that getaddrinfo fails without sending a query: its first label has 64 characters,
 * one more than DNS allows, so the resolver cannot even build the packet (checked with
 * strace: no socket but netlink's). "nonexistent.invalid" would be asked of the name server. */
#define UNRESOLVABLE_HOST \
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.invalid"

static void test_unresolvable_host(void **state)
{
    (void)state;
    fling_client *c = fling_client_new("http://" UNRESOLVABLE_HOST ":1", NULL);
    assert_non_null(c);
    assert_int_equal(fling_fire(c, "t", "x", 1, NULL), FLING_ERESOLVE);
    fling_response res;
    assert_int_equal(fling_submit(c, "t", "x", 1, NULL, &res), FLING_ERESOLVE);
    assert_int_equal(res.status, 0);
    fling_stream *st;
    assert_int_equal(fling_stream_open(c, "/v1/events", &st), FLING_ERESOLVE);
    assert_null(st);
    assert_string_equal(fling_strerror(FLING_ERESOLVE), "cannot resolve host");
    fling_client_free(c);
    c = fling_client_new("https://" UNRESOLVABLE_HOST ":1", NULL);
    assert_non_null(c);
    assert_int_equal(fling_fire(c, "t", "x", 1, NULL), FLING_ERESOLVE);
    assert_int_equal(fling_submit(c, "t", "x", 1, NULL, NULL), FLING_ERESOLVE);
    assert_int_equal(fling_client_set_tls(c, "", 0), FLING_EINVAL);
    assert_int_equal(fling_client_set_tls(c, NULL, 4), FLING_EINVAL);
    fling_client_free(c);
}

/* A listener whose accept queue is full drops further SYNs: connect() then waits, and our
 * connect timeout must end it. Skipped if this kernel completes the connection anyway. */
static void test_connect_timeout(void **state)
{
    (void)state;
    struct sockaddr_in in = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof in;
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(lfd >= 0);
    assert_int_equal(bind(lfd, (struct sockaddr *)&in, sizeof in), 0);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&in, &len), 0);
    assert_int_equal(listen(lfd, 0), 0);
    int fillers[8], nfill = 0, blocked = 0;
    while (nfill < 8 && !blocked) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        assert_true(fd >= 0);
        fillers[nfill++] = fd;
        if (connect(fd, (struct sockaddr *)&in, sizeof in) == 0)
            continue;
        assert_int_equal(errno, EINPROGRESS);
        struct pollfd p = { .fd = fd, .events = POLLOUT };
        blocked = poll(&p, 1, 200) == 0;
    }
    if (!blocked) {
        for (int i = 0; i < nfill; i++)
            close(fillers[i]);
        close(lfd);
        print_message("skipped: the kernel completed every connection to a full listener\n");
        skip();
    }
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", ntohs(in.sin_port));
    fling_client *c = fling_client_new(url, NULL);
    assert_non_null(c);
    fling_client_set_timeouts(c, 300, 1000);
    int64_t t0 = now_ms();
    assert_int_equal(fling_fire(c, "t", "x", 1, NULL), FLING_ECONNECT);
    int64_t took = now_ms() - t0;
    assert_true(took >= 250 && took < 1500);
    fling_client_free(c);
    for (int i = 0; i < nfill; i++)
        close(fillers[i]);
    close(lfd);
}

/* A Unix listener with a full backlog makes a non-blocking connect() fail with EAGAIN at once;
 * the client retries until its connect timeout, then gives up with FLING_ECONNECT. */
static void test_unix_connect_timeout(void **state)
{
    (void)state;
    server s;
    server_start(&s, 1, NULL, 0);
    atomic_store(&s.stop, 1);   /* nobody accepts */
    assert_int_equal(pthread_join(s.thread, NULL), 0);
    assert_int_equal(listen(s.lfd, 0), 0);
    struct sockaddr_un un = { .sun_family = AF_UNIX };
    strcpy(un.sun_path, s.path);
    int fillers[16], nfill = 0, full = 0;
    while (nfill < 16 && !full) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
        assert_true(fd >= 0);
        fillers[nfill++] = fd;
        full = connect(fd, (struct sockaddr *)&un, sizeof un) < 0 && errno == EAGAIN;
    }
    assert_true(full);
    fling_client *c = client_for(&s, NULL);
    fling_client_set_timeouts(c, 300, 1000);
    int64_t t0 = now_ms();
    assert_int_equal(fling_fire(c, "t", "x", 1, NULL), FLING_ECONNECT);
    int64_t took = now_ms() - t0;
    assert_true(took >= 250 && took < 1500);
    fling_client_free(c);
    for (int i = 0; i < nfill; i++)
        close(fillers[i]);
    close(s.lfd);
    unlink(s.path);
    rmdir(s.dir);
    server_free(&s);
}

/* ---- resets and SIGPIPE --------------------------------------------------------------- */

/* The server resets (TCP) or closes (Unix) as soon as it sees the head of a 32 MiB request:
 * the client's sends then fail with EPIPE/ECONNRESET. With SIGPIPE at its default
 * disposition, reaching the asserts at all proves MSG_NOSIGNAL. */
static void test_no_sigpipe_on_reset(void **state)
{
    (void)state;
    static const step steps[] = { { NULL, THEN_RESET, 1 }, { NULL, THEN_RESET, 1 } };
    assert_true(signal(SIGPIPE, SIG_DFL) != SIG_ERR);
    size_t size = 32u << 20;
    char *payload = calloc(1, size);
    assert_non_null(payload);
    for (int unix_socket = 0; unix_socket < 2; unix_socket++) {
        server s;
        server_start(&s, unix_socket, steps, 2);
        fling_client *c = client_for(&s, NULL);
        assert_int_equal(fling_fire(c, "t", payload, size, NULL), FLING_ESEND);
        wait_count(&s.closes, 1);
        int rc = fling_submit(c, "t", payload, size, NULL, NULL);
        assert_true(rc == FLING_ESEND);
        fling_client_free(c);
        server_stop(&s, 20);
        assert_int_equal(s.accepts, 2);
        server_free(&s);
    }
    free(payload);
}

/* ---- Unix sockets --------------------------------------------------------------------- */

static void test_unix_socket(void **state)
{
    (void)state;
    static const step steps[] = { { NULL, THEN_KEEP, 0 }, { ACCEPTED_42, THEN_KEEP, 0 } };
    server s;
    server_start(&s, 1, steps, 2);
    fling_client *c = client_for(&s, NULL);
    assert_int_equal(fling_fire(c, "t", "fired", 5, NULL), 0);
    wait_count(&s.accepts, 1);
    sleep_ms(50);   /* the fire's connection ends before the submit's begins */
    fling_response res;
    assert_int_equal(fling_submit(c, "t", "kept", 4, NULL, &res), 0);
    assert_string_equal(res.id, "42");
    fling_response_clear(&res);
    fling_client_free(c);
    server_stop(&s, 100);
    assert_int_equal(s.accepts, 2);
    assert_int_equal(s.requests, 2);
    assert_int_equal(s.eofs, 2);
    assert_true(log_has(&s, "Host: localhost\r\nContent-Length: 5\r\n\r\nfired"));
    server_free(&s);
}

/* ---- URLs and threads ----------------------------------------------------------------- */

static void test_client_new_urls(void **state)
{
    (void)state;
    static const char *const good[] = {
        "http://127.0.0.1:7878", "http://127.0.0.1:7878/", "http://localhost:1",
        "http://[::1]:7878", "http://[::1]", "http://example.com", "unix:/run/fling.sock",
        "unix:relative.sock", "https://127.0.0.1:7878", "https://localhost", "HTTP://Example.com:80/",
    };
    static const char *const bad[] = {
        "", "127.0.0.1:7878", "ftp://127.0.0.1:21", "https://", "http://", "http://:80",
        "http://127.0.0.1:0", "http://127.0.0.1:65536", "http://127.0.0.1:80x",
        "http://127.0.0.1:7878/v1", "http://[::1", "http://[127.0.0.1]:80", "http://::1:80",
        "http://ho st:80", "http://host\r\n:80", "unix:", "http://127.0.0.1:-1",
        "http://user:pw@127.0.0.1:7878", "https://127.0.0.1:7878/?q=1", "http://127.0.0.1:7878/#f",
        "https://[fe80::1%25eth0]:7878",
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        fling_client *c = fling_client_new(good[i], NULL);
        if (!c)
            fail_msg("refused good URL %s", good[i]);
        fling_client_free(c);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        errno = 0;
        fling_client *c = fling_client_new(bad[i], NULL);
        if (c)
            fail_msg("accepted bad URL \"%s\"", bad[i]);
        assert_int_equal(errno, EINVAL);
    }
    char long_path[200] = "unix:/";
    memset(long_path + 6, 'a', 150);
    long_path[156] = '\0';
    assert_null(fling_client_new(long_path, NULL));
    assert_null(fling_client_new(NULL, NULL));
    assert_null(fling_client_new("http://h:1", "bad token"));
    assert_null(fling_client_new("http://h:1", "line\nbreak"));
    fling_client_free(NULL);
    fling_response_clear(NULL);
    assert_string_equal(fling_strerror(FLING_ECONNECT), "could not connect");
    assert_string_equal(fling_strerror(12345), "unknown error");
}

#define THREADS 4
#define PER_THREAD 25

typedef struct worker_arg { fling_client *c; int ok; } worker_arg;

static void *submit_worker(void *arg)
{
    worker_arg *w = arg;
    for (int i = 0; i < PER_THREAD; i++)
        w->ok += fling_submit(w->c, "t", "x", 1, NULL, NULL) == 0;
    return NULL;
}

/* One client shared by threads: every submit gets its own reply on the one connection. */
static void test_submit_shared_by_threads(void **state)
{
    (void)state;
    static step steps[THREADS * PER_THREAD];
    for (int i = 0; i < THREADS * PER_THREAD; i++)
        steps[i] = (step){ ACCEPTED_42, THEN_KEEP, 0 };
    server s;
    server_start(&s, 0, steps, THREADS * PER_THREAD);
    fling_client *c = client_for(&s, NULL);
    pthread_t t[THREADS];
    worker_arg w[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i] = (worker_arg){ c, 0 };
        assert_int_equal(pthread_create(&t[i], NULL, submit_worker, &w[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
        assert_int_equal(w[i].ok, PER_THREAD);
    }
    fling_client_free(c);
    server_stop(&s, 100);
    assert_int_equal(s.accepts, 1);
    assert_int_equal(s.requests, THREADS * PER_THREAD);
    server_free(&s);
}

/* ---- attached mode (Prefer: wait) ----------------------------------------------------- */

#define JOB_REPLY(state, error, exit_code) \
    "HTTP/1.1 200 OK\r\nLocation: /v1/jobs/42\r\nContent-Type: application/json\r\n" \
    "Connection: close\r\n\r\n" \
    "{\"id\":\"42\",\"type\":\"echo\",\"state\":\"" state "\",\"status\":0,\"attempts\":1," \
    "\"max_attempts\":3,\"exit_code\":" exit_code ",\"error\":" error "}"
#define RUNNING_42 \
    "HTTP/1.1 202 Accepted\r\nLocation: /v1/jobs/42\r\nContent-Length: 29\r\n\r\n" \
    "{\"id\":\"42\",\"state\":\"running\"}"

/* With wait, the reply may take longer than the I/O timeout (its deadline is wait + 10 s);
 * a 200 is then the finished job, not a duplicate; the headers go out as given. */
static void test_submit_wait(void **state)
{
    (void)state;
    static const step steps[] = { { JOB_REPLY("succeeded", "null", "0"), THEN_CLOSE, 0 } };
    server s;
    server_start(&s, 0, steps, 1);
    atomic_store(&s.delay_ms, 700);
    fling_client *c = client_for(&s, NULL);
    fling_client_set_timeouts(c, 1000, 300);
    fling_job_opts o = { .wait = 1, .on_disconnect = "continue" };
    fling_response res;
    assert_int_equal(fling_submit(c, "echo", "a", 1, &o, &res), 0);
    assert_int_equal(res.status, 200);
    assert_string_equal(res.id, "42");
    assert_int_equal(res.duplicate, 0);
    assert_non_null(strstr(res.body, "\"state\":\"succeeded\""));
    fling_response_clear(&res);
    fling_client_free(c);
    server_stop(&s, 50);
    assert_true(log_has(&s, "\r\nPrefer: wait=1\r\nFling-On-Disconnect: continue\r\n\r\na"));
    server_free(&s);
}

/* Values out of range, on-disconnect without wait, and wait on a fire: refused before any
 * connection is made. */
static void test_submit_wait_refused(void **state)
{
    (void)state;
    server s;
    server_start(&s, 0, NULL, 0);
    fling_client *c = client_for(&s, NULL);
    static const fling_job_opts bad[] = {
        { .wait = -1 }, { .wait = FL_WAIT_MAX + 1 }, { .on_disconnect = "cancel" },
        { .wait = 5, .on_disconnect = "maybe" }, { .wait = 5, .on_disconnect = "" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (fling_submit(c, "t", "x", 1, &bad[i], NULL) != FLING_EINVAL)
            fail_msg("bad attached options %zu were sent", i);
    fling_job_opts ok = { .wait = 5 };
    assert_int_equal(fling_fire(c, "t", "x", 1, &ok), FLING_EINVAL);
    fling_client_free(c);
    server_stop(&s, 50);
    assert_int_equal(s.accepts, 0);
    server_free(&s);
}

/* ---- the CLI binary ------------------------------------------------------------------- */

/* Runs the fling CLI with argv (NULL-terminated after argv[0]) and env, stdin from /dev/null. */
static void run_cli(flh_cli *r, char *const argv[], char *const env[])
{
    if (flh_cli_run(r, argv, env, CLI_WAIT_MS) < 0)
        fail_msg("the CLI did not exit within %d ms", CLI_WAIT_MS);
}

static void expect_cli_failure(char *const argv[], char *const env[], int code, const char *prefix)
{
    flh_cli r;
    run_cli(&r, argv, env);
    if (!flh_cli_failed_as(&r, code, prefix))
        fail_msg("%s %s: exit %d, stdout \"%s\", stderr \"%s\"; want exit %d, one line starting \"%s\"",
                 argv[1] ? argv[1] : "", argv[1] && argv[2] ? argv[2] : "", r.status, r.out, r.err, code, prefix);
}

static void test_cli_usage_errors(void **state)
{
    (void)state;
    char *env[] = { "PATH=/usr/bin:/bin", NULL };
    char *a0[] = { "fling", NULL };
    char *a1[] = { "fling", "submit", NULL };
    char *a2[] = { "fling", "frobnicate", NULL };
    char *a3[] = { "fling", "submit", "echo", "--timeout", "abc", NULL };
    char *a4[] = { "fling", "status", "1", "--state", "queued", NULL };
    char *a5[] = { "fling", "--bogus", "list", NULL };
    char *a6[] = { "fling", "status", "0x1", NULL };
    char *a7[] = { "fling", "list", "--limit", NULL };
    char *a8[] = { "fling", "--url", "ftp://x", "list", NULL };
    char *a9[] = { "fling", "submit", "bad/type", NULL };
    char *a10[] = { "fling", "cancel", "1", "2", NULL };
    char *a11[] = { "fling", "list", "--state", "done", NULL };
    expect_cli_failure(a0, env, 2, "fling: ");
    expect_cli_failure(a1, env, 2, "fling: submit: ");
    expect_cli_failure(a2, env, 2, "fling: unknown command");
    expect_cli_failure(a3, env, 2, "fling: submit: bad or repeated --timeout");
    expect_cli_failure(a4, env, 2, "fling: status: option --state");
    expect_cli_failure(a5, env, 2, "fling: unknown option");
    expect_cli_failure(a6, env, 2, "fling: status: bad job id");
    expect_cli_failure(a7, env, 2, "fling: option '--limit' needs a value");
    expect_cli_failure(a8, env, 2, "fling: list: bad URL");
    expect_cli_failure(a9, env, 2, "fling: submit: bad job type");
    expect_cli_failure(a10, env, 2, "fling: cancel: unexpected argument");
    expect_cli_failure(a11, env, 2, "fling: list: bad --state");

    char *w1[] = { "fling", "submit", "echo", "--wait=0", NULL };
    char *w2[] = { "fling", "submit", "echo", "--wait=3601", NULL };
    char *w3[] = { "fling", "submit", "echo", "--wait=5s", NULL };
    char *w4[] = { "fling", "submit", "echo", "--wait", "--detach", NULL };
    char *w5[] = { "fling", "submit", "echo", "--on-disconnect", "cancel", NULL };
    char *w6[] = { "fling", "submit", "echo", "--wait", "--on-disconnect", "maybe", NULL };
    char *w7[] = { "fling", "status", "1", "--prefix", "app:", NULL };
    char *w8[] = { "fling", "watch", "extra", NULL };
    char *w9[] = { "fling", "watch", "--count", "0", NULL };
    char *w10[] = { "fling", "watch", "--type", "a b", NULL };
    char *w11[] = { "fling", "watch", "--redis", "http://x", NULL };
    char *w12[] = { "fling", "list", "--redis", "redis://h", NULL };
    expect_cli_failure(w1, env, 2, "fling: submit: bad --wait '0'");
    expect_cli_failure(w2, env, 2, "fling: submit: bad --wait '3601'");
    expect_cli_failure(w3, env, 2, "fling: submit: bad --wait '5s'");
    expect_cli_failure(w4, env, 2, "fling: submit: --wait and --detach exclude each other");
    expect_cli_failure(w5, env, 2, "fling: submit: --on-disconnect needs --wait");
    expect_cli_failure(w6, env, 2, "fling: submit: bad --on-disconnect 'maybe'");
    expect_cli_failure(w7, env, 2, "fling: status: --prefix needs --redis");
    expect_cli_failure(w8, env, 2, "fling: watch: unexpected argument 'extra'");
    expect_cli_failure(w9, env, 2, "fling: watch: bad --count '0'");
    expect_cli_failure(w10, env, 2, "fling: watch: bad --type 'a b'");
    expect_cli_failure(w11, env, 2, "fling: watch: expected redis://");
    expect_cli_failure(w12, env, 2, "fling: list: option --redis does not apply");

    flh_cli r;
    char *help[] = { "fling", "list", "--help", NULL };
    run_cli(&r, help, env);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "usage: fling"));
    char *version[] = { "fling", "--version", NULL };
    run_cli(&r, version, env);
    assert_int_equal(r.status, 0);
    assert_int_equal(strncmp(r.out, "fling ", 6), 0);
}

static void test_cli_connection_failure(void **state)
{
    (void)state;
    struct sockaddr_in in = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof in;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&in, sizeof in), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&in, &len), 0);
    char url_env[80], url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", ntohs(in.sin_port));
    snprintf(url_env, sizeof url_env, "FLING_URL=%s", url);
    char *env[] = { url_env, NULL };
    char *submit[] = { "fling", "submit", "echo", "hi", NULL };
    char *status[] = { "fling", "status", "1", NULL };
    char *fire[] = { "fling", "submit", "--detach", "echo", "hi", NULL };
    char refused[128];
    snprintf(refused, sizeof refused, "fling: status: could not connect to %s: %s", url,
             strerror(ECONNREFUSED));
    expect_cli_failure(submit, env, 3, "fling: submit: could not connect to http://127.0.0.1:");
    expect_cli_failure(status, env, 3, refused);
    expect_cli_failure(fire, env, 3, "fling: submit: could not connect");
    char *plain_env[] = { NULL };
    char *with_url[] = { "fling", "list", "--url", url, NULL };
    expect_cli_failure(with_url, plain_env, 3, "fling: list: could not connect");
    close(fd);
}

/* A host name that cannot resolve is its own message, apart from a refused connection. */
static void test_cli_resolve_failure(void **state)
{
    (void)state;
    char url_env[128];
    snprintf(url_env, sizeof url_env, "FLING_URL=http://%s:1", UNRESOLVABLE_HOST);
    char *env[] = { url_env, NULL };
    char *status[] = { "fling", "status", "1", NULL };
    char *fire[] = { "fling", "submit", "--detach", "echo", "hi", NULL };
    expect_cli_failure(status, env, 3, "fling: status: cannot resolve the host of http://a");
    expect_cli_failure(fire, env, 3, "fling: submit: cannot resolve the host of http://a");
}

/* The CLI against the scripted server: the id on stdout, a daemon error as one line. */
static void test_cli_submit_and_error_reply(void **state)
{
    (void)state;
    static const step steps[] = { { ACCEPTED_42, THEN_KEEP, 0 }, { NOT_FOUND, THEN_KEEP, 0 },
                                  { "HTTP/1.1 200 OK\r\nContent-Length: 47\r\n\r\n"
                                    "{\"jobs\":[{\"id\":\"5\",\"type\":\"echo\"}],\"next\":null}",
                                    THEN_KEEP, 0 } };
    server s;
    server_start(&s, 0, steps, 3);
    char url[160];
    server_url(&s, url, sizeof url);
    char *env[] = { "FLING_TOKEN=sekrit", NULL };
    flh_cli r;
    char *ok[] = { "fling", "submit", "echo", "hello", "--url", url, "--priority", "-2",
                   "--delay", "1.5", NULL };
    run_cli(&r, ok, env);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.out, "42\n");
    assert_string_equal(r.err, "");
    char *nf[] = { "fling", "--url", url, "submit", "x", "-", NULL };   /* payload from stdin */
    run_cli(&r, nf, env);
    assert_int_equal(r.status, 1);
    assert_string_equal(r.err, "fling: submit: 404 unknown_type: no job type \"x\"\n");
    char *list[] = { "fling", "--url", url, "list", "--state", "queued", "--after", "9", NULL };
    run_cli(&r, list, env);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.out, "ID\tTYPE\tSTATE\tSTATUS\tATTEMPTS\tCREATED_AT\tRUN_AT\n"
                               "5\techo\t-\t-\t-\t-\t-\n");
    server_stop(&s, 100);
    assert_int_equal(s.requests, 3);
    static const char first[] =
        "POST /v1/jobs/echo HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Length: 5\r\n"
        "Authorization: Bearer sekrit\r\nFling-Delay: 1.5\r\nFling-Priority: -2\r\n\r\nhello";
    char want[512];
    int n = snprintf(want, sizeof want, first, s.port);
    assert_true(s.log_len > (size_t)n);
    assert_memory_equal(s.log, want, (size_t)n);
    assert_true(log_has(&s, "POST /v1/jobs/x HTTP/1.1\r\n"));
    assert_true(log_has(&s, "Content-Length: 0\r\nAuthorization"));
    assert_true(log_has(&s, "GET /v1/jobs?state=queued&after=9 HTTP/1.1\r\n"));
    server_free(&s);
}

/* submit --wait against canned replies: the job's JSON and exit 0 or 4 on a 200, the id and
 * exit 5 on a 202; the headers it sent. */
static void test_cli_submit_wait(void **state)
{
    (void)state;
    static const step steps[] = {
        { JOB_REPLY("succeeded", "null", "0"), THEN_CLOSE, 0 },
        { JOB_REPLY("failed", "\"exit code 3\"", "3"), THEN_CLOSE, 0 },
        { JOB_REPLY("cancelled", "null", "null"), THEN_CLOSE, 0 },
        { RUNNING_42, THEN_CLOSE, 0 },
    };
    server s;
    server_start(&s, 0, steps, 4);
    char url[160];
    server_url(&s, url, sizeof url);
    char *env[] = { NULL };
    flh_cli r;

    char *ok[] = { "fling", "--url", url, "submit", "echo", "hi", "--wait", NULL };
    run_cli(&r, ok, env);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.err, "");
    json_t *j = json_loads(r.out, 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "state")), "succeeded");
    assert_string_equal(json_string_value(json_object_get(j, "id")), "42");
    json_decref(j);

    char *failed[] = { "fling", "--url", url, "submit", "echo", "hi", "--wait=5",
                       "--on-disconnect", "cancel", NULL };
    run_cli(&r, failed, env);
    assert_int_equal(r.status, 4);
    assert_string_equal(r.err, "fling: submit: job 42 failed: exit code 3\n");
    assert_non_null(strstr(r.out, "\"failed\""));

    char *cancelled[] = { "fling", "--url", url, "submit", "echo", "--wait=5", NULL };
    run_cli(&r, cancelled, env);
    assert_int_equal(r.status, 4);
    assert_string_equal(r.err, "fling: submit: job 42 cancelled\n");

    char *running[] = { "fling", "--url", url, "submit", "echo", "--wait=5", NULL };
    run_cli(&r, running, env);
    assert_int_equal(r.status, 5);
    assert_string_equal(r.out, "42\n");
    assert_string_equal(r.err, "fling: submit: job 42 still running after 5 s (state running)\n");

    server_stop(&s, 50);
    assert_int_equal(s.requests, 4);
    assert_true(log_has(&s, "Content-Length: 2\r\nPrefer: wait=60\r\n\r\nhi"));
    assert_true(log_has(&s, "Prefer: wait=5\r\nFling-On-Disconnect: cancel\r\n\r\nhi"));
    server_free(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_client_new_urls),
        cmocka_unit_test(test_fire_sends_exact_bytes_then_fin),
        cmocka_unit_test(test_fire_refuses_bad_input_without_connecting),
        cmocka_unit_test(test_fire_to_server_that_does_not_read),
        cmocka_unit_test(test_submit_202_and_keep_alive),
        cmocka_unit_test(test_submit_error_reply),
        cmocka_unit_test(test_submit_bad_replies),
        cmocka_unit_test(test_request_get_and_delete),
        cmocka_unit_test(test_submit_reconnects_after_idle_close),
        cmocka_unit_test(test_submit_reconnects_after_idle_reset),
        cmocka_unit_test(test_submit_never_resends),
        cmocka_unit_test(test_submit_reply_timeout),
        cmocka_unit_test(test_submit_reads_early_413_after_drain),
        cmocka_unit_test(test_submit_reads_413_after_failed_send),
        cmocka_unit_test(test_connection_refused_is_quick),
        cmocka_unit_test(test_unresolvable_host),
        cmocka_unit_test(test_connect_timeout),
        cmocka_unit_test(test_unix_connect_timeout),
        cmocka_unit_test(test_no_sigpipe_on_reset),
        cmocka_unit_test(test_unix_socket),
        cmocka_unit_test(test_submit_shared_by_threads),
        cmocka_unit_test(test_submit_wait),
        cmocka_unit_test(test_submit_wait_refused),
        cmocka_unit_test(test_cli_usage_errors),
        cmocka_unit_test(test_cli_connection_failure),
        cmocka_unit_test(test_cli_resolve_failure),
        cmocka_unit_test(test_cli_submit_and_error_reply),
        cmocka_unit_test(test_cli_submit_wait),
    };
    return cmocka_run_group_tests_name("client", tests, NULL, NULL);
}
