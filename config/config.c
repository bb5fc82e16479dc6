/* Loading payguard.yaml: read the file, let libyaml build the node tree, walk
 * it against the schema (sections.c) on top of the defaults, and hand back
 * either a complete config or every problem found. Also the config's
 * lifetime (free) and the lookups the proxy uses per request. */
#include "common/pg.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "config/config_int.h"
#include "policy/tz.h"

/* A config is a page or two; anything near this is a mistake (a log file, a
 * binary) and should not be fed to the parser. */
#define CFG_MAX_FILE (4u << 20)

static int read_file(struct cfg_loader *ld, char **buf, size_t *len)
{
    struct stat st;
    int fd = open(ld->file, O_RDONLY | O_CLOEXEC);
    size_t got = 0;

    if (fd < 0) {
        cfg_report_at(ld, 1, 1, "cannot open the config file: %s", strerror(errno));
        return -1;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        cfg_report_at(ld, 1, 1, "not a regular file");
        close(fd);
        return -1;
    }
    if ((uintmax_t)st.st_size > CFG_MAX_FILE) {
        cfg_report_at(ld, 1, 1, "the file is larger than %u MiB; is it really a config?",
                      CFG_MAX_FILE >> 20);
        close(fd);
        return -1;
    }
    size_t cap = (size_t)st.st_size + 1;
    char *b = malloc(cap);
    if (!b) {
        ld->nomem = true;
        close(fd);
        return -1;
    }
    while (got < cap - 1) {
        ssize_t r = read(fd, b + got, cap - 1 - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            cfg_report_at(ld, 1, 1, "cannot read the config file: %s", strerror(errno));
            free(b);
            close(fd);
            return -1;
        }
        if (r == 0)
            break; /* shrank while reading: parse what is there */
        got += (size_t)r;
    }
    close(fd);
    b[got] = '\0';
    *buf = b;
    *len = got;
    return 0;
}

/* The reader reports a byte offset (bad UTF-8 has no sensible column);
 * count lines up to it. */
static void offset_to_pos(const char *buf, size_t len, size_t off, size_t *line, size_t *col)
{
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < off && i < len; i++) {
        if (buf[i] == '\n') {
            (*line)++;
            *col = 1;
        } else {
            (*col)++;
        }
    }
}

static void report_parser(struct cfg_loader *ld, const yaml_parser_t *p, const char *buf,
                          size_t len)
{
    size_t line, col;
    const char *problem = p->problem ? p->problem : "cannot parse";
    char ctx[160] = "";
    const char *hint = "";

    if (p->error == YAML_MEMORY_ERROR) {
        ld->nomem = true;
        return;
    }
    if (p->error == YAML_READER_ERROR) {
        offset_to_pos(buf, len, p->problem_offset, &line, &col);
        cfg_report_at(ld, line, col, "invalid YAML: %s (the file must be UTF-8 text)", problem);
        return;
    }
    line = p->problem_mark.line + 1;
    col = p->problem_mark.column + 1;
    if (p->context)
        snprintf(ctx, sizeof ctx, " (%s at line %zu, column %zu)", p->context,
                 p->context_mark.line + 1, p->context_mark.column + 1);
    if (p->problem_mark.index < len && buf[p->problem_mark.index] == '\t')
        hint = "; indent with spaces, not tabs";
    else if (strstr(problem, "mapping values are not allowed"))
        hint = "; a value containing \": \" needs quotes";
    cfg_report_at(ld, line, col, "invalid YAML: %s%s%s", problem, ctx, hint);
}

static void set_defaults(struct cfg_loader *ld, struct pg_config *cfg)
{
    cfg->path = cfg_dup(ld, ld->file);
    cfg->listen_agents.text = cfg_dup(ld, "127.0.0.1:8402");
    (void)cfg_addr_check("127.0.0.1:8402", &cfg->listen_agents.sa, &cfg->listen_agents.salen);
    cfg->listen_admin.text = cfg_dup(ld, "127.0.0.1:8403");
    (void)cfg_addr_check("127.0.0.1:8403", &cfg->listen_admin.sa, &cfg->listen_admin.salen);
    cfg->data_dir = cfg_dup(ld, "./var/payguard");
    cfg->master_key_env = cfg_dup(ld, "PAYGUARD_MASTER_KEY");
    cfg->limits.header_bytes = 32768;
    cfg->limits.max_headers = 100;
    cfg->limits.body_bytes = 1048576;
    cfg->limits.header_timeout_ms = 10000;
    cfg->limits.body_timeout_ms = 30000;
    cfg->limits.idle_timeout_ms = 60000;
    cfg->limits.drain_timeout_ms = 15000;
    cfg->limits.max_connections = 10000;
    cfg->limits.auth_failures = 20;
    cfg->ledger.idempotency_ttl_s = 86400;
    cfg->ledger.approval_ttl_s = 86400;
    cfg->ledger.max_size_mib = 4096;
}

/* The schema nests five levels at most. libyaml's scanner slows down
 * quadratically with flow nesting ("[[[[..."), so a pass over the events
 * refuses absurd depth before the tree is built. Syntax errors are left to
 * the real load, which reports them. */
#define CFG_MAX_DEPTH 32

static bool depth_ok(struct cfg_loader *ld, const char *buf, size_t len)
{
    yaml_parser_t parser;
    yaml_event_t ev;
    int depth = 0;
    bool ok = true, done = false;

    if (!yaml_parser_initialize(&parser)) {
        ld->nomem = true;
        return false;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)buf, len);
    while (!done && yaml_parser_parse(&parser, &ev)) {
        switch (ev.type) {
        case YAML_SEQUENCE_START_EVENT:
        case YAML_MAPPING_START_EVENT:
            if (++depth > CFG_MAX_DEPTH) {
                cfg_report_at(ld, ev.start_mark.line + 1, ev.start_mark.column + 1,
                              "nested more than %d levels deep; payguard.yaml never "
                              "needs that many",
                              CFG_MAX_DEPTH);
                ok = false;
                done = true;
            }
            break;
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT:
            depth--;
            break;
        case YAML_STREAM_END_EVENT:
            done = true;
            break;
        default:
            break;
        }
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&parser);
    return ok;
}

/* Parses the one document in buf and walks it. A second document ("---")
 * would be silently ignored by a single load, so it is an error. */
static void parse_and_walk(struct cfg_loader *ld, const char *buf, size_t len)
{
    yaml_parser_t parser;
    yaml_document_t doc, extra;

    if (!depth_ok(ld, buf, len))
        return;
    if (!yaml_parser_initialize(&parser)) {
        ld->nomem = true;
        return;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)buf, len);
    if (!yaml_parser_load(&parser, &doc)) {
        report_parser(ld, &parser, buf, len);
        yaml_parser_delete(&parser);
        return;
    }
    ld->doc = &doc;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (!root)
        cfg_report_at(ld, 1, 1, "the file is empty; at least \"rails:\" is required");
    else
        cfg_load_root(ld, root);

    if (root) {
        if (!yaml_parser_load(&parser, &extra)) {
            report_parser(ld, &parser, buf, len);
        } else {
            if (yaml_document_get_root_node(&extra))
                cfg_report_at(ld, extra.start_mark.line + 1, extra.start_mark.column + 1,
                              "a second YAML document; payguard.yaml holds exactly one");
            yaml_document_delete(&extra);
        }
    }
    ld->doc = NULL;
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
}

int pg_config_load(const char *path, bool resolve_secrets, struct pg_config **out,
                   struct pg_config_errors *errs)
{
    struct cfg_loader ld;
    char *buf = NULL;
    size_t len = 0;

    if (errs) {
        errs->msgs = NULL;
        errs->count = 0;
    }
    if (!path || !out)
        return PG_ECONFIG;
    memset(&ld, 0, sizeof ld);
    ld.file = path;
    ld.resolve = resolve_secrets;
    ld.cfg = calloc(1, sizeof *ld.cfg);
    if (!ld.cfg)
        return PG_ENOMEM;
    set_defaults(&ld, ld.cfg);

    if (read_file(&ld, &buf, &len) == 0)
        parse_and_walk(&ld, buf, len);
    free(buf);

    free(ld.policy_currency_refused);

    if (ld.nomem) {
        cfg_problems_discard(&ld);
        pg_config_free(ld.cfg);
        return PG_ENOMEM;
    }
    if (ld.nprobs > 0) {
        cfg_problems_finish(&ld, errs);
        pg_config_free(ld.cfg);
        return ld.nomem ? PG_ENOMEM : PG_ECONFIG;
    }
    *out = ld.cfg;
    return 0;
}

static void free_list(char **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

/* Frees what a spec points to, not the spec: policies sit in an array. */
static void free_spec(struct pg_policy_spec *p)
{
    free(p->name);
    free(p->currency);
    free(p->per_transaction);
    free(p->daily);
    free(p->weekly);
    free(p->monthly);
    free(p->approval_above);
    free(p->auto_approve_below);
    free_list(p->merchants_allow, p->nmerchants_allow);
    free_list(p->merchants_deny, p->nmerchants_deny);
    free(p->hours_days);
    free(p->hours_from);
    free(p->hours_to);
    free_list(p->currencies, p->ncurrencies);
    free_list(p->operations, p->noperations);
}

static void free_routes(struct pg_route_spec *routes, size_t n)
{
    for (size_t i = 0; routes && i < n; i++) {
        struct pg_route_spec *rt = &routes[i];
        free(rt->name);
        free(rt->method);
        free(rt->path);
        free(rt->operation);
        free(rt->amount);
        free(rt->currency);
        free_list(rt->counterparty, rt->ncounterparty);
        free_list(rt->urls, rt->nurls);
    }
    free(routes);
}

/* Secrets (env: copies and unsealed values alike) leave no copy behind in
 * freed heap memory. */
static void free_secret(char *s)
{
    if (s) {
        OPENSSL_cleanse(s, strlen(s));
        free(s);
    }
}

void pg_config_free(struct pg_config *cfg)
{
    if (!cfg)
        return;
    free(cfg->path);
    free(cfg->listen_agents.text);
    free(cfg->listen_admin.text);
    free(cfg->agents_tls.cert);
    free(cfg->agents_tls.key);
    free(cfg->agents_tls.client_ca);
    free(cfg->data_dir);
    free(cfg->master_key_env);
    free(cfg->log_file);
    for (size_t i = 0; cfg->rails && i < cfg->nrails; i++) {
        struct pg_rail *r = &cfg->rails[i];
        free(r->name);
        free(r->upstream);
        free(r->upstream_host);
        free(r->upstream_hostport);
        free(r->secret_ref);
        free_secret(r->secret);
        free(r->ca_file);
        free_routes(r->routes, r->nroutes);
    }
    free(cfg->rails);
    for (size_t i = 0; cfg->orgs && i < cfg->norgs; i++) {
        free(cfg->orgs[i].name);
        free(cfg->orgs[i].timezone);
        pg_tz_free(cfg->orgs[i].tz);
    }
    free(cfg->orgs);
    for (size_t i = 0; cfg->users && i < cfg->nusers; i++) {
        struct pg_user *u = &cfg->users[i];
        free(u->email);
        free(u->org);
        free(u->password_hash);
        free(u->totp_ref);
        OPENSSL_cleanse(u->totp_secret, sizeof u->totp_secret);
        free_list(u->recovery_hashes, u->nrecovery);
    }
    free(cfg->users);
    for (size_t i = 0; cfg->agents && i < cfg->nagents; i++) {
        struct pg_agent *a = &cfg->agents[i];
        free(a->id);
        free(a->org);
        free(a->token_hash);
        free(a->cert_subject);
        free_list(a->rails, a->nrails);
        free(a->policy);
        if (a->overrides) {
            free_spec(a->overrides);
            free(a->overrides);
        }
    }
    free(cfg->agents);
    for (size_t i = 0; cfg->policies && i < cfg->npolicies; i++)
        free_spec(&cfg->policies[i]);
    free(cfg->policies);
    for (size_t i = 0; cfg->webhooks && i < cfg->nwebhooks; i++) {
        struct pg_webhook *w = &cfg->webhooks[i];
        free(w->url);
        free(w->secret_ref);
        free_secret(w->secret);
        free_list(w->events, w->nevents);
        for (size_t j = 0; w->previous_refs && j < w->nprevious; j++) {
            free(w->previous_refs[j]);
            free_secret(w->previous[j]);
        }
        free(w->previous_refs);
        free(w->previous);
        free(w->ca_file);
    }
    free(cfg->webhooks);
    free(cfg);
}

void pg_config_errors_free(struct pg_config_errors *errs)
{
    if (!errs)
        return;
    free_list(errs->msgs, errs->count);
    errs->msgs = NULL;
    errs->count = 0;
}

static bool name_is(const char *name, struct pg_slice s)
{
    return name && strlen(name) == s.len && (s.len == 0 || memcmp(name, s.ptr, s.len) == 0);
}

const struct pg_rail *pg_config_rail(const struct pg_config *cfg, struct pg_slice name)
{
    for (size_t i = 0; cfg && i < cfg->nrails; i++)
        if (name_is(cfg->rails[i].name, name))
            return &cfg->rails[i];
    return NULL;
}

const struct pg_agent *pg_config_agent(const struct pg_config *cfg, struct pg_slice id)
{
    for (size_t i = 0; cfg && i < cfg->nagents; i++)
        if (name_is(cfg->agents[i].id, id))
            return &cfg->agents[i];
    return NULL;
}

const struct pg_org *pg_config_org(const struct pg_config *cfg, struct pg_slice name)
{
    for (size_t i = 0; cfg && i < cfg->norgs; i++)
        if (name_is(cfg->orgs[i].name, name))
            return &cfg->orgs[i];
    return NULL;
}

const struct pg_policy_spec *pg_config_policy(const struct pg_config *cfg, struct pg_slice name)
{
    for (size_t i = 0; cfg && i < cfg->npolicies; i++)
        if (name_is(cfg->policies[i].name, name))
            return &cfg->policies[i];
    return NULL;
}
