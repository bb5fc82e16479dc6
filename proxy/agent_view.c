/* Spend, limits and headroom of one agent for the CLI and the admin API,
 * so both say the same thing. */
#include "common/pg.h"
#include "proxy/agent_view.h"
#include "policy/tz.h"

#include <stdio.h>

int pg_agent_view(struct pg_ledger *l, const struct pg_config *cfg, const struct pg_agent *a,
                  const struct pg_policy *pol, int64_t now, struct pg_agent_view *out)
{
    memset(out, 0, sizeof(*out));
    const struct pg_org *org = pg_config_org(cfg, pg_slice_cstr(a->org));
    if (!org || !org->tz)
        return PG_ENOTFOUND;
    const char *cur = pg_policy_currency(pol)[0] ? pg_policy_currency(pol) : "usd";
    snprintf(out->currency, sizeof(out->currency), "%s", cur);
    out->zone = pg_tz_name(org->tz);
    struct pg_windows w;
    pg_tz_windows(org->tz, now, &w);
    struct pg_spend posted, pending;
    out->velocity_period_s = pg_policy_velocity_period(pol);
    int rc = pg_ledger_spend(l, a->id, cur, &w, now, out->velocity_period_s, &posted, &pending);
    if (rc != 0)
        return rc;
    out->velocity_count = pending.velocity_count;
    static const char *const names[3] = { "daily", "weekly", "monthly" };
    static const enum pg_limit_kind kinds[3] = { PG_LIMIT_DAILY, PG_LIMIT_WEEKLY, PG_LIMIT_MONTHLY };
    int64_t p[3] = { posted.day, posted.week, posted.month };
    int64_t q[3] = { pending.day, pending.week, pending.month };
    for (int i = 0; i < 3; i++) {
        struct pg_window_view *v = &out->w[i];
        int64_t used;
        v->name = names[i];
        v->posted = p[i];
        v->pending = q[i];
        v->limit = -1;
        v->headroom = -1;
        if (pg_policy_limit(pol, kinds[i], cur, &v->limit) != 0)
            v->limit = -1;
        if (__builtin_add_overflow(p[i], q[i], &used))
            used = INT64_MAX;
        if (v->limit >= 0)
            v->headroom = used >= v->limit ? 0 : v->limit - used;
    }
    return 0;
}
