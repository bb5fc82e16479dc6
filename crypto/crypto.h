/* Thin wrappers over OpenSSL for the few primitives payguard needs. Every
 * function here is thread-safe; all but pg_seal and pg_unseal are also
 * allocation-free (those let scrypt take 128 MiB for a fraction of a second). */
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

/* Decodes base64url without padding, strictly: only A-Z a-z 0-9 - _, no
 * '=', a length that is not 1 mod 4, and zero bits after the last byte, so
 * every byte string has exactly one text. Returns the decoded length (at most
 * outcap), PG_EPARSE for text that is not such base64url, or PG_ETOOBIG when
 * outcap is too small. What `out` holds after a failure is unspecified. */
PG_WUR int pg_base64url_decode(struct pg_slice in, void *out, size_t outcap);

/* base62 (0-9A-Za-z) of `len` random bytes, fixed length for a given len:
 * ceil(len * 8 / log2(62)). Same output contract as pg_base64url_encode. */
PG_WUR int pg_base62_encode(const void *in, size_t len, char *out, size_t outcap);

/* Lower-case hex. Same output contract as pg_base64url_encode. */
PG_WUR int pg_hex_encode(const void *in, size_t len, char *out, size_t outcap);

/* ---- sealed secrets (crypto/seal.c) ------------------------------------
 *
 * A sealed value keeps a secret in payguard.yaml encrypted under the master
 * passphrase:
 *
 *   "sealed:v1:" base64url-no-padding( salt[16] | nonce[12] | ciphertext | tag[16] )
 *
 * key = scrypt(passphrase, salt, N = 2^17, r = 8, p = 1) → 32 bytes, and
 * AES-256-GCM under that key with the random 96-bit nonce. The additional
 * authenticated data is the config path the value belongs to, so a value
 * copied to another key does not open. The paths are exactly:
 *
 *   "rails.NAME.secret"   NAME as written under rails: ("rails.stripe.secret")
 *   "webhooks[I].secret"  I the entry's 0-based place in the list
 *                         ("webhooks[0].secret"; reordering the list breaks it)
 *   "users[I].totp"       a human's TOTP seed, I as above (payguard user totp)
 *
 * Each call derives the key afresh: about 0.3-0.5 s of CPU and 128 MiB, by
 * design, so a stolen config file is slow to attack. Keys and plaintext
 * copies are wiped before these functions return. Any thread. */

#define PG_SEAL_PREFIX "sealed:v1:"
#define PG_SEAL_SALT_LEN 16
#define PG_SEAL_NONCE_LEN 12
#define PG_SEAL_TAG_LEN 16
#define PG_SEAL_OVERHEAD (PG_SEAL_SALT_LEN + PG_SEAL_NONCE_LEN + PG_SEAL_TAG_LEN)
/* Longest secret sealed; rail keys and signing secrets are far shorter. */
#define PG_SEAL_MAX_PLAINTEXT 4096
/* Text length of a sealed value holding n bytes, without the NUL. */
#define PG_SEAL_TEXT_LEN(n) (sizeof(PG_SEAL_PREFIX) - 1 + ((PG_SEAL_OVERHEAD + (n)) * 4 + 2) / 3)
/* Room for any sealed value and its NUL. */
#define PG_SEAL_TEXT_BUF (PG_SEAL_TEXT_LEN(PG_SEAL_MAX_PLAINTEXT) + 1)

/* Seals `plaintext` (0 to PG_SEAL_MAX_PLAINTEXT bytes) under `passphrase`
 * for the config path `aad`, with a fresh random salt and nonce. Writes the
 * "sealed:v1:..." text and a NUL into out (outcap >=
 * PG_SEAL_TEXT_LEN(plaintext.len) + 1) and returns the text length.
 * The library does not judge the passphrase; `payguard seal` does.
 * Errors: PG_ETOOBIG (plaintext too long or outcap too small; out untouched),
 * PG_ECRYPTO (randomness, scrypt or cipher failed, including scrypt failing
 * to get its memory). Caller owns every buffer. */
PG_WUR int pg_seal(struct pg_slice passphrase, struct pg_slice aad, struct pg_slice plaintext,
                   char *out, size_t outcap);

/* Opens `sealed` (the whole text, prefix included) under `passphrase` for the
 * config path `aad`. On success returns 0, writes the plaintext and a NUL into
 * out and its length (NUL not counted) into *outlen; outcap must hold
 * ciphertext + 1 bytes (PG_SEAL_MAX_PLAINTEXT + 1 always does).
 * Errors, with out holding nothing of the secret:
 *   PG_EPARSE  not "sealed:v1:" followed by strict base64url of at least
 *              PG_SEAL_OVERHEAD bytes (truncated, damaged, another version)
 *   PG_ETOOBIG longer than any sealed value, or outcap too small
 *   PG_EAUTH   wrong passphrase, altered bytes or a value moved from another
 *              path: GCM cannot tell these apart, and neither does payguard
 *   PG_ECRYPTO scrypt or cipher failure (including scrypt out of memory)
 * The secret may contain any bytes, NUL included: use *outlen. */
PG_WUR int pg_unseal(struct pg_slice passphrase, struct pg_slice aad, struct pg_slice sealed,
                     char *out, size_t outcap, size_t *outlen);

/* The cheap half of pg_unseal: 0 when `sealed` has the shape of a sealed
 * value (prefix, strict base64url, length in bounds), else PG_EPARSE or
 * PG_ETOOBIG as pg_unseal would answer. No key is derived. */
PG_WUR int pg_seal_check(struct pg_slice sealed);

#endif /* PG_CRYPTO_H */
