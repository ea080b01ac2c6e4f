/* sink.c — the bare reference server of bench/compare: what the cheapest libev server on this
 * machine costs for the very connections flingd gets, so flingd's figures can be read against
 * the floor set by the kernel, loopback and the client. Four modes:
 *   http:  keep-alive HTTP/1.1; every whole request (parsed by llhttp, as flingd parses) gets the
 *          same prebuilt 202 and is forgotten. Nothing is stored, nothing is fsynced.
 *   fsync: http, but under flingd's rule for an ack: the loop never waits for a disk, and no 202
 *          goes out before the fdatasync of its request. A writer thread appends the bodies the
 *          loop handed it since its last flush to --file (written over in a 16 MiB ring, as a
 *          WAL is reused), fdatasyncs, and hands the replies back (ev_async). What this costs
 *          beyond http is the least that flingd's two threads cost beyond it, without a database.
 *          A client that closes after its requests (fire-and-forget) is closed once their 202s
 *          went, as flingd does.
 *   write: fsync without the fdatasync: what durability = normal must do at least.
 *   fire:  accept, read until EOF, close: the connect-write-close ceiling of fire-and-forget.
 * Listens on 127.0.0.1 port 0 (and on --unix PATH), writes {"pid":P,"port":N} to --ready-file
 * once it listens, runs until SIGTERM or SIGINT.
 *
 * DESIGN: one loop thread, one libev loop, one ev_io per connection; a connection owns its parser
 * and counts the replies it owes, so pipelined requests are answered in order. In fsync and write
 * modes each read's requests go to the writer at once, as flingd pushes its ops, and the writer
 * takes every batch queued when it wakes: one flush for all of them. */
#include <errno.h>
#include <fcntl.h>
#include <ev.h>
#include <getopt.h>
#include <llhttp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define LISTEN_BACKLOG 4096       /* flingd's */
#define READ_CHUNK 16384

/* What flingd answers to a submit, give or take the id's digits; the length is the body's. */
#define REPLY_BODY "{\"id\":\"1\",\"state\":\"queued\"}\n"
static const char REPLY[] = "HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\n"
                            "Content-Length: 28\r\n\r\n" REPLY_BODY;
_Static_assert(sizeof REPLY_BODY - 1 == 28, "Content-Length must be the body's length");

typedef struct sink_conn {
    ev_io io;                     /* first: the watcher's address is the connection's */
    llhttp_t parser;              /* all modes but fire */
    unsigned long owed;           /* whole requests whose reply may go, not yet answered */
    size_t reply_off;             /* bytes of the first owed reply already sent */
    unsigned long staged;         /* fsync, write: whole requests of this read, not yet handed */
    unsigned long flushing;       /* fsync, write: in batches handed to the writer, not yet back */
    int closed;                   /* fsync, write: its socket is closed; freed once flushing is 0 */
    int eof;                      /* fsync, write: the client is done sending; closed once its
                                   * last reply went (what flingd does for a fire-and-forget one) */
} sink_conn;

enum { MODE_HTTP, MODE_FSYNC, MODE_WRITE, MODE_FIRE };
#define THREADED(m) ((m) == MODE_FSYNC || (m) == MODE_WRITE)   /* a writer thread writes --file */
static int mode = MODE_HTTP;
static llhttp_settings_t settings;

/* ---- fsync and write modes: the batches between the loop and the writer ---------------- */

#define RING_BYTES (16u << 20)

typedef struct batch_entry {
    sink_conn *conn;
    unsigned long n;              /* its whole requests in this batch */
} batch_entry;

typedef struct batch {
    struct batch *next;
    char *bytes;                  /* the bodies, as received */
    size_t len, cap;
    batch_entry *ents;
    size_t n_ents, cap_ents;
} batch;

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;            /* the writer: queued, or stop */
    batch *queued, *queued_tail;  /* under mu: handed to the writer */
    batch *flushed, *flushed_tail;   /* under mu: flushed, for the loop */
    int stop;
    int fd;                       /* --file: the writer's only */
    off_t off;
    batch *gathering;             /* the loop's own: the bodies of the read being parsed */
    ev_async done;
    struct ev_loop *loop;
} fs = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };

/* grow makes *p, an array of *cap elements of size bytes, hold at least need: 0, or -1 out of
 * memory (*p untouched). */
static int grow(void **p, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap)
        return 0;
    size_t cap2 = *cap ? *cap * 2 : 64;
    while (cap2 < need)
        cap2 *= 2;
    void *q = realloc(*p, cap2 * size);
    if (!q)
        return -1;
    *p = q;
    *cap = cap2;
    return 0;
}

/* gathering: the batch this read's bodies and requests go into (NULL out of memory). */
static batch *gathering(void)
{
    if (!fs.gathering)
        fs.gathering = calloc(1, sizeof(batch));
    return fs.gathering;
}

/* append links the batches first .. last at the end of the list head .. tail (under mu). */
static void append(batch **head, batch **tail, batch *first, batch *last)
{
    if (*tail)
        (*tail)->next = first;
    else
        *head = first;
    *tail = last;
}

static void batch_free(batch *b)
{
    free(b->bytes);
    free(b->ents);
    free(b);
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    batch *b = gathering();

    (void)p;
    if (!b || grow((void **)&b->bytes, &b->cap, b->len + len, 1))
        return -1;   /* out of memory: the connection closes */
    memcpy(b->bytes + b->len, at, len);
    b->len += len;
    return 0;
}

/* hand gives the writer c's whole requests of this read, as flingd pushes each request's op
 * as soon as it is read: -1 out of memory. */
static int hand(sink_conn *c)
{
    batch *b = gathering();

    if (!c->staged)
        return 0;
    if (!b || grow((void **)&b->ents, &b->cap_ents, b->n_ents + 1, sizeof *b->ents))
        return -1;
    b->ents[b->n_ents++] = (batch_entry){ c, c->staged };
    c->flushing += c->staged;
    c->staged = 0;
    fs.gathering = NULL;
    pthread_mutex_lock(&fs.mu);
    append(&fs.queued, &fs.queued_tail, b, b);
    pthread_cond_signal(&fs.cv);
    pthread_mutex_unlock(&fs.mu);
    return 0;
}

/* flush writes every byte of the batches from first on at the ring's offset, then (fsync mode)
 * fdatasyncs: 0 or -1 (said on stderr: the replies go anyway, this is a bench). */
static int flush(batch *first)
{
    for (batch *b = first; b; b = b->next) {
        for (size_t done = 0; done < b->len;) {
            if (fs.off >= (off_t)RING_BYTES)
                fs.off = 0;
            size_t n = b->len - done;
            if (n > RING_BYTES - (size_t)fs.off)
                n = RING_BYTES - (size_t)fs.off;
            ssize_t w = pwrite(fs.fd, b->bytes + done, n, fs.off);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0) {
                perror("sink: pwrite");
                return -1;
            }
            done += (size_t)w;
            fs.off += w;
        }
    }
    if (mode == MODE_FSYNC && fdatasync(fs.fd) < 0) {
        perror("sink: fdatasync");
        return -1;
    }
    return 0;
}

static void *writer_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&fs.mu);
    for (;;) {
        while (!fs.queued && !fs.stop)
            pthread_cond_wait(&fs.cv, &fs.mu);
        if (!fs.queued)
            break;
        batch *first = fs.queued, *last = fs.queued_tail;
        fs.queued = fs.queued_tail = NULL;
        pthread_mutex_unlock(&fs.mu);
        flush(first);
        pthread_mutex_lock(&fs.mu);
        append(&fs.flushed, &fs.flushed_tail, first, last);
        pthread_mutex_unlock(&fs.mu);
        ev_async_send(fs.loop, &fs.done);
        pthread_mutex_lock(&fs.mu);
    }
    pthread_mutex_unlock(&fs.mu);
    return NULL;
}

/* ring_open creates --file as RING_BYTES of zeros, on disk, so that the writer's writes only
 * ever replace data (no block allocation, no size change in its fdatasyncs): -1 on error. */
static int ring_open(const char *path)
{
    static const char zeros[65536];

    fs.fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fs.fd < 0) {
        perror("sink: --file");
        return -1;
    }
    for (size_t off = 0; off < RING_BYTES; off += sizeof zeros)
        if (write(fs.fd, zeros, sizeof zeros) != (ssize_t)sizeof zeros) {
            perror("sink: --file");
            return -1;
        }
    return fsync(fs.fd);
}

static void conn_close(struct ev_loop *loop, sink_conn *c);
static int conn_flush(struct ev_loop *loop, sink_conn *c);
static int conn_done(const sink_conn *c);

/* done_cb (ev_async, the writer flushed): the replies of those requests may go. */
static void done_cb(struct ev_loop *loop, ev_async *w, int revents)
{
    (void)w;
    (void)revents;
    pthread_mutex_lock(&fs.mu);
    batch *b = fs.flushed;
    fs.flushed = fs.flushed_tail = NULL;
    pthread_mutex_unlock(&fs.mu);
    while (b) {
        batch *next = b->next;
        for (size_t i = 0; i < b->n_ents; i++) {
            sink_conn *c = b->ents[i].conn;
            c->flushing -= b->ents[i].n;
            if (c->closed) {
                if (!c->flushing)
                    free(c);
                continue;
            }
            c->owed += b->ents[i].n;
            if (conn_flush(loop, c) < 0 || conn_done(c))
                conn_close(loop, c);
        }
        batch_free(b);
        b = next;
    }
}

/* ---- connections ----------------------------------------------------------------------- */

static void conn_close(struct ev_loop *loop, sink_conn *c)
{
    ev_io_stop(loop, &c->io);
    close(c->io.fd);
    c->closed = 1;
    if (!c->flushing)
        free(c);   /* else the last batch back that names it frees it */
}

/* conn_done: whether c, at EOF, has nothing left to flush or send. */
static int conn_done(const sink_conn *c)
{
    return c->eof && !c->flushing && !c->owed;
}

static int on_message_complete(llhttp_t *p)
{
    sink_conn *c = p->data;

    if (THREADED(mode))
        c->staged++;
    else
        c->owed++;
    return 0;
}

/* conn_flush sends the owed replies; 0, or -1 if the connection is dead. It waits for EV_WRITE
 * only when the socket's buffer is full. */
static int conn_flush(struct ev_loop *loop, sink_conn *c)
{
    while (c->owed > 0) {
        ssize_t n = send(c->io.fd, REPLY + c->reply_off, sizeof REPLY - 1 - c->reply_off,
                         MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            break;
        if (n < 0)
            return -1;
        c->reply_off += (size_t)n;
        if (c->reply_off == sizeof REPLY - 1) {
            c->reply_off = 0;
            c->owed--;
        }
    }
    int want = (c->eof ? 0 : EV_READ) | (c->owed ? EV_WRITE : 0);
    if ((c->io.events & (EV_READ | EV_WRITE)) != want || !want) {
        ev_io_stop(loop, &c->io);
        ev_io_set(&c->io, c->io.fd, want);
        if (want)
            ev_io_start(loop, &c->io);
    }
    return 0;
}

static void conn_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    sink_conn *c = (sink_conn *)w;
    char buf[READ_CHUNK];
    if ((revents & EV_WRITE) && (conn_flush(loop, c) < 0 || conn_done(c))) {
        conn_close(loop, c);
        return;
    }
    if (!(revents & EV_READ))
        return;
    for (;;) {
        ssize_t n = recv(w->fd, buf, sizeof buf, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            break;
        if (n == 0 && THREADED(mode) && (c->staged || c->flushing)) {
            c->eof = 1;   /* its replies go once flushed, then it closes */
            break;
        }
        if (n <= 0 || (mode != MODE_FIRE && llhttp_execute(&c->parser, buf, (size_t)n) != HPE_OK)) {
            conn_close(loop, c);  /* EOF, error, or a request we cannot parse */
            return;
        }
        if ((size_t)n < sizeof buf)
            break;  /* the socket is drained: save the recv that would say EAGAIN */
    }
    if ((THREADED(mode) && hand(c) < 0) || (mode != MODE_FIRE && conn_flush(loop, c) < 0) ||
        conn_done(c))
        conn_close(loop, c);
}

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    for (;;) {
        int fd = accept4(w->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
                perror("sink: accept");
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);  /* fails harmlessly on Unix */
        sink_conn *c = calloc(1, sizeof *c);
        if (!c) {
            close(fd);
            continue;
        }
        if (mode != MODE_FIRE) {
            llhttp_init(&c->parser, HTTP_REQUEST, &settings);
            c->parser.data = c;
        }
        ev_io_init(&c->io, conn_cb, fd, EV_READ);
        ev_io_start(loop, &c->io);
    }
}

/* listen_on binds and listens a non-blocking socket; its fd or -1 (said on stderr). */
static int listen_on(const struct sockaddr *addr, socklen_t len)
{
    int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, addr, len) < 0 || listen(fd, LISTEN_BACKLOG) < 0) {
        perror("sink: listen");
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

static int listen_tcp(int *port)
{
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof sin;
    int fd = listen_on((struct sockaddr *)&sin, sizeof sin);
    if (fd >= 0 && getsockname(fd, (struct sockaddr *)&sin, &len) == 0)
        *port = ntohs(sin.sin_port);
    return fd;
}

static int listen_unix(const char *path)
{
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof sun.sun_path) {
        fprintf(stderr, "sink: --unix path too long: %s\n", path);
        return -1;
    }
    strcpy(sun.sun_path, path);
    unlink(path);  /* a stale socket of an earlier run */
    return listen_on((struct sockaddr *)&sun, sizeof sun);
}

static int write_ready(const char *path, int port)
{
    FILE *f = fopen(path, "w");
    if (!f || fprintf(f, "{\"pid\":%ld,\"port\":%d}\n", (long)getpid(), port) < 0 || fclose(f)) {
        perror("sink: --ready-file");
        return -1;
    }
    return 0;
}

static void stop_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)w;
    (void)revents;
    ev_break(loop, EVBREAK_ALL);
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "mode", required_argument, 0, 'm' }, { "unix", required_argument, 0, 'u' },
        { "ready-file", required_argument, 0, 'r' }, { "file", required_argument, 0, 'f' },
        { 0, 0, 0, 0 }
    };
    static const char *const modes[] = { [MODE_HTTP] = "http", [MODE_FSYNC] = "fsync",
                                         [MODE_WRITE] = "write", [MODE_FIRE] = "fire" };
    const char *unix_path = NULL, *ready = NULL, *file = NULL;
    int ch, m = -1;
    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        if (ch == 'm') {
            for (m = MODE_FIRE; m >= 0 && strcmp(optarg, modes[m]) != 0; m--)
                ;
            if (m < 0)
                break;
            mode = m;
        } else if (ch == 'u')
            unix_path = optarg;
        else if (ch == 'r')
            ready = optarg;
        else if (ch == 'f')
            file = optarg;
        else
            break;
    }
    if (ch != -1 || optind != argc || THREADED(mode) != (file != NULL)) {
        fprintf(stderr, "usage: sink [--mode http|fire|fsync|write --file PATH] [--unix PATH]"
                        " [--ready-file PATH]\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    llhttp_settings_init(&settings);
    settings.on_message_complete = on_message_complete;

    struct ev_loop *loop = EV_DEFAULT;
    pthread_t writer;
    if (THREADED(mode)) {
        settings.on_body = on_body;
        if (ring_open(file) < 0)
            return 1;
        fs.loop = loop;
        ev_async_init(&fs.done, done_cb);
        ev_async_start(loop, &fs.done);
        if ((errno = pthread_create(&writer, NULL, writer_main, NULL))) {
            perror("sink: the writer thread");
            return 1;
        }
    }
    int port = 0, tcp_fd = listen_tcp(&port), unix_fd = unix_path ? listen_unix(unix_path) : -1;
    if (tcp_fd < 0 || (unix_path && unix_fd < 0) || (ready && write_ready(ready, port) < 0))
        return 1;
    ev_io tcp_w, unix_w;
    ev_signal term_w, int_w;
    ev_io_init(&tcp_w, accept_cb, tcp_fd, EV_READ);
    ev_io_start(loop, &tcp_w);
    if (unix_fd >= 0) {
        ev_io_init(&unix_w, accept_cb, unix_fd, EV_READ);
        ev_io_start(loop, &unix_w);
    }
    ev_signal_init(&term_w, stop_cb, SIGTERM);
    ev_signal_start(loop, &term_w);
    ev_signal_init(&int_w, stop_cb, SIGINT);
    ev_signal_start(loop, &int_w);
    ev_run(loop, 0);
    if (THREADED(mode)) {
        pthread_mutex_lock(&fs.mu);
        fs.stop = 1;
        pthread_cond_signal(&fs.cv);
        pthread_mutex_unlock(&fs.mu);
        pthread_join(writer, NULL);
    }
    if (unix_path)
        unlink(unix_path);
    return 0;
}
