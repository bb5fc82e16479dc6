/* The config loader: the example file, defaults, every kind of problem with
 * its exact file:line:col, listen addresses, upstream URLs and secrets.
 * Each test writes its YAML to payguard.yaml in a private temp directory (the
 * process works there), so messages start with "payguard.yaml:". */
#include "common/pg.h"
#include "config/config.h"
#include "crypto/crypto.h"
#include "policy/tz.h"

#include <arpa/inet.h>
#include <crypt.h>
#include <limits.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

/* A well-formed bcrypt hash (of the public demo token). */
#define HASH "$2b$10$c8EmyI6MDiMPvJLosKpHqexPVqnbKkkrngcWQCn08gdpBLQ6b1xyG"
#define DEMO_TOKEN "pgt_demo_shopper_0000000000000000000000000000"
#define DEMO_PASSWORD "payguard-demo-password"

/* 2026-07-15T12:00:00Z (summer time in Paris) and 2026-01-15T12:00:00Z. */
#define JULY_15_2026 INT64_C(1784116800)
#define JANUARY_15_2026 INT64_C(1768478400)

static char example_path[PATH_MAX]; /* payguard.yaml.example, absolute */
static char data_dir[PATH_MAX];     /* tests/data/config, absolute */
static char work_dir[PATH_MAX];     /* the temp dir the tests run in */

static void write_file(const char *name, const char *text)
{
    FILE *f = fopen(name, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
    assert_int_equal(fclose(f), 0);
}

static int load_text(const char *yaml, bool resolve, struct pg_config **cfg,
                     struct pg_config_errors *errs)
{
    write_file("payguard.yaml", yaml);
    *cfg = NULL;
    return pg_config_load("payguard.yaml", resolve, cfg, errs);
}

static void print_errors(const struct pg_config_errors *errs)
{
    for (size_t i = 0; i < errs->count; i++)
        fprintf(stderr, "    got: %s\n", errs->msgs[i]);
}

/* The load failed with exactly these messages, in this order. */
static void expect_errors_(int rc, struct pg_config *cfg, struct pg_config_errors *errs,
                           const char *const *want, size_t n)
{
    assert_null(cfg);
    assert_int_equal(rc, PG_ECONFIG);
    if (errs->count != n)
        print_errors(errs);
    assert_int_equal(errs->count, n);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(errs->msgs[i], want[i]) != 0)
            print_errors(errs);
        assert_string_equal(errs->msgs[i], want[i]);
    }
    pg_config_errors_free(errs);
    assert_null(errs->msgs);
    assert_int_equal(errs->count, 0);
}

#define EXPECT_ERRORS(yaml, ...)                                                                   \
    do {                                                                                           \
        static const char *const want_[] = {__VA_ARGS__};                                          \
        struct pg_config *cfg_;                                                                    \
        struct pg_config_errors errs_;                                                             \
        int rc_ = load_text((yaml), true, &cfg_, &errs_);                                          \
        expect_errors_(rc_, cfg_, &errs_, want_, PG_ARRAY_LEN(want_));                             \
    } while (0)

/* Loads text that must be valid; fails the test with the messages if not. */
static struct pg_config *load_ok(const char *yaml, bool resolve)
{
    struct pg_config *cfg;
    struct pg_config_errors errs;
    int rc = load_text(yaml, resolve, &cfg, &errs);
    if (rc != 0)
        print_errors(&errs);
    assert_int_equal(rc, 0);
    assert_non_null(cfg);
    return cfg;
}

/* 1-based line and column where `needle` first appears in file `path`. */
static void position_of(const char *path, const char *needle, size_t *line, size_t *col)
{
    char buf[256];
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    *line = 0;
    *col = 0;
    while (fgets(buf, sizeof buf, f)) {
        (*line)++;
        const char *hit = strstr(buf, needle);
        if (hit && buf[strspn(buf, " ")] != '#') {
            *col = (size_t)(hit - buf) + 1;
            fclose(f);
            return;
        }
    }
    fclose(f);
    fail_msg("\"%s\" not found in %s", needle, path);
}

static bool bcrypt_matches(const char *secret, const char *hash)
{
    struct crypt_data cd;
    memset(&cd, 0, sizeof cd);
    const char *h = crypt_rn(secret, hash, &cd, sizeof cd);
    return h && strcmp(h, hash) == 0;
}

static uint16_t port_of(const struct pg_addr *a)
{
    if (a->sa.ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)(const void *)&a->sa)->sin6_port);
    return ntohs(((const struct sockaddr_in *)(const void *)&a->sa)->sin_port);
}

/* ---- the example file -------------------------------------------------- */

static void example_loads_with_only_the_stripe_key(void **state)
{
    (void)state;
    struct pg_config *cfg = NULL;
    struct pg_config_errors errs;

    assert_int_equal(setenv("STRIPE_SECRET_KEY", "sk_test_mockrail", 1), 0);
    assert_int_equal(unsetenv("PAYGUARD_WEBHOOK_SECRET"), 0);
    int rc = pg_config_load(example_path, true, &cfg, &errs);
    if (rc)
        print_errors(&errs);
    assert_int_equal(rc, 0);

    assert_string_equal(cfg->path, example_path);
    assert_string_equal(cfg->listen_agents.text, "127.0.0.1:8402");
    assert_int_equal(port_of(&cfg->listen_agents), 8402);
    assert_string_equal(cfg->listen_admin.text, "127.0.0.1:8403");
    assert_int_equal(port_of(&cfg->listen_admin), 8403);
    assert_null(cfg->agents_tls.cert);
    assert_string_equal(cfg->data_dir, "./var/payguard");
    assert_string_equal(cfg->master_key_env, "PAYGUARD_MASTER_KEY");
    assert_null(cfg->log_file);
    assert_int_equal(cfg->limits.header_bytes, 32768);
    assert_int_equal(cfg->limits.auth_failures, 20);

    assert_int_equal(cfg->nrails, 1);
    const struct pg_rail *r = pg_config_rail(cfg, PG_SLICE("stripe"));
    assert_non_null(r);
    assert_int_equal(r->preset, PG_PRESET_STRIPE);
    assert_string_equal(r->upstream, "https://localhost:12111");
    assert_true(r->upstream_tls);
    assert_string_equal(r->upstream_host, "localhost");
    assert_int_equal(r->upstream_port, 12111);
    assert_string_equal(r->upstream_hostport, "localhost:12111");
    assert_string_equal(r->secret_ref, "env:STRIPE_SECRET_KEY");
    assert_string_equal(r->secret, "sk_test_mockrail");
    assert_string_equal(r->ca_file, "./var/mockrail/ca.pem");
    assert_int_equal(r->tls_min, 12);
    assert_int_equal(r->unmatched, PG_UNMATCHED_DENY);
    assert_false(r->allow_http);

    assert_int_equal(r->format, PG_BODY_FORM);
    assert_int_equal(r->nroutes, 0); /* the routes: example is commented out */

    const struct pg_org *o = pg_config_org(cfg, PG_SLICE("acme"));
    assert_non_null(o);
    assert_string_equal(o->timezone, "Europe/Paris");
    assert_non_null(o->tz);
    assert_int_equal(pg_tz_offset(o->tz, JULY_15_2026), 7200);

    assert_int_equal(cfg->nagents, 1);
    const struct pg_agent *a = pg_config_agent(cfg, PG_SLICE("shopper"));
    assert_non_null(a);
    assert_string_equal(a->org, "acme");
    assert_int_equal(a->nrails, 1);
    assert_string_equal(a->rails[0], "stripe");
    assert_string_equal(a->policy, "default");
    assert_int_equal(a->expires, 0);
    assert_false(a->revoked);
    assert_non_null(a->overrides);
    assert_null(a->overrides->name);
    assert_null(a->overrides->currency); /* the policy's usd */
    assert_string_equal(a->overrides->daily, "1000.00");
    assert_null(a->overrides->per_transaction);
    assert_false(a->overrides->has_refunds_restore);
    /* The hash really is the documented demo token's. */
    assert_true(bcrypt_matches(DEMO_TOKEN, a->token_hash));
    assert_false(bcrypt_matches("pgt_demo_shopper_0000000000000000000000000001", a->token_hash));

    assert_int_equal(cfg->nusers, 1);
    assert_string_equal(cfg->users[0].email, "ana@acme.test");
    assert_int_equal(cfg->users[0].role, PG_ROLE_APPROVER);
    assert_true(bcrypt_matches(DEMO_PASSWORD, cfg->users[0].password_hash));

    const struct pg_policy_spec *p = pg_config_policy(cfg, PG_SLICE("default"));
    assert_non_null(p);
    assert_string_equal(p->currency, "usd");
    assert_string_equal(p->per_transaction, "500.00");
    assert_string_equal(p->daily, "2000.00");
    assert_string_equal(p->weekly, "5000.00");
    assert_string_equal(p->monthly, "10000.00");
    assert_string_equal(p->approval_above, "250.00");
    assert_string_equal(p->auto_approve_below, "20.00");
    assert_int_equal(p->nmerchants_allow, 1);
    assert_string_equal(p->merchants_allow[0], "acct_1Trusted*");
    assert_int_equal(p->nmerchants_deny, 0);
    /* hours are shown but commented out, so the demo works at any hour */
    assert_null(p->hours_days);
    assert_null(p->hours_from);
    assert_null(p->hours_to);
    assert_int_equal(p->velocity_max, 10);
    assert_int_equal(p->velocity_per_s, 60);
    assert_int_equal(p->ncurrencies, 2);
    assert_int_equal(p->noperations, 3);
    assert_false(p->refunds_restore);
    assert_true(p->has_refunds_restore);
    assert_int_equal(cfg->nwebhooks, 0);
    pg_config_free(cfg);
}

static void example_checks_without_env_and_names_the_missing_variable(void **state)
{
    (void)state;
    struct pg_config *cfg = NULL;
    struct pg_config_errors errs;
    char want[PATH_MAX + 128];
    size_t line, col;

    assert_int_equal(unsetenv("STRIPE_SECRET_KEY"), 0);
    /* `payguard check` on a machine without the secrets. */
    assert_int_equal(pg_config_load(example_path, false, &cfg, &errs), 0);
    assert_string_equal(cfg->rails[0].secret_ref, "env:STRIPE_SECRET_KEY");
    assert_null(cfg->rails[0].secret);
    pg_config_free(cfg);
    cfg = NULL;

    /* `payguard run`: the one problem, at the secret's value. */
    assert_int_equal(pg_config_load(example_path, true, &cfg, &errs), PG_ECONFIG);
    assert_null(cfg);
    position_of(example_path, "env:STRIPE_SECRET_KEY", &line, &col);
    snprintf(want, sizeof want,
             "%s:%zu:%zu: rails.stripe.secret: environment variable STRIPE_SECRET_KEY is not set",
             example_path, line, col);
    assert_int_equal(errs.count, 1);
    assert_string_equal(errs.msgs[0], want);
    pg_config_errors_free(&errs);
}

/* ---- defaults ------------------------------------------------------------ */

#define MINIMAL                                                                                    \
    "rails:\n"                                                                                     \
    "  stripe:\n"                                                                                  \
    "    upstream: https://api.stripe.com\n"                                                       \
    "    secret: env:PG_TEST_RAIL_KEY\n"

static void defaults_fill_what_the_file_leaves_out(void **state)
{
    (void)state;
    struct pg_config *cfg = load_ok(MINIMAL "orgs:\n  acme:\n", true);

    assert_string_equal(cfg->path, "payguard.yaml");
    assert_string_equal(cfg->listen_agents.text, "127.0.0.1:8402");
    assert_int_equal(cfg->listen_agents.sa.ss_family, AF_INET);
    assert_int_equal(cfg->listen_agents.salen, sizeof(struct sockaddr_in));
    assert_int_equal(port_of(&cfg->listen_agents), 8402);
    assert_string_equal(cfg->listen_admin.text, "127.0.0.1:8403");
    assert_int_equal(port_of(&cfg->listen_admin), 8403);
    assert_null(cfg->agents_tls.cert);
    assert_null(cfg->agents_tls.key);
    assert_null(cfg->agents_tls.client_ca);
    assert_string_equal(cfg->data_dir, "./var/payguard");
    assert_string_equal(cfg->master_key_env, "PAYGUARD_MASTER_KEY");
    assert_null(cfg->log_file);

    assert_int_equal(cfg->limits.header_bytes, 32768);
    assert_int_equal(cfg->limits.max_headers, 100);
    assert_int_equal(cfg->limits.body_bytes, 1048576);
    assert_int_equal(cfg->limits.header_timeout_ms, 10000);
    assert_int_equal(cfg->limits.body_timeout_ms, 30000);
    assert_int_equal(cfg->limits.idle_timeout_ms, 60000);
    assert_int_equal(cfg->limits.drain_timeout_ms, 15000);
    assert_int_equal(cfg->limits.max_connections, 10000);
    assert_int_equal(cfg->limits.auth_failures, 20);

    const struct pg_rail *r = &cfg->rails[0];
    assert_string_equal(r->name, "stripe");
    assert_int_equal(r->preset, PG_PRESET_STRIPE); /* implied by the name */
    assert_true(r->upstream_tls);
    assert_string_equal(r->upstream_host, "api.stripe.com");
    assert_int_equal(r->upstream_port, 443);
    assert_string_equal(r->upstream_hostport, "api.stripe.com");
    assert_string_equal(r->secret, "sk_test_from_env");
    assert_null(r->ca_file);
    assert_int_equal(r->tls_min, 12);
    assert_int_equal(r->timeout_ms, 30000);
    assert_int_equal(r->connect_timeout_ms, 5000);
    assert_int_equal(r->unmatched, PG_UNMATCHED_DENY);
    assert_false(r->allow_http);
    assert_int_equal(r->pool_size, 64);

    assert_int_equal(cfg->norgs, 1);
    assert_string_equal(cfg->orgs[0].timezone, "UTC");
    assert_int_equal(cfg->nagents, 0);
    assert_int_equal(cfg->nusers, 0);
    assert_int_equal(cfg->npolicies, 0);
    assert_int_equal(cfg->nwebhooks, 0);
    pg_config_free(cfg);
}

static void explicit_values_override_defaults(void **state)
{
    (void)state;
    struct pg_config *cfg = load_ok("listen:\n"
                                    "  agents: 0.0.0.0:0\n"
                                    "  admin: \"[::1]:9000\"\n"
                                    "  tls: {cert: a.crt, key: a.key, client_ca: ca.pem}\n"
                                    "data_dir: /srv/pg\n"
                                    "master_key_env: MY_KEY\n"
                                    "log_file: ~\n"
                                    "limits:\n"
                                    "  header_bytes: 4096\n"
                                    "  max_headers: 50\n"
                                    "  body_bytes: 2048\n"
                                    "  header_timeout_ms: 500\n"
                                    "  body_timeout_ms: 600\n"
                                    "  idle_timeout_ms: 700\n"
                                    "  drain_timeout_ms: 0\n"
                                    "  max_connections: 3\n"
                                    "  auth_failures: 5\n"
                                    "rails:\n"
                                    "  pay:\n"
                                    "    preset: adyen\n"
                                    "    upstream: https://API.Example.com:8443/\n"
                                    "    secret: env:PG_TEST_RAIL_KEY\n"
                                    "    ca_file: ca.pem\n"
                                    "    tls_min: 1.3\n"
                                    "    timeout_ms: 1000\n"
                                    "    connect_timeout_ms: 200\n"
                                    "    unmatched: pass\n"
                                    "    pool_size: 0\n",
                                    true);
    assert_string_equal(cfg->listen_agents.text, "0.0.0.0:0");
    assert_int_equal(port_of(&cfg->listen_agents), 0);
    assert_int_equal(cfg->listen_admin.sa.ss_family, AF_INET6);
    assert_int_equal(cfg->listen_admin.salen, sizeof(struct sockaddr_in6));
    assert_int_equal(port_of(&cfg->listen_admin), 9000);
    assert_string_equal(cfg->agents_tls.cert, "a.crt");
    assert_string_equal(cfg->agents_tls.key, "a.key");
    assert_string_equal(cfg->agents_tls.client_ca, "ca.pem");
    assert_string_equal(cfg->data_dir, "/srv/pg");
    assert_string_equal(cfg->master_key_env, "MY_KEY");
    assert_null(cfg->log_file); /* null is the same as absent */
    assert_int_equal(cfg->limits.header_bytes, 4096);
    assert_int_equal(cfg->limits.max_headers, 50);
    assert_int_equal(cfg->limits.body_bytes, 2048);
    assert_int_equal(cfg->limits.header_timeout_ms, 500);
    assert_int_equal(cfg->limits.body_timeout_ms, 600);
    assert_int_equal(cfg->limits.idle_timeout_ms, 700);
    assert_int_equal(cfg->limits.drain_timeout_ms, 0);
    assert_int_equal(cfg->limits.max_connections, 3);
    assert_int_equal(cfg->limits.auth_failures, 5);
    const struct pg_rail *r = &cfg->rails[0];
    assert_int_equal(r->preset, PG_PRESET_ADYEN);
    assert_string_equal(r->upstream_host, "api.example.com");
    assert_int_equal(r->upstream_port, 8443);
    assert_string_equal(r->upstream_hostport, "api.example.com:8443");
    assert_string_equal(r->ca_file, "ca.pem");
    assert_int_equal(r->tls_min, 13);
    assert_int_equal(r->timeout_ms, 1000);
    assert_int_equal(r->connect_timeout_ms, 200);
    assert_int_equal(r->unmatched, PG_UNMATCHED_PASS);
    assert_int_equal(r->pool_size, 0);
    pg_config_free(cfg);
}

/* ---- listen addresses ------------------------------------------------- */

static void addr_parse_accepts_numeric_addresses(void **state)
{
    (void)state;
    struct pg_addr a;
    struct sockaddr_in s4;
    struct sockaddr_in6 s6;
    char buf[INET6_ADDRSTRLEN];

    assert_int_equal(pg_addr_parse("127.0.0.1:8402", &a), 0);
    assert_string_equal(a.text, "127.0.0.1:8402");
    assert_int_equal(a.salen, sizeof s4);
    memcpy(&s4, &a.sa, sizeof s4);
    assert_int_equal(s4.sin_family, AF_INET);
    assert_int_equal(ntohs(s4.sin_port), 8402);
    assert_string_equal(inet_ntop(AF_INET, &s4.sin_addr, buf, sizeof buf), "127.0.0.1");
    pg_addr_clear(&a);
    assert_null(a.text);

    assert_int_equal(pg_addr_parse("[::1]:65535", &a), 0);
    assert_int_equal(a.salen, sizeof s6);
    memcpy(&s6, &a.sa, sizeof s6);
    assert_int_equal(s6.sin6_family, AF_INET6);
    assert_int_equal(ntohs(s6.sin6_port), 65535);
    assert_string_equal(inet_ntop(AF_INET6, &s6.sin6_addr, buf, sizeof buf), "::1");
    pg_addr_clear(&a);

    assert_int_equal(pg_addr_parse("0.0.0.0:0", &a), 0); /* the OS picks */
    assert_int_equal(port_of(&a), 0);
    pg_addr_clear(&a);
    assert_int_equal(pg_addr_parse("[2001:db8::7]:443", &a), 0);
    pg_addr_clear(&a);
    pg_addr_clear(NULL);
}

static void addr_parse_refuses_the_rest(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "127.0.0.1",       /* missing port */
        "127.0.0.1:",      /* empty port */
        "127.0.0.1:70000", /* port out of range */
        "127.0.0.1:-1",
        "127.0.0.1:80x",
        "127.0.0.1:99999999999999999999",
        "localhost:8402", /* names are refused */
        ":8402",
        "::1:8402", /* v6 without brackets */
        "[::1]8402",
        "[::1]",
        "[::1:8402",
        "[127.0.0.1]:80",
        "[]:80",
        "127.1:80", /* inet_aton shorthand is not an address here */
        "256.0.0.1:80",
        "",
        " 127.0.0.1:80",
        "[fe80::1%eth0]:80",
    };
    for (size_t i = 0; i < PG_ARRAY_LEN(bad); i++) {
        struct pg_addr a = {.text = NULL};
        if (pg_addr_parse(bad[i], &a) != PG_EPARSE)
            fail_msg("accepted \"%s\"", bad[i]);
        assert_null(a.text); /* untouched */
    }
    struct pg_addr a;
    assert_int_equal(pg_addr_parse(NULL, &a), PG_EPARSE);
}

static void listen_problems_are_reported_in_place(void **state)
{
    (void)state;
    EXPECT_ERRORS("listen:\n"
                  "  agents: localhost:8402\n"
                  "  admin: 127.0.0.1:70000\n"
                  "  tls: {cert: a.crt}\n" MINIMAL,
                  "payguard.yaml:2:11: listen.agents: \"localhost:8402\": host must be a "
                  "numeric IP address, not a name (e.g. 127.0.0.1:8402 or [::1]:8402)",
                  "payguard.yaml:3:10: listen.admin: \"127.0.0.1:70000\": port must be a "
                  "number from 0 to 65535",
                  "payguard.yaml:4:8: missing required key \"key\" in listen.tls");
    EXPECT_ERRORS("listen:\n"
                  "  admin: 127.0.0.1:8402\n" MINIMAL,
                  "payguard.yaml:2:10: listen: agents and admin are both 127.0.0.1:8402; "
                  "the admin API needs its own port");
    /* Port 0 twice is fine: each listener gets its own. */
    pg_config_free(load_ok("listen: {agents: 127.0.0.1:0, admin: 127.0.0.1:0}\n" MINIMAL, true));
}

static void ledger_settings_default_parse_and_refuse(void **state)
{
    (void)state;
    struct pg_config *cfg = load_ok(MINIMAL, true);
    assert_int_equal(cfg->ledger.idempotency_ttl_s, 86400);
    assert_int_equal(cfg->ledger.approval_ttl_s, 86400);
    assert_int_equal(cfg->ledger.max_size_mib, 4096);
    assert_false(cfg->ledger.settle_before_answer);
    pg_config_free(cfg);
    cfg = load_ok("ledger: {idempotency_ttl: 3d, approval_ttl: 90m, max_size_mib: 512,"
                  " settle_before_answer: true}\n" MINIMAL,
                  true);
    assert_int_equal(cfg->ledger.idempotency_ttl_s, 3 * 86400);
    assert_int_equal(cfg->ledger.approval_ttl_s, 90 * 60);
    assert_int_equal(cfg->ledger.max_size_mib, 512);
    assert_true(cfg->ledger.settle_before_answer);
    pg_config_free(cfg);
    EXPECT_ERRORS("ledger:\n"
                  "  idempotency_ttl: 1h\n"
                  "  approval_ttl: 31d\n"
                  "  max_size_mib: 10\n"
                  "  settle_before_answer: always\n" MINIMAL,
                  "payguard.yaml:2:20: ledger.idempotency_ttl: \"1h\" must be between 24h and 30d",
                  "payguard.yaml:3:17: ledger.approval_ttl: \"31d\" must be between 1m and 30d",
                  "payguard.yaml:4:17: ledger.max_size_mib: must be between 64 and 1048576, got 10",
                  "payguard.yaml:5:25: ledger.settle_before_answer: expected true or false, got \"always\"");
}

/* ---- unknown keys, types, required keys, duplicates -------------------- */

static void unknown_key_suggests_the_closest(void **state)
{
    (void)state;
    EXPECT_ERRORS("rails:\n"
                  "  stripe:\n"
                  "    secret: env:PG_TEST_RAIL_KEY\n"
                  "    upstrem: https://api.stripe.com\n",
                  "payguard.yaml:2:3: missing required key \"upstream\" in rails.stripe",
                  "payguard.yaml:4:5: unknown key \"upstrem\" in rails.stripe "
                  "(did you mean \"upstream\"?)");
    EXPECT_ERRORS("rial: {}\n" MINIMAL "colour: blue\nLimits: {}\n",
                  "payguard.yaml:1:1: unknown key \"rial\" at the top level "
                  "(did you mean \"rails\"?)",
                  "payguard.yaml:6:1: unknown key \"colour\" at the top level",
                  "payguard.yaml:7:1: unknown key \"Limits\" at the top level "
                  "(did you mean \"limits\"?)");
    EXPECT_ERRORS(MINIMAL "policies:\n  p: {curency: usd, dialy: \"1\"}\n",
                  "payguard.yaml:6:7: unknown key \"curency\" in policies.p "
                  "(did you mean \"currency\"?)",
                  "payguard.yaml:6:21: unknown key \"dialy\" in policies.p "
                  "(did you mean \"daily\"?)");
}

static void wrong_types_are_named(void **state)
{
    (void)state;
    EXPECT_ERRORS("listen: [127.0.0.1:8402]\n"
                  "limits:\n"
                  "  max_headers: \"100\"\n"
                  "  body_bytes: 1.5\n"
                  "  idle_timeout_ms: {}\n"
                  "rails:\n"
                  "  stripe:\n"
                  "    upstream: [https://api.stripe.com]\n"
                  "    secret: env:PG_TEST_RAIL_KEY\n"
                  "    allow_http: yes\n"
                  "orgs: [acme]\n"
                  "agents: {id: a}\n",
                  "payguard.yaml:1:9: listen: expected a mapping (key: value), got a list",
                  "payguard.yaml:3:16: limits.max_headers: expected a whole number, got a "
                  "quoted string (remove the quotes)",
                  "payguard.yaml:4:15: limits.body_bytes: expected a whole number, got \"1.5\"",
                  "payguard.yaml:5:20: limits.idle_timeout_ms: expected a whole number, got "
                  "a mapping",
                  "payguard.yaml:8:15: rails.stripe.upstream: expected a string, got a list",
                  "payguard.yaml:10:17: rails.stripe.allow_http: expected true or false, "
                  "got \"yes\"",
                  "payguard.yaml:11:7: orgs: expected a mapping of org names to settings, "
                  "got a list",
                  "payguard.yaml:12:9: agents: expected a list (e.g. [a, b] or lines "
                  "starting with \"- \"), got a mapping");
    EXPECT_ERRORS("- rails\n", "payguard.yaml:1:1: the top level must be a mapping of sections "
                               "(listen:, rails:, agents:, ...), got a list");
}

static void required_keys_are_reported_where_they_belong(void **state)
{
    (void)state;
    EXPECT_ERRORS("data_dir: ./var\n",
                  "payguard.yaml:1:1: missing required top-level key \"rails\"");
    EXPECT_ERRORS("rails: {}\n", "payguard.yaml:1:8: rails: at least one rail is required");
    EXPECT_ERRORS("rails:\n"
                  "  stripe:\n"
                  "    upstream: https://api.stripe.com\n"
                  "    secret:\n"
                  "  mock:\n"
                  "orgs: {acme: {}}\n"
                  "agents:\n"
                  "  - id: a\n"
                  "    org: acme\n"
                  "  - {token: \"" HASH "\", rails: [stripe]}\n",
                  "payguard.yaml:4:5: rails.stripe.secret: a value is required",
                  "payguard.yaml:5:3: missing required key \"preset\" in rails.mock",
                  "payguard.yaml:5:3: missing required key \"upstream\" in rails.mock",
                  "payguard.yaml:5:3: missing required key \"secret\" in rails.mock",
                  "payguard.yaml:8:5: missing required key \"token\" in agents[0]",
                  "payguard.yaml:8:5: missing required key \"rails\" in agents[0]",
                  "payguard.yaml:10:5: missing required key \"id\" in agents[1]",
                  "payguard.yaml:10:5: missing required key \"org\" in agents[1]");
    EXPECT_ERRORS("", "payguard.yaml:1:1: the file is empty; at least \"rails:\" is required");
}

static void duplicate_keys_in_a_mapping(void **state)
{
    (void)state;
    EXPECT_ERRORS("rails:\n"
                  "  stripe:\n"
                  "    upstream: https://api.stripe.com\n"
                  "    secret: env:PG_TEST_RAIL_KEY\n"
                  "    upstream: https://evil.example\n"
                  "limits: {max_headers: 10, max_headers: 20}\n"
                  "data_dir: a\n"
                  "data_dir: b\n",
                  "payguard.yaml:5:5: duplicate key \"upstream\" in rails.stripe "
                  "(first at line 3, column 5)",
                  "payguard.yaml:6:27: duplicate key \"max_headers\" in limits "
                  "(first at line 6, column 10)",
                  "payguard.yaml:8:1: duplicate key \"data_dir\" at the top level "
                  "(first at line 7, column 1)");
}

static void duplicate_rail_org_and_policy_names(void **state)
{
    (void)state;
    EXPECT_ERRORS(
        MINIMAL "  stripe:\n"
                "    upstream: https://api.stripe.com\n"
                "    secret: env:PG_TEST_RAIL_KEY\n"
                "orgs:\n"
                "  acme: {}\n"
                "  acme: {timezone: UTC}\n"
                "policies:\n"
                "  p: {}\n"
                "  p: {}\n",
        "payguard.yaml:5:3: duplicate rail \"stripe\" in rails (first at line 2, column 3)",
        "payguard.yaml:10:3: duplicate org \"acme\" in orgs (first at line 9, column 3)",
        "payguard.yaml:13:3: duplicate policy \"p\" in policies "
        "(first at line 12, column 3)");
}

static void duplicate_agent_ids_and_user_emails(void **state)
{
    (void)state;
    EXPECT_ERRORS(MINIMAL
                  "orgs: {acme: {}}\n"
                  "agents:\n"
                  "  - {id: shopper, org: acme, token: \"" HASH "\", rails: [stripe]}\n"
                  "  - {id: other, org: acme, token: \"" HASH "\", rails: [stripe]}\n"
                  "  - {id: shopper, org: acme, token: \"" HASH "\", rails: [stripe]}\n"
                  "users:\n"
                  "  - {email: Ana@acme.test, org: acme, role: owner, password: \"" HASH "\"}\n"
                  "  - {email: ana@ACME.test, org: acme, role: viewer, password: \"" HASH "\"}\n",
                  "payguard.yaml:9:10: duplicate agent id \"shopper\" (first at line 7, column 10)",
                  "payguard.yaml:12:13: duplicate user \"ana@ACME.test\" "
                  "(first at line 11, column 13)");
}

static void references_must_name_defined_things(void **state)
{
    (void)state;
    EXPECT_ERRORS(
        MINIMAL "orgs: {acme: {}, beta: {}}\n"
                "policies: {default: {}}\n"
                "agents:\n"
                "  - id: a\n"
                "    org: acmee\n"
                "    token: \"" HASH "\"\n"
                "    rails: [stripe, strpe, zzz, stripe]\n"
                "    policy: defualt\n"
                "  - id: b\n"
                "    org: gamma\n"
                "    token: \"" HASH "\"\n"
                "    rails: []\n"
                "    policy: strict\n",
        "payguard.yaml:9:10: agents[0].org: unknown org \"acmee\" (did you mean \"acme\"?)",
        "payguard.yaml:11:21: agents[0].rails[1]: unknown rail \"strpe\" "
        "(did you mean \"stripe\"?)",
        "payguard.yaml:11:28: agents[0].rails[2]: unknown rail \"zzz\" "
        "(defined rails: stripe)",
        "payguard.yaml:11:33: duplicate entry \"stripe\" in agents[0].rails "
        "(first at line 11, column 13)",
        "payguard.yaml:12:13: agents[0].policy: unknown policy \"defualt\" "
        "(did you mean \"default\"?)",
        "payguard.yaml:14:10: agents[1].org: unknown org \"gamma\" "
        "(defined orgs: acme, beta)",
        "payguard.yaml:16:12: agents[1].rails: list at least one rail the agent may use",
        "payguard.yaml:17:13: agents[1].policy: unknown policy \"strict\" "
        "(defined policies: default)");
    EXPECT_ERRORS(MINIMAL "users:\n"
                          "  - {email: a@b.c, org: acme, role: approver, password: \"" HASH "\"}\n",
                  "payguard.yaml:6:25: users[0].org: unknown org \"acme\" (no orgs are defined)");
}

/* ---- secrets -------------------------------------------------------------- */

static void plaintext_secrets_are_refused_without_echo(void **state)
{
    (void)state;
    struct pg_config *cfg;
    struct pg_config_errors errs;

    EXPECT_ERRORS("rails:\n"
                  "  stripe:\n"
                  "    upstream: https://api.stripe.com\n"
                  "    secret: sk_live_51Habcdefghijklmnop\n"
                  "  second-rail:\n"
                  "    preset: generic\n"
                  "    upstream: https://rail.example\n"
                  "    secret: \"hunter2\"\n"
                  "webhooks:\n"
                  "  - url: https://hooks.acme.test/pg\n"
                  "    secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n"
                  "    events: [payment.denied]\n",
                  "payguard.yaml:4:13: rails.stripe.secret: this looks like a Stripe secret "
                  "key written in clear; put it in an environment variable and write "
                  "\"env:STRIPE_SECRET_KEY\" here (or a sealed:v1: value)",
                  "payguard.yaml:8:13: rails.second-rail.secret: secrets must not be written "
                  "in clear in the config file; put it in an environment variable and write "
                  "\"env:SECOND_RAIL_SECRET_KEY\" here (or a sealed:v1: value)",
                  "payguard.yaml:11:13: webhooks[0].secret: this looks like a webhook signing "
                  "secret written in clear; put it in an environment variable and write "
                  "\"env:PAYGUARD_WEBHOOK_SECRET\" here (or a sealed:v1: value)");

    /* Refused in check mode too, and never echoed. */
    assert_int_equal(load_text("rails:\n  stripe:\n    upstream: https://api.stripe.com\n"
                               "    secret: rk_live_SECRETVALUE\n",
                               false, &cfg, &errs),
                     PG_ECONFIG);
    assert_int_equal(errs.count, 1);
    assert_null(strstr(errs.msgs[0], "SECRETVALUE"));
    pg_config_errors_free(&errs);
}

static void env_secrets_resolve_or_name_the_variable(void **state)
{
    (void)state;
    assert_int_equal(unsetenv("PG_TEST_UNSET"), 0);
    assert_int_equal(setenv("PG_TEST_EMPTY", "", 1), 0);
    EXPECT_ERRORS("rails:\n"
                  "  stripe:\n"
                  "    upstream: https://api.stripe.com\n"
                  "    secret: env:PG_TEST_UNSET\n"
                  "  adyen:\n"
                  "    upstream: https://checkout-test.adyen.com\n"
                  "    secret: env:PG_TEST_EMPTY\n"
                  "  generic:\n"
                  "    upstream: https://rail.example\n"
                  "    secret: \"env:1BAD\"\n"
                  "  g2:\n"
                  "    preset: generic\n"
                  "    upstream: https://rail.example\n"
                  "    secret: \"env:\"\n",
                  "payguard.yaml:4:13: rails.stripe.secret: environment variable "
                  "PG_TEST_UNSET is not set",
                  "payguard.yaml:7:13: rails.adyen.secret: environment variable "
                  "PG_TEST_EMPTY is empty",
                  "payguard.yaml:10:13: rails.generic.secret: environment variable name "
                  "must start with a letter or '_'",
                  "payguard.yaml:14:13: rails.g2.secret: names no environment variable "
                  "after \"env:\"");

    /* Check mode leaves variables alone but still checks the syntax. */
    struct pg_config *cfg = load_ok("rails:\n"
                                    "  stripe:\n"
                                    "    upstream: https://api.stripe.com\n"
                                    "    secret: env:PG_TEST_UNSET\n"
                                    "webhooks:\n"
                                    "  - url: https://hooks.acme.test/payguard?x=1\n"
                                    "    secret: env:PG_TEST_UNSET\n"
                                    "    events: [payment.denied]\n",
                                    false);
    assert_string_equal(cfg->rails[0].secret_ref, "env:PG_TEST_UNSET");
    assert_null(cfg->rails[0].secret);
    assert_string_equal(cfg->webhooks[0].secret_ref, "env:PG_TEST_UNSET");
    assert_null(cfg->webhooks[0].secret);
    pg_config_free(cfg);
}

/* Without resolving, a sealed value's shape is checked and nothing opened;
 * opening them is test_seal.c's. */
static void sealed_secrets_check_without_resolving(void **state)
{
    (void)state;
#define SEALED "sealed:v1:Ab5J4x4VP2XZNL1j1Zr6Y6YODi9x5qZZ-cplSmKPd4Fa-9ZpWayKUoalxG90hdpK-y9DuubVozmIkCdzmoYQEuRNYvyOXaT0bA"
    static const char yaml[] = "rails:\n"
                               "  stripe:\n"
                               "    upstream: https://api.stripe.com\n"
                               "    secret: " SEALED "\n";
    struct pg_config *cfg = load_ok(yaml, false);
    assert_string_equal(cfg->rails[0].secret_ref, SEALED);
    assert_null(cfg->rails[0].secret);
    pg_config_free(cfg);
#undef SEALED

    assert_int_equal(unsetenv("PAYGUARD_MASTER_KEY"), 0);
    EXPECT_ERRORS(yaml, "payguard.yaml:4:13: rails.stripe.secret is sealed but "
                        "PAYGUARD_MASTER_KEY is not set");
    EXPECT_ERRORS("rails:\n"
                  "  stripe:\n"
                  "    upstream: https://api.stripe.com\n"
                  "    secret: sealed:v2:abc\n"
                  "  adyen:\n"
                  "    upstream: https://checkout-test.adyen.com\n"
                  "    secret: sealed:v1:not+base64url\n"
                  "webhooks:\n"
                  "  - url: https://hooks.acme.test/payguard\n"
                  "    secret: sealed:v1:AAECAwQFBgcICQoLDA0ODxAREhM-_w\n"
                  "    events: [payment.denied]\n",
                  "payguard.yaml:4:13: rails.stripe.secret: unknown sealed format "
                  "(expected \"sealed:v1:...\")",
                  "payguard.yaml:7:13: rails.adyen.secret: sealed value must be base64url "
                  "(A-Z a-z 0-9 - _) after \"sealed:v1:\"",
                  "payguard.yaml:10:13: webhooks[0].secret: sealed value is truncated or "
                  "damaged; seal the secret again with `payguard seal`");
}

/* ---- upstream URLs ------------------------------------------------------- */

static void http_upstream_needs_allow_http(void **state)
{
    (void)state;
    EXPECT_ERRORS("rails:\n"
                  "  stripe:\n"
                  "    upstream: http://127.0.0.1:12111\n"
                  "    secret: env:PG_TEST_RAIL_KEY\n",
                  "payguard.yaml:3:15: rails.stripe.upstream: plain http:// upstreams are "
                  "refused; to opt in, set \"allow_http: true\" on this rail (for a local "
                  "mock rail only, never a real one)");
    EXPECT_ERRORS("rails:\n"
                  "  stripe:\n"
                  "    upstream: http://127.0.0.1:12111\n"
                  "    allow_http: false\n"
                  "    secret: env:PG_TEST_RAIL_KEY\n",
                  "payguard.yaml:3:15: rails.stripe.upstream: plain http:// upstreams are "
                  "refused; to opt in, set \"allow_http: true\" on this rail (for a local "
                  "mock rail only, never a real one)");

    /* The opt-in works wherever it sits in the mapping. */
    struct pg_config *cfg = load_ok("rails:\n"
                                    "  stripe:\n"
                                    "    upstream: http://127.0.0.1:12111\n"
                                    "    secret: env:PG_TEST_RAIL_KEY\n"
                                    "    allow_http: true\n"
                                    "  local:\n"
                                    "    preset: stripe\n"
                                    "    allow_http: true\n"
                                    "    upstream: http://mock.local:80/\n"
                                    "    secret: env:PG_TEST_RAIL_KEY\n",
                                    true);
    const struct pg_rail *r = pg_config_rail(cfg, PG_SLICE("stripe"));
    assert_true(r->allow_http);
    assert_false(r->upstream_tls);
    assert_string_equal(r->upstream_host, "127.0.0.1");
    assert_int_equal(r->upstream_port, 12111);
    assert_string_equal(r->upstream_hostport, "127.0.0.1:12111");
    r = pg_config_rail(cfg, PG_SLICE("local"));
    assert_int_equal(r->upstream_port, 80);
    assert_string_equal(r->upstream_hostport, "mock.local");
    pg_config_free(cfg);
}

static void upstream_urls_split_into_host_and_port(void **state)
{
    (void)state;
    static const struct {
        const char *url, *host, *hostport;
        uint16_t port;
    } good[] = {
        {"https://api.stripe.com", "api.stripe.com", "api.stripe.com", 443},
        {"https://api.stripe.com/", "api.stripe.com", "api.stripe.com", 443},
        {"HTTPS://Api.Stripe.COM:443", "api.stripe.com", "api.stripe.com", 443},
        {"https://10.1.2.3:8443", "10.1.2.3", "10.1.2.3:8443", 8443},
        {"https://[::1]:12111/", "::1", "[::1]:12111", 12111},
        {"https://[2001:db8::1]", "2001:db8::1", "[2001:db8::1]", 443},
        {"https://rail_1.internal:1", "rail_1.internal", "rail_1.internal:1", 1},
    };
    char yaml[512];

    for (size_t i = 0; i < PG_ARRAY_LEN(good); i++) {
        snprintf(yaml, sizeof yaml,
                 "rails:\n  stripe:\n    upstream: \"%s\"\n    secret: env:PG_TEST_RAIL_KEY\n",
                 good[i].url);
        struct pg_config *cfg = load_ok(yaml, true);
        assert_string_equal(cfg->rails[0].upstream, good[i].url);
        assert_true(cfg->rails[0].upstream_tls);
        assert_string_equal(cfg->rails[0].upstream_host, good[i].host);
        assert_string_equal(cfg->rails[0].upstream_hostport, good[i].hostport);
        assert_int_equal(cfg->rails[0].upstream_port, good[i].port);
        pg_config_free(cfg);
    }
}

static void upstream_urls_refused(void **state)
{
    (void)state;
    static const struct {
        const char *url, *why;
    } bad[] = {
        {"https://api.stripe.com/v1", "must not have a path (got \"/v1\"); agents' "
                                      "request paths are forwarded as they are"},
        {"https://api.stripe.com?x=1", "must not have a ?query"},
        {"https://api.stripe.com/#top",
         "\"https://api.stripe.com/#top\" must not have a #fragment"},
        {"https://user:pw@api.stripe.com", "\"https://user:pw@api.stripe.com\" must not "
                                           "contain user information (user@): credentials "
                                           "belong in secret:"},
        {"ftp://api.stripe.com", "\"ftp://api.stripe.com\" must be an https:// URL "
                                 "(e.g. https://api.stripe.com)"},
        {"api.stripe.com", "\"api.stripe.com\" must be an https:// URL "
                           "(e.g. https://api.stripe.com)"},
        {"https://", "\"https://\" missing host"},
        {"https://:443", "\"https://:443\" missing host"},
        {"https://api.stripe.com:0", "\"https://api.stripe.com:0\" port must be a number "
                                     "from 1 to 65535"},
        {"https://api.stripe.com:70000", "\"https://api.stripe.com:70000\" port must be a "
                                         "number from 1 to 65535"},
        {"https://1.2.3:443", "\"https://1.2.3:443\" not a valid IPv4 address (expected "
                              "four numbers like 10.0.0.1)"},
        {"https://api..stripe.com", "\"https://api..stripe.com\" host name has an empty "
                                    "label (\"..\" or a leading/trailing dot)"},
        {"https://[::g]:443", "\"https://[::g]:443\" not a valid IPv6 address (zone ids "
                              "like %eth0 are not supported)"},
        {"https://ex%61mple.com", "\"https://ex%61mple.com\" host must not be percent-encoded"},
    };
    char yaml[512], want[512];

    for (size_t i = 0; i < PG_ARRAY_LEN(bad); i++) {
        struct pg_config *cfg;
        struct pg_config_errors errs;
        snprintf(yaml, sizeof yaml,
                 "rails:\n  stripe:\n    upstream: \"%s\"\n    secret: env:PG_TEST_RAIL_KEY\n",
                 bad[i].url);
        snprintf(want, sizeof want, "payguard.yaml:3:15: rails.stripe.upstream: %s", bad[i].why);
        int rc = load_text(yaml, true, &cfg, &errs);
        const char *const w[] = {want};
        expect_errors_(rc, cfg, &errs, w, 1);
    }
}

/* ---- YAML syntax ----------------------------------------------------------- */

static void yaml_syntax_errors_carry_the_parser_position(void **state)
{
    (void)state;
    EXPECT_ERRORS("rails:\n"
                  "  stripe:\n"
                  "\tupstream: https://api.stripe.com\n",
                  "payguard.yaml:3:1: invalid YAML: found character that cannot start any "
                  "token (while scanning for the next token at line 3, column 1); indent "
                  "with spaces, not tabs");
    EXPECT_ERRORS("rails:\n"
                  "  stripe: {upstream: https://api.stripe.com, secret: env:X\n"
                  "orgs: {}\n",
                  "payguard.yaml:3:5: invalid YAML: did not find expected ',' or '}' "
                  "(while parsing a flow mapping at line 2, column 11)");
    EXPECT_ERRORS("data_dir: a: b\n",
                  "payguard.yaml:1:12: invalid YAML: mapping values are not allowed in this "
                  "context; a value containing \": \" needs quotes");
    EXPECT_ERRORS("rails: *nothing\n", "payguard.yaml:1:8: invalid YAML: found undefined alias");
    EXPECT_ERRORS("data_dir: \"caf\xe9\"\n",
                  "payguard.yaml:1:16: invalid YAML: invalid trailing UTF-8 octet "
                  "(the file must be UTF-8 text)");
    EXPECT_ERRORS(MINIMAL "---\nrails: {}\n",
                  "payguard.yaml:5:1: a second YAML document; payguard.yaml holds exactly one");
    EXPECT_ERRORS("data_dir: \"a\\0b\"\n" MINIMAL,
                  "payguard.yaml:1:11: data_dir: must not contain a NUL character");

    /* Absurd nesting is refused before libyaml builds the tree (its scanner
     * is quadratic in flow depth). The root mapping is level 1. */
    char deep[7 + 2 * 2000 + 2];
    memcpy(deep, "rails: ", 7);
    memset(deep + 7, '[', 2000);
    memset(deep + 7 + 2000, ']', 2000);
    memcpy(deep + 7 + 4000, "\n", 2);
    EXPECT_ERRORS(deep, "payguard.yaml:1:39: nested more than 32 levels deep; "
                        "payguard.yaml never needs that many");
}

static void top_level_scalars(void **state)
{
    (void)state;
    struct pg_config *cfg = load_ok("log_file: /var/log/payguard.log\n"
                                    "master_key_env: _PG_KEY2\n" MINIMAL,
                                    true);
    assert_string_equal(cfg->log_file, "/var/log/payguard.log");
    assert_string_equal(cfg->master_key_env, "_PG_KEY2");
    pg_config_free(cfg);
    EXPECT_ERRORS("master_key_env: PG-KEY\n"
                  "data_dir: [a]\n"
                  "log_file: ''\n" MINIMAL,
                  "payguard.yaml:1:17: master_key_env: \"PG-KEY\" environment variable name "
                  "may only contain letters, digits and '_'",
                  "payguard.yaml:2:11: data_dir: expected a string, got a list",
                  "payguard.yaml:3:11: log_file: must not be empty");
}

/* ---- a whole broken file ------------------------------------------------- */

static void every_problem_in_a_file_is_reported_in_order(void **state)
{
    (void)state;
    char path[PATH_MAX + 32];
    struct pg_config *cfg = NULL;
    struct pg_config_errors errs;
    static const char *const want[] = {
        ":2:11: listen.agents: \"localhost:8402\": host must be a numeric IP address, "
        "not a name (e.g. 127.0.0.1:8402 or [::1]:8402)",
        ":5:3: unknown key \"max_header\" in limits (did you mean \"max_headers\"?)",
        ":8:15: rails.stripe.upstream: plain http:// upstreams are refused; to opt in, "
        "set \"allow_http: true\" on this rail (for a local mock rail only, never a real one)",
        ":9:13: rails.stripe.secret: this looks like a Stripe secret key written in clear; "
        "put it in an environment variable and write \"env:STRIPE_SECRET_KEY\" here "
        "(or a sealed:v1: value)",
        ":10:14: rails.stripe.tls_min: unknown value \"1.1\" (did you mean \"1.2\"? "
        "expected 1.2 or 1.3)",
        ":13:15: orgs.acme.timezone: \"Mars/Olympus\" is not a timezone known to this "
        "machine's tz database (expected an IANA name like Europe/Paris or UTC)",
        ":16:22: policies.default.per_transaction: \"5,00\" must be a decimal amount like "
        "\"500.00\" (digits, an optional '.' and decimals; no sign or exponent)",
        ":17:30: policies.default.velocity.per: \"1w\" must be a duration like 30s, 5m, 1h or 1d",
        ":24:10: duplicate agent id \"shopper\" (first at line 20, column 9)",
        ":24:24: agents[1].org: unknown org \"acm\" (did you mean \"acme\"?)",
        ":24:36: agents[1].token: must be the bcrypt hash of the token, not the token "
        "itself (payguard token new --agent shopper prints both)",
        ":24:109: agents[1].expires: \"2027-13-01T00:00:00Z\" is not a valid date and time",
    };

    snprintf(path, sizeof path, "%s/many_errors.yaml", data_dir);
    assert_int_equal(pg_config_load(path, true, &cfg, &errs), PG_ECONFIG);
    assert_null(cfg);
    if (errs.count != PG_ARRAY_LEN(want))
        print_errors(&errs);
    assert_int_equal(errs.count, PG_ARRAY_LEN(want));
    for (size_t i = 0; i < PG_ARRAY_LEN(want); i++) {
        char full[PATH_MAX + 512];
        snprintf(full, sizeof full, "%s%s", path, want[i]);
        assert_string_equal(errs.msgs[i], full);
    }
    pg_config_errors_free(&errs);

    /* The caller may not want the messages at all. */
    assert_int_equal(pg_config_load(path, true, &cfg, NULL), PG_ECONFIG);
    assert_null(cfg);
}

static void minimal_fixture_loads(void **state)
{
    (void)state;
    char path[PATH_MAX + 32];
    struct pg_config *cfg = NULL;
    struct pg_config_errors errs;

    snprintf(path, sizeof path, "%s/minimal.yaml", data_dir);
    assert_int_equal(pg_config_load(path, true, &cfg, &errs), 0);
    assert_int_equal(cfg->nagents, 1);
    assert_string_equal(cfg->agents[0].id, "bot");
    assert_string_equal(cfg->rails[0].secret, "sk_test_from_env");
    pg_config_free(cfg);
}

static void unreadable_files_are_reported(void **state)
{
    (void)state;
    struct pg_config *cfg = NULL;
    struct pg_config_errors errs;

    assert_int_equal(pg_config_load("no-such.yaml", true, &cfg, &errs), PG_ECONFIG);
    assert_int_equal(errs.count, 1);
    assert_string_equal(errs.msgs[0],
                        "no-such.yaml:1:1: cannot open the config file: No such file or directory");
    pg_config_errors_free(&errs);
    assert_int_equal(pg_config_load(".", true, &cfg, &errs), PG_ECONFIG);
    assert_string_equal(errs.msgs[0], ".:1:1: not a regular file");
    pg_config_errors_free(&errs);
    assert_null(cfg);
    assert_int_equal(pg_config_load(NULL, true, &cfg, &errs), PG_ECONFIG);
    pg_config_errors_free(NULL);
    pg_config_free(NULL);
}

/* ---- policies ---------------------------------------------------------------- */

static void policy_values_are_checked_and_kept(void **state)
{
    (void)state;
    struct pg_config *cfg =
        load_ok(MINIMAL "policies:\n"
                        "  p:\n"
                        "    currency: EUR\n"
                        "    per_transaction: 0.5\n"
                        "    daily: \"1000\"\n"
                        "    monthly: \"123456789012345.12\"\n"
                        "    merchants: {deny: [\"acct_bad*\", \"?x\"]}\n"
                        "    hours: {days: \"Mon-Wed,sat\", from: \"00:00\", to: \"24:00\"}\n"
                        "    velocity: {max: 3, per: 2h}\n"
                        "    currencies: [EUR, usd]\n"
                        "    operations: [read]\n"
                        "    refunds_restore: true\n"
                        "  empty:\n",
                true);
    const struct pg_policy_spec *p = pg_config_policy(cfg, PG_SLICE("p"));
    assert_string_equal(p->currency, "eur");
    assert_string_equal(p->per_transaction, "0.5");
    assert_string_equal(p->daily, "1000");
    assert_null(p->weekly);
    assert_string_equal(p->monthly, "123456789012345.12");
    assert_int_equal(p->nmerchants_allow, 0);
    assert_int_equal(p->nmerchants_deny, 2);
    assert_string_equal(p->merchants_deny[1], "?x");
    assert_string_equal(p->hours_days, "mon-wed,sat");
    assert_int_equal(p->hours_days_mask, 0x27);
    assert_int_equal(p->hours_from_min, 0);
    assert_int_equal(p->hours_to_min, 1440);
    assert_int_equal(p->velocity_max, 3);
    assert_int_equal(p->velocity_per_s, 7200);
    assert_int_equal(p->ncurrencies, 2);
    assert_string_equal(p->currencies[0], "eur");
    assert_int_equal(p->noperations, 1);
    assert_true(p->refunds_restore);
    assert_true(p->has_refunds_restore);
    p = pg_config_policy(cfg, PG_SLICE("empty"));
    assert_non_null(p);
    assert_null(p->currency);
    assert_null(p->hours_from);
    assert_int_equal(p->velocity_max, 0);
    assert_false(p->has_refunds_restore);
    assert_null(pg_config_policy(cfg, PG_SLICE("nope")));
    pg_config_free(cfg);

    cfg = load_ok(MINIMAL "policies: {q: {hours: {from: \"09:30\", to: \"17:00\"}}}\n", true);
    assert_int_equal(cfg->policies[0].hours_days_mask, 0x7f);
    assert_null(cfg->policies[0].hours_days);
    assert_int_equal(cfg->policies[0].hours_from_min, 570);
    pg_config_free(cfg);
}

static void policy_problems(void **state)
{
    (void)state;
    EXPECT_ERRORS(
        MINIMAL "policies:\n"
                "  p:\n"
                "    currency: us\n"
                "    per_transaction: \"1.\"\n"
                "    daily: \"-5\"\n"
                "    weekly: \".5\"\n"
                "    monthly: 1e3\n"
                "    approval_above: \"1234567890123456\"\n"
                "    hours: {days: \"mon-tue,tue\", from: \"20:00\", to: \"08:00\"}\n"
                "    velocity: {max: 0, per: 0s}\n"
                "    currencies: [usd, USD, euro]\n"
                "    operations: [payment, refnd, payment]\n"
                "    merchants: {allow: [\"a b\"], block: []}\n"
                "  q:\n"
                "    daily: \"10\"\n"
                "    hours: {days: weekdays, to: \"8\"}\n"
                "    velocity: {per: 1m}\n",
        "payguard.yaml:7:15: policies.p.currency: \"us\" must be a 3-letter ISO 4217 "
        "currency code like usd or eur",
        "payguard.yaml:8:22: policies.p.per_transaction: \"1.\" must be a decimal amount like "
        "\"500.00\" (digits, an optional '.' and decimals; no sign or exponent)",
        "payguard.yaml:9:12: policies.p.daily: \"-5\" must be a decimal amount like "
        "\"500.00\" (digits, an optional '.' and decimals; no sign or exponent)",
        "payguard.yaml:10:13: policies.p.weekly: \".5\" must be a decimal amount like "
        "\"500.00\" (digits, an optional '.' and decimals; no sign or exponent)",
        "payguard.yaml:11:14: policies.p.monthly: \"1e3\" must be a decimal amount like "
        "\"500.00\" (digits, an optional '.' and decimals; no sign or exponent)",
        "payguard.yaml:12:21: policies.p.approval_above: \"1234567890123456\" is too "
        "large (more than 15 digits before the '.')",
        "payguard.yaml:13:19: policies.p.hours.days: \"mon-tue,tue\" names a day twice",
        "payguard.yaml:13:53: policies.p.hours.to: must be later than from (\"08:00\" "
        "is not after \"20:00\"; windows across midnight are not supported)",
        "payguard.yaml:14:21: policies.p.velocity.max: must be between 1 and 1000000, got 0",
        "payguard.yaml:14:29: policies.p.velocity.per: \"0s\" must be longer than 0",
        "payguard.yaml:15:23: duplicate entry \"USD\" in policies.p.currencies "
        "(first at line 15, column 18)",
        "payguard.yaml:15:28: policies.p.currencies[2]: \"euro\" must be a 3-letter "
        "ISO 4217 currency code like usd or eur",
        "payguard.yaml:16:27: policies.p.operations[1]: unknown value \"refnd\" (did "
        "you mean \"refund\"? expected payment, refund, transfer, payout, config or read)",
        "payguard.yaml:16:34: duplicate entry \"payment\" in policies.p.operations "
        "(first at line 16, column 18)",
        "payguard.yaml:17:25: policies.p.merchants.allow[0]: pattern may only contain "
        "printable ASCII without spaces",
        "payguard.yaml:17:33: unknown key \"block\" in policies.p.merchants",
        "payguard.yaml:19:5: policies.q: amounts need a currency: add \"currency: usd\" "
        "(the currency the limits are written in)",
        "payguard.yaml:20:12: missing required key \"from\" in policies.q.hours",
        "payguard.yaml:20:19: policies.q.hours.days: \"weekdays\" must list days like "
        "\"mon-fri\" or \"mon,wed,sat\" (names mon tue wed thu fri sat sun)",
        "payguard.yaml:20:33: policies.q.hours.to: \"8\" must be a time of day as "
        "\"HH:MM\" (24-hour clock, e.g. \"08:00\")",
        "payguard.yaml:21:15: missing required key \"max\" in policies.q.velocity");
}

/* ---- exact amounts ----------------------------------------------------------- */

static void amounts_are_exact_for_their_currency(void **state)
{
    (void)state;
    struct pg_config *cfg = load_ok(MINIMAL "policies:\n"
                                            "  yen:\n"
                                            "    currency: JPY\n"
                                            "    daily: \"5000\"\n"
                                            "    approval_above: \"100\"\n"
                                            "    auto_approve_below: \"100\"\n"
                                            "  dinar:\n"
                                            "    currency: kwd\n"
                                            "    per_transaction: \"1.125\"\n"
                                            "  unidad:\n"
                                            "    currency: clf\n"
                                            "    per_transaction: 0.0001\n"
                                            "    currencies: [clf, JPY]\n",
                                    true);
    const struct pg_policy_spec *p = pg_config_policy(cfg, PG_SLICE("yen"));
    assert_string_equal(p->currency, "jpy");
    assert_string_equal(p->daily, "5000");
    /* Equal thresholds are consistent: nothing is above one and below the other. */
    assert_string_equal(p->approval_above, "100");
    assert_string_equal(p->auto_approve_below, "100");
    assert_string_equal(pg_config_policy(cfg, PG_SLICE("dinar"))->per_transaction, "1.125");
    p = pg_config_policy(cfg, PG_SLICE("unidad"));
    assert_string_equal(p->per_transaction, "0.0001"); /* CLF has 4 decimals */
    assert_int_equal(p->ncurrencies, 2);
    assert_string_equal(p->currencies[1], "jpy");
    pg_config_free(cfg);

    EXPECT_ERRORS(MINIMAL "policies:\n"
                          "  default:\n"
                          "    currency: jpy\n"
                          "    daily: \"0.1\"\n"
                          "  usd:\n"
                          "    currency: usd\n"
                          "    per_transaction: \"1.234\"\n"
                          "    approval_above: \"100.00\"\n"
                          "    auto_approve_below: \"100.01\"\n"
                          "  bad:\n"
                          "    currency: xyz\n"
                          "    weekly: \"1.5\"\n"
                          "    currencies: [usd, abc]\n"
                          "  none:\n"
                          "    currency: ~\n"
                          "    monthly: \"10\"\n",
                  "payguard.yaml:8:12: policies.default.daily: \"0.1\" has too many decimal "
                  "places for JPY (0 decimals)",
                  "payguard.yaml:11:22: policies.usd.per_transaction: \"1.234\" has too many "
                  "decimal places for USD (2 decimals)",
                  "payguard.yaml:13:25: policies.usd.auto_approve_below: \"100.01\" is above "
                  "approval_above (\"100.00\"); a payment between the two would be both held "
                  "and never held",
                  /* The refused currency is the one problem: no second one at weekly. */
                  "payguard.yaml:15:15: policies.bad.currency: \"xyz\" is not an ISO 4217 "
                  "currency code payguard knows (like usd, eur or jpy)",
                  "payguard.yaml:17:23: policies.bad.currencies[1]: \"abc\" is not an ISO 4217 "
                  "currency code payguard knows (like usd, eur or jpy)",
                  /* A null currency is no currency. */
                  "payguard.yaml:20:5: policies.none: amounts need a currency: add \"currency: "
                  "usd\" (the currency the limits are written in)");
}

/* ---- org time zones ------------------------------------------------------------ */

static void write_bytes(const char *name, const void *data, size_t len)
{
    FILE *f = fopen(name, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static void org_zones_are_loaded(void **state)
{
    (void)state;
    struct pg_config *cfg = load_ok(MINIMAL "orgs:\n"
                                            "  paris: {timezone: Europe/Paris}\n"
                                            "  plain: {}\n"
                                            "  etc: {timezone: Etc/UTC}\n"
                                            "  tokyo: {timezone: Asia/Tokyo}\n"
                                            "  nothing: {timezone: ~}\n",
                                    true);
    const struct pg_org *o = pg_config_org(cfg, PG_SLICE("paris"));
    assert_non_null(o->tz);
    assert_int_equal(pg_tz_offset(o->tz, JULY_15_2026), 7200);
    assert_int_equal(pg_tz_offset(o->tz, JANUARY_15_2026), 3600);
    o = pg_config_org(cfg, PG_SLICE("plain"));
    assert_string_equal(o->timezone, "UTC");
    assert_non_null(o->tz);
    assert_int_equal(pg_tz_offset(o->tz, JULY_15_2026), 0);
    o = pg_config_org(cfg, PG_SLICE("etc"));
    assert_string_equal(o->timezone, "Etc/UTC");
    assert_int_equal(pg_tz_offset(o->tz, JULY_15_2026), 0);
    assert_int_equal(pg_tz_offset(pg_config_org(cfg, PG_SLICE("tokyo"))->tz, JULY_15_2026),
                     9 * 3600);
    o = pg_config_org(cfg, PG_SLICE("nothing"));
    assert_string_equal(o->timezone, "UTC");
    assert_int_equal(pg_tz_offset(o->tz, JANUARY_15_2026), 0);
    pg_config_free(cfg);
}

/* A file that starts like a zone but does not parse (a truncated copy of a
 * real one, as a damaged tz database would hold) is refused in place. */
static void unparseable_zones_are_refused(void **state)
{
    (void)state;
    uint8_t head[100];
    char dir[PATH_MAX + 16];
    FILE *f = fopen("/usr/share/zoneinfo/Europe/Paris", "rb");
    assert_non_null(f);
    assert_int_equal(fread(head, 1, sizeof head, f), sizeof head);
    fclose(f);
    assert_memory_equal(head, "TZif", 4);

    snprintf(dir, sizeof dir, "%s/zi", work_dir);
    assert_int_equal(mkdir("zi", 0700), 0);
    assert_int_equal(mkdir("zi/Broken", 0700), 0);
    write_bytes("zi/Broken/Zone", head, sizeof head);
    write_bytes("zi/Broken/Empty", "TZif", 4);
    assert_int_equal(setenv("TZDIR", dir, 1), 0);

    EXPECT_ERRORS(MINIMAL "orgs:\n"
                          "  acme: {timezone: Broken/Zone}\n"
                          "  beta: {timezone: Broken/Empty}\n"
                          "  utc: {timezone: UTC}\n",
                  "payguard.yaml:6:20: orgs.acme.timezone: \"Broken/Zone\" names a zone file "
                  "whose TZif data payguard cannot parse (a damaged or unsupported tz "
                  "database file)",
                  "payguard.yaml:7:20: orgs.beta.timezone: \"Broken/Empty\" names a zone file "
                  "whose TZif data payguard cannot parse (a damaged or unsupported tz "
                  "database file)");

    assert_int_equal(unsetenv("TZDIR"), 0);
    unlink("zi/Broken/Zone");
    unlink("zi/Broken/Empty");
    rmdir("zi/Broken");
    rmdir("zi");
}

/* ---- agent overrides ----------------------------------------------------------- */

static void agent_overrides_are_parsed_like_policies(void **state)
{
    (void)state;
    struct pg_config *cfg =
        load_ok(MINIMAL "orgs: {acme: {}}\n"
                        "policies:\n"
                        "  default:\n"
                        "    currency: usd\n"
                        "    daily: \"100.00\"\n"
                        "    approval_above: \"50.00\"\n"
                        "agents:\n"
                        "  - id: a\n"
                        "    org: acme\n"
                        "    token: \"" HASH "\"\n"
                        "    rails: [stripe]\n"
                        "    policy: default\n"
                        "    overrides:\n"
                        "      daily: \"20.50\"\n"
                        "      auto_approve_below: \"5\"\n"
                        "      refunds_restore: false\n"
                        "      operations: [payment]\n"
                        "  - id: b\n"
                        "    org: acme\n"
                        "    token: \"" HASH "\"\n"
                        "    rails: [stripe]\n"
                        "    overrides: {currency: JPY, per_transaction: \"1000\",\n"
                        "                hours: {from: \"09:00\", to: \"17:00\"}}\n"
                        "  - id: c\n"
                        "    org: acme\n"
                        "    token: \"" HASH "\"\n"
                        "    rails: [stripe]\n"
                        "    policy: default\n"
                        "    overrides:\n",
                true);
    const struct pg_policy_spec *o = pg_config_agent(cfg, PG_SLICE("a"))->overrides;
    assert_non_null(o);
    assert_null(o->name);
    assert_null(o->currency); /* amounts read in the policy's usd */
    assert_string_equal(o->daily, "20.50");
    assert_string_equal(o->auto_approve_below, "5");
    assert_null(o->approval_above);
    assert_true(o->has_refunds_restore);
    assert_false(o->refunds_restore);
    assert_int_equal(o->noperations, 1);
    assert_string_equal(o->operations[0], "payment");
    assert_int_equal(o->velocity_max, 0);

    /* No policy: the overrides are the whole policy. */
    const struct pg_agent *b = pg_config_agent(cfg, PG_SLICE("b"));
    assert_null(b->policy);
    assert_string_equal(b->overrides->currency, "jpy");
    assert_string_equal(b->overrides->per_transaction, "1000");
    assert_int_equal(b->overrides->hours_from_min, 9 * 60);
    assert_int_equal(b->overrides->hours_days_mask, 0x7f);
    assert_false(b->overrides->has_refunds_restore);

    assert_null(pg_config_agent(cfg, PG_SLICE("c"))->overrides); /* null: none */
    pg_config_free(cfg);

    EXPECT_ERRORS(MINIMAL "orgs: {acme: {}}\n"
                          "policies:\n"
                          "  nocur: {velocity: {max: 1, per: 1s}}\n"
                          "  eur:\n"
                          "    currency: eur\n"
                          "    auto_approve_below: \"30.00\"\n"
                          "agents:\n"
                          "  - id: a\n"
                          "    org: acme\n"
                          "    token: \"" HASH "\"\n"
                          "    rails: [stripe]\n"
                          "    overrides: {daily: \"10\"}\n"
                          "  - id: b\n"
                          "    org: acme\n"
                          "    token: \"" HASH "\"\n"
                          "    rails: [stripe]\n"
                          "    policy: nocur\n"
                          "    overrides:\n"
                          "      weekly: \"10\"\n"
                          "  - id: c\n"
                          "    org: acme\n"
                          "    token: \"" HASH "\"\n"
                          "    rails: [stripe]\n"
                          "    policy: eur\n"
                          "    overrides:\n"
                          "      approval_above: \"20.001\"\n"
                          "      monthly: \"-1\"\n"
                          "      colour: red\n"
                          "  - id: d\n"
                          "    org: acme\n"
                          "    token: \"" HASH "\"\n"
                          "    rails: [stripe]\n"
                          "    policy: eur\n"
                          "    overrides: {approval_above: \"25\"}\n"
                          "  - id: e\n"
                          "    org: acme\n"
                          "    token: \"" HASH "\"\n"
                          "    rails: [stripe]\n"
                          "    policy: missing\n"
                          "    overrides: {daily: \"1\"}\n"
                          "  - id: f\n"
                          "    org: acme\n"
                          "    token: \"" HASH "\"\n"
                          "    rails: [stripe]\n"
                          "    policy: eur\n"
                          "    overrides: {currency: usd, approval_above: \"25\"}\n"
                          "  - id: g\n"
                          "    org: acme\n"
                          "    token: \"" HASH "\"\n"
                          "    rails: [stripe]\n"
                          "    overrides: [daily]\n",
                  "payguard.yaml:16:17: agents[0].overrides: amounts need a currency: add "
                  "\"currency: usd\" here (the agent has no policy to take it from)",
                  "payguard.yaml:23:7: agents[1].overrides: amounts need a currency: add "
                  "\"currency: usd\" here or to policy nocur",
                  "payguard.yaml:30:23: agents[2].overrides.approval_above: \"20.001\" has too "
                  "many decimal places for EUR (2 decimals)",
                  "payguard.yaml:31:16: agents[2].overrides.monthly: \"-1\" must be a decimal "
                  "amount like \"500.00\" (digits, an optional '.' and decimals; no sign or "
                  "exponent)",
                  "payguard.yaml:32:7: unknown key \"colour\" in agents[2].overrides",
                  /* In force for d: the policy's 30.00 and its own 25. */
                  "payguard.yaml:38:33: agents[3].overrides.approval_above: \"25\" is below "
                  "auto_approve_below (\"30.00\" in policy eur); a payment between the two "
                  "would be both held and never held",
                  /* The unknown policy is the one problem for e. */
                  "payguard.yaml:43:13: agents[4].policy: unknown policy \"missing\" "
                  "(defined policies: nocur, eur)",
                  "payguard.yaml:55:16: agents[6].overrides: expected a mapping (key: value), "
                  "got a list");
}

/* ---- rail routes ------------------------------------------------------------------ */

static void routes_are_parsed(void **state)
{
    (void)state;
    struct pg_config *cfg =
        load_ok("rails:\n"
                "  pay:\n"
                "    preset: generic\n"
                "    upstream: https://rail.example\n"
                "    secret: env:PG_TEST_RAIL_KEY\n"
                "    format: json\n"
                "    routes:\n"
                "      - name: charge\n"
                "        method: post\n"
                "        path: /v1/charges\n"
                "        operation: payment\n"
                "        amount: /amount/value\n"
                "        currency: /amount/currency\n"
                "        counterparty: /merchant~1account\n"
                "        urls: [/callbacks/success, /callbacks/failure]\n"
                "      - method: GET\n"
                "        path: /v1/charges/{id}\n"
                "        operation: read\n"
                "      - {method: DELETE, path: \"/v1/keys/{key_id}\", operation: forbidden}\n"
                "  stripe:\n"
                "    upstream: https://api.stripe.com\n"
                "    secret: env:PG_TEST_RAIL_KEY\n"
                "    format: form\n"
                "    routes:\n"
                "      - {method: POST, path: /v1/subscriptions, operation: payment,\n"
                "         counterparty: [\"transfer_data[destination]\", customer]}\n"
                "      - {method: Post, path: \"/v1/invoices/{id}/pay\", operation: payment,\n"
                "         amount: amount_due, currency: currency}\n"
                "      - {method: POST, path: /v1/checkout/sessions, operation: payment,\n"
                "         amount: \"line_items[][price_data][unit_amount]\",\n"
                "         currency: \"line_items[][price_data][currency]\",\n"
                "         urls: [success_url, cancel_url]}\n"
                "  adyen:\n"
                "    upstream: https://checkout-test.adyen.com\n"
                "    secret: env:PG_TEST_RAIL_KEY\n"
                "  plain:\n"
                "    preset: generic\n"
                "    upstream: https://plain.example\n"
                "    secret: env:PG_TEST_RAIL_KEY\n"
                "    routes: []\n",
                true);
    const struct pg_rail *r = pg_config_rail(cfg, PG_SLICE("pay"));
    assert_int_equal(r->format, PG_BODY_JSON);
    assert_int_equal(r->nroutes, 3);
    const struct pg_route_spec *rt = &r->routes[0];
    assert_string_equal(rt->name, "charge");
    assert_string_equal(rt->method, "POST"); /* stored upper case */
    assert_string_equal(rt->path, "/v1/charges");
    assert_string_equal(rt->operation, "payment");
    assert_string_equal(rt->amount, "/amount/value");
    assert_string_equal(rt->currency, "/amount/currency");
    assert_int_equal(rt->ncounterparty, 1); /* one string is a list of one */
    assert_string_equal(rt->counterparty[0], "/merchant~1account");
    assert_int_equal(rt->nurls, 2);
    assert_string_equal(rt->urls[1], "/callbacks/failure");
    rt = &r->routes[1];
    assert_string_equal(rt->name, "GET /v1/charges/{id}"); /* the default name */
    assert_string_equal(rt->operation, "read");
    assert_null(rt->amount);
    assert_null(rt->counterparty);
    assert_int_equal(rt->ncounterparty, 0);
    assert_string_equal(r->routes[2].operation, "forbidden");
    assert_string_equal(r->routes[2].path, "/v1/keys/{key_id}");

    /* A preset rail's route may leave the money fields to the preset. */
    r = pg_config_rail(cfg, PG_SLICE("stripe"));
    assert_int_equal(r->format, PG_BODY_FORM);
    assert_int_equal(r->nroutes, 3);
    assert_null(r->routes[0].amount);
    assert_int_equal(r->routes[0].ncounterparty, 2);
    assert_string_equal(r->routes[0].counterparty[0], "transfer_data[destination]");
    assert_string_equal(r->routes[1].method, "POST");
    assert_string_equal(r->routes[1].amount, "amount_due");
    assert_string_equal(r->routes[2].amount, "line_items[][price_data][unit_amount]");
    assert_int_equal(r->routes[2].nurls, 2);

    r = pg_config_rail(cfg, PG_SLICE("adyen"));
    assert_int_equal(r->preset, PG_PRESET_ADYEN);
    assert_int_equal(r->format, PG_BODY_JSON); /* implied by the preset */
    assert_int_equal(r->nroutes, 0);
    assert_null(r->routes);
    r = pg_config_rail(cfg, PG_SLICE("plain"));
    assert_int_equal(r->format, PG_BODY_FORM); /* the default */
    assert_int_equal(r->nroutes, 0);
    pg_config_free(cfg);
}

static void route_problems(void **state)
{
    (void)state;
    EXPECT_ERRORS(
        "rails:\n"
        "  pay:\n"
        "    preset: generic\n"
        "    upstream: https://rail.example\n"
        "    secret: env:PG_TEST_RAIL_KEY\n"
        "    format: json\n"
        "    routes:\n"
        "      - {method: POST, path: v1/charges, operation: read}\n"
        "      - {method: POST, path: \"/v1/charges?expand=x\", operation: read}\n"
        "      - {method: GET, path: /v1//charges, operation: read}\n"
        "      - {method: GET, path: \"/v1/{id}x\", operation: read}\n"
        "      - {method: FETCH, path: /v1/a, operation: paymnet}\n"
        "      - method: POST\n"
        "        path: /v1/charges/{id}/capture\n"
        "        operation: payment\n"
        "        amount: /amount~2value\n"
        "        currency: currency\n"
        "        counterparty: []\n"
        "      - method: post\n"
        "        path: /v1/charges/{charge}/capture\n"
        "        operation: refund\n"
        "      - {method: GET, path: /v1/b, operation: read, amount: /amount}\n"
        "      -\n"
        "  stripe:\n"
        "    upstream: https://api.stripe.com\n"
        "    secret: env:PG_TEST_RAIL_KEY\n"
        "    format: json\n"
        "    routes:\n"
        "      - {method: POST, path: /v1/payouts, operation: payout, amount: /amount}\n",
        "payguard.yaml:8:30: rails.pay.routes[0].path: \"v1/charges\" must start with '/' "
        "(e.g. /v1/payouts)",
        "payguard.yaml:9:30: rails.pay.routes[1].path: \"/v1/charges?expand=x\" must not have "
        "a ?query; routes match the path only",
        "payguard.yaml:10:29: rails.pay.routes[2].path: \"/v1//charges\" has an empty segment "
        "(\"//\" or a trailing '/')",
        "payguard.yaml:11:29: rails.pay.routes[3].path: \"/v1/{id}x\" placeholders are a whole "
        "segment like {id}",
        "payguard.yaml:12:18: rails.pay.routes[4].method: unknown value \"FETCH\" (did you "
        "mean \"PATCH\"? expected GET, POST, PUT, PATCH or DELETE)",
        "payguard.yaml:12:49: rails.pay.routes[4].operation: unknown value \"paymnet\" (did "
        "you mean \"payment\"? expected payment, refund, transfer, payout, config, read or "
        "forbidden)",
        "payguard.yaml:16:17: rails.pay.routes[5].amount: \"/amount~2value\" is not a valid "
        "JSON pointer: '~' must be followed by 0 or 1 (~0 stands for '~', ~1 for '/')",
        "payguard.yaml:17:19: rails.pay.routes[5].currency: \"currency\" is a form key, but "
        "this rail's request bodies are JSON; write a JSON pointer like \"/currency\"",
        "payguard.yaml:18:23: rails.pay.routes[5].counterparty: list at least one field (or "
        "leave the key out)",
        "payguard.yaml:19:9: missing required key \"amount\" in rails.pay.routes[6] (a refund "
        "route on a generic rail names the request field holding the amount)",
        "payguard.yaml:19:9: missing required key \"currency\" in rails.pay.routes[6] (a "
        "refund route on a generic rail names the request field holding the currency)",
        /* {id} and {charge} match the same requests; method case does not count. */
        "payguard.yaml:20:15: duplicate route \"POST /v1/charges/{}/capture\" in "
        "rails.pay.routes (first at line 14, column 15); one method and path pattern map to "
        "one operation",
        "payguard.yaml:22:61: rails.pay.routes[7].amount: only payment, refund, transfer and "
        "payout routes carry an amount and a currency (this route is read)",
        "payguard.yaml:23:8: rails.pay.routes[8]: empty entry",
        "payguard.yaml:27:13: rails.stripe.format: the stripe preset's request bodies are "
        "form-encoded; leave format out (it is for generic rails)",
        "payguard.yaml:29:70: rails.stripe.routes[0].amount: \"/amount\" is a JSON pointer, but "
        "this rail's request bodies are form-encoded; write a form key like amount or "
        "transfer_data[destination]");

    /* More path shapes, one route each. */
    static const struct {
        const char *path, *why;
    } bad[] = {
        {"/v1/%7Bid%7D", "must not be percent-encoded"},
        {"/v1/../keys", "must not have \".\" or \"..\" segments"},
        {"/v1/./keys", "must not have \".\" or \"..\" segments"},
        {"/v1/charges/", "has an empty segment (\"//\" or a trailing '/')"},
        {"/v1/{}", "placeholders are a whole segment like {id}"},
        {"/v1/{a-b}", "placeholder names may only contain letters, digits and '_'"},
        {"/v1/{id}/x/{id}", "uses the same placeholder twice"},
        {"/v1/a b", "segments may only contain letters, digits, '_', '.' and '-', or be a "
                    "placeholder like {id}"},
        {"/v1/x{id}", "placeholders are a whole segment like {id}"},
        {"/1/2/3/4/5/6/7/8/9/10/11/12/13/14/15/16/17", "has more than 16 segments"},
    };
    for (size_t i = 0; i < PG_ARRAY_LEN(bad); i++) {
        char yaml[512], want[512];
        struct pg_config *cfg;
        struct pg_config_errors errs;
        snprintf(yaml, sizeof yaml,
                 MINIMAL "    routes:\n"
                         "      - {method: GET, operation: read, path: \"%s\"}\n",
                 bad[i].path);
        snprintf(want, sizeof want, "payguard.yaml:6:46: rails.stripe.routes[0].path: \"%s\" %s",
                 bad[i].path, bad[i].why);
        int rc = load_text(yaml, true, &cfg, &errs);
        const char *const w[] = {want};
        expect_errors_(rc, cfg, &errs, w, 1);
    }
    /* The paths that are fine. */
    struct pg_config *cfg = load_ok(MINIMAL "    routes:\n"
                                            "      - {method: GET, operation: read, path: /}\n"
                                            "      - {method: GET, operation: read, path: "
                                            "\"/v1.2/a_b-c/{a_1}/{B2}\"}\n",
                                    true);
    assert_string_equal(cfg->rails[0].routes[1].path, "/v1.2/a_b-c/{a_1}/{B2}");
    pg_config_free(cfg);
    cfg = load_ok(MINIMAL "    routes:\n"
                          "      - {method: GET, operation: read,\n"
                          "         path: /1/2/3/4/5/6/7/8/9/10/11/12/13/14/15/16,\n"
                          "         counterparty: [a, b, c, d, e, f], urls: [a, b, c, d]}\n",
                  true);
    assert_int_equal(cfg->rails[0].routes[0].ncounterparty, 6);
    assert_int_equal(cfg->rails[0].routes[0].nurls, 4);
    pg_config_free(cfg);
    /* As many fields as a route table holds, and no more. */
    EXPECT_ERRORS(MINIMAL "    routes:\n"
                          "      - {method: GET, path: /a, operation: read,\n"
                          "         counterparty: [a, b, c, d, e, f, g], urls: [a, b, c, d, e]}\n",
                  "payguard.yaml:7:24: rails.stripe.routes[0].counterparty: at most 6 fields, "
                  "got 7",
                  "payguard.yaml:7:53: rails.stripe.routes[0].urls: at most 4 fields, got 5");

    /* Form keys and JSON pointers, on the rail whose bodies they suit. */
    EXPECT_ERRORS(MINIMAL "    routes:\n"
                          "      - method: POST\n"
                          "        path: /v1/x\n"
                          "        operation: transfer\n"
                          "        amount: \"amount[\"\n"
                          "        currency: \"[currency]\"\n"
                          "        counterparty: [\"a[b]c\", \"a b\"]\n"
                          "        urls: {url: x}\n",
                  "payguard.yaml:9:17: rails.stripe.routes[0].amount: \"amount[\" is not a form "
                  "key: each '[' needs a closing ']' around letters, digits, '_', '.' or '-' "
                  "(like transfer_data[destination] or line_items[][price])",
                  "payguard.yaml:10:19: rails.stripe.routes[0].currency: \"[currency]\" is not a "
                  "form key (like amount or transfer_data[destination]) nor a JSON pointer "
                  "(like /amount/value)",
                  "payguard.yaml:11:24: rails.stripe.routes[0].counterparty[0]: \"a[b]c\" is not "
                  "a form key (like amount or transfer_data[destination]) nor a JSON pointer "
                  "(like /amount/value)",
                  "payguard.yaml:11:33: rails.stripe.routes[0].counterparty[1]: \"a b\" is not a "
                  "form key (like amount or transfer_data[destination]) nor a JSON pointer "
                  "(like /amount/value)",
                  "payguard.yaml:12:15: rails.stripe.routes[0].urls: expected a list (e.g. [a, b] "
                  "or lines starting with \"- \"), got a mapping");
    EXPECT_ERRORS(MINIMAL "    routes: {method: GET}\n",
                  "payguard.yaml:5:13: rails.stripe.routes: expected a list (e.g. [a, b] or "
                  "lines starting with \"- \"), got a mapping");
    EXPECT_ERRORS(MINIMAL "    routes:\n"
                          "      - {method: GET, path: /a, operation: read, name: one}\n"
                          "      - {method: GET, path: /b, operation: read, name: one}\n"
                          "      - {method: GET, path: /c, operation: read, name: \"t w o\"}\n"
                          "      - {}\n",
                  "payguard.yaml:7:56: duplicate route name \"one\" in rails.stripe.routes "
                  "(first at line 6, column 56)",
                  "payguard.yaml:8:56: rails.stripe.routes[2].name: \"t w o\" may only contain "
                  "letters, digits, '_', '-' and '.'",
                  "payguard.yaml:9:9: missing required key \"method\" in rails.stripe.routes[3]",
                  "payguard.yaml:9:9: missing required key \"path\" in rails.stripe.routes[3]",
                  "payguard.yaml:9:9: missing required key \"operation\" in "
                  "rails.stripe.routes[3]");
    EXPECT_ERRORS(MINIMAL "  adyen:\n"
                          "    upstream: https://checkout-test.adyen.com\n"
                          "    secret: env:PG_TEST_RAIL_KEY\n"
                          "    format: form\n"
                          "  gen:\n"
                          "    preset: generic\n"
                          "    upstream: https://rail.example\n"
                          "    secret: env:PG_TEST_RAIL_KEY\n"
                          "    format: xml\n",
                  "payguard.yaml:8:13: rails.adyen.format: the adyen preset's request bodies "
                  "are JSON; leave format out (it is for generic rails)",
                  "payguard.yaml:13:13: rails.gen.format: unknown value \"xml\" (expected form "
                  "or json)");
}

/* The routes: example in payguard.yaml.example is commented out; with the
 * comment marks removed it must load as documented. */
static void example_routes_block_is_valid_when_uncommented(void **state)
{
    (void)state;
    char line[512];
    size_t cap = 64 * 1024, used = 0;
    char *text = malloc(cap);
    bool in_block = false, seen = false;
    FILE *f = fopen(example_path, "r");

    assert_non_null(text);
    assert_non_null(f);
    while (fgets(line, sizeof line, f)) {
        const char *out = line;
        if (strncmp(line, "    # routes:", 13) == 0)
            in_block = seen = true;
        else if (in_block && strncmp(line, "    #", 5) != 0)
            in_block = false;
        if (in_block && strncmp(line, "    # ", 6) == 0) {
            memmove(line + 4, line + 6, strlen(line + 6) + 1); /* drop "# " */
            out = line;
        }
        size_t len = strlen(out);
        assert_true(used + len < cap);
        memcpy(text + used, out, len);
        used += len;
    }
    fclose(f);
    text[used] = '\0';
    assert_true(seen);

    assert_int_equal(setenv("STRIPE_SECRET_KEY", "sk_test_mockrail", 1), 0);
    struct pg_config *cfg = load_ok(text, true);
    free(text);
    const struct pg_rail *r = pg_config_rail(cfg, PG_SLICE("stripe"));
    assert_int_equal(r->nroutes, 1);
    assert_string_equal(r->routes[0].name, "subscriptions.create");
    assert_string_equal(r->routes[0].method, "POST");
    assert_string_equal(r->routes[0].operation, "payment");
    assert_string_equal(r->routes[0].amount, "amount");
    assert_int_equal(r->routes[0].ncounterparty, 2);
    assert_int_equal(r->routes[0].nurls, 1);
    pg_config_free(cfg);
}

/* ---- orgs, users, agents, webhooks ------------------------------------ */

static void timezones_must_exist_and_stay_inside_zoneinfo(void **state)
{
    (void)state;
    struct pg_config *cfg = load_ok(MINIMAL "orgs:\n"
                                            "  a: {timezone: America/Argentina/Buenos_Aires}\n"
                                            "  b: {timezone: UTC}\n"
                                            "  c: {timezone: Etc/GMT+5}\n",
                                    true);
    assert_string_equal(pg_config_org(cfg, PG_SLICE("a"))->timezone,
                        "America/Argentina/Buenos_Aires");
    assert_string_equal(pg_config_org(cfg, PG_SLICE("c"))->timezone, "Etc/GMT+5");
    assert_null(pg_config_org(cfg, PG_SLICE("d")));
    pg_config_free(cfg);

    EXPECT_ERRORS(MINIMAL "orgs:\n"
                          "  a: {timezone: ../../../etc/passwd}\n"
                          "  b: {timezone: /etc/localtime}\n"
                          "  c: {timezone: Europe/../../etc/passwd}\n"
                          "  d: {timezone: Europe/Pariss}\n"
                          "  e: {timezone: zone.tab}\n"
                          "  f: {timezone: Europe}\n"
                          "  g: {timezone: \"Europe/Paris extra\"}\n"
                          "  h/i: {}\n",
                  "payguard.yaml:6:17: orgs.a.timezone: \"../../../etc/passwd\" must be an IANA "
                  "timezone name like Europe/Paris, not a path",
                  "payguard.yaml:7:17: orgs.b.timezone: \"/etc/localtime\" must be an IANA "
                  "timezone name like Europe/Paris, not a path",
                  "payguard.yaml:8:17: orgs.c.timezone: \"Europe/../../etc/passwd\" must be an "
                  "IANA timezone name like Europe/Paris, not a path",
                  "payguard.yaml:9:17: orgs.d.timezone: \"Europe/Pariss\" is not a timezone known "
                  "to this machine's tz database (expected an IANA name like Europe/Paris or UTC)",
                  "payguard.yaml:10:17: orgs.e.timezone: \"zone.tab\" must be an IANA timezone "
                  "name like Europe/Paris",
                  "payguard.yaml:11:17: orgs.f.timezone: \"Europe\" is not a timezone known to "
                  "this machine's tz database (expected an IANA name like Europe/Paris or UTC)",
                  "payguard.yaml:12:17: orgs.g.timezone: \"Europe/Paris extra\" must be an IANA "
                  "timezone name like Europe/Paris",
                  "payguard.yaml:13:3: orgs: org name \"h/i\" may only contain letters, digits, "
                  "'_', '-' and '.'");
}

static void users_are_checked(void **state)
{
    (void)state;
    assert_int_equal(setenv("PG_TEST_TOTP", "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ", 1), 0);
    struct pg_config *cfg = load_ok(
        MINIMAL "orgs: {acme: {}}\n"
                "users:\n"
                "  - email: ana@acme.test\n"
                "    org: acme\n"
                "    role: owner\n"
                "    password: \"$2y$12$c8EmyI6MDiMPvJLosKpHqexPVqnbKkkrngcWQCn08gdpBLQ6b1xyG\"\n"
                "    totp: env:PG_TEST_TOTP\n",
        true);
    assert_int_equal(cfg->users[0].role, PG_ROLE_OWNER);
    assert_string_equal(cfg->users[0].org, "acme");
    assert_string_equal(cfg->users[0].totp_ref, "env:PG_TEST_TOTP");
    assert_int_equal(cfg->users[0].totp_len, 20);
    pg_config_free(cfg);

    EXPECT_ERRORS(MINIMAL
                  "orgs: {acme: {}}\n"
                  "users:\n"
                  "  - email: ana\n"
                  "    org: acme\n"
                  "    role: boss\n"
                  "    password: hunter2\n"
                  "    totp: JBSWY3DPEHPK3PXP\n"
                  "  - email: bo@acme.test\n"
                  "    org: acme\n"
                  "    role: admin\n"
                  "    password: \"$2b$10$short\"\n"
                  "  - email: cy@acme.test\n"
                  "    org: acme\n"
                  "    role: admin\n"
                  "    password: \"$2b$99$c8EmyI6MDiMPvJLosKpHqexPVqnbKkkrngcWQCn08gdpBLQ6b1xyG\"\n"
                  "  -\n",
                  "payguard.yaml:7:12: users[0].email: \"ana\" is not an email address "
                  "(expected name@domain)",
                  "payguard.yaml:9:11: users[0].role: unknown value \"boss\" (expected viewer, "
                  "approver, admin or owner)",
                  "payguard.yaml:10:15: users[0].password: must be the bcrypt hash of the "
                  "password, not the password itself (make one with `payguard user passwd`)",
                  "payguard.yaml:11:11: users[0].totp: a TOTP seed must not be written in clear; "
                  "make a sealed one with `payguard user totp` (or write \"env:NAME\")",
                  "payguard.yaml:15:15: users[1].password: is not a complete bcrypt hash "
                  "(a $2b$ hash is 60 characters long)",
                  "payguard.yaml:19:15: users[2].password: bcrypt cost must be between 04 and 31",
                  "payguard.yaml:20:4: users[3]: empty entry");
}

static void agents_are_checked(void **state)
{
    (void)state;
    struct pg_config *cfg = load_ok(MINIMAL "  adyen:\n"
                                            "    upstream: https://checkout-test.adyen.com\n"
                                            "    secret: env:PG_TEST_RAIL_KEY\n"
                                            "orgs: {acme: {}}\n"
                                            "agents:\n"
                                            "  - id: bot-1.a_b\n"
                                            "    org: acme\n"
                                            "    token: \"" HASH "\"\n"
                                            "    rails: [adyen, stripe]\n"
                                            "    expires: 2027-01-01T00:00:00Z\n"
                                            "    revoked: true\n"
                                            "  - id: leap\n"
                                            "    org: acme\n"
                                            "    token: \"" HASH "\"\n"
                                            "    rails: [stripe]\n"
                                            "    expires: \"2028-02-29T12:34:56.789Z\"\n",
                                    true);
    const struct pg_agent *a = pg_config_agent(cfg, PG_SLICE("bot-1.a_b"));
    assert_non_null(a);
    assert_int_equal(a->nrails, 2);
    assert_string_equal(a->rails[0], "adyen");
    assert_string_equal(a->rails[1], "stripe");
    assert_null(a->policy);
    assert_int_equal(a->expires, 1798761600);
    assert_true(a->revoked);
    assert_int_equal(pg_config_agent(cfg, PG_SLICE("leap"))->expires, 1835440496);
    assert_null(pg_config_agent(cfg, PG_SLICE("bot")));
    assert_null(pg_config_agent(cfg, pg_slice_of("leapfrog", 4 + 1)));
    assert_non_null(pg_config_agent(cfg, pg_slice_of("leapfrog", 4)));
    pg_config_free(cfg);

    EXPECT_ERRORS(MINIMAL "orgs: {acme: {}}\n"
                          "agents:\n"
                          "  - id: \"has space\"\n"
                          "    org: acme\n"
                          "    token: \"" HASH "\"\n"
                          "    rails: stripe\n"
                          "    expires: 2027-02-29T00:00:00Z\n"
                          "    revoked: 1\n"
                          "    role: admin\n"
                          "  - id: b\n"
                          "    org: acme\n"
                          "    token: \"" HASH "\"\n"
                          "    rails: [stripe]\n"
                          "    expires: 2027-01-01T00:00:00.Z\n"
                          "  - id: c\n"
                          "    org: acme\n"
                          "    token: \"" HASH "\"\n"
                          "    rails: [stripe]\n"
                          "    expires: 2027-01-01 00:00:00\n",
                  "payguard.yaml:7:9: agents[0].id: \"has space\" may only contain letters, "
                  "digits, '_', '-' and '.'",
                  "payguard.yaml:10:12: agents[0].rails: expected a list (e.g. [a, b] or lines "
                  "starting with \"- \"), got a string",
                  "payguard.yaml:11:14: agents[0].expires: \"2027-02-29T00:00:00Z\" is not a "
                  "valid date (that month is shorter)",
                  "payguard.yaml:12:14: agents[0].revoked: expected true or false, got \"1\"",
                  "payguard.yaml:13:5: unknown key \"role\" in agents[0]",
                  "payguard.yaml:18:14: agents[1].expires: \"2027-01-01T00:00:00.Z\" must be a "
                  "UTC timestamp like 2027-01-01T00:00:00Z",
                  "payguard.yaml:23:14: agents[2].expires: \"2027-01-01 00:00:00\" must be a "
                  "UTC timestamp like 2027-01-01T00:00:00Z");
}

static void webhooks_are_checked(void **state)
{
    (void)state;
    assert_int_equal(setenv("PG_TEST_WH", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", 1), 0);
    struct pg_config *cfg = load_ok(MINIMAL "webhooks:\n"
                                            "  - url: https://hooks.acme.test/payguard\n"
                                            "    secret: env:PG_TEST_WH\n"
                                            "    events: [approval.requested, audit.verify_failed]\n",
                                    true);
    assert_int_equal(cfg->nwebhooks, 1);
    assert_string_equal(cfg->webhooks[0].url, "https://hooks.acme.test/payguard");
    assert_string_equal(cfg->webhooks[0].secret, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
    assert_int_equal(cfg->webhooks[0].nevents, 2);
    assert_string_equal(cfg->webhooks[0].events[1], "audit.verify_failed");
    assert_int_equal(cfg->webhooks[0].nthresholds, 0); /* the notifier's default applies */
    assert_int_equal(cfg->webhooks[0].max_age_s, 0);
    assert_null(cfg->webhooks[0].ca_file);
    pg_config_free(cfg);

    EXPECT_ERRORS(MINIMAL "webhooks:\n"
                          "  - url: http://hooks.acme.test/payguard\n"
                          "    secret: env:PG_TEST_WH\n"
                          "    events: [payment.denied, payment.deniedd]\n"
                          "  - url: https://hooks.acme.test\n"
                          "    secret: env:PG_TEST_WH\n"
                          "    events: []\n"
                          "  - {}\n",
                  "payguard.yaml:6:10: webhooks[0].url: webhook targets must use https://",
                  "payguard.yaml:8:30: webhooks[0].events[1]: unknown value \"payment.deniedd\" "
                  "(did you mean \"payment.denied\"? expected approval.requested, "
                  "approval.decided, approval.expired, budget.threshold, payment.denied, "
                  "agent.revoked or audit.verify_failed)",
                  "payguard.yaml:11:13: webhooks[1].events: list at least one event",
                  "payguard.yaml:12:5: missing required key \"url\" in webhooks[2]",
                  "payguard.yaml:12:5: missing required key \"secret\" in webhooks[2]",
                  "payguard.yaml:12:5: missing required key \"events\" in webhooks[2]");
}

/* Signing secrets are Standard Webhooks ones (whsec_ + base64 of 24-64
 * bytes), previous secrets sign during a rotation, thresholds are
 * fractions of a limit (kept ascending), max_age a duration. */
static void webhook_delivery_settings(void **state)
{
    (void)state;
    assert_int_equal(setenv("PG_TEST_WH", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", 1), 0);
    assert_int_equal(
        setenv("PG_TEST_WH_OLD", "whsec_dGhpcyBpcyB0aGUgb2xkIGtleSBvZiB0aGUgcm90YXRpb24=", 1), 0);
    assert_int_equal(setenv("PG_TEST_WH_BAD", "whsec_tooshort", 1), 0);
    struct pg_config *cfg = load_ok(MINIMAL "webhooks:\n"
                                            "  - url: https://hooks.acme.test/payguard\n"
                                            "    secret: env:PG_TEST_WH\n"
                                            "    previous_secrets: [env:PG_TEST_WH_OLD]\n"
                                            "    events: [budget.threshold]\n"
                                            "    thresholds: [1.0, 0.25, \"0.9\"]\n"
                                            "    max_age: 2h\n"
                                            "    ca_file: /etc/ssl/private-ca.pem\n",
                                    true);
    const struct pg_webhook *w = &cfg->webhooks[0];
    assert_int_equal(w->nprevious, 1);
    assert_string_equal(w->previous[0], "whsec_dGhpcyBpcyB0aGUgb2xkIGtleSBvZiB0aGUgcm90YXRpb24=");
    assert_string_equal(w->previous_refs[0], "env:PG_TEST_WH_OLD");
    assert_int_equal(w->nthresholds, 3);
    assert_int_equal(w->thresholds[0], 250);
    assert_int_equal(w->thresholds[1], 900);
    assert_int_equal(w->thresholds[2], 1000);
    assert_int_equal(w->max_age_s, 7200);
    assert_string_equal(w->ca_file, "/etc/ssl/private-ca.pem");
    pg_config_free(cfg);

    EXPECT_ERRORS(MINIMAL "webhooks:\n"
                          "  - url: https://hooks.acme.test/a\n"
                          "    secret: env:PG_TEST_WH_BAD\n"
                          "    previous_secrets: [env:PG_TEST_WH, env:PG_TEST_WH, env:PG_TEST_WH, "
                          "env:PG_TEST_WH]\n"
                          "    events: [budget.threshold]\n"
                          "    thresholds: [0.5, 0, 1.5, 0.1234, 0.5]\n"
                          "    max_age: 3w\n"
                          "  - url: https://hooks.acme.test/b\n"
                          "    secret: env:PG_TEST_WH\n"
                          "    events: [payment.denied]\n"
                          "    thresholds: [0.5, 0.50]\n",
                  "payguard.yaml:7:13: webhooks[0].secret: a webhook signing secret must be "
                  "\"whsec_\" followed by the base64 of 24 to 64 random bytes (e.g. "
                  "whsec_$(openssl rand -base64 32))",
                  "payguard.yaml:8:23: webhooks[0].previous_secrets: at most 3 previous secrets",
                  "payguard.yaml:10:23: webhooks[0].thresholds[1]: \"0\" must be a fraction of "
                  "the limit above 0 and at most 1, like 0.8",
                  "payguard.yaml:10:26: webhooks[0].thresholds[2]: \"1.5\" must be a fraction of "
                  "the limit above 0 and at most 1, like 0.8",
                  "payguard.yaml:10:31: webhooks[0].thresholds[3]: \"0.1234\" has more than 3 "
                  "decimals",
                  "payguard.yaml:10:39: duplicate entry \"0.5\" in webhooks[0].thresholds "
                  "(first at line 10, column 18)",
                  "payguard.yaml:11:14: webhooks[0].max_age: \"3w\" must be a duration like 30s, "
                  "5m, 1h or 1d",
                  "payguard.yaml:15:17: webhooks[1].thresholds: \"0.50\" is listed twice");
}

static void limits_have_bounds(void **state)
{
    (void)state;
    EXPECT_ERRORS(
        MINIMAL "limits:\n"
                "  header_bytes: 100\n"
                "  body_bytes: 99999999999\n"
                "  max_connections: -1\n"
                "  auth_failures: 0x10\n",
        "payguard.yaml:6:17: limits.header_bytes: must be between 256 and 1048576, got 100",
        "payguard.yaml:7:15: limits.body_bytes: must be between 1 and 1073741824, "
        "got 99999999999",
        "payguard.yaml:8:20: limits.max_connections: expected a whole number, got \"-1\"",
        "payguard.yaml:9:18: limits.auth_failures: expected a whole number, got \"0x10\"");
}

static void lookups_match_whole_names(void **state)
{
    (void)state;
    struct pg_config *cfg = load_ok(MINIMAL, true);
    assert_non_null(pg_config_rail(cfg, PG_SLICE("stripe")));
    assert_null(pg_config_rail(cfg, PG_SLICE("strip")));
    assert_null(pg_config_rail(cfg, PG_SLICE("stripe2")));
    assert_null(pg_config_rail(cfg, PG_SLICE_NULL));
    assert_null(pg_config_rail(NULL, PG_SLICE("stripe")));
    assert_null(pg_config_org(cfg, PG_SLICE("acme")));
    pg_config_free(cfg);
}

static void many_problems_are_capped(void **state)
{
    (void)state;
    /* 300 unknown keys: the list stops at 200 plus a closing line. */
    size_t cap = 300 * 16 + sizeof MINIMAL;
    char *yaml = malloc(cap);
    assert_non_null(yaml);
    size_t used = (size_t)snprintf(yaml, cap, "%s", MINIMAL);
    for (int i = 0; i < 300; i++)
        used += (size_t)snprintf(yaml + used, cap - used, "junk%03d: 1\n", i);
    struct pg_config *cfg;
    struct pg_config_errors errs;
    assert_int_equal(load_text(yaml, true, &cfg, &errs), PG_ECONFIG);
    free(yaml);
    assert_int_equal(errs.count, 201);
    assert_string_equal(errs.msgs[0],
                        "payguard.yaml:5:1: unknown key \"junk000\" at the top level");
    assert_string_equal(errs.msgs[200],
                        "payguard.yaml: too many problems (200 shown); fix these first");
    pg_config_errors_free(&errs);
}

/* ---- users: TOTP seeds and recovery codes --------------------------------------- */

#define USER_AT_7(email)                                                                           \
    "  - email: " email "\n"                                                                       \
    "    org: acme\n"                                                                              \
    "    role: viewer\n"                                                                           \
    "    password: \"" HASH "\"\n"

#define TOTP_PASS "correct horse battery staple 7"
#define RFC_SEED_B32 "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ" /* "12345678901234567890" */

/* A sealed seed opens only at users[I].totp for its own I. */
static void users_totp_sealed_opens_at_its_path(void **state)
{
    (void)state;
    char sealed[PG_SEAL_TEXT_BUF], yaml[PG_SEAL_TEXT_BUF + 1024];
    struct pg_config *cfg;

    assert_int_equal(setenv("PAYGUARD_MASTER_KEY", TOTP_PASS, 1), 0);
    assert_true(pg_seal(PG_SLICE(TOTP_PASS), PG_SLICE("users[1].totp"), PG_SLICE(RFC_SEED_B32),
                        sealed, sizeof sealed) > 0);
    snprintf(yaml, sizeof yaml,
             MINIMAL "orgs: {acme: {}}\n"
                     "users:\n" USER_AT_7("a@acme.test") USER_AT_7("b@acme.test") "    totp: %s\n",
             sealed);
    cfg = load_ok(yaml, true);
    assert_null(cfg->users[0].totp_ref);
    assert_int_equal(cfg->users[0].totp_len, 0);
    assert_string_equal(cfg->users[1].totp_ref, sealed);
    assert_int_equal(cfg->users[1].totp_len, 20);
    assert_memory_equal(cfg->users[1].totp_secret, "12345678901234567890", 20);
    pg_config_free(cfg);

    /* not resolved: the reference is kept, nothing opened */
    assert_int_equal(unsetenv("PAYGUARD_MASTER_KEY"), 0);
    cfg = load_ok(yaml, false);
    assert_string_equal(cfg->users[1].totp_ref, sealed);
    assert_int_equal(cfg->users[1].totp_len, 0);
    pg_config_free(cfg);

    /* the same value moved to users[0] does not open there */
    snprintf(yaml, sizeof yaml,
             MINIMAL "orgs: {acme: {}}\n"
                     "users:\n" USER_AT_7("a@acme.test") "    totp: %s\n",
             sealed);
    EXPECT_ERRORS(yaml, "payguard.yaml:11:11: users[0].totp is sealed but PAYGUARD_MASTER_KEY "
                        "is not set");
    assert_int_equal(setenv("PAYGUARD_MASTER_KEY", TOTP_PASS, 1), 0);
    EXPECT_ERRORS(yaml, "payguard.yaml:11:11: users[0].totp: cannot unseal (wrong master key, or "
                        "the value was altered or moved from another key)");
    assert_int_equal(unsetenv("PAYGUARD_MASTER_KEY"), 0);
}

static void users_totp_problems(void **state)
{
    (void)state;
    assert_int_equal(unsetenv("PG_TEST_UNSET"), 0);
    assert_int_equal(setenv("PG_TEST_NOT_B32", "not base32!", 1), 0);
    assert_int_equal(setenv("PG_TEST_SHORT", "JBSWY3DPEHPK3PXP", 1), 0); /* 10 bytes */
    EXPECT_ERRORS(MINIMAL "orgs: {acme: {}}\n"
                          "users:\n" USER_AT_7("a@acme.test") "    totp: env:PG_TEST_UNSET\n"
                          USER_AT_7("b@acme.test") "    totp: env:PG_TEST_NOT_B32\n"
                          USER_AT_7("c@acme.test") "    totp: env:PG_TEST_SHORT\n"
                          USER_AT_7("d@acme.test") "    totp: sealed:v2:abc\n"
                          USER_AT_7("e@acme.test") "    totp: sealed:v1:AAECAwQFBgcICQoLDA0ODxAREhM-_w\n"
                          USER_AT_7("f@acme.test") "    totp: [x]\n",
                  "payguard.yaml:11:11: users[0].totp: environment variable PG_TEST_UNSET is not set",
                  "payguard.yaml:16:11: users[1].totp: the TOTP seed is not base32 of 16 to 64 bytes",
                  "payguard.yaml:21:11: users[2].totp: the TOTP seed is not base32 of 16 to 64 bytes",
                  "payguard.yaml:26:11: users[3].totp: unknown sealed format (expected "
                  "\"sealed:v1:...\")",
                  "payguard.yaml:31:11: users[4].totp: sealed value is truncated or damaged; make a "
                  "new one with `payguard user totp`",
                  "payguard.yaml:36:11: users[5].totp: expected a string, got a list");
    /* without resolving, an env: seed is only a reference */
    struct pg_config *cfg = load_ok(MINIMAL "orgs: {acme: {}}\n"
                                            "users:\n" USER_AT_7("a@acme.test")
                                            "    totp: env:PG_TEST_UNSET\n",
                                    false);
    assert_string_equal(cfg->users[0].totp_ref, "env:PG_TEST_UNSET");
    assert_int_equal(cfg->users[0].totp_len, 0);
    pg_config_free(cfg);
    unsetenv("PG_TEST_NOT_B32");
    unsetenv("PG_TEST_SHORT");
}

#define H64(c) c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c \
    c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c c

static void users_recovery_codes_and_emails(void **state)
{
    (void)state;
    struct pg_config *cfg = load_ok(MINIMAL "orgs: {acme: {}}\n"
                                            "users:\n" USER_AT_7("Ana@Acme.Test")
                                            "    recovery_codes: [" H64("a") ", " H64("B") "]\n"
                                            USER_AT_7("bo@acme.test"),
                                    true);
    assert_string_equal(cfg->users[0].email, "ana@acme.test");
    assert_int_equal(cfg->users[0].nrecovery, 2);
    assert_string_equal(cfg->users[0].recovery_hashes[0], H64("a"));
    assert_string_equal(cfg->users[0].recovery_hashes[1], H64("b"));
    assert_int_equal(cfg->users[1].nrecovery, 0);
    assert_null(cfg->users[1].recovery_hashes);
    pg_config_free(cfg);

    EXPECT_ERRORS(MINIMAL "orgs: {acme: {}}\n"
                          "users:\n" USER_AT_7("a@acme.test")
                          "    recovery_codes:\n"
                          "      - abcde-fghij-klmno-pqrst\n"
                          "      - " H64("1") "\n"
                          "      - " H64("1") "\n"
                          "      - " H64("g") "\n"
                          USER_AT_7("b@acme.test")
                          "    recovery_codes: [" H64("0") ", " H64("1") ", " H64("2") ", " H64("3")
                          ", " H64("4") ", " H64("5") ", " H64("6") ", " H64("7") ", " H64("8")
                          ", " H64("9") ", " H64("a") "]\n"
                          USER_AT_7("c@acme.test")
                          "    recovery_codes: " H64("a") "\n",
                  "payguard.yaml:12:9: users[0].recovery_codes[0]: must be the SHA-256 of a "
                  "recovery code in hex (64 characters), as `payguard user totp` prints it; never "
                  "the code itself",
                  "payguard.yaml:14:9: duplicate entry \"" H64("1") "\" in "
                  "users[0].recovery_codes (first at line 13, column 9)",
                  "payguard.yaml:15:9: users[0].recovery_codes[3]: must be the SHA-256 of a "
                  "recovery code in hex (64 characters), as `payguard user totp` prints it; never "
                  "the code itself",
                  "payguard.yaml:20:21: users[1].recovery_codes: at most 10 recovery codes (found 11)",
                  "payguard.yaml:25:21: users[2].recovery_codes: expected a list (e.g. [a, b] or "
                  "lines starting with \"- \"), got a string");
}

/* ---- runner -------------------------------------------------------------------- */

/* The tests read the example and fixtures from the source tree: the current
 * directory (tools/test.sh runs from the repo root) or three levels above
 * the binary (build/MODE/tests/test_config). */
static int find_sources(const char *argv0)
{
    char cand[PATH_MAX];
    const char *slash = strrchr(argv0, '/');

    if (access("payguard.yaml.example", R_OK) == 0) {
        snprintf(cand, sizeof cand, ".");
    } else if (slash) {
        snprintf(cand, sizeof cand, "%.*s/../../..", (int)(slash - argv0), argv0);
    } else {
        return -1;
    }
    char root[PATH_MAX];
    if (!realpath(cand, root))
        return -1;
    snprintf(example_path, sizeof example_path, "%.*s/payguard.yaml.example", PATH_MAX - 32, root);
    snprintf(data_dir, sizeof data_dir, "%.*s/tests/data/config", PATH_MAX - 32, root);
    return access(example_path, R_OK);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(example_loads_with_only_the_stripe_key),
        cmocka_unit_test(example_checks_without_env_and_names_the_missing_variable),
        cmocka_unit_test(defaults_fill_what_the_file_leaves_out),
        cmocka_unit_test(explicit_values_override_defaults),
        cmocka_unit_test(addr_parse_accepts_numeric_addresses),
        cmocka_unit_test(addr_parse_refuses_the_rest),
        cmocka_unit_test(listen_problems_are_reported_in_place),
        cmocka_unit_test(ledger_settings_default_parse_and_refuse),
        cmocka_unit_test(unknown_key_suggests_the_closest),
        cmocka_unit_test(wrong_types_are_named),
        cmocka_unit_test(required_keys_are_reported_where_they_belong),
        cmocka_unit_test(duplicate_keys_in_a_mapping),
        cmocka_unit_test(duplicate_rail_org_and_policy_names),
        cmocka_unit_test(duplicate_agent_ids_and_user_emails),
        cmocka_unit_test(references_must_name_defined_things),
        cmocka_unit_test(plaintext_secrets_are_refused_without_echo),
        cmocka_unit_test(env_secrets_resolve_or_name_the_variable),
        cmocka_unit_test(sealed_secrets_check_without_resolving),
        cmocka_unit_test(http_upstream_needs_allow_http),
        cmocka_unit_test(upstream_urls_split_into_host_and_port),
        cmocka_unit_test(upstream_urls_refused),
        cmocka_unit_test(yaml_syntax_errors_carry_the_parser_position),
        cmocka_unit_test(top_level_scalars),
        cmocka_unit_test(every_problem_in_a_file_is_reported_in_order),
        cmocka_unit_test(minimal_fixture_loads),
        cmocka_unit_test(unreadable_files_are_reported),
        cmocka_unit_test(policy_values_are_checked_and_kept),
        cmocka_unit_test(policy_problems),
        cmocka_unit_test(amounts_are_exact_for_their_currency),
        cmocka_unit_test(timezones_must_exist_and_stay_inside_zoneinfo),
        cmocka_unit_test(org_zones_are_loaded),
        cmocka_unit_test(unparseable_zones_are_refused),
        cmocka_unit_test(agent_overrides_are_parsed_like_policies),
        cmocka_unit_test(routes_are_parsed),
        cmocka_unit_test(route_problems),
        cmocka_unit_test(example_routes_block_is_valid_when_uncommented),
        cmocka_unit_test(users_are_checked),
        cmocka_unit_test(agents_are_checked),
        cmocka_unit_test(webhooks_are_checked),
        cmocka_unit_test(webhook_delivery_settings),
        cmocka_unit_test(limits_have_bounds),
        cmocka_unit_test(lookups_match_whole_names),
        cmocka_unit_test(many_problems_are_capped),
        cmocka_unit_test(users_totp_sealed_opens_at_its_path),
        cmocka_unit_test(users_totp_problems),
        cmocka_unit_test(users_recovery_codes_and_emails),
    };
    char tmpl[] = "/tmp/payguard-test-config.XXXXXX";

    (void)argc;
    if (find_sources(argv[0]) != 0) {
        fprintf(stderr, "test_config: cannot find payguard.yaml.example; run from the "
                        "repository root\n");
        return 1;
    }
    if (!mkdtemp(tmpl) || !realpath(tmpl, work_dir) || chdir(work_dir) != 0) {
        perror("test_config: temp dir");
        return 1;
    }
    setenv("PG_TEST_RAIL_KEY", "sk_test_from_env", 1);
    unsetenv("TZDIR");

    int failed = cmocka_run_group_tests(tests, NULL, NULL);

    unlink("payguard.yaml");
    if (chdir("/") == 0)
        rmdir(work_dir);
    return failed;
}
