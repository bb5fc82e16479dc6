/* Standard Webhooks signing (notify/sign.c). payguard signs and never
 * verifies, so the outside bytes here are the whsec_ secrets (from the
 * environment or a sealed config value) and the message: this target
 * decodes secrets against a reference base64 reader, then checks the
 * webhook-signature header the way a receiver does (split on spaces, "v1,"
 * prefix, base64 HMAC-SHA256 of "id.timestamp.body") with OpenSSL's HMAC.
 * Input: one byte of flags, eight of timestamp, then up to four secrets, the
 * message id and the body, separated by NUL. */
#include "common/pg.h"
#include "notify/notify.h"
#include "tests/fuzz/helpers.h"

#include <inttypes.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>

static int b64v(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    return c == '+' ? 62 : c == '/' ? 63 : -1;
}

/* Standard base64 with optional '=' padding (none, or enough to reach a
 * multiple of four): the byte count, or -1. */
static int ref_decode(const char *s, size_t len, uint8_t *out, size_t cap)
{
    size_t n = len;
    while (n && s[n - 1] == '=')
        n--;
    if (n == 0 || n % 4 == 1 || len - n > 2 || (len != n && len % 4 != 0))
        return -1;
    uint32_t acc = 0;
    unsigned bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64v(s[i]);
        if (v < 0)
            return -1;
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o == cap)
                return -2;
            out[o++] = (uint8_t)(acc >> bits);
        }
    }
    return (int)o;
}

/* The secret as a C string, as the config hands it over. */
static char *cstr(struct pg_slice s)
{
    char *p = malloc(s.len + 1);
    memcpy(p, s.ptr, s.len);
    p[s.len] = '\0';
    return p;
}

static int check_secret(const char *secret, uint8_t key[PG_WEBHOOK_KEY_MAX])
{
    int kl = pg_webhook_secret_decode(secret, key, PG_WEBHOOK_KEY_MAX);
    uint8_t ref[256];
    bool prefixed = strncmp(secret, "whsec_", 6) == 0;
    size_t blen = prefixed ? strnlen(secret + 6, 256) : 0;
    int rl = prefixed && blen < 256 ? ref_decode(secret + 6, blen, ref, sizeof ref) : -1;
    if (kl >= 0) {
        FUZZ_CHECK(kl >= PG_WEBHOOK_KEY_MIN && kl <= PG_WEBHOOK_KEY_MAX, "key length %d", kl);
        FUZZ_CHECK(rl == kl && memcmp(ref, key, (size_t)kl) == 0,
                   "decoded %d bytes, reference %d, or other bytes", kl, rl);
    } else if (!prefixed) {
        FUZZ_CHECK(kl == PG_EPARSE, "no prefix: %d", kl);
    } else if (rl >= PG_WEBHOOK_KEY_MIN && rl <= PG_WEBHOOK_KEY_MAX) {
        FUZZ_CHECK(false, "a valid %d-byte secret refused: %d", rl, kl);
    } else {
        FUZZ_CHECK(kl == PG_EPARSE || kl == PG_ERANGE, "refusal %d", kl);
        FUZZ_CHECK(rl < 0 || kl == PG_ERANGE, "a %d-byte secret refused as %d", rl, kl);
    }
    return kl;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = { data, size };
    uint8_t flags = fuzz_u8(&in);
    int64_t ts = (int64_t)fuzz_u64(&in);
    size_t n = 1 + (flags & 3);
    char *secrets[PG_WEBHOOK_MAX_SECRETS];
    uint8_t keys[PG_WEBHOOK_MAX_SECRETS][PG_WEBHOOK_KEY_MAX];
    int kls[PG_WEBHOOK_MAX_SECRETS];
    bool all_ok = true;
    for (size_t i = 0; i < n; i++) {
        secrets[i] = cstr(fuzz_until(&in, 0));
        kls[i] = check_secret(secrets[i], keys[i]);
        all_ok = all_ok && kls[i] >= 0;
    }
    char *id = cstr(fuzz_until(&in, 0));
    struct pg_slice body = fuzz_rest(&in);

    char hdr[PG_WEBHOOK_MAX_SECRETS * (PG_WEBHOOK_SIG_LEN + 1) + 1];
    size_t cap = (flags & 4) ? n * (PG_WEBHOOK_SIG_LEN + 1) : sizeof hdr - 1 + (flags >> 6);
    if (cap > sizeof hdr)
        cap = sizeof hdr;
    int len = pg_webhook_signature_header((const char *const *)secrets, n, id, ts, body, hdr, cap);
    if (!all_ok) {
        FUZZ_CHECK(len == PG_EPARSE || len == PG_ERANGE, "bad secret signed: %d", len);
        goto out;
    }
    FUZZ_CHECK(len == (int)(n * PG_WEBHOOK_SIG_LEN + n - 1), "header length %d for %zu", len, n);
    FUZZ_CHECK(hdr[len] == '\0', "header not terminated");

    /* A receiver's reading: every signature verifies under its own key. */
    char ts_text[24];
    int tl = snprintf(ts_text, sizeof ts_text, "%" PRId64, ts);
    const char *p = hdr;
    for (size_t i = 0; i < n; i++) {
        const char *sp = strchr(p, ' ');
        size_t sl = sp ? (size_t)(sp - p) : strlen(p);
        FUZZ_CHECK(sl == PG_WEBHOOK_SIG_LEN && memcmp(p, "v1,", 3) == 0, "signature %zu shape", i);
        uint8_t got[64], mac[32];
        FUZZ_CHECK(ref_decode(p + 3, sl - 3, got, sizeof got) == 32, "signature %zu base64", i);
        size_t mlen = strlen(id) + 1 + (size_t)tl + 1 + body.len;
        char *msg = malloc(mlen + 1);
        size_t o = 0;
        memcpy(msg + o, id, strlen(id));
        o += strlen(id);
        msg[o++] = '.';
        memcpy(msg + o, ts_text, (size_t)tl);
        o += (size_t)tl;
        msg[o++] = '.';
        if (body.len)
            memcpy(msg + o, body.ptr, body.len);
        unsigned ml = 0;
        FUZZ_CHECK(HMAC(EVP_sha256(), keys[i], (int)kls[i], (const unsigned char *)msg, mlen, mac,
                        &ml) && ml == 32,
                   "HMAC");
        free(msg);
        FUZZ_CHECK(memcmp(mac, got, 32) == 0, "signature %zu does not verify", i);
        p += sl + (sp ? 1 : 0);
        FUZZ_CHECK(sp || i == n - 1, "fewer signatures than secrets");
    }
    FUZZ_CHECK(pg_webhook_signature_header((const char *const *)secrets, n, id, ts, body, hdr,
                                           (size_t)len) == PG_ETOOBIG,
               "no room for the NUL, yet no PG_ETOOBIG");
out:
    for (size_t i = 0; i < n; i++)
        free(secrets[i]);
    free(id);
    return 0;
}
