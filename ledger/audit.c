/* The audit chain: one hash-chained, append-only log per org, written in the
 * same transaction as the change it records. Entry bytes are jansson's
 * compact, key-sorted, ASCII-escaped JSON (written by canon.c); hash =
 * SHA-256(prev ‖ bytes).
 * Here too: walking the chains to verify them, JSON Lines export, and the
 * recent entries of one agent. */
#include "common/pg.h"
#include "ledger/ledger_int.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>

#define HEAD_LEN 48 /* version, 7 spare bytes, seq, hash */
#define HASH_SUFFIX_LEN 75 /* ,"hash":" (9) + 64 hex + "} (2) */

/* --- building an entry ------------------------------------------------------ */

void audit_mask_digits(const char *s, char *out, size_t cap)
{
    size_t n = strnlen(s, cap - 1);
    memcpy(out, s, n);
    out[n] = '\0';
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && out[j] >= '0' && out[j] <= '9')
            j++;
        /* A run as long as a card number keeps only its last four digits. */
        if (j - i >= 13 && j - i <= 19)
            memset(out + i, '*', j - i - 4);
        i = j > i ? j : i + 1;
    }
}

static size_t audit_key(uint8_t *k, const char *org, size_t on, uint64_t seq)
{
    memcpy(k, org, on);
    k[on] = 0;
    be64_put(k + on + 1, seq);
    return on + 9;
}

static bool head_decode(const MDB_val *v, uint64_t *seq, uint8_t hash[32])
{
    struct dec d = { v->mv_data, v->mv_size, 0, false };
    bool ok = dec_u8(&d) == LEDGER_REC_V1;
    (void)dec_take(&d, 7);
    *seq = dec_u64(&d);
    dec_bytes(&d, hash, PG_SHA256_LEN);
    return ok && !d.bad;
}

int audit_append(struct ltx *t, const struct audit_entry *e)
{
    size_t on = strnlen(e->org, PG_ID_MAX);
    uint64_t seq = 0;
    uint8_t prev[PG_SHA256_LEN] = { 0 }, hash[PG_SHA256_LEN];
    MDB_val v;
    int rc = ltx_get(t, DB_AUDIT_HEAD, e->org, on, &v);
    if (rc == 0) {
        if (!head_decode(&v, &seq, prev))
            return ltx_fail(t, MDB_CORRUPTED);
    } else if (rc != PG_ENOTFOUND) {
        return rc;
    }
    seq++;

    /* prev ‖ canonical bytes in one buffer, hashed in one call; the stack
     * buffer holds every ordinary entry. */
    uint8_t stack[2048];
    struct canon_buf cb = { stack, 0, sizeof(stack), false, false };
    memcpy(stack, prev, PG_SHA256_LEN);
    cb.len = PG_SHA256_LEN;
    if ((rc = audit_canon(e, seq, prev, &cb)) != 0)
        goto out;
    size_t n = cb.len - PG_SHA256_LEN;
    if ((rc = pg_sha256(cb.p, cb.len, hash)) != 0)
        goto out;

    uint8_t k[PG_ID_MAX + 16];
    size_t kn = audit_key(k, e->org, on, seq);
    void *dst;
    if ((rc = ltx_reserve(t, DB_AUDIT, k, kn, n + PG_SHA256_LEN, false, &dst)) != 0)
        goto out;
    memcpy(dst, cb.p + PG_SHA256_LEN, n);
    memcpy((uint8_t *)dst + n, hash, PG_SHA256_LEN);

    uint8_t hv[HEAD_LEN];
    struct enc he = { hv, sizeof(hv), 0 };
    enc_u8(&he, LEDGER_REC_V1);
    enc_bytes(&he, "\0\0\0\0\0\0\0", 7);
    enc_u64(&he, seq);
    enc_bytes(&he, hash, PG_SHA256_LEN);
    rc = ltx_put(t, DB_AUDIT_HEAD, e->org, on, hv, he.len);
out:
    if (cb.heap)
        free(cb.p);
    return rc;
}

/* --- reading entries ----------------------------------------------------------- */

/* Splits an audit key into org and seq. */
static bool key_split(const MDB_val *k, const char **org, size_t *on, uint64_t *seq)
{
    const uint8_t *p = k->mv_data;
    if (k->mv_size < 10 || p[k->mv_size - 9] != 0)
        return false;
    *org = (const char *)p;
    *on = k->mv_size - 9;
    if (memchr(p, 0, *on))
        return false;
    *seq = be64_get(p + *on + 1);
    return true;
}

/* Writes the export form of a stored value: its bytes with the hash put in
 * before the final brace. */
static int export_line(const MDB_val *v, char **out, size_t *len, char *stack, size_t cap)
{
    if (v->mv_size <= PG_SHA256_LEN + 1)
        return PG_EPARSE;
    size_t n = v->mv_size - PG_SHA256_LEN;
    const char *canon = v->mv_data;
    if (canon[n - 1] != '}')
        return PG_EPARSE;
    size_t total = n - 1 + HASH_SUFFIX_LEN;
    char *p = stack;
    if (total + 1 > cap && !(p = malloc(total + 1)))
        return PG_ENOMEM;
    memcpy(p, canon, n - 1);
    memcpy(p + n - 1, ",\"hash\":\"", 9);
    if (pg_hex_encode((const uint8_t *)canon + n, PG_SHA256_LEN, p + n + 8, 65) < 0) {
        if (p != stack)
            free(p);
        return PG_EPARSE;
    }
    memcpy(p + n + 8 + 64, "\"}", 3);
    *out = p;
    *len = total;
    return 0;
}

int pg_ledger_audit_export(struct pg_ledger *l, const char *org, uint64_t since, FILE *out)
{
    struct ltx t;
    MDB_cursor *c;
    int rc = ltx_begin(l, false, &t);
    if (rc != 0)
        return rc;
    if ((rc = ltx_cursor(&t, DB_AUDIT, &c)) != 0)
        goto out;
    uint8_t k[PG_ID_MAX + 16];
    size_t on = org ? strnlen(org, PG_ID_MAX) : 0;
    MDB_val key = { 0, k }, val;
    int mrc;
    if (org) {
        key.mv_size = audit_key(k, org, on, since);
        mrc = mdb_cursor_get(c, &key, &val, MDB_SET_RANGE);
    } else {
        mrc = mdb_cursor_get(c, &key, &val, MDB_FIRST);
    }
    for (; mrc == 0 && rc == 0; mrc = mdb_cursor_get(c, &key, &val, MDB_NEXT)) {
        const char *ko;
        size_t kon;
        uint64_t seq;
        if (!key_split(&key, &ko, &kon, &seq))
            continue;
        if (org && (kon != on || memcmp(ko, org, on) != 0))
            break;
        if (seq < since)
            continue;
        char stack[4096], *line;
        size_t len;
        if ((rc = export_line(&val, &line, &len, stack, sizeof(stack))) == PG_EPARSE) {
            rc = 0; /* a mangled entry is verify's to report; export the rest */
            continue;
        }
        if (rc != 0)
            break;
        if (fwrite(line, 1, len, out) != len || fputc('\n', out) == EOF)
            rc = -(errno ? errno : EIO);
        if (line != stack)
            free(line);
    }
    mdb_cursor_close(c);
    if (rc == 0 && mrc != 0 && mrc != MDB_NOTFOUND)
        rc = ltx_fail(&t, mrc);
out:
    ltx_abort(&t);
    return rc;
}

int pg_ledger_audit_recent(struct pg_ledger *l, const char *org, const char *agent, size_t max,
                           int (*cb)(void *arg, const char *json, size_t len), void *arg)
{
    if (!org || !agent)
        return PG_EPARSE;
    struct ltx t;
    MDB_cursor *c;
    int rc = ltx_begin(l, false, &t);
    if (rc != 0)
        return rc;
    if ((rc = ltx_cursor(&t, DB_AUDIT, &c)) != 0)
        goto out;
    uint8_t k[PG_ID_MAX + 16];
    size_t on = strnlen(org, PG_ID_MAX);
    MDB_val key = { audit_key(k, org, on, UINT64_MAX), k }, val;
    /* From just past the org's last entry, backwards. */
    int mrc = mdb_cursor_get(c, &key, &val, MDB_SET_RANGE);
    if (mrc == 0)
        mrc = mdb_cursor_get(c, &key, &val, MDB_PREV);
    else if (mrc == MDB_NOTFOUND)
        mrc = mdb_cursor_get(c, &key, &val, MDB_LAST);
    size_t found = 0;
    for (; mrc == 0 && found < max; mrc = mdb_cursor_get(c, &key, &val, MDB_PREV)) {
        const char *ko;
        size_t kon;
        uint64_t seq;
        if (!key_split(&key, &ko, &kon, &seq) || kon != on || memcmp(ko, org, on) != 0)
            break;
        json_t *j = json_loadb(val.mv_data, val.mv_size > 32 ? val.mv_size - 32 : 0, 0, NULL);
        const char *who = j ? json_string_value(json_object_get(j, "agent")) : NULL;
        bool mine = who && strcmp(who, agent) == 0;
        json_decref(j);
        if (!mine)
            continue;
        char stack[4096], *line;
        size_t len;
        int lrc = export_line(&val, &line, &len, stack, sizeof(stack));
        if (lrc == PG_EPARSE)
            continue;
        if (lrc != 0) {
            rc = lrc;
            break;
        }
        found++;
        int stop = cb(arg, line, len);
        if (line != stack)
            free(line);
        if (stop)
            break;
    }
    mdb_cursor_close(c);
    if (rc == 0 && mrc != 0 && mrc != MDB_NOTFOUND)
        rc = ltx_fail(&t, mrc);
out:
    ltx_abort(&t);
    return rc;
}

/* --- verification ---------------------------------------------------------------- */

struct walk {
    struct pg_audit_report r;
    bool active;                     /* an org is being walked */
    bool stopped;                    /* its first bad entry was found */
    uint64_t last_seq;
    uint8_t last_hash[PG_SHA256_LEN];
};

static void walk_bad(struct walk *w, uint64_t seq, const char *why)
{
    w->r.ok = false;
    w->r.bad_seq = seq;
    snprintf(w->r.why, sizeof(w->r.why), "%s", why);
    w->stopped = true;
}

/* Checks one entry against the one before it. */
static int walk_entry(struct walk *w, uint64_t seq, const MDB_val *v)
{
    if (seq != w->last_seq + 1) {
        walk_bad(w, w->last_seq + 1, "gap");
        return 0;
    }
    if (v->mv_size <= PG_SHA256_LEN) {
        walk_bad(w, seq, "unreadable entry");
        return 0;
    }
    size_t n = v->mv_size - PG_SHA256_LEN;
    const uint8_t *canon = v->mv_data, *stored = canon + n;
    json_error_t jerr;
    json_t *j = json_loadb((const char *)canon, n, JSON_REJECT_DUPLICATES, &jerr);
    json_t *js = j ? json_object_get(j, "seq") : NULL;
    const char *org = j ? json_string_value(json_object_get(j, "org")) : NULL;
    const char *prev = j ? json_string_value(json_object_get(j, "prev_hash")) : NULL;
    char want[2 * PG_SHA256_LEN + 1];
    int rc = 0;
    if (!json_is_integer(js) || !org || !prev) {
        walk_bad(w, seq, "unreadable entry");
    } else if ((uint64_t)json_integer_value(js) != seq || strcmp(org, w->r.org) != 0) {
        walk_bad(w, seq, "seq mismatch");
    } else if (pg_hex_encode(w->last_hash, PG_SHA256_LEN, want, sizeof(want)) < 0 ||
               strcmp(prev, want) != 0) {
        walk_bad(w, seq, "broken link");
    } else {
        uint8_t stack[4096], *buf = stack, hash[PG_SHA256_LEN];
        if (n + PG_SHA256_LEN > sizeof(stack) && !(buf = malloc(n + PG_SHA256_LEN))) {
            rc = PG_ENOMEM;
        } else {
            memcpy(buf, w->last_hash, PG_SHA256_LEN);
            memcpy(buf + PG_SHA256_LEN, canon, n);
            rc = pg_sha256(buf, n + PG_SHA256_LEN, hash);
            if (rc == 0 && memcmp(hash, stored, PG_SHA256_LEN) != 0)
                walk_bad(w, seq, "hash mismatch");
            if (buf != stack)
                free(buf);
        }
    }
    json_decref(j);
    if (rc == 0 && !w->stopped) {
        w->r.count++;
        w->last_seq = seq;
        memcpy(w->last_hash, stored, PG_SHA256_LEN);
    }
    return rc;
}

static void walk_start(struct walk *w, const char *org, size_t on)
{
    memset(w, 0, sizeof(*w));
    memcpy(w->r.org, org, on < PG_ID_MAX ? on : PG_ID_MAX);
    w->r.ok = true;
    w->active = true;
}

/* Compares the org's head with the last entry walked, then reports. */
static int walk_finish(struct ltx *t, struct walk *w,
                       void (*cb)(void *arg, const struct pg_audit_report *r), void *arg)
{
    MDB_val v;
    int rc = ltx_get(t, DB_AUDIT_HEAD, w->r.org, strlen(w->r.org), &v);
    if (rc != 0 && rc != PG_ENOTFOUND)
        return rc;
    bool have = rc == 0 && head_decode(&v, &w->r.head_seq, w->r.head_hash);
    if (!w->stopped) {
        if (!have && w->last_seq > 0)
            walk_bad(w, w->last_seq, "missing head");
        else if (have && w->r.head_seq != w->last_seq)
            walk_bad(w, w->r.head_seq > w->last_seq ? w->last_seq + 1 : w->r.head_seq,
                     "head mismatch");
        else if (have && memcmp(w->r.head_hash, w->last_hash, PG_SHA256_LEN) != 0)
            walk_bad(w, w->last_seq, "head mismatch");
    }
    cb(arg, &w->r);
    w->active = false;
    return 0;
}

int pg_ledger_audit_verify(struct pg_ledger *l, const char *org,
                           void (*cb)(void *arg, const struct pg_audit_report *r), void *arg)
{
    struct ltx t;
    MDB_cursor *c = NULL;
    struct walk w;
    memset(&w, 0, sizeof(w));
    int rc = ltx_begin(l, false, &t);
    if (rc != 0)
        return rc;
    if ((rc = ltx_cursor(&t, DB_AUDIT, &c)) != 0)
        goto out;
    uint8_t k[PG_ID_MAX + 16];
    size_t on = org ? strnlen(org, PG_ID_MAX) : 0;
    MDB_val key = { 0, k }, val;
    int mrc;
    if (org) {
        key.mv_size = audit_key(k, org, on, 0);
        mrc = mdb_cursor_get(c, &key, &val, MDB_SET_RANGE);
        walk_start(&w, org, on);
    } else {
        mrc = mdb_cursor_get(c, &key, &val, MDB_FIRST);
    }
    for (; mrc == 0 && rc == 0; mrc = mdb_cursor_get(c, &key, &val, MDB_NEXT)) {
        const char *ko;
        size_t kon;
        uint64_t seq;
        if (!key_split(&key, &ko, &kon, &seq))
            continue; /* not an audit key: nothing writes those */
        bool same = w.active && kon == strlen(w.r.org) && memcmp(ko, w.r.org, kon) == 0;
        if (!same) {
            if (org)
                break;
            if (w.active && (rc = walk_finish(&t, &w, cb, arg)) != 0)
                break;
            walk_start(&w, ko, kon);
        }
        if (!w.stopped)
            rc = walk_entry(&w, seq, &val);
    }
    if (rc == 0 && mrc != 0 && mrc != MDB_NOTFOUND)
        rc = ltx_fail(&t, mrc);
    if (rc == 0 && w.active)
        rc = walk_finish(&t, &w, cb, arg);
    mdb_cursor_close(c);
    c = NULL;
    if (rc != 0 || org)
        goto out;

    /* Heads whose org has no entry at all: every entry was removed. */
    if ((rc = ltx_cursor(&t, DB_AUDIT_HEAD, &c)) != 0)
        goto out;
    MDB_cursor *e;
    if ((rc = ltx_cursor(&t, DB_AUDIT, &e)) != 0)
        goto out;
    for (mrc = mdb_cursor_get(c, &key, &val, MDB_FIRST); mrc == 0 && rc == 0;
         mrc = mdb_cursor_get(c, &key, &val, MDB_NEXT)) {
        if (key.mv_size == 0 || key.mv_size > PG_ID_MAX)
            continue;
        MDB_val ek = { audit_key(k, key.mv_data, key.mv_size, 0), k }, ev;
        int erc = mdb_cursor_get(e, &ek, &ev, MDB_SET_RANGE);
        const char *ko;
        size_t kon;
        uint64_t seq;
        if (erc == 0 && key_split(&ek, &ko, &kon, &seq) && kon == key.mv_size &&
            memcmp(ko, key.mv_data, kon) == 0)
            continue; /* walked above */
        if (erc != 0 && erc != MDB_NOTFOUND) {
            rc = ltx_fail(&t, erc);
            break;
        }
        walk_start(&w, key.mv_data, key.mv_size);
        rc = walk_finish(&t, &w, cb, arg);
    }
    mdb_cursor_close(e);
    if (rc == 0 && mrc != 0 && mrc != MDB_NOTFOUND)
        rc = ltx_fail(&t, mrc);
out:
    if (c)
        mdb_cursor_close(c);
    ltx_abort(&t);
    return rc;
}

/* --- pages and heads for the admin API ------------------------------------------- */

int pg_ledger_audit_head(struct pg_ledger *l, const char *org, uint64_t *seq)
{
    struct ltx t;
    MDB_val v;
    uint8_t hash[PG_SHA256_LEN];
    *seq = 0;
    if (!org || !org[0])
        return 0;
    int rc = ltx_begin(l, false, &t);
    if (rc != 0)
        return rc;
    rc = ltx_get(&t, DB_AUDIT_HEAD, org, strnlen(org, PG_ID_MAX), &v);
    if (rc == 0 && !head_decode(&v, seq, hash))
        rc = ltx_fail(&t, MDB_CORRUPTED);
    else if (rc == PG_ENOTFOUND)
        rc = 0;
    ltx_abort(&t);
    return rc;
}

int pg_ledger_audit_page(struct pg_ledger *l, const char *org, uint64_t after, size_t limit,
                         int (*cb)(void *arg, uint64_t seq, const char *json, size_t len),
                         void *arg, uint64_t *next)
{
    if (next)
        *next = after;
    if (!org || !org[0] || after == UINT64_MAX)
        return PG_EPARSE;
    struct ltx t;
    MDB_cursor *c;
    int rc = ltx_begin(l, false, &t);
    if (rc != 0)
        return rc;
    if ((rc = ltx_cursor(&t, DB_AUDIT, &c)) != 0)
        goto out;
    uint8_t k[PG_ID_MAX + 16];
    size_t on = strnlen(org, PG_ID_MAX), found = 0;
    MDB_val key = { audit_key(k, org, on, after + 1), k }, val;
    int mrc = mdb_cursor_get(c, &key, &val, MDB_SET_RANGE);
    for (; mrc == 0 && found < limit; mrc = mdb_cursor_get(c, &key, &val, MDB_NEXT)) {
        const char *ko;
        size_t kon;
        uint64_t seq;
        if (!key_split(&key, &ko, &kon, &seq) || kon != on || memcmp(ko, org, on) != 0)
            break;
        char stack[4096], *line;
        size_t len;
        int lrc = export_line(&val, &line, &len, stack, sizeof(stack));
        if (lrc == PG_EPARSE)
            continue; /* verify reports it */
        if (lrc != 0) {
            rc = lrc;
            break;
        }
        found++;
        if (next)
            *next = seq;
        int stop = cb(arg, seq, line, len);
        if (line != stack)
            free(line);
        if (stop)
            break;
    }
    mdb_cursor_close(c);
    if (rc == 0 && mrc != 0 && mrc != MDB_NOTFOUND)
        rc = ltx_fail(&t, mrc);
out:
    ltx_abort(&t);
    return rc;
}
