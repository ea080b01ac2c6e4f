/* test_sse.c — GET /v1/events against a real flingd: a job's whole life arrives in commit
 * order through the type and state filters, Last-Event-ID resumes without a loss, a consumer
 * that never reads is dropped while flingd's memory stays bounded, the token guards the
 * route (for `fling watch` too), and `fling watch` without --redis follows the stream. */
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "harness.h"

#define TYPES "[type.n]\nhandler = noop\n[type.m]\nhandler = noop\n"

/* ---- a small SSE reader over a raw socket ----------------------------------------------- */

typedef struct sse {
    int fd;
    char buf[1 << 16];
    size_t len;
} sse;

typedef struct sse_event {
    unsigned long long id;
    char name[32];
    json_t *data;          /* caller decrefs */
} sse_event;

/* A TCP connection to port whose receive buffer is rcvbuf bytes (0: the default). */
static int connect_rcvbuf(int port, int rcvbuf)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    if (fd < 0 || (rcvbuf && setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf) < 0) ||
        connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

/* Opens GET path with extra header lines (each ending in CRLF) over a connection with receive
 * buffer rcvbuf (0: default) and reads the head: its status. */
static int sse_open_buf(sse *s, int port, const char *path, const char *headers, int rcvbuf)
{
    char req[1024];
    s->len = 0;
    s->fd = connect_rcvbuf(port, rcvbuf);
    if (s->fd < 0)
        return -1;
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\n", path, headers ? headers : "");
    if (flh_send_all(s->fd, req, (size_t)n) < 0)
        return -1;
    double end = flh_now() + 10;
    char *eoh;
    while (!(eoh = memmem(s->buf, s->len, "\r\n\r\n", 4))) {
        struct pollfd p = { s->fd, POLLIN, 0 };
        if (flh_now() > end || poll(&p, 1, 100) < 0)
            return -1;
        if (!p.revents)
            continue;
        ssize_t k = recv(s->fd, s->buf + s->len, sizeof s->buf - s->len, 0);
        if (k <= 0)
            return -1;
        s->len += (size_t)k;
    }
    int status = 0;
    sscanf(s->buf, "HTTP/1.1 %d", &status);
    size_t head = (size_t)(eoh + 4 - s->buf);
    memmove(s->buf, s->buf + head, s->len - head);
    s->len -= head;
    return status;
}

static int sse_open(sse *s, int port, const char *path, const char *headers)
{
    return sse_open_buf(s, port, path, headers, 0);
}

/* Reads the next event (comments skipped) within timeout_ms: 1, 0 on timeout, -1 on EOF. */
static int sse_next(sse *s, sse_event *ev, int timeout_ms)
{
    double end = flh_now() + timeout_ms / 1000.0;
    for (;;) {
        char *eof = memmem(s->buf, s->len, "\n\n", 2);
        if (eof) {
            *eof = '\0';
            memset(ev, 0, sizeof *ev);
            int got = 0;
            for (char *line = s->buf, *nl; line; line = nl) {
                nl = strchr(line, '\n');
                if (nl)
                    *nl++ = '\0';
                if (strncmp(line, "id: ", 4) == 0)
                    ev->id = strtoull(line + 4, NULL, 10);
                else if (strncmp(line, "event: ", 7) == 0)
                    snprintf(ev->name, sizeof ev->name, "%s", line + 7);
                else if (strncmp(line, "data: ", 6) == 0 && (ev->data = json_loads(line + 6, 0, NULL)))
                    got = 1;
            }
            size_t used = (size_t)(eof + 2 - s->buf);
            memmove(s->buf, s->buf + used, s->len - used);
            s->len -= used;
            if (got)
                return 1;
            continue;   /* a comment (": ping", ": gap ...") */
        }
        int left = (int)((end - flh_now()) * 1000);
        if (left <= 0)
            return 0;
        struct pollfd p = { s->fd, POLLIN, 0 };
        if (poll(&p, 1, left) <= 0)
            continue;
        ssize_t k = recv(s->fd, s->buf + s->len, sizeof s->buf - s->len - 1, 0);
        if (k <= 0)
            return -1;
        s->len += (size_t)k;
    }
}

static const char *jstr(json_t *o, const char *k) { return json_string_value(json_object_get(o, k)); }

/* Submits one job of type with an empty body: its id (malloc'd), or NULL. */
static char *submit(const flh_daemon *d, const char *type, const char *headers)
{
    size_t len;
    char *req = flh_submit_req(type, "x", 1, headers, &len);
    int fd = flh_connect_tcp(d->port);
    char buf[4096];
    char *id = NULL;
    if (fd >= 0 && flh_send_all(fd, req, len) == 0 && flh_read_reply(fd, buf, sizeof buf, 10000) == 202) {
        char *p = strstr(buf, "\"id\":\"");
        if (p)
            id = strndup(p + 6, strcspn(p + 6, "\""));
    }
    if (fd >= 0)
        close(fd);
    free(req);
    return id;
}

/* Reads the replies to n pipelined submits: each ends with its JSON body's '}', and no head
 * holds one. 0, or -1 on EOF or after 10 s. */
static int read_replies(int fd, int n)
{
    char buf[8192];
    double end = flh_now() + 10;
    while (n > 0 && flh_now() < end) {
        struct pollfd p = { fd, POLLIN, 0 };
        if (poll(&p, 1, 100) <= 0)
            continue;
        ssize_t k = recv(fd, buf, sizeof buf, 0);
        if (k <= 0)
            return -1;
        for (ssize_t i = 0; i < k; i++)
            n -= buf[i] == '}';
    }
    return n == 0 ? 0 : -1;
}

/* Submits n jobs of type over one keep-alive connection, in pipelined batches: 0 or -1. */
static int submit_many(const flh_daemon *d, const char *type, int n)
{
    size_t len;
    char *req = flh_submit_req(type, "x", 1, NULL, &len);
    int fd = flh_connect_tcp(d->port);
    int rc = fd < 0 ? -1 : 0;
    for (int done = 0; rc == 0 && done < n;) {
        int batch = n - done < 64 ? n - done : 64;
        for (int i = 0; rc == 0 && i < batch; i++)
            rc = flh_send_all(fd, req, len);
        if (rc == 0)
            rc = read_replies(fd, batch);
        done += batch;
    }
    if (fd >= 0)
        close(fd);
    free(req);
    return rc;
}

/* ---- tests ----------------------------------------------------------------------------- */

/* Reads events until job id has reached a terminal event; fills names (in arrival order) and
 * checks every event is of want_type and ids grow. Returns how many of id's events came. */
static int follow_job(sse *s, const char *id, const char *want_type, char names[][32], int max)
{
    int n = 0;
    unsigned long long last = 0;
    for (int i = 0; i < 50 && n < max; i++) {
        sse_event ev;
        if (sse_next(s, &ev, 10000) != 1)
            break;
        assert_true(ev.id > last);
        last = ev.id;
        assert_string_equal(jstr(ev.data, "type"), want_type);
        assert_string_equal(jstr(ev.data, "event"), ev.name);
        int mine = strcmp(jstr(ev.data, "id"), id) == 0;
        if (mine)
            snprintf(names[n++], 32, "%s", ev.name);
        json_decref(ev.data);
        if (mine && strcmp(names[n - 1], "succeeded") == 0)
            break;
    }
    return n;
}

static void test_life_in_order_filtered(void **state)
{
    (void)state;
    flh_daemon d;
    assert_int_equal(flh_start(&d, TYPES), 0);
    sse all, ok;
    assert_int_equal(sse_open(&all, d.port, "/v1/events?type=n", NULL), 200);
    assert_int_equal(sse_open(&ok, d.port, "/v1/events?type=n&state=succeeded,failed", NULL), 200);
    char *other = submit(&d, "m", NULL);   /* filtered out by type */
    char *id = submit(&d, "n", NULL);
    assert_non_null(other);
    assert_non_null(id);
    char names[8][32];
    assert_int_equal(follow_job(&all, id, "n", names, 8), 3);
    assert_string_equal(names[0], "submitted");
    assert_string_equal(names[1], "started");
    assert_string_equal(names[2], "succeeded");
    assert_int_equal(follow_job(&ok, id, "n", names, 8), 1);
    assert_string_equal(names[0], "succeeded");
    close(all.fd);
    close(ok.fd);
    free(other);
    free(id);
    assert_int_equal(flh_stop(&d), 0);
}

/* Collects up to max event ids from s until timeout_ms passes without one. */
static int collect_ids(sse *s, unsigned long long *ids, int max, int timeout_ms)
{
    int n = 0;
    sse_event ev;
    while (n < max && sse_next(s, &ev, timeout_ms) == 1) {
        ids[n++] = ev.id;
        json_decref(ev.data);
    }
    return n;
}

static void test_resume_loses_nothing(void **state)
{
    (void)state;
    flh_daemon d;
    assert_int_equal(flh_start(&d, TYPES), 0);
    sse whole, part;
    assert_int_equal(sse_open(&whole, d.port, "/v1/events", NULL), 200);
    assert_int_equal(sse_open(&part, d.port, "/v1/events", NULL), 200);
    assert_int_equal(submit_many(&d, "n", 5), 0);
    static unsigned long long a[4000], b[4000];
    int na = collect_ids(&whole, a, 4000, 2000);
    assert_int_equal(na, 15);   /* 5 jobs, 3 events each */
    sse_event ev;
    assert_int_equal(sse_next(&part, &ev, 5000), 1);   /* the part reader leaves after its first */
    json_decref(ev.data);
    close(part.fd);
    assert_int_equal(submit_many(&d, "n", 300), 0);
    int more = collect_ids(&whole, a + na, 4000 - na, 3000);
    na += more;
    assert_int_equal(na, 15 + 900);
    char hdr[64];
    snprintf(hdr, sizeof hdr, "Last-Event-ID: %llu\r\n", ev.id);
    assert_int_equal(sse_open(&part, d.port, "/v1/events", hdr), 200);
    int nb = collect_ids(&part, b, 4000, 2000);
    assert_int_equal(nb, na - 1);
    for (int i = 0; i < nb; i++)
        assert_true(b[i] == a[i + 1]);
    close(part.fd);
    /* an id older than the ring (here: before this daemon) gets all the ring has */
    assert_int_equal(sse_open(&part, d.port, "/v1/events", "Last-Event-ID: 1\r\n"), 200);
    assert_int_equal(collect_ids(&part, b, 4000, 2000), na);
    assert_true(b[0] == a[0]);
    close(part.fd);
    close(whole.fd);
    assert_int_equal(flh_stop(&d), 0);
}

/* What the ring (at most FL_EVENTS_RING_BYTES) and the allocator may add. ASan keeps freed
 * blocks in quarantine (256 MiB by default), and TSan shadows every allocation: there RSS
 * shows what was allocated at all. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define RSS_GROWTH_MAX_KIB (256 * 1024)
#else
#define RSS_GROWTH_MAX_KIB (24 * 1024)
#endif

static void test_slow_consumer_dropped(void **state)
{
    (void)state;
    flh_daemon d;
    assert_int_equal(flh_start(&d, "[server]\nmax_stream_buffer = 4096\n" TYPES), 0);
    /* A small receive window: the kernel holds little of what the stream sends. */
    sse slow;
    assert_int_equal(sse_open_buf(&slow, d.port, "/v1/events", NULL, 2048), 200);
    /* a reader that keeps up, to show the drop is per stream */
    sse fast;
    assert_int_equal(sse_open(&fast, d.port, "/v1/events?state=succeeded", NULL), 200);
    long before = flh_rss_kib(d.pid);
    assert_true(before > 0);
    long dropped = 0;
    /* Small rounds: the reader that keeps up must never have more than a socket buffer's worth
     * outstanding, while the slow one falls behind by 4 KiB within the first round or two. */
    for (int round = 0; round < 80 && dropped < 1; round++) {
        assert_int_equal(submit_many(&d, "n", 40), 0);
        sse_event ev;
        while (sse_next(&fast, &ev, 50) == 1)
            json_decref(ev.data);
        dropped = flh_metric(&d, "fling_event_streams_dropped_total");
    }
    assert_int_equal(dropped, 1);
    /* Well past the drop: the stream's memory is gone, only the ring (bounded) grew. */
    assert_int_equal(submit_many(&d, "n", 2000), 0);
    long after = flh_rss_kib(d.pid);
    printf("flingd RSS %ld KiB -> %ld KiB\n", before, after);
    assert_true(after - before < RSS_GROWTH_MAX_KIB);
    assert_int_equal(flh_metric(&d, "fling_event_streams_open"), 1);
    assert_true(flh_log_count(&d, "event stream closed: too slow") == 1);
    /* the dropped stream ends with EOF once what the kernel holds is read */
    sse_event ev;
    int r;
    double end = flh_now() + 20;
    while ((r = sse_next(&slow, &ev, 1000)) != -1 && flh_now() < end)
        if (r == 1)
            json_decref(ev.data);
    assert_int_equal(r, -1);
    close(slow.fd);
    close(fast.fd);
    assert_int_equal(flh_stop(&d), 0);
}

static void test_token_required(void **state)
{
    (void)state;
    flh_daemon d;
    assert_int_equal(flh_start(&d, "[server]\ntoken = s3cret\n" TYPES), 0);
    sse s;
    assert_int_equal(sse_open(&s, d.port, "/v1/events", NULL), 401);
    close(s.fd);
    assert_int_equal(sse_open(&s, d.port, "/v1/events", "Authorization: Bearer wrong\r\n"), 401);
    close(s.fd);
    assert_int_equal(sse_open(&s, d.port, "/v1/events?state=nope", "Authorization: Bearer s3cret\r\n"), 400);
    close(s.fd);
    assert_int_equal(sse_open(&s, d.port, "/v1/events", "Authorization: Bearer s3cret\r\n"), 200);
    close(s.fd);
    /* fling watch without --redis reports a refused token in one line */
    char *env[] = { NULL };
    char *denied[] = { "fling", "--url", d.url, "--token", "nope", "watch", NULL };
    flh_cli r;
    assert_int_equal(flh_cli_run(&r, denied, env, 10000), 0);
    assert_true(flh_cli_failed_as(&r, 1, "fling: watch: 401 unauthorized: missing or wrong bearer token"));
    assert_int_equal(flh_stop(&d), 0);
}

/* Waits until flingd has n event streams open: 0, or -1 after 10 s. */
static int wait_streams(const flh_daemon *d, long n)
{
    for (int i = 0; i < 200; i++) {
        if (flh_metric(d, "fling_event_streams_open") == n)
            return 0;
        usleep(50 * 1000);
    }
    return -1;
}

/* fling watch without --redis follows /v1/events: the same lines as over the mirror, --type,
 * --json, --count; SIGINT and SIGTERM end it with success. */
static void test_watch_over_events(void **state)
{
    (void)state;
    flh_daemon d;
    assert_int_equal(flh_start(&d, TYPES), 0);
    char *env[] = { NULL };
    char *lines[] = { "fling", "--url", d.url, "watch", "--type", "n", "--count", "3", NULL };
    flh_child ch;
    flh_cli r;
    assert_int_equal(flh_cli_spawn(&ch, lines, env), 0);
    assert_int_equal(wait_streams(&d, 1), 0);
    char *other = submit(&d, "m", NULL);
    char *id = submit(&d, "n", NULL);
    assert_non_null(id);
    assert_int_equal(flh_cli_finish(&ch, &r, 20000), 0);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.err, "");
    char want[64];
    const char *p = r.out;
    static const char *const names[] = { " submitted ", " started ", " succeeded " };
    for (int i = 0; i < 3; i++) {
        snprintf(want, sizeof want, " %s n", id);
        const char *nl = strchr(p, '\n');
        assert_non_null(nl);
        assert_non_null(memmem(p, (size_t)(nl - p), want, strlen(want)));
        assert_non_null(memmem(p, (size_t)(nl - p), names[i], strlen(names[i])));
        p = nl + 1;
    }
    assert_string_equal(p, "");

    static const int sigs[] = { SIGINT, SIGTERM };
    for (int i = 0; i < 2; i++) {
        char *json[] = { "fling", "--url", d.url, "watch", "--json", NULL };
        assert_int_equal(flh_cli_spawn(&ch, json, env), 0);
        assert_int_equal(wait_streams(&d, 1), 0);
        free(submit(&d, "n", NULL));
        usleep(300 * 1000);
        kill(ch.pid, sigs[i]);
        assert_int_equal(flh_cli_finish(&ch, &r, 10000), 0);
        assert_int_equal(r.status, 0);
        json_t *j = json_loads(r.out, JSON_DISABLE_EOF_CHECK, NULL);
        assert_non_null(j);
        assert_string_equal(jstr(j, "event"), "submitted");
        json_decref(j);
        assert_int_equal(wait_streams(&d, 0), 0);
    }
    free(other);
    free(id);
    assert_int_equal(flh_stop(&d), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_life_in_order_filtered),
        cmocka_unit_test(test_resume_loses_nothing),
        cmocka_unit_test(test_slow_consumer_dropped),
        cmocka_unit_test(test_token_required),
        cmocka_unit_test(test_watch_over_events),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
