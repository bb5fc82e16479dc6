/* Second factors for humans on the admin API: HOTP/TOTP codes (RFC 4226,
 * RFC 6238) over HMAC-SHA-1, the base32 text authenticator apps take
 * secrets in (RFC 4648), the otpauth:// URI they scan, and single-use
 * recovery codes. Pure: time is an argument, nothing is stored here. */
#include "common/pg.h"
#include "auth/human.h"
#include "crypto/crypto.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

static const char b32_upper[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
static const char b32_lower[] = "abcdefghijklmnopqrstuvwxyz234567";

/* ---- HOTP / TOTP ----------------------------------------------------------- */

int pg_hotp(const uint8_t *secret, size_t n, uint64_t counter, unsigned digits, uint32_t *out)
{
    uint8_t msg[8], mac[EVP_MAX_MD_SIZE];
    unsigned maclen = 0;
    uint32_t mod = 1;

    if (!secret || n == 0 || n > PG_TOTP_SECRET_MAX || digits < 6 || digits > 8)
        return PG_EPARSE;
    for (int i = 7; i >= 0; i--) {
        msg[i] = (uint8_t)(counter & 0xff);
        counter >>= 8;
    }
    if (!HMAC(EVP_sha1(), secret, (int)n, msg, sizeof msg, mac, &maclen) || maclen != 20)
        return PG_ECRYPTO;
    /* Dynamic truncation, RFC 4226 section 5.3. */
    unsigned off = mac[19] & 0x0f;
    uint32_t bin = ((uint32_t)(mac[off] & 0x7f) << 24) | ((uint32_t)mac[off + 1] << 16) |
                   ((uint32_t)mac[off + 2] << 8) | (uint32_t)mac[off + 3];
    for (unsigned i = 0; i < digits; i++)
        mod *= 10;
    *out = bin % mod;
    OPENSSL_cleanse(mac, sizeof mac);
    return 0;
}

int pg_totp_verify(const uint8_t *secret, size_t n, struct pg_slice code, int64_t now,
                   uint64_t last_step, uint64_t *step)
{
    uint32_t want = 0;
    int found = 0;

    if (code.len != PG_TOTP_DIGITS || !code.ptr)
        return PG_EPARSE;
    for (size_t i = 0; i < code.len; i++) {
        if (code.ptr[i] < '0' || code.ptr[i] > '9')
            return PG_EPARSE;
        want = want * 10 + (uint32_t)(code.ptr[i] - '0');
    }
    if (now < 0)
        return 0;
    uint64_t t = (uint64_t)now / PG_TOTP_STEP_S;
    /* All three steps are computed and compared whatever matches, so the
     * time taken says nothing about which one did. */
    for (int d = -1; d <= 1; d++) {
        uint32_t got;
        if (d < 0 && t == 0)
            continue;
        uint64_t s = d < 0 ? t - 1 : t + (uint64_t)d;
        int rc = pg_hotp(secret, n, s, PG_TOTP_DIGITS, &got);
        if (rc != 0)
            return rc;
        int eq = pg_ct_equal(&got, &want, sizeof got);
        if (eq && s > last_step && !found) {
            found = 1;
            *step = s;
        }
    }
    return found;
}

/* ---- base32 ---------------------------------------------------------------- */

int pg_base32_encode(const uint8_t *in, size_t n, char *out, size_t cap)
{
    size_t need = (n * 8 + 4) / 5;
    uint32_t acc = 0;
    unsigned bits = 0;
    size_t o = 0;

    if (n > SIZE_MAX / 8 - 4 || cap < need + 1)
        return PG_ETOOBIG;
    for (size_t i = 0; i < n; i++) {
        acc = (acc << 8) | in[i];
        bits += 8;
        while (bits >= 5) {
            bits -= 5;
            out[o++] = b32_upper[(acc >> bits) & 31];
        }
    }
    if (bits > 0)
        out[o++] = b32_upper[(acc << (5 - bits)) & 31];
    out[o] = '\0';
    return 0;
}

static int b32_value(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a';
    if (c >= '2' && c <= '7')
        return c - '2' + 26;
    return -1;
}

/* Lenient about what people type (case, spaces, padding), strict about what
 * it means: padding only at the end, no impossible length, no stray bits
 * after the last byte, so one secret has one reading. */
int pg_base32_decode(struct pg_slice in, uint8_t *out, size_t cap)
{
    uint32_t acc = 0;
    unsigned bits = 0;
    size_t o = 0, chars = 0, pad = 0;

    if (!in.ptr && in.len)
        return PG_EPARSE;
    for (size_t i = 0; i < in.len; i++) {
        char c = in.ptr[i];
        if (c == ' ')
            continue;
        if (c == '=') {
            pad++;
            continue;
        }
        int v = b32_value(c);
        if (v < 0 || pad)
            return PG_EPARSE;
        chars++;
        acc = (acc << 5) | (uint32_t)v;
        bits += 5;
        if (bits >= 8) {
            bits -= 8;
            if (o == cap)
                return PG_ETOOBIG;
            out[o++] = (uint8_t)(acc >> bits);
        }
        acc &= (1u << bits) - 1;
    }
    /* A final group of 1, 3 or 6 characters holds no whole byte. */
    size_t rem = chars % 8;
    if (rem == 1 || rem == 3 || rem == 6 || pad > 6 || (pad && (chars + pad) % 8 != 0))
        return PG_EPARSE;
    if (acc != 0)
        return PG_EPARSE;
    if (o > INT32_MAX)
        return PG_ETOOBIG;
    return (int)o;
}

/* ---- otpauth:// ------------------------------------------------------------- */

struct out_buf {
    char *p;
    size_t cap, len;
    bool over;
};

static void put(struct out_buf *b, const char *s, size_t n)
{
    if (b->over || n >= b->cap - b->len) {
        b->over = true;
        return;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void put_str(struct out_buf *b, const char *s)
{
    put(b, s, strlen(s));
}

/* RFC 3986 unreserved characters stay, every other byte becomes %XX. */
static void put_pct(struct out_buf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~') {
            put(b, s, 1);
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            put(b, e, 3);
        }
    }
}

int pg_totp_uri(const char *issuer, const char *account, const uint8_t *secret, size_t n,
                char *out, size_t cap)
{
    char b32[(PG_TOTP_SECRET_MAX * 8 + 4) / 5 + 1];
    struct out_buf b = {out, cap, 0, false};

    if (cap == 0)
        return PG_ETOOBIG;
    out[0] = '\0';
    if (n > PG_TOTP_SECRET_MAX)
        return PG_ETOOBIG;
    if (pg_base32_encode(secret, n, b32, sizeof b32) != 0)
        return PG_ETOOBIG;
    put_str(&b, "otpauth://totp/");
    put_pct(&b, issuer);
    put_str(&b, ":");
    put_pct(&b, account);
    put_str(&b, "?secret=");
    put_str(&b, b32);
    put_str(&b, "&issuer=");
    put_pct(&b, issuer);
    put_str(&b, "&algorithm=SHA1&digits=6&period=30");
    OPENSSL_cleanse(b32, sizeof b32);
    if (b.over) {
        OPENSSL_cleanse(out, cap);
        out[0] = '\0';
        return PG_ETOOBIG;
    }
    return 0;
}

/* ---- recovery codes ---------------------------------------------------------- */

#define RECOVERY_CHARS 20

int pg_recovery_code_new(char out[PG_RECOVERY_CODE_BUF])
{
    uint8_t r[RECOVERY_CHARS];
    size_t o = 0;

    int rc = pg_random(r, sizeof r);
    if (rc != 0)
        return rc;
    /* The low five bits of a uniform byte are uniform: 100 bits in all. */
    for (size_t i = 0; i < RECOVERY_CHARS; i++) {
        if (i && i % 5 == 0)
            out[o++] = '-';
        out[o++] = b32_lower[r[i] & 31];
    }
    out[o] = '\0';
    OPENSSL_cleanse(r, sizeof r);
    return 0;
}

int pg_recovery_code_hash(struct pg_slice code, char hex[65])
{
    char norm[RECOVERY_CHARS];
    uint8_t md[PG_SHA256_LEN];
    size_t n = 0;
    int rc = PG_EPARSE;

    if (!code.ptr && code.len)
        return PG_EPARSE;
    for (size_t i = 0; i < code.len; i++) {
        char c = code.ptr[i];
        if (c == '-' || c == ' ')
            continue;
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (b32_value(c) < 0 || n == RECOVERY_CHARS)
            goto out;
        norm[n++] = c;
    }
    if (n != RECOVERY_CHARS)
        goto out;
    rc = pg_sha256(norm, n, md);
    if (rc == 0)
        rc = pg_hex_encode(md, sizeof md, hex, 65) < 0 ? PG_ECRYPTO : 0;
out:
    OPENSSL_cleanse(norm, sizeof norm);
    return rc;
}
