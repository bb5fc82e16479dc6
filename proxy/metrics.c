/* /metrics: counters bumped on the loop thread as requests end (labels by
 * rail, operation, decision and reason; rail status codes; decision, commit
 * and upstream latency histograms) and, at scrape time, what the ledger
 * knows (pending reservations, audit heads, commit batches), rendered in
 * the Prometheus text format. Increments are fixed-array bumps: no
 * allocation, no lock. */
#include "common/pg.h"
#include "notify/notify.h"
#include "proxy/proxy_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

/* Histogram upper bounds in microseconds: 0.1 ms to 10 s. */
static const uint64_t bounds_us[METRICS_BUCKETS] = {
    100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 1000000, 2500000,
    10000000,
};

#define NONE 0xff

static void observe(struct metrics_hist *h, uint64_t us)
{
    h->count++;
    h->sum_us += us;
    for (size_t i = 0; i < METRICS_BUCKETS; i++) {
        if (us <= bounds_us[i]) {
            h->le[i]++;
            return;
        }
    }
    h->inf++;
}

static uint32_t fnv(uint32_t h, const char *s)
{
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

/* Copies at most cap-1 bytes: labels are short; a longer one is cut. */
static void label_copy(char *dst, size_t cap, const char *s)
{
    size_t n = strnlen(s, cap - 1);
    memcpy(dst, s, n);
    dst[n] = '\0';
}

static void count_series(struct metrics *m, const char *rail, uint8_t op, uint8_t decision,
                         const char *reason)
{
    uint32_t h = fnv(fnv(2166136261u, rail), reason);
    h = (h ^ op) * 16777619u;
    h = (h ^ decision) * 16777619u;
    for (uint32_t i = 0; i < 16; i++) {
        struct metrics_series *s = &m->series[(h + i) % METRICS_SERIES];
        if (!s->used) {
            s->used = true;
            label_copy(s->rail, sizeof(s->rail), rail);
            label_copy(s->reason, sizeof(s->reason), reason);
            s->op = op;
            s->decision = decision;
            s->n = 1;
            return;
        }
        if (s->op == op && s->decision == decision &&
            strncmp(s->rail, rail, sizeof(s->rail) - 1) == 0 &&
            strncmp(s->reason, reason, sizeof(s->reason) - 1) == 0) {
            s->n++;
            return;
        }
    }
    m->series_dropped++;
}

void metrics_request_done(struct conn *c)
{
    if (c->admin || !c->req_start_us)
        return;
    struct metrics *m = &c->srv->metrics;
    uint64_t end = now_us();
    const struct verdict_ctx *vc = c->vc;
    uint8_t op = vc && vc->intent.matched ? (uint8_t)vc->intent.op : NONE;
    uint8_t decision = vc ? (uint8_t)vc->decision.verdict : NONE;
    const char *reason = "";
    if (vc && vc->decision.verdict != PG_VERDICT_ALLOW && vc->decision.reason)
        reason = vc->decision.reason;
    else if (c->error)
        reason = c->error;
    count_series(m, c->rail ? c->rail->name : "", op, decision, reason);
    if (vc) /* decided: until forwarded, or until answered when it never was */
        observe(&m->decision, (c->up_start_us ? c->up_start_us : end) - c->req_start_us);
    if (c->up_start_us)
        observe(&m->upstream, (c->up_done_us ? c->up_done_us : end) - c->up_start_us);
}

void metrics_rail_status(struct server *srv, int status)
{
    if (status >= 0 && status < 600)
        srv->metrics.rail_status[status]++;
}

void metrics_commit_done(struct conn *c)
{
    if (!c->ledger_start_us)
        return;
    observe(&c->srv->metrics.commit, now_us() - c->ledger_start_us);
    c->ledger_start_us = 0;
}

/* --- at scrape time ------------------------------------------------------------ */

static int count_pending(void *arg, const struct pg_reservation_view *r)
{
    (void)r;
    (*(uint64_t *)arg)++;
    return 0;
}

int metrics_ledger_read(struct pg_ledger *l, const struct pg_config *cfg,
                        struct metrics_ledger *out)
{
    memset(out, 0, sizeof(*out));
    pg_ledger_stats(l, &out->stats);
    out->orgs = calloc(cfg->norgs ? cfg->norgs : 1, sizeof(*out->orgs));
    out->heads = calloc(cfg->norgs ? cfg->norgs : 1, sizeof(*out->heads));
    if (!out->orgs || !out->heads)
        return PG_ENOMEM;
    int rc = pg_ledger_pending(l, NULL, count_pending, &out->pending);
    for (size_t i = 0; rc == 0 && i < cfg->norgs; i++) {
        label_copy(out->orgs[i], sizeof(out->orgs[i]), cfg->orgs[i].name);
        rc = pg_ledger_audit_head(l, cfg->orgs[i].name, &out->heads[i]);
        out->norgs = i + 1;
    }
    out->ok = rc == 0;
    return rc;
}

void metrics_ledger_free(struct metrics_ledger *lv)
{
    free(lv->orgs);
    free(lv->heads);
    lv->orgs = NULL;
    lv->heads = NULL;
}

struct out {
    struct pg_buf *b;
    int rc;
};

static void emit(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void emit(struct out *o, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n < 0 || o->rc)
        return;
    if ((size_t)n >= sizeof(line))
        n = (int)sizeof(line) - 1;
    o->rc = pg_buf_append(o->b, line, (size_t)n);
}

/* Label values: escaping per the text format (backslash, quote, newline). */
static void esc(const char *s, char *out, size_t cap)
{
    size_t j = 0;
    for (; *s && j + 3 < cap; s++) {
        if (*s == '\\' || *s == '"') {
            out[j++] = '\\';
            out[j++] = *s;
        } else if (*s == '\n') {
            out[j++] = '\\';
            out[j++] = 'n';
        } else {
            out[j++] = *s;
        }
    }
    out[j] = '\0';
}

static void hist(struct out *o, const char *name, const char *help, const struct metrics_hist *h)
{
    emit(o, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cum = 0;
    for (size_t i = 0; i < METRICS_BUCKETS; i++) {
        cum += h->le[i];
        emit(o, "%s_bucket{le=\"%llu.%06llu\"} %llu\n", name,
             (unsigned long long)(bounds_us[i] / 1000000), (unsigned long long)(bounds_us[i] % 1000000),
             (unsigned long long)cum);
    }
    emit(o, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)cum + h->inf);
    emit(o, "%s_sum %llu.%06llu\n", name, (unsigned long long)h->sum_us / 1000000,
         (unsigned long long)h->sum_us % 1000000);
    emit(o, "%s_count %llu\n", name, (unsigned long long)h->count);
}

int metrics_render(struct server *srv, const struct metrics_ledger *lv, struct pg_buf *b)
{
    struct out o = { b, 0 };
    const struct metrics *m = &srv->metrics;
    char rail[80], reason[120];

    emit(&o, "# HELP payguard_requests_total Agent requests by rail, operation, decision and reason.\n"
             "# TYPE payguard_requests_total counter\n");
    for (size_t i = 0; i < METRICS_SERIES; i++) {
        const struct metrics_series *s = &m->series[i];
        if (!s->used)
            continue;
        esc(s->rail, rail, sizeof(rail));
        esc(s->reason, reason, sizeof(reason));
        emit(&o, "payguard_requests_total{rail=\"%s\",operation=\"%s\",decision=\"%s\",reason=\"%s\"} %llu\n",
             rail, s->op == NONE ? "none" : pg_op_name((enum pg_op)s->op),
             s->decision == NONE ? "none" : pg_verdict_name((enum pg_verdict)s->decision), reason,
             (unsigned long long)s->n);
    }
    emit(&o, "# HELP payguard_requests_unlabelled_total Requests counted without labels (label table full).\n"
             "# TYPE payguard_requests_unlabelled_total counter\npayguard_requests_unlabelled_total %llu\n",
         (unsigned long long)m->series_dropped);
    emit(&o, "# HELP payguard_rail_responses_total Answers from the rails by status code.\n"
             "# TYPE payguard_rail_responses_total counter\n");
    for (int s = 0; s < 600; s++)
        if (m->rail_status[s])
            emit(&o, "payguard_rail_responses_total{code=\"%d\"} %llu\n", s,
                 (unsigned long long)m->rail_status[s]);
    hist(&o, "payguard_decision_seconds", "From a request's first byte to its verdict (forwarded or answered).", &m->decision);
    hist(&o, "payguard_commit_seconds", "From queuing a ledger request to its durable answer.", &m->commit);
    hist(&o, "payguard_upstream_seconds", "From sending to the rail to its answer.", &m->upstream);
    emit(&o, "# HELP payguard_open_connections Agent connections open.\n"
             "# TYPE payguard_open_connections gauge\npayguard_open_connections %u\n", srv->nconns);
    if (lv && lv->ok) {
        const struct pg_ledger_stats *st = &lv->stats;
        emit(&o, "# HELP payguard_ledger_batches_total Write transactions committed by the ledger's writer.\n"
                 "# TYPE payguard_ledger_batches_total counter\npayguard_ledger_batches_total %llu\n",
             (unsigned long long)st->batches);
        emit(&o, "# HELP payguard_ledger_batch_items_total Ledger requests in those transactions (items / batches = mean batch size).\n"
                 "# TYPE payguard_ledger_batch_items_total counter\npayguard_ledger_batch_items_total %llu\n",
             (unsigned long long)st->items);
        emit(&o, "# HELP payguard_ledger_batch_max Largest batch committed.\n"
                 "# TYPE payguard_ledger_batch_max gauge\npayguard_ledger_batch_max %llu\n",
             (unsigned long long)st->max_batch);
        emit(&o, "# HELP payguard_ledger_unanswered Ledger requests queued or being committed, settlements of answers already given included (0: everything answered is durable).\n"
                 "# TYPE payguard_ledger_unanswered gauge\npayguard_ledger_unanswered %llu\n",
             (unsigned long long)st->unanswered);
        emit(&o, "# HELP payguard_ledger_failed_batches_total Batches that could not be recorded.\n"
                 "# TYPE payguard_ledger_failed_batches_total counter\npayguard_ledger_failed_batches_total %llu\n",
             (unsigned long long)st->failed_batches);
        emit(&o, "# HELP payguard_ledger_map_bytes Size of the ledger's LMDB map.\n"
                 "# TYPE payguard_ledger_map_bytes gauge\npayguard_ledger_map_bytes %llu\n",
             (unsigned long long)st->map_size);
        emit(&o, "# HELP payguard_pending_reservations Reservations pending or authorized (money that may have moved).\n"
                 "# TYPE payguard_pending_reservations gauge\npayguard_pending_reservations %llu\n",
             (unsigned long long)lv->pending);
        emit(&o, "# HELP payguard_audit_head_seq Last sequence number of each org's audit chain.\n"
                 "# TYPE payguard_audit_head_seq gauge\n");
        for (size_t i = 0; i < lv->norgs; i++) {
            esc(lv->orgs[i], rail, sizeof(rail));
            emit(&o, "payguard_audit_head_seq{org=\"%s\"} %llu\n", rail,
                 (unsigned long long)lv->heads[i]);
        }
    }
    emit(&o, "# HELP payguard_ledger_up 1 when the ledger could be read for this scrape.\n"
             "# TYPE payguard_ledger_up gauge\npayguard_ledger_up %d\n",
         lv && lv->ok && pg_ledger_ready(srv->ledger) ? 1 : 0);
    struct pg_notify_stats ns = { 0 };
    if (srv->notify)
        pg_notify_stats(srv->notify, &ns);
    const struct {
        const char *name, *help;
        uint64_t v;
    } hooks[] = {
        { "attempts", "Webhook delivery attempts.", ns.attempts },
        { "deliveries", "Webhook attempts answered 2xx.", ns.deliveries },
        { "failures", "Webhook attempts that failed (retried later or given up).", ns.failures },
        { "given_up", "Webhook deliveries dropped after max_age.", ns.given_up },
        { "endpoints_disabled", "Webhook endpoints disabled by a 410.", ns.disabled },
    };
    for (size_t i = 0; i < PG_ARRAY_LEN(hooks); i++)
        emit(&o, "# HELP payguard_webhook_%s_total %s\n# TYPE payguard_webhook_%s_total counter\n"
                 "payguard_webhook_%s_total %llu\n",
             hooks[i].name, hooks[i].help, hooks[i].name, hooks[i].name,
             (unsigned long long)hooks[i].v);
    return o.rc;
}
