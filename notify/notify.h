/* Outbound webhooks: payguard tells humans when something needs them
 * (approvals, budget thresholds, denials, revocations, a broken audit
 * chain), signed the Standard Webhooks way and delivered from the ledger's
 * durable outbox.
 *
 * The ledger writes each event into its outbox in the same transaction as
 * its cause (ledger/outbox.c). The notifier here is one thread of its own:
 * it fans events out to the endpoints that subscribe to them, delivers each
 * over HTTPS with blocking sockets and poll-based time limits (so the libuv
 * loop is never involved), and records every attempt in the ledger (audited
 * in the event's org chain). Delivery state lives in LMDB, so a restart
 * picks up where the last process stopped.
 *
 * Signing (Standard Webhooks, https://www.standardwebhooks.com):
 *   webhook-id:        the message id, the same on every attempt
 *   webhook-timestamp: Unix seconds of the attempt
 *   webhook-signature: "v1,<base64 HMAC-SHA256(key, id "." timestamp "." body)>"
 * where the key is the base64-decoded part of a "whsec_<base64>" secret.
 * During a key rotation every secret of the endpoint (webhooks[].secret,
 * then webhooks[].previous_secrets) signs, and the signatures are sent
 * space-separated: a receiver that knows either key accepts. */
#ifndef PG_NOTIFY_H
#define PG_NOTIFY_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "common/pg.h"
#include "config/config.h"
#include "ledger/ledger.h"

/* --- signing (notify/sign.c): pure, any thread ---------------------------- */

#define PG_WEBHOOK_KEY_MIN 24      /* bytes of a decoded secret (192 bits) */
#define PG_WEBHOOK_KEY_MAX 64
#define PG_WEBHOOK_SIG_LEN 47      /* "v1," + 44 base64 characters */
#define PG_WEBHOOK_MAX_SECRETS 4   /* current + previous secrets signed at once */

/* Decodes a "whsec_<base64>" secret (standard alphabet, '=' padding
 * optional) into key (at least PG_WEBHOOK_KEY_MAX bytes of room). Returns
 * the key length, or PG_EPARSE (no whsec_ prefix, not base64) or PG_ERANGE
 * (shorter than PG_WEBHOOK_KEY_MIN or longer than PG_WEBHOOK_KEY_MAX bytes).
 * The caller wipes the key when done. */
PG_WUR int pg_webhook_secret_decode(const char *secret, uint8_t *key, size_t cap);

/* One signature "v1,<base64>" and a NUL into out (cap > PG_WEBHOOK_SIG_LEN)
 * over msg_id "." timestamp "." body. 0, PG_ETOOBIG (cap), PG_ECRYPTO. */
PG_WUR int pg_webhook_sign(const uint8_t *key, size_t keylen, const char *msg_id, int64_t timestamp,
                           struct pg_slice body, char *out, size_t cap);

/* The webhook-signature header value for every secret in `secrets` (n of
 * them, 1..PG_WEBHOOK_MAX_SECRETS, each "whsec_..."), space-separated, into
 * out. Returns its length, or PG_EPARSE/PG_ERANGE for a bad secret,
 * PG_ETOOBIG when cap is too small, PG_ECRYPTO. */
PG_WUR int pg_webhook_signature_header(const char *const *secrets, size_t n, const char *msg_id,
                                       int64_t timestamp, struct pg_slice body, char *out,
                                       size_t cap);

/* --- the notifier (notify/deliver.c) -------------------------------------- */

struct pg_notify;

/* Delivery policy: the waits after failed attempts 1, 2, 3... (the last
 * repeats), each stretched or shrunk by up to 20% at random so endpoints
 * that failed together are not retried together. */
#define PG_NOTIFY_TIMEOUT_MS 10000 /* whole attempt: resolve, connect, TLS, send, status line */
#define PG_NOTIFY_MAX_AGE_S (3 * 86400) /* default webhooks[].max_age */

/* Seconds to wait after the n-th failed attempt (n >= 1), before jitter. */
uint32_t pg_notify_backoff(uint32_t attempt);

/* Starts the notifier thread for the webhooks in `cfg` and tells the ledger
 * which events to write to its outbox (none when no webhook is configured:
 * the payment path then writes nothing). `log` gets one JSON line per
 * attempt ({"level","msg":"webhook",...}; never a secret). The config is
 * copied: the caller may free it. 0, PG_ENOMEM, or -errno from
 * pthread_create. Loop thread, after pg_ledger_start. */
PG_WUR int pg_notify_start(struct pg_ledger *l, const struct pg_config *cfg, FILE *log,
                           struct pg_notify **out);

/* A reloaded config: endpoints, secrets, subscriptions and thresholds take
 * effect at the next delivery; the ledger's event set at once. No I/O (the
 * thread persists the event set for other processes). Loop thread. */
void pg_notify_update(struct pg_notify *n, const struct pg_config *cfg);

/* Stops the thread (an attempt in progress finishes first, up to its time
 * limit) and frees n. What is undelivered stays in the ledger for the next
 * start. Before pg_ledger_close. NULL is a no-op. */
void pg_notify_stop(struct pg_notify *n);

/* Counters for /metrics. Any thread; n may be NULL (all zero). */
struct pg_notify_stats {
    uint64_t attempts;             /* delivery attempts made */
    uint64_t deliveries;           /* attempts answered 2xx */
    uint64_t failures;             /* attempts that failed (will be retried or given up) */
    uint64_t given_up;             /* deliveries dropped after max_age */
    uint64_t disabled;             /* endpoints disabled by a 410 */
};
void pg_notify_stats(const struct pg_notify *n, struct pg_notify_stats *out);

#endif /* PG_NOTIFY_H */
