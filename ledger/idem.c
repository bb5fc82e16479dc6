/* Idempotency records: one per agent and Idempotency-Key, saying whether the
 * request is in flight (and from which process epoch), held for a human, or
 * done with the rail's answer stored for byte-exact replays. */
#include "common/pg.h"
#include "ledger/ledger_int.h"

static void idem_encode(struct enc *e, const struct idem *r, const struct pg_stored_response *resp)
{
    enc_u8(e, LEDGER_REC_V1);
    enc_u8(e, r->state);
    enc_u8(e, r->op);
    enc_u8(e, r->action);
    enc_u8(e, r->flags);
    enc_bytes(e, r->currency, 3);
    enc_u64(e, r->epoch);
    enc_i64(e, r->created_at);
    enc_i64(e, r->updated_at);
    enc_u64(e, r->reservation);
    enc_i64(e, r->day_start);
    enc_i64(e, r->delta);
    enc_bytes(e, r->fingerprint, PG_SHA256_LEN);
    enc_str(e, r->approval_id);
    if (r->state != IDEM_DONE)
        return;
    /* Lengths were checked against LEDGER_RESPONSE_MAX by the caller. */
    enc_u32(e, (uint32_t)resp->status);
    enc_u32(e, (uint32_t)resp->head_len);
    enc_u32(e, (uint32_t)resp->body_len);
    enc_bytes(e, resp->head, resp->head_len);
    enc_bytes(e, resp->body, resp->body_len);
}

int idem_get(struct ltx *t, const uint8_t *key, size_t kn, struct idem *r)
{
    MDB_val v;
    int rc = ltx_get(t, DB_IDEM, key, kn, &v);
    if (rc != 0)
        return rc;
    struct dec d = { v.mv_data, v.mv_size, 0, false };
    memset(r, 0, sizeof(*r));
    if (dec_u8(&d) != LEDGER_REC_V1)
        return ltx_fail(t, MDB_CORRUPTED);
    r->state = dec_u8(&d);
    r->op = dec_u8(&d);
    r->action = dec_u8(&d);
    r->flags = dec_u8(&d);
    dec_bytes(&d, r->currency, 3);
    r->epoch = dec_u64(&d);
    r->created_at = dec_i64(&d);
    r->updated_at = dec_i64(&d);
    r->reservation = dec_u64(&d);
    r->day_start = dec_i64(&d);
    r->delta = dec_i64(&d);
    dec_bytes(&d, r->fingerprint, PG_SHA256_LEN);
    dec_str(&d, r->approval_id, sizeof(r->approval_id));
    if (r->state == IDEM_DONE) {
        r->status = (int)(int32_t)dec_u32(&d);
        r->head_len = dec_u32(&d);
        r->body_len = dec_u32(&d);
        r->head = dec_take(&d, r->head_len);
        r->body = dec_take(&d, r->body_len);
    }
    if (d.bad || r->state < IDEM_IN_FLIGHT || r->state > IDEM_HELD)
        return ltx_fail(t, MDB_CORRUPTED);
    return 0;
}

int idem_put(struct ltx *t, const uint8_t *key, size_t kn, const struct idem *r,
             const struct pg_stored_response *resp)
{
    static const struct pg_stored_response none = { 0, NULL, 0, NULL, 0 };
    if (!resp)
        resp = &none;
    /* Sized first, then written straight into the page LMDB reserves: no
     * copy of a large stored answer through a scratch buffer. */
    struct enc e = { NULL, 0, 0 };
    idem_encode(&e, r, resp);
    void *dst;
    int rc = ltx_reserve(t, DB_IDEM, key, kn, e.len, &dst);
    if (rc != 0)
        return rc;
    struct enc w = { dst, e.len, 0 };
    idem_encode(&w, r, resp);
    return 0;
}
