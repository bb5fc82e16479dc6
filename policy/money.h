/* Exact money: ISO 4217 minor-unit exponents and decimal parsing into int64
 * minor units. No floating point anywhere. A pure leaf module: config/ uses it
 * to validate amounts written in payguard.yaml. */
#ifndef PG_POLICY_MONEY_H
#define PG_POLICY_MONEY_H

#include <stdint.h>

#include "common/pg.h"

/* Minor-unit exponent of an active ISO 4217 code, any letter case
 * ("usd" → 2, "JPY" → 0, "kwd" → 3, "clf" → 4); -1 when the code is unknown.
 * Codes whose ISO minor unit is "N.A." (XAU, XDR, XTS, XXX...) and withdrawn
 * codes (HRK, BGN...) are unknown: money cannot be counted in them. Pure and
 * thread-safe. */
int pg_money_exponent(struct pg_slice code);

/* Parses a decimal amount in major units ("500", "500.5", "500.00") into
 * minor units for `exponent`. Digits with at most one '.', at least one digit
 * before it, no sign, no exponent, no spaces, no more decimals than the
 * exponent allows ("1.0" is refused for JPY). 0, PG_EPARSE (shape) or
 * PG_ERANGE (too many decimals, over INT64_MAX, or `exponent` outside 0-18).
 * `why` (may be NULL) gets a short static explanation, NULL on success. *out
 * is written only on success. */
PG_WUR int pg_money_parse_decimal(struct pg_slice s, int exponent, int64_t *out, const char **why);

/* Parses a minor-unit integer as rails send it ("1000"): ASCII digits only,
 * no sign, no '.', no exponent, no leading zeros except "0", at most INT64_MAX.
 * 0, PG_EPARSE or PG_ERANGE; `why` as above. */
PG_WUR int pg_money_parse_minor(struct pg_slice s, int64_t *out, const char **why);

/* Writes minor units as a decimal in major units ("12.34", "1000", "0.005",
 * "-0.50") into out, NUL-terminated, with exactly `exponent` decimals so the
 * text parses back to the same minor units. Returns the length without the
 * NUL, PG_ETOOBIG when out cannot hold it and the NUL (32 bytes always do),
 * or PG_ERANGE when `exponent` is outside 0-18. */
PG_WUR int pg_money_format(int64_t minor, int exponent, char *out, size_t cap);

#endif
