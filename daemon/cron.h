/* cron.h — the schedule of a periodic type ([type.NAME] schedule = ...): a cron expression of
 * five fields (minute hour day-of-month month day-of-week) or six (a second field first), each
 * a star, a number, a range a-b, a step (star or range, then /n), or a comma-separated list.
 * Numbers only (no month or day names); day-of-week 0-7, 0 and 7 both Sunday. As in classic
 * cron, when both day fields are restricted a day matches if either does.
 * Slots are civil times of a zone (tz.h; UTC without one), and a slot runs at the first instant
 * the zone's clock shows it or later. So across DST, as Vixie cron and cronie do for jobs at a
 * fixed time: a slot in a skipped hour (02:30 on the night clocks go from 02:00 to 03:00) runs
 * once, when the clock jumps (03:00), together with any other slot it collapses into; a slot
 * in a repeated hour runs once, at its first pass. Thread-safe: no TZ, no localtime. No loop,
 * no store. */
#ifndef FL_CRON_H
#define FL_CRON_H

#include <stddef.h>
#include <stdint.h>

#include "tz.h"

typedef struct fl_cron {
    uint64_t second, minute;   /* bit n set: value n matches */
    uint32_t hour, dom;        /* dom: bits 1..31 */
    uint16_t month;            /* bits 1..12 */
    uint8_t dow;               /* bits 0..6, Sunday = 0 */
    int dom_any, dow_any;      /* the field was a star (step 1): the classic "either day" rule */
    const fl_tz *tz;           /* the zone of the slots (borrowed); NULL = UTC; parse clears it */
} fl_cron;

/* fl_cron_parse reads expr into *out: 0, or -EINVAL with a one-line reason in err. */
int fl_cron_parse(const char *expr, fl_cron *out, char *err, size_t errlen);

/* fl_cron_next returns the instant of the first slot after t (seconds since the epoch), or -1
 * if none comes within a few years (a day that does not exist, such as 30 2). Slots that run
 * at the same instant (in a skipped hour) are one. */
int64_t fl_cron_next(const fl_cron *c, int64_t t);

/* fl_cron_prev returns the instant of the last slot at or before t, or -1 if none within a
 * few years. */
int64_t fl_cron_prev(const fl_cron *c, int64_t t);

#endif
