/* Sealed secrets: "sealed:v1:" values in payguard.yaml, AES-256-GCM under a
 * key scrypt derives from the master passphrase, bound to their config path.
 * `payguard seal` makes them; the config loader opens them at start-up. */
#include "common/pg.h"
#include "crypto/crypto.h"
#include "crypto/seal_int.h"

#include <limits.h>
#include <pthread.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>

const struct seal_cost seal_cost_v1 = {UINT64_C(1) << 17, 8, 1};

/* Fetched once, like SHA-256 in crypto.c: an implicit fetch per call would
 * search the provider tables every time. */
static EVP_KDF *scrypt_kdf;
static EVP_CIPHER *aes_gcm;
static pthread_once_t fetch_once = PTHREAD_ONCE_INIT;

static void fetch(void)
{
    scrypt_kdf = EVP_KDF_fetch(NULL, "SCRYPT", NULL);
    aes_gcm = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
}

/* What OpenSSL's scrypt allocates for a cost (B and V: 128*r*p + 128*r*(N+2)
 * bytes), plus room to spare. Its own default ceiling is not part of any
 * contract, so the ceiling is set to what the cost needs. */
static int scrypt_maxmem(const struct seal_cost *c, uint64_t *out)
{
    uint64_t block = 128 * (uint64_t)c->r, v, b;
    if (__builtin_add_overflow(c->n, 2, &v) || __builtin_mul_overflow(v, block, &v) ||
        __builtin_mul_overflow(block, (uint64_t)c->p, &b) || __builtin_add_overflow(v, b, out) ||
        __builtin_add_overflow(*out, UINT64_C(1) << 20, out))
        return PG_ECRYPTO;
    return 0;
}

int seal_kdf(struct pg_slice pass, const uint8_t *salt, size_t saltlen,
             const struct seal_cost *cost, uint8_t *out, size_t outlen)
{
    uint64_t n = cost->n, maxmem;
    uint32_t r = cost->r, p = cost->p;
    OSSL_PARAM params[7];
    int rc = PG_ECRYPTO;

    if (scrypt_maxmem(cost, &maxmem) != 0)
        return PG_ECRYPTO;
    pthread_once(&fetch_once, fetch);
    if (!scrypt_kdf)
        return PG_ECRYPTO;
    EVP_KDF_CTX *ctx = EVP_KDF_CTX_new(scrypt_kdf);
    if (!ctx)
        return PG_ECRYPTO;
    /* OpenSSL copies both octet strings (and wipes its copies when the
     * context is freed); the casts only satisfy its non-const signature. */
    params[0] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_PASSWORD,
                                                  (void *)(pass.len ? pass.ptr : ""), pass.len);
    params[1] = OSSL_PARAM_construct_octet_string(
        OSSL_KDF_PARAM_SALT, (void *)(saltlen ? salt : (const uint8_t *)""), saltlen);
    params[2] = OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_N, &n);
    params[3] = OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_R, &r);
    params[4] = OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_P, &p);
    params[5] = OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_MAXMEM, &maxmem);
    params[6] = OSSL_PARAM_construct_end();
    if (EVP_KDF_derive(ctx, out, outlen, params) == 1)
        rc = 0;
    else
        OPENSSL_cleanse(out, outlen);
    EVP_KDF_CTX_free(ctx);
    return rc;
}

int seal_gcm_encrypt(const uint8_t key[SEAL_KEY_LEN], const uint8_t nonce[12], struct pg_slice aad,
                     const uint8_t *pt, size_t len, uint8_t *ct, uint8_t tag[16])
{
    uint8_t fin[16];
    int outl = 0, ok;

    if (len > INT_MAX || aad.len > INT_MAX)
        return PG_ECRYPTO;
    pthread_once(&fetch_once, fetch);
    if (!aes_gcm)
        return PG_ECRYPTO;
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    if (!ctx)
        return PG_ECRYPTO;
    /* AES-256-GCM's default IV length is the 96 bits used here. */
    ok = EVP_EncryptInit_ex2(ctx, aes_gcm, key, nonce, NULL) == 1 &&
         (aad.len == 0 ||
          EVP_EncryptUpdate(ctx, NULL, &outl, (const unsigned char *)aad.ptr, (int)aad.len) == 1);
    ok = ok && (len == 0 ||
                (EVP_EncryptUpdate(ctx, ct, &outl, pt, (int)len) == 1 && (size_t)outl == len));
    ok = ok && EVP_EncryptFinal_ex(ctx, fin, &outl) == 1 && outl == 0 &&
         EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, 16, tag) == 1;
    EVP_CIPHER_CTX_free(ctx); /* wipes the key schedule */
    return ok ? 0 : PG_ECRYPTO;
}

int seal_gcm_decrypt(const uint8_t key[SEAL_KEY_LEN], const uint8_t nonce[12], struct pg_slice aad,
                     const uint8_t *ct, size_t len, const uint8_t tag[16], uint8_t *pt)
{
    uint8_t fin[16];
    int outl = 0, rc = PG_ECRYPTO;

    if (len > INT_MAX || aad.len > INT_MAX)
        return PG_ECRYPTO;
    pthread_once(&fetch_once, fetch);
    if (!aes_gcm)
        return PG_ECRYPTO;
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    if (!ctx)
        return PG_ECRYPTO;
    int ok = EVP_DecryptInit_ex2(ctx, aes_gcm, key, nonce, NULL) == 1 &&
             (aad.len == 0 || EVP_DecryptUpdate(ctx, NULL, &outl, (const unsigned char *)aad.ptr,
                                                (int)aad.len) == 1);
    ok = ok && (len == 0 ||
                (EVP_DecryptUpdate(ctx, pt, &outl, ct, (int)len) == 1 && (size_t)outl == len));
    ok = ok && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, 16, (void *)tag) == 1;
    /* Every setup step passed: a failing final can only be the tag. */
    if (ok)
        rc = EVP_DecryptFinal_ex(ctx, fin, &outl) == 1 ? 0 : PG_EAUTH;
    EVP_CIPHER_CTX_free(ctx);
    /* GCM hands out plaintext before the tag is checked: none may survive. */
    if (rc != 0 && len > 0)
        OPENSSL_cleanse(pt, len);
    return rc;
}

/* "sealed:v1:<base64url>" into raw (room for PG_SEAL_OVERHEAD +
 * PG_SEAL_MAX_PLAINTEXT bytes): the decoded length, PG_EPARSE or PG_ETOOBIG. */
static int decode_sealed(struct pg_slice sealed, uint8_t *raw, size_t rawcap)
{
    const struct pg_slice pfx = PG_SLICE(PG_SEAL_PREFIX);

    if (!pg_slice_has_prefix(sealed, pfx))
        return PG_EPARSE;
    if (sealed.len > PG_SEAL_TEXT_LEN(PG_SEAL_MAX_PLAINTEXT))
        return PG_ETOOBIG;
    int n =
        pg_base64url_decode(pg_slice_of(sealed.ptr + pfx.len, sealed.len - pfx.len), raw, rawcap);
    if (n < 0)
        return n == PG_ETOOBIG ? PG_ETOOBIG : PG_EPARSE;
    if ((size_t)n < PG_SEAL_OVERHEAD)
        return PG_EPARSE;
    return n;
}

int seal_with_cost(const struct seal_cost *cost, struct pg_slice passphrase, struct pg_slice aad,
                   struct pg_slice plaintext, char *out, size_t outcap)
{
    /* salt | nonce | ciphertext | tag, in the order they are encoded */
    uint8_t raw[PG_SEAL_OVERHEAD + PG_SEAL_MAX_PLAINTEXT];
    uint8_t key[SEAL_KEY_LEN];
    uint8_t *salt = raw, *nonce = raw + PG_SEAL_SALT_LEN;
    uint8_t *ct = nonce + PG_SEAL_NONCE_LEN;
    const size_t pfx = sizeof(PG_SEAL_PREFIX) - 1;
    int rc;

    if (plaintext.len > PG_SEAL_MAX_PLAINTEXT || outcap < PG_SEAL_TEXT_LEN(plaintext.len) + 1)
        return PG_ETOOBIG;
    rc = pg_random(raw, PG_SEAL_SALT_LEN + PG_SEAL_NONCE_LEN);
    if (rc != 0)
        return rc;
    rc = seal_kdf(passphrase, salt, PG_SEAL_SALT_LEN, cost, key, sizeof(key));
    if (rc != 0)
        goto fail_kdf;
    rc = seal_gcm_encrypt(key, nonce, aad, (const uint8_t *)plaintext.ptr, plaintext.len, ct,
                          ct + plaintext.len);
    if (rc != 0)
        goto fail_encrypt;
    OPENSSL_cleanse(key, sizeof(key));
    memcpy(out, PG_SEAL_PREFIX, pfx);
    rc = pg_base64url_encode(raw, PG_SEAL_OVERHEAD + plaintext.len, out + pfx, outcap - pfx);
    return rc < 0 ? rc : (int)pfx + rc;

fail_encrypt:
    OPENSSL_cleanse(ct, plaintext.len);
fail_kdf:
    OPENSSL_cleanse(key, sizeof(key));
    return rc;
}

int unseal_with_cost(const struct seal_cost *cost, struct pg_slice passphrase, struct pg_slice aad,
                     struct pg_slice sealed, char *out, size_t outcap, size_t *outlen)
{
    uint8_t raw[PG_SEAL_OVERHEAD + PG_SEAL_MAX_PLAINTEXT];
    uint8_t key[SEAL_KEY_LEN];
    const uint8_t *salt = raw, *nonce = raw + PG_SEAL_SALT_LEN;
    const uint8_t *ct = nonce + PG_SEAL_NONCE_LEN;

    int n = decode_sealed(sealed, raw, sizeof(raw));
    if (n < 0)
        return n;
    size_t ctlen = (size_t)n - PG_SEAL_OVERHEAD;
    if (outcap < ctlen + 1)
        return PG_ETOOBIG;
    int rc = seal_kdf(passphrase, salt, PG_SEAL_SALT_LEN, cost, key, sizeof(key));
    if (rc == 0)
        rc = seal_gcm_decrypt(key, nonce, aad, ct, ctlen, ct + ctlen, (uint8_t *)out);
    OPENSSL_cleanse(key, sizeof(key));
    if (rc != 0)
        return rc;
    out[ctlen] = '\0';
    *outlen = ctlen;
    return 0;
}

int pg_seal(struct pg_slice passphrase, struct pg_slice aad, struct pg_slice plaintext, char *out,
            size_t outcap)
{
    return seal_with_cost(&seal_cost_v1, passphrase, aad, plaintext, out, outcap);
}

int pg_unseal(struct pg_slice passphrase, struct pg_slice aad, struct pg_slice sealed, char *out,
              size_t outcap, size_t *outlen)
{
    return unseal_with_cost(&seal_cost_v1, passphrase, aad, sealed, out, outcap, outlen);
}

int pg_seal_check(struct pg_slice sealed)
{
    uint8_t raw[PG_SEAL_OVERHEAD + PG_SEAL_MAX_PLAINTEXT];
    int n = decode_sealed(sealed, raw, sizeof(raw));
    return n < 0 ? n : 0;
}
