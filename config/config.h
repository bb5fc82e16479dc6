/* payguard.yaml → validated, immutable configuration.
 *
 * The loader reads the whole file with libyaml, walks it against the schema and
 * collects every problem as "file:line:col: message" before giving up, so one
 * `payguard check` run shows them all. A loaded config is never mutated: a
 * reload builds a new one off to the side and the proxy swaps the pointer. */
#ifndef PG_CONFIG_H
#define PG_CONFIG_H

#include <stdint.h>
#include <stdbool.h>
#include <time.h>
#include <sys/socket.h>

#include "common/pg.h"
#include "auth/human.h"
#include "policy/urlguard.h"

/* A listen address as written ("127.0.0.1:8402", "[::1]:8402") and parsed. */
struct pg_addr {
    char *text;                    /* as written, for logs */
    struct sockaddr_storage sa;    /* numeric address; port 0 lets the OS pick */
    socklen_t salen;
};

struct pg_tls_files {
    char *cert;                    /* PEM chain; NULL when TLS is off */
    char *key;
    char *client_ca;               /* set: clients must present a cert it signed */
};

enum pg_rail_preset { PG_PRESET_STRIPE, PG_PRESET_ADYEN, PG_PRESET_GENERIC };
enum pg_unmatched { PG_UNMATCHED_DENY, PG_UNMATCHED_PASS };

/* A route written in payguard.yaml under rails.NAME.routes: adds to or
 * overrides the preset's table (same method and path: the user's wins).
 * The loader guarantees: method is one of GET, POST, PUT, PATCH, DELETE;
 * path is '/' or literal [A-Za-z0-9_.-]+ and whole {name} segments (no
 * query, no dot segments, no placeholder twice); operation is one of the
 * seven; field references are form keys on a form rail and RFC 6901 JSON
 * pointers on a json rail; amount and currency are set only on money
 * operations, and always on a generic rail's; no two routes of a rail share
 * method and path pattern. */
#define PG_ROUTE_MAX_SEGMENTS 16      /* path segments per route */
#define PG_ROUTE_MAX_COUNTERPARTY 6   /* counterparty fields per route */
#define PG_ROUTE_MAX_URLS 4           /* url fields per route */

struct pg_route_spec {
    char *name;                    /* for logs and reasons; default "METHOD PATH" */
    char *method;                  /* upper case: GET, POST, ... */
    char *path;                    /* "/v1/things/{id}/pay": literal segments or {name} */
    char *operation;               /* payment, refund, transfer, payout, config, read, forbidden */
    char *amount;                  /* form key ("amount") or JSON pointer ("/amount/value") */
    char *currency;                /* same forms as amount */
    char **counterparty; size_t ncounterparty;  /* first present wins */
    char **urls; size_t nurls;     /* fields holding URLs the rail will call */
};

enum pg_body_format { PG_BODY_FORM, PG_BODY_JSON };

struct pg_rail {
    char *name;                    /* key under rails: */
    enum pg_rail_preset preset;    /* required unless the name is a preset's ("stripe:") */
    char *upstream;                /* as written */
    bool upstream_tls;             /* https:// (false only with allow_http) */
    char *upstream_host;           /* host for SNI, verification and Host: */
    uint16_t upstream_port;
    char *upstream_hostport;       /* Host header value ("api.stripe.com") */
    char *secret_ref;              /* "env:NAME" or "sealed:v1:..." as written */
    char *secret;                  /* resolved secret; NULL until resolved */
    char *ca_file;                 /* NULL: the system CA store */
    int tls_min;                   /* 12 or 13 */
    uint32_t timeout_ms;           /* upstream response timeout */
    uint32_t connect_timeout_ms;
    enum pg_unmatched unmatched;
    bool allow_http;               /* explicit opt-in for plain-HTTP upstreams */
    uint32_t pool_size;            /* idle keep-alive connections kept */
    enum pg_body_format format;    /* generic rails: form (default) or json */
    struct pg_route_spec *routes; size_t nroutes;
};

struct pg_tz;

struct pg_org {
    char *name;
    char *timezone;                /* IANA name; "UTC" by default */
    struct pg_tz *tz;              /* the zone, loaded from /usr/share/zoneinfo */
};

enum pg_role { PG_ROLE_VIEWER, PG_ROLE_APPROVER, PG_ROLE_ADMIN, PG_ROLE_OWNER };

struct pg_user {
    char *email;                   /* lower-cased at load (unique, case folded) */
    char *org;
    enum pg_role role;
    char *password_hash;           /* "$2b$..." */
    char *totp_ref;                /* "sealed:v1:..." or "env:NAME" as written; NULL: no TOTP */
    /* The TOTP seed: the base32 text in totp_ref, unsealed (AAD
     * "users[I].totp") or read from the environment, decoded to 16..64
     * bytes. totp_len 0 until resolved; wiped by pg_config_free. */
    uint8_t totp_secret[PG_TOTP_SECRET_MAX];
    size_t totp_len;
    /* users[].recovery_codes: lower-case hex SHA-256 of each recovery code
     * (pg_recovery_code_hash), at most PG_RECOVERY_CODES; spent ones are
     * the ledger's to remember. */
    char **recovery_hashes;
    size_t nrecovery;
};

struct pg_agent {
    char *id;
    char *org;
    char *token_hash;              /* bcrypt "$2b$" of the agent's pgt_ token; NULL
                                      when it authenticates by client_cert only */
    char **rails;                  /* names of rails it may use */
    size_t nrails;
    char *policy;                  /* policy name, or NULL */
    time_t expires;                /* 0: never */
    bool revoked;
    /* agents[].client_cert: with mutual TLS, the agent's certificate; its
     * subject (RFC 2253, "CN=shopper") and/or SHA-256 of its public key.
     * An agent with one may omit its token. */
    char *cert_subject;            /* NULL: not bound by subject */
    uint8_t cert_spki[32];
    bool has_cert_spki;
    /* Single policy fields set on the agent itself (agents[].overrides), on
     * top of its named policy; NULL when none. `name` is unused. */
    struct pg_policy_spec *overrides;
};

/* Policy fields are kept as written; amounts are checked to be exact decimal
 * strings here and turned into minor units by policy/. Currency codes are
 * lowercased ("usd"), day names too ("mon-fri"). A NULL string or a zero count
 * means the key was absent: no such limit. hours_* are set only when hours_from
 * is non-NULL; velocity_* only when velocity_max is non-zero. */
struct pg_policy_spec {
    char *name;
    char *currency;
    char *per_transaction, *daily, *weekly, *monthly;
    char *approval_above, *auto_approve_below;
    char **merchants_allow; size_t nmerchants_allow;
    char **merchants_deny; size_t nmerchants_deny;
    char *hours_days, *hours_from, *hours_to;
    uint8_t hours_days_mask;       /* bit 0 = Monday .. bit 6 = Sunday; 0x7f when days omitted */
    uint16_t hours_from_min;       /* minutes after local midnight; from < to */
    uint16_t hours_to_min;         /* exclusive end, up to 1440 ("24:00") */
    uint32_t velocity_max; uint32_t velocity_per_s;
    /* rate: {requests, per, burst}: a token bucket over all of the agent's
     * requests; 0 requests when unset */
    uint32_t rate_requests, rate_per_s, rate_burst;
    char **currencies; size_t ncurrencies;
    char **operations; size_t noperations;
    bool refunds_restore;
    bool has_refunds_restore;      /* set in the file (matters for overrides) */
};

#define PG_WEBHOOK_MAX_THRESHOLDS 8
#define PG_WEBHOOK_MAX_PREVIOUS 3  /* previous_secrets kept signing during a rotation */

struct pg_webhook {
    char *url;                     /* https:// only */
    char *secret_ref;              /* "env:NAME" or "sealed:v1:..." as written */
    char *secret;                  /* resolved signing secret; NULL until resolved */
    char **events; size_t nevents;
    /* previous_secrets: during a key rotation these sign too (after
     * `secret`), so receivers that still hold an old key accept */
    char **previous_refs; char **previous; size_t nprevious;
    char *ca_file;                 /* NULL: the system CA store */
    /* budget.threshold: fractions of each limit in permille, ascending;
     * [500, 800, 1000] when not written */
    uint16_t thresholds[PG_WEBHOOK_MAX_THRESHOLDS]; size_t nthresholds;
    uint32_t max_age_s;            /* retries stop this long after the event; 0: 3 days */
};

struct pg_limits {
    uint32_t header_bytes;         /* request line + headers; over → 431 */
    uint32_t max_headers;          /* over → 431 */
    uint32_t body_bytes;           /* over → 413 */
    uint32_t header_timeout_ms;    /* whole header block must arrive in this */
    uint32_t body_timeout_ms;      /* body must arrive in this after headers */
    uint32_t idle_timeout_ms;      /* keep-alive idle */
    uint32_t drain_timeout_ms;     /* SIGTERM: in-flight requests get this long */
    uint32_t max_connections;      /* agent connections; past it, accept and close */
    uint32_t auth_failures;        /* failures per address per minute before 429 */
};

/* ledger: how long the ledger keeps what it keeps, and how big it may grow.
 * Read at start-up; a reload that changes them says they wait for a restart. */
struct pg_ledger_settings {
    uint32_t idempotency_ttl_s;    /* keys replay at least this long (default 24 h) */
    uint32_t approval_ttl_s;       /* a held payment waits this long for a human (24 h) */
    uint32_t max_size_mib;         /* the LMDB map grows up to this, then 503 (4096) */
    bool settle_before_answer;     /* the agent waits until the rail's answer is
                                      durable too (false: only the decision is) */
};

struct pg_config {
    char *path;                    /* file it was loaded from */
    struct pg_addr listen_agents;
    struct pg_addr listen_admin;
    struct pg_tls_files agents_tls;
    char *data_dir;
    char *master_key_env;
    char *log_file;                /* NULL: stderr */
    struct pg_limits limits;
    struct pg_ledger_settings ledger;
    struct pg_rail *rails; size_t nrails;
    struct pg_org *orgs; size_t norgs;
    struct pg_user *users; size_t nusers;
    struct pg_agent *agents; size_t nagents;
    struct pg_policy_spec *policies; size_t npolicies;
    struct pg_webhook *webhooks; size_t nwebhooks;
    /* url_guard: extra ports and CIDRs for callback URLs (policy/urlguard.h);
     * all zero: https on 443 to public addresses only */
    struct pg_urlguard_opts url_guard;
};

/* Problems found while loading, each "file:line:col: message". */
struct pg_config_errors {
    char **msgs;
    size_t count;
};

/* Loads and validates `path`. On success returns 0 and sets *out (caller frees
 * with pg_config_free). On failure returns PG_ECONFIG and fills errs with every
 * problem found (caller frees with pg_config_errors_free); *out is untouched.
 * errs is reset first, so it needs no initialisation; it may be NULL when the
 * caller only wants the verdict. Problems come sorted by position; an
 * unreadable file is reported at 1:1. Returns PG_ENOMEM (errs empty) if an
 * allocation fails.
 * Secrets are resolved too unless `resolve_secrets` is false, which `payguard
 * check --no-env` uses on a machine without the variables: then rail->secret
 * and webhook->secret stay NULL. env:NAME is read from the environment;
 * sealed:v1: is opened (pg_unseal, crypto/crypto.h) with the passphrase in the
 * variable master_key_env names, its config path as the AAD. Each sealed value
 * costs one scrypt, about 0.4 s of CPU and 128 MiB, on every load and reload.
 * A missing variable or passphrase, a wrong passphrase and an altered or moved
 * value are problems at the value's position, naming its path and never the
 * secret. Resolved secrets live only in this memory.
 * Any thread; reads the environment and /usr/share/zoneinfo (or $TZDIR). */
PG_WUR int pg_config_load(const char *path, bool resolve_secrets,
                          struct pg_config **out, struct pg_config_errors *errs);

/* Both accept NULL. Resolved secrets are wiped before their memory is freed.
 * pg_config_errors_free leaves errs empty (reusable). */
void pg_config_free(struct pg_config *cfg);
void pg_config_errors_free(struct pg_config_errors *errs);

/* Lookups by name; NULL when absent. Pointers live as long as cfg. */
const struct pg_rail *pg_config_rail(const struct pg_config *cfg, struct pg_slice name);
const struct pg_agent *pg_config_agent(const struct pg_config *cfg, struct pg_slice id);
const struct pg_org *pg_config_org(const struct pg_config *cfg, struct pg_slice name);
const struct pg_policy_spec *pg_config_policy(const struct pg_config *cfg, struct pg_slice name);

/* Parses "host:port" or "[v6]:port" with a numeric host (dotted-quad IPv4 or
 * bracketed IPv6; no names, no scope ids), port 0..65535. Returns 0 and fills
 * *out (out->text is a malloc'd copy: release with pg_addr_clear), PG_EPARSE
 * for a malformed address, PG_ENOMEM; *out is untouched on failure. */
PG_WUR int pg_addr_parse(const char *text, struct pg_addr *out);

/* Frees out->text and zeroes *out. Accepts NULL. Not for the addresses inside
 * a pg_config: pg_config_free owns those. */
void pg_addr_clear(struct pg_addr *addr);

#endif /* PG_CONFIG_H */
