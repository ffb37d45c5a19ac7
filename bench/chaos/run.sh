#!/usr/bin/env bash
# The chaos runner, with the file-descriptor limit raised when the host lets us (the flood scenario
# holds 10,000 idle TLS connections: twice that in descriptors, client and gateway sides).
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
exec node "$(dirname "$0")/run.ts" "$@"
