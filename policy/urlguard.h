/* URLs a rail will call back (a Stripe webhook endpoint an agent registers)
 * and payguard's own webhook targets: HTTPS only, one strict reading of the
 * authority, and only public addresses. Pure: the proxy resolves names (off
 * the loop, uv_getaddrinfo) and hands every address back to
 * pg_urlguard_addr_ok; nothing here touches the network or the clock.
 *
 * Flow for one URL:
 *   pg_url_check(opts, url, &r)           syntax, port, and for an IP literal
 *                                         its address too
 *   r.ok && r.kind == PG_URL_HOST_NAME →  resolve r.host, then
 *   pg_urlguard_addr_ok(opts, ai_addr…)   for EVERY address returned; one
 *                                         refusal refuses the URL
 */
#ifndef PG_POLICY_URLGUARD_H
#define PG_POLICY_URLGUARD_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "common/pg.h"

#define PG_URL_MAX 4096     /* longer URLs are refused */
#define PG_URL_HOST_MAX 253 /* a DNS name without its trailing dot */
#define PG_URLGUARD_MAX_PORTS 16
#define PG_URLGUARD_MAX_CIDRS 32 /* per list (deny, allow) */

/* An address block. IPv4 blocks match only IPv4 addresses and IPv6 blocks
 * only IPv6 ones: "127.0.0.0/8" does not match ::ffff:127.0.0.1 (which is
 * refused anyway, see pg_urlguard_addr_ok). */
struct pg_cidr {
    sa_family_t family; /* AF_INET or AF_INET6 */
    uint8_t prefix;     /* 0-32 or 0-128 */
    uint8_t addr[16];   /* network order; IPv4 in addr[0..4), bits past prefix zero */
};

/* Operator settings. A zeroed struct is the default and the safe one: port
 * 443 only, no extra blocks, no exceptions. Filled once when the config is
 * loaded, read-only afterwards (any thread may read it). */
struct pg_urlguard_opts {
    /* Ports a URL may name. When nports is 0 the set is {443}; the first
       pg_urlguard_add_port replaces that default, so list 443 too if it
       stays allowed. */
    uint16_t ports[PG_URLGUARD_MAX_PORTS];
    uint32_t nports;
    /* Refused in addition to the built-in blocks. */
    struct pg_cidr deny[PG_URLGUARD_MAX_CIDRS];
    uint32_t ndeny;
    /* Escape hatch (tests, a known internal receiver): an address inside
       one of these passes even when a built-in block holds it. */
    struct pg_cidr allow[PG_URLGUARD_MAX_CIDRS];
    uint32_t nallow;
};

/* Parses "10.0.0.0/8" or "2001:db8::/32". A bare address means the one host
 * (/32 or /128). The IPv4 part must be canonical dotted decimal (no "010.",
 * no "10.1"); IPv6 zone ids ("%eth0"), spaces, a prefix with leading zeros or
 * past the family's width, and an address with bits set beyond the prefix
 * ("10.0.0.1/8": probably a typo) are refused. 0 and *out, or PG_EPARSE with
 * *why (may be NULL) pointing at a static explanation. */
PG_WUR int pg_cidr_parse(struct pg_slice s, struct pg_cidr *out, const char **why);

/* True when the address in `sa` (AF_INET or AF_INET6) lies in `c`. */
bool pg_cidr_contains(const struct pg_cidr *c, const struct sockaddr *sa);

/* Adds a port to the allowed set (duplicates are ignored). 0, PG_ERANGE for
 * 0 or > 65535, PG_ETOOBIG when the set is full. Config load time. */
PG_WUR int pg_urlguard_add_port(struct pg_urlguard_opts *o, uint32_t port);

/* Add a block to the deny or allow list. 0, PG_EPARSE (with *why as for
 * pg_cidr_parse) or PG_ETOOBIG (with *why) when the list is full. */
PG_WUR int pg_urlguard_add_deny(struct pg_urlguard_opts *o, struct pg_slice cidr, const char **why);
PG_WUR int pg_urlguard_add_allow(struct pg_urlguard_opts *o, struct pg_slice cidr,
                                 const char **why);

enum pg_url_host_kind {
    PG_URL_HOST_NAME, /* a DNS name: the caller resolves and checks each address */
    PG_URL_HOST_IPV4, /* a literal, already checked: r.addr holds it */
    PG_URL_HOST_IPV6
};

/* Verdict on one URL. host, port, kind and addr are filled as far as the
 * parse got, and are only meaningful when ok is true. */
struct pg_url_result {
    bool ok;
    /* Static text naming what is wrong ("scheme must be https",
       "userinfo is not allowed", "private address"), NULL when ok. */
    const char *reason;
    /* The reason with the value at fault, for the agent and the log
       ("private address 10.0.0.1"); "" when ok. */
    char why[192];
    enum pg_url_host_kind kind;
    /* Lowercase, NUL-terminated; without brackets (IPv6) or the trailing
       dot (names). Hand this to the resolver. */
    char host[PG_URL_HOST_MAX + 1];
    uint16_t port; /* 443 when the URL names none */
    /* For a literal: the address, with sin_port/sin6_port set to `port`
       (network order) so it can be connected to as is. Zeroed for a name. */
    struct sockaddr_storage addr;
};

/* Checks a URL. Refused, with the first rule it breaks:
 *   - longer than PG_URL_MAX; any byte that is whitespace, a control byte or
 *     >= 0x80; a backslash anywhere; a fragment ('#') anywhere;
 *   - scheme other than "https" (any letter case) followed by "://";
 *   - userinfo: '@' or "%40" anywhere between "://" and the first '/',
 *     including in what would be the query (https://good.com?@evil.com);
 *   - any other '%' in the authority: no percent-encoded hosts, no IPv6
 *     zone ids;
 *   - host: empty; a bracketed IPv6 literal inet_pton refuses; anything
 *     whose last label is a number (all digits, or 0x…) that is not a
 *     canonical dotted-quad IPv4 (127.1, 2130706433, 0x7f000001,
 *     0177.0.0.1, 127.000.000.001, 1.2.3.4.5 and "1.2.3.4." are refused);
 *     otherwise a DNS name: letters, digits, '-' and '.', labels of 1-63
 *     bytes not starting or ending with '-', at most 253 bytes after one
 *     trailing dot is dropped, at least two labels (a single label would
 *     go through the resolver's search list), and not localhost,
 *     *.localhost, *.local, *.localdomain, *.internal, *.home.arpa;
 *   - port: present but empty, not all digits, leading zeros, 0, > 65535,
 *     or not in the allowed set;
 *   - the authority not followed by '/', '?' or the end;
 *   - an IP literal that pg_urlguard_addr_ok refuses.
 * Returns r->ok. Pure; any thread. */
bool pg_url_check(const struct pg_urlguard_opts *o, struct pg_slice url, struct pg_url_result *r);

/* Checks one address (AF_INET or AF_INET6; any other family is refused).
 * Refused IPv4: 0/8, 10/8, 100.64/10, 127/8, 169.254/16, 172.16/12,
 * 192.0.0/24, 192.0.2/24, 192.88.99/24, 192.168/16, 198.18/15,
 * 198.51.100/24, 203.0.113/24, 224/4, 240/4 (with 255.255.255.255).
 * IPv6 passes only inside global unicast 2000::/3, and not in 2001::/23
 * (IETF protocol assignments, Teredo 2001::/32 among them), 2001:db8::/32
 * and 3fff::/20 (documentation), 2002::/16 (6to4). Forms that carry an IPv4
 * address (::ffff:a.b.c.d mapped, ::a.b.c.d compatible, 64:ff9b::/96 and
 * 64:ff9b:1::/48 NAT64, 6to4, Teredo) are refused whatever they carry; the
 * message names the embedded address when the IPv4 rules would refuse it
 * too ("loopback address 127.0.0.1 (in ::ffff:127.0.0.1)").
 * Then the operator's lists, longest prefix first: the most specific
 * matching deny or allow block decides (a deny wins a tie); no match leaves
 * the built-in verdict. So allow 127.0.0.0/8 opens loopback, and deny
 * 127.0.0.2/32 inside it closes one address again.
 * True when the address may be called. When false, `why` (may be NULL)
 * gets a NUL-terminated message, truncated to whylen. Pure; any thread. */
bool pg_urlguard_addr_ok(const struct pg_urlguard_opts *o, const struct sockaddr *sa, char *why,
                         size_t whylen);

#endif /* PG_POLICY_URLGUARD_H */
