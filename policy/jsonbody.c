/* Field extraction from JSON bodies (adyen and JSON generic rails): jansson
 * parses the whole body refusing duplicate keys anywhere (a rail could act on
 * either copy), and each field the route reads is found by its RFC 6901
 * pointer. Strings are copied into the intent's scratch because the parsed
 * document is freed before classification returns. */
#include "common/pg.h"
#include "policy/policy_int.h"

#include <jansson.h>
#include <string.h>

#define TOKEN_MAX 256 /* config/ caps pointers at 255 characters */

/* The value at `ptr` ("/amount/value"; "~1" is '/', "~0" is '~'), or NULL. */
static json_t *resolve(json_t *root, struct pg_slice ptr)
{
    char tok[TOKEN_MAX];
    json_t *cur = root;
    size_t i = 0;

    if (ptr.len == 0 || ptr.ptr[0] != '/')
        return NULL;
    while (i < ptr.len && cur) {
        size_t t = 0;
        i++; /* the '/' */
        while (i < ptr.len && ptr.ptr[i] != '/') {
            char c = ptr.ptr[i++];
            if (c == '~') {
                if (i == ptr.len || (ptr.ptr[i] != '0' && ptr.ptr[i] != '1'))
                    return NULL;
                c = ptr.ptr[i++] == '0' ? '~' : '/';
            }
            if (t == sizeof tok)
                return NULL;
            tok[t++] = c;
        }
        if (json_is_object(cur)) {
            cur = json_object_getn(cur, tok, t);
        } else if (json_is_array(cur)) {
            /* Array indexes are plain decimal numbers, no leading zeros. */
            size_t idx = 0;
            if (t == 0 || (t > 1 && tok[0] == '0'))
                return NULL;
            for (size_t k = 0; k < t; k++) {
                if (tok[k] < '0' || tok[k] > '9' || idx > 100000)
                    return NULL;
                idx = idx * 10 + (size_t)(tok[k] - '0');
            }
            cur = json_array_get(cur, idx);
        } else {
            return NULL;
        }
    }
    return cur;
}

static int refuse_body(struct pg_decision *bad, const json_error_t *err)
{
    if (json_error_code(err) == json_error_duplicate_key) {
        pg_route_bad(bad, "duplicate_field", NULL,
                     "The JSON body has the same key twice in one object (line %d, column %d). "
                     "The rail could act on either copy, so payguard refuses both: send each "
                     "key once.",
                     err->line, err->column);
    } else {
        pg_route_bad(bad, "malformed_body", NULL,
                     "The body is not valid JSON (line %d, column %d). Send the JSON object the "
                     "rail expects, with Content-Type: application/json.",
                     err->line, err->column);
    }
    return PG_EPARSE;
}

int pg_json_extract(const struct pg_route *r, struct pg_slice body, struct pg_intent *in,
                    struct pg_fields *f, struct pg_decision *bad)
{
    json_error_t err;
    int rc = 0;

    if (!body.len)
        return 0;
    json_t *root = json_loadb(body.ptr, body.len, JSON_REJECT_DUPLICATES, &err);
    if (!root) {
        if (json_error_code(&err) == json_error_out_of_memory)
            return PG_ENOMEM;
        return refuse_body(bad, &err);
    }
    if (!json_is_object(root)) {
        pg_route_bad(bad, "malformed_body", NULL,
                     "The JSON body of %s must be an object ({...}). Send the object the rail "
                     "expects.",
                     r->name);
        rc = PG_EPARSE;
        goto out;
    }
    for (size_t i = 0; i < SLOT_COUNT; i++) {
        const char *field = r->field[i].ptr;
        if (!r->field[i].len)
            continue;
        json_t *v = resolve(root, r->field[i]);
        if (!v || json_is_null(v))
            continue; /* absent, as a rail reads null */
        if (i == SLOT_AMOUNT) {
            /* Only an integer is exact: 10.5, "1050" and 1e3 all are refused
             * rather than read the way one rail or another might. */
            if (!json_is_integer(v) || json_integer_value(v) < 0) {
                pg_route_bad(bad, "invalid_amount", field,
                             "The field %s must be a JSON integer of the currency's smallest "
                             "unit, 0 or more (e.g. 1050 for 10.50 EUR), not %s.",
                             field,
                             json_is_integer(v)  ? "a negative number"
                             : json_is_number(v) ? "a number with a fraction or exponent"
                             : json_is_string(v) ? "a string"
                                                 : "another JSON type");
                rc = PG_EPARSE;
                goto out;
            }
            f->amount_is_int = true;
            f->amount_int = (int64_t)json_integer_value(v);
            f->present |= 1u << i;
            continue;
        }
        if (!json_is_string(v)) {
            pg_route_bad(bad, "invalid_field", field,
                         "The field %s must be a JSON string. Send it as a string and retry.",
                         field);
            rc = PG_EPARSE;
            goto out;
        }
        const char *s = json_string_value(v);
        size_t len = json_string_length(v);
        for (size_t k = 0; k < len; k++) {
            unsigned char c = (unsigned char)s[k];
            if (c < 0x20 || c == 0x7f) {
                pg_route_bad(bad, "malformed_body", field,
                             "The field %s holds a control character. Send it without one.", field);
                rc = PG_EPARSE;
                goto out;
            }
        }
        const char *kept = pg_intent_keep(in, s, len);
        if (!kept) {
            pg_route_bad(bad, "field_too_long", field,
                         "The fields payguard reads from this request (%s among them) are "
                         "longer than %d bytes together. Send shorter values.",
                         field, PG_INTENT_SCRATCH);
            rc = PG_EPARSE;
            goto out;
        }
        f->v[i] = pg_slice_of(kept, len);
        f->present |= 1u << i;
    }
out:
    json_decref(root);
    return rc;
}
