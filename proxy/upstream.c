/* The rail side: a keep-alive pool per rail, TCP connect over resolved
 * addresses, OpenSSL 3 driven through memory BIOs (certificate and hostname
 * verification, SNI, session resumption), the request written from parsed
 * fields, and the rail's answer streamed back to the agent as it arrives. */
#include "common/pg.h"
#include "proxy/proxy_int.h"

#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <arpa/inet.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#define UP_READ_SIZE 65536
#define UP_IDLE_MS 30000
#define DNS_TTL_MS 60000
#define UP_MAX_HEAD 65536
#define UP_MAX_HEADERS 200
/* Past this much unsent data to a slow agent, stop reading from the rail. */
#define CLIENT_HIGH_WATER (1u << 20)
/* Money answers are buffered whole to be stored; larger ones are refused. */
#define MAX_BUFFERED_ANSWER (8u << 20)

static char up_read_buf[UP_READ_SIZE];

enum up_state { UP_RESOLVING, UP_CONNECTING, UP_HANDSHAKE, UP_BUSY, UP_IDLE, UP_CLOSED };

struct upconn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_connect_t creq;
    uv_getaddrinfo_t gai;
    struct pool *pool;             /* NULL once the pool is gone */
    struct conn *client;           /* the agent request being served */
    struct link link;              /* in pool->idle while idle */
    enum up_state state;
    SSL *ssl;
    BIO *net_in, *net_out;         /* ciphertext from and to the socket */
    llhttp_t parser;
    struct pg_msg resp;
    struct pg_buf request;         /* plaintext waiting for the handshake */
    struct addrinfo *ai_next;      /* next address to try */
    uint32_t writes;               /* uv_write requests in flight */
    bool tcp_open, timer_open;
    bool reused;                   /* came from the idle pool */
    bool got_bytes;                /* any of the answer arrived */
    bool done;                     /* the answer is complete */
    bool read_paused;
    bool resolving;                /* uv_getaddrinfo holds a pointer to us */
    bool reconnecting;             /* tcp handle closing to try the next address */
};

static void up_close(struct upconn *u);
static void up_send_request(struct upconn *u);
static void up_fail(struct upconn *u, int status, const char *code, const char *message);

/* --- pool and TLS context ------------------------------------------------- */

static int new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
    struct pool *p = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
    if (!p)
        return 0;
    if (p->session)
        SSL_SESSION_free(p->session);
    p->session = sess;
    return 1; /* we keep the reference */
}

int pool_init(struct pool *p, struct runtime *rt, const struct pg_rail *rail, char *err,
              size_t errlen)
{
    memset(p, 0, sizeof(*p));
    p->rt = rt;
    p->rail = rail;
    link_init(&p->idle);
    if (!rail->upstream_tls)
        return 0;
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        snprintf(err, errlen, "rails.%s: cannot create a TLS context", rail->name);
        return PG_ETLS;
    }
    SSL_CTX_set_min_proto_version(ctx, rail->tls_min == 13 ? TLS1_3_VERSION : TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    int ok = rail->ca_file ? SSL_CTX_load_verify_locations(ctx, rail->ca_file, NULL)
                           : SSL_CTX_set_default_verify_paths(ctx);
    if (ok != 1) {
        snprintf(err, errlen, "rails.%s: cannot load CA certificates from %s", rail->name,
                 rail->ca_file ? rail->ca_file : "the system store");
        SSL_CTX_free(ctx);
        return PG_ETLS;
    }
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, new_session_cb);
    SSL_CTX_set_app_data(ctx, p);
    p->ssl_ctx = ctx;
    return 0;
}

void pool_close(struct pool *p)
{
    while (!link_empty(&p->idle)) {
        struct upconn *u = CONTAINER_OF(p->idle.next, struct upconn, link);
        up_close(u);
    }
    if (p->ssl_ctx) {
        SSL_CTX_set_app_data(p->ssl_ctx, NULL);
        SSL_CTX_free(p->ssl_ctx);
    }
    if (p->session)
        SSL_SESSION_free(p->session);
    if (p->addrs)
        uv_freeaddrinfo(p->addrs);
    memset(p, 0, sizeof(*p));
}

/* --- upconn lifecycle --------------------------------------------------- */

static void up_free_if_closed(struct upconn *u)
{
    if (u->tcp_open || u->timer_open || u->writes || u->resolving)
        return;
    if (u->ssl)
        SSL_free(u->ssl); /* frees both BIOs */
    pg_msg_free(&u->resp);
    pg_buf_free(&u->request);
    free(u);
}

static void on_up_tcp_closed(uv_handle_t *h)
{
    struct upconn *u = h->data;
    u->tcp_open = false;
    up_free_if_closed(u);
}

static void on_up_timer_closed(uv_handle_t *h)
{
    struct upconn *u = h->data;
    u->timer_open = false;
    up_free_if_closed(u);
}

static void up_close(struct upconn *u)
{
    if (u->state == UP_CLOSED)
        return;
    if (u->state == UP_IDLE) {
        link_remove(&u->link);
        if (u->pool)
            u->pool->nidle--;
    }
    bool resolving = u->resolving;
    u->state = UP_CLOSED;
    u->pool = NULL;
    if (u->client) {
        u->client->up = NULL;
        u->client = NULL;
    }
    if (resolving)
        uv_cancel((uv_req_t *)&u->gai); /* its callback sees UP_CLOSED */
    uv_close((uv_handle_t *)&u->timer, on_up_timer_closed);
    if (!u->reconnecting)
        uv_close((uv_handle_t *)&u->tcp, on_up_tcp_closed);
}

static void on_idle_timeout(uv_timer_t *t)
{
    up_close(t->data);
}

/* Hands a finished connection back to its pool, or closes it. */
static void up_release(struct upconn *u, bool keep_alive)
{
    struct pool *p = u->pool;
    if (u->client) {
        u->client->up = NULL;
        u->client = NULL;
    }
    if (!keep_alive || !p || p->rt->retired || p->nidle >= p->rail->pool_size ||
        (u->ssl && SSL_get_shutdown(u->ssl))) {
        up_close(u);
        return;
    }
    u->state = UP_IDLE;
    pg_msg_reset(&u->resp);
    link_push(&p->idle, &u->link);
    p->nidle++;
    uv_timer_start(&u->timer, on_idle_timeout, UP_IDLE_MS, 0);
}

/* --- writing -------------------------------------------------------------- */

struct up_write {
    uv_write_t req;
    struct upconn *u;
    char *data;
};

static void on_up_write(uv_write_t *req, int status)
{
    struct up_write *w = CONTAINER_OF(req, struct up_write, req);
    struct upconn *u = w->u;
    free(w->data);
    free(w);
    u->writes--;
    if (u->state == UP_CLOSED) {
        up_free_if_closed(u);
        return;
    }
    if (status < 0)
        up_fail(u, 502, "payguard_rail_unreachable", "The connection to the rail failed while sending the request.");
}

static int up_write_raw(struct upconn *u, char *data, size_t len)
{
    if (u->writes == 0) {
        uv_buf_t now = uv_buf_init(data, (unsigned)len);
        int n = uv_try_write((uv_stream_t *)&u->tcp, &now, 1);
        if (n == (int)len) {
            free(data);
            return 0;
        }
        if (n < 0 && n != UV_EAGAIN) {
            free(data);
            return PG_EUPSTREAM;
        }
        if (n > 0) {
            memmove(data, data + n, len - (size_t)n);
            len -= (size_t)n;
        }
    }
    struct up_write *w = malloc(sizeof(*w));
    if (!w) {
        free(data);
        return PG_ENOMEM;
    }
    w->u = u;
    w->data = data;
    uv_buf_t b = uv_buf_init(data, (unsigned)len);
    if (uv_write(&w->req, (uv_stream_t *)&u->tcp, &b, 1, on_up_write) != 0) {
        free(data);
        free(w);
        return PG_EUPSTREAM;
    }
    u->writes++;
    return 0;
}

/* Moves whatever TLS produced into the socket. */
static int up_flush_tls(struct upconn *u)
{
    size_t pending = BIO_ctrl_pending(u->net_out);
    if (pending == 0)
        return 0;
    char *data = malloc(pending);
    if (!data)
        return PG_ENOMEM;
    int n = BIO_read(u->net_out, data, (int)pending);
    if (n <= 0) {
        free(data);
        return PG_ETLS;
    }
    return up_write_raw(u, data, (size_t)n);
}

/* --- answering the agent ---------------------------------------------------- */

static void up_fail(struct upconn *u, int status, const char *code, const char *message)
{
    struct conn *c = u->client;
    up_close(u);
    if (!c)
        return;
    c->up_done_us = now_us();
    if (c->sent_head) {
        c->error = code;
        conn_abort(c);
        return;
    }
    conn_send_error(c, status, "api_error", code, message, 0);
}

static bool retry_allowed(const struct conn *c)
{
    uint8_t m = c->parser.llhttp.method;
    return !c->retried && (m == HTTP_GET || m == HTTP_HEAD ||
                           pg_msg_find(&c->parser.msg, PG_SLICE("Idempotency-Key")) >= 0);
}

/* The connection died before any answer arrived. A reused keep-alive
 * connection the rail had already closed is the usual cause; one retry on a
 * fresh connection is safe when the request is idempotent. */
static void up_lost(struct upconn *u, const char *message)
{
    struct conn *c = u->client;
    if (c && u->reused && !u->got_bytes && retry_allowed(c)) {
        up_close(u);
        c->retried = true;
        upstream_forward(c);
        return;
    }
    up_fail(u, 502, "payguard_rail_unreachable", message);
}

/* --- parsing the rail's answer ---------------------------------------------- */

static struct upconn *up_of(llhttp_t *h)
{
    return h->data;
}

static int on_resp_begin(llhttp_t *h)
{
    pg_msg_reset(&up_of(h)->resp);
    return 0;
}

static int on_resp_status(llhttp_t *h, const char *at, size_t n)
{
    struct pg_msg *m = &up_of(h)->resp;
    if (m->target_len == 0)
        m->target_off = (uint32_t)m->head.len;
    if (m->head.len + n > UP_MAX_HEAD || pg_buf_append(&m->head, at, n))
        return -1;
    m->target_len += (uint32_t)n;
    return 0;
}

static int on_resp_field(llhttp_t *h, const char *at, size_t n)
{
    struct pg_msg *m = &up_of(h)->resp;
    if (m->head.len + n > UP_MAX_HEAD)
        return -1;
    return pg_msg_add_name(m, at, n, UP_MAX_HEADERS) ? -1 : 0;
}

static int on_resp_value(llhttp_t *h, const char *at, size_t n)
{
    struct pg_msg *m = &up_of(h)->resp;
    if (m->head.len + n > UP_MAX_HEAD)
        return -1;
    return pg_msg_add_value(m, at, n) ? -1 : 0;
}

/* Hop-by-hop and framing headers of the rail's answer stay behind; the
 * agent-side headers the request filter also drops (Authorization, Host,
 * Expect) are legitimate in an answer and pass. */
static bool resp_drop_header(const struct pg_msg *m, struct pg_slice name)
{
    if (name.len && ((name.ptr[0] | 0x20) == 'a' || (name.ptr[0] | 0x20) == 'e' ||
                     ((name.ptr[0] | 0x20) == 'h' && name.len == 4)))
        return false;
    return pg_http_drop_header(m, name);
}

/* Status line and end-to-end headers of the rail's answer. The rail echoes
 * the Idempotency-Key it got, which is payguard's derived key: the agent gets
 * its own key back, never the derived one (retrying with that would be a new
 * payment). For storage, the rail's own Idempotent-Replayed mark is left out
 * (payguard adds its own on replays) and remembered. */
static int write_answer_head(struct conn *c, const struct pg_msg *m, int status,
                             struct pg_buf *out, bool for_storage)
{
    struct verdict_ctx *vc = c->vc;
    struct pg_slice reason = pg_msg_target(m);
    char line[64];
    int n = snprintf(line, sizeof(line), "HTTP/1.1 %d ", status);
    int rc = pg_buf_append(out, line, (size_t)n);
    rc = rc ? rc : pg_buf_append(out, reason.ptr, reason.len);
    rc = rc ? rc : pg_buf_append(out, "\r\n", 2);
    for (uint32_t i = 0; i < m->nhdrs && rc == 0; i++) {
        struct pg_slice name = pg_msg_name(m, i), value = pg_msg_value(m, i);
        if (resp_drop_header(m, name))
            continue;
        if (vc && vc->rail_key[0] && pg_slice_eq_nocase(name, PG_SLICE("Idempotency-Key")))
            value = pg_slice_cstr(vc->idem_key);
        if (for_storage && pg_slice_eq_nocase(name, PG_SLICE("Idempotent-Replayed"))) {
            vc->rail_replayed = true;
            continue;
        }
        rc = pg_buf_append(out, name.ptr, name.len);
        rc = rc ? rc : pg_buf_append(out, ": ", 2);
        rc = rc ? rc : pg_buf_append(out, value.ptr, value.len);
        rc = rc ? rc : pg_buf_append(out, "\r\n", 2);
    }
    return rc;
}

/* Money answers are held whole: the ledger stores them for replays and
 * settles the reservation before the agent sees them. The stored head has no
 * framing or connection headers; those are added when it is sent. */
static int buffer_head(struct conn *c, const struct pg_msg *m, int status)
{
    struct verdict_ctx *vc = c->vc;
    vc->resp_head.len = 0;
    vc->resp_body.len = 0;
    vc->rail_replayed = false;
    vc->resp_status = status;
    return write_answer_head(c, m, status, &vc->resp_head, true) ? -1 : 0;
}

static int on_resp_headers_complete(llhttp_t *h)
{
    struct upconn *u = up_of(h);
    struct conn *c = u->client;
    struct pg_msg *m = &u->resp;
    int status = h->status_code;

    if (status >= 100 && status < 200)
        return 0; /* interim answers stay between payguard and the rail */
    if (!c)
        return -1;
    metrics_rail_status(c->srv, status);
    pg_msg_scan_connection(m);
    if (c->vc && c->vc->in_ledger)
        return buffer_head(c, m, status);
    bool head = c->parser.llhttp.method == HTTP_HEAD;
    bool no_body = head || status == 204 || status == 304;
    bool client_close = !c->parser.keep_alive || c->srv->draining;
    struct pg_buf out = { 0 };
    int rc = write_answer_head(c, m, status, &out, false);
    if (rc == 0 && !no_body) {
        if (h->flags & F_CONTENT_LENGTH && !(h->flags & F_CHUNKED)) {
            rc = pg_buf_append_str(&out, "Content-Length: ");
            rc = rc ? rc : pg_buf_append_u64(&out, h->content_length);
            rc = rc ? rc : pg_buf_append(&out, "\r\n", 2);
        } else {
            c->resp_chunked = true;
            rc = pg_buf_append_str(&out, "Transfer-Encoding: chunked\r\n");
        }
    } else if (rc == 0 && head && (h->flags & F_CONTENT_LENGTH)) {
        rc = pg_buf_append_str(&out, "Content-Length: ");
        rc = rc ? rc : pg_buf_append_u64(&out, h->content_length);
        rc = rc ? rc : pg_buf_append(&out, "\r\n", 2);
    }
    if (rc == 0 && client_close)
        rc = pg_buf_append_str(&out, "Connection: close\r\n");
    rc = rc ? rc : pg_buf_append(&out, "\r\n", 2);
    if (rc) {
        pg_buf_free(&out);
        return -1;
    }
    c->status = status;
    c->sent_head = true;
    c->state = CONN_RESPONDING;
    if (client_close)
        c->close_after_write = true;
    conn_write(c, out.p, out.len);
    pg_buf_free(&out);
    return no_body ? 1 : 0;
}

static int on_resp_body(llhttp_t *h, const char *at, size_t n)
{
    struct upconn *u = up_of(h);
    struct conn *c = u->client;
    if (!c)
        return -1;
    if (c->vc && c->vc->in_ledger) {
        struct pg_buf *b = &c->vc->resp_body;
        if (b->len + n > MAX_BUFFERED_ANSWER || pg_buf_append(b, at, n) != 0)
            return -1;
        return 0;
    }
    if (c->resp_chunked) {
        char size[24];
        int k = snprintf(size, sizeof(size), "%zx\r\n", n);
        conn_write(c, size, (size_t)k);
        conn_write(c, at, n);
        conn_write(c, "\r\n", 2);
    } else {
        conn_write(c, at, n);
    }
    return 0;
}

static int on_resp_complete(llhttp_t *h)
{
    struct upconn *u = up_of(h);
    if (h->status_code >= 100 && h->status_code < 200)
        return 0;
    u->done = true;
    return HPE_PAUSED;
}

static llhttp_settings_t response_settings;

static void up_finish(struct upconn *u)
{
    struct conn *c = u->client;
    bool keep = llhttp_should_keep_alive(&u->parser) != 0;
    if (c && c->vc && c->vc->in_ledger) {
        up_release(u, keep);
        money_rail_answered(c);
        return;
    }
    if (c && c->resp_chunked)
        conn_write(c, "0\r\n\r\n", 5);
    up_release(u, keep);
    if (c) {
        c->up_done_us = now_us();
        conn_request_done(c);
    }
}

static void up_feed_plain(struct upconn *u, const char *data, size_t len)
{
    if (u->state == UP_IDLE || !u->client) {
        up_close(u); /* bytes nobody asked for: the connection is not trustworthy */
        return;
    }
    u->got_bytes = true;
    llhttp_errno_t err = llhttp_execute(&u->parser, data, len);
    struct conn *c = u->client;
    if (u->done) {
        up_finish(u);
        return;
    }
    if (err != HPE_OK) {
        up_fail(u, 502, "payguard_rail_bad_response", "The rail sent an answer payguard could not parse.");
        return;
    }
    if (c) {
        conn_flush(c);
        if (conn_pending_write_bytes(c) > CLIENT_HIGH_WATER) {
            uv_read_stop((uv_stream_t *)&u->tcp);
            u->read_paused = true;
        }
    }
    /* Each byte of progress resets the response timer. */
    uv_timer_again(&u->timer);
}

/* --- TLS --------------------------------------------------------------------- */

static void up_tls_failed(struct upconn *u)
{
    char msg[512];
    long vr = SSL_get_verify_result(u->ssl);
    const char *host = u->pool ? u->pool->rail->upstream_host : "the rail";
    if (vr != X509_V_OK) {
        snprintf(msg, sizeof(msg), "TLS certificate verification of %s failed: %s.", host,
                 X509_verify_cert_error_string(vr));
    } else {
        unsigned long e = ERR_peek_last_error();
        char reason[256];
        ERR_error_string_n(e, reason, sizeof(reason));
        snprintf(msg, sizeof(msg), "The TLS handshake with %s failed: %s.", host, reason);
    }
    ERR_clear_error();
    struct conn *c = u->client;
    up_close(u);
    if (c) {
        c->error = "rail_tls_error";
        conn_send_error(c, 502, "api_error", "payguard_rail_tls_error", msg, 0);
    }
}

static void up_handshake(struct upconn *u)
{
    int r = SSL_do_handshake(u->ssl);
    if (up_flush_tls(u) != 0) {
        up_fail(u, 502, "payguard_rail_unreachable", "payguard could not write to the rail.");
        return;
    }
    if (r == 1) {
        u->state = UP_BUSY;
        up_send_request(u);
        return;
    }
    int e = SSL_get_error(u->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return;
    up_tls_failed(u);
}

static void up_read_tls(struct upconn *u, const char *data, size_t len)
{
    if (BIO_write(u->net_in, data, (int)len) != (int)len) {
        up_fail(u, 502, "payguard_rail_unreachable", "payguard ran out of memory reading from the rail.");
        return;
    }
    if (u->state == UP_HANDSHAKE) {
        up_handshake(u);
        if (u->state != UP_BUSY)
            return;
    }
    for (;;) {
        int n = SSL_read(u->ssl, up_read_buf, (int)sizeof(up_read_buf));
        if (n > 0) {
            up_feed_plain(u, up_read_buf, (size_t)n);
            if (u->state == UP_CLOSED || u->state == UP_IDLE)
                return;
            continue;
        }
        int e = SSL_get_error(u->ssl, n);
        if (up_flush_tls(u) != 0) {
            up_fail(u, 502, "payguard_rail_unreachable", "payguard could not write to the rail.");
            return;
        }
        if (e == SSL_ERROR_WANT_READ)
            return;
        if (e == SSL_ERROR_ZERO_RETURN) {
            up_lost(u, "The rail closed the TLS connection before answering.");
            return;
        }
        ERR_clear_error();
        up_fail(u, 502, "payguard_rail_unreachable", "The TLS connection to the rail failed.");
        return;
    }
}

/* --- reading --------------------------------------------------------------- */

static void on_up_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    PG_UNUSED(h);
    PG_UNUSED(suggested);
    static char raw[UP_READ_SIZE];
    *buf = uv_buf_init(raw, sizeof(raw));
}

static void on_up_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct upconn *u = s->data;
    if (nread == 0 || u->state == UP_CLOSED)
        return;
    if (nread < 0) {
        if (u->state == UP_IDLE || !u->client) {
            up_close(u);
            return;
        }
        if (u->got_bytes && nread == UV_EOF && !u->ssl) {
            /* An answer framed by the end of the connection. */
            if (llhttp_finish(&u->parser) == HPE_OK && u->done) {
                up_finish(u);
                return;
            }
        }
        if (u->got_bytes)
            up_fail(u, 502, "payguard_rail_unreachable", "The rail closed the connection mid-answer.");
        else
            up_lost(u, "The rail closed the connection before answering.");
        return;
    }
    if (u->ssl)
        up_read_tls(u, buf->base, (size_t)nread);
    else
        up_feed_plain(u, buf->base, (size_t)nread);
}

/* --- connecting ------------------------------------------------------------- */

static void on_up_timeout(uv_timer_t *t)
{
    struct upconn *u = t->data;
    if (u->state == UP_IDLE) {
        up_close(u);
        return;
    }
    if (u->state == UP_BUSY)
        up_fail(u, 504, "payguard_rail_timeout",
                "The rail did not answer in time. The outcome is unknown: retry with the same Idempotency-Key.");
    else
        up_fail(u, 502, "payguard_rail_unreachable", "payguard could not connect to the rail in time.");
}

static void up_try_connect(struct upconn *u);

/* The failed socket is closed; try the next address on a fresh one. */
static void on_up_tcp_reclosed(uv_handle_t *h)
{
    struct upconn *u = h->data;
    u->reconnecting = false;
    if (u->state == UP_CLOSED || !u->client) {
        u->tcp_open = false;
        up_free_if_closed(u);
        return;
    }
    uv_tcp_init(u->client->srv->loop, &u->tcp);
    u->tcp.data = u;
    up_try_connect(u);
}

static void on_up_connect(uv_connect_t *req, int status)
{
    struct upconn *u = req->data;
    if (u->state == UP_CLOSED)
        return;
    if (status != 0) {
        if (u->ai_next) {
            u->reconnecting = true;
            uv_close((uv_handle_t *)&u->tcp, on_up_tcp_reclosed);
            return;
        }
        char msg[256];
        snprintf(msg, sizeof(msg), "payguard could not connect to the rail at %s: %s.",
                 u->pool ? u->pool->rail->upstream_hostport : "?", uv_strerror(status));
        up_fail(u, 502, "payguard_rail_unreachable", msg);
        return;
    }
    uv_tcp_nodelay(&u->tcp, 1);
    uv_read_start((uv_stream_t *)&u->tcp, on_up_alloc, on_up_read);
    if (!u->ssl) {
        u->state = UP_BUSY;
        up_send_request(u);
        return;
    }
    u->state = UP_HANDSHAKE;
    up_handshake(u);
}

static void up_try_connect(struct upconn *u)
{
    struct addrinfo *ai = u->ai_next;
    u->ai_next = ai->ai_next;
    u->creq.data = u;
    int rc = uv_tcp_connect(&u->creq, &u->tcp, ai->ai_addr, on_up_connect);
    if (rc != 0) {
        char msg[256];
        snprintf(msg, sizeof(msg), "payguard could not connect to the rail: %s.", uv_strerror(rc));
        up_fail(u, 502, "payguard_rail_unreachable", msg);
    }
}

static void up_start_connect(struct upconn *u)
{
    u->state = UP_CONNECTING;
    u->ai_next = u->pool->addrs;
    if (!u->ai_next) {
        up_fail(u, 502, "payguard_rail_unreachable", "The rail's host name has no addresses.");
        return;
    }
    up_try_connect(u);
}

static void on_up_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct upconn *u = req->data;
    u->resolving = false;
    if (u->state == UP_CLOSED || !u->pool) {
        if (res)
            uv_freeaddrinfo(res);
        up_free_if_closed(u);
        return;
    }
    if (status != 0) {
        char msg[256];
        snprintf(msg, sizeof(msg), "payguard could not resolve the rail's host %s: %s.",
                 u->pool->rail->upstream_host, uv_strerror(status));
        up_fail(u, 502, "payguard_rail_unreachable", msg);
        return;
    }
    struct pool *p = u->pool;
    if (p->addrs)
        uv_freeaddrinfo(p->addrs);
    p->addrs = res;
    p->addrs_expiry_ms = uv_now(u->client->srv->loop) + DNS_TTL_MS;
    up_start_connect(u);
}

static struct upconn *up_new(struct pool *p, struct conn *c)
{
    struct upconn *u = calloc(1, sizeof(*u));
    if (!u)
        return NULL;
    uv_loop_t *loop = c->srv->loop;
    u->pool = p;
    link_init(&u->link);
    uv_tcp_init(loop, &u->tcp);
    uv_timer_init(loop, &u->timer);
    u->tcp.data = u->timer.data = u->gai.data = u;
    u->tcp_open = u->timer_open = true;
    if (!response_settings.on_message_complete) {
        llhttp_settings_init(&response_settings);
        response_settings.on_message_begin = on_resp_begin;
        response_settings.on_status = on_resp_status;
        response_settings.on_header_field = on_resp_field;
        response_settings.on_header_value = on_resp_value;
        response_settings.on_headers_complete = on_resp_headers_complete;
        response_settings.on_body = on_resp_body;
        response_settings.on_message_complete = on_resp_complete;
    }
    llhttp_init(&u->parser, HTTP_RESPONSE, &response_settings);
    u->parser.data = u;
    if (p->ssl_ctx) {
        u->ssl = SSL_new(p->ssl_ctx);
        u->net_in = BIO_new(BIO_s_mem());
        u->net_out = BIO_new(BIO_s_mem());
        if (!u->ssl || !u->net_in || !u->net_out) {
            BIO_free(u->net_in);
            BIO_free(u->net_out);
            u->net_in = u->net_out = NULL;
            return u; /* caller sees !ssl with ssl_ctx set and fails */
        }
        BIO_set_mem_eof_return(u->net_in, -1);
        SSL_set_bio(u->ssl, u->net_in, u->net_out);
        SSL_set_connect_state(u->ssl);
        const char *host = p->rail->upstream_host;
        unsigned char ipbuf[16];
        if (inet_pton(AF_INET, host, ipbuf) == 1 || inet_pton(AF_INET6, host, ipbuf) == 1) {
            X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(u->ssl), host);
        } else {
            SSL_set_tlsext_host_name(u->ssl, host);
            SSL_set1_host(u->ssl, host);
        }
        if (p->session)
            SSL_set_session(u->ssl, p->session);
    }
    return u;
}

/* --- the request ------------------------------------------------------------- */

static void up_send_request(struct upconn *u)
{
    struct conn *c = u->client;
    if (!c) {
        up_close(u);
        return;
    }
    pg_buf_free(&u->request);
    if (pg_http_serialize_request(&c->parser, c->rail, c->vc && c->vc->rail_key[0] ? c->vc->rail_key : NULL, &u->request) != 0) {
        up_fail(u, 503, "payguard_unavailable", "payguard is out of memory.");
        return;
    }
    c->up_start_us = now_us();
    u->got_bytes = false;
    u->done = false;
    llhttp_init(&u->parser, HTTP_RESPONSE, &response_settings);
    u->parser.data = u;
    uv_timer_start(&u->timer, on_up_timeout, c->rail->timeout_ms, c->rail->timeout_ms);
    int rc;
    if (c->vc)
        c->vc->sent_to_rail = true;
    if (u->ssl) {
        int n = SSL_write(u->ssl, u->request.p, (int)u->request.len);
        rc = n == (int)u->request.len ? up_flush_tls(u) : PG_ETLS;
        pg_buf_free(&u->request);
    } else {
        size_t len;
        char *data = pg_buf_take(&u->request, &len);
        rc = up_write_raw(u, data, len);
    }
    if (rc != 0)
        up_lost(u, "payguard could not send the request to the rail.");
}

void upstream_forward(struct conn *c)
{
    struct pool *p = NULL;
    for (size_t i = 0; i < c->rt->cfg->nrails; i++)
        if (&c->rt->cfg->rails[i] == c->rail)
            p = &c->rt->pools[i];
    if (!p) {
        conn_send_error(c, 503, "api_error", "payguard_unavailable", "The rail is not configured.", 0);
        return;
    }
    /* Reuse the most recently idle connection: the least likely to be stale. */
    while (!link_empty(&p->idle)) {
        struct upconn *u = CONTAINER_OF(p->idle.next, struct upconn, link);
        link_remove(&u->link);
        p->nidle--;
        u->state = UP_BUSY;
        u->reused = true;
        u->client = c;
        c->up = u;
        up_send_request(u);
        return;
    }
    struct upconn *u = up_new(p, c);
    if (!u || (p->ssl_ctx && !u->net_in)) {
        if (u)
            up_close(u);
        conn_send_error(c, 503, "api_error", "payguard_unavailable", "payguard is out of memory.", 0);
        return;
    }
    u->client = c;
    c->up = u;
    c->up_start_us = now_us();
    uv_timer_start(&u->timer, on_up_timeout, c->rail->connect_timeout_ms, 0);
    uv_loop_t *loop = c->srv->loop;
    if (p->addrs && uv_now(loop) < p->addrs_expiry_ms) {
        up_start_connect(u);
        return;
    }
    u->state = UP_RESOLVING;
    u->resolving = true;
    struct addrinfo hints = { 0 };
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    char port[8];
    snprintf(port, sizeof(port), "%u", c->rail->upstream_port);
    if (uv_getaddrinfo(loop, &u->gai, on_up_resolved, c->rail->upstream_host, port, &hints) != 0) {
        u->resolving = false;
        up_fail(u, 502, "payguard_rail_unreachable", "payguard could not resolve the rail's host.");
    }
}

void upstream_detach(struct conn *c)
{
    if (c->up)
        up_close(c->up);
}

void upstream_resume(struct conn *c)
{
    struct upconn *u = c->up;
    if (u && u->read_paused && conn_pending_write_bytes(c) < CLIENT_HIGH_WATER / 2) {
        u->read_paused = false;
        uv_read_start((uv_stream_t *)&u->tcp, on_up_alloc, on_up_read);
    }
}
