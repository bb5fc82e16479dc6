/* What a rail's answer to a money request means for the reservation behind
 * it: posted, voided, authorized or still unknown. Stripe and Adyen answers
 * are read by their documented fields; anything unexpected keeps the money
 * pending, which is the safe side of the budget. */
#include "common/pg.h"
#include "policy/policy.h"

#include <jansson.h>

const char *pg_outcome_name(enum pg_outcome_kind k)
{
    switch (k) {
    case PG_OUTCOME_POST: return "post";
    case PG_OUTCOME_VOID: return "void";
    case PG_OUTCOME_KEEP: return "keep";
    case PG_OUTCOME_AUTHORIZED: return "authorized";
    }
    return "keep";
}

static bool get_amount(json_t *obj, const char *field, int64_t *out)
{
    json_t *v = json_object_get(obj, field);
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return false;
    *out = (int64_t)json_integer_value(v);
    return true;
}

static const char *get_str(json_t *obj, const char *field)
{
    json_t *v = json_object_get(obj, field);
    return json_is_string(v) ? json_string_value(v) : "";
}

static void set(struct pg_outcome *o, enum pg_outcome_kind k, int64_t amount)
{
    o->kind = k;
    o->amount = amount;
}

static void stripe_object(json_t *obj, const struct pg_intent *in, struct pg_outcome *o)
{
    const char *kind = get_str(obj, "object"), *status = get_str(obj, "status");
    int64_t amount = in->has_amount ? in->amount : 0, v;
    bool has = get_amount(obj, "amount", &v);
    if (has)
        amount = v;

    if (strcmp(kind, "payment_intent") == 0) {
        if (strcmp(status, "succeeded") == 0)
            set(o, PG_OUTCOME_POST, get_amount(obj, "amount_received", &v) ? v : amount);
        else if (strcmp(status, "requires_capture") == 0)
            set(o, PG_OUTCOME_AUTHORIZED, get_amount(obj, "amount_capturable", &v) ? v : amount);
        else if (strcmp(status, "canceled") == 0)
            set(o, PG_OUTCOME_VOID, 0);
        else if (strcmp(status, "processing") == 0)
            set(o, PG_OUTCOME_KEEP, amount);
        else /* requires_payment_method, _confirmation, _action: not yet */
            set(o, PG_OUTCOME_AUTHORIZED, amount);
    } else if (strcmp(kind, "charge") == 0) {
        json_t *captured = json_object_get(obj, "captured");
        if (strcmp(status, "failed") == 0)
            set(o, PG_OUTCOME_VOID, 0);
        else if (json_is_true(captured))
            set(o, PG_OUTCOME_POST, get_amount(obj, "amount_captured", &v) ? v : amount);
        else if (strcmp(status, "pending") == 0)
            set(o, PG_OUTCOME_KEEP, amount);
        else
            set(o, PG_OUTCOME_AUTHORIZED, amount);
    } else if (strcmp(kind, "refund") == 0 || strcmp(kind, "payout") == 0 ||
               strcmp(kind, "topup") == 0) {
        if (strcmp(status, "failed") == 0 || strcmp(status, "canceled") == 0)
            set(o, PG_OUTCOME_VOID, 0);
        else
            set(o, PG_OUTCOME_POST, amount);
    } else if (strcmp(kind, "transfer") == 0) {
        set(o, PG_OUTCOME_POST, amount);
    } else if (strcmp(kind, "invoice") == 0) {
        if (json_is_true(json_object_get(obj, "paid")))
            set(o, PG_OUTCOME_POST, get_amount(obj, "amount_paid", &v) ? v : amount);
        else
            set(o, PG_OUTCOME_KEEP, amount);
    } else if (strcmp(kind, "checkout.session") == 0) {
        /* The customer pays later, out of payguard's sight: keep it counted. */
        set(o, PG_OUTCOME_AUTHORIZED, get_amount(obj, "amount_total", &v) ? v : amount);
    } else {
        set(o, PG_OUTCOME_KEEP, amount);
    }
}

static void adyen_object(json_t *obj, const struct pg_intent *in, struct pg_outcome *o)
{
    const char *rc = get_str(obj, "resultCode");
    int64_t amount = in->has_amount ? in->amount : 0;
    json_t *a = json_object_get(obj, "amount");
    int64_t v;
    if (json_is_object(a) && get_amount(a, "value", &v))
        amount = v;
    if (strcmp(rc, "Refused") == 0 || strcmp(rc, "Error") == 0 || strcmp(rc, "Cancelled") == 0)
        set(o, PG_OUTCOME_VOID, 0);
    else if (strcmp(rc, "Authorised") == 0)
        set(o, in->action == PG_ACT_CAPTURE ? PG_OUTCOME_POST : PG_OUTCOME_AUTHORIZED, amount);
    else /* Received, Pending or unknown: the money may still move */
        set(o, PG_OUTCOME_KEEP, amount);
    const char *psp = get_str(obj, "pspReference");
    size_t n = strlen(psp);
    if (n && n < sizeof(o->object_id))
        memcpy(o->object_id, psp, n + 1);
}

void pg_rail_outcome(enum pg_rail_preset preset, const struct pg_intent *in, int status,
                     struct pg_slice body, struct pg_outcome *out)
{
    memset(out, 0, sizeof(*out));
    out->kind = PG_OUTCOME_KEEP;
    out->amount = in->has_amount ? in->amount : 0;
    if (status >= 400 && status < 500 && status != 409) {
        out->kind = PG_OUTCOME_VOID;
        out->amount = 0;
        return;
    }
    if (status < 200 || status >= 300)
        return; /* 409, 5xx: the money may have moved */
    if (preset == PG_PRESET_GENERIC) {
        out->kind = PG_OUTCOME_POST;
        return;
    }
    json_error_t jerr;
    json_t *obj = json_loadb(body.ptr, body.len, 0, &jerr);
    if (!json_is_object(obj)) {
        json_decref(obj);
        return; /* unreadable: keep it counted */
    }
    if (preset == PG_PRESET_STRIPE) {
        stripe_object(obj, in, out);
        const char *id = get_str(obj, "id");
        size_t n = strlen(id);
        if (n && n < sizeof(out->object_id))
            memcpy(out->object_id, id, n + 1);
    } else {
        adyen_object(obj, in, out);
    }
    json_decref(obj);
}
