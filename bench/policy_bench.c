/* Microbenchmarks of the policy path: ns per Stripe body classification, ns
 * per decision (stateless + stateful rules) with every rule kind set, and ns
 * to read the rail's answer to a payment (pg_rail_outcome on the mock rail's
 * 1 KB payment_intent), which the money path runs once per payment.
 * Prints one JSON line; `make bench` includes it in bench/RESULTS.md.
 * `policy_bench ROUNDS` (default 9, odd) trades precision for time. */
#include "common/pg.h"
#include "policy/policy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char yaml[] =
    "rails:\n"
    "  stripe: {upstream: \"https://api.stripe.com\", secret: env:UNUSED}\n"
    "orgs:\n"
    "  acme: {timezone: Europe/Paris}\n"
    "policies:\n"
    "  full:\n"
    "    currency: usd\n"
    "    per_transaction: \"500.00\"\n"
    "    daily: \"2000.00\"\n"
    "    weekly: \"5000.00\"\n"
    "    monthly: \"10000.00\"\n"
    "    approval_above: \"250.00\"\n"
    "    auto_approve_below: \"20.00\"\n"
    "    merchants: {allow: [\"acct_1Trusted*\", \"acct_1Partner*\"], deny: [\"acct_1TrustedBad*\"]}\n"
    "    hours: {days: mon-sun, from: \"00:00\", to: \"24:00\"}\n"
    "    velocity: {max: 1000, per: 1m}\n"
    "    currencies: [usd, eur]\n"
    "    operations: [payment, refund, read]\n"
    "agents:\n"
    "  - {id: bench, org: acme, token: \"$2b$10$CwTycUXWue0Thq9StjUM0uJ8DPLKSGfYVRkvDyfZsQvDFbm7Fb8ti\", rails: [stripe], policy: full}\n";

static const char body[] =
    "amount=1999&currency=usd&payment_method_types[]=card&confirm=true"
    "&customer=cus_QxYzAbCdEf1234&description=Order%20%23123%20-%20three%20items"
    "&metadata[order_id]=ord_789&metadata[agent]=shopper"
    "&transfer_data[destination]=acct_1TrustedShop&payment_method=pm_card_visa";

/* What tools/mockrail answers to POST /v1/payment_intents (1,014 bytes). */
static const char answer[] =
    "{\"id\":\"pi_L2nJs42B5hYuP8rHROVvPmqz\",\"object\":\"payment_intent\",\"amount\":1000,"
    "\"amount_capturable\":0,\"amount_details\":{\"tip\":{}},\"amount_received\":0,"
    "\"application\":null,\"application_fee_amount\":null,\"automatic_payment_methods\":null,"
    "\"canceled_at\":null,\"cancellation_reason\":null,\"capture_method\":\"automatic\","
    "\"client_secret\":\"pi_L2nJs42B5hYuP8rHROVvPmqz_secret_owvRloV1pZY483BZ5HQm2vnvZ\","
    "\"confirmation_method\":\"automatic\",\"created\":1795259269,\"currency\":\"usd\","
    "\"customer\":null,\"description\":null,\"last_payment_error\":null,\"latest_charge\":null,"
    "\"livemode\":false,\"metadata\":{},\"next_action\":null,\"on_behalf_of\":null,"
    "\"payment_method\":null,\"payment_method_configuration_details\":null,"
    "\"payment_method_options\":{},\"payment_method_types\":[\"card\"],\"processing\":null,"
    "\"receipt_email\":null,\"review\":null,\"setup_future_usage\":null,\"shipping\":null,"
    "\"source\":null,\"statement_descriptor\":null,\"statement_descriptor_suffix\":null,"
    "\"status\":\"requires_payment_method\",\"transfer_data\":{\"destination\":"
    "\"acct_1TrustedBench\"},\"transfer_group\":null}";

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

#define ROUNDS_MAX 99
#define ITERS 200000
#define OUTCOME_ITERS 20000

int main(int argc, char **argv)
{
    char *end = NULL;
    long rounds_arg = argc > 1 ? strtol(argv[1], &end, 10) : 9;
    int rounds = (int)rounds_arg;
    if (argc > 2 || (end && *end) || rounds_arg < 1 || rounds_arg > ROUNDS_MAX) {
        fprintf(stderr, "usage: policy_bench [ROUNDS 1..%d]\n", ROUNDS_MAX);
        return 2;
    }
    char path[] = "/tmp/pg-policy-bench-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0 || write(fd, yaml, sizeof(yaml) - 1) != (ssize_t)(sizeof(yaml) - 1)) {
        fprintf(stderr, "policy_bench: cannot write %s\n", path);
        return 1;
    }
    close(fd);
    struct pg_config *cfg = NULL;
    struct pg_config_errors errs = { 0 };
    int rc = pg_config_load(path, false, &cfg, &errs);
    unlink(path);
    if (rc != 0) {
        for (size_t i = 0; i < errs.count; i++)
            fprintf(stderr, "%s\n", errs.msgs[i]);
        return 1;
    }
    char err[256];
    struct pg_routes *routes;
    struct pg_policy *pol;
    const struct pg_agent *agent = &cfg->agents[0];
    const struct pg_org *org = pg_config_org(cfg, PG_SLICE("acme"));
    if (pg_routes_build(&cfg->rails[0], &routes, err, sizeof(err)) != 0 ||
        pg_policy_compile(cfg, agent, &pol, err, sizeof(err)) != 0) {
        fprintf(stderr, "policy_bench: %s\n", err);
        return 1;
    }
    struct pg_intent *in = malloc(sizeof(*in));
    struct pg_decision d;
    if (!in)
        return 1;
    struct pg_slice method = PG_SLICE("POST"), target = PG_SLICE("/v1/payment_intents"),
                    ctype = PG_SLICE("application/x-www-form-urlencoded"),
                    b = pg_slice_of(body, sizeof(body) - 1);
    struct pg_slice ans = pg_slice_of(answer, sizeof(answer) - 1);
    struct pg_outcome out;
    double classify[ROUNDS_MAX], decide[ROUNDS_MAX], outcome[ROUNDS_MAX];
    unsigned long long sink = 0;
    int64_t t = 1795431600; /* a Monday noon in Paris */
    struct pg_spend spend = { 120000, 250000, 600000, 12 };

    for (int r = 0; r < rounds; r++) {
        double t0 = now_ns();
        for (int i = 0; i < ITERS; i++) {
            if (pg_rail_classify(routes, method, target, ctype, b, in, &d) != 0)
                return 1;
            sink += (unsigned long long)in->amount;
        }
        double t1 = now_ns();
        for (int i = 0; i < ITERS; i++) {
            if (pg_policy_check(pol, agent, in, org->tz, t + i, &d) != 0 ||
                pg_policy_check_spend(pol, agent, in, &spend, &d) != 0)
                return 1;
            sink += d.verdict;
        }
        double t2 = now_ns();
        for (int i = 0; i < OUTCOME_ITERS; i++) {
            pg_rail_outcome(PG_PRESET_STRIPE, in, 200, ans, &out);
            sink += (unsigned long long)out.kind;
        }
        double t3 = now_ns();
        classify[r] = (t1 - t0) / ITERS;
        decide[r] = (t2 - t1) / ITERS;
        outcome[r] = (t3 - t2) / OUTCOME_ITERS;
    }
    if (d.verdict != PG_VERDICT_ALLOW) {
        fprintf(stderr, "policy_bench: expected allow, got %s (%s)\n", pg_verdict_name(d.verdict),
                d.message);
        return 1;
    }
    if (strcmp(out.object_id, "pi_L2nJs42B5hYuP8rHROVvPmqz") != 0) {
        fprintf(stderr, "policy_bench: pg_rail_outcome did not read the answer (object \"%s\")\n",
                out.object_id);
        return 1;
    }
    qsort(classify, (size_t)rounds, sizeof(double), cmp_double);
    qsort(decide, (size_t)rounds, sizeof(double), cmp_double);
    qsort(outcome, (size_t)rounds, sizeof(double), cmp_double);
    printf("{\"classify_ns\":%.0f,\"decide_ns\":%.0f,\"outcome_ns\":%.0f,\"body_bytes\":%zu,"
           "\"answer_bytes\":%zu,\"sink\":%llu}\n",
           classify[rounds / 2], decide[rounds / 2], outcome[rounds / 2], sizeof(body) - 1,
           sizeof(answer) - 1, sink % 10);
    free(in);
    pg_policy_free(pol);
    pg_routes_free(routes);
    pg_config_free(cfg);
    return 0;
}
