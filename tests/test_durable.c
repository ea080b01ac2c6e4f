/* test_durable.c — "the 202 leaves after the fsync", proved from the system calls. flingd runs
 * under strace while a few clients submit jobs, each payload a unique marker. For every 202 in
 * the trace the checker demands, in this order: the -wal write holding that job's payload row
 * (found by its marker; it is inserted in the job's transaction), the commit frame of that
 * transaction (the first commit frame the same writer thread wrote at or after it: SQLite
 * writes one transaction's frames in a row, commit frame last), an fdatasync/fsync of the -wal
 * that returned 0, and only then the send of the 202. Trace lines are in the order strace saw
 * the stops: a call's exit that causes a later call is always printed before it. With
 * durability = normal SQLite syncs the log only at checkpoints, so the same checker must find
 * violations there: that is the negative case, and it shows the checker can fail. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fling.h"
#include "harness.h"

#define CLIENTS 4
#define JOBS_PER_CLIENT 50
#define JOBS (CLIENTS * JOBS_PER_CLIENT)
#define MARKER "job-marker-"
#define MAX_THREADS 256

/* ---- the trace, reduced to the events that matter -------------------------------------- */

typedef struct wal_write {
    int pid;
    long exit;          /* trace line of its return; LONG_MAX if it never returned */
    int commit_data;    /* holds the page of a commit frame (its header said "commit") */
} wal_write;

typedef struct wal_sync {
    long entry, exit;
    int ok;             /* returned 0 */
} wal_sync;

typedef struct ack {
    long entry;         /* trace line where the send of the 202 began */
    long id;
} ack;

typedef enum { PEND_NONE, PEND_WRITE, PEND_SYNC } pend_kind;

/* What each thread has in flight: strace splits a call into <unfinished ...> and
 * <... resumed> lines when another thread's stop comes in between. */
typedef struct pending {
    int pid;
    pend_kind kind;
    size_t index;
    int next_is_commit;  /* its last -wal write was a commit frame's header */
} pending;

typedef struct trace {
    const char *wal;     /* the -wal path as strace -yy prints it */
    long page_size;      /* from the WAL header once it was written; SQLite's default before */
    wal_write *writes;
    size_t n_writes, cap_writes;
    wal_sync *syncs;
    size_t n_syncs, cap_syncs;
    ack *acks;
    size_t n_acks, cap_acks;
    long first_write[JOBS];   /* marker k: index of the first -wal write holding it, or -1 */
    pending threads[MAX_THREADS];
    size_t n_threads;
} trace;

static void *grow(void *arr, size_t *cap, size_t n, size_t size)
{
    if (n < *cap)
        return arr;
    *cap = *cap ? *cap * 2 : 256;
    void *p = realloc(arr, *cap * size);
    assert_non_null(p);
    return p;
}

static pending *thread_of(trace *t, int pid)
{
    for (size_t i = 0; i < t->n_threads; i++)
        if (t->threads[i].pid == pid)
            return &t->threads[i];
    assert_true(t->n_threads < MAX_THREADS);
    pending *p = &t->threads[t->n_threads++];
    *p = (pending){ .pid = pid };
    return p;
}

/* decode_string decodes strace's quoted rendering at s (just after the opening quote) into up
 * to cap bytes of out; returns how many it decoded. Octal escapes take up to three digits. */
static size_t decode_string(const char *s, unsigned char *out, size_t cap)
{
    size_t n = 0;
    while (*s && *s != '"' && n < cap) {
        if (*s != '\\') {
            out[n++] = (unsigned char)*s++;
            continue;
        }
        s++;
        if (*s >= '0' && *s <= '7') {
            unsigned v = 0;
            for (int d = 0; d < 3 && *s >= '0' && *s <= '7'; d++)
                v = v * 8 + (unsigned)(*s++ - '0');
            out[n++] = (unsigned char)v;
            continue;
        }
        switch (*s) {
        case 'n': out[n++] = '\n'; break;
        case 'r': out[n++] = '\r'; break;
        case 't': out[n++] = '\t'; break;
        case 'v': out[n++] = '\v'; break;
        case 'f': out[n++] = '\f'; break;
        case '\0': return n;
        default: out[n++] = (unsigned char)*s; break;   /* \" and \\ */
        }
        s++;
    }
    return n;
}

/* A WAL frame is a 24-byte header, then a page; the header says "commit" when its
 * database-size field (bytes 4..7) is not zero. SQLite writes a header and its page in two
 * calls; under durability = full flingd hands the file all of a commit's frames in one write
 * (with the 32-byte WAL header in front when the log starts over, which gives the page size,
 * bytes 8..11). wal_frames reads one -wal write: 1 if it holds a whole commit frame, and
 * *lone_commit_header = 1 if it is a header alone that says commit (its page comes next). */
static int wal_frames(const char *args, long *page_size, int *lone_commit_header)
{
    *lone_commit_header = 0;
    const char *q = strchr(args, '"');
    if (!q)
        return 0;
    const char *tail = q + 1;   /* the closing quote: strace escapes every quote inside */
    while (*tail && *tail != '"')
        tail += tail[0] == '\\' && tail[1] ? 2 : 1;
    if (strncmp(tail, "\", ", 3) != 0)
        return 0;
    char *end;
    long len = strtol(tail + 3, &end, 10);
    long off = *end == ',' ? strtol(end + 1, NULL, 10) : -1;
    if (len <= 0 || off < 0)
        return 0;
    unsigned char *b = malloc((size_t)len);
    assert_non_null(b);
    size_t n = decode_string(q + 1, b, (size_t)len);
    long at = 0;
    if (off == 0 && n >= 32) {
        *page_size = (long)b[8] << 24 | (long)b[9] << 16 | (long)b[10] << 8 | (long)b[11];
        at = 32;
    }
    int commit = 0;
    if (off >= 32 && len == 24 && n == 24)
        *lone_commit_header = (b[4] | b[5] | b[6] | b[7]) != 0;
    else if (off + at >= 32)
        for (; at + 24 + *page_size <= (long)n; at += 24 + *page_size)
            commit |= (b[at + 4] | b[at + 5] | b[at + 6] | b[at + 7]) != 0;
    free(b);
    return commit;
}

static void note_markers(trace *t, const char *args, size_t write_index)
{
    for (const char *m = strstr(args, MARKER); m; m = strstr(m + 1, MARKER)) {
        long k = strtol(m + strlen(MARKER), NULL, 10);
        if (k >= 0 && k < JOBS && t->first_write[k] < 0)
            t->first_write[k] = (long)write_index;
    }
}

/* fd_is_wal tells whether a call's first argument is "N</path-wal>". */
static int fd_is_wal(const trace *t, const char *args)
{
    const char *lt = strchr(args, '<');
    size_t len = strlen(t->wal);
    return lt && strncmp(lt + 1, t->wal, len) == 0 && lt[1 + len] == '>';
}

static void on_entry(trace *t, pending *p, const char *name, const char *args, long line)
{
    p->kind = PEND_NONE;
    if (strncmp(name, "pwrite", 6) == 0 || strcmp(name, "write") == 0 || strcmp(name, "writev") == 0) {
        if (fd_is_wal(t, args)) {
            t->writes = grow(t->writes, &t->cap_writes, t->n_writes, sizeof *t->writes);
            int lone_header;
            int whole = wal_frames(args, &t->page_size, &lone_header);
            t->writes[t->n_writes] = (wal_write){ .pid = p->pid, .exit = LONG_MAX,
                                                  .commit_data = p->next_is_commit || whole };
            p->next_is_commit = lone_header;
            note_markers(t, args, t->n_writes);
            p->kind = PEND_WRITE;
            p->index = t->n_writes++;
            return;
        }
    }
    if (strcmp(name, "fdatasync") == 0 || strcmp(name, "fsync") == 0) {
        if (fd_is_wal(t, args)) {
            t->syncs = grow(t->syncs, &t->cap_syncs, t->n_syncs, sizeof *t->syncs);
            t->syncs[t->n_syncs] = (wal_sync){ .entry = line, .exit = LONG_MAX };
            p->kind = PEND_SYNC;
            p->index = t->n_syncs++;
        }
        return;
    }
    const char *reply = strstr(args, "\"HTTP/1.1 202 ");
    const char *loc = reply ? strstr(reply, "Location: /v1/jobs/") : NULL;
    if (loc) {
        t->acks = grow(t->acks, &t->cap_acks, t->n_acks, sizeof *t->acks);
        t->acks[t->n_acks++] = (ack){ .entry = line, .id = strtol(loc + 19, NULL, 10) };
    }
}

static void on_return(trace *t, pending *p, const char *result, long line)
{
    long rc = result ? strtol(result, NULL, 10) : -1;
    if (p->kind == PEND_WRITE)
        t->writes[p->index].exit = line;
    else if (p->kind == PEND_SYNC) {
        t->syncs[p->index].exit = line;
        t->syncs[p->index].ok = rc == 0;
    }
    p->kind = PEND_NONE;
}

/* parse_line handles "PID TIME name(args) = R", "... <unfinished ...>" and
 * "PID TIME <... name resumed>rest) = R"; signals and exits are skipped. */
static void parse_line(trace *t, char *s, long line)
{
    char *end;
    long pid = strtol(s, &end, 10);
    if (end == s)
        return;
    /* strace pads the pid to five columns: one or more blanks, then the time stamp. */
    char *rest = end + strspn(end, " ");
    rest = strchr(rest, ' ');
    if (!rest)
        return;
    rest += strspn(rest, " ");
    pending *p = thread_of(t, (int)pid);
    if (strncmp(rest, "<... ", 5) == 0) {
        const char *r = strrchr(rest, '=');
        on_return(t, p, r ? r + 1 : NULL, line);
        return;
    }
    char *paren = strchr(rest, '(');
    if (!paren || rest[0] == '+' || rest[0] == '-')
        return;
    *paren = '\0';
    int unfinished = strstr(paren + 1, "<unfinished ...>") != NULL;
    on_entry(t, p, rest, paren + 1, line);
    if (!unfinished) {
        const char *r = strrchr(paren + 1, '=');
        on_return(t, p, r ? r + 1 : NULL, line);
    }
}

static void trace_load(trace *t, const char *path, const char *wal)
{
    memset(t, 0, sizeof *t);
    t->wal = wal;
    t->page_size = 4096;
    for (int k = 0; k < JOBS; k++)
        t->first_write[k] = -1;
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char *buf = NULL;
    size_t cap = 0;
    long line = 0;
    while (getline(&buf, &cap, f) > 0)
        parse_line(t, buf, ++line);
    free(buf);
    fclose(f);
}

static void trace_free(trace *t)
{
    free(t->writes);
    free(t->syncs);
    free(t->acks);
}

/* ---- the rule ------------------------------------------------------------------------------ */

/* synced_between says whether a -wal sync that returned 0 began after line from and ended
 * before line to. */
static int synced_between(const trace *t, long from, long to)
{
    for (size_t i = 0; i < t->n_syncs; i++)
        if (t->syncs[i].ok && t->syncs[i].entry > from && t->syncs[i].exit < to)
            return 1;
    return 0;
}

/* The ways a 202 can break the rule, in the order they are checked. */
typedef enum { V_UNKNOWN_JOB, V_NO_WRITE, V_BEFORE_WRITE, V_BEFORE_COMMIT, V_BEFORE_SYNC, N_VIOLATIONS } violation;

static const char *const why[N_VIOLATIONS] = {
    [V_UNKNOWN_JOB] = "a 202 for a job no client was told about",
    [V_NO_WRITE] = "no -wal write holds the job's payload",
    [V_BEFORE_WRITE] = "the 202 left before the job's payload was written to the -wal",
    [V_BEFORE_COMMIT] = "the 202 left before its transaction's commit frame was written",
    [V_BEFORE_SYNC] = "the 202 left before an fdatasync of the -wal that followed the commit",
};

/* ack_violation checks one 202 against the rule: N_VIOLATIONS if it holds, else which part
 * it breaks. */
static violation ack_violation(const trace *t, const ack *a, const long *id_of_marker)
{
    long k = -1;
    for (long i = 0; i < JOBS && k < 0; i++)
        if (id_of_marker[i] == a->id)
            k = i;
    if (k < 0)
        return V_UNKNOWN_JOB;
    if (t->first_write[k] < 0)
        return V_NO_WRITE;
    const wal_write *w = &t->writes[t->first_write[k]];
    if (w->exit >= a->entry)
        return V_BEFORE_WRITE;
    const wal_write *commit = NULL;
    for (size_t j = (size_t)t->first_write[k]; j < t->n_writes && !commit; j++)
        if (t->writes[j].pid == w->pid && t->writes[j].commit_data)
            commit = &t->writes[j];
    if (!commit || commit->exit >= a->entry)
        return V_BEFORE_COMMIT;
    if (!synced_between(t, commit->exit, a->entry))
        return V_BEFORE_SYNC;
    return N_VIOLATIONS;
}

/* check_trace applies the rule to every 202 in the trace, counts the violations of each kind
 * in bad[] and prints the first few; returns their total. */
static long check_trace(const trace *t, const long *id_of_marker, long bad[N_VIOLATIONS])
{
    long total = 0;
    memset(bad, 0, N_VIOLATIONS * sizeof *bad);
    for (size_t i = 0; i < t->n_acks; i++) {
        violation v = ack_violation(t, &t->acks[i], id_of_marker);
        if (v == N_VIOLATIONS)
            continue;
        bad[v]++;
        if (total++ < 5)
            printf("  violation: job %ld (trace line %ld): %s\n", t->acks[i].id, t->acks[i].entry, why[v]);
    }
    return total;
}

/* ---- the run --------------------------------------------------------------------------------- */

static flh_daemon D;
static long id_of_marker[JOBS];   /* marker k -> the job id its 202 carried */

static void *client(void *arg)
{
    long c = (long)arg;
    fling_client *cl = fling_client_new(D.url, NULL);
    fling_client_set_timeouts(cl, 5000, 30000);
    /* An hour's delay: the jobs stay queued, so the trace holds submits only. */
    fling_job_opts o = { .delay = 3600 };
    for (long i = 0; i < JOBS_PER_CLIENT; i++) {
        long k = c * JOBS_PER_CLIENT + i;
        char payload[40];
        int len = snprintf(payload, sizeof payload, MARKER "%05ld-end", k);
        fling_response r = { 0 };
        if (fling_submit(cl, "t", payload, (size_t)len, &o, &r) == 0 && r.status == 202)
            id_of_marker[k] = strtol(r.id, NULL, 10);
        fling_response_clear(&r);
    }
    fling_client_free(cl);
    return NULL;
}

/* traced_run submits JOBS jobs to a flingd under strace with the given durability and checks
 * the trace: bad[] gets the violations by kind, the return value their total. Every job must
 * have been acked, and every 202 must be in the trace. */
static long traced_run(const char *durability, long bad[N_VIOLATIONS])
{
    char dir[] = "/tmp/flingstrace.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char out[64], conf[64], wal[256];
    snprintf(out, sizeof out, "%s/trace", dir);
    snprintf(conf, sizeof conf, "[store]\ndurability = %s\n", durability);
    /* LeakSanitizer cannot run under ptrace: off for the traced daemon only. */
    char *const wrap[] = { "strace", "-f", "-tt", "-yy", "-s", "262144", "-o", out, "-E", "ASAN_OPTIONS=detect_leaks=0",
                           "-e", "trace=write,pwrite64,writev,pwritev,pwritev2,fsync,fdatasync,sendto,sendmsg",
                           NULL };
    assert_int_equal(flh_start_wrapped(&D, conf, wrap), 0);
    snprintf(wal, sizeof wal, "%s-wal", D.db);
    memset(id_of_marker, 0, sizeof id_of_marker);
    pthread_t th[CLIENTS];
    for (long c = 0; c < CLIENTS; c++)
        assert_int_equal(pthread_create(&th[c], NULL, client, (void *)c), 0);
    for (int c = 0; c < CLIENTS; c++)
        pthread_join(th[c], NULL);
    long acked = 0;
    for (int k = 0; k < JOBS; k++)
        acked += id_of_marker[k] > 0;
    assert_int_equal(flh_stop(&D), 0);   /* strace writes its last lines as flingd exits */

    trace t;
    trace_load(&t, out, wal);
    long total = check_trace(&t, id_of_marker, bad);
    printf("durability = %s: %ld jobs acked, %zu 202s in the trace, %zu -wal writes, %zu -wal syncs, "
           "%ld violations\n", durability, acked, t.n_acks, t.n_writes, t.n_syncs, total);
    assert_int_equal(acked, JOBS);
    assert_int_equal(t.n_acks, JOBS);
    trace_free(&t);
    flh_rmdir(dir);
    return total;
}

static int strace_works;

static void full_acks_after_fsync(void **state)
{
    (void)state;
    if (!strace_works)
        skip();
    long bad[N_VIOLATIONS];
    assert_int_equal(traced_run("full", bad), 0);
}

/* The negative case: without a sync per commit the rule must be seen broken, and broken at
 * the sync only (every payload write and commit frame was still found before its 202: the
 * checker reads the trace, it does not just fail to). */
static void normal_acks_before_fsync(void **state)
{
    (void)state;
    if (!strace_works)
        skip();
    long bad[N_VIOLATIONS];
    long total = traced_run("normal", bad);
    assert_true(bad[V_BEFORE_SYNC] > 0);
    assert_int_equal(total, bad[V_BEFORE_SYNC]);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    strace_works = system("strace -o /dev/null true >/dev/null 2>&1") == 0;
    if (!strace_works)
        printf("test_durable: skipped: strace is missing or cannot trace here "
               "(scripts/install-deps --test installs it)\n");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(full_acks_after_fsync),
        cmocka_unit_test(normal_acks_before_fsync),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
