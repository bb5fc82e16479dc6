/* The durable-commit ceiling of a disk: how many LMDB write transactions per
 * second it takes with default (fully synced) flags, one small put each, and
 * for reference with BATCH puts per transaction. payguard's money path is at
 * least one such commit per batch of requests, so this bounds what a writer
 * that commits once per request could do. With -r the keys are random and with
 * -p the tree is filled first, as payguard's idempotency keys and rail object
 * ids land: each put of a batch then dirties its own leaf and branch pages.
 * Prints one JSON line. */
#include <errno.h>
#include <getopt.h>
#include <lmdb.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Commit latencies, log-bucketed: 64 sub-buckets per power of two of ns
 * (at most 1.6% relative error); enough for a p50/p99 of the fsync path. */
#define SUB 64
#define POW 40
static uint64_t hist[POW * SUB];

static void hist_add(uint64_t ns)
{
    if (ns < SUB) {
        hist[ns]++;
        return;
    }
    int p = 63 - __builtin_clzll(ns);          /* ns >= 2^p, p >= 6 */
    unsigned sub = (unsigned)((ns >> (p - 6)) & (SUB - 1));
    size_t i = (size_t)(p - 5) * SUB + sub;
    hist[i < POW * SUB ? i : POW * SUB - 1]++;
}

static double hist_value(size_t i)
{
    if (i < SUB)
        return (double)i;
    int p = (int)(i / SUB) + 5;
    double base = (double)(UINT64_C(1) << p);
    return base + base * (double)(i % SUB) / SUB;
}

static double hist_pct(uint64_t total, double pct)
{
    uint64_t want = (uint64_t)((double)total * pct / 100.0), seen = 0;
    for (size_t i = 0; i < POW * SUB; i++) {
        seen += hist[i];
        if (seen > want)
            return hist_value(i);
    }
    return 0;
}

static const char usage[] =
    "Usage: commit_ceiling [-d SEC] [-w SEC] [-b PUTS] [-v BYTES] [-r] [-p N] DIR\n"
    "\n"
    "Commits LMDB write transactions in DIR (created; its data.mdb must not exist)\n"
    "with default durable flags for -d seconds after -w of warm-up, -b puts of a\n"
    "16-byte key and a -v byte value each (defaults: 5 s, 0.5 s, 1 put, 100 bytes).\n"
    "Keys ascend, unless -r: random. -p N puts N entries first (10,000 per commit).\n"
    "One JSON line on stdout: commits/s, records/s, commit latency p50/p99/max.\n";

/* The next key: ascending (big-endian sequence, then a scrambled copy, so keys
 * land at the end of the tree as time-ordered ledger keys do) or random. */
static void next_key(unsigned char key[16], uint64_t *seq, bool random_keys)
{
    (*seq)++;
    uint64_t h = *seq * UINT64_C(0x9E3779B97F4A7C15);
    h ^= h >> 29;
    h *= UINT64_C(0xBF58476D1CE4E5B9);
    h ^= h >> 32;
    uint64_t first = random_keys ? h : *seq;
    for (int b = 0; b < 8; b++)
        key[b] = (unsigned char)(first >> (56 - 8 * b));
    memcpy(key + 8, &h, 8);
}

int main(int argc, char **argv)
{
    double dur = 5, warm = 0.5;
    long batch = 1, vbytes = 100, prefill = 0;
    bool random_keys = false;
    int ch;
    while ((ch = getopt(argc, argv, "d:w:b:v:p:rh")) != -1) {
        char *end = NULL;
        static char none[] = "";
        switch (ch) {
        case 'r': random_keys = true; end = none; break;
        case 'p': prefill = strtol(optarg, &end, 10); break;
        case 'd': dur = strtod(optarg, &end); break;
        case 'w': warm = strtod(optarg, &end); break;
        case 'b': batch = strtol(optarg, &end, 10); break;
        case 'v': vbytes = strtol(optarg, &end, 10); break;
        case 'h': fputs(usage, stdout); return 0;
        default: fputs(usage, stderr); return 2;
        }
        if (!end || *end || dur <= 0 || warm < 0 || batch < 1 || batch > 100000 ||
            vbytes < 0 || vbytes > 4096 || prefill < 0 || prefill > 100000000) {
            fprintf(stderr, "commit_ceiling: bad value for -%c: %s\n", ch, optarg);
            return 2;
        }
    }
    if (optind != argc - 1) {
        fputs(usage, stderr);
        return 2;
    }
    const char *dir = argv[optind];
    char probe[4096];
    struct stat st;
    if (snprintf(probe, sizeof(probe), "%s/data.mdb", dir) >= (int)sizeof(probe) ||
        (mkdir(dir, 0700) != 0 && errno != EEXIST) || stat(probe, &st) == 0) {
        fprintf(stderr, "commit_ceiling: %s must be a new or empty directory\n", dir);
        return 2;
    }

    MDB_env *env = NULL;
    MDB_dbi dbi;
    MDB_txn *txn;
    int rc = mdb_env_create(&env);
    if (rc == 0)
        rc = mdb_env_set_mapsize(env, (size_t)4 << 30);
    if (rc == 0)
        rc = mdb_env_open(env, dir, 0, 0600); /* default flags: every commit synced */
    if (rc == 0)
        rc = mdb_txn_begin(env, NULL, 0, &txn);
    if (rc == 0)
        rc = mdb_dbi_open(txn, NULL, 0, &dbi);
    if (rc == 0)
        rc = mdb_txn_commit(txn);
    if (rc != 0) {
        fprintf(stderr, "commit_ceiling: %s: %s\n", dir, mdb_strerror(rc));
        if (env)
            mdb_env_close(env);
        return 1;
    }

    unsigned char key[16] = { 0 }, val[4096];
    memset(val, 'v', sizeof(val));
    uint64_t seq = 0, commits = 0;
    for (long done = 0; done < prefill && rc == 0;) {
        if ((rc = mdb_txn_begin(env, NULL, 0, &txn)) != 0)
            break;
        for (long i = 0; i < 10000 && done < prefill && rc == 0; i++, done++) {
            next_key(key, &seq, random_keys);
            MDB_val k = { sizeof(key), key }, v = { (size_t)vbytes, val };
            rc = mdb_put(txn, dbi, &k, &v, 0);
        }
        if (rc == 0)
            rc = mdb_txn_commit(txn);
        else
            mdb_txn_abort(txn);
    }
    if (rc != 0) {
        fprintf(stderr, "commit_ceiling: filling %s: %s\n", dir, mdb_strerror(rc));
        mdb_env_close(env);
        return 1;
    }
    uint64_t t_start = now_ns();
    uint64_t t_warm = t_start + (uint64_t)(warm * 1e9), t_end = t_warm + (uint64_t)(dur * 1e9);
    uint64_t t_measured = 0, t_last = t_start;
    bool measuring = warm == 0;
    if (measuring)
        t_measured = t_start;
    for (;;) {
        uint64_t t0 = now_ns();
        if (!measuring && t0 >= t_warm) {
            measuring = true;
            t_measured = t0;
        }
        if (measuring && t0 >= t_end)
            break;
        if ((rc = mdb_txn_begin(env, NULL, 0, &txn)) != 0)
            break;
        for (long i = 0; i < batch && rc == 0; i++) {
            next_key(key, &seq, random_keys);
            MDB_val k = { sizeof(key), key }, v = { (size_t)vbytes, val };
            rc = mdb_put(txn, dbi, &k, &v, 0);
        }
        if (rc != 0) {
            mdb_txn_abort(txn);
            break;
        }
        uint64_t tc = now_ns();
        if ((rc = mdb_txn_commit(txn)) != 0)
            break;
        t_last = now_ns();
        if (measuring) {
            commits++;
            hist_add(t_last - tc);
        }
    }
    if (rc != 0) {
        fprintf(stderr, "commit_ceiling: %s\n", mdb_strerror(rc));
        mdb_env_close(env);
        return 1;
    }
    double secs = (double)(t_last - t_measured) / 1e9;
    uint64_t max = 0;
    for (size_t i = 0; i < POW * SUB; i++)
        if (hist[i])
            max = (uint64_t)hist_value(i);
    printf("{\"batch\":%ld,\"value_bytes\":%ld,\"keys\":\"%s\",\"prefill\":%ld,"
           "\"duration_s\":%.3f,\"commits\":%llu,"
           "\"commits_per_s\":%.0f,\"records_per_s\":%.0f,\"commit_p50_us\":%.1f,"
           "\"commit_p99_us\":%.1f,\"commit_max_us\":%.1f}\n",
           batch, vbytes, random_keys ? "random" : "ascending", prefill, secs, (unsigned long long)commits, (double)commits / secs,
           (double)commits * (double)batch / secs, hist_pct(commits, 50) / 1e3,
           hist_pct(commits, 99) / 1e3, (double)max / 1e3);
    mdb_env_close(env);
    return 0;
}
