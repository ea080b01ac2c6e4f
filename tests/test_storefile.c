/* test_storefile.c — the files and the thread under a real flingd's store: the database, -wal
 * and -shm are private whatever the umask, the writer thread blocks every signal, a database
 * deleted under the daemon is refused (never acked into) until a restart, and every 503 of a
 * failing store has its cause in the log, a new outage included. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fling.h"
#include "harness.h"

/* The line http.c logs when it answers 503 for a store failure of a new cause. */
#define BUSY_LINE "store: Device or resource busy; answering 503"
#define STALE_LINE "store: Stale file handle; answering 503"

/* submit_status submits one job of type t and returns the reply's status (202, 503, ...);
 * id (if not NULL) gets the job id of an ack. */
static int submit_status(const flh_daemon *d, char *id, size_t idlen)
{
    fling_client *c = fling_client_new(d->url, NULL);
    fling_response r = { 0 };
    assert_non_null(c);
    /* Behind a held lock each group waits out flingd's busy timeout (5 s), and another
     * group (a claim, a finish) may be ahead of this one. */
    fling_client_set_timeouts(c, 3000, 30000);
    int rc = fling_submit(c, "t", "0", 1, NULL, &r);
    int status = r.status;
    if (rc == 0 && id)
        snprintf(id, idlen, "%s", r.id);
    if (status == 503)
        assert_non_null(strstr(r.body, "store_unavailable"));
    fling_response_clear(&r);
    fling_client_free(c);
    return status;
}

/* log_count returns how many lines of the daemon's log contain needle. */
static int log_count(const flh_daemon *d, const char *needle)
{
    FILE *f = fopen(d->log, "r");
    char line[2048];
    int n = 0;
    assert_non_null(f);
    while (fgets(line, sizeof line, f))
        n += strstr(line, needle) != NULL;
    fclose(f);
    return n;
}

static void check_private(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    if ((st.st_mode & 07777) != 0600)
        fail_msg("%s has mode %04o, want 0600", path, (unsigned)(st.st_mode & 07777));
}

/* db_file formats the database's path with suffix ("", "-wal", "-shm"). */
static const char *db_file(const flh_daemon *d, const char *suffix, char *buf, size_t len)
{
    snprintf(buf, len, "%s%s", d->db, suffix);
    return buf;
}

/* find_thread finds the task of pid named name in /proc; its status path goes to out. */
static int find_thread(pid_t pid, const char *name, char *out, size_t outlen)
{
    char dir[64], path[400], comm[64];
    snprintf(dir, sizeof dir, "/proc/%d/task", (int)pid);
    DIR *dp = opendir(dir);
    struct dirent *e;
    int found = 0;
    assert_non_null(dp);
    while (!found && (e = readdir(dp))) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "%s/%s/comm", dir, e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        if (fgets(comm, sizeof comm, f)) {
            comm[strcspn(comm, "\n")] = '\0';
            if (strcmp(comm, name) == 0) {
                snprintf(out, outlen, "%s/%s/status", dir, e->d_name);
                found = 1;
            }
        }
        fclose(f);
    }
    closedir(dp);
    return found;
}

/* sig_blocked reads the SigBlk mask of a /proc status file. */
static unsigned long long sig_blocked(const char *status)
{
    FILE *f = fopen(status, "r");
    char line[256];
    unsigned long long mask = 0;
    int seen = 0;
    assert_non_null(f);
    while (!seen && fgets(line, sizeof line, f))
        seen = sscanf(line, "SigBlk: %llx", &mask) == 1;
    fclose(f);
    assert_true(seen);
    return mask;
}

/* Under umask 022 the three files would be 0644 (every payload world-readable); the writer
 * thread ("fl-store") blocks every signal the kernel lets it block, glibc's two internal ones
 * (32, 33) aside, so SIGCHLD and SIGTERM always reach the loop thread. */
static void files_private_and_writer_masked(void **state)
{
    (void)state;
    flh_daemon d;
    char path[256], status[400];
    mode_t old = umask(022);
    int rc = flh_start(&d, NULL);
    umask(old);
    assert_int_equal(rc, 0);
    assert_int_equal(submit_status(&d, NULL, 0), 202);
    check_private(db_file(&d, "", path, sizeof path));
    check_private(db_file(&d, "-wal", path, sizeof path));
    check_private(db_file(&d, "-shm", path, sizeof path));

    if (!find_thread(d.pid, "fl-store", status, sizeof status))
        fail_msg("flingd %d has no thread named fl-store", (int)d.pid);
    unsigned long long mask = sig_blocked(status);
    for (int sig = 1; sig <= 64; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP || sig == 32 || sig == 33)
            continue;
        if (!(mask & (1ULL << (sig - 1))))
            fail_msg("the store's writer thread does not block signal %d (SigBlk %016llx)", sig, mask);
    }
    assert_int_equal(flh_stop(&d), 0);
}

/* rm of the db, -wal and -shm under a running daemon: no 202 after that (the ack would go to an
 * unlinked file, lost at the next restart), one log line that says why, 503 until a restart;
 * the restart creates a new database and says so, and its ids start at 1. */
static void deleted_db_refused_until_restart(void **state)
{
    (void)state;
    flh_daemon d;
    char path[256], id[24];
    assert_int_equal(flh_start(&d, NULL), 0);
    assert_int_equal(submit_status(&d, id, sizeof id), 202);
    assert_int_equal(submit_status(&d, id, sizeof id), 202);
    assert_string_equal(id, "2");
    assert_int_equal(unlink(db_file(&d, "", path, sizeof path)), 0);
    assert_int_equal(unlink(db_file(&d, "-wal", path, sizeof path)), 0);
    assert_int_equal(unlink(db_file(&d, "-shm", path, sizeof path)), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(submit_status(&d, NULL, 0), 503);
    assert_int_equal(log_count(&d, "was deleted or replaced"), 1);
    assert_int_equal(log_count(&d, "refusing new work until flingd restarts"), 1);
    assert_int_equal(log_count(&d, STALE_LINE), 1);

    flh_kill(&d, SIGTERM);
    assert_int_equal(flh_restart(&d), 0);
    assert_int_equal(submit_status(&d, id, sizeof id), 202);
    assert_string_equal(id, "1");
    assert_true(log_count(&d, "created a new database") >= 2);
    assert_int_equal(flh_stop(&d), 0);
}

/* hold_write_lock takes the database's write lock from outside, as a backup or the sqlite3
 * shell would: flingd's groups wait for it (busy timeout), then fail with -EBUSY. */
static sqlite3 *hold_write_lock(const flh_daemon *d)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(d->db, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 10000);   /* flingd's writer may be in a group right now */
    assert_int_equal(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    return db;
}

static void release_write_lock(sqlite3 *db)
{
    assert_int_equal(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

/* Every 503 has its cause in the log. An outage is logged once; the store working again ends
 * it whatever the route (here only a 404 of a cancel ran in between), so the next outage is
 * logged again; and a new cause during an outage is logged too. */
static void every_503_logged(void **state)
{
    (void)state;
    flh_daemon d;
    fling_response r = { 0 };
    assert_int_equal(flh_start(&d, NULL), 0);
    assert_int_equal(submit_status(&d, NULL, 0), 202);

    sqlite3 *lock = hold_write_lock(&d);
    assert_int_equal(submit_status(&d, NULL, 0), 503);
    release_write_lock(lock);
    assert_int_equal(log_count(&d, BUSY_LINE), 1);

    fling_client *c = fling_client_new(d.url, NULL);
    assert_non_null(c);
    assert_int_equal(fling_request(c, "DELETE", "/v1/jobs/999", NULL, 0, &r), FLING_EHTTP);
    assert_int_equal(r.status, 404);
    fling_response_clear(&r);
    fling_client_free(c);

    lock = hold_write_lock(&d);
    assert_int_equal(submit_status(&d, NULL, 0), 503);
    assert_int_equal(log_count(&d, BUSY_LINE), 2);
    release_write_lock(lock);

    /* Still failing (nothing succeeded since), now for another reason. */
    char path[256];
    assert_int_equal(unlink(db_file(&d, "", path, sizeof path)), 0);
    assert_int_equal(submit_status(&d, NULL, 0), 503);
    assert_int_equal(log_count(&d, STALE_LINE), 1);
    assert_int_equal(flh_stop(&d), 0);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(files_private_and_writer_masked),
        cmocka_unit_test(deleted_db_refused_until_restart),
        cmocka_unit_test(every_503_logged),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
