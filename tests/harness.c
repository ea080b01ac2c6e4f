/* harness.c — start/stop a real flingd and talk to it over real sockets (see harness.h). */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <sqlite3.h>

#include "fling.h"
#ifdef FL_POSTGRES
#include "harness_pg.h"
#endif

#define FLH_MAX_DAEMONS 16
/* Everything started and not yet stopped, for stop_all: flh_daemon * and flh_redis *. */
static void *live[FLH_MAX_DAEMONS];
static void *live_redis[FLH_MAX_DAEMONS];
static int atexit_set;

double flh_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int flh_cli_spawn(flh_child *ch, char *const argv[], char *const env[])
{
    extern char **environ;
    int out[2], err[2];
    if (pipe(out) < 0)
        return -1;
    if (pipe(err) < 0) {
        close(out[0]);
        close(out[1]);
        return -1;
    }
    ch->pid = fork();
    if (ch->pid == 0) {
        int null = open("/dev/null", O_RDONLY);
        dup2(null, 0);
        dup2(out[1], 1);
        dup2(err[1], 2);
        execve(FLING_CLI_PATH, argv, env ? env : environ);
        _exit(127);
    }
    close(out[1]);
    close(err[1]);
    ch->out = out[0];
    ch->err = err[0];
    if (ch->pid < 0) {
        close(out[0]);
        close(err[0]);
        return -1;
    }
    return 0;
}

static void drain_fd(int fd, char *buf, size_t size)
{
    size_t n = 0;
    ssize_t k;
    while (n + 1 < size && (k = read(fd, buf + n, size - 1 - n)) > 0)
        n += (size_t)k;
    buf[n] = '\0';
    close(fd);
}

int flh_cli_finish(flh_child *ch, flh_cli *r, int timeout_ms)
{
    int st = 0;
    pid_t w;
    for (double end = flh_now() + timeout_ms / 1000.0; (w = waitpid(ch->pid, &st, WNOHANG)) == 0 && flh_now() < end;)
        usleep(5000);
    if (w == 0) {
        kill(ch->pid, SIGKILL);
        waitpid(ch->pid, &st, 0);
    }
    drain_fd(ch->out, r->out, sizeof r->out);
    drain_fd(ch->err, r->err, sizeof r->err);
    r->status = w != 0 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return w == 0 ? -1 : 0;
}

int flh_cli_run(flh_cli *r, char *const argv[], char *const env[], int timeout_ms)
{
    flh_child ch;
    if (flh_cli_spawn(&ch, argv, env) < 0) {
        r->status = -1;
        r->out[0] = r->err[0] = '\0';
        return -1;
    }
    return flh_cli_finish(&ch, r, timeout_ms);
}

int flh_cli_failed_as(const flh_cli *r, int code, const char *prefix)
{
    int lines = 0;
    for (const char *p = r->err; *p; p++)
        lines += *p == '\n';
    return r->status == code && r->out[0] == '\0' && lines == 1 && strncmp(r->err, prefix, strlen(prefix)) == 0;
}

static void stop_all(void)
{
    for (int i = 0; i < FLH_MAX_DAEMONS; i++) {
        flh_daemon *d = live[i];
        if (d && d->pid > 0)
            flh_kill(d, SIGKILL);
        if (live_redis[i])
            flh_redis_stop(live_redis[i]);
    }
}

void flh_track(void **table, int n, void *p, int on)
{
    for (int i = 0; i < n; i++) {
        if (on && !table[i]) {
            table[i] = p;
            return;
        }
        if (!on && table[i] == p) {
            table[i] = NULL;
            return;
        }
    }
}

/* track_in adds p to (on) or removes it from (off) a table of live processes. */
static void track_in(void **table, void *p, int on)
{
    if (!atexit_set) {
        atexit(stop_all);
        atexit_set = 1;
    }
    flh_track(table, FLH_MAX_DAEMONS, p, on);
}

static void track(flh_daemon *d, int on)
{
    track_in(live, d, on);
}

static int read_ready(flh_daemon *d)
{
    FILE *f = fopen(d->ready, "r");
    if (!f)
        return -1;
    int pid = 0, port = 0;
    int n = fscanf(f, "{\"pid\":%d,\"port\":%d}", &pid, &port);
    fclose(f);
    /* A wrapper's child is flingd: its pid is only known from here. */
    if (n != 2 || (!d->wrap && pid != d->child))
        return -1;
    d->pid = pid;
    d->port = port;
    snprintf(d->url, sizeof d->url, "http://127.0.0.1:%d", port);
    return 0;
}

/* exec_flingd runs flingd on d's config, behind d->wrap if there is one; returns on failure. */
static void exec_flingd(const flh_daemon *d)
{
    /* The tests may run as root (CI): flingd refuses that without --allow-root. */
    char *own[] = { FLINGD_PATH, "-c", (char *)d->conf, "--ready-file", (char *)d->ready,
                    geteuid() == 0 ? "--allow-root" : NULL, NULL };
    if (!d->wrap) {
        execv(FLINGD_PATH, own);
        return;
    }
    size_t n = 0;
    while (d->wrap[n])
        n++;
    char **argv = calloc(n + sizeof own / sizeof own[0], sizeof *argv);
    if (!argv)
        return;
    memcpy(argv, d->wrap, n * sizeof *argv);
    memcpy(argv + n, own, sizeof own);
    execvp(argv[0], argv);
}

/* spawn forks flingd on d's dir without waiting for it. */
static int spawn(flh_daemon *d)
{
    unlink(d->ready);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int fd = open(d->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        exec_flingd(d);
        _exit(127);
    }
    d->child = d->pid = pid;
    track(d, 1);
    return 0;
}

/* wait_ready waits until d's flingd wrote its ready file, or exited, or 20 s passed. */
static int wait_ready(flh_daemon *d)
{
    pid_t pid = d->child;
    for (double end = flh_now() + 20; flh_now() < end;) {
        if (read_ready(d) == 0)
            return 0;
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            d->pid = d->child = 0;
            track(d, 0);
            fprintf(stderr, "flingd exited at start (status %d); log %s\n", st, d->log);
            return -1;
        }
        usleep(10000);
    }
    fprintf(stderr, "flingd did not become ready in 20 s\n");
    flh_kill(d, SIGKILL);
    return -1;
}

int flh_restart(flh_daemon *d)
{
    return spawn(d) < 0 ? -1 : wait_ready(d);
}

int flh_backend_pg(void)
{
    const char *b = getenv("FL_TEST_BACKEND");
    return b && strcmp(b, "postgres") == 0;
}

int flh_store_exec(const flh_daemon *d, const char *sql)
{
#ifdef FL_POSTGRES
    if (d->pg_db[0])
        return flh_pg_exec(flh_pg_shared(), d->pg_db, sql);
#endif
    sqlite3 *db = NULL;
    char *msg = NULL;
    int rc = sqlite3_open_v2(d->db, &db, SQLITE_OPEN_READWRITE, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_busy_timeout(db, 5000);
        rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    }
    if (rc != SQLITE_OK)
        fprintf(stderr, "flh_store_exec on %s: %s\n", d->db, msg ? msg : sqlite3_errmsg(db));
    sqlite3_free(msg);
    sqlite3_close(db);
    return rc == SQLITE_OK ? 0 : -1;
}

/* store_conf writes d's [store] keys: its SQLite file, or a new database of its own on the
 * shared PostgreSQL test server (node named after it: restarts keep the name). */
static int store_conf(flh_daemon *d, char *buf, size_t len)
{
    if (!flh_backend_pg()) {
        snprintf(buf, len, "path = %s\n", d->db);
        return 0;
    }
#ifdef FL_POSTGRES
    flh_pg *pg = flh_pg_shared();
    char url[160];
    if (!pg) {
        fprintf(stderr, "FL_TEST_BACKEND=postgres: %s; skipping\n",
                flh_pg_available() ? "the PostgreSQL test server did not start" : "PostgreSQL 15 is not installed");
        exit(flh_pg_available() ? 1 : 77);
    }
    if (flh_pg_create_db(pg, d->pg_db, sizeof d->pg_db) < 0)
        return -1;
    flh_pg_url(pg, d->pg_db, url, sizeof url);
    snprintf(buf, len, "path = %s\nbackend = postgres\nurl = %s\nnode = %s\n", d->db, url, d->pg_db);
    return 0;
#else
    fprintf(stderr, "FL_TEST_BACKEND=postgres: this build has no PostgreSQL backend; skipping\n");
    exit(77);
#endif
}

int flh_start(flh_daemon *d, const char *extra_conf)
{
    return flh_start_wrapped(d, extra_conf, NULL);
}

/* prepare makes d's temp dir and writes its config (see flh_start). */
static int prepare(flh_daemon *d, const char *extra_conf, char *const *wrap)
{
    memset(d, 0, sizeof *d);
    d->wrap = wrap;
    snprintf(d->dir, sizeof d->dir, "/tmp/flingtest.XXXXXX");
    if (!mkdtemp(d->dir))
        return -1;
    snprintf(d->db, sizeof d->db, "%s/fling.db", d->dir);
    snprintf(d->conf, sizeof d->conf, "%s/flingd.conf", d->dir);
    snprintf(d->sock, sizeof d->sock, "%s/fling.sock", d->dir);
    snprintf(d->ready, sizeof d->ready, "%s/ready.json", d->dir);
    snprintf(d->log, sizeof d->log, "%s/flingd.log", d->dir);
    snprintf(d->unix_url, sizeof d->unix_url, "unix:%s", d->sock);
    char store[512];
    if (store_conf(d, store, sizeof store) < 0)
        return -1;
    FILE *f = fopen(d->conf, "w");
    if (!f)
        return -1;
    /* A short shutdown_grace: tests park long sleep jobs, and a stop should not wait for them. */
    fprintf(f, "[server]\nlisten = 127.0.0.1:0\nunix = %s\n%s\n[store]\n%s[workers]\nshutdown_grace = 0.5\n"
               "\n[type.t]\nhandler = sleep\n",
            d->sock, extra_conf && strncmp(extra_conf, "[server]", 8) == 0 ? extra_conf + 8 : "", store);
    if (extra_conf && strncmp(extra_conf, "[server]", 8) != 0)
        fprintf(f, "%s\n", extra_conf);
    fclose(f);
    return 0;
}

int flh_start_wrapped(flh_daemon *d, const char *extra_conf, char *const *wrap)
{
    return prepare(d, extra_conf, wrap) < 0 ? -1 : flh_restart(d);
}

int flh_start_many(flh_daemon *d, int n, const char *const *extra_conf)
{
    int rc = 0;
    for (int i = 0; i < n; i++)
        if (prepare(&d[i], extra_conf[i], NULL) < 0 || spawn(&d[i]) < 0)
            return -1;
    for (int i = 0; i < n; i++)
        if (wait_ready(&d[i]) < 0)
            rc = -1;
    return rc;
}

int flh_signal_reap(pid_t target, pid_t child, int sig)
{
    kill(target, sig);
    int st = -1;
    for (double end = flh_now() + 10; flh_now() < end; usleep(5000))
        if (waitpid(child, &st, WNOHANG) == child)
            return st;
    kill(target, SIGKILL);
    waitpid(child, &st, 0);
    return -1;
}

void flh_rmdir(char *dir)
{
    if (!dir[0])
        return;
    flh_remove_dir(dir);
    dir[0] = '\0';
}

int flh_kill(flh_daemon *d, int sig)
{
    if (d->pid <= 0)
        return -1;
    int st = flh_signal_reap(d->pid, d->child, sig);
    d->pid = d->child = 0;
    track(d, 0);
    return st;
}

int flh_stop(flh_daemon *d)
{
    int st = flh_kill(d, SIGTERM);
    int clean = WIFEXITED(st) && WEXITSTATUS(st) == 0;
    if (!clean) {   /* a crash, or a sanitizer report at exit: show the daemon's log */
        char cmd[256];
        fprintf(stderr, "flingd did not exit cleanly (wait status %d); its log:\n", st);
        snprintf(cmd, sizeof cmd, "tail -n 60 '%s' >&2", d->log);
        if (system(cmd) != 0)
            fprintf(stderr, "(no log)\n");
    }
    flh_rmdir(d->dir);
    return clean ? 0 : -1;
}

int flh_remove_dir(const char *dir)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) == 0)
        return 0;
    fprintf(stderr, "could not remove %s\n", dir);
    return -1;
}

int flh_connect_tcp(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

int flh_connect_unix(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int flh_send_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

void flh_close_rst(int fd)
{
    struct linger l = { 1, 0 };
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    close(fd);
}

/* A response is whole once its headers ended and Content-Length bytes followed. */
static int reply_complete(const char *buf, size_t len)
{
    const char *end = memmem(buf, len, "\r\n\r\n", 4);
    if (!end)
        return 0;
    size_t head = (size_t)(end - buf) + 4;
    const char *cl = memmem(buf, head, "Content-Length: ", 16);
    size_t body = cl ? strtoul(cl + 16, NULL, 10) : 0;
    return len >= head + body;
}

int flh_read_reply(int fd, char *buf, size_t bufsz, int timeout_ms)
{
    size_t len = 0;
    double end = flh_now() + timeout_ms / 1000.0;
    while (len + 1 < bufsz && !reply_complete(buf, len)) {
        int left = (int)((end - flh_now()) * 1000);
        if (left <= 0)
            break;
        struct pollfd p = { .fd = fd, .events = POLLIN };
        if (poll(&p, 1, left) <= 0)
            break;
        ssize_t n = recv(fd, buf + len, bufsz - 1 - len, 0);
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    int status = 0;
    if (sscanf(buf, "HTTP/1.1 %d", &status) != 1)
        status = 0;
    return status;
}

char *flh_submit_req(const char *type, const char *payload, size_t len, const char *extra_headers, size_t *out_len)
{
    size_t cap = len + 512 + (extra_headers ? strlen(extra_headers) : 0);
    char *buf = malloc(cap);
    if (!buf)
        return NULL;
    int n = snprintf(buf, cap, "POST /v1/jobs/%s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %zu\r\n%s\r\n", type,
                     len, extra_headers ? extra_headers : "");
    memcpy(buf + n, payload, len);
    *out_len = (size_t)n + len;
    return buf;
}

int flh_http(const flh_daemon *d, const char *method, const char *path, json_t **body)
{
    fling_client *c = fling_client_new(d->url, NULL);
    if (!c)
        return -1;
    fling_response r = { 0 };
    int rc = fling_request(c, method, path, NULL, 0, &r);
    int status = (rc == 0 || rc == FLING_EHTTP) ? r.status : -1;
    if (body)
        *body = r.body ? json_loads(r.body, 0, NULL) : NULL;
    fling_response_clear(&r);
    fling_client_free(c);
    return status;
}

long flh_each_job(const flh_daemon *d, const char *type, void (*fn)(json_t *job, void *arg), void *arg)
{
    long count = 0;
    char path[256], after[32] = "";
    for (int page = 0; page < 10000; page++) {
        snprintf(path, sizeof path, "/v1/jobs?limit=1000%s%s%s%s", type ? "&type=" : "", type ? type : "",
                 after[0] ? "&after=" : "", after);
        json_t *body = NULL;
        if (flh_http(d, "GET", path, &body) != 200 || !body) {
            json_decref(body);
            return -1;
        }
        json_t *jobs = json_object_get(body, "jobs");
        size_t i;
        json_t *j;
        json_array_foreach(jobs, i, j) {
            count++;
            fn(j, arg);
        }
        json_t *next = json_object_get(body, "next");
        int more = json_is_string(next);
        if (more)
            snprintf(after, sizeof after, "%s", json_string_value(next));
        json_decref(body);
        if (!more)
            break;
    }
    return count;
}

static void count_aborted(json_t *job, void *arg)
{
    if (json_integer_value(json_object_get(job, "status")) & 1)
        ++*(long *)arg;
}

long flh_count_jobs(const flh_daemon *d, const char *type, long *aborted)
{
    long ab = 0;
    long count = flh_each_job(d, type, count_aborted, &ab);
    if (aborted)
        *aborted = ab;
    return count;
}

long flh_wait_count(const flh_daemon *d, const char *type, long want, int timeout_ms, long *aborted)
{
    long n = -1;
    for (double end = flh_now() + timeout_ms / 1000.0;;) {
        n = flh_count_jobs(d, type, aborted);
        if (n >= want || flh_now() > end)
            return n;
        usleep(50000);
    }
}

json_t *flh_wait_terminal(const flh_daemon *d, const char *id, int timeout_ms)
{
    char path[64];
    snprintf(path, sizeof path, "/v1/jobs/%s", id);
    json_t *job = NULL;
    for (double end = flh_now() + timeout_ms / 1000.0; flh_now() < end; usleep(20000)) {
        json_decref(job);
        job = NULL;
        if (flh_http(d, "GET", path, &job) != 200)
            continue;
        const char *st = json_string_value(json_object_get(job, "state"));
        if (st && (!strcmp(st, "succeeded") || !strcmp(st, "failed") || !strcmp(st, "cancelled")))
            return job;
    }
    return job;
}

long flh_metric(const flh_daemon *d, const char *name)
{
    fling_client *c = fling_client_new(d->url, NULL);
    if (!c)
        return -1;
    fling_response r = { 0 };
    long v = -1;
    if (fling_request(c, "GET", "/metrics", NULL, 0, &r) == 0 && r.body) {
        size_t nl = strlen(name);
        for (char *line = r.body; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
            if (strncmp(line, name, nl) == 0 && line[nl] == ' ') {
                v = strtol(line + nl + 1, NULL, 10);
                break;
            }
        }
    }
    fling_response_clear(&r);
    fling_client_free(c);
    return v;
}

/* wait_metric polls until the metric reaches want from below (up = 1) or from above (up = 0). */
static long wait_metric(const flh_daemon *d, const char *name, long want, double secs, int up)
{
    long v = -1;
    for (double end = flh_now() + secs; flh_now() < end; usleep(20000))
        if ((v = flh_metric(d, name)) >= 0 && (up ? v >= want : v <= want))
            break;
    return v;
}

long flh_wait_metric(const flh_daemon *d, const char *name, long want, double secs)
{
    return wait_metric(d, name, want, secs, 1);
}

long flh_wait_metric_down(const flh_daemon *d, const char *name, long want, double secs)
{
    return wait_metric(d, name, want, secs, 0);
}

/* ---- redis-server ---- */

/* flh_free_port asks the kernel for a free 127.0.0.1 port by binding port 0. */
int flh_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof a;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

redisContext *flh_redis_connect(const flh_redis *r, int db)
{
    struct timeval tv = { 2, 0 };
    redisContext *c = redisConnectWithTimeout("127.0.0.1", r->port, tv);
    if (!c || c->err) {
        if (c)
            redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, tv);
    int ok = 1;
    redisReply *rep;
    if (r->password[0]) {
        rep = redisCommand(c, "AUTH %s", r->password);
        ok = rep && rep->type == REDIS_REPLY_STATUS;
        freeReplyObject(rep);
    }
    if (ok && db) {
        rep = redisCommand(c, "SELECT %d", db);
        ok = rep && rep->type == REDIS_REPLY_STATUS;
        freeReplyObject(rep);
    }
    if (!ok) {
        redisFree(c);
        return NULL;
    }
    return c;
}

/* redis_pings tells whether the server answers PING (after AUTH) on its port. */
static int redis_pings(const flh_redis *r)
{
    redisContext *c = flh_redis_connect(r, 0);
    if (!c)
        return 0;
    redisReply *rep = redisCommand(c, "PING");
    int ok = rep && rep->type == REDIS_REPLY_STATUS && strcmp(rep->str, "PONG") == 0;
    freeReplyObject(rep);
    redisFree(c);
    return ok;
}

int flh_redis_restart(flh_redis *r)
{
    char port[16];
    snprintf(port, sizeof port, "%d", r->port);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int fd = open(r->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        const char *argv[20] = { "redis-server", "--port", port, "--bind", "127.0.0.1", "--unixsocket", r->sock,
                                 "--save", "", "--appendonly", "no", "--dir", r->dir };
        int n = 13;
        if (r->password[0]) {
            argv[n++] = "--requirepass";
            argv[n++] = r->password;
        }
        argv[n] = NULL;
        execvp("redis-server", (char *const *)argv);
        _exit(127);
    }
    r->pid = pid;
    track_in(live_redis, r, 1);
    for (double end = flh_now() + 10; flh_now() < end; usleep(10000)) {
        if (redis_pings(r))
            return 0;
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            r->pid = 0;
            fprintf(stderr, "redis-server exited at start (status %d); log %s\n", st, r->log);
            return -1;
        }
    }
    fprintf(stderr, "redis-server did not answer PING in 10 s\n");
    flh_redis_kill(r);
    return -1;
}

int flh_redis_start(flh_redis *r, const char *password)
{
    memset(r, 0, sizeof *r);
    snprintf(r->dir, sizeof r->dir, "/tmp/flingredis.XXXXXX");
    if (!mkdtemp(r->dir))
        return -1;
    snprintf(r->sock, sizeof r->sock, "%s/redis.sock", r->dir);
    snprintf(r->log, sizeof r->log, "%s/redis.log", r->dir);
    snprintf(r->password, sizeof r->password, "%s", password ? password : "");
    r->port = flh_free_port();
    if (r->port < 0)
        return -1;
    snprintf(r->url, sizeof r->url, "redis://%s%s%s127.0.0.1:%d", password ? ":" : "", password ? password : "",
             password ? "@" : "", r->port);
    return flh_redis_restart(r);
}

void flh_redis_kill(flh_redis *r)
{
    if (r->pid <= 0)
        return;
    flh_signal_reap(r->pid, r->pid, SIGTERM);
    r->pid = 0;
}

void flh_redis_stop(flh_redis *r)
{
    flh_redis_kill(r);
    track_in(live_redis, r, 0);
    flh_rmdir(r->dir);
}

int flh_log_count(const flh_daemon *d, const char *s)
{
    FILE *f = fopen(d->log, "r");
    if (!f)
        return -1;
    char line[2048];
    int n = 0;
    while (fgets(line, sizeof line, f))
        if (strstr(line, s))
            n++;
    fclose(f);
    return n;
}

long flh_rss_kib(pid_t pid)
{
    char path[64], line[256];
    long kib = -1;
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld", &kib) == 1)
            break;
    if (f)
        fclose(f);
    return kib;
}

/* ---- nginx ----------------------------------------------------------------------------- */

int flh_nginx_start(flh_nginx *n, int upstream_port, const char *listen_opts,
                    const char *server_extra, const char *location)
{
    memset(n, 0, sizeof *n);
    snprintf(n->dir, sizeof n->dir, "/tmp/flingnginx.XXXXXX");
    if (!mkdtemp(n->dir) || (n->port = flh_free_port()) < 0)
        return -1;
    snprintf(n->access, sizeof n->access, "%s/access.log", n->dir);
    char conf[96], err[96];
    snprintf(conf, sizeof conf, "%s/nginx.conf", n->dir);
    snprintf(err, sizeof err, "%s/error.log", n->dir);
    FILE *f = fopen(conf, "w");
    if (!f)
        return -1;
    /* As root, workers would switch to nobody, who cannot enter the 0700 temp dir. At
     * worker_connections nginx closes accepted connections it has not read yet, unlogged
     * (1024 lost 20 of 500 fires): each fire holds two until flingd's 202 is back. */
    fprintf(f,
            "%s"
            "worker_processes 1;\npid %s/nginx.pid;\nerror_log %s info;\n"
            "events { worker_connections 4096; }\n"
            "http {\n"
            "    access_log %s;\n"
            "    client_body_temp_path %s/body; proxy_temp_path %s/proxy; fastcgi_temp_path %s/fastcgi;\n"
            "    uwsgi_temp_path %s/uwsgi; scgi_temp_path %s/scgi;\n"
            "    upstream flingd { server 127.0.0.1:%d; keepalive 16; }\n"
            "    server {\n"
            "        listen 127.0.0.1:%d %s;\n%s"
            "        location / {\n"
            "            proxy_pass http://flingd;\n%s"
            "        }\n"
            "    }\n"
            "}\n",
            geteuid() == 0 ? "user root;\n" : "", n->dir, err, n->access, n->dir, n->dir, n->dir, n->dir,
            n->dir, upstream_port, n->port, listen_opts, server_extra, location);
    if (fclose(f) != 0)
        return -1;
    n->pid = fork();
    if (n->pid < 0)
        return -1;
    if (n->pid == 0) {
        execl(FLH_NGINX, "nginx", "-p", n->dir, "-e", err, "-c", conf, "-g", "daemon off;", (char *)NULL);
        _exit(127);
    }
    for (double end = flh_now() + 10; flh_now() < end; usleep(20000)) {
        int fd = flh_connect_tcp(n->port);
        if (fd >= 0) {
            close(fd);
            return 0;
        }
        if (waitpid(n->pid, NULL, WNOHANG) == n->pid) {
            n->pid = 0;
            fprintf(stderr, "nginx exited at start; see %s\n", err);
            return -1;
        }
    }
    fprintf(stderr, "nginx did not accept in 10 s\n");
    return -1;
}

void flh_nginx_stop(flh_nginx *n)
{
    if (n->pid > 0)
        flh_signal_reap(n->pid, n->pid, SIGTERM);
    n->pid = 0;
    flh_rmdir(n->dir);
}
