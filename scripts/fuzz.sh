#!/usr/bin/env bash
# The fuzz suites with fresh seeds: what `npm test` runs from fixed seeds (so it always runs the same inputs),
# here from new ones each time, for a nightly job or an hour of spare CPU. Fresh seeds of the east-west fuzz
# found an HTTP/2 connection leak within minutes that the fixed seed had never reached (docs/security.md, row 34).
#   npm run fuzz [-- -r ROUNDS] [-s FIRST_SEED] [-o DIR]
# Each round runs, one after the other (each a bounded jest run):
#   - the east-west fuzz (test/gateway/east-west-fuzz.test.ts) with MESHFED_FUZZ_SEED=<seed>;
#   - the differential test of the HTTP/1.1 codec against node's parser (test/gateway/h1/differential.test.ts)
#     with H1_DIFF_SEED=<seed>, H1_DIFF_RUNS=20000;
#   - the same for the responses an upstream sends, against node's strict client
#     (test/gateway/h1/differential-response.test.ts) with H1_RDIFF_SEED=<seed>, H1_RDIFF_RUNS=5000;
#   - what the codec writes, read back by node's strict parsers (test/gateway/h1/emitted-heads.test.ts) with
#     H1_EMIT_SEED=<seed>, H1_EMIT_RUNS=3000;
#   - the HTTP/2 tunnel end to end, both ways, read by node's strict parsers (test/gateway/tunnel-heads.test.ts)
#     with TUNNEL_EMIT_SEED=<seed>, TUNNEL_EMIT_RUNS=600;
#   - the fast path's untrusted bytes (test/gateway/h1/fast-path.test.ts -t "untrusted bytes") with
#     H1_FUZZ_SEED=<seed>, H1_FUZZ_RUNS=400;
#   - the property tests that draw a seed of their own in `npm test`, with FC_SEED=<seed> (test/fast-check-seed.js).
# Seeds: FIRST_SEED + round (default: from the date and time, so each night's differ and none repeats within a
# run). Every run's output is kept in DIR (default test-artifacts/fuzz/<time>); a failed run is printed with
# the command that replays it. Exits 1 when any run failed, 0 when all passed.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=1 FIRST='' OUT=''
while getopts r:s:o: opt; do
  case $opt in r) ROUNDS=$OPTARG ;; s) FIRST=$OPTARG ;; o) OUT=$OPTARG ;; *) sed -n 5p "$0" >&2; exit 2 ;; esac
done
[[ $ROUNDS =~ ^[1-9][0-9]{0,2}$ ]] || { echo "fuzz: -r takes a number of rounds from 1 to 999, got '$ROUNDS'" >&2; exit 2; }
[[ -z $FIRST || $FIRST =~ ^[0-9]{1,9}$ ]] || { echo "fuzz: -s takes a seed of up to 9 digits, got '$FIRST'" >&2; exit 2; }
# a seed from the time (minutes in the year, times 1000): runs started minutes apart do not overlap
[ -n "$FIRST" ] || FIRST=$((10#$(date -u +%j) * 1440000 + 10#$(date -u +%H) * 60000 + 10#$(date -u +%M) * 1000))
OUT=${OUT:-test-artifacts/fuzz/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
bash scripts/ensure-nats.sh >/dev/null
# every jest run is bounded: the east-west fuzz takes a few minutes, the others less
LIMIT_S=900
failed=0 runs=0
summary="$OUT/summary.txt"
: >"$summary"

# run NAME ENV... -- JEST_ARGS...: one bounded jest run, its output in OUT/NAME.log
run() {
  local name=$1 envs=() args=() start rc
  shift
  while [ "$1" != -- ]; do envs+=("$1"); shift; done
  shift
  args=("$@")
  start=$(date +%s)
  set +e
  env "${envs[@]}" timeout -k 10 $LIMIT_S node --experimental-vm-modules node_modules/jest/bin/jest.js "${args[@]}" \
    >"$OUT/$name.log" 2>&1
  rc=$?
  set -e
  runs=$((runs + 1))
  local took=$(($(date +%s) - start)) line
  if [ $rc -eq 0 ]; then
    line="pass  ${took}s  $name"
  else
    failed=$((failed + 1))
    [ $rc -eq 124 ] && why="timed out after ${LIMIT_S}s" || why="exit $rc"
    line="FAIL  ${took}s  $name ($why; $OUT/$name.log)
      replay: ${envs[*]} npm run jest -- $(printf '%q ' "${args[@]}")"
  fi
  echo "$line" | tee -a "$summary"
}

for round in $(seq 0 $((ROUNDS - 1))); do
  seed=$((FIRST + round))
  echo "round $((round + 1)) of $ROUNDS, seed $seed" | tee -a "$summary"
  run "east-west-$seed" MESHFED_FUZZ_SEED=$seed -- test/gateway/east-west-fuzz.test.ts
  run "differential-$seed" H1_DIFF_SEED=$seed H1_DIFF_RUNS=20000 -- test/gateway/h1/differential.test.ts
  run "differential-response-$seed" H1_RDIFF_SEED=$seed H1_RDIFF_RUNS=5000 -- test/gateway/h1/differential-response.test.ts
  run "emitted-heads-$seed" H1_EMIT_SEED=$seed H1_EMIT_RUNS=3000 -- test/gateway/h1/emitted-heads.test.ts
  run "tunnel-heads-$seed" TUNNEL_EMIT_SEED=$seed TUNNEL_EMIT_RUNS=600 -- test/gateway/tunnel-heads.test.ts
  run "fast-path-$seed" H1_FUZZ_SEED=$seed H1_FUZZ_RUNS=400 -- test/gateway/h1/fast-path.test.ts -t "untrusted bytes"
  run "properties-$seed" FC_SEED=$seed -- test/ca/fuzz.test.ts test/federation/property.test.ts test/core/schema.test.ts \
    test/core/metrics-aggregate.test.ts test/core/metrics.test.ts
done
echo "$runs runs, $failed failed (summary: $summary)" | tee -a "$summary"
[ $failed -eq 0 ]
