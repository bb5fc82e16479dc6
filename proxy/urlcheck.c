/* The URL guard on the request path: URLs an agent asks the rail to call
 * back (webhook endpoints) are checked before anything is forwarded — shape
 * first, then every address the name resolves to, without blocking the loop
 * (uv_getaddrinfo) and with a time limit. A refusal is a 403
 * payguard_unsafe_url naming the field, audited like every denial. */
#include "common/pg.h"
#include "policy/urlguard.h"
#include "proxy/proxy_int.h"

#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>

#define RESOLVE_TIMEOUT_MS 5000

struct url_job {
    uv_getaddrinfo_t gai;
    uv_timer_t timer;
    struct conn *c;                /* NULL once answered */
    void (*next)(struct conn *c);  /* continues the request when every URL is safe */
    uint32_t idx;                  /* URL being checked */
    bool gai_pending;
    bool timer_closed;
    struct pg_url_result r;
};

static void job_free_if_done(struct url_job *j)
{
    if (!j->gai_pending && j->timer_closed)
        free(j);
}

static void on_timer_closed(uv_handle_t *h)
{
    struct url_job *j = h->data;
    j->timer_closed = true;
    job_free_if_done(j);
}

/* Hands the connection back: to `next` when every URL passed, else with the
 * refusal filled in. */
static void finish(struct url_job *j, bool ok, const char *why)
{
    struct conn *c = j->c;
    j->c = NULL;
    uv_timer_stop(&j->timer);
    uv_close((uv_handle_t *)&j->timer, on_timer_closed);
    c->url_pending = false;
    if (c->state == CONN_CLOSING) {
        conn_free_if_closed(c);
        return;
    }
    c->state = CONN_READING; /* the paths below set what comes next */
    if (ok) {
        j->next(c);
        return;
    }
    struct verdict_ctx *vc = c->vc;
    struct pg_decision *d = &vc->decision;
    const char *field = vc->intent.urls[j->idx].field;
    d->verdict = PG_VERDICT_DENY;
    d->status = 403;
    d->reason = "unsafe_url";
    d->param = field;
    snprintf(d->message, sizeof(d->message),
             "Denied: the URL in %s is not one a rail may call: %s. Use a public https:// address.",
             field ? field : "the request", why);
    const struct pg_org *org = pg_config_org(c->rt->cfg, pg_slice_cstr(c->agent->org));
    money_record_denial(c, org, (int64_t)(now_ms_wall() / 1000));
}

static void check_next(struct url_job *j);

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct url_job *j = req->data;
    j->gai_pending = false;
    if (!j->c) { /* answered already (time limit) */
        if (res)
            uv_freeaddrinfo(res);
        job_free_if_done(j);
        return;
    }
    char why[320];
    if (status != 0 || !res) {
        snprintf(why, sizeof(why), "its host %.253s does not resolve", j->r.host);
        if (res)
            uv_freeaddrinfo(res);
        finish(j, false, why);
        return;
    }
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        if (!pg_urlguard_addr_ok(&j->c->rt->cfg->url_guard, ai->ai_addr, why, sizeof(why))) {
            char full[600];
            snprintf(full, sizeof(full), "%.253s resolves to %.300s", j->r.host, why);
            uv_freeaddrinfo(res);
            finish(j, false, full);
            return;
        }
    }
    uv_freeaddrinfo(res);
    j->idx++;
    check_next(j);
}

static void on_timeout(uv_timer_t *t)
{
    struct url_job *j = t->data;
    char why[320];
    snprintf(why, sizeof(why), "its host %.253s did not resolve in time", j->r.host);
    if (j->c)
        finish(j, false, why);
}

static void check_next(struct url_job *j)
{
    struct conn *c = j->c;
    const struct pg_intent *in = &c->vc->intent;
    char why[192];
    while (j->idx < in->nurls) {
        if (!pg_url_check(&c->rt->cfg->url_guard, in->urls[j->idx].url, &j->r)) {
            finish(j, false, j->r.why[0] ? j->r.why : j->r.reason);
            return;
        }
        if (j->r.kind != PG_URL_HOST_NAME) {
            if (!pg_urlguard_addr_ok(&c->rt->cfg->url_guard, (struct sockaddr *)&j->r.addr, why, sizeof(why))) {
                finish(j, false, why);
                return;
            }
            j->idx++;
            continue;
        }
        struct addrinfo hints;
        memset(&hints, 0, sizeof(hints));
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        j->gai.data = j;
        if (uv_getaddrinfo(c->srv->loop, &j->gai, on_resolved, j->r.host, NULL, &hints) != 0) {
            finish(j, false, "its host could not be looked up");
            return;
        }
        j->gai_pending = true;
        uv_timer_start(&j->timer, on_timeout, RESOLVE_TIMEOUT_MS, 0);
        return;
    }
    finish(j, true, NULL);
}

void urlcheck_start(struct conn *c, void (*next)(struct conn *c))
{
    struct url_job *j = calloc(1, sizeof(*j));
    if (!j) {
        fail_closed(c, "out_of_memory");
        return;
    }
    j->c = c;
    j->next = next;
    uv_timer_init(c->srv->loop, &j->timer);
    j->timer.data = j;
    c->url_pending = true;
    c->state = CONN_LEDGER; /* waiting on something else than the agent */
    check_next(j);
}
