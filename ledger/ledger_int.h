/* Private ground of ledger/: the environment handle, the transaction context
 * every file works in, record layouts with their codecs, and key builders.
 * Nothing here leaves ledger/ (the unit tests include it to reach the raw
 * layout for tamper tests). */
#ifndef PG_LEDGER_INT_H
#define PG_LEDGER_INT_H

#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "common/pg.h"
#include "ledger/ledger.h"

#define LEDGER_SCHEMA 1u
#define LEDGER_REC_V1 1u                 /* first byte of every record */
#define LEDGER_QUEUE_MAX 65536u          /* pg_ledger_submit refuses beyond */
#define LEDGER_LINGER_US 2000            /* deferrable requests wait at most this for company, */
#define LEDGER_LINGER_BATCH_MAX 4u       /* when the batch before had at most this many items */
#define LEDGER_RESPONSE_MAX (64u << 20)  /* stored answer, head + body */
#define LEDGER_DAY_S INT64_C(86400)
#define LEDGER_KEEP_BUCKETS_S (40 * LEDGER_DAY_S)
#define LEDGER_KEEP_APPROVALS_S (7 * LEDGER_DAY_S)
#define LEDGER_PRUNE_EVERY_S 60
#define LEDGER_PRUNE_BUDGET 10000u       /* pg_ledger_prune's default */
#define LEDGER_PRUNE_WRITER_BUDGET 1000u /* per pass between batches: a few ms */
#define LEDGER_KEY_MAX 511               /* LMDB's default maximum key size */

enum ldb {
    DB_META,
    DB_IDEM,
    DB_RESV,
    DB_OBJECTS,
    DB_SPEND,
    DB_VELOCITY,
    DB_APPROVALS,
    DB_AUDIT,
    DB_AUDIT_HEAD,
    DB_EXPIRY,
    DB_RESPONSES,
    DB_REVOKED,
    DB_IDEM_BY_ID,                   /* idempotency records by id (on disk: idem_updates) */
    DB_SESSIONS,                     /* admin API: refresh tokens (sessions.c) */
    DB_SESSION_FAMILIES,
    DB_HUMANS,                       /* JWT key, last TOTP steps, spent recovery codes */
    DB_OUTBOX,                       /* webhook events, appended (outbox.c) */
    DB_DELIVERIES,                   /* webhook deliveries by due time */
    DB_NOTIFY,                       /* announced thresholds and expiries, disabled endpoints */
    DB_COUNT
};

/* Names as LMDB stores them (tests open the raw environment with them). */
extern const char *const pg_ledger_db_names[DB_COUNT];

/* Kinds of the expiry index (first key byte). */
enum { EXP_IDEM_DONE = 1, EXP_RESV_DONE = 2, EXP_SESSION = 3 };

/* Which events go to the webhook outbox (outbox.c): set by the notifier,
 * or read from the ledger on first use by other processes. */
struct outbox_settings {
    atomic_bool loaded;
    atomic_uint mask;                /* bit per enum pg_event; 0: write nothing */
    atomic_uint npermille;
    atomic_uint permille[PG_OUTBOX_MAX_THRESHOLDS];
};

/* A string the ledger hands out as `const char *` until close (routes read
 * back from records). */
struct interned {
    struct interned *next;
    char s[];
};

/* An in-memory index from a keyed hash of an outside string (a rail object
 * id, an agent's Idempotency-Key) to the ids of the durable records that
 * carry it, so those records can be written in id order instead of under a
 * random key (hindex.c). Every candidate is read back and compared: a stale
 * entry or a collision costs one read, never a wrong answer. */
struct hslot {
    uint64_t h, id;                  /* h 0: empty, 1: removed */
};
struct hindex {
    bool built;
    uint8_t salt[16];                /* keys the hash: the strings come from outside */
    struct hslot *slots;
    size_t cap, used, live;
};
/* A change to one, applied once its transaction has committed. */
struct hop {
    struct hindex *x;
    uint64_t h, id;
    bool put;
};

struct pg_ledger {
    MDB_env *env;
    MDB_dbi db[DB_COUNT];
    bool read_only;
    char *dir;                       /* for messages */
    uint64_t epoch;                  /* this process's; 0 is "unresolved" */
    uint64_t map_size_max;
    uint32_t idem_ttl_s, approval_ttl_s;
    /* Every transaction of this process holds it shared; a map resize holds
     * it exclusively, since mdb_env_set_mapsize needs no open transaction. */
    pthread_rwlock_t maplock;

    pthread_mutex_t intern_mu;
    struct interned *interned;

    /* The writer. mu guards the queues, the flags and stats. */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct pg_ledger_req *q_head, *q_tail;
    size_t q_len;
    size_t q_waited;               /* queued requests whose callers wait (not deferrable) */
    struct pg_ledger_req *done_head, *done_tail;
    bool started, stopping;
    pthread_t thread;
    /* The preparer: runs the `prepare` step of queued requests while they
     * wait, so neither the loop nor the writer spends its time on it. */
    pthread_cond_t prep_cv;          /* the preparer waits for work */
    pthread_cond_t prep_idle_cv;     /* the writer waits for an item the preparer is running */
    struct pg_ledger_req *p_head, *p_tail;   /* queued, not yet prepared, linked by prep_next */
    bool prep_started;
    pthread_t prep_thread;
    uv_async_t *async;               /* freed in its close callback */
    atomic_bool ready;
    int server_lock;                 /* fd holding server.lock once started; -1 */
    /* Guards both indexes; taken inside write transactions only, and held
     * across a commit that changes them. */
    pthread_mutex_t index_mu;
    struct hindex objects;           /* rail object id -> reservation ids */
    struct hindex idem;              /* agent and Idempotency-Key -> record ids */
    struct pg_ledger_stats stats;    /* map_size also read under maplock */
    int64_t last_prune;              /* writer only: request time of the last prune */
    bool prune_more;                 /* writer only: the last prune ran out of budget */
    struct outbox_settings outbox;   /* which webhook events to write (outbox.c) */
    struct unsettled *unsettled;     /* writer only: keys whose SETTLE was lost (unsettled.c) */
};

/* Ids handed out in order and never reused, kept in meta. */
enum counter {
    CTR_RESV,                        /* reservations */
    CTR_RESP,                        /* stored answers */
    CTR_IDEM,                        /* idempotency records (their updates' keys) */
    CTR_COUNT
};

/* One transaction and what the code working in it needs. LMDB failures set
 * mdb_rc and come back as PG_ESTORE, so MDB_MAP_FULL can be told apart. */
struct ltx {
    struct pg_ledger *l;
    MDB_txn *txn;
    bool write;
    int mdb_rc;
    /* id counters (enum counter), each read once and written once per
     * transaction */
    bool ctr_loaded[CTR_COUNT], ctr_dirty[CTR_COUNT];
    uint64_t ctr[CTR_COUNT];
    /* index changes waiting for the commit */
    struct hop *hops;
    size_t nhops, cap_hops;
    bool index_locked;
};

/* --- env.c: transactions ------------------------------------------------- */

PG_WUR int ltx_begin(struct pg_ledger *l, bool write, struct ltx *t);
void ltx_abort(struct ltx *t);
/* Commits (writing the reservation counter first). 0 or PG_ESTORE. */
PG_WUR int ltx_commit(struct ltx *t);
/* Runs fn in a write transaction and commits it; on MDB_MAP_FULL (from fn
 * or the commit) grows the map and runs fn again from the start, so fn must
 * reset whatever it wrote outside LMDB. fn's own negative code aborts and is
 * returned. *mdb_rc (may be NULL) gets the last LMDB error, 0 if none. */
PG_WUR int ledger_write(struct pg_ledger *l, int (*fn)(struct ltx *t, void *arg), void *arg,
                        int *mdb_rc);
/* Doubles the map up to map_size_max. 0, or PG_ESTORE when at the max. */
PG_WUR int ledger_grow(struct pg_ledger *l);

/* 0, PG_ENOTFOUND, or PG_ESTORE. The value is valid until the transaction
 * ends or the next write to the same database. */
PG_WUR int ltx_get(struct ltx *t, enum ldb db, const void *k, size_t kn, MDB_val *v);
PG_WUR int ltx_put(struct ltx *t, enum ldb db, const void *k, size_t kn, const void *v, size_t vn);
/* Reserves vn bytes for the value and returns where to write them. With
 * `append` (a key above every key in db: ids from a counter) LMDB fills
 * pages completely instead of splitting them in half. */
PG_WUR int ltx_reserve(struct ltx *t, enum ldb db, const void *k, size_t kn, size_t vn,
                       bool append, void **out);
/* Deleting what is not there is fine. 0 or PG_ESTORE. */
PG_WUR int ltx_del(struct ltx *t, enum ldb db, const void *k, size_t kn);
PG_WUR int ltx_cursor(struct ltx *t, enum ldb db, MDB_cursor **out);
static inline int ltx_fail(struct ltx *t, int rc)
{
    t->mdb_rc = rc;
    return PG_ESTORE;
}
/* The next id of a counter (starts at 1). */
PG_WUR int ltx_next_id(struct ltx *t, enum counter c, uint64_t *id);

/* writer.c: stops and joins the writer, runs the last callbacks, closes
 * the async handle. No-op when it never started. */
void ledger_writer_stop(struct pg_ledger *l);

/* unsettled.c, writer thread only: keys whose SETTLE did not apply, so
 * their record says IN_FLIGHT under this epoch with nothing in flight.
 * claim: true once for such a key (BEGIN then resends it as unresolved);
 * batch_done: forgets claimed keys when the batch committed, else unclaims
 * them (also called before each attempt at a batch); add: copies the key. */
bool ledger_unsettled_claim(struct pg_ledger *l, const uint8_t *key, size_t kn);
void ledger_unsettled_add(struct pg_ledger *l, const uint8_t *key, size_t kn);
void ledger_unsettled_batch_done(struct pg_ledger *l, bool committed);
void ledger_unsettled_free(struct pg_ledger *l);

/* A copy of s that lives until pg_ledger_close; "" when it cannot allocate. */
const char *ledger_intern(struct pg_ledger *l, const char *s);

/* --- byte order ------------------------------------------------------------ */

static inline void be64_put(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

static inline uint64_t be64_get(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

/* Times in keys: the sign bit flipped so that big-endian bytes sort as
 * signed numbers. */
static inline void time_put(uint8_t *p, int64_t t)
{
    be64_put(p, (uint64_t)t ^ (UINT64_C(1) << 63));
}

static inline int64_t time_get(const uint8_t *p)
{
    return (int64_t)(be64_get(p) ^ (UINT64_C(1) << 63));
}

/* --- record codecs: little-endian, length-prefixed strings ------------------ */

/* Writes into p (cap bytes), or only counts when p is NULL; len is what the
 * record needs either way. */
struct enc {
    uint8_t *p;
    size_t cap, len;
};

static inline void enc_bytes(struct enc *e, const void *d, size_t n)
{
    if (e->p && e->len + n <= e->cap && n)
        memcpy(e->p + e->len, d, n);
    e->len += n;
}

static inline void enc_u8(struct enc *e, uint8_t v)
{
    enc_bytes(e, &v, 1);
}

static inline void enc_u32(struct enc *e, uint32_t v)
{
    uint8_t b[4] = { (uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24) };
    enc_bytes(e, b, 4);
}

static inline void enc_u64(struct enc *e, uint64_t v)
{
    uint8_t b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(v >> (8 * i));
    enc_bytes(e, b, 8);
}

static inline void enc_i64(struct enc *e, int64_t v)
{
    enc_u64(e, (uint64_t)v);
}

/* A string of at most 65535 bytes (callers' fields are far shorter). */
static inline void enc_str(struct enc *e, const char *s)
{
    size_t n = strnlen(s, 65535);
    uint8_t b[2] = { (uint8_t)n, (uint8_t)(n >> 8) };
    enc_bytes(e, b, 2);
    enc_bytes(e, s, n);
}

struct dec {
    const uint8_t *p;
    size_t len, off;
    bool bad;                        /* short record or a field too long */
};

static inline const uint8_t *dec_take(struct dec *d, size_t n)
{
    if (d->bad || d->len - d->off < n) {
        d->bad = true;
        return NULL;
    }
    const uint8_t *p = d->p + d->off;
    d->off += n;
    return p;
}

static inline uint8_t dec_u8(struct dec *d)
{
    const uint8_t *p = dec_take(d, 1);
    return p ? p[0] : 0;
}

static inline uint32_t dec_u32(struct dec *d)
{
    const uint8_t *p = dec_take(d, 4);
    return p ? (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24
             : 0;
}

static inline uint64_t dec_u64(struct dec *d)
{
    const uint8_t *p = dec_take(d, 8);
    uint64_t v = 0;
    for (int i = 7; p && i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static inline int64_t dec_i64(struct dec *d)
{
    return (int64_t)dec_u64(d);
}

static inline void dec_bytes(struct dec *d, void *out, size_t n)
{
    const uint8_t *p = dec_take(d, n);
    if (p)
        memcpy(out, p, n);
    else
        memset(out, 0, n);
}

/* Copies a string into out (cap bytes with its NUL). */
static inline void dec_str(struct dec *d, char *out, size_t cap)
{
    const uint8_t *b = dec_take(d, 2);
    size_t n = b ? (size_t)(b[0] | b[1] << 8) : 0;
    const uint8_t *p = dec_take(d, n);
    if (!p || n >= cap) {
        d->bad = true;
        out[0] = '\0';
        return;
    }
    memcpy(out, p, n);
    out[n] = '\0';
}

/* strnlen over a fixed char array field of a request. */
#define FIELD_LEN(a) strnlen((a), sizeof(a))

/* --- keys -------------------------------------------------------------------- */

/* a \0 b: idempotency keys. Returns the length, 0 when it does not fit. */
size_t key_pair(uint8_t *out, size_t cap, const char *a, size_t an, const char *b, size_t bn);

/* --- records ------------------------------------------------------------------ */

/* Idempotency record: what one agent's key did. */
enum idem_state { IDEM_IN_FLIGHT = 1, IDEM_DONE = 2, IDEM_HELD = 3 };
enum {
    IDEM_F_RESTORE = 1u << 0,        /* the policy had refunds_restore at BEGIN */
    IDEM_F_CREATED = 1u << 1,        /* this request created its reservation */
    IDEM_F_COUNTED = 1u << 2         /* a SETTLE counted money without a reservation
                                        (refund restore, unreserved post): never twice */
};
struct idem {
    uint8_t state;
    uint8_t op, action, flags;
    char currency[4];                /* the currency spend was counted in */
    uint64_t epoch;                  /* process that sent it; 0 unresolved */
    int64_t created_at, updated_at;
    uint64_t reservation;
    int64_t day_start;               /* BEGIN's day bucket */
    int64_t delta;                   /* what this request added to its reservation */
    uint8_t fingerprint[PG_SHA256_LEN];
    char approval_id[PG_ID_MAX + 1];
    uint64_t response;               /* DONE: id of the stored answer in responses */
    uint64_t iid;                    /* its id, from the first write on; 0 before */
};
/* A record lives under its id (CTR_IDEM) in idem_by_id and carries its key
 * (agent \0 idem_key); the in-memory index finds it by key. Ids grow in
 * the order requests begin, so every write lands near the end of the tree
 * instead of at a random page, which is what a payment's disk writes were
 * mostly made of. Ledgers from before kept records under their key in the
 * idem tree (their later versions under the id, without the key): those
 * are still found there, and move under their id on their next write.
 * idem_get: PG_ENOTFOUND, PG_ESTORE, or 0 with *r decoded (its latest
 * version). idem_put: writes *r (giving it an id when it has none). idem_del
 * removes every copy. */
PG_WUR int idem_get(struct ltx *t, const uint8_t *key, size_t kn, struct idem *r);
PG_WUR int idem_put(struct ltx *t, const uint8_t *key, size_t kn, struct idem *r);
PG_WUR int idem_del(struct ltx *t, const uint8_t *key, size_t kn, const struct idem *r);

/* Stored answers live apart from the idempotency records, under ids that
 * only grow: keys are random, so their tree is written at random pages, and
 * keeping 1-3 KB answers out of it keeps it small and dense; the answers
 * themselves are appended in order. */
PG_WUR int resp_put(struct ltx *t, const struct pg_stored_response *resp, uint64_t *id);
/* Copies the answer into malloc'd head and body (NUL-terminated) in *out.
 * PG_ENOTFOUND, PG_ENOMEM, PG_ESTORE. */
PG_WUR int resp_get(struct ltx *t, uint64_t id, struct pg_stored_response *out);

/* Reservation. */
enum resv_state { RESV_PENDING = 1, RESV_AUTHORIZED = 2, RESV_POSTED = 3, RESV_VOIDED = 4 };
struct resv {
    uint64_t id;
    uint8_t state, op;
    char currency[4];
    int64_t pending;                 /* counted in the bucket's pending now */
    int64_t reserved;                /* first amount reserved */
    int64_t posted;                  /* what POST reported */
    int64_t created_at, updated_at;
    int64_t day_start;               /* bucket it counts in */
    char agent[PG_ID_MAX + 1];
    char org[PG_ID_MAX + 1];
    char object_id[PG_ID_MAX + 1];
    char route[256];
    char idem_key[PG_IDEM_KEY_MAX + 1];
};
PG_WUR int resv_get(struct ltx *t, uint64_t id, struct resv *r);
/* `fresh`: a new reservation, whose id is above every other. */
PG_WUR int resv_put(struct ltx *t, const struct resv *r, bool fresh);
const char *resv_state_name(uint8_t state);
/* 0 with *r filled from a stored reservation value, or false when bad. */
bool resv_decode(const MDB_val *v, uint64_t id, struct resv *r);

/* Rail object -> reservation (objects.c). objects_get finds the newest
 * reservation naming the object (the in-memory index, then the objects
 * tree); 0, PG_ENOTFOUND or PG_ESTORE. objects_index / objects_unindex
 * record that a reservation now names (or no longer exists for) an object,
 * in the index once the transaction commits; objects_put writes the objects
 * tree, for an id other than the one its reservation names. */
PG_WUR int objects_get(struct ltx *t, const char *object_id, uint64_t *id);
PG_WUR int objects_index(struct ltx *t, const char *object_id, uint64_t id);
PG_WUR int objects_unindex(struct ltx *t, const char *object_id, uint64_t id);
PG_WUR int objects_put(struct ltx *t, const char *object_id, uint64_t id);

/* hindex.c. init/free cover both indexes of a ledger. hindex_load builds
 * x with `build` (called with index_mu held) unless it is built already.
 * hindex_each calls fn with every id filed under h, committed or staged in
 * t, until fn returns non-zero (returned). hindex_stage files or unfiles
 * an id once t commits. */
PG_WUR int ledger_indexes_init(struct pg_ledger *l);
void ledger_indexes_free(struct pg_ledger *l);
uint64_t hindex_hash(const struct hindex *x, const void *p, size_t n);
/* False when the table cannot grow. index_mu held. */
bool hindex_put(struct hindex *x, uint64_t h, uint64_t id);
PG_WUR int hindex_load(struct ltx *t, struct hindex *x, int (*build)(struct ltx *t, struct hindex *x));
PG_WUR int hindex_each(struct ltx *t, struct hindex *x, uint64_t h,
                       int (*fn)(struct ltx *t, uint64_t id, void *arg), void *arg);
PG_WUR int hindex_stage(struct ltx *t, struct hindex *x, uint64_t h, uint64_t id, bool put);
/* Both indexes, before any request waits on them (pg_ledger_start). */
PG_WUR int ledger_indexes_load(struct ltx *t);
PG_WUR int objects_build(struct ltx *t, struct hindex *x);
PG_WUR int idem_build(struct ltx *t, struct hindex *x);
/* ltx_commit: lock before the LMDB commit, so that no other transaction
 * reads an index between the commit and its changes, and make room for
 * them (PG_ENOMEM: unlocked, do not commit); finish applies them (when
 * committed) and unlocks. ltx_abort: finish(false). */
PG_WUR int ledger_indexes_lock(struct ltx *t);
void ledger_indexes_finish(struct ltx *t, bool committed);

/* Removes a refresh token record (prune.c, past its expiry). */
PG_WUR int sessions_drop_token(struct ltx *t, const uint8_t *key, size_t n);

/* Spend buckets and velocity (spend.c). */
struct window_spend {
    int64_t posted[3], pending[3];   /* day, week, month */
};
PG_WUR int spend_windows(struct ltx *t, const char *agent, const char *currency,
                         const struct pg_windows *w, struct window_spend *out);
PG_WUR int velocity_count(struct ltx *t, const char *agent, int64_t now, uint32_t period,
                          uint32_t *out);
PG_WUR int velocity_mark(struct ltx *t, const char *agent, int64_t now);
/* Adds to a day bucket: posted and pending end floored at 0. PG_ERANGE when
 * a total would overflow (nothing written). */
PG_WUR int bucket_add(struct ltx *t, const char *agent, const char *currency, int64_t day,
                      int64_t dposted, int64_t dpending);
/* Reads a bucket (zeros when absent). */
PG_WUR int bucket_get(struct ltx *t, const char *agent, const char *currency, int64_t day,
                      int64_t *posted, int64_t *pending);
/* Saturating add for totals compared against limits: a total too big to
 * represent is over any limit, so fail closed by saturating. */
static inline int64_t sat_add(int64_t a, int64_t b)
{
    int64_t r;
    if (__builtin_add_overflow(a, b, &r))
        return b > 0 ? INT64_MAX : INT64_MIN;
    return r;
}
/* Records an index entry for pruning. */
PG_WUR int expiry_add(struct ltx *t, uint8_t kind, int64_t when, const void *k, size_t kn);

/* Approvals (approvals.c). */
struct appr {
    struct pg_approval a;            /* route points at `route` below */
    uint8_t stored_status;           /* as written (PENDING even when expired) */
    uint8_t fingerprint[PG_SHA256_LEN];
    int64_t limit;                   /* approval threshold that held it */
    char route[256];
};
PG_WUR int appr_get(struct ltx *t, const char *id, struct appr *r);
PG_WUR int appr_put(struct ltx *t, const struct appr *r);
/* A new approval from a HOLD; fills r and r->a.id. */
PG_WUR int appr_create(struct ltx *t, const struct pg_ledger_req *req, const char *currency,
                       struct appr *r);
/* Status as of now. */
enum pg_approval_status appr_status(const struct appr *r, int64_t now);

/* Audit (audit.c). */
struct audit_entry {
    int64_t time;
    const char *org, *agent, *actor, *action, *route;
    const uint8_t *fingerprint;      /* NULL or all zero: omitted */
    bool has_amount;
    int64_t amount;
    const char *currency, *counterparty, *decision, *reason, *outcome, *approval, *note;
    uint64_t reservation;            /* 0: omitted */
};
/* Appends one entry to its org's chain. 0, PG_ESTORE, PG_ENOMEM, PG_ECRYPTO. */
PG_WUR int audit_append(struct ltx *t, const struct audit_entry *e);
/* Copies s into out with every run of 13-19 digits masked to its last 4. */
void audit_mask_digits(const char *s, char *out, size_t cap);

/* A buffer that starts on the caller's stack and moves to the heap when it
 * must grow (heap set: free p). */
struct canon_buf {
    uint8_t *p;
    size_t len, cap;
    bool heap, oom;
};
/* Appends the canonical bytes of entry e as entry `seq` after `prev` (canon.c).
 * 0 or PG_ENOMEM. */
PG_WUR int audit_canon(const struct audit_entry *e, uint64_t seq, const uint8_t prev[PG_SHA256_LEN],
                       struct canon_buf *b);
/* RFC 3339 UTC with seconds: "2026-11-23T12:00:00Z". */
void audit_time(int64_t t, char out[21]);

/* The three request kinds, in the writer's transaction (begin.c, settle.c).
 * Item-level failures go to req->status; the return is 0 or a code that
 * fails the whole batch (PG_ESTORE with t->mdb_rc, PG_ENOMEM, PG_ECRYPTO). */
PG_WUR int ledger_do_begin(struct ltx *t, struct pg_ledger_req *req);
PG_WUR int ledger_do_settle(struct ltx *t, struct pg_ledger_req *req);
PG_WUR int ledger_do_record(struct ltx *t, struct pg_ledger_req *req);

/* Pruning in a given transaction (prune.c). */
PG_WUR int ledger_prune_txn(struct ltx *t, int64_t now, size_t budget, size_t *done, bool *more);

/* Shared by begin.c and settle.c: "agent:<id>". */
void actor_of(char *out, size_t cap, const char *agent);
/* Checks the fields every request kind needs. */
bool req_who_ok(const struct pg_ledger_req *req);

#endif /* PG_LEDGER_INT_H */
