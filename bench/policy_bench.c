/* Microbenchmarks of the policy path: ns per Stripe body classification and
 * ns per decision (stateless + stateful rules) with every rule kind set.
 * Prints one JSON line; `make bench` includes it in bench/RESULTS.md. */
#include "common/pg.h"
#include "policy/policy.h"

#include <stdio.h>
#include <stdlib.h>
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

#define ROUNDS 9
#define ITERS 200000

int main(void)
{
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
    double classify[ROUNDS], decide[ROUNDS];
    unsigned long long sink = 0;
    int64_t t = 1795431600; /* a Monday noon in Paris */
    struct pg_spend spend = { 120000, 250000, 600000, 12 };

    for (int r = 0; r < ROUNDS; r++) {
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
        classify[r] = (t1 - t0) / ITERS;
        decide[r] = (t2 - t1) / ITERS;
    }
    if (d.verdict != PG_VERDICT_ALLOW) {
        fprintf(stderr, "policy_bench: expected allow, got %s (%s)\n", pg_verdict_name(d.verdict),
                d.message);
        return 1;
    }
    qsort(classify, ROUNDS, sizeof(double), cmp_double);
    qsort(decide, ROUNDS, sizeof(double), cmp_double);
    printf("{\"classify_ns\":%.0f,\"decide_ns\":%.0f,\"body_bytes\":%zu,\"sink\":%llu}\n",
           classify[ROUNDS / 2], decide[ROUNDS / 2], sizeof(body) - 1, sink % 10);
    free(in);
    pg_policy_free(pol);
    pg_routes_free(routes);
    pg_config_free(cfg);
    return 0;
}
