/* Problems found while loading a config: collected with their position so a
 * single `payguard check` run lists them all, in file order, as
 * "file:line:col: message". Also the "did you mean" helper for typos. */
#include "common/pg.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config_int.h"

/* Past this many, a broken file is better fixed from the top than listed. */
#define CFG_MAX_PROBLEMS 200

static void add_problem(struct cfg_loader *ld, size_t line, size_t col, char *msg)
{
    if (ld->nprobs == ld->capprobs) {
        size_t cap = ld->capprobs ? ld->capprobs * 2 : 16;
        struct cfg_problem *p = realloc(ld->probs, cap * sizeof *p);
        if (!p) {
            free(msg);
            ld->nomem = true;
            return;
        }
        ld->probs = p;
        ld->capprobs = cap;
    }
    ld->probs[ld->nprobs].line = line;
    ld->probs[ld->nprobs].col = col;
    ld->probs[ld->nprobs].seq = ld->nprobs;
    ld->probs[ld->nprobs].msg = msg;
    ld->nprobs++;
}

static void vreport_at(struct cfg_loader *ld, size_t line, size_t col, const char *fmt, va_list ap)
    CFG_PRINTF(4, 0);

static void vreport_at(struct cfg_loader *ld, size_t line, size_t col, const char *fmt, va_list ap)
{
    char body[1024];

    if (ld->nprobs >= CFG_MAX_PROBLEMS) {
        ld->truncated = true;
        return;
    }
    vsnprintf(body, sizeof body, fmt, ap);
    /* Values echoed from the file may hold control characters (a quoted
     * "\n" or "\e"): a message must stay one clean terminal line. */
    for (char *p = body; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';

    int len = snprintf(NULL, 0, "%s:%zu:%zu: %s", ld->file, line, col, body);
    if (len < 0) {
        ld->nomem = true;
        return;
    }
    char *msg = malloc((size_t)len + 1);
    if (!msg) {
        ld->nomem = true;
        return;
    }
    snprintf(msg, (size_t)len + 1, "%s:%zu:%zu: %s", ld->file, line, col, body);
    add_problem(ld, line, col, msg);
}

void cfg_report_at(struct cfg_loader *ld, size_t line, size_t col, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport_at(ld, line, col, fmt, ap);
    va_end(ap);
}

void cfg_report(struct cfg_loader *ld, const yaml_node_t *n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport_at(ld, n->start_mark.line + 1, n->start_mark.column + 1, fmt, ap);
    va_end(ap);
}

static int cmp_problem(const void *a, const void *b)
{
    const struct cfg_problem *x = a, *y = b;
    if (x->line != y->line)
        return x->line < y->line ? -1 : 1;
    if (x->col != y->col)
        return x->col < y->col ? -1 : 1;
    return x->seq < y->seq ? -1 : (x->seq > y->seq);
}

void cfg_problems_discard(struct cfg_loader *ld)
{
    for (size_t i = 0; i < ld->nprobs; i++)
        free(ld->probs[i].msg);
    free(ld->probs);
    ld->probs = NULL;
    ld->nprobs = ld->capprobs = 0;
}

void cfg_problems_finish(struct cfg_loader *ld, struct pg_config_errors *errs)
{
    if (!errs || ld->nprobs == 0) {
        cfg_problems_discard(ld);
        return;
    }
    qsort(ld->probs, ld->nprobs, sizeof *ld->probs, cmp_problem);

    size_t n = ld->nprobs + (ld->truncated ? 1 : 0);
    char **msgs = calloc(n, sizeof *msgs);
    char *last = NULL;
    if (ld->truncated) {
        int len = snprintf(NULL, 0, "%s: too many problems (%d shown); fix these first", ld->file,
                           CFG_MAX_PROBLEMS);
        last = len > 0 ? malloc((size_t)len + 1) : NULL;
        if (last)
            snprintf(last, (size_t)len + 1, "%s: too many problems (%d shown); fix these first",
                     ld->file, CFG_MAX_PROBLEMS);
    }
    if (!msgs || (ld->truncated && !last)) {
        free(msgs);
        free(last);
        ld->nomem = true;
        cfg_problems_discard(ld);
        return;
    }
    for (size_t i = 0; i < ld->nprobs; i++)
        msgs[i] = ld->probs[i].msg;
    if (last)
        msgs[n - 1] = last;
    free(ld->probs);
    ld->probs = NULL;
    ld->nprobs = ld->capprobs = 0;
    errs->msgs = msgs;
    errs->count = n;
}

/* Keys and names are short; longer words get no suggestion. */
#define SUGGEST_MAX 64

static unsigned char fold(char c)
{
    unsigned char u = (unsigned char)c;
    return (u >= 'A' && u <= 'Z') ? (unsigned char)(u + 32) : u;
}

/* Optimal string alignment distance: insertions, deletions, substitutions
 * and adjacent transpositions ("secert") each cost one. */
static size_t edit_distance(const char *a, size_t la, const char *b, size_t lb)
{
    size_t rows[3][SUGGEST_MAX + 1];
    size_t *pp = rows[0], *prev = rows[1], *cur = rows[2];

    for (size_t j = 0; j <= lb; j++)
        prev[j] = j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t cost = fold(a[i - 1]) == fold(b[j - 1]) ? 0 : 1;
            size_t best = prev[j] + 1;
            if (cur[j - 1] + 1 < best)
                best = cur[j - 1] + 1;
            if (prev[j - 1] + cost < best)
                best = prev[j - 1] + cost;
            if (i > 1 && j > 1 && fold(a[i - 1]) == fold(b[j - 2]) &&
                fold(a[i - 2]) == fold(b[j - 1]) && pp[j - 2] + 1 < best)
                best = pp[j - 2] + 1;
            cur[j] = best;
        }
        size_t *t = pp;
        pp = prev;
        prev = cur;
        cur = t;
    }
    return prev[lb];
}

const char *cfg_suggest_in(const char *word, const void *first, size_t n, size_t stride)
{
    size_t lw = strlen(word);
    const char *best = NULL;
    size_t bestd = SIZE_MAX;

    if (lw == 0 || lw > SUGGEST_MAX)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        const char *c = *(const char *const *)(const void *)((const char *)first + i * stride);
        if (!c)
            continue;
        size_t lc = strlen(c);
        if (lc > SUGGEST_MAX)
            continue;
        size_t d = edit_distance(word, lw, c, lc);
        size_t longest = lw > lc ? lw : lc;
        /* One edit in a short word, two in a longer one: beyond that the
         * "suggestion" is a different word. */
        if (d <= 2 && d * 3 <= longest + 1 && d < bestd) {
            best = c;
            bestd = d;
        }
    }
    return best;
}
