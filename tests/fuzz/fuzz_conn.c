/* fuzz_conn.c — libFuzzer target for the connection and request code: every input is a little
 * script of client actions played against a real fl_server (store, scheduler, listener) that
 * runs in this process, on a libev loop driven from the fuzzer's thread. See README.md for the
 * script language; in short, bytes are sent on the current connection and a NUL byte starts an
 * action (open, switch, run the loop, wait for a reply, half-close, reset, close, read).
 *
 * At the end of every input the script's connections are closed and the loop runs until the
 * server has let go of all of them, so each request's store op and reply (or discard) has
 * happened inside the input that caused it: a crash is reproduced by its own input alone. */
#include <errno.h>
#include <ev.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "server.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_SLOTS 8                 /* client connections one input may hold open at once */
#define FZ_SEND_MAX 8192           /* bytes gathered for one send (max_len is smaller) */
#define FZ_NOWAIT_RUNS 8           /* loop iterations of one 'R' action */
#define FZ_ACCEPT_WAIT 1.0         /* seconds the listener gets to accept a new TCP connection */
#define FZ_REPLY_WAIT 0.05         /* seconds a 'W' action waits for reply bytes */
#define FZ_DRAIN_MAX 5.0           /* seconds the server gets to close its side after the script ends */
#define FZ_TICK 0.001              /* EVRUN_ONCE returns at least this often while we wait */

static struct {
    int started;
    struct ev_loop *loop;
    fl_config cfg;
    fl_server *srv;
    ev_timer tick;
    int trace;                     /* FUZZ_TRACE set: print what the server sends */
    char dir[64];
} fz;

static int slots[FZ_SLOTS];
static int cur = -1;

/* ------------------------------------------------------------------ the server */

static void tick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
}

static void remove_db(void)
{
    static const char *const files[] = { "fling.db", "fling.db-wal", "fling.db-shm", "fling.db-journal" };
    char path[128];
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", fz.dir, files[i]);
        unlink(path);
    }
    rmdir(fz.dir);
}

/* Once per process: a server with the built-in noop and sleep types, its database in a fresh
 * temp dir, durability normal (no fsync per commit: inputs must stay fast). A failure here is
 * the environment's, not an input's: it aborts. */
static void server_start(void)
{
    char err[512] = "";
    signal(SIGPIPE, SIG_IGN);
    fz.trace = getenv("FUZZ_TRACE") != NULL;
    fl_log_set_level(fz.trace ? LOG_DEBUG : LOG_ERR);
    snprintf(fz.dir, sizeof fz.dir, "%s", "/tmp/fl-fuzz-XXXXXX");
    if (!mkdtemp(fz.dir) || fl_config_init(&fz.cfg) < 0) {
        perror("fuzz_conn: setup");
        abort();
    }
    atexit(remove_db);
    free(fz.cfg.db_path);
    if (asprintf(&fz.cfg.db_path, "%s/fling.db", fz.dir) < 0)
        abort();
    fz.cfg.listen_port = 0;
    fz.cfg.durability_full = 0;
    fz.loop = ev_default_loop(EVFLAG_AUTO);
    if (!fz.loop || fl_server_start(&fz.srv, fz.loop, &fz.cfg, err, sizeof err) < 0) {
        fprintf(stderr, "fuzz_conn: server start: %s\n", err);
        abort();
    }
    ev_timer_init(&fz.tick, tick_cb, FZ_TICK, FZ_TICK);
    for (int i = 0; i < FZ_SLOTS; i++)
        slots[i] = -1;
    fz.started = 1;
}

/* Runs the loop until done(arg) holds or secs have passed; returns done's last answer. */
static int run_until(int (*done)(void *), void *arg, double secs)
{
    ev_now_update(fz.loop);
    ev_tstamp end = ev_now(fz.loop) + secs;
    int ok;
    ev_timer_start(fz.loop, &fz.tick);
    while (!(ok = done(arg)) && ev_now(fz.loop) < end)
        ev_run(fz.loop, EVRUN_ONCE);
    ev_timer_stop(fz.loop, &fz.tick);
    return ok;
}

/* ------------------------------------------------------------------ the client side */

/* Counts accepts, not open connections: the server may close another one meanwhile. */
static int accepted_since(void *arg)
{
    return fl_server_metrics(fz.srv)->connections_accepted > *(uint64_t *)arg;
}

static int free_slot(void)
{
    for (int i = 0; i < FZ_SLOTS; i++)
        if (slots[i] < 0)
            return i;
    return -1;
}

/* A TCP connection through the server's listener; returns once it is accepted, so that the
 * end of the input never races an accept still in the backlog. */
static int open_tcp(void)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)fl_server_port(fz.srv)),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    uint64_t before = fl_server_metrics(fz.srv)->connections_accepted;
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        fprintf(stderr, "fuzz_conn: connect to 127.0.0.1:%d: %s\n", fl_server_port(fz.srv), strerror(errno));
        abort();
    }
    if (!run_until(accepted_since, &before, FZ_ACCEPT_WAIT)) {
        fprintf(stderr, "fuzz_conn: 127.0.0.1:%d did not accept within %.0f s\n", fl_server_port(fz.srv), FZ_ACCEPT_WAIT);
        abort();
    }
    return fd;
}

/* A Unix socketpair whose server end is handed to the connection code directly. */
static int open_pair(void)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
        return -1;
    if (fl_server_adopt(fz.srv, sv[0], 1) < 0) {
        close(sv[1]);
        return -1;
    }
    return sv[1];
}

static void open_conn(int tcp)
{
    int i = free_slot();
    if (i < 0)
        return;   /* all slots busy: the action is a no-op */
    slots[i] = tcp ? open_tcp() : open_pair();
    if (slots[i] >= 0)
        cur = i;
}

/* Reads without blocking whatever the server has sent; replies are not checked here (the
 * sanitizers and the drain bound are the oracle). FUZZ_TRACE=1 shows them, to study an input. */
static void drain_input(int fd)
{
    char buf[4096];
    ssize_t n;
    while ((n = recv(fd, buf, sizeof buf, MSG_DONTWAIT)) > 0)
        if (fz.trace)
            fprintf(stderr, "fuzz_conn: slot %d got %zd bytes:\n%.*s\n", cur, n, (int)n, buf);
}

static void send_bytes(const uint8_t *p, size_t len)
{
    if (len == 0)
        return;
    if (cur < 0)
        open_conn(1);
    if (cur < 0)
        return;
    /* Non-blocking: bytes the socket cannot take now are dropped, as a vanished client's are. */
    while (len > 0) {
        ssize_t n = send(slots[cur], p, len, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n <= 0)
            return;
        p += n;
        len -= (size_t)n;
    }
}

static int readable(void *arg)
{
    struct pollfd p = { .fd = *(int *)arg, .events = POLLIN };
    return poll(&p, 1, 0) > 0;
}

static void close_slot(int i, int reset)
{
    if (reset) {
        struct linger l = { .l_onoff = 1, .l_linger = 0 };   /* close sends RST (TCP) */
        setsockopt(slots[i], SOL_SOCKET, SO_LINGER, &l, sizeof l);
    }
    close(slots[i]);
    slots[i] = -1;
    if (cur == i)
        cur = -1;
}

static void act(uint8_t op)
{
    if (op >= '0' && op < '0' + FZ_SLOTS) {
        if (slots[op - '0'] >= 0)
            cur = op - '0';
        return;
    }
    switch (op) {
    case 'T': open_conn(1); return;
    case 'U': open_conn(0); return;
    case 'R':
        for (int i = 0; i < FZ_NOWAIT_RUNS; i++)
            ev_run(fz.loop, EVRUN_NOWAIT);
        return;
    }
    if (cur < 0)
        return;
    switch (op) {
    case 'W':
        run_until(readable, &slots[cur], FZ_REPLY_WAIT);
        drain_input(slots[cur]);
        return;
    case 'r': drain_input(slots[cur]); return;
    case 'H': shutdown(slots[cur], SHUT_WR); return;
    case 'X': close_slot(cur, 1); return;
    case 'C': close_slot(cur, 0); return;
    default: return;   /* unknown actions are no-ops, so every input is a valid script */
    }
}

static int server_let_go(void *arg)
{
    (void)arg;
    return fl_server_idle(fz.srv);
}

/* Closes what the script left open and waits for the server to close its side of every
 * connection: one that stays after every client has gone is a leak, reported as a crash. */
static void finish(void)
{
    for (int i = 0; i < FZ_SLOTS; i++)
        if (slots[i] >= 0)
            close_slot(i, 0);
    cur = -1;
    if (!run_until(server_let_go, NULL, FZ_DRAIN_MAX) && fl_server_metrics(fz.srv)->connections_open) {
        fprintf(stderr, "fuzz_conn: %zu connection(s) still open %.0f s after every client closed\n",
                fl_server_metrics(fz.srv)->connections_open, FZ_DRAIN_MAX);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t pending[FZ_SEND_MAX];
    size_t n = 0;
    if (!fz.started)
        server_start();
    for (size_t i = 0; i < size; i++) {
        int escape = data[i] == 0 && i + 1 < size;
        if (escape && data[i + 1] != 0) {
            send_bytes(pending, n);
            n = 0;
            act(data[++i]);
            continue;
        }
        i += (size_t)escape;   /* "\0\0" is one NUL byte of data */
        if (n == sizeof pending) {
            send_bytes(pending, n);
            n = 0;
        }
        pending[n++] = data[i];
    }
    send_bytes(pending, n);
    finish();
    return 0;
}
