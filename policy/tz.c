/* Time zones from TZif bytes (RFC 8536) and the calendar windows that budgets
 * count in. config/ reads the zone file; nothing here touches files, clocks or
 * libc's time-zone state, so the same bytes and instant give the same answer. */
#include "common/pg.h"
#include "policy/tz.h"

#include <stdbool.h>
#include <stdlib.h>

#define DAY INT64_C(86400)

/* RFC 8536 says utoff SHOULD lie in [-89999, 93599]: just over a day either
 * way. Holding zones to it bounds how far local time strays from UTC, which
 * is what lets pg_tz_from_civil search a window of known width. */
#define MIN_UTOFF (-89999)
#define MAX_UTOFF 93599

/* A POSIX TZ rule date: "Jn" (1-365, Feb 29 never counted), "n" (0-365,
 * Feb 29 counted) or "Mm.w.d" (weekday d of week w of month m, w 5 = last). */
enum rule_kind { RULE_JULIAN1, RULE_JULIAN0, RULE_MWD };

struct rule {
    enum rule_kind kind;
    int32_t yday;  /* Jn or n */
    int32_t month; /* Mm.w.d: 1-12 */
    int32_t week;  /* Mm.w.d: 1-5 */
    int32_t wday;  /* Mm.w.d: 0 = Sunday, as POSIX counts */
    int32_t secs;  /* local time of the switch, -167 h to 167 h (RFC 8536 v3) */
};

/* The footer's TZ string: how the zone behaves after its last transition. */
struct footer {
    bool present; /* a non-empty TZ string was given */
    bool has_dst;
    int32_t std_off; /* seconds east of UTC */
    int32_t dst_off;
    struct rule start; /* into DST, at standard local time */
    struct rule end;   /* out of DST, at DST local time */
};

/* One allocation: the struct, then trans, type_off, trans_type and name. */
struct pg_tz {
    const char *name;
    size_t ntrans;
    int64_t *trans;      /* strictly ascending instants */
    uint8_t *trans_type; /* local time type from trans[i] on */
    size_t ntypes;
    int32_t *type_off; /* utoff of each local time type */
    struct footer foot;
};

/* ---- integer calendar ------------------------------------------------- */

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    if (a % b != 0 && ((a < 0) != (b < 0)))
        q--;
    return q;
}

static int64_t floor_mod(int64_t a, int64_t b)
{
    return a - floor_div(a, b) * b;
}

static int64_t clamp_time(int64_t t)
{
    if (t < PG_TZ_TIME_MIN)
        return PG_TZ_TIME_MIN;
    if (t > PG_TZ_TIME_MAX)
        return PG_TZ_TIME_MAX;
    return t;
}

/* a + b and a * b saturating at the int64 limits: callers clamp afterwards,
 * so a saturated value lands on the supported range's edge. */
static int64_t sat_add(int64_t a, int64_t b)
{
    int64_t r;
    if (__builtin_add_overflow(a, b, &r))
        return b > 0 ? INT64_MAX : INT64_MIN;
    return r;
}

static int64_t sat_mul(int64_t a, int64_t b)
{
    int64_t r;
    if (__builtin_mul_overflow(a, b, &r))
        return (a < 0) != (b < 0) ? INT64_MIN : INT64_MAX;
    return r;
}

static bool is_leap(int64_t y)
{
    return floor_mod(y, 4) == 0 && (floor_mod(y, 100) != 0 || floor_mod(y, 400) == 0);
}

static int32_t month_len(int64_t y, int32_t m)
{
    static const int8_t len[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && is_leap(y) ? 29 : len[m - 1];
}

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian, m 1-12, d 1-31), after
 * Howard Hinnant's days_from_civil: years run from March so the leap day is
 * last. Exact for |y| up to about 2.5e13; callers stay far inside that. */
static int64_t days_from_civil(int64_t y, int32_t m, int32_t d)
{
    y -= m <= 2;
    int64_t era = floor_div(y, 400);
    int64_t yoe = y - era * 400;                         /* [0, 399] */
    int64_t mp = (m + 9) % 12;                           /* March = 0 */
    int64_t doy = (153 * mp + 2) / 5 + d - 1;            /* [0, 365] */
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; /* [0, 146096] */
    return era * 146097 + doe - 719468;
}

/* The inverse: day number z to year, month and day. */
static void civil_from_days(int64_t z, int64_t *y, int32_t *m, int32_t *d)
{
    z += 719468;
    int64_t era = floor_div(z, 146097);
    int64_t doe = z - era * 146097;                                      /* [0, 146096] */
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365; /* [0, 399] */
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);               /* [0, 365] */
    int64_t mp = (5 * doy + 2) / 153;                                    /* [0, 11] */
    *d = (int32_t)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int32_t)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

/* ---- the footer's rules ------------------------------------------------ */

/* Local seconds (as if local time were UTC) at which rule r fires in year y. */
static int64_t rule_local(const struct rule *r, int64_t y)
{
    int64_t days;
    switch (r->kind) {
    case RULE_JULIAN1:
        days = days_from_civil(y, 1, 1) + r->yday - 1;
        if (is_leap(y) && r->yday >= 60)
            days++; /* Jn never counts Feb 29: J60 is always March 1 */
        break;
    case RULE_JULIAN0:
        days = days_from_civil(y, 1, 1) + r->yday;
        break;
    case RULE_MWD:
    default: {
        int64_t first = days_from_civil(y, r->month, 1);
        int64_t first_wday = floor_mod(first + 4, 7); /* 1970-01-01 was a Thursday */
        int64_t d = floor_mod(r->wday - first_wday, 7) + (int64_t)(r->week - 1) * 7;
        while (d >= month_len(y, r->month))
            d -= 7; /* week 5 means the last one */
        days = first + d;
        break;
    }
    }
    return days * DAY + r->secs;
}

/* The switches of year y as UTC instants: into DST at standard local time,
 * out of it at DST local time. */
static int64_t rule_start(const struct footer *f, int64_t y)
{
    return rule_local(&f->start, y) - f->std_off;
}

static int64_t rule_end(const struct footer *f, int64_t y)
{
    return rule_local(&f->end, y) - f->dst_off;
}

static int64_t std_year(const struct footer *f, int64_t t)
{
    int64_t y;
    int32_t m, d;
    civil_from_days(floor_div(t + f->std_off, DAY), &y, &m, &d);
    return y;
}

/* Offset the footer gives at t: the latest switch at or before t decides.
 * Switches of the neighbouring years are looked at too, since a switch time
 * of up to 167 h can carry one across New Year. On a tie the switch into DST
 * wins, which makes "EST5EDT,0/0,J365/25" (DST all year, RFC 8536 §3.3.1) work. */
static int32_t footer_offset(const struct footer *f, int64_t t)
{
    if (!f->has_dst)
        return f->std_off;
    int64_t y = std_year(f, t);
    bool found = false, dst = false;
    int64_t best = 0;
    for (int64_t yy = y - 2; yy <= y + 1; yy++) {
        int64_t s = rule_start(f, yy), e = rule_end(f, yy);
        if (e <= t && (!found || e > best)) {
            found = true;
            best = e;
            dst = false;
        }
        if (s <= t && (!found || s >= best)) {
            found = true;
            best = s;
            dst = true;
        }
    }
    return dst ? f->dst_off : f->std_off;
}

/* ---- lookups ----------------------------------------------------------- */

/* Index of the last transition at or before t; t >= trans[0] and ntrans > 0. */
static size_t last_at_or_before(const struct pg_tz *tz, int64_t t)
{
    size_t lo = 0, hi = tz->ntrans; /* trans[lo] <= t < trans[hi] */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (tz->trans[mid] <= t)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

/* Before the first transition, time type 0 holds (RFC 8536 §3.2). From the
 * last one on, the footer's TZ string does when there is one, else the last
 * transition's type. A zone with no transitions uses its footer, else type 0. */
static int32_t offset_at(const struct pg_tz *tz, int64_t t)
{
    if (tz->ntrans == 0 || t >= tz->trans[tz->ntrans - 1]) {
        if (tz->foot.present)
            return footer_offset(&tz->foot, t);
        if (tz->ntrans == 0)
            return tz->type_off[0];
        return tz->type_off[tz->trans_type[tz->ntrans - 1]];
    }
    if (t < tz->trans[0])
        return tz->type_off[0];
    return tz->type_off[tz->trans_type[last_at_or_before(tz, t)]];
}

/* The first instant after t at which the offset may change: the next
 * transition, or the footer's next switch. False when none ever comes. The
 * offset is constant on [t, *next). */
static bool next_change(const struct pg_tz *tz, int64_t t, int64_t *next)
{
    if (tz->ntrans > 0 && t < tz->trans[tz->ntrans - 1]) {
        *next = t < tz->trans[0] ? tz->trans[0] : tz->trans[last_at_or_before(tz, t) + 1];
        return true;
    }
    const struct footer *f = &tz->foot;
    if (!f->present || !f->has_dst)
        return false;
    int64_t y = std_year(f, t), best = 0;
    bool found = false;
    for (int64_t yy = y - 1; yy <= y + 2; yy++) {
        int64_t c[2] = {rule_start(f, yy), rule_end(f, yy)};
        for (int k = 0; k < 2; k++)
            if (c[k] > t && (!found || c[k] < best)) {
                found = true;
                best = c[k];
            }
    }
    *next = best;
    return found;
}

/* The first instant whose local time is at or after local seconds L. Starts
 * where local time is surely before L and walks the stretches of constant
 * offset: in each, local time rises with t, so the first hit is the answer.
 * That gives the earlier instant in an overlap and the end of a gap. Ends
 * once t passes L + 89999, where every offset puts local time past L. */
static int64_t first_at_or_after(const struct pg_tz *tz, int64_t L)
{
    int64_t t = L - (MAX_UTOFF + 1);
    for (;;) {
        int64_t cand = L - offset_at(tz, t);
        if (cand < t)
            cand = t;
        int64_t next;
        if (!next_change(tz, t, &next) || cand < next)
            return cand;
        t = next;
    }
}

/* ---- public ------------------------------------------------------------ */

const char *pg_tz_name(const struct pg_tz *tz)
{
    return tz->name;
}

int32_t pg_tz_offset(const struct pg_tz *tz, int64_t t)
{
    return offset_at(tz, clamp_time(t));
}

void pg_tz_to_civil(const struct pg_tz *tz, int64_t t, struct pg_civil *out)
{
    t = clamp_time(t);
    int64_t local = t + offset_at(tz, t);
    int64_t days = floor_div(local, DAY);
    int64_t secs = local - days * DAY;
    int64_t y;
    civil_from_days(days, &y, &out->month, &out->day);
    out->year = (int32_t)y;
    out->hour = (int32_t)(secs / 3600);
    out->minute = (int32_t)(secs / 60 % 60);
    out->second = (int32_t)(secs % 60);
    out->weekday = (int32_t)floor_mod(days + 3, 7);
}

int64_t pg_tz_from_civil(const struct pg_tz *tz, int32_t year, int32_t month, int32_t day,
                         int32_t hour, int32_t minute, int32_t second)
{
    /* Month 13 is January of the next year, month 0 December of the one
     * before; the day, hour, minute and second then simply add up as
     * seconds, which normalises them all. Every int32 input keeps each term
     * well inside int64; the saturating helpers make that not matter. */
    int64_t m0 = (int64_t)month - 1;
    int64_t y = (int64_t)year + floor_div(m0, 12);
    int32_t m = (int32_t)floor_mod(m0, 12) + 1;
    int64_t days = sat_add(days_from_civil(y, m, 1), (int64_t)day - 1);
    int64_t L = sat_mul(days, DAY);
    L = sat_add(L, (int64_t)hour * 3600);
    L = sat_add(L, (int64_t)minute * 60);
    L = sat_add(L, second);
    return first_at_or_after(tz, clamp_time(L));
}

/* Where local day number d starts: its first instant at or after 00:00. */
static int64_t day_start(const struct pg_tz *tz, int64_t d)
{
    return first_at_or_after(tz, d * DAY);
}

void pg_tz_windows(const struct pg_tz *tz, int64_t t, struct pg_windows *out)
{
    t = clamp_time(t);
    /* Day boundaries split the time line into consecutive days. The local
     * date of t names the day holding t, except where a zone moves local
     * time back across midnight; the two loops settle those cases so that
     * day_start <= t < day_end always holds. */
    int64_t d = floor_div(t + offset_at(tz, t), DAY);
    while (t < day_start(tz, d))
        d--;
    while (t >= day_start(tz, d + 1))
        d++;
    out->day_start = day_start(tz, d);
    out->day_end = day_start(tz, d + 1);

    int64_t monday = d - floor_mod(d + 3, 7);
    out->week_start = day_start(tz, monday);
    out->week_end = day_start(tz, monday + 7);

    int64_t y;
    int32_t m, md;
    civil_from_days(d, &y, &m, &md);
    out->month_start = day_start(tz, d - (md - 1));
    out->month_end = day_start(tz, d - (md - 1) + month_len(y, m));
}

void pg_tz_free(struct pg_tz *tz)
{
    free(tz);
}

/* Allocates a zone with room for its arrays and name, all zeroed. */
static struct pg_tz *tz_alloc(const char *name, size_t ntrans, size_t ntypes)
{
    if (!name)
        name = "";
    size_t name_len = strlen(name);
    size_t size = sizeof(struct pg_tz), part;
    if (__builtin_mul_overflow(ntrans, sizeof(int64_t) + 1, &part) ||
        __builtin_add_overflow(size, part, &size) ||
        __builtin_mul_overflow(ntypes, sizeof(int32_t), &part) ||
        __builtin_add_overflow(size, part, &size) ||
        __builtin_add_overflow(size, name_len + 1, &size))
        return NULL;
    struct pg_tz *tz = calloc(1, size);
    if (!tz)
        return NULL;
    /* sizeof(struct pg_tz) is a multiple of 8 (it holds pointers and int64
     * is no stricter), so the int64 array first, then int32, then bytes. */
    char *p = (char *)(tz + 1);
    tz->trans = (int64_t *)(void *)p;
    p += ntrans * sizeof(int64_t);
    tz->type_off = (int32_t *)(void *)p;
    p += ntypes * sizeof(int32_t);
    tz->trans_type = (uint8_t *)p;
    p += ntrans;
    memcpy(p, name, name_len + 1);
    tz->name = p;
    tz->ntrans = ntrans;
    tz->ntypes = ntypes;
    return tz;
}

int pg_tz_utc(struct pg_tz **out)
{
    struct pg_tz *tz = tz_alloc("UTC", 0, 1);
    if (!tz)
        return PG_ENOMEM;
    tz->foot.present = true; /* "UTC0" */
    *out = tz;
    return 0;
}

/* ---- TZif -------------------------------------------------------------- */

/* Every read of the file goes through take(): the bytes are hostile. */
struct reader {
    const uint8_t *p;
    size_t len;
    size_t pos;
};

static const uint8_t *take(struct reader *r, size_t n)
{
    if (n > r->len - r->pos)
        return NULL;
    const uint8_t *p = r->p + r->pos;
    r->pos += n;
    return p;
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static int64_t be64(const uint8_t *p)
{
    return (int64_t)((uint64_t)be32(p) << 32 | be32(p + 4));
}

struct header {
    uint8_t version; /* 0 for version 1, else '2', '3', '4'... */
    size_t isutcnt, isstdcnt, leapcnt, timecnt, typecnt, charcnt;
};

static int read_header(struct reader *r, struct header *h)
{
    const uint8_t *p = take(r, 44);
    if (!p || memcmp(p, "TZif", 4) != 0)
        return PG_EPARSE;
    /* Versions past 4 only ever added meaning, never layout (RFC 8536 §4
     * asks readers to accept them), so any digit from '2' reads as v2+. */
    h->version = p[4];
    if (h->version != 0 && (h->version < '2' || h->version > '9'))
        return PG_EPARSE;
    h->isutcnt = be32(p + 20);
    h->isstdcnt = be32(p + 24);
    h->leapcnt = be32(p + 28);
    h->timecnt = be32(p + 32);
    h->typecnt = be32(p + 36);
    h->charcnt = be32(p + 40);
    return 0;
}

/* Bytes of the data block after header h, with `ts`-byte times. False on
 * overflow, which only absurd counts reach. */
static bool block_size(const struct header *h, size_t ts, size_t *out)
{
    size_t n, part;
    if (__builtin_mul_overflow(h->timecnt, ts + 1, &n) ||
        __builtin_mul_overflow(h->typecnt, (size_t)6, &part) ||
        __builtin_add_overflow(n, part, &n) || __builtin_add_overflow(n, h->charcnt, &n) ||
        __builtin_mul_overflow(h->leapcnt, ts + 4, &part) || __builtin_add_overflow(n, part, &n) ||
        __builtin_add_overflow(n, h->isstdcnt, &n) || __builtin_add_overflow(n, h->isutcnt, &n))
        return false;
    *out = n;
    return true;
}

/* The counts of the block payguard reads, as RFC 8536 §3.1 bounds them. */
static bool counts_ok(const struct header *h)
{
    return h->typecnt >= 1 && h->typecnt <= 256 && h->charcnt >= 1 &&
           (h->isutcnt == 0 || h->isutcnt == h->typecnt) &&
           (h->isstdcnt == 0 || h->isstdcnt == h->typecnt);
}

/* -- the POSIX TZ string of the footer -- */

struct text {
    const char *p;
    size_t len;
    size_t pos;
};

static int peek(const struct text *s)
{
    return s->pos < s->len ? (unsigned char)s->p[s->pos] : -1;
}

static bool alpha(int c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static bool digit(int c)
{
    return c >= '0' && c <= '9';
}

/* A zone abbreviation: three or more letters, or <...> of letters, digits,
 * '+' and '-' ("<+0330>"). Only its shape matters here. */
static bool parse_abbr(struct text *s)
{
    size_t n = 0;
    if (peek(s) == '<') {
        s->pos++;
        int c;
        while ((c = peek(s)) != '>') {
            if (!(alpha(c) || digit(c) || c == '+' || c == '-'))
                return false;
            s->pos++;
            n++;
        }
        s->pos++;
    } else {
        while (alpha(peek(s))) {
            s->pos++;
            n++;
        }
    }
    return n >= 3;
}

/* Up to `max` decimal digits as a number, at least one. */
static bool parse_num(struct text *s, int max_digits, int32_t *out)
{
    int32_t v = 0;
    int n = 0;
    while (digit(peek(s)) && n < max_digits) {
        v = v * 10 + (peek(s) - '0');
        s->pos++;
        n++;
    }
    *out = v;
    return n > 0 && !digit(peek(s));
}

/* [+-]hh[:mm[:ss]] in seconds, hours at most max_hours. */
static bool parse_hms(struct text *s, int32_t max_hours, int32_t *out)
{
    int32_t sign = 1, h, m = 0, sec = 0;
    if (peek(s) == '+' || peek(s) == '-') {
        sign = peek(s) == '-' ? -1 : 1;
        s->pos++;
    }
    if (!parse_num(s, 3, &h) || h > max_hours)
        return false;
    if (peek(s) == ':') {
        s->pos++;
        if (!parse_num(s, 2, &m) || m > 59)
            return false;
        if (peek(s) == ':') {
            s->pos++;
            if (!parse_num(s, 2, &sec) || sec > 59)
                return false;
        }
    }
    *out = sign * (h * 3600 + m * 60 + sec);
    return true;
}

/* A POSIX offset is hours west of UTC; payguard keeps seconds east. */
static bool parse_offset(struct text *s, int32_t *east)
{
    int32_t west;
    if (!parse_hms(s, 24, &west))
        return false;
    *east = -west;
    return true;
}

static bool parse_rule(struct text *s, struct rule *r)
{
    int c = peek(s);
    if (c == 'J') {
        s->pos++;
        r->kind = RULE_JULIAN1;
        if (!parse_num(s, 3, &r->yday) || r->yday < 1 || r->yday > 365)
            return false;
    } else if (digit(c)) {
        r->kind = RULE_JULIAN0;
        if (!parse_num(s, 3, &r->yday) || r->yday > 365)
            return false;
    } else if (c == 'M') {
        s->pos++;
        r->kind = RULE_MWD;
        if (!parse_num(s, 2, &r->month) || r->month < 1 || r->month > 12 || peek(s) != '.')
            return false;
        s->pos++;
        if (!parse_num(s, 1, &r->week) || r->week < 1 || r->week > 5 || peek(s) != '.')
            return false;
        s->pos++;
        if (!parse_num(s, 1, &r->wday) || r->wday > 6)
            return false;
    } else {
        return false;
    }
    r->secs = 2 * 3600; /* POSIX default: 02:00 */
    if (peek(s) == '/') {
        s->pos++;
        /* RFC 8536 v3 lets the time run from -167 h to 167 h. */
        if (!parse_hms(s, 167, &r->secs))
            return false;
    }
    return true;
}

/* std offset [dst [offset] ,rule ,rule]. A DST name without a rule is
 * refused rather than guessed (POSIX leaves the default to the system). */
static int parse_footer(const char *p, size_t len, struct footer *f)
{
    memset(f, 0, sizeof(*f));
    if (len == 0)
        return 0;
    struct text s = {p, len, 0};
    if (!parse_abbr(&s) || !parse_offset(&s, &f->std_off))
        return PG_EPARSE;
    f->present = true;
    if (s.pos < s.len) {
        if (!parse_abbr(&s))
            return PG_EPARSE;
        f->has_dst = true;
        f->dst_off = f->std_off + 3600;
        if (peek(&s) != ',' && !parse_offset(&s, &f->dst_off))
            return PG_EPARSE;
        if (peek(&s) != ',')
            return PG_EPARSE;
        s.pos++;
        if (!parse_rule(&s, &f->start) || peek(&s) != ',')
            return PG_EPARSE;
        s.pos++;
        if (!parse_rule(&s, &f->end))
            return PG_EPARSE;
    }
    if (s.pos != s.len)
        return PG_EPARSE;
    if (f->std_off < MIN_UTOFF || f->std_off > MAX_UTOFF ||
        (f->has_dst && (f->dst_off < MIN_UTOFF || f->dst_off > MAX_UTOFF)))
        return PG_EPARSE;
    return 0;
}

/* Copies and checks one data block (RFC 8536 §3.2) into tz. `r` stands at
 * its first byte and the whole block is known to be there. */
static int read_block(struct reader *r, const struct header *h, size_t ts, struct pg_tz *tz)
{
    int64_t *trans = tz->trans;
    uint8_t *types = tz->trans_type;
    int32_t *offs = tz->type_off;

    const uint8_t *p = take(r, h->timecnt * ts);
    for (size_t i = 0; i < h->timecnt; i++) {
        trans[i] = ts == 8 ? be64(p + 8 * i) : (int64_t)(int32_t)be32(p + 4 * i);
        if (i > 0 && trans[i] <= trans[i - 1])
            return PG_EPARSE; /* must ascend strictly */
    }
    p = take(r, h->timecnt);
    for (size_t i = 0; i < h->timecnt; i++) {
        if (p[i] >= h->typecnt)
            return PG_EPARSE;
        types[i] = p[i];
    }
    p = take(r, h->typecnt * 6);
    for (size_t i = 0; i < h->typecnt; i++) {
        const uint8_t *e = p + 6 * i;
        int32_t utoff = (int32_t)be32(e);
        if (utoff < MIN_UTOFF || utoff > MAX_UTOFF || e[4] > 1 || e[5] >= h->charcnt)
            return PG_EPARSE;
        offs[i] = utoff;
    }
    /* Designations, leap seconds (payguard counts Unix time, which has none;
     * Debian's default zones carry no records) and the std/wall and UT/local
     * indicators, which only matter to POSIX-TZ-less readers. */
    take(r, h->charcnt);
    take(r, h->leapcnt * (ts + 4));
    p = take(r, h->isstdcnt + h->isutcnt);
    for (size_t i = 0; i < h->isstdcnt + h->isutcnt; i++)
        if (p[i] > 1)
            return PG_EPARSE;
    return 0;
}

int pg_tz_parse(const char *name, const uint8_t *data, size_t len, struct pg_tz **out)
{
    if (!data)
        return PG_EPARSE;
    struct reader r = {data, len, 0};
    struct header h;
    size_t size;
    int rc = read_header(&r, &h);
    if (rc < 0)
        return rc;
    size_t ts = 4;
    if (h.version != 0) {
        /* Skip the 32-bit block; the 64-bit one after the second header
         * says the same and more. */
        if (!block_size(&h, 4, &size) || !take(&r, size))
            return PG_EPARSE;
        uint8_t v1 = h.version;
        if ((rc = read_header(&r, &h)) < 0)
            return rc;
        if (h.version != v1)
            return PG_EPARSE;
        ts = 8;
    }
    if (!counts_ok(&h) || !block_size(&h, ts, &size) || size > len - r.pos)
        return PG_EPARSE;
    size_t block = r.pos;

    /* Footer (v2+): "\n" TZ-string "\n", and then the file ends. */
    struct footer foot;
    memset(&foot, 0, sizeof(foot));
    if (h.version != 0) {
        size_t at = block + size;
        if (at >= len || data[at] != '\n' || data[len - 1] != '\n' || len - at < 2)
            return PG_EPARSE;
        const char *tzs = (const char *)data + at + 1;
        size_t tzlen = len - at - 2;
        if (memchr(tzs, '\n', tzlen))
            return PG_EPARSE;
        if ((rc = parse_footer(tzs, tzlen, &foot)) < 0)
            return rc;
    } else if (block + size != len) {
        return PG_EPARSE;
    }

    struct pg_tz *tz = tz_alloc(name, h.timecnt, h.typecnt);
    if (!tz)
        return PG_ENOMEM;
    tz->foot = foot;
    if ((rc = read_block(&r, &h, ts, tz)) < 0)
        goto fail_tz;
    *out = tz;
    return 0;

fail_tz:
    pg_tz_free(tz);
    return rc;
}
