#!/usr/bin/env bash
# The latency tail of the terminate-reuse path at a fixed rate, and what stalled the gateway meanwhile:
# the peers candidate (both gateways in one process, bench/peers-gateway.ts) behind the harness's nginx
# backend, h2load --h1 at a fixed rate, and the candidate's own record of event-loop delay, GC pauses and
# connections accepted (bench/pause-stats.ts). Variants run alternately, R rounds, so A/B figures share a
# host state. Loopback addresses of its own; every server in a session of its own, stopped on exit.
#   bash bench/tail-probe.sh [-d SECONDS] [-r ROUNDS] [-c CONNS] [-q RPS_PER_CONN] VARIANT...
#   VARIANT = label|checkout dir|node flags, e.g. 'main|/tmp/meshfed-main|' 'semi16|.|--max-semi-space-size=16'
# Prints one JSON line per run: latency (ms, h2load's log), the gateway process's CPU per request, its
# event-loop delay and GC pauses (ms), connections accepted, RSS and young generation after the run (MB).
# ALLOC=<prefix>: also where each run allocated (bench/alloc-sampling.ts), in <prefix>-<label>-<round>.json.
# KEEP=<dir>: keeps each run's h2load log and the candidate's record (with its timeline of stalls) in
# <dir>/<label>-<round>/, for `node bench/tail-attribution.ts <dir>/<label>-<round>`.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=10 ROUNDS=2 CONNS=10 RPS=100
while getopts d:r:c:q: opt; do
  case $opt in d) DURATION=$OPTARG ;; r) ROUNDS=$OPTARG ;; c) CONNS=$OPTARG ;; q) RPS=$OPTARG ;;
    *) sed -n 2,9p "$0" >&2; exit 2 ;; esac
done
shift $((OPTIND - 1))
[ $# -gt 0 ] || { sed -n 2,9p "$0" >&2; exit 2; }
OUT=$(mktemp -d /tmp/meshfed-tail-probe.XXXXXX)
source bench/peers-env.sh 127.0.0.130 127.0.0.131 127.0.0.132
for a in $BENCH_BACKEND_HTTP $BENCH_GW_A_ADDR $BENCH_GW_B_ADDR; do
  if ss -Htln | awk '{print $4}' | grep -qxF "$a"; then echo "address in use: $a" >&2; exit 1; fi
done

SIDS=()
cleanup() { local s; for s in "${SIDS[@]}"; do kill -TERM -- "-$s" 2>/dev/null || true; wait "$s" 2>/dev/null || true; done; rm -rf "$OUT"; }
trap cleanup EXIT
source bench/cpu-ticks.sh
wait_tcp() { for _ in $(seq 300); do (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null && return 0; sleep 0.1; done; return 1; }
mkdir -p "$OUT/backend"
BENCH_WORKDIR=$OUT/backend setsid timeout -k 5 1800 bash "$HARNESS/lib/backend.sh" >/dev/null 2>&1 &
SIDS+=($!)
wait_tcp "$BENCH_BACKEND_HTTP" || { echo "the backend did not start" >&2; exit 1; }
here=$PWD
for round in $(seq "$ROUNDS"); do
  for v in "$@"; do
    IFS='|' read -r label dir flags <<<"$v"
    run=$OUT/$label-$round
    mkdir -p "$run"
    # shellcheck disable=SC2086 # the variant's node flags, split on spaces
    BENCH_WORKDIR=$run BENCH_PAUSE_STATS=$run/pauses.json setsid timeout -k 5 $((DURATION + 120)) \
      env -C "$dir" ${ALLOC:+"BENCH_ALLOC_PROFILE=$ALLOC-$label-$round.json"} "$here/node_modules/.bin/node" $flags bench/peers-gateway.ts >"$run/gateway.log" 2>&1 &
    gw=$!; SIDS+=("$gw")
    wait_tcp "$BENCH_GW_A_ADDR" && wait_tcp "$BENCH_GW_B_ADDR" || { cat "$run/gateway.log" >&2; exit 1; }
    node=$(pgrep -s "$gw" -f peers-gateway.ts | tail -n1)
    h2load --h1 -c "$CONNS" --rps "$RPS" -D 3 -H ":authority: $BENCH_SERVICE_HOST" "http://$BENCH_GW_A_ADDR/" >/dev/null
    kill -USR2 "$node"
    c0=$(proc_ticks "$node")
    timeout -k 2 $((DURATION + 30)) h2load --h1 -c "$CONNS" --rps "$RPS" -D "$DURATION" -H ":authority: $BENCH_SERVICE_HOST" \
      --log-file "$run/h2load.log" "http://$BENCH_GW_A_ADDR/" >"$run/h2load.txt"
    c1=$(proc_ticks "$node")
    load=$(cut -d' ' -f1-3 /proc/loadavg)
    kill -TERM "$node"; wait "$gw" 2>/dev/null || true
    SIDS=("${SIDS[@]/$gw/}")
    if [ -n "${KEEP:-}" ]; then mkdir -p "$KEEP/$label-$round" && cp "$run/h2load.log" "$run/pauses.json" "$KEEP/$label-$round/"; fi
    awk -F'\t' '$2 == 200 { print $3 / 1000 }' "$run/h2load.log" | sort -n >"$run/ms"
    n=$(wc -l <"$run/ms")
    e=$(awk -F'\t' '$2 != 200' "$run/h2load.log" | wc -l)
    pct() { sed -n "$(($1 * n / 1000 + 1))p" "$run/ms"; }
    jq -c -n --arg variant "$label" --argjson round "$round" --argjson n "$n" --argjson e "$e" --arg load "$load" \
      --argjson p50 "$(pct 500)" --argjson p99 "$(pct 990)" --argjson p999 "$(pct 999)" --argjson max "$(tail -n1 "$run/ms")" \
      --slurpfile pauses "$run/pauses.json" --argjson cpu "$(awk -v t=$((c1 - c0)) -v hz="$(getconf CLK_TCK)" 'BEGIN { print t / hz }')" \
      '{variant: $variant, round: $round, requests: $n, errors: $e, p50: $p50, p99: $p99, p999: $p999, max: $max,
        cpuUsPerRequest: (if $n > 0 then ($cpu / $n * 1e6 | round) else null end),
        loop: $pauses[0].loopDelayMs, gc: $pauses[0].gc, accepted: $pauses[0].accepted,
        rssMb: $pauses[0].rssMb, youngMb: $pauses[0].youngMb, load: $load}'
  done
done
