/* The policy rules: compiling a policy (named policy + agent overrides) into
 * minor units, the stateless checks run on the loop thread, and the stateful
 * window and velocity checks the ledger runs on fresh values. Every verdict
 * carries a reason code and a message written for the agent to act on. */
#include "common/pg.h"
#include "policy/policy.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#define UNSET (-1)

struct pg_policy {
    char currency[4];              /* "" when the policy names none */
    /* Limits as written (decimal strings in major units), parsed per currency
     * at check time: a limit applies to each allowed currency nominally. */
    const char *per_transaction, *daily, *weekly, *monthly;
    const char *approval_above, *auto_approve_below;
    char *const *allow; size_t nallow;
    char *const *deny; size_t ndeny;
    bool has_allow;
    bool has_hours;
    uint8_t days_mask;
    uint16_t from_min, to_min;
    uint32_t velocity_max, velocity_per_s;
    uint32_t rate_requests, rate_per_s, rate_burst;
    char *const *currencies; size_t ncurrencies;
    uint32_t ops_mask;             /* bit per enum pg_op allowed */
    bool refunds_restore;
};

const char *pg_verdict_name(enum pg_verdict v)
{
    switch (v) {
    case PG_VERDICT_ALLOW: return "allow";
    case PG_VERDICT_DENY: return "deny";
    case PG_VERDICT_HOLD: return "hold";
    }
    return "deny";
}

/* --- compiling ------------------------------------------------------------ */

static void apply_spec(struct pg_policy *p, const struct pg_policy_spec *s)
{
    if (s->currency)
        memcpy(p->currency, s->currency, strnlen(s->currency, 3));
#define TAKE(field)                                                            \
    if (s->field)                                                              \
        p->field = s->field;
    TAKE(per_transaction)
    TAKE(daily)
    TAKE(weekly)
    TAKE(monthly)
    TAKE(approval_above)
    TAKE(auto_approve_below)
#undef TAKE
    if (s->merchants_allow) {
        p->allow = s->merchants_allow;
        p->nallow = s->nmerchants_allow;
        p->has_allow = true;
    }
    if (s->merchants_deny) {
        p->deny = s->merchants_deny;
        p->ndeny = s->nmerchants_deny;
    }
    if (s->hours_from || s->hours_to || s->hours_days) {
        p->has_hours = true;
        p->days_mask = s->hours_days_mask;
        p->from_min = s->hours_from_min;
        p->to_min = s->hours_to_min;
    }
    if (s->velocity_max) {
        p->velocity_max = s->velocity_max;
        p->velocity_per_s = s->velocity_per_s;
    }
    if (s->rate_requests) {
        p->rate_requests = s->rate_requests;
        p->rate_per_s = s->rate_per_s;
        p->rate_burst = s->rate_burst;
    }
    if (s->currencies) {
        p->currencies = s->currencies;
        p->ncurrencies = s->ncurrencies;
    }
    if (s->operations) {
        p->ops_mask = 0;
        for (size_t i = 0; i < s->noperations; i++) {
            int op = pg_op_parse(pg_slice_cstr(s->operations[i]));
            if (op >= 0 && op != PG_OP_FORBIDDEN)
                p->ops_mask |= 1u << op;
        }
    }
    if (s->has_refunds_restore)
        p->refunds_restore = s->refunds_restore;
}

static bool spec_sets_anything(const struct pg_policy_spec *s)
{
    return s && (s->currency || s->per_transaction || s->daily || s->weekly || s->monthly ||
                 s->approval_above || s->auto_approve_below || s->merchants_allow ||
                 s->merchants_deny || s->hours_days || s->hours_from || s->hours_to ||
                 s->velocity_max || s->currencies || s->operations || s->has_refunds_restore ||
                 s->rate_requests);
}

int pg_policy_compile(const struct pg_config *cfg, const struct pg_agent *agent,
                      struct pg_policy **out, char *err, size_t errlen)
{
    struct pg_policy *p = calloc(1, sizeof(*p));
    if (!p)
        return PG_ENOMEM;
    if (!agent->policy && !spec_sets_anything(agent->overrides)) {
        p->ops_mask = 1u << PG_OP_READ; /* no policy: reads only, fail closed */
        *out = p;
        return 0;
    }
    /* A named policy with no `operations` allows every kind but forbidden. */
    p->ops_mask = ((1u << PG_OP_COUNT) - 1) & ~(1u << PG_OP_FORBIDDEN);
    if (agent->policy) {
        const struct pg_policy_spec *base = pg_config_policy(cfg, pg_slice_cstr(agent->policy));
        if (!base) {
            snprintf(err, errlen, "agent %s names policy %s, which is not defined", agent->id,
                     agent->policy);
            free(p);
            return PG_ECONFIG;
        }
        apply_spec(p, base);
    }
    if (agent->overrides)
        apply_spec(p, agent->overrides);
    *out = p;
    return 0;
}

void pg_policy_free(struct pg_policy *p)
{
    free(p);
}

const char *pg_policy_currency(const struct pg_policy *p)
{
    return p->currency;
}

bool pg_policy_refunds_restore(const struct pg_policy *p)
{
    return p->refunds_restore;
}

uint32_t pg_policy_velocity_period(const struct pg_policy *p)
{
    return p->velocity_max ? p->velocity_per_s : 0;
}

/* --- helpers ---------------------------------------------------------------- */

/* A limit in minor units of `currency`; UNSET when the policy sets none.
 * PG_ERANGE when the written limit has more decimals than the currency has:
 * the caller cannot compare and fails closed. */
static int limit_in(const char *written, const char *currency, int64_t *out)
{
    *out = UNSET;
    if (!written)
        return 0;
    int exp = pg_money_exponent(pg_slice_cstr(currency));
    if (exp < 0)
        return PG_ERANGE;
    return pg_money_parse_decimal(pg_slice_cstr(written), exp, out, NULL);
}

static void fmt_amount(char *buf, size_t cap, int64_t minor, const char *currency)
{
    int exp = pg_money_exponent(pg_slice_cstr(currency));
    char num[48];
    if (exp < 0 || pg_money_format(minor, exp, num, sizeof(num)) < 0)
        snprintf(num, sizeof(num), "%lld", (long long)minor);
    char up[4] = { 0 };
    for (int i = 0; i < 3 && currency[i]; i++)
        up[i] = (char)(currency[i] >= 'a' && currency[i] <= 'z' ? currency[i] - 32 : currency[i]);
    snprintf(buf, cap, "%s %s", num, up);
}

__attribute__((format(printf, 5, 6))) static void verdict(struct pg_decision *d,
                                                          enum pg_verdict v, int status,
                                                          const char *reason, const char *fmt,
                                                          ...)
{
    d->verdict = v;
    d->status = status;
    d->reason = reason;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->message, sizeof(d->message), fmt, ap);
    va_end(ap);
}

static void deny(struct pg_decision *d, const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void deny(struct pg_decision *d, const char *reason, const char *fmt, ...)
{
    d->verdict = PG_VERDICT_DENY;
    d->status = 403;
    d->reason = reason;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->message, sizeof(d->message), fmt, ap);
    va_end(ap);
}

/* '*' matches any run of characters, '?' any one; everything else literally.
 * Iterative with one backtrack point: linear in practice, no recursion. */
static bool glob_match(const char *pat, struct pg_slice s)
{
    size_t pi = 0, si = 0, star = SIZE_MAX, mark = 0;
    size_t plen = strlen(pat);
    while (si < s.len) {
        if (pi < plen && (pat[pi] == '?' || pat[pi] == s.ptr[si])) {
            pi++;
            si++;
        } else if (pi < plen && pat[pi] == '*') {
            star = pi++;
            mark = si;
        } else if (star != SIZE_MAX) {
            pi = star + 1;
            si = ++mark;
        } else {
            return false;
        }
    }
    while (pi < plen && pat[pi] == '*')
        pi++;
    return pi == plen;
}

static bool any_match(char *const *pats, size_t n, struct pg_slice s)
{
    for (size_t i = 0; i < n; i++)
        if (glob_match(pats[i], s))
            return true;
    return false;
}

static void memo_clear(struct pg_decision *d)
{
    memset(d, 0, sizeof(*d));
    d->verdict = PG_VERDICT_ALLOW;
    d->status = 200;
    d->reason = "allowed";
}

/* --- the rules ------------------------------------------------------------ */

/* Everything a rule looks at. */
struct rule_ctx {
    const struct pg_policy *p;
    const struct pg_agent *agent;
    const struct pg_intent *in;
    const struct pg_tz *tz;
    int64_t now;
    const struct pg_spend *spend;
    const char *cur;           /* the request's currency, else the policy's */
    bool follow_up;            /* acts on an object checked when it was created */
};

enum outcome { OUT_PASS, OUT_SKIP, OUT_DENY, OUT_HOLD };

static enum outcome rule_operation(const struct rule_ctx *x, struct pg_decision *d)
{
    const struct pg_intent *in = x->in;
    if (in->op == PG_OP_FORBIDDEN) {
        deny(d, "forbidden_operation",
             "payguard never lets agents call %s: it is reserved for humans in the rail's dashboard.",
             in->route);
        return OUT_DENY;
    }
    if (!(x->p->ops_mask & (1u << in->op))) {
        deny(d, "operation_not_allowed",
             "Agent %s may not perform %s operations (%s). Ask a human to change its policy if it should.",
             x->agent->id, pg_op_name(in->op), in->route);
        return OUT_DENY;
    }
    return OUT_PASS;
}

static enum outcome rule_currency(const struct rule_ctx *x, struct pg_decision *d)
{
    const struct pg_policy *p = x->p;
    const struct pg_intent *in = x->in;
    if (!in->currency[0])
        return OUT_SKIP;
    bool listed = false;
    if (p->ncurrencies) {
        for (size_t i = 0; i < p->ncurrencies && !listed; i++)
            listed = strcmp(p->currencies[i], in->currency) == 0;
    } else {
        listed = !p->currency[0] || strcmp(p->currency, in->currency) == 0;
    }
    if (listed)
        return OUT_PASS;
    d->param = "currency";
    deny(d, "currency_not_allowed",
         "Agent %s may not spend %s. Use one of the currencies its policy allows.", x->agent->id,
         in->currency);
    return OUT_DENY;
}

static enum outcome rule_amount_known(const struct rule_ctx *x, struct pg_decision *d)
{
    const struct pg_policy *p = x->p;
    if (x->in->has_amount || x->follow_up)
        return x->in->has_amount ? OUT_PASS : OUT_SKIP;
    if (!(p->per_transaction || p->daily || p->weekly || p->monthly || p->approval_above))
        return OUT_SKIP;
    deny(d, "amount_unknown",
         "payguard cannot see the amount of this %s request (for example, prices given by id), so it cannot check the limits. Send the amount inline.",
         x->in->route);
    return OUT_DENY;
}

static enum outcome rule_per_transaction(const struct rule_ctx *x, struct pg_decision *d)
{
    int64_t limit;
    char a[64], l[64];
    if (!x->p->per_transaction || !x->in->has_amount)
        return OUT_SKIP;
    if (limit_in(x->p->per_transaction, x->cur, &limit) != 0) {
        deny(d, "limit_not_expressible",
             "The per-transaction limit cannot be expressed in %s; ask a human to fix the policy.",
             x->cur);
        return OUT_DENY;
    }
    if (x->in->amount <= limit)
        return OUT_PASS;
    fmt_amount(a, sizeof(a), x->in->amount, x->cur);
    fmt_amount(l, sizeof(l), limit, x->cur);
    d->param = "amount";
    d->limit_name = "per_transaction";
    d->limit = limit;
    d->headroom = limit;
    deny(d, "per_transaction_limit",
         "Denied: %s is over agent %s's per-transaction limit of %s. Do not retry this amount; ask a human to raise the limit or to pay it themselves.",
         a, x->agent->id, l);
    return OUT_DENY;
}

static enum outcome rule_merchants(const struct rule_ctx *x, struct pg_decision *d)
{
    const struct pg_policy *p = x->p;
    struct pg_slice cp = x->in->counterparty;
    if (!p->ndeny && !p->has_allow)
        return OUT_SKIP;
    /* A follow-up naming no merchant acts on an object whose merchant was
     * checked when it was created. */
    if (x->follow_up && !cp.len)
        return OUT_SKIP;
    if (p->ndeny && cp.len && any_match(p->deny, p->ndeny, cp)) {
        d->param = x->in->counterparty_field;
        deny(d, "merchant_denied",
             "Denied: payments to %.*s are blocked by agent %s's policy. Do not retry; choose another merchant or ask a human.",
             (int)cp.len, cp.ptr, x->agent->id);
        return OUT_DENY;
    }
    if (p->has_allow && (!cp.len || !any_match(p->allow, p->nallow, cp))) {
        d->param = x->in->counterparty_field;
        if (cp.len)
            deny(d, "merchant_not_allowed",
                 "Denied: %.*s is not on agent %s's list of allowed merchants. Do not retry; ask a human to add it if it should be.",
                 (int)cp.len, cp.ptr, x->agent->id);
        else
            deny(d, "merchant_not_allowed",
                 "Denied: agent %s may pay only listed merchants, and this request names none (set the destination account).",
                 x->agent->id);
        return OUT_DENY;
    }
    return OUT_PASS;
}

static enum outcome rule_hours(const struct rule_ctx *x, struct pg_decision *d)
{
    const struct pg_policy *p = x->p;
    struct pg_civil c;
    if (!p->has_hours)
        return OUT_SKIP;
    pg_tz_to_civil(x->tz, x->now, &c);
    uint32_t minute = (uint32_t)(c.hour * 60 + c.minute);
    bool day_ok = (p->days_mask >> c.weekday) & 1;
    if (day_ok && minute >= p->from_min && minute < p->to_min)
        return OUT_PASS;
    deny(d, "outside_hours",
         "Denied: agent %s may move money only during its allowed hours (%02u:%02u-%02u:%02u %s on its allowed days). Retry then, or ask a human.",
         x->agent->id, p->from_min / 60u, p->from_min % 60u, p->to_min / 60u, p->to_min % 60u,
         pg_tz_name(x->tz));
    return OUT_DENY;
}

static enum outcome rule_approval(const struct rule_ctx *x, struct pg_decision *d)
{
    int64_t above, below;
    char a[64], l[64];
    if (!x->p->approval_above || !x->in->has_amount)
        return OUT_SKIP;
    if (limit_in(x->p->approval_above, x->cur, &above) != 0 ||
        limit_in(x->p->auto_approve_below, x->cur, &below) != 0) {
        deny(d, "limit_not_expressible",
             "The approval threshold cannot be expressed in %s; ask a human to fix the policy.",
             x->cur);
        return OUT_DENY;
    }
    bool auto_ok = below != UNSET && x->in->amount < below;
    if (x->in->amount <= above || auto_ok)
        return OUT_PASS;
    fmt_amount(a, sizeof(a), x->in->amount, x->cur);
    fmt_amount(l, sizeof(l), above, x->cur);
    d->limit_name = "approval_above";
    d->limit = above;
    verdict(d, PG_VERDICT_HOLD, 402, "approval_required",
            "Held for a human: %s is above agent %s's approval threshold of %s. Ask a human to approve it, then retry with the same Idempotency-Key.",
            a, x->agent->id, l);
    return OUT_HOLD;
}

static enum outcome rule_velocity(const struct rule_ctx *x, struct pg_decision *d)
{
    const struct pg_policy *p = x->p;
    if (!p->velocity_max)
        return OUT_SKIP;
    if (x->spend->velocity_count < p->velocity_max)
        return OUT_PASS;
    deny(d, "velocity_limit",
         "Denied: agent %s already made %u money operations in the last %u seconds, its limit. Wait before retrying; repeated attempts look like a loop.",
         x->agent->id, x->spend->velocity_count, p->velocity_per_s);
    return OUT_DENY;
}

static enum outcome window_rule(const struct rule_ctx *x, const char *written, const char *name,
                                const char *reason, const char *when, int64_t spent,
                                struct pg_decision *d)
{
    int64_t limit, total;
    char a[64], l[64], h[64];
    /* A refund returns money the agent already spent: it uses no budget of its
     * own (and gives budget back only with refunds_restore). */
    if (!written || !x->in->has_amount || x->in->op == PG_OP_REFUND)
        return OUT_SKIP;
    if (limit_in(written, x->cur, &limit) != 0) {
        deny(d, "limit_not_expressible",
             "The %s limit cannot be expressed in %s; ask a human to fix the policy.", name, x->cur);
        return OUT_DENY;
    }
    if (!__builtin_add_overflow(spent, x->in->amount, &total) && total <= limit)
        return OUT_PASS;
    int64_t headroom = spent >= limit ? 0 : limit - spent;
    fmt_amount(a, sizeof(a), x->in->amount, x->cur);
    fmt_amount(l, sizeof(l), limit, x->cur);
    fmt_amount(h, sizeof(h), headroom, x->cur);
    d->param = "amount";
    d->limit_name = name;
    d->limit = limit;
    d->headroom = headroom;
    deny(d, reason,
         "Denied: %s would take agent %s past its %s limit of %s; %s is left %s. Retry with a smaller amount, wait for the limit to reset, or ask a human.",
         a, x->agent->id, name, l, h, when);
    return OUT_DENY;
}

static enum outcome rule_daily(const struct rule_ctx *x, struct pg_decision *d)
{
    return window_rule(x, x->p->daily, "daily", "daily_limit", "today", x->spend->day, d);
}

static enum outcome rule_weekly(const struct rule_ctx *x, struct pg_decision *d)
{
    return window_rule(x, x->p->weekly, "weekly", "weekly_limit", "this week", x->spend->week, d);
}

static enum outcome rule_monthly(const struct rule_ctx *x, struct pg_decision *d)
{
    return window_rule(x, x->p->monthly, "monthly", "monthly_limit", "this month",
                       x->spend->month, d);
}

struct rule {
    const char *name;
    enum outcome (*fn)(const struct rule_ctx *, struct pg_decision *);
    bool money_only;
    bool stateful;             /* runs in the ledger's transaction */
};

/* The order is the documented precedence: the first DENY wins, and a HOLD
 * stands only if every later rule passes. */
static const struct rule rules[] = {
    { "operations", rule_operation, false, false },
    { "currencies", rule_currency, true, false },
    { "amount_known", rule_amount_known, true, false },
    { "per_transaction", rule_per_transaction, true, false },
    { "merchants", rule_merchants, true, false },
    { "hours", rule_hours, true, false },
    { "approval_above", rule_approval, true, false },
    { "velocity", rule_velocity, true, true },
    { "daily", rule_daily, true, true },
    { "weekly", rule_weekly, true, true },
    { "monthly", rule_monthly, true, true },
};

static void ctx_init(struct rule_ctx *x, const struct pg_policy *p, const struct pg_agent *agent,
                     const struct pg_intent *in, const struct pg_tz *tz, int64_t now,
                     const struct pg_spend *spend)
{
    x->p = p;
    x->agent = agent;
    x->in = in;
    x->tz = tz;
    x->now = now;
    x->spend = spend;
    x->cur = in->currency[0] ? in->currency : p->currency;
    /* A refund without an amount returns the whole of the object it names,
     * whose amount payguard checked when it was created. */
    x->follow_up = in->action == PG_ACT_CONFIRM || in->action == PG_ACT_CAPTURE ||
                   in->action == PG_ACT_CANCEL || in->action == PG_ACT_UPDATE ||
                   (in->op == PG_OP_REFUND && !in->has_amount && in->object_id.len);
}

static int run_rules(const struct rule_ctx *x, bool stateful, struct pg_decision *d)
{
    bool money = pg_op_moves_money(x->in->op);
    for (size_t i = 0; i < PG_ARRAY_LEN(rules); i++) {
        if (rules[i].stateful != stateful || (rules[i].money_only && !money))
            continue;
        struct pg_decision r;
        memo_clear(&r);
        enum outcome o = rules[i].fn(x, &r);
        if (o == OUT_DENY) {
            *d = r;
            return 0;
        }
        if (o == OUT_HOLD && d->verdict == PG_VERDICT_ALLOW)
            *d = r;
    }
    return 0;
}

int pg_policy_check(const struct pg_policy *p, const struct pg_agent *agent,
                    const struct pg_intent *in, const struct pg_tz *tz, int64_t now,
                    struct pg_decision *d)
{
    static const struct pg_spend none = { 0, 0, 0, 0 };
    struct rule_ctx x;
    memo_clear(d);
    if (!in->matched || !tz)
        return PG_EPARSE; /* unmatched routes are the caller's to answer */
    ctx_init(&x, p, agent, in, tz, now, &none);
    return run_rules(&x, false, d);
}

int pg_policy_check_spend(const struct pg_policy *p, const struct pg_agent *agent,
                          const struct pg_intent *in, const struct pg_spend *spend,
                          struct pg_decision *d)
{
    struct rule_ctx x;
    if (d->verdict == PG_VERDICT_DENY || !in->matched)
        return 0;
    ctx_init(&x, p, agent, in, NULL, 0, spend);
    return run_rules(&x, true, d);
}

int pg_policy_explain(const struct pg_policy *p, const struct pg_agent *agent,
                      const struct pg_intent *in, const struct pg_tz *tz, int64_t now,
                      const struct pg_spend *spend, pg_policy_explain_cb cb, void *arg)
{
    struct rule_ctx x;
    if (!in->matched || !tz)
        return PG_EPARSE;
    ctx_init(&x, p, agent, in, tz, now, spend);
    bool money = pg_op_moves_money(in->op);
    for (size_t i = 0; i < PG_ARRAY_LEN(rules); i++) {
        struct pg_decision r;
        memo_clear(&r);
        const char *outcome = "not applicable";
        if (!rules[i].money_only || money) {
            switch (rules[i].fn(&x, &r)) {
            case OUT_PASS: outcome = "pass"; break;
            case OUT_SKIP: outcome = "not set"; break;
            case OUT_DENY: outcome = "deny"; break;
            case OUT_HOLD: outcome = "hold"; break;
            }
        }
        cb(arg, rules[i].name, outcome, &r);
    }
    return 0;
}

int pg_policy_limit(const struct pg_policy *p, enum pg_limit_kind k, const char *currency,
                    int64_t *out)
{
    const char *written[] = { p->per_transaction, p->daily, p->weekly, p->monthly };
    *out = UNSET;
    if ((unsigned)k >= PG_ARRAY_LEN(written))
        return PG_ERANGE;
    return limit_in(written[k], currency ? currency : p->currency, out);
}

bool pg_policy_rate(const struct pg_policy *p, uint32_t *requests, uint32_t *per_s,
                    uint32_t *burst)
{
    *requests = p->rate_requests;
    *per_s = p->rate_per_s;
    *burst = p->rate_burst;
    return p->rate_requests != 0;
}
