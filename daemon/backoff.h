/* backoff.h — flingd's one exponential back-off: the delay before a job's retry, a callback
 * delivery's retry, an outcome's re-write and the Redis mirror's reconnect.
 *
 * The delay of retry number `attempt` (1 = the first) is base * 2^(attempt-1), capped at max,
 * then jittered: a fraction `jitter` of it (0..1) is scaled by a uniform draw in [0, 1) and the
 * rest is fixed. jitter 0.5 is "equal jitter" (half fixed, half random): retries of many jobs
 * that failed together spread out, yet none comes sooner than half its step. jitter 0 is the
 * plain doubling. Pure but for the caller's random state; no allocation, no clock. */
#ifndef FL_BACKOFF_H
#define FL_BACKOFF_H

#include <stdint.h>

/* The jitter of retries (jobs, callback deliveries, outcome re-writes): half fixed, half random. */
#define FL_BACKOFF_EQUAL_JITTER 0.5

/* fl_backoff_seed returns a fresh random state for fl_backoff_delay (from the clock and the
 * pid: jitter needs spread, not secrecy). */
uint64_t fl_backoff_seed(void);

/* fl_backoff_delay returns the delay in seconds before retry number attempt (values below 1
 * count as 1), as described above, drawing from *rng (advanced; may be NULL when jitter is 0).
 * Never overflows: any attempt past the cap gives max (jittered). base <= 0 gives 0. */
double fl_backoff_delay(double base, double max, int attempt, double jitter, uint64_t *rng);

#endif
