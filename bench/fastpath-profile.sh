#!/usr/bin/env bash
# CPU cost of the terminate-reuse path outside the peers harness: both gateways in one process (the peers
# candidate, bench/peers-gateway.ts) pinned to CPU 1, the harness's nginx backend and wrk on CPU 0, on
# loopback addresses of their own (so a harness run of another checkout is not disturbed). Prints requests,
# the gateway process's CPU per request, the load average, and with a profile where its samples went.
#   bash bench/fastpath-profile.sh [-d SECONDS] [-c CONNS] [-b small|16k|64k] [-r RUNS] [-w WINDOWS] [-n] [-a] [-p] [-F] [-o DIR]
#     -n: no --cpu-prof (the profiler's own cost left out of the CPU per request)
#     -a: also where the measured window allocated (bench/alloc-sampling.ts): DIR/alloc<run>.json, and bytes a request
#     -p: also the promises, nextTicks, microtasks and timers the measured window made, a request (bench/async-counts.ts;
#         the counting slows the process: its CPU figures are not comparable)
#     -F: the Node floor (bench/node-floor.ts) instead of meshfed's gateways: what the same exchange costs Node alone
#     -w: the run measured as WINDOWS consecutive wrk windows of SECONDS in the same process, each printed with the
#         gateway's mmap calls and page faults (perf stat -I; needs linux-perf): whether a figure drifts within one
#         process, and with malloc's mapping churn (docs/performance.md, "Sixth round")
# Each run is bounded (wrk -d plus timeout); the servers run in sessions of their own and are stopped by
# their process group on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=5 CONNS=16 BODY=small RUNS=1 WINDOWS=0 PROFILE=1 ALLOC=0 ASYNC=0 TARGET=bench/peers-gateway.ts
OUT=/tmp/meshfed-fastpath-profile
while getopts d:c:b:r:w:napFo: opt; do
  case $opt in d) DURATION=$OPTARG ;; c) CONNS=$OPTARG ;; b) BODY=$OPTARG ;; r) RUNS=$OPTARG ;; w) WINDOWS=$OPTARG ;;
    n) PROFILE=0 ;; a) ALLOC=1 ;; p) ASYNC=1 ;; F) TARGET=bench/node-floor.ts ;; o) OUT=$OPTARG ;;
    *) sed -n 2,15p "$0" >&2; exit 2 ;; esac
done
[[ $WINDOWS =~ ^[0-9]{1,2}$ ]] || { echo "-w takes 0 (one window) to 99, got '$WINDOWS'" >&2; exit 2; }
if [ "$WINDOWS" -gt 0 ] && ! command -v perf >/dev/null; then echo "-w needs perf (apt-get install linux-perf)" >&2; exit 1; fi
# the seconds measured per run
MEASURED=$((DURATION * (WINDOWS > 0 ? WINDOWS : 1)))
HARNESS=/work/shared/bench/peers
STATE=${BENCH_STATE:-$PWD/.bench-peers}
export BENCH_SERVICE_HOST=echo.bench.svc.clusterset.local BENCH_TRUST_DOMAIN=mesh.example
export BENCH_BACKEND_HTTP=${PROFILE_BACKEND:-127.0.0.110:28080} BENCH_BACKEND_TLS=${PROFILE_BACKEND_TLS:-127.0.0.110:28443}
export BENCH_GW_A_ADDR=${PROFILE_GW_A:-127.0.0.121:25001} BENCH_GW_B_ADDR=${PROFILE_GW_B:-127.0.0.122:25443}
export BENCH_CERTS_DIR=$STATE/certs BENCH_CA=$STATE/certs/root-ca.crt
export BENCH_GW_A_CERT=$STATE/certs/gw-a.crt BENCH_GW_A_KEY=$STATE/certs/gw-a.key
export BENCH_GW_B_CERT=$STATE/certs/gw-b.crt BENCH_GW_B_KEY=$STATE/certs/gw-b.key
export BENCH_TOPOLOGY=terminate BENCH_REUSE=reuse
for a in $BENCH_BACKEND_HTTP $BENCH_BACKEND_TLS $BENCH_GW_A_ADDR $BENCH_GW_B_ADDR; do
  [[ $a =~ ^127\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}:[0-9]+$ ]] || { echo "not a loopback ip:port: $a" >&2; exit 2; }
  if ss -Htln | awk '{print $4}' | grep -qxF "$a"; then echo "address in use: $a" >&2; exit 1; fi
done
bash "$HARNESS/lib/certs.sh" "$BENCH_CERTS_DIR" "$BENCH_SERVICE_HOST" >/dev/null
rm -rf "$OUT" && mkdir -p "$OUT/backend" "$OUT/prof"
chmod a+rx "$OUT" "$OUT/backend"
case $BODY in small) path=/ ;; 16k | 64k) path=/$BODY ;; *) echo "-b takes small, 16k or 64k, got '$BODY'" >&2; exit 2 ;; esac

SIDS=()
cleanup() { local s; for s in "${SIDS[@]}"; do kill -TERM -- "-$s" 2>/dev/null || true; wait "$s" 2>/dev/null || true; done; }
trap cleanup EXIT
wait_tcp() { for _ in $(seq 300); do (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null && return 0; sleep 0.1; done; return 1; }
source bench/cpu-ticks.sh

BENCH_WORKDIR=$OUT/backend setsid timeout -k 5 600 taskset -c 0 bash "$HARNESS/lib/backend.sh" >/dev/null 2>&1 &
SIDS+=($!)
wait_tcp "$BENCH_BACKEND_HTTP" || { echo "the backend did not start" >&2; exit 1; }
# the harness's backend serves / and /64k; a 16 KiB body (a response copied behind its head in one piece) is ours
if [ "$BODY" = 16k ]; then head -c 16384 /dev/zero | tr '\0' 'x' >"$OUT/backend/www/16k" && chmod a+r "$OUT/backend/www/16k"; fi
hz=$(getconf CLK_TCK)
for run in $(seq "$RUNS"); do
  prof=(); [ "$PROFILE" = 1 ] && prof=(--cpu-prof --cpu-prof-dir="$OUT/prof" --cpu-prof-name="run$run.cpuprofile")
  t0=$(date +%s%N)
  alloc=(); [ "$ALLOC" = 1 ] && alloc=(env "BENCH_ALLOC_PROFILE=$OUT/alloc$run.json")
  counts=(); [ "$ASYNC" = 1 ] && counts=(--import ./bench/async-counts.ts)
  BENCH_WORKDIR=$OUT setsid timeout -k 5 $((MEASURED + 120)) taskset -c 1 "${alloc[@]}" \
    env "BENCH_ASYNC_COUNTS=$OUT/async$run.json" node_modules/.bin/node ${BENCH_NODE_ARGS:-} "${counts[@]}" "${prof[@]}" \
    "$TARGET" >"$OUT/gateway$run.log" 2>&1 &
  gw=$!; SIDS+=("$gw")
  wait_tcp "$BENCH_GW_A_ADDR" && wait_tcp "$BENCH_GW_B_ADDR" || { cat "$OUT/gateway$run.log" >&2; exit 1; }
  node=$(pgrep -s "$gw" -f "$TARGET" | tail -n1)
  # warm up (JIT, pools), then measure
  taskset -c 0 timeout -k 2 20 wrk -t1 -c"$CONNS" -d2s -H "Host: $BENCH_SERVICE_HOST" "http://$BENCH_GW_A_ADDR$path" >/dev/null
  if [ "$ALLOC" = 1 ] || [ "$ASYNC" = 1 ]; then kill -USR2 "$node"; fi
  c0=$(proc_ticks "$node") t1=$(date +%s%N)
  echo $(((t1 - t0) / 1000000)) >"$OUT/prof/run$run.from-ms"
  measure() { taskset -c 0 timeout -k 2 $((DURATION + 15)) wrk -t1 -c"$CONNS" -d"${DURATION}s" -H "Host: $BENCH_SERVICE_HOST" \
    "http://$BENCH_GW_A_ADDR$path"; }
  if [ "$WINDOWS" = 0 ]; then
    measure >"$OUT/wrk$run.txt"
  else
    perf stat -I $((DURATION * 1000)) -x, -e syscalls:sys_enter_mmap,page-faults -p "$node" -o "$OUT/perf$run.csv" \
      -- sleep $((MEASURED + 1)) &
    stat=$!
    : >"$OUT/wrk$run.txt"
    for w in $(seq "$WINDOWS"); do measure | tee -a "$OUT/wrk$run.txt" >"$OUT/wrk$run.$w.txt"; done
    wait "$stat" || true
    # perf's interval lines: time, count, unit, event, ...; one line per event and window (the last, partial, left out)
    mapfile -t mmaps < <(awk -F, '$4 == "syscalls:sys_enter_mmap" {print $2}' "$OUT/perf$run.csv" | head -n "$WINDOWS")
    mapfile -t faults < <(awk -F, '$4 == "page-faults" {print $2}' "$OUT/perf$run.csv" | head -n "$WINDOWS")
    for w in $(seq "$WINDOWS"); do
      awk -v w="$w" -v m="${mmaps[$((w - 1))]:-?}" -v f="${faults[$((w - 1))]:-?}" \
        '/Requests\/sec/ {printf "  window %d: %d req/s, %s mmap calls, %s page faults\n", w, $2, m, f}' "$OUT/wrk$run.$w.txt"
    done
  fi
  c1=$(proc_ticks "$node")
  load=$(cut -d' ' -f1-3 /proc/loadavg)
  # node alone: \`timeout\` would pass a second SIGTERM on while the profile is being written
  kill -TERM "$node"; wait "$gw" 2>/dev/null || true
  SIDS=("${SIDS[@]/$gw/}")
  reqs=$(awk '/requests in/ {n += $1} END {print n}' "$OUT/wrk$run.txt")
  awk -v r="$reqs" -v t=$((c1 - c0)) -v hz="$hz" 'BEGIN { printf "%.1f", t / hz / r * 1e6 }' >"$OUT/prof/run$run.cpu-us"
  errs=$(awk '/Non-2xx|Socket errors/' "$OUT/wrk$run.txt")
  awk -v run="$run" -v r="$reqs" -v t=$((c1 - c0)) -v hz="$hz" -v d="$MEASURED" -v l="$load" -v e="$errs" 'BEGIN {
    cpu = t / hz; printf "run %s: %d requests, %.0f req/s, gateway CPU %.2f s (%.0f%%), %.0f µs CPU per request, %.0f req per CPU-s, load %s %s\n",
      run, r, r / d, cpu, cpu / d * 100, cpu / r * 1e6, r / cpu, l, e }'
  # per request of the measured window (the counts start at SIGUSR2, after the warm-up)
  if [ "$ALLOC" = 1 ]; then
    jq -r --argjson r "$reqs" '"  allocated: \(.totalMb * 1024 / $r | . * 10 | round / 10) KiB a request (\(.totalMb) MiB)"' \
      "$OUT/alloc$run.json"
  fi
  if [ "$ASYNC" = 1 ]; then
    jq -r --argjson r "$reqs" 'to_entries | map("\(.key) \(.value / $r | . * 100 | round / 100)") | "  a request: " + join(", ")' \
      "$OUT/async$run.json"
  fi
done
if [ "$PROFILE" = 1 ]; then
  for f in "$OUT"/prof/*.cpuprofile; do node_modules/.bin/node bench/cpu-profile-summary.ts "$f" --from-ms "$(cat "${f%.cpuprofile}.from-ms")" --for-ms $((MEASURED * 1000)) \
    --cpu-us "$(cat "${f%.cpuprofile}.cpu-us")" \
    --json "${f%.cpuprofile}.json"
  done
fi
