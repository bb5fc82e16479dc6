/* The policy rules: every rule at its boundary, precedence (deny wins, a hold
 * stands only if nothing denies), overrides, currencies and the dry run. */
#include "common/pg.h"
#include "policy/policy.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <cmocka.h>

static const char yaml[] =
    "rails:\n"
    "  stripe: {upstream: \"https://api.stripe.com\", secret: env:PG_TEST_UNUSED}\n"
    "orgs:\n"
    "  acme: {timezone: Europe/Paris}\n"
    "policies:\n"
    "  default:\n"
    "    currency: usd\n"
    "    per_transaction: \"500.00\"\n"
    "    daily: \"2000.00\"\n"
    "    weekly: \"5000.00\"\n"
    "    monthly: \"10000.00\"\n"
    "    approval_above: \"250.00\"\n"
    "    auto_approve_below: \"20.00\"\n"
    "    merchants: {allow: [\"acct_1Trusted*\"], deny: [\"acct_1TrustedBad\"]}\n"
    "    hours: {days: mon-fri, from: \"08:00\", to: \"20:00\"}\n"
    "    velocity: {max: 10, per: 1m}\n"
    "    currencies: [usd, eur]\n"
    "    operations: [payment, refund, read]\n"
    "  yen:\n"
    "    currency: jpy\n"
    "    per_transaction: \"1000\"\n"
    "  dinar:\n"
    "    currency: kwd\n"
    "    per_transaction: \"1.500\"\n"
    "agents:\n"
    "  - {id: shopper, org: acme, token: \"$2b$10$CwTycUXWue0Thq9StjUM0uJ8DPLKSGfYVRkvDyfZsQvDFbm7Fb8ti\", rails: [stripe], policy: default}\n"
    "  - {id: reader, org: acme, token: \"$2b$10$CwTycUXWue0Thq9StjUM0uJ8DPLKSGfYVRkvDyfZsQvDFbm7Fb8tj\", rails: [stripe]}\n"
    "  - {id: yen, org: acme, token: \"$2b$10$CwTycUXWue0Thq9StjUM0uJ8DPLKSGfYVRkvDyfZsQvDFbm7Fb8tk\", rails: [stripe], policy: yen}\n"
    "  - {id: dinar, org: acme, token: \"$2b$10$CwTycUXWue0Thq9StjUM0uJ8DPLKSGfYVRkvDyfZsQvDFbm7Fb8tl\", rails: [stripe], policy: dinar}\n"
    "  - {id: tight, org: acme, token: \"$2b$10$CwTycUXWue0Thq9StjUM0uJ8DPLKSGfYVRkvDyfZsQvDFbm7Fb8tm\", rails: [stripe], policy: default,\n"
    "     overrides: {daily: \"100.00\", merchants: {allow: [\"*\"]}}}\n";

struct fixture {
    struct pg_config *cfg;
    struct pg_tz *paris;
};

static struct fixture fx;

/* 2026-11-23 is a Monday; 12:00 in Paris (UTC+1 in November) is 11:00 UTC. */
#define MONDAY_NOON_PARIS 1795431600LL

static int setup(void **state)
{
    (void)state;
    char path[] = "/tmp/pg-test-policy-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, yaml, sizeof(yaml) - 1), (ssize_t)(sizeof(yaml) - 1));
    close(fd);
    struct pg_config_errors errs = { 0 };
    int rc = pg_config_load(path, false, &fx.cfg, &errs);
    for (size_t i = 0; i < errs.count; i++)
        fprintf(stderr, "%s\n", errs.msgs[i]);
    pg_config_errors_free(&errs);
    unlink(path);
    assert_int_equal(rc, 0);
    const struct pg_org *org = pg_config_org(fx.cfg, PG_SLICE("acme"));
    assert_non_null(org);
    assert_non_null(org->tz);
    fx.paris = org->tz;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    pg_config_free(fx.cfg);
    return 0;
}

static struct pg_policy *policy_of(const char *agent)
{
    struct pg_policy *p = NULL;
    char err[256];
    const struct pg_agent *a = pg_config_agent(fx.cfg, pg_slice_cstr(agent));
    assert_non_null(a);
    assert_int_equal(pg_policy_compile(fx.cfg, a, &p, err, sizeof(err)), 0);
    return p;
}

static struct pg_intent payment(int64_t amount, const char *currency, const char *merchant)
{
    struct pg_intent in;
    memset(&in, 0, sizeof(in));
    in.matched = true;
    in.op = PG_OP_PAYMENT;
    in.action = PG_ACT_CREATE;
    in.route = "payment_intents.create";
    in.has_amount = amount >= 0;
    in.amount = amount;
    memcpy(in.currency, currency, strlen(currency));
    if (merchant) {
        in.counterparty = pg_slice_cstr(merchant);
        in.counterparty_field = "transfer_data[destination]";
    }
    return in;
}

/* Runs both phases as the proxy and the ledger do. */
static struct pg_decision decide(const char *agent, const struct pg_intent *in, int64_t now,
                                 struct pg_spend spend)
{
    struct pg_policy *p = policy_of(agent);
    const struct pg_agent *a = pg_config_agent(fx.cfg, pg_slice_cstr(agent));
    struct pg_decision d;
    assert_int_equal(pg_policy_check(p, a, in, fx.paris, now, &d), 0);
    assert_int_equal(pg_policy_check_spend(p, a, in, &spend, &d), 0);
    pg_policy_free(p);
    return d;
}

static const struct pg_spend nothing = { 0, 0, 0, 0 };

static void expect(const char *agent, struct pg_intent in, int64_t now, struct pg_spend spend,
                   enum pg_verdict v, const char *reason)
{
    struct pg_decision d = decide(agent, &in, now, spend);
    if (d.verdict != v || (reason && strcmp(d.reason, reason) != 0))
        fail_msg("amount %lld %s: got %s/%s, want %s/%s (%s)", (long long)in.amount, in.currency,
                 pg_verdict_name(d.verdict), d.reason, pg_verdict_name(v), reason ? reason : "-",
                 d.message);
    if (v != PG_VERDICT_ALLOW)
        assert_true(d.message[0] != '\0');
}

static void per_transaction_boundary(void **state)
{
    (void)state;
    /* 250.00 < amount: held; use amounts under the approval threshold by
     * checking the verdict's reason, and the per-transaction edge above it. */
    expect("shopper", payment(50000, "usd", "acct_1TrustedA"), MONDAY_NOON_PARIS, nothing,
           PG_VERDICT_HOLD, "approval_required");
    expect("shopper", payment(50001, "usd", "acct_1TrustedA"), MONDAY_NOON_PARIS, nothing,
           PG_VERDICT_DENY, "per_transaction_limit");
    struct pg_intent in = payment(50001, "usd", "acct_1TrustedA");
    struct pg_decision d = decide("shopper", &in, MONDAY_NOON_PARIS, nothing);
    assert_int_equal(d.status, 403);
    assert_string_equal(d.limit_name, "per_transaction");
    assert_int_equal(d.limit, 50000);
    assert_string_equal(d.param, "amount");
    assert_non_null(strstr(d.message, "500.00 USD"));
    assert_non_null(strstr(d.message, "500.01 USD"));
}

static void approval_threshold_and_auto_approve(void **state)
{
    (void)state;
    expect("shopper", payment(25000, "usd", "acct_1TrustedA"), MONDAY_NOON_PARIS, nothing,
           PG_VERDICT_ALLOW, NULL);
    struct pg_intent in = payment(25001, "usd", "acct_1TrustedA");
    struct pg_decision d = decide("shopper", &in, MONDAY_NOON_PARIS, nothing);
    assert_int_equal(d.verdict, PG_VERDICT_HOLD);
    assert_int_equal(d.status, 402);
    assert_non_null(strstr(d.message, "Idempotency-Key"));
}

static void windows_at_their_limits(void **state)
{
    (void)state;
    struct pg_spend s = { 180000, 180000, 180000, 0 };
    /* 1800.00 spent today: 200.00 more is exactly the daily limit */
    expect("shopper", payment(20000, "usd", "acct_1TrustedA"), MONDAY_NOON_PARIS, s,
           PG_VERDICT_ALLOW, NULL);
    expect("shopper", payment(20001, "usd", "acct_1TrustedA"), MONDAY_NOON_PARIS, s,
           PG_VERDICT_DENY, "daily_limit");
    struct pg_intent in = payment(20001, "usd", "acct_1TrustedA");
    struct pg_decision d = decide("shopper", &in, MONDAY_NOON_PARIS, s);
    assert_int_equal(d.headroom, 20000);
    assert_int_equal(d.limit, 200000);
    assert_non_null(strstr(d.message, "200.00 USD is left today"));
    struct pg_spend w = { 0, 480000, 480000, 0 };
    expect("shopper", payment(20000, "usd", "acct_1TrustedA"), MONDAY_NOON_PARIS, w,
           PG_VERDICT_ALLOW, NULL);
    expect("shopper", payment(20001, "usd", "acct_1TrustedA"), MONDAY_NOON_PARIS, w,
           PG_VERDICT_DENY, "weekly_limit");
    struct pg_spend m = { 0, 0, 980000, 0 };
    expect("shopper", payment(20000, "usd", "acct_1TrustedA"), MONDAY_NOON_PARIS, m,
           PG_VERDICT_ALLOW, NULL);
    expect("shopper", payment(20001, "usd", "acct_1TrustedA"), MONDAY_NOON_PARIS, m,
           PG_VERDICT_DENY, "monthly_limit");
    /* spend already over the limit: headroom is zero, not negative */
    struct pg_spend over = { 250000, 0, 0, 0 };
    struct pg_intent one = payment(1, "usd", "acct_1TrustedA");
    d = decide("shopper", &one, MONDAY_NOON_PARIS, over);
    assert_string_equal(d.reason, "daily_limit");
    assert_int_equal(d.headroom, 0);
    /* spend near INT64_MAX must not wrap around */
    struct pg_spend huge = { INT64_MAX - 5, 0, 0, 0 };
    expect("shopper", payment(10, "usd", "acct_1TrustedA"), MONDAY_NOON_PARIS, huge,
           PG_VERDICT_DENY, "daily_limit");
}

static void deny_wins_over_hold(void **state)
{
    (void)state;
    /* above the approval threshold and over the daily limit: deny */
    struct pg_spend s = { 190000, 0, 0, 0 };
    expect("shopper", payment(30000, "usd", "acct_1TrustedA"), MONDAY_NOON_PARIS, s,
           PG_VERDICT_DENY, "daily_limit");
    /* above the approval threshold and outside hours: deny */
    expect("shopper", payment(30000, "usd", "acct_1TrustedA"), MONDAY_NOON_PARIS + 10 * 3600,
           nothing, PG_VERDICT_DENY, "outside_hours");
}

static void merchant_lists(void **state)
{
    (void)state;
    expect("shopper", payment(1000, "usd", "acct_1TrustedGood"), MONDAY_NOON_PARIS, nothing,
           PG_VERDICT_ALLOW, NULL);
    expect("shopper", payment(1000, "usd", "acct_1TrustedBad"), MONDAY_NOON_PARIS, nothing,
           PG_VERDICT_DENY, "merchant_denied");
    expect("shopper", payment(1000, "usd", "acct_1Other"), MONDAY_NOON_PARIS, nothing,
           PG_VERDICT_DENY, "merchant_not_allowed");
    expect("shopper", payment(1000, "usd", NULL), MONDAY_NOON_PARIS, nothing, PG_VERDICT_DENY,
           "merchant_not_allowed");
    /* the prefix must match from the start */
    expect("shopper", payment(1000, "usd", "xacct_1TrustedGood"), MONDAY_NOON_PARIS, nothing,
           PG_VERDICT_DENY, "merchant_not_allowed");
}

static void hours_in_the_org_zone(void **state)
{
    (void)state;
    int64_t monday_0000_paris = MONDAY_NOON_PARIS - 12 * 3600;
    struct {
        int64_t at;
        enum pg_verdict v;
    } cases[] = {
        { monday_0000_paris + 7 * 3600 + 59 * 60, PG_VERDICT_DENY },  /* 07:59 */
        { monday_0000_paris + 8 * 3600, PG_VERDICT_ALLOW },           /* 08:00 */
        { monday_0000_paris + 19 * 3600 + 59 * 60, PG_VERDICT_ALLOW }, /* 19:59 */
        { monday_0000_paris + 20 * 3600, PG_VERDICT_DENY },           /* 20:00 */
        { monday_0000_paris - 12 * 3600, PG_VERDICT_DENY },           /* Sunday noon */
        { monday_0000_paris + 4 * 86400 + 12 * 3600, PG_VERDICT_ALLOW }, /* Friday noon */
        { monday_0000_paris + 5 * 86400 + 12 * 3600, PG_VERDICT_DENY },  /* Saturday noon */
    };
    for (size_t i = 0; i < PG_ARRAY_LEN(cases); i++)
        expect("shopper", payment(1000, "usd", "acct_1TrustedA"), cases[i].at, nothing,
               cases[i].v, cases[i].v == PG_VERDICT_DENY ? "outside_hours" : NULL);
}

static void velocity_limit(void **state)
{
    (void)state;
    struct pg_spend nine = { 0, 0, 0, 9 }, ten = { 0, 0, 0, 10 };
    expect("shopper", payment(1000, "usd", "acct_1TrustedA"), MONDAY_NOON_PARIS, nine,
           PG_VERDICT_ALLOW, NULL);
    expect("shopper", payment(1000, "usd", "acct_1TrustedA"), MONDAY_NOON_PARIS, ten,
           PG_VERDICT_DENY, "velocity_limit");
}

static void currencies_and_exponents(void **state)
{
    (void)state;
    expect("shopper", payment(1000, "gbp", "acct_1TrustedA"), MONDAY_NOON_PARIS, nothing,
           PG_VERDICT_DENY, "currency_not_allowed");
    /* an allowed second currency: the limits apply to it nominally */
    expect("shopper", payment(50001, "eur", "acct_1TrustedA"), MONDAY_NOON_PARIS, nothing,
           PG_VERDICT_DENY, "per_transaction_limit");
    expect("yen", payment(1000, "jpy", NULL), MONDAY_NOON_PARIS, nothing, PG_VERDICT_ALLOW, NULL);
    expect("yen", payment(1001, "jpy", NULL), MONDAY_NOON_PARIS, nothing, PG_VERDICT_DENY,
           "per_transaction_limit");
    expect("yen", payment(1000, "usd", NULL), MONDAY_NOON_PARIS, nothing, PG_VERDICT_DENY,
           "currency_not_allowed");
    expect("dinar", payment(1500, "kwd", NULL), MONDAY_NOON_PARIS, nothing, PG_VERDICT_ALLOW, NULL);
    expect("dinar", payment(1501, "kwd", NULL), MONDAY_NOON_PARIS, nothing, PG_VERDICT_DENY,
           "per_transaction_limit");
}

static void operations_and_defaults(void **state)
{
    (void)state;
    struct pg_intent in = payment(1000, "usd", "acct_1TrustedA");
    in.op = PG_OP_TRANSFER;
    expect("shopper", in, MONDAY_NOON_PARIS, nothing, PG_VERDICT_DENY, "operation_not_allowed");
    in.op = PG_OP_FORBIDDEN;
    expect("shopper", in, MONDAY_NOON_PARIS, nothing, PG_VERDICT_DENY, "forbidden_operation");
    /* an agent without a policy may only read */
    expect("reader", payment(1, "usd", NULL), MONDAY_NOON_PARIS, nothing, PG_VERDICT_DENY,
           "operation_not_allowed");
    struct pg_intent rd;
    memset(&rd, 0, sizeof(rd));
    rd.matched = true;
    rd.op = PG_OP_READ;
    rd.route = "balance.retrieve";
    expect("reader", rd, MONDAY_NOON_PARIS, nothing, PG_VERDICT_ALLOW, NULL);
    /* reads ignore money rules entirely, even outside hours */
    expect("shopper", rd, MONDAY_NOON_PARIS + 10 * 3600, nothing, PG_VERDICT_ALLOW, NULL);
}

static void unknown_amounts(void **state)
{
    (void)state;
    expect("shopper", payment(-1, "usd", "acct_1TrustedA"), MONDAY_NOON_PARIS, nothing,
           PG_VERDICT_DENY, "amount_unknown");
    struct pg_intent confirm = payment(-1, "", NULL);
    confirm.action = PG_ACT_CONFIRM;
    confirm.route = "payment_intents.confirm";
    /* a follow-up acts on an object checked at creation: no amount and no
     * merchant of its own is fine, even under an allow list */
    expect("shopper", confirm, MONDAY_NOON_PARIS, nothing, PG_VERDICT_ALLOW, NULL);
    /* but a follow-up that names a merchant is checked */
    confirm.counterparty = PG_SLICE("acct_1TrustedBad");
    expect("shopper", confirm, MONDAY_NOON_PARIS, nothing, PG_VERDICT_DENY, "merchant_denied");
}

static void overrides_replace_single_fields(void **state)
{
    (void)state;
    struct pg_spend s = { 9000, 0, 0, 0 };
    expect("tight", payment(1000, "usd", "acct_anything"), MONDAY_NOON_PARIS, s,
           PG_VERDICT_ALLOW, NULL);
    expect("tight", payment(1001, "usd", "acct_anything"), MONDAY_NOON_PARIS, s,
           PG_VERDICT_DENY, "daily_limit");
    /* the rest of the named policy still applies */
    expect("tight", payment(50001, "usd", "acct_anything"), MONDAY_NOON_PARIS, nothing,
           PG_VERDICT_DENY, "per_transaction_limit");
}

struct explained {
    char lines[16][96];
    size_t n;
};

static void collect(void *arg, const char *rule, const char *outcome, const struct pg_decision *d)
{
    struct explained *e = arg;
    (void)d;
    if (e->n < 16)
        snprintf(e->lines[e->n++], sizeof(e->lines[0]), "%s=%s", rule, outcome);
}

static void explain_reports_every_rule(void **state)
{
    (void)state;
    struct pg_policy *p = policy_of("shopper");
    const struct pg_agent *a = pg_config_agent(fx.cfg, PG_SLICE("shopper"));
    struct pg_intent in = payment(60000, "usd", "acct_1Other");
    struct pg_spend s = { 190000, 0, 0, 0 };
    struct explained e = { .n = 0 };
    assert_int_equal(pg_policy_explain(p, a, &in, fx.paris, MONDAY_NOON_PARIS, &s, collect, &e), 0);
    assert_int_equal(e.n, 11);
    assert_string_equal(e.lines[0], "operations=pass");
    assert_string_equal(e.lines[3], "per_transaction=deny");
    assert_string_equal(e.lines[4], "merchants=deny");
    assert_string_equal(e.lines[5], "hours=pass");
    assert_string_equal(e.lines[6], "approval_above=hold");
    assert_string_equal(e.lines[7], "velocity=pass");
    assert_string_equal(e.lines[8], "daily=deny");
    pg_policy_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(per_transaction_boundary),
        cmocka_unit_test(approval_threshold_and_auto_approve),
        cmocka_unit_test(windows_at_their_limits),
        cmocka_unit_test(deny_wins_over_hold),
        cmocka_unit_test(merchant_lists),
        cmocka_unit_test(hours_in_the_org_zone),
        cmocka_unit_test(velocity_limit),
        cmocka_unit_test(currencies_and_exponents),
        cmocka_unit_test(operations_and_defaults),
        cmocka_unit_test(unknown_amounts),
        cmocka_unit_test(overrides_replace_single_fields),
        cmocka_unit_test(explain_reports_every_rule),
    };
    return cmocka_run_group_tests_name("policy", tests, setup, teardown);
}
