/* The URL guard: one strict reading of a callback URL, and the address
 * blocks it must stay out of. Strict because the rail (or payguard's own
 * webhook sender) parses the URL again later: anything two parsers could read
 * differently (userinfo, backslashes, odd number forms, percent-encoded
 * hosts) is refused rather than interpreted. */
#include "common/pg.h"
#include "policy/urlguard.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* --- address blocks -------------------------------------------------------- */

struct block {
    uint8_t net[16];
    uint8_t prefix;
    const char *reason;
};

/* First match names the reason, so the broadcast address precedes 240/4. */
static const struct block v4_blocks[] = {
    {{0}, 8, "unspecified address"},
    {{10}, 8, "private address"},
    {{100, 64}, 10, "shared address (carrier-grade NAT)"},
    {{127}, 8, "loopback address"},
    {{169, 254}, 16, "link-local address"},
    {{172, 16}, 12, "private address"},
    {{192, 0, 0}, 24, "IETF protocol assignment address"},
    {{192, 0, 2}, 24, "documentation address"},
    {{192, 88, 99}, 24, "6to4 relay address"},
    {{192, 168}, 16, "private address"},
    {{198, 18}, 15, "benchmarking address"},
    {{198, 51, 100}, 24, "documentation address"},
    {{203, 0, 113}, 24, "documentation address"},
    {{224}, 4, "multicast address"},
    {{255, 255, 255, 255}, 32, "broadcast address"},
    {{240}, 4, "reserved address"},
};

/* Blocks inside 2000::/3 (everything outside it is refused anyway). */
static const struct block v6_blocks_in_global[] = {
    {{0x20, 0x01, 0x0d, 0xb8}, 32, "documentation address"},
    {{0x20, 0x01, 0x00, 0x00}, 23, "IETF protocol assignment address"},
    {{0x3f, 0xff, 0x00}, 20, "documentation address"},
};

/* Names for the common blocks outside 2000::/3, for clearer messages. */
static const struct block v6_blocks_outside[] = {
    {{0xfc}, 7, "unique local address"},
    {{0xfe, 0x80}, 10, "link-local address"},
    {{0xfe, 0xc0}, 10, "site-local address"},
    {{0xff}, 8, "multicast address"},
};

static bool prefix_match(const uint8_t *a, const uint8_t *net, unsigned prefix)
{
    unsigned full = prefix / 8, rest = prefix % 8;
    if (memcmp(a, net, full) != 0)
        return false;
    if (rest == 0)
        return true;
    uint8_t mask = (uint8_t)(0xffu << (8 - rest));
    return (a[full] & mask) == (net[full] & mask);
}

static const char *v4_reason(const uint8_t a[4])
{
    for (size_t i = 0; i < PG_ARRAY_LEN(v4_blocks); i++)
        if (prefix_match(a, v4_blocks[i].net, v4_blocks[i].prefix))
            return v4_blocks[i].reason;
    return NULL;
}

/* What the built-in rules say about an IPv6 address. `form` names a wrapper
 * that carries an IPv4 address (then v4 holds it), so the message can say
 * what the wrapper hides. */
struct v6_verdict {
    const char *reason; /* NULL: allowed */
    const char *form;   /* "IPv4-mapped address", ... or NULL */
    uint8_t v4[4];
};

static void v6_judge(const uint8_t a[16], struct v6_verdict *v)
{
    static const uint8_t zero[16];
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    static const uint8_t nat64[12] = {0, 0x64, 0xff, 0x9b};
    static const uint8_t nat64_local[6] = {0, 0x64, 0xff, 0x9b, 0, 1};

    memset(v, 0, sizeof(*v));
    if (memcmp(a, zero, 16) == 0) {
        v->reason = "unspecified address";
        return;
    }
    if (memcmp(a, zero, 15) == 0 && a[15] == 1) {
        v->reason = "loopback address";
        return;
    }
    if (memcmp(a, mapped, 12) == 0) {
        v->form = "IPv4-mapped address";
        memcpy(v->v4, a + 12, 4);
    } else if (memcmp(a, zero, 12) == 0) {
        v->form = "IPv4-compatible address";
        memcpy(v->v4, a + 12, 4);
    } else if (memcmp(a, nat64, 12) == 0) {
        v->form = "NAT64 address";
        memcpy(v->v4, a + 12, 4);
    } else if (memcmp(a, nat64_local, 6) == 0) {
        /* RFC 8215 local-use prefix: where the IPv4 sits depends on the
           operator's prefix length, so there is nothing certain to name. */
        v->reason = "NAT64 address";
        return;
    } else if (a[0] == 0x20 && a[1] == 0x02) {
        v->form = "6to4 address";
        memcpy(v->v4, a + 2, 4);
    } else if (a[0] == 0x20 && a[1] == 0x01 && a[2] == 0 && a[3] == 0) {
        /* Teredo carries the client's IPv4 inverted in the last 32 bits. */
        v->form = "Teredo address";
        for (int i = 0; i < 4; i++)
            v->v4[i] = (uint8_t)~a[12 + i];
    }
    if (v->form) {
        v->reason = v->form;
        return;
    }
    if ((a[0] & 0xe0) == 0x20) {
        for (size_t i = 0; i < PG_ARRAY_LEN(v6_blocks_in_global); i++)
            if (prefix_match(a, v6_blocks_in_global[i].net, v6_blocks_in_global[i].prefix)) {
                v->reason = v6_blocks_in_global[i].reason;
                return;
            }
        return; /* global unicast */
    }
    for (size_t i = 0; i < PG_ARRAY_LEN(v6_blocks_outside); i++)
        if (prefix_match(a, v6_blocks_outside[i].net, v6_blocks_outside[i].prefix)) {
            v->reason = v6_blocks_outside[i].reason;
            return;
        }
    v->reason = "address outside IPv6 global unicast";
}

/* The family and address bytes of a sockaddr; false for other families. */
static bool sa_bytes(const struct sockaddr *sa, sa_family_t *fam, uint8_t out[16])
{
    if (!sa)
        return false;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const void *)sa;
        memcpy(out, &in->sin_addr, 4);
        *fam = AF_INET;
        return true;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const void *)sa;
        memcpy(out, &in6->sin6_addr, 16);
        *fam = AF_INET6;
        return true;
    }
    return false;
}

bool pg_cidr_contains(const struct pg_cidr *c, const struct sockaddr *sa)
{
    sa_family_t fam;
    uint8_t a[16];
    if (!c || !sa_bytes(sa, &fam, a) || fam != c->family)
        return false;
    return prefix_match(a, c->addr, c->prefix);
}

/* Longest prefix among the blocks of `list` holding the address, -1 when
 * none does. */
static int best_prefix(const struct pg_cidr *list, uint32_t n, sa_family_t fam, const uint8_t *a,
                       const struct pg_cidr **which)
{
    int best = -1;
    for (uint32_t i = 0; i < n; i++)
        if (list[i].family == fam && prefix_match(a, list[i].addr, list[i].prefix) &&
            (int)list[i].prefix > best) {
            best = list[i].prefix;
            *which = &list[i];
        }
    return best;
}

static void put_why(char *why, size_t whylen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void put_why(char *why, size_t whylen, const char *fmt, ...)
{
    if (!why || whylen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(why, whylen, fmt, ap);
    va_end(ap);
    if (n < 0)
        why[0] = '\0';
}

static void cidr_text(const struct pg_cidr *c, char *out, size_t cap)
{
    char a[INET6_ADDRSTRLEN];
    if (!inet_ntop(c->family, c->addr, a, sizeof(a)))
        a[0] = '\0';
    put_why(out, cap, "%s/%u", a, (unsigned)c->prefix);
}

/* The verdict with its static reason, shared by pg_urlguard_addr_ok and the
 * literal hosts of pg_url_check. */
static bool addr_judge(const struct pg_urlguard_opts *o, const struct sockaddr *sa,
                       const char **reason, char *why, size_t whylen)
{
    sa_family_t fam;
    uint8_t a[16];
    char text[INET6_ADDRSTRLEN];

    if (why && whylen)
        why[0] = '\0';
    if (!sa_bytes(sa, &fam, a)) {
        *reason = "address family not supported";
        put_why(why, whylen, "%s", *reason);
        return false;
    }
    if (!inet_ntop(fam, a, text, sizeof(text)))
        text[0] = '\0';

    if (o) {
        const struct pg_cidr *deny = NULL, *allow = NULL;
        int d = best_prefix(o->deny, o->ndeny, fam, a, &deny);
        int al = best_prefix(o->allow, o->nallow, fam, a, &allow);
        if (d >= 0 && d >= al) {
            char c[INET6_ADDRSTRLEN + 5];
            cidr_text(deny, c, sizeof(c));
            *reason = "address denied by configuration";
            put_why(why, whylen, "%s %s (%s)", *reason, text, c);
            return false;
        }
        if (al >= 0)
            return true; /* the operator's exception, more specific than any deny */
    }

    if (fam == AF_INET) {
        *reason = v4_reason(a);
        if (!*reason)
            return true;
        put_why(why, whylen, "%s %s", *reason, text);
        return false;
    }

    struct v6_verdict v;
    v6_judge(a, &v);
    if (!v.reason)
        return true;
    const char *inner = v.form ? v4_reason(v.v4) : NULL;
    if (inner) {
        char t4[INET_ADDRSTRLEN];
        if (!inet_ntop(AF_INET, v.v4, t4, sizeof(t4)))
            t4[0] = '\0';
        *reason = inner;
        put_why(why, whylen, "%s %s (in %s %s)", inner, t4, v.form, text);
    } else {
        *reason = v.reason;
        put_why(why, whylen, "%s %s", v.reason, text);
    }
    return false;
}

bool pg_urlguard_addr_ok(const struct pg_urlguard_opts *o, const struct sockaddr *sa, char *why,
                         size_t whylen)
{
    const char *reason = NULL;
    return addr_judge(o, sa, &reason, why, whylen);
}

/* --- text forms ------------------------------------------------------------- */

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_hex(char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static bool is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static char lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

/* Dotted-quad IPv4 as inet_pton reads it and nothing looser: four parts of
 * 1-3 digits, each <= 255, no leading zeros. The looser forms (127.1, 0x7f,
 * 0177) are read differently by different resolvers, which is the point of
 * refusing them. Then inet_pton must agree. */
static bool parse_v4(const char *s, size_t n, uint8_t out[4])
{
    size_t i = 0;
    for (int part = 0; part < 4; part++) {
        if (part > 0) {
            if (i >= n || s[i] != '.')
                return false;
            i++;
        }
        size_t start = i;
        unsigned v = 0;
        while (i < n && is_digit(s[i]) && i - start < 4)
            v = v * 10 + (unsigned)(s[i++] - '0');
        size_t len = i - start;
        if (len == 0 || len > 3 || v > 255 || (len > 1 && s[start] == '0'))
            return false;
        out[part] = (uint8_t)v;
    }
    if (i != n)
        return false;
    char z[INET_ADDRSTRLEN];
    uint8_t check[4];
    memcpy(z, s, n);
    z[n] = '\0';
    return inet_pton(AF_INET, z, check) == 1 && memcmp(check, out, 4) == 0;
}

/* A bracket-less IPv6 literal: hex digits, ':' and '.' (an embedded IPv4
 * tail), at most INET6_ADDRSTRLEN - 1 bytes, accepted by inet_pton. */
static bool parse_v6(const char *s, size_t n, uint8_t out[16])
{
    char z[INET6_ADDRSTRLEN];
    if (n == 0 || n >= sizeof(z))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!is_hex(s[i]) && s[i] != ':' && s[i] != '.')
            return false;
    memcpy(z, s, n);
    z[n] = '\0';
    return inet_pton(AF_INET6, z, out) == 1;
}

/* Digits only, no leading zeros (except "0"), value <= max. */
static bool parse_small_uint(const char *s, size_t n, unsigned max, unsigned *out)
{
    if (n == 0 || n > 5 || (n > 1 && s[0] == '0'))
        return false;
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!is_digit(s[i]))
            return false;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v > max)
        return false;
    *out = v;
    return true;
}

/* --- CIDRs and options -------------------------------------------------------- */

int pg_cidr_parse(struct pg_slice s, struct pg_cidr *out, const char **why)
{
    const char *w = NULL;
    struct pg_cidr c;
    memset(&c, 0, sizeof(c));

    if (!s.ptr || s.len == 0) {
        w = "empty address block";
        goto fail;
    }
    const char *slash = memchr(s.ptr, '/', s.len);
    size_t alen = slash ? (size_t)(slash - s.ptr) : s.len;
    if (memchr(s.ptr, '%', alen)) {
        w = "zone ids are not allowed in an address block";
        goto fail;
    }
    unsigned width;
    if (memchr(s.ptr, ':', alen)) {
        if (!parse_v6(s.ptr, alen, c.addr)) {
            w = "not an IPv6 address";
            goto fail;
        }
        c.family = AF_INET6;
        width = 128;
    } else {
        if (!parse_v4(s.ptr, alen, c.addr)) {
            w = "not a dotted-quad IPv4 address";
            goto fail;
        }
        c.family = AF_INET;
        width = 32;
    }
    unsigned prefix = width;
    if (slash && !parse_small_uint(slash + 1, s.len - alen - 1, width, &prefix)) {
        w = "prefix length must be digits within the address width, without leading zeros";
        goto fail;
    }
    c.prefix = (uint8_t)prefix;
    /* Bits past the prefix would be silently ignored by the match; they are
       more likely a typo ("10.0.0.1/8" for "10.0.0.1/32") than intended. */
    for (unsigned bit = prefix; bit < width; bit++)
        if (c.addr[bit / 8] & (0x80u >> (bit % 8))) {
            w = "address has bits set past the prefix length";
            goto fail;
        }
    *out = c;
    if (why)
        *why = NULL;
    return 0;
fail:
    if (why)
        *why = w;
    return PG_EPARSE;
}

int pg_urlguard_add_port(struct pg_urlguard_opts *o, uint32_t port)
{
    if (port == 0 || port > 65535)
        return PG_ERANGE;
    for (uint32_t i = 0; i < o->nports; i++)
        if (o->ports[i] == port)
            return 0;
    if (o->nports >= PG_URLGUARD_MAX_PORTS)
        return PG_ETOOBIG;
    o->ports[o->nports++] = (uint16_t)port;
    return 0;
}

static int add_cidr(struct pg_cidr *list, uint32_t *n, struct pg_slice s, const char **why)
{
    struct pg_cidr c;
    int rc = pg_cidr_parse(s, &c, why);
    if (rc < 0)
        return rc;
    if (*n >= PG_URLGUARD_MAX_CIDRS) {
        if (why)
            *why = "too many address blocks";
        return PG_ETOOBIG;
    }
    list[(*n)++] = c;
    return 0;
}

int pg_urlguard_add_deny(struct pg_urlguard_opts *o, struct pg_slice cidr, const char **why)
{
    return add_cidr(o->deny, &o->ndeny, cidr, why);
}

int pg_urlguard_add_allow(struct pg_urlguard_opts *o, struct pg_slice cidr, const char **why)
{
    return add_cidr(o->allow, &o->nallow, cidr, why);
}

static bool port_allowed(const struct pg_urlguard_opts *o, unsigned port)
{
    if (!o || o->nports == 0)
        return port == 443;
    for (uint32_t i = 0; i < o->nports; i++)
        if (o->ports[i] == port)
            return true;
    return false;
}

/* --- URLs ------------------------------------------------------------------- */

static bool refuse(struct pg_url_result *r, const char *reason)
{
    r->ok = false;
    r->reason = reason;
    put_why(r->why, sizeof(r->why), "%s", reason);
    return false;
}

/* Names that never leave the machine or the site, refused before any
 * resolver sees them (a resolver may answer them from /etc/hosts or mDNS). */
static bool local_name(const char *h, size_t n)
{
    static const struct pg_slice names[] = {
        PG_SLICE_INIT("localhost"), PG_SLICE_INIT("local"),     PG_SLICE_INIT("localdomain"),
        PG_SLICE_INIT("internal"),  PG_SLICE_INIT("home.arpa"),
    };
    for (size_t i = 0; i < PG_ARRAY_LEN(names); i++) {
        size_t k = names[i].len;
        if (n == k && memcmp(h, names[i].ptr, k) == 0)
            return true;
        if (n > k && h[n - k - 1] == '.' && memcmp(h + n - k, names[i].ptr, k) == 0)
            return true;
    }
    return false;
}

/* A last label that a WHATWG parser (and inet_aton) would read as a number:
 * all digits, or 0x followed by hex digits. Such a host is an IPv4 address
 * or nothing. */
static bool numeric_label(const char *s, size_t n)
{
    if (n >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        for (size_t i = 2; i < n; i++)
            if (!is_hex(s[i]))
                return false;
        return true;
    }
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!is_digit(s[i]))
            return false;
    return true;
}

static bool check_name(struct pg_url_result *r, const char *h, size_t n)
{
    /* One trailing dot names the root explicitly; it is the same host. */
    if (n > 0 && h[n - 1] == '.')
        n--;
    if (n == 0)
        return refuse(r, "host is empty");
    if (n > PG_URL_HOST_MAX)
        return refuse(r, "host name is longer than 253 bytes");
    size_t labels = 0, start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && h[i] != '.')
            continue;
        size_t len = i - start;
        if (len == 0)
            return refuse(r, "host name has an empty label");
        if (len > 63)
            return refuse(r, "host name has a label longer than 63 bytes");
        if (h[start] == '-' || h[i - 1] == '-')
            return refuse(r, "host name label starts or ends with '-'");
        labels++;
        start = i + 1;
    }
    for (size_t i = 0; i < n; i++)
        r->host[i] = lower(h[i]);
    r->host[n] = '\0';
    if (local_name(r->host, n)) {
        r->ok = false;
        r->reason = "local host names are not allowed";
        put_why(r->why, sizeof(r->why), "%s: %s", r->reason, r->host);
        return false;
    }
    /* A single label goes through the resolver's search list and may land
       on a site-local name. */
    if (labels < 2)
        return refuse(r, "host must be a fully qualified name");
    r->kind = PG_URL_HOST_NAME;
    return true;
}

bool pg_url_check(const struct pg_urlguard_opts *o, struct pg_slice url, struct pg_url_result *r)
{
    memset(r, 0, sizeof(*r));
    r->port = 443;
    const char *u = url.ptr;
    size_t n = url.len;

    if (!u || n == 0)
        return refuse(r, "URL is empty");
    if (n > PG_URL_MAX)
        return refuse(r, "URL is too long");
    for (size_t i = 0; i < n; i++) {
        unsigned char b = (unsigned char)u[i];
        if (b >= 0x80)
            return refuse(r, "URL must be ASCII");
        if (b <= 0x20 || b == 0x7f)
            return refuse(r, "whitespace or control characters are not allowed in a URL");
        if (b == '\\')
            return refuse(r, "backslash is not allowed in a URL");
        if (b == '#')
            return refuse(r, "fragment is not allowed");
    }
    if (n < 8 || !pg_slice_eq_nocase(pg_slice_of(u, 5), PG_SLICE("https")) ||
        memcmp(u + 5, "://", 3) != 0)
        return refuse(r, "scheme must be https");

    const char *rest = u + 8;
    size_t rlen = n - 8;
    /* Userinfo: whatever precedes the path. A '?' ends the authority for
       RFC 3986, not for every parser, so an '@' there counts too. */
    const char *slash = memchr(rest, '/', rlen);
    size_t before_path = slash ? (size_t)(slash - rest) : rlen;
    for (size_t i = 0; i < before_path; i++)
        if (rest[i] == '@' ||
            (rest[i] == '%' && i + 2 < before_path && rest[i + 1] == '4' && rest[i + 2] == '0'))
            return refuse(r, "userinfo is not allowed");

    size_t alen = 0;
    while (alen < rlen && rest[alen] != '/' && rest[alen] != '?')
        alen++;
    const char *auth = rest;
    if (alen == 0)
        return refuse(r, "host is empty");

    const char *host, *port = NULL;
    size_t hlen, plen = 0;
    bool bracketed = auth[0] == '[';
    if (bracketed) {
        const char *close = memchr(auth, ']', alen);
        if (!close)
            return refuse(r, "IPv6 literal is not closed with ']'");
        host = auth + 1;
        hlen = (size_t)(close - host);
        if (memchr(host, '%', hlen))
            return refuse(r, "IPv6 zone ids are not allowed");
        size_t after = (size_t)(close + 1 - auth);
        if (after < alen) {
            if (auth[after] != ':')
                return refuse(r, "unexpected characters after the IPv6 literal");
            port = auth + after + 1;
            plen = alen - after - 1;
        }
    } else {
        const char *colon = memchr(auth, ':', alen);
        host = auth;
        hlen = colon ? (size_t)(colon - auth) : alen;
        if (colon) {
            port = colon + 1;
            plen = alen - hlen - 1;
        }
    }
    if (memchr(auth, '%', alen))
        return refuse(r, "percent-encoding is not allowed in the host");
    if (hlen == 0)
        return refuse(r, "host is empty");

    if (port) {
        unsigned p;
        if (plen == 0)
            return refuse(r, "port is empty");
        for (size_t i = 0; i < plen; i++)
            if (!is_digit(port[i]))
                return refuse(r, "port must be digits only");
        if (plen > 1 && port[0] == '0')
            return refuse(r, "port has leading zeros");
        if (!parse_small_uint(port, plen, 65535, &p) || p == 0)
            return refuse(r, "port must be 1-65535");
        r->port = (uint16_t)p;
    }

    if (bracketed) {
        uint8_t a6[16];
        if (!parse_v6(host, hlen, a6))
            return refuse(r, "invalid IPv6 literal");
        struct sockaddr_in6 *s6 = (void *)&r->addr;
        s6->sin6_family = AF_INET6;
        memcpy(&s6->sin6_addr, a6, 16);
        s6->sin6_port = htons(r->port);
        for (size_t i = 0; i < hlen; i++)
            r->host[i] = lower(host[i]);
        r->host[hlen] = '\0';
        r->kind = PG_URL_HOST_IPV6;
    } else {
        for (size_t i = 0; i < hlen; i++)
            if (!is_alpha(host[i]) && !is_digit(host[i]) && host[i] != '-' && host[i] != '.')
                return refuse(r, "host may hold only letters, digits, '-' and '.'");
        size_t end = hlen;
        if (host[end - 1] == '.')
            end--;
        size_t last = end;
        while (last > 0 && host[last - 1] != '.')
            last--;
        if (numeric_label(host + last, end - last)) {
            uint8_t a4[4];
            /* "1.2.3.4." is a name to some parsers and an address to others. */
            if (end != hlen || !parse_v4(host, hlen, a4))
                return refuse(r, "host looks like a number but is not a dotted-quad IPv4 address");
            struct sockaddr_in *s4 = (void *)&r->addr;
            s4->sin_family = AF_INET;
            memcpy(&s4->sin_addr, a4, 4);
            s4->sin_port = htons(r->port);
            memcpy(r->host, host, hlen);
            r->host[hlen] = '\0';
            r->kind = PG_URL_HOST_IPV4;
        } else if (!check_name(r, host, hlen)) {
            return false;
        }
    }

    if (!port_allowed(o, r->port)) {
        r->ok = false;
        r->reason = "port is not allowed";
        put_why(r->why, sizeof(r->why), "port %u is not allowed", (unsigned)r->port);
        return false;
    }
    if (r->kind != PG_URL_HOST_NAME) {
        const char *reason = NULL;
        if (!addr_judge(o, (const struct sockaddr *)&r->addr, &reason, r->why, sizeof(r->why))) {
            r->ok = false;
            r->reason = reason;
            return false;
        }
    }
    r->ok = true;
    return true;
}
