/* The agent request path without the network or the ledger: bytes from the
 * agent's socket go through the strict parser (proxy/http.c), then what
 * server.c does with a parsed request: the credential, the rail
 * (Payguard-Rail), the card-number scan, classification with the rail's
 * route table, both phases of the policy (spend and velocity come from the
 * input instead of LMDB), the URL guard on callback URLs, the verdict the
 * agent would get, and the request re-serialized for the rail. The config is
 * tests/fuzz/fuzz.yaml.
 *
 * Invariants past "no crash":
 *   - the same bytes fed whole and in pieces give the same requests and the
 *     same accept/refuse outcome;
 *   - a parsed request has one Host, an origin-form target, no CL+TE, and
 *     a body within the limit;
 *   - what payguard forwards parses again, whole, as exactly one request
 *     with the agent's method, target and body and exactly the headers
 *     payguard means to send (no smuggled request, no injected header, the
 *     agent's credential never forwarded);
 *   - every verdict can be written as the rail-shaped JSON answer;
 *   - an allowed payment is within the per-transaction limit, and within
 *     the daily limit given the spend so far;
 *   - a masked body holds no card number.
 * Input: one byte of flags (agent, feeding, clock), eight of spend, one of
 * split seed, then the bytes of the connection. */
#include "common/pg.h"
#include "auth/auth.h"
#include "policy/pan.h"
#include "policy/policy.h"
#include "proxy/http.h"
#include "tests/fuzz/helpers.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

#define MAX_REQUESTS 8
#define DERIVED_KEY "pg_fuzzDerivedRailKey0123456789"

static const struct pg_config *cfg;
static struct pg_routes **routes;   /* per rail */
static struct pg_policy **policies; /* per agent */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    char err[256];
    cfg = fuzz_shared_config();
    routes = calloc(cfg->nrails, sizeof *routes);
    policies = calloc(cfg->nagents, sizeof *policies);
    for (size_t i = 0; i < cfg->nrails; i++)
        FUZZ_CHECK(pg_routes_build(&cfg->rails[i], &routes[i], err, sizeof err) == 0, "%s", err);
    for (size_t i = 0; i < cfg->nagents; i++)
        FUZZ_CHECK(pg_policy_compile(cfg, &cfg->agents[i], &policies[i], err, sizeof err) == 0,
                   "%s", err);
    return 0;
}

/* Instants that matter to windows and hours: a Monday noon in Paris, the
 * midnight that starts a Sunday there, the 2026 DST changes in Paris (either
 * side of each) and New York, a leap day, the epoch, 2041, a Monday evening
 * (its last second, 21:59:59 in Paris). */
static const int64_t instants[] = {
    1795431600, 1795906800, 1774744200, 1774746000, 1792889999, 1792890000,
    1772953200, 1793512800, 1835395200, 0,          2240611200, 1795467599,
};

/* --- feeding ------------------------------------------------------------------ */

/* What a connection's bytes meant: each complete request, then whether the
 * parser refused the rest. Compared between two ways of feeding. */
struct outcome {
    uint32_t nreq;
    uint8_t digest[MAX_REQUESTS][32];
    bool refused;
};

typedef void (*request_cb)(struct pg_reqparser *p, uint32_t index, void *arg);

/* Feeds `len` bytes; the split seed 0 means in one piece, else pieces of
 * 1..seed bytes in a fixed pseudo-random pattern. */
static void feed(const char *data, size_t len, uint8_t seed, struct outcome *o, request_cb cb,
                 void *arg)
{
    struct pg_reqparser p;
    pg_reqparser_init(&p, &cfg->limits);
    memset(o, 0, sizeof *o);
    size_t off = 0;
    uint32_t x = seed * 2654435761u + 1;
    while (off < len && o->nreq < MAX_REQUESTS) {
        size_t piece = len - off;
        if (seed) {
            x = x * 1103515245u + 12345u;
            piece = 1 + (x >> 16) % seed;
            if (piece > len - off)
                piece = len - off;
        }
        ssize_t n = pg_reqparser_feed(&p, data + off, piece);
        if (n < 0) {
            int s = p.reject.status;
            FUZZ_CHECK(s == 400 || s == 413 || s == 417 || s == 431, "reject status %d", s);
            FUZZ_CHECK(p.reject.code && p.reject.message && p.reject.message[0],
                       "reject without a code or message");
            FUZZ_CHECK(pg_reqparser_feed(&p, "GET / HTTP/1.1\r\n", 16) == -1,
                       "a refused connection parses on");
            o->refused = true;
            break;
        }
        FUZZ_CHECK((size_t)n <= piece, "consumed %zd of %zu", n, piece);
        off += (size_t)n;
        if (!p.complete) {
            FUZZ_CHECK((size_t)n == piece, "stopped at %zd of %zu without a request", n, piece);
            continue;
        }
        struct pg_msg *m = &p.msg;
        const char *method = pg_reqparser_method(&p);
        struct pg_slice parts[4] = { pg_slice_cstr(method), pg_msg_target(m),
                                     pg_slice_of(m->body.p, m->body.len),
                                     pg_slice_of(m->head.p, m->head.len) };
        FUZZ_CHECK(pg_sha256_parts(parts, 4, o->digest[o->nreq]) == 0, "sha256");
        if (cb)
            cb(&p, o->nreq, arg);
        o->nreq++;
        pg_reqparser_next(&p);
    }
    pg_reqparser_free(&p);
}

/* --- what a parsed request must be -------------------------------------------- */

static int count(const struct pg_msg *m, struct pg_slice name)
{
    int n = 0;
    for (uint32_t i = 0; i < m->nhdrs; i++)
        n += pg_slice_eq_nocase(pg_msg_name(m, i), name) ? 1 : 0;
    return n;
}

static void check_parsed(const struct pg_reqparser *p)
{
    const struct pg_msg *m = &p->msg;
    struct pg_slice t = pg_msg_target(m);
    FUZZ_CHECK(t.len && t.ptr[0] == '/', "target not in origin form");
    FUZZ_CHECK(p->llhttp.http_major == 1, "HTTP/%d", p->llhttp.http_major);
    FUZZ_CHECK(count(m, PG_SLICE("Host")) == 1 || (p->llhttp.http_minor == 0 &&
                                                   count(m, PG_SLICE("Host")) == 0),
               "Host headers: %d", count(m, PG_SLICE("Host")));
    int cl = count(m, PG_SLICE("Content-Length")), te = count(m, PG_SLICE("Transfer-Encoding"));
    FUZZ_CHECK(cl <= 1 && te <= 1 && !(cl && te), "CL %d TE %d", cl, te);
    FUZZ_CHECK(count(m, PG_SLICE("Upgrade")) == 0, "Upgrade accepted");
    FUZZ_CHECK(m->nhdrs <= p->max_headers, "%u headers", m->nhdrs);
    FUZZ_CHECK(m->body.len <= p->body_bytes_max, "body of %zu", m->body.len);
    FUZZ_CHECK(p->llhttp.method != HTTP_CONNECT, "CONNECT accepted");
    for (uint32_t i = 0; i < m->nhdrs; i++) {
        struct pg_slice n = pg_msg_name(m, i), v = pg_msg_value(m, i);
        FUZZ_CHECK(n.len > 0, "empty header name");
        for (size_t k = 0; k < v.len; k++)
            FUZZ_CHECK(v.ptr[k] != '\r' && v.ptr[k] != '\n', "CR or LF in a header value");
    }
    if (cl) {
        struct pg_slice v = pg_msg_value(m, (uint32_t)pg_msg_find(m, PG_SLICE("Content-Length")));
        uint64_t want = 0;
        for (size_t k = 0; k < v.len; k++)
            want = want * 10 + (uint64_t)(v.ptr[k] - '0');
        FUZZ_CHECK(want == m->body.len, "Content-Length %.*s, body %zu", (int)v.len, v.ptr,
                   m->body.len);
    }
}

/* --- re-serialization --------------------------------------------------------- */

struct hdr {
    struct pg_slice name, value;
};

/* The forwarded bytes parse as exactly one request carrying what was meant. */
static void check_forwarded(const struct pg_reqparser *p, const struct pg_rail *rail,
                            const char *idem)
{
    struct pg_buf out = { 0 };
    FUZZ_CHECK(pg_http_serialize_request(p, rail, idem, &out) == 0, "serialize");

    /* What must come out, in order. */
    const struct pg_msg *m = &p->msg;
    struct hdr *want = calloc(m->nhdrs + 4, sizeof *want);
    size_t nw = 0;
    char auth[256], clen[32];
    snprintf(auth, sizeof auth, "Bearer %s", rail->secret);
    want[nw++] = (struct hdr){ PG_SLICE("Host"), pg_slice_cstr(rail->upstream_hostport) };
    want[nw++] = (struct hdr){ PG_SLICE("Authorization"), pg_slice_cstr(auth) };
    for (uint32_t i = 0; i < m->nhdrs; i++) {
        struct pg_slice n = pg_msg_name(m, i);
        if (pg_http_drop_header(m, n) ||
            (idem && pg_slice_eq_nocase(n, PG_SLICE("Idempotency-Key"))))
            continue;
        want[nw++] = (struct hdr){ n, pg_msg_value(m, i) };
    }
    if (idem)
        want[nw++] = (struct hdr){ PG_SLICE("Idempotency-Key"), pg_slice_cstr(idem) };
    bool has_body = m->body.len || p->llhttp.method == HTTP_POST ||
                    p->llhttp.method == HTTP_PUT || p->llhttp.method == HTTP_PATCH;
    if (has_body) {
        snprintf(clen, sizeof clen, "%zu", m->body.len);
        want[nw++] = (struct hdr){ PG_SLICE("Content-Length"), pg_slice_cstr(clen) };
    }

    /* A rail's parser with payguard's own strictness and room to spare. */
    struct pg_limits wide = { .header_bytes = 1u << 20, .max_headers = 10000,
                              .body_bytes = 1u << 20 };
    struct pg_reqparser q;
    pg_reqparser_init(&q, &wide);
    ssize_t n = pg_reqparser_feed(&q, out.p, out.len);
    FUZZ_CHECK(n == (ssize_t)out.len && q.complete,
               "forwarded request does not parse as one (%zd of %zu, %s):\n%.*s", n, out.len,
               q.reject.message ? q.reject.message : "incomplete", (int)out.len, out.p);
    FUZZ_CHECK(q.llhttp.method == p->llhttp.method, "method changed");
    FUZZ_CHECK(pg_slice_eq(pg_msg_target(&q.msg), pg_msg_target(m)), "target changed");
    FUZZ_CHECK(q.msg.body.len == m->body.len &&
                   (m->body.len == 0 || memcmp(q.msg.body.p, m->body.p, m->body.len) == 0),
               "body changed");
    FUZZ_CHECK(q.msg.nhdrs == nw, "forwarded %u headers, meant %zu", q.msg.nhdrs, nw);
    for (uint32_t i = 0; i < q.msg.nhdrs; i++) {
        struct pg_slice n2 = pg_msg_name(&q.msg, i), v2 = pg_msg_value(&q.msg, i);
        FUZZ_CHECK(pg_slice_eq_nocase(n2, want[i].name) && pg_slice_eq(v2, want[i].value),
                   "forwarded header %u is %.*s: %.*s, meant %.*s: %.*s", i, (int)n2.len, n2.ptr,
                   (int)v2.len, v2.ptr, (int)want[i].name.len, want[i].name.ptr,
                   (int)want[i].value.len, want[i].value.ptr);
    }
    pg_reqparser_free(&q);
    free(want);
    pg_buf_free(&out);
}

/* --- the answer the agent gets -------------------------------------------------- */

static void check_verdict(enum pg_rail_preset preset, const struct pg_decision *d)
{
    FUZZ_CHECK(d->reason && d->reason[0], "a verdict without a reason");
    FUZZ_CHECK(d->status == 400 || d->status == 402 || d->status == 403, "status %d", d->status);
    FUZZ_CHECK(memchr(d->message, '\0', sizeof d->message) && d->message[0],
               "a verdict without a message");
    char code[64];
    snprintf(code, sizeof code, "payguard_%s", d->reason);
    bool hold = d->verdict == PG_VERDICT_HOLD;
    struct pg_buf out = { 0 };
    int rc = pg_http_write_verdict(&out, preset, d->status, pg_verdict_name(d->verdict),
                                   hold ? "card_error" : "invalid_request_error", code,
                                   d->message, d->param, hold ? "apr_fuzz" : NULL, false);
    FUZZ_CHECK(rc == 0, "the %s verdict (%s) cannot be written: %s (message \"%s\")",
               pg_verdict_name(d->verdict), d->reason, pg_strerror(rc), d->message);
    const char *body = memmem(out.p, out.len, "\r\n\r\n", 4);
    FUZZ_CHECK(body, "no head");
    body += 4;
    json_t *j = json_loadb(body, out.len - (size_t)(body - out.p), 0, NULL);
    json_t *msg = preset == PG_PRESET_ADYEN ? json_object_get(j, "message")
                                            : json_object_get(json_object_get(j, "error"), "message");
    /* The message as it is, or with '?' for every byte past ASCII when it
     * is not UTF-8 (a JSON string must be). */
    char want[sizeof d->message];
    json_t *utf8 = json_string(d->message);
    for (size_t i = 0; i < sizeof want; i++)
        want[i] = !utf8 && (unsigned char)d->message[i] >= 0x80 ? '?' : d->message[i];
    json_decref(utf8);
    FUZZ_CHECK(json_is_string(msg) && strcmp(json_string_value(msg), want) == 0,
               "the answer does not carry the message");
    json_decref(j);
    pg_buf_free(&out);
}

/* --- the decision ------------------------------------------------------------ */

struct ctx {
    const struct pg_agent *agent;
    size_t agent_index;
    int64_t now;
    struct pg_spend spend;
};

static void no_explain(void *arg, const char *rule, const char *outcome,
                       const struct pg_decision *d)
{
    (void)arg;
    FUZZ_CHECK(rule && outcome && d, "explain callback");
}

static void check_intent(const struct pg_intent *in, const struct pg_msg *m)
{
    FUZZ_CHECK(in->scratch_used <= sizeof in->scratch, "scratch overrun");
    if (!in->matched)
        return;
    FUZZ_CHECK(in->route && in->op < PG_OP_COUNT, "route");
    FUZZ_CHECK(!in->has_amount || in->amount >= 0, "negative amount");
    FUZZ_CHECK(!in->currency[0] || (strlen(in->currency) == 3 &&
                                    pg_money_exponent(pg_slice_of(in->currency, 3)) >= 0),
               "currency %s", in->currency);
    FUZZ_CHECK(in->nurls <= PG_INTENT_MAX_URLS, "urls");
    struct pg_slice body = pg_slice_of(m->body.p, m->body.len), t = pg_msg_target(m);
    struct pg_slice ids[] = { in->counterparty, in->object_id };
    for (size_t i = 0; i < PG_ARRAY_LEN(ids); i++)
        FUZZ_CHECK(fuzz_within(ids[i], body.ptr, body.len) ||
                       fuzz_within(ids[i], t.ptr, t.len) ||
                       fuzz_within(ids[i], in->scratch, in->scratch_used),
                   "an intent slice points outside the request");
}

static void decide(struct pg_reqparser *p, const struct ctx *x)
{
    struct pg_msg *m = &p->msg;
    const struct pg_agent *agent = x->agent;

    /* The credential, as authenticate() reads it. */
    int ah = pg_msg_find(m, PG_SLICE("Authorization"));
    if (ah >= 0) {
        char scratch[512];
        struct pg_slice tok, v = pg_msg_value(m, (uint32_t)ah);
        int rc = pg_auth_credential(v, scratch, sizeof scratch, &tok);
        FUZZ_CHECK(rc == 0 || rc == PG_EPARSE || rc == PG_ETOOBIG, "credential: %d", rc);
        if (rc == 0) {
            FUZZ_CHECK(fuzz_within(tok, v.ptr, v.len) || fuzz_within(tok, scratch, sizeof scratch),
                       "credential outside its header");
            (void)pg_auth_token_check_format(tok);
        }
    }

    /* The rail, as authorized() picks it. */
    struct pg_slice want = pg_slice_cstr(agent->rails[0]);
    int rh = pg_msg_find(m, PG_SLICE("Payguard-Rail"));
    if (rh >= 0) {
        want = pg_msg_value(m, (uint32_t)rh);
        bool ok = false;
        for (size_t i = 0; i < agent->nrails && !ok; i++)
            ok = pg_slice_eq(want, pg_slice_cstr(agent->rails[i]));
        if (!ok)
            return; /* 403 payguard_rail_not_allowed */
    }
    const struct pg_rail *rail = pg_config_rail(cfg, want);
    FUZZ_CHECK(rail, "an agent's rail is missing");
    size_t ri = (size_t)(rail - cfg->rails);

    /* Card numbers anywhere end it; a masked copy holds none. */
    struct pg_pan_match pm;
    struct pg_slice body = pg_slice_of(m->body.p, m->body.len);
    if (body.len && pg_pan_find(body.ptr, body.len, &pm)) {
        FUZZ_CHECK(pm.off + pm.len <= body.len && pm.ndigits >= 13 && pm.ndigits <= 19,
                   "match %zu+%zu of %zu", pm.off, pm.len, body.len);
        char *masked = malloc(body.len);
        int k = pg_pan_mask(body.ptr, body.len, masked, body.len);
        FUZZ_CHECK(k >= 1, "found a card number, masked %d", k);
        FUZZ_CHECK(!pg_pan_find(masked, body.len, &pm), "a card number survives masking");
        free(masked);
        return;
    }
    struct pg_slice t = pg_msg_target(m);
    if (pg_pan_find(t.ptr, t.len, &pm))
        return;

    static struct pg_intent in;
    struct pg_decision d;
    memset(&d, 0, sizeof d);
    int ct = pg_msg_find(m, PG_SLICE("Content-Type"));
    struct pg_slice ctype = ct >= 0 ? pg_msg_value(m, (uint32_t)ct) : PG_SLICE_NULL;
    int rc = pg_rail_classify(routes[ri], pg_slice_cstr(pg_reqparser_method(p)), t, ctype, body,
                              &in, &d);
    FUZZ_CHECK(rc == 0 || rc == PG_EPARSE, "classify: %d", rc);
    check_intent(&in, m);
    if (rc == PG_EPARSE) {
        d.verdict = PG_VERDICT_DENY;
        check_verdict(rail->preset, &d);
        return;
    }
    int ik = pg_msg_find(m, PG_SLICE("Idempotency-Key"));
    const char *idem = ik >= 0 ? DERIVED_KEY : NULL;
    if (!in.matched) {
        if (rail->unmatched == PG_UNMATCHED_PASS) {
            check_forwarded(p, rail, idem);
            return;
        }
        d.verdict = PG_VERDICT_DENY;
        d.status = 403;
        d.reason = "unknown_operation";
        snprintf(d.message, sizeof d.message,
                 "payguard does not know what %s %.*s does on rail %s, so it does not let it "
                 "through. Use a documented API call, or ask a human to add a route for it.",
                 pg_reqparser_method(p), (int)t.len, t.ptr, rail->name);
        check_verdict(rail->preset, &d);
        return;
    }

    const struct pg_org *org = pg_config_org(cfg, pg_slice_cstr(agent->org));
    const struct pg_policy *pol = policies[x->agent_index];
    rc = pg_policy_check(pol, agent, &in, org->tz, x->now, &d);
    FUZZ_CHECK(rc == 0, "policy could not decide: %d", rc);
    FUZZ_CHECK(pg_policy_explain(pol, agent, &in, org->tz, x->now, &x->spend, no_explain, NULL) ==
                   0,
               "explain");
    if (d.verdict != PG_VERDICT_DENY && pg_op_moves_money(in.op)) {
        FUZZ_CHECK(pg_policy_check_spend(pol, agent, &in, &x->spend, &d) == 0, "spend check");
    }
    if (d.verdict != PG_VERDICT_ALLOW)
        check_verdict(rail->preset, &d);

    /* Limits hold for what is let through (reads and config move nothing). */
    const char *cur = in.currency[0] ? in.currency : pg_policy_currency(pol);
    bool same_cur = !in.currency[0] || strcmp(in.currency, pg_policy_currency(pol)) == 0;
    if (d.verdict != PG_VERDICT_DENY && pg_op_moves_money(in.op) && in.has_amount && cur[0]) {
        int64_t lim;
        if (pg_policy_limit(pol, PG_LIMIT_PER_TRANSACTION, cur, &lim) == 0 && lim >= 0)
            FUZZ_CHECK(in.amount <= lim, "%s of %lld %s let through over the per-transaction "
                       "limit %lld", in.route, (long long)in.amount, cur, (long long)lim);
        int64_t day;
        if (same_cur && pg_policy_limit(pol, PG_LIMIT_DAILY, cur, &day) == 0 && day >= 0) {
            int64_t sum;
            FUZZ_CHECK(!__builtin_add_overflow(x->spend.day, in.amount, &sum) && sum <= day,
                       "%lld on top of %lld let through over the daily limit %lld",
                       (long long)in.amount, (long long)x->spend.day, (long long)day);
        }
    }
    if (!agent->policy && !agent->overrides)
        FUZZ_CHECK(d.verdict == PG_VERDICT_DENY || in.op == PG_OP_READ,
                   "an agent without a policy may only read, got %s", pg_op_name(in.op));
    if (in.op == PG_OP_FORBIDDEN)
        FUZZ_CHECK(d.verdict == PG_VERDICT_DENY, "a forbidden route let through");

    for (uint32_t i = 0; i < in.nurls; i++) {
        struct pg_url_result r;
        if (pg_url_check(&cfg->url_guard, in.urls[i].url, &r))
            FUZZ_CHECK(r.port == 443 || r.port == 8443, "port %u", r.port);
    }
    if (d.verdict == PG_VERDICT_ALLOW)
        check_forwarded(p, rail, idem);
}

static void on_request(struct pg_reqparser *p, uint32_t index, void *arg)
{
    (void)index;
    check_parsed(p);
    decide(p, arg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = { data, size };
    uint8_t flags = fuzz_u8(&in);
    struct ctx x;
    x.agent_index = (flags & 7) % cfg->nagents;
    x.agent = &cfg->agents[x.agent_index];
    uint8_t t = flags >> 3;
    x.now = t < PG_ARRAY_LEN(instants) ? instants[t] : (int64_t)(1795431600 + t * 7919 * 60);
    uint16_t sd = fuzz_u16(&in), sw = fuzz_u16(&in);
    x.spend.day = (int64_t)sd * 10;
    x.spend.week = x.spend.day + (int64_t)sw * 10;
    x.spend.month = x.spend.week * 2;
    x.spend.velocity_count = fuzz_u8(&in) % 16;
    uint8_t seed = fuzz_u8(&in);
    struct pg_slice conn = fuzz_rest(&in);

    struct outcome whole, pieces;
    feed(conn.ptr, conn.len, 0, &whole, on_request, &x);
    feed(conn.ptr, conn.len, seed ? seed : 1, &pieces, NULL, NULL);
    FUZZ_CHECK(whole.nreq == pieces.nreq && whole.refused == pieces.refused,
               "fed whole: %u requests%s; in pieces of up to %u: %u requests%s", whole.nreq,
               whole.refused ? ", refused" : "", seed ? seed : 1, pieces.nreq,
               pieces.refused ? ", refused" : "");
    for (uint32_t i = 0; i < whole.nreq; i++)
        FUZZ_CHECK(memcmp(whole.digest[i], pieces.digest[i], 32) == 0,
                   "request %u differs with the feeding", i);
    return 0;
}
