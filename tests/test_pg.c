/* test_pg.c — the PostgreSQL store backend with real flingd nodes on one real PostgreSQL 15
 * server (tests/harness_pg.h): migrations applied once by ten nodes starting at once; an
 * Idempotency-Key shared by the nodes; every job of several nodes run exactly once; a node's
 * restart re-queues its own orphans and no other node's; a server restart under load (503
 * while it is away, reconnection without help, every acked job ends); the configuration's
 * errors. Skipped (77) when the server binaries are not installed. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "fling.h"
#include "harness.h"
#include "harness_pg.h"

static flh_pg *pg;

/* node_conf writes the [store] of a node named name on database db (plus more INI text). */
static void node_conf(char *buf, size_t len, const char *db, const char *name, const char *more)
{
    char url[160];

    flh_pg_url(pg, db, url, sizeof url);
    snprintf(buf, len, "[store]\nbackend = postgres\nurl = %s\nnode = %s\n[type.noop]\nhandler = noop\n%s", url, name,
             more ? more : "");
}

/* submit posts one job of type to d (extra headers may be NULL): the HTTP status, and the id
 * into id (if not NULL) from a 202 or 200. */
static int submit(const flh_daemon *d, const char *type, const char *payload, const char *headers, char *id,
                  size_t idlen)
{
    size_t len;
    char *req = flh_submit_req(type, payload, strlen(payload), headers, &len);
    char reply[4096];
    int fd = flh_connect_tcp(d->port), status = 0;

    if (req && fd >= 0 && flh_send_all(fd, req, len) == 0)
        status = flh_read_reply(fd, reply, sizeof reply, 10000);
    if (fd >= 0)
        close(fd);
    free(req);
    if (id && (status == 202 || status == 200)) {
        const char *p = strstr(reply, "\"id\":\"");
        id[0] = '\0';
        if (p)
            snprintf(id, idlen, "%.*s", (int)strcspn(p + 6, "\""), p + 6);
    }
    return status;
}

static long count_log(const char *path, const char *what)
{
    flh_daemon tmp = { 0 };
    snprintf(tmp.log, sizeof tmp.log, "%s", path);
    return flh_log_count(&tmp, what);
}

/* Ten nodes starting at once on an empty database: the migrations are applied once, under
 * the advisory lock, and every node comes up. */
static void test_migrate_once(void **state)
{
    (void)state;
    enum { N = 10 };
    flh_daemon d[N];
    char db[64], conf[N][512], name[32];
    const char *confs[N];
    long applied = 0;

    assert_int_equal(flh_pg_create_db(pg, db, sizeof db), 0);
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof name, "m%d", i);
        node_conf(conf[i], sizeof conf[i], db, name, NULL);
        confs[i] = conf[i];
    }
    assert_int_equal(flh_start_many(d, N, confs), 0);
    for (int i = 0; i < N; i++)
        applied += count_log(d[i].log, "applied PostgreSQL migration");
    assert_int_equal(applied, flh_pg_query_long(pg, db, "SELECT count(*) FROM fling_schema"));
    assert_true(applied >= 1);
    assert_int_equal(flh_pg_query_long(pg, db, "SELECT count(DISTINCT version) FROM fling_schema"), applied);
    for (int i = 0; i < N; i++)
        assert_int_equal(flh_stop(&d[i]), 0);
}

/* An Idempotency-Key is one job whichever node sees it: the second submit, on another node,
 * answers 200 with the first one's id. */
static void test_idempotency_across_nodes(void **state)
{
    (void)state;
    flh_daemon a, b;
    char db[64], ca[512], cb[512], id1[32], id2[32];

    assert_int_equal(flh_pg_create_db(pg, db, sizeof db), 0);
    node_conf(ca, sizeof ca, db, "a", NULL);
    node_conf(cb, sizeof cb, db, "b", NULL);
    assert_int_equal(flh_start(&a, ca), 0);
    assert_int_equal(flh_start(&b, cb), 0);
    assert_int_equal(submit(&a, "noop", "x", "Idempotency-Key: k-1\r\n", id1, sizeof id1), 202);
    assert_int_equal(submit(&b, "noop", "x", "Idempotency-Key: k-1\r\n", id2, sizeof id2), 200);
    assert_string_equal(id1, id2);
    assert_int_equal(submit(&b, "noop", "x", "Idempotency-Key: k-2\r\n", id2, sizeof id2), 202);
    assert_string_not_equal(id1, id2);
    assert_int_equal(flh_stop(&a), 0);
    assert_int_equal(flh_stop(&b), 0);
}

/* counts how often each job id appears in the file the exec handler appends to. */
typedef struct runs { int n_lines, dup; long max_id; unsigned char *seen; } runs;

static void read_runs(const char *path, runs *r, long max_id)
{
    char line[64];
    FILE *f = fopen(path, "r");

    memset(r, 0, sizeof *r);
    r->seen = calloc((size_t)max_id + 1, 1);
    assert_non_null(r->seen);
    while (f && fgets(line, sizeof line, f)) {
        long id = strtol(line, NULL, 10);
        r->n_lines++;
        if (id > 0 && id <= max_id && r->seen[id]++)
            r->dup++;
    }
    if (f)
        fclose(f);
}

/* Jobs submitted round-robin to three nodes on one database: each is run once, by one node,
 * and ends succeeded; no id repeats. */
static void test_three_nodes_run_once(void **state)
{
    (void)state;
    enum { N = 3, JOBS = 300 };
    flh_daemon d[N];
    char db[64], conf[N][1024], name[16], out[192], type[512], id[32];
    const char *confs[N];
    runs r;

    assert_int_equal(flh_pg_create_db(pg, db, sizeof db), 0);
    snprintf(out, sizeof out, "/tmp/flingpgruns.%d", (int)getpid());
    unlink(out);
    snprintf(type, sizeof type, "[type.log]\nhandler = exec\ncommand = /bin/sh -c 'echo $FLING_JOB_ID >> %s'\n", out);
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof name, "r%d", i);
        node_conf(conf[i], sizeof conf[i], db, name, type);
        confs[i] = conf[i];
    }
    assert_int_equal(flh_start_many(d, N, confs), 0);
    for (int i = 0; i < JOBS; i++)
        assert_int_equal(submit(&d[i % N], "log", "", NULL, id, sizeof id), 202);
    long done = -1;
    for (double end = flh_now() + 60; flh_now() < end; usleep(100000)) {
        done = flh_pg_query_long(pg, db, "SELECT count(*) FROM jobs WHERE state = 'succeeded'");
        if (done == JOBS)
            break;
    }
    assert_int_equal(done, JOBS);
    read_runs(out, &r, JOBS * 2);
    assert_int_equal(r.n_lines, JOBS);
    assert_int_equal(r.dup, 0);
    assert_int_equal(flh_pg_query_long(pg, db, "SELECT count(DISTINCT id) FROM jobs"), JOBS);
    assert_int_equal(flh_pg_query_long(pg, db, "SELECT max(attempts) FROM jobs"), 1);
    assert_int_equal(flh_pg_query_long(pg, db, "SELECT count(DISTINCT owner) FROM jobs"), N);
    free(r.seen);
    unlink(out);
    for (int i = 0; i < N; i++)
        assert_int_equal(flh_stop(&d[i]), 0);
}

/* The state of job id on db, read from the database itself. */
static void job_row(const char *db, const char *id, const char *col, char *buf, size_t len)
{
    char sql[160];
    snprintf(sql, sizeof sql, "SELECT %s FROM jobs WHERE id = %s", col, id);
    long v = flh_pg_query_long(pg, db, sql);
    snprintf(buf, len, "%ld", v);
}

/* A node killed while its job runs re-queues that job when it starts again (its attempt
 * counted), and leaves the job another node runs alone. */
static void test_restart_requeues_own_orphans_only(void **state)
{
    (void)state;
    flh_daemon a, b;
    char db[64], ca[512], cb[512], ida[32], idb[32], v[32], sql[200];

    assert_int_equal(flh_pg_create_db(pg, db, sizeof db), 0);
    node_conf(ca, sizeof ca, db, "a", NULL);
    node_conf(cb, sizeof cb, db, "b", NULL);
    assert_int_equal(flh_start(&a, ca), 0);
    assert_int_equal(flh_start(&b, cb), 0);
    assert_int_equal(submit(&a, "t", "30", NULL, ida, sizeof ida), 202);
    assert_int_equal(submit(&b, "t", "30", NULL, idb, sizeof idb), 202);
    snprintf(sql, sizeof sql, "SELECT count(*) FROM jobs WHERE state = 'running'");
    long running = 0;
    for (double end = flh_now() + 10; flh_now() < end && running != 2; usleep(20000))
        running = flh_pg_query_long(pg, db, sql);
    assert_int_equal(running, 2);
    flh_kill(&a, SIGKILL);
    assert_int_equal(flh_restart(&a), 0);
    if (flh_log_count(&a, "1 job(s) left running by a previous daemon re-queued") != 1) {
        char cmd[256];
        snprintf(cmd, sizeof cmd, "cat %s >&2", a.log);
        assert_int_equal(system(cmd), 0);
        fail();
    }
    /* a's job runs again, as its second attempt; b's is untouched, still its first */
    long attempts = 0;
    snprintf(sql, sizeof sql, "SELECT attempts FROM jobs WHERE id = %s AND state = 'running'", ida);
    for (double end = flh_now() + 10; flh_now() < end && attempts != 2; usleep(20000))
        attempts = flh_pg_query_long(pg, db, sql);
    assert_int_equal(attempts, 2);
    job_row(db, idb, "attempts", v, sizeof v);
    assert_string_equal(v, "1");
    snprintf(sql, sizeof sql, "SELECT count(*) FROM jobs WHERE id = %s AND state = 'running' AND owner = 'b'", idb);
    assert_int_equal(flh_pg_query_long(pg, db, sql), 1);
    assert_int_equal(flh_stop(&a), 0);
    assert_int_equal(flh_stop(&b), 0);
}

/* The server restarted under load: submits answer 503 while it is away (never a 202 that was
 * not committed), the node reconnects by itself, and every acked job ends succeeded. */
static void test_server_restart(void **state)
{
    (void)state;
    flh_pg own;
    flh_daemon d;
    char db[64], conf[512], id[32];
    int acked = 0, refused = 0;

    assert_int_equal(flh_pg_start(&own), 0);
    flh_pg *shared = pg;
    pg = &own;
    assert_int_equal(flh_pg_create_db(pg, db, sizeof db), 0);
    node_conf(conf, sizeof conf, db, "n", NULL);
    assert_int_equal(flh_start(&d, conf), 0);
    for (int i = 0; i < 50; i++)
        acked += submit(&d, "noop", "", NULL, id, sizeof id) == 202;
    flh_pg_kill(&own);
    for (int i = 0; i < 20; i++) {
        int st = submit(&d, "noop", "", NULL, id, sizeof id);
        assert_true(st == 503 || st == 202);   /* a group that committed just before the stop */
        refused += st == 503;
        acked += st == 202;
    }
    assert_true(refused > 0);
    json_t *h = NULL;
    assert_int_equal(flh_http(&d, "GET", "/healthz", &h), 503);
    json_decref(h);
    assert_int_equal(flh_pg_restart(&own), 0);
    int st = 0;
    for (double end = flh_now() + 20; flh_now() < end && st != 202; usleep(100000))
        st = submit(&d, "noop", "", NULL, id, sizeof id);
    assert_int_equal(st, 202);
    acked++;
    assert_true(flh_log_count(&d, "connected to PostgreSQL again") >= 1);
    long done = -1;
    for (double end = flh_now() + 30; flh_now() < end; usleep(100000)) {
        done = flh_pg_query_long(pg, db, "SELECT count(*) FROM jobs WHERE state = 'succeeded'");
        if (done == acked)
            break;
    }
    assert_int_equal(done, acked);
    assert_int_equal(flh_pg_query_long(pg, db, "SELECT count(*) FROM jobs"), acked);
    assert_int_equal(flh_stop(&d), 0);
    flh_pg_stop(&own);
    pg = shared;
}

/* check_config runs flingd --check-config on text: its exit status, and its stderr in err. */
static int check_config(const char *text, char *err, size_t errlen)
{
    char dir[] = "/tmp/flingpgconf.XXXXXX", path[64], log[96];
    int st = -1;

    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/flingd.conf", dir);
    snprintf(log, sizeof log, "%s/err", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    pid_t pid = fork();
    if (pid == 0) {
        freopen(log, "w", stderr);
        execl(FLINGD_PATH, FLINGD_PATH, "-c", path, "--check-config", (char *)NULL);
        _exit(127);
    }
    waitpid(pid, &st, 0);
    f = fopen(log, "r");
    size_t n = f ? fread(err, 1, errlen - 1, f) : 0;
    err[n] = '\0';
    if (f)
        fclose(f);
    flh_remove_dir(dir);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_config_errors(void **state)
{
    (void)state;
    char err[1024];

    assert_int_not_equal(check_config("[store]\nbackend = postgres\n", err, sizeof err), 0);
    assert_non_null(strstr(err, "needs url"));
    assert_int_not_equal(check_config("[store]\nbackend = postgres\nurl = host='unterminated\n", err, sizeof err), 0);
    assert_non_null(strstr(err, "[store] url"));
    assert_int_not_equal(check_config("[server]\nlisten = 127.0.0.1:0\n[store]\nbackend = postgres\n"
                                      "url = postgresql://127.0.0.1/x\n", err, sizeof err), 0);
    assert_non_null(strstr(err, "[store] node"));
    assert_int_not_equal(check_config("[store]\nurl = postgresql://127.0.0.1/x\n", err, sizeof err), 0);
    assert_non_null(strstr(err, "takes no url"));
    assert_int_equal(check_config("[store]\nbackend = postgres\nurl = host=127.0.0.1 dbname=x\nnode = n1\n", err,
                                  sizeof err), 0);
}

int main(void)
{
    if (!flh_pg_available()) {
        printf("SKIP: PostgreSQL 15 is not installed (%s); scripts/install-deps --test installs it\n", FLH_PG_BIN);
        return 77;
    }
    if (!(pg = flh_pg_shared()))
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_migrate_once),
        cmocka_unit_test(test_idempotency_across_nodes),
        cmocka_unit_test(test_three_nodes_run_once),
        cmocka_unit_test(test_restart_requeues_own_orphans_only),
        cmocka_unit_test(test_server_restart),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
