/* Human sign-in primitives: HOTP and TOTP against the RFC vectors, the
 * ±1-step window and replay refusal, base32, otpauth URIs, recovery codes,
 * password rules and HS256 access tokens (every refusal by name). */
#include "common/pg.h"
#include "auth/human.h"
#include "crypto/crypto.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

static const uint8_t rfc_secret[] = "12345678901234567890"; /* 20 bytes + NUL */
#define RFC_SECRET rfc_secret, 20

/* ---- HOTP / TOTP ------------------------------------------------------------ */

static void hotp_matches_rfc4226_appendix_d(void **state)
{
    (void)state;
    static const uint32_t want[10] = {755224, 287082, 359152, 969429, 338314,
                                      254676, 287922, 162583, 399871, 520489};
    for (uint64_t i = 0; i < 10; i++) {
        uint32_t got = 0;
        assert_int_equal(pg_hotp(RFC_SECRET, i, 6, &got), 0);
        assert_int_equal(got, want[i]);
    }
    uint32_t got;
    assert_int_equal(pg_hotp(RFC_SECRET, 0, 5, &got), PG_EPARSE);
    assert_int_equal(pg_hotp(RFC_SECRET, 0, 9, &got), PG_EPARSE);
    assert_int_equal(pg_hotp(rfc_secret, 0, 0, 6, &got), PG_EPARSE);
}

static void totp_matches_rfc6238_appendix_b_sha1(void **state)
{
    (void)state;
    static const struct {
        int64_t t;
        uint32_t code;
    } v[] = {
        {59, 94287082},         {1111111109, 7081804},  {1111111111, 14050471},
        {1234567890, 89005924}, {2000000000, 69279037}, {INT64_C(20000000000), 65353130},
    };
    for (size_t i = 0; i < PG_ARRAY_LEN(v); i++) {
        uint32_t got = 0;
        assert_int_equal(pg_hotp(RFC_SECRET, (uint64_t)v[i].t / 30, 8, &got), 0);
        assert_int_equal(got, v[i].code);
    }
}

/* The 6-digit code of `step` as text. */
static void code_at(uint64_t step, char out[7])
{
    uint32_t c;
    assert_int_equal(pg_hotp(RFC_SECRET, step, 6, &c), 0);
    snprintf(out, 7, "%06u", (unsigned)c);
}

static void totp_window_is_one_step_each_way(void **state)
{
    (void)state;
    const int64_t now = 1111111109; /* step 37037036 */
    const uint64_t t = (uint64_t)now / 30;
    char code[7];
    uint64_t step = 0;

    for (int d = -1; d <= 1; d++) {
        code_at(t + (uint64_t)(int64_t)d, code);
        step = 0;
        assert_int_equal(pg_totp_verify(RFC_SECRET, pg_slice_cstr(code), now, 0, &step), 1);
        assert_int_equal(step, t + (uint64_t)(int64_t)d);
    }
    code_at(t - 2, code);
    assert_int_equal(pg_totp_verify(RFC_SECRET, pg_slice_cstr(code), now, 0, &step), 0);
    code_at(t + 2, code);
    assert_int_equal(pg_totp_verify(RFC_SECRET, pg_slice_cstr(code), now, 0, &step), 0);
    /* The RFC's 8-digit vector cut to 6 digits is the code at that time. */
    assert_int_equal(pg_totp_verify(RFC_SECRET, PG_SLICE("081804"), now, 0, &step), 1);
    assert_int_equal(step, t);
}

static void totp_never_accepts_a_step_twice(void **state)
{
    (void)state;
    const int64_t now = 1234567890;
    const uint64_t t = (uint64_t)now / 30;
    char code[7];
    uint64_t step = 0;

    code_at(t, code);
    assert_int_equal(pg_totp_verify(RFC_SECRET, pg_slice_cstr(code), now, 0, &step), 1);
    assert_int_equal(step, t);
    /* the same code again, with that step now spent */
    assert_int_equal(pg_totp_verify(RFC_SECRET, pg_slice_cstr(code), now, t, &step), 0);
    /* an older code after a newer one was spent */
    code_at(t - 1, code);
    assert_int_equal(pg_totp_verify(RFC_SECRET, pg_slice_cstr(code), now, t, &step), 0);
    /* the next step's code is still good */
    code_at(t + 1, code);
    assert_int_equal(pg_totp_verify(RFC_SECRET, pg_slice_cstr(code), now, t, &step), 1);
    assert_int_equal(step, t + 1);
    assert_int_equal(pg_totp_verify(RFC_SECRET, pg_slice_cstr(code), now, t + 1, &step), 0);
}

static void totp_codes_are_six_ascii_digits(void **state)
{
    (void)state;
    uint64_t step;
    const char *bad[] = {"", "12345", "1234567", "12345a", " 12345", "12 345", "-12345"};
    for (size_t i = 0; i < PG_ARRAY_LEN(bad); i++)
        assert_int_equal(pg_totp_verify(RFC_SECRET, pg_slice_cstr(bad[i]), 59, 0, &step),
                         PG_EPARSE);
}

/* ---- base32 ------------------------------------------------------------------ */

static void base32_matches_rfc4648_vectors(void **state)
{
    (void)state;
    static const struct {
        const char *in, *enc, *padded;
    } v[] = {
        {"", "", ""},
        {"f", "MY", "MY======"},
        {"fo", "MZXQ", "MZXQ===="},
        {"foo", "MZXW6", "MZXW6==="},
        {"foob", "MZXW6YQ", "MZXW6YQ="},
        {"fooba", "MZXW6YTB", "MZXW6YTB"},
        {"foobar", "MZXW6YTBOI", "MZXW6YTBOI======"},
    };
    for (size_t i = 0; i < PG_ARRAY_LEN(v); i++) {
        char enc[32];
        uint8_t dec[16];
        size_t n = strlen(v[i].in);
        assert_int_equal(pg_base32_encode((const uint8_t *)v[i].in, n, enc, sizeof enc), 0);
        assert_string_equal(enc, v[i].enc);
        assert_int_equal(pg_base32_decode(pg_slice_cstr(v[i].enc), dec, sizeof dec), (int)n);
        assert_memory_equal(dec, v[i].in, n);
        assert_int_equal(pg_base32_decode(pg_slice_cstr(v[i].padded), dec, sizeof dec), (int)n);
        assert_memory_equal(dec, v[i].in, n);
    }
}

static void base32_decode_is_lenient_in_form_strict_in_meaning(void **state)
{
    (void)state;
    uint8_t dec[16];
    char small[4];
    /* lower case and spaces, as people copy secrets */
    assert_int_equal(pg_base32_decode(PG_SLICE("mzxw 6ytb oi"), dec, sizeof dec), 6);
    assert_memory_equal(dec, "foobar", 6);
    const char *bad[] = {
        "MZXW6YTB1",  /* '1' is not base32 */
        "MZXW6YTB8",  /* nor '8' */
        "M",          /* one character holds no byte */
        "MZX",        /* nor three */
        "MZXW6Y",     /* nor six */
        "MZ=XW6YQ",   /* padding inside */
        "MY=",        /* padding to a wrong length */
        "MZ",         /* 'Z' leaves stray bits after the byte */
        "MZXW6YTB-",
    };
    for (size_t i = 0; i < PG_ARRAY_LEN(bad); i++)
        assert_int_equal(pg_base32_decode(pg_slice_cstr(bad[i]), dec, sizeof dec), PG_EPARSE);
    assert_int_equal(pg_base32_decode(PG_SLICE("MZXW6YTBOI"), dec, 5), PG_ETOOBIG);
    assert_int_equal(pg_base32_encode((const uint8_t *)"foo", 3, small, sizeof small),
                     PG_ETOOBIG);
}

static void otpauth_uri_encodes_issuer_and_account(void **state)
{
    (void)state;
    char uri[256];
    assert_int_equal(pg_totp_uri("pay guard", "ana@acme.test", RFC_SECRET, uri, sizeof uri), 0);
    assert_string_equal(uri, "otpauth://totp/pay%20guard:ana%40acme.test"
                             "?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=pay%20guard"
                             "&algorithm=SHA1&digits=6&period=30");
    assert_int_equal(pg_totp_uri("payguard", "ana@acme.test", RFC_SECRET, uri, 40), PG_ETOOBIG);
    assert_string_equal(uri, "");
}

/* ---- recovery codes ------------------------------------------------------------ */

static void recovery_codes_have_one_shape_and_differ(void **state)
{
    (void)state;
    char a[PG_RECOVERY_CODE_BUF], b[PG_RECOVERY_CODE_BUF], ha[65], hb[65];
    assert_int_equal(pg_recovery_code_new(a), 0);
    assert_int_equal(pg_recovery_code_new(b), 0);
    assert_string_not_equal(a, b);
    assert_int_equal(strlen(a), 23);
    for (size_t i = 0; i < 23; i++) {
        if (i % 6 == 5)
            assert_int_equal(a[i], '-');
        else
            assert_true((a[i] >= 'a' && a[i] <= 'z') || (a[i] >= '2' && a[i] <= '7'));
    }
    assert_int_equal(pg_recovery_code_hash(pg_slice_cstr(a), ha), 0);
    assert_int_equal(pg_recovery_code_hash(pg_slice_cstr(b), hb), 0);
    assert_string_not_equal(ha, hb);
    assert_int_equal(strlen(ha), 64);
}

static void recovery_code_hash_normalises(void **state)
{
    (void)state;
    char h1[65], h2[65], h3[65], want[65];
    uint8_t md[PG_SHA256_LEN];
    assert_int_equal(pg_recovery_code_hash(PG_SLICE("abcde-fghij-klmno-pqrst"), h1), 0);
    assert_int_equal(pg_recovery_code_hash(PG_SLICE("ABCDE FGHIJ KLMNO PQRST"), h2), 0);
    assert_int_equal(pg_recovery_code_hash(PG_SLICE("abcdefghijklmnopqrst"), h3), 0);
    assert_string_equal(h1, h2);
    assert_string_equal(h1, h3);
    /* the hash is of the 20 lower-case characters */
    assert_int_equal(pg_sha256("abcdefghijklmnopqrst", 20, md), 0);
    assert_int_equal(pg_hex_encode(md, sizeof md, want, sizeof want), 64);
    assert_string_equal(h1, want);
    const char *bad[] = {"abcde-fghij-klmno-pqrs", "abcde-fghij-klmno-pqrstu",
                         "abcde-fghij-klmno-pqrs1", "abcde_fghij_klmno_pqrst", ""};
    for (size_t i = 0; i < PG_ARRAY_LEN(bad); i++)
        assert_int_equal(pg_recovery_code_hash(pg_slice_cstr(bad[i]), h1), PG_EPARSE);
}

/* ---- passwords ---------------------------------------------------------------- */

static void expect_refused(const char *pw, size_t len, const char *why_part)
{
    const char *why = NULL;
    assert_int_equal(pg_password_check(pg_slice_of(pw, len), &why), PG_EPARSE);
    assert_non_null(why);
    if (!strstr(why, why_part))
        fail_msg("\"%s\": why \"%s\" lacks \"%s\"", pw, why, why_part);
}

static void password_rules(void **state)
{
    (void)state;
    const char *why = "unset";
    assert_int_equal(pg_password_check(PG_SLICE("correct horse 9"), &why), 0);
    assert_int_equal(pg_password_check(PG_SLICE("abcdefghi1"), NULL), 0);
    /* ten characters, some of them two bytes each */
    assert_int_equal(pg_password_check(PG_SLICE("\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
                                                "abcde1"), NULL), 0);
    /* exactly 72 bytes passes, 73 does not */
    char long_pw[80];
    memset(long_pw, 'a', sizeof long_pw);
    long_pw[0] = '7';
    assert_int_equal(pg_password_check(pg_slice_of(long_pw, 72), NULL), 0);
    expect_refused(long_pw, 73, "longer than 72 bytes");

    expect_refused("abcdefgh1", 9, "shorter than 10");
    /* nine characters in 14 bytes */
    expect_refused("\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9" "abc1", 14, "shorter than 10");
    expect_refused("abcdefghijk", 11, "digit");
    expect_refused("1234567890-", 11, "letter");
    expect_refused("abcdefghi1\0x", 12, "NUL");
    expect_refused("abcdefghi1\n", 11, "control");
    expect_refused("abcdefghi1\xc3", 11, "UTF-8");
    expect_refused("abcdefghi1\xc0\xaf", 12, "UTF-8"); /* overlong '/' */
    expect_refused("", 0, "shorter than 10");
}

/* ---- access tokens ------------------------------------------------------------ */

static const uint8_t jwt_key[PG_JWT_KEY_LEN] = "0123456789abcdef0123456789abcdef";
#define NOW INT64_C(1784116800)
#define ISS "payguard"
#define AUD "payguard-admin"

static struct pg_jwt_claims good_claims(void)
{
    struct pg_jwt_claims c;
    memset(&c, 0, sizeof c);
    snprintf(c.iss, sizeof c.iss, "%s", ISS);
    snprintf(c.aud, sizeof c.aud, "%s", AUD);
    snprintf(c.sub, sizeof c.sub, "ana@acme.test");
    snprintf(c.jti, sizeof c.jti, "j-0001");
    snprintf(c.org, sizeof c.org, "acme");
    snprintf(c.role, sizeof c.role, "approver");
    c.iat = NOW;
    c.exp = NOW + PG_JWT_TTL_S;
    return c;
}

/* A token from raw header and payload JSON, signed with `key` as HS256
 * would be whatever the header says: shapes payguard never issues. */
static void forge(const char *hdr, const char *payload, const uint8_t *key, char *out, size_t cap)
{
    uint8_t mac[32];
    unsigned n = 0;
    int a = pg_base64url_encode(hdr, strlen(hdr), out, cap);
    assert_true(a > 0);
    out[a] = '.';
    int b = pg_base64url_encode(payload, strlen(payload), out + a + 1, cap - (size_t)a - 1);
    assert_true(b > 0);
    size_t len = (size_t)a + 1 + (size_t)b;
    assert_non_null(HMAC(EVP_sha256(), key, PG_JWT_KEY_LEN, (const unsigned char *)out, len, mac,
                         &n));
    out[len] = '.';
    assert_true(pg_base64url_encode(mac, n, out + len + 1, cap - len - 1) > 0);
}

static int verify(const char *tok, const char **why)
{
    struct pg_jwt_claims c;
    *why = NULL;
    return pg_jwt_verify(jwt_key, sizeof jwt_key, pg_slice_cstr(tok), NOW, ISS, AUD, &c, why);
}

#define EXPECT_REFUSED(tok, reason)                                                                \
    do {                                                                                           \
        const char *why_;                                                                          \
        assert_int_equal(verify((tok), &why_), PG_EAUTH);                                          \
        assert_non_null(why_);                                                                     \
        assert_string_equal(why_, (reason));                                                       \
    } while (0)

#define HS256 "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"
#define BODY_ISS_AUD "\"iss\":\"payguard\",\"aud\":\"payguard-admin\""
#define BODY_WHO "\"sub\":\"ana@acme.test\",\"jti\":\"j1\",\"org\":\"acme\",\"role\":\"admin\""
#define BODY_TIMES "\"iat\":1784116800,\"exp\":1784117700"
#define GOOD_BODY "{" BODY_ISS_AUD "," BODY_WHO "," BODY_TIMES "}"

static void jwt_round_trip(void **state)
{
    (void)state;
    struct pg_jwt_claims c = good_claims(), got;
    char tok[PG_JWT_MAX + 1];
    const char *why = NULL;

    assert_int_equal(pg_jwt_sign(jwt_key, sizeof jwt_key, &c, tok, sizeof tok), 0);
    assert_non_null(strstr(tok, "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."));
    memset(&got, 0x5a, sizeof got);
    assert_int_equal(pg_jwt_verify(jwt_key, sizeof jwt_key, pg_slice_cstr(tok), NOW + 10, ISS,
                                   AUD, &got, &why),
                     0);
    assert_string_equal(got.sub, "ana@acme.test");
    assert_string_equal(got.jti, "j-0001");
    assert_string_equal(got.org, "acme");
    assert_string_equal(got.role, "approver");
    assert_string_equal(got.iss, ISS);
    assert_string_equal(got.aud, AUD);
    assert_int_equal(got.iat, NOW);
    assert_int_equal(got.exp, NOW + PG_JWT_TTL_S);
    assert_int_equal(got.nbf, 0);

    /* nbf survives the trip */
    c.nbf = NOW;
    assert_int_equal(pg_jwt_sign(jwt_key, sizeof jwt_key, &c, tok, sizeof tok), 0);
    assert_int_equal(pg_jwt_verify(jwt_key, sizeof jwt_key, pg_slice_cstr(tok), NOW, ISS, AUD,
                                   &got, &why),
                     0);
    assert_int_equal(got.nbf, NOW);

    /* another key is a bad signature */
    uint8_t other[PG_JWT_KEY_LEN];
    memcpy(other, jwt_key, sizeof other);
    other[0] ^= 1;
    assert_int_equal(pg_jwt_verify(other, sizeof other, pg_slice_cstr(tok), NOW, ISS, AUD, &got,
                                   &why),
                     PG_EAUTH);
    assert_string_equal(why, "signature");

    /* a forged good token verifies too: the test's forge() is sound */
    forge(HS256, GOOD_BODY, jwt_key, tok, sizeof tok);
    assert_int_equal(verify(tok, &why), 0);
    /* typ may be absent */
    forge("{\"alg\":\"HS256\"}", GOOD_BODY, jwt_key, tok, sizeof tok);
    assert_int_equal(verify(tok, &why), 0);

    /* a buffer too small for the token */
    char small[64];
    assert_int_equal(pg_jwt_sign(jwt_key, sizeof jwt_key, &c, small, sizeof small), PG_ETOOBIG);
}

static void jwt_refuses_other_algorithms_and_headers(void **state)
{
    (void)state;
    char tok[PG_JWT_MAX + 1];
    char body[16];

    forge("{\"alg\":\"none\",\"typ\":\"JWT\"}", GOOD_BODY, jwt_key, tok, sizeof tok);
    EXPECT_REFUSED(tok, "alg");
    /* "none" with an empty signature, as such tokens come */
    *strrchr(tok, '.') = '\0';
    size_t n = strlen(tok);
    snprintf(tok + n, sizeof tok - n, ".");
    EXPECT_REFUSED(tok, "malformed");
    forge("{\"alg\":\"HS512\",\"typ\":\"JWT\"}", GOOD_BODY, jwt_key, tok, sizeof tok);
    EXPECT_REFUSED(tok, "alg");
    forge("{\"alg\":\"RS256\",\"typ\":\"JWT\"}", GOOD_BODY, jwt_key, tok, sizeof tok);
    EXPECT_REFUSED(tok, "alg");
    forge("{\"alg\":\"hs256\"}", GOOD_BODY, jwt_key, tok, sizeof tok);
    EXPECT_REFUSED(tok, "alg");
    forge("{\"typ\":\"JWT\"}", GOOD_BODY, jwt_key, tok, sizeof tok);
    EXPECT_REFUSED(tok, "alg");
    forge("{\"alg\":\"HS256\",\"typ\":\"at+jwt\"}", GOOD_BODY, jwt_key, tok, sizeof tok);
    EXPECT_REFUSED(tok, "malformed");
    forge("{\"alg\":\"HS256\",\"typ\":7}", GOOD_BODY, jwt_key, tok, sizeof tok);
    EXPECT_REFUSED(tok, "malformed");
    forge("[\"HS256\"]", GOOD_BODY, jwt_key, tok, sizeof tok);
    EXPECT_REFUSED(tok, "malformed");
    forge("{\"alg\":\"HS256\",\"alg\":\"none\"}", GOOD_BODY, jwt_key, tok, sizeof tok);
    EXPECT_REFUSED(tok, "malformed");
    forge("{\"alg\":\"HS256\",\"crit\":[\"b64\"]}", GOOD_BODY, jwt_key, tok, sizeof tok);
    EXPECT_REFUSED(tok, "malformed");
    forge("not json", GOOD_BODY, jwt_key, tok, sizeof tok);
    EXPECT_REFUSED(tok, "malformed");
    /* a payload that is not a JSON object, correctly signed */
    snprintf(body, sizeof body, "[1,2]");
    forge(HS256, body, jwt_key, tok, sizeof tok);
    EXPECT_REFUSED(tok, "malformed");
}

static void jwt_refuses_tampering_and_bad_encoding(void **state)
{
    (void)state;
    struct pg_jwt_claims c = good_claims();
    char tok[PG_JWT_MAX + 1], t2[PG_JWT_MAX + 8];

    assert_int_equal(pg_jwt_sign(jwt_key, sizeof jwt_key, &c, tok, sizeof tok), 0);
    char *d1 = strchr(tok, '.'), *d2 = strrchr(tok, '.');

    /* a payload with another role, the old signature kept */
    snprintf(t2, sizeof t2, "%s", tok);
    char forged[PG_JWT_MAX + 1];
    forge(HS256,
          "{" BODY_ISS_AUD ",\"sub\":\"ana@acme.test\",\"jti\":\"j-0001\",\"org\":\"acme\","
          "\"role\":\"owner\"," BODY_TIMES "}",
          jwt_key, forged, sizeof forged);
    {
        char *f1 = strchr(forged, '.'), *f2 = strrchr(forged, '.');
        snprintf(t2, sizeof t2, "%.*s%.*s%s", (int)(d1 - tok), tok, (int)(f2 - f1), f1, d2);
    }
    EXPECT_REFUSED(t2, "signature");
    /* one payload character changed */
    snprintf(t2, sizeof t2, "%s", tok);
    t2[(d1 - tok) + 5] = t2[(d1 - tok) + 5] == 'A' ? 'B' : 'A';
    EXPECT_REFUSED(t2, "signature");
    /* one signature character changed (not the last, whose low bits are padding) */
    snprintf(t2, sizeof t2, "%s", tok);
    t2[(d2 - tok) + 3] = t2[(d2 - tok) + 3] == 'A' ? 'B' : 'A';
    EXPECT_REFUSED(t2, "signature");
    /* the signature's last character with its unused bits set: not canonical */
    snprintf(t2, sizeof t2, "%s", tok);
    {
        char *last = t2 + strlen(t2) - 1;
        static const char abc[] =
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        size_t v = (size_t)(strchr(abc, *last) - abc);
        *last = abc[v ^ 1];
    }
    EXPECT_REFUSED(t2, "malformed");

    /* base64url only: padding, '+', '/', anything else */
    snprintf(t2, sizeof t2, "%s=", tok);
    EXPECT_REFUSED(t2, "malformed");
    snprintf(t2, sizeof t2, "%.*s=%s", (int)(d1 - tok), tok, d1);
    EXPECT_REFUSED(t2, "malformed");
    snprintf(t2, sizeof t2, "%s", tok);
    t2[(d1 - tok) + 2] = '+';
    EXPECT_REFUSED(t2, "malformed");
    snprintf(t2, sizeof t2, "%s", tok);
    t2[(d1 - tok) + 2] = '/';
    EXPECT_REFUSED(t2, "malformed");
    snprintf(t2, sizeof t2, "%s", tok);
    t2[(d2 - tok) + 2] = '/';
    EXPECT_REFUSED(t2, "malformed");
    snprintf(t2, sizeof t2, "%s", tok);
    t2[2] = '*';
    EXPECT_REFUSED(t2, "malformed");
    snprintf(t2, sizeof t2, "%s", tok);
    t2[(d1 - tok) + 2] = ' ';
    EXPECT_REFUSED(t2, "malformed");

    /* two parts, four parts, empty parts */
    snprintf(t2, sizeof t2, "%.*s", (int)(d2 - tok), tok);
    EXPECT_REFUSED(t2, "malformed");
    snprintf(t2, sizeof t2, "%s.%s", tok, d2 + 1);
    EXPECT_REFUSED(t2, "malformed");
    snprintf(t2, sizeof t2, "%s.", tok);
    EXPECT_REFUSED(t2, "malformed");
    snprintf(t2, sizeof t2, "%.*s%s", (int)(d1 - tok + 1), tok, d2);
    EXPECT_REFUSED(t2, "malformed");
    EXPECT_REFUSED("..", "malformed");
    EXPECT_REFUSED("", "malformed");
}

static void jwt_refuses_oversize_tokens(void **state)
{
    (void)state;
    struct pg_jwt_claims c = good_claims();
    char tok[PG_JWT_MAX + 1];
    const char *why = NULL;

    /* A sub of 255 bytes still fits in a token. */
    memset(c.sub, 'a', sizeof c.sub - 1);
    c.sub[sizeof c.sub - 1] = '\0';
    assert_int_equal(pg_jwt_sign(jwt_key, sizeof jwt_key, &c, tok, sizeof tok), 0);
    assert_int_equal(verify(tok, &why), 0);

    /* A correctly signed token longer than PG_JWT_MAX is refused unread. */
    size_t cap = 2 * PG_JWT_MAX + 512;
    char *body = malloc(cap), *big = malloc(2 * cap);
    assert_non_null(body);
    assert_non_null(big);
    int n = snprintf(body, cap, "{" BODY_ISS_AUD "," BODY_WHO "," BODY_TIMES ",\"pad\":\"");
    memset(body + n, 'x', PG_JWT_MAX);
    snprintf(body + n + PG_JWT_MAX, cap - (size_t)n - PG_JWT_MAX, "\"}");
    forge(HS256, body, jwt_key, big, 2 * cap);
    assert_true(strlen(big) > PG_JWT_MAX);
    EXPECT_REFUSED(big, "malformed");
    free(body);
    free(big);
}

/* A token with the standard header, the given claims, correctly signed. */
#define CLAIMS(...) forge(HS256, "{" __VA_ARGS__ "}", jwt_key, tok, sizeof tok)

static void jwt_checks_time_issuer_audience_and_claims(void **state)
{
    (void)state;
    char tok[PG_JWT_MAX + 1];
    const char *why;
    /* NOW = 1784116800 */

    /* expired beyond the 60 s leeway: exp = NOW - 61 */
    CLAIMS(BODY_ISS_AUD "," BODY_WHO ",\"iat\":1784115839,\"exp\":1784116739");
    EXPECT_REFUSED(tok, "expired");
    /* exactly at the end of the leeway: exp + 60 == NOW */
    CLAIMS(BODY_ISS_AUD "," BODY_WHO ",\"iat\":1784115840,\"exp\":1784116740");
    EXPECT_REFUSED(tok, "expired");
    /* expired but within the leeway: exp = NOW - 30 */
    CLAIMS(BODY_ISS_AUD "," BODY_WHO ",\"iat\":1784115870,\"exp\":1784116770");
    assert_int_equal(verify(tok, &why), 0);

    /* nbf in the future, beyond the leeway; within it is fine */
    CLAIMS(BODY_ISS_AUD "," BODY_WHO "," BODY_TIMES ",\"nbf\":1784116861");
    EXPECT_REFUSED(tok, "not yet valid");
    CLAIMS(BODY_ISS_AUD "," BODY_WHO "," BODY_TIMES ",\"nbf\":1784116860");
    assert_int_equal(verify(tok, &why), 0);
    /* issued in the future */
    CLAIMS(BODY_ISS_AUD "," BODY_WHO ",\"iat\":1784116900,\"exp\":1784117700");
    EXPECT_REFUSED(tok, "not yet valid");

    /* issuer and audience */
    CLAIMS("\"iss\":\"someone-else\",\"aud\":\"payguard-admin\"," BODY_WHO "," BODY_TIMES);
    EXPECT_REFUSED(tok, "issuer");
    CLAIMS("\"iss\":\"payguard\",\"aud\":\"payguard-agents\"," BODY_WHO "," BODY_TIMES);
    EXPECT_REFUSED(tok, "audience");
    CLAIMS("\"iss\":\"payguard\",\"aud\":[\"payguard-admin\"]," BODY_WHO "," BODY_TIMES);
    EXPECT_REFUSED(tok, "claims");

    /* a lifetime longer than 15 minutes, or none at all */
    CLAIMS(BODY_ISS_AUD "," BODY_WHO ",\"iat\":1784116800,\"exp\":1784117701");
    EXPECT_REFUSED(tok, "lifetime");
    CLAIMS(BODY_ISS_AUD "," BODY_WHO ",\"iat\":1784116800,\"exp\":1784116800");
    EXPECT_REFUSED(tok, "lifetime");

    /* each required claim missing */
    CLAIMS(BODY_ISS_AUD ",\"jti\":\"j1\",\"org\":\"acme\",\"role\":\"admin\"," BODY_TIMES);
    EXPECT_REFUSED(tok, "claims");
    CLAIMS(BODY_ISS_AUD ",\"sub\":\"a@b.c\",\"org\":\"acme\",\"role\":\"admin\"," BODY_TIMES);
    EXPECT_REFUSED(tok, "claims");
    CLAIMS(BODY_ISS_AUD ",\"sub\":\"a@b.c\",\"jti\":\"j1\",\"role\":\"admin\"," BODY_TIMES);
    EXPECT_REFUSED(tok, "claims");
    CLAIMS(BODY_ISS_AUD ",\"sub\":\"a@b.c\",\"jti\":\"j1\",\"org\":\"acme\"," BODY_TIMES);
    EXPECT_REFUSED(tok, "claims");
    CLAIMS(BODY_ISS_AUD "," BODY_WHO ",\"iat\":1784116800");
    EXPECT_REFUSED(tok, "claims");
    CLAIMS(BODY_ISS_AUD "," BODY_WHO ",\"exp\":1784117700");
    EXPECT_REFUSED(tok, "claims");
    CLAIMS("\"aud\":\"payguard-admin\"," BODY_WHO "," BODY_TIMES);
    EXPECT_REFUSED(tok, "claims");
    /* wrong types and values */
    CLAIMS(BODY_ISS_AUD "," BODY_WHO ",\"iat\":1784116800,\"exp\":\"1784117700\"");
    EXPECT_REFUSED(tok, "claims");
    CLAIMS(BODY_ISS_AUD "," BODY_WHO ",\"iat\":1784116800,\"exp\":1784117700.5");
    EXPECT_REFUSED(tok, "claims");
    CLAIMS(BODY_ISS_AUD ",\"sub\":\"a@b.c\",\"jti\":\"j1\",\"org\":\"acme\",\"role\":\"root\","
           BODY_TIMES);
    EXPECT_REFUSED(tok, "claims");
    /* a NUL inside a claim: jansson refuses the escape outright */
    CLAIMS(BODY_ISS_AUD ",\"sub\":\"a\\u0000b\",\"jti\":\"j1\",\"org\":\"acme\","
           "\"role\":\"admin\"," BODY_TIMES);
    EXPECT_REFUSED(tok, "malformed");
    CLAIMS(BODY_ISS_AUD ",\"sub\":\"\",\"jti\":\"j1\",\"org\":\"acme\",\"role\":\"admin\","
           BODY_TIMES);
    EXPECT_REFUSED(tok, "claims");
    /* duplicate claim names are ambiguous */
    CLAIMS(BODY_ISS_AUD "," BODY_WHO "," BODY_TIMES ",\"role\":\"owner\"");
    EXPECT_REFUSED(tok, "malformed");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(hotp_matches_rfc4226_appendix_d),
        cmocka_unit_test(totp_matches_rfc6238_appendix_b_sha1),
        cmocka_unit_test(totp_window_is_one_step_each_way),
        cmocka_unit_test(totp_never_accepts_a_step_twice),
        cmocka_unit_test(totp_codes_are_six_ascii_digits),
        cmocka_unit_test(base32_matches_rfc4648_vectors),
        cmocka_unit_test(base32_decode_is_lenient_in_form_strict_in_meaning),
        cmocka_unit_test(otpauth_uri_encodes_issuer_and_account),
        cmocka_unit_test(recovery_codes_have_one_shape_and_differ),
        cmocka_unit_test(recovery_code_hash_normalises),
        cmocka_unit_test(password_rules),
        cmocka_unit_test(jwt_round_trip),
        cmocka_unit_test(jwt_refuses_other_algorithms_and_headers),
        cmocka_unit_test(jwt_refuses_tampering_and_bad_encoding),
        cmocka_unit_test(jwt_refuses_oversize_tokens),
        cmocka_unit_test(jwt_checks_time_issuer_audience_and_claims),
    };
    return cmocka_run_group_tests_name("human", tests, NULL, NULL);
}
