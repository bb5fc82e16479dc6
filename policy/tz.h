/* Time zones and calendar windows, computed from data: a zone is parsed from
 * TZif bytes that config/ reads from /usr/share/zoneinfo, so nothing here
 * reads files or clocks. Times are Unix seconds (UTC). */
#ifndef PG_POLICY_TZ_H
#define PG_POLICY_TZ_H

#include <stdint.h>

#include "common/pg.h"

struct pg_tz;

/* Instants are clamped to [PG_TZ_TIME_MIN, PG_TZ_TIME_MAX] (10^13 s, about
 * 317,000 years either side of 1970) so calendar arithmetic never overflows;
 * pg_tz_from_civil clamps the wall-clock time it is given the same way. */
#define PG_TZ_TIME_MAX INT64_C(10000000000000)
#define PG_TZ_TIME_MIN (-PG_TZ_TIME_MAX)

/* Parses TZif (RFC 8536, versions 1-4, using the 64-bit data and the POSIX TZ
 * footer for instants past the last transition). `name` (may be NULL) is
 * copied, for messages. The bytes are treated as hostile: every count and
 * read is bounds-checked. PG_EPARSE for anything RFC 8536 forbids, for
 * offsets beyond RFC 8536's [-89999, 93599] s, trailing bytes, and for a
 * footer that names a DST zone without its rule (POSIX leaves that default to
 * the system; payguard will not guess). Leap-second records are skipped: Unix
 * time has none. 0 and *out (free with pg_tz_free), PG_EPARSE or PG_ENOMEM.
 * A zone is immutable once made: any thread may use it. */
PG_WUR int pg_tz_parse(const char *name, const uint8_t *data, size_t len, struct pg_tz **out);
/* The UTC zone, without any file. 0 and *out, or PG_ENOMEM. */
PG_WUR int pg_tz_utc(struct pg_tz **out);
void pg_tz_free(struct pg_tz *tz);
const char *pg_tz_name(const struct pg_tz *tz);

/* Seconds east of UTC in force at instant t. Before the zone's first
 * transition, its first time type; from its last on, the footer's rule. */
int32_t pg_tz_offset(const struct pg_tz *tz, int64_t t);

struct pg_civil {
    int32_t year;
    int32_t month; /* 1-12 */
    int32_t day;   /* 1-31 */
    int32_t hour, minute, second;
    int32_t weekday; /* 0 = Monday ... 6 = Sunday (ISO) */
};

/* Local civil time of instant t in tz. In an overlap both passes read the
 * same wall-clock time. */
void pg_tz_to_civil(const struct pg_tz *tz, int64_t t, struct pg_civil *out);

/* The first instant whose local time in tz is at or after the given local
 * wall-clock time: the earlier instant when the time occurs twice (DST end),
 * the end of the gap when it does not occur (DST start). Fields are
 * normalised (day 32 rolls into the next month, and so on). */
int64_t pg_tz_from_civil(const struct pg_tz *tz, int32_t year, int32_t month, int32_t day,
                         int32_t hour, int32_t minute, int32_t second);

/* Calendar windows containing instant t in tz: [start, end) for the day
 * (from local 00:00), the ISO week (from Monday 00:00) and the month (from
 * the 1st 00:00). DST-correct: a day may last 23 or 25 hours (23.5 on Lord
 * Howe), and where midnight falls in a gap the day starts at the gap's end
 * (01:00 in Santiago). Each boundary is pg_tz_from_civil of that midnight, so
 * windows of one kind tile the time line: one's end is the next one's start,
 * and start <= t < end always holds. */
struct pg_windows {
    int64_t day_start, day_end;
    int64_t week_start, week_end;
    int64_t month_start, month_end;
};
void pg_tz_windows(const struct pg_tz *tz, int64_t t, struct pg_windows *out);

#endif
