#!/usr/bin/env bash
# Smoke test for tools/mockrail on its own: the contract in docs/ARCHITECTURE.md
# ("Mock rail") over real HTTP with curl. Run it against an ASan build to catch
# memory errors: tests/integration/mockrail_smoke.sh build/asan/mockrail
set -uo pipefail

BIN=${1:-build/release/mockrail}
SECRET=sk_test_smoke
TMP=$(mktemp -d)
pass=0
fail=0

cleanup() {
    [ -n "${PID:-}" ] && kill "$PID" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT

check() { # name, then a command that must succeed
    local name=$1
    shift
    if "$@" >/dev/null 2>&1; then
        pass=$((pass + 1))
    else
        fail=$((fail + 1))
        echo "FAIL: $name"
    fi
}

"$BIN" --listen 127.0.0.1:0 --secret "$SECRET" --quiet >"$TMP/out" 2>"$TMP/err" &
PID=$!
for _ in $(seq 50); do grep -q '^mockrail listening on ' "$TMP/out" && break; sleep 0.1; done
ADDR=$(sed -n 's/^mockrail listening on \(.*\)$/\1/p' "$TMP/out")
B=http://$ADDR
K=(-u "$SECRET:")
check "prints its address" test -n "$ADDR"

# status code of a request (curl args)
code() { curl -s -o /dev/null -w '%{http_code}' "$@"; }
# body of a request
body() { curl -s "$@"; }
has() { grep -q -- "$1" <<<"$2"; }

check "no key: 401" test "$(code "$B/v1/balance")" = 401
check "wrong key: 401, masked" has 'Invalid API Key provided: sk_test_\*' \
    "$(body -H 'Authorization: Bearer sk_test_wrong_key_1234' "$B/v1/balance")"
check "bearer key: 200" test "$(code -H "Authorization: Bearer $SECRET" "$B/v1/balance")" = 200
check "missing amount: 400" has 'Missing required param: amount.' \
    "$(body "${K[@]}" "$B/v1/payment_intents" -d currency=usd)"

pi=$(body "${K[@]}" "$B/v1/payment_intents" -d amount=2000 -d currency=usd \
    -d capture_method=manual -d 'metadata[order]=42')
id=$(sed -n 's/^{"id":"\(pi_[A-Za-z0-9]*\)".*/\1/p' <<<"$pi")
check "create: pi_ id" test -n "$id"
check "create: metadata kept" has '"metadata":{"order":"42"}' "$pi"
check "confirm: requires_capture" has '"status":"requires_capture"' \
    "$(body "${K[@]}" -X POST "$B/v1/payment_intents/$id/confirm")"
check "capture: succeeded" has '"amount_received":1500' \
    "$(body "${K[@]}" "$B/v1/payment_intents/$id/capture" -d amount_to_capture=1500)"
check "refund: partial" has '"amount":500' \
    "$(body "${K[@]}" "$B/v1/refunds" -d payment_intent="$id" -d amount=500)"
check "refund: over the rest refused" test \
    "$(code "${K[@]}" "$B/v1/refunds" -d payment_intent="$id" -d amount=5000)" = 400
check "retrieve unknown: 404" test "$(code "${K[@]}" "$B/v1/payment_intents/pi_nope")" = 404
check "unknown path: 404" test "$(code "${K[@]}" "$B/v1/nothing_here")" = 404

idem=(-H 'Idempotency-Key: smoke-1')
first=$(body "${K[@]}" "${idem[@]}" "$B/v1/payment_intents" -d amount=300 -d currency=usd)
again=$(curl -s -i "${K[@]}" "${idem[@]}" "$B/v1/payment_intents" -d amount=300 -d currency=usd)
check "idempotent replay: same body" has "${first:0:40}" "$again"
check "idempotent replay: header" has 'Idempotent-Replayed: true' "$again"
check "idempotency key reused with other params: 400" has idempotency_error \
    "$(body "${K[@]}" "${idem[@]}" "$B/v1/payment_intents" -d amount=301 -d currency=usd)"

check "amount=402402 declines" has '"decline_code":"generic_decline"' \
    "$(body "${K[@]}" "$B/v1/payment_intents" -d amount=402402 -d currency=usd)"
check "amount=500500: 500" test \
    "$(code "${K[@]}" "$B/v1/payment_intents" -d amount=500500 -d currency=usd)" = 500
check "X-Mock-Chunked answers chunked" has 'Transfer-Encoding: chunked' \
    "$(curl -s -i "${K[@]}" -H 'X-Mock-Chunked: 1' "$B/v1/balance")"
check "chunked request body" has '"amount":777' \
    "$(body "${K[@]}" -H 'Transfer-Encoding: chunked' "$B/v1/payment_intents" -d amount=777 -d currency=usd)"
t=$(curl -s -o /dev/null -w '%{time_total}' "${K[@]}" -H 'X-Mock-Delay-Ms: 300' "$B/v1/balance")
check "X-Mock-Delay-Ms delays" awk -v t="$t" 'BEGIN { exit !(t >= 0.29) }'

# Pipelining: a delayed answer still comes first; Connection: close is honoured.
exec 3<>"/dev/tcp/${ADDR%:*}/${ADDR##*:}"
printf 'GET /__mock/stats HTTP/1.1\r\nHost: s\r\nX-Mock-Delay-Ms: 200\r\n\r\nGET /__mock/health HTTP/1.1\r\nHost: s\r\nConnection: close\r\n\r\nGET /__mock/stats HTTP/1.1\r\nHost: s\r\n\r\n' >&3
piped=$(timeout 5 cat <&3)
exec 3<&-
check "pipelined: two answers" test "$(grep -o 'HTTP/1.1 200' <<<"$piped" | wc -l)" = 2
check "pipelined: in order" has '"requests":.*"ok":true' "$(tr -d '\r\n' <<<"$piped")"
exec 3<>"/dev/tcp/${ADDR%:*}/${ADDR##*:}"
printf 'BROKEN\r\n\r\n' >&3
broken=$(timeout 5 cat <&3)
exec 3<&-
check "malformed request: 400, then closed" has '^HTTP/1.1 400' "$broken"

reqs=$(body "$B/__mock/requests")
check "requests recorded with headers" has '\["Idempotency-Key","smoke-1"\]' "$reqs"
check "stats count /v1 only" has '"requests":' "$(body "$B/__mock/stats")"
check "reset" has '"ok":true' "$(body -X POST "$B/__mock/reset")"
check "reset clears requests" test "$(body "$B/__mock/requests")" = '[]'

kill -TERM "$PID"
wait "$PID"
status=$?
PID=
check "SIGTERM: exit 0" test "$status" = 0
check "no sanitizer report" test ! -s "$TMP/err"

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
