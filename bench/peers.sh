#!/usr/bin/env bash
# npm run bench:peers: the shared east-west harness with meshfed as the candidate; output in .bench-peers/
set -euo pipefail
cd "$(dirname "$0")/.."
export CANDIDATE_CMD="bash bench/peers-candidate.sh" CANDIDATE_NAME=meshfed BENCH_STATE="${BENCH_STATE:-$PWD/.bench-peers}"
exec bash /work/shared/bench/peers/run.sh "$@"
