#!/usr/bin/env python3
"""Writes the seed corpora under tests/fuzz/corpus/<target>/: real-looking
requests and bodies, the smuggling vectors of tests/integration, the URL table
of tests/unit/test_urlguard.c, the example configs. Each seed starts with the
control bytes its target reads first (see the comment at the top of each
tests/fuzz/fuzz_<target>.c). Files named regress-* are inputs that once broke
payguard; this script never touches them. Run from anywhere:
    python3 tests/fuzz/seeds.py
"""
import base64
import hashlib
import hmac
import json
import os
import re
import struct

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", ".."))
CORPUS = os.path.join(ROOT, "tests", "fuzz", "corpus")


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode("latin-1"))


def clean(target):
    d = os.path.join(CORPUS, target)
    if os.path.isdir(d):
        for f in os.listdir(d):
            if not f.startswith("regress-"):
                os.remove(os.path.join(d, f))


# --- http ------------------------------------------------------------------
# flags (agent in bits 0-2: shopper, yen, dinar, reader, tight; clock in bits
# 3-7), day spend (2), week spend (2), velocity (1), split seed (1).
def http_prefix(agent=0, clock=0, day=0, week=0, velocity=0, seed=7):
    return (bytes([agent | clock << 3]) + struct.pack(">HHBB", day, week, velocity, seed)).decode("latin-1")


AUTH = "Authorization: Bearer pgt_4eC39HqLyjWDarjtT1zdp7dcTYhG7nM2Dq8TJ1n1XxUZ\r\n"
FORM = "Content-Type: application/x-www-form-urlencoded\r\n"
JSONCT = "Content-Type: application/json\r\n"


def req(line, headers="", body="", host="Host: 127.0.0.1:8402\r\n", cl=True):
    h = f"{line}\r\n{host}{AUTH}{headers}"
    if cl and body:
        h += f"Content-Length: {len(body.encode('latin-1'))}\r\n"
    return h + "\r\n" + body


def chunked(body, size=7):
    out = ""
    for i in range(0, len(body), size):
        part = body[i:i + size]
        out += f"{len(part):x}\r\n{part}\r\n"
    return out + "0\r\n\r\n"


def idem(n):
    return f"Idempotency-Key: order-{n}-7f3a\r\n"


def http_seeds():
    t = "http"
    clean(t)
    pi = ("amount=2000&currency=usd&automatic_payment_methods%5Benabled%5D=true"
          "&customer=cus_NffrFeUfNV2Hib&metadata%5Border_id%5D=6735")
    seeds = {
        "pi-create": req("POST /v1/payment_intents HTTP/1.1", FORM + idem(1), pi),
        "pi-create-destination": req(
            "POST /v1/payment_intents HTTP/1.1", FORM + idem(2),
            "amount=15000&currency=eur&transfer_data[destination]=acct_1TrustedShop&confirm=true"),
        "pi-create-chunked": req("POST /v1/payment_intents HTTP/1.1",
                                 FORM + idem(3) + "Transfer-Encoding: chunked\r\n",
                                 chunked(pi), cl=False),
        "pi-capture": req("POST /v1/payment_intents/pi_3MtwBwLkdIwHu7ix28a3tqPa/capture HTTP/1.1",
                          FORM + idem(4), "amount_to_capture=1500"),
        "pi-increment": req("POST /v1/payment_intents/pi_3Mtw/increment_authorization HTTP/1.1",
                            FORM + idem(5), "amount=2500"),
        "charge-create": req("POST /v1/charges HTTP/1.1", FORM + idem(6),
                             "amount=999&currency=jpy&source=tok_visa&destination%5Baccount%5D=acct_1Trusted9"),
        "refund": req("POST /v1/refunds HTTP/1.1", FORM + idem(7),
                      "payment_intent=pi_3MtwBwLkdIwHu7ix28a3tqPa&amount=500"),
        "transfer": req("POST /v1/transfers HTTP/1.1", FORM + idem(8),
                        "amount=400&currency=usd&destination=acct_1TrustedShop&transfer_group=ORDER_95"),
        "payout": req("POST /v1/payouts HTTP/1.1", FORM + idem(9), "amount=1100&currency=usd"),
        "webhook-endpoint": req("POST /v1/webhook_endpoints HTTP/1.1", FORM,
                                "url=https%3A%2F%2Fhooks.example.com%2Fstripe&enabled_events%5B%5D=charge.succeeded"),
        "webhook-endpoint-internal": req("POST /v1/webhook_endpoints HTTP/1.1", FORM,
                                         "url=https://169.254.169.254/latest&enabled_events[]=*"),
        "checkout-indexed": req(
            "POST /v1/checkout/sessions HTTP/1.1", FORM + idem(10),
            "mode=payment&success_url=https%3A%2F%2Fexample.com%2Fok"
            "&line_items%5B0%5D%5Bprice_data%5D%5Bcurrency%5D=usd"
            "&line_items%5B0%5D%5Bprice_data%5D%5Bunit_amount%5D=2000"
            "&line_items%5B0%5D%5Bprice_data%5D%5Bproduct_data%5D%5Bname%5D=T-shirt"
            "&line_items%5B0%5D%5Bquantity%5D=2"
            "&line_items%5B1%5D%5Bprice%5D=price_1MotwRLkdIwHu7ixYcPLm5uZ&line_items%5B1%5D%5Bquantity%5D=1"),
        "checkout-appended": req(
            "POST /v1/checkout/sessions HTTP/1.1", FORM + idem(11),
            "mode=payment&line_items[][price_data][currency]=usd&line_items[][price_data][unit_amount]=700"
            "&line_items[][quantity]=3&line_items[][price_data][currency]=usd"
            "&line_items[][price_data][unit_amount]=150"),
        "subscription-user-route": req("POST /v1/subscriptions HTTP/1.1", FORM + idem(12),
                                       "customer=cus_Na6dX7aXxi11N4&amount=900&currency=usd"
                                       "&return_url=https%3A%2F%2Fshop.example.org%2Fdone"),
        "get-balance": req("GET /v1/balance HTTP/1.1", "Stripe-Version: 2024-06-20\r\n"),
        "get-list": req("GET /v1/customers?limit=3&starting_after=cus_123 HTTP/1.1"),
        "delete-webhook": req("DELETE /v1/webhook_endpoints/we_1Mr5jULkdIwHu7ix1ibLTM0x HTTP/1.1"),
        "api-keys": req("POST /v1/api_keys/new HTTP/1.1", FORM, "name=x"),
        "basic-auth": ("POST /v1/refunds HTTP/1.1\r\nHost: localhost\r\n"
                       "Authorization: Basic cGd0XzRlQzM5SHFMeWpXRGFyanRUMXpkcDdkY1RZaEc3bk0yRHE4VEoxbjFYeFVaOg==\r\n"
                       + FORM + idem(13) + "Content-Length: 19\r\n\r\ncharge=ch_1&amount=5"),
        "http10-keepalive": ("GET /v1/balance HTTP/1.0\r\nConnection: keep-alive\r\n" + AUTH + "\r\n"
                             "GET /v1/balance HTTP/1.0\r\n" + AUTH + "\r\n"),
        "expect-continue": req("POST /v1/payment_intents HTTP/1.1", FORM + idem(14) + "Expect: 100-continue\r\n",
                               "amount=100&currency=usd"),
        "pipelined": (req("GET /v1/balance HTTP/1.1") +
                      req("POST /v1/payment_intents HTTP/1.1", FORM + idem(15), "amount=100&currency=usd") +
                      req("GET /v1/charges HTTP/1.1", "Connection: close\r\n")),
        "hop-by-hop": req("GET /v1/balance HTTP/1.1",
                          "Connection: keep-alive, X-Private\r\nX-Private: s\r\nKeep-Alive: timeout=5\r\n"
                          "Proxy-Authorization: x\r\nTE: trailers\r\nPayguard-Rail: stripe\r\n"),
        "card-number": req("POST /v1/payment_methods HTTP/1.1", FORM,
                           "type=card&card%5Bnumber%5D=4242+4242+4242+4242&card%5Bexp_month%5D=8"),
        "rail-not-allowed": req("GET /v1/balance HTTP/1.1", "Payguard-Rail: adyen\r\n"),
        "non-utf8-query": req("GET /v1/customers?email=caf\xe9 HTTP/1.1"),
    }
    for name, data in seeds.items():
        write(t, name, http_prefix(seed=5) + data)

    # Other agents, rails and clocks.
    adyen = json.dumps({"amount": {"currency": "EUR", "value": 1000}, "reference": "ORDER-1",
                        "merchantAccount": "MerchantAcme", "paymentMethod": {"type": "scheme",
                        "encryptedCardNumber": "test_4111111111111111"}, "returnUrl": "https://x.example/r"})
    write(t, "adyen-payment", http_prefix(agent=0, clock=1) + req(
        "POST /v71/payments HTTP/1.1", JSONCT + idem(20) + "Payguard-Rail: adyen\r\n", adyen))
    write(t, "adyen-capture-dinar", http_prefix(agent=2, clock=3) + req(
        "POST /v71/payments/PSP123/captures HTTP/1.1", JSONCT + idem(21),
        '{"amount":{"currency":"KWD","value":1200},"merchantAccount":"MerchantAcme"}'))
    write(t, "genform-pay", http_prefix(agent=0, clock=2) + req(
        "POST /v2/pay/p_77 HTTP/1.1", FORM + idem(22) + "Payguard-Rail: genform\r\n",
        "payment%5Bamount%5D=3000&payment%5Bcurrency%5D=eur&payee=Merchant42&callback=https%3A%2F%2Fcb.example.net%2Fx"))
    write(t, "genform-get-money", http_prefix(agent=2) + req(
        "GET /v2/charge?amt=100&cur=kwd HTTP/1.1", idem(23)))
    write(t, "genform-unmatched-pass", http_prefix(agent=2) + req(
        "PUT /v2/anything/else HTTP/1.1", FORM, "x=1"))
    write(t, "genjson-transfer", http_prefix(agent=1, clock=4, day=500) + req(
        "POST /v3/transfers/tr_9 HTTP/1.1", JSONCT + idem(24) + "Payguard-Rail: genjson\r\n",
        '{"data":[{"amount/value":70000,"cur":"jpy"}],"to~account":"cus_77","hooks":["a","https://h.example.com/1"]}'))
    write(t, "genjson-refund-tight", http_prefix(agent=4, clock=6, day=9000, velocity=3) + req(
        "PUT /v3/refunds HTTP/1.1", JSONCT + idem(25), '{"amount":1500,"currency":"eur"}'))
    write(t, "reader-payment", http_prefix(agent=3, clock=7) + req(
        "POST /v1/payment_intents HTTP/1.1", FORM + idem(26), "amount=100&currency=usd"))
    write(t, "yen-hold", http_prefix(agent=1, clock=8) + req(
        "POST /v1/payment_intents HTTP/1.1", FORM + idem(27), "amount=60000&currency=jpy"))

    # The smuggling vectors of tests/integration/smuggling.test.mjs.
    body = "amount=1000&currency=usd"
    hidden = "GET /v1/balance HTTP/1.1\r\nHost: 127.0.0.1\r\n" + AUTH + "\r\n"
    post = lambda extra, b=body: ("POST /v1/payment_intents HTTP/1.1\r\nHost: 127.0.0.1\r\n" + AUTH + FORM
                                  + idem(30) + extra + "\r\n" + b)
    get = lambda extra, line="GET /v1/balance HTTP/1.1": line + "\r\n" + AUTH + extra + "\r\n"
    ch = chunked(body, 64)
    zero_hidden = "0\r\n\r\n" + hidden
    vectors = {
        "cl-te": post(f"Content-Length: {len(body) + 5}\r\nTransfer-Encoding: chunked\r\n", ch),
        "te-cl": post("Transfer-Encoding: chunked\r\nContent-Length: 4\r\n", ch),
        "cl-te-hidden": post(f"Content-Length: {len(zero_hidden)}\r\nTransfer-Encoding: chunked\r\n",
                             zero_hidden),
        "te-cl-hidden": post("Transfer-Encoding: chunked\r\nContent-Length: 3\r\n", ch) + hidden,
        "dup-cl": post(f"Content-Length: {len(body)}\r\nContent-Length: {len(body)}\r\n"),
        "cl-list": post(f"Content-Length: {len(body)}, {len(body)}\r\n"),
        "cl-sign": post(f"Content-Length: +{len(body)}\r\n"),
        "cl-space": post(f"Content-Length : {len(body)}\r\n"),
        "te-gzip": post("Transfer-Encoding: gzip, chunked\r\n", ch),
        "te-twice": post("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", ch),
        "te-http10": post("Transfer-Encoding: chunked\r\n", ch).replace("HTTP/1.1", "HTTP/1.0", 1),
        "bad-chunk": post("Transfer-Encoding: chunked\r\n", "zz\r\n" + body + "\r\n0\r\n\r\n"),
        "trailers": post("Transfer-Encoding: chunked\r\n", ch[:-2] + "X-Trailer: sneaky\r\n\r\n"),
        "bare-lf": "GET /v1/balance HTTP/1.1\nHost: 127.0.0.1\n" + AUTH.replace("\r", "") + "\n",
        "bare-lf-one": "GET /v1/balance HTTP/1.1\r\nHost: 127.0.0.1\nX-A: b\r\n" + AUTH + "\r\n",
        "bare-cr": "GET /v1/balance HTTP/1.1\r\nHost: 127.0.0.1\rX-A: b\r\n" + AUTH + "\r\n",
        "obs-fold": get("Host: 127.0.0.1\r\nX-Folded: a\r\n continued\r\n"),
        "obs-fold-tab": get("Host: 127.0.0.1\r\nX-Folded: a\r\n\tcontinued\r\n"),
        "no-host": get(""),
        "two-hosts": get("Host: 127.0.0.1\r\nHost: evil.example\r\n"),
        "absolute-form": get("Host: 127.0.0.1\r\n", "GET http://127.0.0.1/v1/balance HTTP/1.1"),
        "asterisk-form": get("Host: 127.0.0.1\r\n", "OPTIONS * HTTP/1.1"),
        "connect": get("Host: api.stripe.com:443\r\n", "CONNECT api.stripe.com:443 HTTP/1.1"),
        "websocket": get("Host: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"),
        "h2c": get("Host: 127.0.0.1\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
                   "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n"),
        "h2-preface": "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        "nul-value": get("Host: 127.0.0.1\r\nX-Nul: a\0b\r\n"),
        "nul-name": get("Host: 127.0.0.1\r\nX-N\0ul: ab\r\n"),
        "bad-name": get("Host: 127.0.0.1\r\nX(Bad): v\r\n"),
        "no-colon": get("Host: 127.0.0.1\r\nNoColonHere\r\n"),
        "http2-version": get("Host: 127.0.0.1\r\n", "GET /v1/balance HTTP/2.0"),
        "bad-version": get("Host: 127.0.0.1\r\n", "GET /v1/balance HTX/1.1"),
        "empty-line-first": "\r\n" + get("Host: 127.0.0.1\r\n"),
        "expect-other": post(f"Content-Length: {len(body)}\r\nExpect: 200-ok\r\n"),
        "big-header": get("Host: 127.0.0.1\r\nX-Big: " + "a" * 8200 + "\r\n"),
        "many-headers": get("Host: 127.0.0.1\r\n" + "".join(f"X-H{i}: {i}\r\n" for i in range(41))),
        "big-cl": post("Content-Length: 70000\r\n", ""),
    }
    for name, data in vectors.items():
        write(t, "smuggle-" + name, http_prefix(seed=3) + data)


# --- form ------------------------------------------------------------------
# route (index into the table in fuzz_form.c), Content-Type (index), body.
def form_seeds():
    t = "form"
    clean(t)
    bodies = [
        (0, "amount=2000&currency=usd&automatic_payment_methods%5Benabled%5D=true&customer=cus_NffrFeUfNV2Hib"),
        (0, "amount=1099&currency=eur&payment_method_types[]=card&transfer_data[destination]=acct_1Trusted"),
        (0, "amount=500&currency=usd&description=Caf%C3%A9+au+lait&metadata[k]=v+w&on_behalf_of=acct_9"),
        (1, "amount=3000&metadata%5Bupdated%5D=true"),
        (2, "amount_to_capture=750"),
        (3, "amount=2500"),
        (4, "payment_method=pm_card_visa&return_url=https%3A%2F%2Fexample.com"),
        (5, "amount=999&currency=jpy&source=tok_visa&destination%5Baccount%5D=acct_1Trusted9&destination%5Bamount%5D=500"),
        (6, "mode=payment&line_items%5B0%5D%5Bprice_data%5D%5Bcurrency%5D=usd"
            "&line_items%5B0%5D%5Bprice_data%5D%5Bunit_amount%5D=2000&line_items%5B0%5D%5Bquantity%5D=2"
            "&line_items%5B1%5D%5Bprice_data%5D%5Bcurrency%5D=usd&line_items%5B1%5D%5Bprice_data%5D%5Bunit_amount%5D=150"),
        (6, "mode=payment&currency=usd&line_items[][price_data][currency]=usd&line_items[][price_data][unit_amount]=700"
            "&line_items[][quantity]=3&line_items[][price]=price_1Mo&line_items[][quantity]=1"),
        (6, "line_items[0][price]=price_123&line_items[0][quantity]=1&customer=cus_1"),
        (7, "line_items%5B0%5D%5Bprice_data%5D%5Bunit_amount_decimal%5D=12.5&line_items%5B0%5D%5Bprice_data%5D%5Bcurrency%5D=usd"),
        (8, "payment_intent=pi_3MtwBwLkdIwHu7ix28a3tqPa&amount=500&currency=usd"),
        (9, "amount=400&currency=usd&destination=acct_1TrustedShop&transfer_group=ORDER_95"),
        (10, "amount=1100&currency=usd&method=instant"),
        (11, "amount=10000&currency=usd&description=Top-up"),
        (12, "url=https%3A%2F%2Fhooks.example.com%2Fstripe&enabled_events%5B%5D=charge.succeeded"),
        (12, "url=https://user@evil.com/&enabled_events[]=*"),
        (13, "customer=cus_Na6&amount=900&currency=usd&return_url=https%3A%2F%2Fshop.example.org%2Fdone"),
        (14, "email=jenny.rosen%40example.com&name=Jenny+Rosen"),
        (15, "payment%5Bamount%5D=3000&payment%5Bcurrency%5D=eur&payee=Merchant42&callback=https%3A%2F%2Fcb.example.net"),
        (15, "payee=&payee%5Baccount%5D=acct_2&payment[amount]=1&payment[currency]=KWD"),
        (16, "url=https://a.example.com/x&backup%5Burl%5D=https://[2606:4700::1]:8443/y"),
        (17, "amt=100&cur=usd"),
        (0, "amount=100&amount=200&currency=usd"),
        (0, "amount=100&am%6Funt=200&currency=usd"),
        (0, "a=1;amount=5&amount=1&currency=usd"),
        (0, "amount=0100&currency=usd"),
        (0, "amount=100&currency=usd&customer=cus%00x"),
        (0, "amount=9223372036854775807&currency=usd"),
    ]
    for i, (route, body) in enumerate(bodies):
        write(t, f"seed-{i:02d}", bytes([route, 0]) + body.encode("latin-1"))
    for ct in range(1, 6):
        write(t, f"seed-ct{ct}", bytes([0, ct]) + b"amount=2000&currency=usd")


# --- json ------------------------------------------------------------------
# A request: one byte (bits 0-6 the route in fuzz_json.c, bit 7 the
# Content-Type), the body. An answer: 0xc0 | preset (0 stripe, 1 adyen,
# 2 generic) | intent flags << 2, then a status index, then the body.
def json_seeds():
    t = "json"
    clean(t)
    reqs = [
        (0, {"amount": {"currency": "EUR", "value": 1000}, "reference": "ORDER-1",
             "merchantAccount": "MerchantAcme", "paymentMethod": {"type": "scheme"},
             "returnUrl": "https://your-company.com/checkout?shopperOrder=12xy"}),
        (1, {"amount": {"currency": "EUR", "value": 500}, "merchantAccount": "MerchantAcme",
             "reference": "capture-1"}),
        (2, {"amount": {"currency": "USD", "value": 2500}, "merchantAccount": "M", "reason": "DelayedCharge"}),
        (3, {"originalReference": "8313547924770610", "modificationAmount": {"currency": "EUR", "value": 500},
             "merchantAccount": "MerchantAcme"}),
        (4, {"paymentReference": "PSP1", "merchantAccount": "MerchantAcme"}),
        (5, {"url": "https://www.example.com/notifications", "type": "standard", "active": True}),
        (6, {"amount": {"currency": "KWD", "value": 1500}, "merchantAccount": "M",
             "recurring": {"contract": "PAYOUT"}}),
        (7, {"data": [{"amount/value": 70000, "cur": "jpy"}], "to~account": "cus_77", "to": "x",
             "hooks": ["a", "https://h.example.com/1"]}),
        (8, {"amount": 1500, "currency": "eur"}),
    ]
    for i, (route, body) in enumerate(reqs):
        write(t, f"req-{i:02d}", bytes([route]) + json.dumps(body).encode())
    raw = [
        (0, b'{"amount":{"value":1,"value":2},"merchantAccount":"M"}'),
        (0, b'{"amount":{"currency":"EUR","value":10.5}}'),
        (0, b'{"amount":{"currency":"EUR","value":"1000"}}'),
        (0, b'{"amount":{"currency":"E\\u0000R","value":1}}'),
        (7, b'{"data":[{"amount/value":-1}]}'),
        (0, b'[1,2,3]'),
        (0, b'{"amount":{"currency":"EUR","value":99999999999999999999}}'),
    ]
    for i, (route, body) in enumerate(raw):
        write(t, f"req-raw-{i:02d}", bytes([route]) + body)
    answers = [
        (0, 0, {"id": "pi_3MtwBwLkdIwHu7ix28a3tqPa", "object": "payment_intent", "amount": 2000,
                "amount_received": 2000, "currency": "usd", "status": "succeeded"}),
        (0, 0, {"id": "pi_1", "object": "payment_intent", "amount": 2000, "amount_capturable": 2000,
                "status": "requires_capture"}),
        (0, 0, {"id": "pi_2", "object": "payment_intent", "status": "canceled"}),
        (0, 0, {"id": "pi_3", "object": "payment_intent", "status": "processing", "amount": 5}),
        (0, 0, {"id": "ch_1", "object": "charge", "amount": 999, "amount_captured": 999, "captured": True,
                "status": "succeeded"}),
        (0, 0, {"id": "ch_2", "object": "charge", "status": "failed"}),
        (0, 0, {"id": "re_1", "object": "refund", "amount": 500, "status": "succeeded"}),
        (0, 0, {"id": "tr_1", "object": "transfer", "amount": 400}),
        (0, 0, {"id": "in_1", "object": "invoice", "paid": True, "amount_paid": 3000}),
        (0, 0, {"id": "cs_1", "object": "checkout.session", "amount_total": 4100}),
        (0, 4, {"error": {"type": "card_error", "code": "card_declined"}}),
        (0, 9, {"error": {"type": "api_error"}}),
        (1, 0, {"pspReference": "993617895204576J", "resultCode": "Authorised",
                "amount": {"currency": "EUR", "value": 1000}}),
        (1, 0, {"pspReference": "993617895215577D", "resultCode": "Refused", "refusalReason": "Refused"}),
        (1, 1, {"pspReference": "883617895204576J", "status": "received", "reference": "capture-1"}),
        (2, 0, {"ok": True}),
    ]
    for i, (preset, status, body) in enumerate(answers):
        write(t, f"answer-{i:02d}", bytes([0xc0 | preset | (2 << 2), status]) + json.dumps(body).encode())


# --- money -----------------------------------------------------------------
# exponent + 2 (one byte), a raw int64 (8), a currency code (3), the text.
def money_seeds():
    t = "money"
    clean(t)
    cases = [(2, 50000, "usd", "500.00"), (2, 1, "EUR", "0.01"), (0, 1000, "jpy", "1000"),
             (3, 1500, "kwd", "1.500"), (4, 10000, "clf", "1.0000"), (2, -50, "usd", "0.5"),
             (0, 2**63 - 1, "xau", "9223372036854775807"), (18, -2**63, "xts", "0.000000000000000001"),
             (2, 0, "usd", "00012.3"), (2, 0, "usd", "1."), (2, 0, "usd", ".5"), (2, 0, "usd", "1e3"),
             (2, 0, "usd", "-1"), (0, 0, "jpy", "0.1"), (2, 0, "usd", "92233720368547758.08")]
    for i, (exp, raw, code, text) in enumerate(cases):
        write(t, f"seed-{i:02d}", bytes([exp + 2]) + struct.pack(">q", raw) + code.encode() + text.encode())


# --- url -------------------------------------------------------------------
# One byte: settings in bits 0-1 (default, ports, allow, deny), what to check
# in bits 2-4 (6: a CIDR, 7: raw address bytes, else a URL), then the text.
def url_seeds():
    t = "url"
    clean(t)
    src = open(os.path.join(ROOT, "tests", "unit", "test_urlguard.c"), encoding="latin-1").read()
    opts = {"O_DEFAULT": 0, "O_PORTS": 1, "O_ALLOW": 2, "O_DENY": 3}
    n = 0
    for m in re.finditer(r'(?:OK|NO)\(\s*((?:"(?:[^"\\]|\\.)*"\s*)+),\s*(O_\w+)', src):
        text = "".join(re.findall(r'"((?:[^"\\]|\\.)*)"', m.group(1)))
        data = text.encode("latin-1").decode("unicode_escape").encode("latin-1")
        write(t, f"table-{n:03d}", bytes([opts[m.group(2)]]) + data)
        n += 1
    cidrs = ["10.0.0.0/8", "2001:db8::/32", "127.0.0.1", "::1", "10.0.0.1/8", "010.0.0.0/8",
             "0.0.0.0/0", "::/0", "fe80::1%eth0/64", "192.168.0.0/016", "1.2.3.4/33", "::ffff:10.0.0.0/104"]
    for i, c in enumerate(cidrs):
        write(t, f"cidr-{i:02d}", bytes([6 << 2]) + c.encode())
    addrs = [bytes([0]) + bytes([127, 0, 0, 1]), bytes([0]) + bytes([8, 8, 8, 8]),
             bytes([1]) + bytes.fromhex("00000000000000000000ffff7f000001"),
             bytes([1]) + bytes.fromhex("26064700470000000000000000001111"),
             bytes([1]) + bytes.fromhex("0064ff9b0000000000000000a9fea9fe"),
             bytes([1]) + bytes.fromhex("20010000000000000000000000000001")]
    for i, a in enumerate(addrs):
        write(t, f"addr-{i:02d}", bytes([7 << 2]) + a)


# --- config ----------------------------------------------------------------
def config_seeds():
    t = "config"
    clean(t)
    files = [os.path.join(ROOT, "payguard.yaml.example"), os.path.join(ROOT, "tests", "fuzz", "fuzz.yaml")]
    data_dir = os.path.join(ROOT, "tests", "data", "config")
    files += [os.path.join(data_dir, f) for f in sorted(os.listdir(data_dir))]
    for f in files:
        with open(f, "rb") as src:
            write(t, os.path.basename(f), src.read())
    write(t, "webhooks-users.yaml", """rails:
  stripe: {upstream: "https://api.stripe.com", secret: env:K}
orgs: {acme: {timezone: America/New_York}}
users:
  - {email: Ana@Acme.Test, org: acme, role: approver,
     password: "$2b$10$fMn8CmpfWCc7FgixHDZ0lu1fpGM9NKI57vGmTjdRCG7Ij2sGIWYmC", totp: env:TOTP,
     recovery_codes: ["3f2b0e5d9c1a4b7e8d6f0a2c4e6b8d0f1a3c5e7b9d1f3a5c7e9b1d3f5a7c9e1b"]}
agents:
  - {id: bot, org: acme, token: "$2b$10$c8EmyI6MDiMPvJLosKpHqexPVqnbKkkrngcWQCn08gdpBLQ6b1xyG",
     rails: [stripe], expires: 2027-01-01T00:00:00.5Z,
     client_cert: {subject: "CN=bot,O=Acme", spki_sha256: "8a7f2b0e5d9c1a4b7e8d6f0a2c4e6b8d0f1a3c5e7b9d1f3a5c7e9b1d3f5a7c9e"}}
url_guard: {ports: [443, 8443], deny: ["8.8.8.0/24"], allow: ["127.0.0.0/8"]}
webhooks:
  - url: https://hooks.acme.test:8443/payguard
    secret: env:PAYGUARD_WEBHOOK_SECRET
    previous_secrets: [env:OLD]
    events: [approval.requested, budget.threshold, payment.denied]
    thresholds: [0.5, 0.9, 1.0]
    max_age: 2d
ledger: {idempotency_ttl: 48h, approval_ttl: 1h, max_size_mib: 512}
""")
    write(t, "routes-generic.yaml", """rails:
  pay:
    preset: generic
    format: json
    upstream: https://pay.example.com:8443
    secret: sealed:v1:AAAA
    unmatched: pass
    routes:
      - {name: charge, method: post, path: "/v1/accounts/{acct}/charges/{id}", operation: payment,
         amount: /amount/value, currency: /amount/currency, counterparty: [/payee, "/a~1b"], urls: [/cb]}
      - {method: DELETE, path: /v1/keys, operation: forbidden}
  stripe:
    upstream: https://api.stripe.com
    secret: env:K
    tls_min: "1.3"
    routes:
      - {method: POST, path: /v1/payment_intents, operation: payment}
orgs: {a: {}}
policies:
  p: {currency: kwd, per_transaction: "1.500", hours: {days: "mon,wed-fri", from: "00:00", to: "24:00"},
      velocity: {max: 3, per: 30s}, rate: {requests: 5, per: 1s, burst: 10}, operations: [payment]}
agents:
  - {id: a1, org: a, token: "$2b$10$c8EmyI6MDiMPvJLosKpHqexPVqnbKkkrngcWQCn08gdpBLQ6b1xyG",
     rails: [pay, stripe], policy: p, overrides: {per_transaction: "2.000", refunds_restore: true}}
""")


# --- jwt -------------------------------------------------------------------
# mode (0 raw token, 1 header and claims signed here, 2 claims signed by
# payguard), eight bytes of clock (2000: the claims' own time), then the parts.
KEY = b"fuzz-key-0123456789abcdef-012345"


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=")


def jwt_seeds():
    t = "jwt"
    clean(t)
    now = 1795431600
    clock = struct.pack(">Q", 2000)
    claims = {"iss": "payguard", "aud": "payguard-admin", "sub": "ana@acme.test", "jti": "a1b2c3",
              "org": "acme", "role": "approver", "iat": now - 60, "exp": now + 840}
    hdr = b'{"alg":"HS256","typ":"JWT"}'
    payload = json.dumps(claims, separators=(",", ":")).encode()
    signing = b64u(hdr) + b"." + b64u(payload)
    tok = signing + b"." + b64u(hmac.new(KEY, signing, hashlib.sha256).digest())
    write(t, "raw-valid", bytes([0]) + clock + tok)
    write(t, "raw-none", bytes([0]) + clock + b64u(b'{"alg":"none"}') + b"." + b64u(payload) + b".")
    write(t, "raw-padded", bytes([0]) + clock + tok + b"==")
    write(t, "signed-valid", bytes([1]) + clock + hdr + b"\0" + payload)
    for i, (h, c) in enumerate([
        (b'{"alg":"HS256"}', dict(claims, nbf=now - 10)),
        (b'{"alg":"HS256","crit":["b64"]}', claims),
        (b'{"alg":"HS256","alg":"none"}', claims),
        (b'{"alg":"HS256","typ":"jwt"}', claims),
        (b'{"alg":"HS512"}', claims),
        (hdr, dict(claims, exp=now + 2000)),
        (hdr, dict(claims, role="root")),
        (hdr, dict(claims, iss="evil")),
        (hdr, dict(claims, sub="")),
        (hdr, dict(claims, iat=now - 2000, exp=now - 1500)),
    ]):
        write(t, f"signed-{i:02d}", bytes([1]) + clock + h + b"\0" + json.dumps(c).encode())
    write(t, "signed-dup-claim", bytes([1]) + clock + hdr + b"\0" +
          b'{"iss":"payguard","aud":"payguard-admin","sub":"a","sub":"b","jti":"j","org":"o","role":"viewer","iat":1,"exp":2}')
    write(t, "sign-roundtrip", bytes([2]) + clock + bytes([1]) + struct.pack(">H", 900) +
          b"ana@acme.test\0jti-1\0acme")


# --- webhook ---------------------------------------------------------------
# flags (secrets - 1 in bits 0-1, exact buffer in bit 2), timestamp (8),
# secrets, message id and body separated by NUL.
def webhook_seeds():
    t = "webhook"
    clean(t)
    ts = struct.pack(">q", 1614265330)
    write(t, "standard-example", bytes([0]) + ts + b"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\0"
          b"msg_p5jXN8AQM9LWM0D4loKWxJek\0" + b'{"test": 2432232314}')
    write(t, "rotation", bytes([2 | 4]) + ts + b"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\0"
          b"whsec_" + base64.b64encode(bytes(range(48))) + b"\0whsec_" + base64.b64encode(bytes(64)) +
          b"\0evt_1\0" + b'{"type":"approval.requested","data":{"amount":25000}}')
    write(t, "short-secret", bytes([0]) + ts + b"whsec_c2hvcnQ=\0m\0{}")
    write(t, "no-prefix", bytes([1]) + ts + b"MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\0whsec_x\0m\0")
    write(t, "unpadded", bytes([0]) + ts + b"whsec_" + base64.b64encode(bytes(range(25))).rstrip(b"=") +
          b"\0m\0body")


# --- audit -----------------------------------------------------------------
# flags (amount, reservation, fingerprint), time, seq, amount, [reservation],
# prev hash (32), [fingerprint (32)], then org, agent, actor, action, route,
# currency, counterparty, decision, reason, outcome, approval, note (NUL).
def audit_seeds():
    t = "audit"
    clean(t)
    entries = [
        (1 | 2 | 4, ["acme", "shopper", "agent:shopper", "reserve", "payment_intents.create", "usd",
                     "acct_1TrustedShop", "allow", "", "", "", ""]),
        (1, ["acme", "shopper", "agent:shopper", "deny", "charges.create", "eur", "4242424242424242",
             "deny", "merchant_not_allowed", "", "", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x92\xb3"]),
        (0, ["acme", "", "user:ana@acme.test", "approve", "", "", "", "", "", "", "apr_01HX", "ok \"quoted\"\n\t\\"]),
        (1 | 2, ["beta", "yen", "agent:yen", "settle", "payouts.create", "jpy", "x4111111111111111y4000056655665556",
                 "", "", "post", "", "\xff\xfe not utf-8"]),
    ]
    for i, (flags, fields) in enumerate(entries):
        head = bytes([flags]) + struct.pack(">QQq", 1795431600 + i, i + 1, 2000 * (i + 1))
        if flags & 2:
            head += struct.pack(">Q", 40 + i)
        head += bytes(range(i, i + 32))
        if flags & 4:
            head += hashlib.sha256(b"POST\0/v1/payment_intents\0amount=2000").digest()
        write(t, f"seed-{i:02d}", head + "\0".join(fields).encode("latin-1"))


if __name__ == "__main__":
    http_seeds()
    form_seeds()
    json_seeds()
    money_seeds()
    url_seeds()
    config_seeds()
    jwt_seeds()
    webhook_seeds()
    audit_seeds()
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(CORPUS) for f in fs)
    print(f"corpora written under {os.path.relpath(CORPUS, ROOT)}: {total // 1024} KiB")
