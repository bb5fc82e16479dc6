/* Pruning: removes records nothing needs any more, a bounded number per
 * pass so the writer never holds a long transaction. The expiry index finds
 * finished idempotency records and reservations without scanning them all;
 * velocity marks, day buckets and approvals are scanned (they are few, or
 * skipped a whole agent at a time). Audit entries are never removed. */
#include "common/pg.h"
#include "ledger/ledger_int.h"

struct prune {
    struct ltx *t;
    int64_t now;
    size_t budget, done;
    bool more;
};

static bool spent(struct prune *p)
{
    if (p->done < p->budget)
        return false;
    p->more = true;
    return true;
}

/* Walks one kind of the expiry index up to `cutoff`; fn removes the record
 * an entry names (the entry itself is removed here). */
static int expiry_walk(struct prune *p, uint8_t kind, int64_t cutoff,
                       int (*fn)(struct prune *p, int64_t when, const uint8_t *id, size_t n))
{
    MDB_cursor *c;
    int rc = ltx_cursor(p->t, DB_EXPIRY, &c);
    if (rc != 0)
        return rc;
    uint8_t k[9];
    k[0] = kind;
    time_put(k + 1, INT64_MIN);
    MDB_val key = { sizeof(k), k }, val;
    int mrc = mdb_cursor_get(c, &key, &val, MDB_SET_RANGE);
    while (mrc == 0 && !spent(p)) {
        const uint8_t *kp = key.mv_data;
        if (key.mv_size < 9 || kp[0] != kind)
            break;
        int64_t when = time_get(kp + 1);
        if (when >= cutoff)
            break;
        /* Copy the key out: deleting other records may move its page. */
        uint8_t id[LEDGER_KEY_MAX];
        size_t n = key.mv_size - 9;
        memcpy(id, kp + 9, n);
        if ((rc = fn(p, when, id, n)) != 0)
            break;
        if ((mrc = mdb_cursor_del(c, 0)) != 0)
            break;
        p->done++;
        mrc = mdb_cursor_get(c, &key, &val, MDB_NEXT);
    }
    mdb_cursor_close(c);
    if (rc == 0 && mrc != 0 && mrc != MDB_NOTFOUND)
        rc = ltx_fail(p->t, mrc);
    return rc;
}

static int drop_idem(struct prune *p, int64_t when, const uint8_t *key, size_t n)
{
    struct idem r;
    int rc = idem_get(p->t, key, n, &r);
    if (rc == PG_ENOTFOUND)
        return 0;
    if (rc != 0)
        return rc;
    /* The key may have been reused since (a VOID forgets it): only the
     * record this entry was written for goes. */
    if (r.state != IDEM_DONE || r.updated_at != when)
        return 0;
    uint8_t rk[8];
    be64_put(rk, r.response);
    if ((rc = ltx_del(p->t, DB_RESPONSES, rk, sizeof(rk))) != 0)
        return rc;
    p->done += 2;
    return idem_del(p->t, key, n, &r);
}

static int drop_resv(struct prune *p, int64_t when, const uint8_t *key, size_t n)
{
    (void)when;
    if (n != 8)
        return 0;
    struct resv r;
    int rc = resv_get(p->t, be64_get(key), &r);
    if (rc == PG_ENOTFOUND)
        return 0;
    if (rc != 0)
        return rc;
    if (r.state != RESV_POSTED && r.state != RESV_VOIDED)
        return 0;
    if (r.object_id[0]) {
        /* The index entry, and a mapping a ledger from before the index
         * wrote to the objects tree. */
        MDB_val v;
        rc = ltx_get(p->t, DB_OBJECTS, r.object_id, strlen(r.object_id), &v);
        if (rc == 0 && v.mv_size == 8 && be64_get(v.mv_data) == r.id)
            rc = ltx_del(p->t, DB_OBJECTS, r.object_id, strlen(r.object_id));
        if (rc != 0 && rc != PG_ENOTFOUND)
            return rc;
        if ((rc = objects_unindex(p->t, r.object_id, r.id)) != 0)
            return rc;
    }
    p->done++;
    return ltx_del(p->t, DB_RESV, key, n);
}

/* Velocity marks older than a day; a recent mark skips the rest of its
 * agent's marks at once. */
static int prune_velocity(struct prune *p)
{
    int64_t cutoff = sat_add(p->now, -LEDGER_DAY_S);
    MDB_cursor *c;
    int rc = ltx_cursor(p->t, DB_VELOCITY, &c);
    if (rc != 0)
        return rc;
    MDB_val key, val;
    int mrc = mdb_cursor_get(c, &key, &val, MDB_FIRST);
    while (mrc == 0 && !spent(p)) {
        const uint8_t *kp = key.mv_data;
        const uint8_t *nul = memchr(kp, 0, key.mv_size);
        size_t an = nul ? (size_t)(nul - kp) : key.mv_size;
        if (!nul || key.mv_size != an + 18 || time_get(kp + an + 1) < cutoff) {
            if ((mrc = mdb_cursor_del(c, 0)) != 0)
                break;
            p->done++;
            mrc = mdb_cursor_get(c, &key, &val, MDB_NEXT);
            continue;
        }
        /* agent \1 sorts after every agent \0 ... key, before the next agent */
        uint8_t next[PG_ID_MAX + 2];
        if (an > PG_ID_MAX)
            break;
        memcpy(next, kp, an);
        next[an] = 1;
        MDB_val nk = { an + 1, next };
        key = nk;
        mrc = mdb_cursor_get(c, &key, &val, MDB_SET_RANGE);
    }
    mdb_cursor_close(c);
    return mrc == 0 || mrc == MDB_NOTFOUND ? 0 : ltx_fail(p->t, mrc);
}

/* Day buckets older than 40 days with nothing pending. */
static int prune_buckets(struct prune *p)
{
    int64_t cutoff = sat_add(p->now, -LEDGER_KEEP_BUCKETS_S);
    MDB_cursor *c;
    int rc = ltx_cursor(p->t, DB_SPEND, &c);
    if (rc != 0)
        return rc;
    MDB_val key, val;
    int mrc = mdb_cursor_get(c, &key, &val, MDB_FIRST);
    while (mrc == 0 && !spent(p)) {
        bool drop = false;
        if (key.mv_size > 8) {
            int64_t day = time_get((const uint8_t *)key.mv_data + key.mv_size - 8);
            struct dec d = { val.mv_data, val.mv_size, 0, false };
            (void)dec_take(&d, 8);
            (void)dec_i64(&d);
            int64_t pending = dec_i64(&d);
            drop = day < cutoff && !d.bad && pending == 0;
        }
        if (drop) {
            if ((mrc = mdb_cursor_del(c, 0)) != 0)
                break;
            p->done++;
        }
        mrc = mdb_cursor_get(c, &key, &val, MDB_NEXT);
    }
    mdb_cursor_close(c);
    return mrc == 0 || mrc == MDB_NOTFOUND ? 0 : ltx_fail(p->t, mrc);
}

/* The key a held approval left behind goes with it. */
static int drop_held_key(struct prune *p, const struct appr *a)
{
    uint8_t key[LEDGER_KEY_MAX];
    size_t kn = key_pair(key, sizeof(key), a->a.agent, strlen(a->a.agent), a->a.idem_key,
                         strlen(a->a.idem_key));
    if (!kn || !a->a.idem_key[0])
        return 0;
    struct idem r;
    int rc = idem_get(p->t, key, kn, &r);
    if (rc == PG_ENOTFOUND)
        return 0;
    if (rc != 0)
        return rc;
    if (r.state != IDEM_HELD || strcmp(r.approval_id, a->a.id) != 0)
        return 0;
    return idem_del(p->t, key, kn, &r);
}

/* Decided approvals older than a week; a pending one that expired a week
 * ago is audited as expired first, so every hold has an end in the log. */
static int prune_approvals(struct prune *p)
{
    int64_t cutoff = sat_add(p->now, -LEDGER_KEEP_APPROVALS_S);
    MDB_cursor *c;
    int rc = ltx_cursor(p->t, DB_APPROVALS, &c);
    if (rc != 0)
        return rc;
    MDB_val key, val;
    int mrc = mdb_cursor_get(c, &key, &val, MDB_FIRST);
    while (mrc == 0 && !spent(p)) {
        char id[PG_ID_MAX + 1];
        struct appr a;
        if (key.mv_size == 0 || key.mv_size > PG_ID_MAX) {
            mrc = mdb_cursor_get(c, &key, &val, MDB_NEXT);
            continue;
        }
        memcpy(id, key.mv_data, key.mv_size);
        id[key.mv_size] = '\0';
        bool pending = false, drop = false;
        /* Decoded into a copy before other databases are written. */
        if ((rc = appr_get(p->t, id, &a)) != 0)
            break;
        pending = a.stored_status == PG_APPROVAL_PENDING;
        drop = pending ? a.a.expires_at < cutoff : a.a.decided_at < cutoff;
        if (drop) {
            if (pending) {
                char actor[] = "payguard";
                struct audit_entry e = {
                    .time = p->now, .org = a.a.org, .agent = a.a.agent, .actor = actor,
                    .action = "expire", .route = a.route, .fingerprint = a.fingerprint,
                    .has_amount = a.a.has_amount, .amount = a.a.amount,
                    .currency = a.a.currency, .counterparty = a.a.counterparty,
                    .reason = a.a.reason, .approval = a.a.id,
                    .note = "expired without a decision; removed",
                };
                if ((rc = audit_append(p->t, &e)) != 0)
                    break;
            }
            if ((rc = drop_held_key(p, &a)) != 0)
                break;
            if ((mrc = mdb_cursor_del(c, 0)) != 0)
                break;
            p->done++;
        }
        mrc = mdb_cursor_get(c, &key, &val, MDB_NEXT);
    }
    mdb_cursor_close(c);
    if (rc == 0 && mrc != 0 && mrc != MDB_NOTFOUND)
        rc = ltx_fail(p->t, mrc);
    return rc;
}

/* Refresh tokens a day past their expiry: presented, they would be refused
 * as expired anyway. Their families stay (one small record per sign-in). */
static int drop_session(struct prune *p, int64_t when, const uint8_t *key, size_t n)
{
    (void)when;
    return sessions_drop_token(p->t, key, n);
}

int ledger_prune_txn(struct ltx *t, int64_t now, size_t budget, size_t *done, bool *more)
{
    struct pg_ledger *l = t->l;
    struct prune p = { t, now, budget, 0, false };
    int rc = expiry_walk(&p, EXP_IDEM_DONE, sat_add(now, -(int64_t)l->idem_ttl_s), drop_idem);
    if (rc == 0)
        rc = expiry_walk(&p, EXP_RESV_DONE, sat_add(now, -LEDGER_KEEP_BUCKETS_S), drop_resv);
    if (rc == 0)
        rc = expiry_walk(&p, EXP_SESSION, sat_add(now, -LEDGER_DAY_S), drop_session);
    if (rc == 0)
        rc = prune_velocity(&p);
    if (rc == 0)
        rc = prune_buckets(&p);
    if (rc == 0)
        rc = prune_approvals(&p);
    *done = p.done;
    *more = p.more;
    return rc;
}
