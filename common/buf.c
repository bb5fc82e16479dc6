/* Growable byte buffers. */
#include "common/pg.h"
#include "common/buf.h"

#include <stdlib.h>

int pg_buf_reserve(struct pg_buf *b, size_t n)
{
    if (b->cap - b->len >= n)
        return 0;
    size_t need;
    if (__builtin_add_overflow(b->len, n, &need))
        return PG_ENOMEM;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) {
        if (__builtin_mul_overflow(cap, 2, &cap))
            return PG_ENOMEM;
    }
    char *p = realloc(b->p, cap);
    if (!p)
        return PG_ENOMEM;
    b->p = p;
    b->cap = cap;
    return 0;
}

int pg_buf_append(struct pg_buf *b, const void *data, size_t n)
{
    if (n == 0)
        return 0;
    int rc = pg_buf_reserve(b, n);
    if (rc)
        return rc;
    memcpy(b->p + b->len, data, n);
    b->len += n;
    return 0;
}

int pg_buf_append_str(struct pg_buf *b, const char *s)
{
    return pg_buf_append(b, s, strlen(s));
}

int pg_buf_append_u64(struct pg_buf *b, uint64_t v)
{
    char tmp[24];
    size_t i = sizeof(tmp);
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return pg_buf_append(b, tmp + i, sizeof(tmp) - i);
}

char *pg_buf_take(struct pg_buf *b, size_t *len)
{
    char *p = b->p;
    if (len)
        *len = b->len;
    b->p = NULL;
    b->len = b->cap = 0;
    return p;
}

void pg_buf_free(struct pg_buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}
