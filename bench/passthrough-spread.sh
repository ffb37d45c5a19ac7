#!/usr/bin/env bash
# Run-to-run spread of the passthrough topology, and what each run's gateway did: one gateway process (the
# peers candidate, bench/peers-gateway.ts, passthrough topology) pinned to CPU 1 serves every run, as in the
# peers harness; the harness's nginx TLS backend and wrk (-t1 -c16) on CPU 0, on loopback addresses of their own.
# Per run: req/s, the gateway's share of its CPU and CPU per request, its read/write syscalls, minor page
# faults and context switches per request, and nginx's context switches per request. A run whose CPU per
# request is steady while its req/s moves says the gateway waited (scheduling, batching), not that it worked more.
# Each run also prints the host's steal time (CPU the hypervisor gave to other guests, from /proc/stat) over
# the run. With -H, HAProxy (the harness's adapter for the topology, also pinned to CPU 1) gets a run after each of
# meshfed's, so both see the same host: the peers harness runs every case of one peer before the next peer's, minutes
# apart, and this host's speed drifts by a third within an hour (docs/performance.md, "Eleventh round"). With
# -t terminate the topology is terminate-reuse (wrk -> gw-A -> pooled mTLS -> gw-B -> the nginx backend; meshfed's
# two gateways share one process, HAProxy's are two, their CPU summed). -t tcp-port: wrk -> a per-service TCP port of
# gw-B -> the nginx backend's plain port, a local endpoint; -t tcp-tunnel: wrk -> a TCP port of gw-A -> CONNECT over
# the HTTP/2 tunnel -> gw-B's terminal -> the same port (neither has a HAProxy counterpart: no -H). With -F (terminate
# only), the Node floor (bench/node-floor.ts: the same exchange with none of meshfed's logic, in one event loop with
# the gateway's flags, also pinned to CPU 1) gets a run after each of meshfed's: meshfed against what Node itself costs.
# With either, the script ends with the medians of the per-run ratios of each pair.
#   flock /tmp/meshfed-peers.lock bash bench/passthrough-spread.sh [-r RUNS] [-d SECONDS] [-b small|64k] [-t passthrough|terminate|tcp-port|tcp-tunnel] [-H] [-F]
# Each run is bounded (wrk -d plus timeout); the servers run in sessions of their own, stopped by process group.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=6 DURATION=5 BODY=small HAPROXY=0 FLOOR=0 TOPO=passthrough
while getopts r:d:b:t:HF opt; do
  case $opt in r) RUNS=$OPTARG ;; d) DURATION=$OPTARG ;; b) BODY=$OPTARG ;; t) TOPO=$OPTARG ;; H) HAPROXY=1 ;;
    F) FLOOR=1 ;; *) sed -n 2,21p "$0" >&2; exit 2 ;; esac
done
case $TOPO in passthrough | terminate | tcp-port | tcp-tunnel) ;;
  *) echo "-t takes passthrough, terminate, tcp-port or tcp-tunnel, got '$TOPO'" >&2; exit 2 ;; esac
if [[ $TOPO == tcp-* ]] && [ "$HAPROXY" = 1 ]; then echo "-H: HAProxy has no $TOPO topology here" >&2; exit 2; fi
if [ "$TOPO" != terminate ] && [ "$FLOOR" = 1 ]; then echo "-F: the Node floor is a terminate pair, not $TOPO" >&2; exit 2; fi
# HAProxy's gateways: B (and A for terminate) on addresses of their own; the Node floor's, the same way
HAPROXY_ADDR=127.0.0.123:25443 HAPROXY_A_ADDR=127.0.0.124:25001 FLOOR_B_ADDR=127.0.0.126:25443 FLOOR_A_ADDR=127.0.0.125:25001
HARNESS=/work/shared/bench/peers
STATE=${BENCH_STATE:-$PWD/.bench-peers}
export BENCH_SERVICE_HOST=echo.bench.svc.clusterset.local BENCH_TRUST_DOMAIN=mesh.example
export BENCH_BACKEND_HTTP=127.0.0.110:28080 BENCH_BACKEND_TLS=127.0.0.110:28443
export BENCH_GW_A_ADDR=127.0.0.121:25001 BENCH_GW_B_ADDR=127.0.0.122:25443
export BENCH_CERTS_DIR=$STATE/certs BENCH_CA=$STATE/certs/root-ca.crt
export BENCH_GW_A_CERT=$STATE/certs/gw-a.crt BENCH_GW_A_KEY=$STATE/certs/gw-a.key
export BENCH_GW_B_CERT=$STATE/certs/gw-b.crt BENCH_GW_B_KEY=$STATE/certs/gw-b.key
export BENCH_TOPOLOGY=$TOPO BENCH_REUSE=reuse
for a in $BENCH_BACKEND_HTTP $BENCH_BACKEND_TLS $BENCH_GW_A_ADDR $BENCH_GW_B_ADDR $HAPROXY_ADDR $HAPROXY_A_ADDR \
  $FLOOR_A_ADDR $FLOOR_B_ADDR; do
  if ss -Htln | awk '{print $4}' | grep -qxF "$a"; then echo "address in use: $a" >&2; exit 1; fi
done
bash "$HARNESS/lib/certs.sh" "$BENCH_CERTS_DIR" "$BENCH_SERVICE_HOST" >/dev/null
OUT=/tmp/meshfed-passthrough-spread
rm -rf "$OUT" && mkdir -p "$OUT/backend" && chmod a+rx "$OUT" "$OUT/backend"
path=/; [ "$BODY" = 64k ] && path=/64k
# where wrk connects: gw-B's TLS port for passthrough, gw-A's plain port for terminate (meshfed's; HAProxy's below)
if [ "$TOPO" = passthrough ]; then
  ENTRY=$BENCH_GW_B_ADDR HAPROXY_ENTRY=$HAPROXY_ADDR url="https://$BENCH_SERVICE_HOST:${BENCH_GW_B_ADDR##*:}$path"
elif [ "$TOPO" = tcp-port ]; then
  ENTRY=$BENCH_GW_B_ADDR url="http://$BENCH_SERVICE_HOST:${BENCH_GW_B_ADDR##*:}$path"
elif [ "$TOPO" = tcp-tunnel ]; then
  ENTRY=$BENCH_GW_A_ADDR url="http://$BENCH_SERVICE_HOST:${BENCH_GW_A_ADDR##*:}$path"
else
  ENTRY=$BENCH_GW_A_ADDR HAPROXY_ENTRY=$HAPROXY_A_ADDR url="http://$BENCH_SERVICE_HOST:${BENCH_GW_A_ADDR##*:}$path"
fi

SIDS=()
cleanup() { local s; for s in "${SIDS[@]}"; do kill -TERM -- "-$s" 2>/dev/null || true; wait "$s" 2>/dev/null || true; done; }
trap cleanup EXIT
wait_tcp() { for _ in $(seq 300); do (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null && return 0; sleep 0.1; done; return 1; }
load() { WRK_CONNECT=${2:-$ENTRY} taskset -c 0 timeout -k 2 $(($1 + 15)) wrk -t1 -c16 -d"$1"s \
  -s "$HARNESS/lib/wrk.lua" -H "Host: $BENCH_SERVICE_HOST" "$url"; }

BENCH_WORKDIR=$OUT/backend setsid timeout -k 5 $((RUNS * (DURATION + 5) + 120)) taskset -c 0 bash "$HARNESS/lib/backend.sh" >/dev/null 2>&1 &
SIDS+=($!)
wait_tcp "$BENCH_BACKEND_TLS" || { echo "the backend did not start" >&2; exit 1; }
BENCH_WORKDIR=$OUT setsid timeout -k 5 $((RUNS * (DURATION + 5) + 120)) taskset -c 1 \
  node_modules/.bin/node bench/peers-gateway.ts >"$OUT/gateway.log" 2>&1 &
gw=$!; SIDS+=("$gw")
wait_tcp "$ENTRY" && wait_tcp "$BENCH_GW_B_ADDR" || { cat "$OUT/gateway.log" >&2; exit 1; }
node=$(pgrep -s "$gw" -f peers-gateway.ts | tail -n1)
if [ "$HAPROXY" = 1 ]; then
  mkdir -p "$OUT/haproxy" && chmod a+rx "$OUT/haproxy"
  BENCH_WORKDIR=$OUT/haproxy BENCH_GW_A_ADDR=$HAPROXY_A_ADDR BENCH_GW_B_ADDR=$HAPROXY_ADDR setsid timeout -k 5 $((RUNS * 2 * (DURATION + 5) + 120)) \
    taskset -c 1 bash "$HARNESS/peers/haproxy.sh" >"$OUT/haproxy.log" 2>&1 &
  hap=$!; SIDS+=("$hap")
  wait_tcp "$HAPROXY_ENTRY" && wait_tcp "$HAPROXY_ADDR" || { cat "$OUT/haproxy.log" >&2; exit 1; }
  hapids=$(pgrep -s "$hap" -x haproxy)
fi
if [ "$FLOOR" = 1 ]; then
  BENCH_GW_A_ADDR=$FLOOR_A_ADDR BENCH_GW_B_ADDR=$FLOOR_B_ADDR setsid timeout -k 5 $((RUNS * 3 * (DURATION + 5) + 120)) \
    taskset -c 1 node_modules/.bin/node bench/node-floor.ts >"$OUT/floor.log" 2>&1 &
  fl=$!; SIDS+=("$fl")
  wait_tcp "$FLOOR_A_ADDR" && wait_tcp "$FLOOR_B_ADDR" || { cat "$OUT/floor.log" >&2; exit 1; }
  floor=$(pgrep -s "$fl" -f node-floor.ts | tail -n1)
fi
source bench/cpu-ticks.sh
nginx=$(pgrep -s "${SIDS[0]}" -f "nginx: worker" | head -n1)
switches() { awk '/^voluntary_ctxt/ {v = $2} /^nonvoluntary_ctxt/ {n = $2} END {printf "%s %s ", v, n}' "/proc/$1/status"; }
# gateway CPU ticks and minor faults, its read and write syscalls, its and nginx's context switches
snap() {
  awk '{sub(/^.*\) /, ""); printf "%s %s ", $12 + $13, $8}' "/proc/$node/stat"
  awk '/^sysc/ {printf "%s ", $2}' "/proc/$node/io"
  switches "$node"; switches "$nginx"; echo
}
load 2 >/dev/null # warm-up (JIT, connections)
hz=$(getconf CLK_TCK)
[ "$HAPROXY" = 1 ] && load 2 "$HAPROXY_ENTRY" >/dev/null
[ "$FLOOR" = 1 ] && load 2 "$FLOOR_A_ADDR" >/dev/null
# HAProxy's CPU ticks: both processes of a terminate pair; the floor's: its one process
hap_ticks() { local p t=0; for p in $hapids; do t=$((t + $(proc_ticks "$p"))); done; echo "$t"; }
floor_ticks() { proc_ticks "$floor"; }
# one run of a peer alternated with meshfed's: NAME ENTRY TICKS-FUNCTION; prints "run N NAME: ..."
peer_run() {
  local name=$1 entry=$2 ticks=$3 c0 c1 t0 t1 reqs
  c0=$($ticks) t0=$(steal)
  load "$DURATION" "$entry" >"$OUT/$name-wrk$run.txt"
  c1=$($ticks) t1=$(steal)
  reqs=$(awk '/requests in/ {print $1}' "$OUT/$name-wrk$run.txt")
  echo "$c0 $c1 $t0 $t1" | awk -v run="$run" -v who="$name" -v r="$reqs" -v d="$DURATION" -v hz="$hz" '{
    cpu = ($2 - $1) / hz
    printf "run %d %s: %.0f req/s, gateway CPU %.0f%%, %.1f µs per request; host steal %.1f%%\n",
      run, who, r / d, cpu / d * 100, cpu / r * 1e6, ($5 - $3) / ($6 - $4) * 100 }'
}
for run in $(seq "$RUNS"); do
  s0=$(snap) t0=$(steal)
  load "$DURATION" >"$OUT/wrk$run.txt"
  s1=$(snap) t1=$(steal)
  reqs=$(awk '/requests in/ {print $1}' "$OUT/wrk$run.txt")
  echo "$s0 $s1 $t0 $t1" | awk -v run="$run" -v r="$reqs" -v d="$DURATION" -v hz="$hz" -v l="$(cut -d' ' -f1-3 /proc/loadavg)" '{
    cpu = ($9 - $1) / hz
    printf "run %d: %.0f req/s, gateway CPU %.0f%%, %.1f µs per request; per request: %.2f reads, %.2f writes, %.3f minor faults, gateway switches %.3f voluntary %.3f forced, nginx %.3f / %.3f; host steal %.1f%%; load %s\n",
      run, r / d, cpu / d * 100, cpu / r * 1e6, ($11 - $3) / r, ($12 - $4) / r, ($10 - $2) / r,
      ($13 - $5) / r, ($14 - $6) / r, ($15 - $7) / r, ($16 - $8) / r, ($19 - $17) / ($20 - $18) * 100, l }'
  if [ "$FLOOR" = 1 ]; then peer_run floor "$FLOOR_A_ADDR" floor_ticks; fi
  if [ "$HAPROXY" = 1 ]; then peer_run haproxy "$HAPROXY_ENTRY" hap_ticks; fi
done | tee "$OUT/runs.txt"
# with a peer alternated (-H, -F): the medians of the per-run ratios, req/s and CPU a request (run N of each
# candidate against run N of the other, so both saw the same minutes)
if [ "$HAPROXY" = 1 ] || [ "$FLOOR" = 1 ]; then
  awk '/^run [0-9]+(:| floor:| haproxy:)/ {
      who = $3 == "floor:" ? "floor" : ($3 == "haproxy:" ? "haproxy" : "meshfed")
      i = who == "meshfed" ? 3 : 4
      r = $2 + 0; rps[who, r] = $i; us[who, r] = $(i + 5); n[who]++
    }
    function median(a, k,   i, j, t) {
      for (i = 2; i <= k; i++) for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
      return k % 2 ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2
    }
    function pair(x, y,   r, q, c) {
      if (!n[x] || !n[y]) return
      for (r = 1; r <= n[x]; r++) { q[r] = rps[x, r] / rps[y, r]; c[r] = us[y, r] / us[x, r] }
      printf "%s / %s: req/s %.2f, CPU a request %.2f (medians of %d per-run ratios)\n", x, y, median(q, n[x]), median(c, n[x]), n[x]
    }
    END { pair("meshfed", "haproxy"); pair("floor", "haproxy"); pair("meshfed", "floor") }' "$OUT/runs.txt"
fi
