# Sourced by the scripts that run the peers candidate outside the harness (latency-fixed-rate.sh,
# tail-probe.sh): the harness's environment for the terminate-reuse topology, on the loopback addresses
# given (fixed ports), with its certificates made if missing. HARNESS is the harness's folder.
#   source bench/peers-env.sh BACKEND_IP GW_A_IP GW_B_IP
STATE=${BENCH_STATE:-$PWD/.bench-peers}
HARNESS=/work/shared/bench/peers
export BENCH_SERVICE_HOST=echo.bench.svc.clusterset.local BENCH_TRUST_DOMAIN=mesh.example
export BENCH_BACKEND_HTTP=$1:28080 BENCH_BACKEND_TLS=$1:28443
export BENCH_GW_A_ADDR=$2:25001 BENCH_GW_B_ADDR=$3:25443
export BENCH_CERTS_DIR=$STATE/certs BENCH_CA=$STATE/certs/root-ca.crt
export BENCH_GW_A_CERT=$STATE/certs/gw-a.crt BENCH_GW_A_KEY=$STATE/certs/gw-a.key
export BENCH_GW_B_CERT=$STATE/certs/gw-b.crt BENCH_GW_B_KEY=$STATE/certs/gw-b.key
export BENCH_TOPOLOGY=terminate BENCH_REUSE=reuse
bash "$HARNESS/lib/certs.sh" "$BENCH_CERTS_DIR" "$BENCH_SERVICE_HOST" >/dev/null
