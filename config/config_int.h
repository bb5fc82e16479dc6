/* Private to config/: the state of one load in progress and the helpers its
 * files share. report.c collects problems, values.c checks scalar syntax with
 * no YAML in sight, walk.c turns YAML nodes into checked values, sections.c
 * knows the schema (routes.c its rails.NAME.routes part), zone.c loads org
 * time zones, config.c drives a load and owns the result's lifetime. */
#ifndef PG_CONFIG_INT_H
#define PG_CONFIG_INT_H

#include "common/pg.h"

#include <stdbool.h>
#include <stdint.h>
#include <time.h>
#include <yaml.h>

#include "config/config.h"

#define CFG_PRINTF(f, a) __attribute__((format(printf, f, a)))

/* Room for a dotted config path in messages ("policies.default.hours.from"). */
#define CFG_PATH_MAX 256

/* User text echoed in messages is cut to this many bytes ("%.*s"). */
#define CFG_ECHO 80

struct cfg_problem {
    size_t line, col; /* 1-based */
    size_t seq;       /* report order: keeps the sort stable */
    char *msg;        /* "file:line:col: message" */
};

/* One load in progress. Every problem goes through cfg_report*(); `nomem`
 * turns the whole load into PG_ENOMEM, since a half-built config is useless. */
struct cfg_loader {
    const char *file; /* path as given, the prefix of every message */
    yaml_document_t *doc;
    struct pg_config *cfg; /* being filled */
    bool resolve;          /* resolve env: and sealed: secrets now */
    bool nomem;
    bool truncated; /* problems past CFG_MAX_PROBLEMS dropped */
    /* By policy slot: its `currency:` was written but refused. Agents'
     * overrides then skip their own currency check: it was reported once. */
    bool *policy_currency_refused;
    struct cfg_problem *probs;
    size_t nprobs, capprobs;
};

/* report.c ------------------------------------------------------------- */

void cfg_report_at(struct cfg_loader *ld, size_t line, size_t col, const char *fmt, ...)
    CFG_PRINTF(4, 5);
/* At a node's start (libyaml marks are 0-based; messages are 1-based). */
void cfg_report(struct cfg_loader *ld, const yaml_node_t *n, const char *fmt, ...) CFG_PRINTF(3, 4);
/* Sorts the problems by position and moves them into errs (NULL: dropped). */
void cfg_problems_finish(struct cfg_loader *ld, struct pg_config_errors *errs);
void cfg_problems_discard(struct cfg_loader *ld);

/* Closest of n names to `word` (edit distance, ASCII case folded), or NULL
 * when none is close enough to be a plausible typo. `first` points at the
 * first element's name pointer, `stride` is the element size: this serves
 * both `const char *names[]` and arrays of structs with a name field. */
const char *cfg_suggest_in(const char *word, const void *first, size_t n, size_t stride);
#define CFG_SUGGEST_NAMES(word, names, n) cfg_suggest_in((word), (names), (n), sizeof(const char *))
#define CFG_SUGGEST_FIELD(word, arr, n, field)                                                     \
    ((n) ? cfg_suggest_in((word), &(arr)[0].field, (n), sizeof((arr)[0])) : NULL)

/* values.c: pure syntax checks. Each returns NULL when `s` is fine, else a
 * phrase saying what is wrong, to follow "path: " in a message. -------- */

/* "IP:port" / "[v6]:port" into *out (text not set). */
const char *cfg_addr_check(const char *s, struct sockaddr_storage *sa, socklen_t *salen);

struct cfg_url {
    bool tls;
    const char *host; /* into the checked string, no brackets */
    size_t hostlen;
    bool ipv6;
    uint16_t port; /* explicit or the scheme's default */
    bool default_port;
    const char *rest; /* path, query, fragment: from the '/' on */
};
/* http(s)://host[:port][/...]; userinfo and fragments refused. */
const char *cfg_url_check(const char *s, struct cfg_url *u);

const char *cfg_name_check(const char *s);     /* rail, org, policy, agent */
const char *cfg_env_name_check(const char *s); /* [A-Za-z_][A-Za-z0-9_]* */
const char *cfg_bcrypt_check(const char *s);
const char *cfg_email_check(const char *s);
/* "500.00": shape only (digits, optional '.' and decimals, at most 15 digits
 * before it); the number of decimals is the currency's to allow. */
const char *cfg_decimal_check(const char *s);
const char *cfg_currency_check(const char *s); /* 3 ASCII letters */
const char *cfg_glob_check(const char *s);
const char *cfg_duration_check(const char *s, uint32_t *seconds);
/* "HH:MM"; "24:00" only when allow_2400. */
const char *cfg_hhmm_check(const char *s, bool allow_2400, uint16_t *minutes);
const char *cfg_days_check(const char *s, uint8_t *mask);
const char *cfg_timestamp_check(const char *s, time_t *out);
/* Shape of an IANA zone name, safe to append to the zoneinfo directory. */
const char *cfg_timezone_check(const char *s);
const char *cfg_sealed_check(const char *s); /* "sealed:v1:<base64url>" */

/* "/v1/things/{id}/pay": literal segments or whole {name} placeholders. */
const char *cfg_route_path_check(const char *s);
/* Request body fields: form keys ("transfer_data[destination]",
 * "line_items[][price]") and RFC 6901 JSON pointers ("/amount/value"). */
const char *cfg_form_key_check(const char *s);
const char *cfg_json_pointer_check(const char *s);

enum cfg_secret_kind { CFG_SECRET_ENV, CFG_SECRET_SEALED, CFG_SECRET_PLAIN, CFG_SECRET_BAD };
/* Classifies a secret reference; *why is set for CFG_SECRET_BAD. */
enum cfg_secret_kind cfg_secret_classify(const char *s, const char **why);

/* walk.c -------------------------------------------------------------- */

/* "a mapping", "a list", "a string": for "expected X, got Y". */
const char *cfg_kind(const yaml_node_t *n);
/* Plain `~`, `null` or nothing: treated as if the key were absent. */
bool cfg_is_null(const yaml_node_t *n);
yaml_node_t *cfg_node(struct cfg_loader *ld, int index);
size_t cfg_seq_len(const yaml_node_t *n);
yaml_node_t *cfg_seq_item(struct cfg_loader *ld, const yaml_node_t *n, size_t i);
const char *cfg_text(const yaml_node_t *n); /* scalar text, NUL-terminated */

/* "where.key" (or "key" at the top level, where == NULL) into buf. */
const char *cfg_path(char *buf, size_t size, const char *where, const char *key);

/* Walks mapping `map` against the n known `names`: vals[i]/keys[i] get the
 * value and key nodes of names[i] (NULL when absent; vals[i] NULL too for a
 * null value). Unknown keys, duplicate keys and non-string keys are
 * reported. A NULL or null `map` is an empty mapping. Returns false (after
 * reporting) when `map` is not a mapping at all. */
bool cfg_fields(struct cfg_loader *ld, const yaml_node_t *map, const char *where,
                const char *const *names, size_t n, yaml_node_t **vals, yaml_node_t **keys);
/* True when vals[i] is set; otherwise reports the key as missing, at the key
 * when it is there with no value, else at `anchor` (the mapping or its key). */
bool cfg_require(struct cfg_loader *ld, const yaml_node_t *anchor, yaml_node_t *const *vals,
                 yaml_node_t *const *keys, size_t i, const char *const *names, const char *where);

/* Checked scalars. Each reports and returns NULL/false on a bad value. */
const char *cfg_str(struct cfg_loader *ld, const yaml_node_t *n, const char *path);
bool cfg_u32(struct cfg_loader *ld, const yaml_node_t *n, const char *path, uint32_t lo,
             uint32_t hi, uint32_t *out);
bool cfg_bool(struct cfg_loader *ld, const yaml_node_t *n, const char *path, bool *out);
/* Index of the value in names[], or -1 after reporting. */
int cfg_enum(struct cfg_loader *ld, const yaml_node_t *n, const char *path,
             const char *const *names, size_t count);
bool cfg_is_seq(struct cfg_loader *ld, const yaml_node_t *n, const char *path);

/* strdup that records an allocation failure in ld; NULL in, NULL out. */
char *cfg_dup(struct cfg_loader *ld, const char *s);
void *cfg_calloc(struct cfg_loader *ld, size_t n, size_t size);

/* Checks one list item's text; reports and returns false when bad. */
typedef bool (*cfg_item_cb)(struct cfg_loader *ld, const yaml_node_t *item, const char *path,
                            const char *s);
/* A list of strings: each item checked by `check` (may be NULL), copied
 * (ASCII-lowercased when `lower`), and repeats reported. Returns false when
 * `n` is not a list. */
bool cfg_str_list(struct cfg_loader *ld, const yaml_node_t *n, const char *path, cfg_item_cb check,
                  bool lower, char ***out, size_t *count);

/* Reports every scalar in nodes[] whose text repeats an earlier one:
 * `duplicate <what> "<text>"<where> (first at line L, column C)`.
 * `nocase` folds ASCII case. nodes[] is reordered. */
void cfg_report_dups(struct cfg_loader *ld, const yaml_node_t **nodes, size_t n, bool nocase,
                     const char *what, const char *where);

/* zone.c -------------------------------------------------------------- */

struct pg_tz;
/* Loads the zone `name` ("UTC" and "Etc/UTC" need no file): 0 and *out,
 * PG_EPARSE with *why a phrase for the message, or PG_ENOMEM. */
PG_WUR int cfg_zone_load(const char *name, struct pg_tz **out, const char **why);

/* routes.c ------------------------------------------------------------ */

/* Reads rails.NAME.routes (the list node `n`) into r->routes. Needs
 * r->preset and r->format already set: generic rails must say where the
 * money is, and field references must suit the body format. */
void cfg_load_routes(struct cfg_loader *ld, const yaml_node_t *n, const char *where,
                     struct pg_rail *r);

/* sections.c ---------------------------------------------------------- */

/* Walks the document root into ld->cfg (already holding the defaults). */
void cfg_load_root(struct cfg_loader *ld, const yaml_node_t *root);

#endif /* PG_CONFIG_INT_H */
