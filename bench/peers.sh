#!/usr/bin/env bash
# npm run bench:peers: the shared east-west harness with meshfed as the candidate (output in .bench-peers/),
# then issue 5's table as ratios to haproxy and nginx measured in the same run (bench/results/peers.json).
#   npm run bench:peers -- -d 5 -r 3 -c 16 -b "small 64k" haproxy nginx project
#   BENCH_WORKERS=2 NOPIN=1 npm run bench:peers -- ...      (multi-core mode; see docs/performance.md)
set -euo pipefail
cd "$(dirname "$0")/.."
export CANDIDATE_CMD="bash bench/peers-candidate.sh" CANDIDATE_NAME=meshfed BENCH_STATE="${BENCH_STATE:-$PWD/.bench-peers}"
out="$BENCH_STATE/results/latest"
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do [ "${args[$i]}" = "-o" ] && out="${args[$((i + 1))]:-$out}"; done
# the host's steal time while the harness runs (bench/steal.ts joins it with each run), twice a second
steal_log="$BENCH_STATE/steal.tsv"
mkdir -p "$BENCH_STATE" && : >"$steal_log"
source bench/cpu-ticks.sh
(while :; do echo "$(date +%s.%N) $(steal)"; sleep 0.5; done) >>"$steal_log" &
sampler=$!
trap 'kill "$sampler" 2>/dev/null || true' EXIT
bash /work/shared/bench/peers/run.sh "$@"
kill "$sampler" 2>/dev/null || true
if [ -f "$out/results.json" ]; then
  node_modules/.bin/node bench/peers-ratios.ts "$out/results.json" --steal "$steal_log" \
    --out "bench/results/peers${BENCH_WORKERS:+-workers$BENCH_WORKERS}.json"
fi
