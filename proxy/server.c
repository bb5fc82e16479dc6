/* Listeners and agent connections: accept, read, hand complete requests to
 * authentication and then to the upstream, write answers back, and run the
 * header/body/idle timeouts. Also the process lifecycle: config reload on
 * SIGHUP, drain on SIGTERM/SIGINT. Loop thread only. */
#include "common/pg.h"
#include "proxy/proxy.h"
#include "policy/pan.h"
#include "proxy/proxy_int.h"
#include "notify/notify.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#define READ_BUF_SIZE 65536
/* Descriptors besides connections: listeners, ledger, log, idle rail pools,
 * webhook deliveries, admin connections. */
#define NOFILE_RESERVE 256

/* All reads land here and are consumed before the read callback returns;
 * leftovers of pipelined requests are copied into the connection. */
static char read_buf[READ_BUF_SIZE];

uint64_t now_us(void)
{
    return uv_hrtime() / 1000;
}

uint64_t now_ms_wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Every agent connection takes a descriptor, and so does its rail connection
 * while its request is at the rail. Raises the soft open-file limit that far
 * (up to the hard limit) so max_connections can be reached; past the limit
 * connections would be dropped without the 503 and rail calls would fail.
 * Says so when the hard limit is too low. */
static void fit_nofile(const struct pg_limits *lim, FILE *log)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    rlim_t want = (rlim_t)lim->max_connections * 2 + NOFILE_RESERVE;
    if (rl.rlim_cur >= want)
        return;
    struct rlimit raised = rl;
    raised.rlim_cur = rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want ? rl.rlim_max : want;
    if (raised.rlim_cur > rl.rlim_cur && setrlimit(RLIMIT_NOFILE, &raised) == 0)
        rl = raised;
    if (rl.rlim_cur >= want)
        return;
    char have[32], need[32];
    snprintf(have, sizeof(have), "%llu", (unsigned long long)rl.rlim_cur);
    snprintf(need, sizeof(need), "%llu", (unsigned long long)want);
    log_event(log, "warn",
              "the open-file limit is below what limits.max_connections needs: connections past it are dropped without an answer; raise ulimit -n (hard) or lower max_connections",
              "limit", have, "needed", need);
}

/* --- runtime (one per config generation) ------------------------------- */

/* Frees what runtime_new built besides the pools and the config. */
static void runtime_free_parts(struct runtime *rt)
{
    for (size_t i = 0; rt->routes && i < rt->cfg->nrails; i++)
        pg_routes_free(rt->routes[i]);
    for (size_t i = 0; rt->policies && i < rt->cfg->nagents; i++)
        pg_policy_free(rt->policies[i]);
    free(rt->routes);
    free(rt->policies);
    free(rt->buckets);
    free(rt->pools);
    free(rt);
}

static struct runtime *runtime_new(struct server *srv, struct pg_config *cfg, char *err,
                                   size_t errlen)
{
    struct runtime *rt = calloc(1, sizeof(*rt));
    if (!rt) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    rt->pools = calloc(cfg->nrails ? cfg->nrails : 1, sizeof(*rt->pools));
    if (!rt->pools) {
        free(rt);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    rt->srv = srv;
    rt->cfg = cfg;
    rt->refs = 1;
    rt->routes = calloc(cfg->nrails ? cfg->nrails : 1, sizeof(*rt->routes));
    rt->policies = calloc(cfg->nagents ? cfg->nagents : 1, sizeof(*rt->policies));
    rt->buckets = calloc(cfg->nagents ? cfg->nagents : 1, sizeof(*rt->buckets));
    if (!rt->routes || !rt->policies || !rt->buckets) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < cfg->nrails; i++) {
        if (pg_routes_build(&cfg->rails[i], &rt->routes[i], err, errlen) != 0)
            goto fail;
    }
    for (size_t i = 0; i < cfg->nagents; i++) {
        if (pg_policy_compile(cfg, &cfg->agents[i], &rt->policies[i], err, errlen) != 0)
            goto fail;
    }
    for (size_t i = 0; i < cfg->nrails; i++) {
        if (pool_init(&rt->pools[i], rt, &cfg->rails[i], err, errlen) != 0) {
            for (size_t j = 0; j < i; j++)
                pool_close(&rt->pools[j]);
            goto fail;
        }
    }
    return rt;
fail:
    runtime_free_parts(rt);
    return NULL;
}

void runtime_retain(struct runtime *rt)
{
    rt->refs++;
}

void runtime_release(struct runtime *rt)
{
    if (--rt->refs > 0)
        return;
    struct pg_config *cfg = rt->cfg;
    for (size_t i = 0; i < cfg->nrails; i++)
        pool_close(&rt->pools[i]);
    runtime_free_parts(rt);
    pg_config_free(cfg);
}

/* --- connection lifecycle ---------------------------------------------- */

void verdict_ctx_free(struct verdict_ctx *vc)
{
    if (!vc)
        return;
    pg_buf_free(&vc->resp_head);
    pg_buf_free(&vc->resp_body);
    free(vc);
}

void conn_free_if_closed(struct conn *c)
{
    if (!c->tcp_closed || !c->timer_closed || c->writes_in_flight || c->auth_pending ||
        c->ledger_pending || c->url_pending)
        return;
    verdict_ctx_free(c->vc);
    if (c->ssl)
        SSL_free(c->ssl); /* frees both BIOs */
    pg_buf_free(&c->tls_out);
    pg_reqparser_free(&c->parser);
    pg_buf_free(&c->pending);
    pg_buf_free(&c->out);
    free(c);
}

static void on_tcp_closed(uv_handle_t *h)
{
    struct conn *c = h->data;
    c->tcp_closed = true;
    conn_free_if_closed(c);
}

static void on_timer_closed(uv_handle_t *h)
{
    struct conn *c = h->data;
    c->timer_closed = true;
    conn_free_if_closed(c);
}

static void maybe_finish_drain(struct server *srv);

static void conn_close(struct conn *c)
{
    if (c->state == CONN_CLOSING)
        return;
    c->state = CONN_CLOSING;
    upstream_detach(c);
    money_abandon(c);
    if (c->rt) {
        runtime_release(c->rt);
        c->rt = NULL;
    }
    link_remove(&c->link);
    if (!c->admin)
        c->srv->nconns--;
    uv_close((uv_handle_t *)&c->timer, on_timer_closed);
    uv_close((uv_handle_t *)&c->tcp, on_tcp_closed);
    maybe_finish_drain(c->srv);
}

void conn_abort(struct conn *c)
{
    conn_close(c);
}

struct write_req {
    uv_write_t req;
    struct conn *conn;
    char *data;
    size_t len;
};

static void on_write(uv_write_t *req, int status)
{
    struct write_req *w = CONTAINER_OF(req, struct write_req, req);
    struct conn *c = w->conn;
    c->writes_in_flight--;
    c->write_queue_bytes -= w->len;
    free(w->data);
    free(w);
    if (c->state == CONN_CLOSING) {
        conn_free_if_closed(c);
        return;
    }
    if (status < 0) {
        conn_close(c);
        return;
    }
    if (c->close_after_write && c->writes_in_flight == 0 && c->state == CONN_READING) {
        conn_close(c);
        return;
    }
    if (c->state == CONN_RESPONDING)
        upstream_resume(c);
}

void conn_write(struct conn *c, const void *data, size_t len)
{
    if (c->state == CONN_CLOSING)
        return;
    if (pg_buf_append(&c->out, data, len) != 0)
        conn_close(c);
    c->bytes_out += len;
}

size_t conn_pending_write_bytes(const struct conn *c)
{
    return c->write_queue_bytes + c->out.len;
}

/* Writes the bytes in `b` to the socket and leaves it empty: at once when
 * the socket takes them (the buffer is kept for reuse: no allocation, no
 * re-arming), else through a queued uv_write that owns them. */
static void write_raw(struct conn *c, struct pg_buf *b)
{
    if (b->len == 0)
        return;
    if (c->writes_in_flight == 0) {
        uv_buf_t now = uv_buf_init(b->p, (unsigned)b->len);
        int n = uv_try_write((uv_stream_t *)&c->tcp, &now, 1);
        if (n == (int)b->len) {
            b->len = 0;
            return;
        }
        if (n < 0 && n != UV_EAGAIN) {
            conn_close(c);
            return;
        }
        if (n > 0) {
            memmove(b->p, b->p + n, b->len - (size_t)n);
            b->len -= (size_t)n;
        }
    }
    struct write_req *w = malloc(sizeof(*w));
    if (!w) {
        conn_close(c);
        return;
    }
    w->conn = c;
    w->data = pg_buf_take(b, &w->len);
    uv_buf_t ub = uv_buf_init(w->data, (unsigned)w->len);
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &ub, 1, on_write) != 0) {
        free(w->data);
        free(w);
        conn_close(c);
        return;
    }
    c->writes_in_flight++;
    c->write_queue_bytes += w->len;
}

/* Moves what TLS produced (records, handshake) to the socket. */
static void tls_flush(struct conn *c)
{
    size_t pending = BIO_ctrl_pending(c->net_out);
    if (pending == 0)
        return;
    if (pg_buf_reserve(&c->tls_out, pending) != 0) {
        conn_close(c);
        return;
    }
    int n = BIO_read(c->net_out, c->tls_out.p + c->tls_out.len, (int)pending);
    if (n > 0)
        c->tls_out.len += (size_t)n;
    write_raw(c, &c->tls_out);
}

void conn_flush(struct conn *c)
{
    if (c->state == CONN_CLOSING || c->out.len == 0)
        return;
    if (!c->ssl) {
        write_raw(c, &c->out);
        return;
    }
    int n = SSL_write(c->ssl, c->out.p, (int)c->out.len);
    if (n != (int)c->out.len) { /* memory BIOs take everything: this is a real failure */
        ERR_clear_error();
        conn_close(c);
        return;
    }
    c->out.len = 0;
    tls_flush(c);
}

/* --- timers ----------------------------------------------------------- */

static void on_conn_timer(uv_timer_t *t)
{
    struct conn *c = t->data;
    if (c->state != CONN_READING)
        return;
    if (!c->parser.started) {
        conn_close(c); /* idle keep-alive connection */
        return;
    }
    c->error = c->parser.headers_done ? "body_timeout" : "header_timeout";
    conn_send_error(c, 408, "invalid_request_error", "payguard_request_timeout",
                    c->parser.headers_done
                        ? "The request body did not arrive in time; send it promptly and retry."
                        : "The request headers did not arrive in time; send them promptly and retry.",
                    0);
}

static void arm_timer(struct conn *c, uint32_t ms)
{
    uv_timer_start(&c->timer, on_conn_timer, ms, 0);
}

/* --- requests ---------------------------------------------------------- */

static void process_input(struct conn *c, const char *data, size_t len);
static void restart_read(struct conn *c);

void conn_request_done(struct conn *c)
{
    if (c->state == CONN_CLOSING)
        return;
    if (!c->parser.keep_alive || c->srv->draining)
        c->close_after_write = true;
    /* The answer goes out before the log line is written. */
    conn_flush(c);
    metrics_request_done(c);
    if (c->req_start_us && !c->admin)
        log_request(c);
    if (c->state == CONN_CLOSING)
        return;
    if (c->rt) {
        runtime_release(c->rt);
        c->rt = NULL;
    }
    verdict_ctx_free(c->vc);
    c->vc = NULL;
    c->agent = NULL;
    c->rail = NULL;
    c->req_start_us = c->up_start_us = c->up_done_us = 0;
    c->bytes_in = c->bytes_out = 0;
    c->status = 0;
    c->error = NULL;
    c->sent_head = c->resp_chunked = c->retried = false;
    c->state = CONN_READING;
    if (c->close_after_write) {
        uv_timer_stop(&c->timer);
        if (c->writes_in_flight == 0)
            conn_close(c);
        return;
    }
    const struct pg_limits *lim = &c->srv->rt->cfg->limits;
    pg_reqparser_next(&c->parser);
    c->parser.header_bytes_max = lim->header_bytes;
    c->parser.max_headers = lim->max_headers;
    c->parser.body_bytes_max = lim->body_bytes;
    arm_timer(c, lim->idle_timeout_ms);
    if (c->pending.len) {
        size_t n;
        char *p = pg_buf_take(&c->pending, &n);
        process_input(c, p, n);
        free(p);
        if (c->state == CONN_CLOSING)
            return;
    }
    if (c->state == CONN_READING && c->read_stopped) {
        c->read_stopped = false;
        restart_read(c);
    }
}

/* A HEAD answer is a head only (its Content-Length says what a GET would
 * get): a body would be read as the start of the next answer. */
static void drop_body_if_head(struct conn *c, size_t from)
{
    if (!c->parser.past_headers || c->parser.llhttp.method != HTTP_HEAD)
        return;
    for (size_t i = from; i + 4 <= c->out.len; i++) {
        if (memcmp(c->out.p + i, "\r\n\r\n", 4) == 0) {
            c->out.len = i + 4;
            return;
        }
    }
}

void conn_send_error(struct conn *c, int status, const char *type, const char *code,
                     const char *message, uint32_t retry_after_s)
{
    /* A reserved money request settles before its error is answered. */
    if (c->state != CONN_CLOSING && money_fail(c, status, type, code, message))
        return;
    /* The body of a refused request may still be on the wire: close. */
    bool close = status == 400 || status == 408 || status == 413 || status == 417 ||
                 status == 431 || !c->parser.keep_alive || c->srv->draining;
    if (close)
        c->close_after_write = true;
    c->status = status;
    if (!c->error)
        c->error = code;
    if (c->state == CONN_CLOSING)
        return;
    if (c->sent_head) { /* mid-response: nothing sane to add */
        conn_close(c);
        return;
    }
    size_t from = c->out.len;
    if (pg_http_write_error(&c->out, status, type, code, message, close, retry_after_s) != 0) {
        conn_close(c);
        return;
    }
    drop_body_if_head(c, from);
    c->bytes_out += c->out.len;
    c->sent_head = true;
    conn_request_done(c);
}

/* Answers a verdict other than ALLOW in the rail's own error format. */
void send_verdict(struct conn *c)
{
    struct verdict_ctx *vc = c->vc;
    struct pg_decision *d = &vc->decision;
    char code[64];
    snprintf(code, sizeof(code), "payguard_%s", d->reason);
    bool hold = d->verdict == PG_VERDICT_HOLD;
    const char *type = vc->error_type ? vc->error_type : hold ? "card_error" : "invalid_request_error";
    bool close = !c->parser.keep_alive || c->srv->draining;
    if (close)
        c->close_after_write = true;
    c->status = d->status;
    c->error = d->reason;
    size_t from = c->out.len;
    if (pg_http_write_verdict(&c->out, c->rail->preset, d->status, pg_verdict_name(d->verdict),
                              type, code, d->message, d->param,
                              hold ? vc->approval_id : NULL, close) != 0) {
        conn_close(c);
        return;
    }
    drop_body_if_head(c, from);
    c->bytes_out += c->out.len;
    c->sent_head = true;
    conn_request_done(c);
}

void fail_closed(struct conn *c, const char *why)
{
    c->error = why;
    conn_send_error(c, 503, "api_error", "payguard_unavailable",
                    "payguard could not decide on this request, so nothing was sent to the rail. Retry shortly.",
                    0);
}

static void decided(struct conn *c);

/* Where in the request a raw card number sits ("body", "query or path",
 * "header NAME"), or NULL. Every byte the agent sent is scanned. */
static const char *find_card_number(const struct pg_msg *m)
{
    struct pg_pan_match pm;
    struct pg_slice t = pg_msg_target(m);
    if (pg_pan_find(t.ptr, t.len, &pm))
        return "path or query";
    if (m->body.len && pg_pan_find(m->body.p, m->body.len, &pm))
        return "body";
    for (uint32_t i = 0; i < m->nhdrs; i++) {
        struct pg_slice v = pg_msg_value(m, i);
        if (v.len && pg_pan_find(v.ptr, v.len, &pm))
            return "headers";
    }
    return NULL;
}

/* Classifies the request with the rail's route table and runs the policy.
 * Only an ALLOW reaches the rail. */
static void decide(struct conn *c)
{
    struct runtime *rt = c->rt;
    const struct pg_config *cfg = rt->cfg;
    size_t ri = (size_t)(c->rail - cfg->rails), ai = (size_t)(c->agent - cfg->agents);
    struct pg_msg *m = &c->parser.msg;
    c->vc = calloc(1, sizeof(*c->vc));
    if (!c->vc) {
        fail_closed(c, "out_of_memory");
        return;
    }
    struct pg_intent *in = &c->vc->intent;
    struct pg_decision *d = &c->vc->decision;
    const char *where = find_card_number(m);
    if (where) {
        /* Before anything is classified, logged in detail or recorded. */
        d->verdict = PG_VERDICT_DENY;
        d->status = 403;
        d->reason = "raw_card_data";
        snprintf(d->message, sizeof(d->message),
                 "Denied: the request carries a raw card number (in the %s). Agents must never handle card numbers: use a payment method token (pm_...) created by the customer-facing flow.",
                 where);
        const struct pg_org *org = pg_config_org(cfg, pg_slice_cstr(c->agent->org));
        money_record_denial(c, org, (int64_t)(now_ms_wall() / 1000));
        return;
    }
    int ct = pg_msg_find(m, PG_SLICE("Content-Type"));
    struct pg_slice ctype = ct >= 0 ? pg_msg_value(m, (uint32_t)ct) : PG_SLICE_NULL;
    int rc = pg_rail_classify(rt->routes[ri], pg_slice_cstr(pg_reqparser_method(&c->parser)),
                              pg_msg_target(m), ctype, pg_slice_of(m->body.p, m->body.len), in, d);
    if (rc == PG_EPARSE) {
        d->verdict = PG_VERDICT_DENY;
        send_verdict(c);
        return;
    }
    if (rc != 0) {
        fail_closed(c, "classify_failed");
        return;
    }
    if (!in->matched) {
        if (c->rail->unmatched == PG_UNMATCHED_PASS) {
            c->state = CONN_UPSTREAM;
            upstream_forward(c);
            return;
        }
        d->verdict = PG_VERDICT_DENY;
        d->status = 403;
        d->reason = "unknown_operation";
        snprintf(d->message, sizeof(d->message),
                 "payguard does not know what %s %.*s does on rail %s, so it does not let it through. Use a documented API call, or ask a human to add a route for it.",
                 pg_reqparser_method(&c->parser), (int)pg_msg_target(m).len, pg_msg_target(m).ptr,
                 c->rail->name);
        send_verdict(c);
        return;
    }
    const struct pg_org *org = pg_config_org(cfg, pg_slice_cstr(c->agent->org));
    if (!org || !org->tz) {
        fail_closed(c, "no_timezone");
        return;
    }
    int64_t now = (int64_t)(now_ms_wall() / 1000);
    const struct pg_policy *policy = rt->policies[ai];
    if (pg_policy_check(policy, c->agent, in, org->tz, now, d) != 0) {
        fail_closed(c, "policy_failed");
        return;
    }
    if (d->verdict == PG_VERDICT_DENY) {
        /* Denials of money and config requests are audited; reads are logged. */
        if (in->op != PG_OP_READ)
            money_record_denial(c, org, now);
        else
            send_verdict(c);
        return;
    }
    if (in->nurls) {
        urlcheck_start(c, decided);
        return;
    }
    decided(c);
}

/* The policy let the request through (and its callback URLs are safe):
 * money requests go to the ledger, everything else to the rail. */
static void decided(struct conn *c)
{
    struct runtime *rt = c->rt;
    const struct pg_config *cfg = rt->cfg;
    size_t ai = (size_t)(c->agent - cfg->agents);
    struct pg_intent *in = &c->vc->intent;
    struct pg_decision *d = &c->vc->decision;
    if (pg_op_moves_money(in->op)) {
        const struct pg_org *org = pg_config_org(cfg, pg_slice_cstr(c->agent->org));
        money_begin(c, org, (int64_t)(now_ms_wall() / 1000), rt->policies[ai]);
        return;
    }
    int kr = money_rail_key(c);
    if (kr == PG_EPARSE) {
        d->verdict = PG_VERDICT_DENY;
        d->status = 400;
        d->reason = "invalid_idempotency_key";
        d->param = "Idempotency-Key";
        snprintf(d->message, sizeof(d->message),
                 "The Idempotency-Key must be 1-255 printable ASCII characters.");
        send_verdict(c);
        return;
    }
    if (kr != 0) {
        fail_closed(c, "hash_failed");
        return;
    }
    c->state = CONN_UPSTREAM;
    upstream_forward(c);
}

/* Does the agent's client_cert binding match the certificate this
 * connection presented? Agents without a binding match any connection. */
static bool cert_matches(const struct conn *c, const struct pg_agent *a)
{
    if (!a->cert_subject && !a->has_cert_spki)
        return true;
    X509 *peer = c->ssl ? SSL_get0_peer_certificate(c->ssl) : NULL;
    if (!peer)
        return false;
    if (a->cert_subject) {
        char subject[512];
        BIO *b = BIO_new(BIO_s_mem());
        int n = -1;
        if (b && X509_NAME_print_ex(b, X509_get_subject_name(peer), 0, XN_FLAG_RFC2253) >= 0)
            n = BIO_read(b, subject, (int)sizeof(subject) - 1);
        BIO_free(b);
        if (n < 0 || strncmp(subject, a->cert_subject, (size_t)n) != 0 ||
            strlen(a->cert_subject) != (size_t)n)
            return false;
    }
    if (a->has_cert_spki) {
        unsigned char *der = NULL;
        int len = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(peer), &der);
        uint8_t h[PG_SHA256_LEN];
        bool ok = len > 0 && pg_sha256(der, (size_t)len, h) == 0 &&
                  pg_ct_equal(h, a->cert_spki, sizeof(h));
        OPENSSL_free(der);
        if (!ok)
            return false;
    }
    return true;
}

static const struct pg_agent *agent_by_cert(const struct conn *c)
{
    const struct pg_config *cfg = c->rt->cfg;
    if (!SSL_get0_peer_certificate(c->ssl))
        return NULL;
    for (size_t i = 0; i < cfg->nagents; i++) {
        const struct pg_agent *a = &cfg->agents[i];
        /* Certificate instead of a token; with a token, it is in addition. */
        if (!a->token_hash && (a->cert_subject || a->has_cert_spki) && cert_matches(c, a))
            return a;
    }
    return NULL;
}

static void authorized(struct conn *c, const struct pg_agent *agent)
{
    const struct pg_config *cfg = c->rt->cfg;
    c->agent = agent;
    if (!cert_matches(c, agent)) {
        conn_send_error(c, 401, "authentication_error", "payguard_certificate_mismatch",
                        "This agent must connect with its own client certificate; the one presented belongs to someone else or is missing.",
                        0);
        return;
    }
    if (agent->revoked) {
        conn_send_error(c, 401, "authentication_error", "payguard_agent_revoked",
                        "This agent's payguard token has been revoked. A human must issue a new one.", 0);
        return;
    }
    if (agent->expires && (time_t)(now_ms_wall() / 1000) >= agent->expires) {
        conn_send_error(c, 401, "authentication_error", "payguard_token_expired",
                        "This agent's payguard token has expired. A human must renew it.", 0);
        return;
    }
    /* Revocations live in the ledger so they apply to the very next request,
     * with no reload; verified tokens in the cache do not outlive them. */
    struct pg_revocation rv;
    int rr = pg_ledger_agent_revoked(c->srv->ledger, agent->id, &rv);
    if (rr == 0) {
        char msg[400];
        snprintf(msg, sizeof(msg), "This agent has been revoked by a human%s%s. Stop and ask a human; retrying will not help.",
                 rv.reason[0] ? ": " : "", rv.reason);
        conn_send_error(c, 401, "authentication_error", "payguard_agent_revoked", msg, 0);
        return;
    }
    if (rr != PG_ENOTFOUND) {
        fail_closed(c, "revocation_unreadable");
        return;
    }
    size_t ai = (size_t)(agent - cfg->agents);
    uint32_t rate, per, burst;
    if (pg_policy_rate(c->rt->policies[ai], &rate, &per, &burst)) {
        uint32_t wait = pg_bucket_take(&c->rt->buckets[ai], rate, per, burst, now_us());
        if (wait) {
            char msg[256];
            snprintf(msg, sizeof(msg),
                     "Too many requests: this agent may make %u requests per %u s (bursts of %u). Wait %u s before retrying.",
                     rate, per, burst, wait);
            conn_send_error(c, 429, "rate_limit_error", "payguard_rate_limit", msg, wait);
            return;
        }
    }
    struct pg_slice want = pg_slice_cstr(agent->rails[0]);
    int rh = pg_msg_find(&c->parser.msg, PG_SLICE("Payguard-Rail"));
    if (rh >= 0) {
        want = pg_msg_value(&c->parser.msg, (uint32_t)rh);
        bool ok = false;
        for (size_t i = 0; i < agent->nrails && !ok; i++)
            ok = pg_slice_eq(want, pg_slice_cstr(agent->rails[i]));
        if (!ok) {
            conn_send_error(c, 403, "invalid_request_error", "payguard_rail_not_allowed",
                            "This agent may not use the rail named in Payguard-Rail.", 0);
            return;
        }
    }
    c->rail = pg_config_rail(cfg, want);
    if (!c->rail) {
        conn_send_error(c, 403, "invalid_request_error", "payguard_rail_not_allowed",
                        "This agent's rail is not configured.", 0);
        return;
    }
    decide(c);
}

struct auth_work {
    uv_work_t req;
    struct auth_work *next;          /* in srv->auth_works */
    struct conn *conn;
    struct conn *waiters;            /* same token, same generation: answered with conn */
    struct runtime *rt;
    uint8_t digest[PG_SHA256_LEN];
    char token[256];
    size_t token_len;
    const struct pg_agent *found;
};

static void auth_work_cb(uv_work_t *req)
{
    struct auth_work *w = CONTAINER_OF(req, struct auth_work, req);
    w->found = pg_auth_find_agent(w->rt->cfg, pg_slice_of(w->token, w->token_len));
}

static void auth_fail(struct conn *c, const char *message)
{
    pg_auth_limiter_fail(c->srv->limiter, (struct sockaddr *)&c->peer, now_ms_wall());
    conn_send_error(c, 401, "authentication_error", "payguard_invalid_token", message, 0);
}

/* Ends one connection's wait for a token check. `found` is NULL when the
 * token is not valid. */
static void auth_done(struct conn *c, const struct pg_agent *found)
{
    c->auth_pending = false;
    if (c->state != CONN_AUTH) {
        /* The connection was closed under us (shutdown); nothing to answer. */
        conn_free_if_closed(c);
        return;
    }
    c->state = CONN_READING;
    if (!found) {
        auth_fail(c, "The payguard token is not valid. Use the token issued for this agent.");
        return;
    }
    authorized(c, found);
}

static void auth_after_cb(uv_work_t *req, int status)
{
    struct auth_work *w = CONTAINER_OF(req, struct auth_work, req);
    struct server *srv = w->conn->srv;
    OPENSSL_cleanse(w->token, sizeof(w->token));
    for (struct auth_work **p = &srv->auth_works; *p; p = &(*p)->next) {
        if (*p == w) {
            *p = w->next;
            break;
        }
    }
    srv->auth_inflight--;
    /* Open connections still hold w->rt, so w->found's config lives on. */
    const struct pg_agent *found = status == 0 ? w->found : NULL;
    bool held = w->conn->rt == w->rt;
    for (struct conn *x = w->waiters; x && !held; x = x->auth_next)
        held = x->rt == w->rt;
    if (found && held && pg_token_cache_put(srv->tokens, w->digest, found) != 0) {
        /* A full cache only costs another bcrypt next time. */
    }
    struct conn *c = w->conn, *waiters = w->waiters;
    runtime_release(w->rt);
    free(w);
    auth_done(c, found);
    while (waiters) {
        struct conn *next = waiters->auth_next;
        waiters->auth_next = NULL;
        auth_done(waiters, found);
        waiters = next;
    }
}

static void authenticate(struct conn *c)
{
    struct pg_msg *m = &c->parser.msg;
    struct server *srv = c->srv;
    uint32_t wait = pg_auth_limiter_wait(srv->limiter, (struct sockaddr *)&c->peer, now_ms_wall());
    if (wait) {
        conn_send_error(c, 429, "rate_limit_error", "payguard_rate_limited",
                        "Too many failed authentications from this address; wait and retry with a valid token.",
                        wait);
        return;
    }
    int ah = pg_msg_find(m, PG_SLICE("Authorization"));
    if (ah < 0) {
        /* With mutual TLS, the client certificate alone may name the agent. */
        const struct pg_agent *by_cert = c->ssl ? agent_by_cert(c) : NULL;
        if (by_cert) {
            authorized(c, by_cert);
            return;
        }
        conn_send_error(c, 401, "authentication_error", "payguard_missing_token",
                        "No payguard token. Send it as 'Authorization: Bearer pgt_...' (the SDK's API key).",
                        0);
        return;
    }
    char scratch[512];
    struct pg_slice tok;
    if (pg_auth_credential(pg_msg_value(m, (uint32_t)ah), scratch, sizeof(scratch), &tok) != 0) {
        auth_fail(c, "The Authorization header is malformed. Send 'Authorization: Bearer pgt_...'.");
        return;
    }
    if (pg_auth_token_check_format(tok) != 0) {
        bool rail_key = pg_slice_has_prefix(tok, PG_SLICE("sk_")) ||
                        pg_slice_has_prefix(tok, PG_SLICE("rk_"));
        auth_fail(c, rail_key ? "That is a rail secret key. Agents authenticate to payguard with their own pgt_ token."
                              : "The payguard token is not valid. Use the token issued for this agent.");
        return;
    }
    uint8_t digest[PG_SHA256_LEN];
    if (pg_sha256(tok.ptr, tok.len, digest) != 0) {
        conn_send_error(c, 503, "api_error", "payguard_unavailable",
                        "payguard could not check the token; retry shortly.", 0);
        return;
    }
    const struct pg_agent *a = pg_token_cache_get(srv->tokens, c->rt->cfg, digest);
    if (a) {
        authorized(c, a);
        return;
    }
    /* The same token is being checked already (many connections arriving
     * at once): wait for that answer rather than run bcrypt again, which
     * would flood the thread pool the rail's name resolution shares. */
    for (struct auth_work *w = srv->auth_works; w; w = w->next) {
        if (w->rt == c->rt && CRYPTO_memcmp(w->digest, digest, sizeof(digest)) == 0) {
            c->state = CONN_AUTH;
            c->auth_pending = true;
            c->auth_next = w->waiters;
            w->waiters = c;
            return;
        }
    }
    struct auth_work *w = calloc(1, sizeof(*w));
    if (!w || tok.len >= sizeof(w->token)) {
        free(w);
        auth_fail(c, "The payguard token is not valid. Use the token issued for this agent.");
        return;
    }
    w->conn = c;
    w->rt = c->rt;
    runtime_retain(w->rt); /* the worker reads it even if the connection goes */
    memcpy(w->digest, digest, sizeof(digest));
    memcpy(w->token, tok.ptr, tok.len);
    w->token_len = tok.len;
    c->state = CONN_AUTH;
    c->auth_pending = true;
    srv->auth_inflight++;
    if (uv_queue_work(srv->loop, &w->req, auth_work_cb, auth_after_cb) != 0) {
        srv->auth_inflight--;
        runtime_release(w->rt);
        c->state = CONN_READING;
        c->auth_pending = false;
        free(w);
        conn_send_error(c, 503, "api_error", "payguard_unavailable",
                        "payguard could not check the token; retry shortly.", 0);
        return;
    }
    w->next = srv->auth_works;
    srv->auth_works = w;
}

static void handle_request(struct conn *c)
{
    uv_timer_stop(&c->timer);
    c->rt = c->srv->rt;
    runtime_retain(c->rt);
    if (c->admin) {
        admin_handle(c);
        return;
    }
    authenticate(c);
}

static void process_input(struct conn *c, const char *data, size_t len)
{
    while (len > 0 && c->state == CONN_READING && !c->close_after_write) {
        bool was_started = c->parser.started, had_head = c->parser.headers_done;
        ssize_t n = pg_reqparser_feed(&c->parser, data, len);
        if (!was_started && c->parser.started) {
            c->req_start_us = now_us();
            arm_timer(c, c->srv->rt->cfg->limits.header_timeout_ms);
        }
        if (n < 0) {
            struct pg_http_reject *r = &c->parser.reject;
            c->error = r->code;
            c->parser.keep_alive = false;
            conn_send_error(c, r->status, r->status >= 500 ? "api_error" : "invalid_request_error",
                            r->code, r->message, 0);
            return;
        }
        c->bytes_in += (uint64_t)n;
        data += n;
        len -= (size_t)n;
        if (!had_head && c->parser.headers_done && !c->parser.complete) {
            arm_timer(c, c->srv->rt->cfg->limits.body_timeout_ms);
            if (c->parser.expect_continue)
                conn_write(c, "HTTP/1.1 100 Continue\r\n\r\n", 25), conn_flush(c);
        }
        if (c->parser.complete) {
            if (len && pg_buf_append(&c->pending, data, len) != 0) {
                conn_close(c);
                return;
            }
            handle_request(c);
            return;
        }
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    PG_UNUSED(h);
    PG_UNUSED(suggested);
    *buf = uv_buf_init(read_buf, sizeof(read_buf));
}

/* Plaintext from the agent: parsed now, or kept behind a request in
 * progress (pipelining) with reading paused. */
static void deliver(struct conn *c, const char *data, size_t len)
{
    if (c->state != CONN_READING || c->close_after_write) {
        if (pg_buf_append(&c->pending, data, len) != 0) {
            conn_close(c);
            return;
        }
        if (!c->read_stopped) {
            uv_read_stop((uv_stream_t *)&c->tcp);
            c->read_stopped = true;
        }
        return;
    }
    process_input(c, data, len);
}

static char tls_plain[READ_BUF_SIZE];

static void tls_read(struct conn *c, const char *data, size_t len)
{
    if (BIO_write(c->net_in, data, (int)len) != (int)len) {
        conn_close(c);
        return;
    }
    if (!SSL_is_init_finished(c->ssl)) {
        int r = SSL_do_handshake(c->ssl);
        tls_flush(c);
        if (c->state == CONN_CLOSING)
            return;
        if (r != 1) {
            int e = SSL_get_error(c->ssl, r);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                return;
            char why[256];
            ERR_error_string_n(ERR_peek_last_error(), why, sizeof(why));
            ERR_clear_error();
            log_event(c->srv->log, "warn", "agent TLS handshake failed", "error", why, NULL, NULL);
            conn_close(c);
            return;
        }
    }
    for (;;) {
        int n = SSL_read(c->ssl, tls_plain, (int)sizeof(tls_plain));
        if (n > 0) {
            deliver(c, tls_plain, (size_t)n);
            if (c->state == CONN_CLOSING)
                return;
            continue;
        }
        int e = SSL_get_error(c->ssl, n);
        tls_flush(c);
        if (e == SSL_ERROR_WANT_READ || c->state == CONN_CLOSING)
            return;
        ERR_clear_error();
        conn_close(c); /* close_notify or a TLS error */
        return;
    }
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct conn *c = s->data;
    if (nread == 0)
        return;
    if (nread < 0) {
        /* A client gone mid-request leaves the rail call to finish on its
         * own; the answer has nowhere to go. */
        conn_close(c);
        return;
    }
    if (c->ssl)
        tls_read(c, buf->base, (size_t)nread);
    else
        deliver(c, buf->base, (size_t)nread);
}

/* TLS on an agent connection: server side over memory BIOs, like the rail
 * side. 0 or PG_ENOMEM. */
static int tls_accept(struct conn *c)
{
    c->ssl = SSL_new(c->srv->agents_tls);
    BIO *in = BIO_new(BIO_s_mem()), *out = BIO_new(BIO_s_mem());
    if (!c->ssl || !in || !out) {
        BIO_free(in);
        BIO_free(out);
        return PG_ENOMEM;
    }
    BIO_set_mem_eof_return(in, -1);
    SSL_set_bio(c->ssl, in, out);
    c->net_in = in;
    c->net_out = out;
    SSL_set_accept_state(c->ssl);
    return 0;
}

static void restart_read(struct conn *c)
{
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

/* --- listeners ---------------------------------------------------------- */

static const char overload_503[] =
    "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    "Connection: close\r\nPayguard-Decision: deny\r\nPayguard-Reason: unavailable\r\n"
    "Stripe-Should-Retry: true\r\nContent-Length: 137\r\n\r\n"
    "{\"error\":{\"type\":\"api_error\",\"code\":\"payguard_unavailable\",\"message\":\"payguard is at its connection limit; retry shortly with backoff.\"}}";

static void accept_conn(uv_stream_t *listener, bool admin)
{
    struct server *srv = listener->data;
    struct conn *c = calloc(1, sizeof(*c));
    if (!c)
        return;
    c->srv = srv;
    c->admin = admin;
    c->state = CONN_READING;
    link_init(&c->link);
    uv_tcp_init(srv->loop, &c->tcp);
    uv_timer_init(srv->loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    link_push(&srv->conns, &c->link);
    if (!admin)
        srv->nconns++;
    pg_reqparser_init(&c->parser, &srv->rt->cfg->limits);
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    if (!admin && srv->agents_tls && tls_accept(c) != 0) {
        conn_close(c);
        return;
    }
    int plen = sizeof(c->peer);
    uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&c->peer, &plen);
    if (!admin && srv->nconns > srv->rt->cfg->limits.max_connections) {
        c->close_after_write = true;
        c->parser.keep_alive = false;
        conn_write(c, overload_503, sizeof(overload_503) - 1);
        conn_flush(c);
        if (c->state != CONN_CLOSING && c->writes_in_flight == 0)
            conn_close(c);
        return;
    }
    arm_timer(c, srv->rt->cfg->limits.idle_timeout_ms);
    restart_read(c);
}

static void on_agent_conn(uv_stream_t *l, int status)
{
    if (status == 0)
        accept_conn(l, false);
}

static void on_admin_conn(uv_stream_t *l, int status)
{
    if (status == 0)
        accept_conn(l, true);
}

static int listen_on(struct server *srv, uv_tcp_t *t, const struct pg_addr *a, const char *name,
                     uv_connection_cb cb)
{
    uv_tcp_init(srv->loop, t);
    t->data = srv;
    int rc = uv_tcp_bind(t, (const struct sockaddr *)&a->sa, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)t, 1024, cb);
    if (rc != 0) {
        fprintf(srv->log, "{\"level\":\"error\",\"msg\":\"cannot listen\",\"listener\":\"%s\",\"addr\":\"%s\",\"error\":\"%s\"}\n",
                name, a->text, uv_strerror(rc));
        return rc;
    }
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    char host[64] = "?", text[96];
    uv_tcp_getsockname(t, (struct sockaddr *)&ss, &len);
    int port = 0;
    if (ss.ss_family == AF_INET6) {
        uv_ip6_name((struct sockaddr_in6 *)&ss, host, sizeof(host));
        port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
        snprintf(text, sizeof(text), "[%s]:%d", host, port);
    } else {
        uv_ip4_name((struct sockaddr_in *)&ss, host, sizeof(host));
        port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        snprintf(text, sizeof(text), "%s:%d", host, port);
    }
    log_event(srv->log, "info", "listening", "listener", name, "addr", text);
    return 0;
}

/* --- lifecycle ---------------------------------------------------------- */

static void on_walk_close(uv_handle_t *h, void *arg)
{
    PG_UNUSED(arg);
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static void stop_everything(struct server *srv)
{
    /* Connections close through their own path so their memory is freed. */
    while (!link_empty(&srv->conns))
        conn_close(CONTAINER_OF(srv->conns.next, struct conn, link));
    uv_stop(srv->loop);
}

static void maybe_finish_drain(struct server *srv)
{
    if (srv->draining && link_empty(&srv->conns))
        stop_everything(srv);
}

static void on_drain_timeout(uv_timer_t *t)
{
    struct server *srv = t->data;
    log_event(srv->log, "warn", "drain timeout: closing connections still in flight", NULL, NULL,
              NULL, NULL);
    stop_everything(srv);
}

static void start_drain(struct server *srv, const char *why)
{
    if (srv->draining)
        return;
    srv->draining = true;
    log_event(srv->log, "info", "draining", "signal", why, NULL, NULL);
    uv_close((uv_handle_t *)&srv->agents, NULL);
    uv_close((uv_handle_t *)&srv->admin, NULL);
    /* Idle keep-alive connections have nothing to finish. */
    struct link *l = srv->conns.next;
    while (l != &srv->conns) {
        struct conn *c = CONTAINER_OF(l, struct conn, link);
        l = l->next;
        if (c->state == CONN_READING && !c->parser.started && c->writes_in_flight == 0)
            conn_close(c);
    }
    uv_timer_start(&srv->drain_timer, on_drain_timeout, srv->rt->cfg->limits.drain_timeout_ms, 0);
    maybe_finish_drain(srv);
}

static void on_sigterm(uv_signal_t *s, int signum)
{
    start_drain(s->data, signum == SIGINT ? "SIGINT" : "SIGTERM");
}

static void log_config_errors(FILE *log, const char *msg, struct pg_config_errors *errs)
{
    for (size_t i = 0; i < errs->count; i++)
        log_event(log, "error", msg, "error", errs->msgs[i], NULL, NULL);
}

/* A reload parses, unseals (scrypt) and builds TLS contexts: seconds of
 * work that must not stall the loop, so it runs in the thread pool and only
 * the swap happens on the loop thread. */
struct reload_work {
    uv_work_t req;
    struct server *srv;
    struct pg_config *cfg;
    struct pg_config_errors errs;
    struct runtime *rt;
    char err[512];
};

static void reload_work_cb(uv_work_t *req)
{
    struct reload_work *w = CONTAINER_OF(req, struct reload_work, req);
    if (pg_config_load(w->srv->config_path, true, &w->cfg, &w->errs) != 0)
        return;
    w->rt = runtime_new(w->srv, w->cfg, w->err, sizeof(w->err));
    if (!w->rt) {
        pg_config_free(w->cfg);
        w->cfg = NULL;
    }
}

static void start_reload(struct server *srv);

static bool same_ledger_settings(const struct pg_ledger_settings *a,
                                 const struct pg_ledger_settings *b)
{
    return a->idempotency_ttl_s == b->idempotency_ttl_s && a->approval_ttl_s == b->approval_ttl_s &&
           a->max_size_mib == b->max_size_mib && a->settle_before_answer == b->settle_before_answer;
}

/* What a running process set up once and a reload cannot change. */
static void warn_restart_only(struct server *srv, const struct pg_config *was,
                              const struct pg_config *now)
{
    const char *what = NULL;
    if (strcmp(was->data_dir, now->data_dir) != 0)
        what = "data_dir";
    else if (!same_ledger_settings(&was->ledger, &now->ledger))
        what = "ledger";
    else if (strcmp(was->listen_agents.text, now->listen_agents.text) != 0 ||
             strcmp(was->listen_admin.text, now->listen_admin.text) != 0)
        what = "listen";
    if (what)
        log_event(srv->log, "warn", "config reloaded, but this change takes effect at restart",
                  "key", what, NULL, NULL);
}

static void reload_after_cb(uv_work_t *req, int status)
{
    struct reload_work *w = CONTAINER_OF(req, struct reload_work, req);
    struct server *srv = w->srv;
    srv->reloading = false;
    if (status != 0 || !w->rt) {
        if (w->errs.count)
            log_config_errors(srv->log, "config reload failed; still serving the previous config",
                              &w->errs);
        else
            log_event(srv->log, "error", "config reload failed; still serving the previous config",
                      "error", w->err[0] ? w->err : "cancelled", NULL, NULL);
    } else if (srv->draining) {
        runtime_release(w->rt);
    } else {
        struct runtime *old = srv->rt;
        warn_restart_only(srv, old->cfg, w->cfg);
        srv->rt = w->rt;
        old->retired = true;
        pg_auth_limiter_set_limit(srv->limiter, w->cfg->limits.auth_failures);
        fit_nofile(&w->cfg->limits, srv->log);
        pg_notify_update(srv->notify, w->cfg);
        runtime_release(old);
        log_event(srv->log, "info", "config reloaded", "path", srv->config_path, NULL, NULL);
    }
    pg_config_errors_free(&w->errs);
    free(w);
    if (srv->reload_again && !srv->draining) {
        srv->reload_again = false;
        start_reload(srv);
    }
}

static void start_reload(struct server *srv)
{
    if (srv->reloading) {
        srv->reload_again = true; /* the file may have changed after that load began */
        return;
    }
    struct reload_work *w = calloc(1, sizeof(*w));
    if (!w) {
        log_event(srv->log, "error", "config reload failed: out of memory", NULL, NULL, NULL, NULL);
        return;
    }
    w->srv = srv;
    srv->reloading = true;
    if (uv_queue_work(srv->loop, &w->req, reload_work_cb, reload_after_cb) != 0) {
        srv->reloading = false;
        free(w);
        log_event(srv->log, "error", "config reload failed: cannot queue it", NULL, NULL, NULL, NULL);
    }
}

static void on_sighup(uv_signal_t *s, int signum)
{
    PG_UNUSED(signum);
    start_reload(s->data);
}

/* The agent listener's TLS (listen.tls): TLS 1.2 or later, and with a
 * client_ca, mutual TLS: a client certificate signed by it is required. The
 * context is built once; changing listen.tls needs a restart. */
static SSL_CTX *agents_tls_ctx(const struct pg_tls_files *t, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    const char *what = "cannot create a TLS context";
    if (!ctx)
        goto fail;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    what = "cannot load listen.tls.cert";
    if (SSL_CTX_use_certificate_chain_file(ctx, t->cert) != 1)
        goto fail;
    what = "cannot load listen.tls.key";
    if (SSL_CTX_use_PrivateKey_file(ctx, t->key, SSL_FILETYPE_PEM) != 1)
        goto fail;
    what = "listen.tls.key does not match listen.tls.cert";
    if (SSL_CTX_check_private_key(ctx) != 1)
        goto fail;
    if (t->client_ca) {
        what = "cannot load listen.tls.client_ca";
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(t->client_ca);
        if (!names || SSL_CTX_load_verify_locations(ctx, t->client_ca, NULL) != 1) {
            sk_X509_NAME_pop_free(names, X509_NAME_free);
            goto fail;
        }
        SSL_CTX_set_client_CA_list(ctx, names);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    }
    return ctx;
fail:;
    char why[200];
    ERR_error_string_n(ERR_peek_last_error(), why, sizeof(why));
    ERR_clear_error();
    snprintf(err, errlen, "%s: %s", what, why);
    SSL_CTX_free(ctx);
    return NULL;
}

int pg_proxy_run(const char *config_path)
{
    struct server srv;
    struct pg_config *cfg = NULL;
    struct pg_config_errors errs = { 0 };
    char err[512];
    int code = 1;

    memset(&srv, 0, sizeof(srv));
    err[0] = '\0';
    srv.log = stderr;
    srv.config_path = strdup(config_path);
    link_init(&srv.conns);
    if (!srv.config_path)
        return 1;
    if (pg_config_load(config_path, true, &cfg, &errs) != 0) {
        for (size_t i = 0; i < errs.count; i++)
            fprintf(stderr, "%s\n", errs.msgs[i]);
        pg_config_errors_free(&errs);
        free(srv.config_path);
        return 2;
    }
    if (cfg->log_file) {
        srv.log = fopen(cfg->log_file, "a");
        if (!srv.log) {
            fprintf(stderr, "payguard: cannot open log_file %s: %s\n", cfg->log_file, strerror(errno));
            pg_config_free(cfg);
            free(srv.config_path);
            return 1;
        }
        setvbuf(srv.log, NULL, _IOFBF, 1u << 16);
    }
    srv.loop = uv_default_loop();
    if (srv.log != stderr && log_batch_start(srv.loop, &srv.log_flush, srv.log) != 0)
        setvbuf(srv.log, NULL, _IOLBF, 0);
    srv.rt = runtime_new(&srv, cfg, err, sizeof(err));
    if (!srv.rt) {
        fprintf(stderr, "payguard: %s\n", err);
        pg_config_free(cfg);
        goto fail_log;
    }
    srv.tokens = pg_token_cache_new(4096);
    srv.limiter = pg_auth_limiter_new(cfg->limits.auth_failures);
    fit_nofile(&cfg->limits, srv.log);
    if (!srv.tokens || !srv.limiter)
        goto fail_runtime;
    if (cfg->url_guard.nallow)
        log_event(srv.log, "warn",
                  "url_guard.allow opens address blocks that are normally refused for callback URLs: for tests only",
                  NULL, NULL, NULL, NULL);
    if (cfg->agents_tls.cert && !(srv.agents_tls = agents_tls_ctx(&cfg->agents_tls, err, sizeof(err)))) {
        log_event(srv.log, "error", "cannot set up TLS for agents", "error", err, NULL, NULL);
        goto fail_runtime;
    }
    struct pg_ledger_options lopt = {
        .dir = cfg->data_dir,
        .map_size_max = (uint64_t)cfg->ledger.max_size_mib << 20,
        .idempotency_ttl_s = cfg->ledger.idempotency_ttl_s,
        .approval_ttl_s = cfg->ledger.approval_ttl_s,
    };
    srv.settle_before_answer = cfg->ledger.settle_before_answer;
    if (pg_ledger_open(&lopt, &srv.ledger, err, sizeof(err)) != 0) {
        log_event(srv.log, "error", "cannot open the ledger", "data_dir", cfg->data_dir, "error", err);
        goto fail_runtime;
    }
    int lrc = pg_ledger_start(srv.ledger, srv.loop);
    if (lrc != 0) {
        log_event(srv.log, "error", "cannot open the ledger", "data_dir", cfg->data_dir, "error",
                  lrc == -EAGAIN ? "another payguard process serves this data_dir" : pg_strerror(lrc));
        goto fail_runtime;
    }
    if (admin_init(&srv, err, sizeof(err)) != 0) {
        log_event(srv.log, "error", "cannot start the admin API", "error", err, NULL, NULL);
        goto fail_runtime;
    }
    if (pg_notify_start(srv.ledger, cfg, srv.log, &srv.notify) != 0) {
        log_event(srv.log, "error", "cannot start the webhook notifier", NULL, NULL, NULL, NULL);
        goto fail_runtime;
    }
    uv_timer_init(srv.loop, &srv.drain_timer);
    srv.drain_timer.data = &srv;
    uv_signal_init(srv.loop, &srv.sigterm);
    uv_signal_init(srv.loop, &srv.sigint);
    uv_signal_init(srv.loop, &srv.sighup);
    srv.sigterm.data = srv.sigint.data = srv.sighup.data = &srv;
    uv_signal_start(&srv.sigterm, on_sigterm, SIGTERM);
    uv_signal_start(&srv.sigint, on_sigterm, SIGINT);
    uv_signal_start(&srv.sighup, on_sighup, SIGHUP);
    signal(SIGPIPE, SIG_IGN);

    if (listen_on(&srv, &srv.agents, &cfg->listen_agents, "agents", on_agent_conn) != 0 ||
        listen_on(&srv, &srv.admin, &cfg->listen_admin, "admin", on_admin_conn) != 0) {
        code = 1;
        goto fail_runtime;
    }
    uv_run(srv.loop, UV_RUN_DEFAULT);
    code = 0;
    /* bcrypt checks of connections already gone still run in the thread
     * pool and hold the runtime: let them finish before tearing down. */
    while (srv.auth_inflight > 0)
        uv_run(srv.loop, UV_RUN_ONCE);
    log_event(srv.log, "info", "stopped", NULL, NULL, NULL, NULL);
fail_runtime:
    /* The writer finishes what is queued; its completions run on the loop. */
    pg_notify_stop(srv.notify); /* before the ledger it records into */
    if (srv.ledger)
        pg_ledger_close(srv.ledger);
    SSL_CTX_free(srv.agents_tls);
    /* Pools close their idle rail connections through their own path first;
     * then whatever is left (signals, timers) is closed and every close
     * callback runs, so every allocation is released. */
    runtime_release(srv.rt);
    uv_walk(srv.loop, on_walk_close, NULL);
    uv_run(srv.loop, UV_RUN_DEFAULT);
    uv_loop_close(srv.loop);
    pg_token_cache_free(srv.tokens);
    pg_auth_limiter_free(srv.limiter);
    admin_free(&srv);
fail_log:
    if (srv.log != stderr)
        fclose(srv.log);
    free(srv.config_path);
    return code;
}
