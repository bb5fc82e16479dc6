/* Time zones from real TZif files in /usr/share/zoneinfo: offsets around DST
 * switches, civil time, from_civil in gaps and overlaps, day/week/month
 * windows, the POSIX footer far past the last transition, and hostile bytes.
 * Expected instants are written as UTC civil times and converted with libc's
 * timegm, an oracle independent of policy/tz.c. */
#include "common/pg.h"
#include "policy/tz.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#define H INT64_C(3600)
#define DAY (24 * H)

/* ---- fixtures ---------------------------------------------------------- */

enum zone {
    PARIS,
    NEW_YORK,
    KOLKATA,
    LORD_HOWE,
    CHATHAM,
    SANTIAGO,
    DUBLIN,
    NUUK,
    UTC_FILE,
    NZONES
};

static const char *const zone_names[NZONES] = {
    "Europe/Paris",        "America/New_York", "Asia/Kolkata",
    "Australia/Lord_Howe", "Pacific/Chatham",  "America/Santiago",
    "Europe/Dublin",       "America/Nuuk",     "Etc/UTC",
};

static struct pg_tz *zones[NZONES];

struct bytes {
    uint8_t *p;
    size_t len;
};

static struct bytes read_zone_file(const char *name)
{
    struct bytes b = {NULL, 0};
    char path[256];
    snprintf(path, sizeof(path), "/usr/share/zoneinfo/%s", name);
    FILE *f = fopen(path, "rb");
    if (!f)
        return b;
    size_t cap = 1 << 16;
    b.p = malloc(cap);
    if (b.p)
        b.len = fread(b.p, 1, cap, f);
    fclose(f);
    return b;
}

static int load_zones(void **state)
{
    (void)state;
    for (int i = 0; i < NZONES; i++) {
        struct bytes b = read_zone_file(zone_names[i]);
        if (!b.p || b.len == 0) {
            fprintf(stderr, "cannot read /usr/share/zoneinfo/%s (install tzdata)\n", zone_names[i]);
            free(b.p);
            return -1;
        }
        int rc = pg_tz_parse(zone_names[i], b.p, b.len, &zones[i]);
        free(b.p);
        if (rc != 0) {
            fprintf(stderr, "%s: pg_tz_parse %d\n", zone_names[i], rc);
            return -1;
        }
    }
    return 0;
}

static int free_zones(void **state)
{
    (void)state;
    for (int i = 0; i < NZONES; i++) {
        pg_tz_free(zones[i]);
        zones[i] = NULL;
    }
    return 0;
}

/* Unix time of a UTC civil time, by libc. */
static int64_t utc(int y, int mo, int d, int h, int mi, int s)
{
    struct tm tm = {0};
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = s;
    return (int64_t)timegm(&tm);
}

static void check_civil(enum zone z, int64_t t, int y, int mo, int d, int h, int mi, int s, int wd)
{
    struct pg_civil c;
    pg_tz_to_civil(zones[z], t, &c);
    if (c.year != y || c.month != mo || c.day != d || c.hour != h || c.minute != mi ||
        c.second != s || c.weekday != wd)
        fail_msg(
            "%s at %lld: %d-%02d-%02d %02d:%02d:%02d wd %d, want %d-%02d-%02d %02d:%02d:%02d wd %d",
            zone_names[z], (long long)t, c.year, c.month, c.day, c.hour, c.minute, c.second,
            c.weekday, y, mo, d, h, mi, s, wd);
}

/* ---- offsets ----------------------------------------------------------- */

struct offset_case {
    enum zone z;
    int y, mo, d, h, mi, s; /* UTC */
    int32_t off;
};

static void check_offsets(const struct offset_case *c, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int64_t t = utc(c[i].y, c[i].mo, c[i].d, c[i].h, c[i].mi, c[i].s);
        int32_t got = pg_tz_offset(zones[c[i].z], t);
        if (got != c[i].off)
            fail_msg("%s at %d-%02d-%02d %02d:%02d:%02dZ: offset %d, want %d", zone_names[c[i].z],
                     c[i].y, c[i].mo, c[i].d, c[i].h, c[i].mi, c[i].s, got, c[i].off);
    }
}

static void offsets_around_2026_switches(void **state)
{
    (void)state;
    static const struct offset_case cases[] = {
        {PARIS, 2026, 3, 29, 0, 59, 59, 3600},
        {PARIS, 2026, 3, 29, 1, 0, 0, 7200},
        {PARIS, 2026, 10, 25, 0, 59, 59, 7200},
        {PARIS, 2026, 10, 25, 1, 0, 0, 3600},
        {PARIS, 2026, 1, 15, 12, 0, 0, 3600},
        {PARIS, 2026, 7, 15, 12, 0, 0, 7200},
        {NEW_YORK, 2026, 3, 8, 6, 59, 59, -5 * 3600},
        {NEW_YORK, 2026, 3, 8, 7, 0, 0, -4 * 3600},
        {NEW_YORK, 2026, 11, 1, 5, 59, 59, -4 * 3600},
        {NEW_YORK, 2026, 11, 1, 6, 0, 0, -5 * 3600},
        /* Lord Howe moves by 30 minutes: +10:30 / +11 */
        {LORD_HOWE, 2026, 4, 4, 14, 59, 59, 39600},
        {LORD_HOWE, 2026, 4, 4, 15, 0, 0, 37800},
        {LORD_HOWE, 2026, 10, 3, 15, 29, 59, 37800},
        {LORD_HOWE, 2026, 10, 3, 15, 30, 0, 39600},
        /* Chatham: +12:45 / +13:45 */
        {CHATHAM, 2026, 4, 4, 13, 59, 59, 49500},
        {CHATHAM, 2026, 4, 4, 14, 0, 0, 45900},
        {CHATHAM, 2026, 9, 26, 13, 59, 59, 45900},
        {CHATHAM, 2026, 9, 26, 14, 0, 0, 49500},
        /* Santiago switches at local midnight */
        {SANTIAGO, 2026, 4, 5, 2, 59, 59, -3 * 3600},
        {SANTIAGO, 2026, 4, 5, 3, 0, 0, -4 * 3600},
        {SANTIAGO, 2026, 9, 6, 3, 59, 59, -4 * 3600},
        {SANTIAGO, 2026, 9, 6, 4, 0, 0, -3 * 3600},
        {KOLKATA, 2026, 3, 29, 1, 0, 0, 19800},
        {KOLKATA, 2026, 10, 25, 1, 0, 0, 19800},
        {UTC_FILE, 2026, 3, 29, 1, 0, 0, 0},
    };
    check_offsets(cases, PG_ARRAY_LEN(cases));
}

/* Past 2037 Debian's files have no transitions: only the footer's POSIX rule
 * knows when DST switches. */
static void far_future_offsets_come_from_the_footer(void **state)
{
    (void)state;
    static const struct offset_case cases[] = {
        {PARIS, 2040, 3, 25, 0, 59, 59, 3600},
        {PARIS, 2040, 3, 25, 1, 0, 0, 7200},
        {PARIS, 2040, 10, 28, 0, 59, 59, 7200},
        {PARIS, 2040, 10, 28, 1, 0, 0, 3600},
        {PARIS, 2100, 3, 28, 0, 59, 59, 3600},
        {PARIS, 2100, 3, 28, 1, 0, 0, 7200},
        {PARIS, 2100, 10, 31, 0, 59, 59, 7200},
        {PARIS, 2100, 10, 31, 1, 0, 0, 3600},
        {NEW_YORK, 2040, 3, 11, 6, 59, 59, -5 * 3600},
        {NEW_YORK, 2040, 3, 11, 7, 0, 0, -4 * 3600},
        {NEW_YORK, 2040, 11, 4, 5, 59, 59, -4 * 3600},
        {NEW_YORK, 2040, 11, 4, 6, 0, 0, -5 * 3600},
        {NEW_YORK, 2100, 3, 14, 7, 0, 0, -4 * 3600},
        {NEW_YORK, 2100, 11, 7, 6, 0, 0, -5 * 3600},
        /* southern hemisphere: DST spans New Year */
        {LORD_HOWE, 2040, 1, 1, 0, 0, 0, 39600},
        {LORD_HOWE, 2040, 3, 31, 14, 59, 59, 39600},
        {LORD_HOWE, 2040, 3, 31, 15, 0, 0, 37800},
        {LORD_HOWE, 2040, 10, 6, 15, 29, 59, 37800},
        {LORD_HOWE, 2040, 10, 6, 15, 30, 0, 39600},
        {CHATHAM, 2040, 9, 29, 14, 0, 0, 49500},
        /* M9.1.6/24: the hour 24 of RFC 8536 version 3 */
        {SANTIAGO, 2040, 4, 8, 2, 59, 59, -3 * 3600},
        {SANTIAGO, 2040, 4, 8, 3, 0, 0, -4 * 3600},
        {SANTIAGO, 2040, 9, 2, 3, 59, 59, -4 * 3600},
        {SANTIAGO, 2040, 9, 2, 4, 0, 0, -3 * 3600},
        /* "<-02>2<-01>,M3.5.0/-1,M10.5.0/0": a negative switch time */
        {NUUK, 2040, 3, 25, 0, 59, 59, -7200},
        {NUUK, 2040, 3, 25, 1, 0, 0, -3600},
        /* "IST-1GMT0,M10.5.0,M3.5.0/1": Irish standard time is the summer one */
        {DUBLIN, 2040, 1, 15, 12, 0, 0, 0},
        {DUBLIN, 2040, 3, 25, 0, 59, 59, 0},
        {DUBLIN, 2040, 3, 25, 1, 0, 0, 3600},
        {DUBLIN, 2040, 10, 28, 1, 0, 0, 0},
        {KOLKATA, 2100, 6, 1, 0, 0, 0, 19800},
        {UTC_FILE, 2100, 6, 1, 0, 0, 0, 0},
    };
    check_offsets(cases, PG_ARRAY_LEN(cases));
}

/* Before its first transition a zone keeps time type 0: local mean time. */
static void before_the_first_transition(void **state)
{
    (void)state;
    /* Kolkata's LMT was +5:53:28, Paris's +0:09:21. */
    assert_int_equal(pg_tz_offset(zones[KOLKATA], utc(1800, 1, 1, 0, 0, 0)), 21208);
    assert_int_equal(pg_tz_offset(zones[PARIS], utc(1800, 1, 1, 0, 0, 0)), 561);
}

/* ---- civil time -------------------------------------------------------- */

static void civil_time_and_weekdays(void **state)
{
    (void)state;
    check_civil(PARIS, utc(2026, 3, 29, 0, 59, 59), 2026, 3, 29, 1, 59, 59, 6);
    check_civil(PARIS, utc(2026, 3, 29, 1, 0, 0), 2026, 3, 29, 3, 0, 0, 6);
    check_civil(PARIS, utc(2026, 10, 25, 0, 30, 0), 2026, 10, 25, 2, 30, 0, 6);
    check_civil(PARIS, utc(2026, 10, 25, 1, 30, 0), 2026, 10, 25, 2, 30, 0, 6);
    check_civil(NEW_YORK, utc(2026, 1, 1, 4, 59, 59), 2025, 12, 31, 23, 59, 59, 2);
    check_civil(NEW_YORK, utc(2026, 1, 1, 5, 0, 0), 2026, 1, 1, 0, 0, 0, 3);
    check_civil(KOLKATA, utc(2026, 6, 30, 18, 30, 0), 2026, 7, 1, 0, 0, 0, 2);
    check_civil(CHATHAM, utc(2026, 12, 31, 10, 15, 0), 2027, 1, 1, 0, 0, 0, 4);
    check_civil(LORD_HOWE, utc(2026, 10, 3, 15, 30, 0), 2026, 10, 4, 2, 30, 0, 6);
    check_civil(SANTIAGO, utc(2026, 9, 6, 4, 0, 0), 2026, 9, 6, 1, 0, 0, 6);
    check_civil(UTC_FILE, 0, 1970, 1, 1, 0, 0, 0, 3);
    check_civil(UTC_FILE, -1, 1969, 12, 31, 23, 59, 59, 2);
    check_civil(PARIS, utc(2100, 2, 28, 23, 0, 0), 2100, 3, 1, 0, 0, 0,
                0); /* 2100 is no leap year */
    check_civil(PARIS, utc(2028, 2, 28, 23, 0, 0), 2028, 2, 29, 0, 0, 0, 1);
}

/* to_civil in UTC against gmtime_r over four centuries, both sides of 1970. */
static void civil_matches_libc_in_utc(void **state)
{
    (void)state;
    struct pg_tz *u;
    assert_int_equal(pg_tz_utc(&u), 0);
    assert_string_equal(pg_tz_name(u), "UTC");
    uint64_t x = 88172645463325252u;
    for (int i = 0; i < 200000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        int64_t t = (int64_t)(x % (uint64_t)utc(2200, 1, 1, 0, 0, 0)) * (i & 1 ? 1 : -1);
        if (i < 100)
            t = utc(1900 + i * 3, 2, 28, 23, 59, 59) + i % 3;
        struct pg_civil c;
        pg_tz_to_civil(u, t, &c);
        time_t tt = (time_t)t;
        struct tm tm;
        assert_non_null(gmtime_r(&tt, &tm));
        if (c.year != tm.tm_year + 1900 || c.month != tm.tm_mon + 1 || c.day != tm.tm_mday ||
            c.hour != tm.tm_hour || c.minute != tm.tm_min || c.second != tm.tm_sec ||
            c.weekday != (tm.tm_wday + 6) % 7)
            fail_msg("t=%lld: %d-%d-%d %d:%d:%d wd %d", (long long)t, c.year, c.month, c.day,
                     c.hour, c.minute, c.second, c.weekday);
        assert_int_equal(pg_tz_offset(u, t), 0);
        assert_true(pg_tz_from_civil(u, c.year, c.month, c.day, c.hour, c.minute, c.second) == t);
    }
    pg_tz_free(u);
}

/* ---- from_civil -------------------------------------------------------- */

struct from_case {
    enum zone z;
    int32_t y, mo, d, h, mi, s;   /* local wall clock */
    int ey, emo, ed, eh, emi, es; /* expected instant, UTC */
};

static void from_civil_gaps_overlaps_and_normalising(void **state)
{
    (void)state;
    static const struct from_case cases[] = {
        /* gap: the end of it */
        {PARIS, 2026, 3, 29, 2, 30, 0, 2026, 3, 29, 1, 0, 0},
        {PARIS, 2026, 3, 29, 2, 0, 0, 2026, 3, 29, 1, 0, 0},
        {PARIS, 2026, 3, 29, 3, 0, 0, 2026, 3, 29, 1, 0, 0},
        {PARIS, 2026, 3, 29, 1, 59, 59, 2026, 3, 29, 0, 59, 59},
        /* overlap: the earlier instant */
        {PARIS, 2026, 10, 25, 2, 30, 0, 2026, 10, 25, 0, 30, 0},
        {PARIS, 2026, 10, 25, 2, 0, 0, 2026, 10, 25, 0, 0, 0},
        {PARIS, 2026, 10, 25, 3, 0, 0, 2026, 10, 25, 2, 0, 0},
        {PARIS, 2026, 7, 1, 12, 0, 0, 2026, 7, 1, 10, 0, 0},
        {NEW_YORK, 2026, 3, 8, 2, 30, 0, 2026, 3, 8, 7, 0, 0},
        {NEW_YORK, 2026, 11, 1, 1, 30, 0, 2026, 11, 1, 5, 30, 0},
        {LORD_HOWE, 2026, 10, 4, 2, 15, 0, 2026, 10, 3, 15, 30, 0},
        {LORD_HOWE, 2026, 4, 5, 1, 45, 0, 2026, 4, 4, 14, 45, 0},
        {SANTIAGO, 2026, 9, 6, 0, 0, 0, 2026, 9, 6, 4, 0, 0},
        {SANTIAGO, 2026, 9, 6, 0, 59, 59, 2026, 9, 6, 4, 0, 0},
        {SANTIAGO, 2026, 4, 4, 23, 30, 0, 2026, 4, 5, 2, 30, 0},
        {PARIS, 2040, 3, 25, 2, 30, 0, 2040, 3, 25, 1, 0, 0},
        {PARIS, 2100, 10, 31, 2, 30, 0, 2100, 10, 31, 0, 30, 0},
        /* normalising */
        {PARIS, 2026, 13, 1, 0, 0, 0, 2026, 12, 31, 23, 0, 0},
        {PARIS, 2026, 0, 1, 0, 0, 0, 2025, 11, 30, 23, 0, 0},
        {PARIS, 2026, -11, 1, 0, 0, 0, 2024, 12, 31, 23, 0, 0},
        {PARIS, 2026, 2, 29, 12, 0, 0, 2026, 3, 1, 11, 0, 0},
        {PARIS, 2026, 1, 32, 12, 0, 0, 2026, 2, 1, 11, 0, 0},
        {PARIS, 2026, 1, 0, 12, 0, 0, 2025, 12, 31, 11, 0, 0},
        {PARIS, 2026, 6, 30, 24, 0, 0, 2026, 6, 30, 22, 0, 0},
        {PARIS, 2026, 7, 1, 0, -1, 0, 2026, 6, 30, 21, 59, 0},
        {PARIS, 2026, 7, 1, 0, 0, 86400, 2026, 7, 1, 22, 0, 0},
        {UTC_FILE, 2028, 2, 29, 0, 0, 0, 2028, 2, 29, 0, 0, 0},
    };
    for (size_t i = 0; i < PG_ARRAY_LEN(cases); i++) {
        const struct from_case *c = &cases[i];
        int64_t got = pg_tz_from_civil(zones[c->z], c->y, c->mo, c->d, c->h, c->mi, c->s);
        int64_t want = utc(c->ey, c->emo, c->ed, c->eh, c->emi, c->es);
        if (got != want)
            fail_msg("%s %d-%d-%d %d:%d:%d: %lld, want %lld", zone_names[c->z], c->y, c->mo, c->d,
                     c->h, c->mi, c->s, (long long)got, (long long)want);
    }
    /* Absurd fields clamp instead of overflowing. */
    assert_true(pg_tz_from_civil(zones[PARIS], INT32_MAX, INT32_MAX, INT32_MAX, INT32_MAX,
                                 INT32_MAX, INT32_MAX) >= PG_TZ_TIME_MAX - DAY);
    assert_true(pg_tz_from_civil(zones[PARIS], INT32_MIN, INT32_MIN, INT32_MIN, INT32_MIN,
                                 INT32_MIN, INT32_MIN) <= PG_TZ_TIME_MIN + DAY);
}

/* from_civil(to_civil(t)) is t, except on the second pass through an
 * overlap, where it is the first pass, one DST step earlier. */
static void from_civil_inverts_to_civil(void **state)
{
    (void)state;
    const enum zone zs[] = {PARIS, NEW_YORK, LORD_HOWE, CHATHAM, SANTIAGO, DUBLIN, NUUK, KOLKATA};
    for (size_t k = 0; k < PG_ARRAY_LEN(zs); k++) {
        struct pg_tz *tz = zones[zs[k]];
        for (int64_t t = utc(2026, 1, 1, 0, 0, 0); t < utc(2027, 1, 1, 0, 0, 0); t += 15 * 60 + 7) {
            struct pg_civil c;
            pg_tz_to_civil(tz, t, &c);
            int64_t back = pg_tz_from_civil(tz, c.year, c.month, c.day, c.hour, c.minute, c.second);
            int64_t step = pg_tz_offset(tz, back) - pg_tz_offset(tz, t);
            if (back != t && !(back == t - step && step > 0))
                fail_msg("%s t=%lld back=%lld", zone_names[zs[k]], (long long)t, (long long)back);
        }
    }
}

/* ---- windows ----------------------------------------------------------- */

static void day_windows_on_switch_days(void **state)
{
    (void)state;
    struct pg_windows w;
    pg_tz_windows(zones[PARIS], utc(2026, 3, 29, 10, 0, 0), &w);
    assert_true(w.day_start == utc(2026, 3, 28, 23, 0, 0));
    assert_true(w.day_end == utc(2026, 3, 29, 22, 0, 0));
    assert_true(w.day_end - w.day_start == 23 * H);
    pg_tz_windows(zones[PARIS], utc(2026, 10, 25, 10, 0, 0), &w);
    assert_true(w.day_start == utc(2026, 10, 24, 22, 0, 0));
    assert_true(w.day_end == utc(2026, 10, 25, 23, 0, 0));
    assert_true(w.day_end - w.day_start == 25 * H);
    /* inside the repeated hour, either pass */
    pg_tz_windows(zones[PARIS], utc(2026, 10, 25, 1, 30, 0), &w);
    assert_true(w.day_start == utc(2026, 10, 24, 22, 0, 0));

    pg_tz_windows(zones[NEW_YORK], utc(2026, 3, 8, 12, 0, 0), &w);
    assert_true(w.day_start == utc(2026, 3, 8, 5, 0, 0));
    assert_true(w.day_end - w.day_start == 23 * H);
    pg_tz_windows(zones[NEW_YORK], utc(2026, 11, 1, 12, 0, 0), &w);
    assert_true(w.day_start == utc(2026, 11, 1, 4, 0, 0));
    assert_true(w.day_end - w.day_start == 25 * H);

    pg_tz_windows(zones[LORD_HOWE], utc(2026, 10, 4, 0, 0, 0), &w);
    assert_true(w.day_end - w.day_start == 23 * H + 30 * 60);
    pg_tz_windows(zones[LORD_HOWE], utc(2026, 4, 5, 0, 0, 0), &w);
    assert_true(w.day_end - w.day_start == 24 * H + 30 * 60);

    /* Santiago springs forward at midnight: Sunday starts at 01:00. */
    pg_tz_windows(zones[SANTIAGO], utc(2026, 9, 6, 16, 0, 0), &w);
    assert_true(w.day_start == utc(2026, 9, 6, 4, 0, 0));
    assert_true(w.day_end == utc(2026, 9, 7, 3, 0, 0));
    struct pg_civil c;
    pg_tz_to_civil(zones[SANTIAGO], w.day_start, &c);
    assert_int_equal(c.day, 6);
    assert_int_equal(c.hour, 1);
    assert_int_equal(c.minute, 0);
    /* and falls back at midnight: Saturday has 25 hours */
    pg_tz_windows(zones[SANTIAGO], utc(2026, 4, 5, 3, 30, 0), &w); /* Sat 23:30, second pass */
    assert_true(w.day_start == utc(2026, 4, 4, 3, 0, 0));
    assert_true(w.day_end == utc(2026, 4, 5, 4, 0, 0));

    /* far future, from the footer */
    pg_tz_windows(zones[PARIS], utc(2100, 3, 28, 12, 0, 0), &w);
    assert_true(w.day_start == utc(2100, 3, 27, 23, 0, 0));
    assert_true(w.day_end - w.day_start == 23 * H);
    pg_tz_windows(zones[NEW_YORK], utc(2040, 11, 4, 12, 0, 0), &w);
    assert_true(w.day_end - w.day_start == 25 * H);
}

static void windows_across_local_midnight(void **state)
{
    (void)state;
    struct pg_windows a, b;
    int64_t last = pg_tz_from_civil(zones[PARIS], 2026, 6, 10, 23, 59, 59);
    int64_t first = pg_tz_from_civil(zones[PARIS], 2026, 6, 11, 0, 0, 0);
    assert_true(first == last + 1);
    assert_true(first == utc(2026, 6, 10, 22, 0, 0));
    pg_tz_windows(zones[PARIS], last, &a);
    pg_tz_windows(zones[PARIS], first, &b);
    assert_true(a.day_end == first);
    assert_true(b.day_start == first);
    assert_true(a.day_start != b.day_start);
    assert_true(a.week_start == b.week_start); /* Wednesday to Thursday */

    /* Kolkata's midnight is 18:30 UTC */
    pg_tz_windows(zones[KOLKATA], utc(2026, 6, 10, 18, 29, 59), &a);
    pg_tz_windows(zones[KOLKATA], utc(2026, 6, 10, 18, 30, 0), &b);
    assert_true(a.day_end == utc(2026, 6, 10, 18, 30, 0));
    assert_true(b.day_start == a.day_end);
}

static void iso_weeks(void **state)
{
    (void)state;
    struct pg_windows w;
    /* 2026-01-01 is a Thursday: its week began Monday 2025-12-29. */
    pg_tz_windows(zones[PARIS], utc(2026, 1, 1, 11, 0, 0), &w);
    assert_true(w.week_start == utc(2025, 12, 28, 23, 0, 0));
    assert_true(w.week_end == utc(2026, 1, 4, 23, 0, 0));
    /* Sunday 23:59 local belongs to the week that began the Monday before. */
    int64_t sunday = pg_tz_from_civil(zones[PARIS], 2026, 1, 4, 23, 59, 0);
    pg_tz_windows(zones[PARIS], sunday, &w);
    assert_true(w.week_start == utc(2025, 12, 28, 23, 0, 0));
    int64_t monday = pg_tz_from_civil(zones[PARIS], 2026, 1, 5, 0, 0, 0);
    assert_true(monday == w.week_end);
    pg_tz_windows(zones[PARIS], monday, &w);
    assert_true(w.week_start == monday);
    struct pg_civil c;
    pg_tz_to_civil(zones[PARIS], w.week_start, &c);
    assert_int_equal(c.weekday, 0);

    /* The week holding the March switch is an hour short. */
    pg_tz_windows(zones[PARIS], utc(2026, 3, 26, 12, 0, 0), &w);
    assert_true(w.week_start == utc(2026, 3, 22, 23, 0, 0));
    assert_true(w.week_end == utc(2026, 3, 29, 22, 0, 0));
    assert_true(w.week_end - w.week_start == 7 * DAY - H);
    /* New York, Sunday evening local is Monday UTC */
    pg_tz_windows(zones[NEW_YORK], utc(2026, 1, 5, 4, 59, 59), &w);
    assert_true(w.week_start == utc(2025, 12, 29, 5, 0, 0));
    assert_true(w.week_end == utc(2026, 1, 5, 5, 0, 0));
}

static void month_windows(void **state)
{
    (void)state;
    struct pg_windows w;
    /* February of leap year 2028 */
    pg_tz_windows(zones[PARIS], utc(2028, 2, 15, 12, 0, 0), &w);
    assert_true(w.month_start == utc(2028, 1, 31, 23, 0, 0));
    assert_true(w.month_end == utc(2028, 2, 29, 23, 0, 0));
    assert_true(w.month_end - w.month_start == 29 * DAY);
    pg_tz_windows(zones[PARIS], utc(2028, 2, 29, 22, 59, 59), &w);
    assert_true(w.month_end == utc(2028, 2, 29, 23, 0, 0));
    pg_tz_windows(zones[PARIS], utc(2026, 2, 15, 12, 0, 0), &w);
    assert_true(w.month_end - w.month_start == 28 * DAY);
    /* December into January */
    int64_t eve = pg_tz_from_civil(zones[NEW_YORK], 2026, 12, 31, 23, 59, 59);
    pg_tz_windows(zones[NEW_YORK], eve, &w);
    assert_true(w.month_start == utc(2026, 12, 1, 5, 0, 0));
    assert_true(w.month_end == utc(2027, 1, 1, 5, 0, 0));
    pg_tz_windows(zones[NEW_YORK], eve + 1, &w);
    assert_true(w.month_start == utc(2027, 1, 1, 5, 0, 0));
    assert_true(w.month_end == utc(2027, 2, 1, 5, 0, 0));
    /* March in Paris loses an hour, October gains one */
    pg_tz_windows(zones[PARIS], utc(2026, 3, 15, 0, 0, 0), &w);
    assert_true(w.month_end - w.month_start == 31 * DAY - H);
    pg_tz_windows(zones[PARIS], utc(2026, 10, 15, 0, 0, 0), &w);
    assert_true(w.month_end - w.month_start == 31 * DAY + H);
    /* Lord Howe: DST across New Year, so January is plain 31 days */
    pg_tz_windows(zones[LORD_HOWE], utc(2027, 1, 15, 0, 0, 0), &w);
    assert_true(w.month_start == utc(2026, 12, 31, 13, 0, 0));
    assert_true(w.month_end - w.month_start == 31 * DAY);
}

/* Every hour of 2026 and 2040 in every zone: windows hold t, abut, start at
 * local midnight (or the first instant after it), and weeks start on Monday. */
static void windows_partition_the_time_line(void **state)
{
    (void)state;
    for (int z = 0; z < NZONES; z++) {
        struct pg_tz *tz = zones[z];
        for (int year = 2026; year <= 2040; year += 14) {
            struct pg_windows prev = {0};
            for (int64_t t = utc(year, 1, 1, 0, 0, 0); t < utc(year + 1, 1, 1, 0, 0, 0); t += H) {
                struct pg_windows w;
                pg_tz_windows(tz, t, &w);
                if (!(w.day_start <= t && t < w.day_end && w.week_start <= w.day_start &&
                      w.day_end <= w.week_end && w.month_start <= w.day_start &&
                      w.day_end <= w.month_end))
                    fail_msg("%s t=%lld: windows do not hold t", zone_names[z], (long long)t);
                int64_t len = w.day_end - w.day_start;
                if (len < 23 * H || len > 25 * H)
                    fail_msg("%s t=%lld: day of %lld s", zone_names[z], (long long)t,
                             (long long)len);
                if (prev.day_end && prev.day_start != w.day_start && prev.day_end != w.day_start)
                    fail_msg("%s t=%lld: days do not abut", zone_names[z], (long long)t);
                struct pg_civil c, e;
                pg_tz_to_civil(tz, w.day_start, &c);
                pg_tz_to_civil(tz, w.day_start - 1, &e);
                if (c.hour * 3600 + c.minute * 60 + c.second > 2 * 3600 || c.day == e.day)
                    fail_msg("%s t=%lld: day starts at %02d:%02d", zone_names[z], (long long)t,
                             c.hour, c.minute);
                pg_tz_to_civil(tz, w.week_start, &c);
                assert_int_equal(c.weekday, 0);
                pg_tz_to_civil(tz, w.month_start, &c);
                assert_int_equal(c.day, 1);
                prev = w;
            }
        }
    }
}

static void utc_zone_without_a_file(void **state)
{
    (void)state;
    struct pg_tz *u;
    assert_int_equal(pg_tz_utc(&u), 0);
    struct pg_windows w, f;
    int64_t t = utc(2026, 3, 29, 1, 30, 0);
    pg_tz_windows(u, t, &w);
    assert_true(w.day_start == utc(2026, 3, 29, 0, 0, 0));
    assert_true(w.day_end == utc(2026, 3, 30, 0, 0, 0));
    assert_true(w.week_start == utc(2026, 3, 23, 0, 0, 0));
    assert_true(w.month_start == utc(2026, 3, 1, 0, 0, 0));
    assert_true(w.month_end == utc(2026, 4, 1, 0, 0, 0));
    pg_tz_windows(zones[UTC_FILE], t, &f);
    assert_memory_equal(&w, &f, sizeof(w));
    assert_string_equal(pg_tz_name(zones[UTC_FILE]), "Etc/UTC");
    /* clamped, not overflowed */
    struct pg_civil c;
    pg_tz_to_civil(u, INT64_MAX, &c);
    assert_true(c.year > 300000);
    pg_tz_to_civil(u, INT64_MIN, &c);
    assert_true(c.year < -300000);
    pg_tz_windows(u, INT64_MAX, &w);
    pg_tz_windows(zones[PARIS], INT64_MIN, &w);
    int32_t far = pg_tz_offset(zones[PARIS], INT64_MAX);
    assert_true(far == 3600 || far == 7200);
    pg_tz_free(u);
}

/* ---- TZif built by hand ------------------------------------------------ */

struct builder {
    uint8_t b[4096];
    size_t n;
};

static void put8(struct builder *w, uint8_t v)
{
    assert_true(w->n < sizeof(w->b));
    w->b[w->n++] = v;
}

static void put32(struct builder *w, uint32_t v)
{
    for (int s = 24; s >= 0; s -= 8)
        put8(w, (uint8_t)(v >> s));
}

static void put64(struct builder *w, uint64_t v)
{
    put32(w, (uint32_t)(v >> 32));
    put32(w, (uint32_t)v);
}

struct zone_spec {
    char version; /* 0 or '2'... */
    size_t ntrans;
    const int64_t *trans;
    const uint8_t *idx;
    size_t ntypes;
    const int32_t *off;
    const char *footer; /* v2+ only */
};

static void header(struct builder *w, char version, uint32_t timecnt, uint32_t typecnt,
                   uint32_t charcnt)
{
    put8(w, 'T');
    put8(w, 'Z');
    put8(w, 'i');
    put8(w, 'f');
    put8(w, (uint8_t)version);
    for (int i = 0; i < 15; i++)
        put8(w, 0);
    put32(w, 0); /* isutcnt */
    put32(w, 0); /* isstdcnt */
    put32(w, 0); /* leapcnt */
    put32(w, timecnt);
    put32(w, typecnt);
    put32(w, charcnt);
}

static void block(struct builder *w, const struct zone_spec *z, int ts)
{
    for (size_t i = 0; i < z->ntrans; i++) {
        if (ts == 8)
            put64(w, (uint64_t)z->trans[i]);
        else
            put32(w, (uint32_t)z->trans[i]);
    }
    for (size_t i = 0; i < z->ntrans; i++)
        put8(w, z->idx[i]);
    for (size_t i = 0; i < z->ntypes; i++) {
        put32(w, (uint32_t)z->off[i]);
        put8(w, 0);
        put8(w, 0);
    }
    put8(w, 'Z');
    put8(w, 0);
}

static size_t build(struct builder *w, const struct zone_spec *z)
{
    w->n = 0;
    if (z->version == 0) {
        header(w, 0, (uint32_t)z->ntrans, (uint32_t)z->ntypes, 2);
        block(w, z, 4);
        return w->n;
    }
    /* a v1 block of one type, as zic -b slim writes */
    header(w, z->version, 0, 1, 2);
    put32(w, 0);
    put8(w, 0);
    put8(w, 0);
    put8(w, 'Z');
    put8(w, 0);
    header(w, z->version, (uint32_t)z->ntrans, (uint32_t)z->ntypes, 2);
    block(w, z, 8);
    put8(w, '\n');
    for (const char *p = z->footer; *p; p++)
        put8(w, (uint8_t)*p);
    put8(w, '\n');
    return w->n;
}

static int parse_spec(const struct zone_spec *z, struct pg_tz **out)
{
    struct builder w;
    size_t n = build(&w, z);
    return pg_tz_parse("test", w.b, n, out);
}

static int parse_footer_only(const char *footer, struct pg_tz **out)
{
    static const int32_t off[] = {0};
    struct zone_spec z = {'2', 0, NULL, NULL, 1, off, footer};
    return parse_spec(&z, out);
}

static void footer_rule_forms(void **state)
{
    (void)state;
    struct pg_tz *tz;
    /* DST all year (RFC 8536 §3.3.1): the switch out and the next switch in
     * coincide, and the switch in wins. */
    assert_int_equal(parse_footer_only("EST5EDT,0/0,J365/25", &tz), 0);
    const int64_t probes[] = {utc(2030, 1, 1, 0, 0, 0),    utc(2030, 1, 1, 4, 59, 59),
                              utc(2030, 1, 1, 5, 0, 0),    utc(2030, 6, 1, 0, 0, 0),
                              utc(2030, 12, 31, 23, 0, 0), utc(2032, 2, 29, 0, 0, 0)};
    for (size_t i = 0; i < PG_ARRAY_LEN(probes); i++)
        assert_int_equal(pg_tz_offset(tz, probes[i]), -4 * 3600);
    pg_tz_free(tz);

    /* Jn never counts Feb 29, n does. 2028 is a leap year. */
    assert_int_equal(parse_footer_only("AAA0BBB,J60/0,J61/0", &tz), 0);
    assert_int_equal(pg_tz_offset(tz, utc(2028, 2, 29, 12, 0, 0)), 0);
    assert_int_equal(pg_tz_offset(tz, utc(2028, 3, 1, 12, 0, 0)), 3600);
    assert_int_equal(pg_tz_offset(tz, utc(2027, 3, 1, 12, 0, 0)), 3600);
    pg_tz_free(tz);
    assert_int_equal(parse_footer_only("AAA0BBB,59/0,60/0", &tz), 0);
    assert_int_equal(pg_tz_offset(tz, utc(2028, 2, 29, 12, 0, 0)), 3600);
    assert_int_equal(pg_tz_offset(tz, utc(2028, 3, 1, 12, 0, 0)), 0);
    assert_int_equal(pg_tz_offset(tz, utc(2027, 3, 1, 12, 0, 0)), 3600);
    pg_tz_free(tz);

    /* Explicit DST offset, quoted names, minutes and seconds. */
    assert_int_equal(parse_footer_only("<+0330>-3:30<+0430>-4:30:15,M3.2.0/2:30,M11.1.0", &tz), 0);
    assert_int_equal(pg_tz_offset(tz, utc(2030, 1, 15, 0, 0, 0)), 12600);
    assert_int_equal(pg_tz_offset(tz, utc(2030, 7, 15, 0, 0, 0)), 16215);
    pg_tz_free(tz);

    /* No DST at all; and an empty footer keeps the last type. */
    assert_int_equal(parse_footer_only("<+0330>-3:30", &tz), 0);
    assert_int_equal(pg_tz_offset(tz, utc(2030, 7, 15, 0, 0, 0)), 12600);
    pg_tz_free(tz);
    assert_int_equal(parse_footer_only("UTC0", &tz), 0);
    assert_int_equal(pg_tz_offset(tz, 0), 0);
    pg_tz_free(tz);

    static const int64_t trans[] = {1000000000, 1100000000};
    static const uint8_t idx[] = {1, 0};
    static const int32_t off[] = {3600, 7200};
    struct zone_spec z = {'2', 2, trans, idx, 2, off, ""};
    assert_int_equal(parse_spec(&z, &tz), 0);
    assert_int_equal(pg_tz_offset(tz, 999999999), 3600); /* type 0 before */
    assert_int_equal(pg_tz_offset(tz, 1000000000), 7200);
    assert_int_equal(pg_tz_offset(tz, 1099999999), 7200);
    assert_int_equal(pg_tz_offset(tz, 1100000000), 3600);
    assert_int_equal(pg_tz_offset(tz, INT64_C(5000000000)), 3600);
    pg_tz_free(tz);

    /* Version 1 only: 32-bit times, no footer. */
    z.version = 0;
    assert_int_equal(parse_spec(&z, &tz), 0);
    assert_int_equal(pg_tz_offset(tz, 999999999), 3600);
    assert_int_equal(pg_tz_offset(tz, 1000000000), 7200);
    assert_int_equal(pg_tz_offset(tz, 1100000000), 3600);
    pg_tz_free(tz);

    /* Versions 3 and 4 read as 2. */
    z.version = '4';
    assert_int_equal(parse_spec(&z, &tz), 0);
    pg_tz_free(tz);
}

static void malformed_footers(void **state)
{
    (void)state;
    const char *bad[] = {
        "CET-1CEST",                       /* DST without a rule */
        "CET-1CEST,M3.5.0",                /* one rule */
        "CE-1",                            /* name too short */
        "<+03>",                           /* no offset */
        "<+03-3",                          /* unterminated <...> */
        "<+0 3>-3",                        /* space in a name */
        "CET",                             /* no offset */
        "CET-25",                          /* hours out of range */
        "CET-1:60",                        /* minutes out of range */
        "CET-1:00:60",                     /* seconds out of range */
        "CET-1000",                        /* too many digits */
        "CET-1CEST,M13.1.0,M10.5.0",       /* month 13 */
        "CET-1CEST,M0.1.0,M10.5.0",        /* month 0 */
        "CET-1CEST,M3.6.0,M10.5.0",        /* week 6 */
        "CET-1CEST,M3.0.0,M10.5.0",        /* week 0 */
        "CET-1CEST,M3.5.7,M10.5.0",        /* weekday 7 */
        "CET-1CEST,J366,M10.5.0",          /* Julian 366 */
        "CET-1CEST,J0,M10.5.0",            /* Julian 0 */
        "CET-1CEST,366,M10.5.0",           /* day 366 */
        "CET-1CEST,M3.5.0/168,M10.5.0",    /* past 167 h */
        "CET-1CEST,M3.5.0/,M10.5.0",       /* empty time */
        "CET-1CEST,M3.5.0,M10.5.0,",       /* trailing comma */
        "CET-1CEST,M3.5.0,M10.5.0x",       /* trailing byte */
        "CET-1CEST,X3.5.0,M10.5.0",        /* unknown date form */
        "CET-1 CEST,M3.5.0,M10.5.0",       /* space */
        "CET-24CEST-25:59,M3.5.0,M10.5.0", /* DST hours out of range */
        "CET-1CEST,M3.5.0,M10.5.0\r",      /* CR */
    };
    for (size_t i = 0; i < PG_ARRAY_LEN(bad); i++) {
        struct pg_tz *tz = NULL;
        int rc = parse_footer_only(bad[i], &tz);
        if (rc != PG_EPARSE)
            fail_msg("footer '%s': rc %d", bad[i], rc);
        assert_null(tz);
    }
}

/* Sets a big-endian u32 in a copy of the bytes. */
static void set32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* Parses n bytes from a heap copy of exactly that size, so ASan sees any
 * read past the end. */
static int parse_exact(const uint8_t *p, size_t n, struct pg_tz **out)
{
    uint8_t *copy = malloc(n ? n : 1);
    assert_non_null(copy);
    if (n)
        memcpy(copy, p, n);
    int rc = pg_tz_parse("hostile", copy, n, out);
    free(copy);
    return rc;
}

static void malformed_headers_and_blocks(void **state)
{
    (void)state;
    static const int64_t trans[] = {1000000000, 1100000000};
    static const uint8_t idx[] = {1, 0};
    static const int32_t off[] = {3600, 7200};
    struct zone_spec z = {'2', 2, trans, idx, 2, off, "CET-1"};
    struct builder w;
    size_t n = build(&w, &z);
    size_t h2 = 44 + 6 + 2; /* the second header: after the slim v1 block */
    size_t data2 = h2 + 44;
    struct pg_tz *tz = NULL;
    assert_int_equal(parse_exact(w.b, n, &tz), 0);
    pg_tz_free(tz);
    tz = NULL;

    struct {
        size_t at;
        uint32_t v;
        int width; /* 1 or 4 bytes */
    } flips[] = {
        {0, 'X', 1},                     /* magic */
        {4, '1', 1},                     /* version '1' does not exist */
        {4, 'x', 1},                     /* nor does 'x' */
        {h2 + 4, '3', 1},                /* headers disagree on the version */
        {h2, 't', 1},                    /* second magic */
        {32, 0xffffffffu, 4},            /* absurd v1 timecnt */
        {28, 0x40000000u, 4},            /* absurd v1 leapcnt */
        {h2 + 32, 0xffffffffu, 4},       /* absurd timecnt */
        {h2 + 36, 0xffffffffu, 4},       /* absurd typecnt */
        {h2 + 40, 0xffffffffu, 4},       /* absurd charcnt */
        {h2 + 28, 0x7fffffffu, 4},       /* absurd leapcnt */
        {h2 + 36, 0, 4},                 /* typecnt 0 */
        {h2 + 40, 0, 4},                 /* charcnt 0 */
        {h2 + 20, 1, 4},                 /* isutcnt neither 0 nor typecnt */
        {h2 + 24, 3, 4},                 /* isstdcnt neither 0 nor typecnt */
        {h2 + 32, 3, 4},                 /* one transition more than there is */
        {h2 + 32, 1, 4},                 /* one fewer: bytes left over */
        {data2 + 16, 2, 1},              /* type index past typecnt */
        {data2 + 8 + 4, 0x3b9aca00u, 4}, /* second transition equals the first */
        {data2 + 8 + 4, 0x3b9ac9ffu, 4}, /* ...or comes before it */
        {data2 + 18, 0x00016f30u, 4},    /* utoff 26 h */
        {data2 + 18, 0xfffea070u, 4},    /* utoff -25 h */
        {data2 + 18, 0x80000000u, 4},    /* utoff -2^31 */
        {data2 + 22, 2, 1},              /* isdst 2 */
        {data2 + 23, 2, 1},              /* desigidx past charcnt */
        {n - 1, 'x', 1},                 /* footer not closed by a newline */
        {data2 + 32, 'x', 1},            /* footer not opened by a newline */
        {n - 3, '\n', 1},                /* newline inside the footer */
        {n - 3, 0, 1},                   /* NUL inside the footer */
    };
    for (size_t i = 0; i < PG_ARRAY_LEN(flips); i++) {
        uint8_t copy[sizeof(w.b)];
        memcpy(copy, w.b, n);
        assert_true(flips[i].at + (size_t)flips[i].width <= n);
        if (flips[i].width == 1)
            copy[flips[i].at] = (uint8_t)flips[i].v;
        else
            set32(copy + flips[i].at, flips[i].v);
        int rc = parse_exact(copy, n, &tz);
        if (rc != PG_EPARSE)
            fail_msg("flip %zu (byte %zu): rc %d", i, flips[i].at, rc);
        assert_null(tz);
    }

    /* trailing bytes after the footer, and an empty input */
    uint8_t longer[sizeof(w.b) + 1];
    memcpy(longer, w.b, n);
    longer[n] = 'x';
    assert_int_equal(parse_exact(longer, n + 1, &tz), PG_EPARSE);
    assert_int_equal(parse_exact(w.b, 0, &tz), PG_EPARSE);
    assert_int_equal(pg_tz_parse("null", NULL, 0, &tz), PG_EPARSE);
    assert_null(tz);
}

/* Every prefix of real files is refused, without reading past it. */
static void truncated_at_every_length(void **state)
{
    (void)state;
    const char *names[] = {"Europe/Paris", "America/New_York", "Australia/Lord_Howe", "Etc/UTC"};
    for (size_t k = 0; k < PG_ARRAY_LEN(names); k++) {
        struct bytes b = read_zone_file(names[k]);
        assert_non_null(b.p);
        assert_true(b.len > 44);
        struct pg_tz *tz = NULL;
        assert_int_equal(parse_exact(b.p, b.len, &tz), 0);
        pg_tz_free(tz);
        for (size_t n = 0; n < b.len; n++) {
            tz = NULL;
            int rc = parse_exact(b.p, n, &tz);
            if (rc != PG_EPARSE)
                fail_msg("%s cut at %zu of %zu: rc %d", names[k], n, b.len, rc);
            assert_null(tz);
        }
        free(b.p);
    }
}

/* Random byte changes to a real file: each parse either fails cleanly or
 * yields a zone whose answers still keep their promises. ASan watches. */
static void mutated_files_never_crash(void **state)
{
    (void)state;
    struct bytes b = read_zone_file("Europe/Paris");
    assert_non_null(b.p);
    uint8_t *m = malloc(b.len);
    assert_non_null(m);
    uint64_t x = 0x9e3779b97f4a7c15u;
    int parsed = 0;
    for (int iter = 0; iter < 3000; iter++) {
        memcpy(m, b.p, b.len);
        int flips = 1 + iter % 4;
        for (int f = 0; f < flips; f++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            /* a third of the changes land in the headers or the footer */
            size_t at = (size_t)(x >> 16) % b.len;
            if (iter % 3 == 1)
                at = b.len - 1 - (size_t)(x >> 16) % 40;
            else if (iter % 3 == 2)
                at = (size_t)(x >> 16) % 44;
            m[at] = (uint8_t)(x >> 8);
        }
        struct pg_tz *tz = NULL;
        int rc = pg_tz_parse("mutant", m, b.len, &tz);
        if (rc != 0) {
            assert_int_equal(rc, PG_EPARSE);
            assert_null(tz);
            continue;
        }
        parsed++;
        const int64_t probes[] = {INT64_MIN,
                                  -INT64_C(5000000000),
                                  0,
                                  utc(2026, 3, 29, 1, 0, 0),
                                  utc(2040, 10, 28, 1, 0, 0),
                                  INT64_MAX};
        for (size_t i = 0; i < PG_ARRAY_LEN(probes); i++) {
            struct pg_windows w;
            struct pg_civil c;
            int64_t t = probes[i] < PG_TZ_TIME_MIN   ? PG_TZ_TIME_MIN
                        : probes[i] > PG_TZ_TIME_MAX ? PG_TZ_TIME_MAX
                                                     : probes[i];
            pg_tz_windows(tz, probes[i], &w);
            assert_true(w.day_start <= t && t < w.day_end);
            assert_true(w.week_start <= w.day_start && w.day_end <= w.week_end);
            assert_true(w.month_start <= w.day_start && w.day_end <= w.month_end);
            pg_tz_to_civil(tz, probes[i], &c);
            (void)pg_tz_from_civil(tz, c.year, c.month, c.day, c.hour, c.minute, c.second);
        }
        pg_tz_free(tz);
    }
    /* Changes inside transition data mostly still parse; the test must
     * have exercised zones, not only refusals. */
    assert_true(parsed > 100);
    free(m);
    free(b.p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(offsets_around_2026_switches),
        cmocka_unit_test(far_future_offsets_come_from_the_footer),
        cmocka_unit_test(before_the_first_transition),
        cmocka_unit_test(civil_time_and_weekdays),
        cmocka_unit_test(civil_matches_libc_in_utc),
        cmocka_unit_test(from_civil_gaps_overlaps_and_normalising),
        cmocka_unit_test(from_civil_inverts_to_civil),
        cmocka_unit_test(day_windows_on_switch_days),
        cmocka_unit_test(windows_across_local_midnight),
        cmocka_unit_test(iso_weeks),
        cmocka_unit_test(month_windows),
        cmocka_unit_test(windows_partition_the_time_line),
        cmocka_unit_test(utc_zone_without_a_file),
        cmocka_unit_test(footer_rule_forms),
        cmocka_unit_test(malformed_footers),
        cmocka_unit_test(malformed_headers_and_blocks),
        cmocka_unit_test(truncated_at_every_length),
        cmocka_unit_test(mutated_files_never_crash),
    };
    return cmocka_run_group_tests_name("tz", tests, load_zones, free_zones);
}
