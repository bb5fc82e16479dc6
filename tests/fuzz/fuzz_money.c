/* Amounts: decimal major units as written in payguard.yaml and minor-unit
 * integers as agents send them, plus currency codes. An accepted amount must
 * format back to the same minor units, and the text payguard writes must
 * parse back to the number it came from.
 * Input: one byte picks the exponent (values past 18 test the refusal), two
 * bytes feed a currency lookup, then the amount text. */
#include "common/pg.h"
#include "policy/money.h"
#include "tests/fuzz/helpers.h"

#include <stdio.h>

static bool all_digits(struct pg_slice s)
{
    for (size_t i = 0; i < s.len; i++)
        if (s.ptr[i] < '0' || s.ptr[i] > '9')
            return false;
    return s.len > 0;
}

/* The decimal text with leading zeros of the integer part dropped and the
 * fraction padded to `exp` digits: what pg_money_format must write back. */
static size_t normalise(struct pg_slice s, int exp, char *out, size_t cap)
{
    size_t dot = s.len, n = 0, frac = 0;
    for (size_t i = 0; i < s.len; i++)
        if (s.ptr[i] == '.')
            dot = i;
    size_t i = 0;
    while (i + 1 < dot && s.ptr[i] == '0')
        i++;
    for (; i < dot && n < cap; i++)
        out[n++] = s.ptr[i];
    if (exp > 0 && n < cap)
        out[n++] = '.';
    for (size_t k = dot + 1; k < s.len && n < cap; k++, frac++)
        out[n++] = s.ptr[k];
    for (; (int)frac < exp && n < cap; frac++)
        out[n++] = '0';
    return n;
}

static void check_decimal(struct pg_slice s, int exp)
{
    int64_t v = -1;
    const char *why = "unset";
    int rc = pg_money_parse_decimal(s, exp, &v, &why);
    if (rc != 0) {
        FUZZ_CHECK(rc == PG_EPARSE || rc == PG_ERANGE, "rc %d", rc);
        FUZZ_CHECK(why && why[0], "a refusal without a reason");
        FUZZ_CHECK(v == -1, "*out written on failure");
        return;
    }
    FUZZ_CHECK(why == NULL, "why set on success");
    FUZZ_CHECK(v >= 0, "negative amount %lld", (long long)v);
    FUZZ_CHECK(exp >= 0 && exp <= 18, "exponent %d accepted", exp);
    char text[48], want[160];
    int n = pg_money_format(v, exp, text, sizeof text);
    FUZZ_CHECK(n > 0, "format failed: %d", n);
    size_t wn = normalise(s, exp, want, sizeof want);
    FUZZ_CHECK((size_t)n == wn && memcmp(text, want, wn) == 0,
               "\"%.*s\" (exp %d) parsed to %lld, which formats as \"%s\"", (int)s.len, s.ptr, exp,
               (long long)v, text);
    int64_t back = -1;
    FUZZ_CHECK(pg_money_parse_decimal(pg_slice_of(text, (size_t)n), exp, &back, NULL) == 0 &&
                   back == v,
               "\"%s\" does not parse back to %lld", text, (long long)v);
}

static void check_minor(struct pg_slice s)
{
    int64_t v = -1;
    const char *why = "unset";
    int rc = pg_money_parse_minor(s, &v, &why);
    if (rc != 0) {
        FUZZ_CHECK(rc == PG_EPARSE || rc == PG_ERANGE, "rc %d", rc);
        FUZZ_CHECK(why && why[0], "a refusal without a reason");
        FUZZ_CHECK(v == -1, "*out written on failure");
        /* The only digit strings refused are leading zeros and overflow. */
        if (all_digits(s) && !(s.len > 1 && s.ptr[0] == '0'))
            FUZZ_CHECK(rc == PG_ERANGE && s.len >= 19, "\"%.*s\" refused: %s", (int)s.len, s.ptr,
                       why);
        return;
    }
    FUZZ_CHECK(v >= 0, "negative amount");
    char text[32];
    int n = pg_money_format(v, 0, text, sizeof text);
    FUZZ_CHECK(n > 0 && (size_t)n == s.len && memcmp(text, s.ptr, s.len) == 0,
               "\"%.*s\" parsed to %lld, formats as \"%s\"", (int)s.len, s.ptr, (long long)v, text);
}

/* Any int64 at any exponent: the text parses back to the same value (the
 * sign aside, which the parsers never accept). */
static void check_format(int64_t v, int exp)
{
    char text[32];
    int n = pg_money_format(v, exp, text, sizeof text);
    if (exp < 0 || exp > 18) {
        FUZZ_CHECK(n == PG_ERANGE, "exponent %d: %d", exp, n);
        return;
    }
    FUZZ_CHECK(n > 0 && (size_t)n < sizeof text && text[n] == '\0', "format: %d", n);
    char small[4];
    FUZZ_CHECK((size_t)n < sizeof small || pg_money_format(v, exp, small, sizeof small) == PG_ETOOBIG,
               "no PG_ETOOBIG for a short buffer");
    struct pg_slice s = pg_slice_of(text, (size_t)n);
    bool neg = v < 0;
    if (neg) {
        FUZZ_CHECK(text[0] == '-', "negative without '-': %s", text);
        s = pg_slice_of(text + 1, (size_t)n - 1);
    }
    int64_t back = -1;
    int rc = pg_money_parse_decimal(s, exp, &back, NULL);
    if (v == INT64_MIN) {
        FUZZ_CHECK(rc == PG_ERANGE, "INT64_MIN magnitude parsed");
        return;
    }
    FUZZ_CHECK(rc == 0 && back == (neg ? -v : v), "\"%s\" (exp %d) parses to %lld, rc %d", text,
               exp, (long long)back, rc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = { data, size };
    int exp = (int)(fuzz_u8(&in) % 24) - 2; /* -2..21: both edges of 0..18 */
    uint64_t raw = fuzz_u64(&in);
    char code[3] = { (char)fuzz_u8(&in), (char)fuzz_u8(&in), (char)fuzz_u8(&in) };
    struct pg_slice amount = fuzz_rest(&in);

    int e = pg_money_exponent(pg_slice_of(code, 3));
    if (e >= 0) {
        char upper[3];
        for (int i = 0; i < 3; i++) {
            char c = code[i];
            FUZZ_CHECK((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'), "code byte %02x",
                       (unsigned char)c);
            upper[i] = (char)(c >= 'a' ? c - 32 : c);
        }
        FUZZ_CHECK(e <= 4, "exponent %d for %.3s", e, code);
        FUZZ_CHECK(pg_money_exponent(pg_slice_of(upper, 3)) == e, "case changes the exponent");
    }
    FUZZ_CHECK(pg_money_exponent(pg_slice_of(code, 2)) == -1, "a two-letter code is known");

    check_decimal(amount, exp);
    check_minor(amount);
    check_format((int64_t)raw, exp);
    return 0;
}
