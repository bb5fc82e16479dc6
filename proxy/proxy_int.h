/* Internals shared by the proxy's files: the server, client connections,
 * the per-config runtime (rails with their upstream pools) and the upstream
 * connections. Everything here runs on the loop thread. */
#ifndef PG_PROXY_INT_H
#define PG_PROXY_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>
#include <openssl/ssl.h>

#include "auth/auth.h"
#include "ledger/ledger.h"
#include "common/buf.h"
#include "config/config.h"
#include "policy/policy.h"
#include "proxy/http.h"

struct server;
struct conn;
struct upconn;

/* Intrusive doubly linked list (circular, with a head node). */
struct link {
    struct link *prev, *next;
};

static inline void link_init(struct link *l) { l->prev = l->next = l; }
static inline bool link_empty(const struct link *l) { return l->next == l; }
static inline void link_remove(struct link *l)
{
    l->prev->next = l->next;
    l->next->prev = l->prev;
    link_init(l);
}
static inline void link_push(struct link *head, struct link *l)
{
    l->next = head->next;
    l->prev = head;
    head->next->prev = l;
    head->next = l;
}
#define CONTAINER_OF(ptr, type, member) ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

/* One rail's upstream: its TLS context, resolved addresses and idle pool. */
struct pool {
    struct runtime *rt;
    const struct pg_rail *rail;
    SSL_CTX *ssl_ctx;              /* NULL for plain-HTTP upstreams */
    SSL_SESSION *session;          /* last session, for resumption */
    struct addrinfo *addrs;        /* cached resolution */
    uint64_t addrs_expiry_ms;
    struct link idle;              /* idle upconns, most recent first */
    uint32_t nidle;
};

/* Everything built from one config generation. Requests and upstream
 * connections hold a reference; a reload makes a new runtime and the old one
 * is freed when the last holder lets go. */
struct runtime {
    struct server *srv;
    struct pg_config *cfg;
    struct pool *pools;            /* one per cfg->rails[i] */
    struct pg_routes **routes;     /* one per cfg->rails[i] */
    struct pg_policy **policies;   /* one per cfg->agents[i] */
    struct pg_bucket *buckets;     /* request rate per agent; refilled anew on reload */
    uint32_t refs;
    bool retired;
};

enum conn_state {
    CONN_READING,                  /* waiting for (more of) a request */
    CONN_AUTH,                     /* bcrypt running in the thread pool */
    CONN_LEDGER,                   /* waiting for the ledger's writer */
    CONN_UPSTREAM,                 /* request sent, waiting for the rail */
    CONN_RESPONDING,               /* rail's answer streaming back */
    CONN_CLOSING
};

struct conn {
    uv_tcp_t tcp;
    uv_timer_t timer;              /* header, body and idle timeouts */
    struct server *srv;
    struct link link;              /* in srv->conns */
    bool admin;                    /* admin listener: no proxying */
    enum conn_state state;
    struct sockaddr_storage peer;
    struct pg_reqparser parser;
    struct pg_buf pending;         /* bytes read past the current request */
    struct pg_buf out;             /* response bytes not yet handed to libuv */
    SSL *ssl;                      /* agent TLS (listen.tls); NULL for plain */
    BIO *net_in, *net_out;         /* ciphertext from and to the socket */
    struct pg_buf tls_out;         /* ciphertext not yet handed to libuv */
    uint32_t writes_in_flight;
    size_t write_queue_bytes;
    bool close_after_write;
    bool read_stopped;
    bool auth_pending;             /* bcrypt or admin work holds a pointer to us */
    struct conn *auth_next;        /* next connection waiting on the same token check */
    bool ledger_pending;           /* a ledger request holds a pointer to us */
    bool url_pending;              /* a URL check holds a pointer to us */
    bool timer_closed;
    bool tcp_closed;
    /* the request in progress */
    struct verdict_ctx *vc;        /* intent and decision; NULL until classified */
    struct runtime *rt;
    const struct pg_agent *agent;
    const struct pg_rail *rail;
    struct upconn *up;
    uint64_t req_start_us;
    uint64_t up_start_us;
    uint64_t up_done_us;
    uint64_t ledger_start_us;      /* a ledger request was queued (metrics) */
    uint64_t bytes_in, bytes_out;
    int status;                    /* status sent to the agent */
    const char *error;             /* short reason for the log, static */
    bool sent_head;                /* response head already sent */
    bool resp_chunked;             /* re-chunking the rail's body */
    bool retried;                  /* one retry on a stale pooled connection */
};

/* What the policy made of the request in progress. Allocated per request:
 * the intent's scratch space is too large to keep per idle connection. */
struct verdict_ctx {
    struct pg_intent intent;
    struct pg_decision decision;
    char approval_id[PG_ID_MAX + 1];
    /* money requests: the ledger's view of this request */
    bool money;                    /* moves money: idempotency and ledger apply */
    bool in_ledger;                /* reserved and forwarded, not yet settled */
    bool sent_to_rail;             /* request bytes handed to the rail connection */
    uint64_t reservation;
    char rail_key[64];             /* Idempotency-Key the rail gets */
    char idem_key[PG_IDEM_KEY_MAX + 1];
    uint8_t fingerprint[PG_SHA256_LEN];
    struct pg_buf resp_head;       /* rail answer, buffered to settle before replying */
    struct pg_buf resp_body;
    int resp_status;
    bool rail_replayed;            /* the rail marked its answer Idempotent-Replayed */
    const char *error_type;        /* Stripe error type when not the verdict's default */
};

/* Counters for /metrics (metrics.c): plain integers in fixed arrays,
 * bumped on the loop thread, read there when /metrics renders. */
#define METRICS_SERIES 256             /* distinct rail/operation/decision/reason */
#define METRICS_BUCKETS 14             /* latency histogram bounds, plus +Inf */
struct metrics_series {
    char rail[32];
    char reason[48];
    uint8_t op;                        /* enum pg_op, or 0xff: not classified */
    uint8_t decision;                  /* enum pg_verdict, or 0xff: none */
    bool used;
    uint64_t n;
};
struct metrics_hist {
    uint64_t le[METRICS_BUCKETS];      /* counts per bucket (not cumulative) */
    uint64_t inf;
    uint64_t count, sum_us;
};
struct metrics {
    struct metrics_series series[METRICS_SERIES];
    uint64_t series_dropped;           /* requests whose labels found no slot */
    uint64_t rail_status[600];         /* rail answers by status code */
    struct metrics_hist decision, commit, upstream;
};

struct admin;

struct server {
    uv_loop_t *loop;
    uv_tcp_t agents;
    uv_tcp_t admin;
    uv_signal_t sigterm, sigint, sighup;
    uv_prepare_t log_flush;        /* writes the log once per loop iteration */
    uv_timer_t drain_timer;
    struct runtime *rt;            /* current config generation */
    struct pg_token_cache *tokens;
    struct pg_auth_limiter *limiter;
    struct link conns;
    uint32_t nconns;               /* agent connections open */
    uint32_t auth_inflight;        /* bcrypt checks queued in the thread pool */
    struct auth_work *auth_works;  /* those checks, for requests with the same token to share */
    struct pg_ledger *ledger;
    bool settle_before_answer;     /* ledger.settle_before_answer, read at start-up */
    struct pg_notify *notify;      /* webhook deliveries (notify/); pg_notify_stats for /metrics */
    SSL_CTX *agents_tls;           /* listen.tls, built at start-up */
    struct admin *admin_api;       /* the admin API's state (admin.c) */
    struct metrics metrics;
    bool draining;
    bool reloading;                /* a reload is being built in the thread pool */
    bool reload_again;             /* SIGHUP arrived meanwhile: load once more after */
    int exit_code;
    FILE *log;
    char *config_path;
};

/* server.c */
uint64_t now_us(void);
uint64_t now_ms_wall(void);
void runtime_release(struct runtime *rt);
void runtime_retain(struct runtime *rt);
void conn_send_error(struct conn *c, int status, const char *type, const char *code,
                     const char *message, uint32_t retry_after_s);
void conn_write(struct conn *c, const void *data, size_t len);
void conn_flush(struct conn *c);
void conn_request_done(struct conn *c);
void conn_abort(struct conn *c);
size_t conn_pending_write_bytes(const struct conn *c);

/* upstream.c */
int pool_init(struct pool *p, struct runtime *rt, const struct pg_rail *rail, char *err, size_t errlen);
void pool_close(struct pool *p);
/* Sends the agent's request (already parsed in c->parser) to c->rail. The
 * answer, or a rail-shaped error, reaches the agent through conn_write. */
void upstream_forward(struct conn *c);
/* The agent went away or the request is being torn down. */
void upstream_detach(struct conn *c);
/* The client drained its write queue: resume reading from the rail. */
void upstream_resume(struct conn *c);

/* server.c, shared with money.c */
void send_verdict(struct conn *c);
void fail_closed(struct conn *c, const char *why);
void conn_free_if_closed(struct conn *c);
void verdict_ctx_free(struct verdict_ctx *vc);

/* money.c: idempotency, reservations and settlement around the rail call */
/* Takes over a classified money request whose stateless verdict is ALLOW or
 * HOLD: checks the Idempotency-Key, asks the ledger, then forwards, replays
 * or answers. */
void money_begin(struct conn *c, const struct pg_org *org, int64_t now,
                 const struct pg_policy *policy);
/* Records a denial decided before the ledger (audit), then answers it. */
void money_record_denial(struct conn *c, const struct pg_org *org, int64_t now);
/* The rail's whole answer to a money request is buffered in c->vc. */
void money_rail_answered(struct conn *c);
/* A money request failed after it was reserved: settle it (void when it never
 * reached the rail, else keep it pending), then answer. True when it took over. */
bool money_fail(struct conn *c, int status, const char *type, const char *code,
                const char *message);
/* The agent went away mid-request: settle what was reserved. */
void money_abandon(struct conn *c);
/* Any request with an Idempotency-Key: the rail gets the agent's derived key.
 * 0, PG_EPARSE for a malformed key, or PG_ECRYPTO. */
int money_rail_key(struct conn *c);

/* urlcheck.c: URLs the rail would call back; `next` continues when all are
 * safe, else the request is denied (403 payguard_unsafe_url, audited). */
void urlcheck_start(struct conn *c, void (*next)(struct conn *c));

/* admin.c */
void admin_handle(struct conn *c);
/* Loads (or makes) the access-token key; before the loop serves. 0 or an
 * error with err filled. admin_free accepts a server without one. */
int admin_init(struct server *srv, char *err, size_t errlen);
void admin_free(struct server *srv);

/* metrics.c: one call each, on the loop thread */
void metrics_request_done(struct conn *c);     /* an agent request ended */
void metrics_rail_status(struct server *srv, int status);
void metrics_commit_done(struct conn *c);      /* the ledger answered c */
/* What /metrics needs from the ledger, read in the thread pool. */
struct metrics_ledger {
    uint64_t pending;                  /* pending and authorized reservations */
    size_t norgs;
    char (*orgs)[PG_ID_MAX + 1];
    uint64_t *heads;                   /* audit head seq per org */
    struct pg_ledger_stats stats;
    bool ok;
};
int metrics_ledger_read(struct pg_ledger *l, const struct pg_config *cfg,
                        struct metrics_ledger *out);
void metrics_ledger_free(struct metrics_ledger *lv);
/* Prometheus text format (0.0.4) into out. 0 or PG_ENOMEM. */
int metrics_render(struct server *srv, const struct metrics_ledger *lv, struct pg_buf *out);

/* log.c */
void log_request(struct conn *c);
/* Batches the calling (loop) thread's lines to f into one write per loop
 * iteration; f needs a full buffer. */
int log_batch_start(uv_loop_t *loop, uv_prepare_t *h, FILE *f);
void log_event(FILE *f, const char *level, const char *msg, const char *k1, const char *v1,
               const char *k2, const char *v2);

#endif /* PG_PROXY_INT_H */
