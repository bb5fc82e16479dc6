/* Which reservation a rail object (pi_..., ch_...) belongs to, for the
 * follow-ups that act on it (confirm, capture, cancel, increment).
 *
 * A reservation record carries its object id, so the mapping is already
 * durable where it is written in order. Writing it again under the object
 * id, a random key, cost about two scattered pages per payment: a quarter of
 * what a payment wrote to disk. So the index over it lives in memory
 * (hindex.c), rebuilt from the reservations. Every candidate is read back
 * and its object id compared, so a stale entry (a reservation pruned by
 * another process) is skipped and a collision costs one read.
 * The `objects` tree keeps what ledgers wrote before, and the rare second
 * id of one reservation. */
#include "common/pg.h"
#include "ledger/ledger_int.h"

static uint64_t obj_hash(const struct hindex *x, const char *object_id)
{
    return hindex_hash(x, object_id, strnlen(object_id, PG_ID_MAX));
}

/* Fills the table from every reservation that names an object. */
int objects_build(struct ltx *t, struct hindex *x)
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
            !hindex_put(x, obj_hash(x, r.object_id), r.id)) {
            mdb_cursor_close(c);
            return PG_ENOMEM;
        }
        mrc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(c);
    return mrc == MDB_NOTFOUND ? 0 : ltx_fail(t, mrc);
}

struct best {
    const char *object_id;
    uint64_t id;
};

/* Keeps the best match so far: the newest reservation naming the object. */
static int consider(struct ltx *t, uint64_t id, void *arg)
{
    struct best *b = arg;
    if (id <= b->id)
        return 0;
    struct resv r;
    int rc = resv_get(t, id, &r);
    if (rc == PG_ENOTFOUND)
        return 0;
    if (rc != 0)
        return rc;
    if (strncmp(r.object_id, b->object_id, sizeof(r.object_id)) == 0)
        b->id = id;
    return 0;
}

int objects_get(struct ltx *t, const char *object_id, uint64_t *id)
{
    struct hindex *x = &t->l->objects;
    struct best b = { object_id, 0 };
    *id = 0;
    int rc = hindex_load(t, x, objects_build);
    if (rc == 0)
        rc = hindex_each(t, x, obj_hash(x, object_id), consider, &b);
    if (rc != 0)
        return rc;
    if (b.id) {
        *id = b.id;
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

int objects_index(struct ltx *t, const char *object_id, uint64_t id)
{
    return hindex_stage(t, &t->l->objects, obj_hash(&t->l->objects, object_id), id, true);
}

int objects_unindex(struct ltx *t, const char *object_id, uint64_t id)
{
    return hindex_stage(t, &t->l->objects, obj_hash(&t->l->objects, object_id), id, false);
}

int objects_put(struct ltx *t, const char *object_id, uint64_t id)
{
    uint8_t v[8];
    be64_put(v, id);
    return ltx_put(t, DB_OBJECTS, object_id, strnlen(object_id, PG_ID_MAX), v, sizeof(v));
}
