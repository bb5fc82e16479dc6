/* Card number detection: a forward pass over tokens (a byte, or a %XX escape
 * read as the byte it stands for). At each digit group that starts clean,
 * the windows of whole groups beginning there are tried, shortest to
 * longest, against length, Luhn and the brand table. Every start reads at
 * most 19 digits and their separators, so the pass stays linear. */
#include "common/pg.h"
#include "policy/pan.h"

#include <limits.h>
#include <string.h>

#define PAN_MIN 13
#define PAN_MAX 19
#define GROUP_MIN 2 /* inside a grouped number; the last group may have 1 */
#define GROUP_MAX 8

enum cls {
    C_OTHER,
    C_DIGIT,
    C_SEP,  /* ' ', '+', '-' and their escapes */
    C_WORD, /* letters, '_', and escapes of letters and digits */
    C_DOT,
    C_PCT,   /* '%' before it is known to start an escape */
    C_DECDOT /* only as `prev`: a '.' right after a digit (12.34) */
};

/* Bytes the scan must look at: digits, and '%' and '.' whose meaning
 * depends on what follows. Everything else only sets the class of the byte
 * before the next digit. */
static const uint8_t stop[256] = {
    ['%'] = 1, ['.'] = 1, ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1,
    ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1, ['8'] = 1, ['9'] = 1,
};

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static enum cls byte_cls(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return C_DIGIT;
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_')
        return C_WORD;
    switch (c) {
    case ' ':
    case '+':
    case '-':
        return C_SEP;
    case '.':
        return C_DOT;
    case '%':
        return C_PCT;
    default:
        return C_OTHER;
    }
}

/* One token at b[p]: its class, its length, and for a separator its kind
 * (the byte, plus 0x100 when written as an escape: "%20" and "%2b" do not
 * mix with ' ' and '+' inside one number). An escaped digit is a word
 * character: it glues, but is not read as part of a number. */
struct tok {
    enum cls cls;
    size_t len;
    int kind;
};

static void tok_at(const char *b, size_t len, size_t p, struct tok *t)
{
    unsigned char c = (unsigned char)b[p];
    t->cls = byte_cls(c);
    t->len = 1;
    t->kind = c;
    if (t->cls != C_PCT)
        return;
    t->cls = C_OTHER;
    int hi, lo;
    if (p + 2 >= len || (hi = hexval(b[p + 1])) < 0 || (lo = hexval(b[p + 2])) < 0)
        return;
    unsigned char d = (unsigned char)(hi * 16 + lo);
    enum cls dc = byte_cls(d);
    t->len = 3;
    if (dc == C_SEP) {
        t->cls = C_SEP;
        t->kind = 0x100 | d;
    } else if (dc == C_WORD || dc == C_DIGIT) {
        t->cls = C_WORD;
    }
}

/* The digits end cleanly at b[q]: not glued to a word character, nor to a
 * decimal point followed by more digits. */
static bool clean_end(const char *b, size_t len, size_t q)
{
    if (q >= len)
        return true;
    struct tok t;
    tok_at(b, len, q, &t);
    if (t.cls == C_WORD)
        return false;
    return !(t.cls == C_DOT && q + 1 < len && is_digit(b[q + 1]));
}

static bool brand_of(const uint8_t *d, unsigned n, enum pg_pan_brand *out)
{
    unsigned p2 = d[0] * 10u + d[1];
    unsigned p3 = p2 * 10u + d[2];
    unsigned p4 = p3 * 10u + d[3];
    bool long16 = n >= 16; /* 16-19 */

    if (d[0] == 4 && (n == 13 || n == 16 || n == 19))
        *out = PG_PAN_VISA;
    else if (n == 16 && ((p2 >= 51 && p2 <= 55) || (p4 >= 2221 && p4 <= 2720)))
        *out = PG_PAN_MASTERCARD;
    else if (n == 15 && (p2 == 34 || p2 == 37))
        *out = PG_PAN_AMEX;
    else if (long16 && (p4 == 6011 || (p3 >= 644 && p3 <= 649) || p2 == 65))
        *out = PG_PAN_DISCOVER;
    else if (n >= 14 && (p2 == 36 || p2 == 38 || (p3 >= 300 && p3 <= 305)))
        *out = PG_PAN_DINERS;
    else if (long16 && p4 >= 3528 && p4 <= 3589)
        *out = PG_PAN_JCB;
    else if (long16 && p2 == 62)
        *out = PG_PAN_UNIONPAY;
    else if (p2 == 50 || (p2 >= 56 && p2 <= 69))
        *out = PG_PAN_MAESTRO;
    else
        return false;
    return true;
}

/* Tries the windows of whole groups that start at the digit b[p] (a clean
 * start) and keeps the longest that is a card number. */
static bool try_at(const char *b, size_t len, size_t p, struct pg_pan_match *m)
{
    uint8_t d[PAN_MAX];
    unsigned nd = 0, ngroups = 0;
    /* Luhn sums kept as digits arrive, one per parity of the doubled
       positions, so each window costs O(1): a window of n digits doubles
       the positions whose parity differs from n - 1's. */
    unsigned dbl_even = 0, dbl_odd = 0;
    int sepkind = -1;
    size_t q = p;
    bool found = false;

    /* Every brand starts with 2-6: a number led by anything else never is
       one, whatever follows. */
    if (b[p] < '2' || b[p] > '6')
        return false;

    for (;;) {
        unsigned glen = 0;
        while (q < len && is_digit(b[q])) {
            if (nd + glen == PAN_MAX)
                goto done; /* too many digits for any longer window */
            unsigned v = (unsigned)(b[q++] - '0'), twice = v * 2 > 9 ? v * 2 - 9 : v * 2;
            bool even = (nd + glen) % 2 == 0;
            dbl_even += even ? twice : v;
            dbl_odd += even ? v : twice;
            d[nd + glen++] = (uint8_t)v;
        }
        if (ngroups > 0 && glen > GROUP_MAX)
            break;
        nd += glen;
        ngroups++;
        enum pg_pan_brand br;
        if (nd >= PAN_MIN && clean_end(b, len, q) && brand_of(d, nd, &br) &&
            ((nd - 1) % 2 ? dbl_even : dbl_odd) % 10 == 0) {
            found = true;
            m->off = p;
            m->len = q - p;
            m->ndigits = (uint8_t)nd;
            m->brand = br;
            for (unsigned i = 0; i < 4; i++)
                m->last4[i] = (char)('0' + d[nd - 4 + i]);
            m->last4[4] = '\0';
        }
        /* Extend only through a group that may sit inside a number, over
           exactly one separator of the kind already in use. */
        if (glen < GROUP_MIN || glen > GROUP_MAX || q >= len)
            break;
        struct tok t;
        tok_at(b, len, q, &t);
        if (t.cls != C_SEP || (sepkind >= 0 && t.kind != sepkind))
            break;
        if (q + t.len >= len || !is_digit(b[q + t.len]))
            break;
        sepkind = t.kind;
        q += t.len;
    }
done:
    return found;
}

/* Where a pass stands: the next byte to read and the class of the token
 * before it, so a pass resumes without reading backwards (which is what
 * lets pg_pan_mask rewrite what lies behind it). */
struct scan {
    const char *b;
    size_t len;
    size_t pos;
    enum cls prev;
};

static bool scan_next(struct scan *s, struct pg_pan_match *m)
{
    const char *b = s->b;
    size_t len = s->len, p = s->pos;
    enum cls prev = s->prev;

    while (p < len) {
        /* Most bytes only matter as the class of the last one before a
           digit, '%' or '.': skip them in a tight loop. */
        size_t from = p;
        while (p < len && !stop[(unsigned char)b[p]])
            p++;
        if (p > from)
            prev = byte_cls((unsigned char)b[p - 1]);
        if (p >= len)
            break;
        unsigned char c = (unsigned char)b[p];
        if (c >= '0' && c <= '9') {
            if (prev != C_WORD && prev != C_DECDOT && try_at(b, len, p, m)) {
                s->pos = m->off + m->len;
                s->prev = C_DIGIT;
                return true;
            }
            while (p < len && is_digit(b[p]))
                p++;
            prev = C_DIGIT;
            continue;
        }
        struct tok t;
        tok_at(b, len, p, &t);
        p += t.len;
        if (t.cls == C_DOT)
            prev = prev == C_DIGIT ? C_DECDOT : C_OTHER;
        else
            prev = t.cls;
    }
    s->pos = p;
    s->prev = prev;
    return false;
}

const char *pg_pan_brand_name(enum pg_pan_brand b)
{
    switch (b) {
    case PG_PAN_VISA:
        return "visa";
    case PG_PAN_MASTERCARD:
        return "mastercard";
    case PG_PAN_AMEX:
        return "amex";
    case PG_PAN_DISCOVER:
        return "discover";
    case PG_PAN_DINERS:
        return "diners";
    case PG_PAN_JCB:
        return "jcb";
    case PG_PAN_UNIONPAY:
        return "unionpay";
    case PG_PAN_MAESTRO:
        return "maestro";
    }
    return "card";
}

bool pg_pan_find(const char *buf, size_t len, struct pg_pan_match *m)
{
    if (!buf || len == 0)
        return false;
    struct scan s = {buf, len, 0, C_OTHER};
    struct pg_pan_match tmp;
    if (!scan_next(&s, &tmp))
        return false;
    *m = tmp;
    return true;
}

int pg_pan_mask(const char *in, size_t len, char *out, size_t cap)
{
    if (cap < len)
        return PG_ETOOBIG;
    if (len == 0)
        return 0;
    if (out != in)
        memmove(out, in, len);
    /* Masking in place is safe: a pass never reads behind its position. */
    struct scan s = {out, len, 0, C_OTHER};
    struct pg_pan_match m;
    int count = 0;
    while (scan_next(&s, &m)) {
        unsigned keep_from = m.ndigits - 4u, seen = 0;
        for (size_t i = m.off; i < m.off + m.len;) {
            if (out[i] == '%') { /* an escaped separator: its hex is no digit of the card */
                i += 3;
                continue;
            }
            if (is_digit(out[i]) && seen++ < keep_from)
                out[i] = '*';
            i++;
        }
        if (count < INT_MAX)
            count++;
    }
    return count;
}
