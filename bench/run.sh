#!/usr/bin/env bash
# payguard's benchmark: the same requests sent by bench/loadgen straight to
# the mock rail, through nginx as a plain reverse proxy, and through payguard,
# in alternation: a read (GET /v1/balance, no ledger) and a payment (POST
# /v1/payment_intents with a fresh Idempotency-Key each, through payguard's
# durable ledger), at 1, 32 and 256 connections; plus the disk's durable-commit
# ceiling (commit_ceiling), the policy microbenchmark (policy_bench) and
# payguard's memory with 1,000 and 10,000 idle keep-alive connections. Builds
# nothing: `make bench` builds the release tree first. Everything listens on
# 127.0.0.1 and is killed on exit.
#
#   bench/run.sh            full run (<5 min): writes bench/out/RESULTS.md and
#                           bench/out/latency.svg (a busy machine's figures stay there)
#   bench/run.sh --publish  the same, written to bench/RESULTS.md and bench/latency.svg
#                           (what `make bench` runs: do it on a quiet machine)
#   bench/run.sh --quick    one short round (<30 s): writes bench/out/RESULTS.quick.md
#                           and bench/out/latency.quick.svg
#   bench/run.sh --profile  CPU time and syscalls per request (payguard vs nginx,
#                           perf stat), then payguard under load with perf record:
#                           writes bench/out/profile.txt (needs perf)
#   bench/run.sh --profile-payments  payguard under the payments load: per-thread
#                           CPU and syscalls (loop thread, ledger writer), then
#                           perf record: writes bench/out/profile-payments.txt
#
# Per-run figures always go to bench/out/results.csv.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=full
publish=
for arg in "$@"; do
    case "$arg" in
        --quick) mode=quick ;;
        --profile) mode=profile ;;
        --profile-payments) mode=profile_pay ;;
        --publish) publish=1 ;;
        -h|--help) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "bench: unknown option $arg (see bench/run.sh --help)" >&2; exit 2 ;;
    esac
done
[ -z "$publish" ] || [ "$mode" = full ] || { echo "bench: --publish goes with the full run only" >&2; exit 2; }

BUILD=build/release
LOADGEN=$BUILD/bench/loadgen
PAYGUARD=$BUILD/payguard
MOCKRAIL=$BUILD/mockrail
LEDGER_INFO=$BUILD/bench/ledger_info
COMMIT_CEILING=$BUILD/bench/commit_ceiling
LEDGER_PAGES=$BUILD/bench/ledger_pages
POLICY_BENCH=$BUILD/bench/policy_bench
OUT=bench/out
SECRET=sk_test_bench
PATH_REQ=/v1/balance
CONNS=32
HI_CONNS=256
# Memory: held idle connections, read at IDLE_CONNS then at IDLE_MAX (one loadgen run,
# IDLE_RAMP being set up at a time); the goal is on the growth between the two.
IDLE_CONNS=1000
IDLE_MAX=10000
IDLE_RAMP=64
# The payment: every rule of the bench policy runs on it and passes.
PAY_PATH=/v1/payment_intents
PAY_BODY='amount=1000&currency=usd&transfer_data[destination]=acct_1TrustedBench'
PAY_CONNS=64
READ_REQ=(-p "$PATH_REQ")
PAY_REQ=(-m POST -p "$PAY_PATH" -b "$PAY_BODY" --unique-idempotency)

# *_ROUNDS rounds of *_WARM s warm-up + *_MEASURE s measured per target. Reads at $CONNS
# (ROUNDS, WARM, MEASURE), pinned (PIN_), at one connection (C1_) and at $HI_CONNS (HI_);
# payments at $PAY_CONNS (PAY_), $CONNS (PAY32_), $HI_CONNS (PAYHI_) and one (PAYC1_).
# CEIL_*: commit_ceiling. The full run's sum stays under 5 minutes with its overheads.
if [ "$mode" = quick ]; then
    ROUNDS=1; WARM=0.2; MEASURE=0.6; C1_WARM=0.1; C1_MEASURE=0.5; C1_ROUNDS=1; IDLE_HOLD=0.2
    PIN_ROUNDS=0; HI_ROUNDS=1; HI_WARM=0.2; HI_MEASURE=0.5
    PAY_ROUNDS=1; PAY_WARM=0.2; PAY_MEASURE=0.6; PAY32_ROUNDS=0; PAYHI_ROUNDS=1; PAYHI_WARM=0.2; PAYHI_MEASURE=0.5
    PAYC1_ROUNDS=1; PAYC1_WARM=0.1; PAYC1_MEASURE=0.5
    CEIL_WARM=0.1; CEIL_MEASURE=0.5; POLICY_ROUNDS=1; ALONE_PAYMENTS=2000
elif [ "$mode" = profile ] || [ "$mode" = profile_pay ]; then
    ROUNDS=0; WARM=2; MEASURE=10; C1_ROUNDS=0; IDLE_HOLD=0; PIN_ROUNDS=0; HI_ROUNDS=0
    PAY_ROUNDS=0; PAY32_ROUNDS=0; PAYHI_ROUNDS=0; PAYC1_ROUNDS=0
else
    ROUNDS=3; WARM=1; MEASURE=3; C1_WARM=0.3; C1_MEASURE=1.7; C1_ROUNDS=3; IDLE_HOLD=1
    PIN_ROUNDS=3; PIN_WARM=0.5; PIN_MEASURE=2; HI_ROUNDS=3; HI_WARM=0.5; HI_MEASURE=2.5
    PAY_ROUNDS=3; PAY_WARM=1; PAY_MEASURE=3; PAY32_ROUNDS=3; PAY32_WARM=0.5; PAY32_MEASURE=2
    PAYHI_ROUNDS=3; PAYHI_WARM=0.5; PAYHI_MEASURE=2.5
    PAYC1_ROUNDS=3; PAYC1_WARM=0.3; PAYC1_MEASURE=1.7
    CEIL_WARM=0.5; CEIL_MEASURE=3; POLICY_ROUNDS=7; ALONE_PAYMENTS=20000
fi
SCRIPT_START=$(date +%s)

say() { printf 'bench: [%3ds] %s\n' "$SECONDS" "$*" >&2; }
die() { printf 'bench: %s\n' "$*" >&2; exit 1; }

for b in "$LOADGEN" "$PAYGUARD" "$MOCKRAIL" "$LEDGER_INFO" "$COMMIT_CEILING" "$LEDGER_PAGES" "$POLICY_BENCH"; do
    [ -x "$b" ] || die "$b is missing; run \`make bench\` (it builds the release tree first)"
done

if ! command -v nginx >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "installing nginx-light (the reference reverse proxy)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx-light >/dev/null \
            || die "apt-get install nginx-light failed"
    else
        die "nginx is missing; install it with: sudo apt-get install -y nginx-light"
    fi
fi
NGINX=$(command -v nginx)

# 10,000 connections need as many descriptors in loadgen and in the proxy (plus its
# rail connections): raised here, inherited by every process the script starts.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge $((IDLE_MAX + 1000)) ] \
    || die "ulimit -n is $(ulimit -n) and cannot be raised: the $IDLE_MAX-connection memory test needs $((IDLE_MAX + 1000))"

mkdir -p "$OUT"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/payguard-bench.XXXXXX")
PIDS=()
# Private copies: a rebuild during the run neither swaps binaries under the
# measurement nor leaves perf with "(deleted)" symbols.
mkdir -p "$TMP/bin"
cp "$LOADGEN" "$PAYGUARD" "$MOCKRAIL" "$LEDGER_INFO" "$COMMIT_CEILING" "$LEDGER_PAGES" "$POLICY_BENCH" "$TMP/bin/"
LOADGEN=$TMP/bin/loadgen PAYGUARD=$TMP/bin/payguard MOCKRAIL=$TMP/bin/mockrail
LEDGER_INFO=$TMP/bin/ledger_info COMMIT_CEILING=$TMP/bin/commit_ceiling POLICY_BENCH=$TMP/bin/policy_bench
LEDGER_PAGES=$TMP/bin/ledger_pages
LOADAVG_START=$(cut -d' ' -f1-3 /proc/loadavg)
# How busy the machine is before we start: a neighbour's load skews everything.
IDLE_BUSY_PCT=$(b0=$(awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat); sleep 0.5
    b1=$(awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat)
    awk -v d=$((b1 - b0)) -v hz="$(getconf CLK_TCK)" -v n="$(nproc)" 'BEGIN { x = d * 100 / (hz * n * 0.5); printf "%.0f", (x > 100 ? 100 : x) }')
[ "$IDLE_BUSY_PCT" -lt 20 ] || say "warning: the machine is already ${IDLE_BUSY_PCT}% busy before the benchmark; figures will be noisy"
# Alive and not a zombie (an exited child stays visible to kill -0 until reaped).
alive() { [ -r "/proc/$1/stat" ] && ! grep -q ') Z ' "/proc/$1/stat" 2>/dev/null; }
# Stops one child: TERM, up to 5 s to drain, then KILL. Sets STOP_STATUS.
stop_pid() {
    STOP_STATUS=0
    kill -TERM "$1" 2>/dev/null || true
    for _ in $(seq 50); do alive "$1" || break; sleep 0.1; done
    kill -KILL "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || STOP_STATUS=$?
}
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    # payguard first, while its rail is still up: SIGTERM must drain and exit 0.
    if [ -n "${PG_PID:-}" ]; then
        stop_pid "$PG_PID"
        if [ "$STOP_STATUS" != 0 ]; then
            say "warning: payguard exited with status $STOP_STATUS on SIGTERM (>128: killed by signal $((STOP_STATUS - 128))); stderr and log tail in $OUT/payguard-exit.log"
            { echo "== exit status $STOP_STATUS"; echo "== stderr"; cat "$TMP/payguard.err" 2>/dev/null
              echo "== log tail"; tail -20 "$TMP/payguard.log" 2>/dev/null; } >"$OUT/payguard-exit.log"
        fi
    fi
    for p in "${PIDS[@]+"${PIDS[@]}"}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]+"${PIDS[@]}"}"; do stop_pid "$p"; done
    if [ "$rc" = 0 ]; then
        rm -rf "$TMP"
    else
        say "failed; logs kept in $TMP"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Waits up to $2 seconds for a line matching regex $1 in file $3, while pid $4 lives.
wait_for_line() {
    local re=$1 secs=$2 file=$3 pid=$4 i
    for i in $(seq $((secs * 20))); do
        if grep -qE "$re" "$file" 2>/dev/null; then return 0; fi
        alive "$pid" || return 1
        sleep 0.05
    done
    return 1
}

# Field $2 of the flat JSON object $1 (numbers only).
jnum() { sed -n "s/.*\"$2\":\([-0-9.]*\).*/\1/p" <<<"$1"; }

# Median of numbers given as arguments.
median() {
    printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {if (NR==0) print ""; else if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'
}

kb() { awk -v k="$1" '/^'"$1"':/ {print $2}' "/proc/$2/status"; }

# --- mock rail -----------------------------------------------------------------
"$MOCKRAIL" --listen 127.0.0.1:0 --secret "$SECRET" --quiet >"$TMP/mockrail.out" 2>"$TMP/mockrail.err" &
PIDS+=($!); MOCK_PID=$!
wait_for_line '^mockrail listening on ' 5 "$TMP/mockrail.out" "$MOCK_PID" \
    || die "mockrail did not start: $(cat "$TMP/mockrail.err")"
MOCK_ADDR=$(sed -n 's/^mockrail listening on \([0-9.]*:[0-9]*\).*/\1/p' "$TMP/mockrail.out" | head -1)
MOCK_PORT=${MOCK_ADDR##*:}

# --- nginx: a plain reverse proxy to the mock rail -------------------------------
# Fair to payguard: one worker (payguard is one loop thread), upstream keep-alive,
# and an unbuffered access log to a file, one write per request (payguard writes
# its log_file once per loop iteration, never holding a line while the loop sleeps;
# nginx's buffer= would hold lines until full or flush=). "auto" (one worker per
# core) is measured too.
start_nginx() {
    local name=$1 workers=$2 port tries dir pid
    dir="$TMP/nginx-$name"
    mkdir -p "$dir/tmp"
    for tries in 1 2 3 4 5 6 7 8; do
        port=$((20000 + RANDOM % 12000))
        cat >"$dir/nginx.conf" <<EOF
worker_processes $workers;
daemon off;
master_process on;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
worker_rlimit_nofile 65536;
# Room for the memory test's $IDLE_MAX clients and their rail connections; nginx
# allocates and touches every slot at start, so no more than that.
events { worker_connections $((IDLE_MAX + 752)); }
http {
    log_format bench '{"time":"\$time_iso8601","method":"\$request_method","path":"\$uri",'
                     '"status":\$status,"bytes_in":\$request_length,"bytes_out":\$bytes_sent,'
                     '"latency_us":"\$request_time","upstream_us":"\$upstream_response_time"}';
    access_log $dir/access.log bench;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    upstream rail {
        server 127.0.0.1:$MOCK_PORT;
        keepalive 256;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$port;
        location / {
            proxy_pass http://rail;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
        "$NGINX" -e "$dir/error.log" -p "$dir" -c "$dir/nginx.conf" >"$dir/stdout" 2>&1 &
        pid=$!
        for _ in $(seq 40); do
            if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
                PIDS+=("$pid")
                eval "NGINX_${name}_PORT=$port NGINX_${name}_PID=$pid"
                return 0
            fi
            alive "$pid" || break
            sleep 0.05
        done
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        grep -q 'Address already in use' "$dir/error.log" "$dir/stdout" 2>/dev/null \
            || die "nginx ($name) did not start: $(tail -3 "$dir/error.log" "$dir/stdout" 2>/dev/null)"
    done
    die "nginx ($name): no free port found"
}

# --- payguard ----------------------------------------------------------------------
"$PAYGUARD" token new --agent bench >"$TMP/token.out" 2>&1 || die "payguard token new failed: $(cat "$TMP/token.out")"
AGENT_TOKEN=$(sed -n 's/^token: \(pgt_[^ ]*\)$/\1/p' "$TMP/token.out")
AGENT_HASH=$(sed -n 's/^ *token: "\(.*\)"$/\1/p' "$TMP/token.out")
[ -n "$AGENT_TOKEN" ] && [ -n "$AGENT_HASH" ] || die "could not read the token from payguard token new"
cat >"$TMP/payguard.yaml" <<EOF
listen:
  agents: 127.0.0.1:0
  admin: 127.0.0.1:0
data_dir: $TMP/data
log_file: $TMP/payguard.log
rails:
  stripe:
    preset: stripe
    upstream: http://127.0.0.1:$MOCK_PORT
    secret: env:BENCH_STRIPE_SECRET
    allow_http: true
    pool_size: 256
# Room for the memory test's 10,000 held connections and the script's own.
limits:
  max_connections: 20000
orgs:
  bench:
    timezone: Europe/Paris
# Every rule kind set, all generous: each payment runs every check (and the
# ledger's fresh-spend windows and velocity count) and passes. Velocity is per
# second so that no payment rate this box can reach trips it.
policies:
  bench:
    currency: usd
    per_transaction: "1000000.00"
    daily: "90000000000.00"
    weekly: "90000000000.00"
    monthly: "90000000000.00"
    approval_above: "500000.00"
    auto_approve_below: "1.00"
    merchants: {allow: ["acct_1Trusted*"], deny: ["acct_1Blocked*"]}
    hours: {days: mon-sun, from: "00:00", to: "24:00"}
    velocity: {max: 1000000, per: 1s}
    currencies: [usd, eur]
    operations: [payment, refund, read]
agents:
  - id: bench
    org: bench
    token: "$AGENT_HASH"
    rails: [stripe]
    policy: bench
EOF
mkdir -p "$TMP/data"
BENCH_STRIPE_SECRET=$SECRET "$PAYGUARD" run -c "$TMP/payguard.yaml" >"$TMP/payguard.out" 2>"$TMP/payguard.err" &
PIDS+=($!); PG_PID=$!
wait_for_line '"msg":"listening","listener":"agents"' 5 "$TMP/payguard.log" "$PG_PID" \
    || die "payguard did not start: $(tail -5 "$TMP/payguard.err" "$TMP/payguard.log" 2>/dev/null)"
PG_ADDR=$(grep -m1 '"listener":"agents"' "$TMP/payguard.log" | sed -n 's/.*"addr":"\([^"]*\)".*/\1/p')
sleep 0.3
PG_RSS_START=$(kb VmRSS "$PG_PID")

# --- targets -----------------------------------------------------------------------
TARGETS=(direct nginx1 nginx_auto payguard)
declare -A ADDR AUTH LABEL
ADDR[direct]=$MOCK_ADDR
AUTH[direct]="Bearer $SECRET"
LABEL[direct]="direct (mockrail)"
ADDR[payguard]=$PG_ADDR
AUTH[payguard]="Bearer $AGENT_TOKEN"
LABEL[payguard]="payguard"
start_nginx w1 1
ADDR[nginx1]=127.0.0.1:$NGINX_w1_PORT
AUTH[nginx1]="Bearer $SECRET"
LABEL[nginx1]="nginx, 1 worker"
if [ "$mode" = profile ]; then
    TARGETS=(payguard nginx1)
elif [ "$mode" = profile_pay ]; then
    TARGETS=(payguard)
else
    if [ "$mode" = full ]; then
        start_nginx auto auto
        ADDR[nginx_auto]=127.0.0.1:$NGINX_auto_PORT
        AUTH[nginx_auto]="Bearer $SECRET"
        LABEL[nginx_auto]="nginx, auto ($(nproc) workers)"
    else
        TARGETS=(direct nginx1 payguard)
    fi
fi

# Payments go to the same three places: the rail itself, nginx passing them
# through, payguard deciding and recording each one.
PAY_TARGETS=(direct nginx1 payguard)

# loadgen TARGET CONNS WARM MEASURE -> JSON line; fails loudly. The request is
# "${REQ[@]}": READ_REQ or PAY_REQ.
LG_WRAP=() # e.g. (taskset -c 0) while CPUs are pinned
REQ=("${READ_REQ[@]}")
loadgen() {
    local t=$1 out
    if ! out=$("${LG_WRAP[@]+"${LG_WRAP[@]}"}" "$LOADGEN" -q -c "$2" -w "$3" -d "$4" "${REQ[@]}" \
               -H "Authorization: ${AUTH[$t]}" "${ADDR[$t]}" 2>"$TMP/loadgen.err"); then
        die "loadgen against $t (${ADDR[$t]}) failed: $(cat "$TMP/loadgen.err")"
    fi
    if [ "$(jnum "$out" non2xx)" != 0 ] || [ "$(jnum "$out" errors)" != 0 ]; then
        say "warning: $t answered non-2xx or failed: $out"
    fi
    printf '%s\n' "$out"
}

# One short check per target: a 2xx, or stop before wasting minutes.
for t in "${TARGETS[@]}"; do
    r=$(loadgen "$t" 1 0 0.1)
    [ "$(jnum "$r" ok)" -gt 0 ] && [ "$(jnum "$r" non2xx)" = 0 ] \
        || die "$t does not answer GET $PATH_REQ with 2xx: $r"
done
REQ=("${PAY_REQ[@]}")
for t in "${PAY_TARGETS[@]}"; do
    [ "$mode" != profile ] || break
    r=$(loadgen "$t" 1 0 0.1)
    [ "$(jnum "$r" ok)" -gt 0 ] && [ "$(jnum "$r" non2xx)" = 0 ] \
        || die "$t does not answer POST $PAY_PATH with 2xx: $r (payguard's log: $(tail -2 "$TMP/payguard.log"))"
done
REQ=("${READ_REQ[@]}")

CSV=$OUT/results.csv
echo "mode,scenario,round,target,connections,requests,rps,p50_us,p90_us,p99_us,p999_us,max_us,ok,non2xx,errors,server_cpu_us_per_req,rail_cpu_us_per_req,loadgen_cpu_pct,extra" >"$CSV"
csv_row() { # scenario round target json server_cpu rail_cpu [extra]
    local j=$4
    echo "$mode,$1,$2,$3,$(jnum "$j" connections),$(jnum "$j" requests),$(jnum "$j" rps),$(jnum "$j" p50_us),$(jnum "$j" p90_us),$(jnum "$j" p99_us),$(jnum "$j" p999_us),$(jnum "$j" max_us),$(jnum "$j" ok),$(jnum "$j" non2xx),$(jnum "$j" errors),${5:-},${6:-},$(jnum "$j" loadgen_cpu_pct),others_cpu_pct=${NB:-}${7:+;$7}" >>"$CSV"
}

# --- profile mode: where payguard's time goes -------------------------------------
# 1. CPU time and syscalls per request, payguard vs the nginx worker, from perf stat
#    over a fixed window of steady load (events / (req/s * window)).
# 2. payguard alone under the same load with perf record --call-graph dwarf
#    (payguard is built without frame pointers, so fp stacks stop at libc).
if [ "$mode" = profile ]; then
    command -v perf >/dev/null || die "perf is missing (apt-get install linux-perf)"
    NGX_WORKER=$(awk '{print $1}' "/proc/$NGINX_w1_PID/task/$NGINX_w1_PID/children")
    EVENTS=task-clock,context-switches,raw_syscalls:sys_enter
    for s in read write writev readv recvfrom sendto sendmsg recvmsg epoll_wait epoll_pwait epoll_ctl \
             accept4 close setsockopt getsockopt ioctl futex brk mmap munmap madvise openat newfstatat; do
        [ -d "/sys/kernel/tracing/events/syscalls/sys_enter_$s" ] && EVENTS+=",syscalls:sys_enter_$s"
    done
    WINDOW=4
    # Requests the mock rail has served so far: exact counts for the window.
    # Run as perf stat's workload, so both reads fall inside the counted window.
    cat >"$TMP/window.sh" <<'EOF2'
mock_requests() {
    exec 5<>"/dev/tcp/127.0.0.1/$1"
    printf 'GET /__mock/stats HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n' >&5
    sed -n 's/.*"requests":\([0-9]*\).*/\1/p' <&5
    exec 5<&-
}
n0=$(mock_requests "$1"); sleep "$2"; n1=$(mock_requests "$1")
echo $((n1 - n0))
EOF2
    perreq() { # target pid -> rows "target event per-request"
        local t=$1 pid=$2 lg n
        "$LOADGEN" -q -c "$CONNS" -w 0 -d $((WINDOW + 3)) -p "$PATH_REQ" -H "Authorization: ${AUTH[$t]}" \
            "${ADDR[$t]}" >"$TMP/stat-$t.json" 2>"$TMP/stat-$t.err" &
        lg=$!
        sleep 1
        perf stat -x, -e "$EVENTS" -p "$pid" -o "$TMP/stat-$t.csv" -- \
            bash "$TMP/window.sh" "$MOCK_PORT" "$WINDOW" >"$TMP/stat-$t.n" 2>/dev/null \
            || die "perf stat failed on $t"
        n=$(cat "$TMP/stat-$t.n")
        [ "${n:-0}" -gt 0 ] || die "no requests reached the rail while profiling $t"
        wait "$lg" || die "loadgen against $t failed: $(cat "$TMP/stat-$t.err")"
        awk -F, -v n="$n" -v t="$t" '
            /^#/ || NF < 3 || $1 == "" { next }
            { v = $1 + 0; ev = $3
              if (ev == "task-clock") printf "%-10s %-32s %8.2f us CPU per request\n", t, ev, v * 1000 / n
              else if (v > 0) printf "%-10s %-32s %8.3f per request\n", t, ev, v / n }
        ' "$TMP/stat-$t.csv"
        echo "$t: $n requests reached the rail in the ${WINDOW} s window ($((n / WINDOW)) req/s)"
    }
    loadgen payguard "$CONNS" 1 1 >/dev/null
    loadgen nginx1 "$CONNS" 1 1 >/dev/null
    PERREQ_PG=$(perreq payguard "$PG_PID")
    PERREQ_NGX=$(perreq nginx1 "$NGX_WORKER")

    perf record -F 499 --call-graph dwarf,16384 -o "$TMP/perf.data" -p "$PG_PID" -- sleep 5 \
        >/dev/null 2>"$TMP/perf.err" &
    PERF_PID=$!
    sleep 0.2
    r=$(loadgen payguard "$CONNS" 0 5.5)
    wait "$PERF_PID" || die "perf record failed: $(cat "$TMP/perf.err")"
    {
        echo "# payguard profile: GET $PATH_REQ through payguard, $CONNS keep-alive connections"
        echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD), $(nproc) CPUs"
        echo "# load during perf record: $r"
        echo
        echo "## CPU time and syscalls per request (perf stat over ${WINDOW} s of steady load)"
        echo "$PERREQ_PG"
        echo "$PERREQ_NGX"
        echo
        echo "## perf report --no-children --sort dso (self time by binary)"
        perf report -i "$TMP/perf.data" --no-children --stdio --sort dso -g none 2>/dev/null | grep -v '^$'
        echo
        echo "## perf report --no-children (self time by symbol, >= 0.4%)"
        perf report -i "$TMP/perf.data" --no-children --stdio --percent-limit 0.4 -g none 2>/dev/null | grep -v '^$'
        echo
        echo "## perf report --children (inclusive time, >= 1.5%)"
        perf report -i "$TMP/perf.data" --children --stdio --percent-limit 1.5 -g none 2>/dev/null | grep -v '^$'
    } >"$OUT/profile.txt"
    cp "$TMP/perf.data" "$OUT/perf.data" # symbols stay resolvable through perf's build-id cache
    say "profile: $OUT/profile.txt (raw: $OUT/perf.data)"
    echo "$PERREQ_PG"
    echo "$PERREQ_NGX"
    exit 0
fi

# --- profile-payments mode: where a payment's time goes, thread by thread ---------------
# 1. perf stat per thread over a fixed window of the payments load ($PAY_CONNS
#    connections): CPU and syscalls per payment on the loop thread and on the ledger's
#    writer thread, and the writer's commits (LMDB txnid) and batch sizes (audit entries
#    per commit: one per BEGIN and one per SETTLE).
# 2. perf record with DWARF stacks, reported per thread.
if [ "$mode" = profile_pay ]; then
    command -v perf >/dev/null || die "perf is missing (apt-get install linux-perf)"
    EVENTS=task-clock,context-switches,page-faults,raw_syscalls:sys_enter
    for s in read write writev pwrite64 fdatasync fsync lseek epoll_wait epoll_ctl futex \
             sched_yield mmap munmap madvise; do
        [ -d "/sys/kernel/tracing/events/syscalls/sys_enter_$s" ] && EVENTS+=",syscalls:sys_enter_$s"
    done
    WINDOW=5
    cat >"$TMP/window.sh" <<'EOF2'
mock_requests() {
    exec 5<>"/dev/tcp/127.0.0.1/$1"
    printf 'GET /__mock/stats HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n' >&5
    sed -n 's/.*"requests":\([0-9]*\).*/\1/p' <&5
    exec 5<&-
}
n0=$(mock_requests "$1"); l0=$("$3" "$4"); sleep "$2"; n1=$(mock_requests "$1"); l1=$("$3" "$4")
echo "$((n1 - n0))"; echo "$l0"; echo "$l1"
EOF2
    REQ=("${PAY_REQ[@]}")
    loadgen payguard "$PAY_CONNS" 1 2 >/dev/null
    "$LOADGEN" -q -c "$PAY_CONNS" -w 0 -d $((WINDOW + 3)) "${REQ[@]}" -H "Authorization: ${AUTH[payguard]}" \
        "$PG_ADDR" >"$TMP/stat-pay.json" 2>"$TMP/stat-pay.err" &
    LG=$!
    sleep 1
    perf stat --per-thread -x, -e "$EVENTS" -p "$PG_PID" -o "$TMP/stat-pay.csv" -- \
        bash "$TMP/window.sh" "$MOCK_PORT" "$WINDOW" "$LEDGER_INFO" "$TMP/data" >"$TMP/stat-pay.n" 2>/dev/null \
        || die "perf stat failed"
    wait "$LG" || die "loadgen failed: $(cat "$TMP/stat-pay.err")"
    N=$(sed -n 1p "$TMP/stat-pay.n"); L0=$(sed -n 2p "$TMP/stat-pay.n"); L1=$(sed -n 3p "$TMP/stat-pay.n")
    [ "${N:-0}" -gt 0 ] || die "no payment reached the rail while profiling"
    COMMITS=$(( $(jnum "$L1" txnid) - $(jnum "$L0" txnid) ))
    ITEMS=$(( $(jnum "$L1" audit) - $(jnum "$L0" audit) ))
    # The ledger's threads name themselves.
    WRITER=$(grep -lx pg-writer /proc/"$PG_PID"/task/*/comm | awk -F/ '{print $5}' | head -1)
    PERTHREAD=$(awk -F, -v n="$N" -v main="payguard-$PG_PID" '
        /^#/ || NF < 4 || $2 == "" || $2 ~ /not/ { next }
        { v = $2 + 0; ev = $4; who = ($1 == main) ? "loop" : ($1 ~ /^pg-writer-/) ? "writer" : ($1 ~ /^pg-prepare-/) ? "preparer" : $1
          if (v == 0) next
          if (ev == "task-clock") printf "%-16s %-32s %9.2f us CPU per payment\n", who, ev, v * 1000 / n
          else printf "%-16s %-32s %9.3f per payment\n", who, ev, v / n }
    ' "$TMP/stat-pay.csv" | sort -s -k1,1)
    r=$(cat "$TMP/stat-pay.json")
    # One recording per thread (perf report --tid does not filter inclusive time).
    "$LOADGEN" -q -c "$PAY_CONNS" -w 0 -d 10 "${REQ[@]}" -H "Authorization: ${AUTH[payguard]}" \
        "$PG_ADDR" >"$TMP/rec-pay.json" 2>"$TMP/rec-pay.err" &
    LG=$!
    sleep 0.5
    for tid in "$PG_PID" ${WRITER:+"$WRITER"}; do
        perf record -F 999 --call-graph dwarf,16384 -o "$TMP/perf-$tid.data" -t "$tid" -- sleep 4 \
            >/dev/null 2>"$TMP/perf.err" || die "perf record failed: $(cat "$TMP/perf.err")"
    done
    wait "$LG" || die "loadgen failed: $(cat "$TMP/rec-pay.err")"
    r2=$(cat "$TMP/rec-pay.json")
    {
        echo "# payguard profile: POST $PAY_PATH (unique Idempotency-Key), $PAY_CONNS keep-alive connections"
        echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD), $(nproc) CPUs"
        echo "# load during perf stat: $r"
        echo "# load during perf record: $r2"
        echo
        echo "## Per thread, per payment (perf stat over ${WINDOW} s; loop = payguard's main thread)"
        echo "$PERTHREAD"
        echo "$N payments reached the rail in the ${WINDOW} s window ($((N / WINDOW))/s)"
        echo "ledger: $COMMITS commits ($((COMMITS / WINDOW))/s), $ITEMS audited items (BEGIN + SETTLE), $(awk -v a="$ITEMS" -v b="$COMMITS" 'BEGIN { if (b) printf "%.1f", a / b }') items per commit"
        echo "ledger before: $L0"
        echo "ledger after:  $L1"
        echo
        for tid in "$PG_PID" ${WRITER:+"$WRITER"}; do
            echo
            echo "## thread $tid ($([ "$tid" = "$PG_PID" ] && echo loop || echo ledger writer)), 4 s: by binary (self)"
            perf report -i "$TMP/perf-$tid.data" --no-children --stdio --sort dso -g none 2>/dev/null | grep -v '^$' | grep -v '^#'
            echo
            echo "## thread $tid: inclusive (--children, >= 1.5% of the thread's samples)"
            perf report -i "$TMP/perf-$tid.data" --children --stdio --sort sym --percent-limit 1.5 -g none 2>/dev/null | grep -v '^$' | grep -v '^#'
            echo
            echo "## thread $tid: self (--no-children, >= 0.5%)"
            perf report -i "$TMP/perf-$tid.data" --no-children --stdio --sort dso,sym --percent-limit 0.5 -g none 2>/dev/null | grep -v '^$' | grep -v '^#'
            cp "$TMP/perf-$tid.data" "$OUT/perf-payments-$([ "$tid" = "$PG_PID" ] && echo loop || echo writer).data"
        done
    } >"$OUT/profile-payments.txt"
    say "profile: $OUT/profile-payments.txt (raw: $OUT/perf-payments-loop.data, $OUT/perf-payments-writer.data)"
    echo "$PERTHREAD"
    exit 0
fi

START_TS=$(date +%s)

# --- policy microbenchmark and the disk's durable-commit ceiling ------------------------
# Before any load, while the machine and the disk are quiet. The ceiling runs in the
# temp dir, next to payguard's data_dir: same filesystem.
say "policy_bench ($POLICY_ROUNDS rounds)"
POLICY=$("$POLICY_BENCH" "$POLICY_ROUNDS") || die "policy_bench failed"
say "commit_ceiling: one put per commit, then 64"
CEIL1=$("$COMMIT_CEILING" -w "$CEIL_WARM" -d "$CEIL_MEASURE" -b 1 "$TMP/ceiling-1") || die "commit_ceiling failed"
CEIL64=$("$COMMIT_CEILING" -w "$CEIL_WARM" -d "$CEIL_MEASURE" -b 64 "$TMP/ceiling-64") || die "commit_ceiling failed"
rm -rf "$TMP/ceiling-1" "$TMP/ceiling-64"
say "ceiling: $(jnum "$CEIL1" commits_per_s) commits/s (1 put), $(jnum "$CEIL64" records_per_s) records/s (64 puts per commit)"
# The ledger alone: payguard's writer fed BEGINs and SETTLEs in batches, no network and no
# proxy, so its rate bounds what the whole proxy can reach at that batch. 22 payments per
# commit is about what 64 connections give (the ledger table's items per commit, halved);
# 64 is the most they can.
ALONE_BATCHES=(22 64)
ALONE=()
for b in "${ALONE_BATCHES[@]}"; do
    say "ledger_pages: the ledger alone, $b payments per commit"
    ALONE+=("$("$LEDGER_PAGES" -n "$ALONE_PAYMENTS" -p "$ALONE_PAYMENTS" -b "$b" -d "$TMP/ledger-alone-$b")") \
        || die "ledger_pages failed"
    rm -rf "$TMP/ledger-alone-$b"
done
say "ledger alone: $(jnum "${ALONE[0]}" payments_per_s) payments/s at ${ALONE_BATCHES[0]} per commit, $(jnum "${ALONE[1]}" payments_per_s) at ${ALONE_BATCHES[1]}"
# The filesystem they and payguard's ledger live on.
fs_desc() {
    local src fstype opts dev base journal cache rot
    src=$(findmnt -no SOURCE -T "$1" 2>/dev/null | head -1)
    fstype=$(findmnt -no FSTYPE -T "$1" 2>/dev/null | head -1)
    opts=$(findmnt -no OPTIONS -T "$1" 2>/dev/null | head -1)
    dev=${src##*/}
    base=$dev
    [ -e "/sys/class/block/$dev/partition" ] && base=$(basename "$(readlink -f "/sys/class/block/$dev/..")")
    journal=
    if [ "$fstype" = ext4 ]; then
        if compgen -G "/proc/fs/jbd2/$dev-*" >/dev/null; then journal=", with journal"; else journal=", no journal"; fi
    fi
    [ -r "/sys/block/$base/stat" ] && DISK_STAT=/sys/block/$base/stat
    cache=$(cat "/sys/block/$base/queue/write_cache" 2>/dev/null || echo unknown)
    rot=$(cat "/sys/block/$base/queue/rotational" 2>/dev/null || echo "?")
    printf '%s on %s%s (%s); device write cache: %s; rotational: %s' "$fstype" "$src" "$journal" "$opts" "$cache" "$rot"
}
DISK_STAT= # the block device's counters, when it has some: sectors written are field 7
fs_desc "$TMP" >"$TMP/fs_desc"
FS_DESC=$(cat "$TMP/fs_desc")
SAME_FS=no
[ "$(stat -c %d "$TMP")" = "$(stat -c %d .)" ] && SAME_FS=yes

# --- memory: payguard (and nginx, for scale) with 1,000 and 10,000 idle connections ---
# First $IDLE_CONNS bare connections (accepted, nothing sent); then, in one loadgen run,
# connections that each send one request (so their keep-alive state exists) and stay
# open idle: $IDLE_RAMP at a time are being set up, so the proxy needs few rail
# connections; held at $IDLE_CONNS, then at $IDLE_MAX. The goal is on the growth
# between the two readings: what one more idle connection costs.
idle_rss() { # target pid -> "rss_bare_kb rss_1k_kb rss_10k_kb hwm_kb"
    local t=$1 pid=$2 lg bare r1 r2
    "$LOADGEN" --idle --no-request -c "$IDLE_CONNS" -d "$IDLE_HOLD" --connect-timeout 20 \
        "${ADDR[$t]}" >"$TMP/bare-$t.out" 2>"$TMP/bare-$t.err" &
    lg=$!
    wait_for_line '^loadgen: holding ' 25 "$TMP/bare-$t.err" "$lg" \
        || die "$t: $IDLE_CONNS bare connections failed: $(cat "$TMP/bare-$t.err")"
    sleep 0.2
    bare=$(kb VmRSS "$pid")
    wait "$lg" || die "$t: bare connections run failed: $(cat "$TMP/bare-$t.err")"
    "$LOADGEN" --idle -c "$IDLE_MAX" --hold-at "$IDLE_CONNS" --ramp "$IDLE_RAMP" -d "$IDLE_HOLD" \
        --connect-timeout 30 -p "$PATH_REQ" -H "Authorization: ${AUTH[$t]}" "${ADDR[$t]}" \
        >"$TMP/idle-$t.out" 2>"$TMP/idle-$t.err" &
    lg=$!
    wait_for_line "^loadgen: holding $IDLE_CONNS " 35 "$TMP/idle-$t.err" "$lg" \
        || die "$t: $IDLE_CONNS idle keep-alive connections failed: $(cat "$TMP/idle-$t.err")"
    sleep 0.2
    r1=$(kb VmRSS "$pid")
    wait_for_line "^loadgen: holding $IDLE_MAX " 35 "$TMP/idle-$t.err" "$lg" \
        || die "$t: $IDLE_MAX idle keep-alive connections failed: $(cat "$TMP/idle-$t.err")"
    sleep 0.2
    r2=$(kb VmRSS "$pid")
    wait "$lg" || die "$t: idle run failed: $(cat "$TMP/idle-$t.err")"
    # A refusal (503 past max_connections) or a close would make the figures a lie.
    local j; j=$(cat "$TMP/idle-$t.out")
    [ "$(jnum "$j" held)" = "$IDLE_MAX" ] && [ "$(jnum "$j" non2xx)" = 0 ] && [ "$(jnum "$j" errors)" = 0 ] \
        || die "$t did not keep $IDLE_MAX idle connections, each answered 2xx: $j"
    echo "$bare $r1 $r2 $(kb VmHWM "$pid")"
}
say "memory: $IDLE_CONNS bare connections, then $IDLE_CONNS and $IDLE_MAX idle keep-alive connections"
# VmHWM is refreshed lazily by the kernel and can read below an earlier VmRSS: the peak
# reported is the largest of every VmRSS and VmHWM read.
max_kb() { printf '%s\n' "$@" | sort -n | tail -1; }
# Not in a subshell: a failure stops the script.
idle_rss payguard "$PG_PID" >"$TMP/mem-payguard"
read -r PG_RSS_BARE PG_RSS_IDLE PG_RSS_MAX PG_HWM_IDLE <"$TMP/mem-payguard"
NGX_WORKER=$(awk '{print $1}' "/proc/$NGINX_w1_PID/task/$NGINX_w1_PID/children")
NGX_RSS_START=$(kb VmRSS "$NGX_WORKER")
idle_rss nginx1 "$NGX_WORKER" >"$TMP/mem-nginx1"
read -r NGX_RSS_BARE NGX_RSS_IDLE NGX_RSS_MAX NGX_HWM_IDLE <"$TMP/mem-nginx1"

# --- CPU accounting --------------------------------------------------------------------
# CPU time per request of the process under test, from /proc/PID/stat, over the whole
# loadgen call, divided by the requests the mock rail served in that time (exact).
# Steadier than req/s on a shared box: other work slows a run but costs it no CPU.
CLK_TCK=$(getconf CLK_TCK)
ticks() { # pids... -> utime + stime, summed
    local t=0 p v
    for p in "$@"; do
        v=$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12 + $13}')
        t=$((t + ${v:-0}))
    done
    echo "$t"
}
# CPU use of the machine and of this benchmark: "machine ours kthreads wall_ns", in
# clock ticks. machine: user + nice + system of all CPUs (/proc/stat; interrupt time
# left out, it is mostly our own loopback traffic). ours: $$ and its live descendants
# (utime + stime) plus what its reaped descendants used (cutime + cstime of $$, which
# covers every loadgen run). kthreads: kernel threads (writeback for our fsyncs among
# them). machine - ours - kthreads is what other processes used, short-lived ones
# included (a compiler that starts and ends between two readings still shows).
busy_snapshot() {
    { head -1 /proc/stat; cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk -v me=$$ -v ns="$(date +%s%N)" '
        NR == 1 { m = $2 + $3 + $4; next }
        { pid = $1; rest = $0; sub(/^.*\) /, "", rest); split(rest, f, " ")
          ppid[pid] = f[2]; t[pid] = f[12] + f[13]; if (pid == me) ct = f[14] + f[15] }
        END { for (p in t) { if (p == 2 || ppid[p] == 2) { k += t[p]; continue }
                  q = p; for (d = 0; d < 64 && q > 1; d++) { if (q == me) { o += t[p]; break }; q = ppid[q] } }
              printf "%d %d %d %s\n", m, o + ct, k, ns }'
}
# Share of all CPUs (percent) that other processes used between two busy_snapshot lines.
others_pct() {
    awk -v hz="$CLK_TCK" -v n="$(nproc)" -v a="$1" -v b="$2" 'BEGIN {
        split(a, x, " "); split(b, y, " "); secs = (y[4] - x[4]) / 1e9
        used = (y[1] - x[1]) - (y[2] - x[2]) - (y[3] - x[3])
        v = secs > 0 ? used * 100 / (hz * n * secs) : 0; printf "%.0f", (v < 0 ? 0 : v) }'
}
mock_requests() {
    local n
    exec 5<>"/dev/tcp/127.0.0.1/$MOCK_PORT" || { echo 0; return; }
    printf 'GET /__mock/stats HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n' >&5
    n=$(sed -n 's/.*"requests":\([0-9]*\).*/\1/p' <&5)
    exec 5<&-
    echo "${n:-0}"
}
nginx_workers() { cat "/proc/$1/task/$1/children" 2>/dev/null; }
declare -A PROCS
PROCS[direct]=$MOCK_PID
PROCS[payguard]=$PG_PID
PROCS[nginx1]=$(nginx_workers "$NGINX_w1_PID")
[ -n "${NGINX_auto_PID:-}" ] && PROCS[nginx_auto]=$(nginx_workers "$NGINX_auto_PID")
per_req() { awk -v d="$1" -v n="$2" -v hz="$CLK_TCK" 'BEGIN { if (n > 0) printf "%.1f", d * 1e6 / hz / n; else print "" }'; }

# payguard's threads: "tid name cpu_ticks run_ns runq_ns" lines (utime + stime; time
# on a CPU and time runnable but waiting for one, from schedstat). The ledger's threads
# name themselves pg-writer and pg-prepare.
pg_tasks() {
    local d
    for d in /proc/"$PG_PID"/task/*; do
        echo "${d##*/} $(tr -d ' ' <"$d/comm" 2>/dev/null) $(sed 's/^.*) //' "$d/stat" 2>/dev/null | awk '{print $12 + $13}') $(cut -d' ' -f1,2 "$d/schedstat" 2>/dev/null || echo 0 0)"
    done
}
# Ledger, disk and thread readings around a payguard payments run.
# pg_snap -> "txnid audit_entries ledger_bytes device_bytes_written wall_ns", and
# $TMP/tasks.$1. Bytes written are the device's (sectors of 512 bytes): what reached the
# disk, from every writer on it. (/proc/PID/io write_bytes is no substitute: it counts
# whole page-cache folios as they are dirtied, several times what is written.)
pg_snap() {
    local li
    pg_tasks >"$TMP/tasks.$1"
    li=$("$LEDGER_INFO" "$TMP/data" 2>/dev/null) || li=
    echo "$(jnum "$li" txnid) $(jnum "$li" audit) $(awk -v p="$(jnum "$li" pages_used)" -v s="$(jnum "$li" page_size)" 'BEGIN { printf "%.0f", p * s }') $( [ -n "$DISK_STAT" ] && awk '{ printf "%.0f", $7 * 512 }' "$DISK_STAT" || echo 0) $(date +%s%N)"
}
# pg_ledger_figures N -> sets PGX_* from the snapshots "a" and "b" (N payments served):
# commits/s, audited items per commit, disk writes per payment and per commit, CPU per
# payment of the loop thread, the writer and the preparer, and the
# writer's share of the run on a CPU, waiting for one, and off CPU (in fdatasync and
# pwrite waits, or idle between batches).
pg_ledger_figures() {
    local n=$1 a b
    read -ra a <<<"$PGS_A"; read -ra b <<<"$PGS_B"
    PGX=$(awk -v n="$n" -v main="$PG_PID" -v hz="$CLK_TCK" \
              -v commits=$((b[0] - a[0])) -v items=$((b[1] - a[1])) -v lbytes="${b[2]}" \
              -v wb=$((b[3] - a[3])) -v wall=$((b[4] - a[4])) '
        FNR == NR { c[$1] = $3; r[$1] = $4; q[$1] = $5; next }
        { d = $3 - c[$1]; if ($1 == main) { lc = d; lr = $4 - r[$1]; lq = $5 - q[$1] }
          else if ($2 == "pg-writer") { wd = d; wr = $4 - r[$1]; wq = $5 - q[$1] }
          else if ($2 == "pg-prepare") pd = d }
        END {
          if (n <= 0 || wall <= 0) exit
          printf "%.0f %.1f %.1f %.0f %.1f %.1f %.0f %.0f %.0f %.0f %.0f %.1f %.1f\n",
            commits * 1e9 / wall, (commits ? items / commits : 0), wb / n / 1024,
            (commits ? wb / commits / 1024 : 0), lc * 1e6 / hz / n, wd * 1e6 / hz / n,
            wr * 100 / wall, wq * 100 / wall, 100 - (wr + wq) * 100 / wall,
            lr * 100 / wall, lq * 100 / wall, lbytes / 1048576, pd * 1e6 / hz / n }' "$TMP/tasks.a" "$TMP/tasks.b")
    read -r PGX_COMMITS PGX_BATCH PGX_KB_PAY PGX_KB_COMMIT PGX_LOOP_CPU PGX_WRITER_CPU \
            PGX_W_ON PGX_W_RUNQ PGX_W_OFF PGX_L_ON PGX_L_RUNQ PGX_LEDGER_MB PGX_PREP_CPU <<<"$PGX"
}

# measure TARGET CONNS WARM MEASURE -> sets R (JSON), SCPU, RCPU (µs per request), NB
# (percent of the machine's CPU other processes used meanwhile);
# for payguard under PAY_REQ also the PGX_* ledger figures.
measure() {
    local t=$1 n0 n1 s0 s1 m0 m1 pay=
    [ "$t" = payguard ] && [ "${REQ[0]}" = -m ] && pay=1
    [ -z "$pay" ] || PGS_A=$(pg_snap a)
    local b0 b1
    b0=$(busy_snapshot)
    # shellcheck disable=SC2086
    { n0=$(mock_requests); s0=$(ticks ${PROCS[$t]}); m0=$(ticks "$MOCK_PID"); }
    R=$(loadgen "$t" "$2" "$3" "$4")
    # shellcheck disable=SC2086
    { n1=$(mock_requests); s1=$(ticks ${PROCS[$t]}); m1=$(ticks "$MOCK_PID"); }
    b1=$(busy_snapshot)
    NB=$(others_pct "$b0" "$b1")
    [ -z "$pay" ] || PGS_B=$(pg_snap b)
    n1=$((n1 - n0)) # /__mock/stats itself is never counted
    SCPU=$(per_req $((s1 - s0)) "$n1")
    RCPU=$(per_req $((m1 - m0)) "$n1")
    [ -z "$pay" ] || pg_ledger_figures "$n1"
}

# --- throughput: c=32, targets in alternation A B C D A B C D ... ---------------------
declare -A RPS P50 P99 P90 P999 C1P50 C1P90 C1P99 C1P999 CPU RAILCPU LGCPU NBR
for t in "${TARGETS[@]}"; do
    RPS[$t]=""; P50[$t]=""; P90[$t]=""; P99[$t]=""; P999[$t]=""
    C1P50[$t]=""; C1P90[$t]=""; C1P99[$t]=""; C1P999[$t]=""
    CPU[$t]=""; RAILCPU[$t]=""; LGCPU[$t]=""; NBR[$t]=""
done
BUSY0=$(busy_snapshot)
for round in $(seq "$ROUNDS"); do
    for t in "${TARGETS[@]}"; do
        measure "$t" "$CONNS" "$WARM" "$MEASURE"
        csv_row "c$CONNS" "$round" "$t" "$R" "$SCPU" "$RCPU"
        RPS[$t]+=" $(jnum "$R" rps)"; P50[$t]+=" $(jnum "$R" p50_us)"; P90[$t]+=" $(jnum "$R" p90_us)"
        P99[$t]+=" $(jnum "$R" p99_us)"; P999[$t]+=" $(jnum "$R" p999_us)"
        CPU[$t]+=" $SCPU"; RAILCPU[$t]+=" $RCPU"; LGCPU[$t]+=" $(jnum "$R" loadgen_cpu_pct)"; NBR[$t]+=" $NB"
        say "c=$CONNS round $round/$ROUNDS $t: $(jnum "$R" rps) req/s, p50 $(jnum "$R" p50_us) us, p99 $(jnum "$R" p99_us) us, server CPU $SCPU us/req, loadgen CPU $(jnum "$R" loadgen_cpu_pct)%, others $NB%"
    done
done

# --- pinned: each proxy alone on CPU 1, loadgen and the mock rail on CPU 0 -------------
# Unpinned, three busy processes on $(nproc) CPUs meet the scheduler's placement and
# wake-up costs, which move from run to run; pinned, the proxy's own core saturates and
# req/s measures its capacity.
declare -A PRPS PP50 PP99 PCPU
PIN_TARGETS=()
if [ "$PIN_ROUNDS" -gt 0 ] && [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null 2>&1; then
    PIN_TARGETS=(nginx1 payguard)
    ALL_CPUS=0-$(( $(nproc) - 1 ))
    pin() { local c=$1 p; shift; for p in "$@"; do taskset -a -pc "$c" "$p" >/dev/null 2>&1 || true; done; }
    # shellcheck disable=SC2086
    { pin 0 "$MOCK_PID"; pin 1 "$PG_PID" ${PROCS[nginx1]}; }
    LG_WRAP=(taskset -c 0)
    for t in "${PIN_TARGETS[@]}"; do PRPS[$t]=""; PP50[$t]=""; PP99[$t]=""; PCPU[$t]=""; done
    for round in $(seq "$PIN_ROUNDS"); do
        for t in "${PIN_TARGETS[@]}"; do
            measure "$t" "$CONNS" "$PIN_WARM" "$PIN_MEASURE"
            csv_row "c${CONNS}_pinned" "$round" "$t" "$R" "$SCPU" "$RCPU"
            PRPS[$t]+=" $(jnum "$R" rps)"; PP50[$t]+=" $(jnum "$R" p50_us)"; PP99[$t]+=" $(jnum "$R" p99_us)"
            PCPU[$t]+=" $SCPU"
            say "pinned round $round/$PIN_ROUNDS $t: $(jnum "$R" rps) req/s, p50 $(jnum "$R" p50_us) us, p99 $(jnum "$R" p99_us) us, server CPU $SCPU us/req"
        done
    done
    LG_WRAP=()
    # shellcheck disable=SC2086
    pin "$ALL_CPUS" "$MOCK_PID" "$PG_PID" ${PROCS[nginx1]}
fi

# --- latency: one connection, the cost a single agent sees -----------------------------
C1_TARGETS=(direct nginx1 payguard)
for round in $(seq "$C1_ROUNDS"); do
    for t in "${C1_TARGETS[@]}"; do
        measure "$t" 1 "$C1_WARM" "$C1_MEASURE"
        csv_row c1 "$round" "$t" "$R" "$SCPU" "$RCPU"
        C1P50[$t]+=" $(jnum "$R" p50_us)"; C1P90[$t]+=" $(jnum "$R" p90_us)"
        C1P99[$t]+=" $(jnum "$R" p99_us)"; C1P999[$t]+=" $(jnum "$R" p999_us)"
        say "c=1 round $round/$C1_ROUNDS $t: p50 $(jnum "$R" p50_us) us, p99 $(jnum "$R" p99_us) us"
    done
done

# --- scenarios over direct, nginx (1 worker) and payguard, in alternation ----------------
# scen_rounds read|pay scenario connections rounds warm-up measure: figures in Y_*[sc,t]
# (and X_*[sc], payguard's ledger, for payments). Payments scenarios are c<N>, reads r<N>.
declare -A Y_RPS Y_P50 Y_P90 Y_P99 Y_P999 Y_CPU Y_LG Y_BAD Y_NB
declare -A X_COMMITS X_BATCH X_KB_PAY X_KB_COMMIT X_LOOP X_WRITER X_PREP X_WON X_WRQ X_WOFF X_LON X_LRQ X_MB
PAY_SCENS=()
READ_SCENS=()
scen_rounds() {
    local kind=$1 sc=$2 c=$3 nr=$4 w=$5 d=$6 round t k extra csvname what
    [ "$nr" -gt 0 ] || return 0
    if [ "$kind" = pay ]; then
        PAY_SCENS+=("$sc"); REQ=("${PAY_REQ[@]}"); csvname=pay_$sc; what=payments
    else
        READ_SCENS+=("$sc"); REQ=("${READ_REQ[@]}"); csvname=c${sc#r}; what=reads
    fi
    for round in $(seq "$nr"); do
        for t in "${PAY_TARGETS[@]}"; do
            k=$sc,$t
            measure "$t" "$c" "$w" "$d"
            extra=
            if [ "$t" = payguard ] && [ "$kind" = pay ]; then
                X_COMMITS[$sc]+=" $PGX_COMMITS"; X_BATCH[$sc]+=" $PGX_BATCH"; X_KB_PAY[$sc]+=" $PGX_KB_PAY"
                X_KB_COMMIT[$sc]+=" $PGX_KB_COMMIT"; X_LOOP[$sc]+=" $PGX_LOOP_CPU"; X_WRITER[$sc]+=" $PGX_WRITER_CPU"; X_PREP[$sc]+=" $PGX_PREP_CPU"
                X_WON[$sc]+=" $PGX_W_ON"; X_WRQ[$sc]+=" $PGX_W_RUNQ"; X_WOFF[$sc]+=" $PGX_W_OFF"
                X_LON[$sc]+=" $PGX_L_ON"; X_LRQ[$sc]+=" $PGX_L_RUNQ"; X_MB[$sc]=$PGX_LEDGER_MB
                extra="commits_per_s=$PGX_COMMITS;items_per_commit=$PGX_BATCH;disk_kib_per_payment=$PGX_KB_PAY;disk_kib_per_commit=$PGX_KB_COMMIT;loop_cpu_us=$PGX_LOOP_CPU;writer_cpu_us=$PGX_WRITER_CPU;prepare_cpu_us=$PGX_PREP_CPU;writer_on_cpu_pct=$PGX_W_ON;writer_runq_pct=$PGX_W_RUNQ;writer_off_cpu_pct=$PGX_W_OFF;ledger_mib=$PGX_LEDGER_MB"
            fi
            csv_row "$csvname" "$round" "$t" "$R" "$SCPU" "$RCPU" "$extra"
            Y_RPS[$k]+=" $(jnum "$R" rps)"; Y_P50[$k]+=" $(jnum "$R" p50_us)"; Y_P90[$k]+=" $(jnum "$R" p90_us)"
            Y_P99[$k]+=" $(jnum "$R" p99_us)"; Y_P999[$k]+=" $(jnum "$R" p999_us)"
            Y_CPU[$k]+=" $SCPU"; Y_LG[$k]+=" $(jnum "$R" loadgen_cpu_pct)"; Y_NB[$k]+=" $NB"
            Y_BAD[$k]=$(( ${Y_BAD[$k]:-0} + $(jnum "$R" non2xx) + $(jnum "$R" errors) ))
            say "$what, $c connection$( [ "$c" = 1 ] || echo s), round $round/$nr $t: $(jnum "$R" rps)/s, p50 $(jnum "$R" p50_us) us, p99 $(jnum "$R" p99_us) us, server CPU $SCPU us/${what%s}${extra:+, $PGX_COMMITS commits/s, $PGX_BATCH items/commit, writer $PGX_WRITER_CPU us/payment on CPU $PGX_W_ON% waiting for one $PGX_W_RUNQ%}, others $NB%"
        done
    done
    REQ=("${READ_REQ[@]}")
}

# --- reads at $HI_CONNS connections: many agents at once -------------------------------
scen_rounds read r$HI_CONNS "$HI_CONNS" "$HI_ROUNDS" "${HI_WARM:-0}" "${HI_MEASURE:-0}"

# --- payments: POST /v1/payment_intents, a fresh Idempotency-Key on each -----------------
# Direct and nginx pass the payment to the rail; payguard decides it, reserves and audits
# it in the ledger (a durable group commit) before the rail call, and settles and stores
# the rail's answer (a second one) before the agent gets it. The ledger keeps growing
# from round to round, as it would in service: its size is reported.
LEDGER_START=$("$LEDGER_INFO" "$TMP/data") || die "ledger_info cannot read payguard's ledger in $TMP/data"
scen_rounds pay c$PAY_CONNS "$PAY_CONNS" "$PAY_ROUNDS" "$PAY_WARM" "$PAY_MEASURE"
scen_rounds pay c$CONNS "$CONNS" "$PAY32_ROUNDS" "${PAY32_WARM:-0}" "${PAY32_MEASURE:-0}"
scen_rounds pay c$HI_CONNS "$HI_CONNS" "$PAYHI_ROUNDS" "${PAYHI_WARM:-0}" "${PAYHI_MEASURE:-0}"
scen_rounds pay c1 1 "$PAYC1_ROUNDS" "$PAYC1_WARM" "$PAYC1_MEASURE"
LEDGER_END=$("$LEDGER_INFO" "$TMP/data") || die "ledger_info cannot read payguard's ledger in $TMP/data"
REQ=("${READ_REQ[@]}")
# Share of the machine's CPU time used by processes outside this benchmark.
OTHER_PCT=$(others_pct "$BUSY0" "$(busy_snapshot)")

alive "$PG_PID" || die "payguard died during the run: $(tail -5 "$TMP/payguard.err")"
PG_RSS_END=$(kb VmRSS "$PG_PID")
PG_RSS_END_FILE=$(kb RssFile "$PG_PID")
PG_HWM_END=$(kb VmHWM "$PG_PID")
ELAPSED=$(( $(date +%s) - START_TS ))

declare -A M_RPS M_P50 M_P90 M_P99 M_P999 M_C1P50 M_C1P90 M_C1P99 M_C1P999 M_CPU M_RAILCPU M_LGCPU
for t in "${TARGETS[@]}"; do
    # shellcheck disable=SC2086
    { M_RPS[$t]=$(median ${RPS[$t]}); M_P50[$t]=$(median ${P50[$t]}); M_P90[$t]=$(median ${P90[$t]})
      M_P99[$t]=$(median ${P99[$t]}); M_P999[$t]=$(median ${P999[$t]}); M_CPU[$t]=$(median ${CPU[$t]})
      M_RAILCPU[$t]=$(median ${RAILCPU[$t]}); M_LGCPU[$t]=$(median ${LGCPU[$t]}); }
    echo "$mode,c$CONNS,median,$t,$CONNS,,${M_RPS[$t]},${M_P50[$t]},${M_P90[$t]},${M_P99[$t]},${M_P999[$t]},,,,,${M_CPU[$t]},${M_RAILCPU[$t]},${M_LGCPU[$t]}," >>"$CSV"
done
declare -A M_PRPS M_PP50 M_PP99 M_PCPU
for t in "${PIN_TARGETS[@]+"${PIN_TARGETS[@]}"}"; do
    # shellcheck disable=SC2086
    { M_PRPS[$t]=$(median ${PRPS[$t]}); M_PP50[$t]=$(median ${PP50[$t]}); M_PP99[$t]=$(median ${PP99[$t]})
      M_PCPU[$t]=$(median ${PCPU[$t]}); }
    echo "$mode,c${CONNS}_pinned,median,$t,$CONNS,,${M_PRPS[$t]},${M_PP50[$t]},,${M_PP99[$t]},,,,,,${M_PCPU[$t]},,," >>"$CSV"
done
for t in "${C1_TARGETS[@]}"; do
    # shellcheck disable=SC2086
    { M_C1P50[$t]=$(median ${C1P50[$t]}); M_C1P90[$t]=$(median ${C1P90[$t]})
      M_C1P99[$t]=$(median ${C1P99[$t]}); M_C1P999[$t]=$(median ${C1P999[$t]}); }
    echo "$mode,c1,median,$t,1,,,${M_C1P50[$t]},${M_C1P90[$t]},${M_C1P99[$t]},${M_C1P999[$t]},,,,,,,," >>"$CSV"
done
declare -A MY_RPS MY_P50 MY_P90 MY_P99 MY_P999 MY_CPU MY_LG
declare -A MX_COMMITS MX_BATCH MX_KB_PAY MX_KB_COMMIT MX_LOOP MX_WRITER MX_PREP MX_WON MX_WRQ MX_WOFF MX_LON MX_LRQ
for sc in "${READ_SCENS[@]+"${READ_SCENS[@]}"}" "${PAY_SCENS[@]+"${PAY_SCENS[@]}"}"; do
    case "$sc" in r*) csvname=c${sc#r} ;; *) csvname=pay_$sc ;; esac
    for t in "${PAY_TARGETS[@]}"; do
        k=$sc,$t
        # shellcheck disable=SC2086
        { MY_RPS[$k]=$(median ${Y_RPS[$k]}); MY_P50[$k]=$(median ${Y_P50[$k]}); MY_P90[$k]=$(median ${Y_P90[$k]})
          MY_P99[$k]=$(median ${Y_P99[$k]}); MY_P999[$k]=$(median ${Y_P999[$k]}); MY_CPU[$k]=$(median ${Y_CPU[$k]})
          MY_LG[$k]=$(median ${Y_LG[$k]}); }
        echo "$mode,$csvname,median,$t,${sc#[cr]},,${MY_RPS[$k]},${MY_P50[$k]},${MY_P90[$k]},${MY_P99[$k]},${MY_P999[$k]},,,,,${MY_CPU[$k]},,${MY_LG[$k]}," >>"$CSV"
    done
    [ "$csvname" != "${csvname#pay_}" ] || continue
    # shellcheck disable=SC2086
    { MX_COMMITS[$sc]=$(median ${X_COMMITS[$sc]}); MX_BATCH[$sc]=$(median ${X_BATCH[$sc]})
      MX_KB_PAY[$sc]=$(median ${X_KB_PAY[$sc]}); MX_KB_COMMIT[$sc]=$(median ${X_KB_COMMIT[$sc]})
      MX_LOOP[$sc]=$(median ${X_LOOP[$sc]}); MX_WRITER[$sc]=$(median ${X_WRITER[$sc]}); MX_PREP[$sc]=$(median ${X_PREP[$sc]})
      MX_WON[$sc]=$(median ${X_WON[$sc]}); MX_WRQ[$sc]=$(median ${X_WRQ[$sc]}); MX_WOFF[$sc]=$(median ${X_WOFF[$sc]})
      MX_LON[$sc]=$(median ${X_LON[$sc]}); MX_LRQ[$sc]=$(median ${X_LRQ[$sc]}); }
done
{
    echo "$mode,policy_bench,,,,,,,,,,,,,,,,,classify_ns=$(jnum "$POLICY" classify_ns);decide_ns=$(jnum "$POLICY" decide_ns);outcome_ns=$(jnum "$POLICY" outcome_ns)"
    echo "$mode,commit_ceiling,,batch1,,$(jnum "$CEIL1" commits),$(jnum "$CEIL1" commits_per_s),$(jnum "$CEIL1" commit_p50_us),,$(jnum "$CEIL1" commit_p99_us),,$(jnum "$CEIL1" commit_max_us),,,,,,,records_per_s=$(jnum "$CEIL1" records_per_s)"
    echo "$mode,commit_ceiling,,batch64,,$(jnum "$CEIL64" commits),$(jnum "$CEIL64" commits_per_s),$(jnum "$CEIL64" commit_p50_us),,$(jnum "$CEIL64" commit_p99_us),,$(jnum "$CEIL64" commit_max_us),,,,,,,records_per_s=$(jnum "$CEIL64" records_per_s)"
    for j in "${ALONE[@]}"; do
        echo "$mode,ledger_alone,,batch$(jnum "$j" batch),,$(jnum "$j" commits),$(jnum "$j" payments_per_s),,,,,,,,,,,,pages_per_payment=$(jnum "$j" pages_per_payment);pages_per_commit=$(jnum "$j" pages_per_commit)"
    done
} >>"$CSV"
{
    echo "$mode,memory,,payguard,0,,,,,,,,,,,,,,rss_start_kb=$PG_RSS_START"
    echo "$mode,memory,,payguard,$IDLE_CONNS,,,,,,,,,,,,,,rss_bare_kb=$PG_RSS_BARE;rss_held_kb=$PG_RSS_IDLE"
    echo "$mode,memory,,payguard,$IDLE_MAX,,,,,,,,,,,,,,rss_held_kb=$PG_RSS_MAX;hwm_kb=$PG_HWM_IDLE;kib_per_conn_beyond_$IDLE_CONNS=$(awk -v a="$PG_RSS_MAX" -v b="$PG_RSS_IDLE" -v n=$((IDLE_MAX - IDLE_CONNS)) 'BEGIN { printf "%.2f", (a - b) / n }');rss_after_runs_kb=$PG_RSS_END;hwm_after_runs_kb=$PG_HWM_END"
    echo "$mode,memory,,nginx1_worker,0,,,,,,,,,,,,,,rss_start_kb=$NGX_RSS_START"
    echo "$mode,memory,,nginx1_worker,$IDLE_CONNS,,,,,,,,,,,,,,rss_bare_kb=$NGX_RSS_BARE;rss_held_kb=$NGX_RSS_IDLE"
    echo "$mode,memory,,nginx1_worker,$IDLE_MAX,,,,,,,,,,,,,,rss_held_kb=$NGX_RSS_MAX;hwm_kb=$NGX_HWM_IDLE;kib_per_conn_beyond_$IDLE_CONNS=$(awk -v a="$NGX_RSS_MAX" -v b="$NGX_RSS_IDLE" -v n=$((IDLE_MAX - IDLE_CONNS)) 'BEGIN { printf "%.2f", (a - b) / n }')"
} >>"$CSV"

# --- report ---------------------------------------------------------------------------
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
diffus() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%+.0f", a - b }'; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f MiB", k / 1024 }'; }
# Median over rounds of (a / b) taken round by round: adjacent runs see the same
# neighbours, so this resists drift better than a ratio of medians.
round_ratio() {
    local -a a b r=()
    read -ra a <<<"$1"; read -ra b <<<"$2"
    for i in "${!a[@]}"; do r+=("$(ratio "${a[$i]}" "${b[$i]:-0}")"); done
    median "${r[@]}"
}
spread() { printf '%s\n' $1 | sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%.0f–%.0f", lo, hi }'; }
# Each round's figure, in order: "7971, 2658, 2673"; pcts: "1%, 34%, 2%".
rounds() { printf '%s\n' $1 | awk '{ printf "%s%.0f", (NR > 1 ? ", " : ""), $1 }'; }
pcts() { printf '%s\n' $1 | awk '$1 != "" { printf "%s%s%%", (n++ ? ", " : ""), $1 }'; }
perconn() { awk -v a="$1" -v b="$2" -v n="$3" 'BEGIN { printf "%.1f KiB", (a - b) / n }'; }

TABLE=$(
    echo "| target | req/s | req/s, all rounds | p50 µs | p90 µs | p99 µs | p99.9 µs | server CPU µs/req | loadgen CPU | other processes' CPU, by round |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    for t in "${TARGETS[@]}"; do
        printf '| %s | %.0f | %s | %s | %s | %s | %s | %s | %s%% | %s |\n' "${LABEL[$t]}" "${M_RPS[$t]}" \
            "$(spread "${RPS[$t]}")" "${M_P50[$t]}" "${M_P90[$t]}" "${M_P99[$t]}" "${M_P999[$t]}" \
            "${M_CPU[$t]}" "${M_LGCPU[$t]}" "$(pcts "${NBR[$t]}")"
    done
)
ratio_row() { # label target-b
    local b=$2
    echo "| $1 | $(ratio "${M_RPS[payguard]}" "${M_RPS[$b]}") | $(round_ratio "${RPS[payguard]}" "${RPS[$b]}") | $(ratio "${M_P50[payguard]}" "${M_P50[$b]}") | $(ratio "${M_P99[payguard]}" "${M_P99[$b]}") | $( [ "$b" = direct ] && echo — || round_ratio "${CPU[payguard]}" "${CPU[$b]}") |"
}
RATIOS=$(
    echo "| ratio | req/s (of medians) | req/s (median of per-round) | p50 | p99 | CPU per request (median of per-round) |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: |"
    ratio_row "payguard / nginx (1 worker)" nginx1
    [ -z "${M_RPS[nginx_auto]:-}" ] || ratio_row "payguard / nginx (auto)" nginx_auto
    ratio_row "payguard / direct" direct
)
PINTABLE=$(
    if [ "${#PIN_TARGETS[@]}" -gt 0 ]; then
        echo "| target | req/s | req/s, all rounds | p50 µs | p99 µs | server CPU µs/req |"
        echo "| --- | ---: | ---: | ---: | ---: | ---: |"
        for t in "${PIN_TARGETS[@]}"; do
            printf '| %s | %.0f | %s | %s | %s | %s |\n' "${LABEL[$t]}" "${M_PRPS[$t]}" "$(spread "${PRPS[$t]}")" \
                "${M_PP50[$t]}" "${M_PP99[$t]}" "${M_PCPU[$t]}"
        done
        echo
        echo "payguard / nginx (1 worker), pinned: req/s $(ratio "${M_PRPS[payguard]}" "${M_PRPS[nginx1]}") (median of per-round $(round_ratio "${PRPS[payguard]}" "${PRPS[nginx1]}")), CPU per request $(ratio "${M_PCPU[payguard]}" "${M_PCPU[nginx1]}")."
    else
        if [ "$PIN_ROUNDS" = 0 ]; then echo "(not run in a quick run)"; else echo "(skipped: needs 2 CPUs and taskset)"; fi
    fi
)
C1TABLE=$(
    echo "| target | p50 µs | p90 µs | p99 µs | p99.9 µs | added p50 vs direct |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: |"
    for t in "${C1_TARGETS[@]}"; do
        printf '| %s | %s | %s | %s | %s | %s |\n' "${LABEL[$t]}" "${M_C1P50[$t]}" "${M_C1P90[$t]}" \
            "${M_C1P99[$t]}" "${M_C1P999[$t]}" \
            "$( [ "$t" = direct ] && echo — || echo "$(diffus "${M_C1P50[$t]}" "${M_C1P50[direct]}") µs")"
    done
    echo
    echo "| ratio | p50 | p99 | added p50 (payguard's over nginx's) |"
    echo "| --- | ---: | ---: | ---: |"
    echo "| payguard / nginx (1 worker) | $(ratio "${M_C1P50[payguard]}" "${M_C1P50[nginx1]}") | $(ratio "${M_C1P99[payguard]}" "${M_C1P99[nginx1]}") | $(ratio "$(diffus "${M_C1P50[payguard]}" "${M_C1P50[direct]}")" "$(diffus "${M_C1P50[nginx1]}" "${M_C1P50[direct]}")") |"
    echo "| payguard / direct | $(ratio "${M_C1P50[payguard]}" "${M_C1P50[direct]}") | $(ratio "${M_C1P99[payguard]}" "${M_C1P99[direct]}") | — |"
)
# Payments tables. PAY_MAIN is the scenario the targets are judged on.
PAY_MAIN=c$PAY_CONNS
diffus2() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "") print "n/a"; else printf "%+.0f µs", a - b }'; }
met() { awk -v a="$1" -v b="$2" -v op="$3" 'BEGIN { if (a == "n/a" || a == "") print "n/a"; else if (op == "ge" ? a + 0 >= b + 0 : a + 0 <= b + 0) print "**met**"; else print "**missed**" }'; }
paytable() { # scenario [unit]: "payment" (default) or "req"
    local sc=$1 u=${2:-payment} t k rl
    rl=$( [ "$u" = req ] && echo req/s || echo "${u}s/s")
    echo "| target | $rl | $rl, by round | p50 µs | p90 µs | p99 µs | p99.9 µs | server CPU µs/${u} | loadgen CPU | non-2xx or errors | other processes' CPU, by round |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    for t in "${PAY_TARGETS[@]}"; do
        k=$sc,$t
        printf '| %s | %.0f | %s | %s | %s | %s | %s | %s | %s%% | %s | %s |\n' "${LABEL[$t]}" "${MY_RPS[$k]}" \
            "$(rounds "${Y_RPS[$k]}")" "${MY_P50[$k]}" "${MY_P90[$k]}" "${MY_P99[$k]}" "${MY_P999[$k]}" \
            "${MY_CPU[$k]}" "${MY_LG[$k]}" "${Y_BAD[$k]}" "$(pcts "${Y_NB[$k]}")"
    done
    echo
    echo "| ratio | $rl (of medians) | $rl (median of per-round) | p50 | p99 | CPU per ${u} (median of per-round) |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: |"
    for t in nginx1 direct; do
        echo "| payguard / ${LABEL[$t]} | $(ratio "${MY_RPS[$sc,payguard]}" "${MY_RPS[$sc,$t]}") | $(round_ratio "${Y_RPS[$sc,payguard]}" "${Y_RPS[$sc,$t]}") | $(ratio "${MY_P50[$sc,payguard]}" "${MY_P50[$sc,$t]}") | $(ratio "${MY_P99[$sc,payguard]}" "${MY_P99[$sc,$t]}") | $( [ "$t" = direct ] && echo — || round_ratio "${Y_CPU[$sc,payguard]}" "${Y_CPU[$sc,$t]}") |"
    done
}
PAY_SECTIONS=
CEIL_RPS=$(jnum "$CEIL1" commits_per_s)
if [ "${#PAY_SCENS[@]}" -gt 0 ] && [ -n "${MY_RPS[$PAY_MAIN,payguard]:-}" ]; then
    PG_PAY=${MY_RPS[$PAY_MAIN,payguard]}
    R_CEIL=$(ratio "$PG_PAY" "$CEIL_RPS")
    R_NGX=$(ratio "$PG_PAY" "${MY_RPS[$PAY_MAIN,nginx1]}")
    R_NGX_RR=$(round_ratio "${Y_RPS[$PAY_MAIN,payguard]}" "${Y_RPS[$PAY_MAIN,nginx1]}")
    LEDGERTABLE=$(
        echo "| connections | payments/s | commits/s | ledger items per commit | device writes per payment | per commit | CPU µs/payment: loop / writer / preparer | writer: on a CPU / waiting for one / off CPU | loop: on a CPU / waiting for one | ledger after |"
        echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
        for sc in "${PAY_SCENS[@]}"; do
            printf '| %s | %.0f | %s | %s | %s KiB | %s KiB | %s / %s / %s | %s%% / %s%% / %s%% | %s%% / %s%% | %s MiB |\n' "${sc#c}" \
                "${MY_RPS[$sc,payguard]}" "${MX_COMMITS[$sc]}" "${MX_BATCH[$sc]}" "${MX_KB_PAY[$sc]}" \
                "${MX_KB_COMMIT[$sc]}" "${MX_LOOP[$sc]}" "${MX_WRITER[$sc]}" "${MX_PREP[$sc]}" "${MX_WON[$sc]}" "${MX_WRQ[$sc]}" \
                "${MX_WOFF[$sc]}" "${MX_LON[$sc]}" "${MX_LRQ[$sc]}" "${X_MB[$sc]}"
        done
    )
    PAY_SECTIONS=$(
        echo "## Payments: POST $PAY_PATH, $PAY_CONNS keep-alive connections"
        echo
        paytable "$PAY_MAIN"
        echo
        echo "Each request: \`$PAY_BODY\` (form), a fresh \`Idempotency-Key\` (\`loadgen --unique-idempotency\`)."
        echo "Direct and nginx carry the rail key; payguard gets the agent token, runs every rule of the"
        echo "bench policy, records the payment (BEGIN: idempotency key, fresh-spend windows, velocity,"
        echo "reservation, audit entry) in one durable group commit before the rail call, then settles and"
        echo "stores the rail's 1 KB answer (SETTLE, audited) in a second one before answering."
        echo "$PAY_ROUNDS round(s) of ${PAY_WARM:-0} s + ${PAY_MEASURE:-0} s per target, targets in alternation."
        if [ -n "${MY_RPS[c$CONNS,payguard]:-}" ]; then
            echo
            echo "## Payments at $CONNS connections, beside the reads"
            echo
            paytable "c$CONNS"
            echo
            echo "payguard moves $(ratio "${MY_RPS[c$CONNS,payguard]}" "${M_RPS[payguard]}")× as many payments as reads at $CONNS connections ($(printf '%.0f' "${MY_RPS[c$CONNS,payguard]}")/s against $(printf '%.0f' "${M_RPS[payguard]}")/s); nginx $(ratio "${MY_RPS[c$CONNS,nginx1]}" "${M_RPS[nginx1]}")×. $PAY32_ROUNDS round(s) of ${PAY32_WARM:-0} s + ${PAY32_MEASURE:-0} s."
        fi
        if [ -n "${MY_RPS[c$HI_CONNS,payguard]:-}" ]; then
            echo
            echo "## Payments at $HI_CONNS connections"
            echo
            paytable "c$HI_CONNS"
            echo
            echo "payguard at $HI_CONNS connections against $PAY_CONNS: $(ratio "${MY_RPS[c$HI_CONNS,payguard]}" "${MY_RPS[$PAY_MAIN,payguard]}")× the payments/s, $(ratio "${MY_P99[c$HI_CONNS,payguard]}" "${MY_P99[$PAY_MAIN,payguard]}")× the p99 (nginx: $(ratio "${MY_RPS[c$HI_CONNS,nginx1]}" "${MY_RPS[$PAY_MAIN,nginx1]}")×, $(ratio "${MY_P99[c$HI_CONNS,nginx1]}" "${MY_P99[$PAY_MAIN,nginx1]}")×). $PAYHI_ROUNDS round(s) of ${PAYHI_WARM:-0} s + ${PAYHI_MEASURE:-0} s."
        fi
        echo
        echo "## payguard's ledger under the payments load"
        echo
        echo "$LEDGERTABLE"
        echo
        echo "Medians of payguard's rounds, each over its whole run (warm-up included). Commits: growth of"
        echo "LMDB's last transaction id (\`bench/ledger_info\`, read only, from another process); ledger"
        echo "items: growth of the audit database, one entry per BEGIN and one per SETTLE, so items per"
        echo "commit is the writer's mean batch. Disk writes: sectors written to the device under the"
        echo "temp dir (/sys/block/DEV/stat), all writers included, per payment and per commit. CPU: utime"
        echo "+ stime of the main (loop) thread, the ledger writer (pg-writer) and the preparer that reads"
        echo "the rail's answers (pg-prepare), divided by the payments the rail counted. On / waiting"
        echo "/ off CPU: shares of the run's wall time from /proc/PID/task/TID/schedstat; the writer is off"
        echo "CPU while fdatasync and pwrite wait for the device, or when it has nothing queued."
        echo "Ledger at the start of the payments runs: $(jnum "$LEDGER_START" audit) audit entries; at the end: $(jnum "$LEDGER_END" audit) audit entries, $(jnum "$LEDGER_END" idem) idempotency keys, $(awk -v p="$(jnum "$LEDGER_END" pages_used)" -v s="$(jnum "$LEDGER_END" page_size)" 'BEGIN { printf "%.0f", p * s / 1048576 }') MiB in use, last transaction $(jnum "$LEDGER_END" txnid)."
        if [ -n "${MY_P50[c1,payguard]:-}" ]; then
            echo
            echo "## Payments, one connection: what one agent waits"
            echo
            echo "| target | p50 µs | p99 µs | added p50 vs direct | added p99 vs direct |"
            echo "| --- | ---: | ---: | ---: | ---: |"
            for t in "${PAY_TARGETS[@]}"; do
                printf '| %s | %s | %s | %s | %s |\n' "${LABEL[$t]}" "${MY_P50[c1,$t]}" "${MY_P99[c1,$t]}" \
                    "$( [ "$t" = direct ] && echo — || diffus2 "${MY_P50[c1,$t]}" "${MY_P50[c1,direct]}")" \
                    "$( [ "$t" = direct ] && echo — || diffus2 "${MY_P99[c1,$t]}" "${MY_P99[c1,direct]}")"
            done
            echo
            echo "| ratio | p50 | p99 |"
            echo "| --- | ---: | ---: |"
            for t in nginx1 direct; do
                echo "| payguard / ${LABEL[$t]} | $(ratio "${MY_P50[c1,payguard]}" "${MY_P50[c1,$t]}") | $(ratio "${MY_P99[c1,payguard]}" "${MY_P99[c1,$t]}") |"
            done
            echo
            echo "payguard against nginx at one connection: $(diffus2 "${MY_P50[c1,payguard]}" "${MY_P50[c1,nginx1]}") at p50, $(diffus2 "${MY_P99[c1,payguard]}" "${MY_P99[c1,nginx1]}") at p99 (two durable commits per payment: the ceiling's single-put commit takes $(jnum "$CEIL1" commit_p50_us) µs at p50 here). $PAYC1_ROUNDS round(s) of ${PAYC1_WARM:-0} s + ${PAYC1_MEASURE:-0} s."
        fi
    )
fi
HI_SECTION=
if [ -n "${MY_RPS[r$HI_CONNS,payguard]:-}" ]; then
    HI_SECTION=$(
        echo "## Reads: GET $PATH_REQ, $HI_CONNS keep-alive connections"
        echo
        paytable "r$HI_CONNS" req
        echo
        echo "$HI_ROUNDS round(s) of ${HI_WARM:-0} s + ${HI_MEASURE:-0} s per target, targets in alternation, after the rounds at one"
        echo "connection. Both proxies keep up to 256 idle rail connections (nginx \`keepalive 256\`, payguard"
        echo "\`pool_size: 256\`), so neither opens a rail connection per request here."
    )
fi
CEILTABLE=$(
    echo "| puts per commit | commits/s | records/s | commit p50 µs | p99 µs | max µs |"
    echo "| ---: | ---: | ---: | ---: | ---: | ---: |"
    for j in "$CEIL1" "$CEIL64"; do
        echo "| $(jnum "$j" batch) | $(jnum "$j" commits_per_s) | $(jnum "$j" records_per_s) | $(jnum "$j" commit_p50_us) | $(jnum "$j" commit_p99_us) | $(jnum "$j" commit_max_us) |"
    done
)
ALONETABLE=$(
    echo "| payments per commit | payments/s | ÷ one-commit ceiling | commits/s | pages per payment | pages per commit |"
    echo "| ---: | ---: | ---: | ---: | ---: | ---: |"
    for j in "${ALONE[@]}"; do
        echo "| $(jnum "$j" batch) | $(jnum "$j" payments_per_s) | $(ratio "$(jnum "$j" payments_per_s)" "$(jnum "$CEIL1" commits_per_s)")× | $(jnum "$j" commits_per_s) | $(jnum "$j" pages_per_payment) | $(jnum "$j" pages_per_commit) |"
    done
)
CLASSIFY_NS=$(jnum "$POLICY" classify_ns); DECIDE_NS=$(jnum "$POLICY" decide_ns); OUTCOME_NS=$(jnum "$POLICY" outcome_ns)
PG_KIB_BEYOND=$(awk -v a="$PG_RSS_MAX" -v b="$PG_RSS_IDLE" -v n=$((IDLE_MAX - IDLE_CONNS)) 'BEGIN { printf "%.1f", (a - b) / n }')
NGX_KIB_BEYOND=$(awk -v a="$NGX_RSS_MAX" -v b="$NGX_RSS_IDLE" -v n=$((IDLE_MAX - IDLE_CONNS)) 'BEGIN { printf "%.1f", (a - b) / n }')
PG_MIB_IDLE=$(awk -v k="$PG_RSS_IDLE" 'BEGIN { printf "%.1f", k / 1024 }')
R_READ=$(ratio "${M_RPS[payguard]}" "${M_RPS[nginx1]}")
ADD_PG=$(diffus "${M_C1P50[payguard]}" "${M_C1P50[direct]}")
ADD_NGX=$(diffus "${M_C1P50[nginx1]}" "${M_C1P50[direct]}")
GOALS=$(
    echo "| goal | figure | target | |"
    echo "| --- | ---: | ---: | --- |"
    echo "| payguard reads/s ÷ nginx (1 worker), $CONNS connections | ${R_READ}× (per-round median $(round_ratio "${RPS[payguard]}" "${RPS[nginx1]}")×) | ≥ 1.0× | $(met "$R_READ" 1 ge) |"
    echo "| added p50 of a read at one connection (vs direct): payguard, nginx | $ADD_PG µs, $ADD_NGX µs | payguard ≤ nginx | $(met "$ADD_PG" "$ADD_NGX" le) |"
    if [ -n "${PG_PAY:-}" ]; then
        echo "| payguard payments/s ÷ one-commit-per-request ceiling | ${R_CEIL}× ($(printf '%.0f' "$PG_PAY") / $CEIL_RPS) | ≥ 5× | $(met "$R_CEIL" 5 ge) |"
        echo "| payguard payments/s ÷ nginx pass-through (1 worker), $PAY_CONNS connections | ${R_NGX}× (per-round median ${R_NGX_RR}×) | ≥ 0.5× | $(met "$R_NGX" 0.5 ge) |"
    fi
    echo "| Stripe body classification | $CLASSIFY_NS ns | ≤ 2,000 ns | $(met "$CLASSIFY_NS" 2000 le) |"
    echo "| policy decision (stateless + stateful rules) | $DECIDE_NS ns | ≤ 1,000 ns | $(met "$DECIDE_NS" 1000 le) |"
    echo "| payguard RSS, $IDLE_CONNS idle keep-alive connections | $PG_MIB_IDLE MiB | ≤ 30 MiB | $(met "$PG_MIB_IDLE" 30 le) |"
    echo "| payguard RSS per idle connection beyond $IDLE_CONNS (to $IDLE_MAX) | $PG_KIB_BEYOND KiB | ≤ 10 KiB | $(met "$PG_KIB_BEYOND" 10 le) |"
)
PG_PEAK=$(max_kb "$PG_RSS_BARE" "$PG_RSS_IDLE" "$PG_RSS_MAX" "$PG_HWM_IDLE")
NGX_PEAK=$(max_kb "$NGX_RSS_BARE" "$NGX_RSS_IDLE" "$NGX_RSS_MAX" "$NGX_HWM_IDLE")
MEMTABLE=$(
    echo "| process | after start | $IDLE_CONNS bare connections | $IDLE_CONNS idle keep-alive | $IDLE_MAX idle keep-alive | peak | per connection, first $IDLE_CONNS | per connection beyond $IDLE_CONNS |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    echo "| payguard | $(mib "$PG_RSS_START") | $(mib "$PG_RSS_BARE") | $(mib "$PG_RSS_IDLE") | $(mib "$PG_RSS_MAX") | $(mib "$PG_PEAK") | $(perconn "$PG_RSS_IDLE" "$PG_RSS_START" "$IDLE_CONNS") | $PG_KIB_BEYOND KiB |"
    echo "| nginx worker (1 worker) | $(mib "$NGX_RSS_START") | $(mib "$NGX_RSS_BARE") | $(mib "$NGX_RSS_IDLE") | $(mib "$NGX_RSS_MAX") | $(mib "$NGX_PEAK") | $(perconn "$NGX_RSS_IDLE" "$NGX_RSS_START" "$IDLE_CONNS") | $NGX_KIB_BEYOND KiB |"
    echo
    echo "payguard / nginx worker: RSS at $IDLE_MAX idle connections $(ratio "$PG_RSS_MAX" "$NGX_RSS_MAX"), per connection beyond $IDLE_CONNS $(ratio "$PG_KIB_BEYOND" "$NGX_KIB_BEYOND")."
)

CPU_MODEL=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
# Uncommitted changes, by top-level folder: "bench" alone means the harness, not payguard.
DIRTY=$(git status --porcelain --untracked-files=no 2>/dev/null | awk '{ sub(/\/.*/, "", $2); print $2 }' | sort -u | paste -sd, - | sed 's/,/, /g') || DIRTY=
[ -z "$DIRTY" ] || DIRTY=" (working tree had uncommitted changes in: $DIRTY)"
# A full run's report stays in bench/out unless --publish (make bench) says otherwise:
# figures from a busy machine must not replace the committed ones by accident.
if [ "$mode" = quick ]; then REPORT=$OUT/RESULTS.quick.md; SVG=$OUT/latency.quick.svg
elif [ -n "$publish" ]; then REPORT=bench/RESULTS.md; SVG=bench/latency.svg
else REPORT=$OUT/RESULTS.md; SVG=$OUT/latency.svg; fi
# The plot: the medians' percentiles from this run's CSV, per scenario and target.
awk -v title="payguard $COMMIT, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs$( [ "$mode" = quick ] && echo ', quick run')" \
    -f bench/latency_svg.awk "$CSV" >"$SVG" || die "could not write $SVG"

QUICK_NOTE=
[ "$mode" != quick ] || QUICK_NOTE=$'**Quick run** (`make bench-quick`: one short round; indicative only). The committed figures come from `make bench`.\n\n'
cat >"$REPORT" <<EOF
# payguard benchmark results

${QUICK_NOTE}- Date: $(date -u '+%Y-%m-%d %H:%M UTC')
- Commit: \`$COMMIT\`$DIRTY
- Machine: $(nproc) CPUs, $CPU_MODEL, Linux $(uname -r); load average before the run: $LOADAVG_START, CPU busy before the run: ${IDLE_BUSY_PCT}%
- nginx: $("$NGINX" -v 2>&1 | sed 's/^nginx version: //')
- Disk (payguard's \`data_dir\` and the commit ceiling, both in the run's temp dir under
  \`${TMPDIR:-/tmp}\`; same filesystem as the repository: $SAME_FS): $FS_DESC
- Load: \`bench/loadgen\`, closed loop (each connection sends its next request when the
  previous answer is complete), latency from write to full response. Reads: \`GET $PATH_REQ\`.
  Payments: \`POST $PAY_PATH\` with a fresh \`Idempotency-Key\` each.
- Runs: $ROUNDS round(s) of ${WARM} s warm-up + ${MEASURE} s measured per target for reads, targets in
  alternation (${TARGETS[*]}, repeated); figures are the median of the rounds.
  Per-run figures: \`bench/out/results.csv\`.
- Everything runs on 127.0.0.1 on the same $(nproc) CPUs: the load generator (one thread), the
  mock rail (one thread) and the proxy under test share them, so absolute figures are
  bounded by this box; compare the rows with each other, not with other machines.
- Other processes on the machine (outside this benchmark, kernel threads left out) used
  ${OTHER_PCT}% of its CPU time during the load runs, and the share each round saw is in the
  tables ("other processes' CPU"): all CPUs' user + system time from /proc/stat, less this
  benchmark's processes (live ones and every reaped child) and kernel threads, so short-lived
  neighbours (compilers, test runs) count too. A busy neighbour moves req/s and tails far
  more than it moves "server CPU µs/req" (the process under test's user + system time from
  /proc, divided by the requests the mock rail served in the same window: the proxy's own
  cost per request; for "direct" it is the mock rail's).
- Logging is on for both proxies, one JSON line per request to a file: payguard's
  \`log_file\` goes out in one \`write()\` per loop iteration (the lines of the
  requests that iteration finished; none waits while the loop sleeps); nginx's
  \`access_log\` without buffer writes once per request (its \`buffer=\` would hold
  lines until the buffer fills or \`flush=\` passes, which is not the same promise).
- nginx: plain reverse proxy (\`proxy_pass\`, upstream \`keepalive 256\`,
  \`proxy_http_version 1.1\`, \`keepalive_requests 1000000\`). "1 worker" is the fair
  comparison (payguard serves from one loop thread); "auto" is one worker per CPU.
- payguard: one agent, rail \`stripe\` → the mock rail over plain HTTP (\`allow_http\`,
  \`pool_size: 256\`, \`limits.max_connections: 20000\`),
  agent token in \`Authorization: Bearer\`; the rail's key injected by payguard. Direct and
  nginx requests carry the rail key themselves. The agent's policy sets every rule kind,
  generously (per_transaction, daily, weekly, monthly, approval_above above the bench
  amount, a matching merchants allow list and a deny list, hours 00:00-24:00 every day in
  Europe/Paris, velocity 1,000,000 per second, currencies, operations), so every payment
  runs every check and passes; reads are checked against \`operations\` only and never
  touch the ledger.

## Goals

$GOALS

![Latency percentiles per target and scenario](${SVG##*/})

Latency percentiles (p50, p90, p99, p99.9; medians of the rounds, log scale) of every
scenario below, per target: [\`${SVG##*/}\`](${SVG##*/}).

## Reads: GET $PATH_REQ, $CONNS keep-alive connections

$TABLE

$RATIOS

## Proxy capacity, pinned: proxy alone on CPU 1, loadgen and mock rail on CPU 0

$PINTABLE

Same $CONNS connections and request; $PIN_ROUNDS round(s) of ${PIN_WARM:-0} s + ${PIN_MEASURE:-0} s, after the rounds
above. With its own core the proxy saturates it, so req/s here is its capacity and the
ratio tracks the CPU cost per request. (nginx near the top may also be limited by CPU 0,
where loadgen and the mock rail run.)

## Reads, one connection

$C1TABLE

$C1_ROUNDS round(s) of ${C1_WARM:-0} s + ${C1_MEASURE:-0} s per target, targets in alternation.

$HI_SECTION

$PAY_SECTIONS

## The disk's durable-commit ceiling

$CEILTABLE

\`bench/commit_ceiling\`: LMDB write transactions with default (fully synced) flags, each one
put of a 16-byte key and a 100-byte value (then 64 puts per transaction for reference), for
${CEIL_MEASURE:-0} s after ${CEIL_WARM:-0} s of warm-up, in a fresh environment in the temp dir, before any
load. One commit per payment would cap payguard at the first row's commits/s; payguard needs two
(BEGIN and SETTLE) and group-commits each.

## The ledger alone

$ALONETABLE

\`bench/ledger_pages -n $ALONE_PAYMENTS -p $ALONE_PAYMENTS -b N\`: payguard's ledger writer, in one process
with no network, no proxy and no mock rail: each commit carries the BEGINs of N new payments
(every stateful rule, reservation, idempotency record, audit entry) and the SETTLEs of the N
before them (posting, the rail's 1 KB answer stored, audit entry; the answer given already
read), 2N items as in the proxy; after as many payments again to grow the trees, on the
same disk, before any load. The whole proxy at 64
connections commits about ${ALONE_BATCHES[0]} payments per commit (the ledger table above)
and shares the two CPUs with the mock rail and loadgen, so the first row bounds its
payments/s; ${ALONE_BATCHES[1]} per commit is the most 64 connections can give. Pages: the
4 KiB pages the writer hands to the kernel, counted exactly.

## Policy microbenchmark

| | ns | target |
| --- | ---: | ---: |
| Stripe body classification (\`pg_rail_classify\`, $(jnum "$POLICY" body_bytes)-byte form body) | $CLASSIFY_NS | ≤ 2,000 |
| decision, every rule kind (\`pg_policy_check\` + \`pg_policy_check_spend\`) | $DECIDE_NS | ≤ 1,000 |
| reading the rail's answer (\`pg_rail_outcome\`, $(jnum "$POLICY" answer_bytes)-byte payment_intent) | $OUTCOME_NS | — |

\`bench/policy_bench $POLICY_ROUNDS\`: median of $POLICY_ROUNDS rounds, in one thread, before any load.

## payguard memory

$MEMTABLE

VmRSS from /proc/PID/status. "After start": once listening, before any request. "Bare":
$IDLE_CONNS connections opened and held ${IDLE_HOLD} s with nothing sent. "Keep-alive": one
\`loadgen --idle -c $IDLE_MAX --hold-at $IDLE_CONNS --ramp $IDLE_RAMP\` run: each connection sends one
\`GET $PATH_REQ\` and stays open and idle, at most $IDLE_RAMP being set up at a time (so the proxy
needs few rail connections); VmRSS read while $IDLE_CONNS are held (${IDLE_HOLD} s), then while
$IDLE_MAX are. "Per connection beyond $IDLE_CONNS": (RSS at $IDLE_MAX − RSS at $IDLE_CONNS) ÷ $((IDLE_MAX - IDLE_CONNS)), the
cost of one more idle agent connection; "first $IDLE_CONNS" includes the buffers and pools the
process grows on its first requests. "Peak": the largest VmRSS or VmHWM read (VmHWM alone is
refreshed lazily by the kernel). After all the load runs above payguard's VmRSS was
$(mib "$PG_RSS_END"), of which $(mib "${PG_RSS_END_FILE:-0}") file-backed (RssFile: mostly the ledger's pages,
which LMDB reads through its memory map; the kernel can drop them at will).

Measurements took ${ELAPSED} s; the whole script $(( $(date +%s) - SCRIPT_START )) s.

## Reproduce

\`\`\`
make bench          # release build, then bench/run.sh --publish: writes this file,
                    # bench/latency.svg and bench/out/results.csv
bench/run.sh        # the same run, report and plot in bench/out/ (RESULTS.md, latency.svg)
make bench-quick    # one short round, writes bench/out/RESULTS.quick.md
bench/run.sh --profile   # CPU and syscalls per request vs nginx, perf record: bench/out/profile.txt
bench/run.sh --profile-payments   # payments: per-thread CPU and syscalls, perf record
\`\`\`

Where payguard's time goes, and what to change: \`bench/PROFILE.md\`.
EOF

echo
echo "== GET $PATH_REQ, $CONNS connections (median of $ROUNDS)"
echo "$TABLE"
echo
echo "$RATIOS"
echo
echo "== pinned: proxy alone on CPU 1"
echo "$PINTABLE"
echo
echo "== one connection"
echo "$C1TABLE"
echo
[ -z "$HI_SECTION" ] || { echo "$HI_SECTION"; echo; }
echo "$PAY_SECTIONS"
echo
echo "== durable-commit ceiling"
echo "$CEILTABLE"
echo
echo "== the ledger alone"
echo "$ALONETABLE"
echo
echo "== policy_bench: $POLICY"
echo
echo "== memory"
echo "$MEMTABLE"
echo
echo "== goals"
echo "$GOALS"
echo
say "wrote $REPORT, $SVG and $CSV (${ELAPSED} s of measurements, $(( $(date +%s) - SCRIPT_START )) s in all; other processes used ${OTHER_PCT}% of the CPU meanwhile)"
