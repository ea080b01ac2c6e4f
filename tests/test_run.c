/* test_run.c — running jobs with a real flingd: exec success and failure with output kept,
 * a command that cannot be executed, the child's signals at their defaults, time limits
 * (TIMEOUT bit, process group gone, 3 with a departed client), retries then failed, delay
 * and priority order, cancel of queued and running jobs, kill -9 while jobs run, the SIGTERM
 * drain, and an outcome written again after a real disk-full (a tiny tmpfs, as root). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sqlite3.h>

#include "fling.h"
#include "harness.h"
#include "receiver.h"

static flh_daemon D;
static char dir_conf[4096];
static char work[64] = "/tmp/flingrun.XXXXXX";   /* files the test jobs write */
static char slow_pid[128], order_txt[128];

static flr_receiver *hook;   /* where the http handler of type hook posts */

static int setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    hook = flr_start();
    char *hook_url = hook ? flr_url(hook, "hook") : NULL;
    if (!mkdtemp(work) || !hook_url) {
        free(hook_url);
        return -1;
    }
    snprintf(slow_pid, sizeof slow_pid, "%s/slow.pid", work);
    snprintf(order_txt, sizeof order_txt, "%s/order.txt", work);
    snprintf(dir_conf, sizeof dir_conf,
             "[workers]\ncount = 4\n"
             "[type.echo]\nhandler = exec\ncommand = /bin/sh -c 'echo \"job $FLING_JOB_ID attempt $FLING_ATTEMPT\"; cat; echo oops >&2; exit 0'\n"
             "[type.fail]\nhandler = exec\ncommand = /bin/sh -c 'echo failing; exit 3'\nmax_attempts = 3\nbackoff = 0.1\n"
             "[type.slow]\nhandler = exec\ncommand = /bin/sh -c 'echo $$ > \"$0\"; sleep 30 & wait' %s/slow.pid\n"
             "timeout = 0.5\nmax_attempts = 1\n"
             "[type.order]\nhandler = exec\ncommand = /bin/sh -c 'read x; [ \"$x\" = block ] && sleep 1; echo \"$x\" >> \"$0\"' %s/order.txt\n"
             "concurrency = 1\n"
             "[type.missing]\nhandler = exec\ncommand = /nonexistent/cmd\nmax_attempts = 1\n"
             "[type.sigs]\nhandler = exec\ncommand = /bin/sh -c 'exec grep -E \"^Sig(Blk|Ign)\" /proc/self/status'\n"
             "[type.nap]\nhandler = sleep\n"
             "[type.quick]\nhandler = noop\n"
             "[type.hook]\nhandler = http\nurl = %s\nmax_attempts = 1\n",
             work, work, hook_url);
    free(hook_url);
    return 0;
}

static void submit(const flh_daemon *d, const char *type, const char *payload, const fling_job_opts *o, char id[24])
{
    fling_client *c = fling_client_new(d->url, NULL);
    fling_response r = { 0 };
    assert_int_equal(fling_submit(c, type, payload, strlen(payload), o, &r), 0);
    snprintf(id, 24, "%s", r.id);
    fling_response_clear(&r);
    fling_client_free(c);
}

static const char *str(json_t *job, const char *k) { return json_string_value(json_object_get(job, k)); }
static long num(json_t *job, const char *k) { return (long)json_integer_value(json_object_get(job, k)); }

static void exec_success_keeps_output(void **state)
{
    (void)state;
    char id[24];
    submit(&D, "echo", "payload-bytes", NULL, id);
    json_t *job = flh_wait_terminal(&D, id, 10000);
    assert_string_equal(str(job, "state"), "succeeded");
    assert_int_equal(num(job, "exit_code"), 0);
    assert_int_equal(num(job, "attempts"), 1);
    char want[64];
    snprintf(want, sizeof want, "job %s attempt 1", id);
    assert_non_null(strstr(str(job, "output"), want));
    assert_non_null(strstr(str(job, "output"), "payload-bytes"));
    assert_non_null(strstr(str(job, "output"), "oops"));
    assert_non_null(str(job, "started_at"));
    assert_non_null(str(job, "finished_at"));
    json_decref(job);
}

/* A command that cannot be executed fails its attempt with execve's reason, and no exit code. */
static void exec_failure_is_reported(void **state)
{
    (void)state;
    char id[24];
    submit(&D, "missing", "", NULL, id);
    json_t *job = flh_wait_terminal(&D, id, 10000);
    assert_string_equal(str(job, "state"), "failed");
    assert_string_equal(str(job, "error"), "exec /nonexistent/cmd: No such file or directory");
    json_t *code = json_object_get(job, "exit_code");
    assert_true(!code || json_is_null(code));
    json_decref(job);
}

/* A child starts with no signal blocked or ignored, though flingd ignores SIGPIPE and spawns
 * with every signal blocked. */
static void exec_child_has_default_signals(void **state)
{
    (void)state;
    char id[24];
    submit(&D, "sigs", "", NULL, id);
    json_t *job = flh_wait_terminal(&D, id, 10000);
    assert_string_equal(str(job, "state"), "succeeded");
    assert_string_equal(str(job, "output"), "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n");
    json_decref(job);
}

static void retries_then_failed(void **state)
{
    (void)state;
    char id[24];
    submit(&D, "fail", "", NULL, id);
    json_t *job = flh_wait_terminal(&D, id, 15000);
    assert_string_equal(str(job, "state"), "failed");
    assert_int_equal(num(job, "attempts"), 3);
    assert_int_equal(num(job, "exit_code"), 3);
    assert_non_null(strstr(str(job, "error"), "exit code 3"));
    assert_non_null(strstr(str(job, "output"), "failing"));
    json_decref(job);
}

/* Is any process of the group whose leader's pid is in pidfile still running? Zombies left
 * for init to reap don't count. 1 yes, 0 no, -1 no pid file. */
/* /metrics: queue depth by type and state, outcomes by type, attempt durations by type. */
static void metrics_by_type(void **state)
{
    (void)state;
    char id[24];
    fling_job_opts later = { .delay = 3600 };
    submit(&D, "nap", "1", &later, id);
    assert_int_equal(flh_metric(&D, "fling_jobs{type=\"nap\",state=\"scheduled\"}"), 1);
    assert_int_equal(flh_metric(&D, "fling_type_attempts_total{type=\"fail\",outcome=\"failed\"}"), 1);
    assert_int_equal(flh_metric(&D, "fling_type_attempts_total{type=\"fail\",outcome=\"retried\"}"), 2);
    assert_int_equal(flh_metric(&D, "fling_attempt_seconds_count{type=\"fail\"}"), 3);
    assert_int_equal(flh_metric(&D, "fling_type_attempts_total{type=\"echo\",outcome=\"succeeded\"}"), 1);
    char path[64];
    snprintf(path, sizeof path, "/v1/jobs/%s", id);
    assert_int_equal(flh_http(&D, "DELETE", path, NULL), 200);
    assert_int_equal(flh_metric(&D, "fling_jobs{type=\"nap\",state=\"scheduled\"}"), 0);
}

static int group_alive(const char *pidfile)
{
    FILE *f = fopen(pidfile, "r");
    if (!f)
        return -1;
    int pgid = 0;
    int n = fscanf(f, "%d", &pgid);
    fclose(f);
    if (n != 1 || pgid <= 0)
        return -1;
    DIR *d = opendir("/proc");
    struct dirent *e;
    int alive = 0;
    while (d && (e = readdir(d)) && !alive) {
        char path[300], buf[512];
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        FILE *s = fopen(path, "r");
        if (!s)
            continue;
        size_t len = fread(buf, 1, sizeof buf - 1, s);
        fclose(s);
        buf[len] = '\0';
        char *rp = strrchr(buf, ')');   /* after "pid (comm)": state ppid pgrp */
        char state;
        int ppid, pgrp;
        if (rp && sscanf(rp + 1, " %c %d %d", &state, &ppid, &pgrp) == 3 && pgrp == pgid && state != 'Z')
            alive = 1;
    }
    if (d)
        closedir(d);
    return alive;
}

static void timeout_sets_bit_2_and_kills_the_group(void **state)
{
    (void)state;
    unlink(slow_pid);
    char id[24];
    submit(&D, "slow", "", NULL, id);
    json_t *job = flh_wait_terminal(&D, id, 10000);
    assert_string_equal(str(job, "state"), "failed");
    assert_int_equal(num(job, "status"), 2);
    assert_non_null(strstr(str(job, "error"), "timed out"));
    json_decref(job);
    usleep(100000);
    assert_int_equal(group_alive(slow_pid), 0);   /* the shell and its background sleep are gone */
}

static void fire_and_forget_timeout_is_status_3(void **state)
{
    (void)state;
    fling_client *c = fling_client_new(D.url, NULL);
    long before = flh_count_jobs(&D, "slow", NULL);
    assert_int_equal(fling_fire(c, "slow", "", 0, NULL), 0);
    fling_client_free(c);
    assert_int_equal(flh_wait_count(&D, "slow", before + 1, 5000, NULL), before + 1);
    json_t *list = NULL;
    assert_int_equal(flh_http(&D, "GET", "/v1/jobs?type=slow&limit=1", &list), 200);
    char id[24];
    snprintf(id, sizeof id, "%s", str(json_array_get(json_object_get(list, "jobs"), 0), "id"));
    json_decref(list);
    json_t *job = flh_wait_terminal(&D, id, 10000);
    assert_int_equal(num(job, "status"), 3);
    json_decref(job);
}

static void delay_and_priority_order(void **state)
{
    (void)state;
    unlink(order_txt);
    /* One slot for type order: a 1 s "block" job holds it while three more are queued with
     * different priorities, and a fourth waits for its delay. */
    fling_job_opts later = { .delay = 2.5 };
    fling_job_opts low = { .has_priority = 1, .priority = -5 };
    fling_job_opts high = { .has_priority = 1, .priority = 10 };
    char id[24], path[64];
    submit(&D, "order", "block", NULL, id);
    submit(&D, "order", "delayed", &later, id);
    snprintf(path, sizeof path, "/v1/jobs/%s", id);
    json_t *job = NULL;
    assert_int_equal(flh_http(&D, "GET", path, &job), 200);
    assert_string_equal(str(job, "state"), "scheduled");
    json_decref(job);
    submit(&D, "order", "low", &low, id);
    submit(&D, "order", "mid", NULL, id);
    submit(&D, "order", "high", &high, id);
    for (double end = flh_now() + 10; flh_now() < end; usleep(50000)) {
        FILE *f = fopen(order_txt, "r");
        char buf[256] = "";
        size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
        if (f)
            fclose(f);
        buf[n] = '\0';
        if (strstr(buf, "delayed")) {
            assert_string_equal(buf, "block\nhigh\nmid\nlow\ndelayed\n");
            return;
        }
    }
    fail_msg("the delayed job never ran");
}

static void cancel_queued_and_running(void **state)
{
    (void)state;
    char id[24], path[64];
    fling_job_opts later = { .delay = 30 };
    submit(&D, "nap", "1", &later, id);
    snprintf(path, sizeof path, "/v1/jobs/%s", id);
    json_t *job = NULL;
    assert_int_equal(flh_http(&D, "DELETE", path, &job), 200);
    assert_string_equal(str(job, "state"), "cancelled");
    json_decref(job);

    submit(&D, "nap", "30", NULL, id);
    snprintf(path, sizeof path, "/v1/jobs/%s", id);
    for (double end = flh_now() + 5; flh_now() < end; usleep(20000)) {
        assert_int_equal(flh_http(&D, "GET", path, &job), 200);
        int running = !strcmp(str(job, "state"), "running");
        json_decref(job);
        if (running)
            break;
    }
    assert_int_equal(flh_http(&D, "DELETE", path, &job), 202);
    json_decref(job);
    job = flh_wait_terminal(&D, id, 5000);
    assert_string_equal(str(job, "state"), "cancelled");
    json_decref(job);
}

static void kill9_while_running_then_all_terminal(void **state)
{
    (void)state;
    char ids[6][24];
    for (int i = 0; i < 6; i++)
        submit(&D, "nap", "0.3", NULL, ids[i]);
    usleep(100000);
    flh_kill(&D, SIGKILL);
    assert_int_equal(flh_restart(&D), 0);
    for (int i = 0; i < 6; i++) {
        json_t *job = flh_wait_terminal(&D, ids[i], 10000);
        assert_string_equal(str(job, "state"), "succeeded");
        json_decref(job);
    }
}

static void sigterm_drains_running_jobs(void **state)
{
    (void)state;
    char id[24];
    submit(&D, "nap", "0.5", NULL, id);
    usleep(150000);
    double t0 = flh_now();
    int st = flh_kill(&D, SIGTERM);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    assert_true(flh_now() - t0 >= 0.2);   /* it waited for the job */
    assert_int_equal(flh_restart(&D), 0);
    char path[64];
    snprintf(path, sizeof path, "/v1/jobs/%s", id);
    json_t *job = NULL;
    assert_int_equal(flh_http(&D, "GET", path, &job), 200);
    assert_string_equal(str(job, "state"), "succeeded");
    json_decref(job);
}

static void http_handler_posts_the_payload(void **state)
{
    (void)state;
    char id[24];
    size_t before = flr_count(hook);
    submit(&D, "hook", "hook-payload", NULL, id);
    json_t *job = flh_wait_terminal(&D, id, 10000);
    assert_string_equal(str(job, "state"), "succeeded");
    assert_string_equal(str(job, "output"), "received");
    json_decref(job);
    assert_int_equal(flr_wait(hook, before + 1, 1000), 0);
    const flr_request *q = flr_get(hook, before);
    assert_string_equal(q->method, "POST");
    assert_string_equal(q->path, "/hook");
    assert_string_equal(q->version, "HTTP/1.1");
    assert_string_equal(q->body, "hook-payload");
    assert_int_equal(flr_set_statuses(hook, NULL, 0, 500), 0);   /* a non-2xx answer fails the attempt */
    submit(&D, "hook", "hook-payload", NULL, id);
    job = flh_wait_terminal(&D, id, 10000);
    assert_string_equal(str(job, "state"), "failed");
    assert_non_null(strstr(str(job, "error"), "500"));
    json_decref(job);
    assert_int_equal(flr_wait(hook, before + 2, 1000), 0);
    assert_int_equal(flr_get(hook, before + 1)->status, 500);
}

/* A job longer than shutdown_grace (0.5 s in the harness) is stopped and handed back. */
static void sigterm_requeues_what_outlives_the_grace(void **state)
{
    (void)state;
    char id[24], path[64];
    submit(&D, "nap", "30", NULL, id);
    snprintf(path, sizeof path, "/v1/jobs/%s", id);
    usleep(200000);
    double t0 = flh_now();
    int st = flh_kill(&D, SIGTERM);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    assert_true(flh_now() - t0 < 5);
    /* Read the row before a new daemon could run it again. */
    sqlite3 *db;
    assert_int_equal(sqlite3_open_v2(D.db, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    char sql[128];
    snprintf(sql, sizeof sql, "SELECT state, attempts FROM jobs WHERE id = %s", id);
    sqlite3_stmt *q;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &q, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(q, 0), "queued");
    assert_int_equal(sqlite3_column_int(q, 1), 1);
    sqlite3_finalize(q);
    sqlite3_close(db);
    assert_int_equal(flh_restart(&D), 0);
}

/* How many times needle occurs in the file at path. */
static int occurrences(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    int count = 0;
    for (const char *p = buf; (p = strstr(p, needle)); p += strlen(needle))
        count++;
    return count;
}

/* Writes into path until the file system is full; returns the bytes written. */
static long fill_up(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    static char block[4096];
    long total = 0;
    for (int i = 0; i < 4096; i++) {   /* 16 MiB at most: far more than the 1 MiB mount */
        ssize_t n = write(fd, block, sizeof block);
        if (n <= 0)
            break;
        total += n;
    }
    close(fd);
    return total;
}

/* The database on a 1 MiB tmpfs, filled up by a file while the job runs, so that its FINISH fails
 * with a real ENOSPC; the file goes once that failure is logged. The outcome must be written
 * when there is room again: the job ends succeeded, DELETE refuses it as ended, on_complete runs. */
static void outcome_is_written_once_the_disk_has_room(void **state)
{
    (void)state;
    if (geteuid() != 0)
        skip();
    char dir[] = "/tmp/flingfull.XXXXXX";
    assert_non_null(mkdtemp(dir));
    if (mount("tmpfs", dir, "tmpfs", 0, "size=1m") != 0) {
        rmdir(dir);
        skip();
    }
    char conf[1024], filler[64], done[160];
    snprintf(filler, sizeof filler, "%s/filler", dir);
    snprintf(done, sizeof done, "%s/complete.json", work);
    unlink(done);
    snprintf(conf, sizeof conf,
             "[store]\npath = %s/fling.db\n"
             "[type.full]\nhandler = sleep\nmax_attempts = 1\n"
             "on_complete = exec:/bin/sh -c 'cat > \"$0.tmp\" && mv \"$0.tmp\" \"$0\"' %s\n",
             dir, done);
    static flh_daemon t;   /* static: the harness's exit hook still finds it if an assert jumps out */
    assert_int_equal(flh_start(&t, conf), 0);
    char id[24], path[64];
    submit(&t, "full", "1", NULL, id);
    snprintf(path, sizeof path, "/v1/jobs/%s", id);
    json_t *job = NULL;
    int running = 0;
    for (double end = flh_now() + 5; flh_now() < end && !running; usleep(20000)) {
        assert_int_equal(flh_http(&t, "GET", path, &job), 200);
        running = !strcmp(str(job, "state"), "running");
        json_decref(job);
    }
    assert_true(running);
    assert_true(fill_up(filler) > 0);
    static const char failed_line[] = "could not record its outcome";
    for (double end = flh_now() + 10; flh_now() < end && !occurrences(t.log, failed_line);)
        usleep(20000);
    assert_int_equal(occurrences(t.log, failed_line), 1);
    usleep(500000);   /* a few more writes fail meanwhile: logged once all the same */
    assert_int_equal(flh_http(&t, "GET", path, &job), 200);
    assert_string_equal(str(job, "state"), "running");
    json_decref(job);
    assert_int_equal(unlink(filler), 0);

    job = flh_wait_terminal(&t, id, 15000);
    assert_non_null(job);
    assert_string_equal(str(job, "state"), "succeeded");
    json_decref(job);
    assert_int_equal(occurrences(t.log, failed_line), 1);
    assert_int_equal(occurrences(t.log, "recorded after"), 1);
    assert_int_equal(flh_http(&t, "DELETE", path, &job), 409);
    assert_string_equal(str(job, "error"), "not_cancellable");
    assert_non_null(strstr(str(job, "message"), "is succeeded"));
    json_decref(job);
    int delivered = 0;
    for (double end = flh_now() + 10; flh_now() < end && !delivered; usleep(20000))
        delivered = access(done, F_OK) == 0;
    assert_true(delivered);
    assert_int_equal(occurrences(done, "\"succeeded\""), 1);
    unlink(done);
    assert_int_equal(flh_stop(&t), 0);
    umount(dir);
    rmdir(dir);
}

static int start(void **state)
{
    if (setup(state) < 0)
        return -1;
    return flh_start(&D, dir_conf);
}

static int stop(void **state)
{
    (void)state;
    unlink(slow_pid);
    unlink(order_txt);
    rmdir(work);
    flr_stop(hook);
    return flh_stop(&D);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(exec_success_keeps_output),
        cmocka_unit_test(exec_failure_is_reported),
        cmocka_unit_test(exec_child_has_default_signals),
        cmocka_unit_test(retries_then_failed),
        cmocka_unit_test(metrics_by_type),
        cmocka_unit_test(timeout_sets_bit_2_and_kills_the_group),
        cmocka_unit_test(fire_and_forget_timeout_is_status_3),
        cmocka_unit_test(delay_and_priority_order),
        cmocka_unit_test(cancel_queued_and_running),
        cmocka_unit_test(kill9_while_running_then_all_terminal),
        cmocka_unit_test(sigterm_drains_running_jobs),
        cmocka_unit_test(http_handler_posts_the_payload),
        cmocka_unit_test(sigterm_requeues_what_outlives_the_grace),
        cmocka_unit_test(outcome_is_written_once_the_disk_has_room),
    };
    return cmocka_run_group_tests(tests, start, stop);
}
