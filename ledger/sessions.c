/* Human sessions of the admin API: the access-token signing key, refresh
 * tokens rotated in families, the last TOTP step and spent recovery codes
 * of each user. Each call is its own transaction (ledger_write for the
 * writes), called from the thread pool, never the loop thread. Refresh
 * tokens are kept only as SHA-256: the database alone cannot sign anyone in. */
#include "common/pg.h"
#include "ledger/ledger_int.h"

#include <stdio.h>

#include <openssl/crypto.h>

#define FAMILY_LEN 16
#define TOKEN_RANDOM 32
#define JWT_KEY_NAME "jwt_key"

enum tok_state { TOK_ACTIVE = 1, TOK_ROTATED = 2 };
enum fam_state { FAM_ACTIVE = 1, FAM_REVOKED = 2 };

struct tok_rec {
    uint8_t state;
    uint8_t family[FAMILY_LEN];
    int64_t created, expires, rotated_at;
    char user[PG_SESSION_USER_MAX + 1];
    char org[PG_ID_MAX + 1];
};

struct fam_rec {
    uint8_t state;
    int64_t created, revoked_at;
    char user[PG_SESSION_USER_MAX + 1];
    char org[PG_ID_MAX + 1];
    char reason[64];
};

/* --- records ------------------------------------------------------------- */

static int tok_put(struct ltx *t, const uint8_t key[PG_SHA256_LEN], const struct tok_rec *r)
{
    uint8_t buf[512];
    struct enc e = { buf, sizeof(buf), 0 };
    enc_u8(&e, LEDGER_REC_V1);
    enc_u8(&e, r->state);
    enc_bytes(&e, r->family, FAMILY_LEN);
    enc_i64(&e, r->created);
    enc_i64(&e, r->expires);
    enc_i64(&e, r->rotated_at);
    enc_str(&e, r->user);
    enc_str(&e, r->org);
    if (e.len > sizeof(buf))
        return PG_ETOOBIG;
    return ltx_put(t, DB_SESSIONS, key, PG_SHA256_LEN, buf, e.len);
}

static int tok_get(struct ltx *t, const uint8_t key[PG_SHA256_LEN], struct tok_rec *r)
{
    MDB_val v;
    int rc = ltx_get(t, DB_SESSIONS, key, PG_SHA256_LEN, &v);
    if (rc != 0)
        return rc;
    struct dec d = { v.mv_data, v.mv_size, 0, false };
    if (dec_u8(&d) != LEDGER_REC_V1)
        return ltx_fail(t, MDB_CORRUPTED);
    r->state = dec_u8(&d);
    dec_bytes(&d, r->family, FAMILY_LEN);
    r->created = dec_i64(&d);
    r->expires = dec_i64(&d);
    r->rotated_at = dec_i64(&d);
    dec_str(&d, r->user, sizeof(r->user));
    dec_str(&d, r->org, sizeof(r->org));
    return d.bad ? ltx_fail(t, MDB_CORRUPTED) : 0;
}

static int fam_put(struct ltx *t, const uint8_t id[FAMILY_LEN], const struct fam_rec *r)
{
    uint8_t buf[512];
    struct enc e = { buf, sizeof(buf), 0 };
    enc_u8(&e, LEDGER_REC_V1);
    enc_u8(&e, r->state);
    enc_i64(&e, r->created);
    enc_i64(&e, r->revoked_at);
    enc_str(&e, r->user);
    enc_str(&e, r->org);
    enc_str(&e, r->reason);
    if (e.len > sizeof(buf))
        return PG_ETOOBIG;
    return ltx_put(t, DB_SESSION_FAMILIES, id, FAMILY_LEN, buf, e.len);
}

static int fam_get(struct ltx *t, const uint8_t id[FAMILY_LEN], struct fam_rec *r)
{
    MDB_val v;
    int rc = ltx_get(t, DB_SESSION_FAMILIES, id, FAMILY_LEN, &v);
    if (rc != 0)
        return rc;
    struct dec d = { v.mv_data, v.mv_size, 0, false };
    if (dec_u8(&d) != LEDGER_REC_V1)
        return ltx_fail(t, MDB_CORRUPTED);
    r->state = dec_u8(&d);
    r->created = dec_i64(&d);
    r->revoked_at = dec_i64(&d);
    dec_str(&d, r->user, sizeof(r->user));
    dec_str(&d, r->org, sizeof(r->org));
    dec_str(&d, r->reason, sizeof(r->reason));
    return d.bad ? ltx_fail(t, MDB_CORRUPTED) : 0;
}

/* A fresh token text and the key it is stored under. */
static int token_new(char out[PG_SESSION_TOKEN_BUF], uint8_t key[PG_SHA256_LEN])
{
    uint8_t raw[TOKEN_RANDOM];
    size_t pn = sizeof(PG_SESSION_TOKEN_PREFIX) - 1;
    if (pg_random(raw, sizeof(raw)) != 0)
        return PG_ECRYPTO;
    memcpy(out, PG_SESSION_TOKEN_PREFIX, pn);
    int n = pg_base64url_encode(raw, sizeof(raw), out + pn, PG_SESSION_TOKEN_BUF - pn);
    OPENSSL_cleanse(raw, sizeof(raw));
    if (n < 0)
        return PG_ECRYPTO;
    return pg_sha256(out, pn + (size_t)n, key);
}

/* Only the shape a token of ours can have is hashed and looked up. */
static bool token_key(struct pg_slice tok, uint8_t key[PG_SHA256_LEN])
{
    size_t pn = sizeof(PG_SESSION_TOKEN_PREFIX) - 1;
    if (tok.len < pn + 40 || tok.len >= PG_SESSION_TOKEN_BUF ||
        memcmp(tok.ptr, PG_SESSION_TOKEN_PREFIX, pn) != 0)
        return false;
    return pg_sha256(tok.ptr, tok.len, key) == 0;
}

static void describe(const struct tok_rec *r, struct pg_session *out)
{
    if (!out)
        return;
    memset(out, 0, sizeof(*out));
    memcpy(out->user, r->user, sizeof(out->user));
    memcpy(out->org, r->org, sizeof(out->org));
    if (pg_hex_encode(r->family, FAMILY_LEN, out->family, sizeof(out->family)) < 0)
        out->family[0] = '\0';
    out->created_at = r->created;
    out->expires_at = r->expires;
}

static int audit_session(struct ltx *t, const char *org, const char *user, int64_t now,
                         const char *action, const char *reason, const char *note, bool by_user)
{
    char actor[PG_SESSION_USER_MAX + 8];
    snprintf(actor, sizeof(actor), "user:%s", user);
    struct audit_entry e = {
        .time = now,
        .org = org,
        .actor = by_user ? actor : "payguard",
        .action = action,
        .decision = strcmp(action, "login") == 0 ? "allow" : "deny",
        .reason = reason,
        .note = note,
    };
    return audit_append(t, &e);
}

/* Revokes a family (once) and audits why, in the caller's transaction. */
static int family_revoke(struct ltx *t, const struct tok_rec *tok, int64_t now, bool reuse)
{
    struct fam_rec f;
    int rc = fam_get(t, tok->family, &f);
    if (rc != 0)
        return rc == PG_ENOTFOUND ? ltx_fail(t, MDB_CORRUPTED) : rc;
    if (f.state == FAM_REVOKED)
        return 0;
    f.state = FAM_REVOKED;
    f.revoked_at = now;
    snprintf(f.reason, sizeof(f.reason), "%s", reuse ? "refresh_token_reused" : "logout");
    if ((rc = fam_put(t, tok->family, &f)) != 0)
        return rc;
    char note[512], hex[2 * FAMILY_LEN + 1];
    if (pg_hex_encode(tok->family, FAMILY_LEN, hex, sizeof(hex)) < 0)
        hex[0] = '\0';
    snprintf(note, sizeof(note), "%s: every refresh token of session %s of %s revoked",
             reuse ? "a rotated refresh token was presented again" : "signed out", hex, tok->user);
    return audit_session(t, tok->org, tok->user, now, reuse ? "session_reuse" : "logout",
                         f.reason, note, !reuse);
}

/* --- the signing key --------------------------------------------------------- */

struct key_args {
    uint8_t *key;
};

static int key_fn(struct ltx *t, void *arg)
{
    struct key_args *a = arg;
    MDB_val v;
    int rc = ltx_get(t, DB_HUMANS, JWT_KEY_NAME, strlen(JWT_KEY_NAME), &v);
    if (rc == 0) {
        struct dec d = { v.mv_data, v.mv_size, 0, false };
        if (dec_u8(&d) != LEDGER_REC_V1)
            return ltx_fail(t, MDB_CORRUPTED);
        dec_bytes(&d, a->key, PG_SESSION_KEY_LEN);
        return d.bad ? ltx_fail(t, MDB_CORRUPTED) : 0;
    }
    if (rc != PG_ENOTFOUND)
        return rc;
    uint8_t buf[1 + PG_SESSION_KEY_LEN];
    if (pg_random(a->key, PG_SESSION_KEY_LEN) != 0)
        return PG_ECRYPTO;
    buf[0] = LEDGER_REC_V1;
    memcpy(buf + 1, a->key, PG_SESSION_KEY_LEN);
    rc = ltx_put(t, DB_HUMANS, JWT_KEY_NAME, strlen(JWT_KEY_NAME), buf, sizeof(buf));
    OPENSSL_cleanse(buf, sizeof(buf));
    return rc;
}

int pg_ledger_jwt_key(struct pg_ledger *l, uint8_t key[PG_SESSION_KEY_LEN])
{
    /* Read first: once the key exists, no write transaction is needed. */
    struct ltx t;
    MDB_val v;
    int rc = ltx_begin(l, false, &t);
    if (rc != 0)
        return rc;
    rc = ltx_get(&t, DB_HUMANS, JWT_KEY_NAME, strlen(JWT_KEY_NAME), &v);
    if (rc == 0) {
        struct dec d = { v.mv_data, v.mv_size, 0, false };
        if (dec_u8(&d) != LEDGER_REC_V1)
            d.bad = true;
        dec_bytes(&d, key, PG_SESSION_KEY_LEN);
        rc = d.bad ? PG_ESTORE : 0;
    }
    ltx_abort(&t);
    if (rc != PG_ENOTFOUND)
        return rc;
    struct key_args a = { key };
    return ledger_write(l, key_fn, &a, NULL);
}

/* --- open, rotate, close ------------------------------------------------------ */

struct open_args {
    const char *user, *org, *how;
    int64_t now;
    uint32_t ttl;
    char *token;
    struct tok_rec rec;
};

static int open_fn(struct ltx *t, void *arg)
{
    struct open_args *a = arg;
    uint8_t key[PG_SHA256_LEN];
    struct tok_rec *r = &a->rec;
    memset(r, 0, sizeof(*r));
    if (pg_random(r->family, FAMILY_LEN) != 0)
        return PG_ECRYPTO;
    int rc = token_new(a->token, key);
    if (rc != 0)
        return rc;
    r->state = TOK_ACTIVE;
    r->created = a->now;
    r->expires = sat_add(a->now, (int64_t)a->ttl);
    snprintf(r->user, sizeof(r->user), "%s", a->user);
    snprintf(r->org, sizeof(r->org), "%s", a->org);
    struct fam_rec f = { .state = FAM_ACTIVE, .created = a->now };
    memcpy(f.user, r->user, sizeof(f.user));
    memcpy(f.org, r->org, sizeof(f.org));
    if ((rc = fam_put(t, r->family, &f)) != 0 || (rc = tok_put(t, key, r)) != 0 ||
        (rc = expiry_add(t, EXP_SESSION, r->expires, key, sizeof(key))) != 0)
        return rc;
    return audit_session(t, a->org, a->user, a->now, "login", "signed_in", a->how, true);
}

static bool who_ok(const char *user, const char *org)
{
    return user && org && user[0] && org[0] && strlen(user) <= PG_SESSION_USER_MAX &&
           strlen(org) <= PG_ID_MAX;
}

int pg_ledger_session_open(struct pg_ledger *l, const char *user, const char *org,
                           const char *how, int64_t now, uint32_t ttl_s,
                           char token[PG_SESSION_TOKEN_BUF], struct pg_session *out)
{
    if (!who_ok(user, org))
        return PG_EPARSE;
    struct open_args a = { user, org, how, now, ttl_s, token, { 0 } };
    int rc = ledger_write(l, open_fn, &a, NULL);
    if (rc == 0)
        describe(&a.rec, out);
    else
        memset(token, 0, PG_SESSION_TOKEN_BUF);
    return rc;
}

struct rotate_args {
    uint8_t key[PG_SHA256_LEN];
    int64_t now;
    uint32_t ttl;
    bool close;                    /* logout instead of rotation */
    char *new_token;
    struct tok_rec rec;
    enum pg_session_result res;
};

/* Everything happens in one transaction: the check, the ROTATED mark and
 * the successor, or the family's revocation and its audit entry. */
static int rotate_fn(struct ltx *t, void *arg)
{
    struct rotate_args *a = arg;
    struct fam_rec f;
    int rc = tok_get(t, a->key, &a->rec);
    a->res = PG_SESSION_UNKNOWN;
    if (rc == PG_ENOTFOUND)
        return 0;
    if (rc != 0)
        return rc;
    if ((rc = fam_get(t, a->rec.family, &f)) != 0)
        return rc == PG_ENOTFOUND ? ltx_fail(t, MDB_CORRUPTED) : rc;
    if (f.state == FAM_REVOKED) {
        a->res = PG_SESSION_REVOKED;
        return 0;
    }
    if (a->rec.state == TOK_ROTATED) {
        /* A token already exchanged comes back: whoever holds the family's
         * live token may be the thief. Sign both out. */
        a->res = PG_SESSION_REUSED;
        return family_revoke(t, &a->rec, a->now, true);
    }
    if (a->now >= a->rec.expires) {
        a->res = PG_SESSION_EXPIRED;
        return 0;
    }
    a->res = PG_SESSION_OK;
    if (a->close)
        return family_revoke(t, &a->rec, a->now, false);
    a->rec.state = TOK_ROTATED;
    a->rec.rotated_at = a->now;
    if ((rc = tok_put(t, a->key, &a->rec)) != 0)
        return rc;
    struct tok_rec next = a->rec;
    uint8_t nkey[PG_SHA256_LEN];
    if ((rc = token_new(a->new_token, nkey)) != 0)
        return rc;
    next.state = TOK_ACTIVE;
    next.created = a->now;
    next.expires = sat_add(a->now, (int64_t)a->ttl);
    next.rotated_at = 0;
    if ((rc = tok_put(t, nkey, &next)) != 0 ||
        (rc = expiry_add(t, EXP_SESSION, next.expires, nkey, sizeof(nkey))) != 0)
        return rc;
    a->rec = next;
    return 0;
}

static int rotate_or_close(struct pg_ledger *l, struct pg_slice token, int64_t now, uint32_t ttl,
                           bool close, char *new_token, struct pg_session *out,
                           enum pg_session_result *res)
{
    char scratch[PG_SESSION_TOKEN_BUF];
    struct rotate_args a;
    memset(&a, 0, sizeof(a));
    a.now = now;
    a.ttl = ttl;
    a.close = close;
    a.new_token = new_token ? new_token : scratch;
    a.new_token[0] = '\0';
    *res = PG_SESSION_UNKNOWN;
    if (out)
        memset(out, 0, sizeof(*out));
    if (!token_key(token, a.key))
        return 0;
    int rc = ledger_write(l, rotate_fn, &a, NULL);
    if (rc != 0) {
        a.new_token[0] = '\0';
        return rc;
    }
    *res = a.res;
    if (a.res != PG_SESSION_OK)
        a.new_token[0] = '\0';
    if (a.res != PG_SESSION_UNKNOWN)
        describe(&a.rec, out);
    return 0;
}

int pg_ledger_session_rotate(struct pg_ledger *l, struct pg_slice token, int64_t now,
                             uint32_t ttl_s, char new_token[PG_SESSION_TOKEN_BUF],
                             struct pg_session *out, enum pg_session_result *res)
{
    return rotate_or_close(l, token, now, ttl_s, false, new_token, out, res);
}

int pg_ledger_session_close(struct pg_ledger *l, struct pg_slice token, int64_t now,
                            struct pg_session *out, enum pg_session_result *res)
{
    return rotate_or_close(l, token, now, 0, true, NULL, out, res);
}

/* --- TOTP steps and recovery codes -------------------------------------------- */

static size_t human_key(uint8_t *k, size_t cap, const char *kind, const char *user,
                        const char *extra)
{
    size_t kn = strlen(kind), un = strlen(user), en = extra ? strlen(extra) : 0;
    size_t need = kn + 1 + un + (extra ? 1 + en : 0);
    if (need > cap || need > LEDGER_KEY_MAX)
        return 0;
    memcpy(k, kind, kn);
    k[kn] = 0;
    memcpy(k + kn + 1, user, un);
    if (extra) {
        k[kn + 1 + un] = 0;
        memcpy(k + kn + 2 + un, extra, en);
    }
    return need;
}

static int totp_read(struct ltx *t, const uint8_t *k, size_t kn, uint64_t *last)
{
    MDB_val v;
    *last = 0;
    int rc = ltx_get(t, DB_HUMANS, k, kn, &v);
    if (rc == PG_ENOTFOUND)
        return 0;
    if (rc != 0)
        return rc;
    struct dec d = { v.mv_data, v.mv_size, 0, false };
    if (dec_u8(&d) != LEDGER_REC_V1)
        d.bad = true;
    *last = dec_u64(&d);
    return d.bad ? ltx_fail(t, MDB_CORRUPTED) : 0;
}

int pg_ledger_totp_last(struct pg_ledger *l, const char *user, uint64_t *last)
{
    uint8_t k[PG_SESSION_USER_MAX + 16];
    size_t kn = user ? human_key(k, sizeof(k), "totp", user, NULL) : 0;
    *last = 0;
    if (kn == 0)
        return PG_EPARSE;
    struct ltx t;
    int rc = ltx_begin(l, false, &t);
    if (rc != 0)
        return rc;
    rc = totp_read(&t, k, kn, last);
    ltx_abort(&t);
    return rc;
}

struct step_args {
    const uint8_t *k;
    size_t kn;
    uint64_t step;
};

static int totp_fn(struct ltx *t, void *arg)
{
    struct step_args *a = arg;
    uint64_t last;
    int rc = totp_read(t, a->k, a->kn, &last);
    if (rc != 0)
        return rc;
    if (a->step <= last)
        return PG_EBUSY;
    uint8_t v[9];
    struct enc e = { v, sizeof(v), 0 };
    enc_u8(&e, LEDGER_REC_V1);
    enc_u64(&e, a->step);
    return ltx_put(t, DB_HUMANS, a->k, a->kn, v, e.len);
}

int pg_ledger_totp_spend(struct pg_ledger *l, const char *user, uint64_t step)
{
    uint8_t k[PG_SESSION_USER_MAX + 16];
    size_t kn = user ? human_key(k, sizeof(k), "totp", user, NULL) : 0;
    if (kn == 0 || step == 0)
        return PG_EPARSE;
    struct step_args a = { k, kn, step };
    return ledger_write(l, totp_fn, &a, NULL);
}

struct rcode_args {
    const uint8_t *k;
    size_t kn;
    int64_t now;
};

static int rcode_fn(struct ltx *t, void *arg)
{
    struct rcode_args *a = arg;
    uint8_t v[9];
    struct enc e = { v, sizeof(v), 0 };
    enc_u8(&e, LEDGER_REC_V1);
    enc_i64(&e, a->now);
    MDB_val key = { a->kn, (void *)(uintptr_t)a->k }, val = { e.len, v };
    int rc = mdb_put(t->txn, t->l->db[DB_HUMANS], &key, &val, MDB_NOOVERWRITE);
    if (rc == MDB_KEYEXIST)
        return PG_EBUSY;
    return rc ? ltx_fail(t, rc) : 0;
}

int pg_ledger_recovery_spend(struct pg_ledger *l, const char *user, const char *hex, int64_t now)
{
    uint8_t k[PG_SESSION_USER_MAX + 96];
    if (!user || !hex || strlen(hex) != 2 * PG_SHA256_LEN)
        return PG_EPARSE;
    size_t kn = human_key(k, sizeof(k), "rcode", user, hex);
    if (kn == 0)
        return PG_EPARSE;
    struct rcode_args a = { k, kn, now };
    return ledger_write(l, rcode_fn, &a, NULL);
}

int pg_ledger_session_live(struct pg_ledger *l, const char *family, bool *live)
{
    uint8_t id[FAMILY_LEN];
    *live = false;
    size_t n = 0;
    if (!family || strlen(family) != 2 * FAMILY_LEN ||
        OPENSSL_hexstr2buf_ex(id, sizeof(id), &n, family, '\0') != 1 || n != FAMILY_LEN)
        return PG_EPARSE;
    struct ltx t;
    struct fam_rec f;
    int rc = ltx_begin(l, false, &t);
    if (rc != 0)
        return rc;
    rc = fam_get(&t, id, &f);
    ltx_abort(&t);
    if (rc == PG_ENOTFOUND)
        return 0;
    if (rc == 0)
        *live = f.state == FAM_ACTIVE;
    return rc;
}

int sessions_drop_token(struct ltx *t, const uint8_t *key, size_t n)
{
    return n == PG_SHA256_LEN ? ltx_del(t, DB_SESSIONS, key, n) : 0;
}
