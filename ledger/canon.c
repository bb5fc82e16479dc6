/* The canonical bytes of an audit entry, written directly. They are, by
 * definition, what jansson's json_dumps(JSON_COMPACT | JSON_SORT_KEYS |
 * JSON_ENSURE_ASCII) writes for the entry as a JSON object: keys in byte
 * order, no spaces, integers in decimal, every non-ASCII code point as
 * \uXXXX with upper-case hex (a UTF-16 pair beyond the BMP), controls as
 * \b \f \n \r \t or \u00XX, DEL and '/' as they are. Building, sorting and
 * dumping a jansson object per entry was about a third of the writer's CPU,
 * so this writes the same bytes in one pass; test_audit holds the two equal
 * on a corpus of awkward strings. */
#include "common/pg.h"
#include "ledger/ledger_int.h"

#include <stdlib.h>

static const char hexu[] = "0123456789ABCDEF";
static const char hexl[] = "0123456789abcdef";

static void put(struct canon_buf *b, const void *d, size_t n)
{
    if (b->oom)
        return;
    if (n > b->cap - b->len) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->len < n)
            cap *= 2;
        uint8_t *p = b->heap ? realloc(b->p, cap) : malloc(cap);
        if (!p) {
            b->oom = true;
            return;
        }
        if (!b->heap && b->len)
            memcpy(p, b->p, b->len);
        b->p = p;
        b->cap = cap;
        b->heap = true;
    }
    memcpy(b->p + b->len, d, n);
    b->len += n;
}

static void put_c(struct canon_buf *b, char c)
{
    put(b, &c, 1);
}

/* Length of the valid UTF-8 sequence at s (n bytes left) and its code
 * point, or 0: jansson's rules (no overlong forms, no surrogates, nothing
 * past U+10FFFF), since it refuses the rest. */
static size_t utf8_next(const uint8_t *s, size_t n, uint32_t *cp)
{
    uint8_t u = s[0];
    size_t len;
    uint32_t v;
    if (u < 0x80) {
        *cp = u;
        return 1;
    }
    if (u >= 0xC2 && u <= 0xDF) {
        len = 2;
        v = u & 0x1Fu;
    } else if (u >= 0xE0 && u <= 0xEF) {
        len = 3;
        v = u & 0x0Fu;
    } else if (u >= 0xF0 && u <= 0xF4) {
        len = 4;
        v = u & 0x07u;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        v = v << 6 | (s[i] & 0x3Fu);
    }
    if (v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF) || (len == 3 && v < 0x800) ||
        (len == 4 && v < 0x10000))
        return 0;
    *cp = v;
    return len;
}

static void put_u16(struct canon_buf *b, uint32_t v)
{
    char e[6] = { '\\', 'u', hexu[v >> 12 & 15], hexu[v >> 8 & 15], hexu[v >> 4 & 15],
                  hexu[v & 15] };
    put(b, e, sizeof(e));
}

/* A JSON string. Text that is not valid UTF-8 (jansson would refuse it)
 * keeps its ASCII and gets '?' for every other byte, rather than losing the
 * entry. */
static void put_string(struct canon_buf *b, const char *s)
{
    const uint8_t *p = (const uint8_t *)s;
    size_t n = strlen(s);
    uint32_t cp;
    bool valid = true;
    for (size_t i = 0, k; i < n && valid; i += k)
        valid = (k = utf8_next(p + i, n - i, &cp)) != 0;
    put_c(b, '"');
    size_t i = 0, run = 0; /* bytes [run, i) go out as they are */
    while (i < n) {
        size_t k = valid ? utf8_next(p + i, n - i, &cp) : 1;
        if (!valid)
            cp = p[i] >= 0x80 ? '?' : p[i];
        if (cp >= 0x20 && cp < 0x80 && cp != '"' && cp != '\\' && (valid || p[i] < 0x80)) {
            i += k;
            continue;
        }
        put(b, p + run, i - run);
        switch (cp) {
        case '"': put(b, "\\\"", 2); break;
        case '\\': put(b, "\\\\", 2); break;
        case '\b': put(b, "\\b", 2); break;
        case '\f': put(b, "\\f", 2); break;
        case '\n': put(b, "\\n", 2); break;
        case '\r': put(b, "\\r", 2); break;
        case '\t': put(b, "\\t", 2); break;
        case '?': put_c(b, '?'); break; /* a byte of invalid UTF-8 */
        default:
            if (cp < 0x10000) {
                put_u16(b, cp);
            } else {
                put_u16(b, 0xD800 | (cp - 0x10000) >> 10);
                put_u16(b, 0xDC00 | ((cp - 0x10000) & 0x3FF));
            }
        }
        i += k;
        run = i;
    }
    put(b, p + run, n - run);
    put_c(b, '"');
}

static void put_int(struct canon_buf *b, int64_t v)
{
    char d[24];
    size_t i = sizeof(d);
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        d[--i] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        d[--i] = '-';
    put(b, d + i, sizeof(d) - i);
}

/* One "key":value pair; keys must come in byte order, which the calls in
 * audit_canon follow. */
static void key(struct canon_buf *b, bool *first, const char *k)
{
    if (!*first)
        put_c(b, ',');
    *first = false;
    put_c(b, '"');
    put(b, k, strlen(k));
    put(b, "\":", 2);
}

static void field_str(struct canon_buf *b, bool *first, const char *k, const char *v)
{
    if (!v || !v[0])
        return;
    key(b, first, k);
    put_string(b, v);
}

static void field_hex(struct canon_buf *b, bool *first, const char *k, const uint8_t *v)
{
    char h[2 * PG_SHA256_LEN + 2];
    h[0] = '"';
    for (size_t i = 0; i < PG_SHA256_LEN; i++) {
        h[1 + 2 * i] = hexl[v[i] >> 4];
        h[2 + 2 * i] = hexl[v[i] & 15];
    }
    h[sizeof(h) - 1] = '"';
    key(b, first, k);
    put(b, h, sizeof(h));
}

void audit_time(int64_t t, char out[21])
{
    /* Days to civil date (proleptic Gregorian, eras of 400 years). */
    int64_t days = t / 86400, secs = t % 86400;
    if (secs < 0) {
        secs += 86400;
        days--;
    }
    days += 719468;
    int64_t era = (days >= 0 ? days : days - 146096) / 146097;
    int64_t doe = days - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int64_t d = doy - (153 * mp + 2) / 5 + 1;
    int64_t m = mp < 10 ? mp + 3 : mp - 9;
    int64_t y = yoe + era * 400 + (m <= 2);
    int64_t f[6] = { y, m, d, secs / 3600, secs / 60 % 60, secs % 60 };
    /* YYYY-MM-DDTHH:MM:SSZ; callers keep t within years 0-9999 */
    static const char sep[] = "--T::Z";
    size_t o = 0;
    for (int i = 0; i < 6; i++) {
        int64_t v = f[i] < 0 ? 0 : f[i];
        if (i == 0) {
            out[o++] = (char)('0' + v / 1000 % 10);
            out[o++] = (char)('0' + v / 100 % 10);
        }
        out[o++] = (char)('0' + v / 10 % 10);
        out[o++] = (char)('0' + v % 10);
        out[o++] = sep[i];
    }
    out[o] = '\0';
}

int audit_canon(const struct audit_entry *e, uint64_t seq, const uint8_t prev[PG_SHA256_LEN],
                struct canon_buf *b)
{
    char cp[PG_COUNTERPARTY_MAX + 1], when[21];
    bool first = true;
    put_c(b, '{');
    /* In byte order of the keys, as JSON_SORT_KEYS puts them. */
    field_str(b, &first, "action", e->action);
    field_str(b, &first, "actor", e->actor);
    field_str(b, &first, "agent", e->agent);
    if (e->has_amount) {
        key(b, &first, "amount");
        put_int(b, e->amount);
    }
    field_str(b, &first, "approval", e->approval);
    if (e->counterparty && e->counterparty[0]) {
        audit_mask_digits(e->counterparty, cp, sizeof(cp));
        field_str(b, &first, "counterparty", cp);
    }
    field_str(b, &first, "currency", e->currency);
    field_str(b, &first, "decision", e->decision);
    bool fp = false;
    for (size_t i = 0; e->fingerprint && i < PG_SHA256_LEN && !fp; i++)
        fp = e->fingerprint[i] != 0;
    if (fp)
        field_hex(b, &first, "fingerprint", e->fingerprint);
    field_str(b, &first, "note", e->note);
    field_str(b, &first, "org", e->org);
    field_str(b, &first, "outcome", e->outcome);
    field_hex(b, &first, "prev_hash", prev);
    field_str(b, &first, "reason", e->reason);
    if (e->reservation) {
        key(b, &first, "reservation");
        put_int(b, (int64_t)e->reservation);
    }
    field_str(b, &first, "route", e->route);
    key(b, &first, "seq");
    put_int(b, (int64_t)seq);
    audit_time(e->time, when);
    field_str(b, &first, "time", when);
    put_c(b, '}');
    return b->oom ? PG_ENOMEM : 0;
}
