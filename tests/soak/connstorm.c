/* connstorm: the load-held case of the soak. Opens and holds many keep-alive
 * connections to payguard (each one answered once first), then opens a
 * burst of new connections at a fixed rate, and sorts every burst
 * connection by how it ended: served, refused with payguard's 503, or
 * dropped without an answer (reset, closed, timed out, not connected). Then
 * it asks again on every held connection and on fresh ones, to show payguard
 * still serves. One JSON line per phase on stdout; tests/soak/loadheld.mjs
 * starts payguard, watches its descriptors and memory, and judges.
 *
 * Single libuv thread. Connections come from 127.0.0.2-127.0.0.9 in turn,
 * so tens of thousands of them never run out of local ports. Test-only:
 * nothing in payguard depends on this file. */
#include "common/pg.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>

#include <uv.h>

#define SOURCES 8u                  /* 127.0.0.2 .. 127.0.0.9 */
#define ANSWER_MAX (64u * 1024u)    /* an answer larger than this is an error here */

enum end {
    END_NONE,
    END_SERVED,                     /* 2xx */
    END_REFUSED,                    /* 503 payguard_unavailable */
    END_OTHER_STATUS,               /* any other answer */
    END_RESET,                      /* reset before a whole answer */
    END_CLOSED,                     /* closed before a whole answer */
    END_TIMEOUT,
    END_CONNECT_FAILED,
    END_COUNT
};

static const char *const END_NAMES[END_COUNT] = {
    "none", "served", "refused_503", "other_status", "reset_before_answer",
    "closed_before_answer", "timed_out", "connect_failed",
};

enum role { ROLE_HELD, ROLE_BURST, ROLE_FRESH };

struct conn {
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_write_t wreq;
    enum role role;
    bool connected, open, closing;
    bool waiting;                   /* a request is out, its answer not complete */
    bool closed_by_peer;            /* after the answer: EOF or reset */
    enum end last;                  /* how the last exchange ended */
    int status;
    char *in;                       /* answer bytes so far */
    size_t in_len;
    uint64_t sent_at;               /* uv_now when the request went out */
    struct conn *next_all;
};

static struct {
    uv_loop_t *loop;
    struct sockaddr_in target;
    const char *target_text;
    char *request;                  /* the one request every connection sends */
    size_t request_len;
    unsigned hold, ramp, burst, rate, fresh;
    double settle_s, timeout_s;
    struct conn *all;
    unsigned source;                /* next source address */
    /* phase bookkeeping */
    unsigned started, done;
    unsigned ends[END_COUNT];
    unsigned closed_after_refusal;  /* refused, then the server closed */
    unsigned statuses[600];         /* other_status answers by status code */
    unsigned refused_left_open;     /* burst: refused, yet still open after the pause */
    unsigned open_now;
    uint64_t phase_start;
    int connect_errors[8];
    const char *phase;
    uv_timer_t tick, deadline;
    struct conn **held;
    unsigned nheld;
    unsigned probe_next;
    bool mid_started;               /* a fresh request half-way through the burst */
    enum end mid_burst;
    int mid_burst_status;
} G;

enum step { S_HOLD, S_SETTLE1, S_BURST, S_SETTLE2, S_PROBE, S_FRESH, S_DONE };
static enum step step = S_HOLD;

static void next_phase(void);
static void conn_send(struct conn *c);

static uint64_t now_ms(void)
{
    return uv_now(G.loop);
}

static void on_closed(uv_handle_t *h)
{
    struct conn *c = h->data;
    free(c->in);
    c->in = NULL;
    /* The struct stays on G.all (freed at exit): late callbacks never see
     * freed memory, and the counts stay simple. */
}

static void conn_close(struct conn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    if (c->open)
        G.open_now--;
    c->open = false;
    uv_close((uv_handle_t *)&c->tcp, on_closed);
}

/* One exchange ended: count it and let the phase go on. */
static void finish(struct conn *c, enum end e)
{
    if (!c->waiting && e != END_CONNECT_FAILED)
        return;
    c->waiting = false;
    c->last = e;
    if (c->role == ROLE_FRESH && step == S_BURST) { /* the mid-burst probe, counted apart */
        G.mid_burst = e;
        G.mid_burst_status = c->status;
        conn_close(c);
        return;
    }
    G.ends[e]++;
    G.done++;
    if (e != END_SERVED && e != END_REFUSED)
        conn_close(c);
    next_phase();
}

/* Parses what came in; true when a whole answer is there. */
static bool answer_complete(struct conn *c)
{
    char *end = c->in_len >= 4 ? memmem(c->in, c->in_len, "\r\n\r\n", 4) : NULL;
    if (!end)
        return false;
    size_t head = (size_t)(end - c->in) + 4;
    if (c->in_len < 12 || memcmp(c->in, "HTTP/1.", 7) != 0)
        return true; /* not HTTP: status stays 0 */
    c->status = (int)strtol(c->in + 9, NULL, 10);
    size_t clen = 0;
    bool chunked = false;
    for (char *p = c->in; p < end;) {
        char *eol = memmem(p, (size_t)(end - p) + 2, "\r\n", 2);
        if (!eol)
            break;
        if ((size_t)(eol - p) > 15 && strncasecmp(p, "Content-Length:", 15) == 0)
            clen = (size_t)strtoul(p + 15, NULL, 10);
        if ((size_t)(eol - p) > 18 && strncasecmp(p, "Transfer-Encoding:", 18) == 0)
            chunked = true;
        p = eol + 2;
    }
    if (chunked)
        return c->in_len >= head + 5 && memcmp(c->in + c->in_len - 5, "0\r\n\r\n", 5) == 0;
    return c->in_len >= head + clen;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    static char buf[65536];
    PG_UNUSED(h);
    PG_UNUSED(suggested);
    *b = uv_buf_init(buf, sizeof(buf));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    struct conn *c = s->data;
    if (n < 0) {
        c->closed_by_peer = true;
        if (c->waiting) {
            finish(c, n == UV_EOF ? END_CLOSED : END_RESET);
        } else {
            if (c->last == END_REFUSED)
                G.closed_after_refusal++;
            conn_close(c);
        }
        return;
    }
    if (n == 0 || !c->waiting)
        return;
    if (c->in_len + (size_t)n > ANSWER_MAX) {
        finish(c, END_OTHER_STATUS);
        return;
    }
    char *p = realloc(c->in, c->in_len + (size_t)n);
    if (!p) {
        finish(c, END_CLOSED);
        return;
    }
    c->in = p;
    memcpy(c->in + c->in_len, b->base, (size_t)n);
    c->in_len += (size_t)n;
    if (!answer_complete(c))
        return;
    enum end e = END_OTHER_STATUS;
    if (c->status >= 200 && c->status < 300)
        e = END_SERVED;
    else if (c->status == 503 && memmem(c->in, c->in_len, "payguard_unavailable", 20))
        e = END_REFUSED;
    else if (c->status > 0 && c->status < 600)
        G.statuses[c->status]++;
    free(c->in);
    c->in = NULL;
    c->in_len = 0;
    finish(c, e);
}

static void on_write(uv_write_t *w, int status)
{
    struct conn *c = w->data;
    /* A refusal may come back before our request leaves: the answer decides. */
    PG_UNUSED(c);
    PG_UNUSED(status);
}

static void conn_send(struct conn *c)
{
    c->waiting = true;
    c->status = 0;
    c->sent_at = now_ms();
    uv_buf_t b = uv_buf_init(G.request, (unsigned)G.request_len);
    c->wreq.data = c;
    if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_write) != 0)
        finish(c, END_RESET);
}

static void on_connect(uv_connect_t *req, int status)
{
    struct conn *c = req->data;
    if (status < 0) {
        unsigned i = 0;
        if (status == UV_ECONNREFUSED) i = 1;
        else if (status == UV_ETIMEDOUT) i = 2;
        else if (status == UV_EADDRNOTAVAIL) i = 3;
        else if (status == UV_EMFILE) i = 4;
        else if (status == UV_ECONNRESET) i = 5;
        else if (status == UV_ECANCELED) i = 6;
        else i = 7;
        G.connect_errors[i]++;
        c->waiting = true;
        finish(c, END_CONNECT_FAILED);
        return;
    }
    c->connected = true;
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) {
        c->waiting = true;
        finish(c, END_RESET);
        return;
    }
    conn_send(c);
}

static struct conn *conn_open(enum role role)
{
    struct conn *c = calloc(1, sizeof(*c));
    if (!c) {
        fprintf(stderr, "connstorm: out of memory\n");
        exit(1);
    }
    c->role = role;
    c->waiting = true; /* from the connect on: a timeout covers it too */
    c->next_all = G.all;
    G.all = c;
    c->tcp.data = c;
    c->creq.data = c;
    if (uv_tcp_init(G.loop, &c->tcp) != 0) {
        c->waiting = true;
        G.connect_errors[7]++;
        c->closing = true;
        finish(c, END_CONNECT_FAILED);
        return c;
    }
    c->open = true;
    G.open_now++;
    struct sockaddr_in src;
    char ip[16];
    snprintf(ip, sizeof(ip), "127.0.0.%u", 2 + G.source++ % SOURCES);
    uv_ip4_addr(ip, 0, &src);
    (void)uv_tcp_bind(&c->tcp, (const struct sockaddr *)&src, 0);
    (void)uv_tcp_nodelay(&c->tcp, 1);
    int rc = uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&G.target, on_connect);
    if (rc != 0) {
        G.connect_errors[rc == UV_EMFILE ? 4 : rc == UV_EADDRNOTAVAIL ? 3 : 7]++;
        c->waiting = true;
        finish(c, END_CONNECT_FAILED);
    }
    return c;
}

/* --- phases -------------------------------------------------------------- */

static unsigned burst_started;
static uint64_t burst_first, burst_last_connect;

static void reset_counts(const char *phase)
{
    G.phase = phase;
    G.started = G.done = 0;
    memset(G.ends, 0, sizeof(G.ends));
    memset(G.connect_errors, 0, sizeof(G.connect_errors));
    G.closed_after_refusal = 0;
    memset(G.statuses, 0, sizeof(G.statuses));
    G.phase_start = now_ms();
}

static void print_phase(const char *extra)
{
    double secs = (double)(now_ms() - G.phase_start) / 1000.0;
    printf("{\"event\":\"%s\",\"seconds\":%.3f,\"started\":%u,\"answered\":%u", G.phase, secs,
           G.started, G.done);
    for (int e = END_SERVED; e < END_COUNT; e++)
        printf(",\"%s\":%u", END_NAMES[e], G.ends[e]);
    static const char *const cerr[8] = { "-", "refused", "timed_out", "no_local_address",
                                         "out_of_fds", "reset", "cancelled", "other" };
    printf(",\"connect_errors\":{");
    bool first = true;
    for (int i = 1; i < 8; i++) {
        if (!G.connect_errors[i])
            continue;
        printf("%s\"%s\":%d", first ? "" : ",", cerr[i], G.connect_errors[i]);
        first = false;
    }
    printf("},\"other_statuses\":{");
    first = true;
    for (int i = 0; i < 600; i++) {
        if (!G.statuses[i])
            continue;
        printf("%s\"%d\":%u", first ? "" : ",", i, G.statuses[i]);
        first = false;
    }
    printf("},\"open\":%u%s%s}\n", G.open_now, extra ? "," : "", extra ? extra : "");
    fflush(stdout);
}

static void on_settled(uv_timer_t *t)
{
    PG_UNUSED(t);
    step++;
    next_phase();
}

static void settle_then_next(void)
{
    uv_timer_start(&G.tick, on_settled, (uint64_t)(G.settle_s * 1000.0), 0);
}

/* --hold: keep at most --ramp connections being set up. */
static void hold_more(void)
{
    while (G.started < G.hold && G.started - G.done < G.ramp) {
        G.started++;
        conn_open(ROLE_HELD);
    }
}

static void burst_tick(uv_timer_t *t)
{
    PG_UNUSED(t);
    uint64_t elapsed = now_ms() - burst_first;
    uint64_t want = (uint64_t)G.rate * elapsed / 1000u + 1u;
    if (want > G.burst)
        want = G.burst;
    while (burst_started < want) {
        burst_started++;
        G.started++;
        conn_open(ROLE_BURST);
        burst_last_connect = now_ms();
    }
    if (!G.mid_started && burst_started >= G.burst / 2) {
        /* A fresh request right in the middle of the burst. */
        G.mid_started = true;
        conn_open(ROLE_FRESH);
    }
    if (burst_started == G.burst)
        uv_timer_stop(&G.tick);
}

static void probe_more(void)
{
    while (G.probe_next < G.nheld && G.started - G.done < G.ramp) {
        struct conn *c = G.held[G.probe_next++];
        G.started++;
        if (!c->open || c->closing) {
            c->waiting = true;
            finish(c, END_CLOSED);
            continue;
        }
        conn_send(c);
    }
}

static void on_deadline(uv_timer_t *t)
{
    PG_UNUSED(t);
    /* Whatever is still waiting timed out. */
    for (struct conn *c = G.all; c; c = c->next_all)
        if (c->waiting)
            finish(c, END_TIMEOUT);
}

static void arm_deadline(void)
{
    uv_timer_start(&G.deadline, on_deadline, (uint64_t)(G.timeout_s * 1000.0), 0);
}

static void next_phase(void)
{
    switch (step) {
    case S_HOLD:
        if (!G.phase) {
            reset_counts("held");
            arm_deadline();
        }
        hold_more();
        if (G.done < G.hold)
            return;
        uv_timer_stop(&G.deadline);
        G.held = calloc(G.hold ? G.hold : 1, sizeof(*G.held));
        for (struct conn *c = G.all; c; c = c->next_all)
            if (c->role == ROLE_HELD && c->open && c->last == END_SERVED)
                G.held[G.nheld++] = c;
        print_phase(NULL);
        step = S_SETTLE1;
        settle_then_next();
        return;
    case S_SETTLE1:
    case S_SETTLE2:
        return; /* the settle timer moves on */
    case S_BURST:
        if (!G.phase || strcmp(G.phase, "burst") != 0) {
            reset_counts("burst");
            burst_first = now_ms();
            if (G.burst == 0) {
                print_phase(NULL);
                step = S_SETTLE2;
                settle_then_next();
                return;
            }
            arm_deadline();
            uv_timer_start(&G.tick, burst_tick, 0, 1);
            return;
        }
        if (G.done < G.burst || (G.mid_started && G.mid_burst == END_NONE))
            return;
        uv_timer_stop(&G.deadline);
        {
            char extra[256];
            double span = (double)(burst_last_connect - burst_first) / 1000.0;
            snprintf(extra, sizeof(extra),
                     "\"rate_wanted\":%u,\"rate_achieved\":%.0f,\"closed_after_refusal\":%u,"
                     "\"mid_burst_fresh\":\"%s\",\"mid_burst_status\":%d",
                     G.rate, span > 0 ? (double)G.burst / span : (double)G.burst,
                     G.closed_after_refusal, END_NAMES[G.mid_burst], G.mid_burst_status);
            print_phase(extra);
        }
        step = S_SETTLE2;
        settle_then_next();
        return;
    case S_PROBE:
        if (strcmp(G.phase, "probe_held") != 0) {
            /* Burst connections go first: the held ones stay. A refused one
             * payguard has not closed after the pause counts against it. */
            G.refused_left_open = 0;
            for (struct conn *c = G.all; c; c = c->next_all) {
                if (c->role == ROLE_HELD)
                    continue;
                if (c->last == END_REFUSED && c->open && !c->closed_by_peer)
                    G.refused_left_open++;
                conn_close(c);
            }
            reset_counts("probe_held");
            arm_deadline();
        }
        probe_more();
        if (G.done < G.nheld)
            return;
        uv_timer_stop(&G.deadline);
        {
            char extra[64];
            snprintf(extra, sizeof(extra), "\"refused_left_open\":%u", G.refused_left_open);
            print_phase(extra);
        }
        step = S_FRESH;
        reset_counts("fresh");
        arm_deadline();
        /* fall through */
    case S_FRESH:
        if (G.done < G.fresh) {
            if (G.started == G.done) {
                G.started++;
                conn_open(ROLE_FRESH);
            }
            return;
        }
        uv_timer_stop(&G.deadline);
        print_phase(NULL);
        step = S_DONE;
        for (struct conn *c = G.all; c; c = c->next_all)
            conn_close(c);
        uv_close((uv_handle_t *)&G.tick, NULL);
        uv_close((uv_handle_t *)&G.deadline, NULL);
        return;
    case S_DONE:
        return;
    }
}

/* --- command line -------------------------------------------------------- */

static const char usage[] =
    "Usage: connstorm [options] HOST:PORT\n"
    "\n"
    "Holds N answered keep-alive connections to an HTTP server, then opens a burst\n"
    "of M new ones at R per second, then asks again on every held connection and\n"
    "on F fresh ones, one at a time. Every connection sends the same request.\n"
    "Prints one JSON line per phase (held, burst, probe_held, fresh) with how\n"
    "each connection ended: served (2xx), refused_503 (payguard_unavailable),\n"
    "other_status, reset_before_answer, closed_before_answer, timed_out,\n"
    "connect_failed.\n"
    "\n"
    "Options:\n"
    "  --hold N        connections to open and hold (default 1000)\n"
    "  --ramp K        at most K being set up or asked at once (default 500)\n"
    "  --burst M       new connections in the burst (default 0)\n"
    "  --rate R        burst connections per second (default 5000)\n"
    "  --fresh F       fresh connections asked at the end (default 10)\n"
    "  --settle SEC    pause between phases, for measuring (default 1)\n"
    "  --timeout SEC   per phase (default 30)\n"
    "  -m METHOD       request method (default GET)\n"
    "  -p PATH         request target (default /)\n"
    "  -H 'N: v'       extra header, repeatable\n"
    "  -h, --help      this text\n"
    "\n"
    "HOST is a numeric IPv4 address. Exit status: 0 when every phase ran (the\n"
    "caller judges the figures), 2 on usage errors.\n";

static int parse_uint(const char *s, unsigned *out)
{
    char *end = NULL;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || !end || *end || v > 1000000u)
        return -1;
    *out = (unsigned)v;
    return 0;
}

static int parse_secs(const char *s, double *out)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || !end || *end || !(v >= 0.0) || v > 3600.0)
        return -1;
    *out = v;
    return 0;
}

/* Raises the open-file limit to what hold + burst need, if the hard limit
 * allows; 0 or -1 with a message. */
static int raise_nofile(unsigned need)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 0;
    if (rl.rlim_cur >= need)
        return 0;
    rl.rlim_cur = rl.rlim_max < need ? rl.rlim_max : need;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur < need) {
        fprintf(stderr, "connstorm: need %u open files, the limit is %llu (raise ulimit -n)\n",
                need, (unsigned long long)rl.rlim_cur);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    enum { O_HOLD = 256, O_RAMP, O_BURST, O_RATE, O_FRESH, O_SETTLE, O_TIMEOUT };
    static const struct option longs[] = {
        { "hold", required_argument, NULL, O_HOLD },
        { "ramp", required_argument, NULL, O_RAMP },
        { "burst", required_argument, NULL, O_BURST },
        { "rate", required_argument, NULL, O_RATE },
        { "fresh", required_argument, NULL, O_FRESH },
        { "settle", required_argument, NULL, O_SETTLE },
        { "timeout", required_argument, NULL, O_TIMEOUT },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *method = "GET", *path = "/";
    char headers[4096] = "";
    size_t hlen = 0;
    G.hold = 1000;
    G.ramp = 500;
    G.rate = 5000;
    G.fresh = 10;
    G.settle_s = 1.0;
    G.timeout_s = 30.0;
    int opt;
    while ((opt = getopt_long(argc, argv, "m:p:H:h", longs, NULL)) != -1) {
        int bad = 0;
        switch (opt) {
        case O_HOLD: bad = parse_uint(optarg, &G.hold); break;
        case O_RAMP: bad = parse_uint(optarg, &G.ramp) || G.ramp == 0; break;
        case O_BURST: bad = parse_uint(optarg, &G.burst); break;
        case O_RATE: bad = parse_uint(optarg, &G.rate) || G.rate == 0; break;
        case O_FRESH: bad = parse_uint(optarg, &G.fresh); break;
        case O_SETTLE: bad = parse_secs(optarg, &G.settle_s); break;
        case O_TIMEOUT: bad = parse_secs(optarg, &G.timeout_s); break;
        case 'm': method = optarg; break;
        case 'p': path = optarg; break;
        case 'H': {
            int n = snprintf(headers + hlen, sizeof(headers) - hlen, "%s\r\n", optarg);
            bad = n < 0 || (size_t)n >= sizeof(headers) - hlen;
            if (!bad)
                hlen += (size_t)n;
            break;
        }
        case 'h': fputs(usage, stdout); return 0;
        default: fputs(usage, stderr); return 2;
        }
        if (bad) {
            fprintf(stderr, "connstorm: bad value for an option: %s\n", optarg ? optarg : "");
            return 2;
        }
    }
    if (optind != argc - 1) {
        fputs(usage, stderr);
        return 2;
    }
    G.target_text = argv[optind];
    char host[64];
    const char *colon = strrchr(G.target_text, ':');
    size_t hl = colon ? (size_t)(colon - G.target_text) : 0;
    if (!colon || hl == 0 || hl >= sizeof(host)) {
        fprintf(stderr, "connstorm: want HOST:PORT, got %s\n", G.target_text);
        return 2;
    }
    memcpy(host, G.target_text, hl);
    host[hl] = '\0';
    char *pend = NULL;
    long port = strtol(colon + 1, &pend, 10);
    if (!pend || *pend || port <= 0 || port > 65535 ||
        uv_ip4_addr(host, (int)port, &G.target) != 0) {
        fprintf(stderr, "connstorm: bad address %s\n", G.target_text);
        return 2;
    }
    size_t cap = strlen(method) + strlen(path) + hlen + strlen(G.target_text) + 64;
    G.request = malloc(cap);
    if (!G.request)
        return 1;
    int n = snprintf(G.request, cap, "%s %s HTTP/1.1\r\nHost: %s\r\n%s\r\n", method, path,
                     G.target_text, headers);
    if (n < 0 || (size_t)n >= cap)
        return 1;
    G.request_len = (size_t)n;
    if (raise_nofile(G.hold + G.burst + G.fresh + 64) != 0)
        return 1;
    signal(SIGPIPE, SIG_IGN);

    G.loop = uv_default_loop();
    uv_timer_init(G.loop, &G.tick);
    uv_timer_init(G.loop, &G.deadline);
    next_phase();
    uv_run(G.loop, UV_RUN_DEFAULT);
    for (struct conn *c = G.all, *next; c; c = next) {
        next = c->next_all;
        free(c->in);
        free(c);
    }
    free(G.held);
    free(G.request);
    uv_loop_close(G.loop);
    return 0;
}
