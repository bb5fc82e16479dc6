/* mockrail: the bundled Stripe-shaped payment rail. payguard forwards to it in
 * demos, integration tests and benchmarks. One libuv loop serves HTTP/1.1 (TLS
 * optional, through memory BIOs), keeps objects in memory and records every
 * /v1 request so tests can assert on what reached the rail. The contract lives
 * in docs/ARCHITECTURE.md ("Mock rail"). */
#include "common/pg.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <uv.h>

#include "llhttp.h"

/* ------------------------------------------------------------------------ */
/* Limits                                                                   */

#define MR_HEAD_MAX (64u * 1024u)         /* request target + header bytes */
#define MR_HDRS_MAX 1000u                 /* header lines per request */
#define MR_BODY_MAX (2u * 1024u * 1024u)  /* decoded request body */
#define MR_PARAMS_MAX 4096u               /* form fields per request */
#define MR_READ_BUF (64u * 1024u)         /* one socket read */
#define MR_TLS_PLAIN (16u * 1024u)        /* one TLS record of plaintext */
#define MR_HIGH_WATER (4u * 1024u * 1024u) /* unsent bytes: stop reading and parsing */
#define MR_LOW_WATER (1u * 1024u * 1024u) /* ... until they drain below this */
#define MR_LINGER_MS 2000u                /* drain the peer before closing */
#define MR_LOG_MAX 100000u                /* recorded requests kept */
#define MR_LOG_MAX_BYTES (256u * 1024u * 1024u)
#define MR_STORE_MAX 50000u               /* objects of one kind kept (FIFO) */
#define MR_IDEM_MAX 100000u               /* idempotency keys kept (FIFO) */
#define MR_IDEM_KEY_MAX 255u              /* Stripe's own limit */
#define MR_DELAY_MAX_MS 600000u           /* X-Mock-Delay-Ms ceiling */
#define MR_AMOUNT_MAX INT64_C(99999999)   /* Stripe's 8-digit amount cap */
#define MR_ID_RAND 24u                    /* random characters in object ids */
#define MR_CHARGES_MAX 200000u            /* money movements listed by /__mock/charges */

/* ------------------------------------------------------------------------ */
/* Growable byte buffers: per connection, or loop-wide scratch              */

struct buf {
    char *ptr;
    size_t len;
    size_t cap;
};

/* Makes room for `extra` more bytes. 0, or PG_ENOMEM with b untouched. */
PG_WUR static int buf_reserve(struct buf *b, size_t extra)
{
    size_t need, cap;

    if (b->cap - b->len >= extra)
        return 0;
    if (__builtin_add_overflow(b->len, extra, &need))
        return PG_ENOMEM;
    cap = b->cap ? b->cap : 1024;
    while (cap < need) {
        if (__builtin_mul_overflow(cap, 2, &cap))
            return PG_ENOMEM;
    }
    char *p = realloc(b->ptr, cap);
    if (!p)
        return PG_ENOMEM;
    b->ptr = p;
    b->cap = cap;
    return 0;
}

PG_WUR static int buf_append(struct buf *b, const void *p, size_t n)
{
    if (n == 0)
        return 0;
    if (buf_reserve(b, n))
        return PG_ENOMEM;
    memcpy(b->ptr + b->len, p, n);
    b->len += n;
    return 0;
}

#define buf_lit(b, lit) buf_append((b), (lit), sizeof(lit) - 1)

__attribute__((format(printf, 2, 3))) PG_WUR static int
buf_printf(struct buf *b, const char *fmt, ...)
{
    for (int round = 0; round < 2; round++) {
        size_t room = b->cap - b->len;
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(room ? b->ptr + b->len : NULL, room, fmt, ap);
        va_end(ap);
        if (n < 0)
            return PG_EPARSE;
        if ((size_t)n < room) {
            b->len += (size_t)n;
            return 0;
        }
        if (buf_reserve(b, (size_t)n + 1))
            return PG_ENOMEM;
    }
    return PG_ENOMEM;
}

static void buf_free(struct buf *b)
{
    free(b->ptr);
    b->ptr = NULL;
    b->len = b->cap = 0;
}

/* Empties b; gives its memory back only if one large answer inflated it. */
static void buf_trim(struct buf *b, size_t keep)
{
    b->len = 0;
    if (b->cap > keep)
        buf_free(b);
}

/* ------------------------------------------------------------------------ */
/* Process state                                                            */

enum hstate { HS_NONE, HS_NAME, HS_VALUE };

/* Header positions inside conn.head: the buffer may move while it grows. */
struct hdr_off {
    size_t name_off, name_len;
    size_t val_off, val_len;
};

struct hdr {
    struct pg_slice name, value;
};

struct param {
    struct pg_slice key, val;
};

/* Answers that must wait (delayed, or queued behind a delayed one). Deadlines
 * only grow along the queue, so answers leave in request order. */
struct slot {
    struct slot *next;
    uint64_t ready_at; /* loop time (ms) when it may be sent */
    struct buf data;   /* wire-ready plaintext */
};

struct conn {
    uv_tcp_t tcp;
    uv_timer_t timer;        /* queue head deadline, or lingering close */
    uv_write_t wreq;         /* the single write in flight */
    uv_shutdown_t sreq;
    llhttp_t parser;
    struct conn *prev, *next; /* g.conns, so a signal can close everyone */
    int open_handles;        /* tcp + timer; the conn is freed at 0 */
    SSL *ssl;                /* NULL on a plain listener */
    BIO *rbio, *wbio;        /* owned by ssl: ciphertext in and out */
    bool reading;            /* uv_read_start in effect */
    bool writing;            /* wreq in flight; `inflight` is busy */
    bool want_close;         /* no more requests: close once all is sent */
    bool closing;            /* uv_close issued */
    bool shutting;           /* uv_shutdown issued */
    bool lingering;          /* write side shut, discarding reads */
    bool tls_closed;         /* close_notify already queued */
    bool tls_failed;         /* fatal TLS error: no close_notify */
    bool rejected;           /* an error answer already ends this connection */
    bool parse_paused;       /* too much unsent output: parser stopped */
    bool peer_eof;           /* client finished sending (FIN or close_notify) */
    struct buf unparsed;     /* input received while parse_paused */
    /* request being parsed */
    struct buf head;         /* request target, then header names and values */
    size_t url_len;          /* target bytes at the start of head */
    struct hdr_off *hdrs;
    size_t nhdrs, hdrs_cap;
    enum hstate hstate;
    struct buf body;         /* decoded body (chunking removed) */
    /* output */
    struct buf out;          /* wire bytes for the next write */
    struct buf inflight;     /* bytes owned by wreq */
    struct slot *q_head, *q_tail;
    size_t q_bytes;          /* bytes parked in the queue */
};

/* One recorded /v1 request, packed in one allocation:
 * method, path, nhdrs x (u32 name_len, u32 value_len, name, value), body. */
struct rec {
    uint32_t method_len, path_len, nhdrs, body_len;
    char data[];
};

enum kind {
    K_PI,
    K_CHARGE,
    K_REFUND,
    K_TRANSFER,
    K_PAYOUT,
    K_WEBHOOK,
    K_CUSTOMER,
    K_COUNT
};

/* Faults a test injects into one request (X-Mock-Fault) or into the next N
 * /v1 requests (POST /__mock/faults). RESET and GARBAGE run the request first,
 * so the money moved and only the answer is lost, the case a proxy must treat
 * as "outcome unknown"; DROP and 500 leave nothing behind. */
enum fault { F_NONE, F_RESET, F_DROP, F_500, F_GARBAGE, F_DELAY, F_COUNT };

static const char *const FAULT_NAMES[F_COUNT] = { "none", "reset", "drop", "500", "garbage",
                                                  "delay" };

struct kind_info {
    const char *path;   /* segment after /v1/ */
    const char *object; /* Stripe "object" value, used in messages */
    const char *prefix; /* id prefix */
    const char *param;  /* param named by resource_missing errors */
};

static const struct kind_info KINDS[K_COUNT] = {
    [K_PI] = { "payment_intents", "payment_intent", "pi_", "intent" },
    [K_CHARGE] = { "charges", "charge", "ch_", "charge" },
    [K_REFUND] = { "refunds", "refund", "re_", "refund" },
    [K_TRANSFER] = { "transfers", "transfer", "tr_", "transfer" },
    [K_PAYOUT] = { "payouts", "payout", "po_", "payout" },
    [K_WEBHOOK] = { "webhook_endpoints", "webhook_endpoint", "we_", "webhook_endpoint" },
    [K_CUSTOMER] = { "customers", "customer", "cus_", "customer" },
};

static struct {
    uv_loop_t *loop;
    uv_tcp_t server;
    uv_signal_t sigint, sigterm;
    llhttp_settings_t settings;
    SSL_CTX *tls;          /* NULL: plain HTTP */
    const char *secret;    /* API key; argv memory */
    size_t secret_len;
    bool quiet;
    bool stopping;
    struct conn *conns;
    /* since start or /__mock/reset */
    uint64_t n_requests;    /* /v1 requests received */
    uint64_t n_connections; /* TCP connections accepted */
    uint64_t n_faults[F_COUNT];  /* faults injected, by kind */
    enum fault sched;            /* POST /__mock/faults: for the next sched_left requests */
    uint64_t sched_left;
    uint64_t sched_delay_ms;     /* F_DELAY's delay */
    json_t *charges;             /* money movements made: [{id, object, amount, ...}] */
    struct rec **log;
    size_t log_len, log_cap, log_bytes;
    json_t *tbl[K_COUNT];  /* id -> object, insertion ordered (oldest first) */
    json_t *idem;          /* Idempotency-Key -> stored answer */
    json_t *balance;       /* currency -> available minor units */
    /* Scratch shared by all connections: the loop handles one request at a
     * time and nothing here outlives the callback that filled it. */
    char rbuf[MR_READ_BUF];
    char tls_plain[MR_TLS_PLAIN];
    struct buf resp;  /* the answer being serialized */
    struct buf jbody; /* JSON body being dumped */
    struct buf form;  /* decoded form bytes */
    struct param *params;
    size_t params_cap;
    struct hdr *hv;
    size_t hv_cap;
    char date[40];
    time_t date_at;
    uint64_t rng[4];
} g;

/* ------------------------------------------------------------------------ */
/* Small helpers: slices, randomness, ids, time                             */

static struct pg_slice slice_trim(struct pg_slice s)
{
    while (s.len && (s.ptr[0] == ' ' || s.ptr[0] == '\t')) {
        s.ptr++;
        s.len--;
    }
    while (s.len && (s.ptr[s.len - 1] == ' ' || s.ptr[s.len - 1] == '\t'))
        s.len--;
    return s;
}

static bool slice_is(struct pg_slice s, const char *lit)
{
    return pg_slice_eq(s, pg_slice_cstr(lit));
}

static bool slice_prefix_nocase(struct pg_slice s, const char *lit)
{
    size_t n = strlen(lit);
    return s.len >= n && pg_slice_eq_nocase(pg_slice_of(s.ptr, n), pg_slice_of(lit, n));
}

static uint64_t rotl64(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

/* xoshiro256**: ids only need to be unique and unguessable enough for a mock. */
static uint64_t rng_next(void)
{
    uint64_t *s = g.rng;
    uint64_t r = rotl64(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl64(s[3], 45);
    return r;
}

static void rng_seed(void)
{
    if (RAND_bytes((unsigned char *)g.rng, (int)sizeof g.rng) != 1) {
        uint64_t x = (uint64_t)time(NULL) ^ ((uint64_t)uv_os_getpid() << 32) ^ uv_hrtime();
        for (size_t i = 0; i < 4; i++) { /* splitmix64 */
            x += UINT64_C(0x9e3779b97f4a7c15);
            uint64_t z = x;
            z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
            z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
            g.rng[i] = z ^ (z >> 31);
        }
    }
    if (!(g.rng[0] | g.rng[1] | g.rng[2] | g.rng[3]))
        g.rng[0] = 1;
}

static const char B62[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/* Writes prefix + n random base62 characters + NUL; truncates to fit cap. */
static void make_id(char *out, size_t cap, const char *prefix, size_t n)
{
    size_t p = strlen(prefix);
    if (cap == 0)
        return;
    if (p >= cap)
        p = cap - 1;
    if (n > cap - 1 - p)
        n = cap - 1 - p;
    memcpy(out, prefix, p);
    for (size_t i = 0; i < n; i++)
        out[p + i] = B62[rng_next() % 62];
    out[p + n] = '\0';
}

static const char *http_date(void)
{
    time_t now = time(NULL);
    if (now != g.date_at) {
        struct tm tm;
        gmtime_r(&now, &tm);
        if (strftime(g.date, sizeof g.date, "%a, %d %b %Y %H:%M:%S GMT", &tm) == 0)
            g.date[0] = '\0';
        g.date_at = now;
    }
    return g.date;
}

/* ------------------------------------------------------------------------ */
/* JSON helpers                                                             */

/* Length of the well-formed UTF-8 sequence at p, or 0 if there is none. */
static size_t utf8_seq(const unsigned char *p, size_t n)
{
    unsigned c = p[0];
    if (c < 0x80)
        return 1;
    if (c < 0xC2)
        return 0;
    if (c < 0xE0)
        return n >= 2 && (p[1] & 0xC0) == 0x80 ? 2 : 0;
    if (c < 0xF0) {
        if (n < 3 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80)
            return 0;
        if ((c == 0xE0 && p[1] < 0xA0) || (c == 0xED && p[1] > 0x9F))
            return 0;
        return 3;
    }
    if (c < 0xF5) {
        if (n < 4 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80 ||
            (p[3] & 0xC0) != 0x80)
            return 0;
        if ((c == 0xF0 && p[1] < 0x90) || (c == 0xF4 && p[1] > 0x8F))
            return 0;
        return 4;
    }
    return 0;
}

/* A JSON string from arbitrary bytes: bad UTF-8 becomes U+FFFD, so agents'
 * bytes can always be echoed back without making the answer invalid JSON. */
static json_t *jstrn(const char *p, size_t n)
{
    const unsigned char *u = (const unsigned char *)p;
    size_t i = 0, k;

    if (n == 0)
        return json_string("");
    while (i < n && (k = utf8_seq(u + i, n - i)) != 0)
        i += k;
    if (i == n)
        return json_stringn_nocheck(p, n);

    struct buf b = { 0 };
    json_t *s = NULL;
    if (buf_reserve(&b, n * 3))
        return json_string("");
    for (i = 0; i < n;) {
        k = utf8_seq(u + i, n - i);
        if (k) {
            memcpy(b.ptr + b.len, p + i, k);
            b.len += k;
            i += k;
        } else {
            memcpy(b.ptr + b.len, "\xEF\xBF\xBD", 3);
            b.len += 3;
            i++;
        }
    }
    s = json_stringn_nocheck(b.ptr, b.len);
    buf_free(&b);
    return s;
}

static json_t *jslice(struct pg_slice s)
{
    return jstrn(s.ptr, s.len);
}

/* Sets a literal key; steals v. */
static void jput(json_t *o, const char *k, json_t *v)
{
    (void)json_object_set_new_nocheck(o, k, v);
}

static void jput_int(json_t *o, const char *k, int64_t v)
{
    jput(o, k, json_integer((json_int_t)v));
}

static void jput_str(json_t *o, const char *k, const char *v)
{
    jput(o, k, v ? json_string(v) : json_null());
}

static int64_t jint(const json_t *o, const char *k)
{
    return (int64_t)json_integer_value(json_object_get(o, k));
}

static const char *jstr(const json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

/* ------------------------------------------------------------------------ */
/* JSON output                                                              */

/* Stored objects hold only the fields that differ from Stripe's defaults;
 * the writer fills in the rest from these tables, in Stripe's field order.
 * That keeps a create at a handful of allocations instead of forty, which
 * is most of what a POST costs. Every key a handler sets must be listed. */
struct field {
    const char *key;
    const char *dflt; /* JSON written when the key is absent; NULL: omit it */
};

static const struct field PI_FIELDS[] = {
    { "id", "null" },
    { "object", "\"payment_intent\"" },
    { "amount", "0" },
    { "amount_capturable", "0" },
    { "amount_details", "{\"tip\":{}}" },
    { "amount_received", "0" },
    { "application", "null" },
    { "application_fee_amount", "null" },
    { "automatic_payment_methods", "null" },
    { "canceled_at", "null" },
    { "cancellation_reason", "null" },
    { "capture_method", "\"automatic\"" },
    { "client_secret", "null" },
    { "confirmation_method", "\"automatic\"" },
    { "created", "0" },
    { "currency", "null" },
    { "customer", "null" },
    { "description", "null" },
    { "last_payment_error", "null" },
    { "latest_charge", "null" },
    { "livemode", "false" },
    { "metadata", "{}" },
    { "next_action", "null" },
    { "on_behalf_of", "null" },
    { "payment_method", "null" },
    { "payment_method_configuration_details", "null" },
    { "payment_method_options", "{}" },
    { "payment_method_types", "[\"card\"]" },
    { "processing", "null" },
    { "receipt_email", "null" },
    { "review", "null" },
    { "setup_future_usage", "null" },
    { "shipping", "null" },
    { "source", "null" },
    { "statement_descriptor", "null" },
    { "statement_descriptor_suffix", "null" },
    { "status", "\"requires_payment_method\"" },
    { "transfer_data", "null" },
    { "transfer_group", "null" },
};

static const struct field CHARGE_FIELDS[] = {
    { "id", "null" },
    { "object", "\"charge\"" },
    { "amount", "0" },
    { "amount_captured", "0" },
    { "amount_refunded", "0" },
    { "application", "null" },
    { "application_fee", "null" },
    { "application_fee_amount", "null" },
    { "balance_transaction", "null" },
    { "billing_details", "{\"address\":{\"city\":null,\"country\":null,\"line1\":null,"
                         "\"line2\":null,\"postal_code\":null,\"state\":null},\"email\":null,"
                         "\"name\":null,\"phone\":null}" },
    { "calculated_statement_descriptor", "\"MOCKRAIL\"" },
    { "captured", "false" },
    { "created", "0" },
    { "currency", "null" },
    { "customer", "null" },
    { "description", "null" },
    { "disputed", "false" },
    { "failure_code", "null" },
    { "failure_message", "null" },
    { "fraud_details", "{}" },
    { "livemode", "false" },
    { "metadata", "{}" },
    { "on_behalf_of", "null" },
    { "outcome", "{\"network_status\":\"approved_by_network\",\"reason\":null,"
                 "\"risk_level\":\"normal\",\"seller_message\":\"Payment complete.\","
                 "\"type\":\"authorized\"}" },
    { "paid", "true" },
    { "payment_intent", "null" },
    { "payment_method", "null" },
    { "receipt_email", "null" },
    { "receipt_url", "null" },
    { "refunded", "false" },
    { "review", "null" },
    { "shipping", "null" },
    { "source_transfer", "null" },
    { "statement_descriptor", "null" },
    { "status", "\"succeeded\"" },
    { "transfer_data", "null" },
    { "transfer_group", "null" },
};

static const struct field REFUND_FIELDS[] = {
    { "id", "null" },
    { "object", "\"refund\"" },
    { "amount", "0" },
    { "balance_transaction", "null" },
    { "charge", "null" },
    { "created", "0" },
    { "currency", "null" },
    { "metadata", "{}" },
    { "payment_intent", "null" },
    { "reason", "null" },
    { "receipt_number", "null" },
    { "source_transfer_reversal", "null" },
    { "status", "\"succeeded\"" },
    { "transfer_reversal", "null" },
};

static const struct field TRANSFER_FIELDS[] = {
    { "id", "null" },
    { "object", "\"transfer\"" },
    { "amount", "0" },
    { "amount_reversed", "0" },
    { "balance_transaction", "null" },
    { "created", "0" },
    { "currency", "null" },
    { "description", "null" },
    { "destination", "null" },
    { "destination_payment", "null" },
    { "livemode", "false" },
    { "metadata", "{}" },
    { "reversals", NULL },
    { "reversed", "false" },
    { "source_transaction", "null" },
    { "source_type", "\"card\"" },
    { "transfer_group", "null" },
};

static const struct field PAYOUT_FIELDS[] = {
    { "id", "null" },
    { "object", "\"payout\"" },
    { "amount", "0" },
    { "arrival_date", "0" },
    { "automatic", "false" },
    { "balance_transaction", "null" },
    { "created", "0" },
    { "currency", "null" },
    { "description", "null" },
    { "destination", "null" },
    { "failure_balance_transaction", "null" },
    { "failure_code", "null" },
    { "failure_message", "null" },
    { "livemode", "false" },
    { "metadata", "{}" },
    { "method", "\"standard\"" },
    { "original_payout", "null" },
    { "reconciliation_status", "\"not_applicable\"" },
    { "reversed_by", "null" },
    { "source_type", "\"card\"" },
    { "statement_descriptor", "null" },
    { "status", "\"pending\"" },
    { "type", "\"bank_account\"" },
};

static const struct field WEBHOOK_FIELDS[] = {
    { "id", "null" },
    { "object", "\"webhook_endpoint\"" },
    { "api_version", "null" },
    { "application", "null" },
    { "created", "0" },
    { "description", "null" },
    { "enabled_events", "[]" },
    { "livemode", "false" },
    { "metadata", "{}" },
    { "secret", NULL }, /* only in the answer to the create */
    { "status", "\"enabled\"" },
    { "url", "null" },
};

static const struct field CUSTOMER_FIELDS[] = {
    { "id", "null" },
    { "object", "\"customer\"" },
    { "address", "null" },
    { "balance", "0" },
    { "created", "0" },
    { "currency", "null" },
    { "default_source", "null" },
    { "delinquent", "false" },
    { "description", "null" },
    { "discount", "null" },
    { "email", "null" },
    { "invoice_prefix", "null" },
    { "invoice_settings", "{\"custom_fields\":null,\"default_payment_method\":null,"
                          "\"footer\":null,\"rendering_options\":null}" },
    { "livemode", "false" },
    { "metadata", "{}" },
    { "name", "null" },
    { "next_invoice_sequence", "1" },
    { "phone", "null" },
    { "preferred_locales", "[]" },
    { "shipping", "null" },
    { "tax_exempt", "\"none\"" },
    { "test_clock", "null" },
};

struct schema {
    const char *object; /* value of the object's "object" field */
    const struct field *fields;
    size_t n;
};

#define SCHEMA(obj, arr) { (obj), (arr), PG_ARRAY_LEN(arr) }
static const struct schema SCHEMAS[] = {
    SCHEMA("payment_intent", PI_FIELDS),     SCHEMA("charge", CHARGE_FIELDS),
    SCHEMA("refund", REFUND_FIELDS),         SCHEMA("transfer", TRANSFER_FIELDS),
    SCHEMA("payout", PAYOUT_FIELDS),         SCHEMA("webhook_endpoint", WEBHOOK_FIELDS),
    SCHEMA("customer", CUSTOMER_FIELDS),
};
#undef SCHEMA

/* The schema for a stored Stripe object; deletion receipts
 * ({id, object, deleted}) and everything else are written as they are. */
static const struct schema *schema_of(const json_t *o)
{
    const char *t = json_string_value(json_object_get(o, "object"));
    if (!t || json_object_get(o, "deleted"))
        return NULL;
    for (size_t i = 0; i < PG_ARRAY_LEN(SCHEMAS); i++)
        if (strcmp(t, SCHEMAS[i].object) == 0)
            return &SCHEMAS[i];
    return NULL;
}

/* s is valid UTF-8 (every string is built through jstrn or from literals). */
PG_WUR static int jw_string(struct buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t run = 0;
    int rc = buf_lit(b, "\"");
    for (size_t i = 0; i < n && !rc; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch >= 0x20 && ch != '"' && ch != '\\')
            continue;
        char esc[6] = { '\\', 'u', '0', '0', hex[ch >> 4], hex[ch & 15] };
        size_t elen = 6;
        switch (ch) {
        case '"': esc[1] = '"'; elen = 2; break;
        case '\\': esc[1] = '\\'; elen = 2; break;
        case '\n': esc[1] = 'n'; elen = 2; break;
        case '\r': esc[1] = 'r'; elen = 2; break;
        case '\t': esc[1] = 't'; elen = 2; break;
        default: break;
        }
        rc |= buf_append(b, s + run, i - run);
        rc |= buf_append(b, esc, elen);
        run = i + 1;
    }
    rc |= buf_append(b, s + run, n - run);
    rc |= buf_lit(b, "\"");
    return rc;
}

PG_WUR static int jw_int(struct buf *b, json_int_t v)
{
    char tmp[24];
    size_t i = sizeof tmp;
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    do {
        tmp[--i] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        tmp[--i] = '-';
    return buf_append(b, tmp + i, sizeof tmp - i);
}

PG_WUR static int jw_value(struct buf *b, const json_t *v);

PG_WUR static int jw_key(struct buf *b, bool first, const char *k, size_t n)
{
    int rc = first ? 0 : buf_lit(b, ",");
    rc |= jw_string(b, k, n);
    rc |= buf_lit(b, ":");
    return rc;
}

PG_WUR static int jw_object(struct buf *b, const json_t *o)
{
    const struct schema *s = schema_of(o);
    bool first = true;
    int rc = buf_lit(b, "{");

    if (s) {
        for (size_t i = 0; i < s->n && !rc; i++) {
            const json_t *v = json_object_get(o, s->fields[i].key);
            if (!v && !s->fields[i].dflt)
                continue;
            /* Schema keys are plain identifiers: no escaping needed. */
            rc |= first ? 0 : buf_lit(b, ",");
            rc |= buf_lit(b, "\"");
            rc |= buf_append(b, s->fields[i].key, strlen(s->fields[i].key));
            rc |= buf_lit(b, "\":");
            rc |= v ? jw_value(b, v) : buf_append(b, s->fields[i].dflt, strlen(s->fields[i].dflt));
            first = false;
        }
    } else {
        const char *k;
        size_t kl;
        json_t *v;
        json_object_keylen_foreach ((json_t *)o, k, kl, v) {
            rc |= jw_key(b, first, k, kl);
            rc |= jw_value(b, v);
            first = false;
            if (rc)
                break;
        }
    }
    rc |= buf_lit(b, "}");
    return rc;
}

/* Compact JSON for v appended to b (jansson's dump costs several times more). */
PG_WUR static int jw_value(struct buf *b, const json_t *v)
{
    char tmp[32];
    int rc = 0;
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return jw_object(b, v);
    case JSON_ARRAY:
        rc = buf_lit(b, "[");
        for (size_t i = 0; i < json_array_size(v) && !rc; i++) {
            if (i)
                rc |= buf_lit(b, ",");
            rc |= jw_value(b, json_array_get(v, i));
        }
        return rc | buf_lit(b, "]");
    case JSON_STRING:
        return jw_string(b, json_string_value(v), json_string_length(v));
    case JSON_INTEGER:
        return jw_int(b, json_integer_value(v));
    case JSON_REAL:
        snprintf(tmp, sizeof tmp, "%.17g", json_real_value(v));
        return buf_append(b, tmp, strlen(tmp));
    case JSON_TRUE:
        return buf_lit(b, "true");
    case JSON_FALSE:
        return buf_lit(b, "false");
    case JSON_NULL:
    default:
        return buf_lit(b, "null");
    }
}

/* ------------------------------------------------------------------------ */
/* Requests and answers                                                     */

/* Everything one request handler sees, and the answer it builds. Slices point
 * into the connection's buffers or loop scratch; valid for this call only. */
struct req {
    struct conn *c;
    int method;                /* llhttp_method_t; HEAD is routed as GET */
    const char *method_name;
    bool is_head, http11, keep_alive;
    struct pg_slice target;    /* raw request-target, query included */
    struct pg_slice path, query, body;
    struct hdr *hdrs;
    size_t nhdrs;
    struct pg_slice auth, idem_key, stripe_version, content_type;
    uint64_t delay_ms;
    bool chunked;              /* X-Mock-Chunked */
    enum fault fault;          /* X-Mock-Fault */
    struct param *params;
    size_t nparams;
    char request_id[24];
    char idem_hash[65];        /* hex SHA-256 of the body when a key was sent */
    /* the answer */
    int status;
    json_t *json;              /* body, owned; ignored when raw is set */
    struct pg_slice raw;       /* serialized body */
    bool replayed;             /* idempotent replay */
    char original_request[32]; /* Request-Id of the replayed answer */
    bool idem_store;           /* store this answer under idem_key */
    bool no_retry;             /* Stripe-Should-Retry: false */
    bool www_auth;             /* WWW-Authenticate on 401 */
};

/* Stripe's doc pages spell codes with dashes: card_declined -> card-declined. */
static void error_doc_url(char *out, size_t cap, const char *code)
{
    static const char base[] = "https://stripe.com/docs/error-codes/";
    int n = snprintf(out, cap, "%s%s", base, code);
    if (n < 0 || cap < sizeof base)
        return;
    for (char *p = out + sizeof base - 1; *p; p++)
        if (*p == '_')
            *p = '-';
}

/* Sets r's answer to a Stripe-shaped error. code and param may be NULL. */
__attribute__((format(printf, 6, 7))) static void
fail(struct req *r, int status, const char *type, const char *code, const char *param,
     const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    size_t len = n < 0 ? 0 : (size_t)n >= sizeof msg ? sizeof msg - 1 : (size_t)n;

    json_t *e = json_object(), *o = json_object();
    if (code) {
        char url[128];
        error_doc_url(url, sizeof url, code);
        jput_str(e, "code", code);
        jput_str(e, "doc_url", url);
    }
    jput(e, "message", jstrn(msg, len));
    if (param)
        jput_str(e, "param", param);
    jput_str(e, "type", type);
    jput(o, "error", e);
    json_decref(r->json);
    r->json = o;
    r->status = status;
}

static void reply_json(struct req *r, int status, json_t *body)
{
    json_decref(r->json);
    r->json = body;
    r->status = status;
}

static const char *reason_phrase(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 402: return "Payment Required";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    default: return "Unknown";
    }
}

/* True if a header value may be echoed back verbatim. */
static bool header_safe(struct pg_slice v)
{
    if (v.len == 0 || v.len > 256)
        return false;
    for (size_t i = 0; i < v.len; i++) {
        unsigned char ch = (unsigned char)v.ptr[i];
        if ((ch < 0x20 && ch != '\t') || ch > 0x7E)
            return false;
    }
    return true;
}

/* ------------------------------------------------------------------------ */
/* Connection output: direct, or parked in the delay queue                  */

static void conn_flush(struct conn *c);
static void conn_write(struct conn *c);
static void conn_resume_parse(struct conn *c);
static void timer_cb(uv_timer_t *t);

static void conn_free(struct conn *c)
{
    struct slot *s = c->q_head;
    while (s) {
        struct slot *n = s->next;
        buf_free(&s->data);
        free(s);
        s = n;
    }
    if (c->ssl)
        SSL_free(c->ssl); /* frees both BIOs */
    buf_free(&c->head);
    buf_free(&c->body);
    buf_free(&c->out);
    buf_free(&c->inflight);
    buf_free(&c->unparsed);
    free(c->hdrs);
    free(c);
}

static void conn_close_cb(uv_handle_t *h)
{
    struct conn *c = h->data;
    if (--c->open_handles == 0)
        conn_free(c);
}

static void conn_unlink(struct conn *c)
{
    c->closing = true;
    if (c->prev)
        c->prev->next = c->next;
    else
        g.conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
}

/* Tears the connection down now; memory goes when both handles have closed. */
static void conn_close(struct conn *c)
{
    if (c->closing)
        return;
    conn_unlink(c);
    uv_close((uv_handle_t *)&c->tcp, conn_close_cb);
    uv_close((uv_handle_t *)&c->timer, conn_close_cb);
}

/* Like conn_close, but the peer sees a TCP reset (the RESET and DROP faults),
 * with whatever was queued for it thrown away. */
static void conn_reset(struct conn *c)
{
    if (c->closing)
        return;
    conn_unlink(c);
    if (uv_tcp_close_reset(&c->tcp, conn_close_cb) != 0)
        uv_close((uv_handle_t *)&c->tcp, conn_close_cb);
    uv_close((uv_handle_t *)&c->timer, conn_close_cb);
}

/* Moves TLS output (records, alerts, tickets) into c->out. */
static void tls_drain(struct conn *c)
{
    size_t pend;
    while (!c->closing && (pend = BIO_ctrl_pending(c->wbio)) > 0) {
        if (pend > INT_MAX)
            pend = INT_MAX;
        if (buf_reserve(&c->out, pend)) {
            conn_close(c);
            return;
        }
        int n = BIO_read(c->wbio, c->out.ptr + c->out.len, (int)pend);
        if (n <= 0)
            break;
        c->out.len += (size_t)n;
    }
}

/* Puts wire bytes (plaintext) on the connection, encrypting when TLS. */
static void conn_send(struct conn *c, const char *p, size_t n)
{
    if (c->closing)
        return;
    if (!c->ssl) {
        if (buf_append(&c->out, p, n))
            conn_close(c);
        return;
    }
    while (n > 0) {
        int chunk = n > (1u << 20) ? (1 << 20) : (int)n;
        ERR_clear_error();
        int w = SSL_write(c->ssl, p, chunk);
        if (w <= 0) {
            ERR_clear_error();
            c->tls_failed = true;
            conn_close(c);
            return;
        }
        p += w;
        n -= (size_t)w;
    }
    tls_drain(c);
}

static void queue_arm(struct conn *c)
{
    uint64_t now = uv_now(g.loop), at = c->q_head->ready_at;
    (void)uv_timer_start(&c->timer, timer_cb, at > now ? at - now : 0, 0);
}

/* Sends an answer at ready_at (0: now), after every answer queued before it. */
static void deliver(struct conn *c, const char *p, size_t n, uint64_t ready_at)
{
    if (c->closing)
        return;
    if (!c->q_head && ready_at <= uv_now(g.loop)) {
        conn_send(c, p, n);
        return;
    }
    struct slot *t = c->q_tail;
    if (!t || ready_at > t->ready_at) {
        t = calloc(1, sizeof *t);
        if (!t) {
            conn_close(c);
            return;
        }
        t->ready_at = ready_at;
        if (c->q_tail)
            c->q_tail->next = t;
        else
            c->q_head = t;
        c->q_tail = t;
        if (c->q_head == t)
            queue_arm(c);
    }
    if (buf_append(&t->data, p, n)) {
        conn_close(c);
        return;
    }
    c->q_bytes += n;
}

static void timer_cb(uv_timer_t *t)
{
    struct conn *c = t->data;
    if (c->lingering) {
        conn_close(c);
        return;
    }
    uint64_t now = uv_now(g.loop);
    while (c->q_head && c->q_head->ready_at <= now && !c->closing) {
        struct slot *s = c->q_head;
        c->q_head = s->next;
        if (!c->q_head)
            c->q_tail = NULL;
        c->q_bytes -= s->data.len;
        conn_send(c, s->data.ptr, s->data.len);
        buf_free(&s->data);
        free(s);
    }
    if (c->q_head && !c->closing)
        queue_arm(c);
    conn_flush(c);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    PG_UNUSED(h);
    PG_UNUSED(suggested);
    /* Shared: read_cb consumes every byte before the loop reads elsewhere. */
    b->base = g.rbuf;
    b->len = sizeof g.rbuf;
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *b);

static void conn_read(struct conn *c, bool on)
{
    if (c->closing || c->reading == on)
        return;
    if (on) {
        if (uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb) != 0) {
            conn_close(c);
            return;
        }
    } else {
        (void)uv_read_stop((uv_stream_t *)&c->tcp);
    }
    c->reading = on;
}

static void shutdown_cb(uv_shutdown_t *req, int status)
{
    struct conn *c = req->data;
    if (c->closing)
        return;
    if (status < 0) {
        conn_close(c);
        return;
    }
    /* Read until the peer closes (or a short while) so unread bytes on our
     * side do not turn into a reset that destroys the last answer. */
    c->lingering = true;
    (void)uv_timer_start(&c->timer, timer_cb, MR_LINGER_MS, 0);
    conn_read(c, true);
}

/* Everything is sent and no more requests are wanted: say goodbye. */
static void conn_finish(struct conn *c)
{
    if (c->ssl && !c->tls_failed && !c->tls_closed && SSL_is_init_finished(c->ssl)) {
        c->tls_closed = true;
        ERR_clear_error();
        (void)SSL_shutdown(c->ssl);
        ERR_clear_error();
        tls_drain(c);
        if (c->out.len) {
            conn_flush(c);
            return;
        }
    }
    if (c->shutting || c->closing)
        return;
    c->shutting = true;
    (void)uv_timer_stop(&c->timer);
    if (uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, shutdown_cb) != 0)
        conn_close(c);
}

/* After any progress: closes when done, and applies back-pressure. Output
 * above the high-water mark stops reading and, between two pipelined
 * requests, parsing; both resume once it drains below the low-water mark,
 * so a connection never holds more than about MR_HIGH_WATER plus one answer. */
static void conn_settle(struct conn *c)
{
    while (!c->closing && !c->shutting) {
        size_t pending = c->out.len + c->inflight.len + c->q_bytes;
        /* Half-close: answer everything asked (parsed or not yet), then go. */
        if (c->peer_eof && !c->parse_paused)
            c->want_close = true;
        if (c->want_close) {
            conn_read(c, false);
            if (!c->writing && c->out.len == 0 && !c->q_head)
                conn_finish(c);
            return;
        }
        if (c->parse_paused) {
            conn_read(c, false);
            if (pending > MR_LOW_WATER)
                return;
            conn_resume_parse(c);
            conn_write(c);
            continue;
        }
        if (c->reading && pending > MR_HIGH_WATER)
            conn_read(c, false);
        else if (!c->reading && pending <= MR_LOW_WATER)
            conn_read(c, true);
        return;
    }
}

static void write_cb(uv_write_t *w, int status)
{
    struct conn *c = w->data;
    c->writing = false;
    buf_trim(&c->inflight, 256u * 1024u);
    if (status < 0) {
        conn_close(c);
        return;
    }
    conn_flush(c);
}

/* Writes c->out: try_write first (no request, no callback), uv_write for the
 * rest. Only one write is in flight; out keeps collecting meanwhile. */
static void conn_write(struct conn *c)
{
    if (c->closing || c->writing || c->out.len == 0 || c->shutting)
        return;
    size_t len = c->out.len > UINT_MAX ? UINT_MAX : c->out.len;
    uv_buf_t b = uv_buf_init(c->out.ptr, (unsigned)len);
    int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (n == UV_EAGAIN || n == UV_ENOSYS)
        n = 0;
    if (n < 0) {
        conn_close(c);
        return;
    }
    size_t done = (size_t)n;
    if (done == c->out.len) {
        buf_trim(&c->out, 256u * 1024u);
        return;
    }
    struct buf t = c->inflight;
    c->inflight = c->out;
    c->out = t;
    c->out.len = 0;
    len = c->inflight.len - done;
    if (len > UINT_MAX)
        len = UINT_MAX;
    b = uv_buf_init(c->inflight.ptr + done, (unsigned)len);
    /* Bytes past UINT_MAX (never in practice) go back to out for next time. */
    if (done + len < c->inflight.len) {
        if (buf_append(&c->out, c->inflight.ptr + done + len, c->inflight.len - done - len)) {
            conn_close(c);
            return;
        }
    }
    c->writing = true;
    if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, write_cb) != 0) {
        c->writing = false;
        conn_close(c);
    }
}

static void conn_flush(struct conn *c)
{
    conn_write(c);
    conn_settle(c);
}

/* ------------------------------------------------------------------------ */
/* Serializing answers                                                      */

static void log_request(const struct req *r, size_t body_len)
{
    char path[200];
    size_t n = r->target.len < sizeof path - 1 ? r->target.len : sizeof path - 1;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)r->target.ptr[i];
        path[i] = ch >= 0x20 && ch < 0x7F ? (char)ch : '?';
    }
    path[n] = '\0';
    fprintf(stderr, "mockrail: %s %s%s %d %zu%s%s%s%s\n", r->method_name, n ? path : "-",
            n < r->target.len ? "..." : "", r->status, body_len,
            r->replayed ? " replayed" : "", r->delay_ms ? " delayed" : "",
            r->fault != F_NONE ? " fault=" : "", r->fault != F_NONE ? FAULT_NAMES[r->fault] : "");
}

/* Serializes r->json into loop scratch as r->raw (unless raw is already set). */
static void answer_body(struct req *r)
{
    static const char fallback[] =
        "{\"error\":{\"message\":\"mockrail could not build the answer\",\"type\":\"api_error\"}}";
    if (r->raw.ptr)
        return;
    if (!r->json) {
        r->status = 500;
        r->raw = PG_SLICE(fallback);
        return;
    }
    struct buf *b = &g.jbody;
    b->len = 0;
    if (jw_value(b, r->json)) {
        r->status = 500;
        r->raw = PG_SLICE(fallback);
        return;
    }
    r->raw = pg_slice_of(b->ptr, b->len);
}

/* Writes the status line, headers and body of r's answer and hands it to the
 * connection (delayed if asked). Marks the connection for closing if needed. */
static void respond(struct req *r)
{
    struct conn *c = r->c;
    struct buf *o = &g.resp;
    bool chunked = r->chunked && r->http11 && !r->is_head && r->raw.len > 0;
    int rc = 0;

    o->len = 0;
    rc |= buf_printf(o,
                     "HTTP/1.1 %d %s\r\nServer: mockrail\r\nDate: %s\r\n"
                     "Content-Type: application/json\r\n",
                     r->status, reason_phrase(r->status), http_date());
    if (chunked)
        rc |= buf_lit(o, "Transfer-Encoding: chunked\r\n");
    else
        rc |= buf_printf(o, "Content-Length: %zu\r\n", r->raw.len);
    rc |= buf_printf(o, "Connection: %s\r\nRequest-Id: %s\r\n",
                     r->keep_alive ? "keep-alive" : "close", r->request_id);
    if (header_safe(r->stripe_version))
        rc |= buf_printf(o, "Stripe-Version: %.*s\r\n", (int)r->stripe_version.len,
                         r->stripe_version.ptr);
    if (r->method == HTTP_POST && header_safe(r->idem_key))
        rc |= buf_printf(o, "Idempotency-Key: %.*s\r\n", (int)r->idem_key.len, r->idem_key.ptr);
    if (r->replayed)
        rc |= buf_printf(o, "Idempotent-Replayed: true\r\nOriginal-Request: %s\r\n",
                         r->original_request);
    if (r->no_retry)
        rc |= buf_lit(o, "Stripe-Should-Retry: false\r\n");
    if (r->www_auth)
        rc |= buf_lit(o, "WWW-Authenticate: Bearer realm=\"Stripe\"\r\n");
    rc |= buf_lit(o, "\r\n");
    if (!r->is_head) {
        if (chunked) {
            /* Three chunks, to exercise the client's chunk reassembly. */
            size_t n = r->raw.len, part[3] = { n / 3, n / 3, n - 2 * (n / 3) }, off = 0;
            for (size_t i = 0; i < 3; i++) {
                if (part[i] == 0)
                    continue;
                rc |= buf_printf(o, "%zx\r\n", part[i]);
                rc |= buf_append(o, r->raw.ptr + off, part[i]);
                rc |= buf_lit(o, "\r\n");
                off += part[i];
            }
            rc |= buf_lit(o, "0\r\n\r\n");
        } else {
            rc |= buf_append(o, r->raw.ptr, r->raw.len);
        }
    }
    if (rc) {
        conn_close(c);
        return;
    }
    deliver(c, o->ptr, o->len, r->delay_ms ? uv_now(g.loop) + r->delay_ms : 0);
    if (!r->keep_alive)
        c->want_close = true;
    if (!g.quiet)
        log_request(r, r->raw.len);
    buf_trim(o, 1u << 20);
    buf_trim(&g.jbody, 1u << 20);
}

/* An error answer for a request that never completed (too large, malformed):
 * the connection closes after it. */
static void reply_early(struct conn *c, int status, const char *code, const char *msg)
{
    struct req r;
    memset(&r, 0, sizeof r);
    r.c = c;
    r.method_name = "-";
    r.http11 = true;
    make_id(r.request_id, sizeof r.request_id, "req_", 14);
    fail(&r, status, "invalid_request_error", code, NULL, "%s", msg);
    answer_body(&r);
    respond(&r);
    json_decref(r.json);
    c->rejected = true;
    c->want_close = true;
}

/* ------------------------------------------------------------------------ */
/* Request log (GET /__mock/requests)                                       */

static void log_clear(void)
{
    for (size_t i = 0; i < g.log_len; i++)
        free(g.log[i]);
    free(g.log);
    g.log = NULL;
    g.log_len = g.log_cap = g.log_bytes = 0;
}

static void put_u32(char **p, uint32_t v)
{
    memcpy(*p, &v, sizeof v);
    *p += sizeof v;
}

static void put_bytes(char **p, struct pg_slice s)
{
    if (s.len)
        memcpy(*p, s.ptr, s.len);
    *p += s.len;
}

/* Counts a /v1 request and keeps a copy while under the caps. */
static void record(const struct req *r)
{
    struct pg_slice method = pg_slice_cstr(r->method_name);
    size_t size = sizeof(struct rec) + method.len + r->target.len + r->body.len;

    g.n_requests++;
    for (size_t i = 0; i < r->nhdrs; i++)
        size += 8 + r->hdrs[i].name.len + r->hdrs[i].value.len;
    if (g.log_len >= MR_LOG_MAX || g.log_bytes + size > MR_LOG_MAX_BYTES)
        return;
    if (g.log_len == g.log_cap) {
        size_t cap = g.log_cap ? g.log_cap * 2 : 1024;
        struct rec **l = realloc(g.log, cap * sizeof *l);
        if (!l)
            return;
        g.log = l;
        g.log_cap = cap;
    }
    struct rec *e = malloc(size);
    if (!e)
        return;
    e->method_len = (uint32_t)method.len;
    e->path_len = (uint32_t)r->target.len;
    e->nhdrs = (uint32_t)r->nhdrs;
    e->body_len = (uint32_t)r->body.len;
    char *p = e->data;
    put_bytes(&p, method);
    put_bytes(&p, r->target);
    for (size_t i = 0; i < r->nhdrs; i++) {
        put_u32(&p, (uint32_t)r->hdrs[i].name.len);
        put_u32(&p, (uint32_t)r->hdrs[i].value.len);
        put_bytes(&p, r->hdrs[i].name);
        put_bytes(&p, r->hdrs[i].value);
    }
    put_bytes(&p, r->body);
    g.log[g.log_len++] = e;
    g.log_bytes += size;
}

static uint32_t get_u32(const char **p)
{
    uint32_t v;
    memcpy(&v, *p, sizeof v);
    *p += sizeof v;
    return v;
}

static json_t *rec_json(const struct rec *e)
{
    const char *p = e->data;
    json_t *o = json_object(), *hs = json_array();

    jput(o, "method", jstrn(p, e->method_len));
    p += e->method_len;
    jput(o, "path", jstrn(p, e->path_len));
    p += e->path_len;
    for (uint32_t i = 0; i < e->nhdrs; i++) {
        uint32_t nl = get_u32(&p), vl = get_u32(&p);
        json_t *pair = json_array();
        (void)json_array_append_new(pair, jstrn(p, nl));
        (void)json_array_append_new(pair, jstrn(p + nl, vl));
        (void)json_array_append_new(hs, pair);
        p += nl + vl;
    }
    jput(o, "headers", hs);
    jput(o, "body", jstrn(p, e->body_len));
    return o;
}

/* ------------------------------------------------------------------------ */
/* In-memory store                                                          */

static void store_put(json_t *tbl, const char *id, json_t *obj, size_t max)
{
    if (json_object_size(tbl) >= max) {
        void *it = json_object_iter(tbl); /* oldest: jansson keeps insertion order */
        if (it) {
            char key[MR_IDEM_KEY_MAX + 1];
            size_t kl = json_object_iter_key_len(it);
            if (kl > MR_IDEM_KEY_MAX)
                kl = MR_IDEM_KEY_MAX;
            memcpy(key, json_object_iter_key(it), kl);
            (void)json_object_deln(tbl, key, kl);
        }
    }
    (void)json_object_set_new_nocheck(tbl, id, obj);
}

/* Keeps obj (steals it) and makes it r's answer too. */
static void store_and_reply(struct req *r, enum kind k, json_t *obj)
{
    reply_json(r, 200, json_incref(obj));
    store_put(g.tbl[k], jstr(obj, "id"), obj, MR_STORE_MAX);
}

/* Notes money the rail moved, for GET /__mock/charges: what was charged,
 * whatever became of the answer. */
static void charge_note(const struct req *r, const json_t *obj)
{
    if (json_array_size(g.charges) >= MR_CHARGES_MAX)
        return;
    json_t *e = json_object();
    jput_str(e, "id", jstr(obj, "id"));
    /* not "object": the writer would fill this in as a Stripe object */
    jput_str(e, "kind", jstr(obj, "object"));
    jput_int(e, "amount", jint(obj, "amount"));
    jput_str(e, "currency", jstr(obj, "currency"));
    jput_str(e, "status", jstr(obj, "status"));
    jput(e, "idempotency_key", r->idem_key.len ? jslice(r->idem_key) : json_null());
    (void)json_array_append_new(g.charges, e);
}

static void balance_add(const char *currency, int64_t delta)
{
    int64_t v = jint(g.balance, currency), sum;
    if (__builtin_add_overflow(v, delta, &sum))
        sum = v;
    (void)json_object_set_new(g.balance, currency, json_integer((json_int_t)sum));
}

static void store_clear(void)
{
    for (size_t k = 0; k < K_COUNT; k++)
        (void)json_object_clear(g.tbl[k]);
    (void)json_object_clear(g.idem);
    (void)json_object_clear(g.balance);
}

/* ------------------------------------------------------------------------ */
/* Form parameters                                                          */

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* Decodes %XX and '+' into g.form, which was reserved large enough. */
static struct pg_slice form_decode(const char *p, size_t n)
{
    char *dst = g.form.ptr + g.form.len;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = p[i];
        int hi, lo;
        if (ch == '+') {
            ch = ' ';
        } else if (ch == '%' && i + 2 < n && (hi = hexval(p[i + 1])) >= 0 &&
                   (lo = hexval(p[i + 2])) >= 0) {
            ch = (char)(hi * 16 + lo);
            i += 2;
        }
        dst[o++] = ch;
    }
    g.form.len += o;
    return pg_slice_of(dst, o);
}

/* Splits one urlencoded string into r's params. -1 when there are too many. */
static int form_parse(struct req *r, struct pg_slice s)
{
    size_t i = 0;
    while (i < s.len) {
        size_t j = i, eq;
        while (j < s.len && s.ptr[j] != '&')
            j++;
        for (eq = i; eq < j && s.ptr[eq] != '='; eq++)
            ;
        if (eq > i) {
            if (r->nparams == MR_PARAMS_MAX)
                return -1;
            if (r->nparams == g.params_cap) {
                size_t cap = g.params_cap ? g.params_cap * 2 : 64;
                struct param *np = realloc(g.params, cap * sizeof *np);
                if (!np)
                    return -1;
                g.params = np;
                g.params_cap = cap;
            }
            struct param *pa = &g.params[r->nparams++];
            pa->key = form_decode(s.ptr + i, eq - i);
            pa->val = eq < j ? form_decode(s.ptr + eq + 1, j - eq - 1) : pg_slice_of("", 0);
        }
        i = j + 1;
    }
    r->params = g.params;
    return 0;
}

static int params_parse_or_reply(struct req *r)
{
    g.form.len = 0;
    r->nparams = 0;
    r->params = g.params;
    if (buf_reserve(&g.form, r->query.len + r->body.len + 1)) {
        fail(r, 500, "api_error", NULL, NULL, "Out of memory parsing parameters.");
        return -1;
    }
    /* Stripe reads params from the query string and the form body alike. */
    bool json_body = slice_prefix_nocase(r->content_type, "application/json");
    if (form_parse(r, r->query) || (!json_body && form_parse(r, r->body))) {
        fail(r, 400, "invalid_request_error", NULL, NULL,
             "Too many parameters (at most %u).", MR_PARAMS_MAX);
        return -1;
    }
    return 0;
}

/* The last value given for key (form fields repeat; the last one wins). */
static const struct param *param_find(const struct req *r, const char *key)
{
    struct pg_slice k = pg_slice_cstr(key);
    for (size_t i = r->nparams; i-- > 0;)
        if (pg_slice_eq(r->params[i].key, k))
            return &r->params[i];
    return NULL;
}

/* A given, non-empty value (Stripe treats "key=" as unset), or NULL. */
static const struct param *param_given(const struct req *r, const char *key)
{
    const struct param *p = param_find(r, key);
    return p && p->val.len ? p : NULL;
}

static int missing_or_reply(struct req *r, const char *key)
{
    fail(r, 400, "invalid_request_error", "parameter_missing", key,
         "Missing required param: %s.", key);
    return -1;
}

static bool parse_i64(struct pg_slice s, int64_t *out)
{
    int64_t v = 0;
    bool neg = false;
    size_t i = 0;
    if (s.len && s.ptr[0] == '-') {
        neg = true;
        i = 1;
    }
    if (i == s.len || s.len - i > 19)
        return false;
    for (; i < s.len; i++) {
        if (s.ptr[i] < '0' || s.ptr[i] > '9')
            return false;
        if (__builtin_mul_overflow(v, 10, &v) ||
            __builtin_add_overflow(v, (int64_t)(s.ptr[i] - '0'), &v))
            return false;
    }
    *out = neg ? -v : v;
    return true;
}

/* An integer param within [min, max]. *has says whether it was given. */
static int param_int_or_reply(struct req *r, const char *key, bool required, int64_t min,
                              int64_t max, int64_t *out, bool *has)
{
    const struct param *p = param_given(r, key);
    *has = p != NULL;
    if (!p)
        return required ? missing_or_reply(r, key) : 0;
    if (!parse_i64(p->val, out)) {
        fail(r, 400, "invalid_request_error", "parameter_invalid_integer", key,
             "Invalid integer: %.*s", (int)(p->val.len > 64 ? 64 : p->val.len), p->val.ptr);
        return -1;
    }
    if (*out < min) {
        fail(r, 400, "invalid_request_error", "parameter_invalid_integer", key,
             "This value must be greater than or equal to %" PRId64 ".", min);
        return -1;
    }
    if (*out > max) {
        if (strcmp(key, "amount") == 0 && max == MR_AMOUNT_MAX)
            fail(r, 400, "invalid_request_error", "amount_too_large", key,
                 "Amount must be no more than 99999999.");
        else
            fail(r, 400, "invalid_request_error", "parameter_invalid_integer", key,
                 "This value must be less than or equal to %" PRId64 ".", max);
        return -1;
    }
    return 0;
}

/* A three-letter currency, lowercased into out[4]. */
static int param_currency_or_reply(struct req *r, bool required, char out[4], bool *has)
{
    const struct param *p = param_given(r, "currency");
    *has = p != NULL;
    if (!p)
        return required ? missing_or_reply(r, "currency") : 0;
    bool ok = p->val.len == 3;
    for (size_t i = 0; ok && i < 3; i++) {
        char ch = p->val.ptr[i];
        if (ch >= 'A' && ch <= 'Z')
            ch = (char)(ch + 32);
        ok = ch >= 'a' && ch <= 'z';
        out[i] = ch;
    }
    if (!ok) {
        fail(r, 400, "invalid_request_error", NULL, "currency",
             "Invalid currency: %.*s. Stripe currently supports these currencies: usd, eur, "
             "gbp, ... (any three letters on mockrail).",
             (int)(p->val.len > 32 ? 32 : p->val.len), p->val.ptr);
        return -1;
    }
    out[3] = '\0';
    return 0;
}

static int param_bool_or_reply(struct req *r, const char *key, bool *out)
{
    const struct param *p = param_given(r, key);
    if (!p)
        return 0;
    if (slice_is(p->val, "true")) {
        *out = true;
    } else if (slice_is(p->val, "false")) {
        *out = false;
    } else {
        fail(r, 400, "invalid_request_error", NULL, key, "Invalid boolean: %.*s",
             (int)(p->val.len > 32 ? 32 : p->val.len), p->val.ptr);
        return -1;
    }
    return 0;
}

/* One of the NULL-terminated allowed values; *out keeps its default if unset. */
static int param_enum_or_reply(struct req *r, const char *key, const char *const *allowed,
                               const char **out)
{
    const struct param *p = param_given(r, key);
    if (!p)
        return 0;
    for (size_t i = 0; allowed[i]; i++) {
        if (slice_is(p->val, allowed[i])) {
            *out = allowed[i];
            return 0;
        }
    }
    char list[200];
    size_t o = 0;
    list[0] = '\0';
    for (size_t i = 0; allowed[i]; i++) {
        int n = snprintf(list + o, sizeof list - o, "%s%s", i ? ", " : "", allowed[i]);
        if (n < 0 || (size_t)n >= sizeof list - o)
            break;
        o += (size_t)n;
    }
    fail(r, 400, "invalid_request_error", NULL, key, "Invalid %s: must be one of %s", key, list);
    return -1;
}

/* Copies a string param onto obj when given; an empty value unsets it. */
static void apply_str(const struct req *r, json_t *obj, const char *key)
{
    const struct param *p = param_find(r, key);
    if (p)
        jput(obj, key, p->val.len ? jslice(p->val) : json_null());
}

/* metadata[k]=v sets, metadata[k]= unsets one key, metadata= unsets all. */
static void apply_metadata(const struct req *r, json_t *obj)
{
    json_t *md = NULL;
    for (size_t i = 0; i < r->nparams; i++) {
        struct pg_slice k = r->params[i].key, v = r->params[i].val;
        if (k.len < 8 || memcmp(k.ptr, "metadata", 8) != 0)
            continue;
        if (!md) { /* objects hold metadata only once some was given */
            md = json_object_get(obj, "metadata");
            if (!json_is_object(md)) {
                md = json_object();
                jput(obj, "metadata", md);
            }
        }
        if (slice_is(k, "metadata") && v.len == 0) {
            (void)json_object_clear(md);
        } else if (k.len > 10 && memcmp(k.ptr, "metadata[", 9) == 0 && k.ptr[k.len - 1] == ']') {
            struct pg_slice in = pg_slice_of(k.ptr + 9, k.len - 10);
            if (v.len == 0)
                (void)json_object_deln(md, in.ptr, in.len);
            else
                (void)json_object_setn_new(md, in.ptr, in.len, jslice(v)); /* bad UTF-8 key: skipped */
        }
    }
}

/* Values of name[] / name[0] / name[1]... in the order sent, or NULL. */
static json_t *param_array(const struct req *r, const char *name)
{
    size_t n = strlen(name);
    json_t *a = NULL;
    for (size_t i = 0; i < r->nparams; i++) {
        struct pg_slice k = r->params[i].key;
        if (k.len < n + 2 || memcmp(k.ptr, name, n) != 0 || k.ptr[n] != '[' ||
            k.ptr[k.len - 1] != ']')
            continue;
        bool digits = true;
        for (size_t j = n + 1; j < k.len - 1; j++)
            digits = digits && k.ptr[j] >= '0' && k.ptr[j] <= '9';
        if (!digits)
            continue;
        if (!a)
            a = json_array();
        (void)json_array_append_new(a, jslice(r->params[i].val));
    }
    return a;
}

/* ------------------------------------------------------------------------ */
/* Auth and idempotency                                                     */

static int b64val(char ch)
{
    if (ch >= 'A' && ch <= 'Z')
        return ch - 'A';
    if (ch >= 'a' && ch <= 'z')
        return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9')
        return ch - '0' + 52;
    if (ch == '+' || ch == '-')
        return 62;
    if (ch == '/' || ch == '_')
        return 63;
    return -1;
}

/* Standard base64 (padding optional). Returns the decoded length, or -1. */
static long b64_decode(struct pg_slice in, char *out, size_t cap)
{
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;
    while (in.len && in.ptr[in.len - 1] == '=')
        in.len--;
    for (size_t i = 0; i < in.len; i++) {
        int v = b64val(in.ptr[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o == cap)
                return -1;
            out[o++] = (char)((acc >> bits) & 0xFF);
        }
    }
    return (long)o;
}

/* Stripe's masked echo of a rejected key: prefix and last four kept. */
static void mask_key(struct pg_slice k, char *out, size_t cap)
{
    static const char *const prefixes[] = { "sk_test_", "sk_live_", "rk_test_",
                                            "rk_live_", "pk_test_", "pk_live_" };
    size_t head = 0, o = 0;
    for (size_t i = 0; i < PG_ARRAY_LEN(prefixes); i++)
        if (pg_slice_has_prefix(k, pg_slice_cstr(prefixes[i])))
            head = 8;
    size_t rest = k.len - head, tail = rest > 8 ? 4 : 0, stars = rest - tail;
    if (stars > 32)
        stars = 32;
    for (size_t i = 0; i < head && o + 1 < cap; i++)
        out[o++] = k.ptr[i];
    for (size_t i = 0; i < stars && o + 1 < cap; i++)
        out[o++] = '*';
    for (size_t i = k.len - tail; i < k.len && o + 1 < cap; i++) {
        unsigned char ch = (unsigned char)k.ptr[i];
        out[o++] = ch >= 0x21 && ch < 0x7F ? (char)ch : '?';
    }
    out[o] = '\0';
}

/* Bearer <secret>, or Basic with the secret as user name. */
static int auth_or_reply(struct req *r)
{
    struct pg_slice a = slice_trim(r->auth), key = a;
    char dec[768];

    if (a.len == 0) {
        r->www_auth = true;
        fail(r, 401, "invalid_request_error", NULL, NULL,
             "You did not provide an API key. You need to provide your API key in the "
             "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer "
             "YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication for details, "
             "or we can help at https://support.stripe.com/.");
        return -1;
    }
    if (slice_prefix_nocase(a, "Bearer ")) {
        key = slice_trim(pg_slice_of(a.ptr + 7, a.len - 7));
    } else if (slice_prefix_nocase(a, "Basic ")) {
        struct pg_slice b = slice_trim(pg_slice_of(a.ptr + 6, a.len - 6));
        long n = b.len <= 1024 ? b64_decode(b, dec, sizeof dec) : -1;
        key = pg_slice_of(dec, n > 0 ? (size_t)n : 0);
        const char *colon = key.len ? memchr(key.ptr, ':', key.len) : NULL;
        if (colon)
            key.len = (size_t)(colon - key.ptr);
    }
    if (key.len == g.secret_len && CRYPTO_memcmp(key.ptr, g.secret, key.len) == 0)
        return 0;
    char masked[64];
    mask_key(key, masked, sizeof masked);
    r->www_auth = true;
    fail(r, 401, "invalid_request_error", NULL, NULL, "Invalid API Key provided: %s", masked);
    return -1;
}

static void sha256_hex(struct pg_slice s, char out[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    static const char hex[] = "0123456789abcdef";
    if (EVP_Digest(s.ptr ? s.ptr : "", s.len, md, &n, EVP_sha256(), NULL) != 1)
        n = 0;
    for (unsigned int i = 0; i < n && i < 32; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[n < 32 ? 2 * n : 64] = '\0';
}

/* Looks the key up: replays the stored answer, refuses a reuse with other
 * parameters, or marks the answer to be stored. -1 when r is answered. */
static int idem_or_reply(struct req *r)
{
    struct pg_slice k = r->idem_key;
    if (k.len > MR_IDEM_KEY_MAX) {
        fail(r, 400, "invalid_request_error", NULL, NULL,
             "Idempotency-Key must be at most %u characters.", MR_IDEM_KEY_MAX);
        return -1;
    }
    sha256_hex(r->body, r->idem_hash);
    json_t *e = json_object_getn(g.idem, k.ptr, k.len);
    if (!e) {
        r->idem_store = true;
        return 0;
    }
    const char *m = jstr(e, "method"), *p = jstr(e, "path"), *h = jstr(e, "hash");
    json_t *body = json_object_get(e, "body");
    if (m && p && h && body && strcmp(m, r->method_name) == 0 &&
        pg_slice_eq(pg_slice_cstr(p), r->target) && strcmp(h, r->idem_hash) == 0) {
        r->status = (int)jint(e, "status");
        r->raw = pg_slice_of(json_string_value(body), json_string_length(body));
        r->replayed = true;
        snprintf(r->original_request, sizeof r->original_request, "%s",
                 jstr(e, "request_id") ? jstr(e, "request_id") : "");
        return -1;
    }
    fail(r, 400, "idempotency_error", NULL, NULL,
         "Keys for idempotent requests can only be used with the same parameters they were "
         "first used with. Try using a key other than '%.*s' if you meant to execute a "
         "different request.",
         (int)k.len, k.ptr);
    return -1;
}

static void idem_store(const struct req *r)
{
    json_t *e = json_object();
    jput_str(e, "method", r->method_name);
    jput(e, "path", jslice(r->target));
    jput_str(e, "hash", r->idem_hash);
    jput_int(e, "status", r->status);
    jput(e, "body", json_stringn_nocheck(r->raw.ptr, r->raw.len));
    jput_str(e, "request_id", r->request_id);
    if (json_object_size(g.idem) >= MR_IDEM_MAX) {
        void *it = json_object_iter(g.idem);
        if (it) {
            char key[MR_IDEM_KEY_MAX + 1];
            size_t kl = json_object_iter_key_len(it);
            if (kl > MR_IDEM_KEY_MAX)
                kl = MR_IDEM_KEY_MAX;
            memcpy(key, json_object_iter_key(it), kl);
            (void)json_object_deln(g.idem, key, kl);
        }
    }
    (void)json_object_setn_new_nocheck(g.idem, r->idem_key.ptr, r->idem_key.len, e);
}

/* ------------------------------------------------------------------------ */
/* Stripe endpoints                                                         */

static json_t *find_or_reply(struct req *r, enum kind k, struct pg_slice id)
{
    json_t *o = json_object_getn(g.tbl[k], id.ptr, id.len);
    if (!o)
        fail(r, 404, "invalid_request_error", "resource_missing", KINDS[k].param,
             "No such %s: '%.*s'", KINDS[k].object, (int)(id.len > 200 ? 200 : id.len),
             id.ptr);
    return o;
}

static void new_id(char *out, size_t cap, enum kind k)
{
    make_id(out, cap, KINDS[k].prefix, MR_ID_RAND);
}

/* GET /v1/<kind>: newest first, `limit` (1..100, default 10). */
static void api_list(struct req *r, enum kind k)
{
    int64_t limit = 10;
    bool has;
    if (param_int_or_reply(r, "limit", false, 1, 100, &limit, &has))
        return;
    json_t *tbl = g.tbl[k], *last[100];
    size_t n = 0, lim = (size_t)limit;
    const char *key;
    json_t *v;
    json_object_foreach (tbl, key, v) {
        last[n % lim] = v;
        n++;
    }
    json_t *data = json_array();
    size_t take = n < lim ? n : lim;
    for (size_t i = 0; i < take; i++)
        (void)json_array_append(data, last[(n - 1 - i) % lim]);
    char url[64];
    snprintf(url, sizeof url, "/v1/%s", KINDS[k].path);
    json_t *o = json_object();
    jput_str(o, "object", "list");
    jput(o, "data", data);
    jput(o, "has_more", json_boolean(n > lim));
    jput_str(o, "url", url);
    reply_json(r, 200, o);
}

static void api_retrieve(struct req *r, enum kind k, struct pg_slice id)
{
    json_t *o = find_or_reply(r, k, id);
    if (o)
        reply_json(r, 200, json_incref(o));
}

static void api_delete(struct req *r, enum kind k, struct pg_slice id)
{
    json_t *o = find_or_reply(r, k, id);
    if (!o)
        return;
    json_t *d = json_object();
    jput_str(d, "id", jstr(o, "id"));
    jput_str(d, "object", KINDS[k].object);
    jput(d, "deleted", json_true());
    (void)json_object_deln(g.tbl[k], id.ptr, id.len);
    reply_json(r, 200, d);
}

/* metadata and description: what every object lets you update. */
static void api_update_basic(struct req *r, enum kind k, struct pg_slice id)
{
    json_t *o = find_or_reply(r, k, id);
    if (!o)
        return;
    apply_str(r, o, "description");
    apply_metadata(r, o);
    reply_json(r, 200, json_incref(o));
}

static const char *const CAPTURE_METHODS[] = { "automatic", "automatic_async", "manual", NULL };
static const char *const CANCEL_REASONS[] = { "duplicate", "fraudulent", "requested_by_customer",
                                              "abandoned", NULL };
static const char *const REFUND_REASONS[] = { "duplicate", "fraudulent", "requested_by_customer",
                                              NULL };
static const char *const PAYOUT_METHODS[] = { "standard", "instant", NULL };

static bool status_in(const json_t *o, const char *const *set)
{
    const char *s = jstr(o, "status");
    for (size_t i = 0; s && set[i]; i++)
        if (strcmp(s, set[i]) == 0)
            return true;
    return false;
}

static const char *const PI_CONFIRMABLE[] = { "requires_payment_method", "requires_confirmation",
                                              "requires_action", NULL };
static const char *const PI_CANCELABLE[] = { "requires_payment_method", "requires_capture",
                                             "requires_confirmation", "requires_action",
                                             "processing", NULL };

/* verb is "confirm", "capture", "cancel" or "update"; Stripe's past tense
 * just adds "ed" (or "d"). */
static void pi_unexpected_state(struct req *r, const json_t *pi, const char *verb,
                                const char *allowed)
{
    size_t n = strlen(verb);
    fail(r, 400, "invalid_request_error", "payment_intent_unexpected_state", NULL,
         "You cannot %s this PaymentIntent because it has a status of %s. Only a "
         "PaymentIntent with one of the following statuses may be %s%s: %s.",
         verb, jstr(pi, "status") ? jstr(pi, "status") : "unknown", verb,
         n && verb[n - 1] == 'e' ? "d" : "ed", allowed);
}

/* Confirms pi (already in a confirmable state): a charge is made, captured
 * now or held for capture depending on capture_method. */
static void pi_confirm(struct req *r, json_t *pi)
{
    char ch_id[40], txn[40];
    int64_t amount = jint(pi, "amount");
    const char *currency = jstr(pi, "currency");
    const char *capture = jstr(pi, "capture_method");
    bool manual = capture && strcmp(capture, "manual") == 0;

    apply_str(r, pi, "payment_method");
    apply_str(r, pi, "receipt_email");
    if (!jstr(pi, "payment_method"))
        jput_str(pi, "payment_method", "pm_card_visa");
    new_id(ch_id, sizeof ch_id, K_CHARGE);
    make_id(txn, sizeof txn, "txn_", MR_ID_RAND);

    json_t *ch = json_object();
    jput_str(ch, "id", ch_id);
    jput_str(ch, "object", "charge");
    jput_int(ch, "amount", amount);
    jput_int(ch, "amount_captured", manual ? 0 : amount);
    if (!manual)
        jput_str(ch, "balance_transaction", txn);
    jput(ch, "captured", json_boolean(!manual));
    jput_int(ch, "created", (int64_t)time(NULL));
    jput_str(ch, "currency", currency);
    jput(ch, "customer", json_incref(json_object_get(pi, "customer")));
    jput(ch, "description", json_incref(json_object_get(pi, "description")));
    jput(ch, "metadata", json_deep_copy(json_object_get(pi, "metadata")));
    jput_str(ch, "payment_intent", jstr(pi, "id"));
    jput_str(ch, "payment_method", jstr(pi, "payment_method"));
    store_put(g.tbl[K_CHARGE], ch_id, ch, MR_STORE_MAX);

    jput_str(pi, "latest_charge", ch_id);
    if (manual) {
        jput_str(pi, "status", "requires_capture");
        jput_int(pi, "amount_capturable", amount);
    } else {
        jput_str(pi, "status", "succeeded");
        jput_int(pi, "amount_received", amount);
        if (currency)
            balance_add(currency, amount);
    }
}

static void pi_create(struct req *r)
{
    int64_t amount, fee = 0, td_amount = 0;
    bool has, has_fee, has_td_amount, confirm = false;
    char currency[4], id[40], secret_rand[32], secret[96];
    const char *capture = "automatic";

    if (param_int_or_reply(r, "amount", true, 1, MR_AMOUNT_MAX, &amount, &has) ||
        param_currency_or_reply(r, true, currency, &has) ||
        param_enum_or_reply(r, "capture_method", CAPTURE_METHODS, &capture) ||
        param_bool_or_reply(r, "confirm", &confirm) ||
        param_int_or_reply(r, "application_fee_amount", false, 0, amount, &fee, &has_fee) ||
        param_int_or_reply(r, "transfer_data[amount]", false, 0, amount, &td_amount,
                           &has_td_amount))
        return;
    const struct param *dest = param_given(r, "transfer_data[destination]");
    if (has_td_amount && !dest) {
        missing_or_reply(r, "transfer_data[destination]");
        return;
    }

    new_id(id, sizeof id, K_PI);
    make_id(secret_rand, sizeof secret_rand, "", 25);
    snprintf(secret, sizeof secret, "%s_secret_%s", id, secret_rand);

    json_t *pi = json_object();
    jput_str(pi, "id", id);
    jput_str(pi, "object", "payment_intent");
    jput_int(pi, "amount", amount);
    if (has_fee)
        jput_int(pi, "application_fee_amount", fee);
    jput_str(pi, "capture_method", capture);
    jput_str(pi, "client_secret", secret);
    jput_int(pi, "created", (int64_t)time(NULL));
    jput_str(pi, "currency", currency);
    json_t *types = param_array(r, "payment_method_types");
    if (types)
        jput(pi, "payment_method_types", types);
    jput_str(pi, "status", "requires_payment_method");
    if (dest) {
        json_t *td = json_object();
        if (has_td_amount)
            jput_int(td, "amount", td_amount);
        jput(td, "destination", jslice(dest->val));
        jput(pi, "transfer_data", td);
    }

    static const char *const strs[] = { "customer",
                                        "description",
                                        "on_behalf_of",
                                        "payment_method",
                                        "receipt_email",
                                        "setup_future_usage",
                                        "statement_descriptor",
                                        "statement_descriptor_suffix",
                                        "transfer_group" };
    for (size_t i = 0; i < PG_ARRAY_LEN(strs); i++)
        apply_str(r, pi, strs[i]);
    apply_metadata(r, pi);
    if (jstr(pi, "payment_method"))
        jput_str(pi, "status", "requires_confirmation");
    if (confirm)
        pi_confirm(r, pi);
    charge_note(r, pi);
    store_and_reply(r, K_PI, pi);
}

static void pi_update(struct req *r, struct pg_slice id)
{
    json_t *pi = find_or_reply(r, K_PI, id);
    if (!pi)
        return;
    bool money = param_given(r, "amount") || param_given(r, "currency") ||
                 param_given(r, "capture_method");
    if (money && !status_in(pi, PI_CONFIRMABLE)) {
        pi_unexpected_state(r, pi, "update", "requires_payment_method, requires_confirmation, "
                                             "requires_action");
        return;
    }
    int64_t amount;
    bool has_amount, has_currency;
    char currency[4];
    const char *capture = jstr(pi, "capture_method");
    if (param_int_or_reply(r, "amount", false, 1, MR_AMOUNT_MAX, &amount, &has_amount) ||
        param_currency_or_reply(r, false, currency, &has_currency) ||
        param_enum_or_reply(r, "capture_method", CAPTURE_METHODS, &capture))
        return;
    if (has_amount)
        jput_int(pi, "amount", amount);
    if (has_currency)
        jput_str(pi, "currency", currency);
    if (capture)
        jput_str(pi, "capture_method", capture);
    static const char *const strs[] = { "customer",
                                        "description",
                                        "receipt_email",
                                        "setup_future_usage",
                                        "statement_descriptor",
                                        "statement_descriptor_suffix",
                                        "transfer_group" };
    for (size_t i = 0; i < PG_ARRAY_LEN(strs); i++)
        apply_str(r, pi, strs[i]);
    if (param_given(r, "payment_method") && status_in(pi, PI_CONFIRMABLE)) {
        apply_str(r, pi, "payment_method");
        jput_str(pi, "status", "requires_confirmation");
    }
    apply_metadata(r, pi);
    reply_json(r, 200, json_incref(pi));
}

static void pi_confirm_endpoint(struct req *r, struct pg_slice id)
{
    json_t *pi = find_or_reply(r, K_PI, id);
    if (!pi)
        return;
    const char *capture = jstr(pi, "capture_method");
    if (!status_in(pi, PI_CONFIRMABLE)) {
        pi_unexpected_state(r, pi, "confirm",
                            "requires_payment_method, requires_confirmation, requires_action");
        return;
    }
    if (param_enum_or_reply(r, "capture_method", CAPTURE_METHODS, &capture))
        return;
    if (capture)
        jput_str(pi, "capture_method", capture);
    pi_confirm(r, pi);
    reply_json(r, 200, json_incref(pi));
}

static void pi_capture(struct req *r, struct pg_slice id)
{
    json_t *pi = find_or_reply(r, K_PI, id);
    if (!pi)
        return;
    static const char *const capturable[] = { "requires_capture", NULL };
    if (!status_in(pi, capturable)) {
        pi_unexpected_state(r, pi, "capture", "requires_capture");
        return;
    }
    int64_t max = jint(pi, "amount_capturable"), amount = max;
    bool has;
    if (param_int_or_reply(r, "amount_to_capture", false, 1, max, &amount, &has))
        return;
    jput_str(pi, "status", "succeeded");
    jput_int(pi, "amount_capturable", 0);
    jput_int(pi, "amount_received", amount);
    apply_metadata(r, pi);
    const char *ch_id = jstr(pi, "latest_charge");
    json_t *ch = ch_id ? json_object_get(g.tbl[K_CHARGE], ch_id) : NULL;
    if (ch) {
        char txn[40];
        make_id(txn, sizeof txn, "txn_", MR_ID_RAND);
        jput(ch, "captured", json_true());
        jput_int(ch, "amount_captured", amount);
        jput_str(ch, "balance_transaction", txn);
    }
    if (jstr(pi, "currency"))
        balance_add(jstr(pi, "currency"), amount);
    reply_json(r, 200, json_incref(pi));
}

static void pi_cancel(struct req *r, struct pg_slice id)
{
    json_t *pi = find_or_reply(r, K_PI, id);
    if (!pi)
        return;
    if (!status_in(pi, PI_CANCELABLE)) {
        pi_unexpected_state(r, pi, "cancel",
                            "requires_payment_method, requires_capture, requires_confirmation, "
                            "requires_action, processing");
        return;
    }
    const char *reason = NULL;
    if (param_enum_or_reply(r, "cancellation_reason", CANCEL_REASONS, &reason))
        return;
    jput_str(pi, "status", "canceled");
    jput_int(pi, "canceled_at", (int64_t)time(NULL));
    jput_str(pi, "cancellation_reason", reason);
    jput_int(pi, "amount_capturable", 0);
    reply_json(r, 200, json_incref(pi));
}

static void refund_create(struct req *r)
{
    const struct param *pp = param_given(r, "payment_intent"), *cp = param_given(r, "charge");
    json_t *ch = NULL;

    if (!pp && !cp) {
        fail(r, 400, "invalid_request_error", "parameter_missing", NULL,
             "One of the following params should be provided for this request: "
             "payment_intent or charge.");
        return;
    }
    if (cp) {
        if (!(ch = find_or_reply(r, K_CHARGE, cp->val)))
            return;
    } else {
        json_t *pi = json_object_getn(g.tbl[K_PI], pp->val.ptr, pp->val.len);
        if (!pi) {
            fail(r, 404, "invalid_request_error", "resource_missing", "payment_intent",
                 "No such payment_intent: '%.*s'", (int)(pp->val.len > 200 ? 200 : pp->val.len),
                 pp->val.ptr);
            return;
        }
        const char *ch_id = jstr(pi, "latest_charge");
        ch = ch_id ? json_object_get(g.tbl[K_CHARGE], ch_id) : NULL;
        if (!ch || jint(ch, "amount_captured") == 0) {
            fail(r, 400, "invalid_request_error", "charge_not_refundable", "payment_intent",
                 "This PaymentIntent (%s) does not have a successful charge to refund.",
                 jstr(pi, "id"));
            return;
        }
    }
    int64_t captured = jint(ch, "amount_captured"), refunded = jint(ch, "amount_refunded");
    int64_t left = captured - refunded, amount = left;
    bool has;
    if (left <= 0) {
        fail(r, 400, "invalid_request_error", "charge_already_refunded", NULL,
             "Charge %s has already been refunded.", jstr(ch, "id"));
        return;
    }
    if (param_int_or_reply(r, "amount", false, 1, MR_AMOUNT_MAX, &amount, &has))
        return;
    if (amount > left) {
        fail(r, 400, "invalid_request_error", "amount_too_large", "amount",
             "Refund amount (%" PRId64 ") is greater than unrefunded amount on charge (%" PRId64
             ")",
             amount, left);
        return;
    }
    const char *reason = NULL;
    if (param_enum_or_reply(r, "reason", REFUND_REASONS, &reason))
        return;

    char id[40], txn[40];
    new_id(id, sizeof id, K_REFUND);
    make_id(txn, sizeof txn, "txn_", MR_ID_RAND);
    const char *currency = jstr(ch, "currency");
    json_t *re = json_object();
    jput_str(re, "id", id);
    jput_str(re, "object", "refund");
    jput_int(re, "amount", amount);
    jput_str(re, "balance_transaction", txn);
    jput_str(re, "charge", jstr(ch, "id"));
    jput_int(re, "created", (int64_t)time(NULL));
    jput_str(re, "currency", currency);
    jput(re, "payment_intent", json_incref(json_object_get(ch, "payment_intent")));
    jput_str(re, "reason", reason);
    apply_metadata(r, re);

    jput_int(ch, "amount_refunded", refunded + amount);
    jput(ch, "refunded", json_boolean(refunded + amount == captured));
    if (currency)
        balance_add(currency, -amount);
    store_and_reply(r, K_REFUND, re);
}

static void transfer_create(struct req *r)
{
    int64_t amount;
    bool has;
    char currency[4], id[40], txn[40], py[40];
    if (param_int_or_reply(r, "amount", true, 1, MR_AMOUNT_MAX, &amount, &has) ||
        param_currency_or_reply(r, true, currency, &has))
        return;
    const struct param *dest = param_given(r, "destination");
    if (!dest) {
        missing_or_reply(r, "destination");
        return;
    }
    new_id(id, sizeof id, K_TRANSFER);
    make_id(txn, sizeof txn, "txn_", MR_ID_RAND);
    make_id(py, sizeof py, "py_", MR_ID_RAND);
    char rev_url[96];
    snprintf(rev_url, sizeof rev_url, "/v1/transfers/%s/reversals", id);

    json_t *tr = json_object();
    jput_str(tr, "id", id);
    jput_str(tr, "object", "transfer");
    jput_int(tr, "amount", amount);
    jput_str(tr, "balance_transaction", txn);
    jput_int(tr, "created", (int64_t)time(NULL));
    jput_str(tr, "currency", currency);
    jput(tr, "destination", jslice(dest->val));
    jput_str(tr, "destination_payment", py);
    jput(tr, "reversals", json_pack("{s:s, s:[], s:b, s:i, s:s}", "object", "list", "data",
                                    "has_more", 0, "total_count", 0, "url", rev_url));
    apply_str(r, tr, "description");
    apply_str(r, tr, "source_transaction");
    apply_str(r, tr, "transfer_group");
    apply_metadata(r, tr);
    balance_add(currency, -amount);
    charge_note(r, tr);
    store_and_reply(r, K_TRANSFER, tr);
}

static void payout_create(struct req *r)
{
    int64_t amount;
    bool has;
    char currency[4], id[40], txn[40], ba[40];
    const char *method = "standard";
    if (param_int_or_reply(r, "amount", true, 1, MR_AMOUNT_MAX, &amount, &has) ||
        param_currency_or_reply(r, true, currency, &has) ||
        param_enum_or_reply(r, "method", PAYOUT_METHODS, &method))
        return;
    new_id(id, sizeof id, K_PAYOUT);
    make_id(txn, sizeof txn, "txn_", MR_ID_RAND);
    make_id(ba, sizeof ba, "ba_", MR_ID_RAND);
    int64_t now = (int64_t)time(NULL);

    json_t *po = json_object();
    jput_str(po, "id", id);
    jput_str(po, "object", "payout");
    jput_int(po, "amount", amount);
    jput_int(po, "arrival_date", now + (strcmp(method, "instant") == 0 ? 0 : 2 * 86400));
    jput_str(po, "balance_transaction", txn);
    jput_int(po, "created", now);
    jput_str(po, "currency", currency);
    jput_str(po, "destination", ba);
    jput_str(po, "method", method);
    apply_str(r, po, "description");
    apply_str(r, po, "destination");
    apply_str(r, po, "statement_descriptor");
    apply_metadata(r, po);
    balance_add(currency, -amount);
    charge_note(r, po);
    store_and_reply(r, K_PAYOUT, po);
}

static int webhook_url_or_reply(struct req *r, bool required, const struct param **out)
{
    const struct param *u = param_given(r, "url");
    *out = u;
    if (!u)
        return required ? missing_or_reply(r, "url") : 0;
    if (!pg_slice_has_prefix(u->val, PG_SLICE("https://")) &&
        !pg_slice_has_prefix(u->val, PG_SLICE("http://"))) {
        fail(r, 400, "invalid_request_error", "url_invalid", "url", "Invalid URL: %.*s",
             (int)(u->val.len > 200 ? 200 : u->val.len), u->val.ptr);
        return -1;
    }
    return 0;
}

static void webhook_create(struct req *r)
{
    const struct param *url;
    if (webhook_url_or_reply(r, true, &url))
        return;
    json_t *events = param_array(r, "enabled_events");
    if (!events) {
        missing_or_reply(r, "enabled_events");
        return;
    }
    char id[40], secret[48];
    new_id(id, sizeof id, K_WEBHOOK);
    make_id(secret, sizeof secret, "whsec_", 32);

    json_t *we = json_object();
    jput_str(we, "id", id);
    jput_str(we, "object", "webhook_endpoint");
    jput_int(we, "created", (int64_t)time(NULL));
    jput(we, "enabled_events", events);
    jput(we, "url", jslice(url->val));
    apply_str(r, we, "api_version");
    apply_str(r, we, "description");
    apply_metadata(r, we);

    /* The signing secret is shown once, on creation, as Stripe does. */
    json_t *shown = json_copy(we);
    jput_str(shown, "secret", secret);
    store_put(g.tbl[K_WEBHOOK], id, we, MR_STORE_MAX);
    reply_json(r, 200, shown);
}

static void webhook_update(struct req *r, struct pg_slice id)
{
    json_t *we = find_or_reply(r, K_WEBHOOK, id);
    const struct param *url;
    bool disabled = false;
    if (!we || webhook_url_or_reply(r, false, &url) ||
        param_bool_or_reply(r, "disabled", &disabled))
        return;
    if (url)
        jput(we, "url", jslice(url->val));
    json_t *events = param_array(r, "enabled_events");
    if (events)
        jput(we, "enabled_events", events);
    if (param_given(r, "disabled"))
        jput_str(we, "status", disabled ? "disabled" : "enabled");
    apply_str(r, we, "description");
    apply_metadata(r, we);
    reply_json(r, 200, json_incref(we));
}

static void customer_fields(const struct req *r, json_t *cus)
{
    static const char *const strs[] = { "description", "email", "name", "phone" };
    for (size_t i = 0; i < PG_ARRAY_LEN(strs); i++)
        apply_str(r, cus, strs[i]);
    apply_metadata(r, cus);
}

static void customer_create(struct req *r)
{
    char id[40], prefix[9];
    new_id(id, sizeof id, K_CUSTOMER);
    for (size_t i = 0; i < 8; i++)
        prefix[i] = "0123456789ABCDEF"[rng_next() % 16];
    prefix[8] = '\0';

    json_t *cus = json_object();
    jput_str(cus, "id", id);
    jput_str(cus, "object", "customer");
    jput_int(cus, "created", (int64_t)time(NULL));
    jput_str(cus, "invoice_prefix", prefix);
    customer_fields(r, cus);
    store_and_reply(r, K_CUSTOMER, cus);
}

static void customer_update(struct req *r, struct pg_slice id)
{
    json_t *cus = find_or_reply(r, K_CUSTOMER, id);
    if (!cus)
        return;
    customer_fields(r, cus);
    reply_json(r, 200, json_incref(cus));
}

static void balance_get(struct req *r)
{
    json_t *avail = json_array(), *pending = json_array(), *reserved = json_array();
    const char *cur;
    json_t *v;
    if (json_object_size(g.balance) == 0)
        balance_add("usd", 0);
    json_object_foreach (g.balance, cur, v) {
        json_int_t n = json_integer_value(v);
        (void)json_array_append_new(avail, json_pack("{s:I, s:s, s:{s:I}}", "amount", n,
                                                     "currency", cur, "source_types", "card", n));
        (void)json_array_append_new(
            pending, json_pack("{s:I, s:s, s:{s:I}}", "amount", (json_int_t)0, "currency", cur,
                               "source_types", "card", (json_int_t)0));
        (void)json_array_append_new(
            reserved, json_pack("{s:I, s:s}", "amount", (json_int_t)0, "currency", cur));
    }
    json_t *o = json_object();
    jput_str(o, "object", "balance");
    jput(o, "available", avail);
    jput(o, "connect_reserved", reserved);
    jput(o, "livemode", json_false());
    jput(o, "pending", pending);
    reply_json(r, 200, o);
}

static void unknown_url(struct req *r)
{
    fail(r, 404, "invalid_request_error", NULL, NULL,
         "Unrecognized request URL (%s: %.*s). Please see https://stripe.com/docs or we can "
         "help at https://support.stripe.com/.",
         r->method_name, (int)(r->path.len > 200 ? 200 : r->path.len), r->path.ptr);
}

/* Splits the path after /v1/ into at most 3 non-empty segments. */
static size_t split_path(struct pg_slice rest, struct pg_slice seg[3])
{
    size_t n = 0, i = 0;
    while (i <= rest.len) {
        size_t j = i;
        while (j < rest.len && rest.ptr[j] != '/')
            j++;
        if (j == i || n == 3)
            return 0; /* empty segment or too deep: not a route */
        seg[n++] = pg_slice_of(rest.ptr + i, j - i);
        i = j + 1;
    }
    return n;
}

/* POST /v1/<kind>. */
static bool route_create(struct req *r, enum kind k)
{
    switch (k) {
    case K_PI: pi_create(r); break;
    case K_REFUND: refund_create(r); break;
    case K_TRANSFER: transfer_create(r); break;
    case K_PAYOUT: payout_create(r); break;
    case K_WEBHOOK: webhook_create(r); break;
    case K_CUSTOMER: customer_create(r); break;
    default: return false;
    }
    return true;
}

/* POST /v1/<kind>/<id>. */
static bool route_update(struct req *r, enum kind k, struct pg_slice id)
{
    switch (k) {
    case K_PI: pi_update(r, id); break;
    case K_WEBHOOK: webhook_update(r, id); break;
    case K_CUSTOMER: customer_update(r, id); break;
    case K_CHARGE: return false;
    default: api_update_basic(r, k, id); break;
    }
    return true;
}

/* POST /v1/payment_intents/<id>/<action>. */
static bool route_pi_action(struct req *r, struct pg_slice id, struct pg_slice action)
{
    if (slice_is(action, "confirm"))
        pi_confirm_endpoint(r, id);
    else if (slice_is(action, "capture"))
        pi_capture(r, id);
    else if (slice_is(action, "cancel"))
        pi_cancel(r, id);
    else
        return false;
    return true;
}

/* Routes an authenticated /v1 request (HEAD arrives as GET); anything not
 * matched gets Stripe's "Unrecognized request URL". */
static void route(struct req *r)
{
    struct pg_slice seg[3];
    size_t n = r->path.len > 4 ? split_path(pg_slice_of(r->path.ptr + 4, r->path.len - 4), seg) : 0;
    bool get = r->method == HTTP_GET, post = r->method == HTTP_POST;
    bool del = r->method == HTTP_DELETE, done = false;
    enum kind k = K_COUNT;

    for (size_t i = 0; n && i < K_COUNT; i++)
        if (slice_is(seg[0], KINDS[i].path))
            k = (enum kind)i;
    if (n == 1 && get && slice_is(seg[0], "balance")) {
        balance_get(r);
        done = true;
    } else if (k == K_COUNT) {
        done = false;
    } else if (n == 1 && get) {
        api_list(r, k);
        done = true;
    } else if (n == 2 && get) {
        api_retrieve(r, k, seg[1]);
        done = true;
    } else if (n == 1 && post) {
        done = route_create(r, k);
    } else if (n == 2 && post) {
        done = route_update(r, k, seg[1]);
    } else if (n == 2 && del && (k == K_WEBHOOK || k == K_CUSTOMER)) {
        api_delete(r, k, seg[1]);
        done = true;
    } else if (n == 3 && post && k == K_PI) {
        done = route_pi_action(r, seg[1], seg[2]);
    }
    if (!done)
        unknown_url(r);
}

/* The /v1 pipeline: auth, params, idempotency, triggers, then the endpoint. */
static void api(struct req *r)
{
    if (auth_or_reply(r) || params_parse_or_reply(r))
        return;
    if (r->method == HTTP_POST && r->idem_key.len && idem_or_reply(r))
        return;
    const struct param *a = param_find(r, "amount");
    if (a && slice_is(a->val, "402402")) {
        fail(r, 402, "card_error", "card_declined", NULL, "Your card was declined.");
        (void)json_object_set_new_nocheck(json_object_get(r->json, "error"), "decline_code",
                                          json_string("generic_decline"));
    } else if (a && slice_is(a->val, "500500")) {
        fail(r, 500, "api_error", NULL, NULL,
             "An unknown error occurred (mockrail trigger amount=500500).");
        r->no_retry = true;
    } else {
        route(r);
    }
    /* Stripe keeps results once the endpoint ran, but not validation errors. */
    if (r->status >= 400 && r->status < 500 && r->status != 402)
        r->idem_store = false;
}

/* ------------------------------------------------------------------------ */
/* Faults                                                                   */

static enum fault fault_named(struct pg_slice s)
{
    for (int f = F_NONE; f < F_COUNT; f++)
        if (pg_slice_eq_nocase(s, pg_slice_cstr(FAULT_NAMES[f])))
            return (enum fault)f;
    return F_COUNT;
}

/* The fault for this /v1 request: its X-Mock-Fault header, else the next
 * one scheduled. Counted here, as injected. */
static enum fault fault_take(struct req *r)
{
    enum fault f = r->fault;
    if (f == F_NONE && g.sched_left > 0) {
        f = g.sched;
        if (--g.sched_left == 0)
            g.sched = F_NONE;
        if (f == F_DELAY && r->delay_ms < g.sched_delay_ms)
            r->delay_ms = g.sched_delay_ms;
    }
    if (f == F_DELAY && r->delay_ms == 0)
        f = F_NONE; /* a delay of nothing is no fault */
    r->fault = f;
    g.n_faults[f]++;
    return f;
}

static json_t *faults_json(void)
{
    json_t *o = json_object();
    for (int f = F_NONE + 1; f < F_COUNT; f++)
        jput_int(o, FAULT_NAMES[f], (int64_t)g.n_faults[f]);
    return o;
}

/* POST /__mock/faults?kind=K&count=N[&delay_ms=D]: the next N /v1 requests
 * get fault K (kind=none clears). -1 when r is answered with an error. */
static int faults_set_or_reply(struct req *r)
{
    int64_t count = 1, delay = 0;
    bool has;
    if (params_parse_or_reply(r))
        return -1;
    const struct param *k = param_given(r, "kind");
    enum fault f = k ? fault_named(k->val) : F_COUNT;
    if (f == F_COUNT) {
        fail(r, 400, "invalid_request_error", NULL, "kind",
             "kind must be none, reset, drop, 500, garbage or delay.");
        return -1;
    }
    if (param_int_or_reply(r, "count", false, 0, INT64_C(1000000000), &count, &has) ||
        param_int_or_reply(r, "delay_ms", f == F_DELAY, 1, (int64_t)MR_DELAY_MAX_MS, &delay,
                           &has))
        return -1;
    g.sched = count ? f : F_NONE;
    g.sched_left = f == F_NONE ? 0 : (uint64_t)count;
    g.sched_delay_ms = (uint64_t)delay;
    return 0;
}

/* Bytes no HTTP parser accepts: the GARBAGE fault's answer. */
static const char GARBAGE[] = "\x16\x03\x01mockrail garbage \xfe\xff\x00\x01\r\n\r\n";

/* ------------------------------------------------------------------------ */
/* Test control endpoints (never recorded, no auth)                         */

static void control(struct req *r)
{
    struct pg_slice p = r->path;
    bool get = r->method == HTTP_GET, post = r->method == HTTP_POST;
    json_t *o;

    if (slice_is(p, "/__mock/requests") && get) {
        o = json_array();
        for (size_t i = 0; i < g.log_len; i++)
            (void)json_array_append_new(o, rec_json(g.log[i]));
        reply_json(r, 200, o);
    } else if (slice_is(p, "/__mock/stats") && get) {
        o = json_object();
        jput_int(o, "requests", (int64_t)g.n_requests);
        jput_int(o, "connections", (int64_t)g.n_connections);
        jput(o, "faults", faults_json());
        reply_json(r, 200, o);
    } else if (slice_is(p, "/__mock/reset") && post) {
        log_clear();
        store_clear();
        g.n_requests = g.n_connections = 0;
        memset(g.n_faults, 0, sizeof g.n_faults);
        g.sched = F_NONE;
        g.sched_left = g.sched_delay_ms = 0;
        (void)json_array_clear(g.charges);
        reply_json(r, 200, json_pack("{s:b}", "ok", 1));
    } else if (slice_is(p, "/__mock/health") && get) {
        reply_json(r, 200, json_pack("{s:b}", "ok", 1));
    } else if (slice_is(p, "/__mock/charges") && get) {
        reply_json(r, 200, json_incref(g.charges));
    } else if (slice_is(p, "/__mock/faults") && (get || post)) {
        if (post && faults_set_or_reply(r))
            return;
        o = faults_json();
        jput_str(o, "next", FAULT_NAMES[g.sched]);
        jput_int(o, "left", (int64_t)g.sched_left);
        jput_int(o, "delay_ms", (int64_t)g.sched_delay_ms);
        reply_json(r, 200, o);
    } else if (slice_is(p, "/__mock/requests") || slice_is(p, "/__mock/stats") ||
               slice_is(p, "/__mock/reset") || slice_is(p, "/__mock/health") ||
               slice_is(p, "/__mock/charges") || slice_is(p, "/__mock/faults")) {
        fail(r, 405, "invalid_request_error", NULL, NULL, "Method %s not allowed on %.*s.",
             r->method_name, (int)p.len, p.ptr);
    } else {
        unknown_url(r);
    }
}

/* ------------------------------------------------------------------------ */
/* One complete request                                                     */

static int header_view(struct conn *c, struct req *r)
{
    if (c->nhdrs > g.hv_cap) {
        size_t cap = g.hv_cap ? g.hv_cap : 32;
        while (cap < c->nhdrs)
            cap *= 2;
        struct hdr *h = realloc(g.hv, cap * sizeof *h);
        if (!h)
            return PG_ENOMEM;
        g.hv = h;
        g.hv_cap = cap;
    }
    for (size_t i = 0; i < c->nhdrs; i++) {
        g.hv[i].name = pg_slice_of(c->head.ptr + c->hdrs[i].name_off, c->hdrs[i].name_len);
        g.hv[i].value = pg_slice_of(c->head.ptr + c->hdrs[i].val_off, c->hdrs[i].val_len);
    }
    r->hdrs = g.hv;
    r->nhdrs = c->nhdrs;
    return 0;
}

static void pick_headers(struct req *r)
{
    for (size_t i = 0; i < r->nhdrs; i++) {
        struct pg_slice n = r->hdrs[i].name, v = r->hdrs[i].value;
        if (n.len < 12 || n.len > 15)
            continue;
        if (pg_slice_eq_nocase(n, PG_SLICE("authorization"))) {
            r->auth = v;
        } else if (pg_slice_eq_nocase(n, PG_SLICE("idempotency-key"))) {
            r->idem_key = v;
        } else if (pg_slice_eq_nocase(n, PG_SLICE("stripe-version"))) {
            r->stripe_version = v;
        } else if (pg_slice_eq_nocase(n, PG_SLICE("content-type"))) {
            r->content_type = v;
        } else if (pg_slice_eq_nocase(n, PG_SLICE("x-mock-delay-ms"))) {
            int64_t d;
            if (parse_i64(slice_trim(v), &d) && d > 0)
                r->delay_ms = d > (int64_t)MR_DELAY_MAX_MS ? MR_DELAY_MAX_MS : (uint64_t)d;
        } else if (pg_slice_eq_nocase(n, PG_SLICE("x-mock-chunked"))) {
            struct pg_slice t = slice_trim(v);
            r->chunked = slice_is(t, "1") || pg_slice_eq_nocase(t, PG_SLICE("true"));
        } else if (pg_slice_eq_nocase(n, PG_SLICE("x-mock-fault"))) {
            enum fault f = fault_named(slice_trim(v));
            r->fault = f == F_COUNT ? F_NONE : f;
        }
    }
}

/* Path and query from the request target (origin or absolute form). */
static void split_target(struct req *r)
{
    struct pg_slice t = r->target;
    if (slice_prefix_nocase(t, "http://") || slice_prefix_nocase(t, "https://")) {
        const char *auth = (const char *)memchr(t.ptr, ':', t.len) + 3;
        size_t skip = (size_t)(auth - t.ptr);
        const char *slash = skip < t.len ? memchr(auth, '/', t.len - skip) : NULL;
        t = slash ? pg_slice_of(slash, t.len - (size_t)(slash - t.ptr)) : PG_SLICE("/");
    }
    const char *q = t.len ? memchr(t.ptr, '?', t.len) : NULL;
    if (q) {
        r->path = pg_slice_of(t.ptr, (size_t)(q - t.ptr));
        r->query = pg_slice_of(q + 1, t.len - r->path.len - 1);
    } else {
        r->path = t;
        r->query = PG_SLICE_NULL;
    }
}

static void handle_request(struct conn *c, bool keep_alive)
{
    struct req r;
    memset(&r, 0, sizeof r);
    r.c = c;
    r.keep_alive = keep_alive;
    r.method = llhttp_get_method(&c->parser);
    r.method_name = llhttp_method_name((llhttp_method_t)r.method);
    r.is_head = r.method == HTTP_HEAD;
    if (r.is_head)
        r.method = HTTP_GET;
    r.http11 = c->parser.http_major > 1 || (c->parser.http_major == 1 && c->parser.http_minor >= 1);
    make_id(r.request_id, sizeof r.request_id, "req_", 14);
    if (header_view(c, &r)) {
        conn_close(c);
        return;
    }
    r.target = pg_slice_of(c->head.ptr, c->url_len);
    r.body = pg_slice_of(c->body.ptr, c->body.len);
    split_target(&r);
    pick_headers(&r);

    enum fault f = F_NONE;
    if (pg_slice_has_prefix(r.path, PG_SLICE("/__mock/"))) {
        control(&r);
    } else if (slice_is(r.path, "/v1") || pg_slice_has_prefix(r.path, PG_SLICE("/v1/"))) {
        record(&r);
        f = fault_take(&r);
        if (f == F_DROP) {
            if (!g.quiet)
                log_request(&r, 0);
            conn_reset(c);
            return;
        }
        if (f == F_500)
            fail(&r, 500, "api_error", NULL, NULL,
                 "An unknown error occurred (mockrail fault 500).");
        else
            api(&r);
    } else {
        unknown_url(&r);
    }
    answer_body(&r);
    if (r.idem_store)
        idem_store(&r);
    if (f == F_RESET || f == F_GARBAGE) {
        /* The request ran (and its answer is kept for a retry); only the
         * answer is lost. */
        if (!g.quiet)
            log_request(&r, 0);
        if (f == F_RESET) {
            conn_reset(c);
        } else {
            deliver(c, GARBAGE, sizeof GARBAGE - 1, 0);
            c->want_close = true;
        }
    } else {
        respond(&r);
    }
    json_decref(r.json);
}

/* ------------------------------------------------------------------------ */
/* llhttp glue                                                              */

static int head_append_or_reply(struct conn *c, const char *at, size_t n)
{
    if (c->head.len + n > MR_HEAD_MAX) {
        reply_early(c, 431, NULL, "Request headers are too large (limit 64 KiB).");
        return -1;
    }
    if (buf_append(&c->head, at, n)) {
        conn_close(c);
        return -1;
    }
    return 0;
}

static int on_message_begin(llhttp_t *p)
{
    struct conn *c = p->data;
    c->head.len = 0;
    c->url_len = 0;
    c->nhdrs = 0;
    c->hstate = HS_NONE;
    c->body.len = 0;
    return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t n)
{
    struct conn *c = p->data;
    if (head_append_or_reply(c, at, n))
        return -1;
    c->url_len += n;
    return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t n)
{
    struct conn *c = p->data;
    if (c->hstate != HS_NAME) {
        if (c->nhdrs == MR_HDRS_MAX) {
            reply_early(c, 431, NULL, "Too many request headers.");
            return -1;
        }
        if (c->nhdrs == c->hdrs_cap) {
            size_t cap = c->hdrs_cap ? c->hdrs_cap * 2 : 16;
            struct hdr_off *h = realloc(c->hdrs, cap * sizeof *h);
            if (!h) {
                conn_close(c);
                return -1;
            }
            c->hdrs = h;
            c->hdrs_cap = cap;
        }
        struct hdr_off *h = &c->hdrs[c->nhdrs++];
        h->name_off = c->head.len;
        h->name_len = 0;
        h->val_off = c->head.len;
        h->val_len = 0;
        c->hstate = HS_NAME;
    }
    if (head_append_or_reply(c, at, n))
        return -1;
    c->hdrs[c->nhdrs - 1].name_len += n;
    return 0;
}

static int on_header_field_complete(llhttp_t *p)
{
    struct conn *c = p->data;
    if (c->nhdrs) {
        c->hdrs[c->nhdrs - 1].val_off = c->head.len;
        c->hstate = HS_VALUE;
    }
    return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t n)
{
    struct conn *c = p->data;
    if (c->nhdrs == 0 || c->hstate != HS_VALUE)
        return 0;
    if (head_append_or_reply(c, at, n))
        return -1;
    c->hdrs[c->nhdrs - 1].val_len += n;
    return 0;
}

static int on_header_value_complete(llhttp_t *p)
{
    struct conn *c = p->data;
    if (c->nhdrs && c->hstate == HS_VALUE) {
        struct hdr_off *h = &c->hdrs[c->nhdrs - 1];
        while (h->val_len && (c->head.ptr[h->val_off + h->val_len - 1] == ' ' ||
                              c->head.ptr[h->val_off + h->val_len - 1] == '\t'))
            h->val_len--;
    }
    c->hstate = HS_NONE;
    return 0;
}

static int on_headers_complete(llhttp_t *p)
{
    struct conn *c = p->data;
    bool has_body = (p->flags & F_CHUNKED) ||
                    ((p->flags & F_CONTENT_LENGTH) && p->content_length > 0);
    if ((p->flags & F_CONTENT_LENGTH) && p->content_length > MR_BODY_MAX) {
        reply_early(c, 413, NULL, "Request body is too large (limit 2 MiB).");
        return -1;
    }
    if (has_body && p->http_major == 1 && p->http_minor >= 1) {
        for (size_t i = 0; i < c->nhdrs; i++) {
            struct pg_slice n = pg_slice_of(c->head.ptr + c->hdrs[i].name_off, c->hdrs[i].name_len);
            struct pg_slice v = pg_slice_of(c->head.ptr + c->hdrs[i].val_off, c->hdrs[i].val_len);
            if (pg_slice_eq_nocase(n, PG_SLICE("expect")) &&
                pg_slice_eq_nocase(slice_trim(v), PG_SLICE("100-continue"))) {
                static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
                deliver(c, cont, sizeof cont - 1, 0);
                break;
            }
        }
    }
    return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t n)
{
    struct conn *c = p->data;
    if (c->body.len + n > MR_BODY_MAX) {
        reply_early(c, 413, NULL, "Request body is too large (limit 2 MiB).");
        return -1;
    }
    if (buf_append(&c->body, at, n)) {
        conn_close(c);
        return -1;
    }
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    struct conn *c = p->data;
    bool keep = llhttp_should_keep_alive(p) != 0;
    handle_request(c, keep);
    if (c->head.cap > 16u * 1024u)
        buf_free(&c->head);
    if (c->body.cap > 64u * 1024u)
        buf_free(&c->body);
    /* Pausing stops the parser at this message: nothing after it is read. */
    if (!keep || c->want_close || c->closing)
        return HPE_PAUSED;
    if (c->out.len + c->inflight.len + c->q_bytes > MR_HIGH_WATER) {
        c->parse_paused = true; /* the rest waits in c->unparsed */
        return HPE_PAUSED;
    }
    return 0;
}

static void http_feed(struct conn *c, const char *p, size_t n)
{
    if (c->want_close || c->closing)
        return;
    if (c->parse_paused) {
        if (buf_append(&c->unparsed, p, n))
            conn_close(c);
        return;
    }
    llhttp_errno_t e = llhttp_execute(&c->parser, p, n);
    if (e == HPE_OK)
        return;
    if (e == HPE_PAUSED && c->parse_paused && !c->want_close && !c->closing) {
        const char *at = llhttp_get_error_pos(&c->parser);
        size_t used = at && at >= p && at <= p + n ? (size_t)(at - p) : n;
        if (buf_append(&c->unparsed, p + used, n - used))
            conn_close(c);
        return;
    }
    if (e != HPE_PAUSED && e != HPE_PAUSED_UPGRADE && !c->rejected && !c->closing) {
        char msg[160];
        snprintf(msg, sizeof msg, "Malformed HTTP request: %s.",
                 llhttp_get_error_reason(&c->parser) ? llhttp_get_error_reason(&c->parser)
                                                     : llhttp_errno_name(e));
        reply_early(c, 400, NULL, msg);
    }
    c->want_close = true;
}

/* Output drained: parse what arrived while paused (it may pause again). */
static void conn_resume_parse(struct conn *c)
{
    struct buf in = c->unparsed;
    memset(&c->unparsed, 0, sizeof c->unparsed);
    c->parse_paused = false;
    llhttp_resume(&c->parser);
    if (in.len)
        http_feed(c, in.ptr, in.len);
    buf_free(&in);
}

/* Ciphertext in: handshake, then decrypt records and parse the plaintext. */
static void tls_feed(struct conn *c, const char *p, size_t n)
{
    if (BIO_write(c->rbio, p, (int)n) != (int)n) {
        conn_close(c);
        return;
    }
    if (!SSL_is_init_finished(c->ssl)) {
        ERR_clear_error();
        int rc = SSL_do_handshake(c->ssl);
        if (rc != 1) {
            int e = SSL_get_error(c->ssl, rc);
            ERR_clear_error();
            tls_drain(c);
            if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
                c->tls_failed = true;
                c->want_close = true;
            }
            return;
        }
    }
    while (!c->want_close && !c->closing && !c->peer_eof) {
        ERR_clear_error();
        int rc = SSL_read(c->ssl, g.tls_plain, (int)sizeof g.tls_plain);
        if (rc > 0) {
            http_feed(c, g.tls_plain, (size_t)rc);
            continue;
        }
        int e = SSL_get_error(c->ssl, rc);
        ERR_clear_error();
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
            break;
        if (e == SSL_ERROR_ZERO_RETURN) {
            c->peer_eof = true;
        } else {
            c->tls_failed = true;
            c->want_close = true;
        }
    }
    tls_drain(c);
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    struct conn *c = s->data;
    if (c->closing)
        return;
    if (c->lingering) {
        if (nread < 0)
            conn_close(c);
        return;
    }
    if (nread > 0) {
        if (c->ssl)
            tls_feed(c, b->base, (size_t)nread);
        else
            http_feed(c, b->base, (size_t)nread);
    } else if (nread < 0) {
        if (nread != UV_EOF) {
            conn_close(c);
            return;
        }
        c->peer_eof = true;
    }
    conn_flush(c);
}

static void on_connection(uv_stream_t *server, int status)
{
    if (status < 0)
        return;
    struct conn *c = calloc(1, sizeof *c);
    if (!c)
        return;
    (void)uv_tcp_init(g.loop, &c->tcp);
    (void)uv_timer_init(g.loop, &c->timer);
    c->tcp.data = c->timer.data = c->wreq.data = c->sreq.data = c;
    c->open_handles = 2;
    c->next = g.conns;
    if (g.conns)
        g.conns->prev = c;
    g.conns = c;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        conn_close(c);
        return;
    }
    g.n_connections++;
    (void)uv_tcp_nodelay(&c->tcp, 1);
    llhttp_init(&c->parser, HTTP_REQUEST, &g.settings);
    c->parser.data = c;
    if (g.tls) {
        c->ssl = SSL_new(g.tls);
        c->rbio = BIO_new(BIO_s_mem());
        c->wbio = BIO_new(BIO_s_mem());
        if (!c->ssl || !c->rbio || !c->wbio) {
            BIO_free(c->rbio);
            BIO_free(c->wbio);
            c->rbio = c->wbio = NULL;
            conn_close(c);
            return;
        }
        SSL_set_bio(c->ssl, c->rbio, c->wbio);
        SSL_set_accept_state(c->ssl);
    }
    conn_read(c, true);
}

/* ------------------------------------------------------------------------ */
/* Start-up, signals, shutdown                                              */

static int alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned int inlen, void *arg)
{
    static const unsigned char h11[] = "\x08http/1.1";
    unsigned char *sel = NULL;
    PG_UNUSED(ssl);
    PG_UNUSED(arg);
    if (SSL_select_next_proto(&sel, outlen, h11, sizeof h11 - 1, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

static SSL_CTX *tls_ctx_new(const char *cert, const char *key, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    const char *what = "cannot create TLS context";
    char reason[200];
    if (!ctx)
        goto fail;
    (void)SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    (void)SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    what = "cannot load --tls-cert";
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1)
        goto fail_ctx;
    what = "cannot load --tls-key";
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)
        goto fail_ctx;
    what = "--tls-key does not match --tls-cert";
    if (SSL_CTX_check_private_key(ctx) != 1)
        goto fail_ctx;
    SSL_CTX_set_alpn_select_cb(ctx, alpn_cb, NULL);
    return ctx;

fail_ctx:
    SSL_CTX_free(ctx);
fail:
    ERR_error_string_n(ERR_get_error(), reason, sizeof reason);
    snprintf(err, errlen, "%s (%s)", what, reason);
    ERR_clear_error();
    return NULL;
}

static void shutdown_all(void)
{
    if (g.stopping)
        return;
    g.stopping = true;
    uv_close((uv_handle_t *)&g.server, NULL);
    uv_close((uv_handle_t *)&g.sigint, NULL);
    uv_close((uv_handle_t *)&g.sigterm, NULL);
    while (g.conns)
        conn_close(g.conns);
}

static void on_signal(uv_signal_t *s, int signum)
{
    PG_UNUSED(s);
    PG_UNUSED(signum);
    shutdown_all();
}

static const char USAGE[] =
    "usage: mockrail [--listen HOST:PORT] [--secret KEY] [--tls-cert FILE --tls-key FILE]\n"
    "                [--quiet] [--help]\n"
    "\n"
    "A Stripe-shaped rail for payguard's demos, tests and benchmarks.\n"
    "  --listen HOST:PORT  address to serve (default 127.0.0.1:12111; [::1]:PORT for\n"
    "                      IPv6; port 0 picks a free port)\n"
    "  --secret KEY        API key /v1 requests must present (default sk_test_mockrail)\n"
    "  --tls-cert FILE     serve TLS with this PEM certificate chain (needs --tls-key)\n"
    "  --tls-key FILE      PEM private key for --tls-cert\n"
    "  --quiet             no per-request log lines on stderr\n"
    "\n"
    "Prints \"mockrail listening on HOST:PORT\" once bound. Test control: GET\n"
    "/__mock/requests, GET /__mock/stats, POST /__mock/reset, GET /__mock/charges\n"
    "(money moved: id, kind, amount, currency, status, idempotency_key). Triggers:\n"
    "amount=402402 (card declined), amount=500500 (500), X-Mock-Delay-Ms: N,\n"
    "X-Mock-Chunked: 1.\n"
    "\n"
    "Faults, per request with the header X-Mock-Fault: KIND, or for the next N /v1\n"
    "requests with POST /__mock/faults?kind=KIND&count=N[&delay_ms=D] (GET shows\n"
    "what is left and what was injected; kind=none clears):\n"
    "  reset    run the request (money moves, its answer is kept for a retry with\n"
    "           the same Idempotency-Key), then reset the connection, no answer\n"
    "  drop     reset the connection as soon as the request is in; nothing runs\n"
    "  500      answer 500 api_error without running the request\n"
    "  garbage  run the request, answer bytes that are not HTTP, then close\n"
    "  delay    (scheduled only) answer after delay_ms, like X-Mock-Delay-Ms\n"
    "GET /__mock/stats counts the faults injected by kind.\n";

struct opts {
    const char *listen, *secret, *cert, *key;
    bool quiet;
};

/* Fills o from argv. 0 to run, 1 after --help, -1 after printing an error. */
static int parse_args(int argc, char **argv, struct opts *o)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *eq = strchr(a, '=');
        size_t nlen = eq && strncmp(a, "--", 2) == 0 ? (size_t)(eq - a) : strlen(a);
        static const char *const valued[] = { "--listen", "--secret", "--tls-cert", "--tls-key" };
        const char **dst[] = { &o->listen, &o->secret, &o->cert, &o->key };
        bool done = false;

        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(USAGE, stdout);
            return 1;
        }
        if (strcmp(a, "--quiet") == 0 || strcmp(a, "-q") == 0) {
            o->quiet = true;
            continue;
        }
        for (size_t k = 0; k < PG_ARRAY_LEN(valued) && !done; k++) {
            if (strlen(valued[k]) != nlen || strncmp(a, valued[k], nlen) != 0)
                continue;
            if (eq && a[nlen] == '=') {
                *dst[k] = eq + 1;
            } else if (i + 1 < argc) {
                *dst[k] = argv[++i];
            } else {
                fprintf(stderr, "mockrail: %s needs a value (try --help)\n", valued[k]);
                return -1;
            }
            done = true;
        }
        if (!done) {
            fprintf(stderr, "mockrail: unknown argument '%s' (try --help)\n", a);
            return -1;
        }
    }
    if (!o->secret[0]) {
        fprintf(stderr, "mockrail: --secret must not be empty\n");
        return -1;
    }
    if (!o->cert != !o->key) {
        fprintf(stderr, "mockrail: --tls-cert and --tls-key go together\n");
        return -1;
    }
    return 0;
}

/* HOST:PORT or [V6]:PORT (localhost means 127.0.0.1). 0, or -1 if malformed. */
static int parse_listen(const char *s, struct sockaddr_storage *ss)
{
    char host[64];
    const char *port;
    size_t hl;

    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (!end || end[1] != ':')
            return -1;
        hl = (size_t)(end - s - 1);
        if (hl == 0 || hl >= sizeof host)
            return -1;
        memcpy(host, s + 1, hl);
        host[hl] = '\0';
        port = end + 2;
    } else {
        const char *colon = strrchr(s, ':');
        if (!colon || colon == s || memchr(s, ':', (size_t)(colon - s)))
            return -1;
        hl = (size_t)(colon - s);
        if (hl >= sizeof host)
            return -1;
        memcpy(host, s, hl);
        host[hl] = '\0';
        port = colon + 1;
    }
    size_t pl = strlen(port);
    if (pl == 0 || pl > 5 || strspn(port, "0123456789") != pl)
        return -1;
    long p = strtol(port, NULL, 10);
    if (p > 65535)
        return -1;
    if (strcmp(host, "localhost") == 0)
        snprintf(host, sizeof host, "127.0.0.1");
    if (s[0] == '[')
        return uv_ip6_addr(host, (int)p, (struct sockaddr_in6 *)ss) == 0 ? 0 : -1;
    return uv_ip4_addr(host, (int)p, (struct sockaddr_in *)ss) == 0 ? 0 : -1;
}

static void print_bound(void)
{
    struct sockaddr_storage ss;
    int len = (int)sizeof ss;
    char host[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (uv_tcp_getsockname(&g.server, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET6) {
            const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ss;
            (void)uv_ip6_name(a, host, sizeof host);
            port = ntohs(a->sin6_port);
            printf("mockrail listening on [%s]:%u\n", host, port);
        } else {
            const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;
            (void)uv_ip4_name(a, host, sizeof host);
            port = ntohs(a->sin_port);
            printf("mockrail listening on %s:%u\n", host, port);
        }
    }
    fflush(stdout);
}

int main(int argc, char **argv)
{
    struct opts o = { "127.0.0.1:12111", "sk_test_mockrail", NULL, NULL, false };
    struct sockaddr_storage addr;
    int rc;

    rc = parse_args(argc, argv, &o);
    if (rc)
        return rc > 0 ? 0 : 2;
    memset(&addr, 0, sizeof addr);
    if (parse_listen(o.listen, &addr)) {
        fprintf(stderr, "mockrail: bad --listen '%s' (want HOST:PORT or [V6]:PORT)\n", o.listen);
        return 2;
    }
    g.secret = o.secret;
    g.secret_len = strlen(o.secret);
    g.quiet = o.quiet;
    signal(SIGPIPE, SIG_IGN);
    rng_seed();

    if (o.cert) {
        char err[320];
        g.tls = tls_ctx_new(o.cert, o.key, err, sizeof err);
        if (!g.tls) {
            fprintf(stderr, "mockrail: %s\n", err);
            return 2;
        }
    }
    for (size_t k = 0; k < K_COUNT; k++)
        g.tbl[k] = json_object();
    g.idem = json_object();
    g.balance = json_object();
    g.charges = json_array();

    llhttp_settings_init(&g.settings);
    g.settings.on_message_begin = on_message_begin;
    g.settings.on_url = on_url;
    g.settings.on_header_field = on_header_field;
    g.settings.on_header_field_complete = on_header_field_complete;
    g.settings.on_header_value = on_header_value;
    g.settings.on_header_value_complete = on_header_value_complete;
    g.settings.on_headers_complete = on_headers_complete;
    g.settings.on_body = on_body;
    g.settings.on_message_complete = on_message_complete;

    g.loop = uv_default_loop();
    (void)uv_tcp_init(g.loop, &g.server);
    rc = uv_tcp_bind(&g.server, (const struct sockaddr *)&addr, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&g.server, 1024, on_connection);
    if (rc != 0) {
        fprintf(stderr, "mockrail: cannot listen on %s: %s\n", o.listen, uv_strerror(rc));
        uv_close((uv_handle_t *)&g.server, NULL);
        (void)uv_run(g.loop, UV_RUN_DEFAULT);
        rc = 1;
        goto out;
    }
    (void)uv_signal_init(g.loop, &g.sigint);
    (void)uv_signal_init(g.loop, &g.sigterm);
    (void)uv_signal_start(&g.sigint, on_signal, SIGINT);
    (void)uv_signal_start(&g.sigterm, on_signal, SIGTERM);
    print_bound();

    (void)uv_run(g.loop, UV_RUN_DEFAULT);
    rc = 0;
out:
    (void)uv_loop_close(g.loop);
    log_clear();
    for (size_t k = 0; k < K_COUNT; k++)
        json_decref(g.tbl[k]);
    json_decref(g.idem);
    json_decref(g.balance);
    json_decref(g.charges);
    buf_free(&g.resp);
    buf_free(&g.jbody);
    buf_free(&g.form);
    free(g.params);
    free(g.hv);
    SSL_CTX_free(g.tls);
    return rc;
}
