/* Shared ground for every payguard module: byte slices, the error table and
 * the list of libc functions the tree must never call. Included first by every
 * .c file so the poison applies everywhere. */
#ifndef PG_COMMON_H
#define PG_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#define PG_WUR __attribute__((warn_unused_result))
#define PG_UNUSED(x) ((void)(x))
#define PG_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Bytes travel as {ptr, len}; never assume a NUL terminator. */
struct pg_slice {
    const char *ptr;
    size_t len;
};

#define PG_SLICE(lit) ((struct pg_slice){ (lit), sizeof(lit) - 1 })
#define PG_SLICE_INIT(lit) { (lit), sizeof(lit) - 1 }
#define PG_SLICE_NULL ((struct pg_slice){ NULL, 0 })

static inline struct pg_slice pg_slice_of(const char *p, size_t n)
{
    struct pg_slice s = { p, n };
    return s;
}

static inline struct pg_slice pg_slice_cstr(const char *p)
{
    struct pg_slice s = { p, p ? strlen(p) : 0 };
    return s;
}

static inline int pg_slice_eq(struct pg_slice a, struct pg_slice b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

/* ASCII case-insensitive equality, for header names and tokens. */
int pg_slice_eq_nocase(struct pg_slice a, struct pg_slice b);
int pg_slice_has_prefix(struct pg_slice s, struct pg_slice prefix);

/* payguard's own error codes. Negative errno values are used for system
 * errors; these live below -1000 so the two never overlap. */
#define PG_ERRNO_MAP(X)                                                        \
    X(CONFIG, -1001, "invalid configuration")                                  \
    X(NOMEM, -1002, "out of memory")                                           \
    X(PARSE, -1003, "malformed input")                                         \
    X(TOOBIG, -1004, "input too large")                                        \
    X(AUTH, -1005, "authentication failed")                                    \
    X(CRYPTO, -1006, "cryptographic operation failed")                         \
    X(TLS, -1007, "TLS failure")                                               \
    X(UPSTREAM, -1008, "upstream failure")                                     \
    X(TIMEOUT, -1009, "timed out")                                             \
    X(NOTFOUND, -1010, "not found")                                            \
    X(RANGE, -1011, "value out of range")                                      \
    X(BUSY, -1012, "resource busy")                                            \
    X(STORE, -1013, "storage failure")

enum pg_errno {
#define PG_ERRNO_ENUM(name, val, msg) PG_E##name = (val),
    PG_ERRNO_MAP(PG_ERRNO_ENUM)
#undef PG_ERRNO_ENUM
};

/* Message for a payguard code or a negative errno. Never NULL. */
const char *pg_strerror(int err);

/* `ns` nanoseconds from now on `clock`: a deadline for pthread_cond_timedwait
 * on a condition variable that uses that clock. */
struct timespec pg_deadline_after(clockid_t clock, long ns);

/* Functions that overflow or hide lengths have no place here. */
#if defined(__GNUC__) && !defined(PG_NO_POISON)
#include <stdio.h>
#include <stdlib.h>
/* glibc's fortify makes sprintf a macro under clang; poison the name itself. */
#undef sprintf
#pragma GCC poison strcpy strcat sprintf vsprintf gets strtok
#endif

#endif /* PG_COMMON_H */
