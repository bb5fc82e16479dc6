/* The ledger's verbs: `audit verify|export`, `ledger show` and
 * `approvals list|approve|deny`. They open the LMDB environment named by the
 * config's data_dir directly; LMDB lets them run while payguard serves. */
#include "common/pg.h"
#include "ledger/ledger.h"
#include "proxy/agent_view.h"
#include "proxy/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static const char usage_audit[] =
    "Usage: payguard audit verify [-c FILE] [--org ORG]\n"
    "       payguard audit export [-c FILE] [--org ORG] [--since SEQ]\n"
    "\n"
    "verify walks each org's hash chain and prints its entry count and head hash;\n"
    "it exits 1 naming the first bad entry (hash mismatch, gap, broken link).\n"
    "export writes the entries as JSON Lines; each line is the canonical entry with\n"
    "its \"hash\" added, so it can be re-verified with SHA-256 alone (see README).\n";

static const char usage_ledger[] =
    "Usage: payguard ledger show [-c FILE] [--agent ID]\n"
    "\n"
    "Shows each agent's spend in the current day, week and month (posted, pending,\n"
    "limit, headroom), its pending reservations and its recent decisions.\n";

static const char usage_agent[] =
    "Usage: payguard agent revoke    ID [-c FILE] [--reason TEXT] [--as NAME]\n"
    "       payguard agent reinstate ID [-c FILE] [--reason TEXT] [--as NAME]\n"
    "\n"
    "revoke refuses the agent from its very next request (401 payguard_agent_revoked,\n"
    "with the reason), while payguard keeps running: no reload needed. reinstate\n"
    "undoes it. Both are audited with NAME (default: the login name).\n";

static const char usage_approvals[] =
    "Usage: payguard approvals list    [-c FILE] [--org ORG] [--all]\n"
    "       payguard approvals approve ID [-c FILE] [--note TEXT] [--as NAME]\n"
    "       payguard approvals deny    ID [-c FILE] [--note TEXT] [--as NAME]\n"
    "\n"
    "Held payments wait for a human. list shows pending ones (--all: every one).\n"
    "approve lets the agent's retry with the same Idempotency-Key go through once\n"
    "(limits still apply); deny makes it fail with 403. Each decision is audited\n"
    "with NAME (default: the login name).\n";

static const char usage_webhooks[] =
    "Usage: payguard webhooks list   [-c FILE]\n"
    "       payguard webhooks enable ep_ID [-c FILE] [--as NAME]\n"
    "\n"
    "list shows each webhook of the config with its id, state and events. An\n"
    "endpoint that answered 410 Gone gets nothing more until enable lets it receive\n"
    "events again (those written meanwhile are not sent); audited in every org's\n"
    "chain with NAME (default: the login name). A running payguard sees it at once.\n";

struct cli_opts {
    const char *config;
    const char *org;
    const char *agent;
    const char *note;
    const char *as;
    const char *id;
    uint64_t since;
    bool all;
};

/* Parses the options shared by these verbs; a positional ID (named id_name in
 * the error when it is missing) when id_name is not NULL. */
static int parse_opts(int argc, char **argv, const char *id_name, const char *usage,
                      struct cli_opts *o)
{
    o->config = "payguard.yaml";
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (pg_cli_is_help(a)) {
            fputs(usage, stdout);
            return 1;
        }
        /* argv[i] below argc is never NULL, whatever the analyzer guesses from `&& v` */
        /* NOLINTNEXTLINE(clang-analyzer-core.NonNullParamChecker) */
        if ((strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) && v) {
            o->config = v;
            i++;
        } else if (strcmp(a, "--org") == 0 && v) {
            o->org = v;
            i++;
        } else if (strcmp(a, "--agent") == 0 && v) {
            o->agent = v;
            i++;
        } else if ((strcmp(a, "--note") == 0 || strcmp(a, "--reason") == 0) && v) {
            o->note = v;
            i++;
        } else if (strcmp(a, "--as") == 0 && v) {
            o->as = v;
            i++;
        } else if (strcmp(a, "--since") == 0 && v) {
            char *end;
            unsigned long long n = strtoull(v, &end, 10);
            if (*end || v[0] == '-' || v[0] == '\0') {
                pg_cli_usage_error("--since takes a sequence number", v);
                return -1;
            }
            o->since = n;
            i++;
        } else if (strcmp(a, "--all") == 0) {
            o->all = true;
        } else if (id_name && !o->id && a[0] != '-') {
            o->id = a;
        } else {
            pg_cli_usage_error(v || a[0] != '-' ? "unknown option" : "missing value after", a);
            return -1;
        }
    }
    if (id_name && !o->id) {
        pg_cli_usage_error("missing", id_name);
        return -1;
    }
    return 0;
}

/* The human behind a CLI decision, for the audit log: --as NAME, else the
 * login name. */
static void cli_actor(const struct cli_opts *o, char *out, size_t cap)
{
    const char *who = o->as ? o->as : getenv("USER");
    snprintf(out, cap, "cli:%s", who && *who ? who : "unknown");
}

static int open_ledger(const struct cli_opts *o, bool read_only, struct pg_config **cfg,
                       struct pg_ledger **l)
{
    struct pg_config_errors errs = { 0 };
    char err[256];
    if (pg_config_load(o->config, false, cfg, &errs) != 0) {
        for (size_t i = 0; i < errs.count; i++)
            fprintf(stderr, "%s\n", errs.msgs[i]);
        pg_config_errors_free(&errs);
        return 2;
    }
    struct pg_ledger_options opt = {
        .dir = (*cfg)->data_dir,
        .map_size_max = (uint64_t)(*cfg)->ledger.max_size_mib << 20,
        .idempotency_ttl_s = (*cfg)->ledger.idempotency_ttl_s,
        .approval_ttl_s = (*cfg)->ledger.approval_ttl_s,
        .read_only = read_only,
    };
    if (pg_ledger_open(&opt, l, err, sizeof(err)) != 0) {
        fprintf(stderr, "payguard: cannot open the ledger in %s: %s\n", (*cfg)->data_dir, err);
        pg_config_free(*cfg);
        return 1;
    }
    return 0;
}

static void print_report(void *arg, const struct pg_audit_report *r)
{
    bool *all_ok = arg;
    char hex[2 * PG_SHA256_LEN + 1];
    if (pg_hex_encode(r->head_hash, sizeof(r->head_hash), hex, sizeof(hex)) < 0)
        hex[0] = '\0';
    if (r->ok) {
        printf("org %s: ok, %llu entries, head seq %llu, head hash %s\n", r->org,
               (unsigned long long)r->count, (unsigned long long)r->head_seq, hex);
    } else {
        printf("org %s: BROKEN at seq %llu: %s (%llu entries checked before it)\n", r->org,
               (unsigned long long)r->bad_seq, r->why, (unsigned long long)r->count);
        *all_ok = false;
    }
}

int pg_cli_audit(int argc, char **argv)
{
    struct cli_opts o = { 0 };
    if (argc == 0 || pg_cli_is_help(argv[0])) {
        fputs(usage_audit, argc ? stdout : stderr);
        return argc ? 0 : 2;
    }
    bool verify = strcmp(argv[0], "verify") == 0, export = strcmp(argv[0], "export") == 0;
    if (!verify && !export)
        return pg_cli_usage_error("unknown audit subcommand", argv[0]);
    int rc = parse_opts(argc - 1, argv + 1, NULL, usage_audit, &o);
    if (rc)
        return rc > 0 ? 0 : 2;
    struct pg_config *cfg;
    struct pg_ledger *l;
    if ((rc = open_ledger(&o, true, &cfg, &l)) != 0)
        return rc;
    int code = 0;
    if (verify) {
        bool all_ok = true;
        if (pg_ledger_audit_verify(l, o.org, print_report, &all_ok) != 0) {
            fprintf(stderr, "payguard: could not read the audit log\n");
            code = 1;
        } else {
            code = all_ok ? 0 : 1;
        }
    } else if (pg_ledger_audit_export(l, o.org, o.since, stdout) != 0) {
        fprintf(stderr, "payguard: could not export the audit log\n");
        code = 1;
    }
    pg_ledger_close(l);
    pg_config_free(cfg);
    return code;
}

static void print_money(int64_t minor, const char *currency)
{
    char num[48];
    int exp = pg_money_exponent(pg_slice_cstr(currency));
    if (minor < 0) {
        printf("%-14s", "-");
        return;
    }
    if (exp < 0 || pg_money_format(minor, exp, num, sizeof(num)) < 0)
        snprintf(num, sizeof(num), "%lld", (long long)minor);
    printf("%-14s", num);
}

static int print_pending(void *arg, const struct pg_reservation_view *r)
{
    (void)arg;
    char when[32];
    time_t t = (time_t)r->created_at;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    printf("    #%llu  ", (unsigned long long)r->id);
    print_money(r->amount, r->currency);
    printf(" %s  %s  %s  %s\n", r->currency, when, r->route ? r->route : "",
           r->object_id[0] ? r->object_id : "");
    return 0;
}

static int print_recent(void *arg, const char *json, size_t len)
{
    (void)arg;
    printf("    %.*s\n", (int)len, json);
    return 0;
}

static int show_agent(struct pg_ledger *l, const struct pg_config *cfg, const struct pg_agent *a,
                      int64_t now)
{
    char err[256];
    struct pg_policy *pol = NULL;
    if (pg_policy_compile(cfg, a, &pol, err, sizeof(err)) != 0) {
        fprintf(stderr, "payguard: agent %s: cannot compile its policy\n", a->id);
        return 1;
    }
    /* The same view the admin API answers (GET /v1/agents/{id}). */
    struct pg_agent_view v;
    int rc = pg_agent_view(l, cfg, a, pol, now, &v);
    if (rc != 0) {
        pg_policy_free(pol);
        fprintf(stderr, "payguard: agent %s: %s\n", a->id,
                rc == PG_ENOTFOUND ? "its org has no time zone" : "cannot read its spend");
        return 1;
    }
    const char *cur = v.currency;
    printf("agent %s  (org %s, %s, policy %s, currency %s)\n", a->id, a->org, v.zone,
           a->policy ? a->policy : "none", cur);
    printf("  %-8s %-14s %-14s %-14s %-14s\n", "window", "posted", "pending", "limit", "headroom");
    for (int i = 0; i < 3; i++) {
        const struct pg_window_view *w = &v.w[i];
        printf("  %-8s ", w->name);
        print_money(w->posted, cur);
        printf(" ");
        print_money(w->pending, cur);
        printf(" ");
        print_money(w->limit, cur);
        printf(" ");
        print_money(w->headroom, cur);
        printf("\n");
    }
    if (v.velocity_period_s)
        printf("  velocity: %u money operations in the last %u s\n", v.velocity_count,
               v.velocity_period_s);
    printf("  pending reservations:\n");
    if (pg_ledger_pending(l, a->id, print_pending, NULL) != 0)
        printf("    (could not read)\n");
    printf("  recent decisions:\n");
    if (pg_ledger_audit_recent(l, a->org, a->id, 10, print_recent, NULL) != 0)
        printf("    (could not read)\n");
    printf("\n");
    pg_policy_free(pol);
    return 0;
}

int pg_cli_ledger(int argc, char **argv)
{
    struct cli_opts o = { 0 };
    if (argc == 0 || pg_cli_is_help(argv[0])) {
        fputs(usage_ledger, argc ? stdout : stderr);
        return argc ? 0 : 2;
    }
    if (strcmp(argv[0], "show") != 0)
        return pg_cli_usage_error("unknown ledger subcommand", argv[0]);
    int rc = parse_opts(argc - 1, argv + 1, NULL, usage_ledger, &o);
    if (rc)
        return rc > 0 ? 0 : 2;
    struct pg_config *cfg;
    struct pg_ledger *l;
    if ((rc = open_ledger(&o, true, &cfg, &l)) != 0)
        return rc;
    int64_t now = (int64_t)time(NULL);
    int code = 0;
    bool found = false;
    for (size_t i = 0; i < cfg->nagents; i++) {
        if (o.agent && strcmp(o.agent, cfg->agents[i].id) != 0)
            continue;
        found = true;
        code |= show_agent(l, cfg, &cfg->agents[i], now);
    }
    if (o.agent && !found) {
        fprintf(stderr, "payguard: no agent %s in %s\n", o.agent, o.config);
        code = 2;
    }
    pg_ledger_close(l);
    pg_config_free(cfg);
    return code;
}

static int print_approval(void *arg, const struct pg_approval *a)
{
    (void)arg;
    char created[32], expires[32];
    struct tm tm;
    time_t t = (time_t)a->created_at;
    gmtime_r(&t, &tm);
    strftime(created, sizeof(created), "%Y-%m-%dT%H:%M:%SZ", &tm);
    t = (time_t)a->expires_at;
    gmtime_r(&t, &tm);
    strftime(expires, sizeof(expires), "%Y-%m-%dT%H:%M:%SZ", &tm);
    printf("%s  %-8s  org %s  agent %s  ", a->id, pg_approval_status_name(a->status), a->org, a->agent);
    if (a->has_amount) {
        print_money(a->amount, a->currency);
        printf("%s  ", a->currency);
    }
    printf("%s%s%s  reason %s  created %s  expires %s",
           a->route && a->route[0] ? a->route : pg_op_name(a->op), a->counterparty[0] ? " to " : "",
           a->counterparty, a->reason, created, expires);
    if (a->decided_by[0])
        printf("  by %s", a->decided_by);
    if (a->note[0])
        printf("  note \"%s\"", a->note);
    printf("\n");
    return 0;
}

int pg_cli_approvals(int argc, char **argv)
{
    struct cli_opts o = { 0 };
    if (argc == 0 || pg_cli_is_help(argv[0])) {
        fputs(usage_approvals, argc ? stdout : stderr);
        return argc ? 0 : 2;
    }
    bool list = strcmp(argv[0], "list") == 0, approve = strcmp(argv[0], "approve") == 0,
         deny = strcmp(argv[0], "deny") == 0;
    if (!list && !approve && !deny)
        return pg_cli_usage_error("unknown approvals subcommand", argv[0]);
    int rc = parse_opts(argc - 1, argv + 1, list ? NULL : "the approval id (apr_...)", usage_approvals, &o);
    if (rc)
        return rc > 0 ? 0 : 2;
    struct pg_config *cfg;
    struct pg_ledger *l;
    if ((rc = open_ledger(&o, list, &cfg, &l)) != 0)
        return rc;
    int64_t now = (int64_t)time(NULL);
    int code = 0;
    if (list) {
        if (pg_ledger_approvals(l, o.org, !o.all, now, print_approval, NULL) != 0) {
            fprintf(stderr, "payguard: could not read approvals\n");
            code = 1;
        }
    } else {
        char actor[160];
        cli_actor(&o, actor, sizeof(actor));
        rc = pg_ledger_approval_decide(l, o.id, approve, actor, o.note ? o.note : "", now);
        if (rc == 0) {
            printf("%s %s\n", o.id, approve ? "approved: the agent's retry with the same Idempotency-Key will go through once" : "denied");
        } else if (rc == PG_ENOTFOUND) {
            fprintf(stderr, "payguard: no approval %s\n", o.id);
            code = 1;
        } else if (rc == PG_EBUSY) {
            fprintf(stderr, "payguard: approval %s is no longer pending (decided or expired)\n", o.id);
            code = 1;
        } else {
            fprintf(stderr, "payguard: could not record the decision: %s\n", pg_strerror(rc));
            code = 1;
        }
    }
    pg_ledger_close(l);
    pg_config_free(cfg);
    return code;
}

int pg_cli_agent(int argc, char **argv)
{
    struct cli_opts o = { 0 };
    if (argc == 0 || pg_cli_is_help(argv[0])) {
        fputs(usage_agent, argc ? stdout : stderr);
        return argc ? 0 : 2;
    }
    bool revoke = strcmp(argv[0], "revoke") == 0, reinstate = strcmp(argv[0], "reinstate") == 0;
    if (!revoke && !reinstate)
        return pg_cli_usage_error("unknown agent subcommand", argv[0]);
    int rc = parse_opts(argc - 1, argv + 1, "the agent id", usage_agent, &o);
    if (rc)
        return rc > 0 ? 0 : 2;
    struct pg_config *cfg;
    struct pg_ledger *l;
    if ((rc = open_ledger(&o, false, &cfg, &l)) != 0)
        return rc;
    int code = 0;
    const struct pg_agent *a = pg_config_agent(cfg, pg_slice_cstr(o.id));
    if (!a) {
        fprintf(stderr, "payguard: no agent %s in %s\n", o.id, o.config);
        code = 2;
    } else {
        char actor[160];
        cli_actor(&o, actor, sizeof(actor));
        rc = pg_ledger_agent_revoke(l, a->org, a->id, revoke, actor, o.note ? o.note : "",
                                    (int64_t)time(NULL));
        if (rc == 0) {
            printf("agent %s %s\n", a->id,
                   revoke ? "revoked: its next request is refused" : "reinstated");
        } else if (rc == PG_ENOTFOUND) {
            fprintf(stderr, "payguard: agent %s is not revoked\n", a->id);
            code = 1;
        } else {
            fprintf(stderr, "payguard: could not record it: %s\n", pg_strerror(rc));
            code = 1;
        }
    }
    pg_ledger_close(l);
    pg_config_free(cfg);
    return code;
}

/* The endpoint's id, and ep_ + its hex as the notifier names it in the
 * audit log. */
static int endpoint_id(const char *url, uint8_t id[PG_ENDPOINT_ID_LEN], char *text, size_t cap)
{
    if (pg_ledger_endpoint_id(url, id) != 0 || cap < 4)
        return PG_ECRYPTO;
    memcpy(text, "ep_", 3);
    return pg_hex_encode(id, PG_ENDPOINT_ID_LEN, text + 3, cap - 3) < 0 ? PG_ECRYPTO : 0;
}

int pg_cli_webhooks(int argc, char **argv)
{
    struct cli_opts o = { 0 };
    if (argc == 0 || pg_cli_is_help(argv[0])) {
        fputs(usage_webhooks, argc ? stdout : stderr);
        return argc ? 0 : 2;
    }
    bool list = strcmp(argv[0], "list") == 0, enable = strcmp(argv[0], "enable") == 0;
    if (!list && !enable)
        return pg_cli_usage_error("unknown webhooks subcommand", argv[0]);
    int rc = parse_opts(argc - 1, argv + 1, enable ? "the endpoint id (ep_...)" : NULL, usage_webhooks, &o);
    if (rc)
        return rc > 0 ? 0 : 2;
    struct pg_config *cfg;
    struct pg_ledger *l;
    if ((rc = open_ledger(&o, list, &cfg, &l)) != 0)
        return rc;
    int code = enable ? 1 : 0;
    bool found = false;
    for (size_t i = 0; i < cfg->nwebhooks; i++) {
        const struct pg_webhook *w = &cfg->webhooks[i];
        uint8_t id[PG_ENDPOINT_ID_LEN];
        char text[4 + 2 * PG_ENDPOINT_ID_LEN];
        int64_t at = 0;
        if (endpoint_id(w->url, id, text, sizeof(text)) != 0) {
            fprintf(stderr, "payguard: cannot name the endpoint %s\n", w->url);
            code = 1;
            break;
        }
        if (list) {
            int dis = pg_ledger_endpoint_disabled(l, id, &at);
            char when[32] = "";
            if (dis == 1) {
                time_t t = (time_t)at;
                struct tm tm;
                gmtime_r(&t, &tm);
                strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
            }
            printf("%s  %s  %s%s  events", text, w->url,
                   dis == 1 ? "disabled (410) since " : dis == 0 ? "active" : "unknown", when);
            for (size_t k = 0; k < w->nevents; k++)
                printf("%s%s", k ? "," : " ", w->events[k]);
            printf("\n");
            if (dis < 0)
                code = 1;
            continue;
        }
        if (strcmp(text, o.id) != 0)
            continue;
        found = true;
        char actor[160];
        cli_actor(&o, actor, sizeof(actor));
        const char **orgs = calloc(cfg->norgs ? cfg->norgs : 1, sizeof(*orgs));
        for (size_t k = 0; orgs && k < cfg->norgs; k++)
            orgs[k] = cfg->orgs[k].name;
        rc = orgs ? pg_ledger_endpoint_enable(l, id, orgs, cfg->norgs, actor, (int64_t)time(NULL))
                  : PG_ENOMEM;
        free(orgs);
        if (rc == 0) {
            printf("%s enabled: it receives events again\n", text);
            code = 0;
        } else if (rc == PG_ENOTFOUND) {
            fprintf(stderr, "payguard: %s is not disabled\n", text);
        } else {
            fprintf(stderr, "payguard: could not record it: %s\n", pg_strerror(rc));
        }
        break;
    }
    if (list && cfg->nwebhooks == 0)
        printf("no webhooks in %s\n", o.config);
    if (enable && !found)
        fprintf(stderr, "payguard: no webhook %s in %s (see payguard webhooks list)\n", o.id,
                o.config);
    pg_ledger_close(l);
    pg_config_free(cfg);
    return code;
}
