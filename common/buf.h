/* A growable byte buffer with a hard cap, for per-connection input and output. */
#ifndef PG_BUF_H
#define PG_BUF_H

#include "common/pg.h"

struct pg_buf {
    char *p;
    size_t len;
    size_t cap;
};

/* Appends n bytes; grows by doubling. 0 or PG_ENOMEM. */
PG_WUR int pg_buf_append(struct pg_buf *b, const void *data, size_t n);
PG_WUR int pg_buf_append_str(struct pg_buf *b, const char *s);
/* Appends the decimal form of v. */
PG_WUR int pg_buf_append_u64(struct pg_buf *b, uint64_t v);
/* Makes room for n more bytes without changing len. 0 or PG_ENOMEM. */
PG_WUR int pg_buf_reserve(struct pg_buf *b, size_t n);
/* Hands the bytes to the caller (who frees them) and leaves b empty. */
char *pg_buf_take(struct pg_buf *b, size_t *len);
void pg_buf_free(struct pg_buf *b);

#endif
