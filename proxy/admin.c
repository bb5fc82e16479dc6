/* The admin listener: health, readiness, /metrics and the humans' API
 * (routing, the caller's access token and role, strict JSON bodies, JSON
 * answers). Routes that read the ledger or run anything slow hand a job to
 * the thread pool (admin_int.h). Agent tokens are never accepted here.
 * Loop thread only, except the jobs' work functions. */
#include "common/pg.h"
#include "proxy/admin_int.h"

#include <stdio.h>
#include <stdlib.h>

#include <openssl/crypto.h>

/* --- answers -------------------------------------------------------------- */

static void reply_raw(struct conn *c, int status, const char *ctype, const char *body, size_t len,
                      uint32_t retry_after_s, const char *allow)
{
    char head[512];
    char extra[96] = "";
    if (retry_after_s)
        snprintf(extra, sizeof(extra), "Retry-After: %u\r\n", retry_after_s);
    else if (allow)
        snprintf(extra, sizeof(extra), "Allow: %s\r\n", allow);
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\n"
                     "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n"
                     "Content-Length: %zu\r\n%s%s\r\n",
                     status, pg_http_reason(status), ctype, len, extra,
                     c->parser.keep_alive && !c->srv->draining ? "" : "Connection: close\r\n");
    c->status = status;
    conn_write(c, head, (size_t)n);
    if (c->parser.llhttp.method != HTTP_HEAD)
        conn_write(c, body, len);
    conn_request_done(c);
}

static void reply_json_text(struct conn *c, int status, const char *body)
{
    reply_raw(c, status, "application/json", body, strlen(body), 0, NULL);
}

static void reply_json(struct conn *c, int status, json_t *body)
{
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    if (!text) {
        reply_json_text(c, 500, "{\"error\":{\"code\":\"internal\",\"message\":\"payguard could not write the answer.\"}}");
        return;
    }
    reply_json_text(c, status, text);
    free(text);
}

static void reply_error_with(struct conn *c, int status, const char *code, const char *message,
                             uint32_t retry_after_s, const char *allow)
{
    json_t *b = json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", message);
    char *text = b ? json_dumps(b, JSON_COMPACT) : NULL;
    json_decref(b);
    if (!text) {
        reply_raw(c, 500, "application/json", "{}", 2, 0, NULL);
        return;
    }
    reply_raw(c, status, "application/json", text, strlen(text), retry_after_s, allow);
    free(text);
}

void admin_reply_error(struct conn *c, int status, const char *code, const char *message,
                       uint32_t retry_after_s)
{
    reply_error_with(c, status, code, message, retry_after_s, NULL);
}

static void method_not_allowed(struct conn *c, const char *allow)
{
    char msg[96];
    snprintf(msg, sizeof(msg), "Use %s on this route.", allow);
    reply_error_with(c, 405, "method_not_allowed", msg, 0, allow);
}

static void not_found(struct conn *c)
{
    admin_reply_error(c, 404, "not_found", "No such admin route or object.", 0);
}

/* --- jobs ------------------------------------------------------------------ */

struct admin_job *admin_job_new(struct conn *c, admin_work_fn work, json_t *in)
{
    struct admin_job *j = calloc(1, sizeof(*j));
    if (!j) {
        json_decref(in);
        admin_reply_error(c, 503, "unavailable", "Out of memory; retry shortly.", 0);
        return NULL;
    }
    j->in = in;
    j->c = c;
    j->srv = c->srv;
    j->rt = c->rt;
    runtime_retain(j->rt); /* the worker reads it even if the connection goes */
    j->work = work;
    j->status = 200;
    memcpy(&j->peer, &c->peer, sizeof(j->peer));
    return j;
}

static void job_free(struct admin_job *j)
{
    json_decref(j->in);
    json_decref(j->out);
    pg_buf_free(&j->text);
    runtime_release(j->rt);
    OPENSSL_cleanse(j, sizeof(*j)); /* passwords and codes passed through here */
    free(j);
}

void admin_job_error(struct admin_job *j, int status, const char *code, const char *message)
{
    j->status = status;
    j->err_code = code;
    snprintf(j->err_msg, sizeof(j->err_msg), "%s", message);
}

static void job_work_cb(uv_work_t *req)
{
    struct admin_job *j = CONTAINER_OF(req, struct admin_job, req);
    j->work(j);
}

static void job_after_cb(uv_work_t *req, int status)
{
    struct admin_job *j = CONTAINER_OF(req, struct admin_job, req);
    struct conn *c = j->c;
    c->auth_pending = false;
    j->srv->auth_inflight--;
    if (status != 0 && !j->err_code)
        admin_job_error(j, 503, "unavailable", "payguard could not run this request; retry shortly.");
    if (j->done)
        j->done(j);
    if (c->state != CONN_AUTH) { /* closed under us */
        job_free(j);
        conn_free_if_closed(c);
        return;
    }
    c->state = CONN_READING;
    if (j->err_code)
        admin_reply_error(c, j->status, j->err_code, j->err_msg, j->retry_after);
    else if (j->text_ctype)
        reply_raw(c, j->status, j->text_ctype, j->text.p ? j->text.p : "", j->text.len, 0, NULL);
    else
        reply_json(c, j->status, j->out);
    job_free(j);
}

void admin_job_start(struct admin_job *j)
{
    struct conn *c = j->c;
    c->state = CONN_AUTH;
    c->auth_pending = true;
    j->srv->auth_inflight++;
    if (uv_queue_work(j->srv->loop, &j->req, job_work_cb, job_after_cb) != 0) {
        j->srv->auth_inflight--;
        c->auth_pending = false;
        c->state = CONN_READING;
        job_free(j);
        admin_reply_error(c, 503, "unavailable", "payguard could not queue this request; retry shortly.", 0);
    }
}

/* --- helpers ---------------------------------------------------------------- */

const char *admin_role_name(enum pg_role r)
{
    switch (r) {
    case PG_ROLE_VIEWER: return "viewer";
    case PG_ROLE_APPROVER: return "approver";
    case PG_ROLE_ADMIN: return "admin";
    case PG_ROLE_OWNER: return "owner";
    }
    return "viewer";
}

const struct pg_user *admin_find_user(const struct pg_config *cfg, const char *email)
{
    for (size_t i = 0; i < cfg->nusers; i++) {
        const struct pg_user *u = &cfg->users[i];
        if (u->email && strcasecmp(u->email, email) == 0)
            return u;
    }
    return NULL;
}

json_t *admin_body_or_reply(struct conn *c, const char *const *keys, bool empty_ok)
{
    const struct pg_buf *b = &c->parser.msg.body;
    if (b->len > ADMIN_BODY_MAX) {
        admin_reply_error(c, 413, "body_too_large", "The request body is too large for the admin API.", 0);
        return NULL;
    }
    if (b->len == 0 && empty_ok)
        return json_object();
    json_error_t jerr;
    json_t *j = b->len ? json_loadb(b->p, b->len, JSON_REJECT_DUPLICATES, &jerr) : NULL;
    if (!json_is_object(j)) {
        json_decref(j);
        admin_reply_error(c, 400, "bad_request", "The body must be one JSON object.", 0);
        return NULL;
    }
    const char *k;
    json_t *v;
    json_object_foreach(j, k, v) {
        bool known = false;
        for (size_t i = 0; keys[i] && !known; i++)
            known = strcmp(keys[i], k) == 0;
        if (!known) {
            char msg[160];
            snprintf(msg, sizeof(msg), "Unknown field \"%.64s\" in the body.", k);
            json_decref(j);
            admin_reply_error(c, 400, "bad_request", msg, 0);
            return NULL;
        }
    }
    return j;
}

/* --- the caller ---------------------------------------------------------------- */

/* Checks the access token and the caller's role as the current config says
 * (a demotion or removal takes effect on the next request). Fills j's
 * caller; NULL when it answered 401/403. */
static const struct pg_user *caller_or_reply(struct conn *c, enum pg_role need)
{
    const struct pg_msg *m = &c->parser.msg;
    int ah = pg_msg_find(m, PG_SLICE("Authorization"));
    if (ah < 0) {
        admin_reply_error(c, 401, "unauthenticated",
                          "Sign in with POST /v1/auth/login and send 'Authorization: Bearer <access_token>'.", 0);
        return NULL;
    }
    struct pg_slice v = pg_msg_value(m, (uint32_t)ah);
    if (v.len < 7 || !pg_slice_eq_nocase(pg_slice_of(v.ptr, 7), PG_SLICE("Bearer "))) {
        admin_reply_error(c, 401, "invalid_token", "Send 'Authorization: Bearer <access_token>'.", 0);
        return NULL;
    }
    struct pg_slice tok = pg_slice_of(v.ptr + 7, v.len - 7);
    if (pg_slice_has_prefix(tok, PG_SLICE(PG_TOKEN_PREFIX))) {
        admin_reply_error(c, 401, "invalid_token",
                          "Agent tokens are not accepted on the admin API: a human must sign in.", 0);
        return NULL;
    }
    struct pg_jwt_claims cl;
    const char *why = NULL;
    if (tok.len > PG_JWT_MAX ||
        pg_jwt_verify(c->srv->admin_api->jwt_key, sizeof(c->srv->admin_api->jwt_key), tok,
                      (int64_t)(now_ms_wall() / 1000), ADMIN_ISS, ADMIN_AUD, &cl, &why) != 0) {
        char msg[160];
        snprintf(msg, sizeof(msg), "The access token is not valid (%s). Sign in again or refresh.",
                 why ? why : "malformed");
        admin_reply_error(c, 401, "invalid_token", msg, 0);
        return NULL;
    }
    /* Signed out (or its refresh token reused): the sign-in's access tokens
     * end with it. A read transaction on mapped pages, like the agents'
     * revocation check. */
    char *dot = strchr(cl.jti, '.');
    bool live = false;
    if (dot)
        *dot = '\0';
    int lrc = dot ? pg_ledger_session_live(c->srv->ledger, cl.jti, &live) : PG_EPARSE;
    if (lrc != 0 && lrc != PG_EPARSE) {
        admin_reply_error(c, 503, "unavailable", "payguard could not read the session; retry shortly.", 1);
        return NULL;
    }
    if (!live) {
        admin_reply_error(c, 401, "invalid_token", "This sign-in has ended (signed out). Sign in again.", 0);
        return NULL;
    }
    const struct pg_user *u = admin_find_user(c->rt->cfg, cl.sub);
    if (!u || !u->org || strcmp(u->org, cl.org) != 0) {
        admin_reply_error(c, 401, "invalid_token", "This user is no longer configured. Sign in again.", 0);
        return NULL;
    }
    if (u->role < need) {
        char msg[160];
        snprintf(msg, sizeof(msg), "This needs the %s role or above; you are %s.",
                 admin_role_name(need), admin_role_name(u->role));
        admin_reply_error(c, 403, "forbidden", msg, 0);
        return NULL;
    }
    return u;
}

/* Starts an authenticated job: caller, role, optional body. */
static void user_job(struct conn *c, enum pg_role need, admin_work_fn work, const char *id,
                     int verb, const char *const *body_keys)
{
    const struct pg_user *u = caller_or_reply(c, need);
    if (!u)
        return;
    json_t *in = NULL;
    if (body_keys && !(in = admin_body_or_reply(c, body_keys, true)))
        return;
    struct admin_job *j = admin_job_new(c, work, in);
    if (!j)
        return;
    j->user = u;
    j->verb = verb;
    snprintf(j->actor, sizeof(j->actor), "user:%s", u->email);
    if (id)
        snprintf(j->id, sizeof(j->id), "%s", id);
    /* Query: after=N, limit=N, status=pending|all (ids and numbers only). */
    struct pg_slice t = pg_msg_target(&c->parser.msg);
    const char *q = memchr(t.ptr, '?', t.len);
    j->limit = 100;
    j->only_pending = true;
    if (q) {
        char query[256];
        size_t qn = (size_t)(t.ptr + t.len - q - 1);
        if (qn >= sizeof(query)) {
            job_free(j);
            admin_reply_error(c, 400, "bad_request", "The query string is too long.", 0);
            return;
        }
        memcpy(query, q + 1, qn);
        query[qn] = '\0';
        char *save = NULL;
        for (char *kv = strtok_r(query, "&", &save); kv; kv = strtok_r(NULL, "&", &save)) {
            char *eq = strchr(kv, '=');
            const char *val = eq ? eq + 1 : "";
            if (eq)
                *eq = '\0';
            char *end;
            bool bad = false;
            if (strcmp(kv, "after") == 0) {
                j->after = strtoull(val, &end, 10);
                bad = !*val || *end || val[0] == '-';
            } else if (strcmp(kv, "limit") == 0) {
                unsigned long long n = strtoull(val, &end, 10);
                bad = !*val || *end || val[0] == '-' || n == 0 || n > 1000;
                j->limit = (size_t)n;
            } else if (strcmp(kv, "status") == 0) {
                bad = strcmp(val, "pending") != 0 && strcmp(val, "all") != 0;
                j->only_pending = strcmp(val, "pending") == 0;
            } else {
                bad = true;
            }
            if (bad) {
                job_free(j);
                admin_reply_error(c, 400, "bad_request",
                                  "Query parameters: after=SEQ, limit=1..1000, status=pending|all.", 0);
                return;
            }
        }
    }
    admin_job_start(j);
}

/* --- routing -------------------------------------------------------------------- */

/* Splits "/v1/a/b/c" into at most 5 segments; false when a segment is empty
 * or too long, or there are more. */
static bool split_path(struct pg_slice path, char seg[5][PG_ID_MAX + 1], size_t *n)
{
    *n = 0;
    size_t i = 0;
    if (path.len == 0 || path.ptr[0] != '/')
        return false;
    while (i < path.len) {
        i++; /* the '/' */
        size_t start = i;
        while (i < path.len && path.ptr[i] != '/')
            i++;
        size_t len = i - start;
        if (len == 0 || len > PG_ID_MAX || *n == 5)
            return false;
        for (size_t k = start; k < i; k++) {
            char ch = path.ptr[k];
            bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                      ch == '_' || ch == '-' || ch == '.' || ch == '@';
            if (!ok)
                return false;
        }
        memcpy(seg[*n], path.ptr + start, len);
        seg[*n][len] = '\0';
        (*n)++;
    }
    return true;
}

static const char *const no_keys[] = { NULL };
static const char *const note_keys[] = { "note", NULL };
static const char *const reason_keys[] = { "reason", NULL };
static const char *const policy_test_keys[] = { "agent", "method", "path", "body", "content_type",
                                                "rail", "at", "spent", "velocity", NULL };

static void route_v1(struct conn *c, char seg[5][PG_ID_MAX + 1], size_t n, bool get, bool post)
{
    const char *a = seg[1];
    if (strcmp(a, "auth") == 0 && n == 3) {
        void (*fn)(struct conn *) = strcmp(seg[2], "login") == 0     ? admin_login
                                    : strcmp(seg[2], "refresh") == 0 ? admin_refresh
                                    : strcmp(seg[2], "logout") == 0  ? admin_logout
                                                                     : NULL;
        if (!fn)
            not_found(c);
        else if (!post)
            method_not_allowed(c, "POST");
        else
            fn(c);
        return;
    }
    if (strcmp(a, "approvals") == 0) {
        if (n == 2) {
            if (!get)
                method_not_allowed(c, "GET");
            else
                user_job(c, PG_ROLE_VIEWER, admin_approvals_list, NULL, 0, NULL);
            return;
        }
        if (n == 3) {
            if (!get)
                method_not_allowed(c, "GET");
            else
                user_job(c, PG_ROLE_VIEWER, admin_approval_get, seg[2], 0, NULL);
            return;
        }
        if (n == 4 && (strcmp(seg[3], "approve") == 0 || strcmp(seg[3], "deny") == 0)) {
            if (!post)
                method_not_allowed(c, "POST");
            else
                user_job(c, PG_ROLE_APPROVER, admin_approval_decide, seg[2],
                         strcmp(seg[3], "approve") == 0, note_keys);
            return;
        }
    }
    if (strcmp(a, "agents") == 0) {
        if (n == 2 || n == 3) {
            if (!get)
                method_not_allowed(c, "GET");
            else
                user_job(c, PG_ROLE_VIEWER, n == 2 ? admin_agents_list : admin_agent_get,
                         n == 3 ? seg[2] : NULL, 0, NULL);
            return;
        }
        if (n == 4 && (strcmp(seg[3], "revoke") == 0 || strcmp(seg[3], "restore") == 0)) {
            if (!post)
                method_not_allowed(c, "POST");
            else
                user_job(c, PG_ROLE_ADMIN, admin_agent_revoke, seg[2],
                         strcmp(seg[3], "revoke") == 0, reason_keys);
            return;
        }
    }
    if (strcmp(a, "audit") == 0 && (n == 2 || (n == 3 && strcmp(seg[2], "verify") == 0))) {
        if (!get)
            method_not_allowed(c, "GET");
        else
            user_job(c, PG_ROLE_VIEWER, n == 2 ? admin_audit_page : admin_audit_verify, NULL, 0,
                     NULL);
        return;
    }
    if (strcmp(a, "policy") == 0 && n == 3 && strcmp(seg[2], "test") == 0) {
        if (!post)
            method_not_allowed(c, "POST");
        else
            user_job(c, PG_ROLE_VIEWER, admin_policy_test, NULL, 0, policy_test_keys);
        return;
    }
    (void)no_keys;
    not_found(c);
}

static void metrics_done(struct admin_job *j)
{
    /* Counters live on the loop thread: render them here. */
    if (j->err_code)
        return;
    j->text_ctype = "text/plain; version=0.0.4; charset=utf-8";
    if (metrics_render(j->srv, &j->mledger, &j->text) != 0)
        admin_job_error(j, 500, "internal", "payguard could not render its metrics.");
    metrics_ledger_free(&j->mledger);
}

void admin_metrics(struct admin_job *j)
{
    /* A ledger that cannot be read is reported by payguard_ledger_up 0. */
    if (metrics_ledger_read(j->srv->ledger, j->rt->cfg, &j->mledger) != 0)
        j->mledger.ok = false;
}

void admin_handle(struct conn *c)
{
    struct pg_slice target = pg_msg_target(&c->parser.msg);
    const char *q = memchr(target.ptr, '?', target.len);
    struct pg_slice path = pg_slice_of(target.ptr, q ? (size_t)(q - target.ptr) : target.len);
    bool get = c->parser.llhttp.method == HTTP_GET || c->parser.llhttp.method == HTTP_HEAD;
    bool post = c->parser.llhttp.method == HTTP_POST;

    if (pg_slice_eq(path, PG_SLICE("/healthz"))) {
        if (!get)
            method_not_allowed(c, "GET");
        else
            reply_json_text(c, 200, "{\"status\":\"ok\"}");
        return;
    }
    if (pg_slice_eq(path, PG_SLICE("/readyz"))) {
        if (!get)
            method_not_allowed(c, "GET");
        else if (c->srv->draining)
            reply_json_text(c, 503, "{\"status\":\"draining\"}");
        else if (!c->srv->ledger || !pg_ledger_ready(c->srv->ledger))
            reply_json_text(c, 503, "{\"status\":\"ledger unavailable\"}");
        else
            reply_json_text(c, 200, "{\"status\":\"ready\"}");
        return;
    }
    if (pg_slice_eq(path, PG_SLICE("/metrics"))) {
        if (!get) {
            method_not_allowed(c, "GET");
            return;
        }
        struct admin_job *j = admin_job_new(c, admin_metrics, NULL);
        if (!j)
            return;
        j->done = metrics_done;
        admin_job_start(j);
        return;
    }
    char seg[5][PG_ID_MAX + 1];
    size_t n;
    if (!split_path(path, seg, &n) || n < 2 || strcmp(seg[0], "v1") != 0) {
        not_found(c);
        return;
    }
    route_v1(c, seg, n, get, post);
}

/* --- life ------------------------------------------------------------------------ */

int admin_init(struct server *srv, char *err, size_t errlen)
{
    struct admin *a = calloc(1, sizeof(*a));
    if (!a) {
        snprintf(err, errlen, "out of memory");
        return PG_ENOMEM;
    }
    a->by_addr = pg_auth_limiter_new(srv->rt->cfg->limits.auth_failures);
    a->by_account = pg_auth_limiter_new(ADMIN_LOGIN_FAILS);
    if (!a->by_addr || !a->by_account) {
        pg_auth_limiter_free(a->by_addr);
        pg_auth_limiter_free(a->by_account);
        free(a);
        snprintf(err, errlen, "out of memory");
        return PG_ENOMEM;
    }
    int rc = pg_ledger_jwt_key(srv->ledger, a->jwt_key);
    if (rc != 0) {
        snprintf(err, errlen, "cannot read or make the admin API's signing key: %s", pg_strerror(rc));
        pg_auth_limiter_free(a->by_addr);
        pg_auth_limiter_free(a->by_account);
        free(a);
        return rc;
    }
    srv->admin_api = a;
    return 0;
}

void admin_free(struct server *srv)
{
    struct admin *a = srv->admin_api;
    if (!a)
        return;
    pg_auth_limiter_free(a->by_addr);
    pg_auth_limiter_free(a->by_account);
    OPENSSL_cleanse(a, sizeof(*a));
    free(a);
    srv->admin_api = NULL;
}
