/* llhttp glue for agent requests, the strict checks llhttp 8.1 does not make
 * on its own, and re-serialization of what payguard forwards. The rail never
 * sees the agent's bytes: only fields parsed here, written out afresh. */
#include "common/pg.h"
#include "proxy/http.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

/* --- message model ------------------------------------------------------ */

void pg_msg_reset(struct pg_msg *m)
{
    m->head.len = 0;
    m->body.len = 0;
    m->nhdrs = 0;
    m->target_off = m->target_len = 0;
    m->in_value = false;
    m->conn_custom = false;
}

void pg_msg_free(struct pg_msg *m)
{
    pg_buf_free(&m->head);
    pg_buf_free(&m->body);
    free(m->hdrs);
    memset(m, 0, sizeof(*m));
}

struct pg_slice pg_msg_target(const struct pg_msg *m)
{
    /* "CONNECT \r\n\r\n" ends its head with nothing stored yet. */
    if (!m->head.p)
        return PG_SLICE_NULL;
    return pg_slice_of(m->head.p + m->target_off, m->target_len);
}

struct pg_slice pg_msg_name(const struct pg_msg *m, uint32_t i)
{
    /* A stored header means a head, but pg_msg_target's check above makes
     * the analyzer think otherwise: say it here too. */
    if (!m->head.p)
        return PG_SLICE_NULL;
    return pg_slice_of(m->head.p + m->hdrs[i].name_off, m->hdrs[i].name_len);
}

struct pg_slice pg_msg_value(const struct pg_msg *m, uint32_t i)
{
    const char *p = m->head.p + m->hdrs[i].val_off;
    size_t n = m->hdrs[i].val_len;
    while (n && (*p == ' ' || *p == '\t')) {
        p++;
        n--;
    }
    while (n && (p[n - 1] == ' ' || p[n - 1] == '\t'))
        n--;
    return pg_slice_of(p, n);
}

int pg_msg_find(const struct pg_msg *m, struct pg_slice name)
{
    for (uint32_t i = 0; i < m->nhdrs; i++)
        if (pg_slice_eq_nocase(pg_msg_name(m, i), name))
            return (int)i;
    return -1;
}

int pg_msg_add_name(struct pg_msg *m, const char *p, size_t n, uint32_t max_hdrs)
{
    if (m->nhdrs == 0 || m->in_value) {
        if (m->nhdrs >= max_hdrs)
            return PG_ETOOBIG;
        if (m->nhdrs == m->hdrs_cap) {
            uint32_t cap = m->hdrs_cap ? m->hdrs_cap * 2 : 16;
            struct pg_hdr *h = realloc(m->hdrs, cap * sizeof(*h));
            if (!h)
                return PG_ENOMEM;
            m->hdrs = h;
            m->hdrs_cap = cap;
        }
        struct pg_hdr *h = &m->hdrs[m->nhdrs++];
        h->name_off = (uint32_t)m->head.len;
        h->name_len = 0;
        h->val_off = 0;
        h->val_len = 0;
        m->in_value = false;
    }
    struct pg_hdr *h = &m->hdrs[m->nhdrs - 1];
    int rc = pg_buf_append(&m->head, p, n);
    if (rc == 0)
        h->name_len += (uint32_t)n;
    return rc;
}

int pg_msg_add_value(struct pg_msg *m, const char *p, size_t n)
{
    if (m->nhdrs == 0)
        return PG_EPARSE;
    struct pg_hdr *h = &m->hdrs[m->nhdrs - 1];
    if (!m->in_value) {
        h->val_off = (uint32_t)m->head.len;
        m->in_value = true;
    }
    int rc = pg_buf_append(&m->head, p, n);
    if (rc == 0)
        h->val_len += (uint32_t)n;
    return rc;
}

/* --- strict request parsing -------------------------------------------- */

static struct pg_reqparser *rp_of(llhttp_t *h)
{
    return (struct pg_reqparser *)h->data;
}

static int reject(struct pg_reqparser *p, int status, const char *code, const char *message)
{
    if (!p->reject.status) {
        p->reject.status = status;
        p->reject.code = code;
        p->reject.message = message;
    }
    return -1;
}

static int bad(struct pg_reqparser *p, const char *message)
{
    return reject(p, 400, "payguard_bad_request", message);
}

static int on_message_begin(llhttp_t *h)
{
    struct pg_reqparser *p = rp_of(h);
    pg_msg_reset(&p->msg);
    return 0;
}

static int on_url(llhttp_t *h, const char *at, size_t n)
{
    struct pg_reqparser *p = rp_of(h);
    if (p->msg.target_len == 0)
        p->msg.target_off = (uint32_t)p->msg.head.len;
    if (pg_buf_append(&p->msg.head, at, n))
        return reject(p, 503, "payguard_unavailable", "payguard is out of memory.");
    p->msg.target_len += (uint32_t)n;
    return 0;
}

static int on_header_field(llhttp_t *h, const char *at, size_t n)
{
    struct pg_reqparser *p = rp_of(h);
    if (p->past_headers)
        return bad(p, "Chunked trailers are not accepted.");
    int rc = pg_msg_add_name(&p->msg, at, n, p->max_headers);
    if (rc == PG_ETOOBIG)
        return reject(p, 431, "payguard_headers_too_large",
                      "The request has too many header fields.");
    return rc ? reject(p, 503, "payguard_unavailable", "payguard is out of memory.") : 0;
}

static int on_header_value(llhttp_t *h, const char *at, size_t n)
{
    struct pg_reqparser *p = rp_of(h);
    if (pg_msg_add_value(&p->msg, at, n))
        return reject(p, 503, "payguard_unavailable", "payguard is out of memory.");
    return 0;
}

static int count_headers(const struct pg_msg *m, struct pg_slice name)
{
    int n = 0;
    for (uint32_t i = 0; i < m->nhdrs; i++)
        n += pg_slice_eq_nocase(pg_msg_name(m, i), name);
    return n;
}

static int on_headers_complete(llhttp_t *h)
{
    struct pg_reqparser *p = rp_of(h);
    struct pg_msg *m = &p->msg;
    struct pg_slice target = pg_msg_target(m);

    if (h->method == HTTP_CONNECT)
        return bad(p, "CONNECT is not accepted: payguard is a reverse proxy for one rail.");
    if (target.len == 0 || target.ptr[0] != '/')
        return bad(p, "The request target must be a path starting with '/' (origin form).");
    if (h->http_major != 1)
        return bad(p, "Only HTTP/1.x is accepted.");
    /* llhttp 8.1 lets a line starting with ':' through as a header with no
     * name; a field name is a token of at least one character. */
    for (uint32_t i = 0; i < m->nhdrs; i++)
        if (m->hdrs[i].name_len == 0)
            return bad(p, "A header field has an empty name.");
    int hosts = count_headers(m, PG_SLICE("Host"));
    if (hosts == 0 && h->http_minor >= 1)
        return bad(p, "The request has no Host header.");
    if (hosts > 1)
        return bad(p, "The request has more than one Host header.");
    int cls = count_headers(m, PG_SLICE("Content-Length"));
    int tes = count_headers(m, PG_SLICE("Transfer-Encoding"));
    if (cls > 1)
        return bad(p, "The request has more than one Content-Length header.");
    if (cls && tes)
        return bad(p, "The request has both Content-Length and Transfer-Encoding.");
    if (tes > 1)
        return bad(p, "The request has more than one Transfer-Encoding header.");
    if (tes) {
        struct pg_slice te = pg_msg_value(m, (uint32_t)pg_msg_find(m, PG_SLICE("Transfer-Encoding")));
        if (!pg_slice_eq_nocase(te, PG_SLICE("chunked")) || h->http_minor == 0)
            return bad(p, "Transfer-Encoding must be exactly 'chunked' on HTTP/1.1.");
    }
    if (h->upgrade || pg_msg_find(m, PG_SLICE("Upgrade")) >= 0 ||
        pg_msg_find(m, PG_SLICE("HTTP2-Settings")) >= 0)
        return bad(p, "Protocol upgrades (Upgrade, h2c) are not accepted.");
    if (cls && h->content_length > p->body_bytes_max)
        return reject(p, 413, "payguard_body_too_large", "The request body is larger than payguard accepts.");
    int ex = pg_msg_find(m, PG_SLICE("Expect"));
    if (ex >= 0) {
        if (!pg_slice_eq_nocase(pg_msg_value(m, (uint32_t)ex), PG_SLICE("100-continue")))
            return reject(p, 417, "payguard_bad_request", "Only 'Expect: 100-continue' is understood.");
        p->expect_continue = true;
    }
    p->keep_alive = llhttp_should_keep_alive(h) != 0;
    p->past_headers = true;
    pg_msg_scan_connection(m);
    return 0;
}

static int on_body(llhttp_t *h, const char *at, size_t n)
{
    struct pg_reqparser *p = rp_of(h);
    if (p->msg.body.len + n > p->body_bytes_max)
        return reject(p, 413, "payguard_body_too_large", "The request body is larger than payguard accepts.");
    if (pg_buf_append(&p->msg.body, at, n))
        return reject(p, 503, "payguard_unavailable", "payguard is out of memory.");
    return 0;
}

static int on_message_complete(llhttp_t *h)
{
    struct pg_reqparser *p = rp_of(h);
    p->keep_alive = llhttp_should_keep_alive(h) != 0;
    p->complete = true;
    return HPE_PAUSED;
}

static llhttp_settings_t request_settings;

void pg_reqparser_init(struct pg_reqparser *p, const struct pg_limits *limits)
{
    memset(p, 0, sizeof(*p));
    if (!request_settings.on_message_begin) {
        llhttp_settings_init(&request_settings);
        request_settings.on_message_begin = on_message_begin;
        request_settings.on_url = on_url;
        request_settings.on_header_field = on_header_field;
        request_settings.on_header_value = on_header_value;
        request_settings.on_headers_complete = on_headers_complete;
        request_settings.on_body = on_body;
        request_settings.on_message_complete = on_message_complete;
    }
    llhttp_init(&p->llhttp, HTTP_REQUEST, &request_settings);
    p->llhttp.data = p;
    p->header_bytes_max = limits->header_bytes;
    p->max_headers = limits->max_headers;
    p->body_bytes_max = limits->body_bytes;
}

void pg_reqparser_free(struct pg_reqparser *p)
{
    pg_msg_free(&p->msg);
}

void pg_reqparser_next(struct pg_reqparser *p)
{
    p->head_bytes = p->line_len = p->lines = 0;
    p->saw_cr = p->headers_done = p->past_headers = p->started = p->complete = false;
    p->expect_continue = false;
    pg_msg_reset(&p->msg); /* nothing of the last request may be taken for the next */
    if (llhttp_get_errno(&p->llhttp) == HPE_PAUSED)
        llhttp_resume(&p->llhttp);
}

const char *pg_reqparser_method(const struct pg_reqparser *p)
{
    return llhttp_method_name((llhttp_method_t)p->llhttp.method);
}

/* Scans the header block ahead of llhttp: every line must end in CRLF, no
 * line may begin with white space (obs-fold), and the block must fit the
 * limit. Returns bytes scanned, or -1 with the reject set. */
static ssize_t scan_head(struct pg_reqparser *p, const char *data, size_t len)
{
    size_t i = 0;
    for (; i < len && !p->headers_done; i++) {
        char c = data[i];
        p->started = true;
        if (++p->head_bytes > p->header_bytes_max)
            return reject(p, 431, "payguard_headers_too_large",
                          "The request line and headers are larger than payguard accepts.");
        if (p->saw_cr) {
            if (c != '\n')
                return bad(p, "A bare CR in the request head; lines must end in CRLF.");
            p->saw_cr = false;
            if (p->line_len == 0) {
                if (p->lines == 0)
                    return bad(p, "The request starts with an empty line.");
                p->headers_done = true;
            }
            p->lines++;
            p->line_len = 0;
            continue;
        }
        if (c == '\r') {
            p->saw_cr = true;
            continue;
        }
        if (c == '\n')
            return bad(p, "A bare LF in the request head; lines must end in CRLF.");
        if (p->line_len == 0 && p->lines > 0 && (c == ' ' || c == '\t'))
            return bad(p, "Folded header lines (obs-fold) are not accepted.");
        p->line_len++;
    }
    return (ssize_t)i;
}

ssize_t pg_reqparser_feed(struct pg_reqparser *p, const char *data, size_t len)
{
    if (p->reject.status)
        return -1;
    if (!p->headers_done && scan_head(p, data, len) < 0)
        return -1;
    llhttp_errno_t err = llhttp_execute(&p->llhttp, data, len);
    if (err == HPE_OK)
        return (ssize_t)len;
    if (err == HPE_PAUSED && p->complete)
        return (ssize_t)(llhttp_get_error_pos(&p->llhttp) - data);
    if (p->reject.status)
        return -1;
    const char *why = llhttp_get_error_reason(&p->llhttp);
    snprintf(p->detail, sizeof(p->detail), "The request is not valid HTTP/1.1: %s.",
             why ? why : "parse error");
    bad(p, p->detail);
    return -1;
}

/* --- forwarding ------------------------------------------------------- */

/* Calls fn for each token of every Connection header, trimmed, until fn
 * returns true; returns whether one did. */
static bool each_connection_token(const struct pg_msg *m,
                                  bool (*fn)(struct pg_slice tok, const void *arg), const void *arg)
{
    for (uint32_t i = 0; i < m->nhdrs; i++) {
        if (!pg_slice_eq_nocase(pg_msg_name(m, i), PG_SLICE("Connection")))
            continue;
        struct pg_slice v = pg_msg_value(m, i);
        size_t s = 0;
        while (s < v.len) {
            size_t e = s;
            while (e < v.len && v.ptr[e] != ',')
                e++;
            size_t a = s, b = e;
            while (a < b && (v.ptr[a] == ' ' || v.ptr[a] == '\t'))
                a++;
            while (b > a && (v.ptr[b - 1] == ' ' || v.ptr[b - 1] == '\t'))
                b--;
            if (fn(pg_slice_of(v.ptr + a, b - a), arg))
                return true;
            s = e + 1;
        }
    }
    return false;
}

static bool token_is(struct pg_slice tok, const void *name)
{
    return pg_slice_eq_nocase(tok, *(const struct pg_slice *)name);
}

static bool token_names_a_header(struct pg_slice tok, const void *unused)
{
    (void)unused;
    return tok.len && !pg_slice_eq_nocase(tok, PG_SLICE("close")) &&
           !pg_slice_eq_nocase(tok, PG_SLICE("keep-alive"));
}

static bool listed_in_connection(const struct pg_msg *m, struct pg_slice name)
{
    return each_connection_token(m, token_is, &name);
}

static bool eq_nocase(struct pg_slice a, const char *lit, size_t n)
{
    return a.len == n && pg_slice_eq_nocase(a, pg_slice_of(lit, n));
}

static bool has_prefix_nocase(struct pg_slice a, const char *lit, size_t n)
{
    return a.len >= n && pg_slice_eq_nocase(pg_slice_of(a.ptr, n), pg_slice_of(lit, n));
}

#define EQ(lit) eq_nocase(name, lit, sizeof(lit) - 1)

void pg_msg_scan_connection(struct pg_msg *m)
{
    m->conn_custom = each_connection_token(m, token_names_a_header, NULL);
}

/* Dispatch on the first letter: this runs for every header of every
 * request and answer. */
bool pg_http_drop_header(const struct pg_msg *m, struct pg_slice name)
{
    if (name.len == 0)
        return true;
    switch (name.ptr[0] | 0x20) {
    case 'a':
        if (EQ("Authorization"))
            return true;
        break;
    case 'c':
        if (EQ("Connection") || EQ("Content-Length"))
            return true;
        break;
    case 'e':
        if (EQ("Expect"))
            return true;
        break;
    case 'h':
        if (EQ("Host") || EQ("HTTP2-Settings"))
            return true;
        break;
    case 'k':
        if (EQ("Keep-Alive"))
            return true;
        break;
    case 'p':
        if (has_prefix_nocase(name, "Proxy-", 6) || has_prefix_nocase(name, "Payguard-", 9))
            return true;
        break;
    case 't':
        if (EQ("TE") || EQ("Trailer") || EQ("Transfer-Encoding"))
            return true;
        break;
    case 'u':
        if (EQ("Upgrade"))
            return true;
        break;
    default:
        break;
    }
    return m->conn_custom && listed_in_connection(m, name);
}

#define APPEND(expr)                                                           \
    do {                                                                       \
        if ((expr) != 0)                                                       \
            return PG_ENOMEM;                                                  \
    } while (0)

int pg_http_serialize_request(const struct pg_reqparser *p, const struct pg_rail *rail,
                              const char *idempotency_key, struct pg_buf *out)
{
    const struct pg_msg *m = &p->msg;
    struct pg_slice target = pg_msg_target(m);
    const char *method = pg_reqparser_method(p);

    APPEND(pg_buf_append_str(out, method));
    APPEND(pg_buf_append(out, " ", 1));
    APPEND(pg_buf_append(out, target.ptr, target.len));
    APPEND(pg_buf_append_str(out, " HTTP/1.1\r\nHost: "));
    APPEND(pg_buf_append_str(out, rail->upstream_hostport));
    if (rail->secret) {
        APPEND(pg_buf_append_str(out, "\r\nAuthorization: Bearer "));
        APPEND(pg_buf_append_str(out, rail->secret));
    }
    APPEND(pg_buf_append(out, "\r\n", 2));
    for (uint32_t i = 0; i < m->nhdrs; i++) {
        struct pg_slice name = pg_msg_name(m, i), value = pg_msg_value(m, i);
        if (pg_http_drop_header(m, name))
            continue;
        if (idempotency_key && pg_slice_eq_nocase(name, PG_SLICE("Idempotency-Key")))
            continue;
        APPEND(pg_buf_append(out, name.ptr, name.len));
        APPEND(pg_buf_append(out, ": ", 2));
        APPEND(pg_buf_append(out, value.ptr, value.len));
        APPEND(pg_buf_append(out, "\r\n", 2));
    }
    if (idempotency_key) {
        APPEND(pg_buf_append_str(out, "Idempotency-Key: "));
        APPEND(pg_buf_append_str(out, idempotency_key));
        APPEND(pg_buf_append(out, "\r\n", 2));
    }
    bool has_body = m->body.len > 0 || p->llhttp.method == HTTP_POST ||
                    p->llhttp.method == HTTP_PUT || p->llhttp.method == HTTP_PATCH;
    if (has_body) {
        APPEND(pg_buf_append_str(out, "Content-Length: "));
        APPEND(pg_buf_append_u64(out, m->body.len));
        APPEND(pg_buf_append(out, "\r\n", 2));
    }
    APPEND(pg_buf_append(out, "\r\n", 2));
    APPEND(pg_buf_append(out, m->body.p, m->body.len));
    return 0;
}

const char *pg_http_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 402: return "Payment Required";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Content Too Large";
    case 417: return "Expectation Failed";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Unknown";
    }
}

static int write_answer(struct pg_buf *out, int status, const char *decision, const char *code,
                        json_t *body, const char *approval_id, bool close,
                        uint32_t retry_after_s)
{
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!text)
        return PG_ENOMEM;
    char head[640];
    bool should_retry = status == 409 || status == 503;
    const char *reason = code;
    if (strncmp(reason, "payguard_", 9) == 0)
        reason += 9;
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %d %s\r\n"
                     "Content-Type: application/json\r\n"
                     "Content-Length: %zu\r\n"
                     "Payguard-Decision: %s\r\n"
                     "Payguard-Reason: %s\r\n"
                     "Stripe-Should-Retry: %s\r\n"
                     "Cache-Control: no-store\r\n"
                     "%s%s%s",
                     status, pg_http_reason(status), strlen(text), decision, reason,
                     should_retry ? "true" : "false", approval_id ? "Payguard-Approval-Id: " : "",
                     approval_id ? approval_id : "", approval_id ? "\r\n" : "");
    int rc = n > 0 && (size_t)n < sizeof(head) ? 0 : PG_ETOOBIG;
    if (rc == 0)
        rc = pg_buf_append(out, head, (size_t)n);
    if (rc == 0 && retry_after_s) {
        char ra[48];
        int m = snprintf(ra, sizeof(ra), "Retry-After: %u\r\n", retry_after_s);
        rc = pg_buf_append(out, ra, (size_t)m);
    }
    if (rc == 0 && close)
        rc = pg_buf_append_str(out, "Connection: close\r\n");
    if (rc == 0)
        rc = pg_buf_append(out, "\r\n", 2);
    if (rc == 0)
        rc = pg_buf_append_str(out, text);
    free(text);
    return rc;
}

/* A message may quote the agent's own bytes (its target, a field), which
 * need not be UTF-8, or be cut mid-character by its buffer; a JSON string
 * must be UTF-8. Then every byte past ASCII becomes '?', as in the audit
 * log, so the agent still gets its answer. */
static json_t *message_json(const char *message)
{
    json_t *s = json_string(message);
    if (s)
        return s;
    size_t n = strlen(message);
    char *copy = malloc(n + 1);
    if (!copy)
        return NULL;
    for (size_t i = 0; i <= n; i++)
        copy[i] = (unsigned char)message[i] >= 0x80 ? '?' : message[i];
    s = json_string(copy);
    free(copy);
    return s;
}

int pg_http_write_error(struct pg_buf *out, int status, const char *type, const char *code,
                        const char *message, bool close, uint32_t retry_after_s)
{
    json_t *msg = message_json(message);
    json_t *body = msg ? json_pack("{s:{s:s,s:s,s:o}}", "error", "type", type, "code", code,
                                   "message", msg)
                       : NULL;
    return write_answer(out, status, "deny", code, body, NULL, close, retry_after_s);
}

int pg_http_write_verdict(struct pg_buf *out, enum pg_rail_preset preset, int status,
                          const char *decision, const char *type, const char *code,
                          const char *message, const char *param, const char *approval_id,
                          bool close)
{
    json_t *body = NULL, *msg = message_json(message); /* NULL: write_answer says PG_ENOMEM */
    if (msg && preset == PG_PRESET_ADYEN) {
        body = json_pack("{s:i,s:s,s:o,s:s}", "status", status, "errorCode", code, "message",
                         msg, "errorType", status == 402 ? "approval" : "validation");
        if (body && approval_id)
            json_object_set_new(body, "approvalId", json_string(approval_id));
    } else if (msg) {
        json_t *err = json_pack("{s:s,s:s,s:o}", "type", type, "code", code, "message", msg);
        if (err && param)
            json_object_set_new(err, "param", json_string(param));
        if (err && approval_id)
            json_object_set_new(err, "approval_id", json_string(approval_id));
        body = err ? json_pack("{s:o}", "error", err) : NULL;
    }
    return write_answer(out, status, decision, code, body, approval_id, close, 0);
}
