/* sink.c — the bare reference server of bench/compare: what the cheapest libev server on this
 * machine costs for the very connections flingd gets, so flingd's figures can be read against
 * the floor set by the kernel, loopback and the client. Two modes:
 *   http: keep-alive HTTP/1.1; every whole request (parsed by llhttp, as flingd parses) gets the
 *         same prebuilt 202 and is forgotten. Nothing is stored, nothing is fsynced.
 *   fire: accept, read until EOF, close: the connect-write-close ceiling of fire-and-forget.
 * Listens on 127.0.0.1 port 0 (and on --unix PATH), writes {"pid":P,"port":N} to --ready-file
 * once it listens, runs until SIGTERM or SIGINT.
 *
 * DESIGN: one thread, one libev loop, one ev_io per connection; a connection owns its parser and
 * counts the replies it owes, so pipelined requests are answered in order. */
#include <errno.h>
#include <ev.h>
#include <getopt.h>
#include <llhttp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
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
    llhttp_t parser;              /* http mode */
    unsigned long owed;           /* whole requests not yet answered */
    size_t reply_off;             /* bytes of the first owed reply already sent */
} sink_conn;

static int http_mode = 1;
static llhttp_settings_t settings;

static void conn_close(struct ev_loop *loop, sink_conn *c)
{
    ev_io_stop(loop, &c->io);
    close(c->io.fd);
    free(c);
}

static int on_message_complete(llhttp_t *p)
{
    ((sink_conn *)p->data)->owed++;
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
    int want = EV_READ | (c->owed ? EV_WRITE : 0);
    if ((c->io.events & (EV_READ | EV_WRITE)) != want) {
        ev_io_stop(loop, &c->io);
        ev_io_set(&c->io, c->io.fd, want);
        ev_io_start(loop, &c->io);
    }
    return 0;
}

static void conn_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    sink_conn *c = (sink_conn *)w;
    char buf[READ_CHUNK];
    if ((revents & EV_WRITE) && conn_flush(loop, c) < 0) {
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
        if (n <= 0 || (http_mode && llhttp_execute(&c->parser, buf, (size_t)n) != HPE_OK)) {
            conn_close(loop, c);  /* EOF, error, or a request we cannot parse */
            return;
        }
        if ((size_t)n < sizeof buf)
            break;  /* the socket is drained: save the recv that would say EAGAIN */
    }
    if (http_mode && conn_flush(loop, c) < 0)
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
        if (http_mode) {
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
        { "ready-file", required_argument, 0, 'r' }, { 0, 0, 0, 0 }
    };
    const char *unix_path = NULL, *ready = NULL;
    int ch;
    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        if (ch == 'm' && (strcmp(optarg, "http") == 0 || strcmp(optarg, "fire") == 0))
            http_mode = strcmp(optarg, "http") == 0;
        else if (ch == 'u')
            unix_path = optarg;
        else if (ch == 'r')
            ready = optarg;
        else {
            fprintf(stderr, "usage: sink [--mode http|fire] [--unix PATH] [--ready-file PATH]\n");
            return 2;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    llhttp_settings_init(&settings);
    settings.on_message_complete = on_message_complete;

    struct ev_loop *loop = EV_DEFAULT;
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
    if (unix_path)
        unlink(unix_path);
    return 0;
}
