/* The adyen preset: Checkout API (/vNN/payments...), the classic Payment and
 * Payout servlets (/pal/servlet/...) and the Management API's webhooks and
 * API credentials. Bodies are JSON; fields are RFC 6901 pointers. The version
 * segment is "*" so a new API version needs no new table. A rail has one
 * upstream host, so it uses the part of this table its host serves. */
#include "common/pg.h"
#include "policy/policy_int.h"

#define AMT .amount = "/amount/value", .currency = "/amount/currency"
/* Classic modifications carry the amount as modificationAmount and name
 * the payment by its PSP reference in the body. */
#define MOD_AMT                                                                                    \
    .amount = "/modificationAmount/value", .currency = "/modificationAmount/currency",             \
    .refs = {"/originalReference"}
#define MERCHANT .counterparty = {"/merchantAccount"}

/* One route per entry reads better than one field per line. */
/* clang-format off */
static const struct pg_route_def adyen_routes[] = {
    /* --- Checkout ------------------------------------------------------- */
    {.method = "POST", .path = "/*/payments", .name = "payments.create", .op = PG_OP_PAYMENT,
     .action = PG_ACT_CREATE, AMT, MERCHANT},
    /* Completes a payment after a redirect or 3-D Secure: the amount was
     * checked when it was created. */
    {.method = "POST", .path = "/*/payments/details", .name = "payments.details",
     .op = PG_OP_PAYMENT, .action = PG_ACT_CONFIRM},
    {.method = "POST", .path = "/*/payments/{id}/captures", .name = "payments.captures",
     .op = PG_OP_PAYMENT, .action = PG_ACT_CAPTURE, AMT, MERCHANT},
    {.method = "POST", .path = "/*/payments/{id}/cancels", .name = "payments.cancels",
     .op = PG_OP_PAYMENT, .action = PG_ACT_CANCEL, MERCHANT},
    {.method = "POST", .path = "/*/cancels", .name = "cancels", .op = PG_OP_PAYMENT,
     .action = PG_ACT_CANCEL, MERCHANT, .refs = {"/paymentReference"}},
    /* Sets a new authorised total (up or down): like Stripe's increment. */
    {.method = "POST", .path = "/*/payments/{id}/amountUpdates", .name = "payments.amount_updates",
     .op = PG_OP_PAYMENT, .action = PG_ACT_INCREMENT, .flags = RF_NEED_AMOUNT, AMT, MERCHANT},
    {.method = "POST", .path = "/*/payments/{id}/refunds", .name = "payments.refunds",
     .op = PG_OP_REFUND, AMT, MERCHANT},
    /* Cancels or refunds the whole payment, whichever applies. */
    {.method = "POST", .path = "/*/payments/{id}/reversals", .name = "payments.reversals",
     .op = PG_OP_REFUND, MERCHANT},
    {.method = "POST", .path = "/*/sessions", .name = "sessions.create", .op = PG_OP_PAYMENT,
     .action = PG_ACT_CREATE, AMT, MERCHANT},
    {.method = "POST", .path = "/*/paymentLinks", .name = "payment_links.create",
     .op = PG_OP_PAYMENT, .action = PG_ACT_CREATE, AMT, MERCHANT},
    {.method = "POST", .path = "/*/payouts", .name = "payouts.create", .op = PG_OP_PAYOUT,
     .action = PG_ACT_CREATE, AMT, MERCHANT},

    /* --- classic Payment servlet --------------------------------------- */
    {.method = "POST", .path = "/pal/servlet/Payment/*/authorise", .name = "pal.authorise",
     .op = PG_OP_PAYMENT, .action = PG_ACT_CREATE, AMT, MERCHANT},
    {.method = "POST", .path = "/pal/servlet/Payment/*/authorise3d", .name = "pal.authorise3d",
     .op = PG_OP_PAYMENT, .action = PG_ACT_CONFIRM},
    {.method = "POST", .path = "/pal/servlet/Payment/*/authorise3ds2", .name = "pal.authorise3ds2",
     .op = PG_OP_PAYMENT, .action = PG_ACT_CONFIRM},
    {.method = "POST", .path = "/pal/servlet/Payment/*/capture", .name = "pal.capture",
     .op = PG_OP_PAYMENT, .action = PG_ACT_CAPTURE, MOD_AMT, MERCHANT},
    {.method = "POST", .path = "/pal/servlet/Payment/*/cancel", .name = "pal.cancel",
     .op = PG_OP_PAYMENT, .action = PG_ACT_CANCEL, MERCHANT, .refs = {"/originalReference"}},
    {.method = "POST", .path = "/pal/servlet/Payment/*/adjustAuthorisation",
     .name = "pal.adjust_authorisation", .op = PG_OP_PAYMENT, .action = PG_ACT_INCREMENT,
     .flags = RF_NEED_AMOUNT, MOD_AMT, MERCHANT},
    {.method = "POST", .path = "/pal/servlet/Payment/*/refund", .name = "pal.refund",
     .op = PG_OP_REFUND, MOD_AMT, MERCHANT},
    /* Refunds the full amount when the payment was already captured. */
    {.method = "POST", .path = "/pal/servlet/Payment/*/cancelOrRefund",
     .name = "pal.cancel_or_refund", .op = PG_OP_REFUND, MERCHANT, .refs = {"/originalReference"}},

    /* --- classic Payout servlet ---------------------------------------- */
    {.method = "POST", .path = "/pal/servlet/Payout/*/payout", .name = "pal.payout",
     .op = PG_OP_PAYOUT, .action = PG_ACT_CREATE, AMT, MERCHANT},
    {.method = "POST", .path = "/pal/servlet/Payout/*/storeDetailAndSubmitThirdParty",
     .name = "pal.store_detail_and_submit_third_party", .op = PG_OP_PAYOUT, .action = PG_ACT_CREATE,
     AMT, MERCHANT},
    {.method = "POST", .path = "/pal/servlet/Payout/*/submitThirdParty",
     .name = "pal.submit_third_party", .op = PG_OP_PAYOUT, .action = PG_ACT_CREATE, AMT, MERCHANT},
    {.method = "POST", .path = "/pal/servlet/Payout/*/confirmThirdParty",
     .name = "pal.confirm_third_party", .op = PG_OP_PAYOUT, .action = PG_ACT_CONFIRM, MERCHANT,
     .refs = {"/originalReference"}},
    {.method = "POST", .path = "/pal/servlet/Payout/*/declineThirdParty",
     .name = "pal.decline_third_party", .op = PG_OP_PAYOUT, .action = PG_ACT_CANCEL, MERCHANT,
     .refs = {"/originalReference"}},

    /* --- Management: webhooks are URLs Adyen will call ------------------ */
    {.method = "POST", .path = "/*/merchants/*/webhooks", .name = "merchant_webhooks.create",
     .op = PG_OP_CONFIG, .urls = {"/url"}},
    {.method = "PATCH", .path = "/*/merchants/*/webhooks/{id}", .name = "merchant_webhooks.update",
     .op = PG_OP_CONFIG, .urls = {"/url"}},
    {.method = "POST", .path = "/*/companies/*/webhooks", .name = "company_webhooks.create",
     .op = PG_OP_CONFIG, .urls = {"/url"}},
    {.method = "PATCH", .path = "/*/companies/*/webhooks/{id}", .name = "company_webhooks.update",
     .op = PG_OP_CONFIG, .urls = {"/url"}},
    /* Deleting a webhook blinds whoever watches the account. */
    {.method = "DELETE", .path = "/*/merchants/*/webhooks/{id}", .name = "merchant_webhooks.delete",
     .op = PG_OP_FORBIDDEN},
    {.method = "DELETE", .path = "/*/companies/*/webhooks/{id}", .name = "company_webhooks.delete",
     .op = PG_OP_FORBIDDEN},
    /* API credentials and keys: a new key is a way around payguard. */
    {.method = "*", .path = "/*/merchants/*/apiCredentials/**", .name = "merchant_api_credentials",
     .op = PG_OP_FORBIDDEN},
    {.method = "*", .path = "/*/companies/*/apiCredentials/**", .name = "company_api_credentials",
     .op = PG_OP_FORBIDDEN},

    /* --- reads (some are POSTs that only look things up) --------------- */
    {.method = "POST", .path = "/*/paymentMethods", .name = "payment_methods", .op = PG_OP_READ},
    {.method = "POST", .path = "/*/paymentMethods/balance", .name = "payment_methods.balance",
     .op = PG_OP_READ},
    {.method = "POST", .path = "/*/cardDetails", .name = "card_details", .op = PG_OP_READ},
    {.method = "GET", .path = "/**", .name = "read", .op = PG_OP_READ},
};
/* clang-format on */

const struct pg_route_def *pg_adyen_routes(size_t *n)
{
    *n = PG_ARRAY_LEN(adyen_routes);
    return adyen_routes;
}
