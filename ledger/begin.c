/* BEGIN: before a money request is forwarded, inside the writer's batch
 * transaction. Idempotency first (replay, mismatch, in flight, unresolved,
 * held for a human), then the stateful policy rules on fresh spend, then
 * the reservation, velocity mark, idempotency record and audit entry — all
 * in the same transaction, so two requests never both pass a limit only one
 * of them fits. The contract is in ledger.h above enum pg_begin_result. */
#include "common/pg.h"
#include "ledger/ledger_int.h"
#include "ledger/outbox_int.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

/* Everything one BEGIN works out before it writes. */
struct begin {
    struct ltx *t;
    struct pg_ledger_req *req;
    uint8_t key[LEDGER_KEY_MAX];     /* idempotency key, kn 0 when none */
    size_t kn;
    char cur[4];                     /* currency spend counts in */
    struct appr *appr;               /* an APPROVED approval being used, or NULL */
    bool have_obj, obj_live;         /* the follow-up's object reservation */
    struct resv obj;
    int64_t grow;                    /* what a follow-up adds to it */
    uint64_t iid;                    /* the key's record id when it has one */
    int64_t added;                   /* what an allowed request added to the spend */
};

static bool is_follow_up(enum pg_action a)
{
    return a == PG_ACT_UPDATE || a == PG_ACT_CONFIRM || a == PG_ACT_CAPTURE ||
           a == PG_ACT_CANCEL || a == PG_ACT_INCREMENT;
}

static bool args_ok(const struct pg_ledger_req *req)
{
    const struct pg_windows *w = &req->windows;
    return req_who_ok(req) && req->agent[0] && req->policy && req->agent_cfg &&
           (unsigned)req->op < PG_OP_COUNT && (unsigned)req->action <= PG_ACT_INCREMENT &&
           (!req->has_amount || req->amount >= 0) && w->day_start < w->day_end &&
           w->week_start < w->week_end && w->month_start < w->month_end;
}

static void set_proceed(struct pg_ledger_req *req, const char *reason)
{
    req->result = PG_BEGIN_PROCEED;
    req->decision.verdict = PG_VERDICT_ALLOW;
    req->decision.status = 200;
    if (reason)
        req->decision.reason = reason;
}

/* An answer from the ledger itself (approval states), shaped like the
 * policy's so the proxy answers it the same way. */
__attribute__((format(printf, 5, 6))) static void set_decided(struct pg_ledger_req *req,
                                                              enum pg_verdict v, int status,
                                                              const char *reason,
                                                              const char *fmt, ...)
{
    struct pg_decision *d = &req->decision;
    memset(d, 0, sizeof(*d));
    d->verdict = v;
    d->status = status;
    d->reason = reason;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->message, sizeof(d->message), fmt, ap);
    va_end(ap);
    req->result = PG_BEGIN_DECIDED;
}

/* The audit entry of a BEGIN, filled from the request. */
static struct audit_entry entry_of(const struct begin *b, const char *action, char *actor,
                                   size_t actor_cap)
{
    const struct pg_ledger_req *req = b->req;
    actor_of(actor, actor_cap, req->agent);
    struct audit_entry e = {
        .time = req->now,
        .org = req->org,
        .agent = req->agent,
        .actor = actor,
        .action = action,
        .route = req->route,
        .fingerprint = req->fingerprint,
        .has_amount = req->has_amount,
        .amount = req->amount,
        .currency = b->cur,
        .counterparty = req->counterparty,
        .decision = pg_verdict_name(req->decision.verdict),
        .reason = req->decision.reason,
        .approval = req->approval_id,
    };
    return e;
}

static int audit_decision(const struct begin *b, const char *action, const char *note)
{
    char actor[PG_ID_MAX + 8];
    struct audit_entry e = entry_of(b, action, actor, sizeof(actor));
    e.note = note;
    e.reservation = b->req->reservation;
    return audit_append(b->t, &e);
}

/* --- the stateful check on fresh values ------------------------------------------- */

static int deny(struct begin *b)
{
    b->req->result = PG_BEGIN_DECIDED;
    int rc = ledger_event_denied(b->t, b->req, b->cur);
    return rc ? rc : audit_decision(b, "deny", NULL);
}

static int hold(struct begin *b)
{
    struct pg_ledger_req *req = b->req;
    struct appr a;
    int rc = appr_create(b->t, req, b->cur, &a);
    if (rc != 0)
        return rc;
    memcpy(req->approval_id, a.a.id, sizeof(req->approval_id));
    if (b->kn) {
        struct idem r;
        memset(&r, 0, sizeof(r));
        r.iid = b->iid; /* a key seen before is updated, not created again */
        r.state = IDEM_HELD;
        r.op = (uint8_t)req->op;
        r.action = (uint8_t)req->action;
        memcpy(r.currency, b->cur, sizeof(r.currency));
        r.created_at = r.updated_at = req->now;
        r.day_start = req->windows.day_start;
        memcpy(r.fingerprint, req->fingerprint, PG_SHA256_LEN);
        memcpy(r.approval_id, a.a.id, sizeof(r.approval_id));
        if ((rc = idem_put(b->t, b->key, b->kn, &r)) != 0)
            return rc;
    }
    req->result = PG_BEGIN_DECIDED;
    if ((rc = ledger_event_approval(b->t, PG_EVENT_APPROVAL_REQUESTED, &a, req->now)) != 0)
        return rc;
    return audit_decision(b, "hold", NULL);
}

/* ALLOW: reserve what the request may move, mark it, remember the key. */
static int allow(struct begin *b)
{
    struct ltx *t = b->t;
    struct pg_ledger_req *req = b->req;
    bool money = pg_op_moves_money(req->op);
    uint64_t id = 0;
    int64_t delta = 0;
    bool created = false;
    const char *action = "forward";
    char note[96] = "";
    int rc;

    /* The one write that can fail for this item alone (an overflowing
     * total) comes first, so a failed item leaves nothing behind. */
    if (money && req->op != PG_OP_REFUND) {
        if (b->have_obj && b->obj_live) {
            id = b->obj.id;
            if (b->grow > 0) {
                int64_t pending;
                if (__builtin_add_overflow(b->obj.pending, b->grow, &pending)) {
                    req->status = PG_ERANGE;
                    return 0;
                }
                rc = bucket_add(t, b->obj.agent, b->obj.currency, b->obj.day_start, 0, b->grow);
                if (rc == PG_ERANGE) {
                    req->status = rc;
                    return 0;
                }
                if (rc != 0)
                    return rc;
                b->obj.pending = pending;
                b->obj.updated_at = req->now;
                if ((rc = resv_put(t, &b->obj, false)) != 0)
                    return rc;
                delta = b->grow;
                action = "reserve";
                snprintf(note, sizeof(note), "added %lld to the object's reservation",
                         (long long)b->grow);
            }
        } else if (req->has_amount && (req->action == PG_ACT_CREATE ||
                                       req->action == PG_ACT_NONE ||
                                       req->action == PG_ACT_INCREMENT)) {
            rc = bucket_add(t, req->agent, b->cur, req->windows.day_start, 0, req->amount);
            if (rc == PG_ERANGE) {
                req->status = rc;
                return 0;
            }
            if (rc != 0 || (rc = ltx_next_id(t, CTR_RESV, &id)) != 0)
                return rc;
            struct resv r;
            memset(&r, 0, sizeof(r));
            r.id = id;
            r.state = RESV_PENDING;
            r.op = (uint8_t)req->op;
            memcpy(r.currency, b->cur, sizeof(r.currency));
            r.pending = r.reserved = req->amount;
            r.created_at = r.updated_at = req->now;
            r.day_start = req->windows.day_start;
            memcpy(r.agent, req->agent, sizeof(r.agent));
            memcpy(r.org, req->org, sizeof(r.org));
            snprintf(r.route, sizeof(r.route), "%s", req->route ? req->route : "");
            memcpy(r.idem_key, req->idem_key, sizeof(r.idem_key));
            /* An increment of an object payguard never saw: from now on its
             * follow-ups settle this reservation. */
            if (req->action == PG_ACT_INCREMENT && req->object_id[0]) {
                memcpy(r.object_id, req->object_id, sizeof(r.object_id));
                if ((rc = objects_index(t, req->object_id, id)) != 0)
                    return rc;
            }
            if ((rc = resv_put(t, &r, true)) != 0)
                return rc;
            delta = req->amount;
            created = true;
            action = "reserve";
        } else if (b->have_obj) {
            id = b->obj.id; /* finished: a settle of it is ignored and audited */
        }
    }
    if (money && (rc = velocity_mark(t, req->agent, req->now)) != 0)
        return rc;
    if (b->appr) {
        b->appr->stored_status = PG_APPROVAL_USED;
        if ((rc = appr_put(t, b->appr)) != 0)
            return rc;
        memcpy(req->approval_id, b->appr->a.id, sizeof(req->approval_id));
    }
    if (b->kn) {
        struct idem r;
        memset(&r, 0, sizeof(r));
        r.iid = b->iid; /* a key seen before is updated, not created again */
        r.state = IDEM_IN_FLIGHT;
        r.op = (uint8_t)req->op;
        r.action = (uint8_t)req->action;
        r.flags = (uint8_t)((pg_policy_refunds_restore(req->policy) ? IDEM_F_RESTORE : 0) |
                            (created ? IDEM_F_CREATED : 0));
        memcpy(r.currency, b->have_obj && b->obj_live ? b->obj.currency : b->cur, 3);
        r.epoch = t->l->epoch;
        r.created_at = r.updated_at = req->now;
        r.reservation = id;
        r.day_start = req->windows.day_start;
        r.delta = delta;
        memcpy(r.fingerprint, req->fingerprint, PG_SHA256_LEN);
        memcpy(r.approval_id, req->approval_id, sizeof(r.approval_id));
        if ((rc = idem_put(t, b->key, b->kn, &r)) != 0)
            return rc;
    }
    req->reservation = id;
    b->added = delta;
    set_proceed(req, NULL);
    return audit_decision(b, action, note);
}

/* The stateful rules on fresh spend, then deny, hold or allow. */
static int fresh(struct begin *b)
{
    struct ltx *t = b->t;
    struct pg_ledger_req *req = b->req;
    bool money = pg_op_moves_money(req->op);
    int rc;

    /* A follow-up is checked only for what it adds to the reservation its
     * object already holds (which is in the spend below already). */
    if (money && req->op != PG_OP_REFUND && is_follow_up(req->action) && req->object_id[0]) {
        uint64_t id;
        rc = objects_get(t, req->object_id, &id);
        if (rc == 0) {
            rc = resv_get(t, id, &b->obj);
            if (rc == 0)
                b->have_obj = true;
        }
        if (rc != 0 && rc != PG_ENOTFOUND)
            return rc;
        b->obj_live = b->have_obj &&
                      (b->obj.state == RESV_PENDING || b->obj.state == RESV_AUTHORIZED);
    }

    struct pg_intent in;
    memset(&in, 0, offsetof(struct pg_intent, scratch)); /* 4 KiB scratch is never read */
    in.scratch_used = 0;
    in.matched = true;
    in.op = req->op;
    in.action = req->action;
    in.route = req->route ? req->route : "";
    in.has_amount = req->has_amount;
    in.amount = req->amount;
    memcpy(in.currency, req->currency, sizeof(in.currency));
    in.counterparty = pg_slice_of(req->counterparty, FIELD_LEN(req->counterparty));
    in.object_id = pg_slice_of(req->object_id, FIELD_LEN(req->object_id));
    const char *spend_cur = b->cur;
    if (b->obj_live) {
        spend_cur = b->obj.currency;
        if (!in.currency[0])
            memcpy(in.currency, b->obj.currency, sizeof(in.currency));
        if (req->action == PG_ACT_CANCEL) {
            in.has_amount = false;
        } else if (req->has_amount) {
            b->grow = req->amount > b->obj.pending ? req->amount - b->obj.pending : 0;
            in.amount = b->grow;
        }
    }

    struct window_spend ws;
    struct pg_spend spend;
    if ((rc = spend_windows(t, req->agent, spend_cur, &req->windows, &ws)) != 0 ||
        (rc = velocity_count(t, req->agent, req->now, pg_policy_velocity_period(req->policy),
                             &spend.velocity_count)) != 0)
        return rc;
    spend.day = sat_add(ws.posted[0], ws.pending[0]);
    spend.week = sat_add(ws.posted[1], ws.pending[1]);
    spend.month = sat_add(ws.posted[2], ws.pending[2]);

    struct pg_decision d = req->decision;
    if (b->appr && d.verdict == PG_VERDICT_HOLD) {
        /* The human approved the hold; the limits still apply. */
        d.verdict = PG_VERDICT_ALLOW;
        d.status = 200;
        d.reason = "approved";
        d.limit_name = NULL;
        d.limit = d.headroom = 0;
        snprintf(d.message, sizeof(d.message), "Approved by a human (%s).", b->appr->a.id);
    }
    rc = pg_policy_check_spend(req->policy, req->agent_cfg, &in, &spend, &d);
    if (rc < 0) {
        req->status = rc; /* could not decide: fail closed, nothing written */
        return 0;
    }
    req->decision = d;
    if (b->appr)
        memcpy(req->approval_id, b->appr->a.id, sizeof(req->approval_id));
    switch (d.verdict) {
    case PG_VERDICT_DENY: return deny(b);
    case PG_VERDICT_HOLD: return hold(b);
    case PG_VERDICT_ALLOW: break;
    }
    if ((rc = allow(b)) != 0)
        return rc;
    return ledger_event_spend(t, req, spend_cur, &spend, b->added);
}

/* --- an existing key ------------------------------------------------------------------- */

/* Payguard stopped (or lost the answer) after sending: send again under the
 * same rail key, with the same reservation and nothing counted twice. */
static int resume(struct begin *b, struct idem *r)
{
    struct pg_ledger_req *req = b->req;
    r->epoch = b->t->l->epoch;
    r->updated_at = req->now;
    int rc = idem_put(b->t, b->key, b->kn, r);
    if (rc != 0)
        return rc;
    req->reservation = r->reservation;
    memcpy(req->approval_id, r->approval_id, sizeof(req->approval_id));
    set_proceed(req, "unresolved_retry");
    return audit_decision(b, "forward",
                          "unresolved earlier attempt: sent again under the same rail key");
}

static int replay(struct begin *b, const struct idem *r)
{
    int rc = resp_get(b->t, r->response, &b->req->replay);
    if (rc == PG_ENOMEM || rc == PG_ENOTFOUND) {
        /* out of memory for this one, or an answer gone missing: this item
         * fails closed, the batch goes on */
        b->req->status = rc == PG_ENOMEM ? rc : PG_ESTORE;
        return 0;
    }
    if (rc != 0)
        return rc;
    b->req->reservation = r->reservation;
    b->req->result = PG_BEGIN_REPLAY;
    return 0;
}

/* The key waits on a human: answer from the approval's state. */
static int held(struct begin *b, const struct idem *r)
{
    struct pg_ledger_req *req = b->req;
    struct appr a;
    int rc = appr_get(b->t, r->approval_id, &a);
    if (rc != 0 && rc != PG_ENOTFOUND)
        return rc;
    memcpy(req->approval_id, r->approval_id, sizeof(req->approval_id));
    if (rc == PG_ENOTFOUND) {
        set_decided(req, PG_VERDICT_DENY, 403, "approval_expired",
                    "Denied: approval %s for this request no longer exists (it expired). Send a new request with a new Idempotency-Key if the payment is still needed.",
                    r->approval_id);
        return audit_decision(b, "deny", NULL);
    }
    switch (appr_status(&a, req->now)) {
    case PG_APPROVAL_PENDING:
        set_decided(req, PG_VERDICT_HOLD, 402, "approval_required",
                    "Still held for a human: approval %s has not been decided yet. Wait for a human to approve it, then retry with the same Idempotency-Key.",
                    a.a.id);
        req->decision.limit_name = "approval_above";
        req->decision.limit = a.limit;
        return 0; /* nothing changed: a polling agent does not flood the log */
    case PG_APPROVAL_EXPIRED:
        if (a.stored_status == PG_APPROVAL_PENDING) {
            char actor[] = "payguard";
            a.stored_status = PG_APPROVAL_EXPIRED;
            a.a.decided_at = req->now;
            if ((rc = appr_put(b->t, &a)) != 0)
                return rc;
            struct audit_entry e = {
                .time = req->now, .org = a.a.org, .agent = a.a.agent, .actor = actor,
                .action = "expire", .route = a.route, .fingerprint = a.fingerprint,
                .has_amount = a.a.has_amount, .amount = a.a.amount, .currency = a.a.currency,
                .counterparty = a.a.counterparty, .reason = a.a.reason, .approval = a.a.id,
            };
            if ((rc = audit_append(b->t, &e)) != 0)
                return rc;
        }
        set_decided(req, PG_VERDICT_DENY, 403, "approval_expired",
                    "Denied: approval %s expired before a human decided. Do not retry this request; send a new one with a new Idempotency-Key if the payment is still needed.",
                    a.a.id);
        return audit_decision(b, "deny", NULL);
    case PG_APPROVAL_DENIED:
        set_decided(req, PG_VERDICT_DENY, 403, "approval_denied",
                    "Denied: a human denied approval %s for this request. Do not retry it.",
                    a.a.id);
        return audit_decision(b, "deny", NULL);
    case PG_APPROVAL_APPROVED:
        b->appr = &a;
        rc = fresh(b);
        b->appr = NULL;
        return rc;
    case PG_APPROVAL_USED:
        break;
    }
    /* Used, yet the key is still held: cannot happen through this code
     * (both change in one transaction); decide afresh rather than wedge. */
    req->approval_id[0] = '\0';
    return fresh(b);
}

int ledger_do_begin(struct ltx *t, struct pg_ledger_req *req)
{
    struct begin b;
    memset(&b, 0, sizeof(b));
    b.t = t;
    b.req = req;
    req->result = PG_BEGIN_DECIDED;
    if (!args_ok(req)) {
        req->status = PG_EPARSE;
        return 0;
    }
    const char *cur = req->currency[0] ? req->currency : pg_policy_currency(req->policy);
    snprintf(b.cur, sizeof(b.cur), "%s", cur ? cur : "");
    if (req->idem_key[0]) {
        b.kn = key_pair(b.key, sizeof(b.key), req->agent, FIELD_LEN(req->agent), req->idem_key,
                        FIELD_LEN(req->idem_key));
        struct idem r;
        int rc = idem_get(t, b.key, b.kn, &r);
        if (rc == 0) {
            b.iid = r.iid;
            if (memcmp(r.fingerprint, req->fingerprint, PG_SHA256_LEN) != 0) {
                req->result = PG_BEGIN_MISMATCH;
                return 0;
            }
            switch ((enum idem_state)r.state) {
            case IDEM_DONE: return replay(&b, &r);
            case IDEM_IN_FLIGHT:
                if (r.epoch == t->l->epoch && !ledger_unsettled_claim(t->l, b.key, b.kn)) {
                    req->result = PG_BEGIN_IN_FLIGHT;
                    req->reservation = r.reservation;
                    return 0;
                }
                return resume(&b, &r);
            case IDEM_HELD: return held(&b, &r);
            }
        }
        if (rc != PG_ENOTFOUND)
            return rc;
    }
    return fresh(&b);
}
