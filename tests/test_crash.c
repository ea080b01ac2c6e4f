/* test_crash.c — ack means durable: kill -9 flingd while clients submit, restart it on the same
 * database, and every job that got a 202 is there. Also: SIGTERM stops it cleanly (exit 0),
 * SIGHUP does not stop it, root is refused without --allow-root, and --version. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fling.h"
#include "harness.h"

#define SUBMITTERS 4
#define MAX_IDS 200000

static flh_daemon D;
static long acked_ids[SUBMITTERS][MAX_IDS / SUBMITTERS];
static long n_acked[SUBMITTERS];
static atomic_int stop_submitting;

static void *submitter(void *arg)
{
    long k = (long)arg;
    fling_client *c = fling_client_new(D.url, NULL);
    fling_client_set_timeouts(c, 1000, 2000);
    while (!atomic_load(&stop_submitting) && n_acked[k] < MAX_IDS / SUBMITTERS) {
        fling_response r = { 0 };
        if (fling_submit(c, "t", "3600", 4, NULL, &r) == 0 && r.status == 202)
            acked_ids[k][n_acked[k]++] = strtol(r.id, NULL, 10);
        fling_response_clear(&r);
    }
    fling_client_free(c);
    return NULL;
}

static void kill9_keeps_every_acked_job(void **state)
{
    (void)state;
    assert_int_equal(flh_start(&D, NULL), 0);
    long total = 0;
    for (int round = 0; round < 3; round++) {
        memset(n_acked, 0, sizeof n_acked);
        atomic_store(&stop_submitting, 0);
        pthread_t th[SUBMITTERS];
        for (long k = 0; k < SUBMITTERS; k++)
            assert_int_equal(pthread_create(&th[k], NULL, submitter, (void *)k), 0);
        usleep(300000 + round * 100000);
        assert_true(WIFSIGNALED(flh_kill(&D, SIGKILL)));
        atomic_store(&stop_submitting, 1);
        for (int k = 0; k < SUBMITTERS; k++)
            pthread_join(th[k], NULL);
        assert_int_equal(flh_restart(&D), 0);
        fling_client *c = fling_client_new(D.url, NULL);
        long checked = 0, lost = 0;
        for (int k = 0; k < SUBMITTERS; k++) {
            for (long i = 0; i < n_acked[k]; i++) {
                char path[64];
                snprintf(path, sizeof path, "/v1/jobs/%ld", acked_ids[k][i]);
                fling_response r = { 0 };
                if (fling_request(c, "GET", path, NULL, 0, &r) != 0) {
                    if (lost++ < 10)
                        fprintf(stderr, "round %d: acked job %ld lost (status %d)\n", round, acked_ids[k][i], r.status);
                }
                fling_response_clear(&r);
                checked++;
            }
        }
        fling_client_free(c);
        printf("round %d: %ld acked jobs checked after kill -9, %ld lost\n", round, checked, lost);
        assert_true(checked > 0);
        assert_int_equal(lost, 0);
        total += checked;
    }
    assert_true(flh_count_jobs(&D, "t", NULL) >= total);
}

/* Runs flingd with args (killed after 10 s: a flingd that starts instead of refusing is a failure
 * too), returns its exit status (-1 if it did not exit by itself); out gets stdout and stderr. */
static int run_flingd(const char *args, char *out, size_t outsz)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "timeout -s KILL 10 '%s' %s 2>&1", FLINGD_PATH, args);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(out, 1, outsz - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) && WEXITSTATUS(st) != 128 + SIGKILL ? WEXITSTATUS(st) : -1;
}

static void version_is_printed(void **state)
{
    (void)state;
    char out[256];
    assert_int_equal(run_flingd("--version", out, sizeof out), 0);
    int major, minor, patch;
    char end;
    assert_int_equal(sscanf(out, "flingd %d.%d.%d%c", &major, &minor, &patch, &end), 4);
    assert_int_equal(end, '\n');
}

/* As root without --allow-root flingd refuses to start, on one line, with exit code 2. Its
 * listen address and database are a free port and a temp dir, should it start after all. */
static void root_is_refused_without_allow_root(void **state)
{
    (void)state;
    if (geteuid() != 0)
        skip();
    char dir[] = "/tmp/flingroot.XXXXXX", args[256], out[1024];
    assert_non_null(mkdtemp(dir));
    snprintf(args, sizeof args, "--listen 127.0.0.1:0 --db %s/fling.db", dir);
    int code = run_flingd(args, out, sizeof out);
    snprintf(args, sizeof args, "rm -rf '%s'", dir);
    assert_int_equal(system(args), 0);
    assert_int_equal(code, 2);
    assert_string_equal(out, "flingd: refusing to run as root: jobs would run as root too; use a service user, "
                             "or --allow-root\n");
}

/* SIGHUP, which ends a process by default, reads the configuration again and keeps it
 * running (what a reload changes: test_reload.c). */
static void sighup_keeps_it_running(void **state)
{
    (void)state;
    /* D: the daemon the kill -9 test left running (never kill(0, …): that is our whole group) */
    assert_true(D.pid > 0);
    assert_int_equal(kill(D.pid, SIGHUP), 0);
    int logged = 0;
    for (double end = flh_now() + 5; flh_now() < end && !logged; usleep(20000))
        logged = flh_log_count(&D, "reload: nothing changed that can change live") > 0;
    assert_true(logged);
    assert_int_equal(flh_http(&D, "GET", "/healthz", NULL), 200);
}

/* With [server] log = FILE, SIGHUP reopens it, as logrotate expects after renaming the file;
 * --print-config shows the effective configuration. */
static void sighup_reopens_the_log_file(void **state)
{
    (void)state;
    flh_daemon d;
    char conf[256];
    char dir[] = "/tmp/fl-hup-XXXXXX";
    assert_non_null(mkdtemp(dir));
    snprintf(conf, sizeof conf, "[server]\nlog = %s/flingd.log\nlog_format = json\n", dir);
    assert_int_equal(flh_start(&d, conf), 0);
    char path[300], old[300];
    snprintf(path, sizeof path, "%s/flingd.log", dir);
    snprintf(old, sizeof old, "%s/flingd.log.1", dir);
    assert_int_equal(rename(path, old), 0);
    assert_true(d.pid > 0);
    assert_int_equal(kill(d.pid, SIGHUP), 0);
    int reopened = 0;
    for (double end = flh_now() + 5; flh_now() < end && !reopened; usleep(20000)) {
        FILE *f = fopen(path, "r");
        char line[1024];
        while (f && fgets(line, sizeof line, f))
            if (strstr(line, "\"msg\":\"SIGHUP: log reopened"))
                reopened = 1;
        if (f)
            fclose(f);
    }
    assert_true(reopened);
    assert_int_equal(flh_http(&d, "GET", "/healthz", NULL), 200);

    char cmd[600];
    snprintf(cmd, sizeof cmd, "'%s' --print-config -c '%s' | grep -q '^log_format = json$'", FLINGD_PATH, d.conf);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(flh_stop(&d), 0);
    unlink(path);
    unlink(old);
    rmdir(dir);
}

static void sigterm_exits_zero(void **state)
{
    (void)state;
    double t0 = flh_now();
    assert_int_equal(flh_stop(&D), 0);   /* SIGTERM, then exit status 0 */
    assert_true(flh_now() - t0 < 5);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(kill9_keeps_every_acked_job),
        cmocka_unit_test(version_is_printed),
        cmocka_unit_test(root_is_refused_without_allow_root),
        cmocka_unit_test(sighup_keeps_it_running),
        cmocka_unit_test(sighup_reopens_the_log_file),
        cmocka_unit_test(sigterm_exits_zero),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
