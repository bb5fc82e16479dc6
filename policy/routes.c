/* Route tables: a rail's preset plus its payguard.yaml routes compiled into
 * one table, path hygiene (the bypass guard every request passes first),
 * matching, and pg_rail_classify, which turns a request into the intent the
 * rules decide on. Extraction from bodies lives in form.c and jsonbody.c;
 * the preset tables in stripe.c and adyen.c. */
#include "common/pg.h"
#include "policy/policy_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Requests deeper than this match nothing a table can hold anyway; refusing
 * them keeps the segment array on the stack. */
#define MAX_REQ_SEGS 64

struct pg_routes {
    struct pg_route *v; /* most specific first: the first match wins */
    size_t n;
    enum pg_body_format format;
    char *arena; /* copies of the payguard.yaml strings the routes point into */
};

/* --- operations -------------------------------------------------------- */

static const char *const op_names[PG_OP_COUNT] = {
    [PG_OP_READ] = "read",           [PG_OP_PAYMENT] = "payment", [PG_OP_REFUND] = "refund",
    [PG_OP_TRANSFER] = "transfer",   [PG_OP_PAYOUT] = "payout",   [PG_OP_CONFIG] = "config",
    [PG_OP_FORBIDDEN] = "forbidden",
};

const char *pg_op_name(enum pg_op op)
{
    if ((unsigned)op >= PG_OP_COUNT)
        return "unknown";
    return op_names[op];
}

int pg_op_parse(struct pg_slice name)
{
    for (int i = 0; i < PG_OP_COUNT; i++)
        if (pg_slice_eq(name, pg_slice_cstr(op_names[i])))
            return i;
    return -1;
}

/* Refunds count too: money leaves the account, and an agent looping on
 * refunds is as costly as one looping on payments. Whether a refund gives
 * budget back is the policy's refunds_restore, not this. */
bool pg_op_moves_money(enum pg_op op)
{
    return op == PG_OP_PAYMENT || op == PG_OP_REFUND || op == PG_OP_TRANSFER || op == PG_OP_PAYOUT;
}

/* --- small helpers shared with the extractors ---------------------------- */

void pg_route_bad(struct pg_decision *d, const char *reason, const char *param, const char *fmt,
                  ...)
{
    d->verdict = PG_VERDICT_DENY;
    d->status = 400;
    d->reason = reason;
    d->param = param;
    d->limit_name = NULL;
    d->limit = 0;
    d->headroom = 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->message, sizeof d->message, fmt, ap);
    va_end(ap);
}

char *pg_intent_keep(struct pg_intent *in, const char *p, size_t n)
{
    if (n > sizeof in->scratch - in->scratch_used)
        return NULL;
    char *dst = in->scratch + in->scratch_used;
    if (n)
        memcpy(dst, p, n);
    in->scratch_used += n;
    return dst;
}

/* The only bytes a path may hold: RFC 3986 unreserved characters and '/'.
 * Object ids never need escaping, so anything else is an attempt to make
 * payguard and the rail read the path differently. */
static bool is_path_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '~' || c == '-';
}

static bool is_dot_segment(struct pg_slice s)
{
    return (s.len == 1 && s.ptr[0] == '.') || (s.len == 2 && s.ptr[0] == '.' && s.ptr[1] == '.');
}

/* --- compiling patterns -------------------------------------------------- */

/* Parses `path` into r->seg. NULL on success, else why it is not a pattern. */
static const char *compile_pattern(struct pg_route *r, const char *path)
{
    size_t len = strlen(path), i = 1;
    int id_capture = -1, last_capture = -1;

    if (len == 0 || path[0] != '/')
        return "must start with '/'";
    r->nseg = 0;
    if (len == 1) {
        r->capture = -1;
        return NULL;
    }
    while (i <= len) {
        size_t start = i;
        while (i < len && path[i] != '/')
            i++;
        struct pg_slice s = {path + start, i - start};
        i++; /* past the '/' (or the end) */
        if (s.len == 0)
            return "has an empty segment (\"//\" or a trailing '/')";
        if (r->nseg == PG_ROUTE_MAX_SEGS)
            return "has more than 16 segments";
        if (r->nseg > 0 && r->seg[r->nseg - 1].kind == SEG_REST)
            return "has \"**\" before its last segment";
        struct pg_seg *g = &r->seg[r->nseg];
        g->lit = s;
        if (s.len == 2 && s.ptr[0] == '*' && s.ptr[1] == '*') {
            g->kind = SEG_REST;
        } else if (s.len == 1 && s.ptr[0] == '*') {
            g->kind = SEG_ANY;
        } else if (s.ptr[0] == '{') {
            if (s.len < 3 || s.ptr[s.len - 1] != '}')
                return "has a placeholder that is not a whole segment like {id}";
            for (size_t k = 1; k + 1 < s.len; k++) {
                char c = s.ptr[k];
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '_'))
                    return "has a placeholder name other than letters, digits and '_'";
            }
            g->kind = SEG_CAPTURE;
            last_capture = r->nseg;
            if (pg_slice_eq(s, PG_SLICE("{id}")))
                id_capture = r->nseg;
        } else {
            if (is_dot_segment(s))
                return "has a \".\" or \"..\" segment";
            for (size_t k = 0; k < s.len; k++)
                if (!is_path_char((unsigned char)s.ptr[k]))
                    return "has a character other than letters, digits, '_', '.', '~' and '-'";
            g->kind = SEG_LIT;
        }
        r->nseg++;
    }
    r->capture = (int8_t)(id_capture >= 0 ? id_capture : last_capture);
    return NULL;
}

/* Specificity of what a pattern has at position i: the leftmost difference
 * between two patterns decides, literal over {id} or '*', those over the
 * pattern's end, and the end over "**" (on the path /v1, a route for exactly
 * /v1 beats the catch-all under /v1). */
static int seg_rank(const struct pg_route *r, size_t i)
{
    if (i >= r->nseg)
        return 1;
    switch (r->seg[i].kind) {
    case SEG_LIT:
        return 3;
    case SEG_ANY:
    case SEG_CAPTURE:
        return 2;
    case SEG_REST:
        return 0;
    }
    return 0;
}

/* The order routes are tried in. Catch-alls ("**") come after every pattern
 * of fixed length, so a route written for one path (payguard.yaml can only
 * write those) is never shadowed by a preset's "GET /v1 and below". Within
 * each group, two patterns that can match one path either differ in rank
 * somewhere (the higher wins) or are the same pattern, where a named method
 * beats "*". Indexes keep the sort stable. */
struct sort_item {
    struct pg_route r;
    size_t index;
};

static int route_cmp(const void *pa, const void *pb)
{
    const struct sort_item *a = pa, *b = pb;
    bool rest_a = a->r.nseg && a->r.seg[a->r.nseg - 1].kind == SEG_REST;
    bool rest_b = b->r.nseg && b->r.seg[b->r.nseg - 1].kind == SEG_REST;
    if (rest_a != rest_b)
        return rest_a ? 1 : -1;
    size_t n = a->r.nseg > b->r.nseg ? a->r.nseg : b->r.nseg;
    for (size_t i = 0; i <= n; i++) {
        int ra = seg_rank(&a->r, i), rb = seg_rank(&b->r, i);
        if (ra != rb)
            return rb - ra;
    }
    if ((a->r.method.len == 0) != (b->r.method.len == 0))
        return a->r.method.len == 0 ? 1 : -1;
    return a->index < b->index ? -1 : (a->index > b->index);
}

/* Same method and same pattern, placeholder names and '*' alike: a user
 * route then replaces the preset's. */
static bool same_route(const struct pg_route *a, const struct pg_route *b)
{
    if (!pg_slice_eq(a->method, b->method) || a->nseg != b->nseg)
        return false;
    for (size_t i = 0; i < a->nseg; i++) {
        const struct pg_seg *x = &a->seg[i], *y = &b->seg[i];
        bool wx = x->kind == SEG_ANY || x->kind == SEG_CAPTURE;
        bool wy = y->kind == SEG_ANY || y->kind == SEG_CAPTURE;
        if (wx != wy)
            return false;
        if (!wx && (x->kind != y->kind || !pg_slice_eq(x->lit, y->lit)))
            return false;
    }
    return true;
}

static struct pg_slice opt_field(const char *s)
{
    return s && *s ? pg_slice_cstr(s) : PG_SLICE_NULL;
}

/* A money route that creates its object needs the amount and currency
 * unless it says otherwise; the rules then always see what is spent. */
static void finish_route(struct pg_route *r)
{
    if (pg_op_moves_money(r->op) && r->action == PG_ACT_CREATE && r->field[SLOT_AMOUNT].len &&
        !(r->flags & RF_AMOUNT_OPTIONAL)) {
        r->flags |= RF_NEED_AMOUNT;
        if (r->field[SLOT_CURRENCY].len)
            r->flags |= RF_NEED_CURRENCY;
    }
    r->extracts = r->items.len > 0;
    for (size_t i = 0; i < SLOT_COUNT; i++)
        if (r->field[i].len)
            r->extracts = true;
}

static const char *compile_def(struct pg_route *r, const struct pg_route_def *d)
{
    memset(r, 0, sizeof *r);
    r->method = strcmp(d->method, "*") == 0 ? PG_SLICE_NULL : pg_slice_cstr(d->method);
    r->name = d->name;
    r->path = d->path;
    r->op = d->op;
    r->action = d->action;
    r->flags = d->flags;
    r->field[SLOT_AMOUNT] = opt_field(d->amount);
    r->field[SLOT_CURRENCY] = opt_field(d->currency);
    for (size_t i = 0; i < PG_ROUTE_MAX_CP; i++)
        r->field[SLOT_CP0 + i] = opt_field(d->counterparty[i]);
    for (size_t i = 0; i < PG_INTENT_MAX_URLS; i++)
        r->field[SLOT_URL0 + i] = opt_field(d->urls[i]);
    for (size_t i = 0; i < PG_ROUTE_MAX_REFS; i++)
        r->field[SLOT_REF0 + i] = opt_field(d->refs[i]);
    r->items = opt_field(d->items);
    return compile_pattern(r, d->path);
}

/* --- user routes ------------------------------------------------------- */

struct arena {
    char *p;
    size_t used, cap;
};

static size_t spec_bytes(const struct pg_route_spec *s)
{
    size_t n = 0;
    const char *one[] = {s->name, s->method, s->path, s->amount, s->currency};
    for (size_t i = 0; i < PG_ARRAY_LEN(one); i++)
        n += one[i] ? strlen(one[i]) + 1 : 0;
    if (!s->name && s->method && s->path)
        n += strlen(s->method) + strlen(s->path) + 2;
    for (size_t i = 0; i < s->ncounterparty; i++)
        n += s->counterparty[i] ? strlen(s->counterparty[i]) + 1 : 0;
    for (size_t i = 0; i < s->nurls; i++)
        n += s->urls[i] ? strlen(s->urls[i]) + 1 : 0;
    return n;
}

/* A NUL-terminated copy of s in the arena, or NULL for a NULL s. The arena
 * is sized beforehand (spec_bytes), so it is never full. */
static const char *keep(struct arena *a, const char *s)
{
    if (!s)
        return NULL;
    size_t n = strlen(s) + 1;
    if (n > a->cap - a->used)
        return NULL; /* spec_bytes miscounted: refuse rather than overrun */
    char *d = a->p + a->used;
    memcpy(d, s, n);
    a->used += n;
    return d;
}

static bool is_method(const char *m)
{
    if (!m || !*m)
        return false;
    for (const char *c = m; *c; c++)
        if (*c < 'A' || *c > 'Z')
            return false;
    return true;
}

/* Field references must suit the body format: a form key never matches in
 * JSON and a pointer never in a form, and such a field would silently be
 * missing at run time. config/ checks this too; this is the last line. */
static const char *field_why(const char *s, enum pg_body_format fmt)
{
    if (!s || !*s)
        return "is empty";
    if (fmt == PG_BODY_JSON && s[0] != '/')
        return "is not a JSON pointer (this rail's bodies are JSON)";
    if (fmt == PG_BODY_FORM && s[0] == '/')
        return "is a JSON pointer, but this rail's bodies are form-encoded";
    return NULL;
}

/* Compiles one payguard.yaml route into *r. `base` is the preset route it
 * replaces, or NULL: an override keeps whatever it does not restate (where
 * the money is, the action), since the preset already knows its own route. */
static int compile_spec(struct pg_route *r, const struct pg_route_spec *s,
                        const struct pg_route *base, enum pg_body_format fmt, struct arena *a,
                        char *err, size_t errlen)
{
    const char *name = s->name ? s->name : "(unnamed)";
    if (!is_method(s->method)) {
        snprintf(err, errlen, "route %s: method \"%s\" is not an upper-case HTTP method", name,
                 s->method ? s->method : "");
        return PG_ECONFIG;
    }
    int op = pg_op_parse(pg_slice_cstr(s->operation));
    if (op < 0) {
        snprintf(err, errlen, "route %s: unknown operation \"%s\"", name,
                 s->operation ? s->operation : "");
        return PG_ECONFIG;
    }
    if (s->ncounterparty > PG_ROUTE_MAX_CP || s->nurls > PG_INTENT_MAX_URLS) {
        snprintf(err, errlen, "route %s: at most %d counterparty fields and %d url fields", name,
                 PG_ROUTE_MAX_CP, PG_INTENT_MAX_URLS);
        return PG_ECONFIG;
    }
    const char *fields[2 + PG_ROUTE_MAX_CP + PG_INTENT_MAX_URLS];
    size_t nf = 0;
    fields[nf++] = s->amount;
    fields[nf++] = s->currency;
    for (size_t i = 0; i < s->ncounterparty; i++)
        fields[nf++] = s->counterparty[i];
    for (size_t i = 0; i < s->nurls; i++)
        fields[nf++] = s->urls[i];
    for (size_t i = 0; i < nf; i++) {
        const char *why = (i < 2 && !fields[i]) ? NULL : field_why(fields[i], fmt);
        if (why) {
            snprintf(err, errlen, "route %s: field \"%s\" %s", name, fields[i] ? fields[i] : "",
                     why);
            return PG_ECONFIG;
        }
    }

    if (base) {
        *r = *base;
    } else {
        memset(r, 0, sizeof *r);
        r->action = PG_ACT_NONE;
    }
    r->from_user = true;
    r->method = pg_slice_cstr(keep(a, s->method));
    r->path = keep(a, s->path);
    const char *why = compile_pattern(r, r->path ? r->path : "");
    if (why) {
        snprintf(err, errlen, "route %s: path \"%s\" %s", name, s->path ? s->path : "", why);
        return PG_ECONFIG;
    }
    if (s->name) {
        r->name = keep(a, s->name);
    } else {
        /* "METHOD PATH", as config/ names unnamed routes. */
        char *d = a->p + a->used;
        size_t n = strlen(s->method) + 1 + strlen(s->path) + 1;
        snprintf(d, n, "%s %s", s->method, s->path);
        a->used += n;
        r->name = d;
    }
    bool was_money = base && pg_op_moves_money(base->op);
    r->op = (enum pg_op)op;
    if (!pg_op_moves_money(r->op)) {
        /* A read, config or forbidden route reads no money, whatever it
         * replaced; a config route keeps the preset's URL fields. */
        for (size_t i = 0; i < SLOT_URL0; i++)
            r->field[i] = PG_SLICE_NULL;
        for (size_t i = SLOT_REF0; i < SLOT_COUNT; i++)
            r->field[i] = PG_SLICE_NULL;
        if (r->op != PG_OP_CONFIG)
            for (size_t i = SLOT_URL0; i < SLOT_REF0; i++)
                r->field[i] = PG_SLICE_NULL;
        r->items = PG_SLICE_NULL;
        r->action = PG_ACT_NONE;
        r->flags = 0;
    } else if (!was_money) {
        /* A new money route: payguard only knows what the file says, so
         * every field it names must be there (fail closed). */
        r->action = PG_ACT_NONE;
        r->flags = 0;
        if (s->amount)
            r->flags |= RF_NEED_AMOUNT;
        if (s->currency)
            r->flags |= RF_NEED_CURRENCY;
    }
    if (s->amount)
        r->field[SLOT_AMOUNT] = pg_slice_cstr(keep(a, s->amount));
    if (s->currency)
        r->field[SLOT_CURRENCY] = pg_slice_cstr(keep(a, s->currency));
    if (s->ncounterparty) {
        for (size_t i = 0; i < PG_ROUTE_MAX_CP; i++)
            r->field[SLOT_CP0 + i] =
                i < s->ncounterparty ? pg_slice_cstr(keep(a, s->counterparty[i])) : PG_SLICE_NULL;
    }
    if (s->nurls) {
        for (size_t i = 0; i < PG_INTENT_MAX_URLS; i++)
            r->field[SLOT_URL0 + i] =
                i < s->nurls ? pg_slice_cstr(keep(a, s->urls[i])) : PG_SLICE_NULL;
    }
    finish_route(r);
    return 0;
}

/* --- building ------------------------------------------------------------- */

int pg_routes_build(const struct pg_rail *rail, struct pg_routes **out, char *err, size_t errlen)
{
    const struct pg_route_def *defs = NULL;
    size_t ndefs = 0;
    enum pg_body_format fmt = rail->format;
    int rc = PG_ENOMEM;

    if (errlen)
        err[0] = '\0';
    switch (rail->preset) {
    case PG_PRESET_STRIPE:
        defs = pg_stripe_routes(&ndefs);
        fmt = PG_BODY_FORM;
        break;
    case PG_PRESET_ADYEN:
        defs = pg_adyen_routes(&ndefs);
        fmt = PG_BODY_JSON;
        break;
    case PG_PRESET_GENERIC:
        break;
    }

    struct pg_routes *t = calloc(1, sizeof *t);
    struct sort_item *items = calloc(ndefs + rail->nroutes + 1, sizeof *items);
    bool *replaced = calloc(ndefs + 1, sizeof *replaced);
    struct arena a = {0};
    if (!t || !items || !replaced)
        goto fail;
    t->format = fmt;
    for (size_t i = 0; i < rail->nroutes; i++)
        a.cap += spec_bytes(&rail->routes[i]);
    if (a.cap && !(a.p = malloc(a.cap)))
        goto fail;
    t->arena = a.p;

    for (size_t i = 0; i < ndefs; i++) {
        const char *why = compile_def(&items[i].r, &defs[i]);
        if (why) {
            /* A bug in a preset table, caught by the unit tests. */
            snprintf(err, errlen, "preset route %s: path \"%s\" %s", defs[i].name, defs[i].path,
                     why);
            rc = PG_ECONFIG;
            goto fail;
        }
        finish_route(&items[i].r);
        items[i].index = rail->nroutes + i;
    }
    size_t n = ndefs;
    for (size_t i = 0; i < rail->nroutes; i++) {
        const struct pg_route_spec *s = &rail->routes[i];
        struct pg_route probe;
        memset(&probe, 0, sizeof probe);
        probe.method = pg_slice_cstr(s->method);
        const struct pg_route *base = NULL;
        if (s->path && !compile_pattern(&probe, s->path)) {
            for (size_t k = 0; k < ndefs; k++) {
                if (!replaced[k] && same_route(&probe, &items[k].r)) {
                    base = &items[k].r;
                    replaced[k] = true;
                    break;
                }
            }
            for (size_t k = ndefs; k < n; k++) {
                if (same_route(&probe, &items[k].r)) {
                    snprintf(err, errlen, "route %s: same method and path as route %s",
                             s->name ? s->name : s->path, items[k].r.name);
                    rc = PG_ECONFIG;
                    goto fail;
                }
            }
        }
        struct pg_route r;
        rc = compile_spec(&r, s, base, fmt, &a, err, errlen);
        if (rc)
            goto fail;
        items[n].r = r;
        items[n].index = i; /* user routes sort before preset ones on a tie */
        n++;
    }

    t->v = calloc(n ? n : 1, sizeof *t->v);
    if (!t->v) {
        rc = PG_ENOMEM;
        goto fail;
    }
    /* Drop the replaced preset routes, then order by specificity. */
    size_t kept = 0;
    for (size_t i = 0; i < n; i++)
        if (!(i < ndefs && replaced[i]))
            items[kept++] = items[i];
    qsort(items, kept, sizeof *items, route_cmp);
    for (size_t i = 0; i < kept; i++)
        t->v[i] = items[i].r;
    t->n = kept;
    free(items);
    free(replaced);
    *out = t;
    return 0;

fail:
    if (rc == PG_ENOMEM)
        snprintf(err, errlen, "out of memory building the route table of rail %s",
                 rail->name ? rail->name : "?");
    free(items);
    free(replaced);
    if (t) {
        free(t->v);
        free(t->arena);
        free(t);
    } else {
        free(a.p);
    }
    return rc;
}

void pg_routes_free(struct pg_routes *r)
{
    if (!r)
        return;
    free(r->v);
    free(r->arena);
    free(r);
}

/* --- classifying --------------------------------------------------------- */

/* Checks the path against the hygiene rules and splits it into segments.
 * Every request passes here before any route is tried: a path that a rail
 * (or a proxy before it) could normalise into another must not slip past a
 * route by being spelled differently. */
static int split_path(struct pg_slice path, struct pg_slice *segs, size_t *nsegs,
                      struct pg_decision *bad)
{
    const char *why = NULL;
    size_t n = 0;

    if (path.len == 0 || path.ptr[0] != '/') {
        why = "it does not start with '/'";
        goto refuse;
    }
    if (path.len == 1) {
        *nsegs = 0;
        return 0;
    }
    for (size_t i = 1; i <= path.len;) {
        size_t start = i;
        while (i < path.len && path.ptr[i] != '/') {
            unsigned char c = (unsigned char)path.ptr[i];
            if (c == '%') {
                why = "it is percent-encoded ('%'); object ids never need escaping, so send the "
                      "path as plain letters, digits, '_', '.', '~', '-' and '/'";
                goto refuse;
            }
            if (!is_path_char(c)) {
                why = "it has a character other than letters, digits, '_', '.', '~', '-' and '/'";
                goto refuse;
            }
            i++;
        }
        struct pg_slice s = {path.ptr + start, i - start};
        if (s.len == 0) {
            why = i == path.len ? "it ends with '/'" : "it has an empty segment (\"//\")";
            goto refuse;
        }
        if (is_dot_segment(s)) {
            why = "it has a \".\" or \"..\" segment";
            goto refuse;
        }
        if (n == MAX_REQ_SEGS) {
            why = "it has more than 64 segments";
            goto refuse;
        }
        segs[n++] = s;
        i++;
    }
    *nsegs = n;
    return 0;

refuse:
    pg_route_bad(bad, "bad_path", NULL,
                 "The request path is refused because %s. payguard matches paths exactly and "
                 "only accepts the canonical form a payment SDK sends, so that it and the rail "
                 "always agree on which operation a request is. Fix the path and retry.",
                 why);
    return PG_EPARSE;
}

static bool route_matches(const struct pg_route *r, const struct pg_slice *segs, size_t n)
{
    size_t i;
    for (i = 0; i < r->nseg; i++) {
        const struct pg_seg *g = &r->seg[i];
        if (g->kind == SEG_REST)
            return true;
        if (i >= n)
            return false;
        if (g->kind == SEG_LIT && !pg_slice_eq(g->lit, segs[i]))
            return false;
    }
    return i == n;
}

/* The media type before any parameter, and whether its charset (if named)
 * is UTF-8: a rail decoding another charset would read other bytes. */
static bool content_type_is(struct pg_slice ct, struct pg_slice want)
{
    size_t i = 0;
    while (i < ct.len && ct.ptr[i] != ';')
        i++;
    struct pg_slice media = {ct.ptr, i};
    while (media.len && (media.ptr[media.len - 1] == ' ' || media.ptr[media.len - 1] == '\t'))
        media.len--;
    if (!pg_slice_eq_nocase(media, want))
        return false;
    while (i < ct.len) {
        i++; /* past ';' */
        while (i < ct.len && (ct.ptr[i] == ' ' || ct.ptr[i] == '\t'))
            i++;
        size_t start = i;
        while (i < ct.len && ct.ptr[i] != ';')
            i++;
        struct pg_slice param = {ct.ptr + start, i - start};
        while (param.len && (param.ptr[param.len - 1] == ' ' || param.ptr[param.len - 1] == '\t'))
            param.len--;
        if (param.len == 0)
            continue;
        struct pg_slice cs = PG_SLICE("charset=");
        if (param.len >= cs.len && pg_slice_eq_nocase(pg_slice_of(param.ptr, cs.len), cs)) {
            struct pg_slice v = {param.ptr + cs.len, param.len - cs.len};
            if (!pg_slice_eq_nocase(v, PG_SLICE("utf-8")) &&
                !pg_slice_eq_nocase(v, PG_SLICE("\"utf-8\"")))
                return false;
        }
    }
    return true;
}

static bool is_read_method(struct pg_slice m)
{
    return pg_slice_eq(m, PG_SLICE("GET")) || pg_slice_eq(m, PG_SLICE("HEAD")) ||
           pg_slice_eq(m, PG_SLICE("DELETE"));
}

static void intent_reset(struct pg_intent *in)
{
    in->matched = false;
    in->op = PG_OP_READ;
    in->route = NULL;
    in->action = PG_ACT_NONE;
    in->has_amount = false;
    in->amount = 0;
    memset(in->currency, 0, sizeof in->currency);
    in->counterparty = PG_SLICE_NULL;
    in->counterparty_field = NULL;
    in->object_id = PG_SLICE_NULL;
    for (size_t i = 0; i < PG_INTENT_MAX_URLS; i++) {
        in->urls[i].field = NULL;
        in->urls[i].url = PG_SLICE_NULL;
    }
    in->nurls = 0;
    in->scratch_used = 0;
}

/* A currency code the rules can count in: known to ISO 4217, stored lower
 * case. */
static int take_currency(struct pg_slice v, const char *field, struct pg_intent *in,
                         struct pg_decision *bad)
{
    if (v.len != 3 || pg_money_exponent(v) < 0) {
        pg_route_bad(bad, "invalid_currency", field,
                     "The field %s is not a currency payguard knows: send an active ISO 4217 "
                     "code in three letters, such as usd or eur.",
                     field);
        return PG_EPARSE;
    }
    for (size_t i = 0; i < 3; i++) {
        char c = v.ptr[i];
        in->currency[i] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
    }
    in->currency[3] = '\0';
    return 0;
}

/* Turns what the extractor found into the intent, checking every value the
 * rules will rely on. */
static int validate(const struct pg_route *r, const struct pg_fields *f, struct pg_intent *in,
                    struct pg_decision *bad)
{
    const char *amount_field = r->field[SLOT_AMOUNT].ptr;
    const char *currency_field = r->field[SLOT_CURRENCY].ptr;

    if (f->present & (1u << SLOT_AMOUNT)) {
        if (f->amount_is_int) {
            in->amount = f->amount_int;
        } else {
            const char *why = NULL;
            if (pg_money_parse_minor(f->v[SLOT_AMOUNT], &in->amount, &why) != 0) {
                pg_route_bad(bad, "invalid_amount", amount_field,
                             "The field %s is not a valid amount (%s). Send a whole number of "
                             "the currency's smallest unit, e.g. 1050 for 10.50 usd.",
                             amount_field, why ? why : "malformed");
                return PG_EPARSE;
            }
        }
        in->has_amount = true;
    }
    if ((f->present & (1u << SLOT_CURRENCY)) &&
        take_currency(f->v[SLOT_CURRENCY], currency_field, in, bad) != 0)
        return PG_EPARSE;

    if (f->items_seen && f->items_known) {
        if (in->currency[0] && f->items_currency[0] &&
            memcmp(in->currency, f->items_currency, 4) != 0) {
            pg_route_bad(bad, "mixed_currencies", currency_field,
                         "The field %s (%s) differs from the currency of the line items (%s). "
                         "Use one currency for the whole request.",
                         currency_field, in->currency, f->items_currency);
            return PG_EPARSE;
        }
        if (f->items_currency[0])
            memcpy(in->currency, f->items_currency, 4);
        in->amount = f->items_sum;
        in->has_amount = true;
    }

    if ((r->flags & RF_NEED_AMOUNT) && !in->has_amount) {
        pg_route_bad(bad, "missing_amount", amount_field,
                     "This request (%s) must carry the field %s so payguard can check it "
                     "against the spending policy. Add it and retry.",
                     r->name, amount_field ? amount_field : "amount");
        return PG_EPARSE;
    }
    if ((r->flags & RF_NEED_CURRENCY) && !in->currency[0]) {
        pg_route_bad(bad, "missing_currency", currency_field,
                     "This request (%s) must carry the field %s so payguard knows what the "
                     "amount is in. Add it (e.g. usd) and retry.",
                     r->name, currency_field ? currency_field : "currency");
        return PG_EPARSE;
    }

    for (size_t i = SLOT_CP0; i < SLOT_URL0; i++) {
        /* Rails read an empty value as "unset", so it names nobody. */
        if ((f->present & (1u << i)) && f->v[i].len) {
            in->counterparty = f->v[i];
            in->counterparty_field = r->field[i].ptr;
            break;
        }
    }
    if ((r->flags & RF_NEED_COUNTERPARTY) && !in->counterparty.len) {
        pg_route_bad(bad, "missing_counterparty", r->field[SLOT_CP0].ptr,
                     "This request (%s) must name who receives the money in the field %s. "
                     "Add it and retry.",
                     r->name, r->field[SLOT_CP0].ptr ? r->field[SLOT_CP0].ptr : "destination");
        return PG_EPARSE;
    }
    for (size_t i = SLOT_URL0; i < SLOT_REF0; i++) {
        if ((f->present & (1u << i)) && f->v[i].len) {
            in->urls[in->nurls].field = r->field[i].ptr;
            in->urls[in->nurls].url = f->v[i];
            in->nurls++;
        }
    }
    if (!in->object_id.len) {
        for (size_t i = SLOT_REF0; i < SLOT_COUNT; i++) {
            if ((f->present & (1u << i)) && f->v[i].len) {
                in->object_id = f->v[i];
                break;
            }
        }
    }
    return 0;
}

int pg_rail_classify(const struct pg_routes *routes, struct pg_slice method, struct pg_slice target,
                     struct pg_slice content_type, struct pg_slice body, struct pg_intent *in,
                     struct pg_decision *bad)
{
    struct pg_slice segs[MAX_REQ_SEGS];
    size_t nsegs = 0;

    intent_reset(in);
    const char *q = target.len ? memchr(target.ptr, '?', target.len) : NULL;
    struct pg_slice path = {target.ptr, q ? (size_t)(q - target.ptr) : target.len};
    struct pg_slice query = q ? pg_slice_of(q + 1, target.len - path.len - 1) : PG_SLICE_NULL;
    if (split_path(path, segs, &nsegs, bad) != 0)
        return PG_EPARSE;

    const struct pg_route *r = NULL;
    for (size_t i = 0; i < routes->n; i++) {
        const struct pg_route *c = &routes->v[i];
        if (c->method.len && !pg_slice_eq(c->method, method))
            continue;
        if (route_matches(c, segs, nsegs)) {
            r = c;
            break;
        }
    }
    if (!r)
        return 0;

    in->matched = true;
    in->op = r->op;
    in->route = r->name;
    in->action = r->action;
    if (r->capture >= 0)
        in->object_id = segs[r->capture];

    bool money = pg_op_moves_money(r->op);
    bool reads_body = !is_read_method(method);
    /* Rails may read parameters from the query of a POST as well as from
     * its body: the policy must see exactly what the rail acts on. */
    if (q && reads_body && (money || r->op == PG_OP_CONFIG)) {
        pg_route_bad(bad, money ? "query_on_money_route" : "query_on_config_route", NULL,
                     "%s requests must carry their parameters in the body only, and this one "
                     "has a query string (after '?'). Move the parameters into the body and "
                     "retry.",
                     r->name);
        return PG_EPARSE;
    }
    if (!r->extracts)
        return 0;

    struct pg_fields f;
    f.present = 0;
    f.amount_is_int = false;
    f.items_seen = false;
    f.items_known = false;
    int rc;
    if (routes->format == PG_BODY_FORM) {
        /* A body must be in the one encoding payguard reads; an empty body
         * holds nothing, whatever its Content-Type says. */
        struct pg_slice src = body;
        if (!reads_body) {
            /* A GET or DELETE money route (only payguard.yaml can write one)
             * carries its fields in the query; a body beside it would be a
             * second copy the rail might read instead. */
            if (body.len) {
                pg_route_bad(bad, "unexpected_body", NULL,
                             "%s requests carry their parameters in the query string; this one "
                             "also has a body. Send the parameters in one place and retry.",
                             r->name);
                return PG_EPARSE;
            }
            src = query;
        } else if (body.len &&
                   !content_type_is(content_type, PG_SLICE("application/x-www-form-urlencoded"))) {
            pg_route_bad(bad, "unsupported_content_type", NULL,
                         "%s requests must be sent as Content-Type: "
                         "application/x-www-form-urlencoded (UTF-8), which is what payguard "
                         "checks and what the rail reads. Resend the body in that form.",
                         r->name);
            return PG_EPARSE;
        }
        rc = pg_form_extract(r, src, in, &f, bad);
    } else {
        if (body.len && !content_type_is(content_type, PG_SLICE("application/json"))) {
            pg_route_bad(bad, "unsupported_content_type", NULL,
                         "%s requests must be sent as Content-Type: application/json, which is "
                         "what payguard checks and what the rail reads. Resend the body as "
                         "JSON.",
                         r->name);
            return PG_EPARSE;
        }
        rc = reads_body ? pg_json_extract(r, body, in, &f, bad) : 0;
    }
    if (rc != 0)
        return rc;
    return validate(r, &f, in, bad);
}
