/* Field extraction from form bodies (application/x-www-form-urlencoded) as
 * Stripe's SDKs send them: one pass over the body, keys compared after
 * percent-decoding, values the route reads decoded into the intent's scratch
 * only when they were encoded. Anything a rail could read differently from
 * payguard (a field twice, a malformed escape, a raw ';') is refused rather
 * than guessed. Line items ("line_items[0][price_data][unit_amount]") are
 * summed for checkout-style routes. */
#include "common/pg.h"
#include "policy/policy_int.h"

#include <stdio.h>
#include <string.h>

#define KEY_MAX 512   /* longer decoded keys are refused: Stripe's are < 100 */
#define MAX_ITEMS 100 /* Stripe's own cap on line items */
#define VAL_MAX 64    /* line item numbers and codes, decoded on the stack */
#define ITEM_KEYS 32  /* sub-keys remembered for one "[]" item */

enum {
    IT_USED = 1u << 0,
    IT_UNIT = 1u << 1,    /* [price_data][unit_amount] */
    IT_CUR = 1u << 2,     /* [price_data][currency] */
    IT_QTY = 1u << 3,     /* [quantity] */
    IT_PRICE = 1u << 4,   /* [price]: a price by id, amount unknown here */
    IT_DECIMAL = 1u << 5, /* [price_data][unit_amount_decimal]: fractional cents */
};

struct item {
    unsigned seen;
    char cur[4];
    int64_t unit, qty;
};

enum items_form { FORM_NONE, FORM_INDEXED, FORM_APPENDED };

struct items {
    struct item v[MAX_ITEMS];
    size_t n; /* items v[0..n) are initialised */
    enum items_form form;
    /* "line_items[][...]" keys hold no index: as in Rack, which Stripe's API
     * parses with, a key already present in the current item starts the next
     * one. These are the current item's sub-keys. */
    char keys[1024];
    size_t keys_used, nkeys;
    struct pg_slice key[ITEM_KEYS];
};

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static bool is_ctl(unsigned char c)
{
    return c < 0x20 || c == 0x7f;
}

enum { DEC_OK = 0, DEC_BAD = -1, DEC_LONG = -2 };

/* Percent-decodes s into dst ('+' is a space). DEC_BAD for a '%' without two
 * hex digits, DEC_LONG when dst is too small. */
static int url_decode(struct pg_slice s, char *dst, size_t cap, size_t *outlen)
{
    size_t o = 0;
    for (size_t i = 0; i < s.len; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        if (c == '+') {
            c = ' ';
        } else if (c == '%') {
            if (s.len - i < 3)
                return DEC_BAD;
            int h = hexval((unsigned char)s.ptr[i + 1]), l = hexval((unsigned char)s.ptr[i + 2]);
            if (h < 0 || l < 0)
                return DEC_BAD;
            c = (unsigned char)(h * 16 + l);
            i += 2;
        }
        if (o == cap)
            return DEC_LONG;
        dst[o++] = (char)c;
    }
    *outlen = o;
    return DEC_OK;
}

/* A value nobody reads still must be well-formed: a rail that refuses or
 * re-interprets a bad escape could otherwise see other fields than we did. */
static bool escapes_ok(struct pg_slice s)
{
    const char *p = s.ptr, *end = s.ptr + s.len;
    while (p < end && (p = memchr(p, '%', (size_t)(end - p))) != NULL) {
        if (end - p < 3 || hexval((unsigned char)p[1]) < 0 || hexval((unsigned char)p[2]) < 0)
            return false;
        p += 3;
    }
    return true;
}

static bool needs_decode(struct pg_slice s)
{
    return s.len && (memchr(s.ptr, '%', s.len) || memchr(s.ptr, '+', s.len));
}

static bool has_ctl(struct pg_slice s)
{
    for (size_t i = 0; i < s.len; i++)
        if (is_ctl((unsigned char)s.ptr[i]))
            return true;
    return false;
}

static int malformed(struct pg_decision *bad, const char *param, const char *what)
{
    pg_route_bad(bad, "malformed_body", param,
                 "The form body is refused: %s%s%s. payguard reads the body exactly as the rail "
                 "will, so it must be plain application/x-www-form-urlencoded as the SDK "
                 "encodes it. Fix the encoding and retry.",
                 what, param ? " in " : "", param ? param : "");
    return PG_EPARSE;
}

static int duplicate(struct pg_decision *bad, const char *param, const char *field, size_t index)
{
    if (index != SIZE_MAX)
        pg_route_bad(bad, "duplicate_field", param,
                     "The field %s[%zu]%s appears twice in the body (perhaps once "
                     "percent-encoded). The rail could act on either copy, so payguard "
                     "refuses both: send it once.",
                     param, index, field);
    else
        pg_route_bad(bad, "duplicate_field", param,
                     "The field %s appears twice in the body (perhaps once percent-encoded). "
                     "The rail could act on either copy, so payguard refuses both: send it "
                     "once.",
                     field);
    return PG_EPARSE;
}

/* Decodes a value the route reads. It stays a slice of the body unless it
 * was encoded; then it is decoded into the intent's scratch. */
static int take_value(struct pg_slice rv, const char *field, struct pg_intent *in,
                      struct pg_slice *out, struct pg_decision *bad)
{
    struct pg_slice v = rv;
    if (needs_decode(rv)) {
        size_t len = 0;
        char *dst = in->scratch + in->scratch_used;
        int rc = url_decode(rv, dst, sizeof in->scratch - in->scratch_used, &len);
        if (rc == DEC_BAD)
            return malformed(bad, field, "a '%' is not followed by two hex digits");
        if (rc == DEC_LONG) {
            pg_route_bad(bad, "field_too_long", field,
                         "The fields payguard reads from this request (%s among them) are "
                         "longer than %d bytes together once decoded. Send shorter values.",
                         field, PG_INTENT_SCRATCH);
            return PG_EPARSE;
        }
        in->scratch_used += len;
        v = pg_slice_of(dst, len);
    }
    if (has_ctl(v))
        return malformed(bad, field, "a field payguard reads holds a control character");
    *out = v;
    return 0;
}

/* --- line items ------------------------------------------------------------ */

static bool has_bracket_pair(struct pg_slice s)
{
    for (size_t i = 0; i + 1 < s.len; i++)
        if (s.ptr[i] == '[' && s.ptr[i + 1] == ']')
            return true;
    return false;
}

/* Rack's "already has this key": the same sub-key, or one under it (a key
 * that is a prefix path of one present, as "[price_data]" of
 * "[price_data][currency]"). Keys holding "[]" never count. */
static bool item_has_key(const struct items *it, struct pg_slice sub)
{
    for (size_t i = 0; i < it->nkeys; i++) {
        struct pg_slice k = it->key[i];
        if (k.len >= sub.len && memcmp(k.ptr, sub.ptr, sub.len) == 0 &&
            (k.len == sub.len || k.ptr[sub.len] == '['))
            return true;
    }
    return false;
}

static struct item *item_at(struct items *it, size_t idx)
{
    while (it->n <= idx) {
        memset(&it->v[it->n], 0, sizeof it->v[0]);
        it->n++;
    }
    return &it->v[idx];
}

static int too_many_items(struct pg_decision *bad, const char *param)
{
    pg_route_bad(bad, "too_many_line_items", param,
                 "The request has more than %d line items (or an index of %d or more in %s). "
                 "Split it into several requests.",
                 MAX_ITEMS, MAX_ITEMS, param);
    return PG_EPARSE;
}

/* Reads one numeric line item value (unit amount, quantity). */
static int item_number(struct pg_slice rv, const char *param, const char *reason, const char *noun,
                       const char *field, size_t idx, int64_t *out, struct pg_decision *bad)
{
    char buf[VAL_MAX];
    size_t len = 0;
    const char *why = NULL;
    int rc = url_decode(rv, buf, sizeof buf, &len);
    if (rc == DEC_BAD)
        return malformed(bad, param, "a '%' is not followed by two hex digits");
    if (rc == DEC_LONG)
        why = "too long";
    else if (pg_money_parse_minor(pg_slice_of(buf, len), out, &why) == 0)
        return 0;
    pg_route_bad(bad, reason, param,
                 "The field %s[%zu]%s is not a valid %s (%s). Send a whole number, e.g. 1050 "
                 "for 10.50 usd.",
                 param, idx, field, noun, why ? why : "malformed");
    return PG_EPARSE;
}

/* One key under the route's items array; `sub` is what follows the array
 * name ("[0][price_data][unit_amount]"). */
static int item_field(const struct pg_route *r, struct items *it, struct pg_slice sub,
                      struct pg_slice rv, struct pg_decision *bad)
{
    const char *param = r->items.ptr;
    size_t i = 1, idx;

    /* sub starts with '[' (the caller checked). */
    if (sub.len > 1 && sub.ptr[1] == ']') {
        if (it->form == FORM_INDEXED)
            return malformed(bad, param, "line items mix indexed ([0]) and appended ([]) keys");
        it->form = FORM_APPENDED;
        struct pg_slice rest = {sub.ptr + 2, sub.len - 2};
        if (rest.len == 0 || rest.ptr[0] != '[')
            return malformed(bad, param, "a line item is not a set of fields");
        bool tracked = !has_bracket_pair(rest);
        if (it->n == 0 || (tracked && item_has_key(it, rest))) {
            if (it->n == MAX_ITEMS)
                return too_many_items(bad, param);
            item_at(it, it->n);
            it->nkeys = 0;
            it->keys_used = 0;
        }
        if (tracked) {
            if (it->nkeys == ITEM_KEYS || rest.len > sizeof it->keys - it->keys_used)
                return malformed(bad, param, "a line item has too many fields");
            char *d = it->keys + it->keys_used;
            memcpy(d, rest.ptr, rest.len);
            it->keys_used += rest.len;
            it->key[it->nkeys++] = pg_slice_of(d, rest.len);
        }
        idx = it->n - 1;
        sub = rest;
    } else {
        if (it->form == FORM_APPENDED)
            return malformed(bad, param, "line items mix indexed ([0]) and appended ([]) keys");
        it->form = FORM_INDEXED;
        idx = 0;
        while (i < sub.len && sub.ptr[i] >= '0' && sub.ptr[i] <= '9') {
            idx = idx * 10 + (size_t)(sub.ptr[i] - '0');
            if (idx >= MAX_ITEMS)
                return too_many_items(bad, param);
            i++;
        }
        /* "[00]" and "[0]" would be one item to payguard and perhaps two to
         * the rail: only the canonical spelling is accepted. */
        if (i == 1 || i >= sub.len || sub.ptr[i] != ']' || (i > 2 && sub.ptr[1] == '0'))
            return malformed(bad, param, "a line item index is not a plain number like [0]");
        sub = pg_slice_of(sub.ptr + i + 1, sub.len - i - 1);
        if (sub.len == 0 || sub.ptr[0] != '[')
            return malformed(bad, param, "a line item is not a set of fields");
        item_at(it, idx);
    }

    struct item *item = &it->v[idx];
    item->seen |= IT_USED;
    static const struct {
        struct pg_slice key;
        unsigned bit;
    } known[] = {
        {PG_SLICE_INIT("[price_data][unit_amount]"), IT_UNIT},
        {PG_SLICE_INIT("[price_data][currency]"), IT_CUR},
        {PG_SLICE_INIT("[quantity]"), IT_QTY},
        {PG_SLICE_INIT("[price]"), IT_PRICE},
        {PG_SLICE_INIT("[price_data][unit_amount_decimal]"), IT_DECIMAL},
    };
    unsigned bit = 0;
    const char *field = NULL;
    for (size_t k = 0; k < PG_ARRAY_LEN(known); k++) {
        if (pg_slice_eq(sub, known[k].key)) {
            bit = known[k].bit;
            field = known[k].key.ptr;
            break;
        }
    }
    if (!bit)
        return escapes_ok(rv) ? 0
                              : malformed(bad, param, "a '%' is not followed by two hex digits");
    if (item->seen & bit)
        return duplicate(bad, param, field, idx);
    item->seen |= bit;

    switch (bit) {
    case IT_UNIT:
        return item_number(rv, param, "invalid_amount", "amount", field, idx, &item->unit, bad);
    case IT_QTY:
        return item_number(rv, param, "invalid_quantity", "quantity", field, idx, &item->qty, bad);
    case IT_CUR: {
        char buf[VAL_MAX];
        size_t len = 0;
        int rc = url_decode(rv, buf, sizeof buf, &len);
        if (rc == DEC_BAD)
            return malformed(bad, param, "a '%' is not followed by two hex digits");
        if (rc == DEC_LONG || len != 3 || pg_money_exponent(pg_slice_of(buf, len)) < 0) {
            pg_route_bad(bad, "invalid_currency", param,
                         "The field %s[%zu]%s is not a currency payguard knows: send an active "
                         "ISO 4217 code in three letters, such as usd or eur.",
                         param, idx, field);
            return PG_EPARSE;
        }
        for (size_t k = 0; k < 3; k++)
            item->cur[k] = (char)(buf[k] >= 'A' && buf[k] <= 'Z' ? buf[k] + 32 : buf[k]);
        item->cur[3] = '\0';
        return 0;
    }
    default:
        return escapes_ok(rv) ? 0
                              : malformed(bad, param, "a '%' is not followed by two hex digits");
    }
}

/* The amount of the whole request: the sum of unit_amount × quantity when
 * every item prices itself inline, else unknown (an item priced by id or in
 * fractional cents: the policy decides what an unknown amount may do). */
static int items_total(const struct pg_route *r, const struct items *it, struct pg_fields *f,
                       struct pg_decision *bad)
{
    const char *param = r->items.ptr;
    bool any = false, known = true;

    for (size_t i = 0; i < it->n; i++) {
        unsigned s = it->v[i].seen;
        if (!(s & IT_USED))
            continue; /* a hole between indexes */
        any = true;
        if ((s & (IT_PRICE | IT_DECIMAL)) || !(s & IT_UNIT))
            known = false;
    }
    f->items_seen = any;
    f->items_known = any && known;
    f->items_sum = 0;
    f->items_currency[0] = '\0';
    if (!f->items_known)
        return 0;

    int64_t sum = 0;
    for (size_t i = 0; i < it->n; i++) {
        const struct item *item = &it->v[i];
        if (!(item->seen & IT_USED))
            continue;
        if (!(item->seen & IT_CUR)) {
            pg_route_bad(bad, "missing_currency", param,
                         "%s[%zu] has price_data without %s[%zu][price_data][currency]. Add "
                         "the currency (e.g. usd) and retry.",
                         param, i, param, i);
            return PG_EPARSE;
        }
        if (f->items_currency[0] && memcmp(f->items_currency, item->cur, 4) != 0) {
            pg_route_bad(bad, "mixed_currencies", param,
                         "The %s use different currencies (%s and %s). One request pays in one "
                         "currency: use one for every item.",
                         param, f->items_currency, item->cur);
            return PG_EPARSE;
        }
        memcpy(f->items_currency, item->cur, 4);
        int64_t qty = (item->seen & IT_QTY) ? item->qty : 1, line;
        if (__builtin_mul_overflow(item->unit, qty, &line) ||
            __builtin_add_overflow(sum, line, &sum)) {
            pg_route_bad(bad, "amount_overflow", param,
                         "The %s add up to more than payguard can count (at %s[%zu]). Check the "
                         "unit amounts and quantities.",
                         param, param, i);
            return PG_EPARSE;
        }
    }
    f->items_sum = sum;
    return 0;
}

/* --- the pass over the body ----------------------------------------------- */

static int find_slot(const struct pg_route *r, struct pg_slice key)
{
    for (int i = 0; i < SLOT_COUNT; i++) {
        struct pg_slice fk = r->field[i];
        if (fk.len == key.len && fk.len && memcmp(fk.ptr, key.ptr, key.len) == 0)
            return i;
    }
    return -1;
}

int pg_form_extract(const struct pg_route *r, struct pg_slice body, struct pg_intent *in,
                    struct pg_fields *f, struct pg_decision *bad)
{
    struct items it;
    char kbuf[KEY_MAX];
    int rc;

    it.n = 0;
    it.form = FORM_NONE;
    it.nkeys = 0;
    it.keys_used = 0;
    if (!body.len)
        return 0;
    /* Some form parsers also split on ';' (old Rack did): "a=1;amount=5"
     * would then carry an amount payguard never saw. SDKs encode ';' as %3B. */
    if (memchr(body.ptr, ';', body.len))
        return malformed(bad, NULL, "it holds a raw ';' (encode it as %3B)");

    const char *p = body.ptr, *end = body.ptr + body.len;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *pe = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(pe - p));
        struct pg_slice rk = {p, (size_t)((eq ? eq : pe) - p)};
        struct pg_slice rv = eq ? pg_slice_of(eq + 1, (size_t)(pe - eq - 1)) : pg_slice_of(pe, 0);
        p = amp ? amp + 1 : end;
        if (rk.len == 0 && rv.len == 0)
            continue; /* "&&" */

        struct pg_slice key = rk;
        if (needs_decode(rk)) {
            size_t klen = 0;
            rc = url_decode(rk, kbuf, sizeof kbuf, &klen);
            if (rc == DEC_BAD)
                return malformed(bad, NULL, "a '%' in a key is not followed by two hex digits");
            if (rc == DEC_LONG)
                return malformed(bad, NULL, "a key is longer than 512 bytes");
            key = pg_slice_of(kbuf, klen);
        }
        /* "amount%00" must not be a different key to us and "amount" to a
         * parser that stops at NUL. */
        if (has_ctl(key))
            return malformed(bad, NULL, "a key holds a control character");

        int slot = find_slot(r, key);
        if (slot >= 0) {
            const char *field = r->field[slot].ptr;
            if (f->present & (1u << slot))
                return duplicate(bad, field, field, SIZE_MAX);
            rc = take_value(rv, field, in, &f->v[slot], bad);
            if (rc)
                return rc;
            f->present |= 1u << slot;
            continue;
        }
        if (r->items.len && key.len > r->items.len &&
            memcmp(key.ptr, r->items.ptr, r->items.len) == 0 && key.ptr[r->items.len] == '[') {
            rc = item_field(r, &it, pg_slice_of(key.ptr + r->items.len, key.len - r->items.len), rv,
                            bad);
            if (rc)
                return rc;
            continue;
        }
        if (r->items.len && pg_slice_eq(key, r->items))
            return malformed(bad, r->items.ptr, "line items must be a list of fields, not a value");
        if (!escapes_ok(rv))
            return malformed(bad, NULL, "a '%' is not followed by two hex digits");
    }
    if (r->items.len)
        return items_total(r, &it, f, bad);
    return 0;
}
