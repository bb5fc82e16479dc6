/* Signing humans in and out of the admin API: POST /v1/auth/login (bcrypt
 * password, then a TOTP code or a single-use recovery code), /v1/auth/refresh
 * (rotation) and /v1/auth/logout. Checks run in the thread pool; failures
 * count against a per-address and a per-account limiter on the loop thread.
 * An unknown email and a wrong password cost the same bcrypt and get the
 * same answer. */
#include "common/pg.h"
#include "proxy/admin_int.h"

#include <stdio.h>
#include <stdlib.h>

#include <openssl/crypto.h>

/* bcrypt (cost 12, like real users) of a password nobody knows: checked
 * when the email is unknown, so both cases take the same time. */
static const char dummy_hash[] = "$2b$12$zdb/Rt8WFS4TrSwrLKtfDO4Cf3f8RAC7ZFWIl/BuQzo4m8Bgtn.TO";

static const char *const login_keys[] = { "email", "password", "totp", "recovery_code", NULL };
static const char *const refresh_keys[] = { "refresh_token", NULL };

static const char invalid_credentials[] =
    "The email, password or second factor is wrong. Check them and try again.";

/* --- the user's second factor, as loaded from payguard.yaml ---------------------- */

/* The TOTP secret of u (unsealed at load), its length; 0 when u has none. */
static size_t user_totp(const struct pg_user *u, const uint8_t **secret)
{
    *secret = u->totp_secret;
    return u->totp_len;
}

/* Whether `hex` is one of u's recovery code hashes (constant time each). */
static bool user_recovery_known(const struct pg_user *u, const char hex[65])
{
    bool found = false;
    for (size_t i = 0; i < u->nrecovery; i++)
        if (u->recovery_hashes[i] && strlen(u->recovery_hashes[i]) == 64 &&
            pg_ct_equal(u->recovery_hashes[i], hex, 64))
            found = true;
    return found;
}

/* --- limiter keys -------------------------------------------------------------- */

/* The per-account limiter is keyed like an address: SHA-256 of the
 * lower-cased email in an IPv6 address's 16 bytes. */
static void account_key(const char *email, struct sockaddr_in6 *out)
{
    char low[PG_SESSION_USER_MAX + 1];
    size_t n = strnlen(email, PG_SESSION_USER_MAX);
    uint8_t h[PG_SHA256_LEN];
    for (size_t i = 0; i < n; i++)
        low[i] = (char)((email[i] >= 'A' && email[i] <= 'Z') ? email[i] + 32 : email[i]);
    memset(out, 0, sizeof(*out));
    out->sin6_family = AF_INET6;
    if (pg_sha256(low, n, h) == 0)
        memcpy(&out->sin6_addr, h, 16);
}

static uint32_t limited(struct server *srv, const struct sockaddr *peer, const char *email)
{
    uint64_t now = now_ms_wall();
    uint32_t w = pg_auth_limiter_wait(srv->admin_api->by_addr, peer, now);
    if (email) {
        struct sockaddr_in6 k;
        account_key(email, &k);
        uint32_t w2 = pg_auth_limiter_wait(srv->admin_api->by_account, (struct sockaddr *)&k, now);
        if (w2 > w)
            w = w2;
    }
    return w;
}

/* Loop thread, after the work: failures count. */
static void count_failure(struct admin_job *j)
{
    if (!j->auth_failed)
        return;
    uint64_t now = now_ms_wall();
    pg_auth_limiter_fail(j->srv->admin_api->by_addr, (struct sockaddr *)&j->peer, now);
    if (j->email[0]) {
        struct sockaddr_in6 k;
        account_key(j->email, &k);
        pg_auth_limiter_fail(j->srv->admin_api->by_account, (struct sockaddr *)&k, now);
    }
}

/* --- tokens ----------------------------------------------------------------------- */

/* The answer of a login or a refresh: a fresh access token for u and the
 * refresh token. The token's jti names its sign-in (family "." random), so
 * a logout ends the access tokens of that sign-in too. */
static void issue(struct admin_job *j, const struct pg_user *u, const struct pg_session *s,
                  const char *refresh, int64_t now)
{
    struct pg_jwt_claims cl;
    uint8_t jti[8];
    char rnd[2 * sizeof(jti) + 1];
    char token[PG_JWT_MAX + 1];
    memset(&cl, 0, sizeof(cl));
    snprintf(cl.iss, sizeof(cl.iss), "%s", ADMIN_ISS);
    snprintf(cl.aud, sizeof(cl.aud), "%s", ADMIN_AUD);
    snprintf(cl.sub, sizeof(cl.sub), "%s", u->email);
    snprintf(cl.org, sizeof(cl.org), "%s", u->org);
    snprintf(cl.role, sizeof(cl.role), "%s", admin_role_name(u->role));
    cl.iat = now;
    cl.exp = now + PG_JWT_TTL_S;
    if (pg_random(jti, sizeof(jti)) != 0 || pg_hex_encode(jti, sizeof(jti), rnd, sizeof(rnd)) < 0 ||
        (size_t)snprintf(cl.jti, sizeof(cl.jti), "%s.%s", s->family, rnd) >= sizeof(cl.jti) ||
        pg_jwt_sign(j->srv->admin_api->jwt_key, sizeof(j->srv->admin_api->jwt_key), &cl, token,
                    sizeof(token)) != 0) {
        admin_job_error(j, 503, "unavailable", "payguard could not sign an access token; retry shortly.");
        return;
    }
    j->out = json_pack("{s:s,s:s,s:I,s:s,s:I,s:{s:s,s:s,s:s}}", "access_token", token, "token_type",
                       "Bearer", "expires_in", (json_int_t)PG_JWT_TTL_S, "refresh_token", refresh,
                       "refresh_expires_in", (json_int_t)(s->expires_at - now), "user", "email",
                       u->email, "org", u->org, "role", admin_role_name(u->role));
    OPENSSL_cleanse(token, sizeof(token));
    if (!j->out)
        admin_job_error(j, 503, "unavailable", "Out of memory; retry shortly.");
}

/* --- login ---------------------------------------------------------------------------- */

static void login_work(struct admin_job *j)
{
    const struct pg_config *cfg = j->rt->cfg;
    struct pg_ledger *l = j->srv->ledger;
    const char *password = json_string_value(json_object_get(j->in, "password"));
    const char *totp = json_string_value(json_object_get(j->in, "totp"));
    const char *rcode = json_string_value(json_object_get(j->in, "recovery_code"));
    const struct pg_user *u = admin_find_user(cfg, j->email);
    int64_t now = (int64_t)(now_ms_wall() / 1000);

    /* Same bcrypt whether or not the user exists. */
    int ok = pg_auth_bcrypt_verify(pg_slice_cstr(password),
                                   u && u->password_hash ? u->password_hash : dummy_hash);
    if (ok != 1 || !u || !u->org) {
        j->auth_failed = true;
        admin_job_error(j, 401, "invalid_credentials", invalid_credentials);
        return;
    }
    const uint8_t *secret;
    size_t slen = user_totp(u, &secret);
    if (slen == 0) {
        admin_job_error(j, 403, "totp_required",
                        "This user has no second factor configured, and the admin API requires one. An operator must run `payguard user totp` and add it to payguard.yaml.");
        return;
    }
    const char *how;
    if (totp) {
        uint64_t last = 0, step = 0;
        int rc = pg_ledger_totp_last(l, u->email, &last);
        if (rc != 0) {
            admin_job_error(j, 503, "unavailable", "payguard could not read the ledger; retry shortly.");
            return;
        }
        int v = pg_totp_verify(secret, slen, pg_slice_cstr(totp), now, last, &step);
        /* A step spent meanwhile (the same code twice at once) fails here. */
        if (v == 1 && (rc = pg_ledger_totp_spend(l, u->email, step)) == PG_EBUSY)
            v = 0;
        if (v == 1 && rc != 0) {
            admin_job_error(j, 503, "unavailable", "payguard could not record the login; retry shortly.");
            return;
        }
        if (v != 1) {
            j->auth_failed = true;
            admin_job_error(j, 401, "invalid_credentials", invalid_credentials);
            return;
        }
        how = "totp";
    } else {
        char hex[65];
        bool known = pg_recovery_code_hash(pg_slice_cstr(rcode), hex) == 0 &&
                     user_recovery_known(u, hex);
        int rc = known ? pg_ledger_recovery_spend(l, u->email, hex, now) : PG_EAUTH;
        if (rc == PG_EAUTH || rc == PG_EBUSY) {
            j->auth_failed = true;
            admin_job_error(j, 401, "invalid_credentials", invalid_credentials);
            return;
        }
        if (rc != 0) {
            admin_job_error(j, 503, "unavailable", "payguard could not record the login; retry shortly.");
            return;
        }
        how = "recovery_code";
    }
    char refresh[PG_SESSION_TOKEN_BUF];
    struct pg_session s;
    int rc = pg_ledger_session_open(l, u->email, u->org, how, now, ADMIN_REFRESH_TTL_S, refresh, &s);
    if (rc != 0) {
        admin_job_error(j, 503, "unavailable", "payguard could not record the session; retry shortly.");
        return;
    }
    issue(j, u, &s, refresh, now);
    OPENSSL_cleanse(refresh, sizeof(refresh));
}

void admin_login(struct conn *c)
{
    json_t *in = admin_body_or_reply(c, login_keys, false);
    if (!in)
        return;
    const char *email = json_string_value(json_object_get(in, "email"));
    json_t *pw = json_object_get(in, "password"), *totp = json_object_get(in, "totp"),
           *rcode = json_object_get(in, "recovery_code");
    if (!email || !email[0] || strlen(email) > PG_SESSION_USER_MAX || !json_is_string(pw) ||
        (totp && !json_is_string(totp)) || (rcode && !json_is_string(rcode)) ||
        (!totp == !rcode)) {
        json_decref(in);
        admin_reply_error(c, 400, "bad_request",
                          "Send {\"email\", \"password\"} and exactly one of \"totp\" (the 6-digit code) or \"recovery_code\".", 0);
        return;
    }
    uint32_t wait = limited(c->srv, (struct sockaddr *)&c->peer, email);
    if (wait) {
        json_decref(in);
        admin_reply_error(c, 429, "rate_limited", "Too many failed sign-ins; wait and try again.", wait);
        return;
    }
    struct admin_job *j = admin_job_new(c, login_work, in);
    if (!j)
        return;
    j->done = count_failure;
    snprintf(j->email, sizeof(j->email), "%s", email);
    admin_job_start(j);
}

/* --- refresh and logout ------------------------------------------------------------------ */

static void refresh_work(struct admin_job *j)
{
    const char *tok = json_string_value(json_object_get(j->in, "refresh_token"));
    char next[PG_SESSION_TOKEN_BUF];
    struct pg_session s;
    enum pg_session_result res;
    int64_t now = (int64_t)(now_ms_wall() / 1000);
    int rc = pg_ledger_session_rotate(j->srv->ledger, pg_slice_cstr(tok), now, ADMIN_REFRESH_TTL_S,
                                      next, &s, &res);
    if (rc != 0) {
        admin_job_error(j, 503, "unavailable", "payguard could not read the ledger; retry shortly.");
        return;
    }
    if (res == PG_SESSION_REUSED) {
        j->auth_failed = true;
        admin_job_error(j, 401, "refresh_token_reused",
                        "This refresh token was already used. Every session it belongs to is now signed out; sign in again.");
        return;
    }
    if (res != PG_SESSION_OK) {
        j->auth_failed = true;
        admin_job_error(j, 401, "invalid_token",
                        res == PG_SESSION_EXPIRED ? "The refresh token has expired; sign in again."
                                                  : "The refresh token is not valid; sign in again.");
        return;
    }
    const struct pg_user *u = admin_find_user(j->rt->cfg, s.user);
    if (!u || !u->org || strcmp(u->org, s.org) != 0) {
        admin_job_error(j, 401, "invalid_token", "This user is no longer configured.");
        OPENSSL_cleanse(next, sizeof(next));
        return;
    }
    issue(j, u, &s, next, now);
    OPENSSL_cleanse(next, sizeof(next));
}

static void logout_work(struct admin_job *j)
{
    const char *tok = json_string_value(json_object_get(j->in, "refresh_token"));
    enum pg_session_result res;
    int rc = pg_ledger_session_close(j->srv->ledger, pg_slice_cstr(tok),
                                     (int64_t)(now_ms_wall() / 1000), NULL, &res);
    if (rc != 0) {
        admin_job_error(j, 503, "unavailable", "payguard could not record the sign-out; retry shortly.");
        return;
    }
    if (res == PG_SESSION_OK || res == PG_SESSION_REVOKED) {
        j->out = json_pack("{s:s}", "status", "signed_out");
        return;
    }
    j->auth_failed = true;
    admin_job_error(j, 401, res == PG_SESSION_REUSED ? "refresh_token_reused" : "invalid_token",
                    res == PG_SESSION_REUSED
                        ? "This refresh token was already used. Every session it belongs to is now signed out."
                        : "The refresh token is not valid.");
}

static void token_job(struct conn *c, admin_work_fn work)
{
    json_t *in = admin_body_or_reply(c, refresh_keys, false);
    if (!in)
        return;
    if (!json_is_string(json_object_get(in, "refresh_token"))) {
        json_decref(in);
        admin_reply_error(c, 400, "bad_request", "Send {\"refresh_token\": \"pgr_...\"}.", 0);
        return;
    }
    uint32_t wait = limited(c->srv, (struct sockaddr *)&c->peer, NULL);
    if (wait) {
        json_decref(in);
        admin_reply_error(c, 429, "rate_limited", "Too many failed attempts; wait and try again.", wait);
        return;
    }
    struct admin_job *j = admin_job_new(c, work, in);
    if (!j)
        return;
    j->done = count_failure;
    admin_job_start(j);
}

void admin_refresh(struct conn *c)
{
    token_job(c, refresh_work);
}

void admin_logout(struct conn *c)
{
    token_job(c, logout_work);
}
