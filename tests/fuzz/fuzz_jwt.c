/* Access tokens on the admin API (HS256 JWTs). Raw tokens test the framing
 * and base64url; tokens this target signs itself over fuzzed header and
 * claims JSON reach the claim checks behind the signature. An accepted token
 * must carry a signature over exactly its first two parts, the issuer and
 * audience asked for, a known role and a lifetime within the rules; signing
 * the claims again must give a token that verifies to the same claims, and
 * any change to a signed part must be refused.
 * Input: one byte picks raw, signed or sign-then-verify, eight bytes of
 * clock, then the parts separated by NUL. */
#include "common/pg.h"
#include "auth/human.h"
#include "crypto/crypto.h"
#include "tests/fuzz/helpers.h"

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>

#define ISS "payguard"
#define AUD "payguard-admin"

static const uint8_t key[PG_JWT_KEY_LEN] = "fuzz-key-0123456789abcdef-012345";

static size_t b64url(const void *in, size_t n, char *out, size_t cap)
{
    int len = pg_base64url_encode(in, n, out, cap);
    FUZZ_CHECK(len >= 0, "base64url of %zu bytes into %zu", n, cap);
    return (size_t)len;
}

static void hs256(const char *data, size_t n, uint8_t mac[32])
{
    unsigned ml = 0;
    FUZZ_CHECK(HMAC(EVP_sha256(), key, sizeof key, (const unsigned char *)data, n, mac, &ml) &&
                   ml == 32,
               "HMAC");
}

static bool claims_equal(const struct pg_jwt_claims *a, const struct pg_jwt_claims *b)
{
    return strcmp(a->iss, b->iss) == 0 && strcmp(a->aud, b->aud) == 0 &&
           strcmp(a->sub, b->sub) == 0 && strcmp(a->jti, b->jti) == 0 &&
           strcmp(a->org, b->org) == 0 && strcmp(a->role, b->role) == 0 && a->iat == b->iat &&
           a->exp == b->exp && a->nbf == b->nbf;
}

static const char *str_of(json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

static bool role_known(const char *r)
{
    return !strcmp(r, "owner") || !strcmp(r, "admin") || !strcmp(r, "approver") ||
           !strcmp(r, "viewer");
}

/* What every accepted token must satisfy, read independently of jwt.c. */
static void check_accepted(struct pg_slice tok, const struct pg_jwt_claims *c, int64_t now)
{
    const char *d1 = memchr(tok.ptr, '.', tok.len);
    const char *d2 = d1 ? memchr(d1 + 1, '.', tok.len - (size_t)(d1 + 1 - tok.ptr)) : NULL;
    FUZZ_CHECK(d1 && d2 && !memchr(d2 + 1, '.', tok.len - (size_t)(d2 + 1 - tok.ptr)),
               "accepted a token that is not three parts");
    uint8_t mac[32];
    char sig[64];
    hs256(tok.ptr, (size_t)(d2 - tok.ptr), mac);
    size_t sl = b64url(mac, sizeof mac, sig, sizeof sig);
    size_t rest = tok.len - (size_t)(d2 + 1 - tok.ptr);
    FUZZ_CHECK(rest == sl && memcmp(sig, d2 + 1, sl) == 0, "accepted a wrong signature");
    FUZZ_CHECK(strcmp(c->iss, ISS) == 0 && strcmp(c->aud, AUD) == 0, "issuer or audience");
    FUZZ_CHECK(role_known(c->role) && c->sub[0] && c->jti[0] && c->org[0], "claims");
    FUZZ_CHECK(c->exp > c->iat && c->exp - c->iat <= PG_JWT_TTL_S, "lifetime %lld",
               (long long)(c->exp - c->iat));
    FUZZ_CHECK(now < c->exp + PG_JWT_LEEWAY_S && c->iat <= now + PG_JWT_LEEWAY_S &&
                   c->nbf <= now + PG_JWT_LEEWAY_S,
               "accepted outside its time");

    /* The header says exactly HS256; the claims are the payload's. */
    char buf[PG_JWT_MAX];
    int n = pg_base64url_decode(pg_slice_of(tok.ptr, (size_t)(d1 - tok.ptr)), buf, sizeof buf);
    json_t *h = n > 0 ? json_loadb(buf, (size_t)n, JSON_REJECT_DUPLICATES, NULL) : NULL;
    FUZZ_CHECK(h && strcmp(str_of(h, "alg"), "HS256") == 0 &&
                   !json_object_get(h, "crit"),
               "accepted a header that is not plain HS256");
    json_decref(h);
    n = pg_base64url_decode(pg_slice_of(d1 + 1, (size_t)(d2 - d1 - 1)), buf, sizeof buf);
    json_t *p = n > 0 ? json_loadb(buf, (size_t)n, JSON_REJECT_DUPLICATES, NULL) : NULL;
    FUZZ_CHECK(json_is_object(p), "accepted a payload that is not one JSON object");
    FUZZ_CHECK(strcmp(str_of(p, "sub"), c->sub) == 0 &&
                   json_integer_value(json_object_get(p, "exp")) == c->exp,
               "claims differ from the payload");
    json_decref(p);

    /* Signing the same claims gives a token that verifies to them. */
    char again[PG_JWT_MAX + 1];
    struct pg_jwt_claims back;
    FUZZ_CHECK(pg_jwt_sign(key, sizeof key, c, again, sizeof again) == 0, "re-signing failed");
    FUZZ_CHECK(pg_jwt_verify(key, sizeof key, pg_slice_cstr(again), now, ISS, AUD, &back, NULL) ==
                       0 &&
                   claims_equal(c, &back),
               "re-signed claims do not verify the same");
}

static void verify(struct pg_slice tok, int64_t now)
{
    struct pg_jwt_claims c;
    memset(&c, 0x5a, sizeof c);
    const char *why = NULL;
    int rc = pg_jwt_verify(key, sizeof key, tok, now, ISS, AUD, &c, &why);
    if (rc != 0) {
        FUZZ_CHECK(rc == PG_EAUTH && why && why[0], "refusal %d without a reason", rc);
        return;
    }
    check_accepted(tok, &c, now);

    /* Any changed byte in the signed parts breaks it. */
    char *copy = malloc(tok.len);
    memcpy(copy, tok.ptr, tok.len);
    size_t at = (size_t)(now & 0x7fffffff) % tok.len;
    copy[at] = copy[at] == 'A' ? 'B' : 'A';
    struct pg_jwt_claims other;
    FUZZ_CHECK(pg_jwt_verify(key, sizeof key, pg_slice_of(copy, tok.len), now, ISS, AUD, &other,
                             NULL) != 0,
               "a token with byte %zu changed still verifies", at);
    FUZZ_CHECK(pg_jwt_verify(key, sizeof key - 1, tok, now, ISS, AUD, &other, NULL) != 0,
               "verifies under another key");
    free(copy);
}

/* header.payload signed here, so the claim checks are reached. */
static void signed_parts(struct pg_slice hdr, struct pg_slice payload, int64_t now)
{
    static char tok[3 * PG_JWT_MAX];
    if (hdr.len > PG_JWT_MAX / 2 || payload.len > PG_JWT_MAX)
        return;
    size_t n = b64url(hdr.ptr, hdr.len, tok, sizeof tok);
    tok[n++] = '.';
    n += b64url(payload.ptr, payload.len, tok + n, sizeof tok - n);
    uint8_t mac[32];
    hs256(tok, n, mac);
    tok[n++] = '.';
    n += b64url(mac, sizeof mac, tok + n, sizeof tok - n);
    verify(pg_slice_of(tok, n), now);
}

static void copy_claim(char *dst, size_t cap, struct pg_slice s)
{
    size_t n = s.len < cap - 1 ? s.len : cap - 1;
    memcpy(dst, s.ptr, n);
    dst[n] = '\0';
}

/* Claims from the input, signed by pg_jwt_sign, must verify when they are
 * within the rules. */
static void sign_then_verify(struct fuzz_in *in, int64_t now)
{
    static const char *const roles[] = { "owner", "admin", "approver", "viewer", "root", "" };
    struct pg_jwt_claims c, back;
    memset(&c, 0, sizeof c);
    memcpy(c.iss, ISS, sizeof ISS);
    memcpy(c.aud, AUD, sizeof AUD);
    uint8_t sel = fuzz_u8(in);
    size_t role = (size_t)(sel & 7) % PG_ARRAY_LEN(roles);
    memcpy(c.role, roles[role], strlen(roles[role]) + 1);
    /* Times are in [0, 2^40] for the verifier; the signer is never asked
     * for more (it signs now + 15 min). */
    c.iat = now & ((INT64_C(1) << 39) - 1);
    c.exp = c.iat + (int64_t)(fuzz_u16(in) % 1000);
    c.nbf = (sel & 8) ? c.iat : 0;
    copy_claim(c.sub, sizeof c.sub, fuzz_until(in, 0));
    copy_claim(c.jti, sizeof c.jti, fuzz_until(in, 0));
    copy_claim(c.org, sizeof c.org, fuzz_rest(in));
    char tok[PG_JWT_MAX + 1];
    int rc = pg_jwt_sign(key, sizeof key, &c, tok, sizeof tok);
    if (rc != 0) {
        FUZZ_CHECK(rc == PG_ENOMEM || rc == PG_ETOOBIG, "sign: %d", rc);
        return;
    }
    bool valid = role < 4 && c.sub[0] && c.jti[0] && c.org[0] && c.exp > c.iat &&
                 c.exp - c.iat <= PG_JWT_TTL_S;
    const char *why = NULL;
    rc = pg_jwt_verify(key, sizeof key, pg_slice_cstr(tok), c.iat, ISS, AUD, &back, &why);
    FUZZ_CHECK((rc == 0) == valid, "claims %s but verify says %s", valid ? "valid" : "invalid",
               rc == 0 ? "ok" : why);
    if (rc == 0)
        FUZZ_CHECK(claims_equal(&c, &back), "claims changed on the way");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = { data, size };
    uint8_t mode = fuzz_u8(&in);
    /* Around the claims' times most of the time; anything now and then. */
    uint64_t raw = fuzz_u64(&in);
    int64_t now = (mode & 0x80) ? (int64_t)raw : (int64_t)(1795431600 + (raw % 4000) - 2000);
    switch (mode % 3) {
    case 0:
        verify(fuzz_rest(&in), now);
        break;
    case 1: {
        struct pg_slice hdr = fuzz_until(&in, 0);
        signed_parts(hdr, fuzz_rest(&in), now);
        break;
    }
    default:
        sign_then_verify(&in, now);
        break;
    }
    return 0;
}
