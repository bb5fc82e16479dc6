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
 * pointer to caller memory once a call returns or a request completes.
 *
 * Map growth: when the map fills, the writer aborts, grows the map (doubling,
 * up to map_size_max) and retries. mdb_env_set_mapsize is only legal while no
 * transaction of this process is open, so every transaction here holds a
 * process-wide shared lock that the resize takes exclusively. In payguard the
 * loop thread does not open LMDB transactions while the server runs (views are
 * for the CLI and the admin API), so it never waits on that lock. */
#ifndef PG_LEDGER_H
#define PG_LEDGER_H

#include <stdatomic.h>
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

/* Named databases inside the environment (schema 1; every record starts with
 * a version byte so later changes can migrate; integers in records are
 * little-endian, in keys big-endian so they sort; times in keys are i64 with
 * the sign bit flipped so that they sort as signed):
 *   meta        "schema" -> u32, "epoch" -> u64 (last read-write opener),
 *               "resv_next", "resp_next" -> u64 (next ids)
 *   idem        agent \0 idem_key -> idempotency record (state, epoch,
 *               fingerprint, reservation, answer id when DONE): small and
 *               fixed, since random keys make this tree's writes random
 *   responses   u64 BE id -> stored answer {status, head, body}, appended
 *   resv        u64 BE id -> reservation
 *   objects     rail object id -> u64 reservation id, for an id other than
 *               the one its reservation names (and mappings written before
 *               the in-memory index of objects.c)
 *   spend       agent \0 currency \0 day_start -> {posted, pending}
 *   velocity    agent \0 ts \0 u64 BE seq -> empty (per agent ts never goes
 *               down and seq grows by one, so a count is two seeks)
 *   approvals   approval id -> approval record
 *   audit       org \0 u64 BE seq -> canonical entry bytes ‖ SHA-256 (32)
 *   audit_head  org -> {seq, hash}
 *   expiry      u8 kind ‖ time ‖ key -> empty: finished idempotency records
 *               and reservations by the time they finished, for pruning */

/* Opens (creating if needed) the environment, clears stale reader slots left
 * by crashed processes (mdb_reader_check). A read-write open picks a new
 * random process epoch: keys left IN_FLIGHT by earlier processes become
 * unresolved (see BEGIN). A read-only open needs an existing ledger. 0, or
 * PG_EPARSE (no dir), PG_ENOMEM, PG_ESTORE (LMDB or the directory; newer
 * schema), PG_ECRYPTO, with `err` saying what and where. Any thread. */
PG_WUR int pg_ledger_open(const struct pg_ledger_options *opt, struct pg_ledger **out,
                          char *err, size_t errlen);
/* Stops accepting, lets the writer drain what is queued, joins it, runs the
 * callbacks of everything completed (here, synchronously: a callback that
 * submits again gets PG_EBUSY), then closes the environment and frees `l`.
 * The uv_async handle is closed with uv_close and freed in its close
 * callback, so the caller must run the loop once more after this (uv_run)
 * for that memory to be released. Loop thread (or any thread when no writer
 * was started). NULL is a no-op. */
void pg_ledger_close(struct pg_ledger *l);

/* --- the request path (loop thread + writer thread) ---------------------- */

/* Starts the writer thread; completions are delivered on `loop`. One
 * process at a time serves a ledger (it holds server.lock in the data
 * directory). 0, -EAGAIN (another process serves it), PG_EBUSY (read-only
 * ledger, or already started), PG_ENOMEM, or -errno from the lock file,
 * uv_async_init or pthread_create. Loop thread. */
PG_WUR int pg_ledger_start(struct pg_ledger *l, uv_loop_t *loop);
/* True while the writer runs and the last commit did not fail hard. A full
 * map at map_size_max is not a hard failure: those batches fail with
 * PG_ESTORE, and smaller ones may still fit. Any thread. */
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

/* BEGIN, on the writer thread inside the batch's write transaction:
 *  1. Idempotency (when idem_key is not ""): a stored request with another
 *     fingerprint is MISMATCH; a DONE one is REPLAY (replay filled); an
 *     IN_FLIGHT one is IN_FLIGHT when this process started it, else it is
 *     unresolved (payguard stopped, SETTLE said KEEP without an answer, or
 *     this process's SETTLE of it failed to commit):
 *     PROCEED with the SAME reservation (nothing reserved or counted again,
 *     decision reason "unresolved_retry") so the rail deduplicates the resend.
 *     A HELD one (approval asked) looks at its approval: pending -> DECIDED
 *     402 approval_required again; denied -> DECIDED 403 approval_denied;
 *     expired or gone -> DECIDED 403 approval_expired; approved -> the
 *     stateful rules run with the HOLD let through (never a limit): PROCEED
 *     marks the approval USED (reason "approved"); a limit DENY leaves it
 *     APPROVED for a later retry.
 *  2. Fresh spend of the request's currency (else the policy's) in the three
 *     windows of `windows` and the velocity count, then
 *     pg_policy_check_spend on `decision`. DENY -> DECIDED (audited, nothing
 *     stored); HOLD -> an approval (approval_id), the key HELD, DECIDED 402.
 *  3. ALLOW -> PROCEED: CREATE (or NONE) money operations with an amount
 *     reserve it (pending) in the bucket of windows.day_start; follow-ups
 *     (UPDATE, CONFIRM, CAPTURE, INCREMENT, CANCEL) find the object's
 *     reservation by object_id, are checked only for the amount above it and
 *     grow it by that much; an INCREMENT of an unknown object reserves its
 *     whole amount. Refunds reserve nothing (SETTLE may restore budget).
 *     Money operations leave a velocity mark; the key goes IN_FLIGHT.
 * On PROCEED `decision` is an ALLOW (status 200); on REPLAY, IN_FLIGHT and
 * MISMATCH it is left as submitted. `reservation` is also the stored one on
 * REPLAY and IN_FLIGHT. Replays, in-flight, mismatches and retries of a hold
 * still pending are not audited (a polling agent does not flood the log);
 * everything else is, in the same transaction as its change. */

/* What BEGIN found and did. */
enum pg_begin_result {
    PG_BEGIN_PROCEED,              /* reserved (or follow-up registered): forward it */
    PG_BEGIN_REPLAY,               /* same key, same request, answered before: replay */
    PG_BEGIN_IN_FLIGHT,            /* same key, first request still in flight: 409 */
    PG_BEGIN_MISMATCH,             /* same key, different request: 400 idempotency_error */
    PG_BEGIN_DECIDED               /* `decision` is a DENY or HOLD to answer; nothing reserved */
};

/* How the rail's answer settles a reservation (decided by policy/ from the
 * rail's answer; the ledger knows nothing of HTTP).
 *
 * SETTLE, by `reservation` (0: none), applied once: the key's IN_FLIGHT
 * record says this is the first settle, so a replayed SETTLE changes nothing
 * (it is audited with a note). Transitions of a reservation:
 *   PENDING/AUTHORIZED + POST(a)       -> POSTED: pending released, posted += a
 *                                         (a may exceed what was reserved)
 *   PENDING/AUTHORIZED + AUTHORIZED(a) -> AUTHORIZED: pending = a
 *   PENDING/AUTHORIZED + VOID          -> VOIDED: pending released, when the
 *                                         request created it or was a CANCEL;
 *                                         a declined UPDATE/CONFIRM/CAPTURE/
 *                                         INCREMENT only takes back what it
 *                                         grew (the object lives on)
 *   any + KEEP                         -> unchanged (still counts)
 *   POSTED/VOIDED + POST/VOID/AUTH.    -> ignored, audited as illegal
 * With no reservation: a refund POST gives `settle_amount` back to posted
 * spend of the BEGIN day (floored at 0) when the policy says
 * refunds_restore; another money POST (a follow-up on an object made outside
 * payguard) counts `settle_amount` as posted. result_object_id maps the rail
 * object to the reservation for later follow-ups.
 * The key: store_response -> DONE with `response` (replayed byte for byte);
 * otherwise VOID forgets the key (nothing reached the rail: a retry starts
 * afresh), and KEEP/POST/AUTHORIZED leave it IN_FLIGHT marked unresolved, so
 * the next retry re-sends under the same rail key. */
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

    /* RECORD: the audit action (static string; NULL: "deny" when decision is
     * a DENY, else "record") and the actor ("": "agent:<agent>", or
     * "payguard" when agent is "" too), e.g. "cli:ana" for a config reload. */
    const char *audit_action;
    char actor[128];

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

    /* SETTLE in: reservation, idem_key, who/when above, and op (a refund),
     * route and fingerprint (for the audit entry). Without an idem_key the
     * ledger has no BEGIN record to read, so it also takes currency,
     * windows.day_start and policy (refunds_restore) from here. */
    enum pg_settle_outcome outcome;
    int64_t settle_amount;         /* POST / AUTHORIZED: the amount the rail reports */
    char result_object_id[PG_ID_MAX + 1];   /* object the answer created (pi_...), or "" */
    bool store_response;           /* rail answered: keep it for replays */
    struct pg_stored_response response;     /* what the agent got (copied in) */

    bool deferrable;               /* nobody waits for this one (a SETTLE behind an
                                      answer already given): it may wait up to
                                      LEDGER_LINGER_US for a request that somebody
                                      waits for, to share its commit */

    /* Optional work the request needs before the ledger applies it, too slow
     * for the loop thread (reading the rail's answer). The ledger's preparer
     * thread runs it while the request waits, or the writer does when it
     * reaches the request in its batch first: exactly once, never on the loop
     * thread, never under a lock of ours. It may read and write only this
     * request. */
    void (*prepare)(struct pg_ledger_req *req);

    struct pg_ledger_req *next;    /* the ledger's queue link */
    struct pg_ledger_req *prep_next;    /* the ledger's: waiting for the preparer */
    atomic_int prep_state;         /* the ledger's (writer.c) */
    struct pg_decision decision_in;     /* the ledger's: `decision` as submitted,
                                           restored when a batch is retried */
};

/* Queues `req` for the writer. Returns 0 (cb will run exactly once on the
 * loop thread), or PG_EBUSY/PG_ESTORE when the ledger cannot take it now
 * (cb will not run; fail closed), PG_EPARSE for a NULL cb or an unknown kind.
 * `req` and the memory it points to (policy, agent_cfg, response) stay the
 * caller's and must live until cb. Start from a zeroed req; `replay` is
 * cleared here, so free a previous one (pg_ledger_req_free) before reusing a
 * req. In cb,
 * status < 0 means nothing of it was recorded: PG_ESTORE (the batch's
 * transaction failed: disk, map full at map_size_max), PG_EPARSE (a bad
 * field: empty agent/org, negative amount, bad windows), PG_ERANGE (an
 * amount that would overflow a total), PG_ETOOBIG (a response over 64 MiB),
 * or the policy's code when it could not decide. PG_EBUSY when not started,
 * closing, or 65536 requests are already queued. Loop thread. */
PG_WUR int pg_ledger_submit(struct pg_ledger *l, struct pg_ledger_req *req);
/* Queues n requests at once so that they land in the same batch; all or
 * none (same codes). Loop thread. */
PG_WUR int pg_ledger_submit_many(struct pg_ledger *l, struct pg_ledger_req **reqs, size_t n);

/* Frees what the ledger allocated into req (replay) and zeroes it; not req,
 * and not `response`, which stays the caller's. Loop thread. */
void pg_ledger_req_free(struct pg_ledger_req *req);

/* Counters for /metrics. Any thread. */
struct pg_ledger_stats {
    uint64_t batches;              /* committed write transactions of the writer */
    uint64_t items;                /* requests in them */
    uint64_t max_batch;            /* largest batch seen */
    uint64_t failed_batches;       /* batches failed with PG_ESTORE */
    uint64_t map_grows;            /* times the map was doubled */
    uint64_t map_size;             /* current map size, bytes */
    uint64_t pruned;               /* records removed by pruning */
    uint64_t unanswered;           /* submitted, not committed (or failed) yet: 0
                                      means everything answered is durable */
};
void pg_ledger_stats(struct pg_ledger *l, struct pg_ledger_stats *out);

/* Removes what is no longer needed: DONE idempotency records finished more
 * than idempotency_ttl_s ago (with their stored answers), velocity marks
 * older than a day, spend buckets older than 40 days with nothing pending,
 * finished reservations older than 40 days (and their object mappings),
 * decided approvals older than 7 days (with their HELD keys; a pending one
 * expired 7 days ago is audited "expire" first). Never audit entries. The
 * writer runs this by itself at most once a minute of request time; this
 * call is for the CLI and tests. At most `budget` deletions (0: 10000); *more
 * (may be NULL) says whether work was left. Own write transaction; any
 * thread. 0, PG_ESTORE, or PG_EBUSY on a read-only ledger. */
PG_WUR int pg_ledger_prune(struct pg_ledger *l, int64_t now, size_t budget, bool *more);

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
    const char *route;             /* "" or a string the ledger keeps until close */
    enum pg_op op;
    int64_t amount;
    bool has_amount;
    char currency[4];
    char counterparty[PG_COUNTERPARTY_MAX + 1];
    char reason[64];
};

/* Lists approvals (org NULL: all) in creation order; `only_pending` filters.
 * Calls cb for each; stops early when cb returns non-zero. Status is as of
 * `now` (a pending one past expires_at reads EXPIRED). 0, PG_ENOMEM or
 * PG_ESTORE. Read transaction; any thread. */
PG_WUR int pg_ledger_approvals(struct pg_ledger *l, const char *org, bool only_pending,
                               int64_t now, int (*cb)(void *arg, const struct pg_approval *a),
                               void *arg);
/* One approval by id, status as of `now`. 0, PG_ENOTFOUND, PG_ESTORE. Read
 * transaction; any thread. */
PG_WUR int pg_ledger_approval_get(struct pg_ledger *l, const char *id, int64_t now,
                                  struct pg_approval *out);
/* Approves or denies a pending approval, audited with `actor` (a human,
 * never an agent: "user:EMAIL" or "cli:USER"; an "agent:" actor or an empty
 * one is refused with PG_EAUTH). PG_ENOTFOUND, PG_EBUSY when it is no longer
 * pending or has expired (or the ledger is read-only), PG_ESTORE, 0 on
 * success. `note` may be NULL. A write transaction: it waits for the
 * writer's current batch, so keep it off the loop thread. */
PG_WUR int pg_ledger_approval_decide(struct pg_ledger *l, const char *id, bool approve,
                                     const char *actor, const char *note, int64_t now);

/* --- revocation: takes effect on the very next request ------------------- */

struct pg_revocation {
    int64_t at;
    char actor[128];
    char reason[256];
};

/* Revokes (or, with revoke false, reinstates) an agent, audited in its org's
 * chain with `actor` (a human: "user:..." or "cli:..."). Own write
 * transaction; any thread but the loop's (it waits for the writer's batch).
 * 0, PG_EAUTH for an agent actor, PG_ENOTFOUND when reinstating an agent that
 * is not revoked, PG_ESTORE. */
PG_WUR int pg_ledger_agent_revoke(struct pg_ledger *l, const char *org, const char *agent,
                                  bool revoke, const char *actor, const char *reason,
                                  int64_t now);
/* 0 with *out filled when `agent` is revoked, PG_ENOTFOUND when it is not,
 * PG_ESTORE when the ledger cannot be read (the caller fails closed). A read
 * transaction on memory-mapped pages, cheap enough for every request: the
 * proxy calls it from the loop thread. out may be NULL. */
PG_WUR int pg_ledger_agent_revoked(struct pg_ledger *l, const char *agent,
                                   struct pg_revocation *out);

/* --- views and the audit chain (read transactions; any thread) -------------- */

/* Posted + pending spend of `agent` in `currency` for the three windows, and
 * money operations since now - velocity_period_s, exclusive (both structs
 * get the count; 0 when the period is 0). Marks are kept a day, so periods
 * up to a day count exactly; marks written after a clock stepped back carry
 * the latest mark's time and count until it leaves the period (fail
 * closed). O(log n) whatever the period. Read transaction; any thread. */
PG_WUR int pg_ledger_spend(struct pg_ledger *l, const char *agent, const char *currency,
                           const struct pg_windows *w, int64_t now, uint32_t velocity_period_s,
                           struct pg_spend *posted, struct pg_spend *pending);

struct pg_reservation_view {
    uint64_t id;
    char agent[PG_ID_MAX + 1];
    char currency[4];
    int64_t amount;                /* pending amount */
    int64_t created_at;
    char object_id[PG_ID_MAX + 1]; /* "" until the rail named the object */
    const char *route;             /* "" or a string the ledger keeps until close */
};
/* Pending (and authorized) reservations of `agent` (NULL: all), oldest
 * first; cb returning non-zero stops. Read transaction; any thread. */
PG_WUR int pg_ledger_pending(struct pg_ledger *l, const char *agent,
                             int (*cb)(void *arg, const struct pg_reservation_view *r),
                             void *arg);

/* The audit chain. One chain per org; entry n (seq 1, 2, ...) is a JSON
 * object with the fields seq, time (RFC 3339 UTC), org, actor ("agent:ID",
 * "user:EMAIL", "cli:USER", "payguard"), action ("reserve", "forward",
 * "settle", "deny", "hold", "approve", "deny_approval", "expire", "record"),
 * and when they apply agent, route, fingerprint (hex SHA-256 of the request),
 * amount (minor units), currency, counterparty (digit runs of 13-19 masked to
 * the last 4), decision, reason, outcome, reservation, approval, note, and
 * prev_hash (hex). Its canonical bytes are jansson's
 * json_dumps(JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII): no spaces,
 * keys sorted, non-ASCII escaped as \uXXXX with upper-case hex (UTF-16
 * pairs beyond the BMP), absent fields omitted. Verifying never re-encodes:
 * it hashes the stored bytes. Its hash is
 *     hash_n = SHA-256(raw prev_hash ‖ canonical bytes_n)
 * with prev_hash of entry 1 = 32 zero bytes, prev_hash of entry n = hash_n-1.
 *
 * Export (JSON Lines, one entry per line, oldest first) writes the canonical
 * bytes with `,"hash":"<64 hex>"` inserted before the final `}`. To verify a
 * chain outside payguard, with sha256 alone: for each line in order, take the
 * last 75 bytes off (`,"hash":"` + 64 hex + `"}`) and put back `}`: that is
 * the canonical entry; check that its "prev_hash" is the previous line's
 * "hash" (64 zeros for seq 1) and that SHA-256(unhex(prev_hash) ‖ canonical)
 * is this line's "hash", and that seq goes 1, 2, 3 without a gap. In Python:
 *     prev = bytes(32)
 *     for line in open("audit.jsonl", "rb"):
 *         line = line.rstrip(b"\n"); canon = line[:-75] + b"}"
 *         h = bytes.fromhex(line[-66:-2].decode())
 *         assert hashlib.sha256(prev + canon).digest() == h; prev = h
 *
 * No function here updates or deletes an entry. */

/* Result of walking one org's chain. */
struct pg_audit_report {
    char org[PG_ID_MAX + 1];
    uint64_t count;                /* entries checked */
    uint64_t head_seq;
    uint8_t head_hash[PG_SHA256_LEN];
    bool ok;
    uint64_t bad_seq;              /* first bad entry when !ok */
    char why[128];                 /* "hash mismatch", "gap", "broken link",
                                      "seq mismatch", "unreadable entry",
                                      "head mismatch", "missing head" */
};

/* Verifies every org's chain (org NULL) or one; cb per org. Each entry is
 * checked in order: its key's seq follows the previous ("gap" names the
 * missing seq), its own seq field matches its key ("seq mismatch"), its
 * prev_hash is the previous entry's hash ("broken link": this entry or the
 * one before was changed), its stored hash is SHA-256 of prev ‖ bytes
 * ("hash mismatch"); then the head must name the last entry ("head
 * mismatch": entries after it were removed, or it was changed). The first bad
 * seq is reported and the walk of that org stops. An org with no entries but
 * a head is reported bad too. 0 when the walk ran (look at each report's
 * ok), PG_ESTORE or PG_ENOMEM when it could not run. Read transaction. */
PG_WUR int pg_ledger_audit_verify(struct pg_ledger *l, const char *org,
                                  void (*cb)(void *arg, const struct pg_audit_report *r),
                                  void *arg);
/* Writes entries with seq >= since of `org` (NULL: every org, one chain
 * after another) as JSON Lines: the canonical entry with its "hash" (see
 * above). 0, PG_ESTORE, or -errno when writing fails. */
PG_WUR int pg_ledger_audit_export(struct pg_ledger *l, const char *org, uint64_t since, FILE *out);

/* Recent audit entries of `agent` in `org`'s chain (entries whose "agent"
 * field is `agent`, newest first, at most `max`), each as its export line
 * (canonical JSON with its "hash", no newline); the bytes are valid during
 * the call only. cb returning non-zero stops. for `payguard ledger show`.
 * 0, PG_EPARSE (org or agent NULL), PG_ESTORE. */
PG_WUR int pg_ledger_audit_recent(struct pg_ledger *l, const char *org, const char *agent,
                                  size_t max, int (*cb)(void *arg, const char *json, size_t len),
                                  void *arg);

/* --- human sessions on the admin API (sessions.c) ---------------------------
 *
 * The admin API's durable state: the key that signs access tokens, refresh
 * tokens, the last TOTP step each user spent and the recovery codes spent.
 *   sessions          SHA-256(refresh token) -> {state, family, created,
 *                     expires, user, org}; the token itself is never stored
 *   session_families  family id (16 random bytes) -> {state, created,
 *                     revoked_at, user, org, reason}
 *   humans            "jwt_key" -> 32 bytes; "totp" \0 user -> last step;
 *                     "rcode" \0 user \0 hex SHA-256 -> when it was spent
 * A login opens a family; every refresh rotates inside it: the presented
 * token is marked ROTATED and a new one issued, in one write transaction.
 * Presenting a ROTATED token again (a stolen copy, or a client racing
 * itself) revokes the whole family, so both holders are signed out, and is
 * audited in the user's org chain ("session_reuse"). Logout revokes the
 * family. Every function here runs its own transaction; the write ones
 * wait for the writer's current batch, so keep them off the loop thread.
 * Errors besides those named: PG_ESTORE, PG_ECRYPTO, PG_EBUSY (read-only
 * ledger). */

#define PG_SESSION_TOKEN_PREFIX "pgr_"
#define PG_SESSION_TOKEN_BUF 64        /* "pgr_" + base64url of 32 bytes + NUL */
#define PG_SESSION_USER_MAX 254        /* an email address, at most */
#define PG_SESSION_KEY_LEN 32          /* the access-token signing key */

struct pg_session {
    char user[PG_SESSION_USER_MAX + 1];
    char org[PG_ID_MAX + 1];
    char family[33];               /* hex of the family id */
    int64_t created_at, expires_at;    /* of this refresh token */
};

/* What a presented refresh token turned out to be. */
enum pg_session_result {
    PG_SESSION_OK,                 /* live: rotated (or closed) */
    PG_SESSION_UNKNOWN,            /* never issued, or malformed */
    PG_SESSION_EXPIRED,            /* past its expiry (nothing changed) */
    PG_SESSION_REVOKED,            /* its family was revoked (logout, reuse) */
    PG_SESSION_REUSED              /* already rotated: the family is now revoked */
};

/* The access-token signing key: read, or at first use made from 32 random
 * bytes and stored (write transaction). 0 with key filled. */
PG_WUR int pg_ledger_jwt_key(struct pg_ledger *l, uint8_t key[PG_SESSION_KEY_LEN]);

/* Opens a new family for `user` of `org` with a first refresh token (256
 * random bits, "pgr_..." NUL-terminated into token) valid until now + ttl_s,
 * and audits the sign-in ("login", actor "user:USER", `how` as the note:
 * "totp", "recovery_code"). *out (may be NULL) describes it. 0, PG_EPARSE
 * (empty or too long user/org). */
PG_WUR int pg_ledger_session_open(struct pg_ledger *l, const char *user, const char *org,
                                  const char *how, int64_t now, uint32_t ttl_s,
                                  char token[PG_SESSION_TOKEN_BUF], struct pg_session *out);

/* Rotates: in one write transaction, checks the presented token and, when
 * it is live, marks it ROTATED and writes its successor (same family, new
 * expiry now + ttl_s) into new_token. *res says what the token was; only OK
 * fills new_token, and *out (may be NULL) on OK, REUSED and REVOKED names
 * the session. REUSED revoked the family and audited it in the same
 * transaction. 0 whenever *res is set (the verdict is data), else an
 * error. Of two concurrent rotations of one token exactly one gets OK. */
PG_WUR int pg_ledger_session_rotate(struct pg_ledger *l, struct pg_slice token, int64_t now,
                                    uint32_t ttl_s, char new_token[PG_SESSION_TOKEN_BUF],
                                    struct pg_session *out, enum pg_session_result *res);

/* Logout: revokes the family of a live token (OK, audited "logout"). A
 * ROTATED token is REUSED (family revoked too); others leave all as it is.
 * 0 with *res, else an error. *out may be NULL. */
PG_WUR int pg_ledger_session_close(struct pg_ledger *l, struct pg_slice token, int64_t now,
                                   struct pg_session *out, enum pg_session_result *res);

/* Whether the sign-in `family` (hex, as in struct pg_session) is still
 * live: not signed out, not revoked for reuse. An unknown family is not.
 * 0 with *live, PG_EPARSE (not 32 hex digits), PG_ESTORE. Read
 * transaction; any thread. */
PG_WUR int pg_ledger_session_live(struct pg_ledger *l, const char *family, bool *live);

/* The last TOTP step `user` spent (0 when none). Read transaction. */
PG_WUR int pg_ledger_totp_last(struct pg_ledger *l, const char *user, uint64_t *last);
/* Spends TOTP `step` for `user`: 0, or PG_EBUSY when a step at or after it
 * was already spent (the code was used: refuse the login). */
PG_WUR int pg_ledger_totp_spend(struct pg_ledger *l, const char *user, uint64_t step);
/* Spends the recovery code whose hash (pg_recovery_code_hash's hex) is
 * `hex`: 0, or PG_EBUSY when it was spent before. */
PG_WUR int pg_ledger_recovery_spend(struct pg_ledger *l, const char *user, const char *hex,
                                    int64_t now);

/* The head of `org`'s audit chain: *seq 0 when it has no entry. 0,
 * PG_ESTORE. Read transaction; any thread. */
PG_WUR int pg_ledger_audit_head(struct pg_ledger *l, const char *org, uint64_t *seq);
/* At most `limit` entries of `org` with seq > after, oldest first, each as
 * its export line (see above; valid during the call only). cb returning
 * non-zero stops. *next (may be NULL) is the last seq passed to cb (or
 * `after`). 0, PG_EPARSE, PG_ESTORE, PG_ENOMEM. Read transaction. */
PG_WUR int pg_ledger_audit_page(struct pg_ledger *l, const char *org, uint64_t after, size_t limit,
                                int (*cb)(void *arg, uint64_t seq, const char *json, size_t len),
                                void *arg, uint64_t *next);

/* --- the webhook outbox (ledger/outbox.c) -----------------------------------
 *
 * Events for humans are written into an outbox in the same transaction as
 * their cause, so an event exists exactly when its cause committed. Only the
 * events some webhook subscribes to are written (pg_ledger_outbox_set): with
 * no webhook configured the payment path writes nothing more. An event is
 * one append at the end of the outbox tree. The notifier (notify/) later
 * fans each event out into one delivery per subscribed endpoint, keyed by
 * the time it is due, and records every attempt (audited in the event's org
 * chain, actor "payguard", action "webhook").
 *   outbox      u64 BE event id -> {type, time, org, message id, arg, payload}
 *   deliveries  due time ‖ message id ‖ endpoint id -> {attempts, ..., payload}
 *   notify      't' agent \0 currency window day permille: a budget threshold
 *               already announced; 'x' approval id: an expiry announced;
 *               'e' endpoint id: an endpoint disabled (410); 's': settings
 * Payloads are JSON {"type","timestamp","data":{...}}; they never hold a
 * card number (counterparties are masked like the audit log) or a secret. */

enum pg_event {
    PG_EVENT_APPROVAL_REQUESTED,   /* a HOLD created an approval */
    PG_EVENT_APPROVAL_DECIDED,     /* a human approved or denied it */
    PG_EVENT_APPROVAL_EXPIRED,     /* it expired undecided */
    PG_EVENT_BUDGET_THRESHOLD,     /* a reservation took a window's spend past a fraction of its limit */
    PG_EVENT_PAYMENT_DENIED,       /* a request was denied by policy */
    PG_EVENT_AGENT_REVOKED,        /* a human revoked an agent */
    PG_EVENT_AUDIT_VERIFY_FAILED,  /* a verification found a broken chain */
    PG_EVENT_COUNT
};
/* "approval.requested", ...; NULL for an unknown value. */
const char *pg_event_name(enum pg_event e);
/* The event named s, or -1. */
int pg_event_from_name(const char *s);

#define PG_OUTBOX_MAX_THRESHOLDS 8

/* Which events to write (bit 1u << PG_EVENT_x; 0: none) and the budget
 * thresholds in permille of a limit (1..1000, at most
 * PG_OUTBOX_MAX_THRESHOLDS; copied). Takes effect at once in this process;
 * no I/O. pg_ledger_outbox_save writes them to the ledger so that other
 * processes opening it (the CLI deciding an approval, revoking an agent)
 * write the same events; a process that never called set reads them from
 * there on its first event. Any thread. */
void pg_ledger_outbox_set(struct pg_ledger *l, uint32_t mask, const uint16_t *permille, size_t n);
/* Own write transaction; not on the loop thread. 0, PG_ESTORE, PG_EBUSY (read-only). */
PG_WUR int pg_ledger_outbox_save(struct pg_ledger *l);

#define PG_ENDPOINT_ID_LEN 8       /* first bytes of SHA-256 of the endpoint's URL */

/* An endpoint's id from its URL, as the notifier files deliveries and the
 * CLI names endpoints. 0 or PG_ECRYPTO. */
PG_WUR int pg_ledger_endpoint_id(const char *url, uint8_t id[PG_ENDPOINT_ID_LEN]);

/* A webhook endpoint as the fan-out sees it. */
struct pg_outbox_endpoint {
    uint8_t id[PG_ENDPOINT_ID_LEN];
    uint32_t mask;                 /* events it subscribes to */
    uint16_t permille[PG_OUTBOX_MAX_THRESHOLDS];   /* budget thresholds it wants */
    size_t npermille;
};

/* Moves up to `max` events from the outbox into deliveries, one per
 * endpoint that subscribes to the event (and, for budget.threshold, wants
 * its threshold) and is not disabled; an event nobody wants is dropped.
 * *moved (may be NULL) gets the number of events taken. Own write
 * transaction; not on the loop thread. 0, PG_ESTORE, PG_ENOMEM. */
PG_WUR int pg_ledger_outbox_fanout(struct pg_ledger *l, const struct pg_outbox_endpoint *eps,
                                   size_t n, size_t max, size_t *moved);

/* One delivery: an event on its way to one endpoint. */
struct pg_delivery {
    uint8_t key[8 + 48 + PG_ENDPOINT_ID_LEN];   /* where it is stored (opaque) */
    size_t key_len;
    uint8_t endpoint[PG_ENDPOINT_ID_LEN];
    char msg_id[48];               /* webhook-id: the same on every attempt and endpoint */
    char type[32];                 /* "approval.requested", ... */
    char org[PG_ID_MAX + 1];       /* whose audit chain records the attempts */
    uint32_t attempts;             /* made so far */
    int64_t created_at;            /* when the event happened */
    int64_t due;                   /* when this attempt was due */
    char *payload;                 /* malloc'd JSON, NUL-terminated; pg_delivery_free */
    size_t payload_len;
};
void pg_delivery_free(struct pg_delivery *d);

/* Up to `max` deliveries due at `now`, oldest due first, into out (each
 * freed with pg_delivery_free). *n gets how many; *next_due (may be NULL)
 * the due time of the first one not yet due (INT64_MAX: none). Read
 * transaction. 0, PG_ESTORE, PG_ENOMEM. */
PG_WUR int pg_ledger_deliveries_due(struct pg_ledger *l, int64_t now, struct pg_delivery *out,
                                    size_t max, size_t *n, int64_t *next_due);

enum pg_delivery_result {
    PG_DELIVERY_OK,                /* 2xx: done */
    PG_DELIVERY_RETRY,             /* failed: try again at next_at */
    PG_DELIVERY_GIVE_UP,           /* failed past max_age: dropped */
    PG_DELIVERY_DISABLE,           /* 410 Gone: dropped, and the endpoint disabled for good */
    PG_DELIVERY_DROP               /* not attempted: the endpoint is gone from the config or disabled */
};

/* Records what became of one attempt of `d`, in one write transaction: the
 * delivery is removed (or moved to next_at with one more attempt), a 410
 * marks the endpoint disabled, and one audit entry in d->org's chain says
 * so (actor "payguard", action "webhook", outcome "delivered", "retry",
 * "given_up", "disabled" or "dropped", reason e.g. "http_503" or
 * "connect_failed", note with the event type, message and endpoint ids and
 * the attempt number; never the URL, which may hold a token). A delivery
 * already gone (recorded twice) changes nothing. Not on the loop thread.
 * 0, PG_ESTORE, PG_ENOMEM. */
PG_WUR int pg_ledger_delivery_done(struct pg_ledger *l, const struct pg_delivery *d,
                                   enum pg_delivery_result r, int64_t next_at, const char *reason,
                                   int64_t now);

/* 1 when the endpoint was disabled (a 410), 0 when not, PG_ESTORE. Read
 * transaction; any thread. *at (may be NULL) gets when it was disabled. */
PG_WUR int pg_ledger_endpoint_disabled(struct pg_ledger *l, const uint8_t id[PG_ENDPOINT_ID_LEN],
                                       int64_t *at);
/* Lets a disabled endpoint receive events again (those written while it
 * was disabled are not sent), audited in each of `orgs`' chains (action
 * "webhook_enabled", by `actor`): webhooks carry every org's events. Own
 * write transaction. 0, PG_ENOTFOUND (not disabled), PG_ESTORE, PG_EBUSY
 * (read-only). */
PG_WUR int pg_ledger_endpoint_enable(struct pg_ledger *l, const uint8_t id[PG_ENDPOINT_ID_LEN],
                                     const char *const *orgs, size_t norgs, const char *actor,
                                     int64_t now);

/* Writes approval.expired for every pending approval whose expiry has
 * passed at `now` and was not announced yet (each once). *n (may be NULL)
 * gets how many. Own write transaction; not on the loop thread. 0,
 * PG_ESTORE, PG_ENOMEM. */
PG_WUR int pg_ledger_outbox_expire_sweep(struct pg_ledger *l, int64_t now, size_t *n);

/* Writes audit.verify_failed for a report that is not ok (own write
 * transaction; the admin API and the CLI call it after a verification).
 * 0 (also when r->ok or the event is not wanted), PG_ESTORE, PG_EBUSY on
 * a read-only ledger. */
PG_WUR int pg_ledger_audit_verify_failed(struct pg_ledger *l, const struct pg_audit_report *r,
                                         int64_t now);

#endif /* PG_LEDGER_H */
