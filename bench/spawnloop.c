/* spawnloop.c — the physical limit of spawning on this machine, for bench/compare's exec row:
 * N threads, each looping posix_spawn(COMMAND) + waitpid for --seconds (or until --jobs runs
 * have been started), as N flingd workers would run N exec jobs at once. Prints one line:
 * "mode=spawn conns=N jobs=J failed=F secs=S rate=R/s cpu_us=C" (C: this process's own user+system
 * time, its children's not counted, as bench/compare counts flingd's). Nothing else: no pipes, no
 * environment changes, no signal resets; a child that fails to spawn or exits non-zero counts
 * as failed. */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>

#define MAX_CONC 1024
#define MAX_SECONDS 600.0

extern char **environ;

typedef struct run {
    char *argv[2];                /* the command, no arguments */
    double seconds;
    long max_jobs;                /* 0 = until --seconds */
    atomic_long started;
    atomic_long failed;
    struct timespec start;
} run;

static double since(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) + (double)(t.tv_nsec - t0->tv_nsec) / 1e9;
}

/* spawn_one runs the command once and waits for it; 0 if it exited 0. */
static int spawn_one(run *r)
{
    pid_t pid;
    int status, rc = posix_spawn(&pid, r->argv[0], NULL, NULL, r->argv, environ);
    if (rc != 0)
        return -rc;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -errno;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -ECHILD;
}

static void *spawner(void *arg)
{
    run *r = arg;
    while (since(&r->start) < r->seconds) {
        if (r->max_jobs > 0 && atomic_fetch_add(&r->started, 1) >= r->max_jobs)
            break;
        if (r->max_jobs == 0)
            atomic_fetch_add(&r->started, 1);
        if (spawn_one(r) < 0)
            atomic_fetch_add(&r->failed, 1);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "conns", required_argument, 0, 'c' }, { "seconds", required_argument, 0, 's' },
        { "jobs", required_argument, 0, 'j' }, { "command", required_argument, 0, 'x' },
        { 0, 0, 0, 0 }
    };
    run r = { .argv = { "/bin/true", NULL }, .seconds = 3 };
    long conc = 8;
    int ch;
    char *end = NULL;
    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        errno = 0;
        if (ch == 'c')
            conc = strtol(optarg, &end, 10);
        else if (ch == 's')
            r.seconds = strtod(optarg, &end);
        else if (ch == 'j')
            r.max_jobs = strtol(optarg, &end, 10);
        else if (ch == 'x')
            r.argv[0] = optarg, end = optarg + strlen(optarg);
        if (ch == '?' || errno || !end || *end || conc < 1 || conc > MAX_CONC ||
            !(r.seconds > 0 && r.seconds <= MAX_SECONDS) || r.max_jobs < 0) {
            fprintf(stderr, "usage: spawnloop [--conns N] [--seconds S] [--jobs N] "
                            "[--command PATH]\n");
            return 2;
        }
    }
    pthread_t tids[MAX_CONC];
    long n = 0;
    clock_gettime(CLOCK_MONOTONIC, &r.start);
    for (; n < conc; n++)
        if (pthread_create(&tids[n], NULL, spawner, &r) != 0) {
            fprintf(stderr, "spawnloop: cannot start thread %ld\n", n);
            break;
        }
    for (long i = 0; i < n; i++)
        pthread_join(tids[i], NULL);
    double secs = since(&r.start);
    long jobs = atomic_load(&r.started);
    if (r.max_jobs > 0 && jobs > r.max_jobs)
        jobs = r.max_jobs;
    long failed = atomic_load(&r.failed);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    long long cpu_us = (long long)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000 +
                       ru.ru_utime.tv_usec + ru.ru_stime.tv_usec;
    printf("mode=spawn conns=%ld jobs=%ld failed=%ld secs=%.2f rate=%.0f/s cpu_us=%lld\n", conc,
           jobs, failed, secs, (double)(jobs - failed) / secs, cpu_us);
    return n == conc && failed == 0 ? 0 : 1;
}
