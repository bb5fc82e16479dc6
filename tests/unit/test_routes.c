/* Route tables and extractors: every Stripe money route read from bodies as
 * stripe-node sends them, the Adyen JSON routes, path hygiene, every way a
 * body can be refused (bad amounts and currencies, missing fields,
 * duplicates, query strings, encodings), line item sums, and payguard.yaml
 * routes overriding and extending presets. */
#include "common/pg.h"
#include "policy/policy.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define FORM "application/x-www-form-urlencoded"
#define JSON "application/json"

static struct pg_routes *stripe, *adyen, *generic;
static struct pg_intent in; /* 4 KiB of scratch: kept off the stack */
static struct pg_decision bad;

static struct pg_routes *build(const struct pg_rail *rail)
{
    struct pg_routes *t = NULL;
    char err[256];
    int rc = pg_routes_build(rail, &t, err, sizeof err);
    if (rc != 0)
        fail_msg("pg_routes_build(%s): %d %s", rail->name, rc, err);
    return t;
}

static int group_setup(void **state)
{
    (void)state;
    struct pg_rail s = {.name = "stripe", .preset = PG_PRESET_STRIPE};
    struct pg_rail a = {.name = "adyen", .preset = PG_PRESET_ADYEN, .format = PG_BODY_JSON};
    struct pg_rail g = {.name = "bank", .preset = PG_PRESET_GENERIC};
    stripe = build(&s);
    adyen = build(&a);
    generic = build(&g);
    return stripe && adyen && generic ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    pg_routes_free(stripe);
    pg_routes_free(adyen);
    pg_routes_free(generic);
    return 0;
}

static int classify(const struct pg_routes *t, const char *method, const char *target,
                    const char *ct, const char *body)
{
    memset(&bad, 0, sizeof bad);
    return pg_rail_classify(t, pg_slice_cstr(method), pg_slice_cstr(target),
                            pg_slice_cstr(ct ? ct : ""), pg_slice_cstr(body ? body : ""), &in,
                            &bad);
}

static bool slice_is(struct pg_slice s, const char *want)
{
    if (!want)
        return s.len == 0;
    return pg_slice_eq(s, pg_slice_cstr(want));
}

/* The request was refused with this reason (and param, when not NULL). */
static void expect_bad_(int rc, const char *reason, const char *param, const char *what)
{
    if (rc != PG_EPARSE || !bad.reason || strcmp(bad.reason, reason) != 0)
        fail_msg("%s: want 400 %s, got rc %d reason %s (%s)", what, reason, rc,
                 bad.reason ? bad.reason : "-", bad.message);
    assert_int_equal(bad.status, 400);
    assert_int_equal(bad.verdict, PG_VERDICT_DENY);
    assert_true(strlen(bad.message) > 20);
    if (param) {
        if (!bad.param || strcmp(bad.param, param) != 0)
            fail_msg("%s: want param %s, got %s", what, param, bad.param ? bad.param : "NULL");
        /* The message names the field the agent has to fix. */
        if (!strstr(bad.message, param))
            fail_msg("%s: message does not name %s: %s", what, param, bad.message);
    }
}
#define expect_bad(rc, reason, param) expect_bad_((rc), (reason), (param), #rc)

/* --- what a route extracts ---------------------------------------------- */

struct want {
    const char *method, *target, *ct, *body;
    const char *route;
    enum pg_op op;
    enum pg_action action;
    int64_t amount; /* -1: none */
    const char *currency;
    const char *cp, *cp_field;
    const char *object_id;
    const char *url;
};

static void check_want(const struct pg_routes *t, const struct want *w, size_t i)
{
    int rc = classify(t, w->method, w->target, w->ct, w->body);
    if (rc != 0)
        fail_msg("case %zu %s %s: rc %d %s: %s", i, w->method, w->target, rc,
                 bad.reason ? bad.reason : "-", bad.message);
    if (!in.matched || strcmp(in.route, w->route) != 0)
        fail_msg("case %zu %s %s: route %s, want %s", i, w->method, w->target,
                 in.matched ? in.route : "(unmatched)", w->route);
    if (in.op != w->op || in.action != w->action)
        fail_msg("case %zu %s: op %s action %d, want %s %d", i, w->route, pg_op_name(in.op),
                 in.action, pg_op_name(w->op), w->action);
    if (in.has_amount != (w->amount >= 0) || (w->amount >= 0 && in.amount != w->amount))
        fail_msg("case %zu %s: amount %d/%lld, want %lld", i, w->route, in.has_amount,
                 (long long)in.amount, (long long)w->amount);
    if (strcmp(in.currency, w->currency ? w->currency : "") != 0)
        fail_msg("case %zu %s: currency \"%s\", want \"%s\"", i, w->route, in.currency,
                 w->currency ? w->currency : "");
    if (!slice_is(in.counterparty, w->cp))
        fail_msg("case %zu %s: counterparty \"%.*s\", want \"%s\"", i, w->route,
                 (int)in.counterparty.len, in.counterparty.ptr, w->cp ? w->cp : "");
    if (w->cp && (!in.counterparty_field || strcmp(in.counterparty_field, w->cp_field) != 0))
        fail_msg("case %zu %s: counterparty field %s, want %s", i, w->route,
                 in.counterparty_field ? in.counterparty_field : "NULL", w->cp_field);
    if (!slice_is(in.object_id, w->object_id))
        fail_msg("case %zu %s: object id \"%.*s\", want \"%s\"", i, w->route, (int)in.object_id.len,
                 in.object_id.ptr, w->object_id ? w->object_id : "");
    if (w->url) {
        if (in.nurls != 1 || !slice_is(in.urls[0].url, w->url))
            fail_msg("case %zu %s: %u urls, first \"%.*s\", want \"%s\"", i, w->route, in.nurls,
                     in.nurls ? (int)in.urls[0].url.len : 0, in.nurls ? in.urls[0].url.ptr : "",
                     w->url);
    } else if (in.nurls != 0) {
        fail_msg("case %zu %s: %u urls, want none", i, w->route, in.nurls);
    }
}

/* Bodies as stripe-node writes them: brackets left raw, values encoded with
 * encodeURIComponent, metadata and nested hashes beside the money. */
static const struct want stripe_money[] = {
    {"POST", "/v1/payment_intents", FORM,
     "amount=2000&currency=usd&automatic_payment_methods[enabled]=true&metadata[order_id]=6735"
     "&transfer_data[destination]=acct_1Trusted&customer=cus_9",
     "payment_intents.create", PG_OP_PAYMENT, PG_ACT_CREATE, 2000, "usd", "acct_1Trusted",
     "transfer_data[destination]", NULL, NULL},
    /* Brackets percent-encoded (qs's default), '+' and %26 in other values. */
    {"POST", "/v1/payment_intents", FORM "; charset=utf-8",
     "amount=1500&currency=EUR&description=Tea+%26+cake&transfer_data%5Bdestination%5D=acct_1"
     "&payment_method_types%5B0%5D=card",
     "payment_intents.create", PG_OP_PAYMENT, PG_ACT_CREATE, 1500, "eur", "acct_1",
     "transfer_data[destination]", NULL, NULL},
    {"POST", "/v1/payment_intents", FORM,
     "customer=cus_123&amount=0&currency=jpy&on_behalf_of=acct_OBO&metadata[customer]=x",
     "payment_intents.create", PG_OP_PAYMENT, PG_ACT_CREATE, 0, "jpy", "acct_OBO", "on_behalf_of",
     NULL, NULL},
    /* An empty value unsets a field at Stripe: it names nobody. */
    {"POST", "/v1/payment_intents", FORM,
     "amount=700&currency=usd&transfer_data[destination]=&customer=cus_1", "payment_intents.create",
     PG_OP_PAYMENT, PG_ACT_CREATE, 700, "usd", "cus_1", "customer", NULL, NULL},
    /* A long, encoded value is decoded into the intent's scratch. */
    {"POST", "/v1/payment_intents", FORM, "amount=%31%30&currency=%75sd&customer=cus%5F%41%42%43",
     "payment_intents.create", PG_OP_PAYMENT, PG_ACT_CREATE, 10, "usd", "cus_ABC", "customer", NULL,
     NULL},
    {"POST", "/v1/payment_intents/pi_3MtwBwLkdIwHu7ix28a3tqPa", FORM,
     "amount=3000&metadata[order_id]=6735", "payment_intents.update", PG_OP_PAYMENT, PG_ACT_UPDATE,
     3000, NULL, NULL, NULL, "pi_3MtwBwLkdIwHu7ix28a3tqPa", NULL},
    {"POST", "/v1/payment_intents/pi_1", FORM, "description=hello", "payment_intents.update",
     PG_OP_PAYMENT, PG_ACT_UPDATE, -1, NULL, NULL, NULL, "pi_1", NULL},
    {"POST", "/v1/payment_intents/pi_1/confirm", FORM,
     "payment_method=pm_card_visa&return_url=https%3A%2F%2Fshop.example%2Fdone",
     "payment_intents.confirm", PG_OP_PAYMENT, PG_ACT_CONFIRM, -1, NULL, NULL, NULL, "pi_1", NULL},
    {"POST", "/v1/payment_intents/pi_1/capture", FORM, "amount_to_capture=500",
     "payment_intents.capture", PG_OP_PAYMENT, PG_ACT_CAPTURE, 500, NULL, NULL, NULL, "pi_1", NULL},
    /* The SDK sends no body and no Content-Type when there are no params. */
    {"POST", "/v1/payment_intents/pi_1/capture", NULL, NULL, "payment_intents.capture",
     PG_OP_PAYMENT, PG_ACT_CAPTURE, -1, NULL, NULL, NULL, "pi_1", NULL},
    {"POST", "/v1/payment_intents/pi_1/cancel", FORM, "cancellation_reason=requested_by_customer",
     "payment_intents.cancel", PG_OP_PAYMENT, PG_ACT_CANCEL, -1, NULL, NULL, NULL, "pi_1", NULL},
    {"POST", "/v1/payment_intents/pi_1/increment_authorization", FORM, "amount=2500",
     "payment_intents.increment_authorization", PG_OP_PAYMENT, PG_ACT_INCREMENT, 2500, NULL, NULL,
     NULL, "pi_1", NULL},
    {"POST", "/v1/charges", FORM,
     "amount=999&currency=usd&source=tok_visa&destination[account]=acct_2&description=x",
     "charges.create", PG_OP_PAYMENT, PG_ACT_CREATE, 999, "usd", "acct_2", "destination[account]",
     NULL, NULL},
    {"POST", "/v1/charges", FORM,
     "amount=1&currency=usd&transfer_data[destination]=acct_4&destination=acct_3", "charges.create",
     PG_OP_PAYMENT, PG_ACT_CREATE, 1, "usd", "acct_3", "destination", NULL, NULL},
    {"POST", "/v1/charges/ch_1/capture", FORM, "amount=100", "charges.capture", PG_OP_PAYMENT,
     PG_ACT_CAPTURE, 100, NULL, NULL, NULL, "ch_1", NULL},
    {"POST", "/v1/refunds", FORM, "payment_intent=pi_5&amount=300&metadata[why]=late",
     "refunds.create", PG_OP_REFUND, PG_ACT_NONE, 300, NULL, NULL, NULL, "pi_5", NULL},
    {"POST", "/v1/refunds", FORM, "charge=ch_9&reason=duplicate", "refunds.create", PG_OP_REFUND,
     PG_ACT_NONE, -1, NULL, NULL, NULL, "ch_9", NULL},
    {"POST", "/v1/charges/ch_1/refunds", FORM, "amount=50&reason=duplicate",
     "charges.refunds.create", PG_OP_REFUND, PG_ACT_NONE, 50, NULL, NULL, NULL, "ch_1", NULL},
    {"POST", "/v1/transfers", FORM,
     "amount=400&currency=usd&destination=acct_77&transfer_group=ORDER_95", "transfers.create",
     PG_OP_TRANSFER, PG_ACT_CREATE, 400, "usd", "acct_77", "destination", NULL, NULL},
    {"POST", "/v1/payouts", FORM, "amount=5000&currency=usd", "payouts.create", PG_OP_PAYOUT,
     PG_ACT_CREATE, 5000, "usd", NULL, NULL, NULL, NULL},
    {"POST", "/v1/payouts", FORM, "amount=5000&currency=usd&destination=ba_1", "payouts.create",
     PG_OP_PAYOUT, PG_ACT_CREATE, 5000, "usd", "ba_1", "destination", NULL, NULL},
    {"POST", "/v1/payouts/po_1/cancel", NULL, NULL, "payouts.cancel", PG_OP_PAYOUT, PG_ACT_CANCEL,
     -1, NULL, NULL, NULL, "po_1", NULL},
    {"POST", "/v1/invoices/in_1/pay", NULL, NULL, "invoices.pay", PG_OP_PAYMENT, PG_ACT_CONFIRM, -1,
     NULL, NULL, NULL, "in_1", NULL},
    {"POST", "/v1/checkout/sessions", FORM,
     "mode=payment&success_url=https%3A%2F%2Fshop.example%2Fok"
     "&line_items[0][price_data][currency]=usd"
     "&line_items[0][price_data][product_data][name]=T-shirt"
     "&line_items[0][price_data][unit_amount]=2000&line_items[0][quantity]=2"
     "&line_items[1][price_data][currency]=USD"
     "&line_items[1][price_data][product_data][name]=Mug"
     "&line_items[1][price_data][unit_amount]=1500"
     "&payment_intent_data[transfer_data][destination]=acct_9",
     "checkout.sessions.create", PG_OP_PAYMENT, PG_ACT_CREATE, 5500, "usd", "acct_9",
     "payment_intent_data[transfer_data][destination]", NULL, NULL},
    /* Percent-encoded brackets in line items, items out of order. */
    {"POST", "/v1/checkout/sessions", FORM,
     "line_items%5B1%5D%5Bprice_data%5D%5Bunit_amount%5D=5&line_items%5B1%5D%5Bprice_data%5D%5B"
     "currency%5D=eur&line_items%5B0%5D%5Bprice_data%5D%5Bcurrency%5D=eur"
     "&line_items%5B0%5D%5Bprice_data%5D%5Bunit_amount%5D=10&mode=payment",
     "checkout.sessions.create", PG_OP_PAYMENT, PG_ACT_CREATE, 15, "eur", NULL, NULL, NULL, NULL},
    /* A price by id: payguard cannot know the amount. */
    {"POST", "/v1/checkout/sessions", FORM,
     "line_items[0][price]=price_1MotwRLkdIwHu7ixYcPLm5uZ&line_items[0][quantity]=1&mode=payment"
     "&line_items[1][price_data][currency]=usd&line_items[1][price_data][unit_amount]=100",
     "checkout.sessions.create", PG_OP_PAYMENT, PG_ACT_CREATE, -1, NULL, NULL, NULL, NULL, NULL},
    {"POST", "/v1/checkout/sessions", FORM,
     "currency=usd&line_items[0][price_data][currency]=usd"
     "&line_items[0][price_data][unit_amount_decimal]=10.5",
     "checkout.sessions.create", PG_OP_PAYMENT, PG_ACT_CREATE, -1, "usd", NULL, NULL, NULL, NULL},
    /* Setup mode: no line items, no amount, still a payment route. */
    {"POST", "/v1/checkout/sessions", FORM, "mode=setup&currency=usd&customer=cus_1",
     "checkout.sessions.create", PG_OP_PAYMENT, PG_ACT_CREATE, -1, "usd", "cus_1", "customer", NULL,
     NULL},
    /* "[]" items: a key the current item already has starts the next one. */
    {"POST", "/v1/checkout/sessions", FORM,
     "line_items[][price_data][unit_amount]=100&line_items[][price_data][currency]=usd"
     "&line_items[][quantity]=2&line_items[][tax_rates][]=txr_1&line_items[][tax_rates][]=txr_2"
     "&line_items[][price_data][unit_amount]=5&line_items[][price_data][currency]=usd",
     "checkout.sessions.create", PG_OP_PAYMENT, PG_ACT_CREATE, 205, "usd", NULL, NULL, NULL, NULL},
    {"POST", "/v1/checkout/sessions/cs_1/expire", NULL, NULL, "checkout.sessions.expire",
     PG_OP_PAYMENT, PG_ACT_CANCEL, -1, NULL, NULL, NULL, "cs_1", NULL},
    {"POST", "/v1/payment_links", FORM, "line_items[0][price]=price_1&line_items[0][quantity]=3",
     "payment_links.create", PG_OP_PAYMENT, PG_ACT_CREATE, -1, NULL, NULL, NULL, NULL, NULL},
    {"POST", "/v1/payment_links", FORM,
     "line_items[0][price_data][currency]=gbp&line_items[0][price_data][unit_amount]=250"
     "&line_items[0][quantity]=4&on_behalf_of=acct_L",
     "payment_links.create", PG_OP_PAYMENT, PG_ACT_CREATE, 1000, "gbp", "acct_L", "on_behalf_of",
     NULL, NULL},
    {"POST", "/v1/topups", FORM, "amount=10000&currency=usd&description=Top-up", "topups.create",
     PG_OP_PAYMENT, PG_ACT_CREATE, 10000, "usd", NULL, NULL, NULL, NULL},
    {"POST", "/v1/webhook_endpoints", FORM,
     "url=https%3A%2F%2Fhooks.example.com%2Fstripe&enabled_events[0]=charge.succeeded",
     "webhook_endpoints.create", PG_OP_CONFIG, PG_ACT_NONE, -1, NULL, NULL, NULL, NULL,
     "https://hooks.example.com/stripe"},
    {"POST", "/v1/webhook_endpoints/we_1", FORM, "url=https://a.example/x&disabled=false",
     "webhook_endpoints.update", PG_OP_CONFIG, PG_ACT_NONE, -1, NULL, NULL, NULL, "we_1",
     "https://a.example/x"},
};

static void stripe_money_routes_extract(void **state)
{
    (void)state;
    for (size_t i = 0; i < PG_ARRAY_LEN(stripe_money); i++)
        check_want(stripe, &stripe_money[i], i);
}

struct op_case {
    const char *method, *target;
    int op; /* -1: unmatched */
    const char *route;
};

static const struct op_case stripe_ops[] = {
    {"DELETE", "/v1/webhook_endpoints/we_1", PG_OP_FORBIDDEN, "webhook_endpoints.delete"},
    {"POST", "/v1/api_keys", PG_OP_FORBIDDEN, "api_keys"},
    {"GET", "/v1/api_keys/rk_1", PG_OP_FORBIDDEN, "api_keys"},
    {"DELETE", "/v1/api_keys/rk_1/x", PG_OP_FORBIDDEN, "api_keys"},
    {"GET", "/v1/apps/secrets/find", PG_OP_FORBIDDEN, "apps.secrets"},
    {"POST", "/v1/accounts/acct_1/reject", PG_OP_FORBIDDEN, "accounts.reject"},
    {"DELETE", "/v1/accounts/acct_1", PG_OP_FORBIDDEN, "accounts.delete"},
    {"POST", "/v1/accounts/acct_1/login_links", PG_OP_FORBIDDEN, "accounts.login_links"},
    {"POST", "/v1/accounts/acct_1/external_accounts", PG_OP_FORBIDDEN,
     "accounts.external_accounts"},
    {"POST", "/v1/accounts/acct_1/external_accounts/ba_1", PG_OP_FORBIDDEN,
     "accounts.external_accounts"},
    {"DELETE", "/v1/accounts/acct_1/external_accounts/ba_1", PG_OP_FORBIDDEN,
     "accounts.external_accounts.delete"},
    {"GET", "/v1/charges", PG_OP_READ, "read"},
    {"GET", "/v1/payment_intents/pi_1", PG_OP_READ, "read"},
    {"GET", "/v1/payment_intents/search", PG_OP_READ, "read"},
    {"GET", "/v1", PG_OP_READ, "read"},
    {"POST", "/v1/customers", PG_OP_READ, "customers.create"},
    {"POST", "/v1/customers/cus_1", PG_OP_READ, "customers.update"},
    {"POST", "/v1/payment_methods", PG_OP_READ, "payment_methods"},
    {"POST", "/v1/payment_methods/pm_1/attach", PG_OP_READ, "payment_methods"},
    {"POST", "/v1/setup_intents/seti_1/confirm", PG_OP_READ, "setup_intents"},
    {"POST", "/v1/products", PG_OP_READ, "products"},
    {"POST", "/v1/prices/price_1", PG_OP_READ, "prices"},
    /* Everything else is unmatched: the rail's `unmatched:` decides. */
    {"POST", "/v1/subscriptions", -1, NULL},
    {"DELETE", "/v1/customers/cus_1", -1, NULL},
    {"POST", "/v1/accounts/acct_1", -1, NULL},
    {"GET", "/v2/core/events", -1, NULL},
    {"GET", "/", -1, NULL},
    {"HEAD", "/v1/charges", -1, NULL},
    {"PUT", "/v1/payment_intents", -1, NULL},
    /* Matching is case-sensitive: these are other paths to payguard. */
    {"POST", "/V1/PAYMENT_INTENTS", -1, NULL},
    {"POST", "/v1/Payment_intents", -1, NULL},
    {"post", "/v1/payment_intents", -1, NULL},
};

static void stripe_other_routes_classify(void **state)
{
    (void)state;
    for (size_t i = 0; i < PG_ARRAY_LEN(stripe_ops); i++) {
        const struct op_case *c = &stripe_ops[i];
        int rc = classify(stripe, c->method, c->target, FORM, "");
        if (rc != 0)
            fail_msg("%s %s: rc %d %s", c->method, c->target, rc, bad.message);
        if (c->op < 0) {
            if (in.matched)
                fail_msg("%s %s: matched %s, want unmatched", c->method, c->target, in.route);
            continue;
        }
        if (!in.matched || (int)in.op != c->op || strcmp(in.route, c->route) != 0)
            fail_msg("%s %s: %s %s, want %s %s", c->method, c->target,
                     in.matched ? pg_op_name(in.op) : "unmatched", in.matched ? in.route : "",
                     pg_op_name((enum pg_op)c->op), c->route);
        assert_false(in.has_amount);
    }
}

/* A read or forbidden route reads no body, however odd it is. */
static void bodies_of_routes_without_fields_are_not_read(void **state)
{
    (void)state;
    assert_int_equal(classify(stripe, "POST", "/v1/customers", JSON, "{\"amount\":"), 0);
    assert_int_equal(in.op, PG_OP_READ);
    assert_int_equal(classify(stripe, "POST", "/v1/api_keys", FORM, "amount=1&amount=2"), 0);
    assert_int_equal(in.op, PG_OP_FORBIDDEN);
    /* A confirm carries no amount, so its body is not parsed either. */
    assert_int_equal(classify(stripe, "POST", "/v1/payment_intents/pi_1/confirm", FORM, "a=%"), 0);
    assert_int_equal(in.action, PG_ACT_CONFIRM);
}

/* --- refusals --------------------------------------------------------------- */

static void malformed_amounts_are_refused(void **state)
{
    (void)state;
    static const char *const amounts[] = {"12.5", "-1",  "1e3",  "%2B1",
                                          "+1",   "",    "0x10", "1%2C000",
                                          "01",   "1 0", "abc",  "99999999999999999999"};
    char body[128];
    for (size_t i = 0; i < PG_ARRAY_LEN(amounts); i++) {
        snprintf(body, sizeof body, "amount=%s&currency=usd", amounts[i]);
        int rc = classify(stripe, "POST", "/v1/payment_intents", FORM, body);
        expect_bad_(rc, "invalid_amount", "amount", amounts[i]);
    }
    /* A key with no '=' has an empty value. */
    expect_bad(classify(stripe, "POST", "/v1/payment_intents", FORM, "amount&currency=usd"),
               "invalid_amount", "amount");
    expect_bad(classify(stripe, "POST", "/v1/payment_intents/pi_1/capture", FORM,
                        "amount_to_capture=1.00"),
               "invalid_amount", "amount_to_capture");
    expect_bad(classify(stripe, "POST", "/v1/refunds", FORM, "charge=ch_1&amount=-5"),
               "invalid_amount", "amount");
}

static void currencies_must_be_known(void **state)
{
    (void)state;
    static const char *const bad_codes[] = {"xyz", "us", "usdd", "", "u%73", "xau", "12%33"};
    char body[64];
    for (size_t i = 0; i < PG_ARRAY_LEN(bad_codes); i++) {
        snprintf(body, sizeof body, "amount=100&currency=%s", bad_codes[i]);
        int rc = classify(stripe, "POST", "/v1/charges", FORM, body);
        expect_bad_(rc, "invalid_currency", "currency", bad_codes[i]);
    }
    assert_int_equal(classify(stripe, "POST", "/v1/charges", FORM, "amount=100&currency=KWD"), 0);
    assert_string_equal(in.currency, "kwd");
}

static void create_routes_need_amount_and_currency(void **state)
{
    (void)state;
    expect_bad(classify(stripe, "POST", "/v1/payment_intents", FORM, "currency=usd&customer=c"),
               "missing_amount", "amount");
    expect_bad(classify(stripe, "POST", "/v1/payment_intents", FORM, "amount=100"),
               "missing_currency", "currency");
    expect_bad(classify(stripe, "POST", "/v1/payment_intents", NULL, NULL), "missing_amount",
               "amount");
    expect_bad(classify(stripe, "POST", "/v1/charges", FORM, "currency=usd"), "missing_amount",
               "amount");
    expect_bad(classify(stripe, "POST", "/v1/transfers", FORM, "amount=1&destination=acct_1"),
               "missing_currency", "currency");
    expect_bad(classify(stripe, "POST", "/v1/payouts", FORM, "currency=usd"), "missing_amount",
               "amount");
    expect_bad(classify(stripe, "POST", "/v1/topups", FORM, "currency=usd"), "missing_amount",
               "amount");
    expect_bad(classify(stripe, "POST", "/v1/payment_intents/pi_1/increment_authorization", FORM,
                        "description=more"),
               "missing_amount", "amount");
    expect_bad(classify(stripe, "POST", "/v1/transfers", FORM, "amount=1&currency=usd"),
               "missing_counterparty", "destination");
    expect_bad(
        classify(stripe, "POST", "/v1/transfers", FORM, "amount=1&currency=usd&destination="),
        "missing_counterparty", "destination");
    /* Refunds without an amount refund in full: fine. */
    assert_int_equal(classify(stripe, "POST", "/v1/refunds", FORM, "payment_intent=pi_1"), 0);
    assert_false(in.has_amount);
}

static void duplicate_fields_are_refused(void **state)
{
    (void)state;
    static const struct {
        const char *body, *param;
    } dups[] = {
        {"amount=100&currency=usd&amount=100000", "amount"},
        {"amount=100&currency=usd&%61mount=100000", "amount"},
        {"am%6Funt=1&currency=usd&amount=2", "amount"},
        {"amount=1&currency=usd&currency=eur", "currency"},
        {"amount=1&currency=usd&transfer_data[destination]=acct_1"
         "&transfer_data%5Bdestination%5D=acct_2",
         "transfer_data[destination]"},
        {"amount=1&currency=usd&customer=cus_1&customer=cus_2", "customer"},
    };
    for (size_t i = 0; i < PG_ARRAY_LEN(dups); i++) {
        int rc = classify(stripe, "POST", "/v1/payment_intents", FORM, dups[i].body);
        expect_bad_(rc, "duplicate_field", dups[i].param, dups[i].body);
    }
    expect_bad(classify(stripe, "POST", "/v1/refunds", FORM, "charge=ch_1&charge=ch_2"),
               "duplicate_field", "charge");
    expect_bad(classify(stripe, "POST", "/v1/webhook_endpoints", FORM,
                        "url=https://a.example&url=http://169.254.169.254/"),
               "duplicate_field", "url");
    expect_bad(classify(stripe, "POST", "/v1/checkout/sessions", FORM,
                        "line_items[0][price_data][currency]=usd"
                        "&line_items[0][price_data][unit_amount]=1"
                        "&line_items%5B0%5D%5Bprice_data%5D%5Bunit_amount%5D=1000"),
               "duplicate_field", "line_items");
    expect_bad(classify(stripe, "POST", "/v1/checkout/sessions", FORM,
                        "line_items[0][price]=p_1&line_items[0][quantity]=1"
                        "&line_items[0][quantity]=100"),
               "duplicate_field", "line_items");
    /* Fields the route does not read may repeat (arrays, metadata). */
    assert_int_equal(classify(stripe, "POST", "/v1/payment_intents", FORM,
                              "amount=1&currency=usd&expand[]=a&expand[]=b&metadata[k]=1"
                              "&metadata[k]=2"),
                     0);
}

static void malformed_encodings_are_refused(void **state)
{
    (void)state;
    static const char *const bodies[] = {
        "amount=100&currency=usd&metadata[x]=%ZZ",
        "amount=10%&currency=usd",
        "amount=1%4&currency=usd",
        "amount=100&currency=usd&%4=x",
        "amount=100&currency=usd&metadata[a]=1;amount=999999",
        "amount=100&currency=usd&amount%00=5",
        "amount=100&currency=usd&customer=cus_1%00evil",
        "amount=100&currency=usd&customer=cus%0A1",
    };
    for (size_t i = 0; i < PG_ARRAY_LEN(bodies); i++) {
        int rc = classify(stripe, "POST", "/v1/payment_intents", FORM, bodies[i]);
        expect_bad_(rc, "malformed_body", NULL, bodies[i]);
    }
    /* An encoded value is decoded into the intent's 4 KiB scratch: 5000
     * decoded bytes do not fit. */
    static char body[16 * 1024];
    size_t o = 0;
    o += (size_t)snprintf(body + o, sizeof body - o, "amount=1&currency=usd&customer=");
    for (int i = 0; i < 5000; i++)
        o += (size_t)snprintf(body + o, sizeof body - o, "%%41");
    expect_bad(classify(stripe, "POST", "/v1/payment_intents", FORM, body), "field_too_long",
               "customer");
    /* Unencoded, the same value is a slice of the body and fits. */
    o = (size_t)snprintf(body, sizeof body, "amount=1&currency=usd&customer=");
    memset(body + o, 'A', 5000);
    body[o + 5000] = '\0';
    assert_int_equal(classify(stripe, "POST", "/v1/payment_intents", FORM, body), 0);
    assert_int_equal(in.counterparty.len, 5000);
}

static void content_types_are_checked(void **state)
{
    (void)state;
    const char *body = "amount=1&currency=usd";
    expect_bad(classify(stripe, "POST", "/v1/payment_intents", JSON, body),
               "unsupported_content_type", NULL);
    expect_bad(
        classify(stripe, "POST", "/v1/payment_intents", "multipart/form-data; boundary=x", body),
        "unsupported_content_type", NULL);
    expect_bad(classify(stripe, "POST", "/v1/payment_intents", NULL, body),
               "unsupported_content_type", NULL);
    expect_bad(classify(stripe, "POST", "/v1/payment_intents", FORM "; charset=utf-16", body),
               "unsupported_content_type", NULL);
    assert_int_equal(classify(stripe, "POST", "/v1/payment_intents",
                              "Application/X-WWW-Form-Urlencoded ; Charset=UTF-8", body),
                     0);
    assert_int_equal(in.amount, 1);
    /* Nothing can hide in an empty body. */
    assert_int_equal(classify(stripe, "POST", "/v1/payment_intents/pi_1/capture", JSON, ""), 0);
    assert_int_equal(in.action, PG_ACT_CAPTURE);
    assert_int_equal(classify(adyen, "POST", "/v71/payments/P1/reversals", FORM, ""), 0);
    assert_int_equal(in.op, PG_OP_REFUND);
}

static void query_strings_on_money_posts_are_refused(void **state)
{
    (void)state;
    expect_bad(classify(stripe, "POST", "/v1/payment_intents?amount=1", FORM,
                        "amount=100000&currency=usd"),
               "query_on_money_route", NULL);
    expect_bad(classify(stripe, "POST", "/v1/payment_intents?", FORM, "amount=1&currency=usd"),
               "query_on_money_route", NULL);
    expect_bad(classify(stripe, "POST", "/v1/payment_intents/pi_1/confirm?expand[]=x", NULL, NULL),
               "query_on_money_route", NULL);
    expect_bad(classify(stripe, "POST", "/v1/refunds?charge=ch_2", FORM, "charge=ch_1"),
               "query_on_money_route", NULL);
    expect_bad(classify(stripe, "POST", "/v1/webhook_endpoints?url=http://10.0.0.1/", FORM,
                        "url=https://a.example/"),
               "query_on_config_route", NULL);
    /* Reads may have queries. */
    assert_int_equal(
        classify(stripe, "GET", "/v1/charges?limit=3&expand[]=data.customer", NULL, NULL), 0);
    assert_int_equal(in.op, PG_OP_READ);
    assert_int_equal(classify(stripe, "POST", "/v1/customers?expand[]=x", FORM, "email=a"), 0);
}

static void path_hygiene_comes_first(void **state)
{
    (void)state;
    static const char *const paths[] = {
        "//v1/payment_intents",
        "/v1//payment_intents",
        "/v1/./payment_intents",
        "/v1/../v1/payment_intents",
        "/v1/payment_intents/..",
        "/v1/payment_intents/",
        "/v1/payment_intents/pi_1/confirm/",
        "/v1/payment_intents%2Fpi_1",
        "/v1/payment_%69ntents",
        "/v1/payment_intents/pi_1%2F..%2Fcancel",
        "v1/payment_intents",
        "*",
        "",
        "/v1/payment intents",
        "/v1/payment_intents#x",
        "/v1/payment_intents;x=1",
        "/v1/payment_intents\\pi_1",
        "/v1/payment_intents/pi_\xc3\xa9",
        "/v1/payment_intents/pi_1\t",
    };
    for (size_t i = 0; i < PG_ARRAY_LEN(paths); i++) {
        int rc = classify(stripe, "POST", paths[i], FORM, "amount=1&currency=usd");
        expect_bad_(rc, "bad_path", NULL, paths[i]);
        assert_false(in.matched);
    }
    /* Every request, reads too, on any rail. */
    expect_bad(classify(stripe, "GET", "/v1/charges/", NULL, NULL), "bad_path", NULL);
    expect_bad(classify(generic, "GET", "/a/%41", NULL, NULL), "bad_path", NULL);
    expect_bad(classify(adyen, "GET", "/v71//payments", NULL, NULL), "bad_path", NULL);
    /* 64 segments are fine, 65 are not. */
    char deep[3 * 66 + 1];
    size_t o = 0;
    for (int i = 0; i < 64; i++)
        o += (size_t)snprintf(deep + o, sizeof deep - o, "/%s", i == 0 ? "v1" : "a");
    assert_int_equal(classify(stripe, "GET", deep, NULL, NULL), 0);
    assert_true(in.matched);
    o += (size_t)snprintf(deep + o, sizeof deep - o, "/a");
    expect_bad(classify(stripe, "GET", deep, NULL, NULL), "bad_path", NULL);
    /* Odd but canonical: '~', '-', '.', "..." and a query are fine. */
    assert_int_equal(classify(stripe, "GET", "/v1/x~y/a-b/c.d/.../e_f?q=%2F", NULL, NULL), 0);
    assert_true(in.matched);
}

static void line_item_sums_are_checked(void **state)
{
    (void)state;
    static const struct {
        const char *body, *reason;
    } cases[] = {
        {"line_items[0][price_data][currency]=usd"
         "&line_items[0][price_data][unit_amount]=9223372036854775807&line_items[0][quantity]=2",
         "amount_overflow"},
        {"line_items[0][price_data][currency]=usd"
         "&line_items[0][price_data][unit_amount]=9223372036854775807"
         "&line_items[1][price_data][currency]=usd&line_items[1][price_data][unit_amount]=1",
         "amount_overflow"},
        {"line_items[0][price_data][currency]=usd&line_items[0][price_data][unit_amount]=1"
         "&line_items[1][price_data][currency]=eur&line_items[1][price_data][unit_amount]=1",
         "mixed_currencies"},
        {"line_items[0][price_data][unit_amount]=1&line_items[0][quantity]=1", "missing_currency"},
        {"line_items[0][price_data][currency]=usd&line_items[0][price_data][unit_amount]=1.5",
         "invalid_amount"},
        {"line_items[0][price_data][currency]=usd&line_items[0][price_data][unit_amount]=1"
         "&line_items[0][quantity]=-2",
         "invalid_quantity"},
        {"line_items[0][price_data][currency]=zzz&line_items[0][price_data][unit_amount]=1",
         "invalid_currency"},
        {"line_items[00][price]=p_1", "malformed_body"},
        {"line_items[x][price]=p_1", "malformed_body"},
        {"line_items[0]=p_1", "malformed_body"},
        {"line_items=p_1", "malformed_body"},
        {"line_items[0][price]=p_1&line_items[][price]=p_2", "malformed_body"},
        {"line_items[100][price]=p_1", "too_many_line_items"},
        {"line_items[99999999999999999999999][price]=p_1", "too_many_line_items"},
    };
    for (size_t i = 0; i < PG_ARRAY_LEN(cases); i++) {
        int rc = classify(stripe, "POST", "/v1/checkout/sessions", FORM, cases[i].body);
        expect_bad_(rc, cases[i].reason, "line_items", cases[i].body);
    }
    expect_bad(classify(stripe, "POST", "/v1/checkout/sessions", FORM,
                        "currency=eur&line_items[0][price_data][currency]=usd"
                        "&line_items[0][price_data][unit_amount]=1"),
               "mixed_currencies", "currency");
    /* 100 appended items are fine, the 101st is not. */
    static char body[8192];
    size_t o = 0;
    for (int i = 0; i < 100; i++)
        o += (size_t)snprintf(body + o, sizeof body - o, "%sline_items[][price]=p", i ? "&" : "");
    assert_int_equal(classify(stripe, "POST", "/v1/checkout/sessions", FORM, body), 0);
    assert_false(in.has_amount);
    snprintf(body + o, sizeof body - o, "&line_items[][price]=p");
    expect_bad(classify(stripe, "POST", "/v1/checkout/sessions", FORM, body), "too_many_line_items",
               "line_items");
    /* Sparse indexes are items too; a big but exact sum is kept. */
    assert_int_equal(classify(stripe, "POST", "/v1/checkout/sessions", FORM,
                              "line_items[7][price_data][currency]=usd"
                              "&line_items[7][price_data][unit_amount]=4611686018427387903"
                              "&line_items[7][quantity]=2"),
                     0);
    assert_true(in.has_amount);
    assert_true(in.amount == INT64_MAX - 1);
}

/* --- adyen ------------------------------------------------------------------ */

static const struct want adyen_money[] = {
    {"POST", "/v71/payments", JSON,
     "{\"amount\":{\"currency\":\"EUR\",\"value\":1000},\"reference\":\"r1\","
     "\"paymentMethod\":{\"type\":\"scheme\",\"encryptedCardNumber\":\"x\"},"
     "\"merchantAccount\":\"AcmeCOM\",\"returnUrl\":\"https://shop.example/r\"}",
     "payments.create", PG_OP_PAYMENT, PG_ACT_CREATE, 1000, "eur", "AcmeCOM", "/merchantAccount",
     NULL, NULL},
    {"POST", "/v71/payments/details", JSON, "{\"details\":{\"redirectResult\":\"X\"}}",
     "payments.details", PG_OP_PAYMENT, PG_ACT_CONFIRM, -1, NULL, NULL, NULL, NULL, NULL},
    {"POST", "/v71/payments/PSP123/captures", JSON,
     "{\"merchantAccount\":\"A\",\"amount\":{\"value\":500,\"currency\":\"EUR\"}}",
     "payments.captures", PG_OP_PAYMENT, PG_ACT_CAPTURE, 500, "eur", "A", "/merchantAccount",
     "PSP123", NULL},
    {"POST", "/v70/payments/PSP123/cancels", JSON, "{\"merchantAccount\":\"A\"}",
     "payments.cancels", PG_OP_PAYMENT, PG_ACT_CANCEL, -1, NULL, "A", "/merchantAccount", "PSP123",
     NULL},
    {"POST", "/v71/cancels", JSON, "{\"merchantAccount\":\"A\",\"paymentReference\":\"ref9\"}",
     "cancels", PG_OP_PAYMENT, PG_ACT_CANCEL, -1, NULL, "A", "/merchantAccount", "ref9", NULL},
    {"POST", "/v71/payments/PSP1/amountUpdates", JSON,
     "{\"merchantAccount\":\"A\",\"amount\":{\"value\":2500,\"currency\":\"USD\"}}",
     "payments.amount_updates", PG_OP_PAYMENT, PG_ACT_INCREMENT, 2500, "usd", "A",
     "/merchantAccount", "PSP1", NULL},
    {"POST", "/v71/payments/PSP1/refunds", JSON,
     "{\"merchantAccount\":\"A\",\"amount\":{\"value\":300,\"currency\":\"EUR\"}}",
     "payments.refunds", PG_OP_REFUND, PG_ACT_NONE, 300, "eur", "A", "/merchantAccount", "PSP1",
     NULL},
    {"POST", "/v71/payments/PSP1/reversals", JSON, "{\"merchantAccount\":\"A\"}",
     "payments.reversals", PG_OP_REFUND, PG_ACT_NONE, -1, NULL, "A", "/merchantAccount", "PSP1",
     NULL},
    {"POST", "/v71/sessions", JSON,
     "{\"amount\":{\"value\":100,\"currency\":\"JPY\"},\"merchantAccount\":\"A\"}",
     "sessions.create", PG_OP_PAYMENT, PG_ACT_CREATE, 100, "jpy", "A", "/merchantAccount", NULL,
     NULL},
    {"POST", "/v71/payouts", JSON,
     "{\"amount\":{\"value\":800,\"currency\":\"EUR\"},\"merchantAccount\":\"A\"}",
     "payouts.create", PG_OP_PAYOUT, PG_ACT_CREATE, 800, "eur", "A", "/merchantAccount", NULL,
     NULL},
    {"POST", "/pal/servlet/Payout/v68/payout", JSON,
     "{\"amount\":{\"value\":900,\"currency\":\"EUR\"},\"merchantAccount\":\"A\"}", "pal.payout",
     PG_OP_PAYOUT, PG_ACT_CREATE, 900, "eur", "A", "/merchantAccount", NULL, NULL},
    {"POST", "/pal/servlet/Payment/v68/capture", JSON,
     "{\"merchantAccount\":\"A\",\"modificationAmount\":{\"value\":10,\"currency\":\"EUR\"},"
     "\"originalReference\":\"PSP77\"}",
     "pal.capture", PG_OP_PAYMENT, PG_ACT_CAPTURE, 10, "eur", "A", "/merchantAccount", "PSP77",
     NULL},
    {"POST", "/pal/servlet/Payment/v68/refund", JSON,
     "{\"merchantAccount\":\"A\",\"modificationAmount\":{\"value\":0,\"currency\":\"EUR\"},"
     "\"originalReference\":\"PSP77\"}",
     "pal.refund", PG_OP_REFUND, PG_ACT_NONE, 0, "eur", "A", "/merchantAccount", "PSP77", NULL},
    /* null reads as absent. */
    {"POST", "/v71/payments/PSP1/refunds", JSON,
     "{\"merchantAccount\":null,\"amount\":{\"value\":null}}", "payments.refunds", PG_OP_REFUND,
     PG_ACT_NONE, -1, NULL, NULL, NULL, "PSP1", NULL},
    {"POST", "/v3/merchants/M1/webhooks", JSON,
     "{\"url\":\"https://hooks.example/x\",\"type\":\"standard\",\"active\":true}",
     "merchant_webhooks.create", PG_OP_CONFIG, PG_ACT_NONE, -1, NULL, NULL, NULL, NULL,
     "https://hooks.example/x"},
    {"PATCH", "/v3/companies/C1/webhooks/W1", JSON "; charset=utf-8",
     "{\"url\":\"https://hooks.example/\\u0079\"}", "company_webhooks.update", PG_OP_CONFIG,
     PG_ACT_NONE, -1, NULL, NULL, NULL, "W1", "https://hooks.example/y"},
};

static void adyen_routes_extract(void **state)
{
    (void)state;
    for (size_t i = 0; i < PG_ARRAY_LEN(adyen_money); i++)
        check_want(adyen, &adyen_money[i], i);
    assert_int_equal(classify(adyen, "GET", "/v71/paymentLinks/PL1", NULL, NULL), 0);
    assert_int_equal(in.op, PG_OP_READ);
    assert_int_equal(classify(adyen, "POST", "/v71/paymentMethods", JSON, "{}"), 0);
    assert_int_equal(in.op, PG_OP_READ);
    assert_int_equal(classify(adyen, "DELETE", "/v3/merchants/M1/webhooks/W1", NULL, NULL), 0);
    assert_int_equal(in.op, PG_OP_FORBIDDEN);
    assert_int_equal(classify(adyen, "POST", "/v3/companies/C1/apiCredentials", JSON, "{}"), 0);
    assert_int_equal(in.op, PG_OP_FORBIDDEN);
    assert_int_equal(
        classify(adyen, "POST", "/v3/merchants/M1/apiCredentials/K1/generateApiKey", NULL, NULL),
        0);
    assert_int_equal(in.op, PG_OP_FORBIDDEN);
    assert_int_equal(classify(adyen, "POST", "/v71/orders", JSON, "{}"), 0);
    assert_false(in.matched);
}

static void adyen_bodies_are_checked(void **state)
{
    (void)state;
    static const struct {
        const char *body, *reason, *param;
    } cases[] = {
        {"{\"amount\":{\"value\":1,\"value\":100000,\"currency\":\"EUR\"},\"merchantAccount\":"
         "\"A\"}",
         "duplicate_field", NULL},
        {"{\"merchantAccount\":\"A\",\"amount\":{\"value\":1,\"currency\":\"EUR\"},"
         "\"merchantAccount\":\"B\"}",
         "duplicate_field", NULL},
        {"{\"amount\":{\"value\":\"1000\",\"currency\":\"EUR\"}}", "invalid_amount",
         "/amount/value"},
        {"{\"amount\":{\"value\":10.5,\"currency\":\"EUR\"}}", "invalid_amount", "/amount/value"},
        {"{\"amount\":{\"value\":1e3,\"currency\":\"EUR\"}}", "invalid_amount", "/amount/value"},
        {"{\"amount\":{\"value\":1000.0,\"currency\":\"EUR\"}}", "invalid_amount", "/amount/value"},
        {"{\"amount\":{\"value\":-5,\"currency\":\"EUR\"}}", "invalid_amount", "/amount/value"},
        {"{\"amount\":{\"value\":true,\"currency\":\"EUR\"}}", "invalid_amount", "/amount/value"},
        {"{\"amount\":{\"value\":99999999999999999999,\"currency\":\"EUR\"}}", "malformed_body",
         NULL},
        {"{\"amount\":{\"value\":100,\"currency\":\"ZZZ\"}}", "invalid_currency",
         "/amount/currency"},
        {"{\"amount\":{\"value\":100,\"currency\":978}}", "invalid_field", "/amount/currency"},
        {"{\"amount\":{\"currency\":\"EUR\"}}", "missing_amount", "/amount/value"},
        {"{\"amount\":{\"value\":100}}", "missing_currency", "/amount/currency"},
        {"{\"amount\":100}", "missing_amount", "/amount/value"},
        {"{}", "missing_amount", "/amount/value"},
        {"{\"amount\":{\"value\":1,\"currency\":\"EUR\"},\"merchantAccount\":7}", "invalid_field",
         "/merchantAccount"},
        {"{\"amount\":{\"value\":1,\"currency\":\"EUR\"},\"merchantAccount\":\"A\\u0000B\"}",
         "malformed_body", NULL},
        {"{\"amount\":{\"value\":1,\"currency\":\"EUR\"},\"merchantAccount\":\"A\\nB\"}",
         "malformed_body", "/merchantAccount"},
        {"{\"amount\":{\"value\":1,\"currency\":\"EUR\"}} x", "malformed_body", NULL},
        {"[{\"amount\":{\"value\":1,\"currency\":\"EUR\"}}]", "malformed_body", NULL},
        {"{\"amount\":", "malformed_body", NULL},
    };
    for (size_t i = 0; i < PG_ARRAY_LEN(cases); i++) {
        int rc = classify(adyen, "POST", "/v71/payments", JSON, cases[i].body);
        expect_bad_(rc, cases[i].reason, cases[i].param, cases[i].body);
    }
    expect_bad(classify(adyen, "POST", "/v71/payments", FORM, "amount[value]=1"),
               "unsupported_content_type", NULL);
    expect_bad(classify(adyen, "POST", "/v71/payments", NULL, "{}"), "unsupported_content_type",
               NULL);
    expect_bad(classify(adyen, "POST", "/v71/payments?x=1", JSON, "{}"), "query_on_money_route",
               NULL);
    expect_bad(classify(adyen, "POST", "/v71/payments", NULL, NULL), "missing_amount",
               "/amount/value");
}

/* --- payguard.yaml routes ------------------------------------------------- */

static char *list1[] = {"metadata[merchant]"};
static char *payee[] = {"payee", "beneficiary[account]"};
static char *hook[] = {"callback_url"};

static void user_routes_override_and_extend_a_preset(void **state)
{
    (void)state;
    struct pg_route_spec specs[] = {
        /* Forbid confirming through the agent: a human confirms. */
        {.name = "no_confirm",
         .method = "POST",
         .path = "/v1/payment_intents/{pi}/confirm",
         .operation = "forbidden"},
        /* Same route, another counterparty: the preset's amount stays. */
        {.name = "pi_create",
         .method = "POST",
         .path = "/v1/payment_intents",
         .operation = "payment",
         .counterparty = list1,
         .ncounterparty = 1},
        /* Charges become reads: the body is not even looked at. */
        {.name = "charges_read", .method = "POST", .path = "/v1/charges", .operation = "read"},
        /* New routes. */
        {.method = "POST",
         .path = "/v1/credit_notes",
         .operation = "refund",
         .amount = "amount",
         .currency = "currency"},
        {.name = "balance_hidden",
         .method = "GET",
         .path = "/v1/balance",
         .operation = "forbidden"},
        {.name = "hooks",
         .method = "POST",
         .path = "/v1/things/{id}/hooks",
         .operation = "config",
         .urls = hook,
         .nurls = 1},
        /* A placeholder where the preset has a literal still beats its
         * catch-all: a route written for a path is meant for that path. */
        {.name = "secrets",
         .method = "GET",
         .path = "/{version}/secret_reports/{id}",
         .operation = "forbidden"},
    };
    struct pg_rail rail = {.name = "stripe",
                           .preset = PG_PRESET_STRIPE,
                           .routes = specs,
                           .nroutes = PG_ARRAY_LEN(specs)};
    struct pg_routes *t = build(&rail);

    assert_int_equal(classify(t, "POST", "/v1/payment_intents/pi_1/confirm", NULL, NULL), 0);
    assert_int_equal(in.op, PG_OP_FORBIDDEN);
    assert_string_equal(in.route, "no_confirm");
    assert_true(slice_is(in.object_id, "pi_1"));

    assert_int_equal(classify(t, "POST", "/v1/payment_intents", FORM,
                              "amount=10&currency=usd&customer=cus_1&metadata[merchant]=m_7"),
                     0);
    assert_string_equal(in.route, "pi_create");
    assert_int_equal(in.action, PG_ACT_CREATE);
    assert_int_equal(in.amount, 10);
    assert_true(slice_is(in.counterparty, "m_7"));
    assert_string_equal(in.counterparty_field, "metadata[merchant]");
    expect_bad(classify(t, "POST", "/v1/payment_intents", FORM, "currency=usd"), "missing_amount",
               "amount");

    assert_int_equal(classify(t, "POST", "/v1/charges", FORM, "amount=-1&amount=x"), 0);
    assert_int_equal(in.op, PG_OP_READ);
    assert_false(in.has_amount);

    assert_int_equal(classify(t, "POST", "/v1/credit_notes", FORM, "amount=5&currency=usd"), 0);
    assert_int_equal(in.op, PG_OP_REFUND);
    assert_string_equal(in.route, "POST /v1/credit_notes");
    assert_int_equal(in.amount, 5);
    expect_bad(classify(t, "POST", "/v1/credit_notes", FORM, "currency=usd"), "missing_amount",
               "amount");
    expect_bad(classify(t, "POST", "/v1/credit_notes?x", FORM, "amount=5&currency=usd"),
               "query_on_money_route", NULL);

    /* More specific than the preset's catch-all GET under /v1. */
    assert_int_equal(classify(t, "GET", "/v1/balance", NULL, NULL), 0);
    assert_int_equal(in.op, PG_OP_FORBIDDEN);
    assert_int_equal(classify(t, "GET", "/v1/balance_transactions", NULL, NULL), 0);
    assert_int_equal(in.op, PG_OP_READ);
    assert_int_equal(classify(t, "GET", "/v1/secret_reports/sr_1", NULL, NULL), 0);
    assert_int_equal(in.op, PG_OP_FORBIDDEN);
    assert_string_equal(in.route, "secrets");
    assert_true(slice_is(in.object_id, "sr_1"));

    assert_int_equal(classify(t, "POST", "/v1/things/t_1/hooks", FORM,
                              "callback_url=https%3A%2F%2Fx.example%2F"),
                     0);
    assert_int_equal(in.op, PG_OP_CONFIG);
    assert_int_equal(in.nurls, 1);
    assert_string_equal(in.urls[0].field, "callback_url");
    assert_true(slice_is(in.urls[0].url, "https://x.example/"));

    /* The rest of the preset is untouched. */
    assert_int_equal(
        classify(t, "POST", "/v1/transfers", FORM, "amount=1&currency=usd&destination=acct_1"), 0);
    assert_string_equal(in.route, "transfers.create");
    pg_routes_free(t);
}

static void generic_rails_have_only_their_routes(void **state)
{
    (void)state;
    /* No routes at all: nothing matches, not even a GET. */
    assert_int_equal(classify(generic, "GET", "/v1/accounts", NULL, NULL), 0);
    assert_false(in.matched);
    assert_int_equal(classify(generic, "POST", "/pay", FORM, "amount=1"), 0);
    assert_false(in.matched);

    struct pg_route_spec specs[] = {
        {.name = "pay",
         .method = "POST",
         .path = "/v2/things/{id}/pay",
         .operation = "payment",
         .amount = "amount",
         .currency = "currency",
         .counterparty = payee,
         .ncounterparty = 2},
        {.name = "list", .method = "GET", .path = "/v2/things", .operation = "read"},
        {.name = "get_pay",
         .method = "GET",
         .path = "/v2/quick/{id}",
         .operation = "payout",
         .amount = "amount",
         .currency = "currency"},
    };
    struct pg_rail rail = {.name = "bank",
                           .preset = PG_PRESET_GENERIC,
                           .routes = specs,
                           .nroutes = PG_ARRAY_LEN(specs)};
    struct pg_routes *t = build(&rail);
    assert_int_equal(classify(t, "POST", "/v2/things/th_1/pay", FORM,
                              "amount=250&currency=chf&beneficiary%5Baccount%5D=CH93"),
                     0);
    assert_true(in.matched);
    assert_int_equal(in.op, PG_OP_PAYMENT);
    assert_int_equal(in.action, PG_ACT_NONE);
    assert_int_equal(in.amount, 250);
    assert_string_equal(in.currency, "chf");
    assert_true(slice_is(in.counterparty, "CH93"));
    assert_true(slice_is(in.object_id, "th_1"));
    /* A route written in the file requires every money field it names. */
    expect_bad(classify(t, "POST", "/v2/things/th_1/pay", FORM, "currency=chf"), "missing_amount",
               "amount");
    expect_bad(classify(t, "POST", "/v2/things/th_1/pay", FORM, "amount=1"), "missing_currency",
               "currency");
    assert_int_equal(classify(t, "GET", "/v2/things", NULL, NULL), 0);
    assert_int_equal(in.op, PG_OP_READ);
    assert_int_equal(classify(t, "GET", "/v2/other", NULL, NULL), 0);
    assert_false(in.matched);
    /* A GET money route reads its query, and refuses a body beside it. */
    assert_int_equal(classify(t, "GET", "/v2/quick/q1?amount=70&currency=usd", NULL, NULL), 0);
    assert_int_equal(in.op, PG_OP_PAYOUT);
    assert_int_equal(in.amount, 70);
    expect_bad(classify(t, "GET", "/v2/quick/q1?currency=usd", NULL, NULL), "missing_amount",
               "amount");
    expect_bad(classify(t, "GET", "/v2/quick/q1?amount=70&currency=usd", FORM, "amount=1"),
               "unexpected_body", NULL);
    pg_routes_free(t);

    /* A JSON generic rail reads pointers, with escapes and array indexes. */
    static char *cp[] = {"/parties/0/id"};
    struct pg_route_spec jspecs[] = {
        {.method = "POST",
         .path = "/pay",
         .operation = "transfer",
         .amount = "/a~1b/v~0",
         .currency = "/cur",
         .counterparty = cp,
         .ncounterparty = 1},
    };
    struct pg_rail jrail = {.name = "jbank",
                            .preset = PG_PRESET_GENERIC,
                            .format = PG_BODY_JSON,
                            .routes = jspecs,
                            .nroutes = 1};
    t = build(&jrail);
    assert_int_equal(
        classify(t, "POST", "/pay", JSON,
                 "{\"a/b\":{\"v~\":42},\"cur\":\"usd\",\"parties\":[{\"id\":\"p1\"}]}"),
        0);
    assert_int_equal(in.op, PG_OP_TRANSFER);
    assert_int_equal(in.amount, 42);
    assert_true(slice_is(in.counterparty, "p1"));
    assert_string_equal(in.route, "POST /pay");
    expect_bad(classify(t, "POST", "/pay", JSON, "{\"a/b\":{\"v~\":\"42\"},\"cur\":\"usd\"}"),
               "invalid_amount", "/a~1b/v~0");
    pg_routes_free(t);
}

static void bad_user_routes_are_config_errors(void **state)
{
    (void)state;
    static char *ptr[] = {"/payee"};
    struct {
        struct pg_route_spec spec;
        const char *needle;
    } cases[] = {
        {{.name = "a", .method = "POST", .path = "/x", .operation = "spend"}, "operation"},
        {{.name = "b", .method = "post", .path = "/x", .operation = "read"}, "method"},
        {{.name = "c", .method = "POST", .path = "x", .operation = "read"}, "path"},
        {{.name = "d", .method = "POST", .path = "/x//y", .operation = "read"}, "empty segment"},
        {{.name = "e", .method = "POST", .path = "/x/../y", .operation = "read"}, "\"..\""},
        {{.name = "f", .method = "POST", .path = "/x/%41", .operation = "read"}, "character"},
        {{.name = "g", .method = "POST", .path = "/x", .operation = "payment", .amount = "/amount"},
         "JSON pointer"},
        {{.name = "h",
          .method = "POST",
          .path = "/x",
          .operation = "payment",
          .amount = "amount",
          .counterparty = ptr,
          .ncounterparty = 1},
         "JSON pointer"},
    };
    for (size_t i = 0; i < PG_ARRAY_LEN(cases); i++) {
        struct pg_rail rail = {
            .name = "bank", .preset = PG_PRESET_GENERIC, .routes = &cases[i].spec, .nroutes = 1};
        struct pg_routes *t = NULL;
        char err[256];
        assert_int_equal(pg_routes_build(&rail, &t, err, sizeof err), PG_ECONFIG);
        assert_null(t);
        if (!strstr(err, cases[i].needle))
            fail_msg("case %zu: \"%s\" does not mention %s", i, err, cases[i].needle);
    }
    /* Two routes for one method and pattern (placeholder names aside). */
    struct pg_route_spec two[] = {
        {.name = "one", .method = "POST", .path = "/x/{a}", .operation = "read"},
        {.name = "two", .method = "POST", .path = "/x/{b}", .operation = "forbidden"},
    };
    struct pg_rail rail = {
        .name = "bank", .preset = PG_PRESET_GENERIC, .routes = two, .nroutes = 2};
    struct pg_routes *t = NULL;
    char err[256];
    assert_int_equal(pg_routes_build(&rail, &t, err, sizeof err), PG_ECONFIG);
    assert_non_null(strstr(err, "same method and path"));
    /* A JSON pointer is right on an adyen rail. */
    struct pg_route_spec ok = {.name = "ok",
                               .method = "POST",
                               .path = "/v71/x",
                               .operation = "payment",
                               .amount = "/amount/value",
                               .currency = "/amount/currency"};
    struct pg_rail arail = {.name = "adyen",
                            .preset = PG_PRESET_ADYEN,
                            .format = PG_BODY_JSON,
                            .routes = &ok,
                            .nroutes = 1};
    assert_int_equal(pg_routes_build(&arail, &t, err, sizeof err), 0);
    pg_routes_free(t);
    pg_routes_free(NULL);
}

static void operations_have_names(void **state)
{
    (void)state;
    for (int op = 0; op < PG_OP_COUNT; op++)
        assert_int_equal(pg_op_parse(pg_slice_cstr(pg_op_name((enum pg_op)op))), op);
    assert_int_equal(pg_op_parse(PG_SLICE("Payment")), -1);
    assert_int_equal(pg_op_parse(PG_SLICE("")), -1);
    assert_int_equal(pg_op_parse(PG_SLICE("payments")), -1);
    assert_string_equal(pg_op_name(PG_OP_COUNT), "unknown");
    assert_true(pg_op_moves_money(PG_OP_PAYMENT));
    assert_true(pg_op_moves_money(PG_OP_REFUND));
    assert_true(pg_op_moves_money(PG_OP_TRANSFER));
    assert_true(pg_op_moves_money(PG_OP_PAYOUT));
    assert_false(pg_op_moves_money(PG_OP_READ));
    assert_false(pg_op_moves_money(PG_OP_CONFIG));
    assert_false(pg_op_moves_money(PG_OP_FORBIDDEN));
}

/* Reusing one intent leaves nothing of the previous request behind. */
static void intents_are_reset(void **state)
{
    (void)state;
    assert_int_equal(
        classify(stripe, "POST", "/v1/webhook_endpoints", FORM, "url=https%3A%2F%2Fa.example"), 0);
    assert_int_equal(in.nurls, 1);
    assert_true(in.scratch_used > 0);
    assert_int_equal(classify(stripe, "GET", "/v1/charges", NULL, NULL), 0);
    assert_int_equal(in.nurls, 0);
    assert_int_equal(in.scratch_used, 0);
    assert_int_equal(in.currency[0], '\0');
    assert_int_equal(in.object_id.len, 0);
    assert_int_equal(classify(stripe, "POST", "/v1/nothing", NULL, NULL), 0);
    assert_false(in.matched);
    assert_null(in.route);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(stripe_money_routes_extract),
        cmocka_unit_test(stripe_other_routes_classify),
        cmocka_unit_test(bodies_of_routes_without_fields_are_not_read),
        cmocka_unit_test(malformed_amounts_are_refused),
        cmocka_unit_test(currencies_must_be_known),
        cmocka_unit_test(create_routes_need_amount_and_currency),
        cmocka_unit_test(duplicate_fields_are_refused),
        cmocka_unit_test(malformed_encodings_are_refused),
        cmocka_unit_test(content_types_are_checked),
        cmocka_unit_test(query_strings_on_money_posts_are_refused),
        cmocka_unit_test(path_hygiene_comes_first),
        cmocka_unit_test(line_item_sums_are_checked),
        cmocka_unit_test(adyen_routes_extract),
        cmocka_unit_test(adyen_bodies_are_checked),
        cmocka_unit_test(user_routes_override_and_extend_a_preset),
        cmocka_unit_test(generic_rails_have_only_their_routes),
        cmocka_unit_test(bad_user_routes_are_config_errors),
        cmocka_unit_test(operations_have_names),
        cmocka_unit_test(intents_are_reset),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
