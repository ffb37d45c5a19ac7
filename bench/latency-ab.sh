#!/usr/bin/env bash
# Two node settings for meshfed against each other at a fixed rate (bench/latency-fixed-rate.sh, R=1 per run),
# in ABBA order: on this host consecutive runs of that script are not exchangeable (in six alternating pairs the
# setting that ran second won every time, whichever it was; docs/performance.md, "Idle memory, fifth round"), so
# each setting runs first as often as second. Prints, per run, meshfed's and meshfed-split's added p99, HAProxy's,
# and the gateways' CPU per request; then each setting's medians.
#   bash bench/latency-ab.sh '--v8-pool-size=4' ''            (A, B: BENCH_NODE_ARGS of each; '' = as shipped)
#   N=3 bash bench/latency-ab.sh '--max-semi-space-size=2' ''  (N rounds of ABBA, default 2: 4N runs of ~55 s)
# bench/results/latency-fixed-rate.json is left as it was.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 2 ] || { echo "usage: bash bench/latency-ab.sh 'NODE ARGS OF A' 'NODE ARGS OF B'" >&2; exit 2; }
N=${N:-2}
[[ "$N" =~ ^[1-9][0-9]?$ ]] || { echo "N must be a whole number from 1 to 99, got '$N'" >&2; exit 2; }
command -v jq >/dev/null || { echo "jq is missing (apt-get install jq)" >&2; exit 1; }
RESULT=bench/results/latency-fixed-rate.json
SAVED=$(mktemp)
ROWS=$(mktemp)
[ -f "$RESULT" ] && cp "$RESULT" "$SAVED"
restore() { if [ -s "$SAVED" ]; then cp "$SAVED" "$RESULT"; fi; rm -f "$SAVED" "$ROWS"; }
trap restore EXIT
declare -A ARGS=([A]="$1" [B]="$2")
for ((round = 1; round <= N; round++)); do
  for which in A B B A; do
    BENCH_NODE_ARGS="${ARGS[$which]}" R=1 bash bench/latency-fixed-rate.sh >/dev/null
    jq -r --arg which "$which" '[$which, .added_ms.meshfed.p99, .added_ms["meshfed-split"].p99, .added_ms.haproxy.p99,
        ([.paths[] | select(.path == "meshfed") | .gateway_cpu_us_per_request] | first)] | @tsv' "$RESULT" |
      tee -a "$ROWS" |
      awk -v args="${ARGS[$which]:-as shipped}" '{ printf "%s (%s): meshfed +%.2f ms, split +%.2f, haproxy +%.2f; meshfed CPU %s us/request\n", $1, args, $2, $3, $4, $5 }'
  done
done
for which in A B; do
  awk -v w="$which" -v args="${ARGS[$which]:-as shipped}" '
    function median(a, n,   i, j, t) { for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
      return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
    $1 == w { n++; m[n] = $2; s[n] = $3; h[n] = $4 }
    END { printf "%s (%s), median of %d: meshfed +%.2f ms, split +%.2f, haproxy +%.2f\n", w, args, n, median(m, n), median(s, n), median(h, n) }' "$ROWS"
done
