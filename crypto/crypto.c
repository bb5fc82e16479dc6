/* SHA-256, randomness, constant-time compare and text encodings over OpenSSL. */
#include "common/pg.h"
#include "crypto/crypto.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <pthread.h>

/* Fetched once: the implicit lookup inside EVP_sha256() costs as much as
 * hashing a small message. */
static EVP_MD *sha256_md;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

static void sha256_fetch(void)
{
    sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
}

static const EVP_MD *sha256(void)
{
    pthread_once(&sha256_once, sha256_fetch);
    return sha256_md ? sha256_md : EVP_sha256();
}

int pg_sha256(const void *data, size_t len, uint8_t out[PG_SHA256_LEN])
{
    unsigned int outlen = 0;
    if (EVP_Digest(data, len, out, &outlen, sha256(), NULL) != 1 ||
        outlen != PG_SHA256_LEN)
        return PG_ECRYPTO;
    return 0;
}

int pg_sha256_parts(const struct pg_slice *parts, size_t n, uint8_t out[PG_SHA256_LEN])
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned int outlen = 0;
    int ok = ctx && EVP_DigestInit_ex(ctx, sha256(), NULL) == 1;
    for (size_t i = 0; ok && i < n; i++)
        ok = parts[i].len == 0 || EVP_DigestUpdate(ctx, parts[i].ptr, parts[i].len) == 1;
    ok = ok && EVP_DigestFinal_ex(ctx, out, &outlen) == 1 && outlen == PG_SHA256_LEN;
    EVP_MD_CTX_free(ctx);
    return ok ? 0 : PG_ECRYPTO;
}

int pg_random(void *buf, size_t len)
{
    if (len > INT32_MAX || RAND_bytes(buf, (int)len) != 1)
        return PG_ECRYPTO;
    return 0;
}

int pg_ct_equal(const void *a, const void *b, size_t len)
{
    return CRYPTO_memcmp(a, b, len) == 0;
}

int pg_base64url_encode(const void *in, size_t len, char *out, size_t outcap)
{
    static const char abc[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const uint8_t *p = in;
    size_t need = (len / 3) * 4 + (len % 3 ? len % 3 + 1 : 0);
    if (need + 1 > outcap || need > INT32_MAX)
        return PG_ETOOBIG;
    size_t o = 0, i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        out[o++] = abc[v >> 18 & 63];
        out[o++] = abc[v >> 12 & 63];
        out[o++] = abc[v >> 6 & 63];
        out[o++] = abc[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)p[i] << 16;
        out[o++] = abc[v >> 18 & 63];
        out[o++] = abc[v >> 12 & 63];
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
        out[o++] = abc[v >> 18 & 63];
        out[o++] = abc[v >> 12 & 63];
        out[o++] = abc[v >> 6 & 63];
    }
    out[o] = '\0';
    return (int)o;
}

/* Value of a base64url character, or -1. */
static int b64url_value(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

int pg_base64url_decode(struct pg_slice in, void *out, size_t outcap)
{
    uint8_t *o = out;
    uint32_t acc = 0;
    unsigned bits = 0;
    size_t n = 0;

    /* One leftover character carries 6 bits: not even a byte. */
    if (in.len % 4 == 1)
        return PG_EPARSE;
    size_t need = in.len / 4 * 3 + (in.len % 4 ? in.len % 4 - 1 : 0);
    if (need > outcap || need > INT32_MAX)
        return PG_ETOOBIG;
    for (size_t i = 0; i < in.len; i++) {
        int v = b64url_value(in.ptr[i]);
        if (v < 0)
            return PG_EPARSE;
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            o[n++] = (uint8_t)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    /* Bits past the last byte must be zero: one text per byte string. */
    if (acc != 0)
        return PG_EPARSE;
    return (int)n;
}

/* Big-number base conversion; inputs are short (tokens), so O(n^2) is fine. */
int pg_base62_encode(const void *in, size_t len, char *out, size_t outcap)
{
    static const char abc[] =
        "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    uint8_t num[128];
    if (len > sizeof(num))
        return PG_ETOOBIG;
    /* Digits needed for len bytes: len*8/log2(62) rounded up (log2 62 ≈ 5.954). */
    size_t ndigits = (len * 8 * 1000 + 5953) / 5954;
    if (ndigits + 1 > outcap)
        return PG_ETOOBIG;
    memcpy(num, in, len);
    for (size_t d = ndigits; d-- > 0;) {
        unsigned rem = 0;
        for (size_t i = 0; i < len; i++) {
            unsigned cur = rem << 8 | num[i];
            num[i] = (uint8_t)(cur / 62);
            rem = cur % 62;
        }
        out[d] = abc[rem];
    }
    out[ndigits] = '\0';
    OPENSSL_cleanse(num, sizeof(num));
    return (int)ndigits;
}

int pg_hex_encode(const void *in, size_t len, char *out, size_t outcap)
{
    static const char abc[] = "0123456789abcdef";
    const uint8_t *p = in;
    if (len * 2 + 1 > outcap || len > INT32_MAX / 2)
        return PG_ETOOBIG;
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = abc[p[i] >> 4];
        out[2 * i + 1] = abc[p[i] & 15];
    }
    out[len * 2] = '\0';
    return (int)(len * 2);
}
