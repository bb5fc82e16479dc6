/* The notifier thread: fans the ledger's outbox out to the configured
 * endpoints, then delivers what is due, one attempt at a time, with
 * blocking sockets bounded by poll: resolve the host, check every address
 * with the URL guard, connect to a checked address (never resolving again),
 * TLS with SNI and host name verification, POST the signed event, read the
 * status line. 2xx delivers; 410 disables the endpoint for good; anything
 * else (3xx included: redirects are never followed) is retried later with
 * backoff and jitter until the event is max_age old. Each attempt is
 * recorded in the ledger, which audits it. The libuv loop is never
 * involved; the loop thread only swaps in a new config (pg_notify_update). */
#include "common/pg.h"
#include "notify/notify.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <netdb.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define POLL_EVERY_MS 250          /* outbox and due deliveries looked at this often when idle */
#define SWEEP_EVERY_S 15           /* approval expiry */
#define BATCH 16                   /* deliveries taken per pass */
#define REQ_HEAD_MAX 2048

/* --- the config as the thread sees it ----------------------------------------------- */

struct endpoint {
    char *url;
    char *path;                    /* path and query as they go on the request line */
    char *hostport;                /* Host header */
    struct pg_url_result u;        /* host, port, kind, and the literal address */
    char *secrets[PG_WEBHOOK_MAX_SECRETS];   /* current first, then previous ones */
    size_t nsecrets;
    char *ca_file;
    uint32_t max_age_s;
    struct pg_outbox_endpoint ob;  /* id, events, thresholds */
    SSL_CTX *ctx;                  /* built on first use, by the thread only */
    bool ctx_failed;
};

struct snapshot {
    int refs;                      /* under pg_notify.mu */
    struct endpoint *eps;
    size_t n;
    struct pg_urlguard_opts guard;
    uint32_t mask;                 /* union of the endpoints' events */
    uint16_t permille[PG_OUTBOX_MAX_THRESHOLDS];
    size_t npermille;
};

struct pg_notify {
    struct pg_ledger *l;
    FILE *log;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;
    bool save;                     /* the event set changed: persist it */
    struct snapshot *snap;
    _Atomic uint64_t attempts, deliveries, failures, given_up, disabled;
};

static void secret_free(char *s)
{
    if (s) {
        OPENSSL_cleanse(s, strlen(s));
        free(s);
    }
}

static void endpoint_free(struct endpoint *e)
{
    free(e->url);
    free(e->path);
    free(e->hostport);
    free(e->ca_file);
    for (size_t j = 0; j < e->nsecrets; j++)
        secret_free(e->secrets[j]);
    SSL_CTX_free(e->ctx);
    memset(e, 0, sizeof(*e));
}

static void snap_free(struct snapshot *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n; i++)
        endpoint_free(&s->eps[i]);
    free(s->eps);
    free(s);
}

static void add_permille(struct snapshot *s, uint16_t p)
{
    for (size_t i = 0; i < s->npermille; i++)
        if (s->permille[i] == p)
            return;
    if (s->npermille < PG_OUTBOX_MAX_THRESHOLDS)
        s->permille[s->npermille++] = p;
}

/* Path and query of an https URL the guard accepted ("/" when none). */
static const char *url_path(const char *url)
{
    const char *p = strstr(url, "://");
    p = p ? p + 3 : url;
    while (*p && *p != '/' && *p != '?')
        p++;
    return p;
}

static int endpoint_init(struct endpoint *e, const struct pg_webhook *w,
                         const struct pg_urlguard_opts *guard)
{
    if (!w->url || !w->secret || !pg_url_check(guard, pg_slice_cstr(w->url), &e->u))
        return PG_EPARSE;
    const char *p = url_path(w->url);
    char hp[PG_URL_HOST_MAX + 16];
    bool v6 = e->u.kind == PG_URL_HOST_IPV6;
    if (e->u.port == 443)
        snprintf(hp, sizeof(hp), v6 ? "[%s]" : "%s", e->u.host);
    else
        snprintf(hp, sizeof(hp), v6 ? "[%s]:%u" : "%s:%u", e->u.host, e->u.port);
    e->url = strdup(w->url);
    e->hostport = strdup(hp);
    if (*p == '/') {
        e->path = strdup(p);
    } else if ((e->path = malloc(strlen(p) + 2)) != NULL) {
        e->path[0] = '/';
        memcpy(e->path + 1, p, strlen(p) + 1);
    }
    e->ca_file = w->ca_file ? strdup(w->ca_file) : NULL;
    if (!e->url || !e->hostport || !e->path || (w->ca_file && !e->ca_file))
        return PG_ENOMEM;
    e->secrets[e->nsecrets] = strdup(w->secret);
    if (!e->secrets[e->nsecrets++])
        return PG_ENOMEM;
    for (size_t i = 0; i < w->nprevious && e->nsecrets < PG_WEBHOOK_MAX_SECRETS; i++) {
        if (!w->previous[i])
            continue;
        e->secrets[e->nsecrets] = strdup(w->previous[i]);
        if (!e->secrets[e->nsecrets++])
            return PG_ENOMEM;
    }
    /* A secret that is not whsec_ base64 of a long enough key signs nothing. */
    for (size_t i = 0; i < e->nsecrets; i++) {
        uint8_t key[PG_WEBHOOK_KEY_MAX];
        int kl = pg_webhook_secret_decode(e->secrets[i], key, sizeof(key));
        OPENSSL_cleanse(key, sizeof(key));
        if (kl < 0)
            return kl;
    }
    e->max_age_s = w->max_age_s ? w->max_age_s : PG_NOTIFY_MAX_AGE_S;
    if (pg_ledger_endpoint_id(w->url, e->ob.id) != 0)
        return PG_ECRYPTO;
    for (size_t i = 0; i < w->nevents; i++) {
        int ev = pg_event_from_name(w->events[i]);
        if (ev >= 0)
            e->ob.mask |= 1u << ev;
    }
    for (size_t i = 0; i < w->nthresholds && i < PG_OUTBOX_MAX_THRESHOLDS; i++)
        e->ob.permille[e->ob.npermille++] = w->thresholds[i];
    if (e->ob.npermille == 0) {
        static const uint16_t def[] = { 500, 800, 1000 };
        for (size_t i = 0; i < PG_ARRAY_LEN(def); i++)
            e->ob.permille[e->ob.npermille++] = def[i];
    }
    return 0;
}

static void log_line(FILE *log, const char *level, json_t *o)
{
    if (!o)
        return;
    char when[40];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
    size_t n = strlen(when);
    snprintf(when + n, sizeof(when) - n, ".%03ldZ", ts.tv_nsec / 1000000);
    json_object_set_new(o, "time", json_string(when));
    json_object_set_new(o, "level", json_string(level));
    json_object_set_new(o, "msg", json_string("webhook"));
    char *s = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII);
    if (s && log)
        fprintf(log, "%s\n", s); /* one call: lines of other threads never interleave */
    free(s);
    json_decref(o);
}

/* Builds the thread's view of cfg; endpoints whose URL or secrets cannot be
 * used are logged and left out. */
static struct snapshot *snap_build(const struct pg_config *cfg, FILE *log)
{
    struct snapshot *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->refs = 1;
    s->guard = cfg->url_guard;
    if (cfg->nwebhooks && !(s->eps = calloc(cfg->nwebhooks, sizeof(*s->eps)))) {
        free(s);
        return NULL;
    }
    for (size_t i = 0; i < cfg->nwebhooks; i++) {
        struct endpoint *e = &s->eps[s->n];
        int rc = endpoint_init(e, &cfg->webhooks[i], &s->guard);
        if (rc != 0) {
            json_t *o = json_object();
            json_object_set_new(o, "webhook", json_integer((json_int_t)i));
            json_object_set_new(o, "error", json_string(rc == PG_ENOMEM ? "out of memory"
                                                          : "unusable url or secret (a secret must be whsec_ and base64 of 24 to 64 bytes): skipped"));
            log_line(log, "error", o);
            endpoint_free(e); /* the slot is used by the next one */
            continue;
        }
        s->mask |= e->ob.mask;
        if (e->ob.mask & (1u << PG_EVENT_BUDGET_THRESHOLD))
            for (size_t j = 0; j < e->ob.npermille; j++)
                add_permille(s, e->ob.permille[j]);
        s->n++;
    }
    return s;
}

static struct snapshot *snap_get(struct pg_notify *n)
{
    pthread_mutex_lock(&n->mu);
    struct snapshot *s = n->snap;
    s->refs++;
    pthread_mutex_unlock(&n->mu);
    return s;
}

static void snap_put(struct pg_notify *n, struct snapshot *s)
{
    pthread_mutex_lock(&n->mu);
    bool last = --s->refs == 0;
    pthread_mutex_unlock(&n->mu);
    if (last)
        snap_free(s);
}

/* --- one attempt ------------------------------------------------------------------- */

uint32_t pg_notify_backoff(uint32_t attempt)
{
    static const uint32_t waits[] = { 5, 30, 120, 600, 3600, 21600 };
    if (attempt == 0)
        attempt = 1;
    return attempt > PG_ARRAY_LEN(waits) ? waits[PG_ARRAY_LEN(waits) - 1] : waits[attempt - 1];
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits for `events` on fd until the deadline: 0, or a reason. */
static const char *wait_fd(int fd, short events, int64_t deadline)
{
    for (;;) {
        int64_t left = deadline - now_ms();
        if (left <= 0)
            return "timeout";
        struct pollfd p = { fd, events, 0 };
        int r = poll(&p, 1, (int)left);
        if (r > 0)
            return NULL;
        if (r == 0)
            return "timeout";
        if (errno != EINTR)
            return "poll_failed";
    }
}

struct attempt {
    int status;                    /* HTTP status, 0 when none */
    const char *reason;            /* "http_503", "connect_failed", ... */
    char why[320];                 /* detail for the log */
};

/* Connects to one checked address, non-blocking, within the deadline. */
static int connect_to(const struct sockaddr *sa, socklen_t len, int64_t deadline)
{
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, sa, len) != 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    int err = 0;
    socklen_t el = sizeof(err);
    if (wait_fd(fd, POLLOUT, deadline) != NULL ||
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0 || err != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static SSL_CTX *ctx_for(struct endpoint *e, char *why, size_t cap)
{
    if (e->ctx || e->ctx_failed)
        return e->ctx;
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx)
        goto fail;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (SSL_CTX_set_default_verify_paths(ctx) != 1)
        goto fail;
    if (e->ca_file && SSL_CTX_load_verify_locations(ctx, e->ca_file, NULL) != 1)
        goto fail;
    e->ctx = ctx;
    return ctx;
fail:
    snprintf(why, cap, "cannot set up TLS%s%s", e->ca_file ? " with ca_file " : "",
             e->ca_file ? e->ca_file : "");
    ERR_clear_error();
    SSL_CTX_free(ctx);
    e->ctx_failed = true;
    return NULL;
}

/* Runs an SSL call that may want to read or write until it completes. */
static const char *ssl_io(SSL *ssl, int fd, int64_t deadline, int (*op)(SSL *, void *, int),
                          void *buf, int len, int *out)
{
    for (;;) {
        ERR_clear_error();
        int r = op(ssl, buf, len);
        if (r > 0) {
            *out = r;
            return NULL;
        }
        int e = SSL_get_error(ssl, r);
        const char *w = NULL;
        if (e == SSL_ERROR_WANT_READ)
            w = wait_fd(fd, POLLIN, deadline);
        else if (e == SSL_ERROR_WANT_WRITE)
            w = wait_fd(fd, POLLOUT, deadline);
        else
            return e == SSL_ERROR_ZERO_RETURN ? "closed" : "io_failed";
        if (w)
            return w;
    }
}

static int op_connect(SSL *ssl, void *b, int n)
{
    (void)b;
    (void)n;
    return SSL_connect(ssl);
}

static int op_write(SSL *ssl, void *b, int n)
{
    return SSL_write(ssl, b, n);
}

static int op_read(SSL *ssl, void *b, int n)
{
    return SSL_read(ssl, b, n);
}

/* Status code of "HTTP/1.x NNN ...", or 0. */
static int parse_status(const char *s, size_t n)
{
    if (n < 12 || memcmp(s, "HTTP/1.", 7) != 0 || (s[7] != '0' && s[7] != '1') || s[8] != ' ')
        return 0;
    int v = 0;
    for (int i = 9; i < 12; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        v = v * 10 + (s[i] - '0');
    }
    return v >= 100 && v <= 599 && (n == 12 || s[12] == ' ' || s[12] == '\r') ? v : 0;
}

/* Resolves and checks every address: the list to connect to, or NULL with
 * a->reason set. */
static struct addrinfo *resolve_checked(const struct endpoint *e, const struct pg_urlguard_opts *g,
                                        struct attempt *a)
{
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    char port[8];
    snprintf(port, sizeof(port), "%u", e->u.port);
    if (e->u.kind != PG_URL_HOST_NAME)
        hints.ai_flags |= AI_NUMERICHOST;
    if (getaddrinfo(e->u.host, port, &hints, &res) != 0 || !res) {
        a->reason = "resolve_failed";
        snprintf(a->why, sizeof(a->why), "%s does not resolve", e->u.host);
        return NULL;
    }
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        char why[192];
        if (!pg_urlguard_addr_ok(g, ai->ai_addr, why, sizeof(why))) {
            a->reason = "unsafe_address";
            snprintf(a->why, sizeof(a->why), "%.100s resolves to %.192s", e->u.host, why);
            freeaddrinfo(res);
            return NULL;
        }
    }
    return res;
}

static void attempt_once(struct endpoint *e, const struct pg_urlguard_opts *g,
                         const struct pg_delivery *d, int64_t now, struct attempt *a)
{
    int64_t deadline = now_ms() + PG_NOTIFY_TIMEOUT_MS;
    memset(a, 0, sizeof(*a));
    char sig[(PG_WEBHOOK_SIG_LEN + 1) * PG_WEBHOOK_MAX_SECRETS];
    if (pg_webhook_signature_header((const char *const *)e->secrets, e->nsecrets, d->msg_id, now,
                                    pg_slice_of(d->payload, d->payload_len), sig, sizeof(sig)) < 0) {
        a->reason = "sign_failed";
        return;
    }
    char head[REQ_HEAD_MAX];
    int hn = snprintf(head, sizeof(head),
                      "POST %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: payguard\r\n"
                      "Content-Type: application/json\r\nContent-Length: %zu\r\n"
                      "webhook-id: %s\r\nwebhook-timestamp: %" PRId64 "\r\n"
                      "webhook-signature: %s\r\nConnection: close\r\n\r\n",
                      e->path, e->hostport, d->payload_len, d->msg_id, now, sig);
    if (hn < 0 || (size_t)hn >= sizeof(head)) {
        a->reason = "url_too_long";
        return;
    }
    SSL_CTX *ctx = ctx_for(e, a->why, sizeof(a->why));
    if (!ctx) {
        a->reason = "tls_setup_failed";
        return;
    }
    struct addrinfo *res = resolve_checked(e, g, a);
    if (!res)
        return;
    int fd = -1;
    for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next)
        fd = connect_to(ai->ai_addr, ai->ai_addrlen, deadline);
    freeaddrinfo(res);
    if (fd < 0) {
        a->reason = now_ms() >= deadline ? "timeout" : "connect_failed";
        snprintf(a->why, sizeof(a->why), "cannot connect to %s", e->hostport);
        return;
    }
    SSL *ssl = SSL_new(ctx);
    const char *w = NULL;
    int got = 0;
    if (!ssl || SSL_set_fd(ssl, fd) != 1) {
        a->reason = "tls_setup_failed";
        goto out;
    }
    /* SNI for names; the certificate must name the host (or the address). */
    X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);
    X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    if (e->u.kind == PG_URL_HOST_NAME) {
        if (SSL_set_tlsext_host_name(ssl, e->u.host) != 1 || SSL_set1_host(ssl, e->u.host) != 1) {
            a->reason = "tls_setup_failed";
            goto out;
        }
    } else if (X509_VERIFY_PARAM_set1_ip_asc(vp, e->u.host) != 1) {
        a->reason = "tls_setup_failed";
        goto out;
    }
    if ((w = ssl_io(ssl, fd, deadline, op_connect, NULL, 0, &got)) != NULL) {
        long vr = SSL_get_verify_result(ssl);
        a->reason = strcmp(w, "timeout") == 0 ? "timeout" : "tls_failed";
        snprintf(a->why, sizeof(a->why), "TLS with %s: %s", e->hostport,
                 vr != X509_V_OK ? X509_verify_cert_error_string(vr) : w);
        goto out;
    }
    struct {
        const char *p;
        size_t n;
    } parts[2] = { { head, (size_t)hn }, { d->payload, d->payload_len } };
    for (int i = 0; i < 2; i++) {
        size_t off = 0;
        while (off < parts[i].n) {
            size_t chunk = parts[i].n - off > 16384 ? 16384 : parts[i].n - off;
            if ((w = ssl_io(ssl, fd, deadline, op_write, (void *)(uintptr_t)(parts[i].p + off),
                            (int)chunk, &got)) != NULL) {
                a->reason = strcmp(w, "timeout") == 0 ? "timeout" : "send_failed";
                goto out;
            }
            off += (size_t)got;
        }
    }
    /* The status line is all that matters; the rest is not read. */
    char line[512];
    size_t ln = 0;
    char *nl = NULL;
    while (!nl && ln < sizeof(line) - 1) {
        if ((w = ssl_io(ssl, fd, deadline, op_read, line + ln, (int)(sizeof(line) - 1 - ln),
                        &got)) != NULL)
            break;
        nl = memchr(line + ln, '\n', (size_t)got); /* only what just arrived */
        ln += (size_t)got;
    }
    a->status = nl ? parse_status(line, (size_t)(nl - line)) : 0;
    if (!a->status)
        a->reason = w && strcmp(w, "timeout") == 0 ? "timeout" : "bad_response";
out:
    if (ssl)
        SSL_free(ssl);
    close(fd);
}

/* --- the thread ---------------------------------------------------------------------- */

static struct endpoint *find_endpoint(struct snapshot *s, const uint8_t *id)
{
    for (size_t i = 0; i < s->n; i++)
        if (memcmp(s->eps[i].ob.id, id, PG_ENDPOINT_ID_LEN) == 0)
            return &s->eps[i];
    return NULL;
}

static int64_t jittered(int64_t now, uint32_t wait_s)
{
    uint32_t r = 0;
    if (pg_random(&r, sizeof(r)) != 0)
        r = 200;
    /* 80% to 120% of the wait, in milliseconds, rounded up to a second */
    uint64_t ms = (uint64_t)wait_s * (800 + r % 401);
    return now + (int64_t)((ms + 999) / 1000);
}

static void deliver_one(struct pg_notify *n, struct snapshot *s, struct pg_delivery *d)
{
    int64_t now = (int64_t)time(NULL);
    struct endpoint *e = find_endpoint(s, d->endpoint);
    enum pg_delivery_result r;
    struct attempt a;
    memset(&a, 0, sizeof(a));
    int64_t next = 0;
    char reason[32];
    char ep[2 * PG_ENDPOINT_ID_LEN + 4] = "ep_";
    if (pg_hex_encode(d->endpoint, PG_ENDPOINT_ID_LEN, ep + 3, sizeof(ep) - 3) < 0)
        ep[3] = '\0';
    int dis = e ? pg_ledger_endpoint_disabled(n->l, d->endpoint, NULL) : 0;
    if (dis < 0)
        return; /* cannot read the ledger: try again on the next pass */
    if (!e || dis) {
        r = PG_DELIVERY_DROP;
        snprintf(reason, sizeof(reason), "%s", e ? "endpoint_disabled" : "endpoint_removed");
    } else if (now - d->created_at > (int64_t)e->max_age_s) {
        r = PG_DELIVERY_GIVE_UP;
        snprintf(reason, sizeof(reason), "max_age");
    } else {
        atomic_fetch_add(&n->attempts, 1);
        attempt_once(e, &s->guard, d, now, &a);
        if (a.status)
            snprintf(reason, sizeof(reason), "http_%d", a.status);
        else
            snprintf(reason, sizeof(reason), "%s", a.reason ? a.reason : "failed");
        if (a.status >= 200 && a.status <= 299) {
            r = PG_DELIVERY_OK;
        } else if (a.status == 410) {
            r = PG_DELIVERY_DISABLE;
        } else {
            next = jittered(now, pg_notify_backoff(d->attempts + 1));
            r = next - d->created_at > (int64_t)e->max_age_s ? PG_DELIVERY_GIVE_UP
                                                              : PG_DELIVERY_RETRY;
        }
    }
    int rc = pg_ledger_delivery_done(n->l, d, r, next, reason, (int64_t)time(NULL));
    if (rc != 0)
        return; /* not recorded: the delivery stays due and is tried again */
    switch (r) {
    case PG_DELIVERY_OK: atomic_fetch_add(&n->deliveries, 1); break;
    case PG_DELIVERY_RETRY: atomic_fetch_add(&n->failures, 1); break;
    case PG_DELIVERY_GIVE_UP:
        if (a.reason || a.status)
            atomic_fetch_add(&n->failures, 1);
        atomic_fetch_add(&n->given_up, 1);
        break;
    case PG_DELIVERY_DISABLE:
        atomic_fetch_add(&n->failures, 1);
        atomic_fetch_add(&n->disabled, 1);
        break;
    case PG_DELIVERY_DROP: break;
    }
    static const char *const outcome[] = { "delivered", "retry", "given_up", "disabled", "dropped" };
    json_t *o = json_object();
    if (o) {
        json_object_set_new(o, "event", json_string(d->type));
        json_object_set_new(o, "webhook_id", json_string(d->msg_id));
        json_object_set_new(o, "endpoint", json_string(ep));
        json_object_set_new(o, "org", json_string(d->org));
        json_object_set_new(o, "attempt", json_integer(d->attempts + (r == PG_DELIVERY_DROP ? 0 : 1)));
        json_object_set_new(o, "outcome", json_string(outcome[r]));
        json_object_set_new(o, "reason", json_string(reason));
        if (a.status)
            json_object_set_new(o, "status", json_integer(a.status));
        if (a.why[0])
            json_object_set_new(o, "error", json_string(a.why));
        if (r == PG_DELIVERY_RETRY)
            json_object_set_new(o, "next_attempt_in_s", json_integer(next - now));
    }
    log_line(n->log, r == PG_DELIVERY_OK ? "info" : "warn", o);
}

static void *notify_main(void *arg)
{
    struct pg_notify *n = arg;
    pthread_setname_np(pthread_self(), "pg-notify"); /* for top -H and perf */
    int64_t last_sweep = 0;
    pthread_mutex_lock(&n->mu);
    while (!n->stop) {
        bool save = n->save;
        n->save = false;
        pthread_mutex_unlock(&n->mu);
        struct snapshot *s = snap_get(n);
        if (save && pg_ledger_outbox_save(n->l) != 0) {
            pthread_mutex_lock(&n->mu);
            n->save = true; /* try again on the next pass */
            pthread_mutex_unlock(&n->mu);
        }
        size_t got = 0;
        if (s->n > 0) {
            struct pg_outbox_endpoint eps[64];
            size_t ne = 0;
            for (size_t i = 0; i < s->n && ne < PG_ARRAY_LEN(eps); i++)
                eps[ne++] = s->eps[i].ob;
            size_t moved = 0;
            if (pg_ledger_outbox_fanout(n->l, eps, ne, 256, &moved) != 0)
                moved = 0; /* tried again on the next pass */
            int64_t now = (int64_t)time(NULL);
            if (now - last_sweep >= SWEEP_EVERY_S &&
                pg_ledger_outbox_expire_sweep(n->l, now, NULL) == 0)
                last_sweep = now;
            struct pg_delivery due[BATCH];
            int64_t next_due;
            if (pg_ledger_deliveries_due(n->l, now, due, BATCH, &got, &next_due) != 0)
                got = 0;
            for (size_t i = 0; i < got; i++) {
                pthread_mutex_lock(&n->mu);
                bool stop = n->stop;
                pthread_mutex_unlock(&n->mu);
                if (!stop)
                    deliver_one(n, s, &due[i]);
                pg_delivery_free(&due[i]);
            }
        }
        snap_put(n, s);
        pthread_mutex_lock(&n->mu);
        if (got == 0 && !n->stop && !n->save) {
            struct timespec until = pg_deadline_after(CLOCK_REALTIME, POLL_EVERY_MS * 1000000L);
            pthread_cond_timedwait(&n->cv, &n->mu, &until);
        }
    }
    pthread_mutex_unlock(&n->mu);
    return NULL;
}

/* --- the loop side ---------------------------------------------------------------------- */

static void apply_events(struct pg_notify *n, const struct snapshot *s)
{
    pg_ledger_outbox_set(n->l, s->mask, s->permille, s->npermille);
}

int pg_notify_start(struct pg_ledger *l, const struct pg_config *cfg, FILE *log,
                    struct pg_notify **out)
{
    *out = NULL;
    struct pg_notify *n = calloc(1, sizeof(*n));
    if (!n)
        return PG_ENOMEM;
    n->l = l;
    n->log = log;
    n->snap = snap_build(cfg, log);
    if (!n->snap) {
        free(n);
        return PG_ENOMEM;
    }
    pthread_mutex_init(&n->mu, NULL);
    pthread_cond_init(&n->cv, NULL);
    apply_events(n, n->snap);
    n->save = true;
    int rc = pthread_create(&n->thread, NULL, notify_main, n);
    if (rc != 0) {
        snap_free(n->snap);
        pthread_cond_destroy(&n->cv);
        pthread_mutex_destroy(&n->mu);
        free(n);
        return -rc;
    }
    *out = n;
    return 0;
}

void pg_notify_update(struct pg_notify *n, const struct pg_config *cfg)
{
    if (!n)
        return;
    struct snapshot *s = snap_build(cfg, n->log);
    if (!s)
        return; /* out of memory: keep the previous endpoints */
    apply_events(n, s);
    pthread_mutex_lock(&n->mu);
    struct snapshot *old = n->snap;
    n->snap = s;
    n->save = true;
    bool last = --old->refs == 0;
    pthread_cond_signal(&n->cv);
    pthread_mutex_unlock(&n->mu);
    if (last)
        snap_free(old);
}

void pg_notify_stop(struct pg_notify *n)
{
    if (!n)
        return;
    pthread_mutex_lock(&n->mu);
    n->stop = true;
    pthread_cond_signal(&n->cv);
    pthread_mutex_unlock(&n->mu);
    pthread_join(n->thread, NULL);
    snap_free(n->snap);
    pthread_cond_destroy(&n->cv);
    pthread_mutex_destroy(&n->mu);
    free(n);
}

void pg_notify_stats(const struct pg_notify *n, struct pg_notify_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (!n)
        return;
    struct pg_notify *m = (struct pg_notify *)(uintptr_t)n;
    out->attempts = atomic_load(&m->attempts);
    out->deliveries = atomic_load(&m->deliveries);
    out->failures = atomic_load(&m->failures);
    out->given_up = atomic_load(&m->given_up);
    out->disabled = atomic_load(&m->disabled);
}
