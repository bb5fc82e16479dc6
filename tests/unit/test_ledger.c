/* The ledger against real LMDB files in fresh directories, driven the way the
 * proxy drives it: requests submitted on a real uv loop, decided by the
 * writer thread in group-committed batches, completed through uv_async.
 * Windows, exact limits through BEGIN, every reservation transition (legal
 * and illegal), the idempotency state machine across reopen, approvals,
 * concurrency inside one batch, pruning, map growth, permissions. */
#include "common/pg.h"
#include "config/config.h"
#include "ledger/ledger.h"
#include "policy/policy.h"
#include "policy/tz.h"

#include <dirent.h>
#include <lmdb.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <errno.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#define DAY INT64_C(86400)
#define USD(major) ((int64_t)(major) * 100)

static const char yaml[] =
    "rails:\n"
    "  stripe: {upstream: \"https://api.stripe.com\", secret: env:PG_TEST_UNUSED}\n"
    "orgs:\n"
    "  acme: {timezone: UTC}\n"
    "  globex: {timezone: Europe/Paris}\n"
    "policies:\n"
    "  limits:\n"
    "    currency: usd\n"
    "    daily: \"500.00\"\n"
    "    weekly: \"1000.00\"\n"
    "    monthly: \"2000.00\"\n"
    "    currencies: [usd, eur]\n"
    "    operations: [payment, refund, read]\n"
    "  approve:\n"
    "    currency: usd\n"
    "    approval_above: \"100.00\"\n"
    "    daily: \"1000.00\"\n"
    "    operations: [payment, refund, read]\n"
    "  fast:\n"
    "    currency: usd\n"
    "    velocity: {max: 3, per: 1m}\n"
    "    operations: [payment, refund, read]\n"
    "  restore:\n"
    "    currency: usd\n"
    "    daily: \"100.00\"\n"
    "    refunds_restore: true\n"
    "    operations: [payment, refund, read]\n"
    "  open:\n"
    "    currency: usd\n"
    "    operations: [payment, refund, transfer, payout, read]\n"
    "agents:\n"
    "  - {id: lim, org: acme, token: \"$2b$10$CwTycUXWue0Thq9StjUM0uJ8DPLKSGfYVRkvDyfZsQvDFbm7Fb8ta\", rails: [stripe], policy: limits}\n"
    "  - {id: appr, org: acme, token: \"$2b$10$CwTycUXWue0Thq9StjUM0uJ8DPLKSGfYVRkvDyfZsQvDFbm7Fb8tb\", rails: [stripe], policy: approve}\n"
    "  - {id: fast, org: acme, token: \"$2b$10$CwTycUXWue0Thq9StjUM0uJ8DPLKSGfYVRkvDyfZsQvDFbm7Fb8tc\", rails: [stripe], policy: fast}\n"
    "  - {id: rest, org: acme, token: \"$2b$10$CwTycUXWue0Thq9StjUM0uJ8DPLKSGfYVRkvDyfZsQvDFbm7Fb8td\", rails: [stripe], policy: restore}\n"
    "  - {id: open, org: acme, token: \"$2b$10$CwTycUXWue0Thq9StjUM0uJ8DPLKSGfYVRkvDyfZsQvDFbm7Fb8te\", rails: [stripe], policy: open}\n"
    "  - {id: paris, org: globex, token: \"$2b$10$CwTycUXWue0Thq9StjUM0uJ8DPLKSGfYVRkvDyfZsQvDFbm7Fb8tf\", rails: [stripe], policy: limits}\n";

static const char *const agent_ids[] = { "lim", "appr", "fast", "rest", "open", "paris" };
#define NAGENTS (sizeof(agent_ids) / sizeof(agent_ids[0]))

/* The config and compiled policies live for the whole group. */
static struct {
    struct pg_config *cfg;
    struct pg_policy *pol[NAGENTS];
} G;

/* One ledger in a fresh directory per test. */
static struct {
    char root[64];
    char dir[128];
    struct pg_ledger_options opt;
    struct pg_ledger *l;
    uv_loop_t loop;
    int completed;
} T;

/* 2026-11-23 12:00 UTC, a Monday. */
static int64_t utc(int y, int mo, int d, int h, int mi)
{
    struct tm tm = { 0 };
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    return (int64_t)timegm(&tm);
}
#define MONDAY utc(2026, 11, 23, 12, 0)

/* --- fixtures ------------------------------------------------------------- */

static int group_setup(void **state)
{
    (void)state;
    char path[] = "/tmp/pg-test-ledger-cfg-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, yaml, sizeof(yaml) - 1), (ssize_t)(sizeof(yaml) - 1));
    close(fd);
    struct pg_config_errors errs = { 0 };
    int rc = pg_config_load(path, false, &G.cfg, &errs);
    for (size_t i = 0; i < errs.count; i++)
        fprintf(stderr, "%s\n", errs.msgs[i]);
    pg_config_errors_free(&errs);
    unlink(path);
    assert_int_equal(rc, 0);
    for (size_t i = 0; i < NAGENTS; i++) {
        char err[256];
        const struct pg_agent *a = pg_config_agent(G.cfg, pg_slice_cstr(agent_ids[i]));
        assert_non_null(a);
        assert_int_equal(pg_policy_compile(G.cfg, a, &G.pol[i], err, sizeof(err)), 0);
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    for (size_t i = 0; i < NAGENTS; i++)
        pg_policy_free(G.pol[i]);
    pg_config_free(G.cfg);
    return 0;
}

static void rm_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char p[PATH_MAX];
        snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
            rm_tree(p);
        else
            unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static void ledger_open(void)
{
    char err[256];
    int rc = pg_ledger_open(&T.opt, &T.l, err, sizeof(err));
    if (rc != 0)
        fail_msg("open: %s", err);
    assert_int_equal(pg_ledger_start(T.l, &T.loop), 0);
}

static void ledger_close(void)
{
    pg_ledger_close(T.l);
    T.l = NULL;
    uv_run(&T.loop, UV_RUN_DEFAULT); /* lets the async handle's close callback free it */
}

static void ledger_reopen(void)
{
    ledger_close();
    ledger_open();
}

static int setup_opts(void **state, uint64_t map_size, uint64_t map_max)
{
    (void)state;
    memset(&T, 0, sizeof(T));
    snprintf(T.root, sizeof(T.root), "/tmp/pg-test-ledger-XXXXXX");
    assert_non_null(mkdtemp(T.root));
    snprintf(T.dir, sizeof(T.dir), "%s/ledger", T.root);
    T.opt.dir = T.dir;
    T.opt.map_size = map_size;
    T.opt.map_size_max = map_max;
    T.opt.idempotency_ttl_s = 3600;
    T.opt.approval_ttl_s = 3600;
    assert_int_equal(uv_loop_init(&T.loop), 0);
    ledger_open();
    return 0;
}

static int setup(void **state)
{
    return setup_opts(state, 0, 0);
}

static int teardown(void **state)
{
    (void)state;
    if (T.l)
        ledger_close();
    assert_int_equal(uv_loop_close(&T.loop), 0);
    rm_tree(T.root);
    return 0;
}

/* --- requests, built and decided as the proxy does -------------------------------- */

static size_t agent_index(const char *agent)
{
    for (size_t i = 0; i < NAGENTS; i++)
        if (strcmp(agent_ids[i], agent) == 0)
            return i;
    fail_msg("no agent %s", agent);
    return 0;
}

static const struct pg_agent *agent_cfg(const char *agent)
{
    return pg_config_agent(G.cfg, pg_slice_cstr(agent));
}

static const struct pg_tz *tz_of(const char *agent)
{
    const struct pg_org *org = pg_config_org(G.cfg, pg_slice_cstr(agent_cfg(agent)->org));
    assert_non_null(org);
    return org->tz;
}

static void on_done(struct pg_ledger_req *r)
{
    (void)r;
    T.completed++;
}

static const char *route_of(enum pg_op op, enum pg_action act)
{
    if (op == PG_OP_REFUND)
        return "refunds.create";
    switch (act) {
    case PG_ACT_CREATE: return "payment_intents.create";
    case PG_ACT_CONFIRM: return "payment_intents.confirm";
    case PG_ACT_CAPTURE: return "payment_intents.capture";
    case PG_ACT_CANCEL: return "payment_intents.cancel";
    case PG_ACT_INCREMENT: return "payment_intents.increment_authorization";
    case PG_ACT_UPDATE: return "payment_intents.update";
    case PG_ACT_NONE: break;
    }
    return "charges.create";
}

/* A BEGIN of `amount` minor units (-1: none) with an Idempotency-Key. */
static struct pg_ledger_req *mk(const char *agent, const char *key, enum pg_op op,
                                enum pg_action act, int64_t amount, int64_t now)
{
    struct pg_ledger_req *r = calloc(1, sizeof(*r));
    assert_non_null(r);
    const struct pg_agent *a = agent_cfg(agent);
    r->kind = PG_LEDGER_BEGIN;
    r->cb = on_done;
    snprintf(r->org, sizeof(r->org), "%s", a->org);
    snprintf(r->agent, sizeof(r->agent), "%s", agent);
    snprintf(r->idem_key, sizeof(r->idem_key), "%s", key ? key : "");
    r->now = now;
    r->op = op;
    r->action = act;
    r->route = route_of(op, act);
    r->has_amount = amount >= 0;
    r->amount = amount >= 0 ? amount : 0;
    if (amount >= 0)
        memcpy(r->currency, "usd", 4);
    r->policy = G.pol[agent_index(agent)];
    r->agent_cfg = a;
    return r;
}

static struct pg_ledger_req *pay(const char *agent, const char *key, int64_t amount, int64_t now)
{
    return mk(agent, key, PG_OP_PAYMENT, PG_ACT_CREATE, amount, now);
}

/* What the proxy computes before BEGIN: windows in the org's zone, the
 * request fingerprint, the stateless verdict. */
static void prep(struct pg_ledger_req *r)
{
    char body[512];
    snprintf(body, sizeof(body), "%d|%d|%lld|%s|%s|%s", (int)r->op, (int)r->action,
             r->has_amount ? (long long)r->amount : -1LL, r->currency, r->object_id,
             r->counterparty);
    assert_int_equal(pg_sha256(body, strlen(body), r->fingerprint), 0);
    pg_tz_windows(tz_of(r->agent), r->now, &r->windows);
    struct pg_intent in;
    memset(&in, 0, sizeof(in));
    in.matched = true;
    in.op = r->op;
    in.action = r->action;
    in.route = r->route;
    in.has_amount = r->has_amount;
    in.amount = r->amount;
    memcpy(in.currency, r->currency, sizeof(in.currency));
    in.counterparty = pg_slice_cstr(r->counterparty);
    in.object_id = pg_slice_cstr(r->object_id);
    assert_int_equal(pg_policy_check(r->policy, r->agent_cfg, &in, tz_of(r->agent), r->now,
                                     &r->decision),
                     0);
}

static struct pg_ledger_req *mks(const char *agent, const char *key, uint64_t resv,
                                 enum pg_settle_outcome o, int64_t amount, int64_t now)
{
    struct pg_ledger_req *r = calloc(1, sizeof(*r));
    assert_non_null(r);
    r->kind = PG_LEDGER_SETTLE;
    r->cb = on_done;
    snprintf(r->org, sizeof(r->org), "%s", agent_cfg(agent)->org);
    snprintf(r->agent, sizeof(r->agent), "%s", agent);
    snprintf(r->idem_key, sizeof(r->idem_key), "%s", key ? key : "");
    r->now = now;
    r->op = PG_OP_PAYMENT;
    r->reservation = resv;
    r->outcome = o;
    r->settle_amount = amount;
    return r;
}

static void with_response(struct pg_ledger_req *r, int status, const char *head, const void *body,
                          size_t body_len)
{
    r->store_response = true;
    r->response.status = status;
    r->response.head = (char *)(uintptr_t)head;
    r->response.head_len = strlen(head);
    r->response.body = (char *)(uintptr_t)body;
    r->response.body_len = body_len;
}

static void run(struct pg_ledger_req **rs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (rs[i]->kind == PG_LEDGER_BEGIN)
            prep(rs[i]);
    T.completed = 0;
    assert_int_equal(pg_ledger_submit_many(T.l, rs, n), 0);
    while (T.completed < (int)n)
        uv_run(&T.loop, UV_RUN_ONCE);
}

static struct pg_ledger_req *run1(struct pg_ledger_req *r)
{
    run(&r, 1);
    return r;
}

static void done(struct pg_ledger_req *r)
{
    pg_ledger_req_free(r);
    free(r);
}

/* Runs a BEGIN and checks the result; returns the reservation. */
static uint64_t expect_begin(struct pg_ledger_req *r, enum pg_begin_result want, const char *reason)
{
    run1(r);
    if (r->status != 0 || r->result != want ||
        (reason && (!r->decision.reason || strcmp(r->decision.reason, reason) != 0)))
        fail_msg("%s %s: status %d result %d reason %s (%s), want result %d reason %s", r->agent,
                 r->idem_key, r->status, (int)r->result,
                 r->decision.reason ? r->decision.reason : "-", r->decision.message, (int)want,
                 reason ? reason : "-");
    uint64_t id = r->reservation;
    done(r);
    return id;
}

static void expect_settle(struct pg_ledger_req *r)
{
    run1(r);
    assert_int_equal(r->status, 0);
    done(r);
}

static void spend_at(const char *agent, const char *cur, int64_t now, struct pg_spend *posted,
                     struct pg_spend *pending)
{
    struct pg_windows w;
    pg_tz_windows(tz_of(agent), now, &w);
    assert_int_equal(pg_ledger_spend(T.l, agent, cur, &w, now, 60, posted, pending), 0);
}

static void expect_day(const char *agent, int64_t now, int64_t posted, int64_t pending)
{
    struct pg_spend p, q;
    spend_at(agent, "usd", now, &p, &q);
    if (p.day != posted || q.day != pending)
        fail_msg("%s day: posted %lld pending %lld, want %lld %lld", agent, (long long)p.day,
                 (long long)q.day, (long long)posted, (long long)pending);
}

struct chain {
    const char *org;
    struct pg_audit_report r;
    int reports;
};

static void chain_cb(void *arg, const struct pg_audit_report *r)
{
    struct chain *c = arg;
    if (strcmp(r->org, c->org) == 0)
        c->r = *r;
    c->reports++;
}

/* Verifies the org's chain and returns its length. */
static uint64_t audit_len(const char *org)
{
    struct chain c;
    memset(&c, 0, sizeof(c));
    c.org = org;
    assert_int_equal(pg_ledger_audit_verify(T.l, org, chain_cb, &c), 0);
    if (!c.r.ok)
        fail_msg("audit %s: bad seq %llu: %s", org, (unsigned long long)c.r.bad_seq, c.r.why);
    return c.r.count;
}

struct lines {
    char buf[16][2048];
    size_t n;
};

static int line_cb(void *arg, const char *json, size_t len)
{
    struct lines *l = arg;
    if (l->n < 16) {
        snprintf(l->buf[l->n], sizeof(l->buf[0]), "%.*s", (int)len, json);
        l->n++;
    }
    return 0;
}

/* The newest audit entry of an agent. */
static void last_entry(const char *agent, char *out, size_t cap)
{
    struct lines l;
    memset(&l, 0, sizeof(l));
    assert_int_equal(pg_ledger_audit_recent(T.l, agent_cfg(agent)->org, agent, 1, line_cb, &l), 0);
    assert_int_equal(l.n, 1);
    snprintf(out, cap, "%s", l.buf[0]);
}

static void expect_last_entry_has(const char *agent, const char *needle)
{
    char line[2048];
    last_entry(agent, line, sizeof(line));
    if (!strstr(line, needle))
        fail_msg("last entry of %s lacks %s: %s", agent, needle, line);
}

/* --- the environment ------------------------------------------------------ */

static void test_permissions(void **state)
{
    (void)state;
    struct stat st;
    assert_int_equal(stat(T.dir, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0700);
    char p[PATH_MAX];
    snprintf(p, sizeof(p), "%s/data.mdb", T.dir);
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    snprintf(p, sizeof(p), "%s/lock.mdb", T.dir);
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
}

static void test_open_errors(void **state)
{
    (void)state;
    char err[256];
    struct pg_ledger *l = (struct pg_ledger *)1;
    struct pg_ledger_options o = { 0 };
    assert_int_equal(pg_ledger_open(&o, &l, err, sizeof(err)), PG_EPARSE);
    assert_null(l);
    assert_true(err[0] != '\0');
    /* A missing parent is not created: only the last component is. */
    char deep[256];
    snprintf(deep, sizeof(deep), "%s/no/such", T.root);
    o.dir = deep;
    assert_int_equal(pg_ledger_open(&o, &l, err, sizeof(err)), PG_ESTORE);
    assert_non_null(strstr(err, deep));
    /* Read-only needs an existing ledger. */
    char fresh[256];
    snprintf(fresh, sizeof(fresh), "%s/fresh", T.root);
    assert_int_equal(mkdir(fresh, 0700), 0);
    o.dir = fresh;
    o.read_only = true;
    assert_true(pg_ledger_open(&o, &l, err, sizeof(err)) < 0);
    assert_true(err[0] != '\0');
}

static void test_read_only_views(void **state)
{
    (void)state;
    expect_begin(pay("lim", "k1", USD(10), MONDAY), PG_BEGIN_PROCEED, NULL);
    /* A second environment handle in this process is not allowed by LMDB:
     * close ours first, as the CLI is another process. */
    ledger_close();
    char err[256];
    struct pg_ledger_options o = T.opt;
    o.read_only = true;
    assert_int_equal(pg_ledger_open(&o, &T.l, err, sizeof(err)), 0);
    assert_int_equal(pg_ledger_start(T.l, &T.loop), PG_EBUSY);
    assert_false(pg_ledger_ready(T.l));
    expect_day("lim", MONDAY, 0, USD(10));
    assert_int_equal(audit_len("acme"), 1);
    assert_int_equal(pg_ledger_approval_decide(T.l, "apr_x", true, "user:a@b", NULL, MONDAY),
                     PG_EBUSY);
}

static void test_submit_before_start_and_ready(void **state)
{
    (void)state;
    ledger_close();
    char err[256];
    assert_int_equal(pg_ledger_open(&T.opt, &T.l, err, sizeof(err)), 0);
    assert_false(pg_ledger_ready(T.l));
    struct pg_ledger_req *r = pay("lim", "k", USD(1), MONDAY);
    assert_int_equal(pg_ledger_submit(T.l, r), PG_EBUSY);
    assert_int_equal(pg_ledger_start(T.l, &T.loop), 0);
    assert_true(pg_ledger_ready(T.l));
    assert_int_equal(pg_ledger_start(T.l, &T.loop), PG_EBUSY);
    r->cb = NULL;
    assert_int_equal(pg_ledger_submit(T.l, r), PG_EPARSE);
    done(r);
}

static void test_reopen_keeps_everything(void **state)
{
    (void)state;
    uint64_t id = expect_begin(pay("lim", "k1", USD(100), MONDAY), PG_BEGIN_PROCEED, NULL);
    struct pg_ledger_req *s = mks("lim", "k1", id, PG_SETTLE_POST, USD(100), MONDAY + 1);
    with_response(s, 200, "HTTP/1.1 200 OK\r\n\r\n", "{}", 2);
    expect_settle(s);
    expect_begin(pay("lim", "k2", USD(7), MONDAY + 2), PG_BEGIN_PROCEED, NULL);
    uint64_t n = audit_len("acme");
    ledger_reopen();
    expect_day("lim", MONDAY + 3, USD(100), USD(7));
    assert_int_equal(audit_len("acme"), n);
    struct pg_ledger_req *r = run1(pay("lim", "k1", USD(100), MONDAY + 4));
    assert_int_equal(r->result, PG_BEGIN_REPLAY);
    assert_int_equal(r->replay.status, 200);
    done(r);
    /* Reservation ids keep counting after a reopen. */
    uint64_t id3 = expect_begin(pay("lim", "k3", USD(1), MONDAY + 5), PG_BEGIN_PROCEED, NULL);
    assert_true(id3 > id);
}

/* --- windows and limits ------------------------------------------------------------ */

static void post_at(const char *agent, const char *key, int64_t amount, int64_t when)
{
    uint64_t id = expect_begin(pay(agent, key, amount, when), PG_BEGIN_PROCEED, NULL);
    expect_settle(mks(agent, key, id, PG_SETTLE_POST, amount, when));
}

static void test_windows_accounting(void **state)
{
    (void)state;
    /* open: no limits. Nov 2026: Sun 1st, Mon 23rd. */
    post_at("open", "oct31", USD(20), utc(2026, 10, 31, 10, 0)); /* last month, week of Oct 26 */
    post_at("open", "nov1", USD(30), utc(2026, 11, 1, 23, 59)); /* this month, week of Oct 26 */
    post_at("open", "nov22", USD(40), utc(2026, 11, 22, 0, 0)); /* last week (Sunday) */
    post_at("open", "nov23", USD(100), utc(2026, 11, 23, 0, 0)); /* this week, yesterday */
    expect_begin(pay("open", "nov24", USD(50), utc(2026, 11, 24, 23, 59)), PG_BEGIN_PROCEED,
                 NULL);
    struct pg_spend p, q;
    spend_at("open", "usd", utc(2026, 11, 24, 23, 59), &p, &q);
    assert_int_equal(p.day, 0);
    assert_int_equal(q.day, USD(50));
    assert_int_equal(p.week, USD(100));
    assert_int_equal(q.week, USD(50));
    assert_int_equal(p.month, USD(30 + 40 + 100));
    assert_int_equal(q.month, USD(50));
    /* Another currency is another budget. */
    spend_at("open", "eur", utc(2026, 11, 24, 12, 0), &p, &q);
    assert_int_equal(p.month + q.month, 0);
    /* On Dec 1st the month starts over but the week (Mon Nov 30) holds
     * nothing either; on Nov 29 (Sunday) the week still counts. */
    spend_at("open", "usd", utc(2026, 11, 29, 12, 0), &p, &q);
    assert_int_equal(p.week + q.week, USD(150));
    spend_at("open", "usd", utc(2026, 12, 1, 0, 0), &p, &q);
    assert_int_equal(p.month + q.month, 0);
    assert_int_equal(p.week + q.week, 0);
}

static void test_windows_follow_the_org_zone(void **state)
{
    (void)state;
    /* 23:30 UTC on Nov 23 is 00:30 on Nov 24 in Paris (UTC+1). */
    int64_t t = utc(2026, 11, 23, 23, 30);
    expect_begin(pay("paris", "late", USD(10), t), PG_BEGIN_PROCEED, NULL);
    struct pg_spend p, q;
    spend_at("paris", "usd", utc(2026, 11, 24, 10, 0), &p, &q);
    assert_int_equal(q.day, USD(10));
    spend_at("paris", "usd", utc(2026, 11, 23, 22, 0), &p, &q); /* 23:00 Paris, the 23rd */
    assert_int_equal(q.day, 0);
    assert_int_equal(q.week, USD(10));
}

static void test_exact_limit_boundary(void **state)
{
    (void)state;
    int64_t mon = MONDAY, tue = MONDAY + DAY, wed = MONDAY + 2 * DAY;
    uint64_t a = expect_begin(pay("lim", "a", USD(300), mon), PG_BEGIN_PROCEED, "allowed");
    expect_begin(pay("lim", "b", USD(200), mon), PG_BEGIN_PROCEED, NULL); /* exactly 500.00 */
    expect_begin(pay("lim", "c", 1, mon), PG_BEGIN_DECIDED, "daily_limit");
    expect_day("lim", mon, 0, USD(500));
    /* A void gives the room back. */
    expect_settle(mks("lim", "a", a, PG_SETTLE_VOID, 0, mon));
    expect_begin(pay("lim", "c2", USD(300), mon), PG_BEGIN_PROCEED, NULL);
    expect_begin(pay("lim", "c3", 1, mon), PG_BEGIN_DECIDED, "daily_limit");
    /* Tuesday: a new day, the same week (1000.00): 500 fits exactly. */
    expect_begin(pay("lim", "d", USD(500), tue), PG_BEGIN_PROCEED, NULL);
    expect_begin(pay("lim", "e", 1, tue), PG_BEGIN_DECIDED, "daily_limit");
    expect_begin(pay("lim", "f", 1, wed), PG_BEGIN_DECIDED, "weekly_limit");
    /* A denial is audited and stores nothing: the same key may try again. */
    expect_last_entry_has("lim", "\"action\":\"deny\"");
    expect_begin(pay("lim", "f", 1, wed), PG_BEGIN_DECIDED, "weekly_limit");
}

static void test_batch_concurrency(void **state)
{
    (void)state;
    struct pg_ledger_req *rs[100];
    for (int i = 0; i < 100; i++) {
        char key[16];
        snprintf(key, sizeof(key), "c%d", i);
        rs[i] = pay("lim", key, USD(10), MONDAY);
    }
    struct pg_ledger_stats before, after;
    pg_ledger_stats(T.l, &before);
    run(rs, 100);
    pg_ledger_stats(T.l, &after);
    assert_int_equal(after.batches - before.batches, 1); /* one transaction, one commit */
    assert_int_equal(after.max_batch, 100);
    int proceed = 0, denied = 0;
    for (int i = 0; i < 100; i++) {
        assert_int_equal(rs[i]->status, 0);
        if (rs[i]->result == PG_BEGIN_PROCEED)
            proceed++;
        else if (rs[i]->result == PG_BEGIN_DECIDED && strcmp(rs[i]->decision.reason, "daily_limit") == 0)
            denied++;
        done(rs[i]);
    }
    assert_int_equal(proceed, 50);
    assert_int_equal(denied, 50);
    expect_day("lim", MONDAY, 0, USD(500));
    assert_int_equal(audit_len("acme"), 100);
}

static void test_velocity(void **state)
{
    (void)state;
    for (int i = 0; i < 3; i++) {
        char key[16];
        snprintf(key, sizeof(key), "v%d", i);
        expect_begin(pay("fast", key, USD(1), MONDAY + i), PG_BEGIN_PROCEED, NULL);
    }
    expect_begin(pay("fast", "v3", USD(1), MONDAY + 10), PG_BEGIN_DECIDED, "velocity_limit");
    struct pg_spend p, q;
    spend_at("fast", "usd", MONDAY + 10, &p, &q);
    assert_int_equal(p.velocity_count, 3);
    /* (now - 60, now]: the first mark leaves the period at MONDAY + 60. */
    expect_begin(pay("fast", "v4", USD(1), MONDAY + 60), PG_BEGIN_PROCEED, NULL);
    expect_begin(pay("fast", "v5", USD(1), MONDAY + 60), PG_BEGIN_DECIDED, "velocity_limit");
}

static void test_velocity_clock_steps_back(void **state)
{
    (void)state;
    /* The wall clock steps back 30 s between requests: the earlier marks
     * still count, so the limit holds (3 a minute). */
    expect_begin(pay("fast", "a", USD(1), MONDAY + 30), PG_BEGIN_PROCEED, NULL);
    expect_begin(pay("fast", "b", USD(1), MONDAY), PG_BEGIN_PROCEED, NULL);
    expect_begin(pay("fast", "c", USD(1), MONDAY + 1), PG_BEGIN_PROCEED, NULL);
    expect_begin(pay("fast", "d", USD(1), MONDAY + 2), PG_BEGIN_DECIDED, "velocity_limit");
    /* Once the clock passes the latest mark by a period, all is clear. */
    expect_begin(pay("fast", "e", USD(1), MONDAY + 91), PG_BEGIN_PROCEED, NULL);
}

/* --- two-phase transitions ---------------------------------------------------------- */

static void test_post_then_illegal_repeats(void **state)
{
    (void)state;
    uint64_t id = expect_begin(pay("open", "p", USD(100), MONDAY), PG_BEGIN_PROCEED, NULL);
    assert_true(id > 0);
    expect_day("open", MONDAY, 0, USD(100));
    /* The rail may report more than was reserved: post what it says. */
    expect_settle(mks("open", "p", id, PG_SETTLE_POST, USD(120), MONDAY));
    expect_day("open", MONDAY, USD(120), 0);
    expect_last_entry_has("open", "\"outcome\":\"post\"");
    /* POSTED + POST, VOID, AUTHORIZED: ignored and audited. */
    expect_settle(mks("open", "p", id, PG_SETTLE_POST, USD(120), MONDAY));
    expect_last_entry_has("open", "illegal: the reservation is already posted");
    expect_settle(mks("open", "p", id, PG_SETTLE_VOID, 0, MONDAY));
    expect_last_entry_has("open", "illegal");
    expect_settle(mks("open", "p", id, PG_SETTLE_AUTHORIZED, USD(5), MONDAY));
    expect_day("open", MONDAY, USD(120), 0);
    /* POSTED + KEEP changes nothing either. */
    expect_settle(mks("open", "p", id, PG_SETTLE_KEEP, 0, MONDAY));
    expect_day("open", MONDAY, USD(120), 0);
}

static void test_void_then_illegal_repeats(void **state)
{
    (void)state;
    uint64_t id = expect_begin(pay("open", "v", USD(100), MONDAY), PG_BEGIN_PROCEED, NULL);
    expect_settle(mks("open", "v", id, PG_SETTLE_VOID, 0, MONDAY));
    expect_day("open", MONDAY, 0, 0);
    expect_settle(mks("open", "v", id, PG_SETTLE_VOID, 0, MONDAY));
    expect_last_entry_has("open", "illegal: the reservation is already voided");
    expect_settle(mks("open", "v", id, PG_SETTLE_POST, USD(100), MONDAY));
    expect_settle(mks("open", "v", id, PG_SETTLE_AUTHORIZED, USD(100), MONDAY));
    expect_day("open", MONDAY, 0, 0);
}

static void test_keep_then_post(void **state)
{
    (void)state;
    uint64_t id = expect_begin(pay("open", "k", USD(100), MONDAY), PG_BEGIN_PROCEED, NULL);
    expect_settle(mks("open", "k", id, PG_SETTLE_KEEP, 0, MONDAY));
    expect_day("open", MONDAY, 0, USD(100)); /* the money may have moved: it still counts */
    expect_last_entry_has("open", "\"outcome\":\"keep\"");
    expect_settle(mks("open", "k", id, PG_SETTLE_POST, USD(100), MONDAY + 5));
    expect_day("open", MONDAY, USD(100), 0);
}

struct pend {
    int n;
    struct pg_reservation_view v[8];
};

static int pend_cb(void *arg, const struct pg_reservation_view *r)
{
    struct pend *p = arg;
    if (p->n < 8)
        p->v[p->n++] = *r;
    return 0;
}

static void test_authorized_then_capture(void **state)
{
    (void)state;
    uint64_t id = expect_begin(pay("open", "a", USD(100), MONDAY), PG_BEGIN_PROCEED, NULL);
    struct pg_ledger_req *s = mks("open", "a", id, PG_SETTLE_AUTHORIZED, USD(80), MONDAY);
    snprintf(s->result_object_id, sizeof(s->result_object_id), "pi_A");
    expect_settle(s);
    expect_day("open", MONDAY, 0, USD(80));
    /* PENDING/AUTHORIZED + AUTHORIZED: the rail's new amount. */
    expect_settle(mks("open", "a", id, PG_SETTLE_AUTHORIZED, USD(90), MONDAY));
    expect_day("open", MONDAY, 0, USD(90));
    struct pend p = { 0 };
    assert_int_equal(pg_ledger_pending(T.l, "open", pend_cb, &p), 0);
    assert_int_equal(p.n, 1);
    assert_int_equal(p.v[0].id, id);
    assert_int_equal(p.v[0].amount, USD(90));
    assert_string_equal(p.v[0].object_id, "pi_A");
    assert_string_equal(p.v[0].route, "payment_intents.create");
    /* The capture finds the object's reservation and posts it. */
    struct pg_ledger_req *c = mk("open", "cap", PG_OP_PAYMENT, PG_ACT_CAPTURE, -1, MONDAY + 60);
    snprintf(c->object_id, sizeof(c->object_id), "pi_A");
    assert_int_equal(expect_begin(c, PG_BEGIN_PROCEED, NULL), id);
    expect_settle(mks("open", "cap", id, PG_SETTLE_POST, USD(90), MONDAY + 61));
    expect_day("open", MONDAY, USD(90), 0);
    p.n = 0;
    assert_int_equal(pg_ledger_pending(T.l, NULL, pend_cb, &p), 0);
    assert_int_equal(p.n, 0);
}

static void test_cancel_voids_object(void **state)
{
    (void)state;
    uint64_t id = expect_begin(pay("open", "a", USD(100), MONDAY), PG_BEGIN_PROCEED, NULL);
    struct pg_ledger_req *s = mks("open", "a", id, PG_SETTLE_KEEP, 0, MONDAY);
    snprintf(s->result_object_id, sizeof(s->result_object_id), "pi_C");
    with_response(s, 200, "HTTP/1.1 200 OK\r\n\r\n", "{}", 2);
    expect_settle(s);
    expect_day("open", MONDAY, 0, USD(100));
    /* A declined confirm leaves the object (and its reservation) alive. */
    struct pg_ledger_req *c = mk("open", "conf", PG_OP_PAYMENT, PG_ACT_CONFIRM, -1, MONDAY);
    snprintf(c->object_id, sizeof(c->object_id), "pi_C");
    assert_int_equal(expect_begin(c, PG_BEGIN_PROCEED, NULL), id);
    expect_settle(mks("open", "conf", id, PG_SETTLE_VOID, 0, MONDAY));
    expect_day("open", MONDAY, 0, USD(100));
    /* A cancel ends it. */
    c = mk("open", "cancel", PG_OP_PAYMENT, PG_ACT_CANCEL, -1, MONDAY);
    snprintf(c->object_id, sizeof(c->object_id), "pi_C");
    assert_int_equal(expect_begin(c, PG_BEGIN_PROCEED, NULL), id);
    expect_settle(mks("open", "cancel", id, PG_SETTLE_VOID, 0, MONDAY));
    expect_day("open", MONDAY, 0, 0);
}

static void test_increment_grows_reservation(void **state)
{
    (void)state;
    /* lim: 500.00 a day. An authorization of 400, then increments. */
    uint64_t id = expect_begin(pay("lim", "a", USD(400), MONDAY), PG_BEGIN_PROCEED, NULL);
    struct pg_ledger_req *s = mks("lim", "a", id, PG_SETTLE_AUTHORIZED, USD(400), MONDAY);
    snprintf(s->result_object_id, sizeof(s->result_object_id), "pi_I");
    expect_settle(s);
    /* To 501: only the 101 above the reservation is checked, and it does
     * not fit; to 500 it does. */
    struct pg_ledger_req *i = mk("lim", "i1", PG_OP_PAYMENT, PG_ACT_INCREMENT, USD(501), MONDAY);
    snprintf(i->object_id, sizeof(i->object_id), "pi_I");
    expect_begin(i, PG_BEGIN_DECIDED, "daily_limit");
    i = mk("lim", "i2", PG_OP_PAYMENT, PG_ACT_INCREMENT, USD(500), MONDAY);
    snprintf(i->object_id, sizeof(i->object_id), "pi_I");
    assert_int_equal(expect_begin(i, PG_BEGIN_PROCEED, NULL), id);
    expect_day("lim", MONDAY, 0, USD(500));
    /* The rail declines the increment: only its 100 goes back. */
    expect_settle(mks("lim", "i2", id, PG_SETTLE_VOID, 0, MONDAY));
    expect_day("lim", MONDAY, 0, USD(400));
    i = mk("lim", "i3", PG_OP_PAYMENT, PG_ACT_INCREMENT, USD(450), MONDAY);
    snprintf(i->object_id, sizeof(i->object_id), "pi_I");
    assert_int_equal(expect_begin(i, PG_BEGIN_PROCEED, NULL), id);
    expect_settle(mks("lim", "i3", id, PG_SETTLE_AUTHORIZED, USD(450), MONDAY));
    expect_day("lim", MONDAY, 0, USD(450));
    /* An increment of an object payguard never saw reserves its amount and
     * adopts the object. */
    i = mk("open", "u", PG_OP_PAYMENT, PG_ACT_INCREMENT, USD(70), MONDAY);
    snprintf(i->object_id, sizeof(i->object_id), "pi_OUTSIDE");
    uint64_t u = expect_begin(i, PG_BEGIN_PROCEED, NULL);
    assert_true(u > id);
    expect_day("open", MONDAY, 0, USD(70));
    struct pg_ledger_req *c = mk("open", "ucap", PG_OP_PAYMENT, PG_ACT_CAPTURE, -1, MONDAY);
    snprintf(c->object_id, sizeof(c->object_id), "pi_OUTSIDE");
    assert_int_equal(expect_begin(c, PG_BEGIN_PROCEED, NULL), u);
}

static void test_follow_up_of_unknown_object(void **state)
{
    (void)state;
    struct pg_ledger_req *c = mk("open", "x", PG_OP_PAYMENT, PG_ACT_CONFIRM, -1, MONDAY);
    snprintf(c->object_id, sizeof(c->object_id), "pi_ELSEWHERE");
    assert_int_equal(expect_begin(c, PG_BEGIN_PROCEED, NULL), 0);
    expect_day("open", MONDAY, 0, 0);
    /* The money moved without a reservation: it counts once. */
    expect_settle(mks("open", "x", 0, PG_SETTLE_POST, USD(40), MONDAY));
    expect_day("open", MONDAY, USD(40), 0);
    expect_last_entry_has("open", "posted without a reservation");
    struct pg_ledger_req *s = mks("open", "x", 0, PG_SETTLE_POST, USD(40), MONDAY);
    with_response(s, 200, "HTTP/1.1 200 OK\r\n\r\n", "{}", 2);
    expect_settle(s);
    expect_day("open", MONDAY, USD(40), 0);
    expect_settle(mks("open", "x", 0, PG_SETTLE_POST, USD(40), MONDAY));
    expect_day("open", MONDAY, USD(40), 0);
}

/* The index from rail objects to reservations lives in memory: it is
 * rebuilt from the reservations on open, and a second id of one
 * reservation (kept in the objects tree) is found too. */
static void test_objects_found_after_reopen(void **state)
{
    (void)state;
    uint64_t id = expect_begin(pay("open", "a", USD(100), MONDAY), PG_BEGIN_PROCEED, NULL);
    struct pg_ledger_req *s = mks("open", "a", id, PG_SETTLE_AUTHORIZED, USD(80), MONDAY);
    snprintf(s->result_object_id, sizeof(s->result_object_id), "pi_R");
    expect_settle(s);
    uint64_t other = expect_begin(pay("open", "b", USD(5), MONDAY), PG_BEGIN_PROCEED, NULL);
    s = mks("open", "b", other, PG_SETTLE_AUTHORIZED, USD(5), MONDAY);
    snprintf(s->result_object_id, sizeof(s->result_object_id), "pi_S");
    expect_settle(s);
    /* A follow-up answered under another id: that id maps there too. */
    struct pg_ledger_req *c = mk("open", "upd", PG_OP_PAYMENT, PG_ACT_UPDATE, -1, MONDAY);
    snprintf(c->object_id, sizeof(c->object_id), "pi_R");
    assert_int_equal(expect_begin(c, PG_BEGIN_PROCEED, NULL), id);
    s = mks("open", "upd", id, PG_SETTLE_AUTHORIZED, USD(80), MONDAY);
    snprintf(s->result_object_id, sizeof(s->result_object_id), "ch_R2");
    expect_settle(s);
    ledger_reopen();
    const char *ids[] = { "pi_R", "ch_R2" };
    for (size_t i = 0; i < 2; i++) {
        char key[16];
        snprintf(key, sizeof(key), "conf%zu", i);
        c = mk("open", key, PG_OP_PAYMENT, PG_ACT_CONFIRM, -1, MONDAY + 60);
        snprintf(c->object_id, sizeof(c->object_id), "%s", ids[i]);
        assert_int_equal(expect_begin(c, PG_BEGIN_PROCEED, NULL), id);
        expect_settle(mks("open", key, id, PG_SETTLE_AUTHORIZED, USD(80), MONDAY + 60));
    }
    c = mk("open", "cap", PG_OP_PAYMENT, PG_ACT_CAPTURE, -1, MONDAY + 60);
    snprintf(c->object_id, sizeof(c->object_id), "pi_S");
    assert_int_equal(expect_begin(c, PG_BEGIN_PROCEED, NULL), other);
    expect_settle(mks("open", "cap", other, PG_SETTLE_POST, USD(5), MONDAY + 61));
    expect_day("open", MONDAY, USD(5), USD(80));
    /* An object nobody made through payguard is still unknown. */
    c = mk("open", "x", PG_OP_PAYMENT, PG_ACT_CAPTURE, -1, MONDAY + 60);
    snprintf(c->object_id, sizeof(c->object_id), "pi_NEVER");
    assert_int_equal(expect_begin(c, PG_BEGIN_PROCEED, NULL), 0);
}

/* Opens the ledger's environment raw (the ledger closed) to write what an
 * earlier payguard wrote. */
static void raw_txn(void (*fn)(MDB_txn *txn, void *arg), void *arg)
{
    ledger_close();
    MDB_env *env;
    MDB_txn *txn;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 64), 0);
    assert_int_equal(mdb_env_open(env, T.dir, 0, 0600), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    fn(txn, arg);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
    ledger_open();
}

struct legacy {
    uint64_t resv;
};

/* Finds the record of `key` under its id and gives its value without the
 * key (and without the id too when `strip_id`), as ledgers wrote before. */
static void old_record(MDB_txn *txn, MDB_dbi by_id, const char *key, size_t kn, bool strip_id,
                       uint8_t *out, size_t *outn, MDB_val *id_key)
{
    MDB_cursor *c;
    MDB_val k, v;
    bool found = false;
    assert_int_equal(mdb_cursor_open(txn, by_id, &c), 0);
    for (int rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0 && !found;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        const uint8_t *p = v.mv_data;
        if (v.mv_size < kn + 2 + 8 || memcmp(p + v.mv_size - kn, key, kn) != 0 ||
            p[v.mv_size - kn - 2] != (uint8_t)kn)
            continue;
        *outn = v.mv_size - kn - 2 - (strip_id ? 8 : 0);
        assert_true(*outn <= 256);
        memcpy(out, p, *outn);
        *id_key = k;
        found = true;
    }
    assert_true(found);
    mdb_cursor_close(c);
}

/* Ledgers from before the in-memory indexes mapped objects in the objects
 * tree and kept idempotency records under their key: first without an id
 * ("legacy"), later with one and their later versions under it, without
 * the key ("legacy2"). All still work. */
static void write_legacy(MDB_txn *txn, void *arg)
{
    struct legacy *lg = arg;
    MDB_dbi objects, idem, by_id;
    assert_int_equal(mdb_dbi_open(txn, "objects", 0, &objects), 0);
    assert_int_equal(mdb_dbi_open(txn, "idem", 0, &idem), 0);
    assert_int_equal(mdb_dbi_open(txn, "idem_updates", 0, &by_id), 0);
    uint8_t v[8];
    for (int i = 0; i < 8; i++)
        v[i] = (uint8_t)(lg->resv >> (56 - 8 * i));
    MDB_val k = { 6, "pi_OLD" }, val = { 8, v };
    assert_int_equal(mdb_put(txn, objects, &k, &val, 0), 0);

    uint8_t rec[256], idk[8];
    size_t n;
    MDB_val id_key;
    char key[] = "open\0legacy";
    old_record(txn, by_id, key, sizeof(key) - 1, true, rec, &n, &id_key);
    memcpy(idk, id_key.mv_data, 8);
    MDB_val ik = { sizeof(key) - 1, key }, iv = { n, rec }, dk = { 8, idk };
    assert_int_equal(mdb_put(txn, idem, &ik, &iv, 0), 0);
    assert_int_equal(mdb_del(txn, by_id, &dk, NULL), 0);

    char key2[] = "open\0legacy2";
    old_record(txn, by_id, key2, sizeof(key2) - 1, false, rec, &n, &id_key);
    memcpy(idk, id_key.mv_data, 8);
    MDB_val ik2 = { sizeof(key2) - 1, key2 }, iv2 = { n, rec }, dk2 = { 8, idk };
    assert_int_equal(mdb_put(txn, idem, &ik2, &iv2, 0), 0);
    assert_int_equal(mdb_put(txn, by_id, &dk2, &iv2, 0), 0);
}

static void expect_replay(const char *key, const char *body)
{
    struct pg_ledger_req *r = run1(pay("open", key, USD(70), MONDAY));
    assert_int_equal(r->result, PG_BEGIN_REPLAY);
    assert_int_equal(r->replay.body_len, strlen(body));
    assert_memory_equal(r->replay.body, body, strlen(body));
    done(r);
}

static void test_legacy_records(void **state)
{
    (void)state;
    struct legacy lg;
    lg.resv = expect_begin(pay("open", "legacy", USD(70), MONDAY), PG_BEGIN_PROCEED, NULL);
    struct pg_ledger_req *s = mks("open", "legacy", lg.resv, PG_SETTLE_AUTHORIZED, USD(70), MONDAY);
    with_response(s, 200, "HTTP/1.1 200 OK\r\n\r\n", "{\"old\":1}", 9);
    expect_settle(s);
    uint64_t r2 = expect_begin(pay("open", "legacy2", USD(70), MONDAY), PG_BEGIN_PROCEED, NULL);
    s = mks("open", "legacy2", r2, PG_SETTLE_AUTHORIZED, USD(70), MONDAY);
    with_response(s, 200, "HTTP/1.1 200 OK\r\n\r\n", "{\"old\":2}", 9);
    expect_settle(s);
    raw_txn(write_legacy, &lg);
    /* The old records still replay; the old mapping still finds its
     * reservation. */
    expect_replay("legacy", "{\"old\":1}");
    expect_replay("legacy2", "{\"old\":2}");
    struct pg_ledger_req *c = mk("open", "cap", PG_OP_PAYMENT, PG_ACT_CAPTURE, -1, MONDAY + 60);
    snprintf(c->object_id, sizeof(c->object_id), "pi_OLD");
    assert_int_equal(expect_begin(c, PG_BEGIN_PROCEED, NULL), lg.resv);
    expect_settle(mks("open", "cap", lg.resv, PG_SETTLE_POST, USD(70), MONDAY + 61));
    expect_day("open", MONDAY, USD(70), USD(70));
}

static void test_unknown_reservation(void **state)
{
    (void)state;
    expect_settle(mks("open", "", 999, PG_SETTLE_POST, USD(1), MONDAY));
    expect_last_entry_has("open", "unknown reservation");
    expect_day("open", MONDAY, 0, 0);
}

static void test_refunds(void **state)
{
    (void)state;
    /* rest: 100.00 a day, refunds_restore. */
    post_at("rest", "pay", USD(60), MONDAY);
    expect_begin(pay("rest", "more", USD(41), MONDAY), PG_BEGIN_DECIDED, "daily_limit");
    /* A refund is checked by policy like any money operation, but reserves
     * nothing... */
    uint64_t id = expect_begin(mk("rest", "ref", PG_OP_REFUND, PG_ACT_NONE, USD(30), MONDAY),
                               PG_BEGIN_PROCEED, NULL);
    assert_int_equal(id, 0);
    expect_day("rest", MONDAY, USD(60), 0);
    /* ...and with refunds_restore gives budget back when it settles, once. */
    struct pg_ledger_req *s = mks("rest", "ref", 0, PG_SETTLE_POST, USD(30), MONDAY);
    s->op = PG_OP_REFUND;
    expect_settle(s);
    expect_day("rest", MONDAY, USD(30), 0);
    expect_last_entry_has("rest", "refund restored");
    s = mks("rest", "ref", 0, PG_SETTLE_POST, USD(30), MONDAY);
    s->op = PG_OP_REFUND;
    with_response(s, 200, "HTTP/1.1 200 OK\r\n\r\n", "{}", 2);
    expect_settle(s);
    expect_day("rest", MONDAY, USD(30), 0);
    s = mks("rest", "ref", 0, PG_SETTLE_POST, USD(30), MONDAY);
    s->op = PG_OP_REFUND;
    expect_settle(s);
    expect_day("rest", MONDAY, USD(30), 0);
    expect_begin(pay("rest", "more2", USD(70), MONDAY), PG_BEGIN_PROCEED, NULL);
    /* Without refunds_restore a refund changes nothing. */
    post_at("open", "pay", USD(100), MONDAY);
    expect_begin(mk("open", "ref", PG_OP_REFUND, PG_ACT_NONE, USD(30), MONDAY), PG_BEGIN_PROCEED,
                 NULL);
    s = mks("open", "ref", 0, PG_SETTLE_POST, USD(30), MONDAY);
    s->op = PG_OP_REFUND;
    expect_settle(s);
    expect_day("open", MONDAY, USD(100), 0);
    expect_last_entry_has("open", "refunds_restore is off");
}

static void test_refund_restore_floors_at_zero(void **state)
{
    (void)state;
    post_at("rest", "pay", USD(10), MONDAY);
    expect_begin(mk("rest", "ref", PG_OP_REFUND, PG_ACT_NONE, USD(50), MONDAY), PG_BEGIN_PROCEED,
                 NULL);
    struct pg_ledger_req *s = mks("rest", "ref", 0, PG_SETTLE_POST, USD(50), MONDAY);
    s->op = PG_OP_REFUND;
    expect_settle(s);
    expect_day("rest", MONDAY, 0, 0);
}

/* --- idempotency ---------------------------------------------------------------------- */

static void test_replay_byte_identical(void **state)
{
    (void)state;
    static const char head[] = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                               "Request-Id: req_1\r\n\r\n";
    static const char body[] = "{\"id\":\"pi_1\",\0\"bin\":\"\xff\x01\"}";
    uint64_t id = expect_begin(pay("open", "r", USD(10), MONDAY), PG_BEGIN_PROCEED, NULL);
    struct pg_ledger_req *s = mks("open", "r", id, PG_SETTLE_POST, USD(10), MONDAY);
    with_response(s, 200, head, body, sizeof(body));
    expect_settle(s);
    uint64_t n = audit_len("acme");
    for (int i = 0; i < 2; i++) {
        struct pg_ledger_req *r = run1(pay("open", "r", USD(10), MONDAY + 100));
        assert_int_equal(r->status, 0);
        assert_int_equal(r->result, PG_BEGIN_REPLAY);
        assert_int_equal(r->replay.status, 200);
        assert_int_equal(r->replay.head_len, strlen(head));
        assert_memory_equal(r->replay.head, head, strlen(head));
        assert_int_equal(r->replay.body_len, sizeof(body));
        assert_memory_equal(r->replay.body, body, sizeof(body));
        done(r);
    }
    expect_day("open", MONDAY, USD(10), 0);
    assert_int_equal(audit_len("acme"), n); /* replays change nothing */
    /* A 4xx from the rail is stored and replayed too. */
    id = expect_begin(pay("open", "d", USD(10), MONDAY), PG_BEGIN_PROCEED, NULL);
    s = mks("open", "d", id, PG_SETTLE_VOID, 0, MONDAY);
    with_response(s, 402, "HTTP/1.1 402 Payment Required\r\n\r\n", "{\"error\":{}}", 12);
    expect_settle(s);
    struct pg_ledger_req *r = run1(pay("open", "d", USD(10), MONDAY));
    assert_int_equal(r->result, PG_BEGIN_REPLAY);
    assert_int_equal(r->replay.status, 402);
    done(r);
}

static void test_mismatch(void **state)
{
    (void)state;
    uint64_t id = expect_begin(pay("open", "m", USD(10), MONDAY), PG_BEGIN_PROCEED, NULL);
    expect_begin(pay("open", "m", USD(11), MONDAY), PG_BEGIN_MISMATCH, NULL);
    struct pg_ledger_req *s = mks("open", "m", id, PG_SETTLE_POST, USD(10), MONDAY);
    with_response(s, 200, "HTTP/1.1 200 OK\r\n\r\n", "{}", 2);
    expect_settle(s);
    expect_begin(pay("open", "m", USD(11), MONDAY), PG_BEGIN_MISMATCH, NULL);
    /* Keys are per agent: another agent's same key is its own. */
    expect_begin(pay("lim", "m", USD(11), MONDAY), PG_BEGIN_PROCEED, NULL);
    expect_day("open", MONDAY, USD(10), 0);
}

/* The index finds every key after it grows past its first table and after
 * it is rebuilt from disk by the next process. */
static void test_idempotency_index_grows_and_rebuilds(void **state)
{
    (void)state;
    enum { N = 2000, BATCH = 250 };
    struct pg_ledger_req *rs[BATCH];
    char key[32];
    for (int base = 0; base < N; base += BATCH) {
        for (int i = 0; i < BATCH; i++) {
            snprintf(key, sizeof(key), "g%d", base + i);
            rs[i] = pay("open", key, USD(1), MONDAY);
        }
        run(rs, BATCH);
        for (int i = 0; i < BATCH; i++) {
            assert_int_equal(rs[i]->result, PG_BEGIN_PROCEED);
            done(rs[i]);
        }
    }
    /* Every key is found, in this process and after a reopen. */
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1)
            ledger_reopen();
        for (int base = 0; base < N; base += BATCH) {
            for (int i = 0; i < BATCH; i++) {
                snprintf(key, sizeof(key), "g%d", base + i);
                rs[i] = pay("open", key, USD(2), MONDAY);
            }
            run(rs, BATCH);
            for (int i = 0; i < BATCH; i++) {
                assert_int_equal(rs[i]->result, PG_BEGIN_MISMATCH);
                done(rs[i]);
            }
        }
    }
    expect_begin(pay("open", "g-new", USD(1), MONDAY), PG_BEGIN_PROCEED, NULL);
    expect_day("open", MONDAY, 0, USD(N + 1));
}

/* One process serves a ledger at a time: a second could not see the
 * first one's idempotency keys. */
static void test_second_server_refused(void **state)
{
    (void)state;
    ledger_close();
    char path[600], err[256];
    snprintf(path, sizeof(path), "%s/server.lock", T.opt.dir);
    int fd = open(path, O_RDWR | O_CREAT, 0600);
    assert_true(fd >= 0);
    assert_int_equal(flock(fd, LOCK_EX | LOCK_NB), 0);
    assert_int_equal(pg_ledger_open(&T.opt, &T.l, err, sizeof(err)), 0);
    assert_int_equal(pg_ledger_start(T.l, &T.loop), -EAGAIN);
    assert_false(pg_ledger_ready(T.l));
    close(fd);
    assert_int_equal(pg_ledger_start(T.l, &T.loop), 0);
    expect_begin(pay("open", "after", USD(1), MONDAY), PG_BEGIN_PROCEED, NULL);
}

static void test_in_flight(void **state)
{
    (void)state;
    uint64_t id = expect_begin(pay("open", "f", USD(10), MONDAY), PG_BEGIN_PROCEED, NULL);
    struct pg_ledger_req *r = run1(pay("open", "f", USD(10), MONDAY));
    assert_int_equal(r->result, PG_BEGIN_IN_FLIGHT);
    assert_int_equal(r->reservation, id);
    done(r);
    expect_day("open", MONDAY, 0, USD(10));
    /* Two of the same key in one batch: the second sees the first. */
    struct pg_ledger_req *rs[2] = { pay("open", "g", USD(5), MONDAY),
                                    pay("open", "g", USD(5), MONDAY) };
    run(rs, 2);
    assert_int_equal(rs[0]->result, PG_BEGIN_PROCEED);
    assert_int_equal(rs[1]->result, PG_BEGIN_IN_FLIGHT);
    done(rs[0]);
    done(rs[1]);
}

static void test_unresolved_after_reopen(void **state)
{
    (void)state;
    uint64_t id = expect_begin(pay("fast", "u", USD(10), MONDAY), PG_BEGIN_PROCEED, NULL);
    /* payguard dies before the rail answers: a new process, a new epoch. */
    ledger_reopen();
    struct pg_ledger_req *r = run1(pay("fast", "u", USD(10), MONDAY + 5));
    assert_int_equal(r->status, 0);
    assert_int_equal(r->result, PG_BEGIN_PROCEED);
    assert_int_equal(r->reservation, id);
    assert_string_equal(r->decision.reason, "unresolved_retry");
    done(r);
    /* Nothing counted twice: same pending, one velocity mark. */
    struct pg_spend p, q;
    spend_at("fast", "usd", MONDAY + 5, &p, &q);
    assert_int_equal(q.day, USD(10));
    assert_int_equal(p.velocity_count, 1);
    /* Now this process sends it: in flight. */
    expect_begin(pay("fast", "u", USD(10), MONDAY + 6), PG_BEGIN_IN_FLIGHT, NULL);
    struct pg_ledger_req *s = mks("fast", "u", id, PG_SETTLE_POST, USD(10), MONDAY + 7);
    with_response(s, 200, "HTTP/1.1 200 OK\r\n\r\n", "{}", 2);
    expect_settle(s);
    expect_begin(pay("fast", "u", USD(10), MONDAY + 8), PG_BEGIN_REPLAY, NULL);
}

static void test_keep_without_answer_is_unresolved(void **state)
{
    (void)state;
    uint64_t id = expect_begin(pay("open", "t", USD(10), MONDAY), PG_BEGIN_PROCEED, NULL);
    expect_settle(mks("open", "t", id, PG_SETTLE_KEEP, 0, MONDAY)); /* timeout */
    struct pg_ledger_req *r = run1(pay("open", "t", USD(10), MONDAY + 30));
    assert_int_equal(r->result, PG_BEGIN_PROCEED);
    assert_int_equal(r->reservation, id);
    done(r);
    expect_day("open", MONDAY, 0, USD(10));
    expect_begin(pay("open", "t", USD(10), MONDAY + 31), PG_BEGIN_IN_FLIGHT, NULL);
}

static void test_void_without_answer_frees_key(void **state)
{
    (void)state;
    uint64_t id = expect_begin(pay("open", "n", USD(10), MONDAY), PG_BEGIN_PROCEED, NULL);
    expect_settle(mks("open", "n", id, PG_SETTLE_VOID, 0, MONDAY)); /* never reached the rail */
    uint64_t id2 = expect_begin(pay("open", "n", USD(10), MONDAY + 1), PG_BEGIN_PROCEED, NULL);
    assert_true(id2 != id);
    expect_day("open", MONDAY, 0, USD(10));
}

static void test_no_idempotency_key(void **state)
{
    (void)state;
    uint64_t a = expect_begin(pay("open", NULL, USD(10), MONDAY), PG_BEGIN_PROCEED, NULL);
    uint64_t b = expect_begin(pay("open", NULL, USD(10), MONDAY), PG_BEGIN_PROCEED, NULL);
    assert_true(a != b);
    expect_settle(mks("open", NULL, a, PG_SETTLE_POST, USD(10), MONDAY));
    expect_day("open", MONDAY, USD(10), USD(10));
}

/* --- approvals -------------------------------------------------------------------------- */

struct alist {
    int n;
    struct pg_approval a[8];
};

static int alist_cb(void *arg, const struct pg_approval *a)
{
    struct alist *l = arg;
    if (l->n < 8)
        l->a[l->n++] = *a;
    return 0;
}

/* Holds `amount` for agent appr under `key`; returns the approval id. */
static void hold(const char *key, int64_t amount, int64_t now, char id[PG_ID_MAX + 1])
{
    struct pg_ledger_req *r = run1(pay("appr", key, amount, now));
    assert_int_equal(r->status, 0);
    assert_int_equal(r->result, PG_BEGIN_DECIDED);
    assert_int_equal(r->decision.verdict, PG_VERDICT_HOLD);
    assert_int_equal(r->decision.status, 402);
    assert_string_equal(r->decision.reason, "approval_required");
    assert_int_equal(strncmp(r->approval_id, "apr_", 4), 0);
    assert_int_equal(strlen(r->approval_id), 20);
    memcpy(id, r->approval_id, PG_ID_MAX + 1);
    assert_int_equal(r->reservation, 0);
    done(r);
}

static void test_hold_approve_proceeds_once(void **state)
{
    (void)state;
    char id[PG_ID_MAX + 1];
    hold("h", USD(150), MONDAY, id);
    expect_day("appr", MONDAY, 0, 0);
    expect_last_entry_has("appr", "\"action\":\"hold\"");
    struct alist l = { 0 };
    assert_int_equal(pg_ledger_approvals(T.l, "acme", true, MONDAY, alist_cb, &l), 0);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.a[0].id, id);
    assert_string_equal(l.a[0].agent, "appr");
    assert_string_equal(l.a[0].idem_key, "h");
    assert_int_equal(l.a[0].amount, USD(150));
    assert_string_equal(l.a[0].currency, "usd");
    assert_string_equal(l.a[0].route, "payment_intents.create");
    assert_int_equal(l.a[0].status, PG_APPROVAL_PENDING);
    assert_int_equal(l.a[0].expires_at, MONDAY + 3600);
    /* Retrying while pending: the same hold, nothing new. */
    struct pg_ledger_req *r = run1(pay("appr", "h", USD(150), MONDAY + 10));
    assert_int_equal(r->result, PG_BEGIN_DECIDED);
    assert_int_equal(r->decision.verdict, PG_VERDICT_HOLD);
    assert_string_equal(r->approval_id, id);
    assert_non_null(strstr(r->decision.message, id));
    done(r);
    /* Agents never approve. */
    assert_int_equal(pg_ledger_approval_decide(T.l, id, true, "agent:appr", NULL, MONDAY + 20),
                     PG_EAUTH);
    assert_int_equal(pg_ledger_approval_decide(T.l, id, true, "", NULL, MONDAY + 20), PG_EAUTH);
    assert_int_equal(pg_ledger_approval_decide(T.l, "apr_nope", true, "user:ana@acme.test", NULL,
                                               MONDAY + 20),
                     PG_ENOTFOUND);
    assert_int_equal(pg_ledger_approval_decide(T.l, id, true, "user:ana@acme.test", "ok, supplier",
                                               MONDAY + 20),
                     0);
    assert_int_equal(pg_ledger_approval_decide(T.l, id, false, "user:bob@acme.test", NULL,
                                               MONDAY + 21),
                     PG_EBUSY);
    struct pg_approval a;
    assert_int_equal(pg_ledger_approval_get(T.l, id, MONDAY + 22, &a), 0);
    assert_int_equal(a.status, PG_APPROVAL_APPROVED);
    assert_string_equal(a.decided_by, "user:ana@acme.test");
    assert_string_equal(a.note, "ok, supplier");
    assert_int_equal(a.decided_at, MONDAY + 20);
    /* The retry goes through, once. */
    r = run1(pay("appr", "h", USD(150), MONDAY + 30));
    assert_int_equal(r->status, 0);
    assert_int_equal(r->result, PG_BEGIN_PROCEED);
    assert_int_equal(r->decision.verdict, PG_VERDICT_ALLOW);
    assert_string_equal(r->decision.reason, "approved");
    assert_string_equal(r->approval_id, id);
    uint64_t resv = r->reservation;
    assert_true(resv > 0);
    done(r);
    expect_day("appr", MONDAY, 0, USD(150));
    assert_int_equal(pg_ledger_approval_get(T.l, id, MONDAY + 31, &a), 0);
    assert_int_equal(a.status, PG_APPROVAL_USED);
    expect_begin(pay("appr", "h", USD(150), MONDAY + 32), PG_BEGIN_IN_FLIGHT, NULL);
    struct pg_ledger_req *s = mks("appr", "h", resv, PG_SETTLE_POST, USD(150), MONDAY + 33);
    with_response(s, 200, "HTTP/1.1 200 OK\r\n\r\n", "{}", 2);
    expect_settle(s);
    expect_begin(pay("appr", "h", USD(150), MONDAY + 34), PG_BEGIN_REPLAY, NULL);
    expect_day("appr", MONDAY, USD(150), 0);
    /* The approval is bound to the request: another body under the key is a
     * mismatch. */
    expect_begin(pay("appr", "h", USD(151), MONDAY + 35), PG_BEGIN_MISMATCH, NULL);
    assert_int_equal(pg_ledger_approval_decide(T.l, id, true, "user:ana@acme.test", NULL,
                                               MONDAY + 36),
                     PG_EBUSY);
    struct lines ls;
    memset(&ls, 0, sizeof(ls));
    assert_int_equal(pg_ledger_audit_recent(T.l, "acme", "appr", 16, line_cb, &ls), 0);
    bool approved = false;
    for (size_t i = 0; i < ls.n; i++)
        if (strstr(ls.buf[i], "\"action\":\"approve\"") &&
            strstr(ls.buf[i], "\"actor\":\"user:ana@acme.test\""))
            approved = true;
    assert_true(approved);
}

static void test_hold_deny(void **state)
{
    (void)state;
    char id[PG_ID_MAX + 1];
    hold("d", USD(150), MONDAY, id);
    assert_int_equal(pg_ledger_approval_decide(T.l, id, false, "cli:ana", "no", MONDAY + 1), 0);
    for (int i = 0; i < 2; i++) {
        struct pg_ledger_req *r = run1(pay("appr", "d", USD(150), MONDAY + 2 + i));
        assert_int_equal(r->result, PG_BEGIN_DECIDED);
        assert_int_equal(r->decision.verdict, PG_VERDICT_DENY);
        assert_int_equal(r->decision.status, 403);
        assert_string_equal(r->decision.reason, "approval_denied");
        assert_string_equal(r->approval_id, id);
        done(r);
    }
    expect_day("appr", MONDAY, 0, 0);
    expect_last_entry_has("appr", "\"reason\":\"approval_denied\"");
}

static void test_hold_expire(void **state)
{
    (void)state;
    char id[PG_ID_MAX + 1];
    hold("e", USD(150), MONDAY, id);
    struct pg_approval a;
    assert_int_equal(pg_ledger_approval_get(T.l, id, MONDAY + 3599, &a), 0);
    assert_int_equal(a.status, PG_APPROVAL_PENDING);
    assert_int_equal(pg_ledger_approval_get(T.l, id, MONDAY + 3600, &a), 0);
    assert_int_equal(a.status, PG_APPROVAL_EXPIRED);
    assert_int_equal(pg_ledger_approval_decide(T.l, id, true, "user:ana@acme.test", NULL,
                                               MONDAY + 3600),
                     PG_EBUSY);
    struct alist l = { 0 };
    assert_int_equal(pg_ledger_approvals(T.l, NULL, true, MONDAY + 3600, alist_cb, &l), 0);
    assert_int_equal(l.n, 0);
    for (int i = 0; i < 2; i++) {
        struct pg_ledger_req *r = run1(pay("appr", "e", USD(150), MONDAY + 4000 + i));
        assert_int_equal(r->result, PG_BEGIN_DECIDED);
        assert_int_equal(r->decision.status, 403);
        assert_string_equal(r->decision.reason, "approval_expired");
        done(r);
    }
    /* Expiry was written down once. */
    struct lines ls;
    memset(&ls, 0, sizeof(ls));
    assert_int_equal(pg_ledger_audit_recent(T.l, "acme", "appr", 16, line_cb, &ls), 0);
    int expired = 0;
    for (size_t i = 0; i < ls.n; i++)
        expired += strstr(ls.buf[i], "\"action\":\"expire\"") != NULL;
    assert_int_equal(expired, 1);
}

static void test_approval_never_lifts_a_limit(void **state)
{
    (void)state;
    char id[PG_ID_MAX + 1];
    hold("big", USD(150), MONDAY, id);
    /* The day fills up (below the approval threshold) while it waits. */
    uint64_t first = 0;
    for (int i = 0; i < 9; i++) {
        char key[16];
        snprintf(key, sizeof(key), "s%d", i);
        uint64_t r = expect_begin(pay("appr", key, USD(100), MONDAY + 1), PG_BEGIN_PROCEED, NULL);
        if (i == 0)
            first = r;
    }
    assert_int_equal(pg_ledger_approval_decide(T.l, id, true, "user:ana@acme.test", NULL,
                                               MONDAY + 2),
                     0);
    expect_begin(pay("appr", "big", USD(150), MONDAY + 3), PG_BEGIN_DECIDED, "daily_limit");
    struct pg_approval a;
    assert_int_equal(pg_ledger_approval_get(T.l, id, MONDAY + 3, &a), 0);
    assert_int_equal(a.status, PG_APPROVAL_APPROVED); /* still usable */
    /* Room again: the approved request goes through. */
    expect_settle(mks("appr", "s0", first, PG_SETTLE_VOID, 0, MONDAY + 4));
    expect_begin(pay("appr", "big", USD(150), MONDAY + 5), PG_BEGIN_PROCEED, "approved");
    expect_day("appr", MONDAY, 0, USD(950));
}

static void test_approvals_list_order_and_filters(void **state)
{
    (void)state;
    char a[PG_ID_MAX + 1], b[PG_ID_MAX + 1], c[PG_ID_MAX + 1];
    hold("1", USD(101), MONDAY + 30, a);
    hold("2", USD(102), MONDAY + 10, b);
    hold("3", USD(103), MONDAY + 20, c);
    assert_int_equal(pg_ledger_approval_decide(T.l, c, false, "cli:root", NULL, MONDAY + 40), 0);
    struct alist l = { 0 };
    assert_int_equal(pg_ledger_approvals(T.l, NULL, false, MONDAY + 50, alist_cb, &l), 0);
    assert_int_equal(l.n, 3);
    assert_string_equal(l.a[0].id, b);
    assert_string_equal(l.a[1].id, c);
    assert_string_equal(l.a[2].id, a);
    assert_int_equal(l.a[1].status, PG_APPROVAL_DENIED);
    memset(&l, 0, sizeof(l));
    assert_int_equal(pg_ledger_approvals(T.l, "acme", true, MONDAY + 50, alist_cb, &l), 0);
    assert_int_equal(l.n, 2);
    memset(&l, 0, sizeof(l));
    assert_int_equal(pg_ledger_approvals(T.l, "globex", false, MONDAY + 50, alist_cb, &l), 0);
    assert_int_equal(l.n, 0);
    struct pg_approval x;
    assert_int_equal(pg_ledger_approval_get(T.l, "apr_missing", MONDAY, &x), PG_ENOTFOUND);
    assert_string_equal(pg_approval_status_name(PG_APPROVAL_USED), "used");
}

/* --- records, bad items, failures ---------------------------------------------------------- */

static void test_record(void **state)
{
    (void)state;
    struct pg_ledger_req *r = calloc(1, sizeof(*r));
    r->kind = PG_LEDGER_RECORD;
    r->cb = on_done;
    snprintf(r->org, sizeof(r->org), "acme");
    snprintf(r->agent, sizeof(r->agent), "lim");
    r->now = MONDAY;
    r->route = "payment_intents.create";
    r->has_amount = true;
    r->amount = USD(900);
    memcpy(r->currency, "usd", 4);
    r->decision.verdict = PG_VERDICT_DENY;
    r->decision.status = 403;
    r->decision.reason = "per_transaction_limit";
    run1(r);
    assert_int_equal(r->status, 0);
    done(r);
    expect_day("lim", MONDAY, 0, 0);
    expect_last_entry_has("lim", "\"action\":\"deny\"");
    expect_last_entry_has("lim", "\"reason\":\"per_transaction_limit\"");
    expect_last_entry_has("lim", "\"actor\":\"agent:lim\"");
    r = calloc(1, sizeof(*r));
    r->kind = PG_LEDGER_RECORD;
    r->cb = on_done;
    snprintf(r->org, sizeof(r->org), "acme");
    snprintf(r->actor, sizeof(r->actor), "cli:ana");
    r->audit_action = "config_reload";
    r->now = MONDAY;
    run1(r);
    assert_int_equal(r->status, 0);
    done(r);
    assert_int_equal(audit_len("acme"), 2);
}

static void test_bad_item_fails_alone(void **state)
{
    (void)state;
    struct pg_ledger_req *rs[4] = {
        pay("open", "ok1", USD(1), MONDAY),
        pay("open", "bad", USD(1), MONDAY),
        pay("open", "neg", USD(1), MONDAY),
        pay("open", "ok2", USD(1), MONDAY),
    };
    for (size_t i = 0; i < 4; i++)
        prep(rs[i]);
    rs[1]->agent[0] = '\0';
    rs[2]->amount = -5;
    T.completed = 0;
    assert_int_equal(pg_ledger_submit_many(T.l, rs, 4), 0);
    while (T.completed < 4)
        uv_run(&T.loop, UV_RUN_ONCE);
    assert_int_equal(rs[0]->status, 0);
    assert_int_equal(rs[0]->result, PG_BEGIN_PROCEED);
    assert_int_equal(rs[1]->status, PG_EPARSE);
    assert_int_equal(rs[2]->status, PG_EPARSE);
    assert_int_equal(rs[3]->status, 0);
    assert_int_equal(rs[3]->result, PG_BEGIN_PROCEED);
    for (size_t i = 0; i < 4; i++)
        done(rs[i]);
    expect_day("open", MONDAY, 0, USD(2));
    assert_int_equal(audit_len("acme"), 2);
    /* A settle with a negative amount, a RECORD without an org. */
    struct pg_ledger_req *s = run1(mks("open", "ok1", 1, PG_SETTLE_POST, -1, MONDAY));
    assert_int_equal(s->status, PG_EPARSE);
    done(s);
    expect_day("open", MONDAY, 0, USD(2));
}

static void test_overflow_fails_item(void **state)
{
    (void)state;
    expect_begin(pay("open", "max", INT64_MAX, MONDAY), PG_BEGIN_PROCEED, NULL);
    uint64_t n = audit_len("acme");
    struct pg_ledger_req *r = run1(pay("open", "over", 1, MONDAY));
    assert_int_equal(r->status, PG_ERANGE);
    done(r);
    /* Nothing of the failed item stayed: no key, no entry, same spend. */
    assert_int_equal(audit_len("acme"), n);
    expect_day("open", MONDAY, 0, INT64_MAX);
    struct pg_ledger_req *s = mks("open", "max", 1, PG_SETTLE_POST, INT64_MAX, MONDAY);
    expect_settle(s);
    expect_day("open", MONDAY, INT64_MAX, 0);
    r = run1(pay("open", "over", 1, MONDAY));
    assert_int_equal(r->status, 0);
    done(r);
    s = run1(mks("open", "over", 2, PG_SETTLE_POST, 1, MONDAY)); /* posted would overflow */
    assert_int_equal(s->status, PG_ERANGE);
    done(s);
}

static void test_close_drains_queue(void **state)
{
    (void)state;
    struct pg_ledger_req *rs[20];
    for (int i = 0; i < 20; i++) {
        char key[16];
        snprintf(key, sizeof(key), "q%d", i);
        rs[i] = pay("open", key, USD(1), MONDAY);
        prep(rs[i]);
    }
    T.completed = 0;
    assert_int_equal(pg_ledger_submit_many(T.l, rs, 20), 0);
    ledger_close(); /* without running the loop: close delivers them */
    assert_int_equal(T.completed, 20);
    for (int i = 0; i < 20; i++) {
        assert_int_equal(rs[i]->status, 0);
        assert_int_equal(rs[i]->result, PG_BEGIN_PROCEED);
        done(rs[i]);
    }
    ledger_open();
    expect_day("open", MONDAY, 0, USD(20));
}

/* --- the preparer ------------------------------------------------------------------------- */

#define NPREP 60
static struct {
    atomic_int runs[NPREP];
    atomic_int on_loop_thread;
    pthread_t loop_thread;
} P;

/* Stands for reading the rail's answer: the SETTLE's outcome is known only
 * once this has run. */
static void prepare_post(struct pg_ledger_req *r)
{
    int i = (int)(intptr_t)r->data;
    /* A slow preparer lets the writer overtake it and prepare the items it
     * reaches first, so both paths run (either way, each item only once). */
    char name[16] = "";
    pthread_getname_np(pthread_self(), name, sizeof(name));
    if (strcmp(name, "pg-prepare") == 0)
        usleep(1000);
    atomic_fetch_add(&P.runs[i], 1);
    if (pthread_equal(pthread_self(), P.loop_thread))
        atomic_fetch_add(&P.on_loop_thread, 1);
    r->outcome = PG_SETTLE_POST;
    r->settle_amount = USD(2);
}

static void test_prepare_runs_once_before_the_transaction(void **state)
{
    (void)state;
    memset(&P, 0, sizeof(P));
    P.loop_thread = pthread_self();
    struct pg_ledger_req *b[NPREP], *s[NPREP];
    for (int i = 0; i < NPREP; i++) {
        char key[16];
        snprintf(key, sizeof(key), "pr%d", i);
        b[i] = pay("open", key, USD(1), MONDAY);
    }
    run(b, NPREP);
    for (int i = 0; i < NPREP; i++) {
        assert_int_equal(b[i]->result, PG_BEGIN_PROCEED);
        /* Submitted with an outcome that would leave the money pending:
         * only the prepare step makes it a POST. */
        s[i] = mks("open", b[i]->idem_key, b[i]->reservation, PG_SETTLE_KEEP, 0, MONDAY);
        s[i]->prepare = prepare_post;
        s[i]->data = (void *)(intptr_t)i;
    }
    /* In waves; close drains whatever is still queued. */
    T.completed = 0;
    for (int w = 0; w < NPREP / 10; w++) {
        assert_int_equal(pg_ledger_submit_many(T.l, s + w * 10, 10), 0);
        if (w % 2)
            uv_run(&T.loop, UV_RUN_NOWAIT);
    }
    ledger_close();
    assert_int_equal(T.completed, NPREP);
    for (int i = 0; i < NPREP; i++) {
        assert_int_equal(s[i]->status, 0);
        assert_int_equal(atomic_load(&P.runs[i]), 1);
        done(b[i]);
        done(s[i]);
    }
    assert_int_equal(atomic_load(&P.on_loop_thread), 0);
    ledger_open();
    expect_day("open", MONDAY, NPREP * USD(2), 0);
}

/* --- pruning ------------------------------------------------------------------------------ */

static void test_pruning(void **state)
{
    (void)state;
    int64_t t0 = MONDAY;
    uint64_t id = expect_begin(pay("fast", "old", USD(10), t0), PG_BEGIN_PROCEED, NULL);
    struct pg_ledger_req *s = mks("fast", "old", id, PG_SETTLE_POST, USD(10), t0);
    snprintf(s->result_object_id, sizeof(s->result_object_id), "pi_OLD");
    with_response(s, 200, "HTTP/1.1 200 OK\r\n\r\n", "{}", 2);
    expect_settle(s);
    /* still pending: its bucket must stay */
    expect_begin(pay("open", "pend", USD(5), t0), PG_BEGIN_PROCEED, NULL);
    char apr[PG_ID_MAX + 1];
    hold("held", USD(150), t0, apr);
    assert_int_equal(pg_ledger_approval_decide(T.l, apr, false, "cli:ana", NULL, t0 + 1), 0);
    char apr2[PG_ID_MAX + 1];
    hold("never", USD(150), t0, apr2);
    uint64_t n = audit_len("acme");

    /* Within the TTL nothing goes. */
    bool more = true;
    assert_int_equal(pg_ledger_prune(T.l, t0 + 1800, 0, &more), 0);
    assert_false(more);
    expect_begin(pay("fast", "old", USD(10), t0 + 1800), PG_BEGIN_REPLAY, NULL);

    /* 41 days later. */
    int64_t later = t0 + 41 * DAY;
    struct pg_ledger_stats before, after;
    pg_ledger_stats(T.l, &before);
    assert_int_equal(pg_ledger_prune(T.l, later, 0, &more), 0);
    pg_ledger_stats(T.l, &after);
    assert_true(after.pruned > before.pruned);
    expect_day("fast", t0, 0, 0);               /* posted bucket gone */
    expect_day("open", t0, 0, USD(5));          /* pending bucket kept */
    struct pg_spend p, q;
    spend_at("fast", "usd", t0 + 10, &p, &q);
    assert_int_equal(p.velocity_count, 0);      /* marks gone */
    struct pg_approval a;
    assert_int_equal(pg_ledger_approval_get(T.l, apr, later, &a), PG_ENOTFOUND);
    assert_int_equal(pg_ledger_approval_get(T.l, apr2, later, &a), PG_ENOTFOUND);
    /* The key is forgotten: the same key is a new request now. */
    uint64_t id2 = expect_begin(pay("fast", "old", USD(10), later), PG_BEGIN_PROCEED, NULL);
    assert_true(id2 != id);
    /* The finished reservation's object mapping went with it. */
    struct pg_ledger_req *c = mk("open", "cap", PG_OP_PAYMENT, PG_ACT_CAPTURE, -1, later);
    snprintf(c->object_id, sizeof(c->object_id), "pi_OLD");
    assert_int_equal(expect_begin(c, PG_BEGIN_PROCEED, NULL), 0);
    /* Held keys went with their approvals: a retry is a new hold. */
    char apr3[PG_ID_MAX + 1];
    hold("held", USD(150), later, apr3);
    assert_true(strcmp(apr3, apr) != 0);
    /* Audit entries are never pruned; the expired approval got its entry. */
    assert_true(audit_len("acme") > n);
}

static void test_prune_budget_and_writer(void **state)
{
    (void)state;
    for (int i = 0; i < 30; i++) {
        char key[16];
        snprintf(key, sizeof(key), "b%d", i);
        expect_begin(pay("open", key, USD(1), MONDAY), PG_BEGIN_PROCEED, NULL);
    }
    bool more = false;
    assert_int_equal(pg_ledger_prune(T.l, MONDAY + 2 * DAY, 10, &more), 0);
    assert_true(more);
    /* The writer prunes by itself, driven by request time. */
    struct pg_ledger_stats before, after;
    pg_ledger_stats(T.l, &before);
    expect_begin(pay("open", "late", USD(1), MONDAY + 3 * DAY), PG_BEGIN_PROCEED, NULL);
    expect_begin(pay("open", "late2", USD(1), MONDAY + 3 * DAY + 61), PG_BEGIN_PROCEED, NULL);
    pg_ledger_stats(T.l, &after);
    assert_true(after.pruned >= before.pruned + 20);
    /* A period reaching back to MONDAY sees only the two recent marks. */
    struct pg_spend p, q;
    struct pg_windows w;
    int64_t now = MONDAY + 3 * DAY + 61;
    pg_tz_windows(tz_of("open"), now, &w);
    assert_int_equal(pg_ledger_spend(T.l, "open", "usd", &w, now, 3 * DAY + 3600, &p, &q), 0);
    assert_int_equal(p.velocity_count, 2);
}

/* --- map growth -------------------------------------------------------------------------- */

static int setup_tiny(void **state)
{
    return setup_opts(state, 64 * 1024, 1024 * 1024);
}

static void test_map_growth_then_full(void **state)
{
    (void)state;
    static char big[16 * 1024];
    memset(big, 'x', sizeof(big));
    struct pg_ledger_stats st;
    pg_ledger_stats(T.l, &st);
    assert_int_equal(st.map_size, 64 * 1024);
    int ok = 0, full = 0;
    for (int i = 0; i < 200 && !full; i++) {
        char key[16];
        snprintf(key, sizeof(key), "m%d", i);
        struct pg_ledger_req *r = run1(pay("open", key, 1, MONDAY));
        if (r->status != 0) {
            assert_int_equal(r->status, PG_ESTORE);
            full = 1;
            done(r);
            break;
        }
        uint64_t id = r->reservation;
        done(r);
        struct pg_ledger_req *s = mks("open", key, id, PG_SETTLE_POST, 1, MONDAY);
        with_response(s, 200, "HTTP/1.1 200 OK\r\n\r\n", big, sizeof(big));
        run1(s);
        if (s->status != 0) {
            assert_int_equal(s->status, PG_ESTORE);
            full = 1;
        } else {
            ok++;
        }
        done(s);
    }
    assert_true(full);
    assert_true(ok > 4);
    pg_ledger_stats(T.l, &st);
    assert_int_equal(st.map_size, 1024 * 1024);
    assert_true(st.map_grows >= 4);
    assert_true(st.failed_batches >= 1);
    assert_true(pg_ledger_ready(T.l)); /* full is not broken */
    /* What committed is whole. */
    uint64_t n = audit_len("acme");
    assert_true(n >= (uint64_t)(2 * ok));
    expect_begin(pay("open", "m0", 1, MONDAY), PG_BEGIN_REPLAY, NULL);
    /* A bigger maximum on the next start lets it grow again. */
    ledger_close();
    T.opt.map_size_max = 8 * 1024 * 1024;
    ledger_open();
    struct pg_ledger_req *r = run1(pay("open", "after", 1, MONDAY));
    assert_int_equal(r->status, 0);
    struct pg_ledger_req *s = mks("open", "after", r->reservation, PG_SETTLE_POST, 1, MONDAY);
    done(r);
    with_response(s, 200, "HTTP/1.1 200 OK\r\n\r\n", big, sizeof(big));
    expect_settle(s);
    assert_int_equal(audit_len("acme"), n + 2);
}

/* A SETTLE whose commit fails (disk or map full) leaves the key IN_FLIGHT
 * under this process's epoch; the next retry must be resent as unresolved,
 * not refused with 409 until a restart. */
static void test_failed_settle_leaves_key_unresolved(void **state)
{
    (void)state;
    static char huge[2 * 1024 * 1024]; /* bigger than the map can ever be */
    memset(huge, 'x', sizeof(huge));
    uint64_t id = expect_begin(pay("open", "sf", USD(10), MONDAY), PG_BEGIN_PROCEED, NULL);
    struct pg_ledger_req *s = mks("open", "sf", id, PG_SETTLE_POST, USD(10), MONDAY);
    with_response(s, 200, "HTTP/1.1 200 OK\r\n\r\n", huge, sizeof(huge));
    run1(s);
    assert_int_equal(s->status, PG_ESTORE);
    done(s);
    /* Two retries in one batch: the first is resent, the second waits. */
    struct pg_ledger_req *rs[2] = { pay("open", "sf", USD(10), MONDAY + 1),
                                    pay("open", "sf", USD(10), MONDAY + 1) };
    run(rs, 2);
    assert_int_equal(rs[0]->status, 0);
    assert_int_equal(rs[0]->result, PG_BEGIN_PROCEED);
    assert_int_equal(rs[0]->reservation, id);
    assert_string_equal(rs[0]->decision.reason, "unresolved_retry");
    assert_int_equal(rs[1]->result, PG_BEGIN_IN_FLIGHT);
    done(rs[0]);
    done(rs[1]);
    expect_begin(pay("open", "sf", USD(10), MONDAY + 2), PG_BEGIN_IN_FLIGHT, NULL);
    expect_day("open", MONDAY, 0, USD(10)); /* reserved once */
    s = mks("open", "sf", id, PG_SETTLE_POST, USD(10), MONDAY + 3);
    with_response(s, 200, "HTTP/1.1 200 OK\r\n\r\n", "{}", 2);
    expect_settle(s);
    expect_begin(pay("open", "sf", USD(10), MONDAY + 4), PG_BEGIN_REPLAY, NULL);
    expect_day("open", MONDAY, USD(10), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_permissions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_only_views, setup, teardown),
        cmocka_unit_test_setup_teardown(test_submit_before_start_and_ready, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_keeps_everything, setup, teardown),
        cmocka_unit_test_setup_teardown(test_windows_accounting, setup, teardown),
        cmocka_unit_test_setup_teardown(test_windows_follow_the_org_zone, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exact_limit_boundary, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch_concurrency, setup, teardown),
        cmocka_unit_test_setup_teardown(test_velocity, setup, teardown),
        cmocka_unit_test_setup_teardown(test_velocity_clock_steps_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_post_then_illegal_repeats, setup, teardown),
        cmocka_unit_test_setup_teardown(test_void_then_illegal_repeats, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keep_then_post, setup, teardown),
        cmocka_unit_test_setup_teardown(test_authorized_then_capture, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_voids_object, setup, teardown),
        cmocka_unit_test_setup_teardown(test_increment_grows_reservation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_follow_up_of_unknown_object, setup, teardown),
        cmocka_unit_test_setup_teardown(test_objects_found_after_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_legacy_records, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_reservation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refunds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refund_restore_floors_at_zero, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replay_byte_identical, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mismatch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_in_flight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idempotency_index_grows_and_rebuilds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_second_server_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unresolved_after_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keep_without_answer_is_unresolved, setup, teardown),
        cmocka_unit_test_setup_teardown(test_void_without_answer_frees_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_idempotency_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hold_approve_proceeds_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hold_deny, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hold_expire, setup, teardown),
        cmocka_unit_test_setup_teardown(test_approval_never_lifts_a_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_approvals_list_order_and_filters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_record, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_item_fails_alone, setup, teardown),
        cmocka_unit_test_setup_teardown(test_overflow_fails_item, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_drains_queue, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prepare_runs_once_before_the_transaction, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pruning, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prune_budget_and_writer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_map_growth_then_full, setup_tiny, teardown),
        cmocka_unit_test_setup_teardown(test_failed_settle_leaves_key_unresolved, setup_tiny,
                                        teardown),
    };
    return cmocka_run_group_tests_name("ledger", tests, group_setup, group_teardown);
}
