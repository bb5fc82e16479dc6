/* Private to ledger/: the hooks through which a change writes its webhook
 * event in its own transaction (outbox.c). Each returns 0 at once when the
 * event is not wanted (no webhook subscribes to it); otherwise it appends
 * one record to the outbox. A negative return is a transaction failure
 * (PG_ESTORE with t->mdb_rc, PG_ENOMEM, PG_ECRYPTO) that fails the batch,
 * like any other write of the change. */
#ifndef PG_LEDGER_OUTBOX_INT_H
#define PG_LEDGER_OUTBOX_INT_H

#include "ledger/ledger_int.h"

/* approval.requested (a HOLD made `a`), approval.decided (a human decided
 * it), approval.expired. */
PG_WUR int ledger_event_approval(struct ltx *t, enum pg_event e, const struct appr *a, int64_t now);

/* payment.denied: a DENY of `req` (BEGIN's limits, or a RECORD of the
 * stateless rules); currency is the one the spend counts in (NULL: the
 * request's). Does nothing when req's decision is not a DENY. */
PG_WUR int ledger_event_denied(struct ltx *t, const struct pg_ledger_req *req, const char *currency);

/* budget.threshold: after a PROCEED of `req` that added `added` to the
 * spend in `currency` (before: that spend when the limits were checked), one
 * event per window and threshold the reservation crossed, each once per
 * agent, currency, window and threshold. Does nothing unless req->result is
 * PROCEED with status 0. */
PG_WUR int ledger_event_spend(struct ltx *t, const struct pg_ledger_req *req, const char *currency,
                              const struct pg_spend *before, int64_t added);

/* agent.revoked. */
PG_WUR int ledger_event_revoked(struct ltx *t, const char *org, const char *agent, const char *actor,
                                const char *reason, int64_t now);

#endif /* PG_LEDGER_OUTBOX_INT_H */
