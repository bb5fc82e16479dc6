/* The durable ledger: budgets as two-phase reservations, Stripe-exact
 * idempotency, approvals and one hash-chained audit log per org, all in one
 * LMDB environment. The only module that touches LMDB.
 *
 * One writer thread owns every write transaction and group-commits: it takes
 * everything queued, runs each item's stateful checks on fresh values inside
 * one transaction, commits once (full durability, default LMDB flags) and
 * wakes the loop thread through uv_async. The loop thread never touches the
 * disk. The CLI opens the same environment from another process; LMDB
 * serializes writers across processes.
 *
 * Money is int64 minor units. Strings are copied in; nothing here keeps a
 * pointer to caller memory once a call returns or a request completes. */
#ifndef PG_LEDGER_H
#define PG_LEDGER_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <uv.h>

#include "common/pg.h"
#include "crypto/crypto.h"
#include "policy/policy.h"

struct pg_ledger;

struct pg_ledger_options {
    const char *dir;               /* created 0700 if missing; files 0600 */
    uint64_t map_size;             /* initial LMDB map size, bytes (default 64 MiB) */
    uint64_t map_size_max;         /* grow up to this, then fail closed (default 4 GiB) */
    uint32_t idempotency_ttl_s;    /* keep keys at least this long (default 86400) */
    uint32_t approval_ttl_s;       /* approvals expire after this (default 86400) */
    bool read_only;                /* CLI views: no writer, no changes */
};

/* Opens (creating if needed) the environment, clears stale reader slots left
 * by crashed processes (mdb_reader_check). 0, or a negative code with `err`
 * saying what and where. Any thread. */
PG_WUR int pg_ledger_open(const struct pg_ledger_options *opt, struct pg_ledger **out,
                          char *err, size_t errlen);
/* Stops the writer if running, then closes. Loop thread (or any thread when
 * no writer was started). */
void pg_ledger_close(struct pg_ledger *l);

/* --- the request path (loop thread + writer thread) ---------------------- */

/* Starts the writer thread; completions are delivered on `loop`. Loop thread. */
PG_WUR int pg_ledger_start(struct pg_ledger *l, uv_loop_t *loop);
/* True while the writer runs and the last commit did not fail hard. */
bool pg_ledger_ready(const struct pg_ledger *l);

#define PG_IDEM_KEY_MAX 255
#define PG_ID_MAX 64               /* agent, org, approval and object ids */
#define PG_COUNTERPARTY_MAX 255

/* A stored rail answer, replayed byte for byte. Owned by the request that
 * carries it; freed by pg_ledger_req_free. */
struct pg_stored_response {
    int status;
    char *head;                    /* status line and headers as sent to the agent */
    size_t head_len;
    char *body;
    size_t body_len;
};

enum pg_ledger_kind {
    PG_LEDGER_BEGIN,               /* before forwarding a money request */
    PG_LEDGER_SETTLE,              /* after the rail answered (or did not) */
    PG_LEDGER_RECORD               /* an audit entry with no budget effect (reads, denials) */
};

/* What BEGIN found and did. */
enum pg_begin_result {
    PG_BEGIN_PROCEED,              /* reserved (or follow-up registered): forward it */
    PG_BEGIN_REPLAY,               /* same key, same request, answered before: replay */
    PG_BEGIN_IN_FLIGHT,            /* same key, first request still in flight: 409 */
    PG_BEGIN_MISMATCH,             /* same key, different request: 400 idempotency_error */
    PG_BEGIN_DECIDED               /* `decision` is a DENY or HOLD to answer; nothing reserved */
};

/* How the rail's answer settles a reservation (decided by policy/ from the
 * rail's answer; the ledger knows nothing of HTTP). */
enum pg_settle_outcome {
    PG_SETTLE_POST,                /* money moved: post `amount` (pending released) */
    PG_SETTLE_VOID,                /* definitely no money moved: release the reservation */
    PG_SETTLE_KEEP,                /* unknown (timeout, 5xx, lost): stays pending */
    PG_SETTLE_AUTHORIZED           /* held by the rail (requires_capture): pending = `amount` */
};

struct pg_ledger_req;
typedef void (*pg_ledger_cb)(struct pg_ledger_req *req);

struct pg_ledger_req {
    enum pg_ledger_kind kind;
    pg_ledger_cb cb;               /* called on the loop thread when durable (or failed) */
    void *data;                    /* the caller's */
    int status;                    /* out: 0, or negative: could not record (fail closed) */

    /* who and when (BEGIN, SETTLE, RECORD) */
    char org[PG_ID_MAX + 1];
    char agent[PG_ID_MAX + 1];
    int64_t now;                   /* Unix seconds */
    char idem_key[PG_IDEM_KEY_MAX + 1];  /* "" for RECORD */
    uint8_t fingerprint[PG_SHA256_LEN];  /* SHA-256 of method, path, body */

    /* the intent (BEGIN, RECORD) */
    enum pg_op op;
    enum pg_action action;
    const char *route;             /* static (route tables outlive requests) */
    bool has_amount;
    int64_t amount;
    char currency[4];
    char counterparty[PG_COUNTERPARTY_MAX + 1];
    char object_id[PG_ID_MAX + 1]; /* the rail object a follow-up acts on */

    /* BEGIN: the policy to run on fresh spend. Read only; the caller keeps
     * them alive until cb runs. */
    const struct pg_policy *policy;
    const struct pg_agent *agent_cfg;
    struct pg_windows windows;     /* computed by the caller in the org's zone */

    /* BEGIN in: the stateless verdict; out: the final one. RECORD in. */
    struct pg_decision decision;

    /* BEGIN out */
    enum pg_begin_result result;
    uint64_t reservation;          /* 0 when none */
    char approval_id[PG_ID_MAX + 1];
    struct pg_stored_response replay;   /* REPLAY: the stored answer */

    /* SETTLE in (reservation, idem_key and who/when above) */
    enum pg_settle_outcome outcome;
    int64_t settle_amount;         /* POST / AUTHORIZED: the amount the rail reports */
    char result_object_id[PG_ID_MAX + 1];   /* object the answer created (pi_...), or "" */
    bool store_response;           /* rail answered: keep it for replays */
    struct pg_stored_response response;     /* what the agent got (copied in) */

    struct pg_ledger_req *next;    /* the ledger's queue link */
};

/* Queues `req` for the writer. Returns 0 (cb will run exactly once on the
 * loop thread), or PG_EBUSY/PG_ESTORE when the ledger cannot take it now
 * (cb will not run; fail closed). Loop thread. */
PG_WUR int pg_ledger_submit(struct pg_ledger *l, struct pg_ledger_req *req);

/* Frees what the ledger allocated into req (replay, response); not req. */
void pg_ledger_req_free(struct pg_ledger_req *req);

/* --- approvals (CLI now, admin API later): own transactions, any thread ---- */

enum pg_approval_status {
    PG_APPROVAL_PENDING, PG_APPROVAL_APPROVED, PG_APPROVAL_DENIED,
    PG_APPROVAL_EXPIRED, PG_APPROVAL_USED
};
const char *pg_approval_status_name(enum pg_approval_status s);

struct pg_approval {
    char id[PG_ID_MAX + 1];
    char org[PG_ID_MAX + 1];
    char agent[PG_ID_MAX + 1];
    char idem_key[PG_IDEM_KEY_MAX + 1];
    enum pg_approval_status status;  /* EXPIRED is reported once expires_at has passed */
    int64_t created_at, expires_at, decided_at;
    char decided_by[128];
    char note[256];
    const char *route;             /* static string, or "" */
    enum pg_op op;
    int64_t amount;
    bool has_amount;
    char currency[4];
    char counterparty[PG_COUNTERPARTY_MAX + 1];
    char reason[64];
};

/* Lists approvals (org NULL: all) in creation order; `only_pending` filters.
 * Calls cb for each; stops early when cb returns non-zero. 0 or negative. */
PG_WUR int pg_ledger_approvals(struct pg_ledger *l, const char *org, bool only_pending,
                               int64_t now, int (*cb)(void *arg, const struct pg_approval *a),
                               void *arg);
PG_WUR int pg_ledger_approval_get(struct pg_ledger *l, const char *id, int64_t now,
                                  struct pg_approval *out);
/* Approves or denies a pending approval, audited with `actor` (a human,
 * never an agent). PG_ENOTFOUND, PG_EBUSY when it is no longer pending or
 * has expired, 0 on success. */
PG_WUR int pg_ledger_approval_decide(struct pg_ledger *l, const char *id, bool approve,
                                     const char *actor, const char *note, int64_t now);

/* --- views and the audit chain (read transactions; any thread) -------------- */

/* Posted + pending spend of `agent` in `currency` for the three windows, and
 * money operations since now - velocity_period_s. */
PG_WUR int pg_ledger_spend(struct pg_ledger *l, const char *agent, const char *currency,
                           const struct pg_windows *w, int64_t now, uint32_t velocity_period_s,
                           struct pg_spend *posted, struct pg_spend *pending);

struct pg_reservation_view {
    uint64_t id;
    char agent[PG_ID_MAX + 1];
    char currency[4];
    int64_t amount;                /* pending amount */
    int64_t created_at;
    char object_id[PG_ID_MAX + 1];
    const char *route;
};
/* Pending reservations of `agent` (NULL: all), oldest first. */
PG_WUR int pg_ledger_pending(struct pg_ledger *l, const char *agent,
                             int (*cb)(void *arg, const struct pg_reservation_view *r),
                             void *arg);

/* Result of walking one org's chain. */
struct pg_audit_report {
    char org[PG_ID_MAX + 1];
    uint64_t count;                /* entries checked */
    uint64_t head_seq;
    uint8_t head_hash[PG_SHA256_LEN];
    bool ok;
    uint64_t bad_seq;              /* first bad entry when !ok */
    char why[128];                 /* "hash mismatch", "gap", "broken link", ... */
};

/* Verifies every org's chain (org NULL) or one; cb per org. 0 when the walk
 * ran (look at each report's ok), negative when it could not run. */
PG_WUR int pg_ledger_audit_verify(struct pg_ledger *l, const char *org,
                                  void (*cb)(void *arg, const struct pg_audit_report *r),
                                  void *arg);
/* Writes entries with seq >= since as JSON Lines: the canonical entry with
 * its "hash" (see README for the canonical form). */
PG_WUR int pg_ledger_audit_export(struct pg_ledger *l, const char *org, uint64_t since, FILE *out);

/* Recent audit entries of `agent` (newest first, at most `max`), each as its
 * canonical JSON line; for `payguard ledger show`. */
PG_WUR int pg_ledger_audit_recent(struct pg_ledger *l, const char *org, const char *agent,
                                  size_t max, int (*cb)(void *arg, const char *json, size_t len),
                                  void *arg);

#endif /* PG_LEDGER_H */
