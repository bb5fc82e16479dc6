/* Reads the size of a live payguard ledger from another process, read only:
 * the last committed transaction id (the writer commits once per batch, so
 * its growth over a run counts batches), pages in use and the entries of each
 * named database (audit entries count what the batches held). run.sh takes
 * one reading before and one after each payments run. Prints one JSON line. */
#include <lmdb.h>
#include <stdio.h>
#include <string.h>

static const char *const dbs[] = { "audit", "idem", "responses", "resv", "objects",
                                   "velocity", "expiry", "spend", "approvals" };

int main(int argc, char **argv)
{
    if (argc != 2 || argv[1][0] == '-') {
        fputs("Usage: ledger_info DATA_DIR\n"
              "One JSON line: txnid, pages_used, page_size, map_size and the entries of\n"
              "each named database of payguard's LMDB ledger (opened read only).\n",
              argc == 2 ? stdout : stderr);
        return argc == 2 && strcmp(argv[1], "-h") == 0 ? 0 : 2;
    }
    MDB_env *env;
    MDB_txn *txn = NULL;
    MDB_envinfo info;
    MDB_stat st;
    int rc = mdb_env_create(&env);
    if (rc == 0)
        rc = mdb_env_set_maxdbs(env, 32);
    if (rc == 0)
        rc = mdb_env_open(env, argv[1], MDB_RDONLY, 0600);
    if (rc == 0)
        rc = mdb_env_info(env, &info);
    if (rc == 0)
        rc = mdb_env_stat(env, &st);
    if (rc == 0)
        rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn);
    if (rc != 0) {
        fprintf(stderr, "ledger_info: %s: %s\n", argv[1], mdb_strerror(rc));
        mdb_env_close(env);
        return 1;
    }
    printf("{\"txnid\":%zu,\"pages_used\":%zu,\"page_size\":%u,\"map_size\":%zu",
           (size_t)info.me_last_txnid, (size_t)info.me_last_pgno + 1, st.ms_psize,
           (size_t)info.me_mapsize);
    for (size_t i = 0; i < sizeof(dbs) / sizeof(dbs[0]); i++) {
        MDB_dbi dbi;
        MDB_stat ds;
        if (mdb_dbi_open(txn, dbs[i], 0, &dbi) == 0 && mdb_stat(txn, dbi, &ds) == 0)
            printf(",\"%s\":%zu", dbs[i], (size_t)ds.ms_entries);
        else
            printf(",\"%s\":0", dbs[i]);
    }
    printf("}\n");
    mdb_txn_abort(txn);
    mdb_env_close(env);
    return 0;
}
