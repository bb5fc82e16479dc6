/* Agent tokens, bcrypt, Authorization parsing, the token cache and the
 * auth-failure limiter. */
#include "common/pg.h"
#include "auth/auth.h"

#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

static void new_tokens_have_the_format_and_differ(void **state)
{
    (void)state;
    char a[PG_TOKEN_BUF], b[PG_TOKEN_BUF];
    assert_int_equal(pg_auth_token_new(a, sizeof(a)), 0);
    assert_int_equal(pg_auth_token_new(b, sizeof(b)), 0);
    assert_int_equal(strlen(a), 4 + 43);
    assert_memory_equal(a, "pgt_", 4);
    assert_int_equal(pg_auth_token_check_format(pg_slice_cstr(a)), 0);
    assert_string_not_equal(a, b);
    char small[20];
    assert_int_equal(pg_auth_token_new(small, sizeof(small)), PG_ETOOBIG);
}

static void token_format_rejects(void **state)
{
    (void)state;
    const char *bad[] = { "sk_test_0123456789abcdefghij", "pgt_short", "pgt_has space in it 0123456",
                          "pgt_quote\"0123456789abcdef", "PGT_0123456789abcdefghijk", "" };
    for (size_t i = 0; i < PG_ARRAY_LEN(bad); i++)
        assert_int_equal(pg_auth_token_check_format(pg_slice_cstr(bad[i])), PG_EPARSE);
}

static void bcrypt_round_trip(void **state)
{
    (void)state;
    char hash[PG_BCRYPT_BUF];
    struct pg_slice tok = PG_SLICE("pgt_0123456789abcdefghijklmnopqrstuvwxyzABCDEFG");
    assert_int_equal(pg_auth_bcrypt_hash(tok, 4, hash, sizeof(hash)), 0);
    assert_memory_equal(hash, "$2b$04$", 7);
    assert_int_equal(strlen(hash), 60);
    assert_int_equal(pg_auth_bcrypt_verify(tok, hash), 1);
    assert_int_equal(pg_auth_bcrypt_verify(PG_SLICE("pgt_0123456789abcdefghijklmnopqrstuvwxyzABCDEFH"), hash), 0);
    assert_int_equal(pg_auth_bcrypt_verify(tok, "$2b$04$notahash"), PG_ECRYPTO);
    char long_secret[80];
    memset(long_secret, 'a', sizeof(long_secret));
    assert_int_equal(pg_auth_bcrypt_hash(pg_slice_of(long_secret, 73), 4, hash, sizeof(hash)), PG_ERANGE);
}

static void credential_from_bearer_and_basic(void **state)
{
    (void)state;
    char scratch[128];
    struct pg_slice out;
    assert_int_equal(pg_auth_credential(PG_SLICE("Bearer pgt_abc"), scratch, sizeof(scratch), &out), 0);
    assert_true(pg_slice_eq(out, PG_SLICE("pgt_abc")));
    assert_int_equal(pg_auth_credential(PG_SLICE("bearer pgt_abc"), scratch, sizeof(scratch), &out), 0);
    assert_true(pg_slice_eq(out, PG_SLICE("pgt_abc")));
    /* base64("pgt_abc:") as curl -u and Stripe's clients send it */
    assert_int_equal(pg_auth_credential(PG_SLICE("Basic cGd0X2FiYzo="), scratch, sizeof(scratch), &out), 0);
    assert_true(pg_slice_eq(out, PG_SLICE("pgt_abc")));
    /* base64("pgt_abcd") with no colon, two padding bytes */
    assert_int_equal(pg_auth_credential(PG_SLICE("Basic cGd0X2FiY2Q="), scratch, sizeof(scratch), &out), 0);
    assert_true(pg_slice_eq(out, PG_SLICE("pgt_abcd")));
    assert_int_equal(pg_auth_credential(PG_SLICE("Basic !!!!"), scratch, sizeof(scratch), &out), PG_EPARSE);
    assert_int_equal(pg_auth_credential(PG_SLICE("Basic abc"), scratch, sizeof(scratch), &out), PG_EPARSE);
    assert_int_equal(pg_auth_credential(PG_SLICE("Digest x"), scratch, sizeof(scratch), &out), PG_EPARSE);
    assert_int_equal(pg_auth_credential(PG_SLICE("Bearer "), scratch, sizeof(scratch), &out), PG_EPARSE);
}

static void cache_follows_token_rotation(void **state)
{
    (void)state;
    struct pg_agent agents[1];
    struct pg_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    memset(agents, 0, sizeof(agents));
    agents[0].id = "shopper";
    agents[0].token_hash = "$2b$10$first";
    cfg.agents = agents;
    cfg.nagents = 1;
    struct pg_token_cache *c = pg_token_cache_new(16);
    uint8_t d1[PG_SHA256_LEN], d2[PG_SHA256_LEN];
    assert_int_equal(pg_sha256("one", 3, d1), 0);
    assert_int_equal(pg_sha256("two", 3, d2), 0);
    assert_null(pg_token_cache_get(c, &cfg, d1));
    assert_int_equal(pg_token_cache_put(c, d1, &agents[0]), 0);
    assert_ptr_equal(pg_token_cache_get(c, &cfg, d1), &agents[0]);
    assert_null(pg_token_cache_get(c, &cfg, d2));
    /* a reload that changes the agent's token hash invalidates the entry */
    agents[0].token_hash = "$2b$10$second";
    assert_null(pg_token_cache_get(c, &cfg, d1));
    /* and a reload that removes the agent does too */
    agents[0].token_hash = "$2b$10$first";
    assert_int_equal(pg_token_cache_put(c, d1, &agents[0]), 0);
    cfg.nagents = 0;
    assert_null(pg_token_cache_get(c, &cfg, d1));
    /* many entries: a full table keeps working */
    cfg.nagents = 1;
    for (uint32_t i = 0; i < 1000; i++) {
        uint8_t d[PG_SHA256_LEN];
        assert_int_equal(pg_sha256(&i, sizeof(i), d), 0);
        assert_int_equal(pg_token_cache_put(c, d, &agents[0]), 0);
    }
    pg_token_cache_free(c);
}

static void limiter_blocks_after_limit_for_a_minute(void **state)
{
    (void)state;
    struct pg_auth_limiter *l = pg_auth_limiter_new(3);
    struct sockaddr_in a = { .sin_family = AF_INET }, b = { .sin_family = AF_INET };
    a.sin_addr.s_addr = htonl(0x7f000001);
    b.sin_addr.s_addr = htonl(0x7f000002);
    uint64_t t = 1000000;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(pg_auth_limiter_wait(l, (struct sockaddr *)&a, t), 0);
        pg_auth_limiter_fail(l, (struct sockaddr *)&a, t);
    }
    assert_int_equal(pg_auth_limiter_wait(l, (struct sockaddr *)&a, t), 60);
    assert_int_equal(pg_auth_limiter_wait(l, (struct sockaddr *)&a, t + 59001), 1);
    assert_int_equal(pg_auth_limiter_wait(l, (struct sockaddr *)&b, t), 0);
    assert_int_equal(pg_auth_limiter_wait(l, (struct sockaddr *)&a, t + 60000), 0);
    pg_auth_limiter_free(l);
}

static void bucket_allows_burst_then_refills(void **state)
{
    (void)state;
    struct pg_bucket b = { 0, 0, false };
    uint64_t t = 5000000;
    /* 2 per second, bursts of 3 */
    assert_int_equal(pg_bucket_take(&b, 2, 1, 3, t), 0);
    assert_int_equal(pg_bucket_take(&b, 2, 1, 3, t), 0);
    assert_int_equal(pg_bucket_take(&b, 2, 1, 3, t), 0);
    assert_int_equal(pg_bucket_take(&b, 2, 1, 3, t), 1);
    /* half a second later exactly one token is back */
    assert_int_equal(pg_bucket_take(&b, 2, 1, 3, t + 500000), 0);
    assert_int_equal(pg_bucket_take(&b, 2, 1, 3, t + 500000), 1);
    /* a long pause refills to the burst, not beyond */
    t += 3600u * 1000000u;
    for (int i = 0; i < 3; i++)
        assert_int_equal(pg_bucket_take(&b, 2, 1, 3, t), 0);
    assert_true(pg_bucket_take(&b, 2, 1, 3, t) >= 1);
    /* 1 per minute: the wait is reported in whole seconds */
    struct pg_bucket m = { 0, 0, false };
    assert_int_equal(pg_bucket_take(&m, 1, 60, 1, t), 0);
    assert_int_equal(pg_bucket_take(&m, 1, 60, 1, t), 60);
    uint32_t w = pg_bucket_take(&m, 1, 60, 1, t + 59000000); /* rounded up */
    assert_true(w >= 1 && w <= 2);
    assert_int_equal(pg_bucket_take(&m, 1, 60, 1, t + 60000000), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(new_tokens_have_the_format_and_differ),
        cmocka_unit_test(token_format_rejects),
        cmocka_unit_test(bcrypt_round_trip),
        cmocka_unit_test(credential_from_bearer_and_basic),
        cmocka_unit_test(cache_follows_token_rotation),
        cmocka_unit_test(limiter_blocks_after_limit_for_a_minute),
        cmocka_unit_test(bucket_allows_burst_then_refills),
    };
    return cmocka_run_group_tests_name("auth", tests, NULL, NULL);
}
