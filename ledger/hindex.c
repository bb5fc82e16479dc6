/* In-memory indexes over records kept in id order: an open-addressing table
 * from a keyed SHA-256 of an outside string to record ids. The table is a
 * hint, never the truth: callers read every candidate back and compare its
 * string. It changes only once a transaction has committed (staged hops),
 * under index_mu, which ltx_commit holds across the LMDB commit so that no
 * other transaction of this process reads a table older than the data. */
#include "common/pg.h"
#include "crypto/crypto.h"
#include "ledger/ledger_int.h"

#include <stdlib.h>

#define SLOT_EMPTY 0
#define SLOT_GONE 1
#define MIN_CAP 1024u

int ledger_indexes_init(struct pg_ledger *l)
{
    memset(&l->objects, 0, sizeof(l->objects));
    memset(&l->idem, 0, sizeof(l->idem));
    if (pg_random(l->objects.salt, sizeof(l->objects.salt)) != 0 ||
        pg_random(l->idem.salt, sizeof(l->idem.salt)) != 0)
        return PG_ECRYPTO;
    return pthread_mutex_init(&l->index_mu, NULL) ? PG_ENOMEM : 0;
}

void ledger_indexes_free(struct pg_ledger *l)
{
    free(l->objects.slots);
    free(l->idem.slots);
    l->objects.slots = l->idem.slots = NULL;
    pthread_mutex_destroy(&l->index_mu);
}

uint64_t hindex_hash(const struct hindex *x, const void *p, size_t n)
{
    struct pg_slice parts[2] = {
        pg_slice_of((const char *)x->salt, sizeof(x->salt)),
        pg_slice_of(p, n),
    };
    uint8_t d[PG_SHA256_LEN];
    uint64_t h = 0;
    if (pg_sha256_parts(parts, 2, d) == 0)
        memcpy(&h, d, sizeof(h));
    return h <= SLOT_GONE ? h + 2 : h;
}

/* Room for `more` new entries without growing; false when it cannot grow. */
static bool hindex_room(struct hindex *x, size_t more)
{
    if ((x->used + more) * 10 <= x->cap * 6)
        return true;
    size_t cap = x->cap ? x->cap : MIN_CAP;
    while ((x->live + more) * 10 > cap * 5)
        cap *= 2;
    struct hslot *s = calloc(cap, sizeof(*s));
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
    return true;
}

bool hindex_put(struct hindex *x, uint64_t h, uint64_t id)
{
    if (!hindex_room(x, 1))
        return false;
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

static void hindex_del(struct hindex *x, uint64_t h, uint64_t id)
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

int hindex_load(struct ltx *t, struct hindex *x, int (*build)(struct ltx *t, struct hindex *x))
{
    int rc = 0;
    pthread_mutex_lock(&t->l->index_mu);
    if (!x->built && (rc = build(t, x)) == 0)
        x->built = true;
    pthread_mutex_unlock(&t->l->index_mu);
    return rc;
}

int hindex_each(struct ltx *t, struct hindex *x, uint64_t h,
                int (*fn)(struct ltx *t, uint64_t id, void *arg), void *arg)
{
    int rc = 0;
    pthread_mutex_lock(&t->l->index_mu);
    if (x->cap) {
        size_t mask = x->cap - 1;
        for (size_t i = h & mask; rc == 0 && x->slots[i].h != SLOT_EMPTY; i = (i + 1) & mask)
            if (x->slots[i].h == h)
                rc = fn(t, x->slots[i].id, arg);
    }
    pthread_mutex_unlock(&t->l->index_mu);
    for (size_t i = 0; rc == 0 && i < t->nhops; i++)
        if (t->hops[i].x == x && t->hops[i].put && t->hops[i].h == h)
            rc = fn(t, t->hops[i].id, arg);
    return rc;
}

int hindex_stage(struct ltx *t, struct hindex *x, uint64_t h, uint64_t id, bool put)
{
    if (t->nhops == t->cap_hops) {
        size_t cap = t->cap_hops ? t->cap_hops * 2 : 64;
        struct hop *ops = realloc(t->hops, cap * sizeof(*ops));
        if (!ops)
            return PG_ENOMEM;
        t->hops = ops;
        t->cap_hops = cap;
    }
    t->hops[t->nhops++] = (struct hop){ .x = x, .h = h, .id = id, .put = put };
    return 0;
}

int ledger_indexes_load(struct ltx *t)
{
    int rc = hindex_load(t, &t->l->objects, objects_build);
    return rc ? rc : hindex_load(t, &t->l->idem, idem_build);
}

int ledger_indexes_lock(struct ltx *t)
{
    if (!t->nhops)
        return 0;
    pthread_mutex_lock(&t->l->index_mu);
    t->index_locked = true;
    /* Room for every entry now, so that applying them after the commit
     * cannot fail: an idempotency key the disk has and the index lacks
     * would let a retry count as new spend. */
    size_t puts[2] = { 0, 0 };
    for (size_t i = 0; i < t->nhops; i++)
        if (t->hops[i].put)
            puts[t->hops[i].x == &t->l->idem]++;
    if ((t->l->objects.built && !hindex_room(&t->l->objects, puts[0])) ||
        (t->l->idem.built && !hindex_room(&t->l->idem, puts[1]))) {
        pthread_mutex_unlock(&t->l->index_mu);
        t->index_locked = false;
        return PG_ENOMEM;
    }
    return 0;
}

void ledger_indexes_finish(struct ltx *t, bool committed)
{
    /* Not built yet: the build reads what was committed. */
    for (size_t i = 0; committed && t->index_locked && i < t->nhops; i++) {
        struct hop *o = &t->hops[i];
        if (!o->x->built)
            continue;
        if (o->put)
            (void)hindex_put(o->x, o->h, o->id); /* room was made before the commit */
        else
            hindex_del(o->x, o->h, o->id);
    }
    if (t->index_locked)
        pthread_mutex_unlock(&t->l->index_mu);
    t->index_locked = false;
    free(t->hops);
    t->hops = NULL;
    t->nhops = t->cap_hops = 0;
}
