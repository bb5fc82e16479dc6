/* The URL guard: callback URLs agents register with a rail, and payguard's
 * own webhook targets. Beyond not crashing, an accepted URL must be https
 * with an authority free of userinfo and escapes, its host must be what the
 * caller will resolve, its port one the operator allows, and a literal
 * address must be public by an independent reading of the block lists.
 * Input: one byte picks the operator settings and what to check (a URL, a
 * CIDR as written in url_guard:, or raw address bytes), then the text. */
#include "common/pg.h"
#include "policy/urlguard.h"
#include "tests/fuzz/helpers.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>

enum { O_DEFAULT, O_PORTS, O_ALLOW, O_DENY, O_COUNT };
static struct pg_urlguard_opts opts[O_COUNT];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *why = NULL;
    int rc = pg_urlguard_add_port(&opts[O_PORTS], 443) | pg_urlguard_add_port(&opts[O_PORTS], 8443) |
             pg_urlguard_add_port(&opts[O_PORTS], 65535) |
             pg_urlguard_add_port(&opts[O_ALLOW], 8443) |
             pg_urlguard_add_allow(&opts[O_ALLOW], PG_SLICE("127.0.0.0/8"), &why) |
             pg_urlguard_add_allow(&opts[O_ALLOW], PG_SLICE("::1"), &why) |
             pg_urlguard_add_allow(&opts[O_ALLOW], PG_SLICE("10.1.0.0/16"), &why) |
             pg_urlguard_add_deny(&opts[O_ALLOW], PG_SLICE("127.0.0.2/32"), &why) |
             pg_urlguard_add_deny(&opts[O_DENY], PG_SLICE("8.8.8.0/24"), &why) |
             pg_urlguard_add_deny(&opts[O_DENY], PG_SLICE("2606:4700::/32"), &why);
    FUZZ_CHECK(rc == 0, "settings: %s", why ? why : "?");
    return 0;
}

/* --- an independent reading of the built-in blocks ------------------------ */

static bool in_v4(const uint8_t a[4], uint32_t net, unsigned prefix)
{
    uint32_t v = (uint32_t)a[0] << 24 | (uint32_t)a[1] << 16 | (uint32_t)a[2] << 8 | a[3];
    uint32_t mask = prefix ? ~0u << (32 - prefix) : 0;
    return (v & mask) == net;
}

static bool v4_public(const uint8_t a[4])
{
    static const struct {
        uint32_t net;
        unsigned prefix;
    } blocked[] = {
        { 0x00000000, 8 },  { 0x0A000000, 8 },  { 0x64400000, 10 }, { 0x7F000000, 8 },
        { 0xA9FE0000, 16 }, { 0xAC100000, 12 }, { 0xC0000000, 24 }, { 0xC0000200, 24 },
        { 0xC0586300, 24 }, { 0xC0A80000, 16 }, { 0xC6120000, 15 }, { 0xC6336400, 24 },
        { 0xCB007100, 24 }, { 0xE0000000, 4 },  { 0xF0000000, 4 },
    };
    for (size_t i = 0; i < PG_ARRAY_LEN(blocked); i++)
        if (in_v4(a, blocked[i].net, blocked[i].prefix))
            return false;
    return true;
}

static bool v6_prefix(const uint8_t a[16], const uint8_t *net, unsigned bits)
{
    for (unsigned i = 0; i < bits; i++) {
        unsigned byte = i / 8, bit = 7 - i % 8;
        if (((a[byte] >> bit) & 1) != ((net[byte] >> bit) & 1))
            return false;
    }
    return true;
}

static bool v6_public(const uint8_t a[16])
{
    static const uint8_t global[16] = { 0x20 }, ietf[16] = { 0x20, 0x01 },
                         doc[16] = { 0x20, 0x01, 0x0d, 0xb8 }, doc2[16] = { 0x3f, 0xff },
                         six4[16] = { 0x20, 0x02 };
    return v6_prefix(a, global, 3) && !v6_prefix(a, ietf, 23) && !v6_prefix(a, doc, 32) &&
           !v6_prefix(a, doc2, 20) && !v6_prefix(a, six4, 16);
}

static bool sa_public(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return v4_public((const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr);
    if (sa->sa_family == AF_INET6)
        return v6_public(((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr);
    return false;
}

/* --- URLs ------------------------------------------------------------------ */

static bool port_allowed(const struct pg_urlguard_opts *o, uint16_t port)
{
    if (o->nports == 0)
        return port == 443;
    for (uint32_t i = 0; i < o->nports; i++)
        if (o->ports[i] == port)
            return true;
    return false;
}

static void check_url(int oi, struct pg_slice url)
{
    const struct pg_urlguard_opts *o = &opts[oi];
    struct pg_url_result r;
    bool ok = pg_url_check(o, url, &r);
    FUZZ_CHECK(ok == r.ok, "return and r.ok differ");
    if (!ok) {
        FUZZ_CHECK(r.reason && r.reason[0], "refused without a reason");
        FUZZ_CHECK(memchr(r.why, '\0', sizeof r.why) && r.why[0], "why is not a message");
        return;
    }
    FUZZ_CHECK(r.reason == NULL && r.why[0] == '\0', "accepted with a reason");
    FUZZ_CHECK(url.len <= PG_URL_MAX, "longer than PG_URL_MAX");
    for (size_t i = 0; i < url.len; i++) {
        unsigned char c = (unsigned char)url.ptr[i];
        FUZZ_CHECK(c > 0x20 && c < 0x7f && c != '\\' && c != '#', "byte %02x at %zu", c, i);
    }
    FUZZ_CHECK(url.len >= 8 && pg_slice_eq_nocase(pg_slice_of(url.ptr, 8), PG_SLICE("https://")),
               "not https: %.*s", (int)url.len, url.ptr);
    size_t a = 8, e = a;
    while (e < url.len && url.ptr[e] != '/' && url.ptr[e] != '?')
        e++;
    struct pg_slice auth = pg_slice_of(url.ptr + a, e - a);
    FUZZ_CHECK(!memchr(auth.ptr, '@', auth.len) && !memchr(auth.ptr, '%', auth.len),
               "userinfo or escape in the authority: %.*s", (int)auth.len, auth.ptr);

    size_t hl = strnlen(r.host, sizeof r.host);
    FUZZ_CHECK(hl > 0 && hl <= PG_URL_HOST_MAX, "host length %zu", hl);
    for (size_t i = 0; i < hl; i++)
        FUZZ_CHECK(!(r.host[i] >= 'A' && r.host[i] <= 'Z'), "host not lower case: %s", r.host);
    FUZZ_CHECK(port_allowed(o, r.port), "port %u is not allowed", r.port);

    /* The host is written in the authority as given (any case, brackets). */
    bool found = false;
    for (size_t i = 0; i + hl <= auth.len && !found; i++)
        found = pg_slice_eq_nocase(pg_slice_of(auth.ptr + i, hl), pg_slice_of(r.host, hl));
    FUZZ_CHECK(found, "host %s not in the authority %.*s", r.host, (int)auth.len, auth.ptr);

    uint8_t raw[16];
    char why[192];
    switch (r.kind) {
    case PG_URL_HOST_IPV4: {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)&r.addr;
        FUZZ_CHECK(inet_pton(AF_INET, r.host, raw) == 1, "IPv4 kind for %s", r.host);
        FUZZ_CHECK(sin->sin_family == AF_INET && memcmp(&sin->sin_addr, raw, 4) == 0 &&
                       ntohs(sin->sin_port) == r.port,
                   "address does not match %s", r.host);
        FUZZ_CHECK(pg_urlguard_addr_ok(o, (const struct sockaddr *)sin, why, sizeof why),
                   "literal the address check refuses: %s", why);
        if (oi == O_DEFAULT || oi == O_PORTS)
            FUZZ_CHECK(v4_public(raw), "internal IPv4 accepted: %s", r.host);
        break;
    }
    case PG_URL_HOST_IPV6: {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&r.addr;
        FUZZ_CHECK(inet_pton(AF_INET6, r.host, raw) == 1, "IPv6 kind for %s", r.host);
        FUZZ_CHECK(sin6->sin6_family == AF_INET6 && memcmp(&sin6->sin6_addr, raw, 16) == 0 &&
                       ntohs(sin6->sin6_port) == r.port,
                   "address does not match %s", r.host);
        FUZZ_CHECK(auth.len && auth.ptr[0] == '[', "IPv6 literal without brackets");
        FUZZ_CHECK(pg_urlguard_addr_ok(o, (const struct sockaddr *)sin6, why, sizeof why),
                   "literal the address check refuses: %s", why);
        if (oi == O_DEFAULT || oi == O_PORTS)
            FUZZ_CHECK(v6_public(raw), "internal IPv6 accepted: %s", r.host);
        break;
    }
    case PG_URL_HOST_NAME: {
        FUZZ_CHECK(inet_pton(AF_INET, r.host, raw) != 1, "IPv4 literal taken for a name: %s",
                   r.host);
        FUZZ_CHECK(strchr(r.host, '.') && r.host[hl - 1] != '.', "single label: %s", r.host);
        const char *last = strrchr(r.host, '.') + 1;
        bool digits = true;
        for (const char *c = last; *c; c++)
            digits = digits && *c >= '0' && *c <= '9';
        FUZZ_CHECK(!digits, "numeric last label: %s", r.host);
        FUZZ_CHECK(strcmp(last, "localhost") && strcmp(last, "local") && strcmp(last, "internal") &&
                       strcmp(last, "localdomain") &&
                       (hl < 10 || strcmp(r.host + hl - 10, ".home.arpa") != 0),
                   "local name: %s", r.host);
        for (size_t i = 0; i < hl; i++) {
            char c = r.host[i];
            FUZZ_CHECK((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.',
                       "host byte %02x", (unsigned char)c);
        }
        break;
    }
    }
}

/* --- CIDRs and raw addresses ---------------------------------------------- */

static void check_cidr(struct pg_slice s)
{
    struct pg_cidr c;
    const char *why = NULL;
    if (pg_cidr_parse(s, &c, &why) != 0) {
        FUZZ_CHECK(why && why[0], "refused without a reason");
        return;
    }
    unsigned width = c.family == AF_INET ? 32 : 128;
    FUZZ_CHECK(c.family == AF_INET || c.family == AF_INET6, "family %d", c.family);
    FUZZ_CHECK(c.prefix <= width, "prefix %u", c.prefix);
    for (unsigned i = c.prefix; i < width; i++)
        FUZZ_CHECK(!((c.addr[i / 8] >> (7 - i % 8)) & 1), "bit %u set past /%u", i, c.prefix);

    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    uint8_t *bytes;
    if (c.family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
        sin->sin_family = AF_INET;
        bytes = (uint8_t *)&sin->sin_addr;
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
        sin6->sin6_family = AF_INET6;
        bytes = sin6->sin6_addr.s6_addr;
    }
    memcpy(bytes, c.addr, width / 8);
    const struct sockaddr *sa = (const struct sockaddr *)&ss;
    FUZZ_CHECK(pg_cidr_contains(&c, sa), "block does not hold its own network address");
    if (c.prefix < width) {
        unsigned b = width - 1;
        bytes[b / 8] ^= (uint8_t)(1u << (7 - b % 8)); /* a host bit */
        FUZZ_CHECK(pg_cidr_contains(&c, sa), "a host bit moves the address out");
        bytes[b / 8] ^= (uint8_t)(1u << (7 - b % 8));
    }
    if (c.prefix > 0) {
        unsigned b = c.prefix - 1;
        bytes[b / 8] ^= (uint8_t)(1u << (7 - b % 8)); /* a network bit */
        FUZZ_CHECK(!pg_cidr_contains(&c, sa), "a network bit keeps the address in");
    }
}

static void check_addr(int oi, struct fuzz_in *in)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    bool v6 = fuzz_u8(in) & 1;
    if (v6) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
        sin6->sin6_family = AF_INET6;
        for (int i = 0; i < 16; i++)
            sin6->sin6_addr.s6_addr[i] = fuzz_u8(in);
    } else {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
        sin->sin_family = AF_INET;
        uint8_t *b = (uint8_t *)&sin->sin_addr;
        for (int i = 0; i < 4; i++)
            b[i] = fuzz_u8(in);
    }
    char why[64];
    memset(why, 'x', sizeof why);
    const struct sockaddr *sa = (const struct sockaddr *)&ss;
    bool ok = pg_urlguard_addr_ok(&opts[oi], sa, why, sizeof why);
    if (!ok)
        FUZZ_CHECK(memchr(why, '\0', sizeof why) && why[0], "why is not a message");
    if (oi == O_DEFAULT || oi == O_PORTS)
        FUZZ_CHECK(ok == sa_public(sa), "built-in blocks disagree: payguard says %s",
                   ok ? "public" : why);
    if (oi == O_DENY && ok)
        FUZZ_CHECK(sa_public(sa), "the deny list opened an address");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = { data, size };
    uint8_t sel = fuzz_u8(&in);
    int oi = sel % O_COUNT;
    switch (sel >> 2 & 7) {
    case 6:
        check_cidr(fuzz_rest(&in));
        break;
    case 7:
        check_addr(oi, &in);
        break;
    default:
        check_url(oi, fuzz_rest(&in));
        break;
    }
    return 0;
}
