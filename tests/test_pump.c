/* test_pump.c — daemon/pump.c on a real libev loop: kicks coalesce into one run before the
 * loop sleeps, a wake time runs it with woke = 1, the earlier wake time wins, a stop ends it. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "job.h"
#include "pump.h"

typedef struct counter {
    fl_pump *p;
    int runs, woke;
    int64_t woke_ms;   /* fl_job_now_ms at the first run with woke */
    int kick_again;    /* kicks this many more times from inside run */
} counter;

static void on_run(void *udata, int woke)
{
    counter *c = udata;
    c->runs++;
    if (woke && !c->woke++)
        c->woke_ms = fl_job_now_ms();
    if (c->kick_again > 0) {
        c->kick_again--;
        fl_pump_kick(c->p);
    }
}

static void tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
}

/* Runs loop iterations until c has woken or the bound passes (seconds). */
static void spin(struct ev_loop *loop, const counter *c, double bound)
{
    ev_tstamp end = ev_time() + bound;
    ev_timer guard;   /* keeps ev_run(ONCE) from sleeping forever when nothing else is armed */
    ev_timer_init(&guard, tick, 0.01, 0.01);
    ev_timer_start(loop, &guard);
    while (!c->woke && ev_time() < end)
        ev_run(loop, EVRUN_ONCE);
    ev_timer_stop(loop, &guard);
}

static void kicks_coalesce(void **state)
{
    (void)state;
    struct ev_loop *loop = ev_loop_new(0);
    fl_pump p;
    counter c = { .p = &p };
    fl_pump_init(&p, loop, on_run, &c);
    ev_run(loop, EVRUN_NOWAIT);
    assert_int_equal(c.runs, 0);   /* nothing before the first kick */
    for (int i = 0; i < 5; i++)
        fl_pump_kick(&p);
    ev_run(loop, EVRUN_NOWAIT);
    assert_int_equal(c.runs, 1);
    assert_int_equal(c.woke, 0);
    ev_run(loop, EVRUN_NOWAIT);
    assert_int_equal(c.runs, 1);   /* not again without a kick */
    c.kick_again = 1;              /* a kick from inside run runs once more, next iteration */
    fl_pump_kick(&p);
    ev_run(loop, EVRUN_NOWAIT);
    ev_run(loop, EVRUN_NOWAIT);
    assert_int_equal(c.runs, 3);
    fl_pump_stop(&p);
    ev_loop_destroy(loop);
}

static void wake_time_runs_with_woke(void **state)
{
    (void)state;
    struct ev_loop *loop = ev_loop_new(0);
    fl_pump p;
    counter c = { .p = &p };
    fl_pump_init(&p, loop, on_run, &c);
    int64_t t0 = fl_job_now_ms();
    fl_pump_wake_at(&p, t0 + 5000);
    fl_pump_wake_at(&p, t0 + 50);     /* earlier: wins */
    fl_pump_wake_at(&p, t0 + 3000);   /* later: ignored */
    fl_pump_wake_at(&p, 0);           /* none: ignored */
    spin(loop, &c, 4.0);
    assert_int_equal(c.woke, 1);
    assert_int_equal(c.runs, 1);
    assert_true(c.woke_ms >= t0 + 50 && c.woke_ms < t0 + 2500);   /* generous: a noisy machine */
    /* The wake time fired and is gone: a later one is taken again. */
    c.woke = 0;
    fl_pump_wake_at(&p, fl_job_now_ms() + 20);
    spin(loop, &c, 4.0);
    assert_int_equal(c.woke, 1);
    fl_pump_stop(&p);
    ev_loop_destroy(loop);
}

static void stop_ends_runs_and_wakes(void **state)
{
    (void)state;
    struct ev_loop *loop = ev_loop_new(0);
    fl_pump p;
    counter c = { .p = &p };
    fl_pump_init(&p, loop, on_run, &c);
    fl_pump_kick(&p);
    fl_pump_wake_at(&p, fl_job_now_ms() + 10);
    fl_pump_stop(&p);
    fl_pump_kick(&p);
    fl_pump_wake_at(&p, fl_job_now_ms() + 10);
    assert_false(ev_is_active(&p.prepare));
    assert_false(ev_is_active(&p.wake));
    spin(loop, &c, 0.3);
    assert_int_equal(c.runs, 0);
    fl_pump_stop(&p);   /* idempotent */
    ev_loop_destroy(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(kicks_coalesce),
        cmocka_unit_test(wake_time_runs_with_woke),
        cmocka_unit_test(stop_ends_runs_and_wakes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
