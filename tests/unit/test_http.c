/* Request parsing, the strict checks and re-serialization for the rail. */
#include "common/pg.h"
#include "proxy/http.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

static const struct pg_limits limits = {
    .header_bytes = 1024, .max_headers = 10, .body_bytes = 64,
};

static struct pg_rail rail(void)
{
    struct pg_rail r;
    memset(&r, 0, sizeof(r));
    r.name = "stripe";
    r.upstream_hostport = "api.stripe.test";
    r.secret = "sk_test_railsecret";
    return r;
}

/* Feeds the whole string; returns bytes consumed or -1. */
static ssize_t feed(struct pg_reqparser *p, const char *s)
{
    return pg_reqparser_feed(p, s, strlen(s));
}

static void expect_reject(const char *req, int status)
{
    struct pg_reqparser p;
    pg_reqparser_init(&p, &limits);
    assert_int_equal(feed(&p, req), -1);
    assert_int_equal(p.reject.status, status);
    assert_non_null(p.reject.message);
    pg_reqparser_free(&p);
}

/* The same request fed one byte at a time must be refused too: the checks
 * may not depend on how the bytes arrive. */
static void expect_reject_bytewise(const char *req, int status)
{
    struct pg_reqparser p;
    pg_reqparser_init(&p, &limits);
    ssize_t rc = 0;
    for (size_t i = 0; req[i] && rc >= 0 && !p.complete; i++)
        rc = pg_reqparser_feed(&p, req + i, 1);
    assert_int_equal(rc, -1);
    assert_int_equal(p.reject.status, status);
    pg_reqparser_free(&p);
}

static void parses_get_and_serializes_for_rail(void **state)
{
    (void)state;
    struct pg_reqparser p;
    struct pg_rail r = rail();
    struct pg_buf out = { 0 };
    const char *req = "GET /v1/balance?x=1 HTTP/1.1\r\nHost: 127.0.0.1:8402\r\n"
                      "Authorization: Bearer pgt_agenttoken\r\nStripe-Version: 2024-06-20\r\n"
                      "Connection: keep-alive, X-Private\r\nX-Private: secret\r\n"
                      "Keep-Alive: timeout=5\r\nProxy-Authorization: x\r\nPayguard-Rail: stripe\r\n"
                      "TE: trailers\r\n\r\n";
    pg_reqparser_init(&p, &limits);
    assert_int_equal(feed(&p, req), (ssize_t)strlen(req));
    assert_true(p.complete);
    assert_true(p.keep_alive);
    assert_string_equal(pg_reqparser_method(&p), "GET");
    assert_int_equal(pg_http_serialize_request(&p, &r, NULL, &out), 0);
    assert_int_equal(pg_buf_append(&out, "", 1), 0);
    assert_string_equal(out.p, "GET /v1/balance?x=1 HTTP/1.1\r\n"
                               "Host: api.stripe.test\r\n"
                               "Authorization: Bearer sk_test_railsecret\r\n"
                               "Stripe-Version: 2024-06-20\r\n\r\n");
    pg_buf_free(&out);
    pg_reqparser_free(&p);
}

static void chunked_body_is_reframed_with_length(void **state)
{
    (void)state;
    struct pg_reqparser p;
    struct pg_rail r = rail();
    struct pg_buf out = { 0 };
    const char *req = "POST /v1/payment_intents HTTP/1.1\r\nHost: x\r\n"
                      "Transfer-Encoding: chunked\r\nIdempotency-Key: k1\r\n"
                      "Content-Type: application/x-www-form-urlencoded\r\n\r\n"
                      "6\r\namount\r\nE\r\n=100&currency=\r\n3\r\nusd\r\n0\r\n\r\n";
    pg_reqparser_init(&p, &limits);
    assert_int_equal(feed(&p, req), (ssize_t)strlen(req));
    assert_true(p.complete);
    assert_int_equal(pg_http_serialize_request(&p, &r, NULL, &out), 0);
    assert_int_equal(pg_buf_append(&out, "", 1), 0);
    assert_string_equal(out.p, "POST /v1/payment_intents HTTP/1.1\r\n"
                               "Host: api.stripe.test\r\n"
                               "Authorization: Bearer sk_test_railsecret\r\n"
                               "Idempotency-Key: k1\r\n"
                               "Content-Type: application/x-www-form-urlencoded\r\n"
                               "Content-Length: 23\r\n\r\n"
                               "amount=100&currency=usd");
    pg_buf_free(&out);
    pg_reqparser_free(&p);
}

static void pipelined_requests_stop_at_each_boundary(void **state)
{
    (void)state;
    struct pg_reqparser p;
    const char *first = "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc";
    const char *both = "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
                       "GET /b HTTP/1.1\r\nHost: x\r\n\r\n";
    pg_reqparser_init(&p, &limits);
    ssize_t n = feed(&p, both);
    assert_int_equal(n, (ssize_t)strlen(first));
    assert_true(p.complete);
    assert_int_equal(p.msg.body.len, 3);
    pg_reqparser_next(&p);
    assert_int_equal(feed(&p, both + n), (ssize_t)strlen(both + n));
    assert_true(p.complete);
    assert_string_equal(pg_reqparser_method(&p), "GET");
    struct pg_slice t = pg_msg_target(&p.msg);
    assert_int_equal(t.len, 2);
    assert_memory_equal(t.ptr, "/b", 2);
    assert_int_equal(p.msg.body.len, 0);
    pg_reqparser_free(&p);
}

static void bytewise_feeding_parses_the_same(void **state)
{
    (void)state;
    struct pg_reqparser p;
    const char *req = "POST /v1/refunds HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                      "X-A:  spaced value  \r\n\r\nhello";
    pg_reqparser_init(&p, &limits);
    for (size_t i = 0; req[i]; i++)
        assert_int_equal(pg_reqparser_feed(&p, req + i, 1), 1);
    assert_true(p.complete);
    int xa = pg_msg_find(&p.msg, PG_SLICE("x-a"));
    assert_true(xa >= 0);
    struct pg_slice v = pg_msg_value(&p.msg, (uint32_t)xa);
    assert_int_equal(v.len, 12);
    assert_memory_equal(v.ptr, "spaced value", 12);
    assert_int_equal(p.msg.body.len, 5);
    pg_reqparser_free(&p);
}

static void smuggling_vectors_are_refused(void **state)
{
    (void)state;
    static const char *vectors[] = {
        /* CL + TE */
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n",
        /* duplicate or conflicting Content-Length */
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde",
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\nabcd",
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4, 4\r\n\r\nabcd",
        /* odd Transfer-Encoding */
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        /* bare LF, bare CR, obs-fold */
        "GET / HTTP/1.1\nHost: x\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n\tb\r\n\r\n",
        /* Host missing or twice */
        "GET / HTTP/1.1\r\nX-A: a\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
        /* absolute and authority form, CONNECT, upgrades */
        "GET http://evil.test/ HTTP/1.1\r\nHost: x\r\n\r\n",
        "CONNECT evil.test:443 HTTP/1.1\r\nHost: evil.test:443\r\n\r\n",
        "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n",
        "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        /* space before colon, bad chunk size, leading empty line, trailers */
        "GET / HTTP/1.1\r\nHost : x\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
        "\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-Smuggled: 1\r\n\r\n",
        /* NUL in a header value */
        "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\0b\r\n\r\n",
    };
    for (size_t i = 0; i < PG_ARRAY_LEN(vectors); i++) {
        struct pg_reqparser p;
        pg_reqparser_init(&p, &limits);
        size_t len = strlen(vectors[i]);
        if (i == PG_ARRAY_LEN(vectors) - 1)
            len = strlen(vectors[i]) + 1 + strlen(vectors[i] + strlen(vectors[i]) + 1);
        ssize_t rc = pg_reqparser_feed(&p, vectors[i], len);
        if (rc != -1)
            fail_msg("vector %zu was accepted: %s", i, vectors[i]);
        assert_int_equal(p.reject.status / 100, 4);
        pg_reqparser_free(&p);
    }
    expect_reject_bytewise("GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n", 400);
    expect_reject_bytewise("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n", 400);
}

static void limits_give_431_and_413(void **state)
{
    (void)state;
    char big[2048];
    int n = snprintf(big, sizeof(big), "GET / HTTP/1.1\r\nHost: x\r\nX-Big: %01100d\r\n\r\n", 0);
    assert_true(n > 1024);
    expect_reject(big, 431);
    expect_reject("GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 1\r\nC: 1\r\nD: 1\r\nE: 1\r\n"
                  "F: 1\r\nG: 1\r\nH: 1\r\nI: 1\r\nJ: 1\r\n\r\n", 431);
    expect_reject("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 65\r\n\r\n", 413);
    char chunked[256];
    snprintf(chunked, sizeof(chunked),
             "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n41\r\n%065d\r\n0\r\n\r\n", 0);
    expect_reject(chunked, 413);
    /* exactly at the body limit passes */
    struct pg_reqparser p;
    char ok[256];
    snprintf(ok, sizeof(ok), "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 64\r\n\r\n%064d", 0);
    pg_reqparser_init(&p, &limits);
    assert_int_equal(feed(&p, ok), (ssize_t)strlen(ok));
    assert_true(p.complete);
    pg_reqparser_free(&p);
}

static void http10_without_keepalive_closes(void **state)
{
    (void)state;
    struct pg_reqparser p;
    pg_reqparser_init(&p, &limits);
    assert_int_equal(feed(&p, "GET / HTTP/1.0\r\n\r\n"), 18);
    assert_true(p.complete);
    assert_false(p.keep_alive);
    pg_reqparser_free(&p);
    pg_reqparser_init(&p, &limits);
    assert_true(feed(&p, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n") > 0);
    assert_false(p.keep_alive);
    pg_reqparser_free(&p);
}

static void hop_by_hop_names(void **state)
{
    (void)state;
    struct pg_reqparser p;
    pg_reqparser_init(&p, &limits);
    assert_true(feed(&p, "GET / HTTP/1.1\r\nHost: x\r\nConnection: X-Foo , x-bar\r\n\r\n") > 0);
    assert_true(pg_http_drop_header(&p.msg, PG_SLICE("x-foo")));
    assert_true(pg_http_drop_header(&p.msg, PG_SLICE("X-Bar")));
    assert_true(pg_http_drop_header(&p.msg, PG_SLICE("proxy-authorization")));
    assert_true(pg_http_drop_header(&p.msg, PG_SLICE("Transfer-Encoding")));
    assert_true(pg_http_drop_header(&p.msg, PG_SLICE("payguard-rail")));
    assert_false(pg_http_drop_header(&p.msg, PG_SLICE("Idempotency-Key")));
    assert_false(pg_http_drop_header(&p.msg, PG_SLICE("Stripe-Account")));
    assert_false(pg_http_drop_header(&p.msg, PG_SLICE("X-Foobar")));
    pg_reqparser_free(&p);
}

static void error_answer_is_stripe_shaped(void **state)
{
    (void)state;
    struct pg_buf out = { 0 };
    assert_int_equal(pg_http_write_error(&out, 429, "rate_limit_error", "payguard_rate_limited",
                                         "Slow \"down\".", false, 7), 0);
    assert_int_equal(pg_buf_append(&out, "", 1), 0);
    assert_non_null(strstr(out.p, "HTTP/1.1 429 Too Many Requests\r\n"));
    assert_non_null(strstr(out.p, "Payguard-Decision: deny\r\n"));
    assert_non_null(strstr(out.p, "Payguard-Reason: rate_limited\r\n"));
    assert_non_null(strstr(out.p, "Stripe-Should-Retry: false\r\n"));
    assert_non_null(strstr(out.p, "Retry-After: 7\r\n"));
    assert_null(strstr(out.p, "Connection: close"));
    assert_non_null(strstr(out.p, "\r\n\r\n{\"error\":{\"type\":\"rate_limit_error\","
                                  "\"code\":\"payguard_rate_limited\",\"message\":\"Slow \\\"down\\\".\"}}"));
    pg_buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parses_get_and_serializes_for_rail),
        cmocka_unit_test(chunked_body_is_reframed_with_length),
        cmocka_unit_test(pipelined_requests_stop_at_each_boundary),
        cmocka_unit_test(bytewise_feeding_parses_the_same),
        cmocka_unit_test(smuggling_vectors_are_refused),
        cmocka_unit_test(limits_give_431_and_413),
        cmocka_unit_test(http10_without_keepalive_closes),
        cmocka_unit_test(hop_by_hop_names),
        cmocka_unit_test(error_answer_is_stripe_shaped),
    };
    return cmocka_run_group_tests_name("http", tests, NULL, NULL);
}
