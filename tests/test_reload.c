/* test_reload.c — SIGHUP on a real flingd: the configuration file is read again and the
 * reloadable keys change live (a token, a type's concurrency, a schedule, the log's file and
 * format, a callback hook, which the store's writer thread reads, the retention), one log line says what changed and another what waits for a restart (a store key,
 * a new type); a file that does not load changes nothing and is logged with its FILE:LINE. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"


#define WAIT_S 10.0

/* One request with a bearer token (NULL: none); the status, and the body in body. */
static int call(const flh_daemon *d, const char *method, const char *path, const char *token, const char *payload,
                char *body, size_t bodysz)
{
    char req[1024], buf[16384];
    char auth[128] = "";
    if (token)
        snprintf(auth, sizeof auth, "Authorization: Bearer %s\r\n", token);
    snprintf(req, sizeof req, "%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n%sContent-Length: %zu\r\n\r\n%s",
             method, path, auth, strlen(payload), payload);
    int fd = flh_connect_tcp(d->port);
    assert_true(fd >= 0);
    assert_int_equal(flh_send_all(fd, req, strlen(req)), 0);
    memset(buf, 0, sizeof buf);
    int status = flh_read_reply(fd, buf, sizeof buf, 5000);
    close(fd);
    const char *b = strstr(buf, "\r\n\r\n");
    snprintf(body, bodysz, "%s", b ? b + 4 : "");
    return status;
}

/* The file at path with every `from` replaced by `to` (from must occur). */
static void edit_file(const char *path, const char *from, const char *to)
{
    char text[8192], out[8192];
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    char *at = strstr(text, from);
    if (!at)
        fail_msg("\"%s\" not in %s", from, path);
    snprintf(out, sizeof out, "%.*s%s%s", (int)(at - text), text, to, at + strlen(from));
    f = fopen(path, "w");
    assert_non_null(f);
    fputs(out, f);
    assert_int_equal(fclose(f), 0);
}

/* Sends SIGHUP and waits for the log line with `marker` to appear once more than before. */
static void hup_and_wait(const flh_daemon *d, const char *log, const char *marker)
{
    flh_daemon view = *d;
    snprintf(view.log, sizeof view.log, "%s", log);
    int before = flh_log_count(&view, marker);
    if (before < 0)
        before = 0;   /* no file yet: the reload makes it, then writes the line */
    assert_int_equal(kill(d->pid, SIGHUP), 0);
    for (double end = flh_now() + WAIT_S; flh_log_count(&view, marker) <= before; usleep(20000))
        if (flh_now() > end) {
            char cmd[512];
            snprintf(cmd, sizeof cmd, "tail -n 20 '%s' >&2", d->log);
            if (system(cmd) != 0)
                fprintf(stderr, "(no log)\n");
            fail_msg("no \"%s\" in %s after SIGHUP", marker, log);
        }
}

/* The last line of the log file at path containing s. */
static void log_line(const char *path, const char *s, char *out, size_t outsz)
{
    char line[4096];
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    out[0] = '\0';
    while (fgets(line, sizeof line, f))
        if (strstr(line, s))
            snprintf(out, outsz, "%s", line);
    fclose(f);
    if (!out[0])
        fail_msg("no \"%s\" in %s", s, path);
}

/* The number of jobs of type in state, from GET /v1/types. */
static long count_in(const flh_daemon *d, const char *token, const char *type, const char *state)
{
    char body[16384];
    assert_int_equal(call(d, "GET", "/v1/types", token, "", body, sizeof body), 200);
    json_t *all = json_loads(body, 0, NULL), *t;
    assert_non_null(all);
    size_t i;
    long n = -1;
    json_array_foreach(json_object_get(all, "types"), i, t)
        if (strcmp(json_string_value(json_object_get(t, "name")), type) == 0)
            n = (long)json_integer_value(json_object_get(json_object_get(t, "counts"), state));
    json_decref(all);
    return n;
}

static void wait_count(const flh_daemon *d, const char *token, const char *type, const char *state, long want)
{
    for (double end = flh_now() + WAIT_S; count_in(d, token, type, state) != want; usleep(20000))
        if (flh_now() > end)
            fail_msg("type %s: %ld %s, want %ld", type, count_in(d, token, type, state), state, want);
}

/* A new token and a higher concurrency apply at once; a store key and a new type wait for a
 * restart, and the log says which is which. */
static void reload_token_and_concurrency(void **state)
{
    (void)state;
    flh_daemon d;
    char body[16384], line[4096];
    assert_int_equal(flh_start(&d, "[server]\ntoken = first-token\n\n[type.one]\nhandler = sleep\nconcurrency = 1\n"), 0);
    assert_int_equal(call(&d, "GET", "/v1/types", "first-token", "", body, sizeof body), 200);
    assert_int_equal(call(&d, "POST", "/v1/jobs/one", "first-token", "30", body, sizeof body), 202);
    assert_int_equal(call(&d, "POST", "/v1/jobs/one", "first-token", "30", body, sizeof body), 202);
    wait_count(&d, "first-token", "one", "running", 1);
    assert_int_equal(count_in(&d, "first-token", "one", "queued"), 1);   /* concurrency 1 */

    edit_file(d.conf, "token = first-token", "token = second-token");
    edit_file(d.conf, "concurrency = 1", "concurrency = 2\n[type.later]\nhandler = noop");
    edit_file(d.conf, "[store]\n", "[store]\ndurability = normal\n");
    hup_and_wait(&d, d.log, "reload: changed:");
    log_line(d.log, "reload: changed:", line, sizeof line);
    assert_non_null(strstr(line, "[server] token, [type.one] concurrency"));
    log_line(d.log, "reload: kept as they were until a restart:", line, sizeof line);
    assert_non_null(strstr(line, "[store] durability, [type.later] (new)"));

    assert_int_equal(call(&d, "GET", "/v1/types", "first-token", "", body, sizeof body), 401);
    assert_int_equal(call(&d, "GET", "/v1/types", "second-token", "", body, sizeof body), 200);
    assert_int_equal(call(&d, "POST", "/v1/jobs/later", "second-token", "", body, sizeof body), 404);
    /* the reload itself lets the queued job start beside the first: two at once, with no other
     * commit or finished attempt to wake the scheduler (the running one sleeps 30 s) */
    wait_count(&d, "second-token", "one", "running", 2);
    assert_int_equal(flh_stop(&d), 0);
}

/* A file that does not load changes nothing: the error has the file and line. */
static void reload_bad_file_keeps_running(void **state)
{
    (void)state;
    flh_daemon d;
    char body[4096], line[4096], want[512];
    assert_int_equal(flh_start(&d, "[server]\ntoken = kept-token\n"), 0);
    edit_file(d.conf, "token = kept-token\n", "token = lost-token\nmax_payload = lots\n");
    hup_and_wait(&d, d.log, "still running the previous configuration");
    log_line(d.log, "still running the previous configuration", line, sizeof line);
    snprintf(want, sizeof want, "SIGHUP: %s:6: [server] max_payload: expected", d.conf);
    if (!strstr(line, want))
        fail_msg("%s: want %s", line, want);
    assert_int_equal(call(&d, "GET", "/v1/types", "kept-token", "", body, sizeof body), 200);
    assert_int_equal(call(&d, "GET", "/v1/types", "lost-token", "", body, sizeof body), 401);
    assert_int_equal(call(&d, "POST", "/v1/jobs/t", "kept-token", "0", body, sizeof body), 202);
    assert_int_equal(flh_stop(&d), 0);
}

/* A schedule given by a reload starts enqueuing; the log moves to another file, as JSON. */
static void reload_schedule_and_log(void **state)
{
    (void)state;
    flh_daemon d;
    char line[4096], json_log[256];
    assert_int_equal(flh_start(&d, "[type.tick]\nhandler = noop\n"), 0);
    snprintf(json_log, sizeof json_log, "%s/json.log", d.dir);
    assert_int_equal(flh_count_jobs(&d, "tick", NULL), 0);
    char server[400];
    snprintf(server, sizeof server, "[server]\nlog = %s\nlog_format = json\n", json_log);
    edit_file(d.conf, "[server]\n", server);
    edit_file(d.conf, "[type.tick]\nhandler = noop\n", "[type.tick]\nhandler = noop\nschedule = * * * * * *\n"
                                                      "schedule_tz = Asia/Kathmandu\n");
    hup_and_wait(&d, json_log, "reload: changed:");
    log_line(json_log, "reload: changed:", line, sizeof line);
    json_t *rec = json_loads(line, 0, NULL);
    assert_non_null(rec);
    assert_string_equal(json_string_value(json_object_get(rec, "msg")),
                        "reload: changed: [server] log, [server] log_format, [type.tick] schedule, "
                        "[type.tick] schedule_tz");
    json_decref(rec);
    assert_true(flh_wait_count(&d, "tick", 2, 10000, NULL) >= 2);   /* once a second from now on */
    assert_int_equal(flh_stop(&d), 0);
}

static void wait_file(const char *path)
{
    for (double end = flh_now() + WAIT_S; access(path, F_OK) != 0; usleep(20000))
        if (flh_now() > end)
            fail_msg("no %s", path);
}

/* A new on_complete reaches the deliveries the store's writer thread records. */
static void reload_callback_hook(void **state)
{
    (void)state;
    flh_daemon d;
    char conf[512], body[4096], first[256], second[256], line[4096];
    char dir[] = "/tmp/fl_reload_hook_XXXXXX";
    assert_non_null(mkdtemp(dir));
    snprintf(first, sizeof first, "%s/first.json", dir);
    snprintf(second, sizeof second, "%s/second.json", dir);
    snprintf(conf, sizeof conf, "[type.hooked]\nhandler = noop\non_complete = exec:/bin/sh -c 'cat > %s'\n", first);
    assert_int_equal(flh_start(&d, conf), 0);
    assert_int_equal(call(&d, "POST", "/v1/jobs/hooked", NULL, "", body, sizeof body), 202);
    wait_file(first);
    edit_file(d.conf, "first.json", "second.json");
    hup_and_wait(&d, d.log, "reload: changed:");
    log_line(d.log, "reload: changed:", line, sizeof line);
    assert_true(strstr(line, "changed: [type.hooked] on_complete\n") ||
                strstr(line, "changed: [type.hooked] on_complete [node="));   /* PostgreSQL names the node */
    assert_int_equal(call(&d, "POST", "/v1/jobs/hooked", NULL, "", body, sizeof body), 202);
    wait_file(second);
    assert_int_equal(flh_stop(&d), 0);
    flh_rmdir(dir);
}

/* Retention given by a reload deletes the jobs that finished longer ago than it. */
static void reload_retention(void **state)
{
    (void)state;
    flh_daemon d;
    char body[4096];
    assert_int_equal(flh_start(&d, "[store]\nretention = 0\n"), 0);
    for (int i = 0; i < 3; i++) {
        char id[32];
        assert_int_equal(call(&d, "POST", "/v1/jobs/t", NULL, "0", body, sizeof body), 202);
        snprintf(id, sizeof id, "%d", i + 1);
        json_decref(flh_wait_terminal(&d, id, 10000));
    }
    assert_int_equal(flh_store_exec(&d, "UPDATE jobs SET finished_at = finished_at - 7200000 WHERE id <= 2"), 0);
    edit_file(d.conf, "retention = 0", "retention = 1h");
    hup_and_wait(&d, d.log, "reload: changed: [store] retention");
    for (double end = flh_now() + WAIT_S; flh_metric(&d, "fling_jobs_pruned_total") < 2; usleep(50000))
        if (flh_now() > end)
            fail_msg("pruned %ld, want 2", flh_metric(&d, "fling_jobs_pruned_total"));
    assert_int_equal(flh_metric(&d, "fling_jobs_pruned_total"), 2);
    assert_int_equal(flh_http(&d, "GET", "/v1/jobs/1", NULL), 404);
    assert_int_equal(flh_http(&d, "GET", "/v1/jobs/3", NULL), 200);
    assert_int_equal(flh_stop(&d), 0);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(reload_token_and_concurrency),
        cmocka_unit_test(reload_bad_file_keeps_running),
        cmocka_unit_test(reload_schedule_and_log),
        cmocka_unit_test(reload_callback_hook),
        cmocka_unit_test(reload_retention),
    };
    return cmocka_run_group_tests_name("reload", tests, NULL, NULL);
}
