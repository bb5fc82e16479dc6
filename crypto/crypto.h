/* Thin wrappers over OpenSSL for the few primitives payguard needs. Every
 * function here is thread-safe and allocation-free. */
#ifndef PG_CRYPTO_H
#define PG_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#include "common/pg.h"

#define PG_SHA256_LEN 32

/* SHA-256 of `len` bytes at `data` into `out`. 0 or PG_ECRYPTO. */
PG_WUR int pg_sha256(const void *data, size_t len, uint8_t out[PG_SHA256_LEN]);

/* SHA-256 of the concatenation of `n` slices. 0 or PG_ECRYPTO. */
PG_WUR int pg_sha256_parts(const struct pg_slice *parts, size_t n, uint8_t out[PG_SHA256_LEN]);

/* Fills `buf` with `len` bytes from the CSPRNG. 0 or PG_ECRYPTO. */
PG_WUR int pg_random(void *buf, size_t len);

/* Constant-time equality of two equal-length buffers; 1 when equal. */
int pg_ct_equal(const void *a, const void *b, size_t len);

/* base64url without padding. Writes at most outcap bytes plus a NUL and
 * returns the encoded length, or PG_ETOOBIG when outcap is too small. */
PG_WUR int pg_base64url_encode(const void *in, size_t len, char *out, size_t outcap);

/* base62 (0-9A-Za-z) of `len` random bytes, fixed length for a given len:
 * ceil(len * 8 / log2(62)). Same output contract as pg_base64url_encode. */
PG_WUR int pg_base62_encode(const void *in, size_t len, char *out, size_t outcap);

/* Lower-case hex. Same output contract as pg_base64url_encode. */
PG_WUR int pg_hex_encode(const void *in, size_t len, char *out, size_t outcap);

#endif /* PG_CRYPTO_H */
