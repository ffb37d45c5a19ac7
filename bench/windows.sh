#!/usr/bin/env bash
# One gateway process under load for N consecutive wrk windows, with what malloc and the kernel did in each:
# whether a figure drifts within one process (not only between processes), and with what. Terminate-reuse with
# the peers harness's backend, certificates and pinning (wrk and backend on CPU 0, the gateway on CPU 1), on
# loopback addresses of its own. Per window: req/s, and the gateway's mmap calls and page faults (perf stat
# -I over the same windows; meshfed's 64 KiB path speeds up and slows down with malloc's mapping churn,
# docs/performance.md, "Sixth round").
#   bash bench/windows.sh [-n WINDOWS] [-s SECONDS] [-b small|64k] [-c CONNS] [meshfed|haproxy]
# Environment passes to the gateway (e.g. MALLOC_MMAP_THRESHOLD_=131072 to compare malloc settings). Needs
# perf (linux-perf). Every run is bounded (timeout); the servers run in sessions of their own, stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
N=12 SECS=5 BODY=64k CONNS=16
while getopts n:s:b:c: opt; do
  case $opt in n) N=$OPTARG ;; s) SECS=$OPTARG ;; b) BODY=$OPTARG ;; c) CONNS=$OPTARG ;; *) sed -n 2,10p "$0" >&2; exit 2 ;; esac
done
shift $((OPTIND - 1))
CAND=${1:-meshfed}
[[ $N =~ ^[1-9][0-9]?$ && $SECS =~ ^[1-9][0-9]?$ && $CONNS =~ ^[1-9][0-9]{0,2}$ ]] ||
  { echo "-n and -s take 1 to 99, -c 1 to 999" >&2; exit 2; }
case $BODY in small) path=/ ;; 64k) path=/64k ;; *) echo "-b is small or 64k, got '$BODY'" >&2; exit 2 ;; esac
case $CAND in meshfed | haproxy) ;; *) echo "the gateway is meshfed or haproxy, got '$CAND'" >&2; exit 2 ;; esac
command -v perf >/dev/null || { echo "perf is missing (apt-get install linux-perf)" >&2; exit 1; }
source bench/peers-env.sh 127.0.0.110 127.0.0.121 127.0.0.122
OUT=$(mktemp -d)
chmod a+rx "$OUT"
mkdir -p "$OUT/backend" "$OUT/gateway"
chmod a+rx "$OUT/backend" "$OUT/gateway"
SIDS=()
cleanup() { local s; for s in "${SIDS[@]}"; do kill -TERM -- "-$s" 2>/dev/null || true; wait "$s" 2>/dev/null || true; done; rm -rf "$OUT"; }
trap cleanup EXIT
ready() { for _ in $(seq 300); do (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null && return 0; sleep 0.1; done; return 1; }
life=$((N * SECS + 120))
BENCH_WORKDIR=$OUT/backend setsid timeout -k 5 "$life" taskset -c 0 bash "$HARNESS/lib/backend.sh" >/dev/null 2>&1 &
SIDS+=($!)
if [ "$CAND" = haproxy ]; then gw="bash $HARNESS/peers/haproxy.sh"; else gw="bash bench/peers-candidate.sh"; fi
# shellcheck disable=SC2086
BENCH_WORKDIR=$OUT/gateway setsid timeout -k 5 "$life" taskset -c 1 $gw >"$OUT/gateway.log" 2>&1 &
gid=$!
SIDS+=("$gid")
for a in "$BENCH_BACKEND_HTTP" "$BENCH_GW_A_ADDR" "$BENCH_GW_B_ADDR"; do
  ready "$a" || { echo "$a did not accept connections" >&2; cat "$OUT/gateway.log" >&2; exit 1; }
done
load() { taskset -c 0 timeout -k 2 $(($1 + 15)) wrk -t1 -c"$CONNS" -d"$1s" -H "Host: $BENCH_SERVICE_HOST" "http://$BENCH_GW_A_ADDR$path"; }
load 3 >/dev/null # warm-up
pids=$(ps -o pid= -s "$gid" | tr -s ' \n' ',' | sed 's/^,//; s/,$//')
perf stat -I $((SECS * 1000)) -x, -e syscalls:sys_enter_mmap,page-faults -p "$pids" -o "$OUT/perf.csv" -- sleep $((N * SECS + 1)) &
stat=$!
rps=()
for _ in $(seq "$N"); do rps+=("$(load "$SECS" | awk '/Requests\/sec/ {printf "%d", $2}')"); done
wait "$stat" || true
# perf's interval lines: time, count, unit, event, ...; one line per event per window (the last, partial, dropped)
mapfile -t mmaps < <(awk -F, '$4 == "syscalls:sys_enter_mmap" {print $2}' "$OUT/perf.csv" | head -n "$N")
mapfile -t faults < <(awk -F, '$4 == "page-faults" {print $2}' "$OUT/perf.csv" | head -n "$N")
echo "$CAND, $BODY, c=$CONNS, $N windows of $SECS s (load average $(cut -d' ' -f1-3 /proc/loadavg))"
printf '%-8s %10s %10s %12s\n' window req/s mmaps page-faults
for i in $(seq 0 $((N - 1))); do
  printf '%-8s %10s %10s %12s\n' "$((i + 1))" "${rps[$i]:-?}" "${mmaps[$i]:-?}" "${faults[$i]:-?}"
done
