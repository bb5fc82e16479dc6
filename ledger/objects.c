/* Which reservation a rail object (pi_..., ch_...) belongs to, for the
 * follow-ups that act on it (confirm, capture, cancel, increment).
 *
 * A reservation record carries its object id, so the mapping is already
 * durable where it is written in order. Writing it again under the object
 * id, a random key, cost about two scattered pages per payment: a quarter of
 * what a payment wrote to disk. So the index over it lives in memory: a
 * hash table from a keyed SHA-256 of the object id to reservation ids,
 * rebuilt from the reservations when first used, changed only once a
 * transaction has committed. It is a hint, never the truth: every candidate
 * is read back and its object id compared, so a stale entry (a reservation
 * pruned by another process) is skipped and a collision costs one read.
 * The `objects` tree keeps what ledgers wrote before, and the rare second
 * id of one reservation. */
#include "common/pg.h"
#include "crypto/crypto.h"
#include "ledger/ledger_int.h"

#include <stdlib.h>

#define SLOT_EMPTY 0
#define SLOT_GONE 1
#define MIN_CAP 1024u

static uint64_t obj_hash(const struct objindex *x, const char *object_id)
{
    struct pg_slice parts[2] = {
        pg_slice_of((const char *)x->salt, sizeof(x->salt)),
        pg_slice_of(object_id, strnlen(object_id, PG_ID_MAX)),
    };
    uint8_t d[PG_SHA256_LEN];
    uint64_t h = 0;
    if (pg_sha256_parts(parts, 2, d) == 0)
        memcpy(&h, d, sizeof(h));
    return h <= SLOT_GONE ? h + 2 : h;
}

/* Without the lock (callers hold it). False when it cannot grow. */
static bool slot_put(struct objindex *x, uint64_t h, uint64_t id)
{
    if ((x->used + 1) * 10 > x->cap * 6) {
        size_t cap = x->cap ? x->cap : MIN_CAP;
        while ((x->live + 1) * 10 > cap * 5)
            cap *= 2;
        struct objslot *s = calloc(cap, sizeof(*s));
        if (!s)
            return false;
        for (size_t i = 0; i < x->cap; i++) {
            if (x->slots[i].h <= SLOT_GONE)
                continue;
            size_t j = x->slots[i].h & (cap - 1);
            while (s[j].h != SLOT_EMPTY)
                j = (j + 1) & (cap - 1);
            s[j] = x->slots[i];
        }
        free(x->slots);
        x->slots = s;
        x->cap = cap;
        x->used = x->live;
    }
    size_t mask = x->cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        if (x->slots[i].h == h && x->slots[i].id == id)
            return true;
        if (x->slots[i].h == SLOT_EMPTY) {
            x->slots[i].h = h;
            x->slots[i].id = id;
            x->used++;
            x->live++;
            return true;
        }
    }
}

static void slot_del(struct objindex *x, uint64_t h, uint64_t id)
{
    if (!x->cap)
        return;
    size_t mask = x->cap - 1;
    for (size_t i = h & mask; x->slots[i].h != SLOT_EMPTY; i = (i + 1) & mask) {
        if (x->slots[i].h == h && x->slots[i].id == id) {
            x->slots[i].h = SLOT_GONE;
            x->live--;
            return;
        }
    }
}

int ledger_objects_init(struct pg_ledger *l)
{
    memset(&l->objects, 0, sizeof(l->objects));
    if (pg_random(l->objects.salt, sizeof(l->objects.salt)) != 0)
        return PG_ECRYPTO;
    return pthread_mutex_init(&l->objects.mu, NULL) ? PG_ENOMEM : 0;
}

void ledger_objects_free(struct pg_ledger *l)
{
    free(l->objects.slots);
    l->objects.slots = NULL;
    pthread_mutex_destroy(&l->objects.mu);
}

/* Fills the table from every reservation that names an object. Lock held. */
static int build(struct ltx *t, struct objindex *x)
{
    MDB_cursor *c;
    int rc = ltx_cursor(t, DB_RESV, &c);
    if (rc != 0)
        return rc;
    MDB_val k, v;
    int mrc = mdb_cursor_get(c, &k, &v, MDB_FIRST);
    while (mrc == 0) {
        struct resv r;
        if (k.mv_size == 8 && resv_decode(&v, be64_get(k.mv_data), &r) && r.object_id[0] &&
            !slot_put(x, obj_hash(x, r.object_id), r.id)) {
            mdb_cursor_close(c);
            return PG_ENOMEM;
        }
        mrc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(c);
    if (mrc != MDB_NOTFOUND)
        return ltx_fail(t, mrc);
    x->built = true;
    return 0;
}

int ledger_objects_load(struct ltx *t)
{
    struct objindex *x = &t->l->objects;
    pthread_mutex_lock(&x->mu);
    int rc = x->built ? 0 : build(t, x);
    pthread_mutex_unlock(&x->mu);
    return rc;
}

/* Keeps the best match so far: the newest reservation naming the object. */
static int consider(struct ltx *t, const char *object_id, uint64_t id, uint64_t *best)
{
    if (id <= *best)
        return 0;
    struct resv r;
    int rc = resv_get(t, id, &r);
    if (rc == PG_ENOTFOUND)
        return 0;
    if (rc != 0)
        return rc;
    if (strncmp(r.object_id, object_id, sizeof(r.object_id)) == 0)
        *best = id;
    return 0;
}

int objects_get(struct ltx *t, const char *object_id, uint64_t *id)
{
    struct objindex *x = &t->l->objects;
    *id = 0;
    uint64_t h = obj_hash(x, object_id), best = 0;
    int rc = 0;
    pthread_mutex_lock(&x->mu);
    if (!x->built)
        rc = build(t, x);
    if (rc == 0 && x->cap) {
        size_t mask = x->cap - 1;
        for (size_t i = h & mask; rc == 0 && x->slots[i].h != SLOT_EMPTY; i = (i + 1) & mask)
            if (x->slots[i].h == h)
                rc = consider(t, object_id, x->slots[i].id, &best);
    }
    pthread_mutex_unlock(&x->mu);
    for (size_t i = 0; rc == 0 && i < t->nobj_ops; i++)
        if (t->obj_ops[i].put && t->obj_ops[i].h == h)
            rc = consider(t, object_id, t->obj_ops[i].id, &best);
    if (rc != 0)
        return rc;
    if (best) {
        *id = best;
        return 0;
    }
    MDB_val v;
    rc = ltx_get(t, DB_OBJECTS, object_id, strnlen(object_id, PG_ID_MAX), &v);
    if (rc != 0)
        return rc;
    if (v.mv_size != 8)
        return ltx_fail(t, MDB_CORRUPTED);
    *id = be64_get(v.mv_data);
    return 0;
}

static int stage(struct ltx *t, const char *object_id, uint64_t id, bool put)
{
    if (t->nobj_ops == t->cap_obj_ops) {
        size_t cap = t->cap_obj_ops ? t->cap_obj_ops * 2 : 64;
        struct objop *ops = realloc(t->obj_ops, cap * sizeof(*ops));
        if (!ops)
            return PG_ENOMEM;
        t->obj_ops = ops;
        t->cap_obj_ops = cap;
    }
    t->obj_ops[t->nobj_ops++] =
        (struct objop){ .h = obj_hash(&t->l->objects, object_id), .id = id, .put = put };
    return 0;
}

int objects_index(struct ltx *t, const char *object_id, uint64_t id)
{
    return stage(t, object_id, id, true);
}

int objects_unindex(struct ltx *t, const char *object_id, uint64_t id)
{
    return stage(t, object_id, id, false);
}

int objects_put(struct ltx *t, const char *object_id, uint64_t id)
{
    uint8_t v[8];
    be64_put(v, id);
    return ltx_put(t, DB_OBJECTS, object_id, strnlen(object_id, PG_ID_MAX), v, sizeof(v));
}

void ledger_objects_lock(struct ltx *t)
{
    if (t->nobj_ops) {
        pthread_mutex_lock(&t->l->objects.mu);
        t->obj_locked = true;
    }
}

void ledger_objects_finish(struct ltx *t, bool committed)
{
    struct objindex *x = &t->l->objects;
    /* A table that cannot grow loses the entry: the object then reads as
     * unknown and its follow-ups count as new spend, which errs on the side
     * of the budget. Not built yet: the build reads what was committed. */
    for (size_t i = 0; committed && t->obj_locked && x->built && i < t->nobj_ops; i++) {
        if (t->obj_ops[i].put)
            (void)slot_put(x, t->obj_ops[i].h, t->obj_ops[i].id);
        else
            slot_del(x, t->obj_ops[i].h, t->obj_ops[i].id);
    }
    if (t->obj_locked)
        pthread_mutex_unlock(&x->mu);
    t->obj_locked = false;
    free(t->obj_ops);
    t->obj_ops = NULL;
    t->nobj_ops = t->cap_obj_ops = 0;
}
