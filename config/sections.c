/* The schema of payguard.yaml: one function per section, each a list of the
 * keys it knows, what each must hold, and the defaults. Sections are read in
 * dependency order (rails, orgs and policies before the users and agents that
 * name them) whatever their order in the file. */
#include "common/pg.h"

#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "config/config_int.h"
#include "crypto/crypto.h"
#include "policy/money.h"
#include "policy/tz.h"

/* Keys of a mapping as an X-macro: one list yields the enum of indexes and
 * the names cfg_fields() matches against, so they cannot drift apart. */
#define KEY_ENUM(p, k) p##k,
#define KEY_NAME(p, k) #k,

#define P(key) cfg_path(path, sizeof path, where, (key))

/* A checked string copied into the config; the node must be present. */
static void set_str(struct cfg_loader *ld, const yaml_node_t *n, const char *path, char **dst)
{
    const char *s = cfg_str(ld, n, path);
    if (s) {
        char *d = cfg_dup(ld, s);
        if (d) {
            free(*dst);
            *dst = d;
        }
    }
}

static void lowercase(char *s)
{
    for (; s && *s; s++)
        if (*s >= 'A' && *s <= 'Z')
            *s = (char)(*s + 32);
}

/* Runs one of values.c's checks on a string node and reports its verdict. */
static const char *checked(struct cfg_loader *ld, const yaml_node_t *n, const char *path,
                           const char *(*check)(const char *))
{
    const char *s = cfg_str(ld, n, path);
    if (!s)
        return NULL;
    const char *why = check(s);
    if (why) {
        cfg_report(ld, n, "%s: \"%.*s\" %s", path, CFG_ECHO, s, why);
        return NULL;
    }
    return s;
}

/* The names defined in one section, for "(did you mean ...)" or, failing a
 * close one, the whole list: a reader fixes a reference faster seeing both. */
static void name_hint(char *buf, size_t size, const char *word, const char *kinds,
                      const char *const *names, size_t n)
{
    const char *s = n ? CFG_SUGGEST_NAMES(word, names, n) : NULL;
    size_t used;

    if (s) {
        snprintf(buf, size, " (did you mean \"%s\"?)", s);
        return;
    }
    if (n == 0) {
        snprintf(buf, size, " (no %s are defined)", kinds);
        return;
    }
    used = (size_t)snprintf(buf, size, " (defined %s: ", kinds);
    for (size_t i = 0; i < n && used < size; i++) {
        int w = snprintf(buf + used, size - used, "%s%s", i ? ", " : "", names[i]);
        if (w < 0)
            return;
        used += (size_t)w;
    }
    if (used < size)
        snprintf(buf + used, size - used, ")");
}

/* Looks a reference up among the first-member names of a config array and
 * reports it when absent. `first` is &arr[0].name, as for cfg_suggest_in. */
static bool ref_exists(struct cfg_loader *ld, const yaml_node_t *n, const char *path,
                       const char *name, const char *kind, const char *kinds, const void *first,
                       size_t count, size_t stride)
{
    const char **names = NULL;
    char hint[CFG_PATH_MAX];

    for (size_t i = 0; i < count; i++) {
        const char *c = *(const char *const *)(const void *)((const char *)first + i * stride);
        if (c && strcmp(c, name) == 0)
            return true;
    }
    if (count) {
        names = cfg_calloc(ld, count, sizeof *names);
        if (!names)
            return false;
        for (size_t i = 0; i < count; i++)
            names[i] = *(const char *const *)(const void *)((const char *)first + i * stride);
    }
    name_hint(hint, sizeof hint, name, kinds, names, count);
    free(names);
    cfg_report(ld, n, "%s: unknown %s \"%.*s\"%s", path, kind, CFG_ECHO, name, hint);
    return false;
}

#define REF_EXISTS(ld, n, path, word, kind, kinds, arr, count)                                     \
    ((count) ? ref_exists((ld), (n), (path), (word), (kind), (kinds), &(arr)[0].name, (count),     \
                          sizeof((arr)[0]))                                                        \
             : ref_exists((ld), (n), (path), (word), (kind), (kinds), NULL, 0, 0))

/* The key of a named entry (rails.NAME, orgs.NAME, policies.NAME). */
static const char *entry_name(struct cfg_loader *ld, const yaml_node_t *k, const char *section,
                              const char *kind)
{
    if (k->type != YAML_SCALAR_NODE) {
        cfg_report(ld, k, "%s: %s names must be plain words, got %s", section, kind, cfg_kind(k));
        return NULL;
    }
    const char *why = cfg_name_check(cfg_text(k));
    if (why || strlen(cfg_text(k)) != k->data.scalar.length) {
        cfg_report(ld, k, "%s: %s name \"%.*s\" %s", section, kind, CFG_ECHO, cfg_text(k),
                   why ? why : "must not contain a NUL character");
        return NULL;
    }
    return cfg_text(k);
}

/* Calls `each` for every well-named entry of a `name: {...}` section after
 * reporting repeated names. Returns the number of pairs (the most entries
 * `each` can have been called for), or 0 when `n` is not a mapping. */
typedef void (*entry_cb)(struct cfg_loader *ld, size_t i, const char *name, const yaml_node_t *key,
                         const yaml_node_t *val);

static size_t named_entries(struct cfg_loader *ld, const yaml_node_t *n, const char *section,
                            const char *kind, entry_cb each)
{
    if (n->type != YAML_MAPPING_NODE) {
        cfg_report(ld, n, "%s: expected a mapping of %s names to settings, got %s", section, kind,
                   cfg_kind(n));
        return 0;
    }
    size_t np = (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
    const yaml_node_t **keys = cfg_calloc(ld, np, sizeof *keys);
    size_t nkeys = 0, slot = 0;
    if (!keys)
        return 0;
    for (size_t i = 0; i < np; i++) {
        yaml_node_pair_t *p = &n->data.mapping.pairs.start[i];
        yaml_node_t *k = cfg_node(ld, p->key), *v = cfg_node(ld, p->value);
        if (!k || !v)
            continue;
        const char *name = entry_name(ld, k, section, kind);
        if (!name)
            continue;
        keys[nkeys++] = k;
        each(ld, slot++, name, k, v);
    }
    char where[64];
    snprintf(where, sizeof where, " in %s", section);
    cfg_report_dups(ld, keys, nkeys, false, kind, where);
    free(keys);
    return slot;
}

/* Opens a sealed:v1: value with the passphrase in master_key_env (read
 * before any section that holds secrets). `path` is the value's AAD, so it
 * must be the exact string crypto.h lists ("rails.stripe.secret",
 * "webhooks[0].secret"). Messages name the path, never the secret, the
 * passphrase or the sealed text; a wrong passphrase, an altered value and a
 * value moved from another key are one message because GCM cannot tell them
 * apart. Each value costs one scrypt (about 0.4 s). */
static void unseal_secret(struct cfg_loader *ld, const yaml_node_t *n, const char *path,
                          const char *sealed, char **secret)
{
    const char *env = ld->cfg->master_key_env;
    const char *pass = env ? getenv(env) : NULL;
    char buf[PG_SEAL_MAX_PLAINTEXT + 1];
    size_t len = 0;

    if (!env)
        return; /* out of memory, already recorded */
    if (!pass || !*pass) {
        cfg_report(ld, n, "%s is sealed but %s is %s", path, env, pass ? "empty" : "not set");
        return;
    }
    int rc = pg_unseal(pg_slice_cstr(pass), pg_slice_cstr(path), pg_slice_cstr(sealed), buf,
                       sizeof buf, &len);
    if (rc == PG_EAUTH) {
        cfg_report(ld, n,
                   "%s: cannot unseal (wrong master key, or the value was altered or moved "
                   "from another key)",
                   path);
        return;
    }
    if (rc != 0) {
        cfg_report(ld, n, "%s: cannot unseal: %s", path, pg_strerror(rc));
        return;
    }
    /* The secret goes into an HTTP header as a C string. */
    bool clean = len > 0;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)buf[i] < 0x20 || buf[i] == 0x7f)
            clean = false;
    if (!clean)
        cfg_report(ld, n, "%s: the sealed secret is %s", path,
                   len ? "not one line of text (it holds a control character)" : "empty");
    else
        *secret = cfg_dup(ld, buf);
    OPENSSL_cleanse(buf, sizeof buf);
}

/* Secrets never sit in the file in clear: they are read from the
 * environment (env:NAME) or decrypted (sealed:v1:). `env_hint` is the
 * variable name a message suggests for a plaintext value. The value itself
 * is never echoed into a message. */
static void load_secret(struct cfg_loader *ld, const yaml_node_t *n, const char *path,
                        const char *env_hint, char **ref, char **secret)
{
    const char *s = cfg_str(ld, n, path);
    const char *why, *what;

    if (!s)
        return;
    switch (cfg_secret_classify(s, &why)) {
    case CFG_SECRET_BAD:
        cfg_report(ld, n, "%s: %s", path, why);
        return;
    case CFG_SECRET_PLAIN:
        if (strncmp(s, "sk_", 3) == 0 || strncmp(s, "rk_", 3) == 0)
            what = "this looks like a Stripe secret key written in clear";
        else if (strncmp(s, "pk_", 3) == 0)
            what = "this looks like a Stripe key written in clear";
        else if (strncmp(s, "whsec_", 6) == 0)
            what = "this looks like a webhook signing secret written in clear";
        else
            what = "secrets must not be written in clear in the config file";
        cfg_report(ld, n,
                   "%s: %s; put it in an environment variable and write "
                   "\"env:%s\" here (or a sealed:v1: value)",
                   path, what, env_hint);
        return;
    case CFG_SECRET_SEALED:
        if (pg_seal_check(pg_slice_cstr(s)) != 0) {
            cfg_report(ld, n,
                       "%s: sealed value is truncated or damaged; seal the secret again "
                       "with `payguard seal`",
                       path);
            return;
        }
        *ref = cfg_dup(ld, s);
        if (ld->resolve)
            unseal_secret(ld, n, path, s, secret);
        return;
    case CFG_SECRET_ENV:
        *ref = cfg_dup(ld, s);
        if (ld->resolve) {
            const char *v = getenv(s + 4);
            bool ctl = false;
            for (const char *q = v; q && *q && !ctl; q++)
                ctl = (unsigned char)*q < 0x20 || *q == 0x7f;
            if (!v || !*v)
                cfg_report(ld, n, "%s: environment variable %s is %s", path, s + 4,
                           v ? "empty" : "not set");
            else if (ctl)
                /* It would be written into a header: CR or LF could inject one. */
                cfg_report(ld, n, "%s: environment variable %s holds a control character (a stray newline?)",
                           path, s + 4);
            else
                *secret = cfg_dup(ld, v);
        }
        return;
    }
}

/* ---- listen ----------------------------------------------------------- */

static void load_addr(struct cfg_loader *ld, const yaml_node_t *n, const char *path,
                      struct pg_addr *a)
{
    struct pg_addr tmp;
    const char *s = cfg_str(ld, n, path);
    if (!s)
        return;
    memset(&tmp, 0, sizeof tmp);
    const char *why = cfg_addr_check(s, &tmp.sa, &tmp.salen);
    if (why) {
        cfg_report(ld, n, "%s: \"%.*s\": %s", path, CFG_ECHO, s, why);
        return;
    }
    tmp.text = cfg_dup(ld, s);
    if (!tmp.text)
        return;
    free(a->text);
    *a = tmp;
}

/* Two listeners on one fixed address would fail at bind; say so now. Port 0
 * (tests) picks a fresh port for each, so it never clashes. */
static bool clash(const struct pg_addr *a, const struct pg_addr *b)
{
    struct sockaddr_in x4, y4;
    struct sockaddr_in6 x6, y6;

    if (a->salen != b->salen || a->sa.ss_family != b->sa.ss_family)
        return false;
    if (a->sa.ss_family == AF_INET) {
        memcpy(&x4, &a->sa, sizeof x4);
        memcpy(&y4, &b->sa, sizeof y4);
        return x4.sin_port != 0 && x4.sin_port == y4.sin_port &&
               x4.sin_addr.s_addr == y4.sin_addr.s_addr;
    }
    memcpy(&x6, &a->sa, sizeof x6);
    memcpy(&y6, &b->sa, sizeof y6);
    return x6.sin6_port != 0 && x6.sin6_port == y6.sin6_port &&
           memcmp(&x6.sin6_addr, &y6.sin6_addr, sizeof x6.sin6_addr) == 0;
}

#define TLS_KEYS(X) X(T_, cert) X(T_, key) X(T_, client_ca)
enum { TLS_KEYS(KEY_ENUM) T_COUNT };
static const char *const tls_keys[] = {TLS_KEYS(KEY_NAME)};

#define LISTEN_KEYS(X) X(L_, agents) X(L_, admin) X(L_, tls)
enum { LISTEN_KEYS(KEY_ENUM) L_COUNT };
static const char *const listen_keys[] = {LISTEN_KEYS(KEY_NAME)};

static void load_listen(struct cfg_loader *ld, const yaml_node_t *n)
{
    struct pg_config *cfg = ld->cfg;
    const char *where = "listen";
    char path[CFG_PATH_MAX];
    yaml_node_t *v[L_COUNT], *k[L_COUNT];

    if (!cfg_fields(ld, n, where, listen_keys, L_COUNT, v, k))
        return;
    if (v[L_agents])
        load_addr(ld, v[L_agents], P("agents"), &cfg->listen_agents);
    if (v[L_admin])
        load_addr(ld, v[L_admin], P("admin"), &cfg->listen_admin);
    if ((v[L_agents] || v[L_admin]) && clash(&cfg->listen_agents, &cfg->listen_admin))
        cfg_report(ld, v[L_admin] ? v[L_admin] : v[L_agents],
                   "listen: agents and admin are both %s; the admin API needs its "
                   "own port",
                   cfg->listen_admin.text);

    if (v[L_tls]) {
        yaml_node_t *tv[T_COUNT], *tk[T_COUNT];
        where = "listen.tls";
        if (!cfg_fields(ld, v[L_tls], where, tls_keys, T_COUNT, tv, tk))
            return;
        if (cfg_require(ld, v[L_tls], tv, tk, T_cert, tls_keys, where))
            set_str(ld, tv[T_cert], P("cert"), &cfg->agents_tls.cert);
        if (cfg_require(ld, v[L_tls], tv, tk, T_key, tls_keys, where))
            set_str(ld, tv[T_key], P("key"), &cfg->agents_tls.key);
        if (tv[T_client_ca])
            set_str(ld, tv[T_client_ca], P("client_ca"), &cfg->agents_tls.client_ca);
    }
}

/* ---- limits ------------------------------------------------------------ */

/* name, smallest, largest. The bounds keep a typo (an extra zero, a missing
 * one) from starving or exhausting the process. */
#define LIMIT_KEYS(X)                                                                              \
    X(header_bytes, 256, 1048576)                                                                  \
    X(max_headers, 1, 10000)                                                                       \
    X(body_bytes, 1, 1073741824)                                                                   \
    X(header_timeout_ms, 100, 3600000)                                                             \
    X(body_timeout_ms, 100, 3600000)                                                               \
    X(idle_timeout_ms, 100, 86400000)                                                              \
    X(drain_timeout_ms, 0, 3600000)                                                                \
    X(max_connections, 1, 1000000)                                                                 \
    X(auth_failures, 1, 1000000)

#define LIMIT_NAME(k, lo, hi) #k,
static const char *const limit_keys[] = {LIMIT_KEYS(LIMIT_NAME)};

static void load_limits(struct cfg_loader *ld, const yaml_node_t *n)
{
    struct pg_limits *l = &ld->cfg->limits;
    uint32_t *dst[] = {
#define LIMIT_DST(k, lo, hi) &l->k,
        LIMIT_KEYS(LIMIT_DST)
#undef LIMIT_DST
    };
    static const uint32_t lo[] = {
#define LIMIT_LO(k, l_, h_) l_,
        LIMIT_KEYS(LIMIT_LO)
#undef LIMIT_LO
    };
    static const uint32_t hi[] = {
#define LIMIT_HI(k, l_, h_) h_,
        LIMIT_KEYS(LIMIT_HI)
#undef LIMIT_HI
    };
    enum { N = PG_ARRAY_LEN(limit_keys) };
    const char *where = "limits";
    char path[CFG_PATH_MAX];
    yaml_node_t *v[N], *k[N];

    if (!cfg_fields(ld, n, where, limit_keys, N, v, k))
        return;
    for (size_t i = 0; i < N; i++)
        if (v[i])
            (void)cfg_u32(ld, v[i], P(limit_keys[i]), lo[i], hi[i], dst[i]);
}

/* ---- rails ------------------------------------------------------------- */

#define RAIL_KEYS(X)                                                                               \
    X(R_, preset)                                                                                  \
    X(R_, upstream)                                                                                \
    X(R_, secret) X(R_, ca_file) X(R_, tls_min) X(R_, timeout_ms) X(R_, connect_timeout_ms)        \
        X(R_, unmatched) X(R_, allow_http) X(R_, pool_size) X(R_, format) X(R_, routes)
enum { RAIL_KEYS(KEY_ENUM) R_COUNT };
static const char *const rail_keys[] = {RAIL_KEYS(KEY_NAME)};

static const char *const preset_names[] = {"stripe", "adyen", "generic"};
static const char *const unmatched_names[] = {"deny", "pass"};
static const char *const tls_names[] = {"1.2", "1.3"};
static const char *const format_names[] = {"form", "json"}; /* enum pg_body_format */

/* Splits a checked upstream URL into the fields the proxy connects with. */
static void set_upstream(struct cfg_loader *ld, const yaml_node_t *n, const char *path,
                         struct pg_rail *r)
{
    struct cfg_url u;
    const char *s = cfg_str(ld, n, path);
    char hp[300];

    if (!s)
        return;
    const char *why = cfg_url_check(s, &u);
    if (why) {
        cfg_report(ld, n, "%s: \"%.*s\" %s", path, CFG_ECHO, s, why);
        return;
    }
    if (*u.rest == '?') {
        cfg_report(ld, n, "%s: must not have a ?query", path);
        return;
    }
    if (*u.rest && strcmp(u.rest, "/") != 0) {
        cfg_report(ld, n,
                   "%s: must not have a path (got \"%.*s\"); agents' request paths "
                   "are forwarded as they are",
                   path, CFG_ECHO, u.rest);
        return;
    }
    if (!u.tls && !r->allow_http) {
        cfg_report(ld, n,
                   "%s: plain http:// upstreams are refused; to opt in, set "
                   "\"allow_http: true\" on this rail (for a local mock rail only, "
                   "never a real one)",
                   path);
        return;
    }
    r->upstream = cfg_dup(ld, s);
    r->upstream_tls = u.tls;
    r->upstream_port = u.port;
    r->upstream_host = cfg_calloc(ld, u.hostlen + 1, 1);
    if (r->upstream_host) {
        memcpy(r->upstream_host, u.host, u.hostlen);
        lowercase(r->upstream_host);
    }
    const char *lb = u.ipv6 ? "[" : "", *rb = u.ipv6 ? "]" : "";
    if (u.default_port)
        snprintf(hp, sizeof hp, "%s%s%s", lb, r->upstream_host ? r->upstream_host : "", rb);
    else
        snprintf(hp, sizeof hp, "%s%s%s:%u", lb, r->upstream_host ? r->upstream_host : "", rb,
                 (unsigned)u.port);
    r->upstream_hostport = cfg_dup(ld, hp);
}

/* "STRIPE_SECRET_KEY" for a rail named "stripe": the name a message offers. */
static void env_name_for(char *buf, size_t size, const char *name, const char *suffix)
{
    size_t i = 0;
    for (; name[i] && i + 1 < size; i++) {
        char c = name[i];
        if (c >= 'a' && c <= 'z')
            c = (char)(c - 32);
        else if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')))
            c = '_';
        buf[i] = c;
    }
    snprintf(buf + i, size - i, "%s", suffix);
}

static void load_rail(struct cfg_loader *ld, size_t i, const char *name, const yaml_node_t *key,
                      const yaml_node_t *val)
{
    struct pg_rail *r = &ld->cfg->rails[i];
    char where[CFG_PATH_MAX], path[CFG_PATH_MAX], env[96];
    yaml_node_t *v[R_COUNT], *k[R_COUNT];
    const yaml_node_t *anchor = key; /* "rails.x: missing ..." points at x */
    int e;

    r->name = cfg_dup(ld, name);
    r->preset = PG_PRESET_STRIPE;
    r->tls_min = 12;
    r->timeout_ms = 30000;
    r->connect_timeout_ms = 5000;
    r->unmatched = PG_UNMATCHED_DENY;
    r->pool_size = 64;

    snprintf(where, sizeof where, "rails.%s", name);
    if (!cfg_fields(ld, val, where, rail_keys, R_COUNT, v, k))
        return;

    /* The route table decides what a request means; assuming one would be a
     * silent policy hole, so it is named, or implied by a rail named after a
     * preset ("stripe:"). */
    if (v[R_preset]) {
        e = cfg_enum(ld, v[R_preset], P("preset"), preset_names, PG_ARRAY_LEN(preset_names));
        if (e >= 0)
            r->preset = (enum pg_rail_preset)e;
    } else if (strcmp(name, "stripe") == 0 || strcmp(name, "adyen") == 0 ||
               strcmp(name, "generic") == 0) {
        r->preset = strcmp(name, "stripe") == 0  ? PG_PRESET_STRIPE
                    : strcmp(name, "adyen") == 0 ? PG_PRESET_ADYEN
                                                 : PG_PRESET_GENERIC;
    } else {
        (void)cfg_require(ld, anchor, v, k, R_preset, rail_keys, where);
    }

    if (v[R_allow_http])
        (void)cfg_bool(ld, v[R_allow_http], P("allow_http"), &r->allow_http);
    if (cfg_require(ld, anchor, v, k, R_upstream, rail_keys, where))
        set_upstream(ld, v[R_upstream], P("upstream"), r);
    env_name_for(env, sizeof env, name, "_SECRET_KEY");
    if (cfg_require(ld, anchor, v, k, R_secret, rail_keys, where))
        load_secret(ld, v[R_secret], P("secret"), env, &r->secret_ref, &r->secret);
    if (v[R_ca_file])
        set_str(ld, v[R_ca_file], P("ca_file"), &r->ca_file);
    if (v[R_tls_min]) {
        e = cfg_enum(ld, v[R_tls_min], P("tls_min"), tls_names, PG_ARRAY_LEN(tls_names));
        if (e >= 0)
            r->tls_min = 12 + e;
    }
    if (v[R_timeout_ms])
        (void)cfg_u32(ld, v[R_timeout_ms], P("timeout_ms"), 100, 3600000, &r->timeout_ms);
    if (v[R_connect_timeout_ms])
        (void)cfg_u32(ld, v[R_connect_timeout_ms], P("connect_timeout_ms"), 100, 600000,
                      &r->connect_timeout_ms);
    if (v[R_unmatched]) {
        e = cfg_enum(ld, v[R_unmatched], P("unmatched"), unmatched_names,
                     PG_ARRAY_LEN(unmatched_names));
        if (e >= 0)
            r->unmatched = (enum pg_unmatched)e;
    }
    if (v[R_pool_size])
        (void)cfg_u32(ld, v[R_pool_size], P("pool_size"), 0, 10000, &r->pool_size);

    /* Stripe takes forms and Adyen JSON whatever the file says; a `format`
     * contradicting the preset is a misunderstanding worth stopping. */
    r->format = r->preset == PG_PRESET_ADYEN ? PG_BODY_JSON : PG_BODY_FORM;
    if (v[R_format]) {
        e = cfg_enum(ld, v[R_format], P("format"), format_names, PG_ARRAY_LEN(format_names));
        if (e >= 0 && r->preset == PG_PRESET_GENERIC)
            r->format = (enum pg_body_format)e;
        else if (e >= 0 && (enum pg_body_format)e != r->format)
            cfg_report(ld, v[R_format],
                       "%s: the %s preset's request bodies are %s; leave format out (it is "
                       "for generic rails)",
                       path, preset_names[r->preset],
                       r->format == PG_BODY_JSON ? "JSON" : "form-encoded");
    }
    if (v[R_routes])
        cfg_load_routes(ld, v[R_routes], where, r);
}

static void load_rails(struct cfg_loader *ld, const yaml_node_t *n)
{
    size_t np = n->type == YAML_MAPPING_NODE
                    ? (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start)
                    : 0;
    ld->cfg->rails = cfg_calloc(ld, np, sizeof *ld->cfg->rails);
    if (!ld->cfg->rails)
        return;
    ld->cfg->nrails = named_entries(ld, n, "rails", "rail", load_rail);
    if (n->type == YAML_MAPPING_NODE && np == 0)
        cfg_report(ld, n, "rails: at least one rail is required");
}

/* ---- orgs -------------------------------------------------------------- */

#define ORG_KEYS(X) X(O_, timezone)
enum { ORG_KEYS(KEY_ENUM) O_COUNT };
static const char *const org_keys[] = {ORG_KEYS(KEY_NAME)};

static void load_org(struct cfg_loader *ld, size_t i, const char *name, const yaml_node_t *key,
                     const yaml_node_t *val)
{
    struct pg_org *o = &ld->cfg->orgs[i];
    char where[CFG_PATH_MAX], path[CFG_PATH_MAX];
    yaml_node_t *v[O_COUNT], *k[O_COUNT];

    PG_UNUSED(key);
    o->name = cfg_dup(ld, name);
    snprintf(where, sizeof where, "orgs.%s", name);
    if (cfg_fields(ld, val, where, org_keys, O_COUNT, v, k) && v[O_timezone]) {
        const char *tz = cfg_str(ld, v[O_timezone], P("timezone"));
        const char *why = NULL;
        if (!tz)
            return;
        int rc = cfg_zone_load(tz, &o->tz, &why);
        if (rc == PG_ENOMEM)
            ld->nomem = true;
        else if (rc != 0)
            cfg_report(ld, v[O_timezone], "%s: \"%.*s\" %s", path, CFG_ECHO, tz, why);
        else
            o->timezone = cfg_dup(ld, tz);
        return;
    }
    o->timezone = cfg_dup(ld, "UTC");
    if (pg_tz_utc(&o->tz) != 0)
        ld->nomem = true;
}

static void load_orgs(struct cfg_loader *ld, const yaml_node_t *n)
{
    size_t np = n->type == YAML_MAPPING_NODE
                    ? (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start)
                    : 0;
    ld->cfg->orgs = cfg_calloc(ld, np, sizeof *ld->cfg->orgs);
    if (ld->cfg->orgs)
        ld->cfg->norgs = named_entries(ld, n, "orgs", "org", load_org);
}

/* ---- policies ---------------------------------------------------------- */

#define POLICY_KEYS(X)                                                                             \
    X(PK_, currency)                                                                               \
    X(PK_, per_transaction)                                                                        \
    X(PK_, daily) X(PK_, weekly) X(PK_, monthly) X(PK_, approval_above) X(PK_, auto_approve_below) \
        X(PK_, merchants) X(PK_, hours) X(PK_, velocity) X(PK_, currencies) X(PK_, operations)     \
            X(PK_, refunds_restore) X(PK_, rate)
enum { POLICY_KEYS(KEY_ENUM) PK_COUNT };
static const char *const policy_keys[] = {POLICY_KEYS(KEY_NAME)};

#define MERCHANT_KEYS(X) X(M_, allow) X(M_, deny)
enum { MERCHANT_KEYS(KEY_ENUM) M_COUNT };
static const char *const merchant_keys[] = {MERCHANT_KEYS(KEY_NAME)};

#define HOURS_KEYS(X) X(H_, days) X(H_, from) X(H_, to)
enum { HOURS_KEYS(KEY_ENUM) H_COUNT };
static const char *const hours_keys[] = {HOURS_KEYS(KEY_NAME)};

#define VELOCITY_KEYS(X) X(V_, max) X(V_, per)
enum { VELOCITY_KEYS(KEY_ENUM) V_COUNT };
static const char *const velocity_keys[] = {VELOCITY_KEYS(KEY_NAME)};

#define RATE_KEYS(X) X(RT_, requests) X(RT_, per) X(RT_, burst)
enum { RATE_KEYS(KEY_ENUM) RT_COUNT };
static const char *const rate_keys[] = {RATE_KEYS(KEY_NAME)};

static const char *const operation_names[] = {"payment", "refund", "transfer",
                                              "payout",  "config", "read"};

/* A known ISO 4217 code: an unknown one could never match a payment, and
 * its amounts would have no exponent to be read with. */
static const char *currency_why(const char *s)
{
    const char *why = cfg_currency_check(s);
    if (!why && pg_money_exponent(pg_slice_cstr(s)) < 0)
        why = "is not an ISO 4217 currency code payguard knows (like usd, eur or jpy)";
    return why;
}

static bool check_currency_item(struct cfg_loader *ld, const yaml_node_t *n, const char *path,
                                const char *s)
{
    const char *why = currency_why(s);
    if (why)
        cfg_report(ld, n, "%s: \"%.*s\" %s", path, CFG_ECHO, s, why);
    return !why;
}

static bool check_glob_item(struct cfg_loader *ld, const yaml_node_t *n, const char *path,
                            const char *s)
{
    const char *why = cfg_glob_check(s);
    if (why)
        cfg_report(ld, n, "%s: %s", path, why);
    return !why;
}

static bool check_operation_item(struct cfg_loader *ld, const yaml_node_t *n, const char *path,
                                 const char *s)
{
    PG_UNUSED(s);
    return cfg_enum(ld, n, path, operation_names, PG_ARRAY_LEN(operation_names)) >= 0;
}

static void load_hours(struct cfg_loader *ld, const yaml_node_t *n, const char *pwhere,
                       struct pg_policy_spec *p)
{
    char where[CFG_PATH_MAX], path[CFG_PATH_MAX];
    yaml_node_t *v[H_COUNT], *k[H_COUNT];
    uint16_t from = 0, to = 0;
    uint8_t mask = 0x7f;
    bool ok = true, times_ok = true;

    snprintf(where, sizeof where, "%.160s.hours", pwhere);
    if (!cfg_fields(ld, n, where, hours_keys, H_COUNT, v, k))
        return;
    if (v[H_days]) {
        const char *s = cfg_str(ld, v[H_days], P("days"));
        const char *why = s ? cfg_days_check(s, &mask) : NULL;
        if (why)
            cfg_report(ld, v[H_days], "%s: \"%.*s\" %s", path, CFG_ECHO, s, why);
        if (!s || why)
            ok = false;
        else
            p->hours_days = cfg_dup(ld, s);
        lowercase(p->hours_days);
    }
    const char *ts[2] = {NULL, NULL};
    uint16_t *mins[2] = {&from, &to};
    for (int i = 0; i < 2; i++) {
        size_t ki = i == 0 ? H_from : H_to;
        if (!cfg_require(ld, n, v, k, ki, hours_keys, where)) {
            times_ok = false;
            continue;
        }
        ts[i] = cfg_str(ld, v[ki], P(hours_keys[ki]));
        const char *why = ts[i] ? cfg_hhmm_check(ts[i], i == 1, mins[i]) : NULL;
        if (why)
            cfg_report(ld, v[ki], "%s: \"%.*s\" %s", path, CFG_ECHO, ts[i], why);
        if (!ts[i] || why)
            times_ok = false;
    }
    if (!times_ok)
        return;
    if (from >= to) {
        cfg_report(ld, v[H_to],
                   "%s.to: must be later than from (\"%s\" is not after \"%s\"; "
                   "windows across midnight are not supported)",
                   where, ts[1], ts[0]);
        return;
    }
    if (!ok)
        return;
    p->hours_from = cfg_dup(ld, ts[0]);
    p->hours_to = cfg_dup(ld, ts[1]);
    p->hours_days_mask = mask;
    p->hours_from_min = from;
    p->hours_to_min = to;
}

static void load_velocity(struct cfg_loader *ld, const yaml_node_t *n, const char *pwhere,
                          struct pg_policy_spec *p)
{
    char where[CFG_PATH_MAX], path[CFG_PATH_MAX];
    yaml_node_t *v[V_COUNT], *k[V_COUNT];
    uint32_t max = 0, per = 0;
    bool ok = true;

    snprintf(where, sizeof where, "%.160s.velocity", pwhere);
    if (!cfg_fields(ld, n, where, velocity_keys, V_COUNT, v, k))
        return;
    if (!cfg_require(ld, n, v, k, V_max, velocity_keys, where) ||
        !cfg_u32(ld, v[V_max], P("max"), 1, 1000000, &max))
        ok = false;
    if (cfg_require(ld, n, v, k, V_per, velocity_keys, where)) {
        const char *s = cfg_str(ld, v[V_per], P("per"));
        const char *why = s ? cfg_duration_check(s, &per) : NULL;
        if (why)
            cfg_report(ld, v[V_per], "%s: \"%.*s\" %s", path, CFG_ECHO, s, why);
        if (!s || why)
            ok = false;
    } else {
        ok = false;
    }
    if (ok) {
        p->velocity_max = max;
        p->velocity_per_s = per;
    }
}

/* rate: {requests: N, per: DURATION, burst: M}; burst defaults to requests. */
static void load_rate(struct cfg_loader *ld, const yaml_node_t *n, const char *pwhere,
                      struct pg_policy_spec *p)
{
    char where[CFG_PATH_MAX], path[CFG_PATH_MAX];
    yaml_node_t *v[RT_COUNT], *k[RT_COUNT];
    uint32_t requests = 0, per = 0, burst = 0;
    bool ok = true;

    snprintf(where, sizeof where, "%.160s.rate", pwhere);
    if (!cfg_fields(ld, n, where, rate_keys, RT_COUNT, v, k))
        return;
    if (!cfg_require(ld, n, v, k, RT_requests, rate_keys, where) ||
        !cfg_u32(ld, v[RT_requests], P("requests"), 1, 1000000, &requests))
        ok = false;
    if (cfg_require(ld, n, v, k, RT_per, rate_keys, where)) {
        const char *s = cfg_str(ld, v[RT_per], P("per"));
        const char *why = s ? cfg_duration_check(s, &per) : NULL;
        if (why)
            cfg_report(ld, v[RT_per], "%s: \"%.*s\" %s", path, CFG_ECHO, s, why);
        if (!s || why)
            ok = false;
    } else {
        ok = false;
    }
    if (v[RT_burst] && !cfg_u32(ld, v[RT_burst], P("burst"), 1, 10000000, &burst))
        ok = false;
    if (ok) {
        p->rate_requests = requests;
        p->rate_per_s = per;
        p->rate_burst = burst ? burst : requests;
    }
}

/* The amounts of a spec, in key order; HOLD_ABOVE and NEVER_HOLD_BELOW
 * index approval_above and auto_approve_below. */
#define NAMOUNTS 6
enum { HOLD_ABOVE = 4, NEVER_HOLD_BELOW = 5 };
static const size_t amount_keys[NAMOUNTS] = {
    PK_per_transaction, PK_daily, PK_weekly, PK_monthly, PK_approval_above, PK_auto_approve_below};

static char **amount_field(struct pg_policy_spec *p, size_t a)
{
    char **f[NAMOUNTS] = {&p->per_transaction, &p->daily,          &p->weekly,
                          &p->monthly,         &p->approval_above, &p->auto_approve_below};
    return f[a];
}

/* What a spec's amounts were read as, for checks that compare them. */
struct spec_amounts {
    const char *currency; /* lowercase code they are in; NULL: unknown */
    int exp;              /* its exponent; -1 when unknown */
    int64_t minor[NAMOUNTS];
    bool parsed[NAMOUNTS];
    const yaml_node_t *node[NAMOUNTS];
};

/* Where an agent's overrides take their currency when they name none. */
struct spec_base {
    const struct pg_policy_spec *policy; /* the agent's named policy, or NULL */
    bool quiet; /* its currency (or the policy itself) was refused: reported once already */
};

static void upper3(char out[4], const char *code)
{
    for (int i = 0; i < 3; i++)
        out[i] = (char)(code[i] >= 'a' && code[i] <= 'z' ? code[i] - 32 : code[i]);
    out[3] = '\0';
}

/* One amount: the shape always, and when the currency is known, exactly
 * (pg_money_parse_decimal: no more decimals than the currency has). Returns
 * the text to keep, or NULL after reporting; *parsed says whether *minor
 * holds its value. Plain 500.00 is taken as written too: libyaml hands over
 * the text, so no float ever touches an amount. */
static const char *load_amount(struct cfg_loader *ld, const yaml_node_t *n, const char *path,
                               const struct spec_amounts *am, int64_t *minor, bool *parsed)
{
    char code[4];
    const char *why = NULL;

    *parsed = false;
    const char *s = checked(ld, n, path, cfg_decimal_check);
    if (!s || am->exp < 0)
        return s;
    const char *dot = strchr(s, '.');
    if (dot && strlen(dot + 1) > (size_t)am->exp) {
        upper3(code, am->currency);
        cfg_report(ld, n, "%s: \"%.*s\" has too many decimal places for %s (%d decimal%s)", path,
                   CFG_ECHO, s, code, am->exp, am->exp == 1 ? "" : "s");
        return NULL;
    }
    if (pg_money_parse_decimal(pg_slice_cstr(s), am->exp, minor, &why) != 0) {
        cfg_report(ld, n, "%s: \"%.*s\" %s", path, CFG_ECHO, s, why ? why : "is not an amount");
        return NULL;
    }
    *parsed = true;
    return s;
}

/* auto_approve_below above approval_above would make a payment between the
 * two both "never held" and "held"; equal is fine (nothing is above one and
 * below the other). `other_from` names where the other value came from
 * when it is not in the same mapping (an override against its policy). */
static void check_hold_order(struct cfg_loader *ld, const yaml_node_t *at, const char *where,
                             bool at_auto, const char *mine, const char *other,
                             const char *other_from)
{
    char from[CFG_ECHO + 16] = "";
    if (other_from)
        snprintf(from, sizeof from, " in policy %.*s", CFG_ECHO, other_from);
    cfg_report(ld, at,
               "%s.%s: \"%.*s\" is %s %s (\"%.*s\"%s); a payment between the two would be "
               "both held and never held",
               where, at_auto ? "auto_approve_below" : "approval_above", CFG_ECHO, mine,
               at_auto ? "above" : "below", at_auto ? "approval_above" : "auto_approve_below",
               CFG_ECHO, other, from);
}

/* Reads the keys of a policy (policies.NAME: base NULL) or of an agent's
 * overrides (base: the agent's policy, whose currency the override's amounts
 * are in unless it names its own) into p, and what its amounts were read as
 * into am. Returns true when a `currency:` was written but refused. */
static bool load_spec(struct cfg_loader *ld, const yaml_node_t *val, const char *where,
                      const struct spec_base *base, struct pg_policy_spec *p,
                      struct spec_amounts *am)
{
    char path[CFG_PATH_MAX];
    yaml_node_t *v[PK_COUNT], *k[PK_COUNT];
    const yaml_node_t *first_amount = NULL;
    bool refused = false, quiet = false;

    memset(am, 0, sizeof *am);
    am->exp = -1;
    if (!cfg_fields(ld, val, where, policy_keys, PK_COUNT, v, k))
        return false;

    if (v[PK_currency]) {
        const char *c = checked(ld, v[PK_currency], P("currency"), currency_why);
        p->currency = cfg_dup(ld, c);
        lowercase(p->currency);
        refused = quiet = c == NULL;
    }
    am->currency = p->currency;
    if (!am->currency && base && base->policy)
        am->currency = base->policy->currency;
    if (!am->currency && base && base->quiet)
        quiet = true;
    if (am->currency)
        am->exp = pg_money_exponent(pg_slice_cstr(am->currency));

    for (size_t a = 0; a < NAMOUNTS; a++) {
        size_t ki = amount_keys[a];
        if (!v[ki])
            continue;
        if (!first_amount)
            first_amount = k[ki];
        am->node[a] = v[ki];
        *amount_field(p, a) = cfg_dup(
            ld, load_amount(ld, v[ki], P(policy_keys[ki]), am, &am->minor[a], &am->parsed[a]));
    }
    if (first_amount && !am->currency && !quiet) {
        if (!base)
            cfg_report(ld, first_amount,
                       "%s: amounts need a currency: add \"currency: usd\" (the currency "
                       "the limits are written in)",
                       where);
        else if (!base->policy)
            cfg_report(ld, first_amount,
                       "%s: amounts need a currency: add \"currency: usd\" here (the agent "
                       "has no policy to take it from)",
                       where);
        else
            cfg_report(ld, first_amount,
                       "%s: amounts need a currency: add \"currency: usd\" here or to policy "
                       "%.*s",
                       where, CFG_ECHO, base->policy->name);
    }
    if (am->parsed[NEVER_HOLD_BELOW] && am->parsed[HOLD_ABOVE] &&
        am->minor[NEVER_HOLD_BELOW] > am->minor[HOLD_ABOVE])
        check_hold_order(ld, am->node[NEVER_HOLD_BELOW], where, true,
                         cfg_text(am->node[NEVER_HOLD_BELOW]), cfg_text(am->node[HOLD_ABOVE]),
                         NULL);

    if (v[PK_merchants]) {
        char mwhere[CFG_PATH_MAX];
        yaml_node_t *mv[M_COUNT], *mk[M_COUNT];
        snprintf(mwhere, sizeof mwhere, "%.160s.merchants", where);
        if (cfg_fields(ld, v[PK_merchants], mwhere, merchant_keys, M_COUNT, mv, mk)) {
            if (mv[M_allow])
                (void)cfg_str_list(ld, mv[M_allow], cfg_path(path, sizeof path, mwhere, "allow"),
                                   check_glob_item, false, &p->merchants_allow,
                                   &p->nmerchants_allow);
            if (mv[M_deny])
                (void)cfg_str_list(ld, mv[M_deny], cfg_path(path, sizeof path, mwhere, "deny"),
                                   check_glob_item, false, &p->merchants_deny, &p->nmerchants_deny);
        }
    }
    if (v[PK_hours])
        load_hours(ld, v[PK_hours], where, p);
    if (v[PK_velocity])
        load_velocity(ld, v[PK_velocity], where, p);
    if (v[PK_rate])
        load_rate(ld, v[PK_rate], where, p);
    if (v[PK_currencies])
        (void)cfg_str_list(ld, v[PK_currencies], P("currencies"), check_currency_item, true,
                           &p->currencies, &p->ncurrencies);
    if (v[PK_operations])
        (void)cfg_str_list(ld, v[PK_operations], P("operations"), check_operation_item, false,
                           &p->operations, &p->noperations);
    if (v[PK_refunds_restore])
        p->has_refunds_restore =
            cfg_bool(ld, v[PK_refunds_restore], P("refunds_restore"), &p->refunds_restore);
    return refused;
}

static void load_policy(struct cfg_loader *ld, size_t i, const char *name, const yaml_node_t *key,
                        const yaml_node_t *val)
{
    struct pg_policy_spec *p = &ld->cfg->policies[i];
    struct spec_amounts am;
    char where[CFG_PATH_MAX];

    PG_UNUSED(key);
    p->name = cfg_dup(ld, name);
    snprintf(where, sizeof where, "policies.%s", name);
    if (load_spec(ld, val, where, NULL, p, &am) && ld->policy_currency_refused)
        ld->policy_currency_refused[i] = true;
}

static void load_policies(struct cfg_loader *ld, const yaml_node_t *n)
{
    size_t np = n->type == YAML_MAPPING_NODE
                    ? (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start)
                    : 0;
    ld->cfg->policies = cfg_calloc(ld, np, sizeof *ld->cfg->policies);
    ld->policy_currency_refused = cfg_calloc(ld, np, sizeof *ld->policy_currency_refused);
    if (ld->cfg->policies && ld->policy_currency_refused)
        ld->cfg->npolicies = named_entries(ld, n, "policies", "policy", load_policy);
}

/* ---- users ------------------------------------------------------------- */

#define USER_KEYS(X)                                                                               \
    X(U_, email) X(U_, org) X(U_, role) X(U_, password) X(U_, totp) X(U_, recovery_codes)
enum { USER_KEYS(KEY_ENUM) U_COUNT };
static const char *const user_keys[] = {USER_KEYS(KEY_NAME)};

/* Same order as enum pg_role. */
static const char *const role_names[] = {"viewer", "approver", "admin", "owner"};

/* A hash field: refuses what looks like the secret itself without echoing it. */
static const char *hash_field(struct cfg_loader *ld, const yaml_node_t *n, const char *path,
                              const char *what, const char *howto)
{
    const char *s = cfg_str(ld, n, path);
    if (!s)
        return NULL;
    const char *why = cfg_bcrypt_check(s);
    if (!why)
        return s;
    if (s[0] != '$')
        cfg_report(ld, n,
                   "%s: must be the bcrypt hash of the %s, not the %s itself "
                   "(%s)",
                   path, what, what, howto);
    else
        cfg_report(ld, n, "%s: %s", path, why);
    return NULL;
}

/* users[I].totp: the base32 TOTP seed, sealed (AAD "users[I].totp") or in
 * the environment, never in clear. Resolved, it is decoded into
 * u->totp_secret; a seed under 128 bits is refused (RFC 4226 asks for at
 * least that). Messages name the path, never the seed. */
static void load_totp(struct cfg_loader *ld, const yaml_node_t *n, const char *path,
                      struct pg_user *u)
{
    const char *s = cfg_str(ld, n, path);
    const char *why;
    char *seed = NULL;

    if (!s)
        return;
    switch (cfg_secret_classify(s, &why)) {
    case CFG_SECRET_BAD:
        cfg_report(ld, n, "%s: %s", path, why);
        return;
    case CFG_SECRET_PLAIN:
        cfg_report(ld, n,
                   "%s: a TOTP seed must not be written in clear; make a sealed one with "
                   "`payguard user totp` (or write \"env:NAME\")",
                   path);
        return;
    case CFG_SECRET_SEALED:
        if (pg_seal_check(pg_slice_cstr(s)) != 0) {
            cfg_report(ld, n,
                       "%s: sealed value is truncated or damaged; make a new one with "
                       "`payguard user totp`",
                       path);
            return;
        }
        u->totp_ref = cfg_dup(ld, s);
        if (ld->resolve)
            unseal_secret(ld, n, path, s, &seed);
        break;
    case CFG_SECRET_ENV:
        u->totp_ref = cfg_dup(ld, s);
        if (ld->resolve) {
            const char *e = getenv(s + 4);
            if (!e || !*e)
                cfg_report(ld, n, "%s: environment variable %s is %s", path, s + 4,
                           e ? "empty" : "not set");
            else
                seed = cfg_dup(ld, e);
        }
        break;
    }
    if (!seed)
        return;
    int len = pg_base32_decode(pg_slice_cstr(seed), u->totp_secret, sizeof u->totp_secret);
    if (len < 16) {
        OPENSSL_cleanse(u->totp_secret, sizeof u->totp_secret);
        cfg_report(ld, n, "%s: the TOTP seed is not base32 of 16 to %d bytes", path,
                   PG_TOTP_SECRET_MAX);
    } else {
        u->totp_len = (size_t)len;
    }
    OPENSSL_cleanse(seed, strlen(seed));
    free(seed);
}

/* One recovery_codes entry: what `payguard user totp` prints for a code. */
static bool recovery_hash_ok(struct cfg_loader *ld, const yaml_node_t *item, const char *path,
                             const char *s)
{
    size_t n = 0;
    for (; s[n]; n++)
        if (!((s[n] >= '0' && s[n] <= '9') || (s[n] >= 'a' && s[n] <= 'f') ||
              (s[n] >= 'A' && s[n] <= 'F')))
            break;
    if (n == 64 && !s[n])
        return true;
    cfg_report(ld, item,
               "%s: must be the SHA-256 of a recovery code in hex (64 characters), as "
               "`payguard user totp` prints it; never the code itself",
               path);
    return false;
}

static void load_users(struct cfg_loader *ld, const yaml_node_t *n)
{
    struct pg_config *cfg = ld->cfg;
    char where[64], path[CFG_PATH_MAX];
    const yaml_node_t **emails;
    size_t nemails = 0;

    if (!cfg_is_seq(ld, n, "users"))
        return;
    size_t len = cfg_seq_len(n);
    cfg->users = cfg_calloc(ld, len, sizeof *cfg->users);
    emails = cfg_calloc(ld, len, sizeof *emails);
    if (!cfg->users || !emails) {
        free(emails);
        return;
    }
    cfg->nusers = len;
    for (size_t i = 0; i < len; i++) {
        struct pg_user *u = &cfg->users[i];
        const yaml_node_t *it = cfg_seq_item(ld, n, i);
        yaml_node_t *v[U_COUNT], *k[U_COUNT];
        int e;

        snprintf(where, sizeof where, "users[%zu]", i);
        if (!it || cfg_is_null(it)) {
            if (it)
                cfg_report(ld, it, "%s: empty entry", where);
            continue;
        }
        if (!cfg_fields(ld, it, where, user_keys, U_COUNT, v, k))
            continue;
        if (cfg_require(ld, it, v, k, U_email, user_keys, where)) {
            const char *s = checked(ld, v[U_email], P("email"), cfg_email_check);
            if (s) {
                u->email = cfg_dup(ld, s);
                for (char *c = u->email; c && *c; c++)
                    if (*c >= 'A' && *c <= 'Z')
                        *c = (char)(*c + 32);
                emails[nemails++] = v[U_email];
            }
        }
        if (cfg_require(ld, it, v, k, U_org, user_keys, where)) {
            const char *s = cfg_str(ld, v[U_org], P("org"));
            if (s && REF_EXISTS(ld, v[U_org], path, s, "org", "orgs", cfg->orgs, cfg->norgs))
                u->org = cfg_dup(ld, s);
        }
        if (cfg_require(ld, it, v, k, U_role, user_keys, where)) {
            e = cfg_enum(ld, v[U_role], P("role"), role_names, PG_ARRAY_LEN(role_names));
            if (e >= 0)
                u->role = (enum pg_role)e;
        }
        if (cfg_require(ld, it, v, k, U_password, user_keys, where))
            u->password_hash =
                cfg_dup(ld, hash_field(ld, v[U_password], P("password"), "password",
                                       "make one with `payguard user passwd`"));
        if (v[U_totp])
            load_totp(ld, v[U_totp], P("totp"), u);
        if (v[U_recovery_codes] &&
            cfg_str_list(ld, v[U_recovery_codes], P("recovery_codes"), recovery_hash_ok, true,
                         &u->recovery_hashes, &u->nrecovery) &&
            cfg_seq_len(v[U_recovery_codes]) > PG_RECOVERY_CODES)
            cfg_report(ld, v[U_recovery_codes], "%s: at most %d recovery codes (found %zu)", path,
                       PG_RECOVERY_CODES, cfg_seq_len(v[U_recovery_codes]));
    }
    cfg_report_dups(ld, emails, nemails, true, "user", "");
    free(emails);
}

/* ---- agents ------------------------------------------------------------ */

#define AGENT_KEYS(X)                                                                              \
    X(A_, id)                                                                                      \
    X(A_, org)                                                                                     \
    X(A_, token) X(A_, rails) X(A_, policy) X(A_, expires) X(A_, revoked) X(A_, overrides)       \
        X(A_, client_cert)
enum { AGENT_KEYS(KEY_ENUM) A_COUNT };

#define CERT_KEYS(X) X(CC_, subject) X(CC_, spki_sha256)
enum { CERT_KEYS(KEY_ENUM) CC_COUNT };
static const char *const cert_keys[] = {CERT_KEYS(KEY_NAME)};

/* client_cert: {subject: "CN=...", spki_sha256: "<64 hex>"}, at least one. */
static void load_client_cert(struct cfg_loader *ld, const yaml_node_t *n, const char *where,
                             struct pg_agent *a)
{
    char cwhere[CFG_PATH_MAX], path[CFG_PATH_MAX];
    yaml_node_t *v[CC_COUNT], *k[CC_COUNT];
    snprintf(cwhere, sizeof cwhere, "%.160s.client_cert", where);
    if (!cfg_fields(ld, n, cwhere, cert_keys, CC_COUNT, v, k))
        return;
    if (!v[CC_subject] && !v[CC_spki_sha256]) {
        cfg_report(ld, n, "%s: give subject, spki_sha256 or both", cwhere);
        return;
    }
    if (!ld->cfg->agents_tls.client_ca)
        cfg_report(ld, n, "%s: needs listen.tls.client_ca (mutual TLS) to be checked", cwhere);
    if (v[CC_subject]) {
        const char *sub = cfg_str(ld, v[CC_subject], cfg_path(path, sizeof path, cwhere, "subject"));
        if (sub && !*sub)
            cfg_report(ld, v[CC_subject], "%s: empty subject", path);
        else if (sub)
            a->cert_subject = cfg_dup(ld, sub);
    }
    if (v[CC_spki_sha256]) {
        const char *hex = cfg_str(ld, v[CC_spki_sha256], cfg_path(path, sizeof path, cwhere, "spki_sha256"));
        bool ok = hex && strlen(hex) == 64;
        for (size_t i = 0; ok && i < 32; i++) {
            unsigned hi, lo;
            char h = hex[2 * i], l = hex[2 * i + 1];
            hi = (unsigned)(h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10 : 99);
            lo = (unsigned)(l >= '0' && l <= '9' ? l - '0' : l >= 'a' && l <= 'f' ? l - 'a' + 10 : 99);
            ok = hi < 16 && lo < 16;
            a->cert_spki[i] = (uint8_t)(hi << 4 | lo);
        }
        if (hex && !ok)
            cfg_report(ld, v[CC_spki_sha256], "%s: want 64 lower-case hex digits (openssl x509 -pubkey -noout | openssl pkey -pubin -outform DER | sha256sum)",
                       path);
        a->has_cert_spki = ok;
    }
}
static const char *const agent_keys[] = {AGENT_KEYS(KEY_NAME)};

static bool check_rail_item(struct cfg_loader *ld, const yaml_node_t *n, const char *path,
                            const char *s)
{
    return REF_EXISTS(ld, n, path, s, "rail", "rails", ld->cfg->rails, ld->cfg->nrails);
}

/* agents[].overrides: policy keys set on the agent itself, on top of its
 * named policy (or, without one, its whole policy). Read by the same code as
 * a policy; amounts are in the override's currency, else the policy's. */
static void load_overrides(struct cfg_loader *ld, const yaml_node_t *n, const char *awhere,
                           bool names_policy, struct pg_agent *a)
{
    struct pg_config *cfg = ld->cfg;
    struct spec_base base = {.policy = NULL, .quiet = names_policy && !a->policy};
    struct spec_amounts am;
    char where[CFG_PATH_MAX];

    for (size_t i = 0; a->policy && i < cfg->npolicies; i++) {
        if (cfg->policies[i].name && strcmp(cfg->policies[i].name, a->policy) == 0) {
            base.policy = &cfg->policies[i];
            base.quiet = ld->policy_currency_refused && ld->policy_currency_refused[i];
        }
    }
    a->overrides = cfg_calloc(ld, 1, sizeof *a->overrides);
    if (!a->overrides)
        return;
    snprintf(where, sizeof where, "%.160s.overrides", awhere);
    (void)load_spec(ld, n, where, &base, a->overrides, &am);

    /* The hold thresholds in force are the override's or the policy's: one
     * from each must still be in order (the policy alone was checked). */
    const struct pg_policy_spec *bp = base.policy;
    if (!bp || !bp->currency || !am.currency || strcmp(bp->currency, am.currency) != 0 ||
        am.parsed[HOLD_ABOVE] == am.parsed[NEVER_HOLD_BELOW])
        return;
    const char *bs = am.parsed[HOLD_ABOVE] ? bp->auto_approve_below : bp->approval_above;
    int64_t other;
    if (!bs || pg_money_parse_decimal(pg_slice_cstr(bs), am.exp, &other, NULL) != 0)
        return;
    if (am.parsed[HOLD_ABOVE] && other > am.minor[HOLD_ABOVE])
        check_hold_order(ld, am.node[HOLD_ABOVE], where, false, cfg_text(am.node[HOLD_ABOVE]), bs,
                         bp->name);
    else if (am.parsed[NEVER_HOLD_BELOW] && am.minor[NEVER_HOLD_BELOW] > other)
        check_hold_order(ld, am.node[NEVER_HOLD_BELOW], where, true,
                         cfg_text(am.node[NEVER_HOLD_BELOW]), bs, bp->name);
}

static void load_agent(struct cfg_loader *ld, const yaml_node_t *it, const char *where,
                       struct pg_agent *a, const yaml_node_t **id_node)
{
    struct pg_config *cfg = ld->cfg;
    char path[CFG_PATH_MAX], howto[160];
    yaml_node_t *v[A_COUNT], *k[A_COUNT];

    if (!cfg_fields(ld, it, where, agent_keys, A_COUNT, v, k))
        return;
    if (cfg_require(ld, it, v, k, A_id, agent_keys, where)) {
        const char *s = checked(ld, v[A_id], P("id"), cfg_name_check);
        if (s) {
            a->id = cfg_dup(ld, s);
            *id_node = v[A_id];
        }
    }
    if (cfg_require(ld, it, v, k, A_org, agent_keys, where)) {
        const char *s = cfg_str(ld, v[A_org], P("org"));
        if (s && REF_EXISTS(ld, v[A_org], path, s, "org", "orgs", cfg->orgs, cfg->norgs))
            a->org = cfg_dup(ld, s);
    }
    snprintf(howto, sizeof howto, "payguard token new --agent %.64s prints both",
             a->id ? a->id : "ID");
    if (v[A_client_cert])
        load_client_cert(ld, v[A_client_cert], where, a);
    /* A certificate-bound agent may do without a token. */
    if (v[A_token] || !v[A_client_cert]) {
        if (cfg_require(ld, it, v, k, A_token, agent_keys, where))
            a->token_hash = cfg_dup(ld, hash_field(ld, v[A_token], P("token"), "token", howto));
    }
    if (cfg_require(ld, it, v, k, A_rails, agent_keys, where)) {
        if (cfg_str_list(ld, v[A_rails], P("rails"), check_rail_item, false, &a->rails,
                         &a->nrails) &&
            cfg_seq_len(v[A_rails]) == 0)
            cfg_report(ld, v[A_rails], "%s: list at least one rail the agent may use", path);
    }
    if (v[A_policy]) {
        const char *s = cfg_str(ld, v[A_policy], P("policy"));
        if (s && REF_EXISTS(ld, v[A_policy], path, s, "policy", "policies", cfg->policies,
                            cfg->npolicies))
            a->policy = cfg_dup(ld, s);
    }
    if (v[A_expires]) {
        const char *s = cfg_str(ld, v[A_expires], P("expires"));
        const char *why = s ? cfg_timestamp_check(s, &a->expires) : NULL;
        if (why)
            cfg_report(ld, v[A_expires], "%s: \"%.*s\" %s", path, CFG_ECHO, s, why);
    }
    if (v[A_revoked])
        (void)cfg_bool(ld, v[A_revoked], P("revoked"), &a->revoked);
    if (v[A_overrides])
        load_overrides(ld, v[A_overrides], where, v[A_policy] != NULL, a);
}

static void load_agents(struct cfg_loader *ld, const yaml_node_t *n)
{
    struct pg_config *cfg = ld->cfg;
    char where[64];
    const yaml_node_t **ids;
    size_t nids = 0;

    if (!cfg_is_seq(ld, n, "agents"))
        return;
    size_t len = cfg_seq_len(n);
    cfg->agents = cfg_calloc(ld, len, sizeof *cfg->agents);
    ids = cfg_calloc(ld, len, sizeof *ids);
    if (!cfg->agents || !ids) {
        free(ids);
        return;
    }
    cfg->nagents = len;
    for (size_t i = 0; i < len; i++) {
        const yaml_node_t *it = cfg_seq_item(ld, n, i), *id = NULL;
        snprintf(where, sizeof where, "agents[%zu]", i);
        if (!it || cfg_is_null(it)) {
            if (it)
                cfg_report(ld, it, "%s: empty entry", where);
            continue;
        }
        load_agent(ld, it, where, &cfg->agents[i], &id);
        if (id)
            ids[nids++] = id;
    }
    cfg_report_dups(ld, ids, nids, false, "agent id", "");
    free(ids);
}

/* ---- webhooks ---------------------------------------------------------- */

#define WEBHOOK_KEYS(X)                                                                            \
    X(W_, url) X(W_, secret) X(W_, events) X(W_, previous_secrets) X(W_, ca_file)                 \
        X(W_, thresholds) X(W_, max_age)
enum { WEBHOOK_KEYS(KEY_ENUM) W_COUNT };
static const char *const webhook_keys[] = {WEBHOOK_KEYS(KEY_NAME)};

/* The same names as pg_event_name (ledger/ledger.h), which config/ cannot
 * include; tests/unit/test_notify.c checks that the two lists agree. */
static const char *const event_names[] = {
    "approval.requested", "approval.decided", "approval.expired",    "budget.threshold",
    "payment.denied",     "agent.revoked",    "audit.verify_failed",
};

static bool check_event_item(struct cfg_loader *ld, const yaml_node_t *n, const char *path,
                             const char *s)
{
    PG_UNUSED(s);
    return cfg_enum(ld, n, path, event_names, PG_ARRAY_LEN(event_names)) >= 0;
}

/* payguard's own webhook targets pass the same URL guard as agents' callback
 * URLs (shape and literal addresses here; resolved names at delivery). */
static bool webhook_url_safe(struct cfg_loader *ld, const yaml_node_t *n, const char *path,
                             const char *url)
{
    struct pg_url_result r;
    char why[192];
    if (!pg_url_check(&ld->cfg->url_guard, pg_slice_cstr(url), &r)) {
        cfg_report(ld, n, "%s: \"%.*s\" is not a safe webhook target: %s", path, CFG_ECHO, url,
                   r.why[0] ? r.why : r.reason);
        return false;
    }
    if (r.kind != PG_URL_HOST_NAME &&
        !pg_urlguard_addr_ok(&ld->cfg->url_guard, (const struct sockaddr *)&r.addr, why, sizeof(why))) {
        cfg_report(ld, n, "%s: \"%.*s\" is not a safe webhook target: %s", path, CFG_ECHO, url, why);
        return false;
    }
    return true;
}

/* A Standard Webhooks signing secret: "whsec_" and base64 of 24 to 64
 * bytes. The value is never echoed. */
static void check_whsec(struct cfg_loader *ld, const yaml_node_t *n, const char *path,
                        const char *s)
{
    size_t len = strlen(s), chars = 0, pad = 0;
    bool ok = strncmp(s, "whsec_", 6) == 0;
    for (size_t i = 6; ok && i < len; i++) {
        char c = s[i];
        if (c == '=')
            pad++;
        else if (!pad && ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                          (c >= '0' && c <= '9') || c == '+' || c == '/'))
            chars++;
        else
            ok = false;
    }
    size_t bytes = chars * 3 / 4;
    if (!ok || pad > 2 || chars % 4 == 1 || bytes < 24 || bytes > 64)
        cfg_report(ld, n,
                   "%s: a webhook signing secret must be \"whsec_\" followed by the base64 of "
                   "24 to 64 random bytes (e.g. whsec_$(openssl rand -base64 32))",
                   path);
}

/* "0.8" -> 800: a fraction of a limit, 0 < f <= 1, at most 3 decimals. */
static const char *permille_check(const char *s, uint16_t *out)
{
    static const char hint[] = "must be a fraction of the limit above 0 and at most 1, like 0.8";
    unsigned v, scale = 1000;
    const char *p = s;
    if (*p != '0' && *p != '1')
        return hint;
    v = (unsigned)(*p++ - '0') * 1000;
    if (*p == '.') {
        if (!*++p)
            return hint;
        for (int i = 0; *p; i++, p++) {
            if (i >= 3 || *p < '0' || *p > '9')
                return i >= 3 ? "has more than 3 decimals" : hint;
            scale /= 10;
            v += (unsigned)(*p - '0') * scale;
        }
    } else if (*p) {
        return hint;
    }
    if (v == 0 || v > 1000)
        return hint;
    *out = (uint16_t)v;
    return NULL;
}

static bool check_threshold_item(struct cfg_loader *ld, const yaml_node_t *n, const char *path,
                                 const char *s)
{
    uint16_t p;
    const char *why = permille_check(s, &p);
    if (why)
        cfg_report(ld, n, "%s: \"%.*s\" %s", path, CFG_ECHO, s, why);
    return !why;
}

static void load_thresholds(struct cfg_loader *ld, const yaml_node_t *n, const char *path,
                            struct pg_webhook *w)
{
    char **list = NULL;
    size_t count = 0;
    if (!cfg_str_list(ld, n, path, check_threshold_item, false, &list, &count))
        return;
    if (count == 0 || count > PG_WEBHOOK_MAX_THRESHOLDS) {
        cfg_report(ld, n, "%s: list 1 to %d thresholds", path, PG_WEBHOOK_MAX_THRESHOLDS);
    } else {
        for (size_t i = 0; i < count && list; i++) {
            uint16_t p = 0;
            bool same = false;
            for (size_t k = 0; k < i; k++)
                same = same || strcmp(list[k], list[i]) == 0; /* reported by cfg_str_list */
            if (same || permille_check(list[i], &p) != NULL)
                continue;
            size_t j = w->nthresholds;
            for (; j > 0 && w->thresholds[j - 1] > p; j--)
                w->thresholds[j] = w->thresholds[j - 1]; /* kept ascending */
            if (j > 0 && w->thresholds[j - 1] == p) {
                cfg_report(ld, n, "%s: \"%s\" is listed twice", path, list[i]);
                for (; j < w->nthresholds; j++)
                    w->thresholds[j] = w->thresholds[j + 1];
                continue;
            }
            w->thresholds[j] = p;
            w->nthresholds++;
        }
    }
    for (size_t i = 0; i < count && list; i++)
        free(list[i]);
    free(list);
}

/* previous_secrets: [env:OLD, sealed:v1:...]: secrets that still sign
 * during a rotation; sealed ones are bound to
 * "webhooks[I].previous_secrets[J]". */
static void load_previous_secrets(struct cfg_loader *ld, const yaml_node_t *n, const char *where,
                                  struct pg_webhook *w)
{
    char path[CFG_PATH_MAX], item[CFG_PATH_MAX + 16];
    if (!cfg_is_seq(ld, n, P("previous_secrets")))
        return;
    size_t len = cfg_seq_len(n);
    if (len > PG_WEBHOOK_MAX_PREVIOUS) {
        cfg_report(ld, n, "%s: at most %d previous secrets", path, PG_WEBHOOK_MAX_PREVIOUS);
        return;
    }
    if (len == 0)
        return;
    w->previous_refs = cfg_calloc(ld, len, sizeof *w->previous_refs);
    w->previous = cfg_calloc(ld, len, sizeof *w->previous);
    if (!w->previous_refs || !w->previous)
        return;
    w->nprevious = len;
    for (size_t i = 0; i < len; i++) {
        const yaml_node_t *it = cfg_seq_item(ld, n, i);
        snprintf(item, sizeof item, "%s[%zu]", path, i);
        if (!it)
            continue;
        load_secret(ld, it, item, "PAYGUARD_WEBHOOK_PREVIOUS_SECRET", &w->previous_refs[i],
                    &w->previous[i]);
        if (w->previous[i])
            check_whsec(ld, it, item, w->previous[i]);
    }
}

static void load_webhooks(struct cfg_loader *ld, const yaml_node_t *n)
{
    struct pg_config *cfg = ld->cfg;
    char where[64], path[CFG_PATH_MAX];

    if (!cfg_is_seq(ld, n, "webhooks"))
        return;
    size_t len = cfg_seq_len(n);
    cfg->webhooks = cfg_calloc(ld, len, sizeof *cfg->webhooks);
    if (!cfg->webhooks)
        return;
    cfg->nwebhooks = len;
    for (size_t i = 0; i < len; i++) {
        struct pg_webhook *w = &cfg->webhooks[i];
        const yaml_node_t *it = cfg_seq_item(ld, n, i);
        yaml_node_t *v[W_COUNT], *k[W_COUNT];

        snprintf(where, sizeof where, "webhooks[%zu]", i);
        if (!it || cfg_is_null(it)) {
            if (it)
                cfg_report(ld, it, "%s: empty entry", where);
            continue;
        }
        if (!cfg_fields(ld, it, where, webhook_keys, W_COUNT, v, k))
            continue;
        if (cfg_require(ld, it, v, k, W_url, webhook_keys, where)) {
            struct cfg_url u;
            const char *s = cfg_str(ld, v[W_url], P("url"));
            const char *why = s ? cfg_url_check(s, &u) : NULL;
            if (why)
                cfg_report(ld, v[W_url], "%s: \"%.*s\" %s", path, CFG_ECHO, s, why);
            else if (s && !u.tls)
                cfg_report(ld, v[W_url], "%s: webhook targets must use https://", path);
            else if (s && !webhook_url_safe(ld, v[W_url], path, s))
                ; /* reported; names are resolved and checked again at each delivery */
            else if (s)
                w->url = cfg_dup(ld, s);
        }
        if (cfg_require(ld, it, v, k, W_secret, webhook_keys, where))
            load_secret(ld, v[W_secret], P("secret"), "PAYGUARD_WEBHOOK_SECRET", &w->secret_ref,
                        &w->secret);
        if (w->secret)
            check_whsec(ld, v[W_secret], P("secret"), w->secret);
        if (v[W_previous_secrets])
            load_previous_secrets(ld, v[W_previous_secrets], where, w);
        if (v[W_ca_file])
            set_str(ld, v[W_ca_file], P("ca_file"), &w->ca_file);
        if (v[W_thresholds])
            load_thresholds(ld, v[W_thresholds], P("thresholds"), w);
        if (v[W_max_age]) {
            const char *s = cfg_str(ld, v[W_max_age], P("max_age"));
            const char *why = s ? cfg_duration_check(s, &w->max_age_s) : NULL;
            if (why)
                cfg_report(ld, v[W_max_age], "%s: \"%.*s\" %s", path, CFG_ECHO, s, why);
        }
        if (cfg_require(ld, it, v, k, W_events, webhook_keys, where) &&
            cfg_str_list(ld, v[W_events], P("events"), check_event_item, false, &w->events,
                         &w->nevents) &&
            cfg_seq_len(v[W_events]) == 0)
            cfg_report(ld, v[W_events], "%s: list at least one event", path);
    }
}

/* ---- ledger ------------------------------------------------------------ */

#define LEDGER_KEYS(X)                                                                             \
    X(LG_, idempotency_ttl) X(LG_, approval_ttl) X(LG_, max_size_mib) X(LG_, settle_before_answer)
enum { LEDGER_KEYS(KEY_ENUM) LG_COUNT };
static const char *const ledger_keys[] = {LEDGER_KEYS(KEY_NAME)};

/* A duration in [lo, hi] seconds, said in the file's own words when not. */
static void set_duration(struct cfg_loader *ld, const yaml_node_t *n, const char *path,
                         uint32_t lo, uint32_t hi, const char *range, uint32_t *out)
{
    const char *s = cfg_str(ld, n, path);
    uint32_t v = 0;
    const char *why = s ? cfg_duration_check(s, &v) : NULL;
    if (!s)
        return;
    if (!why && (v < lo || v > hi))
        why = range;
    if (why)
        cfg_report(ld, n, "%s: \"%.*s\" %s", path, CFG_ECHO, s, why);
    else
        *out = v;
}

static void load_ledger(struct cfg_loader *ld, const yaml_node_t *n)
{
    struct pg_ledger_settings *l = &ld->cfg->ledger;
    yaml_node_t *v[LG_COUNT], *k[LG_COUNT];

    if (!cfg_fields(ld, n, "ledger", ledger_keys, LG_COUNT, v, k))
        return;
    /* Stripe keeps keys 24 h; an agent's SDK retries on that promise. */
    if (v[LG_idempotency_ttl])
        set_duration(ld, v[LG_idempotency_ttl], "ledger.idempotency_ttl", 86400, 30 * 86400,
                     "must be between 24h and 30d", &l->idempotency_ttl_s);
    if (v[LG_approval_ttl])
        set_duration(ld, v[LG_approval_ttl], "ledger.approval_ttl", 60, 30 * 86400,
                     "must be between 1m and 30d", &l->approval_ttl_s);
    if (v[LG_max_size_mib])
        (void)cfg_u32(ld, v[LG_max_size_mib], "ledger.max_size_mib", 64, 1048576,
                      &l->max_size_mib);
    if (v[LG_settle_before_answer])
        (void)cfg_bool(ld, v[LG_settle_before_answer], "ledger.settle_before_answer",
                       &l->settle_before_answer);
}

/* ---- the root ---------------------------------------------------------- */

#define ROOT_KEYS(X)                                                                               \
    X(K_, listen)                                                                                  \
    X(K_, data_dir)                                                                                \
    X(K_, master_key_env) X(K_, log_file) X(K_, limits) X(K_, rails) X(K_, orgs) X(K_, users)      \
        X(K_, agents) X(K_, policies) X(K_, webhooks) X(K_, url_guard) X(K_, ledger)
enum { ROOT_KEYS(KEY_ENUM) K_COUNT };
static const char *const root_keys[] = {ROOT_KEYS(KEY_NAME)};

#define URLGUARD_KEYS(X) X(UG_, ports) X(UG_, deny) X(UG_, allow)
enum { URLGUARD_KEYS(KEY_ENUM) UG_COUNT };
static const char *const urlguard_keys[] = {URLGUARD_KEYS(KEY_NAME)};

static bool check_port_item(struct cfg_loader *ld, const yaml_node_t *n, const char *path,
                            const char *s)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s < '1' || *s > '9' || *end || v < 1 || v > 65535) {
        cfg_report(ld, n, "%s: \"%.*s\" is not a port number (1-65535)", path, CFG_ECHO, s);
        return false;
    }
    return true;
}

static bool check_cidr_item(struct cfg_loader *ld, const yaml_node_t *n, const char *path,
                            const char *s)
{
    struct pg_cidr c;
    const char *why = NULL;
    if (pg_cidr_parse(pg_slice_cstr(s), &c, &why) != 0) {
        cfg_report(ld, n, "%s: \"%.*s\" %s", path, CFG_ECHO, s, why ? why : "is not a CIDR block");
        return false;
    }
    return true;
}

static void free_list(char **l, size_t n)
{
    if (!l)
        return;
    for (size_t i = 0; i < n; i++)
        free(l[i]);
    free(l);
}

/* url_guard: {ports: [443, 8443], deny: [CIDR...], allow: [CIDR...]} */
static void load_url_guard(struct cfg_loader *ld, const yaml_node_t *n)
{
    yaml_node_t *v[UG_COUNT], *k[UG_COUNT];
    struct pg_urlguard_opts *o = &ld->cfg->url_guard;
    char **list = NULL;
    size_t count = 0;
    const char *why = NULL;

    if (!cfg_fields(ld, n, "url_guard", urlguard_keys, UG_COUNT, v, k))
        return;
    if (v[UG_ports] && cfg_str_list(ld, v[UG_ports], "url_guard.ports", check_port_item, false,
                                    &list, &count)) {
        for (size_t i = 0; i < count && list; i++)
            if (pg_urlguard_add_port(o, (uint32_t)strtoul(list[i], NULL, 10)) != 0)
                cfg_report(ld, v[UG_ports], "url_guard.ports: too many ports");
        free_list(list, count);
    }
    list = NULL;
    count = 0;
    if (v[UG_deny] && cfg_str_list(ld, v[UG_deny], "url_guard.deny", check_cidr_item, false,
                                   &list, &count)) {
        for (size_t i = 0; i < count && list; i++)
            if (pg_urlguard_add_deny(o, pg_slice_cstr(list[i]), &why) != 0)
                cfg_report(ld, v[UG_deny], "url_guard.deny: %s", why ? why : "too many blocks");
        free_list(list, count);
    }
    list = NULL;
    count = 0;
    if (v[UG_allow] && cfg_str_list(ld, v[UG_allow], "url_guard.allow", check_cidr_item, false,
                                    &list, &count)) {
        for (size_t i = 0; i < count && list; i++)
            if (pg_urlguard_add_allow(o, pg_slice_cstr(list[i]), &why) != 0)
                cfg_report(ld, v[UG_allow], "url_guard.allow: %s", why ? why : "too many blocks");
        free_list(list, count);
    }
}

void cfg_load_root(struct cfg_loader *ld, const yaml_node_t *root)
{
    struct pg_config *cfg = ld->cfg;
    yaml_node_t *v[K_COUNT], *k[K_COUNT];

    if (!cfg_fields(ld, root, NULL, root_keys, K_COUNT, v, k))
        return;
    if (v[K_listen])
        load_listen(ld, v[K_listen]);
    if (v[K_data_dir])
        set_str(ld, v[K_data_dir], "data_dir", &cfg->data_dir);
    if (v[K_master_key_env] &&
        checked(ld, v[K_master_key_env], "master_key_env", cfg_env_name_check))
        set_str(ld, v[K_master_key_env], "master_key_env", &cfg->master_key_env);
    if (v[K_log_file])
        set_str(ld, v[K_log_file], "log_file", &cfg->log_file);
    if (v[K_limits])
        load_limits(ld, v[K_limits]);
    if (v[K_ledger])
        load_ledger(ld, v[K_ledger]);
    if (cfg_require(ld, root, v, k, K_rails, root_keys, NULL))
        load_rails(ld, v[K_rails]);
    if (v[K_orgs])
        load_orgs(ld, v[K_orgs]);
    if (v[K_policies])
        load_policies(ld, v[K_policies]);
    if (v[K_users])
        load_users(ld, v[K_users]);
    if (v[K_agents])
        load_agents(ld, v[K_agents]);
    if (v[K_url_guard])
        load_url_guard(ld, v[K_url_guard]);
    if (v[K_webhooks])
        load_webhooks(ld, v[K_webhooks]);
}
