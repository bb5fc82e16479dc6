/* Money requests around the rail call: the Idempotency-Key contract, the
 * ledger's BEGIN (idempotency, fresh-spend limits, reservation, approval,
 * audit), durable before anything is forwarded, and SETTLE from the rail's
 * answer. The agent gets the answer as soon as its SETTLE is queued (or, with
 * ledger.settle_before_answer, once it is durable): the writer takes requests
 * in order, so a retry of the key, queued after, replays the stored answer.
 * A crash before that SETTLE commits leaves the reservation pending and the
 * key unresolved; its next retry is re-sent under the same rail key, and the
 * rail replays its own answer. */
#include "common/pg.h"
#include "proxy/proxy_int.h"

#include <stdio.h>
#include <stdlib.h>

/* Rail answers larger than this cannot be stored for replay: refused. */
#define MAX_STORED_BODY (8u << 20)

enum money_step {
    STEP_BEGIN,
    STEP_SETTLE_ANSWER,            /* the agent waits for the SETTLE to be durable */
    STEP_SETTLE_BEHIND,            /* the agent has its answer; the SETTLE follows */
    STEP_SETTLE_FAIL,
    STEP_ORPHAN,
    STEP_RECORD
};

struct money_op {
    struct pg_ledger_req lr;
    struct conn *c;                /* NULL once orphaned */
    struct runtime *rt;            /* keeps policy and agent alive for the writer */
    enum money_step step;
    int err_status;                /* STEP_SETTLE_FAIL: the answer to give after */
    const char *err_type, *err_code;
    char err_message[512];
    char *answer;                  /* STEP_SETTLE_BEHIND: the op's copy of the answer */
    enum pg_rail_preset preset;    /* how to read the rail's answer (read_answer) */
    FILE *log;                     /* the server's, for ops that outlive their connection */
};

static void op_free(struct money_op *op)
{
    /* The stored response points at the connection's buffers or at the
     * op's copy: never the ledger's to free. */
    memset(&op->lr.response, 0, sizeof(op->lr.response));
    pg_ledger_req_free(&op->lr);
    free(op->answer);
    if (op->rt)
        runtime_release(op->rt);
    free(op);
}

static void copy_id(char *dst, size_t cap, struct pg_slice s)
{
    size_t n = s.len < cap - 1 ? s.len : cap - 1;
    if (n)
        memcpy(dst, s.ptr, n);
    dst[n] = '\0';
}

static bool valid_idem_key(struct pg_slice k)
{
    if (k.len == 0 || k.len > PG_IDEM_KEY_MAX)
        return false;
    for (size_t i = 0; i < k.len; i++)
        if ((unsigned char)k.ptr[i] < 0x20 || (unsigned char)k.ptr[i] > 0x7e)
            return false;
    return true;
}

static void deny_request(struct conn *c, int status, const char *reason, const char *type,
                         const char *param, const char *message)
{
    struct pg_decision *d = &c->vc->decision;
    d->verdict = PG_VERDICT_DENY;
    d->status = status;
    d->reason = reason;
    d->param = param;
    snprintf(d->message, sizeof(d->message), "%s", message);
    c->vc->error_type = type;
    send_verdict(c);
}

static void fill_who(struct pg_ledger_req *lr, const struct conn *c, int64_t now)
{
    snprintf(lr->org, sizeof(lr->org), "%s", c->agent->org);
    snprintf(lr->agent, sizeof(lr->agent), "%s", c->agent->id);
    lr->now = now;
}

static void fill_intent(struct pg_ledger_req *lr, const struct verdict_ctx *vc)
{
    const struct pg_intent *in = &vc->intent;
    lr->op = in->op;
    lr->action = in->action;
    lr->route = in->route;
    lr->has_amount = in->has_amount;
    lr->amount = in->amount;
    memcpy(lr->currency, in->currency, sizeof(lr->currency));
    copy_id(lr->counterparty, sizeof(lr->counterparty), in->counterparty);
    copy_id(lr->object_id, sizeof(lr->object_id), in->object_id);
}

/* A SETTLE for the request in progress: who, now, its key, fingerprint,
 * intent and reservation; the caller sets the outcome. */
static void fill_settle(struct pg_ledger_req *lr, const struct conn *c)
{
    const struct verdict_ctx *vc = c->vc;
    fill_who(lr, c, (int64_t)(now_ms_wall() / 1000));
    memcpy(lr->idem_key, vc->idem_key, sizeof(lr->idem_key));
    memcpy(lr->fingerprint, vc->fingerprint, sizeof(lr->fingerprint));
    fill_intent(lr, vc);
    lr->reservation = vc->reservation;
}

/* Writes a rail answer the ledger stored (or is about to store). */
static void send_stored(struct conn *c, int status, const char *head, size_t head_len,
                        const char *body, size_t body_len, bool replayed)
{
    bool close = !c->parser.keep_alive || c->srv->draining;
    if (close)
        c->close_after_write = true;
    conn_write(c, head, head_len);
    if (replayed)
        conn_write(c, "Idempotent-Replayed: true\r\n", 27);
    if (close)
        conn_write(c, "Connection: close\r\n", 19);
    conn_write(c, "\r\n", 2);
    conn_write(c, body, body_len);
    c->status = status;
    c->sent_head = true;
    conn_request_done(c);
}

static enum pg_settle_outcome settle_of(enum pg_outcome_kind k)
{
    switch (k) {
    case PG_OUTCOME_POST: return PG_SETTLE_POST;
    case PG_OUTCOME_VOID: return PG_SETTLE_VOID;
    case PG_OUTCOME_AUTHORIZED: return PG_SETTLE_AUTHORIZED;
    case PG_OUTCOME_KEEP: break;
    }
    return PG_SETTLE_KEEP;
}

/* A reservation nobody will answer for any more: void it when the rail never
 * saw the request, else keep it pending and let a retry resolve it. */
static void settle_orphan(struct money_op *op, struct server *srv, bool sent_to_rail)
{
    op->c = NULL;
    op->log = srv->log;
    op->step = STEP_ORPHAN;
    memset(&op->lr.response, 0, sizeof(op->lr.response));
    pg_ledger_req_free(&op->lr);
    op->lr.kind = PG_LEDGER_SETTLE;
    op->lr.prepare = NULL; /* the outcome is known: no answer to read */
    op->lr.outcome = sent_to_rail ? PG_SETTLE_KEEP : PG_SETTLE_VOID;
    op->lr.store_response = false;
    op->lr.status = 0;
    op->lr.deferrable = true;
    if (pg_ledger_submit(srv->ledger, &op->lr) != 0) {
        log_event(srv->log, "error", "could not settle an abandoned reservation; it stays pending",
                  "agent", op->lr.agent, NULL, NULL);
        op_free(op);
    }
}

static bool resend_of_unresolved(const struct pg_ledger_req *lr)
{
    return lr->decision.reason && strcmp(lr->decision.reason, "unresolved_retry") == 0;
}

static void ledger_done(struct pg_ledger_req *lr)
{
    struct money_op *op = (struct money_op *)(void *)lr;
    struct conn *c = op->c;

    if (op->step == STEP_ORPHAN) {
        if (lr->status < 0)
            log_event(op->log, "error", "could not settle an abandoned reservation; it stays pending",
                      "agent", lr->agent, NULL, NULL);
        op_free(op);
        return;
    }
    if (op->step == STEP_SETTLE_BEHIND) {
        if (lr->status < 0)
            log_event(op->log, "error",
                      "could not record the rail's answer; the reservation stays pending and the next retry of its key is re-sent to the rail",
                      "agent", lr->agent, NULL, NULL);
        op_free(op);
        return;
    }
    c->ledger_pending = false;
    metrics_commit_done(c);
    if (c->state == CONN_CLOSING) {
        /* The agent left while the ledger worked. */
        bool reserved = op->step == STEP_BEGIN && lr->status == 0 &&
                        lr->result == PG_BEGIN_PROCEED;
        bool maybe_sent = reserved && resend_of_unresolved(lr);
        struct server *srv = c->srv;
        conn_free_if_closed(c);
        if (reserved) {
            if (op->rt) {
                runtime_release(op->rt);
                op->rt = NULL;
            }
            settle_orphan(op, srv, maybe_sent);
        } else {
            op_free(op);
        }
        return;
    }
    struct verdict_ctx *vc = c->vc;
    c->state = CONN_UPSTREAM; /* neither reading nor closing: the answer comes next */
    switch (op->step) {
    case STEP_BEGIN:
        if (lr->status < 0) {
            op_free(op);
            fail_closed(c, "ledger_unavailable");
            return;
        }
        switch (lr->result) {
        case PG_BEGIN_PROCEED:
            vc->in_ledger = true;
            vc->reservation = lr->reservation;
            /* A resend of a request an earlier attempt may have delivered:
             * whatever happens now, the money may have moved. */
            vc->sent_to_rail = resend_of_unresolved(lr);
            op_free(op);
            c->state = CONN_UPSTREAM;
            upstream_forward(c);
            return;
        case PG_BEGIN_REPLAY:
            send_stored(c, lr->replay.status, lr->replay.head, lr->replay.head_len,
                        lr->replay.body, lr->replay.body_len, true);
            op_free(op);
            return;
        case PG_BEGIN_IN_FLIGHT:
            op_free(op);
            c->error = "idempotency_key_in_use";
            conn_send_error(c, 409, "invalid_request_error", "payguard_idempotency_key_in_use",
                            "A request with this Idempotency-Key is still in progress. Wait for it to finish, then retry with the same key to get its result.",
                            0);
            return;
        case PG_BEGIN_MISMATCH:
            op_free(op);
            deny_request(c, 400, "idempotency_mismatch", "idempotency_error", NULL,
                         "This Idempotency-Key was already used for a different request. Use a new key for a new payment; reuse a key only to retry the exact same request.");
            return;
        case PG_BEGIN_DECIDED:
            vc->decision = lr->decision;
            snprintf(vc->approval_id, sizeof(vc->approval_id), "%s", lr->approval_id);
            op_free(op);
            send_verdict(c);
            return;
        }
        op_free(op);
        fail_closed(c, "ledger_result");
        return;
    case STEP_SETTLE_ANSWER:
        if (lr->status < 0)
            log_event(c->srv->log, "error",
                      "could not record the rail's answer; the reservation stays pending", "agent",
                      lr->agent, NULL, NULL);
        vc->in_ledger = false;
        send_stored(c, vc->resp_status, vc->resp_head.p, vc->resp_head.len, vc->resp_body.p,
                    vc->resp_body.len, vc->rail_replayed);
        op_free(op);
        return;
    case STEP_SETTLE_FAIL: {
        vc->in_ledger = false;
        char message[512];
        memcpy(message, op->err_message, sizeof(message));
        int status = op->err_status;
        const char *type = op->err_type, *code = op->err_code;
        op_free(op);
        conn_send_error(c, status, type, code, message, 0);
        return;
    }
    case STEP_RECORD:
        if (lr->status < 0)
            log_event(c->srv->log, "error", "could not audit a denial", "agent", lr->agent, NULL,
                      NULL);
        op_free(op);
        send_verdict(c);
        return;
    case STEP_SETTLE_BEHIND:
    case STEP_ORPHAN:
        break;
    }
}

static struct money_op *op_new(struct conn *c, enum money_step step, enum pg_ledger_kind kind)
{
    struct money_op *op = calloc(1, sizeof(*op));
    if (!op)
        return NULL;
    op->c = c;
    op->step = step;
    op->lr.kind = kind;
    op->lr.cb = ledger_done;
    op->lr.data = op;
    return op;
}

static bool submit(struct conn *c, struct money_op *op)
{
    enum conn_state was = c->state;
    c->ledger_start_us = now_us();
    c->ledger_pending = true;
    c->state = CONN_LEDGER;
    if (pg_ledger_submit(c->srv->ledger, &op->lr) != 0) {
        c->ledger_pending = false;
        c->state = was;
        op_free(op);
        return false;
    }
    return true;
}

/* The key the rail sees: pg_ + base64url(SHA-256(agent NUL key)). Per agent,
 * so two agents' keys never collide at the rail, and stable, so a retry
 * reaches the rail under the same key. */
static int derive_rail_key(struct conn *c, struct pg_slice key)
{
    struct verdict_ctx *vc = c->vc;
    uint8_t derived[PG_SHA256_LEN];
    struct pg_slice kparts[3] = { pg_slice_cstr(c->agent->id), PG_SLICE("\0"), key };
    kparts[1].len = 1;
    copy_id(vc->idem_key, sizeof(vc->idem_key), key);
    memcpy(vc->rail_key, "pg_", 3);
    if (pg_sha256_parts(kparts, 3, derived) != 0 ||
        pg_base64url_encode(derived, sizeof(derived), vc->rail_key + 3, sizeof(vc->rail_key) - 3) < 0) {
        vc->rail_key[0] = '\0';
        return PG_ECRYPTO;
    }
    return 0;
}

int money_rail_key(struct conn *c)
{
    struct pg_msg *m = &c->parser.msg;
    int h = pg_msg_find(m, PG_SLICE("Idempotency-Key"));
    if (h < 0)
        return 0;
    struct pg_slice key = pg_msg_value(m, (uint32_t)h);
    if (!valid_idem_key(key))
        return PG_EPARSE;
    return derive_rail_key(c, key);
}

void money_begin(struct conn *c, const struct pg_org *org, int64_t now,
                 const struct pg_policy *policy)
{
    struct verdict_ctx *vc = c->vc;
    struct pg_msg *m = &c->parser.msg;
    vc->money = true;

    int h = pg_msg_find(m, PG_SLICE("Idempotency-Key"));
    if (h < 0) {
        deny_request(c, 400, "missing_idempotency_key", NULL, "Idempotency-Key",
                     "Money-moving requests need an Idempotency-Key header (1-255 printable ASCII characters). Make one per payment and send the same key when you retry it.");
        return;
    }
    struct pg_slice key = pg_msg_value(m, (uint32_t)h);
    uint32_t copies = 0;
    for (uint32_t i = 0; i < m->nhdrs; i++)
        copies += pg_slice_eq_nocase(pg_msg_name(m, i), PG_SLICE("Idempotency-Key")) ? 1u : 0u;
    if (copies != 1 || !valid_idem_key(key)) {
        deny_request(c, 400, "invalid_idempotency_key", NULL, "Idempotency-Key",
                     "The Idempotency-Key must be one header of 1-255 printable ASCII characters.");
        return;
    }
    if (vc->intent.counterparty.len > PG_COUNTERPARTY_MAX || vc->intent.object_id.len > PG_ID_MAX) {
        deny_request(c, 400, "field_too_long", NULL, NULL,
                     "An id in this request is longer than payguard accepts.");
        return;
    }

    const char *method = pg_reqparser_method(&c->parser);
    struct pg_slice target = pg_msg_target(m);
    struct pg_slice parts[5] = { pg_slice_cstr(method), PG_SLICE("\0"), target, PG_SLICE("\0"),
                                 pg_slice_of(m->body.p, m->body.len) };
    parts[1].len = parts[3].len = 1;
    if (pg_sha256_parts(parts, 5, vc->fingerprint) != 0 || derive_rail_key(c, key) != 0) {
        fail_closed(c, "hash_failed");
        return;
    }

    struct money_op *op = op_new(c, STEP_BEGIN, PG_LEDGER_BEGIN);
    if (!op) {
        fail_closed(c, "out_of_memory");
        return;
    }
    struct pg_ledger_req *lr = &op->lr;
    fill_who(lr, c, now);
    memcpy(lr->idem_key, vc->idem_key, sizeof(lr->idem_key));
    memcpy(lr->fingerprint, vc->fingerprint, sizeof(lr->fingerprint));
    fill_intent(lr, vc);
    lr->policy = policy;
    lr->agent_cfg = c->agent;
    pg_tz_windows(org->tz, now, &lr->windows);
    lr->decision = vc->decision;
    op->rt = c->rt;
    runtime_retain(op->rt);
    if (!submit(c, op))
        fail_closed(c, "ledger_unavailable");
}

void money_record_denial(struct conn *c, const struct pg_org *org, int64_t now)
{
    (void)org;
    struct money_op *op = op_new(c, STEP_RECORD, PG_LEDGER_RECORD);
    if (!op) {
        send_verdict(c);
        return;
    }
    fill_who(&op->lr, c, now);
    fill_intent(&op->lr, c->vc);
    op->lr.decision = c->vc->decision;
    if (!submit(c, op))
        send_verdict(c);
}

/* Queues the SETTLE behind the answer the agent gets now: the op keeps its
 * own copy of the answer for the ledger to store. A retry of the key queues
 * behind this SETTLE, so it replays the stored answer. Frees op on failure. */
static bool settle_behind(struct server *srv, struct money_op *op)
{
    struct pg_ledger_req *lr = &op->lr;
    size_t head_len = lr->response.head_len, body_len = lr->response.body_len;
    op->answer = malloc(head_len + body_len + 1);
    if (!op->answer) {
        op_free(op);
        return false;
    }
    memcpy(op->answer, lr->response.head, head_len);
    if (body_len)
        memcpy(op->answer + head_len, lr->response.body, body_len);
    lr->response.head = op->answer;
    lr->response.body = op->answer + head_len;
    op->c = NULL;
    op->log = srv->log;
    op->step = STEP_SETTLE_BEHIND;
    lr->deferrable = true;
    if (pg_ledger_submit(srv->ledger, lr) != 0) {
        op_free(op);
        return false;
    }
    return true;
}

/* What the rail's answer means for the reservation. Parsing a JSON answer
 * was the largest single piece of a payment's work on the loop thread, and
 * the agent's answer does not wait for it: the ledger's preparer thread runs
 * this while the SETTLE waits in the queue. */
static void read_answer(struct pg_ledger_req *lr)
{
    const struct money_op *op = CONTAINER_OF(lr, struct money_op, lr);
    struct pg_intent in = { .action = lr->action, .has_amount = lr->has_amount, .amount = lr->amount };
    struct pg_outcome out;
    pg_rail_outcome(op->preset, &in, lr->response.status,
                    pg_slice_of(lr->response.body, lr->response.body_len), &out);
    lr->outcome = settle_of(out.kind);
    lr->settle_amount = out.amount;
    snprintf(lr->result_object_id, sizeof(lr->result_object_id), "%s", out.object_id);
}

void money_rail_answered(struct conn *c)
{
    struct verdict_ctx *vc = c->vc;
    if (pg_buf_append_str(&vc->resp_head, "Content-Length: ") != 0 ||
        pg_buf_append_u64(&vc->resp_head, vc->resp_body.len) != 0 ||
        pg_buf_append(&vc->resp_head, "\r\n", 2) != 0) {
        money_fail(c, 503, "api_error", "payguard_unavailable",
                   "payguard ran out of memory holding the rail's answer; retry with the same Idempotency-Key.");
        return;
    }
    struct money_op *op = op_new(c, STEP_SETTLE_ANSWER, PG_LEDGER_SETTLE);
    if (!op) {
        vc->in_ledger = false;
        send_stored(c, vc->resp_status, vc->resp_head.p, vc->resp_head.len, vc->resp_body.p,
                    vc->resp_body.len, false);
        return;
    }
    struct pg_ledger_req *lr = &op->lr;
    fill_settle(lr, c);
    op->preset = c->rail->preset;
    lr->prepare = read_answer;
    lr->store_response = true;
    /* The ledger copies these in before the callback runs. */
    lr->response.status = vc->resp_status;
    lr->response.head = vc->resp_head.p;
    lr->response.head_len = vc->resp_head.len;
    lr->response.body = vc->resp_body.p;
    lr->response.body_len = vc->resp_body.len;
    c->up_done_us = now_us();
    if (!c->srv->settle_before_answer) {
        if (!settle_behind(c->srv, op))
            log_event(c->srv->log, "error",
                      "could not record the rail's answer; the reservation stays pending", "agent",
                      c->agent->id, NULL, NULL);
        vc->in_ledger = false;
        send_stored(c, vc->resp_status, vc->resp_head.p, vc->resp_head.len, vc->resp_body.p,
                    vc->resp_body.len, vc->rail_replayed);
        return;
    }
    if (!submit(c, op)) {
        log_event(c->srv->log, "error", "could not record the rail's answer; the reservation stays pending",
                  "agent", c->agent->id, NULL, NULL);
        vc->in_ledger = false;
        send_stored(c, vc->resp_status, vc->resp_head.p, vc->resp_head.len, vc->resp_body.p,
                    vc->resp_body.len, false);
    }
}

bool money_fail(struct conn *c, int status, const char *type, const char *code,
                const char *message)
{
    struct verdict_ctx *vc = c->vc;
    if (!vc || !vc->in_ledger || c->ledger_pending)
        return false;
    struct money_op *op = op_new(c, STEP_SETTLE_FAIL, PG_LEDGER_SETTLE);
    if (!op) {
        vc->in_ledger = false;
        return false;
    }
    op->err_status = status;
    op->err_type = type;
    op->err_code = code;
    snprintf(op->err_message, sizeof(op->err_message), "%s", message);
    struct pg_ledger_req *lr = &op->lr;
    fill_settle(lr, c);
    lr->outcome = vc->sent_to_rail ? PG_SETTLE_KEEP : PG_SETTLE_VOID;
    lr->store_response = false;
    if (!submit(c, op)) {
        vc->in_ledger = false;
        return false;
    }
    return true;
}

void money_abandon(struct conn *c)
{
    struct verdict_ctx *vc = c->vc;
    if (!vc || !vc->in_ledger || c->ledger_pending)
        return;
    vc->in_ledger = false;
    struct money_op *op = op_new(NULL, STEP_ORPHAN, PG_LEDGER_SETTLE);
    if (!op)
        return;
    struct pg_ledger_req *lr = &op->lr;
    fill_settle(lr, c);
    settle_orphan(op, c->srv, vc->sent_to_rail);
}
