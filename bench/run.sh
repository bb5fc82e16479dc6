#!/usr/bin/env bash
# payguard's benchmark: the same small request (GET /v1/balance) sent by
# bench/loadgen straight to the mock rail, through nginx as a plain reverse
# proxy, and through payguard, in alternation, plus payguard's memory with
# 1,000 idle keep-alive connections. Builds nothing: `make bench` builds the
# release tree first. Everything listens on 127.0.0.1 and is killed on exit.
#
#   bench/run.sh            full run (~3 min): writes bench/RESULTS.md
#   bench/run.sh --quick    one short round (<30 s): writes bench/out/RESULTS.quick.md
#   bench/run.sh --profile  CPU time and syscalls per request (payguard vs nginx,
#                           perf stat), then payguard under load with perf record:
#                           writes bench/out/profile.txt (needs perf)
#
# Per-run figures always go to bench/out/results.csv.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=full
case "${1:-}" in
    "") ;;
    --quick) mode=quick ;;
    --profile) mode=profile ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench: unknown option $1 (see bench/run.sh --help)" >&2; exit 2 ;;
esac

BUILD=build/release
LOADGEN=$BUILD/bench/loadgen
PAYGUARD=$BUILD/payguard
MOCKRAIL=$BUILD/mockrail
OUT=bench/out
SECRET=sk_test_bench
PATH_REQ=/v1/balance
CONNS=32
IDLE_CONNS=1000

if [ "$mode" = quick ]; then
    ROUNDS=1; WARM=1; MEASURE=2; C1_WARM=0.5; C1_MEASURE=1; C1_ROUNDS=1; IDLE_HOLD=0.5
    PIN_ROUNDS=1; PIN_WARM=0.5; PIN_MEASURE=1.5
elif [ "$mode" = profile ]; then
    ROUNDS=0; WARM=2; MEASURE=10; C1_ROUNDS=0; IDLE_HOLD=0; PIN_ROUNDS=0
else
    ROUNDS=5; WARM=2; MEASURE=5; C1_WARM=1; C1_MEASURE=3; C1_ROUNDS=3; IDLE_HOLD=3
    PIN_ROUNDS=3; PIN_WARM=1; PIN_MEASURE=4
fi

say() { printf 'bench: %s\n' "$*" >&2; }
die() { printf 'bench: %s\n' "$*" >&2; exit 1; }

for b in "$LOADGEN" "$PAYGUARD" "$MOCKRAIL"; do
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

# 1,000 connections need as many descriptors in loadgen and in payguard.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge $((IDLE_CONNS + 200)) ] \
    || say "ulimit -n is $(ulimit -n): the $IDLE_CONNS-connection memory test may fail"

mkdir -p "$OUT"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/payguard-bench.XXXXXX")
PIDS=()
# Private copies: a rebuild during the run neither swaps binaries under the
# measurement nor leaves perf with "(deleted)" symbols.
mkdir -p "$TMP/bin"
cp "$LOADGEN" "$PAYGUARD" "$MOCKRAIL" "$TMP/bin/"
LOADGEN=$TMP/bin/loadgen PAYGUARD=$TMP/bin/payguard MOCKRAIL=$TMP/bin/mockrail
LOADAVG_START=$(cut -d' ' -f1-3 /proc/loadavg)
# How busy the machine is before we start: a neighbour's load skews everything.
IDLE_BUSY_PCT=$(b0=$(awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat); sleep 1
    b1=$(awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat)
    awk -v d=$((b1 - b0)) -v hz="$(getconf CLK_TCK)" -v n="$(nproc)" 'BEGIN { x = d * 100 / (hz * n); printf "%.0f", (x > 100 ? 100 : x) }')
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
    printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {if (NR==0) print ""; else if (NR%2) print a[(NR+1)/2]; else printf "%.1f\n", (a[NR/2]+a[NR/2+1])/2}'
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
# and an unbuffered access log to a file, one write per request, as payguard's
# line-buffered log_file. "auto" (one worker per core) is measured too.
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
events { worker_connections 8192; }
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
        keepalive 64;
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
    pool_size: 64
orgs:
  bench:
    timezone: UTC
agents:
  - id: bench
    org: bench
    token: "$AGENT_HASH"
    rails: [stripe]
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

# loadgen TARGET CONNS WARM MEASURE -> JSON line; fails loudly.
LG_WRAP=() # e.g. (taskset -c 0) while CPUs are pinned
loadgen() {
    local t=$1 out
    if ! out=$("${LG_WRAP[@]+"${LG_WRAP[@]}"}" "$LOADGEN" -q -c "$2" -w "$3" -d "$4" -p "$PATH_REQ" \
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
    r=$(loadgen "$t" 1 0 0.2)
    [ "$(jnum "$r" ok)" -gt 0 ] && [ "$(jnum "$r" non2xx)" = 0 ] \
        || die "$t does not answer GET $PATH_REQ with 2xx: $r"
done

CSV=$OUT/results.csv
echo "mode,scenario,round,target,connections,requests,rps,p50_us,p90_us,p99_us,p999_us,max_us,ok,non2xx,errors,server_cpu_us_per_req,rail_cpu_us_per_req,loadgen_cpu_pct,extra" >"$CSV"
csv_row() { # scenario round target json server_cpu rail_cpu
    local j=$4
    echo "$mode,$1,$2,$3,$(jnum "$j" connections),$(jnum "$j" requests),$(jnum "$j" rps),$(jnum "$j" p50_us),$(jnum "$j" p90_us),$(jnum "$j" p99_us),$(jnum "$j" p999_us),$(jnum "$j" max_us),$(jnum "$j" ok),$(jnum "$j" non2xx),$(jnum "$j" errors),${5:-},${6:-},$(jnum "$j" loadgen_cpu_pct)," >>"$CSV"
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

START_TS=$(date +%s)

# --- memory: payguard (and nginx, for scale) with 1,000 idle keep-alive connections ---
# First bare connections (accepted, nothing sent); then connections that each send one
# request, so their keep-alive state exists (and the proxy opened rail connections for
# 1,000 concurrent requests), then idle.
idle_rss() { # target pid [--no-request] -> "rss_kb hwm_kb"
    local t=$1 pid=$2 lg rss
    "$LOADGEN" --idle ${3:-} -c "$IDLE_CONNS" -d "$IDLE_HOLD" --connect-timeout 20 -p "$PATH_REQ" \
        -H "Authorization: ${AUTH[$t]}" "${ADDR[$t]}" >"$TMP/idle-$t.out" 2>"$TMP/idle-$t.err" &
    lg=$!
    wait_for_line '^loadgen: holding ' 25 "$TMP/idle-$t.err" "$lg" \
        || die "$t: $IDLE_CONNS idle connections failed: $(cat "$TMP/idle-$t.err")"
    sleep 0.2
    rss=$(kb VmRSS "$pid")
    wait "$lg" || die "$t: idle run failed: $(cat "$TMP/idle-$t.err")"
    echo "$rss $(kb VmHWM "$pid")"
}
say "memory: $IDLE_CONNS idle keep-alive connections"
# VmHWM is refreshed lazily by the kernel and can read below an earlier VmRSS: the peak
# reported is the largest of every VmRSS and VmHWM read.
max_kb() { printf '%s\n' "$@" | sort -n | tail -1; }
read -r PG_RSS_BARE _ < <(idle_rss payguard "$PG_PID" --no-request)
read -r PG_RSS_IDLE PG_HWM_IDLE < <(idle_rss payguard "$PG_PID")
NGX_WORKER=$(awk '{print $1}' "/proc/$NGINX_w1_PID/task/$NGINX_w1_PID/children")
NGX_RSS_START=$(kb VmRSS "$NGX_WORKER")
read -r NGX_RSS_BARE _ < <(idle_rss nginx1 "$NGX_WORKER" --no-request)
read -r NGX_RSS_IDLE NGX_HWM_IDLE < <(idle_rss nginx1 "$NGX_WORKER")

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
# CPU time of every live process outside this benchmark ("pid start ticks" lines). Ours
# are $$ and its descendants. Processes that start and end between two snapshots are
# missed (and reaped children are not counted: their whole life would land at once), so
# the share computed from two snapshots is a lower bound.
others_snapshot() {
    cat /proc/[0-9]*/stat 2>/dev/null | awk -v me=$$ '
        { pid = $1; rest = $0; sub(/^.*\) /, "", rest); split(rest, f, " ")
          ppid[pid] = f[2]; start[pid] = f[20]; t[pid] = f[12] + f[13] }
        END { for (p in t) { q = p; ours = 0
                  for (d = 0; d < 64 && q > 1; d++) { if (q == me) { ours = 1; break }; q = ppid[q] }
                  if (!ours) print p, start[p], t[p] } }'
}
# Share of all CPUs those processes used between two snapshots taken $3 seconds apart.
others_pct() {
    awk -v hz="$CLK_TCK" -v n="$(nproc)" -v secs="$3" '
        FNR == NR { before[$1 " " $2] = $3; next }
        { k = $1 " " $2; used += (k in before) ? $3 - before[k] : $3 }
        END { x = used * 100 / (hz * n * (secs > 0 ? secs : 1)); printf "%.0f", (x < 0 ? 0 : x) }' "$1" "$2"
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

# measure TARGET CONNS WARM MEASURE -> sets R (JSON), SCPU, RCPU (µs per request)
measure() {
    local t=$1 n0 n1 s0 s1 m0 m1
    # shellcheck disable=SC2086
    { n0=$(mock_requests); s0=$(ticks ${PROCS[$t]}); m0=$(ticks "$MOCK_PID"); }
    R=$(loadgen "$t" "$2" "$3" "$4")
    # shellcheck disable=SC2086
    { n1=$(mock_requests); s1=$(ticks ${PROCS[$t]}); m1=$(ticks "$MOCK_PID"); }
    n1=$((n1 - n0)) # /__mock/stats itself is never counted
    SCPU=$(per_req $((s1 - s0)) "$n1")
    RCPU=$(per_req $((m1 - m0)) "$n1")
}

# --- throughput: c=32, targets in alternation A B C D A B C D ... ---------------------
declare -A RPS P50 P99 P90 P999 C1P50 C1P99 CPU RAILCPU LGCPU
for t in "${TARGETS[@]}"; do
    RPS[$t]=""; P50[$t]=""; P90[$t]=""; P99[$t]=""; P999[$t]=""; C1P50[$t]=""; C1P99[$t]=""
    CPU[$t]=""; RAILCPU[$t]=""; LGCPU[$t]=""
done
others_snapshot >"$TMP/others.0"; RUNS_TS=$(date +%s.%N)
for round in $(seq "$ROUNDS"); do
    for t in "${TARGETS[@]}"; do
        measure "$t" "$CONNS" "$WARM" "$MEASURE"
        csv_row "c$CONNS" "$round" "$t" "$R" "$SCPU" "$RCPU"
        RPS[$t]+=" $(jnum "$R" rps)"; P50[$t]+=" $(jnum "$R" p50_us)"; P90[$t]+=" $(jnum "$R" p90_us)"
        P99[$t]+=" $(jnum "$R" p99_us)"; P999[$t]+=" $(jnum "$R" p999_us)"
        CPU[$t]+=" $SCPU"; RAILCPU[$t]+=" $RCPU"; LGCPU[$t]+=" $(jnum "$R" loadgen_cpu_pct)"
        say "c=$CONNS round $round/$ROUNDS $t: $(jnum "$R" rps) req/s, p50 $(jnum "$R" p50_us) us, p99 $(jnum "$R" p99_us) us, server CPU $SCPU us/req, loadgen CPU $(jnum "$R" loadgen_cpu_pct)%"
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
        C1P50[$t]+=" $(jnum "$R" p50_us)"; C1P99[$t]+=" $(jnum "$R" p99_us)"
        say "c=1 round $round/$C1_ROUNDS $t: p50 $(jnum "$R" p50_us) us, p99 $(jnum "$R" p99_us) us"
    done
done
others_snapshot >"$TMP/others.1"
# Share of the machine's CPU time used by processes outside this benchmark.
OTHER_PCT=$(others_pct "$TMP/others.0" "$TMP/others.1" "$(awk -v a="$RUNS_TS" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')")

alive "$PG_PID" || die "payguard died during the run: $(tail -5 "$TMP/payguard.err")"
PG_RSS_END=$(kb VmRSS "$PG_PID")
PG_HWM_END=$(kb VmHWM "$PG_PID")
ELAPSED=$(( $(date +%s) - START_TS ))

declare -A M_RPS M_P50 M_P90 M_P99 M_P999 M_C1P50 M_C1P99 M_CPU M_RAILCPU M_LGCPU
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
    { M_C1P50[$t]=$(median ${C1P50[$t]}); M_C1P99[$t]=$(median ${C1P99[$t]}); }
    echo "$mode,c1,median,$t,1,,,${M_C1P50[$t]},,${M_C1P99[$t]},,,,,,,,," >>"$CSV"
done
{
    echo "$mode,memory,,payguard,0,,,,,,,,,,,,,,rss_start_kb=$PG_RSS_START"
    echo "$mode,memory,,payguard,$IDLE_CONNS,,,,,,,,,,,,,,rss_bare_kb=$PG_RSS_BARE;rss_held_kb=$PG_RSS_IDLE;hwm_kb=$PG_HWM_IDLE;rss_after_runs_kb=$PG_RSS_END;hwm_after_runs_kb=$PG_HWM_END"
    echo "$mode,memory,,nginx1_worker,$IDLE_CONNS,,,,,,,,,,,,,,rss_start_kb=$NGX_RSS_START;rss_bare_kb=$NGX_RSS_BARE;rss_held_kb=$NGX_RSS_IDLE;hwm_kb=$NGX_HWM_IDLE"
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
perconn() { awk -v a="$1" -v b="$2" -v n="$3" 'BEGIN { printf "%.1f KiB", (a - b) / n }'; }

TABLE=$(
    echo "| target | req/s | req/s, all rounds | p50 µs | p90 µs | p99 µs | p99.9 µs | server CPU µs/req | loadgen CPU |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    for t in "${TARGETS[@]}"; do
        printf '| %s | %.0f | %s | %s | %s | %s | %s | %s | %s%% |\n' "${LABEL[$t]}" "${M_RPS[$t]}" \
            "$(spread "${RPS[$t]}")" "${M_P50[$t]}" "${M_P90[$t]}" "${M_P99[$t]}" "${M_P999[$t]}" \
            "${M_CPU[$t]}" "${M_LGCPU[$t]}"
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
        echo "(skipped: needs 2 CPUs and taskset)"
    fi
)
C1TABLE=$(
    echo "| target | p50 µs | p99 µs | added p50 vs direct |"
    echo "| --- | ---: | ---: | ---: |"
    for t in "${C1_TARGETS[@]}"; do
        printf '| %s | %s | %s | %s |\n' "${LABEL[$t]}" "${M_C1P50[$t]}" "${M_C1P99[$t]}" \
            "$( [ "$t" = direct ] && echo — || echo "$(diffus "${M_C1P50[$t]}" "${M_C1P50[direct]}") µs")"
    done
)
PG_PEAK=$(max_kb "$PG_RSS_BARE" "$PG_RSS_IDLE" "$PG_HWM_IDLE")
NGX_PEAK=$(max_kb "$NGX_RSS_BARE" "$NGX_RSS_IDLE" "$NGX_HWM_IDLE")
MEMTABLE=$(
    echo "| process | after start | $IDLE_CONNS bare connections | $IDLE_CONNS idle keep-alive connections, one request each | peak | per connection (keep-alive) |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: |"
    echo "| payguard | $(mib "$PG_RSS_START") | $(mib "$PG_RSS_BARE") | $(mib "$PG_RSS_IDLE") | $(mib "$PG_PEAK") | $(perconn "$PG_RSS_IDLE" "$PG_RSS_START" "$IDLE_CONNS") |"
    echo "| nginx worker (1 worker) | $(mib "$NGX_RSS_START") | $(mib "$NGX_RSS_BARE") | $(mib "$NGX_RSS_IDLE") | $(mib "$NGX_PEAK") | $(perconn "$NGX_RSS_IDLE" "$NGX_RSS_START" "$IDLE_CONNS") |"
)

CPU_MODEL=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
DIRTY=$(git status --porcelain --untracked-files=no 2>/dev/null | grep -q . && echo " (working tree had uncommitted changes)" || true)
if [ "$mode" = quick ]; then REPORT=$OUT/RESULTS.quick.md; else REPORT=bench/RESULTS.md; fi

QUICK_NOTE=
[ "$mode" != quick ] || QUICK_NOTE=$'**Quick run** (`make bench-quick`: one short round; indicative only). The committed figures come from `make bench`.\n\n'
cat >"$REPORT" <<EOF
# payguard benchmark results

${QUICK_NOTE}- Date: $(date -u '+%Y-%m-%d %H:%M UTC')
- Commit: \`$COMMIT\`$DIRTY
- Machine: $(nproc) CPUs, $CPU_MODEL, Linux $(uname -r); load average before the run: $LOADAVG_START, CPU busy before the run: ${IDLE_BUSY_PCT}%
- nginx: $("$NGINX" -v 2>&1 | sed 's/^nginx version: //')
- Load: \`bench/loadgen\`, \`GET $PATH_REQ\`, closed loop (each connection sends its next
  request when the previous answer is complete), latency from write to full response.
- Runs: $ROUNDS round(s) of ${WARM} s warm-up + ${MEASURE} s measured per target, targets in
  alternation (${TARGETS[*]}, repeated); figures are the median of the rounds.
  Per-run figures: \`bench/out/results.csv\`.
- Everything runs on 127.0.0.1 on the same $(nproc) CPUs: the load generator (one thread), the
  mock rail (one thread) and the proxy under test share them, so absolute figures are
  bounded by this box; compare the rows with each other, not with other machines.
- Other processes on the machine (outside this benchmark) used at least ${OTHER_PCT}% of its
  CPU time during the runs; a busy neighbour moves req/s and tails far more than it moves
  "server CPU µs/req" (the process under test's user + system time from /proc, divided by
  the requests the mock rail served in the same window: the proxy's own cost per request;
  for "direct" it is the mock rail's).
- Logging is on for both proxies, one \`write()\` per request to a file: payguard's
  \`log_file\` (line-buffered JSON) and an nginx \`access_log\` without buffer in a
  similar JSON format.
- nginx: plain reverse proxy (\`proxy_pass\`, upstream \`keepalive 64\`,
  \`proxy_http_version 1.1\`, \`keepalive_requests 1000000\`). "1 worker" is the fair
  comparison (payguard serves from one loop thread); "auto" is one worker per CPU.
- payguard: one agent, rail \`stripe\` → the mock rail over plain HTTP (\`allow_http\`),
  no policy (rail checks only), agent token in \`Authorization: Bearer\`; the rail's key
  injected by payguard. Direct and nginx requests carry the rail key themselves.

## Throughput and latency, $CONNS keep-alive connections

$TABLE

$RATIOS

## Proxy capacity, pinned: proxy alone on CPU 1, loadgen and mock rail on CPU 0

$PINTABLE

Same $CONNS connections and request; $PIN_ROUNDS round(s) of ${PIN_WARM:-0} s + ${PIN_MEASURE:-0} s, after the rounds
above. With its own core the proxy saturates it, so req/s here is its capacity and the
ratio tracks the CPU cost per request. (nginx near the top may also be limited by CPU 0,
where loadgen and the mock rail run.)

## Latency with one connection

$C1TABLE

## payguard memory

$MEMTABLE

VmRSS from /proc/PID/status. "After start": once listening, before any request. "Bare":
$IDLE_CONNS connections opened and held ${IDLE_HOLD} s with nothing sent. "Keep-alive": $IDLE_CONNS
connections each send one \`GET $PATH_REQ\` at once, then stay open and idle; read while
held. The proxy opened rail connections for those $IDLE_CONNS concurrent requests (pool keeps
64 idle), so this includes them. "Peak": the largest VmRSS or VmHWM read (VmHWM alone is
refreshed lazily by the kernel). After all the load runs above payguard's VmRSS was
$(mib "$PG_RSS_END").

Measurements took ${ELAPSED} s.

## Reproduce

\`\`\`
make bench          # release build, then bench/run.sh: writes this file and bench/out/results.csv
make bench-quick    # one short round, writes bench/out/RESULTS.quick.md
bench/run.sh --profile   # CPU and syscalls per request vs nginx, perf record: bench/out/profile.txt
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
echo "== memory"
echo "$MEMTABLE"
echo
say "wrote $REPORT and $CSV (${ELAPSED} s of measurements; other processes used at least ${OTHER_PCT}% of the CPU meanwhile)"
