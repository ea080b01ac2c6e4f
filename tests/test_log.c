/* test_log.c — log.c in this process: JSON records parsed line by line (fields, escaping, bytes
 * that are not UTF-8), the text format's context, the file created 0640 and appended to, and
 * fl_log_reopen after a logrotate-style rename writing to the new file, and fl_log_switch
 * (a reload) between stderr and files, formats and levels. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>
#include <jansson.h>

#include "harness.h"
#include "log.h"

typedef struct logdir {
    char dir[64];
    char path[128];
} logdir;

static int setup(void **state)
{
    logdir *d = calloc(1, sizeof *d);
    if (!d)
        return -1;
    snprintf(d->dir, sizeof d->dir, "/tmp/flinglog.XXXXXX");
    if (!mkdtemp(d->dir))
        return -1;
    snprintf(d->path, sizeof d->path, "%s/flingd.log", d->dir);
    *state = d;
    return 0;
}

static int teardown(void **state)
{
    logdir *d = *state;
    fl_log_close();
    int rc = flh_remove_dir(d->dir);
    free(d);
    return rc < 0 ? -1 : 0;
}

/* Reads path whole (NUL-terminated; caller frees). */
static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        fail_msg("%s: %s", path, strerror(errno));
    char *buf = calloc(1, 65536);
    assert_non_null(buf);
    size_t n = fread(buf, 1, 65535, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* Splits the file into lines and parses each as one JSON object: how many, up to max. */
static size_t json_lines(const char *path, json_t **out, size_t max)
{
    char *buf = slurp(path), *save = NULL;
    size_t n = 0;
    assert_true(buf[0] == '\0' || buf[strlen(buf) - 1] == '\n');
    for (char *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        json_error_t err;
        assert_true(n < max);
        out[n] = json_loads(line, 0, &err);
        if (!json_is_object(out[n]))
            fail_msg("line %zu is not a JSON object (%s): %s", n + 1, err.text, line);
        n++;
    }
    free(buf);
    return n;
}

static const char *field(const json_t *o, const char *name)
{
    return json_string_value(json_object_get(o, name));
}

static void test_json_lines(void **state)
{
    logdir *d = *state;
    assert_int_equal(fl_log_open(d->path, FL_LOG_JSON), 0);
    fl_log(LOG_INFO, "plain \"quoted\" back\\slash\nnew line\ttab");
    fl_log_kv(LOG_WARNING, &(fl_log_ctx){ .job_id = 7, .type = "echo", .peer = "127.0.0.1:5000" },
              "job %d gave up", 7);
    fl_log_kv(LOG_ERR, &(fl_log_ctx){ .peer = "unix" }, "bad target /\xff\xfe");
    fl_log(LOG_DEBUG, "below the level: not written");
    fl_log_close();

    json_t *rec[8];
    size_t n = json_lines(d->path, rec, 8);
    assert_int_equal(n, 3);
    assert_string_equal(field(rec[0], "level"), "info");
    assert_string_equal(field(rec[0], "msg"), "plain \"quoted\" back\\slash\nnew line\ttab");
    assert_null(json_object_get(rec[0], "job_id"));
    const char *t = field(rec[0], "time");
    assert_non_null(t);
    assert_int_equal(strlen(t), strlen("2026-11-23T10:00:00.123Z"));
    assert_int_equal(t[strlen(t) - 1], 'Z');
    assert_int_equal(json_integer_value(json_object_get(rec[0], "pid")), getpid());

    assert_string_equal(field(rec[1], "level"), "warning");
    assert_string_equal(field(rec[1], "msg"), "job 7 gave up");
    assert_string_equal(field(rec[1], "job_id"), "7");
    assert_string_equal(field(rec[1], "type"), "echo");
    assert_string_equal(field(rec[1], "peer"), "127.0.0.1:5000");

    assert_string_equal(field(rec[2], "level"), "error");
    assert_string_equal(field(rec[2], "msg"), "bad target /??");
    assert_string_equal(field(rec[2], "peer"), "unix");
    assert_null(json_object_get(rec[2], "type"));
    for (size_t i = 0; i < n; i++)
        json_decref(rec[i]);

    struct stat st;
    assert_int_equal(stat(d->path, &st), 0);
    assert_int_equal(st.st_mode & 0777 & ~0640, 0);   /* never more than 0640 */
}

/* Text: the old line shape, the context in brackets; a file is appended to, not truncated. */
static void test_text_context_and_append(void **state)
{
    logdir *d = *state;
    FILE *f = fopen(d->path, "w");
    assert_non_null(f);
    fputs("earlier line\n", f);
    fclose(f);
    assert_int_equal(fl_log_open(d->path, FL_LOG_TEXT), 0);
    fl_log(LOG_INFO, "listening");
    fl_log_kv(LOG_ERR, &(fl_log_ctx){ .job_id = 12, .type = "mail" }, "attempt failed");
    fl_log_kv(LOG_INFO, &(fl_log_ctx){ 0 }, "no context");
    fl_log_close();
    char *buf = slurp(d->path);
    char *l2 = strchr(buf, '\n') + 1, *l3 = strchr(l2, '\n') + 1, *l4 = strchr(l3, '\n') + 1;
    assert_int_equal(strncmp(buf, "earlier line\n", 13), 0);
    assert_non_null(strstr(l2, " info: listening\n"));
    assert_non_null(strstr(l3, " error: attempt failed [job=12 type=mail]\n"));
    assert_non_null(strstr(l4, " info: no context\n"));
    assert_string_equal(strchr(l4, '\n'), "\n");
    free(buf);
}

/* logrotate renames the file, then SIGHUP: what follows goes to a new file at the path. */
static void test_reopen_after_rename(void **state)
{
    logdir *d = *state;
    char rotated[160];
    snprintf(rotated, sizeof rotated, "%s.1", d->path);
    assert_int_equal(fl_log_open(d->path, FL_LOG_JSON), 0);
    fl_log(LOG_INFO, "before the rotation");
    assert_int_equal(rename(d->path, rotated), 0);
    fl_log(LOG_INFO, "still to the renamed file");
    assert_int_equal(fl_log_reopen(), 0);
    fl_log(LOG_INFO, "after the rotation");
    fl_log_close();

    char *old = slurp(rotated), *now = slurp(d->path);
    assert_non_null(strstr(old, "before the rotation"));
    assert_non_null(strstr(old, "still to the renamed file"));
    assert_null(strstr(old, "after the rotation"));
    assert_non_null(strstr(now, "log reopened"));
    assert_non_null(strstr(now, "after the rotation"));
    free(old);
    free(now);
    json_t *rec[4];
    assert_int_equal(json_lines(d->path, rec, 4), 2);
    json_decref(rec[0]);
    json_decref(rec[1]);

    /* with stderr there is nothing to reopen; a path that cannot be opened changes nothing */
    assert_int_equal(fl_log_reopen(), 0);
    char bad[160];
    snprintf(bad, sizeof bad, "%s/missing/flingd.log", d->dir);
    assert_int_equal(fl_log_open(bad, FL_LOG_JSON), -ENOENT);
}

/* A reload moves the log: stderr -> A (text) -> B (json) -> stderr -> A; a path that cannot be
 * opened changes nothing; a higher level drops the records below it. */
static void test_switch_targets(void **state)
{
    logdir *d = *state;
    char a[160], b[160], err[160], bad[160];
    snprintf(a, sizeof a, "%s/a.log", d->dir);
    snprintf(b, sizeof b, "%s/b.log", d->dir);
    snprintf(err, sizeof err, "%s/stderr.log", d->dir);
    snprintf(bad, sizeof bad, "%s/missing/x.log", d->dir);
    int saved = dup(STDERR_FILENO), efd = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(saved >= 0 && efd >= 0);
    assert_true(dup2(efd, STDERR_FILENO) >= 0);
    close(efd);

    fl_log(LOG_INFO, "on stderr first");
    assert_int_equal(fl_log_switch(a, FL_LOG_TEXT), 0);
    fl_log(LOG_INFO, "to a");
    assert_int_equal(fl_log_switch(b, FL_LOG_JSON), 0);
    fl_log(LOG_INFO, "to b");
    assert_int_equal(fl_log_switch(NULL, FL_LOG_TEXT), 0);
    fl_log(LOG_INFO, "back on stderr");
    assert_int_equal(fl_log_switch(bad, FL_LOG_JSON), -ENOENT);
    fl_log(LOG_INFO, "still on stderr as text");
    assert_int_equal(fl_log_switch(a, FL_LOG_TEXT), 0);
    fl_log_set_level(LOG_WARNING);
    fl_log(LOG_INFO, "dropped");
    fl_log(LOG_WARNING, "a again");
    fl_log_set_level(LOG_INFO);
    fl_log_close();
    assert_true(dup2(saved, STDERR_FILENO) >= 0);
    close(saved);

    char *ta = slurp(a), *te = slurp(err);
    assert_non_null(strstr(ta, " info: to a\n"));
    assert_non_null(strstr(ta, " warning: a again\n"));
    assert_null(strstr(ta, "dropped"));
    assert_null(strstr(ta, "to b"));
    assert_non_null(strstr(te, " info: on stderr first\n"));
    assert_non_null(strstr(te, " info: back on stderr\n"));
    assert_non_null(strstr(te, " info: still on stderr as text\n"));
    assert_null(strstr(te, "to a"));
    free(ta);
    free(te);
    json_t *rec[2];
    assert_int_equal(json_lines(b, rec, 2), 1);
    assert_string_equal(json_string_value(json_object_get(rec[0], "msg")), "to b");
    json_decref(rec[0]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_json_lines, setup, teardown),
        cmocka_unit_test_setup_teardown(test_text_context_and_append, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_after_rename, setup, teardown),
        cmocka_unit_test_setup_teardown(test_switch_targets, setup, teardown),
    };
    return cmocka_run_group_tests_name("log", tests, NULL, NULL);
}
