/* Approvals: a HOLD becomes a record bound to the exact request (agent,
 * idempotency key, fingerprint) that a human approves or denies, from the
 * CLI or the admin API, each decision audited. Expiry is lazy: a pending
 * approval reads EXPIRED once `now` reaches expires_at. */
#include "common/pg.h"
#include "ledger/ledger_int.h"
#include "ledger/outbox_int.h"

#include <stdio.h>
#include <stdlib.h>

static const char base62[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

const char *pg_approval_status_name(enum pg_approval_status s)
{
    switch (s) {
    case PG_APPROVAL_PENDING: return "pending";
    case PG_APPROVAL_APPROVED: return "approved";
    case PG_APPROVAL_DENIED: return "denied";
    case PG_APPROVAL_EXPIRED: return "expired";
    case PG_APPROVAL_USED: return "used";
    }
    return "unknown";
}

enum pg_approval_status appr_status(const struct appr *r, int64_t now)
{
    if (r->stored_status == PG_APPROVAL_PENDING && now >= r->a.expires_at)
        return PG_APPROVAL_EXPIRED;
    return (enum pg_approval_status)r->stored_status;
}

static void appr_encode(struct enc *e, const struct appr *r)
{
    const struct pg_approval *a = &r->a;
    enc_u8(e, LEDGER_REC_V1);
    enc_u8(e, r->stored_status);
    enc_u8(e, (uint8_t)a->op);
    enc_u8(e, a->has_amount);
    enc_bytes(e, a->currency, 3);
    enc_i64(e, a->created_at);
    enc_i64(e, a->expires_at);
    enc_i64(e, a->decided_at);
    enc_i64(e, a->amount);
    enc_i64(e, r->limit);
    enc_bytes(e, r->fingerprint, PG_SHA256_LEN);
    enc_str(e, a->org);
    enc_str(e, a->agent);
    enc_str(e, a->idem_key);
    enc_str(e, r->route);
    enc_str(e, a->counterparty);
    enc_str(e, a->reason);
    enc_str(e, a->decided_by);
    enc_str(e, a->note);
}

static bool appr_decode(const void *key, size_t kn, const MDB_val *v, struct appr *r)
{
    struct pg_approval *a = &r->a;
    struct dec d = { v->mv_data, v->mv_size, 0, false };
    memset(r, 0, sizeof(*r));
    if (kn >= sizeof(a->id))
        return false;
    memcpy(a->id, key, kn);
    if (dec_u8(&d) != LEDGER_REC_V1)
        return false;
    r->stored_status = dec_u8(&d);
    a->op = (enum pg_op)dec_u8(&d);
    a->has_amount = dec_u8(&d) != 0;
    dec_bytes(&d, a->currency, 3);
    a->created_at = dec_i64(&d);
    a->expires_at = dec_i64(&d);
    a->decided_at = dec_i64(&d);
    a->amount = dec_i64(&d);
    r->limit = dec_i64(&d);
    dec_bytes(&d, r->fingerprint, PG_SHA256_LEN);
    dec_str(&d, a->org, sizeof(a->org));
    dec_str(&d, a->agent, sizeof(a->agent));
    dec_str(&d, a->idem_key, sizeof(a->idem_key));
    dec_str(&d, r->route, sizeof(r->route));
    dec_str(&d, a->counterparty, sizeof(a->counterparty));
    dec_str(&d, a->reason, sizeof(a->reason));
    dec_str(&d, a->decided_by, sizeof(a->decided_by));
    dec_str(&d, a->note, sizeof(a->note));
    a->route = r->route;
    a->status = (enum pg_approval_status)r->stored_status;
    return !d.bad && r->stored_status <= PG_APPROVAL_USED;
}

int appr_get(struct ltx *t, const char *id, struct appr *r)
{
    MDB_val v;
    size_t n = strnlen(id, PG_ID_MAX + 1);
    if (n == 0 || n > PG_ID_MAX)
        return PG_ENOTFOUND;
    int rc = ltx_get(t, DB_APPROVALS, id, n, &v);
    if (rc != 0)
        return rc;
    return appr_decode(id, n, &v, r) ? 0 : ltx_fail(t, MDB_CORRUPTED);
}

static int appr_write(struct ltx *t, const struct appr *r, unsigned flags)
{
    uint8_t buf[2048];
    struct enc e = { buf, sizeof(buf), 0 };
    appr_encode(&e, r);
    if (e.len > sizeof(buf))
        return PG_ETOOBIG; /* cannot happen: every field is bounded */
    MDB_val key = { strlen(r->a.id), (void *)(uintptr_t)r->a.id };
    MDB_val val = { e.len, buf };
    int rc = mdb_put(t->txn, t->l->db[DB_APPROVALS], &key, &val, flags);
    if (rc == MDB_KEYEXIST)
        return PG_EBUSY;
    return rc ? ltx_fail(t, rc) : 0;
}

int appr_put(struct ltx *t, const struct appr *r)
{
    return appr_write(t, r, 0);
}

/* "apr_" + 16 base62 characters, unbiased (bytes >= 248 are drawn again). */
static int new_id(char out[PG_ID_MAX + 1])
{
    uint8_t raw[32];
    size_t n = 0;
    memcpy(out, "apr_", 4);
    while (n < 16) {
        if (pg_random(raw, sizeof(raw)) != 0)
            return PG_ECRYPTO;
        for (size_t i = 0; i < sizeof(raw) && n < 16; i++)
            if (raw[i] < 248)
                out[4 + n++] = base62[raw[i] % 62];
    }
    out[20] = '\0';
    return 0;
}

int appr_create(struct ltx *t, const struct pg_ledger_req *req, const char *currency,
                struct appr *r)
{
    struct pg_approval *a = &r->a;
    memset(r, 0, sizeof(*r));
    r->stored_status = PG_APPROVAL_PENDING;
    memcpy(r->fingerprint, req->fingerprint, PG_SHA256_LEN);
    r->limit = req->decision.limit;
    snprintf(r->route, sizeof(r->route), "%s", req->route ? req->route : "");
    a->route = r->route;
    memcpy(a->org, req->org, sizeof(a->org));
    memcpy(a->agent, req->agent, sizeof(a->agent));
    memcpy(a->idem_key, req->idem_key, sizeof(a->idem_key));
    a->status = PG_APPROVAL_PENDING;
    a->created_at = req->now;
    a->expires_at = sat_add(req->now, (int64_t)t->l->approval_ttl_s);
    a->op = req->op;
    a->has_amount = req->has_amount;
    a->amount = req->amount;
    snprintf(a->currency, sizeof(a->currency), "%s", currency);
    audit_mask_digits(req->counterparty, a->counterparty, sizeof(a->counterparty));
    snprintf(a->reason, sizeof(a->reason), "%s",
             req->decision.reason ? req->decision.reason : "approval_required");
    for (int tries = 0;; tries++) {
        int rc = new_id(a->id);
        if (rc != 0)
            return rc;
        rc = appr_write(t, r, MDB_NOOVERWRITE);
        if (rc != PG_EBUSY || tries >= 4)
            return rc == PG_EBUSY ? ltx_fail(t, MDB_KEYEXIST) : rc;
    }
}

/* --- the human side: list, get, decide ------------------------------------------ */

static int by_creation(const void *x, const void *y)
{
    const struct appr *a = x, *b = y;
    if (a->a.created_at != b->a.created_at)
        return a->a.created_at < b->a.created_at ? -1 : 1;
    return strcmp(a->a.id, b->a.id);
}

/* What a caller sees: the lazy status, and a route that outlives the txn. */
static void publish(struct pg_ledger *l, struct appr *r, int64_t now)
{
    r->a.status = appr_status(r, now);
    r->a.route = ledger_intern(l, r->route);
}

int pg_ledger_approvals(struct pg_ledger *l, const char *org, bool only_pending, int64_t now,
                        int (*cb)(void *arg, const struct pg_approval *a), void *arg)
{
    struct ltx t;
    MDB_cursor *c;
    struct appr *list = NULL;
    size_t n = 0, cap = 0;
    int rc = ltx_begin(l, false, &t);
    if (rc != 0)
        return rc;
    if ((rc = ltx_cursor(&t, DB_APPROVALS, &c)) != 0) {
        ltx_abort(&t);
        return rc;
    }
    MDB_val key, val;
    int mrc;
    /* Keys are random ids: collect, then sort by creation. */
    for (mrc = mdb_cursor_get(c, &key, &val, MDB_FIRST); mrc == 0;
         mrc = mdb_cursor_get(c, &key, &val, MDB_NEXT)) {
        struct appr r;
        if (!appr_decode(key.mv_data, key.mv_size, &val, &r))
            continue;
        if (org && strcmp(org, r.a.org) != 0)
            continue;
        if (only_pending && appr_status(&r, now) != PG_APPROVAL_PENDING)
            continue;
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            struct appr *grown = realloc(list, ncap * sizeof(*list));
            if (!grown) {
                rc = PG_ENOMEM;
                break;
            }
            list = grown;
            cap = ncap;
        }
        list[n++] = r;
    }
    mdb_cursor_close(c);
    if (rc == 0 && mrc != MDB_NOTFOUND)
        rc = ltx_fail(&t, mrc);
    ltx_abort(&t);
    if (rc == 0) {
        if (n)
            qsort(list, n, sizeof(*list), by_creation);
        for (size_t i = 0; i < n; i++) {
            publish(l, &list[i], now);
            if (cb(arg, &list[i].a) != 0)
                break;
        }
    }
    free(list);
    return rc;
}

int pg_ledger_approval_get(struct pg_ledger *l, const char *id, int64_t now,
                           struct pg_approval *out)
{
    struct ltx t;
    struct appr r;
    if (!id)
        return PG_ENOTFOUND;
    int rc = ltx_begin(l, false, &t);
    if (rc != 0)
        return rc;
    rc = appr_get(&t, id, &r);
    ltx_abort(&t);
    if (rc != 0)
        return rc;
    publish(l, &r, now);
    *out = r.a;
    return 0;
}

struct decide_args {
    const char *id, *actor, *note;
    bool approve;
    int64_t now;
};

static int decide_fn(struct ltx *t, void *arg)
{
    struct decide_args *d = arg;
    struct appr r;
    int rc = appr_get(t, d->id, &r);
    if (rc != 0)
        return rc;
    if (appr_status(&r, d->now) != PG_APPROVAL_PENDING)
        return PG_EBUSY;
    r.stored_status = d->approve ? PG_APPROVAL_APPROVED : PG_APPROVAL_DENIED;
    r.a.decided_at = d->now;
    snprintf(r.a.decided_by, sizeof(r.a.decided_by), "%s", d->actor);
    snprintf(r.a.note, sizeof(r.a.note), "%s", d->note ? d->note : "");
    if ((rc = appr_put(t, &r)) != 0 ||
        (rc = ledger_event_approval(t, PG_EVENT_APPROVAL_DECIDED, &r, d->now)) != 0)
        return rc;
    struct audit_entry e = {
        .time = d->now,
        .org = r.a.org,
        .agent = r.a.agent,
        .actor = d->actor,
        .action = d->approve ? "approve" : "deny_approval",
        .route = r.route,
        .fingerprint = r.fingerprint,
        .has_amount = r.a.has_amount,
        .amount = r.a.amount,
        .currency = r.a.currency,
        .counterparty = r.a.counterparty,
        .decision = d->approve ? "allow" : "deny",
        .reason = r.a.reason,
        .approval = r.a.id,
        .note = r.a.note,
    };
    return audit_append(t, &e);
}

int pg_ledger_approval_decide(struct pg_ledger *l, const char *id, bool approve, const char *actor,
                              const char *note, int64_t now)
{
    /* Approvals are for humans: an agent must never approve its own hold. */
    if (!actor || !actor[0] || strncmp(actor, "agent:", 6) == 0)
        return PG_EAUTH;
    if (!id || !id[0])
        return PG_ENOTFOUND;
    struct decide_args d = { id, actor, note, approve, now };
    return ledger_write(l, decide_fn, &d, NULL);
}
