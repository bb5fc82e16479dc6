/* Human authentication on the admin API: password rules, TOTP (RFC 6238),
 * single-use recovery codes, and HS256 access tokens (JWT, RFC 7519).
 * Pure functions over bytes: no I/O, no LMDB, no clock of their own (callers
 * pass `now`), so every rule is unit-tested with fixed inputs. Where state
 * must persist (the last TOTP step used, spent recovery codes, refresh
 * tokens) the admin API keeps it in the ledger. Any thread. */
#ifndef PG_AUTH_HUMAN_H
#define PG_AUTH_HUMAN_H

#include <stdbool.h>
#include <stdint.h>

#include "common/pg.h"

/* --- passwords ------------------------------------------------------------ */

#define PG_PASSWORD_MIN_CHARS 10   /* UTF-8 characters */
#define PG_PASSWORD_MAX_BYTES 72   /* bcrypt reads no further */
#define PG_PASSWORD_BCRYPT_COST 12

/* 0 when `pw` may be a password: at most 72 bytes, at least 10 characters,
 * at least one letter and one digit, no NUL. Else PG_EPARSE with *why (may be
 * NULL) a sentence for the user. Characters are UTF-8: malformed UTF-8 and
 * control characters are refused too; any non-ASCII character counts as a
 * letter, digits are ASCII 0-9. */
PG_WUR int pg_password_check(struct pg_slice pw, const char **why);

/* --- TOTP (RFC 6238: HMAC-SHA-1, 6 digits, 30 s steps) -------------------- */

#define PG_TOTP_SECRET_LEN 20      /* bytes; 160 bits as RFC 4226 advises */
#define PG_TOTP_SECRET_MAX 64
#define PG_TOTP_STEP_S 30
#define PG_TOTP_DIGITS 6

/* HOTP value (RFC 4226) of `counter`, reduced to `digits` (6..8). 0 or
 * PG_ECRYPTO / PG_EPARSE (digits out of range, or n not 1..PG_TOTP_SECRET_MAX). */
PG_WUR int pg_hotp(const uint8_t *secret, size_t n, uint64_t counter, unsigned digits,
                   uint32_t *out);

/* Checks a 6-digit `code` at unix time `now` against steps now-1, now, now+1
 * (30 s each). A step at or below `last_step` (the last one this user spent;
 * 0 when none) is refused, so a code is never accepted twice. 1 with *step
 * set to the matched step, 0 when no step matches, PG_EPARSE when `code` is
 * not 6 ASCII digits. Compares in constant time. */
PG_WUR int pg_totp_verify(const uint8_t *secret, size_t n, struct pg_slice code, int64_t now,
                          uint64_t last_step, uint64_t *step);

/* RFC 4648 base32 without padding (upper case), as authenticator apps take
 * secrets. encode: 0 or PG_ETOOBIG. decode accepts lower case, spaces and
 * '=' padding; returns the byte count or PG_EPARSE / PG_ETOOBIG. */
PG_WUR int pg_base32_encode(const uint8_t *in, size_t n, char *out, size_t cap);
PG_WUR int pg_base32_decode(struct pg_slice in, uint8_t *out, size_t cap);

/* otpauth://totp/ISSUER:ACCOUNT?secret=...&issuer=ISSUER&algorithm=SHA1&digits=6&period=30
 * with issuer and account percent-encoded. 0 or PG_ETOOBIG. */
PG_WUR int pg_totp_uri(const char *issuer, const char *account, const uint8_t *secret,
                       size_t n, char *out, size_t cap);

/* --- recovery codes --------------------------------------------------------- */

#define PG_RECOVERY_CODES 10
#define PG_RECOVERY_CODE_BUF 24    /* "xxxxx-xxxxx-xxxxx-xxxxx" + NUL: 100 bits */

/* A fresh code: 20 base32 characters (lower case) in four groups of five. */
PG_WUR int pg_recovery_code_new(char out[PG_RECOVERY_CODE_BUF]);
/* Lower-case hex SHA-256 of the code with dashes and spaces removed and
 * letters lower-cased, so "ABCDE-..." and "abcde..." are one code. 0 or
 * PG_EPARSE (not 20 base32 characters once normalised). */
PG_WUR int pg_recovery_code_hash(struct pg_slice code, char hex[65]);

/* --- access tokens (JWT, HS256 only) ---------------------------------------- */

#define PG_JWT_TTL_S 900           /* 15 minutes */
#define PG_JWT_LEEWAY_S 60
#define PG_JWT_KEY_LEN 32
#define PG_JWT_MAX 2048            /* a token's length, at most */

struct pg_jwt_claims {
    char iss[64];
    char aud[64];
    char sub[256];                 /* the user's email */
    char jti[64];
    char org[65];
    char role[16];                 /* "owner", "admin", "approver", "viewer" */
    int64_t iat, exp, nbf;         /* nbf 0: absent */
};

/* Signs the claims (header {"alg":"HS256","typ":"JWT"}) into out, NUL
 * terminated. 0, PG_ETOOBIG (cap too small, or the token would be longer
 * than PG_JWT_MAX), PG_ECRYPTO (also for an empty key), PG_ENOMEM (also for
 * a claim that is not UTF-8). */
PG_WUR int pg_jwt_sign(const uint8_t *key, size_t keylen, const struct pg_jwt_claims *c,
                       char *out, size_t cap);

/* Verifies `token`: exactly three base64url parts without padding; header
 * alg "HS256" (anything else, "none" included, is refused) and typ absent or
 * "JWT"; the HMAC compared in constant time; iss and aud equal to the given
 * ones; exp present with now < exp + leeway; iat present, not after now +
 * leeway, exp - iat <= PG_JWT_TTL_S; nbf (when present) <= now + leeway;
 * sub, jti, org and role present. 0 with *out filled, or PG_EAUTH with *why
 * (may be NULL) naming the first failed check ("malformed", "alg",
 * "signature", "expired", "not yet valid", "issuer", "audience", "lifetime",
 * "claims"). */
PG_WUR int pg_jwt_verify(const uint8_t *key, size_t keylen, struct pg_slice token, int64_t now,
                         const char *iss, const char *aud, struct pg_jwt_claims *out,
                         const char **why);

#endif /* PG_AUTH_HUMAN_H */
