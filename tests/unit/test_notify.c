/* notify/ and the ledger's webhook outbox: Standard Webhooks signatures
 * against the specification's published example (recomputed independently
 * with Python's hmac module), secret parsing, rotation headers, the backoff
 * schedule, and the outbox's life: nothing written when no webhook wants an
 * event, an event written with its cause, fanned out per subscribed
 * endpoint, retried, delivered, audited, and a 410 disabling an endpoint. */
#include "common/pg.h"
#include "ledger/ledger.h"
#include "notify/notify.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

/* The example of the Standard Webhooks specification. */
#define SPEC_SECRET "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#define SPEC_ID "msg_p5jXN8AQM9LWM0D4loKWxJek"
#define SPEC_TS 1614265330
#define SPEC_BODY "{\"test\": 2432232314}"
#define SPEC_SIG "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
/* A second key (35 bytes, padded base64); its signature of the same
 * message, from python3 hmac + base64. */
#define OLD_SECRET "whsec_dGhpcyBpcyB0aGUgb2xkIGtleSBvZiB0aGUgcm90YXRpb24="
#define OLD_SIG "v1,/ucE7qjNy8SRHeQk3XAbrHG+Uv2pPZekkrBZFYSjnPs="

static void signs_the_spec_example(void **state)
{
    (void)state;
    uint8_t key[PG_WEBHOOK_KEY_MAX];
    int kl = pg_webhook_secret_decode(SPEC_SECRET, key, sizeof(key));
    assert_int_equal(kl, 24);
    char sig[PG_WEBHOOK_SIG_LEN + 1];
    assert_int_equal(pg_webhook_sign(key, (size_t)kl, SPEC_ID, SPEC_TS, PG_SLICE(SPEC_BODY), sig,
                                     sizeof(sig)),
                     0);
    assert_string_equal(sig, SPEC_SIG);
    /* One byte of the body changed: another signature. */
    assert_int_equal(pg_webhook_sign(key, (size_t)kl, SPEC_ID, SPEC_TS,
                                     PG_SLICE("{\"test\": 2432232315}"), sig, sizeof(sig)),
                     0);
    assert_string_not_equal(sig, SPEC_SIG);
    /* Too small an output buffer. */
    assert_int_equal(pg_webhook_sign(key, (size_t)kl, SPEC_ID, SPEC_TS, PG_SLICE(SPEC_BODY), sig,
                                     PG_WEBHOOK_SIG_LEN),
                     PG_ETOOBIG);
}

static void rotation_sends_every_signature(void **state)
{
    (void)state;
    const char *secrets[] = { SPEC_SECRET, OLD_SECRET };
    char out[256];
    int n = pg_webhook_signature_header(secrets, 2, SPEC_ID, SPEC_TS, PG_SLICE(SPEC_BODY), out,
                                        sizeof(out));
    assert_int_equal(n, 2 * PG_WEBHOOK_SIG_LEN + 1);
    assert_string_equal(out, SPEC_SIG " " OLD_SIG);
    assert_int_equal(pg_webhook_signature_header(secrets, 1, SPEC_ID, SPEC_TS, PG_SLICE(SPEC_BODY),
                                                 out, sizeof(out)),
                     PG_WEBHOOK_SIG_LEN);
    assert_string_equal(out, SPEC_SIG);
    assert_int_equal(pg_webhook_signature_header(secrets, 2, SPEC_ID, SPEC_TS, PG_SLICE(SPEC_BODY),
                                                 out, 60),
                     PG_ETOOBIG);
    assert_int_equal(pg_webhook_signature_header(secrets, 0, SPEC_ID, SPEC_TS, PG_SLICE(SPEC_BODY),
                                                 out, sizeof(out)),
                     PG_ERANGE);
    const char *bad[] = { SPEC_SECRET, "whsec_not base64!" };
    assert_int_equal(pg_webhook_signature_header(bad, 2, SPEC_ID, SPEC_TS, PG_SLICE(SPEC_BODY), out,
                                                 sizeof(out)),
                     PG_EPARSE);
}

static void secrets_are_strict(void **state)
{
    (void)state;
    uint8_t key[PG_WEBHOOK_KEY_MAX];
    assert_int_equal(pg_webhook_secret_decode(OLD_SECRET, key, sizeof(key)), 35);
    assert_memory_equal(key, "this is the old key of the rotation", 35);
    /* Padding is optional. */
    assert_int_equal(pg_webhook_secret_decode(
                         "whsec_dGhpcyBpcyB0aGUgb2xkIGtleSBvZiB0aGUgcm90YXRpb24", key, sizeof(key)),
                     35);
    assert_int_equal(pg_webhook_secret_decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", key, sizeof(key)),
                     PG_EPARSE); /* no prefix */
    assert_int_equal(pg_webhook_secret_decode("whsec_", key, sizeof(key)), PG_EPARSE);
    assert_int_equal(pg_webhook_secret_decode("whsec_MfKQ9r8G-YqrTwjUPD8ILPZIo2LaLaSw", key, sizeof(key)),
                     PG_EPARSE); /* base64url, not base64 */
    assert_int_equal(pg_webhook_secret_decode("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS", key, sizeof(key)),
                     PG_ERANGE); /* 23 bytes: too short a key */
    assert_int_equal(pg_webhook_secret_decode("whsec_MfKQ=9r8", key, sizeof(key)), PG_EPARSE);
    assert_int_equal(pg_webhook_secret_decode("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw===", key,
                                              sizeof(key)),
                     PG_EPARSE);
    char longer[128] = "whsec_";
    for (size_t i = 6; i < 6 + 92; i++)
        longer[i] = 'A'; /* 69 bytes */
    assert_int_equal(pg_webhook_secret_decode(longer, key, sizeof(key)), PG_ERANGE);
}

static void backoff_grows_then_stays(void **state)
{
    (void)state;
    assert_int_equal(pg_notify_backoff(1), 5);
    assert_int_equal(pg_notify_backoff(2), 30);
    assert_int_equal(pg_notify_backoff(3), 120);
    assert_int_equal(pg_notify_backoff(4), 600);
    assert_int_equal(pg_notify_backoff(5), 3600);
    assert_int_equal(pg_notify_backoff(6), 21600);
    assert_int_equal(pg_notify_backoff(40), 21600);
}

/* config/ keeps its own copy of the names (it cannot include ledger/):
 * every name the config accepts is one the ledger knows, and back. */
static void event_names_agree_with_the_config(void **state)
{
    (void)state;
    static const char *const names[] = { "approval.requested", "approval.decided",
                                          "approval.expired",   "budget.threshold",
                                          "payment.denied",     "agent.revoked",
                                          "audit.verify_failed" };
    assert_int_equal(PG_ARRAY_LEN(names), PG_EVENT_COUNT);
    for (size_t i = 0; i < PG_ARRAY_LEN(names); i++) {
        int e = pg_event_from_name(names[i]);
        assert_true(e >= 0);
        assert_string_equal(pg_event_name((enum pg_event)e), names[i]);
    }
    assert_int_equal(pg_event_from_name("audit.broken"), -1);
    assert_null(pg_event_name(PG_EVENT_COUNT));
}

/* --- the outbox ------------------------------------------------------------------ */

struct fix {
    char dir[64];
    struct pg_ledger *l;
};

static int setup(void **state)
{
    struct fix *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/pg-notify-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    struct pg_ledger_options o = { .dir = f->dir };
    char err[256];
    assert_int_equal(pg_ledger_open(&o, &f->l, err, sizeof(err)), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fix *f = *state;
    pg_ledger_close(f->l);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static struct pg_outbox_endpoint endpoint(uint8_t tag, uint32_t mask)
{
    struct pg_outbox_endpoint e;
    memset(&e, 0, sizeof(e));
    memset(e.id, tag, sizeof(e.id));
    e.mask = mask;
    return e;
}

static size_t due(struct pg_ledger *l, int64_t now, struct pg_delivery *out, size_t max)
{
    size_t n = 99;
    assert_int_equal(pg_ledger_deliveries_due(l, now, out, max, &n, NULL), 0);
    return n;
}

static void free_all(struct pg_delivery *d, size_t n)
{
    for (size_t i = 0; i < n; i++)
        pg_delivery_free(&d[i]);
}

struct audit_count {
    int webhook;
    char last_outcome[32];
};

static int count_line(struct audit_count *c, const char *line)
{
    json_t *j = json_loads(line, 0, NULL);
    const char *action = json_string_value(json_object_get(j, "action"));
    if (action && strcmp(action, "webhook") == 0) {
        c->webhook++;
        snprintf(c->last_outcome, sizeof(c->last_outcome), "%s",
                 json_string_value(json_object_get(j, "outcome")));
        assert_string_equal(json_string_value(json_object_get(j, "actor")), "payguard");
    }
    json_decref(j);
    return 0;
}

static struct audit_count audit_of(struct pg_ledger *l, const char *org)
{
    struct audit_count c;
    memset(&c, 0, sizeof(c));
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    assert_non_null(m);
    assert_int_equal(pg_ledger_audit_export(l, org, 0, m), 0);
    fclose(m);
    for (char *line = buf, *nl; line && *line; line = nl ? nl + 1 : NULL) {
        nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        count_line(&c, line);
    }
    free(buf);
    return c;
}

static void nothing_is_written_when_nobody_subscribes(void **state)
{
    struct fix *f = *state;
    /* Another event is wanted, not this one. */
    pg_ledger_outbox_set(f->l, 1u << PG_EVENT_APPROVAL_REQUESTED, NULL, 0);
    assert_int_equal(pg_ledger_agent_revoke(f->l, "acme", "shopper", true, "cli:ana", "loops", 1000),
                     0);
    struct pg_outbox_endpoint e = endpoint(1, 0xffffffffu);
    size_t moved = 99;
    assert_int_equal(pg_ledger_outbox_fanout(f->l, &e, 1, 0, &moved), 0);
    assert_int_equal(moved, 0);
    struct pg_delivery d[4];
    assert_int_equal(due(f->l, INT64_MAX / 2, d, 4), 0);
}

static void an_event_is_fanned_out_retried_and_delivered(void **state)
{
    struct fix *f = *state;
    pg_ledger_outbox_set(f->l, 1u << PG_EVENT_AGENT_REVOKED, NULL, 0);
    assert_int_equal(pg_ledger_outbox_save(f->l), 0);
    assert_int_equal(
        pg_ledger_agent_revoke(f->l, "acme", "shopper", true, "cli:ana", "card 4242424242424242", 1000),
        0);
    /* Two endpoints want it, one does not. */
    struct pg_outbox_endpoint eps[3] = { endpoint(1, 1u << PG_EVENT_AGENT_REVOKED),
                                         endpoint(2, 1u << PG_EVENT_PAYMENT_DENIED),
                                         endpoint(3, 0xffffffffu) };
    size_t moved = 0;
    assert_int_equal(pg_ledger_outbox_fanout(f->l, eps, 3, 0, &moved), 0);
    assert_int_equal(moved, 1);
    assert_int_equal(pg_ledger_outbox_fanout(f->l, eps, 3, 0, &moved), 0);
    assert_int_equal(moved, 0); /* the outbox is empty again */

    struct pg_delivery d[4];
    assert_int_equal(due(f->l, 999, d, 4), 0); /* not due before the event happened */
    size_t n = due(f->l, 1000, d, 4);
    assert_int_equal(n, 2);
    assert_string_equal(d[0].msg_id, d[1].msg_id); /* one message, two endpoints */
    assert_true(strncmp(d[0].msg_id, "msg_", 4) == 0);
    assert_memory_not_equal(d[0].endpoint, d[1].endpoint, PG_ENDPOINT_ID_LEN);
    assert_string_equal(d[0].type, "agent.revoked");
    assert_string_equal(d[0].org, "acme");
    assert_int_equal(d[0].attempts, 0);
    json_t *j = json_loads(d[0].payload, 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "type")), "agent.revoked");
    assert_string_equal(json_string_value(json_object_get(j, "timestamp")), "1970-01-01T00:16:40Z");
    json_t *data = json_object_get(j, "data");
    assert_string_equal(json_string_value(json_object_get(data, "agent")), "shopper");
    assert_string_equal(json_string_value(json_object_get(data, "revoked_by")), "cli:ana");
    json_decref(j);
    /* No card number in a payload, even in a human's free text. */
    assert_null(strstr(d[0].payload, "4242424242424242"));
    assert_non_null(strstr(d[0].payload, "card ************4242"));

    /* The first endpoint fails: retried at 1005 with one attempt counted. */
    assert_int_equal(pg_ledger_delivery_done(f->l, &d[0], PG_DELIVERY_RETRY, 1005, "http_503", 1001),
                     0);
    /* Recording the same attempt twice changes nothing. */
    assert_int_equal(pg_ledger_delivery_done(f->l, &d[0], PG_DELIVERY_RETRY, 1005, "http_503", 1001),
                     0);
    assert_int_equal(pg_ledger_delivery_done(f->l, &d[1], PG_DELIVERY_OK, 0, "http_200", 1001), 0);
    free_all(d, n);
    assert_int_equal(due(f->l, 1004, d, 4), 0);
    n = due(f->l, 1005, d, 4);
    assert_int_equal(n, 1);
    assert_int_equal(d[0].attempts, 1);
    assert_memory_equal(d[0].endpoint, eps[0].id, PG_ENDPOINT_ID_LEN);
    assert_int_equal(pg_ledger_delivery_done(f->l, &d[0], PG_DELIVERY_OK, 0, "http_204", 1006), 0);
    free_all(d, n);
    assert_int_equal(due(f->l, INT64_MAX / 2, d, 4), 0);

    struct audit_count c = audit_of(f->l, "acme");
    assert_int_equal(c.webhook, 3); /* retry, delivered, delivered */
    assert_string_equal(c.last_outcome, "delivered");
}

static void reason_travels_in_the_payload(void **state)
{
    struct fix *f = *state;
    pg_ledger_outbox_set(f->l, 1u << PG_EVENT_AGENT_REVOKED, NULL, 0);
    assert_int_equal(
        pg_ledger_agent_revoke(f->l, "acme", "shopper", true, "cli:ana", "loops", 1000), 0);
    struct pg_outbox_endpoint e = endpoint(1, 1u << PG_EVENT_AGENT_REVOKED);
    assert_int_equal(pg_ledger_outbox_fanout(f->l, &e, 1, 0, NULL), 0);
    struct pg_delivery d[2];
    size_t n = due(f->l, 1000, d, 2);
    assert_int_equal(n, 1);
    assert_non_null(strstr(d[0].payload, "\"reason\":\"loops\""));
    free_all(d, n);
}

static void gone_disables_the_endpoint_for_good(void **state)
{
    struct fix *f = *state;
    pg_ledger_outbox_set(f->l, 1u << PG_EVENT_AGENT_REVOKED, NULL, 0);
    struct pg_outbox_endpoint e = endpoint(7, 1u << PG_EVENT_AGENT_REVOKED);
    assert_int_equal(pg_ledger_endpoint_disabled(f->l, e.id, NULL), 0);
    assert_int_equal(pg_ledger_agent_revoke(f->l, "acme", "a1", true, "cli:ana", NULL, 1000), 0);
    assert_int_equal(pg_ledger_outbox_fanout(f->l, &e, 1, 0, NULL), 0);
    struct pg_delivery d[2];
    size_t n = due(f->l, 1000, d, 2);
    assert_int_equal(n, 1);
    assert_int_equal(pg_ledger_delivery_done(f->l, &d[0], PG_DELIVERY_DISABLE, 0, "http_410", 1001),
                     0);
    free_all(d, n);
    assert_int_equal(pg_ledger_endpoint_disabled(f->l, e.id, NULL), 1);
    /* Later events are not fanned out to it, even after a restart. */
    pg_ledger_close(f->l);
    struct pg_ledger_options o = { .dir = f->dir };
    char err[256];
    assert_int_equal(pg_ledger_open(&o, &f->l, err, sizeof(err)), 0);
    pg_ledger_outbox_set(f->l, 1u << PG_EVENT_AGENT_REVOKED, NULL, 0);
    assert_int_equal(pg_ledger_endpoint_disabled(f->l, e.id, NULL), 1);
    assert_int_equal(pg_ledger_agent_revoke(f->l, "acme", "a2", true, "cli:ana", NULL, 1002), 0);
    size_t moved = 0;
    assert_int_equal(pg_ledger_outbox_fanout(f->l, &e, 1, 0, &moved), 0);
    assert_int_equal(moved, 1);
    assert_int_equal(due(f->l, INT64_MAX / 2, d, 2), 0);
    assert_string_equal(audit_of(f->l, "acme").last_outcome, "disabled");
    int64_t at = 0;
    assert_int_equal(pg_ledger_endpoint_disabled(f->l, e.id, &at), 1);
    assert_int_equal(at, 1001);
    /* A human lets it back: audited, and the next event reaches it. */
    const char *orgs[] = { "acme" };
    assert_int_equal(pg_ledger_endpoint_enable(f->l, e.id, orgs, 1, "cli:ana", 1003), 0);
    assert_int_equal(pg_ledger_endpoint_enable(f->l, e.id, orgs, 1, "cli:ana", 1003), PG_ENOTFOUND);
    assert_int_equal(pg_ledger_endpoint_disabled(f->l, e.id, NULL), 0);
    assert_int_equal(pg_ledger_agent_revoke(f->l, "acme", "a3", true, "cli:ana", NULL, 1004), 0);
    assert_int_equal(pg_ledger_outbox_fanout(f->l, &e, 1, 0, &moved), 0);
    n = due(f->l, INT64_MAX / 2, d, 2);
    assert_int_equal(n, 1);
    assert_non_null(strstr(d[0].payload, "a3"));
    free_all(d, n);
}

/* A process that never set the event list (the CLI) reads the one the
 * server saved. */
static void other_processes_read_the_saved_settings(void **state)
{
    struct fix *f = *state;
    pg_ledger_outbox_set(f->l, 1u << PG_EVENT_AGENT_REVOKED, NULL, 0);
    assert_int_equal(pg_ledger_outbox_save(f->l), 0);
    pg_ledger_close(f->l);
    struct pg_ledger_options o = { .dir = f->dir };
    char err[256];
    assert_int_equal(pg_ledger_open(&o, &f->l, err, sizeof(err)), 0);
    assert_int_equal(pg_ledger_agent_revoke(f->l, "acme", "a3", true, "cli:ana", NULL, 1000), 0);
    struct pg_outbox_endpoint e = endpoint(1, 1u << PG_EVENT_AGENT_REVOKED);
    size_t moved = 0;
    assert_int_equal(pg_ledger_outbox_fanout(f->l, &e, 1, 0, &moved), 0);
    assert_int_equal(moved, 1);
}

static void verify_failure_is_announced(void **state)
{
    struct fix *f = *state;
    pg_ledger_outbox_set(f->l, 1u << PG_EVENT_AUDIT_VERIFY_FAILED, NULL, 0);
    struct pg_audit_report r;
    memset(&r, 0, sizeof(r));
    snprintf(r.org, sizeof(r.org), "acme");
    r.ok = true;
    assert_int_equal(pg_ledger_audit_verify_failed(f->l, &r, 1000), 0); /* ok: nothing */
    r.ok = false;
    r.bad_seq = 7;
    snprintf(r.why, sizeof(r.why), "hash mismatch");
    assert_int_equal(pg_ledger_audit_verify_failed(f->l, &r, 1000), 0);
    struct pg_outbox_endpoint e = endpoint(1, 1u << PG_EVENT_AUDIT_VERIFY_FAILED);
    assert_int_equal(pg_ledger_outbox_fanout(f->l, &e, 1, 0, NULL), 0);
    struct pg_delivery d[2];
    size_t n = due(f->l, 1000, d, 2);
    assert_int_equal(n, 1);
    assert_string_equal(d[0].type, "audit.verify_failed");
    assert_non_null(strstr(d[0].payload, "\"bad_seq\":7"));
    assert_non_null(strstr(d[0].payload, "hash mismatch"));
    free_all(d, n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(signs_the_spec_example),
        cmocka_unit_test(rotation_sends_every_signature),
        cmocka_unit_test(secrets_are_strict),
        cmocka_unit_test(backoff_grows_then_stays),
        cmocka_unit_test(event_names_agree_with_the_config),
        cmocka_unit_test_setup_teardown(nothing_is_written_when_nobody_subscribes, setup, teardown),
        cmocka_unit_test_setup_teardown(an_event_is_fanned_out_retried_and_delivered, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(reason_travels_in_the_payload, setup, teardown),
        cmocka_unit_test_setup_teardown(gone_disables_the_endpoint_for_good, setup, teardown),
        cmocka_unit_test_setup_teardown(other_processes_read_the_saved_settings, setup, teardown),
        cmocka_unit_test_setup_teardown(verify_failure_is_announced, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
