/* The webhook outbox: events written in the same transaction as their
 * cause (one append at the end of the outbox tree, and nothing at all when
 * no webhook wants the event), fanned out by the notifier into per-endpoint
 * deliveries kept by due time, and every attempt recorded and audited.
 * The layout is described in ledger.h above enum pg_event. */
#include "common/pg.h"
#include "ledger/ledger_int.h"
#include "ledger/outbox_int.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

#define OUTBOX_PAYLOAD_MAX (64u << 10)
#define KEEP_THRESHOLD_MARKS_S (40 * LEDGER_DAY_S)

static const char *const event_names[PG_EVENT_COUNT] = {
    [PG_EVENT_APPROVAL_REQUESTED] = "approval.requested",
    [PG_EVENT_APPROVAL_DECIDED] = "approval.decided",
    [PG_EVENT_APPROVAL_EXPIRED] = "approval.expired",
    [PG_EVENT_BUDGET_THRESHOLD] = "budget.threshold",
    [PG_EVENT_PAYMENT_DENIED] = "payment.denied",
    [PG_EVENT_AGENT_REVOKED] = "agent.revoked",
    [PG_EVENT_AUDIT_VERIFY_FAILED] = "audit.verify_failed",
};

const char *pg_event_name(enum pg_event e)
{
    return (unsigned)e < PG_EVENT_COUNT ? event_names[e] : NULL;
}

int pg_event_from_name(const char *s)
{
    for (int i = 0; s && i < PG_EVENT_COUNT; i++)
        if (strcmp(s, event_names[i]) == 0)
            return i;
    return -1;
}

/* --- settings ------------------------------------------------------------------ */

#define SETTINGS_KEY "s"

void pg_ledger_outbox_set(struct pg_ledger *l, uint32_t mask, const uint16_t *permille, size_t n)
{
    struct outbox_settings *s = &l->outbox;
    if (n > PG_OUTBOX_MAX_THRESHOLDS)
        n = PG_OUTBOX_MAX_THRESHOLDS;
    /* Thresholds first, then the count and the mask: a reader that sees
     * the new mask sees thresholds that go with it (seq_cst atomics). */
    for (size_t i = 0; i < n; i++)
        atomic_store(&s->permille[i], permille[i]);
    atomic_store(&s->npermille, (unsigned)n);
    atomic_store(&s->mask, mask & ((1u << PG_EVENT_COUNT) - 1));
    atomic_store(&s->loaded, true);
}

static int save_fn(struct ltx *t, void *arg)
{
    (void)arg;
    struct outbox_settings *s = &t->l->outbox;
    uint8_t buf[8 + 2 * PG_OUTBOX_MAX_THRESHOLDS];
    struct enc e = { buf, sizeof(buf), 0 };
    unsigned n = atomic_load(&s->npermille);
    enc_u8(&e, LEDGER_REC_V1);
    enc_u32(&e, atomic_load(&s->mask));
    enc_u8(&e, (uint8_t)n);
    for (unsigned i = 0; i < n && i < PG_OUTBOX_MAX_THRESHOLDS; i++) {
        unsigned p = atomic_load(&s->permille[i]);
        enc_bytes(&e, (uint8_t[2]){ (uint8_t)p, (uint8_t)(p >> 8) }, 2);
    }
    return ltx_put(t, DB_NOTIFY, SETTINGS_KEY, 1, buf, e.len);
}

int pg_ledger_outbox_save(struct pg_ledger *l)
{
    if (l->read_only)
        return PG_EBUSY;
    return ledger_write(l, save_fn, NULL, NULL);
}

/* The event bit, loading the settings another process saved when this one
 * never set them. */
static int wanted(struct ltx *t, enum pg_event ev, bool *yes)
{
    struct outbox_settings *s = &t->l->outbox;
    if (!atomic_load(&s->loaded)) {
        MDB_val v;
        uint32_t mask = 0;
        uint16_t p[PG_OUTBOX_MAX_THRESHOLDS];
        size_t n = 0;
        int rc = ltx_get(t, DB_NOTIFY, SETTINGS_KEY, 1, &v);
        if (rc == 0) {
            struct dec d = { v.mv_data, v.mv_size, 0, false };
            if (dec_u8(&d) != LEDGER_REC_V1)
                d.bad = true;
            mask = dec_u32(&d);
            n = dec_u8(&d);
            for (size_t i = 0; i < n && i < PG_OUTBOX_MAX_THRESHOLDS; i++) {
                const uint8_t *b = dec_take(&d, 2);
                p[i] = b ? (uint16_t)((unsigned)b[0] | (unsigned)b[1] << 8) : 0;
            }
            if (d.bad || n > PG_OUTBOX_MAX_THRESHOLDS)
                return ltx_fail(t, MDB_CORRUPTED);
        } else if (rc != PG_ENOTFOUND) {
            return rc;
        }
        pg_ledger_outbox_set(t->l, mask, p, n);
    }
    *yes = (atomic_load(&s->mask) >> ev) & 1u;
    return 0;
}

/* --- writing an event ------------------------------------------------------------ */

static void set_str(json_t *o, const char *k, const char *v)
{
    if (v && v[0])
        json_object_set_new(o, k, json_string(v));
}

static void set_time(json_t *o, const char *k, int64_t t)
{
    char when[21];
    audit_time(t, when);
    json_object_set_new(o, k, json_string(when));
}

/* "msg_" and 22 base62 characters of 128 random bits. */
static int new_msg_id(char out[48])
{
    uint8_t raw[16];
    memcpy(out, "msg_", 4);
    if (pg_random(raw, sizeof(raw)) != 0 || pg_base62_encode(raw, sizeof(raw), out + 4, 44) < 0)
        return PG_ECRYPTO;
    return 0;
}

/* Appends one event; takes `data` (a JSON object) whatever happens. `arg`
 * is the threshold in permille for budget.threshold, else 0. */
static int event_add(struct ltx *t, enum pg_event ev, const char *org, int64_t now, uint16_t arg,
                     json_t *data)
{
    json_t *root = json_object();
    char *body = NULL;
    int rc = PG_ENOMEM;
    if (!root || !data) {
        json_decref(data);
        goto out;
    }
    json_object_set_new(root, "type", json_string(event_names[ev]));
    set_time(root, "timestamp", now);
    json_object_set_new(root, "data", data);
    body = json_dumps(root, JSON_COMPACT | JSON_ENSURE_ASCII);
    if (!body)
        goto out;
    size_t bn = strlen(body);
    if (bn > OUTBOX_PAYLOAD_MAX) {
        rc = PG_ETOOBIG;
        goto out;
    }
    char msg[48];
    if ((rc = new_msg_id(msg)) != 0)
        goto out;

    /* The id after the last one: an append at the end of the tree. Ids may
     * be used again once the outbox has drained; nothing outside it keeps
     * them (deliveries are named by the message id). */
    MDB_cursor *c;
    if ((rc = ltx_cursor(t, DB_OUTBOX, &c)) != 0)
        goto out;
    MDB_val k, v;
    int mrc = mdb_cursor_get(c, &k, &v, MDB_LAST);
    uint64_t id = 1;
    if (mrc == 0 && k.mv_size == 8)
        id = be64_get(k.mv_data) + 1;
    mdb_cursor_close(c);
    if (mrc != 0 && mrc != MDB_NOTFOUND) {
        rc = ltx_fail(t, mrc);
        goto out;
    }
    struct enc e = { NULL, 0, 0 };
    enc_u8(&e, LEDGER_REC_V1);
    enc_u8(&e, (uint8_t)ev);
    enc_bytes(&e, (uint8_t[2]){ (uint8_t)arg, (uint8_t)(arg >> 8) }, 2);
    enc_i64(&e, now);
    enc_str(&e, msg);
    enc_str(&e, org);
    enc_u32(&e, (uint32_t)bn);
    enc_bytes(&e, body, bn);
    uint8_t key[8];
    be64_put(key, id);
    void *dst;
    if ((rc = ltx_reserve(t, DB_OUTBOX, key, sizeof(key), e.len, true, &dst)) != 0)
        goto out;
    e.p = dst;
    e.cap = e.len;
    e.len = 0;
    enc_u8(&e, LEDGER_REC_V1);
    enc_u8(&e, (uint8_t)ev);
    enc_bytes(&e, (uint8_t[2]){ (uint8_t)arg, (uint8_t)(arg >> 8) }, 2);
    enc_i64(&e, now);
    enc_str(&e, msg);
    enc_str(&e, org);
    enc_u32(&e, (uint32_t)bn);
    enc_bytes(&e, body, bn);
    rc = 0;
out:
    free(body);
    json_decref(root);
    return rc;
}

static void set_amount(json_t *o, bool has, int64_t amount, const char *currency)
{
    if (has)
        json_object_set_new(o, "amount", json_integer(amount));
    set_str(o, "currency", currency);
}

/* Free text and counterparties: digit runs as long as a card number keep
 * their last four only, as in the audit log. */
static void set_masked(json_t *o, const char *k, const char *v)
{
    char masked[512];
    if (!v || !v[0])
        return;
    audit_mask_digits(v, masked, sizeof(masked));
    set_str(o, k, masked);
}

static void set_counterparty(json_t *o, const char *cp)
{
    set_masked(o, "counterparty", cp);
}

int ledger_event_approval(struct ltx *t, enum pg_event ev, const struct appr *r, int64_t now)
{
    bool yes;
    int rc = wanted(t, ev, &yes);
    if (rc != 0 || !yes)
        return rc;
    const struct pg_approval *a = &r->a;
    json_t *d = json_object();
    if (d) {
        set_str(d, "approval_id", a->id);
        set_str(d, "org", a->org);
        set_str(d, "agent", a->agent);
        set_str(d, "operation", pg_op_name(a->op));
        set_str(d, "route", r->route);
        set_amount(d, a->has_amount, a->amount, a->currency);
        set_counterparty(d, a->counterparty);
        set_str(d, "reason", a->reason);
        set_time(d, "created_at", a->created_at);
        set_time(d, "expires_at", a->expires_at);
        if (ev == PG_EVENT_APPROVAL_DECIDED) {
            set_str(d, "decision", r->stored_status == PG_APPROVAL_APPROVED ? "approved" : "denied");
            set_str(d, "decided_by", a->decided_by);
            set_masked(d, "note", a->note);
            set_time(d, "decided_at", a->decided_at);
        }
    }
    return event_add(t, ev, a->org, now, 0, d);
}

int ledger_event_denied(struct ltx *t, const struct pg_ledger_req *req, const char *currency)
{
    if (req->decision.verdict != PG_VERDICT_DENY)
        return 0;
    bool yes;
    int rc = wanted(t, PG_EVENT_PAYMENT_DENIED, &yes);
    if (rc != 0 || !yes)
        return rc;
    const struct pg_decision *dc = &req->decision;
    json_t *d = json_object();
    if (d) {
        set_str(d, "org", req->org);
        set_str(d, "agent", req->agent);
        set_str(d, "operation", pg_op_name(req->op));
        set_str(d, "route", req->route);
        set_amount(d, req->has_amount, req->amount,
                   currency && currency[0] ? currency : req->currency);
        set_counterparty(d, req->counterparty);
        set_str(d, "reason", dc->reason);
        if (dc->limit_name) {
            set_str(d, "limit", dc->limit_name);
            json_object_set_new(d, "limit_amount", json_integer(dc->limit));
        }
        set_str(d, "approval_id", req->approval_id);
    }
    return event_add(t, PG_EVENT_PAYMENT_DENIED, req->org, req->now, 0, d);
}

/* 't' agent \0 currency(3) window(1) start(8) permille(2) */
static size_t threshold_key(uint8_t *k, size_t cap, const char *agent, const char *cur,
                            uint8_t window, int64_t start, uint16_t permille)
{
    size_t an = strnlen(agent, PG_ID_MAX);
    if (1 + an + 1 + 3 + 1 + 8 + 2 > cap)
        return 0;
    size_t o = 0;
    k[o++] = 't';
    memcpy(k + o, agent, an);
    o += an;
    k[o++] = 0;
    memset(k + o, 0, 3);
    memcpy(k + o, cur, strnlen(cur, 3));
    o += 3;
    k[o++] = window;
    time_put(k + o, start);
    o += 8;
    k[o++] = (uint8_t)(permille >> 8);
    k[o++] = (uint8_t)permille;
    return o;
}

/* floor(limit * permille / 1000) without overflow. */
static int64_t fraction_of(int64_t limit, unsigned permille)
{
    return limit / 1000 * (int64_t)permille + limit % 1000 * (int64_t)permille / 1000;
}

int ledger_event_spend(struct ltx *t, const struct pg_ledger_req *req, const char *currency,
                       const struct pg_spend *before, int64_t added)
{
    if (req->status != 0 || req->result != PG_BEGIN_PROCEED || !req->policy || added <= 0)
        return 0;
    bool yes;
    int rc = wanted(t, PG_EVENT_BUDGET_THRESHOLD, &yes);
    if (rc != 0 || !yes)
        return rc;
    static const char *const wname[3] = { "day", "week", "month" };
    static const enum pg_limit_kind kinds[3] = { PG_LIMIT_DAILY, PG_LIMIT_WEEKLY, PG_LIMIT_MONTHLY };
    const int64_t spent[3] = { before->day, before->week, before->month };
    const int64_t start[3] = { req->windows.day_start, req->windows.week_start,
                               req->windows.month_start };
    const int64_t end[3] = { req->windows.day_end, req->windows.week_end, req->windows.month_end };
    struct outbox_settings *s = &t->l->outbox;
    unsigned n = atomic_load(&s->npermille);
    for (int w = 0; w < 3; w++) {
        int64_t limit;
        if (pg_policy_limit(req->policy, kinds[w], currency, &limit) != 0 || limit <= 0)
            continue;
        int64_t after = sat_add(spent[w], added);
        for (unsigned i = 0; i < n && i < PG_OUTBOX_MAX_THRESHOLDS; i++) {
            unsigned p = atomic_load(&s->permille[i]);
            int64_t at = fraction_of(limit, p);
            if (p == 0 || at <= 0 || spent[w] >= at || after < at)
                continue;
            uint8_t k[96];
            size_t kn = threshold_key(k, sizeof(k), req->agent, currency, (uint8_t)w, start[w],
                                      (uint16_t)p);
            MDB_val v;
            if (!kn)
                continue;
            rc = ltx_get(t, DB_NOTIFY, k, kn, &v);
            if (rc == 0)
                continue; /* announced already in this window */
            if (rc != PG_ENOTFOUND || (rc = ltx_put(t, DB_NOTIFY, k, kn, "", 0)) != 0)
                return rc;
            json_t *d = json_object();
            if (d) {
                char pct[16];
                snprintf(pct, sizeof(pct), "%u.%03u", p / 1000, p % 1000);
                set_str(d, "org", req->org);
                set_str(d, "agent", req->agent);
                set_str(d, "window", wname[w]);
                set_time(d, "window_start", start[w]);
                set_time(d, "window_end", end[w]);
                json_object_set_new(d, "threshold", json_real((double)p / 1000.0));
                json_object_set_new(d, "limit", json_integer(limit));
                json_object_set_new(d, "spent", json_integer(after));
                set_str(d, "currency", currency);
            }
            if ((rc = event_add(t, PG_EVENT_BUDGET_THRESHOLD, req->org, req->now, (uint16_t)p, d)) !=
                0)
                return rc;
        }
    }
    return 0;
}

int ledger_event_revoked(struct ltx *t, const char *org, const char *agent, const char *actor,
                         const char *reason, int64_t now)
{
    bool yes;
    int rc = wanted(t, PG_EVENT_AGENT_REVOKED, &yes);
    if (rc != 0 || !yes)
        return rc;
    json_t *d = json_object();
    if (d) {
        set_str(d, "org", org);
        set_str(d, "agent", agent);
        set_str(d, "revoked_by", actor);
        set_masked(d, "reason", reason);
        set_time(d, "revoked_at", now);
    }
    return event_add(t, PG_EVENT_AGENT_REVOKED, org, now, 0, d);
}

struct verify_args {
    const struct pg_audit_report *r;
    int64_t now;
};

static int verify_fn(struct ltx *t, void *arg)
{
    struct verify_args *a = arg;
    bool yes;
    int rc = wanted(t, PG_EVENT_AUDIT_VERIFY_FAILED, &yes);
    if (rc != 0 || !yes)
        return rc;
    json_t *d = json_object();
    if (d) {
        set_str(d, "org", a->r->org);
        json_object_set_new(d, "bad_seq", json_integer((json_int_t)a->r->bad_seq));
        json_object_set_new(d, "entries_checked", json_integer((json_int_t)a->r->count));
        set_str(d, "why", a->r->why);
    }
    return event_add(t, PG_EVENT_AUDIT_VERIFY_FAILED, a->r->org, a->now, 0, d);
}

int pg_ledger_audit_verify_failed(struct pg_ledger *l, const struct pg_audit_report *r, int64_t now)
{
    if (!r || r->ok || !r->org[0])
        return 0;
    if (l->read_only)
        return PG_EBUSY;
    struct verify_args a = { r, now };
    return ledger_write(l, verify_fn, &a, NULL);
}

/* --- fan-out -------------------------------------------------------------------- */

struct event_rec {
    uint8_t type;
    uint16_t arg;
    int64_t time;
    char msg[48];
    char org[PG_ID_MAX + 1];
    const uint8_t *payload;
    uint32_t payload_len;
};

static bool event_decode(const MDB_val *v, struct event_rec *r)
{
    struct dec d = { v->mv_data, v->mv_size, 0, false };
    if (dec_u8(&d) != LEDGER_REC_V1)
        return false;
    r->type = dec_u8(&d);
    const uint8_t *a = dec_take(&d, 2);
    r->arg = a ? (uint16_t)((unsigned)a[0] | (unsigned)a[1] << 8) : 0;
    r->time = dec_i64(&d);
    dec_str(&d, r->msg, sizeof(r->msg));
    dec_str(&d, r->org, sizeof(r->org));
    r->payload_len = dec_u32(&d);
    r->payload = dec_take(&d, r->payload_len);
    return !d.bad && r->type < PG_EVENT_COUNT;
}

/* due(8) ‖ message id ‖ endpoint id */
static size_t delivery_key(uint8_t *k, int64_t due, const char *msg, const uint8_t *ep)
{
    size_t mn = strnlen(msg, 47);
    time_put(k, due);
    memcpy(k + 8, msg, mn);
    memcpy(k + 8 + mn, ep, PG_ENDPOINT_ID_LEN);
    return 8 + mn + PG_ENDPOINT_ID_LEN;
}

/* Delivery record: v1, attempts u32, created i64, type, org, msg, endpoint,
 * payload. */
static void delivery_encode(struct enc *e, uint32_t attempts, const struct event_rec *r,
                            const uint8_t *ep)
{
    enc_u8(e, LEDGER_REC_V1);
    enc_u32(e, attempts);
    enc_i64(e, r->time);
    enc_str(e, event_names[r->type]);
    enc_str(e, r->org);
    enc_str(e, r->msg);
    enc_bytes(e, ep, PG_ENDPOINT_ID_LEN);
    enc_u32(e, r->payload_len);
    enc_bytes(e, r->payload, r->payload_len);
}

static int put_delivery(struct ltx *t, int64_t due, uint32_t attempts, const struct event_rec *r,
                        const uint8_t *ep)
{
    uint8_t k[8 + 48 + PG_ENDPOINT_ID_LEN];
    size_t kn = delivery_key(k, due, r->msg, ep);
    struct enc e = { NULL, 0, 0 };
    delivery_encode(&e, attempts, r, ep);
    void *dst;
    int rc = ltx_reserve(t, DB_DELIVERIES, k, kn, e.len, false, &dst);
    if (rc != 0)
        return rc;
    e.p = dst;
    e.cap = e.len;
    e.len = 0;
    delivery_encode(&e, attempts, r, ep);
    return 0;
}

static int disabled_in(struct ltx *t, const uint8_t *ep, int64_t *at)
{
    uint8_t k[1 + PG_ENDPOINT_ID_LEN];
    MDB_val v;
    k[0] = 'e';
    memcpy(k + 1, ep, PG_ENDPOINT_ID_LEN);
    int rc = ltx_get(t, DB_NOTIFY, k, sizeof(k), &v);
    if (rc == 0 && at) {
        struct dec d = { v.mv_data, v.mv_size, 0, false };
        *at = dec_u8(&d) == LEDGER_REC_V1 ? dec_i64(&d) : 0;
    }
    return rc == 0 ? 1 : rc == PG_ENOTFOUND ? 0 : rc;
}

static bool endpoint_wants(const struct pg_outbox_endpoint *ep, const struct event_rec *r)
{
    if (!((ep->mask >> r->type) & 1u))
        return false;
    if (r->type != PG_EVENT_BUDGET_THRESHOLD)
        return true;
    for (size_t i = 0; i < ep->npermille; i++)
        if (ep->permille[i] == r->arg)
            return true;
    return false;
}

struct fanout_args {
    const struct pg_outbox_endpoint *eps;
    size_t n, max, moved;
};

static int fanout_fn(struct ltx *t, void *arg)
{
    struct fanout_args *a = arg;
    a->moved = 0;
    MDB_cursor *c;
    int rc = ltx_cursor(t, DB_OUTBOX, &c);
    if (rc != 0)
        return rc;
    MDB_val k, v;
    int mrc = mdb_cursor_get(c, &k, &v, MDB_FIRST);
    while (mrc == 0 && a->moved < a->max) {
        struct event_rec r;
        if (event_decode(&v, &r)) {
            /* A value read in a write transaction lasts until the next
             * write: copy the payload out first. */
            uint8_t *copy = malloc(r.payload_len ? r.payload_len : 1);
            if (!copy) {
                rc = PG_ENOMEM;
                break;
            }
            memcpy(copy, r.payload, r.payload_len);
            r.payload = copy;
            for (size_t i = 0; i < a->n && rc == 0; i++) {
                if (!endpoint_wants(&a->eps[i], &r))
                    continue;
                int dis = disabled_in(t, a->eps[i].id, NULL);
                if (dis < 0)
                    rc = dis;
                else if (!dis)
                    rc = put_delivery(t, r.time, 0, &r, a->eps[i].id);
            }
            free(copy);
            if (rc != 0)
                break;
        }
        if ((mrc = mdb_cursor_del(c, 0)) != 0)
            break;
        a->moved++;
        mrc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(c);
    if (rc == 0 && mrc != 0 && mrc != MDB_NOTFOUND)
        rc = ltx_fail(t, mrc);
    return rc;
}

int pg_ledger_outbox_fanout(struct pg_ledger *l, const struct pg_outbox_endpoint *eps, size_t n,
                            size_t max, size_t *moved)
{
    struct fanout_args a = { eps, n, max ? max : 256, 0 };
    if (moved)
        *moved = 0;
    /* Most calls find the outbox empty: look before taking the write lock. */
    struct ltx t;
    int rc = ltx_begin(l, false, &t);
    if (rc != 0)
        return rc;
    MDB_cursor *c;
    MDB_val k, v;
    int mrc = MDB_NOTFOUND;
    if ((rc = ltx_cursor(&t, DB_OUTBOX, &c)) == 0) {
        mrc = mdb_cursor_get(c, &k, &v, MDB_FIRST);
        mdb_cursor_close(c);
    }
    ltx_abort(&t);
    if (rc != 0 || mrc == MDB_NOTFOUND)
        return rc;
    rc = ledger_write(l, fanout_fn, &a, NULL);
    if (rc == 0 && moved)
        *moved = a.moved;
    return rc;
}

/* --- deliveries ------------------------------------------------------------------- */

void pg_delivery_free(struct pg_delivery *d)
{
    if (!d)
        return;
    free(d->payload);
    d->payload = NULL;
    d->payload_len = 0;
}

static bool delivery_decode(const MDB_val *k, const MDB_val *v, struct pg_delivery *d)
{
    memset(d, 0, sizeof(*d));
    if (k->mv_size < 8 + PG_ENDPOINT_ID_LEN || k->mv_size > sizeof(d->key))
        return false;
    memcpy(d->key, k->mv_data, k->mv_size);
    d->key_len = k->mv_size;
    d->due = time_get(k->mv_data);
    struct dec dc = { v->mv_data, v->mv_size, 0, false };
    if (dec_u8(&dc) != LEDGER_REC_V1)
        return false;
    d->attempts = dec_u32(&dc);
    d->created_at = dec_i64(&dc);
    dec_str(&dc, d->type, sizeof(d->type));
    dec_str(&dc, d->org, sizeof(d->org));
    dec_str(&dc, d->msg_id, sizeof(d->msg_id));
    dec_bytes(&dc, d->endpoint, PG_ENDPOINT_ID_LEN);
    uint32_t pn = dec_u32(&dc);
    const uint8_t *p = dec_take(&dc, pn);
    if (dc.bad || !p)
        return false;
    d->payload = malloc((size_t)pn + 1);
    if (!d->payload)
        return false;
    memcpy(d->payload, p, pn);
    d->payload[pn] = '\0';
    d->payload_len = pn;
    return true;
}

int pg_ledger_deliveries_due(struct pg_ledger *l, int64_t now, struct pg_delivery *out, size_t max,
                             size_t *n, int64_t *next_due)
{
    *n = 0;
    if (next_due)
        *next_due = INT64_MAX;
    struct ltx t;
    MDB_cursor *c;
    int rc = ltx_begin(l, false, &t);
    if (rc != 0)
        return rc;
    if ((rc = ltx_cursor(&t, DB_DELIVERIES, &c)) != 0) {
        ltx_abort(&t);
        return rc;
    }
    MDB_val k, v;
    int mrc;
    for (mrc = mdb_cursor_get(c, &k, &v, MDB_FIRST); mrc == 0;
         mrc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        if (k.mv_size < 8)
            continue;
        int64_t due = time_get(k.mv_data);
        if (due > now || *n >= max) {
            if (next_due)
                *next_due = due;
            break;
        }
        if (!delivery_decode(&k, &v, &out[*n])) {
            pg_delivery_free(&out[*n]);
            continue; /* unreadable: left for a later version to read */
        }
        (*n)++;
    }
    mdb_cursor_close(c);
    if (mrc != 0 && mrc != MDB_NOTFOUND)
        rc = ltx_fail(&t, mrc);
    ltx_abort(&t);
    return rc;
}

struct done_args {
    const struct pg_delivery *d;
    enum pg_delivery_result r;
    int64_t next_at, now;
    const char *reason;
};

static const char *result_name(enum pg_delivery_result r)
{
    switch (r) {
    case PG_DELIVERY_OK: return "delivered";
    case PG_DELIVERY_RETRY: return "retry";
    case PG_DELIVERY_GIVE_UP: return "given_up";
    case PG_DELIVERY_DISABLE: return "disabled";
    case PG_DELIVERY_DROP: return "dropped";
    }
    return "unknown";
}

static int done_fn(struct ltx *t, void *arg)
{
    struct done_args *a = arg;
    const struct pg_delivery *d = a->d;
    MDB_val v;
    int rc = ltx_get(t, DB_DELIVERIES, d->key, d->key_len, &v);
    if (rc == PG_ENOTFOUND)
        return 0;
    if (rc != 0)
        return rc;
    if (a->r == PG_DELIVERY_RETRY) {
        /* The same record under its new due time, one more attempt. */
        uint8_t stack[4096], *copy = stack;
        size_t vn = v.mv_size;
        if (vn < 5)
            return ltx_fail(t, MDB_CORRUPTED);
        if (vn > sizeof(stack) && !(copy = malloc(vn)))
            return PG_ENOMEM;
        memcpy(copy, v.mv_data, vn);
        uint32_t att = d->attempts + 1;
        for (int i = 0; i < 4; i++)
            copy[1 + i] = (uint8_t)(att >> (8 * i));
        uint8_t k[sizeof(d->key)];
        size_t kn = delivery_key(k, a->next_at, d->msg_id, d->endpoint);
        rc = ltx_del(t, DB_DELIVERIES, d->key, d->key_len);
        if (rc == 0)
            rc = ltx_put(t, DB_DELIVERIES, k, kn, copy, vn);
        if (copy != stack)
            free(copy);
    } else {
        rc = ltx_del(t, DB_DELIVERIES, d->key, d->key_len);
    }
    if (rc != 0)
        return rc;
    if (a->r == PG_DELIVERY_DISABLE) {
        uint8_t k[1 + PG_ENDPOINT_ID_LEN], rec[9];
        struct enc e = { rec, sizeof(rec), 0 };
        k[0] = 'e';
        memcpy(k + 1, d->endpoint, PG_ENDPOINT_ID_LEN);
        enc_u8(&e, LEDGER_REC_V1);
        enc_i64(&e, a->now);
        if ((rc = ltx_put(t, DB_NOTIFY, k, sizeof(k), rec, e.len)) != 0)
            return rc;
    }
    char ep[2 * PG_ENDPOINT_ID_LEN + 1], note[256];
    if (pg_hex_encode(d->endpoint, PG_ENDPOINT_ID_LEN, ep, sizeof(ep)) < 0)
        ep[0] = '\0';
    if (a->r == PG_DELIVERY_DROP)
        snprintf(note, sizeof(note), "%s %s to endpoint ep_%s: not attempted", d->type, d->msg_id, ep);
    else if (a->r == PG_DELIVERY_RETRY)
        snprintf(note, sizeof(note), "%s %s to endpoint ep_%s: attempt %u failed; next at %lld",
                 d->type, d->msg_id, ep, d->attempts + 1, (long long)a->next_at);
    else
        snprintf(note, sizeof(note), "%s %s to endpoint ep_%s: attempt %u", d->type, d->msg_id, ep,
                 d->attempts + 1);
    struct audit_entry en = {
        .time = a->now,
        .org = d->org,
        .actor = "payguard",
        .action = "webhook",
        .outcome = result_name(a->r),
        .reason = a->reason,
        .note = note,
    };
    return audit_append(t, &en);
}

int pg_ledger_delivery_done(struct pg_ledger *l, const struct pg_delivery *d,
                            enum pg_delivery_result r, int64_t next_at, const char *reason,
                            int64_t now)
{
    if (!d || !d->org[0])
        return PG_EPARSE;
    struct done_args a = { d, r, next_at, now, reason };
    return ledger_write(l, done_fn, &a, NULL);
}

int pg_ledger_endpoint_disabled(struct pg_ledger *l, const uint8_t id[PG_ENDPOINT_ID_LEN],
                                int64_t *at)
{
    struct ltx t;
    int rc = ltx_begin(l, false, &t);
    if (rc != 0)
        return rc;
    rc = disabled_in(&t, id, at);
    ltx_abort(&t);
    return rc;
}

struct enable_args {
    const uint8_t *id;
    const char *const *orgs;
    size_t norgs;
    const char *actor;
    int64_t now;
};

static int enable_fn(struct ltx *t, void *arg)
{
    struct enable_args *a = arg;
    int rc = disabled_in(t, a->id, NULL);
    if (rc <= 0)
        return rc == 0 ? PG_ENOTFOUND : rc;
    uint8_t k[1 + PG_ENDPOINT_ID_LEN];
    k[0] = 'e';
    memcpy(k + 1, a->id, PG_ENDPOINT_ID_LEN);
    if ((rc = ltx_del(t, DB_NOTIFY, k, sizeof(k))) != 0)
        return rc;
    char ep[2 * PG_ENDPOINT_ID_LEN + 1], note[64];
    if (pg_hex_encode(a->id, PG_ENDPOINT_ID_LEN, ep, sizeof(ep)) < 0)
        ep[0] = '\0';
    snprintf(note, sizeof(note), "endpoint ep_%s receives events again", ep);
    for (size_t i = 0; i < a->norgs && rc == 0; i++) {
        struct audit_entry en = {
            .time = a->now,
            .org = a->orgs[i],
            .actor = a->actor,
            .action = "webhook_enabled",
            .outcome = "enabled",
            .note = note,
        };
        rc = audit_append(t, &en);
    }
    return rc;
}

int pg_ledger_endpoint_enable(struct pg_ledger *l, const uint8_t id[PG_ENDPOINT_ID_LEN],
                              const char *const *orgs, size_t norgs, const char *actor,
                              int64_t now)
{
    struct enable_args a = { id, orgs, norgs, actor, now };
    return ledger_write(l, enable_fn, &a, NULL);
}

/* --- approval expiry and old marks --------------------------------------------------- */

struct sweep_args {
    int64_t now;
    size_t n;
};

/* Threshold marks of windows long gone, and expiry marks of approvals
 * pruned since. */
static int sweep_marks(struct ltx *t, int64_t now)
{
    MDB_cursor *c;
    int rc = ltx_cursor(t, DB_NOTIFY, &c);
    if (rc != 0)
        return rc;
    MDB_val k, v;
    int mrc = mdb_cursor_get(c, &k, &v, MDB_FIRST);
    size_t budget = 1000;
    while (mrc == 0 && budget-- > 0) {
        const uint8_t *p = k.mv_data;
        bool drop = false;
        if (k.mv_size > 11 && p[0] == 't') {
            drop = time_get(p + k.mv_size - 10) < sat_add(now, -KEEP_THRESHOLD_MARKS_S);
        } else if (k.mv_size > 1 && k.mv_size <= PG_ID_MAX + 1 && p[0] == 'x') {
            char id[PG_ID_MAX + 1];
            memcpy(id, p + 1, k.mv_size - 1);
            id[k.mv_size - 1] = '\0';
            MDB_val av;
            rc = ltx_get(t, DB_APPROVALS, id, k.mv_size - 1, &av);
            if (rc != 0 && rc != PG_ENOTFOUND)
                break;
            drop = rc == PG_ENOTFOUND;
            rc = 0;
        }
        if (drop && (mrc = mdb_cursor_del(c, 0)) != 0)
            break;
        mrc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(c);
    if (rc == 0 && mrc != 0 && mrc != MDB_NOTFOUND)
        rc = ltx_fail(t, mrc);
    return rc;
}

static int sweep_fn(struct ltx *t, void *arg)
{
    struct sweep_args *a = arg;
    a->n = 0;
    bool yes;
    int rc = wanted(t, PG_EVENT_APPROVAL_EXPIRED, &yes);
    if (rc != 0)
        return rc;
    MDB_cursor *c;
    if (yes) {
        if ((rc = ltx_cursor(t, DB_APPROVALS, &c)) != 0)
            return rc;
        MDB_val k, v;
        int mrc;
        for (mrc = mdb_cursor_get(c, &k, &v, MDB_FIRST); mrc == 0 && rc == 0;
             mrc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
            if (k.mv_size == 0 || k.mv_size > PG_ID_MAX)
                continue;
            char id[PG_ID_MAX + 1];
            memcpy(id, k.mv_data, k.mv_size);
            id[k.mv_size] = '\0';
            struct appr r;
            if ((rc = appr_get(t, id, &r)) != 0)
                break;
            if (appr_status(&r, a->now) != PG_APPROVAL_EXPIRED)
                continue;
            uint8_t mk[PG_ID_MAX + 2];
            mk[0] = 'x';
            memcpy(mk + 1, id, k.mv_size);
            MDB_val mv;
            rc = ltx_get(t, DB_NOTIFY, mk, k.mv_size + 1, &mv);
            if (rc == 0)
                continue;
            if (rc != PG_ENOTFOUND || (rc = ltx_put(t, DB_NOTIFY, mk, k.mv_size + 1, "", 0)) != 0)
                break;
            if ((rc = ledger_event_approval(t, PG_EVENT_APPROVAL_EXPIRED, &r, a->now)) != 0)
                break;
            a->n++;
        }
        mdb_cursor_close(c);
        if (rc == 0 && mrc != 0 && mrc != MDB_NOTFOUND)
            rc = ltx_fail(t, mrc);
        if (rc != 0)
            return rc;
    }
    return sweep_marks(t, a->now);
}

int pg_ledger_outbox_expire_sweep(struct pg_ledger *l, int64_t now, size_t *n)
{
    struct sweep_args a = { now, 0 };
    if (n)
        *n = 0;
    if (l->read_only)
        return PG_EBUSY;
    int rc = ledger_write(l, sweep_fn, &a, NULL);
    if (rc == 0 && n)
        *n = a.n;
    return rc;
}

int pg_ledger_endpoint_id(const char *url, uint8_t id[PG_ENDPOINT_ID_LEN])
{
    uint8_t h[PG_SHA256_LEN];
    if (pg_sha256(url, strlen(url), h) != 0)
        return PG_ECRYPTO;
    memcpy(id, h, PG_ENDPOINT_ID_LEN);
    return 0;
}
