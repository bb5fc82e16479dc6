/* Agent tokens: generation, bcrypt hashing and verification through
 * libxcrypt, and parsing of the Authorization header. */
#include "common/pg.h"
#include "auth/auth.h"

#include <crypt.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

int pg_auth_token_new(char *out, size_t cap)
{
    uint8_t raw[PG_TOKEN_RANDOM_BYTES];
    size_t plen = sizeof(PG_TOKEN_PREFIX) - 1;
    if (cap < plen + 1)
        return PG_ETOOBIG;
    int rc = pg_random(raw, sizeof(raw));
    if (rc == 0) {
        memcpy(out, PG_TOKEN_PREFIX, plen);
        rc = pg_base62_encode(raw, sizeof(raw), out + plen, cap - plen);
        rc = rc < 0 ? rc : 0;
    }
    OPENSSL_cleanse(raw, sizeof(raw));
    return rc;
}

static int token_char(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           c == '_' || c == '-';
}

int pg_auth_token_check_format(struct pg_slice tok)
{
    if (tok.len < 20 || tok.len > 200 || !pg_slice_has_prefix(tok, PG_SLICE(PG_TOKEN_PREFIX)))
        return PG_EPARSE;
    for (size_t i = 0; i < tok.len; i++)
        if (!token_char(tok.ptr[i]))
            return PG_EPARSE;
    return 0;
}

int pg_auth_bcrypt_hash(struct pg_slice secret, unsigned cost, char *out, size_t cap)
{
    char setting[CRYPT_GENSALT_OUTPUT_SIZE];
    char phrase[CRYPT_MAX_PASSPHRASE_SIZE];
    struct crypt_data *cd;
    int rc = PG_ECRYPTO;

    /* bcrypt reads at most 72 bytes; longer input would be silently cut. */
    if (secret.len > 72 || secret.len == 0)
        return PG_ERANGE;
    if (!crypt_gensalt_rn("$2b$", cost, NULL, 0, setting, sizeof(setting)))
        return PG_ECRYPTO;
    cd = calloc(1, sizeof(*cd));
    if (!cd)
        return PG_ENOMEM;
    memcpy(phrase, secret.ptr, secret.len);
    phrase[secret.len] = '\0';
    const char *h = crypt_rn(phrase, setting, cd, (int)sizeof(*cd));
    if (h && h[0] == '$') {
        size_t n = strlen(h);
        if (n + 1 <= cap) {
            memcpy(out, h, n + 1);
            rc = 0;
        } else {
            rc = PG_ETOOBIG;
        }
    }
    OPENSSL_cleanse(phrase, sizeof(phrase));
    OPENSSL_cleanse(cd, sizeof(*cd));
    free(cd);
    return rc;
}

int pg_auth_bcrypt_verify(struct pg_slice secret, const char *hash)
{
    char phrase[CRYPT_MAX_PASSPHRASE_SIZE];
    struct crypt_data *cd;
    int rc = PG_ECRYPTO;
    size_t hlen = strlen(hash);

    if (secret.len > 72 || secret.len == 0)
        return 0;
    cd = calloc(1, sizeof(*cd));
    if (!cd)
        return PG_ENOMEM;
    memcpy(phrase, secret.ptr, secret.len);
    phrase[secret.len] = '\0';
    const char *h = crypt_rn(phrase, hash, cd, (int)sizeof(*cd));
    if (h && h[0] == '$')
        rc = strlen(h) == hlen && pg_ct_equal(h, hash, hlen);
    OPENSSL_cleanse(phrase, sizeof(phrase));
    OPENSSL_cleanse(cd, sizeof(*cd));
    free(cd);
    return rc;
}

int pg_auth_credential(struct pg_slice value, char *scratch, size_t cap, struct pg_slice *out)
{
    static const struct pg_slice bearer = PG_SLICE_INIT("Bearer "), basic = PG_SLICE_INIT("Basic ");
    struct pg_slice scheme = { value.ptr, value.len };

    if (value.len > bearer.len &&
        pg_slice_eq_nocase(pg_slice_of(value.ptr, bearer.len), bearer)) {
        *out = pg_slice_of(value.ptr + bearer.len, value.len - bearer.len);
        return out->len ? 0 : PG_EPARSE;
    }
    scheme.len = basic.len;
    if (value.len > basic.len && pg_slice_eq_nocase(scheme, basic)) {
        const char *b64 = value.ptr + basic.len;
        size_t n = value.len - basic.len;
        if (n % 4 != 0 || n / 4 * 3 + 1 > cap || n > INT32_MAX)
            return n % 4 ? PG_EPARSE : PG_ETOOBIG;
        int dec = EVP_DecodeBlock((unsigned char *)scratch, (const unsigned char *)b64, (int)n);
        if (dec < 0)
            return PG_EPARSE;
        size_t dlen = (size_t)dec;
        /* EVP_DecodeBlock counts padding as zero bytes; drop them. */
        if (n >= 1 && b64[n - 1] == '=')
            dlen--;
        if (n >= 2 && b64[n - 2] == '=')
            dlen--;
        const char *colon = memchr(scratch, ':', dlen);
        size_t ulen = colon ? (size_t)(colon - scratch) : dlen;
        *out = pg_slice_of(scratch, ulen);
        return ulen ? 0 : PG_EPARSE;
    }
    return PG_EPARSE;
}

const struct pg_agent *pg_auth_find_agent(const struct pg_config *cfg, struct pg_slice tok)
{
    for (size_t i = 0; i < cfg->nagents; i++) {
        if (cfg->agents[i].token_hash && pg_auth_bcrypt_verify(tok, cfg->agents[i].token_hash) == 1)
            return &cfg->agents[i];
    }
    return NULL;
}
