/* Sealed secrets: scrypt and AES-256-GCM against published vectors through
 * the code pg_seal runs, the sealed:v1: format, every way a value fails to
 * open, the config loader opening them, and `payguard seal`.
 * Most tests seal at a cheap scrypt cost through the internal entry points;
 * those that must prove the production cost (the format, the loader, the
 * CLI) pay about 0.4 s per seal or unseal. */
#include "common/pg.h"
#include "config/config.h"
#include "crypto/crypto.h"
#include "crypto/seal_int.h"
#include "proxy/cli.h"

#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#define PASS "correct horse battery staple"
#define RAIL_AAD "rails.stripe.secret"
#define RAIL_KEY "sk_test_51SealedRailKey0000000000"
#define HOOK_AAD "webhooks[0].secret"
#define HOOK_KEY "whsec_c2VhbGVkLXNpZ25pbmctc2VjcmV0LWZvci10ZXN0cyE="

/* Cheap enough to run dozens of times; v1 values never use it. */
static const struct seal_cost cheap = {1024, 1, 1};

static char work_dir[PATH_MAX];
/* Sealed at the production cost once, in main, for the loader tests. */
static char sealed_rail[PG_SEAL_TEXT_BUF];
static char sealed_hook[PG_SEAL_TEXT_BUF];

static size_t unhex(const char *hex, uint8_t *out, size_t cap)
{
    size_t n = strlen(hex) / 2;
    assert_true(n <= cap);
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        assert_int_equal(sscanf(hex + 2 * i, "%2x", &v), 1);
        out[i] = (uint8_t)v;
    }
    return n;
}

/* The bytes under "sealed:v1:". */
static size_t decode(const char *sealed, uint8_t *raw, size_t cap)
{
    assert_memory_equal(sealed, PG_SEAL_PREFIX, strlen(PG_SEAL_PREFIX));
    int n = pg_base64url_decode(pg_slice_cstr(sealed + strlen(PG_SEAL_PREFIX)), raw, cap);
    assert_true(n >= (int)PG_SEAL_OVERHEAD);
    return (size_t)n;
}

static void encode(const uint8_t *raw, size_t len, char *out, size_t cap)
{
    size_t p = strlen(PG_SEAL_PREFIX);
    memcpy(out, PG_SEAL_PREFIX, p);
    assert_true(pg_base64url_encode(raw, len, out + p, cap - p) > 0);
}

/* ---- primitives against published vectors ------------------------------ */

static void scrypt_matches_rfc7914(void **state)
{
    (void)state;
    static const struct {
        const char *pass, *salt;
        struct seal_cost cost;
        const char *hex;
    } v[] = {
        {"",
         "",
         {16, 1, 1},
         "77d6576238657b203b19ca42c18a0497f16b4844e3074ae8dfdffa3fede21442"
         "fcd0069ded0948f8326a753a0fc81f17e8d3e0fb2e0d3628cf35e20c38d18906"},
        {"password",
         "NaCl",
         {1024, 8, 16},
         "fdbabe1c9d3472007856e7190d01e9fe7c6ad7cbc8237830e77376634b373162"
         "2eaf30d92e22a3886ff109279d9830dac727afb94a83ee6d8360cbdfa2cc0640"},
        {"pleaseletmein",
         "SodiumChloride",
         {16384, 8, 1},
         "7023bdcb3afd7348461c06cd81fd38ebfda8fbba904f8e3ea9b543f6545da1f2"
         "d5432955613f0fcf62d49705242a9af9e61e85dc0d651e40dfcf017b45575887"},
    };
    for (size_t i = 0; i < PG_ARRAY_LEN(v); i++) {
        uint8_t want[64], got[64];
        unhex(v[i].hex, want, sizeof(want));
        assert_int_equal(seal_kdf(pg_slice_cstr(v[i].pass), (const uint8_t *)v[i].salt,
                                  strlen(v[i].salt), &v[i].cost, got, sizeof(got)),
                         0);
        assert_memory_equal(got, want, sizeof(want));
    }
    /* N must be a power of two: a refused cost is an error, not a key. */
    const struct seal_cost bad = {1000, 8, 1};
    uint8_t key[SEAL_KEY_LEN];
    assert_int_equal(seal_kdf(PG_SLICE("x"), (const uint8_t *)"salt", 4, &bad, key, sizeof(key)),
                     PG_ECRYPTO);
}

/* The GCM specification's (McGrew and Viega) AES-256 test cases 13, 14 and
 * 16: empty input, one zero block, and 60 bytes with 20 bytes of AAD. */
static void gcm_matches_the_spec_vectors(void **state)
{
    (void)state;
    static const struct {
        const char *key, *iv, *aad, *pt, *ct, *tag;
    } v[] = {
        {"0000000000000000000000000000000000000000000000000000000000000000",
         "000000000000000000000000", "", "", "", "530f8afbc74536b9a963b4f1c4cb738b"},
        {"0000000000000000000000000000000000000000000000000000000000000000",
         "000000000000000000000000", "", "00000000000000000000000000000000",
         "cea7403d4d606b6e074ec5d3baf39d18", "d0d1c8a799996bf0265b98b5d48ab919"},
        {"feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
         "cafebabefacedbaddecaf888", "feedfacedeadbeeffeedfacedeadbeefabaddad2",
         "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
         "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
         "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
         "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
         "76fc6ece0f4e1768cddf8853bb2d551b"},
    };
    for (size_t i = 0; i < PG_ARRAY_LEN(v); i++) {
        uint8_t key[32], iv[12], aad[32], pt[64], ct[64], tag[16];
        uint8_t got[64], gottag[16], back[64];
        unhex(v[i].key, key, sizeof(key));
        unhex(v[i].iv, iv, sizeof(iv));
        size_t aadlen = unhex(v[i].aad, aad, sizeof(aad));
        size_t len = unhex(v[i].pt, pt, sizeof(pt));
        assert_int_equal(unhex(v[i].ct, ct, sizeof(ct)), len);
        unhex(v[i].tag, tag, sizeof(tag));
        struct pg_slice a = pg_slice_of((const char *)aad, aadlen);

        assert_int_equal(seal_gcm_encrypt(key, iv, a, pt, len, got, gottag), 0);
        assert_memory_equal(got, ct, len);
        assert_memory_equal(gottag, tag, sizeof(tag));
        assert_int_equal(seal_gcm_decrypt(key, iv, a, ct, len, tag, back), 0);
        assert_memory_equal(back, pt, len);

        /* One flipped tag bit: refused, and no plaintext left behind. */
        tag[15] ^= 1;
        memset(back, 0xAA, sizeof(back));
        assert_int_equal(seal_gcm_decrypt(key, iv, a, ct, len, tag, back), PG_EAUTH);
        for (size_t j = 0; j < len; j++)
            assert_int_equal(back[j], 0);
    }
}

static void base64url_decodes_strictly(void **state)
{
    (void)state;
    uint8_t in[40], out[40];
    char text[64];
    for (size_t i = 0; i < sizeof(in); i++)
        in[i] = (uint8_t)(i * 37 + 250);
    for (size_t len = 0; len <= sizeof(in); len++) {
        int n = pg_base64url_encode(in, len, text, sizeof(text));
        assert_true(n >= 0);
        assert_int_equal(pg_base64url_decode(pg_slice_of(text, (size_t)n), out, sizeof(out)),
                         (int)len);
        assert_memory_equal(out, in, len);
    }
    assert_int_equal(pg_base64url_decode(PG_SLICE("-_-_"), out, sizeof(out)), 3);
    assert_memory_equal(out, "\xfb\xff\xbf", 3);

    static const char *const bad[] = {
        "A",     /* 6 bits: not a byte */
        "AAAAA", /* same, after a whole group */
        "AB",    /* bits set past the last byte */
        "AAB",   /* same, two bytes */
        "AA==",  /* padding */
        "AA+A",  /* base64, not base64url */
        "AA/A",  "AA A", "AA\nA", "AA.A",
    };
    for (size_t i = 0; i < PG_ARRAY_LEN(bad); i++)
        assert_int_equal(pg_base64url_decode(pg_slice_cstr(bad[i]), out, sizeof(out)), PG_EPARSE);
    assert_int_equal(pg_base64url_decode(PG_SLICE("AAAAAA"), out, 3), PG_ETOOBIG);
    assert_int_equal(pg_base64url_decode(PG_SLICE("AAAAAA"), out, 4), 4);
}

/* ---- the format and the production cost --------------------------------- */

static void seal_uses_the_v1_format_and_cost(void **state)
{
    (void)state;
    char sealed[PG_SEAL_TEXT_BUF], out[PG_SEAL_MAX_PLAINTEXT + 1];
    uint8_t raw[PG_SEAL_OVERHEAD + 64], key[SEAL_KEY_LEN], pt[64];
    size_t len = sizeof(RAIL_KEY) - 1, outlen = 0;

    assert_true(seal_cost_v1.n == 131072 && seal_cost_v1.r == 8 && seal_cost_v1.p == 1);
    int n = pg_seal(PG_SLICE(PASS), PG_SLICE(RAIL_AAD), PG_SLICE(RAIL_KEY), sealed, sizeof(sealed));
    assert_int_equal(n, PG_SEAL_TEXT_LEN(len));
    assert_int_equal(strlen(sealed), (size_t)n);
    assert_int_equal(decode(sealed, raw, sizeof(raw)), PG_SEAL_OVERHEAD + len);

    /* By hand: salt | nonce | ciphertext | tag, key = scrypt(2^17, 8, 1). */
    assert_int_equal(
        seal_kdf(PG_SLICE(PASS), raw, PG_SEAL_SALT_LEN, &seal_cost_v1, key, sizeof(key)), 0);
    const uint8_t *ct = raw + PG_SEAL_SALT_LEN + PG_SEAL_NONCE_LEN;
    assert_int_equal(
        seal_gcm_decrypt(key, raw + PG_SEAL_SALT_LEN, PG_SLICE(RAIL_AAD), ct, len, ct + len, pt),
        0);
    assert_memory_equal(pt, RAIL_KEY, len);

    assert_int_equal(pg_unseal(PG_SLICE(PASS), PG_SLICE(RAIL_AAD), pg_slice_cstr(sealed), out,
                               sizeof(out), &outlen),
                     0);
    assert_int_equal(outlen, len);
    assert_string_equal(out, RAIL_KEY);

    /* The cost is part of the format: opened at another one, it fails. */
    assert_int_equal(unseal_with_cost(&cheap, PG_SLICE(PASS), PG_SLICE(RAIL_AAD),
                                      pg_slice_cstr(sealed), out, sizeof(out), &outlen),
                     PG_EAUTH);
}

static void round_trip_at_every_size(void **state)
{
    (void)state;
    static char pt[PG_SEAL_MAX_PLAINTEXT + 1];
    static char sealed[PG_SEAL_TEXT_BUF + 8], again[PG_SEAL_TEXT_BUF];
    static char out[PG_SEAL_MAX_PLAINTEXT + 1];
    const size_t sizes[] = {0, 1, 2, 3, 35, 107, PG_SEAL_MAX_PLAINTEXT};
    size_t outlen;

    for (size_t i = 0; i < sizeof(pt); i++)
        pt[i] = (char)(i % 251); /* NUL included: the crypto takes any bytes */
    for (size_t i = 0; i < PG_ARRAY_LEN(sizes); i++) {
        struct pg_slice p = pg_slice_of(pt, sizes[i]);
        int n =
            seal_with_cost(&cheap, PG_SLICE(PASS), PG_SLICE(HOOK_AAD), p, sealed, sizeof(sealed));
        assert_int_equal(n, PG_SEAL_TEXT_LEN(sizes[i]));
        assert_int_equal(pg_seal_check(pg_slice_cstr(sealed)), 0);
        memset(out, 'x', sizeof(out));
        assert_int_equal(unseal_with_cost(&cheap, PG_SLICE(PASS), PG_SLICE(HOOK_AAD),
                                          pg_slice_cstr(sealed), out, sizeof(out), &outlen),
                         0);
        assert_int_equal(outlen, sizes[i]);
        assert_memory_equal(out, pt, sizes[i]);
        assert_int_equal(out[sizes[i]], '\0');
    }
    /* Fresh salt and nonce every time. */
    assert_true(seal_with_cost(&cheap, PG_SLICE(PASS), PG_SLICE(HOOK_AAD), PG_SLICE("same"), sealed,
                               sizeof(sealed)) > 0);
    assert_true(seal_with_cost(&cheap, PG_SLICE(PASS), PG_SLICE(HOOK_AAD), PG_SLICE("same"), again,
                               sizeof(again)) > 0);
    assert_string_not_equal(sealed, again);

    /* Too long, or no room: refused before any work. */
    assert_int_equal(seal_with_cost(&cheap, PG_SLICE(PASS), PG_SLICE(HOOK_AAD),
                                    pg_slice_of(pt, PG_SEAL_MAX_PLAINTEXT + 1), sealed,
                                    sizeof(sealed)),
                     PG_ETOOBIG);
    assert_int_equal(seal_with_cost(&cheap, PG_SLICE(PASS), PG_SLICE(HOOK_AAD), PG_SLICE("abc"),
                                    sealed, PG_SEAL_TEXT_LEN(3)),
                     PG_ETOOBIG);
    assert_int_equal(seal_with_cost(&cheap, PG_SLICE(PASS), PG_SLICE(HOOK_AAD), PG_SLICE("abc"),
                                    sealed, PG_SEAL_TEXT_LEN(3) + 1),
                     (int)PG_SEAL_TEXT_LEN(3));
    assert_int_equal(unseal_with_cost(&cheap, PG_SLICE(PASS), PG_SLICE(HOOK_AAD),
                                      pg_slice_cstr(sealed), out, 3, &outlen),
                     PG_ETOOBIG);
    assert_int_equal(unseal_with_cost(&cheap, PG_SLICE(PASS), PG_SLICE(HOOK_AAD),
                                      pg_slice_cstr(sealed), out, 4, &outlen),
                     0);
    assert_string_equal(out, "abc");
}

/* ---- every way a value fails to open ------------------------------------- */

/* Opens at the cheap cost; asserts out kept nothing of `secret`. */
static int open_cheap(const char *pass, const char *aad, const char *sealed, const char *secret)
{
    char out[PG_SEAL_MAX_PLAINTEXT + 1];
    size_t outlen = 0;
    memset(out, 'x', sizeof(out));
    int rc = unseal_with_cost(&cheap, pg_slice_cstr(pass), pg_slice_cstr(aad),
                              pg_slice_cstr(sealed), out, sizeof(out), &outlen);
    if (rc != 0)
        assert_null(memmem(out, sizeof(out), secret, strlen(secret)));
    return rc;
}

static void wrong_passphrase_fails_auth(void **state)
{
    (void)state;
    char sealed[PG_SEAL_TEXT_BUF];
    assert_true(seal_with_cost(&cheap, PG_SLICE(PASS), PG_SLICE(RAIL_AAD), PG_SLICE(RAIL_KEY),
                               sealed, sizeof(sealed)) > 0);
    assert_int_equal(open_cheap(PASS, RAIL_AAD, sealed, RAIL_KEY), 0);
    assert_int_equal(open_cheap("correct horse battery stapler", RAIL_AAD, sealed, RAIL_KEY),
                     PG_EAUTH);
    assert_int_equal(open_cheap("Correct horse battery staple", RAIL_AAD, sealed, RAIL_KEY),
                     PG_EAUTH);
    assert_int_equal(open_cheap("", RAIL_AAD, sealed, RAIL_KEY), PG_EAUTH);
}

static void tampering_anywhere_fails_auth(void **state)
{
    (void)state;
    char sealed[PG_SEAL_TEXT_BUF], bent[PG_SEAL_TEXT_BUF];
    uint8_t raw[PG_SEAL_OVERHEAD + 64];
    const size_t len = sizeof(RAIL_KEY) - 1;
    const struct {
        const char *what;
        size_t at;
    } spots[] = {
        {"salt", 0},
        {"salt end", PG_SEAL_SALT_LEN - 1},
        {"nonce", PG_SEAL_SALT_LEN},
        {"nonce end", PG_SEAL_SALT_LEN + PG_SEAL_NONCE_LEN - 1},
        {"ciphertext", PG_SEAL_SALT_LEN + PG_SEAL_NONCE_LEN},
        {"ciphertext end", PG_SEAL_SALT_LEN + PG_SEAL_NONCE_LEN + len - 1},
        {"tag", PG_SEAL_SALT_LEN + PG_SEAL_NONCE_LEN + len},
        {"tag end", PG_SEAL_OVERHEAD + len - 1},
    };

    assert_true(seal_with_cost(&cheap, PG_SLICE(PASS), PG_SLICE(RAIL_AAD), PG_SLICE(RAIL_KEY),
                               sealed, sizeof(sealed)) > 0);
    size_t n = decode(sealed, raw, sizeof(raw));
    assert_int_equal(n, PG_SEAL_OVERHEAD + len);
    for (size_t i = 0; i < PG_ARRAY_LEN(spots); i++) {
        for (uint8_t bit = 1; bit; bit = (uint8_t)(bit << 1)) {
            raw[spots[i].at] ^= bit;
            encode(raw, n, bent, sizeof(bent));
            if (open_cheap(PASS, RAIL_AAD, bent, RAIL_KEY) != PG_EAUTH)
                fail_msg("a flipped bit in the %s opened", spots[i].what);
            raw[spots[i].at] ^= bit;
        }
    }
    /* A byte cut off the end, or one added: the tag moves, still PG_EAUTH. */
    encode(raw, n - 1, bent, sizeof(bent));
    assert_int_equal(open_cheap(PASS, RAIL_AAD, bent, RAIL_KEY), PG_EAUTH);
    raw[n] = 0;
    encode(raw, n + 1, bent, sizeof(bent));
    assert_int_equal(open_cheap(PASS, RAIL_AAD, bent, RAIL_KEY), PG_EAUTH);
    encode(raw, n, bent, sizeof(bent));
    assert_int_equal(open_cheap(PASS, RAIL_AAD, bent, RAIL_KEY), 0);
}

static void a_value_moved_to_another_key_fails_auth(void **state)
{
    (void)state;
    char sealed[PG_SEAL_TEXT_BUF];
    assert_true(seal_with_cost(&cheap, PG_SLICE(PASS), PG_SLICE(HOOK_AAD), PG_SLICE(HOOK_KEY),
                               sealed, sizeof(sealed)) > 0);
    const char *elsewhere[] = {"webhooks[1].secret",  "rails.stripe.secret", "webhooks[0].secre",
                               "webhooks[0].secret ", "WEBHOOKS[0].SECRET",  ""};
    for (size_t i = 0; i < PG_ARRAY_LEN(elsewhere); i++)
        assert_int_equal(open_cheap(PASS, elsewhere[i], sealed, HOOK_KEY), PG_EAUTH);
    assert_int_equal(open_cheap(PASS, HOOK_AAD, sealed, HOOK_KEY), 0);
}

static void malformed_values_fail_to_parse(void **state)
{
    (void)state;
    char sealed[PG_SEAL_TEXT_BUF], bad[PG_SEAL_TEXT_BUF + 16];
    uint8_t raw[PG_SEAL_OVERHEAD + 64];
    assert_true(seal_with_cost(&cheap, PG_SLICE(PASS), PG_SLICE(RAIL_AAD), PG_SLICE(RAIL_KEY),
                               sealed, sizeof(sealed)) > 0);
    decode(sealed, raw, sizeof(raw));
    const char *b64 = sealed + strlen(PG_SEAL_PREFIX);

    const char *parse[] = {"",
                           "sealed:v1:",
                           "sealed:v1",
                           "sealed:v2:AAAA",
                           "env:STRIPE_KEY",
                           "SEALED:V1:AAAA",
                           "sealed:v1:AAAA"};
    for (size_t i = 0; i < PG_ARRAY_LEN(parse); i++) {
        assert_int_equal(open_cheap(PASS, RAIL_AAD, parse[i], RAIL_KEY), PG_EPARSE);
        assert_int_equal(pg_seal_check(pg_slice_cstr(parse[i])), PG_EPARSE);
    }
    /* One byte short of the bare overhead (salt, nonce, tag). */
    encode(raw, PG_SEAL_OVERHEAD - 1, bad, sizeof(bad));
    assert_int_equal(open_cheap(PASS, RAIL_AAD, bad, RAIL_KEY), PG_EPARSE);
    /* Characters outside base64url, padding, a dangling character. */
    const char *edits[] = {"+", "/", "=", " ", "\n", "."};
    for (size_t i = 0; i < PG_ARRAY_LEN(edits); i++) {
        snprintf(bad, sizeof(bad), "%s", sealed);
        bad[strlen(PG_SEAL_PREFIX) + 5] = edits[i][0];
        assert_int_equal(open_cheap(PASS, RAIL_AAD, bad, RAIL_KEY), PG_EPARSE);
    }
    snprintf(bad, sizeof(bad), "%s==", sealed);
    assert_int_equal(open_cheap(PASS, RAIL_AAD, bad, RAIL_KEY), PG_EPARSE);
    size_t k = (5 - strlen(b64) % 4) % 4; /* appended 'A's leave a length of 1 mod 4 */
    snprintf(bad, sizeof(bad), "%s%.*s", sealed, (int)(k ? k : 4), "AAAA");
    assert_int_equal(open_cheap(PASS, RAIL_AAD, bad, RAIL_KEY), PG_EPARSE);
    /* A sealed value copied with a line break or spaces around it. */
    snprintf(bad, sizeof(bad), "%s\n", sealed);
    assert_int_equal(open_cheap(PASS, RAIL_AAD, bad, RAIL_KEY), PG_EPARSE);
    snprintf(bad, sizeof(bad), " %s", sealed);
    assert_int_equal(open_cheap(PASS, RAIL_AAD, bad, RAIL_KEY), PG_EPARSE);

    /* Longer than any value payguard makes. */
    static char huge[PG_SEAL_TEXT_BUF + 8];
    memcpy(huge, PG_SEAL_PREFIX, strlen(PG_SEAL_PREFIX));
    memset(huge + strlen(PG_SEAL_PREFIX), 'A', sizeof(huge) - strlen(PG_SEAL_PREFIX) - 1);
    huge[sizeof(huge) - 1] = '\0';
    assert_int_equal(open_cheap(PASS, RAIL_AAD, huge, RAIL_KEY), PG_ETOOBIG);
    assert_int_equal(pg_seal_check(pg_slice_cstr(huge)), PG_ETOOBIG);
    assert_int_equal(pg_seal_check(pg_slice_cstr(sealed)), 0);
}

/* ---- the config loader --------------------------------------------------- */

static void write_file(const char *name, const char *text)
{
    FILE *f = fopen(name, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
    assert_int_equal(fclose(f), 0);
}

/* A config whose stripe rail (line 4) and first webhook (line 8) hold the
 * given secrets, after an optional top line. */
static const char *config_text(const char *top, const char *rail, const char *hook)
{
    static char buf[4 * PG_SEAL_TEXT_BUF];
    int n = snprintf(buf, sizeof(buf),
                     "%s\n"
                     "rails:\n"
                     "  stripe:\n"
                     "    secret: %s\n"
                     "    upstream: https://api.stripe.com\n"
                     "webhooks:\n"
                     "  - url: https://hooks.acme.test/payguard\n"
                     "    secret: %s\n"
                     "    events: [payment.denied]\n",
                     top, rail, hook);
    assert_true(n > 0 && (size_t)n < sizeof(buf));
    return buf;
}

static int load(const char *yaml, bool resolve, struct pg_config **cfg,
                struct pg_config_errors *errs)
{
    write_file("payguard.yaml", yaml);
    *cfg = NULL;
    return pg_config_load("payguard.yaml", resolve, cfg, errs);
}

/* The load fails with exactly these messages, none of which shows a secret,
 * the passphrase or the sealed text. */
static void expect_errors(const char *yaml, const char *const *want, size_t n)
{
    struct pg_config *cfg;
    struct pg_config_errors errs;
    assert_int_equal(load(yaml, true, &cfg, &errs), PG_ECONFIG);
    assert_null(cfg);
    bool same = errs.count == n;
    for (size_t i = 0; same && i < n; i++)
        same = strcmp(errs.msgs[i], want[i]) == 0;
    for (size_t i = 0; !same && i < errs.count; i++)
        fprintf(stderr, "    got: %s\n", errs.msgs[i]);
    assert_int_equal(errs.count, n);
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(errs.msgs[i], want[i]);
        assert_null(strstr(errs.msgs[i], RAIL_KEY));
        assert_null(strstr(errs.msgs[i], HOOK_KEY));
        assert_null(strstr(errs.msgs[i], PASS));
        assert_null(strstr(errs.msgs[i], "sealed:v1:"));
    }
    pg_config_errors_free(&errs);
}

#define EXPECT_ERRORS(yaml, ...)                                                                   \
    do {                                                                                           \
        static const char *const want_[] = {__VA_ARGS__};                                          \
        expect_errors((yaml), want_, PG_ARRAY_LEN(want_));                                         \
    } while (0)

static void config_opens_sealed_secrets(void **state)
{
    (void)state;
    struct pg_config *cfg;
    struct pg_config_errors errs;
    assert_int_equal(setenv("PAYGUARD_MASTER_KEY", PASS, 1), 0);
    int rc = load(config_text("", sealed_rail, sealed_hook), true, &cfg, &errs);
    for (size_t i = 0; i < errs.count; i++)
        fprintf(stderr, "    got: %s\n", errs.msgs[i]);
    assert_int_equal(rc, 0);
    assert_string_equal(cfg->rails[0].secret_ref, sealed_rail);
    assert_string_equal(cfg->rails[0].secret, RAIL_KEY);
    assert_string_equal(cfg->webhooks[0].secret_ref, sealed_hook);
    assert_string_equal(cfg->webhooks[0].secret, HOOK_KEY);
    pg_config_free(cfg);

    /* Without resolving, nothing is opened and no passphrase is needed. */
    assert_int_equal(unsetenv("PAYGUARD_MASTER_KEY"), 0);
    assert_int_equal(load(config_text("", sealed_rail, sealed_hook), false, &cfg, &errs), 0);
    assert_string_equal(cfg->rails[0].secret_ref, sealed_rail);
    assert_null(cfg->rails[0].secret);
    assert_null(cfg->webhooks[0].secret);
    pg_config_free(cfg);
}

static void config_names_a_missing_master_key(void **state)
{
    (void)state;
    assert_int_equal(setenv("PG_TEST_HOOK_KEY", HOOK_KEY, 1), 0);
    assert_int_equal(unsetenv("PAYGUARD_MASTER_KEY"), 0);
    EXPECT_ERRORS(config_text("", sealed_rail, "env:PG_TEST_HOOK_KEY"),
                  "payguard.yaml:4:13: rails.stripe.secret is sealed but PAYGUARD_MASTER_KEY "
                  "is not set");
    assert_int_equal(setenv("PAYGUARD_MASTER_KEY", "", 1), 0);
    EXPECT_ERRORS(config_text("", sealed_rail, sealed_hook),
                  "payguard.yaml:4:13: rails.stripe.secret is sealed but PAYGUARD_MASTER_KEY "
                  "is empty",
                  "payguard.yaml:8:13: webhooks[0].secret is sealed but PAYGUARD_MASTER_KEY "
                  "is empty");
    /* master_key_env names the variable, wherever it sits in the file. */
    assert_int_equal(setenv("PAYGUARD_MASTER_KEY", PASS, 1), 0);
    assert_int_equal(unsetenv("PG_TEST_MASTER"), 0);
    EXPECT_ERRORS(
        config_text("master_key_env: PG_TEST_MASTER", sealed_rail, "env:PG_TEST_HOOK_KEY"),
        "payguard.yaml:4:13: rails.stripe.secret is sealed but PG_TEST_MASTER is not "
        "set");
    char yaml[4 * PG_SEAL_TEXT_BUF];
    int len = snprintf(yaml, sizeof(yaml), "%smaster_key_env: PG_TEST_MASTER\n",
                       config_text("", sealed_rail, "env:PG_TEST_HOOK_KEY"));
    assert_true(len > 0 && (size_t)len < sizeof(yaml));
    struct pg_config *cfg;
    struct pg_config_errors errs;
    assert_int_equal(setenv("PG_TEST_MASTER", PASS, 1), 0);
    assert_int_equal(unsetenv("PAYGUARD_MASTER_KEY"), 0);
    assert_int_equal(load(yaml, true, &cfg, &errs), 0);
    assert_string_equal(cfg->rails[0].secret, RAIL_KEY);
    pg_config_free(cfg);
    assert_int_equal(unsetenv("PG_TEST_MASTER"), 0);
}

static void config_refuses_a_wrong_key_or_a_moved_value(void **state)
{
    (void)state;
    assert_int_equal(setenv("PG_TEST_HOOK_KEY", HOOK_KEY, 1), 0);
    assert_int_equal(setenv("PAYGUARD_MASTER_KEY", "correct horse battery stapler", 1), 0);
    EXPECT_ERRORS(config_text("", sealed_rail, "env:PG_TEST_HOOK_KEY"),
                  "payguard.yaml:4:13: rails.stripe.secret: cannot unseal (wrong master key, "
                  "or the value was altered or moved from another key)");
    /* The right key, but the rail's value pasted under the webhook. */
    assert_int_equal(setenv("PAYGUARD_MASTER_KEY", PASS, 1), 0);
    EXPECT_ERRORS(config_text("", "env:PG_TEST_HOOK_KEY", sealed_rail),
                  "payguard.yaml:8:13: webhooks[0].secret: cannot unseal (wrong master key, or "
                  "the value was altered or moved from another key)");
    /* A value cut short by a bad paste is caught before any key is derived. */
    char cut[PG_SEAL_TEXT_BUF];
    snprintf(cut, sizeof(cut), "%.*s", (int)strlen(PG_SEAL_PREFIX) + 40, sealed_rail);
    EXPECT_ERRORS(config_text("", cut, "env:PG_TEST_HOOK_KEY"),
                  "payguard.yaml:4:13: rails.stripe.secret: sealed value is truncated or "
                  "damaged; seal the secret again with `payguard seal`");
}

static void config_refuses_a_secret_that_is_not_one_line(void **state)
{
    (void)state;
    char sealed[PG_SEAL_TEXT_BUF];
    assert_true(pg_seal(PG_SLICE(PASS), PG_SLICE(RAIL_AAD), PG_SLICE("sk_test_a\r\nX-Evil: 1"),
                        sealed, sizeof(sealed)) > 0);
    assert_int_equal(setenv("PG_TEST_HOOK_KEY", HOOK_KEY, 1), 0);
    assert_int_equal(setenv("PAYGUARD_MASTER_KEY", PASS, 1), 0);
    EXPECT_ERRORS(config_text("", sealed, "env:PG_TEST_HOOK_KEY"),
                  "payguard.yaml:4:13: rails.stripe.secret: the sealed secret is not one line "
                  "of text (it holds a control character)");
}

/* ---- payguard seal -------------------------------------------------------- */

/* What the last run_seal wrote on stderr. */
static char cli_err[2048];

static void read_into(const char *name, char *buf, size_t cap)
{
    FILE *f = fopen(name, "r");
    assert_non_null(f);
    size_t n = fread(buf, 1, cap - 1, f);
    buf[n] = '\0';
    fclose(f);
    unlink(name);
}

/* Runs pg_cli_seal with `input` on stdin, stdout into `out` and stderr into
 * cli_err; returns its exit status. */
static int run_seal(const char *input, char *out, size_t outcap, const char *const *args,
                    size_t nargs)
{
    char *argv[8];
    assert_true(nargs < PG_ARRAY_LEN(argv));
    for (size_t i = 0; i < nargs; i++)
        argv[i] = (char *)args[i];
    argv[nargs] = NULL;

    write_file("stdin.txt", input);
    int saved_in = dup(STDIN_FILENO), saved_out = dup(STDOUT_FILENO);
    int saved_err = dup(STDERR_FILENO);
    int in = open("stdin.txt", O_RDONLY);
    int o = open("stdout.txt", O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int e = open("stderr.txt", O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(saved_in >= 0 && saved_out >= 0 && saved_err >= 0 && in >= 0 && o >= 0 && e >= 0);
    fflush(stdout);
    fflush(stderr);
    assert_true(dup2(in, STDIN_FILENO) >= 0 && dup2(o, STDOUT_FILENO) >= 0 &&
                dup2(e, STDERR_FILENO) >= 0);
    close(in);
    close(o);
    close(e);
    int rc = pg_cli_seal((int)nargs, argv);
    fflush(stdout);
    fflush(stderr);
    assert_true(dup2(saved_in, STDIN_FILENO) >= 0 && dup2(saved_out, STDOUT_FILENO) >= 0 &&
                dup2(saved_err, STDERR_FILENO) >= 0);
    close(saved_in);
    close(saved_out);
    close(saved_err);
    unlink("stdin.txt");
    read_into("stdout.txt", out, outcap);
    read_into("stderr.txt", cli_err, sizeof(cli_err));
    return rc;
}

#define RUN_SEAL(input, out, ...)                                                                  \
    run_seal((input), (out), sizeof(out), (const char *const[]){__VA_ARGS__},                      \
             PG_ARRAY_LEN(((const char *const[]){__VA_ARGS__})))

static void cli_seals_what_the_loader_opens(void **state)
{
    (void)state;
    char out[PG_SEAL_TEXT_BUF + 8], yaml[4 * PG_SEAL_TEXT_BUF];
    struct pg_config *cfg;
    struct pg_config_errors errs;

    /* -c: the passphrase variable comes from the file. */
    assert_int_equal(setenv("PG_TEST_HOOK_KEY", HOOK_KEY, 1), 0);
    assert_int_equal(setenv("PG_TEST_RAIL_KEY", "sk_test_placeholder", 1), 0);
    assert_int_equal(setenv("PG_TEST_MASTER", PASS, 1), 0);
    assert_int_equal(unsetenv("PAYGUARD_MASTER_KEY"), 0);
    write_file("cli.yaml", config_text("master_key_env: PG_TEST_MASTER", "env:PG_TEST_RAIL_KEY",
                                       "env:PG_TEST_HOOK_KEY"));
    assert_int_equal(RUN_SEAL(RAIL_KEY "\n", out, "-c", "cli.yaml", "--path", RAIL_AAD), 0);
    size_t n = strlen(out);
    assert_true(n > 1 && out[n - 1] == '\n');
    out[n - 1] = '\0';
    assert_int_equal(n - 1, PG_SEAL_TEXT_LEN(sizeof(RAIL_KEY) - 1));

    snprintf(yaml, sizeof(yaml), "%s",
             config_text("master_key_env: PG_TEST_MASTER", out, "env:PG_TEST_HOOK_KEY"));
    assert_int_equal(load(yaml, true, &cfg, &errs), 0);
    assert_string_equal(cfg->rails[0].secret, RAIL_KEY); /* the newline was dropped */
    pg_config_free(cfg);
    assert_int_equal(unsetenv("PG_TEST_MASTER"), 0);
    unlink("cli.yaml");
}

static void cli_refuses_bad_usage_and_input(void **state)
{
    (void)state;
    char out[64];
    assert_int_equal(setenv("PAYGUARD_MASTER_KEY", PASS, 1), 0);
    write_file("cli.yaml", config_text("", "env:PG_TEST_RAIL_KEY", "env:PG_TEST_HOOK_KEY"));

    assert_int_equal(RUN_SEAL("x", out, "--help"), 0);
    assert_non_null(strstr(out, "Usage: payguard seal"));
    assert_int_equal(RUN_SEAL("x", out, "--bogus"), 2);
    assert_string_equal(cli_err, "payguard: unknown option: --bogus (see payguard help)\n");
    assert_int_equal(RUN_SEAL("x", out, "--path"), 2);
    assert_int_equal(RUN_SEAL("x", out, "--master-env", "X"), 2); /* no --path */
    assert_int_equal(RUN_SEAL("x", out, "--path", "rails.stripe.key"), 2);
    assert_int_equal(RUN_SEAL("x", out, "--path", "rails..secret"), 2);
    assert_int_equal(RUN_SEAL("x", out, "--path", "webhooks[01].secret"), 2);
    assert_int_equal(RUN_SEAL("x", out, "--path", "webhooks[].secret"), 2);
    assert_int_equal(RUN_SEAL("x", out, "--path", RAIL_AAD, "--master-env", "1BAD"), 2);
    assert_int_equal(RUN_SEAL("x", out, "--path", RAIL_AAD, "-c", "cli.yaml", "--master-env", "X"),
                     2);
    /* -c: the path must be one of the file's secrets. */
    assert_int_equal(RUN_SEAL("x", out, "--path", "rails.adyen.secret", "-c", "cli.yaml"), 2);
    assert_string_equal(cli_err, "payguard: cli.yaml has no secret at rails.adyen.secret; its "
                                 "secrets are: rails.stripe.secret webhooks[0].secret\n");
    assert_int_equal(RUN_SEAL("x", out, "--path", "webhooks[1].secret", "-c", "cli.yaml"), 2);
    assert_int_equal(RUN_SEAL("x", out, "--path", RAIL_AAD, "-c", "no-such.yaml"), 2);
    /* The passphrase: set, and not short. */
    assert_int_equal(RUN_SEAL("x", out, "--path", RAIL_AAD, "--master-env", "PG_TEST_UNSET"), 2);
    assert_string_equal(cli_err, "payguard: PG_TEST_UNSET is not set; export the master "
                                 "passphrase in it first\n");
    assert_int_equal(setenv("PG_TEST_SHORT", "elevenchars", 1), 0);
    assert_int_equal(RUN_SEAL("x", out, "--path", RAIL_AAD, "--master-env", "PG_TEST_SHORT"), 2);
    assert_non_null(strstr(cli_err, "PG_TEST_SHORT is shorter than 12 characters"));
    assert_null(strstr(cli_err, "elevenchars"));
    /* The secret: not empty, one line, not too long. */
    assert_int_equal(RUN_SEAL("", out, "--path", RAIL_AAD), 2);
    assert_int_equal(RUN_SEAL("\n", out, "--path", RAIL_AAD), 2);
    assert_int_equal(RUN_SEAL("sk_test_a\nsk_test_b\n", out, "--path", RAIL_AAD), 2);
    assert_null(strstr(cli_err, "sk_test_a"));
    assert_int_equal(RUN_SEAL("sk_test_a\n\n", out, "--path", RAIL_AAD), 2);
    static char big[PG_SEAL_MAX_PLAINTEXT + 2];
    memset(big, 'k', sizeof(big) - 1);
    assert_int_equal(RUN_SEAL(big, out, "--path", RAIL_AAD), 2);
    assert_string_equal(out, ""); /* nothing sealed, nothing printed */
    assert_string_equal(cli_err, "payguard: the secret on stdin is longer than 4096 bytes\n");
    unlink("cli.yaml");
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(scrypt_matches_rfc7914),
        cmocka_unit_test(gcm_matches_the_spec_vectors),
        cmocka_unit_test(base64url_decodes_strictly),
        cmocka_unit_test(seal_uses_the_v1_format_and_cost),
        cmocka_unit_test(round_trip_at_every_size),
        cmocka_unit_test(wrong_passphrase_fails_auth),
        cmocka_unit_test(tampering_anywhere_fails_auth),
        cmocka_unit_test(a_value_moved_to_another_key_fails_auth),
        cmocka_unit_test(malformed_values_fail_to_parse),
        cmocka_unit_test(config_opens_sealed_secrets),
        cmocka_unit_test(config_names_a_missing_master_key),
        cmocka_unit_test(config_refuses_a_wrong_key_or_a_moved_value),
        cmocka_unit_test(config_refuses_a_secret_that_is_not_one_line),
        cmocka_unit_test(cli_seals_what_the_loader_opens),
        cmocka_unit_test(cli_refuses_bad_usage_and_input),
    };
    char tmpl[] = "/tmp/payguard-test-seal.XXXXXX";

    (void)argc;
    (void)argv;
    if (!mkdtemp(tmpl) || !realpath(tmpl, work_dir) || chdir(work_dir) != 0) {
        perror("test_seal: temp dir");
        return 1;
    }
    if (pg_seal(PG_SLICE(PASS), PG_SLICE(RAIL_AAD), PG_SLICE(RAIL_KEY), sealed_rail,
                sizeof(sealed_rail)) < 0 ||
        pg_seal(PG_SLICE(PASS), PG_SLICE(HOOK_AAD), PG_SLICE(HOOK_KEY), sealed_hook,
                sizeof(sealed_hook)) < 0) {
        fprintf(stderr, "test_seal: cannot seal the fixtures\n");
        return 1;
    }

    int failed = cmocka_run_group_tests(tests, NULL, NULL);

    unlink("payguard.yaml");
    if (chdir("/") == 0)
        rmdir(work_dir);
    return failed;
}
