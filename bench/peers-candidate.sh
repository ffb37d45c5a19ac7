#!/usr/bin/env bash
# Candidate for /work/shared/bench/peers: the real meshfed Gateway (bench/peers-gateway.ts).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${BENCH_REUSE:-reuse}" = noreuse ]; then
  tunnel='HTTP/1.1 fast path (ALPN meshfed-h1/1), new TCP+TLS connection per request gw-A->gw-B (tunnelMaxRequestsPerConnection: 1), TLS session resumption on'
else
  tunnel='HTTP/1.1 fast path: pooled keep-alive mTLS connections gw-A->gw-B (ALPN meshfed-h1/1), bytes forwarded by their framing'
fi
echo "meshfed: ${BENCH_WORKERS:-1} event loop(s) (BENCH_WORKERS, SO_REUSEPORT); $tunnel; gw-B->backend keep-alive" >"${BENCH_WORKDIR:-/tmp}/notes.txt"
# BENCH_NODE_ARGS: node options for the candidate that NODE_OPTIONS refuses (e.g. --trace-gc), split on spaces
# shellcheck disable=SC2086
exec node_modules/.bin/node ${BENCH_NODE_ARGS:-} bench/peers-gateway.ts
