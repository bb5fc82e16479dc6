/* Budgets: day buckets of posted and pending spend per agent and currency,
 * reservations that hold pending amounts until the rail answers, velocity
 * marks, and the read-only views the CLI shows. Window totals are range
 * scans over day buckets, so any window made of whole days can be summed. */
#include "common/pg.h"
#include "ledger/ledger_int.h"

#include <stdlib.h>

#define BUCKET_LEN 24 /* version, 7 spare bytes, posted, pending */

/* agent \0 currency \0 day: returns the length; the prefix (agent and
 * currency with their NULs) is the length minus 8. */
static size_t spend_key(uint8_t *k, const char *agent, const char *cur, int64_t day)
{
    size_t an = strnlen(agent, PG_ID_MAX), cn = strnlen(cur, 3);
    memcpy(k, agent, an);
    k[an] = 0;
    memcpy(k + an + 1, cur, cn);
    k[an + 1 + cn] = 0;
    time_put(k + an + 2 + cn, day);
    return an + cn + 10;
}

static void bucket_decode(const MDB_val *v, int64_t *posted, int64_t *pending)
{
    struct dec d = { v->mv_data, v->mv_size, 0, false };
    (void)dec_u8(&d);
    (void)dec_take(&d, 7);
    *posted = dec_i64(&d);
    *pending = dec_i64(&d);
    if (d.bad)
        *posted = *pending = 0;
}

int bucket_get(struct ltx *t, const char *agent, const char *cur, int64_t day, int64_t *posted,
               int64_t *pending)
{
    uint8_t k[96];
    size_t kn = spend_key(k, agent, cur, day);
    MDB_val v;
    *posted = *pending = 0;
    int rc = ltx_get(t, DB_SPEND, k, kn, &v);
    if (rc == PG_ENOTFOUND)
        return 0;
    if (rc != 0)
        return rc;
    bucket_decode(&v, posted, pending);
    return 0;
}

int bucket_add(struct ltx *t, const char *agent, const char *cur, int64_t day, int64_t dposted,
               int64_t dpending)
{
    int64_t posted, pending;
    int rc = bucket_get(t, agent, cur, day, &posted, &pending);
    if (rc != 0)
        return rc;
    if (__builtin_add_overflow(posted, dposted, &posted) ||
        __builtin_add_overflow(pending, dpending, &pending))
        return PG_ERANGE;
    /* Releasing more than is there (a refund of an older day, a reservation
     * posted for less) never leaves a negative total that would give an
     * agent budget it never had. */
    if (posted < 0)
        posted = 0;
    if (pending < 0)
        pending = 0;
    uint8_t k[96], v[BUCKET_LEN];
    size_t kn = spend_key(k, agent, cur, day);
    struct enc e = { v, sizeof(v), 0 };
    enc_u8(&e, LEDGER_REC_V1);
    enc_bytes(&e, "\0\0\0\0\0\0\0", 7);
    enc_i64(&e, posted);
    enc_i64(&e, pending);
    return ltx_put(t, DB_SPEND, k, kn, v, e.len);
}

int spend_windows(struct ltx *t, const char *agent, const char *cur, const struct pg_windows *w,
                  struct window_spend *out)
{
    memset(out, 0, sizeof(*out));
    const int64_t start[3] = { w->day_start, w->week_start, w->month_start };
    const int64_t end[3] = { w->day_end, w->week_end, w->month_end };
    int64_t lo = start[0], hi = end[0];
    for (int i = 1; i < 3; i++) {
        if (start[i] < lo)
            lo = start[i];
        if (end[i] > hi)
            hi = end[i];
    }
    uint8_t k[96];
    size_t kn = spend_key(k, agent, cur, lo), pn = kn - 8;
    MDB_cursor *c;
    int rc = ltx_cursor(t, DB_SPEND, &c);
    if (rc != 0)
        return rc;
    /* One scan over the days of the widest window; each bucket counts in
     * every window its day starts in. */
    MDB_val key = { kn, k }, val;
    int mrc = mdb_cursor_get(c, &key, &val, MDB_SET_RANGE);
    while (mrc == 0) {
        const uint8_t *kp = key.mv_data;
        if (key.mv_size != kn || memcmp(kp, k, pn) != 0)
            break;
        int64_t day = time_get(kp + pn);
        if (day >= hi)
            break;
        int64_t posted, pending;
        bucket_decode(&val, &posted, &pending);
        for (int i = 0; i < 3; i++) {
            if (day >= start[i] && day < end[i]) {
                out->posted[i] = sat_add(out->posted[i], posted);
                out->pending[i] = sat_add(out->pending[i], pending);
            }
        }
        mrc = mdb_cursor_get(c, &key, &val, MDB_NEXT);
    }
    mdb_cursor_close(c);
    return mrc == 0 || mrc == MDB_NOTFOUND ? 0 : ltx_fail(t, mrc);
}

/* --- velocity ---------------------------------------------------------------- */

/* Velocity marks: agent \0 ts \0 seq -> empty. Per agent, ts never goes
 * down (a clock that steps back writes at the last mark's time, which only
 * makes the mark count a little longer) and seq grows by one per mark, so
 * the marks since any instant are a difference of two seqs found with two
 * seeks: O(log n) however long the period and however many marks. Marks
 * after `now` (a clock stepped back) count too: that fails closed. */

/* agent \0 ts \0 seq; with_seq false gives the prefix to seek from. */
static size_t velocity_key(uint8_t *k, const char *agent, int64_t ts, uint64_t seq, bool with_seq)
{
    size_t an = strnlen(agent, PG_ID_MAX);
    memcpy(k, agent, an);
    k[an] = 0;
    time_put(k + an + 1, ts);
    if (!with_seq)
        return an + 9;
    k[an + 9] = 0;
    be64_put(k + an + 10, seq);
    return an + 18;
}

struct mark {
    bool found;
    int64_t ts;
    uint64_t seq;
};

/* The agent's first mark at or after `from`, or (from == INT64_MAX) its
 * last mark. */
static int mark_find(struct ltx *t, MDB_cursor *c, const char *agent, int64_t from, struct mark *m)
{
    uint8_t k[96];
    size_t an = strnlen(agent, PG_ID_MAX);
    MDB_val key = { 0, k }, val;
    int mrc;
    m->found = false;
    if (from != INT64_MAX) {
        key.mv_size = velocity_key(k, agent, from, 0, false);
        mrc = mdb_cursor_get(c, &key, &val, MDB_SET_RANGE);
    } else {
        /* agent \1 sorts after every key of the agent: step back from it */
        memcpy(k, agent, an);
        k[an] = 1;
        key.mv_size = an + 1;
        mrc = mdb_cursor_get(c, &key, &val, MDB_SET_RANGE);
        if (mrc == 0)
            mrc = mdb_cursor_get(c, &key, &val, MDB_PREV);
        else if (mrc == MDB_NOTFOUND)
            mrc = mdb_cursor_get(c, &key, &val, MDB_LAST);
    }
    if (mrc == MDB_NOTFOUND)
        return 0;
    if (mrc != 0)
        return ltx_fail(t, mrc);
    const uint8_t *kp = key.mv_data;
    if (key.mv_size != an + 18 || memcmp(kp, agent, an) != 0 || kp[an] != 0)
        return 0; /* another agent's */
    m->found = true;
    m->ts = time_get(kp + an + 1);
    m->seq = be64_get(kp + an + 10);
    return 0;
}

int velocity_count(struct ltx *t, const char *agent, int64_t now, uint32_t period, uint32_t *out)
{
    *out = 0;
    if (period == 0)
        return 0;
    MDB_cursor *c;
    int rc = ltx_cursor(t, DB_VELOCITY, &c);
    if (rc != 0)
        return rc;
    struct mark first, last;
    /* (now - period, now] starts at now - period + 1 */
    rc = mark_find(t, c, agent, sat_add(now, -(int64_t)period + 1), &first);
    if (rc == 0 && first.found)
        rc = mark_find(t, c, agent, INT64_MAX, &last);
    mdb_cursor_close(c);
    if (rc == 0 && first.found && last.found && last.seq >= first.seq) {
        uint64_t n = last.seq - first.seq + 1;
        *out = n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
    }
    return rc;
}

int velocity_mark(struct ltx *t, const char *agent, int64_t now)
{
    MDB_cursor *c;
    struct mark last;
    int rc = ltx_cursor(t, DB_VELOCITY, &c);
    if (rc != 0)
        return rc;
    rc = mark_find(t, c, agent, INT64_MAX, &last);
    mdb_cursor_close(c);
    if (rc != 0)
        return rc;
    uint8_t k[96];
    int64_t ts = last.found && last.ts > now ? last.ts : now;
    size_t kn = velocity_key(k, agent, ts, last.found ? last.seq + 1 : 1, true);
    return ltx_put(t, DB_VELOCITY, k, kn, "", 0);
}

int expiry_add(struct ltx *t, uint8_t kind, int64_t when, const void *id, size_t n)
{
    uint8_t k[LEDGER_KEY_MAX];
    if (n + 9 > sizeof(k))
        return PG_ETOOBIG;
    k[0] = kind;
    time_put(k + 1, when);
    memcpy(k + 9, id, n);
    return ltx_put(t, DB_EXPIRY, k, n + 9, "", 0);
}

/* --- reservations -------------------------------------------------------------- */

const char *resv_state_name(uint8_t state)
{
    switch (state) {
    case RESV_PENDING: return "pending";
    case RESV_AUTHORIZED: return "authorized";
    case RESV_POSTED: return "posted";
    case RESV_VOIDED: return "voided";
    }
    return "unknown";
}

static void resv_encode(struct enc *e, const struct resv *r)
{
    enc_u8(e, LEDGER_REC_V1);
    enc_u8(e, r->state);
    enc_u8(e, r->op);
    enc_bytes(e, r->currency, 3);
    enc_i64(e, r->pending);
    enc_i64(e, r->reserved);
    enc_i64(e, r->posted);
    enc_i64(e, r->created_at);
    enc_i64(e, r->updated_at);
    enc_i64(e, r->day_start);
    enc_str(e, r->agent);
    enc_str(e, r->org);
    enc_str(e, r->object_id);
    enc_str(e, r->route);
    enc_str(e, r->idem_key);
}

bool resv_decode(const MDB_val *v, uint64_t id, struct resv *r)
{
    struct dec d = { v->mv_data, v->mv_size, 0, false };
    memset(r, 0, sizeof(*r));
    r->id = id;
    if (dec_u8(&d) != LEDGER_REC_V1)
        return false;
    r->state = dec_u8(&d);
    r->op = dec_u8(&d);
    dec_bytes(&d, r->currency, 3);
    r->pending = dec_i64(&d);
    r->reserved = dec_i64(&d);
    r->posted = dec_i64(&d);
    r->created_at = dec_i64(&d);
    r->updated_at = dec_i64(&d);
    r->day_start = dec_i64(&d);
    dec_str(&d, r->agent, sizeof(r->agent));
    dec_str(&d, r->org, sizeof(r->org));
    dec_str(&d, r->object_id, sizeof(r->object_id));
    dec_str(&d, r->route, sizeof(r->route));
    dec_str(&d, r->idem_key, sizeof(r->idem_key));
    return !d.bad;
}

int resv_get(struct ltx *t, uint64_t id, struct resv *r)
{
    uint8_t k[8];
    be64_put(k, id);
    MDB_val v;
    int rc = ltx_get(t, DB_RESV, k, sizeof(k), &v);
    if (rc != 0)
        return rc;
    return resv_decode(&v, id, r) ? 0 : ltx_fail(t, MDB_CORRUPTED);
}

int resv_put(struct ltx *t, const struct resv *r, bool fresh)
{
    uint8_t k[8];
    be64_put(k, r->id);
    struct enc e = { NULL, 0, 0 };
    resv_encode(&e, r);
    void *dst;
    int rc = ltx_reserve(t, DB_RESV, k, sizeof(k), e.len, fresh, &dst);
    if (rc != 0)
        return rc;
    struct enc w = { dst, e.len, 0 };
    resv_encode(&w, r);
    return 0;
}

/* --- views ------------------------------------------------------------------------ */

int pg_ledger_spend(struct pg_ledger *l, const char *agent, const char *currency,
                    const struct pg_windows *w, int64_t now, uint32_t velocity_period_s,
                    struct pg_spend *posted, struct pg_spend *pending)
{
    struct ltx t;
    if (!agent || !currency || !w)
        return PG_EPARSE;
    int rc = ltx_begin(l, false, &t);
    if (rc != 0)
        return rc;
    struct window_spend ws;
    uint32_t count = 0;
    rc = spend_windows(&t, agent, currency, w, &ws);
    if (rc == 0)
        rc = velocity_count(&t, agent, now, velocity_period_s, &count);
    ltx_abort(&t);
    if (rc != 0)
        return rc;
    *posted = (struct pg_spend){ ws.posted[0], ws.posted[1], ws.posted[2], count };
    *pending = (struct pg_spend){ ws.pending[0], ws.pending[1], ws.pending[2], count };
    return 0;
}

int pg_ledger_pending(struct pg_ledger *l, const char *agent,
                      int (*cb)(void *arg, const struct pg_reservation_view *r), void *arg)
{
    struct ltx t;
    MDB_cursor *c;
    int rc = ltx_begin(l, false, &t);
    if (rc != 0)
        return rc;
    if ((rc = ltx_cursor(&t, DB_RESV, &c)) != 0)
        goto out;
    MDB_val key, val;
    int mrc = mdb_cursor_get(c, &key, &val, MDB_FIRST);
    /* Ids grow with time, so key order is creation order. */
    while (mrc == 0) {
        struct resv r;
        if (key.mv_size == 8 && resv_decode(&val, be64_get(key.mv_data), &r) &&
            (r.state == RESV_PENDING || r.state == RESV_AUTHORIZED) &&
            (!agent || strcmp(agent, r.agent) == 0)) {
            struct pg_reservation_view v;
            memset(&v, 0, sizeof(v));
            v.id = r.id;
            memcpy(v.agent, r.agent, sizeof(v.agent));
            memcpy(v.currency, r.currency, sizeof(v.currency));
            v.amount = r.pending;
            v.created_at = r.created_at;
            memcpy(v.object_id, r.object_id, sizeof(v.object_id));
            v.route = ledger_intern(l, r.route);
            if (cb(arg, &v) != 0)
                break;
        }
        mrc = mdb_cursor_get(c, &key, &val, MDB_NEXT);
    }
    mdb_cursor_close(c);
    if (mrc != 0 && mrc != MDB_NOTFOUND)
        rc = ltx_fail(&t, mrc);
out:
    ltx_abort(&t);
    return rc;
}
