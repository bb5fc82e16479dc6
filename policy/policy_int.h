/* Private ground of the route tables: the shape of a preset entry (stripe.c,
 * adyen.c), the compiled route routes.c matches, and the field extractors for
 * form bodies (form.c) and JSON bodies (jsonbody.c). Nothing here leaves
 * policy/. */
#ifndef PG_POLICY_INT_H
#define PG_POLICY_INT_H

#include "common/pg.h"
#include "policy/policy.h"

#define PG_ROUTE_MAX_CP 6    /* counterparty fields per route, first present wins */
#define PG_ROUTE_MAX_REFS 2  /* body fields naming the object when the path does not */
#define PG_ROUTE_MAX_SEGS 16 /* segments of a route pattern */

/* Route flags. A money route whose action is CREATE and which names an amount
 * field requires amount and currency unless it says RF_AMOUNT_OPTIONAL. */
enum {
    RF_AMOUNT_OPTIONAL = 1u << 0,   /* CREATE without an amount is fine (prices by id) */
    RF_NEED_AMOUNT = 1u << 1,       /* amount required whatever the action */
    RF_NEED_CURRENCY = 1u << 2,     /* currency required whatever the action */
    RF_NEED_COUNTERPARTY = 1u << 3, /* a transfer without a destination means nothing */
};

/* One entry of a preset table, written as static data. Patterns: literal
 * segments, "{id}" (one segment, captured as the object id), "*" (one
 * segment, not captured), and a trailing "**" (zero or more segments). */
struct pg_route_def {
    const char *method; /* "POST", ...; "*" for every method */
    const char *path;
    const char *name; /* "payment_intents.create" */
    enum pg_op op;
    enum pg_action action;
    unsigned flags;
    const char *amount; /* form key or JSON pointer; NULL: none */
    const char *currency;
    const char *counterparty[PG_ROUTE_MAX_CP];
    const char *urls[PG_INTENT_MAX_URLS];
    const char *refs[PG_ROUTE_MAX_REFS];
    const char *items; /* form array of line items to sum ("line_items") */
};

const struct pg_route_def *pg_stripe_routes(size_t *n);
const struct pg_route_def *pg_adyen_routes(size_t *n);

/* Field slots of a compiled route, in one array so extractors walk them in
 * one loop: amount, currency, counterparties, URLs, object references. */
enum {
    SLOT_AMOUNT,
    SLOT_CURRENCY,
    SLOT_CP0,
    SLOT_URL0 = SLOT_CP0 + PG_ROUTE_MAX_CP,
    SLOT_REF0 = SLOT_URL0 + PG_INTENT_MAX_URLS,
    SLOT_COUNT = SLOT_REF0 + PG_ROUTE_MAX_REFS
};

enum pg_seg_kind { SEG_LIT, SEG_ANY, SEG_CAPTURE, SEG_REST };

struct pg_seg {
    enum pg_seg_kind kind;
    struct pg_slice lit; /* SEG_LIT: the text; captures: the "{name}" */
};

struct pg_route {
    struct pg_slice method; /* empty: every method */
    struct pg_seg seg[PG_ROUTE_MAX_SEGS];
    uint8_t nseg;
    int8_t capture; /* segment taken as object_id: "{id}", else the last capture; -1 */
    enum pg_op op;
    enum pg_action action;
    unsigned flags; /* RF_*, with the CREATE default already folded in */
    const char *name;
    const char *path;                  /* pattern as written, for messages */
    struct pg_slice field[SLOT_COUNT]; /* NUL-terminated key or pointer; len 0: unused */
    struct pg_slice items;             /* line item array key, or empty */
    bool extracts;                     /* some field or items: the body must be read */
    bool from_user;                    /* written in payguard.yaml */
};

/* What an extractor found, before routes.c validates it. Slices point into
 * the body or into the intent's scratch. */
struct pg_fields {
    uint32_t present; /* bit per slot */
    struct pg_slice v[SLOT_COUNT];
    bool amount_is_int; /* JSON: v[SLOT_AMOUNT] unused, amount_int checked >= 0 */
    int64_t amount_int;
    bool items_seen;  /* at least one line item */
    bool items_known; /* every line item has an inline unit_amount: items_sum holds */
    int64_t items_sum;
    char items_currency[4]; /* lowercase, "" when no inline item named one */
};

/* Fills *d as a 400 from payguard with `reason` and a message for the agent.
 * `param` must outlive the decision (static, or the route table's). */
void pg_route_bad(struct pg_decision *d, const char *reason, const char *param, const char *fmt,
                  ...) __attribute__((format(printf, 4, 5)));

/* Copies `n` bytes into the intent's scratch area; NULL when it is full. */
char *pg_intent_keep(struct pg_intent *in, const char *p, size_t n);

/* Reads the route's fields from a form body (application/x-www-form-urlencoded)
 * in one pass. 0 with *f filled, or PG_EPARSE with *bad (malformed encoding,
 * a field twice, a bad line item). */
PG_WUR int pg_form_extract(const struct pg_route *r, struct pg_slice body, struct pg_intent *in,
                           struct pg_fields *f, struct pg_decision *bad);

/* Same for a JSON body, fields named by RFC 6901 pointers. Duplicate keys
 * anywhere in the document are refused. PG_ENOMEM when jansson cannot
 * allocate. */
PG_WUR int pg_json_extract(const struct pg_route *r, struct pg_slice body, struct pg_intent *in,
                           struct pg_fields *f, struct pg_decision *bad);

#endif /* PG_POLICY_INT_H */
