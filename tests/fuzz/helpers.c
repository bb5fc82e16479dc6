/* Shared by the fuzz targets; see helpers.h. */
#include "common/pg.h"
#include "tests/fuzz/helpers.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

void fuzz_fail(const char *file, int line, const char *cond, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "\n== invariant broken at %s:%d: %s\n== ", file, line, cond);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort();
}

int fuzz_config_load(const char *text, size_t len, bool resolve_secrets, struct pg_config **out,
                     struct pg_config_errors *errs)
{
    /* One memfd per process, rewritten for each input: the loader opens it
     * afresh by its /proc path and reads it like any regular file. */
    static int fd = -1;
    static char path[64];
    if (fd < 0) {
        fd = memfd_create("payguard.yaml", MFD_CLOEXEC);
        if (fd < 0) {
            perror("memfd_create");
            abort();
        }
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    }
    if (ftruncate(fd, 0) != 0 || (len && pwrite(fd, text, len, 0) != (ssize_t)len)) {
        perror("memfd write");
        abort();
    }
    return pg_config_load(path, resolve_secrets, out, errs);
}

const struct pg_config *fuzz_shared_config(void)
{
    static struct pg_config *cfg;
    if (cfg)
        return cfg;
    char path[4096];
    const char *env = getenv("PAYGUARD_FUZZ_CONFIG");
    if (env) {
        snprintf(path, sizeof path, "%s", env);
    } else {
        ssize_t n = readlink("/proc/self/exe", path, sizeof path - 64);
        if (n <= 0) {
            perror("readlink /proc/self/exe");
            abort();
        }
        path[n] = '\0';
        char *slash = strrchr(path, '/');
        snprintf(slash ? slash + 1 : path, 64, "../../tests/fuzz/fuzz.yaml");
    }
    setenv("PG_FUZZ_RAIL_KEY", "sk_test_fuzz_rail_key", 1);
    struct pg_config_errors errs;
    int rc = pg_config_load(path, true, &cfg, &errs);
    if (rc != 0) {
        fprintf(stderr, "fuzz: %s does not load: %s\n", path, pg_strerror(rc));
        for (size_t i = 0; i < errs.count; i++)
            fprintf(stderr, "  %s\n", errs.msgs[i]);
        abort();
    }
    return cfg;
}

uint8_t fuzz_u8(struct fuzz_in *in)
{
    if (!in->n)
        return 0;
    in->n--;
    return *in->p++;
}

uint16_t fuzz_u16(struct fuzz_in *in)
{
    uint16_t hi = fuzz_u8(in);
    return (uint16_t)(hi << 8 | fuzz_u8(in));
}

uint64_t fuzz_u64(struct fuzz_in *in)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | fuzz_u8(in);
    return v;
}

struct pg_slice fuzz_until(struct fuzz_in *in, uint8_t sep)
{
    const uint8_t *end = in->n ? memchr(in->p, sep, in->n) : NULL;
    size_t len = end ? (size_t)(end - in->p) : in->n;
    struct pg_slice s = pg_slice_of((const char *)in->p, len);
    size_t used = end ? len + 1 : len;
    in->p += used;
    in->n -= used;
    return s;
}

struct pg_slice fuzz_rest(struct fuzz_in *in)
{
    struct pg_slice s = pg_slice_of((const char *)in->p, in->n);
    in->p += in->n;
    in->n = 0;
    return s;
}

bool fuzz_within(struct pg_slice s, const void *base, size_t len)
{
    const char *b = base;
    if (!s.len)
        return true;
    if (!b)
        return false;
    return s.ptr >= b && s.ptr <= b + len && s.len <= (size_t)(b + len - s.ptr);
}
