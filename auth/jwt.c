/* Access tokens for humans on the admin API: JWT (RFC 7519) with the one
 * algorithm payguard signs with, HS256, pinned. Verification is strict on
 * shape first (three parts of strict base64url, a JSON object header naming
 * HS256), checks the MAC in constant time before reading any claim, then
 * checks the claims against the caller's clock. */
#include "common/pg.h"
#include "auth/human.h"
#include "crypto/crypto.h"

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

/* base64url of {"alg":"HS256","typ":"JWT"}: the only header payguard writes. */
static const char jwt_header[] = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9";

#define MAC_LEN 32
#define MAC_B64 43 /* base64url of 32 bytes, no padding */
/* Claims larger than any token may hold never reach the JSON parser. */
#define PART_MAX PG_JWT_MAX
/* Times past this (year 36812) are not times a token can mean; keeping them
 * small keeps every sum below free of overflow. */
#define TIME_MAX (INT64_C(1) << 40)

static int hs256(const uint8_t *key, size_t keylen, const char *data, size_t len,
                 uint8_t mac[MAC_LEN])
{
    unsigned n = 0;
    if (!key || keylen == 0 || keylen > INT32_MAX)
        return PG_ECRYPTO;
    if (!HMAC(EVP_sha256(), key, (int)keylen, (const unsigned char *)data, len, mac, &n) ||
        n != MAC_LEN)
        return PG_ECRYPTO;
    return 0;
}

/* ---- signing ----------------------------------------------------------------- */

static int set_str(json_t *o, const char *k, const char *v, size_t cap)
{
    return json_object_set_new(o, k, json_stringn(v, strnlen(v, cap)));
}

int pg_jwt_sign(const uint8_t *key, size_t keylen, const struct pg_jwt_claims *c, char *out,
                size_t cap)
{
    uint8_t mac[MAC_LEN];
    char *payload = NULL;
    int rc = PG_ECRYPTO;
    json_t *o = json_object();

    if (!o)
        return PG_ENOMEM;
    if (set_str(o, "iss", c->iss, sizeof c->iss) || set_str(o, "aud", c->aud, sizeof c->aud) ||
        set_str(o, "sub", c->sub, sizeof c->sub) || set_str(o, "jti", c->jti, sizeof c->jti) ||
        set_str(o, "org", c->org, sizeof c->org) || set_str(o, "role", c->role, sizeof c->role) ||
        json_object_set_new(o, "iat", json_integer(c->iat)) ||
        json_object_set_new(o, "exp", json_integer(c->exp)) ||
        (c->nbf && json_object_set_new(o, "nbf", json_integer(c->nbf)))) {
        rc = PG_ENOMEM;
        goto out;
    }
    payload = json_dumps(o, JSON_COMPACT);
    if (!payload) {
        rc = PG_ENOMEM;
        goto out;
    }
    size_t hlen = sizeof jwt_header - 1, plen = strlen(payload);
    size_t limit = cap < PG_JWT_MAX + 1 ? cap : PG_JWT_MAX + 1;
    if (hlen + 1 >= limit) {
        rc = PG_ETOOBIG;
        goto out;
    }
    memcpy(out, jwt_header, hlen);
    out[hlen] = '.';
    int n = pg_base64url_encode(payload, plen, out + hlen + 1, limit - hlen - 1);
    if (n < 0) {
        rc = PG_ETOOBIG;
        goto out;
    }
    size_t signed_len = hlen + 1 + (size_t)n;
    if (signed_len + 1 + MAC_B64 + 1 > limit) {
        rc = PG_ETOOBIG;
        goto out;
    }
    rc = hs256(key, keylen, out, signed_len, mac);
    if (rc != 0)
        goto out;
    out[signed_len] = '.';
    rc = pg_base64url_encode(mac, sizeof mac, out + signed_len + 1, limit - signed_len - 1) < 0
             ? PG_ETOOBIG
             : 0;
out:
    if (rc != 0 && cap > 0)
        out[0] = '\0';
    OPENSSL_cleanse(mac, sizeof mac);
    free(payload);
    json_decref(o);
    return rc;
}

/* ---- verification ------------------------------------------------------------ */

/* Parses a decoded part as a JSON object; NULL for anything else (not
 * JSON, a duplicate key, not an object). */
static json_t *json_object_of(const char *buf, size_t len)
{
    json_t *j = json_loadb(buf, len, JSON_REJECT_DUPLICATES, NULL);
    if (j && !json_is_object(j)) {
        json_decref(j);
        j = NULL;
    }
    return j;
}

/* A string claim copied into dst (with its NUL); false when absent, not a
 * string, empty, holding a NUL or too long for dst. */
static bool claim_str(json_t *o, const char *k, char *dst, size_t cap)
{
    json_t *v = json_object_get(o, k);
    if (!json_is_string(v))
        return false;
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    if (n == 0 || n >= cap || strlen(s) != n)
        return false;
    memcpy(dst, s, n + 1);
    return true;
}

/* A NumericDate claim as a whole number of seconds in [0, TIME_MAX];
 * 0 when absent and `optional`, false when malformed or required. */
static bool claim_time(json_t *o, const char *k, bool optional, int64_t *out)
{
    json_t *v = json_object_get(o, k);
    if (!v) {
        *out = 0;
        return optional;
    }
    if (!json_is_integer(v))
        return false;
    json_int_t t = json_integer_value(v);
    if (t < 0 || t > TIME_MAX)
        return false;
    *out = (int64_t)t;
    return true;
}

static bool role_known(const char *r)
{
    return strcmp(r, "owner") == 0 || strcmp(r, "admin") == 0 || strcmp(r, "approver") == 0 ||
           strcmp(r, "viewer") == 0;
}

int pg_jwt_verify(const uint8_t *key, size_t keylen, struct pg_slice token, int64_t now,
                  const char *iss, const char *aud, struct pg_jwt_claims *out,
                  const char **why)
{
    struct pg_jwt_claims c;
    uint8_t mac[MAC_LEN], got[MAC_LEN];
    json_t *hdr = NULL, *body = NULL;
    const char *fail = "malformed";
    const char *d1, *d2;
    char hbuf[PART_MAX], pbuf[PART_MAX];
    int n, pn;

    memset(&c, 0, sizeof c);
    if (!token.ptr || token.len == 0 || token.len > PG_JWT_MAX)
        goto out;
    d1 = memchr(token.ptr, '.', token.len);
    if (!d1)
        goto out;
    d2 = memchr(d1 + 1, '.', token.len - (size_t)(d1 + 1 - token.ptr));
    if (!d2 || memchr(d2 + 1, '.', token.len - (size_t)(d2 + 1 - token.ptr)))
        goto out;
    const char *end = token.ptr + token.len;
    size_t hlen = (size_t)(d1 - token.ptr), plen = (size_t)(d2 - d1 - 1);
    size_t slen = (size_t)(end - d2 - 1);
    if (hlen == 0 || plen == 0 || slen != MAC_B64)
        goto out;

    /* The header decides nothing but must say exactly HS256. */
    /* Every part must be strict base64url before anything is judged. */
    n = pg_base64url_decode(pg_slice_of(token.ptr, hlen), hbuf, sizeof hbuf);
    pn = pg_base64url_decode(pg_slice_of(d1 + 1, plen), pbuf, sizeof pbuf);
    if (n <= 0 || pn <= 0 ||
        pg_base64url_decode(pg_slice_of(d2 + 1, slen), got, sizeof got) != MAC_LEN)
        goto out;
    hdr = json_object_of(hbuf, (size_t)n);
    if (!hdr)
        goto out;
    json_t *alg = json_object_get(hdr, "alg"), *typ = json_object_get(hdr, "typ");
    if (!json_is_string(alg) || strcmp(json_string_value(alg), "HS256") != 0 ||
        json_string_length(alg) != 5) {
        fail = "alg";
        goto out;
    }
    if (typ && (!json_is_string(typ) || strcmp(json_string_value(typ), "JWT") != 0 ||
                json_string_length(typ) != 3))
        goto out;
    /* Extensions payguard does not implement must not be ignored (RFC 7515). */
    if (json_object_get(hdr, "crit"))
        goto out;

    if (hs256(key, keylen, token.ptr, hlen + 1 + plen, mac) != 0 ||
        CRYPTO_memcmp(mac, got, MAC_LEN) != 0) {
        fail = "signature";
        goto out;
    }

    body = json_object_of(pbuf, (size_t)pn);
    if (!body)
        goto out;
    fail = "claims";
    if (!claim_str(body, "iss", c.iss, sizeof c.iss) ||
        !claim_str(body, "aud", c.aud, sizeof c.aud) ||
        !claim_str(body, "sub", c.sub, sizeof c.sub) ||
        !claim_str(body, "jti", c.jti, sizeof c.jti) ||
        !claim_str(body, "org", c.org, sizeof c.org) ||
        !claim_str(body, "role", c.role, sizeof c.role) || !role_known(c.role) ||
        !claim_time(body, "iat", false, &c.iat) || !claim_time(body, "exp", false, &c.exp) ||
        !claim_time(body, "nbf", true, &c.nbf))
        goto out;
    if (!iss || strcmp(c.iss, iss) != 0) {
        fail = "issuer";
        goto out;
    }
    if (!aud || strcmp(c.aud, aud) != 0) {
        fail = "audience";
        goto out;
    }
    /* Every time is in [0, 2^40], so these sums cannot overflow for any
     * `now` a caller can mean; a wild `now` only makes every token fail. */
    if (now > TIME_MAX || now < 0 || now >= c.exp + PG_JWT_LEEWAY_S) {
        fail = "expired";
        goto out;
    }
    if (c.iat > now + PG_JWT_LEEWAY_S || (c.nbf && c.nbf > now + PG_JWT_LEEWAY_S)) {
        fail = "not yet valid";
        goto out;
    }
    if (c.exp <= c.iat || c.exp - c.iat > PG_JWT_TTL_S) {
        fail = "lifetime";
        goto out;
    }
    *out = c;
    fail = NULL;
out:
    OPENSSL_cleanse(mac, sizeof mac);
    json_decref(hdr);
    json_decref(body);
    if (fail) {
        if (why)
            *why = fail;
        return PG_EAUTH;
    }
    return 0;
}
