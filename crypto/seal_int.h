/* Private to crypto/: the pieces of a sealed value, exposed so the unit tests
 * can drive the very code pg_seal and pg_unseal run with published test
 * vectors (RFC 7914 scrypt, the GCM specification's AES-256 cases) and with a
 * cheap scrypt cost. Production code calls pg_seal and pg_unseal only. */
#ifndef PG_SEAL_INT_H
#define PG_SEAL_INT_H

#include "common/pg.h"

#include <stddef.h>
#include <stdint.h>

#define SEAL_KEY_LEN 32

/* scrypt cost. The v1 format fixes it (seal_cost_v1); it is not stored in
 * the sealed text, so changing it means a new format version. */
struct seal_cost {
    uint64_t n; /* CPU/memory cost, a power of two */
    uint32_t r; /* block size */
    uint32_t p; /* parallelism */
};

extern const struct seal_cost seal_cost_v1; /* N = 2^17, r = 8, p = 1 */

/* scrypt(pass, salt, cost) into out[outlen], with scrypt's memory ceiling
 * set to what the cost needs. 0 or PG_ECRYPTO. */
PG_WUR int seal_kdf(struct pg_slice pass, const uint8_t *salt, size_t saltlen,
                    const struct seal_cost *cost, uint8_t *out, size_t outlen);

/* AES-256-GCM with a 96-bit nonce and a 16-byte tag. 0 or
 * PG_ECRYPTO. */
PG_WUR int seal_gcm_encrypt(const uint8_t key[SEAL_KEY_LEN], const uint8_t nonce[12],
                            struct pg_slice aad, const uint8_t *pt, size_t len, uint8_t *ct,
                            uint8_t tag[16]);

/* The inverse: 0, PG_EAUTH when the tag does not verify (pt then wiped), or
 * PG_ECRYPTO. */
PG_WUR int seal_gcm_decrypt(const uint8_t key[SEAL_KEY_LEN], const uint8_t nonce[12],
                            struct pg_slice aad, const uint8_t *ct, size_t len,
                            const uint8_t tag[16], uint8_t *pt);

/* pg_seal and pg_unseal at a given cost; same contracts. */
PG_WUR int seal_with_cost(const struct seal_cost *cost, struct pg_slice passphrase,
                          struct pg_slice aad, struct pg_slice plaintext, char *out, size_t outcap);
PG_WUR int unseal_with_cost(const struct seal_cost *cost, struct pg_slice passphrase,
                            struct pg_slice aad, struct pg_slice sealed, char *out, size_t outcap,
                            size_t *outlen);

#endif /* PG_SEAL_INT_H */
