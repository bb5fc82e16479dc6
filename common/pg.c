/* Slice helpers, the error-message table behind pg_strerror(), deadlines. */
#include "common/pg.h"

#include <string.h>

int pg_slice_eq_nocase(struct pg_slice a, struct pg_slice b)
{
    if (a.len != b.len)
        return 0;
    for (size_t i = 0; i < a.len; i++) {
        unsigned char x = (unsigned char)a.ptr[i], y = (unsigned char)b.ptr[i];
        if (x >= 'A' && x <= 'Z')
            x = (unsigned char)(x + 32);
        if (y >= 'A' && y <= 'Z')
            y = (unsigned char)(y + 32);
        if (x != y)
            return 0;
    }
    return 1;
}

int pg_slice_has_prefix(struct pg_slice s, struct pg_slice prefix)
{
    return s.len >= prefix.len && memcmp(s.ptr, prefix.ptr, prefix.len) == 0;
}

const char *pg_strerror(int err)
{
    switch (err) {
#define PG_ERRNO_CASE(name, val, msg)                                          \
    case (val):                                                                \
        return (msg);
        PG_ERRNO_MAP(PG_ERRNO_CASE)
#undef PG_ERRNO_CASE
    default:
        break;
    }
    if (err < 0 && err > -1000)
        return strerror(-err);
    return "unknown error";
}

struct timespec pg_deadline_after(clockid_t clock, long ns)
{
    struct timespec t;
    clock_gettime(clock, &t);
    t.tv_sec += ns / 1000000000L;
    t.tv_nsec += ns % 1000000000L;
    if (t.tv_nsec >= 1000000000L) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000L;
    }
    return t;
}
