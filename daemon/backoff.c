/* backoff.c — the exponential back-off with jitter of backoff.h. */
#include "backoff.h"

#include <time.h>
#include <unistd.h>

uint64_t fl_backoff_seed(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000007u ^ (uint64_t)ts.tv_nsec ^ (uint64_t)getpid() << 32;
}

/* draw returns a uniform double in [0, 1) and advances *state (splitmix64: one add, a few
 * multiplies, full period). */
static double draw(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15u);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
    z ^= z >> 31;
    return (double)(z >> 11) * 0x1.0p-53;
}

double fl_backoff_delay(double base, double max, int attempt, double jitter, uint64_t *rng)
{
    if (base <= 0)
        return 0;
    /* Doubling stops at the cap, so a huge attempt costs a few steps and cannot overflow. */
    double d = base;
    for (int i = 1; i < attempt && d < max; i++)
        d *= 2;
    if (d > max)
        d = max;
    if (jitter <= 0 || !rng)
        return d;
    if (jitter > 1)
        jitter = 1;
    return d * (1 - jitter) + d * jitter * draw(rng);
}
