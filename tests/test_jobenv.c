/* test_jobenv.c — what an exec job and an exec: hook see of flingd: a real flingd, started with
 * secrets in its environment and a descriptor it inherited, runs a /bin/sh script that writes
 * its environment, its open descriptors and its ids into files; the test reads them. Also the
 * per-type env, env_pass, user and group keys, and the PATH a daemon without one gives. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>
#include <jansson.h>

#include "fling.h"
#include "harness.h"

#define WAIT_MS 10000

static flh_daemon D;
static char work[64] = "/tmp/flingenv.XXXXXX";   /* the script; out/ gets what it writes */
static int inherited = -1;                       /* a descriptor flingd inherits from us */

/* dump.sh DIR TAG writes DIR/TAG-$FLING_JOB_ID.{env,fds,ids}, each renamed into place when
 * whole. ls lists its own descriptors: the ones it inherited plus the one it reads the list
 * with. */
static const char script[] =
    "d=\"$1/$2-$FLING_JOB_ID\"\n"
    "cat > /dev/null\n"
    "env > \"$d.env.tmp\"\n"
    "ls /proc/self/fd > \"$d.fds.tmp\"\n"
    "{ id -u; id -g; id -G; } > \"$d.ids.tmp\"\n"
    "for f in env fds ids; do mv \"$d.$f.tmp\" \"$d.$f\"; done\n";

static const char *str(json_t *o, const char *k) { return json_string_value(json_object_get(o, k)); }

/* Submits a job of type to d and waits until it is terminal; its id goes to id. */
static json_t *run_job(const flh_daemon *d, const char *type, char id[24])
{
    fling_client *c = fling_client_new(d->url, NULL);
    fling_response r = { 0 };
    assert_int_equal(fling_submit(c, type, "x", 1, NULL, &r), 0);
    assert_int_equal(r.status, 202);
    snprintf(id, 24, "%s", r.id);
    fling_response_clear(&r);
    fling_client_free(c);
    json_t *job = flh_wait_terminal(d, id, WAIT_MS);
    assert_non_null(job);
    return job;
}

/* The text of out/TAG-ID.KIND once the script moved it there; fails the test if it never comes. */
static char *dump(const char *tag, const char *id, const char *kind)
{
    static char buf[3][16384];
    static int next;
    char path[192];
    snprintf(path, sizeof path, "%s/out/%s-%s.%s", work, tag, id, kind);
    for (double end = flh_now() + WAIT_MS / 1000.0; flh_now() < end; usleep(20000)) {
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        char *b = buf[next++ % 3];
        size_t n = fread(b, 1, sizeof buf[0] - 1, f);
        fclose(f);
        b[n] = '\0';
        return b;
    }
    fail_msg("%s never appeared", path);
    return NULL;
}

/* has_line says whether text has a line that is line, or starts with it when prefix is set. */
static int has_line(const char *text, const char *line, int prefix)
{
    size_t n = strlen(line);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (strncmp(p, line, n) == 0 && (prefix || p[n] == '\n' || p[n] == '\0'))
            return 1;
    return 0;
}

static void assert_var(const char *env, const char *var)
{
    if (!has_line(env, var, 0))
        fail_msg("%s missing from the child's environment:\n%s", var, env);
}

static void assert_no_var(const char *env, const char *name_eq)
{
    if (has_line(env, name_eq, 1))
        fail_msg("%s... leaked into the child's environment:\n%s", name_eq, env);
}

/* Exactly 0, 1, 2 and the descriptor ls reads /proc/self/fd with. */
static void assert_only_std_fds(const char *fds)
{
    if (strcmp(fds, "0\n1\n2\n3\n") != 0)
        fail_msg("the child had other descriptors open:\n%s", fds);
}

/* What every exec child of the dump type gets: no secret of flingd's, the FLING_* variables,
 * the passed ones, env_pass and env. */
static void assert_dump_env(const char *env, const char *id, const char *type, const char *attempt)
{
    char var[4096];
    assert_no_var(env, "FLING_TOKEN=");
    assert_no_var(env, "REDIS_PASSWORD=");
    assert_no_var(env, "FLINGTEST_NOT_PASSED=");
    assert_no_var(env, "FLINGTEST_UNSET=");
    snprintf(var, sizeof var, "FLING_JOB_ID=%s", id);
    assert_var(env, var);
    snprintf(var, sizeof var, "FLING_JOB_TYPE=%s", type);
    assert_var(env, var);
    snprintf(var, sizeof var, "FLING_ATTEMPT=%s", attempt);
    assert_var(env, var);
    snprintf(var, sizeof var, "PATH=%s", getenv("PATH"));
    assert_var(env, var);
    assert_var(env, "LANG=C.UTF-8");                 /* passed from flingd's environment */
    assert_var(env, "FLINGTEST_PASSED=passed on");   /* env_pass */
    assert_var(env, "APP_ENV=prod");                 /* env */
    assert_var(env, "WITH_BLANK=a b");
    assert_var(env, "HOME=/srv/app");                /* env wins over a passed variable */
}

/* ---------------------------------------------------------------- tests */

static void exec_job_sees_a_clean_environment_and_fds(void **state)
{
    (void)state;
    char id[24], fd_link[64], target[256];
    /* flingd really holds what the job must not get: the inherited descriptor */
    snprintf(fd_link, sizeof fd_link, "/proc/%d/fd/%d", (int)D.pid, inherited);
    assert_true(readlink(fd_link, target, sizeof target) > 0);
    json_t *job = run_job(&D, "dump", id);
    assert_string_equal(str(job, "state"), "succeeded");
    json_decref(job);
    assert_only_std_fds(dump("job", id, "fds"));
    assert_dump_env(dump("job", id, "env"), id, "dump", "1");
}

static void exec_hook_sees_the_same(void **state)
{
    (void)state;
    char id[24];
    json_t *job = run_job(&D, "dump", id);
    json_decref(job);
    assert_only_std_fds(dump("hook", id, "fds"));
    assert_dump_env(dump("hook", id, "env"), id, "dump", "1");   /* the delivery's attempt */
}

/* As root, user/group run the job as nobody:nogroup, without root's supplementary groups. */
static void user_and_group_drop_privileges(void **state)
{
    (void)state;
    if (geteuid() != 0)
        skip();
    const struct passwd *pw = getpwnam("nobody");
    const struct group *gr = getgrnam("nogroup");
    assert_non_null(pw);
    assert_non_null(gr);
    char id[24], want[96], home[300];
    json_t *job = run_job(&D, "asuser", id);
    assert_string_equal(str(job, "state"), "succeeded");
    json_decref(job);
    snprintf(want, sizeof want, "%u\n%u\n%u\n", (unsigned)pw->pw_uid, (unsigned)gr->gr_gid,
             (unsigned)gr->gr_gid);
    assert_string_equal(dump("user", id, "ids"), want);
    const char *env = dump("user", id, "env");
    snprintf(home, sizeof home, "HOME=%s", pw->pw_dir);
    assert_var(env, home);
    assert_var(env, "USER=nobody");
    assert_var(env, "LOGNAME=nobody");
    assert_no_var(env, "FLING_TOKEN=");
    assert_only_std_fds(dump("user", id, "fds"));
}

/* A command that cannot run under a user fails the attempt with the reason. */
static void user_job_exec_failure_is_reported(void **state)
{
    (void)state;
    if (geteuid() != 0)
        skip();
    char id[24];
    json_t *job = run_job(&D, "asuser_missing", id);
    assert_string_equal(str(job, "state"), "failed");
    assert_string_equal(str(job, "error"), "exec /nonexistent/cmd: No such file or directory");
    json_decref(job);
}

/* flingd without PATH gives its children a default one. */
static void missing_path_gets_a_default(void **state)
{
    (void)state;
    char *path = strdup(getenv("PATH"));
    assert_non_null(path);
    flh_daemon d2;
    char conf[512], id[24];
    snprintf(conf, sizeof conf, "[type.dump]\nhandler = exec\ncommand = /bin/sh %s/dump.sh %s/out bare\n",
             work, work);
    unsetenv("PATH");
    int rc = flh_start(&d2, conf);
    setenv("PATH", path, 1);
    free(path);
    assert_int_equal(rc, 0);
    json_t *job = run_job(&d2, "dump", id);
    assert_string_equal(str(job, "state"), "succeeded");
    json_decref(job);
    assert_var(dump("bare", id, "env"), "PATH=/usr/local/bin:/usr/bin:/bin");
    assert_int_equal(flh_stop(&d2), 0);
}

/* ---------------------------------------------------------------- setup */

static int write_file(const char *path, const char *text, mode_t mode)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    int rc = fputs(text, f) < 0 ? -1 : 0;
    if (fclose(f) != 0 || chmod(path, mode) != 0)
        rc = -1;
    return rc;
}

static int start(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    char path[128], conf[2048];
    if (!mkdtemp(work) || chmod(work, 0755) != 0)
        return -1;
    snprintf(path, sizeof path, "%s/out", work);
    if (mkdir(path, 0777) != 0 || chmod(path, 0777) != 0)   /* nobody writes there too */
        return -1;
    snprintf(path, sizeof path, "%s/dump.sh", work);
    if (write_file(path, script, 0755) != 0)
        return -1;
    /* flingd's environment: secrets, a variable to pass on, one not to */
    setenv("FLING_TOKEN", "secret", 1);
    setenv("REDIS_PASSWORD", "x", 1);
    setenv("FLINGTEST_PASSED", "passed on", 1);
    setenv("FLINGTEST_NOT_PASSED", "y", 1);
    unsetenv("FLINGTEST_UNSET");
    setenv("LANG", "C.UTF-8", 1);
    inherited = open("/dev/null", O_RDONLY);   /* not close-on-exec: flingd inherits it */
    if (inherited < 0)
        return -1;
    snprintf(conf, sizeof conf,
             "[callbacks]\nallow = http://127.0.0.1:1\n"   /* a webhook, so libcurl runs */
             "[type.dump]\nhandler = exec\ncommand = /bin/sh %s/dump.sh %s/out job\nmax_attempts = 1\n"
             "env = APP_ENV=prod, WITH_BLANK=a b, HOME=/srv/app\n"
             "env_pass = FLINGTEST_PASSED, FLINGTEST_UNSET\n"
             "on_complete = exec:/bin/sh %s/dump.sh %s/out hook\n"
             "[type.asuser]\nhandler = exec\ncommand = /bin/sh %s/dump.sh %s/out user\nmax_attempts = 1\n"
             "user = nobody\ngroup = nogroup\n"
             "[type.asuser_missing]\nhandler = exec\ncommand = /nonexistent/cmd\nmax_attempts = 1\n"
             "user = nobody\n",
             work, work, work, work, work, work);
    return flh_start(&D, conf);
}

static int stop(void **state)
{
    (void)state;
    int rc = flh_stop(&D);
    close(inherited);
    if (flh_remove_dir(work) != 0)
        rc = -1;
    return rc;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(exec_job_sees_a_clean_environment_and_fds),
        cmocka_unit_test(exec_hook_sees_the_same),
        cmocka_unit_test(user_and_group_drop_privileges),
        cmocka_unit_test(user_job_exec_failure_is_reported),
        cmocka_unit_test(missing_path_gets_a_default),
    };
    return cmocka_run_group_tests(tests, start, stop);
}
