#!/usr/bin/env bash
# `make run`: starts the bundled mock rail over TLS (with a throwaway CA made
# here) and payguard with payguard.yaml.example in the foreground. Ctrl-C
# stops both.
set -euo pipefail
cd "$(dirname "$0")/.."

CONFIG=${PAYGUARD_CONFIG:-payguard.yaml.example}
DEMO_TOKEN=pgt_demo_shopper_0000000000000000000000000000
MOCK_DIR=var/mockrail
MOCK_ADDR=127.0.0.1:12111

mkdir -p "$MOCK_DIR" var/payguard
if [ ! -s "$MOCK_DIR/cert.pem" ]; then
    echo "payguard: making a test CA and a localhost certificate for the mock rail in $MOCK_DIR"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=payguard demo CA" \
        -keyout "$MOCK_DIR/ca.key" -out "$MOCK_DIR/ca.pem" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
        -keyout "$MOCK_DIR/key.pem" -out "$MOCK_DIR/cert.csr" 2>/dev/null
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$MOCK_DIR/san.ext"
    openssl x509 -req -in "$MOCK_DIR/cert.csr" -CA "$MOCK_DIR/ca.pem" -CAkey "$MOCK_DIR/ca.key" \
        -CAcreateserial -days 3650 -extfile "$MOCK_DIR/san.ext" -out "$MOCK_DIR/cert.pem" 2>/dev/null
fi

# The mock rail accepts only this key; payguard injects it, agents never see it.
export STRIPE_SECRET_KEY=${STRIPE_SECRET_KEY:-sk_test_mockrail_demo_key}

mock_pid=
pg_pid=
cleanup() {
    trap - INT TERM EXIT
    [ -n "$pg_pid" ] && kill -TERM "$pg_pid" 2>/dev/null && wait "$pg_pid" 2>/dev/null
    [ -n "$mock_pid" ] && kill -TERM "$mock_pid" 2>/dev/null && wait "$mock_pid" 2>/dev/null
    echo
    echo "payguard: stopped."
}
trap cleanup INT TERM EXIT

./tools/mockrail --listen "$MOCK_ADDR" --secret "$STRIPE_SECRET_KEY" \
    --tls-cert "$MOCK_DIR/cert.pem" --tls-key "$MOCK_DIR/key.pem" --quiet >/dev/null &
mock_pid=$!

./payguard check -c "$CONFIG" >/dev/null

cat <<MSG

  payguard is starting with $CONFIG
    agents  http://127.0.0.1:8402   (the agent's SDK points here)
    admin   http://127.0.0.1:8403   (/healthz, /readyz)
    rail    mock Stripe at https://localhost:12111 (TLS, test CA in $MOCK_DIR)

  Demo agent token (public; replace it with 'payguard token new --agent shopper'):
    $DEMO_TOKEN

  Try it from another terminal:
    curl -s http://127.0.0.1:8402/v1/balance -H "Authorization: Bearer $DEMO_TOKEN"

  A payment to an allowed merchant (goes through to the rail):
    curl -s http://127.0.0.1:8402/v1/payment_intents -H "Authorization: Bearer $DEMO_TOKEN" \\
      -H "Idempotency-Key: demo-\$RANDOM" -d amount=2000 -d currency=usd \\
      -d "transfer_data[destination]=acct_1TrustedShop"

  Over the per-transaction limit (denied, 403; the rail sees nothing):
    curl -s http://127.0.0.1:8402/v1/payment_intents -H "Authorization: Bearer $DEMO_TOKEN" \\
      -H "Idempotency-Key: demo-\$RANDOM" -d amount=60000 -d currency=usd \\
      -d "transfer_data[destination]=acct_1TrustedShop"

  Above the approval threshold (held for a human, 402):
    curl -s http://127.0.0.1:8402/v1/payment_intents -H "Authorization: Bearer $DEMO_TOKEN" \\
      -H "Idempotency-Key: demo-\$RANDOM" -d amount=30000 -d currency=usd \\
      -d "transfer_data[destination]=acct_1TrustedShop"

  Approve (or deny) a held payment from another terminal, then retry it with the
  same Idempotency-Key: it goes through once.
    ./payguard approvals list -c $CONFIG
    ./payguard approvals approve apr_... -c $CONFIG --note "checked"

  Spend, headroom and pending reservations; the audit chain:
    ./payguard ledger show -c $CONFIG --agent shopper
    ./payguard audit verify -c $CONFIG

  Ctrl-C stops payguard and the mock rail.

MSG

./payguard run -c "$CONFIG" &
pg_pid=$!
wait "$pg_pid" || true
pg_pid=
