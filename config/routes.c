/* The schema of rails.NAME.routes: route table entries written in
 * payguard.yaml, which add to the rail's preset table or override its
 * entries (policy/ builds the table). Each names a method and a path pattern,
 * the operation it performs and where the request carries the money. */
#include "common/pg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config_int.h"

#define KEY_ENUM(p, k) p##k,
#define KEY_NAME(p, k) #k,

#define ROUTE_KEYS(X)                                                                              \
    X(RT_, name)                                                                                   \
    X(RT_, method)                                                                                 \
    X(RT_, path) X(RT_, operation) X(RT_, amount) X(RT_, currency) X(RT_, counterparty) X(RT_, urls)
enum { ROUTE_KEYS(KEY_ENUM) RT_COUNT };
static const char *const route_keys[] = {ROUTE_KEYS(KEY_NAME)};

static const char *const method_names[] = {"GET", "POST", "PUT", "PATCH", "DELETE"};
/* The first four move money; same spelling as policy/'s pg_op_name. */
static const char *const route_ops[] = {"payment", "refund", "transfer", "payout",
                                        "config",  "read",   "forbidden"};
#define MONEY_OPS 4

#define P(key) cfg_path(path, sizeof path, where, (key))

/* A field reference must suit the rail's bodies: a form key never matches
 * in a JSON body and a pointer never in a form, and a reference that can
 * never match is a money field silently missing at run time. */
static const char *ref_why(const char *s, enum pg_body_format fmt, char *buf, size_t size)
{
    if (s[0] == '/') {
        const char *why = cfg_json_pointer_check(s);
        if (why || fmt == PG_BODY_JSON)
            return why;
        return "is a JSON pointer, but this rail's request bodies are form-encoded; write "
               "a form key like amount or transfer_data[destination]";
    }
    const char *why = cfg_form_key_check(s);
    if (why || fmt == PG_BODY_FORM)
        return why;
    if (!strchr(s, '['))
        snprintf(buf, size,
                 "is a form key, but this rail's request bodies are JSON; write a JSON "
                 "pointer like \"/%.*s\"",
                 CFG_ECHO, s);
    else
        snprintf(buf, size,
                 "is a form key, but this rail's request bodies are JSON; write a JSON "
                 "pointer like /amount/value");
    return buf;
}

static bool ref_item(struct cfg_loader *ld, const yaml_node_t *n, const char *path, const char *s,
                     enum pg_body_format fmt)
{
    char buf[CFG_ECHO + 128];
    const char *why = ref_why(s, fmt, buf, sizeof buf);
    if (why)
        cfg_report(ld, n, "%s: \"%.*s\" %s", path, CFG_ECHO, s, why);
    return !why;
}

static bool ref_item_form(struct cfg_loader *ld, const yaml_node_t *n, const char *path,
                          const char *s)
{
    return ref_item(ld, n, path, s, PG_BODY_FORM);
}

static bool ref_item_json(struct cfg_loader *ld, const yaml_node_t *n, const char *path,
                          const char *s)
{
    return ref_item(ld, n, path, s, PG_BODY_JSON);
}

/* One field reference into *dst. */
static void load_ref(struct cfg_loader *ld, const yaml_node_t *n, const char *path,
                     enum pg_body_format fmt, char **dst)
{
    const char *s = cfg_str(ld, n, path);
    if (s && ref_item(ld, n, path, s, fmt))
        *dst = cfg_dup(ld, s);
}

/* A string or a non-empty list of at most `max` strings, each a field
 * reference. */
static void load_ref_list(struct cfg_loader *ld, const yaml_node_t *n, const char *path,
                          enum pg_body_format fmt, bool allow_string, size_t max, char ***out,
                          size_t *count)
{
    if (allow_string && n->type == YAML_SCALAR_NODE) {
        char *one = NULL;
        load_ref(ld, n, path, fmt, &one);
        if (!one)
            return;
        *out = cfg_calloc(ld, 1, sizeof **out);
        if (!*out) {
            free(one);
            return;
        }
        (*out)[0] = one;
        *count = 1;
        return;
    }
    if (!cfg_str_list(ld, n, path, fmt == PG_BODY_JSON ? ref_item_json : ref_item_form, false, out,
                      count))
        return;
    if (cfg_seq_len(n) == 0)
        cfg_report(ld, n, "%s: list at least one field (or leave the key out)", path);
    else if (cfg_seq_len(n) > max)
        cfg_report(ld, n, "%s: at most %zu fields, got %zu", path, max, cfg_seq_len(n));
}

/* The method in upper case, whatever case it was written in. */
static char *load_method(struct cfg_loader *ld, const yaml_node_t *n, const char *path)
{
    char up[8];
    const char *s = cfg_str(ld, n, path);

    if (!s)
        return NULL;
    size_t len = strlen(s);
    if (len < sizeof up) {
        for (size_t i = 0; i <= len; i++)
            up[i] = (char)(s[i] >= 'a' && s[i] <= 'z' ? s[i] - 32 : s[i]);
        for (size_t i = 0; i < PG_ARRAY_LEN(method_names); i++)
            if (strcmp(up, method_names[i]) == 0)
                return cfg_dup(ld, method_names[i]);
    }
    /* Not one of them in any case: cfg_enum words the refusal. */
    (void)cfg_enum(ld, n, path, method_names, PG_ARRAY_LEN(method_names));
    return NULL;
}

/* A route's identity for duplicate detection: "POST /v1/x/{}". Placeholder
 * names do not count: /x/{id} and /x/{xid} match the same requests. */
struct route_key {
    char *text;
    const yaml_node_t *node; /* the path value, where a repeat is reported */
};

static char *route_identity(struct cfg_loader *ld, const char *method, const char *p)
{
    size_t cap = strlen(method) + 1 + strlen(p) + 1, used = 0;
    char *k = cfg_calloc(ld, cap, 1);
    if (!k)
        return NULL;
    used = (size_t)snprintf(k, cap, "%s ", method);
    while (*p) {
        if (*p == '{') {
            k[used++] = '{';
            k[used++] = '}';
            p = strchr(p, '}') + 1; /* the path check guarantees the '}' */
            continue;
        }
        k[used++] = *p++;
    }
    k[used] = '\0';
    return k;
}

static int key_cmp(const void *pa, const void *pb)
{
    const struct route_key *a = pa, *b = pb;
    int c = strcmp(a->text, b->text);
    if (c)
        return c;
    return a->node->start_mark.index < b->node->start_mark.index
               ? -1
               : (a->node->start_mark.index > b->node->start_mark.index);
}

static void report_duplicates(struct cfg_loader *ld, struct route_key *keys, size_t n,
                              const char *where)
{
    if (n < 2)
        return;
    qsort(keys, n, sizeof *keys, key_cmp);
    for (size_t i = 1, first = 0; i < n; i++) {
        if (strcmp(keys[i].text, keys[first].text) != 0) {
            first = i;
            continue;
        }
        cfg_report(ld, keys[i].node,
                   "duplicate route \"%.*s\" in %s (first at line %zu, column %zu); one "
                   "method and path pattern map to one operation",
                   CFG_ECHO * 2, keys[i].text, where, keys[first].node->start_mark.line + 1,
                   keys[first].node->start_mark.column + 1);
    }
}

/* Reads one route into rt; returns the path node when method and path are
 * both good (the route then takes part in the duplicate check). */
static const yaml_node_t *load_route(struct cfg_loader *ld, const yaml_node_t *it,
                                     const char *where, const struct pg_rail *r,
                                     struct pg_route_spec *rt, const yaml_node_t **name_node)
{
    char path[CFG_PATH_MAX];
    yaml_node_t *v[RT_COUNT], *k[RT_COUNT];
    const yaml_node_t *path_node = NULL;
    int op = -1;

    if (!cfg_fields(ld, it, where, route_keys, RT_COUNT, v, k))
        return NULL;
    if (v[RT_name]) {
        const char *s = cfg_str(ld, v[RT_name], P("name"));
        const char *why = s ? cfg_name_check(s) : NULL;
        if (why)
            cfg_report(ld, v[RT_name], "%s: \"%.*s\" %s", path, CFG_ECHO, s, why);
        else if (s) {
            rt->name = cfg_dup(ld, s);
            *name_node = v[RT_name];
        }
    }
    if (cfg_require(ld, it, v, k, RT_method, route_keys, where))
        rt->method = load_method(ld, v[RT_method], P("method"));
    if (cfg_require(ld, it, v, k, RT_path, route_keys, where)) {
        const char *s = cfg_str(ld, v[RT_path], P("path"));
        const char *why = s ? cfg_route_path_check(s) : NULL;
        if (why)
            cfg_report(ld, v[RT_path], "%s: \"%.*s\" %s", path, CFG_ECHO, s, why);
        else if (s && (rt->path = cfg_dup(ld, s)) != NULL)
            path_node = v[RT_path];
    }
    if (cfg_require(ld, it, v, k, RT_operation, route_keys, where)) {
        op = cfg_enum(ld, v[RT_operation], P("operation"), route_ops, PG_ARRAY_LEN(route_ops));
        if (op >= 0)
            rt->operation = cfg_dup(ld, route_ops[op]);
    }

    /* Where the money is. A preset already knows for its own routes, so an
     * override may leave it out; a generic rail knows nothing. */
    static const size_t money[] = {RT_amount, RT_currency};
    char **money_dst[] = {&rt->amount, &rt->currency};
    for (size_t i = 0; i < PG_ARRAY_LEN(money); i++) {
        size_t ki = money[i];
        if (v[ki] && op >= MONEY_OPS) {
            cfg_report(ld, v[ki],
                       "%s: only payment, refund, transfer and payout routes carry an "
                       "amount and a currency (this route is %s)",
                       P(route_keys[ki]), route_ops[op]);
        } else if (v[ki]) {
            load_ref(ld, v[ki], P(route_keys[ki]), r->format, money_dst[i]);
        } else if (op >= 0 && op < MONEY_OPS && r->preset == PG_PRESET_GENERIC) {
            if (k[ki])
                cfg_report(ld, k[ki], "%s: a value is required", P(route_keys[ki]));
            else
                cfg_report(ld, it,
                           "missing required key \"%s\" in %s (a %s route on a generic rail "
                           "names the request field holding the %s)",
                           route_keys[ki], where, route_ops[op], route_keys[ki]);
        }
    }
    if (v[RT_counterparty])
        load_ref_list(ld, v[RT_counterparty], P("counterparty"), r->format, true,
                      PG_ROUTE_MAX_COUNTERPARTY, &rt->counterparty, &rt->ncounterparty);
    if (v[RT_urls])
        load_ref_list(ld, v[RT_urls], P("urls"), r->format, false, PG_ROUTE_MAX_URLS, &rt->urls,
                      &rt->nurls);

    if (!rt->method || !path_node)
        return NULL;
    if (!rt->name) {
        size_t len = strlen(rt->method) + 1 + strlen(rt->path) + 1;
        rt->name = cfg_calloc(ld, len, 1);
        if (rt->name)
            snprintf(rt->name, len, "%s %s", rt->method, rt->path);
    }
    return path_node;
}

void cfg_load_routes(struct cfg_loader *ld, const yaml_node_t *n, const char *rwhere,
                     struct pg_rail *r)
{
    char where[CFG_PATH_MAX], lwhere[CFG_PATH_MAX];

    cfg_path(lwhere, sizeof lwhere, rwhere, "routes");
    if (!cfg_is_seq(ld, n, lwhere))
        return;
    size_t len = cfg_seq_len(n), nkeys = 0, nnames = 0;
    r->routes = cfg_calloc(ld, len, sizeof *r->routes);
    struct route_key *keys = cfg_calloc(ld, len, sizeof *keys);
    const yaml_node_t **names = cfg_calloc(ld, len, sizeof *names);
    if (!r->routes || !keys || !names)
        goto out;
    r->nroutes = len;
    for (size_t i = 0; i < len; i++) {
        const yaml_node_t *it = cfg_seq_item(ld, n, i), *name = NULL;
        snprintf(where, sizeof where, "%.200s[%zu]", lwhere, i);
        if (!it || cfg_is_null(it)) {
            if (it)
                cfg_report(ld, it, "%s: empty entry", where);
            continue;
        }
        struct pg_route_spec *rt = &r->routes[i];
        const yaml_node_t *pn = load_route(ld, it, where, r, rt, &name);
        if (name)
            names[nnames++] = name;
        if (pn) {
            keys[nkeys].text = route_identity(ld, rt->method, rt->path);
            keys[nkeys].node = pn;
            if (keys[nkeys].text)
                nkeys++;
        }
    }
    report_duplicates(ld, keys, nkeys, lwhere);
    snprintf(where, sizeof where, " in %.200s", lwhere);
    cfg_report_dups(ld, names, nnames, false, "route name", where);
out:
    for (size_t i = 0; keys && i < nkeys; i++)
        free(keys[i].text);
    free(keys);
    free(names);
}
