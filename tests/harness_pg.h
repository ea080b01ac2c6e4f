/* harness_pg.h — a real PostgreSQL 15 server for the tests (Debian's postgresql package, binaries
 * under FLH_PG_BIN): initdb and postgres in a temp dir, on a free 127.0.0.1 port, run as the
 * unprivileged `postgres` user when the tests run as root (PostgreSQL refuses root; CI is
 * root), stopped by its PID. One server per test process is enough: each flingd of a test gets
 * a database of its own on it (flh_pg_create_db).
 *
 * FL_TEST_BACKEND=postgres makes tests/harness.c point every flh_start at such a database
 * (flh_pg_shared), so the whole integration suite runs against PostgreSQL as it does against
 * SQLite. */
#ifndef FL_HARNESS_PG_H
#define FL_HARNESS_PG_H

#include <stddef.h>
#include <sys/types.h>

#define FLH_PG_BIN "/usr/lib/postgresql/15/bin"

typedef struct flh_pg {
    pid_t pid;              /* the postmaster's */
    int port;
    char dir[128];          /* temp dir, owned by the server's user: data/, the socket, the log */
    char data[192], log[192];
    int n_dbs;              /* databases made so far (their names are fl_<pid>_<n>) */
} flh_pg;

/* flh_pg_available tells whether the PostgreSQL 15 server binaries are installed. */
int flh_pg_available(void);

/* flh_pg_start makes a temp dir, runs initdb in it (trust auth, user postgres, UTF8), starts
 * postgres on a free port and waits until it accepts connections. 0 or -1 (message on stderr).
 * Until flh_pg_stop, the server is stopped and its dir removed when this process exits. */
int flh_pg_start(flh_pg *p);
/* flh_pg_restart starts the server again on the same dir and port (after flh_pg_kill). */
int flh_pg_restart(flh_pg *p);
/* flh_pg_kill stops the server (SIGINT: fast shutdown; SIGKILL after 10 s) and reaps it. */
void flh_pg_kill(flh_pg *p);
/* flh_pg_stop kills the server and removes its dir. */
void flh_pg_stop(flh_pg *p);

/* flh_pg_url writes the libpq URI of database db on p into buf. */
void flh_pg_url(const flh_pg *p, const char *db, char *buf, size_t len);
/* flh_pg_exec runs sql on database db; 0, or -1 with the server's message on stderr. */
int flh_pg_exec(const flh_pg *p, const char *db, const char *sql);
/* flh_pg_query_long runs a one-value query on db and returns it as a number, or -1. */
long flh_pg_query_long(const flh_pg *p, const char *db, const char *sql);
/* flh_pg_create_db creates a new empty database and writes its name into name: 0 or -1. */
int flh_pg_create_db(flh_pg *p, char *name, size_t len);

/* flh_pg_shared returns this process's shared test server, started on first use (stopped at
 * exit), or NULL if it cannot start. */
flh_pg *flh_pg_shared(void);

#endif
