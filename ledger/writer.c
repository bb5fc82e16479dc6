/* The group-commit writer. The loop thread queues requests (submit); a
 * preparer thread runs their `prepare` steps while they wait; one
 * writer thread takes the whole queue, runs every item in ONE write
 * transaction, commits once (one fsync pair for the batch), hands the items
 * back through a completion list and wakes the loop with uv_async_send; the
 * async callback runs each item's cb on the loop thread. The writer holds a
 * write transaction across LMDB work only: no locks of ours, no callbacks. */
#include "common/pg.h"
#include "ledger/ledger_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/file.h>
#include <unistd.h>

enum { PREP_DONE, PREP_WAITING, PREP_RUNNING }; /* pg_ledger_req.prep_state */

/* --- the loop side ------------------------------------------------------------ */

/* Runs the callbacks of every finished item. Loop thread. */
static void deliver(struct pg_ledger *l)
{
    pthread_mutex_lock(&l->mu);
    struct pg_ledger_req *r = l->done_head;
    l->done_head = l->done_tail = NULL;
    pthread_mutex_unlock(&l->mu);
    while (r) {
        struct pg_ledger_req *next = r->next;
        r->next = NULL;
        r->cb(r);
        r = next;
    }
}

static void on_async(uv_async_t *h)
{
    deliver(h->data);
}

static void free_handle(uv_handle_t *h)
{
    free(h);
}

int pg_ledger_submit_many(struct pg_ledger *l, struct pg_ledger_req **reqs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct pg_ledger_req *r = reqs[i];
        if (!r || !r->cb || (r->kind != PG_LEDGER_BEGIN && r->kind != PG_LEDGER_SETTLE &&
                             r->kind != PG_LEDGER_RECORD))
            return PG_EPARSE;
    }
    pthread_mutex_lock(&l->mu);
    if (!l->started || l->stopping || l->q_len + n > LEDGER_QUEUE_MAX) {
        pthread_mutex_unlock(&l->mu);
        return PG_EBUSY;
    }
    for (size_t i = 0; i < n; i++) {
        struct pg_ledger_req *r = reqs[i];
        r->status = 0;
        r->next = NULL;
        /* Kept so that a batch retried after growing the map starts from
         * the verdict the caller gave, not the one the first attempt made. */
        r->decision_in = r->decision;
        if (r->kind == PG_LEDGER_BEGIN)
            memset(&r->replay, 0, sizeof(r->replay));
        if (l->q_tail)
            l->q_tail->next = r;
        else
            l->q_head = r;
        l->q_tail = r;
        r->prep_next = NULL;
        atomic_store_explicit(&r->prep_state, r->prepare ? PREP_WAITING : PREP_DONE,
                              memory_order_relaxed);
        if (r->prepare) {
            if (l->p_tail)
                l->p_tail->prep_next = r;
            else
                l->p_head = r;
            l->p_tail = r;
        }
    }
    if (l->p_head)
        pthread_cond_signal(&l->prep_cv);
    l->q_len += n;
    l->stats.unanswered += n;
    for (size_t i = 0; i < n; i++)
        l->q_waited += reqs[i]->deferrable ? 0u : 1u;
    pthread_cond_signal(&l->cv);
    pthread_mutex_unlock(&l->mu);
    return 0;
}

int pg_ledger_submit(struct pg_ledger *l, struct pg_ledger_req *req)
{
    return pg_ledger_submit_many(l, &req, 1);
}

void pg_ledger_req_free(struct pg_ledger_req *req)
{
    if (!req)
        return;
    free(req->replay.head);
    free(req->replay.body);
    memset(&req->replay, 0, sizeof(req->replay));
}

/* --- the writer thread ------------------------------------------------------ */

struct batch {
    struct pg_ledger_req *head;
};

/* Clears what an earlier attempt at this batch produced. */
static void reset_outputs(struct pg_ledger_req *r)
{
    r->status = 0;
    if (r->kind != PG_LEDGER_BEGIN)
        return;
    pg_ledger_req_free(r);
    r->result = PG_BEGIN_DECIDED;
    r->reservation = 0;
    r->approval_id[0] = '\0';
    r->decision = r->decision_in;
}

/* --- the preparer ---------------------------------------------------------------
 * A request with a `prepare` step waits in the preparer's list (queue order)
 * until the preparer thread takes it, or the writer does, having reached it
 * in its batch first. Taking it out of the list is done under l->mu, so
 * exactly one of them runs it; the writer waits for one the preparer is
 * running. So the two work side by side: the writer on the batch's early
 * items while the preparer reads the answers of the later ones. */

static void prep_unlink(struct pg_ledger *l, struct pg_ledger_req *r)
{
    struct pg_ledger_req *prev = NULL;
    for (struct pg_ledger_req *x = l->p_head; x && x != r; x = x->prep_next)
        prev = x; /* the writer goes in queue order: r is the head, in practice */
    if (prev)
        prev->prep_next = r->prep_next;
    else
        l->p_head = r->prep_next;
    if (l->p_tail == r)
        l->p_tail = prev;
    r->prep_next = NULL;
}

/* Returns once r's prepare step has run (run = true) or is off the list
 * without running (run = false: its batch failed). Writer thread. */
static void prep_take(struct pg_ledger *l, struct pg_ledger_req *r, bool run)
{
    if (atomic_load_explicit(&r->prep_state, memory_order_acquire) == PREP_DONE)
        return;
    pthread_mutex_lock(&l->mu);
    if (atomic_load_explicit(&r->prep_state, memory_order_relaxed) == PREP_WAITING) {
        prep_unlink(l, r);
        atomic_store_explicit(&r->prep_state, PREP_DONE, memory_order_relaxed);
        pthread_mutex_unlock(&l->mu);
        if (run)
            r->prepare(r);
        return;
    }
    while (atomic_load_explicit(&r->prep_state, memory_order_relaxed) == PREP_RUNNING)
        pthread_cond_wait(&l->prep_idle_cv, &l->mu);
    pthread_mutex_unlock(&l->mu);
}

static void *preparer_main(void *arg)
{
    struct pg_ledger *l = arg;
    pthread_setname_np(pthread_self(), "pg-prepare"); /* for top -H and perf */
    pthread_mutex_lock(&l->mu);
    for (;;) {
        while (!l->p_head && !l->stopping)
            pthread_cond_wait(&l->prep_cv, &l->mu);
        struct pg_ledger_req *r = l->p_head;
        if (!r)
            break; /* stopping, and the writer took the rest */
        prep_unlink(l, r);
        atomic_store_explicit(&r->prep_state, PREP_RUNNING, memory_order_relaxed);
        pthread_mutex_unlock(&l->mu);
        r->prepare(r);
        pthread_mutex_lock(&l->mu);
        atomic_store_explicit(&r->prep_state, PREP_DONE, memory_order_release);
        pthread_cond_signal(&l->prep_idle_cv);
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

static int batch_fn(struct ltx *t, void *arg)
{
    struct batch *b = arg;
    ledger_unsettled_batch_done(t->l, false); /* an earlier attempt claimed nothing */
    for (struct pg_ledger_req *r = b->head; r; r = r->next) {
        reset_outputs(r);
        prep_take(t->l, r, true);
        int rc = 0;
        switch (r->kind) {
        case PG_LEDGER_BEGIN: rc = ledger_do_begin(t, r); break;
        case PG_LEDGER_SETTLE: rc = ledger_do_settle(t, r); break;
        case PG_LEDGER_RECORD: rc = ledger_do_record(t, r); break;
        }
        if (rc != 0)
            return rc; /* the whole batch fails: LMDB rolls every item back */
    }
    return 0;
}

/* Runs one batch; returns the latest request time in it (the writer's
 * clock for pruning, so tests can drive it). */
static int64_t run_batch(struct pg_ledger *l, struct pg_ledger_req *head, size_t n)
{
    struct batch b = { head };
    int mdb_rc = 0;
    int rc = ledger_write(l, batch_fn, &b, &mdb_rc);
    int64_t now = 0;
    /* Nothing of the batch may stay in the preparer's list once it is handed
     * back (a failed batch stops at its first bad item). */
    for (struct pg_ledger_req *r = head; r; r = r->next)
        prep_take(l, r, false);
    ledger_unsettled_batch_done(l, rc == 0);
    for (struct pg_ledger_req *r = head; r; r = r->next) {
        if (r->now > now)
            now = r->now;
        if (rc != 0) {
            reset_outputs(r);
            r->status = PG_ESTORE;
        }
        /* A SETTLE that did not apply leaves its key IN_FLIGHT under our
         * epoch: let its retry be resent rather than refused until restart. */
        if (r->kind == PG_LEDGER_SETTLE && r->status != 0 && r->idem_key[0]) {
            uint8_t key[LEDGER_KEY_MAX];
            size_t kn = key_pair(key, sizeof(key), r->agent, FIELD_LEN(r->agent), r->idem_key,
                                 FIELD_LEN(r->idem_key));
            if (kn)
                ledger_unsettled_add(l, key, kn);
        }
    }
    /* A map full at its maximum fails this batch, but a smaller one may
     * still fit: only other failures (I/O, corruption) make us not ready. */
    if (rc == 0)
        atomic_store(&l->ready, true);
    else if (mdb_rc != MDB_MAP_FULL)
        atomic_store(&l->ready, false);
    pthread_mutex_lock(&l->mu);
    if (rc == 0) {
        l->stats.batches++;
        l->stats.items += n;
        if (n > l->stats.max_batch)
            l->stats.max_batch = n;
    } else {
        l->stats.failed_batches++;
    }
    pthread_mutex_unlock(&l->mu);
    return now;
}

struct prune_args {
    int64_t now;
    size_t budget, done;
    bool more;
};

static int prune_fn(struct ltx *t, void *arg)
{
    struct prune_args *p = arg;
    p->done = 0;
    p->more = false;
    return ledger_prune_txn(t, p->now, p->budget, &p->done, &p->more);
}

static int prune_run(struct pg_ledger *l, int64_t now, size_t budget, bool *more)
{
    struct prune_args p = { now, budget ? budget : LEDGER_PRUNE_BUDGET, 0, false };
    int rc = ledger_write(l, prune_fn, &p, NULL);
    if (more)
        *more = rc == 0 && p.more;
    if (rc == 0) {
        pthread_mutex_lock(&l->mu);
        l->stats.pruned += p.done;
        pthread_mutex_unlock(&l->mu);
    }
    return rc;
}

int pg_ledger_prune(struct pg_ledger *l, int64_t now, size_t budget, bool *more)
{
    return prune_run(l, now, budget, more);
}

/* At most once a minute of request time, or again after the next batch
 * when the last pass ran out of budget (a backlog after downtime is cleared
 * a small pass at a time, so batches never wait long); a failure is retried
 * at the next chance. */
static void maybe_prune(struct pg_ledger *l, int64_t now)
{
    if (!l->prune_more && now - l->last_prune < LEDGER_PRUNE_EVERY_S)
        return;
    bool more = false;
    if (prune_run(l, now, LEDGER_PRUNE_WRITER_BUDGET, &more) == 0) {
        l->last_prune = now;
        l->prune_more = more;
    }
}

/* Only deferrable requests are queued (settlements of answers already given):
 * wait a little for one that somebody waits for, the agent's next payment
 * say, so both share one commit rather than the second waiting for the
 * first's. Called and returns with l->mu held. */
static void linger(struct pg_ledger *l)
{
    struct timespec until = pg_deadline_after(CLOCK_MONOTONIC, LEDGER_LINGER_US * 1000L);
    while (!l->q_waited && !l->stopping &&
           pthread_cond_timedwait(&l->cv, &l->mu, &until) != ETIMEDOUT) {
    }
}

static void *writer_main(void *arg)
{
    struct pg_ledger *l = arg;
    pthread_setname_np(pthread_self(), "pg-writer");
    size_t last_n = 0;
    pthread_mutex_lock(&l->mu);
    for (;;) {
        while (!l->q_head && !l->stopping)
            pthread_cond_wait(&l->cv, &l->mu);
        if (!l->q_head)
            break; /* stopping, and everything queued is done */
        /* Under load the queue is never without a waited request for long,
         * and a sleeping writer only adds its wake-up to every batch. */
        if (!l->q_waited && last_n <= LEDGER_LINGER_BATCH_MAX)
            linger(l);
        struct pg_ledger_req *head = l->q_head, *tail = l->q_tail;
        size_t n = l->q_len;
        l->q_head = l->q_tail = NULL;
        l->q_len = 0;
        l->q_waited = 0;
        pthread_mutex_unlock(&l->mu);

        int64_t now = run_batch(l, head, n);
        last_n = n;

        pthread_mutex_lock(&l->mu);
        if (l->done_tail)
            l->done_tail->next = head;
        else
            l->done_head = head;
        l->done_tail = tail;
        l->stats.unanswered -= n; /* durable (or failed); their callbacks follow */
        pthread_mutex_unlock(&l->mu);
        uv_async_send(l->async);

        maybe_prune(l, now);
        pthread_mutex_lock(&l->mu);
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

/* One process serves a ledger: the idempotency index lives in its memory,
 * so a second server would not see the first one's keys. The lock goes
 * with the process, however it ends. */
static int take_server_lock(struct pg_ledger *l)
{
    char path[4096];
    if (l->server_lock >= 0)
        return 0;
    if ((size_t)snprintf(path, sizeof(path), "%s/server.lock", l->dir) >= sizeof(path))
        return -ENAMETOOLONG;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return -errno;
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        close(fd);
        return e == EWOULDBLOCK ? -EAGAIN : -e;
    }
    l->server_lock = fd;
    return 0;
}

static void stop_preparer(struct pg_ledger *l)
{
    pthread_mutex_lock(&l->mu);
    l->stopping = true;
    pthread_cond_signal(&l->prep_cv);
    pthread_mutex_unlock(&l->mu);
    if (l->prep_started)
        pthread_join(l->prep_thread, NULL);
    l->prep_started = false;
}

int pg_ledger_start(struct pg_ledger *l, uv_loop_t *loop)
{
    if (l->read_only || l->started)
        return PG_EBUSY;
    int lrc = take_server_lock(l);
    if (lrc != 0)
        return lrc;
    /* The indexes are built here, before any request waits on them. */
    struct ltx t;
    int brc = ltx_begin(l, false, &t);
    if (brc == 0) {
        brc = ledger_indexes_load(&t);
        ltx_abort(&t);
    }
    if (brc != 0)
        return brc;
    uv_async_t *a = calloc(1, sizeof(*a));
    if (!a)
        return PG_ENOMEM;
    int rc = uv_async_init(loop, a, on_async);
    if (rc != 0) {
        free(a);
        return rc;
    }
    a->data = l;
    l->async = a;
    pthread_mutex_lock(&l->mu);
    l->started = true;
    l->stopping = false;
    pthread_mutex_unlock(&l->mu);
    atomic_store(&l->ready, true);
    rc = pthread_create(&l->prep_thread, NULL, preparer_main, l);
    if (rc == 0) {
        l->prep_started = true;
        rc = pthread_create(&l->thread, NULL, writer_main, l);
        if (rc != 0)
            stop_preparer(l);
    }
    if (rc != 0) {
        pthread_mutex_lock(&l->mu);
        l->started = false;
        pthread_mutex_unlock(&l->mu);
        atomic_store(&l->ready, false);
        uv_close((uv_handle_t *)a, free_handle);
        l->async = NULL;
        return -rc;
    }
    return 0;
}

void ledger_writer_stop(struct pg_ledger *l)
{
    pthread_mutex_lock(&l->mu);
    bool started = l->started;
    l->stopping = true;
    pthread_cond_signal(&l->cv);
    pthread_mutex_unlock(&l->mu);
    if (!started)
        return;
    pthread_join(l->thread, NULL); /* the writer drains the queue first */
    stop_preparer(l);
    atomic_store(&l->ready, false);
    deliver(l);
    uv_close((uv_handle_t *)l->async, free_handle);
    l->async = NULL;
    pthread_mutex_lock(&l->mu);
    l->started = false;
    pthread_mutex_unlock(&l->mu);
}
