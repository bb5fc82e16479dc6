/* From libyaml nodes to checked values. The schema in sections.c reads a
 * mapping with cfg_fields() and each value with one of the typed getters;
 * every getter reports its own problem at the node's position, so the schema
 * code stays a plain list of keys. */
#include "common/pg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config_int.h"

const char *cfg_kind(const yaml_node_t *n)
{
    switch (n->type) {
    case YAML_MAPPING_NODE:
        return "a mapping";
    case YAML_SEQUENCE_NODE:
        return "a list";
    case YAML_SCALAR_NODE:
        return cfg_is_null(n) ? "nothing (null)" : "a string";
    default:
        return "nothing";
    }
}

const char *cfg_text(const yaml_node_t *n)
{
    return (const char *)n->data.scalar.value;
}

bool cfg_is_null(const yaml_node_t *n)
{
    static const char *const nulls[] = {"", "~", "null", "Null", "NULL"};
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    for (size_t i = 0; i < PG_ARRAY_LEN(nulls); i++)
        if (strcmp(cfg_text(n), nulls[i]) == 0)
            return true;
    return false;
}

yaml_node_t *cfg_node(struct cfg_loader *ld, int index)
{
    return yaml_document_get_node(ld->doc, index);
}

size_t cfg_seq_len(const yaml_node_t *n)
{
    return (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
}

yaml_node_t *cfg_seq_item(struct cfg_loader *ld, const yaml_node_t *n, size_t i)
{
    return cfg_node(ld, n->data.sequence.items.start[i]);
}

const char *cfg_path(char *buf, size_t size, const char *where, const char *key)
{
    if (where)
        snprintf(buf, size, "%s.%.*s", where, CFG_ECHO, key);
    else
        snprintf(buf, size, "%.*s", CFG_ECHO, key);
    return buf;
}

char *cfg_dup(struct cfg_loader *ld, const char *s)
{
    if (!s)
        return NULL;
    char *d = strdup(s);
    if (!d)
        ld->nomem = true;
    return d;
}

void *cfg_calloc(struct cfg_loader *ld, size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    if (!p)
        ld->nomem = true;
    return p;
}

bool cfg_fields(struct cfg_loader *ld, const yaml_node_t *map, const char *where,
                const char *const *names, size_t n, yaml_node_t **vals, yaml_node_t **keys)
{
    char hint[CFG_ECHO + 32];
    char in[CFG_PATH_MAX + 8];

    for (size_t i = 0; i < n; i++)
        vals[i] = keys[i] = NULL;
    if (!map || cfg_is_null(map))
        return true;
    if (map->type != YAML_MAPPING_NODE) {
        if (where)
            cfg_report(ld, map, "%s: expected a mapping (key: value), got %s", where,
                       cfg_kind(map));
        else
            cfg_report(ld, map,
                       "the top level must be a mapping of sections "
                       "(listen:, rails:, agents:, ...), got %s",
                       cfg_kind(map));
        return false;
    }
    if (where)
        snprintf(in, sizeof in, "in %s", where);
    else
        snprintf(in, sizeof in, "at the top level");

    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = cfg_node(ld, p->key), *v = cfg_node(ld, p->value);
        if (!k || !v)
            continue;
        if (k->type != YAML_SCALAR_NODE) {
            cfg_report(ld, k, "keys must be plain words, got %s %s", cfg_kind(k), in);
            continue;
        }
        const char *name = cfg_text(k);
        size_t i = 0;
        while (i < n && strcmp(names[i], name) != 0)
            i++;
        if (i == n) {
            const char *s = CFG_SUGGEST_NAMES(name, names, n);
            hint[0] = '\0';
            if (s)
                snprintf(hint, sizeof hint, " (did you mean \"%s\"?)", s);
            cfg_report(ld, k, "unknown key \"%.*s\" %s%s", CFG_ECHO, name, in, hint);
            continue;
        }
        if (keys[i]) {
            cfg_report(ld, k, "duplicate key \"%s\" %s (first at line %zu, column %zu)", name, in,
                       keys[i]->start_mark.line + 1, keys[i]->start_mark.column + 1);
            continue;
        }
        keys[i] = k;
        vals[i] = cfg_is_null(v) ? NULL : v;
    }
    return true;
}

bool cfg_require(struct cfg_loader *ld, const yaml_node_t *anchor, yaml_node_t *const *vals,
                 yaml_node_t *const *keys, size_t i, const char *const *names, const char *where)
{
    char path[CFG_PATH_MAX];

    if (vals[i])
        return true;
    if (keys[i])
        cfg_report(ld, keys[i], "%s: a value is required",
                   cfg_path(path, sizeof path, where, names[i]));
    else if (where)
        cfg_report(ld, anchor, "missing required key \"%s\" in %s", names[i], where);
    else
        cfg_report(ld, anchor, "missing required top-level key \"%s\"", names[i]);
    return false;
}

const char *cfg_str(struct cfg_loader *ld, const yaml_node_t *n, const char *path)
{
    if (n->type != YAML_SCALAR_NODE) {
        cfg_report(ld, n, "%s: expected a string, got %s", path, cfg_kind(n));
        return NULL;
    }
    if (n->data.scalar.length == 0) {
        cfg_report(ld, n, "%s: must not be empty", path);
        return NULL;
    }
    if (strlen(cfg_text(n)) != n->data.scalar.length) {
        cfg_report(ld, n, "%s: must not contain a NUL character", path);
        return NULL;
    }
    return cfg_text(n);
}

/* Numbers and booleans are plain scalars: a quoted "30000" is a string in
 * YAML, and saying so beats guessing what was meant. */
static bool plain_scalar(struct cfg_loader *ld, const yaml_node_t *n, const char *path,
                         const char *what)
{
    if (n->type != YAML_SCALAR_NODE) {
        cfg_report(ld, n, "%s: expected %s, got %s", path, what, cfg_kind(n));
        return false;
    }
    if (n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) {
        cfg_report(ld, n, "%s: expected %s, got a quoted string (remove the quotes)", path, what);
        return false;
    }
    return true;
}

bool cfg_u32(struct cfg_loader *ld, const yaml_node_t *n, const char *path, uint32_t lo,
             uint32_t hi, uint32_t *out)
{
    if (!plain_scalar(ld, n, path, "a whole number"))
        return false;
    const char *s = cfg_text(n);
    uint64_t v = 0;
    size_t i = 0;
    for (; s[i] >= '0' && s[i] <= '9'; i++) {
        v = v * 10 + (uint64_t)(s[i] - '0');
        if (v > UINT32_MAX)
            break;
    }
    if (i == 0 || (s[i] && v <= UINT32_MAX)) {
        cfg_report(ld, n, "%s: expected a whole number, got \"%.*s\"", path, CFG_ECHO, s);
        return false;
    }
    if (v < lo || v > hi) {
        cfg_report(ld, n, "%s: must be between %u and %u, got %.*s", path, lo, hi, CFG_ECHO, s);
        return false;
    }
    *out = (uint32_t)v;
    return true;
}

bool cfg_bool(struct cfg_loader *ld, const yaml_node_t *n, const char *path, bool *out)
{
    static const char *const yes[] = {"true", "True", "TRUE"};
    static const char *const no[] = {"false", "False", "FALSE"};

    if (!plain_scalar(ld, n, path, "true or false"))
        return false;
    for (size_t i = 0; i < PG_ARRAY_LEN(yes); i++) {
        if (strcmp(cfg_text(n), yes[i]) == 0) {
            *out = true;
            return true;
        }
        if (strcmp(cfg_text(n), no[i]) == 0) {
            *out = false;
            return true;
        }
    }
    cfg_report(ld, n, "%s: expected true or false, got \"%.*s\"", path, CFG_ECHO, cfg_text(n));
    return false;
}

int cfg_enum(struct cfg_loader *ld, const yaml_node_t *n, const char *path,
             const char *const *names, size_t count)
{
    char list[256];
    size_t used = 0;

    const char *s = cfg_str(ld, n, path);
    if (!s)
        return -1;
    for (size_t i = 0; i < count; i++)
        if (strcmp(s, names[i]) == 0)
            return (int)i;

    list[0] = '\0';
    for (size_t i = 0; i < count && used < sizeof list; i++) {
        int w = snprintf(list + used, sizeof list - used, "%s%s",
                         i == 0 ? "" : (i + 1 == count ? " or " : ", "), names[i]);
        if (w < 0)
            break;
        used += (size_t)w;
    }
    const char *sug = CFG_SUGGEST_NAMES(s, names, count);
    if (sug)
        cfg_report(ld, n, "%s: unknown value \"%.*s\" (did you mean \"%s\"? expected %s)", path,
                   CFG_ECHO, s, sug, list);
    else
        cfg_report(ld, n, "%s: unknown value \"%.*s\" (expected %s)", path, CFG_ECHO, s, list);
    return -1;
}

bool cfg_is_seq(struct cfg_loader *ld, const yaml_node_t *n, const char *path)
{
    if (n->type == YAML_SEQUENCE_NODE)
        return true;
    cfg_report(ld, n, "%s: expected a list (e.g. [a, b] or lines starting with \"- \"), got %s",
               path, cfg_kind(n));
    return false;
}

bool cfg_str_list(struct cfg_loader *ld, const yaml_node_t *n, const char *path, cfg_item_cb check,
                  bool lower, char ***out, size_t *count)
{
    char ipath[CFG_PATH_MAX];

    if (!cfg_is_seq(ld, n, path))
        return false;
    size_t len = cfg_seq_len(n);
    const yaml_node_t **items = cfg_calloc(ld, len, sizeof *items);
    char **vals = cfg_calloc(ld, len, sizeof *vals);
    size_t nitems = 0, nvals = 0;
    if (!items || !vals) {
        free(items);
        free(vals);
        return true;
    }
    for (size_t i = 0; i < len; i++) {
        const yaml_node_t *it = cfg_seq_item(ld, n, i);
        if (!it)
            continue;
        snprintf(ipath, sizeof ipath, "%s[%zu]", path, i);
        const char *s = cfg_str(ld, it, ipath);
        if (!s || (check && !check(ld, it, ipath, s)))
            continue;
        items[nitems++] = it;
        char *d = cfg_dup(ld, s);
        if (d && lower)
            for (char *c = d; *c; c++)
                if (*c >= 'A' && *c <= 'Z')
                    *c = (char)(*c + 32);
        if (d)
            vals[nvals++] = d;
    }
    char where[CFG_PATH_MAX + 8];
    snprintf(where, sizeof where, " in %s", path);
    cfg_report_dups(ld, items, nitems, lower, "entry", where);
    free(items);
    *out = vals;
    *count = nvals;
    return true;
}

static int fold_cmp(const char *a, size_t la, const char *b, size_t lb, bool nocase)
{
    size_t n = la < lb ? la : lb;
    for (size_t i = 0; i < n; i++) {
        unsigned char x = (unsigned char)a[i], y = (unsigned char)b[i];
        if (nocase) {
            if (x >= 'A' && x <= 'Z')
                x = (unsigned char)(x + 32);
            if (y >= 'A' && y <= 'Z')
                y = (unsigned char)(y + 32);
        }
        if (x != y)
            return x < y ? -1 : 1;
    }
    return la < lb ? -1 : (la > lb);
}

static int node_cmp(const void *pa, const void *pb, bool nocase)
{
    const yaml_node_t *a = *(const yaml_node_t *const *)pa;
    const yaml_node_t *b = *(const yaml_node_t *const *)pb;
    int c =
        fold_cmp(cfg_text(a), a->data.scalar.length, cfg_text(b), b->data.scalar.length, nocase);
    if (c)
        return c;
    /* Same text: document order, so the first occurrence leads its run. */
    return a->start_mark.index < b->start_mark.index ? -1
                                                     : (a->start_mark.index > b->start_mark.index);
}

static int node_cmp_case(const void *a, const void *b)
{
    return node_cmp(a, b, false);
}
static int node_cmp_nocase(const void *a, const void *b)
{
    return node_cmp(a, b, true);
}

void cfg_report_dups(struct cfg_loader *ld, const yaml_node_t **nodes, size_t n, bool nocase,
                     const char *what, const char *where)
{
    if (n < 2)
        return;
    /* Sorting keeps a 10,000-agent file from costing 10^8 comparisons. */
    qsort(nodes, n, sizeof *nodes, nocase ? node_cmp_nocase : node_cmp_case);
    size_t first = 0;
    for (size_t i = 1; i < n; i++) {
        const yaml_node_t *a = nodes[first], *b = nodes[i];
        if (fold_cmp(cfg_text(a), a->data.scalar.length, cfg_text(b), b->data.scalar.length,
                     nocase) != 0) {
            first = i;
            continue;
        }
        cfg_report(ld, b, "duplicate %s \"%.*s\"%s (first at line %zu, column %zu)", what, CFG_ECHO,
                   cfg_text(b), where, a->start_mark.line + 1, a->start_mark.column + 1);
    }
}
