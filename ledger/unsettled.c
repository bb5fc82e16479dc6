/* Keys whose SETTLE did not apply: its batch failed to commit (disk full,
 * map full at its maximum, I/O) or the item itself failed. Their record still
 * says IN_FLIGHT under this process's epoch, which BEGIN would answer with
 * 409 until a restart. Instead the next BEGIN of such a key resends it as
 * unresolved, exactly as after a restart. Writer thread only; it holds
 * failures only, so a plain array does. */
#include "common/pg.h"
#include "ledger/ledger_int.h"

#include <stdlib.h>
#include <string.h>

/* Past this a key waits for a restart, as it did before this set existed. */
#define UNSETTLED_MAX 65536u

struct unsettled_key {
    uint8_t *key;                    /* agent \0 Idempotency-Key, as in DB_IDEM */
    size_t kn;
    bool claimed;                    /* resent by a BEGIN of the batch being written */
};

struct unsettled {
    struct unsettled_key *v;
    size_t n, cap;
};

static struct unsettled_key *find(struct unsettled *u, const uint8_t *key, size_t kn)
{
    for (size_t i = 0; u && i < u->n; i++)
        if (u->v[i].kn == kn && memcmp(u->v[i].key, key, kn) == 0)
            return &u->v[i];
    return NULL;
}

bool ledger_unsettled_claim(struct pg_ledger *l, const uint8_t *key, size_t kn)
{
    struct unsettled_key *e = find(l->unsettled, key, kn);
    if (!e || e->claimed)
        return false;
    e->claimed = true;
    return true;
}

void ledger_unsettled_add(struct pg_ledger *l, const uint8_t *key, size_t kn)
{
    struct unsettled *u = l->unsettled;
    if (!u && !(u = l->unsettled = calloc(1, sizeof(*u))))
        return;
    struct unsettled_key *e = find(u, key, kn);
    if (e) {
        e->claimed = false;
        return;
    }
    if (u->n == UNSETTLED_MAX)
        return;
    if (u->n == u->cap) {
        size_t cap = u->cap ? u->cap * 2 : 16;
        struct unsettled_key *v = realloc(u->v, cap * sizeof(*v));
        if (!v)
            return;
        u->v = v;
        u->cap = cap;
    }
    uint8_t *copy = malloc(kn);
    if (!copy)
        return;
    memcpy(copy, key, kn);
    u->v[u->n++] = (struct unsettled_key){ copy, kn, false };
}

void ledger_unsettled_batch_done(struct pg_ledger *l, bool committed)
{
    struct unsettled *u = l->unsettled;
    size_t keep = 0;
    for (size_t i = 0; u && i < u->n; i++) {
        struct unsettled_key e = u->v[i];
        if (e.claimed && committed) {
            free(e.key); /* resent: its record is IN_FLIGHT for real now */
            continue;
        }
        e.claimed = false;
        u->v[keep++] = e;
    }
    if (u)
        u->n = keep;
}

void ledger_unsettled_free(struct pg_ledger *l)
{
    struct unsettled *u = l->unsettled;
    for (size_t i = 0; u && i < u->n; i++)
        free(u->v[i].key);
    if (u)
        free(u->v);
    free(u);
    l->unsettled = NULL;
}
