#!/usr/bin/env bash
# Two node settings for meshfed against each other at a fixed rate (bench/latency-fixed-rate.sh, R=1 per run),
# in ABBA order: on this host consecutive runs of that script are not exchangeable (in six alternating pairs the
# setting that ran second won every time, whichever it was; docs/performance.md, "Idle memory, fifth round"), so
# each setting runs first as often as second. Prints, per run, meshfed's and meshfed-split's added p99, HAProxy's,
# and the gateways' CPU per request; then each setting's medians.
#   bash bench/latency-ab.sh '--v8-pool-size=4' ''            (A, B: BENCH_NODE_ARGS of each; '' = as shipped)
#   N=3 bash bench/latency-ab.sh '--max-semi-space-size=2' ''  (N rounds of ABBA, default 2: 4N runs of ~55 s)
# PIN=1 runs both placed as the peers harness places processes (bench/latency-fixed-rate.sh). The script's result
# file (bench/results/latency-fixed-rate.json, or -pinned.json) is left as it was.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 2 ] || { echo "usage: bash bench/latency-ab.sh 'NODE ARGS OF A' 'NODE ARGS OF B'" >&2; exit 2; }
N=${N:-2}
[[ "$N" =~ ^[1-9][0-9]?$ ]] || { echo "N must be a whole number from 1 to 99, got '$N'" >&2; exit 2; }
command -v jq >/dev/null || { echo "jq is missing (apt-get install jq)" >&2; exit 1; }
# each run's result goes to a file of its own (RESULT_FILE), so bench/results is left as it was
RUN=$(mktemp)
ROWS=$(mktemp)
trap 'rm -f "$RUN" "$ROWS"' EXIT
declare -A ARGS=([A]="$1" [B]="$2")
for ((round = 1; round <= N; round++)); do
  for which in A B B A; do
    BENCH_NODE_ARGS="${ARGS[$which]}" R=1 RESULT_FILE="$RUN" bash bench/latency-fixed-rate.sh >/dev/null
    jq -c --arg which "$which" --arg args "${ARGS[$which]:-as shipped}" '{ which: $which, args: $args,
        meshfed: .added_ms.meshfed.p99, split: .added_ms["meshfed-split"].p99, haproxy: .added_ms.haproxy.p99,
        cpu: ([.paths[] | select(.path == "meshfed") | .gateway_cpu_us_per_request] | first) }' "$RUN" |
      tee -a "$ROWS" |
      jq -r 'def r2: . * 100 | round / 100;
        "\(.which) (\(.args)): meshfed +\(.meshfed | r2) ms, split +\(.split | r2), haproxy +\(.haproxy | r2); meshfed CPU \(.cpu) us/request"'
  done
done
# each setting's medians (of an even count: the mean of the middle two)
jq -rs 'def r2: . * 100 | round / 100;
  def med: sort | if length % 2 == 1 then .[length / 2 | floor] else (.[length / 2 - 1] + .[length / 2]) / 2 end;
  group_by(.which)[]
  | "\(.[0].which) (\(.[0].args)), median of \(length): meshfed +\(map(.meshfed) | med | r2) ms, split +\(map(.split) | med | r2), haproxy +\(map(.haproxy) | med | r2)"' "$ROWS"
