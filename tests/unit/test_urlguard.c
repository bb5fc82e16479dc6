/* The URL guard: every syntax rule with the trick it stops, every address
 * block at its edges and just outside them, the IPv6 forms that carry IPv4,
 * ports, and the operator's deny and allow lists. */
#include "common/pg.h"
#include "policy/urlguard.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

enum opts_id { O_DEFAULT, O_PORTS, O_ALLOW, O_DENY, O_COUNT };
static struct pg_urlguard_opts opts[O_COUNT];

static void must_add(int rc, const char *what)
{
    if (rc != 0)
        fail_msg("setup: %s: %s", what, pg_strerror(rc));
}

static int setup_opts(void **state)
{
    (void)state;
    const char *why = NULL;
    memset(opts, 0, sizeof(opts));
    must_add(pg_urlguard_add_port(&opts[O_PORTS], 443), "443");
    must_add(pg_urlguard_add_port(&opts[O_PORTS], 8443), "8443");
    must_add(pg_urlguard_add_port(&opts[O_PORTS], 65535), "65535");
    must_add(pg_urlguard_add_port(&opts[O_ALLOW], 443), "443");
    must_add(pg_urlguard_add_port(&opts[O_ALLOW], 8443), "8443");
    must_add(pg_urlguard_add_allow(&opts[O_ALLOW], PG_SLICE("127.0.0.0/8"), &why), "127/8");
    must_add(pg_urlguard_add_allow(&opts[O_ALLOW], PG_SLICE("::1"), &why), "::1");
    must_add(pg_urlguard_add_deny(&opts[O_ALLOW], PG_SLICE("127.0.0.2/32"), &why), "127.0.0.2");
    must_add(pg_urlguard_add_deny(&opts[O_DENY], PG_SLICE("8.8.8.0/24"), &why), "8.8.8/24");
    must_add(pg_urlguard_add_deny(&opts[O_DENY], PG_SLICE("2606:4700::/32"), &why), "2606:4700");
    return 0;
}

/* --- pg_url_check ------------------------------------------------------------ */

struct url_case {
    const char *url;
    size_t len; /* 0: strlen(url) */
    enum opts_id o;
    const char *reason; /* NULL: the URL passes */
    const char *expect; /* ok: the host; refused: a prefix of why (or NULL) */
    unsigned port;      /* ok: the port */
    enum pg_url_host_kind kind;
};

#define OK(u, o, host, port, kind)                                                                 \
    {                                                                                              \
        u, 0, o, NULL, host, port, kind                                                            \
    }
#define NO(u, o, reason, why)                                                                      \
    {                                                                                              \
        u, 0, o, reason, why, 0, PG_URL_HOST_NAME                                                  \
    }

#define R_SCHEME "scheme must be https"
#define R_USERINFO "userinfo is not allowed"
#define R_FRAGMENT "fragment is not allowed"
#define R_BACKSLASH "backslash is not allowed in a URL"
#define R_ASCII "URL must be ASCII"
#define R_SPACE "whitespace or control characters are not allowed in a URL"
#define R_PERCENT "percent-encoding is not allowed in the host"
#define R_NUMBER "host looks like a number but is not a dotted-quad IPv4 address"
#define R_LOCAL "local host names are not allowed"
#define R_PORT "port is not allowed"
#define R_PORTRANGE "port must be 1-65535"
#define R_CHARS "host may hold only letters, digits, '-' and '.'"

static const struct url_case url_cases[] = {
    /* accepted, with what the caller gets */
    OK("https://example.com/hook", O_DEFAULT, "example.com", 443, PG_URL_HOST_NAME),
    OK("HTTPS://Hooks.Example.COM/Hook", O_DEFAULT, "hooks.example.com", 443, PG_URL_HOST_NAME),
    OK("https://example.com", O_DEFAULT, "example.com", 443, PG_URL_HOST_NAME),
    OK("https://example.com:443/x", O_DEFAULT, "example.com", 443, PG_URL_HOST_NAME),
    OK("https://example.com./x", O_DEFAULT, "example.com", 443, PG_URL_HOST_NAME),
    OK("https://example.com?a=1&b=2", O_DEFAULT, "example.com", 443, PG_URL_HOST_NAME),
    OK("https://example.com/a@b", O_DEFAULT, "example.com", 443, PG_URL_HOST_NAME),
    OK("https://xn--bcher-kva.example/", O_DEFAULT, "xn--bcher-kva.example", 443, PG_URL_HOST_NAME),
    OK("https://0x7f.example.com/", O_DEFAULT, "0x7f.example.com", 443, PG_URL_HOST_NAME),
    OK("https://8.8.8.8/", O_DEFAULT, "8.8.8.8", 443, PG_URL_HOST_IPV4),
    OK("https://1.1.1.1:443/", O_DEFAULT, "1.1.1.1", 443, PG_URL_HOST_IPV4),
    OK("https://[2606:4700:4700::1111]/", O_DEFAULT, "2606:4700:4700::1111", 443, PG_URL_HOST_IPV6),
    OK("https://[2606:4700:4700::ABCD]:443", O_DEFAULT, "2606:4700:4700::abcd", 443,
       PG_URL_HOST_IPV6),
    OK("https://hooks.example.com:8443/x", O_PORTS, "hooks.example.com", 8443, PG_URL_HOST_NAME),
    OK("https://hooks.example.com:65535/x", O_PORTS, "hooks.example.com", 65535, PG_URL_HOST_NAME),
    /* the escape hatch: loopback opened by an allow block */
    OK("https://127.0.0.1:8443/hook", O_ALLOW, "127.0.0.1", 8443, PG_URL_HOST_IPV4),
    OK("https://[::1]:8443/hook", O_ALLOW, "::1", 8443, PG_URL_HOST_IPV6),

    /* scheme */
    NO("http://example.com/", O_DEFAULT, R_SCHEME, NULL),
    NO("HTTP://example.com/", O_DEFAULT, R_SCHEME, NULL),
    NO("ftp://example.com/", O_DEFAULT, R_SCHEME, NULL),
    NO("https:/example.com/", O_DEFAULT, R_SCHEME, NULL),
    NO("https:example.com", O_DEFAULT, R_SCHEME, NULL),
    NO("https:\\\\example.com", O_DEFAULT, R_BACKSLASH, NULL),
    NO("//example.com/", O_DEFAULT, R_SCHEME, NULL),
    NO("httpsx://example.com/", O_DEFAULT, R_SCHEME, NULL),
    NO("https", O_DEFAULT, R_SCHEME, NULL),
    NO("", O_DEFAULT, "URL is empty", NULL),

    /* userinfo and fragments: the host a lax parser would see differs */
    NO("https://evil.com#@good.com", O_DEFAULT, R_FRAGMENT, NULL),
    NO("https://good.com/#frag", O_DEFAULT, R_FRAGMENT, NULL),
    NO("https://good.com@evil.com/", O_DEFAULT, R_USERINFO, NULL),
    NO("https://user:pass@good.com/", O_DEFAULT, R_USERINFO, NULL),
    NO("https://@good.com/", O_DEFAULT, R_USERINFO, NULL),
    NO("https://good.com%40evil.com/", O_DEFAULT, R_USERINFO, NULL),
    NO("https://good.com?@evil.com", O_DEFAULT, R_USERINFO, NULL),
    NO("https://good.com:443@evil.com/", O_DEFAULT, R_USERINFO, NULL),
    NO("https://good.com\\@evil.com/", O_DEFAULT, R_BACKSLASH, NULL),
    NO("https://good.com\\evil.com/", O_DEFAULT, R_BACKSLASH, NULL),
    NO("https://good.com/path\\x", O_DEFAULT, R_BACKSLASH, NULL),

    /* non-ASCII, percent-encoding, other characters */
    NO("https://g\xc3\xb6od.com/", O_DEFAULT, R_ASCII, NULL),
    NO("https://good.com/\xc3\xbc", O_DEFAULT, R_ASCII, NULL),
    NO("https://xn--gd-fka.com\xef\xbc\x8e"
       "evil.com/",
       O_DEFAULT, R_ASCII, NULL),
    NO("https://%65vil.com/", O_DEFAULT, R_PERCENT, NULL),
    NO("https://good.com%2eevil.com/", O_DEFAULT, R_PERCENT, NULL),
    NO("https://good.com:%34%34%33/", O_DEFAULT, R_PERCENT, NULL),
    NO("https://[fe80::1%25eth0]/", O_DEFAULT, "IPv6 zone ids are not allowed", NULL),
    NO("https://exa_mple.com/", O_DEFAULT, R_CHARS, NULL),
    NO("https://good.com;evil.com/", O_DEFAULT, R_CHARS, NULL),
    NO("https://good.com]/", O_DEFAULT, R_CHARS, NULL),

    /* whitespace and control bytes anywhere */
    NO("https://good.com /", O_DEFAULT, R_SPACE, NULL),
    NO(" https://good.com/", O_DEFAULT, R_SPACE, NULL),
    NO("https://good.com/\r\nX-Injected: 1", O_DEFAULT, R_SPACE, NULL),
    NO("https://good.com\t/", O_DEFAULT, R_SPACE, NULL),
    NO("https://good.com/\x7f", O_DEFAULT, R_SPACE, NULL),
    {"https://good.com\0.evil.com/", 27, O_DEFAULT, R_SPACE, NULL, 0, PG_URL_HOST_NAME},

    /* ports */
    NO("https://example.com:8443/", O_DEFAULT, R_PORT, "port 8443 is not allowed"),
    NO("https://example.com:80/", O_DEFAULT, R_PORT, "port 80 is not allowed"),
    NO("https://example.com:443/", O_PORTS, NULL, NULL),
    NO("https://example.com:0/", O_PORTS, R_PORTRANGE, NULL),
    NO("https://example.com:65536/", O_PORTS, R_PORTRANGE, NULL),
    NO("https://example.com:4430000/", O_PORTS, R_PORTRANGE, NULL),
    NO("https://example.com:0443/", O_DEFAULT, "port has leading zeros", NULL),
    NO("https://example.com:00/", O_DEFAULT, "port has leading zeros", NULL),
    NO("https://example.com:/", O_DEFAULT, "port is empty", NULL),
    NO("https://example.com:44a/", O_DEFAULT, "port must be digits only", NULL),
    NO("https://example.com:+443/", O_DEFAULT, "port must be digits only", NULL),
    NO("https://example.com:443:443/", O_DEFAULT, "port must be digits only", NULL),
    NO("https://[2606:4700:4700::1111]:8443/", O_DEFAULT, R_PORT, NULL),
    NO("https://[2606:4700:4700::1111]:/", O_DEFAULT, "port is empty", NULL),

    /* numbers that are not canonical dotted quads */
    NO("https://127.1/", O_DEFAULT, R_NUMBER, NULL),
    NO("https://2130706433/", O_DEFAULT, R_NUMBER, NULL),
    NO("https://0x7f000001/", O_DEFAULT, R_NUMBER, NULL),
    NO("https://0X7F000001/", O_DEFAULT, R_NUMBER, NULL),
    NO("https://0177.0.0.1/", O_DEFAULT, R_NUMBER, NULL),
    NO("https://127.000.000.001/", O_DEFAULT, R_NUMBER, NULL),
    NO("https://08.8.8.8/", O_DEFAULT, R_NUMBER, NULL),
    NO("https://1.2.3.4.5/", O_DEFAULT, R_NUMBER, NULL),
    NO("https://0x7f.0.0.0x1/", O_DEFAULT, R_NUMBER, NULL),
    NO("https://256.1.1.1/", O_DEFAULT, R_NUMBER, NULL),
    NO("https://8.8.8.8./", O_DEFAULT, R_NUMBER, NULL),
    NO("https://example.123/", O_DEFAULT, R_NUMBER, NULL),
    NO("https://example.0x1f/", O_DEFAULT, R_NUMBER, NULL),
    NO("https://0x/", O_DEFAULT, R_NUMBER, NULL),

    /* literals in blocked ranges */
    NO("https://127.0.0.1/", O_DEFAULT, "loopback address", "loopback address 127.0.0.1"),
    NO("https://10.0.0.1/", O_DEFAULT, "private address", "private address 10.0.0.1"),
    NO("https://169.254.169.254/latest/meta-data/", O_DEFAULT, "link-local address",
       "link-local address 169.254.169.254"),
    NO("https://0.0.0.0/", O_DEFAULT, "unspecified address", NULL),
    NO("https://[::1]/", O_DEFAULT, "loopback address", "loopback address ::1"),
    NO("https://[::]/", O_DEFAULT, "unspecified address", NULL),
    NO("https://[::ffff:127.0.0.1]/", O_DEFAULT, "loopback address",
       "loopback address 127.0.0.1 (in IPv4-mapped address ::ffff:127.0.0.1)"),
    NO("https://[::ffff:7f00:1]/", O_DEFAULT, "loopback address", NULL),
    NO("https://[::ffff:8.8.8.8]/", O_DEFAULT, "IPv4-mapped address", NULL),
    NO("https://[64:ff9b::a9fe:a9fe]/", O_DEFAULT, "link-local address",
       "link-local address 169.254.169.254 (in NAT64 address 64:ff9b::a9fe:a9fe)"),
    NO("https://[fd00::1]/", O_DEFAULT, "unique local address", NULL),
    NO("https://10.0.0.1:8443/", O_ALLOW, "private address", NULL),
    NO("https://127.0.0.2:8443/", O_ALLOW, "address denied by configuration",
       "address denied by configuration 127.0.0.2 (127.0.0.2/32)"),
    NO("https://8.8.8.8/", O_DENY, "address denied by configuration", NULL),
    NO("https://[2606:4700:4700::1111]/", O_DENY, "address denied by configuration", NULL),

    /* bad IPv6 literals */
    NO("https://[::1/", O_DEFAULT, "IPv6 literal is not closed with ']'", NULL),
    NO("https://[]/", O_DEFAULT, "host is empty", NULL),
    NO("https://[1.2.3.4]/", O_DEFAULT, "invalid IPv6 literal", NULL),
    NO("https://[gggg::1]/", O_DEFAULT, "invalid IPv6 literal", NULL),
    NO("https://[1:2:3:4:5:6:7:8:9]/", O_DEFAULT, "invalid IPv6 literal", NULL),
    NO("https://[::1]x/", O_DEFAULT, "unexpected characters after the IPv6 literal", NULL),
    NO("https://::1/", O_DEFAULT, "host is empty", NULL),

    /* names */
    NO("https://localhost/", O_DEFAULT, R_LOCAL, "local host names are not allowed: localhost"),
    NO("https://localhost:8443/", O_ALLOW, R_LOCAL, NULL),
    NO("https://LocalHost./", O_DEFAULT, R_LOCAL, NULL),
    NO("https://intranet/", O_DEFAULT, "host must be a fully qualified name", NULL),
    NO("https://api.localhost/", O_DEFAULT, R_LOCAL,
       "local host names are not allowed: api.localhost"),
    NO("https://API.LOCALHOST./", O_DEFAULT, R_LOCAL, NULL),
    NO("https://api.localhost:8443/", O_ALLOW, R_LOCAL, NULL),
    NO("https://printer.local/", O_DEFAULT, R_LOCAL, NULL),
    NO("https://db.internal/", O_DEFAULT, R_LOCAL, NULL),
    NO("https://metadata.google.internal/", O_DEFAULT, R_LOCAL, NULL),
    NO("https://host.localdomain/", O_DEFAULT, R_LOCAL, NULL),
    NO("https://nas.home.arpa/", O_DEFAULT, R_LOCAL, NULL),
    NO("https://home.arpa/", O_DEFAULT, R_LOCAL, NULL),
    NO("https://-bad.example.com/", O_DEFAULT, "host name label starts or ends with '-'", NULL),
    NO("https://bad-.example.com/", O_DEFAULT, "host name label starts or ends with '-'", NULL),
    NO("https://a..b.com/", O_DEFAULT, "host name has an empty label", NULL),
    NO("https://.example.com/", O_DEFAULT, "host name has an empty label", NULL),
    NO("https://example.com../", O_DEFAULT, "host name has an empty label", NULL),
    NO("https://./", O_DEFAULT, "host is empty", NULL),
    NO("https:///path", O_DEFAULT, "host is empty", NULL),
    NO("https://?x", O_DEFAULT, "host is empty", NULL),
    NO("https://:443/", O_DEFAULT, "host is empty", NULL),
    NO("https://aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.com/", O_DEFAULT,
       "host name has a label longer than 63 bytes", NULL),
};

static void url_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < PG_ARRAY_LEN(url_cases); i++) {
        const struct url_case *c = &url_cases[i];
        struct pg_url_result r;
        size_t len = c->len ? c->len : strlen(c->url);
        bool ok = pg_url_check(&opts[c->o], pg_slice_of(c->url, len), &r);
        if (ok != r.ok)
            fail_msg("%s: return value and r.ok differ", c->url);
        if (!c->reason) {
            if (!ok)
                fail_msg("%s: refused (%s), want ok", c->url, r.why);
            if (r.reason || r.why[0])
                fail_msg("%s: ok with a reason", c->url);
            if (c->expect && strcmp(r.host, c->expect) != 0)
                fail_msg("%s: host '%s', want '%s'", c->url, r.host, c->expect);
            if (c->expect && (r.port != c->port || r.kind != c->kind))
                fail_msg("%s: port %u kind %d, want %u %d", c->url, r.port, (int)r.kind, c->port,
                         (int)c->kind);
            continue;
        }
        if (ok)
            fail_msg("%s: accepted, want '%s'", c->url, c->reason);
        if (!r.reason || strcmp(r.reason, c->reason) != 0)
            fail_msg("%s: reason '%s', want '%s'", c->url, r.reason ? r.reason : "(null)",
                     c->reason);
        if (c->expect && strncmp(r.why, c->expect, strlen(c->expect)) != 0)
            fail_msg("%s: why '%s', want '%s...'", c->url, r.why, c->expect);
        if (!r.why[0])
            fail_msg("%s: refused without a message", c->url);
    }
}

/* A literal comes back as an address ready to connect to: family, bytes and
 * the port in network order. A name comes back with a zeroed address. */
static void literal_addresses(void **state)
{
    (void)state;
    struct pg_url_result r;
    assert_true(pg_url_check(&opts[O_PORTS], PG_SLICE("https://8.8.4.4:8443/x"), &r));
    const struct sockaddr_in *s4 = (const void *)&r.addr;
    assert_int_equal(s4->sin_family, AF_INET);
    assert_int_equal(ntohs(s4->sin_port), 8443);
    assert_int_equal(ntohl(s4->sin_addr.s_addr), 0x08080404u);

    assert_true(pg_url_check(NULL, PG_SLICE("https://[2001:4860:4860::8888]/"), &r));
    const struct sockaddr_in6 *s6 = (const void *)&r.addr;
    assert_int_equal(s6->sin6_family, AF_INET6);
    assert_int_equal(ntohs(s6->sin6_port), 443);
    assert_int_equal(s6->sin6_addr.s6_addr[0], 0x20);
    assert_int_equal(s6->sin6_addr.s6_addr[15], 0x88);

    assert_true(pg_url_check(NULL, PG_SLICE("https://example.com/"), &r));
    assert_int_equal(r.addr.ss_family, 0);
    assert_int_equal(r.kind, PG_URL_HOST_NAME);

    /* NULL options are the defaults */
    assert_false(pg_url_check(NULL, PG_SLICE("https://example.com:8443/"), &r));
    assert_false(pg_url_check(NULL, PG_SLICE("https://10.1.2.3/"), &r));
    assert_string_equal(r.why, "private address 10.1.2.3");
}

/* A slice, not a C string: bytes past len are never read, and a NULL
 * slice is refused. */
static void slices_and_limits(void **state)
{
    (void)state;
    struct pg_url_result r;
    const char text[] = "https://example.com/hook@evil.com#x";
    assert_true(pg_url_check(NULL, pg_slice_of(text, 24), &r));
    assert_string_equal(r.host, "example.com");
    assert_false(pg_url_check(NULL, PG_SLICE_NULL, &r));
    assert_string_equal(r.reason, "URL is empty");

    /* 253 bytes of name pass, 254 do not (four labels of 63 + dots) */
    char name[300];
    size_t n = 0;
    memcpy(name, "https://", 8);
    n = 8;
    for (int l = 0; l < 4; l++) {
        size_t len = l < 3 ? 63 : 61;
        memset(name + n, 'a' + l, len);
        n += len;
        if (l < 3)
            name[n++] = '.';
    }
    assert_int_equal(n - 8, 253);
    assert_true(pg_url_check(NULL, pg_slice_of(name, n), &r));
    assert_int_equal(strlen(r.host), 253);
    name[n] = '.'; /* the trailing dot does not count */
    assert_true(pg_url_check(NULL, pg_slice_of(name, n + 1), &r));
    name[n] = 'd';
    assert_false(pg_url_check(NULL, pg_slice_of(name, n + 1), &r));
    assert_string_equal(r.reason, "host name is longer than 253 bytes");

    static char big[PG_URL_MAX + 2];
    memcpy(big, "https://example.com/", 20);
    memset(big + 20, 'a', sizeof(big) - 20);
    assert_true(pg_url_check(NULL, pg_slice_of(big, PG_URL_MAX), &r));
    assert_false(pg_url_check(NULL, pg_slice_of(big, PG_URL_MAX + 1), &r));
    assert_string_equal(r.reason, "URL is too long");
}

/* --- pg_urlguard_addr_ok ------------------------------------------------------- */

struct addr_case {
    const char *addr;
    const char *why; /* NULL: allowed; else a prefix of the message */
};

static const struct addr_case v4_cases[] = {
    /* 0.0.0.0/8 */
    {"0.0.0.0", "unspecified address 0.0.0.0"},
    {"0.255.255.255", "unspecified address"},
    {"1.0.0.0", NULL},
    /* 10.0.0.0/8 */
    {"9.255.255.255", NULL},
    {"10.0.0.0", "private address 10.0.0.0"},
    {"10.255.255.255", "private address 10.255.255.255"},
    {"11.0.0.0", NULL},
    /* 100.64.0.0/10 */
    {"100.63.255.255", NULL},
    {"100.64.0.0", "shared address"},
    {"100.127.255.255", "shared address"},
    {"100.128.0.0", NULL},
    /* 127.0.0.0/8 */
    {"126.255.255.255", NULL},
    {"127.0.0.0", "loopback address"},
    {"127.0.0.1", "loopback address 127.0.0.1"},
    {"127.255.255.255", "loopback address"},
    {"128.0.0.0", NULL},
    /* 169.254.0.0/16 */
    {"169.253.255.255", NULL},
    {"169.254.0.0", "link-local address"},
    {"169.254.255.255", "link-local address"},
    {"169.255.0.0", NULL},
    /* 172.16.0.0/12 */
    {"172.15.255.255", NULL},
    {"172.16.0.0", "private address"},
    {"172.31.255.255", "private address"},
    {"172.32.0.0", NULL},
    /* 192.0.0.0/24 and 192.0.2.0/24 */
    {"191.255.255.255", NULL},
    {"192.0.0.0", "IETF protocol assignment address"},
    {"192.0.0.255", "IETF protocol assignment address"},
    {"192.0.1.0", NULL},
    {"192.0.1.255", NULL},
    {"192.0.2.0", "documentation address"},
    {"192.0.2.255", "documentation address"},
    {"192.0.3.0", NULL},
    /* 192.88.99.0/24 */
    {"192.88.98.255", NULL},
    {"192.88.99.0", "6to4 relay address"},
    {"192.88.99.255", "6to4 relay address"},
    {"192.88.100.0", NULL},
    /* 192.168.0.0/16 */
    {"192.167.255.255", NULL},
    {"192.168.0.0", "private address"},
    {"192.168.255.255", "private address"},
    {"192.169.0.0", NULL},
    /* 198.18.0.0/15 */
    {"198.17.255.255", NULL},
    {"198.18.0.0", "benchmarking address"},
    {"198.19.255.255", "benchmarking address"},
    {"198.20.0.0", NULL},
    /* 198.51.100.0/24 */
    {"198.51.99.255", NULL},
    {"198.51.100.0", "documentation address"},
    {"198.51.100.255", "documentation address"},
    {"198.51.101.0", NULL},
    /* 203.0.113.0/24 */
    {"203.0.112.255", NULL},
    {"203.0.113.0", "documentation address"},
    {"203.0.113.255", "documentation address"},
    {"203.0.114.0", NULL},
    /* 224.0.0.0/4, 240.0.0.0/4, 255.255.255.255 */
    {"223.255.255.255", NULL},
    {"224.0.0.0", "multicast address"},
    {"239.255.255.255", "multicast address"},
    {"240.0.0.0", "reserved address"},
    {"255.255.255.254", "reserved address"},
    {"255.255.255.255", "broadcast address 255.255.255.255"},
    /* public */
    {"8.8.8.8", NULL},
    {"1.1.1.1", NULL},
    {"93.184.216.34", NULL},
};

static const struct addr_case v6_cases[] = {
    {"::", "unspecified address ::"},
    {"::1", "loopback address ::1"},
    /* IPv4-compatible ::a.b.c.d, judged by what it carries, refused anyway */
    {"::2", "unspecified address 0.0.0.2 (in IPv4-compatible address ::2)"},
    {"::127.0.0.1", "loopback address 127.0.0.1 (in IPv4-compatible address ::127.0.0.1)"},
    {"::8.8.8.8", "IPv4-compatible address ::8.8.8.8"},
    {"::ffff:ffff", "broadcast address 255.255.255.255"},
    /* IPv4-mapped ::ffff:0:0/96 */
    {"::ffff:0.0.0.0", "unspecified address 0.0.0.0 (in IPv4-mapped address"},
    {"::ffff:10.0.0.1", "private address 10.0.0.1 (in IPv4-mapped address ::ffff:10.0.0.1)"},
    {"::ffff:169.254.169.254", "link-local address 169.254.169.254"},
    {"::ffff:8.8.8.8", "IPv4-mapped address ::ffff:8.8.8.8"},
    {"::fffe:ffff:ffff", "address outside IPv6 global unicast"},
    {"::1:0:0:0", "address outside IPv6 global unicast"},
    /* NAT64 64:ff9b::/96 and 64:ff9b:1::/48 */
    {"64:ff9b::7f00:1", "loopback address 127.0.0.1 (in NAT64 address 64:ff9b::7f00:1)"},
    {"64:ff9b::808:808", "NAT64 address 64:ff9b::808:808"},
    {"64:ff9b::1:0:0", "address outside IPv6 global unicast"},
    {"64:ff9a:ffff:ffff:ffff:ffff:ffff:ffff", "address outside IPv6 global unicast"},
    {"64:ff9b:1::", "NAT64 address"},
    {"64:ff9b:1:ffff:ffff:ffff:ffff:ffff", "NAT64 address"},
    {"64:ff9b:2::", "address outside IPv6 global unicast"},
    /* 6to4 2002::/16 */
    {"2002::", "unspecified address 0.0.0.0 (in 6to4 address 2002::)"},
    {"2002:c0a8:101::1", "private address 192.168.1.1 (in 6to4 address"},
    {"2002:808:808::1", "6to4 address 2002:808:808::1"},
    {"2002:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "broadcast address 255.255.255.255"},
    {"2001:ffff:ffff:ffff:ffff:ffff:ffff:ffff", NULL},
    {"2003::", NULL},
    /* Teredo 2001::/32: the client address inverted in the last 32 bits */
    {"2001:0:4136:e378:8000:63bf:3fff:fdd2",
     "documentation address 192.0.2.45 (in Teredo address 2001:0:4136:e378:8000:63bf:3fff:fdd2)"},
    {"2001::", "broadcast address 255.255.255.255 (in Teredo address 2001::)"},
    {"2001::f7f7:f7f7", "Teredo address 2001::f7f7:f7f7"},
    {"2001:0:ffff:ffff:ffff:ffff:ffff:ffff", "unspecified address 0.0.0.0 (in Teredo"},
    /* the rest of 2001::/23 */
    {"2001:1::", "IETF protocol assignment address"},
    {"2001:2::1", "IETF protocol assignment address"},
    {"2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff", "IETF protocol assignment address"},
    {"2001:200::", NULL},
    /* documentation 2001:db8::/32 and 3fff::/20 */
    {"2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", NULL},
    {"2001:db8::", "documentation address 2001:db8::"},
    {"2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", "documentation address"},
    {"2001:db9::", NULL},
    {"3ffe:ffff:ffff:ffff:ffff:ffff:ffff:ffff", NULL},
    {"3fff::", "documentation address"},
    {"3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff", "documentation address"},
    {"3fff:1000::", NULL},
    /* the edges of 2000::/3 */
    {"1fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "address outside IPv6 global unicast"},
    {"2000::", NULL},
    {"3fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", NULL},
    {"4000::", "address outside IPv6 global unicast"},
    /* outside it, with their names */
    {"fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "address outside IPv6 global unicast"},
    {"fc00::", "unique local address fc00::"},
    {"fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "unique local address"},
    {"fe80::1", "link-local address fe80::1"},
    {"febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "link-local address"},
    {"fec0::1", "site-local address"},
    {"ff02::1", "multicast address ff02::1"},
    {"100::1", "address outside IPv6 global unicast"},
    /* public */
    {"2606:4700:4700::1111", NULL},
    {"2001:4860:4860::8888", NULL},
    {"2a00:1450:4001:82a::200e", NULL},
};

static bool check_addr(const struct pg_urlguard_opts *o, const char *text, char *why, size_t cap)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    if (strchr(text, ':')) {
        struct sockaddr_in6 *s6 = (void *)&ss;
        s6->sin6_family = AF_INET6;
        if (inet_pton(AF_INET6, text, &s6->sin6_addr) != 1)
            fail_msg("test table: bad IPv6 %s", text);
    } else {
        struct sockaddr_in *s4 = (void *)&ss;
        s4->sin_family = AF_INET;
        if (inet_pton(AF_INET, text, &s4->sin_addr) != 1)
            fail_msg("test table: bad IPv4 %s", text);
    }
    return pg_urlguard_addr_ok(o, (const struct sockaddr *)&ss, why, cap);
}

static void run_addr_table(const struct addr_case *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char why[192] = "untouched";
        bool ok = check_addr(NULL, cases[i].addr, why, sizeof(why));
        if (!cases[i].why) {
            if (!ok)
                fail_msg("%s: refused (%s), want allowed", cases[i].addr, why);
            continue;
        }
        if (ok)
            fail_msg("%s: allowed, want '%s'", cases[i].addr, cases[i].why);
        if (strncmp(why, cases[i].why, strlen(cases[i].why)) != 0)
            fail_msg("%s: '%s', want '%s...'", cases[i].addr, why, cases[i].why);
    }
}

static void v4_blocks_at_their_edges(void **state)
{
    (void)state;
    run_addr_table(v4_cases, PG_ARRAY_LEN(v4_cases));
}

static void v6_blocks_and_embedded_v4(void **state)
{
    (void)state;
    run_addr_table(v6_cases, PG_ARRAY_LEN(v6_cases));
}

/* The operator's lists: the most specific block decides, a deny wins a tie,
 * and a family only matches its own family. */
static void deny_and_allow_lists(void **state)
{
    (void)state;
    char why[192];
    const struct pg_urlguard_opts *al = &opts[O_ALLOW], *dn = &opts[O_DENY];
    assert_true(check_addr(al, "127.0.0.1", why, sizeof(why)));
    assert_true(check_addr(al, "127.255.255.255", why, sizeof(why)));
    assert_false(check_addr(al, "127.0.0.2", why, sizeof(why)));
    assert_string_equal(why, "address denied by configuration 127.0.0.2 (127.0.0.2/32)");
    assert_true(check_addr(al, "127.0.0.3", why, sizeof(why)));
    assert_false(check_addr(al, "10.0.0.1", why, sizeof(why)));
    assert_true(check_addr(al, "::1", why, sizeof(why)));
    assert_false(check_addr(al, "::ffff:127.0.0.1", why, sizeof(why))); /* v4 block, v6 address */
    assert_false(check_addr(al, "::2", why, sizeof(why)));
    assert_true(check_addr(al, "8.8.8.8", why, sizeof(why)));

    assert_false(check_addr(dn, "8.8.8.8", why, sizeof(why)));
    assert_string_equal(why, "address denied by configuration 8.8.8.8 (8.8.8.0/24)");
    assert_false(check_addr(dn, "8.8.8.255", why, sizeof(why)));
    assert_true(check_addr(dn, "8.8.9.0", why, sizeof(why)));
    assert_true(check_addr(dn, "8.8.7.255", why, sizeof(why)));
    assert_false(check_addr(dn, "2606:4700:4700::1111", why, sizeof(why)));
    assert_true(check_addr(dn, "2606:4701::1", why, sizeof(why)));
    assert_false(check_addr(dn, "10.0.0.1", why, sizeof(why))); /* built-ins still apply */

    /* allow and deny the same block: deny wins; a longer allow beats a shorter deny */
    struct pg_urlguard_opts o;
    const char *w;
    memset(&o, 0, sizeof(o));
    assert_int_equal(pg_urlguard_add_allow(&o, PG_SLICE("10.0.0.0/8"), &w), 0);
    assert_int_equal(pg_urlguard_add_deny(&o, PG_SLICE("10.0.0.0/8"), &w), 0);
    assert_false(check_addr(&o, "10.1.2.3", why, sizeof(why)));
    assert_int_equal(pg_urlguard_add_allow(&o, PG_SLICE("10.1.0.0/16"), &w), 0);
    assert_true(check_addr(&o, "10.1.2.3", why, sizeof(why)));
    assert_false(check_addr(&o, "10.2.0.0", why, sizeof(why)));
    /* an allow of everything opens everything: the hatch is the operator's to hold */
    memset(&o, 0, sizeof(o));
    assert_int_equal(pg_urlguard_add_allow(&o, PG_SLICE("0.0.0.0/0"), &w), 0);
    assert_true(check_addr(&o, "192.168.1.1", why, sizeof(why)));
    assert_false(check_addr(&o, "fd00::1", why, sizeof(why)));
}

/* Bad input to the address check: other families, NULL, a tiny buffer. */
static void addr_odd_inputs(void **state)
{
    (void)state;
    char why[8];
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    ss.ss_family = AF_UNIX;
    assert_false(pg_urlguard_addr_ok(NULL, (const struct sockaddr *)&ss, why, sizeof(why)));
    assert_string_equal(why, "address"); /* truncated, still terminated */
    assert_false(pg_urlguard_addr_ok(NULL, NULL, NULL, 0));
    assert_false(check_addr(NULL, "10.0.0.1", NULL, 0));
    assert_true(check_addr(NULL, "8.8.8.8", NULL, 0));
}

/* --- CIDRs, ports ---------------------------------------------------------------- */

static void cidr_parsing(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        int family;
        unsigned prefix;
    } good[] = {
        {"10.0.0.0/8", AF_INET, 8},
        {"0.0.0.0/0", AF_INET, 0},
        {"127.0.0.1", AF_INET, 32},
        {"192.168.1.128/25", AF_INET, 25},
        {"2001:db8::/32", AF_INET6, 32},
        {"::/0", AF_INET6, 0},
        {"::1", AF_INET6, 128},
        {"fd00::/8", AF_INET6, 8},
        {"::ffff:10.0.0.0/104", AF_INET6, 104},
    };
    for (size_t i = 0; i < PG_ARRAY_LEN(good); i++) {
        struct pg_cidr c;
        const char *why = "x";
        if (pg_cidr_parse(pg_slice_cstr(good[i].s), &c, &why) != 0)
            fail_msg("%s: refused (%s)", good[i].s, why);
        assert_null(why);
        assert_int_equal(c.family, good[i].family);
        assert_int_equal(c.prefix, good[i].prefix);
    }
    static const char *bad[] = {
        "",
        "/8",
        "10.0.0.0/",
        "10.0.0.0/33",
        "10.0.0.0/08",
        "10.0.0.1/8",
        "10/8",
        "10.0.0/24",
        "010.0.0.0/8",
        "10.0.0.0/8 ",
        " 10.0.0.0/8",
        "10.0.0.0/-1",
        "10.0.0.0/+8",
        "2001:db8::/129",
        "2001:db8::1/32",
        "fe80::%eth0/64",
        "fe80::/10/1",
        "example.com/8",
        "0x0a000000/8",
        "10.0.0.0/8/8",
        "::1/0128",
    };
    for (size_t i = 0; i < PG_ARRAY_LEN(bad); i++) {
        struct pg_cidr c;
        const char *why = NULL;
        if (pg_cidr_parse(pg_slice_cstr(bad[i]), &c, &why) != PG_EPARSE)
            fail_msg("'%s': accepted", bad[i]);
        if (!why)
            fail_msg("'%s': no explanation", bad[i]);
    }
    assert_int_equal(pg_cidr_parse(PG_SLICE_NULL, &(struct pg_cidr){0}, NULL), PG_EPARSE);

    /* contains, at the edges */
    struct pg_cidr c;
    assert_int_equal(pg_cidr_parse(PG_SLICE("172.16.0.0/12"), &c, NULL), 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    inet_pton(AF_INET, "172.31.255.255", &a.sin_addr);
    assert_true(pg_cidr_contains(&c, (const struct sockaddr *)&a));
    inet_pton(AF_INET, "172.32.0.0", &a.sin_addr);
    assert_false(pg_cidr_contains(&c, (const struct sockaddr *)&a));
    assert_false(pg_cidr_contains(&c, NULL));
}

static void ports_and_list_limits(void **state)
{
    (void)state;
    struct pg_urlguard_opts o;
    struct pg_url_result r;
    const char *why;
    memset(&o, 0, sizeof(o));
    assert_int_equal(pg_urlguard_add_port(&o, 0), PG_ERANGE);
    assert_int_equal(pg_urlguard_add_port(&o, 65536), PG_ERANGE);
    assert_int_equal(o.nports, 0);
    assert_int_equal(pg_urlguard_add_port(&o, 8443), 0);
    assert_int_equal(pg_urlguard_add_port(&o, 8443), 0); /* duplicate ignored */
    assert_int_equal(o.nports, 1);
    /* the first port replaces the default 443 */
    assert_false(pg_url_check(&o, PG_SLICE("https://example.com/"), &r));
    assert_string_equal(r.why, "port 443 is not allowed");
    assert_true(pg_url_check(&o, PG_SLICE("https://example.com:8443/"), &r));
    for (uint32_t p = 1; o.nports < PG_URLGUARD_MAX_PORTS; p++)
        assert_int_equal(pg_urlguard_add_port(&o, p), 0);
    assert_int_equal(pg_urlguard_add_port(&o, 9999), PG_ETOOBIG);

    for (int i = 0; i < PG_URLGUARD_MAX_CIDRS; i++)
        assert_int_equal(pg_urlguard_add_deny(&o, PG_SLICE("10.0.0.0/8"), &why), 0);
    assert_int_equal(pg_urlguard_add_deny(&o, PG_SLICE("10.0.0.0/8"), &why), PG_ETOOBIG);
    assert_string_equal(why, "too many address blocks");
    assert_int_equal(pg_urlguard_add_allow(&o, PG_SLICE("10.0.0.0/88"), &why), PG_EPARSE);
    assert_int_equal(o.nallow, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(url_table),
        cmocka_unit_test(literal_addresses),
        cmocka_unit_test(slices_and_limits),
        cmocka_unit_test(v4_blocks_at_their_edges),
        cmocka_unit_test(v6_blocks_and_embedded_v4),
        cmocka_unit_test(deny_and_allow_lists),
        cmocka_unit_test(addr_odd_inputs),
        cmocka_unit_test(cidr_parsing),
        cmocka_unit_test(ports_and_list_limits),
    };
    return cmocka_run_group_tests_name("urlguard", tests, setup_opts, NULL);
}
