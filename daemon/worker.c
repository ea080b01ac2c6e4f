/* worker.c — one attempt of one job, by handler (see worker.h).
 *
 * DESIGN. exec: a child cloned into flingd's memory that flingd does not wait for (safe
 * beside the store's writer thread: it makes raw system calls until it execs), in a new
 * process group, with a clean environment (job_env) and no descriptor but 0, 1 and 2; a type
 * with user or group forks instead (see "spawning"); both set up the child in child_main. The
 * payload is written to the child's stdin pipe by an ev_io, stdout+stderr read from
 * one pipe into a ring of the last FL_WORKER_OUTPUT_MAX bytes, exit seen by ev_child. The
 * attempt ends when the child has been reaped and its output pipe is at EOF; when the group
 * leader exits, what is left of its group is SIGKILLed so no orphan outlives the attempt.
 * Time limit and stop: SIGTERM to the group, SIGKILL after kill_grace. sleep and noop are
 * timers; http goes through webhook.c. done() always runs from a watcher callback. */
#include "worker.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "webhook.h"

#define FL_WORKER_CONNECT_TIMEOUT 10.0   /* http handler: connect limit when the job has a longer one */

/* What an exec child takes from flingd's environment before its type's env_pass and env: the
 * variables programs need to behave, none that carries a secret. */
static const char *const passed_vars[] = {
    "PATH", "HOME", "LANG", "LC_ALL", "TZ", "USER", "LOGNAME", "TMPDIR",
};
#define FL_WORKER_DEFAULT_PATH "PATH=/usr/local/bin:/usr/bin:/bin"

/* What a child reports when it cannot become the job: the step that failed and its errno. */
enum child_step { STEP_SETUP = 1, STEP_GROUP, STEP_USER, STEP_EXEC };
typedef struct child_error { int step, err; } child_error;

/* What a child needs until its execve (see "spawning"); all of it in the parent's memory. */
typedef struct child_args {
    char *const *argv;
    char **envp;                    /* owned; freed once the child is gone (child_memory_free) */
    const fl_type *settings;        /* user and group, or NULL */
    int in_fd, out_fd;              /* its stdin; its stdout and stderr */
    int status_fd;                  /* fork: the status pipe's write end; clone: -1 */
    volatile child_error *shared;   /* clone: where it reports, read once it is reaped */
} child_args;

struct fl_worker {
    fl_worker_env env;
    fl_worker_spec spec;         /* its pointers borrowed until done */
    fl_worker_done done;
    void *udata;
    ev_timer limit;              /* the attempt's time limit */
    ev_timer kill;               /* SIGKILL after kill_grace */
    ev_timer tick;               /* sleep's nap, noop's next-iteration finish */
    ev_child child;
    ev_io in, out;
    pid_t pid;                   /* also the process group id */
    int reaped, out_eof;
    int status;                  /* wait status */
    size_t in_off;
    char ring[FL_WORKER_OUTPUT_MAX];
    size_t ring_len, ring_pos;   /* bytes held; next write position */
    fl_webhook_req *http;
    int timed_out;
    fl_stop_reason stopped;
    int finished;
    double started;
    char error[256];
    child_args args;             /* exec: the child's, until it is reaped */
    void *stack;                 /* exec, clone: the child's stack until it is reaped; owned */
    volatile child_error ce;     /* exec, clone: the child's failure, if it had one */
};

int64_t fl_worker_job_id(const fl_worker *w) { return w->spec.job_id; }

static void ring_put(fl_worker *w, const char *p, size_t n)
{
    if (n >= sizeof w->ring) {   /* only the tail matters */
        p += n - sizeof w->ring;
        n = sizeof w->ring;
    }
    for (size_t i = 0; i < n; i++) {
        w->ring[w->ring_pos] = p[i];
        w->ring_pos = (w->ring_pos + 1) % sizeof w->ring;
    }
    w->ring_len = w->ring_len + n > sizeof w->ring ? sizeof w->ring : w->ring_len + n;
}

/* Copies the ring, oldest byte first, into out (FL_WORKER_OUTPUT_MAX bytes). */
static size_t ring_get(const fl_worker *w, char *out)
{
    size_t start = (w->ring_pos + sizeof w->ring - w->ring_len) % sizeof w->ring;
    for (size_t i = 0; i < w->ring_len; i++)
        out[i] = w->ring[(start + i) % sizeof w->ring];
    return w->ring_len;
}

static void stop_watchers(fl_worker *w)
{
    struct ev_loop *loop = w->env.loop;
    ev_timer_stop(loop, &w->limit);
    ev_timer_stop(loop, &w->kill);
    ev_timer_stop(loop, &w->tick);
    ev_child_stop(loop, &w->child);
    if (ev_is_active(&w->in) || w->in.fd >= 0) {
        ev_io_stop(loop, &w->in);
        if (w->in.fd >= 0)
            close(w->in.fd);
        w->in.fd = -1;
    }
    ev_io_stop(loop, &w->out);
    if (w->out.fd >= 0)
        close(w->out.fd);
    w->out.fd = -1;
}

/* Ends the attempt: builds the outcome, calls done, frees w. */
static void finish(fl_worker *w, int ok, const char *output, size_t output_len, int has_code, int code)
{
    if (w->finished)
        return;
    w->finished = 1;
    stop_watchers(w);
    if (w->timed_out) {
        ok = 0;
        snprintf(w->error, sizeof w->error, "timed out after %g s", w->spec.timeout);
    } else if (w->stopped) {
        ok = 0;
        snprintf(w->error, sizeof w->error, "%s", w->stopped == FL_STOP_CANCEL ? "cancelled" : "stopped by shutdown");
    } else if (ok) {
        w->error[0] = '\0';
    }
    fl_outcome o = {
        .ok = ok, .timed_out = w->timed_out, .stopped = w->stopped,
        .has_exit_code = has_code, .exit_code = code,
        .error = w->error, .output = output, .output_len = output_len,
        .seconds = ev_now(w->env.loop) - w->started,
    };
    w->done(w, &o, w->udata);
    free(w);
}

/* ---------------------------------------------------------------- exec */

static void exec_maybe_done(fl_worker *w)
{
    if (!w->reaped || !w->out_eof)
        return;
    char out[FL_WORKER_OUTPUT_MAX];
    size_t n = ring_get(w, out);
    int st = w->status, has_code = 0, code = 0, ok = 0;
    if (w->error[0]) {
        /* could not start: the error says why, there is no exit status */
    } else if (WIFEXITED(st)) {
        has_code = 1;
        code = WEXITSTATUS(st);
        ok = code == 0;
        if (!ok)
            snprintf(w->error, sizeof w->error, "exit code %d", code);
    } else if (WIFSIGNALED(st)) {
        snprintf(w->error, sizeof w->error, "killed by signal %d", WTERMSIG(st));
    }
    finish(w, ok, out, n, has_code, code);
}

static void child_reaped(fl_worker *w);

static void child_cb(struct ev_loop *loop, ev_child *c, int revents)
{
    (void)revents;
    fl_worker *w = c->data;
    ev_child_stop(loop, c);
    w->reaped = 1;
    w->status = c->rstatus;
    child_reaped(w);
    /* The leader is gone: whatever it left in its group goes too, and with it the pipe's
     * last writers, so the output reaches EOF. */
    kill(-w->pid, SIGKILL);
    exec_maybe_done(w);
}

static void out_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)revents;
    fl_worker *w = io->data;
    char buf[16384];
    for (int i = 0; i < 8; i++) {
        ssize_t n = read(io->fd, buf, sizeof buf);
        if (n > 0) {
            ring_put(w, buf, (size_t)n);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        ev_io_stop(loop, io);   /* EOF or error: nothing more will come */
        close(io->fd);
        io->fd = -1;
        w->out_eof = 1;
        exec_maybe_done(w);
        return;
    }
}

static void in_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)revents;
    fl_worker *w = io->data;
    while (w->in_off < w->spec.input_len) {
        ssize_t n = write(io->fd, (const char *)w->spec.input + w->in_off, w->spec.input_len - w->in_off);
        if (n > 0) {
            w->in_off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            ev_io_start(loop, io);   /* the pipe is full: wait for the child to read */
            return;
        }
        break;   /* EPIPE: the child does not read its stdin; that is its business */
    }
    ev_io_stop(loop, io);
    close(io->fd);
    io->fd = -1;
}

/* ---- the child's environment */

/* The child's environment is gathered as (name, value) pairs borrowed from where they live,
 * then written out in one allocation: the NULL-terminated array and its strings after it. */
typedef struct env_var {
    const char *name;            /* name_len bytes, not NUL-terminated when from "NAME=value" */
    size_t name_len;
    const char *value;
} env_var;

#define FL_WORKER_ENV_SMALL 32   /* variables held without an allocation */

typedef struct env_list {
    env_var *v;                  /* small, or allocated once it outgrew it */
    size_t n, cap;
    int rc;                      /* 0, or -ENOMEM: the list is incomplete */
    env_var small[FL_WORKER_ENV_SMALL];
} env_list;

/* env_put sets name (name_len bytes) to value (both borrowed until env_build) in e, in place
 * of an earlier one of that name. */
static void env_put(env_list *e, const char *name, size_t name_len, const char *value)
{
    for (size_t i = 0; i < e->n; i++) {
        if (e->v[i].name_len == name_len && memcmp(e->v[i].name, name, name_len) == 0) {
            e->v[i].value = value;
            return;
        }
    }
    if (e->rc)
        return;
    if (e->n == e->cap) {
        size_t cap = 2 * e->cap;
        env_var *grown = malloc(cap * sizeof *grown);
        if (!grown) {
            e->rc = -ENOMEM;
            return;
        }
        memcpy(grown, e->v, e->n * sizeof *grown);
        if (e->v != e->small)
            free(e->v);
        e->v = grown;
        e->cap = cap;
    }
    e->v[e->n++] = (env_var){ name, name_len, value };
}

static void env_set(env_list *e, const char *name, const char *value)
{
    env_put(e, name, strlen(name), value);
}

/* env_var_set sets a "NAME=value" string of the config. */
static void env_var_set(env_list *e, const char *var)
{
    size_t name_len = strcspn(var, "=");
    env_put(e, var, name_len, var[name_len] ? var + name_len + 1 : "");
}

/* env_pass copies name from flingd's environment, if it is set there. */
static void env_pass(env_list *e, const char *name)
{
    const char *value = getenv(name);
    if (value)
        env_set(e, name, value);
}

/* env_build writes e out as the child's envp (one allocation: free it with free) and frees
 * e's own. 0 or -ENOMEM. */
static int env_build(env_list *e, char ***out)
{
    size_t bytes = (e->n + 1) * sizeof(char *);
    for (size_t i = 0; i < e->n; i++)
        bytes += e->v[i].name_len + strlen(e->v[i].value) + 2;
    char **envp = e->rc ? NULL : malloc(bytes);
    if (envp) {
        char *p = (char *)(envp + e->n + 1);
        for (size_t i = 0; i < e->n; i++) {
            size_t value_len = strlen(e->v[i].value);
            envp[i] = p;
            memcpy(p, e->v[i].name, e->v[i].name_len);
            p += e->v[i].name_len;
            *p++ = '=';
            memcpy(p, e->v[i].value, value_len + 1);
            p += value_len + 1;
        }
        envp[e->n] = NULL;
    }
    if (e->v != e->small)
        free(e->v);
    if (!envp)
        return -ENOMEM;
    *out = envp;
    return 0;
}

/* job_env builds the child's whole environment: passed_vars from flingd's, the user's HOME,
 * USER and LOGNAME when the settings run as one, their env_pass and env, and last the job's
 * FLING_* (which the config cannot set). Free with free. */
static int job_env(const fl_worker *w, char ***out)
{
    static const fl_type none;
    const fl_type *t = w->spec.settings ? w->spec.settings : &none;
    env_list e = { .cap = FL_WORKER_ENV_SMALL };
    e.v = e.small;
    char id[32], attempt[32];
    for (size_t i = 0; i < sizeof passed_vars / sizeof passed_vars[0]; i++)
        env_pass(&e, passed_vars[i]);
    if (!getenv("PATH"))
        env_var_set(&e, FL_WORKER_DEFAULT_PATH);
    if (t->user) {
        env_set(&e, "HOME", t->user_home);
        env_set(&e, "USER", t->user);
        env_set(&e, "LOGNAME", t->user);
    }
    for (size_t i = 0; t->env_pass && t->env_pass[i]; i++)
        env_pass(&e, t->env_pass[i]);
    for (size_t i = 0; t->env && t->env[i]; i++)
        env_var_set(&e, t->env[i]);
    snprintf(id, sizeof id, "%lld", (long long)w->spec.job_id);
    env_set(&e, "FLING_JOB_ID", id);
    env_set(&e, "FLING_JOB_TYPE", w->spec.job_type);
    snprintf(attempt, sizeof attempt, "%d", w->spec.attempt);
    env_set(&e, "FLING_ATTEMPT", attempt);
    if (w->spec.traceparent)
        env_set(&e, "TRACEPARENT", w->spec.traceparent);
    if (w->spec.tracestate)
        env_set(&e, "TRACESTATE", w->spec.tracestate);
    return env_build(&e, out);
}

/* ---- spawning
 *
 * A child starts with every signal at its default and none blocked: flingd ignores SIGPIPE,
 * libev blocks and handles SIGCHLD, SIGTERM and SIGINT, and flingd may itself have inherited
 * ignored signals (a shell's `&` ignores SIGINT and SIGQUIT); a job must see none of that.
 * The child resets all 64 dispositions with every signal blocked, so that no flingd handler
 * ever runs in it, then unblocks them and execs.
 *
 * A plain child is a clone of flingd that shares its memory (CLONE_VM) on a stack of its own,
 * and flingd does not wait for it: with posix_spawn or vfork the loop thread slept until the
 * child had called execve, a wait for the scheduler to run the child, which on a busy machine
 * took 34% of the loop's time running /bin/true (1.1 ms per child, with perf trace). Until its
 * execve the child touches no memory but its stack, its arguments and its report: it makes
 * raw system calls (sys below: no errno, which is the loop thread's), never calls into libc.
 * Its stack, environment and report stay until it is reaped, when it has certainly exec'd or
 * exited. The loop thread puts it in its process group too, so that a kill of the group
 * reaches it before it has got that far.
 *
 * setgroups, setgid and setuid have the child fork instead: a forked child is alone in its
 * memory and reports on a close-on-exec status pipe, which flingd reads until EOF (execve)
 * or the failure. So do all children under a sanitizer (whose runtime a memory-sharing child
 * would run in) or on an architecture without a raw system call below. */

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define FL_WORKER_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer) || __has_feature(address_sanitizer)
#define FL_WORKER_SANITIZED 1
#endif
#endif
#ifndef FL_WORKER_SANITIZED
#define FL_WORKER_SANITIZED 0
#endif

#define FL_WORKER_STACK (32 * 1024)   /* a clone child's stack: a few frames of system calls */
#define FL_WORKER_STACKS_KEPT 64      /* reaped children's stacks kept for the next ones */

/* Stacks of reaped clone children, for the next ones: a 32 KiB malloc and free per child
 * (large chunks: glibc sorts and merges them) stood out in the loop thread's profile. Loop
 * thread only, like every worker. */
static void *stacks_kept[FL_WORKER_STACKS_KEPT];
static int n_stacks_kept;

static void *stack_get(void)
{
    return n_stacks_kept ? stacks_kept[--n_stacks_kept] : malloc(FL_WORKER_STACK);
}

static void stack_put(void *stack)
{
    if (stack && n_stacks_kept < FL_WORKER_STACKS_KEPT)
        stacks_kept[n_stacks_kept++] = stack;
    else
        free(stack);
}

#if defined(__x86_64__)
#define FL_WORKER_CLONE (!FL_WORKER_SANITIZED)
/* sys makes system call n: its result, or -errno; it writes no memory. */
static long sys(long n, long a, long b, long c, long d)
{
    register long r10 __asm__("r10") = d;
    long ret;
    __asm__ volatile("syscall" : "=a"(ret) : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10) : "rcx", "r11", "memory");
    return ret;
}
#elif defined(__aarch64__)
#define FL_WORKER_CLONE (!FL_WORKER_SANITIZED)
static long sys(long n, long a, long b, long c, long d)
{
    register long x8 __asm__("x8") = n;
    register long x0 __asm__("x0") = a;
    register long x1 __asm__("x1") = b;
    register long x2 __asm__("x2") = c;
    register long x3 __asm__("x3") = d;
    __asm__ volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3) : "memory");
    return x0;
}
#else
#define FL_WORKER_CLONE 0
/* Only forked children use it here: their errno is their own. */
static long sys(long n, long a, long b, long c, long d)
{
    long ret = syscall(n, a, b, c, d);
    return ret < 0 ? -errno : ret;
}
#endif

/* child_fail reports a failed step (rc: -errno) in the parent's memory or on the status pipe,
 * now on fd, and exits 127. */
__attribute__((noreturn))
static void child_fail(const child_args *a, int fd, enum child_step step, long rc)
{
    child_error ce = { step, (int)-rc };
    if (a->shared) {
        a->shared->step = ce.step;
        a->shared->err = ce.err;
    } else {
        (void)sys(SYS_write, fd, (long)&ce, sizeof ce, 0);   /* nothing more a dying child can do */
    }
    for (;;)
        (void)sys(SYS_exit_group, 127, 0, 0, 0);
}

/* Makes from the child's descriptor to, open across execve. 0 or -errno. */
static long child_fd(int from, int to)
{
    long rc = from == to ? sys(SYS_fcntl, to, F_SETFD, 0, 0) : sys(SYS_dup3, from, to, 0, 0);
    return rc < 0 ? rc : 0;
}

/* child_main runs in the child, cloned or forked, until execve: raw system calls only (see
 * above). Stdin from in_fd, stdout and stderr to out_fd, the status pipe (fork) on 3, every
 * other descriptor closed, its own process group, the type's group and user, every signal at
 * its default and none blocked. */
__attribute__((noreturn))
static void child_main(const child_args *a)
{
    const fl_type *t = a->settings;
    static const unsigned long ksa[4];   /* the kernel's sigaction: SIG_DFL, no flags, empty mask */
    static const unsigned long kmask;    /* the kernel's sigset_t: empty */
    int fd = a->status_fd;   /* where a failure is reported: 3 once it is moved there */
    long rc;
    for (int sig = 1; sig <= 64; sig++)
        (void)sys(SYS_rt_sigaction, sig, (long)ksa, 0, sizeof kmask);   /* EINVAL for SIGKILL, SIGSTOP */
    if ((rc = sys(SYS_setpgid, 0, 0, 0, 0)) < 0 || (rc = child_fd(a->in_fd, 0)) < 0 ||
        (rc = child_fd(a->out_fd, 1)) < 0 || (rc = child_fd(a->out_fd, 2)) < 0)
        child_fail(a, fd, STEP_SETUP, rc);
    if (fd >= 0) {
        if ((rc = sys(SYS_dup3, fd, 3, O_CLOEXEC, 0)) < 0)
            child_fail(a, fd, STEP_SETUP, rc);
        fd = 3;
    }
    /* flingd's sockets, libcurl's, and whatever flingd itself inherited */
    if ((rc = sys(SYS_close_range, fd == 3 ? 4 : 3, ~0U, 0, 0)) < 0)
        child_fail(a, fd, STEP_SETUP, rc);
    if (t && (t->user || t->group)) {
        /* Group first: once the uid is dropped, the group cannot change any more. */
        if ((rc = sys(SYS_setgroups, 1, (long)&t->gid, 0, 0)) < 0 || (rc = sys(SYS_setgid, t->gid, 0, 0, 0)) < 0)
            child_fail(a, fd, STEP_GROUP, rc);
        if (t->user && (rc = sys(SYS_setuid, t->uid, 0, 0, 0)) < 0)
            child_fail(a, fd, STEP_USER, rc);
    }
    (void)sys(SYS_rt_sigprocmask, SIG_SETMASK, (long)&kmask, 0, sizeof kmask);
    rc = sys(SYS_execve, (long)a->argv[0], (long)a->argv, (long)a->envp, 0);
    child_fail(a, fd, STEP_EXEC, rc);
}

static int clone_main(void *arg)
{
    child_main(arg);
}

/* report_failure says in w->error why the child could not become the job (it exits 127). */
static void report_failure(fl_worker *w, const child_error *ce)
{
    const char *argv0 = w->spec.argv[0];
    if (ce->step == STEP_USER)
        snprintf(w->error, sizeof w->error, "exec %s: cannot run as user %s: %s", argv0,
                 w->spec.settings->user, strerror(ce->err));
    else if (ce->step == STEP_GROUP)
        snprintf(w->error, sizeof w->error, "exec %s: cannot run with group %u: %s", argv0,
                 (unsigned)w->spec.settings->gid, strerror(ce->err));
    else
        snprintf(w->error, sizeof w->error, "exec %s: %s%s", argv0,
                 ce->step == STEP_SETUP ? "setting up the child: " : "", strerror(ce->err));
}

/* child_memory_free frees what the child shared: only once it is gone, or was never made. */
static void child_memory_free(fl_worker *w)
{
    stack_put(w->stack);
    w->stack = NULL;
    free(w->args.envp);
    w->args.envp = NULL;
}

/* The child is reaped: it has exec'd, or exited after reporting why it could not. */
static void child_reaped(fl_worker *w)
{
    child_error ce = { w->ce.step, w->ce.err };
    if (ce.step)
        report_failure(w, &ce);
    child_memory_free(w);
}

/* spawn starts w's child (w->args set but the report's end), cloned or forked (see above).
 * 0, with w->pid (and a forked child's failure in w->error), or an errno if there is no child. */
static int spawn(fl_worker *w)
{
    const fl_type *t = w->spec.settings;
    int cloned = FL_WORKER_CLONE && !(t && (t->user || t->group));
    int st[2] = { -1, -1 };
    if (cloned && !(w->stack = stack_get()))
        return ENOMEM;
    if (!cloned && pipe2(st, O_CLOEXEC) < 0)
        return errno;
    w->args.shared = cloned ? &w->ce : NULL;
    w->args.status_fd = st[1];
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);   /* no flingd handler may run in the child */
    pid_t pid = cloned ? clone(clone_main, (char *)w->stack + FL_WORKER_STACK, CLONE_VM | SIGCHLD, &w->args)
                       : fork();
    if (pid == 0)
        child_main(&w->args);
    int err = pid < 0 ? errno : 0;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (pid > 0)
        w->pid = pid;
    if (cloned && pid > 0)
        setpgid(pid, pid);   /* the child does it too; whichever is second fails, harmlessly */
    if (!cloned) {
        close(st[1]);
        child_error ce;
        ssize_t n = 0;
        while (pid > 0 && (n = read(st[0], &ce, sizeof ce)) < 0 && errno == EINTR)
            ;
        if (n == (ssize_t)sizeof ce)
            report_failure(w, &ce);
        close(st[0]);
    }
    return err;
}

static int start_exec(fl_worker *w)
{
    int in[2] = { -1, -1 }, out[2] = { -1, -1 };
    int rc = 0;
    if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0) {
        rc = -errno;
        goto fail_pipes;
    }
    w->args = (child_args){ .argv = w->spec.argv, .settings = w->spec.settings, .in_fd = in[0], .out_fd = out[1] };
    if ((rc = job_env(w, &w->args.envp)) < 0)
        goto fail_pipes;
    int err = spawn(w);
    close(in[0]);
    close(out[1]);
    if (err) {
        child_memory_free(w);
        close(in[1]);
        close(out[0]);
        snprintf(w->error, sizeof w->error, "exec %s: %s", w->spec.argv[0], strerror(err));
        w->reaped = w->out_eof = 1;
        w->status = 127 << 8;
        return 1;   /* started as a failed attempt: done comes from the loop */
    }
    fcntl(in[1], F_SETFL, O_NONBLOCK);
    fcntl(out[0], F_SETFL, O_NONBLOCK);
    ev_io_init(&w->in, in_cb, in[1], EV_WRITE);
    ev_io_init(&w->out, out_cb, out[0], EV_READ);
    w->in.data = w->out.data = w;
    ev_child_init(&w->child, child_cb, w->pid, 0);
    w->child.data = w;
    ev_child_start(w->env.loop, &w->child);
    ev_io_start(w->env.loop, &w->out);
    /* Input that fits in the pipe is written in this loop iteration, without an epoll_ctl;
     * in_cb starts the watcher only if the pipe fills. */
    ev_feed_event(w->env.loop, &w->in, EV_WRITE);
    return 0;
fail_pipes:
    for (int i = 0; i < 2; i++) {
        if (in[i] >= 0)
            close(in[i]);
        if (out[i] >= 0)
            close(out[i]);
    }
    return rc;
}

/* ---------------------------------------------------------------- sleep, noop, http */

static void tick_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    fl_worker *w = t->data;
    if (w->reaped) {   /* an exec that could not start */
        exec_maybe_done(w);
        return;
    }
    finish(w, w->error[0] == '\0', NULL, 0, 0, 0);
}

/* Parses sleep's input: a plain decimal number of seconds. */
static int sleep_seconds(const fl_worker_spec *spec, double *out)
{
    char buf[32];
    if (spec->input_len == 0 || spec->input_len >= sizeof buf)
        return -EINVAL;
    memcpy(buf, spec->input, spec->input_len);
    buf[spec->input_len] = '\0';
    char *end;
    size_t len = spec->input_len;
    while (len && (buf[len - 1] == '\n' || buf[len - 1] == ' '))
        buf[--len] = '\0';
    if (!len || buf[0] < '0' || buf[0] > '9')
        return -EINVAL;
    errno = 0;
    double s = strtod(buf, &end);
    if (errno || *end || s < 0 || s > FL_TIMEOUT_MAX)
        return -EINVAL;
    *out = s;
    return 0;
}

static void http_cb(void *udata, const fl_webhook_result *r)
{
    fl_worker *w = udata;
    w->http = NULL;
    if (!r->ok)
        snprintf(w->error, sizeof w->error, "%s", r->error);
    finish(w, r->ok, r->body, r->body_len, 0, 0);
}

void fl_worker_trace_headers(const char *traceparent, const char *tracestate, char tp[FL_TRACE_HEADER_MAX],
                             char ts[FL_TRACE_HEADER_MAX], const char **out)
{
    if (!traceparent)
        return;
    snprintf(tp, FL_TRACE_HEADER_MAX, "%s: %s", FL_HDR_TRACEPARENT, traceparent);
    *out++ = tp;
    if (tracestate) {
        snprintf(ts, FL_TRACE_HEADER_MAX, "%s: %s", FL_HDR_TRACESTATE, tracestate);
        *out = ts;
    }
}

static int start_http(fl_worker *w)
{
    if (!w->env.webhook)
        return -ENOTSUP;
    double total = w->spec.timeout > 0 ? w->spec.timeout : FL_TIMEOUT_MAX;
    double connect = total < FL_WORKER_CONNECT_TIMEOUT ? total : FL_WORKER_CONNECT_TIMEOUT;
    char id[48], type[FL_TYPE_NAME_MAX + 32], tp[FL_TRACE_HEADER_MAX], ts[FL_TRACE_HEADER_MAX];
    snprintf(id, sizeof id, "Fling-Job-Id: %lld", (long long)w->spec.job_id);
    snprintf(type, sizeof type, "Fling-Job-Type: %s", w->spec.job_type);
    const char *headers[6] = { "Content-Type: application/octet-stream", id, type, NULL, NULL, NULL };
    fl_worker_trace_headers(w->spec.traceparent, w->spec.tracestate, tp, ts, headers + 3);
    /* The transfer's own total limit is the job's; our limit timer stays as the backstop. */
    return fl_webhook_post(w->env.webhook, w->spec.url, w->spec.input, w->spec.input_len, headers, connect,
                           total, http_cb, w, &w->http);
}

/* ---------------------------------------------------------------- limits and stop */

static void kill_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    fl_worker *w = t->data;
    if (w->pid > 0 && !w->reaped)
        kill(-w->pid, SIGKILL);
}

/* SIGTERM now, SIGKILL after the grace period; timers and transfers end at once. */
static void terminate(fl_worker *w)
{
    if (w->spec.handler == FL_HANDLER_EXEC && w->pid > 0 && !w->reaped) {
        kill(-w->pid, SIGTERM);
        ev_timer_init(&w->kill, kill_cb, w->env.kill_grace, 0.);
        w->kill.data = w;
        ev_timer_start(w->env.loop, &w->kill);
        return;
    }
    if (w->http) {
        fl_webhook_cancel(w->http);
        w->http = NULL;
    }
    /* sleep/noop/http: end on the next iteration, from a watcher like every other ending. */
    ev_timer_stop(w->env.loop, &w->tick);
    ev_timer_set(&w->tick, 0., 0.);
    ev_timer_start(w->env.loop, &w->tick);
}

static void limit_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    fl_worker *w = t->data;
    w->timed_out = 1;
    terminate(w);
}

void fl_worker_abandon(fl_worker *w)
{
    if (w->spec.handler == FL_HANDLER_EXEC && w->pid > 0 && !w->reaped)
        kill(-w->pid, SIGKILL);
    if (w->http)
        fl_webhook_cancel(w->http);
    stop_watchers(w);
    if (w->stack)
        return;   /* a cloned child may not have died yet, on its stack and w->args: left for the exit */
    child_memory_free(w);
    free(w);
}

void fl_worker_stop(fl_worker *w, fl_stop_reason reason)
{
    if (w->finished || w->stopped || w->timed_out)
        return;
    w->stopped = reason;
    terminate(w);
}

int fl_worker_start(const fl_worker_env *env, const fl_worker_spec *spec, fl_worker_done done, void *udata,
                    fl_worker **out)
{
    fl_worker *w = calloc(1, sizeof *w);
    if (!w)
        return -ENOMEM;
    w->env = *env;
    w->spec = *spec;
    w->done = done;
    w->udata = udata;
    w->in.fd = w->out.fd = -1;
    w->started = ev_now(env->loop);
    ev_init(&w->tick, tick_cb);
    ev_init(&w->limit, limit_cb);
    w->tick.data = w->limit.data = w;
    int rc = 0;
    double nap = 0;
    switch (spec->handler) {
    case FL_HANDLER_EXEC:
        rc = start_exec(w);
        if (rc == 1) {   /* spawn failed: report it from the loop */
            ev_timer_set(&w->tick, 0., 0.);
            ev_timer_start(env->loop, &w->tick);
            rc = 0;
        }
        break;
    case FL_HANDLER_HTTP:
        rc = start_http(w);
        break;
    case FL_HANDLER_SLEEP:
        if (sleep_seconds(spec, &nap) < 0)   /* a bad payload fails on the next iteration */
            snprintf(w->error, sizeof w->error, "sleep: payload must be a number of seconds");
        __attribute__((fallthrough));
    case FL_HANDLER_NOOP:
        ev_timer_set(&w->tick, w->error[0] ? 0. : nap, 0.);
        ev_timer_start(env->loop, &w->tick);
        break;
    }
    if (rc < 0) {
        stop_watchers(w);
        free(w);
        return rc;
    }
    if (spec->timeout > 0) {
        ev_timer_set(&w->limit, spec->timeout, 0.);
        ev_timer_start(env->loop, &w->limit);
    }
    if (out)
        *out = w;
    return 0;
}
