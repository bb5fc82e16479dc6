/* `payguard policy test`: a dry run of one request through the route table
 * and every policy rule, for humans writing policies and for tests. Loads the
 * config, touches nothing else. */
#include "common/pg.h"
#include "policy/policy.h"
#include "proxy/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static const char usage_policy[] =
    "Usage: payguard policy test [-c FILE] --agent ID --method METHOD --path PATH\n"
    "                            [--body BODY] [--content-type TYPE] [--rail NAME]\n"
    "                            [--at TIME] [--spent WINDOW=AMOUNT]... [--velocity N]\n"
    "\n"
    "Shows what payguard would decide for one request, rule by rule, with no side\n"
    "effects: nothing is sent and nothing is recorded.\n"
    "  --body          the request body as the agent would send it\n"
    "                  (form: 'amount=1500&currency=usd'); the content type defaults\n"
    "                  to the rail's format\n"
    "  --at            when, RFC 3339 (2026-11-21T10:00:00+01:00); default now\n"
    "  --spent         already spent in a window, in major units of the request's\n"
    "                  currency: daily=1200.00, weekly=..., monthly=... (repeatable)\n"
    "  --velocity      money operations already made in the velocity period\n"
    "Exit status: 0 allow, 3 deny, 4 hold, 2 bad usage or config.\n";

/* The n digits at s as a number, or -1 (sscanf's %d would take a sign or
 * spaces there). */
static int digits(const char *s, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

/* RFC 3339 with a 'Z' or ±HH:MM offset, seconds optional fraction ignored. */
static int parse_time(const char *s, int64_t *out)
{
    if (strlen(s) < 19 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' ||
        s[16] != ':')
        return PG_EPARSE;
    int y = digits(s, 4), mo = digits(s + 5, 2), d = digits(s + 8, 2), h = digits(s + 11, 2),
        mi = digits(s + 14, 2), sec = digits(s + 17, 2);
    if (y < 0 || h < 0 || mi < 0 || sec < 0)
        return PG_EPARSE;
    const char *p = s + 19;
    if (*p == '.') {
        p++;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    int32_t off = 0;
    if (*p == 'Z' && p[1] == '\0') {
        off = 0;
    } else if ((*p == '+' || *p == '-') && strlen(p) == 6 && p[3] == ':') {
        int oh = digits(p + 1, 2), om = digits(p + 4, 2);
        if (oh < 0 || om < 0 || oh > 23 || om > 59)
            return PG_EPARSE;
        off = (oh * 60 + om) * 60 * (*p == '-' ? -1 : 1);
    } else {
        return PG_EPARSE;
    }
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
        return PG_EPARSE;
    struct pg_tz *utc;
    if (pg_tz_utc(&utc) != 0)
        return PG_ENOMEM;
    *out = pg_tz_from_civil(utc, y, mo, d, h, mi, sec) - off;
    pg_tz_free(utc);
    return 0;
}

struct explain_out {
    const char *currency;
};

static void print_rule(void *arg, const char *rule, const char *outcome, const struct pg_decision *d)
{
    (void)arg;
    if (strcmp(outcome, "deny") == 0 || strcmp(outcome, "hold") == 0)
        printf("  %-16s %-6s %s\n", rule, outcome, d->reason);
    else
        printf("  %-16s %s\n", rule, outcome);
}

static void print_amount(int64_t minor, const char *currency)
{
    char num[48];
    int exp = pg_money_exponent(pg_slice_cstr(currency));
    if (exp < 0 || pg_money_format(minor, exp, num, sizeof(num)) < 0)
        snprintf(num, sizeof(num), "%lld", (long long)minor);
    printf("%s %s", num, currency);
}

int pg_cli_policy(int argc, char **argv)
{
    const char *path = "payguard.yaml", *agent_id = NULL, *method = NULL, *target = NULL;
    const char *body = "", *ctype = NULL, *rail_name = NULL, *at = NULL;
    const char *spent[3] = { NULL, NULL, NULL };
    long velocity = 0;

    if (argc == 0 || pg_cli_is_help(argv[0])) {
        fputs(usage_policy, argc ? stdout : stderr);
        return argc ? 0 : 2;
    }
    if (strcmp(argv[0], "test") != 0)
        return pg_cli_usage_error("unknown policy subcommand", argv[0]);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (pg_cli_is_help(a)) {
            fputs(usage_policy, stdout);
            return 0;
        }
#define OPT(flag, dst)                                                         \
    if (strcmp(a, flag) == 0) {                                                \
        if (!v)                                                                \
            return pg_cli_usage_error("missing value after", a);               \
        (dst) = v;                                                             \
        i++;                                                                   \
        continue;                                                              \
    }
        OPT("-c", path)
        OPT("--config", path)
        OPT("--agent", agent_id)
        OPT("--method", method)
        OPT("--path", target)
        OPT("--body", body)
        OPT("--content-type", ctype)
        OPT("--rail", rail_name)
        OPT("--at", at)
#undef OPT
        if (strcmp(a, "--spent") == 0 && v) {
            const char *names[3] = { "daily=", "weekly=", "monthly=" };
            bool ok = false;
            for (int k = 0; k < 3 && !ok; k++)
                if (strncmp(v, names[k], strlen(names[k])) == 0) {
                    spent[k] = v + strlen(names[k]);
                    ok = true;
                }
            if (!ok)
                return pg_cli_usage_error("--spent takes daily=, weekly= or monthly=", v);
            i++;
            continue;
        }
        if (strcmp(a, "--velocity") == 0 && v) {
            char *end;
            velocity = strtol(v, &end, 10);
            if (*end || velocity < 0 || velocity > 1000000)
                return pg_cli_usage_error("--velocity takes a count", v);
            i++;
            continue;
        }
        return pg_cli_usage_error("unknown option", a);
    }
    if (!agent_id || !method || !target)
        return pg_cli_usage_error("policy test needs", "--agent, --method and --path");

    int64_t now = (int64_t)time(NULL);
    if (at && parse_time(at, &now) != 0)
        return pg_cli_usage_error("--at takes an RFC 3339 time such as 2026-11-21T10:00:00+01:00", at);

    struct pg_config *cfg = NULL;
    struct pg_config_errors errs = { 0 };
    if (pg_config_load(path, false, &cfg, &errs) != 0) {
        for (size_t i = 0; i < errs.count; i++)
            fprintf(stderr, "%s\n", errs.msgs[i]);
        pg_config_errors_free(&errs);
        return 2;
    }
    int code = 2;
    char err[256];
    struct pg_routes *routes = NULL;
    struct pg_policy *pol = NULL;
    struct pg_intent *in = calloc(1, sizeof(*in));
    const struct pg_agent *agent = pg_config_agent(cfg, pg_slice_cstr(agent_id));
    if (!in)
        goto done;
    if (!agent) {
        fprintf(stderr, "payguard: no agent %s in %s\n", agent_id, path);
        goto done;
    }
    const struct pg_rail *rail = pg_config_rail(cfg, pg_slice_cstr(rail_name ? rail_name : agent->rails[0]));
    if (!rail) {
        fprintf(stderr, "payguard: no rail %s in %s\n", rail_name, path);
        goto done;
    }
    const struct pg_org *org = pg_config_org(cfg, pg_slice_cstr(agent->org));
    if (pg_routes_build(rail, &routes, err, sizeof(err)) != 0 ||
        pg_policy_compile(cfg, agent, &pol, err, sizeof(err)) != 0) {
        fprintf(stderr, "payguard: %s\n", err);
        goto done;
    }
    if (!ctype && body[0])
        ctype = rail->format == PG_BODY_JSON ? "application/json" : "application/x-www-form-urlencoded";
    struct pg_decision d;
    memset(&d, 0, sizeof(d));
    int rc = pg_rail_classify(routes, pg_slice_cstr(method), pg_slice_cstr(target),
                              pg_slice_cstr(ctype ? ctype : ""), pg_slice_cstr(body), in, &d);
    printf("agent      %s (policy %s, org %s, %s)\n", agent->id, agent->policy ? agent->policy : "none: reads only",
           agent->org, org && org->tz ? pg_tz_name(org->tz) : "UTC");
    printf("request    %s %s on rail %s\n", method, target, rail->name);
    if (org && org->tz) {
        struct pg_civil c;
        pg_tz_to_civil(org->tz, now, &c);
        printf("at         %04d-%02d-%02d %02d:%02d:%02d %s\n", c.year, c.month, c.day, c.hour,
               c.minute, c.second, pg_tz_name(org->tz));
    }
    if (rc == PG_EPARSE) {
        printf("\ndecision   deny (%s, %d): the request is malformed\nmessage    %s\n", d.reason,
               d.status, d.message);
        code = 3;
        goto done;
    }
    if (rc != 0 || !org || !org->tz) {
        fprintf(stderr, "payguard: could not classify the request\n");
        goto done;
    }
    if (!in->matched) {
        printf("operation  none: no route matches (rail %s: unmatched %s)\n", rail->name,
               rail->unmatched == PG_UNMATCHED_PASS ? "pass" : "deny");
        code = rail->unmatched == PG_UNMATCHED_PASS ? 0 : 3;
        printf("\ndecision   %s\n", code ? "deny (unknown_operation, 403)" : "allow (passed through unchecked)");
        goto done;
    }
    const char *cur = in->currency[0] ? in->currency : pg_policy_currency(pol);
    printf("operation  %s (%s)", pg_op_name(in->op), in->route);
    if (in->has_amount) {
        printf(", ");
        print_amount(in->amount, in->currency);
    }
    if (in->counterparty.len)
        printf(" to %.*s", (int)in->counterparty.len, in->counterparty.ptr);
    printf("\n");

    struct pg_spend spend = { 0, 0, 0, (uint32_t)velocity };
    int64_t *slots[3] = { &spend.day, &spend.week, &spend.month };
    for (int k = 0; k < 3; k++) {
        if (!spent[k])
            continue;
        int exp = pg_money_exponent(pg_slice_cstr(cur));
        const char *why = NULL;
        if (exp < 0 || pg_money_parse_decimal(pg_slice_cstr(spent[k]), exp, slots[k], &why) != 0) {
            fprintf(stderr, "payguard: --spent %s: %s\n", spent[k], why ? why : "no currency to read it in");
            code = 2;
            goto done;
        }
    }
    if (cur[0]) {
        printf("spent      daily ");
        print_amount(spend.day, cur);
        printf(", weekly ");
        print_amount(spend.week, cur);
        printf(", monthly ");
        print_amount(spend.month, cur);
        printf(", velocity %u\n", spend.velocity_count);
    }
    printf("\nrules\n");
    if (pg_policy_explain(pol, agent, in, org->tz, now, &spend, print_rule, NULL) != 0 ||
        pg_policy_check(pol, agent, in, org->tz, now, &d) != 0 ||
        pg_policy_check_spend(pol, agent, in, &spend, &d) != 0) {
        fprintf(stderr, "payguard: could not decide\n");
        goto done;
    }
    printf("\ndecision   %s", pg_verdict_name(d.verdict));
    if (d.verdict != PG_VERDICT_ALLOW)
        printf(" (%s, %d)", d.reason, d.status);
    printf("\n");
    if (d.message[0])
        printf("message    %s\n", d.message);
    code = d.verdict == PG_VERDICT_ALLOW ? 0 : d.verdict == PG_VERDICT_DENY ? 3 : 4;
done:
    free(in);
    pg_policy_free(pol);
    pg_routes_free(routes);
    pg_config_free(cfg);
    return code;
}
