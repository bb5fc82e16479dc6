/* The LMDB environment: opening and closing it, the transactions every other
 * ledger file works in, growing the map when it fills, and the strings the
 * ledger hands out until close. */
#include "common/pg.h"
#include "ledger/ledger_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

const char *const pg_ledger_db_names[DB_COUNT] = {
    [DB_META] = "meta",           [DB_IDEM] = "idem",
    [DB_RESV] = "resv",           [DB_OBJECTS] = "objects",
    [DB_SPEND] = "spend",         [DB_VELOCITY] = "velocity",
    [DB_APPROVALS] = "approvals", [DB_AUDIT] = "audit",
    [DB_AUDIT_HEAD] = "audit_head", [DB_EXPIRY] = "expiry",
    [DB_RESPONSES] = "responses", [DB_REVOKED] = "revoked",
    [DB_OUTBOX] = "outbox",       [DB_DELIVERIES] = "deliveries", [DB_NOTIFY] = "notify",
    [DB_IDEM_BY_ID] = "idem_updates",
    [DB_SESSIONS] = "sessions",   [DB_SESSION_FAMILIES] = "session_families",
    [DB_HUMANS] = "humans",
};

#define DEFAULT_MAP_SIZE (UINT64_C(64) << 20)
#define DEFAULT_MAP_MAX (UINT64_C(4) << 30)
#define MAP_ALIGN UINT64_C(65536) /* a multiple of every page size in use */
#define META_SCHEMA "schema"
#define META_EPOCH "epoch"
static const char *const counter_keys[] = { [CTR_RESV] = "resv_next", [CTR_RESP] = "resp_next",
                                             [CTR_IDEM] = "idem_next" };

/* --- transactions -------------------------------------------------------- */

static void note_map_size(struct pg_ledger *l)
{
    MDB_envinfo info;
    if (mdb_env_info(l->env, &info) != 0)
        return;
    pthread_mutex_lock(&l->mu);
    l->stats.map_size = (uint64_t)info.me_mapsize;
    pthread_mutex_unlock(&l->mu);
}

int ltx_begin(struct pg_ledger *l, bool write, struct ltx *t)
{
    memset(t, 0, sizeof(*t));
    t->l = l;
    t->write = write;
    for (int attempt = 0;; attempt++) {
        pthread_rwlock_rdlock(&l->maplock);
        int rc = mdb_txn_begin(l->env, NULL, write ? 0 : MDB_RDONLY, &t->txn);
        if (rc == 0)
            return 0;
        pthread_rwlock_unlock(&l->maplock);
        t->txn = NULL;
        if (rc != MDB_MAP_RESIZED || attempt >= 3)
            return ltx_fail(t, rc);
        /* Another process (the CLI) grew the map past ours: adopt its size.
         * Legal only with no transaction open here, hence the exclusive lock. */
        pthread_rwlock_wrlock(&l->maplock);
        rc = mdb_env_set_mapsize(l->env, 0);
        pthread_rwlock_unlock(&l->maplock);
        if (rc != 0)
            return ltx_fail(t, rc);
        note_map_size(l);
    }
}

void ltx_abort(struct ltx *t)
{
    ledger_indexes_finish(t, false);
    if (!t->txn)
        return;
    mdb_txn_abort(t->txn);
    t->txn = NULL;
    pthread_rwlock_unlock(&t->l->maplock);
}

int ltx_commit(struct ltx *t)
{
    for (size_t i = 0; i < PG_ARRAY_LEN(counter_keys); i++) {
        if (!t->ctr_dirty[i])
            continue;
        uint8_t v[8];
        struct enc e = { v, sizeof(v), 0 };
        enc_u64(&e, t->ctr[i]);
        int rc = ltx_put(t, DB_META, counter_keys[i], strlen(counter_keys[i]), v, sizeof(v));
        if (rc != 0) {
            ltx_abort(t);
            return rc;
        }
        t->ctr_dirty[i] = false;
    }
    int rc = ledger_indexes_lock(t);
    if (rc != 0) {
        ltx_abort(t);
        return rc;
    }
    rc = mdb_txn_commit(t->txn); /* frees the txn whatever it returns */
    ledger_indexes_finish(t, rc == 0);
    t->txn = NULL;
    pthread_rwlock_unlock(&t->l->maplock);
    return rc ? ltx_fail(t, rc) : 0;
}

int ledger_grow(struct pg_ledger *l)
{
    int rc = PG_ESTORE;
    MDB_envinfo info;
    pthread_rwlock_wrlock(&l->maplock);
    if (mdb_env_info(l->env, &info) == 0 && (uint64_t)info.me_mapsize < l->map_size_max) {
        uint64_t cur = (uint64_t)info.me_mapsize;
        uint64_t next = cur > l->map_size_max / 2 ? l->map_size_max : cur * 2;
        if (mdb_env_set_mapsize(l->env, (size_t)next) == 0)
            rc = 0;
    }
    pthread_rwlock_unlock(&l->maplock);
    if (rc == 0) {
        note_map_size(l);
        pthread_mutex_lock(&l->mu);
        l->stats.map_grows++;
        pthread_mutex_unlock(&l->mu);
    }
    return rc;
}

int ledger_write(struct pg_ledger *l, int (*fn)(struct ltx *t, void *arg), void *arg, int *mdb_rc)
{
    if (mdb_rc)
        *mdb_rc = 0;
    if (l->read_only)
        return PG_EBUSY;
    for (;;) {
        struct ltx t;
        int rc = ltx_begin(l, true, &t);
        if (rc == 0) {
            rc = fn(&t, arg);
            if (rc == 0)
                rc = ltx_commit(&t);
            else
                ltx_abort(&t);
        }
        if (mdb_rc)
            *mdb_rc = t.mdb_rc;
        /* Nothing of the failed attempt is left (LMDB rolled it back), so
         * growing and running fn again from the start is safe. */
        if (rc == PG_ESTORE && t.mdb_rc == MDB_MAP_FULL && ledger_grow(l) == 0)
            continue;
        return rc;
    }
}

int ltx_get(struct ltx *t, enum ldb db, const void *k, size_t kn, MDB_val *v)
{
    MDB_val key = { kn, (void *)(uintptr_t)k };
    int rc = mdb_get(t->txn, t->l->db[db], &key, v);
    if (rc == MDB_NOTFOUND)
        return PG_ENOTFOUND;
    return rc ? ltx_fail(t, rc) : 0;
}

int ltx_put(struct ltx *t, enum ldb db, const void *k, size_t kn, const void *v, size_t vn)
{
    MDB_val key = { kn, (void *)(uintptr_t)k };
    MDB_val val = { vn, (void *)(uintptr_t)v };
    int rc = mdb_put(t->txn, t->l->db[db], &key, &val, 0);
    return rc ? ltx_fail(t, rc) : 0;
}

int ltx_reserve(struct ltx *t, enum ldb db, const void *k, size_t kn, size_t vn, bool append,
                void **out)
{
    MDB_val key = { kn, (void *)(uintptr_t)k };
    MDB_val val = { vn, NULL };
    int rc = mdb_put(t->txn, t->l->db[db], &key, &val, MDB_RESERVE | (append ? MDB_APPEND : 0));
    if (rc == MDB_KEYEXIST && append) /* not above every key after all: a plain put */
        rc = mdb_put(t->txn, t->l->db[db], &key, &val, MDB_RESERVE);
    if (rc)
        return ltx_fail(t, rc);
    *out = val.mv_data;
    return 0;
}

int ltx_del(struct ltx *t, enum ldb db, const void *k, size_t kn)
{
    MDB_val key = { kn, (void *)(uintptr_t)k };
    int rc = mdb_del(t->txn, t->l->db[db], &key, NULL);
    return rc && rc != MDB_NOTFOUND ? ltx_fail(t, rc) : 0;
}

int ltx_cursor(struct ltx *t, enum ldb db, MDB_cursor **out)
{
    int rc = mdb_cursor_open(t->txn, t->l->db[db], out);
    return rc ? ltx_fail(t, rc) : 0;
}

int ltx_next_id(struct ltx *t, enum counter c, uint64_t *id)
{
    if (!t->ctr_loaded[c]) {
        MDB_val v;
        int rc = ltx_get(t, DB_META, counter_keys[c], strlen(counter_keys[c]), &v);
        if (rc == PG_ENOTFOUND) {
            t->ctr[c] = 1;
        } else if (rc != 0) {
            return rc;
        } else {
            struct dec d = { v.mv_data, v.mv_size, 0, false };
            t->ctr[c] = dec_u64(&d);
            if (d.bad || t->ctr[c] == 0)
                return ltx_fail(t, MDB_CORRUPTED);
        }
        t->ctr_loaded[c] = true;
    }
    *id = t->ctr[c]++;
    t->ctr_dirty[c] = true;
    return 0;
}

/* --- small shared helpers ----------------------------------------------- */

size_t key_pair(uint8_t *out, size_t cap, const char *a, size_t an, const char *b, size_t bn)
{
    if (an + 1 + bn > cap || an + 1 + bn > LEDGER_KEY_MAX)
        return 0;
    memcpy(out, a, an);
    out[an] = 0;
    memcpy(out + an + 1, b, bn);
    return an + 1 + bn;
}

void actor_of(char *out, size_t cap, const char *agent)
{
    snprintf(out, cap, "agent:%s", agent);
}

bool req_who_ok(const struct pg_ledger_req *req)
{
    /* Times outside years 1970-9999 cannot be written in RFC 3339. */
    return FIELD_LEN(req->agent) < sizeof(req->agent) && FIELD_LEN(req->org) < sizeof(req->org) &&
           FIELD_LEN(req->idem_key) < sizeof(req->idem_key) &&
           FIELD_LEN(req->currency) < sizeof(req->currency) &&
           FIELD_LEN(req->counterparty) < sizeof(req->counterparty) &&
           FIELD_LEN(req->object_id) < sizeof(req->object_id) && req->org[0] && req->now >= 0 &&
           req->now <= INT64_C(253402300799);
}

const char *ledger_intern(struct pg_ledger *l, const char *s)
{
    if (!s || !s[0])
        return "";
    pthread_mutex_lock(&l->intern_mu);
    for (struct interned *i = l->interned; i; i = i->next) {
        if (strcmp(i->s, s) == 0) {
            pthread_mutex_unlock(&l->intern_mu);
            return i->s;
        }
    }
    size_t n = strlen(s);
    struct interned *i = malloc(sizeof(*i) + n + 1);
    if (!i) {
        pthread_mutex_unlock(&l->intern_mu);
        return "";
    }
    memcpy(i->s, s, n + 1);
    i->next = l->interned;
    l->interned = i;
    pthread_mutex_unlock(&l->intern_mu);
    return i->s;
}

/* --- open and close ------------------------------------------------------- */

/* Creates (or opens) every named database, checks the schema and records
 * the epoch. Runs in a write transaction (ledger_write). */
static int init_fn(struct ltx *t, void *arg)
{
    (void)arg;
    struct pg_ledger *l = t->l;
    for (int i = 0; i < DB_COUNT; i++) {
        int rc = mdb_dbi_open(t->txn, pg_ledger_db_names[i], MDB_CREATE, &l->db[i]);
        if (rc != 0)
            return ltx_fail(t, rc);
    }
    MDB_val v;
    int rc = ltx_get(t, DB_META, META_SCHEMA, strlen(META_SCHEMA), &v);
    if (rc == 0) {
        struct dec d = { v.mv_data, v.mv_size, 0, false };
        uint32_t schema = dec_u32(&d);
        if (d.bad || schema > LEDGER_SCHEMA)
            return PG_ERANGE;
    } else if (rc == PG_ENOTFOUND) {
        uint8_t b[4];
        struct enc e = { b, sizeof(b), 0 };
        enc_u32(&e, LEDGER_SCHEMA);
        if ((rc = ltx_put(t, DB_META, META_SCHEMA, strlen(META_SCHEMA), b, sizeof(b))) != 0)
            return rc;
    } else {
        return rc;
    }
    uint8_t b[8];
    struct enc e = { b, sizeof(b), 0 };
    enc_u64(&e, l->epoch);
    return ltx_put(t, DB_META, META_EPOCH, strlen(META_EPOCH), b, sizeof(b));
}

/* A read-only opener cannot create databases: they must all be there. */
static int init_read_only(struct pg_ledger *l, char *err, size_t errlen)
{
    struct ltx t;
    int rc = ltx_begin(l, false, &t);
    if (rc != 0) {
        snprintf(err, errlen, "ledger %s: cannot read: %s", l->dir, mdb_strerror(t.mdb_rc));
        return rc;
    }
    for (int i = 0; i < DB_COUNT; i++) {
        int mrc = mdb_dbi_open(t.txn, pg_ledger_db_names[i], 0, &l->db[i]);
        if (mrc != 0) {
            snprintf(err, errlen, "ledger %s: no database \"%s\" (%s): not a payguard ledger yet",
                     l->dir, pg_ledger_db_names[i], mdb_strerror(mrc));
            ltx_abort(&t);
            return PG_ESTORE;
        }
    }
    MDB_val v;
    rc = ltx_get(&t, DB_META, META_SCHEMA, strlen(META_SCHEMA), &v);
    if (rc == 0) {
        struct dec d = { v.mv_data, v.mv_size, 0, false };
        uint32_t schema = dec_u32(&d);
        if (d.bad || schema > LEDGER_SCHEMA) {
            snprintf(err, errlen, "ledger %s: schema %u is newer than this payguard's (%u)", l->dir,
                     schema, LEDGER_SCHEMA);
            ltx_abort(&t);
            return PG_ESTORE;
        }
    } else if (rc != PG_ENOTFOUND) {
        snprintf(err, errlen, "ledger %s: cannot read meta: %s", l->dir, mdb_strerror(t.mdb_rc));
        ltx_abort(&t);
        return rc;
    }
    /* Committing (not aborting) keeps the database handles for later txns. */
    rc = ltx_commit(&t);
    if (rc != 0)
        snprintf(err, errlen, "ledger %s: %s", l->dir, mdb_strerror(t.mdb_rc));
    return rc;
}

static uint64_t align_up(uint64_t v)
{
    if (v > UINT64_MAX - MAP_ALIGN)
        return UINT64_MAX - (UINT64_MAX % MAP_ALIGN);
    return (v + MAP_ALIGN - 1) / MAP_ALIGN * MAP_ALIGN;
}

/* The directory is created 0700 when missing (its parent must exist); an
 * existing one is used as it is, but must be a directory. */
static int make_dir(const char *dir, char *err, size_t errlen)
{
    struct stat st;
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        int e = errno;
        snprintf(err, errlen, "ledger %s: cannot create the directory: %s", dir, strerror(e));
        return PG_ESTORE;
    }
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "ledger %s: not a directory", dir);
        return PG_ESTORE;
    }
    return 0;
}

int pg_ledger_open(const struct pg_ledger_options *opt, struct pg_ledger **out, char *err,
                   size_t errlen)
{
    char scratch[8];
    if (!err || !errlen) {
        err = scratch;
        errlen = sizeof(scratch);
    }
    err[0] = '\0';
    *out = NULL;
    if (!opt || !opt->dir || !opt->dir[0]) {
        snprintf(err, errlen, "ledger: no data directory given");
        return PG_EPARSE;
    }
    int rc = PG_ENOMEM;
    struct pg_ledger *l = calloc(1, sizeof(*l));
    if (!l)
        goto fail;
    l->dir = strdup(opt->dir);
    l->server_lock = -1;
    if (!l->dir)
        goto fail_free;
    if (pthread_rwlock_init(&l->maplock, NULL) != 0)
        goto fail_dir;
    if (pthread_mutex_init(&l->intern_mu, NULL) != 0)
        goto fail_maplock;
    if (pthread_mutex_init(&l->mu, NULL) != 0)
        goto fail_intern_mu;
    /* The writer's short waits (writer.c, linger) must not follow the wall clock. */
    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca) != 0)
        goto fail_mu;
    int crc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    if (crc == 0)
        crc = pthread_cond_init(&l->cv, &ca);
    if (crc == 0 && (crc = pthread_cond_init(&l->prep_cv, &ca)) != 0)
        pthread_cond_destroy(&l->cv);
    if (crc == 0 && (crc = pthread_cond_init(&l->prep_idle_cv, &ca)) != 0) {
        pthread_cond_destroy(&l->prep_cv);
        pthread_cond_destroy(&l->cv);
    }
    pthread_condattr_destroy(&ca);
    if (crc != 0)
        goto fail_mu;
    if ((rc = ledger_indexes_init(l)) != 0)
        goto fail_cv;
    atomic_init(&l->ready, false);

    l->read_only = opt->read_only;
    l->idem_ttl_s = opt->idempotency_ttl_s ? opt->idempotency_ttl_s : 86400;
    l->approval_ttl_s = opt->approval_ttl_s ? opt->approval_ttl_s : 86400;
    uint64_t map_size = align_up(opt->map_size ? opt->map_size : DEFAULT_MAP_SIZE);
    l->map_size_max = align_up(opt->map_size_max ? opt->map_size_max : DEFAULT_MAP_MAX);
    if (l->map_size_max < map_size)
        l->map_size_max = map_size;
    if (map_size > SIZE_MAX || l->map_size_max > SIZE_MAX) {
        rc = PG_ERANGE;
        snprintf(err, errlen, "ledger %s: map size too large for this machine", l->dir);
        goto fail_cond;
    }

    rc = PG_ESTORE;
    if (!l->read_only && make_dir(l->dir, err, errlen) != 0)
        goto fail_cond;
    int mrc = mdb_env_create(&l->env);
    if (mrc != 0) {
        snprintf(err, errlen, "ledger %s: %s", l->dir, mdb_strerror(mrc));
        goto fail_cond;
    }
    if ((mrc = mdb_env_set_maxdbs(l->env, DB_COUNT)) != 0 ||
        (mrc = mdb_env_set_mapsize(l->env, (size_t)map_size)) != 0) {
        snprintf(err, errlen, "ledger %s: %s", l->dir, mdb_strerror(mrc));
        goto fail_env;
    }
    /* Default durable flags: every commit is synced. MDB_NOTLS because read
     * transactions are not tied to the thread that began them. 0600: the
     * budgets and the audit log are nobody else's business. */
    unsigned flags = MDB_NOTLS | (l->read_only ? MDB_RDONLY : 0);
    if ((mrc = mdb_env_open(l->env, l->dir, flags, 0600)) != 0) {
        snprintf(err, errlen, "ledger %s: cannot open: %s", l->dir, mdb_strerror(mrc));
        goto fail_env;
    }
    int dead = 0;
    if ((mrc = mdb_reader_check(l->env, &dead)) != 0) {
        snprintf(err, errlen, "ledger %s: reader check: %s", l->dir, mdb_strerror(mrc));
        goto fail_env;
    }
    note_map_size(l);

    if (l->read_only) {
        if ((rc = init_read_only(l, err, errlen)) != 0)
            goto fail_env;
    } else {
        do {
            if (pg_random(&l->epoch, sizeof(l->epoch)) != 0) {
                rc = PG_ECRYPTO;
                snprintf(err, errlen, "ledger %s: no randomness for the process epoch", l->dir);
                goto fail_env;
            }
        } while (l->epoch == 0); /* 0 marks unresolved keys */
        int last = 0;
        rc = ledger_write(l, init_fn, NULL, &last);
        if (rc == PG_ERANGE) {
            snprintf(err, errlen, "ledger %s: written by a newer payguard (schema above %u)",
                     l->dir, LEDGER_SCHEMA);
            rc = PG_ESTORE;
            goto fail_env;
        }
        if (rc != 0) {
            snprintf(err, errlen, "ledger %s: cannot initialise: %s", l->dir,
                     last ? mdb_strerror(last) : pg_strerror(rc));
            goto fail_env;
        }
    }
    *out = l;
    return 0;

fail_env:
    mdb_env_close(l->env);
fail_cond:
    ledger_indexes_free(l);
fail_cv:
    pthread_cond_destroy(&l->prep_idle_cv);
    pthread_cond_destroy(&l->prep_cv);
    pthread_cond_destroy(&l->cv);
fail_mu:
    pthread_mutex_destroy(&l->mu);
fail_intern_mu:
    pthread_mutex_destroy(&l->intern_mu);
fail_maplock:
    pthread_rwlock_destroy(&l->maplock);
fail_dir:
    free(l->dir);
fail_free:
    free(l);
fail:
    if (rc == PG_ENOMEM && !err[0])
        snprintf(err, errlen, "ledger: out of memory");
    return rc;
}

void pg_ledger_close(struct pg_ledger *l)
{
    if (!l)
        return;
    ledger_writer_stop(l);
    mdb_env_close(l->env);
    if (l->server_lock >= 0)
        close(l->server_lock);
    for (struct interned *i = l->interned, *next; i; i = next) {
        next = i->next;
        free(i);
    }
    ledger_indexes_free(l);
    ledger_unsettled_free(l);
    pthread_cond_destroy(&l->prep_idle_cv);
    pthread_cond_destroy(&l->prep_cv);
    pthread_cond_destroy(&l->cv);
    pthread_mutex_destroy(&l->mu);
    pthread_mutex_destroy(&l->intern_mu);
    pthread_rwlock_destroy(&l->maplock);
    free(l->dir);
    free(l);
}

void pg_ledger_stats(struct pg_ledger *l, struct pg_ledger_stats *out)
{
    pthread_mutex_lock(&l->mu);
    *out = l->stats;
    pthread_mutex_unlock(&l->mu);
}

bool pg_ledger_ready(const struct pg_ledger *l)
{
    return atomic_load(&l->ready);
}
