/* The rules a human's password must meet before it is hashed: what bcrypt
 * can hold (72 bytes, no NUL), and enough of it to resist guessing. The
 * `payguard user passwd` verb applies them; the hash goes into the config. */
#include "common/pg.h"
#include "auth/human.h"

/* Length of the UTF-8 sequence starting at s[0] (at most n bytes), or 0 when
 * it is malformed: overlong forms, surrogates and code points past U+10FFFF
 * included. *cp gets the code point. */
static size_t utf8_seq(const unsigned char *s, size_t n, uint32_t *cp)
{
    uint32_t c = s[0], min;
    size_t len;

    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2, c &= 0x1f, min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3, c &= 0x0f, min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4, c &= 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        c = (c << 6) | (s[i] & 0x3f);
    }
    if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
        return 0;
    *cp = c;
    return len;
}

int pg_password_check(struct pg_slice pw, const char **why)
{
    const unsigned char *p = (const unsigned char *)pw.ptr;
    size_t chars = 0;
    bool letter = false, digit = false;
    const char *msg = NULL;

    if (pw.len > PG_PASSWORD_MAX_BYTES) {
        msg = "the password is longer than 72 bytes, and bcrypt would ignore the rest";
        goto refuse;
    }
    for (size_t i = 0; i < pw.len;) {
        uint32_t cp;
        size_t len = utf8_seq(p + i, pw.len - i, &cp);
        if (len == 0) {
            msg = "the password is not valid UTF-8";
            goto refuse;
        }
        if (cp == 0) {
            msg = "the password holds a NUL byte";
            goto refuse;
        }
        if (cp < 0x20 || cp == 0x7f) {
            msg = "the password holds a control character";
            goto refuse;
        }
        /* Beyond ASCII, a character counts as a letter: scripts other than
         * Latin are letters far more often than not, and payguard carries no
         * Unicode tables. Digits are ASCII 0-9. */
        if ((cp >= 'A' && cp <= 'Z') || (cp >= 'a' && cp <= 'z') || cp >= 0x80)
            letter = true;
        else if (cp >= '0' && cp <= '9')
            digit = true;
        chars++;
        i += len;
    }
    if (chars < PG_PASSWORD_MIN_CHARS)
        msg = "the password is shorter than 10 characters";
    else if (!letter)
        msg = "the password needs at least one letter";
    else if (!digit)
        msg = "the password needs at least one digit";
    else
        return 0;
refuse:
    if (why)
        *why = msg;
    return PG_EPARSE;
}
