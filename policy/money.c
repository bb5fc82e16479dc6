/* Exact money for payguard: the ISO 4217 minor-unit table and the parsers that
 * turn decimal text into int64 minor units. config/ validates payguard.yaml
 * amounts with it and policy/ formats amounts for messages. Integers only. */
#include "common/pg.h"
#include "policy/money.h"

#include <stdbool.h>

/* Active ISO 4217 codes with their minor units, from ISO 4217 list one as
 * published for 2026-01-01, sorted by code for binary search.
 *
 * Left out on purpose:
 *  - codes whose minor unit ISO gives as "N.A.": precious metals (XAU XAG XPD
 *    XPT), bond-market units (XBA XBB XBC XBD), XDR, XSU, XUA, the test code
 *    XTS and XXX. Nobody can count them in minor units, so they are unknown.
 *  - withdrawn codes: ANG (replaced by XCG in 2025), BGN (Bulgaria adopted the
 *    euro on 2026-01-01), CUC, HRK, SLL (by SLE), ZWL (by ZWG).
 *
 * These are ISO's exponents, which is what an operator writes in config. Rails
 * may differ: Stripe's zero-decimal list also holds MGA (two decimals in
 * ISO), and Stripe takes ISK as a two-decimal currency whose amounts must end
 * in 00 (HUF and TWD have similar rules for payouts). Whoever reads amounts
 * off a rail's wire applies that rail's rules; this table is the ISO view. */
struct currency {
    char code[4];    /* upper-case alpha-3, NUL-terminated */
    int8_t exponent; /* ISO minor unit: 0, 2, 3 or 4 */
};

static const struct currency currencies[] = {
    {"AED", 2}, {"AFN", 2}, {"ALL", 2}, {"AMD", 2}, {"AOA", 2}, {"ARS", 2}, {"AUD", 2}, {"AWG", 2},
    {"AZN", 2}, {"BAM", 2}, {"BBD", 2}, {"BDT", 2}, {"BHD", 3}, {"BIF", 0}, {"BMD", 2}, {"BND", 2},
    {"BOB", 2}, {"BOV", 2}, {"BRL", 2}, {"BSD", 2}, {"BTN", 2}, {"BWP", 2}, {"BYN", 2}, {"BZD", 2},
    {"CAD", 2}, {"CDF", 2}, {"CHE", 2}, {"CHF", 2}, {"CHW", 2}, {"CLF", 4}, {"CLP", 0}, {"CNY", 2},
    {"COP", 2}, {"COU", 2}, {"CRC", 2}, {"CUP", 2}, {"CVE", 2}, {"CZK", 2}, {"DJF", 0}, {"DKK", 2},
    {"DOP", 2}, {"DZD", 2}, {"EGP", 2}, {"ERN", 2}, {"ETB", 2}, {"EUR", 2}, {"FJD", 2}, {"FKP", 2},
    {"GBP", 2}, {"GEL", 2}, {"GHS", 2}, {"GIP", 2}, {"GMD", 2}, {"GNF", 0}, {"GTQ", 2}, {"GYD", 2},
    {"HKD", 2}, {"HNL", 2}, {"HTG", 2}, {"HUF", 2}, {"IDR", 2}, {"ILS", 2}, {"INR", 2}, {"IQD", 3},
    {"IRR", 2}, {"ISK", 0}, {"JMD", 2}, {"JOD", 3}, {"JPY", 0}, {"KES", 2}, {"KGS", 2}, {"KHR", 2},
    {"KMF", 0}, {"KPW", 2}, {"KRW", 0}, {"KWD", 3}, {"KYD", 2}, {"KZT", 2}, {"LAK", 2}, {"LBP", 2},
    {"LKR", 2}, {"LRD", 2}, {"LSL", 2}, {"LYD", 3}, {"MAD", 2}, {"MDL", 2}, {"MGA", 2}, {"MKD", 2},
    {"MMK", 2}, {"MNT", 2}, {"MOP", 2}, {"MRU", 2}, {"MUR", 2}, {"MVR", 2}, {"MWK", 2}, {"MXN", 2},
    {"MXV", 2}, {"MYR", 2}, {"MZN", 2}, {"NAD", 2}, {"NGN", 2}, {"NIO", 2}, {"NOK", 2}, {"NPR", 2},
    {"NZD", 2}, {"OMR", 3}, {"PAB", 2}, {"PEN", 2}, {"PGK", 2}, {"PHP", 2}, {"PKR", 2}, {"PLN", 2},
    {"PYG", 0}, {"QAR", 2}, {"RON", 2}, {"RSD", 2}, {"RUB", 2}, {"RWF", 0}, {"SAR", 2}, {"SBD", 2},
    {"SCR", 2}, {"SDG", 2}, {"SEK", 2}, {"SGD", 2}, {"SHP", 2}, {"SLE", 2}, {"SOS", 2}, {"SRD", 2},
    {"SSP", 2}, {"STN", 2}, {"SVC", 2}, {"SYP", 2}, {"SZL", 2}, {"THB", 2}, {"TJS", 2}, {"TMT", 2},
    {"TND", 3}, {"TOP", 2}, {"TRY", 2}, {"TTD", 2}, {"TWD", 2}, {"TZS", 2}, {"UAH", 2}, {"UGX", 0},
    {"USD", 2}, {"USN", 2}, {"UYI", 0}, {"UYU", 2}, {"UYW", 4}, {"UZS", 2}, {"VED", 2}, {"VES", 2},
    {"VND", 0}, {"VUV", 0}, {"WST", 2}, {"XAD", 2}, {"XAF", 0}, {"XCD", 2}, {"XCG", 2}, {"XOF", 0},
    {"XPF", 0}, {"YER", 2}, {"ZAR", 2}, {"ZMW", 2}, {"ZWG", 2},
};

/* Largest exponent the parsers and the formatter accept: 10^18 still fits in
 * int64, and no currency comes near it. */
#define MAX_EXPONENT 18

int pg_money_exponent(struct pg_slice code)
{
    if (code.len != 3 || !code.ptr)
        return -1;
    char up[3];
    for (size_t i = 0; i < 3; i++) {
        char c = code.ptr[i];
        if (c >= 'a' && c <= 'z')
            c = (char)(c - 'a' + 'A');
        if (c < 'A' || c > 'Z')
            return -1;
        up[i] = c;
    }
    size_t lo = 0, hi = PG_ARRAY_LEN(currencies);
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int cmp = memcmp(up, currencies[mid].code, 3);
        if (cmp == 0)
            return currencies[mid].exponent;
        if (cmp < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return -1;
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static int fail(const char **why, const char *msg, int err)
{
    if (why)
        *why = msg;
    return err;
}

/* Names what is wrong with text that is not a plain run of ASCII digits with
 * at most one '.' (when `dot_ok`), so the operator reading `payguard check`
 * learns the rule rather than "malformed". Checked in order of what a person
 * most likely meant. */
static const char *shape_problem(struct pg_slice s, bool dot_ok)
{
    if (s.len == 0)
        return "empty amount";
    if (s.ptr[0] == '-')
        return "negative amounts are not allowed";
    if (s.ptr[0] == '+')
        return "leading '+' is not allowed";
    for (size_t i = 0; i < s.len; i++)
        if (is_space(s.ptr[i]))
            return "spaces are not allowed";
    if (s.len > 1 && s.ptr[0] == '0' && (s.ptr[1] == 'x' || s.ptr[1] == 'X'))
        return "hexadecimal notation is not allowed";
    size_t dots = 0;
    for (size_t i = 0; i < s.len; i++) {
        char c = s.ptr[i];
        if (is_digit(c))
            continue;
        if (c == '.') {
            dots++;
            continue;
        }
        if ((c == 'e' || c == 'E') && i > 0 && (is_digit(s.ptr[i - 1]) || s.ptr[i - 1] == '.'))
            return "exponent notation is not allowed";
        if ((c == ',' || c == '_' || c == '\'') && i > 0 && is_digit(s.ptr[i - 1]))
            return "digit separators are not allowed";
        return "not a number: only ASCII digits 0-9 and one '.' are allowed";
    }
    if (dots > 0 && !dot_ok)
        return "minor units are a whole number: no '.' is allowed";
    if (dots > 1)
        return "more than one '.'";
    if (s.ptr[0] == '.')
        return "a digit is needed before the '.'";
    if (s.ptr[s.len - 1] == '.')
        return "a digit is needed after the '.'";
    return "not a number";
}

/* acc = acc * 10 + digit, or false when that leaves int64. */
static bool push_digit(int64_t *acc, char c)
{
    int64_t v;
    if (__builtin_mul_overflow(*acc, 10, &v))
        return false;
    if (__builtin_add_overflow(v, (int64_t)(c - '0'), &v))
        return false;
    *acc = v;
    return true;
}

static const char *const over_max = "over the largest amount payguard can count";

int pg_money_parse_decimal(struct pg_slice s, int exponent, int64_t *out, const char **why)
{
    if (!s.ptr)
        s.len = 0;
    if (exponent < 0 || exponent > MAX_EXPONENT)
        return fail(why, "unknown currency exponent", PG_ERANGE);

    /* The grammar: DIGITS [ '.' DIGITS ]. */
    size_t i = 0, int_digits = 0, frac_digits = 0;
    while (i < s.len && is_digit(s.ptr[i])) {
        i++;
        int_digits++;
    }
    if (i < s.len && s.ptr[i] == '.') {
        i++;
        while (i < s.len && is_digit(s.ptr[i])) {
            i++;
            frac_digits++;
        }
        if (frac_digits == 0)
            i = 0; /* "1." is malformed: fall into the shape report */
    }
    if (int_digits == 0 || i != s.len)
        return fail(why, shape_problem(s, true), PG_EPARSE);
    if (frac_digits > (size_t)exponent)
        return fail(why, "too many decimal places for this currency", PG_ERANGE);

    /* Every digit, integer and fraction, accumulates into one integer that is
     * then scaled by the decimals the text left out: "12.5" at exponent 2 is
     * 125 * 10. Leading zeros cost nothing, so "000…1" cannot overflow. */
    int64_t acc = 0;
    for (size_t k = 0; k < s.len; k++) {
        if (s.ptr[k] == '.')
            continue;
        if (!push_digit(&acc, s.ptr[k]))
            return fail(why, over_max, PG_ERANGE);
    }
    for (size_t k = frac_digits; k < (size_t)exponent; k++)
        if (__builtin_mul_overflow(acc, 10, &acc))
            return fail(why, over_max, PG_ERANGE);
    *out = acc;
    if (why)
        *why = NULL;
    return 0;
}

int pg_money_parse_minor(struct pg_slice s, int64_t *out, const char **why)
{
    if (!s.ptr)
        s.len = 0;
    size_t i = 0;
    while (i < s.len && is_digit(s.ptr[i]))
        i++;
    if (s.len == 0 || i != s.len)
        return fail(why, shape_problem(s, false), PG_EPARSE);
    if (s.len > 1 && s.ptr[0] == '0')
        return fail(why, "leading zeros are not allowed", PG_EPARSE);
    int64_t acc = 0;
    for (size_t k = 0; k < s.len; k++)
        if (!push_digit(&acc, s.ptr[k]))
            return fail(why, over_max, PG_ERANGE);
    *out = acc;
    if (why)
        *why = NULL;
    return 0;
}

int pg_money_format(int64_t minor, int exponent, char *out, size_t cap)
{
    if (exponent < 0 || exponent > MAX_EXPONENT)
        return PG_ERANGE;
    /* Magnitude as uint64 so INT64_MIN has one too. */
    uint64_t mag = minor < 0 ? (uint64_t)0 - (uint64_t)minor : (uint64_t)minor;

    /* Digits are written backwards into tmp: fraction first (exactly
     * `exponent` of them, zeros kept so the text parses back to the same
     * minor units), then the integer part, at least one digit. */
    char tmp[48];
    size_t n = 0;
    for (int k = 0; k < exponent; k++) {
        tmp[n++] = (char)('0' + mag % 10);
        mag /= 10;
    }
    if (exponent > 0)
        tmp[n++] = '.';
    do {
        tmp[n++] = (char)('0' + mag % 10);
        mag /= 10;
    } while (mag > 0);
    if (minor < 0)
        tmp[n++] = '-';

    if (!out || cap < n + 1)
        return PG_ETOOBIG;
    for (size_t k = 0; k < n; k++)
        out[k] = tmp[n - 1 - k];
    out[n] = '\0';
    return (int)n;
}
