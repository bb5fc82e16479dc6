/* Agent authentication: payguard tokens, bcrypt hashes (libxcrypt), the
 * verified-token cache that keeps bcrypt off the hot path, and the per-address
 * limiter that stops bcrypt from being used to burn CPU. */
#ifndef PG_AUTH_H
#define PG_AUTH_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "common/pg.h"
#include "config/config.h"
#include "crypto/crypto.h"

#define PG_TOKEN_PREFIX "pgt_"
#define PG_TOKEN_RANDOM_BYTES 32
/* "pgt_" + 43 base62 digits (256 bits) + NUL, with room to spare. */
#define PG_TOKEN_BUF 64
#define PG_BCRYPT_BUF 128
#define PG_TOKEN_BCRYPT_COST 10

/* Writes a fresh token ("pgt_" + base62 of 256 random bits) into out.
 * 0, PG_ECRYPTO or PG_ETOOBIG. Any thread. */
PG_WUR int pg_auth_token_new(char *out, size_t cap);

/* 0 when `tok` has the shape of a payguard token (prefix, length 20..200,
 * base62/base64url characters), PG_EPARSE otherwise. Cheap; no hashing. */
PG_WUR int pg_auth_token_check_format(struct pg_slice tok);

/* bcrypt ("$2b$", `cost`) of `secret` into out. 0, PG_ECRYPTO or PG_ETOOBIG.
 * Slow by design: never on the loop thread. */
PG_WUR int pg_auth_bcrypt_hash(struct pg_slice secret, unsigned cost, char *out, size_t cap);

/* 1 when `secret` matches bcrypt `hash`, 0 when not, PG_ECRYPTO when the
 * hash is unusable. Compares in constant time. Slow: never on the loop thread. */
PG_WUR int pg_auth_bcrypt_verify(struct pg_slice secret, const char *hash);

/* Extracts the credential from an Authorization header value: "Bearer T", or
 * "Basic base64(T:)" as Stripe's clients send it. The result points into
 * `scratch` (Basic) or into `value` (Bearer). 0, PG_EPARSE or PG_ETOOBIG. */
PG_WUR int pg_auth_credential(struct pg_slice value, char *scratch, size_t cap,
                              struct pg_slice *out);

/* Finds the agent whose bcrypt token hash matches `tok`, trying each agent in
 * turn. Returns the agent or NULL. Slow: call from the thread pool. */
const struct pg_agent *pg_auth_find_agent(const struct pg_config *cfg, struct pg_slice tok);

/* Verified-token cache keyed by SHA-256 of the token. An entry stays valid
 * across config reloads only while the agent keeps the same token hash.
 * Loop thread only. */
struct pg_token_cache;

struct pg_token_cache *pg_token_cache_new(size_t capacity);
void pg_token_cache_free(struct pg_token_cache *c);

/* The agent a cached digest maps to in `cfg`, or NULL on a miss. */
const struct pg_agent *pg_token_cache_get(struct pg_token_cache *c, const struct pg_config *cfg,
                                          const uint8_t digest[PG_SHA256_LEN]);

/* Remembers that `digest` verified as `agent`. 0 or PG_ENOMEM. */
PG_WUR int pg_token_cache_put(struct pg_token_cache *c, const uint8_t digest[PG_SHA256_LEN],
                              const struct pg_agent *agent);

/* Auth-failure limiter: at most `limit` failures per address per minute.
 * Loop thread only. */
struct pg_auth_limiter;

struct pg_auth_limiter *pg_auth_limiter_new(uint32_t limit);
void pg_auth_limiter_free(struct pg_auth_limiter *l);
void pg_auth_limiter_set_limit(struct pg_auth_limiter *l, uint32_t limit);

/* 0 when `addr` may try again now, else the seconds until it may. */
uint32_t pg_auth_limiter_wait(struct pg_auth_limiter *l, const struct sockaddr *addr,
                              uint64_t now_ms);
void pg_auth_limiter_fail(struct pg_auth_limiter *l, const struct sockaddr *addr,
                          uint64_t now_ms);

/* Per-agent request rate: a token bucket refilled at `requests` per `per_s`
 * seconds, holding at most `burst`. Kept in units of 1/(per_s * 1e6) token
 * so the refill is exact without floating point. Loop thread only. */
struct pg_bucket {
    uint64_t micro_tokens;         /* in those units */
    uint64_t last_us;
    bool primed;                   /* starts full */
};

/* Takes one token: 0 when the request may go, else the whole seconds to wait
 * for the next token (at least 1). */
uint32_t pg_bucket_take(struct pg_bucket *b, uint32_t requests, uint32_t per_s, uint32_t burst,
                        uint64_t now_us);

#endif /* PG_AUTH_H */
