/* Inputs the fuzz targets (tests/fuzz/) found, replayed against the fixed
 * code: each test feeds the bytes the fuzzer produced, minus the target's own
 * leading control bytes, through the same functions. The inputs themselves
 * stay in tests/fuzz/corpus/ so the fuzzers keep trying around them. */
#include "common/pg.h"
#include "policy/policy.h"
#include "proxy/http.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

/* tests/fuzz/fuzz.yaml's limits */
static const struct pg_limits limits = {
    .header_bytes = 8192, .max_headers = 40, .body_bytes = 65536,
};

/* Feeds all of `req` at once, then one byte at a time; both must end in a
 * refusal with `status`. */
static void expect_refused(const char *req, size_t len, int status)
{
    struct pg_reqparser p;
    pg_reqparser_init(&p, &limits);
    assert_int_equal(pg_reqparser_feed(&p, req, len), -1);
    assert_int_equal(p.reject.status, status);
    pg_reqparser_free(&p);

    pg_reqparser_init(&p, &limits);
    ssize_t rc = 0;
    for (size_t i = 0; i < len && rc >= 0 && !p.complete; i++)
        rc = pg_reqparser_feed(&p, req + i, 1);
    assert_int_equal(rc, -1);
    assert_int_equal(p.reject.status, status);
    pg_reqparser_free(&p);
}

/* fuzz_http: llhttp 8.1 hands over a line starting with ':' as a header
 * with an empty name, and payguard took the request. */
static void empty_header_name_is_refused(void **state)
{
    (void)state;
    static const char found[] =
        "POST /v2pents HTTP/1.0\r\n"
        "t:\r\n"
        "::::::::::::::::::::::::::::::::::::::::::::::::::::::::::::::::::::::::applIcat"
        "\xf9\xf9" "Content-Type: :::::::::::::::::::::::::::::::::::::::::::::::::::::::"
        ":::::::::::::::::::::::applIcat\xf9\xf9\xf9\xf9" "eZx\r\n"
        "t:\r\n"
        "\r\n"
        "Content-Ty5";
    expect_refused(found, sizeof found - 1, 400);

    static const char *const small[] = {
        "GET /v1/balance HTTP/1.1\r\nHost: x\r\n: foo\r\n\r\n",
        "GET /v1/balance HTTP/1.1\r\nHost: x\r\n:\r\n\r\n",
        "GET /v1/balance HTTP/1.1\r\n:x\r\nHost: x\r\n\r\n",
        "POST /v1/refunds HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n: 9\r\n\r\nx",
    };
    for (size_t i = 0; i < PG_ARRAY_LEN(small); i++)
        expect_refused(small[i], strlen(small[i]), 400);
}

/* fuzz_http: a CONNECT with an empty target and no header reached the
 * target check with nothing stored yet, and pg_msg_target added an offset
 * to a NULL buffer (undefined behaviour; the ASan+UBSan build aborts). */
static void connect_without_a_target_is_refused(void **state)
{
    (void)state;
    static const char found[] = "CONNECT \r\n\r\nstripe.\xcbom:443 Hpgt.com:443\r\n\r\n";
    expect_refused(found, sizeof found - 1, 400);
    expect_refused("CONNECT \r\n\r\n", 12, 400);

    struct pg_msg m;
    memset(&m, 0, sizeof m);
    struct pg_slice t = pg_msg_target(&m);
    assert_int_equal(t.len, 0);
}

/* Checks that `out` holds a whole answer whose JSON body carries `want` as
 * its message. */
static void expect_answer(const struct pg_buf *out, enum pg_rail_preset preset, const char *want)
{
    const char *body = memmem(out->p, out->len, "\r\n\r\n", 4);
    assert_non_null(body);
    body += 4;
    json_error_t err;
    json_t *j = json_loadb(body, out->len - (size_t)(body - out->p), 0, &err);
    if (!j)
        fail_msg("the answer is not JSON: %s", err.text);
    json_t *msg = preset == PG_PRESET_ADYEN ? json_object_get(j, "message")
                                            : json_object_get(json_object_get(j, "error"), "message");
    assert_true(json_is_string(msg));
    assert_string_equal(json_string_value(msg), want);
    json_decref(j);
}

/* fuzz_http: a target with bytes that are not UTF-8 (llhttp lets them into
 * the query) matched no route, and the unknown_operation denial, which
 * quotes the target, could not be written: jansson refuses such a string,
 * so the agent's connection was closed without an answer. */
static void verdict_quoting_the_target_is_written(void **state)
{
    (void)state;
    static const char found[] =
        "POST /?62\xfd\xfd\xe6\xdd\xe6\xe6\xe6\xe6\xe6\xe6\xe6\xe6\xe6\xe6\xe6//ents HTTP"
        "/1.0\r\n"
        "t:\r\n"
        "Content-T:pplIcat\xf9.includet:\r\n"
        "\r\n"
        "Ct`ntent-\x00\x00\x00\x00" "3 \x00POST /v4/ents Hp\r\n";
    struct pg_reqparser p;
    pg_reqparser_init(&p, &limits);
    assert_true(pg_reqparser_feed(&p, found, sizeof found - 1) > 0);
    assert_true(p.complete);

    /* As decide() in proxy/server.c: the stripe table, no route, a denial. */
    struct pg_rail rail;
    memset(&rail, 0, sizeof rail);
    rail.name = "stripe";
    rail.preset = PG_PRESET_STRIPE;
    struct pg_routes *routes = NULL;
    char err[256];
    assert_int_equal(pg_routes_build(&rail, &routes, err, sizeof err), 0);
    static struct pg_intent in;
    struct pg_decision d;
    struct pg_slice t = pg_msg_target(&p.msg);
    assert_int_equal(pg_rail_classify(routes, pg_slice_cstr(pg_reqparser_method(&p)), t,
                                      PG_SLICE_NULL, PG_SLICE_NULL, &in, &d),
                     0);
    assert_false(in.matched);
    char message[512];
    snprintf(message, sizeof message, "payguard does not know what %s %.*s does on rail %s.",
             pg_reqparser_method(&p), (int)t.len, t.ptr, rail.name);

    static const enum pg_rail_preset presets[] = { PG_PRESET_STRIPE, PG_PRESET_ADYEN };
    for (size_t i = 0; i < PG_ARRAY_LEN(presets); i++) {
        struct pg_buf out = { 0 };
        assert_int_equal(pg_http_write_verdict(&out, presets[i], 403, "deny",
                                               "invalid_request_error",
                                               "payguard_unknown_operation", message, NULL,
                                               NULL, false),
                         0);
        expect_answer(&out, presets[i],
                      "payguard does not know what POST /?62"
                      "???????????????" /* 15 bytes past ASCII */
                      "//ents does on rail stripe.");
        pg_buf_free(&out);
    }
    pg_routes_free(routes);
    pg_reqparser_free(&p);
}

/* The same for payguard's own errors, and for a message cut in the middle
 * of a character by its buffer; a UTF-8 message is kept as it is. */
static void error_messages_that_are_not_utf8(void **state)
{
    (void)state;
    struct pg_buf out = { 0 };
    assert_int_equal(pg_http_write_error(&out, 400, "invalid_request_error", "payguard_bad_request",
                                         "bad byte \xff here, cut caf\xc3", false, 0),
                     0);
    expect_answer(&out, PG_PRESET_STRIPE, "bad byte ? here, cut caf?");
    out.len = 0;
    assert_int_equal(pg_http_write_verdict(&out, PG_PRESET_STRIPE, 403, "deny",
                                           "invalid_request_error", "payguard_x",
                                           "caf\xc3\xa9 \xe2\x82\xac", "amount", NULL, false),
                     0);
    expect_answer(&out, PG_PRESET_STRIPE, "caf\xc3\xa9 \xe2\x82\xac");
    pg_buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(empty_header_name_is_refused),
        cmocka_unit_test(connect_without_a_target_is_refused),
        cmocka_unit_test(verdict_quoting_the_target_is_written),
        cmocka_unit_test(error_messages_that_are_not_utf8),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
