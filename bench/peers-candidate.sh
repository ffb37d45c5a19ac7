#!/usr/bin/env bash
# Candidate for /work/shared/bench/peers: the real meshfed Gateway (bench/peers-gateway.ts).
set -euo pipefail
cd "$(dirname "$0")/.."
echo "meshfed: ${BENCH_WORKERS:-1} event loop(s) (BENCH_WORKERS, SO_REUSEPORT); pooled HTTP/2 mTLS tunnel in every mode (BENCH_REUSE=${BENCH_REUSE:-} is not honoured)" >"${BENCH_WORKDIR:-/tmp}/notes.txt"
exec node_modules/.bin/node bench/peers-gateway.ts
