/* Raw card numbers (PANs) in bytes: agents must pay with tokens, so the proxy
 * refuses a body that carries a card number, and every log masks them. Pure
 * and allocation-free: one forward pass, fast on large bodies without digits.
 *
 * What counts as a card number: 13-19 digits that pass the Luhn check and a
 * brand's prefix and length (below), written
 *   - plain: 4242424242424242
 *   - in groups joined by one kind of separator, used the same way
 *     throughout: a space, '-', '+' (a form-encoded space), or the escapes
 *     %20, %2B, %2D (4242 4242 4242 4242, 3782-822463-10005,
 *     4242+4242+4242+4242, 4242%204242%204242%204242). Groups hold 2-8
 *     digits; the last may hold one (4222 2222 2222 2);
 * and standing on its own: the digits are not glued to a letter, digit or
 * '_' (pi_3MtwBwLkdIwHu7ix0snN0B15 and the middle of a 25-digit run never
 * match), nor to a decimal point between digits (0.4242424242424242),
 * with percent-escapes read as the byte they stand for (%414242… is glued to
 * an 'A'). In a longer run of groups (1 4242 4242 4242 4242) any stretch of
 * whole groups can be the number; the earliest start wins, then the longest.
 *
 * Cost: one pass; about 0.7 ms per MiB of text without digits on the dev box,
 * and at worst about 25 ms per MiB for a body made only of short digit groups
 * that could start a card ("43 43 43 ..."), since each group start reads
 * ahead up to 19 digits. Nothing is allocated.
 */
#ifndef PG_POLICY_PAN_H
#define PG_POLICY_PAN_H

#include <stdbool.h>
#include <stdint.h>

#include "common/pg.h"

enum pg_pan_brand {
    PG_PAN_VISA,       /* 4; 13, 16, 19 digits */
    PG_PAN_MASTERCARD, /* 51-55, 2221-2720; 16 */
    PG_PAN_AMEX,       /* 34, 37; 15 */
    PG_PAN_DISCOVER,   /* 6011, 644-649, 65; 16-19 */
    PG_PAN_DINERS,     /* 36, 38, 300-305; 14-19 */
    PG_PAN_JCB,        /* 3528-3589; 16-19 */
    PG_PAN_UNIONPAY,   /* 62; 16-19 */
    PG_PAN_MAESTRO     /* 50, 56-69; 13-19 (what the brands above leave) */
};

/* "visa", "mastercard", "amex", "discover", "diners", "jcb", "unionpay",
 * "maestro". */
const char *pg_pan_brand_name(enum pg_pan_brand b);

struct pg_pan_match {
    size_t off;      /* first digit, from the start of the buffer */
    size_t len;      /* bytes up to the last digit, separators included */
    uint8_t ndigits; /* 13-19 */
    enum pg_pan_brand brand;
    char last4[5]; /* NUL-terminated: safe to log and to show the agent */
};

/* Finds the first card number in buf[0..len). True and *m filled, or false
 * (*m untouched). buf may be NULL when len is 0. Pure; any thread. */
bool pg_pan_find(const char *buf, size_t len, struct pg_pan_match *m);

/* Copies in[0..len) to out with the digits of every card number replaced by
 * '*' except the last four; separators stay where they were, so the output
 * has exactly len bytes ("4242-4242-4242-4242" → "****-****-****-4242") and
 * no NUL is added. out may be in itself. Returns how many numbers were
 * masked (>= 0), or PG_ETOOBIG when cap < len (nothing written). */
PG_WUR int pg_pan_mask(const char *in, size_t len, char *out, size_t cap);

#endif /* PG_POLICY_PAN_H */
