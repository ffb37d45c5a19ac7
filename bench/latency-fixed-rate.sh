#!/usr/bin/env bash
# Latency a two-gateway hop adds at a fixed request rate (issue 16): h2load --h1 at 1,000 req/s (10
# connections x 100 req/s) for D seconds against the backend directly, HAProxy's gw-A -> gw-B and meshfed's,
# in one run, with the peers harness's backend, certificates and gateway scripts (loopback only). meshfed runs
# twice: as the harness runs it (both gateways in one event loop: `meshfed`) and as it is deployed and as
# the peer gateways run here (each gateway its own process: `meshfed-split`, BENCH_ROLE of bench/peers-gateway.ts).
#   bash bench/latency-fixed-rate.sh            (D=10)
#   R=3 bash bench/latency-fixed-rate.sh        (three rounds of every path in turn: medians, and the ratio per round)
#   W=15 R=3 bash bench/latency-fixed-rate.sh   (15 s of h2load's warm-up at the same rate before the measured D seconds,
#                                                default 2: long enough for V8 to have compiled the request path with
#                                                its optimising compiler, which otherwise happens inside the window)
# Each path's line also says how much CPU time the hypervisor took from this host over it (steal_pct): a round
# with steal is a round of a busier host, for every path it touched; and the gateways' CPU time per request
# (every process of their sessions, user + system) while h2load ran, over the requests of its W s warm-up
# (at the same rate, not in its log) and of the measured seconds.
# Writes bench/results/latency-fixed-rate.json (PIN=1: latency-fixed-rate-pinned.json): p50/p99 per path and the
# latency each pair adds over direct.
# And where its slowest 1 % started (slowest_1pct_in): in how many 100-ms windows of the run, and the share
# of them in the busiest window. h2load's ten connections send together, so requests come in batches of ten;
# a p99 made of a few windows is a few stalls of everything in flight, not a cost every batch pays.
# PIN=1 places the processes as the peers harness does: h2load and the backend on CPU 0, every gateway process
# (HAProxy's two, meshfed's one or two) on CPU 1; without it nothing is pinned and HAProxy's two processes may
# run side by side on both CPUs while meshfed's one loop (the harness's candidate) has one. The output says which.
# RESULT_FILE=<path> writes the result there instead (bench/latency-ab.sh: its runs leave bench/results alone).
# KEEP=<dir> keeps each path's h2load log (<path>-<round>.log: start µs, status, duration µs per request) and
# each gateway's stdout (<name>-<round>.stdout.log; e.g. with BENCH_NODE_ARGS=--trace-gc, meshfed's collections).
set -euo pipefail
cd "$(dirname "$0")/.."
D=${D:-10} R=${R:-1} W=${W:-2} PIN=${PIN:-0}
[[ $PIN =~ ^[01]$ ]] || { echo "PIN must be 0 or 1, got '$PIN'" >&2; exit 2; }
# the command prefix of the load client and backend, and of the gateways; how the result names the placement; where
# the result goes
if [ "$PIN" = 1 ]; then
  CLIENT_CPU=(taskset -c 0) GATEWAY_CPU='taskset -c 1 '
  PLACEMENT='pinned as the peers harness: h2load and backend CPU 0, every gateway process CPU 1'
  RESULT=bench/results/latency-fixed-rate-pinned.json
else
  CLIENT_CPU=() GATEWAY_CPU='' PLACEMENT='not pinned' RESULT=bench/results/latency-fixed-rate.json
fi
RESULT=${RESULT_FILE:-$RESULT}
OUT=$(mktemp -d)
command -v h2load >/dev/null || { echo "h2load is missing (apt-get install nghttp2-client)" >&2; exit 1; }
source bench/peers-env.sh 127.0.0.10 127.0.0.21 127.0.0.22
HERE=$HARNESS

source bench/sessions.sh
# the longest any server of the run lives
LIFE=$((600 * R))
cleanup() { stop_all; rm -rf "$OUT"; }
trap cleanup EXIT
source bench/cpu-ticks.sh
# CPU ticks (user + system) of every process in the sessions of ${gws[@]} (the gateways being measured)
gw_ticks() {
  local sid pid t=0
  for sid in "${gws[@]}"; do
    for pid in $(ps -o pid= -s "$sid"); do
      t=$((t + $(proc_ticks "$pid")))
    done
  done
  echo "$t"
}
measure() { # measure NAME URL -> one JSON line of latency percentiles (ms)
  local s0 s1 c0 c1
  s0=$(steal) c0=$(gw_ticks)
  rm -f "$OUT/$1.log" # h2load appends to its log file
  "${CLIENT_CPU[@]}" h2load --h1 -c 10 --rps 100 -D "$D" --warm-up-time "$W" -H ":authority: $BENCH_SERVICE_HOST" \
    --log-file "$OUT/$1.log" "$2" >"$OUT/$1.h2load.txt"
  s1=$(steal) c1=$(gw_ticks)
  awk -F'\t' '$2 == 200 { print $3 / 1000 }' "$OUT/$1.log" | sort -n >"$OUT/$1.ms"
  if [ -n "${KEEP:-}" ]; then mkdir -p "$KEEP" && cp "$OUT/$1.log" "$KEEP/$1-$round.log"; fi
  local n e
  n=$(wc -l <"$OUT/$1.ms")
  e=$(awk -F'\t' '$2 != 200' "$OUT/$1.log" | wc -l)
  local p99 windows
  p99=$(sed -n "$((n * 99 / 100 + 1))p" "$OUT/$1.ms")
  # where the slowest 1 % started: how many 100-ms windows hold them, and the share of the busiest one
  windows=$(awk -F'\t' -v t="$p99" 'NR == 1 { t0 = $1 } $2 == 200 && $3 / 1000 >= t { w[int(($1 - t0) / 100000)]++; k++ }
    END { for (x in w) { c++; if (w[x] > m) m = w[x] } printf "{\"windows\": %d, \"busiest_share\": %.2f}", c, (k ? m / k : 0) }' "$OUT/$1.log")
  jq -n --arg path "$1" --argjson n "$n" --argjson e "$e" --argjson round "$round" \
    --argjson p50 "$(sed -n "$((n / 2 + 1))p" "$OUT/$1.ms")" --argjson p99 "$p99" --argjson slow "$windows" \
    --argjson steal "$(echo "$s0 $s1" | awk '{printf "%.1f", ($4 > $2 ? ($3 - $1) / ($4 - $2) * 100 : 0)}')" \
    --argjson cpu "$(awk -v a="$c0" -v b="$c1" -v hz="$(getconf CLK_TCK)" -v n="$n" -v d="$D" -v w="$W" \
      'BEGIN {printf "%.1f", (n > 0 ? (b - a) / hz / (n * (d + w) / d) * 1e6 : 0)}')" \
    '{path: $path, round: $round, requests: $n, errors: $e, p50_ms: $p50, p99_ms: $p99, steal_pct: $steal,
      gateway_cpu_us_per_request: $cpu, slowest_1pct_in: $slow}' | jq -c .
}

start backend "$LIFE" "${CLIENT_CPU[*]} bash $HERE/lib/backend.sh"
wait_tcp "$BENCH_BACKEND_HTTP"
rows=()
for round in $(seq "$R"); do
  gws=() # the direct path has no gateway
  rows+=("$(measure direct "http://$BENCH_BACKEND_HTTP/")")
  for cand in haproxy meshfed meshfed-split; do
    gws=()
    case $cand in
    haproxy) start "$cand" "$LIFE" "${GATEWAY_CPU}bash $HERE/peers/haproxy.sh" && gws+=("$STARTED") ;;
    meshfed) start "$cand" "$LIFE" "${GATEWAY_CPU}bash bench/peers-candidate.sh" && gws+=("$STARTED") ;;
    meshfed-split)
      start "$cand-b" "$LIFE" "BENCH_ROLE=b ${GATEWAY_CPU}bash bench/peers-candidate.sh" && gws+=("$STARTED")
      wait_tcp "$BENCH_GW_B_ADDR"
      start "$cand-a" "$LIFE" "BENCH_ROLE=a ${GATEWAY_CPU}bash bench/peers-candidate.sh" && gws+=("$STARTED") ;;
    esac
    wait_tcp "$BENCH_GW_B_ADDR" && wait_tcp "$BENCH_GW_A_ADDR"
    rows+=("$(measure "$cand" "http://$BENCH_GW_A_ADDR/")")
    for g in "${gws[@]}"; do stop "$g"; done
    if [ -n "${KEEP:-}" ]; then for d in "$OUT/$cand" "$OUT/$cand-a" "$OUT/$cand-b"; do
      if [ -d "$d" ]; then cp "$d/stdout.log" "$KEEP/$(basename "$d")-$round.stdout.log"; fi
    done; fi
  done
done
mkdir -p bench/results
# per path: the median over rounds of p50, p99 and steal; added = a path's median minus direct's; and the
# ratio of added p99s to HAProxy's in each round (the rounds' host states differ, a ratio within one does not)
printf '%s\n' "${rows[@]}" | jq -s --arg date "$(date -u +%FT%TZ)" --arg load "$(cut -d' ' -f1-3 /proc/loadavg)" \
  --arg cmd "$([ "$PIN" = 0 ] || echo -n "PIN=1 ")$([ "$W" = 2 ] || echo -n "W=$W ")$([ "$R" = 1 ] || echo -n "R=$R ")bash bench/latency-fixed-rate.sh" \
  --arg placement "$PLACEMENT" --argjson warm "$W" '
  def med: sort | .[(length / 2 | floor)];
  def r3: . * 1000 | round / 1000;
  . as $runs
  | (group_by(.path) | map({ key: .[0].path, value: { p50_ms: (map(.p50_ms) | med), p99_ms: (map(.p99_ms) | med),
      steal_pct: (map(.steal_pct) | med), gateway_cpu_us_per_request: (map(.gateway_cpu_us_per_request) | med),
      rounds: length } }) | from_entries) as $m
  | ($runs | group_by(.round) | map(
      (map(select(.path == "direct"))[0]) as $d | (map({ (.path): (.p99_ms - $d.p99_ms) }) | add) as $a
      | { round: .[0].round, meshfed: (($a.meshfed / $a.haproxy) * 100 | round / 100),
          "meshfed-split": (($a["meshfed-split"] / $a.haproxy) * 100 | round / 100) })) as $per
  | { date: $date, command: $cmd, placement: $placement, rate: "1000 req/s (h2load --h1 -c 10 --rps 100)", warm_up_s: $warm,
      loadavg_at_end: $load, paths: $runs, medians: $m,
      added_ms: ($m | to_entries | map(select(.key != "direct")) | map({ (.key): {
        p50: ((.value.p50_ms - $m.direct.p50_ms) | r3), p99: ((.value.p99_ms - $m.direct.p99_ms) | r3) } }) | add),
      p99_added_vs_haproxy_per_round: $per }
  | .p99_added_vs_haproxy = ((.added_ms.meshfed.p99 / .added_ms.haproxy.p99) * 100 | round / 100)
  | .p99_added_vs_haproxy_split = ((.added_ms["meshfed-split"].p99 / .added_ms.haproxy.p99) * 100 | round / 100)' \
  | tee "$RESULT"
