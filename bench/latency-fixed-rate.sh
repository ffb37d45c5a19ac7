#!/usr/bin/env bash
# Latency a two-gateway hop adds at a fixed request rate (issue 16): h2load --h1 at 1,000 req/s (10
# connections x 100 req/s) for D seconds against the backend directly, HAProxy's gw-A -> gw-B and meshfed's,
# in one run, with the peers harness's backend, certificates and gateway scripts (loopback only). meshfed runs
# twice: as the harness runs it (both gateways in one event loop: `meshfed`) and as it is deployed and as
# the peer gateways run here (each gateway its own process: `meshfed-split`, BENCH_ROLE of bench/peers-gateway.ts).
#   bash bench/latency-fixed-rate.sh            (D=10)
# Writes bench/results/latency-fixed-rate.json: p50/p99 per path and the latency each pair adds over direct.
set -euo pipefail
cd "$(dirname "$0")/.."
D=${D:-10}
OUT=$(mktemp -d)
command -v h2load >/dev/null || { echo "h2load is missing (apt-get install nghttp2-client)" >&2; exit 1; }
source bench/peers-env.sh 127.0.0.10 127.0.0.21 127.0.0.22
HERE=$HARNESS

SIDS=()
start() { # start NAME COMMAND: its own session, bounded lifetime; STARTED=its pid (= session id)
  mkdir -p "$OUT/$1"
  BENCH_WORKDIR=$OUT/$1 setsid timeout -k 5 600 bash -c "$2" >"$OUT/$1/stdout.log" 2>"$OUT/$1/stderr.log" </dev/null &
  STARTED=$!
  SIDS+=("$STARTED")
}
stop() { kill -TERM -- "-$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
cleanup() { local s; for s in "${SIDS[@]}"; do stop "$s"; done; rm -rf "$OUT"; }
trap cleanup EXIT
ready() { # ready ADDR: accepts TCP within 30 s
  for _ in $(seq 300); do (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null && return 0; sleep 0.1; done
  return 1
}
measure() { # measure NAME URL -> one JSON line of latency percentiles (ms)
  h2load --h1 -c 10 --rps 100 -D "$D" --warm-up-time 2 -H ":authority: $BENCH_SERVICE_HOST" \
    --log-file "$OUT/$1.log" "$2" >"$OUT/$1.h2load.txt"
  awk -F'\t' '$2 == 200 { print $3 / 1000 }' "$OUT/$1.log" | sort -n >"$OUT/$1.ms"
  local n e
  n=$(wc -l <"$OUT/$1.ms")
  e=$(awk -F'\t' '$2 != 200' "$OUT/$1.log" | wc -l)
  jq -n --arg path "$1" --argjson n "$n" --argjson e "$e" \
    --argjson p50 "$(sed -n "$((n / 2 + 1))p" "$OUT/$1.ms")" --argjson p99 "$(sed -n "$((n * 99 / 100 + 1))p" "$OUT/$1.ms")" \
    '{path: $path, requests: $n, errors: $e, p50_ms: $p50, p99_ms: $p99}' | jq -c .
}

start backend "bash $HERE/lib/backend.sh"
ready "$BENCH_BACKEND_HTTP"
rows=("$(measure direct "http://$BENCH_BACKEND_HTTP/")")
for cand in haproxy meshfed meshfed-split; do
  gws=()
  case $cand in
  haproxy) start "$cand" "bash $HERE/peers/haproxy.sh" && gws+=("$STARTED") ;;
  meshfed) start "$cand" "bash bench/peers-candidate.sh" && gws+=("$STARTED") ;;
  meshfed-split)
    start "$cand-b" "BENCH_ROLE=b bash bench/peers-candidate.sh" && gws+=("$STARTED")
    ready "$BENCH_GW_B_ADDR"
    start "$cand-a" "BENCH_ROLE=a bash bench/peers-candidate.sh" && gws+=("$STARTED") ;;
  esac
  ready "$BENCH_GW_B_ADDR" && ready "$BENCH_GW_A_ADDR"
  rows+=("$(measure "$cand" "http://$BENCH_GW_A_ADDR/")")
  for g in "${gws[@]}"; do stop "$g"; done
done
mkdir -p bench/results
printf '%s\n' "${rows[@]}" | jq -s --arg date "$(date -u +%FT%TZ)" --arg load "$(cut -d' ' -f1-3 /proc/loadavg)" '
  (map(select(.path == "direct"))[0]) as $d
  | { date: $date, command: "bash bench/latency-fixed-rate.sh", rate: "1000 req/s (h2load --h1 -c 10 --rps 100)",
      loadavg_at_end: $load, paths: .,
      added_ms: (map(select(.path != "direct")) | map({ (.path): { p50: ((.p50_ms - $d.p50_ms) * 1000 | round / 1000),
        p99: ((.p99_ms - $d.p99_ms) * 1000 | round / 1000) } }) | add) }
  | .p99_added_vs_haproxy = ((.added_ms.meshfed.p99 / .added_ms.haproxy.p99) * 100 | round / 100)
  | .p99_added_vs_haproxy_split = ((.added_ms["meshfed-split"].p99 / .added_ms.haproxy.p99) * 100 | round / 100)' \
  | tee bench/results/latency-fixed-rate.json
