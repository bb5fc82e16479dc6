/* Agent revocation kept in the ledger, so a human's `payguard agent revoke`
 * reaches a running payguard on its very next request, without a reload.
 * Record: agent id → {v1, at, actor, reason}; absent means not revoked. */
#include "common/pg.h"
#include "ledger/ledger_int.h"
#include "ledger/outbox_int.h"

#include <stdio.h>

struct revoke_args {
    const char *org, *agent, *actor, *reason;
    bool revoke;
    int64_t now;
};

static int revoke_fn(struct ltx *t, void *arg)
{
    struct revoke_args *a = arg;
    size_t kn = strlen(a->agent);
    MDB_val v;
    int rc = ltx_get(t, DB_REVOKED, a->agent, kn, &v);
    if (rc != 0 && rc != PG_ENOTFOUND)
        return rc;
    if (!a->revoke && rc == PG_ENOTFOUND)
        return PG_ENOTFOUND;
    if (a->revoke) {
        uint8_t buf[512];
        struct enc e = { buf, sizeof(buf), 0 };
        enc_u8(&e, LEDGER_REC_V1);
        enc_i64(&e, a->now);
        enc_str(&e, a->actor);
        enc_str(&e, a->reason ? a->reason : "");
        if (e.len > sizeof(buf))
            return PG_ETOOBIG;
        rc = ltx_put(t, DB_REVOKED, a->agent, kn, buf, e.len);
    } else {
        rc = ltx_del(t, DB_REVOKED, a->agent, kn);
    }
    if (rc == 0 && a->revoke)
        rc = ledger_event_revoked(t, a->org, a->agent, a->actor, a->reason, a->now);
    if (rc != 0)
        return rc;
    struct audit_entry en = {
        .time = a->now,
        .org = a->org,
        .agent = a->agent,
        .actor = a->actor,
        .action = a->revoke ? "revoke" : "reinstate",
        .decision = a->revoke ? "deny" : "allow",
        .reason = a->revoke ? "agent_revoked" : "agent_reinstated",
        .note = a->reason && a->reason[0] ? a->reason : NULL,
    };
    return audit_append(t, &en);
}

int pg_ledger_agent_revoke(struct pg_ledger *l, const char *org, const char *agent, bool revoke,
                           const char *actor, const char *reason, int64_t now)
{
    if (!actor || !actor[0] || strncmp(actor, "agent:", 6) == 0)
        return PG_EAUTH;
    if (!agent || !agent[0] || strlen(agent) > PG_ID_MAX || !org || !org[0])
        return PG_ENOTFOUND;
    if (l->read_only)
        return PG_EBUSY;
    struct revoke_args a = { org, agent, actor, reason, revoke, now };
    return ledger_write(l, revoke_fn, &a, NULL);
}

int pg_ledger_agent_revoked(struct pg_ledger *l, const char *agent, struct pg_revocation *out)
{
    struct ltx t;
    MDB_val v;
    int rc = ltx_begin(l, false, &t);
    if (rc != 0)
        return rc;
    rc = ltx_get(&t, DB_REVOKED, agent, strlen(agent), &v);
    if (rc == 0 && out) {
        struct dec d = { v.mv_data, v.mv_size, 0, false };
        if (dec_u8(&d) != LEDGER_REC_V1)
            d.bad = true;
        out->at = dec_i64(&d);
        dec_str(&d, out->actor, sizeof(out->actor));
        dec_str(&d, out->reason, sizeof(out->reason));
        if (d.bad)
            rc = PG_ESTORE;
    }
    ltx_abort(&t);
    return rc;
}
