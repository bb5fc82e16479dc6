/* Idempotency records: one per agent and Idempotency-Key, saying whether the
 * request is in flight (and from which process epoch), held for a human, or
 * done with the rail's answer stored for byte-exact replays. Records live
 * under their id and are found by key through the in-memory index (see
 * ledger_int.h). The answers themselves live in their own database (see
 * resp_put). */
#include "common/pg.h"
#include "ledger/ledger_int.h"

#include <stdlib.h>

/* The key follows the id, length-prefixed (it holds a NUL between agent and
 * Idempotency-Key); records written before ids or before keys end earlier. */
static void idem_encode(struct enc *e, const struct idem *r, const uint8_t *key, size_t kn)
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
    enc_u64(e, r->response);
    enc_str(e, r->approval_id);
    enc_u64(e, r->iid);
    uint8_t b[2] = { (uint8_t)kn, (uint8_t)(kn >> 8) };
    enc_bytes(e, b, 2);
    enc_bytes(e, key, kn);
}

/* *key gets the record's key, empty when it carries none. */
static int idem_decode(struct ltx *t, const MDB_val *v, struct idem *r, struct pg_slice *key)
{
    struct dec d = { v->mv_data, v->mv_size, 0, false };
    memset(r, 0, sizeof(*r));
    *key = (struct pg_slice){ "", 0 };
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
    r->response = dec_u64(&d);
    dec_str(&d, r->approval_id, sizeof(r->approval_id));
    if (!d.bad && d.off < d.len)
        r->iid = dec_u64(&d);
    if (!d.bad && d.off < d.len) {
        const uint8_t *b = dec_take(&d, 2);
        size_t kn = b ? (size_t)(b[0] | b[1] << 8) : 0;
        const uint8_t *k = dec_take(&d, kn);
        if (k)
            *key = pg_slice_of((const char *)k, kn);
    }
    if (d.bad || d.off != d.len || r->state < IDEM_IN_FLIGHT || r->state > IDEM_HELD)
        return ltx_fail(t, MDB_CORRUPTED);
    return 0;
}

static int by_id(struct ltx *t, uint64_t iid, struct idem *r, struct pg_slice *key)
{
    uint8_t k[8];
    MDB_val v;
    be64_put(k, iid);
    int rc = ltx_get(t, DB_IDEM_BY_ID, k, sizeof(k), &v);
    if (rc != 0 || (rc = idem_decode(t, &v, r, key)) != 0)
        return rc;
    return r->iid == iid ? 0 : ltx_fail(t, MDB_CORRUPTED);
}

/* Files every record that carries its key. */
int idem_build(struct ltx *t, struct hindex *x)
{
    MDB_cursor *c;
    int rc = ltx_cursor(t, DB_IDEM_BY_ID, &c);
    if (rc != 0)
        return rc;
    MDB_val k, v;
    int mrc = mdb_cursor_get(c, &k, &v, MDB_FIRST);
    while (mrc == 0) {
        struct idem r;
        struct pg_slice key;
        if (k.mv_size != 8 || (rc = idem_decode(t, &v, &r, &key)) != 0 ||
            r.iid != be64_get(k.mv_data)) {
            mdb_cursor_close(c);
            return rc ? rc : ltx_fail(t, MDB_CORRUPTED);
        }
        if (key.len && !hindex_put(x, hindex_hash(x, key.ptr, key.len), r.iid)) {
            mdb_cursor_close(c);
            return PG_ENOMEM;
        }
        mrc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(c);
    return mrc == MDB_NOTFOUND ? 0 : ltx_fail(t, mrc);
}

struct find {
    const uint8_t *key;
    size_t kn;
    struct idem *r;
};

/* 1 when the record under iid is the one for f->key. */
static int matches(struct ltx *t, uint64_t iid, void *arg)
{
    struct find *f = arg;
    struct pg_slice key;
    int rc = by_id(t, iid, f->r, &key);
    if (rc == PG_ENOTFOUND)
        return 0; /* removed since it was filed */
    if (rc != 0)
        return rc;
    return key.len == f->kn && memcmp(key.ptr, f->key, f->kn) == 0;
}

int idem_get(struct ltx *t, const uint8_t *key, size_t kn, struct idem *r)
{
    struct hindex *x = &t->l->idem;
    struct find f = { key, kn, r };
    int rc = hindex_load(t, x, idem_build);
    if (rc == 0)
        rc = hindex_each(t, x, hindex_hash(x, key, kn), matches, &f);
    if (rc != 0)
        return rc > 0 ? 0 : rc;
    /* A ledger from before: the record under its key, and its latest
     * version under its id when it has one. */
    MDB_val v;
    struct pg_slice ignored;
    rc = ltx_get(t, DB_IDEM, key, kn, &v);
    if (rc != 0 || (rc = idem_decode(t, &v, r, &ignored)) != 0 || !r->iid)
        return rc;
    struct idem newer;
    rc = by_id(t, r->iid, &newer, &ignored);
    if (rc == PG_ENOTFOUND)
        return 0; /* never changed since its first write */
    if (rc == 0)
        *r = newer;
    return rc;
}

int idem_put(struct ltx *t, const uint8_t *key, size_t kn, struct idem *r)
{
    bool first = r->iid == 0;
    int rc;
    if (kn > LEDGER_KEY_MAX)
        return PG_ETOOBIG;
    if (first && (rc = ltx_next_id(t, CTR_IDEM, &r->iid)) != 0)
        return rc;
    uint8_t buf[256 + LEDGER_KEY_MAX], k[8];
    struct enc e = { buf, sizeof(buf), 0 };
    idem_encode(&e, r, key, kn);
    if (e.len > sizeof(buf))
        return PG_ETOOBIG; /* cannot happen: every field is bounded */
    be64_put(k, r->iid);
    if ((rc = ltx_put(t, DB_IDEM_BY_ID, k, sizeof(k), buf, e.len)) != 0)
        return rc;
    /* A record that moves here from a ledger from before is filed too. */
    return first ? hindex_stage(t, &t->l->idem, hindex_hash(&t->l->idem, key, kn), r->iid, true)
                 : 0;
}

int idem_del(struct ltx *t, const uint8_t *key, size_t kn, const struct idem *r)
{
    int rc = ltx_del(t, DB_IDEM, key, kn);
    if (rc != 0 || !r->iid)
        return rc;
    uint8_t k[8];
    be64_put(k, r->iid);
    if ((rc = ltx_del(t, DB_IDEM_BY_ID, k, sizeof(k))) != 0)
        return rc;
    return hindex_stage(t, &t->l->idem, hindex_hash(&t->l->idem, key, kn), r->iid, false);
}

int resp_put(struct ltx *t, const struct pg_stored_response *resp, uint64_t *id)
{
    uint8_t k[8];
    int rc = ltx_next_id(t, CTR_RESP, id);
    if (rc != 0)
        return rc;
    be64_put(k, *id);
    /* Lengths were checked against LEDGER_RESPONSE_MAX by the caller. The
     * value is written straight into the page LMDB reserves. */
    struct enc e = { NULL, 0, 0 };
    for (int pass = 0; pass < 2; pass++) {
        enc_u8(&e, LEDGER_REC_V1);
        enc_u32(&e, (uint32_t)resp->status);
        enc_u32(&e, (uint32_t)resp->head_len);
        enc_u32(&e, (uint32_t)resp->body_len);
        enc_bytes(&e, resp->head, resp->head_len);
        enc_bytes(&e, resp->body, resp->body_len);
        if (pass == 0) {
            void *dst;
            if ((rc = ltx_reserve(t, DB_RESPONSES, k, sizeof(k), e.len, true, &dst)) != 0)
                return rc;
            e = (struct enc){ dst, e.len, 0 };
        }
    }
    return 0;
}

int resp_get(struct ltx *t, uint64_t id, struct pg_stored_response *out)
{
    uint8_t k[8];
    MDB_val v;
    be64_put(k, id);
    int rc = ltx_get(t, DB_RESPONSES, k, sizeof(k), &v);
    if (rc != 0)
        return rc;
    struct dec d = { v.mv_data, v.mv_size, 0, false };
    bool ok = dec_u8(&d) == LEDGER_REC_V1;
    int status = (int)(int32_t)dec_u32(&d);
    uint32_t hn = dec_u32(&d), bn = dec_u32(&d);
    const uint8_t *head = dec_take(&d, hn), *body = dec_take(&d, bn);
    if (!ok || d.bad)
        return ltx_fail(t, MDB_CORRUPTED);
    /* The bytes live in the LMDB page: copy them out before the txn ends. */
    char *h = malloc((size_t)hn + 1), *b = malloc((size_t)bn + 1);
    if (!h || !b) {
        free(h);
        free(b);
        return PG_ENOMEM;
    }
    if (hn)
        memcpy(h, head, hn);
    if (bn)
        memcpy(b, body, bn);
    h[hn] = b[bn] = '\0';
    *out = (struct pg_stored_response){ status, h, hn, b, bn };
    return 0;
}
