/* The verified-token cache and the auth-failure limiter: small fixed-size
 * hash tables owned by the loop thread. A full table overwrites its oldest
 * slot in the probe window rather than growing: both are caches. */
#include "common/pg.h"
#include "auth/auth.h"

#include <netinet/in.h>
#include <stdlib.h>

#define PROBE 8

struct cache_entry {
    uint8_t digest[PG_SHA256_LEN];
    char *agent_id;       /* the agent it verified as */
    char *token_hash;     /* the hash it verified against: stale after a change */
    bool used;
};

struct pg_token_cache {
    struct cache_entry *slots;
    size_t mask;
    size_t next_victim;
};

static size_t pow2_at_least(size_t n)
{
    size_t p = 16;
    while (p < n)
        p <<= 1;
    return p;
}

struct pg_token_cache *pg_token_cache_new(size_t capacity)
{
    struct pg_token_cache *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    size_t n = pow2_at_least(capacity);
    c->slots = calloc(n, sizeof(*c->slots));
    if (!c->slots) {
        free(c);
        return NULL;
    }
    c->mask = n - 1;
    return c;
}

static void entry_clear(struct cache_entry *e)
{
    free(e->agent_id);
    free(e->token_hash);
    memset(e, 0, sizeof(*e));
}

void pg_token_cache_free(struct pg_token_cache *c)
{
    if (!c)
        return;
    for (size_t i = 0; i <= c->mask; i++)
        entry_clear(&c->slots[i]);
    free(c->slots);
    free(c);
}

static size_t slot_of(const uint8_t digest[PG_SHA256_LEN])
{
    size_t h;
    memcpy(&h, digest, sizeof(h));
    return h;
}

const struct pg_agent *pg_token_cache_get(struct pg_token_cache *c, const struct pg_config *cfg,
                                          const uint8_t digest[PG_SHA256_LEN])
{
    size_t base = slot_of(digest);
    for (size_t i = 0; i < PROBE; i++) {
        struct cache_entry *e = &c->slots[(base + i) & c->mask];
        if (!e->used || !pg_ct_equal(e->digest, digest, PG_SHA256_LEN))
            continue;
        const struct pg_agent *a = pg_config_agent(cfg, pg_slice_cstr(e->agent_id));
        if (a && a->token_hash && strcmp(a->token_hash, e->token_hash) == 0)
            return a;
        entry_clear(e); /* agent gone or token rotated */
        return NULL;
    }
    return NULL;
}

int pg_token_cache_put(struct pg_token_cache *c, const uint8_t digest[PG_SHA256_LEN],
                       const struct pg_agent *agent)
{
    size_t base = slot_of(digest);
    struct cache_entry *slot = NULL;
    for (size_t i = 0; i < PROBE && !slot; i++) {
        struct cache_entry *e = &c->slots[(base + i) & c->mask];
        if (!e->used || memcmp(e->digest, digest, PG_SHA256_LEN) == 0)
            slot = e;
    }
    if (!slot)
        slot = &c->slots[(base + c->next_victim++ % PROBE) & c->mask];
    entry_clear(slot);
    slot->agent_id = strdup(agent->id);
    slot->token_hash = strdup(agent->token_hash);
    if (!slot->agent_id || !slot->token_hash) {
        entry_clear(slot);
        return PG_ENOMEM;
    }
    memcpy(slot->digest, digest, PG_SHA256_LEN);
    slot->used = true;
    return 0;
}

struct limiter_entry {
    uint8_t addr[16];
    uint64_t window_start_ms;
    uint32_t failures;
    bool used;
};

#define LIMITER_SLOTS 4096
#define LIMITER_WINDOW_MS 60000u

struct pg_auth_limiter {
    struct limiter_entry slots[LIMITER_SLOTS];
    uint32_t limit;
};

struct pg_auth_limiter *pg_auth_limiter_new(uint32_t limit)
{
    struct pg_auth_limiter *l = calloc(1, sizeof(*l));
    if (l)
        l->limit = limit;
    return l;
}

void pg_auth_limiter_free(struct pg_auth_limiter *l)
{
    free(l);
}

void pg_auth_limiter_set_limit(struct pg_auth_limiter *l, uint32_t limit)
{
    l->limit = limit;
}

static void addr_key(const struct sockaddr *sa, uint8_t key[16])
{
    memset(key, 0, 16);
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
        key[10] = 0xff;
        key[11] = 0xff;
        memcpy(key + 12, &in->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
        memcpy(key, &in6->sin6_addr, 16);
    }
}

static struct limiter_entry *limiter_find(struct pg_auth_limiter *l, const uint8_t key[16],
                                          bool create)
{
    uint32_t h = 2166136261u;
    for (int i = 0; i < 16; i++)
        h = (h ^ key[i]) * 16777619u;
    struct limiter_entry *free_slot = NULL;
    for (uint32_t i = 0; i < PROBE; i++) {
        struct limiter_entry *e = &l->slots[(h + i) % LIMITER_SLOTS];
        if (e->used && memcmp(e->addr, key, 16) == 0)
            return e;
        if (!e->used && !free_slot)
            free_slot = e;
    }
    if (!create)
        return NULL;
    if (!free_slot)
        free_slot = &l->slots[h % LIMITER_SLOTS];
    memset(free_slot, 0, sizeof(*free_slot));
    memcpy(free_slot->addr, key, 16);
    free_slot->used = true;
    return free_slot;
}

uint32_t pg_auth_limiter_wait(struct pg_auth_limiter *l, const struct sockaddr *addr,
                              uint64_t now_ms)
{
    uint8_t key[16];
    addr_key(addr, key);
    struct limiter_entry *e = limiter_find(l, key, false);
    if (!e || now_ms - e->window_start_ms >= LIMITER_WINDOW_MS || e->failures < l->limit)
        return 0;
    uint64_t left = LIMITER_WINDOW_MS - (now_ms - e->window_start_ms);
    return (uint32_t)((left + 999) / 1000);
}

void pg_auth_limiter_fail(struct pg_auth_limiter *l, const struct sockaddr *addr,
                          uint64_t now_ms)
{
    uint8_t key[16];
    addr_key(addr, key);
    struct limiter_entry *e = limiter_find(l, key, true);
    if (now_ms - e->window_start_ms >= LIMITER_WINDOW_MS) {
        e->window_start_ms = now_ms;
        e->failures = 0;
    }
    if (e->failures < UINT32_MAX)
        e->failures++;
}

uint32_t pg_bucket_take(struct pg_bucket *b, uint32_t requests, uint32_t per_s, uint32_t burst,
                        uint64_t now_us)
{
    /* One token is per_s * 1e6 units and every microsecond adds `requests`
     * units: the refill is exact integer arithmetic, nothing is rounded away. */
    if (per_s == 0)
        per_s = 1;
    if (requests == 0)
        requests = 1;
    const uint64_t token = (uint64_t)per_s * 1000000u;
    uint64_t cap;
    if (__builtin_mul_overflow((uint64_t)burst, token, &cap))
        cap = UINT64_MAX;
    if (!b->primed) {
        b->micro_tokens = cap;
        b->last_us = now_us;
        b->primed = true;
    }
    if (now_us > b->last_us) {
        uint64_t add, sum;
        if (__builtin_mul_overflow(now_us - b->last_us, (uint64_t)requests, &add) ||
            __builtin_add_overflow(b->micro_tokens, add, &sum) || sum > cap)
            sum = cap;
        b->micro_tokens = sum;
        b->last_us = now_us;
    }
    if (b->micro_tokens >= token) {
        b->micro_tokens -= token;
        return 0;
    }
    uint64_t wait_us = (token - b->micro_tokens + requests - 1) / requests;
    uint64_t wait_s = (wait_us + 999999u) / 1000000u;
    return wait_s == 0 ? 1 : (uint32_t)(wait_s > UINT32_MAX ? UINT32_MAX : wait_s);
}
