#!/usr/bin/env bash
# What the gateways of the fixed-rate benchmark (bench/latency-fixed-rate.sh) do per request at 1,000 req/s
# (h2load --h1, 10 connections x 100 req/s, D seconds): HAProxy's two gateway processes and meshfed's candidate
# (both gateways in one event loop), one after the other, with the peers harness's backend and certificates on
# loopback addresses of their own. Per candidate, either the system calls of every thread of its processes
# (strace -c; counts per request are the figure, strace's own cost makes its times meaningless), or with PERF=1
# a CPU profile of them (perf record -g at 2 kHz; meshfed with --perf-basic-prof for its JIT code), whose
# samples by binary say where user and kernel time go (perf report --sort dso).
#   bash bench/syscalls-fixed-rate.sh            (D=10; OUT=/tmp/meshfed-syscalls)
#   PERF=1 bash bench/syscalls-fixed-rate.sh     (OUT/<candidate>.perf.data; perf report -i … --sort dso,sym)
set -euo pipefail
cd "$(dirname "$0")/.."
D=${D:-10} OUT=${OUT:-/tmp/meshfed-syscalls} PERF=${PERF:-0}
[[ $PERF =~ ^[01]$ ]] || { echo "PERF must be 0 or 1, got '$PERF'" >&2; exit 2; }
for tool in h2load strace perf; do command -v $tool >/dev/null || { echo "$tool is missing (apt-get install nghttp2-client strace linux-perf)" >&2; exit 1; }; done
source bench/peers-env.sh 127.0.0.13 127.0.0.23 127.0.0.24
rm -rf "$OUT" && mkdir -p "$OUT" && chmod a+rx "$OUT"
source bench/sessions.sh
trap stop_all EXIT
# the longest any server of the run lives
LIFE=$((D + 120))
# the tracer of $cand's processes $pids is attached (strace: the first is traced; perf: its file begun)
attached() {
  if [ "$PERF" = 1 ]; then [ -s "$OUT/$cand.perf.data" ]; else grep -q "TracerPid:[[:space:]]*[1-9]" "/proc/${pids%% *}/status"; fi
}
load() { h2load --h1 -c 10 --rps 100 -D "$1" -H ":authority: $BENCH_SERVICE_HOST" "http://$BENCH_GW_A_ADDR/"; }

start backend "$LIFE" "bash $HARNESS/lib/backend.sh"
wait_tcp "$BENCH_BACKEND_HTTP" || { echo "the backend did not start" >&2; exit 1; }
for cand in haproxy meshfed; do
  case $cand in
  haproxy) start $cand "$LIFE" "bash $HARNESS/peers/haproxy.sh" ;;
  meshfed)
    args=''; [ "$PERF" = 1 ] && args=--perf-basic-prof
    start $cand "$LIFE" "BENCH_NODE_ARGS=$args bash bench/peers-candidate.sh" ;;
  esac
  sid=$STARTED
  wait_tcp "$BENCH_GW_B_ADDR" && wait_tcp "$BENCH_GW_A_ADDR" || { cat "$OUT/$cand/stdout.log" "$OUT/$cand/stderr.log" >&2; exit 1; }
  load 3 >/dev/null # warm-up at the same rate: the request path compiled before it is measured
  pids=$(ps -o pid= -s "$sid" | xargs)
  if [ "$PERF" = 1 ]; then
    timeout $((D + 10)) perf record -F 2000 -g -o "$OUT/$cand.perf.data" -p "${pids// /,}" >"$OUT/$cand.perf.log" 2>&1 &
  else
    threads=(); for p in $pids; do for t in /proc/"$p"/task/*; do threads+=(-p "${t##*/}"); done; done
    timeout $((D + 10)) strace -c -f "${threads[@]}" -o "$OUT/$cand.strace" 2>/dev/null &
  fi
  tracer=$!
  # the measured load begins once the tracer is attached
  for _ in $(seq 100); do attached && break; sleep 0.1; done
  load "$D" >"$OUT/$cand.h2load"
  kill -INT "$tracer" 2>/dev/null || true
  wait "$tracer" 2>/dev/null || true
  n=$(awk '/^requests:/ { print $8 }' "$OUT/$cand.h2load")
  echo "== $cand: $n requests succeeded in $D s"
  if [ "$PERF" = 1 ]; then
    # share and samples (at 2 kHz: half a millisecond of CPU each) by binary
    perf report -i "$OUT/$cand.perf.data" --no-children --sort dso --stdio -n -g none 2>/dev/null | grep -E '^ +[0-9]' | head -8
  else
    awk -v n="$n" '$1 ~ /^[0-9.]+$/ && NF >= 5 { printf "  %-16s %8d calls  %6.2f per request\n", $NF, $4, $4 / n }' "$OUT/$cand.strace" | head -12
  fi
  stop "$sid"
done
