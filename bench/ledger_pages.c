/* What a durable payment costs the ledger, without the network: drives the
 * group-commit writer with batches of BEGINs and then their SETTLEs, as the
 * proxy does at a given concurrency, and reports pages written per payment
 * (LMDB writes whole 4 KiB pages, so the bytes this process hands to write
 * calls count them exactly, whatever else runs on the machine), commits and
 * payments per second. Keys are random like the UUIDs SDKs send; answers
 * are the mock rail's size; object ids are random like Stripe's.
 *   ledger_pages [-n PAYMENTS] [-p PREFILL] [-b BATCH] [-d DIR]
 * The prefill grows the trees first (unmeasured), since random-key writes
 * cost more as a tree grows. */
#include "common/pg.h"
#include "config/config.h"
#include "crypto/crypto.h"
#include "ledger/ledger.h"
#include "policy/policy.h"
#include "policy/tz.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char yaml[] =
    "rails:\n"
    "  stripe: {upstream: \"https://api.stripe.com\", secret: env:PG_BENCH_UNUSED}\n"
    "orgs:\n"
    "  bench: {timezone: Europe/Paris}\n"
    "policies:\n"
    "  bench:\n"
    "    currency: usd\n"
    "    per_transaction: \"1000000.00\"\n"
    "    daily: \"90000000000.00\"\n"
    "    weekly: \"90000000000.00\"\n"
    "    monthly: \"90000000000.00\"\n"
    "    approval_above: \"500000.00\"\n"
    "    velocity: {max: 1000000, per: 1s}\n"
    "    operations: [payment, refund, read]\n"
    "agents:\n"
    "  - {id: bench, org: bench, token: \"$2b$10$CwTycUXWue0Thq9StjUM0uJ8DPLKSGfYVRkvDyfZsQvDFbm7Fb8ta\","
    " rails: [stripe], policy: bench}\n";

#define PREFILL_BATCH 256

static struct {
    struct pg_config *cfg;
    const struct pg_agent *agent;
    const struct pg_tz *tz;
    struct pg_policy *pol;
    struct pg_ledger *l;
    uv_loop_t loop;
    int completed;
    char body[1014];
    char head[256];
} B;

static void on_done(struct pg_ledger_req *r)
{
    if (r->status != 0) {
        fprintf(stderr, "ledger_pages: a request failed: %s\n", pg_strerror(r->status));
        exit(1);
    }
    B.completed++;
}

static void die(const char *what)
{
    fprintf(stderr, "ledger_pages: %s\n", what);
    exit(1);
}

static void random_id(char *out, size_t n, const char *prefix)
{
    uint8_t raw[18];
    if (pg_random(raw, sizeof(raw)) != 0 ||
        pg_base62_encode(raw, sizeof(raw), out + strlen(prefix), n - strlen(prefix) - 1) < 0)
        die("random");
    memcpy(out, prefix, strlen(prefix));
}

static void fill_begin(struct pg_ledger_req *r, int64_t now)
{
    memset(r, 0, sizeof(*r));
    r->kind = PG_LEDGER_BEGIN;
    r->cb = on_done;
    snprintf(r->org, sizeof(r->org), "bench");
    snprintf(r->agent, sizeof(r->agent), "bench");
    random_id(r->idem_key, 40, "");
    r->now = now;
    r->op = PG_OP_PAYMENT;
    r->action = PG_ACT_CREATE;
    r->route = "payment_intents.create";
    r->has_amount = true;
    r->amount = 1000;
    memcpy(r->currency, "usd", 4);
    snprintf(r->counterparty, sizeof(r->counterparty), "acct_1TrustedBench");
    r->policy = B.pol;
    r->agent_cfg = B.agent;
    if (pg_sha256(r->idem_key, strlen(r->idem_key), r->fingerprint) != 0)
        die("sha256");
    pg_tz_windows(B.tz, now, &r->windows);
    struct pg_intent in;
    memset(&in, 0, sizeof(in));
    in.matched = true;
    in.op = r->op;
    in.action = r->action;
    in.route = r->route;
    in.has_amount = true;
    in.amount = r->amount;
    memcpy(in.currency, "usd", 4);
    in.counterparty = pg_slice_cstr(r->counterparty);
    if (pg_policy_check(B.pol, B.agent, &in, B.tz, now, &r->decision) != 0)
        die("policy");
}

static void to_settle(struct pg_ledger_req *r)
{
    uint64_t resv = r->reservation;
    pg_ledger_req_free(r);
    r->kind = PG_LEDGER_SETTLE;
    r->reservation = resv;
    r->outcome = PG_SETTLE_POST;
    r->settle_amount = r->amount;
    random_id(r->result_object_id, 30, "pi_");
    r->store_response = true;
    r->response.status = 200;
    r->response.head = B.head;
    r->response.head_len = strlen(B.head);
    r->response.body = B.body;
    r->response.body_len = sizeof(B.body);
}

static void run(struct pg_ledger_req **rs, size_t n)
{
    B.completed = 0;
    if (pg_ledger_submit_many(B.l, rs, n) != 0)
        die("submit");
    while (B.completed < (int)n)
        uv_run(&B.loop, UV_RUN_ONCE);
}

static uint64_t wchar(void)
{
    FILE *f = fopen("/proc/self/io", "r");
    char line[128];
    uint64_t v = 0;
    while (f && fgets(line, sizeof(line), f))
        if (sscanf(line, "wchar: %" SCNu64, &v) == 1)
            break;
    if (f)
        fclose(f);
    return v;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* `n` payments, `batch` to a commit: each commit carries the BEGINs of
 * `batch` new payments and the SETTLEs of the previous `batch`, as the
 * proxy's writer sees them at a steady concurrency of about 2 x batch. */
static void payments(size_t n, size_t batch, struct pg_ledger_req *rs, struct pg_ledger_req **ps)
{
    int64_t t = (int64_t)time(NULL);
    struct pg_ledger_req *cur = rs, *prev = rs + batch;
    size_t nprev = 0;
    for (size_t done = 0; done < n || nprev; done += batch) {
        size_t k = done < n ? (n - done < batch ? n - done : batch) : 0;
        for (size_t i = 0; i < nprev; i++) {
            if (prev[i].result != PG_BEGIN_PROCEED)
                die("a payment was not allowed");
            to_settle(&prev[i]);
            ps[i] = &prev[i];
        }
        for (size_t i = 0; i < k; i++) {
            fill_begin(&cur[i], t);
            ps[nprev + i] = &cur[i];
        }
        run(ps, nprev + k);
        struct pg_ledger_req *swap = prev;
        prev = cur;
        cur = swap;
        nprev = k;
    }
}

int main(int argc, char **argv)
{
    size_t n = 20000, prefill = 100000, batch = 16;
    const char *dir = NULL;
    int o;
    while ((o = getopt(argc, argv, "n:p:b:d:h")) != -1) {
        switch (o) {
        case 'n': n = strtoul(optarg, NULL, 10); break;
        case 'p': prefill = strtoul(optarg, NULL, 10); break;
        case 'b': batch = strtoul(optarg, NULL, 10); break;
        case 'd': dir = optarg; break;
        default:
            fprintf(stderr, "usage: ledger_pages [-n PAYMENTS] [-p PREFILL] [-b BATCH] [-d DIR]\n");
            return o == 'h' ? 0 : 2;
        }
    }
    if (!n || !batch || batch > 4096)
        die("-n and -b must be positive, -b at most 4096");

    char cfg_path[] = "/tmp/pg-ledger-pages-XXXXXX";
    int fd = mkstemp(cfg_path);
    if (fd < 0 || write(fd, yaml, sizeof(yaml) - 1) != (ssize_t)(sizeof(yaml) - 1))
        die("cannot write the config");
    close(fd);
    int rc = pg_config_load(cfg_path, false, &B.cfg, NULL);
    unlink(cfg_path);
    if (rc != 0)
        die("config");
    B.agent = pg_config_agent(B.cfg, PG_SLICE("bench"));
    B.tz = pg_config_org(B.cfg, PG_SLICE("bench"))->tz;
    char err[256];
    if (pg_policy_compile(B.cfg, B.agent, &B.pol, err, sizeof(err)) != 0)
        die(err);
    memset(B.body, 'x', sizeof(B.body));
    snprintf(B.head, sizeof(B.head),
             "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
             "Request-Id: req_0123456789abcdef\r\n\r\n", sizeof(B.body));

    char tmp[] = "/tmp/pg-ledger-pages-dir-XXXXXX";
    char path[128];
    if (!dir) {
        if (!mkdtemp(tmp))
            die("mkdtemp");
        snprintf(path, sizeof(path), "%s/ledger", tmp);
        dir = path;
    }
    struct pg_ledger_options opt = { .dir = dir };
    if (pg_ledger_open(&opt, &B.l, err, sizeof(err)) != 0)
        die(err);
    if (uv_loop_init(&B.loop) != 0 || pg_ledger_start(B.l, &B.loop) != 0)
        die("start");

    size_t slots = 2 * (batch > PREFILL_BATCH ? batch : PREFILL_BATCH);
    struct pg_ledger_req *rs = calloc(slots, sizeof(*rs));
    struct pg_ledger_req **ps = calloc(slots, sizeof(*ps));
    if (!rs || !ps)
        die("out of memory");
    payments(prefill, PREFILL_BATCH, rs, ps);
    struct pg_ledger_stats s0, s1;
    pg_ledger_stats(B.l, &s0);
    uint64_t w0 = wchar();
    double t0 = now_s();
    payments(n, batch, rs, ps);
    double secs = now_s() - t0;
    uint64_t w1 = wchar();
    pg_ledger_stats(B.l, &s1);
    uint64_t commits = s1.batches - s0.batches;
    double pages = (double)(w1 - w0) / 4096.0;
    printf("{\"payments\":%zu,\"prefill\":%zu,\"batch\":%zu,\"commits\":%" PRIu64
           ",\"pages_per_payment\":%.2f,\"pages_per_commit\":%.1f,\"payments_per_s\":%.0f,"
           "\"commits_per_s\":%.0f}\n",
           n, prefill, batch, commits, pages / (double)n, pages / (double)commits,
           (double)n / secs, (double)commits / secs);

    pg_ledger_close(B.l);
    uv_run(&B.loop, UV_RUN_DEFAULT);
    uv_loop_close(&B.loop);
    free(rs);
    free(ps);
    pg_policy_free(B.pol);
    pg_config_free(B.cfg);
    if (dir == path) {
        const char *files[] = { "data.mdb", "lock.mdb" };
        char f[192];
        for (size_t i = 0; i < 2; i++) {
            snprintf(f, sizeof(f), "%s/%s", path, files[i]);
            unlink(f);
        }
        if (rmdir(path) != 0 || rmdir(tmp) != 0)
            fprintf(stderr, "ledger_pages: could not remove %s\n", tmp);
    }
    return 0;
}
