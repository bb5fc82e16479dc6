/* Exact money: the ISO 4217 table, decimal and minor-unit parsing with their
 * reasons, the int64 edges, and formatting that parses back. */
#include "common/pg.h"
#include "policy/money.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#define SENTINEL INT64_C(-424242)

static void exponent_classes(void **state)
{
    (void)state;
    static const struct {
        const char *code;
        int exp;
    } cases[] = {
        {"JPY", 0}, {"jpy", 0}, {"KRW", 0}, {"CLP", 0}, {"XAF", 0}, {"XOF", 0}, {"XPF", 0},
        {"VND", 0}, {"ISK", 0}, {"UGX", 0}, {"UYI", 0}, {"USD", 2}, {"usd", 2}, {"Eur", 2},
        {"GBP", 2}, {"MGA", 2}, {"HUF", 2}, {"XCG", 2}, {"ZWG", 2}, {"SLE", 2}, {"VED", 2},
        {"AED", 2}, {"ZMW", 2}, {"KWD", 3}, {"kwd", 3}, {"BHD", 3}, {"IQD", 3}, {"JOD", 3},
        {"LYD", 3}, {"OMR", 3}, {"TND", 3}, {"CLF", 4}, {"UYW", 4},
    };
    for (size_t i = 0; i < PG_ARRAY_LEN(cases); i++) {
        int got = pg_money_exponent(pg_slice_cstr(cases[i].code));
        if (got != cases[i].exp)
            fail_msg("%s: exponent %d, want %d", cases[i].code, got, cases[i].exp);
    }
}

static void unknown_codes(void **state)
{
    (void)state;
    /* N.A. minor units, withdrawn codes, wrong lengths and non-letters. */
    const char *bad[] = {"XXX", "XAU", "XDR", "XTS",  "HRK", "BGN", "ANG", "ZWL",    "SLL",
                         "CUC", "ABC", "US",  "USDD", "",    "U$D", "U D", "US\xc3", "usd "};
    for (size_t i = 0; i < PG_ARRAY_LEN(bad); i++)
        if (pg_money_exponent(pg_slice_cstr(bad[i])) != -1)
            fail_msg("'%s' is not a currency", bad[i]);
    assert_int_equal(pg_money_exponent(PG_SLICE_NULL), -1);
    assert_int_equal(pg_money_exponent(pg_slice_of("USDX", 3)), 2); /* a slice, not a C string */
}

/* Every code of the table is found by the binary search, whatever its case,
 * and nothing else is: a misordered table would lose some. */
static void every_code_found_and_nothing_else(void **state)
{
    (void)state;
    int found = 0, zero = 0, three = 0, four = 0;
    char code[3];
    for (char a = 'A'; a <= 'Z'; a++)
        for (char b = 'A'; b <= 'Z'; b++)
            for (char c = 'A'; c <= 'Z'; c++) {
                code[0] = a;
                code[1] = b;
                code[2] = c;
                int e = pg_money_exponent(pg_slice_of(code, 3));
                if (e < 0)
                    continue;
                found++;
                zero += e == 0;
                three += e == 3;
                four += e == 4;
                code[1] = (char)(b - 'A' + 'a');
                assert_int_equal(pg_money_exponent(pg_slice_of(code, 3)), e);
            }
    assert_int_equal(found, 165);
    assert_int_equal(zero, 17);
    assert_int_equal(three, 7);
    assert_int_equal(four, 2);
}

static void decimal_accepts(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        int exp;
        int64_t want;
    } cases[] = {
        {"500", 2, 50000},
        {"500.5", 2, 50050},
        {"500.00", 2, 50000},
        {"0", 2, 0},
        {"0.01", 2, 1},
        {"0.1", 2, 10},
        {"007.50", 2, 750},
        {"500", 0, 500},
        {"0", 0, 0},
        {"1.234", 3, 1234},
        {"1.2", 3, 1200},
        {"1", 3, 1000},
        {"1.2345", 4, 12345},
        {"1", 4, 10000},
        {"0.0001", 4, 1},
        {"2000.00", 2, 200000},
        {"00000000000000000000000000001", 2, 100},
    };
    for (size_t i = 0; i < PG_ARRAY_LEN(cases); i++) {
        int64_t v = SENTINEL;
        const char *why = "unset";
        int rc = pg_money_parse_decimal(pg_slice_cstr(cases[i].s), cases[i].exp, &v, &why);
        if (rc != 0 || v != cases[i].want)
            fail_msg("'%s' exp %d: rc %d value %lld (%s)", cases[i].s, cases[i].exp, rc,
                     (long long)v, why ? why : "-");
        assert_null(why);
    }
}

struct bad_case {
    const char *s;
    int rc;
    const char *why;
};

static void check_bad(const struct bad_case *c, size_t n, int minor, int exp)
{
    for (size_t i = 0; i < n; i++) {
        int64_t v = SENTINEL;
        const char *why = NULL;
        int rc = minor ? pg_money_parse_minor(pg_slice_cstr(c[i].s), &v, &why)
                       : pg_money_parse_decimal(pg_slice_cstr(c[i].s), exp, &v, &why);
        if (rc != c[i].rc || !why || strcmp(why, c[i].why) != 0 || v != SENTINEL)
            fail_msg("%s '%s': rc %d why '%s', want %d '%s'", minor ? "minor" : "decimal", c[i].s,
                     rc, why ? why : "(null)", c[i].rc, c[i].why);
        /* why is optional */
        v = SENTINEL;
        rc = minor ? pg_money_parse_minor(pg_slice_cstr(c[i].s), &v, NULL)
                   : pg_money_parse_decimal(pg_slice_cstr(c[i].s), exp, &v, NULL);
        assert_int_equal(rc, c[i].rc);
        assert_true(v == SENTINEL);
    }
}

static const char NEG[] = "negative amounts are not allowed";
static const char PLUS[] = "leading '+' is not allowed";
static const char EXPO[] = "exponent notation is not allowed";
static const char SPACE[] = "spaces are not allowed";
static const char NAN_[] = "not a number: only ASCII digits 0-9 and one '.' are allowed";
static const char HEX[] = "hexadecimal notation is not allowed";
static const char EMPTY[] = "empty amount";
static const char DECS[] = "too many decimal places for this currency";
static const char OVER[] = "over the largest amount payguard can count";

static void decimal_rejects_with_reasons(void **state)
{
    (void)state;
    static const struct bad_case usd[] = {
        {"-1", PG_EPARSE, NEG},
        {"-0.50", PG_EPARSE, NEG},
        {"+1", PG_EPARSE, PLUS},
        {"1e3", PG_EPARSE, EXPO},
        {"1.5E2", PG_EPARSE, EXPO},
        {"1.", PG_EPARSE, "a digit is needed after the '.'"},
        {".5", PG_EPARSE, "a digit is needed before the '.'"},
        {"1.2.3", PG_EPARSE, "more than one '.'"},
        {" 1", PG_EPARSE, SPACE},
        {"1 ", PG_EPARSE, SPACE},
        {"1\t", PG_EPARSE, SPACE},
        {"", PG_EPARSE, EMPTY},
        {"0x10", PG_EPARSE, HEX},
        {"\xef\xbc\x91", PG_EPARSE, NAN_},  /* "１", full-width one */
        {"1\xef\xbc\x90", PG_EPARSE, NAN_}, /* "1０" */
        {"abc", PG_EPARSE, NAN_},
        {"NaN", PG_EPARSE, NAN_},
        {"inf", PG_EPARSE, NAN_},
        {"$5", PG_EPARSE, NAN_},
        {"1,000.00", PG_EPARSE, "digit separators are not allowed"},
        {"1_000", PG_EPARSE, "digit separators are not allowed"},
        {"12.345", PG_ERANGE, DECS},
        {"0.001", PG_ERANGE, DECS},
        {"1.000", PG_ERANGE, DECS},
        {"92233720368547758.08", PG_ERANGE, OVER},
        {"92233720368547759", PG_ERANGE, OVER},
        {"100000000000000000000000", PG_ERANGE, OVER},
    };
    check_bad(usd, PG_ARRAY_LEN(usd), 0, 2);

    /* "0.1" for JPY is an error, and so is "1.0": JPY has no decimals. */
    static const struct bad_case jpy[] = {
        {"0.1", PG_ERANGE, DECS},
        {"1.0", PG_ERANGE, DECS},
        {"1.", PG_EPARSE, "a digit is needed after the '.'"},
        {"9223372036854775808", PG_ERANGE, OVER},
    };
    check_bad(jpy, PG_ARRAY_LEN(jpy), 0, 0);

    static const struct bad_case kwd[] = {{"1.2345", PG_ERANGE, DECS}};
    check_bad(kwd, PG_ARRAY_LEN(kwd), 0, 3);
    static const struct bad_case clf[] = {{"1.23456", PG_ERANGE, DECS},
                                          {"922337203685477.5808", PG_ERANGE, OVER}};
    check_bad(clf, PG_ARRAY_LEN(clf), 0, 4);

    int64_t v;
    const char *why = NULL;
    assert_int_equal(pg_money_parse_decimal(PG_SLICE("1"), -1, &v, &why), PG_ERANGE);
    assert_non_null(why);
    assert_int_equal(pg_money_parse_decimal(PG_SLICE("1"), 19, &v, NULL), PG_ERANGE);
    assert_int_equal(pg_money_parse_decimal(PG_SLICE_NULL, 2, &v, NULL), PG_EPARSE);
    /* A slice ends where its length says, whatever follows in memory. */
    assert_int_equal(pg_money_parse_decimal(pg_slice_of("12.34xyz", 5), 2, &v, NULL), 0);
    assert_int_equal(v, 1234);
}

static void decimal_edges_of_int64(void **state)
{
    (void)state;
    int64_t v = 0;
    /* The largest major amount per exponent passes; one minor unit more fails. */
    assert_int_equal(pg_money_parse_decimal(PG_SLICE("92233720368547758.07"), 2, &v, NULL), 0);
    assert_true(v == INT64_MAX);
    assert_int_equal(pg_money_parse_decimal(PG_SLICE("92233720368547758.08"), 2, &v, NULL),
                     PG_ERANGE);
    assert_int_equal(pg_money_parse_decimal(PG_SLICE("92233720368547758"), 2, &v, NULL), 0);
    assert_true(v == INT64_C(9223372036854775800));
    assert_int_equal(pg_money_parse_decimal(PG_SLICE("9223372036854775807"), 0, &v, NULL), 0);
    assert_true(v == INT64_MAX);
    assert_int_equal(pg_money_parse_decimal(PG_SLICE("9223372036854775808"), 0, &v, NULL),
                     PG_ERANGE);
    assert_int_equal(pg_money_parse_decimal(PG_SLICE("9223372036854775.807"), 3, &v, NULL), 0);
    assert_true(v == INT64_MAX);
    assert_int_equal(pg_money_parse_decimal(PG_SLICE("9223372036854775.808"), 3, &v, NULL),
                     PG_ERANGE);
    assert_int_equal(pg_money_parse_decimal(PG_SLICE("922337203685477.5807"), 4, &v, NULL), 0);
    assert_true(v == INT64_MAX);
    /* Overflow found in the scaling step, not the digits. */
    assert_int_equal(pg_money_parse_decimal(PG_SLICE("922337203685477581"), 1, &v, NULL),
                     PG_ERANGE);
    assert_int_equal(pg_money_parse_decimal(PG_SLICE("922337203685477580"), 1, &v, NULL), 0);
    assert_true(v == INT64_C(9223372036854775800));
}

static void minor_accepts(void **state)
{
    (void)state;
    int64_t v = SENTINEL;
    const char *why = "unset";
    assert_int_equal(pg_money_parse_minor(PG_SLICE("1000"), &v, &why), 0);
    assert_true(v == 1000);
    assert_null(why);
    assert_int_equal(pg_money_parse_minor(PG_SLICE("0"), &v, NULL), 0);
    assert_true(v == 0);
    assert_int_equal(pg_money_parse_minor(PG_SLICE("9223372036854775807"), &v, NULL), 0);
    assert_true(v == INT64_MAX);
    assert_int_equal(pg_money_parse_minor(pg_slice_of("150abc", 3), &v, NULL), 0);
    assert_true(v == 150);
}

static void minor_rejects_with_reasons(void **state)
{
    (void)state;
    static const char DOT[] = "minor units are a whole number: no '.' is allowed";
    static const char ZEROS[] = "leading zeros are not allowed";
    static const struct bad_case c[] = {
        {"12.5", PG_EPARSE, DOT},
        {"12.", PG_EPARSE, DOT},
        {"1.2.3", PG_EPARSE, DOT},
        {".5", PG_EPARSE, DOT},
        {"-1", PG_EPARSE, NEG},
        {"+1", PG_EPARSE, PLUS},
        {"1e3", PG_EPARSE, EXPO},
        {"", PG_EPARSE, EMPTY},
        {" 1", PG_EPARSE, SPACE},
        {"1 ", PG_EPARSE, SPACE},
        {"1\n", PG_EPARSE, SPACE},
        {"0x10", PG_EPARSE, HEX},
        {"\xef\xbc\x91", PG_EPARSE, NAN_},
        {"1a", PG_EPARSE, NAN_},
        {"007", PG_EPARSE, ZEROS},
        {"00", PG_EPARSE, ZEROS},
        {"01", PG_EPARSE, ZEROS},
        {"9223372036854775808", PG_ERANGE, OVER},
        {"18446744073709551616", PG_ERANGE, OVER},
        {"99999999999999999999999999999", PG_ERANGE, OVER},
    };
    check_bad(c, PG_ARRAY_LEN(c), 1, 0);
    int64_t v;
    assert_int_equal(pg_money_parse_minor(PG_SLICE_NULL, &v, NULL), PG_EPARSE);
}

static void format_cases(void **state)
{
    (void)state;
    static const struct {
        int64_t minor;
        int exp;
        const char *want;
    } cases[] = {
        {1234, 2, "12.34"},
        {1230, 2, "12.30"},
        {1000, 0, "1000"},
        {5, 3, "0.005"},
        {0, 2, "0.00"},
        {0, 0, "0"},
        {-50, 2, "-0.50"},
        {-5, 0, "-5"},
        {12345, 4, "1.2345"},
        {1, 4, "0.0001"},
        {INT64_MAX, 2, "92233720368547758.07"},
        {INT64_MIN, 2, "-92233720368547758.08"},
        {INT64_MAX, 0, "9223372036854775807"},
        {INT64_MIN, 18, "-9.223372036854775808"},
        {1, 18, "0.000000000000000001"},
    };
    for (size_t i = 0; i < PG_ARRAY_LEN(cases); i++) {
        char buf[32];
        memset(buf, 'x', sizeof(buf));
        int n = pg_money_format(cases[i].minor, cases[i].exp, buf, sizeof(buf));
        assert_int_equal(n, (int)strlen(cases[i].want));
        assert_string_equal(buf, cases[i].want);
    }
}

static void format_buffer_and_exponent_limits(void **state)
{
    (void)state;
    char buf[8];
    memset(buf, 'x', sizeof(buf));
    assert_int_equal(pg_money_format(1234, 2, buf, 5), PG_ETOOBIG); /* "12.34" needs 6 with NUL */
    assert_int_equal(pg_money_format(1234, 2, buf, 6), 5);
    assert_string_equal(buf, "12.34");
    assert_int_equal(pg_money_format(1, 2, NULL, 0), PG_ETOOBIG);
    assert_int_equal(pg_money_format(1, 19, buf, sizeof(buf)), PG_ERANGE);
    assert_int_equal(pg_money_format(1, -1, buf, sizeof(buf)), PG_ERANGE);
}

static void format_round_trips(void **state)
{
    (void)state;
    static const int64_t values[] = {
        0, 1, 9, 10, 99, 100, 101, 12345, 1000000, 123456789012345, INT64_MAX - 1, INT64_MAX};
    for (int exp = 0; exp <= 4; exp++)
        for (size_t i = 0; i < PG_ARRAY_LEN(values); i++) {
            char buf[32];
            int n = pg_money_format(values[i], exp, buf, sizeof(buf));
            assert_true(n > 0);
            int64_t back = SENTINEL;
            assert_int_equal(pg_money_parse_decimal(pg_slice_of(buf, (size_t)n), exp, &back, NULL),
                             0);
            assert_true(back == values[i]);
            if (values[i] > 0) {
                /* and the minor units as a rail sends them */
                char minor[24];
                int m = snprintf(minor, sizeof(minor), "%lld", (long long)values[i]);
                assert_int_equal(pg_money_parse_minor(pg_slice_of(minor, (size_t)m), &back, NULL),
                                 0);
                assert_true(back == values[i]);
            }
        }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(exponent_classes),
        cmocka_unit_test(unknown_codes),
        cmocka_unit_test(every_code_found_and_nothing_else),
        cmocka_unit_test(decimal_accepts),
        cmocka_unit_test(decimal_rejects_with_reasons),
        cmocka_unit_test(decimal_edges_of_int64),
        cmocka_unit_test(minor_accepts),
        cmocka_unit_test(minor_rejects_with_reasons),
        cmocka_unit_test(format_cases),
        cmocka_unit_test(format_buffer_and_exponent_limits),
        cmocka_unit_test(format_round_trips),
    };
    return cmocka_run_group_tests_name("money", tests, NULL, NULL);
}
