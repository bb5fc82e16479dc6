/* Admin sessions in a real LMDB environment in a fresh directory: the
 * signing key survives a reopen, refresh tokens rotate, a reused one revokes
 * its family (audited), two threads racing one token get exactly one
 * winner, logout, expiry, TOTP steps and recovery codes spent once. */
#include "common/pg.h"
#include "ledger/ledger.h"

#include <dirent.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#define NOW INT64_C(1795435200) /* 2026-11-23 12:00 UTC */
#define TTL 3600u

static struct {
    char dir[64];
    struct pg_ledger *l;
} T;

static void rm_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char p[PATH_MAX];
        snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static void reopen(void)
{
    char err[256];
    pg_ledger_close(T.l);
    struct pg_ledger_options opt = { .dir = T.dir };
    assert_int_equal(pg_ledger_open(&opt, &T.l, err, sizeof(err)), 0);
}

static int setup(void **state)
{
    (void)state;
    char err[256];
    snprintf(T.dir, sizeof(T.dir), "/tmp/pg-test-sessions-XXXXXX");
    assert_non_null(mkdtemp(T.dir));
    struct pg_ledger_options opt = { .dir = T.dir };
    assert_int_equal(pg_ledger_open(&opt, &T.l, err, sizeof(err)), 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    pg_ledger_close(T.l);
    T.l = NULL;
    rm_tree(T.dir);
    return 0;
}

/* The org's audit entries as one string, for looking at what was written. */
static int collect(void *arg, uint64_t seq, const char *json, size_t len)
{
    (void)seq;
    char *buf = arg;
    size_t have = strlen(buf);
    if (have + len + 2 < 16384) {
        memcpy(buf + have, json, len);
        buf[have + len] = '\n';
        buf[have + len + 1] = '\0';
    }
    return 0;
}

static char *audit_of(const char *org)
{
    static char buf[16384];
    buf[0] = '\0';
    assert_int_equal(pg_ledger_audit_page(T.l, org, 0, 1000, collect, buf, NULL), 0);
    return buf;
}

static void login(const char *user, const char *org, char tok[PG_SESSION_TOKEN_BUF],
                  struct pg_session *s)
{
    assert_int_equal(pg_ledger_session_open(T.l, user, org, "totp", NOW, TTL, tok, s), 0);
}

/* --- tests ------------------------------------------------------------------ */

static void test_jwt_key_made_once_and_kept(void **state)
{
    (void)state;
    uint8_t a[PG_SESSION_KEY_LEN], b[PG_SESSION_KEY_LEN], zero[PG_SESSION_KEY_LEN] = { 0 };
    assert_int_equal(pg_ledger_jwt_key(T.l, a), 0);
    assert_memory_not_equal(a, zero, sizeof(a));
    assert_int_equal(pg_ledger_jwt_key(T.l, b), 0);
    assert_memory_equal(a, b, sizeof(a));
    reopen();
    assert_int_equal(pg_ledger_jwt_key(T.l, b), 0);
    assert_memory_equal(a, b, sizeof(a));
}

static void test_open_shape_and_audit(void **state)
{
    (void)state;
    char tok[PG_SESSION_TOKEN_BUF], tok2[PG_SESSION_TOKEN_BUF];
    struct pg_session s;
    login("ana@acme.test", "acme", tok, &s);
    assert_true(strncmp(tok, "pgr_", 4) == 0);
    assert_int_equal(strlen(tok), 4 + 43); /* 256 bits of base64url */
    assert_string_equal(s.user, "ana@acme.test");
    assert_string_equal(s.org, "acme");
    assert_int_equal(strlen(s.family), 32);
    assert_int_equal(s.expires_at, NOW + TTL);
    login("ana@acme.test", "acme", tok2, NULL);
    assert_string_not_equal(tok, tok2);
    char *log = audit_of("acme");
    assert_non_null(strstr(log, "\"action\":\"login\""));
    assert_non_null(strstr(log, "\"actor\":\"user:ana@acme.test\""));
    assert_null(strstr(log, tok)); /* never the token */
    assert_int_equal(pg_ledger_session_open(T.l, "", "acme", "totp", NOW, TTL, tok, NULL),
                     PG_EPARSE);
}

static void test_rotation(void **state)
{
    (void)state;
    char t0[PG_SESSION_TOKEN_BUF], t1[PG_SESSION_TOKEN_BUF], t2[PG_SESSION_TOKEN_BUF];
    struct pg_session s0, s1;
    enum pg_session_result res;
    login("ana@acme.test", "acme", t0, &s0);
    assert_int_equal(pg_ledger_session_rotate(T.l, pg_slice_cstr(t0), NOW + 10, TTL, t1, &s1, &res), 0);
    assert_int_equal(res, PG_SESSION_OK);
    assert_string_not_equal(t0, t1);
    assert_string_equal(s1.family, s0.family);
    assert_string_equal(s1.user, "ana@acme.test");
    assert_int_equal(s1.expires_at, NOW + 10 + TTL);
    /* The successor rotates in turn. */
    assert_int_equal(pg_ledger_session_rotate(T.l, pg_slice_cstr(t1), NOW + 20, TTL, t2, NULL, &res), 0);
    assert_int_equal(res, PG_SESSION_OK);
    /* Unknown and malformed tokens change nothing. */
    assert_int_equal(pg_ledger_session_rotate(T.l, PG_SLICE("pgr_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"), NOW, TTL, t1, NULL, &res), 0);
    assert_int_equal(res, PG_SESSION_UNKNOWN);
    assert_string_equal(t1, "");
    assert_int_equal(pg_ledger_session_rotate(T.l, PG_SLICE("garbage"), NOW, TTL, t1, NULL, &res), 0);
    assert_int_equal(res, PG_SESSION_UNKNOWN);
    /* A token survives a restart. */
    reopen();
    assert_int_equal(pg_ledger_session_rotate(T.l, pg_slice_cstr(t2), NOW + 30, TTL, t1, NULL, &res), 0);
    assert_int_equal(res, PG_SESSION_OK);
}

static void test_reuse_revokes_family(void **state)
{
    (void)state;
    char t0[PG_SESSION_TOKEN_BUF], t1[PG_SESSION_TOKEN_BUF], t2[PG_SESSION_TOKEN_BUF];
    char other[PG_SESSION_TOKEN_BUF];
    enum pg_session_result res;
    struct pg_session s;
    login("ana@acme.test", "acme", t0, NULL);
    login("ana@acme.test", "acme", other, NULL); /* another device: another family */
    assert_int_equal(pg_ledger_session_rotate(T.l, pg_slice_cstr(t0), NOW + 1, TTL, t1, NULL, &res), 0);
    assert_int_equal(res, PG_SESSION_OK);
    /* The old token again: reuse. */
    assert_int_equal(pg_ledger_session_rotate(T.l, pg_slice_cstr(t0), NOW + 2, TTL, t2, &s, &res), 0);
    assert_int_equal(res, PG_SESSION_REUSED);
    assert_string_equal(t2, "");
    assert_string_equal(s.user, "ana@acme.test");
    /* The live successor is dead too. */
    assert_int_equal(pg_ledger_session_rotate(T.l, pg_slice_cstr(t1), NOW + 3, TTL, t2, NULL, &res), 0);
    assert_int_equal(res, PG_SESSION_REVOKED);
    assert_string_equal(t2, "");
    /* Presenting the rotated one again stays refused. */
    assert_int_equal(pg_ledger_session_rotate(T.l, pg_slice_cstr(t0), NOW + 4, TTL, t2, NULL, &res), 0);
    assert_int_equal(res, PG_SESSION_REVOKED);
    /* The other family is untouched. */
    assert_int_equal(pg_ledger_session_rotate(T.l, pg_slice_cstr(other), NOW + 5, TTL, t2, NULL, &res), 0);
    assert_int_equal(res, PG_SESSION_OK);
    /* Audited once, by payguard, in the user's org. */
    char *log = audit_of("acme");
    char *first = strstr(log, "\"action\":\"session_reuse\"");
    assert_non_null(first);
    assert_null(strstr(first + 1, "\"action\":\"session_reuse\""));
    assert_non_null(strstr(log, "refresh_token_reused"));
    assert_string_equal(audit_of("globex"), "");
}

struct racer {
    pthread_barrier_t *go;
    const char *token;
    int rc;
    enum pg_session_result res;
    char next[PG_SESSION_TOKEN_BUF];
};

static void *race(void *arg)
{
    struct racer *r = arg;
    pthread_barrier_wait(r->go);
    r->rc = pg_ledger_session_rotate(T.l, pg_slice_cstr(r->token), NOW + 1, TTL, r->next, NULL,
                                     &r->res);
    return NULL;
}

static void test_concurrent_refresh_one_wins(void **state)
{
    (void)state;
    for (int round = 0; round < 20; round++) {
        char t0[PG_SESSION_TOKEN_BUF];
        login("ana@acme.test", "acme", t0, NULL);
        pthread_barrier_t go;
        pthread_barrier_init(&go, NULL, 2);
        struct racer a = { &go, t0, -1, PG_SESSION_UNKNOWN, "" };
        struct racer b = { &go, t0, -1, PG_SESSION_UNKNOWN, "" };
        pthread_t ta, tb;
        assert_int_equal(pthread_create(&ta, NULL, race, &a), 0);
        assert_int_equal(pthread_create(&tb, NULL, race, &b), 0);
        pthread_join(ta, NULL);
        pthread_join(tb, NULL);
        pthread_barrier_destroy(&go);
        assert_int_equal(a.rc, 0);
        assert_int_equal(b.rc, 0);
        int wins = (a.res == PG_SESSION_OK) + (b.res == PG_SESSION_OK);
        assert_int_equal(wins, 1);
        struct racer *loser = a.res == PG_SESSION_OK ? &b : &a;
        assert_int_equal(loser->res, PG_SESSION_REUSED);
        assert_string_equal(loser->next, "");
    }
}

static void test_logout(void **state)
{
    (void)state;
    char t0[PG_SESSION_TOKEN_BUF], t1[PG_SESSION_TOKEN_BUF], t2[PG_SESSION_TOKEN_BUF];
    enum pg_session_result res;
    login("ana@acme.test", "acme", t0, NULL);
    assert_int_equal(pg_ledger_session_rotate(T.l, pg_slice_cstr(t0), NOW + 1, TTL, t1, NULL, &res), 0);
    assert_int_equal(pg_ledger_session_close(T.l, pg_slice_cstr(t1), NOW + 2, NULL, &res), 0);
    assert_int_equal(res, PG_SESSION_OK);
    assert_int_equal(pg_ledger_session_rotate(T.l, pg_slice_cstr(t1), NOW + 3, TTL, t2, NULL, &res), 0);
    assert_int_equal(res, PG_SESSION_REVOKED);
    assert_int_equal(pg_ledger_session_close(T.l, pg_slice_cstr(t1), NOW + 3, NULL, &res), 0);
    assert_int_equal(res, PG_SESSION_REVOKED);
    assert_int_equal(pg_ledger_session_close(T.l, PG_SLICE("pgr_nope"), NOW + 3, NULL, &res), 0);
    assert_int_equal(res, PG_SESSION_UNKNOWN);
    assert_non_null(strstr(audit_of("acme"), "\"action\":\"logout\""));
}

static void test_expiry(void **state)
{
    (void)state;
    char t0[PG_SESSION_TOKEN_BUF], t1[PG_SESSION_TOKEN_BUF];
    enum pg_session_result res;
    login("ana@acme.test", "acme", t0, NULL);
    assert_int_equal(pg_ledger_session_rotate(T.l, pg_slice_cstr(t0), NOW + TTL, TTL, t1, NULL, &res), 0);
    assert_int_equal(res, PG_SESSION_EXPIRED);
    assert_string_equal(t1, "");
    /* One second before, it still works. */
    login("ana@acme.test", "acme", t0, NULL);
    assert_int_equal(pg_ledger_session_rotate(T.l, pg_slice_cstr(t0), NOW + TTL - 1, TTL, t1, NULL, &res), 0);
    assert_int_equal(res, PG_SESSION_OK);
}

/* A sign-in is live until logout; an unknown or malformed family is not. */
static void test_live(void **state)
{
    (void)state;
    char t0[PG_SESSION_TOKEN_BUF];
    struct pg_session s;
    enum pg_session_result res;
    bool live = true;
    login("ana@acme.test", "acme", t0, &s);
    assert_int_equal(pg_ledger_session_live(T.l, s.family, &live), 0);
    assert_true(live);
    assert_int_equal(pg_ledger_session_close(T.l, pg_slice_cstr(t0), NOW + 1, NULL, &res), 0);
    assert_int_equal(pg_ledger_session_live(T.l, s.family, &live), 0);
    assert_false(live);
    live = true;
    assert_int_equal(pg_ledger_session_live(T.l, "00000000000000000000000000000000", &live), 0);
    assert_false(live);
    assert_int_equal(pg_ledger_session_live(T.l, "not-hex", &live), PG_EPARSE);
    assert_int_equal(pg_ledger_session_live(T.l, "0000000000000000000000000000000g", &live), PG_EPARSE);
}

/* Refresh tokens go a day after their expiry; before that they still read
 * as expired. */
static void test_tokens_pruned(void **state)
{
    (void)state;
    char t0[PG_SESSION_TOKEN_BUF], t1[PG_SESSION_TOKEN_BUF], t2[PG_SESSION_TOKEN_BUF];
    enum pg_session_result res;
    bool more;
    login("ana@acme.test", "acme", t0, NULL);
    assert_int_equal(pg_ledger_session_rotate(T.l, pg_slice_cstr(t0), NOW + 1, TTL, t1, NULL, &res), 0);
    assert_int_equal(res, PG_SESSION_OK);
    int64_t end = NOW + 1 + TTL;
    assert_int_equal(pg_ledger_prune(T.l, end + 86400 - 10, 1000, &more), 0);
    assert_int_equal(pg_ledger_session_rotate(T.l, pg_slice_cstr(t1), end + 86400 - 5, TTL, t2, NULL, &res), 0);
    assert_int_equal(res, PG_SESSION_EXPIRED);
    assert_int_equal(pg_ledger_prune(T.l, end + 86400 + 10, 1000, &more), 0);
    assert_int_equal(pg_ledger_session_rotate(T.l, pg_slice_cstr(t1), end + 86400 + 11, TTL, t2, NULL, &res), 0);
    assert_int_equal(res, PG_SESSION_UNKNOWN);
    assert_int_equal(pg_ledger_session_rotate(T.l, pg_slice_cstr(t0), end + 86400 + 11, TTL, t2, NULL, &res), 0);
    assert_int_equal(res, PG_SESSION_UNKNOWN);
}

static void test_totp_steps_spent_once(void **state)
{
    (void)state;
    uint64_t last = 99;
    assert_int_equal(pg_ledger_totp_last(T.l, "ana@acme.test", &last), 0);
    assert_int_equal(last, 0);
    assert_int_equal(pg_ledger_totp_spend(T.l, "ana@acme.test", 1000), 0);
    assert_int_equal(pg_ledger_totp_spend(T.l, "ana@acme.test", 1000), PG_EBUSY);
    assert_int_equal(pg_ledger_totp_spend(T.l, "ana@acme.test", 999), PG_EBUSY);
    assert_int_equal(pg_ledger_totp_last(T.l, "ana@acme.test", &last), 0);
    assert_int_equal(last, 1000);
    /* Per user. */
    assert_int_equal(pg_ledger_totp_spend(T.l, "bob@acme.test", 1000), 0);
    assert_int_equal(pg_ledger_totp_spend(T.l, "ana@acme.test", 1001), 0);
    reopen();
    assert_int_equal(pg_ledger_totp_spend(T.l, "ana@acme.test", 1001), PG_EBUSY);
}

static void test_recovery_codes_spent_once(void **state)
{
    (void)state;
    const char *h1 = "0000000000000000000000000000000000000000000000000000000000000001";
    const char *h2 = "0000000000000000000000000000000000000000000000000000000000000002";
    assert_int_equal(pg_ledger_recovery_spend(T.l, "ana@acme.test", h1, NOW), 0);
    assert_int_equal(pg_ledger_recovery_spend(T.l, "ana@acme.test", h1, NOW), PG_EBUSY);
    assert_int_equal(pg_ledger_recovery_spend(T.l, "ana@acme.test", h2, NOW), 0);
    assert_int_equal(pg_ledger_recovery_spend(T.l, "bob@acme.test", h1, NOW), 0);
    assert_int_equal(pg_ledger_recovery_spend(T.l, "ana@acme.test", "short", NOW), PG_EPARSE);
}

static void test_audit_page_and_head(void **state)
{
    (void)state;
    char tok[PG_SESSION_TOKEN_BUF];
    uint64_t head = 7, next = 0;
    assert_int_equal(pg_ledger_audit_head(T.l, "acme", &head), 0);
    assert_int_equal(head, 0);
    for (int i = 0; i < 5; i++)
        login("ana@acme.test", "acme", tok, NULL);
    assert_int_equal(pg_ledger_audit_head(T.l, "acme", &head), 0);
    assert_int_equal(head, 5);
    char buf[16384] = "";
    assert_int_equal(pg_ledger_audit_page(T.l, "acme", 1, 2, collect, buf, &next), 0);
    assert_int_equal(next, 3);
    assert_non_null(strstr(buf, "\"seq\":2"));
    assert_non_null(strstr(buf, "\"seq\":3"));
    assert_null(strstr(buf, "\"seq\":4"));
    assert_null(strstr(buf, "\"seq\":1,"));
    buf[0] = '\0';
    assert_int_equal(pg_ledger_audit_page(T.l, "acme", 5, 10, collect, buf, &next), 0);
    assert_string_equal(buf, "");
    assert_int_equal(next, 5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_jwt_key_made_once_and_kept, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_shape_and_audit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reuse_revokes_family, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_refresh_one_wins, setup, teardown),
        cmocka_unit_test_setup_teardown(test_logout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expiry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_live, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tokens_pruned, setup, teardown),
        cmocka_unit_test_setup_teardown(test_totp_steps_spent_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recovery_codes_spent_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_audit_page_and_head, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
