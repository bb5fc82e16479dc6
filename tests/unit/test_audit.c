/* The audit chain: its canonical bytes, the export recipe checked with
 * SHA-256 alone, and tampering done straight through LMDB (a byte flipped,
 * a hash flipped, an entry deleted, two swapped, one rewritten with a
 * consistent hash, the tail cut) — verify must name the first bad seq and
 * why, and leave the other org's chain alone. */
#include "common/pg.h"
#include "crypto/crypto.h"
#include "ledger/ledger.h"
#include "ledger/ledger_int.h"

#include <dirent.h>
#include <jansson.h>
#include <limits.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#define MONDAY INT64_C(1795435200) /* 2026-11-23T12:00:00Z */

static struct {
    char root[64];
    char dir[128];
    struct pg_ledger_options opt;
    struct pg_ledger *l;
    uv_loop_t loop;
    int completed;
} T;

static void ledger_open(void)
{
    char err[256];
    if (pg_ledger_open(&T.opt, &T.l, err, sizeof(err)) != 0)
        fail_msg("open: %s", err);
    assert_int_equal(pg_ledger_start(T.l, &T.loop), 0);
}

static void ledger_close(void)
{
    pg_ledger_close(T.l);
    T.l = NULL;
    uv_run(&T.loop, UV_RUN_DEFAULT);
}

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
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
            rm_tree(p);
        else
            unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static void on_done(struct pg_ledger_req *r)
{
    (void)r;
    T.completed++;
}

/* One RECORD: an entry with no budget effect. */
static void record(const char *org, const char *agent, int64_t amount, const char *cp, int64_t now)
{
    struct pg_ledger_req *r = calloc(1, sizeof(*r));
    assert_non_null(r);
    r->kind = PG_LEDGER_RECORD;
    r->cb = on_done;
    snprintf(r->org, sizeof(r->org), "%s", org);
    snprintf(r->agent, sizeof(r->agent), "%s", agent);
    r->now = now;
    r->route = "payment_intents.create";
    r->has_amount = amount >= 0;
    r->amount = amount;
    memcpy(r->currency, "usd", 4);
    snprintf(r->counterparty, sizeof(r->counterparty), "%s", cp ? cp : "");
    assert_int_equal(pg_sha256(&amount, sizeof(amount), r->fingerprint), 0);
    r->decision.verdict = PG_VERDICT_DENY;
    r->decision.status = 403;
    r->decision.reason = "merchant_denied";
    T.completed = 0;
    assert_int_equal(pg_ledger_submit(T.l, r), 0);
    while (T.completed < 1)
        uv_run(&T.loop, UV_RUN_ONCE);
    assert_int_equal(r->status, 0);
    free(r);
}

/* Five entries in acme, three in globex. */
static int setup(void **state)
{
    (void)state;
    memset(&T, 0, sizeof(T));
    snprintf(T.root, sizeof(T.root), "/tmp/pg-test-audit-XXXXXX");
    assert_non_null(mkdtemp(T.root));
    snprintf(T.dir, sizeof(T.dir), "%s/ledger", T.root);
    T.opt.dir = T.dir;
    assert_int_equal(uv_loop_init(&T.loop), 0);
    ledger_open();
    for (int i = 1; i <= 5; i++)
        record("acme", i % 2 ? "shopper" : "other", 1000 + i, "acct_1", MONDAY + i);
    for (int i = 1; i <= 3; i++)
        record("globex", "g", 2000 + i, NULL, MONDAY + i);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    if (T.l)
        ledger_close();
    assert_int_equal(uv_loop_close(&T.loop), 0);
    rm_tree(T.root);
    return 0;
}

struct reports {
    int n;
    struct pg_audit_report r[4];
};

static void report_cb(void *arg, const struct pg_audit_report *r)
{
    struct reports *rs = arg;
    if (rs->n < 4)
        rs->r[rs->n++] = *r;
}

static const struct pg_audit_report *find(const struct reports *rs, const char *org)
{
    for (int i = 0; i < rs->n; i++)
        if (strcmp(rs->r[i].org, org) == 0)
            return &rs->r[i];
    fail_msg("no report for %s", org);
    return NULL;
}

static struct reports verify_all(void)
{
    struct reports rs;
    memset(&rs, 0, sizeof(rs));
    assert_int_equal(pg_ledger_audit_verify(T.l, NULL, report_cb, &rs), 0);
    return rs;
}

/* The export of one org as lines in memory. */
static char *export_org(const char *org, uint64_t since, size_t *len)
{
    char *buf = NULL;
    FILE *f = open_memstream(&buf, len);
    assert_non_null(f);
    assert_int_equal(pg_ledger_audit_export(T.l, org, since, f), 0);
    fclose(f);
    return buf;
}

/* --- the chain as written ---------------------------------------------------- */

static void test_chains_verify(void **state)
{
    (void)state;
    struct reports rs = verify_all();
    assert_int_equal(rs.n, 2);
    const struct pg_audit_report *a = find(&rs, "acme"), *g = find(&rs, "globex");
    assert_true(a->ok);
    assert_int_equal(a->count, 5);
    assert_int_equal(a->head_seq, 5);
    assert_true(g->ok);
    assert_int_equal(g->count, 3);
    memset(&rs, 0, sizeof(rs));
    assert_int_equal(pg_ledger_audit_verify(T.l, "globex", report_cb, &rs), 0);
    assert_int_equal(rs.n, 1);
    assert_int_equal(rs.r[0].count, 3);
    /* An org with no chain is an empty, good chain. */
    memset(&rs, 0, sizeof(rs));
    assert_int_equal(pg_ledger_audit_verify(T.l, "nobody", report_cb, &rs), 0);
    assert_int_equal(rs.n, 1);
    assert_true(rs.r[0].ok);
    assert_int_equal(rs.r[0].count, 0);
    /* The CLI verifies through a read-only handle. */
    ledger_close();
    T.opt.read_only = true;
    char err[256];
    assert_int_equal(pg_ledger_open(&T.opt, &T.l, err, sizeof(err)), 0);
    rs = verify_all();
    assert_true(find(&rs, "acme")->ok);
}

static void test_canonical_form(void **state)
{
    (void)state;
    record("acme", "shopper", 4242, "card 4242424242424242 caf\xc3\xa9 1234567890123", MONDAY + 100);
    size_t len;
    char *all = export_org("acme", 6, &len);
    assert_true(len > 0 && all[len - 1] == '\n');
    all[len - 1] = '\0';
    assert_null(strchr(all, '\n')); /* one line: seq 6 only */
    /* The recipe: cut `,"hash":"<64 hex>"}` and put back the brace. */
    size_t n = strlen(all);
    assert_true(n > 75);
    assert_memory_equal(all + n - 75, ",\"hash\":\"", 9);
    assert_memory_equal(all + n - 2, "\"}", 2);
    char canon[4096];
    snprintf(canon, sizeof(canon), "%.*s}", (int)(n - 75), all);
    /* Canonical = what jansson writes compact, sorted, ASCII-escaped. */
    json_error_t jerr;
    json_t *j = json_loads(canon, 0, &jerr);
    assert_non_null(j);
    char *again = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII);
    assert_string_equal(again, canon);
    free(again);
    assert_int_equal(json_integer_value(json_object_get(j, "seq")), 6);
    assert_string_equal(json_string_value(json_object_get(j, "time")), "2026-11-23T12:01:40Z");
    assert_string_equal(json_string_value(json_object_get(j, "org")), "acme");
    assert_string_equal(json_string_value(json_object_get(j, "agent")), "shopper");
    assert_string_equal(json_string_value(json_object_get(j, "actor")), "agent:shopper");
    assert_string_equal(json_string_value(json_object_get(j, "action")), "deny");
    assert_string_equal(json_string_value(json_object_get(j, "decision")), "deny");
    assert_string_equal(json_string_value(json_object_get(j, "reason")), "merchant_denied");
    assert_int_equal(json_integer_value(json_object_get(j, "amount")), 4242);
    assert_int_equal(strlen(json_string_value(json_object_get(j, "fingerprint"))), 64);
    assert_int_equal(strlen(json_string_value(json_object_get(j, "prev_hash"))), 64);
    assert_null(json_object_get(j, "reservation")); /* absent fields are omitted */
    assert_null(json_object_get(j, "outcome"));
    /* Card-length digit runs keep their last four; shorter ones stay. */
    assert_string_equal(json_string_value(json_object_get(j, "counterparty")),
                        "card ************4242 caf\xc3\xa9 *********0123");
    assert_non_null(strstr(canon, "caf\\u00E9")); /* jansson writes upper-case hex */
    assert_null(strstr(canon, "4242424242424242"));
    json_decref(j);
    free(all);
}

static void test_mask_digits(void **state)
{
    (void)state;
    char out[128];
    audit_mask_digits("acct_123456789012", out, sizeof(out)); /* 12 digits: not a card */
    assert_string_equal(out, "acct_123456789012");
    audit_mask_digits("1234567890123", out, sizeof(out));
    assert_string_equal(out, "*********0123");
    audit_mask_digits("1234567890123456789", out, sizeof(out));
    assert_string_equal(out, "***************6789");
    audit_mask_digits("12345678901234567890", out, sizeof(out)); /* 20: not a card */
    assert_string_equal(out, "12345678901234567890");
    audit_mask_digits("x4111111111111111y4000056655665556", out, sizeof(out));
    assert_string_equal(out, "x************1111y************5556");
}

/* The definition the writer must meet: jansson's dump of the entry built as
 * an object, with text that is not valid UTF-8 turned to ASCII and '?'. */
static void ref_str(json_t *o, const char *k, const char *v)
{
    if (!v || !v[0])
        return;
    json_t *j = json_string(v);
    if (!j) {
        char copy[2048];
        size_t n = strlen(v);
        assert_true(n < sizeof(copy));
        for (size_t i = 0; i <= n; i++)
            copy[i] = (unsigned char)v[i] >= 0x80 ? '?' : v[i];
        j = json_string(copy);
    }
    assert_non_null(j);
    assert_int_equal(json_object_set_new(o, k, j), 0);
}

static char *reference(const struct audit_entry *e, uint64_t seq, const uint8_t prev[32])
{
    char hex[65], when[32], cp[PG_COUNTERPARTY_MAX + 1];
    json_t *o = json_object();
    struct tm tm;
    time_t tt = (time_t)e->time;
    assert_non_null(gmtime_r(&tt, &tm));
    assert_true(strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm) > 0);
    json_object_set_new(o, "seq", json_integer((json_int_t)seq));
    ref_str(o, "time", when);
    ref_str(o, "org", e->org);
    ref_str(o, "actor", e->actor);
    ref_str(o, "action", e->action);
    ref_str(o, "agent", e->agent);
    ref_str(o, "route", e->route);
    ref_str(o, "currency", e->currency);
    ref_str(o, "decision", e->decision);
    ref_str(o, "reason", e->reason);
    ref_str(o, "outcome", e->outcome);
    ref_str(o, "approval", e->approval);
    ref_str(o, "note", e->note);
    if (e->fingerprint) {
        assert_int_equal(pg_hex_encode(e->fingerprint, 32, hex, sizeof(hex)), 64);
        ref_str(o, "fingerprint", hex);
    }
    if (e->has_amount)
        json_object_set_new(o, "amount", json_integer(e->amount));
    if (e->counterparty && e->counterparty[0]) {
        audit_mask_digits(e->counterparty, cp, sizeof(cp));
        ref_str(o, "counterparty", cp);
    }
    if (e->reservation)
        json_object_set_new(o, "reservation", json_integer((json_int_t)e->reservation));
    assert_int_equal(pg_hex_encode(prev, 32, hex, sizeof(hex)), 64);
    ref_str(o, "prev_hash", hex);
    char *out = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII);
    json_decref(o);
    assert_non_null(out);
    return out;
}

static void same_as_jansson(const struct audit_entry *e, uint64_t seq)
{
    uint8_t prev[32];
    for (size_t i = 0; i < 32; i++)
        prev[i] = (uint8_t)(seq * 31 + i * 7);
    uint8_t stack[64];
    struct canon_buf b = { stack, 0, sizeof(stack), false, false }; /* small: must grow */
    assert_int_equal(audit_canon(e, seq, prev, &b), 0);
    char *want = reference(e, seq, prev);
    if (b.len != strlen(want) || memcmp(b.p, want, b.len) != 0)
        fail_msg("canonical bytes differ:\n got  %.*s\n want %s", (int)b.len, b.p, want);
    free(want);
    if (b.heap)
        free(b.p);
}

static void test_canonical_writer_is_jansson(void **state)
{
    (void)state;
    static const char *const corpus[] = {
        "plain", "quote \" backslash \\ slash / del \x7f", "\x01\x02\b\f\n\r\t\x1f end",
        "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x92\xb3 \xf4\x8f\xbf\xbf", /* 2, 3, 4 bytes, max */
        "\xef\xbf\xbf\xee\x80\x80", /* U+FFFF, U+E000 */
        "bad \x80 continuation", "overlong \xc0\x80", "overlong \xe0\x80\x80",
        "surrogate \xed\xa0\x80", "too big \xf4\x90\x80\x80", "overlong \xf0\x8f\xbf\xbf",
        "overlong \xf0\x80\x80\xaf", "overlong \xe0\x9f\xbf", "low \xed\x9f\xbf", "cut \xe2\x82", "\xf5\xff\xfe",
        "mixed \xc3\xa9 and \xff", "?", "4111111111111111", "acct_1Trusted\xc3\xa9 5555555555554444",
        "",
    };
    uint8_t fp[32];
    for (size_t i = 0; i < 32; i++)
        fp[i] = (uint8_t)(i * 13);
    for (size_t i = 0; i < PG_ARRAY_LEN(corpus); i++) {
        struct audit_entry e = {
            .time = MONDAY + (int64_t)i * 86399, .org = "acme", .agent = corpus[i],
            .actor = "agent:x", .action = "settle", .route = corpus[i], .fingerprint = fp,
            .has_amount = i % 2 == 0, .amount = i % 4 == 0 ? INT64_MIN : INT64_MAX,
            .currency = "usd", .counterparty = corpus[i], .decision = "allow", .reason = corpus[i],
            .outcome = "post", .approval = "apr_x", .note = corpus[i],
            .reservation = i % 3 ? UINT64_C(1) << 62 : 0,
        };
        same_as_jansson(&e, i + 1);
    }
    /* Random text, every byte value but NUL. */
    uint64_t x = 0x9E3779B97F4A7C15u;
    for (int round = 0; round < 3000; round++) {
        char s[64];
        size_t n = (size_t)(round % 63);
        for (size_t i = 0; i < n; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            uint8_t c = (uint8_t)(x % 255 + 1);
            /* lean towards multi-byte starts and continuations */
            s[i] = (char)(x % 5 == 0 ? 0x80 | (c & 0x3f) : c);
        }
        s[n] = '\0';
        struct audit_entry e = { .time = (int64_t)(x % UINT64_C(253402300800)), .org = "o",
                                 .actor = s, .action = "record", .note = s, .counterparty = s };
        same_as_jansson(&e, (uint64_t)round + 1);
    }
}

static void test_time_format(void **state)
{
    (void)state;
    uint64_t x = 12345;
    for (int i = 0; i < 20000; i++) {
        x = x * 6364136223846793005u + 1442695040888963407u;
        int64_t t = i < 5 ? (int64_t[]){ 0, 951782400, 951868800, 4107542399, 253402300799 }[i]
                          : (int64_t)(x % UINT64_C(253402300800));
        char got[21], want[32];
        struct tm tm;
        time_t tt = (time_t)t;
        assert_non_null(gmtime_r(&tt, &tm));
        assert_true(strftime(want, sizeof(want), "%Y-%m-%dT%H:%M:%SZ", &tm) > 0);
        audit_time(t, got);
        if (strcmp(got, want) != 0)
            fail_msg("%lld: %s, want %s", (long long)t, got, want);
    }
}

static int unhex(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static void test_export_recipe(void **state)
{
    (void)state;
    size_t len;
    char *all = export_org("acme", 0, &len);
    uint8_t prev[32] = { 0 };
    int lines = 0;
    for (char *line = all, *nl; (nl = strchr(line, '\n')); line = nl + 1) {
        *nl = '\0';
        size_t n = strlen(line);
        /* Only SHA-256: canonical bytes, the previous hash, this hash. */
        uint8_t *buf = malloc(32 + n);
        assert_non_null(buf);
        memcpy(buf, prev, 32);
        memcpy(buf + 32, line, n - 75);
        buf[32 + n - 75] = '}';
        uint8_t h[32], want[32];
        assert_int_equal(pg_sha256(buf, 32 + n - 74, h), 0);
        for (size_t i = 0; i < 32; i++)
            want[i] = (uint8_t)(unhex(line[n - 66 + 2 * i]) << 4 | unhex(line[n - 65 + 2 * i]));
        assert_memory_equal(h, want, 32);
        char prevhex[65], seq[32];
        assert_true(pg_hex_encode(prev, 32, prevhex, sizeof(prevhex)) == 64);
        char field[80];
        snprintf(field, sizeof(field), "\"prev_hash\":\"%s\"", prevhex);
        assert_non_null(strstr(line, field));
        snprintf(seq, sizeof(seq), "\"seq\":%d", ++lines);
        assert_non_null(strstr(line, seq));
        memcpy(prev, h, 32);
        free(buf);
    }
    assert_int_equal(lines, 5);
    free(all);
    /* All orgs: one chain after the other. */
    char *both = export_org(NULL, 0, &len);
    int count = 0;
    for (size_t i = 0; i < len; i++)
        count += both[i] == '\n';
    assert_int_equal(count, 8);
    free(both);
    char *tail = export_org("acme", 4, &len);
    assert_non_null(strstr(tail, "\"seq\":4,"));
    assert_null(strstr(tail, "\"seq\":3,"));
    free(tail);
}

struct lines {
    int n;
    char l[8][1024];
};

static int line_cb(void *arg, const char *json, size_t len)
{
    struct lines *ls = arg;
    snprintf(ls->l[ls->n++], sizeof(ls->l[0]), "%.*s", (int)len, json);
    return ls->n >= 8;
}

static void test_recent(void **state)
{
    (void)state;
    struct lines ls;
    memset(&ls, 0, sizeof(ls));
    /* shopper wrote seq 1, 3, 5: newest first, at most 2. */
    assert_int_equal(pg_ledger_audit_recent(T.l, "acme", "shopper", 2, line_cb, &ls), 0);
    assert_int_equal(ls.n, 2);
    assert_non_null(strstr(ls.l[0], "\"seq\":5,"));
    assert_non_null(strstr(ls.l[1], "\"seq\":3,"));
    assert_non_null(strstr(ls.l[0], "\"hash\":\""));
    memset(&ls, 0, sizeof(ls));
    assert_int_equal(pg_ledger_audit_recent(T.l, "globex", "g", 10, line_cb, &ls), 0);
    assert_int_equal(ls.n, 3);
    memset(&ls, 0, sizeof(ls));
    assert_int_equal(pg_ledger_audit_recent(T.l, "acme", "g", 10, line_cb, &ls), 0);
    assert_int_equal(ls.n, 0);
    assert_int_equal(pg_ledger_audit_recent(T.l, NULL, "g", 10, line_cb, &ls), PG_EPARSE);
}

/* --- tampering, straight through LMDB ----------------------------------------------- */

typedef void (*tamper_fn)(MDB_txn *txn, MDB_dbi audit, MDB_dbi head);

static MDB_val akey(uint8_t *k, const char *org, uint64_t seq)
{
    size_t on = strlen(org);
    memcpy(k, org, on);
    k[on] = 0;
    for (size_t i = 0; i < 8; i++)
        k[on + 1 + i] = (uint8_t)(seq >> (56 - 8 * i));
    MDB_val v = { on + 9, k };
    return v;
}

/* A copy of acme's entry `seq` (canonical bytes + hash). */
static uint8_t *get_entry(MDB_txn *txn, MDB_dbi audit, uint64_t seq, size_t *n)
{
    uint8_t k[64];
    MDB_val key = akey(k, "acme", seq), val;
    assert_int_equal(mdb_get(txn, audit, &key, &val), 0);
    uint8_t *copy = malloc(val.mv_size);
    assert_non_null(copy);
    memcpy(copy, val.mv_data, val.mv_size);
    *n = val.mv_size;
    return copy;
}

static void put_entry(MDB_txn *txn, MDB_dbi audit, uint64_t seq, const uint8_t *v, size_t n)
{
    uint8_t k[64];
    MDB_val key = akey(k, "acme", seq), val = { n, (void *)(uintptr_t)v };
    assert_int_equal(mdb_put(txn, audit, &key, &val, 0), 0);
}

static void del_entry(MDB_txn *txn, MDB_dbi audit, uint64_t seq)
{
    uint8_t k[64];
    MDB_val key = akey(k, "acme", seq);
    assert_int_equal(mdb_del(txn, audit, &key, NULL), 0);
}

/* Closes payguard's handle, changes the file as an attacker with write
 * access would, reopens, and verifies. */
static struct reports tampered(tamper_fn fn)
{
    ledger_close();
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi audit, head;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 16), 0);
    assert_int_equal(mdb_env_open(env, T.dir, 0, 0600), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "audit", 0, &audit), 0);
    assert_int_equal(mdb_dbi_open(txn, "audit_head", 0, &head), 0);
    fn(txn, audit, head);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
    ledger_open();
    struct reports rs = verify_all();
    assert_int_equal(rs.n, 2);
    assert_true(find(&rs, "globex")->ok); /* the other chain is untouched */
    return rs;
}

static void expect_bad(const struct reports *rs, uint64_t seq, const char *why)
{
    const struct pg_audit_report *a = find(rs, "acme");
    if (a->ok || a->bad_seq != seq || strcmp(a->why, why) != 0)
        fail_msg("acme: ok %d bad seq %llu why \"%s\"; want seq %llu \"%s\"", a->ok,
                 (unsigned long long)a->bad_seq, a->why, (unsigned long long)seq, why);
}

static void flip_amount_digit(MDB_txn *txn, MDB_dbi audit, MDB_dbi head)
{
    (void)head;
    size_t n;
    uint8_t *v = get_entry(txn, audit, 3, &n);
    char *p = memmem(v, n - 32, "\"amount\":1003", 13);
    assert_non_null(p);
    p[12] = '9'; /* 1003 -> 1009: still valid JSON */
    put_entry(txn, audit, 3, v, n);
    free(v);
}

static void test_tamper_flip_byte(void **state)
{
    (void)state;
    struct reports rs = tampered(flip_amount_digit);
    expect_bad(&rs, 3, "hash mismatch");
    assert_int_equal(find(&rs, "acme")->count, 2);
}

static void flip_hash_byte(MDB_txn *txn, MDB_dbi audit, MDB_dbi head)
{
    (void)head;
    size_t n;
    uint8_t *v = get_entry(txn, audit, 2, &n);
    v[n - 1] ^= 1;
    put_entry(txn, audit, 2, v, n);
    free(v);
}

static void test_tamper_flip_hash(void **state)
{
    (void)state;
    struct reports rs = tampered(flip_hash_byte);
    expect_bad(&rs, 2, "hash mismatch");
}

static void break_json(MDB_txn *txn, MDB_dbi audit, MDB_dbi head)
{
    (void)head;
    size_t n;
    uint8_t *v = get_entry(txn, audit, 4, &n);
    v[0] = '[';
    put_entry(txn, audit, 4, v, n);
    free(v);
}

static void test_tamper_unreadable(void **state)
{
    (void)state;
    struct reports rs = tampered(break_json);
    expect_bad(&rs, 4, "unreadable entry");
}

static void delete_third(MDB_txn *txn, MDB_dbi audit, MDB_dbi head)
{
    (void)head;
    del_entry(txn, audit, 3);
}

static void test_tamper_delete_middle(void **state)
{
    (void)state;
    struct reports rs = tampered(delete_third);
    expect_bad(&rs, 3, "gap");
}

static void delete_first(MDB_txn *txn, MDB_dbi audit, MDB_dbi head)
{
    (void)head;
    del_entry(txn, audit, 1);
}

static void test_tamper_delete_first(void **state)
{
    (void)state;
    struct reports rs = tampered(delete_first);
    expect_bad(&rs, 1, "gap");
}

static void delete_last(MDB_txn *txn, MDB_dbi audit, MDB_dbi head)
{
    (void)head;
    del_entry(txn, audit, 5);
}

static void test_tamper_delete_last(void **state)
{
    (void)state;
    struct reports rs = tampered(delete_last);
    expect_bad(&rs, 5, "head mismatch");
    assert_int_equal(find(&rs, "acme")->count, 4);
}

static void delete_all_entries(MDB_txn *txn, MDB_dbi audit, MDB_dbi head)
{
    (void)head;
    for (uint64_t s = 1; s <= 5; s++)
        del_entry(txn, audit, s);
}

static void test_tamper_delete_everything_but_head(void **state)
{
    (void)state;
    struct reports rs = tampered(delete_all_entries);
    expect_bad(&rs, 1, "head mismatch");
}

static void swap_two(MDB_txn *txn, MDB_dbi audit, MDB_dbi head)
{
    (void)head;
    size_t n2, n4;
    uint8_t *v2 = get_entry(txn, audit, 2, &n2), *v4 = get_entry(txn, audit, 4, &n4);
    put_entry(txn, audit, 2, v4, n4);
    put_entry(txn, audit, 4, v2, n2);
    free(v2);
    free(v4);
}

static void test_tamper_swap(void **state)
{
    (void)state;
    struct reports rs = tampered(swap_two);
    expect_bad(&rs, 2, "seq mismatch");
}

/* Changes entry `seq` and gives it a hash that matches its new bytes: only
 * the link to the next entry (or the head) can tell. */
static void rewrite_consistently(MDB_txn *txn, MDB_dbi audit, uint64_t seq)
{
    size_t n, np;
    uint8_t *v = get_entry(txn, audit, seq, &n), *p = get_entry(txn, audit, seq - 1, &np);
    char *d = memmem(v, n - 32, "\"amount\":100", 12);
    assert_non_null(d);
    d[9] = '9';
    uint8_t *buf = malloc(32 + n - 32);
    memcpy(buf, p + np - 32, 32);
    memcpy(buf + 32, v, n - 32);
    assert_int_equal(pg_sha256(buf, n, v + n - 32), 0);
    put_entry(txn, audit, seq, v, n);
    free(buf);
    free(v);
    free(p);
}

static void rewrite_third(MDB_txn *txn, MDB_dbi audit, MDB_dbi head)
{
    (void)head;
    rewrite_consistently(txn, audit, 3);
}

static void test_tamper_rewrite_with_new_hash(void **state)
{
    (void)state;
    struct reports rs = tampered(rewrite_third);
    expect_bad(&rs, 4, "broken link");
    assert_int_equal(find(&rs, "acme")->count, 3);
}

static void rewrite_last(MDB_txn *txn, MDB_dbi audit, MDB_dbi head)
{
    (void)head;
    rewrite_consistently(txn, audit, 5);
}

static void test_tamper_rewrite_last(void **state)
{
    (void)state;
    struct reports rs = tampered(rewrite_last);
    expect_bad(&rs, 5, "head mismatch");
}

static void drop_head(MDB_txn *txn, MDB_dbi audit, MDB_dbi head)
{
    (void)audit;
    MDB_val key = { 4, (void *)(uintptr_t) "acme" };
    assert_int_equal(mdb_del(txn, head, &key, NULL), 0);
}

static void test_tamper_missing_head(void **state)
{
    (void)state;
    struct reports rs = tampered(drop_head);
    expect_bad(&rs, 5, "missing head");
}

static void nothing(MDB_txn *txn, MDB_dbi audit, MDB_dbi head)
{
    (void)txn;
    (void)audit;
    (void)head;
}

/* The chain goes on after a reopen, from the stored head. */
static void test_append_after_reopen(void **state)
{
    (void)state;
    struct reports rs = tampered(nothing);
    assert_true(find(&rs, "acme")->ok);
    record("acme", "shopper", 1, NULL, MONDAY + 50);
    rs = verify_all();
    assert_true(find(&rs, "acme")->ok);
    assert_int_equal(find(&rs, "acme")->count, 6);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_chains_verify, setup, teardown),
        cmocka_unit_test_setup_teardown(test_canonical_form, setup, teardown),
        cmocka_unit_test(test_mask_digits),
        cmocka_unit_test(test_canonical_writer_is_jansson),
        cmocka_unit_test(test_time_format),
        cmocka_unit_test_setup_teardown(test_export_recipe, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tamper_flip_byte, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tamper_flip_hash, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tamper_unreadable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tamper_delete_middle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tamper_delete_first, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tamper_delete_last, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tamper_delete_everything_but_head, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tamper_swap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tamper_rewrite_with_new_hash, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tamper_rewrite_last, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tamper_missing_head, setup, teardown),
        cmocka_unit_test_setup_teardown(test_append_after_reopen, setup, teardown),
    };
    return cmocka_run_group_tests_name("audit", tests, NULL, NULL);
}
