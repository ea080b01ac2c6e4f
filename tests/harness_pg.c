/* harness_pg.c — a real PostgreSQL server for the tests (see harness_pg.h). */
#include "harness_pg.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <libpq-fe.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

/* The user the server runs as when the tests are root: the one Debian's package creates. */
#define FLH_PG_USER "postgres"

/* Every server started and not yet stopped by this process, stopped at exit: a failed
 * assertion skips a test's own flh_pg_stop. */
#define FLH_PG_MAX 4
static void *live[FLH_PG_MAX];
static pid_t live_owner;   /* the process that started them: a forked child must not stop them */

static void stop_live(void)
{
    for (int i = 0; i < FLH_PG_MAX; i++)
        if (live[i] && live_owner == getpid())
            flh_pg_stop(live[i]);
}

/* track adds p to (on) or removes it from (off) the servers stopped at exit. */
static void track(flh_pg *p, int on)
{
    if (!live_owner) {
        live_owner = getpid();
        atexit(stop_live);
    }
    flh_track(live, FLH_PG_MAX, p, on);
}

int flh_pg_available(void)
{
    return access(FLH_PG_BIN "/initdb", X_OK) == 0 && access(FLH_PG_BIN "/postgres", X_OK) == 0;
}

/* drop_root makes the child the server's user if the tests run as root (PostgreSQL refuses
 * to run as root); returns -1 if that user is missing. */
static int drop_root(void)
{
    struct passwd *pw;

    if (geteuid() != 0)
        return 0;
    if (!(pw = getpwnam(FLH_PG_USER)))
        return -1;
    if (setgroups(0, NULL) < 0 || setgid(pw->pw_gid) < 0 || setuid(pw->pw_uid) < 0)
        return -1;
    return 0;
}

/* spawn runs argv (a server binary) as the server's user with output appended to log. */
static pid_t spawn(char *const argv[], const char *log)
{
    pid_t pid = fork();

    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        if (drop_root() < 0) {
            fprintf(stderr, "cannot become user %s\n", FLH_PG_USER);
            _exit(126);
        }
        execv(argv[0], argv);
        _exit(127);
    }
    return pid;
}

/* own_dir hands the temp dir (and the log in it) to the server's user. */
static int own_dir(const flh_pg *p)
{
    struct passwd *pw;

    if (geteuid() != 0)
        return 0;
    if (!(pw = getpwnam(FLH_PG_USER))) {
        fprintf(stderr, "harness_pg: no user %s (the postgresql package creates it)\n", FLH_PG_USER);
        return -1;
    }
    if (chown(p->dir, pw->pw_uid, pw->pw_gid) < 0) {
        fprintf(stderr, "harness_pg: chown %s: %s\n", p->dir, strerror(errno));
        return -1;
    }
    return 0;
}

static int run_initdb(const flh_pg *p)
{
    char *argv[] = { FLH_PG_BIN "/initdb", "-D", (char *)p->data, "-A", "trust", "-U", "postgres",
                     "-E", "UTF8", "--locale=C.UTF-8", "--no-sync", NULL };
    int st = 0;
    pid_t pid = spawn(argv, p->log);

    if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "harness_pg: initdb failed (status %d); log %s\n", st, p->log);
        return -1;
    }
    return 0;
}

void flh_pg_url(const flh_pg *p, const char *db, char *buf, size_t len)
{
    snprintf(buf, len, "postgresql://postgres@127.0.0.1:%d/%s", p->port, db);
}

static int accepts(const flh_pg *p)
{
    char url[160];

    flh_pg_url(p, "postgres", url, sizeof url);
    return PQping(url) == PQPING_OK;
}

int flh_pg_restart(flh_pg *p)
{
    char port[16];
    /* The tests check flingd's contract, not the disk under the server: fsync off keeps the
     * suite's time down on a shared machine (synchronous_commit stays on, as flingd sets it).
     * Enough connections for ten nodes starting at once. */
    char *argv[] = { FLH_PG_BIN "/postgres", "-D", p->data, "-p", port, "-k", p->dir,
                     "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=100",
                     "-c", "shared_buffers=16MB", NULL };

    snprintf(port, sizeof port, "%d", p->port);
    p->pid = spawn(argv, p->log);
    if (p->pid < 0)
        return -1;
    for (double end = flh_now() + 30; flh_now() < end; usleep(20000)) {
        int st;
        if (accepts(p))
            return 0;
        if (waitpid(p->pid, &st, WNOHANG) == p->pid) {
            p->pid = 0;
            fprintf(stderr, "harness_pg: postgres exited at start (status %d); log %s\n", st, p->log);
            return -1;
        }
    }
    fprintf(stderr, "harness_pg: postgres did not accept connections in 30 s; log %s\n", p->log);
    flh_pg_kill(p);
    return -1;
}

int flh_pg_start(flh_pg *p)
{
    memset(p, 0, sizeof *p);
    if (!flh_pg_available()) {
        fprintf(stderr, "harness_pg: PostgreSQL 15 is not installed (%s; scripts/install-deps --test)\n", FLH_PG_BIN);
        return -1;
    }
    snprintf(p->dir, sizeof p->dir, "/tmp/flingpg.XXXXXX");
    if (!mkdtemp(p->dir))
        return -1;
    snprintf(p->data, sizeof p->data, "%s/data", p->dir);
    snprintf(p->log, sizeof p->log, "%s/postgres.log", p->dir);
    track(p, 1);
    if (own_dir(p) < 0 || run_initdb(p) < 0 || (p->port = flh_free_port()) < 0)
        return -1;
    return flh_pg_restart(p);
}

void flh_pg_kill(flh_pg *p)
{
    if (p->pid <= 0)
        return;
    flh_signal_reap(p->pid, p->pid, SIGINT);
    p->pid = 0;
}

void flh_pg_stop(flh_pg *p)
{
    flh_pg_kill(p);
    flh_rmdir(p->dir);
    track(p, 0);
}

/* connect_db opens database db on p, or NULL with the reason on stderr. */
static PGconn *connect_db(const flh_pg *p, const char *db)
{
    char url[160];
    PGconn *c;

    flh_pg_url(p, db, url, sizeof url);
    c = PQconnectdb(url);
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "harness_pg: %s: %s", url, PQerrorMessage(c));
        PQfinish(c);
        return NULL;
    }
    return c;
}

int flh_pg_exec(const flh_pg *p, const char *db, const char *sql)
{
    PGconn *c = connect_db(p, db);
    PGresult *r;
    int ok;

    if (!c)
        return -1;
    r = PQexec(c, sql);
    ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
    if (!ok)
        fprintf(stderr, "harness_pg: %s: %s", sql, PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
    return ok ? 0 : -1;
}

long flh_pg_query_long(const flh_pg *p, const char *db, const char *sql)
{
    PGconn *c = connect_db(p, db);
    PGresult *r;
    long v = -1;

    if (!c)
        return -1;
    r = PQexec(c, sql);
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 && !PQgetisnull(r, 0, 0))
        v = strtol(PQgetvalue(r, 0, 0), NULL, 10);
    else
        fprintf(stderr, "harness_pg: %s: %s", sql, PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
    return v;
}

int flh_pg_create_db(flh_pg *p, char *name, size_t len)
{
    char sql[128];

    snprintf(name, len, "fl_%d_%d", (int)getpid(), ++p->n_dbs);
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", name);
    return flh_pg_exec(p, "postgres", sql);
}

/* ---- the shared server of this test process ---- */

static flh_pg shared;

flh_pg *flh_pg_shared(void)
{
    if (shared.pid > 0)
        return &shared;
    /* Its stop at exit is registered before the harness's stop_all (flh_start asks for the
     * server before it starts the daemon), so at exit the daemons are killed first. */
    if (flh_pg_start(&shared) < 0) {
        flh_pg_stop(&shared);
        return NULL;
    }
    return &shared;
}
