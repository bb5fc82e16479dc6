/* The stripe preset: which Stripe API calls move money, which register URLs,
 * which payguard never lets through, and where each carries its amount,
 * currency and counterparty. Bodies are form-encoded with Stripe's bracket
 * notation. routes.c compiles this table; anything not listed is unmatched
 * (denied unless the rail says `unmatched: pass`). */
#include "common/pg.h"
#include "policy/policy_int.h"

/* Who receives the money, most specific first: a connected account named as
 * the destination of the funds, the account the charge is made on behalf of,
 * then the customer paying. */
#define PI_PARTIES "transfer_data[destination]", "destination", "on_behalf_of", "customer"
#define CHECKOUT_PARTIES                                                                           \
    "payment_intent_data[transfer_data][destination]", "payment_intent_data[on_behalf_of]",        \
        "customer"
#define CHARGE_PARTIES                                                                             \
    "destination", "destination[account]", "transfer_data[destination]", "on_behalf_of", "customer"

/* One route per entry reads better than one field per line. */
/* clang-format off */
static const struct pg_route_def stripe_routes[] = {
    /* --- payments ------------------------------------------------------- */
    {.method = "POST", .path = "/v1/payment_intents", .name = "payment_intents.create",
     .op = PG_OP_PAYMENT, .action = PG_ACT_CREATE, .amount = "amount", .currency = "currency",
     .counterparty = {PI_PARTIES}},
    /* An update may change the amount before confirmation; nothing is required. */
    {.method = "POST", .path = "/v1/payment_intents/{id}", .name = "payment_intents.update",
     .op = PG_OP_PAYMENT, .action = PG_ACT_UPDATE, .amount = "amount", .currency = "currency",
     .counterparty = {PI_PARTIES}},
    {.method = "POST", .path = "/v1/payment_intents/{id}/confirm",
     .name = "payment_intents.confirm", .op = PG_OP_PAYMENT, .action = PG_ACT_CONFIRM},
    /* Without amount_to_capture Stripe captures the whole authorization. */
    {.method = "POST", .path = "/v1/payment_intents/{id}/capture",
     .name = "payment_intents.capture", .op = PG_OP_PAYMENT, .action = PG_ACT_CAPTURE,
     .amount = "amount_to_capture"},
    {.method = "POST", .path = "/v1/payment_intents/{id}/cancel", .name = "payment_intents.cancel",
     .op = PG_OP_PAYMENT, .action = PG_ACT_CANCEL},
    /* `amount` is the new total of the authorization, so it must be there. */
    {.method = "POST", .path = "/v1/payment_intents/{id}/increment_authorization",
     .name = "payment_intents.increment_authorization", .op = PG_OP_PAYMENT,
     .action = PG_ACT_INCREMENT, .flags = RF_NEED_AMOUNT, .amount = "amount"},
    {.method = "POST", .path = "/v1/charges", .name = "charges.create", .op = PG_OP_PAYMENT,
     .action = PG_ACT_CREATE, .amount = "amount", .currency = "currency",
     .counterparty = {CHARGE_PARTIES}},
    {.method = "POST", .path = "/v1/charges/{id}/capture", .name = "charges.capture",
     .op = PG_OP_PAYMENT, .action = PG_ACT_CAPTURE, .amount = "amount"},
    /* Paying an invoice charges its (already fixed) total. */
    {.method = "POST", .path = "/v1/invoices/{id}/pay", .name = "invoices.pay", .op = PG_OP_PAYMENT,
     .action = PG_ACT_CONFIRM},
    /* Checkout and payment links may name prices by id, whose amounts payguard
     * cannot see: the amount is the line item sum only when every item has
     * inline price_data, else unknown and the policy decides. */
    {.method = "POST", .path = "/v1/checkout/sessions", .name = "checkout.sessions.create",
     .op = PG_OP_PAYMENT, .action = PG_ACT_CREATE, .flags = RF_AMOUNT_OPTIONAL,
     .currency = "currency", .items = "line_items",
     .counterparty = {CHECKOUT_PARTIES}},
    {.method = "POST", .path = "/v1/checkout/sessions/{id}/expire",
     .name = "checkout.sessions.expire", .op = PG_OP_PAYMENT, .action = PG_ACT_CANCEL},
    {.method = "POST", .path = "/v1/payment_links", .name = "payment_links.create",
     .op = PG_OP_PAYMENT, .action = PG_ACT_CREATE, .flags = RF_AMOUNT_OPTIONAL,
     .currency = "currency", .items = "line_items",
     .counterparty = {"transfer_data[destination]", "on_behalf_of"}},
    /* A top-up pulls money from the platform's bank into its Stripe balance. */
    {.method = "POST", .path = "/v1/topups", .name = "topups.create", .op = PG_OP_PAYMENT,
     .action = PG_ACT_CREATE, .amount = "amount", .currency = "currency"},

    /* --- refunds: the amount is optional (none means the full amount) --- */
    {.method = "POST", .path = "/v1/refunds", .name = "refunds.create", .op = PG_OP_REFUND,
     .amount = "amount", .currency = "currency", .refs = {"payment_intent", "charge"}},
    {.method = "POST", .path = "/v1/charges/{id}/refunds", .name = "charges.refunds.create",
     .op = PG_OP_REFUND, .amount = "amount"},
    /* The deprecated singular form still works on older API versions. */
    {.method = "POST", .path = "/v1/charges/{id}/refund", .name = "charges.refund",
     .op = PG_OP_REFUND, .amount = "amount"},

    /* --- transfers and payouts ----------------------------------------- */
    {.method = "POST", .path = "/v1/transfers", .name = "transfers.create", .op = PG_OP_TRANSFER,
     .action = PG_ACT_CREATE, .flags = RF_NEED_COUNTERPARTY, .amount = "amount",
     .currency = "currency", .counterparty = {"destination"}},
    /* Without a destination a payout goes to the default external account. */
    {.method = "POST", .path = "/v1/payouts", .name = "payouts.create", .op = PG_OP_PAYOUT,
     .action = PG_ACT_CREATE, .amount = "amount", .currency = "currency",
     .counterparty = {"destination"}},
    {.method = "POST", .path = "/v1/payouts/{id}/cancel", .name = "payouts.cancel",
     .op = PG_OP_PAYOUT, .action = PG_ACT_CANCEL},

    /* --- URLs Stripe will call: the SSRF guard checks them ------------- */
    {.method = "POST", .path = "/v1/webhook_endpoints", .name = "webhook_endpoints.create",
     .op = PG_OP_CONFIG, .urls = {"url"}},
    {.method = "POST", .path = "/v1/webhook_endpoints/{id}", .name = "webhook_endpoints.update",
     .op = PG_OP_CONFIG, .urls = {"url"}},

    /* --- never through payguard ---------------------------------------- */
    /* Deleting a webhook endpoint blinds whoever watches the account. */
    {.method = "DELETE", .path = "/v1/webhook_endpoints/{id}", .name = "webhook_endpoints.delete",
     .op = PG_OP_FORBIDDEN},
    /* A new key is a way around payguard. */
    {.method = "*", .path = "/v1/api_keys/**", .name = "api_keys", .op = PG_OP_FORBIDDEN},
    /* The Stripe Apps secret store holds third-party credentials. */
    {.method = "*", .path = "/v1/apps/secrets/**", .name = "apps.secrets", .op = PG_OP_FORBIDDEN},
    /* Irreversible account-level actions on connected accounts. */
    {.method = "POST", .path = "/v1/accounts/{id}/reject", .name = "accounts.reject",
     .op = PG_OP_FORBIDDEN},
    {.method = "DELETE", .path = "/v1/accounts/{id}", .name = "accounts.delete",
     .op = PG_OP_FORBIDDEN},
    /* A dashboard session where payouts and bank details change unseen. */
    {.method = "POST", .path = "/v1/accounts/{id}/login_links", .name = "accounts.login_links",
     .op = PG_OP_FORBIDDEN},
    /* Changing where payouts land would send later payouts (which need no
     * destination) to a bank account payguard never saw. */
    {.method = "POST", .path = "/v1/accounts/{account}/external_accounts/**",
     .name = "accounts.external_accounts", .op = PG_OP_FORBIDDEN},
    {.method = "DELETE", .path = "/v1/accounts/{account}/external_accounts/{id}",
     .name = "accounts.external_accounts.delete", .op = PG_OP_FORBIDDEN},

    /* --- writes that move no money ------------------------------------- */
    /* Customers, payment methods, setup intents (save a card for later; the
     * later charge is what payguard checks), products and prices (a price
     * only moves money when a payment uses it). */
    {.method = "POST", .path = "/v1/customers", .name = "customers.create", .op = PG_OP_READ},
    {.method = "POST", .path = "/v1/customers/{id}", .name = "customers.update", .op = PG_OP_READ},
    {.method = "POST", .path = "/v1/payment_methods/**", .name = "payment_methods",
     .op = PG_OP_READ},
    {.method = "POST", .path = "/v1/setup_intents/**", .name = "setup_intents", .op = PG_OP_READ},
    {.method = "POST", .path = "/v1/products/**", .name = "products", .op = PG_OP_READ},
    {.method = "POST", .path = "/v1/prices/**", .name = "prices", .op = PG_OP_READ},
    /* Every GET reads. */
    {.method = "GET", .path = "/v1/**", .name = "read", .op = PG_OP_READ},
};
/* clang-format on */

const struct pg_route_def *pg_stripe_routes(size_t *n)
{
    *n = PG_ARRAY_LEN(stripe_routes);
    return stripe_routes;
}
