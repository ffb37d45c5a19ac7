#!/usr/bin/env bash
# Candidate for /work/shared/bench/peers: the real meshfed Gateway (bench/peers-gateway.ts).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${BENCH_REUSE:-reuse}" = noreuse ]; then
  tunnel='new TCP+TLS connection per request gw-A->gw-B (tunnelMaxRequestsPerConnection: 1), TLS session resumption on'
else
  tunnel='pooled HTTP/2 mTLS tunnel gw-A->gw-B (tunnelConnectionsPerGateway: 2, multiplexed)'
fi
echo "meshfed: ${BENCH_WORKERS:-1} event loop(s) (BENCH_WORKERS, SO_REUSEPORT); $tunnel; gw-B->backend keep-alive" >"${BENCH_WORKDIR:-/tmp}/notes.txt"
exec node_modules/.bin/node bench/peers-gateway.ts
