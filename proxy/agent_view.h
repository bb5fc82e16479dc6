/* One agent's budget as humans see it (`payguard ledger show`, GET
 * /v1/agents/{id}): spend in the day, week and month of its org's zone,
 * each window's limit and headroom, and the velocity count. Read
 * transactions only; any thread. */
#ifndef PG_PROXY_AGENT_VIEW_H
#define PG_PROXY_AGENT_VIEW_H

#include "config/config.h"
#include "ledger/ledger.h"
#include "policy/policy.h"

struct pg_window_view {
    const char *name;              /* "daily", "weekly", "monthly" */
    int64_t posted, pending;
    int64_t limit;                 /* -1: no limit */
    int64_t headroom;              /* limit - posted - pending, floored at 0; -1: no limit */
};

struct pg_agent_view {
    char currency[4];              /* the policy's, "usd" when it names none */
    const char *zone;              /* the org's IANA zone name */
    struct pg_window_view w[3];
    uint32_t velocity_period_s;    /* 0: no velocity rule */
    uint32_t velocity_count;
};

/* Fills *out for agent `a` with compiled policy `pol` at `now`. 0,
 * PG_ENOTFOUND (the agent's org or zone is missing), or the ledger's error. */
PG_WUR int pg_agent_view(struct pg_ledger *l, const struct pg_config *cfg,
                         const struct pg_agent *a, const struct pg_policy *pol, int64_t now,
                         struct pg_agent_view *out);

#endif
