/* pump.h — the one shape of "work may be due": a kick makes run() happen once, just before the
 * loop next sleeps (an ev_prepare), so a burst of kicks in one iteration costs one run; a wake
 * time (wall clock, ms) makes the pump kick itself then (an ev_timer). The scheduler and the
 * callback deliverer each own one and keep their own "what is dirty" state. Loop thread only. */
#ifndef FL_PUMP_H
#define FL_PUMP_H

#include <ev.h>
#include <stdint.h>

/* run gets the owner's udata, and woke = 1 when the wake time passed since the last run. */
typedef void (*fl_pump_fn)(void *udata, int woke);

typedef struct fl_pump {
    struct ev_loop *loop;        /* borrowed */
    fl_pump_fn run;
    void *udata;
    ev_prepare prepare;          /* active while a run is due */
    ev_timer wake;               /* active while a wake time is set */
    int64_t wake_at;             /* the wake time, ms; 0 = none */
    int woke;                    /* the wake time passed: told to the next run */
    int stopped;
} fl_pump;

/* fl_pump_init sets p up on loop (borrowed, must outlive p) to call run(udata); nothing runs
 * until the first kick or wake time. p needs no freeing beyond fl_pump_stop. */
void fl_pump_init(fl_pump *p, struct ev_loop *loop, fl_pump_fn run, void *udata);

/* fl_pump_kick makes run happen once before the loop next sleeps. A no-op once stopped. */
void fl_pump_kick(fl_pump *p);

/* fl_pump_wake_at kicks p at the wall-clock time at_ms (fl_job_now_ms), unless an earlier
 * wake time is already set; at_ms 0 is ignored. A no-op once stopped. */
void fl_pump_wake_at(fl_pump *p, int64_t at_ms);

/* fl_pump_stop stops both watchers for good: no run happens after it. Idempotent. */
void fl_pump_stop(fl_pump *p);

#endif
