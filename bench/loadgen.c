/* payguard's load generator: N keep-alive HTTP/1.1 connections in a closed
 * loop (each sends its next request when the previous answer is complete),
 * a warm-up, then a measured window. Every measured request's latency, from
 * write to full response, goes into a log-bucketed histogram; one JSON line
 * on stdout carries the figures bench/run.sh compares. --idle instead opens N
 * connections and holds them, for the memory measurement: --ramp bounds how
 * many are being set up at once, --hold-at pauses on the way up, so one run
 * shows the target's memory at 1,000 and then at 10,000.
 *
 * Single libuv thread; responses parsed with llhttp (Content-Length, chunked,
 * close-delimited). Bench-only: nothing in the proxy depends on this file. */
#include "common/pg.h"
#include "common/buf.h"

#include "llhttp.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

#include <uv.h>

/* ---------------------------------------------------------------------------
 * Histogram: values in nanoseconds. Below 256 every value has its own
 * bucket; above, each power of two is split into 128 sub-buckets, so a
 * bucket is at most 1/128 (0.78%) of its values wide. HdrHistogram's layout
 * with 3 significant bits less, in 59 KB. */

#define HIST_SUB_BITS 7u
#define HIST_SUB (1u << HIST_SUB_BITS)          /* 128 sub-buckets per octave */
#define HIST_LINEAR (2u * HIST_SUB)             /* 0..255 exact */
#define HIST_BUCKETS (HIST_LINEAR + (64u - HIST_SUB_BITS - 2u) * HIST_SUB)

struct hist {
    uint64_t counts[HIST_BUCKETS];
    uint64_t total;
    uint64_t max; /* exact, not bucketed */
    uint64_t min;
    double sum;   /* for the mean only */
};

static size_t hist_index(uint64_t v)
{
    if (v < HIST_LINEAR)
        return (size_t)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v);
    unsigned shift = msb - HIST_SUB_BITS;          /* >= 1 here */
    uint64_t sub = v >> shift;                      /* 128..255 */
    return HIST_LINEAR + (size_t)(shift - 1u) * HIST_SUB + (size_t)(sub - HIST_SUB);
}

/* Highest value that lands in bucket i (what HdrHistogram reports). */
static uint64_t hist_upper(size_t i)
{
    if (i < HIST_LINEAR)
        return (uint64_t)i;
    size_t k = i - HIST_LINEAR;
    unsigned shift = (unsigned)(k / HIST_SUB) + 1u;
    uint64_t sub = (uint64_t)(k % HIST_SUB) + HIST_SUB;
    return ((sub + 1u) << shift) - 1u;
}

static void hist_record(struct hist *h, uint64_t v)
{
    h->counts[hist_index(v)]++;
    if (h->total == 0 || v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
    h->total++;
    h->sum += (double)v;
}

/* Value at a percentile given in thousandths of a percent (99.9% = 99900):
 * the upper bound of the bucket that holds the ceil(p * total)-th value,
 * never above the exact max. Integer maths, so no libm. */
static uint64_t hist_percentile(const struct hist *h, uint64_t p_milli)
{
    if (h->total == 0)
        return 0;
    uint64_t want = (h->total * p_milli + 99999u) / 100000u;
    if (want == 0)
        want = 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < HIST_BUCKETS; i++) {
        seen += h->counts[i];
        if (seen >= want) {
            uint64_t u = hist_upper(i);
            return u < h->max ? u : h->max;
        }
    }
    return h->max;
}

/* ---------------------------------------------------------------------------
 * Options and state. */

struct opts {
    const char *target;      /* HOST:PORT as given, for messages and Host: */
    unsigned conns;
    double warmup_s;
    double duration_s;
    const char *method;
    const char *path;
    const char *body;        /* form body, or NULL */
    bool unique_idem;
    bool idle;
    bool idle_request;       /* --idle: send one request per connection first */
    bool quiet;
    double connect_timeout_s;
    unsigned ramp;           /* --idle: connections being set up at once; 0: all */
    unsigned hold_at;        /* --idle: hold here for -d SEC first; 0: no stop */
};

enum phase { PHASE_CONNECT, PHASE_WARMUP, PHASE_MEASURE, PHASE_DONE };

struct conn {
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_write_t wreq;
    llhttp_t parser;
    uint64_t sent_ns;        /* when the request in flight was written */
    uint64_t seq;            /* requests sent on this slot, for idempotency keys */
    unsigned id;
    bool connected;
    bool in_flight;          /* a request is written and not yet answered */
    bool write_pending;      /* wreq is busy: its callback has not run */
    bool send_after_write;   /* the answer beat the write callback */
    bool closing;
    bool answered;           /* --idle: its one request came back */
    char idem[96];           /* "Idempotency-Key: ...\r\n" for the request in flight */
    size_t idem_len;
};

struct stats {
    uint64_t s2xx, s3xx, s4xx, s5xx, other;
    uint64_t errors;         /* resets, truncated or malformed answers */
    uint64_t reconnects;
};

static struct {
    struct opts o;
    uv_loop_t *loop;
    struct sockaddr_storage addr;
    struct conn *conns;
    llhttp_settings_t settings;
    char *req_head;          /* request line + fixed headers */
    size_t req_head_len;
    char *req_tail;          /* Content-* headers, blank line, body */
    size_t req_tail_len;
    bool head_method;        /* HEAD: answers carry no body */
    enum phase phase;
    uint64_t measure_start_ns;
    uint64_t measure_end_ns;
    uint64_t cpu_start_us;   /* loadgen's own CPU time at the window's start */
    uint64_t cpu_end_us;
    unsigned connected;
    unsigned answered;
    unsigned started;        /* --idle: slots handed to conn_start so far */
    unsigned goal;           /* --idle: connections wanted before the next hold */
    bool holding_step;       /* --idle: paused at --hold-at */
    uv_timer_t phase_timer;
    uv_timer_t step_timer;   /* --idle: the pause at --hold-at */
    uv_timer_t connect_timer;
    uv_signal_t sigint, sigterm;
    struct hist hist;
    struct stats st;
    int fatal;               /* first fatal libuv error, reported once */
    char readbuf[65536];     /* one loop thread, reads parsed at once: shared */
} G;

static void finish(void);
static void conn_start(struct conn *c);
static void conn_send(struct conn *c);

static void die_line(const char *what, int err)
{
    if (err)
        fprintf(stderr, "loadgen: %s %s: %s\n", what, G.o.target, uv_strerror(err));
    else
        fprintf(stderr, "loadgen: %s %s\n", what, G.o.target);
}

/* A fatal error: say it once, stop everything, exit non-zero after the loop. */
static void fatal(const char *what, int err)
{
    if (G.fatal)
        return;
    G.fatal = err ? err : -1;
    if (err == UV_ECONNREFUSED)
        die_line("connection refused by", 0);
    else if (err == UV_EADDRNOTAVAIL)
        fprintf(stderr,
                "loadgen: no local address/port left to connect to %s "
                "(EADDRNOTAVAIL); lower -c or widen net.ipv4.ip_local_port_range\n",
                G.o.target);
    else if (err == UV_EMFILE || err == UV_ENFILE)
        fprintf(stderr, "loadgen: out of file descriptors for %u connections (ulimit -n)\n",
                G.o.conns);
    else
        die_line(what, err);
    finish();
}

/* ---------------------------------------------------------------------------
 * Response parsing. */

static int on_headers_complete(llhttp_t *p)
{
    PG_UNUSED(p);
    return G.head_method ? 1 : 0;
}

static void count_status(unsigned status)
{
    if (status >= 200 && status < 300)
        G.st.s2xx++;
    else if (status >= 300 && status < 400)
        G.st.s3xx++;
    else if (status >= 400 && status < 500)
        G.st.s4xx++;
    else if (status >= 500 && status < 600)
        G.st.s5xx++;
    else
        G.st.other++;
}

/* One full answer. Only requests written and answered inside the measured
 * window count; the warm-up's stragglers do not. */
static int on_message_complete(llhttp_t *p)
{
    struct conn *c = p->data;
    if (!c->in_flight) {
        /* An answer nobody asked for: the stream is out of step. */
        return -1;
    }
    uint64_t now = uv_hrtime();
    c->in_flight = false;
    if (G.phase == PHASE_MEASURE && c->sent_ns >= G.measure_start_ns) {
        hist_record(&G.hist, now - c->sent_ns);
        count_status(p->status_code);
    }
    if (G.o.idle && !c->answered) {
        c->answered = true;
        G.answered++;
        if (p->status_code < 200 || p->status_code >= 300)
            G.st.other++;
    }
    return HPE_PAUSED;
}

/* ---------------------------------------------------------------------------
 * Connections. */

static void close_cb(uv_handle_t *h)
{
    struct conn *c = h->data;
    c->closing = false;
    if (G.phase == PHASE_WARMUP || G.phase == PHASE_MEASURE) {
        G.st.reconnects++;
        conn_start(c);
    }
}

static void conn_close(struct conn *c)
{
    if (c->closing || uv_is_closing((uv_handle_t *)&c->tcp))
        return;
    c->closing = true;
    if (c->connected) {
        c->connected = false;
        G.connected--;
    }
    c->in_flight = false;
    c->write_pending = false;
    c->send_after_write = false;
    uv_close((uv_handle_t *)&c->tcp, close_cb);
}

/* The connection failed mid-stream: count it and, while running, reconnect. */
static void conn_error(struct conn *c)
{
    if (G.phase == PHASE_MEASURE)
        G.st.errors++;
    conn_close(c);
}

static void after_answer(struct conn *c)
{
    if (!llhttp_should_keep_alive(&c->parser)) {
        conn_close(c); /* the server said close: reconnect and go on */
        return;
    }
    if (G.o.idle || G.phase == PHASE_DONE)
        return;
    if (c->write_pending)
        c->send_after_write = true;
    else
        conn_send(c);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    PG_UNUSED(h);
    PG_UNUSED(suggested);
    buf->base = G.readbuf;
    buf->len = sizeof(G.readbuf);
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct conn *c = s->data;
    if (nread == 0)
        return;
    if (nread < 0) {
        if (nread == UV_EOF) {
            /* A close-delimited body ends here; anything else is cut short. */
            bool was_in_flight = c->in_flight;
            llhttp_errno_t e = llhttp_finish(&c->parser);
            if (was_in_flight && c->in_flight)
                conn_error(c);
            else if (e != HPE_OK && e != HPE_PAUSED)
                conn_error(c);
            else
                conn_close(c);
        } else {
            conn_error(c);
        }
        return;
    }
    const char *p = buf->base;
    size_t left = (size_t)nread;
    while (left > 0) {
        llhttp_errno_t e = llhttp_execute(&c->parser, p, left);
        if (e == HPE_OK)
            return;
        if (e != HPE_PAUSED) {
            conn_error(c);
            return;
        }
        const char *stop = llhttp_get_error_pos(&c->parser);
        size_t used = stop && stop >= p ? (size_t)(stop - p) : left;
        llhttp_resume(&c->parser);
        if (used < left) {
            /* Bytes past the answer we waited for: not HTTP we sent for. */
            conn_error(c);
            return;
        }
        after_answer(c);
        return;
    }
}

static void write_cb(uv_write_t *w, int status)
{
    struct conn *c = w->data;
    c->write_pending = false;
    if (status < 0) {
        if (status != UV_ECANCELED)
            conn_error(c);
        return;
    }
    if (c->send_after_write) {
        c->send_after_write = false;
        if (G.phase != PHASE_DONE && !G.o.idle)
            conn_send(c);
    }
}

/* Writes the next request: shared head, this request's key line, shared tail. */
static void conn_send(struct conn *c)
{
    uv_buf_t bufs[3];
    unsigned n = 0;
    bufs[n++] = uv_buf_init(G.req_head, (unsigned)G.req_head_len);
    if (G.o.unique_idem) {
        int k = snprintf(c->idem, sizeof(c->idem), "Idempotency-Key: lg-%ld-%u-%llu\r\n",
                         (long)getpid(), c->id, (unsigned long long)c->seq);
        c->idem_len = k > 0 ? (size_t)k : 0;
        bufs[n++] = uv_buf_init(c->idem, (unsigned)c->idem_len);
    }
    bufs[n++] = uv_buf_init(G.req_tail, (unsigned)G.req_tail_len);
    c->seq++;
    c->sent_ns = uv_hrtime();
    c->in_flight = true;
    c->write_pending = true;
    int rc = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, bufs, n, write_cb);
    if (rc < 0) {
        c->write_pending = false;
        conn_error(c);
    }
}

static void all_connected(void);

static void connect_cb(uv_connect_t *req, int status)
{
    struct conn *c = req->data;
    if (status == UV_ECANCELED)
        return;
    if (status < 0) {
        /* Refused or no port left: the target is gone or the box is out of
         * ports; neither gets better by retrying in a loop. */
        fatal("cannot connect to", status);
        return;
    }
    c->connected = true;
    G.connected++;
    llhttp_init(&c->parser, HTTP_RESPONSE, &G.settings);
    c->parser.data = c;
    int rc = uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
    if (rc < 0) {
        conn_error(c);
        return;
    }
    if (G.phase == PHASE_CONNECT) {
        if (G.o.idle && G.o.idle_request)
            conn_send(c);
        if (!G.o.idle && G.connected == G.o.conns)
            all_connected();
    } else if (G.phase != PHASE_DONE && !G.o.idle) {
        conn_send(c);
    }
}

static void conn_start(struct conn *c)
{
    int rc = uv_tcp_init(G.loop, &c->tcp);
    if (rc < 0) {
        fatal("cannot create a socket for", rc);
        return;
    }
    c->tcp.data = c;
    c->creq.data = c;
    c->wreq.data = c;
    c->in_flight = false;
    c->write_pending = false;
    c->send_after_write = false;
    c->closing = false;
    rc = uv_tcp_nodelay(&c->tcp, 1);
    if (rc == 0)
        rc = uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&G.addr, connect_cb);
    if (rc < 0) {
        /* Synchronous failures (EADDRNOTAVAIL, EMFILE) come back here. */
        c->closing = true;
        uv_close((uv_handle_t *)&c->tcp, NULL);
        fatal("cannot connect to", rc);
    }
}

/* ---------------------------------------------------------------------------
 * Phases. */

static uint64_t secs_to_ms(double s)
{
    return s <= 0 ? 0 : (uint64_t)(s * 1000.0 + 0.5);
}

/* This process's user + system CPU time: a loadgen near 100% of a core is
 * measuring itself, not the target. */
static uint64_t cpu_now_us(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return 0;
    return (uint64_t)ru.ru_utime.tv_sec * 1000000u + (uint64_t)ru.ru_utime.tv_usec +
           (uint64_t)ru.ru_stime.tv_sec * 1000000u + (uint64_t)ru.ru_stime.tv_usec;
}

static void phase_cb(uv_timer_t *t)
{
    PG_UNUSED(t);
    if (G.phase == PHASE_WARMUP) {
        G.phase = PHASE_MEASURE;
        G.measure_start_ns = uv_hrtime();
        G.cpu_start_us = cpu_now_us();
        memset(&G.hist, 0, sizeof(G.hist));
        memset(&G.st, 0, sizeof(G.st));
        uv_timer_start(&G.phase_timer, phase_cb, secs_to_ms(G.o.duration_s), 0);
        return;
    }
    G.measure_end_ns = uv_hrtime();
    G.cpu_end_us = cpu_now_us();
    finish();
}

static void all_connected(void)
{
    uv_timer_stop(&G.connect_timer);
    if (G.o.idle) {
        /* Measured from here: the figures run.sh reads are taken while held. */
        if (!G.o.quiet)
            fprintf(stderr, "loadgen: holding %u connections\n", G.connected);
        G.phase = PHASE_MEASURE;
        G.measure_start_ns = uv_hrtime();
        uv_timer_start(&G.phase_timer, phase_cb, secs_to_ms(G.o.duration_s), 0);
        return;
    }
    G.phase = PHASE_WARMUP;
    for (unsigned i = 0; i < G.o.conns; i++)
        conn_send(&G.conns[i]);
    uv_timer_start(&G.phase_timer, phase_cb, secs_to_ms(G.o.warmup_s), 0);
}

static void connect_timeout_cb(uv_timer_t *t)
{
    PG_UNUSED(t);
    if (G.phase != PHASE_CONNECT)
        return;
    if (G.fatal)
        return;
    G.fatal = UV_ETIMEDOUT;
    if (G.o.idle && G.o.idle_request && G.connected == G.started)
        fprintf(stderr, "loadgen: %s answered %u of %u requests within %.1f s\n", G.o.target,
                G.answered, G.started, G.o.connect_timeout_s);
    else
        fprintf(stderr, "loadgen: only %u of %u connections to %s opened within %.1f s\n",
                G.connected, G.o.conns, G.o.target, G.o.connect_timeout_s);
    finish();
}

/* --idle: connections set up as asked (connected, and answered unless
 * --no-request). */
static unsigned idle_ready(void)
{
    return G.o.idle_request ? G.answered : G.connected;
}

/* --idle: opens more connections, at most --ramp of them being set up at a
 * time, up to the current goal. Called from the poll timer, never from inside
 * a parser callback. */
static void idle_start_more(void)
{
    unsigned ready = idle_ready();
    while (!G.fatal && G.phase == PHASE_CONNECT && G.started < G.goal &&
           (G.o.ramp == 0 || G.started - ready < G.o.ramp)) {
        struct conn *c = &G.conns[G.started];
        c->id = G.started++;
        conn_start(c);
    }
}

static void idle_check_cb(uv_timer_t *t);

/* --idle: poll until the goal's connections are ready; hold at --hold-at on
 * the way, then at N. */
static uv_timer_t idle_poll;

static void step_done_cb(uv_timer_t *t)
{
    PG_UNUSED(t);
    G.holding_step = false;
    G.goal = G.o.conns;
    uv_timer_start(&G.connect_timer, connect_timeout_cb, secs_to_ms(G.o.connect_timeout_s), 0);
}

static void idle_check_cb(uv_timer_t *t)
{
    PG_UNUSED(t);
    if (G.phase != PHASE_CONNECT) {
        uv_timer_stop(&idle_poll);
        return;
    }
    if (G.holding_step)
        return;
    if (G.started == G.goal && idle_ready() == G.goal) {
        if (G.goal == G.o.conns) {
            uv_timer_stop(&idle_poll);
            all_connected();
            return;
        }
        /* A stop on the way up: the target's memory is read meanwhile. */
        uv_timer_stop(&G.connect_timer);
        G.holding_step = true;
        if (!G.o.quiet)
            fprintf(stderr, "loadgen: holding %u connections\n", G.goal);
        uv_timer_start(&G.step_timer, step_done_cb, secs_to_ms(G.o.duration_s), 0);
        return;
    }
    idle_start_more();
}

static void signal_cb(uv_signal_t *s, int signum)
{
    PG_UNUSED(s);
    PG_UNUSED(signum);
    if (!G.fatal)
        G.fatal = UV_ECANCELED;
    fprintf(stderr, "loadgen: interrupted\n");
    finish();
}

static void walk_close_cb(uv_handle_t *h, void *arg)
{
    PG_UNUSED(arg);
    if (uv_is_closing(h))
        return;
    uv_close(h, NULL);
}

/* Stops everything: the loop ends when the last handle is closed. */
static void finish(void)
{
    if (G.phase == PHASE_DONE)
        return;
    G.phase = PHASE_DONE;
    uv_walk(G.loop, walk_close_cb, NULL);
}

/* ---------------------------------------------------------------------------
 * Request bytes, built once. */

static int append_fmt_u64(struct pg_buf *b, const char *pre, uint64_t v, const char *post)
{
    if (pg_buf_append_str(b, pre) || pg_buf_append_u64(b, v) || pg_buf_append_str(b, post))
        return PG_ENOMEM;
    return 0;
}

static bool header_is(const char *line, const char *name)
{
    size_t n = strlen(name);
    const char *colon = strchr(line, ':');
    return colon && (size_t)(colon - line) == n &&
           pg_slice_eq_nocase(pg_slice_of(line, n), pg_slice_of(name, n));
}

static int build_request(char **headers, size_t nheaders)
{
    struct pg_buf head = { 0 }, tail = { 0 };
    bool have_host = false, have_ctype = false;
    for (size_t i = 0; i < nheaders; i++) {
        have_host = have_host || header_is(headers[i], "Host");
        have_ctype = have_ctype || header_is(headers[i], "Content-Type");
    }
    if (pg_buf_append_str(&head, G.o.method) || pg_buf_append_str(&head, " ") ||
        pg_buf_append_str(&head, G.o.path) || pg_buf_append_str(&head, " HTTP/1.1\r\n"))
        goto fail;
    if (!have_host && (pg_buf_append_str(&head, "Host: ") ||
                       pg_buf_append_str(&head, G.o.target) || pg_buf_append_str(&head, "\r\n")))
        goto fail;
    for (size_t i = 0; i < nheaders; i++)
        if (pg_buf_append_str(&head, headers[i]) || pg_buf_append_str(&head, "\r\n"))
            goto fail;
    if (G.o.body) {
        size_t blen = strlen(G.o.body);
        if (!have_ctype &&
            pg_buf_append_str(&tail, "Content-Type: application/x-www-form-urlencoded\r\n"))
            goto fail;
        if (append_fmt_u64(&tail, "Content-Length: ", blen, "\r\n\r\n") ||
            pg_buf_append(&tail, G.o.body, blen))
            goto fail;
    } else if (pg_buf_append_str(&tail, "\r\n")) {
        goto fail;
    }
    G.req_head = pg_buf_take(&head, &G.req_head_len);
    G.req_tail = pg_buf_take(&tail, &G.req_tail_len);
    return 0;
fail:
    pg_buf_free(&head);
    pg_buf_free(&tail);
    return PG_ENOMEM;
}

/* ---------------------------------------------------------------------------
 * Command line. */

static const char usage[] =
    "Usage: loadgen [options] HOST:PORT\n"
    "\n"
    "Closed-loop HTTP/1.1 load over N keep-alive connections: each connection\n"
    "sends its next request as soon as the previous answer is complete. After a\n"
    "warm-up, every request of the measured window is timed from write to full\n"
    "response (histogram, <1% relative error). Prints a summary on stderr and\n"
    "one JSON line on stdout:\n"
    "  {\"rps\":..,\"p50_us\":..,\"p90_us\":..,\"p99_us\":..,\"p999_us\":..,\"max_us\":..,\n"
    "   \"ok\":..,\"non2xx\":..,\"errors\":..,...}\n"
    "\n"
    "Options:\n"
    "  -c, --connections N     keep-alive connections (default 32)\n"
    "  -w, --warmup SEC        warm-up, not measured (default 2)\n"
    "  -d, --duration SEC      measured window; with --idle, how long to hold (default 5)\n"
    "  -m, --method METHOD     request method (default GET)\n"
    "  -p, --path PATH         request target (default /)\n"
    "  -H, --header 'N: v'     extra header, repeatable (up to 64)\n"
    "  -b, --body FORM         form body (a=1&b=2); Content-Type defaults to\n"
    "                          application/x-www-form-urlencoded\n"
    "      --unique-idempotency  a fresh Idempotency-Key header on every request\n"
    "      --idle              open N connections, send one request on each, then\n"
    "                          hold them idle for -d SEC (memory measurement);\n"
    "                          prints \"loadgen: holding N connections\" on stderr\n"
    "      --no-request        with --idle: hold bare connections, send nothing\n"
    "      --ramp K            with --idle: at most K connections being opened (and\n"
    "                          awaiting their answer) at a time (default: all at once)\n"
    "      --hold-at M         with --idle: stop at M connections, print \"loadgen:\n"
    "                          holding M connections\", hold -d SEC, then go on to N\n"
    "      --connect-timeout SEC  all connections (and --idle answers) within, per\n"
    "                          step with --hold-at (default 10)\n"
    "  -q, --quiet             no summary on stderr\n"
    "  -h, --help              this text\n"
    "\n"
    "HOST is a numeric IPv4 or [IPv6] address. Exit status: 0 done, 1 the target\n"
    "could not be reached or failed, 2 usage.\n";

static int usage_error(const char *msg, const char *arg)
{
    fprintf(stderr, "loadgen: %s%s%s (see loadgen --help)\n", msg, arg ? ": " : "",
            arg ? arg : "");
    return 2;
}

static int parse_secs(const char *s, double *out)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= 0.0) || v > 86400.0)
        return -1;
    *out = v;
    return 0;
}

static int parse_count(const char *s, unsigned *out)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < 1 || v > 100000)
        return -1;
    *out = (unsigned)v;
    return 0;
}

static int parse_target(const char *t)
{
    char host[64];
    const char *colon;
    size_t hlen;
    if (t[0] == '[') {
        const char *rb = strchr(t, ']');
        if (!rb || rb[1] != ':')
            return -1;
        hlen = (size_t)(rb - t - 1);
        if (hlen >= sizeof(host))
            return -1;
        memcpy(host, t + 1, hlen);
        colon = rb + 1;
    } else {
        colon = strrchr(t, ':');
        if (!colon)
            return -1;
        hlen = (size_t)(colon - t);
        if (hlen >= sizeof(host))
            return -1;
        memcpy(host, t, hlen);
    }
    host[hlen] = '\0';
    char *end = NULL;
    errno = 0;
    long port = strtol(colon + 1, &end, 10);
    if (errno || end == colon + 1 || *end || port < 1 || port > 65535)
        return -1;
    if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)&G.addr) == 0)
        return 0;
    if (uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)&G.addr) == 0)
        return 0;
    return -1;
}

/* Room for N sockets plus the loop's own: raise the soft limit to the hard. */
static int raise_nofile(unsigned conns)
{
    struct rlimit rl;
    rlim_t need = (rlim_t)conns + 64u;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 0;
    if (rl.rlim_cur >= need)
        return 0;
    rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= need ? need : rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur < need) {
        fprintf(stderr, "loadgen: %u connections need %llu file descriptors; ulimit -n allows %llu\n",
                conns, (unsigned long long)need, (unsigned long long)rl.rlim_cur);
        return -1;
    }
    return 0;
}

static double ns_to_us(uint64_t ns)
{
    return (double)ns / 1000.0;
}

static void report(void)
{
    double secs = (double)(G.measure_end_ns - G.measure_start_ns) / 1e9;
    uint64_t n = G.hist.total;
    double rps = secs > 0 ? (double)n / secs : 0.0;
    uint64_t non2xx = G.st.s3xx + G.st.s4xx + G.st.s5xx + G.st.other;
    double p50 = ns_to_us(hist_percentile(&G.hist, 50000u));
    double p90 = ns_to_us(hist_percentile(&G.hist, 90000u));
    double p99 = ns_to_us(hist_percentile(&G.hist, 99000u));
    double p999 = ns_to_us(hist_percentile(&G.hist, 99900u));
    double mx = ns_to_us(G.hist.max);
    double mn = ns_to_us(G.hist.min);
    double mean = n ? G.hist.sum / (double)n / 1000.0 : 0.0;
    double cpu_pct = secs > 0 ? (double)(G.cpu_end_us - G.cpu_start_us) / 1e4 / secs : 0.0;
    if (!G.o.quiet)
        fprintf(stderr,
                "loadgen: %s %s %s, %u connections, %.1f s: %llu requests, %.0f req/s\n"
                "loadgen: latency us  p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f\n"
                "loadgen: 2xx %llu  3xx %llu  4xx %llu  5xx %llu  errors %llu  reconnects %llu\n"
                "loadgen: own CPU %.0f%% of one core\n",
                G.o.method, G.o.path, G.o.target, G.o.conns, secs, (unsigned long long)n, rps,
                p50, p90, p99, p999, mx, (unsigned long long)G.st.s2xx,
                (unsigned long long)G.st.s3xx, (unsigned long long)G.st.s4xx,
                (unsigned long long)G.st.s5xx, (unsigned long long)G.st.errors,
                (unsigned long long)G.st.reconnects, cpu_pct);
    printf("{\"target\":\"%s\",\"connections\":%u,\"duration_s\":%.3f,\"requests\":%llu,"
           "\"rps\":%.1f,\"p50_us\":%.1f,\"p90_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,"
           "\"max_us\":%.1f,\"min_us\":%.1f,\"mean_us\":%.1f,\"ok\":%llu,\"non2xx\":%llu,"
           "\"s4xx\":%llu,\"s5xx\":%llu,\"errors\":%llu,\"reconnects\":%llu,"
           "\"loadgen_cpu_pct\":%.1f}\n",
           G.o.target, G.o.conns, secs, (unsigned long long)n, rps, p50, p90, p99, p999, mx, mn,
           mean, (unsigned long long)G.st.s2xx, (unsigned long long)non2xx,
           (unsigned long long)G.st.s4xx, (unsigned long long)G.st.s5xx,
           (unsigned long long)G.st.errors, (unsigned long long)G.st.reconnects, cpu_pct);
}

static void report_idle(void)
{
    double secs = (double)(uv_hrtime() - G.measure_start_ns) / 1e9;
    printf("{\"target\":\"%s\",\"idle\":true,\"connections\":%u,\"held\":%u,\"held_s\":%.3f,"
           "\"non2xx\":%llu,\"errors\":%llu}\n",
           G.o.target, G.o.conns, G.connected, secs, (unsigned long long)G.st.other,
           (unsigned long long)G.st.errors);
}

enum { OPT_UNIQUE = 256, OPT_IDLE, OPT_NOREQ, OPT_CTIMEOUT, OPT_RAMP, OPT_HOLDAT };
#define MAX_HEADERS 64 /* -H options; more is a typo, not a benchmark */

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "connections", required_argument, NULL, 'c' },
        { "warmup", required_argument, NULL, 'w' },
        { "duration", required_argument, NULL, 'd' },
        { "method", required_argument, NULL, 'm' },
        { "path", required_argument, NULL, 'p' },
        { "header", required_argument, NULL, 'H' },
        { "body", required_argument, NULL, 'b' },
        { "unique-idempotency", no_argument, NULL, OPT_UNIQUE },
        { "idle", no_argument, NULL, OPT_IDLE },
        { "no-request", no_argument, NULL, OPT_NOREQ },
        { "connect-timeout", required_argument, NULL, OPT_CTIMEOUT },
        { "ramp", required_argument, NULL, OPT_RAMP },
        { "hold-at", required_argument, NULL, OPT_HOLDAT },
        { "quiet", no_argument, NULL, 'q' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    G.o.conns = 32;
    G.o.warmup_s = 2.0;
    G.o.duration_s = 5.0;
    G.o.method = "GET";
    G.o.path = "/";
    G.o.idle_request = true;
    G.o.connect_timeout_s = 10.0;
    char *headers[MAX_HEADERS];
    size_t nheaders = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, "c:w:d:m:p:H:b:qh", longopts, NULL)) != -1) {
        switch (ch) {
        case 'c':
            if (parse_count(optarg, &G.o.conns))
                return usage_error("connections must be 1..100000", optarg);
            break;
        case OPT_RAMP:
            if (parse_count(optarg, &G.o.ramp))
                return usage_error("--ramp must be 1..100000", optarg);
            break;
        case OPT_HOLDAT:
            if (parse_count(optarg, &G.o.hold_at))
                return usage_error("--hold-at must be 1..100000", optarg);
            break;
        case 'w':
            if (parse_secs(optarg, &G.o.warmup_s))
                return usage_error("bad warm-up seconds", optarg);
            break;
        case 'd':
            if (parse_secs(optarg, &G.o.duration_s) || G.o.duration_s <= 0.0)
                return usage_error("bad duration seconds", optarg);
            break;
        case OPT_CTIMEOUT:
            if (parse_secs(optarg, &G.o.connect_timeout_s) || G.o.connect_timeout_s <= 0.0)
                return usage_error("bad connect timeout", optarg);
            break;
        case 'm':
            G.o.method = optarg;
            break;
        case 'p':
            G.o.path = optarg;
            break;
        case 'H':
            if (!strchr(optarg, ':') || strpbrk(optarg, "\r\n"))
                return usage_error("header must be 'Name: value' on one line", optarg);
            if (nheaders == MAX_HEADERS)
                return usage_error("too many -H headers", optarg);
            headers[nheaders++] = optarg;
            break;
        case 'b':
            G.o.body = optarg;
            break;
        case OPT_UNIQUE:
            G.o.unique_idem = true;
            break;
        case OPT_IDLE:
            G.o.idle = true;
            break;
        case OPT_NOREQ:
            G.o.idle_request = false;
            break;
        case 'q':
            G.o.quiet = true;
            break;
        case 'h':
            fputs(usage, stdout);
            return 0;
        default:
            return usage_error("bad option", NULL);
        }
    }
    if (optind != argc - 1)
        return usage_error("give exactly one HOST:PORT", NULL);
    G.o.target = argv[optind];
    if (parse_target(G.o.target))
        return usage_error("target must be a numeric IP:PORT or [IPv6]:PORT", G.o.target);
    if (!G.o.method[0] || strpbrk(G.o.method, " \r\n") || !G.o.path[0] ||
        strpbrk(G.o.path, " \r\n"))
        return usage_error("bad method or path", NULL);
    if (G.o.hold_at && (!G.o.idle || G.o.hold_at >= G.o.conns))
        return usage_error("--hold-at needs --idle and fewer connections than -c", NULL);
    if (G.o.ramp && !G.o.idle)
        return usage_error("--ramp needs --idle", NULL);
    G.head_method = strcmp(G.o.method, "HEAD") == 0;
    if (raise_nofile(G.o.conns))
        return 1;
    if (build_request(headers, nheaders)) {
        fprintf(stderr, "loadgen: out of memory\n");
        return 1;
    }

    signal(SIGPIPE, SIG_IGN); /* a peer gone mid-write is an error count, not death */
    llhttp_settings_init(&G.settings);
    G.settings.on_headers_complete = on_headers_complete;
    G.settings.on_message_complete = on_message_complete;

    G.loop = uv_default_loop();
    G.conns = calloc(G.o.conns, sizeof(*G.conns));
    if (!G.conns) {
        fprintf(stderr, "loadgen: out of memory\n");
        return 1;
    }
    uv_timer_init(G.loop, &G.phase_timer);
    uv_timer_init(G.loop, &G.connect_timer);
    uv_timer_init(G.loop, &idle_poll);
    uv_timer_init(G.loop, &G.step_timer);
    uv_signal_init(G.loop, &G.sigint);
    uv_signal_init(G.loop, &G.sigterm);
    uv_signal_start(&G.sigint, signal_cb, SIGINT);
    uv_signal_start(&G.sigterm, signal_cb, SIGTERM);
    uv_timer_start(&G.connect_timer, connect_timeout_cb, secs_to_ms(G.o.connect_timeout_s), 0);
    G.phase = PHASE_CONNECT;
    if (G.o.idle) {
        G.goal = G.o.hold_at ? G.o.hold_at : G.o.conns;
        uv_timer_start(&idle_poll, idle_check_cb, 5, 5);
        idle_start_more();
    } else {
        for (unsigned i = 0; i < G.o.conns && !G.fatal; i++) {
            G.conns[i].id = i;
            conn_start(&G.conns[i]);
        }
    }
    uv_run(G.loop, UV_RUN_DEFAULT);

    int exit_code = 0;
    if (G.fatal) {
        exit_code = 1;
    } else if (G.o.idle) {
        report_idle();
    } else {
        report();
        if (G.hist.total == 0) {
            fprintf(stderr, "loadgen: no answer from %s in the measured window\n", G.o.target);
            exit_code = 1;
        }
    }
    fflush(stdout);
    uv_loop_close(G.loop);
    free(G.conns);
    free(G.req_head);
    free(G.req_tail);
    return exit_code;
}
