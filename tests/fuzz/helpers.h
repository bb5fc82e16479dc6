/* What the fuzz targets share: an invariant check that stops the run with a
 * message (libFuzzer keeps the input), a config loaded from text without
 * touching the disk, and a cursor that carves an input into the pieces a
 * target needs. Test code only. */
#ifndef PG_FUZZ_HELPERS_H
#define PG_FUZZ_HELPERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/pg.h"
#include "config/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* Aborts with the failed condition and a printf message when `cond` is false:
 * a broken invariant is a finding just like a crash. */
#define FUZZ_CHECK(cond, ...)                                                                      \
    do {                                                                                           \
        if (!(cond))                                                                               \
            fuzz_fail(__FILE__, __LINE__, #cond, __VA_ARGS__);                                     \
    } while (0)

__attribute__((noreturn, format(printf, 4, 5))) void fuzz_fail(const char *file, int line,
                                                                const char *cond, const char *fmt,
                                                                ...);

/* Loads `len` bytes of YAML as payguard.yaml through an in-memory file
 * (memfd), so the real loader runs, file reading included. 0 and *out, or
 * the loader's code with *errs filled (errs may be NULL). */
int fuzz_config_load(const char *text, size_t len, bool resolve_secrets, struct pg_config **out,
                     struct pg_config_errors *errs);

/* The config in tests/fuzz/fuzz.yaml (found from the executable's place
 * in build/fuzz/, or $PAYGUARD_FUZZ_CONFIG), with its rail secrets set.
 * Loaded once; aborts with every problem when it does not load. */
const struct pg_config *fuzz_shared_config(void);

/* Reads an input front to back: fixed-size numbers, then the rest. Past the
 * end every read gives zeros, so a short input is still a valid one. */
struct fuzz_in {
    const uint8_t *p;
    size_t n;
};

uint8_t fuzz_u8(struct fuzz_in *in);
uint16_t fuzz_u16(struct fuzz_in *in);
uint64_t fuzz_u64(struct fuzz_in *in);
/* The next piece up to the byte `sep` (not included; the separator is
 * consumed), or everything left. */
struct pg_slice fuzz_until(struct fuzz_in *in, uint8_t sep);
struct pg_slice fuzz_rest(struct fuzz_in *in);

/* True when s holds a slice of [base, base + len). */
bool fuzz_within(struct pg_slice s, const void *base, size_t len);

#endif /* PG_FUZZ_HELPERS_H */
