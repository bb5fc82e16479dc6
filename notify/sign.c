/* Standard Webhooks signatures: whsec_ secrets, HMAC-SHA256 over
 * "id.timestamp.body", base64 (standard alphabet) signatures, several at
 * once during a key rotation. OpenSSL does the HMAC and the base64. */
#include "common/pg.h"
#include "notify/notify.h"

#include <inttypes.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/core_names.h>
#include <stdio.h>

#define SECRET_PREFIX "whsec_"

static bool b64_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/';
}

int pg_webhook_secret_decode(const char *secret, uint8_t *key, size_t cap)
{
    size_t plen = sizeof(SECRET_PREFIX) - 1;
    if (!secret || strncmp(secret, SECRET_PREFIX, plen) != 0)
        return PG_EPARSE;
    const char *s = secret + plen;
    size_t full = strnlen(s, 256), n = full;
    /* Padding is optional on the way in; put it back for OpenSSL. */
    while (n > 0 && s[n - 1] == '=')
        n--;
    if (n == 0 || n % 4 == 1 || full - n > 2 || (full != n && full % 4 != 0))
        return PG_EPARSE;
    for (size_t i = 0; i < n; i++)
        if (!b64_char(s[i]))
            return PG_EPARSE;
    if (n > 4 * ((PG_WEBHOOK_KEY_MAX + 2) / 3))
        return PG_ERANGE;
    char text[4 * ((PG_WEBHOOK_KEY_MAX + 2) / 3) + 4];
    memcpy(text, s, n);
    size_t pad = (4 - n % 4) % 4;
    memset(text + n, '=', pad);
    size_t tn = n + pad;
    uint8_t raw[3 * sizeof(text) / 4 + 3];
    int got = EVP_DecodeBlock(raw, (const unsigned char *)text, (int)tn);
    int rc = PG_EPARSE;
    if (got >= 0) {
        size_t len = (size_t)got - pad; /* EVP_DecodeBlock counts padding as zero bytes */
        if (len < PG_WEBHOOK_KEY_MIN || len > PG_WEBHOOK_KEY_MAX || len > cap) {
            rc = PG_ERANGE;
        } else {
            memcpy(key, raw, len);
            rc = (int)len;
        }
    }
    OPENSSL_cleanse(raw, sizeof(raw));
    OPENSSL_cleanse(text, sizeof(text));
    return rc;
}

int pg_webhook_sign(const uint8_t *key, size_t keylen, const char *msg_id, int64_t timestamp,
                    struct pg_slice body, char *out, size_t cap)
{
    if (cap <= PG_WEBHOOK_SIG_LEN)
        return PG_ETOOBIG;
    char ts[24];
    int tn = snprintf(ts, sizeof(ts), "%" PRId64, timestamp);
    uint8_t mac[EVP_MAX_MD_SIZE];
    unsigned maclen = 0;
    int rc = PG_ECRYPTO;
    EVP_MAC *m = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *c = m ? EVP_MAC_CTX_new(m) : NULL;
    if (!c)
        goto out;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string("digest", (char *)"SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    size_t ml = 0;
    if (EVP_MAC_init(c, key, keylen, params) != 1 ||
        EVP_MAC_update(c, (const unsigned char *)msg_id, strlen(msg_id)) != 1 ||
        EVP_MAC_update(c, (const unsigned char *)".", 1) != 1 ||
        EVP_MAC_update(c, (const unsigned char *)ts, (size_t)tn) != 1 ||
        EVP_MAC_update(c, (const unsigned char *)".", 1) != 1 ||
        (body.len && EVP_MAC_update(c, (const unsigned char *)body.ptr, body.len) != 1) ||
        EVP_MAC_final(c, mac, &ml, sizeof(mac)) != 1 || ml != 32)
        goto out;
    maclen = (unsigned)ml;
    /* EVP_EncodeBlock writes the terminator after the prefix */
    memcpy(out, "v1,", 3); /* NOLINT(bugprone-not-null-terminated-result) */
    if (EVP_EncodeBlock((unsigned char *)out + 3, mac, (int)maclen) != 44)
        goto out;
    rc = 0;
out:
    EVP_MAC_CTX_free(c);
    EVP_MAC_free(m);
    OPENSSL_cleanse(mac, sizeof(mac));
    return rc;
}

int pg_webhook_signature_header(const char *const *secrets, size_t n, const char *msg_id,
                                int64_t timestamp, struct pg_slice body, char *out, size_t cap)
{
    if (n == 0 || n > PG_WEBHOOK_MAX_SECRETS)
        return PG_ERANGE;
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t key[PG_WEBHOOK_KEY_MAX];
        int kl = pg_webhook_secret_decode(secrets[i], key, sizeof(key));
        if (kl < 0)
            return kl;
        char sig[PG_WEBHOOK_SIG_LEN + 1];
        int rc = pg_webhook_sign(key, (size_t)kl, msg_id, timestamp, body, sig, sizeof(sig));
        OPENSSL_cleanse(key, sizeof(key));
        if (rc != 0)
            return rc;
        if (len + (i ? 1 : 0) + PG_WEBHOOK_SIG_LEN + 1 > cap)
            return PG_ETOOBIG;
        if (i)
            out[len++] = ' ';
        memcpy(out + len, sig, PG_WEBHOOK_SIG_LEN);
        len += PG_WEBHOOK_SIG_LEN;
        out[len] = '\0';
    }
    return (int)len;
}
