#!/usr/bin/env bash
# Two checkouts of meshfed measured in alternation (A B A B ...) with bench/fastpath-profile.sh -n (no profiler),
# each run from its own checkout, so that the host's drift falls on both alike. Prints each run's req/s and CPU a
# request, each pair's ratio B/A, and the medians: on this shared host one run says little, pairs say more.
#   bash bench/ab-checkouts.sh [-r PAIRS] [-d SECONDS] [-b small|16k|64k] [-c CONNS] DIR_A DIR_B
# A checkout made with `git worktree add /tmp/wtA <commit>` needs its dependencies: `cp -a node_modules /tmp/wtA/`.
# Environment given to this script (BENCH_POLICIES, BENCH_NODE_ARGS, ...) reaches both sides alike.
set -euo pipefail
PAIRS=3 DURATION=5 BODY=small CONNS=16
while getopts r:d:b:c: opt; do
  case $opt in r) PAIRS=$OPTARG ;; d) DURATION=$OPTARG ;; b) BODY=$OPTARG ;; c) CONNS=$OPTARG ;;
    *) sed -n 2,7p "$0" >&2; exit 2 ;; esac
done
shift $((OPTIND - 1))
[ $# -eq 2 ] || { sed -n 2,7p "$0" >&2; exit 2; }
[[ $PAIRS =~ ^[1-9][0-9]?$ ]] || { echo "-r takes 1 to 99 pairs, got '$PAIRS'" >&2; exit 2; }
for d in "$1" "$2"; do
  [ -f "$d/bench/fastpath-profile.sh" ] || { echo "$d: not a meshfed checkout (no bench/fastpath-profile.sh)" >&2; exit 2; }
  [ -x "$d/node_modules/.bin/node" ] || { echo "$d: no node_modules (cp -a node_modules $d/)" >&2; exit 2; }
done
A=$(cd "$1" && pwd) B=$(cd "$2" && pwd)

# one run of checkout $1: "req/s cpu_us" from fastpath-profile's "run 1:" line
one() {
  local line
  line=$(cd "$1" && flock /tmp/meshfed-peers.lock bash bench/fastpath-profile.sh -n -d "$DURATION" -b "$BODY" \
    -c "$CONNS" -o "/tmp/meshfed-ab-$2" 2>&1 | grep '^run 1:') || { echo "a run of $1 failed" >&2; return 1; }
  # run 1: N requests, R req/s, gateway CPU S s (P%), U µs CPU per request, ...
  awk '{ for (i = 1; i <= NF; i++) { if ($i == "req/s,") r = $(i - 1); if ($i == "µs") u = $(i - 1) } } END { print r, u }' <<<"$line"
}

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

rs_a=() rs_b=() us_a=() us_b=() ratio_rs=() ratio_us=()
echo "A: $A"
echo "B: $B"
for i in $(seq "$PAIRS"); do
  read -r ra ua < <(one "$A" a) || true
  read -r rb ub < <(one "$B" b) || true
  [ -n "${ua:-}" ] && [ -n "${ub:-}" ] || { echo "pair $i: a run gave no figures (see /tmp/meshfed-ab-a, -b)" >&2; exit 1; }
  rs_a+=("$ra") us_a+=("$ua") rs_b+=("$rb") us_b+=("$ub")
  ratio_rs+=("$(awk -v a="$ra" -v b="$rb" 'BEGIN { printf "%.3f", b / a }')")
  ratio_us+=("$(awk -v a="$ua" -v b="$ub" 'BEGIN { printf "%.3f", b / a }')")
  echo "pair $i ($(date -u +%H:%M:%S)): A $ra req/s, $ua µs CPU a request; B $rb req/s, $ub µs; B/A req/s ${ratio_rs[-1]}, CPU ${ratio_us[-1]}"
done
echo "medians: A $(printf '%s\n' "${rs_a[@]}" | median) req/s, $(printf '%s\n' "${us_a[@]}" | median) µs;" \
  "B $(printf '%s\n' "${rs_b[@]}" | median) req/s, $(printf '%s\n' "${us_b[@]}" | median) µs;" \
  "pair ratios B/A: req/s $(printf '%s\n' "${ratio_rs[@]}" | median), CPU a request $(printf '%s\n' "${ratio_us[@]}" | median)"
