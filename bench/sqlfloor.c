/* sqlfloor.c — the cheapest durable insert SQLite can do on this machine: one table with an
 * integer key and a blob, no index, one prepared INSERT per row, GROUP rows per transaction,
 * WAL with synchronous FULL (an fsync per commit, as flingd's durability = full) or NORMAL.
 * Any store built on SQLite pays at least this per job: bench/compare sets it beside flingd's
 * CPU per job to tell its own overhead from the engine's floor. The first rows (as many again
 * as measured, at most 4000) are written untimed, so the WAL has grown to its working size
 * and is being rewritten in place, as in a daemon that has run for a while.
 *   sqlfloor [-n ROWS] [-g GROUP] [-s PAYLOAD] [-d] [-p PATH]
 * prints: mode=sqlfloor rows=N group=G payload=S sync=full|normal secs=T rate=R/s cpu_us=C
 * (cpu_us: the process's user + system time, fsyncs included, for all the rows). */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

static double cpu_us(void)
{
    struct rusage r;
    getrusage(RUSAGE_SELF, &r);
    return (double)(r.ru_utime.tv_sec + r.ru_stime.tv_sec) * 1e6 + (double)(r.ru_utime.tv_usec + r.ru_stime.tv_usec);
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* step_reset runs a prepared statement to its end: 0 or -EIO (with SQLite's message). */
static int step_reset(sqlite3 *db, sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc == SQLITE_DONE)
        return 0;
    fprintf(stderr, "sqlfloor: %s\n", sqlite3_errmsg(db));
    return -EIO;
}

static int setup(sqlite3 *db, int full)
{
    const char *sql = full ? "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;"
                             " CREATE TABLE j (id INTEGER PRIMARY KEY, p BLOB);"
                           : "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;"
                             " CREATE TABLE j (id INTEGER PRIMARY KEY, p BLOB);";
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) == SQLITE_OK)
        return 0;
    fprintf(stderr, "sqlfloor: %s\n", msg ? msg : "setup failed");
    sqlite3_free(msg);
    return -EIO;
}

static int run(sqlite3 *db, long rows, int group, const char *payload, int len)
{
    sqlite3_stmt *ins = NULL, *begin = NULL, *commit = NULL;
    int rc = -EIO;

    if (sqlite3_prepare_v2(db, "INSERT INTO j (p) VALUES (?1)", -1, &ins, NULL) ||
        sqlite3_prepare_v2(db, "BEGIN", -1, &begin, NULL) || sqlite3_prepare_v2(db, "COMMIT", -1, &commit, NULL)) {
        fprintf(stderr, "sqlfloor: %s\n", sqlite3_errmsg(db));
        goto out;
    }
    for (long i = 0; i < rows; i += group) {
        if (step_reset(db, begin))
            goto out;
        for (int k = 0; k < group && i + k < rows; k++)
            if (sqlite3_bind_blob(ins, 1, payload, len, SQLITE_STATIC) || step_reset(db, ins))
                goto out;
        if (step_reset(db, commit))
            goto out;
    }
    rc = 0;
out:
    sqlite3_finalize(ins);
    sqlite3_finalize(begin);
    sqlite3_finalize(commit);
    return rc;
}

int main(int argc, char **argv)
{
    long rows = 200000;
    int group = 40, len = 200, full = 1, opt;
    char path[256] = "";

    while ((opt = getopt(argc, argv, "n:g:s:dp:")) != -1) {
        switch (opt) {
        case 'n': rows = atol(optarg); break;
        case 'g': group = atoi(optarg); break;
        case 's': len = atoi(optarg); break;
        case 'd': full = 0; break;
        case 'p': snprintf(path, sizeof path, "%s", optarg); break;
        default:
            fprintf(stderr, "usage: sqlfloor [-n ROWS] [-g GROUP] [-s PAYLOAD] [-d] [-p PATH]\n");
            return 2;
        }
    }
    if (rows < 1 || group < 1 || len < 0 || len > 1 << 20) {
        fprintf(stderr, "sqlfloor: -n and -g must be at least 1, -s 0 .. 1048576\n");
        return 2;
    }
    if (!*path)
        snprintf(path, sizeof path, "/tmp/sqlfloor-%d.db", (int)getpid());
    char *payload = malloc((size_t)len + 1);
    sqlite3 *db = NULL;
    if (!payload || sqlite3_open(path, &db) != SQLITE_OK) {
        fprintf(stderr, "sqlfloor: cannot open %s\n", path);
        return 1;
    }
    memset(payload, 'x', (size_t)len);
    int rc = setup(db, full) || run(db, rows < 4000 ? rows : 4000, group, payload, len);
    double c0 = cpu_us(), t0 = now_s();
    rc = rc || run(db, rows, group, payload, len);
    double secs = now_s() - t0, cpu = cpu_us() - c0;
    sqlite3_close(db);
    free(payload);
    char side[300];
    unlink(path);
    snprintf(side, sizeof side, "%s-wal", path);
    unlink(side);
    snprintf(side, sizeof side, "%s-shm", path);
    unlink(side);
    if (rc)
        return 1;
    printf("mode=sqlfloor rows=%ld group=%d payload=%d sync=%s secs=%.2f rate=%.0f/s cpu_us=%.0f\n", rows, group, len,
           full ? "full" : "normal", secs, (double)rows / secs, cpu);
    return 0;
}
