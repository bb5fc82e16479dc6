/* What the rail's answer means for the money: every Stripe object and
 * status payguard reads, Adyen result codes, and the status-only rules. */
#include "common/pg.h"
#include "policy/policy.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

static struct pg_intent intent(int64_t amount, enum pg_action action)
{
    struct pg_intent in;
    memset(&in, 0, sizeof(in));
    in.matched = true;
    in.op = PG_OP_PAYMENT;
    in.action = action;
    in.has_amount = amount >= 0;
    in.amount = amount;
    return in;
}

struct row {
    enum pg_rail_preset preset;
    int status;
    const char *body;
    enum pg_outcome_kind kind;
    int64_t amount;
    const char *object_id;
};

static void table(void **state)
{
    (void)state;
    static const struct row rows[] = {
        { PG_PRESET_STRIPE, 200, "{\"id\":\"pi_1\",\"object\":\"payment_intent\",\"amount\":2000,\"amount_received\":2000,\"status\":\"succeeded\"}", PG_OUTCOME_POST, 2000, "pi_1" },
        { PG_PRESET_STRIPE, 200, "{\"id\":\"pi_2\",\"object\":\"payment_intent\",\"amount\":2000,\"amount_capturable\":1500,\"status\":\"requires_capture\"}", PG_OUTCOME_AUTHORIZED, 1500, "pi_2" },
        { PG_PRESET_STRIPE, 200, "{\"id\":\"pi_3\",\"object\":\"payment_intent\",\"amount\":2500,\"status\":\"requires_payment_method\"}", PG_OUTCOME_AUTHORIZED, 2500, "pi_3" },
        { PG_PRESET_STRIPE, 200, "{\"id\":\"pi_4\",\"object\":\"payment_intent\",\"amount\":2000,\"status\":\"canceled\"}", PG_OUTCOME_VOID, 0, "pi_4" },
        { PG_PRESET_STRIPE, 200, "{\"id\":\"pi_5\",\"object\":\"payment_intent\",\"amount\":2000,\"status\":\"processing\"}", PG_OUTCOME_KEEP, 2000, "pi_5" },
        { PG_PRESET_STRIPE, 200, "{\"id\":\"ch_1\",\"object\":\"charge\",\"amount\":900,\"amount_captured\":700,\"captured\":true,\"status\":\"succeeded\"}", PG_OUTCOME_POST, 700, "ch_1" },
        { PG_PRESET_STRIPE, 200, "{\"id\":\"ch_2\",\"object\":\"charge\",\"amount\":900,\"captured\":false,\"status\":\"failed\"}", PG_OUTCOME_VOID, 0, "ch_2" },
        { PG_PRESET_STRIPE, 200, "{\"id\":\"tr_1\",\"object\":\"transfer\",\"amount\":300}", PG_OUTCOME_POST, 300, "tr_1" },
        { PG_PRESET_STRIPE, 200, "{\"id\":\"po_1\",\"object\":\"payout\",\"amount\":300,\"status\":\"failed\"}", PG_OUTCOME_VOID, 0, "po_1" },
        { PG_PRESET_STRIPE, 200, "{\"id\":\"re_1\",\"object\":\"refund\",\"amount\":100,\"status\":\"succeeded\"}", PG_OUTCOME_POST, 100, "re_1" },
        { PG_PRESET_STRIPE, 200, "{\"id\":\"cs_1\",\"object\":\"checkout.session\",\"amount_total\":4200}", PG_OUTCOME_AUTHORIZED, 4200, "cs_1" },
        { PG_PRESET_STRIPE, 200, "not json", PG_OUTCOME_KEEP, 1000, "" },
        { PG_PRESET_STRIPE, 200, "{\"id\":\"x_1\",\"object\":\"mystery\"}", PG_OUTCOME_KEEP, 1000, "x_1" },
        { PG_PRESET_STRIPE, 402, "{\"error\":{\"type\":\"card_error\"}}", PG_OUTCOME_VOID, 0, "" },
        { PG_PRESET_STRIPE, 400, "{}", PG_OUTCOME_VOID, 0, "" },
        { PG_PRESET_STRIPE, 409, "{}", PG_OUTCOME_KEEP, 1000, "" },
        { PG_PRESET_STRIPE, 500, "{}", PG_OUTCOME_KEEP, 1000, "" },
        { PG_PRESET_STRIPE, 503, "", PG_OUTCOME_KEEP, 1000, "" },
        { PG_PRESET_ADYEN, 200, "{\"pspReference\":\"PSP1\",\"resultCode\":\"Refused\"}", PG_OUTCOME_VOID, 0, "PSP1" },
        { PG_PRESET_ADYEN, 200, "{\"pspReference\":\"PSP2\",\"resultCode\":\"Authorised\",\"amount\":{\"value\":1200,\"currency\":\"EUR\"}}", PG_OUTCOME_AUTHORIZED, 1200, "PSP2" },
        { PG_PRESET_ADYEN, 201, "{\"pspReference\":\"PSP3\",\"status\":\"received\"}", PG_OUTCOME_KEEP, 1000, "PSP3" },
        { PG_PRESET_GENERIC, 201, "whatever", PG_OUTCOME_POST, 1000, "" },
        { PG_PRESET_GENERIC, 422, "", PG_OUTCOME_VOID, 0, "" },
    };
    for (size_t i = 0; i < PG_ARRAY_LEN(rows); i++) {
        struct pg_intent in = intent(1000, PG_ACT_CREATE);
        struct pg_outcome o;
        pg_rail_outcome(rows[i].preset, &in, rows[i].status, pg_slice_cstr(rows[i].body), &o);
        if (o.kind != rows[i].kind || o.amount != rows[i].amount ||
            strcmp(o.object_id, rows[i].object_id) != 0)
            fail_msg("row %zu: got %s %lld '%s', want %s %lld '%s'", i, pg_outcome_name(o.kind),
                     (long long)o.amount, o.object_id, pg_outcome_name(rows[i].kind),
                     (long long)rows[i].amount, rows[i].object_id);
    }
}

static void adyen_capture_posts(void **state)
{
    (void)state;
    struct pg_intent in = intent(500, PG_ACT_CAPTURE);
    struct pg_outcome o;
    pg_rail_outcome(PG_PRESET_ADYEN, &in, 200,
                    PG_SLICE("{\"pspReference\":\"P\",\"resultCode\":\"Authorised\"}"), &o);
    assert_int_equal(o.kind, PG_OUTCOME_POST);
    assert_int_equal(o.amount, 500);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(table),
        cmocka_unit_test(adyen_capture_posts),
    };
    return cmocka_run_group_tests_name("outcome", tests, NULL, NULL);
}
