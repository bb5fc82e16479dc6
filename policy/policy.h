/* Spending decisions. Pure: no I/O, no clock (time is an argument), no
 * LMDB. The proxy classifies a request with the rail's route table
 * (pg_rail_classify), runs the stateless rules on the loop thread
 * (pg_policy_check), and the ledger runs the stateful ones — windowed spend
 * and velocity — inside its write transaction on fresh values
 * (pg_policy_check_spend), so two requests can never both pass a limit only
 * one of them fits. */
#ifndef PG_POLICY_H
#define PG_POLICY_H

#include <stdbool.h>
#include <stdint.h>

#include "common/pg.h"
#include "config/config.h"
#include "policy/money.h"
#include "policy/tz.h"

/* --- operations and intents -------------------------------------------- */

enum pg_op {
    PG_OP_READ,        /* no money moves */
    PG_OP_PAYMENT,     /* money out: reserve against limits */
    PG_OP_REFUND,
    PG_OP_TRANSFER,
    PG_OP_PAYOUT,
    PG_OP_CONFIG,      /* registers URLs the rail will call (webhook endpoints) */
    PG_OP_FORBIDDEN,   /* never allowed through payguard (API keys, deletions) */
    PG_OP_COUNT
};

/* "payment", "refund", ...; parses back with pg_op_parse (-1 when unknown). */
const char *pg_op_name(enum pg_op op);
int pg_op_parse(struct pg_slice name);
/* Operations that count against spending limits and velocity. */
bool pg_op_moves_money(enum pg_op op);

/* What a money route does to the object it names, so the ledger can reserve
 * on create and adjust the reservation on follow-ups. */
enum pg_action {
    PG_ACT_NONE,       /* not money-related, or a refund */
    PG_ACT_CREATE,     /* moves new money: payment_intents, charges, transfers, payouts, topups */
    PG_ACT_UPDATE,     /* may change the amount before confirmation */
    PG_ACT_CONFIRM,    /* moves the money of an existing object */
    PG_ACT_CAPTURE,    /* captures up to the authorized amount */
    PG_ACT_CANCEL,     /* releases an authorization */
    PG_ACT_INCREMENT   /* raises an authorization to a new total */
};

#define PG_INTENT_MAX_URLS 4
#define PG_INTENT_SCRATCH 4096

/* What a request means, extracted from it by the rail's route table. Slices
 * point into the request (target or body) or into `scratch` (decoded
 * values), so an intent lives as long as both. */
struct pg_intent {
    bool matched;                      /* a route matched */
    enum pg_op op;
    const char *route;                 /* route name, e.g. "payment_intents.create" */
    enum pg_action action;
    bool has_amount;
    int64_t amount;                    /* minor units of `currency` */
    char currency[4];                  /* lowercase ISO 4217, "" when absent */
    struct pg_slice counterparty;      /* merchant, destination or customer */
    const char *counterparty_field;    /* where it came from, for messages */
    struct pg_slice object_id;         /* the {id} of follow-up routes */
    struct {
        const char *field;
        struct pg_slice url;
    } urls[PG_INTENT_MAX_URLS];
    uint32_t nurls;
    char scratch[PG_INTENT_SCRATCH];
    size_t scratch_used;
};

/* --- answers --------------------------------------------------------------- */

enum pg_verdict { PG_VERDICT_ALLOW, PG_VERDICT_DENY, PG_VERDICT_HOLD };

const char *pg_verdict_name(enum pg_verdict v);  /* "allow", "deny", "hold" */

/* A verdict with everything the agent and the human need to act on it. */
struct pg_decision {
    enum pg_verdict verdict;
    int status;                /* HTTP status for deny/hold: 400, 402, 403 */
    const char *reason;        /* "per_transaction_limit", ... (code is "payguard_" + reason) */
    const char *param;         /* the request field at fault, or NULL */
    const char *limit_name;    /* "daily", "per_transaction", ... or NULL */
    int64_t limit;             /* minor units, when limit_name is set */
    int64_t headroom;          /* what is left under that limit, >= 0 */
    char message[512];         /* for the agent (an LLM): what, why, what next */
};

/* --- route tables ------------------------------------------------------------ */

struct pg_routes;

/* Builds the route table of `rail`: its preset plus the routes written in
 * payguard.yaml (which win over the preset's). 0, PG_ENOMEM, or PG_ECONFIG
 * with `err` explaining. Called when a config is loaded; any thread. */
PG_WUR int pg_routes_build(const struct pg_rail *rail, struct pg_routes **out, char *err,
                           size_t errlen);
void pg_routes_free(struct pg_routes *r);

/* Classifies a request and extracts its intent. Returns 0 with *in filled
 * (in->matched false when no route matches), or PG_EPARSE with *bad filled
 * (a 400: malformed or missing money fields, unknown currency, a body that is
 * not what the route expects). `content_type` may be empty. Pure; any thread. */
PG_WUR int pg_rail_classify(const struct pg_routes *routes, struct pg_slice method,
                            struct pg_slice target, struct pg_slice content_type,
                            struct pg_slice body, struct pg_intent *in,
                            struct pg_decision *bad);

/* --- policies --------------------------------------------------------------- */

/* A policy with amounts in minor units and an agent's overrides applied. */
struct pg_policy;

/* Compiles the policy `agent` uses (its named policy with its own overrides).
 * An agent without a policy gets the default: reads only. 0, PG_ENOMEM, or
 * PG_ECONFIG with `err`. */
PG_WUR int pg_policy_compile(const struct pg_config *cfg, const struct pg_agent *agent,
                             struct pg_policy **out, char *err, size_t errlen);
void pg_policy_free(struct pg_policy *p);
/* Currency the limits are written in ("usd"). */
const char *pg_policy_currency(const struct pg_policy *p);

/* Spend already counted in the windows around `now` (posted + pending, in
 * the policy currency's minor units) and money operations in the velocity
 * period. Filled by the ledger from fresh values. */
struct pg_spend {
    int64_t day, week, month;
    uint32_t velocity_count;
};

/* The stateless rules, in the documented order: operation allowed, currency,
 * amount known, per-transaction limit, merchant lists, hours, then the
 * approval threshold. Fills *d; a HOLD here still has to pass the stateful
 * rules. Returns 0, or a negative code when it cannot decide (fail closed). */
PG_WUR int pg_policy_check(const struct pg_policy *p, const struct pg_agent *agent,
                           const struct pg_intent *in, const struct pg_tz *tz, int64_t now,
                           struct pg_decision *d);

/* The stateful rules on fresh values: velocity, then daily, weekly, monthly
 * limits (spend + amount <= limit). Runs inside the ledger's write
 * transaction. Leaves an ALLOW or HOLD from pg_policy_check in place when
 * everything fits, else turns *d into the DENY. 0 or negative as above. */
PG_WUR int pg_policy_check_spend(const struct pg_policy *p, const struct pg_agent *agent,
                                 const struct pg_intent *in, const struct pg_spend *spend,
                                 struct pg_decision *d);

/* Dry run for humans: evaluates every rule on its own and reports each
 * outcome ("pass", "deny", "hold", "not set", "not applicable") with the
 * decision that rule alone would give. 0, or PG_EPARSE for an unmatched
 * intent. No side effects. */
typedef void (*pg_policy_explain_cb)(void *arg, const char *rule, const char *outcome,
                                     const struct pg_decision *d);
PG_WUR int pg_policy_explain(const struct pg_policy *p, const struct pg_agent *agent,
                             const struct pg_intent *in, const struct pg_tz *tz, int64_t now,
                             const struct pg_spend *spend, pg_policy_explain_cb cb, void *arg);

/* Velocity period in seconds (0 when the policy sets none). */
uint32_t pg_policy_velocity_period(const struct pg_policy *p);
enum pg_limit_kind {
    PG_LIMIT_PER_TRANSACTION, PG_LIMIT_DAILY, PG_LIMIT_WEEKLY, PG_LIMIT_MONTHLY
};

/* A limit in minor units of `currency` (NULL: the policy's currency): 0 with
 * *out = -1 when the policy sets none, PG_ERANGE when it cannot be written in
 * that currency. For views (`payguard ledger show`). */
PG_WUR int pg_policy_limit(const struct pg_policy *p, enum pg_limit_kind k, const char *currency,
                           int64_t *out);

/* The agent's request rate (`rate:`): false when the policy sets none. */
bool pg_policy_rate(const struct pg_policy *p, uint32_t *requests, uint32_t *per_s,
                    uint32_t *burst);

/* True when a refund gives its amount back to the agent's spend. */
bool pg_policy_refunds_restore(const struct pg_policy *p);

/* --- what the rail's answer means for the money -------------------------- */

enum pg_outcome_kind {
    PG_OUTCOME_POST,       /* money moved: `amount` is what the rail reports */
    PG_OUTCOME_VOID,       /* definitely nothing moved (a decline, a refusal) */
    PG_OUTCOME_KEEP,       /* unknown or not yet (5xx, processing): stays pending */
    PG_OUTCOME_AUTHORIZED  /* held or pending at the rail for `amount` */
};

struct pg_outcome {
    enum pg_outcome_kind kind;
    int64_t amount;
    char object_id[65];    /* the object the answer names (pi_..., ch_..., pspReference), or "" */
};

const char *pg_outcome_name(enum pg_outcome_kind k);

/* Reads a rail's answer to a money request: Stripe objects by `object` and
 * `status` (payment_intent succeeded → POST amount_received, requires_capture
 * → AUTHORIZED, canceled → VOID, ...), Adyen by `resultCode`, generic rails by
 * status alone. 4xx → VOID (except 409), 5xx → KEEP. Pure; any thread. */
void pg_rail_outcome(enum pg_rail_preset preset, const struct pg_intent *in, int status,
                     struct pg_slice body, struct pg_outcome *out);

#endif /* PG_POLICY_H */
