# Sourced by the benchmark scripts that run servers of their own: each in a session of its own with a bounded
# lifetime, stopped by its process group, and a wait for a TCP listener.
#   start NAME SECONDS COMMAND  COMMAND in a new session (bash -c) for at most SECONDS, in $OUT/NAME (its workdir:
#                               stdout.log, stderr.log); STARTED=its pid (= the session's id), also added to SIDS
#   stop SID                    ends the session's processes (TERM to its group) and waits for it
#   stop_all                    stop for every session started
#   wait_tcp HOST:PORT          true once the address accepts TCP, false after 30 s
SIDS=()
start() {
  mkdir -p "$OUT/$1" && chmod a+rx "$OUT/$1"
  BENCH_WORKDIR=$OUT/$1 setsid timeout -k 5 "$2" bash -c "$3" >"$OUT/$1/stdout.log" 2>"$OUT/$1/stderr.log" </dev/null &
  STARTED=$!
  SIDS+=("$STARTED")
}
stop() { kill -TERM -- "-$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
stop_all() { local s; for s in "${SIDS[@]}"; do stop "$s"; done; }
wait_tcp() {
  for _ in $(seq 300); do (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null && return 0; sleep 0.1; done
  return 1
}
