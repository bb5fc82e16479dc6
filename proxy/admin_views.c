/* The admin API's views and actions behind a signed-in user: approvals,
 * agents and their budgets, the audit chain, policy dry runs. Each runs in
 * the thread pool (a job) and sees only the caller's org: another org's
 * object answers 404 exactly like one that does not exist. */
#include "common/pg.h"
#include "policy/money.h"
#include "policy/tz.h"
#include "proxy/admin_int.h"
#include "proxy/agent_view.h"

#include <stdio.h>
#include <time.h>
#include <stdlib.h>

static int64_t now_s(void)
{
    return (int64_t)(now_ms_wall() / 1000);
}

static json_t *time_json(int64_t t)
{
    if (t <= 0)
        return json_null();
    char buf[32];
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
    return json_string(buf);
}

/* "25.00" for 2500 usd; NULL when the currency is unknown. */
static json_t *amount_text(int64_t minor, const char *currency)
{
    char num[48];
    int exp = pg_money_exponent(pg_slice_cstr(currency));
    if (minor < 0 || exp < 0 || pg_money_format(minor, exp, num, sizeof(num)) < 0)
        return json_null();
    return json_string(num);
}

static void not_found(struct admin_job *j, const char *what)
{
    char msg[96];
    snprintf(msg, sizeof(msg), "No such %s.", what);
    admin_job_error(j, 404, "not_found", msg);
}

static void store_failed(struct admin_job *j)
{
    admin_job_error(j, 503, "unavailable", "payguard could not read the ledger; retry shortly.");
}

/* --- approvals ------------------------------------------------------------- */

static json_t *approval_json(const struct pg_approval *a)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    json_object_set_new(o, "id", json_string(a->id));
    json_object_set_new(o, "status", json_string(pg_approval_status_name(a->status)));
    json_object_set_new(o, "org", json_string(a->org));
    json_object_set_new(o, "agent", json_string(a->agent));
    json_object_set_new(o, "operation", json_string(pg_op_name(a->op)));
    json_object_set_new(o, "route", json_string(a->route ? a->route : ""));
    if (a->has_amount) {
        json_object_set_new(o, "amount", json_integer(a->amount));
        json_object_set_new(o, "amount_display", amount_text(a->amount, a->currency));
    } else {
        json_object_set_new(o, "amount", json_null());
    }
    json_object_set_new(o, "currency", json_string(a->currency));
    json_object_set_new(o, "counterparty", a->counterparty[0] ? json_string(a->counterparty) : json_null());
    json_object_set_new(o, "reason", json_string(a->reason));
    json_object_set_new(o, "created_at", time_json(a->created_at));
    json_object_set_new(o, "expires_at", time_json(a->expires_at));
    json_object_set_new(o, "decided_at", time_json(a->decided_at));
    json_object_set_new(o, "decided_by", a->decided_by[0] ? json_string(a->decided_by) : json_null());
    json_object_set_new(o, "note", a->note[0] ? json_string(a->note) : json_null());
    return o;
}

static int add_approval(void *arg, const struct pg_approval *a)
{
    json_t *o = approval_json(a);
    return o ? json_array_append_new(arg, o) : -1;
}

void admin_approvals_list(struct admin_job *j)
{
    json_t *arr = json_array();
    if (!arr || pg_ledger_approvals(j->srv->ledger, j->user->org, j->only_pending, now_s(),
                                    add_approval, arr) != 0) {
        json_decref(arr);
        store_failed(j);
        return;
    }
    j->out = json_pack("{s:o}", "approvals", arr);
}

/* The approval when it exists in the caller's org; else the 404 is set. */
static bool approval_of_org(struct admin_job *j, struct pg_approval *a)
{
    int rc = pg_ledger_approval_get(j->srv->ledger, j->id, now_s(), a);
    if (rc == PG_ENOTFOUND || (rc == 0 && strcmp(a->org, j->user->org) != 0)) {
        not_found(j, "approval");
        return false;
    }
    if (rc != 0) {
        store_failed(j);
        return false;
    }
    return true;
}

void admin_approval_get(struct admin_job *j)
{
    struct pg_approval a;
    if (approval_of_org(j, &a))
        j->out = approval_json(&a);
}

void admin_approval_decide(struct admin_job *j)
{
    struct pg_approval a;
    json_t *note = json_object_get(j->in, "note");
    if (note && (!json_is_string(note) || strlen(json_string_value(note)) > 250)) {
        admin_job_error(j, 400, "bad_request", "\"note\" is a string of at most 250 bytes.");
        return;
    }
    if (!approval_of_org(j, &a))
        return;
    bool approve = j->verb != 0;
    int rc = a.status == PG_APPROVAL_PENDING
                 ? pg_ledger_approval_decide(j->srv->ledger, j->id, approve, j->actor,
                                             note ? json_string_value(note) : NULL, now_s())
                 : PG_EBUSY;
    if (rc == PG_EBUSY) {
        /* Decided or expired meanwhile: say which. */
        if (pg_ledger_approval_get(j->srv->ledger, j->id, now_s(), &a) == 0 &&
            a.status == PG_APPROVAL_EXPIRED)
            admin_job_error(j, 409, "approval_expired", "This approval has expired; the agent must ask again.");
        else
            admin_job_error(j, 409, "approval_not_pending", "This approval was already decided.");
        return;
    }
    if (rc == PG_ENOTFOUND) {
        not_found(j, "approval");
        return;
    }
    if (rc != 0) {
        admin_job_error(j, 503, "unavailable", "payguard could not record the decision; retry shortly.");
        return;
    }
    if (pg_ledger_approval_get(j->srv->ledger, j->id, now_s(), &a) != 0) {
        store_failed(j);
        return;
    }
    j->out = approval_json(&a);
}

/* --- agents ---------------------------------------------------------------------- */

static const struct pg_agent *agent_of_org(struct admin_job *j)
{
    const struct pg_agent *a = pg_config_agent(j->rt->cfg, pg_slice_cstr(j->id));
    if (!a || strcmp(a->org, j->user->org) != 0) {
        not_found(j, "agent");
        return NULL;
    }
    return a;
}

/* Revoked in payguard.yaml, or in the ledger (with who and why). -1 when
 * the ledger cannot be read. */
static int revoked_json(struct admin_job *j, const struct pg_agent *a, json_t *o)
{
    struct pg_revocation rv;
    int rc = pg_ledger_agent_revoked(j->srv->ledger, a->id, &rv);
    if (rc != 0 && rc != PG_ENOTFOUND)
        return -1;
    json_object_set_new(o, "revoked", json_boolean(a->revoked || rc == 0));
    if (rc == 0)
        json_object_set_new(o, "revocation",
                            json_pack("{s:o,s:s,s:s}", "at", time_json(rv.at), "by", rv.actor,
                                      "reason", rv.reason));
    return 0;
}

static json_t *agent_summary(const struct pg_agent *a)
{
    json_t *rails = json_array();
    for (size_t i = 0; rails && i < a->nrails; i++)
        json_array_append_new(rails, json_string(a->rails[i]));
    return json_pack("{s:s,s:s,s:o,s:o}", "id", a->id, "org", a->org, "policy",
                     a->policy ? json_string(a->policy) : json_null(), "rails",
                     rails ? rails : json_array());
}

void admin_agents_list(struct admin_job *j)
{
    const struct pg_config *cfg = j->rt->cfg;
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < cfg->nagents; i++) {
        const struct pg_agent *a = &cfg->agents[i];
        if (strcmp(a->org, j->user->org) != 0)
            continue;
        json_t *o = agent_summary(a);
        if (!o || revoked_json(j, a, o) != 0) {
            json_decref(o);
            json_decref(arr);
            store_failed(j);
            return;
        }
        json_array_append_new(arr, o);
    }
    j->out = arr ? json_pack("{s:o}", "agents", arr) : NULL;
}

static json_t *spec_json(const struct pg_policy_spec *p)
{
    json_t *o = json_object();
#define S(k) json_object_set_new(o, #k, p && p->k ? json_string(p->k) : json_null())
    S(currency);
    S(per_transaction);
    S(daily);
    S(weekly);
    S(monthly);
    S(approval_above);
    S(auto_approve_below);
#undef S
    json_t *ops = json_array(), *curs = json_array();
    for (size_t i = 0; p && i < p->noperations; i++)
        json_array_append_new(ops, json_string(p->operations[i]));
    for (size_t i = 0; p && i < p->ncurrencies; i++)
        json_array_append_new(curs, json_string(p->currencies[i]));
    json_object_set_new(o, "operations", ops);
    json_object_set_new(o, "currencies", curs);
    if (p && p->velocity_max)
        json_object_set_new(o, "velocity", json_pack("{s:i,s:i}", "max", (int)p->velocity_max,
                                                     "per_s", (int)p->velocity_per_s));
    return o;
}

static int add_pending(void *arg, const struct pg_reservation_view *r)
{
    json_t *o = json_pack("{s:I,s:I,s:o,s:s,s:o,s:s,s:o}", "id", (json_int_t)r->id, "amount",
                          (json_int_t)r->amount, "amount_display", amount_text(r->amount, r->currency),
                          "currency", r->currency, "created_at", time_json(r->created_at), "route",
                          r->route ? r->route : "", "object_id",
                          r->object_id[0] ? json_string(r->object_id) : json_null());
    return o ? json_array_append_new(arg, o) : -1;
}

void admin_agent_get(struct admin_job *j)
{
    const struct pg_agent *a = agent_of_org(j);
    if (!a)
        return;
    const struct pg_config *cfg = j->rt->cfg;
    size_t ai = (size_t)(a - cfg->agents);
    struct pg_agent_view v;
    int64_t now = now_s();
    if (pg_agent_view(j->srv->ledger, cfg, a, j->rt->policies[ai], now, &v) != 0) {
        store_failed(j);
        return;
    }
    json_t *o = agent_summary(a);
    json_t *windows = json_array(), *pending = json_array();
    if (!o || !windows || !pending || revoked_json(j, a, o) != 0 ||
        pg_ledger_pending(j->srv->ledger, a->id, add_pending, pending) != 0) {
        json_decref(o);
        json_decref(windows);
        json_decref(pending);
        store_failed(j);
        return;
    }
    for (int i = 0; i < 3; i++) {
        const struct pg_window_view *w = &v.w[i];
        json_array_append_new(
            windows, json_pack("{s:s,s:I,s:I,s:o,s:o,s:o,s:o,s:o}", "window", w->name, "posted",
                               (json_int_t)w->posted, "pending", (json_int_t)w->pending, "limit",
                               w->limit >= 0 ? json_integer(w->limit) : json_null(), "headroom",
                               w->headroom >= 0 ? json_integer(w->headroom) : json_null(),
                               "posted_display", amount_text(w->posted, v.currency),
                               "limit_display", w->limit >= 0 ? amount_text(w->limit, v.currency) : json_null(),
                               "headroom_display",
                               w->headroom >= 0 ? amount_text(w->headroom, v.currency) : json_null()));
    }
    json_object_set_new(o, "policy_rules",
                        spec_json(a->policy ? pg_config_policy(cfg, pg_slice_cstr(a->policy)) : NULL));
    json_object_set_new(o, "has_overrides", json_boolean(a->overrides != NULL));
    json_object_set_new(o, "currency", json_string(v.currency));
    json_object_set_new(o, "timezone", json_string(v.zone));
    json_object_set_new(o, "spend", windows);
    if (v.velocity_period_s)
        json_object_set_new(o, "velocity", json_pack("{s:i,s:i}", "count", (int)v.velocity_count,
                                                     "period_s", (int)v.velocity_period_s));
    json_object_set_new(o, "pending_reservations", pending);
    j->out = o;
}

void admin_agent_revoke(struct admin_job *j)
{
    json_t *reason = json_object_get(j->in, "reason");
    if (reason && (!json_is_string(reason) || strlen(json_string_value(reason)) > 250)) {
        admin_job_error(j, 400, "bad_request", "\"reason\" is a string of at most 250 bytes.");
        return;
    }
    const struct pg_agent *a = agent_of_org(j);
    if (!a)
        return;
    bool revoke = j->verb != 0;
    int rc = pg_ledger_agent_revoke(j->srv->ledger, a->org, a->id, revoke, j->actor,
                                    reason ? json_string_value(reason) : "", now_s());
    if (rc == PG_ENOTFOUND) {
        admin_job_error(j, 409, "not_revoked", "This agent is not revoked in the ledger.");
        return;
    }
    if (rc != 0) {
        admin_job_error(j, 503, "unavailable", "payguard could not record it; retry shortly.");
        return;
    }
    json_t *o = agent_summary(a);
    if (!o || revoked_json(j, a, o) != 0) {
        json_decref(o);
        store_failed(j);
        return;
    }
    j->out = o;
}

/* --- audit -------------------------------------------------------------------------- */

static int add_entry(void *arg, uint64_t seq, const char *line, size_t len)
{
    (void)seq;
    json_t *e = json_loadb(line, len, 0, NULL);
    return e ? json_array_append_new(arg, e) : 0;
}

void admin_audit_page(struct admin_job *j)
{
    json_t *arr = json_array();
    uint64_t next = j->after, head = 0;
    if (!arr || j->after == UINT64_MAX ||
        pg_ledger_audit_page(j->srv->ledger, j->user->org, j->after, j->limit, add_entry, arr,
                             &next) != 0 ||
        pg_ledger_audit_head(j->srv->ledger, j->user->org, &head) != 0) {
        json_decref(arr);
        store_failed(j);
        return;
    }
    j->out = json_pack("{s:s,s:o,s:I,s:I}", "org", j->user->org, "entries", arr, "next",
                       (json_int_t)next, "head_seq", (json_int_t)head);
}

struct verify_out {
    json_t *json;
    struct pg_audit_report bad;      /* the broken chain's report, when one is */
    bool broken;
};

static void verify_cb(void *arg, const struct pg_audit_report *r)
{
    struct verify_out *v = arg;
    json_t **out = &v->json;
    if (!r->ok) {
        v->bad = *r;
        v->broken = true;
    }
    char hex[2 * PG_SHA256_LEN + 1];
    if (pg_hex_encode(r->head_hash, sizeof(r->head_hash), hex, sizeof(hex)) < 0)
        hex[0] = '\0';
    json_decref(*out);
    *out = json_pack("{s:s,s:b,s:I,s:I,s:s}", "org", r->org, "ok", r->ok, "entries",
                     (json_int_t)r->count, "head_seq", (json_int_t)r->head_seq, "head_hash", hex);
    if (*out && !r->ok) {
        json_object_set_new(*out, "bad_seq", json_integer((json_int_t)r->bad_seq));
        json_object_set_new(*out, "why", json_string(r->why));
    }
}

void admin_audit_verify(struct admin_job *j)
{
    struct verify_out v = { 0 };
    if (pg_ledger_audit_verify(j->srv->ledger, j->user->org, verify_cb, &v) != 0 || !v.json) {
        json_decref(v.json);
        store_failed(j);
        return;
    }
    /* A broken chain is news for the humans watching it: the
     * audit.verify_failed webhook, when one subscribes. The answer stands
     * even if the event cannot be written. */
    if (v.broken && pg_ledger_audit_verify_failed(j->srv->ledger, &v.bad, (int64_t)time(NULL)) != 0)
        json_object_set_new(v.json, "event_error", json_string("the audit.verify_failed event could not be recorded"));
    j->out = v.json;
}

/* --- policy dry run ------------------------------------------------------------------ */

static void explain_cb(void *arg, const char *rule, const char *outcome, const struct pg_decision *d)
{
    json_t *o = json_pack("{s:s,s:s}", "rule", rule, "outcome", outcome);
    if (o && (strcmp(outcome, "deny") == 0 || strcmp(outcome, "hold") == 0) && d->reason)
        json_object_set_new(o, "reason", json_string(d->reason));
    if (o)
        json_array_append_new(arg, o);
}

/* The spent amounts of the body ({"daily": "12.00", ...}) in minor units. */
static bool read_spent(json_t *spent, const char *cur, struct pg_spend *s, char *why, size_t cap)
{
    if (!spent)
        return true;
    if (!json_is_object(spent)) {
        snprintf(why, cap, "\"spent\" is an object like {\"daily\": \"12.00\"}.");
        return false;
    }
    const char *names[3] = { "daily", "weekly", "monthly" };
    int64_t *slots[3] = { &s->day, &s->week, &s->month };
    const char *k;
    json_t *v;
    json_object_foreach(spent, k, v) {
        int i = 0;
        while (i < 3 && strcmp(k, names[i]) != 0)
            i++;
        const char *e = NULL;
        int exp = pg_money_exponent(pg_slice_cstr(cur));
        if (i == 3 || !json_is_string(v) || exp < 0 ||
            pg_money_parse_decimal(pg_slice_cstr(json_string_value(v)), exp, slots[i], &e) != 0) {
            snprintf(why, cap, "\"spent\": %s takes an amount string in %s (\"12.00\")%s%s.", k,
                     cur[0] ? cur : "the request's currency", e ? ": " : "", e ? e : "");
            return false;
        }
    }
    return true;
}

void admin_policy_test(struct admin_job *j)
{
    const struct pg_config *cfg = j->rt->cfg;
    const char *agent_id = json_string_value(json_object_get(j->in, "agent"));
    const char *method = json_string_value(json_object_get(j->in, "method"));
    const char *path = json_string_value(json_object_get(j->in, "path"));
    json_t *jbody = json_object_get(j->in, "body"), *jct = json_object_get(j->in, "content_type"),
           *jrail = json_object_get(j->in, "rail"), *jat = json_object_get(j->in, "at"),
           *jvel = json_object_get(j->in, "velocity");
    if (!agent_id || !method || !path || (jbody && !json_is_string(jbody)) ||
        (jct && !json_is_string(jct)) || (jrail && !json_is_string(jrail)) ||
        (jat && !json_is_integer(jat)) ||
        (jvel && (!json_is_integer(jvel) || json_integer_value(jvel) < 0 ||
                  json_integer_value(jvel) > 1000000))) {
        admin_job_error(j, 400, "bad_request",
                        "Send {\"agent\", \"method\", \"path\"} and optionally \"body\", \"content_type\", \"rail\", \"at\" (Unix seconds), \"spent\" ({\"daily\": \"12.00\"}) and \"velocity\".");
        return;
    }
    snprintf(j->id, sizeof(j->id), "%s", agent_id);
    const struct pg_agent *a = agent_of_org(j);
    if (!a)
        return;
    size_t ai = (size_t)(a - cfg->agents);
    const char *rail_name = jrail ? json_string_value(jrail) : a->rails[0];
    bool allowed = false;
    for (size_t i = 0; i < a->nrails && !allowed; i++)
        allowed = strcmp(a->rails[i], rail_name) == 0;
    const struct pg_rail *rail = allowed ? pg_config_rail(cfg, pg_slice_cstr(rail_name)) : NULL;
    const struct pg_org *org = pg_config_org(cfg, pg_slice_cstr(a->org));
    if (!rail || !org || !org->tz) {
        admin_job_error(j, 400, "bad_request", "This agent may not use that rail.");
        return;
    }
    size_t ri = (size_t)(rail - cfg->rails);
    const struct pg_policy *pol = j->rt->policies[ai];
    const char *body = jbody ? json_string_value(jbody) : "";
    const char *ctype = jct ? json_string_value(jct)
                        : !body[0]                   ? ""
                        : rail->format == PG_BODY_JSON ? "application/json"
                                                       : "application/x-www-form-urlencoded";
    int64_t now = jat ? (int64_t)json_integer_value(jat) : now_s();
    struct pg_intent *in = calloc(1, sizeof(*in));
    struct pg_decision d;
    memset(&d, 0, sizeof(d));
    if (!in) {
        admin_job_error(j, 503, "unavailable", "Out of memory; retry shortly.");
        return;
    }
    json_t *o = json_object(), *rules = json_array();
    int rc = pg_rail_classify(j->rt->routes[ri], pg_slice_cstr(method), pg_slice_cstr(path),
                              pg_slice_cstr(ctype), pg_slice_cstr(body), in, &d);
    json_object_set_new(o, "agent", json_string(a->id));
    json_object_set_new(o, "rail", json_string(rail->name));
    if (rc == PG_EPARSE) {
        json_object_set_new(o, "decision", json_string("deny"));
        json_object_set_new(o, "reason", json_string(d.reason ? d.reason : "bad_request"));
        json_object_set_new(o, "status", json_integer(d.status));
        json_object_set_new(o, "message", json_string(d.message));
        goto done;
    }
    if (rc != 0) {
        admin_job_error(j, 503, "unavailable", "payguard could not classify the request.");
        goto done;
    }
    if (!in->matched) {
        bool pass = rail->unmatched == PG_UNMATCHED_PASS;
        json_object_set_new(o, "operation", json_null());
        json_object_set_new(o, "decision", json_string(pass ? "allow" : "deny"));
        if (!pass) {
            json_object_set_new(o, "reason", json_string("unknown_operation"));
            json_object_set_new(o, "status", json_integer(403));
        }
        goto done;
    }
    const char *cur = in->currency[0] ? in->currency : pg_policy_currency(pol);
    struct pg_spend spend = { 0, 0, 0, jvel ? (uint32_t)json_integer_value(jvel) : 0 };
    char why[256];
    if (!read_spent(json_object_get(j->in, "spent"), cur, &spend, why, sizeof(why))) {
        admin_job_error(j, 400, "bad_request", why);
        goto done;
    }
    json_object_set_new(o, "operation", json_string(pg_op_name(in->op)));
    json_object_set_new(o, "route", json_string(in->route));
    if (in->has_amount) {
        json_object_set_new(o, "amount", json_integer(in->amount));
        json_object_set_new(o, "currency", json_string(in->currency));
    }
    if (in->counterparty.len)
        json_object_set_new(o, "counterparty",
                            json_stringn(in->counterparty.ptr, in->counterparty.len));
    if (pg_policy_explain(pol, a, in, org->tz, now, &spend, explain_cb, rules) != 0 ||
        pg_policy_check(pol, a, in, org->tz, now, &d) != 0 ||
        pg_policy_check_spend(pol, a, in, &spend, &d) != 0) {
        admin_job_error(j, 503, "unavailable", "payguard could not decide.");
        goto done;
    }
    json_object_set_new(o, "decision", json_string(pg_verdict_name(d.verdict)));
    if (d.verdict != PG_VERDICT_ALLOW) {
        json_object_set_new(o, "reason", json_string(d.reason));
        json_object_set_new(o, "status", json_integer(d.status));
    }
    if (d.message[0])
        json_object_set_new(o, "message", json_string(d.message));
done:
    json_object_set_new(o, "rules", rules);
    free(in);
    if (j->err_code)
        json_decref(o);
    else
        j->out = o;
}
