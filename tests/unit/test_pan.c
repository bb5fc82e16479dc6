/* Card numbers: Stripe's test cards found plain, grouped and inside form and
 * JSON bodies; look-alikes (ids, timestamps, amounts, phone numbers, bad
 * grouping, non-card prefixes) left alone; the brand table at its edges;
 * masking; and large bodies. */
#include "common/pg.h"
#include "policy/pan.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

struct card {
    const char *pan;
    enum pg_pan_brand brand;
};

/* Stripe's documented test numbers (successes, declines, 3DS, debit). */
static const struct card stripe_cards[] = {
    {"4242424242424242", PG_PAN_VISA},       {"4000056655665556", PG_PAN_VISA},
    {"5555555555554444", PG_PAN_MASTERCARD}, {"2223003122003222", PG_PAN_MASTERCARD},
    {"5200828282828210", PG_PAN_MASTERCARD}, {"5105105105105100", PG_PAN_MASTERCARD},
    {"378282246310005", PG_PAN_AMEX},        {"371449635398431", PG_PAN_AMEX},
    {"6011111111111117", PG_PAN_DISCOVER},   {"6011000990139424", PG_PAN_DISCOVER},
    {"6011981111111113", PG_PAN_DISCOVER},   {"3056930009020004", PG_PAN_DINERS},
    {"36227206271667", PG_PAN_DINERS},       {"6555900000604105", PG_PAN_DISCOVER},
    {"3566002020360505", PG_PAN_JCB},        {"6200000000000005", PG_PAN_UNIONPAY},
    {"6200000000000047", PG_PAN_UNIONPAY},   {"6205500000000000004", PG_PAN_UNIONPAY},
    {"4000002760003184", PG_PAN_VISA},       {"4000000000003220", PG_PAN_VISA},
    {"4000002500003155", PG_PAN_VISA},       {"4000000000009995", PG_PAN_VISA},
    {"4000000000009987", PG_PAN_VISA},       {"4000000000000002", PG_PAN_VISA},
    {"4000000000000069", PG_PAN_VISA},       {"4000000000000127", PG_PAN_VISA},
    {"4000000000000119", PG_PAN_VISA},       {"4100000000000019", PG_PAN_VISA},
    {"4000000000000259", PG_PAN_VISA},       {"4000000000000341", PG_PAN_VISA},
    {"4000003800000008", PG_PAN_VISA},       {"5200000000000007", PG_PAN_MASTERCARD},
    {"4222222222222", PG_PAN_VISA},
};

static void expect_match(const char *buf, size_t len, size_t off, size_t mlen, const char *last4,
                         int brand)
{
    struct pg_pan_match m;
    memset(&m, 0x5a, sizeof(m));
    if (!pg_pan_find(buf, len, &m))
        fail_msg("'%.*s': no card found", (int)len, buf);
    if (m.off != off || m.len != mlen)
        fail_msg("'%.*s': found at %zu+%zu, want %zu+%zu", (int)len, buf, m.off, m.len, off, mlen);
    if (strcmp(m.last4, last4) != 0)
        fail_msg("'%.*s': last4 '%s', want '%s'", (int)len, buf, m.last4, last4);
    if (brand >= 0 && (int)m.brand != brand)
        fail_msg("'%.*s': brand %s, want %s", (int)len, buf, pg_pan_brand_name(m.brand),
                 pg_pan_brand_name((enum pg_pan_brand)brand));
}

static void expect_none(const char *buf, size_t len)
{
    struct pg_pan_match m;
    if (pg_pan_find(buf, len, &m))
        fail_msg("'%.*s': found %.*s (%s ...%s), want none", (int)len, buf, (int)m.len, buf + m.off,
                 pg_pan_brand_name(m.brand), m.last4);
}

static void stripe_numbers_plain(void **state)
{
    (void)state;
    for (size_t i = 0; i < PG_ARRAY_LEN(stripe_cards); i++) {
        const char *p = stripe_cards[i].pan;
        size_t n = strlen(p);
        expect_match(p, n, 0, n, p + n - 4, (int)stripe_cards[i].brand);
    }
}

/* Writes `pan` in the groups people use (4-4-4-4, Amex 4-6-5, Diners 4-6-4,
 * 19 digits 4-4-4-4-3, 13 digits 4-4-5) joined by `sep`. */
static size_t format_pan(const char *pan, const char *sep, char *out)
{
    static const unsigned g13[] = {4, 4, 5, 0}, g14[] = {4, 6, 4, 0}, g15[] = {4, 6, 5, 0},
                          g16[] = {4, 4, 4, 4, 0}, g19[] = {4, 4, 4, 4, 3, 0};
    size_t n = strlen(pan), o = 0, at = 0;
    const unsigned *g = n == 13 ? g13 : n == 14 ? g14 : n == 15 ? g15 : n == 16 ? g16 : g19;
    for (; *g; g++) {
        if (at > 0) {
            memcpy(out + o, sep, strlen(sep));
            o += strlen(sep);
        }
        memcpy(out + o, pan + at, *g);
        o += *g;
        at += *g;
    }
    assert_int_equal(at, n);
    return o;
}

static void stripe_numbers_grouped(void **state)
{
    (void)state;
    static const char *seps[] = {" ", "-", "+", "%20", "%2B", "%2d"};
    for (size_t i = 0; i < PG_ARRAY_LEN(stripe_cards); i++)
        for (size_t s = 0; s < PG_ARRAY_LEN(seps); s++) {
            char buf[96];
            const char *p = stripe_cards[i].pan;
            size_t n = format_pan(p, seps[s], buf);
            expect_match(buf, n, 0, n, p + strlen(p) - 4, (int)stripe_cards[i].brand);
        }
    expect_match("3782 822463 10005", 17, 0, 17, "0005", PG_PAN_AMEX);
    expect_match("42424242 42424242", 17, 0, 17, "4242", PG_PAN_VISA);
    expect_match("4222 2222 2222 2", 16, 0, 16, "2222", PG_PAN_VISA);
}

static void inside_bodies(void **state)
{
    (void)state;
    static const struct {
        const char *body;
        const char *at; /* where the number starts */
        size_t len;
        const char *last4;
    } cases[] = {
        {"amount=2000&currency=usd&payment_method_data[card][number]=4242424242424242&"
         "payment_method_data[card][exp_month]=12",
         "4242", 16, "4242"},
        {"card%5Bnumber%5D=4000056655665556&card%5Bcvc%5D=123", "4000", 16, "5556"},
        {"card[number]=4242+4242+4242+4242&card[cvc]=314", "4242", 19, "4242"},
        {"card[number]=4242%204242%204242%204242&card[cvc]=314", "4242", 25, "4242"},
        {"card[number]=3782%20822463%2010005", "3782", 21, "0005"},
        {"description=Card%3A+5555-5555-5555-4444+exp+12%2F30", "5555", 19, "4444"},
        {"metadata[note]=pay%204242424242424242%20now", "4242", 16, "4242"},
        {"{\"card\":{\"number\":\"4242424242424242\",\"cvc\":\"123\"}}", "4242", 16, "4242"},
        {"{\"card\": {\"number\": 6011111111111117, \"exp\": 1230}}", "6011", 16, "1117"},
        {"{\"note\":\"my card is 3566 0020 2036 0505, exp 12/30\"}", "3566", 19, "0505"},
        {"{\"pan\":[\"6205500000000000004\"]}", "6205", 19, "0004"},
        {"line1\n4242424242424242\nline3", "4242", 16, "4242"},
        {"card-4242424242424242", "4242", 16, "4242"},
        {"(4242-4242-4242-4242)", "4242", 19, "4242"},
        {"qty 1 4242 4242 4242 4242 total", "4242", 19, "4242"},
        {"1234-4242 4242 4242 4242", "4242 ", 19, "4242"},
        {"42 42 42 42 42 42 42 42", "42", 23, "4242"},
        {"a=%3A4242424242424242", "4242", 16, "4242"},
        {"first 5105105105105100 then 4242424242424242", "5105", 16, "5100"},
    };
    for (size_t i = 0; i < PG_ARRAY_LEN(cases); i++) {
        const char *b = cases[i].body;
        const char *at = strstr(b, cases[i].at);
        assert_non_null(at);
        expect_match(b, strlen(b), (size_t)(at - b), cases[i].len, cases[i].last4, -1);
    }
}

static void look_alikes(void **state)
{
    (void)state;
    static const char *none[] = {
        "4242424242424241", /* Luhn fails */
        "4000056655665557", /* Luhn fails */
        "1795431600000",    /* a timestamp in ms: Luhn passes, no brand */
        "created=1795431600000&amount=100",
        "100000000000000",             /* an amount */
        "100000000000009",             /* passes Luhn, no brand */
        "9999999999999995",            /* passes Luhn, no brand */
        "1777777777777774",            /* passes Luhn, no brand */
        "pi_3MtwBwLkdIwHu7ix0snN0B15", /* a Stripe id */
        "ch_4242424242424242",         /* digits glued to an id */
        "tok4242424242424242",
        "4242424242424242abc",
        "x4242424242424242",
        "42424242424242424242",         /* 20 digits */
        "1234567890424242424242424242", /* a 25+ digit run holding a card */
        "4242424242424242424242424",
        "4242 4242-4242 4242", /* inconsistent separators */
        "4242+4242%204242+4242",
        "4242+4242%2B4242+4242", /* '+' written two ways */
        "4242 4242%204242 4242",
        "4242  4242  4242  4242", /* double spaces */
        "4242--4242--4242--4242",
        "4 2 4 2 4 2 4 2 4 2 4 2 4 2 4 2", /* single-digit groups */
        "424242424242 4242",               /* a 12-digit group */
        "+1 (415) 555-2671",               /* phone numbers */
        "+44 20 7946 0958",
        "+1-800-555-0199 ext 4242",
        "0.4242424242424242", /* a decimal */
        "{\"score\":0.4000056655665556}",
        "4242424242424242.5",
        "%414242424242424242", /* glued to an escaped letter */
        "4242424242424242%41",
        "%34242424242424242",                   /* %34 is '4': glued, not read */
        "550e8400-e29b-41d4-a716-446655440000", /* a UUID */
        "424242424242",                         /* too short */
        "4242424242424",                        /* 13 digits, Luhn fails */
    };
    for (size_t i = 0; i < PG_ARRAY_LEN(none); i++)
        expect_none(none[i], strlen(none[i]));
    /* a long group cannot sit inside a grouped number, but stands alone */
    expect_match("378282246310005 0", 17, 0, 15, "0005", PG_PAN_AMEX);
    expect_none("", 0);
    expect_none(NULL, 0);
    /* a slice: the number runs past len */
    expect_none("4242424242424242", 15);
}

/* Builds a Luhn-valid number of `n` digits starting with `prefix`. */
static void make_pan(const char *prefix, unsigned n, char *out)
{
    size_t pl = strlen(prefix);
    memcpy(out, prefix, pl);
    for (size_t i = pl; i < n - 1; i++)
        out[i] = (char)('0' + (i * 7 + 3) % 10);
    out[n - 1] = '0';
    out[n] = '\0';
    unsigned sum = 0;
    for (unsigned i = 0; i < n - 1; i++) {
        unsigned d = (unsigned)(out[n - 2 - i] - '0');
        if (i % 2 == 0) {
            d *= 2;
            if (d > 9)
                d -= 9;
        }
        sum += d;
    }
    out[n - 1] = (char)('0' + (10 - sum % 10) % 10);
}

static void brand_table_edges(void **state)
{
    (void)state;
    enum { NONE = -1 };
    static const struct {
        const char *prefix;
        unsigned len;
        int brand;
    } cases[] = {
        {"4", 13, PG_PAN_VISA},
        {"4", 16, PG_PAN_VISA},
        {"4", 19, PG_PAN_VISA},
        {"4", 14, NONE},
        {"4", 15, NONE},
        {"4", 17, NONE},
        {"4", 18, NONE},
        {"51", 16, PG_PAN_MASTERCARD},
        {"55", 16, PG_PAN_MASTERCARD},
        {"51", 15, NONE},
        {"55", 19, NONE},
        {"2220", 16, NONE},
        {"2221", 16, PG_PAN_MASTERCARD},
        {"2720", 16, PG_PAN_MASTERCARD},
        {"2721", 16, NONE},
        {"2221", 19, NONE},
        {"34", 15, PG_PAN_AMEX},
        {"37", 15, PG_PAN_AMEX},
        {"34", 16, NONE},
        {"35", 15, NONE},
        {"33", 15, NONE},
        {"6011", 16, PG_PAN_DISCOVER},
        {"6011", 19, PG_PAN_DISCOVER},
        {"644", 16, PG_PAN_DISCOVER},
        {"649", 17, PG_PAN_DISCOVER},
        {"65", 16, PG_PAN_DISCOVER},
        {"643", 16, PG_PAN_MAESTRO},
        {"6011", 13, PG_PAN_MAESTRO},
        {"36", 14, PG_PAN_DINERS},
        {"38", 19, PG_PAN_DINERS},
        {"300", 14, PG_PAN_DINERS},
        {"305", 16, PG_PAN_DINERS},
        {"306", 14, NONE},
        {"36", 13, NONE},
        {"39", 14, NONE},
        {"3528", 16, PG_PAN_JCB},
        {"3589", 19, PG_PAN_JCB},
        {"3527", 16, NONE},
        {"3590", 16, NONE},
        {"3528", 15, NONE},
        {"62", 16, PG_PAN_UNIONPAY},
        {"62", 19, PG_PAN_UNIONPAY},
        {"62", 13, PG_PAN_MAESTRO},
        {"50", 13, PG_PAN_MAESTRO},
        {"56", 16, PG_PAN_MAESTRO},
        {"69", 19, PG_PAN_MAESTRO},
        {"70", 16, NONE},
        {"1", 16, NONE},
        {"8", 16, NONE},
        {"9", 19, NONE},
        {"0", 16, NONE},
    };
    for (size_t i = 0; i < PG_ARRAY_LEN(cases); i++) {
        char pan[24];
        make_pan(cases[i].prefix, cases[i].len, pan);
        struct pg_pan_match m;
        bool found = pg_pan_find(pan, strlen(pan), &m);
        if (found != (cases[i].brand != NONE))
            fail_msg("%s (%s, %u digits): found %d", pan, cases[i].prefix, cases[i].len, found);
        if (found && (int)m.brand != cases[i].brand)
            fail_msg("%s: brand %s", pan, pg_pan_brand_name(m.brand));
        if (found)
            assert_int_equal(m.ndigits, cases[i].len);
    }
    assert_string_equal(pg_pan_brand_name(PG_PAN_AMEX), "amex");
    assert_string_equal(pg_pan_brand_name((enum pg_pan_brand)99), "card");
}

static void masking(void **state)
{
    (void)state;
    static const struct {
        const char *in, *out;
        int count;
    } cases[] = {
        {"number=4242424242424242&cvc=123", "number=************4242&cvc=123", 1},
        {"4242 4242 4242 4242", "**** **** **** 4242", 1},
        {"4242-4242-4242-4242", "****-****-****-4242", 1},
        {"4242+4242+4242+4242", "****+****+****+4242", 1},
        {"4242%204242%204242%204242", "****%20****%20****%204242", 1},
        {"3782 822463 10005", "**** ****** *0005", 1},
        {"a=378282246310005,b=6011111111111117", "a=***********0005,b=************1117", 2},
        {"4242 4242 4242 4242 4000 0566 5566 5556", "**** **** **** 4242 **** **** **** 5556", 2},
        {"pi_3MtwBwLkdIwHu7ix0snN0B15 4242424242424241",
         "pi_3MtwBwLkdIwHu7ix0snN0B15 4242424242424241", 0},
        {"", "", 0},
    };
    for (size_t i = 0; i < PG_ARRAY_LEN(cases); i++) {
        char out[128];
        size_t n = strlen(cases[i].in);
        memset(out, '#', sizeof(out));
        int rc = pg_pan_mask(cases[i].in, n, out, sizeof(out));
        if (rc != cases[i].count)
            fail_msg("'%s': masked %d, want %d", cases[i].in, rc, cases[i].count);
        if (memcmp(out, cases[i].out, n) != 0)
            fail_msg("'%s': '%.*s', want '%s'", cases[i].in, (int)n, out, cases[i].out);
        assert_int_equal(out[n], '#'); /* exactly len bytes written, no NUL */

        /* in place gives the same */
        char inplace[128];
        memcpy(inplace, cases[i].in, n);
        assert_int_equal(pg_pan_mask(inplace, n, inplace, n), cases[i].count);
        assert_memory_equal(inplace, cases[i].out, n);
    }
    char small[8];
    assert_int_equal(pg_pan_mask("4242424242424242", 16, small, sizeof(small)), PG_ETOOBIG);
    assert_int_equal(pg_pan_mask("4242424242424242", 16, small, 0), PG_ETOOBIG);
}

/* 1 MiB bodies: no digits, digits without a card, a card at the very end,
 * and the worst case for the window search (short groups all the way). */
static void large_bodies(void **state)
{
    (void)state;
    size_t n = 1u << 20;
    char *buf = malloc(n + 32);
    assert_non_null(buf);
    struct pg_pan_match m;

    for (size_t i = 0; i < n; i++)
        buf[i] = "abcdefghij klmnop=&%\"{}"[i % 23];
    assert_false(pg_pan_find(buf, n, &m));
    memcpy(buf + n - 16, "4242424242424242", 16);
    buf[n - 17] = '=';
    assert_true(pg_pan_find(buf, n, &m));
    assert_int_equal(m.off, n - 16);

    memset(buf, '7', n); /* one run of a million digits */
    assert_false(pg_pan_find(buf, n, &m));
    assert_int_equal(pg_pan_mask(buf, n, buf, n), 0);

    for (size_t i = 0; i < n; i++)
        buf[i] = "12 "[i % 3];
    assert_false(pg_pan_find(buf, n, &m));
    for (size_t i = 0; i < n; i++)
        buf[i] = "42 "[i % 3];
    /* every eight groups are a card: 4242424242424242 */
    int masked = pg_pan_mask(buf, n, buf, n);
    assert_int_equal(masked, (int)((n + 1) / 3 / 8));
    assert_memory_equal(buf, "** ** ** ** ** ** 42 42 ** ", 27);
    free(buf);
}

/* Random bytes biased towards digits and separators: nothing crashes or
 * reads past len (ASan), and masking only ever turns digits into '*'. */
static void random_bytes(void **state)
{
    (void)state;
    static const char alphabet[] = "0123456789012345678901234567890123456789 -+%2Bb_.a";
    uint32_t x = 2463534242u;
    char in[256], out[256];
    int found = 0;
    for (int round = 0; round < 20000; round++) {
        size_t n = 0;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        n = x % sizeof(in);
        for (size_t i = 0; i < n; i++) {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            in[i] = alphabet[x % (sizeof(alphabet) - 1)];
        }
        char *heap = malloc(n ? n : 1);
        assert_non_null(heap);
        memcpy(heap, in, n);
        struct pg_pan_match m;
        bool hit = pg_pan_find(heap, n, &m);
        int rc = pg_pan_mask(heap, n, out, sizeof(out));
        assert_true(rc >= 0);
        assert_int_equal(rc > 0, hit);
        if (hit) {
            found++;
            assert_true(m.off + m.len <= n);
            assert_true(m.ndigits >= 13 && m.ndigits <= 19);
        }
        for (size_t i = 0; i < n; i++)
            if (out[i] != heap[i] && !(out[i] == '*' && heap[i] >= '0' && heap[i] <= '9'))
                fail_msg("round %d: byte %zu changed from '%c' to '%c'", round, i, heap[i], out[i]);
        free(heap);
    }
    assert_true(found > 0); /* the generator does produce cards */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(stripe_numbers_plain), cmocka_unit_test(stripe_numbers_grouped),
        cmocka_unit_test(inside_bodies),        cmocka_unit_test(look_alikes),
        cmocka_unit_test(brand_table_edges),    cmocka_unit_test(masking),
        cmocka_unit_test(large_bodies),         cmocka_unit_test(random_bytes),
    };
    return cmocka_run_group_tests_name("pan", tests, NULL, NULL);
}
