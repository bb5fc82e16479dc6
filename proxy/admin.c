/* The admin listener: health and readiness for now. Humans' API routes
 * arrive with the admin issue; agent tokens are never accepted here. */
#include "common/pg.h"
#include "proxy/proxy_int.h"

#include <stdio.h>

static void reply_json(struct conn *c, int status, const char *body)
{
    char head[256];
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                     "Cache-Control: no-store\r\nContent-Length: %zu\r\n%s\r\n",
                     status, pg_http_reason(status), strlen(body),
                     c->parser.keep_alive ? "" : "Connection: close\r\n");
    c->status = status;
    conn_write(c, head, (size_t)n);
    conn_write(c, body, strlen(body));
    conn_request_done(c);
}

void admin_handle(struct conn *c)
{
    struct pg_slice target = pg_msg_target(&c->parser.msg);
    const char *q = memchr(target.ptr, '?', target.len);
    struct pg_slice path = pg_slice_of(target.ptr, q ? (size_t)(q - target.ptr) : target.len);
    bool get = c->parser.llhttp.method == HTTP_GET || c->parser.llhttp.method == HTTP_HEAD;

    if (pg_slice_eq(path, PG_SLICE("/healthz"))) {
        if (!get)
            reply_json(c, 405, "{\"error\":{\"code\":\"method_not_allowed\",\"message\":\"Use GET.\"}}");
        else
            reply_json(c, 200, "{\"status\":\"ok\"}");
        return;
    }
    if (pg_slice_eq(path, PG_SLICE("/readyz"))) {
        if (!get)
            reply_json(c, 405, "{\"error\":{\"code\":\"method_not_allowed\",\"message\":\"Use GET.\"}}");
        else if (c->srv->draining)
            reply_json(c, 503, "{\"status\":\"draining\"}");
        else if (!c->srv->ledger || !pg_ledger_ready(c->srv->ledger))
            reply_json(c, 503, "{\"status\":\"ledger unavailable\"}");
        else
            reply_json(c, 200, "{\"status\":\"ready\"}");
        return;
    }
    reply_json(c, 404, "{\"error\":{\"code\":\"not_found\",\"message\":\"No such admin route.\"}}");
}
