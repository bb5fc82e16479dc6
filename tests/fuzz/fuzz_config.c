/* payguard.yaml, loaded through the real loader (libyaml, the schema walk,
 * zone files) from an in-memory file, secrets left unresolved as
 * `payguard check --no-env` does. A config that loads must be one the rest
 * of payguard can use: every rail's route table builds, every agent's policy
 * compiles, names it refers to exist, limits sit in their documented ranges
 * and webhook targets pass the URL guard. A config that does not load must
 * say why, each problem as "file:line:col: message".
 * Input: the file. */
#include "common/pg.h"
#include "config/config.h"
#include "policy/policy.h"
#include "tests/fuzz/helpers.h"

#include <stdio.h>
#include <stdlib.h>

static bool is_digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return n > 0;
}

/* "PATH:LINE:COL: message" */
static void check_problem(const char *path, const char *msg)
{
    size_t pl = strlen(path);
    FUZZ_CHECK(strncmp(msg, path, pl) == 0 && msg[pl] == ':', "no file in \"%s\"", msg);
    const char *l = msg + pl + 1, *c = strchr(l, ':');
    FUZZ_CHECK(c && is_digits(l, (size_t)(c - l)), "no line in \"%s\"", msg);
    const char *m = strchr(c + 1, ':');
    FUZZ_CHECK(m && is_digits(c + 1, (size_t)(m - c - 1)) && m[1] == ' ' && m[2],
               "no column or message in \"%s\"", msg);
}

static void check_loaded(const struct pg_config *cfg)
{
    char err[512];
    const struct pg_limits *lim = &cfg->limits;
    FUZZ_CHECK(lim->header_bytes >= 256 && lim->header_bytes <= 1048576 && lim->max_headers >= 1 &&
                   lim->max_headers <= 10000 && lim->body_bytes >= 1 &&
                   lim->body_bytes <= 1073741824u,
               "limits out of range");
    FUZZ_CHECK(cfg->nrails >= 1, "a config without rails");
    for (size_t i = 0; i < cfg->nrails; i++) {
        const struct pg_rail *r = &cfg->rails[i];
        FUZZ_CHECK(r->name && r->upstream_host && r->upstream_host[0] && r->upstream_hostport,
                   "rail %zu has no upstream", i);
        FUZZ_CHECK(r->upstream_tls || r->allow_http, "plain HTTP to %s without allow_http",
                   r->name);
        FUZZ_CHECK(pg_config_rail(cfg, pg_slice_cstr(r->name)) == r, "rail %s twice", r->name);
        struct pg_routes *routes = NULL;
        int rc = pg_routes_build(r, &routes, err, sizeof err);
        FUZZ_CHECK(rc == 0, "rail %s loaded but its routes do not build: %s", r->name, err);
        pg_routes_free(routes);
    }
    for (size_t i = 0; i < cfg->norgs; i++)
        FUZZ_CHECK(cfg->orgs[i].tz, "org %s without a zone", cfg->orgs[i].name);
    for (size_t i = 0; i < cfg->nagents; i++) {
        const struct pg_agent *a = &cfg->agents[i];
        const struct pg_org *org = pg_config_org(cfg, pg_slice_cstr(a->org));
        FUZZ_CHECK(org && org->tz, "agent %s names an org that is not there", a->id);
        FUZZ_CHECK(a->nrails >= 1, "agent %s without rails", a->id);
        for (size_t k = 0; k < a->nrails; k++)
            FUZZ_CHECK(pg_config_rail(cfg, pg_slice_cstr(a->rails[k])), "agent %s: rail %s",
                       a->id, a->rails[k]);
        FUZZ_CHECK(!a->policy || pg_config_policy(cfg, pg_slice_cstr(a->policy)),
                   "agent %s: policy %s", a->id, a->policy);
        FUZZ_CHECK(a->token_hash || a->cert_subject || a->has_cert_spki,
                   "agent %s has no way to authenticate", a->id);
        struct pg_policy *p = NULL;
        int rc = pg_policy_compile(cfg, a, &p, err, sizeof err);
        FUZZ_CHECK(rc == 0, "agent %s loaded but its policy does not compile: %s", a->id, err);
        int64_t lim_v;
        FUZZ_CHECK(pg_policy_limit(p, PG_LIMIT_DAILY, NULL, &lim_v) == 0, "daily limit view");
        pg_policy_free(p);
    }
    for (size_t i = 0; i < cfg->npolicies; i++) {
        const struct pg_policy_spec *s = &cfg->policies[i];
        if (s->currency)
            FUZZ_CHECK(pg_money_exponent(pg_slice_cstr(s->currency)) >= 0, "policy %s: %s",
                       s->name, s->currency);
        if (s->hours_from)
            FUZZ_CHECK(s->hours_from_min < s->hours_to_min && s->hours_to_min <= 1440,
                       "policy %s: hours", s->name);
    }
    for (size_t i = 0; i < cfg->nwebhooks; i++) {
        const struct pg_webhook *w = &cfg->webhooks[i];
        struct pg_url_result r;
        FUZZ_CHECK(pg_url_check(&cfg->url_guard, pg_slice_cstr(w->url), &r),
                   "webhook %s loaded but the URL guard refuses it: %s", w->url, r.why);
        FUZZ_CHECK(w->nevents >= 1 && w->nthresholds <= PG_WEBHOOK_MAX_THRESHOLDS &&
                       w->nprevious <= PG_WEBHOOK_MAX_PREVIOUS,
                   "webhook %s: counts", w->url);
        for (size_t k = 1; k < w->nthresholds; k++)
            FUZZ_CHECK(w->thresholds[k - 1] < w->thresholds[k], "thresholds not ascending");
    }
    for (size_t i = 0; i < cfg->nusers; i++) {
        const struct pg_user *u = &cfg->users[i];
        for (const char *c = u->email; *c; c++)
            FUZZ_CHECK(!(*c >= 'A' && *c <= 'Z'), "email %s not lower case", u->email);
        FUZZ_CHECK(pg_config_org(cfg, pg_slice_cstr(u->org)), "user %s: org", u->email);
        FUZZ_CHECK(u->nrecovery <= 10, "recovery codes");
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct pg_config *cfg = NULL;
    struct pg_config_errors errs;
    int rc = fuzz_config_load((const char *)data, size, false, &cfg, &errs);
    if (rc == 0) {
        check_loaded(cfg);
        pg_config_free(cfg);
        return 0;
    }
    FUZZ_CHECK(rc == PG_ECONFIG, "load: %s", pg_strerror(rc));
    FUZZ_CHECK(errs.count >= 1, "refused without a problem");
    static char path[64];
    snprintf(path, sizeof path, "%s", errs.msgs[0]);
    char *colon = strchr(path, ':');
    FUZZ_CHECK(colon, "no file in \"%s\"", errs.msgs[0]);
    *colon = '\0';
    for (size_t i = 0; i < errs.count; i++) {
        /* Past the cap (config/report.c) one last line says so, without a
         * position. */
        if (i == errs.count - 1 && i > 0 && strstr(errs.msgs[i], ": too many problems ("))
            break;
        check_problem(path, errs.msgs[i]);
    }
    pg_config_errors_free(&errs);
    return 0;
}
