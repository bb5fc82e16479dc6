/* SETTLE: the rail answered (or did not); post, void, keep or re-authorize
 * the reservation, store the answer for replays, audit the outcome — once:
 * a replayed settle finds the reservation finished or the key done and
 * changes nothing. RECORD: one audit entry with no budget effect. The
 * transitions are listed in ledger.h above enum pg_settle_outcome. */
#include "common/pg.h"
#include "ledger/ledger_int.h"
#include "ledger/outbox_int.h"

#include <stdio.h>

static const char *outcome_name(enum pg_settle_outcome o)
{
    switch (o) {
    case PG_SETTLE_POST: return "post";
    case PG_SETTLE_VOID: return "void";
    case PG_SETTLE_KEEP: return "keep";
    case PG_SETTLE_AUTHORIZED: return "authorized";
    }
    return "unknown";
}

static bool settle_args_ok(const struct pg_ledger_req *req)
{
    bool amount = req->outcome == PG_SETTLE_POST || req->outcome == PG_SETTLE_AUTHORIZED;
    return req_who_ok(req) && req->agent[0] && (unsigned)req->outcome <= PG_SETTLE_AUTHORIZED &&
           (unsigned)req->op < PG_OP_COUNT && (!amount || req->settle_amount >= 0) &&
           FIELD_LEN(req->result_object_id) < sizeof(req->result_object_id);
}

/* What the settle does to its reservation, worked out before any write. */
struct plan {
    bool change;                     /* the reservation record changes */
    bool finished;                   /* it ends POSTED or VOIDED */
    int64_t dposted, dpending;       /* for its bucket */
    int64_t amount;                  /* for the audit entry */
    bool has_amount;
    const char *note;
};

static void plan_reservation(const struct pg_ledger_req *req, const struct idem *ir, bool have_idem,
                             struct resv *r, struct plan *p)
{
    bool live = r->state == RESV_PENDING || r->state == RESV_AUTHORIZED;
    if (req->outcome == PG_SETTLE_KEEP) {
        p->note = "outcome unknown: the reservation stays pending";
        return;
    }
    if (!live) {
        p->note = r->state == RESV_POSTED ? "illegal: the reservation is already posted; ignored"
                                          : "illegal: the reservation is already voided; ignored";
        p->has_amount = req->outcome != PG_SETTLE_VOID;
        p->amount = req->settle_amount;
        return;
    }
    p->change = true;
    switch (req->outcome) {
    case PG_SETTLE_POST:
        p->dpending = -r->pending;
        p->dposted = req->settle_amount;
        r->posted = req->settle_amount;
        r->pending = 0;
        r->state = RESV_POSTED;
        p->finished = true;
        p->has_amount = true;
        p->amount = req->settle_amount;
        break;
    case PG_SETTLE_AUTHORIZED:
        /* Both are >= 0: the difference cannot overflow. */
        p->dpending = req->settle_amount - r->pending;
        r->pending = req->settle_amount;
        r->state = RESV_AUTHORIZED;
        p->has_amount = true;
        p->amount = req->settle_amount;
        break;
    case PG_SETTLE_VOID:
        /* A declined follow-up leaves its object (and the reservation made
         * when it was created) alive: take back only what it added. A
         * cancel, or the request that created the reservation, ends it. */
        if (have_idem && ir->reservation == r->id && !(ir->flags & IDEM_F_CREATED) &&
            ir->action != PG_ACT_CANCEL && ir->action != PG_ACT_NONE &&
            ir->action != PG_ACT_CREATE) {
            int64_t back = ir->delta < r->pending ? ir->delta : r->pending;
            if (back < 0)
                back = 0;
            p->dpending = -back;
            r->pending -= back;
            p->change = back > 0;
            p->amount = back;
            p->note = "declined follow-up: only what it added is released";
        } else {
            p->dpending = -r->pending;
            p->amount = r->pending;
            r->pending = 0;
            r->state = RESV_VOIDED;
            p->finished = true;
        }
        p->has_amount = true;
        break;
    case PG_SETTLE_KEEP: break;
    }
}

int ledger_do_settle(struct ltx *t, struct pg_ledger_req *req)
{
    if (!settle_args_ok(req)) {
        req->status = PG_EPARSE;
        return 0;
    }
    if ((uint64_t)req->response.head_len + req->response.body_len > LEDGER_RESPONSE_MAX) {
        req->status = PG_ETOOBIG;
        return 0;
    }
    uint8_t key[LEDGER_KEY_MAX];
    size_t kn = 0;
    struct idem ir;
    memset(&ir, 0, sizeof(ir));
    bool have_idem = false;
    int rc;
    if (req->idem_key[0]) {
        kn = key_pair(key, sizeof(key), req->agent, FIELD_LEN(req->agent), req->idem_key,
                      FIELD_LEN(req->idem_key));
        rc = idem_get(t, key, kn, &ir);
        if (rc == 0)
            have_idem = ir.state == IDEM_IN_FLIGHT; /* done or held: not ours to settle */
        else if (rc != PG_ENOTFOUND)
            return rc;
    }
    uint64_t id = req->reservation ? req->reservation : have_idem ? ir.reservation : 0;
    struct resv r;
    bool have_r = false;
    struct plan p;
    memset(&p, 0, sizeof(p));
    if (id) {
        rc = resv_get(t, id, &r);
        if (rc == 0)
            have_r = true;
        else if (rc == PG_ENOTFOUND)
            p.note = "unknown reservation; nothing to settle";
        else
            return rc;
    }
    if (have_r)
        plan_reservation(req, &ir, have_idem, &r, &p);

    /* Money that moved with no reservation: a refund (which gives budget
     * back only when the policy says so), or a follow-up on an object made
     * outside payguard. Counted on the first settle only. */
    enum pg_op op = have_idem ? (enum pg_op)ir.op : req->op;
    bool first = !req->idem_key[0] || (have_idem && !(ir.flags & IDEM_F_COUNTED));
    bool unreserved = !have_r && !id && req->outcome == PG_SETTLE_POST && pg_op_moves_money(op);
    char cur[4] = "";
    int64_t day = 0, udposted = 0;
    if (unreserved && first) {
        bool have_day = have_idem || req->windows.day_start < req->windows.day_end;
        day = have_idem ? ir.day_start : req->windows.day_start;
        memcpy(cur, have_idem ? ir.currency : req->currency, 3);
        p.has_amount = true;
        p.amount = req->settle_amount;
        if (!have_day) {
            p.note = "no day window given: not counted";
        } else if (op == PG_OP_REFUND) {
            bool restore = have_idem ? (ir.flags & IDEM_F_RESTORE) != 0
                                     : req->policy && pg_policy_refunds_restore(req->policy);
            if (restore) {
                udposted = -req->settle_amount;
                p.note = "refund restored to the spend of its day";
            } else {
                p.note = "refund: spend unchanged (refunds_restore is off)";
            }
        } else {
            udposted = req->settle_amount;
            p.note = "posted without a reservation (object made outside payguard)";
        }
    } else if (unreserved) {
        p.note = "already counted by an earlier settle; ignored";
    }

    /* The only item-level failure (a total overflowing) is checked by the
     * first write, so a failed item leaves nothing behind. */
    if (have_r && p.change) {
        rc = bucket_add(t, r.agent, r.currency, r.day_start, p.dposted, p.dpending);
    } else if (udposted) {
        rc = bucket_add(t, req->agent, cur, day, udposted, 0);
    } else {
        rc = 0;
    }
    if (rc == PG_ERANGE) {
        req->status = rc;
        return 0;
    }
    if (rc != 0)
        return rc;

    if (have_r) {
        /* The reservation names its object; a second id for it (rare) goes
         * to the objects tree. */
        const char *obj = req->result_object_id;
        if (obj[0] && !r.object_id[0]) {
            memcpy(r.object_id, obj, sizeof(r.object_id));
            p.change = true;
            if ((rc = objects_index(t, obj, r.id)) != 0)
                return rc;
        } else if (obj[0] && strncmp(obj, r.object_id, sizeof(r.object_id)) != 0) {
            if ((rc = objects_put(t, obj, r.id)) != 0)
                return rc;
        }
        if (p.change) {
            r.updated_at = req->now;
            if ((rc = resv_put(t, &r, false)) != 0)
                return rc;
        }
        if (p.finished) {
            uint8_t k[8];
            be64_put(k, r.id);
            if ((rc = expiry_add(t, EXP_RESV_DONE, req->now, k, sizeof(k))) != 0)
                return rc;
        }
    }

    if (have_idem) {
        ir.updated_at = req->now;
        if (unreserved && first)
            ir.flags |= IDEM_F_COUNTED;
        if (req->store_response) {
            ir.state = IDEM_DONE;
            if ((rc = resp_put(t, &req->response, &ir.response)) != 0 ||
                (rc = idem_put(t, key, kn, &ir)) != 0 ||
                (rc = expiry_add(t, EXP_IDEM_DONE, req->now, key, kn)) != 0)
                return rc;
        } else if (req->outcome == PG_SETTLE_VOID) {
            /* Nothing reached the rail and nothing was stored: the key is
             * free again, and a retry is decided afresh. */
            if ((rc = idem_del(t, key, kn, &ir)) != 0)
                return rc;
        } else {
            /* The money may have moved and the agent got no rail answer:
             * the next retry re-sends under the same rail key. */
            ir.epoch = 0;
            if ((rc = idem_put(t, key, kn, &ir)) != 0)
                return rc;
        }
    }

    char actor[PG_ID_MAX + 8];
    actor_of(actor, sizeof(actor), req->agent);
    struct audit_entry e = {
        .time = req->now,
        .org = req->org,
        .agent = req->agent,
        .actor = actor,
        .action = "settle",
        .route = req->route,
        .fingerprint = req->fingerprint,
        .has_amount = p.has_amount,
        .amount = p.amount,
        .currency = have_r ? r.currency : cur[0] ? cur : req->currency,
        .outcome = outcome_name(req->outcome),
        .reservation = id,
        .approval = have_idem ? ir.approval_id : NULL,
        .note = p.note,
    };
    return audit_append(t, &e);
}

int ledger_do_record(struct ltx *t, struct pg_ledger_req *req)
{
    if (!req_who_ok(req) || FIELD_LEN(req->actor) >= sizeof(req->actor) ||
        FIELD_LEN(req->approval_id) >= sizeof(req->approval_id)) {
        req->status = PG_EPARSE;
        return 0;
    }
    char actor[PG_ID_MAX + 8];
    const char *who = req->actor;
    if (!who[0]) {
        if (req->agent[0]) {
            actor_of(actor, sizeof(actor), req->agent);
            who = actor;
        } else {
            who = "payguard";
        }
    }
    const struct pg_decision *d = &req->decision;
    const char *action = req->audit_action;
    if (!action || !action[0])
        action = d->verdict == PG_VERDICT_DENY ? "deny" : "record";
    struct audit_entry e = {
        .time = req->now,
        .org = req->org,
        .agent = req->agent,
        .actor = who,
        .action = action,
        .route = req->route,
        .fingerprint = req->fingerprint,
        .has_amount = req->has_amount,
        .amount = req->amount,
        .currency = req->currency,
        .counterparty = req->counterparty,
        .decision = d->reason ? pg_verdict_name(d->verdict) : NULL,
        .reason = d->reason,
        .approval = req->approval_id,
    };
    int rc = ledger_event_denied(t, req, NULL);
    return rc ? rc : audit_append(t, &e);
}
