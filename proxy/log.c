/* One JSON object per line: a request log line when each request ends, and
 * event lines for the lifecycle. Paths are logged without their query string
 * and nothing from Authorization is ever written. */
#include "common/pg.h"
#include "policy/pan.h"
#include "proxy/proxy_int.h"

#include <stdio.h>
#include <time.h>

struct line {
    char buf[2048];
    size_t len;
};

static void put(struct line *l, const char *s, size_t n)
{
    if (n > sizeof(l->buf) - 1 - l->len)
        n = sizeof(l->buf) - 1 - l->len;
    memcpy(l->buf + l->len, s, n);
    l->len += n;
}

static void puts_raw(struct line *l, const char *s)
{
    put(l, s, strlen(s));
}

/* JSON string body: escapes quotes, backslashes and control bytes. */
static void put_escaped(struct line *l, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\') {
            char e[2] = { '\\', (char)ch };
            put(l, e, 2);
        } else if (ch < 0x20 || ch == 0x7f) {
            char e[8];
            int k = snprintf(e, sizeof(e), "\\u%04x", ch);
            put(l, e, (size_t)k);
        } else {
            put(l, (const char *)&ch, 1);
        }
    }
}

static void put_kv_str(struct line *l, const char *k, const char *v, size_t n)
{
    puts_raw(l, ",\"");
    puts_raw(l, k);
    puts_raw(l, "\":\"");
    put_escaped(l, v, n);
    puts_raw(l, "\"");
}

static void put_kv_u64(struct line *l, const char *k, uint64_t v)
{
    char num[24];
    size_t i = sizeof(num);
    do {
        num[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    puts_raw(l, ",\"");
    puts_raw(l, k);
    puts_raw(l, "\":");
    put(l, num + i, sizeof(num) - i);
}

/* The date part changes once a second: format it once a second. Loop
 * thread only. */
static void put_time(struct line *l)
{
    static time_t cached_sec = -1;
    static char cached[32];
    static size_t cached_len;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (ts.tv_sec != cached_sec) {
        struct tm tm;
        gmtime_r(&ts.tv_sec, &tm);
        cached_len = strftime(cached, sizeof(cached), "%Y-%m-%dT%H:%M:%S", &tm);
        cached_sec = ts.tv_sec;
    }
    long ms = ts.tv_nsec / 1000000;
    char frac[6] = { '.', (char)('0' + ms / 100), (char)('0' + ms / 10 % 10), (char)('0' + ms % 10),
                     'Z', '"' };
    puts_raw(l, "{\"time\":\"");
    put(l, cached, cached_len);
    put(l, frac, sizeof(frac));
}

/* The loop thread's lines wait in the log's buffer until log_flush, once per
 * loop iteration: one write() for all of them. Other threads flush their own. */
static _Thread_local bool batched_thread;

static void emit(FILE *f, struct line *l)
{
    puts_raw(l, "}\n");
    fwrite(l->buf, 1, l->len, f);
    if (!batched_thread)
        fflush(f);
}

static void log_flush(uv_prepare_t *h)
{
    fflush(h->data);
}

int log_batch_start(uv_loop_t *loop, uv_prepare_t *h, FILE *f)
{
    int rc = uv_prepare_init(loop, h);
    if (rc != 0)
        return rc;
    h->data = f;
    /* Runs just before the loop waits for I/O; never keeps the loop alive. */
    if ((rc = uv_prepare_start(h, log_flush)) != 0)
        return rc;
    uv_unref((uv_handle_t *)h);
    batched_thread = true;
    return 0;
}

void log_event(FILE *f, const char *level, const char *msg, const char *k1, const char *v1,
               const char *k2, const char *v2)
{
    struct line l = { .len = 0 };
    put_time(&l);
    put_kv_str(&l, "level", level, strlen(level));
    put_kv_str(&l, "msg", msg, strlen(msg));
    if (k1 && v1)
        put_kv_str(&l, k1, v1, strlen(v1));
    if (k2 && v2)
        put_kv_str(&l, k2, v2, strlen(v2));
    emit(f, &l);
}

void log_request(struct conn *c)
{
    struct line l = { .len = 0 };
    struct pg_slice target = pg_msg_target(&c->parser.msg);
    const char *q = target.len ? memchr(target.ptr, '?', target.len) : NULL;
    size_t plen = q ? (size_t)(q - target.ptr) : target.len;
    uint64_t end = now_us();

    put_time(&l);
    if (c->agent)
        put_kv_str(&l, "agent", c->agent->id, strlen(c->agent->id));
    if (target.len) { /* llhttp parsed this request's method and target */
        const char *m = pg_reqparser_method(&c->parser);
        put_kv_str(&l, "method", m, strlen(m));
        /* a card number in a path never reaches the log */
        char masked[512];
        size_t n = plen < sizeof(masked) ? plen : sizeof(masked);
        if (pg_pan_mask(target.ptr, n, masked, sizeof(masked)) >= 0)
            put_kv_str(&l, "path", masked, n);
    }
    if (c->rail)
        put_kv_str(&l, "rail", c->rail->name, strlen(c->rail->name));
    if (c->vc && c->vc->intent.matched) {
        const struct pg_intent *in = &c->vc->intent;
        const char *op = pg_op_name(in->op);
        put_kv_str(&l, "operation", op, strlen(op));
        put_kv_str(&l, "route", in->route, strlen(in->route));
        if (in->has_amount) {
            put_kv_u64(&l, "amount", (uint64_t)in->amount);
            put_kv_str(&l, "currency", in->currency, strlen(in->currency));
        }
    }
    if (c->vc) {
        const char *v = pg_verdict_name(c->vc->decision.verdict);
        put_kv_str(&l, "decision", v, strlen(v));
        if (c->vc->decision.verdict != PG_VERDICT_ALLOW && c->vc->decision.reason)
            put_kv_str(&l, "reason", c->vc->decision.reason, strlen(c->vc->decision.reason));
        if (c->vc->approval_id[0])
            put_kv_str(&l, "approval_id", c->vc->approval_id, strlen(c->vc->approval_id));
    }
    put_kv_u64(&l, "status", (uint64_t)c->status);
    put_kv_u64(&l, "bytes_in", c->bytes_in);
    put_kv_u64(&l, "bytes_out", c->bytes_out);
    put_kv_u64(&l, "latency_us", c->req_start_us ? end - c->req_start_us : 0);
    if (c->up_start_us)
        put_kv_u64(&l, "upstream_us", (c->up_done_us ? c->up_done_us : end) - c->up_start_us);
    if (c->error)
        put_kv_str(&l, "error", c->error, strlen(c->error));
    emit(c->srv->log, &l);
}
