/* JSON bodies: agent requests on the adyen preset and a generic JSON rail
 * (fields named by RFC 6901 pointers, escapes and array indexes included),
 * and the rail's answer to a money request as pg_rail_outcome reads it.
 * jansson, loaded here a second time, is the independent reading: what
 * payguard extracts must be what the document says, and a body with a
 * duplicate key is never accepted.
 * Input: one byte picks the route or the answer reader, then (for answers)
 * the status, then the JSON text. */
#include "common/pg.h"
#include "policy/policy.h"
#include "tests/fuzz/helpers.h"

#include <jansson.h>
#include <stdio.h>
#include <strings.h>

struct route_case {
    const char *rail, *method, *target;
    /* jansson lookups for the fields: object keys, or "#N" for an array index */
    const char *amount[4], *currency[4], *party[2][2];
};

static const struct route_case cases[] = {
    { "adyen", "POST", "/v71/payments", { "amount", "value" }, { "amount", "currency" },
      { { "merchantAccount" } } },
    { "adyen", "POST", "/v71/payments/PSP1/captures", { "amount", "value" },
      { "amount", "currency" }, { { "merchantAccount" } } },
    { "adyen", "POST", "/v71/payments/PSP1/amountUpdates", { "amount", "value" },
      { "amount", "currency" }, { { "merchantAccount" } } },
    { "adyen", "POST", "/pal/servlet/Payment/v68/capture", { "modificationAmount", "value" },
      { "modificationAmount", "currency" }, { { "merchantAccount" } } },
    { "adyen", "POST", "/v71/cancels", { 0 }, { 0 }, { { "merchantAccount" } } },
    { "adyen", "POST", "/v1/merchants/M1/webhooks", { 0 }, { 0 }, { { 0 } } },
    { "adyen", "POST", "/pal/servlet/Payout/v68/payout", { "amount", "value" },
      { "amount", "currency" }, { { "merchantAccount" } } },
    { "genjson", "POST", "/v3/transfers/tr_1", { "data", "#0", "amount/value" },
      { "data", "#0", "cur" }, { { "to~account" }, { "to" } } },
    { "genjson", "PUT", "/v3/refunds", { "amount" }, { "currency" }, { { 0 } } },
};

static struct pg_routes *routes_adyen, *routes_genjson;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const struct pg_config *cfg = fuzz_shared_config();
    char err[256];
    FUZZ_CHECK(pg_routes_build(pg_config_rail(cfg, PG_SLICE("adyen")), &routes_adyen, err,
                               sizeof err) == 0 &&
                   pg_routes_build(pg_config_rail(cfg, PG_SLICE("genjson")), &routes_genjson, err,
                                   sizeof err) == 0,
               "routes: %s", err);
    return 0;
}

static json_t *walk(json_t *root, const char *const *path)
{
    json_t *cur = path[0] ? root : NULL;
    for (size_t i = 0; i < 4 && path[i] && cur; i++) {
        if (path[i][0] == '#')
            cur = json_is_array(cur) ? json_array_get(cur, (size_t)(path[i][1] - '0')) : NULL;
        else
            cur = json_is_object(cur) ? json_object_get(cur, path[i]) : NULL;
    }
    return cur;
}

static void check_request(const struct route_case *rc, struct pg_slice body, bool ct_json)
{
    const struct pg_routes *routes = rc->rail[0] == 'a' ? routes_adyen : routes_genjson;
    static struct pg_intent it;
    struct pg_decision bad;
    memset(&bad, 0, sizeof bad);
    const char *ct = ct_json ? "application/json; charset=utf-8" : "text/plain";
    int r = pg_rail_classify(routes, pg_slice_cstr(rc->method), pg_slice_cstr(rc->target),
                             pg_slice_cstr(ct), body, &it, &bad);
    FUZZ_CHECK(r == 0 || r == PG_EPARSE, "classify: %d", r);
    FUZZ_CHECK(it.scratch_used <= sizeof it.scratch, "scratch overrun");
    if (r != 0) {
        FUZZ_CHECK(bad.status == 400 && bad.reason && bad.message[0], "refusal without a reason");
        return;
    }
    FUZZ_CHECK(it.matched && it.route, "%s %s did not match", rc->method, rc->target);
    bool extracts = rc->amount[0] || rc->party[0][0] || strstr(rc->target, "webhooks");
    if (!extracts || !body.len)
        return;
    FUZZ_CHECK(ct_json, "a JSON body read under Content-Type %s", ct);

    json_error_t err;
    json_t *root = json_loadb(body.ptr, body.len, JSON_REJECT_DUPLICATES, &err);
    FUZZ_CHECK(json_is_object(root), "accepted a body jansson refuses: %s", err.text);
    if (it.has_amount) {
        json_t *a = walk(root, rc->amount);
        FUZZ_CHECK(json_is_integer(a) && json_integer_value(a) == it.amount && it.amount >= 0,
                   "amount %lld is not the document's", (long long)it.amount);
    } else {
        json_t *a = walk(root, rc->amount);
        FUZZ_CHECK(!a || json_is_null(a), "an amount in the body was not read");
    }
    if (it.currency[0]) {
        json_t *c = walk(root, rc->currency);
        FUZZ_CHECK(json_is_string(c) && strcasecmp(json_string_value(c), it.currency) == 0 &&
                       json_string_length(c) == 3,
                   "currency %s is not the document's", it.currency);
    }
    if (it.counterparty.len) {
        json_t *p = walk(root, rc->party[0]);
        if (!json_is_string(p) || !json_string_length(p))
            p = walk(root, rc->party[1]);
        FUZZ_CHECK(json_is_string(p) && json_string_length(p) == it.counterparty.len &&
                       memcmp(json_string_value(p), it.counterparty.ptr, it.counterparty.len) == 0,
                   "counterparty is not the document's");
        FUZZ_CHECK(fuzz_within(it.counterparty, it.scratch, it.scratch_used),
                   "counterparty outside the scratch (the document is freed)");
    }
    json_decref(root);
}

static void check_answer(enum pg_rail_preset preset, int status, struct pg_slice body,
                         uint8_t flags)
{
    struct pg_intent it;
    memset(&it, 0, sizeof it);
    it.matched = true;
    it.op = PG_OP_PAYMENT;
    it.action = (flags & 1) ? PG_ACT_CAPTURE : PG_ACT_CREATE;
    it.has_amount = flags & 2;
    it.amount = it.has_amount ? 5000 : 0;
    struct pg_outcome o;
    memset(&o, 0xa5, sizeof o);
    pg_rail_outcome(preset, &it, status, body, &o);
    FUZZ_CHECK(o.kind == PG_OUTCOME_POST || o.kind == PG_OUTCOME_VOID ||
                   o.kind == PG_OUTCOME_KEEP || o.kind == PG_OUTCOME_AUTHORIZED,
               "kind %d", (int)o.kind);
    FUZZ_CHECK(o.amount >= 0, "negative amount %lld", (long long)o.amount);
    FUZZ_CHECK(memchr(o.object_id, '\0', sizeof o.object_id), "object id not terminated");
    if (status >= 400 && status < 500 && status != 409)
        FUZZ_CHECK(o.kind == PG_OUTCOME_VOID && o.amount == 0, "a 4xx did not void");
    else if (status < 200 || status >= 300)
        FUZZ_CHECK(o.kind == PG_OUTCOME_KEEP && o.amount == it.amount, "a %d did not keep", status);
    if (o.kind == PG_OUTCOME_VOID)
        FUZZ_CHECK(o.amount == 0, "void with an amount");
    json_t *root = json_loadb(body.ptr, body.len, 0, NULL);
    if (status >= 200 && status < 300 && preset != PG_PRESET_GENERIC && !json_is_object(root))
        FUZZ_CHECK(o.kind == PG_OUTCOME_KEEP, "an unreadable answer was taken as %s",
                   pg_outcome_name(o.kind));
    if (o.object_id[0]) {
        const char *key = preset == PG_PRESET_ADYEN ? "pspReference" : "id";
        json_t *id = json_object_get(root, key);
        FUZZ_CHECK(json_is_string(id) && strcmp(json_string_value(id), o.object_id) == 0,
                   "object id %s is not the answer's", o.object_id);
    }
    json_decref(root);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = { data, size };
    uint8_t sel = fuzz_u8(&in);
    if (sel < 0xc0) {
        const struct route_case *rc = &cases[(sel & 0x7f) % PG_ARRAY_LEN(cases)];
        check_request(rc, fuzz_rest(&in), !(sel & 0x80) || (sel & 1));
        return 0;
    }
    static const int statuses[] = { 200, 201, 202, 299, 400, 402, 404, 409, 429, 500, 502, 100 };
    int status = statuses[fuzz_u8(&in) % PG_ARRAY_LEN(statuses)];
    enum pg_rail_preset preset = (sel & 3) == 1 ? PG_PRESET_ADYEN
                                 : (sel & 3) == 2 ? PG_PRESET_GENERIC
                                                  : PG_PRESET_STRIPE;
    check_answer(preset, status, fuzz_rest(&in), (uint8_t)(sel >> 2));
    return 0;
}
