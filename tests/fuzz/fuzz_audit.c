/* The audit chain's canonical bytes and the export form outside tools
 * re-verify. payguard has no reader of `payguard audit export` output: the
 * reader is whoever checks the chain with sha256 alone (ledger/ledger.h
 * gives the recipe). So this target writes entries whose text comes from
 * agents (counterparty, route, notes, reasons) with the real writer
 * (audit_canon) and holds it to its definition and to that recipe:
 *   - the bytes are jansson's json_dumps(COMPACT | SORT_KEYS | ENSURE_ASCII)
 *     of the entry, text that is not UTF-8 turned to ASCII and '?';
 *   - they parse back as one object, without duplicate keys, whose fields
 *     are the entry's, and card-number-long digit runs are masked;
 *   - the export line, cut 75 bytes from its end with '}' put back, is the
 *     canonical entry, and SHA-256(prev ‖ canonical) is its "hash";
 *   - the verifier's reading (seq, org, prev_hash) finds what was written.
 * Input: flags, times and numbers, the previous hash, then the text fields
 * separated by NUL. */
#include "common/pg.h"
#include "crypto/crypto.h"
#include "ledger/ledger.h"
#include "ledger/ledger_int.h"
#include "tests/fuzz/helpers.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

enum { F_ORG, F_AGENT, F_ACTOR, F_ACTION, F_ROUTE, F_CURRENCY, F_COUNTERPARTY, F_DECISION,
       F_REASON, F_OUTCOME, F_APPROVAL, F_NOTE, F_COUNT };

static const char *const names[F_COUNT] = { "org",      "agent",    "actor",        "action",
                                            "route",    "currency", "counterparty", "decision",
                                            "reason",   "outcome",  "approval",     "note" };

static void ref_str(json_t *o, const char *k, const char *v)
{
    if (!v || !v[0])
        return;
    json_t *j = json_string(v);
    if (!j) {
        size_t n = strlen(v);
        char *copy = malloc(n + 1);
        for (size_t i = 0; i <= n; i++)
            copy[i] = (unsigned char)v[i] >= 0x80 ? '?' : v[i];
        j = json_string(copy);
        free(copy);
    }
    FUZZ_CHECK(j && json_object_set_new(o, k, j) == 0, "reference string %s", k);
}

static void hex(const uint8_t *b, char out[65])
{
    FUZZ_CHECK(pg_hex_encode(b, 32, out, 65) == 64, "hex");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_in in = { data, size };
    uint8_t flags = fuzz_u8(&in);
    /* Years 1970-9999, as the writer's callers keep them. */
    int64_t t = (int64_t)(fuzz_u64(&in) % UINT64_C(253402300800));
    uint64_t seq = fuzz_u64(&in) % (UINT64_C(1) << 62) + 1;
    int64_t amount = (int64_t)fuzz_u64(&in);
    uint64_t reservation = (flags & 2) ? fuzz_u64(&in) % (UINT64_C(1) << 62) : 0;
    uint8_t prev[32], fp[32];
    for (int i = 0; i < 32; i++)
        prev[i] = fuzz_u8(&in);
    memset(fp, 0, sizeof fp);
    if (flags & 4)
        for (int i = 0; i < 32; i++)
            fp[i] = fuzz_u8(&in);

    char *text[F_COUNT];
    for (int i = 0; i < F_COUNT; i++) {
        struct pg_slice s = fuzz_until(&in, 0);
        if (s.len > 1000)
            s.len = 1000;
        text[i] = malloc(s.len + 1);
        memcpy(text[i], s.ptr, s.len);
        text[i][s.len] = '\0';
    }
    if (!text[F_ORG][0]) {
        free(text[F_ORG]);
        text[F_ORG] = strdup("acme");
    }

    struct audit_entry e = {
        .time = t,
        .org = text[F_ORG], .agent = text[F_AGENT], .actor = text[F_ACTOR],
        .action = text[F_ACTION], .route = text[F_ROUTE],
        .fingerprint = (flags & 4) ? fp : NULL,
        .has_amount = flags & 1, .amount = amount,
        .currency = text[F_CURRENCY], .counterparty = text[F_COUNTERPARTY],
        .decision = text[F_DECISION], .reason = text[F_REASON], .outcome = text[F_OUTCOME],
        .approval = text[F_APPROVAL], .note = text[F_NOTE], .reservation = reservation,
    };

    /* The writer: prev ‖ canonical bytes, as audit_append lays them out. */
    uint8_t stack[64];
    struct canon_buf b = { stack, 0, sizeof stack, false, false };
    memcpy(stack, prev, 32);
    b.len = 32;
    FUZZ_CHECK(audit_canon(&e, seq, prev, &b) == 0, "audit_canon failed");
    const char *canon = (const char *)b.p + 32;
    size_t n = b.len - 32;
    uint8_t hash[32];
    FUZZ_CHECK(pg_sha256(b.p, b.len, hash) == 0, "sha256");

    /* Its definition: jansson's dump of the same entry. */
    json_t *o = json_object();
    char when[32], hx[65], cp[PG_COUNTERPARTY_MAX + 1];
    time_t tt = (time_t)t;
    struct tm tm;
    FUZZ_CHECK(gmtime_r(&tt, &tm) && strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm) == 20,
               "gmtime %lld", (long long)t);
    json_object_set_new(o, "seq", json_integer((json_int_t)seq));
    ref_str(o, "time", when);
    for (int i = 0; i < F_COUNT; i++)
        if (i != F_COUNTERPARTY)
            ref_str(o, names[i], text[i]);
    if (flags & 4) {
        bool any = false;
        for (int i = 0; i < 32; i++)
            any = any || fp[i];
        hex(fp, hx);
        if (any)
            ref_str(o, "fingerprint", hx);
    }
    if (flags & 1)
        json_object_set_new(o, "amount", json_integer(amount));
    if (text[F_COUNTERPARTY][0]) {
        audit_mask_digits(text[F_COUNTERPARTY], cp, sizeof cp);
        ref_str(o, "counterparty", cp);
    }
    if (reservation)
        json_object_set_new(o, "reservation", json_integer((json_int_t)reservation));
    hex(prev, hx);
    ref_str(o, "prev_hash", hx);
    char *want = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII);
    json_decref(o);
    FUZZ_CHECK(want && strlen(want) == n && memcmp(want, canon, n) == 0,
               "canonical bytes differ from jansson:\n got  %.*s\n want %s", (int)n, canon,
               want ? want : "(null)");
    free(want);

    /* Masking: no digit run as long as a card number is left whole. */
    if (text[F_COUNTERPARTY][0]) {
        size_t run = 0;
        for (const char *c = cp;; c++) {
            if (*c >= '0' && *c <= '9') {
                run++;
                continue;
            }
            FUZZ_CHECK(run < 13 || run > 19, "a %zu-digit run in the counterparty", run);
            run = 0;
            if (!*c)
                break;
        }
    }

    /* The export line and the outside recipe. */
    char hh[65];
    hex(hash, hh);
    size_t ln = n - 1 + 75;
    char *line = malloc(ln + 1);
    memcpy(line, canon, n - 1);
    snprintf(line + n - 1, 76, ",\"hash\":\"%s\"}", hh);
    FUZZ_CHECK(strlen(line) == ln, "export line length");
    char *back = malloc(ln - 75 + 2);
    memcpy(back, line, ln - 75);
    back[ln - 75] = '}';
    FUZZ_CHECK(ln - 75 + 1 == n && memcmp(back, canon, n) == 0, "the recipe does not cut the line");
    uint8_t re[32];
    uint8_t *buf = malloc(32 + n);
    memcpy(buf, prev, 32);
    memcpy(buf + 32, back, n);
    FUZZ_CHECK(pg_sha256(buf, 32 + n, re) == 0 && memcmp(re, hash, 32) == 0, "recipe hash");
    free(buf);
    free(back);

    /* What the verifier and an export reader read back from the line. */
    json_error_t jerr;
    json_t *j = json_loadb(line, ln, JSON_REJECT_DUPLICATES, &jerr);
    FUZZ_CHECK(json_is_object(j), "the export line is not one JSON object: %s", jerr.text);
    FUZZ_CHECK((uint64_t)json_integer_value(json_object_get(j, "seq")) == seq, "seq");
    FUZZ_CHECK(strcmp(json_string_value(json_object_get(j, "hash")), hh) == 0, "hash field");
    hex(prev, hx);
    FUZZ_CHECK(strcmp(json_string_value(json_object_get(j, "prev_hash")), hx) == 0, "prev_hash");
    FUZZ_CHECK(strcmp(json_string_value(json_object_get(j, "time")), when) == 0, "time");
    const char *org = json_string_value(json_object_get(j, "org"));
    json_t *oj = json_string(e.org);
    FUZZ_CHECK(org && (!oj || strcmp(org, e.org) == 0), "org read back as %s", org ? org : "-");
    json_decref(oj);
    json_t *am = json_object_get(j, "amount");
    FUZZ_CHECK((flags & 1) ? json_integer_value(am) == amount : am == NULL, "amount");
    json_decref(j);
    free(line);

    if (b.heap)
        free(b.p);
    for (int i = 0; i < F_COUNT; i++)
        free(text[i]);
    return 0;
}
