/* harness.h — integration-test plumbing: a real flingd in a temp dir on a free port (found via
 * --ready-file), raw sockets to it, and a few HTTP helpers on libfling. Every daemon is stopped
 * by its PID; flh_stop_all() runs at exit so a failed test leaves nothing behind. */
#ifndef FL_HARNESS_H
#define FL_HARNESS_H

#include <jansson.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct flh_daemon {
    pid_t pid;           /* flingd's (from its ready file) */
    pid_t child;         /* the process forked: flingd, or the wrapper that runs it */
    char *const *wrap;   /* argv run in front of flingd's (strace ...), NULL-terminated; NULL = none */
    int port;
    char dir[128];       /* temp dir: config, db, unix socket, ready file, log */
    char db[192], conf[192], sock[192], ready[192], log[192];
    char url[64];        /* http://127.0.0.1:PORT */
    char unix_url[200];  /* unix:/…/fling.sock */
    char pg_db[64];      /* FL_TEST_BACKEND=postgres: its database on the shared server; "" = SQLite */
} flh_daemon;

/* flh_backend_pg tells whether FL_TEST_BACKEND=postgres points every flh_start at a database of
 * its own on this process's PostgreSQL test server (tests/harness_pg.h) instead of d->db. A
 * build without PostgreSQL, or a machine without its server, exits 77 (ctest: skipped) then. */
int flh_backend_pg(void);

/* flh_store_exec runs sql (written for both dialects) on d's store, whichever backend: its
 * SQLite file (waiting out the daemon's locks) or its PostgreSQL database. 0, or -1 with the
 * reason on stderr. */
int flh_store_exec(const flh_daemon *d, const char *sql);

/* flh_start makes a temp dir, writes a config (listen 127.0.0.1:0, db and unix socket in the
 * dir, or a PostgreSQL database with flh_backend_pg, [type.t] handler = sleep, plus extra INI
 * text), starts flingd and waits until it accepts.
 * 0 or -1 (with a message on stderr). */
int flh_start(flh_daemon *d, const char *extra_conf);
/* flh_start_wrapped is flh_start with flingd run as the last arguments of wrap (kept by
 * pointer: it must outlive d's restarts); signals still go to flingd, the wrapper is reaped. */
int flh_start_wrapped(flh_daemon *d, const char *extra_conf, char *const *wrap);
/* flh_start_many starts n daemons at once, d[i] with extra_conf[i] (NULL = none): every config
 * is written and every flingd forked before the first is waited for. 0, or -1 if any failed
 * (the others are running). */
int flh_start_many(flh_daemon *d, int n, const char *const *extra_conf);
/* flh_restart starts flingd again on the same dir and database. */
int flh_restart(flh_daemon *d);
/* flh_kill sends sig and reaps the daemon (SIGKILL after 10 s if it lingers); returns its wait status. */
int flh_kill(flh_daemon *d, int sig);
/* flh_stop stops the daemon (SIGTERM) and removes its dir; 0 if it exited with status 0, else
 * -1 after printing its log (a crash or a sanitizer report fails the test that way). */
int flh_stop(flh_daemon *d);

/* flh_remove_dir removes dir and everything in it: 0, or -1 with a message on stderr. */
int flh_remove_dir(const char *dir);

int flh_connect_tcp(int port);                  /* blocking socket or -1 */
int flh_connect_unix(const char *path);
int flh_send_all(int fd, const void *buf, size_t len);   /* 0 or -1 */
void flh_close_rst(int fd);                     /* close with SO_LINGER {1,0}: an RST */
/* flh_read_reply reads from fd until a whole HTTP response (headers + Content-Length body) or
 * EOF or timeout_ms; returns its status (0 if none) and copies the bytes into buf. */
int flh_read_reply(int fd, char *buf, size_t bufsz, int timeout_ms);
/* flh_submit_raw builds a submit request for type with payload into a malloc'd buffer. */
char *flh_submit_req(const char *type, const char *payload, size_t len, const char *extra_headers, size_t *out_len);

/* flh_get performs METHOD path on d and returns the status; *body gets the parsed JSON (or NULL). */
int flh_http(const flh_daemon *d, const char *method, const char *path, json_t **body);
/* flh_count_jobs counts jobs (of type, or all if NULL) by paging GET /v1/jobs; *aborted (if not
 * NULL) gets how many have status bit 1. -1 on error. */
long flh_count_jobs(const flh_daemon *d, const char *type, long *aborted);
/* flh_each_job calls fn on every job (of type, or all if NULL), paging GET /v1/jobs; returns how
 * many it saw, or -1 on error. The job object is borrowed for the call. */
long flh_each_job(const flh_daemon *d, const char *type, void (*fn)(json_t *job, void *arg), void *arg);
/* flh_metric returns the value of a metric line "name value" from GET /metrics, or -1. */
long flh_metric(const flh_daemon *d, const char *name);
/* flh_wait_metric polls metric name of d until it is at least want or secs pass: its last value. */
long flh_wait_metric(const flh_daemon *d, const char *name, long want, double secs);
/* flh_wait_metric_down: the same until it is at most want (and present). */
long flh_wait_metric_down(const flh_daemon *d, const char *name, long want, double secs);
/* flh_wait_count polls flh_count_jobs until it reaches want or timeout_ms passes; returns the last count. */
long flh_wait_count(const flh_daemon *d, const char *type, long want, int timeout_ms, long *aborted);

/* flh_wait_terminal polls GET /v1/jobs/{id} until the job is succeeded, failed or cancelled, or
 * timeout_ms passes; returns the last job seen (caller decrefs; maybe not terminal, maybe NULL). */
json_t *flh_wait_terminal(const flh_daemon *d, const char *id, int timeout_ms);

double flh_now(void);   /* monotonic seconds */
int flh_free_port(void);  /* a 127.0.0.1 TCP port free right now (the kernel's pick), or -1 */
/* flh_signal_reap sends sig to target and waits up to 10 s for child (target itself, or the
 * wrapper running it) to exit, then SIGKILLs target: child's wait status, or -1 if killed. */
int flh_signal_reap(pid_t target, pid_t child, int sig);
/* flh_track puts p in the first free slot of table (n slots) if on, else takes it out: the
 * lists of what is stopped at exit. */
void flh_track(void **table, int n, void *p, int on);
/* flh_rmdir removes the tree at dir with flh_remove_dir and empties the string; "" is a no-op. */
void flh_rmdir(char *dir);

/* flh_rss_kib returns the resident memory of process pid in KiB (VmRSS), or -1. */
long flh_rss_kib(pid_t pid);

/* flh_log_count counts the lines of d's log that contain s (-1 if the log cannot be read). */
int flh_log_count(const flh_daemon *d, const char *s);

/* The fling CLI (FLING_CLI_PATH) as a child process: stdin from /dev/null, stdout and stderr on
 * pipes. flh_cli_spawn starts it with argv and env (NULL = this process's environment);
 * flh_cli_finish waits up to timeout_ms for it to exit (then SIGKILLs it) and collects what it
 * wrote (a CLI run writes less than a pipe holds): 0, or -1 if it had to be killed (status -1).
 * flh_cli_run is both in one. */
typedef struct flh_child { pid_t pid; int out, err; } flh_child;
typedef struct flh_cli {
    int status;          /* exit code, or -1 if it did not exit normally */
    char out[16384];
    char err[4096];
} flh_cli;
int flh_cli_spawn(flh_child *ch, char *const argv[], char *const env[]);
int flh_cli_finish(flh_child *ch, flh_cli *r, int timeout_ms);
int flh_cli_run(flh_cli *r, char *const argv[], char *const env[], int timeout_ms);
/* flh_cli_failed_as tells whether r exited with code, printed nothing on stdout and exactly one
 * line on stderr that starts with prefix (the CLI's error contract). */
int flh_cli_failed_as(const flh_cli *r, int code, const char *prefix);

/* A real redis-server for the mirror tests, in its own temp dir on a free 127.0.0.1 port and a
 * Unix socket, without persistence; stopped by its PID (flh_stop_all covers it too). */
struct redisContext;
typedef struct flh_redis {
    pid_t pid;
    int port;
    char dir[128];         /* temp dir: the socket and the server's log */
    char sock[192], log[192];
    char password[64];     /* "" = no requirepass */
    char url[256];         /* redis://[:password@]127.0.0.1:PORT */
} flh_redis;

/* flh_redis_start makes a temp dir, picks a free port, starts redis-server (with requirepass if
 * password is not NULL) and waits until it answers PING. 0 or -1 (with a message on stderr). */
int flh_redis_start(flh_redis *r, const char *password);
/* flh_redis_restart starts redis-server again on the same port and dir (empty: no persistence). */
int flh_redis_restart(flh_redis *r);
/* flh_redis_kill stops the server (SIGTERM, then SIGKILL after 10 s) and reaps it; the dir stays. */
void flh_redis_kill(flh_redis *r);
/* flh_redis_stop kills the server and removes its dir. */
void flh_redis_stop(flh_redis *r);
/* flh_redis_connect returns a synchronous hiredis connection to r (AUTH done, database db
 * selected), or NULL; caller frees with redisFree. */
struct redisContext *flh_redis_connect(const flh_redis *r, int db);

/* A real nginx in front of a flingd: its own prefix, config, logs and temp dirs in a temp dir,
 * listening on a free 127.0.0.1 port, proxying location / to 127.0.0.1:upstream_port; stopped
 * by its PID. */
#define FLH_NGINX "/usr/sbin/nginx"
typedef struct flh_nginx {
    pid_t pid;
    int port;
    char dir[64];
    char access[96];     /* its access log */
} flh_nginx;

/* flh_nginx_start writes the config (listen_opts after "listen 127.0.0.1:PORT", such as "ssl";
 * server_extra and location as directives of the server and of location /; each may be "") and
 * starts nginx in the foreground: 0 once it accepts TCP connections, -1 otherwise. */
int flh_nginx_start(flh_nginx *n, int upstream_port, const char *listen_opts,
                    const char *server_extra, const char *location);
/* flh_nginx_stop stops nginx by its PID (fast shutdown, SIGKILL after 10 s) and removes its dir. */
void flh_nginx_stop(flh_nginx *n);

#endif
