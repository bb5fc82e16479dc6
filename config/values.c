/* Syntax of the scalar values in payguard.yaml: addresses, URLs, hashes,
 * amounts, durations, times, names. No YAML here: each check takes a string
 * and returns NULL or a phrase saying what is wrong, so the walker can put the
 * position and the config path in front of it. */
#include "common/pg.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config_int.h"

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}
static bool is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
static bool is_alnum(char c)
{
    return is_digit(c) || is_alpha(c);
}

/* Decimal digits of s[0..len) as a number no larger than max. */
static bool parse_uint(const char *s, size_t len, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    if (len == 0 || len > 19)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (!is_digit(s[i]))
            return false;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (v > max)
        return false;
    *out = v;
    return true;
}

/* ---- listen addresses ---------------------------------------------- */

const char *cfg_addr_check(const char *s, struct sockaddr_storage *sa, socklen_t *salen)
{
    char host[INET6_ADDRSTRLEN + 1];
    const char *hp, *port;
    size_t hlen;
    bool v6 = false;
    uint64_t pv;

    if (!*s)
        return "empty address (expected IP:PORT, e.g. 127.0.0.1:8402)";
    if (s[0] == '[') {
        const char *rb = strchr(s, ']');
        if (!rb)
            return "missing ']' after the IPv6 address (expected [ADDR]:PORT)";
        hlen = (size_t)(rb - s - 1);
        if (rb[1] != ':')
            return "missing :PORT after the address (e.g. [::1]:8402)";
        hp = s + 1;
        port = rb + 2;
        v6 = true;
    } else {
        const char *colon = strrchr(s, ':');
        if (!colon)
            return "missing :PORT (expected IP:PORT, e.g. 127.0.0.1:8402)";
        if (memchr(s, ':', (size_t)(colon - s)))
            return "IPv6 addresses must be in brackets (e.g. [::1]:8402)";
        hlen = (size_t)(colon - s);
        hp = s;
        port = colon + 1;
    }
    if (hlen == 0)
        return "missing host (expected IP:PORT, e.g. 127.0.0.1:8402)";
    if (hlen >= sizeof host)
        return "host must be a numeric IP address, not a name "
               "(e.g. 127.0.0.1:8402 or [::1]:8402)";
    memcpy(host, hp, hlen);
    host[hlen] = '\0';

    if (!parse_uint(port, strlen(port), 65535, &pv))
        return *port ? "port must be a number from 0 to 65535" : "missing port number after ':'";

    memset(sa, 0, sizeof *sa);
    if (v6) {
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)sa;
        if (inet_pton(AF_INET6, host, &a6->sin6_addr) != 1)
            return "not a valid IPv6 address";
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)pv);
        *salen = (socklen_t)sizeof *a6;
    } else {
        struct sockaddr_in *a4 = (struct sockaddr_in *)sa;
        if (inet_pton(AF_INET, host, &a4->sin_addr) != 1) {
            for (size_t i = 0; i < hlen; i++)
                if (is_alpha(host[i]))
                    return "host must be a numeric IP address, not a name "
                           "(e.g. 127.0.0.1:8402 or [::1]:8402)";
            return "not a valid IPv4 address (expected four numbers like 127.0.0.1)";
        }
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)pv);
        *salen = (socklen_t)sizeof *a4;
    }
    return NULL;
}

int pg_addr_parse(const char *text, struct pg_addr *out)
{
    struct pg_addr a;

    if (!text || !out)
        return PG_EPARSE;
    memset(&a, 0, sizeof a);
    if (cfg_addr_check(text, &a.sa, &a.salen))
        return PG_EPARSE;
    a.text = strdup(text);
    if (!a.text)
        return PG_ENOMEM;
    *out = a;
    return 0;
}

void pg_addr_clear(struct pg_addr *addr)
{
    if (!addr)
        return;
    free(addr->text);
    memset(addr, 0, sizeof *addr);
}

/* ---- upstream and webhook URLs --------------------------------------- */

static bool has_prefix_nocase(const char *s, const char *p)
{
    for (; *p; s++, p++) {
        char c = *s;
        if (c >= 'A' && c <= 'Z')
            c = (char)(c + 32);
        if (c != *p)
            return false;
    }
    return true;
}

/* A DNS name or dotted IPv4: letters, digits, '-', '_', non-empty labels. */
static const char *host_check(const char *h, size_t len)
{
    bool numeric = true;
    size_t label = 0;

    if (len > 253)
        return "host name is longer than 253 characters";
    for (size_t i = 0; i < len; i++) {
        char c = h[i];
        if (c == '.') {
            if (label == 0)
                return "host name has an empty label (\"..\" or a leading/trailing dot)";
            label = 0;
            continue;
        }
        if (!is_alnum(c) && c != '-' && c != '_')
            return c == '%' ? "host must not be percent-encoded"
                            : "host may only contain letters, digits, '-', '_' and '.'";
        if (!is_digit(c))
            numeric = false;
        label++;
    }
    if (label == 0)
        return "host name has an empty label (\"..\" or a leading/trailing dot)";
    if (numeric) {
        char buf[16];
        struct in_addr ia;
        if (len >= sizeof buf)
            return "not a valid IPv4 address";
        memcpy(buf, h, len);
        buf[len] = '\0';
        if (inet_pton(AF_INET, buf, &ia) != 1)
            return "not a valid IPv4 address (expected four numbers like 10.0.0.1)";
    }
    return NULL;
}

const char *cfg_url_check(const char *s, struct cfg_url *u)
{
    const char *p, *end, *hp;
    uint64_t pv;

    memset(u, 0, sizeof *u);
    if (has_prefix_nocase(s, "https://")) {
        u->tls = true;
        p = s + 8;
    } else if (has_prefix_nocase(s, "http://")) {
        p = s + 7;
    } else {
        return "must be an https:// URL (e.g. https://api.stripe.com)";
    }
    end = p + strcspn(p, "/?#");
    if (memchr(p, '@', (size_t)(end - p)))
        return "must not contain user information (user@): credentials belong in secret:";
    for (const char *c = p; c < end; c++)
        if ((unsigned char)*c <= ' ' || (unsigned char)*c >= 0x7f)
            return "host must not contain spaces, control or non-ASCII characters";

    if (*p == '[') {
        const char *rb = memchr(p, ']', (size_t)(end - p));
        char buf[INET6_ADDRSTRLEN + 1];
        struct in6_addr a6;
        if (!rb)
            return "missing ']' after the IPv6 address";
        u->host = p + 1;
        u->hostlen = (size_t)(rb - p - 1);
        if (u->hostlen == 0 || u->hostlen >= sizeof buf)
            return "not a valid IPv6 address";
        memcpy(buf, u->host, u->hostlen);
        buf[u->hostlen] = '\0';
        if (inet_pton(AF_INET6, buf, &a6) != 1)
            return "not a valid IPv6 address (zone ids like %eth0 are not supported)";
        u->ipv6 = true;
        hp = rb + 1;
        if (hp != end && *hp != ':')
            return "unexpected text after ']' (expected :PORT or the end)";
    } else {
        const char *colon = memchr(p, ':', (size_t)(end - p));
        hp = colon ? colon : end;
        u->host = p;
        u->hostlen = (size_t)(hp - p);
        if (u->hostlen == 0)
            return "missing host";
        const char *why = host_check(u->host, u->hostlen);
        if (why)
            return why;
    }
    if (hp < end) { /* ":PORT" */
        if (!parse_uint(hp + 1, (size_t)(end - hp - 1), 65535, &pv) || pv == 0)
            return "port must be a number from 1 to 65535";
        u->port = (uint16_t)pv;
        u->default_port = u->port == (u->tls ? 443 : 80);
    } else {
        u->port = u->tls ? 443 : 80;
        u->default_port = true;
    }
    u->rest = end;
    if (strchr(end, '#'))
        return "must not have a #fragment";
    for (const char *c = end; *c; c++)
        if ((unsigned char)*c <= ' ' || (unsigned char)*c >= 0x7f)
            return "must not contain spaces, control or non-ASCII characters";
    return NULL;
}

/* ---- names, hashes, codes ------------------------------------------- */

const char *cfg_name_check(const char *s)
{
    size_t len = strlen(s);
    if (len > 64)
        return "is longer than 64 characters";
    if (!is_alnum(s[0]))
        return "must start with a letter or a digit";
    for (size_t i = 0; i < len; i++)
        if (!is_alnum(s[i]) && s[i] != '_' && s[i] != '-' && s[i] != '.')
            return "may only contain letters, digits, '_', '-' and '.'";
    return NULL;
}

const char *cfg_env_name_check(const char *s)
{
    if (!is_alpha(s[0]) && s[0] != '_')
        return "environment variable name must start with a letter or '_'";
    for (const char *c = s; *c; c++)
        if (!is_alnum(*c) && *c != '_')
            return "environment variable name may only contain letters, digits and '_'";
    return NULL;
}

static bool is_bcrypt64(char c)
{
    return is_alnum(c) || c == '.' || c == '/';
}

const char *cfg_bcrypt_check(const char *s)
{
    size_t len = strlen(s);
    if (!(s[0] == '$' && s[1] == '2' && (s[2] == 'a' || s[2] == 'b' || s[2] == 'y') && s[3] == '$'))
        return "must be a bcrypt hash (\"$2b$10$...\", 60 characters)";
    if (len != 60)
        return "is not a complete bcrypt hash (a $2b$ hash is 60 characters long)";
    if (!is_digit(s[4]) || !is_digit(s[5]) || s[6] != '$')
        return "bcrypt hash has a malformed cost (expected \"$2b$NN$\")";
    int cost = (s[4] - '0') * 10 + (s[5] - '0');
    if (cost < 4 || cost > 31)
        return "bcrypt cost must be between 04 and 31";
    for (size_t i = 7; i < len; i++)
        if (!is_bcrypt64(s[i]))
            return "bcrypt hash contains a character outside ./A-Za-z0-9";
    return NULL;
}

const char *cfg_email_check(const char *s)
{
    const char *at = strchr(s, '@');
    if (strlen(s) > 254)
        return "email address is longer than 254 characters";
    if (!at || at == s || !at[1] || strchr(at + 1, '@'))
        return "is not an email address (expected name@domain)";
    for (const char *c = s; *c; c++)
        if ((unsigned char)*c <= ' ' || *c == 0x7f)
            return "email address must not contain spaces or control characters";
    return NULL;
}

/* Amounts are exact decimals in major units. This is their shape only: how
 * many decimals are allowed depends on the currency (2 for usd, 0 for jpy,
 * 3 for kwd), which sections.c checks with pg_money_parse_decimal once it
 * knows which currency applies. */
const char *cfg_decimal_check(const char *s)
{
    size_t i = 0, intd = 0, frac = 0;
    const char *hint = "must be a decimal amount like \"500.00\" (digits, an "
                       "optional '.' and decimals; no sign or exponent)";

    while (is_digit(s[i])) {
        i++;
        intd++;
    }
    if (intd == 0)
        return hint;
    if (s[i] == '.') {
        i++;
        while (is_digit(s[i])) {
            i++;
            frac++;
        }
        if (frac == 0)
            return hint;
    }
    if (s[i])
        return hint;
    if (intd > 15)
        return "is too large (more than 15 digits before the '.')";
    return NULL;
}

const char *cfg_currency_check(const char *s)
{
    if (!(is_alpha(s[0]) && is_alpha(s[1]) && is_alpha(s[2]) && !s[3]))
        return "must be a 3-letter ISO 4217 currency code like usd or eur";
    return NULL;
}

const char *cfg_glob_check(const char *s)
{
    if (strlen(s) > 255)
        return "pattern is longer than 255 characters";
    for (const char *c = s; *c; c++)
        if ((unsigned char)*c <= ' ' || (unsigned char)*c >= 0x7f)
            return "pattern may only contain printable ASCII without spaces";
    return NULL;
}

/* ---- time ------------------------------------------------------------ */

const char *cfg_duration_check(const char *s, uint32_t *seconds)
{
    size_t len = strlen(s);
    uint64_t v, mult;
    const char *hint = "must be a duration like 30s, 5m, 1h or 1d";

    if (len < 2)
        return hint;
    switch (s[len - 1]) {
    case 's':
        mult = 1;
        break;
    case 'm':
        mult = 60;
        break;
    case 'h':
        mult = 3600;
        break;
    case 'd':
        mult = 86400;
        break;
    default:
        return hint;
    }
    if (!parse_uint(s, len - 1, 366 * 86400, &v))
        return hint;
    if (v == 0)
        return "must be longer than 0";
    v *= mult;
    if (v > 366 * 86400)
        return "must be at most 366d";
    *seconds = (uint32_t)v;
    return NULL;
}

const char *cfg_hhmm_check(const char *s, bool allow_2400, uint16_t *minutes)
{
    if (!(is_digit(s[0]) && is_digit(s[1]) && s[2] == ':' && is_digit(s[3]) && is_digit(s[4]) &&
          !s[5]))
        return "must be a time of day as \"HH:MM\" (24-hour clock, e.g. \"08:00\")";
    int h = (s[0] - '0') * 10 + (s[1] - '0');
    int m = (s[3] - '0') * 10 + (s[4] - '0');
    if (allow_2400 && h == 24 && m == 0) {
        *minutes = 1440;
        return NULL;
    }
    if (h > 23 || m > 59)
        return allow_2400 ? "must be between \"00:00\" and \"24:00\""
                          : "must be between \"00:00\" and \"23:59\"";
    *minutes = (uint16_t)(h * 60 + m);
    return NULL;
}

static int day_index(const char *s, size_t len)
{
    static const char names[7][4] = {"mon", "tue", "wed", "thu", "fri", "sat", "sun"};
    if (len != 3)
        return -1;
    for (int i = 0; i < 7; i++) {
        bool eq = true;
        for (size_t j = 0; j < 3; j++) {
            char c = s[j];
            if (c >= 'A' && c <= 'Z')
                c = (char)(c + 32);
            if (c != names[i][j])
                eq = false;
        }
        if (eq)
            return i;
    }
    return -1;
}

/* "mon-fri", "mon,wed,sat", "mon-wed,sat". Ranges run forward within one
 * week so there is exactly one reading of each spelling. */
const char *cfg_days_check(const char *s, uint8_t *mask)
{
    const char *p = s;
    unsigned m = 0;

    while (true) {
        size_t len = strcspn(p, ",");
        const char *dash = memchr(p, '-', len);
        int a, b;
        if (dash) {
            a = day_index(p, (size_t)(dash - p));
            b = day_index(dash + 1, len - (size_t)(dash - p) - 1);
        } else {
            a = b = day_index(p, len);
        }
        if (a < 0 || b < 0)
            return "must list days like \"mon-fri\" or \"mon,wed,sat\" "
                   "(names mon tue wed thu fri sat sun)";
        if (a > b)
            return "day ranges run from Monday to Sunday (write \"fri-sun,mon\", "
                   "not \"fri-mon\")";
        for (int d = a; d <= b; d++) {
            if (m & (1u << d))
                return "names a day twice";
            m |= 1u << d;
        }
        if (!p[len])
            break;
        p += len + 1;
    }
    *mask = (uint8_t)m;
    return NULL;
}

static bool is_leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* RFC 3339 in UTC: "2027-01-01T00:00:00Z". A fraction of a second (as
 * JavaScript's toISOString writes) is allowed and dropped. */
const char *cfg_timestamp_check(const char *s, time_t *out)
{
    static const int mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    static const char shape[] = "dddd-dd-ddTdd:dd:dd";
    const char *hint = "must be a UTC timestamp like 2027-01-01T00:00:00Z";
    size_t i = 0;

    for (; shape[i]; i++) {
        if (shape[i] == 'd' ? !is_digit(s[i]) : s[i] != shape[i])
            return hint;
    }
    if (s[i] == '.') {
        size_t digits = 0;
        for (i++; is_digit(s[i]); i++)
            digits++;
        if (digits == 0 || digits > 9)
            return hint;
    }
    if (s[i] != 'Z' || s[i + 1])
        return hint;
#define NUM2(i) ((s[i] - '0') * 10 + (s[(i) + 1] - '0'))
    int year = NUM2(0) * 100 + NUM2(2), mon = NUM2(5), day = NUM2(8);
    int hour = NUM2(11), min = NUM2(14), sec = NUM2(17);
#undef NUM2
    if (year < 1970 || mon < 1 || mon > 12 || day < 1 || hour > 23 || min > 59 || sec > 59)
        return "is not a valid date and time";
    int dim = mdays[mon - 1] + (mon == 2 && is_leap(year) ? 1 : 0);
    if (day > dim)
        return "is not a valid date (that month is shorter)";

    struct tm tm;
    memset(&tm, 0, sizeof tm);
    tm.tm_year = year - 1900;
    tm.tm_mon = mon - 1;
    tm.tm_mday = day;
    tm.tm_hour = hour;
    tm.tm_min = min;
    tm.tm_sec = sec;
    time_t t = timegm(&tm);
    if (t == (time_t)-1)
        return "is out of range";
    *out = t;
    return NULL;
}

/* The shape of an IANA zone name. The name becomes a path under the tz
 * database directory (zone.c reads it), so it must not be able to climb out
 * of it: no leading '/' or '.', no "/." anywhere, no empty component. */
const char *cfg_timezone_check(const char *s)
{
    size_t len = strlen(s);

    if (strcmp(s, "UTC") == 0)
        return NULL;
    if (len > 128)
        return "timezone name is too long";
    if (s[0] == '/' || s[0] == '.' || s[len - 1] == '/' || strstr(s, "//") || strstr(s, "/."))
        return "must be an IANA timezone name like Europe/Paris, not a path";
    for (const char *c = s; *c; c++) {
        if (!is_alnum(*c) && *c != '_' && *c != '-' && *c != '+' && *c != '/')
            return "must be an IANA timezone name like Europe/Paris";
    }
    return NULL;
}

/* ---- routes ----------------------------------------------------------- */

static bool is_segment_char(char c)
{
    return is_alnum(c) || c == '_' || c == '.' || c == '-';
}

_Static_assert(PG_ROUTE_MAX_SEGMENTS == 16, "the message below names the limit");

/* "/v1/payment_intents/{id}/confirm": each segment literal text or one whole
 * {name}. The proxy matches the request path segment by segment, so what is
 * refused here is what could never match or could match in two ways: a
 * query, percent-encoding, empty or dot segments, a placeholder used twice. */
const char *cfg_route_path_check(const char *s)
{
    const char *names[PG_ROUTE_MAX_SEGMENTS];
    size_t lens[PG_ROUTE_MAX_SEGMENTS], nnames = 0, nseg = 0;

    if (s[0] != '/')
        return "must start with '/' (e.g. /v1/payouts)";
    if (strlen(s) > 512)
        return "is longer than 512 characters";
    if (strchr(s, '?'))
        return "must not have a ?query; routes match the path only";
    if (strchr(s, '%'))
        return "must not be percent-encoded";
    if (strcmp(s, "/") == 0)
        return NULL;
    for (const char *p = s + 1;;) {
        size_t len = strcspn(p, "/");
        if (len == 0)
            return "has an empty segment (\"//\" or a trailing '/')";
        if (++nseg > PG_ROUTE_MAX_SEGMENTS)
            return "has more than 16 segments";
        if (p[0] == '{') {
            if (p[len - 1] != '}' || len < 3)
                return "placeholders are a whole segment like {id}";
            for (size_t i = 1; i + 1 < len; i++)
                if (!is_alnum(p[i]) && p[i] != '_')
                    return "placeholder names may only contain letters, digits and '_'";
            for (size_t i = 0; i < nnames; i++)
                if (lens[i] == len && memcmp(names[i], p, len) == 0)
                    return "uses the same placeholder twice";
            names[nnames] = p;
            lens[nnames++] = len;
        } else {
            if ((len == 1 && p[0] == '.') || (len == 2 && p[0] == '.' && p[1] == '.'))
                return "must not have \".\" or \"..\" segments";
            for (size_t i = 0; i < len; i++) {
                if (p[i] == '{' || p[i] == '}')
                    return "placeholders are a whole segment like {id}";
                if (!is_segment_char(p[i]))
                    return "segments may only contain letters, digits, '_', '.' and '-', "
                           "or be a placeholder like {id}";
            }
        }
        if (!p[len])
            break;
        p += len + 1;
    }
    return NULL;
}

/* A form key as Stripe writes them: "amount", "transfer_data[destination]",
 * "line_items[][price]" (an empty bracket is any list index). */
const char *cfg_form_key_check(const char *s)
{
    size_t i = 0;

    while (is_segment_char(s[i]))
        i++;
    if (i == 0)
        return "is not a form key (like amount or transfer_data[destination]) nor a JSON "
               "pointer (like /amount/value)";
    while (s[i] == '[') {
        i++;
        while (is_segment_char(s[i]))
            i++;
        if (s[i] != ']')
            return "is not a form key: each '[' needs a closing ']' around letters, digits, "
                   "'_', '.' or '-' (like transfer_data[destination] or line_items[][price])";
        i++;
    }
    if (s[i])
        return "is not a form key (like amount or transfer_data[destination]) nor a JSON "
               "pointer (like /amount/value)";
    if (i > 255)
        return "is longer than 255 characters";
    return NULL;
}

/* RFC 6901: "/a/b~1c" names key "b/c" of a. '~' escapes only 0 ('~') and 1
 * ('/'); an empty token names the key "" (legal, if odd). */
const char *cfg_json_pointer_check(const char *s)
{
    if (s[0] != '/')
        return "is not a JSON pointer (it must start with '/', like /amount/value)";
    if (strlen(s) > 255)
        return "is longer than 255 characters";
    for (const char *c = s; *c; c++) {
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            return "must not contain control characters";
        if (*c == '~' && c[1] != '0' && c[1] != '1')
            return "is not a valid JSON pointer: '~' must be followed by 0 or 1 "
                   "(~0 stands for '~', ~1 for '/')";
    }
    return NULL;
}

/* ---- secrets --------------------------------------------------------- */

const char *cfg_sealed_check(const char *s)
{
    static const char pfx[] = "sealed:v1:";
    if (strncmp(s, pfx, sizeof pfx - 1) != 0)
        return "must be a sealed value (\"sealed:v1:...\")";
    const char *b = s + sizeof pfx - 1;
    if (!*b)
        return "sealed value is empty after \"sealed:v1:\"";
    for (const char *c = b; *c; c++)
        if (!is_alnum(*c) && *c != '-' && *c != '_')
            return "sealed value must be base64url (A-Z a-z 0-9 - _) after \"sealed:v1:\"";
    return NULL;
}

enum cfg_secret_kind cfg_secret_classify(const char *s, const char **why)
{
    *why = NULL;
    if (strncmp(s, "env:", 4) == 0) {
        if (!s[4]) {
            *why = "names no environment variable after \"env:\"";
            return CFG_SECRET_BAD;
        }
        *why = cfg_env_name_check(s + 4);
        return *why ? CFG_SECRET_BAD : CFG_SECRET_ENV;
    }
    if (strncmp(s, "sealed:", 7) == 0) {
        if (strncmp(s, "sealed:v1:", 10) != 0) {
            *why = "unknown sealed format (expected \"sealed:v1:...\")";
            return CFG_SECRET_BAD;
        }
        *why = cfg_sealed_check(s);
        return *why ? CFG_SECRET_BAD : CFG_SECRET_SEALED;
    }
    return CFG_SECRET_PLAIN;
}
