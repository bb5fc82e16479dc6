/* Form bodies (application/x-www-form-urlencoded) as Stripe's SDKs send
 * them, through the stripe preset and a generic form rail, classified the way
 * the proxy does. A small reference decoder here reads the same body
 * independently: whatever payguard extracts must be what a plain form parser
 * (and so the rail) reads, and a field the policy looks at may appear only
 * once. Line items are summed by policy/form.c alone; they get the shape
 * checks only.
 * Input: one byte picks the route, one the Content-Type, then the body. */
#include "common/pg.h"
#include "policy/policy.h"
#include "tests/fuzz/helpers.h"

#include <stdio.h>
#include <stdlib.h>

struct route_case {
    const char *rail;
    const char *method, *target;
    const char *amount, *currency;   /* field names; NULL: none */
    const char *parties[6];          /* counterparty fields, first present wins */
    const char *urls[2];
    bool items;                      /* line items: the amount is a sum */
};

#define PI_PARTIES { "transfer_data[destination]", "destination", "on_behalf_of", "customer" }

static const struct route_case cases[] = {
    { "stripe", "POST", "/v1/payment_intents", "amount", "currency", PI_PARTIES, { 0 }, false },
    { "stripe", "POST", "/v1/payment_intents/pi_123", "amount", "currency", PI_PARTIES, { 0 }, false },
    { "stripe", "POST", "/v1/payment_intents/pi_123/capture", "amount_to_capture", NULL, { 0 }, { 0 }, false },
    { "stripe", "POST", "/v1/payment_intents/pi_123/increment_authorization", "amount", NULL, { 0 }, { 0 }, false },
    { "stripe", "POST", "/v1/payment_intents/pi_123/confirm", NULL, NULL, { 0 }, { 0 }, false },
    { "stripe", "POST", "/v1/charges", "amount", "currency",
      { "destination", "destination[account]", "transfer_data[destination]", "on_behalf_of", "customer" },
      { 0 }, false },
    { "stripe", "POST", "/v1/checkout/sessions", NULL, "currency",
      { "payment_intent_data[transfer_data][destination]", "payment_intent_data[on_behalf_of]", "customer" },
      { 0 }, true },
    { "stripe", "POST", "/v1/payment_links", NULL, "currency",
      { "transfer_data[destination]", "on_behalf_of" }, { 0 }, true },
    { "stripe", "POST", "/v1/refunds", "amount", "currency", { 0 }, { 0 }, false },
    { "stripe", "POST", "/v1/transfers", "amount", "currency", { "destination" }, { 0 }, false },
    { "stripe", "POST", "/v1/payouts", "amount", "currency", { "destination" }, { 0 }, false },
    { "stripe", "POST", "/v1/topups", "amount", "currency", { 0 }, { 0 }, false },
    { "stripe", "POST", "/v1/webhook_endpoints", NULL, NULL, { 0 }, { "url" }, false },
    { "stripe", "POST", "/v1/subscriptions", "amount", "currency",
      { "transfer_data[destination]", "customer" }, { "return_url" }, false },
    { "stripe", "POST", "/v1/customers", NULL, NULL, { 0 }, { 0 }, false },
    { "genform", "POST", "/v2/pay/p_1", "payment[amount]", "payment[currency]",
      { "payee", "payee[account]" }, { "callback" }, false },
    { "genform", "POST", "/v2/hooks", NULL, NULL, { 0 }, { "url", "backup[url]" }, false },
    /* A GET money route reads its fields from the query. */
    { "genform", "GET", "/v2/charge?", "amt", "cur", { 0 }, { 0 }, false },
};

static const char *const content_types[] = {
    "application/x-www-form-urlencoded",
    "application/x-www-form-urlencoded; charset=utf-8",
    "Application/X-WWW-Form-Urlencoded ;charset=\"UTF-8\"",
    "application/x-www-form-urlencoded; charset=latin1",
    "application/json",
    "",
};

static struct pg_routes *routes_stripe, *routes_genform;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const struct pg_config *cfg = fuzz_shared_config();
    char err[256];
    FUZZ_CHECK(pg_routes_build(pg_config_rail(cfg, PG_SLICE("stripe")), &routes_stripe, err,
                               sizeof err) == 0 &&
                   pg_routes_build(pg_config_rail(cfg, PG_SLICE("genform")), &routes_genform, err,
                                   sizeof err) == 0,
               "routes: %s", err);
    return 0;
}

/* --- the reference reading ------------------------------------------------ */

static int hex(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)(c | 0x20);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Percent-decodes with '+' as space into out (cap bytes); false when an
 * escape is broken. */
static bool decode(struct pg_slice s, char *out, size_t cap, size_t *n)
{
    size_t o = 0;
    for (size_t i = 0; i < s.len; i++) {
        char c = s.ptr[i];
        if (c == '+') {
            c = ' ';
        } else if (c == '%') {
            if (s.len - i < 3)
                return false;
            int h = hex(s.ptr[i + 1]), l = hex(s.ptr[i + 2]);
            if (h < 0 || l < 0)
                return false;
            c = (char)(h << 4 | l);
            i += 2;
        }
        if (o == cap)
            return false;
        out[o++] = c;
    }
    *n = o;
    return true;
}

/* How many pairs of `body` have the decoded key `key`, and the decoded
 * value of the last one in val (NUL-terminated, up to cap - 1 bytes). */
static size_t lookup(struct pg_slice body, const char *key, char *val, size_t cap, size_t *vlen)
{
    static char k[70000];
    size_t count = 0, klen = strlen(key);
    const char *p = body.ptr, *end = body.ptr + body.len;
    *vlen = 0;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *pe = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(pe - p));
        struct pg_slice rk = pg_slice_of(p, (size_t)((eq ? eq : pe) - p));
        struct pg_slice rv = eq ? pg_slice_of(eq + 1, (size_t)(pe - eq - 1)) : pg_slice_of(pe, 0);
        p = amp ? amp + 1 : end;
        size_t n;
        if (!decode(rk, k, sizeof k, &n) || n != klen || memcmp(k, key, klen) != 0)
            continue;
        count++;
        if (!decode(rv, val, cap - 1, vlen))
            *vlen = 0;
        val[*vlen] = '\0';
    }
    return count;
}

/* --- the target ------------------------------------------------------------ */

static void same_intent(const struct pg_intent *a, const struct pg_intent *b)
{
    FUZZ_CHECK(a->matched == b->matched && a->op == b->op && a->has_amount == b->has_amount &&
                   a->amount == b->amount && memcmp(a->currency, b->currency, 4) == 0 &&
                   pg_slice_eq(a->counterparty, b->counterparty) && a->nurls == b->nurls,
               "a trailing '&' changed what the request means");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = { data, size };
    const struct route_case *rc = &cases[fuzz_u8(&in) % PG_ARRAY_LEN(cases)];
    const char *ct = content_types[fuzz_u8(&in) % PG_ARRAY_LEN(content_types)];
    struct pg_slice body = fuzz_rest(&in);
    const struct pg_routes *routes = rc->rail[0] == 's' ? routes_stripe : routes_genform;

    /* A GET route takes the input as its query. */
    bool get = strcmp(rc->method, "GET") == 0;
    char *target = NULL;
    struct pg_slice tgt = pg_slice_cstr(rc->target), src = body;
    if (get) {
        size_t tl = strlen(rc->target);
        target = malloc(tl + body.len + 1);
        memcpy(target, rc->target, tl);
        memcpy(target + tl, body.ptr, body.len);
        tgt = pg_slice_of(target, tl + body.len);
        src = pg_slice_of(target + tl, body.len);
        body = PG_SLICE_NULL;
    }

    static struct pg_intent it, again;
    struct pg_decision bad;
    memset(&bad, 0, sizeof bad);
    int r = pg_rail_classify(routes, pg_slice_cstr(rc->method), tgt, pg_slice_cstr(ct), body, &it,
                             &bad);
    FUZZ_CHECK(r == 0 || r == PG_EPARSE, "classify: %d", r);
    FUZZ_CHECK(it.scratch_used <= sizeof it.scratch, "scratch overrun");
    if (r == PG_EPARSE) {
        FUZZ_CHECK(bad.status == 400 && bad.reason && bad.message[0] &&
                       memchr(bad.message, '\0', sizeof bad.message),
                   "a refusal without status, reason or message");
        goto out;
    }
    /* A query with a '?' that is not a route's ('/v2/charge?x' has none)
     * may leave the route unmatched; the rest always match. */
    FUZZ_CHECK(it.matched, "%s %s did not match", rc->method, rc->target);
    bool extracts = rc->amount || rc->currency || rc->parties[0] || rc->urls[0] || rc->items;
    if (extracts && src.len && !get) {
        /* Only the one encoding is read. */
        FUZZ_CHECK(strncasecmp(ct, "application/x-www-form-urlencoded", 33) == 0 &&
                       !strstr(ct, "latin1"),
                   "a body read as form under Content-Type \"%s\"", ct);
    }
    FUZZ_CHECK(!extracts || !src.len || !memchr(src.ptr, ';', src.len), "a raw ';' was accepted");

    static char val[70000];
    size_t vlen;
    const char *fields[] = { rc->amount, rc->currency, rc->parties[0], rc->parties[1],
                             rc->parties[2], rc->parties[3], rc->parties[4], rc->parties[5],
                             rc->urls[0], rc->urls[1] };
    for (size_t i = 0; i < PG_ARRAY_LEN(fields); i++)
        if (fields[i])
            FUZZ_CHECK(lookup(src, fields[i], val, sizeof val, &vlen) <= 1,
                       "field %s appears twice and was accepted", fields[i]);

    if (it.has_amount) {
        FUZZ_CHECK(it.amount >= 0, "negative amount");
        if (!rc->items) {
            FUZZ_CHECK(rc->amount && lookup(src, rc->amount, val, sizeof val, &vlen) == 1,
                       "an amount without the field %s", rc->amount ? rc->amount : "?");
            char want[32];
            snprintf(want, sizeof want, "%lld", (long long)it.amount);
            FUZZ_CHECK(strcmp(val, want) == 0, "amount %s read as %s", val, want);
        }
    }
    if (it.currency[0]) {
        FUZZ_CHECK(strlen(it.currency) == 3 && pg_money_exponent(pg_slice_of(it.currency, 3)) >= 0,
                   "currency \"%s\"", it.currency);
        for (int i = 0; i < 3; i++)
            FUZZ_CHECK(it.currency[i] >= 'a' && it.currency[i] <= 'z', "currency not lower case");
        if (!rc->items || lookup(src, "currency", val, sizeof val, &vlen) == 1) {
            FUZZ_CHECK(rc->currency && lookup(src, rc->currency, val, sizeof val, &vlen) == 1 &&
                           strncasecmp(val, it.currency, 4) == 0,
                       "currency %s read as %s", val, it.currency);
        }
    }
    if (it.counterparty.len) {
        FUZZ_CHECK(it.counterparty_field, "counterparty without its field");
        FUZZ_CHECK(lookup(src, it.counterparty_field, val, sizeof val, &vlen) == 1 &&
                       vlen == it.counterparty.len &&
                       memcmp(val, it.counterparty.ptr, vlen) == 0,
                   "counterparty %s read differently", it.counterparty_field);
        FUZZ_CHECK(fuzz_within(it.counterparty, src.ptr, src.len) ||
                       fuzz_within(it.counterparty, it.scratch, it.scratch_used),
                   "counterparty points outside the request");
        for (size_t i = 0; i < it.counterparty.len; i++) {
            unsigned char c = (unsigned char)it.counterparty.ptr[i];
            FUZZ_CHECK(c >= 0x20 && c != 0x7f, "control byte in the counterparty");
        }
        /* An earlier field in the list, when present and not empty, wins. */
        for (size_t i = 0; i < PG_ARRAY_LEN(rc->parties) && rc->parties[i]; i++) {
            if (strcmp(rc->parties[i], it.counterparty_field) == 0)
                break;
            FUZZ_CHECK(lookup(src, rc->parties[i], val, sizeof val, &vlen) == 0 || vlen == 0,
                       "%s passed over for %s", rc->parties[i], it.counterparty_field);
        }
    }
    FUZZ_CHECK(it.nurls <= PG_INTENT_MAX_URLS, "nurls %u", it.nurls);
    for (uint32_t i = 0; i < it.nurls; i++) {
        FUZZ_CHECK(it.urls[i].field && it.urls[i].url.len, "an empty URL slot");
        FUZZ_CHECK(lookup(src, it.urls[i].field, val, sizeof val, &vlen) == 1 &&
                       vlen == it.urls[i].url.len && memcmp(val, it.urls[i].url.ptr, vlen) == 0,
                   "URL %s read differently", it.urls[i].field);
    }

    /* "&&" and a trailing '&' are empty pairs: the meaning must not move. */
    if (!get && body.len) {
        char *longer = malloc(body.len + 1);
        memcpy(longer, body.ptr, body.len);
        longer[body.len] = '&';
        int r2 = pg_rail_classify(routes, pg_slice_cstr(rc->method), tgt, pg_slice_cstr(ct),
                                  pg_slice_of(longer, body.len + 1), &again, &bad);
        FUZZ_CHECK(r2 == 0, "a trailing '&' made the body malformed");
        same_intent(&it, &again);
        free(longer);
    }
out:
    free(target);
    return 0;
}
